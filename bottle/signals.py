"""Signals: SIGINT, SIGTERM and SIGHUP unwind like Ctrl-C (so every `finally` tears its
bottle down), and teardown itself can be shielded from a second one.

Exit codes follow the shell's convention: 128 + the signal number (130 for SIGINT,
143 for SIGTERM, 129 for SIGHUP).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

_CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal asked us to stop; `exit_code` is 128 + its number."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def interrupt_in(err: BaseException) -> KeyboardInterrupt | None:
    """The interrupt `err` is or wraps: Python 3.11 turns one raised while a class is
    being made (an import's `__set_name__`) into a RuntimeError caused by it."""
    seen: BaseException | None = err
    while seen is not None and not isinstance(seen, KeyboardInterrupt):
        seen = seen.__cause__
    return seen


def exit_code(err: KeyboardInterrupt) -> int:
    return err.exit_code if isinstance(err, Interrupted) else 128 + signal.SIGINT


class _State:
    depth = 0
    steps: list[shielded] = []  # the shields we are in, innermost last
    pending: int | None = None
    stopping = False  # an interrupt is already unwinding us


_GIVE_UP = 3  # signals during a short step (not a teardown) before we stop waiting for it


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _State.depth or _State.stopping:
        # A shielded step under way (or a teardown about to be: the first signal is
        # unwinding towards it): record it; the step finishes, then we stop.
        first = _State.pending is None and not _State.stopping
        _State.pending = _State.pending or signum
        step = _State.steps[-1] if _State.steps else None
        if step is None or step.say_first:
            doing = step.doing if step else "stopping"
            print(f"\nbottle: {signal.Signals(signum).name} received; still {doing}",
                  file=sys.stderr, flush=True)
            return
        step.seen += 1
        if step.seen >= _GIVE_UP:  # insisted: stop waiting (the sweep removes what it makes)
            _State.pending, _State.stopping = None, True
            raise Interrupted(signum)
        if not first:
            print(f"\nbottle: {signal.Signals(signum).name} received; still {step.doing} "
                  "(once more to stop waiting)", file=sys.stderr, flush=True)
        return
    _State.stopping = True
    raise Interrupted(signum)


def install() -> None:
    """Route SIGINT, SIGTERM and SIGHUP through `Interrupted` (main thread only)."""
    _set_all(_handler)


def ignore() -> None:
    """From here on SIGINT, SIGTERM and SIGHUP are ignored (the run is over)."""
    _set_all(signal.SIG_IGN)


def _set_all(handler: Callable[[int, FrameType | None], None] | signal.Handlers) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers
    for sig in _CAUGHT:
        signal.signal(sig, handler)


class shielded:  # lower case: used as a function, `with shielded("removing x"):`
    """Run a step to its end: a signal that arrives meanwhile is recorded and raised once
    the step is done (unless an interrupt is already unwinding). A teardown says at once
    that it goes on (`doing`: "removing bottle x"), whatever comes. A short step that must
    not be cut in half (`say_first=False`: creating what the teardown must find) says so
    only at a second signal, and a third stops waiting for it (an engine that does not
    answer must not hold a Ctrl-C forever; the next launch or `bottle sweep` removes what
    it makes). A class, not contextlib's decorator: importing contextlib is a tenth of a
    replayed run."""

    def __init__(self, doing: str, *, say_first: bool = True) -> None:
        self.doing, self.say_first, self.seen = doing, say_first, 0

    def __enter__(self) -> None:
        _State.depth += 1
        _State.steps.append(self)

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        _State.depth -= 1
        _State.steps.pop()
        if not _State.depth and _State.pending is not None:
            signum, _State.pending = _State.pending, None
            if kind is None or not issubclass(kind, KeyboardInterrupt):
                _State.stopping = True  # unwinding now: a further signal waits for teardown
                raise Interrupted(signum)
