"""Reference counts of a format v2 layer on the core, one spike, reached position, value and
neuron at a time (the fast model is :mod:`snnsim.hw.synapses` with :mod:`snnsim.hw.core`).

Each spike (or non-zero event) of a synapse's source is carried through the synapse's chain op
by op: a sum or average pool sends it to every output whose window holds it, an add passes it
on, a flatten or reshape renumbers it, and the weighted op at the end sends it to every output
position its kernel reaches (a linear: to its one output vector), each with the output channels
of its group. Every (reached position) is one vector operation per ``vector_width`` channels and
every channel one synaptic update.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..workload.nodes import Node


def _ints(v, rank: int) -> tuple[int, ...]:
    return tuple([v] * rank) if isinstance(v, int) else tuple(v)


def _window(node: Node) -> tuple[tuple[int, ...], ...]:
    rank = len(node.out_shape) - 1
    p = node.params
    kernel = _ints(p["kernel"], rank)
    stride = _ints(p.get("stride", kernel if node.op.endswith("pool") else 1), rank)
    return kernel, stride, _ints(p.get("padding", 0), rank), _ints(p.get("dilation", 1), rank)


def _chunks(n: int, size: int) -> int:
    count = 0
    for _first in range(0, n, size):
        count += 1
    return count


def _spatial(shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    return (shape[0], ()) if len(shape) == 1 else (shape[0], tuple(shape[1:]))


def _reached(pos: tuple[int, ...], node: Node) -> list[tuple[int, ...]]:
    """Output positions of a conv or pool node whose window holds input position ``pos``."""
    kernel, stride, padding, dilation = _window(node)
    return reached(pos, kernel, stride, padding, dilation, tuple(node.out_shape[1:]))


def reached(pos: tuple[int, ...], kernel, stride, padding, dilation, out: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Output positions whose window holds input position ``pos``: output o reads input
    o * stride - padding + d * dilation for every kernel offset d."""
    found = []
    for offsets in itertools.product(*(range(k) for k in kernel)):
        o = []
        for axis, d in enumerate(offsets):
            shifted = pos[axis] + padding[axis] - d * dilation[axis]
            if shifted % stride[axis] != 0:
                break
            oi = shifted // stride[axis]
            if not 0 <= oi < out[axis]:
                break
            o.append(oi)
        else:
            found.append(tuple(o))
    return found


def _renumber(c: int, pos: tuple[int, ...], shape_in: tuple[int, ...], shape_out: tuple[int, ...]):
    """The (channel, position) of a value after a flatten or reshape (channels-first order)."""
    flat = c
    for i, n in zip(pos, shape_in[1:], strict=True):
        flat = flat * n + i
    if len(shape_out) == 1:
        return flat, ()
    rest = []
    for n in reversed(shape_out[1:]):
        rest.append(flat % n)
        flat //= n
    return flat, tuple(reversed(rest))


def chain_targets(sy, c: int, pos: tuple[int, ...], source_shape: tuple[int, ...]) -> list[tuple[tuple, list[int]]]:
    """(accumulator position, output channels) pairs one spike of the source (channel c,
    position pos) updates through the synapse, with multiplicity."""
    values = [(c, pos)]
    shape = tuple(source_shape)
    for node in sy.chain:
        if node.op in ("sumpool", "avgpool", "maxpool"):
            values = [(ci, o) for ci, p in values for o in _reached(p, node)]
        elif node.op in ("flatten", "reshape"):
            values = [_renumber(ci, p, shape, tuple(node.out_shape)) for ci, p in values]
        elif node.op in ("add", "iand"):
            pass
        elif node.op == "linear":
            return [((), list(range(node.out_shape[0]))) for _v in values]
        else:  # a convolution: the output channels of the input channel's group
            groups = int(node.params.get("groups", 1))
            per_in, per_out = shape[0] // groups, node.out_shape[0] // groups
            out = []
            for ci, p in values:
                g = ci // per_in
                channels = list(range(g * per_out, (g + 1) * per_out))
                out += [(o, channels) for o in _reached(p, node)]
            return out
        shape = tuple(node.out_shape)
    return [(p, [ci]) for ci, p in values]


def weight_bits(parts) -> int:
    """Bits of a layer's weights, weight by weight."""
    bits = 0
    for node, in_shape in parts.weighted_in:
        fan_in = in_shape[0] // int(node.params.get("groups", 1))
        offsets = [()] if node.op == "linear" else list(itertools.product(*(range(k) for k in _window(node)[0])))
        for _co in range(node.out_shape[0]):
            for _ci in range(fan_in):
                for _offset in offsets:
                    bits += int(node.params.get("weight_bits", 1) or 1)
    return bits


def membrane_bits(parts, mem_bits: int) -> int:
    """Membranes (every state of every neuron) and accumulators of a layer, value by value."""
    if parts.or_of_spikes:
        return 0
    values = 0
    for _n in range(parts.accumulator_values):
        values += 1
    per_neuron = parts.states if parts.neuron is not None else 1
    for _n in range(parts.output.size):
        values += per_neuron
    return values * mem_bits


def dense_macs(parts) -> int:
    """MACs of the layer's weighted ops computed densely for one step (padding included)."""
    count = 0
    for node, in_shape in parts.weighted_in:
        window = in_shape[0] if node.op == "linear" else in_shape[0] // int(node.params.get("groups", 1))
        if node.op != "linear":
            for k in _window(node)[0]:
                window *= k
        for _n in range(node.size):
            count += window
    return count


def synapses(wl, layer, li: int, s_n: int, t_n: int, v: int, mem_bits: int, scatter: bool, add, pass_ops,
             fed_row=None) -> None:
    """Every spike of every synapse of a v2 layer, delivered target by target. ``fed_row(sy, s,
    t, pos, ops)`` takes the work of a map the link delivers (the first core layer behind a P2M
    sensor) of synapse ``sy`` and returns True when it did; otherwise the work is left to the
    layer's pass."""
    parts = layer.parts
    for sy in parts.synapses:
        if sy.value == "analog":
            continue
        src = wl.layer(sy.source)
        nonzero = wl.spikes(sy.source)  # spikes, or which events are non-zero
        w = sy.weighted
        w_bits = int(w.params.get("weight_bits", 1) or 1) if w is not None else 0
        rmw = scatter and not parts.or_of_spikes
        for s in range(s_n):
            for t in range(t_n):
                t_src = t - 1 if sy.delayed else t
                if t_src < 0:
                    continue
                for idx in np.argwhere(nonzero[s, t_src]):
                    c, pos = int(idx[0]), tuple(int(i) for i in idx[1:])
                    add("input_spikes", s, li, t, 1)
                    ops = 0
                    for _opos, channels in chain_targets(sy, c, pos, src.out_shape):
                        ops += _chunks(len(channels), v)
                        for _co in channels:
                            add("synaptic_ops", s, li, t, 1)
                            add("weight_read_bits", s, li, t, w_bits)
                            if sy.value == "events":
                                add("macs", s, li, t, 1)  # the weight times the event's count
                            if rmw:
                                add("membrane_read_bits", s, li, t, mem_bits)
                                add("membrane_write_bits", s, li, t, mem_bits)
                    add("vector_ops", s, li, t, ops)
                    if fed_row is None or not fed_row(sy, s, t, pos, ops):
                        pass_ops[s][li][t] += ops


def passes_and_neuron(wl, layer, li: int, s_n: int, t_n: int, v: int, mem_bits: int, add, pass_ops) -> None:
    """The dense current passes (once for a direct-encoded layer), the neuron pass over every
    state of every neuron, and a readout of the output currents after the last step."""
    parts = layer.parts
    out = parts.output
    for s in range(s_n):
        for t in range(t_n):
            if not parts.constant_currents or t == 0:
                for node in parts.weighted:  # a weighted op's own bias, added to every value it gives
                    if not node.params.get("bias"):
                        continue
                    c, sp = _spatial(node.out_shape)
                    for _pos in itertools.product(*(range(n) for n in sp)):
                        ops = _chunks(c, v)
                        add("vector_ops", s, li, t, ops)
                        pass_ops[s][li][t] += ops
                    for _value in range(node.size):
                        add("membrane_read_bits", s, li, t, mem_bits)
                        add("membrane_write_bits", s, li, t, mem_bits)
                for node in parts.passes:
                    c, sp = _spatial(node.out_shape)
                    for _pos in itertools.product(*(range(n) for n in sp)):
                        ops = _chunks(c, v)
                        add("vector_ops", s, li, t, ops)
                        pass_ops[s][li][t] += ops
                    for src in node.inputs:
                        size = _size_of(wl, layer, src)
                        for _value in range(size):
                            add("membrane_read_bits", s, li, t, mem_bits)
                    for _value in range(node.size):
                        add("membrane_write_bits", s, li, t, mem_bits)
                        if node.name == parts.feeds_membrane and not parts.constant_currents:
                            add("membrane_read_bits", s, li, t, mem_bits)  # added into the membrane
            if parts.neuron is not None or out.kind == "events":
                c, sp = _spatial(out.out_shape)
                states = parts.states if parts.neuron is not None else 1
                for _pos in itertools.product(*(range(n) for n in sp)):
                    for _state in range(states):
                        add("fire_ops", s, li, t, _chunks(c, v))
                for _n in range(out.size):
                    if parts.spiking_neuron:
                        add("compares", s, li, t, 1)
                    for _state in range(states):
                        add("membrane_read_bits", s, li, t, mem_bits)
                        add("membrane_write_bits", s, li, t, mem_bits)
            if out.kind == "current" and t == t_n - 1:
                for _n in range(out.size):
                    add("membrane_read_bits", s, li, t, mem_bits)


def _size_of(wl, layer, name: str) -> int:
    """Values of a node a pass reads: a node of the layer, a recorded source, or a delay of one."""
    for n in layer.parts.passes:
        if n.name == name:
            return n.size
    for sy in layer.parts.synapses:
        for n in sy.chain:
            if n.name == name:
                return n.size
    for la in wl.layers:
        if la.name == name:
            return la.out_size
    delayed = [sy for sy in layer.parts.synapses if sy.delayed and not sy.chain]
    if delayed:  # a pass reading a delay directly (a one-to-one recurrent scale)
        return wl.layer(delayed[0].source).out_size
    return 0  # the analog input is not read by a pass


def encoding(hw, wl, layer, li: int, q: int, packet_index: dict, packet_ops, add, reference_encoding) -> None:
    """A v2 layer on the analog frame: a conv2d or conv3d as v1's encoding layer (``reference_encoding``),
    a linear of the whole frame, or a rate code, released by the frame's last line."""
    from ..workload.graph import Layer

    parts = layer.parts
    sy = parts.frame_synapse
    w = sy.weighted
    held = parts.output.size
    cfg = hw["core"]
    v, mem_bits, in_bits = cfg["vector_width"], cfg["membrane_bits"], cfg["input_bits"]
    if w is not None and w.op in ("conv2d", "conv3d"):
        (_w, w_in), = parts.weighted_in
        conv = Layer(layer.name, w.op, ["input"], w.out_shape, in_shape=w_in, kernel=layer.kernel,
                     stride=layer.stride, padding=layer.padding, groups=layer.groups, weight_bits=layer.weight_bits)
        reference_encoding(hw, wl, conv, li, q, [list(range(w.out_shape[0]))], packet_index, packet_ops, add,
                           held=held)
        return
    bit_serial = cfg["encoding_mode"] == "bit_serial"
    n_in = 1
    for n in wl.input_shape:
        n_in *= n
    last = max(packet_index.values())
    for s in range(wl.samples):
        ops = 0
        if w is None:  # a rate code: the frame's values copied, a vector of channels at a time
            c, sp = _spatial(parts.output.out_shape)
            for _pos in itertools.product(*(range(n) for n in sp)):
                ops += _chunks(c, v)
        else:
            for _i in range(n_in):
                ops += _chunks(w.out_shape[0], v)
                for _co in range(w.out_shape[0]):
                    add("macs", s, li, 0, 1)
                    add("weight_read_bits", s, li, 0, layer.weight_bits)
                    if bit_serial:
                        for _bit in range(in_bits):
                            add("shift_adds", s, li, 0, 1)
        for _i in range(n_in):
            add("input_buffer_read_bits", s, li, 0, in_bits)
        add("vector_ops", s, li, 0, ops)
        packet_ops[s][last] += ops * (in_bits if bit_serial and w is not None else 1)
        computed = n_in if w is None else w.size
        for _n in range(computed):
            add("membrane_write_bits", s, li, 0, mem_bits)
        for t in range(wl.time_steps):
            for _n in range(held):
                add("synaptic_ops", s, li, t, 1)
                add("membrane_read_bits", s, li, t, mem_bits)
