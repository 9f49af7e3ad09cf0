"""Writes nobody can see half-done: a temp file in the same directory, fsync, rename.

The temp file's name carries the writer's pid (`.NAME.PID.RANDOM.tmp`), so a sweep
can tell the leftovers of a killed writer from work still under way."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cache.lock import pid_alive

_TEMP = re.compile(r"^\..*\.(\d+)\.[^.]+\.tmp$")


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # here: a warm run that writes nothing need not load it

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stale_temp(name: str) -> bool:
    """Whether `name` is a `write_atomic` temp file whose writer is gone."""
    m = _TEMP.match(name)
    return m is not None and not pid_alive(int(m.group(1)))
