"""Safe YAML/JSON loading that remembers the line of every mapping key.

Errors about a case or rule file must name the line; pydantic only knows field paths,
so we keep a path -> line map beside the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError

DEFAULT_MAX_BYTES = 5 * 1024 * 1024


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


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


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


def read_bytes(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    source = str(path)
    p = Path(path)
    if not p.exists():
        raise InputError(source, "file not found")
    if p.is_dir():
        raise InputError(source, "is a directory", expected="a file")
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(source, f"file is {size} bytes, over the {max_bytes}-byte limit",
                         expected="a smaller file (raise the limit with --max-bytes)")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InputError(source, f"cannot be read: {exc.strerror}") from None


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
    if text.lstrip().startswith(("{", "[")):
        # JSON first: its errors are clearer for JSON input
        try:
            return json.loads(text)
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
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(source, f"invalid YAML: {problem}", location=loc,
                         expected="a YAML or JSON document") from None
    docs = [d for d in docs if d is not None]
    if not docs:
        raise InputError(source, "file is empty", expected="a YAML or JSON document")
    if len(docs) > 1:
        raise InputError(source, "holds more than one YAML document", expected="one document")
    return docs[0]
