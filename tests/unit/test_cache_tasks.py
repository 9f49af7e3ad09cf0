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
    assert lines[-1].startswith("3 entries; ")
    data = json.loads(bottle("cache_list", "--json", cwd=tmp_path).stdout)
    assert sorted(d["size"] for d in data["entries"]) == [1000, 2000, 3000]
    assert data["areas"]["objects"] >= 6000


def test_verify_reports_and_fails_on_damage(_private_cache: Path, tmp_path: Path) -> None:
    store = fill(_private_cache)
    assert bottle("cache_verify", cwd=tmp_path).returncode == 0
    victim = next(store.entries())[0]
    f = victim.file("a.smolmachine")
    f.write_bytes(b"y" * f.stat().st_size)
    r = bottle("cache_verify", cwd=tmp_path)
    assert r.returncode == 1
    assert f"smolmachine/{victim.key}: a.smolmachine content does not match" in r.stderr
    assert "2 of 3 ok" in r.stderr
    assert bottle("cache_verify", cwd=tmp_path).returncode == 0  # evicted: clean again


def test_gc_budgets(_private_cache: Path, tmp_path: Path) -> None:
    fill(_private_cache)
    from cache.store import _du

    newest = _du(_private_cache / "objects" / "smolmachine" / f"{2:016x}")
    r = bottle("cache_gc", "--max-age", "30d", "--max-size", str(newest + 100), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "removed smolmachine/0000000000000000" in r.stderr
    assert "removed smolmachine/0000000000000001" in r.stderr
    assert [e.key for e, _ in Store(_private_cache).entries()] == [f"{2:016x}"]
    bad = bottle("cache_gc", "--max-size", "lots", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "bottle: error: bad size 'lots' (a whole amount such as 500M or 20G)")


def test_gc_refuses_negative_and_infinite_budgets(_private_cache: Path, tmp_path: Path) -> None:
    fill(_private_cache)
    for args in (["--max-size=-1"], ["--max-age=-1d"], ["--max-size", "inf"],
                 ["--max-age", "1e999"], ["--max-size", "nan"]):
        r = bottle("cache_gc", *args, cwd=tmp_path)
        assert r.returncode == 1, args
        assert r.stderr.startswith("bottle: error: bad ") and "Traceback" not in r.stderr
    assert len(list(Store(_private_cache).entries())) == 3  # nothing was deleted


def test_list_and_gc_survive_damaged_metadata(_private_cache: Path, tmp_path: Path) -> None:
    store = fill(_private_cache)
    victim = next(store.entries())[0]
    (victim.path / "meta.json").write_text("{}")
    r = bottle("cache_list", cwd=tmp_path)
    assert r.returncode == 0 and "damaged" in r.stdout, r.stderr
    r = bottle("cache_gc", "--max-age", "", "--max-size", "", cwd=tmp_path)
    assert r.returncode == 0 and f"removed smolmachine/{victim.key}" in r.stderr
