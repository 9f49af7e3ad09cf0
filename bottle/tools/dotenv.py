"""Compose's `.env` format, as compose v2 reads it (compose-go 2.9's dotenv and template
packages, behaviour for behaviour; tests/unit/test_dotenv.py holds their cases).

In short: `KEY=value` or `KEY: value`, an optional `export `, a UTF-8 BOM ignored, a later
key wins; unquoted values end at the line (a ` #` starts a comment) and are trimmed;
'single' quotes are literal but for `\\'`; "double" quotes expand `\\n`-style escapes;
unquoted and double-quoted values interpolate `$VAR`, `${VAR:-default}` and friends from
the environment first, then from the keys above; a bare `KEY` line copies KEY from the
environment. A bad line is an error, as it is for compose.

Not python-dotenv: on compose-go's 108 cases python-dotenv 1.2 gets 39 wrong. It has no
`KEY: value`, no `$VAR` without braces, no `${VAR-x}`/`${VAR:?x}`/`${VAR?x}`/`${VAR+x}`;
its file values beat the environment inside `${...}` (compose: the environment first); a
bare `KEY` gives None, not the environment's value; `\\0123` and `\\$` escapes differ; and
it accepts what compose refuses (unterminated quotes, `lol$wut`, keys with spaces).
Compose v1 reads `.env` with python-dotenv, so for v1 those cases differ the same way;
prepull reads `.env` only for COMPOSE_FILE / COMPOSE_PATH_SEPARATOR (to know which files
a cached answer depends on) and, with v1, COMPOSE_PROFILES.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from bottle.errors import BottleError

Lookup = Callable[[str], "str | None"]


class DotenvError(BottleError):
    """A `.env` compose would refuse."""


_EXPORT = re.compile(r"export[\t\n\f\r ]+")
_SPACE = "\t\v\f\r \x85\xa0"  # a blank, but not a line break
_ESCAPE = re.compile(r"\\(?:[abcfnrtv$\"\\]|0[0-9]{0,3})")
_ESCAPES = {"a": "\a", "b": "\b", "c": "\\c", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
            "v": "\v", '"': '"', "\\": "\\"}
_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = (":?", "?", ":-", "-", ":+", "+")


# --- interpolation (compose-go's template package) -----------------------------------


def substitute(text: str, lookup: Lookup) -> str:
    """`$$` is a `$`; `$NAME`, `${NAME}` and `${NAME<op>word}` with op one of
    `:-` `-` `:+` `+` `:?` `?` (the colon also counts an empty value as unset)."""
    out, i = [], 0
    while (j := text.find("$", i)) >= 0:
        out.append(text[i:j])
        value, i = _replace(text, j, lookup)
        out.append(value)
    out.append(text[i:])
    return "".join(out)


def _replace(text: str, at: int, lookup: Lookup) -> tuple[str, int]:
    """The replacement for the `$` at `at`, and where scanning goes on."""
    nxt = text[at + 1:at + 2]
    if nxt == "$":
        return "$", at + 2
    if (m := _NAME.match(text, at + 1)) is not None:
        return lookup(m[0]) or "", m.end()
    if nxt != "{":
        return "$", at + 1
    m = _NAME.match(text, at + 2)
    if m is None:
        raise DotenvError(f"invalid template: {text!r}")
    if text[m.end():m.end() + 1] == "}":
        return lookup(m[0]) or "", m.end() + 1
    op = re.compile(r":?[-+?]").match(text, m.end())
    line_end = text.find("\n", m.end())
    close = text.rfind("}", m.end(), len(text) if line_end < 0 else line_end)
    if op is None or close < 0:
        raise DotenvError(f"invalid template: {text!r}")
    whole = text[at:close + 1]
    first = _first_closing_brace(whole)
    inner, rest = whole[2:first], whole[first + 1:]
    return _apply(inner, lookup) + substitute(rest, lookup), close + 1


def _first_closing_brace(s: str) -> int:
    depth, i = 0, 0
    while i < len(s):
        if s[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        if s[i] == "{":
            depth += 1
            i += 1
        i += 1
    return len(s) - 1


def _apply(inner: str, lookup: Lookup) -> str:
    """`NAME<op>word`, with compose's choice of op: the one whose text comes first."""
    found = [(inner.find(o), n, o) for n, o in enumerate(_OPERATORS) if o in inner]
    _, _, op = min(found)
    name, _, word = inner.partition(op)
    word = substitute(word, lookup)
    value = lookup(name)
    unset = value is None or (op.startswith(":") and value == "")
    if op.endswith("-"):
        return word if unset else value or ""
    if op.endswith("+"):
        return value or "" if unset else word
    if unset:
        reason = f": {word}" if word else ""
        raise DotenvError(f"required variable {name} is missing a value{reason}")
    return value or ""


# --- the file format (compose-go's dotenv package) -----------------------------------


def parse(text: str, lookup: Lookup = lambda _: None) -> dict[str, str]:
    """Keys and values of a `.env` text. `lookup` is the environment, asked first when a
    value interpolates a variable and when a line is a bare KEY."""
    return _Parser(lookup).parse(text.removeprefix("\ufeff"))


def read(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """`path` as compose reads it, with `environ` as the environment."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise DotenvError(f"cannot read {path}: {err.strerror}") from None
    try:
        return parse(text, environ.get)
    except DotenvError as err:
        raise DotenvError(f"{path}: {err}") from None


class _Parser:
    def __init__(self, lookup: Lookup) -> None:
        self.line = 1
        self.env_lookup = lookup

    def parse(self, src: str) -> dict[str, str]:
        out: dict[str, str] = {}

        def lookup(name: str) -> str | None:
            value = self.env_lookup(name)
            return value if value is not None else out.get(name)

        while src := self._statement_start(src):
            key, src, inherited = self._key(src)
            if " " in key:
                raise DotenvError(f"line {self.line}: key cannot contain a space")
            if inherited:
                if (value := self.env_lookup(key)) is not None:
                    out[key] = value
                continue
            out[key], src = self._value(src, lookup)
        return out

    def _statement_start(self, src: str) -> str:
        while True:
            stripped = src.lstrip()
            self.line += src[:len(src) - len(stripped)].count("\n")
            if not stripped.startswith("#"):
                return stripped
            nl = stripped.find("\n")
            if nl < 0:
                return ""
            src = stripped[nl:]

    def _key(self, src: str) -> tuple[str, str, bool]:
        if _EXPORT.match(src):
            src = src[len("export"):].lstrip(_SPACE)
        key, offset, inherited = "", 0, False
        for i, ch in enumerate(src):
            if ch in _SPACE or ch in "_.-[]" or ch.isalnum():
                continue
            if ch in "=:\n":
                key, offset, inherited = src[:i], i + 1, ch == "\n"
                break
            first = src.split("\n", 1)[0]
            raise DotenvError(f"line {self.line}: unexpected character {ch!r} in variable "
                              f"name {first!r}")
        if inherited and " " not in key:
            self.line += 1
        return key.rstrip(), src[offset:].lstrip(_SPACE), inherited

    def _value(self, src: str, lookup: Lookup) -> tuple[str, str]:
        quote = src[:1]
        if quote not in ("'", '"'):
            value, _, rest = src.partition("\n")
            self.line += 1
            value = value.split(" #", 1)[0].rstrip()
            return substitute(value, lookup), rest
        chars: list[str] = []
        escaped = False
        for i in range(1, len(src)):
            ch = src[i]
            if ch == "\n":
                self.line += 1
            if ch == quote and not escaped:
                value = "".join(chars)
                if quote == '"':
                    value = substitute(_ESCAPE.sub(_unescape, value), lookup)
                return value, src[i + 1:]
            if ch == "\\" and not escaped:
                escaped = True
                continue
            if escaped and ch != quote:
                chars.append("\\")
            escaped = False
            chars.append(ch)
        first = src.split("\n", 1)[0]
        raise DotenvError(f"line {self.line}: unterminated quoted value {first}")


def _unescape(m: re.Match[str]) -> str:
    seq = m[0][1:]
    if seq == "$":
        return "$$"  # kept literal through interpolation
    if seq.startswith("0"):
        digits = seq[1:]
        ok = len(digits) == 3 and set(digits) <= set("01234567") and int(digits, 8) < 256
        return chr(int(digits, 8)) if ok else m[0]
    return _ESCAPES[seq]
