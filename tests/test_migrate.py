"""Format v1 graphs as v2 nodes: every committed trace migrates, and its hardware layers are v1's."""

from __future__ import annotations

import numpy as np
import pytest
from snnsim import neurons
from snnsim.workload.migrate import nodes_from_v1
from snnsim.workload.nodes import check_nodes, lower, recorded
from snnsim.workload.trace import load_workload

from .conftest import make_tiny_workload

TRACES = ["workloads/resnet_imagenet.npz", "workloads/vsa_cifar10.npz", "workloads/vsa_mnist.npz",
          "tests/data/digits_snn_v1.npz"]


def _migrated(wl):
    nodes = nodes_from_v1(wl.layers, wl.thresholds)
    check_nodes(nodes, wl.input_shape)
    return nodes


@pytest.mark.parametrize("stem", TRACES)
def test_committed_traces_migrate_to_the_same_layers(stem):
    wl = load_workload(stem)
    nodes = _migrated(wl)
    layers = {la.name: la for la in lower(nodes)}
    v1 = {la.name: la for la in wl.layers}
    # every v1 layer with a neuron, every OR of spikes and the readout is one v2 hardware layer
    expected = [la.name for la in wl.layers if la.neuron is not None or la.op == "maxpool"
                or not la.spiking]
    assert list(layers) == expected
    for name, la in layers.items():
        assert la.output.out_shape == tuple(v1[name].out_shape)
        if v1[name].neuron is not None:
            assert la.output.op == "neuron" and la.ops[-1] is la.output
    # the v1 spikes of every recorded v2 node are in the trace
    assert {n.name for n in recorded(nodes)} <= set(wl.packed_spikes)


def test_v1_neuron_dynamics_match_verify_float_path():
    """A migrated neuron steps as v1's float64 IF: v = (1 - leak) v + I, v >= threshold, reset."""
    from snnsim.verify import _if_float

    rng = np.random.default_rng(0)
    cur = rng.standard_normal((1, 12, 3, 5)) * 0.7 + 0.4  # (samples, T, C, positions)
    theta = np.array([0.5, 1.0, 1.5])
    for leak, reset in ((0.0, "subtract"), (0.2, "zero"), (0.1, "subtract")):
        want = _if_float(cur, theta, leak, reset)[0]  # (T, C, P)
        model = neurons.neuron_model("snnsim.if", {"threshold": theta.reshape(3, 1), "leak": leak, "reset": reset})
        got, _ = neurons.run(model, cur[0])
        assert np.array_equal(got, want)


def test_tiny_trace_layers_and_kinds():
    wl = make_tiny_workload()
    from snnsim.workload.graph import check_graph

    check_graph(wl.layers, wl.input_shape)
    nodes = _migrated(wl)
    kinds = {n.name: n.kind for n in nodes}
    assert kinds == {"c0:conv2d": "current", "c0": "spikes", "c1:conv2d": "current", "c1": "spikes",
                     "f": "spikes", "fc": "current"}
    assert [(la.name, la.sources) for la in lower(nodes)] == [("c0", ["input"]), ("c1", ["c0"]), ("fc", ["c1"])]
