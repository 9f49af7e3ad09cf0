"""The smolmachines sweep removes machines whose launcher died, and only those."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bottle.backend import owner_token
from bottle.backend.smolmachines import SmolmachinesBackend
from bottle.errors import BottleError
from bottle.tools import smolvm
from cache import cache_root
from cache.store import Store
from tests.helpers import bottle, smolvm_calls


def _runs() -> Path:
    return Store(cache_root()).area("run") / "smolmachines"


def _record(name: str, owner: str) -> None:
    runs = _runs()
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{name}.json").write_text(json.dumps(
        {"owner": owner, "host": os.uname().nodename, "state_dir": ""}))


def test_sweeps_dead_launchers_only(fake_smolvm: Path, tmp_path: Path) -> None:
    smolvm._detect.cache_clear()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    for name in ("bot-bottle-dead", "bot-bottle-live"):
        smolvm.machine_create(name)
        smolvm.machine_start(name)
    live = owner_token()
    _record("bot-bottle-dead", live.replace(f"/{os.getpid()}/", f"/{int(dead.stdout)}/"))
    _record("bot-bottle-live", live)
    assert SmolmachinesBackend().sweep(Store(cache_root())) == ["bot-bottle-dead"]
    state = tmp_path / "smolvm-state"
    assert sorted(p.stem for p in state.glob("*.json")) == ["bot-bottle-live"]
    assert [p.stem for p in _runs().glob("*.json")] == ["bot-bottle-live"]
    verbs = [c[1:3] for c in smolvm_calls(fake_smolvm) if "bot-bottle-dead" in c]
    assert verbs[-2:] == [["stop", "--name"], ["delete", "--name"]]


def test_records_without_smolvm_are_said_not_checked(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no smolvm
    assert SmolmachinesBackend().sweep(Store(cache_root())) == []  # no record: nothing to say
    _record("bot-bottle-x", owner_token())
    with pytest.raises(BottleError, match=r"1 microVM launch record\(s\) not checked"):
        SmolmachinesBackend().sweep(Store(cache_root()))
    assert [p.stem for p in _runs().glob("*.json")] == ["bot-bottle-x"]  # kept for later


def test_sweep_says_when_the_engine_cannot_be_asked(tmp_path: Path) -> None:
    r = bottle("sweep", cwd=tmp_path, env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1].startswith(
        "bottle: error: sweep: docker not checked: cannot reach the Docker engine at")
