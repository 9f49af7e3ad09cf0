"""`.dockerignore` with Docker's own rules (moby's patternmatcher and ignorefile).

- A line starting with `#` is a comment; lines are trimmed; `!` re-includes.
- Patterns are cleaned like Go's `filepath.Clean` and a leading `/` is dropped.
- `*` and `?` never cross `/`; `**` crosses any number of directories.
- The last pattern that matches a path (or any of its parent directories) wins.
- An excluded directory is not descended into unless some `!` pattern starts with
  that directory's path: a `!**/keep` cannot rescue files below an excluded dir.
- The Dockerfile and `.dockerignore` are always sent (the CLI adds `!` for them).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cache.errors import UserError

_ESCAPE = set(".+()|{}$")


def go_clean(path: str) -> str:
    """Go's `filepath.Clean` for slash paths."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def read_patterns(text: str) -> list[str]:
    patterns: list[str] = []
    for i, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if i == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


@dataclass
class _Pattern:
    text: str
    exclusion: bool
    kind: str
    regex: re.Pattern[str] | None

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    out = "^"
    kind = "exact"
    i, n = 0, len(text)
    index = 0
    while i < n:
        ch = text[i]
        i += 1
        if ch == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out += ".*"
                        kind = "regex"
                else:
                    out += "(.*/)?"
                    kind = "regex"
                if index == 0:
                    kind = "suffix"
            else:
                out += "[^/]*"
                kind = "regex"
        elif ch == "?":
            out += "[^/]"
            kind = "regex"
        elif ch in _ESCAPE:
            out += "\\" + ch
        elif ch == "\\":
            if i < n:
                out += re.escape(text[i])
                i += 1
                kind = "regex"
            else:
                out += "\\\\"
        elif ch in "[]":
            out += ch
            kind = "regex"
        else:
            out += ch
        index += 1
    regex = None
    if kind == "regex":
        try:
            regex = re.compile(out + "$", re.DOTALL)
        except re.error as err:
            raise UserError(f".dockerignore: bad pattern {text!r}: {err}") from None
    return _Pattern(text, exclusion, kind, regex)


class Matcher:
    """Decides which context paths Docker would send."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns: list[_Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            p = go_clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise UserError('.dockerignore: illegal exclusion pattern "!"')
                p = p[1:]
            self.patterns.append(_compile(p, exclusion))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def for_context(cls, context: Path, always: Iterable[str] = ()) -> Matcher:
        ignore = context / ".dockerignore"
        patterns = read_patterns(ignore.read_text(errors="replace")) if ignore.is_file() else []
        base = cls(patterns)
        # The CLI re-includes the Dockerfile and .dockerignore when a pattern drops them.
        extra = [f"!{p}" for p in (".dockerignore", *always) if base.excluded(p)]
        return cls([*patterns, *extra]) if extra else base

    def check(self, path: str, parent_hits: tuple[bool, ...]) -> tuple[bool, tuple[bool, ...]]:
        """`excluded(path)`, given each pattern's hit on path's parent directories
        (Docker's MatchesUsingParentResults). Also returns the hits including `path`,
        for the caller to hand down to path's children."""
        hits = tuple(p.match(path) or parent_hits[i] for i, p in enumerate(self.patterns))
        matched = False
        for p, hit in zip(self.patterns, hits, strict=True):
            if p.exclusion != matched:
                continue
            if hit:
                matched = not p.exclusion
        return matched, hits

    @property
    def no_hits(self) -> tuple[bool, ...]:
        return (False,) * len(self.patterns)

    def excluded(self, path: str) -> bool:
        matched = False
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        for p in self.patterns:
            if p.exclusion != matched:
                continue
            hit = p.match(path)
            if not hit and parents:
                hit = any(p.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not p.exclusion
        return matched

    def descend(self, directory: str) -> bool:
        """Whether Docker walks into an excluded `directory` looking for `!` re-includes."""
        if not self.has_exclusions:
            return False
        prefix = directory + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)
