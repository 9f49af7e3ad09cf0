"""The offline base (mmdebstrap + docker import) and the real Claude Code built on it.

The base comes from the session fixture `debian_base` (tests/integration/conftest.py).
The Claude Code build reaches the npm registry (`docker build --network host`); the
built claude only ever runs `--version`/`--help` with `--network none`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from bottle import agents
from bottle.base import BaseImage, ensure_base
from cache.store import Store
from tests.helpers import bottle, docker_calls

pytestmark = pytest.mark.slow

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def recording_mmdebstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An mmdebstrap first on PATH that logs each call, then runs the real one."""
    real = subprocess.run(["sh", "-c", "command -v mmdebstrap"], capture_output=True,
                          text=True, check=True).stdout.strip()
    bin_dir = tmp_path / "mmdebstrap-bin"
    bin_dir.mkdir()
    log = tmp_path / "mmdebstrap-calls.log"
    log.touch()
    wrapper = bin_dir / "mmdebstrap"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_base_has_what_the_agent_and_proxy_need(debian_base: BaseImage, engine: str) -> None:
    r = docker("run", "--rm", "--network", "none", debian_base.ref, "sh", "-c",
               "node --version && npm --version && git --version && rg --version | head -1 "
               "&& squid --version | head -1 && test -s /etc/ssl/certs/ca-certificates.crt "
               "&& ! ls /usr/share/man/man1 2>/dev/null | grep -q .")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("v") and out[2].startswith("git version")
    assert out[3].startswith("ripgrep") and out[4].startswith("Squid Cache")
    label = docker("image", "inspect", "-f", '{{index .Config.Labels "bot-bottle.base"}}',
                   debian_base.ref)
    assert label.stdout.strip() == debian_base.key


def test_second_ensure_runs_neither_mmdebstrap_nor_docker(
        debian_base: BaseImage, base_store: tuple[Store, bool], engine: str,
        recording_docker: Path, recording_mmdebstrap: Path, timings: dict[str, float]) -> None:
    current = docker("image", "inspect", "-f", "{{.Id}}", debian_base.ref).stdout.strip()
    # The wrapper is another mmdebstrap binary: the first call may ask its version.
    assert ensure_base(store=base_store[0]).image_id == current
    assert set(recording_mmdebstrap.read_text().split()) <= {"--version"}
    recording_mmdebstrap.write_text("")
    recording_docker.write_text("")
    started = time.monotonic()
    again = ensure_base(store=base_store[0])
    timings["ensure_base, warm"] = time.monotonic() - started
    assert again == BaseImage(debian_base.ref, current, debian_base.key)
    assert docker_calls(recording_docker) == []
    assert recording_mmdebstrap.read_text() == ""


def test_an_engine_without_the_image_gets_it_back_without_mmdebstrap(
        debian_base: BaseImage, base_store: tuple[Store, bool], engine: str,
        recording_docker: Path, recording_mmdebstrap: Path, timings: dict[str, float]) -> None:
    # The base is the parent of no image at this point (the builds on it come later).
    assert docker("rmi", debian_base.ref).returncode == 0
    recording_docker.write_text("")
    started = time.monotonic()
    again = ensure_base(store=base_store[0])
    timings["ensure_base, engine lost the image (import only)"] = time.monotonic() - started
    assert (again.ref, again.key, again.built, again.imported) == (
        debian_base.ref, debian_base.key, False, True)
    # No rootfs is made: at most the (new) wrapper is asked its version.
    assert set(recording_mmdebstrap.read_text().split()) <= {"--version"}
    assert [c.split()[0] for c in docker_calls(recording_docker)] == ["import"]
    assert docker("image", "inspect", "-f", "{{.Id}}", debian_base.ref).stdout.strip() == (
        again.image_id)


def test_the_real_claude_code_launches_on_the_local_base(
        debian_base: BaseImage, workspace: Path, recording_docker: Path,
        timings: dict[str, float]) -> None:
    """`bottle launch` of the claude profile on the mmdebstrap base: the real Claude Code
    prints its version from inside the bottle (no network at all), and a second launch
    builds nothing."""
    version = agents.profile("claude").build_args["CLAUDE_CODE_VERSION"]
    ca = HOST_CA if HOST_CA.is_file() else None  # this machine's registries need it
    (workspace / "bottle.toml").write_text(
        'agent = "claude"\nbase = "local"\nnetwork = "none"\nsecrets = []\n'
        + (f'ca_certs = "{ca}"\n' if ca else ""))
    started = time.monotonic()
    r = bottle("launch", "--headless", "--", "--version", cwd=workspace, timeout=1500)
    timings["first launch of claude on the base (npm install)"] = time.monotonic() - started
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == f"{version} (Claude Code)"
    assert "build: built" in r.stderr
    recording_docker.write_text("")
    r = bottle("launch", "--headless", "--", "--help", cwd=workspace, timeout=300)
    assert r.returncode == 0 and "Usage: claude" in r.stdout, r.stdout + r.stderr
    assert "build: cache hit" in r.stderr
    assert not [c for c in docker_calls(recording_docker) if c.startswith("build")]
    r = bottle("launch", "--headless", "--command", "sh", "--", "-c",
               "id -un; pwd; git --version; rg --version | head -1; "
               'test -w "$CLAUDE_CONFIG_DIR" && echo state-writable; '
               "echo $NODE_EXTRA_CA_CERTS",
               cwd=workspace, timeout=300)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0] == "node" and lines[1] == "/workspace", r.stdout
    assert lines[2].startswith("git version") and lines[3].startswith("ripgrep")
    assert lines[4:] == ["state-writable", "/etc/bottle/ca-certificates.crt"]
