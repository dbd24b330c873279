"""A configuration key's registration and its check: type, default, meaning, bounds (:class:`Field`),
sections of keys (:class:`Section`), and the one function a value meets its field in
(:func:`check_value`). Shared by the hwconfig schema (:mod:`snnsim.schema`) and by the models that
define keys of their own (the PIM macro's, :mod:`snnsim.hw.pim`), which the schema then includes."""

from __future__ import annotations

import math
import re
import reprlib
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Field:
    """One scalar key of a hwconfig section."""

    type: str  # "int", "float", "bool", "str"
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None
    nullable: bool = False


@dataclass(frozen=True)
class Section:
    """A mapping of named fields and sub-sections."""

    doc: str
    fields: dict[str, Field | Section] = field(default_factory=dict)
    required: bool = True
    open_keys: bool = False  # a free mapping (name -> number), e.g. energy overrides
    values: Field | None = None  # with open_keys: the field every value is checked against


def format_bound(x: float, integer: bool = False) -> str:
    """A bound as short text that still reads back as exactly that number (1e+09, 1073741824);
    with ``integer``, as an integer (1000000)."""
    if integer:
        return str(int(x))
    short = f"{x:g}"
    return short if float(short) == x else f"{x:.17g}"


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 6
_REPR.maxlevel = 3


def describe_value(value: Any) -> str:
    """``repr(value) (type)``, bounded in size whatever ``value`` holds (nested lists, huge ints).

    Error messages quote values back; Python's own repr of a 10,000-digit integer raises, and of an
    expanded alias bomb takes gigabytes."""
    kind = type(value).__name__
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {value.bit_length()} bits ({kind})"
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):
        text = f"<{kind}>"
    return f"{text} ({kind})"


def check_value(value: Any, f: Field, *, file: str | None, key: str) -> Any:
    """Validate one scalar against its field; return it normalised (int -> float where needed).

    The one place a value meets its registration: type, choices, finiteness and bounds. Raises
    :class:`ConfigError` naming ``file`` and ``key``."""
    def fail(expected: str, suggestion: str | None = None) -> None:
        raise ConfigError("invalid value", file=file, key=key, expected=expected,
                          found=describe_value(value), suggestion=suggestion)

    if value is None and f.nullable:
        return None
    if f.type == "bool":
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if f.type == "str":
        if not isinstance(value, str):
            fail("a string" + (f" (one of {', '.join(f.choices)})" if f.choices else ""))
        if f.choices and value not in f.choices:
            fail(f"one of {', '.join(f.choices)}", did_you_mean(value, f.choices))
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = None
        if isinstance(value, str) and re.match(r"\s*[-+]?\.?[0-9]", value) and any(c.isalpha() for c in value):
            hint = "give a plain number; the unit is part of the key name"  # e.g. "1.5 Gbps", not "abc"
        fail("an integer" if f.type == "int" else "a number", hint)
    if isinstance(value, float) and not math.isfinite(value):
        fail("a finite number")
    # bounds before conversion: Python compares any int with a float exactly, without overflow
    kind, integer = ("an integer", True) if f.type == "int" else ("a number", False)
    if f.minimum is not None:
        if f.exclusive_minimum and value <= f.minimum:
            fail(f"{kind} > {format_bound(f.minimum, integer)}")
        if not f.exclusive_minimum and value < f.minimum:
            fail(f"{kind} >= {format_bound(f.minimum, integer)}")
    if f.maximum is not None and value > f.maximum:
        fail(f"{kind} <= {format_bound(f.maximum, integer)}")
    if f.type == "int":
        if isinstance(value, float):
            if not value.is_integer():
                fail("an integer")
            value = int(value)
        return value
    if isinstance(value, int) and abs(value) > 2**53 and not (abs(value) < 2**1024 and int(float(value)) == value):
        fail("a number a float holds exactly (an integer of at most 2^53)")
    return float(value)
