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
