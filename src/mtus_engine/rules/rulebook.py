"""The rulebook: guideline rules as YAML data, their fact and drug vocabularies, and lint.

A rulebook directory holds ``rulebook.yaml`` (name, version, editions), ``vocabulary/``
(facts.yaml, drugs.yaml) and one rule file per guideline section. Rule tests live beside
their section as ``*.test.yaml``. Every problem is reported with its file and line.

rules/schema.py's pydantic models validate the YAML; a Rulebook holds what they validated as
the plain records of rules/records.py, which the start-up cache pickles: importing this module
and a warm load import no pydantic. The part names here (Rule, Criterion, FactSpec, ...) are
the record classes, the types a Rulebook's contents have; ``Rule.model_validate(data)``
validates with the schema model of the same name and gives the record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
import re
import sys
import functools
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from .records import (AppliesTo, AppliesWhen, Assume, Citation, Criterion, DrugSpec, Edition, ExtraCitation,  # noqa: F401
                      FactSpec, Guard, GuardDefault, Manifest, Modify, Part, PartCitation, Quote, Rule, RuleFile,
                      Solve, Test, record_of)

from ..errors import RulebookError
from ..yamlio import line_of, parse_document, plain, read_bytes
from ..errors import InputError
from .phrases import phrase_problems

PLACEHOLDER = re.compile(r"\{(\w*)\}")
ALLOWED_PLACEHOLDERS = {"value"}
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
# where a name may start in lowercased ASCII text: not after a letter (_pattern's lookbehind)
_WORD_START = re.compile(r"(?<![a-z])[\s\S]")
_SCAN_LIMIT = 4000   # longer text (a letter): the compiled pattern, worth its cost there


class DrugVocabulary:
    """Brand, generic and alias names to the generic; finds a drug named inside item text."""

    def __init__(self, drugs: dict[str, DrugSpec]):
        self.drugs = drugs
        self._names: dict[str, str] = {}
        for generic, spec in drugs.items():
            for name in (generic, *spec.brands, *spec.aliases):
                self._names[name.lower()] = generic

    @cached_property
    def _pattern(self) -> re.Pattern:
        # longest first so "tramadol/acetaminophen" wins over "tramadol"
        alternatives = sorted(self._names, key=len, reverse=True)
        return re.compile(
            r"(?<![A-Za-z])(" + "|".join(re.escape(n) for n in alternatives) + r")(?![A-Za-z])", re.I)

    @cached_property
    def _by_first(self) -> dict[str, tuple[str, ...]] | None:
        """The names by first character, longest first (as _pattern tries them); None when a name
        is not ASCII (re.I's case folding is not str.lower's there)."""
        if not all(n.isascii() for n in self._names):
            return None
        out: dict[str, list[str]] = {}
        for n in sorted(self._names, key=len, reverse=True):
            out.setdefault(n[0], []).append(n)
        return {c: tuple(ns) for c, ns in out.items()}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_pattern", "_by_first")}

    def _spans(self, text: str, first: bool):
        """(start, end, name) of each name in the text, as _pattern.finditer gives them (leftmost,
        then longest, not inside a word), without compiling a pattern of every name (~10 ms a
        start, growing with the vocabulary). Long text, non-ASCII text or names, or a pattern
        compiled already: the pattern."""
        index = None if "_pattern" in self.__dict__ or len(text) > _SCAN_LIMIT or not text.isascii() \
            else self._by_first
        if index is None:
            for m in self._pattern.finditer(text):
                yield m.start(1), m.end(1), m.group(1).lower()
                if first:
                    return
            return
        low = text.lower()
        size = len(low)
        at = 0
        for m in _WORD_START.finditer(low):
            i = m.start()
            if i < at:
                continue
            for n in index.get(low[i], ()):
                end = i + len(n)
                if low.startswith(n, i) and (end == size or low[end] not in _LETTERS):
                    yield i, end, n
                    if first:
                        return
                    at = end
                    break

    def names(self) -> dict[str, str]:
        """Every known name (lowercase brand, generic or alias) -> its generic."""
        return dict(self._names)

    def generic(self, name: str) -> str | None:
        key = name.strip().lower()
        if key in self._names:
            return self._names[key]
        return self.find_in_text(key)

    def find_in_text(self, text: str) -> str | None:
        for _, _, n in self._spans(text, True):
            return self._names[n]
        return None

    def find_all_in_text(self, text: str) -> list[str]:
        """Every drug named in the text, in order, once each (a compound's ingredients)."""
        return list(dict.fromkeys(self._names[n] for _, _, n in self._spans(text, False)))

    def spec(self, generic: str) -> DrugSpec | None:
        return self.drugs.get(generic)


def default_rules_dir() -> Path:
    """``$MTUS_RULES``, else the checkout's ``rules/``, else the copy installed with the package."""
    env = os.environ.get("MTUS_RULES")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    checkout = here.parents[3] / "rules"
    if (checkout / "rulebook.yaml").exists():
        return checkout
    return here.parents[1] / "rulebook"


class Rulebook:
    """A loaded and linted rulebook. Immutable once built."""

    def __init__(self, directory: Path, manifest: Manifest, facts: dict[str, FactSpec],
                 drugs: DrugVocabulary, files: dict[str, RuleFile], digest: str,
                 items: dict[str, list[dict[str, Any]]] | None = None):
        self.directory = directory
        self.items = items or {}     # vocabulary/items.yaml's tables (see item_tables)
        self.manifest = manifest
        self.facts = facts
        self.drugs = drugs
        self.files = files
        self.digest = digest
        rules = [r for f in files.values() for r in f.rules]
        # drug rules first, then modality, then class; ties by id for a stable order
        self.rules: list[Rule] = sorted(rules, key=lambda r: (r.specificity, r.id))
        self.by_id = {r.id: r for r in self.rules}

    def __reduce__(self):
        # the constructor's inputs only: the cached properties and the derivation plan (closures)
        # are rebuilt on first use
        # the plan's shape (its order and dependencies, data) is kept: a warm start compiles
        # only the steps its requests need
        plan = self.__dict__.get("_plan") or self.__dict__.get("derivation_plan")
        return (Rulebook, (self.directory, self.manifest, self.facts, self.drugs, self.files, self.digest,
                           self.items), {"_plan_shape": plan.shape} if plan is not None else None)

    @property
    def caches(self) -> bool:
        """Whether cached() keeps what it builds (a rulebook loaded from a directory, the cache on)."""
        return self.__dict__.get("_cache_key") is not None and not os.environ.get("MTUS_NO_CACHE")

    def cached(self, kind: str, build: Callable[[], Any]) -> Any:
        """build(), kept in the start-up cache beside this rulebook and reused while the rule files
        and the code are unchanged (e.g. the engine's compiled rules). References to this rulebook
        inside are stored as such. A rulebook not loaded from a directory just builds."""
        if not self.caches:
            return build()
        path = _cache_path(self.__dict__["_cache_key"], kind)
        me = self

        class _In(pickle.Unpickler):
            def persistent_load(self, pid: Any) -> Any:
                if pid != "rulebook":
                    raise pickle.UnpicklingError(pid)
                return me

        class _Out(pickle.Pickler):
            def persistent_id(self, obj: Any) -> Any:
                return "rulebook" if obj is me else None

        try:
            with open(path, "rb") as fh:
                return _In(fh).load()
        except Exception:   # missing, corrupt, from another version: build it
            pass
        out = build()
        _write_atomic(path, out, _Out)
        return out

    @property
    def version(self) -> str:
        return self.manifest.version

    def edition(self, edition_id: str) -> Edition:
        for ed in self.manifest.editions:
            if ed.id == edition_id:
                return ed
        raise InputError("--edition", f"unknown edition {edition_id!r}",
                         expected="one of " + ", ".join(e.id for e in self.manifest.editions))

    def edition_for(self, day: dt.date | None) -> Edition | None:
        if day is None:
            # an undated request is judged by the newest edition; the determination says so
            return self.manifest.editions[-1]
        for ed in self.manifest.editions:
            if ed.covers(day):
                return ed
        return None

    @cached_property
    def derivation_plan(self):
        """Every derived fact compiled from its declaration, in dependency order: the plan the
        loader compiled while linting; from the start-up cache, one compiling each step on first
        use; else compiled here once (a Rulebook built by hand)."""
        from ..evaluation.derivations import Plan
        plan = self.__dict__.pop("_plan", None) or Plan(self.facts, self.reads, self.__dict__.pop("_plan_shape", None))
        plan.reads = self.reads
        return plan

    @cached_property
    def _reads(self) -> dict[tuple[str, str], frozenset[str]]:
        """Facts read by the rules that can apply to a drug or a modality, worked out for each
        when first asked (for every drug at once it was ~5 ms of a cold evaluate)."""
        return {}

    def reads(self, drug: str | None, modality: str | None) -> frozenset[str]:
        """Facts some rule for this drug or modality reads (derivations can skip the rest)."""
        key = ("drug", drug) if drug else ("modality", modality or "")
        found = self._reads.get(key)
        if found is None:
            if drug:
                spec = self.drugs.drugs.get(drug)
                classes = set(spec.classes) if spec else set()
                rules = [r for r in self.rules if spec and (drug in r.applies_to.drugs
                                                              or classes & set(r.applies_to.classes))]
            else:
                rules = [r for r in self.rules if key[1] in r.applies_to.modalities]
            found = self._reads[key] = frozenset(
                [f for r in rules for c in r.criteria for f in (c.fact, c.when and c.when.fact) if f]
                + [r.applies_when.fact for r in rules if r.applies_when])
        return found

    @cached_property
    def test_files(self) -> list[Path]:
        return sorted(self.directory.rglob("*.test.yaml"))


# ------------------------------------------------------------------ loading

def _where(source: str, data: Any, path: tuple) -> str:
    line = line_of(data, path)
    return f"{source}:{line}" if line else source


def _validation_problems(exc: Any, source: str, data: Any) -> list[str]:
    """A pydantic ValidationError's problems, each at its file and line."""
    out = []
    for err in exc.errors():
        path = tuple(err["loc"])
        dotted = ".".join(str(p) for p in path) or "document"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(f"{_where(source, data, path)}: {dotted}: {msg}")
    return out


def _load_yaml(path: Path, problems: list[str]) -> Any:
    try:
        return parse_document(read_bytes(path), str(path))
    except InputError as exc:
        problems.append(exc.message)
        return None


_loaded: dict[tuple, Rulebook] = {}


# ------------------------------------------------------------------ the start-up cache
# Parsing and validating the YAML is most of a cold start's rulebook load; a rulebook that
# loaded cleanly is kept pickled in a user cache directory, keyed by every rule file's path,
# size and mtime, this package's source files and the Python version. Only clean loads are
# cached, so lint problems always come from the YAML, with file and line. Any failure to read
# or write the cache (read-only home, corrupt or foreign file) falls back to the YAML.

def cache_dir() -> Path:
    """$MTUS_CACHE_DIR, else $XDG_CACHE_HOME/mtus-engine, else ~/.cache/mtus-engine."""
    if os.environ.get("MTUS_CACHE_DIR"):
        return Path(os.environ["MTUS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mtus-engine"


@functools.cache
def _code_key() -> tuple:
    """What the pickled objects' classes depend on: this package's modules (a changed model or
    compiler invalidates every entry) and the Python version. Taken once: the code this process
    runs is the code it imported, even if the files change under a long-running service."""
    from .. import __version__
    here = str(Path(__file__).parents[1])
    out = []
    # os.walk and os.stat, as _files_key (Path.rglob cost a few ms of every start)
    found = [os.path.join(where, name) for where, _, names in os.walk(here) for name in names if name.endswith(".py")]
    for p in sorted(found, key=lambda path: path.split(os.sep)):
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append((os.path.relpath(p, here), st.st_size, st.st_mtime_ns))
    # the `accepted` mark vouches for durable_rules' own parser: an upgrade of its C engine
    # must check every family's ruleset again (found, not imported: no start-up cost)
    import importlib.util
    spec = importlib.util.find_spec("durable_rules_engine")
    try:
        st = os.stat(spec.origin) if spec and spec.origin else None
        engine_key = (spec.origin, st.st_size, st.st_mtime_ns) if st else None
    except OSError:
        engine_key = None
    return (__version__, sys.version, tuple(out), engine_key)


def _cache_path(key: tuple, kind: str) -> Path:
    # one entry per rules directory and kind: a newer entry replaces the stale ones
    where = hashlib.sha256(repr(key[0]).encode()).hexdigest()[:16]
    what = hashlib.sha256(repr((_CACHE_FORMAT, _code_key(), key)).encode()).hexdigest()[:16]
    return cache_dir() / f"{kind}-{where}-{what}.pickle"


_CACHE_FORMAT = 2      # 2: records (rules/records.py), not pydantic models


def _read_cache(root: Path, key: tuple) -> Rulebook | None:
    if os.environ.get("MTUS_NO_CACHE"):
        return None
    try:
        with open(_cache_path(key, "rulebook"), "rb") as fh:
            rulebook = pickle.load(fh)
    except Exception:    # missing, corrupt, from another version: load the YAML
        return None
    if not isinstance(rulebook, Rulebook):
        return None
    rulebook.directory = root     # as the caller spelled it
    rulebook.__dict__["_cache_key"] = key
    return rulebook


def _write_atomic(path: Path, obj: Any, pickler: Any = None) -> None:
    """Write obj pickled to path via a temporary file and os.replace (a concurrent reader sees
    the old file or the new one, never half); stale entries of the same kind and directory go."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        import tempfile     # only when writing (shutil, random...): not on a warm start
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                (pickler or pickle.Pickler)(fh, pickle.HIGHEST_PROTOCOL).dump(obj)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        stem = path.name.rsplit("-", 1)[0] + "-"
        for old in path.parent.glob(stem + "*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
    except Exception:    # unwritable, full, or unpicklable: the cache is only an optimisation
        pass


def _write_cache(rulebook: Rulebook, key: tuple) -> None:
    rulebook.__dict__["_cache_key"] = key
    if not os.environ.get("MTUS_NO_CACHE"):
        _write_atomic(_cache_path(key, "rulebook"), rulebook)


def _files_key(root: Path) -> tuple:
    """What a loaded rulebook depends on: every YAML file's path, size and modification time."""
    # os.walk and os.stat, not Path.rglob and Path.stat: the same files in the same order (a
    # path's parts) at a tenth of the cost, which every start pays
    found: list[str] = []
    for where, _, names in os.walk(root):
        found.extend(os.path.join(where, name) for name in names if name.endswith(".yaml"))
    out = []
    for p in sorted(found, key=lambda path: path.split(os.sep)):
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append((p, st.st_size, st.st_mtime_ns))
    return (str(root.resolve()), tuple(out))


# the key cached_rulebook took, for the load_rulebook that follows it: the case model's import
# asks first and the command's engine next, and the start walks the rules directory once
_handed_over: tuple[str, tuple] | None = None
# only a command's start, which loads right after that import, takes the hand-over
# (arm_hand_over): a library user may edit the rules between importing the case model and
# loading, and would be handed the rulebook from before the edit
_hand_over_armed = False


def arm_hand_over() -> None:
    """Let the next cached_rulebook(hand_over=True) hand its files' key to the load that follows
    (once): for a command that loads the rulebook straight after importing the case model."""
    global _hand_over_armed
    _hand_over_armed = True


def _key_for_load(root: Path) -> tuple:
    global _handed_over
    handed, _handed_over = _handed_over, None
    return handed[1] if handed is not None and handed[0] == str(root) else _files_key(root)


def cached_rulebook(directory: str | Path | None = None, *, hand_over: bool = False) -> Rulebook | None:
    """The rulebook load_rulebook would give, when it is in memory or in the start-up cache;
    None rather than read any YAML (the case model's import asks; it cannot load a rulebook).
    hand_over: the next load_rulebook of this directory takes the files' key found here (the
    import's look-up and the command's load, one walk of the rules a start), if arm_hand_over()
    was called."""
    global _handed_over, _hand_over_armed
    root = Path(directory) if directory else default_rules_dir()
    if not (root / "rulebook.yaml").exists():
        return None
    key = _files_key(root)
    if hand_over and _hand_over_armed:
        _handed_over, _hand_over_armed = (str(root), key), False
    found = _loaded.get(key)
    if found is None:
        found = _read_cache(root, key)
        if found is not None:
            _loaded[key] = found
    return found


def load_rulebook(directory: str | Path | None = None) -> Rulebook:
    """Load, validate and lint a rulebook; raise RulebookError listing every problem.

    A Rulebook is immutable, so one loaded from unchanged files is reused (the extractor, the
    engine and the service each ask for it); an edited file is loaded afresh."""
    root = Path(directory) if directory else default_rules_dir()
    if not (root / "rulebook.yaml").exists():
        raise RulebookError([f"{root}: not a rulebook directory (no rulebook.yaml)"])
    key = _key_for_load(root)
    cached = _loaded.get(key)
    if cached is None:
        cached = _read_cache(root, key)
        if cached is None:
            cached = _load_rulebook(root)
            _write_cache(cached, key)
        _loaded[key] = cached
    return cached


def _load_rulebook(root: Path) -> Rulebook:
    problems: list[str] = []
    digest = hashlib.sha256()

    # the schema (pydantic) validates; the rulebook holds what it validated as records
    from pydantic import ValidationError

    from . import schema

    def load_model(path: Path, model: type, sub: str | None = None):
        data = _load_yaml(path, problems)
        if data is None:
            return None, None
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        payload = data.get(sub) if (sub and isinstance(data, dict)) else data
        try:
            if sub:
                if not isinstance(payload, dict):
                    problems.append(f"{path}: expected a mapping under {sub}:")
                    return None, data
                return {k: record_of(model.model_validate(v)) for k, v in payload.items()}, data
            return record_of(model.model_validate(payload)), data
        except ValidationError as exc:
            problems.extend(_validation_problems(exc, str(path), data))
            return None, data

    manifest, _ = load_model(root / "rulebook.yaml", schema.Manifest)
    facts, facts_data = load_model(root / "vocabulary" / "facts.yaml", schema.FactSpec, "facts")
    fact_where = {n: (str(root / "vocabulary" / "facts.yaml"), facts_data) for n in facts or {}}
    # a family of facts may keep its own file (vocabulary/facts-imaging.yaml, ...)
    for extra in sorted((root / "vocabulary").glob("facts-*.yaml")):
        more, more_data = load_model(extra, schema.FactSpec, "facts")
        for name in (more or {}):
            if facts and name in facts:
                problems.append(f"{_where(str(extra), more_data, ('facts', name))}: fact {name!r} is "
                                f"declared twice (also in facts.yaml or another facts-*.yaml)")
        if facts is not None and more:
            facts = {**facts, **more}
            fact_where.update({n: (str(extra), more_data) for n in more})
    drug_specs, _ = load_model(root / "vocabulary" / "drugs.yaml", schema.DrugSpec, "drugs")
    # the item table: hashed into the digest below with the other vocabulary (as before)
    items_path = root / "vocabulary" / "items.yaml"
    items_data = _load_yaml(items_path, problems)
    declared = {label: (facts or {}).get(fact) for label, fact in (("modality", "modality"), ("region", "body_region"))}
    items, found = item_tables(items_data, str(items_path), compile_patterns=True,
                               names={label: spec.values for label, spec in declared.items() if spec and spec.values}) \
        if items_data is not None else ({}, [])
    problems.extend(p.message for p in found)
    facts = facts or {}
    drugs = DrugVocabulary(drug_specs or {})
    # the engine's sentences are part of the rulebook: lint them with the rest
    problems.extend(phrase_problems(root))

    files: dict[str, RuleFile] = {}
    rule_paths = sorted(p for p in root.rglob("*.yaml")
                        if p.parent.name != "vocabulary" and p.name != "rulebook.yaml"
                        and not p.name.endswith(".test.yaml"))
    parts_by_id: dict[str, Part] = {}
    for ed in (manifest.editions if manifest else []):
        for part in ed.parts:
            parts_by_id.setdefault(part.id, part)
    seen_ids: dict[str, str] = {}
    for path in rule_paths:
        rf, data = load_model(path, schema.RuleFile)
        if rf is None:
            continue
        source = str(path.relative_to(root.parent)) if root.parent in path.parents else str(path)
        cited: dict[str, Citation] = {}
        for part_id, pc in rf.parts.items():
            part = parts_by_id.get(part_id)
            if part is None:
                problems.append(f"{_where(str(path), data, ('parts', part_id))}: unknown guideline part "
                                f"{part_id!r} (rulebook.yaml declares {sorted(parts_by_id)})")
                continue
            cited[part_id] = Citation(guideline=part.title, section=pc.section or rf.section,
                                      pages=pc.pages, certainty=pc.certainty, note=pc.note, part=part_id)
        rules = []
        for i, rule in enumerate(rf.rules):
            line = line_of(data, ("rules", i)) or 0
            rules.append(rule.model_copy(update={"parts": cited, "file": source, "line": line}))
            for j, extra in enumerate(rule.also_cites):
                for part_id in extra.pages:
                    if part_id not in rf.parts:
                        problems.append(f"{_where(str(path), data, ('rules', i, 'also_cites', j, 'pages'))}: "
                                        f"pages for part {part_id!r}, which this file does not cite")
        rf = rf.model_copy(update={"rules": rules})
        files[source] = rf
        for i, rule in enumerate(rf.rules):
            where_rule = _where(str(path), data, ("rules", i, "id"))
            if rule.id in seen_ids:
                problems.append(f"{where_rule}: duplicate rule id {rule.id!r} (first in {seen_ids[rule.id]})")
            seen_ids.setdefault(rule.id, where_rule)
            problems.extend(_lint_rule(rule, i, str(path), data, facts, drugs))

    plan = None
    if facts:
        found, plan = _lint_derivations(facts, fact_where)
        problems.extend(found)
    if problems:
        raise RulebookError(problems)
    # the vocabulary read elsewhere (the item table, the phrasebook) decides outputs too: the
    # digest a determination names must change when they do
    for path in sorted((root / "vocabulary").glob("*.yaml")):
        if path.name not in {"facts.yaml", "drugs.yaml"} and not path.name.startswith("facts-"):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    rulebook = Rulebook(root, manifest, facts, drugs, files, digest.hexdigest()[:12], items)
    rulebook.__dict__["_plan"] = plan     # compiled once, at load
    return rulebook


ITEM_TABLES = (("item_modalities", "modality"), ("text_modalities", "modality"),
               ("text_regions", "region"), ("item_regions", "region"))


def item_tables(data: Any, source: str, compile_patterns: bool = False, names: dict[str, Any] | None = None
                ) -> tuple[dict[str, list[dict[str, Any]]], list[InputError]]:
    """vocabulary/items.yaml's tables, each entry checked: a name, a pattern (a string or a list
    of pieces, joined), ``strong`` and ``ignore_case`` booleans, no other key; and the problems,
    each naming the file, line and entry. ``names`` (label -> the values the fact vocabulary
    declares for it) makes a modality or region it does not declare one too. With
    compile_patterns (the rulebook load, cached after) a pattern that does not compile is one
    too; the case model's YAML fallback leaves that to first use."""
    tables: dict[str, list[dict[str, Any]]] = {}
    problems: list[InputError] = []
    for key, label in ITEM_TABLES:
        rows = data.get(key) if isinstance(data, dict) else None
        if not isinstance(rows, list) or not rows:
            problems.append(InputError(source, f"{key} is missing", expected=f"a list of entries with {label} and pattern"))
            continue
        known = {label, "pattern", "strong", "ignore_case"}
        for n, row in enumerate(rows):
            where, line = f"{key}[{n}]", line_of(data, (key, n))
            # a misspelt key would be dropped, a name outside the vocabulary reach the engine
            # as a request no rule covers: both silently change what items mean
            extra = sorted(str(k) for k in row if k not in known) if isinstance(row, dict) else []
            if extra:
                problems.append(InputError(source, f"unknown key {', '.join(extra)}", location=where, line=line,
                                           expected=f"only {label}, pattern, strong and ignore_case"))
            allowed = (names or {}).get(label)
            if allowed is not None and isinstance(row, dict) and isinstance(row.get(label), str) \
                    and row[label] not in allowed:
                problems.append(InputError(source, f"unknown {label} {row[label]!r}", location=where, line=line,
                                           expected=f"one the fact vocabulary declares: {', '.join(allowed)}"))
            pattern = row.get("pattern") if isinstance(row, dict) else None
            if isinstance(pattern, list) and pattern and all(isinstance(p, str) for p in pattern):
                pattern = "".join(pattern)
            if not (isinstance(row, dict) and isinstance(row.get(label), str) and isinstance(pattern, str)
                    and isinstance(row.get("strong", False), bool) and isinstance(row.get("ignore_case", True), bool)):
                problems.append(InputError(source, "invalid entry", location=where, line=line,
                                           expected=f"{label}: a name, pattern: a regular expression (or a list of "
                                                    f"pieces), strong and ignore_case: true or false"))
                continue
            if compile_patterns:
                try:
                    re.compile(pattern, re.I if row.get("ignore_case", True) else 0)
                except re.error as exc:
                    problems.append(InputError(source, f"pattern does not compile: {exc}", location=where,
                                               line=line, expected="a Python regular expression"))
                    continue
            # plain values: the tables are pickled with the rulebook
            tables.setdefault(key, []).append({**plain(row), "pattern": pattern})
    return tables, problems


def _lint_derivations(facts: dict[str, FactSpec], where: dict[str, tuple[str, Any]]) -> tuple[list[str], Any]:
    """The compiled derivation plan, or the derived facts whose declaration does not compile:
    an unknown function or name, an input that is no fact, a cycle; each at its file and line."""
    from ..evaluation.derivations import Plan, PlanError
    try:
        return [], Plan(facts, lambda drug, modality: frozenset())
    except PlanError as exc:
        out = []
        for name, key, message in exc.problems:
            path, data = where.get(name, ("vocabulary", None))
            at = _where(path, data, ("facts", name, key)) if line_of(data, ("facts", name, key)) \
                else _where(path, data, ("facts", name))
            out.append(f"{at}: {message}")
        return out, None


def _lint_rule(rule: Rule, i: int, path: str, data: Any, facts: dict[str, FactSpec],
               drugs: DrugVocabulary) -> list[str]:
    out = []
    at = lambda *sub: _where(path, data, ("rules", i, *sub))  # noqa: E731
    for j, drug in enumerate(rule.applies_to.drugs):
        if drug not in drugs.drugs:
            out.append(f"{at('applies_to', 'drugs', j)}: unknown drug {drug!r} "
                       f"(not a generic name in vocabulary/drugs.yaml)")
    class_values = set((facts.get("drug_class") or FactSpec(type="list", source="derived", meaning="")).values or [])
    for j, cls in enumerate(rule.applies_to.classes):
        if cls not in class_values:
            out.append(f"{at('applies_to', 'classes', j)}: unknown drug class {cls!r}")
    if rule.applies_when is not None:
        spec = facts.get(rule.applies_when.fact)
        if spec is None:
            out.append(f"{at('applies_when')}: rule {rule.id} reads undeclared fact {rule.applies_when.fact!r}")
        elif not _value_fits(spec, rule.applies_when.equals):
            out.append(f"{at('applies_when')}: value {rule.applies_when.equals!r} does not fit "
                       f"{rule.applies_when.fact} ({spec.type})")
    if rule.citation is None or not rule.citation.section:
        out.append(f"{at('id')}: rule {rule.id} has no citation")
    if rule.recommendation == "not-recommended" and any(c.decisive for c in rule.criteria):
        out.append(f"{at('criteria')}: a not-recommended rule cannot have decisive criteria")
    crit_ids = set()
    for k, crit in enumerate(rule.criteria):
        cat = lambda *sub: at("criteria", k, *sub)  # noqa: E731
        if crit.id in crit_ids:
            out.append(f"{cat('id')}: duplicate criterion id {crit.id!r} in rule {rule.id}")
        crit_ids.add(crit.id)
        for fact_name, key in ((crit.fact, "fact"), (crit.when.fact if crit.when else None, "when")):
            if fact_name is None:
                continue
            spec = facts.get(fact_name)
            if spec is None:
                out.append(f"{cat(key)}: criterion {crit.id} reads undeclared fact {fact_name!r}")
                continue
            test = crit.test if key == "fact" else crit.when.test
            at_test = cat("when", test.op) if key == "when" else cat("test")
            out.extend(f"{at_test}: {p}" for p in _test_problems(test, fact_name, spec))
            if key == "when" and isinstance(crit.when.if_undocumented, Assume) \
                    and not _value_fits(spec, crit.when.if_undocumented.assume):
                out.append(f"{cat('when')}: assumed guard value {crit.when.if_undocumented.assume!r} "
                           f"does not fit {fact_name} ({spec.type})")
        spec = facts.get(crit.fact)
        if crit.assumed is not None and spec is not None and not _value_fits(spec, crit.assumed.assume):
            out.append(f"{cat('if_undocumented')}: assumed value {crit.assumed.assume!r} does not fit "
                       f"{crit.fact} ({spec.type})")
        if crit.on_failure == "modify" and crit.test.op not in ("lt", "lte"):
            out.append(f"{cat('on_failure')}: only a ceiling (lt/lte) can be modified down to")
        for field in ("met", "failed", "missing", "asks"):
            text = getattr(crit, field) or ""
            for name in PLACEHOLDER.findall(text):
                if name not in ALLOWED_PLACEHOLDERS:
                    out.append(f"{cat(field)}: unknown placeholder {{{name}}} (only {{value}})")
    return out


def _test_problems(test: Test, fact: str, spec: FactSpec) -> list[str]:
    op = test.op
    out = []
    if op in ("equals", "not_equals"):
        ok = _value_fits(spec, test.operand) and spec.type in ("boolean", "string")
    else:
        ok = {"documented": True, "includes": spec.type == "list",
              "excludes": spec.type == "list"}.get(op, spec.type in ("integer", "number"))
    if not ok:
        out.append(f"test {op} does not fit {fact} ({spec.type})")
    if op in ("includes", "excludes"):
        for v in [test.includes] if op == "includes" else test.excludes or []:
            if v not in (spec.values or []):
                out.append(f"{v!r} is not a declared value of {fact}")
    return out


def _value_fits(spec: FactSpec, value: Any) -> bool:
    if spec.type == "boolean":
        return isinstance(value, bool)
    if spec.type in ("integer", "number"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.type == "string":
        return isinstance(value, str) and (not spec.values or value in spec.values)
    return isinstance(value, list) and all(v in (spec.values or []) for v in value)


__all__ = ["Rulebook", "Rule", "Criterion", "Citation", "FactSpec", "DrugSpec", "Edition", "Part", "Test",
           "Guard", "load_rulebook", "cached_rulebook", "default_rules_dir", "DrugVocabulary", "record_of", "plain"]
