"""bottle.reference against a real engine: `docker tag IMAGE REF` (the CLI's parser, then
the engine's) on the generated candidates without a digest (tag refuses digests).

The engine here (dockerd 20.10) is older than the grammar we follow (distribution/reference
v0.6, as in docker 28 and compose 2.40), and stricter in four known ways; every difference
must be one of them, and the engine must never take a reference we refuse."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottle import reference
from bottle.errors import BottleError
from bottle.tools import docker
from tests.conftest import busybox_context
from tests.reference_cases import candidates, engine_tags


def _older_engine_refuses(ref: reference.ImageRef) -> str | None:
    """Why an engine using distribution/reference before v0.6 refuses `ref`, if it does."""
    if len(ref.name) > 255:
        return "length counted over domain + path"
    if ref.domain.startswith("["):
        return "no IPv6 hosts"
    if ref.domain.lower() != ref.domain:
        return "an uppercase first part is not a host"
    if ref.domain == reference.DEFAULT_DOMAIN and ref.path in ("library/sha256", "sha256"):
        return "a name that looks like a digest algorithm"
    return None


@pytest.fixture
def image(engine: str, tmp_path: Path) -> Iterator[str]:
    ctx = busybox_context(tmp_path / "ctx")
    iid = docker.build_image(ctx, "bb-reference:src", iidfile=tmp_path / "iid")
    yield iid
    subprocess.run(["docker", "rmi", "-f", "bb-reference:src"], capture_output=True, check=False)


def test_engine_tags_what_we_accept(image: str) -> None:
    n = int(os.environ.get("BB_REF_CANDIDATES", "250"))
    refs = [r for r in candidates(n) if "@" not in r]
    verdicts = list(engine_tags(refs, image))
    explained: dict[str, int] = {}
    unexplained = []
    for ref, engine_ok, why in verdicts:
        ours = _parse(ref)
        if engine_ok == (ours is not None):
            continue
        reason = _older_engine_refuses(ours) if ours is not None and not engine_ok else None
        if reason is None:
            unexplained.append((ref, engine_ok, why))
        else:
            explained[reason] = explained.get(reason, 0) + 1
    valid = sum(ok for _, ok, _ in verdicts)
    print(f"reference vs docker tag: {len(verdicts)} candidates, {valid} tagged, "
          f"known engine differences {explained}")
    assert valid > len(verdicts) // 5
    assert unexplained == []


def _parse(ref: str) -> reference.ImageRef | None:
    try:
        return reference.parse_tag_target(ref)
    except BottleError:
        return None
