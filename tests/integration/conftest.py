"""The offline base image, made once per test session (or once per cache, see below), and
the timings the engine tests measured (printed at the end of the run).

`ensure_base` runs mmdebstrap against the Debian mirror (minutes, cold). With
$BB_TEST_CACHE_DIR set, its tarball and image are kept there across runs (CI can
cache that directory); without it they go to a session temp dir and are removed, image
included, when the session ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle.base import BaseImage, ensure_base
from cache.store import Store

_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    return _TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TIMINGS:
        terminalreporter.section("engine timings (seconds)")
        for name, seconds in _TIMINGS.items():
            terminalreporter.write_line(f"{seconds:8.3f}  {name}")


@pytest.fixture(scope="session")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, bool]:
    """(store, kept): the store the base lives in, and whether it outlives the session."""
    kept = os.environ.get("BB_TEST_CACHE_DIR")
    root = Path(kept) if kept else tmp_path_factory.mktemp("base-cache")
    return Store(root), bool(kept)


@pytest.fixture(scope="session")
def debian_base(docker_host: str, base_store: tuple[Store, bool],
                timings: dict[str, float]) -> Iterator[BaseImage]:
    """The base image (`bottle base`), on the session's engine."""
    if not shutil.which("mmdebstrap"):
        msg = "the offline base needs mmdebstrap (apt-get install mmdebstrap)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    store, kept = base_store
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_HOST", docker_host)
        started = time.monotonic()
        image = ensure_base(store=store)
        how = "mmdebstrap+import" if image.built else "import" if image.imported else "cached"
        timings[f"ensure_base, first in session ({how})"] = time.monotonic() - started
        yield image
        if not kept:
            # Only an image this session imported: one the engine had before stays.
            if image.imported:
                subprocess.run(["docker", "rmi", image.ref], capture_output=True, check=False)
            shutil.rmtree(store.root, ignore_errors=True)
