"""Docker's .dockerignore rules: moby's ignorefile and patternmatcher behaviour (their test
tables restated as facts), Go's pattern and regexp syntax, and the context walks."""

from __future__ import annotations

import os
import random
import re
import socket
from pathlib import Path

import pytest

from cache.digest import _walk
from cache.dockerignore import (
    BadPatternReached,
    ContextFilter,
    Matcher,
    Pattern,
    Rule,
    go_clean,
    read_patterns,
    read_rules,
    regexp_source,
)
from cache.errors import UserError, quoted
from cache.goregexp import GoRegexpError, glob_syntax_ok, go_regexp

# --- reading: ignorefile.ReadAll --------------------------------------------------------


def test_read_all_like_moby() -> None:
    text = b"test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n" \
           b"! /inverted/abs/path\n!\n! "
    assert read_patterns(text) == ["test1", "test2", "a/file/here", "lastfile",
                                   "!inverted/abs/path", "!", "!"]


@pytest.mark.parametrize(("data", "patterns"), [
    (b"\xef\xbb\xbf*.log\n", ["*.log"]),                # BOM dropped on the first line
    (b"a\n\xef\xbb\xbfb\n", ["a", "\ufeffb"]),          # ... only there
    (b"a\r\nb\r\n", ["a", "b"]),                        # CRLF
    (b"a\rb\n", ["a\rb"]),                              # a lone CR does not split
    (b"a\x0cb\n\x0cc\x0c\n", ["a\x0cb", "c"]),          # form feed: trimmed, no split
    ("a\u2028b\n\u2028c\u2028\n".encode(), ["a\u2028b", "c"]),  # U+2028 likewise
    ("\u00a0x\u3000\n".encode(), ["x"]),                # Go trims Unicode spaces
    (b"\x1cx\x1f\n", ["\x1cx\x1f"]),                    # ... but not what str.strip() adds
    (b"# comment\n #x\n", ["#x"]),                      # a comment only before trimming
    (b"./a/../b/\n//c\n/\n", ["b", "c", "/"]),          # filepath.Clean, one leading /
    (b"!  /x/./y\n", ["!x/y"]),
    (b"bad\xff\n", [os.fsdecode(b"bad\xff")]),          # bytes that are not UTF-8 stay
    (b"a\n\n", ["a"]),
    (b"", []),
])
def test_read_all_lines_and_trimming(data: bytes, patterns: list[str]) -> None:
    assert read_patterns(data) == patterns


def test_rules_know_their_line() -> None:
    rules = read_rules(b"# x\n\na\n!b\n", "Dockerfile.dockerignore")
    assert rules == [Rule("a", "Dockerfile.dockerignore line 3"),
                     Rule("!b", "Dockerfile.dockerignore line 4")]


def test_a_line_go_cannot_scan_is_an_error() -> None:
    read_patterns(b"a" * 65535 + b"\n")
    with pytest.raises(UserError, match=r"^\.dockerignore line 2: longer than 65535 bytes"):
        read_patterns(b"ok\n" + b"a" * 65536)


def test_go_clean() -> None:
    assert go_clean("") == "."
    assert go_clean("a//b/./c/..") == "a/b"
    assert go_clean("//a") == "/a"
    assert go_clean("/../a") == "/a"
    assert go_clean("a/../..") == ".."


# --- patterns Go rejects ------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "a\\", "[", "[^", "[^bc", "a[",
    "*/[", ".*[", "**/x[", "[\\", os.fsdecode(b"[a\xff]"), "[]", "[^]a]", "[a-]",
])
def test_patterns_go_rejects_fail_with_file_line_and_pattern(pattern: str) -> None:
    assert not glob_syntax_ok(pattern)
    with pytest.raises(UserError) as err:
        Matcher(read_rules(b"ok\n" + os.fsencode(pattern) + b"\n"))
    msg = str(err.value)
    assert msg.startswith(".dockerignore line 2: ") and quoted(go_clean(pattern)) in msg
    assert "\n" not in msg


@pytest.mark.parametrize("pattern", ["[\\]a]", "[\\-]", "[x\\-]", "[\\-x]", "a\\*b", "[!a]",
                                     "[z-a]", "[[:digit:]]", "\\d", "x[a]*", "[^\\]a]",
                                     "x*[", "a*[]"])
def test_patterns_go_accepts(pattern: str) -> None:
    """Go's check is `filepath.Match(pattern, ".")`, which stops at the first chunk that
    cannot match ".": `x*[` passes (its regexp then fails when Docker evaluates it)."""
    assert glob_syntax_ok(pattern)
    Matcher([pattern])


@pytest.mark.parametrize("line", [b"!", b"! ", b"!/", b"!//"])
def test_a_bare_exception_is_an_error(line: bytes) -> None:
    with pytest.raises(UserError, match=r'^\.dockerignore line 1: Docker rejects "!"'):
        Matcher(read_rules(line))


# --- patternmatcher's tables, as facts -----------------------------------------------------

# (pattern, path, excluded): one pattern, the path and its parents deciding.
SINGLE = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True),
    ("**", "/", True), ("**/", "/", True), ("**", "dir/file", True), ("**/", "dir/file", True),
    ("**", "dir/file/", True), ("**/", "dir/file/", True), ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True), ("dir/**", "dir/file", True), ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True), ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True), ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True), ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True), ("**file", "file", True),
    ("**file", "dir/file", True), ("**/file", "dir/file", True), ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True), ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True), ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True), ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True), ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True), ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True), (".*", ".foo", True), (".*", "foo", False),
    ("abc.def", "abcdef", False), ("abc.def", "abc.def", True), ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False), ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False),
    ("abc/**", "abc/def", True), ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),
]
MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
]
CASES = [([p], path, ex) for p, path, ex in SINGLE] + MULTI


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_matches_or_parent_matches(patterns: list[str], path: str, excluded: bool) -> None:
    assert Matcher(patterns).matches(path) is excluded


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_matches_using_parent_results(patterns: list[str], path: str, excluded: bool) -> None:
    m = Matcher(patterns)
    assert m.excluded(path) is excluded  # each parent decided first, results carried down
    assert m.check(path, None)[1] is excluded  # no parent results: parents tried directly


# (pattern, path, excluded, rejected) for the package-level `Matches` (the legacy matcher
# the CLI uses for its re-includes), after filepath.Match's own table.
LEGACY = [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False), ("a?b", "a\u263ab", True),
    ("a[^a]b", "a\u263ab", True), ("a???b", "a\u263ab", False),
    ("a[^a][^a][^a]b", "a\u263ab", False), ("[a-\u03b6]*", "\u03b1", True),
    ("*[a-\u03b6]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False),
    ("[\\]a]", "]", True), ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True),
    ("[x\\-]", "z", False), ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False),
    ("*x", "xxx", True), ("*", "fileutils.go", True), ("*.go", "fileutils.go", True),
    ("*.go", ".", False),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), LEGACY)
def test_legacy_matches(pattern: str, path: str, excluded: bool) -> None:
    path = go_clean(path)
    assert (path != "." and Matcher([pattern]).matches_legacy(path)) is excluded


def test_legacy_matches_checks_one_parent_only() -> None:
    # "sub" is the parent at the pattern's depth; `**/a` (two deep) never sees "a".
    assert Matcher(["sub"]).matches_legacy("sub/Dockerfile")
    assert not Matcher(["**/a"]).matches_legacy("a/b/Dockerfile")
    assert Matcher(["**/a"]).matches("a/b/Dockerfile")


# (pattern, kind, Go regexp) after patternmatcher's compile.
COMPILED = [
    ("*", "regexp", "^[^/]*$"), ("file*", "regexp", "^file[^/]*$"),
    ("*file", "regexp", "^[^/]*file$"), ("a*/b", "regexp", "^a[^/]*/b$"),
    ("**", "suffix", None), ("**/**", "regexp", "^(.*/)?.*$"), ("dir/**", "prefix", None),
    ("**/dir", "suffix", None), ("**/dir2/*", "regexp", "^(.*/)?dir2/[^/]*$"),
    ("**/dir2/**", "regexp", "^(.*/)?dir2/.*$"), ("**file", "suffix", None),
    ("**/file*txt", "regexp", "^(.*/)?file[^/]*txt$"),
    ("**/**/*.txt", "regexp", "^(.*/)?(.*/)?[^/]*\\.txt$"), ("a[b-d]e", "regexp", "^a[b-d]e$"),
    (".*", "regexp", "^\\.[^/]*$"), ("abc.def", "exact", None),
    ("abc?def", "regexp", "^abc[^/]def$"), ("**/foo/bar", "suffix", None),
    ("a(b)c/def", "exact", None), ("a.|)$(}+{bc", "exact", None),
    ("\ufeff*.md", "regexp", "^[^/]*\\.md$"),  # text/scanner skips a leading BOM
]


@pytest.mark.parametrize(("pattern", "kind", "source"), COMPILED)
def test_compile(pattern: str, kind: str, source: str | None) -> None:
    got_kind, got_source = regexp_source(pattern)
    assert got_kind == kind
    if source is not None:
        assert got_source == source
    parsed = Pattern.parse(Rule(pattern, "x"))
    assert parsed is not None and parsed.kind == kind


# --- Go's regexp semantics, not Python's ------------------------------------------------

GO_REGEXP = [
    ("\\d", "7", True), ("\\d", "\u0663", False),         # \d is ASCII in Go
    ("\\s", " ", True), ("\\s", "\x0b", False),          # Go's \s has no \v
    ("\\w", "_", True), ("\\w", "\u00e9", False), ("\\D", "\u00e9", True),
    ("[[:digit:]]", "5", True), ("[[:digit:]]", "d", False), ("[[:^alpha:]]", "1", True),
    ("[[:space:]]", "\x0b", True), ("[\\d_]", "_", True), ("[^\\d]", "x", True),
    ("\\pL", "\u00e9", True), ("\\pL", "1", False), ("\\PL", "1", True), ("\\pN", "\u0663", True),
    ("\\x41", "A", True), ("\\101", "A", True), ("\\0", "\x00", True), ("\\t", "\t", True),
    ("a*b", "a\nb", True),                                # [^/] crosses a newline
    ("a?b", "a\nb", True), ("[^a]", "\n", True),
    ("**/x", "a\nb/x", True),                             # suffix match: plain strings
    ("**/x*", "a\nb/x", False),                           # regexp: `.` stops at a newline
    ("a/**/b*", "a/x\ny/b", False), ("a/**/b*", "a/xy/b", True),
    ("\\Qab*", "ab[^/]*$", True),                         # \Q quotes the rest, `$` included
    ("\\Qab*", "ab[^/]*$/more", True), ("\\Qab*", "abc", False),
    ("\\Qa.b", "a\\.b$", True), ("\\Qa.b", "a.b", False),    # ... and the `\\.` for `.`
    ("\\b*x", "x", True), ("a\\B*b", "ab", True),
    ("[!a]", "!", True), ("[!a]", "b", False),           # ! does not negate in a regexp
    ("[*]", "[]", True), ("[*]", "*", False),             # * inside [] became [^/]*
    ("a^b", "a^b", True), ("*^b", "x^b", False),
    # moby escapes only `.+()$`: its bitmap overflows a byte for `|`, `{` and `}`, so in
    # a pattern with glob characters they are regexp syntax (Go searches unanchored).
    ("*.log|*.tmp", "x/y.tmp", True), ("*.log|*.tmp", "x/y.tmpz", False),
    ("x*|", "any/thing", True), ("a|b", "a|b", True), ("a|b", "a", False),
    ("a{2}*", "aa", True), ("a{2}*", "a{2}", False), ("a{,2}*", "a{,2}", True),
    ("a{01}*", "a{01}", True), ("{1}*", "x", True),
    ("a\\x{41}*", "aA", True), ("\\p{Lu}*", "\u00c9x", True), ("\\p{^Lu}*", "\u00c9x", False),
    ("[\\p{Nd}]*", "\u0663", True), ("\\p{Any}", "\n", True),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), GO_REGEXP)
def test_go_regexp_meaning(pattern: str, path: str, excluded: bool) -> None:
    assert Matcher([pattern]).matches(path) is excluded


@pytest.mark.parametrize("source", ["^\\Z$", "^[[:nope:]]$", "^[z-a]$", "^\\1$", "^\\8$",
                                    "^\\q$", "^\\C$", "^[a-\\d]$", "^\\p\\{L\\}$", "^\\pX$",
                                    "^[\\b]$", "^a\\\u00e9$", "^\\x4$", "^[a$", "^a{2,1}$",
                                    "^a{1001}$", "^a**$", "^(*)$", "^|*$"])
def test_go_regexp_errors(source: str) -> None:
    with pytest.raises(GoRegexpError):
        go_regexp(source)


def test_a_unicode_script_class_cannot_be_evaluated() -> None:
    with pytest.raises(UserError, match=r"^\.dockerignore line 1: .*\\p\{Greek\}"):
        Matcher(read_rules(b"\\p{Greek}*\n"))


def test_names_that_are_not_utf8() -> None:
    bad = os.fsdecode(b"bad\xff")
    assert Matcher([bad]).matches(bad)                             # exact: same bytes
    assert Matcher(["bad?"]).matches(bad)                          # one bad byte, one rune
    assert not Matcher(["bad??"]).matches(bad)
    assert Matcher(["bad*"]).matches(os.fsdecode(b"bad\xff\xfe"))
    e_acute = "caf\u00e9"                                          # b"caf\xc3\xa9"
    assert Matcher([os.fsdecode(b"**\xa9")]).matches(e_acute)      # suffix compares bytes
    assert Matcher([os.fsdecode(b"caf\xc3**")]).matches(e_acute)   # prefix compares bytes
    assert not Matcher([os.fsdecode(b"caf\xc3?")]).matches(e_acute)


# --- the walks ------------------------------------------------------------------------


def make(ctx: Path, files: list[str], ignore: str | bytes) -> Path:
    for f in files:
        p = ctx / f
        if f.endswith("/"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(os.fsencode(f))
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / ".dockerignore").write_bytes(ignore if isinstance(ignore, bytes) else ignore.encode())
    return ctx


def sent(ctx: Path, dockerfile: str = "Dockerfile", *, classic_only: bool = False) -> set[str]:
    rules = ContextFilter.for_context(ctx, ctx / dockerfile, classic_only=classic_only)
    return {rel for rel, _ in _walk(ctx, rules)}


def test_issue_example_a_dir_reexcluded_after_an_exception(tmp_path: Path) -> None:
    """Docker sends node_modules/keep: the last `node_modules` was skipped for the
    directory (it already matched), so it is not carried down to node_modules/keep."""
    ctx = make(tmp_path, ["node_modules/keep", "node_modules/other"],
               "node_modules\n!node_modules/keep\nnode_modules\n")
    assert "node_modules/keep" in sent(ctx, classic_only=True)
    assert "node_modules/other" not in sent(ctx)


def test_issue_example_an_exception_skipped_for_a_dir(tmp_path: Path) -> None:
    """Docker does not send docs/a.md: `!docs` was skipped for docs (nothing matched it
    yet), so docs/a.md is decided by `**/*.md` alone."""
    ctx = make(tmp_path, ["docs/a.md", "docs/b.txt"], "**/*.md\n!docs\n")
    assert {"docs", "docs/b.txt"} <= sent(ctx)
    assert "docs/a.md" not in sent(ctx)


def test_an_excluded_dir_is_walked_into_only_for_a_literal_exception(tmp_path: Path) -> None:
    ctx = make(tmp_path, ["docs/keep.md", "docs/x.md", "logs/keep.md"],
               "docs\nlogs\n!docs/keep.md\n")
    assert {"docs/keep.md"} == {p for p in sent(ctx) if p.startswith(("docs", "logs"))} - {"docs"}


def test_buildkit_walks_in_for_a_globbing_exception(tmp_path: Path) -> None:
    """The classic CLI never looks below `docs` for `!**/keep.md`; BuildKit does (an
    exception with a glob character), so the union hashes docs/keep.md and docs."""
    ctx = make(tmp_path, ["docs/keep.md", "docs/x.md"], "docs\n!**/keep.md\n")
    assert "docs/keep.md" not in sent(ctx, classic_only=True)
    assert {"docs", "docs/keep.md"} <= sent(ctx) and "docs/x.md" not in sent(ctx)


def test_dockerfile_and_dockerignore_are_always_sent(tmp_path: Path) -> None:
    ctx = make(tmp_path, ["other", "sub/Dockerfile", "sub/x"], "*\n")
    assert sent(ctx, classic_only=True) == {".dockerignore", "Dockerfile"}
    (ctx / ".dockerignore").write_text("sub\n")
    assert {"sub/Dockerfile", "sub"} <= sent(ctx, "sub/Dockerfile")
    assert "sub/x" not in sent(ctx, "sub/Dockerfile")


def test_the_cli_fails_to_re_include_a_deep_dockerfile(tmp_path: Path) -> None:
    """The CLI's legacy matcher misses `**/a` for a/b/Dockerfile: it is not sent (and the
    classic build fails to find it); the digest hashes the Dockerfile on its own."""
    ctx = make(tmp_path, ["a/b/Dockerfile"], "**/a\n")
    assert "a/b/Dockerfile" not in sent(ctx, "a/b/Dockerfile", classic_only=True)


def test_dockerfile_dockerignore_adds_buildkit_selection(tmp_path: Path) -> None:
    ctx = make(tmp_path, ["a.log", "b.txt", "keep/x"], "*.txt\nkeep\n")
    assert sent(ctx) == {".dockerignore", "Dockerfile", "a.log"}
    (ctx / "Dockerfile.dockerignore").write_text("*.log\n")
    assert sent(ctx, classic_only=True) == {".dockerignore", "Dockerfile", "a.log",
                                            "Dockerfile.dockerignore"}
    assert sent(ctx) == {".dockerignore", "Dockerfile", "Dockerfile.dockerignore", "a.log",
                         "b.txt", "keep", "keep/x"}
    (ctx / "Dockerfile.dockerignore").write_text("ok\n[x-]\n")
    with pytest.raises(UserError, match=rf"^{ctx}/Dockerfile\.dockerignore line 2: .*'\[x-\]'"):
        sent(ctx)
    sent(ctx, classic_only=True)  # the classic builder never reads it


def test_a_regexp_go_rejects_fails_where_the_cli_evaluates_it(tmp_path: Path) -> None:
    ctx = make(tmp_path, ["y"], "x\\Z\n")
    with pytest.raises(UserError,
                       match=rf"^{ctx}/\.dockerignore line 1: Docker rejects .*'x\\\\Z'"):
        sent(ctx)


def test_a_regexp_go_rejects_is_harmless_when_never_evaluated(tmp_path: Path) -> None:
    ctx = make(tmp_path, ["y"], "!x\\Z\n")  # an exception nothing was excluded before
    assert sent(ctx) == {".dockerignore", "Dockerfile", "y"}


def test_a_regexp_go_rejects_reached_in_the_tar_walk(tmp_path: Path) -> None:
    """The CLI's check never reaches `x\\Z` (everything matched `**` first), but its tar
    walk does, at a/b, and stops sending the context there: refused."""
    ctx = make(tmp_path, ["a/b", "c"], "**\n!a/b\nx\\Z\n")
    with pytest.raises(UserError, match=r"line 3: Docker cannot compile .* 'a/b'"):
        sent(ctx)


def test_odd_names_fifos_and_sockets(tmp_path: Path) -> None:
    names = [os.fsdecode(b"bad\xff"), "new\nline", "-dash", "[x]", "a\\b", "sp ace"]
    ctx = make(tmp_path, names, "*.nothing\n")
    os.mkfifo(ctx / "fifo")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(ctx / "sock"))
        got = sent(ctx)
    assert got >= {*names, "fifo"}
    assert "sock" not in got


def test_non_utf8_pattern_excludes_the_same_bytes(tmp_path: Path) -> None:
    ctx = make(tmp_path, [os.fsdecode(b"bad\xff"), os.fsdecode(b"bad\xfe")], b"bad\xff\n")
    got = sent(ctx)
    assert os.fsdecode(b"bad\xfe") in got and os.fsdecode(b"bad\xff") not in got


def test_unreadable_dockerignore(tmp_path: Path) -> None:
    ctx = make(tmp_path, [], "")
    (ctx / ".dockerignore").unlink()
    (ctx / ".dockerignore").mkdir()
    with pytest.raises(UserError, match=rf"cannot read {ctx}/\.dockerignore"):
        sent(ctx)


def test_a_bad_pattern_names_which_dockerignore(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The context's own file, as a path: relative below the working directory, whole
    elsewhere (`bottle.toml`'s context is often not where the user stands)."""
    ctx = make(tmp_path / "app", ["y"], "ok\n[z-a]\n")
    for cwd, name in ((tmp_path / "app", ".dockerignore"), (tmp_path, "app/.dockerignore"),
                      (tmp_path / "elsewhere", f"{ctx}/.dockerignore")):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        with pytest.raises(UserError) as err:
            sent(ctx)
        assert str(err.value).startswith(f"{name} line 2: Docker rejects the pattern '[z-a]'")


def test_an_ignored_dockerfile_whose_name_is_no_pattern(tmp_path: Path) -> None:
    """The CLI re-includes an ignored Dockerfile as the pattern `!<path>`: a name Go's
    glob rejects fails the build (checked against the daemon)."""
    ctx = make(tmp_path, [], "*\n")
    (ctx / "Docker[file").write_text("FROM scratch\n")
    with pytest.raises(UserError, match=r"exception for the Dockerfile: .*'Docker\[file'"):
        sent(ctx, "Docker[file")
    (ctx / ".dockerignore").write_text("x\n")
    assert "Docker[file" in sent(ctx, "Docker[file")


# --- the literal-tail shortcut of `check` ------------------------------------------------

# Patterns built from parts that end in text, in globs, and in what Go's regexp reads
# (`{2}`, `|`, `^`), against names that such endings hit or just miss.
_STARTS = ["", "*", "**/", "**", "a/", "a/**/", "?", "[ab]", "\\*", "^", "a|", "é", "!"]
_CORES = ["", "a", "foo", "x.log", "a{2}", "a|b", "^a", "$", "[^a]", "*", "."]
_ENDS = ["", ".log", "/**", "/*", "*", "{2}", "g", "/foo", "b"]
_NAMES = ["a", "b", "x.log", "a.log", "log", "foo", "ab", "a|b", "aa", "bb", "*", "é",
          "a.log\n", ".", "$", "aab", "^a", "xfoo", "a{2}", "g", "-"]


def test_the_tail_shortcut_answers_as_every_pattern_would() -> None:
    """`check` skips the patterns when an ASCII path ends with none of their literal tails;
    with the shortcut off the answers (and the hits handed down) are the same."""
    rng = random.Random(11)
    paths = _NAMES + [f"{a}/{b}" for a in _NAMES for b in _NAMES if rng.random() < 0.3]
    tried = skipped = 0
    for start in _STARTS:
        for core in _CORES:
            for end in _ENDS:
                text = start + core + end
                others = [] if rng.random() < 0.7 else [f"!{rng.choice(_NAMES)}.log"]
                try:
                    fast = Matcher([text, *others])
                except UserError:
                    continue
                slow = Matcher([text, *others])
                slow._tails = None
                for path in paths:
                    parent = None if rng.random() < 0.5 else tuple(
                        rng.random() < 0.1 for _ in fast.patterns)
                    upto, hits = rng.choice((-1, 0, 1)), rng.random() < 0.5
                    try:
                        want = slow.check(path, parent, upto, hits=hits)
                    except BadPatternReached:
                        continue
                    tried += 1
                    skipped += fast._tails is not None and path.isascii() and \
                        not path.endswith(fast._tails)
                    assert fast.check(path, parent, upto, hits=hits) == want, \
                        (text, others, path, parent, upto)
    assert tried > 50_000 and skipped > 20_000  # the generator reaches both ways


@pytest.mark.parametrize(("patterns", "tails"), [
    (["*.log", "**/*.log"], (".log", ".log")),
    (["node_modules", "!keep.txt"], ("node_modules", "keep.txt")),
    (["**/build"], ("build",)),  # `**/build` also hits a bare `build`
    (["build/**"], None),  # ends in a glob: nothing to test
    (["a|b.log"], None),  # Go reads `|` as an alternative
    (["*.lo[gG]"], None),
    (["é.log"], None),
])
def test_tails(patterns: list[str], tails: tuple[str, ...] | None) -> None:
    assert Matcher(patterns)._tails == tails


def test_a_class_written_negated_holds_the_same_code_points() -> None:
    """`_class_re` writes a class by its complement when that is shorter (`[^/]`): the
    same code points match either way, at the edges of every range and across Unicode."""
    from cache.goregexp import _MAX_RUNE, _class_re

    rng = random.Random(5)
    edges = [0, 1, 0x2E, 0x2F, 0x30, 0x7F, 0x80, 0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFFFD,
             0xFFFF, 0x10000, _MAX_RUNE - 1, _MAX_RUNE]
    negated = 0
    for _ in range(400):
        ranges = []
        for _ in range(rng.randint(1, 4)):
            lo = rng.choice([rng.randrange(0x80), rng.randrange(_MAX_RUNE + 1), *edges])
            ranges.append((lo, min(_MAX_RUNE, lo + rng.choice([0, 1, 5, 0x80, _MAX_RUNE]))))
        written = _class_re(ranges)
        negated += written.startswith("[^")
        rx = re.compile(written, re.ASCII)
        probes = set(edges)
        for lo, hi in ranges:
            probes |= {lo - 1, lo, hi, hi + 1, (lo + hi) // 2}
        for cp in probes:
            if 0 <= cp <= _MAX_RUNE:
                inside = any(lo <= cp <= hi for lo, hi in ranges)
                assert bool(rx.fullmatch(chr(cp))) is inside, (ranges, written, hex(cp))
    assert negated > 50
    assert _class_re([(0, 0x2E), (0x30, _MAX_RUNE)]) == "[^\\U0000002f]"
