"""NIR (Neuromorphic Intermediate Representation) <-> spike trace format v1.

``workload_from_nir`` reads a NIR graph (``nir.read``) and makes a v1 trace of it: the graph's
nodes become layers, and the recorded activity comes either from a NIRData file (``nir.read_data``,
time-gridded or event data, one observable per neuron node) or from snnsim's own functional
model of the graph run on given inputs. ``workload_to_nir`` / ``write_nir`` do the reverse, and
``workload_to_nir_data`` / ``write_nir_data`` store a trace's input and spikes as NIRData.
The rules:

Primitives -> layers
    Conv2d, Conv1d (as a conv2d of height 1), Linear, Affine  -> conv2d / linear
    SumPool2d, AvgPool2d                                       -> avgpool (a sum pool scales its
                                                                  neuron's threshold by 1/kernel)
    SumPool2d -> Threshold(0 <= theta < 1)                      -> maxpool (the OR of spikes)
    Flatten (to one dimension)                                 -> flatten
    IF, LIF, CubaLIF                                           -> the neuron of a layer
    I, LI, CubaLI                                              -> only as the final read-out
    Input, Output                                              -> the trace's input; nothing

A synaptic or pooling node followed by a neuron node that is its only successor is one layer
(named after the synaptic node) with that neuron. A neuron node with several incoming edges sums
them (NIR's rule): over spiking inputs that is a residual ``add`` layer with a neuron (named after
the neuron node); a neuron after a single spiking node is an ``add`` of one input. A synaptic node
whose only successors are Output nodes is the read-out layer (no neuron). An ``Input -> Flatten ->
Affine/Linear`` over an image input (C, H, W) becomes a conv2d whose kernel covers the image
(identical arithmetic; a first layer the core runs must be a conv2d), followed by a flatten of
its spikes.
Delay, Scale, Threshold elsewhere, nested graphs (recurrence) and unknown nodes are refused with a
``WorkloadError`` naming the node.

Neuron equations (NIR, continuous time) and their discretisation, forward Euler with step ``dt``
(the convention of snnTorch's and SpikingJelly's NIR export; ``dt`` defaults to 1e-4 as theirs):

    IF       dv/dt = R I                          v[t] = v[t-1] + dt R I[t]
    LIF      tau dv/dt = (v_leak - v) + R I       v[t] = (1 - a) v[t-1] + a v_leak + a R I[t],  a = dt / tau
    CubaLIF  tau_syn dI/dt = -I + w_in S          I[t] = (1 - b) I[t-1] + b w_in S[t],          b = dt / tau_syn
             tau_mem dv/dt = (v_leak - v) + R I   v[t] = (1 - a) v[t-1] + a v_leak + a R I[t], a = dt / tau_mem

with S[t] the summed output of the node's inputs (bias included) at step t; a spike when
``v > v_threshold``, then ``v = v_reset``. The membrane is divided by the neuron's input gain g
(``dt R``, ``a R``, ``a R b w_in``), which leaves the spikes unchanged and gives format v1's
``v = (1 - leak) v + I`` with ``leak = a``, ``threshold = v_threshold / g`` (per channel) and the
layer's synaptic current unscaled. What maps exactly and what does not:

- IF and LIF are exact; LIF's ``v_leak`` becomes a constant current ``v_leak / R`` per step.
- ``v_reset`` must be 0 (format v1 resets to 0 or subtracts); NIR has no subtractive reset, so a
  trace's ``reset: subtract`` is exported as ``v_reset = 0`` with the true reset in the node's
  metadata (``snnsim_layer``), which this importer honours; ``reset=`` overrides.
- NIR fires on ``v > threshold``, format v1 on ``v >= threshold``: the functional model fires on
  ``>`` (``spike_condition="nir"``) or ``>=`` (``"v1"``); they differ only on exact ties.
- Per-neuron parameters must be constant within each output channel (format v1 stores one
  threshold per channel and one leak per layer).
- A bias (Affine, Conv) and LIF's ``v_leak`` are kept in the layer's ``extra["bias"]`` (per
  output channel): format v1 has no bias array, so ``snnsim verify`` and the hardware replay do
  not model the bias additions; the recorded spikes include them.
- CubaLIF's synaptic current is kept in ``extra["synapse"]`` (``decay`` b, ``offset``) and run by
  the functional model; the v1 neuron (a LIF with ``leak = a``) is exact only when b = 1
  (tau_syn = dt, then it is dropped).
- Weights are stored as float32 (format v1); the functional model computes in float64 with them.
- AvgPool2d averages over the whole kernel, zero padding included (PyTorch's default).

The functional model (``run_functional``) is a float64 NumPy forward pass of a v1 layer list:
direct encoding (the analog input is the first layers' input at every one of T steps), then, per
layer in topological order over all T steps, the synaptic current (convolution with zero padding
and groups, matrix product, window sum or mean, sum of inputs, reshape; plus ``extra["bias"]``)
and the neuron above. Membranes start at 0 for every sample.

``nir`` is imported only when these functions run; without it they raise a ``UsageError``
naming ``pip install "snnsim[nir]"``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import UsageError, WorkloadError, did_you_mean
from ..fileio import atomic_write
from ..workload.graph import Layer, Neuron, check_graph, conv_out
from ..workload.trace import Workload, binary_form, pack_spikes, save_workload

DEFAULT_DT = 1e-4
SUPPORTED = ("Input", "Output", "Conv1d", "Conv2d", "Linear", "Affine", "IF", "LIF", "CubaLIF",
             "SumPool2d", "AvgPool2d", "Flatten", "Threshold (only after a SumPool2d: max pooling)",
             "I, LI, CubaLI (only as the final read-out)")
_SUPPORTED_TEXT = ", ".join(SUPPORTED)
_SYNAPTIC = ("Conv1d", "Conv2d", "Linear", "Affine")
_POOLS = ("SumPool2d", "AvgPool2d")
_NEURONS = ("IF", "LIF", "CubaLIF")
_READOUTS = ("I", "LI", "CubaLI")
META_KEY = "snnsim_layer"
SPIKE_CONDITIONS = ("nir", "v1")
# float64 elements of one batch of currents in the functional model (~128 MB)
_CHUNK_ELEMENTS = 1 << 24


def require_nir():
    """The ``nir`` module, or a UsageError saying how to install it."""
    try:
        import nir
    except ImportError:
        raise UsageError("NIR support needs the 'nir' package", expected="nir installed",
                         found="no module named 'nir'", suggestion='pip install "snnsim[nir]"') from None
    return nir


# ----------------------------------------------------------------------------- functional model

def _conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, ...], padding: tuple[int, ...],
          groups: int) -> np.ndarray:
    """Grouped N-d cross-correlation with zero padding: x (B, C, *S), w (C_o, C/g, *k) -> (B, C_o, *S_o)."""
    nd = x.ndim - 2
    kernel = tuple(w.shape[2:])
    if any(padding):
        x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    win = sliding_window_view(x, kernel, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    co, cg = w.shape[:2]
    cog = co // groups
    out_sp = win.shape[2:2 + nd]
    out = np.empty((x.shape[0], co, *out_sp))
    axes_x = [1] + list(range(2 + nd, 2 + 2 * nd))
    axes_w = [1] + list(range(2, 2 + nd))
    # rows per block: the copied patches of a block stay within _CHUNK_ELEMENTS
    rows = max(1, _CHUNK_ELEMENTS // max(1, math.prod(out_sp) * cg * math.prod(kernel)))
    for g in range(groups):
        wg = w[g * cog:(g + 1) * cog]  # (cog, cg, *k)
        for r0 in range(0, x.shape[0], rows):
            part = win[r0:r0 + rows, g * cg:(g + 1) * cg]  # (B, cg, *S_o, *k)
            y = np.tensordot(part, wg, axes=(axes_x, axes_w))  # (B, *S_o, cog)
            out[r0:r0 + rows, g * cog:(g + 1) * cog] = np.moveaxis(y, -1, 1)
    return out


def _window_sum(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    nd = x.ndim - 2
    if any(padding):
        x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    win = sliding_window_view(x, tuple(kernel), axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    return win, tuple(range(-nd, 0))


def _channel(values: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Per-channel values broadcast over a channels-first activation (C, *spatial)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return v.reshape((-1,) + (1,) * (len(shape) - 1))


def _synaptic(layer: Layer, xs: list[np.ndarray], weights: dict[str, np.ndarray]) -> np.ndarray:
    """The layer's input current for a batch of (sample, step) rows: (B, *out_shape), float64."""
    x = xs[0]
    if layer.op in ("conv2d", "conv3d"):
        cur = _conv(x, weights[layer.name].astype(np.float64), layer.stride, layer.padding, layer.groups)
    elif layer.op == "linear":
        cur = x @ weights[layer.name].astype(np.float64).T
    elif layer.op in ("avgpool", "maxpool"):
        win, axes = _window_sum(x, layer.kernel, layer.stride, layer.padding)
        cur = win.max(axis=axes) if layer.op == "maxpool" else win.sum(axis=axes) / math.prod(layer.kernel)
    elif layer.op == "add":
        cur = sum(xs[1:], xs[0].copy())
    else:  # flatten
        cur = x.reshape(x.shape[0], -1)
    if "bias" in layer.extra:
        cur = cur + _channel(layer.extra["bias"], layer.out_shape)
    return cur


def _neuron(layer: Layer, cur: np.ndarray, thresholds: dict[str, np.ndarray], strict: bool) -> np.ndarray:
    """Run the layer's neuron over T steps: cur (B, T, *shape) -> bool spikes of the same shape."""
    n = layer.neuron
    assert n is not None
    shape = layer.out_shape
    theta = _channel(thresholds[layer.name], shape) if n.per_channel else np.float64(n.threshold)
    keep = 1.0 - n.leak
    syn_cfg = layer.extra.get("synapse")
    syn = np.zeros_like(cur[:, 0]) if syn_cfg else None
    v = np.zeros_like(cur[:, 0])
    out = np.zeros(cur.shape, dtype=bool)
    for t in range(cur.shape[1]):
        if syn is not None:
            syn = (1.0 - float(syn_cfg["decay"])) * syn + cur[:, t]
            v = keep * v + _channel(syn_cfg.get("offset", 0.0), shape) + syn
        else:
            v = keep * v + cur[:, t]
        s = v > theta if strict else v >= theta
        out[:, t] = s
        if n.reset == "zero":
            v = np.where(s, 0.0, v)
        else:
            v = v - np.where(s, theta, 0.0)
    return out


def run_functional(layers: list[Layer], weights: dict[str, np.ndarray], thresholds: dict[str, np.ndarray],
                   inputs: np.ndarray, time_steps: int, spike_condition: str = "nir") -> dict[str, np.ndarray]:
    """Spikes of every spiking layer, bool (samples, T, *out_shape), from a float64 forward pass
    with direct encoding (see the module docstring). ``layers`` must have been checked
    (``check_graph``) so that their ``in_shape`` and ``spiking`` are set."""
    if spike_condition not in SPIKE_CONDITIONS:
        raise UsageError("unknown spike condition", key="spike_condition", expected=" or ".join(SPIKE_CONDITIONS),
                         found=repr(spike_condition))
    strict = spike_condition == "nir"
    for layer in layers:
        if layer.op in ("conv2d", "conv3d", "linear") and layer.name not in weights:
            raise WorkloadError("the functional model needs the weights of every synaptic layer",
                                key=f"weights/{layer.name}", expected="weights", found="none")
    s_n = inputs.shape[0]
    t_n = time_steps
    biggest = max([math.prod(la.out_shape) for la in layers] + [math.prod(inputs.shape[1:])])
    chunk = max(1, _CHUNK_ELEMENTS // max(1, t_n * biggest))
    out = {la.name: np.zeros((s_n, t_n, *la.out_shape), dtype=bool) for la in layers if la.spiking}
    for s0 in range(0, s_n, chunk):
        x = np.asarray(inputs[s0:s0 + chunk], dtype=np.float64)
        b = x.shape[0]
        vals: dict[str, np.ndarray] = {}
        for layer in layers:
            if layer.inputs == ["input"]:
                # direct encoding: the same input at every step, so the current once
                cur = _synaptic(layer, [x], weights)
                cur = np.broadcast_to(cur[:, None], (b, t_n, *cur.shape[1:]))
            else:
                xs = [vals[s].reshape(b * t_n, *vals[s].shape[2:]).astype(np.float64) for s in layer.inputs]
                cur = _synaptic(layer, xs, weights)
                cur = cur.reshape(b, t_n, *cur.shape[1:])
            if layer.neuron is not None:
                spk = _neuron(layer, cur, thresholds, strict)
            elif layer.spiking:  # maxpool / flatten of spikes
                spk = cur > 0.5
            else:
                continue  # the read-out: not recorded
            vals[layer.name] = spk
            out[layer.name][s0:s0 + b] = spk
    return out


# ----------------------------------------------------------------------------- import

@dataclass
class _Value:
    """What a NIR node's output is, in format v1 terms."""

    kind: str  # "analog" (the graph input), "spikes", "current" (a synaptic/pool output not yet fired)
    shape: tuple[int, ...]  # v1 shape
    nir_shape: tuple[int, ...]
    layer: str | None = None  # the v1 layer producing it ("input" for the analog input)
    pending: dict[str, Any] = field(default_factory=dict)  # layer fields of a current
    flatten_of_input: str | None = None  # a Flatten node directly on the graph input


def _type(node: Any) -> str:
    return type(node).__name__


def _node_error(message: str, name: str, kind: str, source: str, expected: str | None = None,
                suggestion: str | None = None) -> WorkloadError:
    return WorkloadError(message, file=source, key=f"nodes.{name}", expected=expected,
                         found=f"{kind} node '{name}'", suggestion=suggestion)


def _ints(v: Any, n: int) -> tuple[int, ...]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n:
        raise ValueError(f"expected {n} values, got {a.size}")
    return tuple(int(i) for i in a)


def _text(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SUO" and v.size == 1:
        return _text(v.reshape(-1)[0])
    return v


def _read_graph(nir: Any, graph: Any) -> tuple[Any, str]:
    if isinstance(graph, nir.NIRGraph):
        return graph, "<memory>"
    p = Path(graph)
    if not p.is_file():
        raise WorkloadError("NIR file not found", file=str(graph), expected="an existing .nir (HDF5) file",
                            found="no such file")
    try:
        try:
            g = nir.read(p, type_check=False)
        except TypeError:  # an older nir without type_check
            g = nir.read(p)
    except Exception as e:  # h5py and nir raise many kinds on a foreign or damaged file
        raise WorkloadError("not a readable NIR graph", file=str(graph), expected="a file written by nir.write",
                            found=f"{type(e).__name__}: {e}") from None
    if not isinstance(g, nir.NIRGraph):
        raise WorkloadError("the NIR file holds a single node, not a graph", file=str(graph),
                            expected="a NIRGraph", found=_type(g))
    return g, str(graph)


def _topo(nodes: dict[str, Any], edges: list[tuple[str, str]], source: str) -> list[str]:
    order_index = {n: i for i, n in enumerate(nodes)}
    indeg = {n: 0 for n in nodes}
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
        indeg[b] += 1
    ready = sorted((n for n in nodes if indeg[n] == 0), key=order_index.get)
    out = []
    while ready:
        n = ready.pop(0)
        out.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
                ready.sort(key=order_index.get)
    if len(out) != len(nodes):
        cyc = sorted(n for n in nodes if n not in out)
        raise WorkloadError("the NIR graph has a cycle (recurrent connections)", file=source,
                            key=f"nodes.{cyc[0]}", expected="a feed-forward graph (format v1 replays "
                            "feed-forward networks)", found=f"a cycle through {', '.join(cyc[:6])}")
    return out


class _Importer:
    """Translates one NIR graph into format v1 layers, weights and thresholds."""

    def __init__(self, nir: Any, graph: Any, source: str, dt: float, weight_bits: int, reset: str | None):
        self.nir, self.g, self.source = nir, graph, source
        self.dt, self.weight_bits, self.reset = dt, weight_bits, reset
        self.layers: list[Layer] = []
        self.weights: dict[str, np.ndarray] = {}
        self.thresholds: dict[str, np.ndarray] = {}
        self.values: dict[str, _Value] = {}
        self.names: set[str] = set()
        self.data_node: dict[str, str] = {}  # layer -> NIR node whose data are its spikes
        self.notes: list[str] = []
        self.input_node = ""
        self.input_shape: tuple[int, ...] = ()
        self.nir_input_shape: tuple[int, ...] = ()

    # -- helpers

    def err(self, message: str, name: str, expected: str | None = None, suggestion: str | None = None):
        return _node_error(message, name, _type(self.g.nodes[name]), self.source, expected, suggestion)

    def layer_name(self, node: str) -> str:
        name = node.replace("/", "_")
        if name == "input":
            name = "input_"
        base, i = name, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def meta(self, node: str) -> dict[str, Any]:
        md = getattr(self.g.nodes[node], "metadata", None) or {}
        raw = _text(md.get(META_KEY)) if isinstance(md, dict) else None
        if not isinstance(raw, str):
            return {}
        try:
            d = json.loads(raw)
        except json.JSONDecodeError:
            return {}
        return d if isinstance(d, dict) else {}

    def param(self, name: str, attr: str, shape: tuple[int, ...]) -> np.ndarray:
        node = self.g.nodes[name]
        v = getattr(node, attr, None)
        if v is None:
            raise self.err(f"parameter {attr} missing", name, expected=f"{attr} of shape {list(shape)}")
        try:
            return np.broadcast_to(np.asarray(v, dtype=np.float64), shape)
        except ValueError:
            raise self.err(f"parameter {attr} does not fit the node's shape", name,
                           expected=f"an array broadcastable to {list(shape)}",
                           suggestion=f"{attr} has shape {list(np.shape(v))}") from None

    def per_channel(self, name: str, attr: str, nir_shape: tuple[int, ...], channels: int) -> np.ndarray:
        a = self.param(name, attr, nir_shape).reshape(channels, -1)
        if not np.all(a == a[:, :1]):
            raise self.err(f"{attr} varies within an output channel", name,
                           expected="one value per channel (format v1 stores per-channel thresholds and "
                           "one leak per layer)")
        return a[:, 0].copy()

    def uniform(self, name: str, attr: str, nir_shape: tuple[int, ...]) -> float:
        a = self.param(name, attr, nir_shape).reshape(-1)
        if not np.all(a == a[0]):
            raise self.err(f"{attr} varies across the layer's neurons", name,
                           expected="one value for the whole layer (format v1 has one leak per layer)")
        return float(a[0])

    # -- driver

    def run(self) -> None:
        g = self.g
        nodes: dict[str, Any] = dict(g.nodes)
        edges = [(_text(a), _text(b)) for a, b in g.edges]
        for a, b in edges:
            for end in (a, b):
                if end not in nodes:
                    raise WorkloadError("an edge names an unknown node", file=self.source, key=f"edges.{end}",
                                        expected="a node of the graph", found=end,
                                        suggestion=did_you_mean(end, nodes))
        for name, node in nodes.items():
            t = _type(node)
            if t == "NIRGraph":
                raise _node_error("nested NIR graphs (recurrent blocks) are not supported", name, t, self.source,
                                  expected=f"one of {_SUPPORTED_TEXT}")
            if t not in ("Input", "Output", "Flatten", "Threshold", *_SYNAPTIC, *_POOLS, *_NEURONS, *_READOUTS):
                raise _node_error(f"NIR primitive {t} is not supported", name, t, self.source,
                                  expected=f"one of {_SUPPORTED_TEXT}")
        inputs = [n for n, node in nodes.items() if _type(node) == "Input"]
        if len(inputs) != 1:
            raise WorkloadError("the NIR graph must have exactly one Input node", file=self.source, key="nodes",
                                expected="one Input", found=f"{len(inputs)} Input nodes {inputs}")
        self.preds: dict[str, list[str]] = {n: [] for n in nodes}
        self.succs: dict[str, list[str]] = {n: [] for n in nodes}
        for a, b in edges:
            self.preds[b].append(a)
            self.succs[a].append(b)
        order = _topo(nodes, edges, self.source)
        self.input_node = inputs[0]
        self.prepare_input(self.input_node)
        for name in order:
            t = _type(nodes[name])
            if t in ("Input", "Output"):
                continue
            if not self.preds[name]:
                raise self.err("node has no input edge", name, expected="an edge from the Input or another node")
            handler = {"Flatten": self.flatten, "Threshold": self.threshold}.get(t)
            if handler is None:
                handler = (self.synaptic if t in _SYNAPTIC else self.pool if t in _POOLS
                           else self.neuron if t in _NEURONS else self.readout)
            handler(name)
        # currents nobody consumed are the read-out
        for name in order:
            v = self.values.get(name)
            if v is not None and v.kind == "current":
                others = [s for s in self.succs[name] if _type(nodes[s]) != "Output"]
                if others:
                    raise self.err("a synaptic or pooling output feeds a node that is not its neuron", name,
                                   expected="exactly one neuron node after it, or only Output nodes "
                                   "(a read-out)", suggestion=f"it feeds {others}")
                self.values[name] = self.emit(name, v.pending, None, data_node=None)
        # non-spiking read-outs go last
        self.layers.sort(key=lambda la: la.neuron is None and la.op not in ("maxpool", "flatten"))

    def prepare_input(self, name: str) -> None:
        node = self.g.nodes[name]
        shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).reshape(-1))
        if not shape or any(s < 1 for s in shape):
            raise self.err("invalid input shape", name, expected="positive sizes, channels first")
        self.nir_input_shape = shape
        consumers = [_type(self.g.nodes[s]) for s in self.succs[name]]
        v1 = shape
        if len(shape) == 2 and "Conv1d" in consumers:
            v1 = (shape[0], 1, shape[1])  # a 1-D signal as an image of height 1
        self.input_shape = v1
        self.values[name] = _Value("analog", v1, shape, layer="input")

    def value_of(self, name: str, pred: str) -> _Value:
        v = self.values.get(pred)
        if v is None:  # pragma: no cover - topological order guarantees it
            raise self.err("input not computed", name)
        return v

    def single_pred(self, name: str) -> _Value:
        if len(self.preds[name]) != 1:
            raise self.err("node has several inputs: NIR sums them, which format v1 expresses only "
                           "as spikes into a neuron (an add layer)", name, expected="one incoming edge",
                           suggestion=f"its inputs: {self.preds[name]}")
        return self.value_of(name, self.preds[name][0])

    def only_successor(self, pred: str, name: str) -> bool:
        return self.succs[pred] == [name]

    # -- node handlers

    def flatten(self, name: str) -> None:
        node = self.g.nodes[name]
        v = self.single_pred(name)
        nd = len(v.nir_shape)
        start, end = int(getattr(node, "start_dim", 0)), int(getattr(node, "end_dim", -1))
        start, end = (start + nd if start < 0 else start), (end + nd if end < 0 else end)
        consumers = [_type(self.g.nodes[s]) for s in self.succs[name] if _type(self.g.nodes[s]) != "Output"]
        full = start == 0 and end == nd - 1
        # some exporters count a batch dimension: start_dim 1 before a dense layer means all
        if not full and start == 1 and end == nd - 1 and consumers and all(c in ("Affine", "Linear") for c in consumers):
            full = True
            self.notes.append(f"Flatten '{name}' (start_dim 1) read as a flatten of all dimensions")
        if not full and nd > 1:
            raise self.err("only a flatten to one dimension is supported", name,
                           expected="start_dim 0 and end_dim -1 (format v1 layers are channels-first "
                           "images or flat vectors)", suggestion=f"start_dim {start}, end_dim {end} of shape "
                           f"{list(v.nir_shape)}")
        n = math.prod(v.shape)
        if v.kind == "analog":
            if not all(c in ("Affine", "Linear") for c in consumers) or not consumers:
                raise self.err("a flatten of the analog input must feed Affine/Linear nodes only", name,
                               expected="Input -> Flatten -> Affine")
            self.values[name] = _Value("analog", (n,), (n,), layer="input", flatten_of_input=name)
        elif v.kind == "spikes":
            lname = self.layer_name(name)
            meta = self.meta(name)
            extra = {k: x for k, x in (meta.get("extra") or {}).items() if k != "nir"} \
                if isinstance(meta.get("extra"), dict) else {}
            if lname != name:
                extra["nir"] = {"node": name}
            self.layers.append(Layer(lname, "flatten", [v.layer], (n,), extra=extra))
            self.values[name] = _Value("spikes", (n,), (n,), layer=lname)
        else:
            raise self.err("a flatten of a non-spiking value is not representable", name,
                           expected="a flatten of spikes (format v1 feeds only spikes between layers)")

    def synaptic(self, name: str) -> None:
        node, t = self.g.nodes[name], _type(self.g.nodes[name])
        v = self.single_pred(name)
        if v.kind == "current":
            raise self.err("a synaptic node fed by another synaptic or pooling node has no neuron between",
                           name, expected="spikes or the analog input")
        w = np.asarray(node.weight, dtype=np.float64)
        pending: dict[str, Any] = {"type": t, "node": name}
        nir_extra: dict[str, Any] = {}
        if t in ("Affine", "Linear"):
            if w.ndim != 2:
                raise self.err("only 2-D weights (out, in) are supported", name,
                               expected="weight of shape (out, in)", suggestion=f"shape {list(w.shape)}")
            n_out, n_in = w.shape
            if n_in != math.prod(v.nir_shape) or (len(v.nir_shape) != 1 and v.flatten_of_input is None):
                raise self.err("weight does not fit the input", name, expected=f"(out, {math.prod(v.nir_shape)}) "
                               "on a flat input", suggestion=f"weight {list(w.shape)}, input {list(v.nir_shape)}")
            bias = np.zeros(n_out) if t == "Linear" else self.param(name, "bias", (n_out,)).copy()
            if v.flatten_of_input is not None and len(self.input_shape) == 3:
                # Input -> Flatten -> Affine on an image: one conv2d whose kernel is the image
                c, h, wd = self.input_shape
                pending.update(op="conv2d", inputs=["input"], out_shape=(n_out, 1, 1), kernel=(h, wd),
                               stride=(h, wd), padding=(0, 0), weights=w.reshape(n_out, c, h, wd))
                nir_extra.update(input_flatten=v.flatten_of_input, shape=[n_out])
            else:
                if v.flatten_of_input is not None:
                    # a non-image input flattened: the trace's input is the flat vector
                    if self.succs[self.input_node] != [v.flatten_of_input]:
                        raise self.err("the flattened input also feeds other nodes", name,
                                       expected="Input -> Flatten as the only path from a non-image input")
                    self.input_shape = (n_in,)
                    self.values[self.input_node].shape = (n_in,)
                    nir_extra.update(input_flatten=v.flatten_of_input)
                pending.update(op="linear", inputs=[v.layer], out_shape=(n_out,), weights=w)
            nir_shape: tuple[int, ...] = (n_out,)
        else:
            nd = 1 if t == "Conv1d" else 2
            if w.ndim != nd + 2:
                raise self.err("weight has the wrong number of dimensions", name,
                               expected=f"(C_out, C_in/groups, {'k' if nd == 1 else 'kh, kw'})",
                               suggestion=f"shape {list(w.shape)}")
            if len(v.nir_shape) != nd + 1:
                raise self.err(f"{t} input must have {nd + 1} dimensions (channels first)", name,
                               expected=f"{nd + 1} dimensions", suggestion=f"input shape {list(v.nir_shape)}")
            groups = int(np.asarray(node.groups).reshape(-1)[0])
            c_in, c_out, k = v.nir_shape[0], w.shape[0], tuple(w.shape[2:])
            if groups < 1 or w.shape[1] * groups != c_in or c_out % groups:
                raise self.err("weight and groups do not fit the input channels", name,
                               expected=f"weight (C_out, {c_in}/groups, ...)",
                               suggestion=f"weight {list(w.shape)}, groups {groups}")
            try:
                stride = _ints(node.stride, nd)
                dilation = _ints(getattr(node, "dilation", 1), nd)
                pad_raw = _text(node.padding)
                if isinstance(pad_raw, str):
                    if pad_raw == "valid":
                        padding = (0,) * nd
                    elif pad_raw == "same" and all(s == 1 for s in stride) and all(kk % 2 for kk in k):
                        padding = tuple((kk - 1) // 2 for kk in k)
                    else:
                        raise self.err(f"padding '{pad_raw}' is not representable", name,
                                       expected="integer padding, 'valid', or 'same' with stride 1 and odd kernels")
                else:
                    padding = _ints(pad_raw, nd)
            except ValueError as e:
                raise self.err(f"invalid stride/padding/dilation: {e}", name) from None
            if any(d != 1 for d in dilation):
                raise self.err("dilated convolutions are not supported", name, expected="dilation 1",
                               suggestion=f"dilation {list(dilation)}")
            spatial = tuple(conv_out(n, kk, s, p) for n, kk, s, p in zip(v.nir_shape[1:], k, stride, padding, strict=True))
            if any(s < 1 for s in spatial):
                raise self.err("kernel larger than its padded input", name, expected="output size >= 1")
            nir_shape = (c_out, *spatial)
            bias = self.param(name, "bias", (c_out,)).copy() if getattr(node, "bias", None) is not None else np.zeros(c_out)
            if nd == 1:
                pending.update(op="conv2d", out_shape=(c_out, 1, spatial[0]), kernel=(1, k[0]), stride=(1, stride[0]),
                               padding=(0, padding[0]), weights=w[:, :, None, :])
                nir_extra.update(shape=list(nir_shape))
            else:
                pending.update(op="conv2d", out_shape=nir_shape, kernel=k, stride=stride, padding=padding, weights=w)
            pending.update(inputs=[v.layer], groups=groups)
        pending["bias"] = bias
        pending["nir_extra"] = nir_extra
        self.values[name] = _Value("current", tuple(pending["out_shape"]), nir_shape, pending=pending)

    def pool(self, name: str) -> None:
        node, t = self.g.nodes[name], _type(self.g.nodes[name])
        v = self.single_pred(name)
        if v.kind != "spikes":
            raise self.err("pooling is supported over spikes only", name,
                           expected="a spiking input (format v1 feeds only spikes between layers)")
        if len(v.shape) != 3:
            raise self.err("pooling needs a (C, H, W) input", name, suggestion=f"input shape {list(v.shape)}")
        try:
            k = _ints(node.kernel_size, 2)
            s = _ints(node.stride, 2)
            p = _ints(node.padding, 2)
        except ValueError as e:
            raise self.err(f"invalid kernel/stride/padding: {e}", name) from None
        spatial = tuple(conv_out(n, kk, ss, pp) for n, kk, ss, pp in zip(v.shape[1:], k, s, p, strict=True))
        if any(x < 1 for x in spatial):
            raise self.err("kernel larger than its padded input", name, expected="output size >= 1")
        shape = (v.shape[0], *spatial)
        pending = {"type": t, "node": name, "op": "avgpool", "inputs": [v.layer], "out_shape": shape,
                   "kernel": k, "stride": s, "padding": p, "bias": np.zeros(shape[0]), "nir_extra": {},
                   "scale": float(math.prod(k)) if t == "SumPool2d" else 1.0}
        self.values[name] = _Value("current", shape, shape, pending=pending)

    def threshold(self, name: str) -> None:
        v = self.single_pred(name)
        pred = self.preds[name][0]
        ok = v.kind == "current" and v.pending.get("type") == "SumPool2d" and self.only_successor(pred, name)
        if ok:
            th = self.param(name, "threshold", v.nir_shape)
            ok = bool(np.all((th >= 0) & (th < 1)))
        if not ok:
            raise self.err("NIR primitive Threshold is supported only as SumPool2d -> Threshold(0 <= "
                           "threshold < 1), the max pooling of spikes", name, expected=f"one of {_SUPPORTED_TEXT}")
        pending = dict(v.pending, op="maxpool", type="SumPool2d")
        if name != f"{pred}.threshold":
            pending["nir_extra"] = dict(pending["nir_extra"], threshold=name)
        self.values[name] = self.emit(pred, pending, None, data_node=name)

    def neuron(self, name: str) -> None:
        preds = self.preds[name]
        vals = [self.value_of(name, p) for p in preds]
        if len(vals) == 1 and vals[0].kind == "current" and self.only_successor(preds[0], name):
            self.values[name] = self.emit(preds[0], vals[0].pending, name, data_node=name)
            return
        if all(x.kind == "spikes" for x in vals):
            shapes = {x.shape for x in vals}
            if len(shapes) != 1:
                raise self.err("the inputs summed into this neuron have different shapes", name,
                               suggestion=f"shapes {sorted(list(s) for s in shapes)}")
            v = vals[0]
            pending = {"type": "add", "node": name, "op": "add", "inputs": [x.layer for x in vals],
                       "out_shape": v.shape, "bias": np.zeros(v.shape[0]), "nir_extra": {}}
            if v.shape != v.nir_shape:
                pending["nir_extra"]["shape"] = list(v.nir_shape)
            self.values[name] = self.emit(name, pending, name, data_node=name)
            return
        kinds = [f"{p} ({x.kind})" for p, x in zip(preds, vals, strict=True)]
        raise self.err("this neuron's input is not representable in format v1", name,
                       expected="one synaptic/pooling node that feeds only this neuron, or spikes only "
                       "(summed: a residual add)", suggestion=f"inputs: {', '.join(kinds)}")

    def readout(self, name: str) -> None:
        v = self.single_pred(name)
        pred = self.preds[name][0]
        final = all(_type(self.g.nodes[s]) == "Output" for s in self.succs[name])
        t = _type(self.g.nodes[name])
        if v.kind != "current" or not self.only_successor(pred, name) or not final:
            raise self.err(f"NIR primitive {t} is supported only as the final read-out after a synaptic "
                           "node", name, expected=f"one of {_SUPPORTED_TEXT}")
        node = self.g.nodes[name]
        attrs = {"I": ("r",), "LI": ("tau", "r", "v_leak"), "CubaLI": ("tau_syn", "tau_mem", "r", "v_leak", "w_in")}[t]
        keep: dict[str, Any] = {"type": t}
        if name != f"{pred}.{t.lower()}":
            keep["node"] = name
        for a in attrs:
            arr = np.asarray(getattr(node, a), dtype=np.float64).reshape(-1)
            if arr.size and np.all(arr == arr[0]):
                keep[a] = float(arr[0])
            else:
                self.notes.append(f"read-out '{name}': {a} varies per neuron and is not kept")
        pending = dict(v.pending)
        pending["nir_extra"] = dict(pending["nir_extra"], readout=keep)
        self.values[name] = self.emit(pred, pending, None, data_node=None)
        self.values[name].kind = "readout"

    # -- layer construction

    def emit(self, node: str, pending: dict[str, Any], neuron_node: str | None, data_node: str | None) -> _Value:
        """Make the layer of a pending synaptic/pool/add op (with the neuron node, if any); the
        value it gives its consumers."""
        lname = self.layer_name(node)
        op = pending["op"]
        shape = tuple(pending["out_shape"])
        if node in self.values and self.values[node].kind == "current":
            self.values[node].kind = "consumed"
        # the exact snnsim layer, when this graph was written by workload_to_nir
        meta = (self.meta(neuron_node) if neuron_node else {}) or self.meta(node)
        meta_extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
        extra: dict[str, Any] = {k: v for k, v in meta_extra.items() if k not in ("bias", "synapse", "nir")}
        nir_extra = dict(pending.get("nir_extra", {}))
        if op != "add" and lname != node:
            nir_extra["node"] = node
        kw: dict[str, Any] = {}
        if op in ("conv2d", "avgpool", "maxpool"):
            kw.update(kernel=tuple(pending["kernel"]), stride=tuple(pending["stride"]),
                      padding=tuple(pending["padding"]))
        if op == "conv2d":
            kw["groups"] = int(pending.get("groups", 1))
        weights = pending.get("weights")
        if weights is not None:
            w32 = np.ascontiguousarray(weights, dtype=np.float32)
            self.weights[lname] = w32
            bits = meta.get("weight_bits")
            if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 32:
                bits = 1 if binary_form(w32) is not None else self.weight_bits
            kw["weight_bits"] = bits
        bias = np.asarray(pending["bias"], dtype=np.float64)
        scale = float(pending.get("scale", 1.0))
        neuron = None
        if neuron_node is not None:
            neuron, theta, bias, synapse = self.neuron_params(neuron_node, shape, pending, bias, scale, meta)
            if neuron.per_channel:
                self.thresholds[lname] = theta.astype(np.float32)
            if synapse:
                extra["synapse"] = _prefer(synapse, meta_extra.get("synapse"))
            if op != "add" and neuron_node != f"{node}.{_type(self.g.nodes[neuron_node]).lower()}":
                nir_extra["neuron"] = neuron_node
        elif np.any(bias != 0):
            bias = bias / scale
        if np.any(bias != 0):
            extra["bias"] = _prefer([float(b) for b in bias], meta_extra.get("bias"))
        # the NIR type the exporter would not choose by itself
        default = {"linear": "Affine" if "bias" in extra else "Linear", "conv2d": "Conv2d",
                   "avgpool": "AvgPool2d", "maxpool": "SumPool2d", "add": "add"}[op]
        if pending["type"] != default:
            nir_extra["type"] = pending["type"]
        if nir_extra:
            extra["nir"] = nir_extra
        layer = Layer(lname, op, list(pending["inputs"]), shape, neuron=neuron, extra=extra, **kw)
        self.layers.append(layer)
        if data_node is not None:
            self.data_node[lname] = data_node
        nir_shape = self.values_nir_shape(pending, shape)
        if "input_flatten" in nir_extra and op == "conv2d" and neuron is not None:
            # Input -> Flatten -> Affine became a conv2d of (out, 1, 1): its consumers read it flat
            fname = self.layer_name(f"{lname}.flat")
            self.layers.append(Layer(fname, "flatten", [lname], (shape[0],), extra={"nir": {"synthetic": True}}))
            return _Value("spikes", (shape[0],), nir_shape, layer=fname)
        return _Value("spikes" if layer.neuron is not None or op == "maxpool" else "readout", shape, nir_shape,
                      layer=lname)

    def neuron_params(self, name: str, shape: tuple[int, ...], pending: dict[str, Any], bias: np.ndarray,
                      scale: float, meta: dict[str, Any]):
        t = _type(self.g.nodes[name])
        nir_shape = self.values_nir_shape(pending, shape)
        c = shape[0]
        dt = self.dt
        theta = self.per_channel(name, "v_threshold", nir_shape, c)
        v_reset = self.param(name, "v_reset", nir_shape) if getattr(self.g.nodes[name], "v_reset", None) is not None \
            else np.zeros(nir_shape)
        synapse: dict[str, Any] = {}
        offset = np.zeros(c)
        if t == "IF":
            gain = dt * self.per_channel(name, "r", nir_shape, c)
            leak = 0.0
        elif t == "LIF":
            leak = dt / self.uniform(name, "tau", nir_shape)
            r = self.per_channel(name, "r", nir_shape, c)
            gain = leak * r
            with np.errstate(divide="ignore", invalid="ignore"):
                bias = bias + self.per_channel(name, "v_leak", nir_shape, c) / r
        else:  # CubaLIF
            leak = dt / self.uniform(name, "tau_mem", nir_shape)
            decay = dt / self.uniform(name, "tau_syn", nir_shape)
            r = self.per_channel(name, "r", nir_shape, c)
            w_in = self.per_channel(name, "w_in", nir_shape, c)
            gain = leak * r * decay * w_in
            with np.errstate(divide="ignore", invalid="ignore"):
                offset = leak * self.per_channel(name, "v_leak", nir_shape, c) / gain
            if not 0 < decay <= 1:
                raise self.err("tau_syn out of range for the time step", name,
                               expected=f"tau_syn >= dt ({dt:g})", suggestion=f"dt / tau_syn = {decay:g}")
            if decay != 1.0:
                synapse = {"decay": decay}
                if np.any(offset != 0):
                    synapse["offset"] = [float(x) for x in offset / scale]
                self.notes.append(f"CubaLIF '{name}': its synaptic current is in extra.synapse; the v1 neuron "
                                  "(LIF) alone is not exact")
            else:
                bias = bias + offset
        # exporters write r = tau / dt so that the gain is 1: do not let rounding make it 1 - 1e-16
        gain = np.where(np.abs(gain - 1.0) <= 1e-12, 1.0, gain)
        if not 0.0 <= leak < 1.0:
            raise self.err("time constant out of range for the time step", name,
                           expected=f"tau > dt ({dt:g}): format v1 needs 0 <= dt/tau < 1",
                           suggestion=f"dt / tau = {leak:g}; pass a smaller dt")
        if not np.all(np.isfinite(gain)) or np.any(gain <= 0):
            raise self.err("the neuron's input gain (dt, tau, r, w_in) must be positive", name,
                           expected="r > 0 (and w_in > 0)", suggestion=f"gain min {np.min(gain):g}")
        if not np.all(np.isfinite(bias)):
            raise self.err("v_leak / r is not finite", name, expected="finite parameters")
        theta = theta / gain / scale
        bias = bias / scale
        if np.any(theta <= 0) or not np.all(np.isfinite(theta)):
            raise self.err("threshold must be positive", name, expected="v_threshold > 0 (format v1)",
                           suggestion=f"threshold / gain min {np.min(theta):g}")
        reset = "zero"
        if np.any(v_reset != 0):
            raise self.err("v_reset other than 0 is not representable", name,
                           expected="v_reset = 0 (format v1 resets to 0 or subtracts the threshold)")
        model = "IF" if leak == 0.0 and t == "IF" else "LIF"
        mn = meta.get("neuron") if isinstance(meta.get("neuron"), dict) else {}
        if mn:  # the exact values this importer's counterpart wrote, if the graph still agrees
            if mn.get("reset") in ("subtract", "zero"):
                reset = mn["reset"]
            if mn.get("model") in ("IF", "LIF"):
                model = mn["model"]
            ml = mn.get("leak")
            if isinstance(ml, (int, float)) and abs(ml - leak) <= 1e-9 * max(1.0, abs(leak)):
                leak = float(ml)
        if self.reset is not None:
            reset = self.reset
        uniform = bool(np.all(theta == theta[0]))
        per_channel = not uniform or bool(mn.get("per_channel", False))
        mt = mn.get("threshold")
        known = isinstance(mt, (int, float)) and not isinstance(mt, bool) and mt > 0
        if per_channel:  # the scalar is unused; keep what was written
            thr = float(mt) if known else 1.0
        else:
            thr = float(theta[0])
            if known and abs(mt - thr) <= 1e-9 * max(1.0, abs(thr)):
                thr = float(mt)
        neuron = Neuron(model=model, threshold=thr, leak=float(leak), reset=reset, per_channel=per_channel)
        return neuron, theta, bias, synapse

    def values_nir_shape(self, pending: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, ...]:
        s = pending.get("nir_extra", {}).get("shape")
        return tuple(s) if s else shape


def _prefer(computed: Any, written: Any) -> Any:
    """The values written in the node's metadata when they agree with the computed ones to
    1e-9 (they are exact; the computed ones went through the NIR parameters and back)."""
    try:
        a = np.asarray(computed, dtype=np.float64)
        b = np.asarray(written, dtype=np.float64)
        if a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=0.0):
            return written
    except (TypeError, ValueError):
        pass
    if isinstance(computed, dict) and isinstance(written, dict) and set(computed) == set(written):
        return {k: _prefer(computed[k], written[k]) for k in computed}
    return computed


def _load_inputs(inputs: Any, shape: tuple[int, ...], nir_shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(inputs, (str, os.PathLike)):
        p = Path(inputs)
        if not p.is_file():
            raise WorkloadError("inputs file not found", file=str(inputs), expected="a .npy or .npz array",
                                found="no such file")
        with open(p, "rb") as fh:
            zipped = fh.read(4) == b"PK\x03\x04"
        if zipped:  # every member's header and size checked before its data is read
            from ..workload.npzfile import NpzArchive

            with NpzArchive(p, str(inputs)) as z:
                names = z.names
                key = "input" if "input" in names else names[0] if len(names) == 1 else None
                if key is None:
                    raise WorkloadError("inputs .npz holds several arrays", file=str(inputs), key="input",
                                        expected="an array named 'input' or a single array", found=str(names))
                a = z.read(key)
        else:
            try:  # memory-mapped: a header that claims more than the file holds fails before any allocation
                a = np.load(p, allow_pickle=False, mmap_mode="r")
            except Exception as e:  # a damaged header raises ValueError, SyntaxError, TokenError...
                raise WorkloadError("inputs file is not a readable NumPy array", file=str(inputs),
                                    expected=".npy or .npz of numbers", found=f"{type(e).__name__}: {e}"[:200]) from None
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
                raise WorkloadError("inputs file is not an array of numbers", file=str(inputs),
                                    expected="a numeric .npy array", found=str(getattr(a, "dtype", type(a).__name__)))
        src = str(inputs)
    else:
        a, src = np.asarray(inputs), "inputs"
    a = np.asarray(a, dtype=np.float64)
    n = math.prod(shape)
    if a.shape[1:] in (shape, nir_shape) or (a.ndim >= 2 and math.prod(a.shape[1:]) == n):
        a = a.reshape(a.shape[0], *shape)
    elif a.shape in (shape, nir_shape):
        a = a.reshape(1, *shape)
    else:
        raise WorkloadError("inputs have the wrong shape", file=src, key="input",
                            expected=f"(samples, {', '.join(map(str, nir_shape))})", found=str(list(a.shape)))
    if a.shape[0] < 1:
        raise WorkloadError("no input samples", file=src, key="input", expected="at least one sample", found="0")
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise WorkloadError("input values out of range", file=src, key="input",
                            expected="finite values in [0, 1] (the trace's analog input)",
                            found=f"[{np.nanmin(a):g}, {np.nanmax(a):g}]",
                            suggestion="scale the inputs to [0, 1] and fold the scale into the first layer's weights")
    return a


def _observable(node_data: Any, node: str, source: str):
    obs = getattr(node_data, "observables", None)
    if not isinstance(obs, dict) or not obs:
        raise WorkloadError("no observables for the node", file=source, key=f"nodes.{node}",
                            expected="an observable 'spikes'", found="none")
    if "spikes" in obs:
        return obs["spikes"]
    if len(obs) == 1:
        return next(iter(obs.values()))
    raise WorkloadError("several observables and none named 'spikes'", file=source, key=f"nodes.{node}",
                        expected="'spikes'", found=str(sorted(obs)))


def _grid(nir: Any, o: Any, n: int, steps: int | None, dt: float, node: str, source: str) -> np.ndarray:
    """An observable as (samples, T, n) array."""
    if isinstance(o, nir.TimeGriddedData):
        a = np.asarray(o.data)
    elif isinstance(o, nir.EventData):
        t_max = float(o.t_max)
        step_dt = t_max / steps if steps else dt
        t_n = steps or int(round(t_max / step_dt))
        idx, tm = np.asarray(o.idx), np.asarray(o.time, dtype=np.float64)
        a = np.zeros((idx.shape[0], t_n, int(o.n_neurons)), dtype=bool)
        for s in range(idx.shape[0]):
            ok = idx[s] >= 0
            st = np.clip(np.floor(tm[s][ok] / step_dt + 1e-9).astype(np.int64), 0, t_n - 1)
            a[s, st, idx[s][ok]] = True
    else:
        raise WorkloadError("unknown observable type", file=source, key=f"nodes.{node}",
                            expected="TimeGriddedData or EventData", found=type(o).__name__)
    if a.ndim != 3 or a.shape[2] != n:
        raise WorkloadError("recorded data do not fit the node", file=source, key=f"nodes.{node}",
                            expected=f"(samples, T, {n})", found=str(list(a.shape)))
    return a


def _read_data(nir: Any, spikes: Any):
    if isinstance(spikes, nir.NIRGraphData):
        return spikes, "<memory>"
    p = Path(spikes)
    if not p.is_file():
        raise WorkloadError("NIRData file not found", file=str(spikes), expected="a file written by nir.write_data",
                            found="no such file")
    try:
        return nir.read_data(str(p)), str(spikes)
    except Exception as e:  # h5py and nir raise many kinds on a foreign file
        raise WorkloadError("not a readable NIRData file", file=str(spikes), expected="a NIRGraphData HDF5 file",
                            found=f"{type(e).__name__}: {e}") from None


def workload_from_nir(graph: Any, spikes: Any = None, inputs: Any = None, time_steps: int | None = None, *,
                      dt: float = DEFAULT_DT, weight_bits: int = 8, spike_condition: str = "nir",
                      reset: str | None = None, model: str | None = None, dataset: str = "unknown") -> Workload:
    """A format v1 workload from a NIR graph (a path, or a ``nir.NIRGraph``).

    Activity: ``spikes`` (a NIRData file or ``nir.NIRGraphData``) gives every neuron node's spikes
    (observable ``spikes``, or the only one; time-gridded, or events binned into ``time_steps``
    steps); the input comes from ``inputs`` or, failing that, from the data of the Input node
    (constant over steps: direct encoding). Without ``spikes``, ``inputs`` (an array (samples,
    *input shape) in [0, 1], or a .npy/.npz path) and ``time_steps`` are required, and the spikes
    come from the functional model (module docstring). ``dt`` is the discretisation step,
    ``weight_bits`` the width recorded for non-binary weights (1 when every channel is +-one
    scale), ``reset`` overrides the reset mode, ``spike_condition`` is ``nir`` (v > threshold)
    or ``v1`` (v >= threshold). Raises WorkloadError (naming the node) for what format v1 cannot
    hold, UsageError without ``nir``.
    """
    nir = require_nir()
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise UsageError("dt must be a positive number", key="dt", expected="> 0", found=repr(dt))
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or not 1 <= weight_bits <= 32:
        raise UsageError("weight_bits out of range", key="weight_bits", expected="an integer in 1..32",
                         found=repr(weight_bits))
    if reset not in (None, "zero", "subtract"):
        raise UsageError("unknown reset mode", key="reset", expected="zero or subtract", found=repr(reset))
    if spike_condition not in SPIKE_CONDITIONS:
        raise UsageError("unknown spike condition", key="spike_condition", expected=" or ".join(SPIKE_CONDITIONS),
                         found=repr(spike_condition))
    if time_steps is not None and (isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1):
        raise UsageError("time_steps must be a positive integer", key="time_steps", expected=">= 1",
                         found=repr(time_steps))
    if spikes is None and (inputs is None or time_steps is None):
        raise UsageError("simulating the graph needs inputs and a number of time steps",
                         key="inputs" if inputs is None else "time_steps",
                         expected="inputs (samples, *input shape) in [0, 1] and time_steps >= 1",
                         found="none", suggestion="or give recorded spikes (a NIRData file)")
    g, source = _read_graph(nir, graph)
    imp = _Importer(nir, g, source, float(dt), weight_bits, reset)
    imp.run()
    layers = imp.layers
    try:
        check_graph(layers, imp.input_shape)
    except WorkloadError as e:
        raise WorkloadError(e.message, file=source, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    meta = g.metadata if isinstance(getattr(g, "metadata", None), dict) else {}
    prov: dict[str, Any] = {"generator": "snnsim.export.nir", "nir_version": str(getattr(nir, "__version__", "?")),
                            "graph": Path(source).name if source != "<memory>" else source,
                            "dt": float(dt), "discretisation": "forward Euler",
                            "spike_condition": "v > threshold" if spike_condition == "nir" else "v >= threshold"}
    if imp.input_shape != imp.nir_input_shape:
        prov["nir"] = {"input_shape": list(imp.nir_input_shape)}
    if spikes is not None:
        data, dsource = _read_data(nir, spikes)
        x, packed, steps = _from_data(nir, imp, data, dsource, inputs, time_steps, dt)
        prov["spikes"] = f"NIRData {Path(dsource).name if dsource != '<memory>' else dsource}"
    else:
        assert inputs is not None and time_steps is not None
        x = _load_inputs(inputs, imp.input_shape, imp.nir_input_shape)
        steps = time_steps
        spk = run_functional(layers, imp.weights, imp.thresholds, x, steps, spike_condition)
        packed = {k: pack_spikes(v) for k, v in spk.items()}
        prov["spikes"] = "simulated by snnsim's functional model (float64, direct encoding)"
    if imp.notes:
        prov["notes"] = imp.notes
    name = model or str(_text(meta.get("snnsim_model", "")) or "") or (Path(source).stem if source != "<memory>" else "nir")
    ds = str(_text(meta.get("snnsim_dataset", ""))) if dataset == "unknown" and meta.get("snnsim_dataset") else dataset
    return Workload(layers=layers, input=x.astype(np.float32), packed_spikes=packed, time_steps=steps,
                    model=name, dataset=ds, weights=imp.weights, thresholds=imp.thresholds,
                    provenance=prov, source=source)


def _from_data(nir: Any, imp: _Importer, data: Any, source: str, inputs: Any, time_steps: int | None,
               dt: float) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    nodes = getattr(data, "nodes", {})
    packed: dict[str, np.ndarray] = {}
    steps = time_steps
    samples = None
    grids: dict[str, np.ndarray] = {}
    for layer in imp.layers:
        if not layer.spiking:
            continue
        node = imp.data_node.get(layer.name)
        if node is None or node not in nodes:
            if layer.op == "flatten":
                continue  # its input's spikes, renamed
            raise WorkloadError("no recorded spikes for a spiking node", file=source, key=f"nodes.{node or layer.name}",
                                expected="NIRNodeData with a 'spikes' observable", found="nothing",
                                suggestion=did_you_mean(node or layer.name, list(nodes)))
        a = _grid(nir, _observable(nodes[node], node, source), layer.out_size, steps, dt, node, source)
        if steps is None:
            steps = a.shape[1]
        if samples is None:
            samples = a.shape[0]
        if a.shape[:2] != (samples, steps):
            raise WorkloadError("recorded data disagree on samples or time steps", file=source, key=f"nodes.{node}",
                                expected=f"({samples}, {steps}, ...)", found=str(list(a.shape)))
        if a.dtype != bool and not np.all((a == 0) | (a == 1)):
            raise WorkloadError("spike data are not binary", file=source, key=f"nodes.{node}",
                                expected="0/1 or bool", found=f"values in [{a.min():g}, {a.max():g}]")
        grids[layer.name] = a.astype(bool)
    for layer in imp.layers:
        if layer.spiking and layer.name not in grids:  # flatten
            grids[layer.name] = grids[layer.inputs[0]].reshape(samples, steps, -1)
        if layer.spiking:
            packed[layer.name] = pack_spikes(grids[layer.name])
    if inputs is not None:
        x = _load_inputs(inputs, imp.input_shape, imp.nir_input_shape)
    elif imp.input_node in nodes:
        a = _grid(nir, _observable(nodes[imp.input_node], imp.input_node, source),
                  math.prod(imp.input_shape), steps, dt, imp.input_node, source)
        if not np.all(a == a[:, :1]):
            raise WorkloadError("the recorded input changes over time steps", file=source,
                                key=f"nodes.{imp.input_node}", expected="direct encoding (the same input at "
                                "every step)", found="different values across steps")
        x = _load_inputs(a[:, 0], imp.input_shape, imp.nir_input_shape)
    else:
        raise UsageError("the trace needs the analog input", key="inputs",
                         expected="inputs, or data for the Input node in the NIRData file", found="neither")
    if samples is None:  # pragma: no cover - check_graph leaves at least one spiking layer or none to record
        samples, steps = x.shape[0], steps or 1
    if x.shape[0] != samples:
        raise WorkloadError("inputs and recorded spikes have different sample counts", file=source, key="input",
                            expected=str(samples), found=str(x.shape[0]))
    return x, packed, int(steps)


def nir_to_trace(graph: Any, out: str | Path, **kwargs: Any) -> Path:
    """``workload_from_nir(graph, **kwargs)`` written to ``out`` (atomically: an error leaves no file)."""
    return save_workload(workload_from_nir(graph, **kwargs), out)


# ----------------------------------------------------------------------------- export

def _nir_shape(layer: Layer) -> tuple[int, ...]:
    s = (layer.extra.get("nir") or {}).get("shape")
    return tuple(int(x) for x in s) if s else tuple(layer.out_shape)


def _full(values: Any, shape: tuple[int, ...], channels_first: tuple[int, ...]) -> np.ndarray:
    """Per-channel (or scalar) values as a float64 array of the NIR neuron shape."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0:
        return np.full(shape, float(v))
    return np.broadcast_to(v.reshape((-1,) + (1,) * (len(channels_first) - 1)), channels_first).reshape(shape).copy()


def _export_error(message: str, layer: Layer, source: str, expected: str | None = None,
                  suggestion: str | None = None) -> WorkloadError:
    return WorkloadError(message, file=source, key=f"layers.{layer.name}", expected=expected,
                         found=f"{layer.op} layer '{layer.name}'", suggestion=suggestion)


def workload_to_nir(workload: Workload, dt: float = DEFAULT_DT) -> Any:
    """A ``nir.NIRGraph`` of the workload's graph: the reverse of :func:`workload_from_nir`, with
    the same discretisation (``dt``). Every conv/linear layer needs its weights in the trace. The
    exact snnsim layer (weight bits, neuron, extra) rides along in the metadata of the layer's
    neuron node (else its own node) as JSON under ``snnsim_layer``. Raises WorkloadError for what
    NIR cannot express (conv3d, a maxpool with a neuron, an add without a neuron)."""
    return _build(workload, dt)[0]


def _build(wl: Workload, dt: float) -> tuple[Any, dict[str, str], str]:
    """(graph, layer -> the NIR node whose output is the layer's spikes, the Input node's name)."""
    nir = require_nir()
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise UsageError("dt must be a positive number", key="dt", expected="> 0", found=repr(dt))
    check_graph(wl.layers, wl.input_shape)
    src = wl.source
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    out_node: dict[str, str] = {}
    data_node: dict[str, str] = {}
    used = {(la.extra.get("nir") or {}).get("node", la.name) for la in wl.layers}

    def unique(name: str, own: bool = False) -> str:
        """A free node name; ``own`` names (a layer's own) were reserved up front."""
        if own and name not in nodes:
            return name
        base, i = name, 1
        while name in used or name in nodes:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        return name

    prov_nir = wl.provenance.get("nir") if isinstance(wl.provenance.get("nir"), dict) else {}
    in_shape = tuple(int(x) for x in (prov_nir.get("input_shape") or wl.input_shape))
    if math.prod(in_shape) != math.prod(wl.input_shape):
        in_shape = wl.input_shape
    input_name = unique("input")
    nodes[input_name] = nir.Input(input_type={"input": np.array(in_shape)})
    out_node["input"] = input_name
    shapes: dict[str, tuple[int, ...]] = {"input": in_shape}
    consumers = {s for la in wl.layers for s in la.inputs}
    for layer in wl.layers:
        ne = layer.extra.get("nir") or {}
        if ne.get("synthetic"):  # the flatten the importer adds after a dense layer on the input
            out_node[layer.name] = out_node[layer.inputs[0]]
            shapes[layer.name] = (layer.out_size,)
            continue
        base = ne.get("node", layer.name)
        nshape = _nir_shape(layer)
        meta = {META_KEY: json.dumps(layer.as_dict())}
        if layer.op == "conv3d":
            raise _export_error("NIR has no 3-D convolution", layer, src, expected="conv2d or linear")
        if layer.op == "maxpool" and layer.neuron is not None:
            raise _export_error("a maxpool with a neuron has no NIR equivalent", layer, src,
                                expected="a maxpool of spikes without a neuron (SumPool2d -> Threshold)")
        if layer.op == "add" and layer.neuron is None:
            raise _export_error("an add without a neuron has no NIR equivalent", layer, src,
                                expected="an add layer with a neuron (NIR sums the edges into a neuron)")
        own_meta = {} if layer.neuron is not None else meta
        bias = np.asarray(layer.extra.get("bias", np.zeros(layer.out_shape[0])), dtype=np.float64)
        sum_pool = layer.op == "avgpool" and ne.get("type") == "SumPool2d"
        scale = float(math.prod(layer.kernel)) if sum_pool else 1.0
        entry = exit_ = None
        if layer.op in ("conv2d", "linear"):
            w = np.asarray(wl.weight(layer.name), dtype=np.float32)
            typ = ne.get("type")
            name = unique(base, own=True)
            feed = None
            if "input_flatten" in ne and layer.inputs == ["input"]:
                feed = unique(ne["input_flatten"])
                nodes[feed] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
                edges.append((input_name, feed))
                w = w.reshape(w.shape[0], -1)
                typ = typ if typ in ("Affine", "Linear") else "Linear"
            if layer.op == "linear" or typ in ("Affine", "Linear"):
                if typ == "Affine" or np.any(bias != 0):
                    node = nir.Affine(weight=w, bias=bias, metadata=own_meta)
                else:
                    node = nir.Linear(weight=w, metadata=own_meta)
                node.input_type = {"input": np.array([w.shape[1]])}
            elif typ == "Conv1d":
                node = nir.Conv1d(input_shape=int(layer.in_shape[2]), weight=w[:, :, 0, :],
                                  stride=int(layer.stride[1]), padding=int(layer.padding[1]), dilation=1,
                                  groups=int(layer.groups), bias=bias, metadata=own_meta)
                node.input_type = {"input": np.array([layer.in_shape[0], layer.in_shape[2]])}
            else:
                node = nir.Conv2d(input_shape=tuple(int(x) for x in layer.in_shape[1:]), weight=w,
                                  stride=np.array(layer.stride), padding=np.array(layer.padding),
                                  dilation=np.array([1, 1]), groups=int(layer.groups), bias=bias,
                                  metadata=own_meta)
                node.input_type = {"input": np.array(layer.in_shape)}
            node.output_type = {"output": np.array(nshape)}
            nodes[name] = node
            entry = exit_ = name
            if feed is not None:
                edges.append((feed, name))
            bias = np.zeros_like(bias)  # carried by the synaptic node
        elif layer.op in ("avgpool", "maxpool"):
            name = unique(base, own=True)
            cls = nir.SumPool2d if layer.op == "maxpool" or sum_pool else nir.AvgPool2d
            node = cls(kernel_size=np.array(layer.kernel), stride=np.array(layer.stride),
                       padding=np.array(layer.padding), metadata=own_meta)
            node.input_type = {"input": np.array(layer.in_shape)}
            node.output_type = {"output": np.array(layer.out_shape)}
            nodes[name] = node
            entry = exit_ = name
            if layer.op == "maxpool":
                th = unique(ne.get("threshold") or f"{name}.threshold")
                nodes[th] = nir.Threshold(threshold=np.full(layer.out_shape, 0.5))
                edges.append((name, th))
                exit_ = th
        elif layer.op == "flatten":
            name = unique(base, own=True)
            nodes[name] = nir.Flatten(input_type={"input": np.array(shapes[layer.inputs[0]])}, start_dim=0,
                                      end_dim=-1, metadata=meta)
            entry = exit_ = name
        if layer.neuron is not None:
            if layer.op == "add":
                nname = unique(base, own=True)
            else:
                nname = unique(ne.get("neuron") or f"{base}.{_neuron_type(layer).lower()}")
            nodes[nname] = _export_neuron(nir, layer, wl, nshape, bias, layer.extra.get("synapse"), scale, dt,
                                          src, meta)
            if entry is None:
                entry = nname
            else:
                edges.append((exit_, nname))
            exit_ = nname
        readout = ne.get("readout")
        if readout and layer.neuron is None:
            rname = unique(readout.get("node") or f"{base}.{str(readout.get('type', 'LI')).lower()}")
            nodes[rname] = _export_readout(nir, readout, nshape)
            edges.append((exit_, rname))
            exit_ = rname
        if not ("input_flatten" in ne and layer.inputs == ["input"]):  # else fed through the Flatten
            for s in layer.inputs:
                edges.append((out_node[s], entry))
        out_node[layer.name] = exit_
        shapes[layer.name] = nshape
        if layer.spiking and layer.op != "flatten":
            data_node[layer.name] = exit_
    sinks = [la for la in wl.layers if la.name not in consumers]
    for la in sinks:
        oname = unique("output" if len(sinks) == 1 else f"output.{la.name}")
        nodes[oname] = nir.Output(output_type={"output": np.array(shapes[la.name])})
        edges.append((out_node[la.name], oname))
    gmeta = {"snnsim_model": wl.model, "snnsim_dataset": wl.dataset, "snnsim_time_steps": int(wl.time_steps),
             "snnsim_dt": float(dt)}
    try:
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=gmeta, type_check=False)
    except TypeError:  # an older nir without type_check
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=gmeta)
    return graph, data_node, input_name


def _neuron_type(layer: Layer) -> str:
    if layer.extra.get("synapse"):
        return "CubaLIF"
    return "IF" if layer.neuron is not None and layer.neuron.leak == 0.0 else "LIF"


def _export_neuron(nir: Any, layer: Layer, wl: Workload, shape: tuple[int, ...], bias: np.ndarray,
                   synapse: dict | None, scale: float, dt: float, src: str, meta: dict[str, Any]) -> Any:
    n = layer.neuron
    assert n is not None
    theta = wl.thresholds[layer.name] if n.per_channel else n.threshold
    cf = tuple(layer.out_shape)
    th = _full(theta, shape, cf) * scale
    zeros = np.zeros(shape)
    kw = {"metadata": meta} if meta else {}
    t = _neuron_type(layer)
    if t == "IF":
        if np.any(bias != 0):
            raise _export_error("a bias on an IF neuron of a layer without a synaptic node has no NIR "
                                "equivalent", layer, src, expected="a LIF (whose v_leak carries it)")
        node = nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=th, v_reset=zeros, **kw)
    elif t == "LIF":
        tau = dt / n.leak
        r = tau / dt
        node = nir.LIF(tau=np.full(shape, tau), r=np.full(shape, r), v_leak=_full(bias, shape, cf) * scale * r,
                       v_threshold=th, v_reset=zeros, **kw)
    else:
        if n.leak <= 0:
            raise _export_error("a synaptic current on a neuron without leak has no CubaLIF equivalent", layer, src)
        decay = float(synapse["decay"])
        tau_mem, tau_syn = dt / n.leak, dt / decay
        r = tau_mem / dt
        if np.any(bias != 0):
            raise _export_error("a bias on a CubaLIF layer without a synaptic node has no NIR equivalent",
                                layer, src)
        offset = _full(synapse.get("offset", 0.0), shape, cf) * scale
        node = nir.CubaLIF(tau_syn=np.full(shape, tau_syn), tau_mem=np.full(shape, tau_mem), r=np.full(shape, r),
                           v_leak=offset * r, v_threshold=th, v_reset=zeros, w_in=np.full(shape, 1.0 / decay), **kw)
    node.input_type = {"input": np.array(shape)}
    node.output_type = {"output": np.array(shape)}
    return node


def _export_readout(nir: Any, r: dict[str, Any], shape: tuple[int, ...]) -> Any:
    def f(k: str, default: float) -> np.ndarray:
        return np.full(shape, float(r.get(k, default)))

    t = r.get("type")
    if t == "I":
        node = nir.I(r=f("r", 1.0))
    elif t == "CubaLI":
        node = nir.CubaLI(tau_syn=f("tau_syn", 1.0), tau_mem=f("tau_mem", 1.0), r=f("r", 1.0),
                          v_leak=f("v_leak", 0.0), w_in=f("w_in", 1.0))
    else:
        node = nir.LI(tau=f("tau", 1.0), r=f("r", 1.0), v_leak=f("v_leak", 0.0))
    node.input_type = {"input": np.array(shape)}
    node.output_type = {"output": np.array(shape)}
    return node


def workload_to_nir_data(workload: Workload, dt: float = DEFAULT_DT) -> Any:
    """The workload's input and recorded spikes as ``nir.NIRGraphData`` (time-gridded, ``dt``):
    the Input node's observable ``input`` (float32, the same at every step: direct encoding) and
    the observable ``spikes`` (bool) of each node whose output is a layer's spikes, keyed by the
    node names :func:`workload_to_nir` gives."""
    nir = require_nir()
    wl = workload
    _graph, data_node, input_name = _build(wl, dt)
    s_n, t_n = wl.samples, wl.time_steps
    x = np.ascontiguousarray(wl.input.reshape(s_n, 1, -1), dtype=np.float32)
    nodes: dict[str, Any] = {input_name: nir.NIRNodeData(
        {"input": nir.TimeGriddedData(np.repeat(x, t_n, axis=1), float(dt))})}
    for lname, node in data_node.items():
        spk = np.ascontiguousarray(wl.spikes(lname).reshape(s_n, t_n, -1))
        nodes[node] = nir.NIRNodeData({"spikes": nir.TimeGriddedData(spk, float(dt))})
    return nir.NIRGraphData(nodes)


def _atomic(path: str | Path, write) -> Path:
    return atomic_write(path, write)


def write_nir(workload: Workload, path: str | Path, dt: float = DEFAULT_DT, data_path: str | Path | None = None) -> Path:
    """Write the workload's graph as a NIR file (and, with ``data_path``, its input and spikes as
    NIRData). The graph is built before any file is touched and each file is written to a
    temporary name and renamed: an error leaves no partial file."""
    nir = require_nir()
    graph = workload_to_nir(workload, dt)
    data = workload_to_nir_data(workload, dt) if data_path is not None else None
    out = _atomic(path, lambda tmp: nir.write(tmp, graph))
    if data is not None:
        _atomic(data_path, lambda tmp: nir.write_data(tmp, data))
    return out


def write_nir_data(workload: Workload, path: str | Path, dt: float = DEFAULT_DT) -> Path:
    """Write the workload's input and spikes as a NIRData file (atomically)."""
    nir = require_nir()
    data = workload_to_nir_data(workload, dt)
    return _atomic(path, lambda tmp: nir.write_data(tmp, data))
