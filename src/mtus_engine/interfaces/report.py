"""Regression reports: JSON (the contract), text (figures, confusion tables, disagreements),
markdown (the same, for docs and pull requests), JUnit XML, and one self-contained HTML page.

Every format leads with the same figures (see figure_rows): coverage, agreement, per-class recall
and balanced accuracy for the MTUS-cited items (the headline) and for all items, then reason
agreement against the gold files, then the breakdown per guideline part."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

from ..rules.regress import OUTCOMES, RegressionRun

# jinja2 (html) and rich (text) are imported by the writers that use them: a JSON report
# never loads them

ENGINE_OUTCOMES = ("upheld", "overturned", "no-rule")
MAX_LISTED = 2000   # disagreements listed in text/HTML; the JSON report has them all

_PUBLIC_KEYS = ("letter", "item", "letter_outcome", "engine_outcome", "engine_decision", "agree",
                "letter_pages", "engine_pages", "rules_fired", "reason")
_PUBLIC_EXTRA = ("index", "section", "pages_covered", "parts", "mtus_cited", "outside_mtus",
                 "engine_reasons", "gold_reason", "reason_match", "trace")


def _public(item: dict) -> dict:
    return {k: item[k] for k in _PUBLIC_KEYS} | {k: item.get(k) for k in _PUBLIC_EXTRA}


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


def _of(n: int, d: int) -> str:
    return f"{n}/{d} ({_pct(n / d if d else None)})"


def figure_rows(s: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, MTUS-cited items, all items): the rows every report leads with."""
    m = s["mtus"]
    a = {"items": s["items"], "determined": s["items"] - s["no_rule"], "agree": s["agree"],
         "recall": s["recall"], "balanced_accuracy": s["balanced_accuracy"],
         "per_outcome": s["per_outcome"]}

    def recall(f: dict, o: str) -> str:
        n = f["per_outcome"][o]["letters"]
        return _of(f["per_outcome"][o]["agree"], n) if n else "n/a (none in the letters)"

    return [
        ("items", str(m["items"]), str(a["items"])),
        ("coverage (items with a determination)", _of(m["determined"], m["items"]),
         _of(a["determined"], a["items"])),
        ("agreement with the reviewer", _of(m["agree"], m["items"]), _of(a["agree"], a["items"])),
        ("recall, upheld", recall(m, "upheld"), recall(a, "upheld")),
        ("recall, overturned", recall(m, "overturned"), recall(a, "overturned")),
        ("balanced accuracy", _pct(m["balanced_accuracy"]), _pct(a["balanced_accuracy"])),
    ]


def reason_line(s: dict[str, Any]) -> str:
    r = s.get("reasons") or {}
    if not r.get("gold_items"):
        return "reason agreement: n/a (no gold files with reasons beside these letters)"
    line = (f"reason agreement (gold files beside {r['gold_letters']} letters): the engine's decisive "
            f"criteria include the reviewer's decisive reason on {_of(r['matched'], r['agreeing'])} "
            f"of the items where it agrees with the letter")
    if r["unmapped"]:
        line += (f"; {r['unmapped']} of those reasons name no rule criterion (unmapped), "
                 f"{_of(r['matched'], r['agreeing'] - r['unmapped'])} of the rest")
    if r.get("unknown"):
        # the reviewer's reason as a criterion the rules lack: what to write next, not a miss
        line += f"; {r['unknown']} name a criterion no rule of this rulebook has (a gap in the rules)"
    return line


def part_rows(s: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per guideline part: items citing it (an item citing two parts counts in both)."""
    rows = []
    for part, f in s.get("by_part", {}).items():
        rows.append((part, str(f["items"]), _pct(f["coverage"]), _pct(f["agreement"]),
                     _pct(f["recall"]["upheld"]), _pct(f["recall"]["overturned"]),
                     _pct(f["balanced_accuracy"])))
    return rows


PART_HEADER = ("guideline part", "items", "coverage", "agreement", "recall upheld",
               "recall overturned", "balanced accuracy")


def headline(s: dict[str, Any]) -> str:
    m = s["mtus"]
    return (f"{s['letters']} letters (errors: {s['failed_letters']}), {s['items']} items, "
            f"{m['items']} MTUS-cited, {s['outside_mtus']['items']} judged outside the MTUS. "
            f"MTUS-cited: coverage {_pct(m['coverage'])}, agreement {_pct(m['agreement'])}, "
            f"recall upheld {_pct(m['recall']['upheld'])} / overturned {_pct(m['recall']['overturned'])}, "
            f"balanced accuracy {_pct(m['balanced_accuracy'])}")


def _outside_note(item: dict) -> str:
    return " [guideline outside the MTUS]" if item.get("outside_mtus") else ""


def write_text(run: RegressionRun, out: IO[str], *, changes: list[dict] | None = None,
               color: bool = False) -> None:
    from rich.console import Console
    from rich.markup import escape as _esc
    from rich.table import Table
    console = Console(file=out, width=110, color_system="standard" if color else None,
                      force_terminal=color, highlight=False)
    s = run.summary
    console.print(f"[bold]{_esc(headline(s))}[/]")
    figs = Table(title="figures (no-rule is a miss; balanced accuracy needs both outcomes in the letters)",
                 box=None)
    for h in ("", "MTUS-cited (headline)", "all items"):
        figs.add_column(h, justify="left" if not h else "right")
    for row in figure_rows(s):
        figs.add_row(*row)
    console.print(figs)
    console.print(f"no-rule {s['no_rule']} items, {s['outside_mtus']['no_rule']} of them judged outside the "
                  f"MTUS; page agreement {_pct(s['page_agreement'])}")
    console.print(_esc(reason_line(s)))
    for title, conf in (("all items", s["confusion"]), ("MTUS-cited items", s["mtus"]["confusion"])):
        table = Table(title=f"{title}: letter outcome (rows) by engine outcome (columns)", box=None)
        table.add_column("")
        for e in ENGINE_OUTCOMES:
            table.add_column(e, justify="right")
        for lo in OUTCOMES:
            table.add_row(lo, *[str(conf.get(lo, {}).get(e, 0)) for e in ENGINE_OUTCOMES])
        console.print(table)
    parts = Table(title="by guideline part the reviewer cited", box=None)
    for n, h in enumerate(PART_HEADER):
        parts.add_column(h, justify="left" if n == 0 else "right")
    for row in part_rows(s):
        parts.add_row(*row)
    console.print(parts)
    shown = 0
    for item in run.items():
        if item["agree"]:
            continue
        shown += 1
        if shown > MAX_LISTED:
            continue
        console.print(f"[red]✘[/] {_esc(item['letter'])} #{item['index'] + 1} {_esc(item['item'])}: letter "
                      f"{item['letter_outcome']}, engine {item['engine_decision']} ({item['engine_outcome']})"
                      f"{_esc(_outside_note(item))}")
        console.print(f"    why: {_esc(item['reason'])}")
        for t in item["trace"]:
            console.print(f"      {_esc(t)}")
    if shown > MAX_LISTED:
        console.print(f"... and {shown - MAX_LISTED} more disagreements (see --format json)")
    if changes is not None:
        regressed = sum(c["regressed"] for c in changes)
        console.print(f"[bold]{len(changes)} items changed since the baseline, {regressed} regressed[/]")
        for c in changes:
            mark = "[red]REGRESSED[/]" if c["regressed"] else "changed"
            console.print(f"  {mark} {_esc(c['letter'])}: {_esc(c['item'])}: {c['from']} -> {c['to']}")
    for e in run.errors:
        console.print(f"[yellow]error[/] {_esc(e['letter'])}: {_esc(e['error'])}")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def _md(text: Any) -> str:
    """Letter text in a markdown table cell: no HTML, no links or emphasis, no cell breaks."""
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _md_table(header: tuple[str, ...], rows: list[tuple[str, ...]], right_from: int = 1) -> list[str]:
    lines = ["| " + " | ".join(map(_md, header)) + " |",
             "|" + "|".join("---:" if n >= right_from else "---" for n in range(len(header))) + "|"]
    lines += ["| " + " | ".join(map(_md, r)) + " |" for r in rows]
    return lines


def write_markdown(run: RegressionRun, out: IO[str], *, rulebook: dict | None = None,
                   changes: list[dict] | None = None, disagreements: bool = True) -> None:
    s = run.summary
    lines = []
    if rulebook:
        lines += [f"Rulebook {rulebook['version']} (digest `{rulebook['digest']}`).", ""]
    lines += [headline(s) + ".", ""]
    lines += _md_table(("figure", "MTUS-cited items (headline)", "all items"), figure_rows(s))
    lines += ["", f"No-rule: {s['no_rule']} items, {s['outside_mtus']['no_rule']} of them judged outside the MTUS "
              f"(ODG or other non-MTUS sources only). Page agreement: {_pct(s['page_agreement'])}.", "",
              reason_line(s)[0].upper() + reason_line(s)[1:] + ".", ""]
    for title, conf in (("All items", s["confusion"]), ("MTUS-cited items", s["mtus"]["confusion"])):
        lines += [f"{title}, letter outcome (rows) by engine outcome (columns):", ""]
        lines += _md_table(("letter \\ engine", *ENGINE_OUTCOMES),
                           [(lo, *[str(conf.get(lo, {}).get(e, 0)) for e in ENGINE_OUTCOMES]) for lo in OUTCOMES])
        lines.append("")
    lines += ["By guideline part the reviewer cited (an item citing two parts counts in both):", ""]
    lines += _md_table(PART_HEADER, part_rows(s))
    lines.append("")
    if disagreements:
        rows, shown = [], 0
        for item in run.items():
            if item["agree"]:
                continue
            shown += 1
            if shown <= MAX_LISTED:
                rows.append((f"{item['letter']} #{item['index'] + 1}", item["item"], item["letter_outcome"],
                             item["engine_decision"], "no" if item.get("outside_mtus") else "yes",
                             item["reason"]))
        lines += [f"## Disagreements ({shown})", ""]
        if rows:
            lines += _md_table(("letter", "item", "letter", "engine", "MTUS-cited", "why"), rows, right_from=99)
        else:
            lines.append("None.")
        if shown > MAX_LISTED:
            lines.append(f"... and {shown - MAX_LISTED} more (see --format json)")
        lines.append("")
    if changes is not None:
        lines += [f"## Changed since the baseline ({len(changes)}, "
                  f"{sum(c['regressed'] for c in changes)} regressed)", ""]
        lines += [f"- {'REGRESSED ' if c['regressed'] else ''}{_md(c['letter'])}: {_md(c['item'])}: "
                  f"{c['from']} -> {c['to']}" for c in changes]
        lines.append("")
    if run.errors:
        lines += [f"## Errors ({len(run.errors)})", ""]
        lines += [f"- {_md(e['letter'])}: {_md(e['error'])}" for e in run.errors]
        lines.append("")
    out.write("\n".join(lines))


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
    from jinja2 import Environment, PackageLoader, select_autoescape
    env = Environment(loader=PackageLoader("mtus_engine.interfaces", "templates"),
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
        total_disagree=total_disagree, errors=run.errors, changes=changes, pct=_pct,
        figures=figure_rows(run.summary), reasons=reason_line(run.summary),
        part_header=PART_HEADER, parts=part_rows(run.summary)))
