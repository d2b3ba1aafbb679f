"""Regular expressions compiled once per Python version, not once per process.

Python compiles a pattern in pure Python (re._parser, re._compiler): a cold evaluate of one drug
request compiled ~60 of the item parser's patterns (a drug item is tried against every modality
first), ~30 ms. The compiler's output (the arguments of ``_sre.compile``) is kept in the start-up
cache beside the rulebook (docs/performance.md), keyed by the Python version and this package's
code, and given straight to ``_sre.compile`` on the next start.

An entry is only stored after the pattern it builds compared equal to ``re.compile``'s (a Pattern
compares its flags, text and compiled code), and anything unexpected (another Python, a missing
internal, an unreadable cache) means plain ``re.compile``. ``MTUS_NO_CACHE`` turns it off.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

_FORMAT = 2
_MOST = 5000     # entries kept; past it (patterns of many rulebooks' drug names) the table starts afresh
_table: dict[tuple[str, int], tuple] | None = None    # (pattern, flags) -> _sre.compile's other arguments
_added = False


def compile(pattern: str, flags: int = 0) -> re.Pattern:  # noqa: A001 - re.compile's drop-in
    """re.compile(pattern, flags), from the cache when this Python compiled it before."""
    flags = int(flags)
    if os.environ.get("MTUS_NO_CACHE"):
        return re.compile(pattern, flags)
    table = _load()
    args = table.get((pattern, flags))
    if args is not None:
        rebuilt = _rebuilt(pattern, args)
        if rebuilt is not None:
            return rebuilt
        table.pop((pattern, flags), None)     # not this Python's format after all: compile it
    compiled = re.compile(pattern, flags)
    args = _arguments(pattern, flags)
    if args is not None and _rebuilt(pattern, args) == compiled:
        global _added
        table[(pattern, flags)] = args
        if not _added:
            _added = True
            import atexit
            atexit.register(_save)
    return compiled


def _arguments(pattern: str, flags: int) -> tuple | None:
    """What re._compiler.compile hands _sre.compile (CPython 3.11+), as plain picklable data."""
    try:
        from re import _compiler, _parser
        parsed = _parser.parse(pattern, flags)
        import _sre
        from array import array
        if array("I").itemsize != _sre.CODESIZE:
            return None
        # the code as bytes: as a list, its ints were most of loading the cache
        code = array("I", _compiler._code(parsed, flags)).tobytes()
        groupindex = dict(parsed.state.groupdict)
        indexgroup = [None] * parsed.state.groups
        for name, i in groupindex.items():
            indexgroup[i] = name
        return (flags | parsed.state.flags, code, parsed.state.groups - 1, groupindex, tuple(indexgroup))
    except Exception:   # noqa: BLE001 - another Python's internals: no cache entry
        return None


def _rebuilt(pattern: str, args: tuple) -> Any:
    try:
        import _sre
        from array import array
        flags, code, groups, groupindex, indexgroup = args
        code = array("I", code).tolist()
        return _sre.compile(pattern, flags, code, groups, groupindex, indexgroup)
    except Exception:   # noqa: BLE001 - not arguments this Python accepts
        return None


def _key() -> tuple:
    import _sre
    return ("regex", _FORMAT, sys.version, sys.implementation.cache_tag, _sre.MAGIC)


def _load() -> dict:
    global _table
    if _table is None:
        _table = {}
        try:
            import pickle

            from .rulebook import _cache_path
            with open(_cache_path(_key(), "regex"), "rb") as fh:
                data = pickle.load(fh)
            if isinstance(data, dict) and len(data) < _MOST:
                _table = data
        except Exception:   # noqa: BLE001 - missing, corrupt, foreign: compile as usual
            pass
    return _table


def _save() -> None:
    """At exit, when this process compiled a pattern the cache did not have."""
    try:
        from .rulebook import _cache_path, _write_atomic
        _write_atomic(_cache_path(_key(), "regex"), _table)
    except Exception:   # noqa: BLE001 - the cache is only an optimisation
        pass
