"""The decision log: every evaluation the service makes, in SQLite, for audit.

One row per evaluation: time, endpoint, case id, SHA-256 of the input, rulebook version and digest,
edition, and in one compact JSON column each request's decision and the rules fired
(``[["certify", ["rule.id", ...]], ...]``; a third element, the request item, with --store-inputs).
Logs written before that column existed keep a row per request in decision_requests; both read back
the same. Case content (the input, the request items) is stored only when the service runs with
--store-inputs: it is medical data.

Each evaluation is committed before its answer is sent, under a unique id. A worker's event loop
commits the evaluations of one turn in one transaction (row, then write_rows: Service._hand_off);
other callers queue them for a writer thread that commits whatever has queued up in one transaction (group commit): under load
one commit serves many answers. Several worker processes share the file (WAL mode,
synchronous=NORMAL: a commit is not fsynced, the checkpoint is; a killed process loses nothing
committed, a power loss may lose the last commits, neither corrupts the file). A worker killed
mid-write leaves the database as it was before that transaction, and its unanswered requests were
never promised a row. A graceful stop writes everything queued before the writer ends.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path
from concurrent.futures import Future
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
    input BLOB,
    requests TEXT
);
-- logs written before decisions.requests: one row per request (read back, no longer written)
CREATE TABLE IF NOT EXISTS decision_requests (
    decision_id INTEGER NOT NULL REFERENCES decisions(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    decision TEXT NOT NULL,
    rules_fired TEXT NOT NULL,
    item TEXT,
    PRIMARY KEY (decision_id, idx)
);
CREATE INDEX IF NOT EXISTS decisions_case ON decisions(case_id);
"""
# No index on time (older logs have one): nothing reads by time, ids follow time closely, and each
# index is one more page written to the WAL by every commit.

INSERT = ("INSERT INTO decisions (uid, time, endpoint, case_id, input_sha256, content_type, rulebook_version,"
          " rulebook_digest, edition, edition_chosen, input, requests) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")


class Busy(Exception):
    """Another connection holds the write lock: nothing was written; try again later."""


def _migrate(conn: sqlite3.Connection) -> None:
    """A log from before decisions.requests gets the column (its old rows keep decision_requests)."""
    if any(r[1] == "requests" for r in conn.execute("PRAGMA table_info(decisions)")):
        return
    try:
        conn.execute("ALTER TABLE decisions ADD COLUMN requests TEXT")
    except sqlite3.OperationalError:  # another worker added it first
        if not any(r[1] == "requests" for r in conn.execute("PRAGMA table_info(decisions)")):
            raise


_second: tuple[int, str] = (-1, "")  # replaced whole: threads read it without a lock


def _now() -> str:
    """The UTC time as datetime.isoformat(timespec="microseconds") writes it, formatted a second at
    a time (the log stamps every row)."""
    global _second
    sec, frac = divmod(time.time_ns() // 1000, 1_000_000)
    second = _second
    if second[0] != sec:
        second = _second = (sec, dt.datetime.fromtimestamp(sec, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{second[1]}.{frac:06d}+00:00"


def _compact(value: Any) -> str:
    import orjson
    return orjson.dumps(value).decode()


class _Uids:
    """Unique ids shaped like UUID4s: 74 random bits drawn once per process, and a counter. Workers
    sharing the database draw their own bits. (uuid4() per row is a getrandom call, which lets the
    log's writer thread take the GIL from the event loop in the middle of a request.)"""

    def __init__(self):
        import itertools
        import os
        rnd = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
        self.prefix = f"{rnd >> 48 & 0xffffffff:08x}-{rnd >> 32 & 0xffff:04x}-4{rnd >> 20 & 0xfff:03x}-" \
                      f"{0x8 | (rnd >> 18 & 0x3):x}{rnd >> 6 & 0xfff:03x}-"
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xffffffffffff:012x}"


def _reset_uids() -> None:
    global _uids
    _uids = _Uids()


_uids = _Uids()
os.register_at_fork(after_in_child=_reset_uids)  # a forked process draws its own bits


def new_uid() -> str:
    return _uids.next()


class DecisionLog:
    """A connection per thread to one SQLite file shared by every worker, and a writer thread."""

    BATCH = 512  # most evaluations in one transaction

    def __init__(self, path: str | Path, *, store_inputs: bool = False):
        self.path = str(path)
        self.store_inputs = store_inputs
        self._local = threading.local()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self._dirty = False
        self._writer_lock = threading.Lock()
        self._closed = False
        with self._connect() as conn:
            conn.executescript(SCHEMA)
            _migrate(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a commit is not fsynced (the checkpoint is): a killed process loses nothing
        # committed; a power loss may drop the last commits, never corrupts the file
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # the WAL file, once started over, is cut back to this size (by the commit that starts it over)
        conn.execute(f"PRAGMA journal_size_limit = {int(self.WAL_RESTART_BYTES)}")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _row(self, endpoint: str, raw: bytes, content_type: str | None, result: dict[str, Any]) -> tuple:
        """One evaluation as the row to insert, uid first (taken from the result now: the caller may
        reuse it). A request without a decision is refused as the database refuses a NULL."""
        rb = result["rulebook"]
        store = self.store_inputs
        requests = []
        for d in result["determinations"]:
            decision = d["decision"]
            if not isinstance(decision, str):
                raise sqlite3.IntegrityError("NOT NULL constraint failed: decision")
            requests.append([decision, d.get("rules_fired") or [], d["request"]] if store
                            else [decision, d.get("rules_fired") or []])
        return (new_uid(), _now(), endpoint, result.get("case_id"), hashlib.sha256(raw).hexdigest(),
                content_type, rb["version"], rb["digest"], rb.get("edition"), int(bool(rb.get("edition_chosen"))),
                raw if store else None, _compact(requests))

    @staticmethod
    def _commit(conn: sqlite3.Connection, rows: list[tuple]) -> None:
        """The rows in one transaction. Busy if the write lock is held elsewhere and this
        connection does not wait for it (nothing written then)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) is not None and exc.sqlite_errorcode & 0xff == sqlite3.SQLITE_BUSY:
                raise Busy() from exc
            raise
        try:
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def record(self, *, endpoint: str, raw: bytes, content_type: str | None, result: dict[str, Any]) -> str:
        """Write one evaluation (its JSON as the API answers it) in its own transaction; returns its
        unique id."""
        row = self._row(endpoint, raw, content_type, result)
        self._commit(self.conn, [row])
        return row[0]

    # ---------------------------------------------------------------- group commit
    def submit(self, *, endpoint: str, raw: bytes, content_type: str | None, result: dict[str, Any]) -> Future:
        """Queue one evaluation for the writer thread; the future holds its unique id once committed
        (or the error that prevented it)."""
        fut: Future = Future()
        try:
            row = self._row(endpoint, raw, content_type, result)
        except sqlite3.Error as exc:
            fut.set_exception(exc)
            return fut
        self._put([row], fut, True)
        return fut

    def _put(self, rows: list[tuple], fut: Future, single: bool) -> None:
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("the decision log is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="mtus-decisions", daemon=True)
                self._writer.start()
                self._start_checkpointer()
            self._queue.put((rows, fut, single))

    def _start_checkpointer(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="mtus-decisions-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    def _write_loop(self) -> None:
        conn = self._connect()
        # the WAL is copied back into the database by _checkpoint_loop, off the path of an
        # answer: an automatic checkpoint after a commit (its fsyncs) held up every answer
        # waiting on that commit, tens to hundreds of ms at the 99th percentile
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                size = len(item[0])
                stop = False
                while size < self.BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                    size += len(nxt[0])
                self._write_batch(conn, batch)
                self._dirty = True
                if stop:
                    return
        finally:
            conn.close()

    # rows retried alone wait for another worker's write lock at most this long in all, as a
    # blocked commit does (busy timeout); then each one still waiting gets the lock error
    ROW_BUSY_GIVE_UP = 30.0

    def _outcomes(self, conn: sqlite3.Connection, groups: list[list[tuple]]) -> list[list]:
        """Commit the groups of rows in one transaction; each row's uid, or the error that kept
        it out (then each row is tried alone: one bad row does not take its batch with it).
        Busy (from a connection that does not wait) before anything is written."""
        try:
            self._commit(conn, [row for rows in groups for row in rows])
            return [[row[0] for row in rows] for rows in groups]
        except Busy:
            raise
        except Exception:  # noqa: BLE001
            outcomes = []
            give_up = time.monotonic() + self.ROW_BUSY_GIVE_UP
            for rows in groups:
                mine = []
                for row in rows:
                    while True:
                        try:
                            self._commit(conn, [row])
                        except Busy as exc:  # the lock went elsewhere between two rows: wait for it
                            if time.monotonic() < give_up:
                                threading.Event().wait(0.001)
                                continue
                            mine.append(sqlite3.OperationalError(f"database is locked ({exc.__cause__})"))
                        except Exception as exc:  # noqa: BLE001
                            mine.append(exc)
                        else:
                            mine.append(row[0])
                        break
                outcomes.append(mine)
            return outcomes

    def write_now(self, evaluations: list[dict[str, Any]], *, wait: bool = True) -> list:
        """Commit several evaluations (each the keyword arguments of submit) in one transaction on
        the calling thread; each one's uid or its error. For an event loop committing the
        evaluations of one turn: no writer thread to wake, no GIL to hand back and forth.
        With ``wait=False`` it never sleeps for the write lock: Busy if another worker holds it
        (nothing written; the loop serves on and tries again)."""
        rows: list = []
        for e in evaluations:
            try:
                rows.append(self.row(**e))
            except sqlite3.Error as exc:
                rows.append(exc)
        return self.write_rows(rows, wait=wait)

    def row(self, *, endpoint: str, raw: bytes, content_type: str | None, result: dict[str, Any]) -> tuple:
        """One evaluation as its row, ready for write_rows (built once, whatever retries follow);
        sqlite3.IntegrityError if the log would refuse it."""
        return self._row(endpoint, raw, content_type, result)

    def write_rows(self, rows: list, *, wait: bool = True) -> list:
        """write_now for rows already built by row() (an exception in place of a row stays its
        outcome). Busy with ``wait=False`` while another worker holds the write lock."""
        with self._writer_lock:
            if self._closed:
                raise RuntimeError("the decision log is closed")
            self._start_checkpointer()
        local = self._local
        conn = getattr(local, "writer", None)
        if conn is None:
            conn = local.writer = self._connect()
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's work
            local.waits = True
        if local.waits != wait:
            conn.execute(f"PRAGMA busy_timeout = {30000 if wait else 0}")
            local.waits = wait
        good = [r for r in rows if not isinstance(r, Exception)]
        done = iter(self._outcomes(conn, [[r] for r in good]))
        self._dirty = True
        return [r if isinstance(r, Exception) else next(done)[0] for r in rows]

    def _write_batch(self, conn: sqlite3.Connection, batch: list) -> None:
        groups = [rows for rows, _, _ in batch]
        try:
            outcomes = self._outcomes(conn, groups)
        except Busy as exc:  # the write lock held elsewhere past the busy timeout: each one's error
            error = sqlite3.OperationalError(f"database is locked ({exc.__cause__})")
            outcomes = [[error] * len(rows) for rows in groups]
        for (_, fut, single), mine in zip(batch, outcomes):
            if not single:
                fut.set_result(mine)
            elif isinstance(mine[0], Exception):
                fut.set_exception(mine[0])
            else:
                fut.set_result(mine[0])

    CHECKPOINT_SECONDS = 1.0
    # Under writes that never pause, a PASSIVE checkpoint never catches up with the WAL's end, so
    # the WAL is never started over and grows without bound (about 4 KB a row). Past this size a
    # RESTART checkpoint holds new commits back until it has copied everything (the loops retry,
    # they do not sleep) and the WAL starts over, truncated to this size.
    WAL_RESTART_BYTES = 64 * 1024 * 1024

    def _checkpoint_loop(self) -> None:
        """Every second with new rows, a PASSIVE checkpoint: it never blocks the writers (of this
        worker or another), and a busy one is simply tried again later; a RESTART one when the
        WAL has grown past WAL_RESTART_BYTES."""
        conn = self._connect()
        wal = self.path + "-wal"
        try:
            while not self._stop.wait(self.CHECKPOINT_SECONDS):
                if self._dirty:
                    self._dirty = False
                    try:
                        big = os.path.getsize(wal) > self.WAL_RESTART_BYTES
                    except OSError:
                        big = False
                    self._checkpoint(conn, "RESTART" if big else "PASSIVE")
            self._checkpoint(conn)
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str = "PASSIVE") -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error:
            pass  # rows are safe in the WAL; the next checkpoint copies them

    def close(self) -> None:
        """Write what is queued, end the writer and the checkpointer, close this thread's connection."""
        with self._writer_lock:
            self._closed = True
            writer = self._writer
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join()
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        for name in ("conn", "writer"):  # this thread's connections
            conn = getattr(self._local, name, None)
            if conn is not None:
                conn.close()
                setattr(self._local, name, None)


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
    packed = r["requests"] if "requests" in r.keys() else None
    if packed is not None:  # [[decision, rules fired(, item)], ...]
        out["requests"] = [{"index": i, "decision": q[0], "rules_fired": q[1], **({"item": q[2]} if len(q) > 2 and q[2] is not None else {})}
                           for i, q in enumerate(json.loads(packed))]
    else:  # a row written before decisions.requests
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
