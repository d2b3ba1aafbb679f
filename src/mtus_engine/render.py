"""Render determinations: JSON (the contract), Markdown (for letters and tickets), text (rich)."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .determination import CaseDetermination

_env = Environment(loader=PackageLoader("mtus_engine", "templates"), undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                   autoescape=False)

DECISION_STYLE = {"certify": "bold green", "modify": "bold yellow", "non-certify": "bold red",
                  "no-rule": "bold magenta"}
STATE_MARK = {"met": ("✔", "green"), "failed": ("✘", "red"), "not documented": ("?", "yellow"),
              "not applicable": ("–", "dim")}


_MD_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "`": "\\`", "\\": "\\\\",
               "[": "\\[", "]": "\\]"}
_MD_SPECIAL = re.compile(r"[&<>|`\\\[\]]")


def md_escape(value: Any) -> str:
    """Data as inert Markdown text: no HTML (<script>), no table breaks (|), no code spans or links
    from letter text; line breaks become spaces so a table row stays one row."""
    text = "" if value is None else str(value)
    text = " ".join(text.splitlines()) if ("\n" in text or "\r" in text) else text
    return _MD_SPECIAL.sub(lambda m: _MD_ESCAPES[m.group()], text)


_env.filters["md"] = md_escape


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_json(result: CaseDetermination) -> str:
    return to_json(result.to_json_data())


def render_markdown(result: CaseDetermination) -> str:
    return _env.get_template("determination.md.j2").render(result=result)


def render_text(result: CaseDetermination, *, color: bool = False, width: int = 100,
                explain: list[list[str]] | None = None) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system="standard" if color else None,
                      force_terminal=color, highlight=False, emoji=False)
    rb = result.rulebook
    console.print(Text.assemble(("Case ", "bold"), (result.case_id, "bold cyan"),
                                f"  rulebook {rb.version} · {rb.edition or 'no edition in effect'} ({rb.edition_basis})"))
    for i, d in enumerate(result.determinations):
        # decision first: a long item name must never push it out of the title
        head = Text.assemble((f"{i + 1}. ", "bold"), (d.decision.upper(), DECISION_STYLE[d.decision]),
                             "  ", (d.request, "bold"))
        body: list[Any] = []
        if d.modified_request:
            body.append(Text(f"Modified to: {d.modified_request.item}", style="yellow"))
        if d.criteria:
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            table.add_column("", width=1)
            table.add_column("criterion")
            table.add_column("fact = value")
            table.add_column("test")
            table.add_column("rule", style="dim")
            for c in d.criteria:
                mark, style = STATE_MARK[c.state]
                shown = "not documented" if c.value is None else json.dumps(c.value, ensure_ascii=False)
                label = c.asks if c.decisive else f"{c.asks} (advisory)"
                # Text, not str: a cell string is rich markup, and case data may hold "[/bold]"
                table.add_row(Text(mark, style=style), Text(label), Text(f"{c.fact} = {shown}"), Text(c.test),
                              Text(c.rule))
            body.append(table)
        if d.missing_documentation:
            body.append(Text("Missing documentation:", style="bold yellow"))
            for m in d.missing_documentation:
                body.append(Text(f"  • {m}"))
        if d.citations:
            cites = "; ".join(f"{c.section}" + (f" p. {c.pages}" if c.pages else "")
                              + ("" if c.certainty == "letter" else f" [{c.certainty}]")
                              for c in d.citations)
            body.append(Text(f"Cites: {cites}", style="cyan"))
        body.append(Text(d.rationale))
        if explain is not None and i < len(explain):
            body.append(Text("durable_rules fired: " + ", ".join(explain[i]), style="dim"))
        console.print(Panel(Group(*body), title=head, title_align="left",
                            border_style=DECISION_STYLE[d.decision].split()[-1]))
    return buf.getvalue()


def render(result: CaseDetermination, fmt: str, **kw: Any) -> str:
    if fmt == "json":
        return render_json(result)
    if fmt == "markdown":
        return render_markdown(result)
    return render_text(result, **kw)
