import shutil

import pytest

from mtus_engine.errors import RulebookError
from mtus_engine.rulebook import load_rulebook
from mtus_engine.ruletests import rule_coverage, run_rule_tests


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
    from mtus_engine.case import load_case_text
    det = engine.evaluate(load_case_text(
        "id: x\nrequest_date: 2014-01-01\nrequests:\n  - item: Soma 350 mg\n")).determinations[0]
    assert [c.section for c in det.citations] == ["Carisoprodol (Soma)", "Muscle relaxants (for pain)"]


@pytest.fixture
def rules_copy(tmp_path, root):
    dest = tmp_path / "rules"
    shutil.copytree(root / "rules", dest)
    return dest


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
    ("chronic-pain/baclofen.yaml", "edition: mtus-2009", "edition: mtus-1999", "unknown edition 'mtus-1999'"),
    ("chronic-pain/baclofen.yaml", "until: 2016-07-17", "until: 2019-01-01", "lies outside edition mtus-2009"),
])
def test_lint_errors_name_file_and_line(rules_copy, file, old, new, needle):
    if "{line}" in needle:
        lines = (rules_copy / file).read_text().splitlines()
        needle = needle.replace("{line}", str(next(i for i, l in enumerate(lines, 1) if old in l)))
    _break(rules_copy / file, old, new)
    with pytest.raises(RulebookError) as exc:
        load_rulebook(rules_copy)
    text = "\n".join(exc.value.problems)
    assert needle in text
    assert file.split("/")[-1] in text
