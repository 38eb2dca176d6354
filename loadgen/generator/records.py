"""One JSON round trip for every record the toolkit writes: typed, checked once on the way in.

``Record`` is a frozen dataclass whose fields are the JSON keys. ``Cls.from_dict(data)`` builds
it from parsed JSON, checking each field against its type (records inside records, lists,
tuples, objects, enums, literals, numbers, strings and booleans; an int is a float, a boolean
is not a number; a type with a ``from_json`` classmethod and a ``to_json`` method, such as a
workload, reads and writes itself) and raising a ValueError that names the first thing wrong;
keys it does not know are kept in ``extra``, so a file from a newer version loses nothing.
``to_dict()`` gives the plain data back for json.dump. The generator's result
(``generator.result``) and every record of a results file (``analysis.results``) are Records.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Self


@dataclass(frozen=True, kw_only=True)
class Record:
    """A record written as JSON: its fields are the keys, ``extra`` holds the ones it lacks."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> Self:
        """The record in ``data`` (parsed JSON); ValueError naming the first thing wrong."""
        return _record(cls, data, where or cls.__name__)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for json.dump; ``from_dict(to_dict())`` gives the record back."""
        return _plain(self)


@functools.cache
def _fields(cls: type) -> dict[str, tuple[Any, bool]]:
    """Field name -> (type, required) for every field of ``cls`` but ``extra``."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f.default is MISSING and f.default_factory is MISSING)
            for f in fields(cls) if f.name != "extra"}  # fmt: skip


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number"}  # fmt: skip
    return "null" if value is None else names.get(type(value), f"a {type(value).__name__}")


def _record(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} is {_kind(data)}, not an object")
    known = _fields(cls)
    values = {}
    for name, (hint, required) in known.items():
        if name in data:
            values[name] = _value(hint, data[name], f"{where}.{name}")
        elif required:
            raise ValueError(f"{where} lacks {name}")
    return cls(**values, extra={key: data[key] for key in data if key not in known})


def _value(hint: Any, value: Any, where: str) -> Any:
    """``value`` read as ``hint`` says: records built, lists and objects checked item by item,
    numbers, strings and booleans checked (an int is a float; a boolean is not a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        [inner] = [arg for arg in args if arg is not type(None)]
        return _value(inner, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if isinstance(hint, type) and issubclass(hint, Record):
        return _record(hint, value, where)
    if isinstance(hint, type) and hasattr(hint, "from_json"):  # a value with its own JSON form
        try:
            return hint.from_json(value)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            known = ", ".join(str(member.value) for member in hint)
            raise ValueError(
                f"{where}: unknown {hint.__name__} {value!r} (one of {known})"
            ) from None
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ValueError(f"{where} is {_kind(value)}, not a list")
        items = [_value(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} is {_kind(value)}, not an object")
        return {key: _value(args[1], item, f"{where}.{key}") for key, item in value.items()}
    wanted = (int, float) if hint is float else hint
    if not isinstance(value, wanted) or (isinstance(value, bool) and hint in (int, float)):
        raise ValueError(f"{where} is {_kind(value)}, not {hint.__name__}")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        known = {f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.name != "extra"}
        return known | value.extra
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
