"""Format v2 layers on the hardware: the fast models against the reference models on random
graphs of every construct the core replays (biases, batch-norm affines, pooling of currents,
current and spike residual adds, SEW adds recorded as events or folded into a fan-out, IAND,
sum pools of spikes, global average pooling into a linear, two-state neurons, recurrence, readouts,
direct-encoded and rate-coded first layers), and hand-checked counts of each construct."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
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
