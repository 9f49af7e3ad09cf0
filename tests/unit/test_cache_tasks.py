"""`bottle cache_list`, `cache_verify` and `cache_gc` as a user runs them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cache.store import Store
from tests.helpers import bottle


def fill(root: Path) -> Store:
    store = Store(root)
    for i, (age_days, size) in enumerate([(40, 3000), (2, 2000), (1, 1000)]):
        e, _ = store.ensure("smolmachine", f"{i:016x}",
                            lambda w, n=size: (w / "a.smolmachine").write_bytes(b"x" * n)
                            and {"source_image": f"img:{n}"})
        t = time.time() - age_days * 86400
        os.utime(e.path / "meta.json", (t, t))
    return store


def test_list_table_and_json(_private_cache: Path, tmp_path: Path) -> None:
    fill(_private_cache)
    r = bottle("cache_list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["KIND", "KEY", "SIZE", "LAST", "USED", "SOURCE"]
    assert "0000000000000000" in r.stdout and "img:3000" in r.stdout
    assert lines[-1].startswith("3 entries, 5.9 KB in ")
    data = json.loads(bottle("cache_list", "--json", cwd=tmp_path).stdout)
    assert sorted(d["size"] for d in data) == [1000, 2000, 3000]


def test_verify_reports_and_fails_on_damage(_private_cache: Path, tmp_path: Path) -> None:
    store = fill(_private_cache)
    assert bottle("cache_verify", cwd=tmp_path).returncode == 0
    victim = next(store.entries())
    f = victim.file("a.smolmachine")
    f.write_bytes(b"y" * f.stat().st_size)
    r = bottle("cache_verify", cwd=tmp_path)
    assert r.returncode == 1
    assert f"smolmachine/{victim.key}: a.smolmachine content does not match" in r.stderr
    assert "2 of 3 entries ok" in r.stderr
    assert bottle("cache_verify", cwd=tmp_path).returncode == 0  # evicted: clean again


def test_gc_budgets(_private_cache: Path, tmp_path: Path) -> None:
    fill(_private_cache)
    r = bottle("cache_gc", "--max-age", "30d", "--max-size", "1500", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "removed 2 entries" in r.stderr
    assert [e.key for e in Store(_private_cache).entries()] == [f"{2:016x}"]
    bad = bottle("cache_gc", "--max-size", "lots", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "bottle: error: bad size 'lots' (e.g. 500M, 20G)")
