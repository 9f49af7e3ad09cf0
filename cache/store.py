"""The one class that writes the cache.

Layout under the cache root:
    objects/<kind>/<key>/     complete entries: their files plus meta.json
    tmp/<kind>-<key>.*        work in progress (never read; swept under the key's lock)
    locks/<kind>-<key>.lock   flock per key
    refs/<kind>/<key>.json    small records (e.g. context digest -> image id)

An entry is built in a temp dir beside its final place and renamed in, so a reader
sees all of it or none. `ensure` checks, takes the key's lock, checks again (another
process may have finished the work meanwhile), builds, renames. Reads verify each
file against the size and xxh3-128 recorded at commit: a stat fingerprint says when
re-hashing can be skipped; a mismatch is reported, the entry evicted and rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache.atomic import write_atomic
from cache.digest import hash_file
from cache.lock import is_locked, locked, pid_alive

META = "meta.json"


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
        return sum(int(f["size"]) for f in self.meta["files"].values())

    @property
    def last_used(self) -> float:
        try:
            return (self.path / META).stat().st_mtime
        except FileNotFoundError:
            return 0.0


class CorruptEntry(Exception):
    pass


def _fingerprint(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    # --- paths ---
    def _entry_dir(self, kind: str, key: str) -> Path:
        return self.root / "objects" / kind / key

    def _lock(self, kind: str, key: str) -> Path:
        return self.root / "locks" / f"{kind}-{key}.lock"

    def _ref(self, kind: str, key: str) -> Path:
        return self.root / "refs" / kind / f"{key}.json"

    # --- refs: small atomic records ---
    def get_ref(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._ref(kind, key).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put_ref(self, kind: str, key: str, value: Mapping[str, Any]) -> None:
        write_atomic(self._ref(kind, key), json.dumps(dict(value), sort_keys=True).encode())

    # --- entries ---
    def get(self, kind: str, key: str, *, touch: bool = True) -> Entry | None:
        """The entry, verified; None if absent or corrupt (a corrupt one is evicted)."""
        path = self._entry_dir(kind, key)
        try:
            meta = json.loads((path / META).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            meta = None
        entry = Entry(kind, key, path, meta or {})
        problem = "unreadable meta.json" if meta is None else self._check(entry, full=False)
        if problem:
            print(f"cache: {kind}/{key} is corrupt ({problem}); rebuilding it", file=sys.stderr)
            with locked(self._lock(kind, key), what=f"{kind} {key}"):
                self._evict(path)
            return None
        if touch:
            os.utime(path / META)
        return entry

    def _check(self, entry: Entry, *, full: bool) -> str | None:
        for name, rec in entry.meta.get("files", {}).items():
            p = entry.path / name
            try:
                st = p.stat()
            except FileNotFoundError:
                return f"{name} is missing"
            if st.st_size != rec["size"]:
                return f"{name} is {st.st_size} bytes, {rec['size']} expected"
            unchanged = not full and _fingerprint(st) == rec["stat"]
            if not unchanged and hash_file(p) != rec["xxh3_128"]:
                return f"{name} content does not match its xxh3-128"
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
        metadata; files for which `keep(name)` is false are dropped before commit.
        """
        found = self.get(kind, key)
        if found:
            return found, False
        with locked(self._lock(kind, key), what=f"{kind} {key}"):
            found = self.get(kind, key)
            if found:
                return found, False
            self._sweep_tmp(held=f"{kind}-{key}")
            work = self.root / "tmp" / f"{kind}-{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            work.mkdir(parents=True)
            try:
                extra = dict(build(work))
                files: dict[str, Any] = {}
                for p in sorted(work.iterdir()):
                    if not keep(p.name) or not p.is_file():
                        _remove(p)
                        continue
                    with open(p, "rb") as f:
                        os.fsync(f.fileno())
                    files[p.name] = {
                        "size": p.stat().st_size, "xxh3_128": hash_file(p),
                        "stat": _fingerprint(p.stat()),
                    }
                meta = {"kind": kind, "key": key, "created": time.time(), "files": files, **extra}
                (work / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
                final = self._entry_dir(kind, key)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(work, final)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            return Entry(kind, key, final, meta), True

    def entries(self, kind: str | None = None) -> Iterator[Entry]:
        base = self.root / "objects"
        kinds = [kind] if kind else sorted(p.name for p in base.iterdir()) if base.is_dir() else []
        for k in kinds:
            d = base / k
            if not d.is_dir():
                continue
            for p in sorted(d.iterdir()):
                try:
                    meta = json.loads((p / META).read_bytes())
                except (OSError, ValueError):
                    meta = {"files": {}, "corrupt": True}
                yield Entry(k, p.name, p, meta)

    def remove(self, entry: Entry) -> None:
        with locked(self._lock(entry.kind, entry.key), what=f"{entry.kind} {entry.key}"):
            self._evict(entry.path)

    def _evict(self, path: Path) -> None:
        if not path.exists():
            return
        # Rename first so nobody ever reads a half-deleted entry.
        grave = self.root / "tmp" / f"evicted-{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        grave.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, grave)
        shutil.rmtree(grave, ignore_errors=True)

    def verify(self) -> list[tuple[Entry, str]]:
        """Re-hash every file of every entry; evict and return the bad ones."""
        bad: list[tuple[Entry, str]] = []
        for e in list(self.entries()):
            problem = "unreadable meta.json" if e.meta.get("corrupt") else self._check(e, full=True)
            if problem:
                bad.append((e, problem))
                self.remove(e)
        return bad

    def gc(
        self, *, max_bytes: int | None = None, max_age_seconds: float | None = None,
        now: float | None = None,
    ) -> list[Entry]:
        """Drop entries unused for longer than the age budget, then least recently used
        ones until the rest fit the size budget. Also sweeps abandoned temp dirs."""
        now = time.time() if now is None else now
        self._sweep_tmp()
        live = sorted(self.entries(), key=lambda e: e.last_used)
        removed: list[Entry] = []
        if max_age_seconds is not None:
            for e in [e for e in live if now - e.last_used > max_age_seconds]:
                self.remove(e)
                removed.append(e)
                live.remove(e)
        if max_bytes is not None:
            total = sum(e.size for e in live)
            for e in list(live):
                if total <= max_bytes:
                    break
                self.remove(e)
                removed.append(e)
                total -= e.size
        return removed

    def _sweep_tmp(self, held: str | None = None) -> None:
        """Remove work left by processes that died (SIGKILL, power loss): a temp dir of
        the key whose lock we hold, or one whose lock nobody holds and whose writer is gone."""
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return
        for p in tmp.iterdir():
            owner, _, rest = p.name.partition(".")
            if owner != held:
                if is_locked(self.root / "locks" / f"{owner}.lock"):
                    continue
                pid = rest.split(".", 1)[0]
                if pid.isdigit() and pid_alive(int(pid)):
                    continue
            _remove(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)
