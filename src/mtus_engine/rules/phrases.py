"""The engine's own sentences, read from the rulebook's vocabulary/phrases.yaml.

The rules hold the clinical text; this phrasebook holds the sentences the engine wraps around it
(rationale frame, findings for silent records, modifications, no-rule reasons), so the wording
is edited in rules/, not in Python.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml

from ..errors import EngineError, InputError
from ..yamlio import line_of, parse_document, read_bytes

# every key the engine uses, with the placeholders each may name
REQUIRED: dict[str, set[str]] = {
    "finding.not_documented": {"missing"},
    "finding.not_applicable": set(),
    "finding.not_applicable_when": {"fact", "negation"},
    "finding.assumed": {"missing", "value", "because", "finding"},
    "finding.unknown_number": set(),
    "rationale.heading": {"guideline", "where", "recommends"},
    "rationale.where_pages": {"section", "pages"},
    "rationale.also_cited": {"section", "why"},
    "rationale.also_cited_pages": {"section", "pages", "why"},
    "rationale.in_this_case": {"findings"},
    "rationale.however": set(),
    "rationale.also_noted": {"cautions"},
    "rationale.not_recommended": {"sections"},
    "rationale.certify": {"item"},
    "rationale.modify": {"item", "modification"},
    "rationale.non_certify": {"item"},
    "modification.visits": {"sessions"},
    "modification.supply": {"quantity", "days"},
    "modification.item": {"item", "modification"},
    "no_rule.rationale": {"reason"},
    "no_rule.drug": {"drug", "classes"},
    "no_rule.drug_classes": {"classes"},
    "no_rule.drug_unknown": set(),
    "no_rule.modality": {"modality"},
    "no_rule.unknown_item": set(),
    "no_rule.no_edition": {"date", "spans"},
    "no_rule.no_part": {"edition", "date"},
    "no_rule.no_part_date": set(),
}


class Phrases:
    """``phrases["rationale.certify"].format(item=...)``: checked once, at load."""

    def __init__(self, table: dict[str, str]):
        self._table = table

    def __getitem__(self, key: str) -> str:
        return self._table[key]

    def say(self, key: str, **values: object) -> str:
        return self._table[key].format(**values)


def _where(path: Path, data: Any, keys: tuple) -> str:
    line = line_of(data, keys)
    return f"{path}:{line}" if line else str(path)


def _check(path: Path, data: Any) -> tuple[dict[str, str], list[str]]:
    """The phrase table and every problem in it, each at its file (and line, when ``data``
    carries lines): a missing key, an unknown placeholder, a key the engine does not use."""
    if data is not None and not isinstance(data, dict):
        return {}, [f"{path}: expected a mapping of phrase groups (finding, rationale, ...)"]
    table: dict[str, str] = {}
    problems = []
    for group, entries in (data or {}).items():
        if not isinstance(entries, dict):
            problems.append(f"{_where(path, data, (group,))}: {group}: expected a mapping of phrase names to sentences")
            continue
        for name, text in entries.items():
            table[f"{group}.{name}"] = text
    for key, allowed in REQUIRED.items():
        group, name = key.split(".", 1)
        text = table.get(key)
        if text is None:
            problems.append(f"{_where(path, data, (group, name))}: {key}: missing (expected a sentence)")
            continue
        if not isinstance(text, str):
            problems.append(f"{_where(path, data, (group, name))}: {key}: not a sentence ({text!r}; expected a sentence)")
            continue
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(text) if f}
        except ValueError as exc:
            problems.append(f"{_where(path, data, (group, name))}: {key}: {exc}")
            continue
        if names - allowed:
            problems.append(f"{_where(path, data, (group, name))}: {key}: unknown placeholder(s) "
                            f"{', '.join(sorted(names - allowed))} (expected: {', '.join(sorted(allowed)) or 'none'})")
    problems += [f"{_where(path, data, tuple(key.split('.', 1)))}: {key}: not a phrase the engine uses"
                 for key in sorted(set(table) - set(REQUIRED))]
    return table, problems


def phrase_problems(rules_dir: Path) -> list[str]:
    """The phrasebook's problems with file and line, for the rulebook's lint (load_rulebook)."""
    path = rules_dir / "vocabulary" / "phrases.yaml"
    try:
        data = parse_document(read_bytes(path), str(path))
    except InputError as exc:
        return [exc.message]
    return _check(path, data)[1]


def load_phrases(rules_dir: Path) -> Phrases:
    path = rules_dir / "vocabulary" / "phrases.yaml"
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as exc:
        raise EngineError(f"{path}: cannot read the phrasebook: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise EngineError(f"{path}: not valid YAML: {exc}") from None
    table, problems = _check(path, data)
    if problems:
        raise EngineError("\n".join(problems))
    return Phrases(table)
