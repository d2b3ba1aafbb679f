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


@pytest.fixture
def rules_copy(root, tmp_path) -> Path:
    """A copy of the rulebook, for a test to edit."""
    rules = tmp_path / "rules"
    shutil.copytree(root / "rules", rules)
    return rules


@pytest.fixture
def flexmax_rules(root, tmp_path, rules_copy) -> tuple[Path, Path]:
    """(a copy of the rulebook whose drugs add the brand Flexmax for cyclobenzaprine, a progress
    note that names the drug only as Flexmax): the note has a request only under the copy."""
    rules = rules_copy
    drugs = rules / "vocabulary" / "drugs.yaml"
    old = "brands: [Flexeril, Fexmid, Amrix]"
    assert old in drugs.read_text()
    drugs.write_text(drugs.read_text().replace(old, "brands: [Flexeril, Fexmid, Amrix, Flexmax]"))
    note = tmp_path / "note.txt"
    text = (root / "cases" / "notes" / "04-muscle-relaxant-chronic.txt").read_text()
    note.write_text(text.replace("Cyclobenzaprine", "Flexmax").replace("cyclobenzaprine", "Flexmax"))
    return rules, note
