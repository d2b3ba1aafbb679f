"""How a cold start grows with the rulebook: `mtus evaluate CASE --format json` (start-up cache
warm) under the rulebook and under one k times as large (grow_rulebook.py: every drug, class,
modality, derived fact and rule again under another name), against a bare `python -c pass`.
The case asks for the same thing under both: what a start does in proportion to the whole
rulebook, rather than to what the case needs, shows as the difference.

    python benchmarks/bench_startup_growth.py [-n 9] [-k 2] [--case CASE] [--src SRC] [--before OLD/src] [--callgrind]

Each source tree is copied beside each rulebook into a temporary checkout (the rulebook is then
its default, and the plain evaluate's front door is what runs). CPU time (user+sys) of fresh
processes, taken in turn; --callgrind adds instruction counts (valgrind), which load on the
machine does not disturb: the figures to compare when it is busy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import timed  # noqa: E402
from grow_rulebook import grow  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def checkout(where: Path, src: str, k: int) -> Path:
    """A checkout at ``where``: a copy of ``src`` and the rulebook k times as large."""
    shutil.copytree(src, where / "src", ignore=shutil.ignore_patterns("__pycache__"))
    grow(where / "rules", k)
    return where


def instructions(cmd: list[str], env: dict) -> int | None:
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", *cmd],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    m = re.search(r"refs:\s+([\d,]+)", res.stderr)
    return int(m.group(1).replace(",", "")) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=9, help="runs of each command")
    ap.add_argument("-k", type=int, default=2, help="how many times as large the grown rulebook is")
    ap.add_argument("--case", default=str(ROOT / "cases/example-chronic-cyclobenzaprine.yaml"))
    ap.add_argument("--src", default=str(ROOT / "src"))
    ap.add_argument("--before", metavar="SRC", help="also another checkout's src/ (a before/after in one run)")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions (valgrind)")
    args = ap.parse_args()
    py = sys.executable
    case = str(Path(args.case).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="mtus-bench-growth-"))
    try:
        base = {k: v for k, v in os.environ.items() if k not in ("MTUS_RULES", "MTUS_NO_CACHE", "PYTHONPATH")}
        cmds: dict[str, tuple[list[str], dict]] = {"python -c pass": ([py, "-c", "pass"], base)}
        trees = [("", args.src)] + ([("before ", args.before)] if args.before else [])
        for label, src in trees:
            for k in (1, args.k):
                where = checkout(tmp / f"{label.strip() or 'this'}-{k}", src, k)
                env = {**base, "PYTHONPATH": str(where / "src"), "MTUS_CACHE_DIR": str(where / "cache")}
                cmds[f"{label}evaluate, rulebook {k}x"] = ([py, "-m", "mtus_engine", "evaluate", case,
                                                           "--format", "json"], env)
        warm = {n: c for n, c in cmds.items() if n != "python -c pass"}
        timed(warm, 2)      # the start-up caches and bytecode, written
        outs = {n: subprocess.run(c, env=e, capture_output=True, cwd=ROOT).stdout for n, (c, e) in warm.items()}
        runs = timed(cmds, args.n)
        print(f"runs: {args.n} each, interleaved; rulebook {args.k}x: grow_rulebook.py; case {Path(args.case).name}")
        print("load average at the end:", " ".join(f"{x:.1f}" for x in os.getloadavg()))
        bare = statistics.median(runs["python -c pass"][1])
        counts = {n: instructions(c, e) for n, (c, e) in cmds.items()} if args.callgrind else {}
        for name, (_, cpu) in runs.items():
            med = statistics.median(cpu)
            line = f"{name:<34} CPU median {med:.3f} s ({med / bare:.1f}x)"
            if counts.get(name):
                line += f"  instructions {counts[name] / 1e9:.3f} G ({counts[name] / counts['python -c pass']:.1f}x)"
            print(line)
        for label, _ in trees:
            one, grown = f"{label}evaluate, rulebook 1x", f"{label}evaluate, rulebook {args.k}x"
            cpu = statistics.median(runs[grown][1]) - statistics.median(runs[one][1])
            line = f"{label or 'this '}growth 1x -> {args.k}x: CPU {cpu * 1e3:+.1f} ms"
            if counts.get(one) and counts.get(grown):
                line += f", instructions {(counts[grown] - counts[one]) / 1e6:+.1f} M " \
                        f"({counts[grown] / counts[one] - 1:+.1%})"
            print(line)
            # the same determinations, but for the rulebook's digest and version line
            strip = re.compile(rb'"digest": "[0-9a-f]+"')
            if strip.sub(b"", outs[one]) != strip.sub(b"", outs[grown]):
                print(f"  note: the {args.k}x rulebook's output differs from the 1x one's beyond the digest")
        print("(issue 12's target for evaluate: <= 15x python -c pass)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
