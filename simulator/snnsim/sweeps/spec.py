"""A sweep specification: which chips, which traces, which hwconfig keys take which values.

A spec is a YAML file (or the same mapping from Python)::

    hwconfig: ../../hwconfigs/p2m.yaml       # a path, a list of paths, or {label: path}
    workload: ../../workloads/resnet_imagenet.npz
    set: {core.membrane_bits: 16}             # fixed overrides, applied to every point
    axes:                                     # a grid: every combination, the first outermost
      - link.lanes: [1, 2, 4]                 # one dimension of one key
      - core.vector_width: [16, 32, 64]
      - workload: [w8.npz, w16.npz]           # or several keys moving together (zipped)
        sensor.p2m.out_channels: [8, 16]
    # instead of axes: explicit points, or random samples with a seed
    points: [{link.lanes: 1}, {link.lanes: 4, core.vector_width: 64}]
    sample: {n: 100, seed: 0, axes: {link.lanes: [1, 2, 4], core.clock_mhz: {uniform: [100, 500]}}}

Keys are the dotted paths of ``--set`` (``snnsim schema``), plus ``hwconfig`` and ``workload``
(a label of the top-level mapping, or a path). Paths are relative to the spec file. Every key and
value is checked here, before anything is simulated or written: an unknown key (with the nearest
suggested), a value of the wrong type or out of range, an empty axis, zipped lists of different
lengths, a missing file. Constraints between keys (a trace that does not fit a chip) are checked
per point when it runs, and a point that fails is recorded as failed.

The points come out in a fixed order: hwconfigs outermost, then workloads, then the axes in the
order written (the last varies fastest), as the nested loops of a shell sweep would.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..fileio import file_sha256

SPEC_KEYS = ("name", "hwconfig", "workload", "set", "axes", "points", "sample", "reports")
SAMPLE_KEYS = ("n", "seed", "axes")
DISTRIBUTIONS = ("uniform", "log_uniform", "integers")
SPECIAL = ("hwconfig", "workload")
#: Points a spec may expand to: a bound on what the expansion allocates (a grid of ten axes of
#: ten values is ten billion points, and would never finish anyway).
MAX_POINTS = 1_000_000


@dataclass(frozen=True)
class Point:
    """One simulation of a sweep: a chip (a base hwconfig and its overrides) and a trace."""

    index: int
    hwconfig: str  # label
    workload: str  # label
    overrides: tuple[tuple[str, Any], ...]  # the spec's set:, then this point's axis values
    axes: tuple[tuple[str, Any], ...]  # the swept keys and their values (the table's columns)


@dataclass
class SweepSpec:
    """A checked, expanded spec: labelled inputs and the list of points."""

    name: str
    source: str
    hwconfigs: dict[str, Path]  # label -> file
    workloads: dict[str, Path]
    axes: list[str]  # the swept hwconfig keys, in column order
    points: list[Point]
    reports: bool = False
    digests: dict[str, str] = field(default_factory=dict)  # file -> sha256 of its bytes

    def digest(self) -> str:
        """A fingerprint of everything the results depend on: the points and the bytes of every
        input file (a changed trace or hwconfig is a changed sweep)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.describe(), sort_keys=True, default=repr).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "hwconfigs": {k: {"file": str(v), "sha256": self.digests.get(str(v))} for k, v in self.hwconfigs.items()},
            "workloads": {k: {"file": str(v), "sha256": self.digests.get(str(v))} for k, v in self.workloads.items()},
            "axes": self.axes,
            "reports": self.reports,
            "points": [[p.hwconfig, p.workload, [list(o) for o in p.overrides]] for p in self.points],
        }


def _fail(source: str, key: str, message: str, expected: str, found: str, suggestion: str | None = None):
    raise ConfigError(message, file=source, key=key, expected=expected, found=found, suggestion=suggestion)


def _describe(value: Any) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, str) else repr(value)
    return f"{type(value).__name__} {text}"


def _files(value: Any, key: str, base: Path, source: str, suffix: str) -> dict[str, Path]:
    """``hwconfig:``/``workload:`` as {label: resolved path}: one path, a list or a mapping."""
    if isinstance(value, str):
        items = [(None, value)]
    elif isinstance(value, list):
        items = [(None, v) for v in value]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        _fail(source, key, "expected a file, a list of files or a mapping of labels to files",
              f"a {suffix} path, a list of them, or {{label: path}}", _describe(value))
    if not items:
        _fail(source, key, "empty list of files", f"at least one {suffix} file", "an empty list")
    out: dict[str, Path] = {}
    for label, path in items:
        if not isinstance(path, str) or not path:
            _fail(source, key, "expected a file path", f"a {suffix} path", _describe(path))
        p = _resolve(path, base, source, key, suffix)
        lab = str(label) if label is not None else _label_of(p, out)
        if lab in out:
            _fail(source, key, "two inputs with the same label", "distinct labels", lab,
                  f"give labels explicitly: {key}: {{a: path1, b: path2}}")
        out[lab] = p
    return out


def _label_of(p: Path, taken: dict[str, Path]) -> str:
    lab = p.stem
    return lab if lab not in taken else str(p)


def _resolve(path: str, base: Path, source: str, key: str, suffix: str) -> Path:
    p = Path(path)
    if not p.is_absolute():
        p = base / p
    if not p.is_file():
        what = "a directory" if p.is_dir() else "no such file"
        _fail(source, key, "input file not found", f"an existing {suffix} file (paths are relative to the spec)",
              f"{path}: {what}", f"resolved to {os.path.normpath(p)}")
    return Path(os.path.normpath(p))


def _check_pair(key: str, value: Any, source: str, where: str) -> Any:
    """One hwconfig key and value, as ``--set`` checks them; errors name the spec and ``where``."""
    from ..hwconfig import check_override

    if not isinstance(key, str) or not key:
        _fail(source, where, "expected a hwconfig key", "a dotted key such as link.lanes", _describe(key))
    try:
        return check_override(key, value, source)
    except ConfigError as e:
        raise ConfigError(e.message, file=source, key=f"{where}: {key}", expected=e.expected, found=e.found,
                          suggestion=e.suggestion) from None


def _axis_value(key: str, value: Any, source: str, where: str) -> Any:
    """A swept value: a label or path for hwconfig/workload, else a checked hwconfig value."""
    if key in SPECIAL:
        if not isinstance(value, str):
            _fail(source, where, f"a {key} value must be a label or a path", "a string", _describe(value))
        return value
    return _check_pair(key, value, source, where)


def _dimensions(axes: Any, source: str) -> list[dict[str, list[Any]]]:
    """``axes:`` as a list of dimensions, each {key: values} of equal-length lists."""
    if isinstance(axes, dict):
        dims = [{k: v} for k, v in axes.items()]
    elif isinstance(axes, list):
        dims = axes
    else:
        _fail(source, "axes", "expected a mapping or a list of mappings",
              "axes: {key: [values]} or axes: [{key: [values]}, ...]", _describe(axes))
    out = []
    for i, dim in enumerate(dims):
        where = f"axes[{i}]"
        if not isinstance(dim, dict) or not dim:
            _fail(source, where, "an axis must map keys to lists of values", "{key: [v1, v2, ...]}", _describe(dim))
        lengths = set()
        for k, vals in dim.items():
            if not isinstance(vals, list):
                _fail(source, f"{where}: {k}", "an axis needs a list of values", "[v1, v2, ...]", _describe(vals),
                      f"for one value, put it under set: ({k}: ...)")
            if not vals:
                _fail(source, f"{where}: {k}", "empty axis", "at least one value", "an empty list")
            lengths.add(len(vals))
        if len(lengths) > 1:
            _fail(source, where, "zipped keys need lists of the same length", "one length for every key of the axis",
                  ", ".join(f"{k}: {len(v)} values" for k, v in dim.items()))
        out.append(dim)
    return out


def _sample_points(sample: Any, source: str, rows_check) -> list[dict[str, Any]]:
    """``sample:`` drawn with NumPy's PCG64 from ``seed``: the same spec gives the same points."""
    import numpy as np

    if not isinstance(sample, dict):
        _fail(source, "sample", "expected a mapping", "{n: N, seed: S, axes: {key: ...}}", _describe(sample))
    for k in sample:
        if k not in SAMPLE_KEYS:
            _fail(source, f"sample.{k}", "unknown key", f"one of {', '.join(SAMPLE_KEYS)}", str(k),
                  did_you_mean(str(k), SAMPLE_KEYS))
    n, seed, axes = sample.get("n"), sample.get("seed"), sample.get("axes")
    for key, v in (("n", n), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "n" else 0):
            _fail(source, f"sample.{key}", "expected a whole number", "an integer >= 1" if key == "n" else
                  "an integer >= 0 (the random seed)", _describe(v))
    if n > MAX_POINTS:
        _fail(source, "sample.n", "too many points", f"at most {MAX_POINTS:,}", f"{n:,}")
    if not isinstance(axes, dict) or not axes:
        _fail(source, "sample.axes", "expected a mapping of keys to values or distributions",
              "{key: [v1, v2], key2: {uniform: [lo, hi]}}", _describe(axes))
    rng = np.random.Generator(np.random.PCG64(seed))
    columns: dict[str, list[Any]] = {}
    for key, dist in axes.items():
        where = f"sample.axes: {key}"
        if isinstance(dist, list):
            if not dist:
                _fail(source, where, "empty axis", "at least one value", "an empty list")
            idx = rng.integers(0, len(dist), size=n)
            columns[key] = [dist[int(i)] for i in idx]
            continue
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            name = next(iter(dist)) if isinstance(dist, dict) and dist else None
            _fail(source, where, "expected a list of values or one distribution",
                  f"[values] or {{{' | '.join(DISTRIBUTIONS)}: [low, high]}}", _describe(dist),
                  did_you_mean(str(name), DISTRIBUTIONS) if name is not None else None)
        kind, bounds = next(iter(dist.items()))
        if (not isinstance(bounds, list) or len(bounds) != 2
                or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) for b in bounds)
                or not bounds[0] <= bounds[1]):
            _fail(source, where, f"{kind} needs two finite bounds, low <= high", "[low, high]", _describe(bounds))
        lo, hi = bounds
        if kind == "integers":
            if not all(isinstance(b, int) for b in bounds):
                _fail(source, where, "integers needs whole-number bounds", "[low, high] integers", _describe(bounds))
            columns[key] = [int(v) for v in rng.integers(lo, hi + 1, size=n)]
        elif kind == "uniform":
            columns[key] = [float(v) for v in rng.uniform(lo, hi, size=n)]
        else:
            if lo <= 0:
                _fail(source, where, "log_uniform needs positive bounds", "0 < low <= high", _describe(bounds))
            columns[key] = [float(v) for v in np.exp(rng.uniform(math.log(lo), math.log(hi), size=n))]
    for key, vals in columns.items():
        rows_check(key, vals, f"sample.axes: {key}")
    return [{k: columns[k][i] for k in columns} for i in range(n)]


def load_spec(spec: str | os.PathLike[str] | dict[str, Any], *, base: str | os.PathLike[str] | None = None) -> SweepSpec:
    """Read, check and expand a sweep spec (a YAML file, or the same mapping with paths relative
    to ``base``, default the working directory). Raises :class:`ConfigError` on any problem."""
    if isinstance(spec, dict):
        raw, source = spec, "<sweep spec>"
        base_dir = Path(base) if base is not None else Path.cwd()
        name = str(raw.get("name") or "sweep")
    else:
        path = Path(spec)
        source = str(path)
        raw = _read_spec(path)
        base_dir = path.parent
        name = str(raw.get("name") or path.stem) if isinstance(raw, dict) else "sweep"
    if not isinstance(raw, dict):
        _fail(source, "(top level)", "a sweep spec must be a mapping",
              "keys such as hwconfig:, workload:, axes:", _describe(raw))
    for k in raw:
        if k not in SPEC_KEYS:
            _fail(source, str(k), "unknown key", f"one of {', '.join(SPEC_KEYS)}", str(k),
                  did_you_mean(str(k), SPEC_KEYS))
    modes = [k for k in ("axes", "points", "sample") if k in raw]
    if len(modes) > 1:
        _fail(source, modes[1], "give one of axes, points or sample", "a grid (axes:), explicit points (points:) "
              "or random samples (sample:)", ", ".join(modes))
    reports = raw.get("reports", False)
    if not isinstance(reports, bool):
        _fail(source, "reports", "expected true or false", "a bool (write a full report per point)", _describe(reports))
    fixed = raw.get("set") or {}
    if not isinstance(fixed, dict):
        _fail(source, "set", "expected a mapping of hwconfig keys to values", "{link.lanes: 4}", _describe(fixed))
    fixed_pairs = [(k, _check_pair(k, v, source, "set")) for k, v in fixed.items()]

    # the swept keys of every point, before hwconfig/workload are resolved
    rows: list[dict[str, Any]]
    seen_checks: dict[tuple[str, str], Any] = {}

    def check_values(key: str, vals: list[Any], where: str) -> list[Any]:
        out = []
        for j, v in enumerate(vals):
            if key in SPECIAL:
                out.append(_axis_value(key, v, source, f"{where}[{j}]"))
                continue
            tag = (key, json.dumps(v, default=repr))
            if tag not in seen_checks:
                seen_checks[tag] = _check_pair(key, v, source, f"{where}[{j}]")
            out.append(seen_checks[tag])
        vals[:] = out
        return out

    if "axes" in raw:
        dims = _dimensions(raw["axes"], source)
        keys: list[str] = []
        total = 1
        for i, dim in enumerate(dims):
            for k, vals in dim.items():
                if k in keys:
                    _fail(source, f"axes[{i}]: {k}", "a key swept twice", "each key in one axis", k)
                keys.append(k)
                dim[k] = check_values(k, list(vals), f"axes[{i}]: {k}")
            total *= len(next(iter(dim.values())))
        if total > MAX_POINTS:
            _fail(source, "axes", "too many points", f"at most {MAX_POINTS:,} points", f"{total:,}",
                  "sweep fewer values, or draw a sample (sample: {n: ..., seed: ...})")
        import itertools

        rows = []
        for combo in itertools.product(*(range(len(next(iter(d.values())))) for d in dims)):
            row: dict[str, Any] = {}
            for d, j in zip(dims, combo, strict=True):
                for k, vals in d.items():
                    row[k] = vals[j]
            rows.append(row)
    elif "points" in raw:
        pts = raw["points"]
        if not isinstance(pts, list) or not pts:
            _fail(source, "points", "expected a non-empty list of points", "[{key: value, ...}, ...]", _describe(pts))
        if len(pts) > MAX_POINTS:
            _fail(source, "points", "too many points", f"at most {MAX_POINTS:,}", f"{len(pts):,}")
        rows = []
        for i, pt in enumerate(pts):
            if not isinstance(pt, dict):
                _fail(source, f"points[{i}]", "a point maps keys to values", "{key: value, ...}", _describe(pt))
            rows.append({k: check_values(k, [v], f"points[{i}]: {k}")[0] for k, v in pt.items()})
    elif "sample" in raw:
        rows = _sample_points(raw["sample"], source, check_values)
    else:
        rows = [{}]

    swept = []
    for row in rows:
        for k in row:
            if k not in swept:
                swept.append(k)
    hw_files = _inputs(raw, "hwconfig", swept, rows, base_dir, source, ".yaml")
    wl_files = _inputs(raw, "workload", swept, rows, base_dir, source, ".npz")
    fixed_keys = {k for k, _ in fixed_pairs}
    both = [k for k in swept if k in fixed_keys]
    if both:
        _fail(source, f"set: {both[0]}", "a key both fixed and swept", "each key in set: or in the axes",
              both[0], f"remove {both[0]} from set:")

    axes = [k for k in swept if k not in SPECIAL]
    points: list[Point] = []
    hw_outer = list(hw_files) if "hwconfig" not in swept else [None]
    wl_outer = list(wl_files) if "workload" not in swept else [None]
    for hw in hw_outer:
        for wl in wl_outer:
            for row in rows:
                h = hw if hw is not None else _label_in(row.get("hwconfig"), hw_files)
                w = wl if wl is not None else _label_in(row.get("workload"), wl_files)
                if h is None or w is None:
                    which = "hwconfig" if h is None else "workload"
                    _fail(source, which, f"a point without a {which}",
                          f"a top-level {which}: or a {which} value in every point", "a point without one")
                pairs = tuple(fixed_pairs) + tuple((k, row[k]) for k in axes if k in row)
                points.append(Point(len(points), h, w, pairs, tuple((k, row.get(k)) for k in axes)))
    if len(points) > MAX_POINTS:
        _fail(source, "axes", "too many points", f"at most {MAX_POINTS:,}", f"{len(points):,}")
    out = SweepSpec(name=name, source=source, hwconfigs=hw_files, workloads=wl_files, axes=axes,
                    points=points, reports=reports)
    for p in [*hw_files.values(), *wl_files.values()]:
        out.digests[str(p)] = file_sha256(p)
    return out


def _label_in(value: Any, files: dict[str, Path]) -> str | None:
    if value is None:
        return None
    for lab, p in files.items():
        if value == lab or value == str(p):
            return lab
    return None


def _inputs(raw: dict[str, Any], key: str, swept: list[str], rows: list[dict[str, Any]], base: Path,
            source: str, suffix: str) -> dict[str, Path]:
    """The labelled files of ``key``: the top-level list, plus every path named in the points."""
    files: dict[str, Path] = {}
    if key in raw:
        files = _files(raw[key], key, base, source, suffix)
    elif key not in swept:
        _fail(source, key, f"no {key}", f"{key}: a {suffix} file (or a list, or {{label: path}})", "nothing",
              f"add '{key}: path/to/file{suffix}' (relative to the spec)")
    if key in swept:
        for i, row in enumerate(rows):
            v = row.get(key)
            if v is None:
                continue
            lab = _label_in(v, files)
            if lab is None:
                p = _resolve(v, base, source, f"{key} (point {i})", suffix)
                lab = _label_in(str(p), files) or _label_of(p, files)
                files.setdefault(lab, p)
            row[key] = lab
    return files


def _read_spec(path: Path) -> Any:
    from ..hwconfig import read_yaml

    return read_yaml(path, "sweep spec")
