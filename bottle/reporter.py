"""doit reporter: one line per task saying what it did and why, one line per error."""

from __future__ import annotations

import sys
from typing import Any

from doit.reporter import ConsoleReporter

# Task name -> why it was up to date, filled in by the tasks' uptodate checks.
REASONS: dict[str, str] = {}
# Task name -> what it prints on stdout even when up to date (e.g. the artifact path).
RESULTS: dict[str, str] = {}


class BottleReporter(ConsoleReporter):  # type: ignore[misc]
    desc = "bot-bottle: one line per task, errors as one line"

    def execute_task(self, task: Any) -> None:
        pass  # the action says what it did

    def skip_uptodate(self, task: Any) -> None:
        if not task.name.startswith("_"):
            why = REASONS.get(task.name, "up to date")
            print(f"{task.name}: {why}", file=sys.stderr, flush=True)
            if task.name in RESULTS:
                print(RESULTS[task.name], flush=True)

    def skip_ignore(self, task: Any) -> None:
        print(f"{task.name}: ignored", file=sys.stderr, flush=True)

    def add_failure(self, task: Any, fail: Any) -> None:
        if fail.report:
            # Not one of ours: an unexpected exception. Keep doit's full report.
            super().add_failure(task, fail)

    def complete_run(self) -> None:
        if self.failures:
            self.outstream = sys.stderr
        super().complete_run()
