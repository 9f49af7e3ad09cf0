"""The egress topology for real: a bottle whose only way out is the allow-listing proxy.

Everything runs in the test's own engine on networks the test makes: upstream busybox
httpd servers (`allowed.test`, `denied.test`, ...) on an "egress" network of the test's,
the squid proxy (built on the offline base) on that network and on the bottle's internal
one, and an agent stand-in (busybox) on the internal network only. Every check is made
from inside the bottle. Nothing here talks to any host outside the engine.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bottle import agents, egress_net
from bottle.base import BaseImage
from bottle.egress import (
    Policy,
    observed_allow_list,
    parse_policy,
    summarize,
    summary_json,
    summary_line,
)
from bottle.egress_net import EgressNet
from bottle.tools.docker import DockerError
from cache.store import Store
from tests.conftest import busybox_context

pytestmark = pytest.mark.slow

ALLOW = ["allowed.test", "*.wild.test", "ported.test:8080"]
# One upstream answers for the allowed names (and the wildcard's apex, which is denied),
# another for denied.test; each serves a body naming itself, on 80 and 8080.
UPSTREAMS = {
    "up-a": ("upstream-a", ["allowed.test", "api.wild.test", "wild.test", "ported.test"]),
    "up-d": ("upstream-d", ["denied.test"]),
}
_SERVE = ("mkdir -p /www && echo \"$BODY\" > /www/index.html && httpd -p 8080 -h /www "
          "&& exec httpd -f -p 80 -h /www")


def docker(*args: str, check: bool = True, timeout: float = 120,
           ) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed: {r.stderr.strip()}")
    return r


def sh(container: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `script` inside `container` (stdout and stderr merged into stdout)."""
    return docker("exec", container, "sh", "-c", f"{{ {script} ; }} 2>&1", check=False,
                  timeout=timeout)


def fetch(container: str, url: str) -> subprocess.CompletedProcess[str]:
    # Debian's busybox wget segfaults with -T: busybox timeout bounds it instead.
    return sh(container, f"timeout 10 wget -S -O- {url}")


def raw(container: str, host: str, port: int, request: str, *, wait: float = 1) -> str:
    """Send `request` (\\r\\n line ends) with busybox nc; whatever comes back."""
    payload = request.replace("\r\n", "\\r\\n")
    return sh(container, f"(printf '{payload}'; sleep {wait}) | timeout 5 nc -w 3 {host} {port}"
              ).stdout


def connect(container: str, proxy: str, target: str) -> str:
    """The status line a CONNECT to `target` through the proxy gets."""
    out = raw(container, proxy, 3128, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
    return out.splitlines()[0] if out else ""


@pytest.fixture(scope="module")
def module_env(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """DOCKER_HOST and a private cache root for the module-scoped fixtures."""
    root = tmp_path_factory.mktemp("egress-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_HOST", docker_host)
        mp.setenv("BOTTLE_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def busybox_image(module_env: Path) -> Iterator[str]:
    tag = f"bot-bottle-test/egress-busybox:{uuid.uuid4().hex[:8]}"
    ctx = busybox_context(module_env / "busybox")
    docker("build", "-q", "--force-rm", "--network", "none", "-t", tag, str(ctx))
    yield tag
    docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="module")
def proxy_image(module_env: Path, debian_base: BaseImage,
                timings: dict[str, float]) -> Iterator[str]:
    """The proxy image on the offline base; no CA configured (an empty CA file)."""
    tag = f"bot-bottle-test/egress-proxy:{uuid.uuid4().hex[:8]}"
    ctx = agents.context_with_ca(agents.proxy_source(), None, Store(module_env))
    assert (ctx / agents.CA_FILE).read_bytes() == b""
    started = time.monotonic()
    docker("build", "-q", "--force-rm", "--network", "none", "--build-arg",
           f"BASE={debian_base.ref}", "-t", tag, str(ctx), timeout=600)
    timings["build the proxy image on the base"] = time.monotonic() - started
    yield tag
    docker("rmi", "-f", tag, check=False)


@dataclass(frozen=True)
class Topology:
    net: EgressNet
    agent: str
    prefix: str
    upstream_ips: dict[str, str]  # container -> its address on the egress network
    egress_gateway: str  # the host's address on the egress network

    @property
    def proxy(self) -> str:
        return self.net.proxy


def _start_upstreams(prefix: str, network: str, image: str) -> dict[str, str]:
    ips = {}
    for short, (body, aliases) in UPSTREAMS.items():
        name = f"{prefix}-{short}"
        alias_args = [a for alias in aliases for a in ("--network-alias", alias)]
        docker("run", "-d", "--name", name, "--label", f"bbtest={prefix}", "--network", network,
               *alias_args, "-e", f"BODY={body}", image, "sh", "-c", _SERVE)
        ips[name] = docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{network}")'
                           '.IPAddress}}', name).stdout.strip()
    return ips


def _run_agent(net: EgressNet, name: str, image: str, prefix: str) -> None:
    env = [a for k, v in net.agent_env().items() for a in ("-e", f"{k}={v}")]
    docker("run", "-d", "--name", name, "--label", f"bbtest={prefix}", "--network", net.network,
           *env, image, "sleep", "3600")


def leftovers(prefix: str) -> tuple[list[str], list[str]]:
    containers = docker("ps", "-a", "--filter", f"name={prefix}", "--format", "{{.Names}}")
    networks = docker("network", "ls", "--filter", f"name={prefix}", "--format", "{{.Name}}")
    return containers.stdout.split(), networks.stdout.split()


@contextlib.contextmanager
def topology(busybox: str, proxy: str, policy: Policy) -> Iterator[Topology]:
    """Upstreams, bottle network, proxy and agent; all of it removed however the test ends."""
    prefix = f"bbt-egr-{uuid.uuid4().hex[:8]}"
    up_net = f"{prefix}-up"
    net = EgressNet(f"{prefix}-net", f"{prefix}-proxy", up_net)
    agent = f"{prefix}-agent"
    labels = {"bbtest": prefix}
    try:
        docker("network", "create", "--label", f"bbtest={prefix}", up_net)
        ips = _start_upstreams(prefix, up_net, busybox)
        egress_net.create_bottle_network(net, labels=labels)
        egress_net.start_proxy(net, proxy, policy, labels=labels)
        _run_agent(net, agent, busybox, prefix)
        egress_net.wait_ready(net)
        gateway = docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}",
                         up_net).stdout.strip()
        yield Topology(net, agent, prefix, ips, gateway)
    finally:
        egress_net.teardown(net, agent, *(f"{prefix}-{s}" for s in UPSTREAMS))
        docker("network", "rm", up_net, check=False)


@pytest.fixture(scope="module")
def bottle(busybox_image: str, proxy_image: str) -> Iterator[Topology]:
    with topology(busybox_image, proxy_image, parse_policy(ALLOW)) as topo:
        yield topo


def test_allowed_name_through_the_proxy(bottle: Topology) -> None:
    r = fetch(bottle.agent, "http://allowed.test/")
    assert r.returncode == 0 and "200 OK" in r.stdout and "upstream-a" in r.stdout, r.stdout


def test_denied_name_refused_and_logged(bottle: Topology) -> None:
    r = fetch(bottle.agent, "http://denied.test/")
    assert r.returncode != 0 and "403 Forbidden" in r.stdout and "upstream-d" not in r.stdout
    requests, _ = egress_net.proxy_requests(bottle.net)
    denied = [q for q in requests if q.host == "denied.test"]
    assert denied and all(q.denied and q.error == "ERR_ACCESS_DENIED" for q in denied)


@pytest.mark.parametrize(("url", "allowed"), [
    ("http://api.wild.test/", True),
    ("http://wild.test/", False),  # `*.wild.test` is the subdomains only
    ("http://ported.test:8080/", True),
    ("http://ported.test/", False),  # ported.test is allowed on 8080 only
    ("http://allowed.test:8080/", False),  # allowed.test on 80/443 only
    ("http://ALLOWED.test/", True),
])
def test_wildcards_and_ports(bottle: Topology, url: str, allowed: bool) -> None:
    r = fetch(bottle.agent, url)
    if allowed:
        assert r.returncode == 0 and "upstream-a" in r.stdout, r.stdout
    else:
        assert r.returncode != 0 and "403 Forbidden" in r.stdout, r.stdout


def test_https_connect_filter(bottle: Topology) -> None:
    proxy = bottle.proxy
    assert connect(bottle.agent, proxy, "ported.test:8080").endswith("200 Connection established")
    assert connect(bottle.agent, proxy, "allowed.test:80").endswith("200 Connection established")
    for target in ("denied.test:443", "allowed.test:22", "wild.test:443", "ported.test:443"):
        assert connect(bottle.agent, proxy, target).endswith("403 Forbidden"), target
    # Allowed but nothing listens there: squid tries (503), it does not refuse (403).
    assert connect(bottle.agent, proxy, "api.wild.test:443").endswith("503 Service Unavailable")
    # A real tunnel: CONNECT, then HTTP through it.
    out = raw(bottle.agent, proxy, 3128, "CONNECT ported.test:8080 HTTP/1.1\r\n\r\n"
              "GET / HTTP/1.0\r\nHost: ported.test\r\n\r\n", wait=2)
    assert "200 Connection established" in out and "upstream-a" in out, out


def test_direct_connection_to_an_upstream_fails(bottle: Topology, busybox_image: str) -> None:
    request = "GET / HTTP/1.0\r\n\r\n"
    for name, ip in bottle.upstream_ips.items():
        assert "200 OK" not in raw(bottle.agent, ip, 80, request), name
        r = sh(bottle.agent, f"unset http_proxy HTTP_PROXY; timeout 10 wget -O- http://{ip}/")
        assert r.returncode != 0 and "upstream" not in r.stdout, r.stdout
    # The same request from the egress network gets through: the address is right.
    ip = bottle.upstream_ips[f"{bottle.prefix}-up-d"]
    control = docker("run", "--rm", "--network", bottle.net.egress_network, busybox_image,
                     "sh", "-c", f"timeout 10 wget -q -O- http://{ip}/")
    assert control.stdout.strip() == "upstream-d"


def _host_ipv4s() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                         text=True, check=False).stdout
    found = re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out)
    if not found:
        found = socket.gethostbyname_ex(socket.gethostname())[2]
    return [a for a in found if not a.startswith("127.")]


@pytest.fixture
def host_server() -> Iterator[int]:
    """A web server on the host's 0.0.0.0:<free port>, as a user's dev server would be."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "0.0.0.0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_host_ports_unreachable(bottle: Topology, host_server: int, busybox_image: str) -> None:
    bottle_gateway = docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}",
                            bottle.net.network).stdout.strip()
    addresses = sorted({*_host_ipv4s(), bottle.egress_gateway, bottle_gateway})
    assert len(addresses) >= 2
    request = "GET / HTTP/1.0\r\n\r\n"
    for addr in addresses:
        assert "200 OK" not in raw(bottle.agent, addr, host_server, request), addr
    # Through the proxy the host is not allowed either (an IP is never on the list).
    r = fetch(bottle.agent, f"http://{bottle.egress_gateway}:{host_server}/")
    assert "403 Forbidden" in r.stdout, r.stdout
    # A container on the (non-internal) egress network does reach it: the server is there.
    control = docker("run", "--rm", "--network", bottle.net.egress_network, busybox_image,
                     "sh", "-c", f"(printf '{request}'; sleep 1) | timeout 5 nc -w 3 "
                     f"{bottle.egress_gateway} {host_server}".replace("\r\n", "\\r\\n"))
    assert "200 OK" in control.stdout, control.stdout + control.stderr


def test_dns_knows_only_the_bottle(bottle: Topology) -> None:
    assert sh(bottle.agent, f"nslookup {bottle.proxy}").returncode == 0
    for name in ("allowed.test", "bottle-dns-check.invalid"):
        r = sh(bottle.agent, f"nslookup {name}")
        assert r.returncode != 0 and "Address" not in r.stdout.split("Name:")[-1], r.stdout


@pytest.fixture
def fresh(busybox_image: str, proxy_image: str) -> Iterator[Topology]:
    """A topology of its own (an empty proxy log) for one test."""
    with topology(busybox_image, proxy_image, parse_policy(ALLOW)) as topo:
        yield topo


def test_log_summary(fresh: Topology) -> None:
    for url in ("http://allowed.test/", "http://allowed.test/", "http://denied.test/",
                "http://denied.test/", "http://evil.test/", "http://ported.test:8080/"):
        fetch(fresh.agent, url)
    requests, raw_log = egress_net.proxy_requests(fresh.net)
    summary = summarize(requests)
    assert summary_line(summary) == "egress: 3 allowed, 3 denied: denied.test x2, evil.test"
    data = summary_json(summary, requests)
    assert data["allowed_hosts"] == {"allowed.test": 2, "ported.test:8080": 1}
    assert [(q["method"], q["code"]) for q in data["requests"]] == [
        ("GET", 200), ("GET", 200), ("GET", 403), ("GET", 403), ("GET", 403), ("GET", 200)]
    assert len(raw_log.splitlines()) == 6
    json.dumps(data)  # plain data, ready for --json


def test_observe_mode_records_every_destination(busybox_image: str, proxy_image: str) -> None:
    with topology(busybox_image, proxy_image, Policy(observe=True)) as topo:
        for url in ("http://allowed.test/", "http://denied.test/", "http://ported.test:8080/",
                    "http://allowed.test/"):
            r = fetch(topo.agent, url)
            assert r.returncode == 0 and "200 OK" in r.stdout, (url, r.stdout)
        requests, _ = egress_net.proxy_requests(topo.net)
    summary = summarize(requests)
    assert summary_line(summary, observe=True) == (
        "egress (observe): 4 requests to 3 destinations: allowed.test x2, denied.test, "
        "ported.test:8080")
    assert observed_allow_list(requests) == ["allowed.test", "denied.test", "ported.test:8080"]


def test_failed_proxy_start_leaves_no_proxy(module_env: Path) -> None:
    prefix = f"bbt-egr-{uuid.uuid4().hex[:8]}"
    net = EgressNet(f"{prefix}-net", f"{prefix}-proxy", "none-such-network")
    egress_net.create_bottle_network(net, labels={"bbtest": prefix})
    try:
        with pytest.raises(DockerError):
            egress_net.start_proxy(net, "bot-bottle-test/no-such-image:x", Policy(),
                                   labels={"bbtest": prefix})
        assert egress_net.inspect_json(net.proxy) is None
    finally:
        assert egress_net.teardown(net)
    assert leftovers(prefix) == ([], [])


def test_bring_up_alongside_and_teardown(busybox_image: str, proxy_image: str,
                                         timings: dict[str, float]) -> None:
    """Network, proxy and agent come up together (the agent's first request retries until
    the proxy answers); timed against a bare `docker run`; nothing is left afterwards."""
    prefix = f"bbt-egr-{uuid.uuid4().hex[:8]}"
    up_net = f"{prefix}-up"
    net = EgressNet(f"{prefix}-net", f"{prefix}-proxy", up_net)
    agent, labels = f"{prefix}-agent", {"bbtest": prefix}
    try:
        docker("network", "create", "--label", f"bbtest={prefix}", up_net)
        _start_upstreams(prefix, up_net, busybox_image)

        started = time.monotonic()
        docker("run", "-d", "--name", f"{prefix}-bare", "--network", "none", busybox_image,
               "sleep", "3600")
        timings["bare docker run -d (agent image)"] = time.monotonic() - started
        docker("rm", "-f", f"{prefix}-bare")

        started = time.monotonic()
        egress_net.create_bottle_network(net, labels=labels)
        with ThreadPoolExecutor(2) as pool:
            proxy_up = pool.submit(egress_net.start_proxy, net, proxy_image, parse_policy(ALLOW),
                                   labels=labels)
            agent_up = pool.submit(_run_agent, net, agent, busybox_image, prefix)
            agent_up.result()
            timings["network + agent container running (proxy starting alongside)"] = (
                time.monotonic() - started)
            proxy_up.result()
        proxy_started = time.monotonic()
        first = sh(agent, "until timeout 5 wget -q -O- http://allowed.test/; do sleep 0.05; done",
                   timeout=60)
        done = time.monotonic()
        assert "upstream-a" in first.stdout, first.stdout
        timings["network + proxy + agent + first request through the proxy"] = done - started
        timings["proxy start -> first request answered"] = done - proxy_started
    finally:
        started = time.monotonic()
        gone = egress_net.teardown(net, agent, *(f"{prefix}-{s}" for s in UPSTREAMS))
        timings["teardown (agent, proxy, network)"] = time.monotonic() - started
        docker("network", "rm", up_net, check=False)
    assert gone and leftovers(prefix) == ([], [])
    assert egress_net.teardown(net)  # again: nothing to do, still fine


def test_proxy_start_latency(busybox_image: str, proxy_image: str,
                             timings: dict[str, float]) -> None:
    prefix = f"bbt-egr-{uuid.uuid4().hex[:8]}"
    net = EgressNet(f"{prefix}-net", f"{prefix}-proxy", f"{prefix}-up")
    try:
        docker("network", "create", "--label", f"bbtest={prefix}", net.egress_network)
        egress_net.create_bottle_network(net, labels={"bbtest": prefix})
        started = time.monotonic()
        egress_net.start_proxy(net, proxy_image, parse_policy(ALLOW), labels={"bbtest": prefix})
        running = time.monotonic()
        egress_net.wait_ready(net)
        ready = time.monotonic()
        timings["proxy: docker create+connect+start"] = running - started
        timings["proxy: running -> squid accepting"] = ready - running
    finally:
        egress_net.teardown(net)
        docker("network", "rm", net.egress_network, check=False)
    assert leftovers(prefix) == ([], [])
