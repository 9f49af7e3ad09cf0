"""Seed 004: Docker and smolmachines bottles keep the same observable contracts.

`exec` runs for real through stand-in `docker` / `smolvm` programs first on PATH,
which record their argv and answer like the real ones."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bottle.backend import ExecResult, Teardown
from bottle.backend.docker import DockerBottle
from bottle.backend.smolmachines import SmolmachinesBottle
from bottle.tools.smolvm import MODERN


def _docker(guest_env: dict[str, str]) -> DockerBottle:
    return DockerBottle("bot-bottle-test", Teardown("test"), image_id="sha256:" + "a" * 64,
                        agent_command="claude", env=guest_env)


def user_of(argv: list[str]) -> str:
    """The user an exec argv asks for (`-u X` or `--user=X`)."""
    if "-u" in argv:
        return argv[argv.index("-u") + 1]
    return next(a.split("=", 1)[1] for a in argv if a.startswith("--user="))


def _smol(guest_env: dict[str, str]) -> SmolmachinesBottle:
    return SmolmachinesBottle("bot-bottle-test", guest_env=guest_env, agent_command="claude",
                              dialect=MODERN)


BACKENDS: list[tuple[str, Callable[[dict[str, str]], object]]] = [
    ("docker", _docker), ("smolmachines", _smol)]


@pytest.fixture
def recorders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`docker` and `smolvm` that log argv as JSON and print out/err like an exec."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.jsonl"
    for name in ("docker", "smolvm"):
        p = bin_dir / name
        p.write_text(f"#!/usr/bin/env python3\nimport json, sys\n"
                     f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                     f"print('out'); print('err', file=sys.stderr)\n")
        p.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def last_argv(log: Path) -> list[str]:
    return list(json.loads(log.read_text().splitlines()[-1]))


@pytest.mark.parametrize(("label", "factory"), BACKENDS)
class TestParity:
    def test_agent_argv_is_list_of_str(self, label: str, factory: Callable[..., object]) -> None:
        argv = factory({"MY_VAR": "val"}).agent_argv([], tty=False)  # type: ignore[attr-defined]
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)

    def test_agent_command_and_extra_flags(self, label: str,
                                           factory: Callable[..., object]) -> None:
        extra = ["--no-update-check", "--output-format", "stream-json"]
        argv = factory({}).agent_argv(extra, tty=False)  # type: ignore[attr-defined]
        assert "claude" in argv
        assert argv[argv.index("claude") + 1:] == extra  # in order, right after the command

    def test_tty_asks_for_a_terminal(self, label: str, factory: Callable[..., object]) -> None:
        b = factory({})
        terminal = {"-t", "--tty"}
        assert terminal & set(b.agent_argv([], tty=True))  # type: ignore[attr-defined]
        assert not terminal & set(b.agent_argv([], tty=False))  # type: ignore[attr-defined]

    def test_exec_as_node_by_default_and_root_on_request(
        self, label: str, factory: Callable[..., object], recorders: Path,
    ) -> None:
        b = factory({})
        b.exec("echo hi")  # type: ignore[attr-defined]
        assert user_of(last_argv(recorders)) == "node"
        b.exec("id", user="root")  # type: ignore[attr-defined]
        argv = last_argv(recorders)
        assert user_of(argv) == "root"
        assert argv[-3:] == ["sh", "-c", "id"]

    def test_exec_result_shape(self, label: str, factory: Callable[..., object],
                               recorders: Path) -> None:
        r = factory({}).exec("echo hi")  # type: ignore[attr-defined]
        assert isinstance(r, ExecResult)
        assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")

    def test_close_is_idempotent(self, label: str, factory: Callable[..., object]) -> None:
        b = factory({})
        b.close()  # type: ignore[attr-defined]
        b.close()  # type: ignore[attr-defined]


def test_docker_close_tears_down_once() -> None:
    count = [0]
    teardown = Teardown("test")
    teardown.add("counter", lambda: count.__setitem__(0, count[0] + 1))
    b = DockerBottle("c", teardown)
    b.close()
    b.close()
    assert count == [1]


def test_teardown_runs_every_step_and_names_the_failed_ones() -> None:
    done: list[str] = []
    teardown = Teardown("test")
    teardown.add("first", lambda: done.append("first"))
    teardown.add("broken", lambda: 1 / 0)
    teardown.add("refused", lambda: False)
    teardown.add("last", lambda: done.append("last"))
    assert teardown.close() == ["refused", "broken"]
    assert done == ["last", "first"]  # last in, first out; a failure stops nothing
    assert teardown.close() == []


def test_smolmachines_guest_env_in_agent_argv_secrets_by_reference() -> None:
    b = SmolmachinesBottle("bot-bottle-test", guest_env={"PROXY": "http://proxy:8888"},
                           secret_env=["TOKEN"], dialect=MODERN)
    argv = b.agent_argv([], tty=False)
    assert "PROXY=http://proxy:8888" in argv
    assert "TOKEN=TOKEN" in argv  # a reference smolvm resolves; the value is not on argv


def test_docker_agent_argv_carries_no_env_values() -> None:
    argv = _docker({"TOKEN": "abc123"}).agent_argv([], tty=False)
    assert not any("abc123" in a for a in argv)


def test_docker_agent_argv_env_by_name_only() -> None:
    from bottle.tools.docker import RunSpec

    b = DockerBottle("c", Teardown("t"), image_id="sha256:" + "a" * 64,
                     run=RunSpec(name="c", env_names=["TOKEN"]), env={"TOKEN": "abc123"})
    argv = b.agent_argv([], tty=False)
    assert "--env=TOKEN" in argv and not any("abc123" in a for a in argv)
