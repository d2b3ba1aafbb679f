"""Cold start-up: a bare `python -c pass` against `mtus evaluate CASE --format json`, each run
N times in a fresh process; prints best and median seconds and their ratio (issue 12: <= 15x).

    python benchmarks/bench_startup.py [-n 15] [--case CASE] [--src OTHER_CHECKOUT/src]

A "third-party floor" line times importing click, PyYAML and pydantic and validating one model.
Then where the time goes in one cold evaluate: imports (python -X importtime, our modules and
the heaviest others), loading the rulebook, compiling it into durable_rules, and evaluating.
The start-up cache is warm (a first, unmeasured run writes it, in a temporary directory); one
line gives the same evaluate with it off (the first run after a rule file changed).
Figures on a loaded machine are noisy: compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the command's module (click, and pydantic's plugins off as a run has them), PyYAML, pydantic
# and one validated model: the part of a cold evaluate that is not this package's own work
FLOOR = """
import mtus_engine.interfaces.cli, yaml
from pydantic import BaseModel, Field
class M(BaseModel):
    x: int = Field(ge=0)
M(x=1)
"""

PHASES = """
import time
t0 = time.perf_counter()
import mtus_engine.interfaces.cli, mtus_engine.api, mtus_engine.evaluation.engine, mtus_engine.evaluation.case
t1 = time.perf_counter()
from mtus_engine.rules.rulebook import load_rulebook
rb = load_rulebook()
t2 = time.perf_counter()
from mtus_engine.evaluation.engine import Engine
engine = Engine(rb)
t3 = time.perf_counter()
from mtus_engine.api import evaluate_sources
from mtus_engine.interfaces.render import to_json
to_json(evaluate_sources([{case!r}], engine)[0].result.to_json_data())
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def timed(cmd: list[str], n: int, env: dict) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds user+sys) of each run. CPU time is what to compare on a
    loaded machine: waiting for a core does not count."""
    wall, cpu = [], []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
        wall.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, cpu


def _line(name: str, xs: list[float]) -> str:
    return f"{name:<44} best {min(xs):.3f} s  median {statistics.median(xs):.3f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=15, help="runs of each command")
    ap.add_argument("--case", default="cases/example-chronic-cyclobenzaprine.yaml")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the source tree to measure (another checkout's src/)")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": args.src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    py = sys.executable
    # the start-up cache (docs/performance.md) in a directory of its own: written by the first
    # run, read by the others; MTUS_NO_CACHE measures the first run after a rule file changed
    cache = tempfile.mkdtemp(prefix="mtus-bench-cache-")
    env["MTUS_CACHE_DIR"] = cache
    env.pop("MTUS_NO_CACHE", None)
    evaluate = [py, "-m", "mtus_engine", "evaluate", args.case, "--format", "json"]
    bare, bare_cpu = timed([py, "-c", "pass"], args.n, env)
    # the third-party floor: what evaluate imports of click, PyYAML and pydantic, and one model
    floor, floor_cpu = timed([py, "-c", FLOOR], args.n, env)
    timed(evaluate, 1, env)
    cold, cold_cpu = timed(evaluate, args.n, env)
    uncached, uncached_cpu = timed(evaluate, max(3, args.n // 3), {**env, "MTUS_NO_CACHE": "1"})
    print(f"runs: {args.n} each, source {args.src}")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("PYTHONDONTWRITEBYTECODE is set: this package is compiled from source on every run "
              "(an installed package has its .pyc; set PYTHONPYCACHEPREFIX and unset it to compare)")
    for what, b, c, u, f in (("wall", bare, cold, uncached, floor),
                             ("CPU (user+sys)", bare_cpu, cold_cpu, uncached_cpu, floor_cpu)):
        print(_line(f"python -c pass, {what}", b))
        print(_line(f"third-party floor, {what}", f) + f"  ({min(f) / min(b):.1f}x)")
        print(_line(f"mtus evaluate CASE --format json, {what}", c))
        print(f"{'ratio, ' + what:<44} best {min(c) / min(b):.1f}x  "
              f"median {statistics.median(c) / statistics.median(b):.1f}x  (target <= 15x)")
        print(_line(f"  the same, start-up cache off, {what}", u))

    phases = []
    for _ in range(max(3, args.n // 3)):
        res = subprocess.run([py, "-c", PHASES.format(case=args.case)], check=True, capture_output=True,
                             text=True, env=env, cwd=ROOT)
        phases.append([float(x) for x in res.stdout.split()])
    names = ("imports (cli, api, engine, case)", "load the rulebook (start-up cache)",
             "compile into durable_rules (Engine())", "evaluate one case + JSON")
    print("\none cold evaluate, by phase (median of", len(phases), "runs):")
    for i, name in enumerate(names):
        print(f"  {name:<40} {statistics.median(p[i] for p in phases):.3f} s")

    res = subprocess.run([py, "-X", "importtime", "-m", "mtus_engine", "evaluate", args.case, "--format", "json"],
                         check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    rows = []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, cum_us, name = line.removeprefix("import time:").split("|")
        if self_us.strip().isdigit():
            rows.append((int(cum_us), int(self_us), name.rstrip()))
    top = [r for r in rows if not r[2].startswith("  ")]   # top-level imports only (one leading space)
    print("\nimports of one cold evaluate (-X importtime, top level, cumulative ms):")
    for cum, _, name in sorted(top, reverse=True)[:12]:
        print(f"  {name:<40} {cum / 1000:7.1f}")
    unwanted = sorted({r[2].strip().split(".")[0] for r in rows}
                      & {"jinja2", "rich", "matplotlib", "fastapi", "uvicorn", "pypdf", "pypdfium2", "numpy"})
    print("loaded but not needed by evaluate --format json:", ", ".join(unwanted) or "none")
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
