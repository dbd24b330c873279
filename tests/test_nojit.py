"""The Numba kernels stay correct as plain Python (NUMBA_DISABLE_JIT=1): same report, same bits."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from snnsim.workload.trace import save_workload

from .conftest import TINY_BASE, TINY_P2M, make_tiny_workload

CHILD = """
import sys
from snnsim import load_hardware, load_workload, simulate
from snnsim.report.writers import to_json
import yaml
hw = load_hardware(yaml.safe_load(open(sys.argv[1])))
sys.stdout.write(to_json(simulate(hw, load_workload(sys.argv[2]))))
"""


def _run(hw_file, trace, disable_jit: bool) -> str:
    env = dict(os.environ)
    env["NUMBA_DISABLE_JIT"] = "1" if disable_jit else "0"
    r = subprocess.run([sys.executable, "-c", CHILD, str(hw_file), str(trace)], env=env,
                       capture_output=True, text=True, check=True)
    return r.stdout


def test_same_report_with_and_without_jit(tiny_trace, tmp_path):
    for cfg in (TINY_P2M, TINY_BASE):
        f = tmp_path / f"{cfg['name']}.yaml"
        f.write_text(yaml.safe_dump(cfg))
        assert _run(f, tiny_trace, True) == _run(f, tiny_trace, False)


def test_same_report_with_and_without_jit_from_event_lists(tmp_path):
    """A sparse trace (below 1/32 density) is replayed from event lists, and an AER link reads
    them row by row: the same report either way."""
    trace = tmp_path / "sparse.npz"
    wl = make_tiny_workload(samples=3, steps=4, seed=3, rate=0.02)
    save_workload(wl, trace)
    assert {wl.spike_form(la.name).kind for la in wl.layers if la.spiking} == {"events"}
    cfg = {**TINY_P2M, "link": {**TINY_P2M["link"], "encoding": "aer"}}
    f = tmp_path / "aer.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert _run(f, trace, True) == _run(f, trace, False)
