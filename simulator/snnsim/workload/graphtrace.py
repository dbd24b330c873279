"""Trace format v2 files: the graph of :mod:`snnsim.workload.nodes`, its parameters and the
recorded activity, in one ``.npz`` read with the same checks as v1 (:mod:`.npzfile`).

Arrays (samples x steps x neurons, as in v1):

- ``manifest`` (UTF-8 JSON: ``version`` 2, ``nodes`` in their manifest form) and ``input``
  float32 (samples, *input shape) in [0, 1];
- ``spikes/<node>`` uint8 (samples, T, ceil(N / 8)), bit-packed MSB first, for every recorded node
  that gives spikes; ``events/<node>`` uint8 (samples, T, N) for every recorded node that gives
  events (counts up to 255);
- ``weights/<node>`` float32 (C_out, C_in / groups, *kernel) or (out, in), optional;
  ``bias/<node>`` float32 (C_out,), required when the node's ``bias`` is true;
  ``scale/<node>`` and ``shift/<node>`` float32 (C,) of an ``affine`` (``y = scale x + shift``,
  per channel: a trained batch norm folds to this); ``scale/<node>`` of a ``scale``;
- ``params/<node>/<name>``: a neuron parameter given per channel (C,) or per neuron
  (out shape), referenced from the node as ``{"array": "params/<node>/<name>"}``.

A v1 file loads as v2 through :mod:`.migrate` (:func:`from_v1`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WorkloadError, did_you_mean
from ..fileio import atomic_write
from .migrate import nodes_from_v1
from .nodes import (
    PARAM_ARRAY,
    WEIGHTED,
    HardwareLayer,
    Node,
    check_nodes,
    lower,
    node_as_dict,
    node_from_dict,
)
from .npzfile import NpzArchive, describe_dtype

FORMAT_VERSION = 2


@dataclass
class GraphTrace:
    """A format v2 trace in memory: the graph, the analog input, the recorded activity and the
    parameter arrays (all keyed by their array names in the file)."""

    nodes: list[Node]
    input: np.ndarray
    recorded: dict[str, np.ndarray]  # 'spikes/<node>' or 'events/<node>' -> array
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # weights/, bias/, scale/, shift/, params/
    time_steps: int = 1
    model: str = "unnamed"
    dataset: str = "unknown"
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def samples(self) -> int:
        return int(self.input.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.input.shape[1:])

    def spike_rates(self) -> dict[str, tuple[tuple[int, ...], np.ndarray]]:
        """Per recorded spiking node: (its shape, spikes per neuron at each step over the samples)."""
        out = {}
        for la in self.layers():
            if la.output.kind == "spikes":
                bits = np.unpackbits(self.recorded[f"spikes/{la.name}"], axis=-1).sum(axis=(0, 2))  # padding bits: 0
                out[la.name] = (tuple(la.output.out_shape), bits / (la.output.size * self.samples))
        return out

    def layers(self) -> list[HardwareLayer]:
        """The hardware layers (:func:`snnsim.workload.nodes.lower`) of the checked graph, with
        array parameters resolved to their arrays."""
        check(self)
        resolved = resolved_nodes(self.nodes, self.arrays, self.source)
        check_nodes(resolved, self.input_shape)
        return lower(resolved)


def resolved_nodes(nodes: list[Node], arrays: dict[str, np.ndarray], source: str) -> list[Node]:
    """Copies of the nodes with every ``{"array": NAME}`` parameter replaced by that array."""
    out = []
    for n in nodes:
        params = {}
        for k, v in n.params.items():
            if isinstance(v, dict) and set(v) == {PARAM_ARRAY}:
                name = v[PARAM_ARRAY]
                if name not in arrays:
                    raise WorkloadError("a parameter names an array the trace does not hold", file=source,
                                        key=f"nodes.{n.name}.params.{k}", expected=f"an array '{name}'",
                                        found="no such array", suggestion=did_you_mean(name, arrays))
                v = arrays[name]
            params[k] = v
        out.append(Node(n.name, n.op, list(n.inputs), params))
    return out


def _plan(samples: int, steps: int, input_shape: tuple[int, ...], resolved: list[Node],
          optional: dict[str, tuple[int, ...]], source: str) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """name -> (dtype, shape) of every array the trace must hold, from its checked graph, and of
    the ``optional`` ones it holds (weights, per-neuron parameters: name -> shape found)."""
    plan: dict[str, tuple[Any, tuple[int, ...]]] = {"input": (np.float32, (samples, *input_shape))}
    for la in lower(resolved):
        n = la.output
        if n.kind == "spikes":
            plan[f"spikes/{n.name}"] = (np.uint8, (samples, steps, math.ceil(n.size / 8)))
        elif n.kind == "events":
            plan[f"events/{n.name}"] = (np.uint8, (samples, steps, n.size))
    by_name = {n.name: n for n in resolved}
    for n in resolved:
        if n.op in ("affine", "scale"):
            plan[f"scale/{n.name}"] = (np.float32, (n.out_shape[0],))
            if n.op == "affine":
                plan[f"shift/{n.name}"] = (np.float32, (n.out_shape[0],))
        if n.op in WEIGHTED and n.params.get("bias") or n.op == "bias":
            plan[f"bias/{n.name}"] = (np.float32, (n.out_shape[0],))
    for name, found in optional.items():
        prefix, _, rest = name.partition("/")
        node = by_name.get(rest.partition("/")[0] if prefix == "params" else rest)
        if prefix in ("weights", "binary_weights", "weight_scales") and node is not None and node.op in WEIGHTED:
            src = node.inputs[0]
            c_in = (input_shape if src == "input" else by_name[src].out_shape)[0]
            rank = WEIGHTED[node.op]
            kernel = node.params.get("kernel", 1)
            kernel = [kernel] * rank if isinstance(kernel, int) else list(kernel)
            shape = ((node.out_shape[0], c_in) if rank == 0 else
                     (node.out_shape[0], c_in // node.params.get("groups", 1), *kernel))
            if prefix == "weights":
                plan[name] = (np.float32, shape)
            elif prefix == "binary_weights":
                plan[name] = (np.uint8, (math.ceil(math.prod(shape) / 8),))
            else:
                plan[name] = (np.float32, (shape[0],))
            pair = ("binary_weights", "weight_scales")
            if prefix in pair and f"{pair[1 - pair.index(prefix)]}/{rest}" not in optional:
                other = pair[1 - pair.index(prefix)]
                raise WorkloadError("binary weights come as a pair", file=source, key=name,
                                    expected=f"{other}/{rest} beside it", found="no such array")
            if prefix == "binary_weights" and f"weights/{rest}" in optional:
                raise WorkloadError("a node's weights are stored twice", file=source, key=name,
                                    expected=f"weights/{rest} or binary_weights/{rest}", found="both")
        elif prefix == "params" and node is not None and node.op == "neuron":
            plan[name] = (None, tuple(found))  # any float; how it broadcasts is the model's check
        elif name not in plan:
            raise WorkloadError("unexpected array", file=source, key=name,
                                expected="weights/, bias/, scale/, shift/ or params/ of a node that takes it",
                                found=name, suggestion=did_you_mean(name, list(plan)))
    return plan


def _optional(names: list[str], shape_of: Any) -> dict[str, tuple[int, ...]]:
    return {n: tuple(shape_of(n)) for n in names
            if n.split("/")[0] in ("weights", "binary_weights", "weight_scales", "params")}


def _unpack_binary(arrays: dict[str, np.ndarray], source: str) -> None:
    """Replace each ``binary_weights/<node>`` + ``weight_scales/<node>`` pair (the compact form of
    +-scale weights, as in v1) by the float32 ``weights/<node>`` it stands for."""
    for name in [n for n in arrays if n.startswith("binary_weights/")]:
        node = name.split("/", 1)[1]
        bits, scale = arrays.pop(name), arrays.pop(f"weight_scales/{node}")
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise WorkloadError("binary weight scales must be positive", file=source, key=f"weight_scales/{node}",
                                expected="finite values > 0", found=f"min {float(np.nanmin(scale)):g}")
        arrays[f"weights/{node}"] = (bits, scale)  # shaped by the caller, which knows the node's weights


def _binary_shape(gt: GraphTrace, resolved: list[Node]) -> None:
    for name, a in list(gt.arrays.items()):
        if isinstance(a, tuple):
            bits, scale = a
            node = next(n for n in resolved if n.name == name.split("/", 1)[1])
            src = node.inputs[0]
            c_in = (gt.input_shape if src == "input" else next(n for n in resolved if n.name == src).out_shape)[0]
            rank = WEIGHTED[node.op]
            k = node.params.get("kernel", 1)
            shape = ((node.out_shape[0], c_in) if rank == 0 else
                     (node.out_shape[0], c_in // node.params.get("groups", 1), *([k] * rank if isinstance(k, int) else k)))
            signs = np.unpackbits(bits, count=math.prod(shape)).astype(np.float32) * 2 - 1
            w = (signs.reshape(shape) * scale.reshape((-1,) + (1,) * (len(shape) - 1))).astype(np.float32)
            w.flags.writeable = False
            gt.arrays[name] = w


def check(gt: GraphTrace) -> None:
    """Check the graph (with its array parameters resolved) and every array against it."""
    src = gt.source
    if not isinstance(gt.time_steps, int) or isinstance(gt.time_steps, bool) or gt.time_steps < 1:
        raise WorkloadError("time_steps must be a positive integer", file=src, key="time_steps",
                            expected="an integer >= 1", found=repr(gt.time_steps))
    try:
        resolved = resolved_nodes(gt.nodes, gt.arrays, src)
        check_nodes(resolved, gt.input_shape)
    except WorkloadError as e:
        raise WorkloadError(e.message, file=src, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    for n, r in zip(gt.nodes, resolved, strict=True):
        n.out_shape, n.kind = r.out_shape, r.kind
    plan = _plan(gt.samples, gt.time_steps, gt.input_shape, resolved,
                 _optional(list(gt.arrays), lambda n: np.shape(gt.arrays[n])), src)
    for name in gt.arrays:
        if name not in plan:
            raise WorkloadError("unexpected array", file=src, key=name, expected="an array the graph implies",
                                found=name, suggestion=did_you_mean(name, list(plan)))
    have = {"input": gt.input, **gt.recorded, **gt.arrays}
    for name, (dtype, shape) in plan.items():
        a = have.get(name)
        if a is None:
            raise WorkloadError("array missing", file=src, key=name, expected=f"{list(shape)}", found="no such array")
        if not isinstance(a, np.ndarray) or tuple(a.shape) != shape or (dtype is not None and a.dtype != dtype) \
                or a.dtype.kind not in "uif":
            want = describe_dtype(np.dtype(dtype)) if dtype is not None else "a float array"
            raise WorkloadError("array has the wrong shape or dtype", file=src, key=name,
                                expected=f"{want} {list(shape)}",
                                found=f"{describe_dtype(a.dtype)} {list(a.shape)}" if isinstance(a, np.ndarray)
                                else type(a).__name__)
    for name in gt.recorded:
        if name not in plan:
            raise WorkloadError("activity of a node that is not recorded", file=src, key=name,
                                expected="spikes/ or events/ of a recorded node", found=name,
                                suggestion=did_you_mean(name, [p for p in plan if p.split("/")[0] in
                                                              ("spikes", "events")]))
    x = gt.input
    if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise WorkloadError("input values out of range", file=src, key="input",
                            expected="finite values in [0, 1]", found=f"[{np.nanmin(x):g}, {np.nanmax(x):g}]")
    for name, a in gt.arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise WorkloadError("array holds NaN or infinite values", file=src, key=name,
                                expected="finite values", found="non-finite values")


def manifest_of(gt: GraphTrace) -> dict[str, Any]:
    """The JSON manifest of a v2 trace, as the file stores it."""
    return {"format": "snnsim-trace", "version": FORMAT_VERSION, "model": gt.model, "dataset": gt.dataset,
            "time_steps": gt.time_steps, "samples": gt.samples, "encoding": "direct",
            "input": {"shape": list(gt.input_shape), "dtype": "float32", "range": [0.0, 1.0],
                      "layout": "channels_first"},
            "nodes": [node_as_dict(n) for n in gt.nodes], "provenance": gt.provenance}


def save_graph_trace(gt: GraphTrace, path: str | Path) -> Path:
    """Check and write a v2 trace atomically (uncompressed, as v1); the weights of a 1-bit node
    that are +-one scale per output channel are stored in v1's compact form (signs and scales)."""
    from .trace import binary_form

    check(gt)
    manifest = manifest_of(gt)
    arrays = {"manifest": np.frombuffer(json.dumps(manifest, indent=1).encode("utf-8"), np.uint8),
              "input": np.ascontiguousarray(gt.input, np.float32)}
    arrays.update({k: np.ascontiguousarray(v) for k, v in gt.recorded.items()})
    weight_bits = {n.name: n.params.get("weight_bits") for n in gt.nodes}
    for k, v in gt.arrays.items():
        node = k.split("/", 1)[1]
        packed = binary_form(v) if k.startswith("weights/") and weight_bits.get(node) == 1 else None
        if packed is not None:  # +-scale weights of a 1-bit node: stored as signs and scales
            arrays[f"binary_weights/{node}"], arrays[f"weight_scales/{node}"] = packed
        else:
            arrays[k] = np.ascontiguousarray(v)

    return atomic_write(path, lambda tmp: write_npz(tmp, arrays))


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` that ``numpy.load`` reads, with every member dated 1980-01-01, so
    the same arrays give the same bytes (``numpy.savez`` stamps the time of writing)."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(a), allow_pickle=False)


def graph_from_manifest(man: dict, z: NpzArchive, source: str) -> GraphTrace:
    """A v2 trace from its checked manifest fields and archive: every header checked against the
    graph before any array is read."""
    from .trace import _field, _is_count, _text

    steps = _field(man, "time_steps", int, source, _is_count, "an integer >= 1")
    samples = _field(man, "samples", int, source, _is_count, "an integer >= 1")
    inp = _field(man, "input", dict, source, expected="{shape: [...]}")
    shape = inp.get("shape")
    if not isinstance(shape, list) or not shape or not all(_is_count(s) for s in shape):
        raise WorkloadError("invalid input shape", file=source, key="manifest.input.shape",
                            expected="a non-empty list of positive integers", found=repr(shape)[:200])
    raw = _field(man, "nodes", list, source, lambda v: len(v) > 0, "a non-empty list of nodes")
    try:
        nodes = [node_from_dict(d, i) for i, d in enumerate(raw)]
    except WorkloadError as e:
        raise WorkloadError(e.message, file=source, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    provenance = man.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise WorkloadError("provenance must be a JSON object", file=source, key="manifest.provenance",
                            expected="a JSON object (or null)", found=repr(provenance)[:200])
    # parameter arrays first (the graph check needs them), each header before its data
    arrays = {n: z.read(n) for n in z.names if n.split("/")[0] in ("params",)}
    gt = GraphTrace(nodes=nodes, input=np.zeros((samples, *shape), np.float32), recorded={}, arrays=arrays,
                    time_steps=steps, model=_text(man, "model", "unnamed", source),
                    dataset=_text(man, "dataset", "unknown", source), provenance=provenance, source=source)
    resolved = resolved_nodes(nodes, arrays, source)
    try:
        check_nodes(resolved, tuple(shape))
    except WorkloadError as e:
        raise WorkloadError(e.message, file=source, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    plan = _plan(samples, steps, tuple(shape), resolved, _optional(z.names, lambda n: z.header(n).shape), source)
    for name in z.names:
        if name != "manifest" and name not in plan:
            raise WorkloadError("unexpected array", file=source, key=name, expected="an array the graph implies",
                                found=name, suggestion=did_you_mean(name, list(plan)))
    for name, (dtype, want) in plan.items():
        if name not in z.names:
            raise WorkloadError("array missing", file=source, key=name, expected=f"{list(want)}",
                                found="no such array", suggestion=did_you_mean(name, z.names))
        z.expect(name, dtype, want)
    gt.input = z.read("input", np.float32, plan["input"][1])
    for name, (dtype, want) in plan.items():
        if name == "input":
            continue
        prefix = name.split("/")[0]
        a = z.read(name, dtype, want)
        (gt.recorded if prefix in ("spikes", "events") else gt.arrays)[name] = a
    for a in (gt.input, *gt.recorded.values(), *gt.arrays.values()):
        a.flags.writeable = False
    _unpack_binary(gt.arrays, source)
    _binary_shape(gt, resolved)
    check(gt)
    return gt


def from_v1(wl: Any) -> GraphTrace:
    """A v1 :class:`~snnsim.workload.trace.Workload` as a v2 trace (the graph by
    :func:`.migrate.nodes_from_v1`; weights keyed by their op node; a per-channel threshold as a
    parameter array)."""
    if any(la.parts is not None for la in wl.layers):
        raise WorkloadError("the workload is already a format v2 graph", file=wl.source, key="layers",
                            expected="a format v1 workload", found="v2 hardware layers",
                            suggestion="read the file with load_graph_trace")
    nodes = nodes_from_v1(wl.layers, wl.thresholds)
    arrays: dict[str, np.ndarray] = {}
    for n in nodes:
        th = n.params.get("threshold")
        if isinstance(th, np.ndarray):
            key = f"params/{n.name}/threshold"
            arrays[key] = th
            n.params["threshold"] = {PARAM_ARRAY: key}
    op_name = {la.name: (la.name if la.neuron is None else f"{la.name}:{la.op}") for la in wl.layers}
    for name in sorted(set(wl.weights) | set(wl.packed_weights)):
        arrays[f"weights/{op_name[name]}"] = np.asarray(wl.weight(name), np.float32)
    gt = GraphTrace(nodes=nodes, input=wl.input, recorded={}, arrays=arrays, time_steps=wl.time_steps,
                    model=wl.model, dataset=wl.dataset, provenance=dict(wl.provenance), source=wl.source)
    resolved = resolved_nodes(nodes, arrays, wl.source)
    check_nodes(resolved, wl.input_shape)
    gt.recorded = {f"spikes/{la.output.name}": wl.packed_spikes[la.output.name]
                   for la in lower(resolved) if la.output.kind == "spikes"}
    return gt


def load_graph_trace(path: str | Path) -> GraphTrace:
    """Read a trace as format v2: a v2 file with every check of the v1 reader, or a v1 file
    migrated in memory (:func:`from_v1`)."""
    from .trace import _from_manifest, _read_manifest, checked_trace_path

    source = str(path)
    p = checked_trace_path(path)
    with NpzArchive(p, source) as z:
        man = _read_manifest(z, source)
        if isinstance(man, dict) and man.get("format") == "snnsim-trace" and man.get("version") == FORMAT_VERSION:
            return graph_from_manifest(man, z, source)
        return from_v1(_from_manifest(man, z, source))


def to_workload(gt: GraphTrace) -> Any:
    """The v1 :class:`~snnsim.workload.trace.Workload` the hardware models replay, for a v2 trace
    made of v1 constructs (:func:`.migrate.layers_to_v1`); anything else raises WorkloadError
    naming the node."""
    from .graph import check_graph
    from .migrate import layers_to_v1
    from .trace import Workload

    try:
        hw_layers = gt.layers()
        try:
            layers, weight_of, thresholds = layers_to_v1(hw_layers)
            check_graph(layers, gt.input_shape)
        except WorkloadError:  # beyond format v1 (V1Unsupported, or v1's spiking rule): replay the graph
            return _parts_workload(gt)
    except WorkloadError as e:
        raise WorkloadError(e.message, file=gt.source, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    packed: dict[str, np.ndarray] = {}
    for la in layers:
        if la.spiking:
            key = f"spikes/{la.name}"
            # a v1 flatten of spikes holds its input's bits unchanged (channels-first order)
            packed[la.name] = gt.recorded[key] if key in gt.recorded else packed[la.inputs[0]]
    weights = {weight_of[k.split("/", 1)[1]]: a for k, a in gt.arrays.items()
               if k.startswith("weights/") and k.split("/", 1)[1] in weight_of}
    return Workload(layers=layers, input=gt.input, packed_spikes=packed, time_steps=gt.time_steps,
                    model=gt.model, dataset=gt.dataset, weights=weights, thresholds=thresholds,
                    provenance=dict(gt.provenance), source=gt.source, format_version=FORMAT_VERSION)


def _parts_workload(gt: GraphTrace) -> Any:
    """The Workload of a v2 graph beyond format v1: one layer per hardware layer with its
    :class:`~snnsim.workload.hwlayer.Parts`; weights keyed by their op node; events with their
    non-zero pattern packed as spikes (what the replay kernels read)."""
    from .hwlayer import parts_layers
    from .trace import Workload

    resolved = resolved_nodes(gt.nodes, gt.arrays, gt.source)
    check_nodes(resolved, gt.input_shape)
    layers = parts_layers(lower(resolved), resolved, gt.input_shape)
    packed: dict[str, np.ndarray] = {}
    events: dict[str, np.ndarray] = {}
    for la in layers:
        if la.parts.output.kind == "spikes":
            packed[la.name] = gt.recorded[f"spikes/{la.name}"]
        elif la.parts.output.kind == "events":
            ev = gt.recorded[f"events/{la.name}"]
            events[la.name] = ev
            nz = np.packbits(ev > 0, axis=-1)
            nz.flags.writeable = False
            packed[la.name] = nz
    return Workload(layers=layers, input=gt.input, packed_spikes=packed, time_steps=gt.time_steps,
                    model=gt.model, dataset=gt.dataset, provenance=dict(gt.provenance), source=gt.source,
                    format_version=FORMAT_VERSION, events=events, node_arrays=dict(gt.arrays), nodes=resolved)
