"""Private Docker engines for the tests: own data root, exec root and socket, no default
bridge and no iptables (the tests use --network none, host, or networks they make)."""

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
    base = Path(tempfile.mkdtemp(prefix=prefix))
    host = f"unix://{base / 'docker.sock'}"
    with (base / "log").open("wb") as log:
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
             "--pidfile", str(base / "pid"), "--host", host, "--bridge=none",
             "--iptables=false", "--ip6tables=false"], stdout=log, stderr=subprocess.STDOUT)
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
