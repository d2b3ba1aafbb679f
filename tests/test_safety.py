"""Safety: no network, no writes outside the named place, no case data in logs unless asked."""

import socket
from pathlib import Path

from click.testing import CliRunner

from mtus_engine.interfaces.cli import main

# the five seed letters (the real 2016-2017 corpus lives in cases/letters/real/)
SEEDS = sorted(str(p.relative_to(Path(__file__).resolve().parents[1])) for p in (Path(__file__).resolve().parents[1] / "cases" / "letters").glob("*.txt"))


def test_no_network_anywhere(monkeypatch, root, tmp_path):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")
    # connecting is what network access needs; the socket class itself must stay subclassable
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.chdir(root)
    r = CliRunner()
    assert r.invoke(main, ["evaluate", "cases/example-chronic-cyclobenzaprine.yaml", "--format", "json"]).exit_code == 0
    assert r.invoke(main, ["regress", *SEEDS, "--quiet", "--format", "json"]).exit_code == 0
    assert r.invoke(main, ["whatif", "cases/example-chronic-cyclobenzaprine.yaml", "--flip"]).exit_code == 0
    assert r.invoke(main, ["rules", "lint"]).exit_code == 0


def test_extract_output_stays_in_the_named_directory(root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    letter = root / "cases" / "letters" / "000_76513b612d91b1e3.txt"
    odd = tmp_path / "in" / "..evil.txt"
    odd.parent.mkdir()
    odd.write_text(letter.read_text())
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["extract", str(odd), "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert all(str(p).startswith("out/") or str(p).startswith("in/") for p in written)
    assert {p.name for p in out.iterdir()} == {"..evil.letter.json", "..evil.case.yaml"}


def test_case_contents_are_not_logged_unless_asked(root, monkeypatch, caplog):
    monkeypatch.chdir(root)
    caplog.set_level("DEBUG")
    quiet = CliRunner().invoke(main, ["evaluate", "cases/example-chronic-cyclobenzaprine.yaml", "--format", "json"])
    assert quiet.stderr == "" and "tramadol" not in caplog.text
    CliRunner().invoke(main, ["evaluate", "cases/example-chronic-cyclobenzaprine.yaml", "--format", "json", "--log-cases"])
    assert "tramadol" in caplog.text


def test_size_limits_are_configurable(root, monkeypatch):
    monkeypatch.chdir(root)
    r = CliRunner().invoke(main, ["extract", "cases/letters/000_76513b612d91b1e3.txt", "--max-bytes", "100"])
    assert r.exit_code == 2 and "over the 100-byte limit" in r.stderr
    r = CliRunner().invoke(main, ["evaluate", "cases/example-chronic-cyclobenzaprine.yaml", "--max-bytes", "50"])
    assert r.exit_code == 2 and "over the 50-byte limit" in r.stderr
    r = CliRunner().invoke(main, ["regress", *SEEDS, "--max-bytes", "100", "--format", "json", "--quiet"])
    assert '"failed_letters": 5' in r.stdout
