"""Safe YAML/JSON loading that remembers the line of every mapping key.

Errors about a case or rule file must name the line; pydantic only knows field paths,
so we keep a path -> line map beside the data.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# Nesting deeper than this is refused before any parser recurses into it (a case is ~4 deep;
# 40,000 levels crashed the C parser, 1,000 raised RecursionError).
MAX_DEPTH = 64
# Nodes after expanding YAML aliases: "billion laughs" documents are refused, not expanded.
MAX_NODES = 200_000
# Python refuses to convert integers longer than this (sys.get_int_max_str_digits()).
MAX_INT_DIGITS = 4_000


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


class _LineLoader(_Base):  # type: ignore[misc, valid-type]
    """Safe loader (no object construction) that records key lines."""

    source_text = ""


# Keys whose unquoted values use request notation: in YAML "#60" starts a comment, but in
# "Cyclobenzaprine 7.5mg #60 refills x 3" it is the quantity. We put it back.
NOTATION_KEYS = frozenset({"item"})


def _with_notation(loader: _LineLoader, node: yaml.Node, value):
    if not isinstance(node, yaml.ScalarNode) or node.style not in (None, "") or not isinstance(value, str):
        return value
    buffer = loader.source_text
    end = node.end_mark.index
    line_end = buffer.find("\n", end)
    rest = buffer[end: line_end if line_end != -1 else len(buffer)]
    stripped = rest.strip()
    if stripped.startswith("#") and len(stripped) > 1:
        return f"{value} {stripped}"
    return value


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    mapping: dict = {}
    lines: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        value = loader.construct_object(value_node, deep=True)
        if key in NOTATION_KEYS:
            value = _with_notation(loader, value_node, value)
        mapping[key] = value
        lines[key] = key_node.start_mark.line + 1
    return _Mapping(mapping, lines, node.start_mark.line + 1)


class _Mapping(dict):
    __slots__ = ("key_lines", "line")

    def __init__(self, data: dict, key_lines: dict, line: int):
        super().__init__(data)
        self.key_lines = key_lines
        self.line = line


class _Sequence(list):
    __slots__ = ("item_lines", "line")


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> list:
    seq = _Sequence(loader.construct_object(child, deep=True) for child in node.value)
    seq.item_lines = [child.start_mark.line + 1 for child in node.value]
    seq.line = node.start_mark.line + 1
    return seq


class _ValueProblem(yaml.constructor.ConstructorError):
    """A scalar that parses as YAML but is no usable value (a 13th month, a 5,000-digit number)."""


def _construct_int(loader: _LineLoader, node: yaml.ScalarNode) -> int:
    digits = sum(ch.isdigit() for ch in node.value)
    if digits > MAX_INT_DIGITS:
        raise _ValueProblem(None, None, f"a number of {digits} digits", node.start_mark)
    try:
        return loader.construct_yaml_int(node)
    except ValueError:
        raise _ValueProblem(None, None, f"invalid number {node.value[:40]!r}", node.start_mark) from None


def _construct_timestamp(loader: _LineLoader, node: yaml.ScalarNode):
    """A date; one that is no real date (a 13th month) stays text, for the schema to refuse
    with the field and line beside the document's other problems."""
    try:
        return loader.construct_yaml_timestamp(node)
    except (ValueError, OverflowError):
        return node.value


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def line_of(data: Any, path: tuple) -> int | None:
    """Line of the deepest key on ``path`` that we know (None for JSON input)."""
    line = getattr(data, "line", None)
    node = data
    for part in path:
        if isinstance(node, _Mapping) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, _Sequence) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def plain(data: Any) -> Any:
    """Drop line bookkeeping (for hashing, JSON dumping)."""
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO (named pipe)"),
          (stat.S_ISSOCK, "socket"))


def _open_problem(source: str, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop (the link resolves to itself)"
    if exc.errno == errno.ENOENT:
        return "broken symlink (its target does not exist)" if os.path.islink(source) else "file not found"
    if exc.errno == errno.ENOTDIR:
        return "file not found (a part of the path is not a directory)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return f"cannot be read: {exc.strerror or exc}"


def read_limited(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "a file") -> bytes:
    """The bytes of a regular file, reading at most ``max_bytes`` (+1 to detect more).

    Devices (/dev/zero, /dev/urandom), FIFOs and sockets are refused before any read: they
    have no size, and a FIFO's open or read can block forever. The file is opened
    non-blocking and checked on the open descriptor, so a swap after a check is caught too.
    """
    source = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(source, flags)
    except OSError as exc:
        raise InputError(source, _open_problem(source, exc)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(source, "is a directory", expected=what)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "special file")
            raise InputError(source, f"is a {kind}, not a regular file", expected=what)
        if st.st_size > max_bytes:
            raise InputError(source, f"file is {st.st_size} bytes, over the {max_bytes}-byte limit",
                             expected="a smaller file (raise the limit with --max-bytes)")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= max_bytes:
            block = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
        if total > max_bytes:  # grew after the size check
            raise InputError(source, f"file is over the {max_bytes}-byte limit",
                             expected="a smaller file (raise the limit with --max-bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(source, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_bytes(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    return read_limited(path, max_bytes=max_bytes, what="a YAML or JSON file")


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(source: str, line: int | None) -> InputError:
    return InputError(source, f"nested more than {MAX_DEPTH} levels deep",
                      location=f"line {line}" if line else None,
                      expected=f"at most {MAX_DEPTH} levels of lists and mappings")


def check_structure(text: str, source: str, *, is_json: bool) -> None:
    """Refuse documents nested deeper than MAX_DEPTH, or whose aliases expand past MAX_NODES,
    before a recursive parser sees them. Cheap for ordinary documents: every level of nesting
    needs one of a few characters, so a document with fewer of them is not scanned."""
    if is_json:
        if text.count("[") + text.count("{") <= MAX_DEPTH:
            return
        depth = 0
        for m in _JSON_TOKENS.finditer(text):
            ch = m.group()
            if ch in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise _too_deep(source, text.count("\n", 0, m.start()) + 1)
            elif ch in "]}":
                depth -= 1
        return
    aliases = "*" in text and "&" in text
    if not aliases and sum(text.count(c) for c in "[{-:?") <= MAX_DEPTH:
        return
    # the event stream is flat (libyaml keeps its own heap stack): count depth and the size
    # each anchor expands to
    depth, sizes, stack = 0, {}, []   # stack: [anchor, nodes] per open collection
    total = 0
    try:
        for event in yaml.parse(text, Loader=_Base):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _too_deep(source, event.start_mark.line + 1)
                stack.append([event.anchor, 1])
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
                anchor, n = stack.pop()
                if anchor:
                    sizes[anchor] = n
                if stack:
                    stack[-1][1] += n
                continue
            if isinstance(event, yaml.AliasEvent):
                n = sizes.get(event.anchor, 1)
            elif isinstance(event, yaml.ScalarEvent):
                n = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            else:
                continue
            if stack:
                stack[-1][1] += n
            total += n
            if total > MAX_NODES or (stack and stack[-1][1] > MAX_NODES):
                raise InputError(source, f"expands to more than {MAX_NODES} values (YAML aliases)",
                                 location=f"line {event.start_mark.line + 1}",
                                 expected="a document without alias bombs")
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's own limit, met before ours in a flow collection
            mark = getattr(exc, "problem_mark", None)
            raise _too_deep(source, mark.line + 1 if mark else None) from None
        return  # the parser proper reports it, with its line


def parse_document(raw: bytes, source: str) -> Any:
    """Parse YAML or JSON bytes (JSON is YAML) into data with line info."""
    if not raw.strip():
        raise InputError(source, "file is empty", expected="a YAML or JSON document")
    if b"\x00" in raw:
        raise InputError(source, "binary content", expected="a YAML or JSON text document")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(source, f"not UTF-8 text (byte {exc.start})",
                         expected="a UTF-8 YAML or JSON document") from None
    is_json = text.lstrip().startswith(("{", "["))
    check_structure(text, source, is_json=is_json)
    try:
        return _parse_text(text, source, is_json)
    except InputError:
        raise
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:  # a last guard: one line, never a traceback
        raise InputError(source, f"cannot be parsed ({type(exc).__name__}: {str(exc)[:120]})",
                         expected="a YAML or JSON document") from None


class _BigNumber(ValueError):
    pass


def _json_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise _BigNumber(text)
    return int(text)


def _parse_text(text: str, source: str, is_json: bool) -> Any:
    if is_json:
        # JSON first: its errors are clearer for JSON input
        try:
            return json.loads(text, parse_int=_json_int)
        except _BigNumber as exc:
            digits = str(exc.args[0])
            line = text.count("\n", 0, max(0, text.find(digits[:64]))) + 1
            raise InputError(source, f"a number of {len(digits.lstrip('-'))} digits", location=f"line {line}",
                             expected=f"a number of at most {MAX_INT_DIGITS} digits") from None
        except json.JSONDecodeError as exc:
            raise InputError(source, f"invalid JSON: {exc.msg}", location=f"line {exc.lineno}",
                             expected="a complete JSON object") from None
    try:
        loader = _LineLoader(text)
        loader.source_text = text
        try:
            docs = []
            while loader.check_data():
                docs.append(loader.get_data())
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        loc = f"line {mark.line + 1}" if mark else None
        if isinstance(exc, _ValueProblem):
            expected = ("a real date, YYYY-MM-DD" if "date" in exc.problem
                        else f"a number of at most {MAX_INT_DIGITS} digits")
            raise InputError(source, exc.problem, location=loc, expected=expected) from None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(source, f"invalid YAML: {problem}", location=loc,
                         expected="a YAML or JSON document") from None
    docs = [d for d in docs if d is not None]
    if not docs:
        raise InputError(source, "file is empty", expected="a YAML or JSON document")
    if len(docs) > 1:
        raise InputError(source, "holds more than one YAML document", expected="one document")
    return docs[0]
