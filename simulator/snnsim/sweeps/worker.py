"""Running one sweep point, in whatever process it lands: this one, a pool worker, a Dask worker.

A task is a plain dict (picklable, and small: file paths, never arrays). Each process keeps the
hwconfig files it has parsed and the traces it has loaded, so a trace is read once per process
and reused by every point that replays it (a loaded trace caches what it derives, read-only).
The result is the point's row of the results table: its summary, flattened to dotted keys,
or ``status: failed`` with the error's message; a point never raises.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from typing import Any

from ..report.report import flatten

#: Traces kept loaded per process; the least recently used is dropped beyond this (a sweep over
#: many traces must not hold them all).
MAX_CACHED_TRACES = 8

_HWCONFIGS: dict[str, Any] = {}
_TRACES: OrderedDict[str, Any] = OrderedDict()


def _hwconfig(path: str) -> Any:
    from ..hwconfig import read_yaml

    if path not in _HWCONFIGS:
        _HWCONFIGS[path] = read_yaml(path)
    return _HWCONFIGS[path]


def _trace(path: str) -> Any:
    from ..workload.trace import load_workload

    wl = _TRACES.pop(path, None)
    if wl is None:
        wl = load_workload(path)
    _TRACES[path] = wl
    while len(_TRACES) > MAX_CACHED_TRACES:
        _TRACES.popitem(last=False)
    return wl


def preload(paths: list[str]) -> None:
    """Load traces into this process's cache (before forking workers that inherit it)."""
    for p in paths[:MAX_CACHED_TRACES]:
        _trace(p)


def _message(e: BaseException) -> str:
    from ..errors import SnnsimError

    if isinstance(e, SnnsimError):
        return " | ".join(line.strip() for line in e.render().splitlines())
    return f"internal error {type(e).__name__}: {e}"


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Simulate one point; return ``{"row": {...}, "report": json text or None}``."""
    from ..hwconfig import load_hardware
    from ..simulation import simulate

    row: dict[str, Any] = {"point": task["index"], "status": "ok", "error": None,
                           "hwconfig": task["hwconfig"], "workload": task["workload"]}
    row.update(task["axes"])
    report_text = None
    try:
        path, overrides = task["hwconfig_file"], [tuple(o) for o in task["overrides"]]
        raw = _hwconfig(path)
        hw = load_hardware(raw, overrides, source=path) if isinstance(raw, dict) else load_hardware(path, overrides)
        report = simulate(hw, _trace(task["workload_file"]))
        metrics = flatten(report.summary)
        bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"non-finite value of {bad[0]}")
        row.update(metrics)
        if task.get("report"):
            from ..report.writers import to_json

            report_text = to_json(report)
    except MemoryError:
        raise  # the process is in trouble: let the executor retry the point elsewhere
    except Exception as e:  # noqa: BLE001 - a point's failure is data, recorded with its message
        row["status"] = "failed"
        row["error"] = _message(e)
    return {"row": row, "report": report_text}


def check_files(files: dict[str, str]) -> dict[str, str]:
    """On a worker: which of ``files`` (path -> sha256) this process cannot see as they are
    (missing, or other bytes); path -> what is wrong. Used before a Dask sweep starts."""
    from ..fileio import file_sha256

    bad = {}
    for path, digest in files.items():
        if not os.path.isfile(path):
            bad[path] = "not found"
        elif file_sha256(path) != digest:
            bad[path] = "other bytes than on the client"
    return bad


def row_json(row: dict[str, Any]) -> str:
    """One results line: compact JSON, keys in the row's order, floats as shortest round-trip."""
    return json.dumps(row, separators=(",", ":"), allow_nan=False)
