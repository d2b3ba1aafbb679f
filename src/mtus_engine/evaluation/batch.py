"""Batch evaluation: many cases in, one JSON line per case out, in input order.

Output is append-only and flushed line by line, so a run killed at any point can be resumed
with every case written exactly once: on resume a torn last line is cut off and evaluation
restarts after the last complete line. Workers are processes (durable_rules is not
thread-safe) and results are collected in submission order, so the output is byte-identical
for any worker count.

Nothing one case does stops the run: a bad line, file or value is that case's error line; an
exception is caught in the worker; a worker that dies (a crash in C code) is detected, its
chunk is re-run in a fresh process and, if that dies too, case by case, and the case that
kills its process gets an error line. The totals are exact: cases = evaluated + errors.

In an --output file, the first line records the input's identity (path, kind, size, SHA-256 of its first 64 KiB),
so ``--resume`` refuses an output written for another input; the output is locked (flock)
while a run writes it, so a second run on the same output refuses instead of interleaving.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import orjson

from .determination import DECISIONS
from ..errors import InputError
from ..yamlio import DEFAULT_MAX_BYTES, read_limited

CASE_SUFFIXES = {".yaml", ".yml", ".json"}
FORMAT = 2          # the output's layout: header line, case lines, summary line
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class BatchInput:
    index: int
    source: str
    payload: bytes | None       # raw case document, or None when the input itself failed
    error: str | None = None


def _dir_entries(root: Path, skip: tuple[int, int] | None) -> list[Path]:
    """Every non-directory entry under ``root`` (hidden names left out), sorted; symlinks are
    not followed into directories but are listed, so a loop or a dangling link is reported."""
    found = []
    for here, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(here, d))]:
            if name.startswith("."):
                continue
            path = Path(here) / name
            if skip is not None:
                try:
                    st = path.stat()
                    if (st.st_dev, st.st_ino) == skip:
                        continue  # the output file itself, written inside the input directory
                except OSError:
                    pass
            found.append(path)
    return sorted(found)


def _lines(fh: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line or None when over max_bytes, its length): memory stays bounded by
    max_bytes whatever the input (a line with no newline is read in pieces, never whole)."""
    lineno = 0
    while True:
        line = fh.readline(max_bytes + 1)
        if not line:
            return
        lineno += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            size = len(line)
            while True:  # skip the rest of the overlong line
                more = fh.readline(1 << 20)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield lineno, None, size
        else:
            yield lineno, line, len(line)


def iter_inputs(source: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                stdin: IO[bytes] | None = None, skip: tuple[int, int] | None = None) -> Iterator[BatchInput]:
    """Cases from a JSONL file, a directory of case files, or ``-`` (JSONL on stdin).

    ``skip`` is the (device, inode) of the output, never read as an input."""
    if source != "-" and Path(source).is_dir():
        for i, p in enumerate(_dir_entries(Path(source), skip)):
            if p.is_dir():
                yield BatchInput(i, str(p), None, "symlink to a directory (not followed; expected a case file)")
                continue
            if p.suffix.lower() not in CASE_SUFFIXES:
                yield BatchInput(i, str(p), None, "not a case file (expected .yaml, .yml or .json)")
                continue
            try:
                payload = read_limited(p, max_bytes=max_bytes, what="a case file")
            except InputError as exc:
                yield BatchInput(i, str(p), None, exc.message.removeprefix(f"{p}: "))
                continue
            yield BatchInput(i, str(p), payload)
        return
    if source == "-":
        fh = stdin or sys.stdin.buffer
        name = "<stdin>"
    else:
        fh = _open_stream(source)
        name = source
    try:
        index = 0
        for lineno, line, size in _lines(fh, max_bytes):
            if line is not None and not line.strip():
                continue
            where = f"{name}:{lineno}"
            if line is None or size > max_bytes:
                yield BatchInput(index, where, None, f"line is {size} bytes, over the {max_bytes}-byte limit")
            else:
                yield BatchInput(index, where, line)
            index += 1
    finally:
        if fh is not sys.stdin.buffer and fh is not stdin:
            fh.close()


def _open_stream(source: str) -> IO[bytes]:
    """A JSONL input: a regular file, or a pipe (a FIFO, ``<(...)``); never a device such as
    /dev/zero, whose endless bytes have no lines."""
    from ..yamlio import _open_problem
    try:
        st = os.stat(source)
    except OSError as exc:
        raise InputError(source, _open_problem(source, exc)) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise InputError(source, "is not a regular file or a pipe",
                         expected="a JSONL file, a directory of case files, or -")
    try:
        return open(source, "rb")
    except OSError as exc:
        raise InputError(source, _open_problem(source, exc)) from None


def input_identity(source: str, skip: tuple[int, int] | None = None) -> dict:
    """What a resumed run checks: the same input path, kind, size and first block."""
    if source == "-":
        return {"path": "-", "kind": "stream", "size": None, "head_sha256": None}
    path = os.path.realpath(source)
    try:
        st = os.stat(path)
    except OSError:
        return {"path": path, "kind": "missing", "size": None, "head_sha256": None}
    if stat.S_ISDIR(st.st_mode):
        names = [str(p.relative_to(path)) for p in _dir_entries(Path(path), skip)]
        digest = hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()
        return {"path": path, "kind": "directory", "size": len(names), "head_sha256": digest}
    if not stat.S_ISREG(st.st_mode):
        return {"path": path, "kind": "stream", "size": None, "head_sha256": None}
    with open(path, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    return {"path": path, "kind": "file", "size": st.st_size, "head_sha256": hashlib.sha256(head).hexdigest()}


# ------------------------------------------------------------------ worker side

def _get_engine(key: str | None | tuple[str | None, str | None]):
    """The process's engine for a rulebook directory, or for (directory, edition) when the
    batch is judged under a named edition."""
    from .engine import process_engine
    rules_dir, edition = key if isinstance(key, tuple) else (key, None)
    return process_engine(rules_dir).under_edition(edition)


Stats = tuple[str, ...] | None    # decisions of a case's requests; None for an error


def _error_line(item: BatchInput, message: str) -> tuple[str, Stats]:
    return json.dumps({"index": item.index, "source": item.source, "error": message}, ensure_ascii=False), None


# In a worker process, one case may take this long; then it is that case's error line. (Python
# code only: a loop inside C is caught by the parent when the worker dies, not by this.)
CASE_SECONDS = 60
_in_worker = False


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CaseTimeout(f"took over {CASE_SECONDS} s")


def evaluate_one(item: BatchInput, rules_dir: str | None = None) -> tuple[str, Stats]:
    """One input -> (one JSON line without newline, its decisions). Never raises: bad input,
    a value out of bounds, an engine error or any other exception is this case's error line."""
    import signal

    from ..api import case_error
    from .case import load_case_text
    if item.error is not None:
        return _error_line(item, f"{item.source}: {item.error}")
    case = engine = None
    timed = _in_worker and hasattr(signal, "setitimer")
    try:
        engine = _get_engine(rules_dir)   # compiled once per process, outside the case's time
        if timed:
            signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
        case = load_case_text(item.payload, item.source)
        result = engine.evaluate(case)
        # orjson: a batch line is encoded ~10x faster than with json; output is UTF-8, compact
        line = orjson.dumps({"index": item.index, "source": item.source, **result.to_json_data()}).decode()
    except Exception as exc:  # noqa: BLE001 - one case never takes down the run
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(exc, CaseTimeout):
            return _error_line(item, f"{item.source}: evaluation {exc} (expected a case that evaluates in time; "
                                     "please report this input)")
        return _error_line(item, case_error(item.source, exc, case, engine).message)
    if timed:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return line, tuple(d.decision for d in result.determinations)


def _quiet_worker() -> None:
    """Worker start: the pool's (no orphan workers, no pipe errors), and a case over
    CASE_SECONDS is its error line."""
    import signal

    from ..workers import quiet_worker
    quiet_worker()
    signal.signal(signal.SIGALRM, _on_alarm)
    global _in_worker
    _in_worker = True


def _work(job: tuple[BatchInput, str | None | tuple[str | None, str | None]]) -> tuple[str, Stats]:
    item, rules_dir = job
    return evaluate_one(item, rules_dir)   # looked up at call time: tests replace it


def _dead(job: tuple[BatchInput, Any], code: int | None) -> tuple[str, Stats]:
    from ..workers import died
    item = job[0]
    return _error_line(item, f"{item.source}: the worker process {died(code)} evaluating this case "
                             "(expected a case the engine survives; please report this input)")


def _run_jobs(items: Iterator[BatchInput], chunk_size: int, workers: int, rules_dir):
    """Each chunk's (line, stats) results, in input order, from ``workers`` processes (see
    workers.ordered_map: a dead worker's chunk is salvaged case by case)."""
    from ..workers import chunks, context, ordered_map
    if context().get_start_method() == "fork":
        _get_engine(rules_dir)  # compile once here; forked workers (and salvage processes) share it
    jobs = chunks(((item, rules_dir) for item in items), chunk_size)
    return ordered_map(_work, jobs, workers, on_death=_dead, initializer=_quiet_worker)


# -------------------------------------------------------------------- output

def _header(identity: dict) -> str:
    return json.dumps({"batch": {"format": FORMAT, "input": identity}}, ensure_ascii=False) + "\n"


def _describe(identity: dict) -> str:
    if identity.get("kind") in ("file", "directory"):
        unit = "bytes" if identity["kind"] == "file" else "entries"
        return f"{identity['path']} ({identity['size']} {unit}, first block {str(identity['head_sha256'])[:12]})"
    return str(identity.get("path"))


def resume_point(path: Path, identity: dict | None = None, *, fd: int | None = None) -> int:
    """Cut a torn last line off ``path``; return how many cases it already holds.

    The first line must be the header this module writes, naming the same input as
    ``identity`` (when given); the lines after it must be the indices 0..n-1 in order.
    Anything else means the file is not ours to append to.
    """
    own = fd is None
    if own:
        if not path.exists():
            return 0
        fd = os.open(path, os.O_RDWR)
    try:
        data = b""
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 20):
            data += chunk
        end = data.rfind(b"\n") + 1
        if end < len(data):
            os.ftruncate(fd, end)
        lines = data[:end].splitlines()
        if not lines:
            return 0
        try:
            head = json.loads(lines[0])
        except ValueError:
            head = None
        if not (isinstance(head, dict) and isinstance(head.get("batch"), dict)):
            raise InputError(str(path), "line 1 is not a batch header; not a batch output to resume",
                             expected="the output of an earlier `mtus evaluate --batch` run of this version")
        written_for = head["batch"].get("input") or {}
        if identity is not None and written_for != identity:
            raise InputError(str(path), f"was written for input {_describe(written_for)}, not for "
                                        f"{_describe(identity)}",
                             expected="the same input as the run being resumed (or a new --output)")
        done = 0
        for n, line in enumerate(lines[1:], 2):
            try:
                rec = json.loads(line)
            except ValueError:
                raise InputError(str(path), f"line {n} is not JSON; not a batch output to resume") from None
            if "summary" in rec:
                # a finished run: drop the summary, it is rewritten at the end
                os.ftruncate(fd, sum(len(x) + 1 for x in lines[: n - 1]))
                break
            if rec.get("index") != done:
                raise InputError(str(path), f"line {n} has index {rec.get('index')}, expected {done}",
                                 expected="the output of an earlier `mtus evaluate --batch` run")
            done += 1
        return done
    finally:
        if own:
            os.close(fd)


class DecisionTally:
    """Cases, requests and errors of a batch, and its requests by decision."""

    def __init__(self) -> None:
        self.cases = self.requests = self.errors = 0
        self.by_decision: Counter = Counter()

    def add(self, stats: Stats) -> None:
        self.cases += 1
        if stats is None:
            self.errors += 1
            return
        self.requests += len(stats)
        self.by_decision.update(stats)

    def summary(self) -> dict:
        return {"cases": self.cases, "evaluated": self.cases - self.errors, "requests": self.requests,
                "by_decision": {k: self.by_decision[k] for k in DECISIONS}, "errors": self.errors}


def tally_file(path: Path) -> DecisionTally:
    """Re-count what an earlier (interrupted) run already wrote."""
    tally = DecisionTally()
    if path.exists():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if "summary" in rec or "batch" in rec:
                    continue
                tally.add(None if "error" in rec else tuple(d["decision"] for d in rec["determinations"]))
    return tally


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _open_output(output: str, resume: bool, source: str) -> tuple[int, bool]:
    """Open (never unlink) the output: (fd, is a regular file).

    A regular file is locked (flock, so a second run refuses), checked against the input, and
    truncated (or, with --resume, kept). A character device or a FIFO (/dev/null, a pipe) is
    written in place; anything else is refused. The input and the output are never the same file.
    """
    def fail(problem: str, expected: str | None = None) -> InputError:
        return InputError(output, problem, expected=expected)

    try:
        st = os.stat(output)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        from ..yamlio import _open_problem
        raise fail(_open_problem(output, exc)) from None
    if st is not None:
        for test, what in _KINDS:
            if test(st.st_mode):
                raise fail(f"is {what}", expected="a regular file, a new path, or a character device or FIFO")
    regular = st is None or stat.S_ISREG(st.st_mode)
    if not regular and resume:
        raise fail("--resume needs a regular file to append to", expected="a regular file")
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    if regular:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    else:
        flags |= os.O_NONBLOCK   # a FIFO without a reader: ENXIO now rather than a hang
    try:
        fd = os.open(output, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise fail("is a FIFO with no reader") from None
        raise fail(f"cannot be opened for writing: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if source != "-":
            try:
                ist = os.stat(source)
            except OSError:
                ist = None
            if ist is not None and (ist.st_dev, ist.st_ino) == (st.st_dev, st.st_ino):
                raise fail("is the input file itself", expected="an --output other than the input")
        if not stat.S_ISREG(st.st_mode):
            os.set_blocking(fd, True)
            return fd, False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise fail("another mtus run is writing this output (it is locked)",
                       expected="one run per output file; wait for the other run or choose another --output") from None
        if not resume:
            os.ftruncate(fd, 0)
        return fd, True
    except BaseException:
        os.close(fd)
        raise


class _Sink:
    """Writes that fail (a full disk, a closed pipe) become one clear InputError."""

    def __init__(self, fh: IO[str], name: str):
        self.fh, self.name = fh, name

    def write(self, text: str) -> None:
        try:
            self.fh.write(text)
        except OSError as exc:
            raise InputError(self.name, f"cannot write: {exc.strerror or exc}") from None

    def flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as exc:
            raise InputError(self.name, f"cannot write: {exc.strerror or exc}") from None


def run_batch(source: str, out: IO[str] | None = None, *, output: str | None = None, workers: int = 1,
              resume: bool = False, rules_dir: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
              chunk_size: int = 256, progress: Callable[[int], None] | None = None,
              edition: str | None = None) -> dict:
    """Evaluate every case; write JSON lines to ``output`` (appending on resume) or ``out``.
    With ``edition``, every case is judged under that edition (each line says it was chosen).

    Returns the summary, which is also the last line written.
    """
    skip = 0
    tally = DecisionTally()
    fh = None
    out_id = None
    if output:
        fd, regular = _open_output(output, resume, source)
        st = os.fstat(fd)
        out_id = (st.st_dev, st.st_ino) if regular else None
        try:
            identity = input_identity(source, out_id)
            if edition:
                identity["edition"] = edition   # a resume under another edition would mix two runs
            if resume:
                skip = resume_point(Path(output), identity, fd=fd)
                tally = tally_file(Path(output)) if skip else DecisionTally()
            if regular and skip == 0:
                os.ftruncate(fd, 0)   # O_APPEND: the header goes at 0, whatever the position
            fh = open(fd, "a", encoding="utf-8", closefd=True)
        except BaseException:
            if fh is None:
                os.close(fd)
            raise
        sink = _Sink(fh, output)
        if skip == 0:
            sink.write(_header(identity))
    else:
        if resume:
            raise InputError("--resume", "needs --output", expected="an output file to resume")
        sink = _Sink(out or sys.stdout, "<stdout>")  # a stream: no header, nothing to resume
    try:
        inputs = (i for i in iter_inputs(source, max_bytes=max_bytes, skip=out_id) if i.index >= skip)
        key = (rules_dir, edition) if edition else rules_dir
        _drain(_run_jobs(inputs, chunk_size, workers, key), sink, tally, progress)
        summary = tally.summary()
        sink.write(json.dumps({"summary": summary}) + "\n")
        sink.flush()
        return summary
    finally:
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass


def _drain(results, sink: _Sink, tally: DecisionTally, progress: Callable[[int], None] | None) -> None:
    try:
        for chunk in results:
            # one write per chunk: a chunk is durable before the next one is written
            sink.write("".join(line + "\n" for line, _ in chunk))
            for _, stats in chunk:
                tally.add(stats)
            sink.flush()  # a chunk is durable before the next one is written
            if progress:
                progress(tally.cases)
    finally:
        # shut the worker pool down now: left to the garbage collector, it can be closed at
        # interpreter exit after multiprocessing's own cleanup ("Bad file descriptor")
        results.close()
