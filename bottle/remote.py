"""A shared cache in an OCI registry: build once per team.

Layout in the repository `HOST[:PORT]/REPO` (tags, per host architecture):

    ctx-<context digest>-<arch>      a record: context digest -> image (id, manifest digest)
                                     and, per smolvm version, the `.smolmachine`'s digest
    img-<context digest>-<arch>      the image, as docker would push it
    sm-<image id 16>-<arch>-<smolvm> the `.smolmachine`, in smolvm's own OCI form (config
                                     `application/vnd.smolmachines.machine.config.v1+json`,
                                     one layer `application/vnd.smolmachines.smolmachine.v1`),
                                     so a smolvm that pulls packs can use it directly

Everything moves with skopeo (images between the engine and the registry, artifacts
between a local OCI layout and the registry), by digest, verified on the way: a blob that
does not match its digest is refused, and the local build goes on. Credentials come from
where OCI clients keep them ($REGISTRY_AUTH_FILE, ~/.docker/config.json and its
credential helpers); they never reach argv or logs. A remote that is down or lacks an
entry is a miss with one warning line, never a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import struct
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bottle import reference
from bottle.errors import BottleError
from bottle.tools import docker as docker_mod
from bottle.tools import skopeo
from cache.record import dataclass
from cache.store import Store

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONFIG_MEDIA_TYPE = "application/vnd.smolmachines.machine.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.smolmachines.smolmachine.v1"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
RECORD_MEDIA_TYPE = "application/vnd.bot-bottle.record.v1+json"
RECORD_CONFIG_MEDIA_TYPE = "application/vnd.bot-bottle.config.v1+json"
_FORMAT = 1
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_PACK_MAGIC = b"SMOLPACK"
_FOOTER = 64


class RemoteMiss(Exception):
    """The remote has no usable entry (absent, unreachable, or it failed verification)."""


def host_arch() -> str:
    machine = platform.machine().lower()
    return _ARCHES.get(machine, machine)


@dataclass(frozen=True)
class Remote:
    """`HOST[:PORT]/REPO`, checked as an image reference without tag or digest."""

    name: str
    push: bool = False
    lookup: bool = True  # False: known to have no entry for this context (push only)

    @classmethod
    def parse(cls, text: str, *, push: bool = False) -> Remote:
        ref = reference.parse(text)
        if ref.tag or ref.digest or not text.startswith(f"{ref.domain}/"):
            raise BottleError(f"remote {text!r}: give HOST[:PORT]/REPO, without a tag or "
                              "digest")
        return cls(text, push)

    def tag(self, tag: str) -> str:
        return f"{self.name}:{tag}"

    def at(self, digest: str) -> str:
        return f"{self.name}@{digest}"


@dataclass(frozen=True)
class Record:
    """What one context digest became, for one architecture."""

    context: str
    arch: str
    image_id: str
    image_digest: str
    smolmachines: dict[str, dict[str, str]]  # smolvm version -> {"digest", "key"}

    def to_json(self) -> bytes:
        return json.dumps({"format": _FORMAT, "context": self.context, "arch": self.arch,
                           "image": {"id": self.image_id, "digest": self.image_digest},
                           "smolmachines": self.smolmachines}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, context: str, arch: str) -> Record:
        try:
            raw = json.loads(data)
            rec = cls(str(raw["context"]), str(raw["arch"]), str(raw["image"]["id"]),
                      str(raw["image"]["digest"]), dict(raw.get("smolmachines") or {}))
        except (ValueError, KeyError, TypeError) as err:
            raise RemoteMiss(f"its record is unreadable ({err})") from None
        if raw.get("format") != _FORMAT or rec.context != context or rec.arch != arch:
            raise RemoteMiss("its record is for another context or architecture")
        return rec


def record_tag(context: str, arch: str) -> str:
    return f"ctx-{context}-{arch}"


def image_tag(context: str, arch: str) -> str:
    return f"img-{context}-{arch}"


def smolmachine_tag(key: str, arch: str, smolvm_version: str) -> str:
    return f"sm-{key}-{arch}-smolvm{smolvm_version}"


# --- a local OCI layout: where artifacts are assembled and unpacked --------------------


@contextmanager
def _layout(store: Store) -> Iterator[Path]:
    """A scratch OCI layout under the store's tmp area (swept if we are killed)."""
    tmp = store.area("tmp") / f"remote.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    (tmp / "blobs" / "sha256").mkdir(parents=True)
    (tmp / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _blob(layout: Path, data: bytes | Path) -> dict[str, Any]:
    """Put a blob into the layout (a file is linked or copied, not read into memory)."""
    blobs = layout / "blobs" / "sha256"
    if isinstance(data, Path):
        digest = _sha256(data)
        target = blobs / digest
        try:
            os.link(data, target)
        except OSError:
            shutil.copyfile(data, target)
        return {"digest": f"sha256:{digest}", "size": data.stat().st_size}
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_artifact(layout: Path, name: str, config: dict[str, Any],
                    layers: list[dict[str, Any]]) -> None:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
                           "config": config, "layers": layers}, separators=(",", ":")).encode()
    desc = {"mediaType": MANIFEST_MEDIA_TYPE, **_blob(layout, manifest),
            "annotations": {"org.opencontainers.image.ref.name": name}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))


def _read_artifact(layout: Path) -> tuple[dict[str, Any], list[Path]]:
    """The manifest of the one artifact in the layout and its layers' blob files."""
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest: dict[str, Any] = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    layers = [layout / "blobs" / "sha256" / str(d["digest"]).removeprefix("sha256:")
              for d in manifest.get("layers", [])]
    for path, desc in zip(layers, manifest.get("layers", []), strict=True):
        # skopeo verified each blob against its digest; checked again, as the layout is ours
        if _sha256(path) != str(desc["digest"]).removeprefix("sha256:"):
            raise RemoteMiss(f"layer {desc['digest']} does not match its digest")
    return manifest, layers


def pack_manifest(artifact: Path) -> bytes:
    """The PackManifest JSON a `.smolmachine` carries (its footer says where), which
    smolvm uses as the OCI config blob; `{}` for a file without one."""
    try:
        with open(artifact, "rb") as f:
            f.seek(-_FOOTER, os.SEEK_END)
            footer = f.read(_FOOTER)
            if footer[:8] != _PACK_MAGIC:
                return b"{}"
            offset, size = struct.unpack_from("<QQ", footer, 36)
            if size > 16 << 20:
                return b"{}"
            f.seek(offset)
            data = f.read(size)
        json.loads(data)
        return data
    except (OSError, ValueError, struct.error):
        return b"{}"


# --- the operations ------------------------------------------------------------------


def _miss(err: Exception) -> RemoteMiss:
    if isinstance(err, skopeo.SkopeoError):
        reason = err.reason.lower()
        if "manifest unknown" in reason or "not found" in reason:
            return RemoteMiss("no entry")
        if "unauthorized" in reason or "authentication required" in reason:
            return RemoteMiss(f"not authorized ({err.reason})")
        return RemoteMiss(err.reason)
    return RemoteMiss(str(err))


# The record is a few hundred bytes: a registry that has not sent it by then is not
# answering (it stalled every cold launch for a minute, found by a new user's walk-through).
LOOKUP_TIMEOUT = 10.0


def get_record(remote: Remote, store: Store, context: str, arch: str) -> Record:
    with _layout(store) as lay:
        try:
            # One try: a miss or an outage should cost the launch as little as possible.
            skopeo.copy(skopeo.registry(remote.tag(record_tag(context, arch))),
                        skopeo.layout(lay, "record"), timeout=LOOKUP_TIMEOUT, retries=0)
        except (skopeo.SkopeoError, OSError) as err:
            raise _miss(err) from None
        _manifest, layers = _read_artifact(lay)
        if len(layers) != 1:
            raise RemoteMiss("its record has no data")
        return Record.from_json(layers[0].read_bytes(), context, arch)


def put_record(remote: Remote, store: Store, record: Record) -> None:
    with _layout(store) as lay:
        data = record.to_json()
        config = {"mediaType": RECORD_CONFIG_MEDIA_TYPE, **_blob(lay, b"{}")}
        layer = {"mediaType": RECORD_MEDIA_TYPE, **_blob(lay, data)}
        _write_artifact(lay, "record", config, [layer])
        skopeo.copy(skopeo.layout(lay, "record"),
                    skopeo.registry(remote.tag(record_tag(record.context, record.arch))),
                    timeout=300)


def push_image(remote: Remote, store: Store, image_id: str, context: str, arch: str) -> str:
    """Push the engine's image; its manifest digest in the registry."""
    digestfile = store.area("tmp") / f"remote.{os.getpid()}.{uuid.uuid4().hex[:8]}.digest"
    digestfile.parent.mkdir(parents=True, exist_ok=True)
    try:
        skopeo.copy(skopeo.daemon(image_id), skopeo.registry(remote.tag(image_tag(context, arch))),
                    digestfile=digestfile, progress=True)
        return digestfile.read_text().strip()
    finally:
        digestfile.unlink(missing_ok=True)


def pull_image(remote: Remote, record: Record, tag: str) -> None:
    """Pull the recorded image by digest into the engine as `tag`; its id must be the
    recorded one (the id is the config's digest: nothing else can have it)."""
    try:
        skopeo.copy(skopeo.registry(remote.at(record.image_digest)), skopeo.daemon(tag),
                    progress=True)
    except (skopeo.SkopeoError, OSError) as err:
        raise _miss(err) from None
    info = docker_mod.engine_image(tag)
    if info is None or info.get("Id") != record.image_id:
        raise RemoteMiss(f"the pulled image is not {record.image_id[:19]}")


def push_smolmachine(remote: Remote, store: Store, artifact: Path, key: str, arch: str,
                     smolvm_version: str) -> str:
    """Push a `.smolmachine` in smolvm's OCI form; its manifest digest."""
    with _layout(store) as lay:
        config = {"mediaType": CONFIG_MEDIA_TYPE, **_blob(lay, pack_manifest(artifact))}
        layer = {"mediaType": LAYER_MEDIA_TYPE, **_blob(lay, artifact)}
        _write_artifact(lay, "smolmachine", config, [layer])
        digestfile = lay / "pushed.digest"
        skopeo.copy(skopeo.layout(lay, "smolmachine"),
                    skopeo.registry(remote.tag(smolmachine_tag(key, arch, smolvm_version))),
                    digestfile=digestfile, progress=True)
        return digestfile.read_text().strip()


def pull_smolmachine(remote: Remote, store: Store, digest: str,
                     into: Callable[[Path], object]) -> None:
    """Pull a `.smolmachine` by digest; `into(path)` takes the verified file."""
    with _layout(store) as lay:
        try:
            skopeo.copy(skopeo.registry(remote.at(digest)), skopeo.layout(lay, "sm"),
                        progress=True)
        except (skopeo.SkopeoError, OSError) as err:
            raise _miss(err) from None
        manifest, layers = _read_artifact(lay)
        kinds = [d.get("mediaType") for d in manifest.get("layers", [])]
        if kinds != [LAYER_MEDIA_TYPE]:
            raise RemoteMiss(f"{digest} is not a .smolmachine artifact")
        into(layers[0])


def publish(remote: Remote, store: Store, context: str, image_id: str, *,
            smolmachine: tuple[Path, str, str] | None = None) -> Record:
    """Make the remote's record for `context` name this image (pushing it when the record
    names another or none) and, given `(file, key, smolvm version)`, that `.smolmachine`.
    Returns the record as pushed."""
    arch = host_arch()
    try:
        record: Record | None = get_record(remote, store, context, arch)
    except RemoteMiss:
        record = None
    if record is None or record.image_id != image_id:
        digest = push_image(remote, store, image_id, context, arch)
        record = Record(context, arch, image_id, digest, {})
    if smolmachine is not None:
        artifact, key, version = smolmachine
        digest = push_smolmachine(remote, store, artifact, key, arch, version)
        record = Record(context, arch, image_id, record.image_digest,
                        {**record.smolmachines, version: {"digest": digest, "key": key}})
    put_record(remote, store, record)
    return record
