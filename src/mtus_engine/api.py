"""The Python API behind every CLI command, so a service can do what the CLI does."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .case import Case, load_case, load_case_text
from .determination import CaseDetermination
from .engine import Engine
from .errors import InputError
from .yamlio import DEFAULT_MAX_BYTES


@dataclass
class Evaluated:
    source: str
    result: CaseDetermination | None = None
    error: InputError | None = None
    explain: list[list[str]] | None = None


def read_case(source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Case:
    """A case from a path, or ``-`` for standard input."""
    if source == "-":
        raw = sys.stdin.buffer.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise InputError("<stdin>", f"input is over the {max_bytes}-byte limit")
        return load_case_text(raw, "<stdin>")
    return load_case(Path(source), max_bytes=max_bytes)


def evaluate_sources(sources: list[str], engine: Engine, *, explain: bool = False,
                     max_bytes: int = DEFAULT_MAX_BYTES, edition: str | None = None) -> list[Evaluated]:
    """Evaluate each case file; a bad file is reported and the rest go on. With an edition,
    every case is judged under it rather than the edition in effect on its request date."""
    engine = engine.under_edition(edition)
    out = []
    for source in sources:
        try:
            case = read_source(source, max_bytes=max_bytes)
        except InputError as exc:
            out.append(Evaluated(source, error=exc))
            continue
        result = engine.evaluate(case)
        trace = [engine.fire(case, i) for i in range(len(case.requests))] if explain else None
        out.append(Evaluated(source, result=result, explain=trace))
    return out


def extract_letter(path: str, *, max_bytes: int | None = None) -> dict:
    """A letter file -> {"letter": parsed letter, "case": derived case}. Raises InputError."""
    from .case import case_from_data, case_to_data
    from .letter import letter_to_case, parse_letter, read_letter
    parsed = parse_letter(read_letter(path, max_bytes=max_bytes) if max_bytes else read_letter(path), path)
    case = case_from_data(letter_to_case(parsed, f"letter-{Path(path).stem}"), path)
    return {"source": path, "letter": parsed.model_dump(mode="json"), "case": case_to_data(case)}


def write_extraction(doc: dict, path: str, out_dir: Path, fmt: str) -> list[Path]:
    """Write <stem>.letter.<fmt> and <stem>.case.yaml inside out_dir, never outside it."""
    import json as _json
    import os

    import yaml
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(path).name.rsplit(".", 1)[0]
    written = []
    for name, data, kind in ((f"{stem}.letter.{fmt}", doc["letter"], fmt), (f"{stem}.case.yaml", doc["case"], "yaml")):
        target = (out_dir / name).resolve()
        if target.parent != out_dir.resolve():
            raise InputError(path, "output name escapes the output directory")
        text = (_json.dumps(data, indent=2, ensure_ascii=False) + "\n" if kind == "json"
                else yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)  # nothing half-written
        written.append(target)
    return written


def regression_report(paths: list[str], *, fmt: str = "json", output: str | None = None,
                      baseline: dict | None = None, workers: int = 1, rules_dir: str | None = None,
                      engine: Engine | None = None, progress: bool = False, color: bool = False,
                      max_bytes: int | None = None) -> dict:
    """Run a regression and write its report; returns the summary and the regression count."""
    import io
    import os

    from .regress import compare_baseline, run_regression
    from .report import write_html, write_json, write_junit, write_text
    engine = engine or Engine()
    rb = {"version": engine.rulebook.version, "digest": engine.rulebook.digest}
    bar = None
    if progress and sys.stderr.isatty():
        from rich.progress import Progress
        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("letters", total=None)
        tick = lambda n, total: bar.update(task, completed=n, total=total)  # noqa: E731
    else:
        tick = None
    try:
        run = run_regression(paths, workers=workers, rules_dir=rules_dir, progress=tick, max_bytes=max_bytes)
    finally:
        if bar:
            bar.stop()
    with run:
        changes = compare_baseline(run, baseline) if baseline is not None else None
        if output:
            target = Path(output)
            tmp = target.with_name(target.name + ".tmp")
            fh = tmp.open("w", encoding="utf-8")
        else:
            fh = io.StringIO()
        try:
            if fmt == "json":
                write_json(run, fh, rulebook=rb, changes=changes)
            elif fmt == "junit":
                write_junit(run, fh)
            elif fmt == "html":
                write_html(run, fh, rulebook=rb, changes=changes)
            else:
                write_text(run, fh, changes=changes, color=color)
        finally:
            if output:
                fh.close()
        if output:
            os.replace(tmp, target)
        else:
            sys.stdout.write(fh.getvalue())
        regressed = sum(c["regressed"] for c in changes) if changes else 0
        return {"summary": run.summary, "errors": run.errors, "changes": changes, "regressed": regressed}


def read_source(source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Case:
    """A case file, or an IMR letter (.txt/.pdf) which is extracted into its case first."""
    if source != "-" and Path(source).suffix.lower() in (".txt", ".pdf"):
        from .case import case_from_data
        from .letter import letter_to_case, parse_letter, read_letter
        parsed = parse_letter(read_letter(source), source)
        return case_from_data(letter_to_case(parsed, f"letter-{Path(source).stem}"), source)
    return read_case(source, max_bytes=max_bytes)
