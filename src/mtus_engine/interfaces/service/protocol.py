"""uvicorn's HTTP/1.1 protocols with TCP_NODELAY, and an answer's parts sent in one write.

With --workers N uvicorn hands the listening socket to each worker process, and the socket rebuilt
there reports proto 0, so asyncio does not set TCP_NODELAY on the connections it accepts: every
answer written in two parts (headers, then body) then waited ~40 ms for the client's delayed ACK.
With TCP_NODELAY each part is its own segment, and on loopback each send() also runs the
receiver's side of TCP: sending headers and body as one write halves that cost. The writes of
one turn of the event loop are joined and sent at the end of it.

POST /v1/evaluate of a small case (the app's ``fast_path``: Service.fast_accepts and fast_answer) is
answered by the protocol itself, without uvicorn's request cycle, ASGI task, events and message
dicts (about 55 us of a request's CPU): the body is collected as uvicorn collects it, evaluated on
the loop when complete, and the answer written once the decision log has committed its row.
Everything else (other paths, letters, PDFs, large or chunked bodies, Expect, a wrong token,
pipelined requests behind an unfinished one, the access log) takes uvicorn's ASGI path.
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

    def write_joined(self, data: bytes) -> None:
        """One whole answer: straight to the socket unless writes of this turn are waiting."""
        if self._pending:
            self.write(data)
        else:
            self._transport.write(data)

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


class _FastCycle:
    """What uvicorn's protocol needs of a RequestResponseCycle (body, more_body, message_event.set(),
    response_complete, keep_alive, disconnected), for a request the service answers directly."""

    __slots__ = ("proto", "service", "content_type", "query", "body", "more_body", "response_complete",
                 "keep_alive", "disconnected", "started")

    def __init__(self, proto, service, content_type, query: bytes, keep_alive: bool):
        self.proto = proto
        self.service = service
        self.content_type = content_type
        self.query = query
        self.body = bytearray()
        self.more_body = True
        self.response_complete = False
        self.keep_alive = keep_alive
        self.disconnected = False
        self.started = False

    @property
    def message_event(self):
        return self

    def set(self) -> None:
        """uvicorn's signal: more body, the whole body, or the connection lost."""
        if self.more_body or self.started or self.disconnected:
            return
        self.started = True
        self.service.fast_answer(bytes(self.body), self.content_type, self.query, self.reply)

    def reply(self, status: int, body: bytes) -> None:
        proto = self.proto
        if self.disconnected or self.response_complete or proto.transport.is_closing():
            return  # the client is gone (its row, if any, is committed)
        head = [STATUS_LINE[status]]
        for name, value in proto.server_state.default_headers:  # date (server: off)
            head += (name, b": ", value, b"\r\n")
        head += (b"content-length: ", str(len(body)).encode(), b"\r\ncontent-type: application/json\r\n")
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", body)
        transport = proto.transport
        transport.write_joined(b"".join(head))
        self.response_complete = True
        if not self.keep_alive:
            transport.close()
        proto.on_response_complete()


if HttpToolsProtocol is not None:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE

    class NoDelayHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(_tune(transport))
            service = getattr(self.app, "fast_path", None)
            self._fast = service if service is not None and not self.access_log else None

        def on_headers_complete(self) -> None:
            service = self._fast
            if service is not None and (self.cycle is None or self.cycle.response_complete):
                path, _, query = self.url.partition(b"?")
                parser = self.parser
                if path == b"/v1/evaluate" and parser.get_method() == b"POST" and not parser.should_upgrade():
                    ctype = service.fast_accepts(self.headers)
                    if ctype is not False:
                        self.scope["method"] = "POST"
                        self.cycle = _FastCycle(self, service, ctype, query, parser.get_http_version() != "1.0"
                                                and parser.should_keep_alive())
                        return
            super().on_headers_complete()


def protocol_name() -> str:
    """The import string of the protocol class uvicorn should use."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "mtus_engine.interfaces.service.protocol:NoDelayH11Protocol"
    return "mtus_engine.interfaces.service.protocol:NoDelayHttpToolsProtocol"
