"""The decision log: every evaluation the service makes, in SQLite, for audit.

One row per evaluation (time, endpoint, case id, SHA-256 of the input, rulebook version and digest,
edition) and one row per request (its decision and the rules fired). Case content (the input, the
request items) is stored only when the service runs with --store-inputs: it is medical data.

Each evaluation is written in one transaction, committed before the answer is sent, under a unique
id: several worker processes share the file (WAL mode, busy timeout), and a worker killed mid-write
leaves the database as it was before that transaction.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    case_id TEXT,
    input_sha256 TEXT NOT NULL,
    content_type TEXT,
    rulebook_version TEXT NOT NULL,
    rulebook_digest TEXT NOT NULL,
    edition TEXT,
    edition_chosen INTEGER NOT NULL DEFAULT 0,
    input BLOB
);
CREATE TABLE IF NOT EXISTS decision_requests (
    decision_id INTEGER NOT NULL REFERENCES decisions(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    decision TEXT NOT NULL,
    rules_fired TEXT NOT NULL,
    item TEXT,
    PRIMARY KEY (decision_id, idx)
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions(time);
CREATE INDEX IF NOT EXISTS decisions_case ON decisions(case_id);
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DecisionLog:
    """A connection per thread to one SQLite file shared by every worker."""

    def __init__(self, path: str | Path, *, store_inputs: bool = False):
        self.path = str(path)
        self.store_inputs = store_inputs
        self._local = threading.local()
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable against a killed process
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def record(self, *, endpoint: str, raw: bytes, content_type: str | None, result: dict[str, Any]) -> str:
        """Write one evaluation (its JSON as the API answers it); returns its unique id."""
        uid = str(uuid.uuid4())
        rb = result["rulebook"]
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT INTO decisions (uid, time, endpoint, case_id, input_sha256, content_type, rulebook_version,"
                " rulebook_digest, edition, edition_chosen, input) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (uid, now, endpoint, result.get("case_id"), sha256(raw), content_type, rb["version"], rb["digest"],
                 rb.get("edition"), int(bool(rb.get("edition_chosen"))), raw if self.store_inputs else None))
            rowid = cur.lastrowid
            conn.executemany(
                "INSERT INTO decision_requests (decision_id, idx, decision, rules_fired, item) VALUES (?,?,?,?,?)",
                [(rowid, i, d["decision"], json.dumps(d.get("rules_fired") or []),
                  d["request"] if self.store_inputs else None) for i, d in enumerate(result["determinations"])])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return uid

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# ------------------------------------------------------------------ reading back

def open_readonly(path: str | Path) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def _row(conn: sqlite3.Connection, r: sqlite3.Row, *, with_input: bool = False) -> dict[str, Any]:
    out = {k: r[k] for k in ("id", "uid", "time", "endpoint", "case_id", "input_sha256", "content_type",
                             "rulebook_version", "rulebook_digest", "edition")}
    out["edition_chosen"] = bool(r["edition_chosen"])
    out["requests"] = [
        {"index": q["idx"], "decision": q["decision"], "rules_fired": json.loads(q["rules_fired"]),
         **({"item": q["item"]} if q["item"] is not None else {})}
        for q in conn.execute("SELECT idx, decision, rules_fired, item FROM decision_requests "
                              "WHERE decision_id = ? ORDER BY idx", (r["id"],))]
    out["input_stored"] = r["input"] is not None
    if with_input and r["input"] is not None:
        raw = bytes(r["input"])
        try:
            out["input"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            import base64
            out["input_base64"] = base64.b64encode(raw).decode("ascii")
    return out


def list_decisions(path: str | Path, *, limit: int | None = 50, case_id: str | None = None) -> list[dict]:
    with open_readonly(path) as conn:
        sql = "SELECT * FROM decisions" + (" WHERE case_id = ?" if case_id else "") + " ORDER BY id DESC"
        params: tuple = (case_id,) if case_id else ()
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_row(conn, r) for r in conn.execute(sql, params)]


def show_decision(path: str | Path, key: str) -> dict | None:
    with open_readonly(path) as conn:
        r = conn.execute("SELECT * FROM decisions WHERE uid = ? OR CAST(id AS TEXT) = ?", (key, key)).fetchone()
        return _row(conn, r, with_input=True) if r is not None else None


CSV_HEADER = ["id", "uid", "time", "endpoint", "case_id", "input_sha256", "rulebook_version",
              "rulebook_digest", "edition", "edition_chosen", "request", "decision", "rules_fired"]


def csv_rows(row: dict) -> list[list]:
    """One decision as CSV rows, one per request."""
    return [[row["id"], row["uid"], row["time"], row["endpoint"], row["case_id"], row["input_sha256"],
             row["rulebook_version"], row["rulebook_digest"], row["edition"], int(row["edition_chosen"]),
             q["index"], q["decision"], " ".join(q["rules_fired"])] for q in row["requests"]]


def write_csv(rows: list[dict], out: io.TextIOBase) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerows(csv_rows(row))


def export_decisions(path: str | Path, fmt: str, out: io.TextIOBase) -> int:
    """Every decision, oldest first: JSON lines, or CSV with one row per request."""
    n = 0
    with open_readonly(path) as conn:
        writer = None
        if fmt == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(CSV_HEADER)
        for r in conn.execute("SELECT * FROM decisions ORDER BY id"):
            row = _row(conn, r)
            n += 1
            if writer is None:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                writer.writerows(csv_rows(row))
    return n
