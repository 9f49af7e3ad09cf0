"""`bottle launch` on the Docker backend with the bundled example agent, for real."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import WORKSPACE_UID
from tests.helpers import bottle, docker_calls, spawn


def bottles() -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", "label=bot-bottle=1", "--format",
                          "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    return out.split()


def test_launch_headless_example_agent(workspace: Path, recording_docker: Path) -> None:
    env = {"BOTTLE_ENV": "GREETING=hello MODE=test", "BOTTLE_SECRETS": "API_KEY",
           "API_KEY": "sk-very-secret-123"}
    r = bottle("launch", "--headless", "--", "--print", "say hi", "--exit-code", "3",
               cwd=workspace, env=env)
    assert r.returncode == 3, r.stderr  # the agent's exit code
    out = r.stdout.splitlines()
    assert "arg[0]: --print" in out and "arg[1]: say hi" in out
    uid = WORKSPACE_UID if os.geteuid() == 0 else os.geteuid()
    assert f"user: node uid={uid}" in out and "cwd: /workspace" in out  # mapped to the owner
    assert "workspace: hello.txt " in out
    assert "env: GREETING=hello" in out and "env: MODE=test" in out
    assert "env: API_KEY=<18 chars>" in out  # the secret reached the agent...
    calls = "\n".join(docker_calls(recording_docker))
    assert "sk-very-secret-123" not in calls and "sk-very-secret-123" not in r.stderr  # ...not argv
    # The agent's container created, started and attached over the engine's API (the
    # CLI only creates a never-started one to read the image's /etc/passwd).
    assert not [c for c in calls.splitlines() if c.startswith(("start", "run"))]
    assert [c for c in calls.splitlines() if c.startswith("create")] == [
        c for c in calls.splitlines() if c.startswith("create --name=bot-bottle-peek-")]
    assert bottles() == []  # removed afterwards
    # A second launch reuses the cache: no docker build.
    recording_docker.write_text("")
    r2 = bottle("launch", "--headless", cwd=workspace, env=env)
    assert r2.returncode == 0 and "build: cache hit" in r2.stderr
    assert not [c for c in docker_calls(recording_docker) if c.startswith("build")]
    assert bottles() == []


def test_agent_writes_land_in_the_workspace_owned_by_its_owner(workspace: Path) -> None:
    """Issue 14.12: the agent runs as the workspace owner's uid, so it can write there."""
    r = bottle("launch", "--headless", "--command", "sh", "--", "-c", "echo made > out.txt",
               cwd=workspace)
    assert r.returncode == 0, r.stderr
    assert (workspace / "out.txt").read_text() == "made\n"
    assert (workspace / "out.txt").stat().st_uid == workspace.stat().st_uid
    assert "root" not in r.stderr


def test_a_headless_agent_reads_what_is_piped_in(workspace: Path) -> None:
    """`git diff | bottle launch --headless -- -p "review this"`: stdin reaches the agent
    (a terminal or /dev/null is not attached)."""
    r = bottle("launch", "--headless", "--command", "sh", "--", "-c", "cat; echo end",
               cwd=workspace, input="one\ntwo x=1\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "one\ntwo x=1\nend\n"
    r = bottle("launch", "--headless", "--command", "sh", "--", "-c", "wc -c",
               cwd=workspace)
    assert r.returncode == 0 and r.stdout.strip() == "0", r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a root-owned workspace")
def test_a_root_owned_workspace_is_writable_and_said(workspace: Path) -> None:
    os.chown(workspace, 0, 0)
    r = bottle("launch", "--headless", "--command", "sh", "--", "-c", "echo made > out.txt",
               cwd=workspace)
    assert r.returncode == 0, r.stderr
    assert (workspace / "out.txt").read_text() == "made\n"
    assert "owned by root, so the agent runs as root" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_launch_tears_down(workspace: Path, sig: signal.Signals) -> None:
    p = spawn("launch", "--headless", "--", "--sleep", "60", cwd=workspace)
    deadline = time.monotonic() + 60
    while not bottles() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert bottles()
    time.sleep(0.5)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "interrupted" in err
    assert bottles() == []


def test_killed_launch_is_swept_by_the_next(workspace: Path) -> None:
    p = spawn("launch", "--headless", "--", "--sleep", "60", cwd=workspace)
    deadline = time.monotonic() + 60
    while not bottles() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = bottles()
    assert left
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert bottles() == left  # SIGKILL: nothing could clean up...
    r = bottle("launch", "--headless", cwd=workspace)
    assert r.returncode == 0
    assert f"launch: removed {left[0]}" in r.stderr  # ...so the next launch sweeps it
    assert bottles() == []


def test_bad_launch_input(workspace: Path) -> None:
    r = bottle("launch", "--backend", "podman", cwd=workspace)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [
        "bottle: error: option: backend = 'podman': expected one of docker, smolmachines, "
        "auto"]
    r = bottle("launch", "--workspace", "/no/such/dir", cwd=workspace)
    assert r.returncode != 0 and "workspace /no/such/dir is not a directory" in r.stderr
    r = bottle("launch", cwd=workspace, env={"BOTTLE_SECRETS": "NOT_SET_ANYWHERE"})
    assert r.returncode != 0 and "secret NOT_SET_ANYWHERE is not set" in r.stderr
    assert bottles() == []
