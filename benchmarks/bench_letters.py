"""Letter throughput: PDF text reading, extraction from text, and `mtus regress` over the real
corpus and over many letters made by varying the seed ones.

Prints figures only. Run: python benchmarks/bench_letters.py [--letters 10000] [--compare-pypdf]
"""

from __future__ import annotations

import argparse
import json
import os
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

from mtus_engine.letters.letter import letter_to_case, parse_letter, read_letter  # noqa: E402

SEEDS = [p.read_text() for p in sorted((ROOT / "cases" / "letters").glob("*.txt"))]
REAL_DIR = ROOT / "cases" / "letters" / "real"
REAL_PDFS = sorted(REAL_DIR.glob("*.pdf"))


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


def pdf_read_rate() -> list[str]:
    """Read every real PDF once (one core): letters/s and pages/s."""
    t0, c0 = time.perf_counter(), time.process_time()
    texts = [read_letter(p) for p in REAL_PDFS]
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"PDF text reading (read_letter, PDFium), one core: {len(texts) / dt:,.0f} letters/s wall, "
          f"{len(texts) / cpu:,.0f} per CPU second ({len(texts)} real letters in {dt:.2f} s)")
    return texts


def pypdf_rate(n: int = 10) -> None:
    """The old backend on the first n letters, for comparison."""
    import io

    from pypdf import PdfReader
    t0 = time.perf_counter()
    for p in REAL_PDFS[:n]:
        reader = PdfReader(io.BytesIO(p.read_bytes()))
        if reader.is_encrypted:
            reader.decrypt("")
        "\n\n".join(page.extract_text() or "" for page in reader.pages)
    dt = time.perf_counter() - t0
    print(f"  for comparison, pypdf: {n / dt:,.1f} letters/s ({n} letters in {dt:.2f} s)")


def extraction_rate(texts: list[str], seconds: float = 3.0) -> None:
    """parse_letter + letter_to_case from text, one core, over the given letters round robin."""
    good = []
    for i, t in enumerate(texts):
        try:
            parse_letter(t, f"{i}.pdf")
            good.append(t)
        except Exception:  # noqa: BLE001 - a letter the extractor refuses is not timed
            pass
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        for i, text in enumerate(good):
            letter_to_case(parse_letter(text, f"{i}.pdf"), f"l{i}")
            n += 1
    rate = n / (time.perf_counter() - t0)
    cpu_rate = n / (time.process_time() - c0)   # per CPU second: what a core gives when it is free
    print(f"extraction from text (parse_letter + letter_to_case), one core, {len(good)} real letters: "
          f"{rate:,.0f} letters/s wall, {cpu_rate:,.0f} per CPU second (target >= 200)")


def regress_corpus(workers: int | None, rounds: int = 3) -> None:
    """`mtus regress cases/letters/real` end to end (a fresh process, PDFs included): best of rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "mtus_engine", "regress", str(REAL_DIR), "--format", "json",
               "-o", str(out), "--quiet"] + (["--workers", str(workers)] if workers else [])
        times, cpu = [], []
        for _ in range(rounds):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=False)
            times.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        s = json.loads(out.read_text())["summary"]
    label = f"--workers {workers}" if workers else f"default workers ({len(os.sched_getaffinity(0))} CPUs)"
    # CPU seconds do not depend on what else the machine runs; wall seconds do
    print(f"regress the real corpus ({s['letters']} letters, {s['items']} items), {label}: "
          f"best {min(times):.1f} s wall of {rounds} (target < 10 s), {min(cpu):.1f} CPU s; "
          f"MTUS-cited coverage {s['coverage']}, balanced accuracy {s['mtus']['balanced_accuracy']}; "
          f"load average {os.getloadavg()[0]:.1f}")


def regress_synthetic(sizes: list[int]) -> None:
    rnd = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            d = Path(tmp) / f"letters{size}"
            d.mkdir()
            for i in range(size):
                (d / f"{i:06d}.txt").write_text(vary(SEEDS[i % len(SEEDS)], rnd))
            out = Path(tmp) / f"report{size}.json"
            cmd = [sys.executable, "-m", "mtus_engine", "regress", str(d), "--workers", "2", "--format", "json",
                   "-o", str(out), "--quiet"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=False)
            dt = time.perf_counter() - t0
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            summary = json.loads(out.read_text())["summary"]
            print(f"regress {size:,} varied seed letters --workers 2: {dt:.1f} s ({size / dt:,.0f} letters/s; "
                  f"target 10,000 in < 60 s); peak RSS of any process {max(peak, before) / 1024:.0f} MiB; "
                  f"items {summary['items']:,}, agreement {summary['agreement']}, errors {summary['failed_letters']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--letters", type=int, default=10_000,
                    help="also regress this many varied seed letters (0: skip)")
    ap.add_argument("--compare-pypdf", action="store_true", help="also time pypdf on 10 real letters")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the real-corpus regress (best is shown)")
    args = ap.parse_args()

    texts = pdf_read_rate()
    if args.compare_pypdf:
        pypdf_rate()
    extraction_rate(texts)
    regress_corpus(None, args.rounds)
    regress_corpus(1, args.rounds)
    if args.letters:
        regress_synthetic(sorted({min(2000, args.letters), args.letters}))


if __name__ == "__main__":
    main()
