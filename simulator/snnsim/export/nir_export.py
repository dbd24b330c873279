"""A format v2 trace as a NIR graph (and its input and recorded activity as NIRData): each v2
node becomes its NIR primitive, the inverse of :mod:`.nir_import`.

==========================  ================================================================
format v2                   NIR
==========================  ================================================================
linear                      Linear, or Affine with its bias
conv1d, conv2d              Conv1d, Conv2d (the bias, or zeros)
scale                       Scale (the per-channel factor over the whole shape)
sumpool, avgpool (2-D)      SumPool2d, AvgPool2d
maxpool of spikes (2-D)     SumPool2d -> Threshold(0.5): the OR of the window's spikes
flatten                     Flatten(start_dim 0, end_dim -1); a reshape that merges adjacent
                            axes: Flatten over them
add                         nothing: its inputs' edges go to the one node that reads it (NIR
                            sums the edges into a node)
delay                       Delay(dt)
nir.lif, nir.cubalif        IF (no tau), LIF, CubaLIF; a memoryless lif (tau = dt, r = 1,
                            v_leak = 0, v_reset = 0) is a Threshold
nir.li, nir.integrator      LI, I
snnsim.if, reset zero       IF / LIF, exactly: r and tau chosen so that forward Euler gives
                            ``v = (1 - leak) v + I`` bit for bit, and the threshold one float64
                            step lower (``v >= thr`` is ``v > nextafter(thr, -inf)``)
==========================  ================================================================

NIR's neurons are continuous-time; the step ``dt`` of the export is the one the ``nir.*``
neurons were discretised with (all must agree), else :data:`DEFAULT_DT`. What NIR cannot express
raises a WorkloadError naming the node and saying what to do: snnTorch's and SpikingJelly's neuron
models (their reset order (``reset_delay``), ``>=`` ties and float32 arithmetic have no NIR
primitive), ``snnsim.if``'s subtractive reset (v1's default), a spiking neuron read out by its
membrane, conv3d, iand, bias and affine nodes, a maxpool of currents, an add read by several
nodes or recorded. ``approximate=True`` (``to-nir --approximate``) writes an ``snnsim.if`` with a
subtractive reset as the nearest primitive (reset to 0), noted in the graph's metadata
(``snnsim_notes``); every node also carries the v2 node it came from in its metadata
(``snnsim_node``), so snnsim reads such a graph back exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WorkloadError
from ..fileio import atomic_write
from ..workload.graphtrace import GraphTrace, from_v1, resolved_nodes
from ..workload.nodes import Node, check_nodes, spatial_params
from .nir_common import DEFAULT_DT, NODE_META, check_dt, jsonable, require_nir

_EXACT_MODELS = ("nir.lif", "nir.cubalif", "nir.li", "nir.integrator", "snnsim.if")


def _as_graph_trace(trace: Any) -> GraphTrace:
    return trace if isinstance(trace, GraphTrace) else from_v1(trace)


def _refuse(node: Node, what: str, expected: str, suggestion: str | None, source: str) -> WorkloadError:
    found = node.op + (f" ({node.params.get('model')})" if node.op == "neuron" else "")
    return WorkloadError(what, file=source, key=f"nodes.{node.name}", expected=expected, found=found,
                         suggestion=suggestion)


def _unit_product(a: np.ndarray) -> np.ndarray:
    """r with ``a * r == 1`` exactly in float64 (1 / a, or a neighbour of it)."""
    r = 1.0 / a
    for cand in (np.nextafter(r, np.inf), np.nextafter(r, -np.inf)):
        r = np.where(a * r == 1.0, r, cand)
    return r


class _Exporter:
    def __init__(self, nir: Any, gt: GraphTrace, dt: float | None, approximate: bool):
        self.nir, self.gt, self.approximate = nir, gt, approximate
        self.src = gt.source
        gt.layers()  # checks the trace and fills in shapes and kinds
        self.resolved = resolved_nodes(gt.nodes, gt.arrays, self.src)
        check_nodes(self.resolved, gt.input_shape)
        self.by_name = {n.name: n for n in self.resolved}
        self.dt = self._dt(dt)
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.entry: dict[str, str] = {}  # v2 node -> the NIR node its inputs' edges go to
        self.exit: dict[str, str] = {}  # v2 node -> the NIR node giving its value
        self.notes: list[str] = []
        self.readers: dict[str, list[str]] = {n.name: [] for n in self.resolved}
        for n in self.resolved:
            for s in n.inputs:
                if s != "input":
                    self.readers[s].append(n.name)

    def _dt(self, dt: float | None) -> float:
        own = {n.name: float(np.asarray(n.params.get("dt", DEFAULT_DT))) for n in self.resolved
               if n.op == "neuron" and str(n.params.get("model", "")).startswith("nir.")}
        if dt is not None:
            dt = check_dt(dt)
            for name, d in own.items():
                if d != dt:
                    raise WorkloadError("a NIR neuron was discretised with another time step", file=self.src,
                                        key=f"nodes.{name}.params.dt", expected=f"dt {dt:g}", found=f"dt {d:g}",
                                        suggestion=f"export with dt={d:g} (--dt {d:g}), the step of its dynamics")
            return dt
        if len(set(own.values())) > 1:
            name = sorted(own)[0]
            raise WorkloadError("the NIR neurons were discretised with different time steps", file=self.src,
                                key=f"nodes.{name}.params.dt", expected="one dt for the whole graph",
                                found=str(sorted(set(own.values()))))
        return next(iter(own.values()), DEFAULT_DT)

    def refuse(self, node: Node, what: str, expected: str, suggestion: str | None = None) -> WorkloadError:
        return _refuse(node, what, expected, suggestion, self.src)

    def sources(self, name: str) -> list[str]:
        """The NIR nodes whose summed outputs are ``name``'s value (an add is its inputs' edges)."""
        if name == "input":
            return ["input"]
        n = self.by_name[name]
        if n.op == "add":
            return [s for i in n.inputs for s in self.sources(i)]
        return [self.exit[name]]

    def full(self, v: Any, shape: tuple[int, ...]) -> np.ndarray:
        return np.array(np.broadcast_to(np.asarray(v, dtype=np.float64), shape))

    def weights(self, n: Node) -> np.ndarray:
        w = self.gt.arrays.get(f"weights/{n.name}")
        if w is None:
            raise self.refuse(n, "the trace holds no weights for this node", f"an array weights/{n.name}",
                              "NIR stores every weight: export the trace with its weights")
        return np.asarray(w, dtype=np.float32)

    def meta(self, n: Node) -> dict[str, Any]:
        params = {k: jsonable(v) for k, v in n.params.items()}
        return {NODE_META: json.dumps({"op": n.op, "params": params})}

    def run(self) -> Any:
        nir = self.nir
        self.nodes["input"] = nir.Input(input_type={"input": np.array(self.gt.input_shape)})
        for n in self.resolved:
            if n.op != "add":
                self.node(n)
        for n in self.resolved:
            if n.op == "add":
                readers = self.readers[n.name]
                if len(readers) != 1 or self.by_name[readers[0]].op in ("add", "delay") or self._recorded(n):
                    raise self.refuse(n, "NIR has no node for a sum read by several nodes, recorded or read by a "
                                      "delay", "an add that one node reads (NIR sums the edges into that node)",
                                      "give each reader its own add, or put a neuron after the sum")
                continue
            for s in n.inputs:
                for a in self.sources(s):
                    self.edges.append((a, self.entry[n.name]))
        sinks = [n for n in self.resolved if not self.readers[n.name]
                 and not any(m.op == "delay" and m.inputs == [n.name] for m in self.resolved)]
        for n in sinks:
            out = "output" if len(sinks) == 1 else f"output.{n.name}"
            while out in self.nodes:
                out += "_"
            self.nodes[out] = nir.Output(output_type={"output": np.array(n.out_shape)})
            self.edges += [(a, out) for a in self.sources(n.name)]
        gt = self.gt
        meta = {"snnsim_model": gt.model, "snnsim_dataset": gt.dataset, "snnsim_time_steps": int(gt.time_steps),
                "snnsim_dt": float(self.dt)}
        if self.notes:
            meta["snnsim_notes"] = json.dumps(self.notes)
        try:
            return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=meta, type_check=False)
        except TypeError:  # an older nir without type_check
            return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=meta)

    def _recorded(self, n: Node) -> bool:
        return f"{n.kind}/{n.name}" in self.gt.recorded

    def put(self, n: Node, node: Any, in_shape: tuple[int, ...] | None = None) -> None:
        if in_shape is not None:
            node.input_type = {"input": np.array(in_shape)}
            node.output_type = {"output": np.array(n.out_shape)}
        node.metadata = self.meta(n)
        self.nodes[n.name] = node
        self.entry[n.name] = self.exit[n.name] = n.name

    def in_shape(self, n: Node) -> tuple[int, ...]:
        s = n.inputs[0]
        return self.gt.input_shape if s == "input" else self.by_name[s].out_shape

    def node(self, n: Node) -> None:
        nir, op, p = self.nir, n.op, n.params
        in_shape = self.in_shape(n)
        if op == "linear":
            w = self.weights(n)
            if p.get("bias"):
                self.put(n, nir.Affine(weight=w, bias=np.asarray(self.gt.arrays[f"bias/{n.name}"], np.float32)))
            else:
                self.put(n, nir.Linear(weight=w))
        elif op in ("conv1d", "conv2d"):
            rank = int(op[4])
            _kernel, stride, padding, dilation = spatial_params(n, rank)
            w = self.weights(n)
            bias = (np.asarray(self.gt.arrays[f"bias/{n.name}"], np.float32) if p.get("bias")
                    else np.zeros(w.shape[0], np.float32))
            groups = int(p.get("groups", 1))
            if rank == 1:
                node = nir.Conv1d(input_shape=int(in_shape[1]), weight=w, stride=stride[0], padding=padding[0],
                                  dilation=dilation[0], groups=groups, bias=bias)
            else:
                node = nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=w, stride=stride, padding=padding,
                                  dilation=dilation, groups=groups, bias=bias)
            self.put(n, node)
        elif op == "scale":
            s = np.asarray(self.gt.arrays[f"scale/{n.name}"], np.float32)
            full = np.broadcast_to(s.reshape((-1,) + (1,) * (len(n.out_shape) - 1)), n.out_shape)
            self.put(n, nir.Scale(scale=np.array(full)))
        elif op in ("sumpool", "avgpool", "maxpool"):
            self.pool(n, in_shape)
        elif op == "flatten":
            self.put(n, nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1))
        elif op == "reshape":
            for start in range(len(in_shape)):
                for end in range(start, len(in_shape)):
                    merged = (*in_shape[:start], math.prod(in_shape[start:end + 1]), *in_shape[end + 1:])
                    if merged == n.out_shape:
                        self.put(n, nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start,
                                                end_dim=end))
                        return
            raise self.refuse(n, "NIR's Flatten merges adjacent axes; this reshape does more",
                              "a reshape that merges adjacent axes", "flatten fully, or reshape in the model")
        elif op == "delay":
            self.put(n, nir.Delay(delay=np.full(n.out_shape, self.dt)))
        elif op == "neuron":
            self.neuron(n)
        else:
            what = {"conv3d": "NIR has no 3-D convolution", "iand": "NIR has no IAND (NOT a AND b)",
                    "bias": "NIR has no per-channel bias node", "affine": "NIR has no per-channel affine node"}
            raise self.refuse(n, what.get(op, f"NIR has no primitive for {op}"), "a node NIR expresses",
                              "fold a bias or affine (batch norm) into the preceding convolution's weights and "
                              "bias" if op in ("bias", "affine") else None)

    def pool(self, n: Node, in_shape: tuple[int, ...]) -> None:
        nir = self.nir
        if len(in_shape) != 3:
            raise self.refuse(n, "NIR pools only in 2-D", "a pool of a (C, H, W) input", None)
        kernel, stride, padding, _dilation = spatial_params(n, 2)
        kw = {"kernel_size": np.array(kernel), "stride": np.array(stride), "padding": np.array(padding)}
        if n.op == "avgpool":
            self.put(n, nir.AvgPool2d(**kw), in_shape)
            return
        self.put(n, nir.SumPool2d(**kw), in_shape)
        if n.op == "maxpool":
            if n.kind != "spikes":
                raise self.refuse(n, "NIR has no max pooling of currents", "a maxpool of spikes (an OR: "
                                  "SumPool2d -> Threshold)", "pool after the neuron, or average instead")
            th = f"{n.name}.or"
            while th in self.nodes or th in self.by_name:
                th += "_"
            self.nodes[th] = nir.Threshold(threshold=np.full(n.out_shape, 0.5), metadata=self.meta(n))
            self.edges.append((n.name, th))
            self.exit[n.name] = th

    def neuron(self, n: Node) -> None:
        nir, p = self.nir, n.params
        model, shape = p.get("model"), n.out_shape
        if model not in _EXACT_MODELS:
            framework = str(model).split(".")[0]
            why = ("snnTorch's neurons reset by the previous step's spike (reset_delay) and fire and compute in "
                   "float32" if framework == "snntorch" else
                   "SpikingJelly's neurons fire on v >= threshold and compute in float32")
            raise self.refuse(n, f"NIR has no primitive for the dynamics of {model}", "a neuron NIR expresses: "
                              f"{', '.join(_EXACT_MODELS)} (snnsim.if with reset zero)",
                              f"{why}; NIR's LIF resets at once in continuous time. Keep the v2 trace for snnsim, "
                              "or export the torch model with the framework's own NIR export (its approximation)")
        if p.get("output") == "membrane":
            raise self.refuse(n, "NIR's spiking neurons give spikes, not a membrane readout", "a spiking neuron "
                              "read by its spikes", "read the membrane out with an LI (nir.li) instead")

        def f(k: str, default: Any = 0.0) -> np.ndarray:
            v = p.get(k, default)
            return self.full(default if v is None else v, shape)

        if model == "nir.lif":
            if p.get("tau") is None:
                node = nir.IF(r=f("r", 1.0), v_threshold=f("v_threshold", 1.0), v_reset=f("v_reset"))
            elif (np.all(f("tau") == self.dt) and np.all(f("r", 1.0) == 1) and not np.any(f("v_leak"))
                  and not np.any(f("v_reset"))):
                node = nir.Threshold(threshold=f("v_threshold", 1.0))
            else:
                node = nir.LIF(tau=f("tau"), r=f("r", 1.0), v_leak=f("v_leak"), v_threshold=f("v_threshold", 1.0),
                               v_reset=f("v_reset"))
        elif model == "nir.cubalif":
            node = nir.CubaLIF(tau_syn=f("tau_syn", 1.0), tau_mem=f("tau", 1.0), r=f("r", 1.0), v_leak=f("v_leak"),
                               v_threshold=f("v_threshold", 1.0), v_reset=f("v_reset"), w_in=f("w_in", 1.0))
        elif model == "nir.li":
            node = nir.LI(tau=f("tau", 1.0), r=f("r", 1.0), v_leak=f("v_leak"))
        elif model == "nir.integrator":
            node = nir.I(r=f("r", 1.0))
        else:
            node = self.snnsim_if(n, f)
        self.put(n, node)

    def snnsim_if(self, n: Node, f: Any) -> Any:
        """v1's neuron as IF/LIF, exact for a zero reset (module docstring)."""
        nir, p = self.nir, n.params
        reset, leak = p.get("reset", "subtract"), float(p.get("leak", 0.0))
        th = f("threshold", 1.0)
        if reset != "zero":
            if not self.approximate:
                raise self.refuse(n, "NIR has no subtractive reset (snnsim.if's reset: subtract, format v1's "
                                  "default)", "a neuron that resets to a value (reset: zero)",
                                  "pass approximate=True (snnsim workload to-nir --approximate) to write the "
                                  "nearest NIR neuron (reset to 0; snnsim reads the exact one back from the "
                                  "node's metadata), or make the trace with reset zero")
            self.notes.append(f"{n.name}: snnsim.if with a subtractive reset written as a NIR neuron that resets "
                              "to 0 (approximate)")
        zeros = np.zeros(n.out_shape)
        v_th = np.nextafter(th, -np.inf)  # v >= th  <=>  v > the float64 just below th
        if leak == 0.0:
            step = np.full(n.out_shape, self.dt)
            r = _unit_product(step)
            if not np.all(step * r == 1.0):
                raise self.refuse(n, "no NIR resistance gives this neuron's unit input gain exactly",
                                  f"dt * r == 1 in float64 for dt {self.dt!r}", "export with another dt")
            return nir.IF(r=r, v_threshold=v_th, v_reset=zeros)
        tau = self.dt / leak
        for cand in (np.nextafter(tau, np.inf), np.nextafter(tau, -np.inf)):
            tau = tau if self.dt / tau == leak else cand
        if self.dt / tau != leak:
            raise self.refuse(n, "no NIR time constant gives this leak exactly", f"dt / tau == {leak!r} in float64",
                              "export with another dt")
        a = np.full(n.out_shape, self.dt / tau)
        r = _unit_product(a)
        if not np.all(a * r == 1.0):
            raise self.refuse(n, "no NIR resistance gives this neuron's unit input gain exactly",
                              f"(dt / tau) * r == 1 in float64 for leak {leak!r}", "export with another dt")
        return nir.LIF(tau=np.full(n.out_shape, tau), r=r, v_leak=zeros, v_threshold=v_th, v_reset=zeros)


def workload_to_nir(trace: Any, dt: float | None = None, *, approximate: bool = False) -> Any:
    """A ``nir.NIRGraph`` of a v2 trace (a :class:`GraphTrace`; a v1 Workload is converted with
    :func:`~snnsim.workload.graphtrace.from_v1`): the inverse of
    :func:`~.nir_trace.workload_from_nir`, node by node (module docstring). ``dt``: the step the
    NIR neurons were discretised with (default: theirs, else 1e-4). Raises WorkloadError naming
    the node for what NIR cannot express."""
    nir = require_nir()
    return _Exporter(nir, _as_graph_trace(trace), dt, approximate).run()


def _unpacked(gt: GraphTrace, key: str, size: int) -> np.ndarray:
    a = gt.recorded[key]
    if key.startswith("spikes/"):
        return np.unpackbits(a, axis=-1, count=size).astype(bool)
    return np.asarray(a, dtype=np.uint8)


def workload_to_nir_data(trace: Any, dt: float | None = None, *, approximate: bool = False) -> Any:
    """The trace's input and recorded activity as ``nir.NIRGraphData`` (time-gridded with step
    ``dt``): the Input node's observable ``input`` (float32, the same at every step: direct
    encoding) and, under the name of the NIR node giving each recorded node's value, the
    observable ``spikes`` (bool) or ``events`` (uint8 counts), (samples, T, N)."""
    nir = require_nir()
    gt = _as_graph_trace(trace)
    ex = _Exporter(nir, gt, dt, approximate)
    ex.run()
    s_n, t_n, step = gt.samples, gt.time_steps, float(ex.dt)
    x = np.ascontiguousarray(gt.input.reshape(s_n, 1, -1), dtype=np.float32)
    nodes: dict[str, Any] = {"input": nir.NIRNodeData({"input": nir.TimeGriddedData(np.repeat(x, t_n, axis=1), step)})}
    for n in ex.resolved:
        for kind in ("spikes", "events"):
            key = f"{kind}/{n.name}"
            if key in gt.recorded:
                a = np.ascontiguousarray(_unpacked(gt, key, n.size))
                nodes[ex.exit[n.name]] = nir.NIRNodeData({kind: nir.TimeGriddedData(a, step)})
    return nir.NIRGraphData(nodes)


def write_nir(trace: Any, path: str | Path, dt: float | None = None, data_path: str | Path | None = None, *,
              approximate: bool = False) -> Path:
    """Write the trace's graph as a NIR file (and, with ``data_path``, its input and activity as
    NIRData). Both are built before any file is touched and each file is written to a temporary
    name and renamed: an error leaves no partial file."""
    nir = require_nir()
    graph = workload_to_nir(trace, dt, approximate=approximate)
    data = workload_to_nir_data(trace, dt, approximate=approximate) if data_path is not None else None
    out = atomic_write(path, lambda tmp: nir.write(tmp, graph))
    if data is not None:
        atomic_write(data_path, lambda tmp: nir.write_data(tmp, data))
    return out


def write_nir_data(trace: Any, path: str | Path, dt: float | None = None, *, approximate: bool = False) -> Path:
    """Write the trace's input and recorded activity as a NIRData file (atomically)."""
    nir = require_nir()
    data = workload_to_nir_data(trace, dt, approximate=approximate)
    return atomic_write(path, lambda tmp: nir.write_data(tmp, data))
