"""Configuration in one place.

Lowest to highest: built-in defaults, `bottle.toml` (or `[tool.bottle]` in
pyproject.toml) in the working directory, `BOTTLE_<KEY>` environment variables,
task parameters. Unknown keys and bad values are errors that name their source.
"""

from __future__ import annotations

import functools
import os
import shlex
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bottle.errors import ConfigError

BACKENDS = ("docker", "smolmachines", "auto")


@functools.cache
def example_agent_dir() -> Path:
    """The bundled example agent (a FROM-scratch busybox image with a stand-in claude)."""
    from bottle.example import example_context

    try:
        import bottle_examples

        source = Path(bottle_examples.__file__).parent / "agent"
    except ImportError:  # a checkout on sys.path (e.g. an editable install in compat mode)
        source = Path(__file__).resolve().parent.parent / "examples" / "agent"
    return example_context(source)


@dataclass(frozen=True)
class Config:
    context: Path | None = None  # None: the bundled example agent
    dockerfile: Path | None = None
    image: str = "bot-bottle-agent:latest"
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    backend: str = "docker"
    agent: str = "claude"
    agent_args: list[str] = field(default_factory=list)
    tty: bool | None = None
    workspace: Path = field(default_factory=Path.cwd)
    network: str = "none"
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    allow_cidrs: list[str] = field(default_factory=list)
    artifact: Path | None = None
    smolvm_state_dir: Path | None = None
    compose_files: list[Path] = field(default_factory=list)
    project_dir: Path | None = None
    profiles: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    jobs: int = 4

    @property
    def build_context(self) -> Path:
        return self.context or example_agent_dir()

    @property
    def dockerfile_path(self) -> Path:
        return self.dockerfile or self.build_context / "Dockerfile"


def _path(base: Path) -> Callable[[Any], Path]:
    def conv(v: Any) -> Path:
        if not isinstance(v, str | Path) or not str(v):
            raise ValueError("expected a path")
        p = Path(v).expanduser()
        return p if p.is_absolute() else base / p
    return conv


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    return v


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.lower() in ("1", "true", "yes", "on")
    raise ValueError("expected true or false")


def _int(v: Any) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise ValueError("expected a whole number") from None
    if n < 1:
        raise ValueError("expected a number >= 1")
    return n


def _list(v: Any) -> list[str]:
    if isinstance(v, str):
        return shlex.split(v)
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return list(v)
    raise ValueError("expected a list of strings")


def _table(v: Any) -> dict[str, str]:
    if isinstance(v, str):
        items = [x.split("=", 1) for x in shlex.split(v)]
        if any(len(i) != 2 or not i[0] for i in items):
            raise ValueError("expected KEY=VALUE pairs")
        return {k: val for k, val in items}
    if isinstance(v, Mapping) and all(isinstance(x, str | int | float | bool) for x in v.values()):
        return {str(k): str(x) for k, x in v.items()}
    raise ValueError("expected a table of KEY = value")


def _converters(base: Path) -> dict[str, Callable[[Any], Any]]:
    path = _path(base)

    def backend(v: Any) -> str:
        if v not in BACKENDS:
            raise ValueError(f"expected one of {', '.join(BACKENDS)}")
        return str(v)

    def paths(v: Any) -> list[Path]:
        return [path(x) for x in _list(v)]

    return {
        "context": path, "dockerfile": path, "image": _str, "build_args": _table,
        "target": _str, "backend": backend, "agent": _str, "agent_args": _list, "tty": _bool,
        "workspace": path, "network": _str, "env": _table, "secrets": _list,
        "allow_cidrs": _list, "artifact": path, "smolvm_state_dir": path,
        "compose_files": paths, "project_dir": path, "profiles": _list, "images": _list,
        "jobs": _int,
    }


KEYS = tuple(f.name for f in fields(Config))


def _file_layer(cwd: Path) -> tuple[dict[str, Any], str]:
    own = cwd / "bottle.toml"
    if own.is_file():
        return _read_toml(own), str(own)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        data = _read_toml(pyproject).get("tool", {}).get("bottle", {})
        if not isinstance(data, dict):
            raise ConfigError(f"{pyproject}: [tool.bottle] must be a table")
        return data, f"{pyproject} [tool.bottle]"
    return {}, ""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: {err}") from None


def load(
    params: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge the layers; `params` values of None mean "not given"."""
    cwd = cwd or Path.cwd()
    environ = os.environ if environ is None else environ
    conv = _converters(cwd)
    values: dict[str, Any] = {}

    def apply(layer: Mapping[str, Any], source: str, *, strict: bool) -> None:
        for key, raw in layer.items():
            name = key.replace("-", "_")
            if name not in conv:
                if strict:
                    hint = ", ".join(KEYS)
                    raise ConfigError(f"{source}: unknown key {key!r} (known: {hint})")
                continue
            try:
                values[name] = conv[name](raw)
            except ValueError as err:
                raise ConfigError(f"{source}: {key} = {raw!r}: {err}") from None

    data, source = _file_layer(cwd)
    apply(data, source, strict=True)
    env_layer = {k[7:].lower(): v for k, v in environ.items()
                 if k.startswith("BOTTLE_") and k != "BOTTLE_CACHE_DIR"}
    unknown = [k for k in env_layer if k not in conv]
    if unknown:
        raise ConfigError(f"unknown environment variable BOTTLE_{unknown[0].upper()}")
    apply(env_layer, "environment", strict=True)
    apply({k: v for k, v in (params or {}).items() if v is not None and v != []},
          "parameter", strict=False)
    return Config(**values)
