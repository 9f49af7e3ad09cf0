"""The one error type of the cache layer that a user can cause or fix."""

from __future__ import annotations

import errno

# Not `typing.TYPE_CHECKING`: importing typing costs a replayed run more than all of this.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path


def quoted(text: str) -> str:
    """`text` in single quotes, fit for one line of a terminal: a byte that was not UTF-8
    (a surrogate escape from the file system) as `\\xff`, a control character as Python
    escapes it (`\\n`, `\\x07`), a quote or backslash escaped; every other character,
    accented or not, as itself."""
    out = []
    for c in text:
        if "\udc80" <= c <= "\udcff":
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif c in "'\\":
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(ascii(c)[1:-1])
    return "'" + "".join(out) + "'"


def shown(text: str) -> str:
    """`text` as is when every character of it prints, else `quoted`."""
    return text if text.isprintable() else quoted(text)


class UserError(Exception):
    """Bad input or a state the user can fix (a bad .dockerignore pattern, an unusable
    cache root). `str(err)` is the one line shown to the user, never holding a secret.

    The `bottle` layer's errors derive from this one, so one handler at the top turns
    every user-caused failure into one line and a non-zero exit."""


class StorageError(UserError):
    """The cache root cannot be written: full, read-only, or not a directory."""

    def __init__(self, message: str, *, read_only: bool = False) -> None:
        super().__init__(message)
        self.read_only = read_only


_FULL = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def storage_error(err: OSError, where: Path) -> StorageError | None:
    """The one-line error for a failed cache write, or None when `err` is not about
    the storage (a bug, which should keep its traceback)."""
    if err.errno in _FULL:
        return StorageError(f"cache: no space left on the device of {where} "
                            "(free some space, or run `bottle cache_gc`)")
    if err.errno in _READ_ONLY:
        return StorageError(f"cache: cannot write {where}: {(err.strerror or 'denied').lower()}",
                            read_only=True)
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return StorageError(f"cache: {where} is not a directory (check BOTTLE_CACHE_DIR)")
    return None
