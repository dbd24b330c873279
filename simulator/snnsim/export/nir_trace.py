"""A format v2 trace from a NIR graph: the graph's nodes (:mod:`.nir_import`), the analog input,
and the recorded activity of every recorded node (:func:`snnsim.workload.nodes.recorded`).

The activity comes from a NIRData file (``nir.read_data``) when one is given: each recorded
node's observable ``spikes`` (or ``events`` for counts, or the node's only observable) under the
name of the NIR node whose output it is, time-gridded (samples, T, ...) or events binned into
``time_steps`` steps; a recorded node NIR has no node for (a sum of spikes several layers read) is
computed from the recorded ones. Without NIRData the graph is run on the inputs by the reference
forward evaluator (:func:`snnsim.workload.forward.evaluate`): direct encoding (the analog input at
every step), every neuron stepped by its model of :mod:`snnsim.neurons`, so the recorded spikes are
the neurons' own (NIR's ``v > threshold``, exact ties included).

The analog input is an array (samples, *input shape) in [0, 1], a .npy file (memory-mapped: a
header claiming more than the file holds fails before anything is allocated) or an .npz read with
the trace reader's checks, or the NIRData's Input node (constant over steps).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, WorkloadError, did_you_mean
from ..workload.graphtrace import GraphTrace, resolved_nodes, save_graph_trace
from ..workload.nodes import check_nodes, lower
from ..workload.trace import pack_spikes
from .nir_common import DEFAULT_DT, check_dt, require_nir, text
from .nir_import import Imported, read_graph, translate


def load_inputs(inputs: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The analog input (samples, *shape) as float64 in [0, 1], from an array or a .npy/.npz path."""
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
    if a.dtype.kind not in "biuf":
        raise WorkloadError("inputs are not numbers", file=src, key="input", expected="a numeric array",
                            found=str(a.dtype))
    a = np.asarray(a, dtype=np.float64)
    n = math.prod(shape)
    if a.shape == tuple(shape):
        a = a.reshape(1, *shape)
    elif a.ndim >= 2 and math.prod(a.shape[1:]) == n:
        a = a.reshape(a.shape[0], *shape)
    else:
        raise WorkloadError("inputs have the wrong shape", file=src, key="input",
                            expected=f"(samples, {', '.join(map(str, shape))})", found=str(list(a.shape)))
    if a.shape[0] < 1:
        raise WorkloadError("no input samples", file=src, key="input", expected="at least one sample", found="0")
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise WorkloadError("input values out of range", file=src, key="input",
                            expected="finite values in [0, 1] (the trace's analog input)",
                            found=f"[{np.nanmin(a):g}, {np.nanmax(a):g}]",
                            suggestion="scale the inputs to [0, 1] and fold the scale into the first layer's weights")
    return a


def _observable(node_data: Any, node: str, source: str, kind: str) -> Any:
    obs = getattr(node_data, "observables", None)
    if not isinstance(obs, dict) or not obs:
        raise WorkloadError("no observables for the node", file=source, key=f"nodes.{node}",
                            expected=f"an observable '{kind}'", found="none")
    for want in (kind, "spikes"):
        if want in obs:
            return obs[want]
    if len(obs) == 1:
        return next(iter(obs.values()))
    raise WorkloadError(f"several observables and none named '{kind}'", file=source, key=f"nodes.{node}",
                        expected=f"'{kind}'", found=str(sorted(obs)))


def _grid(nir: Any, o: Any, n: int, steps: int | None, dt: float, node: str, source: str) -> np.ndarray:
    """An observable as a (samples, T, n) array."""
    if isinstance(o, nir.TimeGriddedData):
        a = np.asarray(o.data)
        if a.ndim >= 3 and math.prod(a.shape[2:]) == n:
            a = a.reshape(a.shape[0], a.shape[1], n)
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


def _read_data(nir: Any, spikes: Any) -> tuple[Any, str]:
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


def _evaluate(gt: GraphTrace, keep: list[str], sources: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    from ..workload.forward import evaluate

    return evaluate(gt.nodes, gt.input, gt.time_steps, arrays=gt.arrays, sources=sources, keep=keep)


def _pack(kind: str, a: np.ndarray, samples: int, steps: int) -> np.ndarray:
    flat = np.asarray(a).reshape(samples, steps, -1)
    if kind == "spikes":
        return pack_spikes(flat.astype(bool))
    return np.ascontiguousarray(np.rint(flat), dtype=np.uint8)


def _from_data(nir: Any, imp: Imported, gt: GraphTrace, recorded: list[Any], data: Any, source: str,
               inputs: Any, time_steps: int | None, dt: float) -> dict[str, np.ndarray]:
    """Fill ``gt.input`` and ``gt.time_steps`` from NIRData (and ``inputs``); the recorded
    activity as (samples, T, *shape) arrays."""
    nodes = getattr(data, "nodes", {}) or {}
    steps, samples = time_steps, None
    values: dict[str, np.ndarray] = {}
    for n in recorded:
        node = imp.data_of.get(n.name)
        if node is None or node not in nodes:
            if n.op == "neuron":
                raise WorkloadError("no recorded spikes for a spiking node", file=source, key=f"nodes.{node or n.name}",
                                    expected="NIRNodeData with a 'spikes' observable", found="nothing",
                                    suggestion=did_you_mean(node or n.name, list(nodes)))
            continue  # a node NIR does not name: computed from the others below
        a = _grid(nir, _observable(nodes[node], node, source, n.kind), n.size, steps, dt, node, source)
        steps = a.shape[1] if steps is None else steps
        samples = a.shape[0] if samples is None else samples
        if a.shape[:2] != (samples, steps):
            raise WorkloadError("recorded data disagree on samples or time steps", file=source, key=f"nodes.{node}",
                                expected=f"({samples}, {steps}, ...)", found=str(list(a.shape)))
        ok = (a == 0) | (a == 1) if n.kind == "spikes" else (a >= 0) & (a <= 255) & (a == np.round(a))
        if a.dtype != bool and not np.all(ok):
            raise WorkloadError(f"{n.kind} data hold values a {n.kind} node cannot give", file=source,
                                key=f"nodes.{node}", expected="0/1 or bool" if n.kind == "spikes" else
                                "integer counts in 0..255", found=f"values in [{a.min():g}, {a.max():g}]")
        values[n.name] = a.reshape(samples, steps, *n.out_shape)
    if inputs is not None:
        x = load_inputs(inputs, imp.input_shape)
    elif imp.input_node in nodes:
        a = _grid(nir, _observable(nodes[imp.input_node], imp.input_node, source, "input"),
                  math.prod(imp.input_shape), steps, dt, imp.input_node, source)
        if not np.all(a == a[:, :1]):
            raise WorkloadError("the recorded input changes over time steps", file=source,
                                key=f"nodes.{imp.input_node}", expected="direct encoding (the same input at "
                                "every step)", found="different values across steps")
        x = load_inputs(a[:, 0], imp.input_shape)
    else:
        raise UsageError("the trace needs the analog input", key="inputs",
                         expected="inputs, or data for the Input node in the NIRData file", found="neither")
    if samples is not None and x.shape[0] != samples:
        raise WorkloadError("inputs and recorded spikes have different sample counts", file=source, key="input",
                            expected=str(samples), found=str(x.shape[0]))
    if steps is None:
        raise UsageError("the number of time steps is not known", key="time_steps",
                         expected="time_steps, or recorded data", found="neither")
    gt.input, gt.time_steps = x.astype(np.float32), int(steps)
    missing = [n.name for n in recorded if n.name not in values]
    if missing:
        values.update(_evaluate(gt, missing, sources=values))
    return values


def workload_from_nir(graph: Any, spikes: Any = None, inputs: Any = None, time_steps: int | None = None, *,
                      dt: float = DEFAULT_DT, weight_bits: int = 8, spike_condition: str = "nir",
                      reset: str | None = None, model: str | None = None, dataset: str = "unknown") -> GraphTrace:
    """A format v2 trace (:class:`~snnsim.workload.graphtrace.GraphTrace`) of a NIR graph (a
    path, or a ``nir.NIRGraph``), mapped one primitive to one node (:mod:`.nir_import`).

    Activity: ``spikes`` (a NIRData file or ``nir.NIRGraphData``) gives each recorded node's
    activity (module docstring); the input comes from ``inputs`` or, failing that, from the data
    of the Input node. Without ``spikes``, ``inputs`` (samples, *input shape) in [0, 1] (an
    array or a .npy/.npz path) and ``time_steps`` are required and the graph is run.
    ``dt`` is the discretisation step given to every NIR neuron, ``weight_bits`` the width
    recorded for non-binary weights (1 when every channel is +-one scale). ``spike_condition``
    and ``reset`` were format v1's overrides: a v2 neuron keeps NIR's own dynamics (fire on
    ``v > threshold``, reset to ``v_reset``), so only their defaults are accepted. Raises
    WorkloadError (naming the node) for what format v2 cannot hold, UsageError without ``nir``.
    """
    nir = require_nir()
    dt = check_dt(dt)
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, int) or not 1 <= weight_bits <= 32:
        raise UsageError("weight_bits out of range", key="weight_bits", expected="an integer in 1..32",
                         found=repr(weight_bits))
    if spike_condition != "nir" or reset is not None:
        key = "spike_condition" if spike_condition != "nir" else "reset"
        raise UsageError(f"{key} is a format v1 option", key=key, expected="nir" if key == "spike_condition"
                         else "none", found=repr(spike_condition if key == "spike_condition" else reset),
                         suggestion="format v2 keeps NIR's dynamics (v > threshold, reset to v_reset); change "
                         "the NIR graph's v_threshold or v_reset instead")
    if time_steps is not None and (isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1):
        raise UsageError("time_steps must be a positive integer", key="time_steps", expected=">= 1",
                         found=repr(time_steps))
    if spikes is None and (inputs is None or time_steps is None):
        raise UsageError("simulating the graph needs inputs and a number of time steps",
                         key="inputs" if inputs is None else "time_steps",
                         expected="inputs (samples, *input shape) in [0, 1] and time_steps >= 1",
                         found="none", suggestion="or give recorded spikes (a NIRData file)")
    g, source = read_graph(nir, graph)
    imp = translate(g, source, dt, weight_bits)
    resolved = resolved_nodes(imp.nodes, imp.arrays, source)
    try:
        check_nodes(resolved, imp.input_shape)
        layers = lower(resolved)
    except WorkloadError as e:
        raise WorkloadError(e.message, file=source, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    recorded = [la.output for la in layers if la.output.kind in ("spikes", "events")]
    meta = g.metadata if isinstance(getattr(g, "metadata", None), dict) else {}
    prov: dict[str, Any] = {"generator": "snnsim.export.nir", "nir_version": str(getattr(nir, "__version__", "?")),
                            "graph": Path(source).name if source != "<memory>" else source, "dt": dt,
                            "discretisation": "forward Euler"}
    name = model or str(text(meta.get("snnsim_model", "")) or "") or (Path(source).stem if source != "<memory>"
                                                                       else "nir")
    ds = str(text(meta.get("snnsim_dataset"))) if dataset == "unknown" and meta.get("snnsim_dataset") else dataset
    gt = GraphTrace(nodes=imp.nodes, input=np.zeros((1, *imp.input_shape), np.float32), recorded={},
                    arrays=imp.arrays, time_steps=time_steps or 1, model=name, dataset=ds, provenance=prov,
                    source=source)
    if spikes is not None:
        data, dsource = _read_data(nir, spikes)
        values = _from_data(nir, imp, gt, recorded, data, dsource, inputs, time_steps, dt)
        prov["spikes"] = f"NIRData {Path(dsource).name if dsource != '<memory>' else dsource}"
    else:
        assert inputs is not None and time_steps is not None
        gt.input = load_inputs(inputs, imp.input_shape).astype(np.float32)
        values = _evaluate(gt, [n.name for n in recorded])
        prov["spikes"] = "computed by snnsim's reference evaluator (direct encoding, each neuron's own model)"
    gt.recorded = {f"{n.kind}/{n.name}": _pack(n.kind, values[n.name], gt.samples, gt.time_steps) for n in recorded}
    if imp.notes:
        prov["notes"] = imp.notes
    return gt


def nir_to_trace(graph: Any, out: str | Path, **kwargs: Any) -> Path:
    """``workload_from_nir(graph, **kwargs)`` written to ``out`` as a v2 trace (atomically: an
    error leaves no file)."""
    return save_graph_trace(workload_from_nir(graph, **kwargs), out)
