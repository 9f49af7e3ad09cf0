"""The context digest: what changes it, what doesn't, and the stat index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cache import digest as digest_mod
from cache.digest import context_digest


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    (c / "src").mkdir(parents=True)
    (c / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (c / "src" / "main.py").write_text("print(1)\n")
    (c / "notes.log").write_text("ignored\n")
    (c / ".dockerignore").write_text("*.log\n")
    return c


def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by the test just now count as settled (not racy)."""
    monkeypatch.setattr(digest_mod, "RACY_FINE_NS", 0)
    monkeypatch.setattr(digest_mod, "RACY_COARSE_NS", 0)


def d(c: Path, **kw: object) -> str:
    return context_digest(c, c / "Dockerfile", **kw).hexdigest  # type: ignore[arg-type]


def test_stable_and_128_bit(ctx: Path) -> None:
    assert d(ctx) == d(ctx) and len(d(ctx)) == 32


@pytest.mark.parametrize("change", [
    lambda c: (c / "Dockerfile").write_text("FROM scratch\n"),
    lambda c: (c / "src" / "main.py").write_text("print(2)\n"),
    lambda c: (c / "src" / "new.py").write_text(""),
    lambda c: (c / "src" / "main.py").unlink(),
    lambda c: (c / "src" / "main.py").chmod(0o755),
    lambda c: (c / "src" / "empty-dir").mkdir(),
    lambda c: os.symlink("main.py", c / "src" / "link"),
    lambda c: (c / ".dockerignore").write_text(""),
])
def test_changes_that_count(ctx: Path, change) -> None:  # type: ignore[no-untyped-def]
    before = d(ctx)
    change(ctx)
    assert d(ctx) != before


def test_ignored_files_do_not_count(ctx: Path) -> None:
    before = d(ctx)
    (ctx / "notes.log").write_text("changed a lot\n")
    (ctx / "more.log").write_text("new\n")
    assert d(ctx) == before


def test_args_and_target_count(ctx: Path) -> None:
    base = d(ctx)
    assert d(ctx, build_args={"V": "1"}) != base
    assert d(ctx, build_args={"V": "1"}) != d(ctx, build_args={"V": "2"})
    assert d(ctx, target="final") != base


def test_dockerfile_outside_the_context(ctx: Path, tmp_path: Path) -> None:
    outside = tmp_path / "Other.Dockerfile"
    outside.write_text("FROM scratch\n")
    a = context_digest(ctx, outside).hexdigest
    outside.write_text("FROM scratch\nLABEL x=1\n")
    assert context_digest(ctx, outside).hexdigest != a


def test_index_skips_unchanged_files(ctx: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index.json"
    no_racy_window(monkeypatch)  # files here were written just now
    first = context_digest(ctx, ctx / "Dockerfile", index_path=index)
    assert first.hashed == 3 and first.changed == ["first build of this context"]
    second = context_digest(ctx, ctx / "Dockerfile", index_path=index)
    assert second.hexdigest == first.hexdigest and second.hashed == 0 and second.changed == []
    (ctx / "src" / "main.py").write_text("print(3)\n")
    third = context_digest(ctx, ctx / "Dockerfile", index_path=index)
    assert third.hashed == 1 and third.changed == ["changed: src/main.py"]
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    assert context_digest(ctx, ctx / "Dockerfile", index_path=index).changed == [
        "Dockerfile changed"]  # once, not also as a changed context file


def test_racy_files_are_rehashed(ctx: Path, tmp_path: Path) -> None:
    """A file written within RACY_NS of the walk is never trusted from the index:
    a same-size rewrite in the same mtime tick would otherwise go unseen."""
    index = tmp_path / "index.json"
    context_digest(ctx, ctx / "Dockerfile", index_path=index)
    f = ctx / "src" / "main.py"
    st = f.stat()
    f.write_text("print(9)\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    again = context_digest(ctx, ctx / "Dockerfile", index_path=index)
    assert again.changed == ["changed: src/main.py"]



def test_names_not_utf8_or_with_a_newline_are_hashed(ctx: Path) -> None:
    odd = ctx / "src" / os.fsdecode(b"bad\xff\nname")
    odd.write_text("1")
    before = d(ctx)
    odd.write_text("2")
    assert d(ctx) != before


def test_a_fifo_counts_and_is_never_opened(ctx: Path) -> None:
    before = d(ctx)
    os.mkfifo(ctx / "src" / "pipe")  # opening it would block the digest
    assert d(ctx) != before


def test_a_file_docker_re_includes_is_hashed(ctx: Path) -> None:
    """The issue's example: Docker sends node_modules/keep (the last `node_modules` is
    not carried down to it), so an edit there must change the digest."""
    (ctx / ".dockerignore").write_text("node_modules\n!node_modules/keep\nnode_modules\n")
    (ctx / "node_modules" / "keep").mkdir(parents=True)
    kept = ctx / "node_modules" / "keep" / "f.js"
    kept.write_text("1")
    (ctx / "node_modules" / "other.js").write_text("1")
    before = d(ctx)
    (ctx / "node_modules" / "other.js").write_text("2")
    assert d(ctx) == before
    kept.write_text("2")
    assert d(ctx) != before


def test_dockerfile_dockerignore_counts(ctx: Path, tmp_path: Path) -> None:
    """BuildKit reads <Dockerfile>.dockerignore, even beside a Dockerfile outside the
    context: what it lets through is hashed, and so are its bytes."""
    outside = tmp_path / "app.Dockerfile"
    outside.write_text("FROM scratch\n")
    base = context_digest(ctx, outside)
    own = tmp_path / "app.Dockerfile.dockerignore"
    own.write_text("src\n")  # BuildKit now sends notes.log
    with_own = context_digest(ctx, outside)
    assert with_own.hexdigest != base.hexdigest and with_own.files == base.files + 1
    own.write_text("src\n*.log\n")  # the union is unchanged, BuildKit's selection is not
    assert context_digest(ctx, outside).hexdigest != with_own.hexdigest


def test_changes_show_odd_names_on_one_line(ctx: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index.json"
    no_racy_window(monkeypatch)
    context_digest(ctx, ctx / "Dockerfile", index_path=index)
    (ctx / "src" / os.fsdecode(b"new\nline\xff")).write_text("x")
    changed = context_digest(ctx, ctx / "Dockerfile", index_path=index).changed
    assert changed == ["added: 'src/new\\nline\\xff'"]


@pytest.mark.parametrize(("raw", "shown"), [
    (b"new\nline\xff", "'new\\nline\\xff'"),       # the bytes a name has, as `ls -b` would
    (b"caf\xc3\xa9 \xe9", "'caf\u00e9 \\xe9'"),     # an accent stays; a stray byte does not
    (b"it's a\\b\x07", "'it\\'s a\\\\b\\x07'"),
    (b"z\xe2\x80\x8bw", "'z\\u200bw'"),            # a zero-width space is not printable
])
def test_a_name_is_quoted_by_its_bytes(raw: bytes, shown: str) -> None:
    from cache.errors import quoted

    assert quoted(os.fsdecode(raw)) == shown


def test_the_collector_is_off_during_a_digest_and_as_it_was_after(tmp_path: Path) -> None:
    """The walk runs without the cyclic collector (its objects live to the end anyway);
    the caller's setting is back afterwards, also when the digest fails."""
    import gc

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    seen: list[bool] = []
    real = digest_mod._Walk.run

    def run(self: digest_mod._Walk) -> None:
        seen.append(gc.isenabled())
        real(self)

    was = gc.isenabled()
    try:
        digest_mod._Walk.run = run  # type: ignore[method-assign]
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            context_digest(ctx, ctx / "Dockerfile")
            assert gc.isenabled() is enabled
            (ctx / ".dockerignore").write_text("[z-a]\n")  # Docker rejects it
            with pytest.raises(digest_mod.UserError):
                context_digest(ctx, ctx / "Dockerfile")
            assert gc.isenabled() is enabled
            (ctx / ".dockerignore").unlink()
    finally:
        digest_mod._Walk.run = real  # type: ignore[method-assign]
        (gc.enable if was else gc.disable)()
    assert seen and not any(seen)


def test_a_full_disk_is_said_once_and_the_digest_stands(tmp_path: Path, small_tmpfs: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """The stat index does not fit on the cache's disk: the digest is still right, no
    partial index or temp file is left, and one warning says why the next run will read
    every file again (it said nothing: a 100k-file context on a full disk was simply
    slow on every run)."""
    from bottle import image
    from cache.store import Store
    from tests.conftest import fill_up

    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY src /src\n")
    for i in range(3000):  # an index of ~100 KB: more than is left
        (ctx / "src" / f"module_{i}.py").write_text(f"x = {i}\n")
    store = Store(small_tmpfs / "cache")
    index_dir = store.area("index")
    fill = fill_up(small_tmpfs)
    inputs = image.BuildInputs(ctx, ctx / "Dockerfile", "t")
    got = image.digest_context(inputs, store)
    plain = context_digest(ctx, ctx / "Dockerfile")  # no index
    assert (got.hexdigest, got.files) == (plain.hexdigest, plain.files)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"build: warning: cache: no space left on the device of {index_dir} "
                   "(free some space, or run `bottle cache_gc`); the context's stat "
                   "index was not saved, so the next run reads every file again"], err
    assert list(index_dir.iterdir()) == []  # (its temp file was written here)
    fill.unlink()  # room again: saved, and nothing said
    assert image.digest_context(inputs, store).hexdigest == got.hexdigest
    assert capsys.readouterr().err == "" and len(list(index_dir.iterdir())) == 1
