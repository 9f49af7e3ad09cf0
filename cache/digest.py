"""The context digest: xxh3-128 over what `docker build` would receive, plus its inputs.

Covers the Dockerfile (wherever it lives), every context path `.dockerignore` lets
through (path, type, permission bits, content or link target), the build args and
the target. Same digest -> same build inputs -> no `docker build`.

A stat index (like git's) keeps each file's hash beside its (size, mtime, ctime,
inode); a file whose stat is unchanged is not read again. Files modified within
`RACY_NS` of the walk are never trusted from the index (their mtime may not move
on a second write in the same tick).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from cache.atomic import write_atomic
from cache.dockerignore import ContextFilter, State, dockerfile_ignore
from cache.errors import UserError
from cache.goregexp import as_bytes

RACY_NS = 2_000_000_000
_CHUNK = 1 << 20
_VERSION = 2


def hash_file(path: Path | str) -> str:
    """xxh3-128 of a file's bytes, hex."""
    h = xxhash.xxh3_128()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ContextDigest:
    """The digest and what changed since the last one computed for this context."""

    hexdigest: str
    files: int
    bytes: int
    hashed: int
    changed: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return self.hexdigest[:16]


def _walk(context: Path, rules: ContextFilter) -> list[tuple[str, os.stat_result]]:
    """The context paths any builder sends (see cache.dockerignore), sorted, with lstat.
    Sockets are never sent (Docker's tar writer cannot hold them)."""
    found: list[tuple[str, os.stat_result]] = []
    held: dict[str, os.stat_result] = {}  # excluded dirs walked into for re-included paths
    stack: list[tuple[str, State | None]] = [("", None if rules.everything else rules.root)]
    root = str(context)
    while stack:
        rel_dir, state = stack.pop()
        for entry in _entries(f"{root}/{rel_dir}" if rel_dir else root):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if state is None:
                sent, inner = True, None
            else:
                sent, inner = rules.enter(rel, state, is_dir=is_dir)
            if sent and not stat.S_ISSOCK(st.st_mode):
                found.append((rel, st))
            if is_dir and (inner is not None or (sent and state is None)):
                stack.append((rel, inner))
                if not sent:
                    held[rel] = st
    if held:
        found += _held_parents(found, held)
    found.sort(key=lambda item: item[0])
    return found


def _entries(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except PermissionError:
        raise UserError(f"cannot read {directory}: permission denied "
                        "(docker build fails on it too)") from None


def _held_parents(found: list[tuple[str, os.stat_result]],
                  held: dict[str, os.stat_result]) -> list[tuple[str, os.stat_result]]:
    """Excluded directories above a sent path: BuildKit sends them, the classic daemon
    creates them, so their mode is an input."""
    out: list[tuple[str, os.stat_result]] = []
    for rel, _ in found:
        parent = posixpath.dirname(rel)
        while parent in held:
            out.append((parent, held.pop(parent)))
            parent = posixpath.dirname(parent)
    return out


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISFIFO(mode):
        return "p"  # Docker copies a FIFO as a FIFO; it is never opened
    return "c" if stat.S_ISCHR(mode) else "b"


def _content(context: Path, rel: str, kind: str, st: os.stat_result) -> str:
    if kind == "l":
        return os.readlink(f"{context}/{rel}")
    if kind in "cb":
        return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return ""


def _load_index(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        return {}
    return data


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
    context = context.resolve()
    dockerfile = dockerfile.resolve()
    started = time.time_ns()
    old = _load_index(index_path)
    old_files: dict[str, list[Any]] = old.get("files", {})
    rel_df = os.path.relpath(dockerfile, context)
    rules = ContextFilter.for_context(context, dockerfile)

    h = xxhash.xxh3_128()
    new_files: dict[str, list[Any]] = {}
    total = hashed = 0
    for rel, st in _walk(context, rules):
        kind = _kind(st.st_mode)
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode]
        prev = old_files.get(rel)
        if kind != "f":
            content = _content(context, rel, kind, st)
        elif prev is not None and prev[:5] == key and not prev[6]:
            content = prev[5]
        else:
            content = hash_file(context / rel)
            hashed += 1
        total += st.st_size if kind == "f" else 0
        racy = st.st_mtime_ns >= started - RACY_NS or st.st_ctime_ns >= started - RACY_NS
        new_files[rel] = [*key, content, racy]
        # NUL ends each field: no name or link target can hold one.
        h.update(as_bytes(f"{kind}\0{rel}\0{stat.S_IMODE(st.st_mode):o}\0{content}\0"))

    own_ignore = dockerfile_ignore(dockerfile)
    if own_ignore is not None:  # BuildKit's selection may shrink while the union does not
        h.update(f"dockerfile.dockerignore\0{hash_file(own_ignore)}\0".encode())
    df_hash = hash_file(dockerfile)
    h.update(f"dockerfile\0{df_hash}\n".encode())
    for k in sorted(build_args or {}):
        h.update(f"arg\0{k}\0{(build_args or {})[k]}\n".encode())
    h.update(f"target\0{target or ''}\n".encode())
    digest = h.hexdigest()

    changed = ([] if old.get("digest") == digest else
               _describe_changes(old, old_files, new_files, df_hash, build_args, target,
                                 dockerfile_rel=rel_df))
    if write_index and index_path is not None and (old.get("digest") != digest or hashed):
        with contextlib.suppress(OSError):  # the index only saves work: a full or
            write_atomic(index_path, json.dumps({  # read-only cache just rehashes
                "version": _VERSION, "digest": digest, "dockerfile": df_hash,
                "args": dict(build_args or {}), "target": target, "files": new_files,
            }).encode())
    return ContextDigest(digest, len(new_files), total, hashed, changed)


def _describe_changes(
    old: Mapping[str, Any],
    old_files: Mapping[str, list[Any]],
    new_files: Mapping[str, list[Any]],
    df_hash: str,
    build_args: Mapping[str, str] | None,
    target: str | None,
    *,
    dockerfile_rel: str,
) -> list[str]:
    if not old:
        return ["first build of this context"]
    changes: list[str] = []
    if old.get("dockerfile") != df_hash:
        changes.append("Dockerfile changed")
    if old.get("args") != dict(build_args or {}):
        changes.append("build args changed")
    if old.get("target") != target:
        changes.append("target changed")
    added = sorted(set(new_files) - set(old_files))
    removed = sorted(set(old_files) - set(new_files))
    reported = {dockerfile_rel} if changes and changes[0] == "Dockerfile changed" else set()
    edited = sorted(
        p for p in (set(new_files) & set(old_files)) - reported
        if new_files[p][5] != old_files[p][5] or (new_files[p][4] ^ old_files[p][4]) & 0o7777
    )
    for label, paths in (("added", added), ("removed", removed), ("changed", edited)):
        if paths:
            shown = ", ".join(map(_shown, paths[:3])) + (
                f" and {len(paths) - 3} more" if len(paths) > 3 else "")
            changes.append(f"{label}: {shown}")
    return changes


def _shown(name: str) -> str:
    """A name fit for one line of a terminal (newlines, bytes that are not UTF-8)."""
    return name if name.isprintable() else ascii(name)
