"""mmdebstrap argv, version detection, the base's cache key and its failure paths
(a stand-in mmdebstrap on PATH; the real one runs in tests/integration/test_base_engine.py)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle import base
from bottle.base import BaseSpec, ensure_base
from bottle.errors import BottleError
from bottle.tools import mmdebstrap
from bottle.tools._proc import ToolMissing
from bottle.tools.docker import DockerError
from bottle.tools.mmdebstrap import MmdebstrapError
from cache.store import Store
from tests.helpers import UnixHTTPServer, fake_on_path

FAKE = """#!/bin/sh
python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$FAKE_MMDEBSTRAP_LOG"
if [ "$1" = --version ]; then echo "$FAKE_MMDEBSTRAP_VERSION"; exit 0; fi
echo "E: error downloading http://deb.example.invalid/debian/dists/bookworm/InRelease" >&2
exit 25
"""


@pytest.fixture
def fake_mmdebstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake_on_path(tmp_path, monkeypatch, "mmdebstrap", FAKE)
    log = tmp_path / "mmdebstrap.jsonl"
    monkeypatch.setenv("FAKE_MMDEBSTRAP_LOG", str(log))
    monkeypatch.setenv("FAKE_MMDEBSTRAP_VERSION", "mmdebstrap 1.3.5")
    return log


class _NoImages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine_without_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An engine API that has no image at all (the error paths need no real engine)."""
    sock = tmp_path / "engine.sock"
    server = UnixHTTPServer(str(sock), _NoImages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    yield
    server.shutdown()
    server.server_close()


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_create_argv() -> None:
    cmd = mmdebstrap.create_cmd(
        "bookworm", Path("/t/rootfs.tar"), mirrors=["deb http://m/debian bookworm main"],
        variant="apt", include=["nodejs", "git"], architectures=["amd64"],
        aptopts=['Acquire::https::CAInfo "/ca.crt"'], dpkgopts=["path-exclude=/usr/share/man/*"])
    assert cmd.argv == [
        "mmdebstrap", "--variant", "apt", "--include", "nodejs,git", "--architectures", "amd64",
        "--aptopt", 'Acquire::https::CAInfo "/ca.crt"',
        "--dpkgopt", "path-exclude=/usr/share/man/*",
        "bookworm", "/t/rootfs.tar", "deb http://m/debian bookworm main"]
    bare = mmdebstrap.create_cmd("sid", Path("o.tar"))
    assert bare.argv == ["mmdebstrap", "sid", "o.tar"]


def test_version_and_fingerprint(fake_mmdebstrap: Path, monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path) -> None:
    assert mmdebstrap.version() == "1.3.5"
    before = mmdebstrap.fingerprint()
    assert before.startswith(str((tmp_path / "bin" / "mmdebstrap").resolve()))
    (tmp_path / "bin" / "mmdebstrap").write_text(FAKE + "\n# a new release\n")
    assert mmdebstrap.fingerprint() != before
    monkeypatch.setenv("FAKE_MMDEBSTRAP_VERSION", "something else")
    with pytest.raises(MmdebstrapError, match="no version in its output"):
        mmdebstrap.version()


def test_missing_tool_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing) as err:
        ensure_base(BaseSpec(architecture="amd64"), store=Store(tmp_path / "c"))
    assert str(err.value) == ("mmdebstrap not found on PATH: install it to make a base image "
                              "from Debian packages (Debian: apt-get install mmdebstrap)")


def test_sources() -> None:
    assert BaseSpec(architecture="amd64").sources() == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main"]
    assert BaseSpec(suite="sid", architecture="amd64").sources() == [
        "deb http://deb.debian.org/debian sid main"]
    assert BaseSpec(mirror="http://m/d", security_mirror=None,
                    architecture="amd64").sources() == [
        "deb http://m/d bookworm main", "deb http://m/d bookworm-updates main"]


def test_key_covers_every_input() -> None:
    spec = BaseSpec(architecture="amd64")
    key = spec.key("1.3.5")
    assert key == BaseSpec(packages=(*reversed(base.DEFAULT_PACKAGES), "git"),
                           architecture="amd64").key("1.3.5")
    variants = [
        BaseSpec(suite="trixie", architecture="amd64"),
        BaseSpec(packages=(*base.DEFAULT_PACKAGES, "curl"), architecture="amd64"),
        BaseSpec(mirror="http://mirror.example/debian", architecture="amd64"),
        BaseSpec(security_mirror=None, architecture="amd64"),
        BaseSpec(architecture="arm64"),
        BaseSpec(variant="minbase", architecture="amd64"),
        BaseSpec(dpkg_opts=(), architecture="amd64"),
    ]
    keys = {v.key("1.3.5") for v in variants} | {spec.key("1.3.6")}
    assert key not in keys and len(keys) == len(variants) + 1
    assert spec.tag(key) == f"bot-bottle/base:bookworm-{key[:12]}"


def test_unknown_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.platform, "machine", lambda: "pdp11")
    with pytest.raises(BottleError, match=r"no Debian architecture known .*\(pdp11\)"):
        BaseSpec()
    monkeypatch.setattr(base.platform, "machine", lambda: "x86_64")
    assert BaseSpec().architecture == "amd64"


@pytest.mark.usefixtures("engine_without_images")
def test_failed_mmdebstrap_leaves_nothing(fake_mmdebstrap: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    spec = BaseSpec(architecture="amd64")
    with pytest.raises(MmdebstrapError) as err:
        ensure_base(spec, store=store)
    assert str(err.value) == ("mmdebstrap --variant apt failed (exit 25): E: error downloading "
                              "http://deb.example.invalid/debian/dists/bookworm/InRelease")
    assert list(store.entries()) == []
    assert not any((store.root / "tmp").iterdir())
    assert store.get_ref(base.IMAGE_REF_KIND, spec.key("1.3.5")) is None
    create = calls(fake_mmdebstrap)[-1]
    assert create[create.index("--include") + 1] == ",".join(base.DEFAULT_PACKAGES)
    assert create[-5] == "bookworm" and create[-4].endswith("/rootfs.tar")
    assert create[-3:] == spec.sources()
    assert "--aptopt" not in create  # plain-http mirrors need no CA


@pytest.mark.usefixtures("engine_without_images")
def test_version_asked_once_per_binary(fake_mmdebstrap: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "cache")
    for _ in range(2):
        with pytest.raises(MmdebstrapError):
            ensure_base(BaseSpec(architecture="amd64"), store=store)
    assert [c for c in calls(fake_mmdebstrap) if c == ["--version"]] == [["--version"]]


@pytest.mark.usefixtures("engine_without_images")
def test_https_mirror_trusts_the_ca_bundle(fake_mmdebstrap: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    spec = BaseSpec(mirror="https://deb.example.invalid/debian", architecture="amd64")
    with pytest.raises(MmdebstrapError):
        ensure_base(spec, store=Store(tmp_path / "cache"), ca_certs=ca)
    create = calls(fake_mmdebstrap)[-1]
    assert create[create.index("--aptopt") + 1] == f'Acquire::https::CAInfo "{ca}"'
    with pytest.raises(BottleError, match=r"the CA bundle .*/nope\.crt is not a file"):
        ensure_base(spec, store=Store(tmp_path / "cache"), ca_certs=tmp_path / "nope.crt")


def test_engine_down_fails_before_mmdebstrap(fake_mmdebstrap: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    with pytest.raises(DockerError) as err:
        ensure_base(BaseSpec(architecture="amd64"), store=Store(tmp_path / "cache"))
    assert "cannot reach the Docker engine" in str(err.value)
    assert "\n" not in str(err.value)
    assert all(c == ["--version"] for c in calls(fake_mmdebstrap))  # no rootfs attempted
