"""The Loihi-vs-NCS2 reproduction study (reports/loihi_vs_ncs2/study.py) on one committed trace
with a reduced sweep: its ratios are the runs' own, and its sweeps move the way the model says."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("loihi_vs_ncs2_study", ROOT / "reports/loihi_vs_ncs2/study.py")
study = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(study)

TRACE = next((t for t in study.find_traces() if t[0] == "lenet_digits" and t[1] == 32), None)
pytestmark = pytest.mark.skipif(TRACE is None, reason="workloads/lenet_digits_T32.npz missing")
SWEEPS = {"static": ("loihi", "loihi.static_mw_per_chip", [0.0, 104.0], "mW"),
          "ncs2_idle": ("ncs2", "ncs2.p_idle_mw", [300.0, 1500.0], "mW")}


@pytest.fixture(scope="module")
def st():
    return study.compute([TRACE], [TRACE], SWEEPS)


def test_ratios_are_the_runs_own(st):
    (row,) = st["rows"]
    lo, nc, q = row["loihi"], row["ncs2"], row["ratios"]
    assert q["power"] == pytest.approx(nc["power_w"] / lo["power_w"])
    assert q["energy"] == pytest.approx(nc["energy_j"] / lo["energy_j"])
    assert q["latency"] == pytest.approx(lo["latency_s"] / nc["latency_s"])
    assert lo["power_w"] == pytest.approx(lo["energy_j"] / lo["latency_s"])
    assert lo["cores"] >= 5 and row["snn_accuracy"] is not None and row["ann_accuracy"] > 0.9


def test_sweeps_move_as_the_model_says(st):
    (run,) = st["sweeps"]["static"]["runs"]
    no_static, static = (p["ratios"] for p in run["points"])
    assert no_static["power"] > static["power"] and no_static["energy"] > static["energy"]
    assert no_static["latency"] == pytest.approx(static["latency"])  # static power takes no time
    (run,) = st["sweeps"]["ncs2_idle"]["runs"]
    low, high = (p["ratios"] for p in run["points"])
    assert high["power"] > low["power"] and high["energy"] > low["energy"]


def test_readme_lists_every_row_and_sweep(st):
    text = study.readme(st, ["ratios_vs_T.png"])
    assert "LeNet-class CNN, digits | 32 |" in text
    assert "`loihi.static_mw_per_chip`" in text and "`ncs2.p_idle_mw`" in text
