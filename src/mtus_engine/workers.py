"""The one worker pool of batch, regress and extract: chunks of items run in worker processes,
results yielded in input order (so output is byte-identical for any worker count).

Workers are processes (durable_rules is not thread-safe). A worker that dies (a crash in C
code: durable_rules, a PDF library) is detected; its chunk is re-run in a fresh process and, if
that dies too, item by item, and the item that kills its process gets ``on_death``'s result.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

Chunk = list   # a list of items; a worker returns one result per item, in order

_in_worker = False


def in_worker() -> bool:
    """True in a pool worker process (started by quiet_worker)."""
    return _in_worker


def quiet_worker() -> None:
    """Worker start: a worker must not outlive a killed parent, nor print its pipe error."""
    import signal
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C
    global _in_worker
    _in_worker = True
    try:  # Linux: ask the kernel to end this worker when its parent dies
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def chunks(items: Iterable[Any], size: int) -> Iterator[Chunk]:
    chunk: Chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def context():
    """fork where there is one: workers inherit what the parent warmed up before the pool."""
    return mp.get_context("fork" if hasattr(os, "fork") else "spawn")


def _run_chunk(args: tuple[Callable[[Any], Any], Chunk]) -> list:
    fn, chunk = args
    return [fn(item) for item in chunk]


def _child(job, conn, initializer) -> None:
    initializer()
    conn.send(_run_chunk(job))
    conn.close()


def _in_fresh_process(ctx, job, initializer) -> tuple[list | None, int | None]:
    """Run one job in a process of its own: (its results, None), or (None, exit code) if it died."""
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(job, send, initializer), daemon=True)
    proc.start()
    send.close()
    try:
        result = receive.recv()
    except (EOFError, OSError):
        result = None
    finally:
        receive.close()
        proc.join()
    return (result, None) if result is not None else (None, proc.exitcode)


def died(code: int | None) -> str:
    """How a worker process ended, for an item's error: "died (SIGSEGV)", "exited (code 3)"."""
    import signal
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"died ({name})"
    return f"exited (code {code})"


def _salvage(ctx, job, on_death, initializer) -> list:
    """A chunk whose worker died: re-run it alone; if it dies again, item by item."""
    result, _ = _in_fresh_process(ctx, job, initializer)
    if result is not None:
        return result
    fn, chunk = job
    out = []
    for item in chunk:
        one, code = _in_fresh_process(ctx, (fn, [item]), initializer)
        out += one if one is not None else [on_death(item, code)]
    return out


def ordered_map(fn: Callable[[Any], Any], jobs: Iterable[Chunk], workers: int, *,
                on_death: Callable[[Any, int | None], Any],
                initializer: Callable[[], None] = quiet_worker) -> Iterator[list]:
    """Each chunk's results (``fn`` of each item), in chunk order, from ``workers`` processes.

    At most ``2 * workers`` chunks are in flight, so memory stays bounded whatever the input.
    ``fn`` must be a module-level function (it is pickled to the workers).
    """
    ctx = context()
    pool = None
    pending: deque = deque()

    def submit(job):
        nonlocal pool
        if pool is None:
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=initializer)
        try:
            return pool.submit(_run_chunk, job)
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
            return None

    def collect(job, future):
        nonlocal pool
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                if pool is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = None
        return _salvage(ctx, job, on_death, initializer)

    try:
        for chunk in jobs:
            job = (fn, chunk)
            pending.append((job, submit(job)))
            while len(pending) > workers * 2:
                yield collect(*pending.popleft())
        while pending:
            yield collect(*pending.popleft())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """The CPUs this process may run on (at most 64)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(64, cpus or 1))
