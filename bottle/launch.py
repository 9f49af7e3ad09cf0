"""`launch`: prepare the image or artifact, start a bottle, run the agent, tear it down.

The exit code is the agent's. The bottle is removed on success, failure, Ctrl-C and
SIGTERM; one left by a SIGKILLed launch is swept by the next launch.
"""

from __future__ import annotations

import os
import sys
import uuid

from bottle import image
from bottle.backend import DEFAULT_USER, WORKSPACE, Bottle
from bottle.backend import docker as docker_backend
from bottle.backend import smolmachines as smol_backend
from bottle.config import Config
from bottle.errors import BottleError
from bottle.progress import say
from bottle.tools import docker, smolvm
from cache.store import Store


def resolve_backend(name: str) -> str:
    if name == "auto":
        return "smolmachines" if smolvm.can_boot() else "docker"
    return name


def _secrets(cfg: Config) -> dict[str, str]:
    missing = [n for n in cfg.secrets if n not in os.environ]
    if missing:
        raise BottleError(f"secret {missing[0]} is not set in the environment")
    return {n: os.environ[n] for n in cfg.secrets}


def launch(cfg: Config, store: Store) -> int:
    backend = resolve_backend(cfg.backend)
    if not cfg.workspace.is_dir():
        raise BottleError(f"workspace {cfg.workspace} is not a directory")
    secrets = _secrets(cfg)
    tty = cfg.tty if cfg.tty is not None else sys.stdin.isatty() and sys.stdout.isatty()
    launch_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    bottle: Bottle
    for name in (docker_backend.sweep() if backend == "docker" else smol_backend.sweep()):
        say(f"launch: removed {name}, left by a launch that was killed")
    if backend == "docker":
        built = image.ensure_image(cfg, store)
        say(f"build: {built.summary()}")
        bottle = docker_backend.start(
            built.image_id, launch_id=launch_id, agent_command=cfg.agent,
            workspace=cfg.workspace, network=cfg.network, env={**cfg.env, **secrets},
        )
        runner = docker.TOOL
    else:
        packed = image.agent_artifact(cfg, store)
        say(f"pack: {packed.reason}")
        bottle = smol_backend.start(
            packed.artifact, launch_id=launch_id, agent_command=cfg.agent,
            workspace=cfg.workspace, network=cfg.network, allow_cidrs=cfg.allow_cidrs,
            env=cfg.env, secrets=list(secrets), state_dir=cfg.smolvm_state_dir,
        )
        runner = smolvm.TOOL
    try:
        if bottle.exec(["test", "-w", WORKSPACE]).returncode != 0:
            say(f"launch: warning: {DEFAULT_USER} cannot write {WORKSPACE} "
                f"(host {cfg.workspace} is owned by uid {cfg.workspace.stat().st_uid})")
        argv = bottle.agent_argv(cfg.agent_args, tty=tty)
        say(f"launch: {backend} bottle {launch_id} running {cfg.agent}")
        code = runner.run_attached(runner[tuple(argv[1:])])
    finally:
        bottle.close()
    say(f"launch: agent exited {code}; bottle removed")
    return code
