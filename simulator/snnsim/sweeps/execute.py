"""Where the points run: in this process, in a local process pool, or on a Dask cluster.

Each executor takes the tasks still to do and calls ``done(result)`` in this process as each
finishes, in whatever order they finish; the results folder keeps them, so the executors need
not agree on order, only on values (a point's result depends on nothing but its task). At most a
few tasks per worker are in flight at a time, so memory does not grow with the sweep's size.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import UsageError
from .worker import run_point

Done = Callable[[dict[str, Any]], None]
#: Tasks in flight per worker: enough to keep every worker busy while results come back.
IN_FLIGHT_PER_WORKER = 4
#: Times a point is started again after the process running it died, before it is recorded as
#: failed (a point that kills its worker every time, e.g. by exhausting memory).
MAX_ATTEMPTS = 3


def _dead(task: dict[str, Any], why: str) -> dict[str, Any]:
    row = {"point": task["index"], "status": "failed",
           "error": f"{why} ({MAX_ATTEMPTS} attempts)", "hwconfig": task["hwconfig"], "workload": task["workload"]}
    row.update(task["axes"])
    return {"row": row, "report": None}


def run_serial(tasks: Iterable[dict[str, Any]], done: Done) -> None:
    for task in tasks:
        done(run_point(task))


def _context():
    # fork: the workers inherit the traces this process loaded and the compiled kernels; where
    # fork is unsafe or missing (macOS, Windows), spawn (each worker loads them once)
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def run_pool(tasks: Iterable[dict[str, Any]], jobs: int, done: Done) -> None:
    """A local pool of ``jobs`` processes; a worker that dies is replaced and its points redone."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    todo: Iterator[dict[str, Any]] = iter(tasks)
    retry: list[dict[str, Any]] = []
    attempts: dict[int, int] = {}
    window = jobs * IN_FLIGHT_PER_WORKER
    while True:
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_context())
        running: dict[Any, dict[str, Any]] = {}
        broken = False
        try:
            while True:
                while len(running) < window:
                    task = retry.pop() if retry else next(todo, None)
                    if task is None:
                        break
                    running[pool.submit(run_point, task)] = task
                if not running:
                    return
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in sorted(finished, key=lambda f: running[f]["index"]):
                    task = running.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        _again(task, attempts, retry, done)
                        continue
                    done(result)
                if broken:
                    break
        finally:
            if broken:
                for fut, task in running.items():  # everything in flight went down with the pool
                    fut.cancel()
                    _again(task, attempts, retry, done)
                running.clear()
            pool.shutdown(wait=True, cancel_futures=True)


def _again(task: dict[str, Any], attempts: dict[int, int], retry: list[dict[str, Any]], done: Done) -> None:
    n = attempts[task["index"]] = attempts.get(task["index"], 0) + 1
    if n >= MAX_ATTEMPTS:
        done(_dead(task, "the worker process died running this point"))
    else:
        retry.append(task)


def connect(address: str, timeout: float = 5.0):
    """A ``dask.distributed`` client of the scheduler at ``address``; a clear error when the
    extra is not installed or the scheduler does not answer."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("the Dask executor needs dask.distributed", key="--scheduler",
                         expected="dask[distributed] installed", found="not installed",
                         suggestion='pip install "snnsim[dask]", or run with -j N on this machine') from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageError("cannot reach the Dask scheduler", key="--scheduler",
                         expected="the address of a running scheduler, e.g. tcp://10.0.0.5:8786",
                         found=f"{address}: {str(e).splitlines()[0][:150] if str(e) else type(e).__name__}",
                         suggestion="start one with `dask scheduler` and `dask worker ADDRESS`, "
                                    "or check the address and port") from None


def check_cluster(client, files: dict[str, str]) -> None:
    """Every worker must see the sweep's input files, with the same bytes (a shared file system)."""
    from .worker import check_files

    try:
        answers = client.run(check_files, files)
    except Exception as e:  # noqa: BLE001 - any failure of the cluster is one message
        raise UsageError("the Dask workers did not answer", key="--scheduler", expected="running workers",
                         found=str(e)[:150]) from None
    if not answers:
        raise UsageError("the Dask cluster has no workers", key="--scheduler", expected="at least one worker",
                         found="none", suggestion="start workers with `dask worker ADDRESS`")
    for worker, bad in sorted(answers.items()):
        if bad:
            path, why = sorted(bad.items())[0]
            raise UsageError("a Dask worker cannot read the sweep's inputs", file=path, key="--scheduler",
                             expected="the same file on every worker (a shared file system)",
                             found=f"{worker}: {why}", suggestion="put the traces and hwconfigs where every "
                             "worker sees them under the same path")


def run_points(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Several points in one task: on a cluster, a task costs a round trip to the scheduler
    (milliseconds), as much as a small point's simulation."""
    return [run_point(t) for t in tasks]


def run_dask(client, tasks: Iterable[dict[str, Any]], done: Done, tag: str, total: int) -> None:
    """The tasks on a Dask cluster, in chunks of a few points. A worker that dies is handled by
    the scheduler: its chunks are started again on the others (``distributed.scheduler.
    allowed-failures`` times); a chunk that keeps killing workers is split, and a point that
    still does is recorded as failed."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    from .worker import preload

    todo = iter(tasks)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    # chunks small enough that every worker gets several (and a retry redoes little), large
    # enough that the round trips do not dominate
    chunk = max(1, min(16, total // (n_workers * 16)))
    window = n_workers * IN_FLIGHT_PER_WORKER
    by_key: dict[str, list[dict[str, Any]]] = {}

    def submit(batch: list[dict[str, Any]]):
        key = f"snnsim-points-{tag}-{batch[0]['index']}-{len(batch)}"
        by_key[key] = batch
        return client.submit(run_points, batch, key=key, pure=False, retries=MAX_ATTEMPTS - 1)

    def take(n: int) -> list[dict[str, Any]]:
        out = []
        for t in todo:
            out.append(t)
            if len(out) == n:
                break
        return out

    batches = [b for b in (take(chunk) for _ in range(window)) if b]
    if not batches:
        return
    # every worker loads the first chunks' traces at once, rather than each on its first point
    client.run(preload, sorted({t["workload_file"] for b in batches for t in b}))
    first = [submit(b) for b in batches]
    pending = as_completed(first, loop=client.loop)
    for fut in pending:
        batch = by_key.pop(fut.key)
        try:
            results = fut.result()
        except KilledWorker:
            if len(batch) > 1:  # find the point that kills: each alone
                for t in batch:
                    pending.add(submit([t]))
                fut.release()
                continue
            results = [_dead(batch[0], "Dask workers died running this point")]
        for r in results:
            done(r)
        fut.release()
        nxt = take(chunk)
        if nxt:
            pending.add(submit(nxt))
