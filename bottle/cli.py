"""`bottle`: doit over bot-bottle's own tasks, from any directory."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP unwind like Ctrl-C, so every `finally` tears its bottle down.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from bottle import tasks

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        code = DoitMain(ModuleTaskLoader(tasks), extra_config={"GLOBAL": {}}).run(
            sys.argv[1:] if argv is None else argv
        )
    except KeyboardInterrupt:
        print("bottle: interrupted; bottles torn down", file=sys.stderr)
        return 130
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
