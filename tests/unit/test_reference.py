"""bottle.reference: the grammar's examples, then a differential test against the docker
CLI's own parser over generated candidates (fixed seed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bottle import reference
from bottle.errors import BottleError
from tests.reference_cases import candidates, cli_accepts

H64 = "a" * 64


@pytest.mark.parametrize(("ref", "domain", "path", "tag", "digest", "familiar"), [
    ("busybox", "docker.io", "library/busybox", None, None, "busybox"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None, "busybox:1.36"),
    ("docker.io/busybox", "docker.io", "library/busybox", None, None, "busybox"),
    ("index.docker.io/o/x:1", "docker.io", "o/x", "1", None, "o/x:1"),
    ("o/x", "docker.io", "o/x", None, None, "o/x"),
    ("localhost/x", "localhost", "x", None, None, "localhost/x"),
    ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None, "localhost:5000/a/b:t"),
    ("[::1]:5000/a@sha256:" + H64, "[::1]:5000", "a", None, "sha256:" + H64,
     "[::1]:5000/a@sha256:" + H64),
    ("Foo/bar", "Foo", "bar", None, None, "Foo/bar"),  # an uppercase first part is a host
    ("ghcr.io/o/x:v1@sha512:" + "b" * 128, "ghcr.io", "o/x", "v1", "sha512:" + "b" * 128,
     "ghcr.io/o/x:v1@sha512:" + "b" * 128),
    ("sha256:" + H64, "docker.io", "library/sha256", H64, None, "sha256:" + H64),
])
def test_valid(ref: str, domain: str, path: str, tag: str | None, digest: str | None,
               familiar: str) -> None:
    got = reference.parse(ref)
    assert (got.domain, got.path, got.tag, got.digest) == (domain, path, tag, digest)
    assert got.familiar == familiar
    assert reference.parse(str(got)) == got


@pytest.mark.parametrize(("ref", "why"), [
    ("", "empty"),
    ("--help", "starts with '-'"),
    ("busybox ", "contains whitespace"),
    (H64, "a 64-hex image ID is not a name"),
    ("Busybox", "must be lowercase"),
    ("o/X:1", "must be lowercase"),
    ("apache/airflow:|version|", "not of the form"),
    ("a:b:c", "not of the form"),
    ("a@sha256:" + "a" * 63, "a sha256 digest is 64 lowercase hex digits"),
    ("a@sha256:" + "A" * 64, "a sha256 digest is 64 lowercase hex digits"),
    ("a@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
    ("a" * 248, "longer than 255"),  # library/ + 248
    ("x/" + "a" * 254, "longer than 255"),
])
def test_invalid_is_one_line_naming_ref_and_why(ref: str, why: str) -> None:
    with pytest.raises(BottleError) as err:
        reference.parse(ref)
    msg = str(err.value)
    assert msg.startswith(f"bad image reference {ref!r}: ") and why in msg
    assert "\n" not in msg


def test_check_any_takes_ids_and_names() -> None:
    assert reference.check_any(H64) == H64
    assert reference.check_any("sha256:" + H64) == "sha256:" + H64
    assert reference.check_any("busybox:1") == "busybox:1"
    with pytest.raises(BottleError):
        reference.check_any("-o")


def test_same_verdicts_as_the_docker_cli(tmp_path: Path) -> None:
    """Every candidate gets the docker CLI's verdict (`docker pull -- REF`, stopped at the
    connect to an absent engine). N candidates: BB_REF_CANDIDATES (default 250)."""
    if not shutil.which("docker"):
        if os.environ.get("CI"):
            pytest.fail("docker CLI not on PATH")
        pytest.skip("docker CLI not on PATH")
    n = int(os.environ.get("BB_REF_CANDIDATES", "250"))
    verdicts = list(cli_accepts(candidates(n), tmp_path))
    valid = sum(ok for _, ok, _ in verdicts)
    assert valid > len(verdicts) // 5 and len(verdicts) - valid > len(verdicts) // 5
    differ = [(ref, ok, why) for ref, ok, why in verdicts if ok != _ours(ref)]
    print(f"reference vs docker CLI: {len(verdicts)} candidates, {valid} valid, "
          f"{len(differ)} differ")
    assert differ == []


def _ours(ref: str) -> bool:
    try:
        reference.parse(ref)
    except BottleError:
        return False
    return True
