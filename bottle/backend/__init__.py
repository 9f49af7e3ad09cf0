"""The Bottle contract both backends keep (seed 004's parity scenarios)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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


def shell(cmd: str | Sequence[str]) -> list[str]:
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
