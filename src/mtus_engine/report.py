"""Regression reports: JSON (the contract), text (confusion table + disagreements), JUnit XML,
and one self-contained HTML page."""

from __future__ import annotations

import base64
import io
import json
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

from jinja2 import Environment, PackageLoader, select_autoescape
from rich.console import Console
from rich.table import Table

from .regress import OUTCOMES, RegressionRun

ENGINE_OUTCOMES = ("upheld", "overturned", "no-rule")
MAX_LISTED = 2000   # disagreements listed in text/HTML; the JSON report has them all

_PUBLIC_KEYS = ("letter", "item", "letter_outcome", "engine_outcome", "engine_decision", "agree",
                "letter_pages", "engine_pages", "rules_fired", "reason")


def _public(item: dict) -> dict:
    return {k: item[k] for k in _PUBLIC_KEYS} | {"index": item["index"], "section": item["section"],
                                                   "pages_covered": item["pages_covered"]}


def write_json(run: RegressionRun, out: IO[str], *, rulebook: dict | None = None,
               changes: list[dict] | None = None) -> None:
    """Stream the report: items come from the spool, never all in memory."""
    out.write('{"summary": ' + json.dumps(run.summary, ensure_ascii=False))
    if rulebook:
        out.write(', "rulebook": ' + json.dumps(rulebook))
    out.write(', "items": [')
    for n, item in enumerate(run.items()):
        out.write((",\n  " if n else "\n  ") + json.dumps(_public(item), ensure_ascii=False))
    out.write('\n], "errors": ' + json.dumps(run.errors, ensure_ascii=False))
    if changes is not None:
        out.write(', "changes": ' + json.dumps(changes, ensure_ascii=False))
    out.write("}\n")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def write_text(run: RegressionRun, out: IO[str], *, changes: list[dict] | None = None,
               color: bool = False) -> None:
    console = Console(file=out, width=110, color_system="standard" if color else None,
                      force_terminal=color, highlight=False)
    s = run.summary
    console.print(f"[bold]{s['letters']} letters[/] ({s['failed_letters']} errors), {s['items']} items: "
                  f"agreement {_pct(s['agreement'])}, balanced accuracy {_pct(s['balanced_accuracy'])}, "
                  f"page agreement {_pct(s['page_agreement'])}, no-rule {s['no_rule']}")
    table = Table(title="letter outcome (rows) by engine outcome (columns)", box=None)
    table.add_column("")
    for e in ENGINE_OUTCOMES:
        table.add_column(e, justify="right")
    table.add_column("recall", justify="right")
    for lo in OUTCOMES:
        n = s["per_outcome"][lo]["letters"]
        table.add_row(lo, *[str(run.confusion.get((lo, e), 0)) for e in ENGINE_OUTCOMES],
                      _pct(s["per_outcome"][lo]["agree"] / n if n else None))
    console.print(table)
    shown = 0
    for item in run.items():
        if item["agree"]:
            continue
        shown += 1
        if shown > MAX_LISTED:
            continue
        console.print(f"[red]✘[/] {item['letter']} #{item['index'] + 1} {item['item']}: letter "
                      f"{item['letter_outcome']}, engine {item['engine_decision']} ({item['engine_outcome']})")
        console.print(f"    why: {item['reason']}")
        for t in item["trace"]:
            console.print(f"      {t}")
    if shown > MAX_LISTED:
        console.print(f"... and {shown - MAX_LISTED} more disagreements (see --format json)")
    if changes is not None:
        regressed = sum(c["regressed"] for c in changes)
        console.print(f"[bold]{len(changes)} items changed since the baseline, {regressed} regressed[/]")
        for c in changes:
            mark = "[red]REGRESSED[/]" if c["regressed"] else "changed"
            console.print(f"  {mark} {c['letter']}: {c['item']}: {c['from']} -> {c['to']}")
    for e in run.errors:
        console.print(f"[yellow]error[/] {e['letter']}: {e['error']}")


def write_junit(run: RegressionRun, out: IO[str]) -> None:
    s = run.summary
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(f'<testsuite name="mtus-regress" tests="{s["items"] + len(run.errors)}" '
              f'failures="{s["disagree"]}" errors="{len(run.errors)}">\n')
    for item in run.items():
        name = quoteattr(f"{item['index'] + 1}. {item['item']}")
        out.write(f'  <testcase classname={quoteattr(item["letter"])} name={name}>')
        if not item["agree"]:
            msg = f"letter {item['letter_outcome']}, engine {item['engine_decision']}"
            body = item["reason"] + "\n" + "\n".join(item["trace"])
            out.write(f'<failure message={quoteattr(msg)}>{escape(body)}</failure>')
        out.write("</testcase>\n")
    for e in run.errors:
        out.write(f'  <testcase classname={quoteattr(e["letter"])} name="extract">'
                  f'<error message={quoteattr(e["error"])}/></testcase>\n')
    out.write("</testsuite>\n")


def _confusion_png(run: RegressionRun) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    grid = [[run.confusion.get((lo, e), 0) for e in ENGINE_OUTCOMES] for lo in OUTCOMES]
    fig, ax = plt.subplots(figsize=(5, 2.8), dpi=100)
    ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(ENGINE_OUTCOMES)), labels=ENGINE_OUTCOMES)
    ax.set_yticks(range(len(OUTCOMES)), labels=OUTCOMES)
    ax.set_xlabel("engine outcome")
    ax.set_ylabel("letter outcome")
    peak = max(max(r) for r in grid) or 1
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > peak / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    # fixed metadata keeps the page byte-identical between runs
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_html(run: RegressionRun, out: IO[str], *, rulebook: dict, changes: list[dict] | None = None) -> None:
    env = Environment(loader=PackageLoader("mtus_engine", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    disagreements = []
    total_disagree = 0
    for item in run.items():
        if not item["agree"]:
            total_disagree += 1
            if len(disagreements) < MAX_LISTED:
                disagreements.append(item)
    sections = sorted(run.by_section.items())
    out.write(env.get_template("regress.html.j2").render(
        s=run.summary, rulebook=rulebook, chart=_confusion_png(run), confusion=run.confusion,
        letter_outcomes=OUTCOMES, engine_outcomes=ENGINE_OUTCOMES, sections=sections,
        disagreements=disagreements, truncated=total_disagree > len(disagreements),
        errors=run.errors, changes=changes, pct=_pct))
