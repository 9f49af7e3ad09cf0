"""Docker's .dockerignore rules (cases from moby's patternmatcher semantics)."""

from __future__ import annotations

import pytest

from cache.dockerignore import Matcher, go_clean, read_patterns


def ex(patterns: list[str], path: str) -> bool:
    return Matcher(patterns).excluded(path)


def test_read_patterns_like_moby() -> None:
    text = "\ufeff# comment\n  *.log  \n\n/abs/path\n! keep.log\n./a/../b/\n#x\n"
    assert read_patterns(text) == ["*.log", "abs/path", "!keep.log", "b"]


def test_go_clean() -> None:
    assert go_clean("") == "."
    assert go_clean("a//b/./c/..") == "a/b"
    assert go_clean("//a") == "/a"


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    (["*.log"], "a.log", True),
    (["*.log"], "sub/a.log", False),          # * does not cross /
    (["**/*.log"], "sub/deep/a.log", True),
    (["**/*.log"], "a.log", True),            # **/ matches zero dirs
    (["sub"], "sub/deep/file", True),         # a parent dir match excludes below
    (["sub/**"], "sub/file", True),
    (["sub/**"], "subx/file", False),         # trailing ** is a prefix match on "sub/"
    (["sub**"], "subx/file", True),           # ... and on "sub" here
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[ab].txt"], "b.txt", True),
    (["*", "!keep"], "keep", False),
    (["*", "!keep", "keep"], "keep", True),   # the last match wins
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["a.b"], "axb", False),                  # . is literal
    (["**"], "anything/at/all", True),
    (["dir/*/x"], "dir/a/x", True),
    (["dir/*/x"], "dir/a/b/x", False),
    (["dir/**/x"], "dir/a/b/x", True),
])
def test_matching(patterns: list[str], path: str, excluded: bool) -> None:
    assert ex(patterns, path) is excluded


def test_descend_only_where_an_exception_could_match() -> None:
    m = Matcher(["docs", "!docs/keep.md"])
    assert m.descend("docs")
    m2 = Matcher(["docs", "!**/keep.md"])
    assert not m2.descend("docs")  # docker skips the dir: the exception can't rescue it
    assert not Matcher(["docs"]).descend("docs")


def test_bang_alone_is_an_error() -> None:
    from cache.errors import UserError

    with pytest.raises(UserError, match="illegal"):
        Matcher(["!"])


def test_dockerfile_and_dockerignore_always_sent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".dockerignore").write_text("*\n")
    m = Matcher.for_context(tmp_path, always=["Dockerfile"])
    assert not m.excluded("Dockerfile") and not m.excluded(".dockerignore")
    assert m.excluded("other")
