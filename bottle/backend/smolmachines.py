"""smolmachines backend: a microVM from the cached `.smolmachine`; the agent via
`machine exec`.

Lifecycle: create --from -> start -> wait until `exec true` answers -> copy the
workspace in -> exec the agent as node -> copy the workspace back -> stop -> delete.
Plain env reaches the agent as `-e K=V`; secrets only as `--secret-env NAME=NAME`
references that smolvm resolves from its own environment (which the runner sets).
Each launch keeps a record under the cache's run/ area, so a later sweep can remove
the machine of a launch that was killed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bottle import image
from bottle.backend import (
    DEFAULT_USER,
    WORKSPACE,
    BottleSpec,
    Prepared,
    Teardown,
    launcher_dead,
    owner_token,
    shell,
    stdin_is_data,
)
from bottle.config import Config
from bottle.errors import BottleError
from bottle.signals import shielded
from bottle.tools import _proc, smolvm
from bottle.tools._proc import Result
from bottle.tools.smolvm import Dialect
from cache.atomic import write_atomic
from cache.record import dataclass
from cache.store import Store

PROBE_TIMEOUT = 60.0
PROBE_NEGATIVE_TTL = 86400.0  # retry a failed boot probe after a day


class SmolmachinesBottle:
    def __init__(
        self,
        name: str,
        *,
        guest_env: Mapping[str, str],
        agent_command: str = "claude",
        secret_env: Sequence[str] = (),
        dialect: Dialect | None = None,
        state_dir: Path | None = None,
        teardown: Teardown | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.guest_env = dict(guest_env)
        self.agent_command = agent_command
        self.secret_env = list(secret_env)
        self._dialect = dialect
        self.state_dir = state_dir
        self._teardown = teardown or Teardown(f"machine {name}")
        self._secrets = dict(secrets or {})
        self.left: list[str] = []

    @property
    def dialect(self) -> Dialect:
        if self._dialect is None:
            self._dialect = smolvm.detect_dialect()
        return self._dialect

    def _cmd(self, extra: Sequence[str], tty: bool) -> _proc.Command:
        return smolvm.machine_exec_cmd(
            self.name, [self.agent_command, *extra], dialect=self.dialect, user=DEFAULT_USER,
            env=self.guest_env, secret_env=self.secret_env, workdir=WORKSPACE,
            interactive=tty or stdin_is_data(), tty=tty, state_dir=self.state_dir,
        )

    def agent_argv(self, extra: Sequence[str], *, tty: bool) -> list[str]:
        return self._cmd(extra, tty).argv

    def run_agent(self, extra: Sequence[str], *, tty: bool) -> int:
        return _proc.run_attached(self._cmd(extra, tty), env=self._secrets)

    def exec(self, cmd: str | Sequence[str], *, user: str = DEFAULT_USER) -> Result:
        return smolvm.machine_exec(self.name, shell(cmd), dialect=self.dialect, user=user,
                                   state_dir=self.state_dir)

    def summary(self) -> str | None:
        return None  # smolvm keeps its own egress record (`machine egress-events`)

    def close(self) -> None:
        self.left += self._teardown.close()


def _must(b: SmolmachinesBottle, script: str) -> None:
    r = b.exec(script, user="root")
    if r.returncode != 0:
        raise smolvm.SmolvmError(["smolvm", "machine", "exec", "--name", b.name], r.returncode,
                                 r.stdout, r.stderr)


def _copy_in(b: SmolmachinesBottle, workspace: Path, tmp: Path) -> None:
    import tarfile  # here: a launch on another backend need not load it

    archive = tmp / "workspace-in.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(workspace, arcname=".")
    smolvm.machine_cp(str(archive), f"{b.name}:/tmp/workspace-in.tar", dialect=b.dialect,
                      state_dir=b.state_dir)
    _must(b, f"mkdir -p {WORKSPACE} && tar -xf /tmp/workspace-in.tar -C {WORKSPACE} "
             f"&& rm /tmp/workspace-in.tar && chown -R {DEFAULT_USER} {WORKSPACE}")


def _copy_out(b: SmolmachinesBottle, workspace: Path, tmp: Path) -> None:
    """What the agent wrote lands back in the host workspace (deletions are not mirrored)."""
    import tarfile

    _must(b, f"tar -cf /tmp/workspace-out.tar -C {WORKSPACE} .")
    archive = tmp / "workspace-out.tar"
    smolvm.machine_cp(f"{b.name}:/tmp/workspace-out.tar", str(archive), dialect=b.dialect,
                      state_dir=b.state_dir)
    with tarfile.open(archive) as tar:
        tar.extractall(workspace, filter="data")


@dataclass(frozen=True)
class NetArgs:
    net: bool = False
    cidrs: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


def net_args(spec: BottleSpec, dialect: Dialect) -> NetArgs:
    """smolvm's egress flags for the spec's network; never wider than asked."""
    if spec.network == "none":
        if spec.allow_cidrs:
            raise BottleError("allow_cidrs needs a network: set network = egress")
        return NetArgs()
    if spec.network == "host":
        return NetArgs(True, spec.allow_cidrs)
    if spec.network == "egress":
        if not dialect.egress_persists:
            raise BottleError(
                f"smolvm {dialect} does not keep an egress allow-list for machines made with "
                "--from (1.8 and later do): upgrade smolvm, or use network = none")
        if "observe" in spec.egress:
            raise BottleError("egress = observe needs the docker backend (smolvm records "
                              "only what it denies)")
        ported = [h for h in spec.egress if ":" in h]
        if ported:
            raise BottleError(f"egress rule {ported[0]!r}: smolvm allow-lists take no ports "
                              "(drop the port, or use the docker backend)")
        if not spec.egress and not spec.allow_cidrs:
            raise BottleError("network = egress with an empty allow-list: nothing could be "
                              "reached (use network = none)")
        return NetArgs(True, spec.allow_cidrs,
                       tuple(h for h in spec.egress if not h.startswith("*.")),
                       tuple(h for h in spec.egress if h.startswith("*.")))
    raise BottleError(f"network {spec.network!r}: the smolmachines backend supports none, "
                      "host and egress")


class SmolmachinesBackend:
    name = "smolmachines"

    def available(self, store: Store) -> str | None:
        if not smolvm.TOOL.available():
            return f"smolvm not found on PATH: {smolvm.TOOL.hint}"
        if os.uname().sysname != "Darwin" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "no usable /dev/kvm"
        return None

    def probed(self, store: Store) -> bool:
        """Whether the boot probe's answer is already kept (no wait this time)."""
        return _probe_record(store).is_file()

    def boots(self, store: Store) -> str | None:
        """The thorough check `auto` makes: does a microVM really boot here?"""
        return self.available(store) or boot_probe(store)

    def prepare(self, cfg: Config, store: Store) -> Prepared:
        inputs = image.build_inputs(cfg, store)
        packed = image.committed_or_packed(cfg, inputs, store,
                                           image.digest_context(inputs, store))
        return Prepared(f"pack: {packed.line}", artifact=packed.artifact)

    def start(self, prepared: Prepared, spec: BottleSpec, store: Store) -> SmolmachinesBottle:
        assert prepared.artifact is not None
        dialect = smolvm.detect_dialect()
        net = net_args(spec, dialect)
        name, state_dir = spec.name, spec.state_dir
        record = store.area("run") / "smolmachines" / f"{name}.json"
        write_atomic(record, json.dumps({"owner": owner_token(), "host": os.uname().nodename,
                                         "state_dir": str(state_dir or "")}).encode())
        tmp = store.area("tmp") / f"launch-{spec.launch_id}.{os.getpid()}.{os.urandom(4).hex()}"
        tmp.mkdir(parents=True)
        teardown = Teardown(f"machine {name}")
        teardown.add("run record", lambda: record.unlink(missing_ok=True))
        import shutil  # here: a launch on another backend need not load it

        teardown.add("temp dir", lambda: shutil.rmtree(tmp, ignore_errors=True))
        bottle = SmolmachinesBottle(
            name, guest_env=spec.env, agent_command=spec.command, secret_env=list(spec.secrets),
            dialect=dialect, state_dir=state_dir, teardown=teardown, secrets=spec.secrets)
        try:
            # Removed on every way out (a missing machine counts as removed), and not cut
            # in half by a Ctrl-C: a create stopped halfway may leave a machine behind.
            teardown.add(f"machine {name}", lambda: _remove(name, dialect, state_dir))
            with shielded(f"creating machine {name}", say_first=False):
                smolvm.machine_create(name, dialect=dialect, from_path=prepared.artifact,
                                      allow_cidrs=net.cidrs, allow_hosts=net.hosts,
                                      allow_host_patterns=net.patterns, net=net.net,
                                      state_dir=state_dir)
            smolvm.machine_start(name, dialect=dialect, state_dir=state_dir)
            smolvm.wait_exec_ready(name, dialect=dialect, state_dir=state_dir)
            _copy_in(bottle, spec.workspace, tmp)
            teardown.add("workspace copy-back", lambda: _copy_out(bottle, spec.workspace, tmp))
        except BaseException:
            bottle.close()
            raise
        return bottle

    def sweep(self, store: Store) -> list[str]:
        """Stop and delete machines whose launching process is provably gone (a
        BottleError when there are records but no smolvm to remove their machines: the
        records stay until it can)."""
        removed: list[str] = []
        runs = store.area("run") / "smolmachines"
        records = sorted(runs.glob("*.json")) if runs.is_dir() else []
        if records and not smolvm.TOOL.available():
            raise BottleError(f"{len(records)} microVM launch record(s) not checked: smolvm "
                              "not found on PATH")
        for record in records:
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or not launcher_dead(data.get("owner")):
                continue
            name = record.stem
            state_dir = Path(data["state_dir"]) if data.get("state_dir") else None
            if _remove(name, smolvm.detect_dialect(), state_dir):
                record.unlink(missing_ok=True)
                removed.append(name)
        return removed


def _remove(name: str, dialect: Dialect, state_dir: Path | None) -> bool:
    """Stop and delete a machine; True when it is gone (a missing one counts)."""
    smolvm.machine_stop(name, dialect=dialect, state_dir=state_dir)
    r = smolvm.machine_delete(name, dialect=dialect, state_dir=state_dir)
    return r.returncode == 0 or "not found" in (r.stderr + r.stdout).lower()


def _probe_record(store: Store) -> Path:
    path = smolvm.TOOL.require()
    st = os.stat(path)
    key = f"smolvm-{os.uname().nodename}-{st.st_ino}-{st.st_mtime_ns}-{_kvm_state()}"
    return store.area("probe") / f"{key}.json"


def boot_probe(store: Store) -> str | None:
    """Whether a microVM really boots here: create, start and `exec true` a bare machine
    once per host and smolvm binary (the answer is kept; a failure is retried daily).
    None when it boots, else the reason."""
    record = _probe_record(store)
    try:
        data = json.loads(record.read_text())
        if data["ok"] or time.time() - data["at"] < PROBE_NEGATIVE_TTL:
            return None if data["ok"] else str(data["why"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    why = _probe_once(store)
    write_atomic(record, json.dumps({"ok": why is None, "why": why, "at": time.time()}).encode())
    return why


def _kvm_state() -> str:
    if os.uname().sysname == "Darwin":
        return "hvf"
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return "nokvm"
    return f"{st.st_mode:o}-{st.st_uid}-{st.st_gid}"


def _probe_once(store: Store) -> str | None:
    dialect = smolvm.detect_dialect()
    name = f"bot-bottle-probe-{os.getpid()}-{os.urandom(3).hex()}"
    state_dir = None
    if dialect.state_dir:
        state_dir = store.area("tmp") / f"probe.{os.getpid()}.{os.urandom(4).hex()}"
        state_dir.mkdir(parents=True)
    try:
        smolvm.machine_create(name, dialect=dialect, state_dir=state_dir)
        smolvm.machine_start(name, dialect=dialect, state_dir=state_dir)
        smolvm.wait_exec_ready(name, dialect=dialect, state_dir=state_dir,
                               timeout=PROBE_TIMEOUT)
        return None
    except smolvm.SmolvmError as err:
        return f"no microVM boots here ({err.reason})"
    finally:
        _remove(name, dialect, state_dir)
        if state_dir is not None:
            import shutil

            shutil.rmtree(state_dir, ignore_errors=True)
