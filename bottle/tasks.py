"""The doit tasks. Thin: each one calls the modules that do the work.

Build inputs (context, Dockerfile, build args, target, image tag) come from the
config file and BOTTLE_* environment; per-run choices (backend, agent args, tty,
workspace, prepull's files and images) are also task parameters.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import xxhash
from doit.exceptions import TaskFailed
from doit.task import UptodateCalculator

from bottle import config as config_mod
from bottle import image
from bottle.errors import BottleError
from bottle.progress import say
from bottle.reporter import REASONS, RESULTS, BottleReporter
from bottle.tools import docker
from cache import cache_root
from cache.checker import XXHChecker
from cache.digest import ContextDigest
from cache.errors import UserError
from cache.store import Store


def _dep_file() -> str:
    # One sqlite3 dep DB per working directory, kept in the cache root: sqlite locks
    # make concurrent runs safe, and checkouts stay clean.
    key = xxhash.xxh64_hexdigest(str(Path.cwd().resolve()).encode())
    path = cache_root() / "doit" / f"{key}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


DOIT_CONFIG: dict[str, Any] = {
    "backend": "sqlite3",
    "dep_file": _dep_file(),
    "check_file_uptodate": XXHChecker,
    "reporter": BottleReporter,
    "verbosity": 2,
    "default_tasks": ["launch"],
}


@functools.lru_cache(maxsize=1)
def _base_config() -> config_mod.Config:
    return config_mod.load()


def _store() -> Store:
    return Store(cache_root())


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A BottleError becomes one line on stderr and a failed task (exit 1), no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"bottle: error: {err}", file=sys.stderr, flush=True)
            return TaskFailed(str(err), report=False)

    return wrapper


def _config_files() -> list[str]:
    return [str(p) for p in (Path("bottle.toml"), Path("pyproject.toml")) if p.is_file()]


# --- digest, build, pack ----------------------------------------------------------------


@_user_errors
def _compute_context() -> dict[str, Any]:
    return asdict(image.digest_context(_base_config(), _store()))


def task__context() -> dict[str, Any]:
    """Context digest of the agent image's build inputs (always computed; cheap when warm)."""
    return {"actions": [_compute_context], "verbosity": 2}


class context_unchanged(UptodateCalculator):  # type: ignore[misc]
    """Up to date while `_context`'s digest is the one this task last acted on (saved in
    its values as "context"). Unlike result_dep, the rest of `_context`'s answer (what
    changed, how many files were hashed) doesn't count."""

    def configure_task(self, task: Any) -> None:
        task.task_dep.append("_context")

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        current = self.get_val("_context", "result:") or {}  # as doit's result_dep reads it
        return bool(values.get("context") == current.get("hexdigest"))


def _context_arg(values: dict[str, Any]) -> ContextDigest:
    return ContextDigest(**values)


def _image_present(task: Any, values: dict[str, Any]) -> bool:
    """The context is unchanged since the last build (result_dep); is its image still there?"""
    image_id = values.get("image_id")
    try:
        if not image_id or not docker.engine_has_image(str(image_id)):
            return False
    except BottleError:
        return False
    REASONS["build"] = f"cache hit {str(values.get('context'))[:16]} (image {image_id[7:19]})"
    return True


@_user_errors
def _build(ctx: dict[str, Any]) -> dict[str, Any]:
    built = image.ensure_image(_base_config(), _store(), ctx=_context_arg(ctx))
    say(f"build: {built.summary()}")
    return {"image_id": built.image_id, "context": built.context.hexdigest}


def task_build() -> dict[str, Any]:
    """Ensure the agent image: `docker build` only when the context digest changed."""
    return {
        "actions": [_build],
        "getargs": {"ctx": ("_context", None)},
        "setup": ["_context"],  # else getargs adds a result_dep on all of _context's answer
        "file_dep": _config_files(),
        "uptodate": [context_unchanged(), _image_present],
        "verbosity": 2,
    }


def _smolmachine_present(task: Any, values: dict[str, Any]) -> bool:
    key = values.get("digest")
    if not key or key == "committed":
        return False
    entry = _store().get("smolmachine", str(key))
    if entry is None:
        return False
    REASONS["pack"] = f"cache hit {key}"
    RESULTS["pack"] = str(image.artifact_of(entry))
    return True


@_user_errors
def _pack(ctx: dict[str, Any]) -> dict[str, Any]:
    context = _context_arg(ctx)
    packed = image.agent_artifact(_base_config(), _store(), ctx=context)
    say(f"pack: {packed.reason}")
    print(packed.artifact)
    return {"digest": packed.digest, "artifact": str(packed.artifact),
            "context": context.hexdigest}


def task_pack() -> dict[str, Any]:
    """Ensure the agent's `.smolmachine`: repack only when the image changed."""
    return {
        "actions": [_pack],
        "getargs": {"ctx": ("_context", None)},
        "setup": ["_context"],  # else getargs adds a result_dep on all of _context's answer
        "file_dep": _config_files(),
        "uptodate": [context_unchanged(), _smolmachine_present],
        "verbosity": 2,
    }


# --- launch ---------------------------------------------------------------------------

_LAUNCH_PARAMS: list[dict[str, Any]] = [
    {"name": "backend", "long": "backend", "type": str, "default": None,
     "help": "docker, smolmachines, or auto (smolmachines where smolvm can boot) "
             "[config: backend, default docker]"},
    {"name": "agent", "long": "agent", "type": str, "default": None,
     "help": "agent command run in the bottle [default claude]"},
    {"name": "tty", "long": "tty", "type": bool, "default": None, "inverse": "headless",
     "help": "--tty: interactive session; --headless: no terminal [default: a terminal "
             "when stdin and stdout are one]"},
    {"name": "workspace", "long": "workspace", "type": str, "default": None,
     "help": "host directory mounted (docker) or copied (smolmachines) at /workspace "
             "[default: the current directory]"},
    {"name": "network", "long": "network", "type": str, "default": None,
     "help": "docker network: none, host or a named network [default none]"},
]


@_user_errors
def _launch(
    backend: str | None, agent: str | None, tty: bool | None, workspace: str | None,
    network: str | None, agent_args: list[str],
) -> None:
    from bottle.launch import launch

    cfg = config_mod.load({"backend": backend, "agent": agent, "tty": tty,
                           "workspace": workspace, "network": network,
                           "agent_args": agent_args or None})
    code = launch(cfg, _store())
    if code:
        raise SystemExit(code)  # the agent's exit code is the launch's


def task_launch() -> dict[str, Any]:
    """Build or reuse the agent image/artifact, run the agent in a bottle, remove the bottle.

    Arguments after the options go to the agent: `bottle launch -- --print hello`.
    """
    return {"actions": [_launch], "params": _LAUNCH_PARAMS, "pos_arg": "agent_args",
            "uptodate": [False], "verbosity": 2}


@_user_errors
def _prepull(
    compose_files: list[str], project_dir: str | None, profiles: list[str], images: list[str],
    jobs: int | None, quiet: bool, json_out: bool,
) -> None:
    import time

    from bottle import prepull as pp

    cfg = config_mod.load({"compose_files": compose_files or None, "project_dir": project_dir,
                           "profiles": profiles or None, "images": images or None,
                           "jobs": jobs})
    started = time.monotonic()
    wanted = pp.resolve(images=cfg.images, files=cfg.compose_files,
                        project_dir=cfg.project_dir, profiles=cfg.profiles,
                        cache_dir=cache_root() / "prepull")
    if not wanted:
        if json_out:
            print(pp.as_json([], 0.0))
        elif not quiet:
            say("prepull: no images resolved; nothing to pull (the deploy pulls as usual)")
        return
    try:
        outcomes = pp.prepull(wanted, jobs=cfg.jobs)
    except pp.PrepullFailed as err:
        pp.report(err.outcomes, time.monotonic() - started, quiet=quiet, json_out=json_out,
                  failed=True)
        raise
    pp.report(outcomes, time.monotonic() - started, quiet=quiet, json_out=json_out)


def task_prepull() -> dict[str, Any]:
    """Pull a compose deployment's missing images before it deploys (present ones: no network).

    Images come from compose's own rendered config (COMPOSE_FILE and variables from the
    project's .env), or from --image. A failed pull stops with one line and exit 1.
    """
    params: list[dict[str, Any]] = [
        {"name": "compose_files", "short": "f", "long": "file", "type": list, "default": [],
         "help": "compose file (repeatable) [default: compose finds them: COMPOSE_FILE in "
                 ".env, else compose.yaml]"},
        {"name": "project_dir", "long": "project-dir", "type": str, "default": None,
         "help": "the deployment's directory (where its .env is) [default: here]"},
        {"name": "profiles", "long": "profile", "type": list, "default": [],
         "help": "compose profile to enable (repeatable)"},
        {"name": "images", "long": "image", "type": list, "default": [],
         "help": "pull these images instead of asking compose (repeatable)"},
        {"name": "jobs", "short": "j", "long": "jobs", "type": int, "default": None,
         "help": "pulls at once [default 4]"},
        {"name": "quiet", "short": "q", "long": "quiet", "type": bool, "default": False,
         "help": "print nothing but errors"},
        {"name": "json_out", "long": "json", "type": bool, "default": False,
         "help": "print the summary as JSON"},
    ]
    return {"actions": [_prepull], "params": params, "uptodate": [False], "verbosity": 2}


@_user_errors
def _sweep() -> None:
    from bottle.backend import docker as docker_backend
    from bottle.backend import smolmachines as smol_backend

    removed = smol_backend.sweep()
    if docker.TOOL.available():
        removed += docker_backend.sweep()
    for name in removed:
        say(f"sweep: removed {name}")
    say(f"sweep: removed {len(removed)} bottles left by killed launches")


def task_sweep() -> dict[str, Any]:
    """Remove bottles (containers, microVMs) left behind by launches that were killed."""
    return {"actions": [_sweep], "uptodate": [False], "verbosity": 2}


# --- cache management ------------------------------------------------------------------


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@_user_errors
def _cache_list(json_out: bool) -> None:
    import time

    rows: list[dict[str, Any]] = [
        {"kind": e.kind, "key": e.key, "size": e.size, "last_used": e.last_used,
         "created": e.meta.get("created"), "source": e.meta.get("source_image"),
         "path": str(e.path)}
        for e in _store().entries()
    ]
    if json_out:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'KIND':<12} {'KEY':<18} {'SIZE':>10}  {'LAST USED':<19}  SOURCE")
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["last_used"]))
        print(f"{r['kind']:<12} {r['key']:<18} {_human(r['size']):>10}  {used:<19}  "
              f"{r['source'] or ''}")
    print(f"{len(rows)} entries, {_human(sum(r['size'] for r in rows))} in {_store().root}")


def task_cache_list() -> dict[str, Any]:
    """List cache entries (kind, key, size, last used, source image)."""
    return {
        "actions": [_cache_list],
        "params": [{"name": "json_out", "long": "json", "type": bool, "default": False,
                    "help": "print JSON"}],
        "uptodate": [False], "verbosity": 2,
    }


_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _parse_size(text: str) -> int:
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = t[-1] if t and t[-1] in _UNITS else ""
    try:
        return int(float(t[: len(t) - len(unit)]) * _UNITS[unit])
    except ValueError:
        raise BottleError(f"bad size {text!r} (e.g. 500M, 20G)") from None


def _parse_age(text: str) -> float:
    t = text.strip().lower()
    try:
        return float(t[:-1]) * _AGES[t[-1]] if t and t[-1] in _AGES else float(t) * 86400
    except ValueError:
        raise BottleError(f"bad age {text!r} (e.g. 12h, 30d)") from None


@_user_errors
def _cache_gc(max_size: str, max_age: str) -> None:
    removed = _store().gc(
        max_bytes=_parse_size(max_size) if max_size else None,
        max_age_seconds=_parse_age(max_age) if max_age else None,
    )
    for e in removed:
        say(f"cache_gc: removed {e.kind}/{e.key} ({_human(e.size)})")
    say(f"cache_gc: removed {len(removed)} entries, {_human(sum(e.size for e in removed))}")


def task_cache_gc() -> dict[str, Any]:
    """Remove cache entries over the age budget, then least recently used over the size budget."""
    return {
        "actions": [_cache_gc],
        "params": [
            {"name": "max_size", "long": "max-size", "type": str, "default": "20G",
             "help": "keep at most this much (e.g. 500M, 20G; empty: no limit)"},
            {"name": "max_age", "long": "max-age", "type": str, "default": "30d",
             "help": "drop entries unused this long (e.g. 12h, 30d; empty: no limit)"},
        ],
        "uptodate": [False], "verbosity": 2,
    }


@_user_errors
def _cache_verify() -> TaskFailed | None:
    store = _store()
    count = sum(1 for _ in store.entries())
    bad = store.verify()
    for e, problem in bad:
        say(f"cache_verify: {e.kind}/{e.key}: {problem} (evicted; it will be rebuilt)")
    say(f"cache_verify: {count - len(bad)} of {count} entries ok")
    return TaskFailed(f"{len(bad)} corrupt entries", report=False) if bad else None


def task_cache_verify() -> dict[str, Any]:
    """Re-hash every cache entry; evict (and report) any that does not match."""
    return {"actions": [_cache_verify], "uptodate": [False], "verbosity": 2}

