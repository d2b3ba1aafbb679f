"""Rulebook coverage: per guideline section, its rules, the facts they read, their tests, and
how sure each cited page is. `mtus rules coverage` prints it; docs/coverage.md is its Markdown
(render.coverage_markdown)."""

from __future__ import annotations

from typing import Any

from ..evaluation.engine import Engine
from ..interfaces.render import coverage_markdown  # noqa: F401 - its Markdown, formatted with the other text
from .ruletests import rule_coverage, run_rule_tests


def coverage_rows(engine: Engine) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    results = run_rule_tests(engine)
    cov = rule_coverage(engine, results)
    tests_by_file: dict[str, int] = {}
    for r in results:
        stem = r.file.rsplit("/", 1)[-1].removesuffix(".test.yaml")
        tests_by_file[stem] = tests_by_file.get(stem, 0) + 1
    rows = []
    for file, rf in sorted(engine.rulebook.files.items()):
        stem = file.rsplit("/", 1)[-1].removesuffix(".yaml")
        facts = sorted({c.fact for r in rf.rules for c in r.criteria}
                       | {c.when.fact for r in rf.rules for c in r.criteria if c.when})
        pages = [{"section": pc.section or rf.section, "part": part, "pages": pc.pages, "certainty": pc.certainty}
                 for part, pc in rf.parts.items()]
        for r in rf.rules:
            pages += [{"section": x.section, "part": part, "pages": pg, "certainty": x.certainty}
                      for x in r.also_cites for part, pg in x.pages.items()]
        rows.append({
            "file": file, "section": rf.section, "edition": ", ".join(rf.parts),
            "rules": [{"id": r.id, "tests": cov[r.id]["tests"], "certify": cov[r.id]["certify"],
                       "modify": cov[r.id]["modify"], "non_certify": cov[r.id]["non-certify"]} for r in rf.rules],
            "facts": facts, "tests": tests_by_file.get(stem, 0), "pages": pages,
        })
    fired = sum(1 for c in cov.values() if c["tests"])
    totals = {"sections": len(rows), "rules": len(cov), "rules_fired_by_tests": fired,
              "rule_coverage": fired / len(cov) if cov else 1.0,
              "tests": len(results), "tests_passed": sum(r.passed for r in results),
              "pages_letter_verified": sum(p["certainty"] == "letter" for row in rows for p in row["pages"]),
              "pages_cited": sum(len(row["pages"]) for row in rows)}
    return rows, totals
