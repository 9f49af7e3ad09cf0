"""`bottle` (also installed as `bot-bottle`): our usage, version and errors, with doit
underneath deciding what runs.

Everything after the first `--` goes to the agent verbatim; the rest is doit's
command line (tasks and their options). SIGINT, SIGTERM and SIGHUP unwind so that
every bottle is torn down; the exit code is then 128 + the signal's number.
"""

from __future__ import annotations

import sys
from typing import Any

from bottle import __version__

_COMMANDS = ("run", "list", "info", "help")


def usage() -> str:
    from bottle import tasks
    from bottle.config import describe

    lines = [f"bot-bottle {__version__}: run AI coding agents in bottles", "",
             "usage: bottle TASK [OPTIONS] [-- AGENT ARGS...]", "", "tasks:"]
    for name in sorted(n for n in dir(tasks) if n.startswith("task_")):
        doc = " ".join((getattr(tasks, name).__doc__ or "").strip().split("\n\n")[0].split())
        lines.append(f"  {name[5:]:<13} {doc.split('. ')[0].rstrip('.')}")
    lines += ["", "  bottle help TASK    a task's options",
              "  bottle info TASK    whether a task would run, and why",
              "  bottle list         the tasks", "", describe()]
    return "\n".join(lines)


def version() -> str:
    import platform

    import doit

    return (f"bot-bottle {__version__} (doit {'.'.join(map(str, doit.__version__))}, "
            f"Python {platform.python_version()})")


def run_doit(argv: list[str], *, bin_name: str = "bottle") -> int:
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from bottle import engine, tasks

    class Loader(ModuleTaskLoader):  # type: ignore[misc]
        def load_doit_config(self) -> dict[str, Any]:
            return engine.doit_config()

    class Main(DoitMain):  # type: ignore[misc]
        DOIT_CMDS = engine.COMMANDS
        BIN_NAME = bin_name

    main = Main(Loader(tasks), config_filenames=(), extra_config={**engine.PLUGINS})
    return int(main.run(argv) or 0)


def _value_options() -> set[str]:
    """The options of our tasks that take a value (`--workspace`, `-f`, ...)."""
    from bottle import tasks

    names: set[str] = set()
    for name in dir(tasks):
        if name.startswith("task_"):
            for p in getattr(tasks, name)().get("params", []):
                if p.get("type") is not bool:
                    names.add(f"--{p['long']}")
                    if p.get("short"):
                        names.add(f"-{p['short']}")
    return names


def _glue_values(args: list[str]) -> list[str]:
    """`--opt VALUE` as `--opt=VALUE` where doit would misread VALUE: doit takes any
    argument with `=` for one of its variables, and cannot take an empty one."""
    options = _value_options()
    out: list[str] = []
    for a in args:
        prev = out[-1] if out else ""
        if (a == "" or ("=" in a and not a.startswith("-"))) and prev in options:
            out[-1] = f"{prev}={a}" if prev.startswith("--") else f"{prev}{a}"
        else:
            out.append(a)
    return out


class _OptionError(Exception):
    pass


def _parse_options(specs: list[dict[str, Any]], args: list[str]
                   ) -> tuple[dict[str, Any], list[str]]:
    """A task's options as doit reads them (from the same declarations): `--name=V`,
    `--name V`, `-x V`, bool flags and their inverse; the rest are positional."""
    by_flag: dict[str, tuple[dict[str, Any], bool]] = {}
    for spec in specs:
        by_flag[f"--{spec['long']}"] = (spec, True)
        if spec.get("short"):
            by_flag[f"-{spec['short']}"] = (spec, True)
        if spec.get("inverse"):
            by_flag[f"--{spec['inverse']}"] = (spec, False)
    values: dict[str, Any] = {s["name"]: s["default"] for s in specs}
    positional: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        flag, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if flag not in by_flag:
            if arg.startswith("-") and arg != "-":
                raise _OptionError(f"unknown option {flag}")
            positional.append(arg)
            continue
        spec, on = by_flag[flag]
        if spec["type"] is bool:
            if eq:
                raise _OptionError(f"option {flag} takes no value")
            values[spec["name"]] = on
            continue
        if not eq:
            if not rest:
                raise _OptionError(f"option {flag} needs a value")
            inline = rest.pop(0)
        values[spec["name"]] = ([*values[spec["name"]], inline] if spec["type"] is list
                                else inline)
    return values, positional


def launch_now(args: list[str]) -> int:
    """`bottle launch`: straight to the launch (it always runs, so doit has nothing to
    decide), with the options doit would take from the same declarations."""
    from bottle import actions
    from bottle.config import options_for
    from cache.errors import UserError

    try:
        options, positional = _parse_options(options_for("launch"), args)
    except _OptionError as err:
        print(f"bottle: error: {err} (see `bottle help launch`)", file=sys.stderr)
        return 2
    try:
        return actions.run_launch(positional, **options)
    except UserError as err:
        actions.report_error(err)
        return 1


def main(argv: list[str] | None = None) -> int:
    from bottle import actions, signals

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args in (["-h"], ["--help"], ["help"]):
        print(usage())
        return 0
    if args == ["--version"]:
        print(version())
        return 0
    args = actions.set_agent_args(args)
    if args and args[0] != "launch":
        args = _glue_values(args)
    if any(a == "" for a in args):
        print("bottle: error: an empty argument; give agent arguments after --",
              file=sys.stderr)
        return 2
    signals.install()
    try:
        if args[0] == "launch":
            return launch_now(args[1:])
        return run_doit(args)
    except KeyboardInterrupt as err:
        print("bottle: interrupted", file=sys.stderr)
        return signals.exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
