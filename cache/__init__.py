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

    explicit = os.environ.get("BOTTLE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).expanduser().is_absolute():  # the XDG spec: ignore a relative one
        return Path(xdg).expanduser() / "bot-bottle"
    return Path.home() / ".cache" / "bot-bottle"
