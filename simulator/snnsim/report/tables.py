"""Saved results read back for figures: ``report.json`` files and a sweep's results table.

:func:`load_report` rebuilds a :class:`Report` from its JSON (:func:`report_from_dict`);
:func:`load_sweep` reads a sweep's ``results.csv`` or ``results.jsonl``. Nothing is simulated.

Which sweep columns are axes: the ``axes`` list of the ``sweep.json`` beside the table when there
is one; otherwise every column that is neither a fixed one (point, status, error, hwconfig,
workload) nor a summary metric, a metric being ``frames``, ``time_steps``, ``edp_j_s`` or a name
under a summary section (``energy.``, ``delay.``, ``bandwidth.``, ``power.``, ``activity.``,
``operations.``, ``neuromorphic.``, ``dense_target.``). Hwconfig key paths never start with those
sections, so the rule does not depend on the column order.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError, did_you_mean
from .report import COLUMNS, SCHEMA_NAME, Record, Report, flatten
from .units import METRIC_ALIASES

MAX_READ_BYTES = 2 * 1024**3  # 2 GiB: a larger file is refused before it is read
FIXED_COLUMNS = ("point", "status", "error", "hwconfig", "workload")
_METRIC_SECTIONS = ("energy", "delay", "bandwidth", "power", "activity", "operations",
                    "neuromorphic", "dense_target")
_METRIC_NAMES = ("frames", "time_steps", "edp_j_s")


# -- reading -------------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    """The UTF-8 text of ``path``, refusing a file over :data:`MAX_READ_BYTES` before reading."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise UsageError("no such file", file=str(path), expected="an existing file",
                         found="nothing at that path") from None
    if size > MAX_READ_BYTES:
        raise UsageError("the file is too large to plot", file=str(path),
                         expected=f"at most {MAX_READ_BYTES} bytes (2 GiB)", found=f"{size} bytes")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError("the file is not UTF-8 text", file=str(path), expected="JSON or CSV text",
                         found=f"undecodable byte at offset {e.start}") from None


def report_from_dict(d: Any, file: str) -> Report:
    """A :class:`Report` from the dict ``Report.to_dict`` made (what ``report.json`` holds).

    Checks the schema name and major version and that meta and summary are objects holding the
    figures the plots read; anything else is a :class:`UsageError` naming ``file``."""
    expected = f"a JSON object with schema '{SCHEMA_NAME}' (written by snnsim run -o DIR)"
    if not isinstance(d, dict):
        raise UsageError("not an snnsim report", file=file, expected=expected,
                         found=f"a JSON {type(d).__name__}")
    schema = d.get("schema")
    if schema != SCHEMA_NAME:
        hint = ("pass the sweep's folder or its results.csv" if schema == "snnsim-sweep" else None)
        raise UsageError("not an snnsim report", file=file, expected=expected,
                         found=f"schema {schema!r}" if "schema" in d else
                         f"no 'schema' key (keys: {', '.join(sorted(map(str, d))[:8]) or 'none'})",
                         suggestion=hint)
    version = str(d.get("schema_version", ""))
    if version.split(".")[0] != "1":
        raise UsageError("unsupported report schema version", file=file, key="schema_version",
                         expected="1.x", found=repr(d.get("schema_version")))
    for key in ("meta", "summary"):
        if not isinstance(d.get(key), dict):
            raise UsageError(f"the report has no '{key}' object", file=file, key=key,
                             expected="a JSON object", found=type(d.get(key)).__name__)
    summary = d["summary"]
    energy, delay = summary.get("energy"), summary.get("delay")
    if not (isinstance(energy, dict) and isinstance(delay, dict)
            and isinstance(energy.get("by_component_pj_per_frame"), dict)):
        raise UsageError("the report's summary lacks energy and delay figures", file=file,
                         key="summary", expected="summary.energy and summary.delay objects",
                         found=", ".join(sorted(summary)) or "an empty summary")
    records: list[Record] = []
    rec = d.get("records")
    if isinstance(rec, dict) and rec.get("columns") == list(COLUMNS):
        records = [Record(*row) for row in rec.get("rows", []) if len(row) == len(COLUMNS)]
    return Report(meta=d["meta"], records=records, summary=summary)


def report_file(path: str | Path) -> Path:
    """``path`` itself, or the ``report.json`` inside it when it is a folder."""
    p = Path(path)
    return p / "report.json" if p.is_dir() else p


def load_report(path: str | Path) -> Report:
    """Read a ``report.json`` (or a folder holding one) back into a :class:`Report`."""
    p = report_file(path)
    text = _read_text(p)
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError("the file is not valid JSON", file=str(p), expected="a report.json",
                         found=f"{e.msg} at line {e.lineno}, column {e.colno}") from None
    return report_from_dict(d, str(p))


def flatten_summary(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The summary's numeric scalars under dotted keys, as a sweep's metric columns name them
    (lists such as ``layers`` and non-numbers are left out)."""
    return {k: v for k, v in flatten(summary, prefix).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class SavedSweep:
    """A sweep's results: the ``ok`` rows (cells parsed), which columns are axes and metrics,
    and how many rows failed."""

    source: str
    columns: list[str]
    rows: list[dict[str, Any]]
    axes: list[str]
    metrics: list[str]
    failed: int


_INT = re.compile(r"[+-]?\d+")


def parse_value(text: Any) -> Any:
    """A cell or ``--where`` value as int, float, bool or str ("" and "null" = None)."""
    if not isinstance(text, str):
        return None if isinstance(text, float) and not math.isfinite(text) else text
    s = text.strip()
    if s == "" or s.lower() in ("null", "none", "nan"):
        return None
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    if _INT.fullmatch(s):
        return int(s)
    try:
        v = float(s)
    except ValueError:
        return s
    return v if math.isfinite(v) else None


def is_metric_column(name: str) -> bool:
    """Whether a sweep column is a summary metric (see the module's note on axes)."""
    return name in _METRIC_NAMES or name.split(".")[0] in _METRIC_SECTIONS


def _sweep_files(path: Path) -> tuple[Path, Path]:
    """The results table and the sweep.json beside it, for a folder or a table file."""
    if path.is_dir():
        for name in ("results.csv", "results.jsonl"):
            if (path / name).is_file():
                return path / name, path / "sweep.json"
        raise UsageError("the folder holds no sweep results or report", file=str(path),
                         expected="report.json, results.csv or results.jsonl inside",
                         found=", ".join(sorted(os.listdir(path))[:8]) or "an empty folder")
    return path, path.parent / "sweep.json"


def load_sweep(path: str | Path) -> SavedSweep:
    """Read a sweep's ``results.csv`` or ``results.jsonl`` (or the folder holding it)."""
    table, meta_file = _sweep_files(Path(path))
    text = _read_text(table)
    if table.suffix == ".jsonl":
        rows: list[dict[str, Any]] = []
        columns: dict[str, None] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError("a line is not valid JSON", file=str(table), key=f"line {n}",
                                 expected="one JSON object per line", found=e.msg) from None
            if not isinstance(obj, dict):
                raise UsageError("a line is not a JSON object", file=str(table), key=f"line {n}",
                                 expected="one JSON object per line", found=type(obj).__name__)
            columns.update(dict.fromkeys(obj))
            rows.append({k: parse_value(v) for k, v in obj.items()})
        cols = list(columns)
    else:
        reader = csv.reader(io.StringIO(text))
        cols = next(reader, [])
        rows = []
        for n, cells in enumerate(reader, 2):
            if not cells:
                continue
            if len(cells) != len(cols):
                raise UsageError("a row has the wrong number of cells", file=str(table),
                                 key=f"line {n}", expected=f"{len(cols)} cells (the header's)",
                                 found=f"{len(cells)}")
            rows.append({c: parse_value(v) for c, v in zip(cols, cells, strict=True)})
    if "status" not in cols or "point" not in cols:
        raise UsageError("not a sweep results table", file=str(table),
                         expected="columns point,status,error,hwconfig,workload,<axes>,<metrics>",
                         found=", ".join(cols[:6]) or "no header")
    axes = [c for c in cols if c not in FIXED_COLUMNS and not is_metric_column(c)]
    if meta_file.is_file():
        try:
            meta = json.loads(_read_text(meta_file))
        except json.JSONDecodeError as e:
            raise UsageError("the file is not valid JSON", file=str(meta_file),
                             expected="a sweep.json", found=e.msg) from None
        if not isinstance(meta, dict) or meta.get("schema") != "snnsim-sweep":
            raise UsageError("not a sweep description", file=str(meta_file),
                             expected="a JSON object with schema 'snnsim-sweep'",
                             found=f"schema {meta.get('schema')!r}" if isinstance(meta, dict)
                             else type(meta).__name__)
        if isinstance(meta.get("axes"), list):
            axes = [c for c in meta["axes"] if c in cols]
    metrics = [c for c in cols if c not in FIXED_COLUMNS and c not in axes]
    ok = [r for r in rows if r.get("status") == "ok"]
    return SavedSweep(str(table), cols, ok, axes, metrics, len(rows) - len(ok))


# -- names and filters ---------------------------------------------------------------------------

def resolve_metric(name: str, candidates: Sequence[str], option: str = "--metric") -> str:
    """A metric column from its full dotted name or an alias (:data:`.units.METRIC_ALIASES`)."""
    key = METRIC_ALIASES.get(name, name)
    if key in candidates:
        return key
    offered = [*candidates, *(a for a, k in METRIC_ALIASES.items() if k in candidates)]
    raise UsageError("unknown metric", key=option, expected="a metric column or an alias ("
                     + ", ".join(METRIC_ALIASES) + ")",
                     found=name if key == name else f"{name} (= {key}, not in these results)",
                     suggestion=did_you_mean(name, offered))


def resolve_axis(name: str, table: SavedSweep, option: str) -> str:
    """An axis (or the hwconfig/workload label column) of ``table``."""
    cands = [*table.axes, "hwconfig", "workload"]
    if name in cands:
        return name
    raise UsageError("unknown axis", key=option, expected="one of the sweep's axes: "
                     + (", ".join(table.axes) or "none"), found=name,
                     suggestion=did_you_mean(name, cands))


def parse_where(items: Sequence[str], table: SavedSweep) -> list[tuple[str, Any]]:
    """``KEY=VALUE`` filters, KEY any column (or metric alias), VALUE parsed as a cell is."""
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError("a filter is not KEY=VALUE", key="--where", expected="KEY=VALUE",
                             found=item)
        key = METRIC_ALIASES.get(key, key)
        if key not in table.columns:
            raise UsageError("unknown column in a filter", key="--where", expected="a column of "
                             + table.source, found=key, suggestion=did_you_mean(key, table.columns))
        out.append((key, parse_value(value)))
    return out


def _same(a: Any, b: Any) -> bool:
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def filter_rows(rows: Sequence[dict[str, Any]], where: Sequence[tuple[str, Any]]) -> list[dict]:
    return [r for r in rows if all(_same(r.get(k), v) for k, v in where)]


def _order(v: Any) -> tuple:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _listing(values: Sequence[Any], n: int = 4) -> str:
    vals = sorted({_show(v) for v in values if v is not None})
    return ", ".join(vals[:n]) + (f" and {len(vals) - n} more" if len(vals) > n else "")


# -- Pareto --------------------------------------------------------------------------------------

def pareto_front(xs: Sequence[float | None], ys: Sequence[float | None],
                 maximize: tuple[bool, bool] = (False, False)) -> list[int]:
    """Indices (ascending) of the points no other point dominates.

    A point dominates another when it is at least as good in both coordinates and better in one
    (smaller, or larger where ``maximize`` says so). Identical points do not dominate each other:
    duplicates on the front are all kept. Points with a missing or non-finite coordinate are
    never on it."""
    sx, sy = (-1.0 if maximize[0] else 1.0), (-1.0 if maximize[1] else 1.0)
    pts = [(sx * float(x), sy * float(y), i) for i, (x, y) in enumerate(zip(xs, ys, strict=True))
           if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    front, best, last = [], math.inf, None
    for x, y, i in sorted(pts):
        if y < best:
            front.append(i)
            best, last = y, (x, y)
        elif (x, y) == last:
            front.append(i)
    return sorted(front)
