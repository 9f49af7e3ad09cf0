"""One HTTP/1.1 request to the Docker engine's API over its socket, and its answer.

The warm paths ask the engine one or two questions per run (is this image there?), so
this stays small: a request with an optional body, an answer whose body is delimited by
Content-Length, chunked transfer coding or the end of the connection. `http.client`
would do the same, but importing it (with `email`, `ssl` and `socket`) costs more than
the question: about a tenth of a warm no-op. Built on `_socket`, the C module `socket`
wraps, for the same reason.

Errors are `OSError`s (refused, reset, timed out, an answer that is not HTTP), so the
caller has one thing to catch.
"""

from __future__ import annotations

import _socket
import os

# Not `typing.TYPE_CHECKING`: importing typing is a tenth of a replayed run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_MAX_HEAD = 64 << 10


class BadAnswer(OSError):
    """The engine's answer is not an HTTP/1.x response we can read."""


class Endpoint:
    """Where the engine listens: a unix socket path, or a TCP host and port."""

    __slots__ = ("host", "port", "unix")

    def __init__(self, *, unix: str | None = None, host: str = "localhost",
                 port: int = 2375) -> None:
        self.unix, self.host, self.port = unix, host, port

    def connect(self, timeout: float | None) -> _socket.socket:
        if self.unix is not None:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            address: Any = self.unix
        else:
            family, kind, proto, _, address = _socket.getaddrinfo(
                self.host, self.port, 0, _socket.SOCK_STREAM)[0]
            sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def __repr__(self) -> str:
        return f"unix://{self.unix}" if self.unix is not None else f"tcp://{self.host}:{self.port}"


_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "") -> str:
    """Percent-encoding as `urllib.parse.quote` does it (UTF-8; letters, digits, `_.-~`
    and `safe` kept), without importing urllib for it on the warm path."""
    keep = _ALWAYS_SAFE | frozenset(safe.encode())
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in text.encode("utf-8"))


def from_env() -> Endpoint | None:
    """The engine's plain-HTTP endpoint from DOCKER_HOST; None where only the CLI knows the
    way (a docker context, TLS, ssh://, anything unusual)."""
    if os.environ.get("DOCKER_CONTEXT"):
        return None
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    scheme, sep, rest = host.partition("://")
    if not sep:
        return None
    if scheme == "unix":
        return Endpoint(unix=rest) if rest.startswith("/") else None
    if scheme != "tcp" or os.environ.get("DOCKER_TLS_VERIFY"):
        return None
    netloc = rest.split("/", 1)[0]
    if netloc.startswith("["):  # [v6 address]:port
        name, _, after = netloc[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        name, _, port_text = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if port_text and not port_text.isdigit():
        return None
    return Endpoint(host=name or "localhost", port=int(port_text or 2375))


class Answer:
    """An HTTP response: status, headers (names lower-cased) and the whole body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def request(endpoint: Endpoint, method: str, path: str, *, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0,
            connected: Callable[[_socket.socket], object] | None = None) -> Answer:
    """Send one request on a connection of its own and read the whole answer.
    `connected` is given the socket once it is connected (to shut it down from another
    thread: the answer then ends in an OSError)."""
    if any(c in path for c in " \r\n") or not path.startswith("/"):
        raise ValueError(f"not a request path: {path!r}")
    lines = [f"{method} {path} HTTP/1.1", "Host: docker", "Connection: close",
             "User-Agent: bot-bottle"]
    for name, value in (headers or {}).items():
        if any(c in name + value for c in "\r\n"):
            raise ValueError(f"a header with a line break: {name!r}")
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sock = endpoint.connect(timeout)
    try:
        if connected is not None:
            connected(sock)
        sock.sendall(head + (body or b""))
        return _read_answer(_Reader(sock), method)
    finally:
        sock.close()


def upgrade(endpoint: Endpoint, method: str, path: str, *,
            timeout: float = 10.0) -> tuple[int, bytes, _socket.socket, bytes]:
    """A request that turns the connection into a raw stream (the engine's attach):
    (status, the body of a refusal, the socket, bytes of the stream already read). The
    caller owns the socket (closed here on a refusal)."""
    if any(c in path for c in " \r\n") or not path.startswith("/"):
        raise ValueError(f"not a request path: {path!r}")
    head = (f"{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: bot-bottle\r\n"
            "Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    sock = endpoint.connect(timeout)
    try:
        sock.sendall(head.encode("latin-1"))
        reader = _Reader(sock)
        status, headers = _head(reader)
        if status in (101, 200):
            return status, b"", sock, reader.buf
        body = _body(reader, headers)
    except BaseException:
        sock.close()
        raise
    sock.close()
    return status, body, sock, b""


class _Reader:
    """Buffered reads from a socket."""

    __slots__ = ("buf", "sock")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _more(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise BadAnswer("an answer line longer than 64 KiB")
            if not self._more():
                raise BadAnswer("the connection closed mid-answer")
        out, self.buf = self.buf[:end], self.buf[end + 2:]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise BadAnswer("the connection closed mid-answer")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        out, self.buf = self.buf, b""
        return out


def message_of(body: bytes) -> str:
    """The engine's message in an error answer (its JSON `message`, else the text)."""
    import json

    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:300]


def read_answer(sock: _socket.socket, method: str) -> Answer:
    """The answer to a request sent on `sock` by hand (one whose answer comes later)."""
    return _read_answer(_Reader(sock), method)


def _head(reader: _Reader) -> tuple[int, dict[str, str]]:
    """An answer's status line and headers (names lower-cased)."""
    status_line = reader.line()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer(f"not an HTTP answer: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    while line := reader.line():
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BadAnswer(f"a malformed header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _read_answer(reader: _Reader, method: str) -> Answer:
    while True:
        status, headers = _head(reader)
        if not 100 <= status < 200:  # 1xx answers come before the real one
            break
    if method == "HEAD" or status in (204, 304):
        return Answer(status, headers, b"")
    return Answer(status, headers, _body(reader, headers))


def _body(reader: _Reader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _chunked(reader)
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise BadAnswer("a malformed Content-Length") from None
        return reader.exactly(length)
    return reader.rest()


def _chunked(reader: _Reader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = reader.line().split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise BadAnswer(f"a malformed chunk size: {size_line[:20]!r}") from None
        if size == 0:
            while reader.line():  # trailers
                pass
            return b"".join(parts)
        parts.append(reader.exactly(size))
        if reader.exactly(2) != b"\r\n":
            raise BadAnswer("a chunk without its line end")
