
import pytest

from mtus_engine.errors import RulebookError
from mtus_engine.rules.rulebook import load_rulebook
from mtus_engine.rules.ruletests import rule_coverage, run_rule_tests


def _results(engine):
    return run_rule_tests(engine)


def test_every_rule_test_passes(engine):
    failed = [(r.file, r.line, r.name, r.problems) for r in _results(engine) if not r.passed]
    assert failed == []


def test_every_rule_is_fired_by_a_test_and_has_certify_and_deny(engine):
    cov = rule_coverage(engine, _results(engine))
    assert all(c["tests"] > 0 for c in cov.values()), cov
    for rid, c in cov.items():
        rule = engine.rulebook.by_id[rid]
        assert c["non-certify"] > 0, f"{rid} has no denying test"
        if rule.recommendation == "recommended":
            assert c["certify"] > 0, f"{rid} has no certifying test"


def test_citations_cite_drug_entry_before_class(engine):
    from mtus_engine.evaluation.case import load_case_text
    det = engine.evaluate(load_case_text(
        "id: x\nrequest_date: 2014-01-01\nrequests:\n  - item: Soma 350 mg\n")).determinations[0]
    assert [c.section for c in det.citations] == ["Carisoprodol (Soma)", "Muscle relaxants (for pain)"]


def _break(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("file,old,new,needle", [
    ("chronic-pain/cyclobenzaprine.yaml", "fact: prior_use_weeks", "fact: weeks_on_drug",
     "cyclobenzaprine.yaml:{line}: criterion within-three-weeks reads undeclared fact 'weeks_on_drug'"),
    ("chronic-pain/metaxalone.yaml", "id: metaxalone.short-term", "id: cyclobenzaprine.short-course",
     "duplicate rule id 'cyclobenzaprine.short-course'"),
    ("chronic-pain/baclofen.yaml", "drugs: [baclofen]", "drugs: [lioresalx]", "unknown drug 'lioresalx'"),
    ("chronic-pain/baclofen.yaml", 'section: Baclofen (Lioresal)\n', "", "baclofen.yaml"),
    ("chronic-pain/baclofen.yaml", "test: {equals: true}", "test: {lte: 3}", "test lte does not fit spasticity (boolean)"),
    ("chronic-pain/baclofen.yaml", "  cpmtg-2009:", "  cpmtg-1999:", "unknown guideline part 'cpmtg-1999'"),
    ("chronic-pain/baclofen.yaml", "if_undocumented: required", "if_undocumented: {assume: 3, because: x}",
     "assumed value 3 does not fit spasticity (boolean)"),
    ("chronic-pain/baclofen.yaml", "    if_undocumented: required\n", "", "if_undocumented: Field required"),
    # derived facts: an unregistered function, an unknown input or name, a cycle, no derivation
    ("vocabulary/facts.yaml", "function: morphine_equivalent_total", "function: morphine_total_guess",
     "facts.yaml:{line}: fact morphine_equivalent_total: function 'morphine_total_guess' is not registered"),
    ("vocabulary/facts.yaml", "inputs: [morphine_equivalent_dose,", "inputs: [morphine_dose_guess,",
     "facts.yaml:{line}: fact morphine_equivalent_total: input 'morphine_dose_guess' is not a declared fact"),
    ("vocabulary/facts.yaml", "formula: quantity * (1 + default(refills, 0))", "formula: quantity * (1 + refils)",
     "facts.yaml:{line}: fact total_units: unknown name 'refils'"),
    ("vocabulary/facts.yaml", "formula: quantity * (1 + default(refills, 0))", "formula: supply_days * 2",
     "derived facts depend on each other in a cycle: supply_days -> total_units -> supply_days"),
    ("vocabulary/facts.yaml", "formula: quantity * (1 + default(refills, 0))", "formula: __import__('os')",
     "facts.yaml:{line}: fact total_units: unknown function '__import__'"),
    ("vocabulary/facts.yaml", "formula: quantity * (1 + default(refills, 0))", "formula: quantity.__class__",
     "only drug.<attribute>"),
    ("vocabulary/facts.yaml", "    formula: drug.sedating\n", "", "fact sedating is derived but declares no derivation"),
    ("vocabulary/facts.yaml", "any_of: [neuropathic_pain, crps, spasticity, phantom_limb_pain]",
     "any_of: [neuropathic_pain, total_sessions]", "any_of member 'total_sessions' is not a declared boolean fact"),
    # when: guards take the criteria's test forms, checked against the guard's fact
    ("chronic-pain/physical-medicine.yaml", "not_equals: crps", "not_equals: cprs",
     "physical-medicine.yaml:{line}: test not_equals does not fit diagnosis_type (string)"),
    ("chronic-pain/physical-medicine.yaml", "not_equals: crps", "lte: 3",
     "physical-medicine.yaml:{line}: test lte does not fit diagnosis_type (string)"),
    # ...and the same schema as a criterion's test: the same messages for a guard as for a test
    ("chronic-pain/physical-medicine.yaml", "not_equals: crps", "not_equals: [crps]",
     "physical-medicine.yaml:{line}: rules.0.criteria.1.when.not_equals.str: Input should be a valid string"),
    ("chronic-pain/baclofen.yaml", "test: {equals: true}", "test: {equals: [true]}",
     "baclofen.yaml:{line}: rules.0.criteria.0.test.equals.str: Input should be a valid string"),
    ("chronic-pain/physical-medicine.yaml", "not_equals: crps", "not_equals: crps\n          lte: 3",
     "rules.0.criteria.1.when: a test has exactly one of equals, not_equals, lt, "
     "lte, gt, gte, documented, includes, excludes (found not_equals, lte)"),
    ("chronic-pain/baclofen.yaml", "test: {equals: true}", "test: {equals: true, lte: 3}",
     "baclofen.yaml:{line}: rules.0.criteria.0.test: a test has exactly one of equals, not_equals, lt, "
     "lte, gt, gte, documented, includes, excludes (found equals, lte)"),
])
def test_lint_errors_name_file_and_line(rules_copy, file, old, new, needle):
    if "{line}" in needle:
        lines = (rules_copy / file).read_text().splitlines()
        needle = needle.replace("{line}", str(next(i for i, l in enumerate(lines, 1) if old.strip() in l)))
    _break(rules_copy / file, old, new)
    with pytest.raises(RulebookError) as exc:
        load_rulebook(rules_copy)
    text = "\n".join(exc.value.problems)
    assert needle in text
    assert file.split("/")[-1] in text


def test_coverage_doc_is_current(engine, root):
    from mtus_engine.rules.coverage import coverage_markdown, coverage_rows
    rows, totals = coverage_rows(engine)
    assert totals["rule_coverage"] == 1.0 and totals["tests_passed"] == totals["tests"]
    assert (root / "docs" / "coverage.md").read_text() == coverage_markdown(rows, totals), \
        "regenerate: mtus rules coverage --format markdown > docs/coverage.md"


def test_no_page_is_marked_letter_unless_a_real_letter_cites_it(engine, root):
    import re
    letters = " ".join(p.read_text() for p in (root / "cases" / "letters").glob("*.txt"))
    cited = set(re.findall(r"Page\(s\):\s*([\d\-, ]+)", letters))
    letter_pages = {p.strip() for group in cited for p in group.split(",") if p.strip()}
    # sections the 2016-2017 letters cite (by section alone), from their hand-checked gold files
    import yaml
    cited_sections = {(c["part"], s.lower()) for g in (root / "cases" / "letters" / "real").glob("*.gold.yaml")
                      for item in yaml.safe_load(g.read_text())["items"] for c in item.get("citations", [])
                      for s in c.get("sections", [])}
    for rf in engine.rulebook.files.values():
        for part, pc in rf.parts.items():
            if pc.certainty != "letter":
                continue
            if pc.pages:
                assert pc.pages in letter_pages, f"{rf.section} p. {pc.pages} marked letter but no letter cites it"
            else:
                section = (pc.section or rf.section).lower()
                assert (part, section) in cited_sections, f"{part}: {section!r} marked letter but no letter cites it"
        for rule in rf.rules:
            for extra in rule.also_cites:
                if extra.certainty == "letter":
                    assert set(extra.pages.values()) <= letter_pages, extra


def test_every_page_in_a_rationale_has_a_citation_entry(engine):
    # run every rule test case; any "page(s) X" or "(page X)" the rationale prints must be cited
    import re
    from mtus_engine.evaluation.case import case_from_data
    from mtus_engine.rules.ruletests import load_rule_tests
    from mtus_engine.yamlio import plain
    pattern = re.compile(r"\bpages?(?:\(s\))?\s+(\d+(?:-\d+)?(?:,\s*\d+(?:-\d+)?)*)")
    checked = 0
    for path in engine.rulebook.test_files:
        for _, test in load_rule_tests(path):
            for det in engine.evaluate(case_from_data(plain(test["case"]), str(path))).determinations:
                cited = {c.pages for c in det.citations if c.pages}
                for m in pattern.finditer(det.rationale):
                    assert m.group(1) in cited, (path.name, m.group(0), cited)
                    checked += 1
    assert checked > 100


def test_items_outside_the_mtus_say_no_rule_and_name_the_gap(engine):
    from mtus_engine.evaluation.case import load_case_text
    res = engine.evaluate(load_case_text(
        "id: gap\nrequest_date: 2014-06-20\nrequests:\n  - item: 'Ambien 10 mg #30'\n  - item: Theramine #90\n"))
    for d in res.determinations:
        assert d.decision == "no-rule" and d.citations == [] and d.reason
    assert "ODG" in res.determinations[0].reason


def test_a_misspelt_rule_test_expectation_fails_with_a_hint(engine, tmp_path):
    from mtus_engine.rules.ruletests import run_rule_tests
    path = tmp_path / "typo.test.yaml"
    path.write_text(
        "tests:\n"
        "  - name: typo\n"
        "    case: {id: t, request_date: 2014-06-20, requests: [{item: 'Soma 350 mg #30'}]}\n"
        "    expect: {decison: certify, criterias: {x/y: met}}\n"
        "  - name: subset or exact\n"
        "    case: {id: t, request_date: 2014-06-20, requests: [{item: 'Soma 350 mg #30'}]}\n"
        "    expect: {rules_fired: [carisoprodol.not-recommended]}\n"
        "  - name: subset\n"
        "    case: {id: t, request_date: 2014-06-20, requests: [{item: 'Soma 350 mg #30'}]}\n"
        "    expect: {rules_fired_includes: [carisoprodol.not-recommended]}\n")
    typo, exact, subset = run_rule_tests(engine, [path])
    assert not typo.passed
    assert any("'decison' (did you mean 'decision'?)" in p for p in typo.problems), typo.problems
    assert any("'criterias' (did you mean 'criteria'?)" in p for p in typo.problems), typo.problems
    assert not exact.passed and "expected exactly" in exact.problems[0]
    assert subset.passed, subset.problems


def test_region_bound_findings_name_declared_facts_and_regions():
    # finding_in_region's params are data: a misspelt region would silently never match
    from mtus_engine.rules.rulebook import load_rulebook
    facts = load_rulebook().facts
    regions = set(facts["body_region"].values)
    users = {n: s for n, s in facts.items() if s.function == "finding_in_region"}
    assert {"neurologic_deficit_in_region", "invasive_procedure_in_region", "surgery_considered_in_region"} <= set(users)
    for name, spec in users.items():
        p = spec.params
        assert facts[p["finding"]].type == "boolean" and facts[p["finding"]].source == "findings", name
        assert facts[p["regions"]].type == "list" and set(facts[p["regions"]].values) == regions, name
        # the request's regions: body_region, or a derived list over the same regions
        request = p.get("request", "body_region")
        assert request == "body_region" or (facts[request].type == "list" and facts[request].source == "derived"
                                            and set(facts[request].values) == regions), name
        assert set(spec.inputs) == {p["finding"], p["regions"], request}, name
        for wanted, bearing in p.get("bears_on", {}).items():
            assert wanted in regions and set(bearing) <= regions and wanted in bearing, (name, wanted)
