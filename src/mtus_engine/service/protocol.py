"""uvicorn's HTTP/1.1 protocols with TCP_NODELAY, and an answer's parts sent in one write.

With --workers N uvicorn hands the listening socket to each worker process, and the socket rebuilt
there reports proto 0, so asyncio does not set TCP_NODELAY on the connections it accepts: every
answer written in two parts (headers, then body) then waited ~40 ms for the client's delayed ACK.
With TCP_NODELAY each part is its own segment, and on loopback each send() also runs the
receiver's side of TCP: sending headers and body as one write halves that cost. The writes of
one turn of the event loop are joined and sent at the end of it.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class _JoinedWrites:
    """A transport whose writes within one event-loop turn go out as one write."""

    def __init__(self, transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _tune(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
    return _JoinedWrites(transport, asyncio.get_running_loop())


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(_tune(transport))


try:  # httptools (uvicorn[standard]) parses HTTP/1.1 in C: the faster protocol where installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = None  # type: ignore[assignment, misc]

if HttpToolsProtocol is not None:
    class NoDelayHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(_tune(transport))


def protocol_name() -> str:
    """The import string of the protocol class uvicorn should use."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "mtus_engine.service.protocol:NoDelayH11Protocol"
    return "mtus_engine.service.protocol:NoDelayHttpToolsProtocol"
