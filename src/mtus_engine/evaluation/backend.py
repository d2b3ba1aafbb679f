"""The only module that imports durable_rules.

We drive durable_rules' C engine (``durable_rules_engine``) directly rather than through
``durable.engine.Host``: the Host starts timer threads that dispatch actions in the
background (races), registers ruleset names process-wide (no reload), swallows exceptions
raised in actions, and costs ~3x in throughput. Here an "action" is just the name of the
matched rule, collected synchronously. Each ruleset keeps one session: an evaluation retracts
every fact it asserted, so the next starts from an empty session; after an error, or every
RECYCLE_AFTER evaluations, the session is deleted and a fresh one started, so no state leaks
and memory stays flat.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from typing import Callable, Iterable

import durable_rules_engine as _dre
import orjson

from ..errors import EngineError

# result codes of durable_rules_engine.assert_*: 0 handled, 1 not handled, 2 observed
_OBSERVED = 2
# durable_rules 2.0.28 frees a session's action context in delete_state, but only a started
# action initialises it: deleting a session where no rule ever fired crashes (invalid free, then
# SIGSEGV). Such a session is first given a fact only the cleanup rule matches (see ``_end``).
_CLEANUP_KIND = "mtus-cleanup"
_CLEANUP_RULE = "mtus-cleanup"
# evaluations per session before it is deleted and a fresh one started
RECYCLE_AFTER = 10_000


class RulesetHandle:
    """One compiled ruleset inside durable_rules, evaluated one session at a time."""

    def __init__(self, name: str, definition: dict):
        # create_ruleset keeps its own copy of the JSON; our dict is never mutated
        self.name = name
        definition = {**definition, _CLEANUP_RULE: {"all": [{"m": {"kind": _CLEANUP_KIND}}]}}
        try:
            self._handle = _dre.create_ruleset(name, json.dumps(definition, sort_keys=True))
        except Exception as exc:  # noqa: BLE001 - the C layer raises plain Exceptions with a code
            raise EngineError(_explain(name, exc)) from None
        self._sids = itertools.count(1)
        self._sid: str | None = None      # the live session, reused while it stays clean
        self._started = False             # some action ran in it (deleting it is then safe)
        self._uses = 0
        self._then: Callable | None = None    # the last ``then``, and its answers as JSON
        self._chained: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def evaluate(self, facts: list[dict],
                 then: Callable[[list[str]], list[dict]] | None = None) -> list[str]:
        """Assert ``facts`` in a clean session; return the names of the rules that fired.

        ``then`` receives the rules fired so far and returns facts to assert next in the same
        session: forward chaining from one stage's conclusions to the next. It must be a pure
        function of the names fired, and its facts must fire the same rules whatever ``facts``
        were (no pattern of the next stage matches a first-stage fact): its answer and the
        rules that fire on it are kept per names for the session, so a repeat asserts only the
        first stage.

        One session is reused: every fact asserted is retracted before returning, so the next
        evaluation starts from an empty session. Creating a session costs more than matching
        (durable_rules sets up state for every node of the ruleset: ~150 us for a family of 166
        rules), and deleting one frees it all again. Anything durable_rules reports is an
        EngineError naming this ruleset; the session is then ended (see ``_end``) and the next
        evaluation gets a fresh one.
        """
        with self._lock:
            sid = self._sid
            if sid is None:
                sid = self._sid = str(next(self._sids))
                self._started = False
            try:
                payload = self._payload(sid, facts)
                fired = self._assert(payload)
                if then is not None:
                    # the next stage's rules, kept per names fired for this session: ``then``'s
                    # facts are a pure function of the names, and what fires on them too (the
                    # next stage's patterns match only its own kind of fact, never a request's)
                    key = tuple(fired)
                    if then is not self._then:
                        self._then, self._chained = then, {}
                    known = self._chained.get(key)
                    if known is None:
                        more = then(fired)
                        extra = self._payload(sid, more) if more else ""
                        known = tuple(self._assert(extra)) if extra else ()
                        if extra:
                            # both JSON arrays' members as one array: one retract call
                            payload = extra if payload == "[]" else f"{payload[:-1]},{extra[1:]}"
                        if len(self._chained) > 4096:   # bounded: one per set of rules fired
                            self._chained.clear()
                        self._chained[key] = known
                    if known:
                        fired += known
                self._retract(payload)
                self._uses += 1
                if self._uses % RECYCLE_AFTER == 0:   # bound whatever a long session might accumulate
                    self._drop_session()
                return fired
            except BaseException:
                self._drop_session()
                raise

    def _drop_session(self) -> None:
        sid, self._sid = self._sid, None
        self._chained = {}   # begun again with the session
        if sid is not None:
            self._end(sid, self._started)

    def _end(self, sid: str, started: bool) -> None:
        """Delete the session. When no action ever started in it (its first assert failed with
        error 303, a match stack overflow), delete_state would free an uninitialised action
        context (SIGSEGV, "free(): invalid size"): fire the cleanup rule first with a fact only
        it matches. If even that fails, the session is left (it holds no facts)."""
        if not started:
            try:
                _, state = _dre.assert_facts(self._handle, orjson.dumps(
                    [{"sid": sid, "id": "mtus-cleanup", "kind": _CLEANUP_KIND}]).decode())
                message = _dre.start_action_for_state(self._handle, state)
                while message:
                    message = _dre.complete_and_start_action(self._handle, state)
            except Exception:  # noqa: BLE001 - nothing started: deleting would crash
                return
        try:
            _dre.delete_state(self._handle, sid)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"durable_rules could not end a session of ruleset {self.name}: {exc}") from None

    @staticmethod
    def _payload(sid: str, facts: list[dict]) -> str:
        """The facts as the JSON array durable_rules takes, each in session ``sid`` with an id."""
        for i, fact in enumerate(facts):
            fact["sid"] = sid
            if "id" not in fact:
                fact["id"] = f"{fact['kind']}-{i}"
        return orjson.dumps(facts).decode()

    def _assert(self, payload: str) -> list[str]:
        handle = self._handle
        try:
            code, state = _dre.assert_facts(handle, payload)
        except Exception as exc:  # the C layer raises plain Exceptions with a code
            raise EngineError(_explain(self.name, exc)) from None
        if code == _OBSERVED:
            raise EngineError("durable_rules saw a duplicate fact (hash collision or repeated id)")
        fired: list[str] = []
        try:
            message = _dre.start_action_for_state(handle, state)
            message = message[1] if message else None
            if message:
                self._started = True
                next_action, add = _dre.complete_and_start_action, fired.append
                while message:
                    # a message is {"<rule name>": {...matched facts...}}; rule names hold no
                    # quotes, so slicing saves decoding the whole matched fact
                    add(message[message.index('"') + 1: message.index('":')])
                    message = next_action(handle, state)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(_explain(self.name, exc)) from None
        if _CLEANUP_RULE in fired:
            fired = [name for name in fired if name != _CLEANUP_RULE]
        return fired

    def _retract(self, payload: str) -> None:
        """Take back the facts asserted this evaluation (one JSON array), in one call. No rule
        matches an absence, so nothing may fire; anything that does means the session is not
        what we think: a hard error."""
        try:
            _, state = _dre.retract_facts(self._handle, payload)
            pending = _dre.start_action_for_state(self._handle, state)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(_explain(self.name, exc)) from None
        if pending:
            raise EngineError(f"durable_rules fired a rule of ruleset {self.name} on retracting facts")

    def session_facts(self) -> list[dict]:
        """The facts the live session holds between evaluations: none, when every evaluation
        took back what it asserted (for tests and diagnostics)."""
        with self._lock:
            if self._sid is None:
                return []
            try:
                return orjson.loads(_dre.get_facts(self._handle, self._sid))
            except Exception as exc:  # noqa: BLE001
                raise EngineError(_explain(self.name, exc)) from None

    def close(self) -> None:
        """Drop the ruleset from durable_rules (for throwaway rulesets such as lint probes)."""
        try:
            _dre.delete_ruleset(self._handle)
        except Exception:  # noqa: BLE001
            pass


# durable_rules 2.0.28 error codes (rules.h) and what they mean for us
_CODES = {
    302: "a fact has more properties than durable_rules allows (255)",
    303: "the ruleset's match stack overflowed (durable_rules MAX_STACK_SIZE 64): the rule family is too "
         "large or too branchy; split it (`mtus rules lint` checks the headroom)",
    304: "too many messages in one frame",
    101: "durable_rules ran out of memory (too many live sessions?)",
    106: "too many rules in one ruleset",
    107: "too many rules share one condition (durable_rules' per-node limit)",
    108: "too many joins in one rule",
}
_CODE = re.compile(r"error code:\s*(\d+)")


def _explain(ruleset: str, exc: Exception) -> str:
    m = _CODE.search(str(exc))
    code = int(m.group(1)) if m else None
    meaning = _CODES.get(code, str(exc)) if code else str(exc)
    return f"durable_rules failed on ruleset {ruleset}" + (f" (error {code})" if code else "") + f": {meaning}"


# Limits of durable_rules 2.0.28 (../shared/durable-rules-notes.md) and the headroom lint asks for.
MAX_PROPERTIES = 255
MAX_RULES = 4096
HEADROOM = 2


def limit_problems(name: str, definition: dict, properties: int, probes: list[tuple[str, list[dict]]],
                   then: Callable[[list[str]], Iterable[dict]] | None = None) -> list[str]:
    """Ways a ruleset comes within HEADROOM x of durable_rules' limits.

    Property and rule counts are checked against the documented limits. The match stack
    (error 303) depends on how the rules branch, so it is measured: the ruleset is built
    HEADROOM times over (every rule repeated under another name) and each probe fact is
    asserted into it. A probe that overflows there is too close to the limit today.
    """
    problems = []
    if properties * HEADROOM > MAX_PROPERTIES:
        problems.append(f"{name}: its facts carry {properties} properties; durable_rules allows {MAX_PROPERTIES} "
                        f"(lint asks for {HEADROOM}x headroom)")
    if len(definition) * HEADROOM > MAX_RULES:
        problems.append(f"{name}: {len(definition)} compiled rules; durable_rules allows {MAX_RULES} per ruleset "
                        f"(lint asks for {HEADROOM}x headroom)")
    if not probes:
        return problems
    scaled = {f"{rule}#{k}" if k else rule: spec for k in range(HEADROOM) for rule, spec in definition.items()}
    try:
        handle = RulesetHandle(f"lint-headroom-{next(_probe_ids)}", scaled)
    except EngineError as exc:
        return problems + [f"{name}: durable_rules cannot compile it at {HEADROOM}x its size ({exc}): near the limit; "
                           f"split the family"]
    try:
        for where, facts in probes:
            try:
                handle.evaluate([dict(f) for f in facts],
                                (lambda fired: then([n.split("#", 1)[0] for n in fired])) if then else None)
            except EngineError as exc:
                what = ("overflows durable_rules' match stack (error 303)" if "(error 303)" in str(exc)
                        else f"fails in durable_rules ({exc})")
                problems.append(f"{name}: {where}: {what} at {HEADROOM}x its size: near the limit; "
                                f"split the family or simplify its conditions")
                break
    finally:
        handle.close()
    return problems


_probe_ids = itertools.count(1)
