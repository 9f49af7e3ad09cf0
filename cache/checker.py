"""doit file checker on xxh3-128 (plugged in through DOIT_CONFIG['check_file_uptodate']).

Like doit's MD5 checker it trusts an unchanged mtime, and a changed size means
changed; otherwise the content decides, so a touched-but-identical file is no change.
"""

from __future__ import annotations

import os

from doit.dependency import FileChangedChecker

from cache.digest import hash_file

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a warm run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class XXHChecker(FileChangedChecker):  # type: ignore[misc]
    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        mtime, size, digest = state
        if file_stat.st_mtime == mtime:
            return False
        if file_stat.st_size != size:
            return True
        return bool(digest != hash_file(file_path))

    def get_state(self, dep: str, current_state: Any) -> tuple[float, int, str] | None:
        st = os.stat(dep)
        if current_state and current_state[0] == st.st_mtime:
            return None
        return st.st_mtime, st.st_size, hash_file(dep)
