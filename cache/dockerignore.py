"""`.dockerignore` as Docker reads and applies it, and the union of what builders send.

Reading (moby's `ignorefile.ReadAll`): lines split on `\\n` only (one `\\r` before it is
dropped; other CR, form feed, U+2028 stay in the line); a UTF-8 BOM is dropped from the
first line; a line starting with `#` (before trimming) is a comment; lines are trimmed
as Go's `strings.TrimSpace` trims; `!` re-includes; patterns are cleaned like Go's
`filepath.Clean` and one leading `/` is dropped. A line of 64 KiB or more fails, as
Go's `bufio.Scanner` does.

Patterns (moby's patternmatcher): a pattern Go's `filepath.Match` rejects (`[]a]`, `[-]`,
`[x-]`, `[a-b-c]`, a trailing backslash, an unclosed `[`, a bare `!`) makes Docker's
build fail, so it is a `UserError` naming the file, line and pattern. A pattern is
then turned into a Go regexp (`*` -> `[^/]*`, `?` -> `[^/]`, `**` -> any number of
directories, `\\x` -> `\\x`, `[...]` left as is, `.+()$` escaped but not `|{}`: moby's
escape bitmap overflows a byte for them, so `*.log|*.tmp` is an alternation) and
evaluated with Go's regexp semantics (see cache.goregexp): `\\d`, `\\s`, `\\w`,
`[[:digit:]]` are ASCII classes, `\\pL` a Unicode category, `.` and so `**` do not cross
a newline in a name, while `*` and `?` do. Patterns without glob characters compare
bytes (exact, `dir/**` prefix, `**name` suffix). Names that are not UTF-8 match as Go
matches them: byte-wise for those comparisons, one U+FFFD per bad byte for regexps.

A pattern whose regexp Go rejects (`\\Z`, `[[:nope:]]`, `[z-a]`) fails only when Docker
evaluates it. If the CLI's context check reaches it, the build fails; if only the tar
walk (or BuildKit) does, the classic CLI silently stops sending the context there and
BuildKit fails. Both are a `UserError` here; a pattern never evaluated is harmless.

The walk (the classic builder's CLI: go-archive's `TarWithOptions` with
`MatchesUsingParentResults`): each directory's per-pattern results are decided once and
handed down. A pattern skipped for a directory (an `!` line before anything matched, or
a plain line after it already matched) is not carried down, so `node_modules`,
`!node_modules/keep`, `node_modules` sends `node_modules/keep`, and `**/*.md`, `!docs`
does not send `docs/a.md`. An excluded directory is walked into only if an `!` line's
text starts with that directory's path plus `/`; the directory itself is not sent.
The CLI re-includes `.dockerignore` and the Dockerfile (`!<path>` lines appended when
its legacy matcher says they are excluded).

The union: BuildKit (fsutil's filter) applies the same matcher without those two
appended lines and walks into every excluded directory once any `!` line has a glob
character outside a trailing `/*` or `/**`. BuildKit reads `<Dockerfile>.dockerignore`
instead of `.dockerignore` when it exists; the classic builder never reads it. The
digest hashes every path that any of these sends: the classic builder with
`.dockerignore`, BuildKit with `.dockerignore`, and BuildKit with
`<Dockerfile>.dockerignore` when that file exists (its bytes are hashed too, and a
pattern in it that Go rejects is a `UserError`, since BuildKit would fail). The digest
may cover more than one builder sends, never less. Excluded directories that hold a
sent path are hashed as well (BuildKit sends them; the classic daemon creates them).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Sequence
from pathlib import Path

from cache.errors import UserError, quoted
from cache.goregexp import (
    GoRegexpError,
    GoRegexpUnsupported,
    Search,
    as_bytes,
    glob_syntax_ok,
    go_regexp,
)
from cache.record import dataclass

IGNORE_FILE = ".dockerignore"
_MAX_LINE = 64 * 1024  # bufio.Scanner's largest token
_BOM = b"\xef\xbb\xbf"
# unicode.IsSpace: what Go's strings.TrimSpace removes (not \x1c-\x1f, unlike str.strip).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"
# Characters a glob would see as special: fsutil walks into excluded dirs once an
# exception has one of them (after a trailing /* or /** is dropped).
_GLOB_CHARS = frozenset("*[]?^\\")
# surrogateescape'd bytes -> U+FFFD: Go's regexp reads each bad byte as one RuneError.
_BAD_BYTES = {0xDC80 + b: 0xFFFD for b in range(128)}


def go_trim_space(text: str) -> str:
    return text.strip(_GO_SPACE)


def go_clean(path: str) -> str:
    """Go's `filepath.Clean` for slash paths."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


@dataclass(frozen=True)
class Rule:
    """One pattern as `ReadAll` returns it, and where it came from (for error messages)."""

    pattern: str
    where: str


def read_rules(data: bytes, source: str = IGNORE_FILE) -> list[Rule]:
    """moby's `ignorefile.ReadAll`: the patterns of an ignore file, in order."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    rules: list[Rule] = []
    for number, raw in enumerate(lines, 1):
        if len(raw) >= _MAX_LINE:
            raise UserError(f"{source} line {number}: longer than {_MAX_LINE - 1} bytes, "
                            "which Docker cannot read")
        raw = raw.removesuffix(b"\r")
        if number == 1:
            raw = raw.removeprefix(_BOM)
        text = raw.decode("utf-8", "surrogateescape")
        if text.startswith("#"):
            continue
        text = go_trim_space(text)
        if not text:
            continue
        invert = text[0] == "!"
        if invert:
            text = go_trim_space(text[1:])
        if text:
            text = go_clean(text)
            if len(text) > 1 and text[0] == "/":
                text = text[1:]
        rules.append(Rule("!" + text if invert else text, f"{source} line {number}"))
    return rules


def read_patterns(data: bytes) -> list[str]:
    return [r.pattern for r in read_rules(data)]


def shown(path: Path) -> str:
    """How an error names a file: relative below the working directory, else whole (a
    context elsewhere has a `.dockerignore` of its own)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def read_ignore_file(path: Path, source: str) -> list[Rule] | None:
    """The rules of an ignore file, or None when there is none (Docker's os.Open)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UserError(f"cannot read {source}: {err.strerror}") from None
    return read_rules(data, source)


# --- patterns -------------------------------------------------------------------------


def regexp_source(text: str) -> tuple[str, str]:
    """patternmatcher's compile: (match kind, Go regexp source) for a cleaned pattern."""
    chars = text.translate(_BAD_BYTES)  # text/scanner reads a bad byte as U+FFFD
    if chars.startswith("\ufeff"):  # ... and skips a leading BOM
        chars = chars[1:]
    out, kind, i, n = ["^"], "exact", 0, len(chars)
    first = True
    while i < n:
        ch = chars[i]
        i += 1
        if ch == "*" and chars[i:i + 1] == "*":
            i += 1
            i += chars[i:i + 1] == "/"
            if i >= n:
                out.append("" if kind == "exact" else ".*")
                kind = "prefix" if kind == "exact" else "regexp"
            else:
                out.append("(.*/)?")
                kind = "regexp"
            if first:
                kind = "suffix"
        elif ch in "*?":
            out.append("[^/]*" if ch == "*" else "[^/]")
            kind = "regexp"
        elif ch in ".+()$":  # not `|{}`: moby's escape bitmap overflows a byte for them
            out.append("\\" + ch)
        elif ch == "\\" and i < n:
            out.append("\\" + chars[i])
            i += 1
            kind = "regexp"
        elif ch in "[]":
            out.append(ch)
            kind = "regexp"
        else:
            out.append(ch)
        first = False
    return kind, "".join(out) + "$"


def _literal_test(kind: str, raw: bytes) -> Callable[[str], bool]:
    """exact/prefix/suffix matching: Go compares bytes. Comparing the decoded strings is
    the same whenever the literal is valid UTF-8; otherwise compare the bytes."""
    lit = raw[:-2] if kind == "prefix" else raw[2:] if kind == "suffix" else raw
    try:
        text = lit.decode("utf-8")
    except UnicodeDecodeError:
        return _bytes_test(kind, lit)
    if kind == "exact":
        return text.__eq__
    if kind == "prefix":
        return lambda path: path.startswith(text)
    rest = text[1:] if text.startswith("/") else None
    return lambda path: path.endswith(text) or path == rest


def _bytes_test(kind: str, lit: bytes) -> Callable[[str], bool]:
    if kind == "exact":
        return lambda path: as_bytes(path) == lit
    if kind == "prefix":
        return lambda path: as_bytes(path).startswith(lit)
    rest = lit[1:] if lit.startswith(b"/") else None
    return lambda path: as_bytes(path).endswith(lit) or as_bytes(path) == rest


def _regexp_test(search: Search) -> Callable[[str], bool]:
    return lambda path: search(path if path.isascii() else path.translate(_BAD_BYTES)) is not None


@dataclass
class Pattern:
    """One cleaned pattern: `text` without its `!`, and how Go matches it."""

    text: str
    exclusion: bool
    where: str
    kind: str
    test: Callable[[str], bool]
    bad: str | None = None  # why Go's regexp package rejects it (evaluating it fails)

    @classmethod
    def parse(cls, rule: Rule) -> Pattern | None:
        """patternmatcher's New for one pattern; None for a blank one."""
        text = go_trim_space(rule.pattern)
        if not text:
            return None
        text = go_clean(text)
        exclusion = text[0] == "!"
        if exclusion:
            if len(text) == 1:
                raise UserError(f'{rule.where}: Docker rejects "!" with no pattern after it')
            text = text[1:]
        if not glob_syntax_ok(text):
            raise UserError(f"{rule.where}: Docker rejects the pattern {quoted(text)} "
                            "(not valid Go filepath.Match syntax)")
        kind, source = regexp_source(text)
        if kind != "regexp":
            return cls(text, exclusion, rule.where, kind, _literal_test(kind, as_bytes(text)))
        try:
            return cls(text, exclusion, rule.where, kind, _regexp_test(go_regexp(source)))
        except GoRegexpUnsupported as err:
            raise UserError(f"{rule.where}: the pattern {quoted(text)} uses {err}") from None
        except GoRegexpError as err:
            pattern = cls(text, exclusion, rule.where, kind, _never, bad=str(err))
            pattern.test = pattern.fail
            return pattern

    def fail(self, _path: str) -> bool:
        raise BadPatternReached(self)

    @property
    def dirs(self) -> int:
        return self.text.count("/") + 1


def _never(_path: str) -> bool:
    return False


class BadPatternReached(Exception):
    """Docker evaluated a pattern its regexp package rejects: the CLI's context check
    fails the build, its tar walk stops sending the context there, BuildKit fails."""

    def __init__(self, pattern: Pattern) -> None:
        super().__init__(pattern.where)
        self.pattern = pattern


# Characters after which a pattern's end is literal text: the glob syntax, and what
# regexp_source hands on to Go's regexp unescaped (`|` makes the rest an alternative).
_NOT_LITERAL = frozenset("*?[]\\|{}^")


def _tails(patterns: Sequence[Pattern]) -> tuple[str, ...] | None:
    """The literal text each pattern's match must end with (an ASCII path that ends with
    none of them is hit by no pattern), or None when some pattern has none to give."""
    tails = []
    for p in patterns:
        if "|" in p.text or not p.text.isascii():
            return None
        i = len(p.text)
        while i and p.text[i - 1] not in _NOT_LITERAL:
            i -= 1
        tail = p.text[i:].lstrip("/")  # `**/x` also hits a bare `x`
        if not tail:
            return None
        tails.append(tail)
    return tuple(tails)


def _parents(path: str) -> list[str]:
    """The parent directories Go's patternmatcher tries: prefixes of filepath.Dir."""
    parent = go_clean(posixpath.dirname(path))
    if parent == ".":
        return []
    parts = parent.split("/")
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]


Hits = tuple[bool, ...]


class Matcher:
    """moby's PatternMatcher over a list of rules."""

    def __init__(self, rules: Sequence[Rule | str]) -> None:
        self.patterns: list[Pattern] = []
        for rule in rules:
            if isinstance(rule, str):
                rule = Rule(rule, "pattern")
            pattern = Pattern.parse(rule)
            if pattern is not None:
                self.patterns.append(pattern)
        self.exclusions = any(p.exclusion for p in self.patterns)
        self.bad = any(p.bad for p in self.patterns)
        self._tests = [(p.exclusion, p.test) for p in self.patterns]
        self._tails = None if self.bad else _tails(self.patterns)
        self._misses = (False,) * len(self.patterns)

    def matches(self, path: str) -> bool:
        """`MatchesOrParentMatches`: `path` or any parent directory decides. Raises
        `BadPatternReached` when it evaluates a pattern Go cannot compile."""
        matched = False
        parents = _parents(path)
        for p in self.patterns:
            if p.exclusion != matched:
                continue
            if p.test(path) or any(p.test(d) for d in parents):
                matched = not p.exclusion
        return matched

    def matches_legacy(self, path: str) -> bool:
        """The deprecated `Matches` the CLI uses to decide its re-includes: it checks only
        the parent directory as deep as the pattern. Raises `BadPatternReached`."""
        matched = False
        parents = _parents(path)
        for p in self.patterns:
            if p.exclusion != matched:
                continue
            hit = p.test(path)
            if not hit and parents and p.dirs <= len(parents):
                hit = p.test(parents[p.dirs - 1])
            if hit:
                matched = not p.exclusion
        return matched

    def check(self, path: str, parent: Hits | None, upto: int = -1, *, hits: bool = True
              ) -> tuple[bool, bool, Hits]:
        """`MatchesUsingParentResults`: (excluded by the first `upto` patterns, excluded
        by all, per-pattern hits to hand to `path`'s children, when `hits`). `parent`
        is what `path`'s directory got (None at the top). A pattern skipped here is not
        a hit, even when it would have matched: Docker does not carry it down."""
        tails = self._tails
        if tails is not None and path.isascii() and not path.endswith(tails) and (
                "/" not in path if parent is None else True not in parent):
            return False, False, self._misses if hits else ()  # no pattern can hit
        # Without parent results Docker also tries every parent directory (as
        # MatchesOrParentMatches does); the walk only meets that at the top.
        parents = _parents(path) if parent is None and "/" in path else ()
        matched = partial = False
        out: list[bool] = []
        for i, (exclusion, test) in enumerate(self._tests):
            if i == upto:
                partial = matched
            if parent and parent[i]:
                hit = True
            elif exclusion != matched:
                hit = False
            else:
                hit = test(path) or (bool(parents) and any(map(test, parents)))
            if hits:
                out.append(hit)
            if hit:
                matched = not exclusion
        if upto < 0 or upto >= len(self._tests):
            partial = matched
        return partial, matched, tuple(out)

    def excluded(self, path: str) -> bool:
        """Whether the walk excludes `path`, deciding each parent directory first."""
        hits: Hits | None = None
        for d in _parents(path):
            hits = self.check(d, hits)[2]
        return self.check(path, hits)[1]


def _strip_trailing_glob(text: str) -> str:
    return text.removesuffix("/**").removesuffix("/*")


@dataclass(frozen=True)
class _View:
    """One builder's walk: which matcher, how many of its patterns, how it descends."""

    matcher: int
    upto: int
    prefixes: tuple[str, ...]  # an excluded dir is walked into if one starts with dir + "/"
    always_descend: bool

    def descends(self, directory: str) -> bool:
        if self.always_descend:
            return True
        prefix = directory + "/"
        return any(p.startswith(prefix) for p in self.prefixes)


def _classic_view(matcher: Matcher, index: int) -> _View:
    prefixes = tuple(p.text + "/" for p in matcher.patterns if p.exclusion)
    return _View(index, len(matcher.patterns), prefixes, always_descend=False)


def _buildkit_view(matcher: Matcher, index: int, upto: int) -> _View:
    exceptions = [_strip_trailing_glob(p.text) for p in matcher.patterns[:upto] if p.exclusion]
    globbing = any(_GLOB_CHARS.intersection(e) for e in exceptions)
    return _View(index, upto, tuple(e + "/" for e in exceptions), always_descend=globbing)


class _Gone:
    """A matcher no builder walks with below this directory."""


_GONE = _Gone()


State = tuple[tuple[Hits | _Gone | None, ...], tuple[bool, ...]]


class ContextFilter:
    """Which context paths the digest walks: the union over the builders' walks.

    A directory's state holds, per matcher, the hits its children inherit (None at the
    top, or for a matcher no builder still walks with) and, per builder, whether that
    builder walks in it at all."""

    def __init__(self, matchers: Sequence[Matcher], views: Sequence[_View]) -> None:
        self.matchers = list(matchers)
        self.views = list(views)
        # No pattern in some view: that builder sends everything, so the union is all.
        self.everything = any(v.upto == 0 for v in self.views)
        self.root: State = ((None,) * len(self.matchers), (True,) * len(self.views))
        # One check per matcher serves all its views: they differ only in how many of
        # its patterns count (BuildKit does not see the CLI's appended exceptions).
        self._splits = [min((v.upto for v in views if v.matcher == i), default=-1)
                        for i in range(len(self.matchers))]
        self._full = [v.upto >= len(self.matchers[v.matcher].patterns) for v in views]

    @classmethod
    def for_context(cls, context: Path, dockerfile: Path, *, classic_only: bool = False
                    ) -> ContextFilter:
        """The filter for `docker build -f dockerfile context` (both resolved); with
        `classic_only`, the classic builder's selection alone (for tests)."""
        rules = read_ignore_file(context / IGNORE_FILE, shown(context / IGNORE_FILE)) or []
        base = Matcher(rules)
        if base.bad:
            _check_like_the_cli(context, base)
        rel_df = posixpath.relpath(dockerfile, context)
        classic = Matcher([*rules, *_reincludes(base, rules, rel_df)])
        matchers = [classic]
        views = [_classic_view(classic, 0), _buildkit_view(classic, 0, len(base.patterns))]
        own = dockerfile_ignore(dockerfile)
        if classic_only:
            views = views[:1]
        elif own is not None:
            own_rules = read_ignore_file(own, shown(own)) or []
            matchers.append(Matcher(own_rules))
            views.append(_buildkit_view(matchers[1], 1, len(matchers[1].patterns)))
        return cls(matchers, views)

    def enter(self, path: str, state: State, *, is_dir: bool) -> tuple[bool, State | None]:
        """Whether any builder sends `path` (in a directory with `state`), and the state
        for its children when some builder walks into it (None: nobody does)."""
        try:
            if len(self.matchers) == 1:
                return self._enter_one(path, state, is_dir=is_dir)
            return self._enter_many(path, state, is_dir=is_dir)
        except BadPatternReached as err:
            raise _unreachable(err.pattern, path) from None

    def enter_all(self, prefix: str, names: Sequence[str], dirs: Sequence[bool],
                  state: State) -> list[tuple[bool, State | None]]:
        """`enter` for every name of one directory (`prefix` is its path and a slash, or
        empty at the top): the same answers, with what they share looked up once."""
        if len(self.matchers) != 1:
            return [self.enter(prefix + n, state, is_dir=d)
                    for n, d in zip(names, dirs, strict=True)]
        path = prefix
        try:
            hits_in, alive = state
            parent: Hits | None = hits_in[0]  # type: ignore[assignment]  # one matcher is never gone
            check, split = self.matchers[0].check, self._splits[0]
            classic_alive = alive[0]
            buildkit_alive = len(alive) > 1 and alive[1]
            descends = [v.descends for v in self.views]
            out: list[tuple[bool, State | None]] = []
            for name, is_dir in zip(names, dirs, strict=True):
                path = prefix + name
                partial, full, hits = check(path, parent, split, hits=is_dir)
                classic = classic_alive and not full
                buildkit = buildkit_alive and not partial
                sent = classic or buildkit
                if not is_dir:
                    out.append((sent, None))
                    continue
                walk_in: tuple[bool, ...] = (classic or (classic_alive and descends[0](path)),)
                if len(alive) > 1:
                    walk_in += (buildkit or (buildkit_alive and descends[1](path)),)
                out.append((sent, ((hits,), walk_in) if True in walk_in else None))
            return out
        except BadPatternReached as err:
            raise _unreachable(err.pattern, path) from None

    def _enter_one(self, path: str, state: State, *, is_dir: bool) -> tuple[bool, State | None]:
        """`enter` for one matcher (no `<Dockerfile>.dockerignore`): the warm path."""
        hits_in, alive = state
        parent: Hits | None = hits_in[0]  # type: ignore[assignment]  # one matcher is never gone
        partial, full, hits = self.matchers[0].check(path, parent, self._splits[0], hits=is_dir)
        classic = alive[0] and not full
        buildkit = len(alive) > 1 and alive[1] and not partial
        if not is_dir:
            return classic or buildkit, None
        walk_in: tuple[bool, ...] = (classic or (alive[0] and self.views[0].descends(path)),)
        if len(alive) > 1:
            walk_in += (buildkit or (alive[1] and self.views[1].descends(path)),)
        if True not in walk_in:
            return classic or buildkit, None
        return classic or buildkit, ((hits,), walk_in)

    def _enter_many(self, path: str, state: State, *, is_dir: bool
                    ) -> tuple[bool, State | None]:
        hits_in, alive = state
        results = [None if isinstance(h, _Gone) else m.check(path, h, split, hits=is_dir)
                   for m, h, split in zip(self.matchers, hits_in, self._splits, strict=True)]
        sent = False
        walk_in: list[bool] = []
        for view, live, full in zip(self.views, alive, self._full, strict=True):
            result = results[view.matcher]
            if not live or result is None:
                walk_in.append(False)
                continue
            excluded = result[1] if full else result[0]
            sent = sent or not excluded
            walk_in.append(is_dir and (not excluded or view.descends(path)))
        if not is_dir or True not in walk_in:
            return sent, None
        hits = tuple(r[2] if r is not None and any(
            w for v, w in zip(self.views, walk_in, strict=True) if v.matcher == i) else _GONE
            for i, r in enumerate(results))
        return sent, (hits, tuple(walk_in))


def _unreachable(p: Pattern, path: str) -> UserError:
    return UserError(f"{p.where}: Docker cannot compile the pattern {quoted(p.text)} "
                     f"(Go regexp: {p.bad}) and needs it for {quoted(path)}: the build "
                     "fails, or silently misses the context from there on")


def dockerfile_ignore(dockerfile: Path) -> Path | None:
    """BuildKit's `<Dockerfile>.dockerignore`, when it exists."""
    own = dockerfile.with_name(dockerfile.name + IGNORE_FILE)
    return own if own.is_file() else None


def _reincludes(base: Matcher, rules: Sequence[Rule], rel_df: str) -> list[Rule]:
    """The CLI's TrimBuildFilesFromExcludes: `!.dockerignore` and `!<Dockerfile>` when its
    legacy matcher says they are excluded (an error there counts as not excluded)."""
    extra: list[Rule] = []
    if _legacy_excluded(base, IGNORE_FILE):
        extra.append(Rule("!" + IGNORE_FILE, "the CLI's exception for .dockerignore"))
    matcher = Matcher([*rules, *extra]) if extra else base
    if _legacy_excluded(matcher, rel_df):
        extra.append(Rule("!" + rel_df, "the CLI's exception for the Dockerfile"))
    return extra


def _legacy_excluded(matcher: Matcher, name: str) -> bool:
    name = go_clean(name)
    try:
        return name != "." and matcher.matches_legacy(name)
    except BadPatternReached:
        return False


def _check_like_the_cli(context: Path, matcher: Matcher) -> None:
    """The CLI's ValidateContextDirectory: a walk that skips excluded directories and
    fails the build when it evaluates a pattern Go's regexp package rejects."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(f"{context}/{rel_dir}" if rel_dir else context) as it:
                for entry in it:
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    try:
                        skip = matcher.matches(rel)
                    except BadPatternReached as err:
                        p = err.pattern
                        raise UserError(f"{p.where}: Docker rejects the pattern {quoted(p.text)} "
                                        f"(Go regexp: {p.bad})") from None
                    if not skip and entry.is_dir(follow_symlinks=False):
                        stack.append(rel)
        except PermissionError:
            continue

