"""What durable_rules itself costs per session: the yardstick bench_engine.py measures the
engine against. A trivial 30-rule ruleset, one fact per evaluation."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

RULES = 30


def _definition() -> dict:
    return {f"r{i}": {"all": [{"m": {"$and": [{"kind": "x"}, {"v": i}]}}]} for i in range(RULES)}


def trivial_ruleset_rate(n: int = 20000, clock=time.perf_counter) -> float:
    """Evaluations per second of the trivial ruleset through the engine's own adapter
    (backend.RulesetHandle: the C engine directly, one reused session)."""
    from mtus_engine.evaluation.backend import RulesetHandle
    rs = RulesetHandle(f"trivial-{time.monotonic_ns()}", _definition())
    try:
        start = clock()
        for i in range(n):
            rs.evaluate([{"kind": "x", "id": 1, "v": i % RULES}])
        return n / (clock() - start)
    finally:
        rs.close()


_host = None


def host_trivial_rate(n: int = 20000, clock=time.perf_counter) -> float:
    """The same ruleset through durable_rules' public API (durable.engine.Host): assert_fact
    in a fresh session, then delete_state, per evaluation."""
    global _host
    from durable import engine

    class _Host(engine.Host):
        def get_action(self, action_name):
            return lambda c: None

    if _host is None:   # a ruleset name can be registered once per process
        definition = {"trivial_host": {f"r{i}": {**spec, "run": "a"} for i, (_, spec) in
                                       enumerate(_definition().items())}}
        _host = _Host()
        _host.set_rulesets(definition)
    start = clock()
    for i in range(n):
        sid = str(i)
        try:
            _host.assert_fact("trivial_host", {"sid": sid, "id": 1, "kind": "x", "v": i % RULES})
        finally:
            _host.delete_state("trivial_host", sid)
    return n / (clock() - start)


if __name__ == "__main__":
    print(f"durable_rules, {RULES}-rule ruleset: Host API {host_trivial_rate():,.0f}/s, "
          f"engine adapter {trivial_ruleset_rate():,.0f}/s")
