"""Shared fixtures. Engine tests use a real dockerd: $DOCKER_HOST's when it answers,
else one this session starts on its own socket (root only). Under CI=true a missing
engine fails the engine tests instead of skipping them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).resolve().parent / "fakes"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache root; the user's real cache is never touched."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(root))
    for k in [k for k in os.environ if k.startswith("BOTTLE_") and k != "BOTTLE_CACHE_DIR"]:
        monkeypatch.delenv(k)
    return root


def _engine_answers(env: dict[str, str]) -> bool:
    if not shutil.which("docker"):
        return False
    r = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                       capture_output=True, timeout=30)
    return r.returncode == 0


def _start_dockerd() -> tuple[subprocess.Popen[bytes], str, Path] | None:
    if not shutil.which("dockerd") or os.geteuid() != 0:
        return None
    base = Path(tempfile.mkdtemp(prefix="bb-dockerd."))
    sock = base / "docker.sock"
    log = (base / "log").open("wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
         "--pidfile", str(base / "pid"), "--host", f"unix://{sock}", "--bridge=none",
         "--iptables=false", "--ip6tables=false"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if sock.exists() and _engine_answers(env):
            return proc, f"unix://{sock}", base
        time.sleep(0.2)
    proc.terminate()
    proc.wait()
    return None


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A DOCKER_HOST that answers; starts a private dockerd when none is running."""
    if _engine_answers(dict(os.environ)):
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    started = _start_dockerd()
    if started is None:
        msg = "no Docker engine (set DOCKER_HOST, or run as root with docker.io installed)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    proc, host, base = started
    try:
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def engine(docker_host: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    return docker_host


def static_busybox() -> Path:
    for c in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(c)
        if p.is_file():
            from bottle.example import is_static_elf

            if is_static_elf(p):
                return p
    pytest.fail("tests need a static busybox: apt-get install busybox-static")


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
        if "integration" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.engine)
