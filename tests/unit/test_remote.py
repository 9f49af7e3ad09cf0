"""The shared cache's pure parts: names, records, smolvm's OCI form, skopeo argv."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from bottle import remote
from bottle.errors import BottleError
from bottle.remote import Record, Remote, RemoteMiss
from bottle.tools import skopeo


def test_remote_names_a_repository_without_tag_or_digest() -> None:
    r = Remote.parse("127.0.0.1:5000/team/agents", push=True)
    assert r.push and r.tag("ctx-x") == "127.0.0.1:5000/team/agents:ctx-x"
    assert r.at("sha256:" + "a" * 64) == "127.0.0.1:5000/team/agents@sha256:" + "a" * 64
    for bad in ("team/agents:latest", "--help", "ghcr.io/Team/Agents", "ghcr.io/x@sha256:1",
                "agents"):
        with pytest.raises(BottleError):
            Remote.parse(bad)


def test_keys_carry_context_architecture_and_smolvm_version() -> None:
    ctx = "0123456789abcdef" * 2
    assert remote.record_tag(ctx, "amd64") == f"ctx-{ctx}-amd64"
    assert remote.image_tag(ctx, "arm64") == f"img-{ctx}-arm64"
    assert remote.smolmachine_tag("fedcba9876543210", "amd64", "1.32.2") == \
        "sm-fedcba9876543210-amd64-smolvm1.32.2"
    for tag in (remote.record_tag(ctx, "amd64"), remote.smolmachine_tag("f" * 16, "amd64",
                                                                         "1.32.2")):
        assert len(tag) <= 128  # the registry's limit on tags


def test_a_record_round_trips_and_refuses_another_architecture() -> None:
    rec = Record("c" * 32, "amd64", "sha256:" + "1" * 64, "sha256:" + "2" * 64,
                 {"1.32.2": {"digest": "sha256:" + "3" * 64, "key": "1" * 16}})
    assert Record.from_json(rec.to_json(), "c" * 32, "amd64") == rec
    with pytest.raises(RemoteMiss, match="another context or architecture"):
        Record.from_json(rec.to_json(), "c" * 32, "arm64")  # a miss, never a wrong hit
    with pytest.raises(RemoteMiss, match="another context"):
        Record.from_json(rec.to_json(), "d" * 32, "amd64")
    with pytest.raises(RemoteMiss, match="unreadable"):
        Record.from_json(b"{not json", "c" * 32, "amd64")


def test_the_pack_manifest_is_read_from_the_footer(tmp_path: Path) -> None:
    manifest = json.dumps({"host_platform": "linux/x86_64", "mode": "container"}).encode()
    body = b"assets" * 100
    footer = bytearray(64)
    footer[0:8] = b"SMOLPACK"
    struct.pack_into("<I", footer, 8, 1)
    struct.pack_into("<QQ", footer, 36, len(body), len(manifest))
    packed = tmp_path / "a.smolmachine"
    packed.write_bytes(body + manifest + bytes(footer))
    assert remote.pack_manifest(packed) == manifest
    plain = tmp_path / "b.smolmachine"
    plain.write_bytes(b"x" * 10)
    assert remote.pack_manifest(plain) == b"{}"


def test_copy_argv_keeps_tls_except_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/x.sock")
    a = skopeo.copy_cmd(skopeo.daemon("sha256:" + "a" * 64),
                        skopeo.registry("127.0.0.1:5000/t/a:img-x")).argv
    assert "--dest-tls-verify=false" in a and "--src-daemon-host=unix:///run/x.sock" in a
    assert a[-3:] == ["--", "docker-daemon:sha256:" + "a" * 64,
                      "docker://127.0.0.1:5000/t/a:img-x"]
    b = skopeo.copy_cmd(skopeo.registry("ghcr.io/t/a@sha256:" + "b" * 64),
                        skopeo.daemon("x:1")).argv
    assert not any("tls-verify" in x for x in b) and "--preserve-digests" in b
    assert not any("password" in x or "creds" in x for x in a + b)  # credentials stay off


def test_a_remote_that_never_answers_is_a_miss_after_the_lookup_timeout(tmp_path: Path) -> None:
    """A registry that accepts and never answers: the record lookup gives up after
    LOOKUP_TIMEOUT (one warning and a local build follow), not after a minute."""
    import contextlib
    import shutil
    import socket
    import threading

    from cache.store import Store

    if not shutil.which("skopeo"):
        pytest.skip("needs skopeo")
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        r = Remote.parse(f"127.0.0.1:{server.getsockname()[1]}/team/agents")
        with pytest.raises(RemoteMiss) as miss:
            remote.get_record(r, Store(tmp_path / "cache"), "c" * 32, "amd64")
        assert str(miss.value) == f"timed out after {remote.LOOKUP_TIMEOUT:g}s"
        assert held  # it did try
    finally:  # shut down, so that no thread is left blocked (see _Silent in the prepull
        for sock in (server, *held):  # engine tests)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        acceptor.join(10)
