"""Docker backend: the agent is the container's main process (`docker run --rm`,
attached), hardened (no capabilities, no new privileges, a pids limit, an init), as
the workspace owner's uid so what it writes lands owned by the host user.

The agent's user is mapped to the workspace owner in a small derived image (cached by
image, user, uid and gid), the way the devcontainers CLI's updateRemoteUserUID does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import xxhash

from bottle import agents, image, progress
from bottle.backend import (
    DEFAULT_USER,
    LABEL,
    WORKSPACE,
    BottleSpec,
    Prepared,
    Teardown,
    labels,
    launcher_dead,
    shell,
    stdin_is_data,
)
from bottle.config import Config
from bottle.errors import BottleError
from bottle.signals import shielded
from bottle.tools import _proc
from bottle.tools import docker as docker_mod
from bottle.tools._proc import Result
from bottle.tools.docker import Mount, RunSpec
from cache import record, signals_held
from cache.atomic import write_atomic
from cache.errors import StorageError
from cache.store import Store

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Future

    from bottle import egress_net

LABEL_USER_OF = "bot-bottle.user-of"
# Maps the agent's user to the workspace owner: passwd/group entries and its home.
_REMAP = r"""set -eu
u="$1"; uid="$2"; gid="$3"
line=$(awk -F: -v u="$u" '$1 == u || $3 == u { print; exit }' /etc/passwd)
[ -n "$line" ] || { echo "bot-bottle: the image has no user $u" >&2; exit 3; }
u=$(echo "$line" | cut -d: -f1)  # `user` may be a uid: the name from here on
old_uid=$(echo "$line" | cut -d: -f3); old_gid=$(echo "$line" | cut -d: -f4)
home=$(echo "$line" | cut -d: -f6)
[ "$old_uid" != 0 ] || { echo "bot-bottle: user $u is root (uid 0) in the image" >&2; exit 4; }
sed -i "s/^$u:\([^:]*\):$old_uid:$old_gid:/$u:\1:$uid:$gid:/" /etc/passwd
group=$(awk -F: -v g="$old_gid" '$3 == g { print $1; exit }' /etc/group)
[ -z "$group" ] || sed -i "s/^$group:\([^:]*\):$old_gid:/$group:\1:$gid:/" /etc/group
mkdir -p "$home" /workspace
chown -R "$uid:$gid" "$home"
chown "$uid:$gid" /workspace
"""


class DockerBottle:
    """A bottle whose agent is the container's main process: `docker create` (which
    checks every option and labels the container before anything runs), then
    `docker start --attach`. `exec` works while the agent runs; `close` removes the
    container (and whatever else start made)."""

    def __init__(self, container: str, teardown: Teardown, *, image_id: str = "",
                 run: RunSpec | None = None, agent_command: str = "claude",
                 env: dict[str, str] | None = None) -> None:
        self.container = container
        self._teardown = teardown
        self.image_id = image_id
        self._run = run or RunSpec(name=container)
        self.agent_command = agent_command
        self._env = env or {}
        self._created: tuple[tuple[str, ...], bool] | None = None
        self.left: list[str] = []
        self.proxy: Future[None] | None = None  # the egress proxy, starting alongside
        self.egress: tuple[egress_net.EgressNet, bool, Path, BottleSpec] | None = None

    def _create(self, extra: Sequence[str], tty: bool) -> _proc.Command:
        spec = record.replace(self._run, interactive=tty, tty=tty)
        return docker_mod.create_cmd(self.image_id or "IMAGE",
                                     [self.agent_command, *extra], spec)

    def agent_argv(self, extra: Sequence[str], *, tty: bool) -> list[str]:
        return self._create(extra, tty).argv

    def create(self, extra: Sequence[str], *, tty: bool) -> None:
        """Create the container for this agent command line (once)."""
        if self._created == (tuple(extra), tty):
            return
        if self._created is not None:
            docker_mod.remove_container(self.container)
        spec = record.replace(self._run, interactive=tty or stdin_is_data(), tty=tty)
        # Not cut in half by a Ctrl-C: the engine finishes a create whose client left, so
        # the teardown would find nothing yet and the container would appear after it.
        with shielded(f"creating container {self.container}", say_first=False):
            docker_mod.create(self.image_id or "IMAGE", [self.agent_command, *extra], spec,
                              env=self._env)
        self._created = (tuple(extra), tty)

    def run_agent(self, extra: Sequence[str], *, tty: bool) -> int:
        self.create(extra, tty=tty)
        if self.proxy is not None:  # still starting: the agent starts alongside it
            self.proxy.add_done_callback(self._proxy_started)
        interactive = tty or stdin_is_data()
        code = None if interactive else docker_mod.start_attached(
            self.container, removes_itself=self._run.remove)
        by_cli = code is None
        if code is None:  # a terminal, or stdin to pass on: the docker CLI does those
            code = _proc.run_attached(docker_mod.start_cmd(
                self.container, attach=True, interactive=interactive))
        failed = self.proxy.exception() if self.proxy is not None else None
        if failed is not None:
            raise failed
        if code != 0 and by_cli:  # (over the API a failed start is its own error)
            # A container that never ran failed in docker, not in the agent.
            state = docker_mod.container_state(self.container)
            if state is not None and state.get("Status") == "created":
                raise docker_mod.DockerError(
                    ["docker", "start", self.container], code,
                    reason=str(state.get("Error") or "the container did not start"))
        return code

    def _proxy_started(self, started: Future[None]) -> None:
        """A proxy that failed to start leaves the agent with no way out: stop it (the
        launch then fails with the proxy's error)."""
        if started.exception() is not None:
            docker_mod.remove_container(self.container)

    def exec(self, cmd: str | Sequence[str], *, user: str = DEFAULT_USER) -> Result:
        return _proc.run(docker_mod.exec_cmd(self.container, shell(cmd), user=user),
                         check=False)

    def summary(self) -> str | None:
        """What the egress proxy saw (one line; the full record is kept in the cache)."""
        if self.egress is None:
            return None
        from bottle import egress_net
        from bottle.egress import summarize, summary_json, summary_line

        net, observe, record, spec = self.egress
        requests, raw = egress_net.proxy_requests(net)
        summary = summarize(requests)
        data = {**summary_json(summary, requests, observe=observe),
                "launch": spec.launch_id, "workspace": str(spec.workspace),
                "at": time.time(), "log": raw}
        with contextlib.suppress(OSError):
            write_atomic(record, json.dumps(data).encode(), mode=0o600)
        return summary_line(summary, observe=observe)

    def close(self) -> None:
        self.left += self._teardown.close()


def _image_user(base_id: str, user: str, store: Store) -> tuple[str, int, int] | None:
    """`user` (a name or a uid) in the image: its name, uid and gid, read from its
    /etc/passwd through a container that is created, never started, then removed; the
    answer is kept per image. None when the image has no such user or no /etc/passwd."""
    key = xxhash.xxh64_hexdigest(f"{base_id}\0{user}\0name".encode())
    ref = store.get_ref("image-user", key)
    if ref is not None:
        return (str(ref["name"]), int(ref["uid"]), int(ref["gid"])) if ref.get("found") \
            else None
    name = f"bot-bottle-peek-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        _proc.run(docker_mod.create_cmd(base_id, [], RunSpec(
            name=name, entrypoint="/nonexistent", network="none")))
        r = _proc.run(docker_mod.TOOL.cmd("cp", "--", f"{name}:/etc/passwd", "-"),
                      check=False, binary=True)
    finally:
        docker_mod.remove_container(name)
    ids = _passwd_ids(_file_in_tar(r.data), user) if r.returncode == 0 else None
    with contextlib.suppress(StorageError):
        store.put_ref("image-user", key, {"found": ids is not None,
                                          "name": ids[0] if ids else "",
                                          "uid": ids[1] if ids else 0,
                                          "gid": ids[2] if ids else 0})
    return ids


def _file_in_tar(data: bytes) -> str:
    """The one regular file in a tar stream (`docker cp CONTAINER:FILE -`), as text."""
    import tarfile

    with contextlib.suppress(tarfile.TarError), \
            tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            f = tar.extractfile(member) if member.isfile() else None
            if f is not None:
                return f.read().decode(errors="replace")
    return ""


def _passwd_ids(passwd: str, user: str) -> tuple[str, int, int] | None:
    """Name, uid and gid of `user` (a name, else a uid) in an /etc/passwd."""
    rows = [f for f in (line.split(":") for line in passwd.splitlines())
            if len(f) >= 4 and f[2].isdigit() and f[3].isdigit()]
    for f in [r for r in rows if r[0] == user] or [r for r in rows if r[2] == user]:
        return f[0], int(f[2]), int(f[3])
    return None


def _user_image(base_id: str, user: str, uid: int, gid: int,
                store: Store) -> tuple[str, str]:
    """`base_id` with `user` mapped to uid:gid: the image itself when the user already has
    them, else a derived image (built once, then found by its record); and the name to
    run as (`user` may be given as a uid, which the mapping changes)."""
    ids = _image_user(base_id, user, store)
    if ids is not None and ids[1] == 0:
        raise BottleError(f"cannot run the agent as {user}: user {ids[0]} is root (uid 0) "
                          "in the image")
    name = ids[0] if ids else user
    if ids is not None and ids[1:] == (uid, gid):
        return base_id, name
    key = xxhash.xxh64_hexdigest(f"{base_id}\0{user}\0{uid}\0{gid}".encode())
    ref = store.get_ref("user-image", key)
    if ref and docker_mod.engine_has_image(str(ref["image_id"])):
        return str(ref["image_id"]), name
    with store.lock(f"user-image-{key}", what=f"the {user} image"):
        ref = store.get_ref("user-image", key)
        if ref and docker_mod.engine_has_image(str(ref["image_id"])):
            return str(ref["image_id"]), name
        dockerfile = (
            f"FROM {base_id}\nUSER 0:0\nCOPY remap.sh /tmp/bot-bottle-remap.sh\n"
            f'RUN ["/bin/sh", "-c", "sh /tmp/bot-bottle-remap.sh {user} {uid} {gid} '
            f'&& rm /tmp/bot-bottle-remap.sh"]\nUSER {uid}:{gid}\n')
        try:
            image_id = docker_mod.build_image(
                "-", f"{REPO_USER}:{key[:12]}", iidfile=None,
                labels={LABEL_USER_OF: base_id, **image.cache_label(store)},
                context_tar=_tar({"Dockerfile": dockerfile, "remap.sh": _REMAP}),
            )
        except docker_mod.DockerError as err:
            ours = [ln.strip() for ln in (err.stdout + err.stderr).splitlines()
                    if ln.strip().startswith("bot-bottle: ")]
            why = ours[-1].removeprefix("bot-bottle: ") if ours else err.reason
            raise BottleError(f"cannot run the agent as {user}: {why}") from None
        with contextlib.suppress(StorageError):  # a read-only cache: asked again next time
            store.put_ref("user-image", key, {"image_id": image_id, "base": base_id})
        return image_id, name


def _tar(files: dict[str, str]) -> bytes:
    """A build context as a tar, in memory."""
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


REPO_USER = "bot-bottle/user"


class DockerBackend:
    name = "docker"

    def available(self, store: Store) -> str | None:
        if not docker_mod.TOOL.available():
            return f"docker not found on PATH: {docker_mod.TOOL.hint}"
        try:
            docker_mod.engine_image("sha256:" + "0" * 64)
        except docker_mod.DockerError as err:
            return str(err.reason)
        return None

    def prepare(self, cfg: Config, store: Store) -> Prepared:
        network = cfg.network or agents.profile(cfg.agent).network
        _check_networks(network, cfg.egress_network)  # before minutes of building
        inputs = image.build_inputs(cfg, store)
        built = image.ensure_image(inputs, store, image.digest_context(inputs, store))
        proxy = None
        if network == "egress":
            pinputs = image.proxy_inputs(cfg, store)
            proxy = image.ensure_image(pinputs, store, image.digest_context(pinputs, store))
        return Prepared(f"build: {built.line}", image_id=built.image_id,
                        proxy_image_id=proxy.image_id if proxy else None)

    def start(self, prepared: Prepared, spec: BottleSpec, store: Store) -> DockerBottle:
        assert prepared.image_id is not None
        owner = spec.workspace.stat()
        if owner.st_uid == 0:
            progress.say("launch: the workspace is owned by root, so the agent runs as root "
                         "in the bottle (with no capabilities)")
        run_image, run_user = _user_image(prepared.image_id, spec.user, owner.st_uid,
                                          owner.st_gid, store)
        teardown = Teardown(f"bottle {spec.name}")
        env = {**spec.env, **spec.secrets}
        net: egress_net.EgressNet | None = None
        if spec.network == "egress":
            net = _egress_plan(spec, prepared)
            env.update(net.agent_env())
        run = RunSpec(
            name=spec.name, labels=labels(spec, "agent", store), remove=True, init=True,
            env_names=list(env), network=net.network if net else _network(spec),
            user=run_user, mounts=[Mount(spec.workspace.resolve(), WORKSPACE),
                                    *_state_mounts(spec, owner.st_uid, owner.st_gid)],
            workdir=WORKSPACE, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            pids_limit=spec.pids_limit, cpus=spec.cpus, memory=spec.memory,
        )
        bottle = DockerBottle(spec.name, teardown, image_id=run_image, run=run,
                              agent_command=spec.command, env=env)
        try:
            if net is not None:
                _start_egress(net, spec, prepared, store, teardown, bottle)
            teardown.add(f"container {spec.name}",
                         lambda: docker_mod.remove_container(spec.name))
            bottle.create(spec.agent_args, tty=spec.tty)
        except BaseException:
            bottle.close()
            raise
        return bottle

    def sweep(self, store: Store) -> list[str]:
        """Remove bottles (their proxies and networks) whose launching process is
        provably gone. A BottleError when the engine cannot be asked."""
        why = self.available(store)
        if why is not None:
            raise BottleError(f"docker not checked: {why}")
        dead = [name for name, marks in docker_mod.labelled("containers", {LABEL: "1"})
                if launcher_dead(marks.get(f"{LABEL}.owner"))]
        removed = [name for name in dead if docker_mod.remove_container(name)]
        nets = [name for name, marks in docker_mod.labelled("networks", {LABEL: "1"})
                if launcher_dead(marks.get(f"{LABEL}.owner"))]
        docker_mod.network_rm(*nets)
        return removed + [f"network {n}" for n in nets]


def _check_networks(network: str, egress_network: str) -> None:
    """The networks a launch names exist (checked before the build; a network removed
    after it makes `docker create` fail, with the engine's words)."""
    if network == "egress":
        if not docker_mod.network_exists(egress_network):
            raise BottleError(
                f"egress network {egress_network} not found: the proxy needs a network "
                "with a way out (set egress_network to one; docker network ls lists them)")
    elif network not in ("none", "host") and not docker_mod.network_exists(network):
        raise BottleError(f"network {network} not found (docker network ls lists them)")


def _network(spec: BottleSpec) -> str:
    if spec.network == "host":
        progress.say("launch: warning: network = host gives the agent this host's whole "
                     "network, with no isolation")
    return spec.network


def _egress_plan(spec: BottleSpec, prepared: Prepared) -> egress_net.EgressNet:
    from bottle import egress_net

    if prepared.proxy_image_id is None:
        raise BottleError("network = egress: no proxy image was prepared")
    return egress_net.plan(spec.launch_id, egress_network=spec.egress_network)


def _start_egress(net: egress_net.EgressNet, spec: BottleSpec, prepared: Prepared,
                  store: Store, teardown: Teardown, bottle: DockerBottle) -> None:
    """The bottle's network, then its proxy, started alongside the agent's container
    (in a thread, so the agent's start is not delayed by it)."""
    import concurrent.futures
    from concurrent.futures import ThreadPoolExecutor

    from bottle import egress_net
    from bottle.egress import parse_policy

    assert prepared.proxy_image_id is not None
    policy = parse_policy("observe" if "observe" in spec.egress else list(spec.egress))
    marks = labels(spec, "proxy", store)
    teardown.add(f"network {net.network}", lambda: docker_mod.network_rm(net.network))
    with shielded(f"creating network {net.network}", say_first=False):  # as a container
        egress_net.create_bottle_network(net, labels=labels(spec, "network", store))
    teardown.add(f"proxy {net.proxy}", lambda: docker_mod.remove_container(net.proxy))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proxy")
    with signals_held():  # the thread it starts leaves them to the main thread
        proxy = pool.submit(egress_net.start_proxy, net, prepared.proxy_image_id, policy,
                            labels=marks)
    pool.shutdown(wait=False)
    bottle.proxy = proxy
    # Before the proxy is removed, its start must be over (else it could outlive us).
    teardown.add("proxy start", lambda: concurrent.futures.wait([proxy]))
    bottle.egress = (net, policy.observe, store.area("egress") / f"{spec.launch_id}.json",
                     spec)


def _state_mounts(spec: BottleSpec, uid: int, gid: int) -> list[Mount]:
    """The agent's state (e.g. Claude's login) kept per project under the cache, never
    in an image: one host directory per state path, owned by the agent's user."""
    if spec.agent_state_dir is None:
        return []
    mounts = []
    for path in spec.agent_state:
        host = spec.agent_state_dir / path.strip("/").replace("/", "_")
        host.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            os.chown(host, uid, gid)
        mounts.append(Mount(host, path))
    return mounts
