from pathlib import Path

import pytest

from mtus_engine.engine import Engine
from mtus_engine.rulebook import load_rulebook

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine(load_rulebook(ROOT / "rules"))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
