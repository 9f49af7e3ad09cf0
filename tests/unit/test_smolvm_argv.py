"""smolvm argv shapes per dialect (seed 002 locks the 0.8 ones), errors and readiness."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest.mock import patch

import pytest

from bottle.errors import BottleError
from bottle.tools import _proc, smolvm
from bottle.tools._proc import Command, Result
from bottle.tools.smolvm import (
    LEGACY,
    MODERN,
    Dialect,
    SmolvmError,
    artifact_for,
    machine_cp,
    machine_create,
    machine_exec,
    pack_create,
    wait_exec_ready,
)


def argv(cmd: Command) -> list[str]:
    return cmd.argv


def res(code: int, out: str = "", err: str = "") -> Result:
    return Result(["smolvm"], code, out, err)


class TestLegacyShapes:
    """Seed 002: the 0.8 CLI mixes `--name NAME` and positional NAME."""

    def test_pack_create(self) -> None:
        cmd = smolvm.pack_create_cmd("bot-bottle-claude:latest", Path("/tmp/agent.smolmachine"),
                                     dialect=LEGACY)
        assert argv(cmd) == ["smolvm", "pack", "create", "--image", "bot-bottle-claude:latest",
                             "-o", "/tmp/agent.smolmachine"]

    def test_create_minimal(self) -> None:
        assert argv(smolvm.machine_create_cmd("agent-xyz", dialect=LEGACY)) == [
            "smolvm", "machine", "create", "agent-xyz"]

    def test_create_from_cidr_env(self) -> None:
        a = argv(smolvm.machine_create_cmd(
            "agent-xyz", dialect=LEGACY, from_path=Path("/stage/agent.smolmachine"),
            allow_cidrs=["192.168.50.2/32"], env={"HTTPS_PROXY": "http://192.168.50.2:8888"}))
        assert a[0] == "smolvm" and a[-1] == "agent-xyz"
        assert a[a.index("--from") + 1] == "/stage/agent.smolmachine"
        assert "--net" in a  # 0.8's implied net from --allow-cidr doesn't fire with --from
        assert a[a.index("--allow-cidr") + 1] == "192.168.50.2/32"
        assert a[a.index("-e") + 1] == "HTTPS_PROXY=http://192.168.50.2:8888"

    def test_create_without_cidrs_has_no_net(self) -> None:
        assert "--net" not in argv(smolvm.machine_create_cmd(
            "agent-xyz", dialect=LEGACY, from_path=Path("/x.smolmachine")))

    def test_start_stop_use_dash_name(self) -> None:
        assert argv(smolvm.machine_start_cmd("agent-xyz", dialect=LEGACY)) == [
            "smolvm", "machine", "start", "--name", "agent-xyz"]
        assert argv(smolvm.machine_stop_cmd("agent-xyz", dialect=LEGACY)) == [
            "smolvm", "machine", "stop", "--name", "agent-xyz"]

    def test_delete_positional_with_force(self) -> None:
        assert argv(smolvm.machine_delete_cmd("agent-xyz", dialect=LEGACY)) == [
            "smolvm", "machine", "delete", "-f", "agent-xyz"]

    def test_exec_separator(self) -> None:
        assert argv(smolvm.machine_exec_cmd("agent-xyz", ["echo", "hello"], dialect=LEGACY)) == [
            "smolvm", "machine", "exec", "--name", "agent-xyz", "--", "echo", "hello"]

    def test_exec_env_workdir_timeout(self) -> None:
        a = argv(smolvm.machine_exec_cmd("agent-xyz", ["ls"], dialect=LEGACY,
                                         env={"FOO": "bar", "BAZ": "qux"}, workdir="/app",
                                         timeout="30s"))
        assert a[a.index("-w") + 1] == "/app"
        assert a[a.index("--timeout") + 1] == "30s"
        assert "FOO=bar" in a and "BAZ=qux" in a
        assert a.index("--") > a.index("-w")

    def test_exec_user_before_114_switches_inside(self) -> None:
        a = argv(smolvm.machine_exec_cmd("vm", ["claude", "-p"], dialect=Dialect((1, 7, 0)),
                                         user="node"))
        assert "-u" not in a
        assert a[a.index("--") + 1:] == ["su", "-s", "/bin/sh", "node", "-c", 'exec "$0" "$@"',
                                         "claude", "-p"]

    def test_cp_positional(self) -> None:
        assert argv(smolvm.machine_cp_cmd("/host/file", "agent-xyz:/dest/file",
                                          dialect=LEGACY)) == [
            "smolvm", "machine", "cp", "/host/file", "agent-xyz:/dest/file"]


class TestModernShapes:
    def test_name_flag_everywhere(self) -> None:
        assert argv(smolvm.machine_create_cmd("vm", dialect=MODERN))[3:5] == ["--name", "vm"]
        assert argv(smolvm.machine_delete_cmd("vm", dialect=MODERN)) == [
            "smolvm", "machine", "delete", "--name", "vm", "-f"]

    def test_exec_user_flag(self) -> None:
        a = argv(smolvm.machine_exec_cmd("vm", ["id"], dialect=MODERN, user="root"))
        assert a[a.index("-u") + 1] == "root" and a[-2:] == ["--", "id"]

    def test_secrets_are_references_only(self) -> None:
        a = argv(smolvm.machine_exec_cmd("vm", ["x"], dialect=MODERN, secret_env=["API_KEY"]))
        assert a[a.index("--secret-env") + 1] == "API_KEY=API_KEY"

    def test_secret_env_refused_where_it_would_leak(self) -> None:
        with pytest.raises(BottleError, match="secret"):
            smolvm.machine_create_cmd("vm", dialect=LEGACY, secret_env=["API_KEY"])

    def test_pack_output_naming(self) -> None:
        with pytest.raises(BottleError, match="smolmachine"):
            smolvm.pack_create_cmd("r:1", Path("/o/x.smolmachine"), dialect=Dialect((1, 7, 0)))
        assert artifact_for(Path("/o/x"), MODERN) == Path("/o/x.smolmachine")
        assert artifact_for(Path("/o/x"), LEGACY) == Path("/o/x.smolmachine")

    def test_archive_needs_131(self) -> None:
        with pytest.raises(BottleError, match="registry"):
            smolvm.pack_create_cmd(Path("/t.tar"), Path("/o/x"), dialect=Dialect((1, 29, 1)))
        assert "/t.tar" in argv(smolvm.pack_create_cmd(Path("/t.tar"), Path("/o/x"),
                                                       dialect=Dialect((1, 31, 0))))

    def test_state_dir_on_every_command(self) -> None:
        sd = Path("/tmp/state")
        for cmd in (smolvm.machine_start_cmd("vm", dialect=MODERN, state_dir=sd),
                    smolvm.machine_exec_cmd("vm", ["true"], dialect=MODERN, state_dir=sd),
                    smolvm.pack_create_cmd("r:1", Path("/o/x"), dialect=MODERN, state_dir=sd)):
            a = argv(cmd)
            assert a[a.index("--state-dir") + 1] == "/tmp/state"


class TestDialect:
    @pytest.mark.parametrize(("text", "version"), [
        ("smolvm 1.32.2", (1, 32, 2)), ("smolvm 0.8.0\n", (0, 8, 0)),
        ("note: no packed assets...\nsmolvm 1.7.3", (1, 7, 3)),
    ])
    def test_parse(self, text: str, version: tuple[int, int, int]) -> None:
        assert Dialect.parse(text).version == version

    def test_parse_garbage(self) -> None:
        with pytest.raises(BottleError):
            Dialect.parse("what")

    def test_thresholds(self) -> None:
        assert not LEGACY.name_flag_everywhere and Dialect((1, 0, 2)).name_flag_everywhere
        assert not Dialect((1, 6, 13)).pack_writes_stub and Dialect((1, 7, 0)).pack_writes_stub
        assert not Dialect((1, 29, 1)).packs_archives and Dialect((1, 31, 0)).packs_archives
        assert not Dialect((1, 13, 1)).exec_user_flag and Dialect((1, 14, 0)).exec_user_flag

    def test_detected_from_the_binary_on_path(self, fake_smolvm: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FAKE_SMOLVM_VERSION", "1.7.4")
        smolvm._detect.cache_clear()
        assert smolvm.detect_dialect().version == (1, 7, 4)


@pytest.fixture
def failing_smolvm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    script = bin_dir / "smolvm"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\necho "${{FAIL_MSG:-boom}}" >&2\n'
                      f'exit "${{FAIL_CODE:-1}}"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


class TestErrorPath:
    """Non-zero raises SmolvmError; `exec` returns the in-VM exit code instead."""

    def test_create_failure_raises(self, failing_smolvm: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FAIL_MSG", "no such image")
        with pytest.raises(SmolvmError) as err:
            machine_create("agent-xyz", dialect=LEGACY)
        assert err.value.returncode == 1
        assert "no such image" in str(err.value)

    def test_pack_failure_raises(self, failing_smolvm: Path) -> None:
        with pytest.raises(SmolvmError):
            pack_create("missing:tag", Path("/tmp/out"), dialect=MODERN)

    def test_exec_failure_returns_result(self, failing_smolvm: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FAIL_CODE", "42")
        monkeypatch.setenv("FAIL_MSG", "nope")
        r = machine_exec("agent-xyz", ["sh", "-c", "exit 42"], dialect=MODERN)
        assert (r.returncode, r.stdout, r.stderr) == (42, "", "nope\n")

    def test_cp_with_an_empty_side_runs_nothing(self, failing_smolvm: Path) -> None:
        machine_cp("", "agent-xyz:/dest", dialect=MODERN)
        machine_cp("/host", "", dialect=MODERN)
        assert not failing_smolvm.exists()

    def test_missing_smolvm_names_the_tool(self, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        assert not smolvm.is_available()
        with pytest.raises(BottleError, match="smolvm not found on PATH"):
            machine_create("vm", dialect=MODERN)


class TestWaitExecReady:
    def test_returns_at_once_when_exec_succeeds(self) -> None:
        with patch.object(smolvm, "machine_exec", return_value=res(0, "", "")) as m:
            wait_exec_ready("vm-x", dialect=MODERN)
        m.assert_called_once_with("vm-x", ["true"], dialect=MODERN, state_dir=None)

    def test_retries_until_success(self) -> None:
        results = [res(1, "", "not ready")] * 2 + [res(0, "", "")]
        with patch.object(smolvm, "machine_exec", side_effect=results) as m, \
                patch.object(smolvm.time, "sleep"):
            wait_exec_ready("vm-x", dialect=MODERN)
        assert m.call_count == 3

    def test_timeout_raises_naming_the_machine(self) -> None:
        with patch.object(smolvm, "machine_exec", return_value=res(1, "", "")), \
                patch.object(smolvm.time, "monotonic", side_effect=[0.0, 0.0, 10.0]), \
                patch.object(smolvm.time, "sleep"), pytest.raises(SmolvmError) as err:
            wait_exec_ready("vm-x", timeout=5.0, dialect=MODERN)
        assert "vm-x" in str(err.value) and "not ready" in str(err.value)


def test_fake_smolvm_log_is_json(fake_smolvm: Path) -> None:
    smolvm._detect.cache_clear()
    _proc.run(smolvm.TOOL.cmd("--version"))
    assert json.loads(fake_smolvm.read_text().splitlines()[0]) == ["--version"]
