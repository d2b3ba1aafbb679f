"""Gold-case agreement per rule family, by the families of the drug rules and the CPMTG /
Opioid Treatment sections: each real letter's hand-checked `case:` is evaluated with Engine()
(independent of the letter extractor) and compared with the reviewer's outcome (certify =
overturned, anything else = upheld) and decisive criterion ("reason": the engine's decisive
criterion is the gold one; "any": the gold criterion is among the engine's blocking ones, or
met for an overturned item). benchmarks/gold_families.py scores the ACOEM families.

    .venv/bin/python benchmarks/gold_medication.py [--family NAME] [--items] [--wrong] [--json OUT]

A gold item belongs to a family when the reviewer cited one of the family's sections (any
guideline part) or the gold reason names one of its rule ids. Families are listed in FAMILIES;
extend the table for new families rather than rewriting the script.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections import defaultdict

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from mtus_engine.evaluation.case import case_from_data  # noqa: E402
from mtus_engine.evaluation.engine import Engine  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")

# family -> (section-name keywords, lower case; rule-id prefixes)
FAMILIES: dict[str, tuple[list[str], list[str]]] = {
    "topicals": (["topical analgesic", "compound drug", "lidoderm", "flector", "salicylate", "capsaicin",
                  "voltaren", "lidocaine"], ["topical-analgesics.", "lidocaine-patch.", "capsaicin.",
                                              "salicylate", "flector."]),
    "nsaids": (["nsaids (non-steroidal", "anti-inflammatory medications", "nsaids, specific drug list"],
               ["nsaids."]),
    "ppi": (["gi symptoms", "proton pump"], ["ppi."]),
    "muscle-relaxants": (["muscle relaxant", "cyclobenzaprine", "carisoprodol", "tizanidine", "baclofen",
                          "methocarbamol", "orphenadrine", "metaxalone", "antispasticity"],
                         ["muscle-relaxants.", "cyclobenzaprine.", "carisoprodol.", "tizanidine.", "baclofen.",
                          "methocarbamol.", "orphenadrine.", "metaxalone."]),
    "antidepressants": (["antidepressant", "tricyclic"], ["antidepressants."]),
    "anti-epilepsy": (["anti-epilepsy", "gabapentin", "pregabalin", "lyrica"], ["anti-epilepsy", "gabapentin."]),
    "benzodiazepines": (["benzodiazepine"], ["benzodiazepines."]),
    "constipation": (["constipation"], ["opioid-constipation."]),
    "opioids": (["opioid"], ["opioids.", "opioids-2016."]),
    "drug-testing": (["urine drug", "drug testing"], ["drug-testing."]),
}


def families_of(item: dict) -> list[str]:
    sections = [s.lower() for c in item.get("citations") or [] for s in c.get("sections") or []]
    reason = ((item.get("reason") or {}).get("criterion") or "")
    out = []
    for name, (keys, prefixes) in FAMILIES.items():
        if name == "opioids" and any("constipation" in s for s in sections):
            continue
        if any(k in s for k in keys for s in sections) or any(reason.startswith(p) for p in prefixes):
            out.append(name)
    return out


def _guarded(engine: Engine, rule: str, criterion: str) -> bool:
    r = engine.rulebook.by_id.get(rule)
    return bool(r and any(c.id == criterion and c.when is not None for c in r.criteria))


def decisive(det, engine: Engine) -> str | None:
    """The engine's decisive criterion. A non-certification: the first decisive criterion
    (in rule order) that failed and denies, else the first not documented, else the first
    whose failure only modifies. A certification: the first met decisive criterion whose
    guard applied (the specific one), else the first met. A not-recommended rule:
    <rule>/not-recommended."""
    if det is None or det.decision == "no-rule":
        return None
    blocking = [c for c in det.criteria if c.decisive and c.state in ("failed", "not documented")]
    if blocking:
        mods = {(c.rule, c.criterion) for c in blocking if c.state == "failed" and any(
            k.id == c.criterion and k.on_failure == "modify" for k in engine.rulebook.by_id[c.rule].criteria)}
        for pick in (lambda c: c.state == "failed" and (c.rule, c.criterion) not in mods,
                     lambda c: c.state == "not documented", lambda c: True):
            for c in blocking:
                if pick(c):
                    return f"{c.rule}/{c.criterion}"
    if det.decision != "certify" and det.rules_fired:
        return f"{det.rules_fired[0]}/not-recommended"
    met = [c for c in det.criteria if c.decisive and c.state == "met"]
    for c in met:
        if _guarded(engine, c.rule, c.criterion):
            return f"{c.rule}/{c.criterion}"
    return f"{met[0].rule}/{met[0].criterion}" if met else (f"{det.rules_fired[0]}/" if det.rules_fired else None)


def reason_any(det, want: str | None, outcome: str) -> bool:
    if det is None or not want or want.startswith("unmapped:"):
        return False
    states = {f"{c.rule}/{c.criterion}": c.state for c in det.criteria if c.decisive}
    if outcome == "upheld":
        return states.get(want) in ("failed", "not documented") or want.endswith("/not-recommended")
    return states.get(want) in ("met", "not applicable")


def run(family: str | None = None) -> list[dict]:
    engine = Engine()
    rows: list[dict] = []
    for path in sorted(glob.glob(os.path.join(ROOT, "cases/letters/real/*.gold.yaml"))):
        gold = yaml.safe_load(open(path))
        case = case_from_data(gold["case"])
        dets = {d.request: d for d in engine.evaluate(case).determinations}
        for item in gold["items"]:
            fams = families_of(item)
            if not fams or (family and family not in fams):
                continue
            det = dets.get(item["item"])
            if det is None:  # gold case request named a little differently
                det = next((d for r, d in dets.items() if r.lower().startswith(item["item"].lower()[:20])), None)
            want = (item.get("reason") or {}).get("criterion")
            got = decisive(det, engine)
            eng_outcome = None if det is None else ("overturned" if det.decision == "certify" else "upheld")
            rows.append({"letter": gold["letter"], "item": item["item"], "families": fams,
                         "gold_outcome": item["outcome"], "engine_outcome": eng_outcome,
                         "engine_decision": det.decision if det else None,
                         "gold_reason": want, "engine_reason": got,
                         "outcome_ok": eng_outcome == item["outcome"],
                         "reason_ok": bool(want) and want == got,
                         "reason_any": reason_any(det, want, item["outcome"])})
    return rows


def summary(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for f in r["families"] + ["ALL"]:
            s = out[f]
            s["items"] += 1
            s[f"{r['gold_outcome']}"] += 1
            s[f"{r['gold_outcome']}_ok"] += r["outcome_ok"]
            s["outcome_ok"] += r["outcome_ok"]
            s["reason_ok"] += r["reason_ok"]
            s["reason_any"] += r["reason_any"]
            s["no_rule"] += r["engine_decision"] in (None, "no-rule")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family")
    ap.add_argument("--items", action="store_true", help="list every item")
    ap.add_argument("--wrong", action="store_true", help="list items with a wrong outcome or reason")
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = run(a.family)
    if a.items or a.wrong:
        for r in rows:
            if a.wrong and r["outcome_ok"] and r["reason_ok"]:
                continue
            mark = ("ok " if r["outcome_ok"] else "XX ") + ("r" if r["reason_ok"] else "-")
            print(f"{mark} {r['letter'][:12]} {r['item'][:45]:45} gold={r['gold_outcome'][:4]} "
                  f"eng={r['engine_decision']} | {r['gold_reason']} | {r['engine_reason']}")
    print(f"{'family':18} items  upheld ok  overturned ok  outcome  reason  any      no-rule")
    for f, s in sorted(summary(rows).items(), key=lambda kv: (kv[0] == "ALL", kv[0])):
        print(f"{f:18} {s['items']:5}  {s['upheld_ok']:3}/{s['upheld']:<3}   {s['overturned_ok']:3}/{s['overturned']:<3}"
              f"       {s['outcome_ok']:3}/{s['items']:<3} {s['reason_ok']:3}/{s['items']:<3} {s['reason_any']:3}/{s['items']:<3}  {s['no_rule']:3}")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
