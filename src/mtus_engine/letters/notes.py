"""Read a treating physician's progress note (PR-2, office note, Request for Authorization) into
a case, and tell a note from an IMR letter and a case file.

A note is read by its sections: the header (dates, age, sex), Subjective/History, Objective/Exam,
Medications, Assessment/Diagnoses and Plan/Request. The clinical facts come from letter.py's
narrative reader (one reader, one vocabulary: rules/vocabulary), applied to the note's
Subjective, Objective and Medications text as it reads an IMR letter's clinical case summary.
The requests come from the Plan's lines that request an item, parsed with items.parse_item.

What is never guessed: a drug continued without a quantity is not a request (it is a current
medication); a planned or requested treatment is not one tried; an allergy list names no
medication; a month and year ("since 09/2015") is not a start date. Every fact keeps the line
it was read from (``provenance``), and what could not be read is said in ``warnings``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import InputError
from ..evaluation.items import body_regions
from .letter import (_AGE_SEX, _DATE, _H_ITEMS_A, _H_ITEMS_B, _LETTER_MARKERS, _NEURO_SIGN_REGIONS, _date,
                     _drug_mentions, _lines, _parse_item_text, _placed, _sentences, _split_outside_parens,
                     narrative_case, read_narrative)

__all__ = ["DocumentKind", "ParsedNote", "case_from_text", "detect_document", "extract_note",
           "read_progress_note"]

DocumentKind = Literal["letter", "note", "case", "fhir", "unknown"]


# ------------------------------------------------------------------ sections

# heading label -> section kind; "other" headings (work status, imaging) are narrative too
_SECTION_LABELS: dict[str, str] = {}
for _kind, _labels in {
    "subjective": ("s", "subjective", "subjective complaints", "subjective complaint", "chief complaint",
                   "chief complaints", "history of present illness", "hpi", "history", "interval history",
                   "treatment to date", "prior treatment", "past treatment", "work status", "imaging",
                   "diagnostic studies", "diagnostic tests", "studies", "social history", "past medical history",
                   "review of systems", "ros", "functional status", "discussion"),
    "objective": ("o", "objective", "objective findings", "physical exam", "physical examination", "exam",
                  "examination", "findings", "pe"),
    "medications": ("medications", "current medications", "meds", "current meds", "medication list",
                    "medication", "current medication"),
    "assessment": ("a", "assessment", "diagnoses", "diagnosis", "impression", "assessment/diagnoses",
                   "diagnoses/assessment", "working diagnosis", "working diagnoses"),
    "plan": ("p", "plan", "treatment plan", "plan of care", "recommendations", "recommendation",
             "request", "requests", "requested treatment", "rfa", "request for authorization",
             "treatment request", "treatment requests", "assessment and plan", "assessment/plan",
             "disposition"),
    "skip": ("allergies", "allergy", "drug allergies", "nkda"),
}.items():
    for _label in _labels:
        _SECTION_LABELS[_label] = _kind

_HEADING = re.compile(r"^(?P<label>[A-Za-z][A-Za-z /&-]{0,60}?)\s*:\s*(?P<rest>.*)$")
_CAPS_HEADING = re.compile(r"^(?P<label>[A-Z][A-Z /&-]{2,60})$")
_BULLET = re.compile(r"^(?:[-*\u2022\u25cf\u25aa\u2013>]+|\(?\d{1,2}[.)]|\(?[a-h][.)])\s+")
_ENDS = re.compile(r"[.!?:;][\"')\]]*$")

# header fields: stated once, in the note's own words
_F_INJURY = re.compile(r"\b(?:Date of Injury|DOI|Injury Date|D/I)\s*:?\s*(" + _DATE + ")", re.I)
_F_RFA = re.compile(r"\b(?:RFA date|Date of RFA|Date of request|Request date|RFA dated)\s*:?\s*(" + _DATE + ")",
                    re.I)
_F_VISIT = re.compile(r"\b(?:Date of (?:Service|Visit|Exam(?:ination)?|Evaluation|Report)|DOS|Visit Date|"
                      r"Exam Date|Report Date|Date)\s*:?\s*(" + _DATE + ")", re.I)
_F_AGE = re.compile(r"\bAge\s*:?\s*(\d{1,3})\b", re.I)
_F_SEX = re.compile(r"\b(?:Sex|Gender)\s*:?\s*(male|female|m|f)\b", re.I)
_F_DOB = re.compile(r"\b(?:DOB|Date of Birth)\s*:?\s*(" + _DATE + ")", re.I)

# a plan line that asks for the item; "continue" alone asks only with an amount
_REQUEST_CUE = re.compile(
    r"^(?:(?:we\s+(?:are\s+)?|I\s+(?:am\s+)?)?(?:request(?:ing|ed|s)?|please\s+authori[sz]e|authori[sz]ation(?:\s+is)?"
    r"\s+requested)(?:\s+(?:authori[sz]ation|approval|certification))?(?:\s+(?:for|of))?|"
    r"RFA\s*(?:for)?\s*:?|refill(?:s|ed)?(?:\s+(?:of|for))?|prescrib(?:e|ed|ing)|dispense(?:d)?|"
    r"Rx\s*:?|order(?:ed|ing)?|recommend(?:s|ed|ing)?|(?:start|begin|initiate)(?:\s+(?:a\s+)?trial\s+of)?|"
    r"(?:a\s+)?trial\s+of|new\s+(?:prescription|rx)\s*(?:for|of)?\s*:?|"
    r"renew|schedule|obtain|refer(?:ral)?(?:\s+(?:to|for))?|continue(?:d)?|cont\.?)\b\s*:?\s*", re.I)
_EXPLICIT = re.compile(r"^(?:request|please|authori|rfa|refill|prescrib|dispense|rx|order|recommend|start|"
                       r"begin|initiate|renew|schedule|obtain|refer|(?:a\s+)?trial|new)", re.I)
_NEW_CUE = re.compile(r"^(?:start|begin|initiate|(?:a\s+)?trial|new)\b", re.I)
_CONTINUE = re.compile(r"^(?:continue|cont\.?)\b", re.I)
_AMOUNT = re.compile(r"#\s*\d|\b(?:qty|quantity)\b|\brefills?\b|\b\d+\s*(?:tablets|tabs|capsules|caps|"
                     r"patches)\b", re.I)
_COUNT = re.compile(r"\b\d+\s*(?:x|times)\s*\d+\b|\b\d+\s+(?:[a-z]+\s+){0,3}?(?:sessions?|visits?|"
                    r"treatments?)\b", re.I)
# a line about seeing the patient again, not a request ("Follow up after the MRI")
_NOT_REQUEST = re.compile(r"^(?:follow|f/u|return|rtc|recheck|re-?evaluat|review|await|pending|discussed|"
                          r"patient (?:to|will|is)|modified duty|work status|off work|regular duty|full duty|"
                          r"TTD|no lifting)", re.I)
# a plan line without a request word that reports a treatment or study rather than asks for it
_DONE = re.compile(r"\b(?:results?|reviewed|showed|shows|revealed|demonstrat\w*|was|were|done|completed|"
                   r"performed|pending|scheduled|approved|authorized|certified|denied)\b", re.I)
# the explanation after an item ("... to evaluate for disc herniation"), read as that item's text
_ITEM_TAIL = re.compile(r"\s+(?:to evaluate|to rule out|to assess|for evaluation|in order to|because|"
                        r"due to|as (?:the|he|she) |given |since (?:the|he|she) |prior to )", re.I)
_ITEM_SPLIT = re.compile(r"\s*;\s*|\s+and\s+(?=[A-Z])")
_ICD = re.compile(r"\s*[(\[]?\b(?:ICD(?:-?1?0|-?9)?\s*:?\s*)?(?:[A-TV-Z]\d{2}(?:\.[0-9A-Z]{1,4})?|\d{3}\.\d{1,2})\b"
                  r"[)\]]?\s*(?:-\s*)?", re.I)


@dataclass
class _Unit:
    """A piece of narrative (a paragraph, a list entry), with the lines it spans."""
    text: str
    lines: list[int]          # 1-based line numbers, one per joined source line
    offsets: list[int]        # offset in ``text`` where each line starts
    section: str
    block: int = 0            # which heading's section it is in (a body part's label holds within it)


@dataclass
class _NoteRequest:
    """A requested item, in the shape letter.py's narrative reader takes (NarrativeItem)."""
    item: str
    line: int
    written: str
    rationale: str = ""
    new: bool = False         # "Start ...", "Trial of ...": a first prescription, in the note's words
    authorized: str | None = None
    original_request: str | None = None


class ParsedNote(BaseModel):
    source: str = "<note>"
    kind: Literal["note"] = "note"
    sections: dict[str, int] = Field(
        default_factory=dict, description="Each section read, by kind, with the line it starts on.")
    case: dict[str, Any] = Field(description="The case read from the note (the case model's fields).")
    provenance: dict[str, list[int]] = Field(
        default_factory=dict, description="For each fact of the case (a dotted path: 'patient.age', "
                                          "'requests[0].quantity', 'findings.muscle_spasm'), the note's "
                                          "line numbers it was read from. A fact read from the note as a "
                                          "whole (several lines together) has no entry.")
    warnings: list[str] = Field(default_factory=list,
                                description="What the reader could not read, for a person to check.")

    def to_case(self) -> Any:
        """The case, validated (case.Case). Raises InputError naming the note."""
        from ..evaluation.case import case_from_data
        return case_from_data(self.case, self.source)


# ------------------------------------------------------------------ detection

_NOTE_MARKERS = re.compile(
    r"(?im)^\s*(?:SUBJECTIVE|OBJECTIVE|ASSESSMENT|PLAN|TREATMENT PLAN|HISTORY OF PRESENT ILLNESS|HPI|"
    r"CHIEF COMPLAINT|PHYSICAL EXAM(?:INATION)?|DIAGNOS[IE]S|CURRENT MEDICATIONS|S|O|A|P)\s*:|"
    r"\bPR-?2\b|\bprogress (?:note|report)\b|\bRequest for Authori[sz]ation\b|\bDate of (?:Service|Visit)\b",
)
_NOTE_HEADING = re.compile(
    r"(?im)^[ \t]*(SUBJECTIVE|OBJECTIVE|ASSESSMENT|PLAN|TREATMENT PLAN|HISTORY OF PRESENT ILLNESS|HPI|"
    r"CHIEF COMPLAINT|PHYSICAL EXAM(?:INATION)?|DIAGNOS[IE]S|(?:CURRENT )?MEDICATIONS|S|O|A|P)[ \t]*:")
_CASE_KEY = re.compile(r"(?m)^requests\s*:")
_CASE_OTHER = re.compile(r"(?m)^(?:id|patient|injury_date|request_date|diagnoses|findings|medications)\s*:")


def detect_document(text: str) -> DocumentKind:
    """What a text is: an IMR 'letter', a progress 'note', a 'case' (YAML/JSON), a FHIR Bundle
    ('fhir'), or 'unknown'. Cheap: looks at structure, never parses the whole text."""
    head = text.lstrip()[:4000]
    if head.startswith(("{", "[")):
        return "fhir" if '"resourceType"' in head[:2000] else "case"
    if _CASE_KEY.search(text) and (_CASE_OTHER.search(text) or text.lstrip().startswith("requests")):
        return "case"
    for line in _lines(text[:200_000]):
        if _H_ITEMS_A.match(line) or _H_ITEMS_B.match(line):
            return "letter"
    # a note's own sections outweigh a letter's words quoted in it ("the IMR upheld ...");
    # a letter without its decisions section is still a letter (parse_letter says it is cut short)
    headings = {" ".join(m.group(1).lower().split()) for m in _NOTE_HEADING.finditer(text[:200_000])}
    if len(headings) >= 2:
        return "note"
    if _LETTER_MARKERS.search(text[:20_000]):
        return "letter"
    if headings or _NOTE_MARKERS.search(text):
        return "note"
    return "unknown"


# ------------------------------------------------------------------ reading

# a heading the table does not name, by its words ("TREATMENT PLAN/REQUESTS", "Current Meds"):
# only a short label, and the first family that matches
_LABEL_WORDS = (("skip", re.compile(r"\ballerg", re.I)),
                ("plan", re.compile(r"\bplan\b|\brequests?\b|\bRFA\b|\brecommend", re.I)),
                ("medications", re.compile(r"\bmed(?:ication)?s?\b", re.I)),
                ("assessment", re.compile(r"\bdiagnos[ie]s\b|\bassessment\b|\bimpression\b", re.I)),
                ("objective", re.compile(r"\bobjective\b|\bexam(?:ination)?\b", re.I)),
                ("subjective", re.compile(r"\bsubjective\b|\bcomplaints?\b|\bhistory\b", re.I)))


def _label_kind(label: str) -> str | None:
    label = " ".join(label.lower().split())
    kind = _SECTION_LABELS.get(label)
    if kind is None and len(re.findall(r"[a-z]+", label)) <= 6:
        kind = next((k for k, rx in _LABEL_WORDS if rx.search(label)), None)
    return kind


def _section_of(line: str) -> tuple[str | None, str, str]:
    """(section kind, the rest of the line, the heading's label) if the line opens a section."""
    m = _HEADING.match(line)
    if m:
        kind = _label_kind(m.group("label"))
        if kind:
            return kind, m.group("rest").strip(), m.group("label")
    m = _CAPS_HEADING.match(line)
    if m:
        kind = _label_kind(m.group("label"))
        if kind:
            return kind, "", m.group("label")
    return None, line, ""


# a body part's label opening a sentence of the history or the examination ("Lumbar spine:",
# "RIGHT SHOULDER:", a heading "Right shoulder exam:"): what follows, up to the next label or
# section, is about that part, as a summary's "Examination of the lumbar spine revealed ..." is
_PART_LABEL = re.compile(r"^(?P<label>[A-Za-z][A-Za-z /&,-]{0,60}?)\s*:(?:\s|$)")
# the parts of one body part's examination: under "Lumbar spine:", "Sensation: decreased on the
# right" is still the low back's; any other label ("Neurologic:", "Gait:") ends the part's
_EXAM_PART = re.compile(r"^(?:motor(?: exam\w*)?|strength|motor strength|sensation|sensory(?: exam\w*)?|"
                        r"reflexes|DTRs?|deep tendon reflexes|range of motion|ROM|palpation|inspection|"
                        r"tenderness|special tests|provocative tests|orthop(?:a)?edic tests)$", re.I)
_NARRATIVE_SECTIONS = ("subjective", "objective", "other")


def _names_part(label: str) -> bool:
    """A label names a body part: a region, or a limb or sign the narrative reader places
    ("Lower extremities:"; the arm it leaves case-wide)."""
    return bool(body_regions(label) or _placed(label, _NEURO_SIGN_REGIONS))


def _part_label(sentence: str) -> tuple[bool, str | None]:
    """(whether the sentence opens with a label that ends the one in force, the label when it
    names a body part). A part of the examination ("Motor:", "Sensation:") ends none."""
    m = _PART_LABEL.match(sentence)
    if not m or len(m.group("label").split()) > 8:
        return False, None
    label = m.group("label").strip()
    if _EXAM_PART.match(label):
        return False, None
    return True, (label if _names_part(label) else None)


def _numbered_lines(text: str) -> list[tuple[int, str]]:
    out = []
    for n, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n").split("\n"), 1):
        line = " ".join(raw.split())
        if line:
            out.append((n, line))
    return out


def _entries(lines: list[tuple[int, str]], listing: bool) -> list[list[tuple[int, str]]]:
    """A section's entries: a bulleted or numbered list's items (wrapped lines joined); in a
    list-like section (plan, diagnoses, medications) without bullets, each line that does not
    continue the one before (which ended mid-sentence, and this one starts in lowercase); else
    the paragraph."""
    bulleted = any(_BULLET.match(t) for _, t in lines)
    out: list[list[tuple[int, str]]] = []
    for n, t in lines:
        if not out:
            new = True
        elif bulleted:
            new = bool(_BULLET.match(t))
        elif listing:
            new = bool(_ENDS.search(out[-1][-1][1])) or not t[:1].islower()
        else:
            new = False
        if new:
            out.append([(n, t)])
        else:
            out[-1].append((n, t))
    return out


def _unit(entry: list[tuple[int, str]], section: str, prefix: str = "") -> _Unit:
    text, lines, offsets = prefix, [], []
    for i, (n, t) in enumerate(entry):
        if i == 0:
            t = _BULLET.sub("", t)
        if text and not text.endswith(" ") and not (text.endswith("-") and text[-2:-1].isalpha()):
            text += " "
        lines.append(n)
        offsets.append(len(text))
        text += t
    if not _ENDS.search(text):
        text += "."
    return _Unit(text, lines, offsets, section)


def _diagnoses(entry_text: str) -> list[str]:
    out = []
    for part in re.split(r"\s*;\s*", entry_text):
        d = _ICD.sub(" ", part)
        d = " ".join(d.split()).strip(" .,-:")
        if len(d) > 2 and not d.isdigit():
            out.append(d[0].lower() + d[1:] if not d[:2].isupper() else d)
    return out


def _medication_units(entry: list[tuple[int, str]]) -> list[_Unit]:
    """'Medications: A 10 mg bid, B 300 mg tid' -> one 'Current medications include ...' each."""
    u = _unit(entry, "medications")
    parts = [p for p in _split_outside_parens(u.text.rstrip("."), ",")]
    if len(parts) > 1 and all(_drug_mentions(p) for p in parts):
        return [_Unit(f"Current medications include {p.strip()}.", u.lines[:1], [0], "medications")
                for p in parts]
    prefix = "Current medications include "
    return [_unit(entry, "medications", prefix)]


def _request_items(entry: list[tuple[int, str]], warnings: list[str], source: str) -> list[_NoteRequest] | None:
    """The requested items of a plan entry, or None when it requests nothing."""
    u = _unit(entry, "plan")
    text = u.text.rstrip(". ")
    if _NOT_REQUEST.match(text):
        return None
    m = _REQUEST_CUE.match(text)
    cue = m.group(0) if m else ""
    body = text[len(cue):].strip() if m else text
    explicit = bool(cue) and bool(_EXPLICIT.match(cue))
    continued = bool(cue) and bool(_CONTINUE.match(cue))
    out = []
    for piece in _ITEM_SPLIT.split(body) if explicit else [body]:
        piece = piece.strip(" .,:")
        if not piece:
            continue
        tail = _ITEM_TAIL.search(piece)
        item, rest = (piece[:tail.start()], piece[tail.start():].strip()) if tail else (piece, "")
        parsed = _parse_item_text(item)
        modality = parsed.get("modality")
        if not parsed.get("drug") and modality in (None, "other"):
            if explicit and modality is None:
                warnings.append(f"{source}: line {u.lines[0]}: a request the reader cannot name "
                                f"(no drug or treatment it knows): {item!r}")
            continue
        if not explicit:
            if parsed.get("drug"):
                if not _AMOUNT.search(item):
                    how = "continued" if continued else "named"
                    warnings.append(f"{source}: line {u.lines[0]}: {item!r} is {how} without a "
                                    f"quantity: read as a current medication, not a request")
                    continue
            elif continued and not _COUNT.search(item):
                continue  # "Continue physical therapy as authorized": treatment under way
            elif _DONE.search(item):
                continue  # "MRI results reviewed": a report of what was done
        out.append(_NoteRequest(item=item.strip(), line=u.lines[0], written=text, rationale=rest,
                                new=bool(_NEW_CUE.match(cue)) and bool(parsed.get("drug"))))
    return out or None


_PERIOD_NEEDED = re.compile(r"[.!?]$")


def read_progress_note(text: str, source: str = "<note>", case_id: str | None = None, *,
                       provenance: bool = True) -> ParsedNote:
    """The case a progress note documents, with the line of each fact and what was not read.

    ``provenance=False`` skips attributing the narrative's findings to lines (each sentence is
    then not re-read alone): the case is the same, about twice as fast, for evaluation."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(source, "note is empty", expected="the text of a progress note")
    numbered = _numbered_lines(text)
    sections: dict[str, int] = {}
    by_section: list[tuple[str, list[tuple[int, str]]]] = [("header", [])]
    for n, line in numbered:
        kind, rest, label = _section_of(line)
        if kind:
            sections.setdefault(kind, n)
            if kind in _NARRATIVE_SECTIONS and _names_part(label):
                rest = f"{label}: {rest}".strip()   # "Right shoulder exam:" says where
            by_section.append((kind, [(n, rest)] if rest else []))
        else:
            by_section[-1][1].append((n, line))
    warnings: list[str] = []
    units: list[_Unit] = []
    diagnoses: list[tuple[str, int]] = []
    requests: list[_NoteRequest] = []
    for block, (kind, lines) in enumerate(by_section):
        if not lines or kind == "skip":
            continue
        if kind == "header":
            units.extend(_unit([nl], kind) for nl in lines)  # key: value lines, one each
            continue
        for entry in _entries(lines, kind in ("plan", "assessment", "medications")):
            if kind == "assessment":
                for d in _diagnoses(_unit(entry, kind).text):
                    diagnoses.append((d, entry[0][0]))
            elif kind == "medications":
                units.extend(_medication_units(entry))
            elif kind == "plan":
                found = _request_items(entry, warnings, source)
                if found:
                    requests.extend(found)
                else:
                    # "Continue home exercise program" reports care under way; any other plan
                    # line is planned, which the narrative reader never counts as tried
                    first = _BULLET.sub("", entry[0][1])
                    units.append(_unit(entry, kind, "" if _CONTINUE.match(first) else "Plan: "))
            else:
                units.append(_unit(entry, kind))
                units[-1].block = block
    # objective sentences are examination findings: say so the way a summary does
    # the narrative text, and where each of the note's lines starts in it (for provenance)
    # a sentence under a body part's label that names no part itself is said with the label, so
    # the narrative reader places its findings there (letter.py's _finding_regions, as for a
    # letter's "Examination of the lumbar spine revealed ...")
    summary, starts, line_at = "", [], []
    part: tuple[int, str | None] = (-1, None)    # (block, the label in force)
    for u in units:
        narrative = u.section in _NARRATIVE_SECTIONS
        sents = _sentences(u.text) if narrative else [u.text]
        if u.section != "objective" and part[0] != u.block and not any(_part_label(x)[1] for x in sents):
            sents = [u.text]    # history read whole, as before, unless a body part's label opens a sentence
        base = 0
        for s in sents:
            pos = u.text.find(s, base)
            base = pos + len(s)
            if summary:
                summary += " "
            label = None
            if narrative:
                opens, named = _part_label(s)
                if opens or part[0] != u.block:
                    part = (u.block, named)
                elif part[1] and not body_regions(s):
                    label = part[1]
            if u.section == "objective":
                # an examination finding, said the way a summary says it
                summary += f"Exam, {label}: " if label else "Exam: "
            elif label:
                summary += f"{label}: "
            at = len(summary)
            starts.append(at)
            line_at.append(u.lines[max(0, bisect.bisect_right(u.offsets, pos) - 1)])
            for off, n in zip(u.offsets, u.lines):
                if pos < off < pos + len(s):
                    starts.append(at + off - pos)
                    line_at.append(n)
            summary += s + ("" if _PERIOD_NEEDED.search(s) else ".")
    if not requests:
        raise InputError(source, "no requested item found in the note's plan",
                         expected="a Plan, Treatment plan or RFA section with lines such as "
                                  "'Request authorization for Norco 10/325 mg #120' or 'PT 2x4 lumbar'")
    facts = read_narrative(summary, requests)
    summary_sents = [x for x in facts.sents if x.block == "summary"]
    lines_of_sent = _sentence_lines(summary_sents, summary, starts, line_at)

    prov: dict[str, list[int]] = {}

    def field_line(rx: re.Pattern) -> tuple[str | None, int | None]:
        for n, t in numbered:
            m = rx.search(t)
            if m:
                return m.group(1), n
        return None, None

    injury, n = field_line(_F_INJURY)
    injury_date = _date(injury)
    if injury_date:
        prov["injury_date"] = [n]
    elif facts.injury:
        injury_date = facts.injury
        prov["injury_date"] = [n for t, n in lines_of_sent if re.search(r"injur", t, re.I)][:1]
    rfa, n_rfa = field_line(_F_RFA)
    visit, n_visit = field_line(_F_VISIT)
    request_date, n = (_date(rfa), n_rfa) if _date(rfa) else (_date(visit), n_visit)
    if request_date is None and facts.rfa:
        request_date, n = facts.rfa, None
    if request_date:
        if n:
            prov["request_date"] = [n]
    else:
        warnings.append(f"{source}: no date of service or RFA date: the request date is not known "
                        f"(the edition in force is then today's)")
    age, sex = facts.age, facts.sex
    a, n = field_line(_F_AGE)
    if a:
        age = int(a)
        prov["patient.age"] = [n]
    s, n = field_line(_F_SEX)
    if s:
        sex = "male" if s.lower().startswith("m") else "female"
        prov["patient.sex"] = [n]
    if age is None:
        dob, n = field_line(_F_DOB)
        born = _date(dob)
        if born and request_date:
            age = request_date.year - born.year - ((request_date.month, request_date.day) < (born.month, born.day))
            prov["patient.age"] = [n]
    for key, value in (("patient.age", age), ("patient.sex", sex)):
        if value is not None and key not in prov:
            prov[key] = sorted({line_at_sent for t, line_at_sent in lines_of_sent if _AGE_SEX.search(t)})[:1]
        elif value is None:
            warnings.append(f"{source}: patient {key.split('.')[1]} not stated")
    if injury_date is None:
        warnings.append(f"{source}: no date of injury")

    dx = [d for d, _ in diagnoses] or list(facts.diagnoses)
    for i, (d, n) in enumerate(diagnoses):
        prov[f"diagnoses[{i}]"] = [n]
    if not dx:
        warnings.append(f"{source}: no Assessment or Diagnoses section: no diagnoses read")

    case = narrative_case(facts, case_id or "note", age=age, sex=sex, injury_date=injury_date,
                          request_date=request_date, diagnoses=dx)
    for k, req in enumerate(requests):
        r = case["requests"][k]
        if req.new and "drug" in r:
            if any(m["name"] == r["drug"] for m in case.get("medications", [])):
                warnings.append(f"{source}: line {req.line}: {req.item!r} is started, but the note also "
                                f"lists it as a current medication: prior use left as read")
            else:
                r["prior_treatment"] = False  # the note starts it: a first prescription
                prov[f"requests[{k}].prior_treatment"] = [req.line]
    if facts._opioid_request():
        findings = case.setdefault("findings", {})
        for name, (value, line) in _monitoring(lines_of_sent).items():
            if name not in findings:
                findings[name] = value
                prov[f"findings.{name}"] = [line]
        if not findings:
            del case["findings"]
    # provenance of medications, findings and the narrative's request facts
    listed = {n for u in units if u.section == "medications" for n in u.lines}
    for i, med in enumerate(case.get("medications", [])):
        lines = [ln for (_, ln), sent in zip(lines_of_sent, summary_sents)
                 if any(g == med["name"] for g, _, _ in sent.drugs)]
        prov[f"medications[{i}]"] = [ln for ln in lines if ln in listed][:1] or lines[:1]
    if provenance:
        _finding_provenance(case, facts, requests, lines_of_sent, prov)
    for k, req in enumerate(requests):
        for key in case["requests"][k]:
            if key not in _NARRATIVE_REQUEST_FACTS or key in _parse_item_text(req.item):
                prov.setdefault(f"requests[{k}].{key}", [req.line])  # read from the plan line
    for k, r in enumerate(case["requests"]):
        if r.get("incomplete"):
            warnings.append(f"{source}: line {requests[k].line}: {r['item']!r} states no "
                            f"{'quantity' if 'drug' in r else 'number of visits'}")
    return ParsedNote(source=source, sections=sections, case=case,
                      provenance={k: v for k, v in prov.items() if v}, warnings=warnings)


def _sentence_lines(sents: list[Any], summary: str, starts: list[int], line_at: list[int]) -> list[tuple[str, int]]:
    """(sentence, the note's line it starts on) for each summary sentence of the narrative."""
    out, pos = [], 0
    for s in sents:
        at = summary.find(s.text, pos)
        if at < 0:
            at = pos
        pos = at + len(s.text)
        k = max(0, bisect.bisect_right(starts, at) - 1)
        out.append((s.text, line_at[k] if line_at else 0))
    return out


_NARRATIVE_REQUEST_FACTS = ("functional_improvement", "prior_sessions", "prior_treatment", "prior_use_weeks")


def _finding_provenance(case: dict[str, Any], facts: Any, requests: list[_NoteRequest],
                        lines_of_sent: list[tuple[str, int]], prov: dict[str, list[int]]) -> None:
    """The sentences that on their own give a finding (or a request fact) its value: each summary
    sentence is read alone with the same requests; a value that needs several sentences
    together gets no line."""
    findings = case.get("findings", {})
    wanted = {f"requests[{k}].{key}": r[key] for k, r in enumerate(case["requests"])
              for key in _NARRATIVE_REQUEST_FACTS if key in r}
    if not findings and not wanted:
        return
    bare = [_NoteRequest(r.item, r.line, r.written) for r in requests]
    topics = [set(filter(None, (c.get("drug"), c.get("modality")))) for c in case["requests"]]
    for text, line in lines_of_sent:
        alone = read_narrative(text, bare)
        got = alone.findings() if findings else {}
        for key, value in findings.items():
            if key in got and (got[key] == value or key.endswith("_regions") and set(got[key]) <= set(value)):
                # a place is read a sentence at a time: each sentence placing it somewhere it is
                prov.setdefault(f"findings.{key}", []).append(line)
        if wanted:
            about = alone.sents[0].refers if alone.sents else set()
            for k in range(len(requests)):
                if about and not about & topics[k]:
                    continue  # a sentence about another drug or treatment
                r = alone.request(k)
                for key in _NARRATIVE_REQUEST_FACTS:
                    path = f"requests[{k}].{key}"
                    if path in wanted and key in r and r[key] == wanted[path] \
                            and key not in _parse_item_text(requests[k].item):
                        prov.setdefault(path, []).append(line)
    for key, lines in list(prov.items()):
        prov[key] = sorted(set(lines))


# opioid monitoring as a progress note records it (letters summarise it rarely, so these are
# read from notes only): (finding, the term, documented-as-not-done pattern)
_NOT_DONE = re.compile(r"\bno (?:documentation|record|evidence) of\b|\bnot (?:been )?(?:done|performed|"
                       r"obtained|checked|reviewed|assessed|screened|documented|signed|on file)\b|"
                       r"\bhas not had\b|\bnever\b", re.I)
_MONITORING = (
    ("urine_drug_screen_consistent",
     re.compile(r"\b(?:urine (?:drug|toxicology) (?:screen|test)\w*|UDS|UDT|urine tox\w*)\b", re.I),
     re.compile(r"\b(?:inconsistent|not consistent|unexpected|positive for (?:illicit|cocaine|"
                r"methamphetamine|marijuana|THC)|negative for (?:the )?prescribed)\b", re.I),
     re.compile(r"\b(?:consistent|appropriate|as expected|expected)\b", re.I)),
    ("cures_reviewed", re.compile(r"\bCURES\b|\bPDMP\b|prescription (?:drug )?monitoring", re.I),
     None, re.compile(r"\b(?:reviewed|checked|consistent|appropriate|obtained|queried)\b", re.I)),
    ("opioid_agreement", re.compile(r"\b(?:opioid|narcotic|pain|medication)\s+(?:treatment\s+|use\s+)?"
                                    r"(?:agreement|contract)\b", re.I),
     None, re.compile(r"\b(?:signed|on file|in place|reviewed)\b", re.I)),
    ("aberrant_behavior_screened", re.compile(r"\baberrant\b|\bdrug[- ]seeking\b", re.I), None, None),
    ("adverse_effects_documented", re.compile(r"\b(?:side effects?|adverse effects?|constipation|"
                                              r"sedation|somnolence|nausea)\b", re.I), None, None),
    ("adl_documented", re.compile(r"\bactivities of daily living\b|\bADLs?\b|\bhousehold chores\b|"
                                  r"\bself[- ]care\b", re.I), None, None),
)


def _monitoring(lines_of_sent: list[tuple[str, int]]) -> dict[str, tuple[bool, int]]:
    """Opioid monitoring findings a note documents: {finding: (value, line)}. A term alone is
    not enough where the finding is a result (a urine drug screen is consistent or not; CURES,
    an agreement are reviewed or signed); a record that says it was not done gives False."""
    out: dict[str, tuple[bool, int]] = {}
    for text, line in lines_of_sent:
        for name, term, bad, good in _MONITORING:
            if name in out:
                continue
            m = term.search(text)
            if not m:
                continue
            rest = text[m.start():]
            if _NOT_DONE.search(text) and not re.search(r"\b(?:no|denies|without)\b[^.]{0,40}" + re.escape(m.group()),
                                                        text, re.I):
                out[name] = (False, line)  # "no urine drug screen on file", "CURES not checked"
            elif bad is not None and bad.search(rest):
                out[name] = (False, line)
            elif good is None or good.search(rest):
                out[name] = (True, line)
    return out


# ------------------------------------------------------------------ one entry point

def extract_note(text: str, source: str = "<note>", case_id: str | None = None) -> dict[str, Any]:
    """{"source", "kind": "note", "note": parsed note, "case": validated case data}; the shape
    api.extract_letter returns for a letter. Raises InputError."""
    from ..evaluation.case import case_to_data
    parsed = read_progress_note(text, source, case_id)
    case = parsed.to_case()
    return {"source": source, "kind": "note", "note": parsed.model_dump(mode="json"),
            "case": case_to_data(case)}


def letter_or_note(text: str) -> str:
    """The kind of a letter or note file's text: 'note' when it reads as one, else 'letter'
    (whose reader then says what is wrong with anything else)."""
    return "note" if detect_document(text) == "note" else "letter"


def case_from_text(text: str, source: str, *, kind: str = "auto", stem: str | None = None) -> tuple[str, Any]:
    """(kind, Case) for a text of any kind a reviewer pastes or uploads: an IMR letter, a
    progress note or a case (YAML/JSON). ``kind`` 'auto' detects it (detect_document); 'letter',
    'note' or 'case' insists. A letter's or note's case id is '<kind>-<stem>' (the CLI's
    'letter-<file stem>'), or '<kind>' without a stem. Raises InputError."""
    from ..evaluation.case import case_from_data, load_case_text
    found = detect_document(text) if kind == "auto" else kind
    case_id = f"{found}-{stem}" if stem else found
    if found == "letter":
        from .letter import letter_to_case, parse_letter
        parsed = parse_letter(text, source)
        return found, case_from_data(letter_to_case(parsed, case_id), source)
    if found == "note":
        return found, read_progress_note(text, source, case_id, provenance=False).to_case()
    if found == "case":
        return found, load_case_text(text, source)
    if found == "fhir":
        raise InputError(source, "a FHIR Bundle is not read as text here",
                         expected="a FHIR Bundle sent as application/fhir+json")
    raise InputError(source, "neither an IMR letter, a progress note nor a case",
                     expected="an IMR determination letter, a progress note with a Plan or RFA section, "
                              "or a case (YAML/JSON)")
