"""The contract every backend keeps, and the dict of backends.

A `Backend` owns its whole lifecycle: whether it can run here (`available`), making
the image or artifact ready (`prepare`), starting a bottle (`start`) and removing
what killed launches left behind (`sweep`). A `Bottle` runs its own agent, runs
commands in itself, and tears itself down once (`close`, safe to call twice).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from bottle.config import Config
from bottle.signals import shielded
from bottle.tools._proc import Result
from cache.lock import pid_alive
from cache.record import dataclass, field
from cache.store import Store

# Not `typing.TYPE_CHECKING`: importing typing costs a launch ~3 ms. The protocols below
# are for the type checker; at run time they are plain classes.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

DEFAULT_USER = "node"
WORKSPACE = "/workspace"
LABEL = "bot-bottle"

ExecResult = Result  # what `Bottle.exec` returns: exit code and captured text


@dataclass(frozen=True)
class BottleSpec:
    """Everything a bottle is made of, validated (one value per launch)."""

    launch_id: str
    command: str
    workspace: Path
    agent_args: tuple[str, ...] = ()
    tty: bool = False
    user: str = DEFAULT_USER
    network: str = "none"
    egress: tuple[str, ...] = ()
    egress_network: str = "bridge"
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)  # name -> value
    allow_cidrs: tuple[str, ...] = ()
    cpus: str | None = None
    memory: str | None = None
    pids_limit: int = 1024
    state_dir: Path | None = None  # smolvm --state-dir
    agent_state: tuple[str, ...] = ()  # paths under the agent's home kept per project
    agent_state_dir: Path | None = None  # where the host keeps them

    @property
    def name(self) -> str:
        return f"bot-bottle-{self.launch_id}"


@dataclass(frozen=True)
class Prepared:
    """What `prepare` made ready: an image (docker) or a `.smolmachine` (smolmachines)."""

    line: str  # what was done and why, e.g. "build: cache hit 3f2a9c1d0b7e"
    image_id: str | None = None
    artifact: Path | None = None
    proxy_image_id: str | None = None  # the egress proxy's image (docker, network egress)


class Bottle(Protocol):
    """A bottle: its agent, commands in it, and its teardown."""

    left: list[str]  # what `close` could not remove (the next sweep does)

    def agent_argv(self, extra: Sequence[str], *, tty: bool) -> list[str]:
        """The host argv that runs the agent (with `extra` args) in the bottle."""
        ...

    def run_agent(self, extra: Sequence[str], *, tty: bool) -> int:
        """Run the agent attached to our terminal; its exit code."""
        ...

    def exec(self, cmd: str | Sequence[str], *, user: str = DEFAULT_USER) -> Result:
        """Run `cmd` (a shell string or an argv) in the bottle and capture it."""
        ...

    def summary(self) -> str | None:
        """One line on what the bottle did at its edges (e.g. egress), or None."""
        ...

    def close(self) -> None:
        """Tear the bottle down; calling it again does nothing."""
        ...


class Backend(Protocol):
    name: str

    def available(self, store: Store) -> str | None:
        """None when bottles can run here, else why not (one line)."""
        ...

    def prepare(self, cfg: Config, store: Store) -> Prepared:
        """Ensure the image or artifact (built or reused from the cache)."""
        ...

    def start(self, prepared: Prepared, spec: BottleSpec, store: Store) -> Bottle:
        """A bottle ready to run its agent; its resources are torn down by `close`."""
        ...

    def sweep(self, store: Store) -> list[str]:
        """Remove what launches that were killed left behind; what was removed."""
        ...


class Teardown:
    """One teardown per bottle: callbacks run last-in first-out, once, shielded from a
    second Ctrl-C; a failed step does not stop the others, and what could not be
    removed is named in one line (the next sweep removes it)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self._done = False

    def add(self, name: str, step: Callable[[], object]) -> None:
        self._steps.append((name, step))

    def close(self) -> list[str]:
        """Run every step; return the names of those that failed."""
        if self._done:
            return []
        self._done = True
        failed: list[str] = []
        with shielded(f"removing {self._what}"):
            while self._steps:
                name, step = self._steps.pop()
                try:
                    ok = step()
                except Exception:
                    ok = False
                if ok is False or (isinstance(ok, Result) and ok.returncode != 0):
                    failed.append(name)
        return failed


# --- who launched a bottle, and whether they can be proven gone -------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pidns() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


@functools.cache
def owner_token() -> str:
    """Who we are, in a form `launcher_dead` can check later: boot, pid namespace, pid
    and the pid's start time."""
    pid = os.getpid()
    return f"{_boot_id()}/{_pidns()}/{pid}/{_start_time(pid)}"


def launcher_dead(token: str | None) -> bool:
    """True only when the launch that made a bottle provably no longer runs: same boot
    and pid namespace as ours, and its pid gone (or reused by a younger process).
    Another host, another container's pid namespace, or a token we cannot read: not
    provably dead, so the bottle stays."""
    parts = (token or "").split("/")
    if len(parts) != 4 or not parts[2].isdigit() or not parts[0] or not parts[1]:
        return False
    boot, ns, pid, started = parts
    if boot != _boot_id() or ns != _pidns():
        return False
    return not pid_alive(int(pid)) or (bool(started) and _start_time(int(pid)) != started)


def labels(spec: BottleSpec, role: str, store: Store) -> dict[str, str]:
    """What marks a bottle's container or network: ours, which launch, who launched it
    (for the sweep), and which cache root (so a cache's owner can find its own)."""
    from bottle.image import cache_label

    return {LABEL: "1", f"{LABEL}.launch": spec.launch_id, f"{LABEL}.role": role,
            f"{LABEL}.owner": owner_token(), f"{LABEL}.host": os.uname().nodename,
            **cache_label(store)}


def stdin_is_data() -> bool:
    """Our stdin is a pipe or a file (`git diff | bottle launch -- -p "review"`): the agent
    gets it. A terminal is the session's own, and /dev/null or a closed stdin has nothing
    to give."""
    import stat

    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def shell(cmd: str | Sequence[str]) -> list[str]:
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


@contextlib.contextmanager
def started(backend: Backend, prepared: Prepared, spec: BottleSpec,
            store: Store) -> Iterator[Bottle]:
    """`backend.start`, closed on every way out."""
    bottle = backend.start(prepared, spec, store)
    try:
        yield bottle
    finally:
        bottle.close()


def registry() -> dict[str, Backend]:
    """The backends by name (imported on first use: each pulls in its tools)."""
    from bottle.backend.docker import DockerBackend
    from bottle.backend.smolmachines import SmolmachinesBackend

    return {"docker": DockerBackend(), "smolmachines": SmolmachinesBackend()}
