"""Read IMR final determination letters (text or PDF) and derive a case from the narrative.

Two steps, kept apart on purpose:

- ``parse_letter``: the letter's structure (reviewer, dates, items with outcome, guideline,
  sections, pages, rationale).
- ``letter_to_case``: the clinical facts a careful reader takes from the narrative. Outcome
  words and the reviewer's conclusion sentences are never read as facts, so a derived case
  can be used to test whether a rulebook reaches the reviewer's outcome on its own.

The narrative reader (``read_narrative``, ``narrative_case``) is shared with notes.py, which
reads a treating physician's progress note the same way: one reader, one vocabulary.

Letters are PDF-extracted text: each line is followed by a blank line, lines wrap anywhere,
names are redacted and typos are common. Everything here works on unwrapped text.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import os
import re
from pathlib import Path
from typing import Any, Iterable, Literal, Protocol, Sequence

from pydantic import BaseModel, Field, PrivateAttr

from ..evaluation.items import BODY_REGIONS, body_regions, modality_patterns
from ..errors import InputError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024

__all__ = ["DEFAULT_MAX_BYTES", "NarrativeItem", "ParsedItem", "ParsedLetter", "Reviewer",
           "detect_acute_exacerbation", "detect_functional_improvement", "letter_to_case",
           "narrative_case", "parse_letter", "read_letter", "read_narrative"]


# ------------------------------------------------------------------ models

class Reviewer(BaseModel):
    specialty: str | None = None
    licensure: list[str] = Field(default_factory=list)


class Citation(BaseModel):
    """One guideline part the reviewer cited, with the sections (and pages) of that part."""

    part: str | None = Field(description="Guideline part id from the rulebook (cpmtg-2016, "
                                         "acoem-low-back-2004, ...), 'non-mtus', or None if unknown.")
    guideline: str = Field(description="The guideline as the letter names it.")
    sections: list[str] = Field(default_factory=list)
    pages: list[str] = Field(default_factory=list)


class ParsedItem(BaseModel):
    item: str = Field(description="The disputed item as written, unwrapped onto one line (for a "
                                  "partly authorized request, the remaining IMR eligible portion).")
    original_request: str | None = Field(
        default=None, description="For a partly authorized request: the original request.")
    authorized: str | None = Field(
        default=None, description="For a partly authorized request: what the Claims Administrator "
                                  "authorized.")
    outcome: Literal["upheld", "overturned"]
    claims_administrator_guideline: str | None = Field(
        default=None, description="The claims administrator's guideline statement, unwrapped.")
    reviewer_guideline: str | None = Field(
        default=None, description="The guideline(s) the reviewer cited, without sections and "
                                  "pages; several are joined with '; '.")
    reviewer_guideline_text: str | None = Field(
        default=None, description="The reviewer's whole guideline statement, unwrapped.")
    sections: list[str] = Field(default_factory=list)
    pages: list[str] = Field(default_factory=list)
    rationale: str = ""
    citations: list[Citation] = Field(
        default_factory=list, description="The reviewer's citations, one per guideline part, in "
                                          "letter order.")
    mtus: bool | None = Field(
        default=None, description="False when the reviewer relied only on non-MTUS sources.")


class ParsedLetter(BaseModel):
    source: str = "<letter>"
    layout: Literal["A", "B"]
    case_number: str | None = None
    reviewer: Reviewer = Field(default_factory=Reviewer)
    patient_age: int | None = None
    patient_sex: Literal["male", "female"] | None = None
    injury_date: dt.date | None = None
    ur_date: dt.date | None = Field(default=None, description="Date of the UR decision.")
    rfa_date: dt.date | None = Field(default=None, description="Date of the RFA, when stated.")
    diagnoses: list[str] = Field(default_factory=list)
    medications: list[str] = Field(
        default_factory=list, description="Drugs documented as taken, lowercase as written.")
    summary: str = Field(default="", description="The clinical case summary, unwrapped.")
    items: list[ParsedItem]
    warnings: list[str] = Field(
        default_factory=list, description="Doubts about the reading (e.g. a letter that ends "
                                          "without a full stop), for a person to check.")

    _facts: Any = PrivateAttr(default=None)  # narrative analysis shared with letter_to_case


# ------------------------------------------------------------------ reading files

def read_letter(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Text of a letter: a .txt file as is, a PDF's text layer (PDFium, else pypdf)."""
    source = str(path)
    from ..yamlio import read_limited  # regular files only (no FIFO, device, loop), at most max_bytes
    data = read_limited(path, max_bytes=max_bytes, what="a letter file (.txt or .pdf)")
    if not data.strip():
        raise InputError(source, "file is empty", expected="the text or PDF of an IMR letter")
    if data.lstrip()[:5] == b"%PDF-":
        return _pdf_text(data, source)
    if _looks_binary(data):
        raise InputError(source, "binary file that is not a PDF",
                         expected="the text or PDF of an IMR letter")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # older extractions
    if not text.strip():
        raise InputError(source, "file is empty", expected="the text or PDF of an IMR letter")
    return text


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls > len(head) * 0.05


def _pdf_text(data: bytes, source: str) -> str:
    """The text layer of a PDF, line by line as pypdf gives it.

    PDFium (pypdfium2) reads the letters about fifteen times faster than pypdf (most of them are
    AES-encrypted with an empty user password, which pypdf decrypts in pure Python); pypdf is the
    fallback where pypdfium2 is not installed. On the 129 real letters both give the same lines
    once PDFium's end-of-line hyphen (U+0002 or U+FFFE, its line break removed) is written back
    as "-" and a line break, and CRLF as LF; only blank lines and runs of spaces differ, which
    the parser ignores.
    """
    try:
        import pypdfium2  # noqa: F401 - imported late: text letters never need it
    except ImportError:  # pragma: no cover - pypdfium2 is a dependency
        pages = _pdf_pages_pypdf(data, source)
    else:
        pages = _pdf_pages_pdfium(data, source)
    text = "\n\n".join(pages)
    if not text.strip():
        raise InputError(source, "PDF has no extractable text (a scanned image?)",
                         expected="a PDF with a text layer")
    return text


_PDFIUM_HYPHEN = re.compile("[\x02\ufffe](?:\r?\n)?")  # its end-of-line hyphen, line break removed


def _pdf_pages_pdfium(data: bytes, source: str) -> list[str]:
    import pypdfium2 as pdfium

    try:
        doc = pdfium.PdfDocument(data)  # an encrypted PDF opens with the empty password or not at all
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
            raise InputError(source, "PDF is encrypted and needs a password",
                             expected="an unencrypted PDF or the letter's text") from None
        raise InputError(source, f"unreadable PDF ({exc})", expected="a valid PDF") from None
    except Exception as exc:  # noqa: BLE001 - malformed PDFs fail in many ways
        raise InputError(source, f"unreadable PDF ({type(exc).__name__}: {exc})",
                         expected="a valid PDF") from None
    try:
        pages = []
        for i in range(len(doc)):
            page = doc[i]
            textpage = page.get_textpage()
            raw = textpage.get_text_range()
            textpage.close()
            page.close()
            pages.append(_PDFIUM_HYPHEN.sub("-\n", raw).replace("\r\n", "\n").replace("\r", "\n"))
        return pages
    except Exception as exc:  # noqa: BLE001
        raise InputError(source, f"unreadable PDF ({type(exc).__name__}: {exc})",
                         expected="a valid PDF") from None
    finally:
        doc.close()


def _pdf_pages_pypdf(data: bytes, source: str) -> list[str]:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # owner-password-only PDFs open with an empty password
            except Exception:  # noqa: BLE001 - pypdf raises several kinds here
                opened = 0
            if not opened:
                raise InputError(source, "PDF is encrypted and needs a password",
                                 expected="an unencrypted PDF or the letter's text")
        return [page.extract_text() or "" for page in reader.pages]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed PDFs fail in many ways
        raise InputError(source, f"unreadable PDF ({type(exc).__name__}: {exc})",
                         expected="a valid PDF") from None


# ------------------------------------------------------------------ vocabulary

# Drug names come from the rulebook's vocabulary (rules/vocabulary/drugs.yaml), the one place
# brands and aliases are kept; these few are named in letters but have no vocabulary entry.
_LETTER_ONLY_NAMES: dict[str, str] = {
    "dantrolene": "dantrolene", "dantrium": "dantrolene",
    "methyl salicylate": "methyl salicylate/menthol", "lidocaine": "lidocaine",
    "acetaminophen": "acetaminophen", "tylenol": "acetaminophen",
}
# an item-level placeholder ("compound cream"), not a medication a narrative reports
_NOT_A_MEDICATION = frozenset({"compounded topical"})
_FIRST_LINE_CLASSES = ("nsaid", "anticonvulsant", "antidepressant")


def _regioned_modalities() -> frozenset[str]:
    """Modalities some rule applies to only in named body regions."""
    return _regioned_modalities_in(_rulebook())


@functools.cache
def _regioned_modalities_in(rulebook: Any) -> frozenset[str]:
    return frozenset(m for r in rulebook.rules if r.applies_to.regions for m in r.applies_to.modalities)


_rulebooks: dict[str | None, Any] = {}


def _rulebook() -> Any:
    """The rulebook in effect ($MTUS_RULES, else the bundled one), loaded once per process and
    rules directory: its drug vocabulary, part titles and section names are the extractor's
    vocabulary. The tables built from it are cached per rulebook, so a process that reads under
    one rules directory and then another reads the second's vocabulary."""
    key = os.environ.get("MTUS_RULES")
    found = _rulebooks.get(key)
    if found is None:
        from ..rules.rulebook import load_rulebook
        found = _rulebooks[key] = load_rulebook()
    return found


def _drug_tables() -> tuple[dict[str, str], dict[str, list[str]], frozenset[str], dict[str, str]]:
    """(name -> generic, first word -> multi-word names, first words, generic -> first-line class)."""
    return _drug_tables_in(_rulebook())


@functools.cache
def _drug_tables_in(rulebook: Any) -> tuple[dict[str, str], dict[str, list[str]], frozenset[str], dict[str, str]]:
    vocabulary = rulebook.drugs
    names = {n: g for n, g in vocabulary.names().items() if g not in _NOT_A_MEDICATION}
    names.update(_LETTER_ONLY_NAMES)
    multi: dict[str, list[str]] = {}
    for name in sorted(names, key=len, reverse=True):
        if " " in name:
            multi.setdefault(name.split()[0], []).append(name)
    first_line = {g: cls for g, spec in vocabulary.drugs.items()
                  for cls in _FIRST_LINE_CLASSES if cls in spec.classes}
    first_line["acetaminophen"] = "acetaminophen"
    return names, multi, frozenset(n.split()[0] for n in names), first_line


FIRST_LINE_ORDER = ("nsaid", "physical_therapy", "home_exercise", "acupuncture", "chiropractic",
                    "antidepressant", "anticonvulsant", "acetaminophen", "trigger_point_injection",
                    "epidural_steroid_injection")

_WORD = re.compile(r"[A-Za-z][A-Za-z-]*")


def _drug_mentions(text: str, words: set[str] | None = None) -> list[tuple[str, str, int]]:
    """(generic, name as written in lowercase, position) for each drug named in ``text``.

    A word lookup rather than one large alternation: several times faster on letters.
    """
    names, multi_word, first_words, _ = _drug_tables()
    low = text.lower()
    if words is not None and words.isdisjoint(first_words):
        return []
    out = []
    skip_to = -1
    for m in _WORD.finditer(low):
        if m.start() < skip_to:
            continue
        word = m.group()
        for name in multi_word.get(word, ()):
            if low.startswith(name, m.start()):
                out.append((names[name], name, m.start()))
                skip_to = m.start() + len(name)
                break
        else:
            generic = names.get(word)
            if generic:
                out.append((generic, word, m.start()))
    return out


# the therapies whose visits, prior sessions and functional improvement the extractor reads
_THERAPIES = ("chiropractic", "acupuncture", "aquatic_therapy", "massage", "physical_therapy")
# programs counted in visits whose item states them (their rules read course_sessions)
_VISIT_PROGRAMS = ("work_conditioning",)


_therapies: tuple[tuple, dict[str, Any]] | None = None


def _therapy_patterns() -> dict[str, Any]:
    """The therapies' patterns of the rulebook in effect (items.yaml's text_modalities)."""
    global _therapies
    patterns = modality_patterns()     # one tuple per rulebook
    found = _therapies     # read once: another thread may replace it meanwhile
    if found is None or found[0] is not patterns:
        found = _therapies = (patterns, {name: rx for name, rx in patterns if name in _THERAPIES})
    return found[1]


_NON_DRUG_FIRST_LINE = (
    ("physical_therapy", re.compile(r"\b(?i:physical therapy|physiotherapy)\b|\bPT\b")),
    ("home_exercise", re.compile(r"\bhome exercises?\b|\bHEP\b|\bexercise program\b", re.I)),
    ("acupuncture", re.compile(r"\bacupunct\w*", re.I)),
    ("chiropractic", re.compile(r"chiropract\w*", re.I)),
    ("trigger_point_injection", re.compile(r"\btrigger point injections?\b|\bTPIs?\b", re.I)),
    ("epidural_steroid_injection", re.compile(r"\bepidural\b|\bESIs?\b", re.I)),
    ("nsaid", re.compile(r"\bNSAIDs?\b|\banti-?inflammator(?:y|ies)\b", re.I)),
)
_CHIRO_PT = re.compile(r"\bchiro(?:practic\s+|-?)(?:physio|physical)\w*(?:\s+therapy)?$", re.I)
_K_FIRST_LINE = ("physical therapy", "physiotherapy", "exercise", "hep", "acupunct", "chiropract",
                 "trigger point", "tpi", "epidural", "esi", "nsaid", "inflammator")


# ------------------------------------------------------------------ text helpers

_SPACES = re.compile(r"[ \t\u00a0]+")
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_DATE = (r"(?:\d{1,2}[/-]\d{1,2}[/-](?:\d{4}|\d{2})(?!\d)"
         r"|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4})")


def _lines(text: str) -> list[str]:
    out = []
    for raw in text.replace("\r", "\n").replace("\f", "\n").split("\n"):
        if raw and not raw.isspace():
            out.append(" ".join(raw.split()))
    return out


def _unwrap(lines: Iterable[str]) -> str:
    """Join wrapped lines into one; a line ending in a hyphen joins without a space."""
    out = ""
    for line in lines:
        if not out:
            out = line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha():
            out += line
        else:
            out += " " + line
    return _SPACES.sub(" ", out).strip()


_NUMERIC_DATE = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{2}|\d{4})")
_WORDY_DATE = re.compile(r"([A-Za-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})")


def _date(text: str | None) -> dt.date | None:
    if not text:
        return None
    m = _NUMERIC_DATE.fullmatch(text.strip())
    try:
        if m:
            month, day, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
            if year < 100:
                year += 2000 if year < 50 else 1900
            return dt.date(year, month, day)
        m = _WORDY_DATE.fullmatch(text.strip())
        if m and m.group(1)[:3].lower() in _MONTHS:
            return dt.date(int(m.group(3)), _MONTHS[m.group(1)[:3].lower()], int(m.group(2)))
    except ValueError:
        return None
    return None


# a sentence ends at its punctuation (and closing quote or bracket) before whitespace and a
# capital or digit, or at "word.Next" glued by the PDF; the pattern starts at the punctuation,
# so the scan is a character search rather than a lookbehind at every position
_SENT_BREAK = re.compile(r"(?<=[a-z]{2})[.](?=[A-Z](?:[a-z]|\s))|[.!?][\"')\]](?=\s)|"
                         r"[.!?](?=\s+[\"(\[]?[A-Z0-9])")


def _sentences(text: str) -> list[str]:
    out, pos = [], 0
    for m in _SENT_BREAK.finditer(text):
        s = text[pos:m.end()].strip()
        if s:
            out.append(s)
        pos = m.end()
    s = text[pos:].strip()
    if s:
        out.append(s)
    return out


def _split_outside_parens(text: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


# ------------------------------------------------------------------ letter structure

# headers normally stand alone on a line; text run onto the same line is kept
_H_SUMMARY = re.compile(r"^CLINICAL CASE SUMMARY\b:?\s*")
_H_ITEMS_A = re.compile(r"^IMR ISSUES,? DECISIONS,? AND RATIONALES\b:?\s*")
_H_ITEMS_B = re.compile(r"^IMR DECISION\(?S\)? AND RATIONALE\(?S\)?:?\s*")
_LETTER_MARKERS = re.compile(
    r"CLINICAL CASE SUMMARY|HOW THE IMR FINAL DETERMINATION|Independent Medical Review|"
    r"MAXIMUS Federal Services|Final Determination", re.I)
_ITEMS_BOILERPLATE = re.compile(
    r"^The Final Determination was based on decisions for the disputed items/services"
    r"(?: set forth below:?)?$", re.I)
_SUMMARY_BOILERPLATE = re.compile(
    r"^The (?:expert|physician) reviewer developed the following clinical case summary based on "
    r"a review of the case file, including all medical records:\s*", re.I)

_OUTCOME_LINE = re.compile(r"^(?P<name>.*\S)\s*:\s*(?P<out>Upheld|Overturned)\.?$", re.I)
_OUTCOME_ALONE = re.compile(r"^(?P<out>Upheld|Overturned)\.?$", re.I)
_A_FIELD_START = re.compile(r"^(?:Claims Administrator guideline|MAXIMUS guideline|"
                            r"Decision rationale)\s*:", re.I)
_A_FIELDS = re.compile(
    r"^(?:Claims Administrator guideline:\s*(?P<ca>.*?)\s*)?"
    r"(?:MAXIMUS guideline:\s*(?P<mx>.*?)\s*)?"
    r"(?:Decision rationale:\s*(?P<rat>.*))?$", re.I | re.S)
_ENDS_SENTENCE = re.compile(r"[.!?:;][\"')\]]*$")

_CASE_NUMBER = re.compile(r"Case Number:\s*(CM\d{2}-\d+)", re.I)
_HEAD_INJURY = re.compile(r"Date of Injury:\s*(" + _DATE + ")", re.I)
_HEAD_UR = re.compile(r"(?:Date of UR Decision|UR Denial Date):\s*(" + _DATE + ")", re.I)
_CA_LINE = re.compile(r"^Claims Administrator guideline\s*:", re.I)
_B_ITEM_START = re.compile(r"^(?P<num>\d{1,2})\.\s+(?P<rest>.*)$")
_B_OUTCOME = re.compile(
    r"^(?P<name>.*?)\s+(?:is|are)\s+(?P<neg>not\s+)?medically\s+necessary\s+and\s+appropriate\.?\s*$",
    re.I)
_B_GUIDELINES = re.compile(r"^Guidelines Used in the Review\b", re.I)
_B_FIELDS = re.compile(
    r"^(?:Guidelines Used in the Review:\s*(?P<g>.*?)\s*)?"
    r"(?:Rationale for the Decision:\s*(?P<rat>.*))?$", re.I | re.S)


def parse_letter(text: str, source: str = "<letter>") -> ParsedLetter:
    """Parse an IMR letter (layout A or B) into its reviewer, dates, items and narrative."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(source, "letter is empty", expected="the text of an IMR letter")
    lines = _lines(text)
    idx_items, layout, header = None, None, None
    for i, line in enumerate(lines):
        header = _H_ITEMS_A.match(line) or _H_ITEMS_B.match(line)
        if header:
            idx_items, layout = i, "A" if header.re is _H_ITEMS_A else "B"
            break
    if idx_items is None:
        if _LETTER_MARKERS.search(text):
            raise InputError(source, "no decided items: the letter has no 'IMR ISSUES, DECISIONS "
                             "AND RATIONALES' or 'IMR DECISION(S) AND RATIONALE(S)' section "
                             "(truncated?)",
                             expected="a complete IMR final determination letter")
        raise InputError(source, "not an IMR final determination letter",
                         expected="an IMR letter with a CLINICAL CASE SUMMARY and an "
                                  "'IMR ISSUES, DECISIONS AND RATIONALES' section")
    idx_summary = next((i for i, l in enumerate(lines[:idx_items]) if _H_SUMMARY.match(l)), None)
    head = lines[:idx_summary if idx_summary is not None else idx_items]
    summary_lines = []
    if idx_summary is not None:
        summary_lines = [_H_SUMMARY.sub("", lines[idx_summary])] + lines[idx_summary + 1:idx_items]
    summary = _SUMMARY_BOILERPLATE.sub("", _unwrap(summary_lines))
    rest = lines[idx_items][header.end():]
    body = ([rest] if rest else []) + lines[idx_items + 1:]
    warnings: list[str] = []
    if layout == "A":
        items = _items_layout_a(body, source, warnings)
    else:
        items = _items_layout_b(body, source, warnings)
    head_text = _unwrap(head)

    letter = ParsedLetter(source=source, layout=layout, items=items, summary=summary,
                          reviewer=_reviewer(head_text), warnings=warnings)
    m = _CASE_NUMBER.search(head_text)
    letter.case_number = m.group(1) if m else None
    facts = _Narrative(letter.summary, letter.items, head_text)
    letter._facts = facts
    letter.patient_age, letter.patient_sex = facts.age, facts.sex
    letter.injury_date, letter.ur_date, letter.rfa_date = facts.injury, facts.ur, facts.rfa
    letter.diagnoses = facts.diagnoses
    _resolve_citations(letter.items, letter.ur_date or letter.rfa_date)
    letter.medications = [m.written for m in facts.meds]
    return letter


def _ragged_end(tail: str) -> bool:
    """A letter whose last sentence lacks only its full stop: the sentence is the reviewer's
    conclusion ("The request ... is not medically necessary"), so nothing was cut off."""
    last = _sentences(tail)[-1] if tail.strip() else ""
    return bool(_CONCLUSION.search(last))


def _truncated(source: str, what: str) -> InputError:
    return InputError(source, f"letter appears truncated: {what}",
                      expected="every item with its outcome and rationale")


def _items_layout_a(body: list[str], source: str, warnings: list[str]) -> list[ParsedItem]:
    start = 0
    while start < len(body) and _ITEMS_BOILERPLATE.match(body[start]):
        start += 1
    outcomes: list[tuple[int, int, str]] = []  # (last line of the name, outcome line, outcome)
    for i in range(start, len(body)):
        m = _OUTCOME_LINE.match(body[i])
        if m and not _A_FIELD_START.match(body[i]):
            outcomes.append((i, i, m.group("out").lower()))
        elif (m := _OUTCOME_ALONE.match(body[i])) and i > start and body[i - 1].endswith(":"):
            outcomes.append((i - 1, i, m.group("out").lower()))
    if not outcomes:
        rest = _unwrap(body[start:])
        if rest:
            raise _truncated(source, f"item {rest[:60]!r} has no outcome")
        raise InputError(source, "letter has no items",
                         expected="at least one decided item under 'IMR ISSUES, DECISIONS AND "
                                  "RATIONALES'")
    n_fields = sum(1 for l in body if _CA_LINE.match(l))
    if n_fields > len(outcomes):
        raise _truncated(source, f"{n_fields} items have guidelines but only {len(outcomes)} "
                                 "have an outcome")

    items: list[ParsedItem] = []
    bound = start
    spans = []
    for name_end, out_line, outcome in outcomes:
        # The item name may wrap: walk back over lines that do not end a sentence.
        first = _name_start(body, bound, name_end)
        spans.append((first, name_end, out_line, outcome))
        # the next item's name cannot reach back past this item's rationale start
        rat = next((j for j in range(out_line + 1, len(body))
                    if body[j].lower().startswith("decision rationale")), out_line)
        bound = rat + 1
    for k, (first, name_end, out_line, outcome) in enumerate(spans):
        name_lines = body[first:name_end + 1]
        if out_line == name_end:  # "Name: Upheld" on one line
            name_lines[-1] = _OUTCOME_LINE.match(name_lines[-1]).group("name")
        name, original, authorized = _disputed_portion(_unwrap(name_lines).rstrip(":").strip())
        end = spans[k + 1][0] if k + 1 < len(spans) else len(body)
        block = body[out_line + 1:end]
        fields = _A_FIELDS.match(_unwrap(block))
        if fields is None or not fields.group("rat"):
            raise _truncated(source, f"item {name!r} has no decision rationale")
        if k + 1 == len(spans):
            # text after the last complete sentence: a cut-off rationale or next item
            tail = len(block)
            while tail > 0 and not _ENDS_SENTENCE.search(block[tail - 1]):
                tail -= 1
            if tail < len(block):
                dangling = _unwrap(block[tail:])
                if _ragged_end(dangling):
                    warnings.append(f"the letter ends without a full stop after item {name!r}: "
                                    f"{dangling[-60:]!r}; read as complete")
                else:
                    raise _truncated(source, f"the letter ends mid-sentence after item {name!r}: "
                                         f"{dangling[-60:]!r} has no outcome or sentence end")
        mx = fields.group("mx")
        guideline, sections, pages = _parse_guideline_a(mx or "")
        citations = _citations_a(mx or "")
        items.append(ParsedItem(citations=citations,
            item=name, outcome=outcome, original_request=original, authorized=authorized,
            claims_administrator_guideline=fields.group("ca") or None,
            reviewer_guideline=guideline, reviewer_guideline_text=mx or None,
            sections=sections, pages=pages, rationale=fields.group("rat").strip()))
    return items


# A partly authorized request: "X was the original request. Y was authorized by the Claims
# Administrator. The remaining IMR eligible portion of the original request, Z is: Upheld", or
# "... The Claims Administrator authorized Y, leaving the original request IMR eligible. The
# original request, Z is: Upheld". The disputed item is Z.
_PARTIAL_MARK = re.compile(r"\boriginal request\b|\bClaims Administrator\b|\bIMR eligible\b", re.I)
_PARTIAL_START = re.compile(r"\bwas the original request\b", re.I)
_PARTIAL = re.compile(
    r"^(?:(?:The request for\s+)?(?P<orig>.*?)\s+was the original request\.\s*)?"
    r"(?P<auth>.*?)\s*"
    r"\b(?:The remaining IMR eligible portion of the original request|The original request)"
    r"\s*(?:,|\bis\b)\s*(?P<z>.+?)(?:\s+(?:is|are))?\s*$", re.I | re.S)
_AUTHORIZED = re.compile(
    r"^(?P<y>.+?)\s+(?:was|were)\s+(?:authorized|modified|certified|approved)\b[^.]*\.?$|"
    r"^The Claims Administrator (?:authorized|modified|certified|approved)\s+(?:the request to\s+)?"
    r"(?P<y2>.+?),?\s+leaving\b", re.I | re.S)


def _name_start(body: list[str], bound: int, name_end: int) -> int:
    """First line of an item name that ends on line ``name_end``: names wrap over any number of
    lines; a partly authorized item's name holds whole sentences back to "X was the original
    request"."""
    first = name_end
    while first - 1 >= bound:
        line = body[first - 1]
        if _A_FIELD_START.match(line) or _ITEMS_BOILERPLATE.match(line):
            break
        if _ENDS_SENTENCE.search(line) and not line.endswith(":"):
            joined = _unwrap(body[first:name_end + 1])
            partial = (_PARTIAL_MARK.search(joined) and not _PARTIAL_START.search(joined)
                       and not _CONCLUSION.search(line))
            if not partial:
                break
        elif _CONCLUSION.search(line):
            break  # the previous rationale's conclusion, even without its full stop
        first -= 1
    return first


def _disputed_portion(name: str) -> tuple[str, str | None, str | None]:
    """(disputed item, original request, authorized part) of an item name."""
    if not _PARTIAL_MARK.search(name):
        return name, None, None
    m = _PARTIAL.match(name)
    if not m or not m.group("z"):
        return name, None, None
    auth = None
    a = _AUTHORIZED.match(m.group("auth").strip())
    if a:
        auth = (a.group("y") or a.group("y2") or "").strip() or None
    orig = m.group("orig")
    z = m.group("z").strip().rstrip(":").strip()
    return z, (orig.strip() if orig else None), auth


_DECISION_BASED = re.compile(r"(?:^|(?<=[.;]))\s*Decision based on\s+", re.I)
_GUIDELINE_NAME = re.compile(
    r"^(?:the\s+)?(?:CA\s+)?(?:MTUS\s+)?(?:ACOEM\b[^,.]*?(?:Guidelines?|Chapter\s+\d+)"
    r"|(?:Chronic Pain|Acupuncture|Post-?surgical)(?:\s+Medical)?(?:\s+Treatment)?(?:\s+Guidelines?)?"
    r"|MTUS\b)"
    r"(?:,?\s*\(?(?:May\s+)?(?:19|20)\d\d\)?)?(?:\s*[<§]?\s*9792\.\d+(?:\.\d+)*)?", re.I)
_PAGES = re.compile(r"\bPages?(?:\(s\))?\s*:?\s*(\d+(?:\s*[-–]\s*\d+)?(?:\s*(?:,|and)\s*\d+"
                    r"(?:\s*[-–]\s*\d+)?)*)", re.I)
_PAGE_SEP = re.compile(r"\s*(?:,|\band\b)\s*")
_NON_MTUS = re.compile(r"Non-?\s?MTUS", re.I)
_B_CA = re.compile(r"The Claims Administrator", re.I)
_B_REVIEWER = re.compile(r"The (?:Physician|Expert) Reviewer", re.I)
_B_BASED_ON = re.compile(r"\b(?:based (?:his/her|his|her|the) decision on|relied on|cited)\s+(.*)",
                         re.I)
_B_PART_OF_MTUS = re.compile(r",?\s*which (?:is|are) (?:not )?part of the MTUS.*$", re.I)
_LEADING_THE = re.compile(r"^the\s+", re.I)
_SECTIONS_LABEL = re.compile(r"\bSections?(?:\(s\))?\s*:\s*", re.I)
_GLUED = re.compile(r"(?<=[a-z])(?=[A-Z][a-z])")


def _pages(text: str) -> list[str]:
    return ["".join(p.split()).replace("–", "-") for p in _PAGE_SEP.split(text) if p.strip()]


def _parse_guideline_a(text: str) -> tuple[str | None, list[str], list[str]]:
    """Split 'Decision based on <guideline>[, Section(s): ...] [Page(s): ...]' clauses."""
    if not text.strip():
        return None, [], []
    clauses = [c.strip() for c in _DECISION_BASED.split(text) if c.strip()]
    names, sections, pages = [], [], []
    for clause in clauses:
        clause = clause.rstrip(". ")
        if _NON_MTUS.match(clause):
            names.append(clause)  # other guidelines cite no MTUS sections or pages
            continue
        pm = _PAGES.search(clause)
        if pm:
            pages.extend(_pages(pm.group(1)))
            clause = clause[:pm.start()].rstrip(" ,.")
        sm = _SECTIONS_LABEL.search(clause)
        if sm:
            name, rest = clause[:sm.start()].rstrip(" ,."), clause[sm.end():]
        else:
            nm = _GUIDELINE_NAME.match(clause)
            cut = nm.end() if nm and nm.end() > 0 else len(clause)
            name, rest = clause[:cut].rstrip(" ,."), clause[cut:]
        names.append(name)
        for part in _section_names(rest):
            # sections run together in extraction: "Manual therapy & manipulationPain Outcomes"
            sections.extend(s.strip() for s in _GLUED.split(part) if s.strip())
    return "; ".join(n for n in names if n) or None, sections, pages


_CLAUSE_START = re.compile(r"(?:^|(?<=[.;]))\s*Decision based on\s+", re.I)
_NON_MTUS_CLAUSE = re.compile(r"^(?:the\s+)?Non-?\s?MTUS(?:\s+Citations?)?\s*:?\s*", re.I)
# "MTUS Low Back Complaints 2004, Section(s): A, and Chronic Pain Medical Treatment 2016,
# Section(s): B": a second guideline part starts at a title with a year and its own sections
_NEXT_PART = re.compile(r",\s+and\s+(?=(?:the\s+)?(?:MTUS\s+)?[A-Z][^:;.]*?\b(?:19|20)\d\d\b"
                        r"(?:\s+Guidelines?)?\s*,?\s*Sections?(?:\(s\))?\s*:)")
_URL_SPLIT = re.compile(r",\s*(?=https?://)")
_OTHER_SOURCE = re.compile(r"\s+and\s+(?=Other Medical Treatment Guidelines?\b)", re.I)
_ENDS_TITLE_YEAR = re.compile(r"\b(?:19|20)\d\d(?:\s+Guidelines?)?\s*$")
_RATIONALE_PAGES = re.compile(r"\bpages?\s+(\d+(?:\s*[-–]\s*\d+)?(?:\s*(?:,|and)\s*\d+"
                              r"(?:\s*[-–]\s*\d+)?)*)\b", re.I)
NON_MTUS = "non-mtus"


def _citations_a(text: str) -> list[Citation]:
    """One citation per guideline part from 'Decision based on ...' clauses."""
    starts = list(_CLAUSE_START.finditer(text))
    if not starts:
        if _NON_MTUS_CLAUSE.match(text.strip()) or _GUIDELINE_NAME.match(text.strip()):
            return _citation_clauses([text])
        return []  # "The Expert Reviewer did not cite any medical evidence for its decision."
    clauses = [text[m.end():(starts[k + 1].start() if k + 1 < len(starts) else len(text))]
               for k, m in enumerate(starts)]
    return _citation_clauses(clauses)


def _citations_b(text: str) -> list[Citation]:
    clauses = []
    for sent in _sentences(text):
        m = _B_BASED_ON.search(sent)
        if m:
            clause = _B_PART_OF_MTUS.sub("", m.group(1))
            if re.search(r"\bnot part of the MTUS\b", sent, re.I):
                clause = "Non-MTUS Citation " + clause
            clauses.append(clause)
    return _citation_clauses(clauses, label_optional=True)


def _citation_clauses(clauses: list[str], label_optional: bool = False) -> list[Citation]:
    out: list[Citation] = []
    for clause in clauses:
        clause = clause.strip().rstrip(". ")
        if not clause:
            continue
        nm = _NON_MTUS_CLAUSE.match(clause)
        if nm:
            for rest in _OTHER_SOURCE.split(clause[nm.end():].strip()):
                out.append(Citation(part=NON_MTUS, guideline=rest or "Non-MTUS",
                                    sections=[p.strip() for p in _URL_SPLIT.split(rest) if p.strip()]))
            continue
        for sub in _split_parts(clause):
            sub = sub.strip().rstrip(". ")
            pages: list[str] = []
            pm = _PAGES.search(sub)
            if pm:
                pages = _pages(pm.group(1))
                sub = (sub[:pm.start()] + sub[pm.end():]).strip(" ,.")
            sm = _SECTIONS_LABEL.search(sub)
            if sm:
                name, rest = sub[:sm.start()].rstrip(" ,."), sub[sm.end():]
            else:
                gm = _GUIDELINE_NAME.match(sub)
                cut = gm.end() if gm and gm.end() > 0 else len(sub)
                name, rest = sub[:cut].rstrip(" ,."), sub[cut:]
            name = _LEADING_THE.sub("", name)
            sections = []
            for part in _whole_sections(rest):
                sections.extend(x.strip() for x in _GLUED.split(part) if x.strip())
            out.append(Citation(part=None, guideline=name, sections=sections, pages=pages))
    return out


def _split_parts(clause: str) -> list[str]:
    """Split a clause at ', and <Title> <year>, Section(s):' once the part before it has had its
    own sections (a title such as 'Forearm, Wrist, and Hand Complaints' holds ', and')."""
    out, start = [], 0
    for m in _NEXT_PART.finditer(clause):
        if (_SECTIONS_LABEL.search(clause, start, m.start())
                or _ENDS_TITLE_YEAR.search(clause, start, m.start())):
            out.append(clause[start:m.start()])
            start = m.end()
    out.append(clause[start:])
    return out


def _whole_sections(text: str) -> list[str]:
    """Comma-separated section names, keeping names that hold commas whole: a name the rulebook
    knows ("NSAIDs, GI symptoms & cardiovascular risk"), a part in lowercase ("Opioids, criteria
    for use"), and a run of single words closed by '& X' ("Knee, Forearm, Wrist, & Hand")."""
    parts = _split_outside_parens(text.strip(" ,."))
    known = _known_sections()
    out: list[str] = []
    i = 0
    while i < len(parts):
        for j in range(len(parts), i + 1, -1):  # the longest known name first
            joined = ", ".join(parts[i:j])
            if joined.lower() in known:
                out.append(joined)
                i = j
                break
        else:
            part = parts[i]
            if out and part[:1].islower():
                out[-1] += ", " + part
            elif out and part.startswith("&"):
                # merge the run of single words before it
                run = [out.pop()]
                while out and len(out[-1].split()) == 1 and len(run[0].split()) == 1:
                    run.insert(0, out.pop())
                out.append(", ".join(run + [part]))
            else:
                out.append(part)
            i += 1
    return out


def _known_sections() -> frozenset[str]:
    """Section names as the rulebook's rule files cite them, lowercase."""
    return _known_sections_in(_rulebook())


@functools.cache
def _known_sections_in(rulebook: Any) -> frozenset[str]:
    names = set()
    for rule in rulebook.rules:
        for cite in rule.parts.values():
            if cite.section:
                names.add(cite.section.lower())
        for extra in getattr(rule, "also_cites", None) or ():
            section = getattr(extra, "section", None)
            if section:
                names.add(section.lower())
    return frozenset(names)


_TITLE_NOISE = frozenset({"mtus", "ca", "the", "and", "guideline", "guidelines", "of"})


def _title_words(title: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9]+", title.lower()) if w not in _TITLE_NOISE)


@functools.cache
def _part_titles(rulebook: Any) -> tuple[tuple[str, frozenset[str]], ...]:
    """(part id, title words) for every guideline part of the rulebook's editions."""
    seen: dict[str, frozenset[str]] = {}
    for edition in rulebook.manifest.editions:
        for part in edition.parts:
            seen.setdefault(part.id, _title_words(part.title))
    return tuple(seen.items())


def _resolve_part(guideline: str, day: dt.date | None) -> str | None:
    rulebook = _rulebook()
    edition = rulebook.edition_for(day) if day is not None else None
    return _resolve_part_in(guideline, edition.id if edition else None, rulebook)


@functools.lru_cache(maxsize=4096)
def _resolve_part_in(guideline: str, edition_id: str | None, rulebook: Any) -> str | None:
    """The rulebook part a guideline name cites: its title words, with the year when given;
    without a year, the part in force on the letter's date."""
    words = _title_words(guideline)
    if not words:
        return None
    years = {w for w in words if re.fullmatch(r"(?:19|20)\d\d", w)}
    plain = words - years
    candidates = []
    for pid, title in _part_titles(rulebook):
        t_years = {w for w in title if re.fullmatch(r"(?:19|20)\d\d", w)}
        t_plain = title - t_years
        if years and not years & t_years:
            continue
        if plain == t_plain:
            candidates.append(pid)
    if not candidates:  # "Chronic Pain Medical Treatment 2016 Guidelines", extra words
        best = 0.0
        for pid, title in _part_titles(rulebook):
            t_years = {w for w in title if re.fullmatch(r"(?:19|20)\d\d", w)}
            if years and not years & t_years:
                continue
            t_plain = title - t_years
            overlap = len(plain & t_plain) / len(plain | t_plain) if plain | t_plain else 0
            if overlap >= 0.6 and overlap > best:
                best, candidates = overlap, [pid]
    if len(candidates) > 1 and edition_id is not None:
        edition = rulebook.edition(edition_id)
        in_force = [pid for pid in candidates if edition and edition.part(pid)]
        candidates = in_force or candidates
    return candidates[0] if len(candidates) == 1 else (candidates[-1] if candidates else None)


def _resolve_citations(items: list[ParsedItem], day: dt.date | None) -> None:
    for item in items:
        for cite in item.citations:
            if cite.part is None:
                cite.part = _resolve_part(cite.guideline, day)
        mtus_cites = [c for c in item.citations if c.part != NON_MTUS]
        item.mtus = bool(mtus_cites)
        if len(mtus_cites) == 1 and not mtus_cites[0].pages:
            # pages the rationale prints ("pages 89-90", "Page 300") belong to its one guideline
            pages = [p for m in _RATIONALE_PAGES.finditer(item.rationale) for p in _pages(m.group(1))]
            mtus_cites[0].pages = list(dict.fromkeys(pages))


def _section_names(text: str) -> list[str]:
    """Comma-separated section names; a part in lowercase continues the previous name
    ("Opioids, criteria for use" is one section)."""
    out: list[str] = []
    for part in _split_outside_parens(text.strip(" ,.")):
        if out and part[:1].islower():
            out[-1] += ", " + part
        else:
            out.append(part)
    return out


def _items_layout_b(body: list[str], source: str, warnings: list[str]) -> list[ParsedItem]:
    start = 0
    while start < len(body) and _ITEMS_BOILERPLATE.match(body[start]):
        start += 1
    heads: list[tuple[int, int, str, str]] = []  # (first line, last line, name, outcome)
    expected = 1
    i = start
    while i < len(body):
        m = _B_ITEM_START.match(body[i])
        if m and int(m.group("num")) == expected:
            found = False
            for j in range(i, min(i + 4, len(body))):  # the item sentence may wrap
                if j > i and _B_GUIDELINES.match(body[j]):
                    break
                om = _B_OUTCOME.match(_unwrap([m.group("rest")] + body[i + 1:j + 1]))
                if om:
                    outcome = "upheld" if om.group("neg") else "overturned"
                    heads.append((i, j, om.group("name").strip(), outcome))
                    expected += 1
                    found = True
                    i = j
                    break
            # a numbered line inside a rationale is not an item; one before guidelines is
            if not found and (expected == 1 or any(_B_GUIDELINES.match(l) for l in body[i + 1:i + 6])):
                raise _truncated(source, f"item {m.group('rest')[:60]!r} has no outcome")
        i += 1
    if not heads:
        rest = _unwrap(body[start:])
        if rest:
            raise _truncated(source, f"item {rest[:60]!r} has no outcome")
        raise InputError(source, "letter has no items",
                         expected="numbered items under 'IMR DECISION(S) AND RATIONALE(S)'")
    n_guidelines = sum(1 for l in body if _B_GUIDELINES.match(l))
    if n_guidelines > len(heads):
        raise _truncated(source, f"{n_guidelines} items have guidelines but only {len(heads)} "
                                 "have an outcome")
    items = []
    for k, (first, last, name, outcome) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(body)
        block = _unwrap(body[last + 1:end])
        fields = _B_FIELDS.match(block)
        if fields is None or not fields.group("rat"):
            raise _truncated(source, f"item {name!r} has no rationale")
        if k + 1 == len(heads) and not _ENDS_SENTENCE.search(body[end - 1]):
            if not _ragged_end(block):
                raise _truncated(source, f"the rationale of item {name!r} ends mid-sentence")
            warnings.append(f"the letter ends without a full stop after item {name!r}: "
                            f"{block[-60:]!r}; read as complete")
        ca, rev = _split_guidelines_b(fields.group("g") or "")
        guideline, sections, pages = _parse_guideline_b(rev or "")
        citations = _citations_b(rev or "")
        items.append(ParsedItem(citations=citations,item=name, outcome=outcome, claims_administrator_guideline=ca,
                                reviewer_guideline=guideline, reviewer_guideline_text=rev,
                                sections=sections, pages=pages,
                                rationale=fields.group("rat").strip()))
    return items


def _split_guidelines_b(text: str) -> tuple[str | None, str | None]:
    ca, rev = [], []
    for s in _sentences(text):
        if _B_CA.match(s):
            ca.append(s)
        elif _B_REVIEWER.match(s):
            rev.append(s)
        elif rev:
            rev.append(s)
        else:
            ca.append(s)
    return (" ".join(ca) or None), (" ".join(rev) or None)


def _parse_guideline_b(text: str) -> tuple[str | None, list[str], list[str]]:
    """'The Physician Reviewer based his/her decision on the <guideline>, <section>, pages N-M,
    which is part of the MTUS.' (several such sentences may follow)."""
    names, sections, pages = [], [], []
    for s in _sentences(text):
        m = _B_BASED_ON.search(s)
        if not m:
            continue
        clause = _B_PART_OF_MTUS.sub("", m.group(1)).rstrip(". ")
        pm = _PAGES.search(clause)
        if pm:
            pages.extend(_pages(pm.group(1)))
            clause = (clause[:pm.start()] + clause[pm.end():]).strip(" ,.")
        nm = _GUIDELINE_NAME.match(clause)
        cut = nm.end() if nm and nm.end() > 0 else len(clause)
        names.append(_LEADING_THE.sub("", clause[:cut].strip(" ,.")))
        sections.extend(_section_names(clause[cut:]))
    return "; ".join(n for n in names if n) or None, sections, pages


_LICENSURE = re.compile(r"State\(s\) of Licensure:\s*(.*?)\s*(?=Certification\(s\)/Specialty:|$)",
                        re.I)
_SPECIALTY = re.compile(r"Certification\(s\)/Specialty:\s*(.*?)\s*(?=State\(s\) of Licensure:|$)",
                        re.I)
_PROSE_CREDENTIALS = re.compile(
    r"Board[- ]Certified in (?P<spec>[^,.]+?)(?:,? (?:has|with) a sub-?specialty in "
    r"(?P<sub>[^,.]+?))?,? and (?:is )?licensed to practice in (?P<lic>[^.]+?)\.", re.I)


_LIST_SEP = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")


def _split_list(text: str) -> list[str]:
    return [p.strip() for p in _LIST_SEP.split(text) if p.strip()]


def _reviewer(head: str) -> Reviewer:
    lic, spec = _LICENSURE.search(head), _SPECIALTY.search(head)
    if lic or spec:
        return Reviewer(specialty=(spec.group(1).rstrip(". ") or None) if spec else None,
                        licensure=_split_list(lic.group(1).rstrip(". ")) if lic else [])
    m = _PROSE_CREDENTIALS.search(head)
    if m:
        spec = m.group("spec").strip()
        if m.group("sub"):
            spec += ", " + m.group("sub").strip()
        return Reviewer(specialty=spec, licensure=_split_list(m.group("lic")))
    return Reviewer()


# ------------------------------------------------------------------ narrative facts

# sentences about the patient's records (as opposed to guideline text)
_STRONG_NARRATIVE = re.compile(
    r"\b(?:patient|injured worker|worker|claimant|employee|applicant|he|she|his|her|him|treater|"
    r"treating (?:physician|provider|doctor)|in this case|in the case of|progress (?:report|note)s?|"
    r"medications? (?:are|were|include[sd]?|including)|treatment to date|"
    r"objective findings|examination revealed|on (?:physical )?exam(?:ination)?)\b", re.I)
# "documented" alone is weak: "improvement must be documented" is guideline text
_WEAK_NARRATIVE = re.compile(r"\b(?:records?|notes?|documentation|documents?|documented)\b", re.I)
_GUIDELINE_WORDS = re.compile(
    r"\b(?:MTUS|ODG|ACOEM|guidelines?|recommend\w*|Delphi|UpToDate|should|must|requires?|"
    r"required|may be|is indicated)\b", re.I)
_CONCLUSION = re.compile(
    r"medically (?:un)?necessary|\bnot medically\b|\bcriteria\b[^.]*\bnot (?:been )?met\b|"
    r"^(?:Hence|Therefore|Thus|As such|Consequently)\b", re.I)
_UR_SENTENCE = re.compile(
    r"\butilization review\b|\bUR\b|\bnon-? ?certif\w*|\bapplication for IMR\b|\bIMR\b|"
    r"\bClaims Administrator\b|\b(?:was|were|been)\s+(?:authorized|approved|certified)\b|"
    r"\bprior (?:review|determination)\b", re.I)
# treatments planned, ordered or recommended are not treatments tried
_PLANNED = re.compile(
    r"\b(?:ordered|plan(?:ned|s)?\b(?:\s+(?:is|was|included?|includes))?|was to (?:receive|start|begin|"
    r"undergo)|will (?:receive|start|begin|undergo|continue|be)|to be (?:started|scheduled)|"
    r"scheduled|recommended|recommends|referr(?:ed|al)|pending|requested|awaiting|arranged|"
    r"would (?:like|benefit|consider)|candidate for)\b", re.I)
# history words that make a rationale sentence report what this patient has had
_HAD = re.compile(r"\b(?:prior|previous(?:ly)?|already|received|completed|attempted|attended|"
                  r"treated with|has had|had|underwent|undergone|tried|failed|included|includes|"
                  r"history of|treatment to date|took|taking|taken|using|utilizing|prescribed|"
                  r"(?:is|was|are|were)\s+(?:also\s+|currently\s+|still\s+)?on)\b", re.I)
_GENERAL_STATEMENT = re.compile(r"\bcan be\b|\bis used\b|\bare used\b|\bmay\b", re.I)
_REQUEST_SENTENCE = re.compile(
    r"\brequest\w*|\bRFA\b|\bplan of care\b|\btreatment plan\b|\bplan includes\b|"
    r"\bconsideration of\b", re.I)
_ANAPHORA = re.compile(r"\b(?:it|its|this medication|the medication|this drug|this treatment|"
                       r"these treatments|this therapy)\b", re.I)

_NEGATION = re.compile(r"\b(?:no|not|never|without|denie[sd]|negative for|absence of|lack of|absent|"
                       r"none|nor|neither)\b|n't\b", re.I)
# "no evidence ... to suggest X": these negate to the end of the clause, not just nearby words
_NEG_EXTENDED = re.compile(
    r"\b(?:no|without|lack of|absence of)\s+(?:[a-z]+\s+){0,2}?(?:evidence|documentation|"
    r"indication|mention|record|discussion)s?\b|\b(?:not|never)\s+(?:been\s+)?(?:document\w*|noted|evident|mention\w*|"
    r"found|identified|demonstrated)\b|"
    r"\bfail(?:ed|s)? to (?:provide|document|show|indicate|demonstrate|establish|note|describe)\b|"
    r"\b(?:does|did|do) not (?:indicate|suggest|reveal|show|document|establish|demonstrate|mention|"
    r"describe|detail|support|provide|note)\b", re.I)
_NEG_SCOPE_END = re.compile(r"\b(?:and|with|but|which|who|after|although|though|because)\b",
                            re.I)
_NEG_WINDOW = 5  # words between a plain negation cue and the term it negates
_HEDGE = re.compile(r"\b(?:possible|possibly|may|might|could|would|will|suspect\w*|questionable|"
                    r"probable|rule out|r/o|if|unless|whether|should|must|requires?|required|"
                    r"recommend\w*|consider\w*|candidate|planned|scheduled|pending)\b", re.I)
_CLAUSE_SPLIT = re.compile(r";|\bbut\b|\bhowever\b|\balthough\b|\bwhile\b|\bwhereas\b|"
                           r",\s*and\s+(?=(?:this|the|he|she|it|there|his|her)\b)|"
                           r"\s+and\s+(?=(?:the patient|he|she|the (?:injured )?worker|there)\b)",
                           re.I)

_ACUTE = re.compile(r"\bacute\s+(?:[a-z]+\s+){0,3}?(?:flare(?:-|\s)?ups?|exacerbations?)\b|"
                    r"\bflare(?:-|\s)?ups?\b|\bexacerbations?\b", re.I)
_EXAM_CUE = re.compile(r"\b(?:exam\w*|revealed|palpa\w*|objective\w*|findings?|noted|present|"
                       r"there (?:was|were|is|are)|evidence of|notable for|showed|shows|assessment|"
                       r"positive|treated for|diagnos\w*)\b", re.I)
_COMPLAINT_CUE = re.compile(r"\b(?:complain\w*|described|reports?|reported|reporting|medications? for|"
                            r"diagnostic studies|studies)\b", re.I)
_SPASM = re.compile(r"\bspasms?\b(?!\s+flare|\s+exacerbation)", re.I)
# depression as a condition of the patient (the SSRI section's indication); "depressed reflexes"
# and a shoulder's depression (a motion, CM17-0008479) are no mood
_DEPRESSION = re.compile(r"(?<!shoulder )(?<!scapular )(?<!scapula )\bdepression\b|\bdepressive\b"
                         r"|\bdepressed mood\b", re.I)
_RTW_FALSE = re.compile(r"\btemporar(?:il)?y (?:and )?(?:totally |total )?(?:\w+ )?(?:disabled|diabled|disable|"
                        r"disability)\b|\btotally (?:\w+ )?disabled\b|"
                        r"\bTTD\b|(?<!needs to be taken )(?<!to place him )(?<!to place her )\b(?:off|out of) work\b|"
                        r"\bnot (?:currently )?working\b|"
                        r"\bhas not returned to work\b|\bunable to (?:return to )?work\b", re.I)
_RTW_TRUE = re.compile(
    r"\b(?:returned|return|released|able) to (?:full |modified |regular |light |restricted )?(?:duty|work|duties)\b|"
    r"\b(?:working|work) (?:(?:with (?:some )?)?(?:full|modified|regular|light)|with (?:some )?"
    r"(?:restrictions?|modifications?|limitations?))"
    r"(?: (?:duty|duties|work))?\b|\b(?:is|was) (?:currently |apparently )?working\b|"
    r"\bwork status (?:is|was) (?:described as )?(?:regular|modified|full|light)\b|"
    r"\b(?:on|perform) (?:modified|light|regular) (?:duty|duties|work)\b|"
    r"\bmodified (?:work )?duties\b|\bcontinued to work\b", re.I)

_RTW_UNSURE = re.compile(r"\bwas or was not\b|\bwhether\b|\battempts?\b", re.I)
_FI_NEG = re.compile(
    r"\bno\s+(?:[a-z'-]+\s+){0,6}?(?:improvement|benefit)\b|\bonly subjective\b|"
    r"\bnot\s+(?:[a-z'-]+\s+){0,6}?(?:improvement|beneficial)\b|\bwithout\s+(?:[a-z'-]+\s+){0,6}?improvement\b|"
    r"\b(?:lack|absence) of\s+(?:[a-z'-]+\s+){0,6}?(?:improvement|response|benefit)\b|"
    r"\bminimal(?: to no)? improvement\b|\bhad not alleviated\b|"
    # "argued against the applicant's having effected functional improvement": a denial, not an assertion
    r"\b(?:argu|militat|weigh|spok|speak)\w*\s+against\s+(?:[a-z'-]+\s+){0,6}?(?:improvement|benefit)\b|"
    r"\bimprovement\b[^.]{0,60}?\b(?:was|were|is|are|has|have)\s+not\s+(?:been\s+)?(?:indicated|"
    r"documented|noted|provided|reported|shown|demonstrated)\b|"
    r"\bnot\s+document\w*\s+(?:its|the|any)\s+(?:impact|effect|efficacy|benefit|response)\b|"
    r"\b(?:response|efficacy|benefit|impact|effect)\b[^.]{0,40}?\b(?:is|are|was|were)\s+not\s+"
    r"(?:provided|documented|noted|reported|stated|given)\b|"
    r"\b(?:lack|absence) of (?:documentation|evidence)\b[^.;]{0,100}?\b(?:improvement|benefit)\b|"
    r"\b(?:did|does) not (?:provide|document|show|indicate|demonstrate|appear)\b[^.;]{0,100}?"
    r"\b(?:improvement|benefit|progress)\b", re.I)
_FI_PERCENT = re.compile(r"\bimproved\s+(?:by\s+)?(\d{1,3})\s*%|(\d{1,3})\s*%\s+improvement\s+in\s+"
                         r"(?:function|activities|ADL)", re.I)
_FI_POS = re.compile(
    r"\bfunctional (?:improvement|gains?)\b|"
    r"\b(?:improved|increased|better)\s+(?:(?!with\b)[a-z]+\s+){0,2}?(?:function|ADLs?|activities of daily "
    r"living|walking|sitting|standing|work capacity)\b|\breduction in work restrictions\b|"
    r"\b(?:with|reported|showed|had|shown)\s+(?:some\s+|significant\s+)?(?:improvement|benefit)\b|"
    r"\b(?:improved|increased|better)\s+(?:[a-z]+\s+){0,2}?(?:range of motion|ROM|strength|mobility|"
    r"tolerance)\b|\bimprovement in (?:[a-z]+\s+){0,3}?(?:function\w*|range of motion|ADLs?|"
    r"activities)\b|\b(?:quantifiable|measurable|objective) (?:clinical )?(?:change|gains?)\b", re.I)
# guideline statements of what improvement would show ("Additional treatment is based upon
# documented objective, functional improvement"; "The intended goal ... is functional improvement")
_FI_GENERAL = re.compile(r"\bbased (?:up)?on\b|\bgoals?\b|\bintended\b|\bassessed\b|\bto establish\b|"
                         r"\bphilosophy\b|\bdefined\b|\btime to produce\b|\bif the (?:patient|worker|claimant)\b",
                         re.I)
# radiculopathy on examination: the provocative tests letters report
_SLR = r"(?:straight[- ]legs?[- ]rais\w*|SLR|Spurling\W?s?)"
_RADIC_EXAM = re.compile(r"\b(?:positive|\+)\s+(?:bilateral\s+|seated\s+|supine\s+)?" + _SLR + r"\b|"
                         r"\b" + _SLR + r"(?:\s+tests?)?(?:\s+(?:on the\s+)?(?:left|right|bilaterally))?"
                         r"\s+(?:was|were|is|are)?\s*positive\b|"
                         r"\bpositive\b[^.;]{0,60}?\bstraight[- ]legs?[- ]rais\w*|"
                         r"\bradicul\w+\s+[^.;]{0,40}?\bupon\s+straight[- ]legs?[- ]rais\w*", re.I)
_RADIC_NEG = re.compile(r"\bnegative\s+(?:bilateral\s+|seated\s+|supine\s+)?(?:[a-z]+\s+){0,3}?(?:and\s+)?"
                        + _SLR + r"\b|\b" + _SLR + r"(?:\s+(?:tests?|testing))?\s+(?:was|were|is|are)\s+"
                        r"negative\b", re.I)
# "a 70% reduction in low back pain following lumbar epidural steroid procedures"
_INJECTION_RELIEF = re.compile(r"\b(\d{1,3})\s*%\s+(?:reduction|relief|improvement|decrease)\b[^.]{0,60}?"
                               r"\b(?:following|after|from|with)\b[^.]{0,40}?\b(?:epidural|ESI|injections?|blocks?)\b",
                               re.I)
# objective neurologic findings on examination (subjective numbness alone is not one)
_NEURO_DEFICIT = re.compile(
    r"\b[0-4](?:\+|-)?\s*(?:/|out of)\s*5\b(?!\s*(?:pain|/10))|\b5\s*(?:-|minus)\s*(?:/|out of)\s*5\b|"
    r"\b(?:decreased|diminished|reduced|altered|absent|loss of|impaired|abnormal)\s+(?:[a-z0-9-]+\s+){0,5}?"
    r"(?:sensation|sensory|light touch|pinprick|strength|motor|reflex(?:es)?|DTRs?)\b|"
    r"\b(?:hypo|hyp)(?:a)?esthesia\b|\b(?:motor|muscle)\s+weakness\b|\bhyposens\w+|"
    r"\b(?:mild|moderate|marked|severe|significant)\s+weakness\b|"
    r"\bpositive\b[^.;]{0,60}?\bstraight[- ]legs?[- ]rais\w*|\bupon straight[- ]legs?[- ]rais\w*|"
    r"\bstraight[- ]legs?[- ]rais\w*(?:\s+tests?)?\s+(?:was|were|is|are)\s+positive\b|"
    r"\bweak\s+(?:grip|dorsiflexion|plantar|extensor|flexor|hip|knee|ankle|wrist|deltoid|biceps|triceps)\b|"
    r"\breflex(?:es)?\s+(?:were|was|are|is)\s+(?:decreased|diminished|absent|hypoactive|asymmetric)\b|"
    r"\b(?:evidence of|findings? (?:of|indicative of))\s+(?:nerve|neurolog\w*)\s+compromise\b", re.I)
_NEURO_NORMAL = re.compile(
    r"\bneuro(?:logically|vascularly)?\s+intact\b|\bneurologically intact\b|"
    r"\b(?:sensation|sensory(?: exam\w*)?|strength|motor(?: strength)?|reflexes)\s+(?:\w+\s+){0,3}?"
    r"(?:was|were|is|are)\s+(?:\w+\s+)?(?:intact|normal|unremarkable|symmetric)\b|"
    r"\b(?:intact|normal|unremarkable)\s+(?:\w+\s+){0,2}?(?:sensation|sensory|strength|motor|"
    r"neurologic(?:al)? exam\w*|reflexes)\b|\b5\s*/\s*5\s+(?:\w+\s+){0,2}?(?:strength|motor)\b|"
    r"\b(?:motor|strength)\s+(?:\w+\s+){0,2}?5\s*/\s*5\b|"
    r"\bno\s+(?:\w+\s+){0,2}?(?:focal\s+)?neurolog\w*\s+(?:deficits?|abnormalit\w+|findings|dysfunction|"
    r"compromise)\b|\bno\s+(?:motor|sensory|neurologic\w*)\s+(?:or\s+\w+\s+)?(?:deficits?|weakness)\b|"
    r"\bno\s+(?:\w+\s+)?weakness\b|"
    r"\b(?:sensory|motor|neurologic(?:al)?|neurovascular)\s+(?:exam\w*\s+)?(?:was\s+|is\s+|were\s+)?"
    r"(?:intact|normal|unremarkable|within normal limits)\b", re.I)
# what an examination with no deficit is said to lack, read for its denial ("a lack of significant
# neurological deficits", "did not indicate the presence of a definitive neurological deficit")
_NEURO_FINDING = re.compile(
    r"\bneurolog\w*\s+(?:deficits?|dysfunction|compromise|abnormalit\w+|findings)\b|"
    r"\b(?:specific (?:spinal )?nerve|nerve (?:root )?(?:compromise|entrapment|compression))\b", re.I)
_RED_FLAG = re.compile(r"\bred[- \"]*flags?\b", re.I)
_RED_FLAG_FOUND = re.compile(r"\bred[- \"]*flags?\b[^.]{0,20}?\b(?:were|was|are|is)\s+(?:identified|"
                             r"present|noted|found)\b", re.I)
_RED_FLAG_TERMS = re.compile(
    r"(?<!stress )\bfractur\w*(?! boot)|\bdislocat\w+|\btumou?rs?\b|\bmalignan\w+|\bcauda equina\b|"
    r"\b(?:osteomyelitis|septic|abscess)\b|\bvascular compromise\b|"
    r"\b(?:bowel|bladder)(?: (?:or|and) (?:bowel|bladder))? (?:dysfunction|incontinence|retention)\b|"
    r"\bsaddle an(?:a)?esthesia\b", re.I)
_GENERAL_LIST = re.compile(r"\bsuch as\b|\bincluding\b|\be\.g\.|\bto rule out\b|\brule out\b|"
                           r"\bconcerns? for\b|\bsuspicion of\b", re.I)
_SURGERY = (r"(?:surg(?:ery|eries|ical)(?:\s+(?:inter-?vention|repair|treatment|consultation|"
            r"options?|procedures?))?|operative (?:intervention|treatment)|arthroscop\w*|"
            r"(?:hernia|tendon|rotator cuff|menisc\w+|ligament|labral) repair|fusion|decompression|"
            r"arthroplasty|(?:knee|hip|shoulder) replacement|carpal tunnel release)")
_SURGERY_CONSIDERED = re.compile(
    r"\b(?:consider\w*|contemplat\w*|candidate for|plan(?:ned|s)? (?:for|is)|scheduled for|"
    r"will (?:likely )?need|would (?:need|consider|require)|preparation for|recommend\w* (?:for )?|"
    r"discuss\w*|willing\w* to (?:consider|undergo)|indications? for|need for|"
    r"request(?:ed|s)?(?: for)?|plan(?:ned)? (?:included|includes)|scheduling|to undergo)\s+"
    r"(?:[a-z-]+\s+){0,4}?" + _SURGERY + r"\b|"
    r"\b" + _SURGERY + r"\s+(?:was|is|has been)\s+(?:being\s+)?(?:requested|planned|scheduled|"
    r"recommended|considered|contemplated|discussed)\b|"
    r"\b(?:undergoing|undergo)\s+" + _SURGERY + r"\b", re.I)
_NO_SURGERY = re.compile(r"\bno\s+(?:plan|discussion|mention|indication)s?\s+(?:[a-z]+\s+){0,4}?"
                         + _SURGERY + r"\b|\bnot (?:a )?(?:surgical )?candidate\b", re.I)
_CONSERVATIVE = r"(?:conservative\s+(?:care|treatments?|therapy|therapies|measures|management|modalities)|" \
                r"physical therapy|therapy|treatments?|first-line medications)"
_CONSERVATIVE_FAILED = re.compile(
    r"\b(?:failed|failure of|failing|exhausted)\s+(?:[a-z-]+\s+){0,5}?" + _CONSERVATIVE + r"\b|"
    r"\b" + _CONSERVATIVE + r"\s+(?:\w+\s+){0,4}?(?:ha(?:s|ve|d) |had not |)failed\b|"
    r"\bconservative (?:care|treatments?|therapy|management) (?:of|for|over) (?:at least |over |more than )?"
    r"(?:\d+|one|two|three|four|six|several) (?:weeks?|months?)\b|"
    r"\btrial and failure\b|\btrialed and failed\b|\bdespite\s+(?:[a-z-]+\s+){0,3}?(?:" + _CONSERVATIVE
    + r"|medications?|injections?|chiropractic|acupuncture)\b",
    re.I)
# what the record says of conservative care, read for its denial ("no documentation of the
# response to conservative therapy", "no indication the patient has completed conservative treatment")
_CONSERVATIVE_COURSE = re.compile(
    r"\b(?:(?<!functional )response to|failure of|trial (?:and failure )?of|attempts? at|course of|completed|exhausted|"
    r"trialed and failed|failed|undergone)\s+(?:[a-z0-9-]+\s+){0,5}?" + _CONSERVATIVE + r"\b|"
    r"\b(?:recent|any|adequate)\s+conservative\s+(?:care|treatments?|management|therapy|measures)\b", re.I)
_NOT_RESPONDED = re.compile(
    r"\b(?:not|failed to|did not|has not|have not)\s+(?:respond(?:ed)?|improved?)\s+(?:to|with)\s+"
    r"(?:[a-z-]+\s+){0,3}?" + _CONSERVATIVE + r"\b|"
    r"\b" + _CONSERVATIVE + r"\b[^.;]{0,40}?\b(?:but\s+)?(?:without\s+(?:documented\s+)?|"
    r"(?:with|had)\s+(?:no|minimal|little|minimal to no)\s+(?:documented\s+)?)(?:improvement|benefit|relief)\b|"
    r"\bnot (?:proven )?(?:particularly )?beneficial\b|"
    r"\bno (?:significant |lasting |sustained )?(?:improvement|benefit|relief) (?:with|from|after)\s+"
    r"(?:[a-z-]+\s+){0,3}?(?:" + _CONSERVATIVE + r"|medications?|injections?|chiropractic|acupuncture)\b",
    re.I)
# symptoms that have not improved, in a letter that documents conservative care tried
_NOT_IMPROVED = re.compile(r"\b(?:has|have|had) not (?:necessarily |significantly |really |much )?improved\b|"
                           r"\bno (?:significant )?improvement (?:in|of) (?:the |his |her )?(?:pain|symptoms)\b|"
                           r"\bminimal to no improvement\b|\bcontinue[sd]? to (?:have|report|complain of) "
                           r"(?:[a-z-]+\s+){0,3}?pain despite\b", re.I)
# conservative care that helps has not failed ("physical therapy was helping her shoulder")
_CARE_HELPING = re.compile(
    r"\b(?:" + _CONSERVATIVE + r"|chiropractic|acupuncture)\b(?:\s+(?:visits?|sessions?))?\s+"
    r"(?:is|was|were|has|have|had)(?: been)?\s+(?:helping|helped|helpful|beneficial)\b|"
    r"\bimproving (?:with|after|from) (?:[a-z-]+\s+){0,3}?(?:" + _CONSERVATIVE + r")\b", re.I)
# a prior review's reasons, told in the summary, are not facts about the patient ("previously
# non-certified ... due to lack of failure of conservative treatment")
_FIRST_LINE_WORD = re.compile(r"\bfirst\W?line\b", re.I)
_UR_REASON = re.compile(r"\b(?:non-?\s?certif\w*|denied|modified|not (?:certified|approved|authorized))\b"
                        r"[^.]{0,200}?\b(?:due to|because|secondary to|given|for lack|citing|as there)\b",
                        re.I)
_CONSERVATIVE_NOT_DONE = re.compile(
    r"\byet to (?:complete|be completed|undergo|start|begin)\b|\bhad not undergone conservative\b|"
    r"\bhas not failed\b|\bcannot be considered as having failed\b|"
    r"\btrial and failure (?:has|have|was|were) not been (?:submitted|documented|provided)\b", re.I)
_NO_BENEFIT = re.compile(r"\b(?:no|minimal|without|little)\s+(?:[a-z]+\s+){0,3}?(?:improvement|benefit|relief)\b|"
                         r"\bnot (?:\w+\s+){0,2}?(?:beneficial|helpful|effective)\b", re.I)
_THERAPY_WORDS = re.compile(r"\bphysical therapy\b|\bPT\b|\bconservative\b|\bsessions?\b|\btherapist\b|"
                            r"\banti-?inflammator\w+\b|\bNSAIDs?\b|\bchiropract\w+|\bacupunct\w+", re.I)
# a rationale sentence about the patient's records rather than the guideline
_RECORD_CLAIM = re.compile(
    r"\b(?:records?|documentation|documented|documents?|notes?|reports?|evidence|indication|"
    r"examination|exam|patient|claimant|(?:injured )?worker|applicant|employee|he|she|his|her|"
    r"there (?:is|are|was|were)|identified|noted|found|present|evident|absent|strength|sensation|"
    r"reflex(?:es)?|unremarkable|intact|submitted)\b", re.I)
# a rationale sentence opened as the guideline's words ("The ACOEM guidelines note that ... in
# patients who ... would consider surgery an option") states the guideline, not this record
_GUIDELINE_SAYS = re.compile(
    r"^\s*(?:the\s+)?(?:(?:CA|California|MTUS|ACOEM|ODG|CPMTG|Chronic|Pain|Medical|Treatment)[\s/]+){0,5}guidelines?\s+"
    r"(?:also\s+)?(?:notes?|states?|indicates?|says?|specif(?:y|ies)|recommends?)\s+that\b", re.I)
_K_RECORD = frozenset({
    "records", "record", "documentation", "documented", "documents", "document", "notes", "note",
    "reports", "report", "evidence", "indication", "examination", "exam", "patient", "claimant",
    "worker", "applicant", "employee", "he", "she", "his", "her", "identified", "noted", "found",
    "present", "evident", "absent", "strength", "sensation", "reflex", "reflexes", "unremarkable",
    "intact", "submitted"})
_GUIDELINE_TEXT = re.compile(
    r"\b(?:MTUS|ODG|ACOEM|guidelines?|Delphi|UpToDate|should|must|may be|is indicated|are indicated|"
    r"recommend\w*|criteria|indications? for (?:imaging|MRI|surgery)|patients|warrant|include)\b", re.I)
# an injection or surgery planned for the body part (imaging clarifies the anatomy before it)
_INVASIVE = (r"(?:(?:corticosteroid|cortisone|steroid|epidural|facet|joint|subacromial|intra-?articular)\s+)?"
             r"(?:injections?|surgery|surgical (?:repair|intervention)|arthroscop\w*|decompression|"
             r"fusion|arthroplasty|repair)")
_INVASIVE_PLANNED = re.compile(
    r"\b" + _INVASIVE + r"\s+(?:is|was|are|were|has been|had been)\s+(?:being\s+)?(?:contemplated|planned|"
    r"scheduled|authorized|approved|certified|pending)\b|"
    r"\b(?:prior to|before|in preparation for)\s+(?:the|a|an|his|her)\s+(?:planned\s+|scheduled\s+)?"
    + _INVASIVE + r"\b|"
    r"\b(?:planned|scheduled|upcoming|pending)\s+" + _INVASIVE + r"\b|"
    r"\bscheduled (?:for|to undergo)\s+(?:a |an |the )?(?:[a-z-]+\s+){0,3}?" + _INVASIVE + r"\b", re.I)
# body regions a red flag may concern together (a wrist fracture is a hand-and-wrist problem)
# body parts outside the rulebook's regions, and the spine named without a level: an item that
# names one is not given a region from the diagnoses
_OTHER_ANATOMY = re.compile(r"\b(?:head|brain\w*|skull|face|facial|eyes?|ears?|jaw|tmj|teeth|dental|chest|ribs?|"
                            r"abdom\w*|pelvi\w*|groin|hernia\w*|skin|bladder|heart|cardi\w*|lungs?|arms?|legs?|"
                            r"extremit\w*|whole body|full body)\b", re.I)
_SPINE_WORDS = re.compile(r"\b(?:spine|spinal|back)\b", re.I)
_REGION_GROUP = {"forearm": "hand", "wrist": "hand", "carpal_tunnel": "hand", "ankle": "foot",
                 "thoracic": "spine", "cervical": "spine", "lumbar": "spine"}
# weakness from pain or of a joint's motion is musculoskeletal, not a neurologic deficit
_PAIN_LIMITED = re.compile(r"\b(?:strength|weakness|/5|of 5)\b[^.;]{0,40}?\bwith (?:significant |severe |)pain\b|"
                           r"\bpain[- ]limited\b|\b(?:due|secondary) to pain\b|"
                           r"\b(?:hip|shoulder|knee|joint) strength\b", re.I)
# where a sign places a neurologic finding though no region word is said: the straight-leg raise,
# the lumbosacral roots and a deficit of the leg are the low back's (its roots supply the leg; no
# finding of the leg bears on the neck or an arm), Spurling's, the arm's roots and reflexes the
# neck's, the deltoid and the rotator cuff the shoulder's
_NEURO_TERMS = re.compile(f"(?:{_NEURO_DEFICIT.pattern})|(?:{_RADIC_EXAM.pattern})", re.I)
_NEURO_SIGN_REGIONS = (
    (re.compile(r"\bstraight[- ]legs?[- ]rais|\bSLR\b|\blower extremit\w*|\blegs?\b|\bcalf\b|\bthighs?\b|"
                r"\btoes?\b", re.I), "lumbar"),
    # the leg's muscles by name: the great toe's extensor (L5), tibialis anterior (L4),
    # quadriceps (L3-4), gastrocnemius (S1), and a foot drop
    (re.compile(r"\b(?:extensor hallucis|EHL|hallux|tibialis anterior|quadriceps|gastrocnemius|hamstrings?)\b|"
                r"\bfoot drop\b", re.I), "lumbar"),
    (re.compile(r"\b(?:L[1-5]|S1)\b"), "lumbar"),
    (re.compile(r"\b(?:patellar|achilles)\b", re.I), "lumbar"),
    (re.compile(r"\bSpurling|\b(?:biceps|triceps|brachioradialis)\b[^.;]{0,60}\breflex|"
                r"\breflex\w*[^.;]{0,60}\b(?:biceps|triceps|brachioradialis)\b", re.I), "cervical"),
    (re.compile(r"\bC[4-8]\b"), "cervical"),
    (re.compile(r"\b(?:deltoid|supraspinatus|infraspinatus)\b", re.I), "shoulder"),
    # the arm is the neck's roots, or the shoulder or the hand: said of the arm, a deficit stays
    # case-wide ("weakness of the right arm and leg" is not the low back's alone)
    (re.compile(r"\bupper extremit\w*|\barms?\b", re.I), None),
)
# where a procedure is planned though no region word is said
_PROCEDURE_SIGN_REGIONS = (
    (re.compile(r"\b(?:L[1-5]|S1)\b"), "lumbar"),
    (re.compile(r"\bC[2-7]\b"), "cervical"),
    (re.compile(r"\bsubacromial\b", re.I), "shoulder"),
)
# where a red flag is though no region word is said: cauda equina and its signs are the low
# back's, a root or vertebral level its spine's; a bone the body-region vocabulary does not place
# by itself, by what the fracture of it usually is (a radius fracture is the wrist's, a humerus
# fracture the shoulder's). The bones it does place (scaphoid, olecranon, malleolus, ...) are in
# rules/vocabulary/items.yaml's text_regions. Systemic red flags (a tumor history, fever) name
# none: case-wide
_RED_FLAG_SIGN_REGIONS = (
    (re.compile(r"\bcauda equina\b|\bsaddle an(?:a)?esthesia\b|\b(?:bowel|bladder)\b", re.I), "lumbar"),
    (re.compile(r"\b(?:L[1-5]|S1)\b"), "lumbar"),
    (re.compile(r"\bT(?:[1-9]|1[0-2])\b"), "thoracic"),
    (re.compile(r"\bC[1-7]\b"), "cervical"),
    (re.compile(r"\b(?:radius|radial)\b(?! head| shaft)", re.I), "wrist"),
    (re.compile(r"\bradius head\b", re.I), "elbow"),
    (re.compile(r"(?<!distal )(?<!supracondylar )\bhumer(?:us|al)\b", re.I), "shoulder"),
    # a vertebra no level word names is of the spine, at a level not said
    *((re.compile(r"(?<!lumbar )(?<!thoracic )(?<!cervical )(?<![CTLS]\d )(?<![CTL]1\d )\bvertebra\w*"
                  r"(?![^,;.]{0,20}\b[CTLS]\d)", re.I), r)
      for r in ("cervical", "thoracic", "lumbar")),
    (re.compile(r"\bpatell\w+", re.I), "knee"),
)
_K_SLR = ("slr", "straight", "spurling", "leg rais", "leg-rais")
_K_INVASIVE = ("inject", "surg", "arthroscop", "decompress", "fusion", "arthroplast", "repair")
# imaging that shows a lesion surgery treats
_SURGICAL_LESION = re.compile(
    r"\b(?:full[- ]thickness|complete|through-and-through)\s+(?:[a-z-]+\s+){0,3}?tear\b|"
    r"\b(?:herniat\w*|extru\w*|protru\w*|disc)\b[^.;]{0,80}?\b(?:compress\w*|imping\w*|effac\w*)\b"
    r"[^.;]{0,30}?\b(?:nerve roots?|thecal sac|cord)\b|"
    r"\bunstable\s+fracture\b|\bbucket[- ]handle\b", re.I)
_IMAGING_WORDS = re.compile(r"\b(?:MRI|CT|x-?rays?|radiograph\w*|imaging|arthrogram|ultrasound|scan|"
                            r"showed|shows|revealed|reveals|demonstrat\w*|indicated|impression)\b", re.I)
# an evaluation already approved: "had been approved for", "was previously approved for"
_ALREADY_APPROVED = re.compile(
    r"\b(?:had|has|have)\s+(?:already\s+|previously\s+)?been\s+(?:approved|authorized|certified)\b|"
    r"\b(?:was|were|is|are)\s+(?:already|previously)\s+(?:approved|authorized|certified)\b", re.I)
_CONSULT_WORDS = re.compile(r"\b(?:evaluation|consult\w*|referral|visit|exam)\b", re.I)
# the fact an earlier approval of the same evaluation sets: a consultation already approved is a
# prior one of the same kind; an office visit already authorized duplicates the request
_APPROVAL_FACT = {"consultation": "prior_treatment", "surgical_consultation": "prior_treatment",
                  "office_visit": "already_authorized"}
_CONSULT_GENERIC = frozenset({"evaluation", "consultation", "consult", "referral", "treatment",
                              "spine", "right", "left", "bilateral", "lumbar", "cervical", "thoracic",
                              "request", "follow", "visit", "visits", "specialist"})
_K_LESION = ("tear", "herniat", "extru", "protru", "disc", "fractur", "bucket")
_CUFF_WORDS = re.compile(r"\b(?:rotator\s+cuff|supraspinatus|infraspinatus|subscapularis|teres\s+minor)\b", re.I)
# a full-thickness rotator cuff tear on imaging, not a small one (ACOEM shoulder: small full-thickness
# tears presenting as impingement are treated conservatively first)
_FULL_THICKNESS_TEAR = re.compile(
    r"(?<!small )(?<!small, )\b(?:full[- ]thickness|complete)\s+(?:[a-z-]+\s+){0,3}?tear\b", re.I)
# pain relief on the medication: a score before and after, a percentage of relief, relief named
_ANALGESIA = re.compile(
    r"\b(?:\d{1,2}\s*%|percent)\s+(?:\w+\s+)?(?:pain\s+)?(?:relief|reduction in pain|decrease in pain)\b|"
    r"\b(?:pain|VAS)\b[^.;]{0,40}?\b(?:from|decreas\w*|reduc\w*)\s+(?:from\s+)?\d{1,2}\s*/\s*10\b|"
    r"\b\d{1,2}\s*/\s*10\s+with(?:out)?\s+(?:the\s+|his\s+|her\s+)?(?:pain\s+)?medications?\b|"
    r"\b(?:quantified|numerical|objective)\s+(?:evidence\s+of\s+)?(?:pain relief|analgesia)\b|"
    r"\bpain (?:level|score)s?\b[^.;]{0,60}?\b(?:prior to|before) (?:and after )?(?:use|taking)\b|"
    r"\bmedications?\s+(?:\w+\s+){0,2}?(?:help(?:s|ed)?|provides?|provided)\s+(?:\w+\s+)?"
    r"(?:pain\s+)?(?:relief|with (?:the |his |her )?pain)\b", re.I)
_K_ANALGESIA = ("relief", "/10", "pain level", "pain score", "analgesi", "reduction in pain",
                "decrease in pain")
# an opioid (or the pain medication) said to help: "Percocet that was helping", "Norco helps with
# the pain"; read only in a sentence that names an opioid or pain medication
_MEDICATION_HELPS = re.compile(
    r"\b(?:that|which|it|they)\s+(?:is|are|was|were|has been|have been)\s+helping\b|"
    r"\bhelping\s+(?:with\s+)?(?:the\s+|his\s+|her\s+)?pain\b|"
    r"\bhelps?\s+(?:with\s+|to\s+(?:reduce|relieve|control)\s+)?(?:the\s+|his\s+|her\s+)?pain\b", re.I)

# findings the stimulator and work-conditioning sections ask for, read only for such a request:
# a TENS trial that failed (H-wave: "only after failure of ... TENS"), or one that helps
_TENS = r"(?:(?-i:\bTENS\b)|\btranscutaneous electrical nerve stimulat\w*)"
_TENS_FAILED = re.compile(
    _TENS + r"(?:\s+(?:unit|trial|device))?[^.;]{0,50}?\b(?:fail\w*|did not (?:help|provide|improve|work|give)|"
    r"(?:no|minimal|little|without) (?:significant |lasting )?(?:relief|benefit|improvement)|"
    r"not (?:been )?(?:helpful|effective|beneficial|tolerated)|ineffective|unsuccessful)|"
    r"\b(?:fail\w*|unsuccessful|ineffective)\s+(?:\w+\s+){0,2}?" + _TENS, re.I)
_TENS_HELPS = re.compile(_TENS + r"[^.;]{0,50}?\b(?:help(?:s|ed|ful|ing)?|(?:provides?|provided|gives?|gave)\s+"
                         r"(?:\w+\s+)?(?:relief|benefit)|effective|beneficial)\b", re.I)
# therapy that improved function and then plateaued (work conditioning's entry criterion)
_THERAPY_PLATEAU = re.compile(r"\bplateau\w*|\bno (?:further|additional) (?:functional )?(?:gains?|improvement|progress)\b",
                              re.I)
_THERAPY_MENTION = re.compile(r"\btherap\w*|\bphysiotherap\w*|(?-i:\b(?:PT|OT)\b)", re.I)
# a psychological evaluation that cleared the patient for a stimulator; or none made
_PSYCH_CLEARED = re.compile(
    r"\bpsycholog\w*\s+(?:\w+\s+){0,3}?(?:clearance|cleared)\b|\bcleared\s+(?:\w+\s+){0,3}?psycholog\w*|"
    r"\bpsych\w*\s+(?:evaluation|eval|assessment|screening)\b[^.;]{0,60}?\b(?:cleared|(?:an )?appropriate "
    r"candidate|good candidate|realistic expectations)\b", re.I)
_PSYCH_EVALUATION = re.compile(r"\bpsych\w*\s+(?:evaluation|eval|assessment|screening|clearance)\b", re.I)

# a drug described as new: a trial, an initial prescription, therapy being started
_NEW_DRUG = re.compile(r"\b(?:a|an|the)\s+(?:\w+\s+)?trial (?:of|with)\b|\binitial (?:prescription|trial|dose|"
                       r"fill)\b|\binitiat(?:e|ed|ing|ion of)\b|\bnew(?:ly)? (?:prescri\w*|medications?|start)\b|"
                       r"\bfirst (?:prescribed|prescription)\b|\bnot (?:yet )?(?:started|tried)\b", re.I)
# the record's medication list ("Current medications include ...")
_MED_LIST = re.compile(r"\bmedications?\b[^.;]{0,40}?\b(?:include[sd]?|including|are|were|consist\w*|list\w*|"
                       r"of)\b|\bcurrently (?:taking|on|using|prescribed)\b|\b(?:is|was|has been) (?:taking|"
                       r"using|on)\b", re.I)

_SMALL_PERCENT = 30  # below this a self-reported % is not clinically significant improvement

_NUMBER_WORDS = {"one": 1, "a": 1, "an": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                 "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_NUM = r"(\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a|an)"
_DUR_VAGUE_MONTHS = re.compile(r"\bfor (?:several |many |a few |some )?months\b", re.I)
_DUR_YEARS = re.compile(r"\bfor (?:many |several )?years\b", re.I)
_DUR_COMPARE = re.compile(r"\b(?:longer|more|greater) than\s+(?:the\s+)?(?:recommended\s+)?"
                          r"(?:maximum\s+)?(?:of\s+)?" + _NUM + r"\s+(weeks?|months?|years?)\b", re.I)
_DUR_FOR = re.compile(r"\b(?:for|over|in excess of)\s+(?:(?:over|more than|about|approximately|"
                      r"at least)\s+)?" + _NUM + r"\s+(weeks?|months?|years?)\b(?!\s+ago)", re.I)
_DUR_WINDOW = re.compile(r"\bin excess of the (?:initial )?treatment (?:window|period)\b", re.I)
_ANY_DURATION = re.compile(r"\b(?:for|over|than|excess)\b", re.I)
_WINDOW_WEEKS = re.compile(r"\b(\d+)\s*(?:-|to)\s*(\d+)\s*weeks?\b", re.I)
_SINCE = re.compile(r"\bsince\s+(?:at least\s+)?(" + _DATE + r")|\b(?:first|initially)\s+(?:noted|prescribed|"
                    r"documented|started)\s+(?:[\w]+\s+){0,5}?(?:dated|on|in)\s+(" + _DATE + r")",
                    re.I)
_PRESCRIBED_ON = re.compile(r"\b(?:on|dated)\s+(" + _DATE + r")\b[^.]{0,120}?\bprescribed\b", re.I)
_INTERMITTENT = re.compile(r"\bintermittent(?:ly)?\b|\bas needed\b|\bp\.?r\.?n\.?\b|"
                           r"\boccasional(?:ly)?\b", re.I)
_REGULAR = re.compile(r"\bconsistently\b|\bregularly\b|\bcontinuously\b|\bevery day\b|"
                      r"\bdaily\b(?!\s+living)", re.I)
_SESSION_WORD = r"(?:sessions?|visits?|treatments?)\b"
_PRIOR_SESSIONS = re.compile(
    r"\b(?:completed|attended|had|received|undergone|underwent|finished|gone to|"
    r"(?:approved|authorized|certified) for)\s+(?:[a-z]+\s+){0,3}?(?:at least\s+|a total of\s+|"
    r"a trial of\s+(?:initial\s+)?|initial\s+)?#?" + _NUM + r"\s+(?:\(\d+\)\s+)?(?:prior\s+|previous\s+)?"
    r"(?:[a-z]+\s+){0,2}?" + _SESSION_WORD + r"|"
    r"\b" + _NUM + r"\s+(?:prior|previous|completed)\s+(?:[a-z]+\s+){0,2}?(?:sessions?|visits?)\b|"
    r"#?\b" + _NUM + r"\s+(?:\(\d+\)\s+)?(?:[a-z]+\s+){0,3}?" + _SESSION_WORD
    + r"(?:\s+[a-z]+){0,3}?\s+(?:were\s+|was\s+|had been\s+)?(?:completed|attended|authorized|approved)\b|"
    r"\b(?:authorized|approved|certified)\s+(?:a\s+)?(?:trial of\s+)?(?:initial\s+)?#?" + _NUM
    + r"\s+(?:[a-z]+\s+){0,3}?" + _SESSION_WORD + r"|"
    r"\bafter\s+(\d+)\s*/\s*\d+\s+(?:[a-z]+\s+){0,2}?(?:sessions?|visits?|treatments?)", re.I)
_NO_PRIOR_SESSIONS = re.compile(
    r"\b(?:no|not had any|has not had|never had)\s+(?:previous|prior|past)?\s*(?:[a-z]+\s+){0,2}?"
    r"(?:sessions?|visits?|treatments?|therapy)\b(?!\s+(?:notes?|records?|reports?)\b)", re.I)
_NOT_TAKEN = re.compile(r"\b(?:not able to (?:fill|obtain|get)|unable to (?:fill|obtain|get)|not filled|"
                        r"never (?:filled|taken|started|took))\b", re.I)
_PRIOR_WORDS = re.compile(r"\badditional\b|\bcontinued\b|\bfurther\b|\bmore\b|\bprior\b|"
                          r"\bpreviously\b|\balready\b|\breceived\b|\bcompleted\b|\battempted\b|"
                          r"\btreated with\b|\bhas had\b", re.I)
_INITIAL_ITEM = re.compile(r"\binitial\b|\btrial\b|\bfirst\b", re.I)
# an approval, not visits had: with the count of a partly authorized request's certified part, it is that part
_APPROVED_ONLY = re.compile(r"\b(?:authoriz|approv|certifi|modifi)\w*", re.I)
_DONE = re.compile(r"\b(?:completed|attended|received|undergone|underwent|finished|gone to|(?:has|have|had) had)\b", re.I)
_MORE_OF_SAME = re.compile(r"\badditional\b|\bcontinued\b|\bfurther\b|\bmore\b", re.I)
_RECEIVED = re.compile(r"\b(?:prior|previous(?:ly)?|already|received|completed|attempted|attended|"
                       r"treated with|has had|had|underwent|undergone|tried|failed|helped|"
                       r"included|includes|history of|treatment to date)\b", re.I)
_COMPOUND = re.compile(r"\b(?:cream|gel|ointment|lotion|topical|compound\w*|transdermal|"
                       r"patch(?:es)?)\b", re.I)
_TOPICAL_PRODUCTS = frozenset({"methyl salicylate/menthol", "lidocaine patch", "lidocaine"})
_INCOMPLETE = re.compile(r"\bincomplete\b|\bno dosage\b|\bwithout (?:a )?(?:dosage|quantity)\b",
                         re.I)

_AGE_SEX = re.compile(r"\b(\d{1,3})[- ]years?[- ]old\s+(?:[a-z]+\s+)?(male|female|man|woman|"
                      r"gentleman|lady)\b", re.I)
_INJURY = re.compile(r"\b(?:injury|injured)\b[^.]{0,40}?\b(?:on|dated|of|:)\s*(" + _DATE + ")"
                     r"|date of injury\s*(?:is|of|was|:)?\s*(" + _DATE + ")", re.I)
_UR_DATES = (
    re.compile(r"\bOn\s+(" + _DATE + r"),?\s+(?:the\s+|a\s+)?(?:Utilization Review\w*|UR)\b", re.I),
    re.compile(r"\b(?:Utilization Review\w*|UR)\b[^.]{0,60}?\b(?:on|dated)\s+(" + _DATE + ")", re.I),
    re.compile(r"\b(?:denied|non-? ?certified|modified)\s+(?:on|dated)\s+(" + _DATE + ")", re.I),
)
_RFA = r"(?:RFA|Request for Authori[sz]ation|authori[sz]ation request)"
_NOT_UR = r"(?:(?!utilization|review|UR\b|certif|denied|modif|approv)[a-z]+\s+)"
# tried in order of strength: an RFA "dated" a day outranks an RFA "of" or "on" a day
_RFA_DATES = (
    re.compile(r"\b" + _RFA + r"\b[^.]{0,40}?\b(?:dated|date was|date of)\s+(" + _DATE + ")", re.I),
    re.compile(r"\b" + _RFA + r"\b[^.]{0,40}?\b(?:on|of|is|was)\s+(" + _DATE + ")", re.I),
    # "On 11-17-2016, the Request for Authorization requested ...", "On December 13, 2016 a
    # request was made", "On 12-8-16 the treating physician requested authorization"
    re.compile(r"\bOn\s+(?:a\s+|an\s+|the\s+)?(" + _DATE + r"),?\s+" + _NOT_UR + r"{0,4}?"
               r"(?:RFA|request(?:ed|s)?|authori[sz]ation)\b", re.I),
    re.compile(r"\bdate of the request,?\s+(?:was\s+|is\s+)?(" + _DATE + ")", re.I),
    re.compile(r"\brequest (?:was|is) (?:received|made|submitted)\s+(?:on\s+)?(" + _DATE + ")", re.I),
)
_DIAG_INTRO = re.compile(
    r"\b(?:diagnos(?:es|is)\b(?:\s+[a-z]+){0,4}?\s+(?:are|is|were|include[sd]?|including|of)"
    r"|diagnosed\s+(?:as having|with)|(?:has been|being|is|was) treated for|undergoing treatment for)"
    r"\s*:?\s+(?P<list>[^.]+)", re.I)
_DIAG_PREFIX = re.compile(r"^(?:and\s+|or\s+)?(?:[\"']\s*)?(?:(?:(?:documented|noted|listed)(?:\s+(?:as|is|to be))?|"
                          r"as|is|a|an|the diagnos[ie]s of)\s+)?", re.I)
# words that enumerate parts inside one diagnosis ("strain of muscle, fascia and tendon",
# "lumbar, hip, and neck strain", "carpal tunnel syndrome, left upper limb")
_DIAG_PART_WORD = re.compile(
    r"^(?:and\s+)?(?:muscles?|fascia|tendons?|ligaments?|cervical|thoracic|lumbar|lumbosacral|sacral|"
    r"hips?|ankles?|feet|foot|knees?|shoulders?|elbows?|wrists?|hands?|fingers?|neck|back|arms?|legs?|"
    r"left|right|bilateral|subsequent|initial|sequela|upper|lower)\b", re.I)
_DIAG_QUALIFIER = re.compile(r"^(?:left|right|bilateral|subsequent|initial|sequela)\b(?:\s+\w+)?\s*"
                             r"(?:limb|hand|arm|leg|encounter|side|region|level|knee|shoulder|wrist|hip|"
                             r"ankle|foot|elbow|spine)?$|^\w+ (?:region|level|limb)$", re.I)
_LEADING_CONJ = re.compile(r"^(?:and|or)\s+")
_DIAG_GLUED = re.compile(r"(?<=(?:sis|thy|tis))\s+(?=(?:lumbar|cervical|thoracic)\b)", re.I)


# cheap keyword tests that must pass before the corresponding regex is tried
_K_UR = frozenset({"utilization", "ur", "imr"})
_K_REQUEST = frozenset({"request", "requests", "requested", "requesting", "rfa", "plan",
                        "consideration"})
_K_STRONG = frozenset({"patient", "worker", "claimant", "employee", "applicant", "he", "she", "his",
                       "her", "him", "treater", "treating", "case", "progress",
                       "medication", "medications", "treatment", "findings", "examination",
                       "exam"})
_K_WEAK = frozenset({"record", "records", "note", "notes", "documentation", "document",
                     "documents", "documented"})
_K_MODALITY = frozenset({"manipulation", "manual", "aquatic", "pool", "massage", "physical",
                         "physiotherapy", "pt"})


class _Sent:
    __slots__ = ("text", "low", "words", "block", "narrative", "conclusion", "ur", "request",
                 "drugs", "modalities", "item", "refers")

    def __init__(self, text: str, block: str, item: int | None):
        self.text = text
        self.low = low = text.lower()
        self.words = words = set(_WORD.findall(low))
        self.block = block
        self.item = item
        self.conclusion = (("necessary" in low or "criteria" in low
                            or low.startswith(("hence", "therefore", "thus", "as such",
                                               "consequently")))
                           and bool(_CONCLUSION.search(text)))
        self.ur = ((not words.isdisjoint(_K_UR) or "certif" in low or "authoriz" in low
                    or "approved" in low or "administrator" in low or "review" in low
                    or "determination" in low)
                   and bool(_UR_SENTENCE.search(text)))
        self.request = (not words.isdisjoint(_K_REQUEST)) and bool(_REQUEST_SENTENCE.search(text))
        if block == "summary":
            self.narrative = True
        elif not words.isdisjoint(_K_STRONG) and _STRONG_NARRATIVE.search(text):
            self.narrative = True
        else:
            self.narrative = (not words.isdisjoint(_K_WEAK) and bool(_WEAK_NARRATIVE.search(text))
                              and not _GUIDELINE_WORDS.search(text))
        self.drugs = _drug_mentions(text, words)
        if ("chiropract" in low or "acupunct" in low or not words.isdisjoint(_K_MODALITY)):
            self.modalities = {name for name, rx in _therapy_patterns().items() if rx.search(text)}
        else:
            self.modalities = set()
        # generics and modalities this sentence is about, named or referred to ("it")
        self.refers = {d[0] for d in self.drugs} | self.modalities

    @property
    def fact(self) -> bool:
        """A statement about this patient that is not a decision (UR's or the reviewer's)."""
        return self.narrative and not self.conclusion and not self.ur


class _Med:
    __slots__ = ("generic", "written", "since", "intermittent")

    def __init__(self, generic: str, written: str):
        self.generic, self.written = generic, written
        self.since: dt.date | None = None
        self.intermittent: bool | None = None


def _clauses(sentence: str) -> list[str]:
    return [c for c in _CLAUSE_SPLIT.split(sentence) if c.strip()]


def _negated(before: str) -> bool:
    """Whether the text just before a term negates it (a small NegEx)."""
    if _NEG_EXTENDED.search(before):
        return True
    last = None
    for last in _NEGATION.finditer(before):
        pass
    if last is None:
        return False
    gap = before[last.end():]
    return len(gap.split()) <= _NEG_WINDOW and not _NEG_SCOPE_END.search(gap)


_CUE_WINDOW = 200  # negation and hedging cues sit close before their term


def _polarity(clause: str, start: int) -> bool | None:
    """True if the term at ``start`` is asserted, False if negated, None if hedged."""
    # a bounded window keeps a long clause with many mentions linear, not quadratic
    before = clause[max(0, start - _CUE_WINDOW):start]
    if _negated(before):
        return False
    if _HEDGE.search(before):
        return None
    return True


_K_WORK = ("work ", "work,", "work.", "working", "duty", "duties", "disab", "diabled", "ttd")


def _return_to_work(sentences: Iterable[str]) -> bool | None:
    rtw = None
    for t in sentences:
        if _RTW_UNSURE.search(t):
            continue
        if _RTW_FALSE.search(t):
            return False
        m = _RTW_TRUE.search(t)
        if m:
            rtw = not _negated(t[:m.start()])
    return rtw


_K_NEURO = ("/5", "of 5", "sensation", "sensory", "strength", "reflex", "weak", "straight", "slr",
            "spurling", "neuro", "esthesia", "motor", "dermatom", "touch", "pinprick", "nerve", "dtr",
            "hyposens")
_K_RED_FLAG = ("fractur", "dislocat", "tumor", "tumour", "malignan", "cauda", "osteomyel", "septic",
               "abscess", "vascular", "flag", "bowel", "bladder", "saddle")
_K_SURGERY = ("surg", "operat", "arthroscop", "repair", "fusion", "decompress", "arthroplast",
              "replacement", "release")
_K_CONSERVATIVE = ("conservative", "therap", "treatment", "fail", "benefi", "improv", "respond",
                   "helpful", "effective", "yet to", "undergone", "pt ", "nsaid", "inflamm", "session",
                   "chiropract", "acupunct")


def _having(sentences: list[str], keys: tuple[str, ...], lows: list[str] | None = None) -> list[str]:
    """The sentences that hold one of the lowercase keywords (a cheap gate before the regexes);
    ``lows``: the sentences already lowercased."""
    if lows is None:
        lows = [t.lower() for t in sentences]
    out = []
    for t, low in zip(sentences, lows):
        for k in keys:
            if k in low:
                out.append(t)
                break
    return out


class _Rationale(str):
    """A rationale sentence: a term in it counts only outside the guideline's own words."""


def _guideline_words_before(clause: str, start: int) -> bool:
    """Guideline words in the comma-delimited segment before a term ("Guidelines recommend MRI
    for red flags", "Other criteria for special studies include a red flag")."""
    seg_start = max(clause.rfind(",", 0, start), clause.rfind(";", 0, start), clause.rfind(":", 0, start))
    return bool(_GUIDELINE_TEXT.search(clause, seg_start + 1, start))


def _asserted(sentences: Iterable[str], term: re.Pattern, hedged_ok: bool = False) -> bool:
    """Whether some sentence asserts the term (not negated; not hedged unless ``hedged_ok``)."""
    return next(_assertions(sentences, term, hedged_ok), None) is not None


def _asserting(sentences: Iterable[str], term: re.Pattern, hedged_ok: bool = False) -> list[tuple[str, str]]:
    """Each (sentence, clause) where the term is asserted, as _asserted reads them."""
    return list(_assertions(sentences, term, hedged_ok))


def _assertions(sentences: Iterable[str], term: re.Pattern, hedged_ok: bool) -> Iterable[tuple[str, str]]:
    # lazily: _asserted stops at the first
    for s in sentences:
        if not term.search(s):
            continue
        guarded = isinstance(s, _Rationale)
        for clause in _clauses(s):
            for m in term.finditer(clause):
                if guarded and _guideline_words_before(clause, m.start()):
                    continue
                p = _polarity(clause, m.start())
                if p or (hedged_ok and p is None):
                    yield s, clause
                    break


def _finding_regions(found: list[tuple[str, str]], signs: tuple = (), term: Any = None) -> list[str] | None:
    """The body regions where a finding holds, from the clauses (else the sentences) asserting it:
    the region words they name, and the regions ``signs`` (pattern, region) point to. None when
    one of them places it nowhere, or in a part no region stands for (a sign's region None): the
    finding then holds for the whole case. With ``term``, first the list segment naming each
    asserted match: a diagnosis list ("neck strain, right knee contusion, and vertebral
    fracture") places the fracture in the spine, not in every part the list names."""
    regions: set[str] = set()
    for sentence, clause in found:
        here: set[str | None] = set()
        if term is not None:
            for m in term.finditer(clause):
                if _polarity(clause, m.start()):
                    here |= _placed(clause[slice(*_segment(clause, m.start(), m.end()))], signs)
        here = here or _placed(clause, signs) or _placed(sentence, signs)
        if not here or None in here:
            return None
        regions |= here
    return [r for r in BODY_REGIONS if r in regions] or None


def _segment(text: str, start: int, end: int) -> tuple[int, int]:
    """The bounds of the list segment (between commas, semicolons, "and") holding text[start:end]."""
    cut = text.rfind(" and ", 0, start)
    lo = max(text.rfind(",", 0, start) + 1, text.rfind(";", 0, start) + 1, cut + 5 if cut >= 0 else 0)
    ends = [i for i in (text.find(",", end), text.find(";", end), text.find(" and ", end)) if i >= 0]
    return lo, (min(ends) if ends else len(text))


def _placed(text: str, signs: tuple) -> set[str | None]:
    """The regions a text names; None among them for a part no region stands for (the arm)."""
    return set(body_regions(text)) | {r for pattern, r in signs if pattern.search(text)}


def _denied(sentences: Iterable[str], term: re.Pattern) -> bool:
    """Whether some sentence negates the term ("no evidence of any red flag conditions")."""
    for s in sentences:
        if not term.search(s):
            continue
        guarded = isinstance(s, _Rationale)
        for clause in _clauses(s):
            for m in term.finditer(clause):
                if guarded and _guideline_words_before(clause, m.start()):
                    continue
                if _polarity(clause, m.start()) is False:
                    return True
    return False


def _finding(sentences: Iterable[str], term: re.Pattern) -> bool | None:
    """Negative statements win: a reviewer's 'no evidence of X' outweighs a passing mention."""
    seen: bool | None = None
    for s in sentences:
        if not term.search(s):  # most sentences: skip the clause split
            continue
        for clause in _clauses(s):
            for m in term.finditer(clause):
                p = _polarity(clause, m.start())
                if p is False:
                    return False
                if p:
                    seen = True
    return seen


def detect_acute_exacerbation(text: str) -> bool | None:
    """Whether an acute exacerbation/flare-up is asserted (True), denied (False) or not stated."""
    return _finding(_sentences(text), _ACUTE)


def detect_functional_improvement(text: str) -> bool | None:
    """Objective functional improvement from prior treatment: documented, denied or not stated."""
    return _functional_improvement(_sentences(text))


_K_FI = ("improv", "benefi", "function", "subjective", "alleviat", "respons", "efficacy", "impact",
         "effect", "progress", "%", "gain", "change", "better", "increase", "adl", "activit",
         "restriction", "range of motion", "rom", "strength", "mobility", "toleran")


def _functional_improvement(sentences: Iterable[str]) -> bool | None:
    seen: bool | None = None
    for s in sentences:
        low = s.lower()
        if not any(k in low for k in _K_FI):
            continue
        if _FI_NEG.search(s):
            return False
        for m in _FI_PERCENT.finditer(s):
            if int(m.group(1) or m.group(2)) < _SMALL_PERCENT:
                return False
        if not _FI_POS.search(s) or _FI_GENERAL.search(s):
            continue
        for clause in _clauses(s):
            if _HEDGE.search(clause):  # "improvement should be documented" asserts nothing
                continue
            for m in _FI_POS.finditer(clause):
                if _polarity(clause, m.start()):
                    seen = True
    return seen


def _to_int(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBER_WORDS[word.lower()]


def _weeks(n: int, unit: str) -> int:
    unit = unit.lower()
    if unit.startswith("week"):
        return n
    if unit.startswith("month"):
        return n * 52 // 12
    return n * 52


def _duration_weeks(sentences: Iterable[str], window_text: str) -> int | None:
    """Lower bound on weeks of prior use, from phrases such as 'for months'."""
    found: list[int] = []
    for s in sentences:
        if not _ANY_DURATION.search(s):
            continue
        for clause in _clauses(s):
            for m in _DUR_COMPARE.finditer(clause):
                if _negated(clause[:m.start()]):
                    continue
                n, unit = _to_int(m.group(1)), m.group(2)
                found.append(_weeks(n, unit) + (1 if unit.lower().startswith("week") else 0))
            for m in _DUR_FOR.finditer(clause):
                if _negated(clause[:m.start()]):
                    continue
                found.append(_weeks(_to_int(m.group(1)), m.group(2)))
            if _DUR_VAGUE_MONTHS.search(clause):
                found.append(8)
            if _DUR_YEARS.search(clause):
                found.append(104)
            if _DUR_WINDOW.search(clause):
                # beyond the treatment window the rationale just quoted (e.g. "2-3 weeks")
                windows = [int(w.group(2)) for w in _WINDOW_WEEKS.finditer(window_text)]
                if windows:
                    found.append(min(windows) + 1)
    return max(found) if found else None


def _split_diagnoses(text: str) -> list[str]:
    """A list of diagnoses: semicolons always separate; commas separate unless they enumerate the
    parts of one diagnosis; a final "and" separates whole diagnoses."""
    text = text.strip().rstrip(";:, ")
    if ";" in text:
        parts = [p for p in (q.strip() for q in text.split(";")) if p]
        out: list[str] = []
        for part in parts:
            out.extend(_split_diagnoses(part) if "," in part else [_DIAG_PREFIX.sub("", part)])
        return out
    parts = _split_outside_parens(text)
    merged: list[str] = []
    for part in parts:
        part = part.strip()
        if merged and _joins_previous(merged[-1], part):
            merged[-1] += ", " + part
        else:
            merged.append(part)
    out = []
    for k, part in enumerate(merged):
        part = _DIAG_PREFIX.sub("", _LEADING_CONJ.sub("", part.strip()))
        pieces = [part]
        if k == len(merged) - 1 and "," not in part:
            pieces = _split_and(part, several=len(merged) > 1)
        for piece in pieces:
            out.extend(p.strip() for p in _DIAG_GLUED.split(piece) if p.strip())
    return [d for d in (_DIAG_PREFIX.sub("", x).strip(" \"'") for x in out) if d]


def _joins_previous(previous: str, part: str) -> bool:
    words = part.split()
    if len(previous.split()) == 1 and len(words) >= 2 and previous[:1].islower() and "-" in previous:
        return True  # "full-thickness, near-complete tear"
    last = previous.split()[-1] if previous.split() else ""
    if _DIAG_PART_WORD.match(last) and _DIAG_PART_WORD.match(part):
        return True  # an enumeration of parts
    return len(words) <= 3 and bool(_DIAG_QUALIFIER.match(part)) and not _DIAG_PART_WORD.match(last) \
        and len(previous.split()) >= 2 and not re.search(r"\b(?:pain|strain|sprain)$", part, re.I)


def _split_and(part: str, several: bool) -> list[str]:
    """Split whole diagnoses joined by "and", not an "and" inside one ("recess and foraminal
    stenosis" after "with"; "neck and low back sprain")."""
    pieces = re.split(r"\s+and\s+", part)
    if len(pieces) == 1:
        return [part]
    out = [pieces[0]]
    for piece in pieces[1:]:
        prev = out[-1]
        single = len(prev.split()) == 1 and not several
        with_ = re.search(r"\bwith\s+(.*)$", prev)
        if (with_ and len(with_.group(1).split()) <= 2) or single or _DIAG_PART_WORD.match(prev.split()[-1]) \
                and len(prev.split()) == 1:
            out[-1] = prev + " and " + piece
        else:
            out.append(piece)
    return out


class NarrativeItem(Protocol):
    """What the narrative reader needs of a requested item: a letter's ParsedItem, or a
    progress note's request (notes.py)."""

    item: str
    rationale: str
    authorized: str | None
    original_request: str | None


class _Narrative:
    """Sentences of the summary and rationales, classified once, and the document-level facts.

    ``summary`` is the record's narrative (a letter's clinical case summary, a progress note's
    sections); ``items`` are the requested items, each with the text said about it alone.
    """

    def __init__(self, summary: str, items: Sequence[NarrativeItem], head: str):
        self.summary = summary
        self.items = items
        self.sents: list[_Sent] = []
        self._add_block(summary, "summary", None)
        for k, item in enumerate(items):
            self._add_block(item.rationale, "rationale", k)
        summary = [s for s in self.sents if s.block == "summary"]
        rationale = [s for s in self.sents if s.block == "rationale"]

        self.age = self.sex = None
        for s in summary + rationale:
            m = _AGE_SEX.search(s.text)
            if m:
                self.age = int(m.group(1))
                self.sex = "male" if m.group(2).lower() in ("male", "man", "gentleman") else "female"
                break
        self.injury = _date(_first_group(_HEAD_INJURY.search(head)))
        if self.injury is None:
            for s in summary + rationale:
                self.injury = _date(_first_group(_INJURY.search(s.text)))
                if self.injury:
                    break
        self.ur = _date(_first_group(_HEAD_UR.search(head)))
        if self.ur is None:
            hits = [(m.start(), m.group(1)) for rx in _UR_DATES for m in rx.finditer(self.summary)]
            self.ur = _date(min(hits)[1]) if hits else None
        self.rfa = self._rfa_date(summary) or self._rfa_date(rationale)

        self.diagnoses = self._diagnoses(self.summary)  # never the rationale's reading
        self.meds = self._medications()

    def _rfa_date(self, sents: list[_Sent]) -> dt.date | None:
        """The date of the request for authorization: the latest one stated that is not after
        the UR decision (a later RFA is a new request, not the one reviewed)."""
        for rx in _RFA_DATES:
            for s in sents:
                if "request" not in s.low and "authori" not in s.low and "rfa" not in s.words:
                    continue
                for m in rx.finditer(s.text):
                    d = _date(m.group(1))
                    if d and (self.ur is None or d <= self.ur):
                        return d
        return None

    def _add_block(self, text: str, block: str, item: int | None) -> None:
        prev: _Sent | None = None
        for t in _sentences(text):
            s = _Sent(t, block, item)
            if not s.refers and prev is not None and _ANAPHORA.search(t):
                # "Length it use ... not provided": refers to what the last sentence named
                s.refers = prev.refers
            self.sents.append(s)
            prev = s

    @staticmethod
    def _diagnoses(text: str) -> list[str]:
        out: list[str] = []
        for m in _DIAG_INTRO.finditer(text):
            lst = m.group("list").strip()
            if not lst or lst[0].isdigit():
                continue
            for d in _split_diagnoses(lst):
                if d and d not in out:
                    out.append(d)
        return out

    def _medications(self) -> list[_Med]:
        meds: dict[str, _Med] = {}
        for s in self.sents:
            if not s.fact or not s.drugs:
                continue
            for clause_start, clause in _clause_spans(s.text):
                for generic, written, pos in s.drugs:
                    if not clause_start <= pos < clause_start + len(clause):
                        continue
                    if s.request or generic in meds:
                        continue  # requested or planned is not taken; known already
                    if _polarity(clause, pos - clause_start) is not True:
                        continue
                    if _NOT_TAKEN.search(clause, pos - clause_start):
                        continue  # "Valium and Zofran not able to fill per insurance"
                    meds.setdefault(generic, _Med(generic, written))
        for s in self.sents:
            if not s.fact:
                continue
            for m in _SINCE.finditer(s.text):
                before = [d[0] for d in s.drugs if d[2] < m.start()] or [d[0] for d in s.drugs]
                if not before and s.item is not None:
                    # "has been using the requested medication since at least 11/07/2016"
                    before = [d[0] for d in _drug_mentions(self.items[s.item].item)[:1]]
                if before and before[-1] in meds and meds[before[-1]].since is None:
                    meds[before[-1]].since = _date(m.group(1) or m.group(2))
            pm = _PRESCRIBED_ON.search(s.text) if "prescribed" in s.low else None
            if pm:
                # "seeing his physician on 12-05-2016 and being prescribed Ibuprofen"
                for generic, _, pos in s.drugs:
                    if pos > pm.end() - 12 and generic in meds and meds[generic].since is None:
                        meds[generic].since = _date(pm.group(1))
            for g in s.refers & meds.keys():
                if _INTERMITTENT.search(s.text):
                    meds[g].intermittent = True
                elif _REGULAR.search(s.text) and meds[g].intermittent is None:
                    meds[g].intermittent = False
        return list(meds.values())

    # per-letter findings ------------------------------------------------------------

    def fact_sentences(self) -> list[str]:
        return [s.text for s in self.sents if s.fact]

    def findings(self) -> dict[str, Any]:
        facts = self.fact_sentences()
        fact_lows = [t.lower() for t in facts]
        out: dict[str, Any] = {}
        acute = _finding(_having(facts, ("flare", "exacerbat"), fact_lows), _ACUTE)
        if acute is not None:
            out["acute_exacerbation"] = acute
        depression = _finding(_having(facts, ("depress",), fact_lows), _DEPRESSION)
        if depression is not None:
            out["depression"] = depression
        # muscle spasm is an examination finding: one found on exam wins over "no documentation
        # of spasm" elsewhere; a complaint of spasm, or medication "for spasms", is not one
        spasm_sents = [t for t in facts if "spasm" in t.lower()]
        on_exam = [t for t in spasm_sents if _EXAM_CUE.search(t) and not _COMPLAINT_CUE.search(t)]
        if _asserted(on_exam, _SPASM):
            spasm = True
        elif _denied(spasm_sents, _SPASM):
            spasm = False
        else:
            spasm = None
        if spasm is not None:
            out["muscle_spasm"] = spasm
        tried: set[str] = set()
        for s in self.sents:
            if not s.fact or s.request or not (
                    any(k in s.low for k in _K_FIRST_LINE) or "pt" in s.words):
                continue
            if s.block == "rationale" and (_GUIDELINE_WORDS.search(s.text) or not _HAD.search(s.text)
                                           or _GENERAL_STATEMENT.search(s.text)):
                continue  # the rationale's guideline text names treatments nobody tried
            for clause in _clauses(s.text):
                if _PLANNED.search(clause):
                    continue
                for name, rx in _NON_DRUG_FIRST_LINE:
                    for m in rx.finditer(clause):
                        if name == "physical_therapy" and _CHIRO_PT.search(clause, 0, m.end()):
                            continue  # "chiropractic physiotherapy" is chiropractic care
                        if _polarity(clause, m.start()):
                            tried.add(name)
                            break
        for med in self.meds:
            cls = _drug_tables()[3].get(med.generic)
            if cls:
                tried.add(cls)
        if tried:
            out["first_line_tried"] = [t for t in FIRST_LINE_ORDER if t in tried]
        rtw = _return_to_work(_having([s.text for s in self.sents if s.block == "summary" and s.fact],
                                      _K_WORK))
        if rtw is None:
            rtw = _return_to_work(_having(facts, _K_WORK))
        if rtw is not None:
            out["return_to_work"] = rtw
        slr = _having(facts, _K_SLR, fact_lows)
        radic = _finding(slr, _RADIC_EXAM)
        if radic is None and any(_RADIC_NEG.search(t) for t in slr):
            radic = False
        if radic is not None:
            out["radiculopathy_exam"] = radic
        for t in facts:
            if "%" not in t:
                continue
            m = _INJECTION_RELIEF.search(t)
            if m and not _negated(t[:m.start()]):
                out["prior_injection_relief_percent"] = int(m.group(1))
                break
        out.update(self._exam_findings(bool(tried)))
        out.update(self._modality_findings())
        return out

    def _fi_sentences(self, k: int, related: list[_Sent]) -> list[str]:
        """What the record says of the response to the treatment: the sentences about it, the
        item's own rationale outside the guideline's words and the reviewer's conclusion
        ("approved for 6 prior sessions with no documented objective improvement"), and, for a
        letter of one item, the summary's unattributed sentences."""
        out = [s.text for s in related]
        seen = set(map(id, related))
        single = len(self.items) == 1
        for s in self.sents:
            if s.conclusion or id(s) in seen:
                continue
            if s.item == k and not s.fact and (not s.refers or s.narrative) \
                    and not _GUIDELINE_WORDS.search(s.text):
                out.append(s.text)
            elif single and s.block == "summary" and s.fact and not s.refers:
                out.append(s.text)
        return out

    def _new_drug(self, k: int, generic: str) -> bool:
        """The drug is described as new (a trial, an initial prescription, being initiated) and
        is not on the record's medication list."""
        new = listed = False
        for s in self.sents:
            if s.conclusion or (s.item != k and not s.drugs):
                continue
            names = {d[0] for d in s.drugs}
            if generic in names:
                if s.block == "summary" and not s.ur and _MED_LIST.search(s.text) \
                        and not _NEW_DRUG.search(s.text):
                    listed = True
                if _NEW_DRUG.search(s.text):
                    new = True
            elif s.item == k and not names and _NEW_DRUG.search(s.text) and not _GUIDELINE_WORDS.search(s.text):
                new = True  # "the medical necessity for initiating opioid therapy"
        return new and not listed

    def _red_flag_part(self, text: str) -> str:
        """The sentence without the segments that put a red flag term on a body part no request
        is about ("de Quervain's fracture of the right wrist" for a cervical MRI)."""
        wanted = self._request_region_groups
        if not wanted:
            return text
        out, pos = [], 0
        for m in _RED_FLAG_TERMS.finditer(text):
            start, end = _segment(text, m.start(), m.end())
            groups = {_REGION_GROUP.get(r, r) for r in body_regions(text[start:end])}
            if groups and groups.isdisjoint(wanted) and start >= pos:
                out.append(text[pos:start])
                pos = end
        return "".join(out) + text[pos:] if out else text

    @functools.cached_property
    def _request_region_groups(self) -> frozenset[str]:
        return frozenset(_REGION_GROUP.get(r, r) for item in self.items
                         for r in body_regions(item.item))

    def _diagnosis_regions(self, item: str, modality: str) -> list[str]:
        """The body region of an item that names no body part ("Hot/cold therapy wrap"), when
        the diagnoses name one region only ("closed fracture of the fourth lumbar vertebra"):
        the part the care is for. Only for a modality whose rules apply by region (without one
        no rule could judge it). An item naming a part outside the regions (head, pelvis, chest)
        or the spine when the diagnoses are not of the spine gets none: never a guess."""
        if modality not in _regioned_modalities():
            return []
        found = self._diagnosis_region_set
        groups = {_REGION_GROUP.get(r, r) for r in found}
        if len(groups) != 1 or _OTHER_ANATOMY.search(item):
            return []
        if _SPINE_WORDS.search(item) and groups != {"spine"}:
            return []
        return [r for r in BODY_REGIONS if r in found]

    @functools.cached_property
    def _diagnosis_region_set(self) -> set[str]:
        return {r for d in self.diagnoses for r in body_regions(d)}

    def _context_regions(self, k: int) -> list[str]:
        """The body regions the reviewer's own account of an item names when the item does not
        ("the request for physical therapy for the lumbar spine"): the rationale's sentences
        about the request, outside the guideline's words."""
        name = self.items[k].item.lower()
        found: set[str] = set()
        for s in self.sents:
            if s.item != k or s.conclusion or not (s.request or s.narrative or name[:20] in s.low):
                continue
            if _GUIDELINE_WORDS.search(s.text):
                continue
            found.update(body_regions(s.text))
        return [r for r in BODY_REGIONS if r in found]

    def _already_approved(self, k: int) -> bool:
        """The records say the evaluation requested was already approved ("The patient was
        previously approved for the neurosurgeon evaluation"): a sentence of the summary or the
        item's rationale that names an earlier approval of an evaluation and shares the item's
        own words (the specialty)."""
        item = self.items[k].item
        own = {w for w in _WORD.findall(item.lower()) if len(w) > 4 and w not in _CONSULT_GENERIC}
        # the kind of service the item names (an evaluation, a visit): approved sessions of
        # therapy are not an approved therapy evaluation
        kinds = {m.group(0).lower()[:7] for m in _CONSULT_WORDS.finditer(item)}
        if not own or kinds == {"visit"}:
            return False  # follow-up visits recur: an earlier one authorized is not this one
        for s in self.sents:
            if s.conclusion or not (s.block == "summary" or s.item == k):
                continue
            if "approved" not in s.low and "authorized" not in s.low and "certified" not in s.low:
                continue
            said = {m.group(0).lower()[:7] for m in _CONSULT_WORDS.finditer(s.text)}
            if _ALREADY_APPROVED.search(s.text) and said and (not kinds or not kinds.isdisjoint(said)) \
                    and not own.isdisjoint(s.words):
                return True
        return False

    @staticmethod
    def _names_pain_medication(text: str) -> bool:
        if "pain medication" in text.lower():
            return True
        drugs = _rulebook().drugs
        return any((spec := drugs.spec(g)) is not None and "opioid" in spec.classes
                   for g in drugs.find_all_in_text(text))

    def _modality_findings(self) -> dict[str, Any]:
        """What a stimulator or work-conditioning request's section asks of the records, read only
        for such a request: tens_trial_failed (H-wave), therapy_plateau (work conditioning),
        psychological_clearance (spinal cord stimulator)."""
        out: dict[str, Any] = {}
        wanted = {_parse_item_text(item.item).get("modality") for item in self.items}
        if wanted.isdisjoint(("h_wave", "work_conditioning", "spinal_cord_stimulator")):
            return out
        record = self._record_sentences()
        lows = [t.lower() for t in record]
        if "h_wave" in wanted:
            sents = _having(record, ("tens", "transcutaneous"), lows)
            if _asserted(sents, _TENS_FAILED):
                out["tens_trial_failed"] = True
            elif _denied(sents, _TENS_FAILED) or _asserted(sents, _TENS_HELPS):
                out["tens_trial_failed"] = False   # none documented as failed, or it helps
        if "work_conditioning" in wanted:
            sents = [t for t in _having(record, ("plateau", "further", "additional"), lows)
                     if _THERAPY_MENTION.search(t)]
            if _asserted(sents, _THERAPY_PLATEAU):
                out["therapy_plateau"] = True
            elif _denied(sents, _THERAPY_PLATEAU):
                out["therapy_plateau"] = False
        if "spinal_cord_stimulator" in wanted:
            sents = _having(record, ("psych",), lows)
            if _asserted(sents, _PSYCH_CLEARED):
                out["psychological_clearance"] = True
            elif _denied(sents, _PSYCH_CLEARED) or _denied(sents, _PSYCH_EVALUATION):
                out["psychological_clearance"] = False
        return out

    def _opioid_request(self) -> bool:
        drugs = _rulebook().drugs
        for item in self.items:
            generic = _parse_item_text(item.item).get("drug")
            spec = drugs.spec(generic) if generic else None
            if spec is not None and "opioid" in spec.classes:
                return True
        return False

    def _record_sentences(self) -> list[str]:
        """What the summary says, and what the rationale says about this patient's records
        ("There is no evidence of any red flag conditions"), without guideline text or the
        reviewer's conclusion."""
        out = []
        for s in self.sents:
            if s.block == "summary":
                if s.conclusion:
                    continue
                if (not s.ur or s.request) and not (
                        ("denied" in s.low or "certif" in s.low or "modified" in s.low
                         or "not " in s.low) and _UR_REASON.search(s.text)):
                    out.append(s.text)
            elif (not s.words.isdisjoint(_K_RECORD) or "there " in s.low) and _RECORD_CLAIM.search(s.text) \
                    and not _GUIDELINE_SAYS.search(s.text):
                out.append(_Rationale(s.text))
        return out

    def _exam_findings(self, tried: bool = False) -> dict[str, Any]:
        """red_flags, neurologic_deficit, surgery_considered, conservative_care_failed."""
        out: dict[str, Any] = {}
        record = self._record_sentences()
        lows = [t.lower() for t in record]
        summary_all = [s.text for s in self.sents if s.block == "summary" and s.fact]
        # cheap keyword gates first: each regex runs only on sentences that could match
        sents = _having(record, _K_NEURO, lows)
        # neurologic deficit: an objective deficit asserted anywhere wins over normal findings
        deficit = _asserting([t for t in sents if not _PAIN_LIMITED.search(t)], _NEURO_DEFICIT) \
            + _asserting(sents, _RADIC_EXAM)
        if deficit:
            out["neurologic_deficit"] = True
            # where: a multi-part case's deficit of the low back is no reason to image the shoulder
            # by the list segment naming each finding: "motion of the neck and back, positive
            # straight leg raise on the left" places the straight leg raise in the low back only
            regions = _finding_regions(deficit, _NEURO_SIGN_REGIONS, _NEURO_TERMS)
            if regions:
                out["neurologic_deficit_regions"] = regions
        elif _asserted(sents, _NEURO_NORMAL) or _denied(sents, _NEURO_DEFICIT) \
                or _denied(sents, _NEURO_FINDING) \
                or any(_RADIC_NEG.search(t) for t in sents):
            out["neurologic_deficit"] = False
        # red flags: a fracture, dislocation, tumor, infection or cauda equina asserted; else
        # the record's "no red flags"
        sents = _having(record, _K_RED_FLAG, lows)
        summary = _having(summary_all, _K_RED_FLAG)
        summary = [self._red_flag_part(t) for t in summary if not _GENERAL_LIST.search(t)]
        if flags := _asserting(summary, _RED_FLAG_TERMS) + _asserting(sents, _RED_FLAG_FOUND):
            out["red_flags"] = True
            # where: a lumbar red flag is no reason to image the shoulder of the same case
            regions = _finding_regions(flags, _RED_FLAG_SIGN_REGIONS, _RED_FLAG_TERMS)
            if regions:
                out["red_flags_regions"] = regions
        elif _denied(sents, _RED_FLAG):
            out["red_flags"] = False
        # surgery considered: planned, requested or contemplated; or denied in the record
        sents = _having(record, _K_SURGERY, lows)
        if _denied(sents, _SURGERY_CONSIDERED) or _asserted(sents, _NO_SURGERY):
            out["surgery_considered"] = False
        elif considered := _asserting(sents, _SURGERY_CONSIDERED, hedged_ok=True):
            out["surgery_considered"] = True
            regions = _finding_regions(considered, _PROCEDURE_SIGN_REGIONS)
            if regions:
                out["surgery_considered_regions"] = regions
        # conservative care failed
        sents = [t for t in _having(record, _K_CONSERVATIVE, lows)
                 if "conservative" in t.lower() or not _FIRST_LINE_WORD.search(t)]  # neuropathic
        plain = [t for t in sents if not (isinstance(t, _Rationale) and _GUIDELINE_TEXT.search(t))]
        failed = tried and any((m := _NOT_IMPROVED.search(t)) and not _negated(t[:m.start()])
                               and not _NEG_EXTENDED.search(t) and not _CARE_HELPING.search(t)
                               for t in plain)
        helping = any((m := _CARE_HELPING.search(t)) and not _negated(t[:m.start()]) for t in plain)
        failed = failed or any((m := _NOT_RESPONDED.search(t)) and not _NEG_EXTENDED.search(t)
                     and not _negated(t[:m.start()]) for t in plain) or any(
            _NO_BENEFIT.search(t) and _THERAPY_WORDS.search(t) and not _NEG_EXTENDED.search(t)
            for t in plain)
        not_done = any((m := _CONSERVATIVE_NOT_DONE.search(t))
                       and not _negated(t[max(0, m.start() - 40):m.start()]) for t in sents)
        if not failed and (_denied(sents, _CONSERVATIVE_COURSE) or not_done or helping):
            out["conservative_care_failed"] = False
        elif failed or _asserted(sents, _CONSERVATIVE_FAILED):
            out["conservative_care_failed"] = True
        # an injection or surgery planned for the body part; imaging that shows a surgical lesion
        sents = [t if s.block == "summary" else _Rationale(t) for s in self.sents
                 if not s.conclusion and any(k in s.low for k in _K_INVASIVE)
                 for t in (s.text,)]
        if planned := _asserting(sents, _INVASIVE_PLANNED, hedged_ok=True):
            out["invasive_procedure_planned"] = True
            regions = _finding_regions(planned, _PROCEDURE_SIGN_REGIONS)
            if regions:
                out["invasive_procedure_regions"] = regions
        sents = [t for t in _having(record, _K_LESION, lows) if _IMAGING_WORDS.search(t)]
        if _asserted(sents, _SURGICAL_LESION):
            out["surgical_lesion_imaging"] = True
        if _asserted([t for t in sents if _CUFF_WORDS.search(t)], _FULL_THICKNESS_TEAR):
            out["full_thickness_cuff_tear"] = True
        # pain relief on opioids (the first of the 4 A's), read only for an opioid request
        if self._opioid_request():
            sents = _having(record, _K_ANALGESIA, lows)
            helps = [t for t in _having(record, ("help",), lows) if self._names_pain_medication(t)]
            if _denied(sents, _ANALGESIA) or _denied(helps, _MEDICATION_HELPS):
                out["analgesia_documented"] = False
            elif _asserted(sents, _ANALGESIA) or _asserted(helps, _MEDICATION_HELPS):
                out["analgesia_documented"] = True
        return out

    # per-request facts ---------------------------------------------------------------

    def request(self, k: int) -> dict[str, Any]:
        item = self.items[k]
        text = item.item
        req: dict[str, Any] = {"item": text}
        # items.py's item parser first: one vocabulary for drugs, compounds and procedures
        # ("injection ... of lidocaine ... to the right knee" is a knee injection)
        parsed = _parse_item_text(text)
        own = [s for s in self.sents if s.item == k]
        if parsed.get("drug") and "modality" not in parsed:
            generic = parsed["drug"]
            req["drug"] = generic
            for key in ("strength", "quantity", "refills", "units_per_day", "ingredients"):
                if parsed.get(key) is not None:
                    req[key] = parsed[key]
            if generic == "compounded topical":
                regions = body_regions(text) or self._context_regions(k)
                if regions:
                    req["body_region"] = regions
            else:
                for key, value in _item_amounts(text).items():  # "Norco 10/325 #120"
                    req.setdefault(key, value)
        elif "modality" not in parsed:
            dm = _drug_mentions(text)
            if dm and _COMPOUND.search(text) and not any(d[0] in _TOPICAL_PRODUCTS for d in dm):
                dm = []  # "Flurbiprofen/Cyclobenzaprine cream" is a topical compound
            if dm:
                generic = dm[0][0]
                req["drug"] = generic
                req.update(_item_amounts(text))
        if "drug" in req:
            generic = req["drug"]
            related = [s for s in self.sents if s.fact and (
                generic in s.refers or (s.item == k and not s.refers))]
            med = next((m for m in self.meds if m.generic == generic), None)
            if med is not None or any(
                    s.request and _PRIOR_WORDS.search(s.text) and any(d[0] == generic for d in s.drugs)
                    for s in self.sents):
                req["prior_treatment"] = True
            if self._new_drug(k, generic):
                req["prior_treatment"] = False  # "a trial of Nortriptyline", "initial prescription"
            if med is None or med.since is None:
                weeks = _duration_weeks((s.text for s in related), item.rationale)
                if weeks is not None:
                    req["prior_use_weeks"] = weeks
            fi = _functional_improvement(self._fi_sentences(k, related))
            if fi is not None:
                req["functional_improvement"] = fi
            incomplete = ("strength" not in req and "quantity" not in req) or any(
                _INCOMPLETE.search(s.text) for s in own if not s.conclusion)
            if incomplete:
                req.setdefault("strength", None)
                req.setdefault("quantity", None)
            req["incomplete"] = incomplete
            return req
        modality = parsed.get("modality")
        if modality is None:
            return req
        req["modality"] = modality
        for key, value in parsed.items():
            if key not in ("modality", "sessions", "prior_treatment", "body_region"):
                req.setdefault(key, value)
        if modality not in _therapy_patterns():  # procedures, diagnostics, devices: no visit counts
            regions = body_regions(text) or self._context_regions(k) or self._diagnosis_regions(text, modality)
            if regions:
                req["body_region"] = regions
            if modality in _APPROVAL_FACT and self._already_approved(k):
                req[_APPROVAL_FACT[modality]] = True  # the same evaluation is already approved
            if modality in _VISIT_PROGRAMS:
                # "Work hardening x 10 sessions": visits; "Additional work conditioning": a continuation
                for key in ("sessions", "prior_treatment"):
                    if parsed.get(key) is not None:
                        req[key] = parsed[key]
            return req
        sessions = parsed.get("sessions", _item_sessions(text))
        req["sessions"] = sessions
        authorized = _authorized_sessions(item, modality, sessions)
        if authorized:
            req["authorized_sessions"] = authorized
        related = [s for s in self.sents if s.fact and (
            modality in s.refers or (s.item == k and not s.refers))]
        prior_sessions = None
        # the sentence stating this request's own certified part ("... 6 visits was authorized by
        # the Claims Administrator") gives authorized_sessions, not visits had before
        own_part = " ".join(item.authorized.lower().split()) if authorized and item.authorized else None
        # visits already had, or approved before (a UR approval counts): the summary and the
        # rationale's narrative about this therapy, whether or not a UR sentence
        for s in self.sents:
            if s.conclusion or not (modality in s.modalities or (s.item == k and not s.refers)):
                continue
            if own_part and own_part in " ".join(s.low.split()):
                continue
            if s.block == "rationale" and not s.narrative:
                continue
            m = _PRIOR_SESSIONS.search(s.text)
            if m and not _negated(s.text[:m.start()]) and s.text[m.start():m.end()].lower() \
                    not in text.lower():
                count = _to_int(next(g for g in m.groups() if g))
                if authorized and count == authorized and _APPROVED_ONLY.search(m.group(0)) \
                        and not _DONE.search(s.text):
                    continue  # "authorized 6 sessions by previous reviewer": this request's part
                prior_sessions = count
                break
        if prior_sessions is None and any(
                _NO_PRIOR_SESSIONS.search(s.text) and modality in s.modalities and not s.conclusion
                for s in self.sents):
            prior_sessions = 0  # "There is no previous physical therapy sessions noted"
        prior = prior_sessions is not None and prior_sessions > 0
        if not prior and prior_sessions is None and _INITIAL_ITEM.search(text):
            prior_sessions = 0  # "Initial acupuncture, 1 to 2 times per week": a first course
        if not prior and prior_sessions is None:
            prior = bool(_MORE_OF_SAME.search(text))
        if not prior and prior_sessions is None:
            for s in self.sents:
                if s.conclusion or modality not in s.modalities:
                    continue
                if s.request:
                    # "requesting additional chiropractic treatments", in the therapy's own clause
                    # ("initial acupuncture ...; and additional physical therapy")
                    rx = _therapy_patterns()[modality]
                    prior = any(rx.search(c) and _MORE_OF_SAME.search(c) for c in _clauses(s.text))
                elif s.fact and _RECEIVED.search(s.text):
                    # "has received some chiropractic care", "already attempted a series of acupuncture"
                    mention = _therapy_patterns()[modality].search(s.text)
                    prior = mention is not None and _polarity(s.text, mention.start()) is not False
                if prior:
                    break
        if prior or prior_sessions is not None:
            req["prior_sessions"] = prior_sessions
            req["prior_treatment"] = prior
        fi = _functional_improvement(self._fi_sentences(k, related))
        if fi is not None:
            req["functional_improvement"] = fi
        regions = body_regions(text) or self._context_regions(k) or self._diagnosis_regions(text, modality)
        if regions:
            req["body_region"] = regions
        req["incomplete"] = sessions is None
        return req


def _visits(text: str) -> int | None:
    return _parse_item_text(text).get("sessions") or _item_sessions(text)


def _authorized_sessions(item: ParsedItem, modality: str, sessions: int | None) -> int | None:
    """Visits of a partly authorized request the Claims Administrator already certified ("Twelve
    physical therapy visits was the original request. Nine ... were authorized"): the same
    therapy, and, when the original count is stated, authorized plus disputed make it up."""
    if not item.authorized or not sessions:
        return None
    if _parse_item_text(item.authorized).get("modality") != modality:
        return None
    authorized = _visits(item.authorized)
    if not authorized:
        return None
    original = _visits(item.original_request) if item.original_request else None
    if original is not None and original != authorized + sessions:
        return None  # "2 sessions of occupational therapy" authorized beside the whole request
    return authorized


def _drug_lookup() -> Any:
    return _rulebook().drugs


def _parse_item_text(text: str) -> dict[str, Any]:
    from ..evaluation.items import parse_item
    return parse_item(text, _drug_lookup())


def _clause_spans(text: str) -> list[tuple[int, str]]:
    spans, pos = [], 0
    for m in _CLAUSE_SPLIT.finditer(text):
        spans.append((pos, text[pos:m.start()]))
        pos = m.end()
    spans.append((pos, text[pos:]))
    return spans


def _first_group(m: re.Match | None) -> str | None:
    if not m:
        return None
    return next((g for g in m.groups() if g), None)


_STRENGTH = re.compile(r"(\d+(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?)\s*(mg|mcg|g|%|ml)\b", re.I)
_COMBO = re.compile(r"\b(\d+(?:\.\d+)?/\d+(?:\.\d+)?)\b")
_REFILLS = (re.compile(r"refills?\s*(?:x|:)?\s*(\d+)", re.I),
            re.compile(r"\bx\s*(\d+)\s*refills?", re.I),
            re.compile(r"(?<![#\d])(\d+)\s*refills?", re.I))
_QTY = (re.compile(r"#\s*(\d+)"),
        re.compile(r"\b(?:qty|quantity)\.?\s*:?\s*(\d+)", re.I),
        re.compile(r"(?<![\w.])x\s*(\d+)\b", re.I),
        re.compile(r"\b(\d+)\s*(?:tablets|tabs|capsules|caps|pills|patches)\b", re.I))


def _item_amounts(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    m = _STRENGTH.search(text)
    if m:
        amount = "".join(m.group(1).split())
        out["strength"] = f"{amount} {m.group(2).lower()}"
    else:
        m = _COMBO.search(text)
        if m:
            out["strength"] = f"{m.group(1)} mg"
    refill = next((m for rx in _REFILLS if (m := rx.search(text))), None)
    rest = text[:refill.start()] + text[refill.end():] if refill else text
    if refill:
        out["refills"] = int(refill.group(1))
    qty = next((m for rx in _QTY if (m := rx.search(rest))), None)
    if qty:
        out["quantity"] = int(qty.group(1))
    return out


_FREQ_X_WEEKS = re.compile(r"\b(\d+)\s*x\s*(\d+)\b", re.I)
_N_SESSIONS = re.compile(r"\b" + _NUM + r"\s+(?:[a-z&/,-]+\s+){0,4}?(?:sessions?|visits?|treatments?)\b",
                         re.I)
_X_SESSIONS = re.compile(r"(?<![\w.])x\s*(\d+)\b", re.I)
_PER_WEEK = re.compile(r"\b(\d+)\s*(?:times|x)\s*(?:a|per|/)\s*(?:week|wk)\s*(?:for|x)\s*(\d+)\s*"
                       r"(?:weeks|wks)\b", re.I)


def _item_sessions(text: str) -> int | None:
    m = _FREQ_X_WEEKS.search(text) or _PER_WEEK.search(text)
    if m:
        return int(m.group(1)) * int(m.group(2))
    m = _N_SESSIONS.search(text)
    if m and m.group(1).lower() not in ("a", "an"):
        return _to_int(m.group(1))
    m = _X_SESSIONS.search(text)
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------ the case

def letter_to_case(parsed: ParsedLetter, case_id: str) -> dict[str, Any]:
    """The case a careful reader derives from the letter's narrative, as plain data.

    Dates are ISO strings. Facts the letter does not state are left out; ``prior_sessions``
    (prior treatment documented, count unknown) and the amounts of an incomplete request are
    kept as explicit nulls.
    """
    facts = parsed._facts
    if facts is None:  # a ParsedLetter built from data rather than parse_letter
        facts = _Narrative(parsed.summary, parsed.items, "")
        parsed._facts = facts
    request_date = parsed.rfa_date
    # An RFA date before the documented start of a drug cannot be that drug's request
    # (letter 003 repeats one item's RFA date in the other item's rationale).
    if request_date and any(m.since and m.since > request_date for m in facts.meds):
        request_date = None
    return narrative_case(facts, case_id, age=parsed.patient_age, sex=parsed.patient_sex,
                          injury_date=parsed.injury_date,
                          request_date=request_date or parsed.ur_date, diagnoses=parsed.diagnoses)


def read_narrative(summary: str, items: Sequence[NarrativeItem], head: str = "") -> "_Narrative":
    """The narrative reader on any record (letter.py's and notes.py's one reader of facts)."""
    return _Narrative(summary, items, head)


def narrative_case(facts: "_Narrative", case_id: str, *, age: int | None, sex: str | None,
                   injury_date: dt.date | None, request_date: dt.date | None,
                   diagnoses: Sequence[str]) -> dict[str, Any]:
    """The case dict from the narrative's facts and the document's own header facts."""
    case: dict[str, Any] = {"id": case_id}
    patient = {k: v for k, v in (("age", age), ("sex", sex)) if v is not None}
    if patient:
        case["patient"] = patient
    if injury_date:
        case["injury_date"] = injury_date.isoformat()
    if request_date:
        case["request_date"] = request_date.isoformat()
    if diagnoses:
        case["diagnoses"] = list(diagnoses)
    findings = facts.findings()
    if findings:
        case["findings"] = findings
    meds = []
    for m in facts.meds:
        d: dict[str, Any] = {"name": m.generic}
        if m.since:
            d["since"] = m.since.isoformat()
        if m.intermittent is not None:
            d["intermittent"] = m.intermittent
        meds.append(d)
    if meds:
        case["medications"] = meds
    case["requests"] = [facts.request(k) for k in range(len(facts.items))]
    return case
