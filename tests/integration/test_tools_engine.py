"""docker, skopeo and the registry for real: build, save, push, pull back, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottle.tools import docker, registry, skopeo
from bottle.tools.docker import DockerError
from bottle.tools.registry import ephemeral_registry
from tests.conftest import busybox_context


@pytest.fixture
def busybox_image(engine: str, tmp_path: Path) -> Iterator[str]:
    ctx = busybox_context(tmp_path / "bb", 'LABEL test="bot-bottle"\n')
    image = docker.build_image(ctx, "bot-bottle-test/busybox:it", iidfile=tmp_path / "iid")
    yield image
    subprocess.run(["docker", "rmi", "--force", image], capture_output=True, check=False)


def test_build_inspect_save(busybox_image: str, tmp_path: Path) -> None:
    assert busybox_image.startswith("sha256:")
    info = docker.inspect_image("bot-bottle-test/busybox:it")
    assert info is not None and info["Id"] == busybox_image
    assert info["Config"]["Labels"] == {"test": "bot-bottle"}
    api = docker.engine_image("bot-bottle-test/busybox:it")
    assert api is not None and api["Id"] == busybox_image
    assert "bot-bottle-test/busybox:it" in api["RepoTags"]
    assert docker.engine_has_image(busybox_image)
    assert not docker.engine_has_image("sha256:" + "0" * 64)
    out = tmp_path / "img.tar"
    docker.save("bot-bottle-test/busybox:it", out)
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert busybox_image[7:] in manifest[0]["Config"]


def test_registry_push_with_skopeo_pull_with_docker(busybox_image: str, tmp_path: Path) -> None:
    tar = tmp_path / "img.tar"
    docker.save("bot-bottle-test/busybox:it", tar)
    with ephemeral_registry(tmp=tmp_path) as reg:
        assert reg.network is None and reg.push_endpoint.startswith("127.0.0.1:")
        ref = f"{reg.push_endpoint}/bot-bottle:it"
        skopeo.copy_archive(tar, ref)
        docker.pull(ref)
        pulled = docker.engine_image(ref)
        assert pulled is not None and pulled["Id"] == busybox_image
        port = int(reg.pull_endpoint.rsplit(":", 1)[1])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/_catalog", timeout=5) as r:
            assert json.load(r) == {"repositories": ["bot-bottle"]}
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)
    # Torn down: nothing answers on that port any more.
    assert not registry._answers(port)


def test_registry_torn_down_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ephemeral_registry(tmp=tmp_path) as reg:
        port = int(reg.push_endpoint.rsplit(":", 1)[1])
        raise RuntimeError("push failed")
    assert not registry._answers(port)


def test_registry_dies_with_a_sigkilled_owner(tmp_path: Path) -> None:
    code = ("import sys, time\nfrom pathlib import Path\n"
            "from bottle.tools.registry import ephemeral_registry\n"
            f"with ephemeral_registry(tmp=Path({str(tmp_path)!r})) as r:\n"
            "    print(r.push_endpoint, flush=True)\n    time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    endpoint = p.stdout.readline().strip()
    port = int(endpoint.rsplit(":", 1)[1])
    assert registry._answers(port)
    p.kill()
    p.wait()
    import time

    deadline = time.monotonic() + 10
    while registry._answers(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not registry._answers(port)


def test_missing_dockerfile_is_a_clean_error(engine: str, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    with pytest.raises(DockerError) as err:
        docker.build_image(tmp_path / "ctx", "x:1", iidfile=tmp_path / "iid")
    msg = str(err.value)
    assert "\n" not in msg and "docker build" in msg and "Dockerfile" in msg


def test_pull_of_a_missing_tag_is_a_clean_error(engine: str, tmp_path: Path) -> None:
    with ephemeral_registry(tmp=tmp_path) as reg, pytest.raises(DockerError) as err:
        docker.pull(f"{reg.pull_endpoint}/bot-bottle:no-such-tag")
    msg = str(err.value)
    assert "\n" not in msg and "docker pull" in msg
    assert "not found" in msg or "manifest unknown" in msg


def test_create_over_the_api_is_what_the_cli_creates(busybox_image: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The launch creates its container over the engine's API (one process fewer); it
    must be the container `docker create` makes from the same options."""
    from bottle.tools.docker import Mount, RunSpec

    (tmp_path / "ws,x=y").mkdir()
    spec = RunSpec(labels={"bot-bottle-test": "1", "k": "v w"}, env_names=["A", "B"],
                   network="none", user="1000:1000", workdir="/workspace",
                   mounts=[Mount(tmp_path / "ws,x=y", "/workspace")], remove=True, init=True,
                   cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=77,
                   cpus="1.5", memory="96m", interactive=True, tty=True)
    env = {"A": "a value, with = and 'quotes'", "B": "sk-secret"}
    names = ["bb-test-create-cli", "bb-test-create-api"]
    monkeypatch.setenv("A", env["A"])
    monkeypatch.setenv("B", env["B"])
    try:
        subprocess.run(docker.create_cmd(busybox_image, ["sh", "-c", "echo hi"],
                                         RunSpec(**{**vars(spec), "name": names[0]})).argv,
                       check=True, capture_output=True)
        docker.create(busybox_image, ["sh", "-c", "echo hi"],
                      RunSpec(**{**vars(spec), "name": names[1]}), env=env)
        seen = []
        for name in names:
            info = json.loads(subprocess.run(["docker", "inspect", name], check=True,
                                             capture_output=True, text=True).stdout)[0]
            c, h = info["Config"], info["HostConfig"]
            seen.append({
                "config": {k: c.get(k) for k in ("Cmd", "User", "WorkingDir", "Labels", "Tty",
                                                  "OpenStdin", "StdinOnce", "AttachStdin",
                                                  "Entrypoint", "Image")},
                "env": sorted(e for e in c["Env"] if e.startswith(("A=", "B="))),
                "host": {k: h.get(k) for k in ("AutoRemove", "Init", "NetworkMode", "CapDrop",
                                                "SecurityOpt", "PidsLimit", "NanoCpus",
                                                "Memory", "ReadonlyRootfs")},
                "mounts": [(m["Type"], m["Source"], m["Target"]) for m in h.get("Mounts") or []],
            })
        assert seen[0] == seen[1]
        assert seen[1]["mounts"] == [("bind", str(tmp_path / "ws,x=y"), "/workspace")]
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


def test_create_errors_are_one_line_without_secrets(busybox_image: str) -> None:
    from bottle.tools.docker import RunSpec

    spec = RunSpec(name="bb-test-twice", env_names=["S"], network="none")
    try:
        docker.create(busybox_image, ["true"], spec, env={"S": "sk-never-shown"})
        with pytest.raises(DockerError) as err:  # the name is taken
            docker.create(busybox_image, ["true"], spec, env={"S": "sk-never-shown"})
    finally:
        subprocess.run(["docker", "rm", "-f", "bb-test-twice"], capture_output=True)
    assert "already in use" in str(err.value)
    msg = str(err.value) + err.value.detail()
    assert "\n" not in str(err.value) and "sk-never-shown" not in msg


@pytest.mark.parametrize("remove", [True, False])
def test_start_attached_over_the_api_is_docker_start_attach(
        busybox_image: str, tmp_path: Path, remove: bool) -> None:
    """The same stdout, stderr and exit code as `docker start --attach` (output bigger than
    one frame, split across streams), and a self-removing container gone at the end."""
    from bottle.tools.docker import RunSpec

    script = ("i=0; while [ $i -lt 3000 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); "
              "done; printf 'no newline'; exit 7")
    names = [f"bb-test-attach-{remove}-cli", f"bb-test-attach-{remove}-api"]
    got = []
    try:
        for name in names:
            docker.create(busybox_image, ["sh", "-c", script],
                          RunSpec(name=name, network="none", remove=remove), env={})
        out, err = tmp_path / "out", tmp_path / "err"
        with out.open("wb") as o, err.open("wb") as e:
            cli = subprocess.run(["docker", "start", "--attach", names[0]], stdout=o, stderr=e)
        got.append((cli.returncode, out.read_bytes(), err.read_bytes()))
        code = subprocess.run(
            [sys.executable, "-c", "import sys; from bottle.tools import docker; "
             f"sys.exit(docker.start_attached({names[1]!r}, removes_itself={remove}))"],
            capture_output=True, cwd=Path(__file__).parents[2])
        got.append((code.returncode, code.stdout, code.stderr))
        assert got[0] == got[1]
        assert got[1][0] == 7 and got[1][1].endswith(b"out-2999\nno newline")
        exists = subprocess.run(["docker", "inspect", names[1]], capture_output=True)
        assert (exists.returncode != 0) is remove
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


def test_start_attached_that_cannot_start_is_one_line(busybox_image: str) -> None:
    from bottle.tools.docker import RunSpec

    try:
        docker.create(busybox_image, ["/no/such/program"],
                      RunSpec(name="bb-test-attach-fails", network="none"), env={})
        with pytest.raises(DockerError) as err:
            docker.start_attached("bb-test-attach-fails", removes_itself=False)
    finally:
        subprocess.run(["docker", "rm", "-f", "bb-test-attach-fails"], capture_output=True)
    assert "\n" not in str(err.value) and "no/such/program" in str(err.value)


def _attached(busybox_image: str, name: str, script: str, stdout: Any,
              **popen: Any) -> subprocess.Popen[bytes]:
    from bottle.tools.docker import RunSpec

    docker.create(busybox_image, ["sh", "-c", script],
                  RunSpec(name=name, network="none", remove=True), env={})
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from bottle.tools import docker\n"
         "try:\n    sys.exit(docker.start_attached(sys.argv[1], removes_itself=True))\n"
         "except docker.DockerError as err:\n    print(err, file=sys.stderr); sys.exit(9)",
         name], stdout=stdout, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2],
        **popen)


def test_start_attached_ends_when_its_reader_goes_away(busybox_image: str) -> None:
    """An endless agent piped into `head -1`: the attach ends (as the docker CLI's does)
    instead of leaving the engine to log its output forever."""
    r, w = os.pipe()
    try:
        p = _attached(busybox_image, "bb-test-attach-yes", "yes", w)
        os.close(w)
        assert os.read(r, 2) == b"y\n"
        os.close(r)
        p.wait(timeout=30)
        assert p.returncode == 9
        assert p.stderr is not None and b"broken pipe" in p.stderr.read()
    finally:
        subprocess.run(["docker", "rm", "-f", "bb-test-attach-yes"], capture_output=True)


def test_start_attached_waits_on_a_non_blocking_stdout(busybox_image: str) -> None:
    import fcntl
    import time

    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        p = _attached(busybox_image, "bb-test-attach-nb", "head -c 1000000 /dev/zero", w)
        os.close(w)
        time.sleep(2)  # the pipe fills (64 KiB) long before the reader starts
        got = 0
        while chunk := os.read(r, 65536):
            got += len(chunk)
        os.close(r)
        assert p.wait(timeout=30) == 0 and got == 1_000_000
    finally:
        subprocess.run(["docker", "rm", "-f", "bb-test-attach-nb"], capture_output=True)


def test_start_attached_says_when_its_output_cannot_be_written(busybox_image: str) -> None:
    try:
        with open("/dev/full", "wb") as full:
            p = _attached(busybox_image, "bb-test-attach-full", "echo hello", full)
            p.wait(timeout=30)
        assert p.stderr is not None
        err = p.stderr.read().decode()
        assert p.returncode == 9 and "No space left on device" in err
        assert "cannot reach" not in err
    finally:
        subprocess.run(["docker", "rm", "-f", "bb-test-attach-full"], capture_output=True)
