"""The tasks' actions: each turns its options into a call of the module that does the
work, and says in one line what happened. A user-caused failure becomes one line on
stderr (the full output of a failed tool goes to a log under the cache) and a failed
task; the agent's exit code is the launch's.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable

from bottle import config as config_mod
from bottle.errors import BottleError
from bottle.progress import say
from bottle.units import human, parse_age, parse_size
from cache import cache_root
from cache.errors import UserError
from cache.store import Store, check_root

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from doit.exceptions import TaskFailed

    from bottle import image  # imported where used: prepull and the rest need none of it
    from bottle.tools._proc import ToolError
    from cache.digest import ContextDigest

# Everything after `--` on the command line, verbatim (doit would eat NAME=VALUE items).
AGENT_ARGS: list[str] | None = None
# True while `info` asks whether tasks would run: look, change nothing.
DRY = False


def set_agent_args(argv: list[str]) -> list[str]:
    """Split `argv` at the first `--`: keep the agent's part here, return the rest."""
    global AGENT_ARGS
    if "--" in argv:
        at = argv.index("--")
        AGENT_ARGS = argv[at + 1:]
        return argv[:at]
    AGENT_ARGS = None
    return argv


@functools.cache
def store() -> Store:
    root = cache_root()
    check_root(root)
    return Store(root, on_wait=lambda what: say(f"waiting for another bottle process "
                                                  f"working on {what}"),
                 on_problem=say)


def _log(err: ToolError) -> str:
    """Write a failed tool's full (redacted) output under the cache; its path, or ""."""
    try:
        logs = store().area("logs")
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{err.argv[0]}.log"
        path.write_text(err.detail(), errors="replace")
        return str(path)
    except (OSError, UserError):
        return ""


def report_error(err: UserError) -> str:
    """Print a user-caused error as its one line (naming the log of a failed tool)."""
    line = str(err)
    from bottle.tools._proc import ToolError

    if isinstance(err, ToolError) and (log := _log(err)):
        line += f" (full output: {log})"
    print(f"bottle: error: {line}", file=sys.stderr, flush=True)
    return line


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A user-caused error becomes one line on stderr and a failed task, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            from doit.exceptions import TaskFailed

            return TaskFailed(report_error(err), report=False)

    return wrapper


def load_config(options: dict[str, Any] | None = None) -> config_mod.Config:
    """The config for this run; says which file it came from when that is not here."""
    cfg = config_mod.load(options)
    if line := _config_line(cfg):
        _say_once(line)
    return cfg


def _config_line(cfg: config_mod.Config) -> str | None:
    """Which file the config came from, when that is not here."""
    if cfg.config_file and cfg.project_root != config_mod.cwd():
        return f"config: {cfg.config_file}"
    return None


@functools.cache
def _say_once(line: str) -> None:
    say(line)


@functools.cache
def base_config() -> config_mod.Config:
    return load_config()


@functools.cache
def _context() -> tuple[image.BuildInputs, ContextDigest]:
    """The build inputs and their digest: computed once per run, shared by the uptodate
    check and the action (a second walk would find nothing changed and lose the why)."""
    from bottle import image

    inputs = image.build_inputs(base_config(), store(), dry=DRY)
    return inputs, image.digest_context(inputs, store(), dry=DRY)


# --- build and pack -------------------------------------------------------------------


def decide_build() -> tuple[bool, str, str]:
    from bottle import image

    inputs, ctx = _context()
    found = image.find_image(inputs, store(), ctx)
    if found.hit and found.retag:
        return False, f"{found.line}; {inputs.tag} to be pointed at it", ""
    return found.hit, found.line, ""


@user_errors
def build() -> None:
    from bottle import image

    inputs, ctx = _context()
    say(f"build: {image.ensure_image(inputs, store(), ctx).line}")


def decide_pack() -> tuple[bool, str, str]:
    from bottle import image

    cfg = base_config()
    if cfg.artifact is not None and cfg.artifact.is_file():
        return True, f"using committed {cfg.artifact}", str(cfg.artifact)
    _inputs, ctx = _context()
    found = image.find_smolmachine(store(), ctx)
    if not found.hit or found.image_id is None:
        return False, found.line, ""
    entry = store().get("smolmachine", image.short_id(found.image_id))
    return entry is not None, found.line, str(image.smolmachine_file(entry)) if entry else ""


@user_errors
def pack() -> None:
    from bottle import image

    inputs, ctx = _context()
    packed = image.committed_or_packed(base_config(), inputs, store(), ctx)
    say(f"pack: {packed.line}")
    print(packed.artifact)


# --- launch, sweep ----------------------------------------------------------------------


def run_launch(agent_args: list[str], **options: Any) -> int:
    """The launch itself: the agent's exit code."""
    from bottle.launch import launch as run

    args = AGENT_ARGS if AGENT_ARGS is not None else agent_args
    return run(load_config({**options, "agent_args": args or None}), store())


@user_errors
def launch(agent_args: list[str], **options: Any) -> None:
    code = run_launch(agent_args, **options)
    if code:
        raise SystemExit(code)  # the agent's exit code is the launch's


@user_errors
def sweep() -> None:
    from bottle.launch import sweep as run

    removed, unchecked = run(store())
    for name in removed:
        say(f"sweep: removed {name}")
    n = len(removed)
    say(f"sweep: removed {n} {'thing' if n == 1 else 'things'} left by killed launches")
    if unchecked:
        raise BottleError(f"sweep: {'; '.join(unchecked)}")


@user_errors
def forget_state() -> None:
    import shutil

    from bottle.launch import state_dir

    target = state_dir(base_config(), store())
    if not target.exists():
        say(f"forget_state: no state kept for {base_config().agent} here")
        return
    shutil.rmtree(target)
    say(f"forget_state: removed the {base_config().agent} state kept in {target}")


# --- the offline base, egress records ----------------------------------------------------


def decide_base() -> tuple[bool, str, str]:
    """Whether the offline base for the current inputs is in the engine (nothing made)."""
    from bottle.base import ensure_base

    found = ensure_base(store=store(), dry=True)
    if found.image_id:
        return True, f"cache hit {found.ref}", found.ref
    return False, f"{found.ref} not made yet (mmdebstrap, a few minutes once)", ""


@user_errors
def base() -> None:
    from bottle.base import ensure_base

    cfg = base_config()
    made = ensure_base(store=store(), ca_certs=cfg.ca_certs, progress=True)
    how = ("built (mmdebstrap) and imported" if made.built else
           "imported from the cached rootfs" if made.imported else "cache hit")
    say(f"base: {how} {made.ref}")
    print(made.ref)


@user_errors
def egress(json_out: bool, write: str) -> None:
    """What the last launch here reached (and was refused), from its proxy's record."""
    from bottle import egress as eg

    cfg = base_config()
    here = str((cfg.workspace or cfg.project_root or config_mod.cwd()).resolve())
    records = []
    area = store().area("egress")
    for p in area.glob("*.json") if area.is_dir() else []:
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("workspace") == here:
            records.append(data)
    if not records:
        say(f"egress: no launch with network = egress recorded for {here}")
        if json_out:
            print(json.dumps({"workspace": here, "recorded": False, "allow_list": []},
                             indent=1))
        return
    last = max(records, key=lambda d: float(d.get("at", 0)))
    requests = eg.parse_log(str(last.get("log", "")))
    allow = eg.observed_allow_list(requests)
    if json_out:
        print(json.dumps({**{k: v for k, v in last.items() if k != "log"},
                          "recorded": True, "allow_list": allow}, indent=1))
    else:
        say(eg.summary_line(eg.summarize(requests), observe=last.get("mode") == "observe"))
        print("egress = [" + ", ".join(json.dumps(h) for h in allow) + "]")
    if write:
        from pathlib import Path

        text = ("# what the last launch reached; review, then copy into bottle.toml\n"
                "egress = [" + ", ".join(json.dumps(h) for h in allow) + "]\n")
        try:
            Path(write).write_text(text)
        except OSError as err:
            raise UserError(f"cannot write the allow-list to {write}: "
                            f"{err.strerror or err}") from None
        say(f"egress: wrote the allow-list to {write} for review")


# --- prepull ----------------------------------------------------------------------------


@user_errors
def prepull(quiet: bool, json_out: bool, **options: Any) -> None:
    from bottle import prepull as pp
    from bottle import pulling

    pulling.forget()  # only a run that resolves leaves a memo
    cfg = load_config(options)
    started = time.monotonic()
    seen = pp.Inputs()
    pool = pulling.Pool(cfg.jobs)  # may start on the images while compose renders
    try:
        wanted = pp.resolve(images=cfg.images, files=cfg.compose_files,
                            project_dir=cfg.project_dir, profiles=cfg.profiles,
                            cache_dir=store().area("prepull"), seen=seen, pool=pool)
    except pulling.PrepullFailed as err:  # an image the compose file makes certain
        pulling.report(err.outcomes, time.monotonic() - started, quiet=quiet,
                       json_out=json_out, failed=True)
        raise
    except BaseException:
        pool.abandon()  # what it started is cut short: the error is said now
        raise
    if seen.known and all(w.policy == pp.MISSING and not pp.cli_pulls(w.image)
                          for w in wanted):
        here = config_mod.cwd()
        pulling.remember(
            [(w.image, *pp.pull_target(w.image), w.buildable) for w in wanted],
            jobs=cfg.jobs, quiet=quiet, json_out=json_out,
            said=[line] if (line := _config_line(cfg)) else [],
            read=[*(str(p) for pair in config_mod.candidates(here) for p in pair),
                  *seen.read, str(pp.docker_config())],
            stat=seen.stat, env=sorted(seen.env))
    try:
        outcomes = pp.prepull(wanted, jobs=cfg.jobs, pool=pool)
    except pulling.PrepullFailed as err:
        pulling.report(err.outcomes, time.monotonic() - started, quiet=quiet,
                       json_out=json_out, failed=True)
        raise
    pulling.report(outcomes, time.monotonic() - started, quiet=quiet, json_out=json_out)


# --- the shared cache -------------------------------------------------------------------


@user_errors
def cache_push(json_out: bool) -> None:
    from bottle import image

    inputs, ctx = _context()
    result = image.push_to_remote(inputs, store(), ctx)
    if json_out:
        print(json.dumps(result))


@user_errors
def cache_pull(json_out: bool, smolmachine: bool) -> None:
    from bottle import image

    inputs, ctx = _context()
    result = image.pull_from_remote(inputs, store(), ctx, smolmachine=smolmachine)
    say(result.pop("line"))
    if json_out:
        print(json.dumps(result))


# --- cache management -----------------------------------------------------------------


@user_errors
def cache_list(json_out: bool) -> None:
    from bottle.base import IMAGE_REF_KIND

    s = store()
    rows: list[dict[str, Any]] = [
        {"kind": e.kind, "key": e.key, "size": e.size, "last_used": e.last_used,
         "created": e.meta.get("created"), "source": e.meta.get("source_image"),
         "path": str(e.path), "problem": problem}
        for e, problem in s.entries()
    ]
    # Images live in the engine; the cache holds their records (context digest -> image).
    for kind, ref_kind, field in (("image", "context", "tag"),
                                  ("base-image", IMAGE_REF_KIND, "ref")):
        for key, value in s.refs(ref_kind):
            rows.append({"kind": kind, "key": key, "size": None,
                         "last_used": s.ref_time(ref_kind, key), "created": None,
                         "source": (value or {}).get(field),
                         "image_id": (value or {}).get("image_id"), "path": None,
                         "problem": None if value else "damaged record"})
    usage = s.usage()
    if json_out:
        print(json.dumps({"entries": rows, "areas": usage, "root": str(s.root)}, indent=1))
        return
    width = max([len(r["key"]) for r in rows] + [3])
    print(f"{'KIND':<12} {'KEY':<{width}} {'SIZE':>10}  {'LAST USED':<19}  SOURCE")
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["last_used"]))
        note = f"  (damaged: {r['problem']})" if r["problem"] else ""
        size = "in engine" if r["size"] is None else human(r["size"])
        image = f" ({r['image_id'][7:19]})" if r.get("image_id") else ""
        print(f"{r['kind']:<12} {r['key']:<{width}} {size:>10}  {used:<19}  "
              f"{r['source'] or ''}{image}{note}")
    areas = ", ".join(f"{a} {human(n)}" for a, n in usage.items() if n)
    files = sum(1 for r in rows if r["size"] is not None)
    images = len(rows) - files
    print(f"{files} file{'s' * (files != 1)}, {images} image record{'s' * (images != 1)}; "
          f"{human(sum(usage.values()))} in {s.root}" + (f" ({areas})" if areas else ""))


@user_errors
def cache_gc(max_size: str, max_age: str) -> None:
    from bottle import image

    budget = parse_size(max_size) if max_size else None
    age = parse_age(max_age) if max_age else None
    if store().root.exists() and not os.access(store().root, os.W_OK):
        # A cache it cannot write cannot have recorded what it uses: an image would look
        # unreferenced when its record was simply never written.
        raise BottleError(f"cache_gc: the cache at {store().root} is read-only: nothing "
                          "removed")
    from pathlib import Path

    from bottle.engine import dep_file
    from bottle.tools._proc import ToolError

    own = Path(dep_file(store().root, config_mod.cwd()))  # this run's doit state stays
    removed = store().gc(max_bytes=budget, max_age_seconds=age, keep=[own])
    for r in removed:
        if r.area == "objects":
            say(f"cache_gc: removed {r.name} ({human(r.size)})")
    try:
        images = image.remove_unreferenced(store())
    except ToolError as err:
        images = []
        say(f"cache_gc: images not checked ({err.reason})")
    for line in images:
        say(f"cache_gc: removed image {line}")
    say(f"cache_gc: removed {len(removed)} cache items ({human(sum(r.size for r in removed))})"
        f" and {len(images)} image{'' if len(images) == 1 else 's'}")


@user_errors
def cache_verify() -> TaskFailed | None:
    from doit.exceptions import TaskFailed

    checked, bad = store().verify()
    for name, problem in bad:
        say(f"cache_verify: {name}: {problem} (removed; it will be rebuilt)")
    say(f"cache_verify: {checked - len(bad)} of {checked} ok")
    return TaskFailed(f"{len(bad)} damaged", report=False) if bad else None
