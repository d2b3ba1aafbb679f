#!/usr/bin/env python3
"""Agreement with the gold IMR letters, per rule family, on the gold cases themselves.

Independent of the letter extractor: each gold file's hand-checked ``case:`` is evaluated with
Engine(), and every gold item whose citations name an ACOEM chapter (acoem-*), the CPMTG 2016
"Electrodiagnostic testing (EMG/NCS)" section, the Acupuncture guidelines or a non-drug CPMTG
section (physical medicine, manual therapy, TENS, office visits, psychological treatment, ...;
PHYSICAL_SECTIONS), or whose gold reason names one of those rules (ACOEM_RULES: also consultations,
functional capacity evaluations and braces), is compared with the reviewer:

- outcome: engine certify = overturned; non-certify or modify = upheld; no-rule is a miss;
- criterion: for an upheld item, whether the reviewer's decisive criterion (gold ``reason``)
  is among the engine's failed or not-documented decisive criteria ("any"), and whether it is
  the first of them in rule order ("first"); for an overturned item, whether it is met or made
  not applicable by a red flag.

    python benchmarks/gold_families.py            # table per family
    python benchmarks/gold_families.py --items    # and one line per item
    python benchmarks/gold_families.py --json     # machine-readable
    python benchmarks/gold_families.py --family physical-medicine --items
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from mtus_engine.evaluation.case import case_from_data
from mtus_engine.evaluation.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "cases" / "letters" / "real"

IMAGING = {"mri", "ct", "xray", "bone_scan", "ultrasound_diagnostic"}


# the non-drug CPMTG / Acupuncture families: sections as the letters cite them, and rule ids
PHYSICAL_SECTIONS = ("physical medicine", "manual therapy", "manipulation", "massage", "aquatic",
                     "tens, chronic pain", "transcutaneous electrical", "office visits", "home health",
                     "psychological", "biofeedback", "functional restoration", "low-level laser",
                     "thermography", "ultrasound, therapeutic", "introduction")
# the ACOEM chapter families (and CPMTG 2016 electrodiagnostics): also scored where the reviewer
# cited ODG but decided on the same criterion
ACOEM_RULES = ("imaging.", "electrodiagnostics.", "surgery.", "injections.",
               # ACOEM General Approaches (consultations, FCE) and the extremity chapters' braces
               "consultation.", "fce.", "braces.")
PHYSICAL_RULES = ("physical-medicine.", "manual-therapy.", "acupuncture.", "tens.", "office-visits.",
                  "massage.", "aquatic-therapy.", "home-health.", "psychological.", "functional-restoration.")


def in_scope(item: dict) -> bool:
    for c in item.get("citations") or []:
        if str(c.get("part", "")).startswith("acoem-"):
            return True
        if any("lectro" in s and "iagnostic" in s for s in c.get("sections") or []):
            return True
        if c.get("part") == "acupuncture-2007":
            return True
        if any(k in s.lower() for k in PHYSICAL_SECTIONS for s in c.get("sections") or []):
            return True
    return ((item.get("reason") or {}).get("criterion") or "").startswith(PHYSICAL_RULES + ACOEM_RULES)


def family(item: dict, request: dict | None) -> str:
    crit = ((item.get("reason") or {}).get("criterion") or "")
    if "/" in crit and not crit.startswith("unmapped:"):
        return crit.split("/")[0]
    modality = (request or {}).get("modality") or "other"
    if modality in IMAGING:
        return "imaging (unmapped reason)"
    if modality == "emg_ncs":
        return "electrodiagnostics (unmapped reason)"
    return f"{modality} (unmapped reason)"


def evaluate(engine: Engine) -> list[dict]:
    rows = []
    for path in sorted(GOLD.glob("*.gold.yaml")):
        gold = yaml.safe_load(path.read_text())
        items = [it for it in gold.get("items") or [] if in_scope(it)]
        if not items:
            continue
        case = case_from_data(gold["case"], str(path))
        result = engine.evaluate(case)
        by_item = {r.item: d for r, d in zip(case.requests, result.determinations)}
        requests = {r["item"]: r for r in gold["case"].get("requests") or []}
        for it in items:
            det = by_item.get(it["item"])
            req = requests.get(it["item"])
            gold_crit = (it.get("reason") or {}).get("criterion") or ""
            row = {"letter": path.name.removesuffix(".gold.yaml"), "item": it["item"],
                   "gold": it["outcome"], "gold_criterion": gold_crit,
                   "family": family(it, req), "engine": None, "rules": [], "agree": False,
                   "criterion_any": None, "criterion_first": None, "engine_first": None}
            if det is not None:
                row["engine"] = det.decision
                row["rules"] = det.rules_fired
                engine_outcome = {"certify": "overturned", "modify": "upheld",
                                  "non-certify": "upheld"}.get(det.decision)
                row["agree"] = engine_outcome == it["outcome"]
                states = {f"{c.rule}/{c.criterion}": c.state for c in det.criteria}
                failing = [f"{c.rule}/{c.criterion}" for c in det.criteria
                           if c.decisive and c.state in ("failed", "not documented")]
                row["engine_first"] = failing[0] if failing else None
                if gold_crit and not gold_crit.startswith("unmapped:"):
                    if it["outcome"] == "upheld" and gold_crit.endswith("/not-recommended"):
                        # a not-recommended rule has no criteria: it is the reason when it fires
                        hit = gold_crit.rsplit("/", 1)[0] in det.rules_fired and det.decision == "non-certify"
                        row["criterion_any"] = row["criterion_first"] = hit
                    elif it["outcome"] == "upheld":
                        row["criterion_any"] = gold_crit in failing
                        row["criterion_first"] = bool(failing) and failing[0] == gold_crit
                    else:
                        ok = states.get(gold_crit) in ("met", "not applicable") or (
                            gold_crit.endswith("/red-flags") and case.findings.red_flags is True)
                        row["criterion_any"] = row["criterion_first"] = ok and row["agree"]
            rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict[str, dict]:
    fams: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for key in (r["family"], "ALL"):
            f = fams[key]
            f["items"] += 1
            f[r["gold"]] += 1
            if r["agree"]:
                f[f"{r['gold']}_agree"] += 1
            if r["criterion_any"] is not None:
                f["criterion_scored"] += 1
                f["criterion_any"] += bool(r["criterion_any"])
                f["criterion_first"] += bool(r["criterion_first"])
    return {k: dict(v) for k, v in fams.items()}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", action="store_true", help="one line per item")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--family", help="only items whose family starts with this (e.g. physical-medicine)")
    args = ap.parse_args(argv)
    rows = evaluate(Engine())
    if args.family:
        rows = [r for r in rows if r["family"].startswith(args.family)]
    fams = summarise(rows)
    if args.json:
        print(json.dumps({"families": fams, "items": rows}, indent=2, default=str))
        return 0
    if args.items:
        for r in rows:
            mark = "ok " if r["agree"] else "XX "
            print(f"{mark}{r['letter']} {r['gold']:10} engine={r['engine'] or '-':11} "
                  f"{r['item'][:50]:50} gold={r['gold_criterion']} first={r['engine_first']}")
        print()

    def frac(a: int, b: int) -> str:
        return f"{a}/{b}" if b else "-"

    print(f"{'family':42} {'items':>5} {'upheld':>8} {'overturned':>10} {'crit any':>8} {'crit 1st':>8}")
    order = sorted((k for k in fams if k != "ALL"), key=lambda k: (-fams[k]["items"], k)) + ["ALL"]
    for k in order:
        f = fams[k]
        print(f"{k:42} {f['items']:>5} {frac(f.get('upheld_agree', 0), f.get('upheld', 0)):>8} "
              f"{frac(f.get('overturned_agree', 0), f.get('overturned', 0)):>10} "
              f"{frac(f.get('criterion_any', 0), f.get('criterion_scored', 0)):>8} "
              f"{frac(f.get('criterion_first', 0), f.get('criterion_scored', 0)):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
