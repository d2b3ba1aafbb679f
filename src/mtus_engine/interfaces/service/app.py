"""The HTTP service: FastAPI over mtus_engine's API, answering exactly what the CLI prints.

    GET  /healthz                      {"status": "ok", "rulebook": {"version", "digest"}}
    POST /v1/evaluate?edition=ID       a case (JSON/YAML), a letter (text/PDF) or a FHIR Bundle
    POST /v1/whatif?edition=ID         {"case": ..., "set": {...}, "unset": [...], "flip": bool}
    GET  /v1/rules, /v1/rules/{id}     mtus rules list --format json / mtus rules show
    GET  /cds-services                 CDS Hooks 2.0 discovery
    POST /cds-services/mtus-order-sign order-sign: one card per draft order
    GET  /                             the reviewer's page; POST / is its plain-form fallback

Bad input answers 422 {"error": "<the CLI's one-line message>"}. Bodies are bounded in size and
evaluations in time. No case content is ever logged; the decision log keeps it only with
--store-inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ... import __version__
from ...errors import InputError, MtusError
from ..render import to_json, to_json_bytes
from . import documents

log = logging.getLogger("mtus_engine.interfaces.service")
CONFIG_ENV = "MTUS_SERVICE_CONFIG"
JSON_TYPE = "application/json"
# Cases up to this size are evaluated on the event loop (bounded by their size: at most ~100
# requests, tens of ms at worst); letters, PDFs and larger bodies go to the pool under --timeout
INLINE_BYTES = 16 * 1024
# Seconds allowed for starting a letter reader process (a forkserver's first start imports the
# letter parser), on top of --timeout, which bounds the reading itself
READER_STARTUP = 15.0


@dataclass
class Config:
    rules_dir: str | None = None
    db: str | None = None
    store_inputs: bool = False
    token: str | None = None
    max_bytes: int = 5 * 1024 * 1024
    timeout: float = 10.0
    threads: int = 4
    readers: int = 2  # letter/PDF reader processes (killed and replaced on timeout)


class BadInput(Exception):
    def __init__(self, message: str, status: int = 422):
        self.message = message
        self.status = status


def _json(data: Any, status: int = 200) -> Response:
    return Response(to_json(data), status_code=status, media_type=JSON_TYPE)


def _error(message: str, status: int = 422) -> Response:
    return _json({"error": message}, status)


class Guard:
    """Pure ASGI, one layer, just inside Starlette's error middleware (POST /v1/evaluate skips the
    stack: evaluate_asgi and Service.fast_accepts make the same checks themselves):
    - a body over the limit is refused 413 (by Content-Length, or while it streams in);
    - with a token, every path but /healthz, the page and its assets needs
      ``Authorization: Bearer <token>`` (the page's plain form may send a ``token`` field instead);
    - an unexpected exception is logged by its type only (its message or traceback could quote the
      case) and answered 500, never re-raised."""

    OPEN = ("/healthz", "/static/", "/favicon.ico", "/docs", "/openapi.json", "/redoc")

    def __init__(self, app, max_bytes: int, token: str | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.limit = max_bytes + 64 * 1024  # room for a multipart form's envelope
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", ()))
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                too_big = True
            if too_big:
                return await _send_error(send, 413, f"body is over the {self.max_bytes}-byte limit")
        if self.token is not None and not self.open_path(scope["path"]):
            if not _bearer_ok(self.token, headers.get(b"authorization")):
                return await _send_error(send, 401, "missing or wrong bearer token",
                                         [(b"www-authenticate", b"Bearer")])
        seen = 0
        started = False
        limit = self.limit

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, f"body is over the {self.max_bytes}-byte limit")
        except Exception as exc:  # noqa: BLE001
            log.error("internal error on %s %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__)
            if not started:
                await _send_error(send, 500, f"internal error ({type(exc).__name__})")

    def open_path(self, path: str) -> bool:
        return path == "/" or path.startswith(self.OPEN)  # POST / checks its own form token


class _TooLarge(Exception):
    pass


def _bearer_ok(token: bytes, auth: bytes | None) -> bool:
    """Does an Authorization header carry this bearer token? (compared in constant time; the
    Guard, the raw /v1/evaluate handler and the protocol's fast path all ask here)"""
    scheme, _, given = (auth or b"").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


def _evaluate_headers(headers) -> tuple[bytes | None, bytes | None, bytes | None, bool]:
    """(content type, content length, authorization, whether Expect or Transfer-Encoding is sent)
    of a POST /v1/evaluate: the headers both its paths read, the first content type winning."""
    ctype = length = auth = None
    streamed = False
    for key, value in headers:
        if key == b"content-type":
            if ctype is None:
                ctype = value
        elif key == b"content-length":
            length = value
        elif key == b"authorization":
            auth = value
        elif key == b"expect" or key == b"transfer-encoding":
            streamed = True
    return ctype, length, auth, streamed


def _internal_error(exc: BaseException) -> tuple[int, bytes]:
    """An unexpected exception as the Guard answers it: 500, logged by its type only (its message
    could quote the case)."""
    log.error("internal error on POST /v1/evaluate: %s", type(exc).__name__)
    return 500, to_json_bytes({"error": f"internal error ({type(exc).__name__})"})


async def _send_error(send, status: int, message: str, extra: list | None = None) -> None:
    body = to_json_bytes({"error": message})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                            *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


class Service:
    """The engine, the decision log and the worker threads of one process."""

    def __init__(self, config: Config):
        from ...evaluation.engine import Engine
        from ...rules.rulebook import load_rulebook
        self.config = config
        self.engine = Engine(load_rulebook(config.rules_dir))
        self.log = None
        if config.db:
            from .decisions import Busy, DecisionLog
            self.log = DecisionLog(config.db, store_inputs=config.store_inputs)
            self._busy = Busy
        self.pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="mtus-eval")
        from .isolation import ProcessPool
        self.readers = ProcessPool(config.readers)
        self._rule_text: dict[str, str] = {}
        self._pending: list[tuple[Any, Any]] = []  # rows of this loop turn to commit, and their callbacks
        self._token = config.token.encode() if config.token else None
        self._fast_limit = min(INLINE_BYTES, config.max_bytes)

    # ------------------------------------------------------------- helpers
    def limit(self, content_type: str | None) -> float:
        """run()'s time bound for a body: a letter's own bound is enforced in its reader process
        (killed at --timeout); run() then only backs it up, with room for a reader's start-up."""
        if documents.media_type(content_type) in documents.LETTER_TYPES:
            return self.config.timeout + READER_STARTUP
        return self.config.timeout

    async def run(self, fn, *args, limit: float | None = None, **kwargs):
        """fn(*args, **kwargs) in a worker thread, bounded in time (--timeout unless ``limit``)."""
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))
        expired = False

        def expire() -> None:  # cheaper than asyncio.wait_for, which wraps every call in a task
            nonlocal expired
            expired = True
            fut.cancel()
        timer = loop.call_later(self.config.timeout if limit is None else limit, expire)
        try:
            return await fut
        except asyncio.CancelledError:
            if expired:
                raise self.expired() from None
            raise
        finally:
            timer.cancel()

    def expired(self) -> BadInput:
        return BadInput(f"evaluation took longer than {self.config.timeout:g} s and was abandoned", 503)

    def read(self, raw: bytes, content_type: str | None, name: str | None) -> Any:
        """The case of a body. A letter or PDF is read in a child process, killed at --timeout."""
        if documents.media_type(content_type) not in documents.LETTER_TYPES:
            return documents.read_document(raw, content_type, name=name, max_bytes=self.config.max_bytes)
        from .isolation import Expired, read_document
        try:
            status, value = self.readers.call(read_document, (raw, content_type, name, self.config.max_bytes),
                                              source=name or "<body>", timeout=self.config.timeout)
        except Expired:
            raise self.expired() from None
        if status != "ok":
            raise BadInput(value)
        return value

    def close(self) -> None:
        self.readers.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.log is not None:
            self.log.close()  # what is queued is written first

    def engine_for(self, edition: str | None):
        if edition is None or edition == "":
            return self.engine
        try:
            return self.engine.under_edition(edition)
        except MtusError as exc:
            raise BadInput(str(exc)) from None

    def evaluate_bytes(self, raw: bytes, content_type: str | None, name: str | None, edition: str | None,
                       endpoint: str, *, record: bool = True) -> tuple[Any, dict]:
        """The case of a body and its determination JSON (recorded in the log unless ``record`` is
        false: the caller then awaits record_async). BadInput on error."""
        engine = self.engine_for(edition)
        case = None
        try:
            case = self.read(raw, content_type, name)
            data = engine.evaluate(case).to_json_data()
        except BadInput:
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI's one line, and the server keeps serving
            from ...api import case_error
            raise BadInput(case_error(name or "<body>", exc, case, engine).message) from None
        if record:
            self.record(endpoint, raw, content_type, data)
        return case, data

    def record(self, endpoint: str, raw: bytes, content_type: str | None, data: dict) -> None:
        """Log one evaluation; returns once it is committed (with whatever else was queued)."""
        if self.log is not None:
            self.log.submit(endpoint=endpoint, raw=raw, content_type=content_type, result=data).result()

    async def record_async(self, endpoint: str, raw: bytes, content_type: str | None, data: dict) -> None:
        """Log one evaluation without holding the event loop: the evaluations of one turn of the loop
        are committed together at the end of it (_hand_off); returns once this one is committed."""
        if self.log is None:
            return
        fut = asyncio.get_running_loop().create_future()

        def done(outcome) -> None:
            if fut.done():  # its request was cancelled (client gone)
                return
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
        self.record_then(endpoint, raw, content_type, data, done)
        await fut

    def record_then(self, endpoint: str, raw: bytes, content_type: str | None, data: dict, done) -> None:
        """Queue one evaluation for this turn's commit; done(uid or exception) once it is decided
        (called on the loop)."""
        try:
            row = self.log.row(endpoint=endpoint, raw=raw, content_type=content_type, result=data)
        except Exception as exc:  # noqa: BLE001 - refused: this evaluation's outcome, not its batch's
            row = exc
        self._pending.append((row, done))
        if len(self._pending) == 1:
            loop = asyncio.get_running_loop()
            loop.call_soon(self._hand_off, loop)

    # Waiting for another worker's write lock: first retry after BUSY_FIRST s, doubling to BUSY_MOST;
    # the batch fails (its requests answer 500) after BUSY_GIVE_UP s, as a blocked commit did
    BUSY_FIRST, BUSY_MOST, BUSY_GIVE_UP = 0.0002, 0.004, 30.0

    def _hand_off(self, loop: asyncio.AbstractEventLoop, waited: float = 0.0, delay: float = 0.0) -> None:
        # committed here, on the loop, in one transaction: a WAL commit without fsync takes
        # well under a millisecond, while a writer thread cost each request its wake-ups and
        # GIL hand-offs (about half the throughput, and the 99th percentile). The loop never
        # sleeps in SQLite's busy handler (1 ms and more, with requests waiting to be served):
        # while the other worker holds the write lock it serves on, and the evaluations it
        # answers meanwhile join this batch
        batch = self._pending
        try:
            results = self.log.write_rows([r for r, _ in batch], wait=waited >= self.BUSY_GIVE_UP)
        except self._busy:
            delay = min(self.BUSY_MOST, 2 * delay or self.BUSY_FIRST)
            loop.call_later(delay, self._hand_off, loop, waited + delay, delay)
            return
        except Exception as exc:  # noqa: BLE001 - the log is closed: each request answers 500
            results = [exc] * len(batch)
        self._pending = []
        for (_, done), outcome in zip(batch, results):
            try:
                done(outcome)
            except Exception as exc:  # noqa: BLE001 - one answer's failure is not the others'
                log.error("internal error answering an evaluation: %s", type(exc).__name__)

    def fast_accepts(self, headers: list[tuple[bytes, bytes]]) -> str | None | bool:
        """For the HTTP protocol's fast path (protocol.py): the content type of a POST /v1/evaluate
        this process answers at once on the loop (a small case with its Content-Length, the token
        right if one is required, no Expect), or False: the request takes the ASGI path."""
        ctype, length, auth, streamed = _evaluate_headers(headers)
        if streamed or length is None or not length.isdigit() or int(length) > self._fast_limit:
            return False
        token = self._token
        if token is not None and not _bearer_ok(token, auth):
            return False
        if ctype is None:
            return None
        ctype = ctype.decode("latin-1")
        return False if documents.media_type(ctype) in documents.LETTER_TYPES else ctype

    def fast_answer(self, raw: bytes, content_type: str | None, query: bytes, reply) -> None:
        """POST /v1/evaluate of a small case, answered without an ASGI task: reply(status, body) once
        the evaluation is logged. The same bytes as evaluate_answer (and so as the CLI)."""
        try:
            if query:
                from starlette.datastructures import QueryParams
                q = QueryParams(query)
                name, edition = q.get("name"), q.get("edition")
            else:
                name = edition = None
            _, data = self.evaluate_bytes(raw, content_type, name, edition, "evaluate", record=False)
            body = to_json_bytes(data)
        except BadInput as exc:
            return reply(exc.status, to_json_bytes({"error": exc.message}))
        except Exception as exc:  # noqa: BLE001 - as the Guard: logged by its type only, answered 500
            return reply(*_internal_error(exc))
        if self.log is None:
            return reply(200, body)

        def done(outcome) -> None:
            if isinstance(outcome, BaseException):
                reply(*_internal_error(outcome))
            else:
                reply(200, body)
        self.record_then("evaluate", raw, content_type, data, done)

    async def evaluate_answer(self, raw: bytes, content_type: str | None, name: str | None,
                              edition: str | None) -> bytes:
        """POST /v1/evaluate: the answer's body, once the evaluation is logged. BadInput on error."""
        if len(raw) > self.config.max_bytes:
            raise BadInput(f"body is over the {self.config.max_bytes}-byte limit", 413)
        if len(raw) <= INLINE_BYTES and documents.media_type(content_type) not in documents.LETTER_TYPES:
            # a small case: bounded by its size, evaluated here (a thread hop costs more than it saves)
            _, data = self.evaluate_bytes(raw, content_type, name, edition, "evaluate", record=False)
        else:  # letters, PDFs and large bodies: in a worker thread, under --timeout
            _, data = await self.run(self.evaluate_bytes, raw, content_type, name, edition, "evaluate",
                                     limit=self.limit(content_type), record=False)
        await self.record_async("evaluate", raw, content_type, data)
        return to_json_bytes(data)

    def rule_rows(self) -> list[dict]:
        rb = self.engine.rulebook
        return [{"id": r.id, "section": r.citation.section, "pages": r.citation.pages,
                 "certainty": r.citation.certainty, "recommendation": r.recommendation,
                 "applies_to": r.applies_to.model_dump(exclude_defaults=True),
                 "criteria": [c.id for c in r.criteria], "file": f"{r.file}:{r.line}"} for r in rb.rules]

    def rule_text(self, rule_id: str) -> str:
        """What ``mtus rules show ID`` prints, from the CLI's own code (cached: the rulebook is fixed)."""
        if rule_id not in self._rule_text:
            from click.testing import CliRunner

            from .. import cli
            import unittest.mock as mock
            with mock.patch.object(cli, "_engine", lambda _rules: self.engine):
                out = CliRunner().invoke(cli.main, ["rules", "show", rule_id])
            if out.exit_code != 0:
                raise BadInput((out.stderr if hasattr(out, "stderr") else out.output).strip().removeprefix("error: "), 404)
            self._rule_text[rule_id] = out.stdout if hasattr(out, "stdout") else out.output
        return self._rule_text[rule_id]


def _whatif_request(service: Service, body: Any, edition: str | None) -> tuple[bytes, Any]:
    """POST /v1/whatif: the CLI's what-if (or --flip) on a case given inline."""
    from ...evaluation import whatif as wi
    from ...evaluation.case import case_from_data
    engine = service.engine_for(edition)
    if not isinstance(body, dict):
        raise BadInput("<body>: top level is not a JSON object (expected {\"case\": ..., \"set\": {...}, "
                       "\"unset\": [...], \"flip\": false})")
    unknown = sorted(set(body) - {"case", "set", "unset", "flip"})
    if unknown:
        raise BadInput(f"<body>: unknown field {unknown[0]!r} (expected case, set, unset, flip)")
    case_data = body.get("case")
    sets = body.get("set") or {}
    unsets = body.get("unset") or []
    flip = body.get("flip", False)
    if not isinstance(sets, dict):
        raise BadInput("<body>: set: not an object (expected {\"path\": value})")
    if not isinstance(unsets, list) or not all(isinstance(u, str) for u in unsets):
        raise BadInput("<body>: unset: not a list of paths (expected [\"path\", ...])")
    if not isinstance(flip, bool):
        raise BadInput("<body>: flip: not true or false")
    case = None
    try:
        if isinstance(case_data, str):
            case = service.read(case_data.encode(), documents.guess_type(case_data.encode(), None), "case")
        elif isinstance(case_data, dict):
            case = case_from_data(case_data, "case")
        else:
            raise InputError("case", "missing or not a case", expected="a case object (or its YAML/JSON text)")
        pairs = [(str(k), v) for k, v in sets.items()]
        if flip:
            base = case if not (pairs or unsets) else wi.apply_changes(case, pairs, list(unsets))
            return [a.to_json_data() for a in wi.flip(base, engine)]
        if not (pairs or unsets):
            raise MtusError("nothing to do: give --set, --unset, --flip or --grid")
        result = wi.what_if(case, engine, pairs, list(unsets))
    except MtusError as exc:
        raise BadInput(str(exc)) from None
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001
        from ...api import case_error
        raise BadInput(case_error("case", exc, case, engine).message) from None
    return result.to_json_data()


def toggles(engine, case, result: dict) -> dict[str, dict]:
    """For each criterion on the page ("<request>|<rule>|<criterion>"): the case change that flips its
    state (met <-> not met), from the what-if module's own fixes. Left out where no single documented
    fact decides it (a derived fact such as the agent's sedation)."""
    from ...evaluation.case import derive_request
    from ...evaluation.whatif import _fixes
    out: dict[str, dict] = {}
    for idx, det in enumerate(result["determinations"]):
        try:
            fields, _ = derive_request(case, idx, engine.rulebook.drugs)
        except Exception:  # noqa: BLE001
            continue
        for c in det.get("criteria", []):
            if c["state"] == "not applicable" or c["rule"] not in engine.rulebook.by_id:
                continue
            want_met = c["state"] != "met"
            try:
                alts = _fixes(engine, case, idx, c["rule"], c["criterion"], want_met, fields)
            except Exception:  # noqa: BLE001 - a toggle is a convenience; never fail the page
                alts = []
            if alts:
                alt = alts[-1]  # the direct fix (a guard's alternative comes first)
                out[f"{idx}|{c['rule']}|{c['criterion']}"] = {
                    "to": "met" if want_met else "failed",
                    "set": {p: v for p, v, _ in alt if v is not None},
                    "unset": [p for p, v, _ in alt if v is None],
                    "words": "; ".join(w for _, _, w in alt)}
    return out


class _App(FastAPI):
    """FastAPI, with POST /v1/evaluate (the hot path) answered by a raw ASGI handler making the
    Guard's checks itself (body limit, token, exception shield): no per-request middleware stack, routing,
    dependency solving or Response object. Everything else goes through FastAPI as usual."""

    fast_evaluate = None
    fast_path = None

    async def __call__(self, scope, receive, send):
        if (self.fast_evaluate is not None and scope["type"] == "http" and scope["path"] == "/v1/evaluate"
                and scope["method"] == "POST"):
            return await self.fast_evaluate(scope, receive, send)
        return await super().__call__(scope, receive, send)


def evaluate_asgi(service: "Service", guard: Guard):
    """POST /v1/evaluate as a raw ASGI app: what the FastAPI route answers, byte for byte, with the
    Guard's checks (body limit, token, exception shield) done inline: one coroutine per request, no
    wrapped receive and send."""
    from starlette.datastructures import QueryParams
    limit, token, max_bytes = guard.limit, guard.token, guard.max_bytes
    too_big = f"body is over the {max_bytes}-byte limit"

    async def app(scope, receive, send):
        ctype, length, auth, _ = _evaluate_headers(scope["headers"])
        if ctype is not None:
            ctype = ctype.decode("latin-1")
        if length is not None:
            try:
                over = int(length) > limit
            except ValueError:
                over = True
            if over:
                return await _send_error(send, 413, too_big)
        if token is not None and not _bearer_ok(token, auth):
            return await _send_error(send, 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")])
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        raw = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [raw]
            seen = len(raw)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    return await _send_error(send, 413, too_big)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            raw = b"".join(chunks)
        query = QueryParams(scope["query_string"]) if scope.get("query_string") else {}
        try:
            body = await service.evaluate_answer(raw, ctype, query.get("name"), query.get("edition"))
            status = 200
        except BadInput as exc:
            body, status = to_json_bytes({"error": exc.message}), exc.status
        except Exception as exc:  # noqa: BLE001 - as the Guard: logged by its type only, answered 500
            status, body = _internal_error(exc)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    # the letter reader's processes start in the background, not on the first letter
    threading.Thread(target=app.state.service.readers.warm, daemon=True, name="mtus-warm").start()
    yield
    app.state.service.close()  # on a graceful stop: reader processes ended, the log's rows written


def create_app(config: Config | None = None) -> FastAPI:
    config = config or Config()
    service = Service(config)
    app = _App(title="mtus-engine", version=__version__,
                  description="California workers' comp utilization review: MTUS determinations, "
                              "CDS Hooks cards, and a reviewer's page.",
                  docs_url=None, redoc_url=None,  # served below from local files, not a CDN
                  lifespan=_lifespan)
    app.state.service = service
    app.add_middleware(Guard, max_bytes=config.max_bytes, token=config.token)
    app.fast_evaluate = evaluate_asgi(service, Guard(None, max_bytes=config.max_bytes, token=config.token))
    app.fast_path = service  # the HTTP protocol answers small cases itself (protocol.py)
    static_dir = Path(str(resources.files("mtus_engine.interfaces.service") / "static"))
    app.mount("/static", StaticFiles(directory=static_dir), name="static")

    _offline_docs(app)

    @app.exception_handler(BadInput)
    async def _bad(_request: Request, exc: BadInput):
        return _error(exc.message, exc.status)

    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        err = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        return _error(f"{where}: {err.get('msg', 'invalid request')}")  # never the input itself

    async def body_of(request: Request) -> bytes:
        raw = await request.body()
        if len(raw) > config.max_bytes:
            raise BadInput(f"body is over the {config.max_bytes}-byte limit", 413)
        return raw

    @app.get("/healthz")
    async def healthz():
        rb = service.engine.rulebook
        return {"status": "ok", "rulebook": {"version": rb.version, "digest": rb.digest}}

    @app.post("/v1/evaluate", summary="Evaluate a case, an IMR letter or a FHIR Bundle",
              description="Content types: application/json, application/yaml (a case), text/plain or "
                          "application/pdf (an IMR letter), application/fhir+json (a FHIR R4 Bundle). "
                          "The answer is exactly `mtus evaluate --format json`. `name` plays the file "
                          "name (a letter's case id is letter-<stem>).")
    async def evaluate(request: Request, edition: str | None = None, name: str | None = None):
        # documents the route; the served app answers it on the fast path (_App, evaluate_asgi)
        raw = await body_of(request)
        body = await service.evaluate_answer(raw, request.headers.get("content-type"), name, edition)
        return Response(body, media_type=JSON_TYPE)

    @app.post("/v1/whatif", summary="What-if: set/unset case fields, or flip each decision",
              description='Body: {"case": {...}, "set": {"path": value}, "unset": ["path"], "flip": false}. '
                          "The answer is exactly `mtus whatif --format json`.")
    async def whatif(request: Request, edition: str | None = None):
        raw = await body_of(request)
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError) as exc:
            raise BadInput(f"<body>: not JSON ({str(exc)[:120]})") from None

        def work():
            data = _whatif_request(service, body, edition)
            if isinstance(data, dict) and "variant" in data:
                service.record("whatif", raw, JSON_TYPE, data["variant"])
            return data
        return _json(await service.run(work))

    @app.get("/v1/rules", summary="Every rule (mtus rules list --format json)")
    async def rules_list():
        return Response(json.dumps(service.rule_rows(), indent=2) + "\n", media_type=JSON_TYPE)

    @app.get("/v1/rules/{rule_id}", summary="One rule (mtus rules show): its text, and its data")
    async def rules_show(rule_id: str):
        rule = service.engine.rulebook.by_id.get(rule_id)
        text = await service.run(service.rule_text, rule_id)
        return _json({"id": rule_id, "text": text,
                      "rule": rule.model_dump(mode="json", exclude_none=True) if rule is not None else None})

    # ---------------------------------------------------------------- CDS Hooks
    from .fhir import DISCOVERY, SERVICE_ID, cards, hook_case

    @app.get("/cds-services", summary="CDS Hooks discovery")
    async def cds_discovery():
        return DISCOVERY

    @app.post(f"/cds-services/{SERVICE_ID}", summary="CDS Hooks order-sign: one card per draft order")
    async def cds_order_sign(request: Request):
        raw = await body_of(request)

        def work():
            from ...api import case_error
            case = None
            try:
                body = json.loads(raw)
                case = hook_case(body)
                data = service.engine.evaluate(case).to_json_data()
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, ValueError) and case is None and not isinstance(exc, MtusError):
                    raise BadInput(f"<cds-hooks>: not JSON ({str(exc)[:120]})") from None
                raise BadInput(case_error("<cds-hooks>", exc, case, service.engine).message) from None
            service.record("cds-hooks", raw, JSON_TYPE, data)
            return cards(data)
        return _json(await service.run(work))

    # ---------------------------------------------------------------- the page
    from .page import register as register_page
    register_page(app, service, body_of, toggles)
    return app


DOCS_ASSETS = "/docs-assets"


def _offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from files installed with the package fastapi-offline (Swagger
    UI 5, which reads OpenAPI 3.1), per FastAPI's "self-hosting JavaScript and CSS for docs": the
    docs work with no internet, and the browser asks nothing of a CDN."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    assets = Path(str(resources.files("fastapi_offline") / "static"))
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    oauth2 = app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request):
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=root + app.openapi_url, title=app.title + " - Swagger UI",
                                   oauth2_redirect_url=oauth2,
                                   swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no badge fetched from afar

    @app.get(oauth2, include_in_schema=False)
    async def swagger_ui_redirect():
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request):
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + app.openapi_url, title=app.title + " - ReDoc",
                              redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png", with_google_fonts=False)


def config_from_env() -> Config:
    raw = os.environ.get(CONFIG_ENV)
    return Config(**json.loads(raw)) if raw else Config()


def app_from_env() -> FastAPI:
    """The uvicorn factory for ``mtus serve --workers N`` (each worker process builds its own)."""
    return create_app(config_from_env())


def serve(config: Config, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          access_log: bool = False) -> None:
    import uvicorn

    from .protocol import protocol_name
    if config.db:
        from .decisions import DecisionLog
        DecisionLog(config.db).close()  # the schema exists before any worker writes
    os.environ[CONFIG_ENV] = json.dumps(asdict(config))
    uvicorn.run("mtus_engine.interfaces.service.app:app_from_env", factory=True, host=host, port=port,
                workers=workers,
                access_log=access_log, log_level="info", server_header=False, proxy_headers=False,
                http=protocol_name(),
                limit_concurrency=1024, timeout_keep_alive=5)


def is_loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

