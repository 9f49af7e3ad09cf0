"""docker CLI: argv builders, runners and `DockerError`.

No value can become a flag: option values use the `--flag=value` form and positional
values come after `--`. Secrets never reach argv: container env is passed as bare
`-e NAME`, which the docker CLI fills from its own environment (the runner sets it).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bottle import reference
from bottle.errors import BottleError
from bottle.tools import _http, _proc
from bottle.tools._argv import eq, flag, pairs_eq, repeat_eq
from bottle.tools._http import quote
from bottle.tools._proc import Command, Result, Tool, ToolError
from cache.errors import quoted
from cache.record import dataclass, field

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any


class DockerError(ToolError):
    """docker exited non-zero (engine down, build failed, unknown image, ...)."""


TOOL = Tool(
    "docker",
    "install the Docker engine and CLI (Debian: apt-get install docker.io) and start dockerd",
    DockerError,
)
TEARDOWN_TIMEOUT = 60.0


def config_dir() -> Path:
    """The docker CLI's configuration directory (config.json, cli-plugins)."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


class _Unread:
    """What `config_json` gives for a file it could not read as JSON."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"<config.json {self.why}>"


ABSENT, UNREADABLE = _Unread("absent"), _Unread("unreadable")


def config_json() -> object:
    """The docker CLI's config.json as parsed JSON, or ABSENT (no file) or UNREADABLE (not
    readable, not JSON). Read once while its stat stays the same (several readers: the
    plugin directories, who pulls, what a memo watches)."""
    path = config_dir() / "config.json"
    try:
        st = path.stat()
    except FileNotFoundError:
        return ABSENT
    except OSError:
        return UNREADABLE
    return _config_json(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=4)
def _config_json(path: str, size: int, mtime_ns: int, ino: int) -> object:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return ABSENT
    except (OSError, ValueError):
        return UNREADABLE


def positional(value: str, what: str) -> str:
    """A value for a positional slot: refused when the tool could read it as something
    else (empty, a flag, or holding control characters)."""
    if not value or value.startswith("-") or any(ord(c) < 32 or c == "\x7f" for c in value):
        raise BottleError(f"invalid {what} {value!r}")
    return value


def _csv_field(text: str) -> str:
    """One field of docker's `--mount` value (read with Go's encoding/csv)."""
    return '"' + text.replace('"', '""') + '"'


@dataclass(frozen=True)
class Mount:
    """A bind mount: host `source` at `target` in the container."""

    source: Path
    target: str
    readonly: bool = False

    def spec(self) -> str:
        """The `--mount` value. Every field is CSV-quoted, so a comma, quote or `=` in a
        path stays part of that path; a CR (which Go's CSV reader rewrites) is refused."""
        source = str(self.source)
        if "\r" in source or "\0" in source:
            raise BottleError(f"cannot mount {quoted(source)}: the path holds a carriage return")
        try:
            os.fsencode(source).decode("utf-8")
        except UnicodeDecodeError:
            raise BottleError(f"cannot mount {quoted(source)}: the path is not UTF-8, and docker's "
                              "API can only name UTF-8 paths") from None
        fields = ["type=bind", f"source={source}", f"target={self.target}"]
        return ",".join(_csv_field(f) for f in fields) + (",readonly" if self.readonly else "")


@dataclass(frozen=True)
class RunSpec:
    """Options of `docker run` that matter to a bottle (each maps to one flag)."""

    name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    env_names: Sequence[str] = ()
    network: str | None = None
    network_aliases: Sequence[str] = ()
    user: str | None = None
    mounts: Sequence[Mount] = ()
    volumes: Sequence[str] = ()
    workdir: str | None = None
    entrypoint: str | None = None
    detach: bool = False
    remove: bool = False
    interactive: bool = False
    tty: bool = False
    init: bool = False
    cap_drop: Sequence[str] = ()
    security_opt: Sequence[str] = ()
    pids_limit: int | None = None
    cpus: str | None = None
    memory: str | None = None
    read_only: bool = False
    dns: Sequence[str] = ()


# --- argv builders ------------------------------------------------------------------------


def build_cmd(
    context: Path | str,
    *,
    tag: str | None = None,
    dockerfile: Path | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    iidfile: Path | None = None,
    labels: Mapping[str, str] | None = None,
    network: str | None = None,
) -> Command:
    return TOOL.cmd(
        "build", "--force-rm", *eq("--tag", tag), *eq("--file", dockerfile),
        *pairs_eq("--build-arg", build_args or {}),
        *eq("--target", target), *eq("--iidfile", iidfile),
        *pairs_eq("--label", labels or {}),
        *eq("--network", network), "--", str(context),
    )


def inspect_image_cmd(ref: str) -> Command:
    return TOOL.cmd("image", "inspect", "--format={{json .}}", "--", positional(ref, "image"))


# Image values are also checked by the reference grammar (bottle.reference): a bad one is
# one line naming it and why, before any argv exists.


def save_cmd(ref: str, output: Path) -> Command:
    """`ref`: an image ID or a reference."""
    return TOOL.cmd("save", f"--output={output}", "--",
                    positional(reference.check_any(ref), "image"))


def tag_cmd(source: str, target: str) -> Command:
    """`source`: an image ID or a reference; `target`: a reference without a digest."""
    reference.parse_tag_target(target)
    return TOOL.cmd("tag", "--", positional(reference.check_any(source), "image"),
                    positional(target, "image"))


def pull_cmd(ref: str) -> Command:
    reference.parse(ref)
    return TOOL.cmd("pull", "--quiet", "--", positional(ref, "image"))


def _container(verb: str, image: str, command: Sequence[str], spec: RunSpec) -> Command:
    s = spec
    return TOOL.cmd(
        verb, *flag("--detach", s.detach), *flag("--rm", s.remove),
        *flag("--interactive", s.interactive), *flag("--tty", s.tty), *flag("--init", s.init),
        *eq("--name", s.name), *pairs_eq("--label", s.labels),
        *repeat_eq("--env", s.env_names), *eq("--network", s.network),
        *repeat_eq("--network-alias", s.network_aliases), *eq("--user", s.user),
        *repeat_eq("--mount", [m.spec() for m in s.mounts]),
        *repeat_eq("--volume", s.volumes), *eq("--workdir", s.workdir),
        *eq("--entrypoint", s.entrypoint), *repeat_eq("--cap-drop", s.cap_drop),
        *repeat_eq("--security-opt", s.security_opt),
        *eq("--pids-limit", s.pids_limit), *eq("--cpus", s.cpus),
        *eq("--memory", s.memory), *flag("--read-only", s.read_only),
        *repeat_eq("--dns", s.dns),
        "--", positional(image, "image"), *command,
    )


def run_cmd(image: str, command: Sequence[str], spec: RunSpec) -> Command:
    return _container("run", image, command, spec)


def create_cmd(image: str, command: Sequence[str], spec: RunSpec) -> Command:
    """`docker create`: every option is checked (network, user, mounts) before anything
    runs, and the container exists, labelled, before its process starts."""
    return _container("create", image, command, spec)


def start_cmd(container: str, *, attach: bool = False, interactive: bool = False) -> Command:
    return TOOL.cmd("start", *flag("--attach", attach), *flag("--interactive", interactive),
                    "--", positional(container, "container"))


def exec_cmd(
    container: str,
    command: Sequence[str],
    *,
    user: str | None = None,
    env_names: Sequence[str] = (),
    tty: bool = False,
    interactive: bool = False,
    workdir: str | None = None,
) -> Command:
    """`env_names` are passed as bare `-e NAME`: docker reads each value from its own env."""
    return TOOL.cmd("exec", *flag("--interactive", interactive), *flag("--tty", tty),
                    *eq("--user", user), *repeat_eq("--env", env_names),
                    *eq("--workdir", workdir), "--", positional(container, "container"),
                    *command)


def rm_cmd(*containers: str) -> Command:
    return TOOL.cmd("rm", "--force", "--volumes", "--",
                    *(positional(c, "container") for c in containers))


def ps_cmd(*, labels: Mapping[str, str | None]) -> Command:
    return TOOL.cmd("ps", "--all", "--no-trunc", *_label_filters(labels), "--format={{json .}}")


def _label_filters(labels: Mapping[str, str | None]) -> list[str]:
    return [f"--filter=label={k}" + (f"={v}" if v else "") for k, v in labels.items()]


def images_cmd(*, labels: Mapping[str, str | None]) -> Command:
    return TOOL.cmd("image", "ls", "--all", "--no-trunc", *_label_filters(labels),
                    "--format={{json .}}")


def rmi_cmd(*images: str) -> Command:
    return TOOL.cmd("image", "rm", "--", *(positional(i, "image") for i in images))


def network_create_cmd(
    name: str, *, internal: bool = False, labels: Mapping[str, str] | None = None,
    options: Mapping[str, str] | None = None,
) -> Command:
    return TOOL.cmd("network", "create", *flag("--internal", internal),
                    *pairs_eq("--label", labels or {}),
                    *pairs_eq("--opt", options or {}),
                    "--", positional(name, "network"))


def network_connect_cmd(network: str, container: str) -> Command:
    return TOOL.cmd("network", "connect", "--", positional(network, "network"),
                    positional(container, "container"))


def import_cmd(source: Path, tag: str | None = None, *, changes: Sequence[str] = ()) -> Command:
    """`docker import`: a rootfs tarball becomes an image (prints its id)."""
    return TOOL.cmd("import", *repeat_eq("--change", changes), "--", str(source),
                    *([positional(tag, "image")] if tag else []))


def logs_cmd(container: str) -> Command:
    return TOOL.cmd("logs", "--", positional(container, "container"))


def inspect_cmd(name: str, *, fmt: str = "{{json .}}") -> Command:
    """`docker inspect` of any object (container, network, image) by name or id."""
    return TOOL.cmd("inspect", f"--format={fmt}", "--", positional(name, "object"))


def network_rm_cmd(*names: str) -> Command:
    return TOOL.cmd("network", "rm", "--", *(positional(n, "network") for n in names))


def network_ls_cmd(*, labels: Mapping[str, str | None]) -> Command:
    return TOOL.cmd("network", "ls", "--no-trunc", *_label_filters(labels),
                    "--format={{json .}}")


# --- runners -----------------------------------------------------------------------------


def build_image(
    context: Path | str,
    tag: str,
    *,
    dockerfile: Path | None = None,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    iidfile: Path | None,
    labels: Mapping[str, str] | None = None,
    network: str | None = None,
    progress: bool = False,
    context_tar: bytes | None = None,
) -> str:
    """Build and return the image id (`sha256:...`): what docker wrote to `iidfile`, or
    without one (nowhere to write it) the id the tag names after the build. With
    `context_tar`, the context is that tar, given on stdin (nothing on disk)."""
    cmd = build_cmd("-" if context_tar is not None else context, tag=tag,
                    dockerfile=dockerfile, build_args=build_args, target=target,
                    iidfile=iidfile, labels=labels, network=network)
    _proc.run(cmd, progress=progress and context_tar is None, input=context_tar,
              secrets=(build_args or {}).values())
    if iidfile is not None:
        return iidfile.read_text().strip()
    info = engine_image(tag)
    if info is None:
        raise DockerError(cmd.argv, 1, reason=f"the build left no image tagged {tag}")
    return str(info["Id"])


def inspect_image(ref: str) -> dict[str, Any] | None:
    """The image's inspect JSON, or None when the engine has no such image."""
    r = _proc.run(inspect_image_cmd(ref), check=False)
    if r.returncode != 0:
        if "no such image" in r.stderr.lower() or "no such object" in r.stderr.lower():
            return None
        raise DockerError(r.argv, r.returncode, r.stdout, r.stderr)
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def save(ref: str, output: Path, *, progress: bool = False) -> None:
    _proc.run(save_cmd(ref, output), progress=progress)


def tag(source: str, target: str) -> None:
    _proc.run(tag_cmd(source, target))


def pull(ref: str, *, meanwhile: Callable[[subprocess.Popen[bytes]], object] | None = None
         ) -> None:
    """`docker pull`; `meanwhile` is given its process once it runs (see `_proc.run`)."""
    _proc.run(pull_cmd(ref), meanwhile=meanwhile)


def rm_f(*containers: str) -> Result | None:
    """Remove containers (running or not); a missing one is not an error."""
    if not containers:
        return None
    return _proc.run(rm_cmd(*containers), check=False, timeout=TEARDOWN_TIMEOUT)


def ps(*, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
    return _json_lines(_proc.run(ps_cmd(labels=labels)).stdout)


def images(*, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
    return _json_lines(_proc.run(images_cmd(labels=labels)).stdout)


def rmi(*image_ids: str) -> Result | None:
    if not image_ids:
        return None
    return _proc.run(rmi_cmd(*image_ids), check=False)


def network_create(name: str, *, internal: bool = False,
                   labels: Mapping[str, str] | None = None,
                   options: Mapping[str, str] | None = None) -> None:
    _proc.run(network_create_cmd(name, internal=internal, labels=labels, options=options))


def network_rm(*names: str) -> Result | None:
    if not names:
        return None
    return _proc.run(network_rm_cmd(*names), check=False, timeout=TEARDOWN_TIMEOUT)


def network_connect(network: str, container: str) -> None:
    _proc.run(network_connect_cmd(network, container))


def import_image(source: Path, tag: str, *, changes: Sequence[str] = (),
                 progress: bool = False) -> str:
    """Import a rootfs tarball as `tag`; return the image id (`sha256:...`)."""
    out = _proc.run(import_cmd(source, tag, changes=changes), progress=progress).stdout
    ids = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("sha256:")]
    if ids:
        return ids[-1]
    info = engine_image(tag)
    if info is None:
        raise DockerError(import_cmd(source, tag).argv, 1, reason=f"no image {tag} after import")
    return str(info["Id"])


def start(*containers: str) -> None:
    for c in containers:
        _proc.run(start_cmd(c))


def logs(container: str) -> tuple[str, str]:
    """(stdout, stderr) the container has written so far."""
    r = _proc.run(logs_cmd(container))
    return r.stdout, r.stderr


def networks(*, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
    return _json_lines(_proc.run(network_ls_cmd(labels=labels)).stdout)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def labels_of(row: Mapping[str, Any]) -> dict[str, str]:
    """The labels of a `ps`/`image ls`/`network ls` JSON row ("k=v,k2=v2")."""
    raw = row.get("Labels") or ""
    return dict(kv.split("=", 1) for kv in str(raw).split(",") if "=" in kv)


# --- engine API, for the hot path that must not spawn `docker` -------------------------


def _engine_request(method: str, path: str, what: Sequence[str], timeout: float, *,
                    body: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request to the engine's API: (status, body). `what` is the CLI equivalent,
    for errors. LookupError when there is no plain-HTTP way to the engine."""
    endpoint = _http.from_env()
    if endpoint is None:
        raise LookupError("no direct way to the engine")
    try:
        answer = _http.request(endpoint, method, path, body=body, headers=headers,
                               timeout=timeout)
    except OSError as err:
        raise unreachable(what, err) from None
    return answer.status, answer.body


def unreachable(what: Sequence[str], err: OSError) -> DockerError:
    """The error for an engine API call that got no answer (`what`: the CLI equivalent)."""
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return DockerError(list(what), 1, reason=f"cannot reach the Docker engine at {where} "
                       f"({err.strerror or err}): is dockerd running? (DOCKER_HOST names "
                       "another)")


def _engine_get(path: str, what: list[str], timeout: float) -> Any:
    """GET `path`: its JSON, None on 404."""
    status, body = _engine_request("GET", path, what, timeout)
    if status == 404:
        return None
    if status != 200:
        raise DockerError(what, 1, reason=f"engine answered {status}: {body[:200]!r}")
    return json.loads(body)


def _label_query(labels: Mapping[str, str | None]) -> str:
    wanted = [f"{k}={v}" if v else k for k, v in labels.items()]
    return quote(json.dumps({"label": wanted}))


def labelled(kind: str, labels: Mapping[str, str | None], *,
             timeout: float = 10.0) -> list[tuple[str, dict[str, str]]]:
    """(name, labels) of every container (`kind` "containers", running or not) or network
    ("networks") with these labels; over the API, else by the CLI."""
    what = ["docker", "ps" if kind == "containers" else "network ls"]
    try:
        # GET /networks lists networks (/networks/json would inspect one named "json").
        path = "/containers/json?all=1&" if kind == "containers" else "/networks?"
        rows = _engine_get(f"{path}filters={_label_query(labels)}", what, timeout) or []
    except LookupError:
        listed = ps(labels=labels) if kind == "containers" else networks(labels=labels)
        return [(str(r.get("Names") or r.get("Name")), labels_of(r)) for r in listed]
    if kind == "containers":
        return [(str(r["Names"][0]).lstrip("/"), dict(r.get("Labels") or {})) for r in rows]
    return [(str(r["Name"]), dict(r.get("Labels") or {})) for r in rows]


def remove_container(name: str, *, timeout: float = TEARDOWN_TIMEOUT) -> bool:
    """Remove a container (running or not) with its anonymous volumes; True when it is
    gone (a missing one counts). Over the API, else `docker rm -f`."""
    quoted = quote(positional(name, "container"))
    try:
        status, _ = _engine_request("DELETE", f"/containers/{quoted}?force=1&v=1",
                                    ["docker", "rm", "-f", name], timeout)
    except LookupError:
        r = rm_f(name)
        return r is None or r.returncode == 0 or "no such container" in r.stderr.lower()
    return status in (204, 404)


def engine_image(ref: str, *, timeout: float = 5.0) -> dict[str, Any] | None:
    """The engine's inspect JSON for `ref` (id or name), None when it has no such image;
    asked over the engine's API without running `docker`, falling back to the CLI where
    the engine is not plain HTTP (TLS, ssh:// or a docker context)."""
    what = ["docker", "image", "inspect", ref]
    try:
        status, body = _engine_request(
            "GET", f"/images/{quote(ref)}/json", what, timeout)
    except LookupError:
        return inspect_image(ref)
    if status == 404:
        return None
    if status == 400 and b"invalid reference format" in body:
        # Valid by the grammar the CLI uses, refused by this engine's older one (e.g. an
        # upper-case first component: a registry host for the CLI, a name for the engine).
        detail = body.decode(errors="replace").split("invalid reference format", 1)[1]
        raise BottleError(f"bad image reference {ref!r}: this engine refuses it (invalid "
                          f"reference format{detail.split(chr(34))[0].rstrip()})")
    if status != 200:
        raise DockerError(what, 1, reason=f"engine answered {status}: {body[:200]!r}")
    data: dict[str, Any] = json.loads(body)
    return data


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _bytes(amount: str) -> int:
    """docker's memory amounts: a number with an optional b/k/m/g (binary) suffix."""
    text = amount.strip().lower()
    unit = text[-1] if text and text[-1] in "bkmg" else ""
    return int(float(text[: len(text) - len(unit)]) * _UNITS[unit])


def create_body(image: str, command: Sequence[str], spec: RunSpec,
                env: Mapping[str, str]) -> dict[str, Any]:
    """What `docker create` sends the engine for `create_cmd(image, command, spec)`, with
    each `--env NAME` filled from `env` (the JSON goes over the engine's socket, never
    argv)."""
    s = spec
    host: dict[str, Any] = {
        "AutoRemove": s.remove, "Init": s.init or None, "NetworkMode": s.network or "default",
        "Mounts": [{"Type": "bind", "Source": str(m.source), "Target": m.target,
                    "ReadOnly": m.readonly} for m in s.mounts if m.spec()],
        "Binds": list(s.volumes) or None, "CapDrop": list(s.cap_drop) or None,
        "SecurityOpt": list(s.security_opt) or None, "PidsLimit": s.pids_limit,
        "NanoCpus": int(float(s.cpus) * 1e9) if s.cpus else 0,
        "Memory": _bytes(s.memory) if s.memory else 0, "ReadonlyRootfs": s.read_only,
        "Dns": list(s.dns) or None,
    }
    body: dict[str, Any] = {
        "Image": positional(image, "image"), "Cmd": list(command) or None,
        "Entrypoint": [s.entrypoint] if s.entrypoint else None, "User": s.user or "",
        "WorkingDir": s.workdir or "", "Labels": dict(s.labels),
        "Env": [f"{n}={env[n]}" for n in s.env_names if n in env],
        "Tty": s.tty, "OpenStdin": s.interactive, "StdinOnce": s.interactive,
        "AttachStdin": s.interactive, "AttachStdout": True, "AttachStderr": True,
        "HostConfig": host,
    }
    if s.network_aliases and s.network:
        body["NetworkingConfig"] = {"EndpointsConfig": {
            s.network: {"Aliases": list(s.network_aliases)}}}
    return body


def create(image: str, command: Sequence[str], spec: RunSpec, *,
           env: Mapping[str, str], timeout: float = 60.0) -> None:
    """Create a container as `docker create` would: over the engine's API when it is
    plain HTTP (one process fewer on every launch), else by the CLI."""
    if _http.from_env() is None or spec.name is None:
        _proc.run(create_cmd(image, command, spec), env=env, secrets=env.values())
        return
    what = create_cmd(image, command, spec).argv
    body = json.dumps(create_body(image, command, spec, env)).encode()
    status, answer = _engine_request("POST", f"/containers/create?name={quote(spec.name)}",
                                     what, timeout, body=body,
                                     headers={"Content-Type": "application/json"})
    if status != 201:
        raise DockerError(what, 125, secrets=env.values(),
                          reason=f"Error response from daemon: {_http.message_of(answer)}")


def network_exists(name: str, *, timeout: float = 5.0) -> bool:
    try:
        return _engine_get(f"/networks/{quote(name)}",
                           ["docker", "network", "inspect", name], timeout) is not None
    except LookupError:
        r = _proc.run(TOOL.cmd("network", "inspect", "--", positional(name, "network")),
                      check=False)
        return r.returncode == 0


def start_attached(container: str, *, removes_itself: bool) -> int | None:
    """`docker start --attach` of a container created without a terminal or stdin, over
    the engine's API (the CLI's own start-up is a sixth of a headless launch): its output
    copied to ours as it comes, then its exit code. None where the engine is not plain
    HTTP (the caller runs the CLI). DockerError when it cannot start."""
    endpoint = _http.from_env()
    if endpoint is None:
        return None
    name = quote(positional(container, "container"))
    what = ["docker", "start", "--attach", container]
    waiting = None
    try:
        status, body, stream, pending = _http.upgrade(
            endpoint, "POST", f"/containers/{name}/attach?stream=1&stdout=1&stderr=1")
        if status not in (101, 200):
            raise _refused(what, body)
        try:
            # Asked before the start, as `docker run` asks: the answer comes at the exit, or
            # once the container is gone when it removes itself (as `docker run --rm`).
            until = "removed" if removes_itself else "next-exit"
            waiting = endpoint.connect(None)
            waiting.sendall(f"POST /containers/{name}/wait?condition={until} HTTP/1.1\r\n"
                            "Host: docker\r\nContent-Length: 0\r\n"
                            "Connection: close\r\n\r\n".encode())
            started = _http.request(endpoint, "POST", f"/containers/{name}/start",
                                    timeout=60.0)
            if started.status not in (204, 304):
                raise _refused(what, started.body)
            stream.settimeout(None)
            try:
                _copy_frames(stream, pending)
            except OutputClosed as err:  # the launch's teardown removes the bottle
                raise DockerError(what, 1, reason=str(err)) from None
        finally:
            stream.close()
        answer = _http.read_answer(waiting, "POST")
    except OSError as err:
        raise unreachable(what, err) from None
    finally:
        if waiting is not None:
            waiting.close()
    if answer.status != 200:
        raise _refused(what, answer.body)
    result = json.loads(answer.body)
    if (result.get("Error") or {}).get("Message"):
        raise DockerError(what, 1, reason=str(result["Error"]["Message"]))
    return int(result["StatusCode"])


class OutputClosed(Exception):
    """Our stdout or stderr cannot take the agent's output: `str()` says which and why."""


def _write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd`, also when the fd is non-blocking (a parent may hand us one):
    a full pipe is waited on, as the docker CLI's blocking write waits."""
    import select

    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])
        except OSError as err:
            name = "stdout" if fd == 1 else "stderr"
            if isinstance(err, BrokenPipeError):
                raise OutputClosed(f"write /dev/{name}: broken pipe (its reader went "
                                   "away)") from None
            raise OutputClosed(f"cannot write the agent's output to {name}: "
                               f"{err.strerror or err}") from None


def _refused(what: list[str], body: bytes) -> DockerError:
    """The error for an API call the engine answered with a refusal, as the CLI says it."""
    return DockerError(what, 1, reason=f"Error response from daemon: {_http.message_of(body)}")


def _copy_frames(stream: Any, pending: bytes) -> None:
    """The attach stream of a container without a terminal: frames of (stream, size)
    headers, stdout's to our stdout and stderr's to our stderr, until the end. A write
    that fails (a reader gone, a full disk) ends it with `OutputClosed`, as it ends the
    docker CLI: the agent must not run on unheard while the engine keeps its output."""
    buf = pending
    while True:
        while len(buf) < 8:
            chunk = stream.recv(65536)
            if not chunk:
                return
            buf += chunk
        kind, size = buf[0], int.from_bytes(buf[4:8], "big")
        while len(buf) < 8 + size:
            chunk = stream.recv(max(65536, 8 + size - len(buf)))
            if not chunk:
                return
            buf += chunk
        payload, buf = buf[8:8 + size], buf[8 + size:]
        if kind in (1, 2):
            _write_all(kind, payload)


def container_state(name: str) -> dict[str, Any] | None:
    """The container's State (Status, Error, ExitCode...), None when it is gone."""
    r = _proc.run(TOOL.cmd("container", "inspect", "--format={{json .State}}", "--",
                           positional(name, "container")), check=False)
    if r.returncode != 0:
        return None
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def engine_has_image(ref: str, *, timeout: float = 5.0) -> bool:
    return engine_image(ref, timeout=timeout) is not None
