"""The rulebook at run time: plain records (rules/records.py) built from what the pydantic schema
(rules/schema.py) validated, so a warm start imports no pydantic, with the schema's fields,
values and behaviour."""

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from mtus_engine.rules import records, schema
from mtus_engine.rules.records import RECORDS, record_of
from mtus_engine.rules.rulebook import Criterion, FactSpec, Rule, load_rulebook

from mtus_engine.yamlio import parse_document, read_bytes


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_each_record_has_its_schema_models_fields_and_defaults(name):
    model, record = getattr(schema, name), RECORDS[name]
    model.model_rebuild()
    assert record._fields == tuple(model.model_fields)
    for field, info in model.model_fields.items():
        if info.is_required():
            assert field not in record._defaults, field
        else:
            assert record._defaults[field] == info.get_default(call_default_factory=True), field
        assert record._aliases.get(field) == info.alias, field


@pytest.fixture(scope="module")
def rulebook():
    return load_rulebook()


def _rule_files(rulebook):
    for source in rulebook.files:
        path = rulebook.directory.parent / source
        yield schema.RuleFile.model_validate(parse_document(read_bytes(path), str(path)))


@pytest.mark.parametrize("options", [{}, {"mode": "json", "exclude_none": True}, {"exclude_defaults": True},
                                     {"by_alias": True, "exclude_none": True}])
def test_a_record_dumps_as_its_schema_model_does(rulebook, options):
    files = list(_rule_files(rulebook))
    assert len(files) == len(rulebook.files)
    for model in files:
        assert record_of(model).model_dump(**options) == model.model_dump(**options)
        for rule in model.rules:
            got = record_of(rule)
            assert got.applies_to.model_dump(**options) == rule.applies_to.model_dump(**options)
            assert type(got) is Rule and all(type(c) is Criterion for c in got.criteria)
    facts = parse_document(read_bytes(rulebook.directory / "vocabulary" / "facts.yaml"), "facts.yaml")["facts"]
    for raw in facts.values():
        model = schema.FactSpec.model_validate(raw)
        assert record_of(model).model_dump(**options) == model.model_dump(**options)


def test_records_behave_as_the_schema_models(rulebook):
    for model in _rule_files(rulebook):
        for rule_model in model.rules:
            rule = record_of(rule_model)
            assert rule == record_of(rule_model) and rule is not record_of(rule_model)
            assert rule.specificity == rule_model.specificity
            for crit, crit_model in zip(rule.criteria, rule_model.criteria):
                assert type(crit.test) is records.Test
                assert (crit.test.op, crit.test.describe(), crit.test.describe_negation()) == \
                       (crit_model.test.op, crit_model.test.describe(), crit_model.test.describe_negation())
                assert (crit.assumed is None) == (crit_model.assumed is None)
                if crit.when is not None:
                    assert type(crit.when.test) is records.Test
                    assert crit.when.test.describe() == crit_model.when.test.describe()
                    assert crit.when.applies_when_undocumented() == crit_model.when.applies_when_undocumented()
    # the citations a loaded rule gives are records too
    for rule in rulebook.rules:
        assert all(type(c) is records.Citation for c in rule.citations())


def test_values_of_any_type_dump_as_the_schema_model_dumps_them():
    # a fact's params (and an assume:) hold any value: a tuple is dumped as a tuple in python
    # mode and as a list in json mode by pydantic, None inside a mapping kept by exclude_none
    import datetime as dt
    model = schema.FactSpec.model_validate({"type": "boolean", "source": "derived", "meaning": "m", "function": "f",
                                            "params": {"a": None, "pair": (1, [2, (3,)]), "on": dt.date(2015, 1, 2)}})
    for options in ({}, {"exclude_none": True}, {"exclude_defaults": True}, {"mode": "json"},
                    {"mode": "json", "exclude_none": True, "by_alias": True}):
        dumped = record_of(model).model_dump(**options)
        assert dumped == model.model_dump(**options), options
        assert type(dumped["params"]["pair"]) is type(model.model_dump(**options)["params"]["pair"]), options


def test_records_are_immutable_and_validate_through_the_schema(rulebook):
    rule = rulebook.rules[0]
    with pytest.raises(AttributeError):
        rule.id = "other"
    with pytest.raises(AttributeError):
        del rule.title
    moved = rule.model_copy(update={"line": rule.line + 1})
    assert moved.line == rule.line + 1 and moved.id == rule.id and moved != rule
    spec = FactSpec.model_validate({"type": "integer", "source": "request", "meaning": "m", "minimum": 0})
    assert type(spec) is FactSpec and spec.minimum == 0 and spec.values is None
    # bad data: pydantic's error, as from the model itself
    with pytest.raises(ValidationError, match="minimum/maximum bound an integer or number fact"):
        FactSpec.model_validate({"type": "string", "source": "request", "meaning": "m", "minimum": 0})
    with pytest.raises(TypeError, match="meaning is required"):
        FactSpec(type="string", source="request")
    with pytest.raises(TypeError, match="unknown field"):
        FactSpec(type="string", source="request", meaning="", colour="red")


# the bundled rulebook's every part: each object's type and fields, recursively
_DUMP = """
import json, sys
from mtus_engine.rules import rulebook as rb
before = "pydantic" in sys.modules
book = rb.cached_rulebook() if sys.argv[1] == "cached" else rb.load_rulebook()
def walk(obj):
    if isinstance(obj, list):
        return [walk(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): walk(v) for k, v in obj.items()}
    fields = getattr(type(obj), "_fields", None)
    if fields is not None:
        return [type(obj).__module__ + "." + type(obj).__qualname__, {f: walk(getattr(obj, f)) for f in fields}]
    return repr(obj)
out = {"rules": walk(book.rules), "files": walk(book.files), "facts": walk(book.facts),
       "drugs": walk(book.drugs.drugs), "manifest": walk(book.manifest), "digest": book.digest}
print(json.dumps({"pydantic_at_import": before, "pydantic": "pydantic" in sys.modules, "book": out}))
"""


def _dump(env, how="load"):
    run = subprocess.run([sys.executable, "-c", _DUMP, how], env=env, capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


def test_a_warm_load_imports_no_pydantic_and_gives_what_a_cold_load_gives(tmp_path):
    env = {**os.environ, "MTUS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MTUS_NO_CACHE", None)
    uncached = _dump({**env, "MTUS_NO_CACHE": "1"})
    cold = _dump(env)             # validates the YAML with pydantic, writes the cache
    assert uncached["pydantic"] and cold["pydantic"]
    for how in ("load", "cached"):
        warm = _dump(env, how)
        assert not warm["pydantic_at_import"] and not warm["pydantic"], how
        assert warm["book"] == cold["book"] == uncached["book"]
    rules = cold["book"]["rules"]
    assert rules and {r[0] for r in rules} == {"mtus_engine.rules.records.Rule"}
