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
    # Not tempfile.mkstemp: importing tempfile costs a short run more than the write.
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:  # 48 random bits taken: draw again
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stale_temp(name: str) -> bool:
    """Whether `name` is a `write_atomic` temp file whose writer is gone."""
    m = _TEMP.match(name)
    return m is not None and not pid_alive(int(m.group(1)))
