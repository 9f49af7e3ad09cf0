"""The Bottle contract both backends keep (seed 004's parity scenarios)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cache.lock import pid_alive

DEFAULT_USER = "node"
WORKSPACE = "/workspace"
LABEL = "bot-bottle"


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


class Bottle(Protocol):
    """A running bottle: the agent's argv, commands in it, and its teardown."""

    def agent_argv(self, extra: Sequence[str], *, tty: bool) -> list[str]:
        """The host argv that runs the agent (with `extra` args) inside the bottle."""
        ...

    def exec(self, cmd: str | Sequence[str], *, user: str = DEFAULT_USER) -> ExecResult:
        """Run `cmd` (a shell string or an argv) inside the bottle and capture it."""
        ...

    def close(self) -> None:
        """Tear the bottle down; calling it again does nothing."""
        ...


def launcher_alive(host: str | None, pid: str | int | None) -> bool:
    """Whether the launch that made a bottle still runs: same host, and its pid is alive.
    A bottle whose launcher is gone was left by a killed run: sweep it."""
    pid = str(pid or "")
    return host == os.uname().nodename and pid.isdigit() and pid_alive(int(pid))


def shell(cmd: str | Sequence[str]) -> list[str]:
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
