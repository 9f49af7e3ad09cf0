"""skopeo CLI: copy a `docker save` archive to a registry."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from bottle.tools import _proc
from bottle.tools._proc import Command, Tool, ToolError


class SkopeoError(ToolError):
    """skopeo exited non-zero (registry down, unknown manifest, bad archive)."""


TOOL = Tool("skopeo", "install skopeo (Debian: apt-get install skopeo)", SkopeoError)


def is_loopback(ref: str) -> bool:
    """True for refs whose registry host is localhost, 127.0.0.0/8 or [::1]."""
    host = ref.split("/", 1)[0]
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(flag: str, ref: str) -> list[str]:
    # Plain HTTP only for a registry on this machine's loopback: never weaken TLS elsewhere.
    return [f"{flag}=false"] if is_loopback(ref) else []


def copy_archive_cmd(archive: Path, ref: str) -> Command:
    return TOOL.cmd("copy", "--quiet", *_tls("--dest-tls-verify", ref), "--",
                    f"docker-archive:{archive}", f"docker://{ref}")


def copy_archive(archive: Path, ref: str, *, progress: bool = False) -> None:
    _proc.run(copy_archive_cmd(archive, ref), progress=progress)
