"""Our .dockerignore selection equals what the Docker daemon receives.

A differential test: random contexts (odd names, symlinks, FIFOs, empty dirs, modes) and
random .dockerignore files (negations, `**`, leading and trailing `/`, classes, escapes,
dirs excluded then re-included, patterns Docker rejects) are built with the real engine
(`FROM scratch`, `COPY . /ctx/`); the image's layer is what the daemon received. It must
equal the classic builder's selection (files, links and FIFOs exactly, with modes and
link targets; directories as a subset, since Docker creates parents), the digest's walk
must cover it, and Docker must reject exactly the cases we reject.

`BB_DIFF_CASES=N` (default 50) and `BB_DIFF_SEED=S` (default 9) size the batch.
"""

from __future__ import annotations

import io
import json
import os
import random
import stat
import subprocess
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bottle.tools import docker
from cache.digest import _walk
from cache.dockerignore import ContextFilter
from cache.errors import UserError
from tests.conftest import static_busybox

# Read at import: the autouse fixture clears BOTTLE_* variables before a test runs.
DIFF_CASES = int(os.environ.get("BB_DIFF_CASES", "50"))
DIFF_SEED = int(os.environ.get("BB_DIFF_SEED", "9"))

# --- the generator ------------------------------------------------------------------------

NAMES = [
    "a", "b", "src", "docs", "keep", "node_modules", "x.md", "y.log", "a.txt", "README.md",
    "1", "22", "v3.txt", ".hidden", ".dockerignore.bak", "-dash", "--", "with space",
    "br[ack]et", "st*r", "q?", "back\\slash", "new\nline", "caf\u00e9", "#hash", "!bang",
    "a^b", "tab\tin", "cr\r", "trail ", " lead", "\\d", "dot.dot", "\u00fcml.md", "K",
    "f\u2028x", "ff\x0cx", "ab", "abc", "aXb", "keep.md", "Dockerfile.bak", "{b}", "$x", "(p)",
    "a|b", "aa", "x{2}", "a.tmp",
    os.fsdecode(b"bad\xff"), os.fsdecode(b"\xc3"), os.fsdecode(b"lat\xe9n.md"),
    os.fsdecode(b"\xef\xbb\xbfbom"),
]
CLASSES = ["[a-c]", "[^x]", "[[:digit:]]", "[[:alpha:]]", "[[:^space:]]", "\\d", "\\w", "\\D",
           "[\\d]", "\\pL", "[!a]", "[.]", "[*]", "[?]", "[a-z0-9]", "\\s", "|", "{2}", "|*",
           "\\Q", "\\x41", "+"]
BROKEN = ["[]a]", "[-]", "[x-]", "[a-b-c]", "a\\", "x[", "[^", "x*[", "[\\",
          os.fsdecode(b"[a\xff]")]
REGEXP_BROKEN = ["\\Z", "[[:nope:]]", "[z-a]", "\\1", "\\q", "a\\\u00e9", "[a-\\d]"]


@dataclass
class Case:
    """One generated context: its entries and ignore files, and where the Dockerfile is."""

    seed: int
    dockerfile: str
    entries: dict[str, str] = field(default_factory=dict)  # rel -> "f"/"x"/"d"/"p"/"l:target"
    ignore: bytes = b""
    own_ignore: bytes | None = None  # <Dockerfile>.dockerignore

    def write(self, root: Path) -> Path:
        ctx = root / "ctx"
        ctx.mkdir(parents=True)
        for rel, kind in sorted(self.entries.items()):
            p = ctx / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if kind == "d":
                p.mkdir(exist_ok=True)
            elif kind == "p":
                os.mkfifo(p)
            elif kind.startswith("l:"):
                os.symlink(kind[2:], p)
            else:
                p.write_bytes(f"{rel!r} {self.seed}\n".encode())
                os.chmod(p, {"f": 0o644, "x": 0o755, "r": 0o600}[kind])
        df = ctx / self.dockerfile
        df.parent.mkdir(parents=True, exist_ok=True)
        df.write_text("FROM scratch\nCOPY . /ctx/\n")
        (ctx / ".dockerignore").write_bytes(self.ignore)
        if self.own_ignore is not None:
            (ctx / (self.dockerfile + ".dockerignore")).write_bytes(self.own_ignore)
        return ctx


def _tree(rng: random.Random, case: Case, rel_dir: str, depth: int) -> None:
    for _ in range(rng.randint(1 if depth == 0 else 0, 6 if depth == 0 else 4)):
        name = rng.choice(NAMES)
        rel = f"{rel_dir}/{name}" if rel_dir else name
        if rel in case.entries or rel in ("Dockerfile", ".dockerignore"):
            continue
        kind = rng.choices(["f", "x", "r", "d", "l", "p"], [8, 2, 1, 4, 1, 0.4])[0]
        if kind == "d" and depth < 3:
            case.entries[rel] = "d"
            _tree(rng, case, rel, depth + 1)
        elif kind == "l":
            case.entries[rel] = "l:" + rng.choice(["a", "../x", "/etc/passwd", "nowhere", name])
        else:
            case.entries[rel] = "f" if kind == "d" else kind


def _mangle(rng: random.Random, segment: str) -> str:
    r = rng.random()
    if r < 0.15:
        return "*"
    if r < 0.25:
        return "**"
    if r < 0.35 and segment:
        i = rng.randrange(len(segment))
        return segment[:i] + rng.choice(["?", "*", rng.choice(CLASSES)]) + segment[i + 1:]
    if r < 0.42 and segment:
        i = rng.randrange(len(segment))
        return segment[:i] + "\\" + segment[i:]
    if r < 0.5:
        return segment[: rng.randint(0, len(segment))] + "*"
    return segment


def _pattern(rng: random.Random, paths: list[str]) -> str:
    if rng.random() < 0.03:
        return rng.choice(BROKEN)
    if rng.random() < 0.03:
        return rng.choice(REGEXP_BROKEN)
    parts = rng.choice(paths).split("/")
    parts = [_mangle(rng, s) for s in parts[: rng.randint(1, len(parts))]]
    text = "/".join(parts)
    if rng.random() < 0.1:
        text = "/" + text
    elif rng.random() < 0.05:
        text = "./" + text
    if rng.random() < 0.15:
        text += rng.choice(["/", "/**", "/*", "/."])
    if rng.random() < 0.1:
        text = rng.choice([" ", "\t", "\u2028"]) + text + rng.choice([" ", "\u00a0", "\r", ""])
    return text


def _reinclude(rng: random.Random, paths: list[str]) -> list[str]:
    """A directory excluded, then something under it let back in (or the issue's shapes)."""
    dirs = [p for p in paths if "/" in p] or paths
    inner = rng.choice(dirs)
    top, _, rest = inner.partition("/")
    shapes = [
        [top, f"!{inner}", top], [top, f"!{inner}"], [f"{top}/**", f"!{top}/{rest[:1]}*"],
        [top, f"!**/{inner.rsplit('/', 1)[-1]}"], ["**/*.md", f"!{top}"], ["*", f"!{top}"],
        [f"{top}/", f"!{inner}", f"{inner}/*"], ["**", f"!{inner}"], [f"!{inner}", top],
    ]
    return rng.choice(shapes)


def make_case(seed: int) -> Case:
    rng = random.Random(seed)
    dockerfile = rng.choices(["Dockerfile", "build/Dockerfile", "sub dir/app.Dockerfile",
                              "../outside.Dockerfile"], [8, 1, 1, 1])[0]
    case = Case(seed, dockerfile)
    _tree(rng, case, "", 0)
    paths = [*case.entries, dockerfile.removeprefix("../"), ".dockerignore"]
    lines: list[str] = []
    for _ in range(rng.randint(0, 6)):
        r = rng.random()
        if r < 0.25:
            lines += _reinclude(rng, paths)
        elif r < 0.3:
            lines.append(rng.choice(["# comment", "", "   ", "#!x", " # not a comment"]))
        else:
            lines.append(("!" if rng.random() < 0.3 else "") + _pattern(rng, paths))
    eol = "\r\n" if rng.random() < 0.15 else "\n"
    text = eol.join(lines) + (eol if rng.random() < 0.7 else "")
    bom = b"\xef\xbb\xbf" if rng.random() < 0.05 else b""
    case.ignore = bom + os.fsencode(text)
    if rng.random() < 0.1:
        case.own_ignore = os.fsencode("\n".join(_pattern(rng, paths) for _ in range(2)))
    return case


# --- what we select and what the daemon received ----------------------------------------


def selection(ctx: Path, dockerfile: Path, *, union: bool) -> dict[str, os.stat_result]:
    rules = ContextFilter.for_context(ctx, dockerfile, classic_only=not union)
    return dict(_walk(ctx, rules))


@dataclass
class Received:
    kind: str  # "d", "f", "l", "p"
    mode: int
    target: str = ""


def received(tag: str) -> dict[str, Received]:
    """What `COPY . /ctx/` put in the image: the image's one layer, read from `docker save`."""
    saved = subprocess.run(["docker", "save", tag], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        (layer,) = manifest[0]["Layers"]
        data = outer.extractfile(layer).read()  # type: ignore[union-attr]
    out: dict[str, Received] = {}
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8",
                      errors="surrogateescape") as t:
        for m in t.getmembers():
            name = m.name.removeprefix("ctx/")
            if name != m.name and name:
                kind = "d" if m.isdir() else "l" if m.issym() else "p" if m.isfifo() else "f"
                out[name] = Received(kind, m.mode & 0o7777, m.linkname)
    return out


def _kind(st: os.stat_result) -> str:
    mode = st.st_mode
    return "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode) else \
        "p" if stat.S_ISFIFO(mode) else "f"


def compare(ctx: Path, rel_df: str, ours: dict[str, os.stat_result],
            got: dict[str, Received]) -> list[str]:
    """Differences between the classic selection and what the daemon received."""
    # The daemon drops .dockerignore and the Dockerfile again when they were ignored; a
    # Dockerfile from outside comes as .dockerfile.<random>, named in .dockerignore.
    skip = {".dockerignore", rel_df}
    mine = {p for p, st in ours.items() if _kind(st) != "d"} - skip
    theirs = {p for p, r in got.items() if r.kind != "d" and not p.startswith(".dockerfile.")}
    theirs -= skip
    problems = [f"not hashed, sent: {p!r}" for p in sorted(theirs - mine)]
    problems += [f"hashed, not sent: {p!r}" for p in sorted(mine - theirs)]
    problems += [f"dir hashed, not in image: {p!r}" for p, st in ours.items()
                 if _kind(st) == "d" and p not in got]
    for p in sorted(mine & theirs):
        st, r = ours[p], got[p]
        if _kind(st) != r.kind or (r.kind != "l" and stat.S_IMODE(st.st_mode) != r.mode):
            problems.append(f"type/mode differs: {p!r}")
        if r.kind == "l" and os.readlink(ctx / p) != r.target:
            problems.append(f"link target differs: {p!r}")
    if ".dockerignore" not in ours:
        problems.append(".dockerignore not hashed (the CLI always sends it)")
    return problems


@dataclass
class Outcome:
    agreed: bool
    kind: str  # how they agreed: "same", "both reject", ...
    detail: str = ""


def _ours(ctx: Path, dockerfile: Path, *, union: bool
          ) -> tuple[dict[str, os.stat_result], str]:
    try:
        return selection(ctx, dockerfile, union=union), ""
    except UserError as err:
        return {}, str(err)


def run_case(case: Case, root: Path, tag: str) -> Outcome:
    """Build one case and judge it. Where we refuse what Docker builds, the refusal must
    be one we chose on purpose: a pattern whose regexp Go rejects and that Docker's tar
    walk evaluates (the classic CLI silently stops sending the context there; BuildKit
    fails), or a `<Dockerfile>.dockerignore` only BuildKit reads."""
    ctx = case.write(root)
    dockerfile = ctx / case.dockerfile
    ours, why = _ours(ctx, dockerfile, union=False)
    union, union_why = _ours(ctx, dockerfile, union=True)
    # --no-cache: the classic builder's COPY cache key skips a symlink that loops to
    # itself, so an earlier case's image could stand in for this one.
    build = subprocess.run(["docker", "build", "--no-cache", "-q", "-f", str(dockerfile),
                            "-t", tag, str(ctx)], capture_output=True, text=True, errors="replace")
    err = (build.stderr.strip().splitlines() or ["?"])[-1]
    if build.returncode != 0:
        if why and "silently misses" not in why:
            return Outcome(True, "both reject")
        if why:
            return Outcome(True, "we refuse a truncated context, which fails")
        inside = not case.dockerfile.startswith("../")
        if inside and case.dockerfile not in ours and "Dockerfile" in err:
            # The CLI's legacy matcher did not re-include an ignored Dockerfile.
            return Outcome(True, "Dockerfile not sent, as predicted")
        return Outcome(False, "", f"docker failed, we did not: {err}")
    if why:
        if "silently misses" in why:
            return Outcome(True, "we refuse a truncated context")
        return Outcome(False, "", f"we reject, docker built: {why}")
    problems = compare(ctx, case.dockerfile, ours, received(tag))
    problems += [f"union misses {p!r}" for p in ours if not union_why and p not in union]
    if union_why and not problems:
        # Only BuildKit's walks add to the union: a refusal there is a BuildKit failure.
        own = f"{case.dockerfile.rsplit('/', 1)[-1]}.dockerignore"
        if Path(union_why.split(" line ", 1)[0]).name == own or "cannot compile" in union_why:
            return Outcome(True, "same; we refuse what BuildKit fails on")
        problems.append(f"union rejects: {union_why}")
    return Outcome(not problems, "same", "; ".join(problems[:5]))


def _remove_images(tags: list[str]) -> None:
    for i in range(0, len(tags), 50):
        subprocess.run(["docker", "rmi", "-f", *tags[i:i + 50]], capture_output=True)


def test_random_contexts_match_the_daemon(engine: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    count, seed = DIFF_CASES, DIFF_SEED
    prefix = f"bb-ignore-diff-{os.getpid()}"
    tags: list[str] = []
    failures: list[str] = []
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    try:
        for n in range(count):
            case = make_case(seed * 1_000_003 + n)
            tags.append(f"{prefix}:{n}")
            outcome = run_case(case, tmp_path / f"case{n}", tags[-1])
            kinds[outcome.kind] += outcome.agreed
            if not outcome.agreed:
                failures.append(f"case {n} (seed {case.seed}): {outcome.detail}\n"
                                f"  .dockerignore={case.ignore!r}\n  entries={case.entries!r}")
    finally:
        _remove_images(tags)
    with capsys.disabled():
        print(f"\ndockerignore differential: {count} cases (seed {seed}), "
              f"{count - len(failures)} agree with the daemon {dict(kinds)}, "
              f"{time.monotonic() - started:.1f}s")
    assert not failures, "\n".join(failures[:5])


# --- one hand-written context, with the cases spelled out -------------------------------

FILES = [
    "app/main.py", "app/main.pyc", "app/sub/deep/x.pyc", "app/keep.log", "app/other.log",
    "docs/README.md", "docs/guide.md", "docs/keep/me.md", "logs/a.log", "logs/keep.log",
    "node_modules/pkg/index.js", "node_modules/keep/k.js", "build/out.bin", "buildx/out.bin",
    "notes.txt", "notes.md", "secret.env", "vendor/x/y/z.go", "a[b].txt", "dir with space/f.txt",
    "x/y/tmp_1.tmp", "x/y/tmp_22.tmp", ".git/HEAD", ".hidden", "empty-dir/", "top.log",
    "md/a.md", "md/b.txt",
]

IGNORE = """
# typical project ignores, with exceptions, ** and character classes
**/*.pyc
*.log
!app/keep.log
docs
!docs/README.md
node_modules/
!node_modules/keep
node_modules
build/**
/secret.env
vendor/**/*.go
x/y/tmp_?.tmp
.git
notes.[mt]*
!notes.md
logs
!**/keep.log
md/*.md
!md
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
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    return ctx


def test_selection_matches_the_daemon(engine: str, context: Path, tmp_path: Path) -> None:
    tag = f"bb-ignore-it-{os.getpid()}:1"
    docker.build_image(context, tag, iidfile=tmp_path / "iid")
    try:
        got = received(tag)
    finally:
        _remove_images([tag])
    ours = selection(context, context / "Dockerfile", union=False)
    assert compare(context, "Dockerfile", ours, got) == []
    files = {p for p, st in ours.items() if not stat.S_ISDIR(st.st_mode)}
    # Sanity: the interesting cases went the way Docker's rules say.
    assert "top.log" not in files and "app/other.log" in files  # * stays in its dir
    assert "docs/README.md" in files and "docs/guide.md" not in files
    assert "logs/keep.log" not in files  # an excluded dir is not searched for !**/
    assert "notes.md" in files and "notes.txt" not in files
    assert "x/y/tmp_22.tmp" in files and "x/y/tmp_1.tmp" not in files
    assert "node_modules/keep/k.js" in files  # the last `node_modules` is not carried down
    assert "md/a.md" not in files  # `!md` was skipped for md/, so it does not rescue md/a.md


def test_docker_silently_truncates_at_a_bad_regexp_so_we_refuse(engine: str,
                                                                tmp_path: Path) -> None:
    """The CLI's context check never reaches `x\\Z` (all top-level names match `**`
    first), its tar walk does at a/b, logs an error and stops: the build succeeds
    without a/b and without zz, which `!zz` let through. We refuse such a context."""
    ctx = tmp_path / "ctx"
    (ctx / "a").mkdir(parents=True)
    for name in ("a/b", "c", "zz"):
        (ctx / name).write_text(name)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    (ctx / ".dockerignore").write_text("**\n!a/b\nx\\Z\n!zz\n")
    tag = f"bb-ignore-trunc-{os.getpid()}:1"
    try:
        docker.build_image(ctx, tag, iidfile=tmp_path / "iid")
        got = received(tag)
    finally:
        _remove_images([tag])
    assert "zz" not in got and "a/b" not in got and "Dockerfile" in got
    with pytest.raises(UserError, match=r"line 3: Docker cannot compile .* 'a/b'"):
        selection(ctx, ctx / "Dockerfile", union=False)
