"""Display names and units of report metrics and sweep axes, for figures.

Every quantity has ONE display unit, whatever its magnitude, so that two figures of the same
quantity can be read side by side (a paper's figures must not switch from nJ to uJ between
panels). The unit is chosen from the suffix of the key, the convention the summary follows
(``_pj``, ``_ps``, ``_bits``, ``_mw``, ...):

========================  =====================  =========================================
summary suffix            shown as               scale (raw value times)
========================  =====================  =========================================
``_pj``, ``_pj_per_frame``  uJ (per frame)        1e-6
``_ps`` (``_mean`` ...)   ms                     1e-9
``_j_s`` (EDP)            uJ*ms                  1e9 (J*s -> uJ*ms: 1e6 * 1e3)
``_bits``, ``_bits_per_frame``  kbit (per frame) 1e-3
``_bytes_per_frame``      kB per frame           1e-3
``_mw``                   mW                     1
``_fps``                  frames/s               1
``_mbps``                 Mbit/s                 1
``spike_rate``            spikes/neuron/step     1
counts (``_ops``, ...)    (count), SI ticks      1
========================  =====================  =========================================

Sweep axes are hwconfig values: they are shown as given (never rescaled, they name the grid),
with the unit their key's suffix implies (``_ns``, ``_mhz``, ``_kib``, ...) or "(count)".

Standard library only: the command line imports this module before NumPy.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["Quantity", "METRIC_ALIASES", "quantity", "axis_quantity", "axis_label", "format_value",
           "si_format"]

#: Short metric names accepted wherever a metric is named.
METRIC_ALIASES = {
    "energy": "energy.total_pj_per_frame",
    "latency": "delay.latency_ps_mean",
    "edp": "edp_j_s",
    "bits": "bandwidth.wire_bits_per_frame",
    "power": "power.total_mw",
    "throughput": "delay.throughput_fps",
}

ENERGY_UNIT = "\u00b5J"  # uJ, every energy in every figure
TIME_UNIT = "ms"  # every time
EDP_UNIT = "\u00b5J\u00b7ms"  # uJ*ms, every energy-delay product


class Quantity(NamedTuple):
    """How one key is shown: ``name`` (words), ``scale`` (display = raw * scale), ``unit`` and
    whether it is a count (ticks formatted 1.2k, 3.4M, ...)."""

    name: str
    scale: float
    unit: str
    count: bool = False

    def label(self) -> str:
        """Axis label text, the unit always in parentheses."""
        return f"{self.name} ({self.unit})"


# (suffix, noun appended to the key's words, scale, unit, count); longest suffixes first
_SUFFIXES: tuple[tuple[str, str, float, str, bool], ...] = (
    ("_pj_per_frame", "energy per frame", 1e-6, ENERGY_UNIT, False),
    ("_pj", "energy", 1e-6, ENERGY_UNIT, False),
    ("_ps_mean", "", 1e-9, TIME_UNIT, False),
    ("_ps_min", "", 1e-9, TIME_UNIT, False),
    ("_ps_max", "", 1e-9, TIME_UNIT, False),
    ("_ps", "", 1e-9, TIME_UNIT, False),
    ("_j_s", "energy-delay product", 1e9, EDP_UNIT, False),
    ("_bits_per_frame", "traffic per frame", 1e-3, "kbit", False),
    ("_bits", "traffic", 1e-3, "kbit", False),
    ("_bytes_per_frame", "data per frame", 1e-3, "kB", False),
    ("_mw", "power", 1.0, "mW", False),
    ("_fps", "", 1.0, "frames/s", False),
    ("_mbps", "rate", 1.0, "Mbit/s", False),
    ("_fraction", "", 1.0, "fraction", False),
)

#: Names of the most-used metrics, where the generic rule would read awkwardly.
_NAMES = {
    "edp_j_s": "energy-delay product",
    "delay.latency_ps_mean": "mean latency per frame",
    "delay.makespan_ps": "makespan",
    "delay.throughput_fps": "throughput",
    "delay.makespan_fps": "throughput over the makespan",
    "activity.spike_rate": "spike rate",
    "power.total_mw": "total power",
    "power.dynamic_mw": "dynamic power",
    "power.static_mw": "static power",
}

_TIME_WORDS = ("latency", "makespan", "interval", "period", "time")
_SKIP_WORDS = {"stages", "by_component", "by_action"}


def _words(parts: list[str]) -> str:
    return " ".join(p.replace("_", " ") for p in parts if p and p not in _SKIP_WORDS)


def quantity(key: str) -> Quantity:
    """The display of a summary metric (a dotted column name such as ``delay.latency_ps_mean``)."""
    segs = key.split(".")
    if key.endswith("spike_rate"):
        return Quantity(_NAMES.get(key, _words(segs[1:]) or "spike rate"), 1.0, "spikes/neuron/step")
    last = segs[-1]
    if last.startswith("tops_per_w"):
        return Quantity(("TOPS/W " + last[len("tops_per_w"):].strip("_")).strip(), 1.0, "TOPS/W")
    if last.startswith("reduction_"):
        return Quantity(f"{last[len('reduction_'):]} reduction", 1.0, "ratio")
    # the unit suffix sits on the last segment, or on one before it (by_component_pj_per_frame.core)
    for i in range(len(segs) - 1, -1, -1):
        for suffix, noun, scale, unit, count in _SUFFIXES:
            seg = segs[i]
            if seg == suffix.lstrip("_") or seg.endswith(suffix):
                stem = seg[: -len(suffix)] if seg.endswith(suffix) else ""
                if key in _NAMES:
                    return Quantity(_NAMES[key], scale, unit, count)
                if stem.startswith("by_"):
                    stem = ""
                lead = segs[1:i] if len(segs) > 1 else []
                words = _words([*lead, stem, *segs[i + 1:]])
                if unit == TIME_UNIT:
                    stat = suffix[len("_ps_"):] if suffix.startswith("_ps_") else ""
                    if not words.endswith(_TIME_WORDS):
                        words = f"{words} time".strip()
                    words = f"{stat} {words}".strip()
                    return Quantity(words, scale, unit, count)
                return Quantity(f"{words} {noun}".strip() or key, scale, unit, count)
    if key in _NAMES:
        return Quantity(_NAMES[key], 1.0, "count", True)
    return Quantity(_words(segs[1:] if len(segs) > 1 else segs) or key, 1.0, "count", True)


# sweep axes: hwconfig values, shown unscaled
_CONFIG_SUFFIXES = (
    ("_ns", "ns"), ("_us", "\u00b5s"), ("_ps", "ps"), ("_mhz", "MHz"), ("_kib", "KiB"),
    ("_gbytes_per_s", "GB/s"), ("_mbytes_per_s", "MB/s"), ("gbps_per_lane", "Gbit/s per lane"),
    ("_bits", "bit"), ("_mw", "mW"), ("_pj", "pJ"), ("_fraction", "fraction"),
)


def axis_quantity(key: str, values: list[Any] | None = None) -> Quantity:
    """The display of a sweep axis (a hwconfig key path such as ``link.lanes``) or of a label
    column (hwconfig, workload): never rescaled; the unit from the key's suffix, else "count"
    for whole numbers, "value" for other numbers and "label" for text."""
    segs = key.split(".")
    name = _words(segs[-2:] if len(segs) > 1 else segs)
    last = segs[-1]
    for suffix, unit in _CONFIG_SUFFIXES:
        if last.endswith(suffix):
            return Quantity(name, 1.0, unit)
    vals = [v for v in values or [] if v is not None]
    if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        whole = all(float(v).is_integer() for v in vals)
        return Quantity(name, 1.0, "count" if whole else "value", whole)
    if key.startswith("technology.overrides."):
        return Quantity(name, 1.0, "technology table unit")
    return Quantity(name, 1.0, "label" if vals else "count")


def axis_label(key: str) -> str:
    """``quantity(key).label()``: e.g. "total energy per frame (uJ)"."""
    return quantity(key).label()


def si_format(value: float, digits: int = 3) -> str:
    """A count as 950, 1.2k, 3.4M, 5G, 6T (``digits`` significant digits)."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    mag = abs(value)
    for div, sym in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if mag >= div:
            return f"{value / div:.{digits}g}{sym}"
    return f"{value:.{digits}g}"


def format_value(key: str, value: float | None, digits: int = 3) -> str:
    """A metric value in its display unit, without the unit (for cell annotations)."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    q = quantity(key)
    if q.count:
        return si_format(value * q.scale, digits)
    return f"{value * q.scale:.{digits}g}"
