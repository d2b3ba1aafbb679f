"""Hand-written negation (letter._polarity) against medspaCy's ConText, on the real letters' gold files.

Not a project dependency: run it in a separate environment that has medspacy (and the project's
dependencies), e.g.  python -m venv /tmp/negvenv && /tmp/negvenv/bin/pip install medspacy pyyaml
pydantic click rich jinja2 orjson durable-rules==2.0.28, then
PYTHONPATH=src /tmp/negvenv/bin/python benchmarks/negation_context_vs_hand.py --cache /tmp/lt_cache
(--cache: a folder of the letters' text, as benchmarks/extraction_vs_gold.py --cache writes it).

ConText replaces only the polarity of a term (negated -> False, hypothetical/uncertain -> None);
the rest of the extractor is unchanged. Measured 2026-11-30 (medspacy 1.3.1, default rules):
ConText was worse on every negation-sensitive finding (red_flags P/R 50/32 vs 80/95,
surgery_considered 33/39 vs 81/94, conservative_care_failed 37/36 vs 72/72, neurologic_deficit
75/76 vs 81/81, muscle_spasm 93/93 vs 100/100) and about half as fast (63 vs 130 letters/s,
one run on 2 shared cores), so the extractor keeps its hand-written negation. negspacy (NegEx
on spaCy entities) was not measured: it needs an entity model the letters' terms would have
to be matched into first, and NegEx is the older form of ConText's triggers.
"""
import argparse
import functools
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from mtus_engine.letters import letter as L  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--cache", type=Path, required=True, help="folder of <CASE>.txt letter texts")
args = ap.parse_args()
texts = {p.stem: p.read_text() for p in sorted(args.cache.glob("*.txt"))}
golds = {k: yaml.safe_load((ROOT / "cases/letters/real" / f"{k}.gold.yaml").read_text())["case"]
         for k in texts}
KEYS = ["muscle_spasm", "neurologic_deficit", "red_flags", "surgery_considered",
        "conservative_care_failed", "return_to_work", "acute_exacerbation", "radiculopathy_exam"]

def run():
    L._drug_tables(); L.letter_to_case(L.parse_letter(next(iter(texts.values()))), "w")
    t = time.perf_counter()
    cases = {k: L.letter_to_case(L.parse_letter(v), k) for k, v in texts.items()}
    rate = len(texts) / (time.perf_counter() - t)
    out = {}
    for key in KEYS + ["first_line_tried"]:
        tp = given = gold = 0
        for k, c in cases.items():
            g = (golds[k].get("findings") or {}).get(key)
            e = (c.get("findings") or {}).get(key)
            if key == "first_line_tried":
                gs, es = set(g or []), set(e or [])
                tp += len(gs & es); given += len(es); gold += len(gs)
                continue
            given += e is not None; gold += g is not None; tp += (g is not None and g == e)
        out[key] = (tp / given if given else float("nan"), tp / gold if gold else float("nan"))
    return rate, out

hand_rate, hand = run()

import medspacy
nlp = medspacy.load(enable=["medspacy_context"])
context = nlp.get_pipe("medspacy_context")

@functools.lru_cache(maxsize=None)
def ctx_polarity(clause, start):
    doc = nlp.make_doc(clause)
    for i, tok in enumerate(doc):
        tok.is_sent_start = (i == 0)
    span = doc.char_span(start, start + 1, alignment_mode="expand")
    if span is None:
        return True
    doc.ents = [span]
    context(doc)
    if span._.is_negated:
        return False
    if span._.is_hypothetical or span._.is_uncertain:
        return None
    return True

L._polarity = lambda clause, start: ctx_polarity(clause, start)
ctx_polarity.cache_clear()
ctx_rate, ctx = run()
print(f"{'finding':28s} {'hand P/R':>16s} {'ConText P/R':>16s}")
for key in hand:
    print(f"{key:28s} {hand[key][0]:7.1%} {hand[key][1]:7.1%}  {ctx[key][0]:7.1%} {ctx[key][1]:7.1%}")
print(f"letters/s: hand {hand_rate:.0f}, ConText {ctx_rate:.0f}")
