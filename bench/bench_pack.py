#!/usr/bin/env python3
"""Warm no-op `bottle pack` vs `docker build` on a cache hit, and context-digest throughput.

Generates a build context of FILES files (~SIZE_MB MB), packs it once cold (with the
stand-in smolvm from tests/fakes: no VM can boot here, and the warm path never calls
smolvm anyway), then times, in the same run:
  - `bottle pack` warm no-op (whole process, median of RUNS)
  - `docker build` of the same context on a full cache hit (median of RUNS)
  - hashing the same files: xxh3-128 (ours), MD5, SHA-256 (GB/s, page cache warm)
  - our context digest with a cold and a warm stat index
Needs a running Docker engine ($DOCKER_HOST) and a static busybox.

    python3 bench/bench_pack.py [--files 10000] [--size-mb 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cache.digest import context_digest  # noqa: E402


def make_context(base: Path, files: int, size_mb: int) -> Path:
    ctx = base / "ctx"
    rng = random.Random(42)
    avg = size_mb * 1024 * 1024 // files
    block = rng.randbytes(1 << 20)
    for i in range(files):
        d = ctx / f"pkg{i % 100:02d}" / f"mod{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        n = max(1, int(rng.expovariate(1 / avg)))
        start = rng.randrange(0, len(block))
        data = (block[start:] + block)[: min(n, len(block))] * (n // len(block) + 1)
        (d / f"f{i}.dat").write_bytes(str(i).encode() + data[:n])
    for bb in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(bb).is_file():
            shutil.copy2(bb, ctx / "busybox")
            break
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY . /ctx/\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    return ctx


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{r.stderr}")


def hash_all(paths: list[Path], make: Callable[[], object]) -> float:
    t = time.perf_counter()
    for p in paths:
        h = make()
        with open(p, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)  # type: ignore[attr-defined]
        h.hexdigest()  # type: ignore[attr-defined]
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    import xxhash

    base = Path(tempfile.mkdtemp(prefix="bb-bench."))
    try:
        ctx = make_context(base, args.files, args.size_mb)
        paths = [p for p in ctx.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in paths)
        proj = base / "proj"
        (proj / "bin").mkdir(parents=True)
        (proj / "bin" / "smolvm").symlink_to(ROOT / "tests" / "fakes" / "smolvm")
        (proj / "bottle.toml").write_text(f'context = "{ctx}"\nimage = "bb-bench:latest"\n')
        env = {**os.environ, "BOTTLE_CACHE_DIR": str(base / "cache"),
               "PATH": f"{proj / 'bin'}{os.pathsep}{os.environ['PATH']}",
               "FAKE_SMOLVM_STATE": str(base / "smolvm"), "PYTHONPATH": str(ROOT)}
        bottle = [sys.executable, "-m", "bottle", "pack"]

        cold = timed(lambda: run(bottle, proj, env), 1)[0]
        time.sleep(2.5)  # let the context files age past the racy window
        run(bottle, proj, env)  # re-hashes the racy files once, like git's index
        warm = timed(lambda: run(bottle, proj, env), args.runs)
        build = [sys.executable, "-c", "import subprocess,sys; sys.exit(subprocess.call("
                 f"['docker','build','-q','-t','bb-bench:latest','{ctx}'],"
                 "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))"]
        docker_hit = timed(lambda: run(build, proj, env), args.runs)

        for p in paths:  # page cache warm for every hash
            p.read_bytes()
        xxh = hash_all(paths, xxhash.xxh3_128)
        md5 = hash_all(paths, hashlib.md5)
        sha = hash_all(paths, hashlib.sha256)
        idx = base / "bench-index.json"
        cold_digest = timed(lambda: context_digest(ctx, ctx / "Dockerfile", index_path=idx), 1)[0]
        time.sleep(2.5)
        context_digest(ctx, ctx / "Dockerfile", index_path=idx)
        warm_digest = statistics.median(
            timed(lambda: context_digest(ctx, ctx / "Dockerfile", index_path=idx), args.runs))

        med_warm, med_docker = statistics.median(warm), statistics.median(docker_hit)
        gb = total / 1e9
        print(f"context: {len(paths)} files, {total / 1e6:.0f} MB; median of {args.runs} runs; "
              f"{os.cpu_count()} cores")
        print()
        print(f"| {'what':<48} | {'time':>9} | {'vs docker build':>15} |")
        print(f"|{'-' * 50}|{'-' * 11}|{'-' * 17}|")
        rows = [
            ("bottle pack, cold (build + save + pack)", cold, ""),
            ("bottle pack, warm no-op (whole process)", med_warm,
             f"{med_docker / med_warm:.1f}x faster"),
            ("docker build, full cache hit", med_docker, "1.0x"),
            ("context digest, cold index (hash every file)", cold_digest, ""),
            ("context digest, warm index (stat only)", warm_digest, ""),
        ]
        for label, secs, ratio in rows:
            print(f"| {label:<48} | {secs:>8.3f}s | {ratio:>15} |")
        print()
        print(f"| {'hash over the same files':<48} | {'GB/s':>9} | {'vs xxh3-128':>15} |")
        print(f"|{'-' * 50}|{'-' * 11}|{'-' * 17}|")
        for label, secs in (("xxh3-128 (ours)", xxh), ("MD5", md5), ("SHA-256", sha)):
            print(f"| {label:<48} | {gb / secs:>9.2f} | {secs / xxh:>14.1f}x |")
    finally:
        subprocess.run(["docker", "rmi", "-f", "bb-bench:latest"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
