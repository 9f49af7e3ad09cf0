"""The doit file checker on xxh3-128."""

from __future__ import annotations

import os
from pathlib import Path

from cache.checker import XXHChecker


def test_touch_is_not_a_change_but_an_edit_is(tmp_path: Path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text("FROM scratch\n")
    c = XXHChecker()
    state = c.get_state(str(f), None)
    assert state is not None
    assert not c.check_modified(str(f), f.stat(), state)
    os.utime(f, (1, 1))
    assert not c.check_modified(str(f), f.stat(), state)  # same bytes
    f.write_text("FROM scratch\n\n")
    assert c.check_modified(str(f), f.stat(), state)  # size changed
    f.write_text("FROM scrath\n")
    os.utime(f, (2, 2))
    assert c.check_modified(str(f), f.stat(), state)  # same size, other bytes
    assert c.get_state(str(f), c.get_state(str(f), None)) is None  # unchanged mtime: no rehash
