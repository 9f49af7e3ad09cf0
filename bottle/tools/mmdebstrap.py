"""mmdebstrap: argv builders, runner and `MmdebstrapError`.

mmdebstrap writes a Debian root filesystem as a tarball from Debian packages alone
(no image registry), which `docker import` turns into a base image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from bottle.tools import _proc
from bottle.tools._argv import opt, repeat
from bottle.tools._proc import Command, Tool, ToolError


class MmdebstrapError(ToolError):
    """mmdebstrap exited non-zero (mirror unreachable, unknown package, not root, ...)."""


TOOL = Tool(
    "mmdebstrap",
    "install it to make a base image from Debian packages (Debian: apt-get install mmdebstrap)",
    MmdebstrapError,
)

_VERSION = re.compile(r"mmdebstrap\s+(\S+)")


def version_cmd() -> Command:
    return TOOL.cmd("--version")


def create_cmd(
    suite: str,
    target: Path,
    *,
    mirrors: Sequence[str] = (),
    variant: str | None = None,
    include: Sequence[str] = (),
    architectures: Sequence[str] = (),
    aptopts: Sequence[str] = (),
    dpkgopts: Sequence[str] = (),
    mode: str | None = None,
) -> Command:
    """`mmdebstrap [options] SUITE TARGET [MIRROR...]`; the format follows TARGET's suffix
    (`.tar`: an uncompressed tarball). A mirror is a URL or a whole sources.list line."""
    return TOOL.cmd(*opt("--variant", variant), *opt("--mode", mode),
                    *opt("--include", ",".join(include)),
                    *opt("--architectures", ",".join(architectures)),
                    *repeat("--aptopt", aptopts), *repeat("--dpkgopt", dpkgopts),
                    suite, str(target), *mirrors)


def version() -> str:
    """The installed mmdebstrap's version, e.g. `1.3.5`."""
    r = _proc.run(version_cmd())
    m = _VERSION.search(r.stdout) or _VERSION.search(r.stderr)
    if not m:
        raise MmdebstrapError(r.argv, 0, r.stdout, r.stderr, reason="no version in its output")
    return m.group(1)


def fingerprint() -> str:
    """Where the installed mmdebstrap is and its file's identity: unchanged means the same
    version, so callers can cache `version()` without running it again."""
    path = TOOL.require()
    st = os.stat(path)
    return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def create(
    suite: str,
    target: Path,
    *,
    mirrors: Sequence[str] = (),
    variant: str | None = None,
    include: Sequence[str] = (),
    architectures: Sequence[str] = (),
    aptopts: Sequence[str] = (),
    dpkgopts: Sequence[str] = (),
    progress: bool = False,
    timeout: float | None = None,
) -> None:
    _proc.run(
        create_cmd(suite, target, mirrors=mirrors, variant=variant, include=include,
                   architectures=architectures, aptopts=aptopts, dpkgopts=dpkgopts),
        progress=progress, timeout=timeout,
    )
