"""A tiny argv vocabulary shared by the builders (python-on-whales' Command, in spirit).

The `*_eq` forms (`--name=value`) are for values that come from users: glued to their
flag, a value can never be read as a flag of its own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path


def opt(name: str, value: str | Path | None) -> list[str]:
    """`name value`, or nothing when the value is None or empty."""
    return [name, str(value)] if value is not None and str(value) != "" else []


def eq(name: str, value: object) -> list[str]:
    """`name=value`, or nothing when the value is None or empty."""
    return [f"{name}={value}"] if value is not None and str(value) != "" else []


def flag(name: str, on: bool | None) -> list[str]:
    """`name` when on, else nothing."""
    return [name] if on else []


def repeat(name: str, values: Iterable[str]) -> list[str]:
    """`name v1 name v2 ...`"""
    return [x for v in values for x in (name, v)]


def repeat_eq(name: str, values: Iterable[object]) -> list[str]:
    """`name=v1 name=v2 ...`"""
    return [f"{name}={v}" for v in values]


def pairs(name: str, mapping: Mapping[str, str] | None) -> list[str]:
    """`name K1=V1 name K2=V2 ...`"""
    return repeat(name, (f"{k}={v}" for k, v in (mapping or {}).items()))


def pairs_eq(name: str, mapping: Mapping[str, str] | None) -> list[str]:
    """`name=K1=V1 name=K2=V2 ...`"""
    return repeat_eq(name, (f"{k}={v}" for k, v in (mapping or {}).items()))
