"""Private Docker engines for the tests: own data root, exec root and socket, no default
bridge, no iptables, no forwarding or masquerading set on the host (the tests use
--network none, host, or networks they make).

Where another engine runs, not `--bridge=none`: a dockerd so started deletes the host's
`docker0` (moby's removeDefaultBridgeInterface), that engine's bridge, whose containers
then cannot start on their default network. There the default bridge is one of ours."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def answers(host: str | None = None) -> bool:
    if not shutil.which("docker"):
        return False
    env = dict(os.environ) if host is None else {**os.environ, "DOCKER_HOST": host}
    r = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                       capture_output=True, timeout=30)
    return r.returncode == 0


@contextmanager
def private_engine(prefix: str) -> Iterator[str | None]:
    """A dockerd of our own for as long as the block runs (its DOCKER_HOST), or None
    where none can start (no dockerd, not root). Everything it made goes with it."""
    if not shutil.which("dockerd") or os.geteuid() != 0:
        yield None
        return
    # Where another engine's `docker0` is, a bridge of our own (--bridge=none deletes it).
    bridge = _own_bridge() if _link_exists("docker0") else None
    if bridge is None and _link_exists("docker0"):
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix=prefix))
    host = f"unix://{base / 'docker.sock'}"
    with (base / "log").open("wb") as log:
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
             "--pidfile", str(base / "pid"), "--host", host, f"--bridge={bridge or 'none'}",
             "--iptables=false", "--ip6tables=false", "--ip-forward=false",
             "--ip-masq=false"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not answers(host):
            time.sleep(0.2)
        yield host if proc.poll() is None else None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
        if bridge is not None:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


@contextmanager
def engine_for_tests(prefix: str, missing: str) -> Iterator[str]:
    """A private dockerd for a test session or module: skipped where none can start,
    failed under CI=true (where a missing engine is a broken machine, not a choice)."""
    import pytest

    with private_engine(prefix) as host:
        if host is None:
            if os.environ.get("CI"):
                pytest.fail(missing)
            pytest.skip(missing)
        yield host


def _own_bridge() -> str | None:
    """A new bridge for an engine's default network, or None (no iproute2, no right)."""
    if not shutil.which("ip"):
        return None
    for _ in range(5):
        name = f"bbt{os.urandom(5).hex()}"  # at most 15 characters, as Linux allows
        r = subprocess.run(["ip", "link", "add", "name", name, "type", "bridge"],
                           capture_output=True, check=False)
        if r.returncode == 0:
            return name
        if not _link_exists(name):
            return None  # not a clash: cannot make bridges here
    return None


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _unmount_under(base: Path) -> None:
    """Lazily unmount what dockerd left mounted below `base` (its default network
    namespace survives a shutdown that was not clean), deepest first, so the directory
    can go."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((m for m in points if m.startswith(f"{base}/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
