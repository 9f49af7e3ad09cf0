"""An ephemeral OCI registry on 127.0.0.1 (Debian's `docker-registry`), always torn down."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bottle.tools import _proc
from bottle.tools._proc import Command, Tool, ToolError
from cache.record import dataclass


class RegistryError(ToolError):
    """The registry would not start or answer."""


TOOL = Tool(
    "docker-registry",
    "install a registry server (Debian: apt-get install docker-registry)",
    RegistryError,
)
_ALT = Tool("registry", TOOL.hint, RegistryError)


@dataclass(frozen=True)
class RegistryHandle:
    """Where to push to and pull from. `network` is the docker network, None for loopback."""

    network: str | None
    push_endpoint: str
    pull_endpoint: str


_CONFIG = """version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


def _tool() -> Tool:
    return TOOL if TOOL.available() or not _ALT.available() else _ALT


def serve_cmd(config: Path) -> Command:
    return _tool().cmd("serve", config)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def ephemeral_registry(*, tmp: Path, ready_timeout: float = 15.0) -> Iterator[RegistryHandle]:
    """A registry process on a free loopback port with its storage in a temp dir under
    `tmp` (the caller's work dir, which a later run sweeps if we are killed).

    The process and its storage are removed on exit, on error and on Ctrl-C; if this
    process is SIGKILLed the registry gets SIGKILL too (parent-death signal).
    """
    tool = _tool()
    tool.require()
    root = Path(tempfile.mkdtemp(prefix="registry.", dir=tmp))
    proc = None
    try:
        for _attempt in range(3):
            port = free_port()
            config = root / "config.yml"
            config.write_text(_CONFIG.format(root=root / "data", port=port))
            log = (root / "log").open("wb")
            proc = _proc.spawn(serve_cmd(config), log=log)
            log.close()
            deadline = time.monotonic() + ready_timeout
            while proc.poll() is None and time.monotonic() < deadline and not _answers(port):
                time.sleep(0.05)
            if proc.poll() is None and _answers(port):
                endpoint = f"127.0.0.1:{port}"
                yield RegistryHandle(None, endpoint, endpoint)
                return
            _proc.stop(proc)
        text = (root / "log").read_text(errors="replace")
        raise RegistryError(
            serve_cmd(config).argv, proc.returncode if proc else 1, "", text,
            reason="registry did not come up on 127.0.0.1",
        )
    finally:
        if proc is not None:
            _proc.stop(proc)
        shutil.rmtree(root, ignore_errors=True)
