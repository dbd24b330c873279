"""Fan-out of a format v2 synapse and the per-step work of a v2 layer's dense passes and neuron,
as the core charges them (:mod:`snnsim.workload.hwlayer` says what each part is).

A synapse delivers each spike of its source through a chain of linear ops and at most one
weighted op. Its fan-out at a source position is the number of (accumulator position) pairs the
spike reaches, with multiplicity: the weighted op's window reach (a linear op reaches one position
with all its output features), pulled back through the ops before it (a sum or average pool
adds the reach of every pooled position a source position falls in; add, flatten and reshape
pass it on unchanged). The result is per spatial position of the source, the same for every
channel (a pooled or convolved map treats its channels alike); a chain whose fan-out would
depend on the channel (a reshape that mixes channels into positions before a convolution) is
refused.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..errors import MappingError
from ..workload.hwlayer import Parts, Synapse
from ..workload.nodes import WEIGHTED, Node


def _spatial(shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    if len(shape) == 1:
        return shape[0], ()
    return shape[0], tuple(shape[1:])


def plane(shape: tuple[int, ...]) -> int:
    """Positions per channel (a flat vector: one position per value)."""
    c, sp = _spatial(shape)
    return math.prod(sp) if sp else shape[0]


def _ints(v, rank: int) -> tuple[int, ...]:
    return tuple([v] * rank) if isinstance(v, int) else tuple(v)


def window(node: Node) -> tuple[tuple[int, ...], ...]:
    """kernel, stride, padding, dilation of a conv or pool node."""
    rank = len(node.out_shape) - 1
    p = node.params
    kernel = _ints(p["kernel"], rank)
    stride = _ints(p.get("stride", kernel if node.op.endswith("pool") else 1), rank)
    return kernel, stride, _ints(p.get("padding", 0), rank), _ints(p.get("dilation", 1), rank)


def _axis_reach(n: int, k: int, s: int, p: int, d: int, out: int) -> np.ndarray:
    """(output, kernel offset) pairs reaching each input index along one axis."""
    o = np.arange(out)[:, None]
    i = o * s - p + np.arange(k)[None, :] * d
    i = i[(i >= 0) & (i < n)]
    return np.bincount(i, minlength=n).astype(np.int64)


def reach_taps(in_spatial: tuple[int, ...], node: Node) -> np.ndarray:
    """Fan-out of a conv or pool window at each input position (row-major)."""
    kernel, stride, padding, dilation = window(node)
    taps = np.ones(1, np.int64)
    for n, k, s, p, d, o in zip(in_spatial, kernel, stride, padding, dilation, node.out_shape[1:], strict=True):
        taps = np.multiply.outer(taps, _axis_reach(n, k, s, p, d, o)).reshape(-1)
    return taps


def pull_back(in_spatial: tuple[int, ...], node: Node, taps_out: np.ndarray) -> np.ndarray:
    """Fan-out at a pool's input from the fan-out at its output: each input position sums the
    fan-out of every output whose window holds it."""
    kernel, stride, padding, dilation = window(node)
    out_sp = node.out_shape[1:]
    t_out = taps_out.reshape(out_sp)
    t_in = np.zeros(in_spatial, np.int64)
    grids = np.meshgrid(*(np.arange(o) for o in out_sp), indexing="ij")
    for offs in itertools.product(*(range(k) for k in kernel)):
        idx, ok = [], np.ones(out_sp, bool)
        for axis, g in enumerate(grids):
            i = g * stride[axis] - padding[axis] + offs[axis] * dilation[axis]
            ok &= (i >= 0) & (i < in_spatial[axis])
            idx.append(i)
        np.add.at(t_in, tuple(i[ok] for i in idx), t_out[ok])
    return t_in.reshape(-1)


def synapse_fanout(sy: Synapse, source_shape: tuple[int, ...], layer: str) -> tuple[np.ndarray, int]:
    """(fan-out per source position, output channels each reached position updates)."""
    shapes = [tuple(source_shape)] + [tuple(n.out_shape) for n in sy.chain]
    w = sy.weighted
    if w is None:
        end = shapes[-1]
        taps, c_group = np.ones(plane(end), np.int64), 1
        uniform: int | None = 1
    elif w.op == "linear":
        taps, c_group, uniform = np.ones(shapes[-2][0], np.int64), w.out_shape[0], 1
    else:
        c_in = shapes[-2][0]
        taps = reach_taps(shapes[-2][1:], w)
        groups = int(w.params.get("groups", 1))
        c_group, uniform = w.out_shape[0] // groups, None
        del c_in
    front = sy.chain[:-1] if w is not None else sy.chain
    for i in range(len(front) - 1, -1, -1):
        node, shape_in = front[i], shapes[i]
        if node.op in ("sumpool", "avgpool", "maxpool"):  # a max pool of spikes (an OR) ends a chain
            if len(shape_in) < 2 or taps.shape[0] != plane(node.out_shape):
                raise _refuse(layer, node, "a pool of a flattened map")
            taps = pull_back(shape_in[1:], node, taps)
            uniform = None
        elif node.op in ("add", "iand"):
            continue
        else:  # flatten, reshape: positions are relabelled; only a uniform fan-out survives it
            if uniform is None:
                out = tuple(node.out_shape)
                if len(shape_in) == len(out) and shape_in[0] == out[0]:
                    taps = taps.copy()  # the same channels and positions in the same order
                    continue
                keep = len(out) - 1  # trailing spatial axes kept, the leading ones merged into channels
                if keep >= 1 and len(shape_in) > len(out) and tuple(shape_in[-keep:]) == out[1:]:
                    # (C, D, H, W) -> (C * D, H, W), as a hybrid 3D/2D network does: a value at
                    # (d, h, w) reaches what (h, w) reaches, whatever d
                    merged = math.prod(shape_in[1:len(shape_in) - keep])
                    taps = np.tile(taps, merged)
                    continue
                raise _refuse(layer, node, f"a {node.op} before a convolution or pool")
            taps = np.full(plane(shape_in), uniform, np.int64)
    return taps, c_group


def _refuse(layer: str, node: Node, what: str) -> MappingError:
    return MappingError("the core cannot deliver spikes through this chain", key=f"nodes.{node.name}",
                        expected="sum/avg pools, adds and flatten/reshape before a linear", found=what,
                        suggestion=f"record the value before {node.name} (put a neuron there) in layer {layer}")


def dense_macs(node: Node, in_shape: tuple[int, ...]) -> int:
    """MACs of one weighted node computed densely for one step (padding included)."""
    if node.op == "linear":
        return node.size * in_shape[0]
    kernel = window(node)[0]
    return node.size * (in_shape[0] // int(node.params.get("groups", 1))) * math.prod(kernel)


def pass_work(parts: Parts, v: int, mem_bits: int, into_membrane: bool = True) -> tuple[int, int, int]:
    """(vector ops, membrane bits read, membrane bits written) of one step of the layer's dense
    passes: the bias adds of its weighted ops, then its current ops; per pass ceil(C / V) vector
    ops at each output position, every input value read and
    every output written; the pass feeding the neuron adds into the membrane (read and written),
    except in a direct-encoded layer, whose result is stored once and added at every step."""
    ops = reads = writes = 0
    for node in parts.bias_adds:  # a conv's or linear's own bias: read-modify-write of each value
        c, sp = _spatial(node.out_shape)
        ops += (math.prod(sp) if sp else 1) * math.ceil(c / v)
        reads += node.size * mem_bits
        writes += node.size * mem_bits
    for node, n_read in zip(parts.passes, parts.pass_reads, strict=True):
        c, sp = _spatial(node.out_shape)
        positions = math.prod(sp) if sp else 1
        ops += positions * math.ceil(c / v)
        reads += n_read * mem_bits
        writes += node.size * mem_bits
        if into_membrane and node.name == parts.feeds_membrane:
            reads += node.size * mem_bits
    return ops, reads, writes


def neuron_work(parts: Parts, v: int, mem_bits: int) -> tuple[int, int, int]:
    """(fire ops, compares, membrane bits read = written) of one step of the neuron pass: every
    state value of every neuron updated, ceil(C / V) vector ops per position and state; a
    spiking neuron compares each membrane with its threshold. A layer whose output is events
    reads out (and clears) its accumulator once per step the same way, without compares."""
    out = parts.output
    if parts.neuron is None and out.kind != "events":
        return 0, 0, 0
    c, sp = _spatial(out.out_shape)
    positions = math.prod(sp) if sp else 1
    states = max(parts.states, 1)
    compares = out.size if parts.spiking_neuron else 0
    return positions * math.ceil(c / v) * states, compares, out.size * mem_bits * states


def weighted_nodes(parts: Parts) -> tuple[Node, ...]:
    return tuple(n for n in parts.weighted if n.op in WEIGHTED)
