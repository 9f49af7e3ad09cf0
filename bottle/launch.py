"""`launch`: prepare the image or artifact, start a bottle, run the agent, tear it down.

The exit code is the agent's. The bottle is removed on success, failure, Ctrl-C and
SIGTERM (teardown is shielded from a second one); what a SIGKILLed launch left is
swept by the next launch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import xxhash

from bottle import agents
from bottle import backend as backends
from bottle.backend import Backend, BottleSpec
from bottle.config import Config, cwd
from bottle.errors import BottleError
from bottle.progress import say
from cache.store import Store


def choose(name: str, store: Store) -> Backend:
    """The backend named, or for `auto` smolmachines where a microVM really boots, else
    docker (saying why)."""
    registry = backends.registry()
    if name != "auto":
        chosen = registry[name]
        why = chosen.available(store)
        if why is not None:
            raise BottleError(f"the {name} backend cannot run here: {why}")
        return chosen
    from bottle.backend.smolmachines import SmolmachinesBackend

    smol = registry["smolmachines"]
    assert isinstance(smol, SmolmachinesBackend)
    if smol.available(store) is None and not smol.probed(store):
        say("launch: backend auto: checking once whether a microVM boots here (the answer "
            "is kept)")
    why = smol.boots(store)
    if why is None:
        return smol
    say(f"launch: backend auto: using docker ({why})")
    return registry["docker"]


def spec_of(cfg: Config, store: Store, *, tty: bool = False) -> BottleSpec:
    """The bottle a config asks for, checked before anything starts."""
    profile = agents.profile(cfg.agent)
    workspace = cfg.workspace or cfg.project_root or cwd()
    if not workspace.is_dir():
        raise BottleError(f"workspace {workspace} is not a directory")
    names = profile.secrets if cfg.secrets is None else tuple(cfg.secrets)
    missing = [n for n in names if n not in os.environ]
    if cfg.secrets is not None and missing:
        raise BottleError(f"secret {missing[0]} is not set in the environment")
    secrets = {n: os.environ[n] for n in names if n in os.environ}
    for n, v in secrets.items():
        if "\0" in v or "\n" in v or "\r" in v:
            raise BottleError(f"secret {n} holds a NUL or a line break")
    clash = sorted(set(secrets) & set(cfg.env))
    if clash:
        raise BottleError(f"{clash[0]} is both in env and in secrets")
    return BottleSpec(
        launch_id=f"{os.getpid()}-{os.urandom(4).hex()}",
        command=cfg.command or profile.command, workspace=workspace.resolve(),
        agent_args=tuple(cfg.agent_args), tty=tty, user=cfg.user,
        network=cfg.network or profile.network,
        egress=tuple(dict.fromkeys([*(profile.egress if cfg.egress is None else cfg.egress),
                                    *cfg.egress_add])),
        egress_network=cfg.egress_network, env={**profile.env, **cfg.env}, secrets=secrets,
        allow_cidrs=tuple(cfg.allow_cidrs), cpus=cfg.cpus, memory=cfg.memory,
        pids_limit=cfg.pids_limit, state_dir=cfg.smolvm_state_dir,
        agent_state=profile.state, agent_state_dir=state_dir(cfg, store),
    )


def state_dir(cfg: Config, store: Store) -> Path:
    """Where the agent's state lives for this project (its config file's directory, else
    the workspace), under the cache's state area."""
    project = cfg.project_root or cfg.workspace or cwd()
    key = xxhash.xxh64_hexdigest(os.fsencode(project.resolve()))
    return store.area("state") / f"{cfg.agent}-{key}"


def sweep(store: Store, only: Backend | None = None) -> tuple[list[str], list[str]]:
    """What launches that were killed left behind, removed (by `only`, else by every
    backend): what went, and why a backend could not be checked."""
    removed: list[str] = []
    unchecked: list[str] = []
    for b in [only] if only else backends.registry().values():
        try:
            removed += b.sweep(store)
        except BottleError as err:
            # A launch goes on: the step that needs the engine next says why, in its words.
            if not only:
                unchecked.append(str(err))
    return removed, unchecked


def launch(cfg: Config, store: Store) -> int:
    backend = choose(cfg.backend, store)
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    if cfg.tty and not terminal:
        raise BottleError("--tty needs a terminal on stdin and stdout (use --headless in "
                          "scripts)")
    tty = cfg.tty if cfg.tty is not None else terminal
    spec = spec_of(cfg, store, tty=tty)
    for name in sweep(store, backend)[0]:
        say(f"launch: removed {name}, left by a launch that was killed")
    prepared = backend.prepare(cfg, store)
    say(prepared.line)
    with backends.started(backend, prepared, spec, store) as bottle:
        say(f"launch: {backend.name} bottle {spec.launch_id} running {spec.command}")
        code = bottle.run_agent(cfg.agent_args, tty=tty)
        line = bottle.summary()
        if line:
            say(line)
    if bottle.left:
        say(f"launch: could not remove {', '.join(bottle.left)}; the next launch or "
            "`bottle sweep` removes it")
    say(f"launch: agent exited {code}; bottle removed")
    return code
