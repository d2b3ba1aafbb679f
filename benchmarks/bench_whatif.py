"""What-if speed: a 1,000-point grid and --flip on a three-request case. Prints figures only."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mtus_engine.evaluation.case import load_case_text  # noqa: E402
from mtus_engine.evaluation.engine import Engine  # noqa: E402
from mtus_engine.evaluation.whatif import apply_changes, flip, grid, parse_grid  # noqa: E402

CASE = """\
id: three
request_date: 2015-01-07
findings: {acute_exacerbation: false}
medications: [{name: Flexeril, since: 2014-09-05}, {name: naproxen}, {name: tramadol}]
requests:
  - item: "Flexeril 7.5 mg #60 refills x 2"
  - item: "Soma 350 mg #60"
  - item: Additional acupuncture 6 sessions
    functional_improvement: false
"""


def every_request(case, engine, axes, sets):
    """The grid as it was: every request of the case judged at every point, one kept."""
    base = apply_changes(case, sets)
    return [[engine.evaluate(apply_changes(base, [(axes[0][0], v1), (axes[1][0], v2)])).determinations[0].decision
             for v2 in axes[1][1]] for v1 in axes[0][1]]


def main() -> None:
    engine = Engine()
    case = load_case_text(CASE)
    axes = [parse_grid("requests[0].quantity=5..200:5", case), parse_grid("requests[0].prior_use_weeks=0..24:1", case)]
    points = len(axes[0][1]) * len(axes[1][1])
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        grid(case, engine, axes, 0, [("findings.acute_exacerbation", "true")])
        runs.append(time.perf_counter() - t0)
    print(f"grid of {points:,} points: best {min(runs):.2f} s, median {statistics.median(runs):.2f} s (target < 2 s)")
    whole = []
    for _ in range(3):
        t0 = time.perf_counter()
        every_request(case, engine, axes, [("findings.acute_exacerbation", "true")])
        whole.append(time.perf_counter() - t0)
    print(f"  the same grid evaluating all 3 requests at every point (before the grid asked for one): "
          f"best {min(whole):.2f} s ({min(whole) / min(runs):.1f}x the grid's time)")
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        answers = flip(case, engine)
        runs.append(time.perf_counter() - t0)
    found = sum(len(a.suggestions) for a in answers)
    print(f"--flip on a 3-request case: best {min(runs) * 1000:.0f} ms, median {statistics.median(runs) * 1000:.0f} ms, "
          f"{found} verified suggestions (target < 1 s)")


if __name__ == "__main__":
    main()
