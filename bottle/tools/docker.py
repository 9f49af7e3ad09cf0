"""docker CLI: argv builders, runners and `DockerError`.

Secrets never reach argv: container env goes through `--env-file` (a 0600 file the
caller owns) and `exec -e NAME` (the value is read from the docker CLI's environment).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bottle import reference
from bottle.tools._argv import flag, opt, pairs, repeat
from bottle.tools._proc import Tool, ToolError


class DockerError(ToolError):
    """docker exited non-zero (engine down, build failed, unknown image, ...)."""


TOOL = Tool(
    "docker",
    "install the Docker engine and CLI (Debian: apt-get install docker.io) and start dockerd",
    DockerError,
)


@dataclass(frozen=True)
class Mount:
    """A bind mount: host `source` at `target` in the container."""

    source: Path
    target: str
    readonly: bool = False

    def spec(self) -> str:
        ro = ",readonly" if self.readonly else ""
        return f"type=bind,source={self.source},target={self.target}{ro}"


# --- argv builders ------------------------------------------------------------------------


def build_cmd(
    context: Path,
    *,
    tag: str | None = None,
    dockerfile: Path | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    iidfile: Path | None = None,
    labels: Mapping[str, str] | None = None,
) -> Any:
    return TOOL[("build", *opt("-t", tag), *opt("-f", dockerfile),
                 *pairs("--build-arg", build_args), *opt("--target", target),
                 *opt("--iidfile", iidfile), *pairs("--label", labels), str(context))]


def inspect_image_cmd(ref: str) -> Any:
    return TOOL["image", "inspect", "--format", "{{json .}}", ref]


# Values that name images are checked by the reference grammar, and come after `--`, so
# that none of them can be read as a flag (docker 28's pull, save and tag all take `--`).


def save_cmd(ref: str, output: Path) -> Any:
    """`ref`: an image ID or a reference. The output path is joined to its flag."""
    return TOOL["save", f"--output={output}", "--", reference.check_any(ref)]


def tag_cmd(source: str, target: str) -> Any:
    """`source`: an image ID or a reference; `target`: a reference without a digest."""
    reference.parse_tag_target(target)
    return TOOL["tag", "--", reference.check_any(source), target]


def push_cmd(ref: str) -> Any:
    return TOOL["push", ref]


def pull_cmd(ref: str, *, quiet: bool = True) -> Any:
    reference.parse(ref)
    return TOOL[("pull", *flag("-q", quiet), "--", ref)]


def run_cmd(
    image: str,
    command: Sequence[str] = (),
    *,
    name: str | None = None,
    detach: bool = False,
    remove: bool = False,
    labels: Mapping[str, str] | None = None,
    env_file: Path | None = None,
    network: str | None = None,
    user: str | None = None,
    mounts: Sequence[Mount] = (),
    workdir: str | None = None,
    entrypoint: str | None = None,
    init: bool = False,
) -> Any:
    return TOOL[("run", *flag("-d", detach), *flag("--rm", remove), *flag("--init", init),
                 *opt("--name", name), *pairs("--label", labels), *opt("--env-file", env_file),
                 *opt("--network", network), *opt("--user", user),
                 *repeat("--mount", (m.spec() for m in mounts)), *opt("--workdir", workdir),
                 *opt("--entrypoint", entrypoint), image, *command)]


def exec_cmd(
    container: str,
    command: Sequence[str],
    *,
    user: str | None = None,
    env_names: Sequence[str] = (),
    tty: bool = False,
    interactive: bool = False,
    workdir: str | None = None,
) -> Any:
    """`env_names` are passed as bare `-e NAME`: docker reads each value from its own env."""
    return TOOL[("exec", *flag("-i", interactive), *flag("-t", tty), *opt("-u", user),
                 *repeat("-e", env_names), *opt("-w", workdir), container, *command)]


def rm_cmd(*containers: str) -> Any:
    return TOOL[("rm", "-f", "-v", *containers)]


def ps_cmd(*, labels: Mapping[str, str | None]) -> Any:
    filters = repeat("--filter", (f"label={k}" + (f"={v}" if v else "") for k, v in labels.items()))
    return TOOL[("ps", "-a", "--no-trunc", *filters, "--format", "{{json .}}")]


def network_create_cmd(name: str, *, internal: bool = False) -> Any:
    return TOOL[("network", "create", *flag("--internal", internal), name)]


def network_rm_cmd(name: str) -> Any:
    return TOOL["network", "rm", name]


# --- runners -----------------------------------------------------------------------------


def build_image(
    context: Path,
    tag: str,
    *,
    dockerfile: Path | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    iidfile: Path,
    progress: bool = False,
) -> str:
    """Build and return the image id (`sha256:...`) docker wrote to `iidfile`."""
    cmd = build_cmd(
        context, tag=tag, dockerfile=dockerfile, build_args=build_args, target=target,
        iidfile=iidfile,
    )
    TOOL.run(cmd, progress=progress, secrets=(build_args or {}).values())
    return iidfile.read_text().strip()


def inspect_image(ref: str) -> dict[str, Any] | None:
    """The image's inspect JSON, or None when the engine has no such image."""
    r = TOOL.run(inspect_image_cmd(ref), check=False)
    if r.returncode != 0:
        if "no such image" in r.stderr.lower() or "no such object" in r.stderr.lower():
            return None
        raise DockerError(r.argv, r.returncode, r.stdout, r.stderr)
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def image_id(ref: str) -> str:
    """`sha256:...` for `ref`; DockerError when the engine does not have it."""
    info = inspect_image(ref)
    if info is None:
        raise DockerError(["docker", "image", "inspect", ref], 1, reason=f"no such image: {ref}")
    return str(info["Id"])


def save(ref: str, output: Path, *, progress: bool = False) -> None:
    TOOL.run(save_cmd(ref, output), progress=progress)


def tag(source: str, target: str) -> None:
    TOOL.run(tag_cmd(source, target))


def push(ref: str, *, progress: bool = False) -> None:
    TOOL.run(push_cmd(ref), progress=progress)


def pull(ref: str) -> None:
    TOOL.run(pull_cmd(ref))


def rm_f(*containers: str) -> None:
    if containers:
        TOOL.run(rm_cmd(*containers), check=False)


def ps(*, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
    out = TOOL.run(ps_cmd(labels=labels)).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def network_create(name: str, *, internal: bool = False) -> None:
    TOOL.run(network_create_cmd(name, internal=internal))


def network_rm(name: str) -> None:
    TOOL.run(network_rm_cmd(name), check=False)


# --- engine API, for the hot path that must not spawn `docker` -------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _engine_connection(timeout: float) -> http.client.HTTPConnection | None:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    url = urllib.parse.urlparse(host)
    if url.scheme == "unix":
        return _UnixHTTPConnection(url.path, timeout)
    if url.scheme == "tcp" and not os.environ.get("DOCKER_TLS_VERIFY"):
        host = url.hostname or "localhost"
        return http.client.HTTPConnection(host, url.port or 2375, timeout=timeout)
    return None


def engine_has_image(image_id: str, *, timeout: float = 5.0) -> bool:
    """Ask the engine's API whether it still has `image_id`, without running `docker`.

    Falls back to `docker image inspect` where the engine is not reachable as plain
    HTTP (TLS, ssh:// or a docker context).
    """
    conn = None if os.environ.get("DOCKER_CONTEXT") else _engine_connection(timeout)
    if conn is None:
        return inspect_image(image_id) is not None
    try:
        conn.request("GET", f"/images/{urllib.parse.quote(image_id, safe='')}/json")
        status = conn.getresponse().status
    except OSError as err:
        raise DockerError(
            ["docker", "image", "inspect", image_id], 1,
            reason=f"cannot reach the Docker engine: {err}",
        ) from None
    finally:
        conn.close()
    return status == 200
