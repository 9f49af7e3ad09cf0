"""An exclusive lock per cache key (flock: the kernel releases it if the holder dies).

flock belongs to an open file description: two opens in one process are two
owners, so code holding a key's lock must never take it again (the store's reads
take no lock for that reason).

A lock file nobody holds can be removed (`remove_free`, from gc), under its own lock: a
process that was waiting for it then holds the lock of a file no longer there, so `locked`
checks after taking the lock that the path still names the file it locked, and else takes
the lock of the one there now."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(path: Path, *, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold an exclusive lock on `path`. When another process holds it, call `on_wait`
    once (to tell the user) and block until it is released; a signal still interrupts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not told:
                    on_wait()
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        if _still_there(fd, path):
            break
        os.close(fd)  # removed while we waited: the lock is the file's at the path now
    try:
        yield
    finally:
        os.close(fd)


def _still_there(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)


def remove_free(path: Path) -> bool:
    """Remove the lock file at `path` when nobody holds it (taking its lock to know, and
    removing it while held). False when it is held, absent or cannot be removed."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not _still_there(fd, path):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_locked(path: Path) -> bool:
    """True while some process holds the lock at `path`."""
    try:
        fd = os.open(path, os.O_RDWR)
    except (FileNotFoundError, PermissionError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
