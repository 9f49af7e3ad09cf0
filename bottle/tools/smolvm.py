"""smolvm CLI: argv builders for every dialect, one runner, `SmolvmError`.

Dialects (thresholds checked against the released parsers, see tests/unit/test_smolvm_parser.py):
- 0.8.x: machine name positional for create/delete, `--name` for start/stop/exec;
  `pack create -o X` writes `X.smolmachine`.
- >= 1.0.2: `--name` everywhere; exec's workload after `--`; `--secret-env` (seen from 1.4).
- >= 1.7: `pack create -o X` writes a stub `X` plus the sidecar `X.smolmachine`;
  `-o X.smolmachine` is an error.
- >= 1.14: `machine exec -u USER`.
- >= 1.31: `pack create --image` also takes a `docker save` archive (no registry needed);
  `--state-dir` on every command.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bottle.errors import BottleError
from bottle.tools import _proc
from bottle.tools._argv import flag, opt, pairs, repeat
from bottle.tools._proc import Command, Result, Tool, ToolError
from cache.record import dataclass

SIDECAR = ".smolmachine"
TEARDOWN_TIMEOUT = 60.0


class SmolvmError(ToolError):
    """smolvm exited non-zero, timed out, or a machine never became ready."""


TOOL = Tool(
    "smolvm",
    "install smolvm (https://smolmachines.com) or `pip install smolmachines` and put its "
    "smol-vmm on PATH as smolvm",
    SmolvmError,
)


@dataclass(frozen=True, order=True)
class Dialect:
    """Which argv shapes a smolvm version accepts."""

    version: tuple[int, int, int]

    @classmethod
    def parse(cls, text: str) -> Dialect:
        m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
        if not m:
            raise BottleError(f"cannot read a smolvm version from {text.strip()[:80]!r}")
        major, minor, patch = (int(g) for g in m.groups())
        return cls((major, minor, patch))

    @property
    def name_flag_everywhere(self) -> bool:
        return self.version >= (1, 0, 2)

    @property
    def pack_writes_stub(self) -> bool:
        return self.version >= (1, 7, 0)

    @property
    def packs_archives(self) -> bool:
        return self.version >= (1, 31, 0)

    @property
    def exec_user_flag(self) -> bool:
        return self.version >= (1, 14, 0)

    @property
    def secret_env(self) -> bool:
        return self.version >= (1, 4, 0)

    @property
    def state_dir(self) -> bool:
        return self.version >= (1, 31, 0)

    @property
    def egress_persists(self) -> bool:
        """`machine create --from` keeps an egress allow-list (earlier ones dropped it)."""
        return self.version >= (1, 8, 0)

    @property
    def host_patterns(self) -> bool:
        """`--allow-host-pattern '*.domain'` (seen in 1.29's parser, not in 1.14's)."""
        return self.version >= (1, 29, 0)

    def __str__(self) -> str:
        return ".".join(map(str, self.version))


LEGACY = Dialect((0, 8, 0))
MODERN = Dialect((1, 32, 2))


def detect_dialect() -> Dialect:
    """`smolvm --version`, once per smolvm binary (keyed on its path and mtime)."""
    path = TOOL.require()
    return _detect(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _detect(path: str, _mtime: int) -> Dialect:
    result = _proc.run(TOOL.cmd("--version"), timeout=30)
    return Dialect.parse(result.stdout or result.stderr)


def is_available() -> bool:
    return TOOL.available()


def artifact_for(output: Path, dialect: Dialect) -> Path:
    """Where `pack create -o output` leaves the `.smolmachine` that `--from` takes."""
    return output.with_name(output.name + SIDECAR)


# --- argv builders (pure: nothing runs, nothing is looked up) ---------------------------


def _state(state_dir: Path | None, dialect: Dialect) -> list[str]:
    if state_dir is None:
        return []
    if not dialect.state_dir:
        raise BottleError(f"smolvm {dialect} has no --state-dir (1.31 and later have it)")
    return ["--state-dir", str(state_dir)]


def _secret_refs(names: Sequence[str], dialect: Dialect) -> list[str]:
    """`--secret-env NAME=NAME`: smolvm reads the value from its own environment."""
    if names and not dialect.secret_env:
        raise BottleError(
            f"smolvm {dialect} has no --secret-env; secrets would land on argv: upgrade smolvm"
        )
    return repeat("--secret-env", (f"{n}={n}" for n in names))


def pack_create_cmd(
    image: str | Path, output: Path, *, dialect: Dialect, state_dir: Path | None = None
) -> Command:
    if dialect.pack_writes_stub and output.name.endswith(SIDECAR):
        raise BottleError(
            f"smolvm {dialect} writes {output.name}{SIDECAR} itself: give -o without {SIDECAR}"
        )
    if isinstance(image, Path) and not dialect.packs_archives:
        raise BottleError(f"smolvm {dialect} cannot pack an archive; it needs a registry ref")
    return TOOL.cmd("pack", "create", "--image", image, "-o", output,
                    *_state(state_dir, dialect))


def machine_create_cmd(
    name: str,
    *,
    dialect: Dialect,
    from_path: Path | None = None,
    allow_cidrs: Sequence[str] = (),
    allow_hosts: Sequence[str] = (),
    allow_host_patterns: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    secret_env: Sequence[str] = (),
    net: bool | None = None,
    state_dir: Path | None = None,
) -> Command:
    """`secret_env` names host variables; only `GUEST=HOST` references reach argv.
    Egress: `--net` with no allow-list is open; with `allow_cidrs`/`allow_hosts` only
    those are reachable."""
    modern = dialect.name_flag_everywhere
    # --net is explicit: smolvm 0.8's implied net from --allow-cidr doesn't fire with --from.
    if allow_host_patterns and not dialect.host_patterns:
        raise BottleError(f"smolvm {dialect} cannot allow *.domain patterns (1.29 and later "
                          "can): upgrade smolvm or list the host names")
    net_on = net or (net is None and bool(allow_cidrs or allow_hosts or allow_host_patterns))
    return TOOL.cmd("machine", "create", *opt("--name", name if modern else None),
                    *opt("--from", from_path), *flag("--net", net_on),
                    *repeat("--allow-cidr", allow_cidrs), *repeat("--allow-host", allow_hosts),
                    *repeat("--allow-host-pattern", allow_host_patterns),
                    *pairs("-e", env), *_secret_refs(secret_env, dialect),
                    *_state(state_dir, dialect), *([] if modern else [name]))


def _named(verb: str, name: str, dialect: Dialect, state_dir: Path | None) -> Command:
    return TOOL.cmd("machine", verb, "--name", name, *_state(state_dir, dialect))


def machine_start_cmd(name: str, *, dialect: Dialect, state_dir: Path | None = None) -> Command:
    return _named("start", name, dialect, state_dir)


def machine_stop_cmd(name: str, *, dialect: Dialect, state_dir: Path | None = None) -> Command:
    return _named("stop", name, dialect, state_dir)


def machine_delete_cmd(name: str, *, dialect: Dialect, state_dir: Path | None = None) -> Command:
    # -f: no interactive confirmation may block a teardown.
    if dialect.name_flag_everywhere:
        return TOOL.cmd("machine", "delete", "--name", name, "-f", *_state(state_dir, dialect))
    return TOOL.cmd("machine", "delete", "-f", *_state(state_dir, dialect), name)


def machine_exec_cmd(
    name: str,
    command: Sequence[str],
    *,
    dialect: Dialect,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    secret_env: Sequence[str] = (),
    workdir: str | None = None,
    timeout: str | None = None,
    interactive: bool = False,
    tty: bool = False,
    state_dir: Path | None = None,
) -> Command:
    """The workload goes after `--` so smolvm's parser never takes its flags."""
    workload = list(command)
    if user is not None and not dialect.exec_user_flag:
        # No -u before 1.14: switch user inside the guest instead.
        workload = ["su", "-s", "/bin/sh", user, "-c", 'exec "$0" "$@"', *workload]
    return TOOL.cmd("machine", "exec", "--name", name,
                    *opt("-u", user if dialect.exec_user_flag else None), *pairs("-e", env),
                    *_secret_refs(secret_env, dialect), *opt("-w", workdir),
                    *opt("--timeout", timeout), *flag("-i", interactive), *flag("-t", tty),
                    *_state(state_dir, dialect), "--", *workload)


def machine_cp_cmd(
    src: str, dst: str, *, dialect: Dialect, state_dir: Path | None = None
) -> Command:
    return TOOL.cmd("machine", "cp", *_state(state_dir, dialect), src, dst)


# --- runners (dialect detected once when not given) -----------------------------------------


def _d(dialect: Dialect | None) -> Dialect:
    return dialect or detect_dialect()


def pack_create(
    image: str | Path,
    output: Path,
    *,
    dialect: Dialect | None = None,
    state_dir: Path | None = None,
    progress: bool = False,
) -> Path:
    """Pack `image` (registry ref, or `docker save` archive on >= 1.31); return the artifact."""
    d = _d(dialect)
    _proc.run(pack_create_cmd(image, output, dialect=d, state_dir=state_dir), progress=progress)
    return artifact_for(output, d)


def machine_create(
    name: str,
    *,
    dialect: Dialect | None = None,
    from_path: Path | None = None,
    allow_cidrs: Sequence[str] = (),
    allow_hosts: Sequence[str] = (),
    allow_host_patterns: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    secret_env: Sequence[str] = (),
    net: bool | None = None,
    state_dir: Path | None = None,
) -> None:
    _proc.run(machine_create_cmd(
        name, dialect=_d(dialect), from_path=from_path, allow_cidrs=allow_cidrs,
        allow_hosts=allow_hosts, allow_host_patterns=allow_host_patterns, env=env,
        secret_env=secret_env, net=net, state_dir=state_dir))


def machine_start(name: str, *, dialect: Dialect | None = None,
                  state_dir: Path | None = None) -> None:
    _proc.run(machine_start_cmd(name, dialect=_d(dialect), state_dir=state_dir))


def machine_stop(name: str, *, dialect: Dialect | None = None,
                 state_dir: Path | None = None) -> Result:
    """Stop a machine; returns the result (teardown decides what a failure means)."""
    return _proc.run(machine_stop_cmd(name, dialect=_d(dialect), state_dir=state_dir),
                     check=False, timeout=TEARDOWN_TIMEOUT)


def machine_delete(name: str, *, dialect: Dialect | None = None,
                   state_dir: Path | None = None) -> Result:
    """Delete a machine and its disks; returns the result (a missing one is no error)."""
    return _proc.run(machine_delete_cmd(name, dialect=_d(dialect), state_dir=state_dir),
                     check=False, timeout=TEARDOWN_TIMEOUT)


def machine_exec(
    name: str,
    command: Sequence[str],
    *,
    dialect: Dialect | None = None,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    timeout: str | None = None,
    state_dir: Path | None = None,
) -> Result:
    """Run `command` in the machine; a non-zero exit is returned, not raised."""
    cmd = machine_exec_cmd(name, command, dialect=_d(dialect), user=user, env=env,
                           workdir=workdir, timeout=timeout, state_dir=state_dir)
    return _proc.run(cmd, check=False)


def machine_cp(src: str, dst: str, *, dialect: Dialect | None = None,
               state_dir: Path | None = None) -> None:
    """Copy host <-> machine (`name:/path`). An empty side is a no-op, not a smolvm error."""
    if not src or not dst:
        return
    _proc.run(machine_cp_cmd(src, dst, dialect=_d(dialect), state_dir=state_dir))


def wait_exec_ready(
    name: str,
    *,
    timeout: float = 60.0,
    interval: float = 0.25,
    dialect: Dialect | None = None,
    state_dir: Path | None = None,
) -> None:
    """Poll `exec true` until it exits 0; `SmolvmError` naming the machine on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        last = machine_exec(name, ["true"], dialect=dialect, state_dir=state_dir)
        if last.returncode == 0:
            return
        if time.monotonic() >= deadline:
            raise SmolvmError(
                ["smolvm", "machine", "exec", "--name", name, "--", "true"],
                last.returncode, last.stdout, last.stderr,
                reason=f"machine {name} not ready after {timeout:g}s: {last.stderr.strip()}",
            )
        time.sleep(interval)
