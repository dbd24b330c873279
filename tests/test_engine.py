"""The FIFO pipeline engine on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from snnsim.engine.pipeline import StageSpec, run_pipeline


def test_backpressure_stalls_the_producer():
    a = StageSpec.make("a", [10, 10, 10], produce=[1, 1, 1])
    b = StageSpec.make("b", [25, 25, 25], consume=[1, 1, 1], produce=[1, 1, 1])
    c = StageSpec.make("c", [5, 5, 5], consume=[1, 1, 1])
    r = run_pipeline([a, b, c], [1, 1])
    assert r.start_ps[0].tolist() == [0, 10, 20]
    assert r.done_ps[0].tolist() == [10, 20, 35]  # third row waits for b to take the second
    assert r.start_ps[1].tolist() == [10, 35, 60]
    assert r.done_ps[2].tolist() == [40, 65, 90]
    assert r.busy_ps.tolist() == [30, 75, 15]
    assert r.stall_ps.tolist() == [5, 0, 0]
    assert r.makespan_ps == 90
    assert (r.busy_ps + r.stall_ps + r.idle_ps == 90).all()


def test_release_times_and_multi_token_pushes():
    a = StageSpec.make("a", [4, 4], produce=[3, 3], release_ps=[0, 100])
    b = StageSpec.make("b", [2] * 6, consume=[1] * 6)
    r = run_pipeline([a, b], [2])
    # first row pushes 2 at t=4, the third token when b takes one at t=4
    assert r.done_ps[0].tolist() == [4, 104]
    assert r.start_ps[1].tolist() == [4, 6, 8, 104, 106, 108]
    assert r.stall_ps[0] == 0


def test_deadlock_is_detected():
    a = StageSpec.make("a", [1], produce=[1])
    b = StageSpec.make("b", [1, 1], consume=[1, 1])
    with pytest.raises(RuntimeError):
        run_pipeline([a, b], [1])


def test_empty_stages():
    r = run_pipeline([StageSpec.make("a", np.zeros(0, np.int64))], [])
    assert r.makespan_ps == 0
