"""The reference forward pass of a format v2 graph: the value of every node at every step.

This is the specification of what a v2 trace means (:mod:`.nodes`, ``docs/workload-format.md``,
"Format v2"), written to be read, not to be fast: plain NumPy, vectorised over samples, looping
over time steps and nodes only. Semantics are PyTorch's, channels first:

- ``conv1d``/``conv2d``/``conv3d``: cross-correlation with ``stride``, zero ``padding``,
  (a conv2d with ``pixel_curve`` is the P2M in-pixel layer: window sums of the pixel transfer
  curve, :func:`snnsim.hw.pixel_curve.p2m_conv2d`),
  ``dilation`` and ``groups``; weights ``weights/<node>`` (C_out, C_in / groups, *kernel), plus
  ``bias/<node>`` (C_out,) per output channel when ``bias`` is true. ``linear``: ``x @ W.T (+ b)``
  with W (out, in).
- ``bias``: ``x + b`` per channel; ``affine``: ``scale x + shift`` per channel (a folded batch
  norm); ``scale``: ``scale x`` per channel (a flat shape has one channel per value).
- ``maxpool``/``avgpool``/``sumpool``: windows of ``kernel`` with ``stride`` (default: the kernel)
  and ``padding``; avgpool divides by the whole kernel size (``count_include_pad=True``, zero
  padding), maxpool pads a current with -inf (spikes and events, never negative, with 0).
- ``add``: the sum of the inputs; ``iand``: ``(1 - a) b`` (SpikingJelly's SEW IAND: b and not a).
- ``flatten`` (channels-first order), ``reshape``.
- ``delay``: its input's value at the previous step, zero at step 0. Delays are the only edges a
  cycle may use, so every step is evaluated in dependency order with the delay edges cut
  (:func:`snnsim.workload.nodes.dependency_order`).
- ``neuron``: the model of :mod:`snnsim.neurons` stepped in its own dtype (float32 for the
  frameworks' models, float64 for ``snnsim.if`` and NIR's), the current cast to that dtype; a
  recurrent model's second input is given to its ``step`` as ``rec``.

Values: spikes are bool, events int64 (counts), currents and the analog input float64. Currents
are computed in float64 from the float32 parameters; a framework model then rounds them to
float32, which is where a recomputation can differ from the framework's own float32 forward pass
on an exact near-tie (:mod:`snnsim.verify_graph` bounds that).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import fields, replace
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import WorkloadError, did_you_mean
from ..neurons import is_spiking, neuron_model
from .nodes import (
    POOLS,
    WEIGHTED,
    Node,
    check_nodes,
    dependency_order,
    reads_membrane,
    spatial_params,
)

#: The NumPy dtype of each kind of value as :func:`evaluate` returns it.
DTYPES: dict[str, Any] = {"analog": np.float64, "current": np.float64, "spikes": np.bool_, "events": np.int64}

#: A threshold no membrane reaches (finite: 0 * inf would be NaN in a reset ``v - thr * spike``).
_NEVER = float(np.finfo(np.float32).max)


# ----------------------------------------------------------------------------- parameters

def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) array shaped to broadcast over (samples, C, *spatial) of ``ndim`` axes."""
    return v.reshape((-1,) + (1,) * (ndim - 2))


def _array(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], node: Node) -> np.ndarray:
    """``arrays[name]`` as float64, checked against ``shape`` (WorkloadError naming the array)."""
    if name not in arrays:
        raise WorkloadError(f"{node.op} node '{node.name}' needs the array {name}", key=name,
                            expected=f"a float array {list(shape)}", found="no such array",
                            suggestion=did_you_mean(name, arrays))
    a = np.asarray(arrays[name])
    if a.dtype.kind not in "iuf" or tuple(a.shape) != shape:
        raise WorkloadError("array has the wrong shape or dtype", key=name, expected=f"a float array {list(shape)}",
                            found=f"{a.dtype} {list(a.shape)}")
    return a.astype(np.float64)


def op_arrays(node: Node, in_shape: tuple[int, ...], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The parameter arrays ``node`` computes with, by role (``weights``, ``bias``, ``scale``,
    ``shift``), float64 and checked; a missing one raises WorkloadError naming it."""
    name, op = node.name, node.op
    c = node.out_shape[0]
    out: dict[str, np.ndarray] = {}
    if op in WEIGHTED:
        if op == "linear":
            shape = (c, in_shape[0])
        else:
            rank = WEIGHTED[op]
            kernel = spatial_params(node, rank)[0]
            shape = (c, in_shape[0] // node.params.get("groups", 1), *kernel)
        out["weights"] = _array(arrays, f"weights/{name}", shape, node)
        if node.params.get("bias"):
            out["bias"] = _array(arrays, f"bias/{name}", (c,), node)
    elif op == "bias":
        out["bias"] = _array(arrays, f"bias/{name}", (c,), node)
    elif op in ("affine", "scale"):
        out["scale"] = _array(arrays, f"scale/{name}", (c,), node)
        if op == "affine":
            out["shift"] = _array(arrays, f"shift/{name}", (c,), node)
    return out


# ----------------------------------------------------------------------------- ops

def windows(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
            dilation: tuple[int, ...], fill: float = 0) -> np.ndarray:
    """The (samples, C, *out, *kernel) windows of x (samples, C, *spatial), ``padding`` filled with
    ``fill``; a view where no padding is needed."""
    rank = len(kernel)
    if any(padding):
        x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding], constant_values=fill)
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    win = sliding_window_view(x, span, axis=tuple(range(2, 2 + rank)))
    return win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)
               + tuple(slice(None, None, d) for d in dilation)]


def conv(x: np.ndarray, w: np.ndarray, stride: tuple[int, ...], padding: tuple[int, ...],
         dilation: tuple[int, ...], groups: int) -> np.ndarray:
    """PyTorch's grouped N-d convolution (a cross-correlation), zero padding, in float64:
    x (samples, C_in, *spatial), w (C_out, C_in / groups, *kernel) -> (samples, C_out, *out)."""
    rank = w.ndim - 2
    win = windows(x.astype(np.float64), tuple(w.shape[2:]), stride, padding, dilation)
    c_in, c_out = w.shape[1], w.shape[0] // groups  # per group
    summed = [1] + list(range(2 + rank, 2 + 2 * rank))  # the group's input channels and the kernel
    parts = [np.tensordot(win[:, g * c_in:(g + 1) * c_in], w[g * c_out:(g + 1) * c_out],
                          axes=(summed, [1] + list(range(2, 2 + rank))))  # (samples, *out, c_out)
             for g in range(groups)]
    return np.moveaxis(np.concatenate(parts, axis=-1), -1, 1)


def pool(op: str, x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
         dilation: tuple[int, ...]) -> np.ndarray:
    """max, average (over the whole kernel, padding counted as zeros) or sum of each window."""
    rank = len(kernel)
    axes = tuple(range(-rank, 0))
    if op == "maxpool":
        fill = -np.inf if x.dtype.kind == "f" else 0  # spikes and events are >= 0: 0 pads as -inf would
        return windows(x, kernel, stride, padding, dilation, fill).max(axis=axes)
    total = windows(x, kernel, stride, padding, dilation).sum(axis=axes)
    return total / math.prod(kernel) if op == "avgpool" else total


def apply_op(node: Node, xs: list[np.ndarray], p: dict[str, np.ndarray]) -> np.ndarray:
    """The value of a current op (not a delay or neuron) at one step: ``xs`` its inputs' values
    (samples, *shape), ``p`` its arrays (:func:`op_arrays`); the result in ``DTYPES[node.kind]``."""
    op = node.op
    discrete = node.kind in ("spikes", "events")
    xs = [np.asarray(x, np.int64 if discrete else np.float64) for x in xs]
    x = xs[0]
    if op in WEIGHTED:
        if op == "linear":
            y = x @ p["weights"].T
        elif node.params.get("pixel_curve"):  # the in-pixel layer: window sums of the transfer curve
            from ..hw.pixel_curve import p2m_conv2d

            _, stride, _padding, _dilation = spatial_params(node, 2)
            if len(set(stride)) != 1:
                raise WorkloadError("the pixel transfer curve is modelled for equal strides only",
                                    key=f"nodes.{node.name}.stride", expected="one stride", found=str(list(stride)))
            y = p2m_conv2d(x, p["weights"], int(stride[0])).astype(np.float64)
        else:
            _, stride, padding, dilation = spatial_params(node, WEIGHTED[op])
            y = conv(x, p["weights"], stride, padding, dilation, node.params.get("groups", 1))
        if "bias" in p:
            y = y + _per_channel(p["bias"], y.ndim)
    elif op == "bias":
        y = x + _per_channel(p["bias"], x.ndim)
    elif op == "affine":
        y = x * _per_channel(p["scale"], x.ndim) + _per_channel(p["shift"], x.ndim)
    elif op == "scale":
        y = x * _per_channel(p["scale"], x.ndim)
    elif op in POOLS:
        kernel, stride, padding, dilation = spatial_params(node, x.ndim - 2)
        y = pool(op, x, kernel, stride, padding, dilation)
    elif op == "add":
        y = sum(xs[1:], xs[0])
    elif op == "iand":
        y = (1 - xs[0]) * xs[1]
    elif op == "flatten":
        y = x.reshape(x.shape[0], -1)
    elif op == "reshape":
        y = x.reshape(x.shape[0], *node.out_shape)
    else:  # pragma: no cover - delays and neurons are stepped by evaluate
        raise ValueError(op)
    return y.astype(DTYPES[node.kind])


# ----------------------------------------------------------------------------- neurons

def neuron_of(node: Node) -> Any:
    """The :mod:`snnsim.neurons` model of a (checked) neuron node. A parameter array is per
    channel (C,) or broadcasts to the node's out shape (per neuron, or (C, 1, 1) per channel):
    a (C,) array of a node with spatial axes is shaped (C, 1, ...) so it broadcasts over the
    positions, not over the last axis; any other shape raises WorkloadError naming it."""
    params = {}
    shape = node.out_shape
    for k, v in node.params.items():
        if k in ("model", "output"):
            continue
        if isinstance(v, np.ndarray) and v.ndim:
            if v.ndim == 1 and len(shape) > 1 and v.shape[0] == shape[0]:
                v = v.reshape((-1,) + (1,) * (len(shape) - 1))
            try:
                ok = np.broadcast_shapes(v.shape, shape) == tuple(shape)
            except ValueError:
                ok = False
            if not ok:
                raise WorkloadError("a neuron parameter array does not fit the neurons", key=f"nodes.{node.name}.{k}",
                                    expected=f"per channel ({shape[0]},) or broadcasting to {list(shape)}",
                                    found=str(list(v.shape)))
        params[k] = v
    return neuron_model(node.params.get("model"), params, key=f"nodes.{node.name}")


def model_dtype(model: Any) -> Any:
    """The dtype a model computes in: float32 (the frameworks) or float64 (snnsim.if, NIR)."""
    return getattr(model, "dtype", np.float32)


def membrane(state: dict[str, np.ndarray]) -> np.ndarray:
    """The membrane of a model's state (``mem`` in snnTorch's models, ``v`` in the others)."""
    return state["mem"] if "mem" in state else state["v"]


def threshold_of(model: Any) -> np.ndarray | None:
    """The threshold a model compares its membrane with (None: a readout without one)."""
    for name in ("threshold", "v_threshold"):
        if hasattr(model, name):
            return np.asarray(getattr(model, name), np.float64)
    return None


def decision_model(model: Any) -> Any | None:
    """A copy of ``model`` whose state after a step is the membrane the original compares with
    its threshold at that step (before the spike's own reset), from the same state: snnTorch's
    models with ``reset_delay`` (the reset of this step's spike waits for the next step); the
    others with a threshold never reached (they charge, then neither fire nor reset). None for a
    model without a threshold."""
    names = {f.name for f in fields(model)}
    if "reset_delay" in names:
        return replace(model, reset_delay=True)
    for name in ("threshold", "v_threshold"):
        if name in names:
            return replace(model, **{name: model_dtype(model)(_NEVER)})
    return None


def magnitude_model(model: Any) -> Any:
    """A copy of ``model`` that integrates magnitudes and never resets: stepped on sum |w x|, its
    membrane is the magnitude of everything summed into the original's membrane, decayed as the
    original decays it (the scale of float rounding in :mod:`snnsim.verify_graph`)."""
    dt = model_dtype(model)
    names = {f.name for f in fields(model)}
    if "reset_delay" in names:
        return replace(model, reset="none", reset_delay=True)
    changes: dict[str, Any] = {}
    for name in names:
        v = getattr(model, name)
        if name in ("threshold", "v_threshold"):
            changes[name] = dt(_NEVER)
        elif name == "v_reset" and v is not None:
            changes[name] = 0.0
        elif name in ("r", "w_in", "v_leak") and v is not None:
            changes[name] = np.abs(v)
    return replace(model, **changes)


class NeuronStepper:
    """One neuron node's model and its state over a run, stepped once per time step on the
    samples at once (state shape (samples, *out_shape))."""

    def __init__(self, model: Any, shape: tuple[int, ...], readout: bool = False) -> None:
        self.model = model
        self.readout = readout
        self.dtype = model_dtype(model)
        self.state = model.state(shape)

    @classmethod
    def of(cls, node: Node, samples: int) -> NeuronStepper:
        return cls(neuron_of(node), (samples, *node.out_shape), reads_membrane(node))

    def _step(self, model: Any, x: np.ndarray, rec: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = np.asarray(x, self.dtype)
        if rec is None:
            return model.step(self.state, x)
        return model.step(self.state, x, rec=np.asarray(rec, self.dtype))

    def step(self, x: np.ndarray, rec: np.ndarray | None = None) -> np.ndarray:
        """Advance one step: the spikes (bool), or for a readout its membrane (float64)."""
        out, self.state = self._step(self.model, x, rec)
        if self.readout:
            return np.asarray(out if not is_spiking(self.model) else membrane(self.state), np.float64)
        return out > 0

    def decision(self, x: np.ndarray, rec: np.ndarray | None = None) -> np.ndarray | None:
        """The membrane the next :meth:`step` on the same current compares with the threshold
        (float64; the state is not advanced), or None for a model without a threshold."""
        probe = decision_model(self.model)
        if probe is None:
            return None
        return np.asarray(membrane(self._step(probe, x, rec)[1]), np.float64)


# ----------------------------------------------------------------------------- the graph

def _checked_graph(nodes: list[Node], arrays: dict[str, np.ndarray], input_shape: tuple[int, ...]) -> list[Node]:
    """Copies of the nodes with ``{"array": NAME}`` parameters resolved and shapes and kinds filled
    in (:func:`check_nodes`; the nodes given are not changed)."""
    from .graphtrace import resolved_nodes

    graph = resolved_nodes(nodes, arrays, "<memory>")
    check_nodes(graph, input_shape)
    return graph


def _needed(by_name: dict[str, Node], keep: list[str], forced: set[str]) -> set[str]:
    """The nodes whose values ``keep`` depends on; a forced node depends on nothing."""
    need: set[str] = set()
    todo = [k for k in keep if k != "input"]
    while todo:
        name = todo.pop()
        if name in need:
            continue
        need.add(name)
        if name not in forced:
            todo += [i for i in by_name[name].inputs if i != "input"]
    return need


def _checked_sources(sources: dict[str, np.ndarray], by_name: dict[str, Node], samples: int,
                     steps: int) -> dict[str, np.ndarray]:
    out = {}
    for name, v in sources.items():
        if name not in by_name:
            raise WorkloadError("a forced value names no node", key=f"sources.{name}", expected="a node name",
                                found=name, suggestion=did_you_mean(name, by_name))
        n = by_name[name]
        v = np.asarray(v)
        want = (samples, steps, *n.out_shape)
        if tuple(v.shape) != want:
            raise WorkloadError("a forced value has the wrong shape", key=f"sources.{name}",
                                expected=f"(samples, T, *out_shape) = {list(want)}", found=str(list(v.shape)))
        out[name] = v.astype(DTYPES[n.kind])
    return out


def evaluate(nodes: list[Node], inputs: np.ndarray, time_steps: int, *, arrays: dict[str, np.ndarray],
             sources: dict[str, np.ndarray] | None = None,
             keep: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Run the graph ``nodes`` on ``inputs`` (samples, *input_shape), the analog input applied
    unchanged at every one of ``time_steps`` steps (direct encoding).

    ``arrays``: the parameter arrays (``weights/``, ``bias/``, ``scale/``, ``shift/``, and
    ``params/`` for parameters still given as ``{"array": NAME}``). ``sources``: node name ->
    (samples, T, *out_shape) values that replace what the node would compute (teacher forcing:
    nothing upstream of a forced node is computed). ``keep``: the nodes (or ``input``) to return
    (default: every node). Returns name -> (samples, T, *out_shape) in :data:`DTYPES` of the
    node's kind. Only what ``keep`` depends on is computed; ops that depend on the analog input
    alone are computed once."""
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim < 2 or not np.isfinite(x).all():
        raise WorkloadError("invalid input", key="input", expected="finite values (samples, *input shape)",
                            found=f"shape {list(x.shape)}")
    if not isinstance(time_steps, int) or isinstance(time_steps, bool) or time_steps < 1:
        raise WorkloadError("time_steps must be a positive integer", key="time_steps", expected="an integer >= 1",
                            found=repr(time_steps))
    samples, steps = x.shape[0], time_steps
    graph = _checked_graph(nodes, arrays, tuple(x.shape[1:]))
    by_name = {n.name: n for n in graph}
    forced = _checked_sources(dict(sources or {}), by_name, samples, steps)
    keep = list(by_name) if keep is None else list(keep)
    for k in keep:
        if k != "input" and k not in by_name:
            raise WorkloadError("keep names no node", key=f"keep.{k}", expected="a node name or 'input'", found=k,
                                suggestion=did_you_mean(k, by_name))
    need = _needed(by_name, keep, set(forced))
    order = [name for name in dependency_order(graph) if name in need]
    shape_of = {"input": tuple(x.shape[1:]), **{n.name: n.out_shape for n in graph}}
    params = {name: op_arrays(by_name[name], shape_of[by_name[name].inputs[0]], arrays)
              for name in order if name not in forced and by_name[name].op not in ("delay", "neuron")}
    static: set[str] = set()  # ops of the analog input alone: the same at every step
    for name in order:
        n = by_name[name]
        if name not in forced and n.op not in ("delay", "neuron") and all(
                i == "input" or i in static for i in n.inputs):
            static.add(name)
    steppers = {name: NeuronStepper.of(by_name[name], samples) for name in order
                if by_name[name].op == "neuron" and name not in forced}
    kinds = {"input": "analog", **{n.name: n.kind for n in graph}}
    out = {k: np.empty((samples, steps, *shape_of[k]), DTYPES[kinds[k]]) for k in keep}
    before: dict[str, np.ndarray] = {}
    for t in range(steps):
        now: dict[str, np.ndarray] = {"input": x}
        for name in order:
            n = by_name[name]
            if name in forced:
                now[name] = forced[name][:, t]
            elif name in static and t:
                now[name] = before[name]
            elif n.op == "delay":
                now[name] = before[n.inputs[0]] if t else np.zeros((samples, *n.out_shape), DTYPES[n.kind])
            elif n.op == "neuron":
                now[name] = steppers[name].step(*(now[i] for i in n.inputs))
            else:
                now[name] = apply_op(n, [now[i] for i in n.inputs], params[name])
        for k in keep:
            out[k][:, t] = now[k]
        before = now
    return out


# ----------------------------------------------------------------------------- traces

def recorded_values(gt: Any) -> dict[str, np.ndarray]:
    """The recorded activity of a :class:`~.graphtrace.GraphTrace` by node name, (samples, T,
    *out_shape): spikes unpacked to bool, events as int64."""
    by_name = {n.name: n for n in _checked_graph(gt.nodes, gt.arrays, gt.input_shape)}
    out = {}
    for key, a in gt.recorded.items():
        prefix, name = key.split("/", 1)
        n = by_name[name]
        s, t = a.shape[:2]
        if prefix == "spikes":
            out[name] = np.unpackbits(a, axis=-1, count=n.size).reshape(s, t, *n.out_shape).astype(bool)
        else:
            out[name] = np.asarray(a, np.int64).reshape(s, t, *n.out_shape)
    return out


def delayed(values: np.ndarray) -> np.ndarray:
    """(samples, T, ...) values one step late: what a delay node reading them gives."""
    out = np.zeros_like(values)
    out[:, 1:] = values[:, :-1]
    return out


def teacher_forcing(gt: Any) -> dict[str, np.ndarray]:
    """The recorded values of every recorded node, and of every delay reading one, as
    :func:`evaluate`'s ``sources``."""
    rec = recorded_values(gt)
    forced = dict(rec)
    for n in gt.nodes:
        if n.op == "delay" and n.inputs[0] in rec:
            forced[n.name] = delayed(rec[n.inputs[0]])
    return forced


def evaluate_trace(gt: Any, *, teacher_forcing: bool = False,
                   keep: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """:func:`evaluate` of a :class:`~.graphtrace.GraphTrace` on its own input, steps and arrays.
    ``teacher_forcing``: every node reads the *recorded* values of the recorded nodes (and delays
    of them) instead of their recomputed ones; a recorded node's own value is then its recorded
    one, so keep the nodes that feed it to see what it is recomputed from."""
    forced = _teacher_forcing(gt) if teacher_forcing else None
    return evaluate(gt.nodes, gt.input, gt.time_steps, arrays=gt.arrays, sources=forced, keep=keep)


_teacher_forcing = teacher_forcing  # evaluate_trace's keyword shadows the function's name
