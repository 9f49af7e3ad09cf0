#!/usr/bin/env python3
"""The shared cache (issue 13): machine B's first launch from the remote vs building
locally, for the example agent and for a context with a SIZE_MB layer of random bytes.

Two machines on this one: two dockerd engines the bench starts (own data root, exec
root and socket) and a fresh cache root per run, one registry on 127.0.0.1 (Debian's
docker-registry). Per run, for each case:
  A  `bottle build` without a remote (build only), then `bottle cache_push` to an
     empty registry (the push alone), then, from an empty engine, cache and registry,
     `bottle build` with remote_push = true (build + push, what CI would do)
  B  `bottle launch --headless` with the remote (pulls A's image) and without it
     (builds), each from an empty engine (`docker system prune -af`, checked empty) and
     a fresh cache root, in alternating order; then a warm launch (a local cache hit);
     and, for reference, a plain `docker pull` of A's image into the empty engine
The 200 MB context is the example agent (its Dockerfile, busybox and stand-in) plus a
`COPY` of a file of random bytes, so a local build has real work to do. Projects are
owned by uid 1000 (the image's node), so no user-mapped image is built. `--trace`
prints, once, which programs each kind of B launch ran and for how long (strace).
Needs root (it starts dockerd), docker.io, docker-registry, skopeo, busybox-static.

    python3 bench/bench_remote.py [--runs 5] [--size-mb 200] [--trace]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from _bench import (
    BOTTLE,
    ROOT,
    Engine,
    Registry,
    bottle_env,
    cell,
    chown_tree,
    die,
    engine,
    fresh_dir,
    med,
    need,
    print_table,
    print_timeline,
    static_busybox,
    timed,
    timeline,
    uptime,
)

EXAMPLE = ROOT / "examples" / "agent"


@dataclass
class Case:
    name: str
    project: Path
    context: str | None  # the project's `context`, or None for the bundled example agent

    def configure(self, remote: str | None, *, push: bool = False) -> None:
        lines = [f'context = "{self.context}"'] if self.context else []
        if remote:
            lines += [f'remote = "{remote}"', f"remote_push = {'true' if push else 'false'}"]
        (self.project / "bottle.toml").write_text("".join(f"{ln}\n" for ln in lines))


def make_cases(base: Path, size_mb: int) -> list[Case]:
    example = base / "example"
    example.mkdir()
    big = base / "big"
    ctx = big / "ctx"
    ctx.mkdir(parents=True)
    shutil.copy2(static_busybox(), ctx / "busybox")
    shutil.copy2(EXAMPLE / "claude", ctx / "claude")
    with (ctx / "blob").open("wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    # The example agent's Dockerfile, with the big layer after its user set-up.
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    marker = "COPY claude "
    if marker not in dockerfile:
        die(f"{EXAMPLE / 'Dockerfile'} has no {marker!r} line to add the layer before")
    (ctx / "Dockerfile").write_text(
        dockerfile.replace(marker, f"COPY blob /data/blob\n{marker}", 1))
    for p in (example, big):
        chown_tree(p)
    return [Case("example agent", example, None), Case(f"{size_mb} MB layer", big, "ctx")]


Results = dict[str, list[float]]


def run_a(case: Case, a: Engine, reg: Registry, work: Path, res: Results) -> None:
    """A: build only; push only (cache_push to an empty registry); build + push."""
    a.wipe()
    case.configure(None)
    cache = fresh_dir(work, "cache-a")
    t, _ = timed([*BOTTLE, "build"], cwd=case.project, env=bottle_env(a, cache),
                 expect="build: built")
    res["a build"].append(t)
    reg.start()
    case.configure(reg_repo(reg))
    t, _ = timed([*BOTTLE, "cache_push"], cwd=case.project, env=bottle_env(a, cache),
                 expect="pushed")
    res["a push"].append(t)
    a.wipe()
    reg.start()
    case.configure(reg_repo(reg), push=True)
    cache = fresh_dir(work, "cache-a")
    t, _ = timed([*BOTTLE, "build"], cwd=case.project, env=bottle_env(a, cache),
                 expect="pushed")
    res["a build+push"].append(t)
    res["registry MB"].append(reg.stored_bytes() / 1e6)


def run_b(case: Case, b: Engine, reg: Registry, work: Path, res: Results, i: int) -> None:
    """B: first launch from the remote, and building locally (order alternates)."""
    sides = ["remote", "local"] if i % 2 == 0 else ["local", "remote"]
    for side in sides:
        b.wipe()
        cache = fresh_dir(work, "cache-b")
        case.configure(reg_repo(reg) if side == "remote" else None)
        expect = "build: remote hit" if side == "remote" else "build: built"
        t, _ = timed([*BOTTLE, "launch", "--headless"], cwd=case.project,
                     env=bottle_env(b, cache), expect=expect)
        res[f"b {side}"].append(t)
        if side == "remote":
            t, _ = timed([*BOTTLE, "launch", "--headless"], cwd=case.project,
                         env=bottle_env(b, cache), expect="build: cache hit")
            res["b warm"].append(t)
    b.wipe()
    t, _ = timed(["docker", "pull", "-q", image_ref(reg)], cwd=work, env=b.env())
    res["b docker pull"].append(t)


def image_ref(reg: Registry) -> str:
    """The image A pushed (its img- tag; the registry holds one per run)."""
    with urllib.request.urlopen(f"http://{reg.endpoint}/v2/team/agents/tags/list") as r:
        tags = [t for t in json.load(r)["tags"] if t.startswith("img-")]
    if len(tags) != 1:
        die(f"expected one image tag in the registry, found {tags}")
    return f"{reg_repo(reg)}:{tags[0]}"


def reg_repo(reg: Registry) -> str:
    return f"{reg.endpoint}/team/agents"


def trace_b(case: Case, b: Engine, reg: Registry, work: Path) -> None:
    for side in ("remote", "local"):
        b.wipe()
        cache = fresh_dir(work, "cache-b")
        case.configure(reg_repo(reg) if side == "remote" else None)
        took, procs, _ = timeline([*BOTTLE, "launch", "--headless"], cwd=case.project,
                                  env=bottle_env(b, cache), log=work / "strace.log",
                                  api=True)
        how = "from the remote" if side == "remote" else "building locally"
        print(f"\n{case.name}, B's first launch {how} (under strace: {took:.2f}s)\n")
        print_timeline(procs)


def table(cases: list[Case], results: dict[str, Results], args: argparse.Namespace) -> None:
    print(f"\nB's first launch (`bottle launch --headless`, empty engine, fresh cache root): "
          f"from the remote vs building locally; median (min-max) of {args.runs} runs; "
          f"{os.cpu_count()} cores; uptime at the end: {uptime()}\n")
    rows = []
    for c in cases:
        r = results[c.name]
        rows.append([c.name, cell(r["b remote"]), cell(r["b local"]),
                     f"{med(r['b local']) / med(r['b remote']):.2f}x", cell(r["b warm"]),
                     cell(r["b docker pull"])])
    print_table(["case", "B: pull from remote", "B: build locally", "local / remote",
                 "ref: B warm launch", "ref: B `docker pull` alone"], rows)
    print("\nA's side: `bottle build` alone, `bottle cache_push` alone (to an empty "
          "registry), `bottle build` with remote_push = true (empty engine, cache and "
          "registry)\n")
    rows = []
    for c in cases:
        r = results[c.name]
        rows.append([c.name, cell(r["a build"]), cell(r["a push"]), cell(r["a build+push"]),
                     f"{med(r['a push']) / med(r['a build']):.2f}x",
                     f"{med(r['registry MB']):.1f} MB"])
    print_table(["case", "A: build", "A: push", "A: build + push", "push / build",
                 "in the registry"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--trace", action="store_true",
                    help="also print one strace timeline of each kind of B launch")
    args = ap.parse_args()
    need("dockerd", "docker", "skopeo", *(["strace"] if args.trace else []))
    work = Path(tempfile.mkdtemp(prefix="bb-bench-remote."))
    results: dict[str, Results] = {}
    try:
        cases = make_cases(work, args.size_mb)
        reg = Registry(work / "registry")
        with engine("bb-bench-engine-A.") as a, engine("bb-bench-engine-B.") as b:
            try:
                for case in cases:
                    res: Results = {k: [] for k in ("a build", "a push", "a build+push",
                                                    "registry MB", "b remote", "b local",
                                                    "b warm", "b docker pull")}
                    results[case.name] = res
                    for i in range(args.runs):
                        run_a(case, a, reg, work, res)
                        run_b(case, b, reg, work, res, i)
                        print(f"{case.name} run {i + 1}: " + ", ".join(
                            f"{k} {v[-1]:.2f}" for k, v in res.items()), file=sys.stderr)
                    if args.trace:
                        trace_b(case, b, reg, work)
            finally:
                reg.stop()
        table(cases, results, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
