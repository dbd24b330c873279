"""Reading a hardware YAML into a validated, fully defaulted configuration.

raw YAML -> ``--set`` overrides -> schema check (types, ranges, unknown keys with a suggestion)
-> defaults filled -> technology table resolved -> :class:`Hardware`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .energy import EnergyTable, load_energy_table
from .errors import ConfigError, did_you_mean
from .schema import HWCONFIG, Field, Section, iter_fields


@dataclass
class Hardware:
    """A validated chip description: the configuration tree and its energy table."""

    config: dict[str, Any]
    energy: EnergyTable
    source: str

    @property
    def name(self) -> str:
        return self.config["name"]

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.config[section]

    def get(self, path: str) -> Any:
        """The value at a dotted path, e.g. ``hw.get('link.lanes')``."""
        node: Any = self.config
        for part in path.split("."):
            node = node[part]
        return node


def _parse_value(text: str) -> Any:
    """A ``--set`` value typed the way YAML would type it (``2`` -> int, ``true`` -> bool)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(items: list[str] | None, source: str = "--set") -> list[tuple[str, Any]]:
    """Turn ``['link.lanes=4', ...]`` into ``[('link.lanes', 4), ...]``."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise ConfigError("an override must look like key.path=value", file=source, key=item,
                              expected="key.path=value", found=item,
                              suggestion="for example --set link.lanes=4")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError("empty key in override", file=source, key=item,
                              expected="key.path=value", found=item)
        out.append((key, _parse_value(value.strip())))
    return out


def _check_value(value: Any, f: Field, file: str, key: str) -> Any:
    """Validate one scalar against its field; return it normalised (int->float where needed)."""
    def fail(expected: str, suggestion: str | None = None) -> None:
        raise ConfigError("invalid value", file=file, key=key, expected=expected,
                          found=f"{value!r} ({type(value).__name__})", suggestion=suggestion)

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
        if isinstance(value, str) and any(c.isalpha() for c in value):
            hint = "give a plain number; the unit is part of the key name"
        fail("an integer" if f.type == "int" else "a number", hint)
    if f.type == "int":
        if isinstance(value, float):
            if not value.is_integer():
                fail("an integer")
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            fail("a finite number")
    if f.minimum is not None:
        if f.exclusive_minimum and value <= f.minimum:
            fail(f"a number > {f.minimum:g}")
        if not f.exclusive_minimum and value < f.minimum:
            fail(f"a number >= {f.minimum:g}")
    if f.maximum is not None and value > f.maximum:
        fail(f"a number <= {f.maximum:g}")
    return value


def _validate(data: Any, section: Section, file: str, prefix: str) -> dict[str, Any]:
    """Check ``data`` against ``section`` and return a new tree with every default filled."""
    where = prefix.rstrip(".") or "(top level)"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys", file=file, key=where,
                          expected="a mapping (key: value lines)", found=type(data).__name__)
    if section.open_keys:
        out = {}
        for key, value in data.items():
            out[str(key)] = _check_value(value, Field(section.value_type, None, ""), file, f"{prefix}{key}")
        return out
    for key in data:
        if key not in section.fields:
            raise ConfigError("unknown key", file=file, key=f"{prefix}{key}",
                              expected=f"one of the keys of {where}",
                              found=str(key), suggestion=did_you_mean(str(key), section.fields))
    out = {}
    for key, item in section.fields.items():
        path = f"{prefix}{key}"
        if isinstance(item, Section):
            if key not in data and item.required:
                raise ConfigError("missing required section", file=file, key=path,
                                  expected=f"a '{key}:' section ({item.doc})", found="nothing",
                                  suggestion=f"add '{key}:' (its keys all have defaults; see `snnsim schema`)")
            out[key] = _validate(data.get(key), item, file, path + ".")
        else:
            out[key] = _check_value(data[key], item, file, path) if key in data else copy.deepcopy(item.default)
    return out


def _apply_override(tree: dict[str, Any], key: str, value: Any, file: str) -> None:
    """Set a dotted key in the raw tree, checking each part against the schema."""
    parts = key.split(".")
    section: Section = HWCONFIG
    node = tree
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if section.open_keys:
            # entry names may contain dots (e.g. technology.overrides.link.bit)
            node[".".join(parts[i:])] = value
            return
        if part not in section.fields:
            valid = [p for p, _ in iter_fields(HWCONFIG)]
            raise ConfigError("unknown key in override", file=file, key=key,
                              expected="a key listed by `snnsim schema`", found=here,
                              suggestion=did_you_mean(key, valid))
        item = section.fields[part]
        if i == len(parts) - 1:
            if isinstance(item, Section):
                raise ConfigError("an override must name a value, not a section", file=file, key=key,
                                  expected=f"{key}.<key>=value", found=key,
                                  suggestion=f"one of: {', '.join(item.fields)}" if item.fields else None)
            node[part] = value
            return
        if not isinstance(item, Section):
            raise ConfigError("not a section", file=file, key=key, expected=f"{here}=value", found=key)
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            raise ConfigError("expected a mapping", file=file, key=here, expected="a mapping",
                              found=type(child).__name__)
        node, section = child, item


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely, turning every failure into a ConfigError naming the file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError("file not found", file=str(path), expected="an existing hwconfig YAML file",
                          found="no such file", suggestion=_sibling_hint(p, ".yaml"))
    if p.is_dir():
        raise ConfigError("is a directory", file=str(path), expected="a YAML file", found="a directory")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("not a text file", file=str(path), expected="UTF-8 YAML text",
                          found=f"undecodable byte at offset {e.start}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError("malformed YAML", file=str(path), key=where, expected="valid YAML",
                          found=str(problem)) from None


def _sibling_hint(p: Path, suffix: str) -> str | None:
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return None
    names = [c.name for c in parent.iterdir() if c.suffix == suffix]
    hint = did_you_mean(p.name, names)
    return hint


def load_hardware(path: str | Path | dict, overrides: list[str] | list[tuple[str, Any]] | None = None) -> Hardware:
    """Load, override, validate and resolve a hwconfig.

    ``path`` is a YAML file or an already-parsed mapping; ``overrides`` are ``key.path=value``
    strings (as given to ``--set``) or (key, value) pairs.
    """
    if isinstance(path, dict):
        raw, source = copy.deepcopy(path), "<dict>"
    else:
        raw, source = read_yaml(path), str(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("a hwconfig must be a mapping at the top level", file=source,
                          expected="keys such as sensor:, link:, core:", found=type(raw).__name__)
    pairs = parse_overrides(overrides) if overrides and isinstance(overrides[0], str) else list(overrides or [])
    for key, value in pairs:
        _apply_override(raw, key, value, "--set")
    config = _validate(raw, HWCONFIG, source, "")
    energy = load_energy_table(config["technology"]["table"], config["technology"]["overrides"], source)
    return Hardware(config=config, energy=energy, source=source)
