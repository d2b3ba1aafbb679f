"""mtus-engine: MTUS guideline rules as YAML, compiled into durable_rules, applied to cases.

Data flow: letter -> parsed letter -> case -> engine -> determination -> rendered rationale.
"""

# the single source of the version (pyproject reads it from here): importlib.metadata would
# cost ~50 ms of every cold start
__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), not here: `mtus --help`, `mtus extract`
# and the worker processes then load only the modules they need (start-up time).
_EXPORTS = {
    "Case": "evaluation.case", "Request": "evaluation.case",
    "load_case": "evaluation.case", "load_case_text": "evaluation.case",
    "CaseDetermination": "evaluation.determination", "Determination": "evaluation.determination",
    "Engine": "evaluation.engine", "evaluate": "evaluation.engine",
    "InputError": "errors", "MtusError": "errors", "RulebookError": "errors",
    "Rulebook": "rules.rulebook", "load_rulebook": "rules.rulebook",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
