"""The offline base (mmdebstrap + docker import) and the real Claude Code built on it.

The base comes from the session fixture `debian_base` (tests/integration/conftest.py).
The Claude Code build reaches the npm registry (`docker build --network host`); the
built claude only ever runs `--version`/`--help` with `--network none`.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle import agents
from bottle.base import BaseImage, ensure_base
from cache.store import Store
from tests.helpers import docker_calls

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


@pytest.fixture
def claude_image(debian_base: BaseImage, engine: str) -> Iterator[str]:
    tag = f"bot-bottle-test/claude:{uuid.uuid4().hex[:8]}"
    yield tag
    docker("rmi", "-f", tag)


def test_claude_profile_builds_on_the_local_base(
        debian_base: BaseImage, claude_image: str, timings: dict[str, float]) -> None:
    """The real Claude Code, installed from npm on the mmdebstrap base, prints its version
    with no network at all."""
    profile = agents.profile("claude")
    version = profile.build_args["CLAUDE_CODE_VERSION"]
    ca = HOST_CA if HOST_CA.is_file() else None  # this machine's registries need it
    ctx = agents.build_context(profile, ca_certs=ca)
    assert (ctx / agents.CA_FILE).read_bytes() == (ca.read_bytes() if ca else b"")
    started = time.monotonic()
    build = docker("build", "--force-rm", "--network", "host", "--build-arg",
                   f"BASE={debian_base.ref}", "--build-arg", f"CLAUDE_CODE_VERSION={version}",
                   "-t", claude_image, str(ctx), timeout=1200)
    timings["build the claude image on the base (npm install)"] = time.monotonic() - started
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    r = docker("run", "--rm", "--network", "none", claude_image, "claude", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{version} (Claude Code)"
    r = docker("run", "--rm", "--network", "none", claude_image, "claude", "--help")
    assert r.returncode == 0 and "Usage: claude" in r.stdout, r.stdout + r.stderr
    r = docker("run", "--rm", "--network", "none", claude_image, "sh", "-c",
               "id -u; id -un; pwd; git --version; rg --version | head -1; "
               "test -w /home/node/.claude && echo state-writable; echo $NODE_EXTRA_CA_CERTS")
    assert r.stdout.splitlines() == [
        "1000", "node", "/workspace", r.stdout.splitlines()[3], r.stdout.splitlines()[4],
        "state-writable", "/etc/bottle/ca-certificates.crt"], r.stdout + r.stderr
    assert r.stdout.splitlines()[3].startswith("git version")
    assert r.stdout.splitlines()[4].startswith("ripgrep")
    # Only the native binary that runs here is kept (npm fetched the musl one too).
    r = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", claude_image, "-c",
               "ls /usr/local/lib/node_modules/@anthropic-ai/claude-code/node_modules/"
               "@anthropic-ai/")
    assert r.stdout.split() == ["claude-code-linux-x64"] or r.stdout.split() == [
        "claude-code-linux-arm64"], r.stdout
