#!/usr/bin/env python3
"""Egress (issue 12): launch-to-agent-start latency of a bottle whose only way out is the
allow-listing proxy, vs a bottle with no network, vs a bare `docker run` of the image.

On an engine the bench starts (own data root and socket), with the offline base
(`bottle base`: mmdebstrap, minutes the first time; kept in CACHE, see --keep), the
example agent built on it, and an upstream busybox httpd named `allowed.test` on a
network the bench creates (the proxy's egress network). Times, median of RUNS, the
variants interleaved (the order rotates every run), each from its own process start:
  egress       `bottle launch --headless --command sh -- -c 'echo started'` with
               network = "egress" (base = "local", egress = ["allowed.test"])
  none         the same with network = "none"
  docker run   `docker run --rm --network none IMAGE sh -c 'echo started'`, same image
  egress+wget  egress, the agent printing `started`, then retrying busybox wget of
               http://allowed.test/ (through the proxy) until it answers
For each: the whole run (start + agent + teardown) and the agent's first output (read
line by line as it arrives); for egress+wget also the first successful request. Images
are built by a warm-up launch first: every timed launch is a cache hit. The workspace is
owned by uid 1000 (the image's node), so no user-mapped image is built. Then one egress
launch's stderr lines with their times, and one egress and one none launch under strace
(the programs bottle ran, its own engine API requests, its stderr lines), show where the
time goes, and whether the agent's container waited for the proxy's start.
CACHE (default $TMPDIR/bb-bench-egress-cache) is removed at the end unless --keep.
Needs root (it starts dockerd), docker.io, mmdebstrap, busybox-static and strace.

    python3 bench/bench_egress.py [--runs 10] [--cache DIR] [--keep] [--no-trace]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _bench import (
    BOTTLE,
    Engine,
    Proc,
    bottle_env,
    busybox_context,
    cell,
    chown_tree,
    die,
    engine,
    med,
    need,
    print_table,
    print_timeline,
    timed,
    timeline,
    uptime,
)

NETWORK = "bb-bench-egress"
UPSTREAM = "bb-bench/upstream:1"
SERVE = "mkdir -p /www && echo upstream > /www/index.html && exec httpd -f -p 80 -h /www"
ECHO = "echo started"
# busybox wget segfaults with -T: `timeout` bounds each try instead.
PROBE = """echo started
n=0
until out=$(timeout 5 wget -q -O- http://allowed.test/ 2>/dev/null); do
  n=$((n + 1)); [ $n -lt 500 ] || { echo "never reached"; exit 1; }; sleep 0.02
done
echo "reached $out after $n retries"
"""
CONFIG = {
    "egress": ('base = "local"\nbuild_network = "none"\nnetwork = "egress"\n'
               f'egress = ["allowed.test"]\negress_network = "{NETWORK}"\n'),
    "none": 'base = "local"\nbuild_network = "none"\nnetwork = "none"\n',
}


@dataclass
class Run:
    """One process: when each line appeared (seconds from the start) and when it ended."""

    total: float
    out: list[tuple[float, str]]
    err: list[tuple[float, str]]

    def first(self, prefix: str) -> float:
        for t, line in self.out:
            if line.startswith(prefix):
                return t
        die(f"no output line starting with {prefix!r}: {self.out}\n{self.err}")


def streamed(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Run:
    """Run, timestamping each stdout and stderr line as it arrives."""
    err: list[tuple[float, str]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    errors = proc.stderr

    def read_err() -> None:
        for raw in errors:
            err.append((time.perf_counter() - start, raw.decode(errors="replace").rstrip()))

    reader = threading.Thread(target=read_err)
    reader.start()
    out = [(time.perf_counter() - start, raw.decode(errors="replace").rstrip())
           for raw in proc.stdout]
    code = proc.wait()
    total = time.perf_counter() - start
    reader.join()
    if code != 0:
        die(f"{' '.join(argv)} exited {code}:\n" + "\n".join(ln for _, ln in err))
    return Run(total, out, err)


@dataclass
class Bench:
    eng: Engine
    cache: Path
    work: Path
    image: str = ""
    results: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    last_egress: Run | None = None

    def ws(self, name: str) -> Path:
        return self.work / f"ws-{name}"

    def launch(self, name: str, script: str) -> Run:
        return streamed([*BOTTLE, "launch", "--headless", "--command", "sh", "--", "-c",
                         script], cwd=self.ws(name), env=bottle_env(self.eng, self.cache))

    def docker_run(self) -> Run:
        return streamed(["docker", "run", "--rm", "--network", "none", self.image, "sh",
                         "-c", ECHO], cwd=self.work, env=self.eng.env())

    def record(self, variant: str, **values: float) -> None:
        slot = self.results.setdefault(variant, {})
        for k, v in values.items():
            slot.setdefault(k, []).append(v)

    def once(self, variant: str) -> None:
        if variant == "docker run":
            r = self.docker_run()
            self.record(variant, total=r.total, started=r.first("started"))
        elif variant == "egress+wget":
            r = self.launch("egress", PROBE)
            reached = r.first("reached")
            retries = int(re.findall(r"after (\d+) retries", r.out[-1][1])[0])
            self.record(variant, total=r.total, started=r.first("started"), reached=reached,
                        retries=retries)
            self.check_egress(r)
        else:
            r = self.launch(variant, ECHO)
            self.record(variant, total=r.total, started=r.first("started"))
            if variant == "egress":
                self.check_egress(r)
                self.last_egress = r

    def check_egress(self, r: Run) -> None:
        if not any(line.startswith("egress: ") for _, line in r.err):
            die("an egress launch without its egress line:\n" + "\n".join(ln for _, ln in r.err))


def setup(b: Bench) -> float:
    """The base, the upstream server, the workspaces; warm-up launches build the images.
    Returns how long `bottle base` took."""
    env = bottle_env(b.eng, b.cache)
    t, _ = timed([*BOTTLE, "base"], cwd=b.work, env=env)
    ctx = busybox_context(b.work / "upstream")
    b.eng.docker("build", "-q", "--network", "none", "-t", UPSTREAM, str(ctx))
    b.eng.docker("network", "create", NETWORK)
    b.eng.docker("run", "-d", "--name", "bb-bench-allowed", "--network", NETWORK,
                 "--network-alias", "allowed.test", UPSTREAM, "sh", "-c", SERVE)
    for name, conf in CONFIG.items():
        ws = b.ws(name)
        ws.mkdir()
        (ws / "bottle.toml").write_text(conf)
        chown_tree(ws)
    for name in CONFIG:
        b.launch(name, ECHO)
    warm = b.launch("none", ECHO)
    lines = [ln for _, ln in warm.err if ln.startswith("build: cache hit")]
    m = re.search(r"\(image ([0-9a-f]{16})\)", lines[0]) if lines else None
    if m is None:
        die("the second launch was not a cache hit:\n" + "\n".join(ln for _, ln in warm.err))
    b.image = m.group(1)
    b.docker_run()
    return t


def report(b: Bench, args: argparse.Namespace, base_took: float) -> None:
    r = b.results
    print(f"\nLaunch latency, median (min-max) of {args.runs} runs, variants interleaved; "
          f"cache hits (images built by a warm-up); `bottle base` took {base_took:.1f}s "
          f"this run; uptime at the end: {uptime()}\n")
    rows = [[v, cell(r[v]["total"]), cell(r[v]["started"])]
            for v in ("egress", "none", "docker run")]
    for a, c in (("egress", "none"), ("none", "docker run"), ("egress", "docker run")):
        rows.append([f"ratio {a} / {c}",
                     f"{med(r[a]['total']) / med(r[c]['total']):.2f}x",
                     f"{med(r[a]['started']) / med(r[c]['started']):.2f}x"])
    print_table(["agent `sh -c 'echo started'`", "whole launch", "to the agent's first output"],
                rows)
    w = r["egress+wget"]
    print("\nEgress, the agent retrying `wget http://allowed.test/` through the proxy "
          "from its start:\n")
    print_table(["egress + wget", "to `started`", "to the first answer via the proxy",
                 "whole launch", "refused tries before"],
                [["bottle launch, network = egress", cell(w["started"]), cell(w["reached"]),
                  cell(w["total"]), cell(w["retries"], unit="")]])
    if b.last_egress is not None:
        print("\nOne egress launch (the last timed one), its lines as they arrived:\n")
        for t, line in sorted([*b.last_egress.err, *[(t, f"[agent] {ln}")
                                                     for t, ln in b.last_egress.out]]):
            print(f"  {t:6.3f}s  {line}")
        print(f"  {b.last_egress.total:6.3f}s  (exit)")


def trace(b: Bench) -> None:
    """Where the time goes: one launch of each network under strace."""
    for name in ("egress", "none"):
        took, procs, _ = timeline(
            [*BOTTLE, "launch", "--headless", "--command", "sh", "--", "-c", ECHO],
            cwd=b.ws(name), env=bottle_env(b.eng, b.cache), log=b.work / "strace.log",
            api=True)
        print(f"\nOne {name} launch under strace ({took:.2f}s; tracing slows each process "
              "start a little): the programs it ran, its own engine API requests, its "
              "stderr lines\n")
        print_timeline(procs)
        if name == "egress":
            print(proxy_wait(procs))


def proxy_wait(procs: Sequence[Proc]) -> str:
    """How long the agent's container, once created, waited before it was started, and
    whether its start came only after the proxy's `docker start` had returned."""
    def find(pred: Callable[[str], bool]) -> Proc | None:
        return next((p for p in procs if pred(p.argv)), None)

    create = find(lambda a: a.startswith("docker create --rm --init"))
    proxy = find(lambda a: a.startswith("docker start --") and a.endswith("-proxy"))
    agent = find(lambda a: a.startswith("docker start --attach"))
    if not (create and proxy and agent and create.end and proxy.end):
        return "\n(the timeline lacks the agent's create, the proxy's start or the agent's start)"
    after = "after" if agent.start >= proxy.end else "before"
    return (f"\nThe agent's container was created at {create.end:.3f}s and started at "
            f"{agent.start:.3f}s ({agent.start - create.end:.3f}s later), {after} the "
            f"proxy's `docker start` ({proxy.start:.3f}s to {proxy.end:.3f}s) returned.")


MARK = ".bb-bench-egress"


def claim(cache: Path) -> None:
    """The cache root is the bench's own (marked), never a user's cache it would remove."""
    if cache.exists() and not (cache / MARK).exists():
        die(f"{cache} exists and is not this bench's cache (no {MARK} in it): "
            "name another with --cache")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / MARK).touch()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "bb-bench-egress-cache",
                    help="cache root for the launches (holds the base tarball)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the cache root (the base is then not remade next time)")
    ap.add_argument("--no-trace", action="store_true", help="skip the strace timeline")
    args = ap.parse_args()
    need("dockerd", "docker", "mmdebstrap", *([] if args.no_trace else ["strace"]))
    claim(args.cache)
    work = Path(tempfile.mkdtemp(prefix="bb-bench-egress."))
    try:
        with engine("bb-bench-engine-E.") as eng:
            b = Bench(eng, args.cache, work)
            base_took = setup(b)
            variants = ["egress", "none", "docker run", "egress+wget"]
            for i in range(args.runs):
                for v in variants[i % 4:] + variants[:i % 4]:
                    b.once(v)
                print(f"run {i + 1}/{args.runs}: " + ", ".join(
                    f"{v} {b.results[v]['total'][-1]:.2f}s" for v in variants),
                    file=sys.stderr)
            report(b, args, base_took)
            if not args.no_trace:
                trace(b)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(args.cache, ignore_errors=True)


if __name__ == "__main__":
    main()
