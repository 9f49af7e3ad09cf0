"""docker, skopeo, crane, compose and registry argv shapes (nothing runs)."""

from __future__ import annotations

from pathlib import Path

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
    assert argv(docker.save_cmd("a:1", Path("/t/a.tar"))) == ["docker", "save", "-o",
                                                              "/t/a.tar", "a:1"]
    assert argv(docker.tag_cmd("a", "b")) == ["docker", "tag", "a", "b"]
    assert argv(docker.push_cmd("r/a:1")) == ["docker", "push", "r/a:1"]
    assert argv(docker.pull_cmd("r/a:1")) == ["docker", "pull", "-q", "r/a:1"]
    assert argv(docker.rm_cmd("a", "b")) == ["docker", "rm", "-f", "-v", "a", "b"]
    assert argv(docker.network_create_cmd("n")) == ["docker", "network", "create", "n"]
    assert argv(docker.network_rm_cmd("n")) == ["docker", "network", "rm", "n"]
    assert argv(docker.inspect_image_cmd("a:1")) == ["docker", "image", "inspect", "--format",
                                                     "{{json .}}", "a:1"]
    assert argv(docker.ps_cmd(labels={"bot-bottle": "1", "x": None})) == [
        "docker", "ps", "-a", "--no-trunc", "--filter", "label=bot-bottle=1", "--filter",
        "label=x", "--format", "{{json .}}"]


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
    assert argv(compose.config_cmd(v2=True, files=[Path("a.yml"), Path("b.yml")],
                                   project_dir=Path("/app"))) == [
        "docker", "compose", "-f", "a.yml", "-f", "b.yml", "--project-directory", "/app",
        "config", "--format", "json"]
    assert argv(compose.config_cmd(v2=False, profiles=["debug"])) == [
        "docker-compose", "--profile", "debug", "config"]


def test_registry_serve() -> None:
    assert argv(registry.serve_cmd(Path("/t/config.yml")))[1:] == ["serve", "/t/config.yml"]
