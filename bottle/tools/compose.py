"""Compose: render a deployment's config with compose itself (v2 plugin, else v1).

Compose does the work we must not imitate: it reads COMPOSE_FILE (several files,
joined by COMPOSE_PATH_SEPARATOR) and the variables from the project's `.env`, and
interpolates `${VERSION}` exactly as a deploy will.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bottle.errors import BottleError
from bottle.tools import _proc, docker
from bottle.tools._argv import opt, repeat
from bottle.tools._proc import Command, Tool, ToolError


class ComposeError(ToolError):
    """compose exited non-zero (bad file, unset required variable, ...)."""


V1 = Tool(
    "docker-compose",
    "install Docker Compose (the `docker compose` plugin, or Debian: apt-get install "
    "docker-compose)",
    ComposeError,
)
V2 = Tool("docker", V1.hint, ComposeError)


def _global(
    files: Sequence[Path], project_dir: Path | None, env_file: Path | None,
    profiles: Sequence[str],
) -> list[str]:
    return [*repeat("-f", map(str, files)), *opt("--project-directory", project_dir),
            *opt("--env-file", env_file), *repeat("--profile", profiles)]


def config_cmd(
    *,
    v2: bool,
    files: Sequence[Path] = (),
    project_dir: Path | None = None,
    env_file: Path | None = None,
    profiles: Sequence[str] = (),
) -> Command:
    """With no `files`, compose finds them itself (COMPOSE_FILE in `.env`, else compose.yaml)."""
    g = _global(files, project_dir, env_file, profiles)
    if v2:
        return V2.cmd("compose", *g, "config", "--format", "json")
    return V1.cmd(*g, "config")


_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


def has_v2() -> bool:
    """Whether `docker compose` exists: the docker CLI's own plugin search, without running it."""
    if not docker.TOOL.available():
        return False
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    dirs = [config / "cli-plugins", *map(Path, _PLUGIN_DIRS)]
    return any(os.access(d / "docker-compose", os.X_OK) for d in dirs)


def render(
    *,
    files: Sequence[Path] = (),
    project_dir: Path | None = None,
    env_file: Path | None = None,
    profiles: Sequence[str] = (),
    cwd: Path | None = None,
) -> dict[str, Any]:
    """The fully interpolated compose model (services, their images, builds and profiles)."""
    v2 = has_v2()
    if not v2 and not V1.available():
        raise BottleError(f"no compose found: {V1.hint}")
    cmd = config_cmd(v2=v2, files=files, project_dir=project_dir, env_file=env_file,
                     profiles=profiles)
    out = _proc.run(cmd, cwd=cwd, timeout=120).stdout
    try:
        model = json.loads(out) if v2 else yaml.safe_load(out)
    except (ValueError, yaml.YAMLError) as err:
        raise BottleError(f"cannot read compose's rendered config: {err}") from None
    if not isinstance(model, dict):
        raise BottleError("compose rendered no config")
    return model
