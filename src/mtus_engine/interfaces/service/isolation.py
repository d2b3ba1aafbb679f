"""Reading a letter or PDF in a worker process that is killed when it runs out of time.

A thread cannot be stopped: a letter whose parse outlives --timeout used to keep its thread busy
(and a core) after the client had its 503. Here each read runs in a child process; past the time
bound the child is killed (its CPU and memory freed at once) and a fresh one replaces it on the next
call. Children come from a forkserver that has imported the letter reader once, so a replacement
starts in milliseconds and shares nothing with the server's threads.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from typing import Any, Callable

PRELOAD = ["mtus_engine.interfaces.service.reader_preload"]


class Expired(Exception):
    """The call ran past its time bound; its process was killed."""


def _serve(conn) -> None:
    """A child's loop: (fn, args, source) in, ("ok", value) or ("error", the CLI's one line) out."""
    from ...api import case_error
    while True:
        try:
            fn, args, source = conn.recv()
        except (EOFError, OSError):
            return
        try:
            out = ("ok", fn(*args))
        except Exception as exc:  # noqa: BLE001 - reported as the CLI reports it, never a traceback
            out = ("error", case_error(source, exc).message)
        conn.send(out)


class _Child:
    def __init__(self, ctx):
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child_conn,), daemon=True, name="mtus-reader")
        self.proc.start()
        child_conn.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class ProcessPool:
    """At most ``size`` children at once; a call waits for a free one. Thread-safe; blocking."""

    def __init__(self, size: int = 2):
        self.size = size
        self._ctx = None
        self._idle: list[_Child] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False

    def _context(self):
        if self._ctx is None:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            self._ctx = ctx
        return self._ctx

    def call(self, fn: Callable, args: tuple, *, source: str, timeout: float) -> tuple[str, Any]:
        """("ok", fn(*args)) or ("error", message) from a child; Expired past ``timeout`` seconds
        (waiting for a free child counts too)."""
        import time
        if not self._slots.acquire(timeout=timeout):
            raise Expired()
        try:
            child = self._take()
            deadline = time.monotonic() + timeout  # a child's start-up is not the body's fault
            try:
                child.conn.send((fn, args, source))
                ready = child.conn.poll(max(0.0, deadline - time.monotonic()))
                out = child.conn.recv() if ready else None
            except (EOFError, OSError):  # the child died (killed from outside, out of memory)
                child.kill()
                raise RuntimeError("the letter reader process ended unexpectedly") from None
            if out is None:
                child.kill()  # the point: its work stops now, not when it would have finished
                raise Expired()
            with self._lock:
                if self._closed:
                    child.kill()
                else:
                    self._idle.append(child)
            return out
        finally:
            self._slots.release()

    def _take(self) -> _Child:
        with self._lock:
            child = self._idle.pop() if self._idle else None
        if child is None or not child.proc.is_alive():
            child = _Child(self._context())
        return child

    def warm(self) -> None:
        """Start the forkserver and one child ahead of the first letter."""
        if not self._slots.acquire(blocking=False):
            return
        try:
            child = self._take()
            with self._lock:
                if self._closed:
                    child.kill()
                else:
                    self._idle.append(child)
        finally:
            self._slots.release()

    def pids(self) -> list[int]:
        with self._lock:
            return [c.proc.pid for c in self._idle if c.proc.is_alive()]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


def read_document(data: bytes, content_type: str | None, name: str | None, max_bytes: int):
    """documents.read_document, as a child runs it."""
    from . import documents
    return documents.read_document(data, content_type, name=name, max_bytes=max_bytes)
