"""`bottle launch` with network = egress, end to end on the real engine: the agent (the
example stand-in, running a shell) reaches the allowed upstream through the proxy and
nothing else, the launch ends with the egress line, `bottle egress` reads the record, and
nothing is left behind. Upstream servers are the test's own containers on its own network.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle.base import BaseImage
from tests.conftest import busybox_context
from tests.helpers import bottle

pytestmark = pytest.mark.slow

SERVE = ("mkdir -p /www && echo \"$BODY\" > /www/index.html && exec httpd -f -p 80 -h /www")


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


@pytest.fixture
def upstreams(engine: str, tmp_path: Path, debian_base: BaseImage) -> Iterator[dict[str, str]]:
    """An egress network of the test's with two busybox httpd servers on it."""
    prefix = f"bbt-up-{uuid.uuid4().hex[:8]}"
    image = f"bot-bottle-test/upstream:{prefix}"
    docker("build", "-q", "--force-rm", "--network", "none", "-t", image,
           str(busybox_context(tmp_path / "up")))
    docker("network", "create", f"{prefix}-net")
    names = []
    try:
        for name, alias in (("a", "allowed.test"), ("d", "denied.test")):
            names.append(f"{prefix}-{name}")
            docker("run", "-d", "--name", names[-1], "--network", f"{prefix}-net",
                   "--network-alias", alias, "-e", f"BODY=upstream-{name}", image, "sh", "-c",
                   SERVE)
        ip = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{prefix}-net")'
                    '.IPAddress}}', names[0])
        yield {"network": f"{prefix}-net", "allowed_ip": ip}
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
        subprocess.run(["docker", "network", "rm", f"{prefix}-net"], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)


PROBE = """
for i in 1 2 3 4 5 6 7 8 9 10; do
  out=$(timeout 10 wget -q -O- http://allowed.test/ 2>/dev/null) && break; sleep 0.3
done
echo "allowed: $out"
timeout 10 wget -q -O- http://denied.test/ >/dev/null 2>&1 && echo "denied: REACHED" \\
  || echo "denied: refused"
env -u http_proxy -u HTTP_PROXY timeout 5 wget -q -O- http://{ip}/ >/dev/null 2>&1 \\
  && echo "direct: REACHED" || echo "direct: failed"
timeout 8 nslookup example.com >/dev/null 2>&1 && echo "dns: RESOLVED" || echo "dns: none"
"""


def test_the_agent_reaches_only_the_allow_list(workspace: Path, upstreams: dict[str, str],
                                               debian_base: BaseImage) -> None:
    (workspace / "bottle.toml").write_text(
        'base = "local"\nnetwork = "egress"\negress = ["allowed.test"]\n'
        f'egress_network = "{upstreams["network"]}"\nbuild_network = "none"\n')
    r = bottle("launch", "--headless", "--command", "sh", "--", "-c",
               PROBE.replace("{ip}", upstreams["allowed_ip"]), cwd=workspace, timeout=900)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["allowed: upstream-a", "denied: refused",
                                     "direct: failed", "dns: none"]
    assert "egress: " in r.stderr and "denied: denied.test" in r.stderr, r.stderr
    # The record, read back as a user would; and as an allow-list for review.
    shown = bottle("egress", "--json", cwd=workspace)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["denied"] >= 1 and data["allow_list"] == ["allowed.test"]
    out = workspace / "allow.toml"
    assert bottle("egress", "--write", str(out), cwd=workspace).returncode == 0
    assert 'egress = ["allowed.test"]' in out.read_text()


def test_an_egress_network_that_does_not_exist_is_one_line(workspace: Path,
                                                           debian_base: BaseImage) -> None:
    (workspace / "bottle.toml").write_text(
        'base = "local"\nnetwork = "egress"\negress = ["allowed.test"]\n'
        'egress_network = "bbt-no-such-net"\nbuild_network = "none"\n')
    r = bottle("launch", "--headless", cwd=workspace, timeout=900)
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("bottle: error:")]
    assert errors == ["bottle: error: egress network bbt-no-such-net not found: the proxy "
                      "needs a network with a way out (set egress_network to one; docker "
                      "network ls lists them)"]
    assert r.stderr.splitlines() == errors  # the one line, before any build
