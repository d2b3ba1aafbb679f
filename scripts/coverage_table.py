#!/usr/bin/env python3
"""Regenerate docs/coverage.md: per section (rule file), its rules, the facts they read, its
tests, and its pages with their certainty.

    python scripts/coverage_table.py          # write docs/coverage.md
    python scripts/coverage_table.py --check  # exit 1 if docs/coverage.md is stale

The table comes from mtus_engine.rules.coverage (the same as `mtus rules coverage --format markdown`),
which runs the rulebook's own tests (ruletests.run_rule_tests) on an Engine over
rulebook.load_rulebook(); tests/test_rulebook.py checks the file is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mtus_engine.rules.coverage import coverage_markdown, coverage_rows
from mtus_engine.evaluation.engine import Engine
from mtus_engine.rules.rulebook import load_rulebook

DOC = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"


def main(argv: list[str]) -> int:
    rows, totals = coverage_rows(Engine(load_rulebook()))
    text = coverage_markdown(rows, totals)
    if "--check" in argv:
        current = DOC.read_text() if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run python scripts/coverage_table.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}: {totals['sections']} sections, {totals['rules']} rules, "
          f"{totals['tests_passed']}/{totals['tests']} tests pass, rule coverage "
          f"{totals['rules_fired_by_tests']}/{totals['rules']}")
    return 1 if totals["rule_coverage"] < 1.0 or totals["tests_passed"] < totals["tests"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
