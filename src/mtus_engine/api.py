"""The Python API behind every CLI command, so a service can do what the CLI does.

Nothing here prints or draws: a command gets data (or writes a report to the stream it is
given) and renders it with render.py. Modules that only some commands need (the letter
extractor, batch, regress, what-if, matplotlib) are imported by the functions that use them,
so `mtus evaluate` starts without them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

from .errors import InputError
from .yamlio import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from .evaluation.case import Case
    from .evaluation.determination import CaseDetermination
    from .evaluation.engine import Engine
    from .rules.rulebook import Rulebook


def load_engine(rules_dir: str | None = None) -> "Engine":
    """The rulebook in rules_dir (default: the bundled one) compiled into an engine. Raises
    RulebookError (its problems, file:line each) or MtusError (durable_rules refused a family)."""
    from .evaluation.engine import Engine
    from .rules.rulebook import load_rulebook
    return Engine(load_rulebook(rules_dir))


def load_rules(rules_dir: str | None = None) -> "Rulebook":
    from .rules.rulebook import load_rulebook
    return load_rulebook(rules_dir)


@dataclass
class Evaluated:
    source: str
    result: CaseDetermination | None = None
    error: InputError | None = None
    explain: list[list[str]] | None = None


def read_case(source: str, *, max_bytes: int = DEFAULT_MAX_BYTES, plain: bool = False) -> "Case":
    """A case from a path, or ``-`` for standard input.

    ``plain``: for the engine alone (a plain evaluate). The case is then plain_case.py's plain
    case when that reader takes the document (no pydantic imported), else the model as always;
    the engine gives the same output from either. Nothing but the engine reads a plain case."""
    if plain:
        return _read_plain(source, max_bytes)
    from .evaluation.case import load_case, load_case_text
    if source == "-":
        return load_case_text(_stdin(max_bytes), "<stdin>")
    return load_case(Path(source), max_bytes=max_bytes)


def _stdin(max_bytes: int) -> bytes:
    raw = sys.stdin.buffer.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise InputError("<stdin>", f"input is over the {max_bytes}-byte limit")
    return raw


def _read_plain(source: str, max_bytes: int) -> Any:
    """read_case's plain path: the same bytes, names and errors as load_case / load_case_text."""
    from .evaluation.plain_case import plain_case
    from .yamlio import parse_document, read_bytes
    if source == "-":
        name, raw = "<stdin>", _stdin(max_bytes)
    else:
        name = str(Path(source))
        raw = read_bytes(name, max_bytes=max_bytes)
    data = parse_document(raw, name)
    case = plain_case(data)
    if case is None:      # not in the models' stored form, or invalid: the models decide and report
        from .evaluation.case import case_from_data
        case = case_from_data(data, name)
    return case


def evaluate_sources(sources: list[str], engine: "Engine", *, explain: bool = False,
                     max_bytes: int = DEFAULT_MAX_BYTES, edition: str | None = None) -> list[Evaluated]:
    """Evaluate each case file; a bad file is reported and the rest go on. With an edition,
    every case is judged under it rather than the edition in effect on its request date."""
    engine = engine.under_edition(edition)
    out = []
    for source in sources:
        case = None
        try:
            case = read_source(source, max_bytes=max_bytes, plain=True)   # records: the engine's alone
            result = engine.evaluate(case)
            trace = [engine.fire(case, i) for i in range(len(case.requests))] if explain else None
        except Exception as exc:  # noqa: BLE001 - one case never takes down the run
            out.append(Evaluated(source, error=case_error(source, exc, case, engine)))
            continue
        out.append(Evaluated(source, result=result, explain=trace))
    return out


def case_error(source: str, exc: BaseException, case: "Case | None" = None,
               engine: "Engine | None" = None) -> InputError:
    """Any failure of one case as its one-line error: bad input as reported, a derived value
    out of bounds naming the request and field, anything else (an engine or internal error)
    named by its type, never a traceback."""
    if isinstance(exc, InputError):
        return exc
    from pydantic import ValidationError

    from .evaluation.case import derived_error
    from .errors import MtusError
    if isinstance(exc, ValidationError) and case is not None and engine is not None:
        try:
            found = derived_error(case, engine.rulebook.drugs, source)
        except Exception:  # noqa: BLE001
            found = None
        if found is not None:
            return found
    if isinstance(exc, MtusError):
        return InputError(source, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    text = " ".join(str(exc).split())[:200]
    return InputError(source, f"could not be evaluated: internal error ({type(exc).__name__}"
                              + (f": {text}" if text else "") + ")",
                      expected="a case this engine can judge; please report this input")


def extract_letter(path: str, *, max_bytes: int | None = None, kind: str = "auto") -> dict:
    """A letter file -> {"letter": parsed letter, "case": derived case}; a progress note ->
    {"kind": "note", "note": parsed note, "case": ...}. ``kind`` is auto (detected), letter or
    note. Raises InputError."""
    from .evaluation.case import case_from_data, case_to_data
    from .letters.letter import letter_to_case, parse_letter, read_letter
    from .letters.notes import extract_note, letter_or_note
    text = read_letter(path, max_bytes=max_bytes) if max_bytes else read_letter(path)
    if (kind if kind != "auto" else letter_or_note(text)) == "note":
        return extract_note(text, path, f"note-{Path(path).stem}")
    parsed = parse_letter(text, path)
    case = case_from_data(letter_to_case(parsed, f"letter-{Path(path).stem}"), path)
    return {"source": path, "letter": parsed.model_dump(mode="json"), "case": case_to_data(case)}


def write_extraction(doc: dict, path: str, out_dir: Path, fmt: str,
                     taken: dict[str, str] | None = None) -> list[Path]:
    """Write <stem>.letter.<fmt> and <stem>.case.yaml inside out_dir, never outside it.

    ``taken`` maps the names written so far in this run to their letters: a second letter
    with the same stem (d1/a.txt, d2/a.txt) is refused rather than overwriting the first.
    Each file is written to a fresh temporary name (O_EXCL, never following a planted
    symlink) and renamed into place, so nothing half-written is left either.
    """
    import json as _json
    import os
    import tempfile

    import yaml
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(out_dir), f"cannot create the output directory: {exc.strerror or exc}") from None
    stem = Path(path).name.rsplit(".", 1)[0]
    kind = "note" if doc.get("kind") == "note" else "letter"
    names = [(f"{stem}.{kind}.{fmt}", doc[kind], fmt), (f"{stem}.case.yaml", doc["case"], "yaml")]
    if taken is not None:
        for name, _, _ in names:
            if name in taken:
                raise InputError(path, f"its output {out_dir / name} was already written from {taken[name]} "
                                       "in this run", expected="letters with distinct file names, or one -o per directory")
    written = []
    for name, data, kind in names:
        target = (out_dir / name).resolve()
        if target.parent != out_dir.resolve():
            raise InputError(path, "output name escapes the output directory")
        if target.is_dir():
            raise InputError(path, f"its output {target} is a directory")
        text = (_json.dumps(data, indent=2, ensure_ascii=False) + "\n" if kind == "json"
                else yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=target.parent)
            try:
                os.fchmod(fd, 0o666 & ~_umask())
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, target)  # replaces a symlink at target, never writes through it
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            raise InputError(path, f"cannot write {target}: {exc.strerror or exc}") from None
        written.append(target)
        if taken is not None:
            taken[name] = path
    return written


def _umask() -> int:
    import os
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def regression_report(paths: list[str], *, fmt: str = "json", output: str | None = None,
                      out: IO[str] | None = None, baseline: dict | None = None, workers: int = 1,
                      rules_dir: str | None = None, engine: "Engine | None" = None,
                      progress: Callable[[int, int], None] | None = None, color: bool = False,
                      max_bytes: int | None = None) -> dict:
    """Run a regression and write its report (json, text, markdown, junit or html) to ``output``
    (atomically) or to the stream ``out`` (default stdout); returns the summary, errors,
    changes since the baseline, and how many items regressed. ``progress(done, total)`` is
    called as letters finish.

    The letters are regressed with ``engine`` when given (its rulebook is not loaded again;
    forked workers compile their own from it)."""
    import io
    import os

    from .rules.regress import compare_baseline, run_regression, use_engine
    from .interfaces.report import write_html, write_json, write_junit, write_markdown, write_text
    if engine is None:
        from .evaluation.engine import process_engine
        engine = process_engine(rules_dir)
    rb = {"version": engine.rulebook.version, "digest": engine.rulebook.digest}
    use_engine(engine, rules_dir)   # no second rulebook load, here or in a worker
    try:
        run = run_regression(paths, workers=workers, rules_dir=rules_dir, progress=progress, max_bytes=max_bytes)
    finally:
        use_engine(None, rules_dir)   # this call's engine serves this call only
    with run:
        changes = compare_baseline(run, baseline) if baseline is not None else None
        if output:
            import tempfile
            target = Path(output)
            # a name of its own: two runs writing the same report never share a temporary file
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
            fh = os.fdopen(fd, "w", encoding="utf-8")
        else:
            fh = io.StringIO()
        try:
            if fmt == "json":
                write_json(run, fh, rulebook=rb, changes=changes)
            elif fmt == "junit":
                write_junit(run, fh)
            elif fmt == "html":
                write_html(run, fh, rulebook=rb, changes=changes)
            elif fmt == "markdown":
                write_markdown(run, fh, rulebook=rb, changes=changes)
            else:
                write_text(run, fh, changes=changes, color=color)
        except BaseException:
            if output:
                fh.close()
                os.unlink(tmp)
            raise
        if output:
            fh.close()
            os.replace(tmp, target)
        else:
            (out or sys.stdout).write(fh.getvalue())
        regressed = sum(c["regressed"] for c in changes) if changes else 0
        return {"summary": run.summary, "errors": run.errors, "changes": changes, "regressed": regressed}


def read_source(source: str, *, max_bytes: int = DEFAULT_MAX_BYTES, plain: bool = False) -> "Case":
    """A case file, or an IMR letter or a progress note (.txt/.pdf), whose case is read first.
    ``plain``: for the engine alone (see read_case)."""
    if source != "-" and Path(source).suffix.lower() in (".txt", ".pdf"):
        from .letters.letter import read_letter
        from .letters.notes import case_from_text, letter_or_note
        text = read_letter(source, max_bytes=max_bytes)
        return case_from_text(text, source, kind=letter_or_note(text), stem=Path(source).stem)[1]
    return read_case(source, max_bytes=max_bytes, plain=plain)


def case_data(source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """A case file (or letter) read again, as plain data (for --log-cases)."""
    from .evaluation.case import case_to_data
    return case_to_data(read_source(source, max_bytes=max_bytes))


def default_workers() -> int:
    from .workers import default_workers as cpus
    return cpus()


def collect_letters(paths: list[str]) -> tuple[list[Path], list[dict]]:
    """The letters under files and directories, and every other path as an error."""
    from .rules.regress import collect_letters as collect
    return collect(paths)


# ------------------------------------------------------------------ extract

def _extract_one(args: tuple[str, int | None, str]) -> tuple[dict | None, str | None]:
    """(the extraction, None) or (None, its one-line error): run in a worker, never raises."""
    path, max_bytes, kind = args
    try:
        return extract_letter(path, max_bytes=max_bytes, kind=kind), None
    except Exception as exc:  # noqa: BLE001 - one letter never takes down the run
        return None, case_error(path, exc).message


def _extract_died(args: tuple[str, int | None, str], code: int | None) -> tuple[None, str]:
    from .workers import died
    return None, f"{args[0]}: could not be extracted: the worker process {died(code)} on this letter"


def extract_letters(paths: list[str], *, workers: int = 1, max_bytes: int | None = None,
                    kind: str = "auto") -> Iterator[tuple[str, dict | None, str | None]]:
    """(path, extraction, None) or (path, None, error) for each letter or note, in the order
    given, from ``workers`` processes."""
    jobs = [(p, max_bytes, kind) for p in paths]
    if workers > 1 and len(jobs) > 1:
        from .workers import chunks, ordered_map
        size = max(1, min(64, len(jobs) // (workers * 32)))
        results = (r for chunk in ordered_map(_extract_one, chunks(jobs, size), workers, on_death=_extract_died)
                   for r in chunk)
    else:
        results = map(_extract_one, jobs)
    for path, (doc, error) in zip(paths, results):
        yield path, doc, error


# ------------------------------------------------------------------ batch

def run_batch(source: str, *, output: str | None = None, workers: int = 1, resume: bool = False,
              rules_dir: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
              progress: Callable[[int], None] | None = None, edition: str | None = None,
              out: IO[str] | None = None) -> dict:
    """Evaluate many cases (a JSONL file, a directory of case files, or -) into JSON lines;
    returns the summary (see batch.run_batch)."""
    from .evaluation.batch import run_batch as _run
    return _run(source, out, output=output, workers=workers, resume=resume, rules_dir=rules_dir,
                max_bytes=max_bytes, progress=progress, edition=edition)


# ------------------------------------------------------------------ what-if

def parse_sets(sets: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """["requests[0].quantity=20"] -> [("requests[0].quantity", "20")]; MtusError if no '='."""
    from .errors import MtusError
    pairs = []
    for item in sets:
        if "=" not in item:
            raise MtusError(f"--set {item!r}: expected PATH=VALUE")
        path, value = item.split("=", 1)
        pairs.append((path.strip(), value))
    return pairs


def what_if(case: "Case", engine: "Engine", sets: list[tuple[str, str]], unsets: list[str]):
    from .evaluation import whatif
    from .errors import MtusError
    if not (sets or unsets):
        raise MtusError("nothing to do: give --set, --unset, --flip or --grid")
    return whatif.what_if(case, engine, sets, unsets)


def flip(case: "Case", engine: "Engine", sets: list[tuple[str, str]] = (), unsets: list[str] = ()):
    """The smallest verified changes that change each decision (after the given changes)."""
    from .evaluation import whatif
    base = case if not (sets or unsets) else whatif.apply_changes(case, list(sets), list(unsets))
    return whatif.flip(base, engine)


def grid(case: "Case", engine: "Engine", grids: list[str], request_index: int = 0,
         sets: list[tuple[str, str]] = (), unsets: list[str] = (), plot: str | None = None):
    """A decision table over one or two swept fields; drawn as a heat map (PNG) to ``plot``."""
    from .evaluation import whatif
    axes = [whatif.parse_grid(g, case) for g in grids]
    result = whatif.grid(case, engine, axes, request_index, list(sets), list(unsets))
    if plot:
        whatif.plot_grid(result, plot, f"{case.id}: {case.requests[request_index].item}")
    return result


# ------------------------------------------------------------------ the rulebook

def rule_rows(rulebook: "Rulebook") -> list[dict[str, Any]]:
    """Every rule with its section, pages, what it applies to and its criteria (`rules list`)."""
    return [{"id": r.id, "section": r.citation.section, "pages": r.citation.pages,
             "certainty": r.citation.certainty, "recommendation": r.recommendation,
             "applies_to": r.applies_to.model_dump(exclude_defaults=True),
             "criteria": [c.id for c in r.criteria], "file": f"{r.file}:{r.line}"} for r in rulebook.rules]


def find_rule(rulebook: "Rulebook", rule_id: str):
    """The rule, or MtusError naming the nearest ids."""
    from .errors import MtusError
    rule = rulebook.by_id.get(rule_id)
    if rule is None:
        import difflib
        near = difflib.get_close_matches(rule_id, list(rulebook.by_id), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise MtusError(f"no rule {rule_id!r}{hint}")
    return rule


def compiled_rule(engine: "Engine", rule_id: str) -> dict[str, Any]:
    """The durable_rules definitions one rule compiles to."""
    return {k: v for k, v in engine.compiled.definition.items() if k.split("|")[0] == rule_id}


def family_limit_problems(engine: "Engine") -> list[str]:
    """durable_rules limits per rule family, probed with the facts of the rulebook's own tests."""
    from .evaluation.backend import limit_problems
    from .evaluation.case import case_from_data, derive_request
    from .rules.compiler import chained_facts
    from .evaluation.engine import DerivedRequest, request_facts
    from .errors import MtusError
    from .rules.ruletests import load_rule_tests
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
                    facts = request_facts(case, DerivedRequest.of(fields), engine.rulebook)
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


def lint_summary(engine: "Engine") -> dict[str, Any]:
    rb = engine.rulebook
    return {"rules": len(rb.rules), "files": len(rb.files), "facts": len(rb.facts), "drugs": len(rb.drugs.drugs),
            "compiled": len(engine.compiled.definition), "version": rb.version, "digest": rb.digest}


def rule_tests(engine: "Engine"):
    """The rulebook's own tests run: (results, per-rule coverage). MtusError for a broken test file."""
    from .rules.ruletests import rule_coverage, run_rule_tests
    results = run_rule_tests(engine)
    return results, rule_coverage(engine, results)


def coverage(engine: "Engine") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per guideline section: rules, facts read, tests, page certainty; and the totals."""
    from .rules.coverage import coverage_rows
    return coverage_rows(engine)
