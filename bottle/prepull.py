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
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bottle.errors import BottleError
from bottle.tools import compose, docker


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


def resolve(
    *,
    images: Sequence[str] = (),
    files: Sequence[Path] = (),
    project_dir: Path | None = None,
    profiles: Sequence[str] = (),
) -> list[Wanted]:
    """An explicit image list as is (deduplicated), else what compose renders."""
    if images:
        return [Wanted(i, (), False) for i in dict.fromkeys(images)]
    pdir = project_dir or Path.cwd()
    model = compose.render(files=files, project_dir=project_dir, profiles=profiles, cwd=pdir)
    return images_from_model(model, project_dir=pdir, profiles=profiles)


def _reason(err: docker.DockerError) -> str:
    reason = err.reason.removeprefix("Error response from daemon: ")
    return reason or f"docker pull exited {err.returncode}"


def _fetch(want: Wanted, stop: threading.Event) -> Outcome:
    started = time.monotonic()
    if stop.is_set():
        return Outcome(want.image, "cancelled", 0.0)
    if docker.inspect_image(want.image) is not None:
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
        futures: dict[Future[Outcome], Wanted] = {pool.submit(_fetch, w, stop): w for w in wanted}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION, timeout=0.2)
                for f in done:
                    o = f.result()
                    outcomes[o.image] = o
        except BaseException:
            stop.set()  # Ctrl-C: start nothing new; running pulls end with their docker
            for f in pending:
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
