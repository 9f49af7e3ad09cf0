"""`bottle` as a command: our usage, version and help, doit's maintenance commands out of
the way, and one line (never a traceback) for what a user can get wrong."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import bottle

TASKS = ("base", "build", "cache_gc", "cache_list", "cache_pull", "cache_push", "cache_verify",
         "egress", "forget_state", "launch", "pack", "prepull", "sweep")


def test_no_arguments_prints_usage_and_runs_nothing(tmp_path: Path, _private_cache: Path) -> None:
    r = bottle(cwd=tmp_path, env={"PATH": str(tmp_path)})  # no docker: nothing may run
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("bot-bottle ") and "usage: bottle TASK" in r.stdout
    for task in TASKS:
        assert f"  {task} " in r.stdout
    assert "Config keys" in r.stdout and "  backend " in r.stdout
    assert not _private_cache.exists()


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"]])
def test_help_is_ours(args: list[str], tmp_path: Path) -> None:
    r = bottle(*args, cwd=tmp_path)
    assert r.returncode == 0 and "usage: bottle TASK" in r.stdout and "doit --" not in r.stdout


def test_version_is_ours(tmp_path: Path) -> None:
    r = bottle("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("bot-bottle 0.1.0 (doit ")


@pytest.mark.parametrize("command", ["clean", "forget", "dumpdb", "ignore", "reset-dep",
                                     "strace", "auto"])
def test_doit_maintenance_commands_are_hidden_not_tracebacks(command: str,
                                                            tmp_path: Path) -> None:
    r = bottle(command, cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f'"{command}"' in r.stderr or command in r.stderr


def test_list_shows_our_tasks_and_writes_nothing(tmp_path: Path, _private_cache: Path) -> None:
    r = bottle("list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()] == list(TASKS)
    assert not _private_cache.exists()


def test_importing_the_tasks_touches_no_file(tmp_path: Path) -> None:
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); import bottle.tasks, dodo; "
            "print(sorted(os.listdir(sys.argv[2])))")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "BOTTLE_CACHE_DIR": str(tmp_path / "cache"),
                            "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_task_help_says_each_key_and_default_once(tmp_path: Path) -> None:
    r = bottle("help", "launch", cwd=tmp_path)
    assert r.returncode == 0
    backend = next(line for line in r.stdout.splitlines() if "--backend" in line)
    assert backend.count("backend") == 2  # the option and its config key, once
    assert "[config: backend; default: docker]" in backend and "(config:" not in r.stdout
    r = bottle("help", "prepull", cwd=tmp_path)
    json_line = next(line for line in r.stdout.splitlines() if "--json" in line)
    assert "config" not in json_line  # an output format, not a config key


def test_both_console_scripts_are_declared() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"bottle": "bottle.cli:main", "bot-bottle": "bottle.cli:main"}


def test_a_deleted_working_directory_is_one_line(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    code = (f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
            "sys.argv = ['bottle', 'build']; from bottle.cli import main; sys.exit(main())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "working directory no longer exists" in r.stderr


def test_a_damaged_task_state_database_is_set_aside(tmp_path: Path,
                                                    _private_cache: Path) -> None:
    from bottle.engine import dep_file

    db = Path(dep_file(_private_cache, tmp_path))
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a sqlite database" * 100)
    r = bottle("cache_list", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "is unreadable" in r.stderr and "starting afresh" in r.stderr
    assert db.with_suffix(".damaged").exists()


def test_task_state_survives_in_a_fresh_database(tmp_path: Path, _private_cache: Path) -> None:
    from bottle.engine import dep_file

    assert bottle("cache_list", cwd=tmp_path).returncode == 0
    db = Path(dep_file(_private_cache, tmp_path))
    assert db.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from doit").fetchone()[0] >= 1


@pytest.mark.parametrize(("args", "message"), [
    (["launch", "--backend", "podman"], "backend = 'podman': expected one of"),
    (["prepull", "--jobs", "0"], "jobs = 0: expected a number from 1"),
    (["launch", "x", ""], "an empty argument"),
    (["build", "--nope"], "build: option --nope not recognized (see `bottle help build`)"),
    (["cache_list", "--json", "--nope"], "cache_list: option --nope not recognized"),
    (["pack", "--agent", "claude"], "pack: option --agent not recognized"),
    (["nosuch"], "no task 'nosuch' (see `bottle list`)"),
    (["build", "nosuch"], "no task 'nosuch'"),
    (["run", "nosuch"], "no task 'nosuch'"),
    (["run", "-n", "x", "build"], "run: option -n: 'x' is not a number"),
    (["run", "--nope"], "run: option --nope not recognized"),
    (["-x"], "option -x not recognized: a task's options follow its name"),
    (["build", "--", "x"], "arguments after -- are the agent's; only launch takes them"),
    (["help", "nosuch"], "no task 'nosuch' (see `bottle list`)"),
    (["help", "launch", "extra"], "help takes one task name"),
    (["launch", "x", "y", "--", "z"], "unexpected argument 'x': the agent's arguments go "
                                      "after --"),
    (["launch", "--headless", "hello"], "unexpected argument 'hello'"),
    (["launch", "sweep"], "unexpected argument 'sweep'"),
    (["list", "-x"], "list takes no arguments"),
    (["list", "--bogus"], "list takes no arguments"),
    (["list", "build"], "list takes no arguments"),
    (["info"], "info takes one task name"),
    (["info", "build", "build"], "info takes one task name"),
    (["info", "launch", "--bogus"], "info takes one task name"),
    (["info", "bogus"], "no task 'bogus' (see `bottle list`)"),
])
def test_bad_options_are_one_line(args: list[str], message: str, tmp_path: Path,
                                  _private_cache: Path) -> None:
    r = bottle(*args, cwd=tmp_path, env={"PATH": str(tmp_path)})  # no docker: nothing runs
    assert r.returncode in (1, 2)  # 2: the command line; 1: a value it holds
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("bottle: error: ")
    assert message in r.stderr and r.stdout == ""


@pytest.mark.parametrize("args", [["launch", "--help"], ["launch", "--backend", "docker", "-h"],
                                  ["egress", "--help"], ["prepull", "-h"], ["help", "prepull"],
                                  ["run", "egress", "-h"]])
def test_a_task_help_is_its_whole_description_and_options(args: list[str],
                                                         tmp_path: Path) -> None:
    r = bottle(*args, cwd=tmp_path, env={"PATH": str(tmp_path)})
    assert r.returncode == 0 and r.stderr == ""
    task = next(a for a in args if a not in ("help", "run"))
    assert r.stdout.startswith(f"usage: bottle {task} [OPTIONS]")
    from bottle import tasks

    doc = " ".join(getattr(tasks, f"task_{task}").__doc__.split())
    assert doc in " ".join(r.stdout.split())  # every sentence, none cut at a line end
    assert "options:" in r.stdout


def test_usage_summaries_are_whole_sentences(tmp_path: Path) -> None:
    from bottle import tasks

    r = bottle(cwd=tmp_path)
    assert "forget_state  Remove the agent state (e.g. Claude's login) kept for this project" \
        in r.stdout
    assert "Pull a compose deployment's missing images before it deploys (present ones: " \
           "no network)" in r.stdout
    listed = bottle("list", cwd=tmp_path).stdout
    for name in (n for n in dir(tasks) if n.startswith("task_")):
        line = tasks.summary(getattr(tasks, name).__doc__)
        assert line.count("(") == line.count(")"), line
        assert f"  {line}" in listed  # doit's list shows the same summary


def test_a_closed_pipe_ends_output_quietly(tmp_path: Path) -> None:
    """`bottle list | head -1`: no BrokenPipeError traceback, the exit of a cut pipe
    (SIGPIPE, as `ls` ends)."""
    for args in (["list"], ["help"], ["help", "launch"]):
        p = subprocess.Popen([sys.executable, "-m", "bottle", *args], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # the reader is gone before the first line
        err = p.stderr.read().decode()
        assert p.wait(timeout=60) == -13 and err == "", err


@pytest.mark.parametrize("argv", [
    [], ["-q"], ["--quiet", "--json"], ["-f", "a.yml", "-f", "b.yml"], ["--file=a.yml"],
    ["-fa.yml"], ["--profile", "x", "--image=r/i:1", "--image", "r/j:2"], ["-j", "3"],
    ["--jobs=7"], ["--proj", "d"], ["-qj2"], ["--project-dir=", "-q"],
    ["--jobs", "x"], ["extra"], ["--nope"], ["-q", "build"], ["--file"], ["-q", "--", "x"],
])
def test_prepull_options_parse_as_doit_parses_them(argv: list[str]) -> None:
    """`bottle prepull` runs without doit: its options must mean what doit makes of them
    (the same values, the same arguments left over), and whatever doit would refuse is
    refused too (one line)."""
    from doit.cmdparse import CmdOption, CmdParseError, TaskParse

    from bottle import cli, tasks

    declared = tasks.task_prepull()["params"]
    try:
        params, rest = TaskParse([CmdOption(o) for o in declared]).parse(argv)
        theirs: tuple[dict[str, object], list[str]] | None = (dict(params), rest)
    except CmdParseError:
        theirs = None
    try:
        ours: tuple[dict[str, object], list[str]] | None = cli._parse_options(declared, argv)
    except cli._OptionError:
        ours = None
    assert ours == theirs


def test_prepull_without_doit_says_what_doit_says(tmp_path: Path) -> None:
    """The same lines and exit codes whether doit runs the task (`bottle run prepull`) or
    not (`bottle prepull`): a bad image is refused before anything runs."""
    for args in (["--image", "--help"], ["--image", "Bad/Ref"], ["--jobs", "0"]):
        fast = bottle("prepull", *args, cwd=tmp_path)
        via_doit = bottle("run", "prepull", *args, cwd=tmp_path)
        assert (fast.returncode, fast.stdout, fast.stderr) == (
            via_doit.returncode, via_doit.stdout, via_doit.stderr)
        assert fast.returncode != 0 and fast.stderr.startswith("bottle: error: ")


def test_only_a_task_decided_by_its_lookups_alone_is_settled_before_doit(
        capsys: pytest.CaptureFixture[str]) -> None:
    """What doit would skip as up to date: every uptodate is a Lookup saying so, and
    nothing else (files, targets, options, other tasks) weighs in."""
    from bottle.lookup import Lookup, settled

    def hit() -> tuple[bool, str, str]:
        return True, "cache hit 1234", "/the/artifact"

    def miss() -> tuple[bool, str, str]:
        return False, "first build", ""

    assert settled("pack", {"actions": [], "uptodate": [Lookup(hit)], "verbosity": 2})
    assert capsys.readouterr() == ("/the/artifact\n", "pack: cache hit 1234\n")
    for task in ({"actions": [], "uptodate": [Lookup(miss)]},
                 {"actions": [], "uptodate": [Lookup(hit), Lookup(miss)]},
                 {"actions": [], "uptodate": [Lookup(hit)], "file_dep": ["x"]},
                 {"actions": [], "uptodate": [Lookup(hit)], "task_dep": ["other"]},
                 {"actions": [], "uptodate": [Lookup(hit)], "params": []},
                 {"actions": [], "uptodate": [Lookup(hit), True]},
                 {"actions": [], "uptodate": []}):
        assert not settled("build", task)
    assert capsys.readouterr() == ("", "")


def test_a_lookup_that_fails_leaves_the_task_to_doit(capsys: pytest.CaptureFixture[str]) -> None:
    from bottle.lookup import Lookup, settled
    from cache.errors import UserError

    def broken() -> tuple[bool, str, str]:
        raise UserError("Dockerfile not found: /x/Dockerfile")

    lookup = Lookup(broken)
    assert not settled("build", {"actions": [], "uptodate": [lookup]})
    assert lookup.line == "Dockerfile not found: /x/Dockerfile"
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("task", ["build", "launch", "cache_list", "prepull"])
def test_a_relative_cache_dir_is_one_line(task: str, tmp_path: Path) -> None:
    r = bottle(task, cwd=tmp_path, env={"BOTTLE_CACHE_DIR": "relative/cache"})
    assert r.returncode == 1
    assert r.stderr == ("bottle: error: cache: relative/cache is not an absolute path "
                        "(check BOTTLE_CACHE_DIR)\n")
    assert not (tmp_path / "relative").exists()


@pytest.mark.parametrize("collecting", [True, False])
def test_main_leaves_the_callers_garbage_collector_as_it_was(collecting: bool) -> None:
    import gc

    from bottle.cli import main

    was = gc.isenabled()
    try:
        (gc.enable if collecting else gc.disable)()
        assert main(["--version"]) == 0
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("closed", ["1", "2", "0"])
def test_started_with_a_standard_stream_closed(closed: str, tmp_path: Path) -> None:
    """Nothing we open later takes the closed number (the agent's output once went into
    the engine's socket that way); no traceback."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(["sh", "-c", f'"$0" -m bottle --version {closed}>&-', sys.executable],
                       capture_output=True, text=True, cwd=root,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("dockerfile", "said"), [
    (".", "Dockerfile is a directory, not a file: {d}"),
    ("nope", "Dockerfile not found: {d}/nope"),
])
def test_a_dockerfile_that_is_no_file_says_which_way(dockerfile: str, said: str,
                                                     tmp_path: Path) -> None:
    (tmp_path / "bottle.toml").write_text(f'context = "."\ndockerfile = "{dockerfile}"\n')
    r = bottle("build", cwd=tmp_path, env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"bottle: error: {said.format(d=tmp_path)}"]


def test_the_console_script_ends_without_teardown_yet_loses_nothing(tmp_path: Path) -> None:
    """`main()` as the console script ends the process itself (no interpreter teardown):
    exit handlers still run, everything printed arrives, the exit code is the task's."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
            "from bottle.cli import main\n"
            "sys.exit(main())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BOTTLE_CACHE_DIR": str(tmp_path / "c")}
    ok = subprocess.run([sys.executable, "-c", code, "help"], capture_output=True,
                        text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0 and ok.stderr == "handler ran\n"
    assert ok.stdout == bottle("help", cwd=tmp_path).stdout and len(ok.stdout) > 1000
    bad = subprocess.run([sys.executable, "-c", code, "launch", "--nope"], capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.endswith("handler ran\n")
    assert bad.stderr.startswith("bottle: error: ")


def test_under_a_profiler_or_tracer_the_console_script_returns(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """cProfile, coverage and debuggers report after the script's main returns: with one
    of them attached, main returns its code instead of ending the process."""
    from bottle import cli

    monkeypatch.setattr(sys, "argv", ["bottle", "--version"])
    previous = sys.gettrace()
    sys.settrace(lambda *_: None)
    try:
        code = cli.main()
    finally:
        sys.settrace(previous)
    assert code == 0 and "bot-bottle" in capsys.readouterr().out
