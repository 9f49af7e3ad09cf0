"""`bottle` (also installed as `bot-bottle`): our usage, version and errors, with doit
underneath deciding what runs.

Everything after the first `--` goes to the agent verbatim; the rest is doit's
command line (tasks and their options). SIGINT, SIGTERM and SIGHUP unwind so that
every bottle is torn down; the exit code is then 128 + the signal's number.
"""

from __future__ import annotations

import sys

from bottle import __version__

# Not `typing.TYPE_CHECKING`: importing typing is a tenth of a replayed run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_COMMANDS = ("run", "list", "info", "help")


def usage() -> str:
    from bottle import tasks
    from bottle.config import describe

    lines = [f"bot-bottle {__version__}: run AI coding agents in bottles", "",
             "usage: bottle TASK [OPTIONS] [-- AGENT ARGS...]", "", "tasks:"]
    for name in task_names():
        lines.append(f"  {name:<13} {tasks.summary(getattr(tasks, f'task_{name}').__doc__)}")
    lines += ["", "  bottle help TASK    a task's options",
              "  bottle info TASK    whether a task would run, and why",
              "  bottle list         the tasks", "", describe()]
    return "\n".join(lines)


def task_names() -> list[str]:
    from bottle import tasks

    return sorted(n[5:] for n in dir(tasks) if n.startswith("task_"))


def task_help(name: str) -> str:
    """`bottle help TASK`: what the task does (its whole docstring) and its options."""
    import textwrap

    from doit.cmdparse import CmdOption

    from bottle import tasks

    creator = getattr(tasks, f"task_{name}")
    paragraphs = [" ".join(p.split()) for p in (creator.__doc__ or "").strip().split("\n\n")]
    lines = [f"usage: bottle {name} [OPTIONS]" + (" [-- AGENT ARGS...]" if name == "launch"
                                                  else ""), ""]
    for paragraph in paragraphs:
        lines += [*textwrap.wrap(paragraph, 88), ""]
    params = creator().get("params", [])
    if params:
        lines.append("options:")
    for opt in (CmdOption(o) for o in params):
        lines.append(f"  {opt.help_param():<24}  {opt.help}")
        if opt.inverse:
            lines.append(f"  {'--' + opt.inverse:<24}  the opposite of --{opt.long}")
    return "\n".join(lines).rstrip()


_COMMAND_HELP = {
    "run": "bottle run TASK...: run tasks in order (`bottle TASK` alone does the same)",
    "list": "bottle list: the tasks, one line each",
    "info": "bottle info TASK: whether a task would run, and why (nothing is changed)",
    "help": "bottle help [TASK]: the usage, or one task's options",
}


def help_command(args: list[str]) -> int:
    """`bottle help [NAME]`: our usage, a task's help, or a command's one line; a name
    that is neither is an error (exit 2)."""
    if not args:
        print(usage())
    elif len(args) > 1:
        print("bottle: error: help takes one task name (see `bottle list`)", file=sys.stderr)
        return 2
    elif args[0] in _COMMAND_HELP:
        print(_COMMAND_HELP[args[0]])
    elif args[0] in task_names():
        print(task_help(args[0]))
    else:
        return _no_task(args[0])
    return 0


def _no_task(name: str) -> int:
    print(f"bottle: error: no task {name!r} (see `bottle list`)", file=sys.stderr)
    return 2


def version() -> str:
    import platform

    import doit

    return (f"bot-bottle {__version__} (doit {'.'.join(map(str, doit.__version__))}, "
            f"Python {platform.python_version()})")


def run_doit(argv: list[str], *, bin_name: str = "bottle") -> int:
    import gc

    gc.enable()  # doit runs builds and packs: long enough for garbage to matter
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
    """A task's options as doit's TaskParse reads them (getopt over the same
    declarations: short and long forms, abbreviations, bool flags and their inverse,
    lists appended, values converted by type); the rest are positional. What doit would
    refuse is one `_OptionError` line."""
    import getopt

    short = "".join(o["short"] + ("" if o.get("type") is bool else ":")
                    for o in specs if o.get("short"))
    longs = [o["long"] + ("" if o.get("type") is bool else "=") for o in specs]
    longs += [o["inverse"] for o in specs if o.get("inverse")]
    try:
        found, rest = getopt.getopt(args, short, longs)
    except getopt.GetoptError as err:
        raise _OptionError(str(err)) from None
    values: dict[str, Any] = {o["name"]: list(o["default"]) if o.get("type") is list
                              else o["default"] for o in specs}
    for flag, value in found:
        opt = next(o for o in specs if flag in (f"-{o.get('short')}", f"--{o['long']}",
                                                 f"--{o.get('inverse')}"))
        kind = opt.get("type", str)
        if kind is bool:
            values[opt["name"]] = flag != f"--{opt.get('inverse')}"
        elif kind is list:
            values[opt["name"]].append(value)
        else:
            try:
                values[opt["name"]] = kind(value)
            except ValueError:
                raise _OptionError(f"option {flag}: {value!r} is not a "
                                   f"{'number' if kind is int else kind.__name__}") from None
    return values, rest


def check_list_info(args: list[str]) -> int | None:
    """`bottle list` (no arguments) and `bottle info TASK` (one task name), checked before
    doit reads them: its help (exit 0) or one line (exit 2); None when it is fine."""
    name, rest = args[0], args[1:]
    if _wants_help(rest):
        print(_COMMAND_HELP[name])
        return 0
    if name == "list" and rest:
        print("bottle: error: list takes no arguments", file=sys.stderr)
        return 2
    if name == "info" and (len(rest) != 1 or rest[0].startswith("-")):
        print("bottle: error: info takes one task name (see `bottle list`)", file=sys.stderr)
        return 2
    if name == "info" and rest[0] not in task_names():
        return _no_task(rest[0])
    return None


def _wants_help(args: list[str]) -> bool:
    return "-h" in args or "--help" in args


def check_command_line(args: list[str]) -> int | None:
    """The command line doit would run (`[run [RUN OPTIONS]] TASK [OPTIONS] ...`), read
    as doit reads it before doit loads the tasks: an unknown task or a bad option is one
    line (exit 2), `TASK --help` the task's help (exit 0); None when it is fine."""
    from bottle import tasks

    rest = list(args)
    if rest and rest[0] == "run":
        from doit.cmd_run import Run

        run_options = [o for o in (*Run.base_options, *Run.cmd_options) if o.get("long")]
        try:
            _params, rest = _parse_options(run_options, rest[1:])
        except _OptionError as err:
            print(f"bottle: error: run: {err}", file=sys.stderr)
            return 2
    names = task_names()
    while rest:
        name, rest = rest[0], rest[1:]
        if name.startswith("-"):
            print(f"bottle: error: option {name} not recognized: a task's options follow "
                  f"its name (`bottle TASK --option`)", file=sys.stderr)
            return 2
        if name not in names:
            return _no_task(name)
        declared = getattr(tasks, f"task_{name}")()
        try:
            _params, rest = _parse_options(declared.get("params", []), rest)
        except _OptionError as err:
            if _wants_help(rest):
                print(task_help(name))
                return 0
            print(f"bottle: error: {name}: {err} (see `bottle help {name}`)", file=sys.stderr)
            return 2
        if declared.get("pos_arg"):
            break
    return None


# Tasks a warm no-op runs often: asked before doit is loaded (see bottle.lookup.settled).
_SETTLED = ("build", "pack")


def _settled(args: list[str]) -> bool:
    """`bottle build` or `bottle pack` alone, already up to date: its line is printed and
    doit need not load. Anything else (options, other tasks, a task that would run, an
    error) is doit's, which asks the same lookups again (the digest is kept)."""
    if len(args) != 1 or args[0] not in _SETTLED:
        return False
    from bottle import tasks
    from bottle.lookup import settled

    try:
        return settled(args[0], getattr(tasks, f"task_{args[0]}")())
    except Exception:  # doit reports it as it always has
        return False


# Tasks that always run: run straight from their options (parsed from the same
# declarations doit parses), without loading doit.
_DIRECT = ("launch", "prepull")


def run_direct(args: list[str]) -> int | None:
    """`bottle launch|prepull [OPTIONS]`: its exit code (the agent's, for launch; 1 for a
    one-line error, 2 for a bad option); None for any other task."""
    if not args or args[0] not in _DIRECT:
        return None
    from bottle import actions, tasks
    from cache.errors import UserError, quoted

    task = getattr(tasks, f"task_{args[0]}")()
    try:
        options, positional = _parse_options(task.get("params", []), args[1:])
        if positional and args[0] == "launch":
            # The agent's arguments go after `--` only, so a stray word is never taken for
            # one (nor dropped beside them, nor read as another task).
            raise _OptionError(f"unexpected argument {quoted(positional[0])}: the agent's "
                               f"arguments go after -- (bottle launch -- {positional[0]})")
        if positional and not task.get("pos_arg"):
            raise _OptionError(f"unexpected argument {quoted(positional[0])}")
    except _OptionError as err:
        if _wants_help(args[1:]):
            print(task_help(args[0]))
            return 0
        print(f"bottle: error: {err} (see `bottle help {args[0]}`)", file=sys.stderr)
        return 2
    try:
        if args[0] == "launch":
            return actions.run_launch(positional, **options)
        actions.prepull.__wrapped__(**options)  # type: ignore[attr-defined]
    except UserError as err:
        actions.report_error(err)
        return 1
    return 0


def _replayed(args: list[str]) -> int | None:
    """`bottle prepull ...` with every input as last time: its resolution taken from the
    memo before the modules that resolve are loaded (bottle.pulling)."""
    if not args or args[0] != "prepull" or "--" in args:
        return None
    from bottle import pulling

    pulling.CALL = list(args)
    return pulling.replay(args)


def _run(argv: list[str] | None) -> int:
    from bottle import signals

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args in (["-h"], ["--help"]):
        args = ["help"]
    if args[0] in ("help", "list", "info"):
        # Commands that only print: a reader that went away ends them as it ends `ls`.
        # (Not for tasks: a launch must tear its bottle down, so it sees the error.)
        import signal

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if args[0] == "help":
        return help_command(args[1:])
    if args == ["--version"]:
        print(version())
        return 0
    signals.install()  # an interrupt from here on unwinds to `main` as from the imports
    if (code := _replayed(args)) is not None:
        return code
    from bottle import actions

    args = actions.set_agent_args(args)
    if actions.AGENT_ARGS is not None and "launch" not in args:
        print("bottle: error: arguments after -- are the agent's; only launch takes them",
              file=sys.stderr)
        return 2
    if args and args[0] != "launch":
        args = _glue_values(args)
    if any(a == "" for a in args):
        print("bottle: error: an empty argument; give agent arguments after --",
              file=sys.stderr)
        return 2
    if _settled(args):
        return 0
    code = run_direct(args)
    if code is None:
        code = (check_list_info(args) if args[0] in ("list", "info")
                else check_command_line(args))
    return run_doit(args) if code is None else code


def _standard_fds_open() -> None:
    """Started with stdin, stdout or stderr closed, the next file or socket we open would
    take its number (and the agent's output would go into the engine's socket): each
    closed one is /dev/null instead."""
    import os

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # a lower one was closed too and took it: keep both open
                os.dup2(null, fd)
    # Python made no stream for a closed one (and print() would fall back to stdout).
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    """The console script's entry: its exit code. A reader that went away (`bottle list |
    head -1`) ends the output quietly, not in a traceback."""
    import gc

    from bottle import signals

    _standard_fds_open()

    # A run allocates in bursts and leaves little garbage in cycles: the cyclic collector
    # only costs it time (~15 ms of a warm no-op). It is back on where doit takes over,
    # and for whoever called us in their own process.
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            try:
                code = _run(argv)
            finally:  # the memo's key is this call's alone
                (gc.enable if collecting else gc.disable)()
                if "bottle.pulling" in sys.modules:
                    from bottle import pulling

                    pulling.CALL = None
        except (KeyboardInterrupt, RuntimeError) as err:  # a signal, or Ctrl-C in the imports
            interrupt = signals.interrupt_in(err)
            if interrupt is None:
                raise
            print("bottle: interrupted", file=sys.stderr)
            code = signals.exit_code(interrupt)
        # Done: a signal from here on (a second Ctrl-C after the teardown) changes nothing,
        # so it must not break the last flush or the interpreter's shutdown.
        if argv is None:  # the console script, not a caller in its own process
            signals.ignore()
        if sys.stdout is not None:  # None: started with stdout closed
            sys.stdout.flush()
    except BrokenPipeError:
        import os

        # Python flushes stdout again at exit; point it at /dev/null so that is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, as a shell reports a command a pipe cut short
    if argv is None and sys.getprofile() is None and sys.gettrace() is None:
        _exit_now(code)  # (not under a profiler, debugger or coverage: they report after)
    return code


def _exit_now(code: int) -> None:
    """End the console script without the interpreter's teardown, which frees every
    object and module one by one (~10 ms of a 40 ms replayed prepull, more after a large
    walk): exit handlers run, both streams are flushed, then the process ends. Every file
    we write is closed by then, every thread joined."""
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a reader gone, or a stream closed
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
