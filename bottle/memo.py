"""Replay memos: a command run again with every input as it was gives the answer it gave,
without loading the modules that worked it out.

A memo is written by the run that did the work, after it succeeded. It holds the
command line, the working directory, a digest of the environment (the whole of it, or,
when the run knows which variables it read, those, every COMPOSE_*, DOCKER_*, BOTTLE_*,
PYTHON* and XDG_* variable there is, PATH and HOME), and the state
of every file the answer depends on: the content (xxh3-128) of the files that were read
(a config file, a compose file, a `.env` that was or was not there), the stat of those
whose presence or identity counted (a directory on PATH, the program found in it). The
next run with the same command line reads the memo, looks at each of those again and
replays the answer only when all are the same; anything else (a memo missing, damaged,
from another Python, any input changed) sends the run down the full path, which writes a
new memo. A stat is trusted only when it was older than its timestamps' granularity when
recorded (git's racy-timestamp rule, with FAT's 2 s as the window): a change in the same
tick would not move it, so a memo with a newer stat is not written.

The memo lives in the cache area of the command that wrote it, one file per command line
and directory, written atomically. Reading one imports only the C-level modules below.
"""

from __future__ import annotations

import marshal
import os
import sys
import time

import xxhash

_MAGIC = b"BBMEMO1\0"
_RACY_NS = 2_000_000_000
_VERSION = 2
# Variables a run may read without naming them: compose's and docker's, ours, Python's,
# where things live and which programs run.
_PREFIXES = ("COMPOSE_", "DOCKER_", "BOTTLE_", "PYTHON", "XDG_")
_NAMES = ("PATH", "HOME")


def cache_root() -> str | None:
    """The cache root as `cache.cache_root` names it, as a string; None when relative (the
    full path says what is wrong with it)."""
    from cache import root_text

    root = root_text()
    return root if os.path.isabs(root) else None


def _where(area: str, argv: list[str], cwd: str) -> str | None:
    root = cache_root()
    if root is None:
        return None
    key = xxhash.xxh3_64_hexdigest("\0".join([cwd, *argv]).encode("utf-8", "surrogateescape"))
    return os.path.join(root, area, f"memo-{key}")


def environment(names: list[str] | None = None) -> str:
    """A digest of the environment: all of it when `names` is None, else those variables
    (set or not) and every one with a name compose, docker, we or Python read unasked."""
    h = xxhash.xxh3_128()
    env = os.environb
    if names is None:
        chosen = sorted(env)
    else:
        wanted = {os.fsencode(n) for n in (*names, *_NAMES)}
        prefixes = tuple(os.fsencode(p) for p in _PREFIXES)
        chosen = sorted(wanted | {n for n in env if n.startswith(prefixes)})
    for name in chosen:
        value = env.get(name)
        if value is None:
            h.update(b"%d\0%s\0unset\0" % (len(name), name))
        else:
            h.update(b"%d\0%s\0%d\0%s\0" % (len(name), name, len(value), value))
    return h.hexdigest()


def content(path: str) -> str:
    """What a reader of `path` finds: its bytes' xxh3-128, `absent` (nothing, or not a
    file), or `unreadable`."""
    try:
        with open(path, "rb") as f:
            return xxhash.xxh3_128_hexdigest(f.read())
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return "absent"
    except OSError:
        return "unreadable"


def identity(path: str) -> tuple[int, ...] | str:
    """The stat of `path` (symlinks followed): type and mode, size, mtime, ctime, inode and
    device; `absent` when there is nothing."""
    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def record(area: str, argv: list[str], cwd: str, *, read: list[str], stat: list[str],
           answer: object, env: list[str] | None = None) -> bool:
    """Remember `answer` for this command line, directory and environment, with the state
    of the files `read` (by content) and `stat` (by identity). `env`: the variables the
    answer depends on besides those `environment` always takes (None: every variable).
    False (nothing written) when a stat is too fresh to be trusted or the cache cannot
    take it."""
    started = time.time_ns()
    stats = [(p, identity(p)) for p in dict.fromkeys(stat)]
    for _p, st in stats:
        if not isinstance(st, str) and max(st[2], st[3]) >= started - _RACY_NS:
            return False
    where = _where(area, argv, cwd)
    if where is None:
        return False
    names = None if env is None else sorted(set(env))
    body = marshal.dumps((_VERSION, sys.version, list(argv), cwd, names, environment(names),  # type: ignore[arg-type]  # answer: plain data
                          [(p, content(p)) for p in dict.fromkeys(read)], stats, answer))
    from pathlib import Path

    from cache.atomic import write_atomic

    try:
        write_atomic(Path(where), _MAGIC + xxhash.xxh3_64_digest(body) + body)
    except OSError:  # a read-only or full cache: the next run takes the full path
        return False
    return True


def recall(area: str, argv: list[str]) -> object | None:
    """The answer remembered for this command line when every input is as it was; None
    otherwise (the full path then runs)."""
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    where = _where(area, argv, cwd)
    if where is None:
        return None
    try:
        with open(where, "rb") as f:
            data = f.read()
    except OSError:
        return None
    head = len(_MAGIC) + 8
    if data[:len(_MAGIC)] != _MAGIC or data[len(_MAGIC):head] != xxhash.xxh3_64_digest(
            data[head:]):
        return None
    try:
        version, python, was_argv, was_cwd, names, env, read, stats, answer = marshal.loads(
            data[head:])
    except (ValueError, EOFError, TypeError):
        return None
    if (version, python, was_argv, was_cwd) != (_VERSION, sys.version, argv, cwd):
        return None
    if names is not None and not (isinstance(names, list) and
                                  all(isinstance(n, str) for n in names)):
        return None
    if env != environment(names):
        return None
    if any(content(p) != state for p, state in read):
        return None
    if any(identity(p) != state for p, state in stats):
        return None
    kept: object = answer
    return kept


def forget(area: str, argv: list[str]) -> None:
    """Drop the memo of this command line (a run that failed must not be replayed)."""
    try:
        where = _where(area, argv, os.getcwd())
        if where is not None:
            os.unlink(where)
    except OSError:
        pass
