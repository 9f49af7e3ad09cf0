"""The image pipeline: context digest -> build -> save -> (registry push) -> pack.

The lookups here are the only place a cache hit is decided: doit's uptodate checks
and `launch` both call them, and both print the `Decision`'s line. A hit is decided
from the store and one question to the engine's API (is the image there, labelled
with this context digest, under this tag?), without running docker.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import xxhash

from bottle import agents, progress
from bottle.config import Config
from bottle.errors import BottleError
from bottle.tools import docker as docker_mod
from bottle.tools._proc import ToolError
from cache import record
from cache.digest import ContextDigest, context_digest
from cache.errors import StorageError
from cache.record import dataclass, field
from cache.store import Entry, Store

# Not `typing.TYPE_CHECKING`: importing typing is a measurable part of a short run.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from bottle.remote import Remote

REPO = "bot-bottle"
LABEL_CONTEXT = "bot-bottle.context"
LABEL_CACHE = "bot-bottle.cache"  # which cache root built it (gc removes only its own)


@dataclass(frozen=True)
class BuildInputs:
    """What a build reads, resolved from the config and the agent profile."""

    context: Path
    dockerfile: Path
    tag: str
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    network: str | None = None  # docker build --network (not part of the digest)
    remote: Remote | None = None  # a shared cache to look in before building


@dataclass(frozen=True)
class Decision:
    """A cache lookup's answer and the one line that says why."""

    hit: bool
    line: str
    image_id: str | None = None
    retag: bool = False  # a hit whose tag points elsewhere (one `docker tag` fixes it)


@dataclass(frozen=True)
class Built:
    image_id: str
    context: ContextDigest
    built: bool
    line: str

    @property
    def key(self) -> str:
        """The image's short id (16 hex): the key of its `.smolmachine`."""
        return short_id(self.image_id)


@dataclass(frozen=True)
class Packed:
    artifact: Path
    built: bool
    line: str
    key: str | None = None  # None for a committed artifact (not in the store)


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:16]


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:40] or "project"


def default_tag(cfg: Config, store: Store) -> str:
    """One tag per project (its config file's directory, else its context), so projects
    and test runs never re-tag each other's images; the example agent's is per cache."""
    if cfg.image:
        return cfg.image
    if cfg.context is None and cfg.agent == "example":
        key = xxhash.xxh64_hexdigest(os.fsencode(store.root.resolve()))[:8]
        return f"bot-bottle/example:{key}"
    project = cfg.project_root or cfg.context or store.root
    key = xxhash.xxh64_hexdigest(os.fsencode(project.resolve()) + b"\0" + cfg.agent.encode())[:8]
    return f"bot-bottle/{_slug(project.resolve().name)}-{cfg.agent}:{key}"


def build_inputs(cfg: Config, store: Store, *, dry: bool = False) -> BuildInputs:
    """Resolve the context (the profile's own, assembled with the CA bundle where it takes
    one, unless the config names another) and check that it and the Dockerfile exist:
    one clear line when not. A profile's context gets the profile's build args, and with
    `base = "local"` the offline base image (made by `bottle base`) as BASE; `dry` (for
    `info`) names that base without making it."""
    profile = agents.profile(cfg.agent)
    if cfg.ca_certs is not None:
        if not cfg.ca_certs.is_file():
            raise BottleError(f"ca_certs: {cfg.ca_certs} is not a file")
        if cfg.context is not None or not profile.takes_ca:
            whose = "your own context" if cfg.context is not None else \
                f"the {cfg.agent} agent"
            progress.say(f"build: warning: ca_certs has no effect on {whose} (copy the "
                         "bundle into the context and trust it in the Dockerfile)")
    if cfg.context is not None:
        context, args, network = cfg.context, dict(cfg.build_args), cfg.build_network
    else:
        context = agents.build_context(profile, store, ca_certs=cfg.ca_certs)
        base = _base_args(cfg, store, dry=dry) if profile.takes_base else {}
        args = {**profile.build_args, **base, **cfg.build_args}
        network = cfg.build_network or profile.build_network
    dockerfile = cfg.dockerfile or context / "Dockerfile"
    if not context.is_dir():
        raise BottleError(f"build context {context} is not a directory")
    if not dockerfile.is_file():
        what = "is a directory, not a file" if dockerfile.is_dir() else "not found"
        raise BottleError(f"Dockerfile {what}: {dockerfile}")
    return BuildInputs(context, dockerfile, default_tag(cfg, store), args, cfg.target,
                       network, remote_of(cfg))


def remote_of(cfg: Config) -> Remote | None:
    if not cfg.remote:
        return None
    from bottle.remote import Remote

    return Remote.parse(cfg.remote, push=cfg.remote_push)


def _base_args(cfg: Config, store: Store, *, dry: bool = False) -> dict[str, str]:
    """`BASE` for a profile's Dockerfile: the offline base with `base = "local"`."""
    if cfg.base != "local":
        return {}
    from bottle.base import ensure_base

    return {"BASE": ensure_base(store=store, ca_certs=cfg.ca_certs, dry=dry).ref}


def proxy_inputs(cfg: Config, store: Store) -> BuildInputs:
    """The egress proxy's image: squid, on the same base as the agent."""
    context = agents.context_with_ca(agents.proxy_source(), cfg.ca_certs, store)
    key = xxhash.xxh64_hexdigest(os.fsencode(store.root.resolve()))[:8]
    return BuildInputs(context, context / "Dockerfile", f"bot-bottle/proxy:{key}",
                       _base_args(cfg, store),
                       network=cfg.build_network or agents.CLAUDE.build_network)


def digest_context(inputs: BuildInputs, store: Store, *, dry: bool = False) -> ContextDigest:
    """The context digest and what changed since the last run that used it. `dry` (for
    `info`) leaves the index as it was, so the next run still tells what changed."""
    ident = os.fsencode(inputs.context.resolve()) + b"\0" + os.fsencode(
        inputs.dockerfile.resolve())
    index = store.area("index") / f"{xxhash.xxh64_hexdigest(ident)}.idx"
    ctx = context_digest(inputs.context, inputs.dockerfile, build_args=inputs.build_args,
                         target=inputs.target, index_path=index, write_index=not dry)
    if ctx.unsaved:
        progress.say(f"build: warning: {ctx.unsaved}; the context's stat index was not "
                     "saved, so the next run reads every file again")
    return ctx


def _familiar(tag: str) -> str:
    """`tag` as the engine lists it in RepoTags (docker.io/library/ dropped, :latest added)."""
    name = tag.removeprefix("docker.io/").removeprefix("library/")
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last or "@" in last else f"{name}:latest"


def find_image(inputs: BuildInputs, store: Store, ctx: ContextDigest) -> Decision:
    """The image built from this context digest, if the engine still has it.

    A record that points at an image not labelled with this digest is not trusted."""
    ref = store.get_ref("context", ctx.hexdigest)
    image_id = str(ref["image_id"]) if ref and "image_id" in ref else None
    if image_id is None:
        why = "; ".join(ctx.changed) or "no image built from this context yet"
        return Decision(False, why)
    info = docker_mod.engine_image(image_id)
    if info is None:
        return Decision(False, f"image {short_id(image_id)} was removed from the engine")
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_CONTEXT) != ctx.hexdigest:
        return Decision(False, f"image {short_id(image_id)} was not built from this context")
    store.touch_ref("context", ctx.hexdigest)
    retag = _familiar(inputs.tag) not in (info.get("RepoTags") or [])
    # What changed since the last run, when it was a real change (an edit reverted to a
    # context built before): a first look at the context says nothing on a hit.
    changed = [c for c in ctx.changed if c != "first build of this context"]
    why = f" ({'; '.join(changed)})" if changed else ""
    return Decision(True, f"cache hit {ctx.short} (image {short_id(image_id)}){why}",
                    image_id, retag)


def ensure_image(inputs: BuildInputs, store: Store, ctx: ContextDigest) -> Built:
    """The image for this context: reused when the lookup hits (the tag is pointed at it
    when it had moved); otherwise `docker build`, once across concurrent processes."""
    found = find_image(inputs, store, ctx)
    if not found.hit:
        with store.lock(f"context-{ctx.hexdigest}", what=f"the build of {ctx.short}"):
            again = find_image(inputs, store, ctx)
            if not again.hit:
                fetched = _image_from_remote(inputs, store, ctx)
                if fetched is not None:
                    return fetched
                built = _build(inputs, store, ctx, found.line)
                return record.replace(built, line=built.line + _push_image(inputs, store,
                                                                                built))
            found = Decision(True, again.line + " (built by another process)",
                             again.image_id, again.retag)
    assert found.image_id is not None
    if found.retag:
        docker_mod.tag(found.image_id, inputs.tag)
        return Built(found.image_id, ctx, False, f"{found.line}; {inputs.tag} pointed at it")
    return Built(found.image_id, ctx, False, found.line)


def _iidfile(store: Store, ctx: ContextDigest) -> Path | None:
    """Where `docker build` writes the image id; None in a read-only cache (the tag then
    tells the id after the build)."""
    iid = store.area("tmp") / f"context-{ctx.hexdigest}.{os.getpid()}.iid"
    try:
        iid.parent.mkdir(parents=True, exist_ok=True)
        iid.touch()
    except OSError:
        return None
    return iid


def _build(inputs: BuildInputs, store: Store, ctx: ContextDigest, why: str) -> Built:
    iid = _iidfile(store, ctx)
    try:
        image_id = docker_mod.build_image(
            inputs.context, inputs.tag, dockerfile=inputs.dockerfile,
            build_args=inputs.build_args, target=inputs.target, iidfile=iid,
            labels={LABEL_CONTEXT: ctx.hexdigest, **cache_label(store)},
            network=inputs.network, progress=True,
        )
    finally:
        if iid is not None:
            iid.unlink(missing_ok=True)
    _record_ref(store, ctx, inputs, image_id)
    return Built(image_id, ctx, True, f"built {short_id(image_id)} ({why})")


def _record_ref(store: Store, ctx: ContextDigest, inputs: BuildInputs, image_id: str) -> None:
    try:
        store.put_ref("context", ctx.hexdigest, {
            "image_id": image_id, "tag": inputs.tag, "context": str(inputs.context.resolve()),
            "dockerfile": str(inputs.dockerfile.resolve()),
        })
    except StorageError as err:
        if not err.read_only:
            raise
        progress.say(f"build: warning: {err}; the next run builds again")


def _image_from_remote(inputs: BuildInputs, store: Store, ctx: ContextDigest) -> Built | None:
    """The image from the shared cache, pulled by digest and verified; None (after one
    warning line) when it has none or cannot be reached."""
    from bottle import remote as shared

    remote = inputs.remote
    if remote is None or not remote.lookup:
        return None
    try:
        record = shared.get_record(remote, store, ctx.hexdigest, shared.host_arch())
        shared.pull_image(remote, record, inputs.tag)
    except shared.RemoteMiss as miss:
        progress.say(f"build: remote {remote.name}: {miss}; building here")
        return None
    _record_ref(store, ctx, inputs, record.image_id)
    return Built(record.image_id, ctx, False,
                 f"remote hit {ctx.short} (image {short_id(record.image_id)}) "
                 f"(from {remote.name})")


def _push_image(inputs: BuildInputs, store: Store, built: Built, *,
                force: bool = False) -> str:
    """After a local build, with remote_push (or `force`): the image and its record.
    What happened, to end the build's line with; a failure is only a warning there."""
    from bottle import remote as shared

    remote = inputs.remote
    if remote is None or not (remote.push or force):
        return ""
    try:
        shared.publish(remote, store, built.context.hexdigest, built.image_id)
    except (ToolError, shared.RemoteMiss, OSError) as err:
        return f"; warning: could not push to {remote.name}: {err}"
    return f"; pushed to {remote.name}"


def push_to_remote(inputs: BuildInputs, store: Store, ctx: ContextDigest) -> dict[str, Any]:
    """`cache_push`: what this machine has for this context (the image, and the
    `.smolmachine` when one is packed), pushed to the remote whatever remote_push says."""
    if inputs.remote is None:
        raise BottleError("cache_push: no remote configured (set remote = HOST[:PORT]/REPO)")
    found = find_image(inputs, store, ctx)
    if not found.hit or found.image_id is None:
        raise BottleError(f"cache_push: nothing built for this context here ({found.line})")
    built = Built(found.image_id, ctx, False, found.line)
    entry = store.get("smolmachine", built.key)
    note = (_push_smolmachine(inputs, store, built, entry, force=True) if entry is not None
            else _push_image(inputs, store, built, force=True))
    if "warning" in note:
        raise BottleError(f"cache_push: {note.removeprefix('; warning: ')}")
    progress.say(f"cache_push: {short_id(built.image_id)}"
                 f"{' and its .smolmachine' if entry else ''}{note.removeprefix(';')}")
    return {"remote": inputs.remote.name, "context": ctx.hexdigest,
            "image": built.image_id, "smolmachine": entry is not None}


def pull_from_remote(inputs: BuildInputs, store: Store, ctx: ContextDigest,
                     *, smolmachine: bool) -> dict[str, Any]:
    """`cache_pull`: this context's image (and `.smolmachine`) from the remote into the
    local cache, as a launch would, without launching."""
    if inputs.remote is None:
        raise BottleError("cache_pull: no remote configured (set remote = HOST[:PORT]/REPO)")
    result: dict[str, Any] = {"remote": inputs.remote.name, "context": ctx.hexdigest}
    if smolmachine:
        packed = ensure_smolmachine(record.replace(inputs, remote=record.replace(
            inputs.remote, push=False)), store, ctx)
        result.update(smolmachine=str(packed.artifact), line=f"pack: {packed.line}")
    else:
        built = ensure_image(record.replace(inputs, remote=record.replace(
            inputs.remote, push=False)), store, ctx)
        result.update(image=built.image_id, line=f"build: {built.line}")
    return result


def cache_label(store: Store) -> dict[str, str]:
    return {LABEL_CACHE: xxhash.xxh64_hexdigest(os.fsencode(store.root.resolve()))}


def remove_unreferenced(store: Store) -> list[str]:
    """Remove images this cache built that no record refers to any more (old builds of a
    changed context, user-mapped images of removed ones); the ids removed."""
    if not docker_mod.TOOL.available():
        return []
    live = {str(v["image_id"]) for kind in ("context", "user-image")
            for _k, v in store.refs(kind) if v and "image_id" in v}
    ours = docker_mod.images(labels=cache_label(store))
    dead = [str(row["ID"]) for row in ours if _full_id(str(row["ID"])) not in live]
    removed = []
    for image_id in dead:  # one at a time: an image still used by a container stays
        r = docker_mod.rmi(image_id)
        if r is not None and r.returncode == 0:
            removed.append(short_id(_full_id(image_id)))
    return removed


def _full_id(image_id: str) -> str:
    return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"


def push_tarball(tarball: Path, ref: str) -> None:
    """Push a `docker save` archive: crane when present, else skopeo."""
    from bottle.tools import crane, skopeo

    if crane.TOOL.available():
        crane.push(tarball, ref, progress=True)
    else:
        skopeo.copy_archive(tarball, ref, progress=True)


def _archive_holds(tarball: Path, image_id: str) -> bool:
    """Whether the `docker save` archive is of `image_id` (by its config blob)."""
    import tarfile

    with tarfile.open(tarball) as tar:
        f = tar.extractfile("manifest.json")
        manifest: list[dict[str, Any]] = json.loads(f.read()) if f else []
    hexid = image_id.removeprefix("sha256:")
    return any(hexid in m.get("Config", "") for m in manifest)


def _save(inputs: BuildInputs, built: Built, tarball: Path) -> None:
    """Save by tag (keeps the name in the archive); if the tag has moved to another
    image since the build, point it back at ours and save again."""
    with progress.step("save", watch=tarball):
        docker_mod.save(inputs.tag, tarball)
    if not _archive_holds(tarball, built.image_id):
        docker_mod.tag(built.image_id, inputs.tag)
        with progress.step("save", watch=tarball):
            docker_mod.save(inputs.tag, tarball)
        if not _archive_holds(tarball, built.image_id):
            raise BottleError(f"docker save keeps writing another image than {built.image_id}")


def _pack_into(work: Path, inputs: BuildInputs, built: Built,
               state_dir: Path | None) -> dict[str, Any]:
    from bottle.tools import smolvm as _smolvm

    key = built.key
    tarball = work / f"{key}.image.tar"
    _save(inputs, built, tarball)
    dialect = _smolvm.detect_dialect()
    stem = work / key
    if dialect.packs_archives:
        _smolvm.pack_create(tarball, stem, dialect=dialect, state_dir=state_dir, progress=True)
    else:
        from bottle.tools.registry import ephemeral_registry  # only a pack needs one

        with ephemeral_registry(tmp=work) as reg:
            with progress.step("push"):
                push_tarball(tarball, f"{reg.push_endpoint}/{REPO}:{key}")
            _smolvm.pack_create(f"{reg.pull_endpoint}/{REPO}:{key}", stem, dialect=dialect,
                                state_dir=state_dir, progress=True)
    tarball.unlink()
    if not _smolvm.artifact_for(stem, dialect).is_file():
        raise BottleError(f"smolvm {dialect} reported success but wrote no {key}.smolmachine")
    return {"image_id": built.image_id, "source_image": inputs.tag, "smolvm": str(dialect),
            "context_digest": built.context.hexdigest}


def smolmachine_file(entry: Entry) -> Path:
    """The `.smolmachine` of a store entry (what `machine create --from` takes)."""
    from bottle.tools import smolvm as _smolvm

    return entry.file(f"{entry.key}{_smolvm.SIDECAR}")


def find_smolmachine(store: Store, ctx: ContextDigest) -> Decision:
    """The `.smolmachine` packed from the image of this context digest, if stored."""
    ref = store.get_ref("context", ctx.hexdigest)
    image_id = str(ref["image_id"]) if ref and "image_id" in ref else None
    if image_id is None:
        return Decision(False, "; ".join(ctx.changed) or "no image built from this context yet")
    entry = store.get("smolmachine", short_id(image_id))
    if entry is None:
        return Decision(False, f"no .smolmachine packed from image {short_id(image_id)}")
    return Decision(True, f"cache hit {entry.key}", image_id)


def ensure_smolmachine(inputs: BuildInputs, store: Store, ctx: ContextDigest,
                       *, state_dir: Path | None = None) -> Packed:
    """Image digest -> cached `.smolmachine`.

    Hit: nothing but the lookups (no docker, no registry, no smolvm).
    Miss: build (if needed) -> save -> [registry + push] -> pack, once across processes."""
    from bottle.tools import smolvm as _smolvm

    found = find_smolmachine(store, ctx)
    if found.hit and found.image_id:
        entry = store.get("smolmachine", short_id(found.image_id))
        if entry is not None:
            return Packed(smolmachine_file(entry), False, found.line, entry.key)
    fetched, has_record = _smolmachine_from_remote(inputs, store, ctx)
    if fetched is not None:
        return fetched
    # The image: from the remote only if it has a record for this context; pushed (if at
    # all) with the .smolmachine below, in one record.
    image_remote = inputs.remote and record.replace(inputs.remote, push=False,
                                                         lookup=has_record)
    built = ensure_image(record.replace(inputs, remote=image_remote), store, ctx)
    key = built.key
    entry, fresh = store.ensure(
        "smolmachine", key, lambda work: _pack_into(work, inputs, built, state_dir),
        keep=lambda name: name in (key, f"{key}{_smolvm.SIDECAR}"),
    )
    line = (f"packed {key} ({built.line})" if fresh
            else f"cache hit {key} (packed by another process)")
    if fresh:
        line += _push_smolmachine(inputs, store, built, entry)
    return Packed(smolmachine_file(entry), fresh, line, key)


def _smolmachine_from_remote(inputs: BuildInputs, store: Store,
                             ctx: ContextDigest) -> tuple[Packed | None, bool]:
    """The `.smolmachine` for this context and this smolvm, straight from the shared
    cache (no image, no docker), and whether the remote has a record for the context."""
    import shutil

    from bottle import remote as shared
    from bottle.tools import smolvm as _smolvm

    remote = inputs.remote
    if remote is None or not remote.lookup:
        return None, False
    version = str(_smolvm.detect_dialect())
    record = None
    with store.lock(f"context-{ctx.hexdigest}", what=f"the pull of {ctx.short}"):
        try:
            record = shared.get_record(remote, store, ctx.hexdigest, shared.host_arch())
            packed = record.smolmachines.get(version)
            if packed is None:
                raise shared.RemoteMiss(f"no .smolmachine packed by smolvm {version}")
            key = short_id(record.image_id)

            def fetch(work: Path) -> dict[str, Any]:
                shared.pull_smolmachine(remote, store, packed["digest"],
                                 lambda f: shutil.copyfile(f, work / f"{key}{_smolvm.SIDECAR}"))
                return {"image_id": record.image_id, "smolvm": version,
                        "context_digest": ctx.hexdigest, "remote": remote.name}

            entry, _ = store.ensure("smolmachine", key, fetch)
        except shared.RemoteMiss as miss:
            progress.say(f"pack: remote {remote.name}: {miss}; packing here")
            return None, record is not None
        _record_ref(store, ctx, BuildInputs(inputs.context, inputs.dockerfile, inputs.tag),
                    record.image_id)
    return Packed(smolmachine_file(entry), False,
                  f"remote hit {key} (from {remote.name})", key), True


def _push_smolmachine(inputs: BuildInputs, store: Store, built: Built, entry: Entry, *,
                      force: bool = False) -> str:
    from bottle import remote as shared

    remote = inputs.remote
    if remote is None or not (remote.push or force):
        return ""
    try:
        shared.publish(remote, store, built.context.hexdigest, built.image_id,
                       smolmachine=(smolmachine_file(entry), entry.key,
                                    str(entry.meta.get("smolvm", ""))))
    except (ToolError, shared.RemoteMiss, OSError) as err:
        return f"; warning: could not push to {remote.name}: {err}"
    return f"; pushed to {remote.name}"

def committed_or_packed(cfg: Config, inputs: BuildInputs, store: Store,
                        ctx: ContextDigest) -> Packed:
    """A committed artifact that exists is used as is; a missing one falls back to
    build + pack."""
    if cfg.artifact is not None:
        if cfg.artifact.is_file():
            return Packed(cfg.artifact, False, f"using committed {cfg.artifact}")
        progress.say(f"pack: committed artifact {cfg.artifact} is missing; building instead")
    return ensure_smolmachine(inputs, store, ctx, state_dir=cfg.smolvm_state_dir)
