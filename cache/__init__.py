"""The content-addressed store: digests, entries, locks, gc, verify."""

from __future__ import annotations

import os

# Not `typing.TYPE_CHECKING`: a replayed run loads this package and neither typing nor pathlib.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def cache_root() -> Path:
    """`$BOTTLE_CACHE_DIR`, else `$XDG_CACHE_HOME/bot-bottle`, else `~/.cache/bot-bottle`."""
    from pathlib import Path

    return Path(root_text())


def root_text() -> str:
    """`cache_root` as a string, without loading pathlib (a replayed run needs no more)."""
    explicit = os.environ.get("BOTTLE_CACHE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(os.path.expanduser(xdg)):  # the XDG spec: ignore a relative one
        return os.path.join(os.path.expanduser(xdg), "bot-bottle")
    return os.path.join(os.path.expanduser("~"), ".cache", "bot-bottle")


class signals_held:  # lower case: used as a function, `with signals_held(): t.start()`
    """Within: SIGINT, SIGTERM and SIGHUP held back from this thread (delivered on the way
    out). A thread started within inherits them blocked, for good, so the kernel gives them
    to the main thread, the only one that acts on them: one taken by a worker would leave
    the main thread asleep in its wait until that wait ended (a second Ctrl-C coming
    while the first is still pending is given to another thread)."""

    def __enter__(self) -> None:
        import signal

        self._old = signal.pthread_sigmask(
            signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))

    def __exit__(self, *_: object) -> None:
        import signal

        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
