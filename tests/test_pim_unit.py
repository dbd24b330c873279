"""The PIM macro as a unit of the chain (mapping.pim): it runs the first layer between the link
and the core, its records are the macro model's counts, and what it cannot run is refused."""

from __future__ import annotations

import numpy as np
import pytest
from snnsim import load_hardware, load_workload, simulate
from snnsim.errors import ConfigError, MappingError, SnnsimError
from snnsim.hw import pim
from snnsim.hw.fit import fit_problems

MNIST = ["sensor.photodiodes_per_pixel=1"]
ON_PIM = [*MNIST, "mapping.pim=conv0", "pim.preset=wang22_8b", "pim.n_arrays=2"]


@pytest.fixture(scope="module")
def runs():
    wl = load_workload("workloads/vsa_mnist.npz")
    digital = simulate(load_hardware("hwconfigs/vsa.yaml", MNIST), wl)
    hw = load_hardware("hwconfigs/vsa.yaml", ON_PIM)
    return wl, hw, digital, simulate(hw, wl)


def test_the_first_layer_runs_in_the_macro_and_its_records_are_the_macro_models_counts(runs):
    wl, hw, digital, on_pim = runs
    layers = {la["name"]: la for la in on_pim.summary["layers"]}
    assert layers["conv0"]["runs_on"] == "pim" and layers["conv1"]["runs_on"] == "core"
    assert on_pim.meta["engine"]["stages"] == ["sensor", "link", "pim", "core"]
    cfg = pim.macro_config({**pim.preset("wang22_8b"), "n_arrays": 2}, "test")
    la = wl.layer("conv0")
    g = pim.layer_geometry("conv0", la.in_shape, la.out_shape[0], kernel=la.kernel, stride=la.stride,
                           padding=la.padding, groups=la.groups, weight_bits=la.weight_bits)
    want = pim.layer_counts(cfg, pim.map_layer(cfg, g), wl.input, wl.time_steps)
    got: dict[str, np.ndarray] = {}
    for r in on_pim.records:
        if r.component == "pim" and r.sample is not None:
            got.setdefault(r.metric, np.zeros((wl.samples, wl.time_steps)))[r.sample, r.step] = r.value
    for k in ("mvms", "adc_conversions", "row_activations", "neuron_updates"):
        assert np.array_equal(got[k], want[k].astype(np.float64)), k
    e = on_pim.summary["energy"]["by_component_pj_per_frame"]["pim"]
    assert e == pytest.approx(float(want["energy_pj"].sum()) / wl.samples, rel=1e-12)
    busy = on_pim.summary["delay"]["stages"]["pim"]["busy_ps"]
    assert busy == float(want["time_ps"].sum())  # the macro's time, shared by its output rows
    # the core no longer multiplies: conv0's MACs left it; the later layers' work is unchanged
    assert on_pim.summary["operations"]["macs_per_frame"] == 0 < digital.summary["operations"]["macs_per_frame"]
    d_layers = {la["name"]: la for la in digital.summary["layers"]}
    for name in ("conv1", "conv2", "fc1"):
        assert layers[name]["synaptic_ops_per_frame"] == d_layers[name]["synaptic_ops_per_frame"], name
    assert on_pim.meta["pim"]["preset"] == "wang22_8b" and on_pim.meta["pim"]["tiles"] == 2


def _problems(sets: list[str]) -> list[SnnsimError]:
    return fit_problems(load_hardware("hwconfigs/vsa.yaml", sets), load_workload("workloads/vsa_mnist.npz"))


@pytest.mark.parametrize("sets, key, text", [
    ([*MNIST, "mapping.pim=conv9"], "mapping.pim", "does not have"),
    ([*MNIST, "mapping.pim=conv1"], "mapping.pim", "the first layer"),
    ([*MNIST, "mapping.pim=0", "pim.preset=wang22_8b"], "pim.n_arrays", "does not fit"),
    ([*MNIST, "mapping.pim=0", "pim.preset=ibm14_6b6b"], "pim", "does not fit"),
    ([*MNIST, "pim.n_arrays=4"], "pim.n_arrays", "no effect"),
    ([*MNIST, "mapping.pim=conv0", "pim.n_arrays=2", "sensor.kind=p2m"], "mapping.pim", "P2M"),
])
def test_what_the_macro_cannot_run_is_named(sets, key, text):
    problems = _problems(sets)
    assert problems, sets
    hit = [p for p in problems if p.key.startswith(key) and text in p.message]
    assert hit, [(p.key, p.message) for p in problems]
    assert all(isinstance(p, (MappingError, ConfigError)) for p in hit)


def _ace_problems(sets: list[str]) -> list[SnnsimError]:
    return fit_problems(load_hardware("hwconfigs/ace_snn_pim.yaml", sets), load_workload("workloads/hsi_ip_3d.npz"))


@pytest.mark.parametrize("sets, key, text", [
    (["pim.weight_bits=4", "pim.cols_per_adc=4"], "pim.weight_bits", "wider"),  # 6-bit weights, 4-bit slots
    (["pim.rows=8", "pim.n_arrays=2"], "pim.n_arrays", "does not fit"),  # 63 unrolled rows need 8 row tiles
    (["pim.cols=24"], "pim", "does not fit"),  # a 6-bit weight slot is 6 columns: 4 weights per array of 24
    (["pim.weight_bits=4"], "pim.cols_per_adc", "weight slot"),  # combine: one ADC per slot
    (["mapping.pim=lif2"], "mapping.pim", "the first layer"),  # a layer reading spikes
    (["mapping.pim=conv1"], "mapping.pim", "does not have"),
    (["pim.preset=jia65_1b", "pim.weight_bits=6", "pim.n_arrays=4"], "pim.input_bits", "1-bit"),  # the opposite
])
def test_what_the_macro_cannot_run_of_a_3d_layer_is_named(sets, key, text):
    try:
        problems = _ace_problems(sets)
    except SnnsimError as e:  # refused as the hwconfig loads
        problems = [e]
    hit = [p for p in problems if p.key.startswith(key) and text in p.message]
    assert hit, [(p.key, p.message) for p in problems]


def test_an_unknown_unit_in_the_mapping_is_refused_with_the_nearest_key():
    with pytest.raises(ConfigError, match="unknown key") as e:
        load_hardware("hwconfigs/ace_snn_pim.yaml", ["mapping.loihi=0"])
    assert e.value.key == "mapping.loihi" and "mapping.pim" in (e.value.suggestion or "")
