"""Tick-by-tick reference model of the FIFO pipeline (for tests on small inputs only).

Time advances by a fixed tick: the greatest common divisor of every service and release time
(1 if they are all zero), so every event of the run falls on a tick. At each tick every stage
is examined in plain Python and single elementary actions are applied until none applies:

* a stage whose service ends now becomes ready to push its produced tokens;
* a stage with tokens to push moves one token into its output FIFO if the FIFO has room (the
  last stage's output is unbounded);
* a stage that has pushed all its tokens finishes the transaction (stamped "done" now) and
  moves on to its next one;
* a free stage starts its next transaction if the release time has come and its input FIFO holds
  the tokens the transaction consumes (the first stage has no input FIFO); it takes them now.

Repeating until nothing applies resolves all same-instant interactions: a consumer taking tokens
frees room for a blocked producer, a token pushed now can be consumed now, a zero-time service
ends at the tick it starts. Then the interval up to the next tick is booked to each stage by
what it is doing: serving (busy), holding produced tokens it cannot push (stall), or anything
else (idle: waiting for input or a release, or finished).
"""

from __future__ import annotations

import math

import numpy as np

from ..engine.pipeline import PipelineResult, StageSpec

# what a stage is doing
_FREE = "free"  # waiting to start its next transaction
_SERVING = "serving"
_PUSHING = "pushing"  # service over, tokens still to move into the output FIFO
_FINISHED = "finished"  # no transactions left


class _Stage:
    """A stage's transactions (plain Python ints) and its progress through them."""

    def __init__(self, spec: StageSpec):
        self.name = spec.name
        self.service = [int(x) for x in spec.service_ps]
        self.consume = [int(x) for x in spec.consume]
        self.produce = [int(x) for x in spec.produce]
        self.release = [int(x) for x in spec.release_ps]
        n = len(self.service)
        self.start = [-1] * n
        self.end = [-1] * n
        self.done = [-1] * n
        self.current = 0  # index of the transaction being (or about to be) executed
        self.state = _FREE if n else _FINISHED
        self.to_push = 0
        self.busy = 0
        self.stall = 0
        self.idle = 0


def _tick_length(stages: list[_Stage]) -> int:
    g = 0
    for st in stages:
        for x in st.service + st.release:
            g = math.gcd(g, x)
    return g if g > 0 else 1


def run_pipeline_reference(stages: list[StageSpec], capacity: list[int]) -> PipelineResult:
    """Same contract as :func:`snnsim.engine.pipeline.run_pipeline`, simulated tick by tick."""
    if len(capacity) != len(stages) - 1:
        raise ValueError("one capacity per FIFO between stages is needed")
    if any(c < 1 for c in capacity):
        raise ValueError("FIFO capacities must be >= 1")
    chain = [_Stage(spec) for spec in stages]
    for st in chain:
        if any(x < 0 for x in st.service + st.consume + st.produce + st.release):
            raise ValueError("service times, token counts and releases must be >= 0")
    caps = [int(c) for c in capacity]
    fifo = [0] * len(caps)  # fifo[i]: tokens between stage i and stage i + 1
    tick = _tick_length(chain)

    def one_action(now: int) -> bool:
        """Apply one elementary action possible at time ``now``; False if there is none."""
        for i, st in enumerate(chain):
            k = st.current
            if st.state == _SERVING and st.end[k] == now:
                st.state = _PUSHING
                st.to_push = st.produce[k]
                return True
            if st.state == _PUSHING:
                if st.to_push == 0:
                    st.done[k] = now
                    st.current += 1
                    st.state = _FREE if st.current < len(st.service) else _FINISHED
                    return True
                is_last = i == len(chain) - 1
                if is_last or fifo[i] < caps[i]:
                    if not is_last:
                        fifo[i] += 1
                    st.to_push -= 1
                    return True
            if st.state == _FREE and st.release[k] <= now:
                has_input = i == 0 or fifo[i - 1] >= st.consume[k]
                if has_input:
                    if i > 0:
                        fifo[i - 1] -= st.consume[k]
                    st.start[k] = now
                    st.end[k] = now + st.service[k]
                    st.state = _SERVING
                    return True
        return False

    now = 0
    while True:
        while one_action(now):
            pass
        if all(st.state == _FINISHED for st in chain):
            break
        # something must still be able to happen later: a service ending or a release coming
        waiting_on_time = any(
            st.state == _SERVING or (st.state == _FREE and st.release[st.current] > now) for st in chain
        )
        if not waiting_on_time:
            raise RuntimeError("pipeline deadlock: a stage waits for tokens that are never produced")
        # book the interval [now, now + tick) to each stage
        for st in chain:
            if st.state == _SERVING:
                st.busy += tick
            elif st.state == _PUSHING:
                st.stall += tick
            else:
                st.idle += tick
        now += tick

    makespan = max((d for st in chain for d in st.done), default=0)
    if makespan != now and any(st.done for st in chain):  # pragma: no cover - model self-check
        raise AssertionError("the last transaction did not finish at the last tick")

    def arr(values: list[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    return PipelineResult(
        names=[st.name for st in chain],
        start_ps=[arr(st.start) for st in chain],
        end_ps=[arr(st.end) for st in chain],
        done_ps=[arr(st.done) for st in chain],
        busy_ps=arr([st.busy for st in chain]),
        stall_ps=arr([st.stall for st in chain]),
        idle_ps=arr([st.idle for st in chain]),
        makespan_ps=int(makespan),
    )
