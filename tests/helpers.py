from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def bottle(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 300, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `bottle` command (as `python -m bottle`) the way a user would (stdin: /dev/null,
    or a pipe that carries `input`)."""
    return subprocess.run(
        [sys.executable, "-m", "bottle", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        input=input, stdin=subprocess.DEVNULL if input is None else None,
    )


def spawn(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`bottle` started as from a shell's foreground: SIGINT at its default, whatever this
    run inherited (a test run started with `&` by a script has SIGINT ignored, and so
    would bottle, until its own handlers are in place)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bottle", *args], cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def docker_calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line]


def smolvm_calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An HTTP server on a unix socket: a stand-in engine API for error paths."""

    daemon_threads = True

    def get_request(self) -> tuple[object, tuple[str, int]]:
        sock, _ = self.socket.accept()
        return sock, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)


def fake_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                 script: str) -> Path:
    """A stand-in program `name` first on PATH for one test; returns the file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text(script)
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return exe
