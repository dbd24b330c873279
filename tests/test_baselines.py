"""The digital baselines of snnsim.report.baselines on hand-computed v2 traces: MAC counts (with
and without padding, zero-gated), the SNN framework's first layer x T or once, measured spike
rates, the bit-width scaling rules and their implied FP32 / 6-bit ratio, and clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from snnsim.errors import ConfigError, UsageError
from snnsim.report import baselines as bl
from snnsim.workload.graphtrace import save_graph_trace
from snnsim.workload.trace import load_workload

from .test_reference_v2 import N, trace_of

WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"

# conv 1 -> 2 channels, 3x3, padding 1 on a 4x4 frame: per axis 4 x 3 taps, 2 of them in the
# padding -> 10 in bounds; valid MACs 2 x 1 x 10 x 10 = 200, dense 2 x 16 x 9 = 288.
# flatten (32) -> linear 3: 96 MACs.
CONV_VALID, CONV_DENSE, FC = 200, 288, 96
SAMPLES, T = 2, 3


def _nodes():
    return [N("c0", "conv2d", ["input"], out_channels=2, kernel=3, padding=1),
            N("n0", "neuron", ["c0"], model="snntorch.leaky", beta=0.9),
            N("f0", "flatten", ["n0"]),
            N("fc", "linear", ["f0"], out_features=3)]


@pytest.fixture(scope="module")
def wl(tmp_path_factory):
    gt = trace_of(_nodes(), (1, 4, 4), SAMPLES, T, seed=3)
    # sample 0: 8 spikes per step, sample 1: 4 spikes per step -> 36 spikes over 2 x 3 x 32 neurons
    spikes = np.zeros((SAMPLES, T, 32), bool)
    spikes[0, :, :8] = True
    spikes[1, :, 10:14] = True
    gt.recorded["spikes/n0"] = np.packbits(spikes, axis=-1)
    # sample 0: every pixel non-zero; sample 1: only the corner pixel (its window reach: 2 x 2)
    x = np.zeros((SAMPLES, 1, 4, 4), np.float32)
    x[0] = 0.5
    x[1, 0, 0, 0] = 1.0
    gt.input = x
    path = save_graph_trace(gt, tmp_path_factory.mktemp("bl") / "t.npz")
    return load_workload(path)


def test_weighted_ops_and_mac_counts(wl):
    ops = bl.weighted_ops(wl)
    assert [(w.name, w.first, w.sources) for w in ops] == [("c0", True, ("input",)), ("fc", False, ("n0",))]
    assert [w.macs("valid") for w in ops] == [CONV_VALID, FC]
    assert [w.macs("dense") for w in ops] == [CONV_DENSE, FC]
    assert ops[0].fanout().sum() == CONV_VALID


def test_iso_cnn_fp32_valid_and_dense(wl):
    r = bl.iso_cnn_energy(wl, "fp32")
    assert r["e_mac_pj"] == pytest.approx(3.7 + 0.9)
    assert r["macs"] == CONV_VALID + FC
    assert r["energy_pj"] == pytest.approx((CONV_VALID + FC) * 4.6)
    assert [x["macs"] for x in r["layers"]] == [CONV_VALID, FC]
    d = bl.iso_cnn_energy(wl, "int32", count="dense")
    assert d["energy_pj"] == pytest.approx((CONV_DENSE + FC) * 3.2)


def test_zero_gating_counts_first_layer_nonzero_inputs(wl):
    # sample 0: all 200 in-bounds MACs; sample 1: corner pixel reaches 2 x 2 outputs x 2 channels
    r = bl.iso_cnn_energy(wl, "fp32", zero_gating=True)
    assert r["layers"][0]["macs"] == pytest.approx((200 + 8) / 2)
    assert r["layers"][1]["macs"] == FC  # later CNN activations are unknown: dense
    assert bl.gated_first_macs(wl, bl.weighted_ops(wl)[0]) == pytest.approx(104.0)


def test_snn_first_layer_per_step_and_rates(wl):
    zeta = 36 / (SAMPLES * T * 32)
    synops = FC * zeta * T  # = 54 per sample: 18 spikes x 3 outputs
    assert synops == pytest.approx(54.0)
    per = bl.snn_energy(wl, first_layer_per_step=True)
    once = bl.snn_energy(wl, first_layer_per_step=False)
    assert per["first_layer_pj"] == pytest.approx(CONV_VALID * T * 4.6)
    assert once["first_layer_pj"] == pytest.approx(CONV_VALID * 4.6)
    assert per["first_layer_pj"] == pytest.approx(T * once["first_layer_pj"])
    assert per["later_layers_pj"] == pytest.approx(54.0 * 0.9)
    assert per["energy_pj"] == pytest.approx(CONV_VALID * T * 4.6 + 54.0 * 0.9)
    assert per["layers"][1]["zeta"] == pytest.approx(zeta * T)
    assert per["first_layer_share"] == pytest.approx(2760 / (2760 + 48.6))


def test_snn_options(wl):
    r = bl.snn_energy(wl, base="int32", first_layer="given_pj", first_layer_pj=0.5, first_layer_per_step=False)
    assert r["energy_pj"] == pytest.approx(CONV_VALID * 0.5 + 54.0 * 0.1)
    g = bl.snn_energy(wl, e_ac=0.25, zero_gating=True)
    assert g["energy_pj"] == pytest.approx(104.0 * T * 4.6 + 54.0 * 0.25)
    # the exact NeuroBench count equals the rate count here (a linear with no zero weight)
    nb = bl.snn_energy(wl, synops="neurobench")
    assert nb["later_layers_pj"] == pytest.approx(54.0 * 0.9)


def test_rules():
    r = 6 / 32
    assert bl.mac_energy("6bit", rule="quadratic_mult", base="int32").pj == pytest.approx(3.1 * r * r + 0.1 * r)
    assert bl.mac_energy("int6", rule="linear", base="int32").pj == pytest.approx(3.2 * r)
    assert bl.mac_energy("6bit", rule="power_law(1.5)").pj == pytest.approx(4.6 * r ** 1.5)
    assert bl.mac_energy("int8").pj == pytest.approx(0.23)
    assert bl.mac_energy("fp16", rule="linear").pj == pytest.approx(1.5)  # float formats: the table's
    assert bl.mac_energy("int32", rule="linear", base="fp32").pj == pytest.approx(3.2)
    for base in ("fp32", "int32"):
        ratio = bl.mac_energy(base).pj / bl.mac_energy("6bit", rule="solve_12_5", base=base).pj
        assert ratio == pytest.approx(560.6 / 44.8, rel=1e-12)
        assert round(ratio, 1) == 12.5
    assert bl.ac_energy("int32").pj == pytest.approx(0.1)


def test_compare_ratios_and_table(wl):
    c = bl.compare(wl, rule="solve_12_5")
    snn = CONV_VALID * T * 4.6 + 54.0 * 0.9
    assert c["snn_vs_full"] == pytest.approx((CONV_VALID + FC) * 4.6 / snn)
    assert c["snn_vs_quantized"] == pytest.approx(c["snn_vs_full"] / (560.6 / 44.8))
    assert c["implied_full_over_quantized"] == pytest.approx(12.5134, abs=1e-4)
    q = bl.compare(wl, rule="quadratic_mult", base="int32")
    assert q["implied_full_over_quantized"] == pytest.approx(3.2 / (3.1 * (6 / 32) ** 2 + 0.1 * 6 / 32))
    text = bl.table(c)
    assert "12.513" in text and "560.6" in text and "c0" not in text.split("\n")[0]
    assert len(text.splitlines()) == 3 + 2 + 1 + 5


@pytest.mark.parametrize(("call", "key"), [
    (lambda w: bl.iso_cnn_energy(w, "fp32", rule="cubic"), "rule"),
    (lambda w: bl.iso_cnn_energy(w, "fp32", rule="power_law(-1)"), "rule"),
    (lambda w: bl.iso_cnn_energy(w, "fp32", base="fp64"), "base"),
    (lambda w: bl.iso_cnn_energy(w, "half"), "precision"),
    (lambda w: bl.iso_cnn_energy(w, "fp32", count="padded"), "count"),
    (lambda w: bl.snn_energy(w, first_layer="pim"), "first_layer"),
    (lambda w: bl.snn_energy(w, first_layer="given_pj"), "first_layer_pj"),
    (lambda w: bl.snn_energy(w, first_layer_pj=0.3), "first_layer_pj"),
    (lambda w: bl.snn_energy(w, synops="exact"), "synops"),
    (lambda w: bl.snn_energy(w, e_ac="fp8"), "e_ac"),
    (lambda w: bl.snn_energy(w, e_ac=-1.0), "e_ac"),
    (lambda w: bl.snn_energy(w, first_layer_per_step="yes"), "first_layer_per_step"),
])
def test_bad_options_name_the_option(wl, call, key):
    with pytest.raises(UsageError) as e:
        call(wl)
    assert e.value.key == key
    assert e.value.expected


def test_table_rule_refuses_unsourced_6bit(wl):
    with pytest.raises(ConfigError) as e:
        bl.iso_cnn_energy(wl, "6bit", rule="table")
    assert "mac_formats.int6" in str(e.value) and "solve_12_5" in str(e.value)


def test_yaml_entries_have_sources():
    data = bl.digital_ops()
    for section in ("ops", "mac_formats", "ac_formats", "reported"):
        for k, v in data[section].items():
            assert v["source"].startswith("["), (section, k)
    assert data["reported"]["snn_vs_fp_cnn"]["value"] == 560.6


@pytest.mark.skipif(not (WORKLOADS / "vsa_mnist.npz").exists(), reason="committed workload absent")
def test_v1_workload_first_layer_macs():
    w = load_workload(WORKLOADS / "vsa_mnist.npz")
    ops = bl.weighted_ops(w)
    # conv0: 32 x 1 x (3 x 28 - 2)^2 in-bounds taps; dense 32 x 28 x 28 x 9
    assert ops[0].macs("valid") == 32 * 82 * 82
    assert ops[0].macs("dense") == 32 * 28 * 28 * 9
    assert not any(o.first for o in ops[1:])
    assert math.isfinite(bl.compare(w)["snn_vs_full"])


def test_recurrent_first_layer(tmp_path):
    """flatten -> linear 4 -> 3 -> RLeaky with a recurrent linear 3 -> 3 on its delayed spikes,
    then a linear 3 -> 2: the recurrent op is a later (spike-driven) op of the first layer, and a
    delayed source delivers only its first T - 1 steps."""
    nodes = [N("f0", "flatten", ["input"]), N("fc0", "linear", ["f0"], out_features=3),
             N("d0", "delay", ["n0"], shape=[3], kind="spikes"), N("r0", "linear", ["d0"], out_features=3),
             N("n0", "neuron", ["fc0", "r0"], model="snntorch.rleaky", beta=0.8),
             N("fc", "linear", ["n0"], out_features=2)]
    gt = trace_of(nodes, (1, 2, 2), 1, 2, seed=5)
    gt.recorded["spikes/n0"] = np.packbits(np.ones((1, 2, 3), bool), axis=-1)
    gt.input = np.full((1, 1, 2, 2), 0.5, np.float32)
    w = load_workload(save_graph_trace(gt, tmp_path / "r.npz"))
    ops = {o.name: o for o in bl.weighted_ops(w)}
    assert ops["r0"].delayed == (True,) and ops["r0"].sources == ("n0",) and not ops["r0"].first
    r = bl.snn_energy(w)
    assert r["first_layer_pj"] == pytest.approx(12 * 2 * 4.6)
    assert [x["synops"] for x in r["layers"]] == pytest.approx([9.0, 12.0])  # r0: step 0's 3 spikes x 3
    nb = bl.snn_energy(w, synops="neurobench")
    assert [x["synops"] for x in nb["layers"]] == pytest.approx([9.0, 12.0])
    assert bl.iso_cnn_energy(w)["macs"] == 12 + 9 + 6
    gt.input = np.ones((1, 1, 2, 2), np.float32)  # NeuroBench would call the frame's MACs ACs
    wb = load_workload(save_graph_trace(gt, tmp_path / "b.npz"))
    with pytest.raises(UsageError) as e:
        bl.snn_energy(wb, synops="neurobench")
    assert e.value.key == "synops"


def test_the_first_layer_in_a_pim_macro_replaces_its_digital_macs_by_the_macros_energy():
    from snnsim.report import baselines
    from snnsim.workload.trace import load_workload

    wl = load_workload("workloads/hsi_ip_3d.npz")
    r = baselines.first_layer_on_pim(wl, "wang22_8b", overrides={"allow_weight_reload": True})
    p = r["pim"]
    digital = baselines.snn_energy(wl, first_layer_per_step=p["recompute_per_step"])
    # the same later layers; the first layer's digital MACs replaced by the macro's own energy
    assert r["digital_pj"] == digital["energy_pj"]
    assert r["pim_pj"] == pytest.approx(digital["later_layers_pj"] + p["energy_pj"], rel=1e-12)
    assert p["energy_pj"] > 0 and p["time_ps"] > 0 and p["mvms_per_sample"] > 0
    assert 0 < r["improvement"] < 1 and r["improvement"] == pytest.approx(1 - r["pim_pj"] / r["digital_pj"])
    once = baselines.first_layer_on_pim(wl, "wang22_8b", overrides={"allow_weight_reload": True,
                                                                    "recompute_per_step": False})
    assert once["pim"]["energy_pj"] < p["energy_pj"]  # computed once, not at every one of the T steps
    with pytest.raises(ConfigError, match="unknown PIM macro preset"):
        baselines.first_layer_on_pim(wl, "wang2022")
