"""Render for people and programs: determinations as JSON (the contract), Markdown (for
letters and tickets) and text (rich); and the text every CLI command prints.

jinja2 and rich are imported by the formats that use them only: `mtus evaluate --format json`
never loads them (start-up time)."""

from __future__ import annotations

import functools
import io
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment

    from ..evaluation.determination import CaseDetermination

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


@functools.cache
def markdown_env() -> "Environment":
    """The Jinja environment of the Markdown templates (built on first use)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined
    env = Environment(loader=PackageLoader("mtus_engine.interfaces", "templates"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                      autoescape=False)
    env.filters["md"] = md_escape
    return env


def __getattr__(name: str) -> Any:
    # `_env` was a module global built at import; kept readable for callers that import it
    if name == "_env":
        return markdown_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_json(data: Any) -> str:
    # orjson writes what json.dumps(indent=2, ensure_ascii=False) writes, ~10x faster, except a
    # float's short negative exponent (1e-07 vs 1e-7) and what it refuses (int keys, ints over
    # 64 bits): those take json.dumps, so the output never depends on which encoder ran. NaN and
    # infinities (which case validation refuses) come out as null: valid JSON, unlike json's NaN
    out = _orjson(data)
    if out is None:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return out.decode()


def to_json_bytes(data: Any) -> bytes:
    """to_json(data) in UTF-8, as orjson writes it (no round trip through str): the service's answers."""
    out = _orjson(data)
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode() if out is None else out


def _orjson(data: Any) -> bytes | None:
    """orjson's indented JSON and newline, or None where it would differ from json.dumps."""
    import orjson
    try:
        out = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return None
    return None if _ORJSON_DIFFERS(out) else out


_ORJSON_DIFFERS = re.compile(rb"[0-9]e-[0-9](?![0-9])").search


def render_json(result: CaseDetermination) -> str:
    return to_json(result.to_json_data())


def render_markdown(result: CaseDetermination) -> str:
    return markdown_env().get_template("determination.md.j2").render(result=result)


def render_text(result: CaseDetermination, *, color: bool = False, width: int = 100,
                explain: list[list[str]] | None = None) -> str:
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text
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


def to_yaml(data: Any) -> str:
    """Data as YAML, keys in their order; the C dumper when libyaml is there (the same bytes)."""
    import yaml
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True)


def _console(width: int, color: bool):
    from rich.console import Console
    buf = io.StringIO()
    return buf, Console(file=buf, width=width, force_terminal=color or None,
                        color_system="auto" if color else None)


# ------------------------------------------------------------------ mtus batch

def batch_summary(summary: dict[str, Any]) -> str:
    return (f"{summary['cases']} cases, {summary['requests']} requests, {summary['errors']} errors: "
            + ", ".join(f"{k} {v}" for k, v in summary["by_decision"].items()))


# ------------------------------------------------------------------ mtus rules

def rules_table(rows: list[dict[str, Any]], *, color: bool = False) -> str:
    from rich.table import Table
    table = Table("rule", "section", "pages", "applies to", "criteria", box=None)
    for row in rows:
        applies = "; ".join(f"{k}: {', '.join(v)}" for k, v in row["applies_to"].items())
        pages = (row["pages"] or "none") + ("" if row["certainty"] == "letter" else f" ({row['certainty']})")
        table.add_row(row["id"], row["section"], pages, applies, str(len(row["criteria"])))
    buf, console = _console(140, color)
    console.print(table)
    return buf.getvalue()


def rule_text(rule: Any, compiled: dict[str, Any] | None = None) -> str:
    """One rule: citation, recommendation, criteria and their wording (`mtus rules show`)."""
    lines = [f"{rule.id}: {rule.title}",
             f"  file: {rule.file}:{rule.line}   guideline parts: {rule.edition}"]
    for part, c in rule.parts.items():
        lines.append(f"  cites ({part}): {c.guideline}, {c.section}"
                     + (f", page(s) {c.pages}" if c.pages else ", no pages") + f" [{c.certainty}]")
        for extra in rule.also_cites:
            pages = extra.pages.get(part)
            lines.append(f"    also cites: {extra.section}" + (f", page(s) {pages}" if pages else "")
                         + f" [{extra.certainty}]")
    lines.append(f"  applies to: {rule.applies_to.model_dump(exclude_defaults=True)}")
    lines.append(f"  {rule.recommendation}: {rule.recommends}")
    for crit in rule.criteria:
        when = f" when {crit.when.fact} {crit.when.test.describe()}" if crit.when else ""
        kind = "decisive" if crit.decisive else "advisory"
        onfail = f", on failure {crit.on_failure}" + (f" to {crit.modify.model_dump(exclude_none=True)}" if crit.modify else "")
        lines.append(f"  - {crit.id} ({kind}{onfail}): {crit.fact} {crit.test.describe()}{when}")
        lines.append(f"      asks: {crit.asks}")
        lines.append(f"      missing: {crit.missing}")
        if crit.assumed:
            lines.append(f"      if undocumented: taken as {json.dumps(crit.assumed.assume)} ({crit.assumed.because})")
        else:
            lines.append("      if undocumented: required documentation (the request fails without it)")
    if compiled is not None:
        lines.append(json.dumps(compiled, indent=2, sort_keys=True))
    return "\n".join(lines) + "\n"


def lint_text(s: dict[str, Any]) -> str:
    return (f"ok: {s['rules']} rules in {s['files']} files, {s['facts']} facts, {s['drugs']} drugs, "
            f"{s['compiled']} compiled durable rules (rulebook {s['version']}, digest {s['digest']})\n")


def rule_tests_text(results: list[Any], cov: dict[str, dict[str, int]], *, verbose: bool = False) -> str:
    lines = []
    for r in results:
        if verbose or not r.passed:
            lines.append(f"{'PASS' if r.passed else 'FAIL'} {r.file}:{r.line} {r.name}")
            lines += [f"     {p}" for p in r.problems]
    untested = [rid for rid, c in cov.items() if c["tests"] == 0]
    covered = len(cov) - len(untested)
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed}/{len(results)} rule tests passed; "
                 f"rule coverage {covered}/{len(cov)} ({100 * covered / max(1, len(cov)):.0f}%)")
    lines += [f"  not fired by any test: {rid}" for rid in untested]
    return "\n".join(lines) + "\n"


def coverage_text(rows: list[dict[str, Any]], totals: dict[str, Any], *, color: bool = False) -> str:
    from rich.table import Table
    table = Table("section", "rules (tests)", "facts read", "tests", "pages", box=None)
    for row in rows:
        pages = "; ".join(f"{p['pages'] or '-'} " + ("✔" if p["certainty"] == "letter" else f"({p['certainty']})")
                          for p in row["pages"])
        table.add_row(row["section"], "\n".join(f"{r['id']} ({r['tests']})" for r in row["rules"]),
                      ", ".join(row["facts"]) or "-", str(row["tests"]), pages)
    buf, console = _console(160, color)
    console.print(table)
    return buf.getvalue() + (
        f"rule coverage {totals['rules_fired_by_tests']}/{totals['rules']} "
        f"({100 * totals['rule_coverage']:.0f}%), {totals['tests_passed']}/{totals['tests']} tests pass, "
        f"{totals['pages_letter_verified']}/{totals['pages_cited']} cited pages letter-verified\n")


def _coverage_pages(row: dict) -> str:
    out = []
    for p in row["pages"]:
        mark = "verified (letter)" if p["certainty"] == "letter" else p["certainty"]
        out.append(f"{p['section']}: {p['pages'] or 'no pages'} [{mark}]")
    return "; ".join(out)


def coverage_markdown(rows: list[dict], totals: dict) -> str:
    lines = ["# Rulebook coverage", "",
             "Generated by `mtus rules coverage --format markdown`; do not edit by hand.", "",
             f"{totals['sections']} sections, {totals['rules']} rules, {totals['tests']} rule tests "
             f"({totals['tests_passed']} passing); rules fired by at least one test: "
             f"{totals['rules_fired_by_tests']}/{totals['rules']} ({100 * totals['rule_coverage']:.0f}%); "
             f"cited pages verified in a real letter: {totals['pages_letter_verified']}/{totals['pages_cited']}.", "",
             "Page certainty: `letter` = cited in one of the real IMR letters in cases/letters; "
             "`public` = seen in public material; `recalled` = as IMR letters commonly cite it, not yet "
             "checked against the guideline PDF.", "",
             "| section | file | rules (tests firing it: certify/modify/non-certify) | facts read | tests | pages |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        rules = "<br>".join(f"`{r['id']}` ({r['tests']}: {r['certify']}/{r['modify']}/{r['non_certify']})"
                            for r in row["rules"])
        facts = ", ".join(f"`{f}`" for f in row["facts"]) or "none"
        lines.append(f"| {row['section']} | `{row['file']}` | {rules} | {facts} | {row['tests']} | {_coverage_pages(row)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ mtus whatif

def whatif_text(result: Any) -> str:
    lines = []
    for ch in result.changes:
        arrow = "unchanged" if ch.from_ == ch.to else f"{ch.from_} -> {ch.to}"
        lines.append(f"{ch.request + 1}. {ch.item}: {arrow}")
        for c in ch.criteria:
            lines.append(f"   {c['rule']}/{c['criterion']}: {c['from']} -> {c['to']} "
                         f"({c['value_from']!r} -> {c['value_to']!r})")
        if ch.citations_from != ch.citations_to:
            lines.append(f"   cites: {'; '.join(ch.citations_from)} -> {'; '.join(ch.citations_to)}")
        else:
            lines.append(f"   cites: {'; '.join(ch.citations_to) or 'none'}")
        for d in ch.rationale_diff[2:]:
            if not d.startswith("@@"):
                lines.append(f"   {d}")
    return "\n".join(lines)


def flip_text(answers: list[Any]) -> str:
    lines = []
    for a in answers:
        lines.append(f"{a.request + 1}. {a.item}: {a.decision}")
        if a.impossible:
            lines.append(f"   {a.impossible}")
        for s in a.suggestions:
            lines.append(f"   {s.to} if: " + "; and ".join(s.documentation))
            lines.append("      " + " ".join(f"--set {p}={_value_text(v)}" if v is not None else f"--unset {p}"
                                             for p, v in s.changes))
    return "\n".join(lines)


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


GRID_MARK = {"certify": "C", "modify": "M", "non-certify": "N", "no-rule": "-", "invalid": "x"}


def grid_text(g: Any) -> str:
    (p1, v1), *rest = g.axes
    header = f"{p1} \\ {rest[0][0]}" if rest else p1
    cols = [str(v) for v in rest[0][1]] if rest else ["decision"]
    width = max(len(str(v)) for v in v1)
    lines = [header, " " * width + "  " + " ".join(f"{c:>4}" for c in cols)]
    for v, row in zip(v1, g.decisions):
        cells = " ".join(f"{GRID_MARK[d]:>4}" for d in row) if rest else row[0]
        lines.append(f"{str(v):>{width}}  {cells}")
    lines.append("C certify, M modify, N non-certify, - no rule, x invalid value")
    return "\n".join(lines)
