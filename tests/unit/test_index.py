"""The stat index (cache.index) and the digest's paths through it: warm, cold, without an
index, read in threads or not, all give the same value; a damaged index is rebuilt, never
trusted; the racy rule."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cache import digest as digest_mod
from cache import index as ix
from cache.digest import context_digest, racy

SECOND = 1_000_000_000


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files the test wrote just now count as settled (not racy)."""
    monkeypatch.setattr(digest_mod, "RACY_FINE_NS", 0)
    monkeypatch.setattr(digest_mod, "RACY_COARSE_NS", 0)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    for d in ("src/a", "src/b", "docs", "node_modules/keep", "empty"):
        (c / d).mkdir(parents=True)
    (c / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (c / ".dockerignore").write_text("**/*.log\nnode_modules\n!node_modules/keep\n")
    for i in range(5):
        (c / "src" / "a" / f"m{i}.py").write_text(f"print({i})\n")
        (c / "src" / "b" / f"n{i}.txt").write_bytes(os.urandom(100 + i))
    (c / "docs" / "x.md").write_text("doc\n")
    (c / "docs" / "run.log").write_text("ignored\n")
    (c / "node_modules" / "keep" / "k.js").write_text("k\n")
    (c / "node_modules" / "other.js").write_text("o\n")
    os.symlink("src/a/m0.py", c / "link")
    os.mkfifo(c / "pipe")
    os.chmod(c / "src" / "a" / "m1.py", 0o755)
    return c


def digest_of(c: Path, index: Path | None = None, **kw: object) -> digest_mod.ContextDigest:
    return context_digest(c, c / "Dockerfile", index_path=index, **kw)  # type: ignore[arg-type]


# --- the file format ---------------------------------------------------------------------


def test_records_round_trip(ctx: Path, tmp_path: Path, settled: None) -> None:
    index = tmp_path / "i.idx"
    digest_of(ctx, index)
    loaded = ix.load(index)
    assert loaded is not None and loaded.meta["files"] > 0
    again = ix.unpack(ix.pack(loaded.meta, loaded.dirs.values()))
    assert again.meta == loaded.meta
    assert {r: (d.names, d.flags, d.keys, d.contents, d.size) for r, d in again.dirs.items()} \
        == {r: (d.names, d.flags, d.keys, d.contents, d.size) for r, d in loaded.dirs.items()}
    entries = dict((name, (flag, key, content)) for name, flag, key, content
                   in loaded.dirs[""].entries())
    flag, key, content = entries["link"]
    assert ix.FOUND[flag] and content == "src/a/m0.py" and key is not None
    assert stat.S_ISLNK(key[4])
    assert entries["node_modules"][0] & ix.HELD


def test_a_record_built_from_parts_reads_back() -> None:
    rec = ix.DirRecord.build("d", ["a", os.fsdecode(b"b\xff"), "c"],
                             bytes([ix.flag_of(0o100644, ix.SENT), ix.flag_of(0o40755, ix.WALK),
                                    ix.flag_of(0o100644, 0)]),
                             [(1, 2, 3, 4, 0o100644), (0, 5, 6, 7, 0o40755)], ["ff" * 16, ""],
                             1)
    rec.check()
    assert [e[0] for e in rec.entries()] == ["a", os.fsdecode(b"b\xff"), "c"]
    assert [e[3] for e in rec.entries()] == ["ff" * 16, "", None]
    back = ix.unpack(ix.pack({"x": 1}, [rec])).dirs["d"]
    assert back.names == rec.names and back.keys == rec.keys and back.size == 1


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1],  # truncated
    lambda b: b[:40],
    lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:],  # one bit in the header
    lambda b: b[:-5] + bytes([b[-5] ^ 0x40]) + b[-4:],  # one bit in a record
    lambda b: b"BBIX" + (ix.VERSION + 1).to_bytes(2, "little") + b[6:],  # another version
    lambda b: b"{}",  # the old JSON index
    lambda b: b"",
])
def test_a_damaged_index_is_rebuilt_not_trusted(ctx: Path, tmp_path: Path, settled: None,
                                                damage) -> None:  # type: ignore[no-untyped-def]
    index = tmp_path / "i.idx"
    first = digest_of(ctx, index)
    index.write_bytes(damage(index.read_bytes()))
    assert ix.load(index) is None
    (ctx / "src" / "a" / "m2.py").write_text("print('changed')\n")
    again = digest_of(ctx, index)
    assert again.hexdigest == digest_of(ctx).hexdigest != first.hexdigest
    assert again.hashed == first.hashed  # every file read again
    assert again.changed == ["first build of this context"]
    assert ix.load(index) is not None  # and a sound index written


def test_records_the_rules_contradict_are_dropped(ctx: Path, tmp_path: Path,
                                                  settled: None) -> None:
    """An index whose decisions the rules do not reach (which only a damaged or forged
    index can hold) is dropped: the digest is the one computed without it."""
    index = tmp_path / "i.idx"
    (ctx / ".dockerignore").write_text("")
    digest_of(ctx, index)
    (ctx / ".dockerignore").write_text("src\n")
    forged = ix.load(index)
    assert forged is not None
    forged.meta["rules"] = digest_mod._Rules.read(ctx, ctx / "Dockerfile").ident
    index.write_bytes(ix.pack(forged.meta, forged.dirs.values()))
    (ctx / "src" / "a" / "new.py").write_text("x\n")  # src/a must be decided again
    got = digest_of(ctx, index)
    assert got.hexdigest == digest_of(ctx).hexdigest


# --- one value, whatever the path ----------------------------------------------------------


def _edits() -> list:  # type: ignore[type-arg]
    return [
        lambda c: (c / "src" / "a" / "m3.py").write_text("print('x')\n"),
        lambda c: (c / "src" / "b" / "new.txt").write_text("new\n"),
        lambda c: (c / "src" / "b" / "n0.txt").unlink(),
        lambda c: os.chmod(c / "src" / "a" / "m4.py", 0o700),
        lambda c: (c / "docs" / "more.log").write_text("still ignored\n"),
        lambda c: (c / "node_modules" / "keep" / "k.js").write_text("kept, changed\n"),
        lambda c: (c / "node_modules" / "other.js").write_text("excluded, changed\n"),
        lambda c: (c / "empty" / "sub").mkdir(),
        lambda c: (os.unlink(c / "link"), os.symlink("docs/x.md", c / "link")),
        lambda c: (c / ".dockerignore").write_text("*.md\n"),
        lambda c: os.utime(c / "src" / "a" / "m0.py", ns=(1, 1)),  # stat moves, bytes don't
        lambda c: (c / "docs").rename(c / "docs2"),
    ]


def share_everything(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Make even this small context take the parallel paths: `threads` (every read in the
    pool), `fork` (a second process walks half the directories), `serial` (neither)."""
    monkeypatch.setattr(digest_mod, "_FORK", how == "fork")
    if how == "fork":
        monkeypatch.setattr(digest_mod, "_SPLIT_DIRS", 2)
        monkeypatch.setattr(digest_mod, "_FORK_ENTRIES", 0)
    if how == "threads":
        monkeypatch.setattr(digest_mod, "_BIG_FILE", 0)
        monkeypatch.setattr(digest_mod, "_cpus", lambda: 2)


@pytest.mark.parametrize("how", ["serial", "threads", "fork"])
def test_warm_cold_and_no_index_agree(ctx: Path, tmp_path: Path, settled: None,
                                      monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    share_everything(monkeypatch, how)
    index = tmp_path / "i.idx"
    seen = {digest_of(ctx, index).hexdigest}
    for edit in _edits():
        edit(ctx)
        warm = digest_of(ctx, index)
        cold = digest_of(ctx, tmp_path / f"cold-{len(seen)}.idx")
        bare = digest_of(ctx)
        assert warm.hexdigest == cold.hexdigest == bare.hexdigest
        assert (warm.files, warm.bytes) == (cold.files, cold.bytes) == (bare.files, bare.bytes)
        again = digest_of(ctx, index)
        assert again.hexdigest == warm.hexdigest and again.hashed == 0 and again.changed == []
        seen.add(warm.hexdigest)
    assert len(seen) == 1 + len(_edits()) - 3  # all moved it but the utime and two excluded


def test_each_process_writes_its_subtrees_part_of_the_stream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no index, each process writes the stream of the subtrees it walked and the
    parent stitches them: the digest is the one a single process computes, also where an
    excluded directory deep inside a subtree holds a re-included file (HELD) and for
    names that are not UTF-8."""
    import random

    rng = random.Random(7)
    c = tmp_path / "deep"
    for top in range(12):
        for sub in ("src", "lib/x", "vendor", "lib/vendor/deeper"):
            d = c / f"t{top}" / sub
            d.mkdir(parents=True, exist_ok=True)
            for i in range(rng.randint(0, 4)):
                (d / f"f{i}.txt").write_bytes(rng.randbytes(rng.randint(0, 300)))
        (c / f"t{top}" / "vendor" / "keep.txt").write_text("kept\n")
        (c / f"t{top}" / os.fsdecode(b"bad\xff")).write_text("odd name\n")
    (c / "Dockerfile").write_text("FROM scratch\n")
    (c / ".dockerignore").write_text("**/vendor\n!**/vendor/keep.txt\n**/f3.txt\n")
    serial = digest_of(c)
    share_everything(monkeypatch, "fork")
    forked = digest_of(c)
    assert (forked.hexdigest, forked.files, forked.bytes, forked.hashed) == \
        (serial.hexdigest, serial.files, serial.bytes, serial.hashed)
    warm_index = tmp_path / "i.idx"
    digest_of(c, warm_index)
    (c / "t5" / "src" / "new.txt").write_text("new\n")  # the warm way: no parts written
    assert digest_of(c, warm_index).hexdigest == digest_of(c).hexdigest


@pytest.mark.parametrize("late", [0, 1])
def test_a_process_that_takes_no_directory_still_reads_its_share(
        ctx: Path, tmp_path: Path, settled: None, monkeypatch: pytest.MonkeyPatch,
        late: int) -> None:
    """The processes take the split's directories from one pipe: when one of them (the
    parent, `late` 0, or the second process) comes too late to take any, the files the
    walk found before the split are still read, and the digest is the serial one."""
    import time

    serial = digest_of(ctx)
    share_everything(monkeypatch, "fork")
    take = digest_mod._Walk._take

    def slow(self: digest_mod._Walk, frontier: list[str], tokens: int | None,
             half: int) -> list[str]:
        if half == late:
            time.sleep(0.3)  # the other one has long drained the pipe
        return take(self, frontier, tokens, half)

    monkeypatch.setattr(digest_mod._Walk, "_take", slow)
    for index in (None, tmp_path / "i.idx"):
        got = digest_of(ctx, index)
        assert (got.hexdigest, got.files, got.bytes, got.hashed) == \
            (serial.hexdigest, serial.files, serial.bytes, serial.hashed)


def test_a_second_process_that_fails_is_stood_in_for(ctx: Path, tmp_path: Path,
                                                      settled: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    share_everything(monkeypatch, "fork")
    marker = tmp_path / "forked"

    def broken(*_args: object) -> None:
        marker.write_text("the child ran")
        os._exit(3)

    monkeypatch.setattr(digest_mod, "_child", broken)
    index = tmp_path / "i.idx"
    got = digest_of(ctx, index)
    assert marker.exists()
    assert got.hexdigest == digest_of(ctx).hexdigest
    assert got.hashed == digest_of(ctx, tmp_path / "other.idx").hashed
    assert digest_of(ctx, index).hashed == 0


def test_threads_read_the_same_digests(ctx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [(str(p.relative_to(ctx)), p.stat().st_size) for p in sorted(ctx.rglob("*"))
            if stat.S_ISREG(p.lstat().st_mode)]
    assert {size >= 60 for _, size in jobs} == {True, False}
    fd = os.open(ctx, os.O_RDONLY | os.O_DIRECTORY)
    try:
        serial = digest_mod._read_all(str(ctx), fd, jobs)
        monkeypatch.setattr(digest_mod, "_BIG_FILE", 60)  # some in threads, some not
        monkeypatch.setattr(digest_mod, "_cpus", lambda: 2)
        assert digest_mod._read_all(str(ctx), fd, jobs) == serial
    finally:
        os.close(fd)
    assert serial == [digest_mod.hash_file(ctx / rel) for rel, _ in jobs]


def test_a_large_file_is_read_in_chunks(tmp_path: Path) -> None:
    big = tmp_path / "big"
    data = os.urandom(3 * (1 << 20) + 7)
    big.write_bytes(data)
    fd = os.open(big, os.O_RDONLY)
    try:
        got = digest_mod._read_hash(fd, 10)  # a stale size: it grew since the stat
    finally:
        os.close(fd)
    import xxhash

    assert got == xxhash.xxh3_128_hexdigest(data) == digest_mod.hash_file(big)


# --- what is read again -----------------------------------------------------------------


def test_the_first_warm_run_reads_nothing_again(ctx: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Files older than the granularity window are trusted on the next run (the old rule,
    a 2 s window, read everything written just before a build again)."""
    monkeypatch.setattr(digest_mod, "RACY_COARSE_NS", digest_mod.RACY_FINE_NS)
    index = tmp_path / "i.idx"
    import time

    time.sleep(3 * digest_mod.RACY_FINE_NS / SECOND)
    first = digest_of(ctx, index)
    assert first.hashed > 0
    assert digest_of(ctx, index).hashed == 0


def test_a_racy_file_is_read_again(ctx: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A same-size rewrite with the same mtime, stamped within the window of the walk that
    stored it, is seen: that entry was not trusted."""
    monkeypatch.setattr(digest_mod, "RACY_FINE_NS", 3600 * SECOND)  # everything is racy
    index = tmp_path / "i.idx"
    digest_of(ctx, index)
    f = ctx / "src" / "a" / "m0.py"
    st = f.stat()
    f.write_text("print(9)\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    again = digest_of(ctx, index)
    assert again.changed == ["changed: src/a/m0.py"]


def test_info_leaves_the_index_as_it_was(ctx: Path, tmp_path: Path, settled: None) -> None:
    index = tmp_path / "i.idx"
    digest_of(ctx, index)
    before = index.read_bytes()
    (ctx / "src" / "a" / "m0.py").write_text("print('edited')\n")
    dry = digest_of(ctx, index, write_index=False)
    assert dry.changed == ["changed: src/a/m0.py"] and index.read_bytes() == before
    assert digest_of(ctx, index).changed == ["changed: src/a/m0.py"]


@pytest.mark.parametrize(("mtime", "ctime", "racy_now"), [
    (100 * SECOND + 5, 100 * SECOND + 7, False),  # long ago
    (199 * SECOND + 990_000_000, 199 * SECOND + 990_000_001, True),  # within 20 ms
    (199 * SECOND + 900_000_000, 199 * SECOND + 900_000_001, False),  # 100 ms ago
    (199 * SECOND, 199 * SECOND + 1, True),  # whole-second mtime: a coarse clock, 2 s
    (199 * SECOND + 5, 199 * SECOND, True),  # whole-second ctime: the same
    (197 * SECOND, 197 * SECOND, False),  # coarse, but 3 s ago
    (100 * SECOND + 5, 200 * SECOND + 1, True),  # an old mtime, a new ctime (chmod, link)
    (100 * SECOND, 199 * SECOND + 500_000_001, False),  # extracted (whole-second mtime
    # set long ago), copied in 0.5 s before: the fine ctime says the clock is fine
])
def test_the_racy_rule(mtime: int, ctime: int, racy_now: bool) -> None:
    assert racy(mtime, ctime, 200 * SECOND) is racy_now


def test_a_fresh_file_is_racy_with_the_real_window(tmp_path: Path) -> None:
    f = tmp_path / "f"
    import time

    started = time.time_ns()
    f.write_text("x")
    st = f.stat()
    assert racy(st.st_mtime_ns, st.st_ctime_ns, started)


def test_unreadable_file_is_one_clear_error(ctx: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    f = ctx / "src" / "a" / "m0.py"
    f.chmod(0)
    from cache.errors import UserError

    with pytest.raises(UserError, match=r"cannot read .*m0\.py: permission denied"):
        digest_of(ctx)
