"""The Docker side of egress: a bottle network with no way out, and the proxy that is one.

    egress network (e.g. `bridge`) ── proxy (squid) ── bottle network ── agent
                                                       (internal, no host address)

The bottle network is `--internal` (no route out) and its bridge gets no IPv4 address
(`inhibit_ipv4`), so the host's own listening ports are out of reach too; containers on
it still reach each other, and Docker's DNS there knows only their names. The proxy alone
is also on the egress network. The agent gets HTTP(S)_PROXY naming the proxy.

The proxy starts alongside the agent, not before it: `start_proxy` returns once the
container runs, and squid listens a moment later (`wait_ready` can wait for it; agents
such as Claude Code retry a refused first connection on their own).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from bottle.backend import LABEL
from bottle.egress import PROXY_PORT, Policy, Request, parse_log, proxy_env, render_squid_conf
from bottle.errors import BottleError
from bottle.tools import _proc, docker
from bottle.tools.docker import RunSpec
from cache.record import dataclass

INHIBIT_IPV4 = "com.docker.network.bridge.inhibit_ipv4"
DEFAULT_EGRESS_NETWORK = "bridge"
ROLE = f"{LABEL}.role"
_READY = "Accepting HTTP Socket connections"


@dataclass(frozen=True)
class EgressNet:
    """The names one launch uses. `proxy` is also the proxy's DNS name on `network`."""

    network: str
    proxy: str
    egress_network: str = DEFAULT_EGRESS_NETWORK
    port: int = PROXY_PORT

    def agent_env(self) -> dict[str, str]:
        """HTTP(S)_PROXY/NO_PROXY (both cases) for the agent container."""
        return proxy_env(self.proxy, self.port)


def plan(launch_id: str, *, egress_network: str = DEFAULT_EGRESS_NETWORK) -> EgressNet:
    base = f"bot-bottle-{launch_id}"
    return EgressNet(f"{base}-net", f"{base}-proxy", egress_network)


def create_bottle_network(net: EgressNet, *, labels: Mapping[str, str]) -> None:
    """The internal network for one launch (no route out, no host address)."""
    docker.network_create(net.network, internal=True, options={INHIBIT_IPV4: "true"},
                          labels={**labels, ROLE: "network"})


def start_proxy(net: EgressNet, image: str, policy: Policy, *,
                labels: Mapping[str, str]) -> None:
    """Create the proxy on the bottle network, connect it to the egress network, start it.

    Connected before it starts, so it never runs on one network only. The squid config
    is the container's argument (the image's entrypoint writes and runs it)."""
    conf = render_squid_conf(policy, port=net.port)
    spec = RunSpec(name=net.proxy, labels={**labels, ROLE: "proxy"}, network=net.network,
                   cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=512)
    try:
        _proc.run(docker.create_cmd(image, [conf], spec))
        docker.network_connect(net.egress_network, net.proxy)
        docker.start(net.proxy)
    except BaseException:
        docker.rm_f(net.proxy)  # a half-made proxy must not outlive the launch
        raise


def wait_ready(net: EgressNet, *, timeout: float = 10.0, interval: float = 0.02) -> float:
    """Wait until squid accepts connections; return the seconds waited. BottleError if the
    proxy exits or is not ready within `timeout` (with squid's last words)."""
    started = time.monotonic()
    while True:
        r = _proc.run(docker.logs_cmd(net.proxy), check=False)
        if _READY in r.stderr or _READY in r.stdout:
            return time.monotonic() - started
        state = docker.container_state(net.proxy) or {}
        running = bool(state.get("Running"))
        if not running or time.monotonic() - started > timeout:
            tail = [ln for ln in r.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
            why = "exited" if not running else f"not ready in {timeout:g}s"
            raise BottleError(f"egress proxy {net.proxy} {why}: {tail[0]}")
        time.sleep(interval)


def proxy_requests(net: EgressNet) -> tuple[list[Request], str]:
    """The requests the proxy logged so far, and its raw access log (for the cache)."""
    r = _proc.run(docker.logs_cmd(net.proxy), check=False)
    return parse_log(r.stdout), r.stdout


def teardown(net: EgressNet, *containers: str) -> bool:
    """Remove `containers` (the agent's), the proxy, then the network. Never raises for
    what is already gone; returns whether the network is gone."""
    docker.rm_f(*containers, net.proxy)
    r = docker.network_rm(net.network)
    return r is None or r.returncode == 0 or "not found" in r.stderr.lower()


def inspect_json(name: str) -> dict[str, object] | None:
    """`docker inspect` of a container or network, or None when there is none."""
    r = _proc.run(docker.inspect_cmd(name), check=False)
    if r.returncode != 0:
        return None
    data: dict[str, object] = json.loads(r.stdout)
    return data
