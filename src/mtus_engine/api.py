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
        case = None
        try:
            case = read_source(source, max_bytes=max_bytes)
            result = engine.evaluate(case)
            trace = [engine.fire(case, i) for i in range(len(case.requests))] if explain else None
        except Exception as exc:  # noqa: BLE001 - one case never takes down the run
            out.append(Evaluated(source, error=case_error(source, exc, case, engine)))
            continue
        out.append(Evaluated(source, result=result, explain=trace))
    return out


def case_error(source: str, exc: BaseException, case: Case | None = None, engine: Engine | None = None) -> InputError:
    """Any failure of one case as its one-line error: bad input as reported, a derived value
    out of bounds naming the request and field, anything else (an engine or internal error)
    named by its type, never a traceback."""
    from pydantic import ValidationError

    from .case import derived_error
    from .errors import MtusError
    if isinstance(exc, InputError):
        return exc
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


def extract_letter(path: str, *, max_bytes: int | None = None) -> dict:
    """A letter file -> {"letter": parsed letter, "case": derived case}. Raises InputError."""
    from .case import case_from_data, case_to_data
    from .letter import letter_to_case, parse_letter, read_letter
    parsed = parse_letter(read_letter(path, max_bytes=max_bytes) if max_bytes else read_letter(path), path)
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
    names = [(f"{stem}.letter.{fmt}", doc["letter"], fmt), (f"{stem}.case.yaml", doc["case"], "yaml")]
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
            sys.stdout.write(fh.getvalue())
        regressed = sum(c["regressed"] for c in changes) if changes else 0
        return {"summary": run.summary, "errors": run.errors, "changes": changes, "regressed": regressed}


def read_source(source: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Case:
    """A case file, or an IMR letter (.txt/.pdf) which is extracted into its case first."""
    if source != "-" and Path(source).suffix.lower() in (".txt", ".pdf"):
        from .case import case_from_data
        from .letter import letter_to_case, parse_letter, read_letter
        parsed = parse_letter(read_letter(source, max_bytes=max_bytes), source)
        return case_from_data(letter_to_case(parsed, f"letter-{Path(source).stem}"), source)
    return read_case(source, max_bytes=max_bytes)
