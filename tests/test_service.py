"""The HTTP service over real HTTP, against `mtus serve` started here on a free loopback port.

Every answer is compared with what the CLI prints for the same input (seed case and letters), bad
input gets the CLI's one line with 422 and the server goes on, and the decision log keeps every
evaluation (and no case content) under concurrent workers, even when one is killed mid-load.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from mtus_engine.interfaces.cli import main as cli
from mtus_engine.interfaces.service.launch import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "example-chronic-cyclobenzaprine.yaml"
LETTERS = sorted((ROOT / "cases" / "letters").glob("*.txt"))


def run_cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service")
    with ServerProcess(["--db", str(tmp / "decisions.db")], log_path=tmp / "server.log") as srv:
        srv.db = tmp / "decisions.db"
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            srv.client = client
            yield srv


def test_healthz(server):
    r = server.client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and set(body["rulebook"]) == {"version", "digest"}


@pytest.mark.parametrize("ctype", ["application/yaml", "application/json"])
def test_evaluate_case_is_the_cli_json(server, ctype):
    raw = CASE.read_bytes() if ctype == "application/yaml" else json.dumps(
        yaml.safe_load(CASE.read_text()), default=str).encode()
    if ctype == "application/json":  # YAML read '#60' unquoted as a comment: keep the item as the CLI reads it
        data = json.loads(raw)
        data["requests"][0]["item"] = "Cyclobenzaprine 7.5mg #60 refills x 3"
        raw = json.dumps(data).encode()
    r = server.client.post("/v1/evaluate", content=raw, headers={"content-type": ctype})
    code, out, _ = run_cli("evaluate", str(CASE), "--format", "json")
    assert r.status_code == 200 and code == 0
    assert r.headers["content-type"].startswith("application/json")
    assert r.text == out  # byte for byte


def test_evaluate_edition_is_the_cli_json(server):
    r = server.client.post("/v1/evaluate", params={"edition": "mtus-2016"}, content=CASE.read_bytes(),
                           headers={"content-type": "application/yaml"})
    _, out, _ = run_cli("evaluate", str(CASE), "--format", "json", "--edition", "mtus-2016")
    assert r.status_code == 200 and r.text == out
    assert r.json()["rulebook"]["edition_chosen"] is True
    bad = server.client.post("/v1/evaluate", params={"edition": "mtus-1999"}, content=CASE.read_bytes(),
                             headers={"content-type": "application/yaml"})
    code, _, err = run_cli("evaluate", str(CASE), "--edition", "mtus-1999")
    assert bad.status_code == 422 and code == 2
    assert "error: " + bad.json()["error"] == err.strip()


NOTES = sorted((ROOT / "cases" / "notes").glob("*.txt"))[:3]


@pytest.mark.parametrize("letter", LETTERS + NOTES, ids=lambda p: p.name)
def test_evaluate_letter_is_the_cli_json(server, letter):
    """A letter, or a progress note pasted as text: the CLI's JSON for the same file."""
    rel = str(letter.relative_to(ROOT))
    r = server.client.post("/v1/evaluate", params={"name": rel}, content=letter.read_bytes(),
                           headers={"content-type": "text/plain; charset=utf-8"})
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code, out, err = run_cli("evaluate", rel, "--format", "json")
    finally:
        os.chdir(cwd)
    if code == 0:
        assert r.status_code == 200 and r.text == out
    else:
        assert r.status_code == 422 and "error: " + r.json()["error"] == err.strip()


def test_evaluate_pdf_letter(server, tmp_path):
    pdfs = sorted((ROOT / "cases" / "letters" / "real").glob("*.pdf"))
    if not pdfs:
        pytest.skip("no PDF letters in this checkout")
    pdf = pdfs[0]
    r = server.client.post("/v1/evaluate", params={"name": str(pdf)}, content=pdf.read_bytes(),
                           headers={"content-type": "application/pdf"})
    code, out, err = run_cli("evaluate", str(pdf), "--format", "json")
    if code == 0:
        assert r.status_code == 200 and r.text == out
    else:
        assert r.status_code == 422 and "error: " + r.json()["error"] == err.strip()


@pytest.mark.parametrize("content", [b"", b"[1, 2]", b"id: x\n", b"\x00\x01\x02binary",
                                     b"id: x\nrequests:\n  - item: Flexeril 10mg #30\n    quantity: -4\n",
                                     b"{\"id\": \"x\", \"requests\": [{\"item\": \"a\"}], \"bogus\": 1}"])
def test_bad_input_is_the_cli_line_and_the_server_goes_on(server, tmp_path, content):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    r = server.client.post("/v1/evaluate", params={"name": str(path)}, content=content,
                           headers={"content-type": "application/yaml"})
    code, _, err = run_cli("evaluate", str(path), "--format", "json")
    assert code == 2 and r.status_code == 422
    assert "error: " + r.json()["error"] == err.strip().splitlines()[0]
    assert server.client.get("/healthz").status_code == 200


def test_bad_letter_and_unknown_type(server):
    r = server.client.post("/v1/evaluate", content=b"\x00\x00\x00", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "binary file that is not a PDF" in r.json()["error"]
    r = server.client.post("/v1/evaluate", content=b"x", headers={"content-type": "image/png"})
    assert r.status_code == 422 and "unsupported content type" in r.json()["error"]


def test_body_size_is_bounded(server):
    big = b"a" * (5 * 1024 * 1024 + 200_000)
    r = server.client.post("/v1/evaluate", content=big, headers={"content-type": "text/plain"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert server.client.get("/healthz").status_code == 200


def test_whatif_is_the_cli_json(server):
    case = yaml.safe_load(CASE.read_text())
    case["requests"][0]["item"] = "Cyclobenzaprine 7.5mg #60 refills x 3"
    case = json.loads(json.dumps(case, default=str))
    r = server.client.post("/v1/whatif", json={"case": case, "set": {"findings.acute_exacerbation": True,
                                                                       "requests[0].quantity": 20}})
    _, out, _ = run_cli("whatif", str(CASE), "--set", "findings.acute_exacerbation=true",
                        "--set", "requests[0].quantity=20", "--format", "json")
    assert r.status_code == 200 and r.text == out
    r = server.client.post("/v1/whatif", json={"case": case, "unset": ["requests[0].functional_improvement"]})
    _, out, _ = run_cli("whatif", str(CASE), "--unset", "requests[0].functional_improvement", "--format", "json")
    assert r.status_code == 200 and r.text == out
    r = server.client.post("/v1/whatif", json={"case": case, "flip": True})
    _, out, _ = run_cli("whatif", str(CASE), "--flip", "--format", "json")
    assert r.status_code == 200 and r.text == out
    r = server.client.post("/v1/whatif", json={"case": case, "set": {"requests[0].nonsense": 1}})
    code, _, err = run_cli("whatif", str(CASE), "--set", "requests[0].nonsense=1")
    assert r.status_code == 422 and code == 2 and "error: " + r.json()["error"] == err.strip()
    r = server.client.post("/v1/whatif", json={"case": case})
    assert r.status_code == 422 and r.json()["error"].startswith("nothing to do")


def test_rules_list_and_show_are_the_cli(server):
    r = server.client.get("/v1/rules")
    _, out, _ = run_cli("rules", "list", "--format", "json")
    assert r.status_code == 200 and r.text == out
    rid = r.json()[0]["id"]
    r = server.client.get(f"/v1/rules/{rid}")
    _, out, _ = run_cli("rules", "show", rid)
    assert r.status_code == 200 and r.json()["text"] == out and r.json()["rule"]["id"] == rid
    r = server.client.get("/v1/rules/cyclobenzaprine.short-cours")
    code, _, err = run_cli("rules", "show", "cyclobenzaprine.short-cours")
    assert r.status_code == 404 and "error: " + r.json()["error"] == err.strip()


def test_openapi_docs(server):
    assert server.client.get("/docs").status_code == 200
    paths = server.client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/evaluate", "/v1/whatif", "/v1/rules", "/v1/rules/{rule_id}",
            "/cds-services", "/cds-services/mtus-order-sign"} <= set(paths)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_nothing_from_afar(server, page):
    """The docs pages name only this server's files, and the server has them (no network needed)."""
    import re
    r = server.client.get(page)
    assert r.status_code == 200
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', r.text) + re.findall(r'url:\s*["\']([^"\']+)', r.text)
    refs += re.findall(r'spec-url="([^"]+)', r.text)
    assert refs and not any("//" in ref for ref in refs), refs
    scripts = [ref for ref in refs if ref.endswith(".js")]
    assert scripts
    for ref in refs:
        asset = server.client.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 0, ref
    for script in scripts:
        assert "javascript" in server.client.get(script).headers["content-type"]


def test_plain_form_post(server):
    letter = LETTERS[0]
    r = server.client.post("/", data={"document": letter.read_text(), "edition": ""})
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert 'class="determination"' in r.text and 'data-decision="' in r.text
    r = server.client.post("/", files={"file": ("case.yaml", CASE.read_bytes(), "application/yaml")},
                           data={"edition": ""})
    assert r.status_code == 200 and 'data-decision="non-certify"' in r.text
    r = server.client.post("/", data={"document": "   "})
    assert r.status_code == 422 and "nothing to evaluate" in r.text


def test_decision_log_records_without_content(server):
    before = _count(server.db)
    r = server.client.post("/v1/evaluate", content=CASE.read_bytes(), headers={"content-type": "application/yaml"})
    assert r.status_code == 200
    assert _count(server.db) == before + 1
    code, out, _ = run_cli("decisions", "list", "--db", str(server.db), "--format", "json", "--limit", "1")
    assert code == 0
    row = json.loads(out)[0]
    import hashlib
    assert row["input_sha256"] == hashlib.sha256(CASE.read_bytes()).hexdigest()
    assert row["case_id"] == "example-chronic-cyclobenzaprine" and row["endpoint"] == "evaluate"
    assert row["rulebook_digest"] == r.json()["rulebook"]["digest"] and row["edition"] == "mtus-2009"
    assert row["requests"] == [{"index": 0, "decision": "non-certify",
                                "rules_fired": r.json()["determinations"][0]["rules_fired"]}]
    assert row["input_stored"] is False
    code, out, _ = run_cli("decisions", "show", str(row["id"]), "--db", str(server.db))
    assert code == 0 and json.loads(out)["uid"] == row["uid"] and "input" not in json.loads(out)
    code, out, _ = run_cli("decisions", "export", "--db", str(server.db), "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("id,uid,time") and row["uid"] in out
    code, out, _ = run_cli("decisions", "list", "--db", str(server.db), "--format", "csv", "--limit", "1")
    assert code == 0 and out.splitlines()[1].startswith(f"{row['id']},{row['uid']},")
    code, out, _ = run_cli("decisions", "show", row["uid"], "--db", str(server.db), "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 2 and out.splitlines()[1].endswith("non-certify," + " ".join(
        r.json()["determinations"][0]["rules_fired"]))
    code, out, _ = run_cli("decisions", "list", "--db", str(server.db))
    assert code == 0 and row["uid"][:0] + row["input_sha256"][:12] in out
    code, out, _ = run_cli("decisions", "export", "--db", str(server.db))
    assert code == 0 and all(json.loads(line)["uid"] for line in out.splitlines())
    # no case content in the database files nor in the server's log
    blob = b"".join(p.read_bytes() for p in server.db.parent.glob("decisions.db*"))
    for secret in (b"Cyclobenzaprine 7.5mg", b"muscle spasm", b"2013-01-30"):
        assert secret not in blob
    log = server.log_path.read_bytes()
    for secret in (b"Cyclobenzaprine", b"muscle spasm", b"neck pain"):
        assert secret not in log
    code, _, err = run_cli("decisions", "list", "--db", str(server.db.parent / "nope.db"))
    assert code == 2 and "no such decision log" in err


def test_store_inputs_keeps_the_input(tmp_path):
    from mtus_engine.interfaces.service.decisions import DecisionLog, show_decision
    log = DecisionLog(tmp_path / "d.db", store_inputs=True)
    uid = log.record(endpoint="evaluate", raw=b"id: x", content_type="application/yaml",
                     result={"case_id": "x", "rulebook": {"version": "v", "digest": "d", "edition": None},
                             "determinations": [{"request": "Flexeril", "decision": "certify", "rules_fired": ["r"]}]})
    row = show_decision(tmp_path / "d.db", uid)
    assert row["input"] == "id: x" and row["requests"][0]["item"] == "Flexeril"


def _result(i: int, n_requests: int = 2) -> dict:
    return {"case_id": f"c{i}", "rulebook": {"version": "v", "digest": "d", "edition": None},
            "determinations": [{"request": f"item {k}", "decision": "certify", "rules_fired": [f"r{k}"]}
                               for k in range(n_requests)]}


def test_group_commit_keeps_every_row_once(tmp_path):
    """The writer thread commits queued evaluations together: from many threads at once, each one
    gets exactly one row and its requests, in fewer transactions than rows; close() writes what is
    still queued."""
    from concurrent.futures import ThreadPoolExecutor

    from mtus_engine.interfaces.service.decisions import DecisionLog, list_decisions
    db = tmp_path / "d.db"
    log = DecisionLog(db)
    commits = []
    commit = log._commit

    def counting(conn, rows):
        commits.append(len(rows))
        return commit(conn, rows)
    log._commit = counting

    def one(i: int) -> str:
        return log.submit(endpoint="evaluate", raw=f"body {i}".encode(), content_type="application/json",
                          result=_result(i)).result(timeout=30)
    with ThreadPoolExecutor(16) as pool:
        uids = list(pool.map(one, range(400)))
    queued = [log.submit(endpoint="evaluate", raw=b"late", content_type=None, result=_result(400 + i))
              for i in range(50)]
    log.close()  # a graceful stop: the queued rows are written before the writer ends
    assert all(f.done() and f.exception() is None for f in queued)
    assert len(set(uids)) == 400
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT uid) FROM decisions").fetchone() == (450, 450)
        # each evaluation's requests in its own row (decisions.requests), none in the old table
        assert conn.execute("SELECT SUM(json_array_length(requests)) FROM decisions").fetchone()[0] == 900
        assert conn.execute("SELECT COUNT(*) FROM decision_requests").fetchone()[0] == 0
    assert sum(commits) == 450 and len(commits) < 450
    rows = list_decisions(db, limit=None)
    assert sorted(r["case_id"] for r in rows) == sorted(f"c{i}" for i in range(450))
    with pytest.raises(RuntimeError):
        log.submit(endpoint="evaluate", raw=b"", content_type=None, result=_result(0))


def test_a_bad_row_does_not_take_its_batch_with_it(tmp_path):
    from mtus_engine.interfaces.service.decisions import DecisionLog
    log = DecisionLog(tmp_path / "d.db")
    bad = _result(1)
    bad["determinations"][0]["decision"] = None  # NOT NULL: this one row fails
    futures = [log.submit(endpoint="evaluate", raw=b"x", content_type=None, result=r)
               for r in (_result(0), bad, _result(2))]
    # the event loop's path: one transaction on the calling thread, each row's uid or error
    outcomes = log.write_now([{"endpoint": "evaluate", "raw": b"y", "content_type": None, "result": r}
                              for r in (_result(3), bad, _result(4))])
    log.close()
    assert futures[0].exception() is None and futures[2].exception() is None
    assert isinstance(futures[1].exception(), sqlite3.IntegrityError)
    assert isinstance(outcomes[1], sqlite3.IntegrityError) and all(isinstance(o, str) for o in outcomes[::2])
    assert _count(tmp_path / "d.db") == 4


def test_a_log_from_before_the_requests_column_reads_back_and_takes_new_rows(tmp_path):
    """A log written with one row per request in decision_requests: opened by the service it gains
    decisions.requests; old and new rows read back alike (list, show, export)."""
    from mtus_engine.interfaces.service.decisions import DecisionLog, export_decisions, list_decisions, show_decision
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE decisions (id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
                endpoint TEXT NOT NULL, case_id TEXT, input_sha256 TEXT NOT NULL, content_type TEXT,
                rulebook_version TEXT NOT NULL, rulebook_digest TEXT NOT NULL, edition TEXT,
                edition_chosen INTEGER NOT NULL DEFAULT 0, input BLOB);
            CREATE TABLE decision_requests (decision_id INTEGER NOT NULL REFERENCES decisions(id) ON DELETE CASCADE,
                idx INTEGER NOT NULL, decision TEXT NOT NULL, rules_fired TEXT NOT NULL, item TEXT,
                PRIMARY KEY (decision_id, idx));
            INSERT INTO decisions VALUES (1, 'u-old', '2026-01-01T00:00:00+00:00', 'evaluate', 'c0', 'ab', NULL,
                'v', 'd', NULL, 0, NULL);
            INSERT INTO decision_requests VALUES (1, 0, 'certify', '["r0"]', NULL), (1, 1, 'certify', '["r1"]', NULL);
        """)
    old_rows = list_decisions(db)  # read before the migration: no requests column yet
    assert old_rows[0]["requests"][1] == {"index": 1, "decision": "certify", "rules_fired": ["r1"]}
    log = DecisionLog(db)
    uid = log.write_now([{"endpoint": "evaluate", "raw": b"x", "content_type": None, "result": _result(1)}])[0]
    log.close()
    rows = list_decisions(db)
    assert [r["uid"] for r in rows] == [uid, "u-old"]
    assert rows[0]["requests"] == old_rows[0]["requests"]  # same shape, whichever table holds them
    assert rows[1] == old_rows[0]
    assert show_decision(db, uid)["requests"] == rows[0]["requests"]
    out = io.StringIO()
    assert export_decisions(db, "csv", out) == 2
    assert out.getvalue().splitlines()[1:] == [
        "1,u-old,2026-01-01T00:00:00+00:00,evaluate,c0,ab,v,d,,0,0,certify,r0",
        "1,u-old,2026-01-01T00:00:00+00:00,evaluate,c0,ab,v,d,,0,1,certify,r1",
        f"2,{uid},{rows[0]['time']},evaluate,c1,{rows[0]['input_sha256']},v,d,,0,0,certify,r0",
        f"2,{uid},{rows[0]['time']},evaluate,c1,{rows[0]['input_sha256']},v,d,,0,1,certify,r1"]


def test_the_event_loop_never_waits_for_another_writers_lock(tmp_path):
    """write_now(wait=False) while another connection holds the write lock: Busy at once, nothing
    written; once the lock is free the same rows go in once."""
    from mtus_engine.interfaces.service.decisions import Busy, DecisionLog
    db = tmp_path / "d.db"
    log = DecisionLog(db)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    evals = [{"endpoint": "evaluate", "raw": b"x", "content_type": None, "result": _result(i)} for i in range(3)]
    t0 = time.monotonic()
    with pytest.raises(Busy):
        log.write_now(evals, wait=False)
    assert time.monotonic() - t0 < 0.5  # no busy-handler sleep (30 s timeout otherwise)
    other.execute("COMMIT")
    other.close()
    assert all(isinstance(u, str) for u in log.write_now(evals, wait=False))
    log.close()
    assert _count(db) == 3


def _count(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]


def test_serve_refuses_non_loopback_without_token():
    code, _, err = run_cli("serve", "--host", "0.0.0.0")
    assert code == 2 and "--token" in err
    code, _, err = run_cli("serve", "--db", "/nonexistent-dir/decisions.db")
    assert code == 2 and "cannot open the decision log" in err


def test_page_headers_allow_only_this_server(server):
    r = server.client.get("/")
    assert r.status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    for asset in ("/static/app.js", "/static/style.css"):
        assert server.client.get(asset).status_code == 200
    assert "http" not in r.text.split("<body", 1)[0].replace('href="/static', "")  # no external asset


def test_two_workers_token_and_a_killed_worker_lose_nothing(tmp_path):
    """Concurrent workers, one SIGKILLed mid-load: every answered evaluation has exactly one row and
    the database passes SQLite's integrity check."""
    db = tmp_path / "d.db"
    with ServerProcess(["--db", str(db), "--workers", "2", "--token", "s3cret"],
                       log_path=tmp_path / "server.log") as srv:
        auth = {"Authorization": "Bearer s3cret", "content-type": "application/yaml"}
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.post("/v1/evaluate", content=CASE.read_bytes(),
                          headers={"content-type": "application/yaml"}).status_code == 401
            assert c.post("/v1/evaluate", content=CASE.read_bytes(),
                          headers={**auth, "Authorization": "Bearer wrong"}).status_code == 401
            assert c.get("/healthz").status_code == 200
            assert c.get("/").status_code == 200  # the page itself is open; what it posts is not
            assert c.post("/", data={"document": CASE.read_text()}).status_code == 401
            page = c.post("/", data={"document": CASE.read_text(), "token": "s3cret"})
            assert page.status_code == 200 and 'data-decision="non-certify"' in page.text
            assert c.post("/ui/evaluate", content=CASE.read_bytes()).status_code == 401
        ok = []
        failed = []
        lock = threading.Lock()
        deadline = time.monotonic() + 60

        def client(n: int) -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                for _ in range(n):
                    if time.monotonic() > deadline:
                        return
                    try:
                        r = c.post("/v1/evaluate", content=CASE.read_bytes(), headers=auth)
                    except httpx.HTTPError:
                        with lock:
                            failed.append(1)
                        continue
                    with lock:
                        (ok if r.status_code == 200 else failed).append(1)

        threads = [threading.Thread(target=client, args=(25,)) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        workers = srv.workers()
        assert len(workers) >= 2
        os.kill(workers[0], signal.SIGKILL)
        for t in threads:
            t.join()
    assert len(ok) >= 100
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT uid) FROM decisions WHERE endpoint = 'evaluate'").fetchone()
        orphans = conn.execute("SELECT COUNT(*) FROM decisions WHERE requests IS NULL "
                               "OR json_array_length(requests) = 0").fetchone()[0]
    # every answered evaluation is recorded once; a request cut off by the kill may be recorded
    # without its answer having reached the client (at most one in flight per client)
    assert rows[0] == rows[1]
    assert len(ok) <= rows[0] <= len(ok) + len(failed)
    assert orphans == 0


def test_evaluate_does_not_import_the_service_stack():
    import subprocess
    import sys
    code = ("import sys\nfrom mtus_engine.interfaces.cli import main\n"
            f"sys.argv = ['mtus', 'evaluate', {str(CASE)!r}, '--format', 'json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "bad = sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'fhir', 'httpx') if m in sys.modules)\n"
            "print('IMPORTED', bad, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "IMPORTED []" in out.stderr, out.stderr[-500:]


def test_evaluation_time_is_bounded():
    import asyncio

    from mtus_engine.interfaces.service.app import BadInput, Config, Service
    service = Service(Config(timeout=0.2))
    with pytest.raises(BadInput) as caught:
        asyncio.run(service.run(time.sleep, 2))
    assert caught.value.status == 503 and "longer than 0.2 s" in caught.value.message
    assert asyncio.run(service.run(lambda: 42)) == 42  # the pool goes on


def test_an_internal_error_is_500_and_logs_no_content(caplog):
    """In process: an unexpected failure answers 500 and is logged by its type only, never its message."""
    import asyncio
    import logging

    from mtus_engine.interfaces.service.app import Config, create_app
    app = create_app(Config())
    service = app.state.service

    def boom(*_args, **_kwargs):
        raise RuntimeError("patient John Q. Secret, 52, cyclobenzaprine")
    service.evaluate_bytes = boom

    async def calls():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
            r = await client.post("/v1/evaluate", content=CASE.read_bytes(),
                                  headers={"content-type": "application/yaml"})
            ok = await client.get("/healthz")
        return r, ok
    with caplog.at_level(logging.DEBUG):
        r, ok = asyncio.run(calls())
    assert r.status_code == 500 and r.json() == {"error": "internal error (RuntimeError)"}
    assert ok.status_code == 200
    assert "Secret" not in caplog.text and "RuntimeError" in caplog.text


def _group_cpu(pgid: int) -> dict[int, float]:
    """CPU seconds used so far by each live process of a process group (the server and its children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "pid (comm)": state ppid pgrp ...
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def test_a_timed_out_letter_stops_working(tmp_path):
    """A letter that takes longer than --timeout to read answers 503; its reader process is killed,
    so no core keeps working on it, and the server goes on serving letters."""
    slow = (LETTERS[0].read_bytes() + b"\n") * 200  # seconds of parsing (superlinear in length)
    with ServerProcess(["--timeout", "0.5"], log_path=tmp_path / "server.log") as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            ok = c.post("/v1/evaluate", content=LETTERS[0].read_bytes(),
                        headers={"content-type": "text/plain"}, params={"name": LETTERS[0].name})
            assert ok.status_code == 200
            t0 = time.monotonic()
            r = c.post("/v1/evaluate", content=slow, headers={"content-type": "text/plain"})
            took = time.monotonic() - t0
            assert r.status_code == 503 and "longer than 0.5 s" in r.json()["error"]
            assert took < 2.0
            before = _group_cpu(srv.proc.pid)
            time.sleep(1.5)
            after = _group_cpu(srv.proc.pid)
            busy = sum(after[p] - before[p] for p in after if p in before)
            assert busy < 0.5, f"{busy:.2f} s of CPU spent after the 503: the work goes on"
            again = c.post("/v1/evaluate", content=LETTERS[0].read_bytes(),
                           headers={"content-type": "text/plain"}, params={"name": LETTERS[0].name})
            assert again.status_code == 200 and again.content == ok.content


def test_answer_bytes_are_the_cli_json_encoded():
    """The service answers to_json_bytes; the CLI prints to_json: the same UTF-8, whichever encoder
    ran (orjson, or json.dumps where orjson would differ: a short negative exponent, an int key)."""
    from mtus_engine.interfaces.render import to_json, to_json_bytes
    for data in ({"a": "Flexeril – 7.5 mg ✓", "b": [1, 2.5, None, True]}, {"x": 1e-7}, {1: "int key"},
                 {"big": 2 ** 70}, [], {"error": "café"}):
        assert to_json_bytes(data) == to_json(data).encode("utf-8")
        assert to_json_bytes(data).endswith(b"\n")


def _raw_http(port: int, payload: bytes, answers: int, timeout: float = 30) -> list[tuple[bytes, dict, bytes]]:
    """Send raw bytes on one connection; read `answers` HTTP/1.1 answers (status line, headers, body)."""
    import socket
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        buf = b""
        while len(out) < answers:
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, "connection closed early"
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            status, *lines = head.split(b"\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(b":", 1) for ln in lines)}
            n = int(headers[b"content-length"])
            while len(buf) < n:
                chunk = s.recv(65536)
                assert chunk, "connection closed early"
                buf += chunk
            out.append((status, headers, buf[:n]))
            buf = buf[n:]
        if answers and out[-1][1].get(b"connection") == b"close":
            assert s.recv(10) == b""  # and the server closed it
    return out


def test_the_protocol_fast_path_answers_what_the_asgi_path_answers(tmp_path):
    """POST /v1/evaluate of a small case is answered by the HTTP protocol itself (no ASGI task):
    the same status, body and content type as the ASGI path (a chunked body goes there), logged
    once before the answer; pipelined requests answered in order; Connection: close honoured; a
    wrong token, a letter and other paths still go through the app."""
    import asyncio

    import uvicorn

    from mtus_engine.interfaces.service.app import Config, create_app
    from mtus_engine.interfaces.service.launch import free_port
    from mtus_engine.interfaces.service.protocol import protocol_name
    if "HttpTools" not in protocol_name():
        pytest.skip("httptools is not installed")
    db = tmp_path / "d.db"
    app = create_app(Config(db=str(db), token="s3cret"))
    service = app.state.service
    fast = []
    answer = service.fast_answer

    def counting(*args):
        fast.append(1)
        return answer(*args)
    service.fast_answer = counting
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol_name(), log_level="warning", access_log=False,
                            server_header=False, proxy_headers=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(srv.serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not srv.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        body = CASE.read_bytes()
        auth = b"Authorization: Bearer s3cret\r\n"

        def post(extra: bytes = b"", data: bytes = body, ctype: bytes = b"application/yaml", auth: bytes = auth) -> bytes:
            return (b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype + b"\r\n" + auth + extra
                    + b"Content-Length: %d\r\n\r\n" % len(data) + data)
        chunked = (b"POST /v1/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\n" + auth
                   + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        (s1, h1, b1), = _raw_http(port, post(), 1)
        assert fast == [1]
        (s2, h2, b2), = _raw_http(port, chunked, 1)
        assert fast == [1]  # the chunked body took the ASGI path
        assert s1 == s2 == b"HTTP/1.1 200 OK" and b1 == b2 and h1[b"content-type"] == h2[b"content-type"]
        code, out, _ = run_cli("evaluate", str(CASE), "--format", "json")
        assert b1 == out.encode()  # byte for byte the CLI's
        # three pipelined in one write: answered in order (the second waits behind the first)
        bad = b"id: [unclosed"
        answers = _raw_http(port, post() + post(data=bad) + post(b"Connection: close\r\n"), 3)
        assert [a[0].split(b" ")[1] for a in answers] == [b"200", b"422", b"200"]
        assert answers[0][2] == b1 and answers[2][2] == b1 and "error" in json.loads(answers[1][2])
        assert answers[2][1][b"connection"] == b"close"
        assert len(fast) >= 2
        n = len(fast)
        (s, _, _), = _raw_http(port, post(auth=b""), 1)
        assert s.startswith(b"HTTP/1.1 401") and len(fast) == n  # refused by the app's guard
        (s, _, b), = _raw_http(port, post(data=LETTERS[0].read_bytes(), ctype=b"text/plain"), 1)
        assert s.startswith(b"HTTP/1.1 200") and len(fast) == n  # letters: a reader process, under --timeout
    finally:
        srv.should_exit = True
        thread.join(30)
    # every 200 of an evaluation logged once (the 422 is not an evaluation)
    assert _count(db) == 5  # one, chunked, two pipelined, the letter


def test_row_time_is_isoformat_utc_microseconds():
    """The log's cheap timestamps read as datetime.isoformat(timespec="microseconds") in UTC."""
    import datetime as dt

    from mtus_engine.interfaces.service.decisions import _now
    for _ in range(3):
        before = dt.datetime.now(dt.timezone.utc)
        stamp = _now()
        after = dt.datetime.now(dt.timezone.utc)
        parsed = dt.datetime.fromisoformat(stamp)
        assert parsed.isoformat(timespec="microseconds") == stamp
        assert before - dt.timedelta(milliseconds=1) <= parsed <= after + dt.timedelta(milliseconds=1)
        time.sleep(0.6)  # across a second's boundary at least once


@pytest.mark.parametrize("restart", [True, False])
def test_the_wal_starts_over_under_writes_that_never_pause(tmp_path, monkeypatch, restart):
    """Commits back to back (as two busy workers make them): PASSIVE checkpoints alone never let
    the WAL start over; past WAL_RESTART_BYTES a RESTART checkpoint does, and no row is lost."""
    from mtus_engine.interfaces.service.decisions import Busy, DecisionLog
    db = tmp_path / "d.db"
    monkeypatch.setattr(DecisionLog, "WAL_RESTART_BYTES", 256 * 1024 if restart else 1 << 40)
    log = DecisionLog(db)
    log.CHECKPOINT_SECONDS = 0.05
    other = DecisionLog(db)  # a second worker, writing in the gaps of the first
    evals = [{"endpoint": "evaluate", "raw": b"x", "content_type": None, "result": _result(i)} for i in range(8)]
    written = 0
    largest = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for writer in (log, other):
            try:
                written += len(writer.write_now(evals, wait=False))
            except Busy:
                pass
        wal = tmp_path / "d.db-wal"
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        time.sleep(0.0005)  # a loop turn's other work between two commits
    log.close()
    other.close()
    assert _count(db) == written and written > 1000
    # without starting over, every commit's pages stay in the WAL: several KB a row
    if restart:
        assert largest < 2048 * written, (largest, written)
    else:
        assert largest > 2048 * written, (largest, written)  # what the restart prevents (the test can fail)


def test_the_writer_thread_reports_a_lock_held_past_its_timeout(tmp_path):
    """The writer thread (what-if, CDS Hooks, the page) waits for the write lock up to its busy
    timeout; past it each queued evaluation gets the error and the thread goes on writing."""
    from mtus_engine.interfaces.service.decisions import DecisionLog
    db = tmp_path / "d.db"
    log = DecisionLog(db)
    log._connect_plain = log._connect

    def short_timeout():
        conn = log._connect_plain()
        conn.execute("PRAGMA busy_timeout = 100")
        return conn
    log._connect = short_timeout
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    fut = log.submit(endpoint="whatif", raw=b"x", content_type=None, result=_result(0))
    assert isinstance(fut.exception(timeout=30), sqlite3.OperationalError)
    other.execute("COMMIT")
    other.close()
    assert isinstance(log.submit(endpoint="whatif", raw=b"y", content_type=None, result=_result(1)).result(timeout=30), str)
    log.close()
    assert _count(db) == 1


def test_a_row_retried_alone_waits_for_the_lock_a_bounded_time(tmp_path, monkeypatch):
    """After a batch fails for another reason, each row is committed alone; while another worker
    holds the write lock then, a row waits for it no longer than a blocked commit would, and
    gets the lock error as its outcome (never an endless wait holding the event loop)."""
    from mtus_engine.interfaces.service.decisions import DecisionLog
    db = tmp_path / "d.db"
    log = DecisionLog(db)
    monkeypatch.setattr(DecisionLog, "ROW_BUSY_GIVE_UP", 0.2, raising=False)
    real = DecisionLog._commit

    def batch_fails(conn, rows):
        if len(rows) > 1:
            raise sqlite3.OperationalError("disk I/O error")  # the batch fails for its own reason
        return real(conn, rows)
    monkeypatch.setattr(DecisionLog, "_commit", staticmethod(batch_fails))
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    evals = [{"endpoint": "evaluate", "raw": b"%d" % i, "content_type": None, "result": _result(i)} for i in range(2)]
    out: list = []
    writer = threading.Thread(target=lambda: out.extend(log.write_now(evals, wait=False)), daemon=True)
    writer.start()
    try:
        writer.join(10)
        assert not writer.is_alive(), "a row waited for the write lock without end"
    finally:
        other.execute("COMMIT")
        other.close()
        writer.join(10)
    assert len(out) == 2 and all(isinstance(o, sqlite3.OperationalError) and "locked" in str(o) for o in out)
    log.close()
    assert _count(db) == 0


@pytest.mark.parametrize("auth, ok", [
    (b"Bearer s3cret", True), (b"bearer  s3cret ", True), (None, False), (b"", False), (b"Bearer", False),
    (b"Bearer s3cre", False), (b"Bearer s3crets", False), (b"Basic s3cret", False), (b"s3cret", False),
])
def test_one_bearer_check_for_the_guard_and_both_fast_paths(auth, ok):
    """The Guard, the raw /v1/evaluate handler and the protocol's fast path share one check."""
    from mtus_engine.interfaces.service.app import Service, _bearer_ok
    assert _bearer_ok(b"s3cret", auth) is ok
    service = Service.__new__(Service)     # fast_accepts reads only these two
    service._token, service._fast_limit = b"s3cret", 1024
    headers = [(b"content-type", b"application/json"), (b"content-length", b"10")]
    if auth is not None:
        headers.append((b"authorization", auth))
    assert service.fast_accepts(headers) == ("application/json" if ok else False)
