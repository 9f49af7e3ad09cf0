"""docker, skopeo, crane, compose and registry argv shapes (nothing runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bottle.errors import BottleError
from bottle.tools import compose, crane, docker, registry, skopeo
from bottle.tools.docker import Mount


def argv(cmd: object) -> list[str]:
    return [str(a) for a in cmd.formulate()]  # type: ignore[attr-defined]


def test_build() -> None:
    assert argv(docker.build_cmd(Path("/ctx"), tag="a:1", dockerfile=Path("/ctx/D"),
                                 build_args={"V": "2", "W": "x y"}, target="final",
                                 iidfile=Path("/t/iid"))) == [
        "docker", "build", "-t", "a:1", "-f", "/ctx/D", "--build-arg", "V=2",
        "--build-arg", "W=x y", "--target", "final", "--iidfile", "/t/iid", "/ctx"]
    assert argv(docker.build_cmd(Path("/ctx"))) == ["docker", "build", "/ctx"]


def test_run_detached_with_env_file_not_values() -> None:
    a = argv(docker.run_cmd(
        "sha256:abc", ["-c", "sleep"], name="bb-1", detach=True, labels={"bot-bottle": "1"},
        env_file=Path("/t/env"), network="none", user="node",
        mounts=[Mount(Path("/ws"), "/workspace")], workdir="/workspace", entrypoint="/bin/sh"))
    assert a == ["docker", "run", "-d", "--name", "bb-1", "--label", "bot-bottle=1",
                 "--env-file", "/t/env", "--network", "none", "--user", "node",
                 "--mount", "type=bind,source=/ws,target=/workspace", "--workdir", "/workspace",
                 "--entrypoint", "/bin/sh", "sha256:abc", "-c", "sleep"]


def test_exec_env_by_name_only() -> None:
    assert argv(docker.exec_cmd("c", ["claude", "-p"], user="node", env_names=["API_KEY"],
                                tty=True, interactive=True, workdir="/workspace")) == [
        "docker", "exec", "-i", "-t", "-u", "node", "-e", "API_KEY", "-w", "/workspace",
        "c", "claude", "-p"]


def test_small_commands() -> None:
    assert argv(docker.save_cmd("a:1", Path("/t/a.tar"))) == [
        "docker", "save", "--output=/t/a.tar", "--", "a:1"]
    assert argv(docker.tag_cmd("a", "b")) == ["docker", "tag", "--", "a", "b"]
    assert argv(docker.push_cmd("r/a:1")) == ["docker", "push", "r/a:1"]
    assert argv(docker.pull_cmd("r/a:1")) == ["docker", "pull", "-q", "--", "r/a:1"]
    assert argv(docker.pull_cmd("r/a:1", quiet=False)) == ["docker", "pull", "--", "r/a:1"]
    assert argv(docker.rm_cmd("a", "b")) == ["docker", "rm", "-f", "-v", "a", "b"]
    assert argv(docker.network_create_cmd("n")) == ["docker", "network", "create", "n"]
    assert argv(docker.network_rm_cmd("n")) == ["docker", "network", "rm", "n"]
    assert argv(docker.inspect_image_cmd("a:1")) == ["docker", "image", "inspect", "--format",
                                                     "{{json .}}", "a:1"]
    assert argv(docker.ps_cmd(labels={"bot-bottle": "1", "x": None})) == [
        "docker", "ps", "-a", "--no-trunc", "--filter", "label=bot-bottle=1", "--filter",
        "label=x", "--format", "{{json .}}"]


IMAGE_ID = "sha256:" + "ab" * 32


@pytest.mark.parametrize("bad", ["--help", "-q", "--output=/etc/passwd", "", "a b", "A:1",
                                 "apache/airflow:|version|", "x@sha256:0"])
def test_image_values_never_become_flags(bad: str) -> None:
    """A bad reference is refused before any argv exists: one line naming it."""
    for build in (lambda: docker.pull_cmd(bad), lambda: docker.save_cmd(bad, Path("/t")),
                  lambda: docker.tag_cmd(bad, "a:1"), lambda: docker.tag_cmd(IMAGE_ID, bad)):
        with pytest.raises(BottleError) as err:
            build()
        assert str(err.value).startswith(f"bad image reference {bad!r}: ")
        assert "\n" not in str(err.value)


def test_ids_and_digests_where_docker_takes_them() -> None:
    assert argv(docker.save_cmd(IMAGE_ID, Path("-o.tar")))[2:] == ["--output=-o.tar", "--",
                                                                  IMAGE_ID]
    assert argv(docker.tag_cmd(IMAGE_ID, "r/a:1"))[2:] == ["--", IMAGE_ID, "r/a:1"]
    assert argv(docker.pull_cmd("r/a@" + IMAGE_ID))[-1] == "r/a@" + IMAGE_ID
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
        r = subprocess.run(argv(cmd), env=env, capture_output=True, text=True, timeout=30)
        assert "Cannot connect to the Docker daemon" in r.stderr, (argv(cmd), r.stderr)


def test_skopeo_tls_off_only_for_loopback() -> None:
    a = argv(skopeo.copy_archive_cmd(Path("/t/i.tar"), "127.0.0.1:5000/bb:1"))
    assert a == ["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                 "docker-archive:/t/i.tar", "docker://127.0.0.1:5000/bb:1"]
    assert "--dest-tls-verify=false" not in argv(
        skopeo.copy_archive_cmd(Path("/t/i.tar"), "registry.example.com/bb:1"))
    assert "--tls-verify=false" in argv(skopeo.inspect_cmd("[::1]:5000/bb:1"))
    assert "--tls-verify=false" in argv(skopeo.inspect_cmd("localhost:5000/bb:1"))
    assert "--tls-verify=false" not in argv(skopeo.inspect_cmd("10.0.0.1:5000/bb:1"))


def test_crane_insecure_only_for_loopback() -> None:
    assert argv(crane.push_cmd(Path("/t.tar"), "127.0.0.1:1/bb:1")) == [
        "crane", "push", "--insecure", "/t.tar", "127.0.0.1:1/bb:1"]
    assert "--insecure" not in argv(crane.push_cmd(Path("/t.tar"), "ghcr.io/x/bb:1"))


def test_compose_config() -> None:
    plugin = compose.Compose(compose.PLUGIN, ("compose",), Path("/p/docker-compose"), v2=True)
    v2 = compose.Compose(compose.STANDALONE, (), Path("/b/docker-compose"), v2=True)
    v1 = compose.Compose(compose.STANDALONE, (), Path("/b/docker-compose"), v2=False)
    assert argv(compose.config_cmd(plugin, files=[Path("a.yml"), Path("-b.yml")],
                                   project_dir=Path("/app"))) == [
        "docker", "compose", "--file=a.yml", "--file=-b.yml", "--project-directory=/app",
        "config", "--format", "json"]
    assert argv(compose.config_cmd(v2, profiles=["--help"])) == [
        "docker-compose", "--profile=--help", "config", "--format", "json"]
    assert argv(compose.config_cmd(v1, profiles=["debug"])) == [
        "docker-compose", "--profile=debug", "config"]


def test_registry_serve() -> None:
    assert argv(registry.serve_cmd(Path("/t/config.yml")))[1:] == ["serve", "/t/config.yml"]
