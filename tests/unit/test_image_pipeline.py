"""Seed 000's contracts for the pack pipeline, with the external steps patched.

Cache hit: nothing but the digest check runs (no build, save, registry, push, pack).
Cache miss: build -> save -> push -> pack, in that order, against the registry the
helper yields; with smolvm >= 1.31 the archive is packed directly, no registry.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest

from bottle import image
from bottle.config import Config
from bottle.errors import BottleError
from bottle.tools.registry import RegistryHandle
from bottle.tools.smolvm import Dialect
from cache import record
from cache.store import Store

DIGEST = "0123456789abcdef"
IMAGE_ID = f"sha256:{DIGEST}{'f' * 48}"


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    return Config(context=ctx, image="bot-bottle-claude:latest", workspace=tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache")


def _fake_save(calls: list[str]) -> Any:
    def save(ref: str, out: Path, **kw: Any) -> None:
        calls.append("save")
        manifest = b'[{"Config": "%s.json", "Layers": []}]' % IMAGE_ID[7:].encode()
        with tarfile.open(out, "w") as tar:
            info = tarfile.TarInfo("manifest.json")
            info.size = len(manifest)
            import io
            tar.addfile(info, io.BytesIO(manifest))
    return save


def _fake_pack(calls: list[str]) -> Any:
    def pack(src: Any, out: Path, **kw: Any) -> Path:
        calls.append("pack")
        out.with_name(out.name + ".smolmachine").write_text("vm")
        return out.with_name(out.name + ".smolmachine")
    return pack


@contextlib.contextmanager
def pipeline(calls: list[str], dialect: Dialect,
             engine: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """The external steps, patched; `engine` stands for the engine's images (by id)."""
    engine = {} if engine is None else engine

    def build(context: Path, tag: str, **kw: Any) -> str:
        calls.append("build")
        engine[IMAGE_ID] = {"Id": IMAGE_ID, "RepoTags": [tag],
                            "Config": {"Labels": dict(kw["labels"])}}
        return IMAGE_ID

    @contextlib.contextmanager
    def registry(**kw: Any) -> Iterator[RegistryHandle]:
        calls.append("registry")
        yield RegistryHandle("cb-net-xyz", "cb-registry-xyz:5000", "localhost:54321")

    with patch.object(image.docker_mod, "build_image", side_effect=build) as b, \
            patch.object(image.docker_mod, "engine_image", side_effect=engine.get) as has, \
            patch.object(image.docker_mod, "save", side_effect=_fake_save(calls)) as save, \
            patch.object(image.docker_mod, "tag") as tag, \
            patch("bottle.tools.registry.ephemeral_registry", side_effect=registry) as reg, \
            patch.object(image, "push_tarball",
                         side_effect=lambda *a: calls.append("push")) as push, \
            patch("bottle.tools.smolvm.detect_dialect", return_value=dialect), \
            patch("bottle.tools.smolvm.pack_create", side_effect=_fake_pack(calls)) as pack:
        yield {"build": b, "has": has, "save": save, "tag": tag, "registry": reg,
               "push": push, "pack": pack}


def test_cache_miss_runs_build_save_push_pack_in_order(cfg: Config, store: Store) -> None:
    calls: list[str] = []
    with pipeline(calls, Dialect((1, 7, 0))) as m:
        packed = ensure_smolmachine(cfg, store)
    assert [c for c in calls if c != "registry"] == ["build", "save", "push", "pack"]
    save_args = m["save"].call_args.args
    assert save_args[0] == "bot-bottle-claude:latest"
    assert str(save_args[1]).endswith(f"{DIGEST}.image.tar")
    # push via the push endpoint (container DNS), pack from the pull endpoint (host port).
    assert m["push"].call_args.args[1] == f"cb-registry-xyz:5000/bot-bottle:{DIGEST}"
    assert m["pack"].call_args.args[0] == f"localhost:54321/bot-bottle:{DIGEST}"
    assert str(m["pack"].call_args.args[1]).endswith(DIGEST)
    assert packed.built and packed.artifact.name == f"{DIGEST}.smolmachine"
    assert packed.artifact.read_text() == "vm"
    # The tarball is gone: only the artifact is kept.
    assert sorted(p.name for p in packed.artifact.parent.iterdir()) == [
        f"{DIGEST}.smolmachine", "meta.json"]


def ensure_smolmachine(cfg: Config, store: Store) -> image.Packed:
    inputs = image.build_inputs(cfg, store)
    return image.ensure_smolmachine(inputs, store, image.digest_context(inputs, store))


def ensure_image(cfg: Config, store: Store) -> image.Built:
    inputs = image.build_inputs(cfg, store)
    return image.ensure_image(inputs, store, image.digest_context(inputs, store))


def test_cache_hit_touches_nothing_but_the_digest_check(cfg: Config, store: Store) -> None:
    with pipeline([], Dialect((1, 7, 0))):
        first = ensure_smolmachine(cfg, store)
    calls: list[str] = []
    with pipeline(calls, Dialect((1, 7, 0))) as m:
        again = ensure_smolmachine(cfg, store)
    assert again.artifact == first.artifact and not again.built
    assert calls == []
    for name in ("build", "has", "save", "registry", "push", "pack", "tag"):
        m[name].assert_not_called()


def test_new_smolvm_packs_the_archive_without_a_registry(cfg: Config, store: Store) -> None:
    calls: list[str] = []
    with pipeline(calls, Dialect((1, 31, 0))) as m:
        ensure_smolmachine(cfg, store)
    assert calls == ["build", "save", "pack"]
    src = m["pack"].call_args.args[0]
    assert isinstance(src, Path) and src.name == f"{DIGEST}.image.tar"


def test_registry_torn_down_when_push_fails(cfg: Config, store: Store) -> None:
    exited: list[bool] = []

    @contextlib.contextmanager
    def registry(**kw: Any) -> Iterator[RegistryHandle]:
        try:
            yield RegistryHandle(None, "127.0.0.1:1", "127.0.0.1:1")
        finally:
            exited.append(True)

    with pipeline([], Dialect((1, 7, 0))) as m:
        m["registry"].side_effect = registry
        m["push"].side_effect = RuntimeError("push failed")
        with pytest.raises(RuntimeError):
            ensure_smolmachine(cfg, store)
    assert exited == [True]
    assert store.get("smolmachine", DIGEST) is None
    assert not list((store.root / "tmp").iterdir())  # no tarball left behind


def test_unchanged_context_and_present_image_means_no_build(cfg: Config, store: Store) -> None:
    calls: list[str] = []
    engine: dict[str, Any] = {}
    with pipeline(calls, Dialect((1, 7, 0)), engine) as m:
        assert ensure_image(cfg, store).built
        assert not ensure_image(cfg, store).built
        m["tag"].assert_not_called()
    assert calls == ["build"]


def test_removed_image_is_rebuilt(cfg: Config, store: Store) -> None:
    calls: list[str] = []
    engine: dict[str, Any] = {}
    with pipeline(calls, Dialect((1, 7, 0)), engine):
        ensure_image(cfg, store)
        engine.clear()
        again = ensure_image(cfg, store)
    assert calls == ["build", "build"]
    assert again.line == f"built {DIGEST} (image {DIGEST} was removed from the engine)"


def test_a_record_pointing_at_another_image_is_not_a_hit(cfg: Config, store: Store) -> None:
    calls: list[str] = []
    engine: dict[str, Any] = {}
    with pipeline(calls, Dialect((1, 7, 0)), engine):
        ensure_image(cfg, store)
        engine[IMAGE_ID]["Config"]["Labels"][image.LABEL_CONTEXT] = "another context"
        again = ensure_image(cfg, store)
    assert calls == ["build", "build"] and "not built from this context" in again.line


def test_a_hit_whose_tag_moved_points_the_tag_back(cfg: Config, store: Store) -> None:
    """Issue 14.7: edit, build, revert, build: the tag must follow the chosen image."""
    engine: dict[str, Any] = {}
    with pipeline([], Dialect((1, 7, 0)), engine) as m:
        ensure_image(cfg, store)
        engine[IMAGE_ID]["RepoTags"] = []  # a later build took the tag
        again = ensure_image(cfg, store)
        assert not again.built
        m["tag"].assert_called_once_with(IMAGE_ID, "bot-bottle-claude:latest")


class TestAgentFromPath:
    def test_uses_committed_artifact_when_present(self, cfg: Config, store: Store,
                                                  tmp_path: Path) -> None:
        artifact = tmp_path / "committed.smolmachine"
        artifact.write_text("")
        with_artifact = record.replace(cfg, artifact=artifact)
        inputs = image.build_inputs(with_artifact, store)
        with patch.object(image, "ensure_smolmachine") as ensure:
            result = image.committed_or_packed(with_artifact, inputs, store,
                                               image.digest_context(inputs, store))
        assert result.artifact == artifact
        ensure.assert_not_called()

    def test_falls_back_when_committed_artifact_missing(self, cfg: Config,
                                                        store: Store) -> None:
        missing = record.replace(cfg, artifact=Path("/missing/committed.smolmachine"))
        inputs = image.build_inputs(missing, store)
        packed = image.Packed(Path("/cache/agent.smolmachine"), True, "packed", DIGEST)
        with patch.object(image, "ensure_smolmachine", return_value=packed) as ensure:
            result = image.committed_or_packed(missing, inputs, store,
                                               image.digest_context(inputs, store))
        assert result == packed
        ensure.assert_called_once()


def test_missing_dockerfile_is_a_clear_error(tmp_path: Path, store: Store) -> None:
    from bottle.errors import BottleError

    with pytest.raises(BottleError, match="Dockerfile not found"):
        image.build_inputs(Config(context=tmp_path), store)


def test_default_tags_differ_per_project_and_per_cache(tmp_path: Path) -> None:
    """Issue 14.8: no tag shared by every project (or by the tests and the user)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "ctx").mkdir(parents=True)
    store1, store2 = Store(tmp_path / "c1"), Store(tmp_path / "c2")
    tag_a = image.default_tag(Config(context=a / "ctx", project_root=a), store1)
    tag_b = image.default_tag(Config(context=b / "ctx", project_root=b), store1)
    assert tag_a != tag_b and tag_a.startswith("bot-bottle/a-example:")
    assert image.default_tag(Config(), store1) != image.default_tag(Config(), store2)
    assert image.default_tag(Config(image="mine:1"), store1) == "mine:1"


def test_ca_certs_must_exist_and_says_when_it_has_no_effect(
        cfg: Config, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cache import record

    with pytest.raises(BottleError, match=r"^ca_certs: .*missing.pem is not a file$"):
        image.build_inputs(record.replace(cfg, ca_certs=tmp_path / "missing.pem"), store)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    image.build_inputs(record.replace(cfg, ca_certs=bundle), store)
    assert "ca_certs has no effect on your own context" in capsys.readouterr().err
