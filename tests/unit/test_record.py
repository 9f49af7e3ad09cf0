"""cache.record against dataclasses itself: the same declarations behave the same."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cache import record


def _pair(frozen: bool, eq: bool = True) -> tuple[type[Any], type[Any]]:
    made = []
    for lib in (dataclasses, record):
        @lib.dataclass(frozen=frozen, eq=eq)  # type: ignore[misc]
        class Point:
            x: int
            label: str
            tags: list[str] = lib.field(default_factory=list)  # type: ignore[attr-defined]
            note: str | None = None
            weight: float = lib.field(default=1.5, compare=False)  # type: ignore[attr-defined]

        made.append(Point)
    return made[0], made[1]


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1, "a"), {}), ((1,), {"label": "b"}), ((), {"x": 2, "label": "c", "note": "n"}),
    ((1, "a", ["t"], "n", 2.0), {}), ((), {}), ((1,), {}), ((1, "a"), {"x": 3}),
    ((1, "a"), {"nope": 1}), ((1, "a", [], None, 1.0, "extra"), {}),
]


def _outcome(cls: type[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        obj = cls(*args, **kwargs)
    except TypeError as err:
        return ("TypeError", str(err).split("__init__() ")[-1].split(".<locals>.Point() ")[-1])
    return (obj.x, obj.label, obj.tags, obj.note, obj.weight,
            repr(obj).replace(cls.__qualname__, "Point"))


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_construction_and_repr(frozen: bool, args: tuple[Any, ...],
                               kwargs: dict[str, Any]) -> None:
    theirs, ours = _pair(frozen)
    want, got = _outcome(theirs, args, kwargs), _outcome(ours, args, kwargs)
    if want[0] == "TypeError":  # the same failure; messages need not match word for word
        assert got[0] == "TypeError"
    else:
        assert got == want


@pytest.mark.parametrize("frozen", [True, False])
def test_equality_hash_frozen_replace_asdict_fields(frozen: bool) -> None:
    theirs, ours = _pair(frozen)
    for cls, lib in ((theirs, dataclasses), (ours, record)):
        a, b = cls(1, "a", weight=9.0), cls(1, "a")
        assert a == b and a != cls(2, "a") and a != (1, "a")  # weight is not compared
        if frozen:
            with pytest.raises(TypeError):  # a list field: unhashable, as a tuple of it is
                hash(a)
            assert hash(cls(1, "a", tags=(), weight=2.0)) == hash(cls(1, "a", tags=()))
            with pytest.raises(AttributeError):
                a.x = 5
        else:
            assert cls.__hash__ is None
            a.x = 5
            assert a.x == 5
        c = lib.replace(b, note="z")  # type: ignore[attr-defined]
        assert (c.note, c.x, b.note) == ("z", 1, None)
        with pytest.raises(TypeError):
            lib.replace(b, nope=1)  # type: ignore[attr-defined]
        assert lib.asdict(b) == {"x": 1, "label": "a", "tags": [], "note": None,  # type: ignore[attr-defined]
                                 "weight": 1.5}
        assert [f.name for f in lib.fields(cls)] == ["x", "label", "tags", "note", "weight"]  # type: ignore[attr-defined]
        assert cls.note is None and cls.weight == 1.5  # plain defaults stay on the class
        assert cls.__match_args__ == ("x", "label", "tags", "note", "weight")
        d1, d2 = cls(1, "a"), cls(1, "a")
        d1.tags.append("t")
        assert d2.tags == []  # a fresh list each


def test_declarations_dataclasses_refuses_are_refused() -> None:
    for lib in (dataclasses, record):
        with pytest.raises(TypeError):
            @lib.dataclass  # type: ignore[misc]
            class Bad:
                a: int = 1
                b: int  # type: ignore[misc]
        with pytest.raises(ValueError):
            @lib.dataclass  # type: ignore[misc]
            class Mutable:
                a: list[int] = []  # type: ignore[misc]
        with pytest.raises(ValueError):
            lib.field(default=1, default_factory=list)  # type: ignore[attr-defined]


def test_order_compares_the_fields_in_order() -> None:
    for lib in (dataclasses, record):
        @lib.dataclass(frozen=True, order=True)  # type: ignore[misc]
        class Version:
            v: tuple[int, int, int]

        assert Version((1, 7, 0)) < Version((1, 14, 0)) <= Version((1, 14, 0))
        assert max(Version((1, 2, 3)), Version((1, 10, 0))) == Version((1, 10, 0))
        with pytest.raises(TypeError):
            assert Version((1, 0, 0)) < (2, 0, 0)
