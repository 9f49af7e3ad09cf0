"""The engine API's HTTP client (bottle/tools/_http.py) against a server on a unix socket
of the test's own, and DOCKER_HOST read as the docker CLI reads it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle.tools import _http


def _serve(path: Path, answer: bytes, seen: list[bytes]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            seen.append(head + b"\r\n\r\n" + body)
            for i in range(0, len(answer), 7):  # in small pieces: reads must reassemble
                conn.sendall(answer[i:i + 7])
        server.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "engine.sock"


def _ask(sock: Path, answer: bytes, **kw: object) -> tuple[_http.Answer, bytes]:
    seen: list[bytes] = []
    t = _serve(sock, answer, seen)
    got = _http.request(_http.Endpoint(unix=str(sock)), str(kw.pop("method", "GET")),
                        str(kw.pop("path", "/x")), timeout=5, **kw)  # type: ignore[arg-type]
    t.join(5)
    return got, seen[0]


def test_content_length_body_and_the_request_it_sent(sock: Path) -> None:
    got, sent = _ask(sock, b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 11\r\n\r\n{\"Id\":\"ab\"}",
                     method="POST", path="/containers/create?name=a",
                     body=b'{"Env":["S=v"]}', headers={"Content-Type": "application/json"})
    assert (got.status, got.body) == (201, b'{"Id":"ab"}')
    assert got.headers["content-type"] == "application/json"
    assert sent.startswith(b"POST /containers/create?name=a HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 15\r\n" in sent and sent.endswith(b'{"Env":["S=v"]}')


def test_chunked_body_with_extensions_and_trailers(sock: Path) -> None:
    got, _ = _ask(sock, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert (got.status, got.body) == (200, b"hello world")


def test_a_body_that_ends_with_the_connection_and_a_1xx_before_the_answer(sock: Path) -> None:
    got, _ = _ask(sock, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\n"
                        b"Server: x\r\n\r\nno such image")
    assert (got.status, got.body) == (404, b"no such image")


def test_no_body_for_204(sock: Path) -> None:
    got, _ = _ask(sock, b"HTTP/1.1 204 No Content\r\n\r\n", method="DELETE")
    assert (got.status, got.body) == (204, b"")


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH\r\n\r\n",  # not HTTP
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # closed mid-body
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
])
def test_answers_that_are_not_sound_http_are_os_errors(sock: Path, answer: bytes) -> None:
    with pytest.raises(OSError):
        _ask(sock, answer)


def test_no_engine_listening_is_an_os_error(sock: Path) -> None:
    with pytest.raises(OSError):
        _http.request(_http.Endpoint(unix=str(sock)), "GET", "/_ping", timeout=1)


@pytest.mark.parametrize("path", ["x", "/a b", "/a\r\nX: y"])
def test_a_path_that_would_split_the_request_is_refused(sock: Path, path: str) -> None:
    with pytest.raises(ValueError):
        _http.request(_http.Endpoint(unix=str(sock)), "GET", path)


@pytest.mark.parametrize(("host", "want"), [
    (None, "unix:///var/run/docker.sock"),
    ("", "unix:///var/run/docker.sock"),
    ("unix:///tmp/d.sock", "unix:///tmp/d.sock"),
    ("tcp://127.0.0.1:2376", "tcp://127.0.0.1:2376"),
    ("tcp://localhost", "tcp://localhost:2375"),
    ("tcp://[::1]:2380", "tcp://::1:2380"),
    ("tcp://127.0.0.1:2375/prefix", "tcp://127.0.0.1:2375"),
    ("ssh://me@host", None),  # only the CLI knows the way
    ("npipe:////./pipe/docker_engine", None),
    ("unix://relative.sock", None),
    ("tcp://127.0.0.1:port", None),
    ("127.0.0.1:2375", None),
])
def test_docker_host_as_an_endpoint(monkeypatch: pytest.MonkeyPatch, host: str | None,
                                    want: str | None) -> None:
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    if host is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", host)
    got = _http.from_env()
    assert (repr(got) if got else None) == want


def test_tls_and_contexts_go_by_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    assert _http.from_env() is None
    monkeypatch.delenv("DOCKER_TLS_VERIFY")
    monkeypatch.setenv("DOCKER_CONTEXT", "remote")
    assert _http.from_env() is None


@pytest.mark.parametrize("text", ["busybox:1.36", "a b/ü?&=#%", "sha256:" + "a" * 64, ""])
def test_quote_is_urllib_quote(text: str) -> None:
    from urllib.parse import quote

    assert _http.quote(text) == quote(text, safe="")
    assert _http.quote(text, safe="/") == quote(text, safe="/")
