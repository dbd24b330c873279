"""Operation counts of a workload as NeuroBench defines them (hardware-independent).

NeuroBench 2.x counts synaptic operations in ``SynapticOperations``
(``neurobench/metrics/workload/synaptic_operations.py``), with the per-layer arithmetic in
``single_layer_MACs`` and ``stateless_layer_macs`` (``neurobench/metrics/utils/layers/macs.py``),
``binary_inputs`` (``.../layers/input.py``) and ``make_binary_copy`` (``.../layers/binary_copy.py``).
What it does, and what this module reproduces exactly:

- **Which layers.** Only *connection layers* are hooked (``NeuroBenchModel.connection_layers``,
  ``neurobench/blocks/layer.py``: ``nn.Linear``, ``nn.Conv1d/2d/3d`` and recurrent layers). Pooling,
  residual adds, flatten and the neurons count nothing. Here: ``conv2d``, ``conv3d``, ``linear``.
- **Per forward call** of a layer (one call per time step when the model steps through time, as
  ``SNNTorchModel`` does), the input is copied and binarised (non-zero -> 1), the layer's weights
  are binarised (non-zero -> 1) and its **bias zeroed** ("bias is not considered as a synaptic
  operation"), the binary layer is run on the binary input and its outputs summed. So an
  *effective* operation is one (non-zero input, non-zero weight) pair that reaches an output
  neuron: zero weights and zero inputs count nothing, and a convolution's zero **padding counts
  nothing** (a border input reaches fewer outputs, a border output sums fewer inputs).
- **MAC or AC.** The call counts as ACs when every input value is 0, 1 or -1 (``binary_inputs``:
  spikes), otherwise as MACs. The test is over the whole input tensor of the call, i.e. over the
  batch. Here spikes are ACs; a layer reading the analog ``input`` counts MACs unless every value of
  the trace's ``input`` is 0 or 1 (then NeuroBench would call it ACs, and so do we). With several
  batches NeuroBench decides per batch; the result is the same unless a batch happens to hold
  only 0/1 values.
- **Dense** (``total=True``): the same run with *all-ones* inputs and *all-ones* weights, bias
  zeroed: every weight x every in-bounds input position, zero weights included, padding excluded.
- **Time and samples.** Every call is summed (all time steps, all batches); ``compute()`` divides
  by the number of samples (``data[0].size(0)`` summed over batches). So the figures are **per
  sample, summed over time steps**, and a direct-encoded first layer, called at every step on
  the same image, counts its MACs T times.

NeuroBench returns ``{"Effective_MACs", "Effective_ACs", "Dense"}``; its internal accumulator of
the dense count is named ``total_synops``. Here ``synops`` is ``effective_macs + effective_acs``
(all effective synaptic operations), and ``neurobench`` holds NeuroBench's own three keys.

Relation to snnsim's core counters (``snnsim.hw.core``, per frame = per sample):

- ``synaptic_ops`` of a conv/linear layer fed by spikes counts spike x (output positions its
  window reaches, padding excluded) x output channels per group = **effective ACs when no weight
  is zero** (the core does the accumulate whatever the weight; NeuroBench skips zero weights).
- ``synaptic_ops`` also counts avgpool/maxpool/add accumulates (one per spike and tap) and, for a
  direct-encoded first layer on the core, one current addition per output neuron and step: none
  of these are NeuroBench operations.
- ``macs`` of a direct-encoded first layer on the core are its in-bounds MACs counted **once**
  (the currents are reused at every step): NeuroBench's ``Dense`` of that layer / T, and
  NeuroBench's effective MACs / T when the input and weights have no zeros.
- ``dense_macs`` = out neurons x (C_in / groups) x kernel elements per step, summed over steps:
  it **includes padding taps**, so it exceeds NeuroBench's ``Dense`` by the padded taps of every
  padded convolution; it is equal for unpadded layers. ``dense_macs`` excludes a layer computed in
  the sensor (P2M), which NeuroBench counts.
- ``ops_*_per_frame`` and TOPS/W in the report count 2 ops per MAC/AC; NeuroBench counts 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..workload.graph import Layer
from ..workload.trace import Workload

#: ops NeuroBench counts (its connection layers)
COUNTED_OPS = ("conv2d", "conv3d", "linear")

SOURCE = ("NeuroBench SynapticOperations (neurobench/metrics/workload/synaptic_operations.py; "
          "single_layer_MACs in neurobench/metrics/utils/layers/macs.py)")


def _axis_valid(in_len: int, k: int, s: int, p: int, out_len: int, dilation: int = 1) -> np.ndarray:
    """valid[d, i]: input index i reaches an output through kernel offset d along one axis."""
    d = np.arange(k)[:, None]
    i = np.arange(in_len)[None, :]
    q = i + p - d * dilation
    o = q // s
    return (q >= 0) & (q % s == 0) & (o < out_len)


def fanout(layer: Layer, weights: np.ndarray | None) -> np.ndarray:
    """Per input neuron (flattened channels-first ``in_shape``): how many (output neuron, weight)
    pairs it reaches through non-zero weights (all weights when ``weights`` is None), padding
    excluded. Summed over the input neurons this is NeuroBench's dense count of one call."""
    if layer.op == "linear":
        if weights is None:
            return np.full(layer.in_shape[0], layer.out_shape[0], np.int64)
        return np.count_nonzero(np.asarray(weights) != 0, axis=0).astype(np.int64)
    c_in = layer.in_shape[0]
    sp_in, sp_out = layer.in_shape[1:], layer.out_shape[1:]
    c_out, g = layer.out_shape[0], layer.groups
    cg, cog = c_in // g, c_out // g
    n_off = math.prod(layer.kernel)
    # valid[offset, position]: the input position reaches an output through that kernel offset
    valid = np.ones((1, 1), bool)
    dilation = layer.extra.get("dilation", (1,) * len(sp_in))
    for n, k, s, p, o, d in zip(sp_in, layer.kernel, layer.stride, layer.padding, sp_out, dilation, strict=True):
        a = _axis_valid(n, k, s, p, o, d)
        valid = (valid[:, None, :, None] & a[None, :, None, :]).reshape(valid.shape[0] * k, -1)
    if weights is None:
        nz = np.full((c_in, n_off), cog, np.int64)
    else:
        w = np.asarray(weights).reshape(c_out, cg, n_off) != 0
        # non-zero weights from input channel c (index c % cg in its group) to its group's outputs
        nz = w.reshape(g, cog, cg, n_off).sum(axis=1).reshape(c_in, n_off).astype(np.int64)
    return (nz @ valid.astype(np.int64)).reshape(-1)


def _nonzero_dot(wl: Workload, src: str, f: np.ndarray) -> np.ndarray:
    """sum_i [x_i != 0] f_i for every (sample, step) of the input ``src``: int64 (samples, T)."""
    s_n, t_n = wl.samples, wl.time_steps
    if src == "input":
        nz = (wl.input.reshape(s_n, -1) != 0).astype(np.int64)
        return np.repeat((nz @ f)[:, None], t_n, axis=1)
    n = f.shape[0]
    packed = wl.packed_spikes[src]
    src_shape = wl.layer(src).out_shape
    plane = n // src_shape[0] if len(src_shape) > 1 else n
    per_pos = f.reshape(-1, plane)
    if np.all(per_pos == per_pos[:1]):
        # the fan-out depends on the position only: sum it over the spikes, event by event
        from ..hw.spikes import row_work

        width = src_shape[-1] if len(src_shape) > 1 else n
        _spikes, work = row_work(packed, n, plane, width, plane // width, per_pos[0])
        return work.sum(axis=2)
    out = np.zeros((s_n, t_n), np.int64)
    for s in range(s_n):  # one sample at a time bounds the memory of the unpacked bits
        bits = np.unpackbits(packed[s], axis=-1, count=n).astype(np.int64)
        out[s] = bits @ f
    return out


def _position_fanout(layer: Layer) -> np.ndarray:
    """(output neuron, weight) pairs one input neuron reaches, per spatial input position, when no
    weight is zero: the window's in-bounds outputs times the output channels of its group."""
    from ..hw.spikes import window_taps

    if layer.op == "linear":
        return np.full(layer.in_shape[0], layer.out_shape[0], np.int64)
    taps = window_taps(tuple(layer.in_shape[1:]), layer.kernel, layer.stride, layer.padding,
                       tuple(layer.out_shape[1:]))
    return taps * (layer.out_shape[0] // layer.groups)


def _position_dot(wl: Workload, src: str, per_pos: np.ndarray) -> np.ndarray:
    """sum over the spikes of ``src`` of ``per_pos[position]``, per (sample, step), event by event."""
    from ..hw.spikes import row_work

    shape = wl.layer(src).out_shape
    n = int(np.prod(shape))
    plane = per_pos.shape[0]
    width = shape[-1] if len(shape) > 1 else n
    _spikes, work = row_work(wl.packed_spikes[src], n, plane, width, plane // width, per_pos)
    return work.sum(axis=2)


def input_is_binary(wl: Workload) -> bool:
    """NeuroBench's spiking test on the analog input: every value is 0, 1 or -1."""
    x = wl.input
    return not np.any((x != 0) & (x != 1) & (x != -1))


def neurobench_ops(workload: Workload) -> dict[str, Any]:
    """NeuroBench's synaptic-operation counts of ``workload``, per sample (mean over samples),
    summed over time steps, per layer and in total. See the module docstring for the exact
    definition and its source.

    Returns ``{"source", "samples", "time_steps", "layers": [...], "total": {...},
    "neurobench": {"Effective_MACs", "Effective_ACs", "Dense"}}``; each layer entry has ``name``,
    ``op``, ``counted`` (whether NeuroBench counts the op at all), ``input`` (``analog``/``spikes``),
    ``weights`` (``trace``, or ``assumed non-zero`` when the trace holds none), and ``dense``,
    ``effective_macs``, ``effective_acs``, ``synops`` (floats, per sample).
    """
    wl = workload
    s_n, t_n = wl.samples, wl.time_steps
    binary_input = input_is_binary(wl)
    layers = []
    tot = {"dense": 0.0, "effective_macs": 0.0, "effective_acs": 0.0, "synops": 0.0}
    for layer in wl.layers:
        if layer.parts is not None:
            entry = _parts_entry(wl, layer)
            for k in tot:
                tot[k] += entry[k]
            layers.append(entry)
            continue
        entry: dict[str, Any] = {"name": layer.name, "op": layer.op, "counted": layer.op in COUNTED_OPS,
                                 "input": "analog" if "input" in layer.inputs else "spikes", "weights": None,
                                 "dense": 0.0, "effective_macs": 0.0, "effective_acs": 0.0, "synops": 0.0}
        if entry["counted"]:
            if not layer.in_shape:  # a workload built in memory and never checked
                from ..workload.graph import check_graph

                check_graph(wl.layers, wl.input_shape)
            has_w = wl.has_weights(layer.name)
            entry["weights"] = "trace" if has_w else "assumed non-zero"
            # packed binary weights (+-scale) are never zero: no need to unpack them; weights
            # without a zero count like no weights at all (the fast, per-position path)
            w = None
            if has_w and layer.name not in wl.packed_weights:
                w = wl.weight(layer.name)
                if np.all(w != 0):
                    w = None
            src = layer.inputs[0]
            if w is None and src != "input":
                # every weight counts: the fan-out depends on the input position only
                per_pos = _position_fanout(layer)
                c_in = layer.in_shape[0] if len(layer.in_shape) > 1 else 1
                dense = float(per_pos.sum()) * c_in
                eff = float(_position_dot(wl, src, per_pos).sum()) / s_n
            else:
                f_dense = fanout(layer, None)
                f_eff = fanout(layer, w) if w is not None else f_dense
                dense = float(f_dense.sum())
                eff = float(_nonzero_dot(wl, src, f_eff).sum()) / s_n
            entry["dense"] = dense * t_n
            is_ac = src != "input" or binary_input
            entry["effective_acs" if is_ac else "effective_macs"] = eff
            entry["synops"] = eff
            for k in tot:
                tot[k] += entry[k]
        layers.append(entry)
    return {
        "source": SOURCE,
        "samples": s_n,
        "time_steps": t_n,
        "layers": layers,
        "total": tot,
        "neurobench": {"Effective_MACs": tot["effective_macs"], "Effective_ACs": tot["effective_acs"],
                       "Dense": tot["dense"]},
    }


def describe_parts(layer: Layer) -> str:
    """A format v2 layer's ops in order, e.g. ``conv2d>affine>maxpool>snntorch.leaky``."""
    p = layer.parts
    ops: list[str] = []
    for sy in p.synapses:
        for n in sy.chain:
            if n.op not in ops:
                ops.append(n.op)
    ops += [n.op for n in p.passes]
    if p.neuron is not None:
        ops.append(str(p.neuron.params.get("model")))
    return ">".join(ops) or p.output.op


def _node_layer(node, in_shape: tuple[int, ...]) -> Layer:
    """A weighted v2 node as the v1 layer :func:`fanout` reads (its own geometry, dilation kept)."""
    from ..hw.synapses import window

    if node.op == "linear":
        return Layer(node.name, "linear", [], tuple(node.out_shape), in_shape=tuple(in_shape))
    kernel, stride, padding, dilation = window(node)
    return Layer(node.name, node.op, [], tuple(node.out_shape), in_shape=tuple(in_shape), kernel=kernel,
                 stride=stride, padding=padding, groups=int(node.params.get("groups", 1)),
                 extra={"dilation": dilation})


def _weighted_inputs(wl: Workload) -> dict[str, np.ndarray]:
    """The value every weighted node of a v2 workload reads, per (sample, step), from the recorded
    activity (the graph's linear ops between a recorded map and a weighted op applied to it)."""
    hit = wl.__dict__.get("_weighted_inputs")
    if hit is not None and hit[0] is wl.packed_spikes and hit[1] == id(wl.nodes):
        return hit[2]
    from ..workload.forward import evaluate

    sources: dict[str, np.ndarray] = {}
    for la in wl.layers:
        if la.parts.output.kind == "spikes":
            sources[la.name] = wl.spikes(la.name)
        elif la.parts.output.kind == "events":
            sources[la.name] = wl.events[la.name].reshape(wl.samples, wl.time_steps, *la.out_shape)
    keep = sorted({w.inputs[0] for la in wl.layers for w, _shape in la.parts.weighted_in})
    values = evaluate(wl.nodes, wl.input, wl.time_steps, arrays=wl.node_arrays, sources=sources, keep=keep)
    wl.__dict__["_weighted_inputs"] = (wl.packed_spikes, id(wl.nodes), values)
    return values


def _parts_entry(wl: Workload, layer: Layer) -> dict[str, Any]:
    """NeuroBench's counts of a format v2 layer: every conv/linear node of it, called once per step
    on the value it reads (a sum or average of spikes is not binary: MACs), bias excluded."""
    s_n, t_n = wl.samples, wl.time_steps
    weighted = layer.parts.weighted_in
    entry: dict[str, Any] = {"name": layer.name, "op": describe_parts(layer), "counted": bool(weighted),
                             "input": "analog" if layer.parts.encoding else "spikes", "weights": None,
                             "dense": 0.0, "effective_macs": 0.0, "effective_acs": 0.0, "synops": 0.0}
    if not weighted:
        return entry
    values = _weighted_inputs(wl)
    held = [f"weights/{w.name}" in wl.node_arrays for w, _shape in weighted]
    entry["weights"] = "trace" if all(held) else "assumed non-zero" if not any(held) else "trace (some)"
    for w, in_shape in weighted:
        x = values[w.inputs[0]]
        v1 = _node_layer(w, in_shape)
        weights = wl.node_arrays.get(f"weights/{w.name}")
        f_dense = fanout(v1, None)
        f_eff = fanout(v1, weights) if weights is not None else f_dense
        entry["dense"] += float(f_dense.sum()) * t_n
        flat = x.reshape(s_n, t_n, -1)
        per_step = ((flat != 0).astype(np.int64) @ f_eff).sum(axis=0) / s_n  # (T,)
        binary = ~np.any((flat != 0) & (flat != 1) & (flat != -1), axis=(0, 2))  # NeuroBench decides per call
        entry["effective_acs"] += float(per_step[binary].sum())
        entry["effective_macs"] += float(per_step[~binary].sum())
    entry["synops"] = entry["effective_acs"] + entry["effective_macs"]
    return entry
