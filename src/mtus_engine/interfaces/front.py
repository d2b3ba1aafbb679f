"""The ``mtus`` command's front door: the plain `mtus evaluate CASE... [--format json|text]` runs
here without importing click (about a twentieth of a cold evaluate); anything else, --help
included, goes to the click app in cli.py, which stays the one definition of the command. The
options taken here are checked against its `evaluate` command (tests/test_front_door.py), and
both paths run the same function, evaluate_cases, with the same messages and exit codes."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, NoReturn

# pydantic scans every installed distribution's entry points for plugins on its first model
# (~40 ms of a cold start); the command uses none. A user's own setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
_PLUGINS_OFF = ("__all__", "1", "true")    # pydantic's own test (pydantic/plugin/_loader.py)


def _no_plugin_loader() -> None:
    """Even with plugins off, importing pydantic's plugin loader imports importlib.metadata
    (and email, zipfile, csv...: ~5% of a cold evaluate) only to return no plugins. Until
    pydantic imports it, a stand-in answers "none" while they are off; asked anything else, or
    with plugins turned on, it hands over to the real loader."""
    import types

    name = "pydantic.plugin._loader"
    if name in sys.modules:
        return
    stub = types.ModuleType(name)

    def real() -> types.ModuleType:
        import importlib
        if sys.modules.get(name) is stub:
            del sys.modules[name]
        return importlib.import_module(name)

    def get_plugins():
        if os.environ.get("PYDANTIC_DISABLE_PLUGINS") in _PLUGINS_OFF:
            return ()
        return real().get_plugins()

    def getattr_(attr: str):
        if attr.startswith("__"):    # the import system asking whether it is a package
            raise AttributeError(attr)
        return getattr(real(), attr)

    stub.get_plugins = get_plugins
    stub.__getattr__ = getattr_
    sys.modules[name] = stub


if os.environ["PYDANTIC_DISABLE_PLUGINS"] in _PLUGINS_OFF:
    _no_plugin_loader()

EXIT_BAD_INPUT = 2

# what click.echo does to a message (tests/test_front_door.py checks these against click):
# written and flushed, ANSI codes removed unless the stream is a terminal
_ANSI = r"\033\[[0-?]*[ -/]*[@-~]"
_ansi_re: Any = None


def echo(message: str, *, err: bool = False, nl: bool = True) -> None:
    global _ansi_re
    click = sys.modules.get("click")
    if click is not None:     # the click app's run: its own echo, as every other command
        click.echo(message, err=err, nl=nl)
        return
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    out = message + "\n" if nl else message
    if not out:
        stream.flush()
        return
    if "\033" in out and not stream.isatty():
        if _ansi_re is None:
            import re
            _ansi_re = re.compile(_ANSI)
        out = _ansi_re.sub("", out)
    stream.write(out)
    stream.flush()


def fail(message: str) -> NoReturn:
    echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_BAD_INPUT)


def configure_logging() -> None:
    """The command's logging: our own messages only; nothing (and no case data) is logged
    unless --log-cases asks."""
    import logging
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)


def engine_for(rules: str | None):
    """The engine of the rulebook in rules (default: the bundled one); a broken rulebook is
    its problems on stderr and exit 2."""
    from ..api import load_engine
    from ..errors import MtusError, RulebookError
    try:
        return load_engine(rules)
    except RulebookError as exc:
        for problem in exc.problems:
            echo(f"error: {problem}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except MtusError as exc:  # durable_rules refused a compiled family
        fail(str(exc))


def check_edition(rulebook, edition: str | None) -> None:
    if edition is None:
        return
    from ..errors import MtusError
    try:
        rulebook.edition(edition)
    except MtusError as exc:
        fail(str(exc))


def evaluate_cases(cases: tuple[str, ...] | list[str], fmt: str, explain: bool, color: bool | None, max_bytes: int,
                   log_cases: bool, edition: str | None, rules_dir: str | None,
                   started: Callable[[], None] | None = None) -> None:
    """`mtus evaluate CASE...` (not --batch): one determination per request, in request order;
    a bad case is its error line and the others go on; exit 2 if any failed. ``started`` is
    called once the engine is ready, before the first case."""
    from .. import api
    engine = engine_for(rules_dir)
    check_edition(engine.rulebook, edition)
    if started is not None:
        started()
    results = api.evaluate_sources(list(cases), engine, explain=explain, max_bytes=max_bytes, edition=edition)
    if log_cases:
        _log_cases(results, max_bytes)
    color = sys.stdout.isatty() if color is None else color
    failed = False
    json_docs = []
    for item in results:
        if item.error:
            failed = True
            echo(f"error: {item.error.message}", err=True)
            continue
        if fmt == "json":
            data = item.result.to_json_data()
            if explain:
                data["explain"] = item.explain
            json_docs.append(data)
        else:
            from .render import render
            echo(render(item.result, fmt, color=color, explain=item.explain)
                 if fmt == "text" else render(item.result, fmt), nl=False)
    if fmt == "json" and json_docs:
        from .render import to_json
        echo(to_json(json_docs[0] if len(cases) == 1 else json_docs), nl=False)
    if failed:
        raise SystemExit(EXIT_BAD_INPUT)


def _log_cases(results, max_bytes: int) -> None:
    import json
    import logging

    from ..api import case_data
    log = logging.getLogger("mtus_engine")
    log.setLevel(logging.INFO)
    for item in results:
        if item.result is not None:
            try:
                shown = (json.dumps(case_data(item.source, max_bytes=max_bytes), default=str)
                         if item.source != "-" else item.result.case_id)
            except Exception as exc:  # noqa: BLE001 - logging never fails the run
                shown = f"(not re-read: {type(exc).__name__})"
            log.info("case %s: %s", item.source, shown)


# ------------------------------------------------------------------ the front door

# the only options taken here, and their values: every other option of `evaluate` keeps the
# default below (checked against the click command's defaults)
FORMATS = ("text", "json")
DEFAULTS = {"fmt": "text", "explain": False, "color": None, "max_bytes": 5 * 1024 * 1024,
            "log_cases": False, "edition": None, "rules_dir": None}


def plain_evaluate(args: list[str]) -> dict[str, Any] | None:
    """The arguments of evaluate_cases when args are `evaluate CASE... [--format json|text]`
    and nothing else could change what click would do; else None."""
    if len(args) < 2 or args[0] != "evaluate":
        return None
    # the environment's options (MTUS_RULES) and shell completion are click's
    if os.environ.get("MTUS_RULES") or any(k.endswith("_COMPLETE") for k in os.environ):
        return None
    # click's echo re-encodes a stream whose encoding is not UTF-8: leave that to it
    for stream in (sys.stdout, sys.stderr):
        if stream is None or "utf" not in (getattr(stream, "encoding", "") or "").lower().replace("-", ""):
            return None
    fmt, cases = DEFAULTS["fmt"], []
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--format":
            fmt = next(rest, None)
        elif arg.startswith("--format="):
            fmt = arg.removeprefix("--format=")
        elif arg == "-" or not arg.startswith("-"):
            cases.append(arg)
        else:
            return None
        if fmt not in FORMATS:
            return None
    if not cases:
        return None
    return {**DEFAULTS, "cases": tuple(cases), "fmt": fmt}


def main(args: list[str] | None = None) -> None:
    """The `mtus` command (console script and python -m mtus_engine)."""
    argv = sys.argv[1:] if args is None else list(args)
    plain = plain_evaluate(argv)
    if plain is None:
        from .cli import main as app
        app(args)     # None: click reads sys.argv itself, as it always has
        return
    configure_logging()
    from ..rules.rulebook import arm_hand_over
    arm_hand_over()     # the case model's import and the engine's load: one walk of the rules
    # the start (imports, the rulebook unpickled, the case models built) makes ~100,000
    # long-lived objects and little garbage; the cyclic collector scanned them again and again
    # as they grew, and once more at exit (~7% of a cold evaluate). Off until the engine is
    # ready; then they are frozen (never scanned again) and it runs from the first case on.
    import gc
    gc.disable()

    def started() -> None:
        gc.freeze()
        gc.enable()

    try:
        evaluate_cases(**plain, started=started)
    except (EOFError, KeyboardInterrupt):   # as click's standalone mode answers them
        echo("", err=True)
        echo("Aborted!", err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        import errno
        if exc.errno != errno.EPIPE:
            raise
        # the reader went away (`| head`): quietly, as click does
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - flushed at exit
        raise SystemExit(1) from None
    finally:
        gc.enable()     # a rulebook that failed to load never got to started()
    raise SystemExit(0)
