"""Docker backend: a detached container from the built image; the agent via `docker exec`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bottle.backend import DEFAULT_USER, LABEL, WORKSPACE, ExecResult, launcher_alive, shell
from bottle.errors import BottleError
from bottle.tools import docker
from bottle.tools.docker import Mount

# Keeps the container alive for `docker exec`, whatever the image's own entrypoint is.
_IDLE = ["-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


class DockerBottle:
    def __init__(
        self,
        container: str,
        teardown: Callable[[], None],
        prompt_path_in_container: str | None = None,
        agent_command: str = "claude",
        *,
        workdir: str = WORKSPACE,
    ) -> None:
        self.container = container
        self._teardown: Callable[[], None] | None = teardown
        self.prompt_path_in_container = prompt_path_in_container
        self.agent_command = agent_command
        self.workdir = workdir

    def agent_argv(self, extra: Sequence[str], *, tty: bool) -> list[str]:
        cmd = docker.exec_cmd(
            self.container, [self.agent_command, *extra], user=DEFAULT_USER,
            tty=tty, interactive=tty, workdir=self.workdir,
        )
        return [str(a) for a in cmd.formulate()]

    def exec(self, cmd: str | Sequence[str], *, user: str = DEFAULT_USER) -> ExecResult:
        r = docker.TOOL.run(docker.exec_cmd(self.container, shell(cmd), user=user), check=False)
        return ExecResult(r.returncode, r.stdout, r.stderr)

    def close(self) -> None:
        teardown, self._teardown = self._teardown, None
        if teardown is not None:
            teardown()


def _env_file(env: Mapping[str, str], directory: Path) -> Path:
    """A 0600 env file: values never reach argv or `ps`."""
    for k, v in env.items():
        if "\n" in v or "\n" in k:
            raise BottleError(f"the value of {k} spans lines, which a docker env file can't hold")
    path = directory / "env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in env.items())
    return path


def start(
    image_id: str,
    *,
    launch_id: str,
    agent_command: str,
    workspace: Path,
    network: str,
    env: Mapping[str, str],
) -> DockerBottle:
    """Start the container detached (labelled with the tool, the launch and our pid)."""
    name = f"bot-bottle-{launch_id}"
    labels = {LABEL: "1", f"{LABEL}.launch": launch_id, f"{LABEL}.pid": str(os.getpid()),
              f"{LABEL}.host": os.uname().nodename}
    with tempfile.TemporaryDirectory(prefix="bot-bottle-env.") as tmp:
        cmd = docker.run_cmd(
            image_id, _IDLE, name=name, detach=True, labels=labels,
            env_file=_env_file(env, Path(tmp)), network=network, user=DEFAULT_USER,
            mounts=[Mount(workspace.resolve(), WORKSPACE)], workdir=WORKSPACE,
            entrypoint="/bin/sh",
        )
        try:
            docker.TOOL.run(cmd, secrets=env.values())
        except BaseException:
            docker.rm_f(name)  # a half-started container must not outlive us
            raise
    return DockerBottle(name, lambda: docker.rm_f(name), None, agent_command)


def sweep() -> list[str]:
    """Remove bottles whose launching process is gone (a killed run); return their names."""
    dead = []
    for c in docker.ps(labels={LABEL: "1"}):
        labels = dict(kv.split("=", 1) for kv in c.get("Labels", "").split(",") if "=" in kv)
        if not launcher_alive(labels.get(f"{LABEL}.host"), labels.get(f"{LABEL}.pid")):
            dead.append(c["Names"])
    docker.rm_f(*dead)
    return dead

