"""The stat index of a build context: what the last digest saw, one record per directory.

A record holds the directory's entry names as the system listed them, one flag byte
per name (sent, walked into, held, racy, and the entry's file type), and for each
entry that carries content (sent, or walked into) its stat key and its content (a
file's xxh3-128, a link's target, a device's numbers, nothing for a directory). A
directory whose listing, keys and types still match its record needs neither the
`.dockerignore` matcher nor a read: when all of them match, the digest is the stored
one. The records are compared as whole byte strings, so the warm path does no
per-file work in Python beyond one `stat`.

On disk: `MAGIC`, the version, the length of a JSON header, an xxh3-64 of everything
after it, the header, then the records. A file that fails any check is not trusted
(the digest then reads every file again and writes a new one); another version is
ignored the same way.
"""

from __future__ import annotations

import json
import stat
import struct
from collections.abc import Iterable, Iterator, Mapping
from itertools import compress, starmap
from operator import attrgetter
from pathlib import Path

import xxhash

from cache.record import dataclass

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a warm run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAGIC = b"BBIX"
VERSION = 3
_HEAD = struct.Struct("<4sHHIQ")  # magic, version, 0, header length, xxh3-64 of the rest
_REC = struct.Struct("<IIIIIQ")  # rel, names count, names bytes, keys count, contents, bytes
KEY = struct.Struct("<qqqQI")  # size, mtime_ns, ctime_ns, inode, mode
KEY_OF = attrgetter("st_size", "st_mtime_ns", "st_ctime_ns", "st_ino", "st_mode")

# Flag byte per name: the low nibble below, the high one the file type (S_IFMT >> 12).
SENT = 1  # some builder sends it
WALK = 2  # the walk goes into it (a directory)
HELD = 4  # excluded, but a sent path lies below it: hashed too
RACY = 8  # its stat was too close to the walk to prove a later change would show


def _table(test: Any) -> bytes:
    return bytes(1 if test(f) else 0 for f in range(256))


def _fmt(flag: int) -> int:
    return (flag >> 4) << 12


def carries_content(flag: int) -> bool:
    """Entries with a key and a content in the record: sent ones (sockets never are) and
    those walked into (they may turn out held)."""
    return bool(flag & WALK) or (bool(flag & SENT) and _fmt(flag) != stat.S_IFSOCK)


def found(flag: int) -> bool:
    """Entries the digest covers."""
    return bool(flag & HELD) or (bool(flag & SENT) and _fmt(flag) != stat.S_IFSOCK)


CARRIES = _table(carries_content)
OTHERS = _table(lambda f: not carries_content(f))
WALKS = _table(lambda f: f & WALK)
RACIES = _table(lambda f: f & RACY)
FOUND = _table(found)
TYPE_NIBBLE = bytes(range(256)).translate(bytes(f >> 4 for f in range(256)))


def flag_of(mode: int, bits: int) -> int:
    return (stat.S_IFMT(mode) >> 12) << 4 | bits


class DamagedIndex(ValueError):
    """The index file is not a sound one of ours (damaged, truncated, another version)."""


class DirRecord:
    """One directory as the last walk saw it. `names` is the listing joined by NUL
    (encoded with surrogateescape); `keys` and `contents` follow the names that carry
    content, in listing order; `size` is the bytes of its found regular files."""

    __slots__ = ("_types", "carries", "contents", "flags", "keys", "names",
                 "rel", "size", "walks")

    def __init__(self, rel: str, names: bytes, flags: bytes, keys: bytes, contents: bytes,
                 size: int) -> None:
        self.rel, self.names, self.flags, self.keys = rel, names, flags, keys
        self.contents, self.size = contents, size
        self.carries = flags.translate(CARRIES)  # masks for itertools.compress
        self.walks = flags.translate(WALKS)
        self._types: bytes | None = None

    @classmethod
    def build(cls, rel: str, names: list[str], flags: bytes,
              keys: list[tuple[int, int, int, int, int]], contents: list[str],
              size: int) -> DirRecord:
        return cls(rel, _enc("\0".join(names)), flags,
                   b"".join(starmap(KEY.pack, keys)), _enc("\0".join(contents)), size)

    @property
    def count(self) -> int:
        return len(self.flags)

    @property
    def racy(self) -> bool:
        return 1 in self.flags.translate(RACIES)

    def other_types(self) -> bytes:
        """The file-type nibbles of the names that carry no content, in listing order."""
        if self._types is None:
            self._types = bytes(compress(self.flags, self.flags.translate(OTHERS))
                                ).translate(TYPE_NIBBLE)
        return self._types

    @property
    def others(self) -> bytes:
        return self.flags.translate(OTHERS)

    def name_list(self) -> list[str]:
        return self.names.decode("utf-8", "surrogateescape").split("\0") if self.flags else []

    def key_list(self) -> list[tuple[int, int, int, int, int]]:
        return list(KEY.iter_unpack(self.keys))

    def content_list(self) -> list[str]:
        if not self.keys:
            return []
        return self.contents.decode("utf-8", "surrogateescape").split("\0")

    def entries(self) -> Iterator[tuple[str, int, tuple[int, int, int, int, int] | None,
                                        str | None]]:
        """(name, flag, key, content) per name; key and content None where it carries none."""
        keys = iter(self.key_list())
        contents = iter(self.content_list())
        for name, flag in zip(self.name_list(), self.flags, strict=True):
            if CARRIES[flag]:
                yield name, flag, next(keys), next(contents)
            else:
                yield name, flag, None, None

    def found_count(self) -> int:
        return self.flags.translate(FOUND).count(1)

    def check(self) -> None:
        """Raise `DamagedIndex` unless the parts agree with each other."""
        n = self.count
        if self.names.count(b"\0") != max(n - 1, 0) or (not n and self.names):
            raise DamagedIndex(f"{self.rel!r}: names")
        carried = self.carries.count(1)
        if len(self.keys) != carried * KEY.size:
            raise DamagedIndex(f"{self.rel!r}: keys")
        if (self.contents.count(b"\0") + 1 if carried else 0) != carried or (
                not carried and self.contents):
            raise DamagedIndex(f"{self.rel!r}: contents")


@dataclass
class Index:
    """What one digest of a context saw: its header (digest, inputs) and its records."""

    meta: dict[str, Any]
    dirs: Mapping[str, DirRecord]


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def pack(meta: dict[str, Any], records: Iterable[DirRecord]) -> bytes:
    head = json.dumps(meta, sort_keys=True).encode()
    parts: list[bytes] = [head]
    for r in records:
        rel = _enc(r.rel)
        parts += [_REC.pack(len(rel), r.count, len(r.names), len(r.keys) // KEY.size,
                            len(r.contents), r.size),
                  rel, r.names, r.flags, r.keys, r.contents]
    body = b"".join(parts)
    return _HEAD.pack(MAGIC, VERSION, 0, len(head), xxhash.xxh3_64_intdigest(body)) + body


def unpack(data: bytes) -> Index:
    """The index in `data`; raises `DamagedIndex` when it is not a sound one of ours."""
    if len(data) < _HEAD.size:
        raise DamagedIndex("truncated")
    magic, version, _zero, head_len, check = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise DamagedIndex("another format")
    view = memoryview(data)[_HEAD.size:]
    if xxhash.xxh3_64_intdigest(view) != check:
        raise DamagedIndex("checksum")
    try:
        meta = json.loads(bytes(view[:head_len]))
    except ValueError:
        raise DamagedIndex("header") from None
    if not isinstance(meta, dict):
        raise DamagedIndex("header")
    return Index(meta, Records(view, head_len))


class Records(Mapping[str, "DirRecord"]):
    """rel -> DirRecord of an unpacked index. The record boundaries are read at once (a
    file that does not split into whole records is damaged); each record is copied out
    and checked when first asked for, so a process that walks half the context (see
    cache.digest's second process) pays for that half. A record that fails its check
    raises `DamagedIndex` then, which the walk answers as it answers a damaged file."""

    def __init__(self, view: memoryview, at: int) -> None:
        self._view = view
        self._where: dict[str, tuple[int, int, int, int, int, int]] = {}
        self._made: dict[str, DirRecord] = {}
        end = len(view)
        while at < end:
            if at + _REC.size > end:
                raise DamagedIndex("truncated record")
            rel_len, count, names_len, keys, contents_len, size = _REC.unpack_from(view, at)
            at += _REC.size
            start = at
            at += rel_len + names_len + count + keys * KEY.size + contents_len
            if at > end:
                raise DamagedIndex("truncated record")
            rel = bytes(view[start:start + rel_len]).decode("utf-8", "surrogateescape")
            self._where[rel] = (start + rel_len, names_len, count, keys * KEY.size,
                                contents_len, size)

    def __getitem__(self, rel: str) -> DirRecord:
        made = self._made.get(rel)
        if made is not None:
            return made
        at, *lengths, size = self._where[rel]
        parts = []
        for n in lengths:
            parts.append(bytes(self._view[at:at + n]))
            at += n
        rec = DirRecord(rel, parts[0], parts[1], parts[2], parts[3], size)
        rec.check()
        self._made[rel] = rec
        return rec

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def load(path: Path) -> Index | None:
    """The index at `path`, or None when there is none we can trust."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return unpack(data)
    except DamagedIndex:
        return None
