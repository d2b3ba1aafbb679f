"""Evaluate a case against the compiled rulebook: case -> facts -> durable_rules -> determination."""

from __future__ import annotations

import copy
import functools
import math
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from .backend import RulesetHandle
from .items import derive_request
from ..rules.compiler import (FAILED, MET, NOT_APPLICABLE, UNDOCUMENTED, CompiledRulebook, chained_facts,
                       compile_rulebook, flag)
from .determination import (SEVERITY, CaseDetermination, CitationOut, CriterionResult,
                            Determination, ModifiedRequest, RulebookRef)
from .derivations import FactPlan, request_facts  # request_facts re-exported (cli, tests)
from .derived import DerivedRequest
from ..errors import EngineError
from ..rules.phrases import Phrases, load_phrases
from ..rules.rulebook import Criterion, Edition, Rule, Rulebook, load_rulebook

if TYPE_CHECKING:   # a case is the pydantic model or plain_case.py's plain case (duck-typed)
    from .case import Case


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


class _CriterionText:
    """One criterion as determinations report it, precomputed: its fixed fields, how its value
    is read from the request fact, and its finding sentence per state."""

    __slots__ = ("key", "id", "asks", "fact", "test", "decisive", "missing", "source", "documentable",
                 "modifies", "modify", "assume", "because", "finding", "placeholder", "assumed_finding",
                 "plain", "_flag", "_excludes")

    def __init__(self, rule: Rule, crit: Criterion, spec: Any, documentable: bool, say: Phrases):
        self.key = (rule.id, crit.id)
        self.id, self.asks, self.fact, self.missing = crit.id, crit.asks, crit.fact, crit.missing
        self.test, self.decisive = crit.test.description, crit.decisive
        self.source = spec.source if spec else None
        self.documentable = documentable
        self.modifies, self.modify = crit.on_failure == "modify", crit.modify
        op = crit.test.op
        self._flag = flag(crit.fact, crit.test.includes) if op == "includes" else None
        self._excludes = [(flag(crit.fact, v), v) for v in crit.test.excludes] if op == "excludes" else None
        self.plain = self._flag is None and self._excludes is None   # value is facts.get(fact)
        na = (say.say("finding.not_applicable_when", fact=crit.when.fact,
                      negation=crit.when.test.describe_negation()) if crit.when
              else say["finding.not_applicable"])
        self.finding = {MET: crit.met, FAILED: crit.failed or crit.met,
                        UNDOCUMENTED: say.say("finding.not_documented", missing=crit.missing), NOT_APPLICABLE: na}
        self.placeholder = {state: "{value}" in text for state, text in self.finding.items()}
        assumed = crit.assumed
        self.assume = assumed.assume if assumed else None
        self.because = assumed.because if assumed else None
        self.assumed_finding = {}
        if assumed:
            shown = _show(self.assume)
            for state in self.finding:
                text = (crit.met if state == MET else (crit.failed or crit.met)).replace("{value}", shown)
                self.assumed_finding[state] = say.say("finding.assumed", missing=crit.missing, value=shown,
                                                      because=assumed.because, finding=text)

    def value(self, facts: dict) -> Any:
        if self._flag is not None:
            return facts.get(self._flag)
        if self._excludes is not None:
            present = [v for key, v in self._excludes if facts.get(key)]
            known = any(key in facts for key, _ in self._excludes)
            return present if known else None
        return facts.get(self.fact)


def _first_part(in_effect: tuple[str, ...], parts: dict[str, Any]) -> str | None:
    """Rule.part_in over the parts in effect: the first one the rule belongs to."""
    for part in in_effect:
        if part in parts:
            return part
    return None


class _RuleText(NamedTuple):
    """A rule's static text under one guideline part."""

    head: str                    # "<guideline> (<section>, page(s) ..): <recommends>"
    extras: tuple[str, ...]      # its also-cited sections' sentences
    citations: tuple[tuple[tuple, CitationOut], ...]   # ((guideline, section, pages), citation)


class _Quoted(NamedTuple):
    """What the rationale reads of a criterion result."""

    decisive: bool
    state: str
    finding: str


class _Verdict:
    """What a set of fired durable rules decides, before the request's values are filled in
    (Engine._verdict). ``rules`` None: no rule applies (``no_part``: none in a part in effect)."""

    __slots__ = ("rules", "no_part", "rule_ids", "criteria", "decision", "missing", "supply", "sessions",
                 "citations", "heads", "closing", "lead")

    def __init__(self) -> None:
        self.rules: list[Rule] | None = None
        self.no_part = False
        self.lead: str | None = None     # the rationale up to its last sentence, when fixed


class _Rulesets:
    """The families' durable_rules rulesets, each created on first use (a case needs one or
    two of ~40; creating them all was ~0.04 s of every cold start)."""

    def __init__(self, families: list) -> None:
        self._families = families
        self._made: list[RulesetHandle | None] = [None] * len(families)
        self._lock = threading.Lock()   # the service's threads: one handle per family

    def __getitem__(self, i: int) -> RulesetHandle:
        made = self._made[i]
        if made is None:
            with self._lock:
                made = self._made[i]
                if made is None:
                    family = self._families[i]
                    made = self._made[i] = RulesetHandle(family.name, family.definition)
        return made

    def __iter__(self):
        """The rulesets created so far."""
        return (made for made in self._made if made is not None)

    def create_all(self) -> bool:
        for i in range(len(self._made)):
            self[i]
        return True


class _Meanings(dict):
    """Durable rule name -> what its firing says, each made when the rule first fires (for all
    ~1,200 at once it was a cost of every start growing with the rules). Threads may make one
    twice: equal tuples, either kept."""

    def __init__(self, actions: dict) -> None:
        super().__init__()
        self._actions = actions

    def __missing__(self, name: str) -> tuple:
        a = self._actions[name]
        made = self[name] = (a.kind, a.rule_id, (a.rule_id, a.criterion_id), (a.state, a.assumed))
        return made


class Engine:
    """A rulebook compiled into durable_rules, ready to evaluate cases. Thread-safe."""

    def __init__(self, rulebook: Rulebook | None = None):
        self.rulebook = rulebook or load_rulebook()
        # pure data: kept in the rulebook's start-up cache (the rulesets are made from it)
        self.compiled: CompiledRulebook = self.rulebook.cached("compiled", lambda: compile_rulebook(self.rulebook))
        self._rulesets = _Rulesets(self.compiled.families)
        # durable_rules refusing a family is an error here, at start-up: checked by creating them
        # all once per rulebook (and code) version; then each is created on its first case
        if self.rulebook.cached("accepted", lambda: self._rulesets.create_all()) is not True:
            self._rulesets.create_all()
        self._rule_order = {r.id: n for n, r in enumerate(self.rulebook.rules)}
        self.edition: str | None = None     # pinned by under_edition()
        # what a determination says of each criterion, worked out once rather than per request
        self.phrases = load_phrases(self.rulebook.directory)
        self._criteria: dict[str, list[_CriterionText]] = {}   # rule -> its criteria, made on first use
        # the rationale's last sentence per decision
        self._last = {d: self.phrases[f"rationale.{d.replace('-', '_')}"] for d in ("certify", "modify", "non-certify")}
        self._last_of: dict[tuple[str, str], str] = {}   # (decision, item) -> that sentence, made once
        self._verdicts: dict[tuple[frozenset[str], tuple[str, ...]], _Verdict] = {}
        self._texts: dict[tuple[str, str], _RuleText] = {}   # (rule, part) -> its static text
        # per durable rule name, what its firing says: (kind, rule, (rule, criterion), (state,
        # assumed)), the tuples made once rather than per fired rule
        self._meaning = _Meanings(self.compiled.actions)
        self._chain = functools.partial(chained_facts, self.compiled)
        self._in_effect: dict[tuple[str, Any], tuple[str, ...]] = {}
        self._part_of: dict[tuple[str, tuple[str, ...]], str | None] = {}   # (rule, parts in effect) -> part
        self._editions: dict[tuple[str | None, Any], tuple[Edition | None, RulebookRef]] = {}
        self._fact_plans: dict[tuple[str | None, str | None], FactPlan] = {}   # (drug, modality) -> plan

    def under_edition(self, edition: str | None) -> "Engine":
        """This engine, evaluating every case under a named edition (what-if, batch, service).
        Shares the compiled rules; None gives back the engine that goes by request dates."""
        if edition is None:
            return self
        self.rulebook.edition(edition)  # an unknown id is bad input, raised here
        pinned = copy.copy(self)
        pinned.edition = edition
        return pinned

    # ---------------------------------------------------------------- public
    def evaluate(self, case: Case, edition: str | None = None) -> CaseDetermination:
        """Determinations under the edition in effect on the request date, or under the
        edition named (for requests no edition covers, such as today's); the output says which."""
        edition = edition or self.edition
        chosen, ref = self._edition_of(case, edition)
        determinations = [self._request(case, idx, chosen, edition) for idx in range(len(case.requests))]
        return CaseDetermination(case_id=case.id, rulebook=ref, determinations=determinations)

    def evaluate_request(self, case: Case, index: int, edition: str | None = None) -> Determination:
        """The determination evaluate gives request ``index``, without judging the case's other
        requests (a what-if grid asks about one)."""
        edition = edition or self.edition
        chosen, _ = self._edition_of(case, edition)
        return self._request(case, index, chosen, edition)

    def _edition_of(self, case: Case, edition: str | None) -> tuple[Edition | None, RulebookRef]:
        """The edition a case is judged under, and the rulebook reference saying why (one per
        edition asked for and request date)."""
        key = (edition, case.request_date)
        found = self._editions.get(key)
        if found is not None:
            return found
        rb = self.rulebook
        if edition is not None:
            chosen = rb.edition(edition)
            basis = (f"edition {chosen.id} chosen by the user, not in effect on the request date "
                     f"{case.request_date or '(none documented)'}")
        else:
            chosen = rb.edition_for(case.request_date)
            basis = (f"request date {case.request_date}" if case.request_date else
                     "no request date documented: judged under the newest edition")
        ref = RulebookRef(edition=chosen.id if chosen else None, version=rb.version,
                          digest=rb.digest, edition_basis=basis, edition_chosen=edition is not None)
        if len(self._editions) > 4096:   # one per request date seen: keep it bounded
            self._editions.clear()
        found = self._editions[key] = (chosen, ref)
        return found

    def _request(self, case: Case, idx: int, chosen: Edition | None, edition: str | None) -> Determination:
        rb = self.rulebook
        fields, provenance = derive_request(case, idx, rb.drugs)
        req = DerivedRequest.of(fields)
        if chosen is None:
            spans = ", ".join(f"{e.id} {e.effective_from} to {e.effective_until or 'now'}"
                              for e in rb.manifest.editions)
            return self._no_rule(req, self.phrases.say("no_rule.no_edition", date=case.request_date, spans=spans))
        facts, fired = self._planned(case, req)
        return self._judge(fired, facts, req, provenance, chosen, None if edition is not None else case.request_date)

    def fire(self, case: Case, index: int = 0) -> list[str]:
        """Names of the durable rules that fire for one request (for --explain and tests)."""
        fields, _ = derive_request(case, index, self.rulebook.drugs)
        return self._fire(request_facts(case, DerivedRequest.of(fields), self.rulebook))

    def _fire(self, facts: dict[str, Any]) -> list[str]:
        compiled = self.compiled
        # a family holds every rule that can match this fact; no family, no rule can
        found = compiled.families_for(facts)
        items = facts.items()
        rulesets, families, chain = self._rulesets, compiled.families, self._chain
        if len(found) == 1:   # the usual case: one family, its fired rules as they come
            i = found[0]
            used = families[i].request_keys
            # only the keys some rule reads cross into durable_rules: less JSON, smaller facts
            return rulesets[i].evaluate([{k: v for k, v in items if k in used}], chain)
        fired: list[str] = []
        for i in found:
            used = families[i].request_keys
            fired += rulesets[i].evaluate([{k: v for k, v in items if k in used}], chain)
        return fired

    # -------------------------------------------------------------- internals
    def _planned(self, case: Case, req: DerivedRequest) -> tuple[dict[str, Any], list[str]]:
        """The request's fact, built from its (drug, modality)'s plan, and the rules it fires.

        The plan is made on the first request for the pair, from request_facts' full fact. A
        request whose fact sets other drug-class flags than the plan was made for (none, while
        a drug's classes are what drugs.yaml says) is judged from the full fact."""
        rb, compiled = self.rulebook, self.compiled
        key = (req.drug, req.modality)
        plan = self._fact_plans.get(key)
        if plan is None:
            facts = request_facts(case, req, rb)
            if len(self._fact_plans) > 4096:   # one per drug and modality seen: keep it bounded
                self._fact_plans.clear()
            self._fact_plans[key] = FactPlan(rb, compiled, case, req, facts)
            return facts, self._fire(facts)
        facts = plan.facts(case, req, rb)
        if not plan.classes_fixed and compiled.classes_on(facts) != plan.classes:
            facts = request_facts(case, req, rb)
            return facts, self._fire(facts)
        found = plan.families
        if not found:
            return facts, []
        # durable_rules is given the keys the rules that can apply read, nothing else
        payload = {k: facts[k] for k in plan.payload if k in facts}
        rulesets, chain = self._rulesets, self._chain
        if len(found) == 1:
            return facts, rulesets[found[0]].evaluate([payload], chain)
        fired: list[str] = []
        for i in found:
            fired += rulesets[i].evaluate([dict(payload)], chain)
        return facts, fired

    def determine(self, facts: dict[str, Any], req: dict[str, Any] | None = None,
                  provenance: dict[str, str] | None = None, edition: Edition | str | None = None,
                  request_date: Any = None) -> Determination:
        """The determination for one request fact (as request_facts builds it).

        The entry point below case handling: the oracle tests compare it with an independent
        evaluator over the whole fact vocabulary.
        """
        req = req if isinstance(req, DerivedRequest) else DerivedRequest.of(req or {"item": "<facts>", **{
            k: v for k, v in facts.items() if k in ("drug", "modality", "quantity", "refills", "sessions")}})
        if not isinstance(edition, Edition):
            edition = self.rulebook.edition(edition) if edition else self.rulebook.manifest.editions[-1]
        return self._judge(self._fire(facts), facts, req, provenance, edition, request_date)

    def _judge(self, fired: list[str], facts: dict[str, Any], req: DerivedRequest,
               provenance: dict[str, str] | None, edition: Edition, request_date: Any) -> Determination:
        """The determination from the durable rules fired for a request fact: the verdict the
        fired rules give under the parts in effect (worked out once per such pair), with this
        request's values filled in."""
        in_effect = self._in_effect.get((edition.id, request_date)) or self._parts_in_effect(edition, request_date)
        key = (frozenset(fired), in_effect)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdict(fired, in_effect)
            if len(self._verdicts) > 4096:   # one per set of fired rules seen: keep it bounded
                self._verdicts.clear()
            self._verdicts[key] = verdict
        if verdict.rules is None:
            if verdict.no_part:
                return self._no_rule(req, self.phrases.say("no_rule.no_part", edition=edition.id,
                                                           date=request_date or self.phrases["no_rule.no_part_date"]))
            return self._no_rule(req, self._why_no_rule(req))
        criteria: list[CriterionResult] = []
        add = criteria.append
        get_source = (provenance or {}).get
        unknown = self.phrases["finding.unknown_number"]
        # each criterion's fixed fields unpacked from one tuple (Engine._verdict): no attribute reads
        for rule_id, cid, asks, fact, test, state, decisive, finding, m, assumed in verdict.criteria:
            if assumed:
                add(CriterionResult(rule_id, cid, asks, fact, m.assume, "assumed", test, state,
                                    decisive, finding, m.because))
                continue
            value = facts.get(fact) if m.plain else m.value(facts)
            if finding is None:   # the sentence names the value
                finding = m.finding[state].replace("{value}", _show(value) if value is not None else unknown)
            # positional, in field order: keywords cost a little on every criterion
            add(CriterionResult(rule_id, cid, asks, fact, value, get_source(fact, m.source), test,
                                state, decisive, finding, None))
        decision, modified = verdict.decision, None
        if decision == "modify":
            modified = self._modified(req, facts, verdict.supply, verdict.sessions)
            if modified.sessions == 0:   # UR already certified all the guideline allows
                decision, modified = "non-certify", None
            last = self._last["modify"].format(item=req.item, modification=modified.change).strip() \
                if modified else self._last[decision].format(item=req.item).strip()
        else:
            last = self._last_of.get((decision, req.item))
            if last is None:
                last = self._last[decision].format(item=req.item).strip()
                if len(self._last_of) > 4096:   # one per decision and item text seen: keep it bounded
                    self._last_of.clear()
                self._last_of[(decision, req.item)] = last
        if verdict.lead is not None:
            rationale = f"{verdict.lead} {last}"
        else:   # some finding the rationale quotes names a value
            rationale = " ".join([*verdict.heads, *self._case_sentences(criteria), *verdict.closing, last])
        # positional, in field order
        return Determination(req.item, decision, decision == "certify", rationale, list(verdict.citations),
                             list(verdict.rule_ids), criteria, list(verdict.missing), modified)

    def _verdict(self, fired: list[str], in_effect: tuple[str, ...]) -> "_Verdict":
        """What a set of fired durable rules decides under the parts in effect, everything that
        does not depend on the request's values: the rules and their parts, each criterion's
        state and (where it names no value) its finding, the decision before any modification
        is sized, the missing documentation, the citations and the rationale's fixed sentences."""
        applied: set[str] = set()
        certified: set[str] = set()
        states: dict[tuple[str, str], tuple[str, bool]] = {}
        conflict = None
        meaning = self._meaning
        for name in fired:
            kind, rule_id, key, found = meaning[name]
            if kind == "criterion":
                # durable_rules activates a rule once per satisfied $or branch: a repeat of the
                # same state is expected, two different states are a compiler bug
                if states.setdefault(key, found) != found:
                    conflict = conflict or key
            elif kind == "applies":
                applied.add(rule_id)
            else:
                certified.add(rule_id)
        verdict = _Verdict()
        if not applied:
            return verdict
        by_id = self.rulebook.by_id
        part_of = self._part_of
        parts = {}
        for rule_id in applied:
            # the rule's part among those in effect, looked up once per rule and set of parts
            key = (rule_id, in_effect)
            p = part_of.get(key, part_of)
            if p is part_of:
                p = part_of[key] = _first_part(in_effect, by_id[rule_id].parts)
            if p:
                parts[rule_id] = p
        if not parts:
            verdict.no_part = True
            return verdict
        if conflict:
            raise EngineError(f"criterion {conflict} matched two states")
        rules = [by_id[i] for i in sorted(parts, key=self._rule_order.__getitem__)]
        criteria = []
        decision = "certify"
        supply: list[int] = []
        sessions: list[int] = []
        missing: list[str] = []
        for rule in rules:
            rule_id = rule.id
            blocking: list[_CriterionText] = []
            for m in self._criteria_of(rule):
                found = states.get(m.key)
                if found is None:
                    raise EngineError(f"no state matched for criterion {rule_id}/{m.id}")
                state, assumed = found
                finding = (m.assumed_finding[state] if assumed
                           else None if m.placeholder[state] else m.finding[state])
                criteria.append((rule_id, m.id, m.asks, m.fact, m.test, state, m.decisive, finding, m, assumed))
                if m.decisive and (state == FAILED or state == UNDOCUMENTED):
                    blocking.append(m)
                    if (state == UNDOCUMENTED or m.documentable) and m.missing not in missing:
                        missing.append(m.missing)
            recommendation = rule.recommendation
            if recommendation == "not-recommended":
                rule_decision = "non-certify"
            elif blocking:
                if all(m.modifies and states[m.key][0] == FAILED for m in blocking):
                    rule_decision = "modify"
                    for m in blocking:
                        if m.modify and m.modify.supply_days:
                            supply.append(m.modify.supply_days)
                        if m.modify and m.modify.sessions:
                            sessions.append(m.modify.sessions)
                else:
                    rule_decision = "non-certify"
            else:
                rule_decision = "certify"
            # the certify join in durable_rules and the criterion states must agree
            if (rule_id in certified) != (recommendation == "recommended" and not blocking):
                raise EngineError(f"rule {rule_id}: certify join disagrees with criterion states")
            if SEVERITY[rule_decision] > SEVERITY[decision]:
                decision = rule_decision
        if decision == "non-certify" and any(r.recommendation == "not-recommended" for r in rules):
            missing = []  # nothing the records could show changes a not-recommended agent
        texts = [self._texts.get((rule.id, parts[rule.id])) or self._rule_text(rule, parts[rule.id]) for rule in rules]
        verdict.rules, verdict.rule_ids = rules, tuple(r.id for r in rules)
        verdict.criteria, verdict.decision, verdict.missing = tuple(criteria), decision, tuple(missing)
        verdict.supply, verdict.sessions = supply, sessions
        verdict.citations = tuple(self._citations(texts))
        verdict.heads = [t.head for t in texts] + [e for t in texts for e in t.extras]
        closing = []
        if any(r.recommendation == "not-recommended" for r in rules):
            names = ", ".join(r.parts[parts[r.id]].section for r in rules if r.recommendation == "not-recommended")
            closing.append(self.phrases.say("rationale.not_recommended", sections=names).strip())
        verdict.closing = closing
        # the rationale quotes decisive findings and failed cautions: fixed text unless one names a value
        if not any(c[7] is None and (c[6] or c[5] == FAILED) for c in criteria):
            fixed = [_Quoted(decisive, state, finding) for *_, state, decisive, finding, _, _ in criteria]
            verdict.lead = " ".join([*verdict.heads, *self._case_sentences(fixed), *closing])
        return verdict
    def _criteria_of(self, rule: Rule) -> list[_CriterionText]:
        """A rule's criteria as determinations report them, made the first time the rule applies."""
        found = self._criteria.get(rule.id)
        if found is None:
            found = self._criteria[rule.id] = [
                _CriterionText(rule, c, self.rulebook.facts.get(c.fact), self._documentable(c), self.phrases)
                for c in rule.criteria]
        return found

    def _parts_in_effect(self, edition: Edition, day: Any) -> tuple[str, ...]:
        """The edition's guideline parts in effect on the day, in the edition's order (what
        Rule.part_in walks for every rule)."""
        key = (edition.id, day)
        found = self._in_effect.get(key)
        if found is None:
            if len(self._in_effect) > 4096:   # one entry per request date seen: keep it bounded
                self._in_effect.clear()
            found = self._in_effect[key] = tuple(p.id for p in edition.parts if day is None or p.covers(day))
        return found

    def _documentable(self, crit: Criterion) -> bool:
        """Could more documentation turn this failed criterion around? Not when the request
        itself names what is excluded (a compound's ingredients, a knee for manipulation)."""
        if crit.test.op == "excludes":
            return False
        spec = self.rulebook.facts.get(crit.fact)
        return spec is not None and spec.type in ("boolean", "list") and spec.source != "derived"

    def _modified(self, req: DerivedRequest, facts: dict, supply: list[int], sessions: list[int]) -> ModifiedRequest:
        say = self.phrases.say
        if sessions:
            # the guideline's count less the visits UR already certified from the same request
            n = max(min(sessions) - (req.authorized_sessions or 0), 0)
            change = say("modification.visits", sessions=n)
            return ModifiedRequest(item=say("modification.item", item=req.item, modification=change),
                                   sessions=n, change=change)
        days = min(supply)
        spec = self.rulebook.drugs.spec(req.drug or "")
        qty = math.floor(days * spec.daily_units) if spec else None
        change = say("modification.supply", quantity=qty, days=days)
        return ModifiedRequest(item=say("modification.item", item=req.item, modification=change),
                               quantity=qty, refills=0, supply_days=days, change=change)

    def _rule_text(self, rule: Rule, part: str) -> _RuleText:
        """A rule's citations and static rationale sentences under one guideline part: the same
        for every request, so built once."""
        key = (rule.id, part)
        text = self._texts.get(key)
        if text is None:
            c, say = rule.parts[part], self.phrases.say
            where = say("rationale.where_pages", section=c.section, pages=c.pages) if c.pages else f"{c.section}"
            extras = []
            for extra in rule.also_cites:
                if extra.for_:
                    pages = extra.pages.get(part)
                    extras.append((say("rationale.also_cited_pages", section=extra.section, pages=pages, why=extra.for_)
                                   if pages else say("rationale.also_cited", section=extra.section, why=extra.for_))
                                  .strip())
            citations = tuple(((x.guideline, x.section, x.pages),
                               CitationOut(x.guideline, x.section, x.pages, x.certainty, x.part))
                              for x in rule.citations(part))
            text = self._texts[key] = _RuleText(say("rationale.heading", guideline=c.guideline, where=where,
                                                    recommends=rule.recommends).strip(),
                                                tuple(extras), citations)
        return text

    @staticmethod
    def _citations(texts: list[_RuleText]) -> list[CitationOut]:
        seen, out = set(), []
        for text in texts:
            for key, citation in text.citations:
                # a section cited without pages adds nothing to the same section cited with them
                # (ketorolac's entry in the NSAIDs' specific drug list, which the class also cites)
                if key not in seen and (key[2] or key[:2] not in seen):
                    seen.add(key)
                    seen.add(key[:2])
                    out.append(citation)
        return out

    def _case_sentences(self, criteria: list) -> list[str]:
        """The rationale's sentences on the case: the decisive findings met, failed and not
        documented, and the failed cautions (each finding once, in order)."""
        say, phrase = self.phrases.say, self.phrases.__getitem__
        met, failed, undocumented, cautions = {}, {}, {}, {}   # dicts: unique, in order
        for c in criteria:
            state = c.state
            if c.decisive:
                if state == MET:
                    met[c.finding] = None
                elif state == FAILED:
                    failed[c.finding] = None
                elif state == UNDOCUMENTED:
                    undocumented[c.finding] = None
            elif state == FAILED:
                cautions[c.finding] = None
        parts, case_bits = [], []
        if met:
            case_bits.append("; ".join(met))
        if failed:
            case_bits.append((phrase("rationale.however") if met else "") + "; ".join(failed))
        if undocumented:
            case_bits.append("; ".join(undocumented))
        if case_bits:
            parts.append(say("rationale.in_this_case", findings="; ".join(case_bits)).strip())
        if cautions:
            parts.append(say("rationale.also_noted", cautions="; ".join(cautions)).strip())
        return parts

    def _why_no_rule(self, req: DerivedRequest) -> str:
        say = self.phrases.say
        if req.drug:
            spec = self.rulebook.drugs.spec(req.drug)
            classes = (say("no_rule.drug_classes", classes=", ".join(spec.classes)) if spec
                       else self.phrases["no_rule.drug_unknown"])
            return say("no_rule.drug", drug=req.drug, classes=classes)
        if req.modality:
            return say("no_rule.modality", modality=req.modality.replace("_", " "))
        return self.phrases["no_rule.unknown_item"]

    def _no_rule(self, req: DerivedRequest, reason: str) -> Determination:
        return Determination(
            request=req.item, decision="no-rule", medically_necessary=None,
            rationale=self.phrases.say("no_rule.rationale", reason=reason),
            citations=[], rules_fired=[], criteria=[], missing_documentation=[], reason=reason)


_default: Engine | None = None
_by_rules_dir: dict[str | None, Engine] = {}


def process_engine(rules_dir: str | None = None) -> Engine:
    """One engine per worker process and rulebook directory: compiling once, not per task."""
    engine = _by_rules_dir.get(rules_dir)
    if engine is None:
        engine = _by_rules_dir[rules_dir] = Engine(load_rulebook(rules_dir))
    return engine


def default_engine() -> Engine:
    global _default
    if _default is None:
        _default = Engine()
    return _default


def evaluate(case: Case, engine: Engine | None = None) -> CaseDetermination:
    return (engine or default_engine()).evaluate(case)
