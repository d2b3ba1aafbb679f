import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from mtus_engine.evaluation.batch import resume_point, run_batch

ROOT = Path(__file__).resolve().parents[1]


def _cases(n: int) -> str:
    items = ["Flexeril 7.5 mg #20", "Soma 350 mg #60", "Acupuncture 6 sessions lumbar", "Ambien 10 mg #30",
             "Chiropractic 2x6 lumbar", "Robaxin 750 mg #120"]
    lines = []
    for i in range(n):
        case = {"id": f"c{i}", "request_date": "2014-06-20",
                "findings": {"acute_exacerbation": i % 3 == 0},
                "requests": [{"item": items[i % len(items)], "prior_sessions": i % 7}
                             if "sessions" in items[i % len(items)] or "2x6" in items[i % len(items)]
                             else {"item": items[i % len(items)], "prior_use_weeks": i % 5}]}
        lines.append(json.dumps(case))
        if i % 97 == 13:
            lines.append('{"id": "broken", "requests": [{"item": "Soma", "quantity": "sixty"}]}')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
    p = tmp_path_factory.mktemp("batch") / "cases.jsonl"
    p.write_text(_cases(600))
    return p


@pytest.fixture(scope="module")
def full_output(jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "out.jsonl"
    run_batch(str(jsonl), output=str(out), workers=1)
    return out.read_bytes()


def test_output_order_summary_and_errors(full_output):
    lines = [json.loads(l) for l in full_output.splitlines()]
    header, body, summary = lines[0]["batch"], lines[1:-1], lines[-1]["summary"]
    assert header["input"]["kind"] == "file" and header["input"]["size"] > 0
    assert [r["index"] for r in body] == list(range(len(body)))
    assert summary["cases"] == len(body) == 607 and summary["evaluated"] + summary["errors"] == 607
    assert summary["errors"] == 7 and all("sixty" in r["error"] for r in body if "error" in r)
    assert summary["requests"] == 600 and sum(summary["by_decision"].values()) == 600


def test_one_and_two_workers_are_byte_identical(jsonl, full_output, tmp_path):
    out = tmp_path / "two.jsonl"
    run_batch(str(jsonl), output=str(out), workers=2, chunk_size=16)
    assert out.read_bytes() == full_output


@settings(max_examples=25, deadline=None)
@given(cut=st.floats(0, 1))
def test_resume_after_a_cut_at_any_byte_gives_every_case_exactly_once(jsonl, full_output, tmp_path_factory, cut):
    out = tmp_path_factory.mktemp("cut") / "out.jsonl"
    out.write_bytes(full_output[: int(len(full_output) * cut)])
    run_batch(str(jsonl), output=str(out), resume=True)
    assert out.read_bytes() == full_output


POISON = [
    '{"id": "deep", "requests": [{"item": "Soma"}], "diagnoses": ' + "[" * 40000 + "]" * 40000 + "}",
    '{"id": "qty", "request_date": "2014-06-20", "requests": [{"item": "Cyclobenzaprine 7.5mg #999999"}]}',
    '{"id": "date", "request_date": "2014-13-45", "requests": [{"item": "Soma"}]}',
    '{"id": "big", "requests": [{"item": "Soma", "quantity": ' + "9" * 5000 + "}]}",
    "\udcff not json at all",
]


def test_resume_after_a_real_kill(jsonl, full_output, tmp_path):
    # a kill-and-resume with poison lines in the input: they are error lines, the run goes on
    big = tmp_path / "big.jsonl"
    lines = _cases(6000).splitlines()
    for k, poison in enumerate(POISON):
        lines.insert(500 + 900 * k, poison)
    big.write_text("\n".join(lines) + "\n", errors="surrogateescape")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "mtus_engine", "evaluate", "--batch", str(big), "--output", str(out),
           "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.time() + 30
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 200_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)
    orphans = subprocess.run(["pgrep", "-f", f"--output {out}"], capture_output=True, text=True,
                             timeout=30).stdout.split()
    assert orphans == [], "pool workers outlived their killed parent"
    assert subprocess.run(cmd + ["--resume"], cwd=ROOT, check=False, timeout=300).returncode == 2
    reference = tmp_path / "ref.jsonl"
    subprocess.run(cmd[:6] + ["--output", str(reference), "--quiet"], cwd=ROOT, check=False, timeout=300)
    got, want = out.read_bytes().splitlines(), reference.read_bytes().splitlines()
    assert [a for a, b in zip(got, want) if a != b][:2] == [] and len(got) == len(want)
    summary = json.loads(out.read_bytes().splitlines()[-1])["summary"]
    assert summary["errors"] >= len(POISON) and summary["cases"] == summary["evaluated"] + summary["errors"]


def test_directory_input_and_non_case_files(tmp_path):
    d = tmp_path / "cases"
    d.mkdir()
    (d / "a.yaml").write_text("id: a\nrequest_date: 2014-06-20\nrequests:\n  - item: Soma 350 mg #20\n")
    (d / "b.json").write_text('{"id": "b", "requests": [{"item": "Flexeril #20"}]}')
    (d / "notes.txt").write_text("hello")
    out = tmp_path / "o.jsonl"
    summary = run_batch(str(d), output=str(out))
    recs = [json.loads(l) for l in out.read_text().splitlines()][1:]
    assert [r.get("case_id") for r in recs[:-1]] == ["a", "b", None]
    assert "not a case file" in recs[2]["error"] and summary["errors"] == 1


def test_resume_refuses_a_foreign_file(jsonl, full_output, tmp_path):
    from mtus_engine.errors import InputError
    out = tmp_path / "o.jsonl"
    out.write_text('{"index": 5}\n')
    with pytest.raises(InputError, match="line 1 is not a batch header"):
        resume_point(out)
    header = full_output.split(b"\n", 1)[0]
    out.write_bytes(header + b'\n{"index": 5}\n')
    with pytest.raises(InputError, match="index 5, expected 0"):
        resume_point(out)


def test_cli_batch_exit_code_and_stdout(jsonl):
    r = subprocess.run([sys.executable, "-m", "mtus_engine", "evaluate", "--batch", "-", "--quiet"],
                       input=jsonl.read_bytes()[:5000], capture_output=True, cwd=ROOT, timeout=120)
    lines = r.stdout.decode().splitlines()
    assert json.loads(lines[-1])["summary"]["cases"] == len(lines) - 1   # stdout: no header line
    assert r.returncode in (0, 2)


def test_batch_under_a_named_edition_says_so_and_resumes_only_under_it(tmp_path):
    import json as _json
    from click.testing import CliRunner
    from mtus_engine.interfaces.cli import main
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(_json.dumps({"id": f"c{i}", "request_date": "2026-11-30",
                                          "requests": [{"item": "Soma 350 mg #30"}]}) for i in range(3)) + "\n")
    out = tmp_path / "out.jsonl"
    runner = CliRunner()
    for workers in ("1", "2"):
        r = runner.invoke(main, ["evaluate", "--batch", str(src), "--edition", "mtus-2016", "--workers", workers,
                                 "--output", str(out), "--quiet"])
        assert r.exit_code == 0, r.output
        lines = [_json.loads(x) for x in out.read_text().splitlines()]
        cases = [x for x in lines if "determinations" in x]
        assert len(cases) == 3 and all(c["rulebook"]["edition_chosen"] and c["rulebook"]["edition"] == "mtus-2016"
                                       for c in cases)
        assert {c["determinations"][0]["decision"] for c in cases} == {"non-certify"}
    # the same output resumed without the edition is another run: refused
    r = runner.invoke(main, ["evaluate", "--batch", str(src), "--output", str(out), "--resume", "--quiet"])
    assert r.exit_code == 2 and "was written for input" in r.stderr
    bad = runner.invoke(main, ["evaluate", "--batch", str(src), "--edition", "mtus-1999", "--quiet"])
    assert bad.exit_code == 2 and "unknown edition" in bad.stderr
