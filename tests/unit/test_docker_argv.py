"""docker, skopeo, crane, compose and registry argv shapes (nothing runs).

No value can become a flag: option values are glued to their flag (`--name=value`) and
positional values come after `--`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bottle.errors import BottleError
from bottle.tools import compose, crane, docker, registry, skopeo
from bottle.tools.docker import Mount, RunSpec


def test_build() -> None:
    assert docker.build_cmd(Path("/ctx"), tag="a:1", dockerfile=Path("/ctx/D"),
                            build_args={"V": "2", "W": "x y"}, target="final",
                            iidfile=Path("/t/iid"), labels={"l": "1"}).argv == [
        "docker", "build", "--force-rm", "--tag=a:1", "--file=/ctx/D", "--build-arg=V=2",
        "--build-arg=W=x y", "--target=final", "--iidfile=/t/iid", "--label=l=1", "--", "/ctx"]
    assert docker.build_cmd(Path("/ctx")).argv == ["docker", "build", "--force-rm", "--", "/ctx"]
    assert docker.build_cmd(Path("-weird")).argv[-2:] == ["--", "-weird"]


def test_run_with_env_names_not_values() -> None:
    spec = RunSpec(name="bb-1", labels={"bot-bottle": "1"}, env_names=["API_KEY"],
                   network="none", user="node", mounts=[Mount(Path("/ws"), "/workspace")],
                   workdir="/workspace", remove=True, init=True, cap_drop=["ALL"],
                   security_opt=["no-new-privileges"], pids_limit=512, cpus="2", memory="4g")
    assert docker.run_cmd("sha256:abc", ["claude", "-p"], spec).argv == [
        "docker", "run", "--rm", "--init", "--name=bb-1", "--label=bot-bottle=1",
        "--env=API_KEY", "--network=none", "--user=node",
        '--mount="type=bind","source=/ws","target=/workspace"', "--workdir=/workspace",
        "--cap-drop=ALL", "--security-opt=no-new-privileges", "--pids-limit=512",
        "--cpus=2", "--memory=4g", "--", "sha256:abc", "claude", "-p"]


def test_exec_env_by_name_only() -> None:
    assert docker.exec_cmd("c", ["claude", "-p"], user="node", env_names=["API_KEY"],
                           tty=True, interactive=True, workdir="/workspace").argv == [
        "docker", "exec", "--interactive", "--tty", "--user=node", "--env=API_KEY",
        "--workdir=/workspace", "--", "c", "claude", "-p"]


def test_small_commands() -> None:
    assert docker.save_cmd("a:1", Path("/t/a.tar")).argv == [
        "docker", "save", "--output=/t/a.tar", "--", "a:1"]
    assert docker.tag_cmd("a", "b").argv == ["docker", "tag", "--", "a", "b"]
    assert docker.pull_cmd("r/a:1").argv == ["docker", "pull", "--quiet", "--", "r/a:1"]
    assert docker.rm_cmd("a", "b").argv == ["docker", "rm", "--force", "--volumes", "--",
                                            "a", "b"]
    assert docker.network_create_cmd("n", internal=True, labels={"k": "v"},
                                     options={"o": "1"}).argv == [
        "docker", "network", "create", "--internal", "--label=k=v", "--opt=o=1", "--", "n"]
    assert docker.network_rm_cmd("n").argv == ["docker", "network", "rm", "--", "n"]
    assert docker.inspect_image_cmd("a:1").argv == [
        "docker", "image", "inspect", "--format={{json .}}", "--", "a:1"]
    assert docker.ps_cmd(labels={"bot-bottle": "1", "x": None}).argv == [
        "docker", "ps", "--all", "--no-trunc", "--filter=label=bot-bottle=1",
        "--filter=label=x", "--format={{json .}}"]


@pytest.mark.parametrize("value", ["--help", "-q", "", "a\nb", "x\0y", "\t"])
def test_values_never_become_flags(value: str) -> None:
    for build in (lambda v: docker.pull_cmd(v), lambda v: docker.save_cmd(v, Path("/t")),
                  lambda v: docker.tag_cmd(v, "b"), lambda v: docker.tag_cmd("a", v),
                  lambda v: docker.rm_cmd(v), lambda v: docker.network_rm_cmd(v),
                  lambda v: docker.run_cmd(v, [], RunSpec()),
                  lambda v: docker.exec_cmd(v, ["true"])):
        with pytest.raises(BottleError, match=r"invalid|bad image reference"):
            build(value)


IMAGE_ID = "sha256:" + "ab" * 32


@pytest.mark.parametrize("bad", ["--help", "-q", "--output=/etc/passwd", "", "a b", "A:1",
                                 "apache/airflow:|version|", "x@sha256:0"])
def test_bad_image_values_are_named_with_the_reason(bad: str) -> None:
    """Image values are checked by the reference grammar before any argv exists."""
    for build in (lambda: docker.pull_cmd(bad), lambda: docker.save_cmd(bad, Path("/t")),
                  lambda: docker.tag_cmd(bad, "a:1"), lambda: docker.tag_cmd(IMAGE_ID, bad)):
        with pytest.raises(BottleError) as err:
            build()
        assert str(err.value).startswith(f"bad image reference {bad!r}: ")
        assert "\n" not in str(err.value)


def test_ids_and_digests_where_docker_takes_them() -> None:
    assert docker.save_cmd(IMAGE_ID, Path("-o.tar")).argv[2:] == ["--output=-o.tar", "--",
                                                                 IMAGE_ID]
    assert docker.tag_cmd(IMAGE_ID, "r/a:1").argv[2:] == ["--", IMAGE_ID, "r/a:1"]
    assert docker.pull_cmd("r/a@" + IMAGE_ID).argv[-1] == "r/a@" + IMAGE_ID
    with pytest.raises(BottleError, match="cannot carry a digest"):
        docker.tag_cmd(IMAGE_ID, "r/a@" + IMAGE_ID)
    with pytest.raises(BottleError, match="64-hex image ID"):
        docker.pull_cmd("ab" * 32)


def test_docker_28_parses_these_argv(tmp_path: Path) -> None:
    """The real docker CLI takes each shape: it gets as far as connecting to an engine (a
    socket nobody listens on), so it read `--` and every value as we meant."""
    if not shutil.which("docker"):
        if os.environ.get("CI"):
            pytest.fail("docker CLI not on PATH")
        pytest.skip("docker CLI not on PATH")
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/nobody.sock",
           "DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": ""}
    for cmd in (docker.pull_cmd("r/a:1"), docker.save_cmd("r/a:1", tmp_path / "-x.tar"),
                docker.tag_cmd(IMAGE_ID, "r/a:1")):
        r = subprocess.run(cmd.argv, env=env, capture_output=True, text=True, timeout=30)
        assert "Cannot connect to the Docker daemon" in r.stderr, (cmd.argv, r.stderr)


@pytest.mark.parametrize("path", ["/w/proj,source=/etc", '/w/a"b', "/w/x=y,target=/z",
                                  "/w/new\nline", "/w/ sp ace"])
def test_a_mount_source_stays_one_field(path: str) -> None:
    """The --mount value is CSV (Go's encoding/csv): each field is quoted, quotes doubled."""
    import csv
    import io

    spec = Mount(Path(path), "/workspace").spec()
    fields = next(csv.reader(io.StringIO(spec)))
    assert fields == ["type=bind", f"source={path}", "target=/workspace"]


def test_a_mount_source_with_a_carriage_return_is_refused() -> None:
    with pytest.raises(BottleError, match="carriage return"):
        Mount(Path("/w/a\rb"), "/workspace").spec()


def test_a_mount_source_docker_cannot_name_is_shown_by_its_bytes() -> None:
    with pytest.raises(BottleError) as err:
        Mount(Path(os.fsdecode(b"/w/caf\xc3\xa9-\xff")), "/workspace").spec()
    assert str(err.value).startswith("cannot mount '/w/caf\u00e9-\\xff': the path is not UTF-8")


def test_skopeo_tls_off_only_for_loopback() -> None:
    a = skopeo.copy_archive_cmd(Path("/t/i.tar"), "127.0.0.1:5000/bb:1").argv
    assert a == ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--",
                 "docker-archive:/t/i.tar", "docker://127.0.0.1:5000/bb:1"]
    assert "--dest-tls-verify=false" not in skopeo.copy_archive_cmd(
        Path("/t/i.tar"), "registry.example.com/bb:1").argv
    assert skopeo.is_loopback("[::1]:5000/bb:1") and skopeo.is_loopback("localhost:5000/bb:1")
    assert not skopeo.is_loopback("10.0.0.1:5000/bb:1")


def test_crane_insecure_only_for_loopback() -> None:
    assert crane.push_cmd(Path("/t.tar"), "127.0.0.1:1/bb:1").argv == [
        "crane", "push", "--insecure", "--", "/t.tar", "127.0.0.1:1/bb:1"]
    assert "--insecure" not in crane.push_cmd(Path("/t.tar"), "ghcr.io/x/bb:1").argv


def test_compose_config() -> None:
    plugin = compose.Compose(compose.PLUGIN, ("compose",), Path("/p/docker-compose"), v2=True)
    v2 = compose.Compose(compose.STANDALONE, (), Path("/b/docker-compose"), v2=True)
    v1 = compose.Compose(compose.STANDALONE, (), Path("/b/docker-compose"), v2=False)
    assert compose.config_cmd(plugin, files=[Path("a.yml"), Path("-b.yml")],
                              project_dir=Path("/app")).argv == [
        "docker", "compose", "--file=a.yml", "--file=-b.yml", "--project-directory=/app",
        "config", "--format", "json"]
    assert compose.config_cmd(v2, profiles=["--help"]).argv == [
        "docker-compose", "--profile=--help", "config", "--format", "json"]
    assert compose.config_cmd(v1, profiles=["debug"]).argv == [
        "docker-compose", "--profile=debug", "config"]


def test_registry_serve() -> None:
    assert registry.serve_cmd(Path("/t/config.yml")).argv[1:] == ["serve", "/t/config.yml"]
