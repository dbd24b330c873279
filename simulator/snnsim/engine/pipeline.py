"""The event-driven engine: a chain of stages joined by bounded FIFOs, in integer picoseconds.

Each stage executes its transactions in order. Transaction k of a stage may start when

* the stage is free (its previous transaction has finished *and* pushed all its output),
* its release time has come (e.g. a frame trigger), and
* the input FIFO holds at least ``consume[k]`` tokens, which it then takes.

It is busy for ``service_ps[k]``, then pushes ``produce[k]`` tokens into the output FIFO one by
one as space allows; a full FIFO stalls it (blocking after service). The last stage's output
is unbounded. Time then jumps to the next event: a service completion or a release. A stage has
at most one pending event, so the event calendar is an array indexed by stage, and finding the
next event is a scan over the few stages: cheaper than a heap or a time wheel at this size, and
the cost of a run grows with the number of transactions, never with idle time.

Per stage the engine counts busy, stalled (finished but blocked by a full FIFO) and idle time
(waiting for input or a release), and stamps every transaction's start, end of service and done
time. ``snnsim.reference.pipeline`` is the tick-by-tick model it must agree with exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .jit import njit

NEVER = np.iinfo(np.int64).max

# phases of a stage
_IDLE = 0
_BUSY = 1
_PUSHING = 2
_DONE = 3


@dataclass
class StageSpec:
    """The transactions of one stage, in execution order (all times in integer ps)."""

    name: str
    service_ps: np.ndarray
    consume: np.ndarray
    produce: np.ndarray
    release_ps: np.ndarray

    @classmethod
    def make(cls, name: str, service_ps, consume=None, produce=None, release_ps=None) -> StageSpec:
        s = np.ascontiguousarray(service_ps, dtype=np.int64)
        n = s.shape[0]

        def arr(a, default):
            return np.full(n, default, np.int64) if a is None else np.ascontiguousarray(a, dtype=np.int64)

        return cls(name, s, arr(consume, 0), arr(produce, 0), arr(release_ps, 0))


@dataclass
class PipelineResult:
    """Per-transaction stamps and per-stage totals (ps) of one pipeline run."""

    names: list[str]
    start_ps: list[np.ndarray]
    end_ps: list[np.ndarray]
    done_ps: list[np.ndarray]
    busy_ps: np.ndarray
    stall_ps: np.ndarray
    idle_ps: np.ndarray
    makespan_ps: int


@njit(cache=True)
def _run(offsets, service, consume, produce, release, capacity, start, end, done):
    n_st = offsets.shape[0] - 1
    idx = np.zeros(n_st, np.int64)
    for s in range(n_st):
        idx[s] = offsets[s]
    phase = np.zeros(n_st, np.int64)
    remaining = np.zeros(n_st, np.int64)
    level = np.zeros(n_st, np.int64)  # level[s] = tokens in the FIFO after stage s
    event = np.full(n_st, NEVER, np.int64)
    busy = np.zeros(n_st, np.int64)
    stall = np.zeros(n_st, np.int64)
    now = np.int64(0)
    for s in range(n_st):
        if idx[s] == offsets[s + 1]:
            phase[s] = _DONE
    while True:
        # settle: start, push and wake at time `now` until nothing changes
        changed = True
        while changed:
            changed = False
            for s in range(n_st):
                if phase[s] == _PUSHING:
                    if s == n_st - 1:
                        room = remaining[s]
                    else:
                        room = capacity[s] - level[s]
                    m = min(room, remaining[s])
                    if m > 0:
                        level[s] += m
                        remaining[s] -= m
                        changed = True
                    if remaining[s] == 0:
                        k = idx[s]
                        done[k] = now
                        stall[s] += now - end[k]
                        idx[s] = k + 1
                        phase[s] = _DONE if idx[s] == offsets[s + 1] else _IDLE
                        changed = True
                if phase[s] == _IDLE:
                    k = idx[s]
                    if release[k] > now:
                        event[s] = release[k]
                        continue
                    avail = level[s - 1] if s > 0 else NEVER
                    if avail >= consume[k]:
                        if s > 0:
                            level[s - 1] -= consume[k]
                        start[k] = now
                        end[k] = now + service[k]
                        busy[s] += service[k]
                        phase[s] = _BUSY
                        event[s] = end[k]
                        changed = True
                    else:
                        event[s] = NEVER
        # next event
        nxt = NEVER
        who = -1
        for s in range(n_st):
            if phase[s] == _BUSY or phase[s] == _IDLE:
                if event[s] < nxt:
                    nxt = event[s]
                    who = s
        if who < 0:
            break
        now = nxt
        for s in range(n_st):
            if phase[s] == _BUSY and event[s] == now:
                phase[s] = _PUSHING
                remaining[s] = produce[idx[s]]
                event[s] = NEVER
            elif phase[s] == _IDLE and event[s] == now:
                event[s] = NEVER
    ok = 1
    for s in range(n_st):
        if phase[s] != _DONE:
            ok = 0
    return busy, stall, ok


def run_pipeline(stages: list[StageSpec], capacity: list[int]) -> PipelineResult:
    """Run a chain of stages joined by FIFOs of the given capacities (tokens).

    Raises ``RuntimeError`` if the pipeline deadlocks (a consumer waits for tokens that are never
    produced); callers build consistent token counts, so this means a bug, not bad input.
    """
    if len(capacity) != len(stages) - 1:
        raise ValueError("one capacity per FIFO between stages is needed")
    if any(c < 1 for c in capacity):
        raise ValueError("FIFO capacities must be >= 1")
    offsets = np.zeros(len(stages) + 1, np.int64)
    for i, st in enumerate(stages):
        offsets[i + 1] = offsets[i] + st.service_ps.shape[0]
    cat = np.concatenate
    service = cat([s.service_ps for s in stages]) if stages else np.zeros(0, np.int64)
    consume = cat([s.consume for s in stages])
    produce = cat([s.produce for s in stages])
    release = cat([s.release_ps for s in stages])
    if np.any(service < 0) or np.any(consume < 0) or np.any(produce < 0) or np.any(release < 0):
        raise ValueError("service times, token counts and releases must be >= 0")
    n = offsets[-1]
    start = np.full(n, -1, np.int64)
    end = np.full(n, -1, np.int64)
    done = np.full(n, -1, np.int64)
    cap = np.asarray(list(capacity) + [0], np.int64)
    busy, stall, ok = _run(offsets, service, consume, produce, release, cap, start, end, done)
    if not ok:
        raise RuntimeError("pipeline deadlock: a stage waits for tokens that are never produced")
    makespan = int(done.max()) if n else 0
    idle = np.asarray([makespan, ] * len(stages), np.int64) - busy - stall
    sl = [slice(offsets[i], offsets[i + 1]) for i in range(len(stages))]
    return PipelineResult(
        names=[s.name for s in stages],
        start_ps=[start[x] for x in sl], end_ps=[end[x] for x in sl], done_ps=[done[x] for x in sl],
        busy_ps=busy, stall_ps=stall, idle_ps=idle, makespan_ps=makespan,
    )
