"""Go's pattern syntaxes, as Docker's patternmatcher meets them.

`glob_syntax_ok` is the error check patternmatcher makes with Go's `filepath.Match`.
`go_regexp` translates the Go regexp (RE2 with Perl flags) that patternmatcher builds
from a pattern into a Python search with the same matches, and raises `GoRegexpError`
where Go's `regexp.Compile` fails: `\\d`, `\\s`, `\\w`, `\\b` and `[[:class:]]` are
ASCII, `\\pL` and `\\p{Lu}` are Unicode categories, `.` does not match a newline while
negated classes do, `\\Q...\\E` quotes, `\\x{41}` and `a{2}` work, `\\1` and `\\Z` are
errors. A Unicode script (`\\p{Greek}`) is `GoRegexpUnsupported`: Python has no table.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache


def as_bytes(name: str) -> bytes:
    """The bytes of a name read with surrogateescape (file names, ignore lines)."""
    return name.encode("utf-8", "surrogateescape")


# --- Go's filepath.Match syntax check --------------------------------------------------


class _BadGlob(Exception):
    """filepath.ErrBadPattern."""


def _rune(b: bytes, i: int) -> tuple[int, int]:
    """Go's utf8.DecodeRune at b[i]: (code point, size); (U+FFFD, 1) when not UTF-8."""
    if i >= len(b):
        return 0xFFFD, 0
    lead = b[i]
    size = 1 if lead < 0x80 else 2 if lead >> 5 == 6 else 3 if lead >> 4 == 14 else \
        4 if lead >> 3 == 30 else 0
    try:
        return ord(b[i:i + size].decode("utf-8")), size
    except (UnicodeDecodeError, TypeError):
        return 0xFFFD, 1


def _class_char(chunk: bytes, i: int) -> tuple[int, int]:
    """filepath's getEsc: one class character at chunk[i] and the index after it."""
    if i >= len(chunk) or chunk[i] in b"-]":
        raise _BadGlob
    if chunk[i] == 0x5C:  # backslash
        i += 1
        if i >= len(chunk):
            raise _BadGlob
    r, size = _rune(chunk, i)
    if (r == 0xFFFD and size == 1) or i + size >= len(chunk):
        raise _BadGlob
    return r, i + size


def _match_chunk(chunk: bytes, s: bytes) -> bytes | None:
    """filepath's matchChunk: what is left of `s` after `chunk` matched its start, or
    None. After a mismatch it keeps reading `chunk`, raising `_BadGlob` on bad syntax."""
    failed = False
    i, n = 0, len(chunk)
    while i < n:
        failed = failed or not s
        c = chunk[i]
        if c == 0x5B:  # [
            r = -1
            if not failed:
                r, size = _rune(s, 0)
                s = s[size:]
            i += 1
            negated = i < n and chunk[i] == 0x5E  # ^
            i += negated
            match, ranges = False, 0
            while not (i < n and chunk[i] == 0x5D and ranges):  # ]
                lo, i = _class_char(chunk, i)
                hi = lo
                if chunk[i] == 0x2D:  # -
                    hi, i = _class_char(chunk, i + 1)
                match = match or lo <= r <= hi
                ranges += 1
            i += 1
            failed = failed or match == negated
        elif c == 0x3F:  # ?
            if not failed:
                failed = s[0] == 0x2F
                s = s[max(_rune(s, 0)[1], 1):]
            i += 1
        else:
            if c == 0x5C:
                i += 1
                if i >= n:
                    raise _BadGlob
            if not failed:
                failed = chunk[i] != s[0]
                s = s[1:]
            i += 1
    return None if failed else s


def _scan_chunk(pattern: bytes) -> tuple[bool, bytes, bytes]:
    """filepath's scanChunk: (stars before it, a star-free chunk, the rest)."""
    rest = pattern.lstrip(b"*")
    star = len(rest) < len(pattern)
    i, in_range = 0, False
    while i < len(rest):
        c = rest[i]
        if c == 0x5C:
            i += 1
        elif c == 0x5B:
            in_range = True
        elif c == 0x5D:
            in_range = False
        elif c == 0x2A and not in_range:
            break
        i += 1
    return star, rest[:i], rest[i:]


def _glob_match(pattern: bytes, name: bytes) -> bool:
    """Go's filepath.Match on bytes; raises `_BadGlob` for ErrBadPattern."""
    while pattern:
        star, chunk, pattern = _scan_chunk(pattern)
        if star and not chunk:
            return b"/" not in name
        rest = _match_chunk(chunk, name)
        if rest is not None and (not rest or pattern):
            name = rest
            continue
        if not star:
            return False
        for i in range(len(name)):  # the star takes i + 1 bytes, never a /
            if name[i] == 0x2F:
                return False
            rest = _match_chunk(chunk, name[i + 1:])
            if rest is not None and (pattern or not rest):
                name = rest
                break
        else:
            return False
    return not name


def glob_syntax_ok(pattern: str) -> bool:
    """Whether `filepath.Match(pattern, ".")` (what patternmatcher checks) has no error.
    Go stops reading the pattern at the first chunk that cannot match ".", so `x*[` is
    accepted and fails later as a regexp."""
    try:
        _glob_match(as_bytes(pattern), b".")
    except _BadGlob:
        return False
    return True


class GoRegexpError(ValueError):
    """Go's regexp package would reject this expression."""


_MAX_RUNE = 0x10FFFF
_Ranges = list[tuple[int, int]]
_DIGIT: _Ranges = [(0x30, 0x39)]
_WORD: _Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_PERL: dict[str, tuple[bool, _Ranges]] = {
    "d": (False, _DIGIT), "D": (True, _DIGIT),
    "s": (False, [(0x9, 0xA), (0xC, 0xD), (0x20, 0x20)]),
    "S": (True, [(0x9, 0xA), (0xC, 0xD), (0x20, 0x20)]),
    "w": (False, _WORD), "W": (True, _WORD),
}
_POSIX: dict[str, _Ranges] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)], "ascii": [(0x0, 0x7F)],
    "blank": [(0x9, 0x9), (0x20, 0x20)], "cntrl": [(0x0, 0x1F), (0x7F, 0x7F)],
    "digit": _DIGIT, "graph": [(0x21, 0x7E)], "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)], "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x9, 0xD), (0x20, 0x20)], "upper": [(0x41, 0x5A)], "word": _WORD,
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}
_C_ESCAPES = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}


def _negate(ranges: _Ranges) -> _Ranges:
    out: _Ranges = []
    nxt = 0
    for lo, hi in _normalise(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_RUNE:
        out.append((nxt, _MAX_RUNE))
    return out


def _normalise(ranges: _Ranges) -> _Ranges:
    out: _Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


_CATEGORIES = frozenset([
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn",
    "N", "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk",
    "Sm", "So", "Z", "Zl", "Zp", "Zs",
])


class GoRegexpUnsupported(GoRegexpError):
    """Go accepts this (a Unicode script class), but Python has no table to match it."""


def _unicode_class(name: str) -> _Ranges:
    """Go's unicodeTable: `Any`, or a general category (`L`, `Lu`)."""
    if name == "Any":
        return [(0, _MAX_RUNE)]
    if name in _CATEGORIES:
        return list(_category(name))
    if name.isascii() and name.replace("_", "").isalpha() and len(name) > 2:
        raise GoRegexpUnsupported(
            f"the Unicode class \\p{{{name}}}, which bot-bottle cannot evaluate")
    raise GoRegexpError(f"invalid character class range \\p{{{name}}}")


@cache
def _category(name: str) -> tuple[tuple[int, int], ...]:
    """A Unicode general category's code points (Go's `C` has no unassigned ones).
    Python's Unicode tables may be an older version than Go's."""
    ranges: _Ranges = []
    for cp in range(_MAX_RUNE + 1):
        cat = unicodedata.category(chr(cp))
        if (cat == name or cat[0] == name) and cat != "Cn":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return tuple(ranges)


def _class_re(ranges: _Ranges) -> str:
    """A Python class of the same code points. When its complement takes fewer ranges
    (`[^/]` is everything but one), the class is written negated: Python compiles a class
    that reaches U+10FFFF slowly (~5 ms each, in every run that reads the patterns)."""
    merged = _normalise(ranges)
    if not merged:
        return "(?!)"
    gaps, start = [], 0
    for lo, hi in merged:
        if lo > start:
            gaps.append((start, lo - 1))
        start = hi + 1
    if start <= _MAX_RUNE:
        gaps.append((start, _MAX_RUNE))
    negate = bool(gaps) and len(gaps) <= len(merged)
    parts = (f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}"
             for lo, hi in (gaps if negate else merged))
    return ("[^" if negate else "[") + "".join(parts) + "]"


class _GoRegexp:
    """Translates the subset of Go regexp syntax (RE2, Perl flags) that patternmatcher
    can produce into an equivalent Python expression, rejecting what Go rejects."""

    def __init__(self, src: str) -> None:
        self.s = src
        self.i = 0
        self.alternation = False

    def translate(self) -> str:
        out: list[str] = []
        groups: list[int] = []
        last_repeat = False
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            repeat = False
            if c == "(":
                if s.startswith("(?", self.i):
                    raise GoRegexpError("flags and named groups are not supported")
                groups.append(len(out))
                out.append("(?:")
                self.i += 1
            elif c == ")":
                if not groups:
                    raise GoRegexpError("unexpected )")
                start = groups.pop()
                out[start:] = ["".join(out[start:]) + ")"]
                self.i += 1
            elif c == "|":
                out.append("|")
                self.alternation = True
                self.i += 1
            elif c in "*+?" or (c == "{" and self._braces() is not None):
                op = self._braces_op() if c == "{" else c
                self.i += c != "{"
                if last_repeat:
                    raise GoRegexpError("invalid nested repetition operator")
                if not out or out[-1] in ("(?:", "|"):
                    raise GoRegexpError("missing argument to repetition operator")
                lazy = "?" if s.startswith("?", self.i) else ""
                self.i += len(lazy)
                out[-1] = f"(?:{out[-1]}){op}{lazy}"
                repeat = True
            elif c == "[":
                out.append(_class_re(self._class()))
            elif c == "\\":
                out.extend(self._escape())
            else:
                out.append({"^": r"\A", "$": r"\Z", ".": r"[^\n]"}.get(c, re.escape(c)))
                self.i += 1
            last_repeat = repeat
        if groups:
            raise GoRegexpError("missing )")
        return "".join(out)

    def _braces(self) -> tuple[int, int] | None:
        """Go's parseRepeat at self.i: (min, max) with max -1 for `{n,}`; None when the
        text is no repetition (then `{` is a literal)."""
        m = re.match(r"\{(0|[1-9][0-9]*)(,(0|[1-9][0-9]*)?)?\}", self.s[self.i:])
        if m is None:
            return None
        low = int(m[1])
        high = low if m[2] is None else -1 if m[3] is None else int(m[3])
        return low, high

    def _braces_op(self) -> str:
        """The Python form of the repetition at self.i, which is consumed."""
        low, high = self._braces() or (0, 0)
        if low > 1000 or high > 1000 or 0 <= high < low:
            raise GoRegexpError("invalid repeat count")
        self.i = self.s.index("}", self.i) + 1
        return f"{{{low},{high if high >= 0 else ''}}}"

    def _escape(self) -> list[str]:
        s, i = self.s, self.i
        if i + 1 >= len(s):
            raise GoRegexpError("trailing backslash")
        c = s[i + 1]
        simple = {"A": r"\A", "b": r"\b", "B": r"\B", "z": r"\Z"}
        if c in simple:
            self.i += 2
            return [simple[c]]
        if c == "Q":
            end = s.find("\\E", i + 2)
            lit = s[i + 2:] if end < 0 else s[i + 2:end]
            self.i = len(s) if end < 0 else end + 2
            return [re.escape(ch) for ch in lit]
        if c in "pP" or c in _PERL:
            return [_class_re(self._group())]
        if c == "C":
            raise GoRegexpError("invalid escape \\C")
        return [re.escape(chr(self._char_escape()))]

    def _group(self) -> _Ranges:
        """`\\pX`, `\\PX`, `\\d`... at self.i: their ranges (negated ones complemented)."""
        s, i = self.s, self.i
        c = s[i + 1]
        if c in _PERL:
            negated, ranges = _PERL[c]
            self.i += 2
            return _negate(ranges) if negated else list(ranges)
        negated = c == "P"
        if s.startswith("{", i + 2):
            end = s.find("}", i)
            if end < 0:
                raise GoRegexpError("invalid character class range")
            name, self.i = s[i + 3:end], end + 1
        else:
            name, self.i = s[i + 2:i + 3], i + 3
        if name.startswith("^"):
            negated, name = not negated, name[1:]
        ranges = _unicode_class(name)
        return _negate(ranges) if negated else ranges

    def _char_escape(self) -> int:
        """Go's parseEscape at self.i: the code point an escape stands for."""
        s = self.s
        c = s[self.i + 1]
        self.i += 2
        if ord(c) < 0x80 and not c.isalnum():
            return ord(c)
        after = s[self.i:self.i + 1]
        if c in "1234567" and not (after and after in "01234567"):
            raise GoRegexpError(f"invalid escape \\{c} (no backreferences)")
        if c in "01234567":
            value = int(c)
            for _ in range(2):
                nxt = s[self.i:self.i + 1]
                if not nxt or nxt not in "01234567":
                    break
                value = value * 8 + int(nxt)
                self.i += 1
            return value
        if c == "x":
            m = re.match(r"\{([0-9a-fA-F]+)\}|[0-9a-fA-F]{2}", s[self.i:])
            value = -1 if m is None else int(m[1] or m[0], 16)
            if not 0 <= value <= _MAX_RUNE or m is None:
                raise GoRegexpError("invalid escape \\x")
            self.i += m.end()
            return value
        if c in _C_ESCAPES:
            return _C_ESCAPES[c]
        raise GoRegexpError(f"invalid escape \\{c}")

    def _class(self) -> _Ranges:
        """Go's parseClass at self.i (on `[`): the ranges the class matches."""
        s = self.s
        self.i += 1
        negated = s.startswith("^", self.i)
        self.i += negated
        ranges: _Ranges = []
        first = True
        while self.i >= len(s) or s[self.i] != "]" or first:
            first = False
            if s.startswith("[:", self.i) and len(s) - self.i > 2:
                end = s.find(":]", self.i + 2)
                if end >= 0:
                    name = s[self.i + 2:end]
                    positive = name.removeprefix("^")
                    if positive not in _POSIX:
                        raise GoRegexpError(f"invalid character class range [:{name}:]")
                    group = _POSIX[positive]
                    ranges += _negate(group) if positive != name else group
                    self.i = end + 2
                    continue
            if s.startswith("\\", self.i) and s[self.i + 1:self.i + 2] and \
                    (s[self.i + 1] in "pP" or s[self.i + 1] in _PERL):
                ranges += self._group()
                continue
            lo = self._class_char()
            hi = lo
            if s.startswith("-", self.i) and self.i + 1 < len(s) and s[self.i + 1] != "]":
                self.i += 1
                hi = self._class_char()
                if hi < lo:
                    raise GoRegexpError("invalid character class range")
            ranges.append((lo, hi))
        self.i += 1
        return _negate(ranges) if negated else ranges

    def _class_char(self) -> int:
        if self.i >= len(self.s):
            raise GoRegexpError("missing closing ]")
        if self.s[self.i] == "\\":
            if self.i + 1 >= len(self.s):
                raise GoRegexpError("trailing backslash")
            return self._char_escape()
        self.i += 1
        return ord(self.s[self.i - 1])


Search = Callable[[str], "re.Match[str] | None"]


def go_regexp(src: str) -> Search:
    """Go's `regexp.MustCompile(src).MatchString` as a Python search (truthy on a match),
    for inputs with bad bytes already read as U+FFFD. Go searches anywhere in the text;
    `re.match` does the same faster while every alternative starts with `^`."""
    translator = _GoRegexp(src)
    try:
        rx = re.compile(translator.translate(), re.ASCII)
    except re.error as err:  # pragma: no cover - a translation bug, not user input
        raise GoRegexpError(f"cannot translate: {err}") from None
    anchored = src.startswith("^") and not translator.alternation
    return rx.match if anchored else rx.search
