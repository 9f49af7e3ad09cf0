"""smolmachines backend: a microVM from the cached `.smolmachine`; the agent via `machine exec`.

Lifecycle: create --from -> start -> wait until `exec true` answers -> copy the
workspace in -> exec the agent as node -> (copy the workspace back) -> stop -> delete.
Plain env reaches the agent as `-e K=V`; secrets only as `--secret-env NAME=NAME`
references that smolvm resolves from its own environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bottle.backend import DEFAULT_USER, WORKSPACE, ExecResult, launcher_alive, shell
from bottle.tools import smolvm
from bottle.tools.smolvm import Dialect
from cache import cache_root
from cache.atomic import write_atomic


class SmolmachinesBottle:
    def __init__(
        self,
        name: str,
        *,
        guest_env: Mapping[str, str],
        agent_command: str = "claude",
        secret_env: Sequence[str] = (),
        dialect: Dialect | None = None,
        state_dir: Path | None = None,
        teardown: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.guest_env = dict(guest_env)
        self.agent_command = agent_command
        self.secret_env = list(secret_env)
        self._dialect = dialect
        self.state_dir = state_dir
        self._teardown = teardown

    @property
    def dialect(self) -> Dialect:
        if self._dialect is None:
            self._dialect = smolvm.detect_dialect()
        return self._dialect

    def agent_argv(self, extra: Sequence[str], *, tty: bool) -> list[str]:
        cmd = smolvm.machine_exec_cmd(
            self.name, [self.agent_command, *extra], dialect=self.dialect, user=DEFAULT_USER,
            env=self.guest_env, secret_env=self.secret_env, workdir=WORKSPACE,
            interactive=tty, tty=tty, state_dir=self.state_dir,
        )
        return [str(a) for a in cmd.formulate()]

    def exec(self, cmd: str | Sequence[str], *, user: str = DEFAULT_USER) -> ExecResult:
        r = smolvm.machine_exec(self.name, shell(cmd), dialect=self.dialect, user=user,
                                state_dir=self.state_dir)
        return ExecResult(r.returncode, r.stdout, r.stderr)

    def close(self) -> None:
        teardown, self._teardown = self._teardown, None
        if teardown is not None:
            teardown()


def _runs() -> Path:
    return cache_root() / "run" / "smolmachines"


def _copy_in(b: SmolmachinesBottle, workspace: Path, tmp: Path) -> None:
    archive = tmp / "workspace-in.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(workspace, arcname=".")
    smolvm.machine_cp(str(archive), f"{b.name}:/tmp/workspace-in.tar", dialect=b.dialect,
                      state_dir=b.state_dir)
    _must(b, f"mkdir -p {WORKSPACE} && tar -xf /tmp/workspace-in.tar -C {WORKSPACE} "
             f"&& rm /tmp/workspace-in.tar && chown -R {DEFAULT_USER} {WORKSPACE}")


def _copy_out(b: SmolmachinesBottle, workspace: Path, tmp: Path) -> None:
    """What the agent wrote lands back in the host workspace (deletions are not mirrored)."""
    _must(b, f"tar -cf /tmp/workspace-out.tar -C {WORKSPACE} .")
    archive = tmp / "workspace-out.tar"
    smolvm.machine_cp(f"{b.name}:/tmp/workspace-out.tar", str(archive), dialect=b.dialect,
                      state_dir=b.state_dir)
    with tarfile.open(archive) as tar:
        tar.extractall(workspace, filter="data")


def _must(b: SmolmachinesBottle, script: str) -> None:
    r = b.exec(script, user="root")
    if r.returncode != 0:
        raise smolvm.SmolvmError(["smolvm", "machine", "exec", "--name", b.name], r.returncode,
                                 r.stdout, r.stderr)


def start(
    artifact: Path,
    *,
    launch_id: str,
    agent_command: str,
    workspace: Path,
    network: str,
    allow_cidrs: Sequence[str],
    env: Mapping[str, str],
    secrets: Sequence[str],
    state_dir: Path | None,
) -> SmolmachinesBottle:
    dialect = smolvm.detect_dialect()
    name = f"bot-bottle-{launch_id}"
    record = _runs() / f"{name}.json"
    write_atomic(record, json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                     "state_dir": str(state_dir or "")}).encode())
    kw: dict[str, Any] = {"dialect": dialect, "state_dir": state_dir}
    tmp = Path(tempfile.mkdtemp(prefix="bot-bottle-ws."))

    def teardown() -> None:
        try:
            try:
                _copy_out(bottle, workspace, tmp)
            finally:
                try:
                    smolvm.machine_stop(name, **kw)
                finally:
                    smolvm.machine_delete(name, **kw)
        finally:
            record.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)

    bottle = SmolmachinesBottle(name, guest_env=env, agent_command=agent_command,
                                secret_env=secrets, dialect=dialect, state_dir=state_dir)
    created = False
    try:
        smolvm.machine_create(name, from_path=artifact, allow_cidrs=allow_cidrs,
                              net=network != "none" or bool(allow_cidrs), **kw)
        created = True
        smolvm.machine_start(name, **kw)
        smolvm.wait_exec_ready(name, **kw)
        _copy_in(bottle, workspace, tmp)
    except BaseException:
        try:
            if created:
                _remove_quietly(name, state_dir=state_dir)
        finally:
            record.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    bottle._teardown = teardown
    return bottle


def _remove_quietly(name: str, *, state_dir: Path | None) -> None:
    """Stop and delete a machine whose errors must not hide the failure being handled."""
    for step in (smolvm.machine_stop, smolvm.machine_delete):
        with contextlib.suppress(smolvm.SmolvmError):
            step(name, state_dir=state_dir)


def sweep() -> list[str]:
    """Stop and delete machines whose launching process is gone; return their names."""
    removed: list[str] = []
    runs = _runs()
    if not runs.is_dir():
        return removed
    for record in runs.glob("*.json"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if launcher_alive(data.get("host"), data.get("pid")):
            continue
        name = record.stem
        _remove_quietly(name, state_dir=Path(data["state_dir"]) if data.get("state_dir") else None)
        record.unlink(missing_ok=True)
        removed.append(name)
    return removed
