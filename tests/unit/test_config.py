"""Config layering: defaults < bottle.toml / [tool.bottle] < BOTTLE_* env < params."""

from __future__ import annotations

from pathlib import Path

import pytest

from bottle.config import load
from bottle.errors import ConfigError


def test_layers_override_in_order(tmp_path: Path) -> None:
    (tmp_path / "bottle.toml").write_text(
        'context = "agent"\nbackend = "smolmachines"\nagent = "codex"\n'
        'build_args = { VERSION = "1.2" }\nsecrets = ["API_KEY"]\n')
    env = {"BOTTLE_BACKEND": "docker", "BOTTLE_NETWORK": "host"}
    cfg = load({"agent": "aider", "backend": None}, cwd=tmp_path, environ=env)
    assert cfg.context == tmp_path / "agent"  # relative paths are from the config's dir
    assert cfg.backend == "docker" and cfg.network == "host" and cfg.agent == "aider"
    assert cfg.build_args == {"VERSION": "1.2"} and cfg.secrets == ["API_KEY"]
    assert cfg.dockerfile_path == tmp_path / "agent" / "Dockerfile"


def test_pyproject_tool_bottle(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.bottle]\nimage = "mine:1"\njobs = 8\n')
    cfg = load(cwd=tmp_path, environ={})
    assert cfg.image == "mine:1" and cfg.jobs == 8


def test_env_lists_and_tables(tmp_path: Path) -> None:
    cfg = load(cwd=tmp_path, environ={"BOTTLE_ENV": "A=1 B='two words'",
                                      "BOTTLE_ALLOW_CIDRS": "10.0.0.1/32 10.0.0.2/32",
                                      "BOTTLE_TTY": "false"})
    assert cfg.env == {"A": "1", "B": "two words"}
    assert cfg.allow_cidrs == ["10.0.0.1/32", "10.0.0.2/32"] and cfg.tty is False


@pytest.mark.parametrize(("toml", "env", "message"), [
    ('bakend = "docker"\n', {}, "unknown key 'bakend'"),
    ('backend = "podman"\n', {}, "backend = 'podman': expected one of docker"),
    ("jobs = 0\n", {}, "jobs = 0: expected a number >= 1"),
    ("tty = 3\n", {}, "expected true or false"),
    ("", {"BOTTLE_BAKEND": "x"}, "unknown environment variable BOTTLE_BAKEND"),
    ("", {"BOTTLE_JOBS": "many"}, "environment: jobs = 'many': expected a whole number"),
    ("backend = \n", {}, "bottle.toml"),
])
def test_bad_config_is_one_clear_line(tmp_path: Path, toml: str, env: dict[str, str],
                                      message: str) -> None:
    (tmp_path / "bottle.toml").write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        load(cwd=tmp_path, environ=env)
    assert "\n" not in str(err.value)


def test_default_context_is_the_example_agent(tmp_path: Path) -> None:
    cfg = load(cwd=tmp_path, environ={})
    assert cfg.context is None  # resolved only when a build needs it
    names = sorted(p.name for p in cfg.build_context.iterdir())
    assert names == [".dockerignore", "Dockerfile", "busybox", "claude"]
    assert cfg.backend == "docker" and cfg.network == "none" and cfg.agent == "claude"
