"""Private argument checks shared by the public value types (which, requests, agent_types, files).

Scope: small functions that raise TypeError/ValueError naming the owner, the field and the bad
value, and return the (possibly normalized) value; `variant_of`, which attaches a mistralrs enum-like
variant class to its base (`McpServerSourcePy.Http`). Non-goals: anything public; schema validation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def _fail_type(owner: str, name: str, expected: str, value: Any) -> TypeError:
    return TypeError(f"{owner}: `{name}` must be {expected}, got {type(value).__name__} {value!r}")


def check_str(owner: str, name: str, value: Any, *, optional: bool = False, path: bool = False) -> Any:
    """Return `value` if it is a str (or None when optional; a PathLike as str when path)."""
    if value is None and optional:
        return None
    if path and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise _fail_type(owner, name, "a str" + (" or None" if optional else ""), value)
    return value


def check_bool(owner: str, name: str, value: Any, *, optional: bool = False) -> Any:
    """Return `value` if it is a bool (or None when optional)."""
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise _fail_type(owner, name, "a bool" + (" or None" if optional else ""), value)
    return value


def check_int(owner: str, name: str, value: Any, *, optional: bool = False, minimum: int | None = 0,
              maximum: int | None = None) -> Any:
    """Return `value` if it is an int (not bool) within [minimum, maximum] (or None when optional)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail_type(owner, name, "an int" + (" or None" if optional else ""), value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: `{name}` must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{owner}: `{name}` must be <= {maximum}, got {value}")
    return value


def check_float(owner: str, name: str, value: Any, *, optional: bool = False) -> Any:
    """Return `value` as a float if it is an int or float (not bool), or None when optional."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail_type(owner, name, "a float" + (" or None" if optional else ""), value)
    return float(value)


def check_str_list(owner: str, name: str, value: Any, *, optional: bool = False, path: bool = False) -> Any:
    """Return a new list of str from a list/tuple of str (PathLike allowed when path)."""
    if value is None and optional:
        return None
    if not isinstance(value, (list, tuple)):
        raise _fail_type(owner, name, "a list of str" + (" or None" if optional else ""), value)
    return [check_str(owner, f"{name}[{i}]", v, path=path) for i, v in enumerate(value)]


def check_list_of(owner: str, name: str, value: Any, cls: type | tuple[type, ...], *, optional: bool = True) -> Any:
    """Return a new list from a list/tuple whose items are instances of `cls`."""
    if value is None and optional:
        return None
    label = cls.__name__ if isinstance(cls, type) else " | ".join(c.__name__ for c in cls)
    if not isinstance(value, (list, tuple)):
        raise _fail_type(owner, name, f"a list of {label}" + (" or None" if optional else ""), value)
    for i, item in enumerate(value):
        if not isinstance(item, cls):
            raise _fail_type(owner, f"{name}[{i}]", f"a {label}", item)
    return list(value)


def check_str_dict(owner: str, name: str, value: Any, *, optional: bool = True) -> Any:
    """Return a new dict[str, str] (or None when optional)."""
    if value is None and optional:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _fail_type(owner, name, "a dict[str, str]" + (" or None" if optional else ""), value)
    return dict(value)


def check_instance(owner: str, name: str, value: Any, cls: type, *, optional: bool = True) -> Any:
    """Return `value` if it is an instance of `cls` (or None when optional)."""
    if value is None and optional:
        return None
    if not isinstance(value, cls):
        raise _fail_type(owner, name, f"a {cls.__name__}" + (" or None" if optional else ""), value)
    return value


def variant_of(base: type, kind: str) -> Callable[[type], type]:
    """Register the (dataclass) variant `cls` as `base.<kind>`, with qualname `Base.kind`."""

    def wrap(cls: type) -> type:
        cls.__qualname__ = f"{base.__name__}.{kind}"
        setattr(base, kind, cls)
        return cls

    return wrap
