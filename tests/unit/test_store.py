"""The store: atomic entries, verification on read, locks across processes, gc, verify."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cache.store import Store


def writer(content: bytes = b"artifact" * 1000) -> Any:
    def build(work: Path) -> dict[str, Any]:
        (work / "a.smolmachine").write_bytes(content)
        (work / "scratch.tar").write_bytes(b"tmp")
        return {"source_image": "img:1"}
    return build


def keep(name: str) -> bool:
    return name.endswith(".smolmachine")


def test_ensure_builds_once_then_hits(tmp_path: Path) -> None:
    store = Store(tmp_path)
    e, built = store.ensure("smolmachine", "k1", writer(), keep=keep)
    assert built and e.file("a.smolmachine").read_bytes().startswith(b"artifact")
    assert not e.file("scratch.tar").exists()  # dropped before commit
    assert e.meta["source_image"] == "img:1" and e.size == 8000
    calls = []
    e2, built2 = store.ensure("smolmachine", "k1", lambda w: calls.append(w) or {}, keep=keep)
    assert not built2 and not calls and e2.path == e.path
    assert not list((tmp_path / "tmp").iterdir())


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)

    def boom(work: Path) -> dict[str, Any]:
        (work / "half").write_bytes(b"x")
        raise RuntimeError("pack failed")

    with pytest.raises(RuntimeError):
        store.ensure("smolmachine", "k", boom)
    assert store.get("smolmachine", "k") is None
    assert not list((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_entry_is_detected_reported_and_rebuilt(tmp_path: Path, damage: str) -> None:
    problems: list[str] = []
    store = Store(tmp_path, on_problem=problems.append)
    e, _ = store.ensure("smolmachine", "k", writer(), keep=keep)
    f = e.file("a.smolmachine")
    if damage == "truncate":
        with open(f, "r+b") as fh:
            fh.truncate(10)
    elif damage == "flip":
        data = bytearray(f.read_bytes())
        data[5] ^= 0xFF
        st = f.stat()
        f.write_bytes(bytes(data))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    else:
        f.unlink()
    assert store.get("smolmachine", "k") is None
    assert problems and "damaged" in problems[0]
    assert e.path.exists()  # a read never evicts: that happens under the key's lock
    e2, built = store.ensure("smolmachine", "k", writer(), keep=keep)
    assert built and e2.file("a.smolmachine").read_bytes().startswith(b"artifact")


def test_verify_rehashes_everything(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure("smolmachine", "good", writer(), keep=keep)
    bad, _ = store.ensure("smolmachine", "bad", writer(), keep=keep)
    meta = json.loads((bad.path / "meta.json").read_text())
    f = bad.file("a.smolmachine")
    st = f.stat()
    f.write_bytes(b"X" * st.st_size)
    # Forge the stat fingerprint too: only a full re-hash can notice now.
    meta["files"]["a.smolmachine"]["stat"] = [f.stat().st_size, f.stat().st_mtime_ns,
                                             f.stat().st_ctime_ns, f.stat().st_ino]
    (bad.path / "meta.json").write_text(json.dumps(meta))
    assert store.get("smolmachine", "bad") is not None  # the fast check trusts the stat
    checked, problems = store.verify()
    assert checked == 2
    assert [(name, "content" in p) for name, p in problems] == [("smolmachine/bad", True)]
    assert [e.key for e, _ in store.entries()] == ["good"]


def test_gc_by_age_then_lru_size(tmp_path: Path) -> None:
    store = Store(tmp_path)
    now = time.time()
    for i, age_days in enumerate([40, 3, 2, 1]):
        e, _ = store.ensure("smolmachine", f"k{i}", writer(b"x" * 1000), keep=keep)
        t = now - age_days * 86400
        os.utime(e.path / "meta.json", (t, t))
    from cache.store import _du

    newest_two = sum(_du(tmp_path / "objects" / "smolmachine" / k) for k in ("k2", "k3"))
    removed = store.gc(max_bytes=newest_two, max_age_seconds=30 * 86400, now=now)
    assert [r.name for r in removed] == ["smolmachine/k0", "smolmachine/k1"]
    assert sorted(e.key for e, _ in store.entries()) == ["k2", "k3"]


def test_the_size_budget_covers_every_area_but_agent_state(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure("smolmachine", "k", writer(b"x" * 1000), keep=keep)
    store.put_ref("context", "c", {"image_id": "sha256:1"})
    (store.area("logs")).mkdir(parents=True)
    (store.area("logs") / "x.log").write_bytes(b"y" * 5000)
    (store.area("state") / "claude-1").mkdir(parents=True)
    (store.area("state") / "claude-1" / "login.json").write_text("{}")
    db = store.area("doit") / "running.sqlite3"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"z" * 100)
    store.gc(max_bytes=1, keep=[db])
    assert not list(store.entries()) and store.get_ref("context", "c") is None
    assert not (store.area("logs") / "x.log").exists()
    assert (store.area("state") / "claude-1" / "login.json").exists() and db.exists()


def test_get_touches_last_used(tmp_path: Path) -> None:
    store = Store(tmp_path)
    e, _ = store.ensure("smolmachine", "k", writer(), keep=keep)
    os.utime(e.path / "meta.json", (1, 1))
    store.get("smolmachine", "k")
    assert e.last_used > 1


def test_refs_are_atomic_records(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.get_ref("context", "abc") is None
    store.put_ref("context", "abc", {"image_id": "sha256:1"})
    assert store.get_ref("context", "abc") == {"image_id": "sha256:1"}


_CHILD = """
import sys, time, os
from pathlib import Path
from cache.store import Store
root, key, log, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def build(work):
    with open(log, "a") as f:
        f.write(f"build {os.getpid()}\\n")
    (work / "a.smolmachine").write_bytes(b"partial")
    time.sleep(delay)
    (work / "a.smolmachine").write_bytes(b"complete" * 100)
    return {}
e, built = Store(Path(root)).ensure("smolmachine", key, build)
print(e.file("a.smolmachine").read_bytes()[:8].decode(), built)
"""


def _child(tmp_path: Path, key: str, delay: float) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "store"), key, str(tmp_path / "log"),
         str(delay)], stdout=subprocess.PIPE, text=True, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_concurrent_ensure_builds_once(tmp_path: Path) -> None:
    procs = [_child(tmp_path, "same", 0.5) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert (tmp_path / "log").read_text().count("build") == 1
    assert sorted(o[1] for o in outs) == ["False", "False", "False", "True"]
    assert all(o[0] == "complete" for o in outs)


def test_sigkill_mid_build_leaves_no_visible_entry(tmp_path: Path) -> None:
    p = _child(tmp_path, "k", 30)
    deadline = time.monotonic() + 30
    while not (tmp_path / "log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    store = Store(tmp_path / "store")
    assert store.get("smolmachine", "k") is None
    assert list((tmp_path / "store" / "tmp").iterdir())  # the dead writer's work is there...
    again = _child(tmp_path, "k", 0)
    out = again.communicate(timeout=60)[0].split()
    assert out == ["complete", "True"]
    assert not list((tmp_path / "store" / "tmp").iterdir())  # ...and swept by the next run


# --- nothing partial, nothing wrong, never stuck (issue 8, items 8-12) ----------------


def test_ensure_over_an_entry_damaged_between_its_checks_does_not_deadlock(
        tmp_path: Path) -> None:
    """flock is per open file: a read that evicted under the key's lock while `ensure`
    held it would wait for itself forever."""
    store = Store(tmp_path)
    e, _ = store.ensure("smolmachine", "k", writer(), keep=keep)
    real_read = store._read
    calls = [0]

    def damaging_read(kind: str, key: str, *, full: bool = False) -> Any:
        calls[0] += 1
        if calls[0] == 1:  # sound at the first look; damaged by the second
            real_read(kind, key, full=full)
            e.file("a.smolmachine").write_bytes(b"garbage")
            return (None, None)
        return real_read(kind, key, full=full)

    store._read = damaging_read  # type: ignore[method-assign]
    done: list[bool] = []
    import threading

    t = threading.Thread(target=lambda: done.append(
        store.ensure("smolmachine", "k", writer(), keep=keep)[1]))
    t.start()
    t.join(timeout=20)
    assert done == [True], "ensure hung on its own lock"


def test_a_vanishing_entry_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    store = Store(tmp_path)
    e, _ = store.ensure("smolmachine", "k", writer(), keep=keep)
    import shutil

    shutil.rmtree(e.path)
    assert store.get("smolmachine", "k") is None


@pytest.mark.parametrize("meta", [None, {}, {"files": {}}, "[1, 2]", "not json"])
def test_damaged_metadata_is_damage(tmp_path: Path, meta: Any) -> None:
    store = Store(tmp_path)
    e, _ = store.ensure("smolmachine", "k", writer(), keep=keep)
    m = e.path / "meta.json"
    if meta is None:
        m.unlink()
    elif isinstance(meta, str):
        m.write_text(meta)
    else:
        full = json.loads(m.read_text())
        full.update(meta) if meta else full.clear()
        m.write_text(json.dumps(full))
    assert store.get("smolmachine", "k") is None
    listed = dict((x.key, problem) for x, problem in store.entries())
    assert listed["k"]  # cache_list names the damage instead of crashing
    assert Store(tmp_path).verify()[1]  # verify does not call it ok
    _e2, built = store.ensure("smolmachine", "k", writer(), keep=keep)  # and it is rebuilt
    assert built and store.get("smolmachine", "k") is not None


def test_files_empty_with_a_corrupt_artifact_is_not_a_hit(tmp_path: Path) -> None:
    store = Store(tmp_path)
    e, _ = store.ensure("smolmachine", "k", writer(), keep=keep)
    full = json.loads((e.path / "meta.json").read_text())
    full["files"] = {}
    (e.path / "meta.json").write_text(json.dumps(full))
    e.file("a.smolmachine").write_bytes(b"corrupt")
    assert store.get("smolmachine", "k") is None


def test_a_record_carries_its_checksum(tmp_path: Path) -> None:
    problems: list[str] = []
    store = Store(tmp_path, on_problem=problems.append)
    store.put_ref("context", "abc", {"image_id": "sha256:1"})
    path = tmp_path / "refs" / "context" / "abc.json"
    record = json.loads(path.read_text())
    record["value"]["image_id"] = "sha256:2"  # pointed at another existing image
    path.write_text(json.dumps(record))
    assert store.get_ref("context", "abc") is None and problems
    _checked, bad = store.verify()
    assert bad == [("record context/abc", "checksum does not match")] and not path.exists()


def test_a_build_that_keeps_no_file_is_refused(tmp_path: Path) -> None:
    from cache.errors import UserError

    with pytest.raises(UserError, match="no file"):
        Store(tmp_path).ensure("smolmachine", "k", lambda w: {})
    assert Store(tmp_path).get("smolmachine", "k") is None


def test_keys_cannot_leave_the_store(tmp_path: Path) -> None:
    from cache.errors import UserError

    for key in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(UserError):
            Store(tmp_path).get("smolmachine", key)


def test_killed_writers_temp_files_are_swept_from_every_area(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    store = Store(tmp_path)
    left = [tmp_path / "index" / f".abc.json.{dead}.x1y2.tmp",
            tmp_path / "refs" / "context" / f".k.json.{dead}.zz.tmp",
            tmp_path / "prepull" / f".p.json.{dead}.q.tmp"]
    alive = tmp_path / "index" / f".live.json.{os.getpid()}.q.tmp"
    for p in [*left, alive]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 100)
    store.gc()
    assert not any(p.exists() for p in left) and alive.exists()


def test_gc_covers_every_record_area(tmp_path: Path) -> None:
    store = Store(tmp_path)
    old = time.time() - 90 * 86400
    old_context = store.area("contexts") / "example-0123"
    old_context.mkdir(parents=True)
    (old_context / "Dockerfile").write_text("FROM scratch\n")
    os.utime(old_context, (time.time() - 90 * 86400,) * 2)
    paths = [store.area("index") / "a.json", store.area("prepull") / "b.json",
             store.area("logs") / "c.log", store.area("doit") / "d.sqlite3",
             store.area("refs") / "context" / "e.json"]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
        os.utime(p, (old, old))
    fresh = store.area("index") / "fresh.json"
    fresh.write_text("{}")
    removed = store.gc(max_age_seconds=30 * 86400)
    assert {r.area for r in removed} == {"index", "prepull", "logs", "doit", "refs",
                                         "contexts"}
    assert not any(p.exists() for p in paths) and fresh.exists() and not old_context.exists()


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    import errno

    from cache.errors import StorageError

    store = Store(tmp_path)

    def fills_the_disk(work: Path) -> dict[str, Any]:
        (work / "a.smolmachine").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="no space left"):
        store.ensure("smolmachine", "k", fills_the_disk, keep=keep)
    assert not list((tmp_path / "tmp").iterdir())
    assert store.get("smolmachine", "k") is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only directories anyway")
def test_a_read_only_store_is_one_clear_error(tmp_path: Path) -> None:
    from cache.errors import StorageError

    (tmp_path / "refs").mkdir()
    (tmp_path / "refs").chmod(0o500)
    try:
        with pytest.raises(StorageError, match="cannot write") as err:
            Store(tmp_path).put_ref("context", "k", {"a": 1})
        assert err.value.read_only
    finally:
        (tmp_path / "refs").chmod(0o700)


def test_an_assembled_context_is_checked_on_every_use(tmp_path: Path) -> None:
    problems: list[str] = []
    store = Store(tmp_path, on_problem=problems.append)
    files = {"Dockerfile": (b"FROM scratch\n", 0o644), "run": (b"#!/bin/sh\n", 0o755)}
    made = store.assembled("example", files)
    assert (made / "Dockerfile").read_bytes() == b"FROM scratch\n"
    assert os.access(made / "run", os.X_OK)
    assert store.assembled("example", files) == made and not problems
    (made / "run").write_bytes(b"#!/bin/sh\nrm -rf /\n")  # damaged in place
    again = store.assembled("example", files)
    assert again == made and (again / "run").read_bytes() == b"#!/bin/sh\n"
    assert problems and "damaged" in problems[0]
    (made / "extra").write_text("x")  # a file that should not be there
    _, bad = store.verify()
    assert bad == [(f"context {made.name}", "its files do not match its name")]
    assert not made.exists()
    assert not list((tmp_path / "tmp").iterdir())


# --- lock files: removed by gc when nobody holds them, never while one is waited for ------


def test_gc_removes_the_lock_files_nobody_holds(tmp_path: Path) -> None:
    """One lock file per key ever used would pile up for ever; gc removes those that are
    free and keeps a held one."""
    store = Store(tmp_path)
    for key in ("k1", "k2", "k3"):
        store.ensure("smolmachine", key, writer(), keep=keep)
    with store.lock("context-held", what="a build"):
        assert len(list(store.area("locks").iterdir())) == 4
        store.gc()
        assert [p.name for p in store.area("locks").iterdir()] == ["context-held.lock"]
        store.gc()
        assert store.lock_path("context-held").exists()
    store.gc()
    assert not list(store.area("locks").iterdir())


def test_a_lock_file_removed_while_waited_for_is_taken_again(tmp_path: Path) -> None:
    """A waiter blocked on a lock file that its holder's gc removes then gets the old,
    unlinked file: it must take the one at the path now, so that it and a newcomer never
    both hold the key."""
    import threading

    from cache.lock import locked, remove_free

    path = tmp_path / "locks" / "k.lock"
    waiting, holding, release = threading.Event(), threading.Event(), threading.Event()

    def waiter() -> None:
        with locked(path, on_wait=waiting.set):
            holding.set()
            release.wait(10)

    t = threading.Thread(target=waiter)
    with locked(path):
        t.start()
        assert waiting.wait(10)
        path.unlink()  # as gc would, had it found the file free just before we took it
    assert holding.wait(10)
    newcomer_waited = threading.Event()

    def newcomer() -> None:
        with locked(path, on_wait=newcomer_waited.set):
            pass

    n = threading.Thread(target=newcomer)
    n.start()
    n.join(0.5)
    assert newcomer_waited.is_set() and n.is_alive(), "two holders of one key"
    assert not remove_free(path)  # held: stays
    release.set()
    t.join(10)
    n.join(10)
    assert not n.is_alive()
    assert remove_free(path) and not path.exists()
    assert not remove_free(path)  # nothing there


def test_the_lock_excludes_while_gc_keeps_removing_its_file(tmp_path: Path) -> None:
    """Four processes add to one counter under the key's lock (read, pause, write) while
    another removes the lock file whenever it is free: no increment is lost."""
    counter, path = tmp_path / "n", tmp_path / "locks" / "k.lock"
    counter.write_text("0")
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom cache.lock import locked\n"
        "c, p = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "for _ in range(40):\n"
        "    with locked(p):\n"
        "        n = int(c.read_text()); time.sleep(0.0005); c.write_text(str(n + 1))\n")
    remover = ("import sys\nfrom pathlib import Path\nfrom cache.lock import remove_free\n"
               "p, stop = Path(sys.argv[1]), Path(sys.argv[2])\n"
               "while not stop.exists():\n    remove_free(p)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    stop = tmp_path / "stop"
    gc = subprocess.Popen([sys.executable, "-c", remover, str(path), str(stop)], env=env)
    try:
        workers = [subprocess.Popen([sys.executable, "-c", code, str(counter), str(path)],
                                    env=env) for _ in range(4)]
        assert [w.wait(60) for w in workers] == [0, 0, 0, 0]
    finally:
        stop.touch()
        gc.wait(10)
    assert counter.read_text() == "160"


def test_a_directory_for_this_run_only_sweeps_what_dead_runs_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only cache: `assembled` makes its directory under the temp dir instead, and
    one left by a killed run (its pid gone) goes when the next is made."""
    import tempfile

    from cache import store as store_mod

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / f"bot-bottle-assembled.{dead.pid}.x"
    (left / "example-abc").mkdir(parents=True)
    live = tmp_path / f"bot-bottle-assembled.{os.getpid()}.y"
    live.mkdir()
    made = store_mod._for_this_run("example-123", {"run": (b"#!/bin/sh\n", 0o755),
                                                   "data": (b"x", 0o644)})
    assert not left.exists() and live.exists()
    assert made.name == "example-123" and made.parent.parent == tmp_path
    assert (made / "run").read_bytes() == b"#!/bin/sh\n"
    assert (made / "run").stat().st_mode & 0o777 == 0o755
    assert (made / "data").stat().st_mode & 0o777 == 0o644
