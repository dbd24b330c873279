"""The Numba kernels stay correct as plain Python (NUMBA_DISABLE_JIT=1): same report, same bits."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from .conftest import TINY_BASE, TINY_P2M

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
