"""Regression of the rulebook against historical IMR letters.

Each letter is extracted, its case evaluated, and each item's engine outcome compared with the
reviewer's. Items are spooled to disk as they come so memory does not grow with the number of
letters; the report is assembled from the spool.

The figures are kept honest in three ways: per-class recall and balanced accuracy only where the
letters hold both outcomes (IMR upholds ~88% of items, so "always upheld" scores high agreement);
the headline is restricted to items whose reviewer cited an MTUS guideline part (the rulebook
encodes the MTUS; an item the reviewer judged under ODG alone is reported as outside the MTUS);
and where a hand-checked ``<letter>.gold.yaml`` sits beside a letter, an agreeing item also
counts whether the engine agreed for the reviewer's decisive reason.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import MtusError

LETTER_SUFFIXES = {".txt", ".pdf"}
COMPANION_SUFFIXES = (".gold.yaml",)   # hand-checked gold files kept beside the letters
CORPUS_DOCS = {"readme.md", "readme.txt", "readme"}   # a corpus's own description, not a letter
OUTCOMES = ("upheld", "overturned")
NON_MTUS = "non-mtus"          # the part id of ODG and any other "Non-MTUS Citation"
UNNAMED_MTUS = "mtus-unnamed"  # the reviewer cites the MTUS without naming a part we know


def engine_outcome(decision: str) -> str:
    """The IMR outcome the engine's decision amounts to, for the item as requested."""
    if decision == "certify":
        return "overturned"
    if decision in ("non-certify", "modify"):
        return "upheld"
    return "no-rule"


def page_set(pages: Iterable[str | None]) -> set[int]:
    """{58, 59, 60, 8} from ["58-60", "8"]; pages that are not numbers are ignored."""
    out: set[int] = set()
    for p in pages:
        for part in str(p or "").replace(" ", "").split(","):
            if not part:
                continue
            lo, _, hi = part.partition("-")
            if lo.isdigit() and (not hi or hi.isdigit()):
                a, b = int(lo), int(hi or lo)
                if a <= b <= a + 200:
                    out.update(range(a, b + 1))
    return out


def collect_letters(paths: Iterable[str | Path]) -> tuple[list[Path], list[dict]]:
    """Letters under the given files and directories, sorted; everything else is an error, so
    every path in is either regressed or reported (a broken or looping link, a directory named
    like a letter, a device or FIFO)."""
    letters: list[Path] = []
    errors: list[dict] = []

    def refuse(path: Path, why: str) -> None:
        errors.append({"letter": str(path), "error": why})

    def take(path: Path) -> None:
        if path.is_symlink() and not path.exists():
            try:
                path.resolve(strict=True)
            except RuntimeError:
                return refuse(path, "symbolic link loop (expected a letter file)")
            except OSError:
                return refuse(path, "broken symbolic link (expected a letter file)")
        if path.is_dir():
            return refuse(path, "a directory, not a letter file")
        if not path.is_file():
            return refuse(path, "not a regular file (expected a .txt or .pdf letter)")
        letters.append(path)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if (child.name.startswith(".") or child.name.endswith(COMPANION_SUFFIXES)
                        or child.name.lower() in CORPUS_DOCS):
                    continue
                if child.is_dir() and not child.is_symlink() and child.suffix.lower() not in LETTER_SUFFIXES:
                    continue   # rglob walks into it
                if child.suffix.lower() in LETTER_SUFFIXES or child.is_symlink():
                    take(child)
                else:
                    refuse(child, f"not a letter file (expected .txt or .pdf, got {child.suffix or 'no extension'})")
        elif p.exists() or p.is_symlink():
            take(p)
        else:
            refuse(p, "file not found")
    return letters, errors


# ------------------------------------------------------------------ per letter (worker side)

_given: dict[str | None, tuple[int, Any]] = {}    # rules_dir -> (pid, the caller's Engine)
_forked: dict[str | None, Any] = {}


def use_engine(engine: Any, rules_dir: str | None = None) -> None:
    """Regress with an engine the caller already built for rules_dir: used as is in this process;
    a forked worker compiles its own from the same loaded rulebook (no second YAML load). A
    compiled engine itself must not cross a fork (durable_rules state crashes on free). None
    forgets it."""
    if engine is None:
        _given.pop(rules_dir, None)
        _forked.pop(rules_dir, None)
    else:
        _given[rules_dir] = (os.getpid(), engine)


def _get_engine(rules_dir: str | None):
    given = _given.get(rules_dir)
    if given is not None:
        pid, engine = given
        if pid == os.getpid():
            return engine
        mine = _forked.get(rules_dir)
        if mine is None:
            from ..evaluation.engine import Engine
            mine = _forked[rules_dir] = Engine(engine.rulebook)
        return mine
    from ..evaluation.engine import process_engine
    return process_engine(rules_dir)


def regress_letter(path: str, rules_dir: str | None = None, max_bytes: int | None = None) -> dict[str, Any]:
    """One letter -> {"items": [...]} or {"error": ...}. Never raises on bad input."""
    from ..evaluation.case import case_from_data
    from ..letters.letter import letter_to_case, parse_letter, read_letter
    try:
        text = read_letter(path, max_bytes=max_bytes) if max_bytes else read_letter(path)
        parsed = parse_letter(text, path)
        case_data = letter_to_case(parsed, f"letter-{Path(path).stem}")
        case = case_from_data(case_data, path)
    except MtusError as exc:
        return {"letter": path, "error": str(exc)}
    except Exception as exc:  # an extractor bug must not abort a million-letter batch
        return {"letter": path, "error": f"extraction failed: {type(exc).__name__}: {exc}"}
    try:
        engine = _get_engine(rules_dir)
        edition = None
        if case.request_date is None:
            edition = cited_edition(parsed, engine.rulebook)
        result = engine.evaluate(case, edition=edition)
    except MtusError as exc:
        return {"letter": path, "error": str(exc)}
    except Exception as exc:  # one letter never takes down the run
        return {"letter": path, "error": f"evaluation failed: {type(exc).__name__}: {exc}"}
    gold = _gold_items(path, parsed.items)
    items = []
    known: set[str] | None = None
    for i, (litem, det) in enumerate(zip(parsed.items, result.determinations)):
        eng = engine_outcome(det.decision)
        letter_pages = list(litem.pages)
        engine_pages = [c.pages for c in det.citations if c.pages]
        parts, mtus = item_citations(litem)
        reasons = engine_reasons(det, engine.rulebook)
        g = gold[i]
        gold_reason = ((g.get("reason") or {}).get("criterion") if g else None) or None
        if gold_reason and not gold_reason.startswith("unmapped:") and known is None:
            known = possible_reasons(engine.rulebook)
        agree = eng == litem.outcome
        items.append({
            "letter": path, "index": i, "item": litem.item,
            "letter_outcome": litem.outcome, "engine_outcome": eng,
            "engine_decision": det.decision, "agree": agree,
            "letter_sections": list(litem.sections),
            "letter_pages": letter_pages, "engine_pages": engine_pages,
            "pages_covered": page_set(letter_pages) <= page_set(engine_pages),
            "rules_fired": det.rules_fired,
            "section": det.citations[0].section if det.citations else None,
            "reason": _reason(det, mtus, litem),
            "parts": parts, "mtus_cited": mtus, "outside_mtus": not mtus,
            "engine_reasons": reasons, "gold_reason": gold_reason,
            "reason_match": (gold_reason in reasons) if (agree and gold_reason) else None,
            # a gold reason no rule of this rulebook can give: a gap in the rules, not a miss
            "reason_known": (gold_reason.startswith("unmapped:") or gold_reason in known)
            if gold_reason else None,
            "trace": [f"{c.rule}/{c.criterion}: {c.state} ({c.fact} = {c.value!r})"
                      for c in det.criteria if c.decisive],
        })
    return {"letter": path, "items": items}


def cited_edition(parsed: Any, rulebook: Any) -> str | None:
    """For an undated letter, the edition whose guideline the reviewer cites: a part title
    with its year ("Chronic Pain Medical Treatment 2016"), else page numbers, which only the
    2009 CPMTG was cited with (none of the 290 items of 2016-2017 letters gives a page)."""
    text = " ".join(i.reviewer_guideline or "" for i in parsed.items)
    for ed in reversed(rulebook.manifest.editions):
        own = [p for p in ed.parts if not any(p.id in (q.id for q in o.parts)
                                               for o in rulebook.manifest.editions if o is not ed)]
        if any(p.title.removeprefix("MTUS ").rsplit(" ", 1)[0] in text and p.title[-4:] in text for p in own):
            return ed.id
    if any(i.pages for i in parsed.items):
        return rulebook.manifest.editions[0].id
    return None


# ------------------------------------------------------------------ what the reviewer cited

_BOILERPLATE = re.compile(r"^The Expert Reviewer based their decision on recommendation\(s\) outside of the "
                          r"MTUS Guidelines;?\s*|The Expert Reviewer did not cite any medical evidence for "
                          r"its decision\.?", re.I)


def item_citations(litem: Any) -> tuple[list[str], bool]:
    """The parts a letter item cites and whether it is MTUS-cited: the extractor's citations,
    resolved against the rulebook's part titles (one matcher, in letter.py)."""
    cites = getattr(litem, "citations", None) or []
    flag = getattr(litem, "mtus", None)
    parts = list(dict.fromkeys((getattr(c, "part", None) or UNNAMED_MTUS) for c in cites))
    mtus = flag if flag is not None else any(p != NON_MTUS for p in parts)
    return parts, bool(mtus)


# ------------------------------------------------------------------ reasons

def engine_reasons(det: Any, rulebook: Any) -> list[str]:
    """The engine's decisive reasons as "<rule-id>/<criterion-id>": for a denial (or modify) the
    decisive criteria that failed or are not documented, "<rule-id>/not-recommended" for a rule
    that does not recommend the treatment; for a certification the decisive criteria met, and the
    guard fact of a decisive criterion its guard set aside."""
    if det.decision == "no-rule":
        return []
    if det.decision == "certify":
        states = ("met",)
    else:
        states = ("failed", "not documented")
    out = [f"{c.rule}/{c.criterion}" for c in det.criteria if c.decisive and c.state in states]
    if det.decision == "certify":
        # a criterion set aside by its guard ("with red flags imaging is indicated"): the guard's
        # fact is the reason, named as a criterion id (red_flags -> <rule>/red-flags). A guard over
        # a derived any_of of the facts of the rule's other criteria (alternatives: "no other
        # criterion for imaging is documented") names instead the alternatives that hold.
        for c in det.criteria:
            if c.decisive and c.state == "not applicable":
                rule = rulebook.by_id.get(c.rule)
                crit = next((k for k in getattr(rule, "criteria", ()) if k.id == c.criterion), None)
                guard = getattr(crit, "when", None)
                if guard is None:
                    continue
                members = _alternatives(rulebook, rule, guard.fact)
                if members:
                    out.extend(_alternatives_held(det, rule, members))
                else:
                    out.append(f"{c.rule}/{_guard_name(rulebook, guard.fact).replace('_', '-')}")
    else:
        for rid in det.rules_fired:
            rule = rulebook.by_id.get(rid)
            if rule is not None and rule.recommendation == "not-recommended":
                out.append(f"{rid}/not-recommended")
    return list(dict.fromkeys(out))


def _guard_name(rulebook: Any, fact: str) -> str:
    """A guard's fact as the reviewer's reason names it: a region-bound finding
    (red_flags_in_region) by the finding itself (red_flags), as criterion ids do."""
    spec = rulebook.facts.get(fact)
    if getattr(spec, "function", None) == "finding_in_region":
        return spec.params["finding"]
    return fact


def _alternatives(rulebook: Any, rule: Any, fact: str) -> set[str] | None:
    """A guard fact that is a derived any_of of facts the rule's own decisive criteria read (the
    rule's alternatives): those facts; else None."""
    members = getattr(rulebook.facts.get(fact), "any_of", None)
    own = {k.fact for k in getattr(rule, "criteria", ()) if k.decisive}
    return set(members) if members and set(members) <= own else None


def _alternatives_held(det: Any, rule: Any, facts: set[str]) -> list[str]:
    """The rule's decisive criteria over those facts whose value recorded on the determination
    passes the criterion's test: the alternatives that hold, met or set aside by another."""
    from .compiler import test_holds
    tests = {k.id: k.test for k in getattr(rule, "criteria", ())}
    return [f"{c.rule}/{c.criterion}" for c in det.criteria
            if c.rule == rule.id and c.decisive and c.fact in facts and c.value is not None
            and c.criterion in tests and _holds(test_holds, tests[c.criterion], c.value)]


def _holds(test_holds: Any, test: Any, value: Any) -> bool:
    try:
        return bool(test_holds(test, value))
    except TypeError:   # a value of another type than the test's
        return False


def possible_reasons(rulebook: Any) -> set[str]:
    """Every reason engine_reasons can give under this rulebook: each rule's criteria, a
    not-recommended rule, and the guard fact of a guarded criterion (not a guard over the rule's
    own alternatives, which names those criteria instead)."""
    out = set()
    for rule in rulebook.rules:
        if rule.recommendation == "not-recommended":
            out.add(f"{rule.id}/not-recommended")
        for crit in rule.criteria:
            out.add(f"{rule.id}/{crit.id}")
            if crit.when is not None and not _alternatives(rulebook, rule, crit.when.fact):
                out.add(f"{rule.id}/{_guard_name(rulebook, crit.when.fact).replace('_', '-')}")
    return out


def gold_path(letter: str | Path) -> Path:
    """cases/letters/real/CM16-0213037.pdf -> cases/letters/real/CM16-0213037.gold.yaml"""
    p = Path(letter)
    return p.with_name(p.name.rsplit(".", 1)[0] + ".gold.yaml")


_GOLD_CASE = re.compile(r"^case:", re.M)


def _norm_item(name: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", name.lower()))


def _gold_items(letter: str, parsed_items: list[Any]) -> list[dict | None]:
    """The gold item for each parsed item (None where there is no gold file or no match): by
    item name, else by position when the letter and the gold file have as many items."""
    path = gold_path(letter)
    if not path.is_file():
        return [None] * len(parsed_items)
    try:
        import yaml
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        text = path.read_text(encoding="utf-8")
        # only the items are needed: the gold case below them is most of the file
        head = _GOLD_CASE.search(text)
        gold = yaml.load(text[:head.start()] if head else text, Loader=loader) or {}
        if head and "items" not in gold:   # the case came first: read it all
            gold = yaml.load(text, Loader=loader) or {}
        items = [g for g in gold.get("items") or [] if isinstance(g, dict)]
    except Exception:  # noqa: BLE001 - a broken gold file only loses the reason figures
        return [None] * len(parsed_items)
    by_name: dict[str, list[int]] = defaultdict(list)
    for n, g in enumerate(items):
        by_name[_norm_item(str(g.get("item", "")))].append(n)
    out: list[dict | None] = []
    used: set[int] = set()
    for k, litem in enumerate(parsed_items):
        cands = [n for n in by_name.get(_norm_item(litem.item), []) if n not in used]
        if not cands and len(items) == len(parsed_items) and k not in used:
            cands = [k]
        if cands:
            used.add(cands[0])
            out.append(items[cands[0]])
        else:
            out.append(None)
    return out


def _reason(det: Any, mtus: bool = True, litem: Any = None) -> str:
    if det.decision == "no-rule":
        why = det.reason or "no rule applies"
        if not mtus:
            named = _BOILERPLATE.sub("", (litem.reviewer_guideline or "") if litem is not None else "")
            why = (f"the reviewer's guideline lies outside the MTUS ({named.strip()}); {why}" if named.strip()
                   else f"the reviewer cited no guideline (none of the MTUS); {why}")
        return why
    blocking = [c.finding for c in det.criteria if c.decisive and c.state in ("failed", "not documented")]
    if blocking:
        return "; ".join(dict.fromkeys(blocking))
    if det.decision == "non-certify":
        return "not recommended by the guideline"
    return "every decisive criterion met"


def _warm_extractor(path: str) -> None:
    """Before forking workers: extract one letter in the parent, so the extractor's lazily built
    tables (drug names, section and part titles, read from the rulebook) are inherited by every
    worker rather than built again in each. Only extraction: a compiled engine must not cross a
    fork (durable_rules state inherited through fork crashes on free)."""
    import inspect

    from ..letters import letter
    try:
        letter.letter_to_case(letter.parse_letter(letter.read_letter(path), path), "warm-up")
    except Exception:  # noqa: BLE001 - the worker reports this letter's error
        pass
    # tables the first letter did not need (drug lookups for a letter without drugs, ...)
    for fn in list(vars(letter).values()):
        if callable(fn) and hasattr(fn, "cache_info"):
            try:
                if not inspect.signature(fn).parameters:
                    fn()
            except Exception:  # noqa: BLE001 - a table that fails here fails in the worker too
                pass


def _work(args: tuple[str, str | None, int | None]) -> dict[str, Any]:
    return regress_letter(*args)


def _dead(args: tuple[str, str | None, int | None], code: int | None) -> dict[str, Any]:
    from ..workers import died
    return {"letter": args[0], "error": f"extraction failed: the worker process {died(code)} on this letter"}


# ------------------------------------------------------------------------- the run

def _ratio(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


@dataclass
class Counts:
    """Outcome figures over a set of items."""

    items: int = 0
    agree: int = 0
    no_rule: int = 0
    confusion: Counter = field(default_factory=Counter)       # (letter, engine) -> n

    def add(self, item: dict) -> None:
        self.items += 1
        self.agree += item["agree"]
        self.no_rule += item["engine_outcome"] == "no-rule"
        self.confusion[(item["letter_outcome"], item["engine_outcome"])] += 1

    def figures(self) -> dict[str, Any]:
        """coverage: the share with a determination (not no-rule); recall per letter outcome
        (no-rule is a miss); balanced accuracy only when the letters hold both outcomes."""
        per, recall, raw = {}, {}, []
        for o in OUTCOMES:
            n_letters = sum(v for (lo, _), v in self.confusion.items() if lo == o)
            n_engine = sum(v for (_, eo), v in self.confusion.items() if eo == o)
            agree = self.confusion[(o, o)]
            per[o] = {"letters": n_letters, "engine": n_engine, "agree": agree}
            recall[o] = _ratio(agree, n_letters)
            if n_letters:
                raw.append(agree / n_letters)
        both = len(raw) == len(OUTCOMES)
        determined = self.items - self.no_rule
        return {
            "items": self.items, "determined": determined, "coverage": _ratio(determined, self.items),
            "agree": self.agree, "agreement": _ratio(self.agree, self.items), "no_rule": self.no_rule,
            "recall": recall,
            "balanced_accuracy": round(sum(raw) / len(raw), 4) if both else None,
            "per_outcome": per,
            "confusion": {lo: {eo: v for (l2, eo), v in sorted(self.confusion.items()) if l2 == lo}
                          for lo in OUTCOMES},
        }


@dataclass
class Tally:
    letters: int = 0
    failed_letters: int = 0
    pages_cited: int = 0
    pages_covered: int = 0
    all: Counts = field(default_factory=Counts)
    mtus: Counts = field(default_factory=Counts)             # MTUS-cited items: the headline
    outside: Counts = field(default_factory=Counts)          # judged on non-MTUS sources only
    by_part: dict = field(default_factory=lambda: defaultdict(Counts))
    by_section: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    gold_letters: set = field(default_factory=set)
    gold_items: int = 0
    reason_items: int = 0          # agreeing items with a gold reason
    reason_matched: int = 0
    reason_unmapped: int = 0       # ... whose gold reason names no rule criterion ("unmapped:...")
    reason_unknown: int = 0        # ... whose gold reason names a criterion no rule has (a rule gap)

    @property
    def items(self) -> int:
        return self.all.items

    @property
    def confusion(self) -> Counter:
        return self.all.confusion

    def add(self, item: dict) -> None:
        self.all.add(item)
        (self.mtus if item.get("mtus_cited", True) else self.outside).add(item)
        for part in item.get("parts") or ["(none cited)"]:
            self.by_part[part].add(item)
        if item["letter_pages"]:
            self.pages_cited += 1
            self.pages_covered += item["pages_covered"]
        key = item["section"] or "(no rule)"
        self.by_section[key][0] += 1
        self.by_section[key][1] += item["agree"]
        gold = item.get("gold_reason")
        if gold:
            self.gold_letters.add(item["letter"])
            self.gold_items += 1
            if item["agree"]:
                self.reason_items += 1
                self.reason_matched += bool(item.get("reason_match"))
                if gold.startswith("unmapped:"):
                    self.reason_unmapped += 1
                elif item.get("reason_known") is False:
                    self.reason_unknown += 1

    def summary(self) -> dict[str, Any]:
        a = self.all.figures()
        m = self.mtus.figures()
        mapped = self.reason_items - self.reason_unmapped
        return {
            "letters": self.letters, "failed_letters": self.failed_letters, "items": a["items"],
            "agree": a["agree"], "disagree": a["items"] - a["agree"], "no_rule": a["no_rule"],
            "agreement": a["agreement"],
            "recall": a["recall"],
            "balanced_accuracy": a["balanced_accuracy"],
            "per_outcome": a["per_outcome"],
            "confusion": a["confusion"],
            "page_agreement": _ratio(self.pages_covered, self.pages_cited),
            # the headline: items whose reviewer cited an MTUS part
            "coverage": m["coverage"],
            "mtus": m,
            "outside_mtus": {"items": self.outside.items, "no_rule": self.outside.no_rule,
                             "agree": self.outside.agree},
            "by_part": {p: self.by_part[p].figures() for p in sorted(self.by_part, key=_part_order)},
            "reasons": {
                "gold_letters": len(self.gold_letters), "gold_items": self.gold_items,
                "agreeing": self.reason_items, "matched": self.reason_matched,
                "rate": _ratio(self.reason_matched, self.reason_items),
                "unmapped": self.reason_unmapped,
                "unknown": self.reason_unknown,
                "rate_mapped": _ratio(self.reason_matched, mapped),
            },
        }


def _part_order(part: str) -> tuple[int, str]:
    return (2 if part == NON_MTUS else 3 if part.startswith("(") else 1 if part == UNNAMED_MTUS else 0, part)


def _clean_stale_spools() -> None:
    """A killed run leaves its spool (case-derived data) in the temp directory: remove those whose
    process is gone."""
    for spool in Path(tempfile.gettempdir()).glob("mtus-regress-*-*.jsonl"):
        pid = spool.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            spool.unlink(missing_ok=True)
        except OSError:
            pass


@dataclass
class RegressionRun:
    """A finished run: the summary, a spool of items on disk, the errors."""

    summary: dict[str, Any]
    spool: Path
    errors: list[dict]
    by_section: dict[str, list[int]]
    confusion: dict[tuple[str, str], int]

    def items(self) -> Iterator[dict]:
        with self.spool.open(encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def close(self) -> None:
        self.spool.unlink(missing_ok=True)

    def __enter__(self) -> "RegressionRun":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_regression(paths: Iterable[str | Path], *, workers: int = 1, rules_dir: str | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   max_bytes: int | None = None) -> RegressionRun:
    letters, errors = collect_letters(paths)
    tally = Tally()
    _clean_stale_spools()
    fd, spool_name = tempfile.mkstemp(prefix=f"mtus-regress-{os.getpid()}-", suffix=".jsonl")
    spool = Path(spool_name)
    jobs = [(str(p), rules_dir, max_bytes) for p in letters]
    total = len(jobs)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        def consume(results: Iterable[dict]) -> None:
            for n, res in enumerate(results, 1):
                if "error" in res:
                    tally.failed_letters += 1
                    errors.append({"letter": res["letter"], "error": res["error"]})
                else:
                    tally.letters += 1
                    for item in res["items"]:
                        tally.add(item)
                        out.write(json.dumps(item, ensure_ascii=False) + "\n")
                if progress:
                    progress(n, total)

        if workers > 1 and total > 1:
            from ..workers import chunks, context, ordered_map
            if context().get_start_method() == "fork":
                _warm_extractor(jobs[0][0])
            # small chunks for a small corpus: PDFs differ in cost and the last chunk sets the end;
            # results come back in input order whatever the worker count
            size = max(1, min(64, total // (workers * 32)))
            consume(r for chunk in ordered_map(_work, chunks(jobs, size), workers, on_death=_dead) for r in chunk)
        else:
            consume(map(_work, jobs))
    # every file in is either reported or an error
    non_letter_errors = len(errors) - tally.failed_letters
    tally_summary = tally.summary()
    tally_summary["failed_letters"] = tally.failed_letters + non_letter_errors
    return RegressionRun(tally_summary, spool, errors, dict(tally.by_section), dict(tally.confusion))


# ------------------------------------------------------------------------- baseline

def compare_baseline(run: RegressionRun, baseline: dict[str, Any]) -> list[dict]:
    """Every item whose engine outcome changed since the baseline report."""
    before = {(i["letter"], i.get("index", n)): i for n, i in enumerate(baseline.get("items", []))}
    changes = []
    for item in run.items():
        old = before.get((item["letter"], item["index"]))
        if old is None:
            changes.append({"letter": item["letter"], "item": item["item"], "from": None,
                            "to": item["engine_outcome"], "regressed": False, "new": True})
        elif old["engine_outcome"] != item["engine_outcome"]:
            changes.append({"letter": item["letter"], "item": item["item"],
                            "from": old["engine_outcome"], "to": item["engine_outcome"],
                            "from_decision": old.get("engine_decision"), "to_decision": item["engine_decision"],
                            "regressed": bool(old.get("agree")) and not item["agree"], "new": False})
    return changes
