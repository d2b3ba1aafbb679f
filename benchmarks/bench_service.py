"""Load on `mtus serve` over loopback: requests/s and p50/p99 latency at 1, 16 and 64 concurrent
clients with 1 and 2 workers, against in-process API throughput on the same cases; the server's CPU
per request, split into HTTP stack, parse, engine, render and decision log; and the decision log
checked after each run (no lost or duplicated rows).

The load comes from `wrk` (Debian package wrk) with a Lua script rotating varied bodies, where it is
installed: a C client that leaves the cores to the server. Without it, a lean asyncio keep-alive
client on raw sockets (which itself takes a good share of a core).

Bounded: each point sends at most --requests requests per client thread and stops after --seconds;
only 127.0.0.1. Prints figures; asserts nothing.

    python benchmarks/bench_service.py [--requests 20000] [--seconds 10] [--workers 1,2] [--clients 1,16,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_items import synthetic_request  # noqa: E402
from mtus_engine.evaluation.engine import Engine  # noqa: E402
from mtus_engine.interfaces.render import to_json, to_json_bytes  # noqa: E402
from mtus_engine.interfaces.service.documents import read_document  # noqa: E402
from mtus_engine.interfaces.service.launch import ServerProcess  # noqa: E402


def bodies(n: int, seed: int = 11) -> list[bytes]:
    """Varied one-request cases as JSON (no two alike, so nothing is answered from a cache)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        req = synthetic_request(rnd)
        case = {"id": f"bench-{i}", "patient": {"age": rnd.randint(25, 70)}, "request_date": "2015-06-01",
                "diagnoses": ["low back pain"], "findings": {"acute_exacerbation": rnd.random() < 0.5},
                "medications": [{"name": "tramadol"}], "requests": [req]}
        out.append(json.dumps(case).encode())
    return out


_ENGINE = None


def in_process(cases: list[bytes], seconds: float) -> float:
    """Evaluations/s of the same work without HTTP: read the body, evaluate, render the JSON."""
    global _ENGINE
    engine = _ENGINE = _ENGINE or Engine()
    for raw in cases[:20]:
        to_json(engine.evaluate(read_document(raw, "application/json")).to_json_data())
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and n < len(cases):
        to_json(engine.evaluate(read_document(cases[n], "application/json")).to_json_data())
        n += 1
    return n / (time.perf_counter() - t0)


async def _client(port: int, queue: list[bytes], latencies: list[float], errors: list[int], deadline: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue and time.perf_counter() < deadline:
            body = queue.pop()
            head = (f"POST /v1/evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if b" 200 " not in status_line:
                errors.append(1)
    finally:
        writer.close()


async def load(port: int, cases: list[bytes], clients: int, seconds: float) -> dict:
    queue = list(reversed(cases))
    latencies: list[float] = []
    errors: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(*[_client(port, queue, latencies, errors, t0 + seconds) for _ in range(clients)])
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"requests": len(lat), "errors": len(errors), "rps": len(lat) / wall,
            "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")}


WRK_SCRIPT = r"""
local bodies = {}
for line in io.lines(os.getenv("MTUS_BENCH_BODIES")) do bodies[#bodies + 1] = line end
local limit = tonumber(os.getenv("MTUS_BENCH_LIMIT") or "0")
local i, n = 0, 0
local headers = {["Content-Type"] = "application/json"}
local count = 0
function setup(thread) thread:set("offset", count * 7919); count = count + 1 end
function request()
  i = i + 1
  return wrk.format("POST", "/v1/evaluate", headers, bodies[((i + (offset or 0)) % #bodies) + 1])
end
function response(status)
  n = n + 1
  if limit > 0 and n >= limit then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_load(port: int, cases: list[bytes], clients: int, seconds: float, limit: int, tmp: Path) -> dict:
    """One point with wrk: `clients` keep-alive connections on up to 2 threads, bodies rotated."""
    import os
    import subprocess
    (tmp / "bodies.txt").write_bytes(b"\n".join(cases) + b"\n")
    (tmp / "rotate.lua").write_text(WRK_SCRIPT)
    threads = min(2, clients)
    env = {**os.environ, "MTUS_BENCH_BODIES": str(tmp / "bodies.txt"),
           "MTUS_BENCH_LIMIT": str(max(1, limit // threads))}
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                          "-s", str(tmp / "rotate.lua"), f"http://127.0.0.1:{port}/v1/evaluate"],
                         capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout[-300:]} {out.stderr[-300:]}")
    r = json.loads(line[len("RESULT "):])
    return {"requests": r["requests"], "errors": r["errors"], "rps": r["requests"] / (r["duration_us"] / 1e6),
            "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000}


def cpu_split(cases: list[bytes], tmp: Path) -> dict[str, float]:
    """In-process CPU ms per request of each stage of POST /v1/evaluate (this thread's CPU time):
    parse (body -> case), engine (evaluate -> result data), render (data -> JSON bytes), log
    (the decision log's rows, committed 8 at a time as a worker commits one loop turn's under load)."""
    from mtus_engine.interfaces.service.decisions import DecisionLog
    engine = _ENGINE or Engine()
    log = DecisionLog(tmp / "split.db")
    clock = time.thread_time
    parse = evaluate = render = record = 0.0
    n = min(len(cases), 400)
    pending = []
    for raw in cases[:n]:
        t0 = clock()
        case = read_document(raw, "application/json")
        t1 = clock()
        data = engine.evaluate(case).to_json_data()
        t2 = clock()
        to_json_bytes(data)
        t3 = clock()
        pending.append({"endpoint": "evaluate", "raw": raw, "content_type": "application/json", "result": data})
        if len(pending) == 8:  # as a worker commits the evaluations of one loop turn
            log.write_now(pending, wait=False)
            pending = []
        t4 = clock()
        parse, evaluate, render, record = parse + t1 - t0, evaluate + t2 - t1, render + t3 - t2, record + t4 - t3
    log.close()
    return {k: 1000 * v / n for k, v in (("parse", parse), ("engine", evaluate), ("render", render), ("log", record))}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc): what the server spent,
    whatever else shares the machine."""
    import os
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rows(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute("SELECT COUNT(*), COUNT(DISTINCT uid) FROM decisions").fetchone()


def main() -> None:
    import os
    import shutil
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000, help="Most requests per point.")
    ap.add_argument("--seconds", type=float, default=10.0, help="Most seconds per point.")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--no-db", action="store_true", help="Run the server without the decision log.")
    ap.add_argument("--log", choices=["on", "off", "both"], default=None,
                    help="The decision log on (default), off (as --no-db), or both: each point with and "
                         "without it, one after the other, in the same run.")
    ap.add_argument("--client", choices=["auto", "wrk", "python"], default="auto",
                    help="Load generator: wrk where installed (auto), or the asyncio client.")
    args = ap.parse_args()
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (other work on the machine "
          "shares the cores with the server and the load generator)")
    print(f"load generator: {'wrk (C, Lua script rotating bodies)' if use_wrk else 'asyncio raw-socket client (Python)'}")
    cases = bodies(600)
    base = in_process(cases * 4, min(args.seconds, 5))
    print(f"in-process API (read + evaluate + JSON, one thread): {base:,.0f} evaluations/s")
    with tempfile.TemporaryDirectory() as tmp:
        split = cpu_split(cases, Path(tmp))
    print("in-process CPU ms per request: " + ", ".join(f"{k} {v:.3f}" for k, v in split.items())
          + f" (sum {sum(split.values()):.3f})")
    mode = args.log or ("off" if args.no_db else "on")
    logs = {"on": [True], "off": [False], "both": [True, False]}[mode]
    print(f"{'log':>3} " * (mode == "both") +
          f"{'workers':>7} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'ratio*':>6} {'errors':>6} {'log rows':>8} {'lost':>4} {'dup':>4} {'cpu ms':>7} {'http ms':>7} {'capacity':>9}")
    print("(ratio: to the in-process rate; cpu ms: server CPU per request, all its processes; http ms: cpu ms "
          "less the in-process stages (HTTP stack, event loop, the log's commit syscalls and checkpoints); "
          "capacity: requests/s the workers could serve with a whole core each at that cost)")
    for workers, logged in [(int(w), lg) for w in args.workers.split(",") for lg in logs]:
        args.no_db = not logged
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "decisions.db"
            extra = [] if args.no_db else ["--db", str(db)]
            with ServerProcess([*extra, "--workers", str(workers)]) as srv:
                asyncio.run(load(srv.port, cases[:50] * 2, 4, 10))  # warm every worker
                for clients in [int(c) for c in args.clients.split(",")]:
                    before = rows(db) if not args.no_db else (0, 0)
                    pids = [srv.proc.pid, *srv.workers()]
                    cpu0 = cpu_seconds(pids)
                    if use_wrk:
                        r = wrk_load(srv.port, cases, clients, args.seconds, args.requests, Path(tmp))
                    else:
                        r = asyncio.run(load(srv.port, (cases * (1 + args.requests // len(cases)))[:args.requests],
                                             clients, args.seconds))
                    cpu_ms = 1000 * (cpu_seconds(pids) - cpu0) / max(1, r["requests"])
                    after = rows(db) if not args.no_db else (0, 0)
                    n, distinct = after[0] - before[0], after[1] - before[1]
                    ok = r["requests"] - r["errors"]
                    # wrk counts answers it read; one cut off at its deadline may be logged unanswered
                    lost = max(0, ok - n) if not args.no_db else 0
                    dup = n - distinct if not args.no_db else 0
                    stages = sum(split.values()) - (split["log"] if args.no_db else 0)
                    print(f"{'on' if logged else 'off':>3} " * (mode == "both") + f"{workers:>7} {clients:>7} {r['requests']:>8} {r['rps']:>8,.0f} {r['p50_ms']:>8.1f} "
                          f"{r['p99_ms']:>8.1f} {r['rps'] / base:>6.2f} {r['errors']:>6} "
                          f"{n if not args.no_db else '-':>8} {lost:>4} {dup:>4} {cpu_ms:>7.2f} {cpu_ms - stages:>7.2f} "
                          f"{workers * 1000 / cpu_ms if cpu_ms else float('nan'):>9,.0f}", flush=True)


if __name__ == "__main__":
    main()
