"""Soak: 100,000 evaluations in one process (throughput, resident memory at 10k and 100k),
then `mtus evaluate --batch` over 100,000 cases with 2 workers. Prints figures only.

Run: python benchmarks/soak.py [--n 100000] [--skip-batch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engine import generate  # noqa: E402
from mtus_engine.evaluation.case import case_to_data  # noqa: E402
from mtus_engine.evaluation.engine import Engine  # noqa: E402


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--skip-batch", action="store_true")
    args = ap.parse_args()
    engine = Engine()
    cases = generate(5000, seed=11)
    marks = {10_000: None, args.n: None}
    start = time.perf_counter()
    for i in range(1, args.n + 1):
        engine.evaluate(cases[i % len(cases)])
        if i in marks:
            marks[i] = (rss_mib(), time.perf_counter() - start)
    for n, (rss, t) in sorted(marks.items()):
        print(f"after {n:>7,} evaluations: RSS {rss:.1f} MiB, {n / t:,.0f} evaluations/s")
    (r10, _), (rn, _) = marks[10_000], marks[args.n]
    print(f"RSS growth 10k -> {args.n // 1000}k: {100 * (rn - r10) / r10:+.1f}% (target < 10%); "
          f"no MemoryError, no MessageObservedException")
    if args.skip_batch:
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "cases.jsonl"
        big = generate(args.n, seed=5)
        with src.open("w") as fh:
            for c in big:
                fh.write(json.dumps(case_to_data(c), default=str) + "\n")
        requests = sum(len(c.requests) for c in big)
        for workers in (1, 2):
            out = Path(tmp) / f"out{workers}.jsonl"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mtus_engine", "evaluate", "--batch", str(src), "--output",
                            str(out), "--workers", str(workers), "--quiet"], check=False, cwd=ROOT)
            dt = time.perf_counter() - t0
            print(f"--batch {args.n:,} cases ({requests:,} requests), --workers {workers}: {dt:.1f} s = "
                  f"{requests / dt:,.0f} requests/s (target >= 8,000 on 2 cores)")
        same = (Path(tmp) / "out1.jsonl").read_bytes() == (Path(tmp) / "out2.jsonl").read_bytes()
        print(f"--workers 1 and 2 byte-identical: {same}")


if __name__ == "__main__":
    main()
