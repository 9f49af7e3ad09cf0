"""egress_net's docker calls, in order, against a stand-in docker (no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bottle import egress_net
from bottle.egress import parse_policy
from bottle.tools import docker
from bottle.tools.docker import DockerError
from tests.helpers import fake_on_path

FAKE = """#!/bin/sh
# Logs argv as one JSON line; fails the verb named in $FAKE_DOCKER_FAIL.
python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$FAKE_DOCKER_LOG"
case "$1 $2" in
  "$FAKE_DOCKER_FAIL"*) echo "Error response from daemon: $FAKE_DOCKER_FAIL failed" >&2; exit 1;;
  "network ls") cat "$FAKE_DOCKER_NETWORKS" 2>/dev/null;;
  "container inspect") echo '{"Running": true, "Status": "running"}';;
  "logs "*) cat "$FAKE_DOCKER_STDOUT" 2>/dev/null; cat "$FAKE_DOCKER_STDERR" >&2 2>/dev/null;;
esac
exit 0
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake_on_path(tmp_path, monkeypatch, "docker", FAKE)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "none-fails")
    for name in ("NETWORKS", "STDOUT", "STDERR"):
        monkeypatch.setenv(f"FAKE_DOCKER_{name}", str(tmp_path / name.lower()))
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


NET = egress_net.plan("abc123", egress_network="up-net")
LABELS = {"bot-bottle": "1", "bot-bottle.launch": "abc123"}


def test_plan_and_agent_env() -> None:
    assert (NET.network, NET.proxy, NET.egress_network, NET.port) == (
        "bot-bottle-abc123-net", "bot-bottle-abc123-proxy", "up-net", 3128)
    assert egress_net.plan("x").egress_network == "bridge"
    env = NET.agent_env()
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://bot-bottle-abc123-proxy:3128"


def test_bottle_network_is_internal_without_host_address(fake_docker: Path) -> None:
    egress_net.create_bottle_network(NET, labels=LABELS)
    assert calls(fake_docker) == [[
        "network", "create", "--internal", "--label=bot-bottle=1",
        "--label=bot-bottle.launch=abc123", "--label=bot-bottle.role=network",
        "--opt=com.docker.network.bridge.inhibit_ipv4=true", "--", "bot-bottle-abc123-net"]]


def test_proxy_created_connected_then_started(fake_docker: Path) -> None:
    policy = parse_policy(["allowed.test"])
    egress_net.start_proxy(NET, "proxy:img", policy, labels=LABELS)
    create, connect, start = calls(fake_docker)
    assert create[:2] == ["create", "--name=bot-bottle-abc123-proxy"]
    assert "--label=bot-bottle.role=proxy" in create
    assert "--network=bot-bottle-abc123-net" in create and "--cap-drop=ALL" in create
    assert create[-3:-1] == ["--", "proxy:img"]
    assert "acl bottle_host_0 dstdomain -n allowed.test" in create[-1].splitlines()
    assert connect == ["network", "connect", "--", "up-net", "bot-bottle-abc123-proxy"]
    assert start == ["start", "--", "bot-bottle-abc123-proxy"]


def test_a_failed_proxy_start_leaves_no_container(fake_docker: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "network connect")
    with pytest.raises(DockerError) as err:
        egress_net.start_proxy(NET, "proxy:img", parse_policy([]), labels=LABELS)
    assert "network connect failed" in str(err.value)
    assert calls(fake_docker)[-1] == ["rm", "--force", "--volumes", "--",
                                      "bot-bottle-abc123-proxy"]


def test_teardown_removes_agent_and_proxy_then_network(fake_docker: Path) -> None:
    assert egress_net.teardown(NET, "bot-bottle-abc123")
    assert calls(fake_docker) == [
        ["rm", "--force", "--volumes", "--", "bot-bottle-abc123", "bot-bottle-abc123-proxy"],
        ["network", "rm", "--", "bot-bottle-abc123-net"]]


def test_teardown_reports_a_network_that_stays(fake_docker: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "network rm")
    assert egress_net.teardown(NET) is False


def test_proxy_requests_read_from_its_stdout(fake_docker: Path, tmp_path: Path) -> None:
    (tmp_path / "stdout").write_text(
        "1795314253.574 TCP_MISS 200 GET allowed.test 80 -\n"
        "1795314253.578 TCP_DENIED 403 GET denied.test 80 ERR_ACCESS_DENIED\n")
    (tmp_path / "stderr").write_text("2026/11/22 squid: Accepting HTTP Socket connections\n")
    reqs, raw = egress_net.proxy_requests(NET)
    assert [(r.host, r.denied) for r in reqs] == [("allowed.test", False), ("denied.test", True)]
    assert raw.count("\n") == 2
    assert egress_net.wait_ready(NET, timeout=1) < 1


def test_wait_ready_gives_up_with_squids_last_words(fake_docker: Path, tmp_path: Path) -> None:
    (tmp_path / "stderr").write_text("FATAL: Bungled squid.conf line 3\n")
    with pytest.raises(egress_net.BottleError, match=r"not ready in 0\.1s: FATAL: Bungled"):
        egress_net.wait_ready(NET, timeout=0.1)


def test_new_docker_builders() -> None:
    assert docker.import_cmd(Path("/t/r.tar"), "b:1", changes=['CMD ["/bin/bash"]']).argv == [
        "docker", "import", '--change=CMD ["/bin/bash"]', "--", "/t/r.tar", "b:1"]
    assert docker.import_cmd(Path("/t/r.tar")).argv == ["docker", "import", "--", "/t/r.tar"]
    assert docker.network_connect_cmd("n", "c").argv == ["docker", "network", "connect", "--",
                                                         "n", "c"]
    assert docker.logs_cmd("c").argv == ["docker", "logs", "--", "c"]
    assert docker.rmi_cmd("a", "b").argv == ["docker", "image", "rm", "--", "a", "b"]
    assert docker.inspect_cmd("n", fmt="{{.Id}}").argv == ["docker", "inspect",
                                                          "--format={{.Id}}", "--", "n"]
