"""smolmachines never widens the network by accident (issue 8.4): every network value
maps to exactly the egress it names, or is refused with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bottle.backend import BottleSpec
from bottle.backend.smolmachines import NetArgs, net_args
from bottle.errors import BottleError
from bottle.tools.smolvm import MODERN, Dialect


def spec(**kw: object) -> BottleSpec:
    return BottleSpec(launch_id="1-a", command="claude", workspace=Path("/ws"), **kw)  # type: ignore[arg-type]


def test_none_is_no_network() -> None:
    assert net_args(spec(network="none"), MODERN) == NetArgs()


@pytest.mark.parametrize("network", ["off", "isolated", "nnone", "bridge", "mynet"])
def test_anything_else_unknown_is_refused(network: str) -> None:
    with pytest.raises(BottleError, match="supports none, host and egress"):
        net_args(spec(network=network), MODERN)


def test_egress_is_exactly_the_allow_list() -> None:
    got = net_args(spec(network="egress", egress=("api.anthropic.com", "*.sentry.io"),
                        allow_cidrs=("10.1.2.3/32",)), MODERN)
    assert got == NetArgs(True, ("10.1.2.3/32",), ("api.anthropic.com",), ("*.sentry.io",))


def test_an_empty_allow_list_is_refused_not_opened() -> None:
    with pytest.raises(BottleError, match="empty allow-list"):
        net_args(spec(network="egress", egress=()), MODERN)


def test_a_dialect_that_drops_the_allow_list_is_refused() -> None:
    with pytest.raises(BottleError, match="does not keep an egress allow-list"):
        net_args(spec(network="egress", egress=("a.example",)), Dialect((1, 7, 0)))


def test_ports_and_observe_are_refused_where_smolvm_cannot_honour_them() -> None:
    with pytest.raises(BottleError, match="take no ports"):
        net_args(spec(network="egress", egress=("a.example:443",)), MODERN)
    with pytest.raises(BottleError, match="observe"):
        net_args(spec(network="egress", egress=("observe",)), MODERN)


def test_allow_cidrs_without_a_network_is_refused() -> None:
    with pytest.raises(BottleError, match="needs a network"):
        net_args(spec(network="none", allow_cidrs=("10.0.0.0/8",)), MODERN)
