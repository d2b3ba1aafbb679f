"""A copy of the rulebook k times as large, for start-up scaling: every drug, drug class,
modality, derived fact and rule file again under another name ("-copy1", "_copy1", ...), the
copied rules reading the copied facts. A case of the original rulebook then asks for what it
asked before, against a rulebook k times the size (what a start pays in proportion to the
rulebook shows as growth).

    python benchmarks/grow_rulebook.py OUT_DIR [-k 2]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dump(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")


def grow(out: Path, k: int = 2, source: Path = ROOT / "rules") -> Path:
    """Write the rulebook in ``source`` k times as large to ``out`` (replaced); give ``out``."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    if k < 2:
        return out
    vocab = out / "vocabulary"
    drugs_doc = _load(vocab / "drugs.yaml")
    drugs = drugs_doc["drugs"]
    fact_files = sorted(vocab.glob("facts*.yaml"))
    docs = {p: _load(p) for p in fact_files}
    facts = {n: spec for d in docs.values() for n, spec in (d.get("facts") or {}).items()}
    derived = {n for n, spec in facts.items() if spec.get("source") == "derived"}
    classes = list(facts["drug_class"]["values"])
    modalities = list(facts["modality"]["values"])
    for i in range(1, k):
        for g, spec in list(drugs.items()):
            if "-copy" in g:
                continue
            drugs[f"{g}-copy{i}"] = {**spec, "brands": [f"{b}-copy{i}" for b in spec.get("brands") or []],
                                    "aliases": [f"{a}-copy{i}" for a in spec.get("aliases") or []],
                                    "classes": [f"{c}_copy{i}" for c in spec.get("classes") or []]}
        facts["drug_class"]["values"] += [f"{c}_copy{i}" for c in classes]
        facts["modality"]["values"] += [f"{m}_copy{i}" for m in modalities]
        for d in docs.values():
            for n, spec in list((d.get("facts") or {}).items()):
                if n in derived:
                    d["facts"][f"{n}_copy{i}"] = spec
    _dump(vocab / "drugs.yaml", drugs_doc)
    for p, d in docs.items():
        _dump(p, d)

    def fact(name, i):
        return f"{name}_copy{i}" if name in derived else name

    rule_files = [p for p in sorted(out.rglob("*.yaml")) if p.parent != vocab and p.name != "rulebook.yaml"
                  and not p.name.endswith(".test.yaml")]
    for p in rule_files:
        doc = _load(p)
        for i in range(1, k):
            copy = dict(doc)
            rules = []
            for rule in doc.get("rules") or []:
                r = yaml.safe_load(yaml.safe_dump(rule))     # a deep copy
                r["id"] = f"{r['id']}-copy{i}"
                a = r.get("applies_to") or {}
                r["applies_to"] = {**a, **{f: [f"{x}-copy{i}" if f == "drugs" else f"{x}_copy{i}" for x in a.get(f) or []]
                                           for f in ("drugs", "classes", "modalities") if f in a}}
                if r.get("applies_when"):
                    r["applies_when"]["fact"] = fact(r["applies_when"]["fact"], i)
                for c in r.get("criteria") or []:
                    c["fact"] = fact(c["fact"], i)
                    if isinstance(c.get("when"), dict) and "fact" in c["when"]:
                        c["when"]["fact"] = fact(c["when"]["fact"], i)
                rules.append(r)
            copy["rules"] = rules
            _dump(p.with_name(f"{p.stem}-copy{i}.yaml"), copy)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("-k", type=int, default=2)
    args = ap.parse_args()
    print(grow(args.out, args.k))


if __name__ == "__main__":
    main()
