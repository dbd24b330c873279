"""The export's self-check: every neuron's recorded spikes recomputed by its snnsim model.

Each neuron node is stepped by :mod:`snnsim.neurons` (its framework's exact float32 order) from
the input currents recorded in the framework's forward pass, and a recurrent neuron with its
recorded recurrent current, which is itself checked against its torch module applied to the
neuron's recorded spikes one step earlier (the ``delay`` the graph writes), to float32
rounding (:data:`RECURRENT_TOLERANCE`). A trace whose
neurons disagree with their models is never written silently: :func:`self_check` returns the
counts and :func:`raise_on_mismatch` says which node differs, where and by how much. A neuron
read out by its membrane (``output: membrane``) is stepped the same way and its membrane compared,
bit for bit, with the membrane the model returned.
Recorded values are checked too: spikes 0 or 1, events whole numbers in 0..255.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WorkloadError
from ..neurons import neuron_model, run_recurrent
from ..workload.nodes import Node, reads_membrane

#: the recorded recurrent current and its module applied again to the delayed spikes agree to
#: float32 rounding (a matrix product's summation order may differ between the two calls)
RECURRENT_TOLERANCE = 1e-5


def binary(name: str, a: np.ndarray) -> np.ndarray:
    """Recorded spikes as bool; anything but 0 and 1 is refused (graded or surrogate outputs)."""
    bad = (a != 0) & (a != 1)
    if np.any(bad):
        raise WorkloadError(f"'{name}' gives values other than 0 and 1", key=name, expected="binary spikes",
                            found=f"e.g. {float(a[bad].reshape(-1)[0]):g}",
                            suggestion="graded or surrogate (non-spiking) outputs are not spikes")
    return a.astype(bool)


def counts(name: str, a: np.ndarray) -> np.ndarray:
    """Recorded sums of spikes as uint8 counts; fractions, negatives or more than 255 are refused."""
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)) or np.any(a < 0):
        bad = a[~np.isfinite(a) | (a != np.round(a)) | (a < 0)]
        raise WorkloadError(f"'{name}' should give counts of spikes", key=name, expected="whole numbers >= 0",
                            found=f"e.g. {float(bad.reshape(-1)[0]):g}")
    if a.size and a.max() > 255:
        raise WorkloadError(f"'{name}' counts more than 255 spikes at one neuron and step", key=name,
                            expected="events up to 255 (stored as uint8)", found=f"{int(a.max())}",
                            suggestion="a sum of that many spike maps is not an event stream: put a neuron after it")
    return a.astype(np.uint8)


def self_check(nodes: list[Node], spikes: dict[str, np.ndarray], currents: dict[str, np.ndarray],
               recurrent: dict[str, tuple[np.ndarray, Any]],
               membranes: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, Any]]:
    """Per neuron node (``nodes`` with array parameters resolved): neurons, spike trains and bits
    that differ between the recorded spikes (samples, T, ...) and the model stepped from the
    recorded currents; ``recurrent`` holds (recorded recurrent current, the torch module). A
    readout (``output: membrane``) with its membrane in ``membranes`` (samples, T, ...) as the
    framework returned it: the values its model's membrane differs from (bit for bit, float32)."""
    result: dict[str, dict[str, Any]] = {}
    for n in nodes:
        if n.op != "neuron" or n.name not in currents:
            continue
        params = {k: v for k, v in n.params.items() if k not in ("model", "output")}
        model = neuron_model(n.params["model"], params, key=f"nodes.{n.name}")
        if reads_membrane(n):
            if membranes is not None and n.name in membranes:
                result[n.name] = _membrane_check(model, currents[n.name], membranes[n.name])
            continue
        cur = np.moveaxis(currents[n.name], 1, 0)  # (T, samples, ...)
        entry: dict[str, Any] = {}
        rec_fn = None
        if n.name in recurrent:
            rec, module = recurrent[n.name]
            rec_t = np.moveaxis(rec, 1, 0)
            diff = _recurrent_check(module, rec_t, np.moveaxis(spikes[n.name], 1, 0))
            entry["recurrent_max_abs_diff"] = diff
            entry["recurrent_wired"] = bool(diff <= RECURRENT_TOLERANCE * (1.0 + float(np.abs(rec_t).max(initial=0))))
            step = iter(range(rec_t.shape[0]))

            def rec_fn(_prev: np.ndarray, rec_t: np.ndarray = rec_t, step: Any = step) -> np.ndarray:
                return rec_t[next(step)]
        got, _ = run_recurrent(model, cur, rec_fn)
        want = np.moveaxis(spikes[n.name], 1, 0)
        diff = got != want
        per_neuron = diff.reshape(diff.shape[0], diff.shape[1], -1)
        trains = per_neuron.any(axis=0)
        entry.update(neurons=int(trains.size), trains_differing=int(np.count_nonzero(trains)),
                     bits_differing=int(np.count_nonzero(diff)))
        if entry["trains_differing"]:
            t, s, k = (int(v[0]) for v in np.nonzero(per_neuron))
            entry["first"] = {"sample": s, "step": t, "neuron": k, "recorded": bool(want.reshape(
                want.shape[0], want.shape[1], -1)[t, s, k]), "current": float(cur.reshape(cur.shape[0], cur.shape[1],
                                                                                          -1)[t, s, k])}
        result[n.name] = entry
    return result


def _membrane_check(model: Any, current: np.ndarray, membrane: np.ndarray) -> dict[str, Any]:
    """The model stepped on the recorded current (samples, T, ...) against the membrane the
    framework returned: counts of values that differ (its own dtype, exactly) and the largest
    difference."""
    _, states = run_recurrent(model, np.moveaxis(current, 1, 0), None)
    got = states["mem"] if "mem" in states else states["v"]
    want = np.moveaxis(membrane, 1, 0).astype(got.dtype)
    diff = got != want
    entry: dict[str, Any] = {"readout": "membrane", "values": int(diff.size),
                             "values_differing": int(np.count_nonzero(diff)),
                             "max_abs_diff": float(np.abs(got - want).max(initial=0.0))}
    if entry["values_differing"]:
        t, s, k = (int(v[0]) for v in np.nonzero(diff.reshape(diff.shape[0], diff.shape[1], -1)))
        entry["first"] = {"sample": s, "step": t, "neuron": k}
    return entry


def _recurrent_check(module: Any, rec: np.ndarray, spikes: np.ndarray) -> float:
    """Largest |recorded recurrent current - module(spikes one step earlier)|: 0 when the delay
    reads what the framework read."""
    import torch

    prev = np.concatenate([np.zeros_like(spikes[:1]), spikes[:-1]]).astype(np.float32)
    with torch.no_grad():
        want = np.stack([module(torch.from_numpy(p)).numpy() for p in prev])
    return float(np.max(np.abs(want - rec))) if rec.size else 0.0


def raise_on_mismatch(check: dict[str, dict[str, Any]], sources: dict[str, str]) -> None:
    """WorkloadError for the first neuron whose recorded spikes its model does not reproduce."""
    for name, c in check.items():
        if c.get("values_differing"):
            first = c.get("first", {})
            raise WorkloadError(
                f"neuron '{name}' ({sources.get(name, '?')}), read out by its membrane: the membrane it returned "
                "differs from its model stepped on the recorded currents", key=name,
                expected="the same membrane, bit for bit (the model is the framework's exact order)",
                found=f"{c['values_differing']} of {c['values']} values differ (by up to {c['max_abs_diff']:g})"
                + (f", first at sample {first['sample']} step {first['step']} neuron {first['neuron']}" if first else ""),
                suggestion="the module's dynamics are not those of the model it was mapped to; pass "
                "on_mismatch='warn' to write the trace anyway")
        if c.get("trains_differing") or not c.get("recurrent_wired", True):
            first = c.get("first", {})
            raise WorkloadError(
                f"neuron '{name}' ({sources.get(name, '?')}): the recorded spikes differ from its model stepped on the "
                "recorded currents", key=name, expected="the same spikes (the model is the framework's exact order)",
                found=f"{c.get('trains_differing', 0)} of {c['neurons']} spike trains differ"
                + (f", first at sample {first['sample']} step {first['step']} neuron {first['neuron']}" if first else "")
                + (f"; recurrent current off by {c['recurrent_max_abs_diff']:g}" if not c.get("recurrent_wired", True)
                   else ""),
                suggestion="the module's dynamics are not those of the model it was mapped to: give it "
                "snnsim_neuron() with the right model, or pass on_mismatch='warn' to write the trace anyway")


#: the currents the v2 graph computes from the recorded activity agree with torch's to this
#: fraction of their largest magnitude (float32 summation order differs, nothing else may)
GRAPH_RTOL = 1e-4


def graph_check(nodes: list[Node], arrays: dict[str, np.ndarray], x: np.ndarray, time_steps: int,
                recorded: dict[str, np.ndarray], currents: dict[str, np.ndarray],
                recurrent: dict[str, np.ndarray]) -> dict[str, float]:
    """The current into every neuron as the v2 graph computes it (:func:`snnsim.workload.forward.evaluate`,
    every recorded node forced to its recorded value) against the current torch gave: node ->
    largest difference relative to the current's largest magnitude. Raises WorkloadError beyond
    :data:`GRAPH_RTOL` (a node or array that does not compute what the model computed)."""
    from ..workload.forward import evaluate

    want: dict[str, np.ndarray] = {}
    for n in nodes:
        if n.op == "neuron" and n.name in currents:
            want[n.inputs[0]] = currents[n.name]
            if len(n.inputs) > 1 and n.name in recurrent:
                want[n.inputs[1]] = recurrent[n.name]
    got = evaluate(nodes, x, time_steps, arrays=arrays, sources=recorded, keep=list(want))
    out: dict[str, float] = {}
    for name, w in want.items():
        g = np.asarray(got[name], np.float64).reshape(w.shape)
        scale = max(float(np.abs(w).max(initial=0.0)), 1e-30)
        out[name] = float(np.abs(g - w).max(initial=0.0)) / scale
        if out[name] > GRAPH_RTOL:
            raise WorkloadError(f"node '{name}' computes another current than the model", key=name,
                                expected=f"torch's current to {GRAPH_RTOL:g} of its magnitude",
                                found=f"off by {out[name]:.3g} of it",
                                suggestion="the export misread an op's parameters: please report the model")
    return out
