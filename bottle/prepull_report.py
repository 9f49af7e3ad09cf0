"""What `prepull` prints, and the replay of a run that found everything present.

`bottle prepull` run again with the same command line, directory, environment, config
files, compose files and compose program (see bottle.memo) resolves to the same images;
when the engine still has every one of them and each is pulled only when missing, there
is nothing to do but say so. `replay` does that with the engine's API alone, before
the modules that resolve and pull are loaded; anything else (no memo, an input changed,
an image missing, the engine not plain HTTP, an error) goes the full way, which speaks
for itself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from bottle import memo
from bottle.tools import _http

AREA = "prepull"
# The command line of this run as the user typed it (set by the CLI): the memo's key.
CALL: list[str] | None = None


class Outcome:
    """What became of one image: present | pulled | failed | cancelled."""

    __slots__ = ("error", "image", "seconds", "status")

    def __init__(self, image: str, status: str, seconds: float, error: str = "") -> None:
        self.image, self.status, self.seconds, self.error = image, status, seconds, error

    def as_dict(self) -> dict[str, object]:
        return {"image": self.image, "status": self.status, "seconds": self.seconds,
                "error": self.error}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outcome) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, as it was

    def __repr__(self) -> str:
        return (f"Outcome(image={self.image!r}, status={self.status!r}, "
                f"seconds={self.seconds!r}, error={self.error!r})")


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
    import json

    return json.dumps({"images": [o.as_dict() for o in outcomes],
                       "seconds": round(seconds, 3)})


NOTHING = "prepull: no images resolved; nothing to pull (the deploy pulls as usual)"


def report(outcomes: Sequence[Outcome], seconds: float, *, quiet: bool, json_out: bool,
           failed: bool = False) -> None:
    """The run's summary: JSON on stdout, or the table (stdout; stderr beside a failure),
    or nothing when quiet. No images at all: one line saying so (an empty JSON list)."""
    if not outcomes and not failed:
        if json_out:
            print(as_json([], 0.0))
        elif not quiet:
            print(NOTHING, file=sys.stderr, flush=True)
        return
    if json_out:
        print(as_json(outcomes, seconds))
    elif not quiet:
        print(summary(outcomes, seconds), file=sys.stderr if failed else sys.stdout)


def remember(images: Sequence[str], *, quiet: bool, json_out: bool, said: Sequence[str],
             read: Sequence[str], stat: Sequence[str]) -> None:
    """Keep this run's answer for `replay`: the images it resolved (each pulled only when
    missing, all there now), how it reports, the lines it said first, and its inputs."""
    if CALL is None:
        return
    memo.record(AREA, CALL, _cwd(), read=list(read), stat=list(stat),
                answer={"images": list(images), "quiet": quiet, "json": json_out,
                        "said": list(said)})


def forget() -> None:
    if CALL is not None:
        memo.forget(AREA, CALL)


def _cwd() -> str:
    import os

    return os.getcwd()


def replay(args: list[str]) -> int | None:
    """Exit code 0 when this run is the last one again and the engine has every image;
    None when the full way must run."""
    answer = memo.recall(AREA, args)
    if not isinstance(answer, dict):
        return None
    started = time.monotonic()
    endpoint = _http.from_env()
    if endpoint is None:
        return None
    outcomes = []
    try:
        images, quiet, json_out, said = (list(answer["images"]), bool(answer["quiet"]),
                                         bool(answer["json"]), list(answer["said"]))
        for image in images:
            asked = time.monotonic()
            got = _http.request(endpoint, "GET", f"/images/{_http.quote(image)}/json",
                                timeout=5.0)
            if got.status != 200:
                return None  # missing (or the engine has a word to say): the full way
            outcomes.append(Outcome(image, "present", time.monotonic() - asked))
    except (OSError, KeyError, TypeError, ValueError):
        return None
    for line in said:
        print(line, file=sys.stderr, flush=True)
    report(outcomes, time.monotonic() - started, quiet=quiet, json_out=json_out)
    return 0
