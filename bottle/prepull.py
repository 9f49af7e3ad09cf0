"""`prepull`: warm the local image store for a compose deployment before it deploys.

Images are resolved by compose itself (COMPOSE_FILE and variables from the project's
`.env`, interpolated as the deploy will). A present image is skipped without touching
the network; a missing one is pulled, several at a time. A pull failure stops the job
before any deploy with one line naming the image and the registry's reason.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import xxhash

from bottle.errors import BottleError
from bottle.tools import compose, docker
from cache.atomic import write_atomic


@dataclass(frozen=True)
class Wanted:
    image: str
    services: tuple[str, ...]
    buildable: bool  # compose builds it when the pull fails, so a failure only warns


@dataclass
class Outcome:
    image: str
    status: str  # present | pulled | failed | cancelled
    seconds: float
    error: str = ""


def _dotenv_value(project_dir: Path, name: str) -> str | None:
    """A variable as compose sees it: the environment first, then the project's `.env`."""
    if name in os.environ:
        return os.environ[name]
    env = project_dir / ".env"
    if not env.is_file():
        return None
    for line in env.read_text(errors="replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == name:
            return value.strip().strip("'\"")
    return None


def _project_name(model: Mapping[str, Any], project_dir: Path) -> str:
    name = model.get("name") or _dotenv_value(project_dir, "COMPOSE_PROJECT_NAME")
    if not name:
        name = re.sub(r"[^a-z0-9_-]", "", project_dir.resolve().name.lower())
    return str(name)


def images_from_model(
    model: Mapping[str, Any], *, project_dir: Path, profiles: Sequence[str] = (),
) -> list[Wanted]:
    """Images to pull: services enabled by the active profiles that name an image that is
    not just compose's generated name for a build (`<project>-<svc>`, v1 `<project>_<svc>`)."""
    active = set(profiles)
    env_profiles = _dotenv_value(project_dir, "COMPOSE_PROFILES")
    if env_profiles:
        active |= {p.strip() for p in env_profiles.split(",") if p.strip()}
    project = _project_name(model, project_dir)
    wanted: dict[str, Wanted] = {}
    for svc, spec in (model.get("services") or {}).items():
        spec = spec or {}
        svc_profiles = spec.get("profiles") or []
        if svc_profiles and not active & set(svc_profiles):
            continue
        image = spec.get("image")
        builds = "build" in spec
        if not image or (builds and image in (f"{project}-{svc}", f"{project}_{svc}")):
            continue
        prev = wanted.get(image)
        wanted[image] = Wanted(
            image, (*(prev.services if prev else ()), svc),
            builds and (prev.buildable if prev else True),
        )
    return list(wanted.values())


_DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml",
                  "compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yml", "docker-compose.override.yaml")
_VAR = re.compile(rb"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def resolution_key(files: Sequence[Path], project_dir: Path, profiles: Sequence[str],
                   *, v2: bool) -> str | None:
    """A digest of everything that can change what compose renders, or None when that
    can't be known (no compose file here, `extends`/`include` of other files).

    Covers: which compose, the project dir, profiles, the `.env`, every compose file
    compose will read, and the environment's COMPOSE_* variables plus every variable the
    files reference (values are hashed, never stored)."""
    sep = _dotenv_value(project_dir, "COMPOSE_PATH_SEPARATOR") or os.pathsep
    named = list(files) or [Path(f) for f in
                            (_dotenv_value(project_dir, "COMPOSE_FILE") or "").split(sep) if f]
    paths = ([p if p.is_absolute() else project_dir / p for p in named] if named else
             [project_dir / f for f in _DEFAULT_FILES if (project_dir / f).is_file()])
    if not paths:
        return None
    h = xxhash.xxh3_128()
    h.update(f"{v2}\0{project_dir.resolve()}\0{sorted(profiles)}\0".encode())
    names: set[bytes] = set()
    for p in [project_dir / ".env", *paths]:
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            if p.name == ".env":
                continue
            return None
        if p.name != ".env" and (b"extends" in data or b"include" in data):
            return None
        h.update(str(p).encode() + b"\0" + data + b"\0")
        names |= set(_VAR.findall(data))
    env_names = {n for n in os.environ if n.startswith("COMPOSE_")} | {n.decode() for n in names}
    for n in sorted(env_names):
        h.update(f"{n}={os.environ.get(n)!r}\0".encode())
    return h.hexdigest()


def resolve(
    *,
    images: Sequence[str] = (),
    files: Sequence[Path] = (),
    project_dir: Path | None = None,
    profiles: Sequence[str] = (),
    cache_dir: Path | None = None,
) -> list[Wanted]:
    """An explicit image list as is (deduplicated), else what compose renders. With
    `cache_dir`, compose's answer is kept under a key of all its inputs and reused."""
    if images:
        return [Wanted(i, (), False) for i in dict.fromkeys(images)]
    pdir = project_dir or Path.cwd()
    key = resolution_key(files, pdir, profiles, v2=compose.has_v2()) if cache_dir else None
    record = cache_dir / f"{key}.json" if cache_dir and key else None
    if record is not None:
        try:
            return [Wanted(w["image"], tuple(w["services"]), w["buildable"])
                    for w in json.loads(record.read_bytes())]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    model = compose.render(files=files, project_dir=project_dir, profiles=profiles, cwd=pdir)
    wanted = images_from_model(model, project_dir=pdir, profiles=profiles)
    if record is not None:
        write_atomic(record, json.dumps([asdict(w) for w in wanted]).encode())
    return wanted


def _reason(err: docker.DockerError) -> str:
    reason = err.reason.removeprefix("Error response from daemon: ")
    return reason or f"docker pull exited {err.returncode}"


def _fetch(want: Wanted, stop: threading.Event) -> Outcome:
    started = time.monotonic()
    if stop.is_set():
        return Outcome(want.image, "cancelled", 0.0)
    if docker.engine_has_image(want.image):  # the local store only: no registry traffic
        return Outcome(want.image, "present", time.monotonic() - started)
    try:
        docker.pull(want.image)
    except docker.DockerError as err:
        if not want.buildable:
            stop.set()  # before this worker can take the next image
        return Outcome(want.image, "failed", time.monotonic() - started, _reason(err))
    return Outcome(want.image, "pulled", time.monotonic() - started)


def prepull(wanted: Sequence[Wanted], *, jobs: int = 4) -> list[Outcome]:
    """Check and pull in parallel. After the first failure of a non-buildable image, no
    new pull starts; pulls under way finish. Raises `PrepullFailed` carrying all outcomes."""
    stop = threading.Event()
    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="prepull") as pool:
        futures = [pool.submit(_fetch, w, stop) for w in wanted]
        try:
            for f in as_completed(futures):
                o = f.result()
                outcomes[o.image] = o
        except BaseException:
            stop.set()  # Ctrl-C or engine gone: start nothing new; running pulls finish
            for f in futures:
                f.cancel()
            raise
    ordered = [outcomes[w.image] for w in wanted]
    failed = [o for o, w in zip(ordered, wanted, strict=True)
              if o.status == "failed" and not w.buildable]
    if failed:
        raise PrepullFailed(failed[0], ordered)
    return ordered


class PrepullFailed(BottleError):
    def __init__(self, first: Outcome, outcomes: list[Outcome]) -> None:
        super().__init__(f"prepull: cannot pull {first.image}: {first.error} "
                         "(stopped before deploy)")
        self.outcomes = outcomes


def summary(outcomes: Sequence[Outcome], seconds: float) -> str:
    width = max([len(o.image) for o in outcomes] + [5])
    lines = [f"{'IMAGE':<{width}}  {'STATUS':<9}  TIME"]
    for o in outcomes:
        extra = f"  {o.error}" if o.error else ""
        lines.append(f"{o.image:<{width}}  {o.status:<9}  {o.seconds:5.2f}s{extra}")
    counts = {s: sum(o.status == s for o in outcomes)
              for s in ("present", "pulled", "failed", "cancelled")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" in {seconds:.2f}s")
    return "\n".join(lines)


def as_json(outcomes: Sequence[Outcome], seconds: float) -> str:
    return json.dumps({"images": [asdict(o) for o in outcomes], "seconds": round(seconds, 3)})


def report(outcomes: Sequence[Outcome], seconds: float, *, quiet: bool, json_out: bool,
           failed: bool = False) -> None:
    """The run's summary: JSON on stdout, or the table (stdout; stderr beside a failure),
    or nothing when quiet."""
    if json_out:
        print(as_json(outcomes, seconds))
    elif not quiet:
        print(summary(outcomes, seconds), file=sys.stderr if failed else sys.stdout)
