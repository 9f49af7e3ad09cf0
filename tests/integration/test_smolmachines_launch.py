"""smolmachines backend: the whole lifecycle's argv, checked against the real smolvm
parser (stand-in smolvm for running), and real runs where a microVM can boot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bottle.backend.smolmachines import SmolmachinesBackend
from cache.store import Store
from tests import smolvm_parser
from tests.helpers import bottle, smolvm_calls

PARSERS = smolvm_parser.parsers()


@pytest.mark.skipif(not PARSERS, reason="smolmachines (smolvm's parser) not installed")
@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.parent.parent.name or str(p))
def test_lifecycle_argv_is_what_real_smolvm_accepts(
    parser: Path, workspace: Path, fake_smolvm: Path, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    version = smolvm_parser.dialect_of(parser)
    monkeypatch.setenv("FAKE_SMOLVM_VERSION", str(version))
    r = bottle("launch", "--backend", "smolmachines", "--headless", "--", "--print", "hi",
               cwd=workspace, env={"BOTTLE_ENV": "MODE=test", "BOTTLE_SECRETS": "API_KEY",
                                   "API_KEY": "sk-secret-value"})
    assert r.returncode == 0, r.stderr
    calls = [c for c in smolvm_calls(fake_smolvm) if c != ["--version"]]
    verbs = [c[1] if c[0] == "machine" else "pack" for c in calls]
    first_create = verbs.index("create")
    assert verbs[first_create:] == ["create", "start", "exec", "cp", "exec", "exec", "exec",
                                    "cp", "stop", "delete"], verbs
    ready, agent = calls[first_create + 2], calls[first_create + 5]
    assert ready[ready.index("--") + 1:] == ["true"]
    assert agent[agent.index("--") + 1:][-3:] == ["claude", "--print", "hi"]
    assert "MODE=test" in agent and "API_KEY=API_KEY" in agent
    assert not any("sk-secret-value" in a for c in calls for a in c)
    create = calls[first_create]
    assert create[create.index("--from") + 1].endswith(".smolmachine")
    rejected = [c for c in calls
                if smolvm_parser.check(parser, ["smolvm", *c], tmp_path).returncode != 0]
    assert rejected == []
    # Nothing left: the machine is deleted and its run record gone.
    assert not list((tmp_path / "smolvm-state").glob("*.json"))


def _no_vm_boots() -> str | None:
    """Why no microVM boots here (the real probe, on a throwaway cache), or None."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bb-probe.") as tmp:
        return SmolmachinesBackend().boots(Store(Path(tmp)))


@pytest.mark.smolvm_runtime
def test_launch_in_a_real_microvm(workspace: Path) -> None:
    """The same observable behaviour as the Docker backend, in a real microVM."""
    why = _no_vm_boots()
    if why:
        pytest.skip(f"no microVM can boot here: {why}")
    r = bottle("launch", "--backend", "smolmachines", "--headless", "--", "--exit-code", "4",
               cwd=workspace, env={"BOTTLE_ENV": "MODE=vm"}, timeout=900)
    assert r.returncode == 4, r.stderr
    assert "user: node uid=1000" in r.stdout and "env: MODE=vm" in r.stdout
    assert "workspace: hello.txt " in r.stdout


def test_auto_picks_docker_where_no_vm_can_boot(workspace: Path, fake_smolvm: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14.4: smolvm on PATH and /dev/kvm present are not enough: a microVM must
    really boot. The probe runs once; its answer is kept."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no /dev/kvm: the cheap check already says no")
    monkeypatch.setenv("FAKE_SMOLVM_BOOT_ERROR", "VMM exited with code 1")
    r = bottle("launch", "--backend", "auto", "--headless", cwd=workspace)
    assert r.returncode == 0, r.stderr
    assert "launch: backend auto: using docker (no microVM boots here" in r.stderr
    assert "launch: docker bottle" in r.stderr
    probes = len(smolvm_calls(fake_smolvm))
    r = bottle("launch", "--backend", "auto", "--headless", cwd=workspace)
    assert r.returncode == 0 and "using docker" in r.stderr
    assert len(smolvm_calls(fake_smolvm)) == probes  # the answer was kept: no second probe


def test_auto_picks_smolmachines_where_a_vm_boots(workspace: Path, fake_smolvm: Path) -> None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no /dev/kvm here")
    r = bottle("launch", "--backend", "auto", "--headless", cwd=workspace)
    assert r.returncode == 0, r.stderr
    assert "launch: smolmachines bottle" in r.stderr
