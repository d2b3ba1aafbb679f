"""How the letter extractor reads the real 2016-2017 IMR letters, against their hand-checked gold files.

Prints figures only. Run: python benchmarks/extraction_vs_gold.py [--cache DIR] [--json FILE] [--diff FIELD]

- letters extracted (parse_letter succeeds) out of all gold files
- item name exact match (whitespace and case folded, trailing punctuation stripped)
- outcome agreement, citation part agreement (the ordered list of guideline parts), mtus agreement
- request_date agreement
- per-finding precision / recall for the case facts: findings (each key; first_line_tried per
  treatment), and per request functional_improvement, sessions, prior_sessions, modality, body_region, authorized_sessions, drug

Precision = extracted values that equal gold / extracted values given; recall = gold values the
extractor gave exactly / gold values given. Items are paired in order (the letter's order).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mtus_engine.errors import InputError  # noqa: E402
from mtus_engine.letters.letter import letter_to_case, parse_letter, read_letter  # noqa: E402

REAL = ROOT / "cases" / "letters" / "real"
REQUEST_FIELDS = ("functional_improvement", "sessions", "prior_sessions", "prior_treatment",
                  "modality", "body_region", "quantity", "authorized_sessions", "drug")


def norm(name: str) -> str:
    return " ".join(str(name).split()).strip(" .:").lower()


def medication_generic(name: str) -> str:
    from mtus_engine.letters.letter import _drug_tables  # the extractor's names: the rulebook's and a few more
    from mtus_engine.rules.rulebook import load_rulebook
    drugs = load_rulebook().drugs
    return _drug_tables()[0].get(name.lower()) or drugs.generic(name) or drugs.find_in_text(name) \
        or name.lower()


def letter_text(pdf: Path, cache: Path | None) -> str:
    if cache is None:
        return read_letter(pdf)
    cache.mkdir(parents=True, exist_ok=True)
    hit = cache / (pdf.stem + ".txt")
    if hit.exists() and hit.stat().st_mtime >= pdf.stat().st_mtime:
        return hit.read_text()
    text = read_letter(pdf)
    hit.write_text(text)
    return text


class PR:
    def __init__(self) -> None:
        self.tp = self.given = self.gold = 0

    def add(self, gold, got) -> None:
        if got is not None:
            self.given += 1
        if gold is not None:
            self.gold += 1
        if gold is not None and got is not None and gold == got:
            self.tp += 1

    def fmt(self) -> str:
        p = self.tp / self.given if self.given else float("nan")
        r = self.tp / self.gold if self.gold else float("nan")
        return f"P {p:6.1%}  R {r:6.1%}  (tp {self.tp}, given {self.given}, gold {self.gold})"


def canon(v):
    if isinstance(v, list):
        return tuple(v)
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=None, help="cache PDF text in this folder")
    ap.add_argument("--json", type=Path, default=None, help="write per-letter mismatches here")
    ap.add_argument("--diff", default=None, help="print mismatches of this measure (item, outcome, "
                    "citations, request_date, finding:<key>, request:<field>, fail)")
    args = ap.parse_args()

    golds = sorted(REAL.glob("*.gold.yaml"))
    # warm up (rulebook and vocabulary load once per process) so the rate is the extraction's
    first = yaml.safe_load(golds[0].read_text())
    letter_to_case(parse_letter(letter_text(REAL / first["letter"], args.cache)), "warm-up")
    extracted = 0
    n_items = name_ok = outcome_ok = cite_ok = mtus_ok = paired = 0
    date_ok = date_n = 0
    findings: dict[str, PR] = collections.defaultdict(PR)
    flt: dict[str, PR] = collections.defaultdict(PR)
    requests: dict[str, PR] = collections.defaultdict(PR)
    meds = PR()
    dx = PR()
    since = PR()
    diffs: list[dict] = []
    t_parse = 0.0
    for gpath in golds:
        gold = yaml.safe_load(gpath.read_text())
        case_id = gpath.name[:-len(".gold.yaml")]
        pdf = REAL / gold["letter"]
        n_items += len(gold["items"])
        try:
            text = letter_text(pdf, args.cache)
            t0 = time.process_time()
            parsed = parse_letter(text, str(pdf))
            case = letter_to_case(parsed, f"letter-{case_id}")
            t_parse += time.process_time() - t0
        except InputError as exc:
            diffs.append({"letter": case_id, "measure": "fail", "gold": None, "got": str(exc)})
            continue
        extracted += 1
        got_items = parsed.items
        for k, gi in enumerate(gold["items"]):
            if k >= len(got_items):
                diffs.append({"letter": case_id, "measure": "item", "gold": gi["item"], "got": None})
                continue
            it = got_items[k]
            paired += 1
            if norm(gi["item"]) == norm(it.item):
                name_ok += 1
            else:
                diffs.append({"letter": case_id, "measure": "item", "gold": gi["item"], "got": it.item})
            if gi["outcome"] == it.outcome:
                outcome_ok += 1
            else:
                diffs.append({"letter": case_id, "measure": "outcome", "gold": gi["outcome"],
                              "got": it.outcome})
            gparts = [c["part"] for c in gi.get("citations") or []]
            got_cites = getattr(it, "citations", None) or []
            parts = [c.part if hasattr(c, "part") else c["part"] for c in got_cites]
            if gparts == parts:
                cite_ok += 1
            else:
                diffs.append({"letter": case_id, "measure": "citations", "gold": gparts, "got": parts,
                              "text": it.reviewer_guideline_text})
            if gi.get("mtus") == getattr(it, "mtus", None):
                mtus_ok += 1
            else:
                diffs.append({"letter": case_id, "measure": "mtus", "gold": gi.get("mtus"),
                              "got": getattr(it, "mtus", None)})
        gc = gold["case"]
        gd = str(gc.get("request_date")) if gc.get("request_date") else None
        if gd:
            date_n += 1
            if case.get("request_date") == gd:
                date_ok += 1
            else:
                diffs.append({"letter": case_id, "measure": "request_date", "gold": gd,
                              "got": case.get("request_date")})
        gf = gc.get("findings") or {}
        cf = case.get("findings") or {}
        for key in sorted(set(gf) | set(cf)):
            if key == "first_line_tried":
                gs, cs = set(gf.get(key) or []), set(cf.get(key) or [])
                for t in gs | cs:
                    pr = flt[t]
                    pr.add(True if t in gs else None, True if t in cs else None)
                if gs != cs:
                    diffs.append({"letter": case_id, "measure": "finding:first_line_tried",
                                  "gold": sorted(gs), "got": sorted(cs)})
                continue
            g, c = canon(gf.get(key)), canon(cf.get(key))
            findings[key].add(g, c)
            if g != c:
                diffs.append({"letter": case_id, "measure": f"finding:{key}", "gold": g, "got": c})
        gdx = {norm(d) for d in gc.get("diagnoses") or []}
        cdx = {norm(d) for d in case.get("diagnoses") or []}
        for name in gdx | cdx:
            dx.add(True if name in gdx else None, True if name in cdx else None)
        if gdx != cdx:
            diffs.append({"letter": case_id, "measure": "diagnoses", "gold": sorted(gdx), "got": sorted(cdx)})
        gm = {medication_generic(m["name"]) for m in gc.get("medications") or []}
        cm = {medication_generic(m["name"]) for m in case.get("medications") or []}
        for name in gm | cm:
            meds.add(True if name in gm else None, True if name in cm else None)
        if gm != cm:
            diffs.append({"letter": case_id, "measure": "medications", "gold": sorted(gm), "got": sorted(cm)})
        gs_ = {medication_generic(m["name"]): str(m["since"]) for m in gc.get("medications") or []
               if m.get("since")}
        cs_ = {m["name"]: m["since"] for m in case.get("medications") or [] if m.get("since")}
        for name in gs_.keys() | cs_.keys():
            since.add(gs_.get(name), cs_.get(name))
        greqs = gc.get("requests") or []
        creqs = case.get("requests") or []
        for k, gr in enumerate(greqs):
            cr = creqs[k] if k < len(creqs) else {}
            for field in REQUEST_FIELDS:
                g, c = canon(gr.get(field)), canon(cr.get(field))
                requests[field].add(g, c)
                if g != c:
                    diffs.append({"letter": case_id, "measure": f"request:{field}", "gold": g,
                                  "got": c, "item": gr.get("item")})

    def pct(a: int, b: int) -> str:
        return f"{a}/{b} = {a / b:.1%}" if b else "n/a"

    print(f"letters extracted      {pct(extracted, len(golds))}")
    print(f"item name exact        {pct(name_ok, n_items)}")
    print(f"outcome agreement      {pct(outcome_ok, n_items)}")
    print(f"citation parts         {pct(cite_ok, n_items)}")
    print(f"mtus flag              {pct(mtus_ok, n_items)}")
    print(f"request_date           {pct(date_ok, date_n)}")
    if extracted:
        print(f"extraction rate        {extracted / t_parse:.0f} letters/s (parse + case, CPU time, text cached)")
    print("findings:")
    for key, pr in sorted(findings.items(), key=lambda kv: -kv[1].gold):
        print(f"  {key:32s} {pr.fmt()}")
    print("first_line_tried (per treatment):")
    tot = PR()
    for key, pr in sorted(flt.items(), key=lambda kv: -kv[1].gold):
        print(f"  {key:32s} {pr.fmt()}")
        tot.tp += pr.tp
        tot.given += pr.given
        tot.gold += pr.gold
    print(f"  {'(all)':32s} {tot.fmt()}")
    print(f"diagnoses (exact, per diagnosis) {dx.fmt()}")
    print(f"medications (per drug)           {meds.fmt()}")
    print(f"medication start (since)         {since.fmt()}")
    print("requests:")
    for key in REQUEST_FIELDS:
        print(f"  {key:32s} {requests[key].fmt()}")
    if args.json:
        args.json.write_text(json.dumps(diffs, indent=1, default=str))
    if args.diff:
        for d in diffs:
            if d["measure"] == args.diff:
                print(json.dumps(d, default=str))


if __name__ == "__main__":
    main()
