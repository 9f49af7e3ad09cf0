"""bottle.memo: an answer is replayed only when every input is as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bottle import memo

ARGV = ["prepull", "--quiet"]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "compose.yml").write_text("services: {}\n")
    return work


def _record(here: Path, **kw: object) -> bool:
    return memo.record("prepull", ARGV, str(here), read=[str(here / "compose.yml"),
                                                       str(here / "absent.yml")],
                       stat=["/usr", "/"], answer={"images": ["a:1"]}, **kw)  # type: ignore[arg-type]


def test_an_unchanged_run_gets_its_answer(here: Path) -> None:
    assert _record(here)
    assert memo.recall("prepull", ARGV) == {"images": ["a:1"]}
    assert memo.recall("prepull", ["prepull"]) is None  # another command line


@pytest.mark.parametrize("change", ["content", "appears", "environment", "cwd", "forget"])
def test_any_change_is_a_miss(here: Path, monkeypatch: pytest.MonkeyPatch,
                              change: str) -> None:
    assert _record(here)
    if change == "content":
        (here / "compose.yml").write_text("services: {a: {image: b}}\n")
    elif change == "appears":
        (here / "absent.yml").write_text("")
    elif change == "environment":
        monkeypatch.setenv("ANYTHING", "x")
    elif change == "cwd":
        monkeypatch.chdir(here.parent)
    else:
        memo.forget("prepull", ARGV)
    assert memo.recall("prepull", ARGV) is None


@pytest.mark.parametrize(("name", "value", "hit"), [
    ("UNRELATED_TO_IT", "x", True),      # a variable nothing here reads
    ("PS1", "$ ", True),
    ("VERSION", "9", False),             # one the run named
    ("VERSION", "", False),              # set, if empty
    ("COMPOSE_PROFILES", "debug", False),  # any compose, docker, bottle or Python one
    ("DOCKER_HOST", "unix:///x", False),
    ("BOTTLE_JOBS", "2", False),
    ("PYTHONPATH", "/x", False),
    ("XDG_CONFIG_HOME", "/x", False),
    ("PATH", "/nowhere", False),
    ("HOME", "/nowhere", False),
])
def test_a_memo_that_names_its_variables_ignores_the_others(
        here: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str,
        hit: bool) -> None:
    for var in ("VERSION", "UNRELATED_TO_IT", "COMPOSE_PROFILES", "BOTTLE_JOBS"):
        monkeypatch.delenv(var, raising=False)
    assert _record(here, env=["VERSION"])
    before = os.environ.get(name)
    monkeypatch.setenv(name, value)
    assert (memo.recall("prepull", ARGV) is not None) is hit
    if before is None:
        monkeypatch.delenv(name)
    else:
        monkeypatch.setenv(name, before)
    assert memo.recall("prepull", ARGV) == {"images": ["a:1"]}  # as it was: a hit again


def test_a_named_variable_that_goes_away_is_a_miss(here: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERSION", "1")
    assert _record(here, env=["VERSION"])
    monkeypatch.delenv("VERSION")
    assert memo.recall("prepull", ARGV) is None


def test_a_stat_too_fresh_to_trust_writes_no_memo(here: Path) -> None:
    assert not memo.record("prepull", ARGV, str(here), read=[], stat=[str(here)],
                           answer=1)
    assert memo.recall("prepull", ARGV) is None


def test_a_changed_stat_is_a_miss(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = here / "old"
    old.mkdir()
    assert memo.record("prepull", ARGV, str(here), read=[], stat=[str(old)], answer=1) \
        is False  # made now: racy
    monkeypatch.setattr(memo, "_RACY_NS", 0)
    assert memo.record("prepull", ARGV, str(here), read=[], stat=[str(old)], answer=1)
    assert memo.recall("prepull", ARGV) == 1
    (old / "new-entry").touch()  # the directory's listing changed
    assert memo.recall("prepull", ARGV) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_a_damaged_memo_is_a_miss(here: Path, damage: str) -> None:
    assert _record(here)
    (path,) = (Path(os.environ["BOTTLE_CACHE_DIR"]) / "prepull").glob("memo-*")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:-5], "flip": data[:-1] + bytes([data[-1] ^ 1]),
                      "garbage": b"BBMEMO1\0" + os.urandom(64), "empty": b""}[damage])
    assert memo.recall("prepull", ARGV) is None


def test_a_read_only_cache_writes_nothing_and_says_so(here: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes read-only directories anyway")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("BOTTLE_CACHE_DIR", str(ro))
    assert not _record(here)


def test_a_relative_cache_root_is_no_memo(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTTLE_CACHE_DIR", "relative/cache")
    assert not _record(here)
    assert memo.recall("prepull", ARGV) is None


def test_the_root_is_the_stores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cache import cache_root

    for env in ({"BOTTLE_CACHE_DIR": str(tmp_path / "c")},
                {"BOTTLE_CACHE_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "x")},
                {"BOTTLE_CACHE_DIR": "", "XDG_CACHE_HOME": "relative", "HOME": str(tmp_path)},
                {"BOTTLE_CACHE_DIR": "~/c2", "HOME": str(tmp_path)}):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert memo.cache_root() == str(cache_root())
