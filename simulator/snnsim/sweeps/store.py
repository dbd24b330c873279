"""A sweep's results folder: what was asked, what is done, and the final table.

    DIR/sweep.json      the sweep's fingerprint and description (written once, atomically)
    DIR/results.jsonl   one JSON line per finished point, appended as each finishes
    DIR/results.csv     the tidy table, one row per point in point order (when all are done)
    DIR/reports/        a full report per point, when the spec asks (reports: true)

Resuming is reading ``results.jsonl``: each line is written whole with one ``write`` call on a
file opened for appending, by the one process that coordinates the sweep, and a line counts only
once it ends with its newline. A sweep killed at any moment leaves complete lines and, at worst,
one unfinished last line, which is cut off when the sweep starts again; so no point is lost, none
is done twice and no row is torn. When every point is done, ``results.jsonl`` is rewritten in point
order and ``results.csv`` written from it (both atomically), so that the files are the same bytes
whatever the order points finished in (``-j 1``, ``-j 2``, a cluster).

A folder that holds another sweep's results is refused unless the caller says to start over.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..report.tables import FIXED_COLUMNS
from .spec import SweepSpec

MANIFEST, JOURNAL, TABLE, REPORTS = "sweep.json", "results.jsonl", "results.csv", "reports"
SCHEMA_NAME, SCHEMA_VERSION = "snnsim-sweep", "1.0"
MAX_MANIFEST_BYTES = 256 << 20
MAX_LINE_BYTES = 16 << 20  # a row is a few kilobytes


def report_name(index: int) -> str:
    return f"point-{index:07d}.json"


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise UsageError(f"{what} too large", file=str(path), expected=f"at most {limit} bytes",
                         found=f"{size} bytes")
    with open(path, "rb") as fh:
        return fh.read(limit + 1)


def _changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two sweep descriptions, in a few words."""
    out = []
    for key in ("hwconfigs", "workloads"):
        a, b = old.get(key, {}), new.get(key, {})
        if set(a) != set(b):
            out.append(f"{key} {sorted(a)} -> {sorted(b)}")
        else:
            out += [f"{b[k]['file']} changed" for k in b if a[k] != b[k]]
    if old.get("axes") != new.get("axes"):
        out.append(f"axes {old.get('axes')} -> {new.get('axes')}")
    n_old, n_new = len(old.get("points", [])), len(new.get("points", []))
    if n_old != n_new:
        out.append(f"{n_old} points -> {n_new}")
    elif old.get("points") != new.get("points"):
        out.append("the points' values")
    if old.get("reports") != new.get("reports"):
        out.append(f"reports {old.get('reports')} -> {new.get('reports')}")
    return "; ".join(out) or "the sweep's fingerprint"


class ResultsFolder:
    """The results folder of one sweep; see the module's docstring for its files."""

    def __init__(self, folder: str | os.PathLike[str], spec: SweepSpec) -> None:
        self.folder = Path(folder)
        self.spec = spec
        self.digest = spec.digest()
        self.done: dict[int, dict[str, Any]] = {}
        self.resumed = 0
        self._fresh = True
        self._discard = False
        self._torn_at: int | None = None
        self._fd: int | None = None

    # -- before anything is written ------------------------------------------------------------
    def check(self, overwrite: bool) -> None:
        """Check the folder and read what is done; write nothing. A folder of another sweep (or of
        unknown results) is refused unless ``overwrite``, which then starts over."""
        from ..fileio import check_output

        d = self.folder
        exists = check_output(d, folder=True, inputs=[*map(str, self.spec.hwconfigs.values()),
                                                      *map(str, self.spec.workloads.values())])
        if not exists:
            return
        ours = [n for n in (MANIFEST, JOURNAL, TABLE, REPORTS) if os.path.lexists(d / n)]
        if not ours:
            return
        manifest = d / MANIFEST
        why = None
        if not manifest.is_file():
            why = f"results without {MANIFEST} ({', '.join(ours)})"
        else:
            try:
                old = json.loads(_read_bounded(manifest, MAX_MANIFEST_BYTES, "sweep manifest"))
            except (ValueError, OSError) as e:
                raise UsageError("unreadable sweep manifest", file=str(manifest), expected="a sweep.json file",
                                 found=str(e)[:200], suggestion="pass --overwrite to start the sweep over") from None
            if not isinstance(old, dict) or old.get("schema") != SCHEMA_NAME:
                why = f"{MANIFEST} is not a sweep manifest"
            elif old.get("digest") != self.digest:
                why = "a different sweep: " + _changes(old.get("sweep", {}), self.spec.describe())
        if why is not None:
            if not overwrite:
                raise UsageError("the results folder holds other results", file=str(d),
                                 expected="an empty folder, or the results of this same sweep to resume",
                                 found=why, suggestion="choose another -o DIR, or pass --overwrite to discard "
                                 "those results and start over")
            self._discard = True
            return
        self._fresh = False
        self._read_journal()

    def _read_journal(self) -> None:
        path = self.folder / JOURNAL
        if not path.exists():
            return
        by_index = {p.index: p for p in self.spec.points}
        offset, n = 0, 0
        with open(path, "rb") as fh:  # line by line, each bounded: the journal of a long sweep is large
            while line := fh.readline(MAX_LINE_BYTES + 1):
                n += 1
                if not line.endswith(b"\n"):
                    if len(line) > MAX_LINE_BYTES:
                        raise UsageError("results journal line too long", file=str(path), key=f"line {n}",
                                         expected=f"a line of at most {MAX_LINE_BYTES} bytes",
                                         found="a longer one", suggestion="pass --overwrite to start the sweep over")
                    self._torn_at = offset  # the line being written when the sweep stopped
                    break
                self._keep(line, n, by_index, path)
                offset += len(line)
        self.resumed = len(self.done)

    def _keep(self, line: bytes, n: int, by_index: dict[int, Any], path: Path) -> None:
        """One journal line, checked against the sweep's point of its index."""
        try:
            row = json.loads(line)
            idx = row["point"]
            point = by_index[idx]
            ok = (row["hwconfig"] == point.hwconfig and row["workload"] == point.workload
                  and all(row.get(k) == v for k, v in point.axes))
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise UsageError("results journal does not match the sweep", file=str(path), key=f"line {n}",
                             expected="one line per point of this sweep", found=line[:120].decode("utf-8", "replace"),
                             suggestion="pass --overwrite to start the sweep over")
        self.done.setdefault(idx, row)

    # -- writing -------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the folder and the manifest (a new sweep), cut off a torn last line, and open the
        journal for appending."""
        from ..fileio import make_dirs, writing

        d = self.folder
        with writing(d):
            make_dirs(d)
        if self._discard:
            self._remove_ours()
        if self._fresh:
            doc = {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "name": self.spec.name,
                   "spec": self.spec.source, "digest": self.digest, "axes": self.spec.axes,
                   "points": len(self.spec.points), "sweep": self.spec.describe()}
            self._atomic(d / MANIFEST, json.dumps(doc, indent=1) + "\n")
        journal = d / JOURNAL
        with writing(journal):
            if self._torn_at is not None:
                os.truncate(journal, self._torn_at)
            self._fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.spec.reports:
            with writing(d / REPORTS):
                make_dirs(d / REPORTS)

    def _remove_ours(self) -> None:
        d = self.folder
        for name in (MANIFEST, JOURNAL, TABLE):
            if os.path.lexists(d / name) and not (d / name).is_dir():
                (d / name).unlink()
        rep = d / REPORTS
        if rep.is_dir():
            for f in rep.iterdir():
                if f.name.startswith("point-") and f.name.endswith(".json"):
                    f.unlink()

    def _atomic(self, path: Path, text: str) -> None:
        from ..fileio import atomic_write, writing

        data = text.encode("utf-8")

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                fh.write(data)

        with writing(path):
            atomic_write(path, write)

    def record(self, result: dict[str, Any]) -> None:
        """Keep one finished point: its report first (atomically), then its line (one write)."""
        from .worker import row_json

        row = result["row"]
        if result.get("report") is not None:
            self._atomic(self.folder / REPORTS / report_name(row["point"]), result["report"])
        line = (row_json(row) + "\n").encode("utf-8")
        assert self._fd is not None
        written = os.write(self._fd, line)
        while written < len(line):  # a short write (a signal, a full pipe) continues the line
            written += os.write(self._fd, line[written:])
        self.done[row["point"]] = row

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self) -> list[Path]:
        """All points done: the journal in point order and the CSV table, both atomically."""
        self.close()
        rows = [self.done[i] for i in sorted(self.done)]
        self._atomic(self.folder / JOURNAL, "".join(_line(r) for r in rows))
        self._atomic(self.folder / TABLE, to_csv(rows, self.spec.axes))
        return [self.folder / TABLE, self.folder / JOURNAL]


def _line(row: dict[str, Any]) -> str:
    from .worker import row_json

    return row_json(row) + "\n"


def columns_of(rows: list[dict[str, Any]], axes: list[str]) -> list[str]:
    """The table's columns: point, status, error, hwconfig, workload, the axes, then every metric
    in the order the rows first name it."""
    cols = [*FIXED_COLUMNS, *axes]
    seen = set(cols)
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def to_csv(rows: list[dict[str, Any]], axes: list[str]) -> str:
    """The tidy table as CSV text: a header, then one row per point (empty = no value)."""
    cols = columns_of(rows, axes)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue()
