"""Energy reference tables: action counts x per-action energy = picojoules (Accelergy's split).

A table is YAML shipped in ``snnsim/tech/``; each entry has a value, a unit (pJ per action or mW
of static power), what one action is, and its source. A hwconfig names a table and may override
entries inline; an override's source records the file it came from.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from .errors import ConfigError, did_you_mean
from .fields import check_value
from .schema import ENERGY_OVERRIDE

UNITS = ("pJ", "mW")


@dataclass(frozen=True)
class EnergyEntry:
    """One per-action energy (pJ) or static power (mW), with what it counts and where it is from."""

    name: str
    value: float
    unit: str
    per: str
    source: str


@dataclass
class EnergyTable:
    """A named set of energy entries; :meth:`pj` and :meth:`mw` look values up by name."""

    name: str
    description: str
    entries: dict[str, EnergyEntry] = field(default_factory=dict)

    def entry(self, name: str) -> EnergyEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ConfigError("no such energy entry", file=f"technology table '{self.name}'", key=name,
                              expected="an entry of the table", found=name,
                              suggestion=did_you_mean(name, self.entries)) from None

    def pj(self, name: str) -> float:
        """Energy of one action, in pJ."""
        e = self.entry(name)
        if e.unit != "pJ":
            raise ConfigError("entry is not a per-action energy", file=f"technology table '{self.name}'",
                              key=name, expected="unit pJ", found=e.unit)
        return e.value

    def mw(self, name: str) -> float:
        """Static power, in mW."""
        e = self.entry(name)
        if e.unit != "mW":
            raise ConfigError("entry is not a static power", file=f"technology table '{self.name}'",
                              key=name, expected="unit mW", found=e.unit)
        return e.value

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "entries": {k: {"value": e.value, "unit": e.unit, "per": e.per, "source": e.source}
                        for k, e in sorted(self.entries.items())},
        }


def available_tables() -> list[str]:
    """Names of the technology tables shipped with snnsim."""
    root = resources.files("snnsim") / "tech"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _parse_table(data: Any, origin: str) -> EnergyTable:
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise ConfigError("malformed technology table", file=origin, expected="a mapping with 'entries:'",
                          found=type(data).__name__)
    table = EnergyTable(name=str(data.get("name", origin)), description=str(data.get("description", "")))
    for name, e in data["entries"].items():
        if not isinstance(e, dict) or "value" not in e or "source" not in e:
            raise ConfigError("entry needs value, unit, per and source", file=origin, key=f"entries.{name}",
                              expected="{value, unit, per, source}", found=repr(e))
        unit = e.get("unit", "pJ")
        if unit not in UNITS:
            raise ConfigError("unknown unit", file=origin, key=f"entries.{name}.unit",
                              expected=" or ".join(UNITS), found=str(unit))
        value = e["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError("energy must be a non-negative number", file=origin, key=f"entries.{name}.value",
                              expected="a number >= 0", found=repr(value))
        table.entries[name] = EnergyEntry(name, float(value), unit, str(e.get("per", "")), str(e["source"]))
    return table


@functools.lru_cache(maxsize=64)
def _shipped_table(name: str) -> EnergyTable:
    """A shipped table as parsed from its file, once per process (a sweep loads thousands of
    hwconfigs); callers copy ``entries`` before changing them (the entries are frozen)."""
    text = (resources.files("snnsim") / "tech" / f"{name}.yaml").read_text(encoding="utf-8")
    return _parse_table(yaml.safe_load(text), f"snnsim/tech/{name}.yaml")


def load_energy_table(name: str, overrides: dict[str, float] | None = None, origin: str = "",
                      override_origins: dict[str, str] | None = None) -> EnergyTable:
    """Load a shipped table by name and apply inline overrides (entry name -> value in its unit).

    The one place overrides are checked whole: the name against the table (with a suggestion),
    the value against ``schema.ENERGY_OVERRIDE`` (a finite number, not a bool or null, 0..1e9).
    Each overridden entry's source records where its value came from: ``override_origins[name]``
    if given (``--set``), else ``origin`` (the hwconfig file)."""
    names = available_tables()
    if name not in names:
        raise ConfigError("unknown technology table", file=origin or None, key="technology.table",
                          expected=f"one of {', '.join(names)}", found=name,
                          suggestion=did_you_mean(name, names))
    shipped = _shipped_table(name)
    table = EnergyTable(shipped.name, shipped.description, dict(shipped.entries))
    for key, value in (overrides or {}).items():
        where = (override_origins or {}).get(key) or origin
        if key not in table.entries:
            raise ConfigError("unknown energy entry in overrides", file=where or None,
                              key=f"technology.overrides.{key}", expected="an entry of table " + name,
                              found=key, suggestion=did_you_mean(key, table.entries))
        value = check_value(value, ENERGY_OVERRIDE, file=where or None, key=f"technology.overrides.{key}")
        old = table.entries[key]
        table.entries[key] = EnergyEntry(key, value, old.unit, old.per,
                                         f"override in {where or 'configuration'} (table value {old.value:g} {old.unit})")
    return table
