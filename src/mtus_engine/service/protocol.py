"""uvicorn's HTTP/1.1 protocol with TCP_NODELAY on every connection.

With --workers N uvicorn hands the listening socket to each worker process, and the socket rebuilt
there reports proto 0, so asyncio does not set TCP_NODELAY on the connections it accepts: every
answer written in two parts (headers, then body) then waited ~40 ms for the client's delayed ACK.
"""

from __future__ import annotations

import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
        super().connection_made(transport)


try:  # httptools (uvicorn[standard]) parses HTTP/1.1 in C: the faster protocol where installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover
    HttpToolsProtocol = None  # type: ignore[assignment, misc]

if HttpToolsProtocol is not None:
    class NoDelayHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except (OSError, AttributeError):
                    pass
            super().connection_made(transport)


def protocol_name() -> str:
    """The import string of the protocol class uvicorn should use."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "mtus_engine.service.protocol:NoDelayH11Protocol"
    return "mtus_engine.service.protocol:NoDelayHttpToolsProtocol"
