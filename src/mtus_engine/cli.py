"""The ``mtus`` command: a thin layer over mtus_engine.api."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from . import __version__
from .errors import MtusError, RulebookError

EXIT_BAD_INPUT = 2
log = logging.getLogger("mtus_engine")


def _engine(rules: str | None):
    from .engine import Engine
    from .rulebook import load_rulebook
    try:
        return Engine(load_rulebook(rules))
    except RulebookError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except MtusError as exc:  # durable_rules refused a compiled family
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None


rules_option = click.option("--rules", "rules_dir", type=click.Path(file_okay=False),
                            envvar="MTUS_RULES", help="Rulebook directory (default: the bundled rules/).")
edition_option = click.option(
    "--edition", metavar="ID", default=None,
    help="Judge under this MTUS edition (e.g. mtus-2016) instead of the one in effect on the request "
         "date; for requests no edition covers, such as today's. The output says it was chosen.")


def _check_edition(rulebook, edition: str | None) -> None:
    if edition is None:
        return
    try:
        rulebook.edition(edition)
    except MtusError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mtus")
def main() -> None:
    """MTUS utilization review rules engine: cited determinations from structured cases."""
    # our own messages only; nothing (and no case data) is logged unless --log-cases asks
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)


@main.command()
@click.argument("cases", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@click.option("--explain", is_flag=True, help="Also show which durable_rules rules fired.")
@click.option("--color/--no-color", default=None, help="Colour text output (default: when a terminal).")
@click.option("--batch", "batch_input", metavar="INPUT",
              help="Evaluate many cases: a JSONL file (one case a line), a directory of case files, or -.")
@click.option("--output", "batch_output", type=click.Path(),
              help="With --batch: write JSON lines here (default stdout). A regular file is replaced (never "
                   "the input, never while another run holds it); a device or FIFO is written in place.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --batch: worker processes (output is identical for any number).")
@click.option("--resume", is_flag=True, help="With --batch --output: continue an interrupted run.")
@click.option("--max-bytes", type=click.IntRange(1), default=5 * 1024 * 1024, show_default=True,
              help="Largest case file (or JSONL line) accepted.")
@click.option("--quiet", is_flag=True, help="Nothing on stderr but errors (no progress bar).")
@click.option("--log-cases", is_flag=True, help="Log each case's contents to stderr (off by default: case data is private).")
@edition_option
@rules_option
def evaluate(cases: tuple[str, ...], fmt: str, explain: bool, color: bool | None, batch_input: str | None,
             batch_output: str | None, workers: int, resume: bool, max_bytes: int, quiet: bool,
             log_cases: bool, edition: str | None, rules_dir: str | None) -> None:
    """Evaluate CASE files (YAML or JSON; - reads stdin; an IMR letter .txt/.pdf is extracted first), or a --batch.

    Prints one determination per request, in request order. A bad case file is reported on
    standard error and the others are still evaluated; the exit code is then 2. Any failure of
    one case (unreadable or special file, nesting over 64 levels, a value out of bounds, more
    than 500 requests or medications in a case, an engine error) is its one error line.

    With --batch, writes one JSON line per case in input order (index, source, case_id,
    determinations, or error) and then a summary line; --resume after a kill finishes the run
    with every case exactly once.
    """
    from .api import evaluate_sources
    from .render import render, to_json
    if quiet:
        _silence_libraries()
    if batch_input:
        if cases:
            click.echo("error: give CASE files or --batch INPUT, not both", err=True)
            raise SystemExit(EXIT_BAD_INPUT)
        if log_cases:
            log.warning("--log-cases is not supported with --batch: the batch output already holds each case's results")
        if edition:
            from .rulebook import load_rulebook
            _check_edition(load_rulebook(rules_dir), edition)
        _run_batch(batch_input, batch_output, workers, resume, max_bytes, quiet, log_cases, rules_dir, edition)
        return
    if not cases:
        click.echo("error: no CASE given (a file, - for stdin, or --batch INPUT)", err=True)
        raise SystemExit(EXIT_BAD_INPUT)
    engine = _engine(rules_dir)
    _check_edition(engine.rulebook, edition)
    results = evaluate_sources(list(cases), engine, explain=explain, max_bytes=max_bytes, edition=edition)
    if log_cases:
        logging.getLogger("mtus_engine").setLevel(logging.INFO)
        from .case import case_to_data
        from .api import read_source
        for item in results:
            if item.result is not None:
                try:
                    shown = (json.dumps(case_to_data(read_source(item.source, max_bytes=max_bytes)), default=str)
                             if item.source != "-" else item.result.case_id)
                except Exception as exc:  # noqa: BLE001 - logging never fails the run
                    shown = f"(not re-read: {type(exc).__name__})"
                log.info("case %s: %s", item.source, shown)
    color = sys.stdout.isatty() if color is None else color
    failed = False
    json_docs = []
    for item in results:
        if item.error:
            failed = True
            click.echo(f"error: {item.error.message}", err=True)
            continue
        if fmt == "json":
            data = item.result.to_json_data()
            if explain:
                data["explain"] = item.explain
            json_docs.append(data)
        else:
            click.echo(render(item.result, fmt, color=color, explain=item.explain)
                       if fmt == "text" else render(item.result, fmt), nl=False)
    if fmt == "json" and json_docs:
        click.echo(to_json(json_docs[0] if len(cases) == 1 else json_docs), nl=False)
    if failed:
        raise SystemExit(EXIT_BAD_INPUT)


def _silence_libraries() -> None:
    """--quiet: nothing on stderr but our errors (pypdf logs and warns about odd PDFs)."""
    import warnings
    for name in ("pypdf", "pypdfium2"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pypdf(ium2)?(\..*)?")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pypdf.*")


def _run_batch(source: str, output: str | None, workers: int, resume: bool, max_bytes: int,
               quiet: bool, log_cases: bool, rules_dir: str | None, edition: str | None = None) -> None:
    from .batch import run_batch
    _engine(rules_dir)  # a broken rulebook fails before any output is written
    bar = None
    progress = None
    if not quiet and sys.stderr.isatty():
        from rich.progress import Progress
        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("cases", total=None)
        progress = lambda n: bar.update(task, completed=n)  # noqa: E731
    try:
        summary = run_batch(source, output=output, workers=workers, resume=resume, rules_dir=rules_dir,
                            max_bytes=max_bytes, progress=progress, edition=edition)
    except MtusError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except OSError as exc:  # the output (or stdout) cannot be written: one line, not a traceback
        where = exc.filename or output or "<stdout>"
        click.echo(f"error: {where}: cannot write: {exc.strerror or exc}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    finally:
        if bar:
            bar.stop()
    if not quiet:
        click.echo(f"{summary['cases']} cases, {summary['requests']} requests, "
                   f"{summary['errors']} errors: " + ", ".join(f"{k} {v}" for k, v in summary["by_decision"].items()),
                   err=True)
    if summary["errors"]:
        raise SystemExit(EXIT_BAD_INPUT)


@main.group()
def rules() -> None:
    """Inspect, lint and test the rulebook."""


@rules.command("lint")
@rules_option
def rules_lint(rules_dir: str | None) -> None:
    """Validate the rulebook: schema, fact vocabulary, drugs, citations, ids (file:line errors),
    and durable_rules' limits: each rule family (one durable_rules ruleset) must stay within half
    of the properties per fact (255) and rules per ruleset (4,096), and must still run at twice
    its size on every rule test's facts (the match stack, error 303)."""
    engine = _engine(rules_dir)
    rb = engine.rulebook
    problems = _family_limit_problems(engine)
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        raise SystemExit(EXIT_BAD_INPUT)
    click.echo(f"ok: {len(rb.rules)} rules in {len(rb.files)} files, {len(rb.facts)} facts, "
               f"{len(rb.drugs.drugs)} drugs, {len(engine.compiled.definition)} compiled durable rules "
               f"(rulebook {rb.version}, digest {rb.digest})")


def _family_limit_problems(engine) -> list[str]:
    """durable_rules limits per rule family, probed with the facts of the rulebook's own tests."""
    from .backend import limit_problems
    from .case import case_from_data, derive_request
    from .compiler import chained_facts
    from .engine import DerivedRequest, request_facts
    from .ruletests import load_rule_tests
    from .yamlio import plain
    compiled = engine.compiled
    probes: dict[int, list] = {}
    for path in engine.rulebook.test_files:
        try:
            tests = load_rule_tests(path)
        except MtusError:
            continue  # `rules test` reports it
        for line, test in tests:
            try:
                case = case_from_data(plain(test["case"]), f"{path}:{line}")
                for i in range(len(case.requests)):
                    fields, _ = derive_request(case, i, engine.rulebook.drugs)
                    facts = request_facts(case, DerivedRequest(fields), engine.rulebook)
                    for fam in compiled.families_for(facts):
                        keys = compiled.families[fam].request_keys
                        probes.setdefault(fam, []).append(
                            (f"test {path.name}:{line}", [{k: v for k, v in facts.items() if k in keys}]))
            except Exception:  # noqa: BLE001 - a broken test is `rules test`'s to report
                continue
    problems = []
    for n, family in enumerate(compiled.families):
        label = f"rule family {n} ({', '.join(family.rule_ids[:4])}{', ...' if len(family.rule_ids) > 4 else ''})"
        problems += limit_problems(label, family.definition, len(family.request_keys), probes.get(n, []),
                                   lambda fired: chained_facts(compiled, fired))
    return problems


@rules.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@rules_option
def rules_list(fmt: str, rules_dir: str | None) -> None:
    """List every rule with its section, pages and what it applies to."""
    rb = _engine(rules_dir).rulebook
    rows = [{"id": r.id, "section": r.citation.section, "pages": r.citation.pages,
             "certainty": r.citation.certainty, "recommendation": r.recommendation,
             "applies_to": r.applies_to.model_dump(exclude_defaults=True),
             "criteria": [c.id for c in r.criteria], "file": f"{r.file}:{r.line}"} for r in rb.rules]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("rule", "section", "pages", "applies to", "criteria", box=None)
    for row in rows:
        applies = "; ".join(f"{k}: {', '.join(v)}" for k, v in row["applies_to"].items())
        pages = (row["pages"] or "none") + ("" if row["certainty"] == "letter" else f" ({row['certainty']})")
        table.add_row(row["id"], row["section"], pages, applies, str(len(row["criteria"])))
    Console(width=140).print(table)


@rules.command("show")
@click.argument("rule_id")
@click.option("--compiled", is_flag=True, help="Also print the durable_rules definitions it compiles to.")
@rules_option
def rules_show(rule_id: str, compiled: bool, rules_dir: str | None) -> None:
    """Show one rule: citation, recommendation, criteria and their wording."""
    engine = _engine(rules_dir)
    rule = engine.rulebook.by_id.get(rule_id)
    if rule is None:
        import difflib
        near = difflib.get_close_matches(rule_id, list(engine.rulebook.by_id), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        click.echo(f"error: no rule {rule_id!r}{hint}", err=True)
        raise SystemExit(EXIT_BAD_INPUT)
    click.echo(f"{rule.id}: {rule.title}")
    click.echo(f"  file: {rule.file}:{rule.line}   guideline parts: {rule.edition}")
    for part, c in rule.parts.items():
        click.echo(f"  cites ({part}): {c.guideline}, {c.section}"
                   + (f", page(s) {c.pages}" if c.pages else ", no pages") + f" [{c.certainty}]")
        for extra in rule.also_cites:
            pages = extra.pages.get(part)
            click.echo(f"    also cites: {extra.section}" + (f", page(s) {pages}" if pages else "")
                       + f" [{extra.certainty}]")
    click.echo(f"  applies to: {rule.applies_to.model_dump(exclude_defaults=True)}")
    click.echo(f"  {rule.recommendation}: {rule.recommends}")
    for crit in rule.criteria:
        when = f" when {crit.when.fact} is {json.dumps(crit.when.equals)}" if crit.when else ""
        kind = "decisive" if crit.decisive else "advisory"
        onfail = f", on failure {crit.on_failure}" + (f" to {crit.modify.model_dump(exclude_none=True)}" if crit.modify else "")
        click.echo(f"  - {crit.id} ({kind}{onfail}): {crit.fact} {crit.test.describe()}{when}")
        click.echo(f"      asks: {crit.asks}")
        click.echo(f"      missing: {crit.missing}")
        if crit.assumed:
            click.echo(f"      if undocumented: taken as {json.dumps(crit.assumed.assume)} ({crit.assumed.because})")
        else:
            click.echo("      if undocumented: required documentation (the request fails without it)")
    if compiled:
        names = {k: v for k, v in engine.compiled.definition.items() if k.split("|")[0] == rule.id}
        click.echo(json.dumps(names, indent=2, sort_keys=True))


@rules.command("coverage")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@rules_option
def rules_coverage(fmt: str, rules_dir: str | None) -> None:
    """Each guideline section: its rules, the facts they read, its tests, and page certainty.

    Exit 1 when a rule is fired by no test (CI runs this through pytest).
    """
    from .coverage import coverage_markdown, coverage_rows
    rows, totals = coverage_rows(_engine(rules_dir))
    if fmt == "json":
        click.echo(json.dumps({"sections": rows, "totals": totals}, indent=2))
    elif fmt == "markdown":
        click.echo(coverage_markdown(rows, totals), nl=False)
    else:
        from rich.console import Console
        from rich.table import Table
        table = Table("section", "rules (tests)", "facts read", "tests", "pages", box=None)
        for row in rows:
            pages = "; ".join(f"{p['pages'] or '-'} " + ("✔" if p["certainty"] == "letter" else f"({p['certainty']})")
                              for p in row["pages"])
            table.add_row(row["section"], "\n".join(f"{r['id']} ({r['tests']})" for r in row["rules"]),
                          ", ".join(row["facts"]) or "-", str(row["tests"]), pages)
        Console(width=160).print(table)
        click.echo(f"rule coverage {totals['rules_fired_by_tests']}/{totals['rules']} "
                   f"({100 * totals['rule_coverage']:.0f}%), {totals['tests_passed']}/{totals['tests']} tests pass, "
                   f"{totals['pages_letter_verified']}/{totals['pages_cited']} cited pages letter-verified")
    if totals["rule_coverage"] < 1.0 or totals["tests_passed"] < totals["tests"]:
        raise SystemExit(1)


@rules.command("test")
@click.option("-v", "--verbose", is_flag=True)
@rules_option
def rules_test(verbose: bool, rules_dir: str | None) -> None:
    """Run the rulebook's own tests (*.test.yaml) and report rule coverage."""
    from .ruletests import rule_coverage, run_rule_tests
    engine = _engine(rules_dir)
    try:
        results = run_rule_tests(engine)
    except MtusError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    failed = [r for r in results if not r.passed]
    for r in results:
        if verbose or not r.passed:
            click.echo(f"{'PASS' if r.passed else 'FAIL'} {r.file}:{r.line} {r.name}")
            for p in r.problems:
                click.echo(f"     {p}")
    cov = rule_coverage(engine, results)
    untested = [rid for rid, c in cov.items() if c["tests"] == 0]
    covered = len(cov) - len(untested)
    click.echo(f"{len(results) - len(failed)}/{len(results)} rule tests passed; "
               f"rule coverage {covered}/{len(cov)} ({100 * covered / max(1, len(cov)):.0f}%)")
    for rid in untested:
        click.echo(f"  not fired by any test: {rid}")
    if failed or untested:
        raise SystemExit(1)


@main.command()
@click.argument("letters", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), default="json", show_default=True)
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False),
              help="Write <letter>.letter.json/.yaml and <letter>.case.yaml into this directory.")
@click.option("--max-bytes", type=click.IntRange(1), default=20 * 1024 * 1024, show_default=True,
              help="Largest letter file accepted.")
@click.option("--quiet", is_flag=True, help="Nothing on stderr but errors (no 'wrote' lines, no PDF library warnings).")
def extract(letters: tuple[str, ...], fmt: str, out_dir: str | None, max_bytes: int, quiet: bool) -> None:
    """Extract IMR letters (text or PDF): the parsed letter and the case derived from it.

    A letter that cannot be read or is not an IMR letter is reported on stderr; the others
    are still extracted; the exit code is then 2.
    """
    from .api import case_error, extract_letter
    from .regress import collect_letters
    from .render import to_json
    if quiet:
        _silence_libraries()
    paths, skipped = collect_letters(letters)
    failed = bool(skipped)
    for bad in skipped:
        click.echo(f"error: {bad['letter']}: {bad['error']}", err=True)
    docs = []
    taken: dict[str, str] = {}   # output names written in this run -> their letter
    for path in map(str, paths):
        try:
            doc = extract_letter(path, max_bytes=max_bytes)
            if out_dir:
                from .api import write_extraction
                for written in write_extraction(doc, path, Path(out_dir), fmt, taken):
                    if not quiet:
                        click.echo(f"wrote {written}", err=True)
            else:
                docs.append(doc)
        except Exception as exc:  # noqa: BLE001 - one letter never takes down the run
            failed = True
            click.echo(f"error: {case_error(path, exc).message}", err=True)
            continue
    if docs:
        data = docs[0] if len(paths) == 1 and len(letters) == 1 else docs
        if fmt == "json":
            click.echo(to_json(data), nl=False)
        else:
            import yaml
            click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    if failed:
        raise SystemExit(EXIT_BAD_INPUT)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit", "html", "markdown"]),
              default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report here (default stdout).")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False),
              help="A saved JSON report: list every item whose engine outcome changed.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
              help="Exit 1 when agreement is below this fraction.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes  [default: the CPU count]")
@click.option("--quiet", is_flag=True, help="Nothing on stderr (no progress bar).")
@click.option("--max-bytes", type=click.IntRange(1), default=20 * 1024 * 1024, show_default=True,
              help="Largest letter file accepted; larger ones are reported as errors.")
@rules_option
def regress(paths: tuple[str, ...], fmt: str, output: str | None, baseline: str | None,
            min_agreement: float | None, workers: int | None, quiet: bool, max_bytes: int,
            rules_dir: str | None) -> None:
    """Regression-test the rulebook against IMR letters (files or directories).

    Each letter is extracted, its case evaluated, and each item's engine outcome (upheld for
    non-certify or modify, overturned for certify, no-rule) compared with the reviewer's.
    The figures: coverage, agreement, per-class recall and balanced accuracy for the items whose
    reviewer cited an MTUS part (the headline) and for all items, per guideline part, and reason
    agreement where a <letter>.gold.yaml sits beside a letter.
    Exit 1 when agreement is below --min-agreement or an item regressed against --baseline.
    """
    import os

    from .api import regression_report
    from .report import markdown_report
    # lint the rulebook up front: a broken rule file fails fast. Not process_engine: a forked
    # worker must compile its own (durable_rules state inherited through fork crashes on free)
    engine = _engine(rules_dir)
    from .regress import use_engine
    use_engine(engine, rules_dir)   # no second rulebook load, here or in a worker
    if workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        workers = max(1, min(64, cpus or 1))
    base = None
    if baseline:
        try:
            base = json.loads(Path(baseline).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            click.echo(f"error: {baseline}: not a JSON regression report ({exc})", err=True)
            raise SystemExit(EXIT_BAD_INPUT) from None
    try:
        if fmt == "markdown":
            outcome = markdown_report(list(paths), output=output, baseline=base, workers=workers,
                                      rules_dir=rules_dir, engine=engine, max_bytes=max_bytes)
        else:
            outcome = regression_report(list(paths), fmt=fmt, output=output, baseline=base, workers=workers,
                                        rules_dir=rules_dir, engine=engine, progress=not quiet,
                                        max_bytes=max_bytes, color=sys.stdout.isatty() and output is None)
    finally:
        use_engine(None, rules_dir)   # this command's engine serves this command only
    if not quiet and output:
        click.echo(f"wrote {output}", err=True)
    s = outcome["summary"]
    if min_agreement is not None and (s["agreement"] or 0) < min_agreement:
        if not quiet:
            click.echo(f"agreement {s['agreement']} is below {min_agreement}", err=True)
        raise SystemExit(1)
    if outcome["regressed"]:
        if not quiet:
            click.echo(f"{outcome['regressed']} items regressed against the baseline", err=True)
        raise SystemExit(1)


@main.command()
@click.argument("source")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
              help="Change a field, e.g. requests[0].quantity=20 or findings.acute_exacerbation=true.")
@click.option("--unset", "unsets", multiple=True, metavar="PATH", help="Make a field not documented.")
@click.option("--flip", is_flag=True, help="Find the smallest verified changes that change each decision.")
@click.option("--grid", "grids", multiple=True, metavar="PATH=V1,V2|A..B[:STEP]",
              help="Sweep one or two fields and print a decision table.")
@click.option("--request", "request_index", type=int, default=0, show_default=True,
              help="Which request a --grid reports on.")
@click.option("--plot", type=click.Path(dir_okay=False), help="With --grid: draw the table as a heat map (PNG).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@edition_option
@rules_option
def whatif(source: str, sets: tuple[str, ...], unsets: tuple[str, ...], flip: bool,
           grids: tuple[str, ...], request_index: int, plot: str | None, fmt: str,
           edition: str | None, rules_dir: str | None) -> None:
    """Ask what-if questions of a case file or an IMR letter (a letter is extracted first).

    \b
    mtus whatif case.yaml --set requests[0].quantity=20 --set findings.acute_exacerbation=true
    mtus whatif case.yaml --unset requests[0].functional_improvement
    mtus whatif case.yaml --flip
    mtus whatif case.yaml --grid requests[0].quantity=10..90:10 --grid requests[0].prior_use_weeks=0..12 --plot grid.png
    """
    from . import whatif as wi
    from .api import read_source
    from .render import to_json
    engine = _engine(rules_dir)
    _check_edition(engine.rulebook, edition)
    engine = engine.under_edition(edition)
    try:
        case = read_source(source)
        pairs = []
        for item in sets:
            if "=" not in item:
                raise MtusError(f"--set {item!r}: expected PATH=VALUE")
            path, value = item.split("=", 1)
            pairs.append((path.strip(), value))
        if grids:
            axes = [wi.parse_grid(g, case) for g in grids]
            result = wi.grid(case, engine, axes, request_index, pairs, list(unsets))
            if plot:
                wi.plot_grid(result, plot, f"{case.id}: {case.requests[request_index].item}")
            if fmt == "json":
                click.echo(to_json(result.to_json_data()), nl=False)
            else:
                click.echo(_grid_text(result))
                if plot:
                    click.echo(f"wrote {plot}", err=True)
            return
        if flip:
            base = case if not (pairs or unsets) else wi.apply_changes(case, pairs, list(unsets))
            answers = wi.flip(base, engine)
            if fmt == "json":
                click.echo(to_json([a.to_json_data() for a in answers]), nl=False)
            else:
                click.echo(_flip_text(answers))
            return
        if not (pairs or unsets):
            raise MtusError("nothing to do: give --set, --unset, --flip or --grid")
        result = wi.what_if(case, engine, pairs, list(unsets))
    except MtusError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    if fmt == "json":
        click.echo(to_json(result.to_json_data()), nl=False)
    else:
        click.echo(_whatif_text(result))


def _whatif_text(result) -> str:
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


def _flip_text(answers) -> str:
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


def _value_text(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


def _grid_text(g) -> str:
    short = {"certify": "C", "modify": "M", "non-certify": "N", "no-rule": "-", "invalid": "x"}
    (p1, v1), *rest = g.axes
    header = f"{p1} \\ {rest[0][0]}" if rest else p1
    cols = [str(v) for v in rest[0][1]] if rest else ["decision"]
    width = max(len(str(v)) for v in v1)
    lines = [header, " " * width + "  " + " ".join(f"{c:>4}" for c in cols)]
    for v, row in zip(v1, g.decisions):
        cells = " ".join(f"{short[d]:>4}" for d in row) if rest else row[0]
        lines.append(f"{str(v):>{width}}  {cells}")
    lines.append("C certify, M modify, N non-certify, - no rule, x invalid value")
    return "\n".join(lines)


def run() -> None:  # pragma: no cover
    main()


# ------------------------------------------------------------------ the service (issue 11)
# FastAPI, uvicorn and fhir.resources are imported inside these commands only: `mtus evaluate`
# and the other commands never load them.

@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback requires --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="Decision log (SQLite): every evaluation is recorded. Default: none.")
@click.option("--store-inputs", is_flag=True,
              help="Also keep each input in the decision log (it is medical data: off by default).")
@click.option("--token", envvar="MTUS_TOKEN", default=None,
              help="Require 'Authorization: Bearer TOKEN' (required off loopback; or MTUS_TOKEN).")
@click.option("--max-bytes", type=click.IntRange(1), default=5 * 1024 * 1024, show_default=True,
              help="Largest request body accepted.")
@click.option("--timeout", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds an evaluation may take before it is abandoned (503).")
@click.option("--access-log", is_flag=True, help="Log each request line (method, path, status; never a body).")
@rules_option
def serve(host: str, port: int, workers: int, db: str | None, store_inputs: bool, token: str | None,
          max_bytes: int, timeout: float, access_log: bool, rules_dir: str | None) -> None:
    """Serve the API, CDS Hooks and the reviewer's page over HTTP (OpenAPI docs at /docs)."""
    try:
        from .service.app import Config, is_loopback
        from .service.app import serve as run_server
    except ImportError as exc:  # pragma: no cover - the service's dependencies are not installed
        click.echo(f"error: the service needs FastAPI and uvicorn ({exc.name} is missing): "
                   "pip install 'mtus-engine'", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    if not is_loopback(host) and not token:
        click.echo(f"error: --host {host} is not loopback: give --token (or MTUS_TOKEN) so requests "
                   "must carry 'Authorization: Bearer <token>'", err=True)
        raise SystemExit(EXIT_BAD_INPUT)
    _engine(rules_dir)  # a broken rulebook fails here, before any worker starts
    if store_inputs and not db:
        click.echo("error: --store-inputs needs --db", err=True)
        raise SystemExit(EXIT_BAD_INPUT)
    if db:
        import sqlite3

        from .service.decisions import DecisionLog
        try:
            DecisionLog(db).close()  # the schema exists before any worker writes
        except (sqlite3.Error, OSError) as exc:
            click.echo(f"error: {db}: cannot open the decision log: {exc}", err=True)
            raise SystemExit(EXIT_BAD_INPUT) from None
    run_server(Config(rules_dir=rules_dir, db=db, store_inputs=store_inputs, token=token,
                      max_bytes=max_bytes, timeout=timeout), host=host, port=port, workers=workers,
               access_log=access_log)


@main.group()
def decisions() -> None:
    """Read the service's decision log (mtus serve --db PATH)."""


db_option = click.option("--db", type=click.Path(dir_okay=False), required=True, envvar="MTUS_DB",
                         help="The decision log written by mtus serve --db.")


def _decisions_call(fn, *args, **kwargs):
    import sqlite3
    try:
        return fn(*args, **kwargs)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc.args[0]}: no such decision log", err=True)
    except sqlite3.Error as exc:
        click.echo(f"error: cannot read the decision log: {exc}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


@decisions.command("list")
@db_option
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True, help="Newest N (0: all).")
@click.option("--case", "case_id", default=None, help="Only this case id.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
def decisions_list(db: str, limit: int, case_id: str | None, fmt: str) -> None:
    """The newest decisions: time, case, input hash, rulebook, and each request's decision."""
    from .service.decisions import list_decisions, write_csv
    rows = _decisions_call(list_decisions, db, limit=limit or None, case_id=case_id)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if fmt == "csv":
        write_csv(rows, sys.stdout)
        return
    for r in rows:
        answers = ", ".join(q["decision"] for q in r["requests"])
        click.echo(f"{r['id']:>6}  {r['time'][:19]}  {r['endpoint']:<9}  {r['case_id'] or '-'}  "
                   f"{r['input_sha256'][:12]}  {r['rulebook_version']}/{r['edition'] or '-'}  {answers}")


@decisions.command("show")
@click.argument("key")
@db_option
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
def decisions_show(key: str, db: str, fmt: str) -> None:
    """One decision by its number or uid (JSON: with its input, when it was stored)."""
    from .service.decisions import show_decision, write_csv
    row = _decisions_call(show_decision, db, key)
    if row is None:
        click.echo(f"error: no decision {key!r} in {db}", err=True)
        raise SystemExit(EXIT_BAD_INPUT)
    if fmt == "csv":
        write_csv([row], sys.stdout)
        return
    click.echo(json.dumps(row, indent=2, ensure_ascii=False))


@decisions.command("export")
@db_option
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True,
              help="json: one decision a line (JSON lines); csv: one row per request.")
def decisions_export(db: str, fmt: str) -> None:
    """Every decision, oldest first, on standard output."""
    from .service.decisions import export_decisions
    _decisions_call(export_decisions, db, fmt, sys.stdout)
