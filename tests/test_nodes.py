"""The format v2 graph (snnsim.workload.nodes): the architectures people train check, with the
value kind and shape of every node, and the graphs that cannot be held get one clear error."""

from __future__ import annotations

import pytest
from snnsim.errors import WorkloadError
from snnsim.workload.nodes import Node, check_nodes, lower, recorded


def N(name, op, inputs, **params):
    return Node(name, op, list(inputs), params)


def kinds(nodes):
    return {n.name: (n.kind, n.out_shape) for n in nodes}


def test_snntorch_tutorial_cnn_pools_currents_before_its_neurons():
    """Conv2d -> MaxPool2d -> Leaky -> Conv2d -> MaxPool2d -> Leaky -> Linear -> Leaky, with biases."""
    g = [N("conv1", "conv2d", ["input"], out_channels=12, kernel=5, bias=True),
         N("pool1", "maxpool", ["conv1"], kernel=2),
         N("lif1", "neuron", ["pool1"], model="snntorch.leaky", beta=0.9),
         N("conv2", "conv2d", ["lif1"], out_channels=64, kernel=5, bias=True),
         N("pool2", "maxpool", ["conv2"], kernel=2),
         N("lif2", "neuron", ["pool2"], model="snntorch.leaky", beta=0.9),
         N("flat", "flatten", ["lif2"]),
         N("fc", "linear", ["flat"], out_features=10, bias=True),
         N("lif3", "neuron", ["fc"], model="snntorch.leaky", beta=0.9)]
    check_nodes(g, (1, 28, 28))
    k = kinds(g)
    assert k["conv1"] == ("current", (12, 24, 24)) and k["pool1"] == ("current", (12, 12, 12))
    assert k["lif1"] == ("spikes", (12, 12, 12)) and k["pool2"] == ("current", (64, 4, 4))
    assert k["flat"] == ("spikes", (1024,)) and k["fc"] == ("current", (10,))
    # a flatten of spikes read by one layer is part of that layer's fan-out, not recorded
    assert [n.name for n in recorded(g)] == ["lif1", "lif2", "lif3"]


def test_spiking_resnet_adds_currents_and_sew_resnet_adds_spikes():
    block = [N("conv1", "conv2d", ["input"], out_channels=8, kernel=3, padding=1),
             N("bn1", "affine", ["conv1"]),
             N("sn1", "neuron", ["bn1"], model="spikingjelly.if"),
             N("conv2", "conv2d", ["sn1"], out_channels=8, kernel=3, padding=1),
             N("bn2", "affine", ["conv2"]),
             N("short", "conv2d", ["sn1"], out_channels=8, kernel=1),
             N("sum", "add", ["bn2", "short"]),
             N("sn2", "neuron", ["sum"], model="spikingjelly.if"),
             # SEW: the block's spikes plus the identity's spikes, no neuron after
             N("conv3", "conv2d", ["sn2"], out_channels=8, kernel=3, padding=1),
             N("sn3", "neuron", ["conv3"], model="spikingjelly.if"),
             N("sew", "add", ["sn3", "sn2"]),
             N("andnot", "iand", ["sn3", "sn2"]),
             N("gap", "avgpool", ["sew"], kernel=8),
             N("flat", "flatten", ["gap"]),
             N("head", "linear", ["flat"], out_features=10),
             N("next", "conv2d", ["sew"], out_channels=8, kernel=1),  # two layers read the SEW sum
             N("sn4", "neuron", ["next"], model="spikingjelly.if")]
    check_nodes(block, (3, 8, 8))
    k = kinds(block)
    assert k["sum"][0] == "current" and k["sn2"][0] == "spikes"
    assert k["sew"] == ("events", (8, 8, 8)) and k["andnot"] == ("spikes", (8, 8, 8))
    assert k["gap"] == ("current", (8, 1, 1)) and k["head"] == ("current", (10,))
    assert {n.name for n in recorded(block)} == {"sn1", "sn2", "sn3", "sew", "andnot", "sn4"}


def test_recurrence_through_a_delay_and_flatten_of_the_analog_input():
    g = [N("flat", "flatten", ["input"]),
         N("fc", "linear", ["flat"], out_features=16),
         N("rec", "linear", ["back"], out_features=16),
         N("join", "add", ["fc", "rec"]),
         N("lif", "neuron", ["join"], model="snntorch.rleaky", beta=0.9),
         N("back", "delay", ["lif"], shape=[16], kind="spikes"),
         N("out", "linear", ["lif"], out_features=4),
         N("li", "neuron", ["out"], model="spikingjelly.lif", tau=2.0)]
    check_nodes(g, (1, 4, 4))
    k = kinds(g)
    assert k["flat"] == ("analog", (16,)) and k["back"] == ("spikes", (16,)) and k["join"][0] == "current"


def test_sum_pool_of_spikes_gives_events_and_of_currents_a_current():
    g = [N("c", "conv1d", ["input"], out_channels=2, kernel=3), N("s", "neuron", ["c"], model="snntorch.leaky", beta=0.9),
         N("sp", "sumpool", ["s"], kernel=2), N("cp", "sumpool", ["c"], kernel=2),
         N("mp", "maxpool", ["s"], kernel=2), N("r", "reshape", ["sp"], shape=[2, 4])]
    check_nodes(g, (1, 10))
    k = kinds(g)
    assert k["c"] == ("current", (2, 8)) and k["sp"] == ("events", (2, 4)) and k["cp"] == ("current", (2, 4))
    assert k["mp"] == ("spikes", (2, 4)) and k["r"] == ("events", (2, 4))


@pytest.mark.parametrize(("graph", "key", "words"), [
    ([N("a", "add", ["b"]), N("b", "add", ["a"])], "nodes.a", "cycle"),
    ([N("d", "delay", ["n"], shape=[3]), N("n", "neuron", ["input"], model="spikingjelly.if")], "nodes.d", "declared shape"),
    ([N("x", "conv2d", ["input"], out_channels=2, kernel=9)], "nodes.x", "larger than"),
    ([N("x", "linear", ["input"], out_features=2)], "nodes.x.inputs", "flat input"),
    ([N("x", "iand", ["input", "input"])], "nodes.x.inputs", "spike maps"),
    ([N("x", "reshape", ["input"], shape=[5])], "nodes.x.shape", "number of values"),
    ([N("x", "conv2d", ["input"], out_channels=3, kernel=1, groups=2)], "nodes.x.groups", "divide"),
    ([N("x", "convolve", ["input"])], "nodes.x.op", "unsupported"),
    ([N("x", "neuron", ["nope"], model="spikingjelly.if")], "nodes.x.inputs", "names no node"),
    ([N("x", "neuron", ["input"], model="spikingjelly.if"), N("x", "neuron", ["input"], model="spikingjelly.if")],
     "nodes.x", "duplicate"),
    ([N("x", "neuron", ["input"], model="snntorch.leakyy", beta=0.9)], "nodes.x.model", "unknown neuron"),
    ([N("x", "neuron", ["input"], model="snntorch.leaky")], "nodes.x.beta", "needs beta"),
    ([N("x", "neuron", ["input"], model="snntorch.leaky", beta=0.9, reset_delay="no")], "nodes.x.reset_delay",
     "true or false"),
    ([N("x", "neuron", ["input"], model="snntorch.leaky", beta=float("nan"))], "nodes.x.beta", "finite"),
    ([N("x", "neuron", ["input"], model="spikingjelly.if", tau=2.0)], "nodes.x.tau", "no parameter"),
])
def test_graphs_that_cannot_be_held_get_one_clear_error(graph, key, words):
    with pytest.raises(WorkloadError) as e:
        check_nodes(graph, (2, 4, 4))
    assert e.value.key == key and words in e.value.message, e.value.render()


def _layers(g, shape):
    from snnsim.workload.nodes import lower

    check_nodes(g, shape)
    return {la.name: ([n.name for n in la.ops], la.sources, la.readout) for la in lower(g)}


def test_layers_are_a_neuron_with_the_current_ops_that_feed_it():
    g = [N("conv1", "conv2d", ["input"], out_channels=4, kernel=3, padding=1, bias=True),
         N("bn1", "affine", ["conv1"]), N("pool1", "maxpool", ["bn1"], kernel=2),
         N("lif1", "neuron", ["pool1"], model="snntorch.leaky", beta=0.9),
         N("conv2", "conv2d", ["lif1"], out_channels=4, kernel=3, padding=1),
         N("short", "conv2d", ["lif1"], out_channels=4, kernel=1),
         N("sum", "add", ["conv2", "short"]), N("lif2", "neuron", ["sum"], model="snntorch.leaky", beta=0.9),
         N("sew", "add", ["lif2", "lif1"]), N("gap", "avgpool", ["sew"], kernel=4),
         N("flat", "flatten", ["gap"]), N("fc", "linear", ["flat"], out_features=3)]
    lay = _layers(g, (3, 8, 8))
    assert lay["lif1"] == (["conv1", "bn1", "pool1", "lif1"], ["input"], False)
    assert lay["lif2"] == (["conv2", "short", "sum", "lif2"], ["lif1"], False)
    # the SEW sum is read by one layer only: it is part of the readout's fan-out
    assert lay["fc"] == (["sew", "gap", "flat", "fc"], ["lif2", "lif1"], True)
    assert list(lay) == ["lif1", "lif2", "fc"]


def test_a_recurrent_layer_reads_its_own_previous_spikes_through_the_delay():
    g = [N("flat", "flatten", ["input"]), N("fc", "linear", ["flat"], out_features=6),
         N("rec", "linear", ["back"], out_features=6), N("join", "add", ["fc", "rec"]),
         N("lif", "neuron", ["join"], model="snntorch.rleaky", beta=0.9),
         N("back", "delay", ["lif"], shape=[6], kind="spikes")]
    lay = _layers(g, (1, 2, 3))
    assert lay == {"lif": (["flat", "fc", "rec", "join", "lif"], ["input", "back"], False)}


def test_a_current_feeding_two_layers_is_refused():
    from snnsim.workload.nodes import lower

    g = [N("c", "conv2d", ["input"], out_channels=2, kernel=1), N("a", "neuron", ["c"], model="spikingjelly.if"),
         N("b", "neuron", ["c"], model="spikingjelly.if")]
    check_nodes(g, (1, 2, 2))
    with pytest.raises(WorkloadError) as e:
        lower(g)
    assert e.value.key == "nodes.c" and "more than one layer" in e.value.message


def test_nodes_round_trip_through_their_manifest_form():
    import json

    from snnsim.workload.nodes import node_as_dict, node_from_dict

    g = [N("c", "conv2d", ["input"], out_channels=2, kernel=[3, 3], bias=True, weight_bits=4),
         N("lif", "neuron", ["c"], model="snntorch.leaky", beta={"array": "params/lif/beta"}, reset="zero")]
    back = [node_from_dict(d, i) for i, d in enumerate(json.loads(json.dumps([node_as_dict(n) for n in g])))]
    assert [(n.name, n.op, n.inputs, n.params) for n in back] == [(n.name, n.op, n.inputs, n.params) for n in g]


@pytest.mark.parametrize(("d", "key"), [
    ([], "nodes[0]"), ({"op": "add", "inputs": ["input"]}, "nodes[0].name"),
    ({"name": "a", "op": 3, "inputs": ["input"]}, "nodes.a.op"),
    ({"name": "a", "op": "add", "inputs": []}, "nodes.a.inputs"),
    ({"name": "a", "op": "add", "inputs": ["input"], "params": [1]}, "nodes.a.params"),
    ({"name": "a", "op": "add", "inputs": ["input"], "params": {"k": [1.5]}}, "nodes.a.params.k"),
    ({"name": "a", "op": "add", "inputs": ["input"], "params": {"k": {"arr": "x"}}}, "nodes.a.params.k"),
    ({"name": "a", "op": "add", "inputs": ["input"], "params": {"k": float("inf")}}, "nodes.a.params.k"),
    ({"name": "a", "op": "add", "inputs": ["input"], "parms": {}}, "nodes[0].parms"),
])
def test_malformed_manifest_nodes_are_refused(d, key):
    from snnsim.workload.nodes import node_from_dict

    with pytest.raises(WorkloadError) as e:
        node_from_dict(d, 0)
    assert e.value.key == key


def test_recurrent_neuron_takes_its_delayed_spikes_as_a_second_input():
    nodes = [Node("fc", "linear", ["input"], {"out_features": 5}),
             Node("d", "delay", ["lif"], {"shape": [5], "kind": "spikes"}),
             Node("rec", "linear", ["d"], {"out_features": 5}),
             Node("lif", "neuron", ["fc", "rec"], {"model": "snntorch.rleaky", "beta": 0.9}),
             Node("out", "linear", ["lif"], {"out_features": 3})]
    check_nodes(nodes, (8,))
    (lif, out) = lower(nodes)
    assert [n.name for n in lif.ops] == ["fc", "rec", "lif"] and lif.sources == ["input", "d"]
    assert out.readout and out.sources == ["lif"]
    bad = [Node("fc", "linear", ["input"], {"out_features": 5}),
           Node("fc2", "linear", ["input"], {"out_features": 5}),
           Node("lif", "neuron", ["fc", "fc2"], {"model": "snntorch.leaky", "beta": 0.9})]
    with pytest.raises(WorkloadError, match="exactly one input") as e:
        check_nodes(bad, (8,))
    assert "rleaky" in e.value.suggestion


def test_membrane_readouts_are_currents_at_the_network_output():
    nodes = [Node("fc", "linear", ["input"], {"out_features": 4}),
             Node("li", "neuron", ["fc"], {"model": "nir.li", "tau": 2e-3})]
    check_nodes(nodes, (8,))
    assert nodes[1].kind == "current" and lower(nodes)[0].readout and recorded(nodes) == []
    mem = [Node("fc", "linear", ["input"], {"out_features": 4}),
           Node("lif", "neuron", ["fc"], {"model": "snntorch.leaky", "beta": 0.5, "output": "membrane"}),
           Node("fc2", "linear", ["lif"], {"out_features": 2})]
    check_nodes(mem, (8,))
    with pytest.raises(WorkloadError, match="membrane feeds other nodes"):
        lower(mem)
    with pytest.raises(WorkloadError, match="spikes or its membrane"):
        check_nodes([Node("li", "neuron", ["input"], {"model": "nir.li", "output": "spikes"})], (8,))
