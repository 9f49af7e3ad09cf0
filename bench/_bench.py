"""Pieces the engine benchmarks share: private Docker engines, a registry on loopback,
running `bottle` as a user would (timed), a busybox build context, and a process
timeline of one run (strace: every program started, when, for how long).

Everything here stays on this machine: engines the bench starts itself (their own data
root, exec root and socket, no default bridge, no iptables), a registry on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the tests' private engine (tests/engines.py)
BOTTLE = [sys.executable, "-m", "bottle"]
NODE_UID = 1000  # the example image's node: a workspace it owns needs no user-mapped image


def die(msg: str) -> NoReturn:
    sys.exit(f"bench: {msg}")


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        die(f"needs {', '.join(missing)} on PATH")
    if os.geteuid() != 0:
        die("starts its own dockerd: run as root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- engines --------------------------------------------------------------------------


@dataclass
class Engine:
    """A private dockerd: `host` is its DOCKER_HOST."""

    host: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["docker", *args], env=self.env(), capture_output=True, text=True,
                           timeout=600)
        if check and r.returncode != 0:
            die(f"docker {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def wipe(self) -> None:
        """No container, image, build cache or user network left: as a new machine."""
        ids = self.docker("ps", "-aq").split()
        if ids:
            self.docker("rm", "-f", *ids)
        self.docker("system", "prune", "-af")
        left = self.docker("images", "-aq")
        if left:
            die(f"engine {self.host} still has images after prune: {left.split()}")


@contextmanager
def engine(prefix: str) -> Iterator[Engine]:
    """A dockerd of the bench's own (the tests' private engine: its directory, images and
    all, goes at the end); its containers are removed first, not cut short by a Ctrl-C."""
    from tests.engines import private_engine

    with private_engine(prefix) as host:
        if host is None:
            die("could not start a dockerd (needs root and dockerd on PATH)")
        eng = Engine(host)
        try:
            yield eng
        finally:
            with _suppress_signals():
                ids = eng.docker("ps", "-aq", check=False).split()
                if ids:
                    eng.docker("rm", "-f", *ids, check=False)


@contextmanager
def _suppress_signals() -> Iterator[None]:
    """Cleanup is not cut short by a second Ctrl-C."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# --- a registry on loopback -------------------------------------------------------------


@dataclass
class Registry:
    """Debian's docker-registry on 127.0.0.1:port, storage under `root`."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start with empty storage (a registry that never saw our blobs)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "data").mkdir(parents=True)
        (self.root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: {self.endpoint}\n")
        exe = shutil.which("docker-registry") or shutil.which("registry")
        if exe is None:
            die("needs docker-registry (Debian) on PATH")
        with (self.root / "log").open("wb") as log:
            self.proc = subprocess.Popen([exe, "serve", str(self.root / "config.yml")],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    die(f"docker-registry did not start: {(self.root / 'log').read_text()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def stored_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "data").rglob("*") if p.is_file())


# --- running bottle ---------------------------------------------------------------------


def bottle_env(engine: Engine, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in engine.env().items() if not k.startswith("BOTTLE_")}
    return {**env, "PYTHONPATH": str(ROOT), "BOTTLE_CACHE_DIR": str(cache), **extra}


def timed(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
          expect: str | None = None) -> tuple[float, str]:
    """Wall time of one run and its stderr; the bench stops when it fails or its stderr
    lacks `expect` (a run that did something else must not be counted)."""
    t = time.perf_counter()
    r = subprocess.run(list(argv), cwd=cwd, env=dict(env), capture_output=True, text=True,
                       timeout=1800)
    took = time.perf_counter() - t
    if r.returncode != 0:
        die(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr}")
    if expect is not None and expect not in r.stderr:
        die(f"{' '.join(argv)}: expected {expect!r} in its output:\n{r.stderr}")
    return took, r.stderr


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def static_busybox() -> Path:
    for c in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(c).is_file():
            return Path(c)
    die("needs a static busybox (apt-get install busybox-static)")


def busybox_context(directory: Path) -> Path:
    """A FROM-scratch busybox image's context (as tests/conftest.py makes them)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(static_busybox(), directory / "busybox")
    (directory / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
    return directory


def chown_tree(path: Path, uid: int = NODE_UID) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, uid)


# --- tables ----------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def cell(values: Sequence[float], unit: str = "s") -> str:
    """`median (min-max)`."""
    return f"{med(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A Markdown table, columns padded; every column but the first right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                                 for i, (v, w) in enumerate(zip(r, widths, strict=True))) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                         for i, w in enumerate(widths)) + "|")
    for r in rows:
        print(line(r))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --- where the time goes: a process timeline ----------------------------------------------

_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_EXECVE = re.compile(r'execve\("([^"]*)", \[(.*?)\]')
_REQUEST = re.compile(r'^sendto\(\d+, "([A-Z]+ [^ "]+)')
_STDERR = re.compile(r'^write\(2, "((?:[^"\\]|\\.)*)"')


@dataclass
class Proc:
    """A program run (or, with `api`, one engine API request or one stderr line)."""

    pid: int
    start: float
    argv: str
    end: float | None = None


def timeline(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path,
             api: bool = False) -> tuple[float, list[Proc], str]:
    """Run under `strace -f` (seccomp-filtered: untraced syscalls run at full speed):
    the wall time, every program started (offset from the start, duration), and stderr.
    With `api`, also each engine API request bottle makes itself (sent to answered) and
    each line bottle writes to stderr. Tracing slows process starts a little: use it
    for the shape, not the totals."""
    calls = "execve,sendto,recvfrom,write" if api else "execve"
    t = time.perf_counter()
    r = subprocess.run(["strace", "-f", "--seccomp-bpf", "-ttt", "-s", "160", "-e",
                        f"trace={calls}", "-e", "signal=none", "-o", str(log), *argv],
                       cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - t
    if r.returncode != 0:
        die(f"strace {' '.join(argv)} failed ({r.returncode}):\n{r.stderr}")
    return took, parse_strace(log.read_text()), r.stderr


def parse_strace(text: str) -> list[Proc]:
    """Successful execves and process exits (and, when traced, API requests sent over
    sendto with their first answer by recvfrom, and the first process's stderr lines)
    from `strace -f -ttt` output."""
    procs: dict[int, Proc] = {}
    pending: dict[int, tuple[float, str]] = {}
    asked: dict[int, Proc] = {}
    done: list[Proc] = []
    first: int | None = None
    t0 = 0.0
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if first is None:
            first, t0 = pid, ts
        if rest.startswith("execve("):
            e = _EXECVE.match(rest)
            args = _args(e.group(2)) if e else rest[:80]
            if rest.endswith("<unfinished ...>"):
                pending[pid] = (ts, args)
            elif rest.rstrip().endswith("= 0"):
                _exec(procs, done, pid, ts, args)
        elif rest.startswith("<... execve resumed>"):
            started, args = pending.pop(pid, (ts, "?"))
            if rest.rstrip().endswith("= 0"):
                _exec(procs, done, pid, started, args)
        elif rest.startswith("+++ exited") or rest.startswith("+++ killed"):
            if pid in procs:
                procs[pid].end = ts
                done.append(procs.pop(pid))
        elif (q := _REQUEST.match(rest)) is not None:
            asked[pid] = Proc(pid, ts, f"API {q.group(1)}")
        elif rest.startswith("recvfrom(") and pid in asked:
            req = asked.pop(pid)
            req.end = ts
            done.append(req)
        elif pid == first and (w := _STDERR.match(rest)) is not None and w.group(1) != "\\n":
            done.append(Proc(pid, ts, f"stderr: {w.group(1)}"))
    done += [*procs.values(), *asked.values()]
    for p in done:
        p.start -= t0
        p.end = None if p.end is None else p.end - t0
    return sorted(done, key=lambda p: p.start)


def _exec(procs: dict[int, Proc], done: list[Proc], pid: int, ts: float, args: str) -> None:
    """A new program in `pid` (an exec over an exec ends the first one there)."""
    if pid in procs:
        old = procs.pop(pid)
        old.end = ts
        done.append(old)
    procs[pid] = Proc(pid, ts, args)


def _args(raw: str) -> str:
    words = re.findall(r'"((?:[^"\\]|\\.)*)"', raw)
    words[0] = Path(words[0]).name if words else "?"
    return " ".join(w if len(w) <= 48 else w[:45] + "..." for w in words[:7])


def print_timeline(procs: Sequence[Proc]) -> None:
    print(f"| {'start':>7} | {'took':>6} | what |")
    print("|--------:|-------:|------|")
    for p in procs:
        took = f"{p.end - p.start:6.3f}" if p.end is not None else ""
        print(f"| {p.start:7.3f} | {took:>6} | `{p.argv}` |")
