"""Regression of the rulebook against historical IMR letters.

Each letter is extracted, its case evaluated, and each item's engine outcome compared with the
reviewer's. Items are spooled to disk as they come so memory does not grow with the number of
letters; the report is assembled from the spool.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import MtusError

LETTER_SUFFIXES = {".txt", ".pdf"}
COMPANION_SUFFIXES = (".gold.yaml",)   # hand-checked gold files kept beside the letters
OUTCOMES = ("upheld", "overturned")


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
    """Letters under the given files and directories, sorted; other files become errors."""
    letters: list[Path] = []
    errors: list[dict] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(x for x in p.rglob("*") if x.is_file()):
                if child.name.startswith(".") or child.name.endswith(COMPANION_SUFFIXES):
                    continue
                if child.suffix.lower() in LETTER_SUFFIXES:
                    letters.append(child)
                else:
                    errors.append({"letter": str(child),
                                   "error": f"not a letter file (expected .txt or .pdf, got {child.suffix or 'no extension'})"})
        elif p.exists():
            letters.append(p)
        else:
            errors.append({"letter": str(p), "error": "file not found"})
    return letters, errors


# ------------------------------------------------------------------ per letter (worker side)

def _get_engine(rules_dir: str | None):
    from .engine import process_engine
    return process_engine(rules_dir)


def regress_letter(path: str, rules_dir: str | None = None, max_bytes: int | None = None) -> dict[str, Any]:
    """One letter -> {"items": [...]} or {"error": ...}. Never raises on bad input."""
    from .case import case_from_data
    from .letter import letter_to_case, parse_letter, read_letter
    try:
        text = read_letter(path, max_bytes=max_bytes) if max_bytes else read_letter(path)
        parsed = parse_letter(text, path)
        case_data = letter_to_case(parsed, f"letter-{Path(path).stem}")
        case = case_from_data(case_data, path)
    except MtusError as exc:
        return {"letter": path, "error": str(exc)}
    except Exception as exc:  # an extractor bug must not abort a million-letter batch
        return {"letter": path, "error": f"extraction failed: {type(exc).__name__}: {exc}"}
    engine = _get_engine(rules_dir)
    edition = None
    if case.request_date is None:
        edition = cited_edition(parsed, engine.rulebook)
    result = engine.evaluate(case, edition=edition)
    items = []
    for i, (litem, det) in enumerate(zip(parsed.items, result.determinations)):
        eng = engine_outcome(det.decision)
        letter_pages = list(litem.pages)
        engine_pages = [c.pages for c in det.citations if c.pages]
        items.append({
            "letter": path, "index": i, "item": litem.item,
            "letter_outcome": litem.outcome, "engine_outcome": eng,
            "engine_decision": det.decision, "agree": eng == litem.outcome,
            "letter_sections": list(litem.sections),
            "letter_pages": letter_pages, "engine_pages": engine_pages,
            "pages_covered": page_set(letter_pages) <= page_set(engine_pages),
            "rules_fired": det.rules_fired,
            "section": det.citations[0].section if det.citations else None,
            "reason": _reason(det),
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


def _reason(det: Any) -> str:
    if det.decision == "no-rule":
        return det.reason or "no rule applies"
    blocking = [c.finding for c in det.criteria if c.decisive and c.state in ("failed", "not documented")]
    if blocking:
        return "; ".join(dict.fromkeys(blocking))
    if det.decision == "non-certify":
        return "not recommended by the guideline"
    return "every decisive criterion met"


def _work(args: tuple[str, str | None, int | None]) -> dict[str, Any]:
    return regress_letter(*args)


# ------------------------------------------------------------------------- the run

@dataclass
class Tally:
    letters: int = 0
    failed_letters: int = 0
    items: int = 0
    agree: int = 0
    no_rule: int = 0
    pages_cited: int = 0
    pages_covered: int = 0
    confusion: Counter = field(default_factory=Counter)       # (letter, engine) -> n
    by_section: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, item: dict) -> None:
        self.items += 1
        self.agree += item["agree"]
        self.no_rule += item["engine_outcome"] == "no-rule"
        self.confusion[(item["letter_outcome"], item["engine_outcome"])] += 1
        if item["letter_pages"]:
            self.pages_cited += 1
            self.pages_covered += item["pages_covered"]
        key = item["section"] or "(no rule)"
        self.by_section[key][0] += 1
        self.by_section[key][1] += item["agree"]

    def summary(self) -> dict[str, Any]:
        per = {}
        recalls = []
        for o in OUTCOMES:
            n_letters = sum(v for (lo, _), v in self.confusion.items() if lo == o)
            n_engine = sum(v for (_, eo), v in self.confusion.items() if eo == o)
            agree = self.confusion[(o, o)]
            per[o] = {"letters": n_letters, "engine": n_engine, "agree": agree}
            if n_letters:
                recalls.append(agree / n_letters)
        return {
            "letters": self.letters, "failed_letters": self.failed_letters, "items": self.items,
            "agree": self.agree, "disagree": self.items - self.agree, "no_rule": self.no_rule,
            "agreement": round(self.agree / self.items, 4) if self.items else None,
            "balanced_accuracy": round(sum(recalls) / len(recalls), 4) if recalls else None,
            "per_outcome": per,
            "page_agreement": round(self.pages_covered / self.pages_cited, 4) if self.pages_cited else None,
        }


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
    fd, spool_name = tempfile.mkstemp(prefix="mtus-regress-", suffix=".jsonl")
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
            ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")
            from .batch import _quiet_worker
            with ctx.Pool(workers, initializer=_quiet_worker) as pool:
                # ordered imap keeps the report in input order whatever the worker count
                consume(pool.imap(_work, jobs, chunksize=max(1, min(64, total // (workers * 8) or 1))))
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
