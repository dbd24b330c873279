"""Export a PyTorch, snnTorch or SpikingJelly spiking network as a format v2 trace.

:func:`from_torch` captures the model's graph (:mod:`.capture`: torch.fx, or an nn.Sequential's
call order), writes it as v2 nodes one to one with its modules and functions (:mod:`.lowering`,
neurons through :mod:`.adapters`), runs it for ``time_steps`` steps with direct encoding
(:mod:`.recording`: the same analog frame every step, neurons reset first), records the output
of every node the trace records (``snnsim.workload.nodes.recorded``: neurons, OR max pools of
spikes, IANDs, sums of spikes several layers read), recomputes every neuron's spikes with its
:mod:`snnsim.neurons` model from the recorded currents and every neuron's input current with the
v2 graph's own ops (:mod:`.checks`), and writes the trace with
:func:`snnsim.workload.graphtrace.save_graph_trace` (atomically).

What it holds: Conv1d/2d/3d and Linear with or without bias, eval-mode BatchNorm (an
``affine``), ``x * c`` and SpikingJelly ann2snn's ``VoltageScaler`` / ``ChannelVoltageScaler`` (a
``scale``), ``x + c`` / ``x - c`` / ``x + self.b`` with a constant per channel (a ``bias``), a
neuron read out by its membrane (``spk, mem = lif(x); return mem``: ``output: membrane``, its
membrane checked against its model), max / average / adaptive average / sum pooling of currents
or spikes, adds of currents (Spiking-ResNet) or spikes (SEW ADD), SEW IAND ``x * (1 - y)``,
flatten / view / reshape anywhere (also of the analog input), a readout without a neuron; snnTorch
Leaky, Synaptic, RLeaky and RSynaptic, SpikingJelly IF / LIF / PLIF (single- or multi-step, with
layer.* and containers), and modules declaring ``snnsim_neuron()``. A forward that loops over
time itself is refused with what to pass instead; one that repeats its input over T itself
(``x.unsqueeze(0).repeat(T, ...)``) is exported with ``time_steps=T``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, WorkloadError
from ..workload.graphtrace import GraphTrace, check, resolved_nodes, save_graph_trace
from ..workload.nodes import check_nodes, recorded
from ..workload.trace import pack_spikes
from .adapters import NeuronAdapters
from .capture import Capture, TraceFailed, capture_fx, capture_sequential, fallback_allowed
from .checks import binary, counts, graph_check, raise_on_mismatch, self_check
from .lowering import Lowered, lower_ops
from .recording import record


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError("exporting a PyTorch model needs PyTorch", expected="the torch package",
                         found="no module named 'torch'", suggestion='pip install "snnsim[torch]"') from None
    return torch


def as_input(inputs: Any) -> np.ndarray:
    """The analog input (samples, *shape) as float32 in [0, 1] (UsageError otherwise)."""
    torch = _torch()
    if isinstance(inputs, torch.Tensor):
        x = inputs.detach().cpu().double().numpy()
    else:
        try:
            x = np.asarray(inputs, dtype=np.float64)
        except (TypeError, ValueError):
            raise UsageError("inputs must be a tensor or an array", key="inputs",
                             expected="(samples, features) or (samples, C, ...) values in [0, 1]",
                             found=type(inputs).__name__) from None
    if x.ndim < 2 or 0 in x.shape:
        raise UsageError("inputs have the wrong shape", key="inputs",
                         expected="(samples, features) or (samples, C, ...): one frame per sample",
                         found=str(list(x.shape)))
    if not np.all(np.isfinite(x)):
        raise UsageError("inputs hold NaN or infinite values", key="inputs", expected="finite values in [0, 1]",
                         found="non-finite values")
    if x.min() < 0.0 or x.max() > 1.0:
        raise UsageError("inputs out of range", key="inputs", expected="analog values in [0, 1] (direct encoding)",
                         found=f"[{x.min():g}, {x.max():g}]", suggestion="scale the inputs to [0, 1]")
    return x.astype(np.float32)


def _step_mode(model: Any, adapters: NeuronAdapters) -> str:
    modes = {adapters.step_mode(m) for m in model.modules() if adapters.is_neuron(m)}
    if len(modes) > 1:
        raise UsageError("the model mixes single-step and multi-step neurons", key="step_mode",
                         expected="every neuron in step_mode 's' or every one in 'm'", found=str(sorted(modes)))
    mode = modes.pop() if modes else "s"
    if mode not in ("s", "m"):
        raise UsageError("unknown step mode", key="step_mode", expected="'s' or 'm'", found=repr(mode))
    return mode


def _check_args(model: Any, time_steps: Any, weight_bits: Any, on_mismatch: Any) -> None:
    torch = _torch()
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise UsageError("time_steps must be a positive integer", key="time_steps", expected="an integer >= 1",
                         found=repr(time_steps))
    if not isinstance(model, torch.nn.Module):
        raise UsageError("model must be a torch.nn.Module", key="model", expected="an nn.Module",
                         found=type(model).__name__)
    bits = weight_bits.values() if isinstance(weight_bits, dict) else [weight_bits]
    if weight_bits is not None and not all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 32
                                           for b in bits):
        raise UsageError("weight_bits must be 1..32, or a {node: 1..32} mapping", key="weight_bits",
                         expected="1..32 or {name: 1..32}", found=repr(weight_bits)[:200])
    if on_mismatch not in ("error", "warn"):
        raise UsageError("on_mismatch must be 'error' or 'warn'", key="on_mismatch", expected="'error' or 'warn'",
                         found=repr(on_mismatch))


def _capture(model: Any, x: np.ndarray, time_steps: int, adapters: NeuronAdapters, multi: bool) -> Capture:
    torch = _torch()
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    dev = param.device if param is not None else torch.device("cpu")
    batch = 3 if time_steps == 2 else 2  # a batch size unlike T: an op mixing the two is seen
    probe = torch.as_tensor(np.repeat(x[:1], batch, axis=0), dtype=dtype, device=dev)
    lead = 2 if multi else 1
    if multi:
        probe = probe.unsqueeze(0).expand(time_steps, *probe.shape).contiguous()
    try:
        return capture_fx(model, probe, adapters, lead, time_steps)
    except TraceFailed as e:
        if not fallback_allowed(model):
            raise WorkloadError("torch.fx cannot trace the model", key="model",
                                expected="an fx-traceable forward (neurons are leaf modules) or an nn.Sequential",
                                found=str(e).split("\n")[0],
                                suggestion="give custom neuron modules snnsim_neuron() (or name them in spiking=(...)) "
                                "so fx does not trace into them") from None
        return capture_sequential(model, probe, adapters, lead)


def _check_shapes(low: Lowered, cap: Capture, resolved: list[Any]) -> None:
    """Every node's shape as check_nodes computes it must be the shape torch gave."""
    for n in resolved:
        i = low.op_of.get(n.name)
        want = cap.ops[i].shape if i is not None else None
        if want is not None and tuple(want) != tuple(n.out_shape):
            raise WorkloadError(f"node '{n.name}' ({low.modules.get(n.name, n.op)}) has shape {list(n.out_shape)} "
                                f"in format v2 but {list(want)} in torch", key=n.name,
                                expected="the same per-sample shape", found=f"{list(want)}",
                                suggestion="an op whose parameters the export read wrongly: please report it")


def from_torch(model: Any, inputs: Any, time_steps: int, path: str | Path | None = None, *,
               spiking: Any = None, model_name: str | None = None, dataset: str | None = None,
               weight_bits: int | dict[str, int] | None = None, on_mismatch: str = "error",
               provenance: dict[str, Any] | None = None) -> GraphTrace:
    """Run ``model`` on ``inputs`` for ``time_steps`` steps (direct encoding) and return its
    format v2 trace; write it to ``path`` (atomically) when given.

    ``inputs``: tensor or array (samples, *input shape), values in [0, 1]: one analog frame per
    sample, given at every step (a multi-step model gets it repeated as (T, samples, ...)).
    ``spiking``: extra neuron classes or predicates ``module -> bool`` whose modules have no
    ``snnsim_neuron()`` (they are format v1's neuron, :mod:`.adapters`). ``weight_bits``: the
    on-chip width of the weights, one int or ``{node: bits}``; by default the smallest
    sign-magnitude grid the weights lie on, else 16 (the weights are stored as float32 as they
    are). ``on_mismatch``: ``"error"`` (default) refuses a trace whose recorded spikes a neuron
    model does not reproduce; ``"warn"`` writes it with a warning (the counts are in
    ``provenance.export.self_check``). ``provenance``: more entries for the trace's provenance
    (a training record, a conversion's settings); ``generator`` and ``export`` are the export's.

    Raises ``UsageError`` for bad arguments or a model that fails on the inputs, and
    ``WorkloadError`` for a model format v2 cannot describe exactly (naming the module).
    """
    torch = _torch()
    _check_args(model, time_steps, weight_bits, on_mismatch)
    x = as_input(inputs)
    adapters = NeuronAdapters(spiking)
    mode = _step_mode(model, adapters)
    cap = _capture(model, x, time_steps, adapters, mode == "m")
    low = lower_ops(cap.ops, adapters, weight_bits)
    resolved = resolved_nodes(low.nodes, low.arrays, "<export>")
    check_nodes(resolved, tuple(x.shape[1:]))
    _check_shapes(low, cap, resolved)
    heads = recorded(resolved)
    neuron_ops = {low.op_of[name]: (spec.recurrent.module if spec.recurrent else None)
                  for name, spec in low.neurons.items()}
    rec = record(cap, x, time_steps, {low.op_of[n.name] for n in heads} | set(low.membranes.values()), neuron_ops,
                 adapters)
    trace_arrays: dict[str, np.ndarray] = {}
    spikes: dict[str, np.ndarray] = {}
    for n in heads:
        a = rec.out[low.op_of[n.name]]
        if n.kind == "spikes":
            spikes[n.name] = binary(n.name, a)
            trace_arrays[f"spikes/{n.name}"] = pack_spikes(spikes[n.name])
        else:
            trace_arrays[f"events/{n.name}"] = counts(n.name, a).reshape(a.shape[0], a.shape[1], -1)
    currents = {name: rec.current[i] for name, i in ((nm, low.op_of[nm]) for nm in low.neurons)}
    recurrent = {name: (rec.recurrent[low.op_of[name]], spec.recurrent.module)
                 for name, spec in low.neurons.items() if spec.recurrent is not None}
    membranes = {name: rec.out[i] for name, i in low.membranes.items()}
    checked = self_check(resolved, spikes, currents, recurrent, membranes)
    forced = {n.name: (spikes[n.name] if n.kind == "spikes" else trace_arrays[f"events/{n.name}"].reshape(
        x.shape[0], time_steps, *n.out_shape)) for n in heads}
    try:
        graph: dict[str, Any] = graph_check(low.nodes, low.arrays, x, time_steps, forced, currents,
                                            {k: v[0] for k, v in recurrent.items()})
    except ImportError:  # the reference forward pass is optional here
        graph = {"skipped": "snnsim.workload.forward is not available"}
    sources = {name: spec.source for name, spec in low.neurons.items()}
    if on_mismatch == "error":
        raise_on_mismatch(checked, sources)
    else:
        bad = [k for k, c in checked.items() if c.get("trains_differing") or c.get("values_differing")]
        if bad:
            warnings.warn(f"neurons {bad}: recorded spikes differ from their models (provenance.export.self_check)",
                          stacklevel=2)
    versions = {"torch": torch.__version__}
    for lib in ("snntorch", "spikingjelly"):
        mod = sys.modules.get(lib)
        if mod is not None:
            versions[lib] = str(getattr(mod, "__version__", "unknown"))
    per_node: dict[str, Any] = {}
    for n in low.nodes:
        entry: dict[str, Any] = {"from": low.modules.get(n.name, "")}
        spec = low.neurons.get(n.name)
        if spec is not None:
            entry["neuron"] = {"source": spec.source, **({"note": spec.note} if spec.note else {})}
        per_node[n.name] = entry
    if provenance is not None and not isinstance(provenance, dict):
        raise UsageError("provenance must be a mapping", key="provenance", expected="a dict",
                         found=type(provenance).__name__)
    info = {
        **(provenance or {}),
        "generator": "snnsim.export.from_torch",
        "export": {"graph": cap.method, "step_mode": mode, "input_repeated_by_model": cap.repeats,
                   "versions": versions, "nodes": per_node, "self_check": checked,
                   "graph_check": graph,
                   "spike_rates": {k: float(v.mean()) for k, v in spikes.items()}, "notes": low.notes},
        "note": "activity recorded from the model's own forward pass (float32); weights stored as float32",
    }
    gt = GraphTrace(nodes=low.nodes, input=x, recorded=trace_arrays, arrays=low.arrays, time_steps=time_steps,
                    model=model_name or type(model).__name__, dataset=dataset or "unknown", provenance=info)
    if path is not None:
        gt.source = str(save_graph_trace(gt, path))
    else:
        check(gt)
    return gt
