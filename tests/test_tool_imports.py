"""The benchmarks and scripts are run by hand, not by the suite: their imports of mtus_engine
are checked here, so a module moved or renamed (as in the move into subpackages) breaks a test
rather than the next person's measurement."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = sorted((ROOT / "benchmarks").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "mtus_engine":
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mtus_engine":
            for alias in node.names:
                yield node.lineno, node.module, alias.name


@pytest.mark.parametrize("path", TOOLS, ids=[p.relative_to(ROOT).as_posix() for p in TOOLS])
def test_a_tools_mtus_engine_imports_resolve(path):
    assert TOOLS
    for line, module, name in _imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            pytest.fail(f"{where}: import {module}: {exc}")
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                pytest.fail(f"{where}: from {module} import {name}: no such name or module")
