"""doit underneath: its configuration, a dependency database that never loses a run,
the reporter (one line per task), the uptodate check that asks the image pipeline,
and the commands `bottle` offers (run, list, info, help).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from pathlib import Path

import xxhash
from doit.cmd_help import Help
from doit.cmd_info import Info
from doit.cmd_list import List
from doit.cmd_run import Run
from doit.dependency import DatabaseException, SqliteDB
from doit.reporter import ConsoleReporter

from bottle.lookup import Lookup, report_skipped
from bottle.progress import say
from cache import cache_root
from cache.checker import XXHChecker

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def dep_file(root: Path, project: Path) -> str:
    """One sqlite3 dep DB per working directory, kept in the cache root (sqlite locks
    make concurrent runs safe, and checkouts stay clean). Computing it writes nothing."""
    key = xxhash.xxh64_hexdigest(os.fsencode(project))
    return str(root / "doit" / f"{key}.sqlite3")


def doit_config() -> dict[str, Any]:
    try:
        here = Path.cwd()
    except OSError:
        here = Path("/")
    return {
        "backend": "bottle",
        "dep_file": dep_file(cache_root(), here),
        "check_file_uptodate": XXHChecker,
        "reporter": BottleReporter,
        "verbosity": 2,
    }


PLUGINS = {"BACKEND": {"bottle": "bottle.engine:StoreDB"}}


class StoreDB(SqliteDB):  # type: ignore[misc]
    """doit's sqlite3 backend that never fails a run: a missing database is created only
    when there is something to save; a damaged one is set aside; a read-only or full
    cache gives one warning and the run goes on (its state is then not kept)."""

    desc = "sqlite3 in the bot-bottle cache; never fails a run"

    _conn: Any
    _dirty: set[str]
    _cache: dict[str, Any]

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        self._path = Path(name)
        # Empty: what a save on a full disk left (sqlite made the file, then had no room).
        self._memory = _size(self._path) in (None, 0)
        try:
            super().__init__(":memory:" if self._memory else name, codec)
        except Exception as err:  # doit wraps sqlite's errors in its own exception
            say(f"bottle: warning: task state {name} is unreadable ({_first_line(err)}); "
                "starting afresh")
            with contextlib.suppress(OSError):
                self._path.rename(self._path.with_suffix(".damaged"))
            self._memory = True
            super().__init__(":memory:", codec)

    def dump(self) -> None:
        try:
            if self._memory and self._dirty:
                self._copy_to_disk()
            else:
                super().dump()
        except (sqlite3.Error, OSError, DatabaseException) as err:
            say(f"bottle: warning: cannot save task state in {self._path.parent} "
                f"({_cause(err)}); the next run checks its inputs again")
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            if _size(self._path) == 0:  # made by this save, or by one like it: no state
                with contextlib.suppress(OSError):
                    self._path.unlink()

    def remove(self, task_id: str) -> None:
        with contextlib.suppress(sqlite3.Error):  # read-only or full: its state is not kept
            super().remove(task_id)

    def _copy_to_disk(self) -> None:
        rows = [(tid, self.codec.encode(self._cache[tid])) for tid in self._dirty]
        self._conn.close()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._memory = False
        self._conn = self._sqlite3(str(self._path))
        for row in rows:
            self._conn.execute("insert or replace into doit values (?,?)", row)
        self._conn.commit()
        self._conn.close()
        self._dirty = set()


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _cause(err: BaseException) -> str:
    """sqlite's own words: doit wraps them in a message about a corrupted file."""
    text = str(err)
    return _first_line(Exception(text.rsplit("Original error: ", 1)[1])) \
        if "Original error: " in text else _first_line(err)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


class BottleReporter(ConsoleReporter):  # type: ignore[misc]
    """One line per task (the action says what it did; a skip says why it was skipped,
    in the words of the lookup that decided it); errors are the action's one line."""

    desc = "bot-bottle: one line per task, errors as one line"

    def execute_task(self, task: Any) -> None:
        pass

    def skip_uptodate(self, task: Any) -> None:
        report_skipped(task.name, [u for u, _args, _kw in task.uptodate
                                   if isinstance(u, Lookup)])

    def skip_ignore(self, task: Any) -> None:
        print(f"{task.name}: ignored", file=sys.stderr, flush=True)

    def add_failure(self, task: Any, fail: Any) -> None:
        if fail.report:  # not one of ours: an unexpected exception; keep doit's report
            super().add_failure(task, fail)

    def complete_run(self) -> None:
        if self.failures:
            self.outstream = sys.stderr
        super().complete_run()


class BottleInfo(Info):  # type: ignore[misc]
    """`info TASK`: whether the task would run, and why, in one line (exit 0); what would
    stop it (bad config, a missing context) as the error it is (exit 1)."""

    name = "info"
    doc_purpose = "say whether a task would run, and why"

    def _execute(self, pos_args: list[str], hide_status: bool = False) -> int:
        if len(pos_args) != 1:
            self.outstream.write(f"usage: {self.bin_name} info TASK\n")
            return 2
        tasks = {t.name: t for t in self.task_list}
        task = tasks.get(pos_args[0])
        if task is None:
            self.outstream.write(f"{self.bin_name}: no task {pos_args[0]!r}\n")
            return 2
        from bottle import actions

        actions.DRY = True  # look, change nothing
        status = self.dep_manager.get_status(task, tasks, get_log=True)
        lookups = [u for u, _a, _k in task.uptodate if isinstance(u, Lookup)]
        errors = [lk.error for lk in lookups if lk.error]
        if errors:
            print(f"{self.bin_name}: error: {errors[0]}", file=sys.stderr, flush=True)
            return 1
        why = "; ".join(lk.line for lk in lookups)
        if status.status == "up-to-date":
            self.outstream.write(f"{task.name}: up to date: {why or 'nothing changed'}\n")
        elif lookups and status.status == "run":
            self.outstream.write(f"{task.name}: would run: {why}\n")
        elif any(u is False for u, _a, _k in task.uptodate):
            self.outstream.write(f"{task.name}: would run: it runs every time\n")
        else:
            reasons = " ".join(self.get_reasons(status.reasons).split())
            self.outstream.write(f"{task.name}: would run: {reasons}\n")
        return 0


class BottleHelp(Help):  # type: ignore[misc]
    """`help`: our usage (tasks and config keys), or one task's options."""

    name = "help"

    def print_usage(self, cmds: Any) -> None:
        from bottle.cli import usage

        print(usage())

    def _execute(self, pos_args: list[str]) -> bool:
        from doit.cmdparse import CmdOption

        tasks = {t.name: t for t in self.task_list}
        task = tasks.get(pos_args[0])
        if task is None:
            return False
        print(f"{self.bin_name} {task.name}: {task.doc}")
        for opt in (CmdOption(o) for o in task.params):
            print(f"  {opt.help_param():<24}  {opt.help}")
            if opt.inverse:
                print(f"  {'--' + opt.inverse:<24}  the opposite of --{opt.long}")
        return True


COMMANDS = (Run, List, BottleInfo, BottleHelp)
