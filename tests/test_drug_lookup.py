"""The drug-name look-up without the compiled pattern of every name (a cold start's ~10 ms): the
same names found at the same places as the pattern, which stays the path for long or non-ASCII
text and non-ASCII names."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mtus_engine.rules.rulebook import DrugVocabulary, load_rulebook
from mtus_engine.rules.records import DrugSpec

ROOT = Path(__file__).resolve().parents[1]


def _by_pattern(vocab: DrugVocabulary, text: str) -> list[tuple[int, int, str]]:
    return [(m.start(1), m.end(1), vocab._names[m.group(1).lower()]) for m in vocab._pattern.finditer(text)]


def _by_scan(vocab: DrugVocabulary, text: str) -> list[tuple[int, int, str]]:
    fresh = DrugVocabulary(vocab.drugs)     # no pattern compiled: the scan
    found = [(i, j, fresh._names[n]) for i, j, n in fresh._spans(text, False)]
    assert "_pattern" not in fresh.__dict__ or len(text) > 4000 or not text.isascii()
    return found


def _texts(vocab: DrugVocabulary) -> list[str]:
    """Item lines and letter passages of the corpus, and names glued, cased and cut at random."""
    texts: list[str] = []
    for path in sorted((ROOT / "cases").rglob("*.yaml")) + sorted((ROOT / "cases" / "letters").glob("*.txt")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        texts += [line for line in lines if line.strip()]
    rng = random.Random(7)
    names = list(vocab._names)
    seps = [" ", "", "/", "-", "a", "Z", "1", ", ", "(", ") ", "x"]
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(1, 4)):
            n = rng.choice(names)
            if rng.random() < 0.3:
                n = n[:rng.randint(1, len(n))]
            n = "".join(c.upper() if rng.random() < 0.4 else c for c in n)
            parts += [rng.choice(seps), n]
        texts.append("".join(parts) + rng.choice(seps))
    return texts


@pytest.fixture(scope="module")
def vocab() -> DrugVocabulary:
    return load_rulebook().drugs


def test_scan_finds_what_the_pattern_finds(vocab):
    texts = _texts(vocab)
    assert len(texts) > 4000
    found = 0
    for text in texts:
        expected = _by_pattern(vocab, text)
        assert _by_scan(vocab, text) == expected, text
        found += bool(expected)
    assert found > 2000    # the texts do name drugs


@pytest.mark.parametrize("text, expected", [
    ("Tramadol/acetaminophen 37.5/325 mg", ["tramadol/acetaminophen"]),     # the longest name wins
    ("xtramadol 50 mg", []),                                                # not inside a word
    ("tramadolx", []),
    ("2tramadol", ["tramadol"]),                                            # a digit is no letter
    ("tramadol/acetaminophenx", ["tramadol"]),   # the longest fails its word end: the next longest
    ("NORCO then norco and Tramadol", ["hydrocodone/acetaminophen", "tramadol"]),
])
def test_scan_examples(vocab, text, expected):
    fresh = DrugVocabulary(vocab.drugs)
    assert fresh.find_all_in_text(text) == expected
    assert fresh.find_in_text(text) == (expected[0] if expected else None)
    assert "_pattern" not in fresh.__dict__


def test_non_ascii_text_and_names_take_the_pattern(vocab):
    fresh = DrugVocabulary(vocab.drugs)
    # the Kelvin sign folds to "k" under re.I, not under str.lower: the pattern decides
    text = "\u212aetorolac 10 mg"
    assert fresh.find_in_text(text) == "ketorolac"
    assert "_pattern" in fresh.__dict__
    spec = DrugSpec(classes=["stimulant"], sedating=False, daily_units=None)
    odd = DrugVocabulary({"caf\u00e9ine": spec, "tramadol": spec})
    assert odd._by_first is None
    assert odd.find_all_in_text("CAF\u00c9INE 10 mg, tramadol") == ["caf\u00e9ine", "tramadol"]
    assert "_pattern" in odd.__dict__
