"""The one class that owns the cache root.

Every area under the root is named in `AREAS` and reached through `Store.area`;
`gc` covers all of them:

    objects/<kind>/<key>/   complete entries: their files plus meta.json
    refs/<kind>/<key>.json  small records (context digest -> image id), each checksummed
    index/                  stat indexes of build contexts (rebuilt when missing)
    locks/                  one flock file per key (gc removes those nobody holds)
    tmp/                    work in progress: `<kind>-<key>.<pid>.<rand>`
    doit/                   doit's dependency databases, one per project directory
    prepull/                compose's resolved image lists
    contexts/               assembled build contexts (the example agent; with a CA bundle)
    run/                    records of running launches (swept when their launcher died)
    logs/                   full output of failed tools
    state/                  agents' state (logins) per project
    probe/                  answers of slow host probes
    egress/                 what each launch's egress proxy saw

An entry is built in a temp dir beside its final place and renamed in, so a reader
sees all of it or none. `ensure` checks, takes the key's lock, checks again (another
process may have finished the work meanwhile), builds, commits. `get` is a pure read:
it verifies each file against the size and xxh3-128 recorded at commit (a stat
fingerprint says when re-hashing can be skipped) and never evicts; eviction happens
only under the key's lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import xxhash

from cache.atomic import stale_temp, write_atomic
from cache.errors import StorageError, UserError, storage_error
from cache.lock import is_locked, locked, pid_alive, remove_free
from cache.record import dataclass

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a warm run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

META = "meta.json"
AREAS = ("objects", "refs", "index", "locks", "tmp", "doit", "prepull", "contexts",
         "run", "logs", "state", "probe", "egress")
# Areas of small files, each a record that can be dropped (recomputed on demand).
_RECORD_AREAS = ("refs", "index", "prepull", "probe", "logs", "egress")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HEX = re.compile(r"^[0-9a-f]{32}$")


def _checked(part: str, what: str) -> str:
    if not _NAME.match(part):
        raise UserError(f"cache: invalid {what} {part!r}")
    return part


@dataclass(frozen=True)
class Entry:
    kind: str
    key: str
    path: Path
    meta: dict[str, Any]

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def size(self) -> int:
        files = self.meta.get("files")
        if not isinstance(files, dict):
            return _du(self.path)
        return sum(int(f.get("size", 0)) for f in files.values() if isinstance(f, dict))

    @property
    def last_used(self) -> float:
        try:
            return (self.path / META).stat().st_mtime
        except OSError:
            return 0.0


@dataclass(frozen=True)
class Removed:
    """Something `gc` or `verify` removed: its area, name and size in bytes."""

    area: str
    name: str
    size: int


def _fingerprint(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def meta_problem(meta: Any, kind: str, key: str) -> str | None:
    """What is wrong with an entry's metadata, or None: it is validated like data."""
    if not isinstance(meta, dict):
        return "meta.json is not an object"
    if meta.get("kind") != kind or meta.get("key") != key:
        return "meta.json names another entry"
    if not isinstance(meta.get("created"), int | float):
        return "meta.json has no creation time"
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        return "meta.json lists no files"
    for name, rec in files.items():
        if not isinstance(name, str) or "/" in name or name in (META, "", ".", ".."):
            return f"meta.json lists a bad file name {name!r}"
        if (not isinstance(rec, dict) or not isinstance(rec.get("size"), int)
                or not isinstance(rec.get("xxh3_128"), str) or not _HEX.match(rec["xxh3_128"])
                or not isinstance(rec.get("stat"), list)):
            return f"meta.json has a bad record for {name}"
    return None


def _ref_checksum(value: Mapping[str, Any]) -> str:
    return xxhash.xxh3_128_hexdigest(json.dumps(dict(value), sort_keys=True).encode())


class Store:
    def __init__(self, root: Path, *, on_wait: Callable[[str], None] = lambda what: None,
                 on_problem: Callable[[str], None] = lambda message: None) -> None:
        """`on_wait(what)` is called when another process holds a key we need;
        `on_problem(message)` when a damaged entry or record is found (it is rebuilt)."""
        self.root = root
        self._on_wait = on_wait
        self._on_problem = on_problem

    # --- paths ---
    def area(self, name: str) -> Path:
        if name not in AREAS:
            raise ValueError(f"unknown cache area {name!r}")
        return self.root / name

    def _entry_dir(self, kind: str, key: str) -> Path:
        return self.area("objects") / _checked(kind, "kind") / _checked(key, "key")

    def lock_path(self, name: str) -> Path:
        return self.area("locks") / f"{_checked(name, 'lock name')}.lock"

    def _ref(self, kind: str, key: str) -> Path:
        return self.area("refs") / _checked(kind, "kind") / f"{_checked(key, 'key')}.json"

    @contextlib.contextmanager
    def lock(self, name: str, *, what: str) -> Iterator[None]:
        """Hold the lock `name` (tell `on_wait` when another process has it). In a
        read-only cache nothing can be written, so nothing needs a lock: say so, go on."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(locked(self.lock_path(name),
                                           on_wait=lambda: self._on_wait(what)))
            except OSError as err:
                mapped = self._storage(err, self.area("locks"))
                if not (isinstance(mapped, StorageError) and mapped.read_only):
                    raise mapped from None
                self._on_problem(f"{mapped}; going on without a lock")
            yield

    def _storage(self, err: OSError, where: Path) -> OSError | StorageError:
        mapped = storage_error(err, where)
        return mapped if mapped is not None else err

    # --- refs: small atomic records, each with its checksum ---
    def get_ref(self, kind: str, key: str) -> dict[str, Any] | None:
        path = self._ref(kind, key)
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            data = None
        value = data.get("value") if isinstance(data, dict) else None
        if not isinstance(value, dict) or data.get("xxh3_128") != _ref_checksum(value):
            self._on_problem(f"cache: record {kind}/{key} is damaged; ignoring it")
            return None
        return value

    def put_ref(self, kind: str, key: str, value: Mapping[str, Any]) -> None:
        path = self._ref(kind, key)
        record = {"value": dict(value), "xxh3_128": _ref_checksum(value)}
        try:
            write_atomic(path, json.dumps(record, sort_keys=True).encode())
        except OSError as err:
            raise self._storage(err, path.parent) from None

    def touch_ref(self, kind: str, key: str) -> None:
        """Mark a record used (gc drops the least recently used); best effort."""
        with contextlib.suppress(OSError):
            os.utime(self._ref(kind, key))

    def ref_time(self, kind: str, key: str) -> float:
        """When the record was last written (0 when it is gone)."""
        try:
            return self._ref(kind, key).stat().st_mtime
        except OSError:
            return 0.0

    def refs(self, kind: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """(key, value) of every record of `kind`; value None when damaged."""
        d = self.area("refs") / _checked(kind, "kind")
        with contextlib.suppress(FileNotFoundError):
            for p in sorted(d.glob("*.json")):
                yield p.stem, self.get_ref(kind, p.stem)

    # --- entries ---
    def get(self, kind: str, key: str, *, touch: bool = True) -> Entry | None:
        """The entry, verified; None if absent or damaged. A pure read: it never evicts
        (the next `ensure` replaces a damaged entry under the key's lock)."""
        entry, problem = self._read(kind, key)
        if problem:
            self._on_problem(f"cache: {kind}/{key} is damaged ({problem}); rebuilding it")
            return None
        if entry is not None and touch:
            with contextlib.suppress(OSError):  # evicted meanwhile: still a valid read
                os.utime(entry.path / META)
        return entry

    def _read(self, kind: str, key: str, *, full: bool = False
              ) -> tuple[Entry | None, str | None]:
        path = self._entry_dir(kind, key)
        try:
            raw = (path / META).read_bytes()
        except FileNotFoundError:
            return None, ("meta.json is missing" if path.is_dir() else None)
        except OSError as err:
            return None, f"meta.json is unreadable: {err.strerror}"
        try:
            meta = json.loads(raw)
        except ValueError:
            return None, "meta.json is not JSON"
        problem = meta_problem(meta, kind, key)
        entry = Entry(kind, key, path, meta if isinstance(meta, dict) else {})
        return entry, problem or self._check_files(entry, full=full)

    def _check_files(self, entry: Entry, *, full: bool) -> str | None:
        for name, rec in entry.meta["files"].items():
            p = entry.path / name
            try:
                st = p.stat()
            except FileNotFoundError:
                return f"{name} is missing"
            if st.st_size != rec["size"]:
                return f"{name} is {st.st_size} bytes, {rec['size']} expected"
            unchanged = not full and _fingerprint(st) == rec["stat"]
            try:
                if not unchanged and _hash_file(p) != rec["xxh3_128"]:
                    return f"{name} content does not match its xxh3-128"
            except FileNotFoundError:
                return f"{name} is missing"
        return None

    def ensure(
        self,
        kind: str,
        key: str,
        build: Callable[[Path], Mapping[str, Any]],
        *,
        keep: Callable[[str], bool] = lambda name: True,
    ) -> tuple[Entry, bool]:
        """The entry for (kind, key), building it once if needed. Returns (entry, built).

        `build(workdir)` writes the entry's files into `workdir` and returns extra
        metadata; files for which `keep(name)` is false are dropped before commit."""
        found = self.get(kind, key)
        if found:
            return found, False
        with self.lock(f"{kind}-{key}", what=f"{kind} {key}"):
            found, problem = self._read(kind, key)
            if found and not problem:
                return found, False
            self._evict(self._entry_dir(kind, key))  # damaged, and we hold its lock
            self._sweep_tmp(held=f"{kind}-{key}")
            work = self.area("tmp") / f"{kind}-{key}.{os.getpid()}.{os.urandom(4).hex()}"
            try:
                work.mkdir(parents=True)
                meta = self._build(kind, key, work, build, keep)
                final = self._entry_dir(kind, key)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(work, final)
            except BaseException as err:
                import shutil

                shutil.rmtree(work, ignore_errors=True)
                if isinstance(err, OSError):
                    raise self._storage(err, self.root) from None
                raise
            return Entry(kind, key, final, meta), True

    def _build(self, kind: str, key: str, work: Path,
               build: Callable[[Path], Mapping[str, Any]],
               keep: Callable[[str], bool]) -> dict[str, Any]:
        extra = dict(build(work))
        files: dict[str, Any] = {}
        for p in sorted(work.iterdir()):
            if not keep(p.name) or not p.is_file() or p.is_symlink():
                _remove(p)
                continue
            with open(p, "rb") as f:
                os.fsync(f.fileno())
            st = p.stat()
            files[p.name] = {"size": st.st_size, "xxh3_128": _hash_file(p),
                             "stat": _fingerprint(st)}
        if not files:
            raise UserError(f"cache: building {kind}/{key} produced no file to keep")
        meta = {**extra, "kind": kind, "key": key, "created": time.time(), "files": files}
        (work / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
        return meta

    def entries(self, kind: str | None = None) -> Iterator[tuple[Entry, str | None]]:
        """Every entry with its problem (None when sound by its stat fingerprints)."""
        base = self.area("objects")
        try:
            kinds = [kind] if kind else sorted(p.name for p in base.iterdir())
        except FileNotFoundError:
            return
        for k in kinds:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for p in sorted((base / k).iterdir()):
                    if not _NAME.match(p.name):
                        continue
                    entry, problem = self._read(k, p.name)
                    yield entry or Entry(k, p.name, p, {}), problem

    def remove(self, entry: Entry) -> None:
        with self.lock(f"{entry.kind}-{entry.key}", what=f"{entry.kind} {entry.key}"):
            self._evict(entry.path)

    def _evict(self, path: Path) -> None:
        if not path.exists():
            return
        # Rename first so nobody ever reads a half-deleted entry.
        grave = self.area("tmp") / f"evicted-{path.name}.{os.getpid()}.{os.urandom(4).hex()}"
        grave.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, grave)
        import shutil

        shutil.rmtree(grave, ignore_errors=True)

    def verify(self) -> tuple[int, list[tuple[str, str]]]:
        """Re-hash every file of every entry and check every record. Evicts what is
        bad. Returns (how many were checked, [(name, problem)])."""
        bad: list[tuple[str, str]] = []
        checked = 0
        for e, _ in list(self.entries()):
            checked += 1
            with self.lock(f"{e.kind}-{e.key}", what=f"{e.kind} {e.key}"):
                _, problem = self._read(e.kind, e.key, full=True)
                if problem:
                    bad.append((f"{e.kind}/{e.key}", problem))
                    self._evict(e.path)
        contexts = self.area("contexts")
        for d in sorted(contexts.iterdir()) if contexts.is_dir() else []:
            checked += 1
            if d.is_dir() and _dir_digest(d) != d.name.rsplit("-", 1)[-1]:
                bad.append((f"context {d.name}", "its files do not match its name"))
                self._evict(d)
        refs = self.area("refs")
        for p in sorted(refs.glob("*/*.json")) if refs.is_dir() else []:
            checked += 1
            if self.get_ref(p.parent.name, p.stem) is None:
                bad.append((f"record {p.parent.name}/{p.stem}", "checksum does not match"))
                p.unlink(missing_ok=True)
        return checked, bad

    def gc(
        self, *, max_bytes: int | None = None, max_age_seconds: float | None = None,
        now: float | None = None, keep: Iterable[Path] = (),
    ) -> list[Removed]:
        """Drop what was unused for longer than the age budget (entries, records,
        assembled contexts, doit databases), then the least recently used of them until
        the cache fits the size budget; sweep abandoned temp work in every area. Agents'
        state (logins) is never dropped; nor is anything in `keep` (e.g. the running
        command's own doit database)."""
        now = time.time() if now is None else now
        kept = {p.resolve() for p in keep}
        removed = self._sweep_tmp()
        items: list[tuple[float, str, Path, int, Entry | None]] = []
        for e, problem in self.entries():
            if problem:
                self.remove(e)
                removed.append(Removed("objects", f"{e.kind}/{e.key}", e.size))
            else:
                items.append((e.last_used, "objects", e.path, _du(e.path), e))
        items += [(mtime, area, p, size, None) for mtime, area, p, size in self._records()
                  if p.resolve() not in kept]
        items.sort(key=lambda item: item[0])
        total = sum(self.usage().get(a, 0) for a in AREAS if a not in ("state", "locks"))
        for used, area, path, size, entry in items:
            old = max_age_seconds is not None and now - used > max_age_seconds
            over = max_bytes is not None and total > max_bytes
            if not (old or over):
                continue
            if entry is not None:
                self.remove(entry)
                removed.append(Removed(area, f"{entry.kind}/{entry.key}", size))
            else:
                with contextlib.suppress(OSError):
                    _remove(path)
                    removed.append(Removed(area, str(path.relative_to(self.area(area))), size))
            total -= size
        locks = self.area("locks")
        for p in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
            remove_free(p)  # recreated by the next user of its key; a held one stays
        return removed

    def _records(self) -> Iterator[tuple[float, str, Path, int]]:
        """(last used, area, path, size) of everything that can be recomputed: records,
        doit databases and assembled build contexts."""
        contexts = self.area("contexts")
        for d in sorted(contexts.iterdir()) if contexts.is_dir() else []:
            with contextlib.suppress(OSError):
                if d.is_dir():
                    yield d.stat().st_mtime, "contexts", d, _du(d)
        for area in (*_RECORD_AREAS, "doit"):
            base = self.area(area)
            for p in sorted(base.rglob("*")) if base.is_dir() else []:
                with contextlib.suppress(OSError):
                    st = p.lstat()
                    if p.is_file():
                        yield st.st_mtime, area, p, st.st_size

    def _sweep_tmp(self, held: str | None = None) -> list[Removed]:
        """Remove work left by processes that died (SIGKILL, power loss): a temp dir of
        the key whose lock we hold, or one whose lock nobody holds and whose writer is
        gone; and `write_atomic` temp files of dead writers in every area."""
        removed: list[Removed] = []
        tmp = self.area("tmp")
        for p in sorted(tmp.iterdir()) if tmp.is_dir() else []:
            owner, _, rest = p.name.partition(".")
            if owner != held:
                if _NAME.match(owner) and is_locked(self.lock_path(owner)):
                    continue
                pid = rest.split(".", 1)[0]
                if pid.isdigit() and pid_alive(int(pid)):
                    continue
            removed.append(Removed("tmp", p.name, _du(p)))
            _remove(p)
        if held is None:
            for area in AREAS:
                base = self.area(area)
                if area in ("objects", "tmp") or not base.is_dir():
                    continue
                for p in base.rglob(".*.tmp"):
                    if stale_temp(p.name):
                        removed.append(Removed(area, p.name, _du(p)))
                        p.unlink(missing_ok=True)
        return removed

    # --- assembled directories (build contexts made from files we ship) ---
    def assembled(self, prefix: str, files: Mapping[str, tuple[bytes, int]]) -> Path:
        """A directory under contexts/ holding exactly `files` (name -> (content, mode)),
        named by their hash. Reused while what is in it still hashes to its name (a
        damaged one is replaced); made in tmp/ and renamed in, so never seen half-made."""
        digest = _files_digest((n, data, mode) for n, (data, mode) in sorted(files.items()))
        target = self.area("contexts") / f"{_checked(prefix, 'prefix')}-{digest}"
        if target.is_dir():
            if _dir_digest(target) == digest:
                with contextlib.suppress(OSError):
                    os.utime(target)  # in use: gc keeps it
                return target
            self._on_problem(f"cache: {target.name} is damaged; making it again")
            with contextlib.suppress(OSError):
                self._evict(target)
        work = self.area("tmp") / f"contexts.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            work.mkdir(parents=True)
            for name, (data, mode) in files.items():
                (work / name).write_bytes(data)
                os.chmod(work / name, mode)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(work, target)
        except OSError as err:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            if not (target.is_dir() and _dir_digest(target) == digest):  # another process?
                mapped = self._storage(err, target.parent)
                if isinstance(mapped, StorageError) and mapped.read_only:
                    self._on_problem(f"{mapped}; assembling {target.name} for this run only")
                    return _for_this_run(target.name, files)
                raise mapped from None
        return target

    def usage(self) -> dict[str, int]:
        """Bytes used by each area."""
        return {a: _du(self.area(a)) for a in AREAS if self.area(a).exists()}


_RUN_DIRS = "bot-bottle-assembled"


def _for_this_run(name: str, files: Mapping[str, tuple[bytes, int]]) -> Path:
    """`files` as the directory `name` in a directory of this process under the temp dir,
    removed when the process exits (a cache it cannot write has no room for it). One that a
    killed process left is removed by the next that makes one."""
    import atexit
    import shutil
    import tempfile

    tmp = Path(tempfile.gettempdir())
    for p in tmp.glob(f"{_RUN_DIRS}.*"):
        pid = p.name.split(".")[1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
    base = Path(tempfile.mkdtemp(prefix=f"{_RUN_DIRS}.{os.getpid()}.", dir=tmp))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    target = base / name
    target.mkdir()
    for n, (data, mode) in files.items():
        (target / n).write_bytes(data)
        os.chmod(target / n, mode)
    return target


def _files_digest(files: Iterable[tuple[str, bytes, int]]) -> str:
    h = xxhash.xxh3_128()
    for name, data, mode in files:
        h.update(os.fsencode(name) + b"\0" + f"{mode & 0o777:o}".encode() + b"\0")
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def _dir_digest(path: Path) -> str | None:
    """The digest of what an assembled directory holds now (None: unreadable)."""
    try:
        entries = sorted(path.iterdir())
        return _files_digest((p.name, p.read_bytes(), p.stat().st_mode) for p in entries)
    except OSError:
        return None


def _du(path: Path) -> int:
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        import shutil

        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _hash_file(path: Path) -> str:
    from cache.digest import hash_file  # here: a run that hashes no entry need not load it

    return hash_file(path)


def check_root(root: Path) -> None:
    """One clear line when the cache root cannot be a directory we write."""
    if not root.is_absolute():
        # Relative to where bottle happens to run, each directory would get a cache.
        raise StorageError(f"cache: {root} is not an absolute path (check BOTTLE_CACHE_DIR)")
    if root.exists() and not root.is_dir():
        raise StorageError(f"cache: {root} is not a directory (check BOTTLE_CACHE_DIR)")
