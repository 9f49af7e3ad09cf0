"""Our .dockerignore selection equals what the Docker daemon receives, checked by
building the context into an image and listing it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bottle.tools import docker
from cache.digest import _walk
from cache.dockerignore import Matcher
from tests.conftest import static_busybox

FILES = [
    "app/main.py", "app/main.pyc", "app/sub/deep/x.pyc", "app/keep.log", "app/other.log",
    "docs/README.md", "docs/guide.md", "docs/keep/me.md", "logs/a.log", "logs/keep.log",
    "node_modules/pkg/index.js", "build/out.bin", "buildx/out.bin", "notes.txt", "notes.md",
    "secret.env", "vendor/x/y/z.go", "a[b].txt", "dir with space/f.txt", "x/y/tmp_1.tmp",
    "x/y/tmp_22.tmp", ".git/HEAD", ".hidden", "empty-dir/", "top.log",
]

IGNORE = """
# typical project ignores, with exceptions, ** and character classes
**/*.pyc
*.log
!app/keep.log
docs
!docs/README.md
node_modules/
build/**
/secret.env
vendor/**/*.go
x/y/tmp_?.tmp
.git
notes.[mt]*
!notes.md
logs
!**/keep.log
"""


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    for f in FILES:
        p = ctx / f
        if f.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f)
    (ctx / "app" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(ctx / "app" / "run.sh", 0o755)
    os.symlink("main.py", ctx / "app" / "link.py")
    (ctx / ".dockerignore").write_text(IGNORE)
    (ctx / "busybox").write_bytes(static_busybox().read_bytes())
    os.chmod(ctx / "busybox", 0o755)
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCOPY . /ctx/\n')
    return ctx


def test_selection_matches_the_daemon(engine: str, context: Path, tmp_path: Path) -> None:
    image = docker.build_image(context, "bot-bottle-test/ignore:it", iidfile=tmp_path / "iid")
    listing = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "find", "/ctx", "-mindepth", "1"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    received = sorted(p.removeprefix("/ctx/") for p in listing if p)
    ours = sorted(rel for rel, _ in _walk(context, Matcher.for_context(context,
                                                                       always=["Dockerfile"])))
    # Docker creates the parent directories of re-included files; we list only what is
    # sent itself, so compare files and links, and check our directories are a subset.
    files_received = {p for p in received if not (context / p).is_dir() or
                      (context / p).is_symlink()}
    files_ours = {p for p in ours if not (context / p).is_dir() or (context / p).is_symlink()}
    assert files_ours == files_received
    assert set(ours) <= set(received)
    # Sanity: the interesting cases went the way Docker's rules say.
    assert "top.log" not in files_ours and "app/other.log" in files_ours  # * stays in its dir
    assert "docs/README.md" in files_ours and "docs/guide.md" not in files_ours
    assert "logs/keep.log" not in files_ours  # an excluded dir is not searched for !**/
    assert "notes.md" in files_ours and "notes.txt" not in files_ours
    assert "x/y/tmp_22.tmp" in files_ours and "x/y/tmp_1.tmp" not in files_ours
