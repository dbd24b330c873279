"""A NIR graph as format v2 nodes (:mod:`snnsim.workload.nodes`), one primitive to one node.

The mapping (NIR 1.0 primitives, ``nir/ir/*.py``; shapes channels first, no batch axis):

==================  ==========================================================================
NIR                 format v2
==================  ==========================================================================
Input / Output      the trace's ``input`` / the nodes the network ends at
Affine              ``linear`` with ``bias: true``, ``weights/<node>`` and ``bias/<node>``
Linear              ``linear`` with ``bias: false``
Conv1d, Conv2d      ``conv1d``, ``conv2d`` (stride, padding, dilation, groups); the bias is
                    ``bias/<node>`` (``bias: true``) unless it is zero everywhere
SumPool2d           ``sumpool``; AvgPool2d: ``avgpool`` (the window's mean, padding included)
Flatten             ``flatten`` when every axis merges into one, else ``reshape``
Scale               ``scale`` (``scale/<node>``, one factor per channel)
Delay               ``delay`` of one step (``delay`` must equal ``dt``)
IF                  neuron ``nir.lif`` without ``tau``
LIF, CubaLIF        neurons ``nir.lif``, ``nir.cubalif``
LI, I (Integrator)  neurons ``nir.li``, ``nir.integrator``: membrane readouts (currents)
Threshold           neuron ``nir.lif`` with ``tau = dt``, ``r = 1``, ``v_leak = 0``: then
                    ``v = x`` exactly at every step and it fires on ``x > threshold``
NIRGraph (nested)   its nodes, named ``<graph>.<node>``, its Input/Output dissolved
==================  ==========================================================================

A node with several incoming edges reads their sum (NIR's rule): an ``add`` node named
``<node>.sum`` is put before it, adding the inputs in the order of the graph's edges. A cycle
with no Delay on it is a recurrent connection read one step late (how snnTorch and SpikingJelly
run it): a ``delay`` named ``<neuron>.delay`` is put on the cycle's edge leaving a neuron. A
neuron parameter that is the same for every neuron is stored as a number, else as the array
``params/<node>/<name>`` of the neuron's shape (float64: the ``nir.*`` models compute in
float64). Weights, biases and scales are stored as float32 (the format's dtype); values that
float32 does not hold exactly are noted in the trace's provenance.

A NIR node written by :mod:`.nir_export` may carry the v2 node it came from in its metadata
(``snnsim_node``): an ``snnsim.if`` neuron (v1's neuron, which NIR approximates) and the OR max
pool of spikes (SumPool2d -> Threshold) are read back as they were, when the primitive still
agrees with them. What has no v2 node (CubaLI, a Delay of several steps, an asymmetric 'same'
padding...) raises a WorkloadError naming the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WorkloadError, did_you_mean
from ..workload.nodes import PARAM_ARRAY, Node, output_shape, value_kind
from ..workload.trace import binary_form
from .nir_common import PRIMITIVES, node_meta, text, type_name

_SPIKING = ("IF", "LIF", "CubaLIF", "Threshold")
_NEURONS = (*_SPIKING, "LI", "I")
_KNOWN = ("Input", "Output", "Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale",
          "Delay", *_NEURONS)
_SUPPORTED = ", ".join(PRIMITIVES)


class _SyntheticDelay:
    """The one-step delay put on a cycle that has no NIR Delay."""

    metadata: dict[str, Any] = {}


@dataclass
class Imported:
    """A NIR graph translated: the v2 nodes and parameter arrays, the input shape, and where each
    recorded node's activity is found in a NIRData file (the NIR node whose output it is)."""

    nodes: list[Node]
    arrays: dict[str, np.ndarray]
    input_shape: tuple[int, ...]
    input_node: str
    data_of: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_graph(nir: Any, graph: Any) -> tuple[Any, str]:
    """(a ``nir.NIRGraph``, its source name) from a graph or a path to a NIR file."""
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
                            expected="a NIRGraph", found=type_name(g))
    return g, str(graph)


def _ints(v: Any, n: int) -> tuple[int, ...]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, n)
    if a.size != n or not np.all(a == np.round(a)):
        raise ValueError(f"expected {n} integers, got {a.tolist()}")
    return tuple(int(i) for i in a)


class _Translator:
    """One NIR graph into v2 nodes (see the module docstring)."""

    def __init__(self, g: Any, source: str, dt: float, weight_bits: int):
        self.source, self.dt, self.weight_bits = source, dt, weight_bits
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.out: list[Node] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.notes: list[str] = []
        self.out_of: dict[str, str] = {}  # NIR node -> the v2 node giving its output
        self.shape: dict[str, tuple[int, ...]] = {}
        self.kind: dict[str, str] = {}
        self.data_of: dict[str, str] = {}
        self.names: set[str] = {"input"}
        self.v2name: dict[str, str] = {}
        self._inner: list[str] = []
        self._flatten(g, "")

    # -- errors and names

    def err(self, message: str, name: str, expected: str | None = None, suggestion: str | None = None,
            found: str | None = None) -> WorkloadError:
        t = type_name(self.nodes.get(name)) if name in self.nodes else "?"
        return WorkloadError(message, file=self.source, key=f"nodes.{name}", expected=expected,
                             found=found or f"{t} node '{name}'", suggestion=suggestion)

    def fresh(self, base: str) -> str:
        name = base.replace("/", "_") or "node"
        if name == "input":
            name = "input_"
        stem, i = name, 1
        while name in self.names:
            name, i = f"{stem}_{i}", i + 1
        self.names.add(name)
        return name

    # -- the graph: nested graphs dissolved, cycles given their delay

    def _flatten(self, g: Any, prefix: str) -> None:
        inner: list[str] = []
        for name, node in g.nodes.items():
            full = prefix + text(name)
            if type_name(node) == "NIRGraph":
                self._flatten(node, full + ".")
                continue
            self.nodes[full] = node
            if prefix and type_name(node) in ("Input", "Output"):
                inner.append(full)

        def end(v: Any, side: str) -> str:
            v = text(v)
            node = g.nodes.get(v)
            want = "Input" if side == "in" else "Output"
            if node is not None and type_name(node) != "NIRGraph":
                return prefix + v
            head, _, port = v.partition(".")
            sub = node if node is not None else g.nodes.get(head)
            if sub is None or type_name(sub) != "NIRGraph":
                raise WorkloadError("an edge names an unknown node", file=self.source, key=f"edges.{prefix + v}",
                                    expected="a node of the graph", found=prefix + v,
                                    suggestion=did_you_mean(v, [text(k) for k in g.nodes]))
            ports = [text(k) for k, n in sub.nodes.items() if type_name(n) == want]
            if node is None:
                ports = [p for p in ports if p == port]
            if len(ports) != 1:
                raise WorkloadError(f"an edge to a nested graph must name one of its {want} nodes", file=self.source,
                                    key=f"edges.{prefix + v}", expected=f"one {want} node", found=str(ports))
            base = prefix + (v if node is not None else head)
            return f"{base}.{ports[0]}"

        self.edges += [(end(a, "out"), end(b, "in")) for a, b in g.edges]
        self._inner += inner
        if prefix:
            return
        for full in self._inner:  # a nested graph's Input/Output pass values through
            preds = [a for a, b in self.edges if b == full]
            succs = [b for a, b in self.edges if a == full]
            self.edges = [e for e in self.edges if full not in e] + [(a, b) for a in preds for b in succs]
            del self.nodes[full]

    def _preds(self) -> dict[str, list[str]]:
        preds: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in self.edges:
            preds[b].append(a)
        return preds

    def _order(self) -> list[str]:
        """Nodes with every node after its inputs, edges out of delays cut; a cycle without a
        delay gets one after a neuron on it."""
        while True:
            preds = self._preds()
            cut = {n for n, node in self.nodes.items() if type_name(node) in ("Delay", "_SyntheticDelay")}
            done: list[str] = []
            seen: set[str] = set()
            pending = list(self.nodes)
            while pending:
                rest = [n for n in pending if not all(p in seen or p in cut for p in preds[n])]
                for n in pending:
                    if n not in rest:
                        seen.add(n)
                        done.append(n)
                if len(rest) == len(pending):
                    break
                pending = rest
            if not pending:
                return done
            self._break_cycle(set(pending), preds, cut)

    def _break_cycle(self, stuck: set[str], preds: dict[str, list[str]], cut: set[str]) -> None:
        start = sorted(stuck)[0]
        path, n = [start], start
        while True:  # walk back along inputs inside the stuck set until a node repeats: a cycle
            n = next(p for p in preds[n] if p in stuck and p not in cut)
            if n in path:
                cycle = path[path.index(n):][::-1]  # in the direction of the edges
                break
            path.append(n)
        neurons = [m for m in cycle if type_name(self.nodes[m]) in _SPIKING]
        if not neurons:
            raise self.err("a cycle with neither a Delay nor a spiking neuron on it", cycle[0],
                           expected="a recurrent connection through a neuron or a Delay",
                           found=f"cycle {' -> '.join(cycle)}")
        src = neurons[0]
        dst = cycle[(cycle.index(src) + 1) % len(cycle)]
        d = f"{src}.delay"
        while d in self.nodes:
            d += "_"
        self.nodes[d] = _SyntheticDelay()
        self.edges = [(a, b) for a, b in self.edges if (a, b) != (src, dst)] + [(src, d), (d, dst)]
        self.notes.append(f"the recurrent edge {src} -> {dst} reads the previous step (a delay was added)")

    # -- translation

    def run(self) -> Imported:
        for name, node in self.nodes.items():
            t = type_name(node)
            if t not in _KNOWN and t != "_SyntheticDelay":
                raise self.err(f"NIR primitive {t} is not supported", name, expected=f"one of {_SUPPORTED}",
                               suggestion="CubaLI has no format v2 neuron model; use LI after a synaptic "
                               "LI, or CubaLIF" if t == "CubaLI" else None)
        inputs = [n for n, node in self.nodes.items() if type_name(node) == "Input"]
        if len(inputs) != 1:
            raise WorkloadError("the NIR graph must have exactly one Input node", file=self.source, key="nodes",
                                expected="one Input", found=f"{len(inputs)} Input nodes {inputs}")
        self.input_node = inputs[0]
        order = self._order()
        for n in self.nodes:
            self.v2name[n] = self.fresh(n) if type_name(self.nodes[n]) not in ("Input", "Output") else n
        preds = self._preds()
        succs: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in self.edges:
            succs[a].append(b)
        self.succs = succs
        delays: list[tuple[Node, str]] = []
        for name in order:  # delays first: nodes before their input read them (a recurrent edge)
            if type_name(self.nodes[name]) in ("Delay", "_SyntheticDelay"):
                delays.append((self.delay(name, preds[name]), preds[name][0]))
        for name in order:
            node, t = self.nodes[name], type_name(self.nodes[name])
            if t == "Input":
                self.input_shape = self._input_shape(name)
                self.out_of[name], self.shape["input"], self.kind["input"] = "input", self.input_shape, "analog"
                continue
            if not preds[name]:
                raise self.err("node has no input edge", name, expected="an edge from the Input or another node")
            if t in ("Delay", "_SyntheticDelay"):
                continue
            srcs = [self.out_of[p] for p in preds[name]]
            if t == "Output":
                if len(srcs) != 1:
                    raise self.err("an Output node reads several nodes", name, expected="one incoming edge")
                continue
            if len(srcs) > 1:  # NIR sums the incoming edges
                add = self.emit(Node(self.fresh(f"{self.v2name[name]}.sum"), "add", srcs), name)
                srcs = [add]
            handler = getattr(self, "op_" + t.lower())
            self.out_of[name] = handler(name, node, srcs[0])
        for d, pred in delays:
            d.inputs = [self.out_of[pred]]
        return Imported(nodes=self.out, arrays=self.arrays, input_shape=self.input_shape,
                        input_node=self.input_node, data_of=self.data_of, notes=self.notes)

    def _input_shape(self, name: str) -> tuple[int, ...]:
        it = getattr(self.nodes[name], "input_type", None)
        raw = it.get("input") if isinstance(it, dict) else it
        shape = tuple(int(s) for s in np.asarray(raw if raw is not None else [], dtype=np.int64).reshape(-1))
        if not shape or min(shape) < 1:
            raise self.err("invalid input shape", name, expected="positive sizes, channels first",
                           found=repr(raw))
        return shape

    def emit(self, node: Node, nir_name: str) -> str:
        """Add a v2 node, its shape and kind computed as check_nodes does."""
        srcs = node.inputs
        try:
            node.out_shape = output_shape(node, [self.shape[s] for s in srcs])
            node.kind = value_kind(node, [self.kind[s] for s in srcs])
        except WorkloadError as e:
            raise WorkloadError(e.message, file=self.source, key=f"nodes.{nir_name}", expected=e.expected,
                                found=e.found, suggestion=e.suggestion) from None
        self.out.append(node)
        self.shape[node.name], self.kind[node.name] = node.out_shape, node.kind
        return node.name

    def float32(self, key: str, values: Any, nir_name: str, what: str) -> None:
        a = np.asarray(values, dtype=np.float64)
        a32 = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise self.err(f"{what} holds NaN or infinite values", nir_name, expected="finite values")
        if not np.array_equal(a32.astype(np.float64), a):
            err = float(np.max(np.abs(a32.astype(np.float64) - a)))
            self.notes.append(f"{what} of {nir_name} stored as float32 (the format's dtype): largest change {err:.3g}")
        self.arrays[key] = np.ascontiguousarray(a32)

    # -- current ops

    def _weighted(self, name: str, node: Any, src: str, op: str, params: dict[str, Any], bias: Any) -> str:
        v2 = self.v2name[name]
        w = np.asarray(node.weight, dtype=np.float64)
        params["weight_bits"] = 1 if binary_form(w.astype(np.float32)) is not None else self.weight_bits
        params["bias"] = bias is not None
        n = self.emit(Node(v2, op, [src], params), name)
        self.float32(f"weights/{v2}", w, name, "weights")
        if bias is not None:
            self.float32(f"bias/{v2}", bias, name, "bias")
        return n

    def _dense(self, name: str, node: Any, src: str, bias: Any) -> str:
        w = np.asarray(node.weight)
        shape = self.shape[src]
        if w.ndim != 2:
            raise self.err("only 2-D weights (out, in) are supported", name, expected="weight (out, in)",
                           found=f"weight {list(w.shape)}")
        if shape != (w.shape[1],):
            hint = "put a Flatten before it" if math.prod(shape) == w.shape[1] else None
            raise self.err("the weight does not fit the input", name, expected=f"a flat input of {w.shape[1]}",
                           found=f"input {list(shape)}, weight {list(w.shape)}", suggestion=hint)
        if bias is not None:
            try:
                bias = np.broadcast_to(np.asarray(bias, np.float64), (w.shape[0],))
            except ValueError:
                raise self.err("the bias does not fit the output", name, expected=f"({w.shape[0]},)",
                               found=f"bias {list(np.shape(bias))}") from None
        return self._weighted(name, node, src, "linear", {"out_features": int(w.shape[0])}, bias)

    def op_affine(self, name: str, node: Any, src: str) -> str:
        return self._dense(name, node, src, node.bias)

    def op_linear(self, name: str, node: Any, src: str) -> str:
        return self._dense(name, node, src, None)

    def _conv(self, name: str, node: Any, src: str, rank: int) -> str:
        w = np.asarray(node.weight)
        shape = self.shape[src]
        if w.ndim != rank + 2:
            raise self.err("the weight has the wrong number of dimensions", name,
                           expected=f"(C_out, C_in / groups, {rank} kernel sizes)", found=f"weight {list(w.shape)}")
        if len(shape) != rank + 1:
            raise self.err(f"a {rank}-D convolution needs a channels-first input with {rank} spatial axes", name,
                           expected=f"{rank + 1} dimensions", found=f"input {list(shape)}")
        kernel = tuple(int(k) for k in w.shape[2:])
        try:
            stride = _ints(node.stride, rank)
            dilation = _ints(getattr(node, "dilation", 1), rank)
            groups = int(np.asarray(getattr(node, "groups", 1)).reshape(-1)[0])
            pad = text(node.padding)
            if isinstance(pad, str):
                total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
                if pad == "valid":
                    padding = (0,) * rank
                elif pad == "same" and all(s == 1 for s in stride) and all(t % 2 == 0 for t in total):
                    padding = tuple(t // 2 for t in total)
                else:
                    raise self.err(f"padding '{pad}' is not representable", name,
                                   expected="integer padding, 'valid', or 'same' with stride 1 and an odd "
                                   "(dilated) kernel (format v2 pads both sides alike)")
            else:
                padding = _ints(pad, rank)
        except ValueError as e:
            raise self.err(f"invalid stride, padding, dilation or groups: {e}", name) from None
        c_out = int(w.shape[0])
        bias = getattr(node, "bias", None)
        if bias is not None:
            try:
                bias = np.broadcast_to(np.asarray(bias, np.float64), (c_out,))
            except ValueError:
                raise self.err("the bias does not fit the output channels", name, expected=f"({c_out},)",
                               found=f"bias {list(np.shape(bias))}") from None
            if not np.any(bias != 0):
                bias = None  # adding zero changes nothing: bias false
        if groups < 1 or w.shape[1] * groups != shape[0]:
            raise self.err("the weight and groups do not fit the input channels", name,
                           expected=f"weight (C_out, {shape[0]} / groups, ...)",
                           found=f"weight {list(w.shape)}, groups {groups}")
        params = {"out_channels": c_out, "kernel": list(kernel), "stride": list(stride), "padding": list(padding),
                  "dilation": list(dilation), "groups": groups}
        return self._weighted(name, node, src, f"conv{rank}d", params, bias)

    def op_conv1d(self, name: str, node: Any, src: str) -> str:
        return self._conv(name, node, src, 1)

    def op_conv2d(self, name: str, node: Any, src: str) -> str:
        return self._conv(name, node, src, 2)

    def _pool(self, name: str, node: Any, src: str, op: str) -> str:
        if len(self.shape[src]) != 3:
            raise self.err("2-D pooling needs a (C, H, W) input", name, expected="3 dimensions",
                           found=f"input {list(self.shape[src])}")
        try:
            k, s, p = _ints(node.kernel_size, 2), _ints(node.stride, 2), _ints(node.padding, 2)
        except ValueError as e:
            raise self.err(f"invalid kernel, stride or padding: {e}", name) from None
        params = {"kernel": list(k), "stride": list(s), "padding": list(p)}
        return self.emit(Node(self.v2name[name], op, [src], params), name)

    def op_sumpool2d(self, name: str, node: Any, src: str) -> str:
        return self._pool(name, node, src, "sumpool")

    def op_avgpool2d(self, name: str, node: Any, src: str) -> str:
        return self._pool(name, node, src, "avgpool")

    def op_flatten(self, name: str, node: Any, src: str) -> str:
        shape = self.shape[src]
        nd = len(shape)
        start, end = int(getattr(node, "start_dim", 0)), int(getattr(node, "end_dim", -1))
        start, end = (start + nd if start < 0 else start), (end + nd if end < 0 else end)
        if not (0 <= start <= end < nd):
            raise self.err("start_dim and end_dim do not fit the input", name, expected=f"0 <= start <= end < {nd}",
                           found=f"start_dim {start}, end_dim {end} of input {list(shape)}")
        out = (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
        ot = getattr(node, "output_type", None)
        declared = ot.get("output") if isinstance(ot, dict) else None
        dense_next = self.succs[name] and all(type_name(self.nodes[s]) in ("Affine", "Linear")
                                              for s in self.succs[name])
        if len(out) > 1 and start == 1 and end == nd - 1 and dense_next:
            # an exporter counting a batch axis: start_dim 1 before a dense layer flattens all
            out = (math.prod(shape),)
            self.notes.append(f"Flatten {name} (start_dim 1) read as a flatten of every axis (it feeds a dense layer)")
        if declared is not None and math.prod(np.asarray(declared).reshape(-1).tolist()) != math.prod(shape):
            raise self.err("the Flatten's declared input does not fit what it reads", name,
                           expected=f"{math.prod(shape)} values", found=f"output type {np.asarray(declared).tolist()}")
        v2 = self.v2name[name]
        if len(out) == 1:
            return self.emit(Node(v2, "flatten", [src]), name)
        return self.emit(Node(v2, "reshape", [src], {"shape": list(out)}), name)

    def op_scale(self, name: str, node: Any, src: str) -> str:
        shape = self.shape[src]
        s = np.asarray(node.scale, dtype=np.float64)
        try:
            full = np.broadcast_to(s.reshape(shape) if s.size == math.prod(shape) else s, shape)
        except ValueError:
            raise self.err("the scale does not fit the input", name, expected=f"an array of shape {list(shape)}",
                           found=f"scale {list(s.shape)}") from None
        per = full.reshape(shape[0], -1)
        if not np.all(per == per[:, :1]):
            raise self.err("the scale varies within a channel", name,
                           expected="one factor per channel (format v2's scale)",
                           suggestion="fold a per-position scale into the preceding weights")
        v2 = self.v2name[name]
        n = self.emit(Node(v2, "scale", [src]), name)
        self.float32(f"scale/{v2}", per[:, 0], name, "scale")
        return n

    def delay(self, name: str, preds: list[str]) -> Node:
        """A one-step delay, declared before the nodes that read it (its shape from NIR, its kind
        spikes after a spiking neuron, else current); its input is filled in at the end."""
        node = self.nodes[name]
        (src,) = preds if len(preds) == 1 else (None,)
        if src is None:
            raise self.err("a Delay reads one node", name, expected="one incoming edge",
                           found=f"{len(preds)} edges")
        src_node = self.nodes[src]
        if isinstance(node, _SyntheticDelay):
            shape = self._nir_shape(src)
        else:
            d = np.asarray(node.delay, dtype=np.float64)
            if d.size == 0 or not np.allclose(d, self.dt, rtol=1e-9, atol=0.0):
                raise self.err("only a delay of one time step is representable", name,
                               expected=f"delay = dt ({self.dt:g}) for every neuron",
                               found=f"delays in [{d.min() if d.size else 0:g}, {d.max() if d.size else 0:g}]",
                               suggestion="pass the dt the graph was made for (--dt), or chain one-step delays")
            shape = tuple(int(x) for x in d.shape)
        kind = "spikes" if type_name(src_node) in _SPIKING else "current"
        v2 = self.v2name[name]
        n = Node(v2, "delay", [src], {"shape": list(shape), "kind": kind})
        n.out_shape, n.kind = shape, kind
        self.out.append(n)
        self.shape[v2], self.kind[v2] = shape, kind
        self.out_of[name] = v2
        return n

    def _nir_shape(self, name: str) -> tuple[int, ...]:
        node = self.nodes[name]
        ot = getattr(node, "output_type", None)
        s = ot.get("output") if isinstance(ot, dict) else None
        if s is None:
            for attr in ("v_threshold", "threshold", "r"):
                if getattr(node, attr, None) is not None:
                    s = np.shape(getattr(node, attr))
                    break
        if s is None or not len(np.asarray(s).reshape(-1)):
            raise self.err("the shape of a recurrent neuron is not known", name,
                           expected="parameters of the neuron's shape")
        return tuple(int(x) for x in np.asarray(s).reshape(-1))

    # -- neurons

    def param(self, name: str, attr: str, key: str, shape: tuple[int, ...], default: float | None = None) -> Any:
        """A neuron parameter: a number when uniform, else ``params/<node>/<key>`` of the neuron's shape."""
        v = getattr(self.nodes[name], attr, None)
        if v is None:
            if default is None:
                raise self.err(f"parameter {attr} missing", name, expected=f"{attr} of shape {list(shape)}")
            return float(default)
        a = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise self.err(f"parameter {attr} holds NaN or infinite values", name, expected="finite values")
        if a.size == 1:
            return float(a.reshape(-1)[0])
        try:
            full = np.broadcast_to(a.reshape(shape) if a.size == math.prod(shape) else a, shape)
        except ValueError:
            raise self.err(f"parameter {attr} does not fit the neuron's input", name,
                           expected=f"an array of shape {list(shape)}", found=f"{attr} {list(a.shape)}") from None
        if np.all(full == full.reshape(-1)[0]):
            return float(full.reshape(-1)[0])
        array = f"params/{self.v2name[name]}/{key}"
        self.arrays[array] = np.ascontiguousarray(full, dtype=np.float64)
        return {PARAM_ARRAY: array}

    def _neuron(self, name: str, src: str, model: str, params: dict[str, Any]) -> str:
        v2 = self.v2name[name]
        n = self.emit(Node(v2, "neuron", [src], {"model": model, **params}), name)
        if self.kind[n] in ("spikes", "events"):
            self.data_of[n] = name
        return n

    def _lif_params(self, name: str, src: str, with_tau: str | None) -> dict[str, Any]:
        shape = self.shape[src]
        p: dict[str, Any] = {"dt": self.dt, "r": self.param(name, "r", "r", shape)}
        if with_tau:
            p["tau"] = self.param(name, with_tau, "tau", shape)
            p["v_leak"] = self.param(name, "v_leak", "v_leak", shape, 0.0)
        p["v_threshold"] = self.param(name, "v_threshold", "v_threshold", shape)
        p["v_reset"] = self.param(name, "v_reset", "v_reset", shape, 0.0)
        return p

    def op_if(self, name: str, node: Any, src: str) -> str:
        restored = self._restore_snnsim_if(name, src)
        if restored is not None:
            return restored
        return self._neuron(name, src, "nir.lif", self._lif_params(name, src, None))

    def op_lif(self, name: str, node: Any, src: str) -> str:
        restored = self._restore_snnsim_if(name, src)
        if restored is not None:
            return restored
        return self._neuron(name, src, "nir.lif", self._lif_params(name, src, "tau"))

    def op_cubalif(self, name: str, node: Any, src: str) -> str:
        p = self._lif_params(name, src, "tau_mem")
        shape = self.shape[src]
        p["tau_syn"] = self.param(name, "tau_syn", "tau_syn", shape)
        p["w_in"] = self.param(name, "w_in", "w_in", shape, 1.0)
        return self._neuron(name, src, "nir.cubalif", p)

    def op_li(self, name: str, node: Any, src: str) -> str:
        shape = self.shape[src]
        p = {"dt": self.dt, "tau": self.param(name, "tau", "tau", shape), "r": self.param(name, "r", "r", shape),
             "v_leak": self.param(name, "v_leak", "v_leak", shape, 0.0)}
        return self._neuron(name, src, "nir.li", p)

    def op_i(self, name: str, node: Any, src: str) -> str:
        return self._neuron(name, src, "nir.integrator", {"dt": self.dt, "r": self.param(name, "r", "r",
                                                                                          self.shape[src])})

    def op_threshold(self, name: str, node: Any, src: str) -> str:
        shape = self.shape[src]
        if node_meta(node).get("op") == "maxpool":
            pooled = self._restore_maxpool(name, src)
            if pooled is not None:
                return pooled
        theta = self.param(name, "threshold", "v_threshold", shape)
        # tau = dt: a = dt / tau = 1 exactly, so v = 0 * v + 0 + 1 * 1 * x = x at every step
        return self._neuron(name, src, "nir.lif", {"dt": self.dt, "tau": self.dt, "r": 1.0, "v_leak": 0.0,
                                                   "v_threshold": theta, "v_reset": 0.0})

    def _restore_maxpool(self, name: str, src: str) -> str | None:
        """SumPool2d -> Threshold(0 <= theta < 1) written for an OR max pool of spikes: the
        maxpool node again (a count above theta is a count of at least one)."""
        pool = next((n for n in self.out if n.name == src), None)
        th = np.asarray(getattr(self.nodes[name], "threshold", np.nan), dtype=np.float64)
        pred = [a for a, b in self.edges if b == name]
        if (pool is None or pool.op != "sumpool" or len(pred) != 1 or self.succs[pred[0]] != [name]
                or self.kind[pool.inputs[0]] != "spikes" or not np.all((th >= 0) & (th < 1))):
            return None
        pool.op = "maxpool"
        pool.kind = self.kind[pool.name] = value_kind(pool, [self.kind[pool.inputs[0]]])
        self.data_of[pool.name] = name
        return pool.name

    def _restore_snnsim_if(self, name: str, src: str) -> str | None:
        """An ``snnsim.if`` neuron the exporter wrote as IF/LIF (its exact parameters in the
        metadata), when the primitive's threshold still agrees with it."""
        meta = node_meta(self.nodes[name])
        params = meta.get("params")
        if meta.get("op") != "neuron" or not isinstance(params, dict) or params.get("model") != "snnsim.if":
            return None
        shape = self.shape[src]
        th = np.asarray(params.get("threshold", 1.0), dtype=np.float64)
        vt = np.asarray(getattr(self.nodes[name], "v_threshold", np.nan), dtype=np.float64)
        try:
            th_full = np.broadcast_to(th, shape)
            vt_full = np.broadcast_to(vt.reshape(shape) if vt.size == math.prod(shape) else vt, shape)
        except ValueError:
            return None
        if not np.all((vt_full == th_full) | (vt_full == np.nextafter(th_full, -np.inf))):
            self.notes.append(f"{name}: its snnsim metadata disagrees with its threshold and was ignored")
            return None
        p = {k: v for k, v in params.items() if k in ("model", "leak", "reset")}
        if th.ndim:
            key = f"params/{self.v2name[name]}/threshold"
            self.arrays[key] = np.ascontiguousarray(th)
            p["threshold"] = {PARAM_ARRAY: key}
        else:
            p["threshold"] = float(th)
        return self._neuron(name, src, p.pop("model"), p)


def translate(graph: Any, source: str, dt: float, weight_bits: int) -> Imported:
    """The v2 nodes and arrays of a ``nir.NIRGraph`` (see the module docstring)."""
    return _Translator(graph, source, dt, weight_bits).run()
