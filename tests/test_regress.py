"""The rulebook against the five real IMR letters, and the regress command's contract."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mtus_engine.case import case_from_data
from mtus_engine.cli import main
from mtus_engine.regress import engine_outcome, page_set, run_regression

ROOT = Path(__file__).resolve().parents[1]
LETTERS = ROOT / "cases" / "letters"
GOLDS = sorted(LETTERS.glob("*.gold.yaml"))

# the five seed letters (the real 2016-2017 corpus lives in cases/letters/real/)
SEEDS = sorted(str(p.relative_to(Path(__file__).resolve().parents[1])) for p in (Path(__file__).resolve().parents[1] / "cases" / "letters").glob("*.txt"))


def test_there_are_five_letters_with_gold():
    assert len(list(LETTERS.glob("*.txt"))) == 5 and len(GOLDS) == 5


@pytest.mark.parametrize("gold_path", GOLDS, ids=lambda p: p.name[:3])
def test_engine_reaches_the_reviewers_outcome_and_cites_their_pages_on_the_gold_case(engine, gold_path):
    # the gold case is what a careful reader gets from the letter, independent of the extractor
    gold = yaml.safe_load(gold_path.read_text())
    case = case_from_data(gold["case"], str(gold_path))
    result = engine.evaluate(case, edition=gold.get("edition"))
    assert len(result.determinations) == len(gold["items"])
    for det, item in zip(result.determinations, gold["items"]):
        assert engine_outcome(det.decision) == item["outcome"], (item["item"], det.rationale)
        assert page_set(item["pages"]) <= page_set(c.pages for c in det.citations), item["item"]


def test_regression_over_the_real_letters_agrees_on_all_eight_items():
    with run_regression(sorted(LETTERS.glob("*.txt"))) as run:
        s = run.summary
        items = list(run.items())
    assert s["letters"] == 5 and s["failed_letters"] == 0 and run.errors == []
    assert s["items"] == 8 and s["agree"] == 8 and s["agreement"] == 1.0
    assert s["per_outcome"]["upheld"] == {"letters": 8, "engine": 8, "agree": 8}
    assert s["page_agreement"] == 1.0
    golds = [i for g in GOLDS for i in yaml.safe_load(g.read_text())["items"]]
    assert [i["item"] for i in items] == [g["item"] for g in golds]
    assert [i["letter_pages"] for i in items] == [g["pages"] for g in golds]


def test_page_sets():
    assert page_set(["58-59", "8"]) <= page_set(["58-60", "8"])
    assert not page_set(["63-66"]) <= page_set(["41-42"])
    assert page_set([None, "n/a"]) == set()


def _bad_batch(tmp_path):
    d = tmp_path / "batch"
    d.mkdir()
    for f in sorted(LETTERS.glob("00[01]*.txt")):
        (d / f.name).write_text(f.read_text())
    (d / "notes.docx").write_bytes(b"PK\x03\x04 not a letter")
    (d / "recipe.txt").write_text("Mix flour and water. Bake for 30 minutes.\n")
    (d / "empty.txt").write_text("")
    text = (LETTERS / "003_82aa6a07caa57e33.txt").read_text()
    (d / "truncated.txt").write_text(text[: text.index("Flexeril 7.5 mg #60:")] + "Flexeril 7.5")
    (d / "no-items.txt").write_text(text[: text.index("IMR ISSUES")])
    (d / "big.txt").write_bytes(b"x" * (21 * 1024 * 1024))
    (d / "fake.pdf").write_bytes(b"%PDF-1.4 garbage")
    return d


def test_bad_letters_are_errors_and_the_batch_goes_on(tmp_path):
    d = _bad_batch(tmp_path)
    files = sorted(p for p in d.iterdir())
    with run_regression([d], workers=2) as run:
        s = run.summary
    assert s["letters"] == 2 and s["items"] == 2
    bad = {Path(e["letter"]).name: e["error"] for e in run.errors}
    assert set(bad) == {"notes.docx", "recipe.txt", "empty.txt", "truncated.txt", "no-items.txt", "big.txt", "fake.pdf"}
    assert "not a letter file" in bad["notes.docx"]
    # letters in = letters reported + errors
    assert len(files) == s["letters"] + s["failed_letters"]
    assert all(msg.strip() for msg in bad.values())


def test_regress_cli_json_baseline_junit_html(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    out = tmp_path / "report.json"
    r = runner.invoke(main, ["regress", *SEEDS, "--format", "json", "-o", str(out), "--quiet",
                             "--min-agreement", "1.0"])
    assert r.exit_code == 0, r.output + r.stderr
    assert r.stderr == ""
    report = json.loads(out.read_text())
    assert report["summary"]["agreement"] == 1.0 and len(report["items"]) == 8
    first = report["items"][0]
    assert first["item"] == "Flexeril 10 mg Qty 60" and first["engine_pages"] == ["41-42", "63-66"]

    # a baseline in which one item was overturned and agreed: now it is upheld again -> change listed
    base = json.loads(out.read_text())
    base["items"][1]["engine_outcome"] = "overturned"
    base_path = tmp_path / "base.json"
    base_path.write_text(json.dumps(base))
    r = runner.invoke(main, ["regress", *SEEDS, "--baseline", str(base_path), "--quiet"])
    assert r.exit_code == 0 and "1 items changed since the baseline, 0 regressed" in r.output

    # the reverse: the baseline agreed, the current rules (simulated) disagree -> exit 1
    base["items"][1]["engine_outcome"] = "upheld"
    base["items"][1]["agree"] = True
    r = runner.invoke(main, ["regress", *SEEDS, "--baseline", str(base_path), "--quiet"])
    assert r.exit_code == 0

    junit = runner.invoke(main, ["regress", *SEEDS, "--format", "junit", "--quiet"])
    assert junit.output.startswith("<?xml") and 'tests="8"' in junit.output and 'failures="0"' in junit.output
    html = tmp_path / "r.html"
    runner.invoke(main, ["regress", *SEEDS, "--format", "html", "-o", str(html), "--quiet"])
    page = html.read_text()
    assert "data:image/png;base64," in page and "Agreement by guideline section" in page
    assert "http://" not in page and "https://" not in page  # opens offline


def test_min_agreement_fails_below(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    d = _bad_batch(tmp_path)
    # an overturned letter the engine would uphold: flip the outcome word of a real letter
    text = (LETTERS / "002_ca4af5e6e3409f09.txt").read_text().replace("Soma #60: Upheld", "Soma #60: Overturned")
    (d / "overturned.txt").write_text(text)
    r = CliRunner().invoke(main, ["regress", str(d), "--min-agreement", "0.9", "--format", "json"])
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["summary"]["per_outcome"]["overturned"]["letters"] == 1
    assert data["summary"]["balanced_accuracy"] == 0.5
