import json

from click.testing import CliRunner

from mtus_engine.interfaces.cli import main

EXAMPLE = "cases/example-chronic-cyclobenzaprine.yaml"


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_evaluate_json_contract(root, monkeypatch):
    monkeypatch.chdir(root)
    res = run("evaluate", EXAMPLE, "--format", "json")
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["case_id"] == "example-chronic-cyclobenzaprine"
    assert data["rulebook"]["edition"] == "mtus-2009"
    d = data["determinations"][0]
    for key in ("request", "decision", "medically_necessary", "rationale", "citations", "rules_fired",
                "criteria", "missing_documentation"):
        assert key in d
    assert d["decision"] == "non-certify" and d["medically_necessary"] is False
    assert [c["pages"] for c in d["citations"]] == ["41-42", "63-66"]


def test_evaluate_text_and_markdown_and_stdin(root, monkeypatch):
    monkeypatch.chdir(root)
    text = run("evaluate", EXAMPLE)
    assert "NON-CERTIFY" in text.output and "41-42" in text.output
    md = run("evaluate", EXAMPLE, "--format", "markdown")
    assert "**non-certify**" in md.output and "| muscle-relaxants.class |" in md.output
    piped = run("evaluate", "-", "--format", "json", input=(root / EXAMPLE).read_text())
    assert json.loads(piped.output)["determinations"][0]["decision"] == "non-certify"


def test_output_is_byte_identical_across_runs(root, monkeypatch):
    monkeypatch.chdir(root)
    assert run("evaluate", EXAMPLE, "--format", "json").output == run("evaluate", EXAMPLE, "--format", "json").output
    assert run("evaluate", EXAMPLE).output == run("evaluate", EXAMPLE).output


def test_bad_file_in_a_batch_is_reported_and_the_rest_goes_on(root, monkeypatch, tmp_path):
    monkeypatch.chdir(root)
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nrequests:\n  - item: Soma\n    quantity: sixty\n")
    res = CliRunner().invoke(main, ["evaluate", str(bad), EXAMPLE, "--format", "json"])
    assert res.exit_code == 2
    assert "bad.yaml:4: requests[0].quantity: invalid value 'sixty'" in res.stderr
    assert "Traceback" not in res.output + res.stderr
    assert json.loads(res.stdout)[0]["case_id"] == "example-chronic-cyclobenzaprine"


def test_missing_file_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "file not found" in res.stderr


def test_rules_commands(engine):
    n = len(engine.rulebook.rules)
    assert f"ok: {n} rules in {len(engine.rulebook.files)} files" in run("rules", "lint").output
    listing = run("rules", "list", "--format", "json")
    assert {r["id"] for r in json.loads(listing.output)} >= {"cyclobenzaprine.short-course", "acupuncture.trial-and-extension"}
    show = run("rules", "show", "manual-therapy.chiropractic")
    assert "58-59" in show.output and "page(s) 60 [recalled]" in show.output and "functional-improvement" in show.output
    res = CliRunner().invoke(main, ["rules", "show", "cyclobenzaprin"])
    assert res.exit_code == 2 and "did you mean cyclobenzaprine.short-course" in res.stderr
    assert f"rule coverage {n}/{n} (100%)" in run("rules", "test").output


def test_version():
    assert run("--version").output.startswith("mtus, version")


def test_broken_rule_files_exit_2_with_file_and_line(rules_copy):
    rules = rules_copy
    (rules / "chronic-pain" / "binary.yaml").write_bytes(b"\x00\x01\x02")
    (rules / "chronic-pain" / "empty.yaml").write_text("")
    bad = rules / "chronic-pain" / "baclofen.yaml"
    bad.write_text(bad.read_text().replace("    criteria:", "    criteria: [unclosed", 1))
    res = CliRunner().invoke(main, ["rules", "lint", "--rules", str(rules)])
    assert res.exit_code == 2
    assert "binary.yaml: binary content" in res.stderr
    assert "empty.yaml: file is empty" in res.stderr
    assert "baclofen.yaml: line" in res.stderr and "invalid YAML" in res.stderr
    assert "Traceback" not in res.stderr


def test_edition_option_judges_a_request_no_edition_covers_and_says_it_was_chosen(tmp_path):
    case = tmp_path / "today.yaml"
    case.write_text("id: today\nrequest_date: 2026-11-30\nrequests:\n  - item: Soma 350 mg #30\n")
    plain = json.loads(run("evaluate", str(case), "--format", "json").output)
    assert plain["determinations"][0]["decision"] == "no-rule"
    assert "--edition" in plain["determinations"][0]["reason"]
    chosen = json.loads(run("evaluate", str(case), "--format", "json", "--edition", "mtus-2016").output)
    assert chosen["rulebook"]["edition"] == "mtus-2016" and chosen["rulebook"]["edition_chosen"] is True
    assert "chosen by the user, not in effect" in chosen["rulebook"]["edition_basis"]
    assert chosen["determinations"][0]["decision"] == "non-certify"
    assert [c["part"] for c in chosen["determinations"][0]["citations"]][0] == "cpmtg-2016"
    text = run("evaluate", str(case), "--edition", "mtus-2016").output
    assert "chosen by the user" in text
    md = run("evaluate", str(case), "--edition", "mtus-2016", "--format", "markdown").output
    assert "chosen by the user" in md
    bad = run("evaluate", str(case), "--edition", "mtus-1999")
    assert bad.exit_code == 2 and "unknown edition 'mtus-1999'" in bad.stderr and "mtus-2009, mtus-2016" in bad.stderr
    what = run("whatif", str(case), "--edition", "mtus-2016", "--set", "requests[0].quantity=10", "--format", "json")
    assert what.exit_code == 0, what.output


def test_batch_command_and_evaluate_batch_alias_write_the_same_bytes(root, tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    text = (root / EXAMPLE).read_text()
    (cases / "a.yaml").write_text(text)
    (cases / "b.yaml").write_text(text.replace("id: example-chronic-cyclobenzaprine", "id: second"))
    (cases / "c.yaml").write_text("id: broken\nrequests: 3\n")
    outs = {}
    for name, args in (("batch", ["batch", str(cases), "--workers", "2"]),
                       ("alias", ["evaluate", "--batch", str(cases)])):
        out = tmp_path / f"{name}.jsonl"
        res = CliRunner().invoke(main, [*args, "--output", str(out), "--quiet"])
        assert res.exit_code == 2, res.output   # c.yaml is an error line
        outs[name] = out.read_bytes()
    assert outs["batch"] == outs["alias"]
    lines = [json.loads(line) for line in outs["batch"].splitlines()]
    assert [r.get("case_id") for r in lines[1:-1]] == ["example-chronic-cyclobenzaprine", "second", None]
    assert "requests" in lines[3]["error"] and lines[-1]["summary"]["errors"] == 1


def test_extract_workers_give_the_same_files_and_the_c_dumper_the_same_yaml(root, tmp_path):
    import yaml

    letters = sorted(str(p) for p in (root / "cases" / "letters").glob("*.txt"))   # the seed letters
    written = {}
    for n in (1, 2):
        out = tmp_path / f"w{n}"
        res = CliRunner().invoke(main, ["extract", *letters, "-o", str(out), "--format", "yaml",
                                        "--workers", str(n), "--quiet"])
        assert res.exit_code == 0, res.stderr
        written[n] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert written[1] == written[2] and len(written[1]) >= 10
    # what the pure-Python dumper writes, byte for byte
    some = next(name for name in sorted(written[1]) if name.endswith(".case.yaml"))
    data = yaml.safe_load(written[1][some])
    assert yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode() == written[1][some]


def test_derived_request_is_typed_and_a_misspelt_field_raises(engine):
    import pytest

    from mtus_engine.evaluation.case import Request, case_from_data, derive_request
    from mtus_engine.evaluation.derived import DerivedRequest
    assert set(Request.model_fields) <= set(DerivedRequest.__dataclass_fields__)
    case = case_from_data({"id": "x", "requests": [{"item": "Cyclobenzaprine 7.5mg #60"}]})
    fields, _ = derive_request(case, 0, engine.rulebook.drugs)
    req = DerivedRequest.of(fields)
    assert req.drug == "cyclobenzaprine" and req.quantity == 60 and req.sessions is None
    assert dict(req.items()) == fields   # only what derivation gave, in its order
    with pytest.raises(AttributeError):
        req.quantitty
    with pytest.raises(TypeError):
        DerivedRequest.of({"item": "x", "quantitty": 3})


def test_a_cold_json_evaluate_loads_no_renderer_service_or_pdf_library(root):
    import subprocess
    import sys
    code = ("import sys\nfrom mtus_engine.interfaces.cli import main\n"
            "try:\n    main(['evaluate', sys.argv[1], '--format', 'json'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = ('jinja2', 'rich', 'matplotlib', 'fastapi', 'uvicorn', 'pypdf', 'pypdfium2', "
            "'mtus_engine.letters.letter', 'mtus_engine.evaluation.whatif', 'mtus_engine.rules.regress', 'mtus_engine.evaluation.batch')\n"
            "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n")
    res = subprocess.run([sys.executable, "-c", code, str(root / EXAMPLE)], capture_output=True, text=True,
                         timeout=120)
    assert json.loads(res.stdout)["case_id"] == "example-chronic-cyclobenzaprine"
    assert res.stderr.strip().splitlines()[-1] == "[]"


def test_regression_report_writes_to_the_stream_given_and_prints_nothing(capsys):
    import io
    from pathlib import Path

    from mtus_engine.api import regression_report
    seeds = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "cases" / "letters").glob("*.txt"))
    buf = io.StringIO()
    outcome = regression_report(seeds, fmt="markdown", out=buf)
    assert capsys.readouterr().out == ""
    assert buf.getvalue().startswith("Rulebook ") and f"{outcome['summary']['letters']} letters" in buf.getvalue()


def test_rules_dir_is_the_readers_vocabulary_too(root, flexmax_rules):
    """--rules DIR changes the engine and the vocabulary the note and letter readers use: a
    brand added to the copied rulebook's drugs is read from a note only under --rules."""
    import subprocess
    import sys
    rules, note = flexmax_rules

    def run(*args):
        return subprocess.run([sys.executable, "-m", "mtus_engine", "evaluate", *args, str(note), "--format", "json"],
                              capture_output=True, text=True, cwd=root)
    bundled = run()
    assert bundled.returncode == 2 and "no requested item" in bundled.stderr
    copied = run("--rules", str(rules))
    assert copied.returncode in (0, 1), copied.stderr
    det = json.loads(copied.stdout)["determinations"][0]
    assert any(r.startswith("cyclobenzaprine") for r in det["rules_fired"]), det["rules_fired"]
