"""Candidate image references for the differential tests of bottle.reference, and the
real parsers they are compared with (the docker CLI's own, and the engine's `docker tag`).

Candidates are built from the grammar's pieces (valid and broken ones) and then mutated at
random with a fixed seed, so every run checks the same strings."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

HEX = "0123456789abcdef"

# Each piece: valid forms first, then broken ones; a candidate takes a broken piece
# only now and then, so that valid and invalid candidates are both plentiful.
DOMAINS = (["", "", "localhost", "localhost:5000", "example.com", "registry.example.com:443",
            "127.0.0.1:5000", "[::1]:5000", "[fe80::1]", "[::1]", "Foo", "UPPER.io", "a-b.c",
            "index.docker.io", "docker.io", "ghcr.io", "1.2.3.4:65536", "x" * 200 + ".io"],
           ["-a.com", "a-.com", "a..b", "a.b.", "host:port", "host:", "[::g]:1", "a_b.com"])
PATHS = (["busybox", "library/busybox", "a/b/c", "a__b", "a--b", "a.b", "0", "x" * 120,
          "sha256", "a" * 64, "o/" + "p" * 250, "a-b_c.d/e"],
         ["a___b", "a-", "-a", "_a", "a_", "a..b", "a._b", "A", "aB", "", "a//b", "/a", "a/",
          "a b", "é", "a|b", "a$b"])
TAGS = (["", "", "latest", "v1.0", "1", "_x", "A-Z_09.", "x" * 128],
        [".x", "-x", "x" * 129, "a:b", "a b", "é", "|version|", "${TAG}"])
DIGESTS = (["", "", "", "sha256:" + "a" * 64, "sha384:" + "b" * 96, "sha512:" + "c" * 128],
           ["sha256:" + "a" * 63, "sha256:" + "A" * 64, "SHA256:" + "a" * 64,
            "sha512:" + "c" * 64, "blake3:" + "d" * 64, "md5:" + "e" * 32, "sha256:",
            "sha256:" + "g" * 64, "a+b.c_d-e:" + "f" * 32])
SPECIAL = ["", "--help", "-q", "-", "--", "a" * 64, "sha256:" + "a" * 64, "a" * 63,
           "busybox:1@sha256:" + "a" * 64, "a:b:c", "a@b@c", " busybox", "busybox ",
           "busybox\n", "apache/airflow:|version|", "library/" + "a" * 247,
           "library/" + "a" * 248, "a" * 247, "a" * 248, "x/" + "a" * 253, "x/" + "a" * 254,
           "example.com/" + "a" * 255, "example.com/" + "a" * 256,
           "docker.io/library/" + "a" * 247, "docker.io/library/" + "a" * 248]
MUTATION_CHARS = "-_.:/@ABCaz09[]$| \té#+"


def _pick(rng: random.Random, pieces: tuple[list[str], list[str]]) -> str:
    return rng.choice(pieces[1] if rng.random() < 0.15 else pieces[0])


def _compose(rng: random.Random) -> str:
    domain, path = _pick(rng, DOMAINS), _pick(rng, PATHS)
    tag, digest = _pick(rng, TAGS), _pick(rng, DIGESTS)
    ref = f"{domain}/{path}" if domain else path
    if tag:
        ref += f":{tag}"
    if digest:
        ref += f"@{digest}"
    return ref


def _mutate(rng: random.Random, ref: str) -> str:
    if not ref:
        return rng.choice(MUTATION_CHARS)
    i = rng.randrange(len(ref) + 1)
    action = rng.randrange(3)
    if action == 0:
        return ref[:i] + rng.choice(MUTATION_CHARS) + ref[i:]
    if action == 1:
        return ref[:i] + ref[i + 1:]
    return ref[:i] + rng.choice(MUTATION_CHARS) + ref[i + 1:]


def candidates(n: int, *, seed: int = 20260) -> list[str]:
    """`SPECIAL`, then `n` grammar-built strings, one in three of them mutated once or twice;
    duplicates dropped. Never empty of either valid or invalid ones."""
    rng = random.Random(seed)
    out = dict.fromkeys(SPECIAL)
    while len(out) < len(SPECIAL) + n:
        ref = _compose(rng)
        for _ in range(rng.choice((0, 0, 0, 0, 1, 2))):
            ref = _mutate(rng, ref)
        out.setdefault(ref)
    return list(out)


def _cli_env(tmp: Path) -> dict[str, str]:
    # A socket nobody listens on: the CLI parses the reference, then fails to connect.
    return {**os.environ, "DOCKER_HOST": f"unix://{tmp}/nobody.sock",
            "DOCKER_CONFIG": str(tmp), "DOCKER_CONTEXT": ""}


def cli_accepts(refs: Iterable[str], tmp: Path) -> Iterator[tuple[str, bool, str]]:
    """docker CLI's verdict on each ref: `docker pull -- REF` either fails to parse it or
    gets as far as connecting to the (absent) engine. No traffic leaves the machine."""
    env = _cli_env(tmp)
    for ref in refs:
        r = subprocess.run(["docker", "pull", "-q", "--", ref], env=env, capture_output=True,
                           text=True, timeout=30)
        yield ref, "Cannot connect to the Docker daemon" in r.stderr, r.stderr.strip()


def engine_tags(refs: Iterable[str], source: str) -> Iterator[tuple[str, bool, str]]:
    """`docker tag SOURCE REF` against the current engine: the CLI's parser and the
    engine's. Each tag made is removed again."""
    for ref in refs:
        r = subprocess.run(["docker", "tag", "--", source, ref], capture_output=True,
                           text=True, timeout=30)
        if r.returncode == 0:
            subprocess.run(["docker", "rmi", "--no-prune", "--", ref], capture_output=True,
                           timeout=30, check=False)
        yield ref, r.returncode == 0, r.stderr.strip()
