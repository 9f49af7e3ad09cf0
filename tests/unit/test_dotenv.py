"""bottle.tools.dotenv against compose-go's own dotenv test cases (tests/dotenv_cases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bottle.tools import dotenv
from tests.dotenv_cases import ALL, Case, Error


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_compose_go_case(case: Case) -> None:
    if isinstance(case.expected, Error):
        with pytest.raises(dotenv.DotenvError, match=None) as err:
            dotenv.parse(case.text, case.env.get)
        assert case.expected.contains in str(err.value)
        return
    got = dotenv.parse(case.text, case.env.get)
    if case.exact:
        assert got == case.expected
    else:
        assert {k: got.get(k) for k in case.expected} == case.expected


def test_compose_cli_keeps_keys_that_start_with_a_digit() -> None:
    """compose-go's Read() drops them; the CLI's GetEnvFromFile (what compose runs) does not."""
    assert dotenv.parse("456 = ABC\n")["456"] == "ABC"


def test_the_issue_cases() -> None:
    text = ("\ufeffexport COMPOSE_FILE=a.yml:b.yml\nDEBUG=debug # note\nY: yes\n"
            'Q="x" # after\nQ2=\'y\' #c\nDUP=1\nDUP=2\n')
    assert dotenv.parse(text) == {"COMPOSE_FILE": "a.yml:b.yml", "DEBUG": "debug", "Y": "yes",
                                  "Q": "x", "Q2": "y", "DUP": "2"}


def test_nested_defaults_and_escaped_dollar() -> None:
    env = {"B": "b"}.get
    assert dotenv.parse("A=${X:-${B}-z}\nC=$$D\nE=${X:+no}${B:+yes}\n", env) == {
        "A": "b-z", "C": "$D", "E": "yes"}
    with pytest.raises(dotenv.DotenvError, match="invalid template"):
        dotenv.parse("A=${}")


def test_read_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / ".env"
    f.write_text("A=1\nBAD KEY=2\n")
    with pytest.raises(dotenv.DotenvError) as err:
        dotenv.read(f, {})
    assert str(err.value) == f"{f}: line 2: key cannot contain a space"
    with pytest.raises(dotenv.DotenvError, match="cannot read"):
        dotenv.read(tmp_path / "missing", {})
