"""A request body (case, letter, PDF or FHIR Bundle) -> a Case, the way the CLI reads a file.

The CLI reads ``case.yaml`` with load_case and ``letter.txt``/``.pdf`` with read_letter +
parse_letter; here the same functions get the bytes of the body instead of a path, and ``name``
plays the part of the file name (a letter's case id is ``letter-<stem>`` as on the command line,
and error messages name it as the CLI names the file).
"""

from __future__ import annotations

from pathlib import PurePath

from ...evaluation.case import Case, load_case_text
from ...errors import InputError
from ...yamlio import DEFAULT_MAX_BYTES

CASE_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
LETTER_TYPES = ("text/plain", "application/pdf")
FHIR_TYPES = ("application/fhir+json",)
ALL_TYPES = CASE_TYPES + LETTER_TYPES + FHIR_TYPES


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def letter_text(data: bytes, source: str) -> str:
    """read_letter's checks on bytes already in memory: empty, a PDF's text layer, binary, encoding."""
    from ...letters.letter import _looks_binary, _pdf_text
    if not data.strip():
        raise InputError(source, "file is empty", expected="the text or PDF of an IMR letter")
    if data.lstrip()[:5] == b"%PDF-":
        return _pdf_text(data, source)
    if _looks_binary(data):
        raise InputError(source, "binary file that is not a PDF", expected="the text or PDF of an IMR letter")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    if not text.strip():
        raise InputError(source, "file is empty", expected="the text or PDF of an IMR letter")
    return text


def letter_case(data: bytes, source: str) -> Case:
    """An IMR letter's or a progress note's case (told apart as the CLI tells them apart)."""
    from ...letters.notes import case_from_text, letter_or_note
    text = letter_text(data, source)
    stem = PurePath(source).stem.strip("<>") or "body"
    return case_from_text(text, source, kind=letter_or_note(text), stem=stem)[1]


def read_document(data: bytes, content_type: str | None, *, name: str | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> Case:
    """The case a body holds. Raises InputError with the CLI's message for the same file."""
    kind = media_type(content_type)
    if len(data) > max_bytes:
        raise InputError(name or "<body>", f"input is over the {max_bytes}-byte limit")
    if kind in LETTER_TYPES:
        return letter_case(data, name or "<body>")
    if kind in FHIR_TYPES:
        from .fhir import bundle_case
        return bundle_case(data, name or "<bundle>")
    if kind in CASE_TYPES or not kind:
        return load_case_text(data, name or "<body>")
    raise InputError(name or "<body>", f"unsupported content type {kind!r}",
                     expected="one of " + ", ".join(ALL_TYPES))


def guess_type(data: bytes, filename: str | None) -> str:
    """The content type of an upload or pasted text on the web page."""
    suffix = PurePath(filename or "").suffix.lower()
    if data.lstrip()[:5] == b"%PDF-" or suffix == ".pdf":
        return "application/pdf"
    if suffix in (".yaml", ".yml"):
        return "application/yaml"
    if suffix == ".json":
        head = data.lstrip()[:400]
        return "application/fhir+json" if b'"resourceType"' in head else "application/json"
    if suffix == ".txt":
        return "text/plain"
    head = data.lstrip()[:2000].decode("utf-8", "replace")
    if head.startswith("{") and '"resourceType"' in head:
        return "application/fhir+json"
    if head.startswith("{"):
        return "application/json"
    import re
    # a case document: top-level keys "id:" and "requests:"
    if re.search(r"(?m)^id\s*:", head) and re.search(r"(?m)^requests\s*:", data.decode("utf-8", "replace")):
        return "application/yaml"
    return "text/plain"
