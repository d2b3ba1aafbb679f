"""The command's front door (interfaces/front.py): a plain `mtus evaluate CASE... [--format json|text]`
runs without click, and must be the click command's run byte for byte: the options it takes and
the defaults it assumes are the click command's, and both paths print the same and exit alike."""

import os
import subprocess
import sys

import click
import pytest

from mtus_engine.interfaces import cli, front

EXAMPLE = "cases/example-chronic-cyclobenzaprine.yaml"
# the options of `evaluate` the front door leaves at their defaults, and the defaults that make
# click's run the plain one (no batch, no progress)
CLICK_ONLY = {"batch_input": None, "batch_output": None, "workers": 1, "resume": False, "quiet": False}


def test_the_front_door_takes_only_what_the_click_command_defines(monkeypatch):
    monkeypatch.delenv("MTUS_RULES", raising=False)
    params = {p.name: p for p in cli.evaluate.params}
    fmt = params["fmt"]
    assert fmt.opts == ["--format"] and set(front.FORMATS) <= set(fmt.type.choices)
    # what click hands the command for `evaluate CASE... [--format F]`: every other option is a
    # default the front door assumes or one that keeps click's run plain; an option added to
    # `evaluate` fails here until the front door knows it
    for args, fmt_given in ((["a.yaml", "b.yaml"], None), (["a.yaml", "--format", "json"], "json")):
        with cli.evaluate.make_context("evaluate", list(args)) as ctx:   # click consumes the list
            expected = {**front.DEFAULTS, **CLICK_ONLY, **front.plain_evaluate(["evaluate", *args])}
            assert ctx.params == expected
            assert ctx.params["fmt"] == (fmt_given or front.DEFAULTS["fmt"])
    assert params["rules_dir"].envvar == "MTUS_RULES"     # set, the front door hands over
    assert front._ANSI == click._compat._ansi_re.pattern  # what click.echo strips off a pipe


@pytest.mark.parametrize("args, plain", [
    (["evaluate", "a.yaml"], True),
    (["evaluate", "a.yaml", "b.json", "--format", "json"], True),
    (["evaluate", "--format=text", "-"], True),
    (["evaluate"], False),                          # click's "no CASE given"
    (["evaluate", "a.yaml", "--format", "markdown"], False),
    (["evaluate", "a.yaml", "--format"], False),
    (["evaluate", "a.yaml", "--explain"], False),
    (["evaluate", "--help"], False),
    (["evaluate", "a.yaml", "--", "b"], False),
    (["--version"], False),
    (["batch", "a.jsonl"], False),
])
def test_what_the_front_door_takes(args, plain, monkeypatch):
    monkeypatch.delenv("MTUS_RULES", raising=False)
    assert (front.plain_evaluate(args) is not None) == plain
    if plain:
        monkeypatch.setenv("MTUS_RULES", "rules")
        assert front.plain_evaluate(args) is None


def _run(args, stdin=None, **env):
    run_env = {**os.environ, **env}
    run_env.pop("MTUS_RULES", None)
    return subprocess.run([sys.executable, "-m", "mtus_engine", *args], input=stdin, capture_output=True,
                          env=run_env, timeout=120)


@pytest.fixture
def bad_cases(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("id: x\nrequests: [\n")
    bad_field = tmp_path / "field.yaml"
    bad_field.write_text("id: x\nfindings:\n  acute_exacerbaton: true\nrequests:\n  - item: Norco 10/325 #90\n")
    return {"missing": str(tmp_path / "missing.yaml"), "yaml": str(bad_yaml), "field": str(bad_field)}


@pytest.mark.parametrize("which", [
    [EXAMPLE], [EXAMPLE, "--format", "json"], [EXAMPLE, "--format", "text"],
    [EXAMPLE, EXAMPLE, "--format", "json"],
    ["missing"], ["yaml", "--format", "json"], ["field"], [EXAMPLE, "field", "missing", "--format", "json"],
    ["-", "--format", "json"],
])
def test_both_paths_print_the_same_bytes_and_exit_alike(which, bad_cases, tmp_path, root):
    args = ["evaluate", *(bad_cases.get(a, a) for a in which)]
    stdin = (root / EXAMPLE).read_bytes() if "-" in which else None
    cache = str(tmp_path / "cache")
    fast = _run(args, stdin, MTUS_CACHE_DIR=cache)
    # the same run through click: an option at its default hands over to it
    slow = _run([*args, "--max-bytes", str(front.DEFAULTS["max_bytes"])], stdin, MTUS_CACHE_DIR=cache)
    assert front.plain_evaluate(args) is not None and front.plain_evaluate([*args, "--max-bytes", "1"]) is None
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    bad = [a for a in which if a in bad_cases]
    assert fast.returncode == (2 if bad else 0)
    for name in bad:
        assert f"error: {bad_cases[name]}".encode() in fast.stderr
    if not bad:
        assert fast.stdout and not fast.stderr


def test_the_plain_evaluate_never_imports_click(root):
    # and its start-up objects are frozen out of the cyclic collector, which runs again for the cases
    code = ("import atexit, gc, sys\n"
            "import mtus_engine.evaluation.plain_case as R\n"     # the plain evaluate's case reader
            "seen = []\n"
            "real = R.plain_case\n"
            "R.plain_case = lambda *a, **k: seen.append((gc.isenabled(), gc.get_freeze_count() > 0)) or real(*a, **k)\n"
            "atexit.register(lambda: sys.__stderr__.write(('click' if 'click' in sys.modules else 'no click') + str(seen)))\n"
            "from mtus_engine.interfaces.front import main\n"
            "main(['evaluate', sys.argv[1], '--format', 'json'])\n")
    res = subprocess.run([sys.executable, "-c", code, str(root / EXAMPLE)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("{") and res.stderr == "no click[(True, True)]"


@pytest.mark.parametrize("encoding, plain", [("utf-8", True), ("UTF8", True), ("latin-1", False), ("ascii", False)])
def test_a_stream_not_in_utf_8_goes_to_click(encoding, plain, monkeypatch):
    # click's echo re-encodes such a stream (and replaces an ASCII one): the front door must not
    # print what click would print otherwise
    import io
    monkeypatch.delenv("MTUS_RULES", raising=False)
    for name in ("stdout", "stderr"):
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
        monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
        monkeypatch.setattr(sys, name, io.TextIOWrapper(io.BytesIO(), encoding=encoding))
        assert (front.plain_evaluate(["evaluate", "a.yaml"]) is not None) == plain, name


def test_the_collector_is_on_again_after_a_failed_start(tmp_path, root):
    # a rulebook that fails to load never reaches started(): the collector must not stay off.
    # (MTUS_RULES would hand over to click: the default rules directory is pointed elsewhere)
    (tmp_path / "rulebook.yaml").write_text("not: a rulebook\n")
    code = ("import gc, pathlib, sys\n"
            "import mtus_engine.rules.rulebook as rb\n"
            "rb.default_rules_dir = lambda: pathlib.Path(sys.argv[2])\n"
            "from mtus_engine.interfaces.front import main\n"
            "try:\n    main(['evaluate', sys.argv[1]])\n"
            "except SystemExit as exc:\n    sys.__stderr__.write(f'{exc.code} {gc.isenabled()}')\n")
    env = {**os.environ, "MTUS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MTUS_RULES", None)
    res = subprocess.run([sys.executable, "-c", code, str(root / EXAMPLE), str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert "error:" in res.stderr and "rulebook.yaml" in res.stderr and res.stderr.endswith("2 True"), res.stderr
