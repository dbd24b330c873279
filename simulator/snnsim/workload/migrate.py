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

from .graph import Layer
from .nodes import Node


def _op_node(layer: Layer, name: str) -> Node:
    params: dict[str, Any] = {}
    op = layer.op
    if op in ("conv2d", "conv3d"):
        params = {"out_channels": layer.out_shape[0], "kernel": list(layer.kernel), "stride": list(layer.stride),
                  "padding": list(layer.padding), "groups": layer.groups, "bias": False,
                  "weight_bits": layer.weight_bits}
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
