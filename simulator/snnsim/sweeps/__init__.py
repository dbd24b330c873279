"""Design-space sweeps: many points (a chip, its overrides, a trace) simulated and tabulated.

``snnsim.sweep(spec)`` (and the ``snnsim sweep`` verb) expand a spec (:mod:`.spec`), run the
points still to do in this process, a local process pool or a Dask cluster (:mod:`.execute`),
keep each finished point in the results folder as it finishes (:mod:`.store`), and return the
results table: one row per point, its swept values and its summary metrics.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import Point, SweepSpec, load_spec
from .store import columns_of, to_csv

__all__ = ["sweep", "load_spec", "SweepSpec", "Point", "SweepTable", "run_sweep"]


@dataclass
class SweepTable:
    """The results of a sweep: rows in point order, each a dict of column -> value (None = no
    value). ``to_pandas()`` needs pandas (not a dependency of snnsim)."""

    axes: list[str]
    rows: list[dict[str, Any]]
    files: list[Path] = field(default_factory=list)
    ran: int = 0  # points simulated by this call
    resumed: int = 0  # points found done in the results folder
    seconds: float = 0.0

    @property
    def columns(self) -> list[str]:
        return columns_of(self.rows, self.axes)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def column(self, name: str) -> list[Any]:
        if name not in self.columns:
            from ..errors import UsageError, did_you_mean

            raise UsageError("no such column", key=name, expected="a column of the results table", found=name,
                             suggestion=did_you_mean(name, self.columns))
        return [r.get(name) for r in self.rows]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]

    def to_csv(self) -> str:
        return to_csv(self.rows, self.axes)

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns)


def tasks(spec: SweepSpec, points: Sequence[Point]) -> Iterator[dict[str, Any]]:
    """The points as plain, picklable tasks for :func:`.worker.run_point`."""
    hw_files = {k: str(Path(v).resolve()) for k, v in spec.hwconfigs.items()}
    wl_files = {k: str(Path(v).resolve()) for k, v in spec.workloads.items()}
    for p in points:
        yield {"index": p.index, "hwconfig": p.hwconfig, "workload": p.workload,
               "hwconfig_file": hw_files[p.hwconfig], "workload_file": wl_files[p.workload],
               "overrides": [list(o) for o in p.overrides], "axes": dict(p.axes), "report": spec.reports}


def run_sweep(spec: SweepSpec, output: str | os.PathLike[str] | None = None, *, jobs: int = 1,
              scheduler: str | None = None, overwrite: bool = False,
              progress: Callable[[int, int, int], None] | None = None) -> SweepTable:
    """Run ``spec``'s points (those not already in ``output``) and return the table.

    ``output`` is the results folder (None: keep the results in memory only, nothing written);
    ``jobs`` local processes, or ``scheduler`` a Dask scheduler address; ``progress(done, total,
    failed)`` is called after each point. Everything is checked before anything is written: the
    folder (another sweep's results are refused unless ``overwrite``), the scheduler."""
    from ..errors import UsageError

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError("invalid number of jobs", key="-j", expected="an integer >= 1", found=repr(jobs))
    t0 = time.perf_counter()
    store = None
    done_rows: dict[int, dict[str, Any]] = {}
    if output is not None:
        from .store import ResultsFolder

        store = ResultsFolder(output, spec)
        store.check(overwrite)
        done_rows = store.done
    todo = [p for p in spec.points if p.index not in done_rows]
    client = None
    if scheduler is not None:
        from .execute import check_cluster, connect

        client = connect(scheduler)
    try:
        if client is not None:
            check_cluster(client, {str(Path(p).resolve()): spec.digests[str(p)]
                                   for p in [*spec.hwconfigs.values(), *spec.workloads.values()]})
        resumed = len(done_rows)
        rows = dict(done_rows)
        failed = sum(1 for r in rows.values() if r["status"] != "ok")
        if store is not None:
            store.open()

        def done(result: dict[str, Any]) -> None:
            nonlocal failed
            if store is not None:
                store.record(result)
            row = result["row"]
            rows[row["point"]] = row
            failed += row["status"] != "ok"
            if progress is not None:
                progress(len(rows), len(spec.points), failed)

        from . import execute

        work = tasks(spec, todo)
        try:
            if client is not None:
                execute.run_dask(client, work, done, spec.digest()[:12], len(todo))
            elif jobs > 1 and len(todo) > 1:
                from .worker import preload

                preload(sorted({str(Path(spec.workloads[p.workload]).resolve()) for p in todo}))
                execute.run_pool(work, jobs, done)
            else:
                execute.run_serial(work, done)
        finally:
            files = []
            if store is not None:
                if len(rows) == len(spec.points):
                    files = store.finish()
                else:
                    store.close()
    finally:
        if client is not None:
            client.close()
    return SweepTable(axes=list(spec.axes), rows=[rows[i] for i in sorted(rows)], files=files,
                      ran=len(rows) - resumed, resumed=resumed, seconds=time.perf_counter() - t0)


def sweep(spec: str | os.PathLike[str] | dict[str, Any], output: str | os.PathLike[str] | None = None, *,
          jobs: int = 1, scheduler: str | None = None, overwrite: bool = False, base: str | None = None,
          progress: bool = False) -> SweepTable:
    """Run a sweep from Python and return its results table (see :mod:`snnsim.sweep.spec` for the
    spec: a YAML file, or the same mapping with paths relative to ``base``, default the working
    directory). With ``output``, results are kept in that folder and a second call resumes."""
    s = load_spec(spec, base=base)
    bar = ProgressBar(len(s.points), stream=sys.stderr) if progress else None
    table = run_sweep(s, output, jobs=jobs, scheduler=scheduler, overwrite=overwrite, progress=bar)
    if bar is not None:
        bar.close()
    return table


class ProgressBar:
    """Points done, rate and time left on one terminal line, redrawn at most ten times a second."""

    def __init__(self, total: int, stream=None, width: int = 28) -> None:
        self.total, self.stream, self.width = total, stream or sys.stderr, width
        self.start = time.perf_counter()
        self.first: int | None = None
        self.last_draw = 0.0
        self.shown = False

    def __call__(self, done: int, total: int, failed: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = done - 1  # points found done before this run do not count for the rate
        if now - self.last_draw < 0.1 and done < total:
            return
        self.last_draw = now
        ran = done - self.first
        rate = ran / max(now - self.start, 1e-9)
        left = (total - done) / rate if rate > 0 else float("inf")
        fill = int(self.width * done / max(total, 1))
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left != float("inf") else "--:--:--"
        fail = f"  {failed} failed" if failed else ""
        self.stream.write(f"\r\033[K[{'#' * fill}{'.' * (self.width - fill)}] {done}/{total} points  "
                          f"{rate:.1f}/s  left {eta}{fail}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
