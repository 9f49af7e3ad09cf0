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
def test_damaged_entry_is_detected_reported_and_rebuilt(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str],
) -> None:
    store = Store(tmp_path)
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
    assert "corrupt" in capsys.readouterr().err
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
    problems = store.verify()
    assert [(e.key, "content" in p) for e, p in problems] == [("bad", True)]
    assert [e.key for e in store.entries()] == ["good"]


def test_gc_by_age_then_lru_size(tmp_path: Path) -> None:
    store = Store(tmp_path)
    now = time.time()
    for i, age_days in enumerate([40, 3, 2, 1]):
        e, _ = store.ensure("smolmachine", f"k{i}", writer(b"x" * 1000), keep=keep)
        t = now - age_days * 86400
        os.utime(e.path / "meta.json", (t, t))
    removed = store.gc(max_bytes=2000, max_age_seconds=30 * 86400, now=now)
    assert [e.key for e in removed] == ["k0", "k1"]
    assert sorted(e.key for e in store.entries()) == ["k2", "k3"]


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
