"""The half of `prepull` that needs neither compose nor the config: pull what is missing of
a resolved list, several at a time, and report; and the replay of a resolution.

`bottle prepull` run again with the same command line, directory, environment, config
files, compose files, compose program and docker config (see bottle.memo) resolves to
the same images, so the resolution is taken from the memo the last run wrote, before the
modules that resolve (compose, the config, the reference grammar) are loaded; the
presence checks and the pulls then run live over the engine's API as always. Anything
the memo cannot answer (no memo, an input changed, a pull policy other than `missing`,
credentials only the docker CLI reads, an engine that is not plain HTTP) goes the full
way, which speaks for itself.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial

from bottle import memo
from bottle.errors import BottleError
from bottle.tools import _http
from cache import signals_held

AREA = "prepull"
BUILD = "to build"  # the status of a buildable image whose pull failed
FAILED = "bottle: error: {}"
# The command line of this run as the user typed it (set by the CLI): the memo's key.
CALL: list[str] | None = None


class Outcome:
    """What became of one image: present | pulled | to build (its pull failed, and compose
    builds it: `error` says why) | failed | cancelled."""

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
              for s in ("present", "pulled", BUILD, "failed", "cancelled")}
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


class PrepullFailed(BottleError):
    def __init__(self, first: Outcome, outcomes: list[Outcome]) -> None:
        super().__init__(f"prepull: cannot pull {first.image}: {first.error} "
                         "(stopped before deploy)")
        self.outcomes = outcomes


class _Underway:
    """What the pulls under way hold open (the engine API's sockets, `docker pull`
    processes), so that they can be abandoned: a closed connection makes the engine
    stop that pull, as a cancelled `docker compose pull` does."""

    lock = threading.Lock()
    held: set[object] = set()
    abandoned = False

    @classmethod
    def hold(cls, thing: object) -> None:
        with cls.lock:
            cls.held.add(thing)
            if not cls.abandoned:
                return
        _drop(thing)  # abandoned already: this one ends now too

    @classmethod
    def release(cls, thing: object) -> None:
        with cls.lock:
            cls.held.discard(thing)

    @classmethod
    def abandon(cls) -> None:
        with cls.lock:
            cls.abandoned = True
            held = list(cls.held)
        for thing in held:
            _drop(thing)


def _drop(thing: object) -> None:
    import _socket  # (as bottle.tools._http makes them; `socket.socket` is a subclass)
    import contextlib  # (here: the abandon path only)
    import subprocess

    if isinstance(thing, _socket.socket):
        with contextlib.suppress(OSError):  # closed meanwhile
            thing.shutdown(_socket.SHUT_RDWR)
    elif isinstance(thing, subprocess.Popen):
        from bottle.tools import _proc

        _proc.kill(thing)


class underway:  # lower case: used as a function, `with underway() as hold:`
    """Around one pull: `hold(thing)` marks its socket or `docker pull` process as under
    way (see `_Underway`), until the block ends."""

    def __init__(self) -> None:
        self.things: list[object] = []

    def __enter__(self) -> Callable[[object], None]:
        return self.hold

    def hold(self, thing: object) -> None:
        self.things.append(thing)
        _Underway.hold(thing)

    def __exit__(self, *_: object) -> None:
        for thing in self.things:
            _Underway.release(thing)


class PullError(Exception):
    """A pull failed; `str()` is the reason as `docker pull` gives it."""


class Item:
    """One image to have: how to tell it is there (True: nothing to do) and how to pull
    it (raising `PullError`); `buildable` when compose builds it after a failed pull."""

    __slots__ = ("buildable", "image", "present", "pull")

    def __init__(self, image: str, buildable: bool, present: Callable[[], bool],
                 pull: Callable[[], None]) -> None:
        self.image, self.buildable, self.present, self.pull = image, buildable, present, pull


class _Fetch:
    """One image's check and pull in a `Pool`: how it went, once `done` is set."""

    __slots__ = ("done", "error", "item", "seconds", "status", "wanted")

    def __init__(self, item: Item, wanted: bool) -> None:
        self.item, self.wanted, self.done = item, wanted, threading.Event()
        self.status, self.seconds, self.error = "", 0.0, ""

    def outcome(self, item: Item) -> Outcome:
        """As `item` reads it: a failed pull of an image compose builds is `to build`."""
        status = BUILD if self.status == "failed" and item.buildable else self.status
        return Outcome(item.image, status, self.seconds, self.error)


class Pool:
    """Checks and pulls of the images added, `jobs` at a time, each in the order added.

    An image added as not (yet) `wanted` is one compose is expected to want (named
    outright in the compose file, see bottle.prepull.literal_images): it is checked and
    pulled while compose renders, and its failure stops nothing until `run` is given it.
    After the failure of a wanted image that compose does not build, no new pull starts,
    the pulls under way are abandoned (the engine stops them, as compose's do), and the
    hook `when_failed` set is called, once."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []  # the engine gone: nothing new starts
        self._fetches: dict[str, _Fetch] = {}
        self._todo: deque[_Fetch] = deque()
        self._lock = threading.Lock()
        self._workers = 0
        self._threads: list[threading.Thread] = []
        self._hook: Callable[[], object] | None = None
        self._failed = False  # a wanted image that compose does not build failed
        self._abandoned = False  # the pulls under way were cut short
        _Underway.abandoned = False  # (one pool at a time: a new run pulls again)

    def add(self, item: Item, *, wanted: bool = True) -> _Fetch:
        hook, decides = None, False
        with self._lock:
            fetch = self._fetches.get(item.image)
            if fetch is None:
                fetch = self._fetches[item.image] = _Fetch(item, wanted)
                self._todo.append(fetch)
                if self._workers < self.jobs:
                    self._workers += 1
                    t = threading.Thread(target=self._work, name=f"prepull-{len(self._threads)}",
                                         daemon=True)
                    self._threads.append(t)
                    with signals_held():  # they are the main thread's
                        t.start()
            elif wanted and not fetch.wanted:
                fetch.wanted, fetch.item = True, item  # compose's word on it, not the guess
                decides = (fetch.done.is_set() and fetch.status == "failed"
                           and not item.buildable)
                if decides:
                    hook = self._decided()
        if decides:  # (with or without a hook to tell)
            self.abandon()
        if hook is not None:
            hook()
        return fetch

    def added(self) -> set[str]:
        with self._lock:
            return set(self._fetches)

    def drop_unwanted(self) -> None:
        """Compose has answered: what it does not want is not started."""
        with self._lock:
            for fetch in [f for f in self._todo if not f.wanted]:
                self._todo.remove(fetch)
                fetch.status = "cancelled"
                fetch.done.set()

    def abandon(self) -> None:
        """Start nothing new, and cut the pulls under way short (they end `cancelled`)."""
        self._abandoned = True
        self.cancel()
        _Underway.abandon()

    def cancel(self) -> None:
        """Start nothing new (pulls under way finish)."""
        self.stop.set()
        with self._lock:
            while self._todo:
                fetch = self._todo.popleft()
                fetch.status = "cancelled"
                fetch.done.set()

    def join(self) -> None:
        for t in list(self._threads):
            t.join()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._todo:
                    self._workers -= 1
                    return
                fetch = self._todo.popleft()
            try:
                self._fetch(fetch)
            except BaseException as err:  # the engine gone: start nothing new
                if not self._abandoned:  # (else: the connection we cut)
                    with self._lock:
                        self.errors.append(err)
                self.stop.set()
                fetch.status = "cancelled"
            finally:
                fetch.done.set()

    def _fetch(self, fetch: _Fetch) -> None:
        started = time.monotonic()
        if self.stop.is_set():
            fetch.status = "cancelled"
            return
        item = fetch.item
        if item.present():
            fetch.status = "present"
        else:
            try:
                item.pull()
                fetch.status = "pulled"
            except PullError as err:
                if self._abandoned:  # cut short: another image decided the run
                    fetch.status = "cancelled"
                    return
                fetch.status, fetch.error = "failed", str(err)
                with self._lock:  # before this worker can take the next image
                    decides = fetch.wanted and not item.buildable
                    hook = self._decided() if decides else None
                if decides:
                    self.abandon()
                if hook is not None:
                    hook()
        fetch.seconds = time.monotonic() - started

    def _decided(self) -> Callable[[], object] | None:
        """(Lock held.) A wanted image compose does not build failed: start nothing new;
        the hook to call, the first time."""
        self.stop.set()
        hook = None if self._failed else self._hook
        self._failed = True
        return hook

    def when_failed(self, hook: Callable[[], object] | None) -> None:
        """Call `hook` at the first failure of an image added as wanted (from the worker
        it happened in), or now if that has happened; None: call nothing."""
        with self._lock:
            self._hook = hook
            now = self._failed
        if now and hook is not None:
            hook()

    def failure(self) -> PrepullFailed | None:
        """Whether an image added as wanted failed (so the run has): then, once the pulls
        under way have finished, that failure with the outcome of every image added as
        wanted (one pulled on a guess is not known to be part of the run)."""
        with self._lock:
            if not self._failed:
                return None
        self.cancel()
        self.join()
        with self._lock:
            fetches = [f for f in self._fetches.values() if f.wanted]
        ordered = [f.outcome(f.item) for f in fetches]
        failed = next(o for o in ordered if o.status == "failed")
        return PrepullFailed(failed, ordered)


def run(items: Sequence[Item], *, jobs: int = 4, pool: Pool | None = None) -> list[Outcome]:
    """Check and pull in parallel (in `pool`, which may have started some of them). After
    the first failure of a non-buildable image, no new pull starts and the pulls under way
    are cut short (as after a Ctrl-C). Raises `PrepullFailed` carrying all outcomes."""
    pool = pool or Pool(jobs)
    fetches = [pool.add(item) for item in items]
    pool.drop_unwanted()
    try:
        for fetch in fetches:
            fetch.done.wait()
        pool.join()
    except BaseException:  # Ctrl-C: start nothing new; the pulls under way are cut short
        pool.abandon()
        pool.join()
        raise
    if pool.errors:
        raise pool.errors[0]
    ordered = [fetch.outcome(item) for fetch, item in zip(fetches, items, strict=True)]
    failed = [o for o in ordered if o.status == "failed"]
    if failed:
        raise PrepullFailed(failed[0], ordered)
    return ordered


# --- over the engine's API alone ------------------------------------------------------------


def api_present(endpoint: _http.Endpoint, image: str) -> bool:
    """Whether the engine has `image`; OSError when it cannot say."""
    got = _http.request(endpoint, "GET", f"/images/{_http.quote(image)}/json", timeout=5.0)
    if got.status not in (200, 404):
        raise _http.BadAnswer(f"engine answered {got.status}")
    return got.status == 200


def api_pull(endpoint: _http.Endpoint, name: str, tag: str, *, timeout: float = 600.0) -> None:
    """`docker pull name:tag` (or `name@digest`) over the engine's API, without registry
    credentials: PullError with the daemon's message, as `docker pull` prints it."""
    import json

    # A tag or digest always: without one the engine pulls every tag.
    with underway() as hold:
        got = _http.request(
            endpoint, "POST",
            f"/images/create?fromImage={_http.quote(name)}&tag={_http.quote(tag)}",
            timeout=timeout, connected=hold)
    if got.status != 200:
        raise PullError(_http.message_of(got.body))
    for line in got.body.splitlines():  # progress; a failure midway arrives as an error line
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("error"):
            raise PullError(str(event["error"]))


# --- the memo of a resolution ------------------------------------------------------------------


def remember(resolved: Sequence[tuple[str, str, str, bool]], *, jobs: int, quiet: bool,
             json_out: bool, said: Sequence[str], read: Sequence[str],
             stat: Sequence[str], env: Sequence[str]) -> None:
    """Keep this run's resolution for `replay`: (image, name, tag-or-digest, buildable)
    per image (each pulled only when missing, by the engine's API), how it pulls and
    reports, the lines it said first, and its inputs (`env`: the variables it read besides
    those the memo always takes)."""
    if CALL is None:
        return
    memo.record(AREA, CALL, _cwd(), read=list(read), stat=list(stat), env=list(env),
                answer={"resolved": [list(r) for r in resolved], "jobs": jobs, "quiet": quiet,
                        "json": json_out, "said": list(said)})


def forget() -> None:
    if CALL is not None:
        memo.forget(AREA, CALL)


def _cwd() -> str:
    import os

    return os.getcwd()


def replay(args: list[str]) -> int | None:
    """This run's exit code when the memo resolves it (pulls and report done here); None
    when the full way must run."""
    answer = memo.recall(AREA, args)
    endpoint = _http.from_env()
    if not isinstance(answer, dict) or endpoint is None:
        return None
    try:
        resolved = [(str(i), str(n), str(t), bool(b)) for i, n, t, b in answer["resolved"]]
        jobs, quiet, json_out, said = (int(answer["jobs"]), bool(answer["quiet"]),
                                       bool(answer["json"]), [str(s) for s in answer["said"]])
    except (KeyError, TypeError, ValueError):
        return None
    started = time.monotonic()
    items = [Item(image, buildable, partial(api_present, endpoint, image),
                  partial(api_pull, endpoint, name, tag))
             for image, name, tag, buildable in resolved]
    failed: PrepullFailed | None = None
    try:
        outcomes = run(items, jobs=jobs)
    except PrepullFailed as err:
        failed, outcomes = err, err.outcomes
    except OSError:  # the engine went away: the full way says so in its words
        return None
    for line in said:
        print(line, file=sys.stderr, flush=True)
    report(outcomes, time.monotonic() - started, quiet=quiet, json_out=json_out,
           failed=failed is not None)
    if failed is not None:
        print(FAILED.format(failed), file=sys.stderr, flush=True)
        return 1
    return 0
