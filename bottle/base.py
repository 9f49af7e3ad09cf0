"""The offline base image: Debian packages -> mmdebstrap rootfs tarball -> `docker import`.

Where `node:22-bookworm-slim` cannot be pulled (no Docker Hub, an air-gapped site), the
agent and the egress proxy build `FROM` this image instead. It has Node.js, npm, git,
ripgrep, the CA certificates and squid, all from the Debian archive.

Cached by its inputs: suite, packages, sources, architecture, variant and the mmdebstrap
version. The tarball is a store entry (so a pruned engine needs only `docker import`,
no mirror); the image is tagged and labelled with the key, and a ref records its id.
A warm `ensure_base` runs neither mmdebstrap nor docker: it asks the engine's API for
the tag and checks the label.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path

import xxhash

from bottle.errors import BottleError
from bottle.tools import docker, mmdebstrap
from cache import cache_root
from cache.record import dataclass, field
from cache.store import Store

DEFAULT_SUITE = "bookworm"
DEFAULT_PACKAGES = ("nodejs", "npm", "git", "ripgrep", "ca-certificates", "squid")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# Docs, man pages and translations are a fifth of the tree and nothing in a bottle reads
# them; copyright files stay, as Debian's own minimal images keep them.
DEFAULT_DPKG_OPTS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
)
ROOTFS_KIND = "debian-base"
IMAGE_REF_KIND = "debian-base-image"
TOOL_REF_KIND = "mmdebstrap-version"
ROOTFS = "rootfs.tar"
REPOSITORY = "bot-bottle/base"
LABEL = "bot-bottle.base"
_FORMAT = 1
_UNSTABLE = {"sid", "unstable", "experimental", "rc-buggy"}
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "armv7l": "armhf", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}


def host_architecture() -> str:
    """The Debian name of this machine's architecture (what `docker build` runs natively)."""
    machine = platform.machine().lower()
    try:
        return _ARCHES[machine]
    except KeyError:
        raise BottleError(f"base: no Debian architecture known for this machine ({machine})"
                          ) from None


@dataclass(frozen=True)
class BaseSpec:
    """What the base is made of. Every field is part of the cache key."""

    suite: str = DEFAULT_SUITE
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    mirror: str = DEFAULT_MIRROR
    security_mirror: str | None = DEFAULT_SECURITY_MIRROR
    architecture: str = field(default_factory=host_architecture)
    variant: str = "apt"
    dpkg_opts: tuple[str, ...] = DEFAULT_DPKG_OPTS

    def sources(self) -> list[str]:
        """sources.list lines: the suite and, for a stable release, its updates and
        security suites (a base without security updates would be a poor default)."""
        lines = [f"deb {self.mirror} {self.suite} main"]
        if self.suite not in _UNSTABLE:
            lines.append(f"deb {self.mirror} {self.suite}-updates main")
            if self.security_mirror:
                lines.append(f"deb {self.security_mirror} {self.suite}-security main")
        return lines

    def key(self, tool_version: str) -> str:
        data = {"format": _FORMAT, "suite": self.suite, "packages": sorted(set(self.packages)),
                "sources": self.sources(), "architecture": self.architecture,
                "variant": self.variant, "dpkg_opts": list(self.dpkg_opts),
                "mmdebstrap": tool_version}
        return xxhash.xxh3_128(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def tag(self, key: str) -> str:
        return f"{REPOSITORY}:{self.suite}-{key[:12]}"


@dataclass(frozen=True)
class BaseImage:
    """The base image in the engine: `ref` (a tag) and `image_id`. `built`: mmdebstrap ran;
    `imported`: `docker import` ran (both False on a cache hit)."""

    ref: str
    image_id: str
    key: str
    built: bool = False
    imported: bool = False


def _tool_version(store: Store) -> str:
    """mmdebstrap's version, asked once per installed binary (then read from a ref)."""
    fp = mmdebstrap.fingerprint()
    fp_key = xxhash.xxh3_128(fp.encode()).hexdigest()
    ref = store.get_ref(TOOL_REF_KIND, fp_key)
    if ref and isinstance(ref.get("version"), str):
        return str(ref["version"])
    version = mmdebstrap.version()
    store.put_ref(TOOL_REF_KIND, fp_key, {"version": version, "binary": fp})
    return version


def _ca_aptopts(spec: BaseSpec, ca_certs: Path | None) -> list[str]:
    """Trust `ca_certs` for https mirrors (apt's own bundle knows no intercepting proxy)."""
    https = any(s.split()[1].startswith("https:") for s in spec.sources())
    if ca_certs is None or not https:
        return []
    if not ca_certs.is_file():
        raise BottleError(f"base: the CA bundle {ca_certs} is not a file")
    return [f'Acquire::https::CAInfo "{ca_certs.resolve()}"']


def _changes(key: str) -> Sequence[str]:
    return [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"LABEL {LABEL}={key}",
        'CMD ["/bin/bash"]',
    ]


def _current(store: Store, spec: BaseSpec, key: str) -> BaseImage | None:
    """The engine's image for `key`, if its tag names one made from the same inputs.

    The engine, not the ref, is the judge: its tag may have moved (another cache root on
    the same engine made the same base) or the image may be gone (a prune)."""
    tag = spec.tag(key)
    info = docker.engine_image(tag)
    labels = ((info or {}).get("Config") or {}).get("Labels") or {}
    if not info or labels.get(LABEL) != key:
        return None
    image_id = str(info["Id"])
    ref = store.get_ref(IMAGE_REF_KIND, key)
    if not ref or ref.get("image_id") != image_id:
        store.put_ref(IMAGE_REF_KIND, key, {"ref": tag, "image_id": image_id})
    return BaseImage(tag, image_id, key)


def ensure_base(
    spec: BaseSpec | None = None,
    *,
    store: Store | None = None,
    ca_certs: Path | None = None,
    progress: bool = False,
    dry: bool = False,
) -> BaseImage:
    """The base image for `spec`, made only when its inputs changed or the engine lost it.

    `ca_certs` (a PEM bundle) is trusted for https mirrors; it is not part of the key
    (it changes how packages travel, not which ones arrive). `dry` (for `info`) makes
    nothing: a base still to be made is returned by the tag it would get, with no id."""
    spec = spec or BaseSpec()
    store = store or Store(cache_root())
    key = spec.key(_tool_version(store))
    found = _current(store, spec, key)
    if found:
        return found
    if dry:
        return BaseImage(spec.tag(key), "", key)
    with store.lock(f"{IMAGE_REF_KIND}-{key}", what=f"the base image {key[:12]}"):
        found = _current(store, spec, key)  # another process may have imported it meanwhile
        if found:
            return found
        aptopts = _ca_aptopts(spec, ca_certs)

        def make_rootfs(work: Path) -> dict[str, object]:
            mmdebstrap.create(
                spec.suite, work / ROOTFS, mirrors=spec.sources(), variant=spec.variant,
                include=spec.packages, architectures=[spec.architecture], aptopts=aptopts,
                dpkgopts=spec.dpkg_opts, progress=progress,
            )
            return {"suite": spec.suite, "packages": list(spec.packages)}

        entry, built = store.ensure(ROOTFS_KIND, key, make_rootfs)
        tag = spec.tag(key)
        image_id = docker.import_image(entry.file(ROOTFS), tag, changes=_changes(key),
                                       progress=progress)
        store.put_ref(IMAGE_REF_KIND, key, {"ref": tag, "image_id": image_id})
    return BaseImage(tag, image_id, key, built=built, imported=True)
