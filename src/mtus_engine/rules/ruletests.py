"""Rule tests: each guideline section keeps example cases and their expected answers beside
it (``<section>.test.yaml``), the way policy code keeps its own test suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.case import case_from_data
from ..evaluation.engine import Engine
from ..errors import InputError
from ..yamlio import line_of, parse_document, plain, read_bytes


@dataclass
class RuleTestResult:
    file: str
    line: int | None
    name: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    rules_fired: list[str] = field(default_factory=list)
    decision: str | None = None


TEST_KEYS = {"name", "case", "request", "expect", "edition"}
EXPECT_KEYS = {"decision", "rules_fired", "rules_fired_includes", "criteria", "missing_documentation_includes",
               "rationale_includes", "modified_quantity", "modified_sessions"}


def _unknown_keys(given: dict, allowed: set[str], where: str) -> list[str]:
    """A misspelt expectation must fail, never pass by checking nothing."""
    import difflib
    out = []
    for key in given:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            out.append(f"unknown key {where}{key!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
                       + f"; expected one of {', '.join(sorted(allowed))}")
    return out


def _check(expect: dict, det: Any) -> list[str]:
    out = _unknown_keys(expect, EXPECT_KEYS, "expect.")
    if "rules_fired" in expect and sorted(expect["rules_fired"]) != sorted(det.rules_fired):
        out.append(f"rules fired {det.rules_fired}, expected exactly {expect['rules_fired']} "
                   f"(rules_fired_includes: for a subset)")
    if "decision" in expect and det.decision != expect["decision"]:
        out.append(f"decision {det.decision!r}, expected {expect['decision']!r}")
    for rid in expect.get("rules_fired_includes", []):
        if rid not in det.rules_fired:
            out.append(f"rule {rid} did not fire (fired: {det.rules_fired})")
    states = {f"{c.rule}/{c.criterion}": c.state for c in det.criteria}
    for key, want in (expect.get("criteria") or {}).items():
        if states.get(key) != want:
            out.append(f"criterion {key} is {states.get(key)!r}, expected {want!r}")
    for text in expect.get("missing_documentation_includes", []):
        if not any(text in m for m in det.missing_documentation):
            out.append(f"missing documentation lacks {text!r} (has {det.missing_documentation})")
    for text in expect.get("rationale_includes", []):
        if text not in det.rationale:
            out.append(f"rationale lacks {text!r}")
    if "modified_quantity" in expect:
        got = det.modified_request.quantity if det.modified_request else None
        if got != expect["modified_quantity"]:
            out.append(f"modified quantity {got}, expected {expect['modified_quantity']}")
    if "modified_sessions" in expect:
        got = det.modified_request.sessions if det.modified_request else None
        if got != expect["modified_sessions"]:
            out.append(f"modified sessions {got}, expected {expect['modified_sessions']}")
    return out


def load_rule_tests(path: Path) -> list[tuple[int | None, dict]]:
    data = parse_document(read_bytes(path), str(path))
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(tests, list) or not tests:
        raise InputError(str(path), "no tests", location="tests", expected="a list of tests")
    return [(line_of(data, ("tests", i)), t) for i, t in enumerate(tests)]


def run_rule_tests(engine: Engine, files: list[Path] | None = None) -> list[RuleTestResult]:
    results = []
    for path in files if files is not None else engine.rulebook.test_files:
        for line, test in load_rule_tests(path):
            name = str(test.get("name", f"line {line}"))
            try:
                case = case_from_data(plain(test["case"]), f"{path}:{line}")
                det = engine.evaluate(case, edition=test.get("edition")).determinations[test.get("request", 0)]
                problems = _unknown_keys(test, TEST_KEYS, "") + _check(test.get("expect") or {}, det)
                results.append(RuleTestResult(str(path), line, name, not problems, problems,
                                              det.rules_fired, det.decision))
            except (InputError, KeyError) as exc:
                results.append(RuleTestResult(str(path), line, name, False, [str(exc)]))
    return results


def rule_coverage(engine: Engine, results: list[RuleTestResult]) -> dict[str, dict[str, int]]:
    """Per rule: how many tests fired it, and how many expected each decision."""
    cov = {r.id: {"tests": 0, "certify": 0, "modify": 0, "non-certify": 0}
           for r in engine.rulebook.rules}
    for res in results:
        for rid in res.rules_fired:
            if rid in cov:
                cov[rid]["tests"] += 1
                if res.decision in cov[rid]:
                    cov[rid][res.decision] += 1
    return cov
