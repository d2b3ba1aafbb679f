"""How the request-item parser reads the disputed items of the real letters, against their gold files.

For every ``case.requests[i]`` of ``cases/letters/real/*.gold.yaml`` the item string alone is
parsed (``derive_request`` on a case holding just that item, so drug names are normalised the
way the engine sees them) and each field the gold file states is compared:

    .venv/bin/python benchmarks/items_vs_gold.py            # per-field agreement and mismatches
    .venv/bin/python benchmarks/items_vs_gold.py --json out.json
    .venv/bin/python benchmarks/items_vs_gold.py --baseline before.json   # before / after

A field counts only where the gold states it (a gold file that leaves ``sessions`` out says
nothing about it). A mismatch is "missing" when the parser read nothing, "wrong" when it read
something else. Some gold values come from the letter's summary rather than the item text
(e.g. the region of "EMG of the left upper extremity"); those show up as "missing" and cannot
be read from the item alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mtus_engine.evaluation.case import case_from_data, derive_request  # noqa: E402
from mtus_engine.rules.rulebook import load_rulebook  # noqa: E402

FIELDS = ("drug", "modality", "sessions", "quantity", "refills", "strength", "body_region", "ingredients")


def _norm(field: str, value):
    if value is None:
        return None
    if field in ("body_region", "ingredients"):
        return sorted(value) if value else None
    if field == "strength":
        return "".join(str(value).split()).lower()
    return value


def run(gold_dir: Path, rules_dir: Path) -> dict:
    drugs = load_rulebook(rules_dir).drugs
    counts = {f: {"agree": 0, "total": 0} for f in FIELDS}
    mismatches = []
    for path in sorted(gold_dir.glob("*.gold.yaml")):
        gold = yaml.safe_load(path.read_text())
        letter = path.name.removesuffix(".gold.yaml")
        for req in gold["case"]["requests"]:
            case = case_from_data({"id": letter, "requests": [{"item": req["item"]}]})
            got, _ = derive_request(case, 0, drugs)
            for field in FIELDS:
                want = _norm(field, req.get(field))
                if want is None:
                    continue
                have = _norm(field, got.get(field))
                counts[field]["total"] += 1
                if have == want:
                    counts[field]["agree"] += 1
                else:
                    mismatches.append({"letter": letter, "item": req["item"], "field": field,
                                       "gold": want, "parsed": have,
                                       "kind": "missing" if have is None else "wrong"})
    return {"counts": counts, "mismatches": mismatches}


def _pct(c: dict) -> str:
    return f"{c['agree']:3d}/{c['total']:3d} ({100 * c['agree'] / c['total']:5.1f}%)" if c["total"] else "  -"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", type=Path, default=ROOT / "cases/letters/real")
    ap.add_argument("--rules", type=Path, default=ROOT / "rules")
    ap.add_argument("--json", type=Path, help="write the figures and mismatches as JSON")
    ap.add_argument("--baseline", type=Path, help="a --json file of an earlier run, shown as 'before'")
    ap.add_argument("--quiet", action="store_true", help="figures only, no mismatch list")
    args = ap.parse_args(argv)

    result = run(args.gold, args.rules)
    before = json.loads(args.baseline.read_text())["counts"] if args.baseline else None
    if not args.quiet:
        for m in result["mismatches"]:
            print(f"{m['letter']}  {m['field']:<12} {m['kind']:<7} gold={m['gold']!r} parsed={m['parsed']!r}"
                  f"\n    {m['item']}")
        print()
    print(f"{'field':<12} {'before':<20} {'after':<20}" if before else f"{'field':<12} agreement")
    total = {"agree": 0, "total": 0}
    total_before = {"agree": 0, "total": 0}
    for field in FIELDS:
        c = result["counts"][field]
        total["agree"] += c["agree"]
        total["total"] += c["total"]
        if before:
            b = before.get(field, {"agree": 0, "total": 0})
            total_before["agree"] += b["agree"]
            total_before["total"] += b["total"]
            print(f"{field:<12} {_pct(b):<20} {_pct(c):<20}")
        else:
            print(f"{field:<12} {_pct(c):<20}")
    if before:
        print(f"{'all':<12} {_pct(total_before):<20} {_pct(total):<20}")
    else:
        print(f"{'all':<12} {_pct(total):<20}")
    kinds = {k: sum(1 for m in result["mismatches"] if m["kind"] == k) for k in ("missing", "wrong")}
    print(f"mismatches: {kinds['missing']} missing, {kinds['wrong']} wrong")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
