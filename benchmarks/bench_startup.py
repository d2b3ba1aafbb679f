"""Cold start-up: a bare `python -c pass` against `mtus evaluate CASE --format json`, each run
N times in a fresh process; prints best and median seconds and their ratio (issue 12: <= 15x).

    python benchmarks/bench_startup.py [-n 15] [--case CASE] [--src OTHER_CHECKOUT/src] [--before OLD/src]

A "third-party floor" line times what a plain evaluate imports of other packages: PyYAML,
durable_rules' engine and orjson, behind the command's front door. Two lines show what it no
longer imports: pydantic with one validated model (a warm start reads its rulebook and case
without it), and click with it (any command other than a plain evaluate).
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

# the command's front door, PyYAML, and durable_rules' engine with orjson: the part of a cold
# evaluate that is not this package's own work
FLOOR = """
import mtus_engine.interfaces.front, yaml, durable_rules_engine, orjson
"""
# pydantic (plugins off, as the front door sets it) and one validated model: what a plain evaluate
# on a warm start-up cache no longer imports (a YAML load, what-if, the service still do)
PYDANTIC = FLOOR + """
from pydantic import BaseModel, Field
class M(BaseModel):
    x: int = Field(ge=0)
M(x=1)
"""
# the same with the click app's module: what any command other than a plain evaluate adds
FLOOR_CLICK = "import mtus_engine.interfaces.cli\n" + PYDANTIC

PHASES = """
import time
t0 = time.perf_counter()
import mtus_engine.interfaces.front, mtus_engine.api, mtus_engine.evaluation.engine, mtus_engine.evaluation.plain_case
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


def timed(cmds: dict[str, tuple[list[str], dict]], n: int) -> dict[str, tuple[list[float], list[float]]]:
    """(wall seconds, CPU seconds user+sys) of each run of each command, the commands taken in
    turn n times (a load that comes and goes falls on all of them alike). CPU time is what to
    compare on a loaded machine: waiting for a core does not count."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cmds}
    for _ in range(n):
        for name, (cmd, env) in cmds.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
            out[name][0].append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[name][1].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return out


def _line(name: str, xs: list[float]) -> str:
    return f"{name:<48} best {min(xs):.3f} s  median {statistics.median(xs):.3f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=15, help="runs of each command")
    ap.add_argument("--case", default="cases/example-chronic-cyclobenzaprine.yaml")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the source tree to measure (another checkout's src/)")
    ap.add_argument("--before", metavar="SRC", help="also another checkout's src/, its evaluate interleaved "
                                                    "with this one's (a before/after in one run)")
    args = ap.parse_args()

    def env_for(src: str) -> dict:
        return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}

    env = env_for(args.src)
    py = sys.executable
    # the start-up cache (docs/performance.md) in a directory of its own: written by the first
    # run, read by the others; MTUS_NO_CACHE measures the first run after a rule file changed
    cache = tempfile.mkdtemp(prefix="mtus-bench-cache-")
    env["MTUS_CACHE_DIR"] = cache
    env.pop("MTUS_NO_CACHE", None)
    evaluate = [py, "-m", "mtus_engine", "evaluate", args.case, "--format", "json"]
    cmds = {"python -c pass": ([py, "-c", "pass"], env),
            "third-party floor": ([py, "-c", FLOOR], env),
            "  with pydantic and one model": ([py, "-c", PYDANTIC], env),
            "  with pydantic and click (cli.py)": ([py, "-c", FLOOR_CLICK], env),
            "mtus evaluate CASE --format json": (evaluate, env)}
    if args.before:
        before_env = {**env_for(args.before), "MTUS_CACHE_DIR": os.path.join(cache, "before")}
        cmds["  the same, before (--before)"] = (evaluate, before_env)
    timed({k: v for k, v in cmds.items() if k.startswith(("mtus", "  the same, before"))}, 1)  # the caches
    runs = timed(cmds, args.n)
    uncached = timed({"off": (evaluate, {**env, "MTUS_NO_CACHE": "1"})}, max(3, args.n // 3))["off"]
    print(f"runs: {args.n} each, interleaved, source {args.src}" + (f", before {args.before}" if args.before else ""))
    print("load average at the end:", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("PYTHONDONTWRITEBYTECODE is set: this package is compiled from source on every run "
              "(an installed package has its .pyc; set PYTHONPYCACHEPREFIX and unset it to compare)")
    for k, what in ((0, "wall"), (1, "CPU (user+sys)")):
        bare = runs["python -c pass"][k]
        for name, xs in ((n, r[k]) for n, r in runs.items()):
            ratio = "" if name == "python -c pass" else \
                f"  ({min(xs) / min(bare):.1f}x / {statistics.median(xs) / statistics.median(bare):.1f}x)"
            print(_line(f"{name}, {what}", xs) + ratio)
        print(_line(f"  the same, start-up cache off, {what}", uncached[k]))
    print("(ratios: best / median against python -c pass; issue 12's target for evaluate: <= 15x)")

    phases = []
    for _ in range(max(3, args.n // 3)):
        res = subprocess.run([py, "-c", PHASES.format(case=args.case)], check=True, capture_output=True,
                             text=True, env=env, cwd=ROOT)
        phases.append([float(x) for x in res.stdout.split()])
    names = ("imports (front, api, engine, plain_case)", "load the rulebook (start-up cache)",
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
                      & {"jinja2", "rich", "matplotlib", "fastapi", "uvicorn", "pypdf", "pypdfium2", "numpy",
                         "pydantic", "click"})
    print("loaded but not needed by evaluate --format json:", ", ".join(unwanted) or "none")
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
