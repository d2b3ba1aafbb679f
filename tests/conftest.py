import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mtus_engine.evaluation.engine import Engine
from mtus_engine.rules.rulebook import load_rulebook

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # the suite's start-up cache entries (one per rules copy) go to a temporary directory, not
    # the user's ~/.cache; subprocesses inherit it
    os.environ["MTUS_CACHE_DIR"] = cache = tempfile.mkdtemp(prefix="mtus-test-cache-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine(load_rulebook(ROOT / "rules"))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
