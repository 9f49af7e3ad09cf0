"""Shared fixtures. Engine tests use a real dockerd: $DOCKER_HOST's when it answers,
else one this session starts on its own socket (root only). Under CI=true a missing
engine fails the engine tests instead of skipping them."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"
# The tools installed beside this Python (a virtual environment's bin/) come first on PATH.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache root; the user's real cache is never touched."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(root))
    for k in [k for k in os.environ if k.startswith("BOTTLE_") and k != "BOTTLE_CACHE_DIR"]:
        monkeypatch.delenv(k)
    return root


def _our_temp_dirs() -> set[str]:
    tmp = Path(tempfile.gettempdir())
    return {p.name for p in tmp.iterdir() if p.name.startswith("bot-bottle")}


@pytest.fixture(scope="session", autouse=True)
def _no_temp_dirs_left() -> Iterator[None]:
    """A test run leaves no temp dir of ours behind (it fails, naming them)."""
    before = _our_temp_dirs()
    yield
    left = sorted(_our_temp_dirs() - before)
    assert not left, f"the tests left these in {tempfile.gettempdir()}: {left}"


def _engine_objects(host: str) -> dict[str, set[str]]:
    env = {**os.environ, "DOCKER_HOST": host}
    out: dict[str, set[str]] = {}
    for kind, argv in (("containers", ["ps", "-aq", "--no-trunc"]),
                       ("images", ["images", "-aq", "--no-trunc"]),
                       ("networks", ["network", "ls", "-q", "--no-trunc"])):
        r = subprocess.run(["docker", *argv], env=env, capture_output=True, text=True,
                           timeout=60)
        out[kind] = set(r.stdout.split())
    return out


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A DOCKER_HOST that answers: $DOCKER_HOST's (or the default socket's) engine, else
    a private dockerd this session starts (root only). Under CI=true a missing engine
    fails the engine tests instead of skipping them.

    On the user's own engine, the session ends with a check: every container, image and
    network the tests made is gone (else the run fails, naming them)."""
    from tests.engines import answers, engine_for_tests

    if answers():
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        before = _engine_objects(host)
        yield host
        after = _engine_objects(host)
        left = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
        assert not left, f"the tests left these on the engine: {left}"
        return
    with engine_for_tests("bb-dockerd.", "no Docker engine (set DOCKER_HOST, or run as "
                          "root with docker.io installed)") as host:
        yield host


@pytest.fixture
def engine(docker_host: str, monkeypatch: pytest.MonkeyPatch,
           _private_cache: Path) -> Iterator[str]:
    """The engine, for one test. Afterwards the images its private cache built are
    removed, and any bottle (container or network) left behind fails the test."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    yield docker_host
    env = {**os.environ, "DOCKER_HOST": docker_host}

    def ids(*argv: str) -> list[str]:
        r = subprocess.run(["docker", *argv], env=env, capture_output=True, text=True,
                           timeout=60)
        return r.stdout.split()

    from bottle.image import cache_label
    from cache.store import Store

    (label,) = (f"{k}={v}" for k, v in cache_label(Store(_private_cache)).items())
    containers = ids("ps", "-aq", "--filter", f"label={label}")
    networks = ids("network", "ls", "-q", "--filter", f"label={label}")
    subprocess.run(["docker", "rm", "-f", *containers], env=env, capture_output=True)
    subprocess.run(["docker", "network", "rm", *networks], env=env, capture_output=True)
    for image in ids("images", "-q", "--filter", f"label={label}"):
        subprocess.run(["docker", "rmi", "-f", image], env=env, capture_output=True)
    subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={label}"], env=env,
                   capture_output=True)
    assert not containers and not networks, (
        f"bottles left behind: containers {containers}, networks {networks}")


def static_busybox() -> Path:
    from bottle.errors import BottleError
    from bottle.example import find_static_busybox

    try:
        return find_static_busybox()
    except BottleError as err:
        pytest.fail(str(err))


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs of this test's own (root only: skipped elsewhere), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill_up(disk: Path) -> Path:
    """A file that takes every byte left on `disk` (remove it to make room again)."""
    fill = disk / "fill"
    with fill.open("wb", buffering=0) as f, contextlib.suppress(OSError):  # (full)
        while True:
            f.write(b"\0" * 4096)
    return fill


def busybox_context(directory: Path, extra: str = "") -> Path:
    """A tiny FROM-scratch busybox build context."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(static_busybox(), directory / "busybox")
    (directory / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n' + extra
    )
    return directory


@pytest.fixture
def fake_smolvm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in smolvm first on PATH; returns its call log (JSON lines)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "smolvm").symlink_to(FAKES / "smolvm")
    log = tmp_path / "smolvm-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SMOLVM_LOG", str(log))
    monkeypatch.setenv("FAKE_SMOLVM_STATE", str(tmp_path / "smolvm-state"))
    return log


@pytest.fixture
def slow_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` first on PATH that logs each call and can stall at a chosen step
    ($SLOW_STEP: the call's first word) after touching $SLOW_MARK. Returns the mark."""
    real = shutil.which("docker")
    assert real, "docker CLI not on PATH"
    bin_dir = tmp_path / "slow-docker-bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(FAKES / "slow-docker")
    (tmp_path / "docker-calls.log").touch()
    monkeypatch.setenv("REAL_DOCKER", real)
    monkeypatch.setenv("DOCKER_CALLS", str(tmp_path / "docker-calls.log"))
    monkeypatch.setenv("SLOW_MARK", str(tmp_path / "slow-mark"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "slow-mark"


@pytest.fixture
def recording_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` first on PATH that logs each call, then runs the real one."""
    real = shutil.which("docker")
    assert real, "docker CLI not on PATH"
    bin_dir = tmp_path / "docker-bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(FAKES / "recording-docker")
    calls = tmp_path / "docker-calls.log"
    calls.touch()
    monkeypatch.setenv("REAL_DOCKER", real)
    monkeypatch.setenv("DOCKER_CALLS", str(calls))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


WORKSPACE_UID = 1234  # a host user that is neither root nor the image's node (1000)


@pytest.fixture
def workspace(tmp_path: Path, engine: str) -> Path:
    """A workspace to launch in, with one file, owned like a user's (not by root)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "hello.txt").write_text("hi\n")
    if os.geteuid() == 0:
        os.chown(ws, WORKSPACE_UID, WORKSPACE_UID)
        os.chown(ws / "hello.txt", WORKSPACE_UID, WORKSPACE_UID)
    return ws


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"integration", "adversarial"} & set(item.nodeid.split("/")):
            item.add_marker(pytest.mark.engine)
