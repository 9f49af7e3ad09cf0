"""Progress for long steps: a live line on a terminal, nothing in scripts."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from cache import signals_held


def say(line: str) -> None:
    """One line about what a task did and why (stderr keeps stdout for the agent)."""
    print(line, file=sys.stderr, flush=True)


def _size(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        n = float(path.stat().st_size)
    except OSError:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f" {n:.1f} {unit}" if unit != "B" else f" {int(n)} B"
        n /= 1024
    return ""


@contextlib.contextmanager
def step(label: str, *, watch: Path | None = None) -> Iterator[None]:
    """On a terminal, redraw `label: 3.2s 120.5 MB` (bytes of `watch`) until the step ends."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(0.2):
            sys.stderr.write(f"\r\x1b[K{label}: {time.monotonic() - started:.1f}s{_size(watch)}")
            sys.stderr.flush()

    ticker = threading.Thread(target=tick, daemon=True)
    with signals_held():
        ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
