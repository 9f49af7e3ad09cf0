"""Config layering: defaults < bottle.toml / [tool.bottle] (found upward) < BOTTLE_* env <
options; every key declared once; bad values are one clear line naming their source."""

from __future__ import annotations

from pathlib import Path

import pytest

from bottle import config
from bottle.config import KEYS, Config, load
from bottle.errors import ConfigError
from cache import record


def test_layers_override_in_order(tmp_path: Path) -> None:
    (tmp_path / "bottle.toml").write_text(
        'context = "agent"\nbackend = "smolmachines"\nagent = "claude"\n'
        'build_args = { VERSION = "1.2" }\nsecrets = ["API_KEY"]\n')
    env = {"BOTTLE_BACKEND": "docker", "BOTTLE_NETWORK": "host"}
    cfg = load({"agent": "example", "backend": None}, start=tmp_path, environ=env)
    assert cfg.context == tmp_path / "agent"  # relative paths are from the config's dir
    assert cfg.backend == "docker" and cfg.network == "host" and cfg.agent == "example"
    assert cfg.build_args == {"VERSION": "1.2"} and cfg.secrets == ["API_KEY"]
    assert cfg.config_file == tmp_path / "bottle.toml" and cfg.project_root == tmp_path


def test_found_from_a_subdirectory_with_paths_from_its_own_directory(tmp_path: Path) -> None:
    (tmp_path / "bottle.toml").write_text('context = "agent"\nworkspace = "."\n')
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    cfg = load(start=deep, environ={})
    assert cfg.config_file == tmp_path / "bottle.toml"
    assert cfg.context == tmp_path / "agent" and cfg.workspace == tmp_path / "."


def test_the_nearest_config_wins_and_a_pyproject_without_our_table_is_passed(
        tmp_path: Path) -> None:
    (tmp_path / "bottle.toml").write_text('image = "outer:1"\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load(start=inner, environ={}).image == "outer:1"
    (inner / "pyproject.toml").write_text('[tool.bottle]\nimage = "inner:1"\n')
    assert load(start=inner, environ={}).image == "inner:1"


def test_pyproject_tool_bottle(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.bottle]\nimage = "mine:1"\njobs = 8\n')
    cfg = load(start=tmp_path, environ={})
    assert cfg.image == "mine:1" and cfg.jobs == 8


def test_both_files_in_one_directory_is_an_error_not_a_silent_choice(tmp_path: Path) -> None:
    """bottle.toml beside a pyproject.toml with [tool.bottle]: one of them would be ignored
    without a word (found by a new user whose [tool.bottle] held a bad value that nothing
    reported); a pyproject.toml that only mentions us elsewhere is no conflict."""
    (tmp_path / "bottle.toml").write_text('image = "a:1"\n')
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "bottle-helper"\n[tool.other]\nx = "[tool.bottle]"\n')
    assert load(start=tmp_path, environ={}).image == "a:1"
    (tmp_path / "pyproject.toml").write_text('[tool.bottle]\nimage = "b:1"\n')
    with pytest.raises(ConfigError) as err:
        load(start=tmp_path, environ={})
    assert str(err.value) == (f"{tmp_path} has both bottle.toml and [tool.bottle] in "
                              "pyproject.toml: keep one (the other would be ignored)")


def test_env_lists_and_tables(tmp_path: Path) -> None:
    cfg = load(start=tmp_path, environ={"BOTTLE_ENV": "A=1 B='two words'",
                                        "BOTTLE_ALLOW_CIDRS": "10.0.0.1/32 10.0.0.2/32",
                                        "BOTTLE_TTY": "false"})
    assert cfg.env == {"A": "1", "B": "two words"}
    assert cfg.allow_cidrs == ["10.0.0.1/32", "10.0.0.2/32"] and cfg.tty is False


@pytest.mark.parametrize(("toml", "env", "message"), [
    ('bakend = "docker"\n', {}, "unknown key 'bakend'"),
    ('backend = "podman"\n', {}, "backend = 'podman': expected one of docker"),
    ("jobs = 0\n", {}, "jobs = 0: expected a number from 1"),
    ("jobs = inf\n", {}, "jobs = inf: expected a whole number"),
    ("jobs = 2.5\n", {}, "expected a whole number"),
    ("tty = 3\n", {}, "expected true or false"),
    ("", {"BOTTLE_BAKEND": "x"}, "unknown environment variable BOTTLE_BAKEND"),
    ("", {"BOTTLE_JOBS": "many"}, "environment: jobs = 'many': expected a whole number"),
    ("backend = \n", {}, "bottle.toml"),
    # Issue 8.3: env keys must be variable names; values hold no NUL or line break.
    ('env = { "#X" = "v" }\n', {}, "not a valid environment variable name"),
    ('env = { "PATH=/evil:/bin#" = "v" }\n', {}, "not a valid environment variable name"),
    ('env = { A = "x\\u0000y" }\n', {}, "NUL or a line break"),
    ('env = { A = "x\\ny" }\n', {}, "NUL or a line break"),
    ('secrets = ["BAD-NAME"]\n', {}, "not a valid environment variable name"),
    # Issue 8.4: a network we do not know is an error, never full egress.
    ('network = "off"\n', {}, None),
    ('network = "--privileged"\n', {}, "expected none, host, egress or a docker network"),
    ('egress = ["http://evil"]\n', {}, "write the host name only"),
    ('allow_cidrs = ["everything"]\n', {}, "is not a CIDR"),
    ('memory = "-1g"\n', {}, "expected an amount"),
    ('cpus = "inf"\n', {}, "expected a number of CPUs"),
    ('json_out = true\n', {}, "unknown key 'json_out'"),
    ('agent_args = ["x"]\n', {}, "unknown key 'agent_args'"),
    # Values checked where they are read, with the key and its source named.
    ('image = "UPPER:tag"\n', {}, "image = 'UPPER:tag': bad image reference"),
    ('image = "a@sha256:' + "0" * 64 + '"\n', {}, "a tag cannot carry a digest"),
    ("", {"BOTTLE_REMOTE": "http://x"}, "environment: remote = 'http://x': bad image"),
    ('remote = "reg.example:5000/cache:v1"\n', {}, "give HOST\\[:PORT\\]/REPO, without a tag"),
    ('command = "sh -c \'x\'"\n', {}, "expected one program: its arguments go after --"),
    ('egress_network = "egress"\n', {}, "expected a docker network name"),
    ("", {"BOTTLE_EGRESS_NETWORK": "-x"}, "expected a docker network name"),
])
def test_bad_config_is_one_clear_line(tmp_path: Path, toml: str, env: dict[str, str],
                                      message: str | None) -> None:
    (tmp_path / "bottle.toml").write_text(toml)
    if message is None:  # a docker network name: accepted here, checked by the backend
        load(start=tmp_path, environ=env)
        return
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        load(start=tmp_path, environ=env)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("files", "message"), [
    ({"bottle.toml": b"image = \"caf\xe9\"\n"}, "not UTF-8"),
    ({"pyproject.toml": b"tool = 5\n"}, "[tool] must be a table"),
    ({"pyproject.toml": b"[tool]\nbottle = 5\n"}, "[tool.bottle] must be a table"),
])
def test_unreadable_files_are_one_line(tmp_path: Path, files: dict[str, bytes],
                                       message: str) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(start=tmp_path, environ={})


def test_defaults(tmp_path: Path) -> None:
    cfg = load(start=tmp_path, environ={})
    assert cfg.context is None and cfg.image is None  # resolved when a build needs them
    assert cfg.backend == "docker" and cfg.network is None and cfg.agent == "example"
    assert cfg.config_file is None


def test_every_field_is_declared_once() -> None:
    declared = [k.name for k in KEYS]
    assert len(declared) == len(set(declared))
    fields = {f.name for f in record.fields(Config)} - {"config_file", "project_root"}
    assert set(declared) == fields


def test_option_help_names_the_key_and_default_once() -> None:
    backend = next(o for o in config.options_for("launch") if o["name"] == "backend")
    assert backend["help"].count("config: backend") == 1
    assert backend["help"].endswith("[config: backend; default: docker]")
    assert "json_out" not in config.describe()  # only settable keys are listed as config


def test_egress_adds_to_the_profile_or_replaces_it(tmp_path: Path) -> None:
    from bottle.launch import spec_of
    from cache.store import Store

    (tmp_path / "bottle.toml").write_text(
        'agent = "claude"\negress_add = ["*.example.org:443", "api.anthropic.com"]\n'
        'secrets = []\n')
    spec = spec_of(load(start=tmp_path, environ={}), Store(tmp_path / "c"))
    assert spec.egress[:3] == ("api.anthropic.com", "claude.ai", "platform.claude.com")
    assert spec.egress[3:] == ("*.example.org:443",)  # added once, in order
    (tmp_path / "bottle.toml").write_text('agent = "claude"\negress = ["a.test"]\n'
                                          'secrets = []\n')
    assert spec_of(load(start=tmp_path, environ={}), Store(tmp_path / "c")).egress == (
        "a.test",)
