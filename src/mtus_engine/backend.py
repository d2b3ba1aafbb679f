"""The only module that imports durable_rules.

We drive durable_rules' C engine (``durable_rules_engine``) directly rather than through
``durable.engine.Host``: the Host starts timer threads that dispatch actions in the
background (races), registers ruleset names process-wide (no reload), swallows exceptions
raised in actions, and costs ~3x in throughput. Here an "action" is just the name of the
matched rule, collected synchronously. Every evaluation gets a fresh session id and its
state is deleted in ``finally``, so no state leaks and memory stays flat.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Callable, Iterable

import durable_rules_engine as _dre
import orjson

from .errors import EngineError

# result codes of durable_rules_engine.assert_*: 0 handled, 1 not handled, 2 observed
_OBSERVED = 2
# durable_rules 2.0.28 frees a session's action context in delete_state, but only a started
# action initialises it: a session where no rule fires crashes (invalid free, then SIGSEGV).
# One rule that always fires keeps every session safe; it is dropped from the results.
_SESSION_RULE = "mtus-session"


class RulesetHandle:
    """One compiled ruleset inside durable_rules, evaluated one session at a time."""

    def __init__(self, name: str, definition: dict):
        # create_ruleset keeps its own copy of the JSON; our dict is never mutated
        self.name = name
        definition = {**definition, _SESSION_RULE: {"all": [{"m": {"kind": "request"}}]}}
        self._handle = _dre.create_ruleset(name, json.dumps(definition, sort_keys=True))
        self._sids = itertools.count(1)
        self._lock = threading.Lock()

    def evaluate(self, facts: list[dict],
                 then: Callable[[list[str]], Iterable[dict]] | None = None) -> list[str]:
        """Assert ``facts`` in a fresh session; return the names of the rules that fired.

        ``then`` receives the rules fired so far and returns facts to assert next in the same
        session: forward chaining from one stage's conclusions to the next.
        """
        with self._lock:
            sid = str(next(self._sids))
            try:
                fired = self._assert(sid, facts)
                if then is not None:
                    more = list(then(fired))
                    if more:
                        fired += self._assert(sid, more)
                return fired
            finally:
                _dre.delete_state(self._handle, sid)

    def _assert(self, sid: str, facts: list[dict]) -> list[str]:
        for i, fact in enumerate(facts):
            fact["sid"] = sid
            fact.setdefault("id", f"{fact['kind']}-{i}")
        try:
            code, state = _dre.assert_facts(self._handle, orjson.dumps(facts).decode())
        except Exception as exc:  # the C layer raises plain Exceptions with a code
            raise EngineError(f"durable_rules rejected the facts: {exc}") from None
        if code == _OBSERVED:
            raise EngineError("durable_rules saw a duplicate fact (hash collision or repeated id)")
        fired: list[str] = []
        message = _dre.start_action_for_state(self._handle, state)
        message = message[1] if message else None
        while message:
            # a message is {"<rule name>": {...matched facts...}}; rule names hold no quotes,
            # so slicing saves decoding the whole matched fact
            name = message[message.index('"') + 1: message.index('":')]
            if name != _SESSION_RULE:
                fired.append(name)
            message = _dre.complete_and_start_action(self._handle, state)
        return fired


def trivial_ruleset_rate(n: int = 20000) -> float:
    """Evaluations per second of a trivial 30-rule ruleset through this same adapter.

    The benchmark's yardstick: what durable_rules itself costs per session.
    """
    import time
    definition = {f"r{i}": {"all": [{"m": {"$and": [{"kind": "x"}, {"v": i}]}}]} for i in range(30)}
    rs = RulesetHandle("trivial", definition)
    start = time.perf_counter()
    for i in range(n):
        rs.evaluate([{"kind": "x", "id": 1, "v": i % 30}])
    return n / (time.perf_counter() - start)


def host_trivial_rate(n: int = 20000) -> float:
    """The same trivial ruleset through durable_rules' public Host API (post per session)."""
    import time
    from durable import engine

    class _Host(engine.Host):
        def get_action(self, action_name):
            return lambda c: None

    definition = {"trivial_host": {f"r{i}": {"all": [{"m": {"$and": [{"kind": "x"}, {"v": i}]}}],
                                             "run": "a"} for i in range(30)}}
    host = _Host()
    host.set_rulesets(definition)
    start = time.perf_counter()
    for i in range(n):
        sid = str(i)
        try:
            host.assert_fact("trivial_host", {"sid": sid, "id": 1, "kind": "x", "v": i % 30})
        finally:
            host.delete_state("trivial_host", sid)
    return n / (time.perf_counter() - start)
