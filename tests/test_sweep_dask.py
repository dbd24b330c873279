"""The Dask executor on a real ``dask.distributed`` cluster: a scheduler and two worker processes
on the loopback address, started and shut down by each test; nothing is mocked."""

from __future__ import annotations

import os
import signal

import pytest
import yaml
from snnsim.sweeps import load_spec, run_sweep
from snnsim.sweeps.store import JOURNAL, TABLE

distributed = pytest.importorskip("distributed")

SPEC = {"hwconfig": "p2m.yaml", "workload": "tiny.npz",
        "axes": [{"link.lanes": [1, 2, 4]}, {"core.vector_width": [1, 2, 4, 8]},
                 {"core.clock_mhz": [100, 200, 400, 800]}, {"sensor.p2m.out_channels": [8, 16]}]}


@pytest.fixture
def cluster():
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                 dashboard_address=None, silence_logs=50)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def spec(tmp_path, tiny_trace, tiny_hw_files):
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return load_spec(p)


def test_dask_equals_local_bit_for_bit(tmp_path, spec, cluster):
    run_sweep(spec, tmp_path / "one")
    run_sweep(spec, tmp_path / "two", jobs=2)
    t = run_sweep(spec, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert len(t) == 96 and len(t.failed) == 48  # out_channels 16 does not fit the trace: recorded
    for name in (TABLE, JOURNAL):
        one = (tmp_path / "one" / name).read_bytes()
        assert (tmp_path / "two" / name).read_bytes() == one
        assert (tmp_path / "dask" / name).read_bytes() == one


def test_a_dying_worker_is_retried(tmp_path, spec, cluster):
    run_sweep(spec, tmp_path / "ref")
    with distributed.Client(cluster.scheduler_address) as client:
        pids = sorted(client.run(os.getpid).values())
    killed = []

    def progress(done: int, total: int, failed: int) -> None:
        if done == 3 and not killed:  # a worker dies with points in flight
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    t = run_sweep(spec, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=progress)
    assert killed and len(t) == 96
    assert (tmp_path / "dask" / TABLE).read_bytes() == (tmp_path / "ref" / TABLE).read_bytes()
    with distributed.Client(cluster.scheduler_address) as client:
        assert pids[0] not in client.run(os.getpid).values()  # that worker really died


def test_workers_must_see_the_inputs(tmp_path, spec, cluster):
    from snnsim.errors import UsageError

    # a file the workers would read with other bytes than the client hashed
    spec.digests[next(iter(spec.digests))] = "0" * 64
    with pytest.raises(UsageError, match="cannot read the sweep's inputs"):
        run_sweep(spec, tmp_path / "r", scheduler=cluster.scheduler_address)
    assert not (tmp_path / "r").exists()
