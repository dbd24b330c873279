"""The ACE-SNN reproduction study (reports/ace_snn/study.py): its computation on one trace with a
reduced sweep, checked against the runs it is made of and against properties the figures must have
(improvement = 1 - PIM / digital, f (1 - r) = the energy improvement, monotone sweeps, a per-step
first layer costing more than a once-computed one on both chips)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "reports" / "ace_snn"
sys.path.insert(0, str(STUDY_DIR))

import study  # noqa: E402

TRACE = next((t for t in study.find_traces() if t.name == "hsi_ip_3d"), None)
pytestmark = pytest.mark.skipif(TRACE is None, reason="workloads/hsi_ip_3d.npz missing")
SWEEPS = study.Sweeps(mac_pj=(0.3, 1.0, 3.0), pim_scale=(0.5, 2.0), t_sense_ns=(50.0, 500.0))


@pytest.fixture(scope="module")
def st():
    return study.compute([TRACE], [TRACE], SWEEPS, jobs=1)


def test_finds_the_committed_traces():
    names = [t.name for t in study.find_traces()]
    assert names == sorted(names) and {"hsi_ip_3d", "hsi_ip_hybrid"} <= set(names)
    assert all(t.family in ("3d", "hybrid") and t.path.startswith("workloads/") for t in study.find_traces())


def test_improvements_are_one_minus_pim_over_digital(st):
    for acc in study.ACCOUNTINGS:
        c = st.chips[TRACE.name][acc]
        P, D = c["pim"], c["digital"]
        assert P["chip"] == "pim" and D["chip"] == "digital"
        assert c["energy"] == pytest.approx(1 - P["energy_pj"] / D["energy_pj"], rel=1e-12)
        assert c["delay"] == pytest.approx(1 - P["latency_ps"] / D["latency_ps"], rel=1e-12)
        assert c["edp"] == pytest.approx(1 - P["edp_j_s"] / D["edp_j_s"], rel=1e-12)
        # EDP is energy x mean latency, so per trace the composed figure is the EDP one
        assert c["edp_composed"] == pytest.approx(c["edp"], abs=1e-9)
        # the first layer runs where each chip says
        assert P["layers"][0]["runs_on"] == "pim" and D["layers"][0]["runs_on"] == "core"


def test_energy_improvement_is_f_times_one_minus_r(st):
    for acc in study.ACCOUNTINGS:
        c = st.chips[TRACE.name][acc]
        assert 0 < c["r"] < 1 and 0 < c["f"] < 1
        # the later layers are the same network on the same core: they cost the same on both chips
        assert abs(c["later_layers_delta_share"]) < 1e-9
        assert c["energy"] == pytest.approx(c["f"] * (1 - c["r"]), abs=1e-9)
        # the patch read from DRAM is the same on both chips and booked to the first layer
        assert c["pim"]["patch_read_pj"] > 0
        assert c["pim"]["patch_read_pj"] == pytest.approx(c["digital"]["patch_read_pj"])
        assert c["r_with_patch_read"] > c["r"]


def test_s_is_the_ratio_of_the_first_layer_times(st):
    c = st.chips[TRACE.name]["once"]
    P, D = c["pim"], c["digital"]
    assert D["l1_time_ps"] == pytest.approx(D["layers"][0]["core_cycles"] * D["period_ps"])
    assert P["layers"][0]["core_cycles"] == 0  # the core does no first-layer work on the PIM chip
    assert c["s"] == pytest.approx(D["l1_time_ps"] / P["l1_time_ps"])


def test_per_step_costs_more_than_once_on_both_chips(st):
    once, step = st.chips[TRACE.name]["once"], st.chips[TRACE.name]["per_step"]
    for chip in ("pim", "digital"):
        assert step[chip]["energy_pj"] > once[chip]["energy_pj"]
        assert step[chip]["l1_compute_pj"] > 2 * once[chip]["l1_compute_pj"]
        assert step[chip]["l1_time_ps"] > 2 * once[chip]["l1_time_ps"]
        # only the first layer changes
        assert [L["energy_pj"] for L in step[chip]["layers"][1:]] == pytest.approx(
            [L["energy_pj"] for L in once[chip]["layers"][1:]])
    # the first layer's share grows when it runs at every step, and with it the PIM saving
    assert step["f"] > once["f"] and step["energy"] > once["energy"]


def test_more_expensive_digital_macs_raise_f_and_the_improvement(st):
    pts = st.sweep_results[TRACE.name]["first_layer_share"]["points"]
    assert [p["mac_pj"] for p in pts] == sorted(SWEEPS.mac_pj)  # sorted by f, which follows the MAC energy
    fs, es = [p["f"] for p in pts], [p["energy"] for p in pts]
    assert all(a < b for a, b in zip(fs, fs[1:], strict=False))
    assert all(a < b for a, b in zip(es, es[1:], strict=False))
    # no layer of the PIM chip uses a digital MAC: its energy does not move
    assert max(p["pim_energy_pj"] for p in pts) == pytest.approx(min(p["pim_energy_pj"] for p in pts))


def test_costlier_macro_raises_r_and_lowers_the_improvement(st):
    pts = st.sweep_results[TRACE.name]["pim_energy_ratio"]["points"]
    lo, hi = pts  # sorted by r
    assert (lo["pim_scale"], hi["pim_scale"]) == (0.5, 2.0)
    assert hi["r"] > lo["r"] and hi["energy"] < lo["energy"]
    # row, bit-line and ADC energies scale; neuron updates and adds do not: r grows by less than 4x
    assert 1.0 < hi["r"] / lo["r"] < 4.0
    assert hi["digital_energy_pj"] == lo["digital_energy_pj"]


def test_sense_slot_sets_s_and_the_delay(st):
    pts = {p["t_sense_ns"]: p for p in st.sweep_results[TRACE.name]["delay"]["points"]}
    fast, slow = pts[50.0], pts[500.0]
    assert slow["pim_l1_time_ps"] / fast["pim_l1_time_ps"] == pytest.approx(10.0, rel=1e-3)
    assert fast["s"] / slow["s"] == pytest.approx(10.0, rel=1e-3)
    assert fast["delay"] > slow["delay"]


def test_crossings_interpolate_and_report_misses():
    pts = [{"x": 0.0, "y": 0.0, "p": 1.0}, {"x": 1.0, "y": 1.0, "p": 10.0}, {"x": 2.0, "y": 0.5, "p": 100.0}]
    hits = study.crossings(pts, "x", "y", 0.25, "p")
    assert [h["x"] for h in hits] == pytest.approx([0.25])
    assert hits[0]["param"] == pytest.approx(10 ** 0.25)
    assert [h["x"] for h in study.crossings(pts, "x", "y", 0.75, "p")] == pytest.approx([0.75, 1.5])
    assert study.crossings(pts, "x", "y", 2.0, "p") == []


def test_mean_over_datasets_is_the_mean_of_improvements():
    traces = [study.Trace(f"workloads/hsi_{d}_3d.npz", d, "3d") for d in ("ip", "pu")]
    per = {"hsi_ip_3d": {"once": {"energy": 0.2, "delay": 0.2, "edp": 1 - 0.8 * 0.8}},
           "hsi_pu_3d": {"once": {"energy": 0.4, "delay": 0.0, "edp": 0.4}}}
    m = study.mean_over_datasets(per, traces, "3d", "once")
    assert (m["energy"], m["delay"]) == pytest.approx((0.3, 0.1))
    assert m["edp"] == pytest.approx((0.36 + 0.4) / 2)
    assert m["composed"] == pytest.approx(1 - 0.7 * 0.9)
    # the gap is minus the covariance of the per-dataset improvements
    assert m["edp"] - m["composed"] == pytest.approx(-((0.2 - 0.3) * (0.2 - 0.1) + (0.4 - 0.3) * (0.0 - 0.1)) / 2)


def test_writes_results_readme_and_plots(st, tmp_path):
    paths = study.write_results(st, tmp_path)
    assert {p.name for p in paths} >= {"results.json", "README.md", "improvements.png", "accounting.png",
                                       "sweep_share.png", "sweep_ratio.png", "sweep_delay.png"}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["chips"][TRACE.name]["once"]["energy"] == pytest.approx(st.chips[TRACE.name]["once"]["energy"])
    assert math.isclose(data["paper"]["energy"], 0.30) and math.isclose(data["paper"]["edp"], 0.38)
    md = (tmp_path / "README.md").read_text()
    assert "python reports/ace_snn/study.py" in md and f"| {TRACE.name} |" in md
    assert f"{100 * st.chips[TRACE.name]['once']['energy']:.1f} %" in md
    assert str(ROOT) not in md and str(ROOT) not in (tmp_path / "results.json").read_text()
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
