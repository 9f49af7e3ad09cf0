"""prepull's head start reads a compose file's `image:` lines without a YAML parser
(bottle.prepull.literal_services). Whatever it names must be what a YAML parser reads as
that service's image: checked against PyYAML on the real compose files and on thousands
of generated ones built to mislead a line reader (flow collections and quoted scalars
over several lines, block scalars holding `image:` lines, anchors, merges, tags, numbers
and booleans that look like names, comments, odd indentation)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import yaml

from bottle import prepull as pp

# The real compose files (the same corpus tests/integration/test_compose_real.py reads).
REAL = Path(os.environ.get("COMPOSE_REAL", "/work/shared/data/compose-real"))


def yaml_services(data: bytes) -> dict[str, object] | None:
    """Each service's `image` as YAML reads it; None when YAML refuses the file."""
    try:
        doc = yaml.load(data, yaml.CSafeLoader)
    except yaml.YAMLError:
        return None
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict):
        return {}
    return {str(k): v.get("image") for k, v in services.items() if isinstance(v, dict)}


def yaml_keys(data: bytes) -> dict[str, object]:
    """Each service's keys as written (merge keys kept: YAML's base loader leaves them)."""
    doc = yaml.load(data, yaml.BaseLoader)
    return {str(k): (list(v) if isinstance(v, dict) else v)
            for k, v in ((doc or {}).get("services") or {}).items()}


# Keys that take a service's keys from elsewhere (no service of a file with sure images
# may have one), and those that keep a sure image's own service from being pulled as named.
ELSEWHERE = {"extends", "<<"}
NOT_SURE = {"profiles", "pull_policy", "provider"} | ELSEWHERE


def check(data: bytes) -> dict[str, str]:
    """What we read, checked against YAML where YAML reads the file (where it refuses it,
    compose does too and says so: what the head start pulled was named in it outright).
    The sure images: only where no service may be built, each one a service names
    outright with nothing that could keep compose from pulling it."""
    got = pp.literal_services(data)
    sure = pp.sure_images(data)
    assert set(sure) <= set(got.values())
    want = yaml_services(data)
    if want is None:
        return {}
    for service, image in got.items():
        assert want.get(service) == image, (
            f"{service}: we read {image!r}, YAML reads {want and want.get(service)!r}:\n"
            f"{data.decode()}")
    if sure:
        keys = yaml_keys(data)
        # (An empty service is one compose refuses, as it has neither image nor build.)
        assert all(k == "" or (isinstance(k, list) and not ELSEWHERE & set(k))
                   for k in keys.values()), (
            f"sure of {sure}, but a service is not read or takes keys from elsewhere:\n"
            f"{data.decode()}")
        built = [want.get(s) for s, k in keys.items()
                 if isinstance(k, list) and "build" in k and "image" in k]
        assert all(isinstance(b, str) and "$" not in b for b in built), (
            f"sure of {sure}, but an image built is not plain: {built}\n{data.decode()}")
        for image in sure:
            assert image not in built, f"{image} is built:\n{data.decode()}"
            assert any(want.get(s) == image and not NOT_SURE & set(k)  # type: ignore[arg-type]
                       for s, k in keys.items()), f"{image}:\n{data.decode()}"
    return got


@pytest.mark.skipif(not REAL.is_dir(), reason=f"no compose-real data at {REAL}")
def test_the_real_compose_files() -> None:
    files = sorted(REAL.rglob("*.y*ml"))
    read = {f: check(f.read_bytes()) for f in files}
    # The simple ones are read whole: every service's image, as YAML has it.
    simple = REAL / "ac-elasticsearch-logstash-kibana" / "compose.yaml"
    assert simple in read and len(read[simple]) == 3
    assert sum(len(v) for v in read.values()) >= 25


IMAGES = ["nginx", "nginx:1.25", "127.0.0.1:5000/app:1.0", "ghcr.io/o/r@sha256:" + "a" * 64,
          "3scale/apicast", "library/redis:7-alpine", "busybox:latest"]
TRICKY_VALUES = ["yes", "No", "on", "null", "~", "1.0", "8080", "0x1f", "1e3", "2024-01-01",
                 "123abc", ".inf", "1:20", "true", "Nginx", "nginx:", "&a nginx", "*a",
                 "!!str nginx", "nginx # a comment", "nginx#x", "${IMG}", "$$x", "'ng''inx'",
                 '"ng\\x69nx"', "'nginx'", '"nginx"', "|\n      nginx", ">-\n      nginx",
                 "\n      nginx", "nginx\n      :latest", "nginx\n\n      more", "[nginx]",
                 "{a: b}", "nginx ]", "nginx,", "- nginx", "nginx: x"]


def value(rng: random.Random) -> str:
    if rng.random() < 0.7:
        image = rng.choice(IMAGES)
        return rng.choice([image, f'"{image}"', f"'{image}'", f"{image}  # pinned"])
    return rng.choice(TRICKY_VALUES)


def other_key(rng: random.Random, ind: str, sub: str) -> list[str]:
    fake = rng.choice(IMAGES)
    benign = [
        [f"{ind}ports:", f"{ind}{sub}- \"80:80\"", f"{ind}{sub}- 443:443"],
        [f"{ind}ports: [\"80:80\", '443:443']"],
        [f"{ind}command: |", f"{ind}{sub}image: {fake}", f"{ind}{sub}echo ]"],  # block scalar
        [f"{ind}command: >-", f"{ind}{sub}  image: {fake}"],
        [f"{ind}build:", f"{ind}{sub}context: .", f"{ind}{sub}image: {fake}"],  # not its image
        [f"{ind}labels:", f"{ind}{sub}com.example/x: \"a [b\""],
        [f"{ind}# image: {fake}"],
        [f"{ind}healthcheck:", f"{ind}{sub}test: [\"CMD\", \"true\"]"],
        [f"{ind}environment:", f"{ind}{sub}- A=1", f"{ind}{sub}- image=x"],
        [f"{ind}restart: unless-stopped"], [""],
    ]
    hostile = [
        [f"{ind}environment: {{A: 1,", f"{ind}image: {fake} }}"],           # flow going on
        [f"{ind}environment: [", f"{ind}{sub}image: {fake} ]"],
        [f"{ind}command: \"sh -c", f"{ind}image: {fake}\""],               # quoted going on
        [f"{ind}command: 'it''s", f"{ind}image: {fake}'"],
        [f"{ind}profiles: [debug]"], [f"{ind}pull_policy: always"], [f"{ind}extends: base"],
        [f"{ind}<<: *common"], [f"{ind}provider:", f"{ind}{sub}type: x"],
        [f"{ind}entrypoint: echo it's [fine"],
        [f"{ind}image : {fake}"], [f"{ind}\"image\": {fake}"], [f"{ind}image:{fake}"],
        [f"{ind[:-1]}x: 1"], [f"{ind} y: 2"],
    ]
    return rng.choice(benign if rng.random() < 0.75 else hostile)


def compose_text(rng: random.Random) -> str:
    s_ind = " " * rng.choice([1, 2, 4])
    k_ind = s_ind + " " * rng.choice([1, 2, 3, 4])
    sub = " " * rng.choice([1, 2])
    lines = []
    if rng.random() < 0.3:
        lines += ["x-common: &common", "  restart: always", f"  image: {rng.choice(IMAGES)}"]
    if rng.random() < 0.1:
        lines.append(rng.choice(["version: '3.8'", "name: demo", "---", "include:",
                                 "services: {}", "services: # all of them"]))
    lines.append("services:" + (" # ours" if rng.random() < 0.1 else ""))
    for n in range(rng.randint(1, 5)):
        name = rng.choice([f"svc{n}"] * 6 + ["svc0", f"web-{n}", f"\"q{n}\""])
        lines.append(f"{s_ind}{name}:" + ("" if rng.random() < 0.8 else rng.choice(
            [" &anchor", " *common", " {image: x}", " # note"])))
        keys: list[list[str]] = [other_key(rng, k_ind, sub) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.85:
            keys.insert(rng.randint(0, len(keys)), [f"{k_ind}image: {value(rng)}"])
        if rng.random() < 0.05:
            keys.append([f"{k_ind}image: {value(rng)}"])  # twice
        for k in keys:
            lines += k
        if rng.random() < 0.1:
            lines.append(rng.choice(["", f"{s_ind}  # comment", "# at the margin"]))
    if rng.random() < 0.2:
        lines += ["volumes:", "  data: {}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(8))
def test_generated_compose_files_against_yaml(seed: int) -> None:
    rng = random.Random(seed)
    read = sure = 0
    for _ in range(600):
        data = compose_text(rng).encode()
        read += bool(check(data))
        sure += bool(pp.sure_images(data))
    assert read > 50  # the generator also makes files the reader can read
    assert sure > 20  # ... and files where a failed pull decides the run


def test_what_it_reads_and_what_it_leaves() -> None:
    assert pp.literal_services(b"services:\n  web:\n    image: nginx:1.25  # pin\n"
                               b"    ports: [\"80:80\"]\n  db:\n    image: 'postgres:16'\n"
                               ) == {"web": "nginx:1.25", "db": "postgres:16"}
    # A profile, a pull policy, extends, a merge key: that service is left out.
    assert pp.literal_services(b"services:\n  a:\n    image: nginx\n    profiles: [p]\n"
                               b"  b:\n    image: redis\n") == {"b": "redis"}
    # Interpolated, tagged, anchored, number- or boolean-like: not taken.
    for v in ("${IMG}", "!!str x", "&a x", "1.0", "yes", "null"):
        assert pp.literal_services(f"services:\n  a:\n    image: {v}\n".encode()) == {}
    # A layout it is not sure of: nothing at all from the file.
    for text in ("services:\n\ta:\n\t\timage: x\n", "include:\n  - o.yml\nservices:\n  a:\n"
                 "    image: x\n", "services:\n  a:\n    image: x\n    environment: {A: 1,\n"
                 "    B: 2}\n"):
        assert pp.literal_services(text.encode()) == {}
    assert pp.literal_images(b"services:\n  a:\n    image: x\n  b:\n    image: x\n") == ["x"]


def test_sure_images() -> None:
    """A failed pull decides the run only where no service may be built and every
    service is read; a profile or pull policy takes out that service's image alone."""
    plain = b"services:\n  web:\n    image: nginx\n  db:\n    image: redis\n"
    assert pp.sure_images(plain) == ["nginx", "redis"]
    assert pp.sure_images(plain + b"  dbg:\n    image: x\n    profiles: [d]\n"
                          ) == ["nginx", "redis"]
    # A service that builds: its image is not sure; one that names no image builds one
    # compose names, never one pulled.
    assert pp.sure_images(plain + b"  app:\n    build: .\n") == ["nginx", "redis"]
    assert pp.sure_images(plain + b"  app:\n    image: redis\n    build:\n"
                          b"      context: .\n") == ["nginx"]
    assert pp.sure_images(plain + b"  app:\n    build: .\n    image: redis\n"
                          b"    profiles: [p]\n") == ["nginx"]
    for other in (b"  app:\n    build: .\n    image: ${X}\n",
                  b"  app:\n    build: .\n    image:\n", b"  app:\n    build: .\n"
                  b"    image: red\n      is\n", b"  app:\n    extends:\n      file: b.yml\n"
                  b"      service: x\n", b"  app:\n    <<: *base\n", b"  app: *base\n",
                  b"  app: {image: a}\n"):
        assert pp.literal_images(plain + other)[:2] == ["nginx", "redis"]
        assert pp.sure_images(plain + other) == [], other
    assert pp.sure_images(b"services:\n  a:\n    image: ${X}\n") == []
    assert pp.sure_images(b"name: x\n") == []
