"""From a trained model to a report: train the digits SNN, export it, run it on its P2M chip, verify it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from snnsim.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_committed_digits_trace_runs_on_its_chip(capsys):
    code = main(["run", "hwconfigs/p2m_digits.yaml", "workloads/digits_snn.npz", "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    s = json.loads(out)["summary"]
    # 16x16 mono frame: 256 photodiodes x 12 bits conventional; 8x8x8 spike bits x 4 steps from P2M
    assert s["bandwidth"]["conventional_payload_bits_per_frame"] == 16 * 16 * 12
    assert s["bandwidth"]["payload_bits_per_frame"] == 8 * 8 * 8 * 4
    assert s["operations"]["neurobench"]["Effective_ACs"] > 0


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("torch", "snntorch", "sklearn")),
                    reason="needs the torch extra: pip install -e '.[torch]'")
def test_train_export_run_verify(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "workloads"))
    try:
        import train_digits
    finally:
        sys.path.pop(0)
    out = tmp_path / "digits.npz"
    assert train_digits.main(["-o", str(out)]) == 0
    printed = capsys.readouterr().out
    acc = float(printed.split("test accuracy")[1].split()[0].strip(":= "))
    assert acc > 0.9
    assert main(["run", "hwconfigs/p2m_digits.yaml", str(out), "--format", "json"]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--format", "json"]) == 0
    assert train_digits.main(["-o", str(out)]) == 2  # never overwritten without --overwrite
