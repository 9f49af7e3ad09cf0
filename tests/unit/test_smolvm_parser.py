"""Every smolvm argv our builders can produce, checked against the real smolvm parser.

A builder that emits a flag smolvm does not know fails here (exit 2 from clap)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bottle.tools import smolvm
from bottle.tools.smolvm import Dialect
from tests import smolvm_parser

PARSERS = smolvm_parser.parsers()
pytestmark = pytest.mark.skipif(not PARSERS, reason="smolmachines (smolvm's parser) not installed")


def every_argv(d: Dialect, state_dir: Path) -> list[list[str]]:
    """Each builder across the combinations of its options (`state_dir`: the test's own
    directory, since the parser creates a state dir even when it only prints help)."""
    out: list[smolvm.Command] = []
    sd = [None, state_dir] if d.state_dir else [None]
    for state in sd:
        out.append(smolvm.pack_create_cmd("127.0.0.1:5000/bot-bottle:0123456789abcdef",
                                          Path("/tmp/x/0123456789abcdef"), dialect=d,
                                          state_dir=state))
        if d.packs_archives:
            out.append(smolvm.pack_create_cmd(Path("/tmp/x/img.tar"), Path("/tmp/x/d"),
                                              dialect=d, state_dir=state))
        for from_path, cidrs, env, secrets in itertools.product(
            [None, Path("/tmp/a.smolmachine")], [[], ["10.0.0.1/32", "192.168.1.0/24"]],
            [{}, {"A": "b", "PROXY": "http://x:1"}], [[], ["API_KEY", "GH_TOKEN"]],
        ):
            if secrets and not d.secret_env:
                continue
            out.append(smolvm.machine_create_cmd("bb-1", dialect=d, from_path=from_path,
                                                 allow_cidrs=cidrs, env=env,
                                                 secret_env=secrets, state_dir=state))
        out.append(smolvm.machine_create_cmd("bb-1", dialect=d, net=True, state_dir=state))
        # Egress allow-lists (what network = egress makes).
        out.append(smolvm.machine_create_cmd(
            "bb-1", dialect=d, from_path=Path("/tmp/a.smolmachine"), net=True,
            allow_hosts=["api.anthropic.com", "claude.ai"], allow_cidrs=["10.1.2.3/32"],
            allow_host_patterns=["*.sentry.io"] if d.host_patterns else [], state_dir=state))
        for build in (smolvm.machine_start_cmd, smolvm.machine_stop_cmd,
                      smolvm.machine_delete_cmd):
            out.append(build("bb-1", dialect=d, state_dir=state))
        for user, env, secrets, workdir, timeout, tty in itertools.product(
            [None, "node", "root"], [{}, {"K": "v w"}], [[], ["API_KEY"]], [None, "/workspace"],
            [None, "30s"], [False, True],
        ):
            out.append(smolvm.machine_exec_cmd(
                "bb-1", ["claude", "--print", "-x", "--", "y"], dialect=d, user=user, env=env,
                secret_env=secrets, workdir=workdir, timeout=timeout, interactive=tty, tty=tty,
                state_dir=state))
        # Headless with piped stdin: -i without -t.
        out.append(smolvm.machine_exec_cmd("bb-1", ["claude", "-p"], dialect=d, user="node",
                                           interactive=True, tty=False, state_dir=state))
        out.append(smolvm.machine_cp_cmd("/tmp/ws.tar", "bb-1:/tmp/ws.tar", dialect=d,
                                         state_dir=state))
        out.append(smolvm.machine_cp_cmd("bb-1:/tmp/o.tar", "/tmp/o.tar", dialect=d,
                                         state_dir=state))
    return [c.argv for c in out]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.parent.parent.name or str(p))
def test_every_argv_parses(parser: Path, tmp_path: Path) -> None:
    dialect = smolvm_parser.dialect_of(parser)
    argvs = every_argv(dialect, tmp_path / "state")
    assert len(argvs) > 100
    rejected = []
    for argv in argvs:
        r = smolvm_parser.check(parser, argv, tmp_path)
        if r.returncode != 0:
            rejected.append((argv, r.returncode, r.stderr.strip().splitlines()[:2]))
    assert not rejected, f"smolvm {dialect} rejects: {rejected[:3]}"


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.parent.parent.name or str(p))
def test_the_check_can_fail(parser: Path, tmp_path: Path) -> None:
    """Controls: flags smolvm does not know, and the 0.8 positional name on a modern one."""
    bad = [
        ["smolvm", "machine", "exec", "--name", "x", "--bogus-flag", "--", "true"],
        ["smolvm", "pack", "create", "--image", "a:1", "--outputt", "/tmp/x"],
    ]
    if smolvm_parser.dialect_of(parser).name_flag_everywhere:
        bad.append(smolvm.machine_create_cmd("agent-xyz", dialect=smolvm.LEGACY).argv)
    if not smolvm_parser.dialect_of(parser).host_patterns:
        bad.append(["smolvm", "machine", "create", "--name", "x", "--allow-host-pattern",
                    "*.a.b"])
    for argv in bad:
        assert smolvm_parser.check(parser, argv, tmp_path).returncode == 2, argv
