"""The context digest: xxh3-128 over what `docker build` would receive, plus its inputs.

Covers the Dockerfile (wherever it lives), every context path `.dockerignore` lets
through (path, type, permission bits, content or link target), the build args and
the target. Same digest -> same build inputs -> no `docker build`.

The value is one xxh3-128 stream over the covered paths in sorted order, each as
`kind NUL path NUL permission-bits-in-octal NUL content NUL` (kind f, d, l, p, c or b;
content a file's xxh3-128 in hex, a link's target, a device's `major:minor`, else
empty), then the Dockerfile, args and target (`_tail`). It depends on nothing else:
not on the index, not on how many threads or processes read the files.

A stat index (cache.index, like git's) keeps, per directory, the listing, the
`.dockerignore` decisions and each file's hash beside its (size, mtime, ctime, inode,
mode). A directory whose listing and stats match needs no matcher and no read; when
every directory matches, the digest is the stored one. An entry whose mtime or ctime
is within the timestamp granularity of the walk's start is "racy" (a second write in
the same tick would not move its mtime) and is read again next time: the window is
`RACY_FINE_NS` where timestamps have sub-second parts, `RACY_COARSE_NS` where they
do not (FAT, some network and FUSE file systems, whole-second mtimes).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from itertools import compress, starmap
from operator import attrgetter
from pathlib import Path

import xxhash

from cache import index as ix
from cache import signals_held
from cache.errors import UserError, shown, storage_error
from cache.record import dataclass, field

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a warm run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from cache.dockerignore import ContextFilter, State

# Linux stamps files from a clock that ticks every few ms (4 ms at HZ=250); 20 ms is
# several ticks. Timestamps without sub-second parts get FAT's 2 s.
RACY_FINE_NS = 20_000_000
RACY_COARSE_NS = 2_000_000_000
_SECOND = 1_000_000_000
_CHUNK = 1 << 20
# Bump when the walk's decisions for the same rules change: stored ones are then redone.
_RULES_VERSION = 1
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
# O_NONBLOCK: a file swapped for a FIFO after its stat must not hang the digest.
_OPEN_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
# Files this big are read in threads (two at least), beside the small ones.
_BIG_FILE = 8 << 20
# A second process shares the directories that wait once this many do (breadth first)
# and the context has this many entries (from the index; a first walk always shares).
_SPLIT_DIRS = 16
_FORK_ENTRIES = 20_000
_FORK = True

Key = tuple[int, int, int, int, int]
Lists = tuple[list[str], list[Key], list[str | None]]
_TIMES = attrgetter("st_mtime_ns", "st_ctime_ns")
_KEPT = (stat.S_IFREG, stat.S_IFLNK)  # contents taken from the index when the stat matches
_REG, _LNK, _DEVICES = stat.S_IFREG, stat.S_IFLNK, (stat.S_IFCHR, stat.S_IFBLK)


def hash_file(path: Path | str) -> str:
    """xxh3-128 of a file's bytes, hex."""
    h = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_hash(fd: int, size: int) -> str:
    """xxh3-128 of an open file; `size` (from its stat) lets most files take one read."""
    want = min(size + 1, _CHUNK)  # one more than expected: a short read proves the end
    first = os.read(fd, want)
    if len(first) < want:
        return xxhash.xxh3_128_hexdigest(first)
    return _read_rest(fd, first)


@dataclass(frozen=True)
class ContextDigest:
    """The digest and what changed since the last one computed for this context."""

    hexdigest: str
    files: int
    bytes: int
    hashed: int
    changed: list[str] = field(default_factory=list)
    unsaved: str = ""  # why the stat index could not be written (a full disk), if so

    @property
    def short(self) -> str:
        return self.hexdigest[:16]


def racy(mtime_ns: int, ctime_ns: int, started_ns: int) -> bool:
    """Whether a stat taken after `started_ns` cannot prove that a later write would
    change it: a timestamp within its granularity of the walk. A timestamp without a
    sub-second part may come from a coarse clock (FAT's mtime: 2 s), so it gets that
    window; one with a sub-second part comes from a fine one."""
    return (mtime_ns >= started_ns - (RACY_FINE_NS if mtime_ns % _SECOND else RACY_COARSE_NS)
            or ctime_ns >= started_ns - (RACY_FINE_NS if ctime_ns % _SECOND else
                                         RACY_COARSE_NS))


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _cannot_read(path: str, err: OSError) -> UserError:
    if isinstance(err, PermissionError):
        return UserError(f"cannot read {path}: permission denied "
                         "(docker build fails on it too)")
    return UserError(f"cannot read {path}: {err.strerror or err} (did it change during "
                     "the build?)")


# --- the rules' identity ------------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """What the `.dockerignore` decisions depend on, and the filter, built on demand."""

    context: Path
    dockerfile: Path
    ident: str | None  # None: unreadable, so never reuse stored decisions
    own_ignore: bytes | None  # <Dockerfile>.dockerignore's bytes, when it exists

    @classmethod
    def read(cls, context: Path, dockerfile: Path) -> _Rules:
        h = xxhash.xxh3_128(f"{_RULES_VERSION}\0{os.path.relpath(dockerfile, context)}\0"
                            .encode())
        try:
            ignore = _read_or_none(context / ".dockerignore", FileNotFoundError)
            own = _read_or_none(dockerfile.with_name(dockerfile.name + ".dockerignore"),
                                FileNotFoundError, NotADirectoryError, IsADirectoryError)
        except OSError:  # the filter says why, as the error it is
            return cls(context, dockerfile, None, None)
        for data in (ignore, own):
            h.update(b"\0absent\0" if data is None else b"\0%d\0" % len(data) + data)
        return cls(context, dockerfile, h.hexdigest(), own)

    def build(self) -> ContextFilter:
        from cache.dockerignore import ContextFilter

        return ContextFilter.for_context(self.context, self.dockerfile)


def _read_or_none(path: Path, *absent: type[OSError]) -> bytes | None:
    try:
        return path.read_bytes()
    except absent:
        return None


# --- the walk -----------------------------------------------------------------------------


class _Fresh:
    """A directory read now (its record no longer matched): built up, then frozen."""

    def __init__(self, rel: str, names: list[str]) -> None:
        self.rel = rel
        self.names = names
        self.flags = bytearray()
        self.keys: list[Key] = []
        self.contents: list[str | None] = []
        self.size = 0
        self._record: ix.DirRecord | None = None

    def record(self) -> ix.DirRecord:
        """Frozen (asked for once its files are read: later asks get the same one)."""
        if self._record is None:
            self._record = ix.DirRecord.build(self.rel, self.names, bytes(self.flags),
                                              self.keys, [c or "" for c in self.contents],
                                              self.size)
        return self._record


class _Walk:
    """One walk of a context against its old index. `run` reads what it must; the
    records (matched or fresh) are then in `visited`, in walk order."""

    def __init__(self, context: Path, rules: _Rules | None, old: ix.Index | None,
                 started: int, *, flt: ContextFilter | None = None,
                 keep_stats: bool = False) -> None:
        self.root = str(context)
        self.rules = rules
        self.old = old.dirs if old is not None else {}
        self.trust = (old is not None and rules is not None and rules.ident is not None
                      and old.meta.get("rules") == rules.ident)
        self.started = started
        self.filter = flt
        self.bad = bool(old.meta.get("bad", True)) if old is not None else True
        self.states: dict[str, State | None] = {}
        self.visited: list[ix.DirRecord | _Fresh | str] = []  # str: the old record of rel
        self.pending: list[tuple[_Fresh, int, str, int]] = []
        self.stats: dict[str, os.stat_result] | None = {} if keep_stats else None
        self.root_fd = -1
        self.read = 0
        self.fresh = 0  # directories read now (their record no longer matched)
        self.hashed_elsewhere = 0  # files the second process read
        # With no index, each process also writes its frontier subtrees' part of the
        # stream (a subtree's part is contiguous in it): the parent only stitches.
        self.texts: dict[str, bytes] | None = {} if not self.old else None
        self.old_files = int(old.meta.get("files", 0)) if old is not None else None
        if flt is not None:
            self._use(flt)
        elif not self.trust or self.bad:
            self._filter()  # now: it checks the patterns as the CLI does

    # the filter and the per-directory states, only where a directory must be decided

    def _use(self, flt: ContextFilter) -> None:
        self.filter = flt
        self.states[""] = None if flt.everything else flt.root
        self.bad = any(m.bad for m in flt.matchers)

    def _filter(self) -> ContextFilter:
        if self.filter is None:
            assert self.rules is not None
            self._use(self.rules.build())
        assert self.filter is not None
        return self.filter

    def _state(self, rel: str) -> State | None:
        """The matcher state of a walked directory (what its parent hands down)."""
        if rel in self.states:
            return self.states[rel]
        flt = self._filter()
        if flt.everything:
            return None
        parent = self._state(rel.rpartition("/")[0])
        if parent is None:
            raise ix.DamagedIndex(f"no decision reaches {rel!r}")
        inner = flt.enter(rel, parent, is_dir=True)[1]
        if inner is None:  # the records walked where the rules do not
            raise ix.DamagedIndex(f"the rules do not walk into {rel!r}")
        self.states[rel] = inner
        return inner

    def run(self) -> None:
        try:
            self.root_fd = os.open(self.root, _OPEN_DIR)
        except OSError as err:
            raise _cannot_read(self.root, err) from None
        try:
            frontier = self._breadth()
            if len(frontier) >= 2 and self._worth_a_second_process():
                self._split(frontier)
            else:
                self._depth(frontier)
                self._read_pending()
        finally:
            os.close(self.root_fd)
            self.root_fd = -1

    def _children(self, rel: str) -> list[str]:
        names, walks = self._visit(rel)
        prefix = f"{rel}/" if rel else ""
        return [prefix + n for n in compress(names, walks)]

    def _breadth(self) -> list[str]:
        """Visit breadth first until enough directories wait to share them out."""
        queue = deque([""])
        while queue and len(queue) < _SPLIT_DIRS:
            queue += self._children(queue.popleft())
        return list(queue)

    def _depth(self, rels: Sequence[str]) -> None:
        stack = list(reversed(rels))
        while stack:
            stack += reversed(self._children(stack.pop()))

    # two processes: each takes waiting directories (and reads their files) until none is left

    def _worth_a_second_process(self) -> bool:
        if not _FORK or self.stats is not None or not hasattr(os, "fork") or _cpus() < 2 \
                or threading.active_count() > 1:  # fork() copies no other thread
            return False
        known = self.old_files if self.old_files is not None else _FORK_ENTRIES
        return known >= _FORK_ENTRIES

    def _split(self, frontier: list[str]) -> None:
        tokens = _tokens(len(frontier))
        r, w = os.pipe()
        pid, data, mine, status = 0, None, [], 0
        try:
            # Signals held over the fork: in the child they stay blocked (its parent stops
            # it, by SIGKILL); one that came while Python set the child up (its after-fork
            # hooks) ran our handler there and printed a traceback.
            with signals_held():
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child reports through the pipe
                    _child(self, frontier, tokens, r, w)
            os.close(w)
            w = -1
            mine = self._take(frontier, tokens, 0)
            self._write_texts(mine)
            with os.fdopen(r, "rb") as pipe:
                r = -1
                data = pipe.read()
        finally:
            for fd in (r, w):
                if fd != -1:
                    os.close(fd)
            if tokens is not None:
                os.close(tokens)
            if pid and data is None:  # stopped early: the child's work is not wanted
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if pid:
                status = os.waitpid(pid, 0)[1]
        if status != 0 or not self._merge(data):  # do its part here (with its errors)
            taken = set(mine)
            theirs = [rel for rel in frontier if rel not in taken]
            self._depth(theirs)
            self._read_pending()
            self._write_texts(theirs)

    def _take(self, frontier: Sequence[str], tokens: int | None, half: int) -> list[str]:
        """Walk and read frontier directories: one at a time, each taken from `tokens`
        (a pipe both processes read indices from, so whichever is quicker does more),
        or every other one (`half` 0 or 1) when there is no such pipe."""
        if tokens is None:
            rels = list(frontier[half::2])
            self._depth(rels)
            self._read_pending()
            return rels
        # What the walk before the split found is read here even when the other process
        # takes every token.
        self._read_pending()
        taken = []
        while len(got := os.read(tokens, _TOKEN)) == _TOKEN:
            rel = frontier[int.from_bytes(got, "little")]
            self._depth([rel])
            self._read_pending()
            taken.append(rel)
        return taken

    def _write_texts(self, rels: Sequence[str]) -> None:
        """The stream's part of each subtree at `rels`, all walked and read here."""
        if self.texts is None:
            return
        fresh = [v for v in self.visited if isinstance(v, _Fresh)]
        by_rel = {r.rel: r for r in _held([f.record() for f in fresh])}
        parts = {f.rel: (f.names, f.keys, f.contents) for f in fresh}
        for rel in rels:
            # No texts handed in: every piece is a str.
            self.texts[rel] = _enc("".join(_pieces(by_rel, parts, rel, {})))  # type: ignore[arg-type]

    def _merge(self, data: bytes) -> bool:
        """Take the child's report (see `_child`); False when it is not whole."""
        head = int.from_bytes(data[:8], "little")
        try:
            part = ix.unpack(data[8:8 + head])
        except ix.DamagedIndex:
            return False
        texts = part.meta.get("texts")
        if self.texts is not None:
            blob, at = memoryview(data)[8 + head:], 0
            if not isinstance(texts, list):
                return False
            try:
                if sum(n for _rel, n in texts) != len(blob):
                    return False
                for rel, n in texts:
                    self.texts[str(rel)] = bytes(blob[at:at + n])
                    at += n
            except (TypeError, ValueError):  # not a list of [rel, length]
                return False
        same = set(part.meta["same"])
        for rel in part.meta["order"]:
            # The child's unchanged directories by name: their records are copied out of
            # the index only if the digest needs them (it does not when nothing moved).
            self.visited.append(rel if rel in same else part.dirs[rel])
        self.hashed_elsewhere += int(part.meta["hashed"])
        self.fresh += len(part.dirs)
        return True

    def _listing(self, rel: str) -> tuple[list[str], list[os.stat_result]]:
        where = f"{self.root}/{rel}" if rel else self.root
        try:
            fd = os.open(rel or ".", _OPEN_DIR, dir_fd=self.root_fd)
        except OSError as err:
            raise _cannot_read(where, err) from None
        try:
            names = os.listdir(fd)
            lstat = partial(os.stat, dir_fd=fd, follow_symlinks=False)
            try:
                return names, list(map(lstat, names))
            except FileNotFoundError:  # removed since the listing: as if never listed
                kept = []
                for name in names:
                    with contextlib.suppress(FileNotFoundError):
                        kept.append((name, lstat(name)))
                return [n for n, _ in kept], [s for _, s in kept]
        except OSError as err:
            raise _cannot_read(where, err) from None
        finally:
            os.close(fd)

    def _visit(self, rel: str) -> tuple[list[str], bytes]:
        names, stats = self._listing(rel)
        old = self.old.get(rel)
        if old is not None and self.trust and self.stats is None and _matches(old, names,
                                                                              stats):
            self.visited.append(old)
            return names, old.walks
        fresh = self._fresh(rel, names, stats, old)
        self.visited.append(fresh)
        self.fresh += 1
        return fresh.names, bytes(f & ix.WALK for f in fresh.flags)

    def _decide(self, rel: str, names: list[str], stats: list[os.stat_result],
                old: ix.DirRecord | None) -> list[int]:
        """SENT/WALK per name: the record's, when the rules, names and types are the same."""
        if old is not None and self.trust and old.count == len(names) and \
                old.names == _enc("\0".join(names)) and \
                bytes(stat.S_IFMT(s.st_mode) >> 12 for s in stats) == \
                old.flags.translate(ix.TYPE_NIBBLE):
            return [f & (ix.SENT | ix.WALK) for f in old.flags]
        flt = self._filter()
        state = self._state(rel)
        prefix = f"{rel}/" if rel else ""
        dirs = [stat.S_ISDIR(st.st_mode) for st in stats]
        if state is None:  # no pattern anywhere: everything is sent, every directory walked
            return [ix.SENT | ix.WALK if d else ix.SENT for d in dirs]
        out: list[int] = []
        for name, is_dir, (sent, inner) in zip(names, dirs,
                                               flt.enter_all(prefix, names, dirs, state),
                                               strict=True):
            walk = is_dir and inner is not None
            if walk:
                self.states[prefix + name] = inner
            out.append((ix.SENT if sent else 0) | (ix.WALK if walk else 0))
        return out

    def _fresh(self, rel: str, names: list[str], stats: list[os.stat_result],
               old: ix.DirRecord | None) -> _Fresh:
        decided = self._decide(rel, names, stats, old)
        prev = {name: (key, content, flag)
                for name, flag, key, content in old.entries() if key is not None
                } if old is not None else {}
        fresh = _Fresh(rel, names)
        prefix = f"{rel}/" if rel else ""
        keys = list(map(ix.KEY_OF, stats))
        # Only an entry this new can be racy: the exact test is left for those.
        settled = self.started - max(RACY_FINE_NS, RACY_COARSE_NS)
        newest = list(map(max, map(_TIMES, stats)))
        carries, flags, contents = ix.CARRIES, fresh.flags, fresh.contents
        add_flag, add_key, add_content = flags.append, fresh.keys.append, contents.append
        add_pending, size, keep = self.pending.append, 0, self.stats
        for i, bits in enumerate(decided):  # per entry: kept lean, it runs for every one
            key = keys[i]
            mode = key[4]
            flag = (mode >> 12 & 15) << 4 | bits
            if not carries[flag]:
                add_flag(flag)
                continue
            if newest[i] >= settled and racy(key[1], key[2], self.started):
                flag |= ix.RACY
            add_flag(flag)
            add_key(key)
            name = names[i]
            if keep is not None:
                keep[prefix + name] = stats[i]
            fmt = mode & 0o170000
            p = prev.get(name) if prev else None
            if p is not None and p[0] == key and not p[2] & ix.RACY and fmt in _KEPT:
                add_content(p[1])
            elif fmt == _REG:
                add_pending((fresh, len(contents), prefix + name, key[0]))
                add_content(None)
            elif fmt == _LNK:
                add_content(os.readlink(prefix + name, dir_fd=self.root_fd))
            elif fmt in _DEVICES:
                rdev = stats[i].st_rdev
                add_content(f"{os.major(rdev)}:{os.minor(rdev)}")
            else:
                add_content("")
            if fmt == _REG and bits & ix.SENT:
                size += key[0]
        fresh.size = size
        return fresh

    # reading the files whose content is not known

    def _read_pending(self) -> None:
        if self.stats is not None or not self.pending:  # a selection only (tests)
            return
        jobs = [(rel, size) for _f, _i, rel, size in self.pending]
        for (fresh, i, _rel, _size), digest in zip(self.pending,
                                                   _read_all(self.root, self.root_fd, jobs),
                                                   strict=True):
            fresh.contents[i] = digest
        self.read += len(self.pending)
        self.pending = []

    @property
    def hashed(self) -> int:
        return self.read + self.hashed_elsewhere

    # after the walk

    def lists(self) -> dict[str, Lists]:
        """The parts of the directories read now, as lists (no need to decode them)."""
        return {v.rel: (v.names, v.keys, v.contents) for v in self.visited
                if isinstance(v, _Fresh)}

    def records(self) -> list[ix.DirRecord]:
        """The visited records, frozen, with HELD set where a found path lies below an
        excluded directory the walk went into."""
        recs = [v.record() if isinstance(v, _Fresh) else self.old[v] if isinstance(v, str)
                else v for v in self.visited]
        if not self.fresh:
            return recs  # nothing below any record changed
        return _held(recs)


_TOKEN = 4  # bytes per frontier index in the token pipe
_TOKENS_MAX = 16384  # what a pipe surely holds unread (Linux: 64 KiB; POSIX: >= 4096)


def _tokens(count: int) -> int | None:
    """A pipe holding the indices 0..count-1, its write end closed; None when they would
    not all fit unread (the processes then split the frontier half and half)."""
    if count * _TOKEN > _TOKENS_MAX:
        return None
    r, w = os.pipe()
    try:
        os.write(w, b"".join(i.to_bytes(_TOKEN, "little") for i in range(count)))
    finally:
        os.close(w)
    return r


def _child(walk: _Walk, frontier: Sequence[str], tokens: int | None, r: int,
           w: int) -> NoReturn:
    """The second process: walk frontier directories (see `_take`), read their files,
    send the records, exit."""
    code = 1
    try:
        os.close(r)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)  # the parent's handlers are not ours
        # (SIGINT, SIGTERM and SIGHUP stay blocked here, see `_split`: the parent decides.)
        walk.visited, walk.fresh, walk.pending = [], 0, []
        rels = walk._take(frontier, tokens, 1)
        if walk.texts is not None:
            walk.texts = {}
            walk._write_texts(rels)
        order = [v if isinstance(v, str) else v.rel for v in walk.visited]
        same = [v if isinstance(v, str) else v.rel for v in walk.visited
                if not isinstance(v, _Fresh)]
        fresh = [v.record() for v in walk.visited if isinstance(v, _Fresh)]
        texts = walk.texts or {}
        data = ix.pack({"order": order, "same": same, "hashed": walk.read,
                        **({"texts": [[rel, len(t)] for rel, t in texts.items()]}
                           if walk.texts is not None else {})}, fresh)
        with os.fdopen(w, "wb") as pipe:  # the report: its length, the records, the texts
            pipe.write(len(data).to_bytes(8, "little"))
            pipe.write(data)
            for text in texts.values():
                pipe.write(text)
        code = 0
    finally:
        os._exit(code)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_HOLDS = bytes(1 if f & ix.WALK and not f & ix.SENT else 0 for f in range(256))


def _held(recs: list[ix.DirRecord]) -> list[ix.DirRecord]:
    """`recs` (in walk order: parents first), HELD set where a found path lies below an
    excluded directory the walk went into. A directory's answer depends on its subtree
    alone, so a whole subtree's records get their final flags."""
    below: dict[str, bool] = {}
    for i in range(len(recs) - 1, -1, -1):  # children before parents
        rec = recs[i]
        if 1 in rec.flags.translate(_HOLDS):
            rec = _with_held(rec, below)
            recs[i] = rec
        below[rec.rel] = 1 in rec.flags.translate(ix.FOUND)
    return recs


def _with_held(rec: ix.DirRecord, below: Mapping[str, bool]) -> ix.DirRecord:
    prefix = f"{rec.rel}/" if rec.rel else ""
    flags = bytearray(rec.flags)
    for i, name in enumerate(rec.name_list()):
        f = flags[i]
        if f & ix.WALK and not f & ix.SENT:
            flags[i] = f | ix.HELD if below.get(prefix + name) else f & ~ix.HELD
    if flags == rec.flags:
        return rec
    return ix.DirRecord(rec.rel, rec.names, bytes(flags), rec.keys, rec.contents, rec.size)


def _matches(old: ix.DirRecord, names: list[str], stats: list[os.stat_result]) -> bool:
    """Whether a directory is as its record says: the same listing, the same stat keys
    where there is content, the same types elsewhere, nothing racy. C-level loops only."""
    if len(names) != old.count or old.racy or _enc("\0".join(names)) != old.names:
        return False
    if b"".join(starmap(ix.KEY.pack, map(ix.KEY_OF, compress(stats, old.carries)))) \
            != old.keys:
        return False
    others = old.other_types()
    return not others or bytes(
        stat.S_IFMT(s.st_mode) >> 12 for s in compress(stats, old.others)) == others


def _read_one(root_fd: int, rel: str, size: int, root: str) -> str:
    try:
        fd = os.open(rel, _OPEN_FILE, dir_fd=root_fd)
    except OSError as err:
        raise _cannot_read(f"{root}/{rel}", err) from None
    try:
        return _read_hash(fd, size)
    except OSError as err:
        raise _cannot_read(f"{root}/{rel}", err) from None
    finally:
        os.close(fd)


def _read_all(root: str, root_fd: int, jobs: Sequence[tuple[str, int]]) -> list[str]:
    """Each file's xxh3-128, in order. Big files go to threads (reading and xxhash let go
    of the GIL for a whole chunk); small ones are read here meanwhile: threads over small
    files only fight over the GIL (measured: slower than one). The result does not depend
    on how the work was split."""
    big = [i for i, (_rel, size) in enumerate(jobs) if size >= _BIG_FILE]
    workers = min(_cpus(), 4, len(big))
    if workers < 2:
        return _read_each(root_fd, jobs, root)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="digest") as pool:
        with signals_held():  # the threads it starts leave them to this one
            futures = [(i, pool.submit(_read_one, root_fd, *jobs[i], root)) for i in big]
        small = [i for i, (_rel, size) in enumerate(jobs) if size < _BIG_FILE]
        out = [""] * len(jobs)
        for i, got in zip(small, _read_each(root_fd, [jobs[i] for i in small], root),
                          strict=True):
            out[i] = got
        for i, future in futures:
            out[i] = future.result()
    return out


def _read_each(root_fd: int, jobs: Sequence[tuple[str, int]], root: str) -> list[str]:
    """`_read_one` for each, as one loop (most files here are small: calls would cost
    more than their reads)."""
    out: list[str] = []
    append, open_, read, close = out.append, os.open, os.read, os.close
    whole, chunk = xxhash.xxh3_128_hexdigest, _CHUNK
    for rel, size in jobs:
        try:
            fd = open_(rel, _OPEN_FILE, dir_fd=root_fd)
            try:
                want = size + 1 if size < chunk else chunk
                data = read(fd, want)
                append(whole(data) if len(data) < want else _read_rest(fd, data))
            finally:
                close(fd)
        except OSError as err:
            raise _cannot_read(f"{root}/{rel}", err) from None
    return out


def _read_rest(fd: int, first: bytes) -> str:
    h = xxhash.xxh3_128(first)
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _walk(context: Path, rules: ContextFilter) -> list[tuple[str, os.stat_result]]:
    """The context paths any builder sends (see cache.dockerignore), sorted, with lstat.
    Sockets are never sent (Docker's tar writer cannot hold them)."""
    walk = _Walk(context.resolve(), None, None, time.time_ns(), flt=rules, keep_stats=True)
    walk.run()
    assert walk.stats is not None
    found: list[tuple[str, os.stat_result]] = []
    for rec in walk.records():
        prefix = f"{rec.rel}/" if rec.rel else ""
        found += [(prefix + name, walk.stats[prefix + name])
                  for name, flag, _k, _c in rec.entries() if ix.FOUND[flag]]
    found.sort(key=lambda item: item[0])
    return found


# --- the stream ---------------------------------------------------------------------------


_KINDS = {stat.S_IFREG >> 12: "f", stat.S_IFDIR >> 12: "d", stat.S_IFLNK >> 12: "l",
          stat.S_IFIFO >> 12: "p", stat.S_IFCHR >> 12: "c", stat.S_IFBLK >> 12: "b"}


def _stream(recs: Sequence[ix.DirRecord], lists: Mapping[str, Lists],
            texts: Mapping[str, bytes]) -> xxhash.xxh3_128:
    """The hash over every found entry in sorted path order. Sorting siblings by name,
    with a walked directory's subtree keyed `name/`, gives exactly that order. `lists`
    holds the decoded parts of the records read now (the others are decoded here);
    `texts` the stream's part of some subtrees, written already."""
    by_rel = {r.rel: r for r in recs}
    h = xxhash.xxh3_128()
    if "" not in by_rel:
        return h
    buf: list[str] = []
    for piece in _pieces(by_rel, lists, "", texts):
        if isinstance(piece, bytes):  # a subtree's part, written already
            h.update(_enc("".join(buf)))
            buf.clear()
            h.update(piece)
            continue
        buf.append(piece)
        if len(buf) >= 4096:
            h.update(_enc("".join(buf)))
            buf.clear()
    h.update(_enc("".join(buf)))
    return h


def _pieces(by_rel: Mapping[str, ix.DirRecord], lists: Mapping[str, Lists], root: str,
            texts: Mapping[str, bytes]) -> Iterator[str | bytes]:
    """The stream's part for the subtree at `root`, piece by piece, in order."""
    stack = [(f"{root}/" if root else "", _sorted_items(by_rel[root], lists.get(root)))]
    while stack:
        prefix, items = stack[-1]
        for name, piece in items:
            if piece is None:  # a subtree (`name/`): its entries come here, in order
                rel = prefix + name[:-1]
                if rel in texts:
                    yield texts[rel]
                    continue
                stack.append((rel + "/", _sorted_items(by_rel[rel], lists.get(rel))))
                break
            yield piece
        else:
            stack.pop()


def _sorted_items(rec: ix.DirRecord, parts: Lists | None
                  ) -> Iterator[tuple[str, str | None]]:
    """(sort key, stream piece) per found entry and (rel/, None) per walked directory."""
    prefix = f"{rec.rel}/" if rec.rel else ""
    names, keys, contents = parts or (rec.name_list(), rec.key_list(), rec.content_list())
    items: list[tuple[str, str | None]] = []
    carries, found, c = ix.CARRIES, ix.FOUND, 0
    for i, f in enumerate(rec.flags):
        if not carries[f]:
            continue
        if found[f]:
            mode = keys[c][4]
            items.append((names[i], f"{_KINDS[mode >> 12]}\0{prefix}{names[i]}\0"
                                    f"{mode & 0o7777:o}\0{contents[c] or ''}\0"))
        if f & ix.WALK:
            items.append((f"{names[i]}/", None))
        c += 1
    items.sort(key=_first)
    return iter(items)


def _first(item: tuple[str, str | None]) -> str:
    return item[0]


def _tail(own_ignore: bytes | None, df_hash: str, build_args: Mapping[str, str],
          target: str | None) -> bytes:
    out = b""
    if own_ignore is not None:  # BuildKit's selection may shrink while the union does not
        out += f"dockerfile.dockerignore\0{xxhash.xxh3_128_hexdigest(own_ignore)}\0".encode()
    out += f"dockerfile\0{df_hash}\n".encode()
    for k in sorted(build_args):
        out += f"arg\0{k}\0{build_args[k]}\n".encode()
    return out + f"target\0{target or ''}\n".encode()


# --- what changed -------------------------------------------------------------------------


@dataclass
class _Changes:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    stream: bool = False  # whether any found entry's kind, path, bits or content moved


def _found(rec: ix.DirRecord) -> dict[str, tuple[int, str]]:
    prefix = f"{rec.rel}/" if rec.rel else ""
    return {prefix + name: (key[4], content or "")
            for name, flag, key, content in rec.entries()
            if ix.FOUND[flag] and key is not None}


def _compare(recs: Sequence[ix.DirRecord], old: Mapping[str, ix.DirRecord]) -> _Changes:
    ch = _Changes()
    seen = set()
    for rec in recs:
        seen.add(rec.rel)
        o = old.get(rec.rel)
        if o is rec or (o is not None and o.flags == rec.flags and o.names == rec.names
                        and o.contents == rec.contents and o.keys == rec.keys):
            continue
        new, prev = _found(rec), _found(o) if o is not None else {}
        ch.added += new.keys() - prev.keys()
        ch.removed += prev.keys() - new.keys()
        for path in new.keys() & prev.keys():
            (mode, content), (old_mode, old_content) = new[path], prev[path]
            if content != old_content or (mode ^ old_mode) & 0o7777:
                ch.edited.append(path)
            if content != old_content or stat.S_IFMT(mode) != stat.S_IFMT(old_mode) or \
                    stat.S_IMODE(mode) != stat.S_IMODE(old_mode):
                ch.stream = True
    for rel, o in old.items():
        if rel not in seen:
            ch.removed += _found(o)
    ch.stream = ch.stream or bool(ch.added or ch.removed)
    return ch


def _describe(meta: Mapping[str, Any] | None, ch: _Changes, df_hash: str,
              build_args: Mapping[str, str], target: str | None, *,
              dockerfile_rel: str) -> list[str]:
    if meta is None:
        return ["first build of this context"]
    changes: list[str] = []
    if meta.get("dockerfile") != df_hash:
        changes.append("Dockerfile changed")
    if meta.get("args") != dict(build_args):
        changes.append("build args changed")
    if meta.get("target") != target:
        changes.append("target changed")
    reported = {dockerfile_rel} if changes and changes[0] == "Dockerfile changed" else set()
    for label, paths in (("added", ch.added), ("removed", ch.removed),
                         ("changed", ch.edited)):
        shown_paths = sorted(set(paths) - reported)
        if shown_paths:
            listed = ", ".join(map(shown, shown_paths[:3])) + (
                f" and {len(shown_paths) - 3} more" if len(shown_paths) > 3 else "")
            changes.append(f"{label}: {listed}")
    return changes


# --- the digest ---------------------------------------------------------------------------


def context_digest(
    context: Path,
    dockerfile: Path,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    index_path: Path | None = None,
    write_index: bool = True,
) -> ContextDigest:
    """Digest of one build's inputs. With `index_path`, unchanged files are not re-read
    (and, unless `write_index` is false, the index is brought up to date)."""
    # A walk makes several objects per entry and frees none until it ends: the cyclic
    # collector would only traverse them, again and again (measured: a fifth of the CPU
    # of a cold digest of 100k files).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _context_digest(context, dockerfile, build_args, target, index_path,
                               write_index)
    finally:
        if collecting:
            gc.enable()


def _context_digest(context: Path, dockerfile: Path, build_args: Mapping[str, str] | None,
                    target: str | None, index_path: Path | None, write_index: bool
                    ) -> ContextDigest:
    context = context.resolve()
    dockerfile = dockerfile.resolve()
    args = dict(build_args or {})
    started = time.time_ns()
    old = ix.load(index_path) if index_path is not None else None
    rules = _Rules.read(context, dockerfile)
    df_hash = hash_file(dockerfile)
    tail = _tail(rules.own_ignore, df_hash, args, target)
    tail_id = xxhash.xxh3_128_hexdigest(tail)

    walk = _Walk(context, rules, old, started)
    try:
        walk.run()
    except ix.DamagedIndex:  # records the rules contradict: trust none of them
        old = None
        walk = _Walk(context, rules, None, started)
        walk.run()
    meta = old.meta if old is not None else None
    if not walk.fresh and meta is not None and len(walk.visited) == len(walk.old) and \
            meta.get("tail") == tail_id:  # nothing moved: the stored digest is the digest
        return ContextDigest(str(meta["digest"]), int(meta["files"]),
                             int(meta["bytes"]), 0, [])
    recs = walk.records()
    ch = _compare(recs, walk.old) if meta is not None else _Changes(stream=True)
    if not ch.stream and meta is not None and meta.get("tail") == tail_id:
        digest = str(meta["digest"])
    else:
        h = _stream(recs, walk.lists(), walk.texts or {})
        h.update(tail)
        digest = h.hexdigest()
    changed = ([] if meta is not None and meta.get("digest") == digest else
               _describe(meta, ch, df_hash, args, target,
                         dockerfile_rel=os.path.relpath(dockerfile, context)))
    files = sum(r.found_count() for r in recs)
    size = sum(r.size for r in recs)
    if write_index and index_path is not None:
        new_meta = {"digest": digest, "dockerfile": df_hash, "args": args, "target": target,
                    "tail": tail_id, "rules": rules.ident, "bad": walk.bad, "files": files,
                    "bytes": size}
        try:
            _write(index_path, new_meta, recs)
        except OSError as err:  # the index only saves work: the next run reads again
            problem = storage_error(err, index_path.parent)
            # A read-only cache is said once elsewhere; a full disk (or worse) here.
            if problem is None:
                unsaved = f"cache: cannot write {index_path}: {err.strerror or err}"
            else:
                unsaved = "" if problem.read_only else str(problem)
            return ContextDigest(digest, files, size, walk.hashed, changed, unsaved)
    return ContextDigest(digest, files, size, walk.hashed, changed)


def _write(path: Path, meta: dict[str, Any], recs: Sequence[ix.DirRecord]) -> None:
    from cache.atomic import write_atomic

    write_atomic(path, ix.pack(meta, recs))


__all__ = ["ContextDigest", "context_digest", "hash_file", "racy"]
