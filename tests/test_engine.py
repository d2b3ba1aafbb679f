import resource

from mtus_engine.backend import RulesetHandle
from mtus_engine.case import load_case_text
from mtus_engine.compiler import compile_rulebook
from mtus_engine.render import render_json

TWO = """\
id: two
request_date: 2014-06-20
findings: {acute_exacerbation: true}
medications: [{name: naproxen}]
requests:
  - item: "Flexeril 7.5 mg #20"
  - item: Ambien 10 mg #30
  - item: Hot pack
"""


def test_requests_in_order_and_no_rule_never_guesses(engine):
    res = engine.evaluate(load_case_text(TWO))
    assert [d.request for d in res.determinations] == ["Flexeril 7.5 mg #20", "Ambien 10 mg #30", "Hot pack"]
    assert [d.decision for d in res.determinations] == ["certify", "no-rule", "no-rule"]
    ambien = res.determinations[1]
    assert "zolpidem" in ambien.reason and "ODG" in ambien.reason
    assert ambien.medically_necessary is None and ambien.citations == []


def test_request_outside_every_edition_is_no_rule(engine):
    res = engine.evaluate(load_case_text(TWO.replace("2014-06-20", "2019-01-01")))
    assert res.rulebook.edition is None
    assert all(d.decision == "no-rule" and "no rulebook edition" in d.reason for d in res.determinations)


def test_same_case_same_bytes_and_no_state_leak(engine):
    case = load_case_text(TWO)
    first = render_json(engine.evaluate(case))
    for _ in range(50):
        other = load_case_text(TWO.replace("acute_exacerbation: true", "acute_exacerbation: false"))
        engine.evaluate(other)
        assert render_json(engine.evaluate(case)) == first


def test_many_evaluations_stay_under_session_limit_and_flat_memory(engine):
    # durable_rules caps live sessions near 1,024; state must be deleted every time
    case = load_case_text(TWO)
    for _ in range(3000):
        engine.evaluate(case)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(5000):
        engine.evaluate(case)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 20_000  # KiB


def test_every_compiled_operator_behaves(engine):
    # guard against durable_rules operator misfires ($neq and friends): each criterion's
    # states must partition the possible values
    compiled = compile_rulebook(engine.rulebook)
    rs = RulesetHandle("operators-check", compiled.definition)
    base = {"kind": "request", "drug": "cyclobenzaprine", "drug_class__muscle_relaxant": True,
                "continued_use": True}  # the duration criterion applies to a drug already in use
    for weeks in (None, 0, 3, 4, 5):
        fact = dict(base)
        if weeks is not None:
            fact["prior_use_weeks"] = weeks
        fired = [n for n in rs.evaluate([fact]) if n.startswith("cyclobenzaprine.short-course|within")]
        expected = {None: "undocumented", 0: "met", 3: "met", 4: "failed", 5: "failed"}[weeks]
        assert fired == [f"cyclobenzaprine.short-course|within-three-weeks|{expected}"]


def test_modify_gives_the_modified_request(engine):
    res = engine.evaluate(load_case_text(TWO.replace('"Flexeril 7.5 mg #20"', '"Flexeril 7.5 mg #90"')))
    d = res.determinations[0]
    assert d.decision == "modify" and d.medically_necessary is False
    assert d.modified_request.quantity == 63 and d.modified_request.refills == 0
    assert "modification" in d.rationale


def test_a_session_where_no_rule_fires_does_not_crash_durable_rules():
    # durable_rules 2.0.28 frees an uninitialised action context in delete_state when nothing
    # fired (SIGSEGV); run in a subprocess so a regression fails this test, not the whole run
    import subprocess
    import sys
    code = ("from mtus_engine.backend import RulesetHandle\n"
            "rs = RulesetHandle('nothing-fires', {'x': {'all': [{'m': {'$and': [{'kind': 'request'}, {'a': 1}]}}]}})\n"
            "for i in range(2000):\n"
            "    assert rs.evaluate([{'kind': 'request', 'a': 2}]) == []\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-500:]
