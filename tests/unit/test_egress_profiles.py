"""Agent profiles as data, and the build contexts with the CA bundle written in."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bottle import agents
from bottle.egress import parse_allow_list
from bottle.errors import BottleError
from cache import cache_root
from cache.store import Store


def store() -> Store:
    return Store(cache_root())


def test_claude_profile() -> None:
    p = agents.profile("claude")
    assert p.command == "claude" and p.secrets == ("ANTHROPIC_API_KEY",)
    assert p.network == "egress" and p.build_network == "host"
    assert parse_allow_list(p.egress)  # the defaults are valid entries...
    assert set(p.egress_sources) == set(p.egress)  # ...each with where it came from
    assert parse_allow_list(p.optional_egress)
    assert not set(p.optional_egress) & set(p.egress)
    assert p.state == ("/home/node/.claude",)
    assert p.env["CLAUDE_CONFIG_DIR"] == p.state[0]
    assert p.takes_ca


def test_claude_dockerfile_matches_the_profile() -> None:
    p = agents.profile("claude")
    text = (p.source(store()) / "Dockerfile").read_text()
    assert "ARG BASE=node:22-bookworm-slim" in text
    m = re.search(r"^ARG CLAUDE_CODE_VERSION=(\S+)$", text, re.M)
    assert m and m.group(1) == p.build_args["CLAUDE_CODE_VERSION"]
    assert f"COPY {agents.CA_FILE} " in text
    assert re.search(r"^USER node$", text, re.M)


def test_example_profile_is_the_bundled_stand_in() -> None:
    p = agents.profile("example")
    assert not p.egress and not p.takes_ca
    ctx = agents.build_context(p, store())
    assert (ctx / "Dockerfile").is_file() and (ctx / "busybox").is_file()


def test_unknown_profile() -> None:
    with pytest.raises(BottleError) as err:
        agents.profile("codex")
    assert str(err.value) == "unknown agent profile 'codex' (known: claude, example)"


def test_proxy_assets() -> None:
    src = agents.proxy_source()
    assert {p.name for p in src.iterdir()} >= {"Dockerfile", "bottle-proxy", "squid.conf"}
    assert "ENTRYPOINT [\"/usr/local/bin/bottle-proxy\"]" in (src / "Dockerfile").read_text()


def test_context_with_ca(tmp_path: Path) -> None:
    src = agents.proxy_source()
    plain = agents.context_with_ca(src, None, store())
    assert (plain / agents.CA_FILE).read_bytes() == b""
    assert (plain / "Dockerfile").read_bytes() == (src / "Dockerfile").read_bytes()
    assert os.access(plain / "bottle-proxy", os.X_OK)
    assert agents.context_with_ca(src, None, store()) == plain  # made once per content
    ca = tmp_path / "corp.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with_ca = agents.context_with_ca(src, ca, store())
    assert with_ca != plain and (with_ca / agents.CA_FILE).read_bytes() == ca.read_bytes()
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n")
    # A CA change: a new context.
    assert agents.context_with_ca(src, ca, store()) not in (plain, with_ca)
    assert not list(store().area("tmp").iterdir())


def test_unreadable_ca_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BottleError) as err:
        agents.build_context(agents.profile("claude"), store(),
                             ca_certs=tmp_path / "missing.pem")
    assert str(err.value) == f"ca_certs: cannot read {tmp_path / 'missing.pem'}: " \
                             "No such file or directory"
