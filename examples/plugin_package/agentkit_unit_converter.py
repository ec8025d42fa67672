"""agentkit-unit-converter: an example third-party agentkit plugin with one tool, `convert_units`.

Scope: lengths (km, mi, m, ft) and temperatures (c, f, k), registered through the
`register_tools` hook; agentkit finds the module through the `agentkit` entry-point group declared
in this folder's pyproject.toml. Non-goals: other units, unit arithmetic, locale formatting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import pluggy

hookimpl = pluggy.HookimplMarker("agentkit")  # same as `from agentkit.hookspecs import hookimpl`

_METRES = {"km": 1000.0, "mi": 1609.344, "m": 1.0, "ft": 0.3048}
_ALIASES = {"meter": "m", "meters": "m", "metre": "m", "metres": "m", "kilometer": "km", "kilometers": "km",
            "kilometre": "km", "kilometres": "km", "mile": "mi", "miles": "mi", "foot": "ft", "feet": "ft",
            "celsius": "c", "°c": "c", "fahrenheit": "f", "°f": "f", "kelvin": "k"}
_TEMPERATURES = ("c", "f", "k")


def _unit(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def _to_kelvin(value: float, unit: str) -> float:
    return {"k": value, "c": value + 273.15, "f": (value - 32.0) * 5.0 / 9.0 + 273.15}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    return {"k": value, "c": value - 273.15, "f": (value - 273.15) * 9.0 / 5.0 + 32.0}[unit]


Unit = Literal["km", "mi", "m", "ft", "c", "f", "k"]


def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> str:
    """Convert a length or a temperature between units.

    Args:
        value: The number to convert.
        from_unit: The unit of `value`: km, mi, m, ft (length) or c, f, k (temperature).
        to_unit: The unit to convert to, of the same kind as `from_unit`.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"error: value must be a number, got {value!r}"
    src, dst = _unit(str(from_unit)), _unit(str(to_unit))
    known = [*_METRES, *_TEMPERATURES]
    for given, unit in ((from_unit, src), (to_unit, dst)):
        if unit not in _METRES and unit not in _TEMPERATURES:
            return f"error: unknown unit {given!r}; known units: {', '.join(known)}"
    if (src in _METRES) != (dst in _METRES):
        return f"error: cannot convert {from_unit!r} (a {_kind(src)}) to {to_unit!r} (a {_kind(dst)})"
    if src in _METRES:
        result = number * _METRES[src] / _METRES[dst]
    else:
        result = _from_kelvin(_to_kelvin(number, src), dst)
    return f"{number:g} {src} = {result:.6g} {dst}"


def _kind(unit: str) -> str:
    return "length" if unit in _METRES else "temperature"


@hookimpl
def register_tools(register: Callable[..., None]) -> None:
    """Offer `convert_units` to every agentkit Runner; `strict`: calls always match its schema."""
    from agentkit.tools import Tool

    register(Tool.from_function(convert_units, strict=True))
