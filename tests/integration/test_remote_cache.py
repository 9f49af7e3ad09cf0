"""The shared cache, with two "machines" on this one: two Docker engines (own data roots
and sockets) and two cache roots, and one registry on loopback (Debian's docker-registry,
optionally behind htpasswd). Machine A builds and pushes; machine B finds what A made.

Counting is done by recording shims: `docker` (no build, no save on B) and `skopeo` (how
many pulls). Nothing leaves loopback.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bottle.tools.registry import free_port
from tests.conftest import FAKES
from tests.helpers import bottle, docker_calls, smolvm_calls

pytestmark = pytest.mark.slow


@dataclass
class Machine:
    host: str  # DOCKER_HOST
    cache: Path
    calls: Path  # the docker calls it made
    skopeo_calls: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"DOCKER_HOST": self.host, "BOTTLE_CACHE_DIR": str(self.cache),
                "DOCKER_CALLS": str(self.calls), "SKOPEO_CALLS": str(self.skopeo_calls),
                **extra}


@pytest.fixture(scope="module")
def second_engine() -> Iterator[str]:
    """Machine B's engine: a private dockerd beside the test engine."""
    from tests.engines import engine_for_tests

    with engine_for_tests("bb-engine-b.", "a second engine needs dockerd and root") as host:
        yield host


@dataclass
class Registry:
    endpoint: str
    root: Path  # its storage
    auth: tuple[str, str] | None

    def repo(self) -> str:
        return f"{self.endpoint}/team/agents"


def _serve_registry(tmp: Path, *, auth: tuple[str, str] | None) -> Iterator[Registry]:
    port = free_port()
    root = tmp / "registry"
    (root / "data").mkdir(parents=True)
    conf = (f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    if auth:
        import bcrypt

        hashed = bcrypt.hashpw(auth[1].encode(), bcrypt.gensalt()).decode()
        (root / "htpasswd").write_text(f"{auth[0]}:{hashed}\n")
        conf += f"auth:\n  htpasswd:\n    realm: test\n    path: {root / 'htpasswd'}\n"
    (root / "config.yml").write_text(conf)
    exe = shutil.which("docker-registry") or shutil.which("registry")
    assert exe, "docker-registry not installed"
    with (root / "log").open("wb") as log:
        proc = subprocess.Popen([exe, "serve", str(root / "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # 401: up, and asking for credentials
        except OSError:
            time.sleep(0.1)
    try:
        yield Registry(f"127.0.0.1:{port}", root, auth)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    yield from _serve_registry(tmp_path, auth=None)


@pytest.fixture
def machines(tmp_path: Path, engine: str, second_engine: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Machine, Machine]]:
    """Machines A and B: engines, cache roots, and recording docker/skopeo first on PATH."""
    bin_dir = tmp_path / "shims"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(FAKES / "recording-docker")
    skopeo = bin_dir / "skopeo"
    skopeo.write_text('#!/bin/sh\nprintf \'%s\\n\' "$*" >> "$SKOPEO_CALLS"\n'
                      f'exec {shutil.which("skopeo")} "$@"\n')
    skopeo.chmod(0o755)
    monkeypatch.setenv("REAL_DOCKER", shutil.which("docker") or "docker")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    a = Machine(engine, tmp_path / "cache-a", tmp_path / "calls-a", tmp_path / "skopeo-a")
    b = Machine(second_engine, tmp_path / "cache-b", tmp_path / "calls-b", tmp_path / "skopeo-b")
    for m in (a, b):
        m.calls.touch()
        m.skopeo_calls.touch()
    yield a, b
    from bottle.image import cache_label
    from cache.store import Store

    # What A built goes with the test; B's engine is private: all of it goes.
    env_a = {**os.environ, "DOCKER_HOST": a.host}
    (label,) = (f"{k}={v}" for k, v in cache_label(Store(a.cache)).items())
    ids = subprocess.run(["docker", "images", "-q", "--filter", f"label={label}"], env=env_a,
                         capture_output=True, text=True).stdout.split()
    subprocess.run(["docker", "rmi", "-f", *ids], env=env_a, capture_output=True)
    subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={label}"], env=env_a,
                   capture_output=True)
    env_b = {**os.environ, "DOCKER_HOST": b.host}
    subprocess.run(["docker", "system", "prune", "-af"], env=env_b, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Owned by uid 1000, as the example agent's node: no user-mapped image to build."""
    ws = tmp_path / "project"
    ws.mkdir()
    if os.geteuid() == 0:
        os.chown(ws, 1000, 1000)
    return ws


def configure(project: Path, remote: str, *, push: bool = False) -> None:
    (project / "bottle.toml").write_text(
        f'remote = "{remote}"\nremote_push = {"true" if push else "false"}\n')


def pulls(m: Machine) -> list[str]:
    return [c for c in m.skopeo_calls.read_text().splitlines()
            if "copy" in c and " docker-daemon:" in c and "docker://" in c.split(" -- ")[1]
            .split()[0]]


def test_b_launches_what_a_built_without_building(machines: tuple[Machine, Machine],
                                                  registry: Registry, project: Path) -> None:
    a, b = machines
    configure(project, registry.repo(), push=True)
    first = bottle("launch", "--headless", cwd=project, env=a.env())
    assert first.returncode == 0, first.stderr
    assert "build: built" in first.stderr and "pushed" in first.stderr
    configure(project, registry.repo())
    r = bottle("launch", "--headless", cwd=project, env=b.env())
    assert r.returncode == 0, r.stderr
    assert "build: remote hit" in r.stderr and f"(from {registry.repo()})" in r.stderr
    verbs = [c.split()[0] for c in docker_calls(b.calls)]
    assert "build" not in verbs and "save" not in verbs
    assert len(pulls(b)) == 1
    image_a = first.stderr.split("built ")[1].split()[0]
    assert f"(image {image_a})" in r.stderr  # the same image id runs on B
    # And the next launch on B is an ordinary local hit: no registry at all.
    b.skopeo_calls.write_text("")
    again = bottle("launch", "--headless", cwd=project, env=b.env())
    assert again.returncode == 0 and "build: cache hit" in again.stderr
    assert b.skopeo_calls.read_text() == ""


def test_registry_down_builds_locally_with_one_warning(machines: tuple[Machine, Machine],
                                                      project: Path) -> None:
    _, b = machines
    configure(project, f"127.0.0.1:{free_port()}/team/agents")
    r = bottle("launch", "--headless", cwd=project, env=b.env())
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "remote" in ln]
    assert len(warnings) == 1 and "building here" in warnings[0], r.stderr
    assert "build: built" in r.stderr


def test_a_tampered_blob_is_refused_and_built_locally(machines: tuple[Machine, Machine],
                                                      registry: Registry,
                                                      project: Path) -> None:
    a, b = machines
    configure(project, registry.repo(), push=True)
    assert bottle("build", cwd=project, env=a.env()).returncode == 0
    layers = [p for p in (registry.root / "data").rglob("data")
              if p.is_file() and p.stat().st_size > 100_000]
    assert layers, "the image's layer blob"
    for p in layers:  # same size, other bytes: only the digest can tell
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    configure(project, registry.repo())
    r = bottle("build", cwd=project, env=b.env())
    assert r.returncode == 0, r.stderr
    assert "remote" in r.stderr and "building here" in r.stderr
    assert "build: built" in r.stderr


def test_parallel_cold_launches_pull_once(machines: tuple[Machine, Machine],
                                          registry: Registry, project: Path) -> None:
    a, b = machines
    configure(project, registry.repo(), push=True)
    assert bottle("build", cwd=project, env=a.env()).returncode == 0
    configure(project, registry.repo())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: bottle("launch", "--headless", cwd=project,
                                              env=b.env()), range(4)))
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert len(pulls(b)) == 1
    assert sum("remote hit" in r.stderr for r in runs) == 1
    assert not [c for c in docker_calls(b.calls) if c.startswith("build")]


def test_credentials_come_from_the_auth_file_and_never_show(
        machines: tuple[Machine, Machine], tmp_path: Path, project: Path) -> None:
    a, b = machines
    secret = "s3cret-Pa55"
    gen = _serve_registry(tmp_path / "authreg", auth=("alice", secret))
    reg = next(gen)
    try:
        def authfile(password: str) -> Path:
            p = tmp_path / f"auth-{len(password)}.json"
            token = base64.b64encode(f"alice:{password}".encode()).decode()
            p.write_text(json.dumps({"auths": {reg.endpoint: {"auth": token}}}))
            return p

        configure(project, reg.repo(), push=True)
        good = bottle("build", cwd=project,
                      env=a.env(REGISTRY_AUTH_FILE=str(authfile(secret))))
        assert good.returncode == 0 and "pushed" in good.stderr, good.stderr
        configure(project, reg.repo())
        wrong = "wrong-Pa55word"
        bad = bottle("build", cwd=project, env=b.env(REGISTRY_AUTH_FILE=str(authfile(wrong))))
        assert bad.returncode == 0, bad.stderr  # a warning and a local build, not a failure
        lines = [ln for ln in bad.stderr.splitlines() if "remote" in ln]
        assert len(lines) == 1 and "not authorized" in lines[0], bad.stderr
        everything = (good.stdout + good.stderr + bad.stdout + bad.stderr
                      + a.skopeo_calls.read_text() + b.skopeo_calls.read_text())
        assert secret not in everything and wrong not in everything
    finally:
        gen.close()


def test_smolmachines_b_pulls_the_pack_with_no_docker(machines: tuple[Machine, Machine],
                                                      registry: Registry, project: Path,
                                                      fake_smolvm: Path) -> None:
    a, b = machines
    configure(project, registry.repo(), push=True)
    first = bottle("pack", cwd=project, env=a.env())
    assert first.returncode == 0 and "; pushed to" in first.stderr, first.stderr
    packs = len([c for c in smolvm_calls(fake_smolvm) if c[:2] == ["pack", "create"]])
    configure(project, registry.repo())
    r = bottle("pack", cwd=project, env=b.env())
    assert r.returncode == 0, r.stderr
    assert "pack: remote hit" in r.stderr
    assert docker_calls(b.calls) == []  # no build, no save, not even the image
    assert len([c for c in smolvm_calls(fake_smolvm) if c[:2] == ["pack", "create"]]) == packs
    artifact = Path(r.stdout.strip().splitlines()[-1])
    assert artifact.read_bytes() == Path(first.stdout.strip().splitlines()[-1]).read_bytes()
    manifest = json.loads(subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false",
         f"docker://{registry.repo()}:{_sm_tag(r.stderr)}"], capture_output=True, text=True,
        check=True).stdout)
    assert manifest["config"]["mediaType"] == "application/vnd.smolmachines.machine.config.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.smolmachines.smolmachine.v1"]


def _sm_tag(stderr: str) -> str:
    key = stderr.split("remote hit ")[1].split()[0]
    from bottle.remote import host_arch

    return f"sm-{key}-{host_arch()}-smolvm1.32.2"


def test_explicit_push_and_pull(machines: tuple[Machine, Machine], registry: Registry,
                                project: Path) -> None:
    """`cache_push` from a machine that does not push on its own; `cache_pull` warms
    another without launching."""
    a, b = machines
    configure(project, registry.repo())
    assert bottle("build", cwd=project, env=a.env()).returncode == 0
    pushed = bottle("cache_push", "--json", cwd=project, env=a.env())
    assert pushed.returncode == 0, pushed.stderr
    data = json.loads(pushed.stdout)
    assert data["remote"] == registry.repo() and data["image"].startswith("sha256:")
    pulled = bottle("cache_pull", "--json", cwd=project, env=b.env())
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["image"] == data["image"]
    assert "build: remote hit" in pulled.stderr
    b.calls.write_text("")
    again = bottle("launch", "--headless", cwd=project, env=b.env())
    assert again.returncode == 0 and "build: cache hit" in again.stderr
    (project / "bottle.toml").write_text("")
    nothing = bottle("cache_push", cwd=project, env=b.env())
    assert nothing.returncode != 0 and "no remote configured" in nothing.stderr
