"""The uptodate check of tasks decided by the image pipeline, without doit.

`Lookup` is what doit calls; `settled` answers the same question for `bottle build` and
`bottle pack` before doit is loaded (loading it is most of a no-op's time), and
`report_skipped` is the one line both print for an up-to-date task.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Lookup:
    """A doit uptodate check that asks the image pipeline's lookup (the one place a cache
    hit is decided). Its text is the lookup's line, so `bottle info` tells why."""

    def __init__(self, decide: Callable[[], tuple[bool, str, str]]) -> None:
        self._decide = decide
        self.line = "not checked yet"
        self.error: str | None = None  # the user error that stopped the lookup, if one did
        self.stdout = ""  # printed on stdout when up to date (e.g. the artifact's path)

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        from cache.errors import UserError

        self.error = None
        try:
            hit, self.line, self.stdout = self._decide()
        except UserError as err:
            self.line = self.error = str(err)  # the action says it again, as an error
            return False
        return hit

    def __repr__(self) -> str:
        return self.line


def report_skipped(name: str, lookups: Sequence[Lookup]) -> None:
    """What an up-to-date task prints: its lookup's line, and what it has for stdout."""
    if name.startswith("_"):
        return
    print(f"{name}: {lookups[0].line if lookups else 'up to date'}", file=sys.stderr,
          flush=True)
    for lookup in lookups:
        if lookup.stdout:
            print(lookup.stdout, flush=True)


# Keys of a task declaration that decide nothing (doit only weighs `uptodate` here).
_INERT = frozenset({"actions", "uptodate", "verbosity", "doc"})


def settled(name: str, task: Mapping[str, Any]) -> bool:
    """Whether doit would skip this task as up to date, asked without doit: only for a task
    whose sole dependencies are `Lookup`s (no files, targets, options or other tasks), when
    every one says up to date. Then its line is printed as doit's reporter prints it;
    otherwise nothing is printed and doit decides as always."""
    checks = task.get("uptodate") or []
    if set(task) - _INERT or not checks or not all(isinstance(u, Lookup) for u in checks):
        return False
    if not all(u(None, {}) for u in checks):
        return False
    report_skipped(name, checks)
    return True
