"""Exact time arithmetic: configuration values as the decimals they were written as.

Times are integer picoseconds. Conversions go through exact fractions, so a time that is a whole
number of ps in decimal arithmetic (e.g. 54 UI at 1.5 Gb/s = 36,000 ps) is never rounded up by a
binary floating-point error.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction


@functools.lru_cache(maxsize=4096)
def exact(value: float | int) -> Fraction:
    """A config number as the decimal it was written as (1.5 -> 3/2, 0.1 -> 1/10).

    Cached: a run converts the same few configuration values many times, and parsing is slow."""
    if isinstance(value, int):
        return Fraction(value)
    return Fraction(repr(float(value)))


def ceil_ps(value: Fraction) -> int:
    """Round an exact time in ps up to whole ps."""
    return math.ceil(value)


def ns_to_ps(ns: float | int) -> int:
    """Nanoseconds to integer picoseconds (rounded to nearest; exact for 3 decimals)."""
    return round(exact(ns) * 1000)


def period_ps(clock_mhz: float) -> Fraction:
    """Exact period of a clock, in ps."""
    return Fraction(10**6) / exact(clock_mhz)


def us_to_ps(us: float | int) -> int:
    """Microseconds to integer picoseconds (rounded to nearest)."""
    return round(exact(us) * 10**6)
