"""A Ctrl-C while a bottle's container or network is being made: the engine may still be
making it after we stop waiting (it does not cancel a create whose client went away), so a
teardown that ran at once found nothing to remove and the container appeared after it
(found by CI: `test_an_interrupt_while_bottle_starts_up_is_quiet` left a container behind).
The create is finished first, then the interrupt unwinds and the teardown removes it.

Here the engine is a stand-in (a slow create is the point), over its API and by the CLI."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bottle import signals
from bottle.backend import Teardown
from bottle.backend.docker import DockerBottle
from bottle.tools import docker as docker_mod
from bottle.tools.docker import RunSpec
from tests.helpers import UnixHTTPServer, fake_on_path, smolvm_calls

CREATE_SECONDS = 0.5


class _SlowEngine(http.server.BaseHTTPRequestHandler):
    """Creates a container (or network) slowly; removes one only if it exists."""

    protocol_version = "HTTP/1.1"
    events: list[str]
    made: set[str]
    seconds = CREATE_SECONDS
    hung: threading.Event  # set when the test is over: a create still waiting ends

    def _answer(self, status: int, body: bytes = b"{}") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.events.append("creating")
        if self.hung.wait(self.seconds):  # the test is over: no answer to nobody
            return
        # (the engine goes on, whether or not we still listen)
        self.made.add("c")
        self.events.append("created")
        self._answer(201, b'{"Id": "c"}')

    def do_DELETE(self) -> None:
        found = "c" in self.made
        self.made.discard("c")
        self.events.append("removed" if found else "nothing to remove")
        self._answer(204 if found else 404, b"" if found else b'{"message": "no such"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def handlers() -> Iterator[None]:
    """bottle's signal handlers, for one test (pytest's own restored after)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signals.install()
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    signals._State.stopping, signals._State.pending = False, None


@contextlib.contextmanager
def _slow_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 **how: object) -> Iterator[list[str]]:
    """The stand-in engine (a `_SlowEngine` with `how` laid over it) as DOCKER_HOST, for
    one block; what it saw (its events)."""
    events: list[str] = []
    engine = type("Engine", (_SlowEngine,), {"events": events, "made": set(),
                                             "hung": threading.Event(), **how})
    server = UnixHTTPServer(str(tmp_path / "engine.sock"), engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'engine.sock'}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    try:
        yield events
    finally:
        engine.hung.set()  # (a create still hanging returns, with no answer to nobody)
        server.shutdown()
        server.server_close()


def _interrupt_after(seconds: float) -> None:
    threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT)).start()


def _interrupt_once(started: Callable[[], bool], *after: float) -> None:
    """A Ctrl-C `after` seconds (each) from when `started()` is first true."""
    def watch() -> None:
        deadline = time.monotonic() + 30
        while not started() and time.monotonic() < deadline:
            time.sleep(0.002)
        at = time.monotonic()
        for seconds in after:
            time.sleep(max(0.0, at + seconds - time.monotonic()))
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def _create_then_teardown(capsys: pytest.CaptureFixture[str], started: Callable[[], bool],
                          *after: float) -> str:
    """What a launch does: the container's removal is the teardown's, then the create;
    a Ctrl-C meanwhile (`after` seconds into the create) unwinds into the teardown.
    Returns what was said on stderr."""
    teardown = Teardown("bottle t")
    teardown.add("container t", lambda: docker_mod.remove_container("t"))
    bottle = DockerBottle("t", teardown, image_id="sha256:" + "1" * 64,
                          run=RunSpec(name="t", labels={"bot-bottle": "1"}), env={})
    _interrupt_once(started, *after)
    with pytest.raises(signals.Interrupted):
        try:
            bottle.create([], tty=False)
            time.sleep(5)  # (the interrupt must not be lost)
        except BaseException:
            bottle.close()
            raise
    return capsys.readouterr().err


def test_a_container_being_created_over_the_api_is_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handlers: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    with _slow_engine(tmp_path, monkeypatch) as events:
        err = _create_then_teardown(capsys, lambda: "creating" in events, 0.1)
    assert events == ["creating", "created", "removed"]
    assert err == ""  # one Ctrl-C: nothing to say until the run's own last line


def test_a_container_being_created_by_the_cli_is_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handlers: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Where only the CLI knows the way to the engine (a docker context): `docker create`
    is not stopped halfway either."""
    log = tmp_path / "engine.log"
    fake_on_path(tmp_path, monkeypatch, "docker", f"""#!/bin/sh
case "$1" in
  create) echo creating >> "{log}"; sleep {CREATE_SECONDS}; touch "{tmp_path}/made"
          echo created >> "{log}" ;;
  rm) if [ -e "{tmp_path}/made" ]; then rm "{tmp_path}/made"; echo removed >> "{log}"
      else echo "nothing to remove" >> "{log}"; fi ;;
esac
""")
    monkeypatch.setenv("DOCKER_CONTEXT", "elsewhere")
    err = _create_then_teardown(capsys, lambda: log.exists(), 0.1)
    assert log.read_text().split("\n")[:-1] == ["creating", "created", "removed"]
    assert err == ""


def test_a_second_interrupt_meanwhile_says_what_is_under_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handlers: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    with _slow_engine(tmp_path, monkeypatch) as events:
        err = _create_then_teardown(capsys, lambda: "creating" in events, 0.1, 0.2)
    assert events == ["creating", "created", "removed"]
    assert err.strip().splitlines() == [
        "bottle: SIGINT received; still creating container t (once more to stop waiting)"]


def test_a_third_interrupt_stops_waiting_for_an_engine_that_does_not_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handlers: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A create that hangs (an engine that never answers) does not hold Ctrl-C for ever:
    the third one stops waiting, and the teardown runs at once."""
    started = time.monotonic()
    with _slow_engine(tmp_path, monkeypatch, seconds=30.0) as events:
        err = _create_then_teardown(capsys, lambda: "creating" in events, 0.1, 0.2, 0.3)
    assert time.monotonic() - started < 10
    assert events == ["creating", "nothing to remove"]
    assert err.strip().splitlines() == [
        "bottle: SIGINT received; still creating container t (once more to stop waiting)"]


def test_a_create_that_fails_after_an_interrupt_still_stops_the_run(
        handlers: None) -> None:
    """The interrupt is not swallowed by the error the shielded step ended with."""
    _interrupt_after(0.05)
    with pytest.raises(signals.Interrupted), signals.shielded("creating x", say_first=False):
        time.sleep(0.3)
        raise docker_mod.DockerError(["docker", "create"], 1, reason="boom")


def test_a_machine_being_created_is_removed(fake_smolvm: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            handlers: None) -> None:
    """smolmachines: the machine's removal is the teardown's before its create starts, and
    the create is not stopped halfway (nor left out of the teardown when it was)."""
    from bottle.backend import BottleSpec, Prepared
    from bottle.backend.smolmachines import SmolmachinesBackend
    from bottle.tools import smolvm
    from cache.store import Store

    smolvm._detect.cache_clear()
    monkeypatch.setenv("FAKE_SMOLVM_CREATE_SLEEP", str(CREATE_SECONDS))
    artifact = tmp_path / "agent.smolmachine"
    artifact.write_text("packed")
    spec = BottleSpec(launch_id="1-int", command="claude", workspace=tmp_path)
    _interrupt_once(lambda: any(c[:2] == ["machine", "create"]
                                for c in smolvm_calls(fake_smolvm)), 0.1)
    with pytest.raises(signals.Interrupted):
        bottle = SmolmachinesBackend().start(Prepared("pack: test", artifact=artifact), spec,
                                             Store(tmp_path / "cache"))
        bottle.close()
    verbs = [c[1] for c in smolvm_calls(fake_smolvm) if c[:1] == ["machine"]]
    assert verbs[:1] == ["create"] and "delete" in verbs
    assert list((tmp_path / "smolvm-state").glob("*.json")) == []  # no machine left
    assert not list((tmp_path / "cache").rglob("*.json"))  # nor its run record


_THREADS = r'''
import json, os, signal, sys, threading
from pathlib import Path
from bottle import pulling
from bottle.tools import _proc
import cache.digest as d

CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
def held():
    return sorted(s.name for s in signal.pthread_sigmask(signal.SIG_BLOCK, []) if s in CAUGHT)

out = {"pull": [], "digest": []}
item = pulling.Item("a:1", False, lambda: False, lambda: out["pull"].append(held()))
pulling.run([item], pool=pulling.Pool(2))
real = d._read_one
def spy(*args):
    if threading.current_thread() is not threading.main_thread():
        out["digest"].append(held())
    return real(*args)
d._read_one = spy
ctx = Path(sys.argv[1])
d.context_digest(ctx, ctx / "Dockerfile")
class Tty:  # stderr as a terminal: progress is shown
    def __init__(self, f): self.f = f
    def isatty(self): return True
    def __getattr__(self, name): return getattr(self.f, name)
sys.stderr = Tty(sys.stderr)
# The thread that copies a child's output (progress=True) and the progress ticker: the
# child reads every thread's mask.
from bottle import progress
with progress.step("test"):
    _proc.run(_proc.Tool("sh", "").cmd("-c", "sleep 0.5; for t in /proc/$PPID/task/*; do "
                                       "echo $PPID ${t##*/} $(grep SigBlk $t/status); done"),
              progress=True)
out["main"] = held()
print(json.dumps(out))
'''


def test_worker_threads_leave_signals_to_the_main_thread(tmp_path: Path) -> None:
    """The pull pool's workers, the digest's readers and the output copier hold SIGINT,
    SIGTERM and SIGHUP blocked: the kernel gives a signal to any thread that does not block
    it, and only the main thread acts on one (taken by a worker, the main thread slept on
    in its wait). The main thread's own mask is left as it was."""
    import json
    import subprocess
    import sys

    from cache.digest import _BIG_FILE, _cpus
    from tests.conftest import ROOT

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    for name in ("a.bin", "b.bin"):  # big enough to go to the reader threads
        (tmp_path / name).write_bytes(b"x" * _BIG_FILE)
    r = subprocess.run([sys.executable, "-c", _THREADS, str(tmp_path)], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    caught = ["SIGHUP", "SIGINT", "SIGTERM"]
    assert out["pull"] == [caught]
    assert out["digest"] == ([caught, caught] if _cpus() >= 2 else [])
    assert out["main"] == []
    # "pid tid SigBlk: mask" for each thread: the main thread (tid = pid) blocks none; the
    # ticker and the copier all three
    rows = [line.split()[-4:] for line in r.stderr.splitlines() if "SigBlk" in line]
    masks = sorted((tid != pid, int(mask, 16) & 0x4003) for pid, tid, _, mask in rows)
    assert masks == [(False, 0), (True, 0x4003), (True, 0x4003)], r.stderr


_FORKED = r'''
import os, signal, sys
from pathlib import Path
from bottle import signals
import cache.digest as d

signals.install()
# A Ctrl-C that reaches the digest's second process while Python sets it up after fork()
os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGINT))
parent = os.getpid()
ctx = Path(sys.argv[1])
try:
    got = d.context_digest(ctx, ctx / "Dockerfile")
except KeyboardInterrupt:
    print("interrupted", "parent" if os.getpid() == parent else "child", flush=True)
    os._exit(130)
if os.getpid() == parent:
    d._FORK = False
    print(got.hexdigest == d.context_digest(ctx, ctx / "Dockerfile").hexdigest, flush=True)
else:
    print("the child came back", flush=True)
'''


def test_a_signal_in_the_digests_second_process_is_its_parents(tmp_path: Path) -> None:
    """The cold digest of a big context forks a second process. A signal that reached it
    while Python set it up ran our handler there: a traceback from threading's after-fork
    hook, or the child unwinding through its parent's code (1 Ctrl-C in ~25 by hand). The
    child holds them blocked from before the fork; the parent decides."""
    import subprocess
    import sys

    from cache.digest import _FORK_ENTRIES, _cpus
    from tests.conftest import ROOT

    if _cpus() < 2:
        pytest.skip("the digest forks only with two CPUs")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    for d in range(40):
        sub = tmp_path / f"d{d}"
        sub.mkdir()
        for i in range(_FORK_ENTRIES // 40 + 1):
            (sub / f"f{i}").write_bytes(b"")
    r = subprocess.run([sys.executable, "-c", _FORKED, str(tmp_path)], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (r.returncode, r.stdout, r.stderr) == (0, "True\n", "")
