"""skopeo CLI: copy a `docker save` archive to a registry."""

from __future__ import annotations

import ipaddress
import os
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


# --- OCI copies between the engine, a local OCI layout and a registry ---------------------


def daemon(ref: str) -> str:
    """A `docker-daemon:` location (an image id or name:tag in the engine)."""
    return f"docker-daemon:{ref}"


def registry(ref: str) -> str:
    """A `docker://` location (HOST/REPO:TAG or HOST/REPO@DIGEST)."""
    return f"docker://{ref}"


def layout(path: Path, name: str) -> str:
    """An `oci:` location: a local OCI image layout directory and a name in it."""
    return f"oci:{path}:{name}"


def _side(prefix: str, location: str) -> list[str]:
    """Flags for one side of a copy: plain HTTP only for a registry on loopback; the
    engine as DOCKER_HOST names it (skopeo does not read DOCKER_HOST itself)."""
    if location.startswith("docker://"):
        return _tls(f"--{prefix}-tls-verify", location.removeprefix("docker://"))
    host = os.environ.get("DOCKER_HOST")
    if location.startswith("docker-daemon:") and host:
        return [f"--{prefix}-daemon-host={host}"]
    return []


def copy_cmd(src: str, dest: str, *, digestfile: Path | None = None,
             retries: int = 2) -> Command:
    """`skopeo copy SRC DEST`, digests preserved (what was verified is what lands).
    Credentials come from where OCI clients keep them ($REGISTRY_AUTH_FILE, the
    containers auth file, ~/.docker/config.json and its helpers): never on argv."""
    return TOOL.cmd("copy", "--quiet", "--preserve-digests", f"--retry-times={retries}",
                    *_side("src", src), *_side("dest", dest),
                    *([f"--digestfile={digestfile}"] if digestfile else []), "--", src, dest)


def copy(src: str, dest: str, *, digestfile: Path | None = None, progress: bool = False,
         timeout: float | None = None, retries: int = 2) -> None:
    _proc.run(copy_cmd(src, dest, digestfile=digestfile, retries=retries), progress=progress,
              timeout=timeout)
