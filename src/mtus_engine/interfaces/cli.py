"""The ``mtus`` command: a thin layer over mtus_engine.api.

Each command parses its options, calls the API, and prints what render.py formats; errors
become one line and exit code 2. Everything else is imported inside the commands that use it,
so a cold `mtus evaluate` loads only the engine."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from .. import __version__
from ..errors import MtusError
# the front door (python -m mtus_engine, the `mtus` script) turned pydantic's plugins off; the
# same when this module is imported first (tests, callers of main)
from .front import DEFAULTS, EXIT_BAD_INPUT, configure_logging, evaluate_cases
from .front import check_edition as _check_edition, engine_for as _engine, fail as _fail

log = logging.getLogger("mtus_engine")


def _use_rules(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # one rulebook for the whole process and its workers: the engine, and the vocabulary the
    # letter and note readers and the case model read (they look up MTUS_RULES)
    # for the command's run only: called from Python (click's runner), the caller's environment
    # is given back afterwards
    if value:
        before = os.environ.get("MTUS_RULES")
        os.environ["MTUS_RULES"] = str(Path(value).resolve())

        def restore() -> None:
            if before is None:
                os.environ.pop("MTUS_RULES", None)
            else:
                os.environ["MTUS_RULES"] = before
        ctx.call_on_close(restore)
    return value


rules_option = click.option("--rules", "rules_dir", type=click.Path(file_okay=False), callback=_use_rules,
                            envvar="MTUS_RULES", help="Rulebook directory (default: the bundled rules/).")
edition_option = click.option(
    "--edition", metavar="ID", default=None,
    help="Judge under this MTUS edition (e.g. mtus-2016) instead of the one in effect on the request "
         "date; for requests no edition covers, such as today's. The output says it was chosen.")


@contextmanager
def _progress(label: str, quiet: bool):
    """A transient progress bar on a terminal's stderr: yields update(done, total=None), or None."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress
    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task(label, total=None)
    try:
        yield lambda done, total=None: bar.update(task, completed=done, total=total)
    finally:
        bar.stop()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mtus")
def main() -> None:
    """MTUS utilization review rules engine: cited determinations from structured cases."""
    configure_logging()


max_bytes_option = click.option("--max-bytes", type=click.IntRange(1), default=DEFAULTS["max_bytes"], show_default=True,
                                help="Largest case file (or JSONL line) accepted.")
quiet_option = click.option("--quiet", is_flag=True, help="Nothing on stderr but errors (no progress bar).")
batch_output_option = click.option(
    "--output", "batch_output", type=click.Path(),
    help="Write JSON lines here (default stdout). A regular file is replaced (never "
         "the input, never while another run holds it); a device or FIFO is written in place.")
batch_workers_option = click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
                                    help="Worker processes (output is identical for any number).")
resume_option = click.option("--resume", is_flag=True, help="With --output: continue an interrupted run.")


@main.command()
@click.argument("cases", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True)
@click.option("--explain", is_flag=True, help="Also show which durable_rules rules fired.")
@click.option("--color/--no-color", default=None, help="Colour text output (default: when a terminal).")
@click.option("--batch", "batch_input", metavar="INPUT",
              help="Evaluate many cases, as `mtus batch INPUT` does: a JSONL file (one case a line), "
                   "a directory of case files, or -.")
@click.option("--output", "batch_output", type=click.Path(),
              help="With --batch: write JSON lines here (default stdout). A regular file is replaced (never "
                   "the input, never while another run holds it); a device or FIFO is written in place.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --batch: worker processes (output is identical for any number).")
@click.option("--resume", is_flag=True, help="With --batch --output: continue an interrupted run.")
@max_bytes_option
@quiet_option
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

    With --batch (the same as `mtus batch`), writes one JSON line per case in input order (index,
    source, case_id, determinations, or error) and then a summary line; --resume after a kill
    finishes the run with every case exactly once.
    """
    if quiet:
        _silence_libraries()
    if batch_input:
        if cases:
            _fail("give CASE files or --batch INPUT, not both")
        if log_cases:
            log.warning("--log-cases is not supported with --batch: the batch output already holds each case's results")
        _run_batch(batch_input, batch_output, workers, resume, max_bytes, quiet, rules_dir, edition)
        return
    if not cases:
        _fail("no CASE given (a file, - for stdin, or --batch INPUT)")
    # the same function as the front door's plain `mtus evaluate CASE...` (front.py)
    evaluate_cases(cases, fmt, explain, color, max_bytes, log_cases, edition, rules_dir)


def _silence_libraries() -> None:
    """--quiet: nothing on stderr but our errors (pypdf logs and warns about odd PDFs)."""
    import warnings
    for name in ("pypdf", "pypdfium2"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pypdf(ium2)?(\..*)?")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pypdf.*")


@main.command()
@click.argument("source", metavar="INPUT")
@batch_output_option
@batch_workers_option
@resume_option
@max_bytes_option
@quiet_option
@edition_option
@rules_option
def batch(source: str, batch_output: str | None, workers: int, resume: bool, max_bytes: int, quiet: bool,
          edition: str | None, rules_dir: str | None) -> None:
    """Evaluate many cases: INPUT is a JSONL file (one case a line), a directory of case files, or -.

    Writes one JSON line per case in input order (index, source, case_id, determinations, or
    error) and then a summary line; the output is the same for any number of workers. With
    --output, the first line records the input, and --resume after a kill finishes the run with
    every case exactly once. A case's failure is its error line; the exit code is then 2.
    (`mtus evaluate --batch INPUT` is the same command.)
    """
    if quiet:
        _silence_libraries()
    _run_batch(source, batch_output, workers, resume, max_bytes, quiet, rules_dir, edition)


def _run_batch(source: str, output: str | None, workers: int, resume: bool, max_bytes: int,
               quiet: bool, rules_dir: str | None, edition: str | None = None) -> None:
    from ..api import run_batch
    from .render import batch_summary
    engine = _engine(rules_dir)  # a broken rulebook fails before any output is written
    _check_edition(engine.rulebook, edition)
    with _progress("cases", quiet) as progress:
        try:
            summary = run_batch(source, output=output, workers=workers, resume=resume, rules_dir=rules_dir,
                                max_bytes=max_bytes, progress=progress, edition=edition)
        except MtusError as exc:
            _fail(str(exc))
        except OSError as exc:  # the output (or stdout) cannot be written: one line, not a traceback
            _fail(f"{exc.filename or output or '<stdout>'}: cannot write: {exc.strerror or exc}")
    if not quiet:
        click.echo(batch_summary(summary), err=True)
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
    from ..api import family_limit_problems, lint_summary
    from .render import lint_text
    engine = _engine(rules_dir)
    problems = family_limit_problems(engine)
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        raise SystemExit(EXIT_BAD_INPUT)
    click.echo(lint_text(lint_summary(engine)), nl=False)


@rules.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@rules_option
def rules_list(fmt: str, rules_dir: str | None) -> None:
    """List every rule with its section, pages and what it applies to."""
    from ..api import rule_rows
    rows = rule_rows(_engine(rules_dir).rulebook)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from .render import rules_table
    click.echo(rules_table(rows, color=sys.stdout.isatty()), nl=False)


@rules.command("show")
@click.argument("rule_id")
@click.option("--compiled", is_flag=True, help="Also print the durable_rules definitions it compiles to.")
@rules_option
def rules_show(rule_id: str, compiled: bool, rules_dir: str | None) -> None:
    """Show one rule: citation, recommendation, criteria and their wording."""
    from ..api import compiled_rule, find_rule
    from .render import rule_text
    engine = _engine(rules_dir)
    try:
        rule = find_rule(engine.rulebook, rule_id)
    except MtusError as exc:
        _fail(str(exc))
    click.echo(rule_text(rule, compiled_rule(engine, rule.id) if compiled else None), nl=False)


@rules.command("coverage")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@rules_option
def rules_coverage(fmt: str, rules_dir: str | None) -> None:
    """Each guideline section: its rules, the facts they read, its tests, and page certainty.

    Exit 1 when a rule is fired by no test (CI runs this through pytest).
    """
    from ..api import coverage
    rows, totals = coverage(_engine(rules_dir))
    if fmt == "json":
        click.echo(json.dumps({"sections": rows, "totals": totals}, indent=2))
    elif fmt == "markdown":
        from .render import coverage_markdown
        click.echo(coverage_markdown(rows, totals), nl=False)
    else:
        from .render import coverage_text
        click.echo(coverage_text(rows, totals, color=sys.stdout.isatty()), nl=False)
    if totals["rule_coverage"] < 1.0 or totals["tests_passed"] < totals["tests"]:
        raise SystemExit(1)


@rules.command("test")
@click.option("-v", "--verbose", is_flag=True)
@rules_option
def rules_test(verbose: bool, rules_dir: str | None) -> None:
    """Run the rulebook's own tests (*.test.yaml) and report rule coverage."""
    from ..api import rule_tests
    from .render import rule_tests_text
    engine = _engine(rules_dir)
    try:
        results, cov = rule_tests(engine)
    except MtusError as exc:
        _fail(str(exc))
    click.echo(rule_tests_text(results, cov, verbose=verbose), nl=False)
    if any(not r.passed for r in results) or any(c["tests"] == 0 for c in cov.values()):
        raise SystemExit(1)


@main.command()
@click.argument("letters", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), default="json", show_default=True)
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False),
              help="Write <letter>.letter.json/.yaml and <letter>.case.yaml into this directory.")
@click.option("--max-bytes", type=click.IntRange(1), default=20 * 1024 * 1024, show_default=True,
              help="Largest letter file accepted.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (output is identical for any number).")
@click.option("--kind", type=click.Choice(["auto", "letter", "note"]), default="auto", show_default=True,
              help="What the files are: IMR letters, progress notes (PR-2, office note, RFA), or detected.")
@click.option("--quiet", is_flag=True, help="Nothing on stderr but errors (no 'wrote' lines, no PDF library warnings).")
def extract(letters: tuple[str, ...], fmt: str, out_dir: str | None, max_bytes: int, workers: int,
            kind: str, quiet: bool) -> None:
    """Extract IMR letters or progress notes (text or PDF): the parsed document and the case
    derived from it (a note writes <note>.note.json/.yaml).

    A letter that cannot be read or is not an IMR letter is reported on stderr; the others
    are still extracted; the exit code is then 2.
    """
    from ..api import case_error, collect_letters, extract_letters, write_extraction
    if quiet:
        _silence_libraries()
    paths, skipped = collect_letters(letters)
    failed = bool(skipped)
    for bad in skipped:
        click.echo(f"error: {bad['letter']}: {bad['error']}", err=True)
    docs = []
    taken: dict[str, str] = {}   # output names written in this run -> their letter
    for path, doc, error in extract_letters(list(map(str, paths)), workers=workers, max_bytes=max_bytes, kind=kind):
        if error is None and out_dir:
            try:
                for written in write_extraction(doc, path, Path(out_dir), fmt, taken):
                    if not quiet:
                        click.echo(f"wrote {written}", err=True)
            except Exception as exc:  # noqa: BLE001 - one letter never takes down the run
                error = case_error(path, exc).message
        elif error is None:
            docs.append(doc)
        if error is not None:
            failed = True
            click.echo(f"error: {error}", err=True)
    if docs:
        from .render import to_json, to_yaml
        data = docs[0] if len(paths) == 1 and len(letters) == 1 else docs
        click.echo(to_json(data) if fmt == "json" else to_yaml(data), nl=False)
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
    from ..api import default_workers, regression_report
    # lint the rulebook up front: a broken rule file fails fast; the report reuses this engine
    engine = _engine(rules_dir)
    base = None
    if baseline:
        try:
            base = json.loads(Path(baseline).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            _fail(f"{baseline}: not a JSON regression report ({exc})")
    with _progress("letters", quiet or fmt == "markdown") as progress:
        outcome = regression_report(list(paths), fmt=fmt, output=output, baseline=base,
                                    workers=workers or default_workers(), rules_dir=rules_dir, engine=engine,
                                    progress=progress, max_bytes=max_bytes,
                                    color=sys.stdout.isatty() and output is None)
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
    from .. import api
    from . import render
    engine = _engine(rules_dir)
    _check_edition(engine.rulebook, edition)
    engine = engine.under_edition(edition)
    try:
        case = api.read_source(source)
        pairs = api.parse_sets(sets)
        if grids:
            result = api.grid(case, engine, list(grids), request_index, pairs, list(unsets), plot=plot)
            text = None if fmt == "json" else render.grid_text(result)
        elif flip:
            answers = api.flip(case, engine, pairs, list(unsets))
            result = [a.to_json_data() for a in answers]
            text = None if fmt == "json" else render.flip_text(answers)
        else:
            result = api.what_if(case, engine, pairs, list(unsets))
            text = None if fmt == "json" else render.whatif_text(result)
    except MtusError as exc:
        _fail(str(exc))
    if text is None:
        click.echo(render.to_json(result if isinstance(result, list) else result.to_json_data()), nl=False)
        return
    click.echo(text)
    if grids and plot:
        click.echo(f"wrote {plot}", err=True)


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
