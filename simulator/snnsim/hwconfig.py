"""Reading a hardware YAML into a validated, fully defaulted configuration.

raw YAML -> ``--set`` overrides -> schema check (types, ranges, unknown keys with a suggestion)
-> defaults filled -> technology table resolved -> :class:`Hardware`.

The YAML reader is a hardened ``yaml.SafeLoader``: a hwconfig is a few kilobytes written by hand,
so anything far outside that (a file over 1 MiB, nesting deeper than 50, more than 100 aliases or
10,000 nodes once aliases are expanded, a 100-digit number) is refused with a :class:`ConfigError`
naming the file and line, before it can take the memory or time it asks for. Duplicate keys are
refused (YAML would keep the last silently), and numbers with an exponent but no dot (``1e-3``)
are read as numbers, as YAML 1.2 does, instead of as strings.

Errors name where the value came from: the YAML file, or ``--set`` (``file="--set"``, ``key`` the
dotted key) when the value came from an override.
"""

from __future__ import annotations

import copy
import errno
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .energy import EnergyTable, load_energy_table
from .errors import ConfigError, did_you_mean
from .fields import Field, Section, check_value
from .schema import HWCONFIG, iter_fields

OVERRIDE_SOURCE = "--set"  # the ``file`` of every error about a value given as an override

MAX_FILE_BYTES = 1 << 20  # ~300x the largest shipped hwconfig; bounds read time (pure-Python YAML: ~3 s/MiB)
MAX_DEPTH = 50  # the schema nests 3 deep; PyYAML's composer recurses once per level
MAX_ALIASES = 100
MAX_NODES = 10_000  # after alias expansion; a hwconfig has ~100
MAX_NUMBER_CHARS = 100  # no key needs more digits; int() of thousands of digits is slow or refused

# YAML 1.2 floats that YAML 1.1 (PyYAML) reads as strings: an exponent without a dot (1e-3, 2e6)
# or without a sign (1.5e6). Forms with a dot and a signed exponent are already floats.
_FLOAT_WITH_EXPONENT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")

_LEADING_ZERO = re.compile(r"^0[0-9]+$")  # octal in YAML 1.1; an explicit 0o17 or 0x1f is left alone

# Leading bytes of files a hwconfig is mistaken for: (magic, what it is, hint).
_ORDER_HINT = "the order is HWCONFIG then TRACE: snnsim run hwconfigs/p2m.yaml TRACE.npz"
_FOREIGN_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive: this looks like a spike trace (.npz), not a hwconfig", _ORDER_HINT),
    (b"PK\x05\x06", "an empty ZIP archive: this looks like a spike trace (.npz), not a hwconfig", _ORDER_HINT),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file: this looks like a NIR graph or NIRData, not a hwconfig",
     "make a trace from it with `snnsim workload from-nir GRAPH -o TRACE.npz`, then " + _ORDER_HINT),
    (b"\x93NUMPY", "a NumPy .npy array, not a hwconfig", _ORDER_HINT),
)


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


def _position(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"


class _HwconfigLoader(yaml.SafeLoader):
    """SafeLoader (no object construction) that refuses what no hand-written hwconfig holds.

    Limits are enforced while composing, node by node, so an alias bomb or a deep nest is refused
    after at most a few thousand nodes of work, never expanded."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.source = source
        self._depth = 0
        self._aliases = 0
        self._expanded = 0  # nodes the document stands for with every alias expanded
        self._weight: dict[yaml.Node, int] = {}  # node -> nodes in its expanded subtree

    def _refuse(self, message: str, mark: Any, expected: str, found: str, suggestion: str | None = None) -> NoReturn:
        raise ConfigError(message, file=self.source, key=_position(mark), expected=expected, found=found,
                          suggestion=suggestion)

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                self._refuse("too many YAML aliases", mark, f"at most {MAX_ALIASES} aliases (*name) in a hwconfig",
                             f"more than {MAX_ALIASES}", "write the values out; a hwconfig needs few or no aliases")
            node = super().compose_node(parent, index)
            weight = self._weight.get(node)
            if weight is None:  # the anchor is still open: the alias is inside the node it names
                self._refuse("recursive YAML alias", mark, "an alias to a node that is complete",
                             "an alias inside the node it refers to")
            self._add_nodes(weight, mark)
            return node
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._refuse("YAML nested too deeply", mark, f"at most {MAX_DEPTH} levels of nesting",
                         f"more than {MAX_DEPTH} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.MappingNode):
            weight = 1 + sum(self._weight[k] + self._weight[v] for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            weight = 1 + sum(self._weight[v] for v in node.value)
        else:
            weight = 1
        self._weight[node] = weight
        self._add_nodes(1, mark)
        return node

    def _add_nodes(self, n: int, mark: Any) -> None:
        self._expanded += n
        if self._expanded > MAX_NODES:
            self._refuse("YAML too large once its aliases are expanded", mark,
                         f"at most {MAX_NODES} values (with every alias expanded)",
                         f"more than {MAX_NODES} (aliases so far: {self._aliases})",
                         "a hwconfig holds ~100 values; aliases that nest aliases multiply")

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        # checked before SafeConstructor flattens merge keys (<<), whose keys may be overridden on purpose
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # unhashable: SafeConstructor reports it
                if first is not key_node.start_mark:
                    self._refuse(f"duplicate key '{key}'", key_node.start_mark, "each key once per mapping",
                                 f"'{key}' at {_position(first)} and again at {_position(key_node.start_mark)}",
                                 "delete one of the two (YAML would silently keep the last)")
        return super().construct_mapping(node, deep=deep)

    def _plain_number(self, node: Any) -> None:
        """Refuse numbers too long to parse quickly, and the YAML 1.1 forms a person does not mean:
        a leading zero (``0224`` would be octal 148) and colons (``1:30`` would be base 60, 90)."""
        text = self.construct_scalar(node)
        if len(text) > MAX_NUMBER_CHARS:
            self._refuse("number too long", node.start_mark, f"a number of at most {MAX_NUMBER_CHARS} characters",
                         f"{len(text)} characters")
        digits = text.lstrip("+-").replace("_", "")
        if ":" in digits or _LEADING_ZERO.match(digits):
            self._refuse("ambiguous number", node.start_mark, "a decimal number",
                         f"{text!r} (YAML 1.1 reads {'a leading zero as octal' if ':' not in digits else 'colons as base 60'})",
                         f"write it as {digits.lstrip('0') or '0'!r}, or quote it if a string is meant"
                         if ":" not in digits else "write the value in the key's unit as one decimal number")

    def construct_bounded_int(self, node: Any) -> int:
        self._plain_number(node)
        return self.construct_yaml_int(node)

    def construct_bounded_float(self, node: Any) -> float:
        self._plain_number(node)
        return self.construct_yaml_float(node)


_HwconfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITH_EXPONENT, list("-+.0123456789"))
_HwconfigLoader.add_constructor("tag:yaml.org,2002:int", _HwconfigLoader.construct_bounded_int)
_HwconfigLoader.add_constructor("tag:yaml.org,2002:float", _HwconfigLoader.construct_bounded_float)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse YAML text with the hardened loader.

    Limits, duplicate keys and too-deep nesting raise :class:`ConfigError` naming ``source``;
    plain syntax errors stay ``yaml.YAMLError`` (a ``--set`` value that is not YAML is a string)."""
    loader = _HwconfigLoader(text, source)
    try:
        return loader.get_single_data()
    except RecursionError:
        # the depth limit comes first; this is the backstop should the stack be smaller than usual
        raise ConfigError("YAML nested too deeply", file=source, expected=f"at most {MAX_DEPTH} levels of nesting",
                          found="nesting deeper than Python's recursion limit") from None
    finally:
        loader.dispose()


def _parse_value(text: str, source: str = OVERRIDE_SOURCE) -> Any:
    """A ``--set`` value typed the way a hwconfig file would type it (``2`` -> int, ``1e-3`` ->
    float, ``true`` -> bool); text that is not YAML is a string."""
    try:
        return load_yaml_text(text, source)
    except yaml.YAMLError:
        return text


def parse_overrides(items: list[str] | None, source: str = OVERRIDE_SOURCE) -> list[tuple[str, Any]]:
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
        try:
            parsed = _parse_value(value.strip(), source)
        except ConfigError as e:  # a limit of the YAML reader: name the key, not line 1 of a one-line value
            raise ConfigError(e.message, file=source, key=key, expected=e.expected, found=e.found,
                              suggestion=e.suggestion) from None
        out.append((key, parsed))
    return out


def _validate(data: Any, section: Section, file: str, prefix: str,
              overridden: Collection[str] = ()) -> dict[str, Any]:
    """Check ``data`` against ``section`` and return a new tree with every default filled.

    A value whose dotted key is in ``overridden`` came from ``--set``, and its errors say so."""
    def origin(path: str) -> str:
        return OVERRIDE_SOURCE if path in overridden else file

    where = prefix.rstrip(".") or "(top level)"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of keys", file=file, key=where,
                          expected="a mapping (key: value lines)", found=type(data).__name__)
    if section.open_keys:
        values = section.values or Field("float", None, "")
        out = {}
        for key, value in data.items():
            path = f"{prefix}{key}"
            out[str(key)] = check_value(value, values, file=origin(path), key=path)
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
            out[key] = _validate(data.get(key), item, file, path + ".", overridden)
        elif key in data:
            out[key] = check_value(data[key], item, file=origin(path), key=path)
        else:
            out[key] = copy.deepcopy(item.default)
    return out


def _apply_override(tree: dict[str, Any], key: str, value: Any, file: str) -> str:
    """Set a dotted key in the raw tree, checking each part against the schema; return the key.

    Errors about the override name ``--set``; ``file`` is named when the YAML's own structure is
    in the way (a section that is not a mapping)."""
    parts = key.split(".")
    section: Section = HWCONFIG
    node = tree
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if section.open_keys:
            # entry names may contain dots (e.g. technology.overrides.link.bit)
            node[".".join(parts[i:])] = value
            return key
        if part not in section.fields:
            valid = [p for p, _ in iter_fields(HWCONFIG)]
            raise ConfigError("unknown key in override", file=OVERRIDE_SOURCE, key=key,
                              expected="a key listed by `snnsim schema`", found=here,
                              suggestion=did_you_mean(key, valid))
        item = section.fields[part]
        if i == len(parts) - 1:
            if isinstance(item, Section):
                raise ConfigError("an override must name a value, not a section", file=OVERRIDE_SOURCE, key=key,
                                  expected=f"{key}.<key>=value", found=key,
                                  suggestion=f"one of: {', '.join(item.fields)}" if item.fields else None)
            if item.type == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # --set mapping.pim=0: the text as written, for a text key
            node[part] = value
            return key
        if not isinstance(item, Section):
            raise ConfigError("not a section", file=OVERRIDE_SOURCE, key=key, expected=f"{here}=value", found=key)
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict):
            raise ConfigError("expected a mapping", file=file, key=here, expected="a mapping",
                              found=type(child).__name__)
        node, section = child, item
    return key


def _os_error(name: str, e: OSError) -> ConfigError:
    """A ConfigError for a file that exists (or might) but cannot be read."""
    code = errno.errorcode.get(e.errno or 0, "")
    reason = f"{e.strerror or e}{f' ({code})' if code else ''}"
    if e.errno == errno.ENAMETOOLONG:
        return ConfigError("file name too long", file=name, expected="a path the OS accepts "
                           "(most file systems: at most 255 bytes per name, 4096 per path)",
                           found=f"a path of {len(os.fsencode(name))} bytes: {reason}")
    hint = "check the file's permissions" if e.errno in (errno.EACCES, errno.EPERM) else None
    return ConfigError("cannot read the file", file=name, expected="a readable hwconfig YAML file",
                       found=reason, suggestion=hint)


def _read_bounded(path: str | Path, kind: str = "hwconfig") -> bytes:
    """The bytes of a ``kind`` file (a hwconfig, a sweep spec), refusing a missing, unreadable or oversized one."""
    p, name = Path(path), str(path)
    if "\x00" in name:
        raise ConfigError("invalid file name", file=repr(name), expected="a file path without NUL characters",
                          found="a NUL character in the path")
    try:
        if not p.exists():
            raise ConfigError("file not found", file=name, expected=f"an existing {kind} YAML file",
                              found="no such file", suggestion=_sibling_hint(p, ".yaml"))
        if p.is_dir():
            raise ConfigError("is a directory", file=name, expected="a YAML file", found="a directory")
        with p.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # never more, whatever the file (or device) holds
    except OSError as e:
        raise _os_error(name, e) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"file too large for a {kind}", file=name,
                          expected=f"a YAML file of at most {MAX_FILE_BYTES} bytes (1 MiB)",
                          found=f"more than {MAX_FILE_BYTES} bytes",
                          suggestion=f"is this the right file? a {kind} is a few kilobytes")
    return data


def read_yaml(path: str | Path, kind: str = "hwconfig") -> Any:
    """Parse a YAML file (a ``kind``: hwconfig, sweep spec) safely, turning every failure into a
    ConfigError naming the file."""
    name = str(path)
    data = _read_bounded(path, kind)
    for magic, what, hint in _FOREIGN_MAGIC:
        if data.startswith(magic):
            raise ConfigError(f"not a {kind}", file=name, expected=f"a {kind} YAML file", found=what,
                              suggestion=hint)
    if Path(path).suffix.lower() == ".npz":
        raise ConfigError(f"not a {kind}", file=name, expected=f"a {kind} YAML file",
                          found=f"a .npz file: this looks like a spike trace, not a {kind}",
                          suggestion=_ORDER_HINT if kind == "hwconfig" else None)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ConfigError("not a text file", file=name, expected="UTF-8 YAML text",
                          found=f"a NUL byte at offset {nul} (binary data, or UTF-16 text)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("not a text file", file=name, expected="UTF-8 YAML text",
                          found=f"undecodable byte at offset {e.start}") from None
    try:
        return load_yaml_text(text, name)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError("malformed YAML", file=name, key=_position(mark), expected="valid YAML",
                          found=str(problem)) from None


def _sibling_hint(p: Path, suffix: str) -> str | None:
    parent = p.parent if str(p.parent) else Path(".")
    try:
        if not parent.is_dir():
            return None
        names = [c.name for c in parent.iterdir() if c.suffix == suffix]
    except OSError:  # an unreadable directory: no hint, the error itself still stands
        return None
    return did_you_mean(p.name, names)


def _check_input_sections(raw: dict[str, Any], config: dict[str, Any], source: str) -> None:
    """Frames enter the chip through a sensor and its link, or from DRAM, or from a host
    (``mapping.input``), and one processor runs the network (``mapping.target``). The sections a
    chip needs are required (the sensor and link for a sensor, the core for the core; the frame
    reader's and the targets' keys all have defaults), and the sections of the units it does not
    have would have no effect, so are refused."""
    from .schema import TARGET_SECTIONS

    entry, target = config["mapping"]["input"], config["mapping"]["target"]
    if target == "core" and entry == "host":
        raise ConfigError("the SNN core takes frames from a sensor or from DRAM, not from a host", file=source,
                          key="mapping.input", expected="sensor or dram with mapping.target core", found="host",
                          suggestion="mapping.input: dram (stored frames), or mapping.target: loihi / ncs2")
    if target != "core" and entry != "host":
        raise ConfigError(f"a {target} target takes its frames from a host computer", file=source,
                          key="mapping.input", expected=f"host with mapping.target {target}", found=entry,
                          suggestion="mapping.input: host")
    if target == "core":
        needed = ("sensor", "link", "core") if entry == "sensor" else ("core",)
        unused = ("frames",) if entry == "sensor" else ("sensor", "link")
    else:
        needed, unused = (), ("sensor", "link", "frames", "technology")
    unused += tuple(s for t, secs in TARGET_SECTIONS.items() if t != target for s in secs)
    for key in needed:
        if key not in raw:
            item = HWCONFIG.fields[key]
            raise ConfigError("missing required section", file=source, key=key,
                              expected=f"a '{key}:' section ({item.doc})", found="nothing",
                              suggestion=f"add '{key}:' (its keys all have defaults; see `snnsim schema`)"
                              + (", or read stored frames: mapping.input: dram" if key != "core" else ""))
    for key in unused:
        if key in raw:
            where = f"mapping.target {target}" if key in ("core", "dram", "pim", "loihi", "ncs2", "technology") \
                else f"mapping.input {entry}"
            other = {"sensor": "dram", "dram": "sensor"}.get(entry, "sensor")
            suggestion = ("remove the section, or set mapping.input to " + other) if where.startswith("mapping.input") \
                else "remove the section (the target's own section holds its parameters)"
            raise ConfigError(f"a '{key}:' section has no effect with {where}", file=source, key=key,
                              expected=f"no '{key}:' section with {where}", found=f"'{key}:'",
                              suggestion=suggestion)


def check_override(key: str, value: Any, source: str = OVERRIDE_SOURCE) -> Any:
    """Check one ``key.path=value`` on its own, as ``--set`` would (the key against the schema,
    with the nearest key suggested; the value against its field's type and range), and return
    the value normalised. Errors name ``source``. Constraints between keys are checked only when
    a whole hwconfig is loaded."""
    tree: dict[str, Any] = {}
    try:
        _apply_override(tree, key, value, source)
    except ConfigError as e:
        raise ConfigError(e.message, file=source, key=e.key, expected=e.expected, found=e.found,
                          suggestion=e.suggestion) from None
    section: Section = HWCONFIG
    parts = key.split(".")
    for i, part in enumerate(parts):
        if section.open_keys:
            return check_value(value, section.values or Field("float", None, ""), file=source, key=key)
        item = section.fields[part]
        if i == len(parts) - 1:
            if item.type == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            return check_value(value, item, file=source, key=key)
        section = item
    return value


def load_hardware(path: str | Path | dict, overrides: list[str] | list[tuple[str, Any]] | None = None,
                  *, source: str | None = None) -> Hardware:
    """Load, override, validate and resolve a hwconfig.

    ``path`` is a YAML file or an already-parsed mapping (then ``source`` names it in errors and
    in the report, e.g. the file it was read from); ``overrides`` are ``key.path=value`` strings
    (as given to ``--set``) or (key, value) pairs. An error about a value that came from an
    override names ``--set`` as its file.
    """
    if isinstance(path, dict):
        try:
            raw, source = copy.deepcopy(path), source or "<dict>"
        except RecursionError:
            raise ConfigError("configuration nested too deeply", file="<dict>",
                              expected=f"at most {MAX_DEPTH} levels of nesting",
                              found="nesting deeper than Python's recursion limit") from None
    else:
        raw, source = read_yaml(path), str(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("a hwconfig must be a mapping at the top level", file=source,
                          expected="keys such as sensor:, link:, core:", found=type(raw).__name__)
    pairs = parse_overrides(overrides) if overrides and isinstance(overrides[0], str) else list(overrides or [])
    overridden = {_apply_override(raw, key, value, source) for key, value in pairs}
    config = _validate(raw, HWCONFIG, source, "", overridden)
    _check_input_sections(raw, config, source)
    prefix = "technology.overrides."
    from_set = {k[len(prefix):] for k in overridden if k.startswith(prefix)}
    try:
        energy = load_energy_table(config["technology"]["table"], config["technology"]["overrides"], source,
                                   override_origins={k: OVERRIDE_SOURCE for k in from_set})
    except ConfigError as e:
        if e.key not in overridden:
            raise
        raise ConfigError(e.message, file=OVERRIDE_SOURCE, key=e.key, expected=e.expected, found=e.found,
                          suggestion=e.suggestion) from None
    return Hardware(config=config, energy=energy, source=source)
