"""The rulebook against the five real IMR letters, and the regress command's contract."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mtus_engine.evaluation.case import case_from_data
from mtus_engine.interfaces.cli import main
from mtus_engine.rules.regress import engine_outcome, page_set, run_regression

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
    assert "8/8 items agree" in page and "built-in method" not in page
    assert "MTUS-cited coverage" in page and "balanced accuracy" in page

    md = runner.invoke(main, ["regress", *SEEDS, "--format", "markdown", "--quiet", "--workers", "2"])
    assert md.exit_code == 0 and "| balanced accuracy | n/a | n/a |" in md.output
    assert "| coverage (items with a determination) | 8/8 (100.0%) | 8/8 (100.0%) |" in md.output


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


# ------------------------------------------------------------------ honest figures (issue 9)

from mtus_engine.rules.regress import Tally, item_citations  # noqa: E402


def _item(letter_outcome, engine_outcome, *, mtus=True, parts=("cpmtg-2016",), gold=None, match=None):
    return {"letter": "x.txt", "index": 0, "item": "x", "letter_outcome": letter_outcome,
            "engine_outcome": engine_outcome, "agree": letter_outcome == engine_outcome,
            "letter_pages": [], "pages_covered": True, "section": None, "parts": list(parts),
            "mtus_cited": mtus, "outside_mtus": not mtus, "gold_reason": gold, "reason_match": match}


def test_balanced_accuracy_is_na_on_a_one_class_corpus(monkeypatch):
    # the five seed letters are all upheld: recall of overturned and balanced accuracy are n/a
    with run_regression(SEEDS) as run:
        s = run.summary
        out = __import__("io").StringIO()
        from mtus_engine.interfaces.report import write_markdown, write_text
        write_text(run, out)
        md = __import__("io").StringIO()
        write_markdown(run, md)
    assert s["per_outcome"]["overturned"]["letters"] == 0
    assert s["balanced_accuracy"] is None and s["recall"] == {"upheld": 1.0, "overturned": None}
    assert s["mtus"]["balanced_accuracy"] is None
    assert "100.0%" not in [row.split()[-1] for row in out.getvalue().splitlines() if "balanced accuracy" in row]
    assert "| balanced accuracy | n/a | n/a |" in md.getvalue()


def test_tally_coverage_recall_and_reasons():
    t = Tally()
    for it in [
        _item("upheld", "upheld", gold="a.rule/c1", match=True),
        _item("upheld", "upheld", gold="unmapped:other", match=False),
        _item("upheld", "no-rule"),                                   # MTUS-cited, no determination: a miss
        _item("overturned", "overturned", gold="b.rule/c2", match=False, parts=("acoem-low-back-2004",)),
        _item("overturned", "upheld", gold="b.rule/c2"),              # disagrees: no reason figure
        _item("upheld", "no-rule", mtus=False, parts=("non-mtus",)),  # ODG only: outside the MTUS
    ]:
        t.add(it)
    s = t.summary()
    # coverage: MTUS-cited items with a determination (4 of 5)
    assert s["coverage"] == 0.8 and s["mtus"]["items"] == 5 and s["mtus"]["determined"] == 4
    assert s["outside_mtus"] == {"items": 1, "no_rule": 1, "agree": 0}
    # no-rule is a miss: recall upheld 2/3 among MTUS-cited, 2/4 over all items
    assert s["mtus"]["recall"] == {"upheld": 0.6667, "overturned": 0.5}
    assert s["mtus"]["balanced_accuracy"] == round((2 / 3 + 0.5) / 2, 4)
    assert s["recall"]["upheld"] == 0.5 and s["agreement"] == 0.5
    # per part: an item counts under every part it cites
    assert s["by_part"]["acoem-low-back-2004"]["items"] == 1
    assert s["by_part"]["cpmtg-2016"]["recall"] == {"upheld": 0.6667, "overturned": 0.0}
    assert list(s["by_part"])[-1] == "non-mtus"
    # reasons: of the 3 agreeing items with a gold reason, 1 matched; 1 gold reason is unmapped
    assert s["reasons"] == {"gold_letters": 1, "gold_items": 4, "agreeing": 3, "matched": 1,
                            "rate": 0.3333, "unmapped": 1, "unknown": 0, "rate_mapped": 0.5}


def test_cited_parts_come_from_the_extractors_citations(root):
    # one title matcher: the extractor resolves each citation against rulebook.yaml's part titles
    from mtus_engine.letters.letter import Citation, ParsedItem, parse_letter, read_letter

    def cited(name, index=0):
        path = root / "cases" / "letters" / name
        return item_citations(parse_letter(read_letter(path), str(path)).items[index])

    assert cited("000_76513b612d91b1e3.txt") == (["cpmtg-2009"], True)
    assert cited("002_ca4af5e6e3409f09.txt") == (["cpmtg-2009", "non-mtus"], True)
    assert cited("004_d63cce9444fd3e2d.txt") == (["acupuncture-2007"], True)
    # ODG alone is outside the MTUS; an MTUS citation naming no known part is "mtus-unnamed"
    odg = ParsedItem(item="x", outcome="upheld", citations=[Citation(part="non-mtus", guideline="ODG")], mtus=False)
    assert item_citations(odg) == (["non-mtus"], False)
    unnamed = ParsedItem(item="x", outcome="upheld", citations=[Citation(part=None, guideline="MTUS")])
    assert item_citations(unnamed) == (["mtus-unnamed"], True)
    assert item_citations(ParsedItem(item="x", outcome="upheld")) == ([], False)


def test_coverage_and_reason_agreement_on_letters_with_gold_files(tmp_path):
    d = tmp_path / "letters"
    d.mkdir()
    for name in ("000_76513b612d91b1e3.txt", "003_82aa6a07caa57e33.txt"):
        (d / name).write_text((LETTERS / name).read_text())
    # a letter whose first item the reviewer judged on ODG alone
    text = (LETTERS / "004_d63cce9444fd3e2d.txt").read_text()
    text = text.replace("MAXIMUS guideline: Decision based on MTUS Acupuncture Treatment Guidelines.",
                        "MAXIMUS guideline: The Expert Reviewer based their decision on recommendation(s) "
                        "outside of the MTUS Guidelines. Decision based on Non-MTUS Citation Official "
                        "Disability Guidelines (ODG) Pain, Acupuncture.", 1)
    (d / "004_odg.txt").write_text(text)
    with run_regression([d]) as run:
        first = list(run.items())
    assert [i["agree"] for i in first] == [True] * 5
    odg = [i for i in first if i["letter"].endswith("004_odg.txt")]
    assert odg[0]["outside_mtus"] and odg[0]["parts"] == ["non-mtus"] and not odg[1]["outside_mtus"]

    # gold files: 000's reason is among the engine's decisive criteria, 003's two are not
    # (one names a criterion the engine did not find decisive, one no criterion at all)
    r000 = first[0]["engine_reasons"][0]
    (d / "000_76513b612d91b1e3.gold.yaml").write_text(yaml.safe_dump({"items": [
        {"item": first[0]["item"], "outcome": "upheld", "reason": {"criterion": r000}}]}))
    (d / "003_82aa6a07caa57e33.gold.yaml").write_text(yaml.safe_dump({"items": [
        {"item": first[1]["item"], "outcome": "upheld", "reason": {"criterion": "unmapped:no-progress-notes"}},
        {"item": first[2]["item"], "outcome": "upheld", "reason": {"criterion": "muscle-relaxants.class/no-such"}},
    ]}))
    with run_regression([d]) as run:
        s = run.summary
        items = list(run.items())
    assert [i["reason_match"] for i in items] == [True, False, False, None, None]
    assert s["reasons"] == {"gold_letters": 2, "gold_items": 3, "agreeing": 3, "matched": 1, "rate": 0.3333,
                            "unmapped": 1, "unknown": 1, "rate_mapped": 0.5}
    # "no-such" is no criterion of the rule: a gap in the rules, told apart from a miss
    assert [i["reason_known"] for i in items] == [True, True, False, None, None]
    mtus = [i for i in items if i["mtus_cited"]]
    assert s["mtus"]["items"] == len(mtus) == 4 and s["outside_mtus"]["items"] == 1
    assert s["coverage"] == round(sum(i["engine_outcome"] != "no-rule" for i in mtus) / len(mtus), 4)


def test_pdf_backend_reads_real_letters_line_for_line_as_pypdf():
    # PDFium (fast) against pypdf (the reference): the same non-blank lines, spaces collapsed
    import io
    import re

    from pypdf import PdfReader

    from mtus_engine.letters.letter import read_letter

    def lines(text):
        return [" ".join(l.split()) for l in re.split(r"[\r\n]", text) if l.strip()]

    for name in ("CM16-0229336.pdf", "CM16-0235991.pdf"):   # both have words hyphenated across lines
        path = LETTERS / "real" / name
        reader = PdfReader(io.BytesIO(path.read_bytes()))
        if reader.is_encrypted:
            reader.decrypt("")
        want = "\n\n".join(p.extract_text() or "" for p in reader.pages)
        assert lines(read_letter(path)) == lines(want)


def test_markdown_cells_carry_no_html_links_or_cell_breaks():
    from mtus_engine.interfaces.report import _md
    cell = _md("Soma <script>x</script> | [link](http://x)\nnext")
    assert "<script>" not in cell and "&lt;script&gt;" in cell
    assert "\\|" in cell and "\\[link\\](http://x)" in cell and "\n" not in cell


def test_regress_reports_every_path_and_survives_hostile_names(tmp_path):
    # issue 10: dangling and looping links, a directory named like a letter, markup in names and
    # items: each is reported or shown escaped, none vanishes or crashes the report
    import os
    seed = sorted((Path(__file__).resolve().parents[1] / "cases" / "letters").glob("*.txt"))[0]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = seed.read_text()
    first_item = text.split("IMR ISSUES, DECISIONS AND RATIONALES", 1)[1]
    (corpus / "[bold]scan.txt").write_text(text)
    (corpus / "dangling.txt").symlink_to(corpus / "nowhere.txt")
    (corpus / "[bold]gone.txt").symlink_to(corpus / "nowhere.txt")
    (corpus / "loop.txt").symlink_to(corpus / "loop.txt")
    (corpus / "folder.txt").mkdir()
    runner = CliRunner()
    r = runner.invoke(main, ["regress", str(corpus), "--quiet"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    out = r.output
    assert "[bold]gone.txt" in out   # shown as written, not read as rich markup
    for name, why in (("dangling.txt", "broken symbolic link"), ("loop.txt", "symbolic link loop"),
                      ("folder.txt", "a directory")):
        assert name in out and why in out, (name, out[-2000:])
    js = runner.invoke(main, ["regress", str(corpus), "--quiet", "--format", "json"])
    report = json.loads(js.output)
    assert report["summary"]["letters"] == 1 and len(report["errors"]) == 4
    assert report["items"][0]["letter"].endswith("[bold]scan.txt")
    assert first_item  # the seed has items


def test_two_regress_runs_never_share_a_temporary_report(tmp_path):
    from mtus_engine.api import regression_report
    out = tmp_path / "report.json"
    for _ in range(2):
        regression_report(SEEDS, fmt="json", output=str(out))
    assert json.loads(out.read_text())["summary"]["letters"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_markup_in_a_letter_item_is_shown_not_interpreted(tmp_path):
    from mtus_engine.letters.letter import parse_letter
    seed = sorted((Path(__file__).resolve().parents[1] / "cases" / "letters").glob("*.txt"))[0]
    text = seed.read_text()
    item = parse_letter(text).items[0].item
    marked = item.split()[0] + " [/bold][red]"
    (tmp_path / "letter.txt").write_text(text.replace(item.split()[0], marked.split(" ", 1)[0] + " [/bold][red]", 1))
    for fmt in ("text", "markdown", "html"):
        r = CliRunner().invoke(main, ["regress", str(tmp_path / "letter.txt"), "--quiet", "--format", fmt])
        assert r.exception is None or isinstance(r.exception, SystemExit), (fmt, r.exception)
        assert "Traceback" not in r.output


def test_possible_reasons_are_what_the_engine_can_name(engine):
    from mtus_engine.rules.regress import possible_reasons
    known = possible_reasons(engine.rulebook)
    rules = engine.rulebook.rules
    not_recommended = next(r for r in rules if r.recommendation == "not-recommended")
    guarded = next((r, c) for r in rules for c in r.criteria if c.when is not None)
    assert f"{not_recommended.id}/not-recommended" in known
    assert f"{guarded[0].id}/{guarded[1].when.fact.replace('_', '-')}" in known
    assert all(f"{r.id}/{c.id}" in known for r in rules for c in r.criteria)
    assert "imaging.shoulder/no-such-criterion" not in known
    # a guard on a region-bound finding is named by the finding, as the letters' reasons are
    assert "surgery.knee/red-flags" in known and not any("in-region" in r for r in known)


@pytest.mark.parametrize("regions, certified", [(None, True), (["knee"], True), (["lumbar"], False)])
def test_a_guard_on_a_region_bound_red_flag_is_named_by_the_finding(engine, regions, certified):
    from mtus_engine.rules.regress import engine_reasons
    findings = {"red_flags": True, "conservative_care_failed": True}
    if regions:
        findings["red_flags_regions"] = regions
    case = case_from_data({"id": "g", "request_date": "2016-11-10", "findings": findings,
                           "requests": [{"item": "Left knee arthroscopy", "modality": "surgery",
                                         "body_region": ["knee"]}]}, "g")
    det = engine.evaluate(case).determinations[0]
    reasons = engine_reasons(det, engine.rulebook)
    # a lumbar red flag sets nothing aside for the knee: the surgical lesion is still asked
    assert (det.decision == "certify") == certified
    assert ("surgery.knee/red-flags" in reasons) == certified, reasons


@pytest.mark.parametrize("findings, named, not_named", [
    # one alternative holds: it is named, met; the others set aside by it are not
    ({"invasive_procedure_planned": True}, {"imaging.shoulder/surgery-considered"},
     {"imaging.shoulder/red-flags", "imaging.shoulder/conservative-care-failed"}),
    # two hold: each sets the other aside, and both are named from their values
    ({"red_flags": True, "conservative_care_failed": True},
     {"imaging.shoulder/red-flags", "imaging.shoulder/conservative-care-failed"},
     {"imaging.shoulder/surgery-considered", "imaging.shoulder/neurologic-deficit"}),
    # none holds: a denial names every alternative that failed or is not documented
    ({"red_flags": False}, {"imaging.shoulder/red-flags", "imaging.shoulder/neurologic-deficit",
                            "imaging.shoulder/conservative-care-failed", "imaging.shoulder/surgery-considered"}, set()),
])
def test_reasons_name_the_alternatives_of_a_rule(engine, findings, named, not_named):
    from mtus_engine.rules.regress import engine_reasons, possible_reasons
    case = case_from_data({"id": "alt", "request_date": "2016-12-15", "findings": findings,
                           "requests": [{"item": "Right shoulder MRI", "modality": "mri",
                                         "body_region": ["shoulder"]}]}, "alt")
    det = engine.evaluate(case).determinations[0]
    reasons = set(engine_reasons(det, engine.rulebook))
    assert named <= reasons and not (not_named & reasons), (det.decision, reasons)
    # the derived guard facts are never named, nor counted as a reason the engine can give
    assert not any("other-than" in r for r in reasons | possible_reasons(engine.rulebook))
