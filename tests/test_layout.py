"""The README's layout picture is the package tree: every module, in the subpackage it shows."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "mtus_engine"


def _picture() -> dict[str, set[str]]:
    """Subpackage (or '' for the top level) -> the module files the README's picture names there."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Layout: the data flow"):]
    block = block[block.index("src/mtus_engine/"):block.index("```", block.index("src/mtus_engine/"))]
    named: dict[str, set[str]] = {}
    where = ""
    for line in block.splitlines()[1:]:
        head = re.match(r"  (\w+)/\s", line)
        if head:
            where = head.group(1)
        elif re.match(r"  \w+\.py", line):
            where = ""
        for name in re.findall(r"\b(\w+\.py)\b", line):
            named.setdefault(where, set()).add(name)
        for sub in re.findall(r"\b(service)/", line):
            named.setdefault(where, set()).add(sub + "/")
    return named


def _tree() -> dict[str, set[str]]:
    tree: dict[str, set[str]] = {"": set()}
    for p in PKG.iterdir():
        if p.suffix == ".py" and p.name not in {"__init__.py", "__main__.py"}:
            tree[""].add(p.name)
        elif p.is_dir() and (p / "__init__.py").exists():
            tree[p.name] = {q.name for q in p.glob("*.py") if q.name != "__init__.py"}
            tree[p.name] |= {q.name + "/" for q in p.iterdir() if (q / "__init__.py").exists()}
    return tree


def test_the_readme_picture_names_every_module_where_it_lives():
    assert _picture() == _tree()
