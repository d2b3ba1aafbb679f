"""Letter extraction rate, and `mtus regress` over many letters made by varying the real ones.

Prints figures only. Run: python benchmarks/bench_letters.py [--letters 10000]
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mtus_engine.letter import letter_to_case, parse_letter  # noqa: E402

REAL = [p.read_text() for p in sorted((ROOT / "cases" / "letters").glob("*.txt"))]


def vary(text: str, rnd: random.Random) -> str:
    """A plausible new letter: other ages, quantities, dates; sometimes the other outcome."""
    text = re.sub(r"\b(\d{2}) year old", lambda m: f"{rnd.randint(25, 70)} year old", text)
    text = re.sub(r"#\s?(\d+)", lambda m: f"#{rnd.choice([20, 30, 60, 90, 120])}", text)
    text = re.sub(r"Qty (\d+)", lambda m: f"Qty {rnd.choice([20, 30, 60, 90])}", text)
    if rnd.random() < 0.1:
        text = text.replace(": Upheld", ": Overturned", 1)
    if rnd.random() < 0.3:
        text = text.replace("no evidence found", "evidence found", 1)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--letters", type=int, default=10_000)
    args = ap.parse_args()

    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 3:
        for i, text in enumerate(REAL):
            letter_to_case(parse_letter(text, f"{i}.txt"), f"l{i}")
            n += 1
    rate = n / (time.perf_counter() - t0)
    print(f"extraction (parse_letter + letter_to_case), one core: {rate:,.0f} letters/s (target >= 200)")

    rnd = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted({min(2000, args.letters), args.letters}):
            d = Path(tmp) / f"letters{size}"
            d.mkdir()
            for i in range(size):
                (d / f"{i:06d}.txt").write_text(vary(REAL[i % len(REAL)], rnd))
            out = Path(tmp) / f"report{size}.json"
            cmd = [sys.executable, "-m", "mtus_engine", "regress", str(d), "--workers", "2", "--format", "json",
                   "-o", str(out), "--quiet"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=False)
            dt = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            import json
            summary = json.loads(out.read_text())["summary"]
            print(f"regress {size:,} letters --workers 2: {dt:.1f} s ({size / dt:,.0f} letters/s; target 10,000 in < 60 s); "
                  f"peak RSS of any process {max(peak, before) / 1024:.0f} MiB; "
                  f"items {summary['items']:,}, agreement {summary['agreement']}, "
                  f"balanced accuracy {summary['balanced_accuracy']}, errors {summary['failed_letters']}")


if __name__ == "__main__":
    main()
