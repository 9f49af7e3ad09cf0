"""crane CLI: push a `docker save` tarball to a registry."""

from __future__ import annotations

from pathlib import Path

from bottle.tools import _proc
from bottle.tools._proc import Command, Tool, ToolError
from bottle.tools.skopeo import is_loopback


class CraneError(ToolError):
    """crane exited non-zero."""


TOOL = Tool(
    "crane",
    "install crane (go-containerregistry); skopeo is used instead when crane is absent",
    CraneError,
)


def push_cmd(tarball: Path, ref: str) -> Command:
    return TOOL.cmd("push", *(["--insecure"] if is_loopback(ref) else []), "--", tarball, ref)


def push(tarball: Path, ref: str, *, progress: bool = False) -> None:
    _proc.run(push_cmd(tarball, ref), progress=progress)
