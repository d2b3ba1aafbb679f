"""Engine throughput against durable_rules' own cost, and cold start.

Prints figures; asserts nothing. Run: python benchmarks/bench_engine.py [--requests N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mtus_engine.backend import host_trivial_rate, trivial_ruleset_rate  # noqa: E402
from mtus_engine.case import Case  # noqa: E402
from mtus_engine.engine import Engine  # noqa: E402

ITEMS = ["Flexeril 7.5 mg #{q}", "Cyclobenzaprine 10mg #{q} refills x {r}", "Soma 350 mg #{q}",
         "Zanaflex 4 mg #{q}", "Robaxin 750 mg #{q}", "Skelaxin 800 mg #{q}", "Baclofen 10 mg #{q}",
         "Chiropractic {s} sessions lumbar", "Acupuncture {s} sessions cervical", "Ambien 10 mg #{q}"]


def generate(n: int, seed: int = 7) -> list[Case]:
    rnd = random.Random(seed)
    cases = []
    for i in range(n):
        item = rnd.choice(ITEMS).format(q=rnd.choice([10, 20, 30, 60, 90]), r=rnd.randint(0, 3),
                                        s=rnd.choice([4, 6, 12]))
        findings = {}
        if rnd.random() < 0.7:
            findings["acute_exacerbation"] = rnd.random() < 0.5
        req = {"item": item}
        if rnd.random() < 0.5:
            req["prior_use_weeks"] = rnd.randint(0, 30)
        if rnd.random() < 0.5:
            req["functional_improvement"] = rnd.random() < 0.5
        if "sessions" in item:
            req["prior_sessions"] = rnd.choice([0, 6])
        cases.append(Case.model_validate({
            "id": f"bench-{i}", "request_date": "2014-06-20", "findings": findings,
            "medications": [{"name": rnd.choice(["tramadol", "naproxen", "gabapentin"])}],
            "requests": [req]}))
    return cases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    args = ap.parse_args()
    engine = Engine()
    cases = generate(args.requests)
    for c in cases[:500]:
        engine.evaluate(c)
    # three interleaved rounds, best of each: the machine is shared and the Host path runs a
    # timer thread, so single measurements swing by a third
    best_rate, best_lat, raws, hosts = 0.0, [], [], []
    for _ in range(3):
        latencies = []
        start = time.perf_counter()
        for c in cases:
            t0 = time.perf_counter()
            engine.evaluate(c)
            latencies.append(time.perf_counter() - t0)
        rate = len(cases) / (time.perf_counter() - start)
        if rate > best_rate:
            best_rate, best_lat = rate, sorted(latencies)
        raws.append(trivial_ruleset_rate(20000))
        hosts.append(host_trivial_rate(20000))
    rate, raw, host = best_rate, max(raws), max(hosts)
    p50 = statistics.median(best_lat) * 1e6
    p99 = best_lat[int(len(best_lat) * 0.99)] * 1e6
    print(f"rulebook: {len(engine.rulebook.rules)} rules, {len(engine.compiled.definition)} durable rules "
          f"in {len(engine.compiled.families)} families; best of 3 rounds")
    print(f"engine: {len(cases)} requests, {rate:,.0f} requests/s on one core (target >= 5,000)")
    print(f"latency per request: p50 {p50:.0f} us, p99 {p99:.0f} us")
    print(f"durable_rules trivial ruleset (30 rules, fresh session each), C engine direct: {raw:,.0f} evals/s")
    print(f"durable_rules trivial ruleset through durable.engine.Host (assert_fact + delete_state): {host:,.0f} evals/s")
    print(f"overhead vs Host rate: {host / rate:.2f}x   vs C-direct rate: {raw / rate:.2f}x   (target <= 4x)")
    cold = []
    example = ROOT / "cases" / "example-chronic-cyclobenzaprine.yaml"
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mtus_engine", "evaluate", str(example), "--format", "json"],
                       check=True, capture_output=True, cwd=ROOT)
        cold.append(time.perf_counter() - t0)
    print(f"cold start (python -m mtus_engine evaluate, one case): best {min(cold):.3f} s, "
          f"median {statistics.median(cold):.3f} s (target < 0.5 s)")


if __name__ == "__main__":
    main()
