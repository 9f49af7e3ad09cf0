"""The image pipeline: context digest -> build -> save -> (registry push) -> pack.

Cache hits are decided from the store alone: an unchanged context digest finds
its image id, and an image id finds its `.smolmachine`, without running docker.
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from bottle import progress
from bottle.config import Config
from bottle.errors import BottleError
from bottle.tools import crane, skopeo
from bottle.tools import docker as docker_mod
from bottle.tools import smolvm as _smolvm
from bottle.tools.registry import ephemeral_registry
from cache.digest import ContextDigest, context_digest
from cache.lock import locked
from cache.store import Entry, Store

REPO = "bot-bottle"


@dataclass(frozen=True)
class Built:
    image_id: str
    context: ContextDigest
    built: bool
    reason: str

    @property
    def digest(self) -> str:
        """First 16 hex of the image id: the key of its `.smolmachine`."""
        return self.image_id.removeprefix("sha256:")[:16]

    def summary(self) -> str:
        """What happened and why, for the task's one line."""
        return f"built {self.image_id[7:19]} ({self.reason})" if self.built else self.reason


@dataclass(frozen=True)
class Packed:
    artifact: Path
    digest: str
    built: bool
    reason: str


def check_inputs(cfg: Config) -> None:
    if not cfg.build_context.is_dir():
        raise BottleError(f"build context {cfg.build_context} is not a directory")
    if not cfg.dockerfile_path.is_file():
        raise BottleError(f"Dockerfile not found: {cfg.dockerfile_path}")


def digest_context(cfg: Config, store: Store) -> ContextDigest:
    check_inputs(cfg)
    ident = f"{cfg.build_context.resolve()}\0{cfg.dockerfile_path.resolve()}"
    index = store.root / "index" / f"{xxhash.xxh64_hexdigest(ident.encode())}.json"
    return context_digest(
        cfg.build_context, cfg.dockerfile_path, build_args=cfg.build_args, target=cfg.target,
        index_path=index,
    )


def cached_image(store: Store, ctx: ContextDigest) -> str | None:
    """The image id recorded for this context digest, if any (no engine contact)."""
    ref = store.get_ref("context", ctx.hexdigest)
    return str(ref["image_id"]) if ref and "image_id" in ref else None


def ensure_image(cfg: Config, store: Store, *, ctx: ContextDigest | None = None) -> Built:
    """The image for `cfg`'s context: reused when its digest is recorded and the engine
    still has it; otherwise `docker build` (once, across concurrent processes).
    Pass `ctx` when the digest was already computed: a second walk would find nothing
    changed, and lose the reason."""
    ctx = ctx or digest_context(cfg, store)
    image = cached_image(store, ctx)
    if image and docker_mod.engine_has_image(image):
        return Built(image, ctx, False, f"cache hit {ctx.short}")
    with locked(store.root / "locks" / f"context-{ctx.hexdigest}.lock", what="build"):
        image = cached_image(store, ctx)
        if image and docker_mod.engine_has_image(image):
            return Built(image, ctx, False, f"cache hit {ctx.short} (built by another process)")
        why = "; ".join(ctx.changed) or (
            "image was removed" if image else "no cached image")
        iid = store.root / "tmp" / f"context-{ctx.hexdigest}.{os.getpid()}.iid"
        iid.parent.mkdir(parents=True, exist_ok=True)
        try:
            image_id = docker_mod.build_image(
                cfg.build_context, cfg.image, dockerfile=cfg.dockerfile_path,
                build_args=cfg.build_args, target=cfg.target, iidfile=iid, progress=True,
            )
        finally:
            iid.unlink(missing_ok=True)
        store.put_ref("context", ctx.hexdigest, {
            "image_id": image_id, "tag": cfg.image, "context": str(cfg.build_context.resolve()),
            "dockerfile": str(cfg.dockerfile_path.resolve()),
        })
        return Built(image_id, ctx, True, why)


def push_tarball(tarball: Path, ref: str) -> None:
    """Push a `docker save` archive: crane when present, else skopeo."""
    if crane.TOOL.available():
        crane.push(tarball, ref, progress=True)
    else:
        skopeo.copy_archive(tarball, ref, progress=True)


def _archive_holds(tarball: Path, image_id: str) -> bool:
    """Whether the `docker save` archive is of `image_id` (by its config blob)."""
    with tarfile.open(tarball) as tar:
        f = tar.extractfile("manifest.json")
        manifest: list[dict[str, Any]] = json.loads(f.read()) if f else []
    hexid = image_id.removeprefix("sha256:")
    return any(hexid in m.get("Config", "") for m in manifest)


def _save(cfg: Config, built: Built, tarball: Path) -> None:
    """Save by tag (keeps the name in the archive); if the tag has moved to another
    image since the build, point it back at ours and save again."""
    with progress.step("save", watch=tarball):
        docker_mod.save(cfg.image, tarball)
    if not _archive_holds(tarball, built.image_id):
        docker_mod.tag(built.image_id, cfg.image)
        with progress.step("save", watch=tarball):
            docker_mod.save(cfg.image, tarball)
        if not _archive_holds(tarball, built.image_id):
            raise BottleError(f"docker save keeps writing another image than {built.image_id}")


def _pack_into(work: Path, cfg: Config, built: Built) -> dict[str, Any]:
    digest = built.digest
    tarball = work / f"{digest}.image.tar"
    _save(cfg, built, tarball)
    dialect = _smolvm.detect_dialect()
    stem = work / digest
    if dialect.packs_archives:
        _smolvm.pack_create(tarball, stem, dialect=dialect, state_dir=cfg.smolvm_state_dir,
                            progress=True)
    else:
        with ephemeral_registry() as reg:
            with progress.step("push"):
                push_tarball(tarball, f"{reg.push_endpoint}/{REPO}:{digest}")
            _smolvm.pack_create(f"{reg.pull_endpoint}/{REPO}:{digest}", stem, dialect=dialect,
                                state_dir=cfg.smolvm_state_dir, progress=True)
    tarball.unlink()
    if not _smolvm.artifact_for(stem, dialect).is_file():
        raise BottleError(f"smolvm {dialect} reported success but wrote no {digest}.smolmachine")
    return {"image_id": built.image_id, "source_image": cfg.image, "smolvm": str(dialect),
            "context_digest": built.context.hexdigest}


def artifact_of(entry: Entry) -> Path:
    return entry.file(f"{entry.key}{_smolvm.SIDECAR}")


def cached_smolmachine(store: Store, ctx: ContextDigest) -> Entry | None:
    image = cached_image(store, ctx)
    if not image:
        return None
    return store.get("smolmachine", image.removeprefix("sha256:")[:16])


def ensure_smolmachine(cfg: Config, store: Store, *, ctx: ContextDigest | None = None) -> Packed:
    """Seed 000's `_ensure_smolmachine`: image digest -> cached `.smolmachine`.

    Hit: nothing but the digest check (no docker, no registry, no smolvm).
    Miss: build (if needed) -> save -> [registry + push] -> pack, once across processes.
    """
    ctx = ctx or digest_context(cfg, store)
    entry = cached_smolmachine(store, ctx)
    if entry:
        return Packed(artifact_of(entry), entry.key, False, f"cache hit {entry.key}")
    built = ensure_image(cfg, store, ctx=ctx)
    digest = built.digest
    entry, fresh = store.ensure(
        "smolmachine", digest, lambda work: _pack_into(work, cfg, built),
        keep=lambda name: name in (digest, f"{digest}{_smolvm.SIDECAR}"),
    )
    reason = (f"packed {digest} ({built.reason})" if fresh
              else f"cache hit {digest} (packed by another process)")
    return Packed(artifact_of(entry), digest, fresh, reason)


def agent_artifact(cfg: Config, store: Store, *, ctx: ContextDigest | None = None) -> Packed:
    """Seed 000's `_agent_from_path`: a committed artifact that exists is used as is;
    a missing one falls back to build + pack."""
    if cfg.artifact is not None:
        if cfg.artifact.is_file():
            return Packed(cfg.artifact, "committed", False, f"using committed {cfg.artifact}")
        progress.say(f"pack: committed artifact {cfg.artifact} is missing; building instead")
    return ensure_smolmachine(cfg, store, ctx=ctx)
