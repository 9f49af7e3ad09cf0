"""Value classes declared as with `dataclasses`, made without generating code.

`dataclasses` writes each class's `__init__`, `__eq__`, `__repr__`, `__hash__` (and, when
frozen, `__setattr__`) as source text and compiles it, and importing it loads `inspect`
(with `ast`, `dis` and `tokenize`): together about a third of the time a warm no-op
spends before it does anything. The classes here get the same methods as plain shared
functions that read the class's field list, so declaring one costs a few microseconds and
this module imports nothing. Construction is a little slower, which no class here notices
(they are made a few times per run, not per file).

Covered, with dataclasses' meaning: fields from the class's own annotations in order,
defaults, `field(default=..., default_factory=..., compare=...)`, `frozen`, `eq` (and the
hash that frozen and eq give), `order`, `fields`, `replace`, `asdict` (one level: our fields hold
plain values). Not covered (refused where it could be asked for): inheritance between
records, `__post_init__`, `InitVar`/`ClassVar` fields, slots, keyword-only.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: importing typing is what this module is here to avoid.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_kw: object) -> object:
        return lambda f: f


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class Field:
    """One field: its name, default or default factory, and whether `==` compares it."""

    __slots__ = ("compare", "default", "default_factory", "name")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING,
                 compare: bool = True) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default, self.default_factory, self.compare = default, default_factory, compare

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r}, compare={self.compare!r})")


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] | Any = MISSING,
          compare: bool = True) -> Any:
    """A field's options, as `dataclasses.field` takes them."""
    return Field(default, default_factory, compare)


_FIELDS = "__record_fields__"


def fields(obj: Any) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order."""
    try:
        found: tuple[Field, ...] = getattr(obj, _FIELDS)
    except AttributeError:
        raise TypeError("must be called with a record type or instance") from None
    return found


def replace(obj: T, **changes: Any) -> T:
    """A copy of `obj` with `changes`, made through its `__init__` (as dataclasses does)."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    return type(obj)(**{**values, **changes})


def asdict(obj: Any) -> dict[str, Any]:
    """{field name: value} of a record."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


# --- the shared methods -------------------------------------------------------------------


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    own: tuple[Field, ...] = getattr(cls, _FIELDS)
    if len(args) > len(own):
        raise TypeError(f"{cls.__name__}() takes {len(own)} positional arguments but "
                        f"{len(args)} were given")
    put = object.__setattr__
    for i, f in enumerate(own):
        if i < len(args):
            if f.name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for argument "
                                f"{f.name!r}")
            value = args[i]
        elif f.name in kwargs:
            value = kwargs.pop(f.name)
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        elif f.default is not MISSING:
            value = f.default
        else:
            raise TypeError(f"{cls.__name__}() missing 1 required argument: {f.name!r}")
        put(self, f.name, value)
    if kwargs:
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument "
                        f"{next(iter(kwargs))!r}")


def _repr(self: Any) -> str:
    inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
    return f"{type(self).__qualname__}({inner})"


def _key(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, f.name) for f in fields(self) if f.compare)


def _eq(self: Any, other: object) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _key(self) == _key(other)


def _compare(op: str) -> Callable[[Any, object], Any]:
    def method(self: Any, other: object) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return getattr(_key(self), op)(_key(other))

    method.__name__ = op
    return method


def _hash(self: Any) -> int:
    return hash(_key(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    if any(f.name == name for f in fields(self)):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    if any(f.name == name for f in fields(self)):
        raise FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


def _process(cls: type[T], frozen: bool, eq: bool, order: bool) -> type[T]:
    if any(hasattr(base, _FIELDS) for base in cls.__mro__[1:]):
        raise TypeError(f"{cls.__name__}: records do not inherit from records")
    if "__post_init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: records have no __post_init__")
    own: list[Field] = []
    # (Not inspect.get_annotations: importing inspect is what this module avoids.)
    for name, kind in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if str(kind).startswith(("ClassVar", "InitVar", "typing.ClassVar")):
            raise TypeError(f"{cls.__name__}.{name}: ClassVar and InitVar are not supported")
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if f.default is MISSING:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, f.default)
        if isinstance(f.default, list | dict | set):
            raise ValueError(f"{cls.__name__}.{name}: a mutable default; use default_factory")
        if own and (own[-1].default is not MISSING or own[-1].default_factory is not MISSING) \
                and f.default is MISSING and f.default_factory is MISSING:
            raise TypeError(f"{cls.__name__}: non-default argument {name!r} follows default "
                            "argument")
        own.append(f)
    methods: dict[str, Any] = {_FIELDS: tuple(own), "__init__": _init,
                               "__match_args__": tuple(f.name for f in own)}
    if "__repr__" not in cls.__dict__:
        methods["__repr__"] = _repr
    if eq:
        methods["__eq__"] = _eq
        if frozen:
            methods["__hash__"] = _hash
        elif "__hash__" not in cls.__dict__:
            methods["__hash__"] = None
    if order:
        for op in ("__lt__", "__le__", "__gt__", "__ge__"):
            methods[op] = _compare(op)
    if frozen:
        methods["__setattr__"], methods["__delattr__"] = _frozen_setattr, _frozen_delattr
    for name, method in methods.items():
        setattr(cls, name, method)
    return cls


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(cls: type[T] | None = None, /, *, frozen: bool = False, eq: bool = True,
              order: bool = False) -> Any:
    """`@dataclass` or `@dataclass(frozen=..., eq=..., order=...)`, as dataclasses reads
    them."""
    if order and not eq:
        raise ValueError("eq must be true if order is true")
    if cls is None:
        return lambda c: _process(c, frozen, eq, order)
    return _process(cls, frozen, eq, order)
