"""Format v1 graphs as format v2 nodes (:mod:`snnsim.workload.nodes`), exactly.

A v1 layer is an op with an optional neuron; in v2 the op and the neuron are two nodes. The
neuron keeps the layer's name (its spikes are the recorded ``spikes/<layer>``), the op is named
``<layer>:<op>``. What each v1 construct meant is kept:

- ``conv2d``/``conv3d``/``linear`` with a neuron: the weighted op (no bias: v1 had none), then a
  ``snnsim.if`` neuron (v1's dynamics, :class:`snnsim.neurons.SnnsimIF`); without a neuron (the
  classifier): the op alone, a readout.
- ``avgpool`` with a neuron: the average of the window's spikes into the neuron; ``maxpool`` with
  a neuron: v1 integrated the *count* of spikes in the window (``snnsim verify`` and the core
  both do), so it becomes a ``sumpool``.
- ``maxpool`` of spikes without a neuron: the OR of the window, a ``maxpool`` node (recorded).
- ``add`` with a neuron: the sum of the input spikes into the neuron.
- ``flatten``: a ``flatten`` node (of spikes: part of the next layer's fan-out; of the analog
  input, with a neuron: flatten then neuron).

Per-channel thresholds (``thresholds/<layer>``) become the neuron's ``threshold``, one value per
channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WorkloadError
from .graph import Layer, Neuron
from .nodes import HardwareLayer, Node


def _op_node(layer: Layer, name: str) -> Node:
    params: dict[str, Any] = {}
    op = layer.op
    if op in ("conv2d", "conv3d"):
        params = {"out_channels": layer.out_shape[0], "kernel": list(layer.kernel), "stride": list(layer.stride),
                  "padding": list(layer.padding), "groups": layer.groups, "bias": False,
                  "weight_bits": layer.weight_bits}
        if layer.extra.get("in_pixel") and layer.inputs == ["input"]:  # computed through the pixel curve
            params["pixel_curve"] = layer.extra.get("transfer_curve", "p2m_sci_rep_2022")
    elif op == "linear":
        params = {"out_features": layer.out_shape[0], "bias": False, "weight_bits": layer.weight_bits}
    elif op in ("avgpool", "maxpool"):
        params = {"kernel": list(layer.kernel), "stride": list(layer.stride), "padding": list(layer.padding)}
        if op == "maxpool" and layer.neuron is not None:
            op = "sumpool"  # v1's maxpool with a neuron integrates the window's spike count
    return Node(name, op, list(layer.inputs), params)


def nodes_from_v1(layers: list[Layer], thresholds: dict[str, np.ndarray] | None = None) -> list[Node]:
    """The v2 nodes of a checked v1 graph (``check_graph`` has filled in its shapes)."""
    thresholds = thresholds or {}
    out: list[Node] = []
    for layer in layers:
        if layer.neuron is None:
            out.append(_op_node(layer, layer.name))
            continue
        op = _op_node(layer, f"{layer.name}:{layer.op}")
        n = layer.neuron
        threshold: Any = n.threshold
        if n.per_channel:
            threshold = np.asarray(thresholds[layer.name], np.float64).reshape(
                (-1,) + (1,) * (len(layer.out_shape) - 1))  # one per channel, broadcast over positions
        out += [op, Node(layer.name, "neuron", [op.name],
                         {"model": "snnsim.if", "threshold": threshold, "leak": float(n.leak), "reset": n.reset})]
    return out


_V1_POOL = {"avgpool": "avgpool", "sumpool": "maxpool"}  # v1's maxpool with a neuron summed spikes


class V1Unsupported(WorkloadError):
    """A v2 construct format v1 cannot hold (the v2 graph is replayed as it is instead)."""


def _unsupported(node: Node, what: str) -> WorkloadError:
    return V1Unsupported(f"format v1 cannot hold {what}", key=f"nodes.{node.name}",
                         expected="format v1's constructs: conv/linear without bias into an snnsim.if "
                         "neuron, sum/avg pooling or an add of spikes into one, an OR max pool, a readout",
                         found=f"{node.op}" + (f" ({node.params.get('model')})" if node.op == "neuron" else ""),
                         suggestion="keep the trace as format v2")


def layers_to_v1(hw_layers: list[HardwareLayer]) -> tuple[list[Layer], dict[str, str], dict[str, np.ndarray]]:
    """The v1 layers of a v2 graph made only of v1 constructs (the inverse of
    :func:`nodes_from_v1`): (layers, v1 layer of each weighted node, per-channel thresholds).
    Anything else raises WorkloadError naming the node."""
    out: list[Layer] = []
    weight_of: dict[str, str] = {}
    thresholds: dict[str, np.ndarray] = {}
    for hl in hw_layers:
        ops = list(hl.ops)
        head = hl.output
        neuron = None
        if head.op == "neuron":
            p = head.params
            if p.get("model") != "snnsim.if":
                raise _unsupported(head, "this neuron model")
            th = p.get("threshold", 1.0)
            per_channel = isinstance(th, np.ndarray) and th.size > 1
            if per_channel:
                thresholds[head.name] = np.asarray(th, np.float32).reshape(-1)
            neuron = Neuron(model="LIF" if p.get("leak", 0.0) else "IF",
                            threshold=1.0 if per_channel else float(np.asarray(th)), leak=float(p.get("leak", 0.0)),
                            reset=p.get("reset", "subtract"), per_channel=per_channel)
            ops = ops[:-1]
        # shape-only ops on recorded spikes become v1's structural flatten layers
        while ops and ops[0].op == "flatten" and len(ops) > 1:
            f = ops.pop(0)
            out.append(Layer(f.name, "flatten", list(f.inputs), f.out_shape))
        if len(ops) != 1:
            raise _unsupported(ops[1] if len(ops) > 1 else head, "a layer of several current ops")
        (op,) = ops
        name = hl.name
        pr = op.params
        if op.op in ("conv2d", "conv3d", "linear"):
            if pr.get("bias"):
                raise _unsupported(op, "a bias")
            rank = 0 if op.op == "linear" else int(op.op[-2])
            k = pr.get("kernel", 1)
            kernel = tuple([k] * rank if isinstance(k, int) else k)
            extra = ({"in_pixel": True, "transfer_curve": pr["pixel_curve"]} if pr.get("pixel_curve") else {})
            layer = Layer(name, op.op, list(op.inputs), op.out_shape, weight_bits=int(pr.get("weight_bits", 1)),
                          neuron=neuron, extra=extra, **({} if rank == 0 else {
                              "kernel": kernel, "stride": _axes(pr.get("stride", 1), rank),
                              "padding": _axes(pr.get("padding", 0), rank), "groups": int(pr.get("groups", 1))}))
            weight_of[op.name] = name
        elif op.op in _V1_POOL and neuron is not None or op.op == "maxpool" and neuron is None and op.kind == "spikes":
            rank = len(op.out_shape) - 1
            k = _axes(pr["kernel"], rank)
            layer = Layer(name, _V1_POOL.get(op.op, "maxpool"), list(op.inputs), op.out_shape, kernel=k,
                          stride=_axes(pr.get("stride", list(k)), rank), padding=_axes(pr.get("padding", 0), rank),
                          neuron=neuron)
        elif op.op == "add" and all(i != "input" for i in op.inputs) and neuron is not None:
            layer = Layer(name, "add", list(op.inputs), op.out_shape, neuron=neuron)
        elif op.op == "flatten":
            layer = Layer(name, "flatten", list(op.inputs), op.out_shape, neuron=neuron)
        else:
            raise _unsupported(op, f"a {op.op} here")
        out.append(layer)
    return out, weight_of, thresholds


def _axes(v: Any, rank: int) -> tuple[int, ...]:
    return tuple([v] * rank if isinstance(v, int) else v)
