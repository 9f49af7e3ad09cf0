"""Configuration in one place: every key is declared once (type, default, help), and
the file, environment and task-parameter layers, the tasks' options and `bottle help`
all derive from that declaration.

Lowest to highest: built-in defaults; `bottle.toml` (or `[tool.bottle]` in
pyproject.toml), found in the working directory or the nearest parent that has one
(relative paths in it resolve against its directory); `BOTTLE_<KEY>` environment
variables; task parameters. Unknown keys and bad values are errors that name their
source. `Config` is a pure value: loading it reads files, using it does not.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bottle.errors import BottleError, ConfigError
from cache.record import dataclass, field, fields

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BACKENDS = ("docker", "smolmachines", "auto")
AGENTS = ("example", "claude")
BASES = ("official", "local")
NETWORKS = ("none", "host", "egress")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Docker's rule for network (and container) names.
_DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_SIZE = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)
CONFIG_FILE = "bottle.toml"


@dataclass(frozen=True)
class Config:
    """Every setting of a run, merged from its layers and validated."""

    context: Path | None = None  # None: the agent profile's own build context
    dockerfile: Path | None = None
    image: str | None = None  # None: derived from the project
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    ca_certs: Path | None = None
    base: str = "official"
    build_network: str | None = None
    backend: str = "docker"
    agent: str = "example"
    command: str | None = None  # None: the profile's agent command
    agent_args: list[str] = field(default_factory=list)
    tty: bool | None = None
    workspace: Path | None = None  # None: the working directory
    user: str = "node"
    network: str | None = None  # None: the profile's default
    egress: list[str] | None = None  # None: the profile's allow-list
    egress_add: list[str] = field(default_factory=list)
    egress_network: str = "bridge"
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] | None = None  # None: the profile's secret names
    allow_cidrs: list[str] = field(default_factory=list)
    cpus: str | None = None
    memory: str | None = None
    pids_limit: int = 1024
    artifact: Path | None = None
    smolvm_state_dir: Path | None = None
    compose_files: list[Path] = field(default_factory=list)
    project_dir: Path | None = None
    profiles: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    jobs: int = 4
    remote: str | None = None
    remote_push: bool = False
    # Where the config came from: the file (None when there is none) and its directory.
    config_file: Path | None = None
    project_root: Path | None = None


# --- converters: raise ValueError with what was expected ------------------------------


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    if any(ord(c) < 32 for c in v) or "\x7f" in v:
        raise ValueError("control characters are not allowed")
    return v


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.lower() in ("1", "true", "yes", "on")
    raise ValueError("expected true or false")


def _count(v: Any) -> int:
    if isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
        raise ValueError("expected a whole number")
    try:
        n = int(v)
    except (TypeError, ValueError, OverflowError):
        raise ValueError("expected a whole number") from None
    if isinstance(v, float) and n != v:
        raise ValueError("expected a whole number")
    if not 1 <= n <= 1_000_000:
        raise ValueError("expected a number from 1 to 1000000")
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
        if any(len(i) != 2 for i in items):
            raise ValueError("expected KEY=VALUE pairs")
        v = dict(items)
    if not isinstance(v, Mapping) or not all(
            isinstance(x, str | int | float | bool) for x in v.values()):
        raise ValueError("expected a table of KEY = value")
    return {str(k): str(x).lower() if isinstance(x, bool) else str(x) for k, x in v.items()}


def _env_table(v: Any) -> dict[str, str]:
    table = _table(v)
    for k, x in table.items():
        _env_name(k)
        if "\0" in x or "\n" in x or "\r" in x:
            raise ValueError(f"the value of {k} holds a NUL or a line break")
    return table


def _env_name(name: str) -> str:
    if not ENV_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid environment variable name "
                         "(letters, digits and _, not starting with a digit)")
    return name


def _names(v: Any) -> list[str]:
    return [_env_name(n) for n in _list(v)]


def _cidrs(v: Any) -> list[str]:
    import ipaddress

    out = []
    for c in _list(v):
        try:
            out.append(str(ipaddress.ip_network(c, strict=False)))
        except ValueError:
            raise ValueError(f"{c!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
    return out


def _choice(options: Sequence[str]) -> Callable[[Any], str]:
    def conv(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return str(v)
    return conv


def _network(v: Any) -> str:
    name = _text(v)
    if name not in NETWORKS and not _DOCKER_NAME.match(name):
        raise ValueError(f"expected {', '.join(NETWORKS)} or a docker network name")
    return name


def _egress_network(v: Any) -> str:
    name = _text(v)
    if name in NETWORKS or not _DOCKER_NAME.match(name):
        raise ValueError("expected a docker network name (e.g. bridge)")
    return name


def _command(v: Any) -> str:
    text = _text(v)
    if any(c.isspace() for c in text):
        raise ValueError("expected one program: its arguments go after -- "
                         "(bottle launch -- ARGS)")
    return text


def _image_tag(v: Any) -> str:
    """A name `docker build --tag` takes (checked by the reference grammar)."""
    from bottle import reference

    return _checked_by(reference.parse_tag_target, v)


def _remote(v: Any) -> str:
    from bottle.remote import Remote

    return _checked_by(Remote.parse, v)


def _checked_by(check: Callable[[str], object], v: Any) -> str:
    """`v` as text that `check` accepts; its error becomes the key's."""
    text = _text(v)
    try:
        check(text)
    except BottleError as err:
        raise ValueError(str(err)) from None
    return text


def _egress(v: Any) -> list[str]:
    from bottle.egress import OBSERVE, EgressError, parse_allow_list

    if v == OBSERVE:
        return [OBSERVE]
    try:
        return [str(rule) for rule in parse_allow_list(_list(v))]
    except EgressError as err:
        raise ValueError(str(err)) from None


def _user(v: Any) -> str:
    name = _text(v)
    if not _USER.match(name) and not name.isdigit():
        raise ValueError("expected a user name or uid")
    return name


def _size(v: Any) -> str:
    text = _text(str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
    if not _SIZE.match(text) or float(re.sub(r"[bkmgBKMG]$", "", text)) <= 0:
        raise ValueError("expected an amount such as 512m or 2g")
    return text


def _cpus(v: Any) -> str:
    try:
        n = float(v)
    except (TypeError, ValueError):
        raise ValueError("expected a number of CPUs such as 2 or 1.5") from None
    if not math.isfinite(n) or n <= 0 or n > 1024:
        raise ValueError("expected a number of CPUs such as 2 or 1.5")
    return f"{n:g}"


# --- the declaration -------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One config key: its converter, help, and where it may be set."""

    name: str
    convert: Callable[[Any], Any]
    help: str
    path: bool = False  # a path: relative values resolve against their layer's directory
    tasks: tuple[str, ...] = ()  # the tasks that take it as an option
    long: str | None = None  # the option's name when it differs from the key's
    short: str | None = None
    option_type: type = str
    inverse: str | None = None
    settable: bool = True  # False: a task option only (not in bottle.toml or BOTTLE_*)

    @property
    def default(self) -> Any:
        f = _FIELDS[self.name]
        return f.default_factory() if callable(f.default_factory) else f.default


def _path(v: Any) -> Path:
    if not isinstance(v, str | Path) or not str(v) or "\0" in str(v):
        raise ValueError("expected a path")
    return Path(v).expanduser()


def _paths(v: Any) -> list[Path]:
    return [_path(x) for x in _list(v)]


_BUILD = ("build", "pack", "launch")
KEYS: tuple[Key, ...] = (
    Key("context", _path, "build context of the agent image (default: the agent "
        "profile's own)", path=True),
    Key("dockerfile", _path, "Dockerfile (default: Dockerfile in the context)", path=True),
    Key("image", _image_tag, "tag of the built image (default: bot-bottle/<project>-<agent>:<hash>;"
        " the bundled example's: bot-bottle/example:<hash>)"),
    Key("build_args", _table, "build arguments, KEY = value"),
    Key("target", _text, "build stage to build"),
    Key("ca_certs", _path, "CA bundle that builds trust (for TLS-intercepting proxies)",
        path=True),
    Key("base", _choice(BASES), "the agent's base image: official (node:22-bookworm-slim "
        "from Docker Hub) or local (made from Debian packages by `bottle base`)"),
    Key("build_network", _network, "network for builds (default: the profile's; claude: "
        "host, to reach the npm registry)"),
    Key("backend", _choice(BACKENDS), "docker, smolmachines, or auto (smolmachines where "
        "a microVM really boots)", tasks=("launch",)),
    Key("agent", _choice(AGENTS), "agent profile: example (offline stand-in) or claude "
        "(Claude Code)", tasks=_BUILD),
    Key("command", _command, "command run in the bottle (default: the profile's)",
        tasks=("launch",)),
    Key("agent_args", _list, "arguments for the agent (after --)", settable=False),
    Key("tty", _bool, "--tty: interactive session; --headless: no terminal (default: a "
        "terminal when stdin and stdout are one)", tasks=("launch",), option_type=bool,
        inverse="headless"),
    Key("workspace", _path, "host directory at /workspace (default: the directory of the "
        "bottle.toml in use, else the working directory)", path=True, tasks=("launch",)),
    Key("user", _user, "the agent's user in the image (mapped to the workspace owner)"),
    Key("network", _network, "none, host, egress (allow-list proxy) or a docker network "
        "(default: the profile's)", tasks=("launch",)),
    Key("egress", _egress, "allowed hosts (name, *.domain, optional :port), or "
        "\"observe\" (default: the profile's)"),
    Key("egress_add", _egress, "hosts allowed on top of `egress` (or of the profile's "
        "list)"),
    Key("egress_network", _egress_network, "docker network the egress proxy reaches out through"),
    Key("env", _env_table, "plain environment for the agent, KEY = value"),
    Key("secrets", _names, "names of host variables passed to the agent by reference"),
    Key("allow_cidrs", _cidrs, "smolmachines: extra CIDRs the machine may reach"),
    Key("cpus", _cpus, "CPUs the bottle may use (default: no limit)"),
    Key("memory", _size, "memory the bottle may use, e.g. 4g (default: no limit)"),
    Key("pids_limit", _count, "processes the bottle may run"),
    Key("artifact", _path, "a committed .smolmachine to use as is, when present", path=True),
    Key("smolvm_state_dir", _path, "smolvm --state-dir (smolvm 1.31 and later)", path=True),
    Key("compose_files", _paths, "compose file (default: compose finds them)", path=True,
        tasks=("prepull",), long="file", short="f", option_type=list),
    Key("project_dir", _path, "the deployment's directory (where its .env is)", path=True,
        tasks=("prepull",), long="project-dir"),
    Key("profiles", _list, "compose profile to enable (repeatable)", tasks=("prepull",),
        long="profile", option_type=list),
    Key("images", _list, "pull these images instead of asking compose (repeatable)",
        tasks=("prepull",), long="image", option_type=list),
    Key("jobs", _count, "pulls at once", tasks=("prepull",), short="j", option_type=int),
    Key("remote", _remote, "a shared cache, HOST[:PORT]/REPO in an OCI registry (credentials "
        "from docker's config or $REGISTRY_AUTH_FILE)"),
    Key("remote_push", _bool, "push what is built here to the shared cache (CI: true)"),
)
_FIELDS = {f.name: f for f in fields(Config)}
BY_NAME = {k.name: k for k in KEYS}


def option(key: Key) -> dict[str, Any]:
    """The doit option for `key`: its help says the config key and default once."""
    default = key.default
    shown = ("none" if default is None else " ".join(map(str, default))
             if isinstance(default, list) else str(default).lower()
             if isinstance(default, bool) else str(default))
    notes = [f"config: {key.name}"] if key.settable else []
    if default not in (None, [], {}):
        notes.append(f"default: {shown}")
    opt: dict[str, Any] = {
        "name": key.name, "long": key.long or key.name.replace("_", "-"),
        "type": key.option_type, "default": [] if key.option_type is list else None,
        "help": f"{key.help} [{'; '.join(notes)}]" if notes else key.help,
    }
    if key.short:
        opt["short"] = key.short
    if key.inverse:
        opt["inverse"] = key.inverse
    return opt


def options_for(task: str) -> list[dict[str, Any]]:
    return [option(k) for k in KEYS if task in k.tasks]


def describe() -> str:
    """The config keys, for `bottle help`."""
    lines = ["Config keys (bottle.toml, [tool.bottle] in pyproject.toml, or BOTTLE_<KEY>):"]
    for k in KEYS:
        if k.settable:
            lines.append(f"  {k.name:<17} {k.help}")
    return "\n".join(lines)


# --- loading ----------------------------------------------------------------------------


def find_config(start: Path) -> tuple[Path, dict[str, Any], str] | None:
    """The nearest `bottle.toml` or pyproject.toml with `[tool.bottle]`, looking from
    `start` upward like git and compose: (file, its table, how to name it in errors)."""
    for own, pyproject in candidates(start):
        if own.is_file():
            if pyproject.is_file() and b"bottle" in pyproject.read_bytes() and \
                    _tool_table(pyproject) is not None:  # (a byte search first: cheap)
                raise ConfigError(f"{own.parent} has both {CONFIG_FILE} and [tool.bottle] in "
                                  "pyproject.toml: keep one (the other would be ignored)")
            return own, _read_toml(own), str(own)
        if pyproject.is_file():
            data = _tool_table(pyproject)
            if data is not None:
                return pyproject, data, f"{pyproject} [tool.bottle]"
    return None


def _tool_table(pyproject: Path) -> dict[str, Any] | None:
    """pyproject.toml's `[tool.bottle]`, None when it has none."""
    tool = _read_toml(pyproject).get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{pyproject}: [tool] must be a table")
    data = tool.get("bottle")
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{pyproject}: [tool.bottle] must be a table")
    return data


def candidates(start: Path) -> list[tuple[Path, Path]]:
    """Where `find_config` looks, nearest first: (bottle.toml, pyproject.toml) per directory."""
    return [(d / CONFIG_FILE, d / "pyproject.toml") for d in [start, *start.parents]]


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # here: a run without a config file need not load it

    try:
        # A byte-order mark (some editors write one) is not TOML; it means nothing here.
        return tomllib.loads(path.read_bytes().decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}") from None


def cwd() -> Path:
    try:
        return Path.cwd()
    except (FileNotFoundError, PermissionError):
        raise ConfigError("the working directory no longer exists (or cannot be read); "
                          "cd somewhere else") from None


def load(
    params: Mapping[str, Any] | None = None,
    *,
    start: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge the layers; `params` values of None (or empty lists) mean "not given"."""
    here = start or cwd()
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    def apply(layer: Mapping[str, Any], source: str, base: Path, *, strict: bool) -> None:
        for raw_key, raw in layer.items():
            name = str(raw_key).replace("-", "_")
            key = BY_NAME.get(name)
            if key is None or (strict and not key.settable):
                if strict:
                    known = ", ".join(k.name for k in KEYS if k.settable)
                    raise ConfigError(f"{source}: unknown key {raw_key!r} (known: {known})")
                continue
            try:
                value = key.convert(raw)
            except ValueError as err:
                raise ConfigError(f"{source}: {raw_key} = {raw!r}: {err}") from None
            values[name] = _resolve(value, base) if key.path else value

    found = find_config(here)
    if found:
        file, data, source = found
        apply(data, source, file.parent, strict=True)
        values["config_file"], values["project_root"] = file, file.parent
    env_layer = {k[7:].lower(): v for k, v in environ.items()
                 if k.startswith("BOTTLE_") and k not in ("BOTTLE_CACHE_DIR",)}
    for name in env_layer:
        if name not in BY_NAME or not BY_NAME[name].settable:
            raise ConfigError(f"unknown environment variable BOTTLE_{name.upper()}")
    apply(env_layer, "environment", here, strict=True)
    apply({k: v for k, v in (params or {}).items() if v is not None and v != []},
          "option", here, strict=False)
    return Config(**values)


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return value if value.is_absolute() else base / value
    if isinstance(value, list) and value and isinstance(value[0], Path):
        # compose files: `-` is compose's standard input, not a file here
        return [v if str(v) == "-" else _resolve(v, base) for v in value]
    return value
