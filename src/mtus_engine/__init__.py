"""mtus-engine: MTUS guideline rules as YAML, compiled into durable_rules, applied to cases.

Data flow: letter -> parsed letter -> case -> engine -> determination -> rendered rationale.
"""

# the single source of the version (pyproject reads it from here): importlib.metadata would
# cost ~50 ms of every cold start
__version__ = "0.1.0"

from .case import Case, Request, load_case, load_case_text  # noqa: E402
from .determination import CaseDetermination, Determination  # noqa: E402
from .engine import Engine, evaluate  # noqa: E402
from .errors import InputError, MtusError, RulebookError  # noqa: E402
from .rulebook import Rulebook, load_rulebook  # noqa: E402

__all__ = ["Case", "Request", "load_case", "load_case_text", "CaseDetermination", "Determination",
           "Engine", "evaluate", "InputError", "MtusError", "RulebookError", "Rulebook",
           "load_rulebook", "__version__"]
