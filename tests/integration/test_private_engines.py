"""The tests' own engines leave another engine on the machine working: a dockerd started
with `--bridge=none` deletes the host's `docker0` on start (found when the suite, run
beside a user's engine, broke that engine's default network)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines import private_engine


def _ifindex(name: str) -> int | None:
    try:
        return int(Path("/sys/class/net", name, "ifindex").read_text())
    except OSError:
        return None


@pytest.fixture
def docker0() -> Iterator[int]:
    """The host's `docker0`: a user's engine's where there is one, else a bridge made
    here under that name (and removed after)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("dockerd"):
        pytest.skip("needs root, iproute2 and dockerd")
    made = False
    if _ifindex("docker0") is None:
        subprocess.run(["ip", "link", "add", "name", "docker0", "type", "bridge"], check=True)
        made = True
    index = _ifindex("docker0")
    assert index is not None
    try:
        yield index
    finally:
        if made:
            subprocess.run(["ip", "link", "del", "docker0"], capture_output=True, check=False)


def test_a_private_engine_leaves_docker0_alone(docker0: int) -> None:
    before = set(os.listdir("/sys/class/net"))
    with private_engine("bb-beside.") as host:
        assert host is not None
        assert _ifindex("docker0") == docker0
        info = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"],
                              env={**os.environ, "DOCKER_HOST": host}, capture_output=True,
                              text=True, check=True)
        assert "bridge" in info.stdout.split()  # on a bridge of its own
    assert _ifindex("docker0") == docker0
    assert set(os.listdir("/sys/class/net")) == before  # its bridge went with it
