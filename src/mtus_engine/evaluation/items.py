"""What the engine reads of a case at run time, without pydantic: the declared case facts and
their bounds, the item notation (drug, strength, quantity, units a day, modality... read from
the item text) and the derivation of a request's left-out fields.

The case models (case.py) are built from the same declarations; a plain `mtus evaluate` on a
warm start-up cache reads its case with plain_case.py and never imports pydantic (issue 12).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import yaml

from ..errors import InputError
from ..rules.rulebook import FactSpec, cached_rulebook, default_rules_dir, item_tables
from ..yamlio import parse_document, read_bytes

# Per case: a UR request names a handful of items; thousands are a malformed or hostile case.
# Documented in `mtus evaluate --help`; the engine stays linear in requests below it.
MAX_REQUESTS = 500
MAX_MEDICATIONS = 500


# ---------------------------------------------------------------- the fact vocabulary
# Every fact a case states (source findings, request or patient) is declared once, in
# rules/vocabulary/facts*.yaml: its type, its values, its bounds and its meaning. CASE_FACTS
# holds those declarations; the case models (case.py) and plain_case.py's reader are built from them.

def _read_case_facts(vocabulary: Path) -> dict[str, FactSpec]:
    """The declared facts a case states, in declaration order (facts.yaml, then facts-*.yaml).

    Read with the plain safe loader, skipping what does not parse or validate: the rulebook
    load reports a broken vocabulary with file and line; the case model must not crash imports.
    """
    out: dict[str, FactSpec] = {}
    for path in [vocabulary / "facts.yaml", *sorted(vocabulary.glob("facts-*.yaml"))]:
        try:
            data = yaml.load(path.read_bytes(), Loader=_YamlLoader)  # noqa: S506 (a safe loader)
        except (OSError, yaml.YAMLError):
            continue
        facts = data.get("facts") if isinstance(data, dict) else None
        for name, raw in (facts.items() if isinstance(facts, dict) else ()):
            if not isinstance(raw, dict) or raw.get("source") not in _SOURCES or name in out:
                continue
            try:
                out[name] = FactSpec.model_validate(raw)
            except ValueError:    # pydantic's ValidationError (without importing pydantic here)
                continue
    return out


def _case_facts(root: Path, cached: Any = ...) -> dict[str, FactSpec]:
    # a clean rulebook in the start-up cache has them validated already (same files, same order)
    if cached is ...:
        cached = cached_rulebook(root)
    if cached is not None:
        return {name: spec for name, spec in cached.facts.items() if spec.source in _SOURCES}
    return _read_case_facts(root / "vocabulary")


_SOURCES = ("findings", "request", "patient")
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# looked up once for the import: the facts here, and the item tables of this rulebook on first
# use (each look-up walks the rules directory)
_STARTUP_RULES = os.environ.get("MTUS_RULES")
_STARTUP_RULEBOOK = cached_rulebook(default_rules_dir(), hand_over=True)
CASE_FACTS = _case_facts(default_rules_dir(), _STARTUP_RULEBOOK)


def fact_values(name: str) -> tuple[str, ...]:
    """A declared fact's values, in the vocabulary's order."""
    spec = CASE_FACTS.get(name)
    return tuple(spec.values or ()) if spec else ()



def _maximum(name: str) -> float:
    """A declared fact's upper bound (infinite when it has none)."""
    spec = CASE_FACTS.get(name)
    return math.inf if spec is None or spec.maximum is None else spec.maximum


# Bounds above which a number is a data-entry error, not a request (declared in the vocabulary).
MAX_SESSIONS = _maximum("sessions")
MAX_UNITS_PER_DAY = _maximum("units_per_day")
MAX_INJECTIONS = _maximum("injections_per_session")

BODY_REGIONS = fact_values("body_region")
MODALITIES = fact_values("modality")
# what a compounded topical may contain; "other" is an ingredient the vocabulary cannot name
INGREDIENTS = fact_values("ingredients")
COMPOUND = "compounded topical"   # the drug vocabulary's name for any compounded topical
GI_RISK_FACTORS = fact_values("gi_risk_factors")
DIAGNOSIS_TYPES = fact_values("diagnosis_type")



# ---- what the case models' validators do to a value before it is checked (case.py's models
# and plain_case.py's reader both call these: one definition)

def one_region(v: Any) -> Any:
    """requests[].body_region: one region written alone is a list of one."""
    return [v] if isinstance(v, str) else v


def lower_drug(v: Any) -> Any:
    """requests[].drug: compared lower-case, without surrounding spaces."""
    return v.strip().lower() if isinstance(v, str) else v


def id_text(v: Any) -> Any:
    """A case id written as a number is its text."""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def date_order_problems(case: Any) -> list[tuple[tuple, str]]:
    """Dates after the request date, each as (field path, what is wrong)."""
    out: list[tuple[tuple, str]] = []
    if case.injury_date and case.request_date and case.injury_date > case.request_date:
        out.append((("injury_date",), f"injury_date {case.injury_date} is after request_date {case.request_date}"))
    for i, med in enumerate(case.medications):
        if med.since and case.request_date and med.since > case.request_date:
            out.append((("medications", i, "since"),
                        f"medications[{i}].since {med.since} is after request_date {case.request_date}"))
    return out



# ------------------------------------------------------ item notation

class DrugLookup(Protocol):
    def find_in_text(self, text: str) -> str | None: ...
    def find_all_in_text(self, text: str) -> list[str]: ...
    def generic(self, name: str) -> str | None: ...
    def spec(self, generic: str) -> Any: ...


def medication_generic(name: str, drugs: DrugLookup) -> str | None:
    """A medication's generic name; a compounded topical is one drug, whatever it contains."""
    # the parse as _parsed returns it: read back from the cache, another thread may have emptied it
    if _parsed(name, drugs).get("drug") == COMPOUND:
        return COMPOUND
    return drugs.generic(name)


_PATTERN_METHODS = ("search", "match", "fullmatch", "sub", "subn", "split", "findall", "finditer")


class _LazyPattern:
    """A regular expression compiled on first use: a cold evaluate needs well under half of the
    patterns below (the rest serve other kinds of item and the letter extractor), and compiling
    them all was a fifth of importing this module. Behaves as the compiled pattern; on first
    use its methods are put in slots, so later calls cost no __getattr__ frame."""

    __slots__ = ("_args", "_compiled", *_PATTERN_METHODS)

    def __init__(self, pattern: str, flags: int = 0):
        self._args = (pattern, flags)
        self._compiled: re.Pattern | None = None

    def __getattr__(self, name: str) -> Any:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(*self._args)
            for method in _PATTERN_METHODS:
                setattr(self, method, getattr(compiled, method))
        return getattr(compiled, name)


# a strength: "10/325 mg", "75-0.2mg", "3%" ("%" has no word boundary after it)
_STRENGTH = _LazyPattern(r"(\d+(?:\.\d+)?(?:\s*[/-]\s*\d+(?:\.\d+)?)*)\s*(?:(mg|mcg|g|ml)\b|(%))", re.I)
# tried in order; "x" must stand alone ("Norflex 100 mg" is not "x 100")
_QTY = (
    _LazyPattern(r"#\s*(\d+)"),
    _LazyPattern(r"\b(?:qty|quantity)\s*:?\s*(\d+)", re.I),
    _LazyPattern(r"(?<![\w.])x\s*(\d+)\b(?!\s*refill)", re.I),
)
# tried in order: "#60 refills x 3" must read 3 refills, not 60
_REFILLS = (
    _LazyPattern(r"refills?\s*(?:x|:)?\s*(\d+)", re.I),
    _LazyPattern(r"\bx\s*(\d+)\s*refills?", re.I),
    _LazyPattern(r"(?<![#\d])(\d+)\s*refills?", re.I),
)
# ---- what items and sentences name, by pattern: rules/vocabulary/items.yaml, from the rulebook
# in effect ($MTUS_RULES, else the bundled one) as the letter reader's vocabulary is: taken from
# the rulebook in memory or in the start-up cache, else the YAML. The letter extractor takes
# modality_patterns() and body_regions from this module, so both read the same table.

def _read_item_vocabulary(vocabulary: Path) -> dict[str, list[dict[str, Any]]]:
    """The tables of items.yaml read from the YAML, each entry checked (rulebook.item_tables). A
    broken file is an error naming it and the entry: the parser must not silently recognise nothing."""
    path = vocabulary / "items.yaml"
    # read with lines, as the rulebook's lint reads it: without the start-up cache this can come
    # before the lint, and its message is the one the user sees
    data = parse_document(read_bytes(path), str(path))
    names = {label: CASE_FACTS[fact].values for label, fact in (("modality", "modality"), ("region", "body_region"))
             if fact in CASE_FACTS and CASE_FACTS[fact].values}
    # compiled on first use, not here: tests/test_item_vocabulary.py compiles them all
    tables, problems = item_tables(data, str(path), names=names)
    if problems:
        raise InputError.of(problems)
    return tables


def _item_vocabulary(root: Path, cached: Any = ...) -> dict[str, list[dict[str, Any]]]:
    # a clean rulebook in the start-up cache has them checked already (the rulebook load lints them)
    if cached is ...:
        cached = cached_rulebook(root)
    if cached is not None and cached.items:
        return cached.items
    return _read_item_vocabulary(root / "vocabulary")


def _flags(row: dict[str, Any]) -> int:
    return re.I if row.get("ignore_case", True) else 0


def _needles(pattern: str, flags: int) -> tuple[str, ...] | None:
    """Lower-case strings one of which every match of the pattern contains (None: no such set
    found). Searching the lower-cased text for them first skips most regular expressions: an
    item is tried against ~40 alternations, and Python's re tries each at every position."""
    try:
        from re import _constants as c, _parser as parser
    except ImportError:    # before Python 3.11
        import sre_constants as c  # type: ignore[no-redef]
        import sre_parse as parser  # type: ignore[no-redef]

    def need(items: Any) -> frozenset[str] | None:
        candidates: list[frozenset[str]] = []
        run = ""
        for op, av in items:
            if op is c.LITERAL and av < 128:
                run += chr(av).lower()
                continue
            if op is c.AT:        # zero-width: the literal on either side stays contiguous
                continue
            if run:
                candidates.append(frozenset([run]))
                run = ""
            sub = None
            if op is c.SUBPATTERN:
                sub = need(av[-1])
            elif op is c.BRANCH:
                alts = [need(b) for b in av[1]]
                sub = None if any(a is None for a in alts) else frozenset().union(*alts)
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
                sub = need(av[2])
            if sub:
                candidates.append(sub)
        if run:
            candidates.append(frozenset([run]))
        # the most selective: the longest shortest needle, then the fewest needles
        return max(candidates, key=lambda s: (min(map(len, s)), -len(s)), default=None)

    found = need(parser.parse(pattern, flags))
    if not found or not all(found):
        return None
    # a needle holding a shorter one adds nothing: the shorter is in the text whenever it is
    return tuple(sorted(n for n in found if not any(m != n and m in n for m in found)))


def _vocabulary_needles(vocabulary: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[str, ...] | None]]:
    """Every entry's needles, table by table (parsing ~70 patterns: tens of ms, so kept in the
    start-up cache beside the rulebook)."""
    return {key: [_needles(row["pattern"], _flags(row)) for row in rows] for key, rows in vocabulary.items()}


# Building the needle finder (one trie of every needle) costs a few ms: a one-case command
# never recoups it, a batch or the service does after a few dozen items. Without needles in the
# start-up cache, working them out costs about what compiling every pattern does: the first
# items are then tried pattern by pattern.
WARM_UP_ITEMS = 32

# an entry: (name, strong, pattern compiled on first use, needles or None)
_Entry = tuple[str, bool, "_LazyPattern", "frozenset[str] | None"]


class _ItemTables:
    """items.yaml's four tables of one rulebook, each entry with its needles once known."""

    def __init__(self, vocabulary: dict[str, list[dict[str, Any]]],
                 needles: dict[str, list[tuple[str, ...] | None]] | None = None):
        self.vocabulary = vocabulary
        self.parses = 0
        self._lock = threading.Lock()
        self.finder: tuple[Callable[[str], list[str]], dict[str, frozenset[str]]] | None = None
        self.modality_patterns: tuple[tuple[str, Any], ...] | None = None
        self._set(needles)

    def _set(self, needles: dict[str, list[tuple[str, ...] | None]] | None) -> None:
        self.has_needles = needles is not None

        def entries(key: str, label: str) -> tuple[_Entry, ...]:
            rows = self.vocabulary[key]
            found = needles[key] if needles is not None else [None] * len(rows)
            old = getattr(self, key, None)   # patterns already compiled are kept
            return tuple((row[label], row.get("strong", False),
                          old[n][2] if old else _LazyPattern(row["pattern"], _flags(row)),
                          frozenset(hit) if hit else None) for n, (row, hit) in enumerate(zip(rows, found)))

        self.item_modalities = entries("item_modalities", "modality")
        self.text_modalities = entries("text_modalities", "modality")
        self.text_regions = entries("text_regions", "region")
        self.item_regions = entries("item_regions", "region")

    def warm(self) -> bool:
        """Count an item parsed; True once the needle finder pays (after WARM_UP_ITEMS)."""
        self.parses += 1
        if self.parses <= WARM_UP_ITEMS:
            return False
        if self.finder is None:
            # the service's threads share these tables: a finder built from item_modalities
            # before their needles were set would miss needles and skip patterns that match, so
            # one thread builds, and the finder is published last
            with self._lock:
                if self.finder is None:
                    if not self.has_needles:
                        self._set(_vocabulary_needles(self.vocabulary))
                    words = sorted({n for *_, needles in self.item_modalities if needles for n in needles})
                    # each needle's needle prefixes: at a position the finder reports the longest
                    # needle there, and every shorter needle there is a prefix of it
                    known = set(words)
                    prefixes = {w: frozenset(w[:k] for k in range(1, len(w) + 1) if w[:k] in known)
                                for w in words}
                    self.finder = (re.compile(f"(?=({_trie(words)}))").findall, prefixes)
        return True

    def needles_in(self, low: str) -> set[str]:
        """Every item_modalities needle the lower-cased text contains (the finder built)."""
        findall, prefixes = self.finder
        present: set[str] = set()
        for longest in findall(low):
            present |= prefixes[longest]
        return present


def _tables_of(root: Path, rulebook: Any) -> _ItemTables:
    if rulebook is None or not rulebook.items:
        return _ItemTables(_read_item_vocabulary(root / "vocabulary"))
    vocabulary = rulebook.items
    if not rulebook.caches:    # nothing kept: worked out after the warm-up, if ever
        return _ItemTables(vocabulary)
    return _ItemTables(vocabulary, rulebook.cached("item-needles", lambda: _vocabulary_needles(vocabulary)))


# per rules directory in effect ($MTUS_RULES; None: the default), as the letter reader keeps its
# tables: a process that switches rulebook reads the second one's items
_tables_by_rules: dict[str | None, _ItemTables] = {}


def _tables() -> _ItemTables:
    key = os.environ.get("MTUS_RULES")
    found = _tables_by_rules.get(key)
    if found is None:
        root = default_rules_dir()
        # the import's look-up (one walk of the rules a start) when it found this directory's
        found = _tables_by_rules[key] = _tables_of(
            root, _STARTUP_RULEBOOK if _STARTUP_RULEBOOK is not None and key == _STARTUP_RULES else
            cached_rulebook(root))
    return found


def modality_patterns() -> tuple[tuple[str, Any], ...]:
    """(modality, pattern) of items.yaml's text_modalities, in order, of the rulebook in effect
    (the same tuple while that rulebook is)."""
    tables = _tables()
    if tables.modality_patterns is None:
        tables.modality_patterns = tuple((name, pattern) for name, _, pattern, _ in tables.text_modalities)
    return tables.modality_patterns


def _trie(words: list[str]) -> str:
    """A regular expression matching the longest of the words at a position: a trie, so the
    regex engine follows one path per position instead of trying every word."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body   # a word ends here: longer first
    return build(trie)


def _matching(table: tuple[_Entry, ...], text: str) -> list[str]:
    """Names of the table's entries whose pattern the text matches, in table order. ASCII text
    lower-cases exactly, so a match implies a needle in it; other text is searched."""
    low = text.lower() if text.isascii() else None
    found = []
    for name, _, pattern, needles in table:
        if needles is not None and low is not None:
            for needle in needles:
                if needle in low:
                    break
            else:
                continue
        if pattern.search(text):
            found.append(name)
    return found


def body_regions(text: str) -> list[str]:
    """The body regions a text names, in BODY_REGIONS order (shared with the letter extractor)."""
    return _matching(_tables().text_regions, text)


def item_regions(item: str) -> list[str]:
    """The body regions a request item names, in BODY_REGIONS order."""
    tables = _tables()
    found = set(_matching(tables.text_regions, item)) | set(_matching(tables.item_regions, item))
    return [name for name in BODY_REGIONS if name in found]


_ADDITIONAL = _LazyPattern(r"\badditional\b|\bcontinu\w*|\bmore\b|\brepeat\b|\bfurther\b|\bextension\b", re.I)
_COUNTED = frozenset({"mri", "ct", "xray", "bone_scan", "emg_ncs", "ultrasound_diagnostic", "lab_test", "dme",
                      "hot_cold", "lumbar_support", "urine_drug_test", "surgery", "consultation",
                      "surgical_consultation", "preop_clearance", "fce", "brace"})    # a number on these is a quantity
_THERAPIES = frozenset({"physical_therapy", "chiropractic", "acupuncture", "massage", "aquatic_therapy",
                        "ultrasound_therapeutic", "laser", "biofeedback"})
# "#6" after a therapy is its visits; after anything else, a quantity
_SERVICE_WORDS = _LazyPattern(r"therap\w*|treatments?|\btests?\b|testing|evaluation|\bprogram\b|\bstudy\b|services?"
                            r"|\bscan\b|imaging|procedure|\bvisits?\b|\bsessions?\b|\bexam\b", re.I)
_DOSE_SIGNS = _LazyPattern(r"\d\s*(?:mg|mcg|%|ml|gm?)\b|\d\s*%|\b(?:tabs?|tablets?|caps?|capsules?|cream|gel|patch"
                         r"|ointment|pad)\b", re.I)

# ---- counts. Number words become digits ("Eight (8)" -> "8", "twice" -> "2 times").
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90, "a single": 1,
                      "single": 1})
_NUMBER_WORD = _LazyPattern(r"\b(" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b", re.I)
_TIMES_WORDS = ((_LazyPattern(r"\btwice\b", re.I), "2 times"), (_LazyPattern(r"\bonce\b", re.I), "1 time"),
                (_LazyPattern(r"\bthrice\b", re.I), "3 times"))
_ECHO = _LazyPattern(r"\b(\d+)\s*\(\s*\1\s*\)")      # "8 (8)"
_SESSION_NOUN = r"(?:sessions?|visits?|treatments?|appointments?)"
_PER_WEEK = r"(?:\s*(?:per|a|/|each|every)\s*(?:week|wk)\b|\s*weekly\b)"
_PAREN_TOTAL = _LazyPattern(r"\(\s*(?:total\s*(?:of\s*)?)?(\d+)\s*(?:total\s*)?" + _SESSION_NOUN + r"?\s*\)", re.I)
# "2 times 4 visits", "1 times 8", "2x4", "2 x 6"
_N_BY_M = _LazyPattern(r"(?<![\w.])(\d+)\s*(?:x|times|×)\s*(\d+)\b(?!\s*(?:mg|%|hours?|hrs?|days?|months?))", re.I)
_COUNT = _LazyPattern(r"(?<![\w.#/-])(\d+)\b(?:\s+(?!of\b)[a-z&,/()-]+){0,5}?\s+" + _SESSION_NOUN + r"\b(?!" + _PER_WEEK
                    + r")", re.I)
_COUNT_AFTER = _LazyPattern(r"\b" + _SESSION_NOUN + r"\s*(?:,|:)?\s*(?:for|of|x|times|#|no\.?)?\s*(\d+)\b(?!\s*(?:times|x)\b)"
                          r"(?!" + _PER_WEEK + r")(?!\s*(?:mins?|minutes?|hours?|weeks?|days?|months?)\b)", re.I)
_PRIOR_CONTEXT = _LazyPattern(r"(?:complet\w*|prior|previous\w*|already|had|attended|authorized|certified|approved"
                            r"|received|to date|so far)\W*(?:\w+\W+){0,3}$", re.I)
_FREQ = _LazyPattern(r"(?<![\w.])(\d+)(?:\s*(?:-|to|or)\s*(\d+))?\s*(?:x|times?|" + _SESSION_NOUN + r")?"
                   + _PER_WEEK + r"\s*,?\s*(?:for|over|x|times|during|×)?\s*(?:a (?:period|total) of\s*)?"
                   r"(\d+)\s*(?:-\s*(\d+)\s*)?(?:weeks?|wks?)\b", re.I)
_FREQ_REVERSED = _LazyPattern(r"\b(?:for|over)\s*(\d+)\s*(?:weeks?|wks?)\s*,?\s*(?:at\s*)?(\d+)(?:\s*(?:-|to)\s*(\d+))?"
                            r"\s*(?:x|times?|" + _SESSION_NOUN + r")?" + _PER_WEEK, re.I)
_TIMES_N = _LazyPattern(r"(?<![\w.])(?:x|times|×)\s*(\d+)\b(?!\s*(?:refill|mg|%|a\b|per\b|weeks?|days?\s*a))", re.I)
_HASH = _LazyPattern(r"#\s*(\d+)|\b(?:qty|quantity)\s*:?\s*(\d+)", re.I)
_LEADING_ECHO = _LazyPattern(r"^\s*(\w+)\s*\(\s*(\d+)\s*\)")    # "One (1) x-ray"
_DAY_SUPPLY = _LazyPattern(r"day supply\s*:?\s*(\d+)|(?<![#\d])(\d+)[- ]days?'? supply|supply\s*:?\s*(?:of\s*)?(\d+)\s*days",
                         re.I)


def _numbers(text: str) -> str:
    """The text with number words as digits, "twice" as "2 times" and "8 (8)" as "8"."""
    for pattern, repl in _TIMES_WORDS:
        text = pattern.sub(repl, text)
    text = _NUMBER_WORD.sub(lambda m: str(_NUMBER_WORDS[m.group(1).lower()]), text)
    return _ECHO.sub(r"\1", text)


def _sessions(text: str, therapy: bool, loose: bool = True) -> int | None:
    """Visits an item asks for, from any of the notations letters use (text with digits for
    number words): "(12 sessions)", "2 times 4 visits", "8 sessions" (several are added up:
    "2 sessions for the neck and 8 sessions for the wrist"), "3 visits per week for 2 weeks"
    (a range counts its upper end: "2-3 times a week for 6 weeks" is 18), "2x4", "x 6",
    "times 2", "sessions #6". Without ``loose`` a bare "x 3" or "times 3" is not visits (an
    electrocardiogram "times 3" is three tests)."""
    m = _PAREN_TOTAL.search(text)
    if m and (_N_BY_M.search(text[:m.start()]) or _FREQ.search(text[:m.start()])
              or re.search(_SESSION_NOUN, m.group(0), re.I)):
        return int(m.group(1))
    m = _N_BY_M.search(text)
    if m and not re.match(r"\s*(?:a|per)\b", text[m.end():]):
        return int(m.group(1)) * int(m.group(2))
    counts = []
    for m in _COUNT.finditer(text):
        if _PRIOR_CONTEXT.search(text[max(0, m.start() - 40):m.start()]):
            continue
        counts.append(int(m.group(1)))
    if counts:
        return sum(counts)
    blocks = [int(m.group(2) or m.group(1)) * int(m.group(4) or m.group(3)) for m in _FREQ.finditer(text)]
    if blocks:   # "2 times a week for 3 weeks, then 1 time a week for 2 weeks"
        return sum(blocks)
    m = _FREQ_REVERSED.search(text)
    if m:
        return int(m.group(3) or m.group(2)) * int(m.group(1))
    m = _COUNT_AFTER.search(text)
    if m:
        return int(m.group(1))
    if not loose:
        return None
    m = _TIMES_N.search(text)
    if m:
        return int(m.group(1))
    if therapy:
        m = _HASH.search(text)
        if m:
            return _first_int(m)
    return None


def _quantity(item: str, text: str) -> int | None:
    """How many of a test, device or procedure: "#2", "QTY: 2", "times 3", "One (1) x-ray"."""
    m = _HASH.search(text) or _TIMES_N.search(text)
    if m:
        return _first_int(m)
    m = _LEADING_ECHO.match(item)
    if m and (m.group(1).isdigit() or m.group(1).lower() in _NUMBER_WORDS) and \
            int(_numbers(m.group(1))) == int(m.group(2)):
        return int(m.group(2))
    return None


def item_modality(item: str) -> tuple[str | None, bool]:
    """The modality an item names and whether it wins over a drug the item also names."""
    tables = _tables()
    table = tables.item_modalities
    if not tables.warm() or not item.isascii():
        for name, strong in _matching_first(table, item):
            return name, strong
        return None, False
    present = tables.needles_in(item.lower())
    for name, strong, pattern, needles in table:
        if needles is not None and needles.isdisjoint(present):
            continue
        if pattern.search(item):
            return name, strong
    return None, False


def _matching_first(table: tuple[_Entry, ...], item: str) -> Iterator[tuple[str, bool]]:
    """The entries whose pattern the item matches, in table order (lazily: the first wins)."""
    low = item.lower() if item.isascii() else None
    for name, strong, pattern, needles in table:
        if needles is not None and low is not None and not any(needle in low for needle in needles):
            continue
        if pattern.search(item):
            yield name, strong


# prescription directions: how often, then how many units a dose ("1-2 tabs q4-6h" = 12 a day)
_EVERY_HOURS = _LazyPattern(r"\b(?:q\.?\s*|every\s+)(\d+)\s*(?:-\s*\d+\s*)?h(?:rs?|ours?)?\b", re.I)
_TIMES_A_DAY = (
    (_LazyPattern(r"\b(\d+)\s*(?:x|times)\s*(?:a|per|/)\s*day\b", re.I), None),
    (_LazyPattern(r"\b(?:qid|q\.i\.d\.?|four times (?:a|per) day)(?!\w)", re.I), 4),
    (_LazyPattern(r"\b(?:tid|t\.i\.d\.?|three times (?:a|per) day)(?!\w)", re.I), 3),
    (_LazyPattern(r"\b(?:bid|b\.i\.d\.?|twice (?:a|per) day|two times (?:a|per) day)(?!\w)", re.I), 2),
    (_LazyPattern(r"\b(?:qd|qhs|once (?:a|per) day|daily|at bedtime|nightly)\b", re.I), 1),
)
_DOSE_UNITS = _LazyPattern(r"(?<![#\d.])(\d+)(?:\s*-\s*(\d+))?\s*(?:tabs?|tablets?|caps?|capsules?|pills?)\b"
                         r"[^\d#]{0,20}$", re.I)
# topical forms; "patch" is left out: the lidocaine patch and opioid patches are their own drugs
_TOPICAL_FORM = _LazyPattern(r"\b(?:compound(?:ed)?|creams?|gels?|ointments?|lotions?|topical|liniment|base)\b", re.I)
_SEGMENT_SPLIT = _LazyPattern(r"[,;+]|(?<!\d)/|/(?!\d)|\band\b|\bwith\b|\bin\b", re.I)
_PERCENT = _LazyPattern(r"\d\s*%")
_INGREDIENT_WORDS = [(name, _LazyPattern(r"(?<![A-Za-z])" + name.replace("_", r"[\s-]*") + r"(?![A-Za-z])", re.I))
                     for name in INGREDIENTS if name != "other"]
# "Lidocaine 5% patch": the patch the vocabulary names "lidocaine patch"; a strength in mcg an
# hour is a patch's rate ("Fentanyl 25 mcg/hr")
_PATCH = _LazyPattern(r"\bpatch|\btransdermal|\d\s*mcg\s*/\s*h(?:r|our)?\b", re.I)
_STRENGTH_BEFORE_PATCH = _LazyPattern(r"\b([A-Za-z]+)\s+\d+(?:\.\d+)?\s*%\s+(?:transdermal\s+)?(patch)", re.I)
_PURCHASE = _LazyPattern(r"purchase|\bbuy\b", re.I)
_RENTAL = _LazyPattern(r"rental|\brent\b|\btrial\b", re.I)
_FLUORO = _LazyPattern(r"fluoro|image[- ]guid", re.I)
_RENTAL_LENGTH = _LazyPattern(r"(?<![\w.])(\d+)\s*-?\s*(days?|weeks?|wks?|months?|mos?)\b", re.I)
_DAYS_IN = {"d": 1, "w": 7, "m": 30}
_HOURS_WEEK = _LazyPattern(r"(\d+)\s*(?:hours?|hrs?)\s*(?:per|a|/)\s*(?:week|wk)\b", re.I)
_HOURS_DAY = _LazyPattern(r"(\d+)\s*(?:hours?|hrs?)\s*(?:per|a|/)\s*day\b", re.I)
_DAYS_WEEK = _LazyPattern(r"(\d+)\s*(?:days?|times|x)\s*(?:per|a|/)\s*(?:week|wk)\b", re.I)
_EVERY_DAY = _LazyPattern(r"\bdaily\b|every day|7 days", re.I)
_HOMEMAKER = _LazyPattern(r"homemak|housekeep|chores?|cleaning|laundry|shopping|cooking|meal prep|personal care"
                        r"|\bADLs?\b|\bADL's\b|activities of daily living|mobility|\btransfers?\b", re.I)
_MEDICAL_HOME = _LazyPattern(r"nurs|\bRN\b|wound|infusion|injection|skilled|therap|medication management|dressing",
                           re.I)
_INJECTIONS = (_LazyPattern(r"(\d+)\s+(?:trigger[- ]?point\s+)?injections?\b", re.I),
               _LazyPattern(r"(?<![\w.])x\s*(\d+)\b", re.I))


_numbered_cache: dict[int, tuple[Any, re.Pattern | None]] = {}


def _numbered_names(drugs: DrugLookup) -> re.Pattern | None:
    """The vocabulary's names numbered with "#" ("Tylenol #3"), whose number is no quantity."""
    hit = _numbered_cache.get(id(drugs))
    if hit is None or hit[0] is not drugs:
        names = sorted((n for n in getattr(drugs, "names", dict)() if "#" in n), key=len, reverse=True)
        pattern = re.compile(r"(?<![A-Za-z])(?:" + "|".join(re.escape(n) for n in names) + r")(?!\d)", re.I) \
            if names else None
        if len(_numbered_cache) > 16:
            _numbered_cache.clear()
        hit = _numbered_cache[id(drugs)] = (drugs, pattern)
    return hit[1]


def _first_int(m: re.Match | None) -> int | None:
    if not m:
        return None
    for g in m.groups():
        if g is not None:
            return int(g)
    return None


_item_cache: dict[tuple[int, str], dict[str, Any]] = {}


def parse_item(item: str, drugs: DrugLookup) -> dict[str, Any]:
    """What the item text itself says: drug, strength, quantity, refills, sessions, modality."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in _parsed(item, drugs).items()}


def _parsed(item: str, drugs: DrugLookup) -> dict[str, Any]:
    """parse_item's cached answer itself: read it, never change it."""
    key = (id(drugs), item)
    hit = _item_cache.get(key)
    if hit is None:
        if len(_item_cache) > 50_000:  # bounded: batches repeat item texts, but memory stays flat
            _item_cache.clear()
        hit = _item_cache[key] = _parse_item(item, drugs)
    return hit


def strength_mg(text: str | None) -> list[float] | None:
    """The milligram amounts of a strength ("10/325 mg": [10, 325]); None unless in mg."""
    text = text or ""
    # per text: the search costs ~10 us and derivations ask per request (a fresh list each call)
    hit = _strength_cache.get(text, _strength_cache)
    if hit is _strength_cache:
        m = _STRENGTH.search(text)
        hit = None if not m or (m.group(2) or "").lower() != "mg" else \
            tuple(float(x) for x in _AMOUNT_SPLIT(_SPACES("", m.group(1))))
        if len(_strength_cache) > 4096:   # bounded: strengths repeat, memory stays flat
            _strength_cache.clear()
        _strength_cache[text] = hit
    return None if hit is None else list(hit)


_strength_cache: dict[str, tuple[float, ...] | None] = {}


def strength_mcg(text: str | None) -> list[float] | None:
    """The microgram amounts of a strength ("25 mcg", a patch's "25 mcg/hr": [25]); None unless in mcg."""
    m = _STRENGTH.search(text or "")
    if not m or (m.group(2) or "").lower() != "mcg":
        return None
    return [float(x) for x in _AMOUNT_SPLIT(_SPACES("", m.group(1)))]


# compiled once: re.sub and re.split look their pattern up in re's cache on every call
_SPACES = re.compile(r"\s+").sub
_AMOUNT_SPLIT = re.compile(r"[/-]").split


def _strength(item: str) -> str | None:
    m = _STRENGTH.search(item)
    if not m:
        return None
    amount = _SPACES("", m.group(1))
    return f"{amount}%" if m.group(3) else f"{amount} {m.group(2).lower()}"


def units_per_day(text: str) -> float | None:
    """Units a day from prescription directions in the text, or None when it gives none."""
    per_day = None
    m = _EVERY_HOURS.search(text)
    if m and int(m.group(1)) > 0:
        per_day = 24 / int(m.group(1))
    else:
        for pattern, n in _TIMES_A_DAY:
            if (m := pattern.search(text)):
                per_day = n if n is not None else int(m.group(1))
                break
    if not per_day:
        return None
    dose = _DOSE_UNITS.search(text[:m.start()])
    units = max(int(g) for g in dose.groups() if g) if dose else 1
    value = round(float(per_day * units if 0 < units <= 10 else per_day), 2)
    return value if 0 < value <= MAX_UNITS_PER_DAY else None


def _ingredients(text: str, drugs: DrugLookup) -> list[str]:
    """A compound's ingredients in order, each segment once; a dosed segment the vocabulary
    cannot name counts as "other"."""
    found: list[str] = []
    for seg in _SEGMENT_SPLIT.split(text):
        names = [name for name, pattern in _INGREDIENT_WORDS if pattern.search(seg)]
        for generic in drugs.find_all_in_text(seg):
            names += [n for n in _own_ingredients(generic) if n in INGREDIENTS]
        if not names and _PERCENT.search(seg):
            names = ["other"]
        found += names
    return list(dict.fromkeys(found))


def _own_ingredients(generic: str) -> list[str]:
    """Ingredients a vocabulary drug is made of, in its name's order ("methyl salicylate/menthol": both)."""
    return list(dict.fromkeys(part.strip().removesuffix(" patch").replace(" ", "_") for part in generic.split("/")))


def _judged_as_compound(drug: str | None, drugs: DrugLookup) -> bool:
    """A product the vocabulary files with the compounded topicals (class "compounded"): a
    proprietary blend (LidoPro) or a form the guideline recommends only as another product
    (lidocaine other than the patch)."""
    spec = drugs.spec(drug) if drug and hasattr(drugs, "spec") else None
    return spec is not None and "compounded" in spec.classes


def _compound(item: str, drug: str | None, drugs: DrugLookup) -> list[str] | None:
    """The ingredients when the item is a compounded topical, else None."""
    as_compound = _judged_as_compound(drug, drugs)
    spec = drugs.spec(drug) if drug and hasattr(drugs, "spec") else None
    # an oral drug given a strength in percent is its topical form (tablets are dosed in mg):
    # "Diclofenac sodium 3% 300mg/g"; a topical product of its own (Flector 1.3% patch) is not
    in_percent = spec is not None and "topical" not in spec.classes and bool(_PERCENT.search(item))
    if not as_compound and not in_percent and not _TOPICAL_FORM.search(item) and (
            len(_PERCENT.findall(item)) < 2 or next(_matching_first(_tables().text_modalities, item), None)):
        return None  # e.g. an injection of lidocaine 1% and bupivacaine 0.25%
    ingredients = [i for i in _ingredients(item, drugs) if not (as_compound and i == "other")] \
        if as_compound else _ingredients(item, drugs)
    if not as_compound and spec is not None and "topical" in spec.classes and drug != COMPOUND \
            and set(ingredients) <= set(_own_ingredients(drug)):
        return None  # a product of its own (Menthoderm gel, capsaicin cream)
    if not ingredients and drug != COMPOUND and not as_compound:
        return None
    return ingredients


def _drug_fields(item: str, text: str, out: dict[str, Any]) -> None:
    """Strength, quantity, refills and directions of a drug item (text: digits for number words)."""
    strength = _strength(item)
    if strength:
        out["strength"] = strength
    refill_match = next((m for p in _REFILLS if (m := p.search(text))), None)
    scrubbed = text[:refill_match.start()] + text[refill_match.end():] if refill_match else text
    qty = _first_int(next((m for p in _QTY if (m := p.search(scrubbed))), None))
    if qty is not None:
        out["quantity"] = qty
    refills = _first_int(refill_match)
    if refills is not None:
        out["refills"] = refills
    per_day = units_per_day(item)
    if per_day is None and qty and (m := _DAY_SUPPLY.search(item)) and _first_int(m):
        per_day = round(qty / _first_int(m), 2)
        per_day = per_day if 0 < per_day <= MAX_UNITS_PER_DAY else None
    if per_day is not None:
        out["units_per_day"] = per_day


def _parse_item(item: str, drugs: DrugLookup) -> dict[str, Any]:
    out: dict[str, Any] = {}
    text = _numbers(item)
    modality, strong = item_modality(item)
    drug = None if strong else drugs.find_in_text(_STRENGTH_BEFORE_PATCH.sub(r"\1 \2", item))
    if drug and _PATCH.search(item) and drugs.generic(f"{drug} patch"):
        drug = drugs.generic(f"{drug} patch")   # "Lidocaine 5% patch", "Fentanyl 25 mcg/hr"
    if drug and "#" in text and (numbered := _numbered_names(drugs)) is not None:
        text = numbered.sub(lambda m: m.group().replace("#", "No. "), text)   # "Tylenol #3 #60": #60
    if drug and modality == "other" and _judged_as_compound(drug, drugs):
        drug = None     # "Lidocaine injection" is no topical
    ingredients = None if strong else _compound(item, drug, drugs)
    if ingredients is not None:
        out["drug"] = COMPOUND
        if ingredients:
            out["ingredients"] = ingredients
        regions = item_regions(item)
        if regions:
            out["body_region"] = regions
        qty = _first_int(next((m for p in _QTY if (m := p.search(text))), None))
        if qty is not None:
            out["quantity"] = qty
        refills = _first_int(next((m for p in _REFILLS if (m := p.search(text))), None))
        if refills is not None:
            out["refills"] = refills
        return out
    if drug:
        out["drug"] = drug
        _drug_fields(item, text, out)
        return out
    if modality is None and _SERVICE_WORDS.search(item) and not _DOSE_SIGNS.search(item):
        modality = "other"
    if modality is None:
        if _DOSE_SIGNS.search(item) or _HASH.search(item):
            _drug_fields(item, text, out)     # a drug the vocabulary does not know
            out.pop("units_per_day", None)
        return out
    out["modality"] = modality
    if modality in _COUNTED:
        qty = _quantity(item, text)
        if qty is not None:
            out["quantity"] = qty
    else:
        sessions = _sessions(text, modality in _THERAPIES or bool(re.search(_SESSION_NOUN, item, re.I)),
                             loose=modality != "other")
        if sessions is not None and sessions <= MAX_SESSIONS:
            out["sessions"] = sessions
        elif modality not in _THERAPIES and (qty := _quantity(item, text)) is not None:
            out["quantity"] = qty
    regions = item_regions(item)
    if regions:
        out["body_region"] = regions
    if _ADDITIONAL.search(item):
        out["prior_treatment"] = True
    out.update(_modality_details(modality, item))
    return out


def _modality_details(modality: str, item: str) -> dict[str, Any]:
    """What the item says about a device, an injection or home services."""
    out: dict[str, Any] = {}
    if modality in ("tens", "h_wave", "interferential", "nmes", "dme", "hot_cold", "lumbar_support", "brace"):
        if _PURCHASE.search(item):
            out["purchase"] = True
        elif _RENTAL.search(item):
            out["purchase"] = False
            if modality in ("h_wave", "interferential") and (m := _RENTAL_LENGTH.search(_numbers(item))):
                days = int(m.group(1)) * _DAYS_IN[m.group(2)[0].lower()]
                if days <= 3650:
                    out["rental_days"] = days   # "30-day trial", "3 month rental": the trial's length
    elif modality == "epidural_steroid_injection" and _FLUORO.search(item):
        out["fluoroscopy"] = True
    elif modality == "trigger_point_injection":
        n = next((int(m.group(1)) for p in _INJECTIONS if (m := p.search(item))), None)
        if n is not None and n <= MAX_INJECTIONS:
            out["injections_per_session"] = n
    elif modality == "home_health":
        hours = None
        if (m := _HOURS_WEEK.search(item)):
            hours = int(m.group(1))
        elif (m := _HOURS_DAY.search(item)):
            days = _DAYS_WEEK.search(_numbers(item))
            if days:
                hours = int(m.group(1)) * int(days.group(1))
            elif _EVERY_DAY.search(item):
                hours = int(m.group(1)) * 7
        if hours is not None and hours <= 168:
            out["hours_per_week"] = hours
        if _MEDICAL_HOME.search(item):
            out["homemaker_only"] = False
        elif _HOMEMAKER.search(item):
            out["homemaker_only"] = True
    return out


# the bounds a derived value must meet, as a value written in the case does
_BOUNDS = {name: bound for name in ("quantity", "refills", "sessions", "prior_sessions", "prior_use_weeks")
           if (bound := _maximum(name)) != math.inf}


def _weeks_between(start: dt.date, end: dt.date) -> int:
    return max(0, (end - start).days // 7)


def derive_request(case: Any, index: int, drugs: DrugLookup) -> tuple[dict[str, Any], dict[str, str]]:
    """One request with the fields it left out filled from its item text and the medications.

    Returns the fields (None left out) and where each came from ("case", "item",
    "medications", "medications.since", ...), so a determination can say which facts were
    read from where.
    """
    req = case.requests[index]
    # the validated fields, read from the model's dict (model_dump per request cost more than
    # the rest of this function); lists copied, as model_dump did, so the case stays untouched
    given = {k: (list(v) if type(v) is list else v) for k, v in req.__dict__.items() if v is not None}
    src = {k: "case" for k in given if k != "item"}
    filled = dict(given)
    # the cached parse read in place: only what is taken from it is copied (its lists)
    for key, value in _parsed(req.item, drugs).items():
        if key not in filled:
            filled[key] = list(value) if type(value) is list else value
            src[key] = "item"
    if filled.get("drug"):
        generic = drugs.generic(filled["drug"]) or filled["drug"]
        filled["drug"] = generic
        for med in case.medications:
            if medication_generic(med.name, drugs) != generic:
                continue
            if "prior_treatment" not in filled:
                filled["prior_treatment"] = True
                src["prior_treatment"] = "medications"
            if "prior_use_weeks" not in filled and med.since and case.request_date:
                filled["prior_use_weeks"] = _weeks_between(med.since, case.request_date)
                src["prior_use_weeks"] = "medications.since"
        if "prior_treatment" not in filled and case.medications:
            # the medication list is the record of current use: absent means not taking it
            filled["prior_treatment"] = False
            src["prior_treatment"] = "medications"
        if filled.get("prior_treatment") is False and "prior_use_weeks" not in filled:
            filled["prior_use_weeks"] = 0
            src["prior_use_weeks"] = "medications"
        if "incomplete" not in filled:
            filled["incomplete"] = "quantity" not in filled and "strength" not in filled
            src["incomplete"] = "item"
    elif filled.get("modality"):
        if "prior_treatment" not in filled and filled.get("prior_sessions") is not None:
            filled["prior_treatment"] = filled["prior_sessions"] > 0
            src["prior_treatment"] = "prior_sessions"
    for key, bound in _BOUNDS.items():
        value = filled.get(key)
        if value is not None and not 0 <= value <= bound:
            from .case import Request      # an error: pydantic's message, as for a value written in the case
            Request.model_validate(filled)  # raises the usual validation error
    return filled, src

