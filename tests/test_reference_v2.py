"""Format v2 layers on the hardware: the fast models against the reference models on random
graphs of every construct the core replays (biases, batch-norm affines, pooling of currents,
current and spike residual adds, SEW adds recorded as events or folded into a fan-out, IAND,
sum pools of spikes, global average pooling into a linear, two-state neurons, recurrence, readouts,
direct-encoded and rate-coded first layers), and hand-checked counts of each construct."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from snnsim.errors import MappingError, WorkloadError
from snnsim.hwconfig import load_hardware
from snnsim.workload.graphtrace import GraphTrace, to_workload
from snnsim.workload.nodes import Node, check_nodes, lower

from .test_reference import BASE, _simulate_both, _timing_friendly_hw

MODELS = [("snntorch.leaky", {"beta": 0.9}), ("snntorch.synaptic", {"alpha": 0.5, "beta": 0.9}),
          ("spikingjelly.if", {}), ("spikingjelly.lif", {"tau": 2.0}), ("snnsim.if", {})]


def N(name: str, op: str, inputs: list[str], **params) -> Node:
    return Node(name, op, list(inputs), params)


def _axis(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


def trace_of(nodes: list[Node], input_shape: tuple[int, ...], samples: int, steps: int, seed: int,
             rate: float = 0.3) -> GraphTrace:
    """A v2 trace of ``nodes`` with random weights and random recorded activity (the hardware
    replays whatever was recorded)."""
    rng = np.random.default_rng(seed)
    check_nodes(nodes, input_shape)
    by = {n.name: n for n in nodes}
    arrays: dict[str, np.ndarray] = {}
    for n in nodes:
        if n.op in ("conv1d", "conv2d", "conv3d", "linear"):
            src = n.inputs[0]
            c_in = input_shape[0] if src == "input" else by[src].out_shape[0]
            if n.op == "linear":
                shape = (n.out_shape[0], c_in)
            else:
                rank = len(n.out_shape) - 1
                k = n.params["kernel"]
                shape = (n.out_shape[0], c_in // n.params.get("groups", 1), *([k] * rank if isinstance(k, int) else k))
            arrays[f"weights/{n.name}"] = rng.standard_normal(shape).astype(np.float32)
            if n.params.get("bias"):
                arrays[f"bias/{n.name}"] = rng.standard_normal(n.out_shape[0]).astype(np.float32)
        if n.op in ("affine", "scale"):
            arrays[f"scale/{n.name}"] = rng.uniform(0.5, 1.5, n.out_shape[0]).astype(np.float32)
            if n.op == "affine":
                arrays[f"shift/{n.name}"] = rng.standard_normal(n.out_shape[0]).astype(np.float32)
    recorded = {}
    for la in lower(nodes):
        o = la.output
        if o.kind == "spikes":
            recorded[f"spikes/{o.name}"] = np.packbits(rng.random((samples, steps, o.size)) < rate, axis=-1)
        elif o.kind == "events":
            recorded[f"events/{o.name}"] = rng.integers(0, 3, (samples, steps, o.size)).astype(np.uint8)
    x = rng.random((samples, *input_shape)).astype(np.float32)
    return GraphTrace(nodes=nodes, input=x, recorded=recorded, arrays=arrays, time_steps=steps)


@st.composite
def v2_graphs(draw, p2m: bool):
    """A random v2 graph: a first layer the pixel array (or the core) can compute, then 1-3 blocks
    of the constructs format v1 could not hold."""
    c = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(4, 7)), draw(st.integers(4, 7))
    k0 = draw(st.integers(1, 2))
    c0 = draw(st.integers(1, 3))
    model, params = draw(st.sampled_from(MODELS))
    first = "conv" if p2m else draw(st.sampled_from(["conv", "conv", "conv", "rate", "fc_rec"]))
    if first == "rate":  # a rate code: IF neurons straight on the frame
        nodes = [N("n0", "neuron", ["input"], model="spikingjelly.if", v_reset=None)]
        shape = (c, h, w)
    elif first == "fc_rec":  # flatten -> linear -> RLeaky on the frame
        out = draw(st.integers(1, 4))
        nodes = [N("f0", "flatten", ["input"]), N("fc0", "linear", ["f0"], out_features=out, bias=True),
                 N("d0", "delay", ["n0"], shape=[out], kind="spikes"),
                 N("r0", draw(st.sampled_from(["linear", "scale"])), ["d0"],
                   **({"out_features": out} if draw(st.booleans()) else {})),
                 N("n0", "neuron", ["fc0", "r0"], model="snntorch.rleaky", beta=0.8)]
        if nodes[3].op == "linear" and "out_features" not in nodes[3].params:
            nodes[3].params["out_features"] = out
        if nodes[3].op == "scale":
            nodes[3].params.pop("out_features", None)
        shape = (out,)
    else:
        nodes = [N("c0", "conv2d", ["input"], out_channels=c0, kernel=k0, stride=k0, bias=draw(st.booleans()))]
        last = "c0"
        if draw(st.booleans()):
            nodes.append(N("bn0", "affine", [last]))
            last = "bn0"
        shape = (c0, _axis(h, k0, k0, 0), _axis(w, k0, k0, 0))
        if not p2m and draw(st.booleans()) and min(shape[1:]) >= 2:
            nodes.append(N("mp0", draw(st.sampled_from(["maxpool", "avgpool"])), [last], kernel=2))
            last = "mp0"
            shape = (c0, shape[1] // 2, shape[2] // 2)
        nodes.append(N("n0", "neuron", [last], model=model, **params))
    prev, prev2 = "n0", None
    for b in range(draw(st.integers(1, 3))):
        flat = len(shape) == 1
        kind = draw(st.sampled_from(["fc", "rec"] if flat else
                                    ["conv_bn_pool", "resnet", "sew_folded", "sew_events", "iand", "sumpool_conv",
                                     "gap_fc", "fc", "rec"]))
        model, params = draw(st.sampled_from(MODELS))
        p = f"b{b}"
        if kind == "conv_bn_pool":
            k = draw(st.integers(1, 3))
            pad = k // 2
            co = draw(st.integers(1, 3))
            nodes.append(N(f"{p}c", "conv2d", [prev], out_channels=co, kernel=k, padding=pad, bias=True))
            cur = f"{p}c"
            if draw(st.booleans()):
                nodes.append(N(f"{p}bn", "affine", [cur]))
                cur = f"{p}bn"
            shape = (co, *shape[1:])
            if min(shape[1:]) >= 2 and draw(st.booleans()):
                nodes.append(N(f"{p}pool", draw(st.sampled_from(["maxpool", "avgpool", "sumpool"])), [cur], kernel=2))
                cur = f"{p}pool"
                shape = (co, shape[1] // 2, shape[2] // 2)
            nodes.append(N(f"{p}n", "neuron", [cur], model=model, **params))
            prev2, prev = prev, f"{p}n"
        elif kind == "resnet":  # IF(bn(conv(x)) + shortcut(x)), shortcut spikes or a 1x1 conv
            nodes += [N(f"{p}c", "conv2d", [prev], out_channels=shape[0], kernel=3, padding=1),
                      N(f"{p}bn", "affine", [f"{p}c"])]
            if draw(st.booleans()):
                nodes.append(N(f"{p}add", "add", [f"{p}bn", prev]))
            else:
                nodes += [N(f"{p}sc", "conv2d", [prev], out_channels=shape[0], kernel=1),
                          N(f"{p}add", "add", [f"{p}bn", f"{p}sc"])]
            nodes.append(N(f"{p}n", "neuron", [f"{p}add"], model=model, **params))
            prev2, prev = prev, f"{p}n"
        elif kind in ("sew_folded", "sew_events"):  # SEW: ADD of the block's spikes and its input
            nodes += [N(f"{p}c", "conv2d", [prev], out_channels=shape[0], kernel=3, padding=1),
                      N(f"{p}n", "neuron", [f"{p}c"], model=model, **params),
                      N(f"{p}add", "add", [f"{p}n", prev])]
            if kind == "sew_events":  # read by two layers: recorded as events
                co = draw(st.integers(1, 3))
                nodes += [N(f"{p}c2", "conv2d", [f"{p}add"], out_channels=co, kernel=1),
                          N(f"{p}n2", "neuron", [f"{p}c2"], model="snnsim.if"),
                          N(f"{p}c3", "conv2d", [f"{p}add"], out_channels=co, kernel=1),
                          N(f"{p}n3", "neuron", [f"{p}c3"], model="snnsim.if"),
                          N(f"{p}j", "add", [f"{p}n2", f"{p}n3"])]
                shape = (co, *shape[1:])
                prev2, prev = f"{p}n2", f"{p}j"
                nodes.append(N(f"{p}jn", "neuron", [f"{p}j"], model="snnsim.if"))
                prev = f"{p}jn"
            else:
                co = draw(st.integers(1, 3))
                nodes += [N(f"{p}c2", "conv2d", [f"{p}add"], out_channels=co, kernel=3, padding=1),
                          N(f"{p}n2", "neuron", [f"{p}c2"], model=model, **params)]
                shape = (co, *shape[1:])
                prev2, prev = prev, f"{p}n2"
        elif kind == "iand":
            nodes += [N(f"{p}c", "conv2d", [prev], out_channels=shape[0], kernel=1),
                      N(f"{p}n", "neuron", [f"{p}c"], model=model, **params),
                      N(f"{p}iand", "iand", [f"{p}n", prev])]
            prev2, prev = prev, f"{p}iand"
        elif kind == "sumpool_conv" and min(shape[1:]) >= 2:
            co = draw(st.integers(1, 3))
            nodes += [N(f"{p}sp", "sumpool", [prev], kernel=2, stride=draw(st.integers(1, 2))),
                      N(f"{p}c", "conv2d", [f"{p}sp"], out_channels=co, kernel=1),
                      N(f"{p}n", "neuron", [f"{p}c"], model=model, **params)]
            s = nodes[-3].params["stride"]
            shape = (co, _axis(shape[1], 2, s, 0), _axis(shape[2], 2, s, 0))
            prev2, prev = prev, f"{p}n"
        elif kind == "gap_fc" or kind == "sumpool_conv":
            out = draw(st.integers(1, 4))
            nodes += [N(f"{p}gap", "avgpool", [prev], kernel=list(shape[1:])),
                      N(f"{p}f", "flatten", [f"{p}gap"]),
                      N(f"{p}fc", "linear", [f"{p}f"], out_features=out, bias=True),
                      N(f"{p}n", "neuron", [f"{p}fc"], model=model, **params)]
            shape = (out,)
            prev2, prev = prev, f"{p}n"
        else:  # fc, or a recurrent RLeaky
            out = draw(st.integers(1, 4))
            src = prev
            if len(shape) > 1:
                nodes.append(N(f"{p}f", "flatten", [prev]))
                src = f"{p}f"
            nodes.append(N(f"{p}fc", "linear", [src], out_features=out, bias=draw(st.booleans())))
            if kind == "rec":
                nodes += [N(f"{p}d", "delay", [f"{p}n"], shape=[out], kind="spikes"),
                          N(f"{p}r", "linear", [f"{p}d"], out_features=out, bias=True),
                          N(f"{p}n", "neuron", [f"{p}fc", f"{p}r"], model="snntorch.rleaky", beta=0.8)]
            else:
                nodes.append(N(f"{p}n", "neuron", [f"{p}fc"], model=model, **params))
            shape = (out,)
            prev2, prev = prev, f"{p}n"
    del prev2
    if draw(st.booleans()):  # a readout: a current, or an LI membrane
        src = prev
        if len(shape) > 1:
            nodes.append(N("of", "flatten", [prev]))
            src = "of"
        nodes.append(N("out", "linear", [src], out_features=draw(st.integers(1, 3)), bias=True))
        if draw(st.booleans()):
            nodes.append(N("li", "neuron", ["out"], model="nir.li", tau=2e-3))
    return nodes, (c, h, w)


@st.composite
def v2_systems(draw, kind: str):
    nodes, shape = draw(v2_graphs(kind == "p2m"))
    for n in nodes:  # which constructs the examples cover (pytest --hypothesis-show-statistics)
        event(n.op if n.op != "neuron" else str(n.params["model"]))
    event(f"first layer {nodes[0].op} on the frame")
    gt = trace_of(nodes, shape, draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(0, 2**31)),
                  rate=draw(st.sampled_from([0.0, 0.1, 0.4, 1.0])))
    wl = to_workload(gt)
    config, wl = _timing_friendly_hw(draw, kind, wl)
    if draw(st.integers(0, 3)):  # mostly buffers that hold every layer (v2 layers are not tiled)
        config["core"].update(weight_sram_kib=64.0, membrane_sram_kib=64.0)
    return load_hardware(config), wl


@settings(**BASE, max_examples=150)
@given(v2_systems("conventional"))
def test_v2_simulate_matches_reference_conventional(system):
    _simulate_both(*system)


@settings(**BASE, max_examples=100)
@given(v2_systems("p2m"))
def test_v2_simulate_matches_reference_p2m(system):
    _simulate_both(*system)


# ---------------------------------------------------------------------------------------------
# each construct's charges, by hand
# ---------------------------------------------------------------------------------------------

def _hand_hw(kind: str = "conventional", c0: int = 2, **core):
    """A mono 4x4 sensor, vector width 2, no pipeline fill, buffers that hold everything."""
    return load_hardware({
        "sensor": {"kind": kind, "pixel_rows": 4, "pixel_cols": 4, "photodiodes_per_pixel": 1,
                   "p2m": {"kernel": 1, "stride": 1, "out_channels": c0}},
        "link": {"gbps_per_lane": 1.0},
        "core": {"clock_mhz": 1000.0, "vector_width": 2, "pipeline_depth": 0, "weight_bits": 8,
                 "weight_sram_kib": 64.0, "membrane_sram_kib": 64.0, "spike_sram_kib": 64.0, **core}})


def _counts(hw, gt: GraphTrace) -> dict:
    """Core counters per layer name, (samples, steps) each, from both models (they must agree)."""
    from .test_reference import _cores

    wl = to_workload(gt)
    counters, ref = _cores(hw, wl)
    return {name: {k: counters[k][:, i, :] for k in counters} for i, name in enumerate(ref.layer_names)}


def _spikes(samples: int, steps: int, shape, on: list[tuple[int, int, int]]) -> np.ndarray:
    """Packed spikes with the given (sample, step, flat neuron) set."""
    a = np.zeros((samples, steps, math.prod(shape)), bool)
    for s, t, n in on:
        a[s, t, n] = True
    return np.packbits(a, axis=-1)


def test_bias_affine_and_a_pool_of_currents_are_dense_passes_every_step():
    # input 1x4x4 -> conv 1x1 (2 ch, bias) -> affine -> maxpool 2 -> LIF: on the conventional chip
    # the encoding conv's currents are computed once, and so are its passes (the frame is constant)
    nodes = [N("c", "conv2d", ["input"], out_channels=2, kernel=1, bias=True), N("bn", "affine", ["c"]),
             N("mp", "maxpool", ["bn"], kernel=2), N("n", "neuron", ["mp"], model="snntorch.leaky", beta=0.5),
             N("f", "flatten", ["n"]), N("fc", "linear", ["f"], out_features=3, bias=True),
             N("b", "affine", ["fc"]), N("n2", "neuron", ["b"], model="snntorch.synaptic", alpha=0.5, beta=0.5)]
    gt = trace_of(nodes, (1, 4, 4), samples=1, steps=2, seed=0, rate=0.0)
    gt.recorded["spikes/n"] = _spikes(1, 2, (2, 2, 2), [(0, 0, 0), (0, 1, 5), (0, 1, 6)])
    c = _counts(_hand_hw(), gt)
    # layer n: 16 positions x 1 channel in, 2 out channels (one vector op each) = 16 MAC vector ops at
    # step 0; passes at step 0 only: the conv's bias and the affine over 16 positions x ceil(2/2),
    # the maxpool over 4 positions
    assert c["n"]["macs"].tolist() == [[32, 0]]
    assert c["n"]["vector_ops"].tolist() == [[16 + 16 + 16 + 4, 0]]
    # the held current (8 values) is added to the membranes every step; the neuron pass: 4
    # positions x 1 vector op, 8 compares
    assert c["n"]["synaptic_ops"].tolist() == [[8, 8]]
    assert c["n"]["fire_ops"].tolist() == [[4, 4]] and c["n"]["compares"].tolist() == [[8, 8]]
    # layer n2: one spike at step 0 and two at step 1, each to 3 outputs in ceil(3/2) = 2 vector ops;
    # every step the linear's bias is added to its 3 accumulators (2 vector ops) and the affine
    # pass reads them and adds into the membrane (2 vector ops);
    # Synaptic keeps two states: ceil(3/2) fire ops per state, 2 x 3 membrane values read and written
    assert c["n2"]["synaptic_ops"].tolist() == [[3, 6]]
    assert c["n2"]["vector_ops"].tolist() == [[2 + 2 + 2, 4 + 2 + 2]]
    assert c["n2"]["fire_ops"].tolist() == [[4, 4]] and c["n2"]["compares"].tolist() == [[3, 3]]
    mem = 16  # the default membrane bits
    # reads: 3 updates (scatter) + bias (3) + affine (3 in + 3 membrane) + neuron 2 x 3, at step 0
    assert c["n2"]["membrane_read_bits"][0, 0] == (3 + 3 + 3 + 3 + 6) * mem


def test_a_recurrent_edge_delivers_the_previous_step():
    nodes = [N("c", "conv2d", ["input"], out_channels=2, kernel=1), N("n", "neuron", ["c"], model="snnsim.if"),
             N("f", "flatten", ["n"]), N("fc", "linear", ["f"], out_features=4),
             N("d", "delay", ["r"], shape=[4], kind="spikes"), N("w", "linear", ["d"], out_features=4),
             N("r", "neuron", ["fc", "w"], model="snntorch.rleaky", beta=0.5)]
    gt = trace_of(nodes, (1, 4, 4), samples=1, steps=3, seed=0, rate=0.0)
    gt.recorded["spikes/r"] = _spikes(1, 3, (4,), [(0, 0, 1), (0, 0, 2), (0, 1, 3)])
    c = _counts(_hand_hw(), gt)
    # no spikes from n: only the recurrent edge works, one step late: 2 spikes x 4 at step 1, 1 x 4 at step 2
    assert c["r"]["synaptic_ops"].tolist() == [[0, 8, 4]]
    assert c["r"]["input_spikes"].tolist() == [[0, 2, 1]]


def test_a_sum_of_spikes_read_once_is_delivered_through_its_pool_and_events_are_multiplied():
    # n (2x4x4) -> sumpool 2 stride 1 -> conv 1x1 -> n2: a spike at the corner reaches 1 pooled
    # position, one in the middle 4; each pooled position updates 3 channels (2 vector ops)
    nodes = [N("c", "conv2d", ["input"], out_channels=2, kernel=1), N("n", "neuron", ["c"], model="snnsim.if"),
             N("sp", "sumpool", ["n"], kernel=2, stride=1), N("c2", "conv2d", ["sp"], out_channels=3, kernel=1),
             N("n2", "neuron", ["c2"], model="snnsim.if"),
             # a SEW add recorded as events (two readers), multiplied into a conv
             N("e", "add", ["n2", "n2"]), N("c3", "conv2d", ["e"], out_channels=2, kernel=1),
             N("n3", "neuron", ["c3"], model="snnsim.if"), N("c4", "conv2d", ["e"], out_channels=2, kernel=1),
             N("n4", "neuron", ["c4"], model="snnsim.if")]
    gt = trace_of(nodes, (1, 4, 4), samples=1, steps=1, seed=0, rate=0.0)
    gt.recorded["spikes/n"] = _spikes(1, 1, (2, 4, 4), [(0, 0, 0), (0, 0, 5)])  # (0,0) and (1,1)
    ev = np.zeros((1, 1, 27), np.uint8)
    ev[0, 0, [0, 4]] = [2, 1]
    gt.recorded["events/e"] = ev
    c = _counts(_hand_hw(), gt)
    assert c["n2"]["input_spikes"].tolist() == [[2]]
    assert c["n2"]["synaptic_ops"].tolist() == [[(1 + 4) * 3]]
    assert c["n2"]["vector_ops"].tolist() == [[(1 + 4) * 2]]
    # two non-zero events, each to 2 channels: 4 updates, each a multiply by the count
    assert c["n3"]["synaptic_ops"].tolist() == [[4]] and c["n3"]["macs"].tolist() == [[4]]
    # the events map is stored at 2 bits a value (counts up to 2)
    wl = to_workload(gt)
    assert wl.layer("e").parts.out_bits == 2


def test_what_the_pixels_cannot_compute_is_refused_on_p2m():
    nodes = [N("c", "conv2d", ["input"], out_channels=2, kernel=1), N("mp", "maxpool", ["c"], kernel=2),
             N("n", "neuron", ["mp"], model="snnsim.if")]
    gt = trace_of(nodes, (1, 4, 4), samples=1, steps=1, seed=0)
    from snnsim import simulate

    with pytest.raises(MappingError, match="P2M sensor computes a conv2d"):
        simulate(_hand_hw("p2m"), to_workload(gt))
    ok = [N("c", "conv2d", ["input"], out_channels=2, kernel=1, bias=True), N("bn", "affine", ["c"]),
          N("n", "neuron", ["bn"], model="snntorch.leaky", beta=0.9)]
    report = simulate(_hand_hw("p2m"), to_workload(trace_of(ok, (1, 4, 4), samples=1, steps=2, seed=0)))
    assert report.meta["workload"]["layers"][0]["runs_on"] == "sensor"


def test_a_weighted_op_on_a_current_of_the_same_layer_is_refused():
    nodes = [N("c", "conv2d", ["input"], out_channels=2, kernel=1), N("n", "neuron", ["c"], model="snnsim.if"),
             N("a", "conv2d", ["n"], out_channels=2, kernel=1), N("b", "linear", ["fa"], out_features=2),
             N("fa", "flatten", ["a"]), N("n2", "neuron", ["b"], model="snnsim.if")]
    with pytest.raises(WorkloadError, match="weighted op reads a current"):
        to_workload(trace_of(nodes, (1, 4, 4), samples=1, steps=1, seed=0))


def test_a_hybrid_3d_2d_reshape_delivers_each_depth_through_the_2d_window():
    """(C, D, H, W) spikes -> reshape (C * D, H, W) -> conv2d: the fast fan-out table equals the
    reference's spike-by-spike delivery; a reshape that splits channels is refused."""
    from snnsim.hw.synapses import synapse_fanout
    from snnsim.reference.parts import chain_targets
    from snnsim.workload.hwlayer import Synapse

    src = (2, 3, 5, 4)  # C, D, H, W
    rs = N("rs", "reshape", ["x"], shape=[6, 5, 4])
    cv = N("cv", "conv2d", ["rs"], out_channels=4, kernel=3, stride=2, padding=1)
    rs.out_shape, cv.out_shape = (6, 5, 4), (4, 3, 2)
    sy = Synapse("x", "spikes", False, (rs, cv), "cv", True)
    taps, c_group = synapse_fanout(sy, src, "layer")
    assert c_group == 4 and taps.shape == (3 * 5 * 4,)
    for c in range(src[0]):
        for d in range(src[1]):
            for h in range(src[2]):
                for w in range(src[3]):
                    reached = chain_targets(sy, c, (d, h, w), src)
                    assert len(reached) == taps[(d * src[2] + h) * src[3] + w]
    split = N("sp", "reshape", ["x"], shape=[2, 3, 5, 4])
    c3 = N("c3", "conv3d", ["sp"], out_channels=2, kernel=3, padding=1)
    split.out_shape, c3.out_shape = (2, 3, 5, 4), (2, 3, 5, 4)
    with pytest.raises(MappingError, match="cannot deliver spikes"):
        synapse_fanout(Synapse("x", "spikes", False, (split, c3), "c3", True), (6, 5, 4), "layer")
