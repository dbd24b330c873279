"""The dense (non-spiking) network a trace's graph stands for, as an NCS2-class accelerator runs it
(:mod:`.ncs2`): one :class:`DenseLayer` per op that does work, one inference per sample.

The equivalent network of a converted SNN is the ReLU network it was converted from: every
neuron becomes a ReLU fused into the op before it, a batch norm (``affine``, ``scale``, ``bias``)
is folded into the weights and bias of the op before it, and flatten / reshape only relabel
values. What remains does work:

=================================  ==========  ================================================
op                                 type        MACs (per inference)
=================================  ==========  ================================================
conv1d/2d/3d, groups = C_in = C_out  depthwise   output values x C_in / groups x kernel taps
  (C_in > 1)
conv1d/2d/3d otherwise             conv        output values x C_in / groups x kernel taps
linear                             fc          output values x input features
avgpool, sumpool, maxpool          pool        output values x kernel taps
add of n inputs                    eltwise     output values x (n - 1)
=================================  ==========  ================================================

MACs count padded taps too (the accelerator computes a padded window densely). Weights are the
kernel's values plus one bias value per output channel when the op has its own bias; a folded
batch norm's parameters are not counted [A: they become a bias of C_out values, a negligible
share of any real layer]. Activations read are the values of every input, written the output's.

What has no dense feed-forward equivalent is refused with a :class:`MappingError` naming the
node (format v2) or layer (format v1): a ``delay`` (a recurrent edge), an ``iand`` (a logic op on
spikes). The order of the dense layers, which decides what spills from the on-chip memory, is
the trace's layer order and, within a layer, the order in which the trace lists its nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LAYER_TYPES = ("conv", "depthwise", "fc", "pool", "eltwise")
FREE_OPS = ("neuron", "bias", "affine", "scale", "flatten", "reshape")
POOL_OPS = ("avgpool", "sumpool", "maxpool")
MAX_COUNT = 2**53  # a count reported as a float is exact below this


@dataclass(frozen=True)
class DenseLayer:
    """One layer of the dense network, per inference.

    ``weights`` and the activation counts are values; the accelerator stores each at
    ``ncs2.bytes_per_value`` bytes."""

    name: str  # the node (format v2) or layer (format v1) it computes
    layer: str  # the trace's layer it belongs to (its records' layer)
    type: str  # one of LAYER_TYPES
    macs: int
    weights: int  # weight and bias values
    in_values: int  # activation values read
    out_values: int  # activation values written


def _refuse(wl: Any, key: str, op: str) -> Any:
    from ..errors import MappingError

    return MappingError("the dense accelerator runs a feed-forward network; this op has no dense equivalent",
                        file=wl.source, key=key, expected="conv1d/2d/3d, linear, avg/sum/max pool, add, and free "
                        "ops (neuron, bias, affine, scale, flatten, reshape)", found=op,
                        suggestion="run the trace on an SNN target (mapping.target: core or loihi)")


def _conv_type(groups: int, c_in: int, c_out: int) -> str:
    return "depthwise" if groups == c_in == c_out and c_in > 1 else "conv"


def dense_layers(wl: Any) -> list[DenseLayer]:
    """The dense layers of a workload's network, in the order they run (format v2 graphs from
    ``wl.nodes``, format v1 layers from ``wl.layers``). Raises :class:`MappingError` for an op
    without a dense equivalent, and for counts a report could not hold exactly (2^53)."""
    layers = _from_nodes(wl) if wl.nodes else _from_layers(wl)
    from ..errors import MappingError

    for d in layers:
        big = max(d.macs, d.weights, d.in_values, d.out_values)
        if big >= MAX_COUNT:
            raise MappingError("a layer too large to count exactly", file=wl.source, key=f"nodes.{d.name}"
                               if wl.nodes else f"layers.{d.name}", expected="fewer than 2^53 MACs and values",
                               found=f"{big:.4g}")
    return layers


def network_io(wl: Any) -> tuple[int, int]:
    """(input values, output values) of one inference: the frame, and every output of the network
    (the nodes or layers nothing reads)."""
    inputs = math.prod(wl.input_shape)
    if wl.nodes:
        read = {s for n in wl.nodes for s in n.inputs if n.op != "delay"}
        return inputs, sum(n.size for n in wl.nodes if n.name not in read and n.op != "delay")
    read = {s for la in wl.layers for s in la.inputs}
    return inputs, sum(la.out_size for la in wl.layers if la.name not in read)


def _from_nodes(wl: Any) -> list[DenseLayer]:
    from ..workload.nodes import WEIGHTED, lower
    from .synapses import dense_macs, window

    nodes = wl.nodes
    by = {n.name: n for n in nodes}
    for n in nodes:  # refuse first, whatever the order
        if n.op not in (*FREE_OPS, *WEIGHTED, *POOL_OPS, "add"):
            raise _refuse(wl, f"nodes.{n.name}", n.op)
    listed = {n.name: i for i, n in enumerate(nodes)}

    def shape(src: str) -> tuple[int, ...]:
        return tuple(wl.input_shape) if src == "input" else tuple(by[src].out_shape)

    out: list[DenseLayer] = []
    for hl in lower(nodes):
        for n in sorted(hl.ops, key=lambda m: listed[m.name]):
            if n.op in FREE_OPS:
                continue
            in_shape = shape(n.inputs[0])
            in_values = sum(math.prod(shape(s)) for s in n.inputs)
            if n.op in WEIGHTED:
                macs = dense_macs(n, in_shape)
                weights = macs // math.prod(n.out_shape[1:]) if len(n.out_shape) > 1 else macs
                if n.params.get("bias"):
                    weights += n.out_shape[0]
                if n.op == "linear":
                    kind = "fc"
                else:
                    kind = _conv_type(int(n.params.get("groups", 1)), in_shape[0], n.out_shape[0])
            elif n.op in POOL_OPS:
                kind, weights = "pool", 0
                macs = n.size * math.prod(window(n)[0])
            else:  # add
                kind, weights, macs = "eltwise", 0, n.size * (len(n.inputs) - 1)
            out.append(DenseLayer(n.name, hl.name, kind, macs, weights, in_values, n.size))
    return out


def _from_layers(wl: Any) -> list[DenseLayer]:
    from ..workload.graph import check_graph_once

    check_graph_once(wl, wl.layers, wl.input_shape)  # fills in every layer's input shape
    sizes = {la.name: la.out_size for la in wl.layers}
    sizes["input"] = math.prod(wl.input_shape)
    out: list[DenseLayer] = []
    for la in wl.layers:
        in_values = sum(sizes[s] for s in la.inputs)
        taps = math.prod(la.kernel) if la.kernel else 1
        if la.op in ("conv2d", "conv3d"):
            c_in, c_out = la.in_shape[0], la.out_shape[0]
            per_out = c_in // la.groups * taps
            out.append(DenseLayer(la.name, la.name, _conv_type(la.groups, c_in, c_out), la.out_size * per_out,
                                  c_out * per_out, in_values, la.out_size))
        elif la.op == "linear":
            macs = la.out_size * la.in_shape[0]
            out.append(DenseLayer(la.name, la.name, "fc", macs, macs, in_values, la.out_size))
        elif la.op in POOL_OPS:
            out.append(DenseLayer(la.name, la.name, "pool", la.out_size * taps, 0, in_values, la.out_size))
        elif la.op == "add":
            out.append(DenseLayer(la.name, la.name, "eltwise", la.out_size * (len(la.inputs) - 1), 0, in_values,
                                  la.out_size))
        elif la.op != "flatten":
            raise _refuse(wl, f"layers.{la.name}", la.op)
    return out
