"""Docker backend: the agent is the container's main process (`docker run --rm`,
attached), hardened (no capabilities, no new privileges, a pids limit, an init), as
the workspace owner's uid so what it writes lands owned by the host user.

The agent's user is mapped to the workspace owner in a small derived image (cached by
image, user, uid and gid), the way the devcontainers CLI's updateRemoteUserUID does.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence

import xxhash

from bottle import image, progress
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
)
from bottle.config import Config
from bottle.errors import BottleError
from bottle.tools import _proc
from bottle.tools import docker as docker_mod
from bottle.tools._proc import Result
from bottle.tools.docker import Mount, RunSpec
from cache.store import Store

LABEL_USER_OF = "bot-bottle.user-of"
# Maps the agent's user to the workspace owner: passwd/group entries and its home.
_REMAP = r"""set -eu
u="$1"; uid="$2"; gid="$3"
line=$(grep "^$u:" /etc/passwd) || { echo "bot-bottle: the image has no user $u" >&2; exit 3; }
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
    """A bottle whose agent is the container's main process. `exec` works while the
    agent runs; `close` removes the container (and whatever else start made)."""

    def __init__(self, container: str, teardown: Teardown, *, image_id: str = "",
                 run: RunSpec | None = None, agent_command: str = "claude",
                 env: dict[str, str] | None = None) -> None:
        self.container = container
        self._teardown = teardown
        self.image_id = image_id
        self._run = run or RunSpec(name=container)
        self.agent_command = agent_command
        self._env = env or {}
        self.left: list[str] = []

    def _cmd(self, extra: Sequence[str], tty: bool) -> _proc.Command:
        spec = RunSpec(**{**vars(self._run), "interactive": tty, "tty": tty})
        return docker_mod.run_cmd(self.image_id or "IMAGE", [self.agent_command, *extra], spec)

    def agent_argv(self, extra: Sequence[str], *, tty: bool) -> list[str]:
        return self._cmd(extra, tty).argv

    def run_agent(self, extra: Sequence[str], *, tty: bool) -> int:
        return _proc.run_attached(self._cmd(extra, tty), env=self._env)

    def exec(self, cmd: str | Sequence[str], *, user: str = DEFAULT_USER) -> Result:
        return _proc.run(docker_mod.exec_cmd(self.container, shell(cmd), user=user),
                         check=False)

    def close(self) -> None:
        self.left += self._teardown.close()


def _user_image(base_id: str, user: str, uid: int, gid: int, store: Store) -> str:
    """`base_id` with `user` mapped to uid:gid (built once, then found by its record)."""
    key = xxhash.xxh64_hexdigest(f"{base_id}\0{user}\0{uid}\0{gid}".encode())
    ref = store.get_ref("user-image", key)
    if ref and docker_mod.engine_has_image(str(ref["image_id"])):
        return str(ref["image_id"])
    with store.lock(f"user-image-{key}", what=f"the {user} image"):
        ref = store.get_ref("user-image", key)
        if ref and docker_mod.engine_has_image(str(ref["image_id"])):
            return str(ref["image_id"])
        work = store.area("tmp") / f"user-image-{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        work.mkdir(parents=True)
        try:
            (work / "remap.sh").write_text(_REMAP)
            (work / "Dockerfile").write_text(
                f"FROM {base_id}\nUSER 0:0\nCOPY remap.sh /tmp/bot-bottle-remap.sh\n"
                f'RUN ["/bin/sh", "-c", "sh /tmp/bot-bottle-remap.sh {user} {uid} {gid} '
                f'&& rm /tmp/bot-bottle-remap.sh"]\nUSER {uid}:{gid}\n')
            try:
                image_id = docker_mod.build_image(
                    work, f"{REPO_USER}:{key[:12]}", iidfile=work / "iid",
                    labels={LABEL_USER_OF: base_id, **image.cache_label(store)},
                )
            except docker_mod.DockerError as err:
                raise BottleError(f"cannot run the agent as {user}: {err.reason}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        store.put_ref("user-image", key, {"image_id": image_id, "base": base_id})
        return image_id


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
        inputs = image.build_inputs(cfg, store)
        built = image.ensure_image(inputs, store, image.digest_context(inputs, store))
        return Prepared(f"build: {built.line}", image_id=built.image_id)

    def start(self, prepared: Prepared, spec: BottleSpec, store: Store) -> DockerBottle:
        assert prepared.image_id is not None
        owner = spec.workspace.stat()
        if owner.st_uid == 0:
            progress.say("launch: the workspace is owned by root, so the agent runs as root "
                         "in the bottle (with no capabilities)")
        run_image = _user_image(prepared.image_id, spec.user, owner.st_uid, owner.st_gid,
                                store)
        teardown = Teardown(f"bottle {spec.name}")
        network = _network(spec)
        run = RunSpec(
            name=spec.name, labels=labels(spec, "agent"), remove=True, init=True,
            env_names=[*spec.env, *spec.secrets], network=network, user=spec.user,
            mounts=[Mount(spec.workspace.resolve(), WORKSPACE)], workdir=WORKSPACE,
            cap_drop=["ALL"], security_opt=["no-new-privileges"],
            pids_limit=spec.pids_limit, cpus=spec.cpus, memory=spec.memory,
        )
        teardown.add(f"container {spec.name}", lambda: docker_mod.rm_f(spec.name))
        return DockerBottle(spec.name, teardown, image_id=run_image, run=run,
                            agent_command=spec.command, env={**spec.env, **spec.secrets})

    def sweep(self, store: Store) -> list[str]:
        """Remove bottles (and their networks) whose launching process is provably gone."""
        if self.available(store) is not None:
            return []
        dead = [c["Names"] for c in docker_mod.ps(labels={LABEL: "1"})
                if launcher_dead(docker_mod.labels_of(c).get(f"{LABEL}.owner"))]
        docker_mod.rm_f(*dead)
        nets = [n["Name"] for n in docker_mod.networks(labels={LABEL: "1"})
                if launcher_dead(docker_mod.labels_of(n).get(f"{LABEL}.owner"))]
        docker_mod.network_rm(*nets)
        return dead + [f"network {n}" for n in nets]


def _network(spec: BottleSpec) -> str:
    if spec.network == "egress":
        raise BottleError("network = egress needs the egress proxy, not built yet")
    if spec.network == "host":
        progress.say("launch: warning: network = host gives the agent this host's whole "
                     "network, with no isolation")
    return spec.network
