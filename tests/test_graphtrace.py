"""Trace format v2 files: v1 traces migrate and round-trip; a v2 graph with biases, batch norm,
per-neuron parameters and SEW events round-trips; and each inconsistency gets one clear error."""

from __future__ import annotations

import numpy as np
import pytest
from snnsim.errors import WorkloadError
from snnsim.workload.graphtrace import GraphTrace, from_v1, load_graph_trace, save_graph_trace
from snnsim.workload.nodes import Node, node_as_dict
from snnsim.workload.trace import load_workload, pack_spikes


def _same(a: GraphTrace, b: GraphTrace) -> None:
    assert [node_as_dict(n) for n in a.nodes] == [node_as_dict(n) for n in b.nodes]
    assert set(a.recorded) == set(b.recorded) and set(a.arrays) == set(b.arrays)
    for k in a.recorded:
        assert np.array_equal(a.recorded[k], b.recorded[k])
    for k in a.arrays:
        assert np.array_equal(a.arrays[k], b.arrays[k])
    assert np.array_equal(a.input, b.input) and a.time_steps == b.time_steps


@pytest.mark.parametrize("topology", ["small_cnn", "vsa_mnist"])
def test_v1_traces_migrate_and_round_trip_as_v2(topology, tmp_path):
    from snnsim.workload.synth import synthesize
    from snnsim.workload.trace import save_workload

    v1 = save_workload(synthesize(topology, samples=2, time_steps=2, seed=0, image_size=16), tmp_path / "v1.npz")
    migrated = load_graph_trace(v1)  # a v1 file read as v2
    wl = load_workload(v1)
    assert {k.split("/", 1)[1] for k in migrated.recorded} <= set(wl.packed_spikes)
    assert len(migrated.layers()) == sum(1 for la in wl.layers if la.neuron is not None or la.op == "maxpool"
                                         or not la.spiking)
    save_graph_trace(migrated, tmp_path / "v2.npz")
    again = load_graph_trace(tmp_path / "v2.npz")
    _same(migrated, again)
    assert not again.input.flags.writeable


def _v2_trace(seed: int = 0) -> GraphTrace:
    """conv(bias) -> batch norm -> max pool -> LIF (per-neuron beta) -> conv -> IF, SEW add of the
    two spike maps read by two layers, a linear readout."""
    rng = np.random.default_rng(seed)
    nodes = [Node("conv1", "conv2d", ["input"], {"out_channels": 4, "kernel": 3, "padding": 1, "bias": True}),
             Node("bn1", "affine", ["conv1"]),
             Node("pool1", "maxpool", ["bn1"], {"kernel": 2}),
             Node("lif1", "neuron", ["pool1"], {"model": "snntorch.leaky", "beta": {"array": "params/lif1/beta"}}),
             Node("conv2", "conv2d", ["lif1"], {"out_channels": 4, "kernel": 3, "padding": 1}),
             Node("if2", "neuron", ["conv2"], {"model": "spikingjelly.if", "v_reset": None}),
             Node("sew", "add", ["if2", "lif1"]),
             Node("conv3", "conv2d", ["sew"], {"out_channels": 2, "kernel": 1}),
             Node("if3", "neuron", ["conv3"], {"model": "spikingjelly.if"}),
             Node("flat", "flatten", ["sew"]),
             Node("fc", "linear", ["flat"], {"out_features": 3})]
    s, t = 2, 3
    spikes = {n: rng.random((s, t, 4, 4, 4)) < 0.3 for n in ("lif1", "if2")}
    recorded = {f"spikes/{n}": pack_spikes(v) for n, v in spikes.items()}
    recorded["events/sew"] = (spikes["lif1"].astype(np.uint8) + spikes["if2"]).reshape(s, t, -1)
    recorded["spikes/if3"] = pack_spikes(rng.random((s, t, 2, 4, 4)) < 0.3)
    arrays = {"params/lif1/beta": rng.uniform(0.5, 1, (4, 1, 1)).astype(np.float32),
              "weights/conv1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
              "bias/conv1": rng.standard_normal(4).astype(np.float32),
              "scale/bn1": rng.uniform(0.5, 2, 4).astype(np.float32), "shift/bn1": rng.standard_normal(4).astype(np.float32),
              "weights/fc": rng.standard_normal((3, 64)).astype(np.float32)}
    return GraphTrace(nodes=nodes, input=rng.random((s, 3, 8, 8)).astype(np.float32), recorded=recorded,
                      arrays=arrays, time_steps=t, model="v2-test")


def test_a_v2_graph_round_trips(tmp_path):
    gt = _v2_trace()
    save_graph_trace(gt, tmp_path / "g.npz")
    back = load_graph_trace(tmp_path / "g.npz")
    _same(gt, back)
    assert [la.name for la in back.layers()] == ["lif1", "if2", "sew", "if3", "fc"]
    assert {n.name: n.kind for n in back.nodes}["sew"] == "events"


@pytest.mark.parametrize(("edit", "key", "words"), [
    (lambda g: g.arrays.pop("bias/conv1"), "bias/conv1", "missing"),
    (lambda g: g.arrays.pop("shift/bn1"), "shift/bn1", "missing"),
    (lambda g: g.arrays.update({"bias/conv2": np.zeros(4, np.float32)}), "bias/conv2", "unexpected"),
    (lambda g: g.arrays.pop("params/lif1/beta"), "nodes.lif1.params.beta", "names an array"),
    (lambda g: g.recorded.update({"events/sew": g.recorded["events/sew"].astype(np.uint16)}), "events/sew", "dtype"),
    (lambda g: g.recorded.update({"spikes/flat": np.zeros((2, 3, 8), np.uint8)}), "spikes/flat", "not recorded"),
    (lambda g: g.recorded.pop("spikes/if3"), "spikes/if3", "missing"),
    (lambda g: g.arrays.update({"weights/fc": np.zeros((3, 65), np.float32)}), "weights/fc", "shape"),
    (lambda g: g.arrays.update({"scale/bn1": np.full(4, np.nan, np.float32)}), "scale/bn1", "NaN"),
])
def test_inconsistent_v2_traces_are_refused(edit, key, words, tmp_path):
    gt = _v2_trace()
    edit(gt)
    with pytest.raises(WorkloadError) as e:
        save_graph_trace(gt, tmp_path / "bad.npz")
    assert e.value.key == key and words in e.value.render(), e.value.render()
    assert not (tmp_path / "bad.npz").exists()


def test_from_v1_keys_weights_by_their_op_node():
    wl = load_workload("workloads/vsa_mnist.npz")
    gt = from_v1(wl)
    names = {n.name for n in gt.nodes}
    assert all(k.split("/", 1)[1] in names for k in gt.arrays if k.startswith("weights/"))


@pytest.mark.parametrize("stem", ["resnet_imagenet", "vsa_mnist"])
def test_a_v2_file_of_v1_constructs_runs_as_its_v1_twin(stem, tmp_path):
    """load_workload reads v2 files: a v1 trace written as v2 simulates to the same report."""
    from snnsim import load_hardware, simulate
    from snnsim.report.writers import to_json

    v1 = load_workload(f"workloads/{stem}.npz")
    save_graph_trace(from_v1(v1), tmp_path / "v2.npz")
    v2 = load_workload(tmp_path / "v2.npz")
    hw = {"resnet_imagenet": "hwconfigs/p2m.yaml", "vsa_mnist": "hwconfigs/vsa.yaml",
          "digits_snn": "hwconfigs/p2m_digits.yaml"}[stem]
    sets = ["sensor.photodiodes_per_pixel=1"] if stem == "vsa_mnist" else []
    a, b = simulate(load_hardware(hw, sets), v1), simulate(load_hardware(hw, sets), v2)
    a.meta["workload"]["source"] = b.meta["workload"]["source"] = "-"
    assert to_json(a) == to_json(b)


def test_v2_constructs_load_as_hardware_layers_and_what_no_chip_runs_is_named(tmp_path):
    save_graph_trace(_v2_trace(), tmp_path / "g.npz")
    wl = load_workload(tmp_path / "g.npz")
    assert [la.name for la in wl.layers] == ["lif1", "if2", "sew", "if3", "fc"]
    assert wl.layer("sew").spiking and wl.events["sew"].shape == (2, 3, 64)
    assert [n.op for n in wl.layer("lif1").parts.passes] == ["affine", "maxpool"]
    gt = _v2_trace()
    gt.nodes[4:5] = [Node("conv2a", "conv2d", ["lif1"], {"out_channels": 4, "kernel": 1}),
                     Node("conv2", "conv2d", ["conv2a"], {"out_channels": 4, "kernel": 3, "padding": 1})]
    save_graph_trace(gt, tmp_path / "h.npz")
    with pytest.raises(WorkloadError) as e:
        load_workload(tmp_path / "h.npz")
    assert e.value.key == "nodes.conv2" and "weighted op reads a current" in e.value.message


def test_spike_rates_count_each_recorded_spike_once():
    gt = _v2_trace()
    rates = gt.spike_rates()
    assert set(rates) == {"lif1", "if2", "if3"}  # the SEW add is events, the readout a current
    shape, per_step = rates["lif1"]
    bits = np.unpackbits(gt.recorded["spikes/lif1"], axis=-1, count=64).sum(axis=(0, 2))
    assert shape == (4, 4, 4) and np.array_equal(per_step, bits / (64 * gt.samples))
