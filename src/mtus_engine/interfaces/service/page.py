"""The reviewer's page at ``/``: paste or upload a letter, notes or a case, see each decision.

One renderer (Jinja, autoescaped) draws the results, both for the plain form post (``POST /``, no
script needed) and for the script's in-place updates: the page evaluates through ``/ui/evaluate``
(the /v1/evaluate answer plus the case it read and each criterion's toggle), re-evaluates a toggled
criterion through ``POST /v1/whatif``, and asks ``/ui/fragment`` to draw the answer.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from . import documents

_env = Environment(loader=PackageLoader("mtus_engine.interfaces.service", "templates"),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)

# The page loads nothing but this server's own files; no framing, no referrer, no sniffing
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store"}


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)


DECISION_LABEL = {"certify": "Certify", "modify": "Modify", "non-certify": "Non-certify", "no-rule": "No rule"}


def markdown(result: dict) -> str:
    """The rationale as Markdown for a UR letter: the CLI's own --format markdown template."""
    from ..render import _env as md_env
    return md_env.get_template("determination.md.j2").render(result=result)


def _value(v: Any) -> str:
    if v is None:
        return "not documented"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) or "none"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


_env.filters["value"] = _value
_env.globals["DECISION_LABEL"] = DECISION_LABEL


def fragment(result: dict, toggle_rows: list | None, active: set[str] | None = None,
             baseline: list[str] | None = None) -> str:
    return _env.get_template("results.html.j2").render(
        result=result, toggles=toggle_rows or [], active=active or set(), baseline=baseline or [],
        markdown=markdown(result))


def register(app: FastAPI, service, body_of, toggles) -> None:
    engine = service.engine
    editions = [{"id": e.id, "title": e.title, "from": str(e.effective_from),
                 "until": str(e.effective_until) if e.effective_until else "now"}
                for e in engine.rulebook.manifest.editions]

    def page(*, initial: dict | None = None, error: str | None = None, text: str = "", edition: str = "") -> str:
        rb = engine.rulebook
        results_html = None
        if initial is not None:
            results_html = fragment(initial["result"], initial["toggles"])
        return _env.get_template("index.html.j2").render(
            version=rb.version, digest=rb.digest, editions=editions, edition=edition, text=text,
            error=error, results_html=results_html, token_needed=bool(service.config.token),
            initial_json=json.dumps(initial).replace("</", "<\\/") if initial else None)

    def evaluate_for_page(raw: bytes, ctype: str, name: str | None, edition: str | None) -> dict:
        case, data = service.evaluate_bytes(raw, ctype, name, edition, "page")
        from ...evaluation.case import case_to_data
        return {"result": data, "case": case_to_data(case), "toggles": toggles(service.engine_for(edition), case, data)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return _html(page())

    @app.post("/", response_class=HTMLResponse, summary="The page's plain form post",
              description="Form fields: document (text) or file (upload), edition, token (when required). "
                          "Answers the page with the results drawn.")
    async def form_post(request: Request):
        from .app import BadInput
        form = await request.form(max_part_size=service.config.max_bytes + 1)
        if service.config.token:
            given = str(form.get("token") or "")
            auth = request.headers.get("authorization", "")
            if not (hmac.compare_digest(given.encode(), service.config.token.encode())
                    or hmac.compare_digest(auth.encode(), f"Bearer {service.config.token}".encode())):
                return _html(page(error="missing or wrong token"), 401)
        edition = str(form.get("edition") or "") or None
        upload = form.get("file")
        text = str(form.get("document") or "")
        name = None
        if upload is not None and hasattr(upload, "read") and getattr(upload, "filename", ""):
            raw = await upload.read()
            name = upload.filename.replace("\\", "/").rsplit("/", 1)[-1] or None
        else:
            raw = text.encode("utf-8")
            name = "pasted.txt" if documents.guess_type(raw, None) == "text/plain" else None
        if not raw.strip():
            return _html(page(error="nothing to evaluate: paste a document or choose a file",
                              edition=edition or ""), 422)
        ctype = documents.guess_type(raw, name)
        try:
            initial = await service.run(evaluate_for_page, raw, ctype, name, edition, limit=service.limit(ctype))
        except BadInput as exc:
            return _html(page(error=exc.message, text=text, edition=edition or ""), exc.status)
        return _html(page(initial=initial, text=text, edition=edition or ""))

    @app.post("/ui/evaluate", include_in_schema=False)
    async def ui_evaluate(request: Request, edition: str | None = None, filename: str | None = None):
        from .app import _json
        raw = await body_of(request)
        ctype = documents.guess_type(raw, filename)
        name = filename.replace("\\", "/").rsplit("/", 1)[-1] if filename else None
        if name is None and ctype == "text/plain":
            name = "pasted.txt"  # a pasted letter: case id letter-pasted
        return _json(await service.run(evaluate_for_page, raw, ctype, name, edition or None,
                                       limit=service.limit(ctype)))

    @app.post("/ui/fragment", response_class=HTMLResponse, include_in_schema=False)
    async def ui_fragment(request: Request):
        from .app import BadInput
        raw = await body_of(request)
        try:
            body = json.loads(raw)
            result = body["result"]
            html = fragment(result, body.get("toggles"), set(body.get("active") or []), body.get("baseline"))
        except Exception as exc:  # noqa: BLE001
            raise BadInput(f"<body>: not a result to draw ({type(exc).__name__})") from None
        return _html(html)
