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
    assert lines[-1].startswith("3 files, 0 image records; ")
    data = json.loads(bottle("cache_list", "--json", cwd=tmp_path).stdout)
    assert sorted(d["size"] for d in data["entries"]) == [1000, 2000, 3000]
    assert data["areas"]["objects"] >= 6000


def test_list_shows_the_images_the_cache_records(_private_cache: Path, tmp_path: Path) -> None:
    """An image lives in the engine; its record (context digest -> image) is the cache's,
    and the listing shows it, with a key column as wide as the keys."""
    store = fill(_private_cache)
    key = "af3964fe49fcf3524d60e0ff484a0b87"
    store.put_ref("context", key, {"image_id": "sha256:" + "e" * 64, "tag": "bot-bottle/x:1"})
    r = bottle("cache_list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("image "))
    assert row.split()[:4] == ["image", key, "in", "engine"]
    assert "bot-bottle/x:1 (eeeeeeeeeeee)" in row
    assert r.stdout.splitlines()[-1].startswith("3 files, 1 image record; ")
    data = json.loads(bottle("cache_list", "--json", cwd=tmp_path).stdout)
    image = next(d for d in data["entries"] if d["kind"] == "image")
    assert image["key"] == key and image["size"] is None and image["source"] == "bot-bottle/x:1"


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


def _egress_record(store: Store, workspace: Path) -> None:
    area = store.area("egress")
    area.mkdir(parents=True, exist_ok=True)
    log = ("1795314253.574 TCP_MISS 200 GET allowed.test 80 -\n"
           "1795314253.600 TCP_DENIED 403 GET denied.test 80 ERR_ACCESS_DENIED\n")
    (area / "1-a.json").write_text(json.dumps({
        "workspace": str(workspace.resolve()), "at": time.time(), "mode": "allow-list",
        "log": log}))


def test_egress_without_a_record_still_answers_json(_private_cache: Path,
                                                     tmp_path: Path) -> None:
    r = bottle("egress", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"workspace": str(tmp_path.resolve()), "recorded": False,
                                    "allow_list": []}
    assert "no launch with network = egress recorded" in r.stderr


def test_egress_record_shown_and_written(_private_cache: Path, tmp_path: Path) -> None:
    _egress_record(Store(_private_cache), tmp_path)
    data = json.loads(bottle("egress", "--json", cwd=tmp_path).stdout)
    assert data["recorded"] is True and data["allow_list"] == ["allowed.test"]
    out = tmp_path / "allow.toml"
    r = bottle("egress", "--write", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.read_text().endswith('egress = ["allowed.test"]\n')


def test_egress_write_to_an_unwritable_place_is_one_line(_private_cache: Path,
                                                          tmp_path: Path) -> None:
    _egress_record(Store(_private_cache), tmp_path)
    target = tmp_path / "no-such-dir" / "allow.toml"
    r = bottle("egress", "--write", str(target), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1] == (
        f"bottle: error: cannot write the allow-list to {target}: No such file or directory")


def test_a_full_disk_is_one_warning_and_leaves_no_empty_state_file(tmp_path: Path,
                                                                   small_tmpfs: Path) -> None:
    """A cache on a full file system: the task does its job, says in one line that its
    state is not kept, exits 0, and leaves no empty state file behind (a run once left
    doit's traceback, exit 3 and a 0-byte file set aside as damaged on every run after)."""
    from tests.conftest import fill_up

    disk = small_tmpfs
    env = {"BOTTLE_CACHE_DIR": str(disk / "cache")}
    fill = fill_up(disk)
    for _ in range(2):
        r = bottle("cache_list", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stderr.splitlines()[-1].startswith(
            f"bottle: warning: cannot save task state in {disk / 'cache' / 'doit'} "
            "(database or disk is full)"), r.stderr
        assert "Traceback" not in r.stderr and "corrupted" not in r.stderr
        assert [p.name for p in (disk / "cache" / "doit").iterdir()] == []
    fill.unlink()
    r = bottle("cache_list", cwd=tmp_path, env=env)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    (state,) = (disk / "cache" / "doit").iterdir()
    assert state.suffix == ".sqlite3" and state.stat().st_size > 0
