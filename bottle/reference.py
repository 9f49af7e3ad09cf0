"""Image references, checked by the grammar of distribution/reference (v0.6, as vendored by
docker 28 and compose 2.40): `[domain[:port]/]path[:tag][@digest]`, normalized the way
`docker pull` reads a name (`busybox` is `docker.io/library/busybox`).

A value that comes from a compose file or a config is checked here before it reaches any
argv, so that `image: "--help"` is a bad reference, never a flag.
"""

from __future__ import annotations

import re

from bottle.errors import BottleError
from cache.record import dataclass

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
_OFFICIAL = "library/"
MAX_PATH = 255  # distribution/reference v0.6 limits the path (v0.5 and older: domain + path)

# The grammar, ASCII only (Go's \w and [[:xdigit:]] are ASCII; Python's \w is not).
# Patterns are compiled where first used (re's cache keeps them): a launch needs none.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"

_REFERENCE = rf"((?:{_DOMAIN}/)?{_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?"
_NAME = rf"(?:({_DOMAIN})/)?({_PATH})"
_IMAGE_ID = r"[a-f0-9]{64}"
# go-digest: the algorithms docker links in, each with its exact lowercase-hex length.
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = r"[a-f0-9]+"


@dataclass(frozen=True)
class ImageRef:
    """A valid, normalized reference. `str()` is the full form docker pulls."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def familiar(self) -> str:
        """The short form docker prints (`busybox:1`, `ghcr.io/o/x@sha256:...`)."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            rest = self.path.removeprefix(_OFFICIAL)
            name = rest if "/" not in rest else self.path
        return name + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def _bad(ref: str, why: str) -> BottleError:
    return BottleError(f"bad image reference {ref!r}: {why}")


def _split_domain(ref: str) -> tuple[str, str]:
    """docker's rule for whether the first component names a registry."""
    first, slash, rest = ref.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, _OFFICIAL + ref
    if first == _LEGACY_DOMAIN:
        domain, rest = DEFAULT_DOMAIN, rest
    elif first == "localhost" or any(c in first for c in ".:") or first.lower() != first:
        domain = first
    else:
        domain, rest = DEFAULT_DOMAIN, ref
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = _OFFICIAL + rest
    return domain, rest


def _check_digest(ref: str, digest: str) -> None:
    algorithm, _, hexpart = digest.partition(":")
    size = _DIGEST_HEX.get(algorithm)
    if size is None:
        raise _bad(ref, f"unsupported digest algorithm {algorithm!r} "
                        f"(one of {', '.join(_DIGEST_HEX)})")
    if len(hexpart) != size or not re.fullmatch(_LOWER_HEX, hexpart):
        raise _bad(ref, f"a {algorithm} digest is {size} lowercase hex digits")


def _why_not(ref: str, full: str) -> str:
    if ref.startswith("-"):
        return "starts with '-'"
    if any(c.isspace() for c in ref):
        return "contains whitespace"
    if re.fullmatch(_REFERENCE, full.lower()):
        return "repository name must be lowercase"
    return "not of the form [registry[:port]/]name[:tag][@digest]"


def parse(ref: str) -> ImageRef:
    """`ref` as docker reads an image name, or `BottleError` naming it and why not."""
    if not ref:
        raise _bad(ref, "empty")
    if re.fullmatch(_IMAGE_ID, ref):
        raise _bad(ref, "a 64-hex image ID is not a name")
    domain, remainder = _split_domain(ref)
    remote = remainder.partition(":")[0]
    if remote.lower() != remote:
        raise _bad(ref, "repository name must be lowercase")
    full = f"{domain}/{remainder}"
    m = re.fullmatch(_REFERENCE, full)
    if m is None:
        raise _bad(ref, _why_not(ref, full))
    name = re.fullmatch(_NAME, m[1])
    assert name is not None  # the reference grammar embeds the name grammar
    if len(name[2]) > MAX_PATH:
        raise _bad(ref, f"repository path longer than {MAX_PATH} characters")
    if m[3]:
        _check_digest(ref, m[3])
    return ImageRef(name[1] or "", name[2], m[2] or None, m[3] or None)


def parse_tag_target(ref: str) -> ImageRef:
    """A name `docker tag` can create: a valid reference without a digest."""
    parsed = parse(ref)
    if parsed.digest:
        raise _bad(ref, "a tag cannot carry a digest")
    return parsed


def check_any(ref: str) -> str:
    """`ref` when docker can look it up: an image ID (`sha256:<hex>` or 64 hex), or a
    valid reference. Returns it unchanged."""
    if re.fullmatch(_IMAGE_ID, ref):
        return ref
    algorithm, colon, hexpart = ref.partition(":")
    if colon and algorithm in _DIGEST_HEX and len(hexpart) == _DIGEST_HEX[algorithm] \
            and re.fullmatch(_LOWER_HEX, hexpart):
        return ref
    parse(ref)
    return ref
