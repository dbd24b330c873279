"""Export a PyTorch, snnTorch or SpikingJelly spiking network as a spike trace (format v1).

:func:`from_torch` runs the model for ``time_steps`` steps with direct encoding (the same analog
input at every step, neuron states reset first), records the output spikes of every spiking
module through forward hooks, and turns the model into the layer graph of format v1
(``docs/workload-format.md``):

- a ``Conv2d``/``Conv3d``/``Linear`` followed by a spiking module is one layer with a neuron;
  a ``BatchNorm`` between them is folded into the layer (below);
- ``MaxPool2d``/``AvgPool2d``/``AdaptiveAvgPool2d``/``Flatten`` of spikes are pool/flatten
  layers (a max of spikes is their OR; an average needs its own neuron);
- a functional ``+`` of two spike tensors followed by a spiking module is an ``add`` layer with
  a neuron (SEW-ResNet style);
- a ``Linear``/``Conv`` without a neuron at the end is the non-spiking output layer.

The edges come from ``torch.fx`` symbolic tracing with the spiking modules as leaf modules; a
model that fx cannot trace is accepted when it is an ``nn.Sequential`` (its modules in call
order).

Neurons (format v1: ``v = (1 - leak) v + I``; spike when ``v >= threshold``; then ``v -= threshold``
or ``v = 0``; membranes start at 0):

- snnTorch ``Leaky``: LIF with ``leak = 1 - beta`` (IF when beta = 1), the threshold,
  ``reset_mechanism`` subtract or zero. snnTorch fires on ``mem > threshold`` and format v1 on
  ``v >= threshold``: the stored threshold is the next float32 above snnTorch's, which is the same
  test for float32 membranes (and keeps exact ties, common when currents are sums of spikes,
  as snnTorch decides them). With the default ``reset_delay=True``, snnTorch
  subtracts the threshold at the next step *after* the decay (``U = beta U + I - S thr``), while
  format v1 subtracts it before (``v = beta (v - S thr) + I``): exact for beta = 1 or for reset to
  zero, otherwise not (the export warns, and its self-check counts the spikes that differ).
- snnTorch ``Synaptic`` with ``alpha = 0`` (no synaptic-current state) as ``Leaky``; with
  alpha > 0 it is a second-order neuron that format v1 cannot describe (an error).
- SpikingJelly ``IFNode`` and ``LIFNode`` (single-step ``'s'`` or multi-step ``'m'``):
  ``v_reset=None`` is subtract, ``v_reset=0.0`` zero (another reset voltage is an error). LIF:
  ``H = V + (X - V) / tau`` with ``decay_input=True`` is ``leak = 1/tau`` with the input scaled by
  ``1/tau``, which the export folds into the threshold (``threshold * tau``); with
  ``decay_input=False`` (``H = V - V / tau + X``) the input is not scaled.
- Other modules named by ``spiking=(...)`` (classes, or callables ``module -> bool``): the
  parameters are read from the attributes ``threshold`` (or ``v_threshold``; default 1.0),
  ``leak`` (or ``beta``, leak = 1 - beta; default 0) and ``reset_mechanism`` (or ``reset_mode``;
  ``"subtract"`` or ``"zero"``, default subtract), and the state is reset with ``reset()``,
  ``reset_state()`` or ``reset_mem()`` when the module has one.

Weights are stored as float32. Format v1 has no bias: a bias, or a batch norm's shift, adds a
constant current every step, which accumulates in the membrane and so cannot be folded into a
threshold over more than one step; it is an error when it is not zero (zero meaning within float32 rounding of its terms,
``SHIFT_RTOL``; with ``time_steps=1`` it is folded exactly: ``theta' = (theta - d) / a``). A batch norm's scale ``a = gamma / sigma``
per channel is folded exactly: into a per-channel threshold ``theta / a`` (gamma > 0), with the
channel's weights negated when gamma < 0. The output layer's bias is not stored (it is not
recorded, so no spike depends on it; the provenance says so).

After recording, the export replays every neuron layer in float64 with the format's own
dynamics from the *recorded* inputs and the stored weights and thresholds, and counts the spike
trains that differ: those whose first difference lies within float32 rounding of the threshold
(``RTOL``) and those beyond it. The counts are in ``provenance.export.self_check``; spike trains
beyond the tolerance give a warning.
"""

from __future__ import annotations

import copy
import math
import operator
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SnnsimError, UsageError, WorkloadError, did_you_mean
from ..workload.graph import Layer, Neuron, check_graph, infer_out_shape
from ..workload.trace import Workload, _check_arrays, binary_form, pack_spikes, save_workload

#: relative tolerance of the self-check: a spike train whose first difference from the float64
#: replay has |v - theta| <= RTOL * (theta + sum of |terms| integrated so far) is float rounding.
RTOL = 1e-5
#: a bias/batch-norm shift d is zero when |d| <= SHIFT_RTOL x (the sum of its terms' magnitudes).
SHIFT_RTOL = 1e-6

SUPPORTED = ("Conv2d, Conv3d, Linear (then a spiking module, or none for the output layer), "
             "BatchNorm1d/2d/3d right after a Conv/Linear, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and "
             "Flatten of spikes, '+' of two spike tensors then a spiking module, Dropout/Identity; "
             "neurons: snntorch.Leaky, snntorch.Synaptic (alpha = 0), spikingjelly IFNode/LIFNode, "
             "and modules named in spiking=(...)")


# ----------------------------------------------------------------------------- helpers

def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError("exporting a PyTorch model needs PyTorch", expected="the torch package",
                         found="no module named 'torch'", suggestion='pip install "snnsim[torch]"') from None
    return torch


def _describe(m: Any) -> str:
    t = type(m)
    return f"{t.__module__}.{t.__qualname__}"


def _unsupported(where: str, what: str, found: str, suggestion: str | None = None) -> WorkloadError:
    return WorkloadError(what, key=where, expected=f"supported: {SUPPORTED}", found=found, suggestion=suggestion)


def _pair(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    t = tuple(int(i) for i in v)
    return t * n if len(t) == 1 else t


@dataclass
class _Spec:
    """A spiking module as a format-v1 neuron."""

    source: str
    model: str
    leak: float
    reset: str
    threshold: Any  # float or array broadcastable to the per-sample shape at the neuron
    gain: float = 1.0  # the module integrates gain * X
    exact: bool = True
    note: str = ""
    inexact: str = ""  # why format v1's dynamics differ from the module's (when not exact)
    strict: bool = False  # fires on v > threshold (snnTorch) rather than v >= threshold


@dataclass
class _Op:
    """One operation of the model's graph (fx node, or module of an nn.Sequential)."""

    name: str
    kind: str
    args: list[int]
    module: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    in_shape: tuple[int, ...] | None = None
    where: str = ""
    users: int = 0


@dataclass
class _Val:
    kind: str  # analog | spikes | current | tuple | membrane | other
    shape: tuple[int, ...] = ()
    layer: str = ""
    absorbable: bool = False  # a structural maxpool/flatten that may take a following neuron
    inner: _Val | None = None


@dataclass
class _Info:
    """What the export knows about one layer beyond the Layer itself."""

    modules: list[str]
    weight: np.ndarray | None = None  # float64, the synaptic module's
    a: np.ndarray | None = None  # model current X = a * I + d, I = the layer's current
    d: np.ndarray | None = None
    d_mag: np.ndarray | None = None  # sum of the magnitudes of the terms of d (for float32 rounding)
    shift_from: list[str] = field(default_factory=list)  # modules that contribute d
    spec: _Spec | None = None
    neuron_module: str = ""
    neuron_shape: tuple[int, ...] = ()  # per-sample shape at the neuron
    flat_name: str = ""  # a flatten applied to the current before the neuron
    output: bool = False
    notes: list[str] = field(default_factory=list)


class _Recognizer:
    """Which modules are neurons, and what every supported module is."""

    def __init__(self, spiking: Any) -> None:
        torch = _torch()
        self.nn = torch.nn
        self.classes: list[type] = []
        self.tests: list[Callable[[Any], bool]] = []
        items = () if spiking is None else spiking
        if isinstance(items, type) or (callable(items) and not isinstance(items, (tuple, list))):
            items = (items,)
        if not isinstance(items, (tuple, list)):
            raise UsageError("spiking must be a class, a callable or a tuple of them", key="spiking",
                             expected="(MyNeuron,) or (lambda m: ...,)", found=repr(spiking))
        for it in items:
            if isinstance(it, type):
                self.classes.append(it)
            elif callable(it):
                self.tests.append(it)
            else:
                raise UsageError("spiking must hold module classes or callables", key="spiking",
                                 expected="a class or a callable module -> bool", found=repr(it))
        snn = sys.modules.get("snntorch")
        self.snn_base = getattr(snn, "SpikingNeuron", None) if snn else None
        self.snn_leaky = getattr(snn, "Leaky", None) if snn else None
        self.snn_synaptic = getattr(snn, "Synaptic", None) if snn else None
        sjn = sys.modules.get("spikingjelly.activation_based.neuron")
        sjl = sys.modules.get("spikingjelly.activation_based.layer")
        sjb = sys.modules.get("spikingjelly.activation_based.base")
        self.sj_nodes = tuple(c for c in (getattr(sjn, "BaseNode", None), getattr(sjn, "SimpleBaseNode", None))
                              if c is not None) if sjn else ()
        self.sj_if = tuple(c for c in (getattr(sjn, "IFNode", None), getattr(sjn, "SimpleIFNode", None)) if c) if sjn else ()
        self.sj_lif = tuple(c for c in (getattr(sjn, "LIFNode", None), getattr(sjn, "SimpleLIFNode", None)) if c) if sjn else ()
        self.sj_containers = tuple(c for c in (getattr(sjl, n, None) for n in
                                               ("SeqToANNContainer", "MultiStepContainer", "StepModeContainer"))
                                   if c is not None) if sjl else ()
        self.sj_dropout = tuple(c for c in (getattr(sjl, n, None) for n in ("Dropout", "Dropout2d")) if c) if sjl else ()
        self.sj_memory = getattr(sjb, "MemoryModule", None) if sjb else None

    def is_spiking(self, m: Any) -> bool:
        if self.classes and isinstance(m, tuple(self.classes)):
            return True
        if any(t(m) for t in self.tests):
            return True
        if self.snn_base is not None and isinstance(m, self.snn_base):
            return True
        return bool(self.sj_nodes) and isinstance(m, self.sj_nodes)

    def kind(self, m: Any) -> str | None:
        nn = self.nn
        if self.is_spiking(m):
            return "neuron"
        if self.sj_containers and isinstance(m, self.sj_containers):
            return "container"
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            return "conv"
        if isinstance(m, nn.Linear):
            return "linear"
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return "bn"
        if isinstance(m, nn.MaxPool2d):
            return "maxpool"
        if isinstance(m, nn.AvgPool2d):
            return "avgpool"
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return "adaptive_avgpool"
        if isinstance(m, nn.Flatten):
            return "reshape"
        if isinstance(m, (nn.Dropout, nn.Dropout2d, nn.Dropout3d, nn.Identity)) or (
                self.sj_dropout and isinstance(m, self.sj_dropout)):
            return "identity"
        if isinstance(m, nn.Sequential):
            return "container"
        return None

    def is_leaf(self, m: Any) -> bool:
        k = self.kind(m)
        return k is not None and not (k == "container" and not isinstance(m, self.sj_containers or ()))

    def is_stateful(self, m: Any) -> bool:
        return self.is_spiking(m) or (self.sj_memory is not None and isinstance(m, self.sj_memory))

    # -- neurons

    def spec(self, m: Any, name: str) -> _Spec:
        where = f"module '{name}' ({_describe(m)})"
        if self.snn_base is not None and isinstance(m, self.snn_base):
            return self._snntorch(m, name, where)
        if self.sj_nodes and isinstance(m, self.sj_nodes):
            return self._spikingjelly(m, name, where)
        return self._user(m, name, where)

    def _snntorch(self, m: Any, name: str, where: str) -> _Spec:
        t = type(m)
        if t is not self.snn_leaky and t is not self.snn_synaptic:
            raise _unsupported(name, f"unsupported snnTorch neuron {where}", t.__name__,
                               "use snntorch.Leaky (or Synaptic with alpha=0)")
        for attr, bad, what in (("inhibition", True, "inhibition"), ("state_quant", None, "state quantisation")):
            v = getattr(m, attr, False)
            if (v is True) if bad else (v not in (False, None)):
                raise _unsupported(name, f"{what} of {where} is not a format-v1 neuron", f"{attr}={v!r}")
        g = np.asarray(_np(m.graded_spikes_factor))
        if not np.all(g == 1.0):
            raise _unsupported(name, f"graded spikes of {where}: format v1 spikes are 0/1",
                               f"graded_spikes_factor={g.tolist()}", "use graded_spikes_factor=1.0")
        reset = m.reset_mechanism
        if reset not in ("subtract", "zero"):
            raise _unsupported(name, f"reset mechanism of {where} is not in format v1", repr(reset),
                               "use reset_mechanism='subtract' or 'zero'")
        beta = np.clip(np.asarray(_np(m.beta), dtype=np.float64), 0.0, 1.0)
        if beta.size == 0 or not np.all(beta == beta.reshape(-1)[0]):
            raise _unsupported(name, f"{where} has a different beta per neuron; format v1 has one leak per layer",
                               f"beta of shape {list(beta.shape)}")
        b = float(beta.reshape(-1)[0])
        kind = "Leaky"
        inexact: list[str] = []
        notes = ["snnTorch fires on mem > threshold, format v1 on v >= threshold: the stored threshold is the next "
                 "float32 above it, the same test for float32 membranes"]
        exact = True
        if t is self.snn_synaptic:
            kind = "Synaptic"
            alpha = np.clip(np.asarray(_np(m.alpha), dtype=np.float64), 0.0, 1.0)
            if np.any(alpha != 0.0):
                raise _unsupported(name, f"{where} has a synaptic-current state (alpha > 0): a second-order neuron "
                                   "that format v1 cannot describe", f"alpha={alpha.reshape(-1)[:4].tolist()}",
                                   "use snntorch.Leaky, or Synaptic with alpha=0")
            if reset == "zero":
                exact = False
                inexact.append("Synaptic's reset to zero also discards the next step's input; format v1 does not")
        delay = bool(getattr(m, "reset_delay", True))
        if reset == "subtract" and b < 1.0 and delay:
            exact = False
            inexact.append("snnTorch subtracts the threshold after the decay (U = beta U + I - S thr); format v1 "
                         "before it (v = beta (v - S thr) + I): not exact for beta < 1")
        if not delay:
            exact = False
            inexact.append("reset_delay=False resets within the step and re-tests a membrane still above threshold; "
                         "format v1 does not (differs only when a reset membrane stays above threshold)")
        return _Spec(source=f"snntorch.{kind}", model="IF" if b == 1.0 else "LIF", leak=1.0 - b, reset=reset,
                     threshold=np.asarray(_np(m.threshold), dtype=np.float64), exact=exact,
                     note="; ".join(notes + inexact), inexact="; ".join(inexact), strict=True)

    def _spikingjelly(self, m: Any, name: str, where: str) -> _Spec:
        if not ((self.sj_if and type(m) in self.sj_if) or (self.sj_lif and type(m) in self.sj_lif)):
            raise _unsupported(name, f"unsupported SpikingJelly neuron {where}", type(m).__name__,
                               "use spikingjelly IFNode or LIFNode")
        v_reset = m.v_reset
        if v_reset is None:
            reset = "subtract"
        elif float(v_reset) == 0.0:
            reset = "zero"
        else:
            raise _unsupported(name, f"{where} resets to {v_reset}; format v1 resets to 0 (v_reset=0.0) or by "
                               "subtraction (v_reset=None)", f"v_reset={v_reset}")
        thr = np.asarray(_np(m.v_threshold), dtype=np.float64)
        if type(m) in self.sj_if:
            return _Spec(source=f"spikingjelly.{type(m).__name__}", model="IF", leak=0.0, reset=reset, threshold=thr,
                         note="H = V + X; spike H >= v_threshold")
        tau = float(m.tau)
        if not tau > 1.0:
            raise _unsupported(name, f"{where} needs tau > 1", f"tau={tau}")
        if m.decay_input:
            return _Spec(source=f"spikingjelly.{type(m).__name__}", model="LIF", leak=1.0 / tau, reset=reset,
                         threshold=thr, gain=1.0 / tau,
                         note="decay_input=True: H = V + (X - V)/tau = (1 - 1/tau) V + X/tau; the input's 1/tau "
                         "is folded into the threshold (v_threshold * tau)")
        return _Spec(source=f"spikingjelly.{type(m).__name__}", model="LIF", leak=1.0 / tau, reset=reset,
                     threshold=thr, note="decay_input=False: H = V - V/tau + X = (1 - 1/tau) V + X")

    def _user(self, m: Any, name: str, where: str) -> _Spec:
        def first(*names: str) -> Any:
            for n in names:
                if hasattr(m, n) and getattr(m, n) is not None and not callable(getattr(m, n)):
                    return getattr(m, n)
            return None

        thr = first("threshold", "v_threshold")
        leak = first("leak")
        beta = first("beta") if leak is None else None
        reset = first("reset_mechanism", "reset_mode")
        leak_v = 0.0 if leak is None and beta is None else (
            float(np.asarray(_np(leak))) if leak is not None else 1.0 - float(np.asarray(_np(beta))))
        reset = "subtract" if reset is None else str(reset)
        if reset not in ("subtract", "zero"):
            raise _unsupported(name, f"reset of {where} is not in format v1", repr(reset),
                               "set its reset_mechanism to 'subtract' or 'zero'")
        if not 0.0 <= leak_v < 1.0:
            raise _unsupported(name, f"leak of {where} out of range", f"leak={leak_v}", "0 <= leak < 1")
        used = ", ".join(f"{k}={v!r}" for k, v in (("threshold", thr), ("leak", leak), ("beta", beta),
                                                   ("reset", reset)) if v is not None)
        return _Spec(source=_describe(m), model="IF" if leak_v == 0.0 else "LIF", leak=leak_v, reset=reset,
                     threshold=np.asarray(1.0 if thr is None else _np(thr), dtype=np.float64),
                     note=f"parameters from the module's attributes ({used or 'none: defaults'}); "
                     "checked against the recorded spikes")

    def reset(self, m: Any) -> bool:
        """Reset a stateful module; False when it has no reset method."""
        if self.snn_base is not None and isinstance(m, self.snn_base):
            names = ("reset_mem", "init_leaky", "reset_hidden")
        else:
            names = ("reset", "reset_state", "reset_states", "reset_mem")
        for n in names:
            fn = getattr(m, n, None)
            if callable(fn):
                fn()
                return True
        return False


def _np(v: Any) -> Any:
    if hasattr(v, "detach"):
        return v.detach().cpu().double().numpy()
    return v


# ----------------------------------------------------------------------------- the model's graph

class _TraceFailed(Exception):
    pass


def _walk(rec: _Recognizer, m: Any, prefix: str) -> list[tuple[str, Any]]:
    """Leaf modules of a container, in call order (nested containers expanded)."""
    out = []
    for n, child in m.named_children():
        q = f"{prefix}.{n}" if prefix else n
        if rec.kind(child) == "container":
            out.extend(_walk(rec, child, q))
        else:
            out.append((q, child))
    return out


def _module_op(rec: _Recognizer, name: str, m: Any, args: list[int], shape: Any = None,
               in_shape: Any = None, tuple_out: bool = False) -> list[_Op]:
    kind = rec.kind(m)
    where = f"module '{name}' ({_describe(m)})"
    if kind is None:
        hint = None
        if sum(1 for _ in m.parameters(recurse=False)) == 0 and not list(m.children()):
            hint = "if it is a spiking neuron, name its class: from_torch(..., spiking=(" + type(m).__name__ + ",))"
        raise _unsupported(name, f"unsupported {where}", type(m).__name__, hint)
    if kind == "container":  # its modules in call order; args -1 = the op before, in this list
        ops: list[_Op] = []
        for q, child in _walk(rec, m, name):
            ops.extend(_module_op(rec, q, child, args if not ops else [-1]))
        return ops
    return [_Op(name, kind, list(args), module=m, shape=shape, in_shape=in_shape, where=where,
                params={"tuple": tuple_out})]


def _copy_model(model: Any) -> Any:
    """A deep copy of the model that leaves the user's untouched, even straight after a training
    step: neurons then hold hidden state with autograd history (non-leaf tensors), which
    ``copy.deepcopy`` refuses; such tensors are copied detached (the copy's state is reset before
    it runs anyway)."""
    torch = _torch()
    memo: dict[int, Any] = {}
    for m in model.modules():
        for value in (*vars(m).values(), *getattr(m, "_buffers", {}).values()):  # snnTorch keeps mem as a buffer
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def _fx_ops(model: Any, x: Any, lead: int, rec: _Recognizer) -> list[_Op]:
    torch = _torch()
    import torch.fx as fx

    twin = _copy_model(model)

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return rec.is_leaf(m) or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(twin)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        raise _TraceFailed(f"{type(e).__name__}: {e}") from None
    gm = fx.GraphModule(twin, graph)
    for m in twin.modules():
        if rec.is_stateful(m):
            rec.reset(m)
    current: dict[str, Any] = {}

    class _Shapes(fx.Interpreter):  # records every node's output shape (or "tuple")
        def run_node(self, n: Any) -> Any:
            current["node"] = n
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                n.meta["snnsim_shape"] = tuple(int(s) for s in out.shape)
            elif isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
                n.meta["snnsim_shape"] = "tuple"
            return out

    try:
        with torch.no_grad():
            _Shapes(gm).run(x)
    except Exception as e:
        n = current.get("node")
        if n is not None and n.op == "call_module":
            what = f"module '{n.target}' ({_describe(model.get_submodule(n.target))})"
        else:
            what = f"operation '{getattr(n, 'name', '?')}'"
        raise UsageError(f"the model fails on the given inputs at {what}", key="inputs",
                         expected="inputs of the shape the model was built for",
                         found=f"samples of shape {list(x.shape[lead:])}: {type(e).__name__}: "
                         f"{str(e).split(chr(10) + chr(10) + 'While executing')[0]}") from None
    for m in twin.modules():
        if rec.is_stateful(m):
            rec.reset(m)

    def shape_of(n: Any) -> tuple[int, ...] | None:
        sh = n.meta.get("snnsim_shape")
        return sh[lead:] if isinstance(sh, tuple) else None

    ops: list[_Op] = []
    index: dict[Any, int] = {}
    ADD = {operator.add, operator.iadd, torch.add}
    F = torch.nn.functional
    POOLS = {F.max_pool2d: "maxpool", F.avg_pool2d: "avgpool", F.adaptive_avg_pool2d: "adaptive_avgpool"}
    IDENT_M = {"contiguous", "clone", "detach", "float", "to"}

    def data_args(n: Any) -> list[int]:
        out: list[int] = []
        fx.node.map_arg((n.args, n.kwargs), lambda a: out.append(index[a]) if a in index
                        and ops[index[a]].kind != "other" else None)
        return out

    for n in graph.nodes:
        shape = shape_of(n)
        stack = n.meta.get("nn_module_stack") or {}
        inside, owner = "", None
        if stack:  # {key: (qualified name, class)} of the modules the node was traced in
            last = list(stack.values())[-1]
            path, cls = last if isinstance(last, tuple) else (list(stack)[-1], None)
            owner = getattr(cls, "__name__", None)
            inside = f" in module '{path}'" + (f" ({owner})" if owner else "")
        if n.op == "placeholder":
            if any(o.kind == "input" for o in ops):
                raise _unsupported(n.name, "the model takes more than one input", f"argument '{n.name}'",
                                   "format v1 has one analog input")
            index[n] = len(ops)
            ops.append(_Op("input", "input", [], shape=shape, where="the input"))
            continue
        if n.op == "output":
            ops.append(_Op("output", "output", data_args(n), where="the output"))
            continue
        if n.op == "get_attr":
            index[n] = len(ops)
            ops.append(_Op(n.name, "const", [], where=f"constant '{n.target}'"))
            continue
        args = data_args(n)
        in_shape = None
        first = n.args[0] if n.args else None
        if isinstance(first, fx.Node):
            in_shape = shape_of(first)
        if n.op == "call_module":
            m = model.get_submodule(n.target)
            sub = _module_op(rec, str(n.target), m, args, shape, in_shape,
                             tuple_out=n.meta.get("snnsim_shape") == "tuple")
            if not sub:  # an empty container passes its input through
                index[n] = args[0]
                continue
            base = len(ops)
            for k, op in enumerate(sub):
                op.args = [base + k + a if a < 0 else a for a in op.args]
            ops.extend(sub)
            index[n] = len(ops) - 1
            continue
        target = n.target
        tname = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        where = f"operation '{n.name}' ({tname}){inside}"
        if shape is None and not (n.op == "call_function" and target is operator.getitem):
            index[n] = len(ops)  # sizes, shapes and other non-tensor values
            ops.append(_Op(n.name, "other", [], where=where))
            continue
        if (n.op == "call_function" and target in ADD) or (n.op == "call_method" and target in ("add", "add_")):
            if len(args) != 2 or "alpha" in n.kwargs or len(n.args) != 2:
                raise _unsupported(n.name, f"{where}: only the sum of two spike tensors is supported",
                                   f"{len(args)} tensor operand(s) with args {list(map(str, n.args))}")
            kind, params = "add", {}
        elif (n.op == "call_function" and target is torch.flatten) or (
                n.op == "call_method" and target in ("flatten", "view", "reshape")):
            kind, params = "reshape", {}
        elif n.op == "call_function" and target in POOLS:
            kind = POOLS[target]
            params = _functional_pool_params(kind, n)
        elif n.op == "call_function" and target is operator.getitem:
            if not args:
                index[n] = len(ops)
                ops.append(_Op(n.name, "other", [], where=where))
                continue
            kind, params = "getitem", {"index": n.args[1]}
        elif (n.op == "call_function" and target is F.dropout) or (n.op == "call_method" and target in IDENT_M):
            kind, params = "identity", {}
        else:
            raise _unsupported(n.name, f"unsupported {where}", tname,
                               f"if {owner or 'the module'} is a spiking neuron, name it so that fx does not trace "
                               f"into it: from_torch(..., spiking=({owner or 'MyNeuron'},))" if stack else None)
        index[n] = len(ops)
        ops.append(_Op(n.name, kind, args[:2] if kind == "add" else args[:1], shape=shape, in_shape=in_shape,
                       where=where, params=params))
    return ops


def _functional_pool_params(kind: str, n: Any) -> dict[str, Any]:
    names = ("output_size",) if kind == "adaptive_avgpool" else ("kernel_size", "stride", "padding")
    p: dict[str, Any] = {}
    for i, k in enumerate(names):
        if len(n.args) > i + 1:
            p[k] = n.args[i + 1]
        elif k in n.kwargs:
            p[k] = n.kwargs[k]
    for k in ("ceil_mode", "count_include_pad", "divisor_override", "dilation", "return_indices"):
        if k in n.kwargs:
            p[k] = n.kwargs[k]
    if len(n.args) > len(names) + 1:
        p["_extra_positional"] = n.args[len(names) + 1:]
    return p


def _sequential_ops(model: Any, rec: _Recognizer) -> list[_Op]:
    ops = [_Op("input", "input", [], where="the input")]
    for q, child in _walk(rec, model, ""):
        for op in _module_op(rec, q, child, [len(ops) - 1]):
            op.args = [len(ops) + a if a < 0 else a for a in op.args]
            ops.append(op)
    ops.append(_Op("output", "output", [len(ops) - 1], where="the output"))
    return ops


# ----------------------------------------------------------------------------- graph building

class _Builder:
    def __init__(self, ops: list[_Op], input_shape: tuple[int, ...], rec: _Recognizer, time_steps: int) -> None:
        self.ops = ops
        self.rec = rec
        self.T = time_steps
        self.layers: list[Layer] = []
        self.by_name: dict[str, Layer] = {}
        self.info: dict[str, _Info] = {}
        self.vals: list[_Val | None] = [None] * len(ops)
        self.input_shape = input_shape
        self.neuron_uses: dict[str, int] = {}
        self.specs: dict[str, _Spec] = {}
        self.notes: list[str] = []
        for op in ops:
            for a in op.args:
                ops[a].users += 1

    # -- bookkeeping

    def _name(self, base: str) -> str:
        name = base.replace("/", "_") or "layer"
        if name == "input":
            name = "input_"
        k, cand = 1, name
        while cand in self.by_name:
            cand = f"{name}_{k}"
            k += 1
        return cand

    def _add(self, layer: Layer, info: _Info) -> Layer:
        layer.name = self._name(layer.name)
        self.layers.append(layer)
        self.by_name[layer.name] = layer
        self.info[layer.name] = info
        return layer

    def _shape(self, layer: Layer, in_shapes: list[tuple[int, ...]], where: str) -> tuple[int, ...]:
        try:
            return infer_out_shape(layer, in_shapes)
        except WorkloadError as e:
            raise WorkloadError(f"{where}: {e.message}", key=layer.name, expected=e.expected, found=e.found,
                                suggestion=e.suggestion) from None

    def _arg(self, op: _Op, i: int = 0) -> _Val:
        if len(op.args) <= i:
            raise _unsupported(op.name, f"{op.where} has no tensor input", "none")
        v = self.vals[op.args[i]]
        assert v is not None
        return v

    def _single_user(self, op: _Op, v: _Val) -> None:
        src = self.ops[op.args[0]]
        if src.users != 1:
            raise WorkloadError(f"the current of layer '{v.layer}' feeds {src.users} operations", key=op.name,
                                expected="a current that goes to one neuron (format v1 gives a layer one neuron)",
                                found=f"{op.where} and {src.users - 1} other(s)")

    # -- errors

    def _needs_spikes(self, op: _Op, v: _Val) -> WorkloadError:
        if v.kind == "current":
            return WorkloadError(f"{op.where} reads the currents of layer '{v.layer}', not spikes", key=op.name,
                                 expected="every layer's input spiking (format v1): a spiking module between them",
                                 found=f"'{v.layer}' has no neuron before {op.where}",
                                 suggestion=f"put a spiking module after '{v.layer}'")
        if v.kind == "membrane":
            return WorkloadError(f"{op.where} reads a membrane potential", key=op.name,
                                 expected="spikes", found="a neuron's membrane output",
                                 suggestion="feed the spikes (the first output of the neuron) instead")
        return WorkloadError(f"{op.where} cannot read this value", key=op.name, expected="spikes or the analog input",
                             found=v.kind)

    # -- ops

    def build(self) -> None:
        for i, op in enumerate(self.ops):
            self.vals[i] = getattr(self, f"_op_{op.kind}")(op)
        for name, info in self.info.items():
            layer = self.by_name[name]
            if layer.neuron is None and not info.output and info.a is not None and not self._spiking_struct(layer):
                raise WorkloadError(f"the current of layer '{name}' never reaches a spiking module", key=name,
                                    expected="a spiking module after it, or the model's output",
                                    found=f"modules {info.modules}")
        outs = [la for la in self.layers if self.info[la.name].output]
        if len(outs) > 1:
            raise WorkloadError("the model has more than one non-spiking output", key="output",
                                expected="one output layer without a neuron (the classifier)",
                                found=", ".join(la.name for la in outs))
        if outs:
            self.layers.remove(outs[0])
            self.layers.append(outs[0])

    def _spiking_struct(self, layer: Layer) -> bool:
        return layer.op in ("maxpool", "flatten") and layer.neuron is None and self.info[layer.name].a is None

    def _op_input(self, op: _Op) -> _Val:
        if op.shape is not None and tuple(op.shape) != tuple(self.input_shape):  # pragma: no cover
            raise UsageError("input shape differs from the traced one", key="inputs")
        return _Val("analog", tuple(self.input_shape), "input")

    def _op_other(self, op: _Op) -> _Val:
        return _Val("other")

    def _op_const(self, op: _Op) -> _Val:
        return _Val("other")

    def _op_identity(self, op: _Op) -> _Val:
        return self._arg(op)

    def _op_getitem(self, op: _Op) -> _Val:
        v = self._arg(op)
        if v.kind == "tuple":
            idx = op.params.get("index")
            return v.inner if idx == 0 else _Val("membrane", v.shape, v.layer)  # type: ignore[return-value]
        raise _unsupported(op.name, f"{op.where}: indexing a tensor is not supported", f"index {op.params.get('index')!r}")

    def _op_conv(self, op: _Op) -> _Val:
        return self._synaptic(op, "conv")

    def _op_linear(self, op: _Op) -> _Val:
        return self._synaptic(op, "linear")

    def _synaptic(self, op: _Op, kind: str) -> _Val:
        v = self._arg(op)
        if v.kind not in ("analog", "spikes"):
            raise self._needs_spikes(op, v)
        m = op.module
        if kind == "linear":
            if len(v.shape) != 1:
                raise WorkloadError(f"{op.where} needs a flat input", key=op.name, expected="[features]",
                                    found=str(list(v.shape)), suggestion="flatten the spikes before it (nn.Flatten)")
            if v.shape[0] != m.in_features:
                raise WorkloadError(f"input shape mismatch at {op.where}", key=op.name,
                                    expected=f"{m.in_features} input features", found=f"{v.shape[0]}")
            layer = Layer(op.name, "linear", [v.layer], (int(m.out_features),))
        else:
            nd = len(m.kernel_size)
            opname = "conv2d" if nd == 2 else "conv3d"
            if any(d != 1 for d in m.dilation):
                raise _unsupported(op.name, f"dilated convolution {op.where}", f"dilation={m.dilation}")
            if m.padding_mode != "zeros":
                raise _unsupported(op.name, f"padding mode of {op.where}", repr(m.padding_mode),
                                   "format v1 pads with zeros")
            pad = m.padding
            if isinstance(pad, str):
                if pad == "valid":
                    pad = (0,) * nd
                elif all(k % 2 == 1 for k in m.kernel_size) and all(s == 1 for s in m.stride):
                    pad = tuple((k - 1) // 2 for k in m.kernel_size)
                else:
                    raise _unsupported(op.name, f"padding='same' with an even kernel at {op.where}", repr(pad))
            if len(v.shape) != nd + 1:
                raise WorkloadError(f"input shape mismatch at {op.where}", key=op.name,
                                    expected=f"{nd + 1} dimensions (channels first)", found=str(list(v.shape)))
            if v.shape[0] != m.in_channels:
                raise WorkloadError(f"input shape mismatch at {op.where}", key=op.name,
                                    expected=f"{m.in_channels} input channels", found=f"{v.shape[0]} channels "
                                    f"(input of shape {list(v.shape)})")
            layer = Layer(op.name, opname, [v.layer], (int(m.out_channels),), kernel=tuple(m.kernel_size),
                          stride=tuple(m.stride), padding=tuple(int(p) for p in pad), groups=int(m.groups))
        layer.out_shape = self._shape(layer, [v.shape], op.where)
        c = layer.out_shape[0]
        w = _np(m.weight).astype(np.float64)
        b = _np(m.bias).astype(np.float64) if getattr(m, "bias", None) is not None else np.zeros(c)
        info = _Info(modules=[op.name], weight=w, a=np.ones(c), d=b.copy(), d_mag=np.abs(b),
                     shift_from=[f"'{op.name}' (bias)"] if np.any(b != 0) else [])
        layer = self._add(layer, info)
        return _Val("current", layer.out_shape, layer.name)

    def _op_bn(self, op: _Op) -> _Val:
        v = self._arg(op)
        info = self.info.get(v.layer)
        layer = self.by_name.get(v.layer)
        if v.kind != "current" or info is None or info.weight is None or info.flat_name or layer.neuron is not None:
            raise WorkloadError(f"{op.where} must come right after a Conv/Linear (it is folded into that layer)",
                                key=op.name, expected="Conv/Linear -> BatchNorm -> spiking module",
                                found=f"a batch norm of {v.kind if v.kind != 'current' else 'a current that is not a conv/linear output'}")
        self._single_user(op, v)
        m = op.module
        if m.running_mean is None or m.running_var is None:
            raise _unsupported(op.name, f"{op.where} has no running statistics (track_running_stats=False): it "
                               "normalises with each batch's statistics, which cannot be folded", "no running stats")
        c = layer.out_shape[0]
        if m.num_features != c:
            raise WorkloadError(f"input shape mismatch at {op.where}", key=op.name,
                                expected=f"{c} features (layer '{v.layer}')", found=str(m.num_features))
        mu = _np(m.running_mean).astype(np.float64)
        var = _np(m.running_var).astype(np.float64)
        gamma = _np(m.weight).astype(np.float64) if m.weight is not None else np.ones(c)
        beta = _np(m.bias).astype(np.float64) if m.bias is not None else np.zeros(c)
        a = gamma / np.sqrt(var + float(m.eps))
        info.a = a * info.a
        info.d = a * (info.d - mu) + beta
        info.d_mag = np.abs(a) * (info.d_mag + np.abs(mu)) + np.abs(beta)
        info.modules.append(op.name)
        if np.any(info.d != 0):
            info.shift_from.append(f"'{op.name}' (batch norm: beta - gamma mu / sigma)")
        return _Val("current", v.shape, v.layer)

    def _op_reshape(self, op: _Op) -> _Val:
        v = self._arg(op)
        if v.kind not in ("analog", "spikes", "current"):
            raise self._needs_spikes(op, v)
        flat = (math.prod(v.shape),)
        if op.shape is not None:
            if tuple(op.shape) == tuple(v.shape):
                return v
            if tuple(op.shape) != flat:
                raise _unsupported(op.name, f"{op.where} reshapes {list(v.shape)} to {list(op.shape)}",
                                   f"shape {list(op.shape)}", "only flattening every non-batch dimension is "
                                   "supported (nn.Flatten(), x.flatten(1), x.view(x.size(0), -1))")
        elif op.module is not None:
            m = op.module
            if m.start_dim != 1 or m.end_dim != -1:
                raise _unsupported(op.name, f"{op.where} flattens dimensions {m.start_dim}..{m.end_dim}",
                                   f"start_dim={m.start_dim}, end_dim={m.end_dim}", "use nn.Flatten() (1..-1)")
        if len(v.shape) == 1:
            return v
        if v.kind == "analog":
            layer = self._add(Layer(op.name, "flatten", ["input"], flat), _Info(modules=[op.name], a=np.ones(flat[0]),
                                                                               d=np.zeros(flat[0])))
            return _Val("current", flat, layer.name)
        if v.kind == "spikes":
            layer = self._add(Layer(op.name, "flatten", [v.layer], flat), _Info(modules=[op.name]))
            return _Val("spikes", flat, layer.name, absorbable=True)
        self._single_user(op, v)
        info = self.info[v.layer]
        if info.flat_name:
            return _Val("current", flat, v.layer)
        info.flat_name = op.name
        return _Val("current", flat, v.layer)

    def _pool_params(self, op: _Op, kind: str, v: _Val) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        m = op.module
        p = op.params
        get = (lambda k, d=None: getattr(m, k, d)) if m is not None else (lambda k, d=None: p.get(k, d))
        if p.get("_extra_positional"):
            raise _unsupported(op.name, f"{op.where}: positional options beyond kernel/stride/padding",
                               str(p["_extra_positional"]), "pass them as keywords")
        if get("ceil_mode", False):
            raise _unsupported(op.name, f"{op.where} uses ceil_mode", "ceil_mode=True", "format v1 pools floor the size")
        if get("return_indices", False):
            raise _unsupported(op.name, f"{op.where} returns indices", "return_indices=True")
        if kind == "adaptive_avgpool":
            out = get("output_size")
            out = _pair(out, 2) if not isinstance(out, (tuple, list)) or None not in out else tuple(out)
            hw = v.shape[1:]
            out = tuple(hw[i] if out[i] is None else int(out[i]) for i in range(2))
            if any(hw[i] % out[i] for i in range(2)):
                raise _unsupported(op.name, f"{op.where}: output {list(out)} does not divide input {list(hw)}",
                                   f"output_size={list(out)}", "use sizes that divide the input (then it is an AvgPool2d)")
            k = tuple(hw[i] // out[i] for i in range(2))
            return k, k, (0, 0)
        k = _pair(get("kernel_size"), 2)
        s = get("stride")
        s = k if s is None or (isinstance(s, (tuple, list)) and len(s) == 0) else _pair(s, 2)
        pad = _pair(get("padding", 0), 2)
        if _pair(get("dilation", 1), 2) != (1, 1):
            raise _unsupported(op.name, f"dilated pooling {op.where}", f"dilation={get('dilation')}")
        if kind == "avgpool":
            if get("divisor_override", None) is not None:
                raise _unsupported(op.name, f"{op.where} overrides its divisor", f"divisor_override={get('divisor_override')}")
            if any(pad) and not get("count_include_pad", True):
                raise _unsupported(op.name, f"{op.where} excludes padding from its average", "count_include_pad=False",
                                   "format v1 averages over the whole window (padding counts as 0)")
        return k, s, pad

    def _pool(self, op: _Op, kind: str) -> _Val:
        v = self._arg(op)
        if v.kind == "current":
            raise WorkloadError(f"{op.where} pools the currents of layer '{v.layer}' before its neuron", key=op.name,
                                expected="pooling of spikes: Conv -> spiking module -> pool (format v1 feeds only "
                                "spikes between layers)",
                                found=f"'{v.layer}' -> {type(op.module).__name__ if op.module is not None else op.name} "
                                "-> spiking module",
                                suggestion="this cannot be rewritten exactly: a pool of currents followed by a neuron "
                                "is not a neuron followed by the pool (the max of currents is not the OR of spikes); "
                                "move the pool after the spiking module and retrain")
        if v.kind != "spikes":
            raise WorkloadError(f"{op.where} pools {'the analog input' if v.kind == 'analog' else v.kind}",
                                key=op.name, expected="pooling of spikes (the analog input must feed a "
                                "Conv2d/Conv3d/Linear first)", found=v.kind)
        if len(v.shape) != 3:
            raise _unsupported(op.name, f"{op.where} needs a (C, H, W) input", str(list(v.shape)))
        k, s, pad = self._pool_params(op, kind, v)
        opname = "maxpool" if kind == "maxpool" else "avgpool"
        layer = Layer(op.name, opname, [v.layer], (v.shape[0],), kernel=k, stride=s, padding=pad)
        layer.out_shape = self._shape(layer, [v.shape], op.where)
        if opname == "maxpool":
            layer = self._add(layer, _Info(modules=[op.name]))
            return _Val("spikes", layer.out_shape, layer.name, absorbable=True)
        c = layer.out_shape[0]
        layer = self._add(layer, _Info(modules=[op.name], a=np.ones(c), d=np.zeros(c)))
        return _Val("current", layer.out_shape, layer.name)

    def _op_maxpool(self, op: _Op) -> _Val:
        return self._pool(op, "maxpool")

    def _op_avgpool(self, op: _Op) -> _Val:
        return self._pool(op, "avgpool")

    def _op_adaptive_avgpool(self, op: _Op) -> _Val:
        return self._pool(op, "adaptive_avgpool")

    def _op_add(self, op: _Op) -> _Val:
        a, b = self._arg(op, 0), self._arg(op, 1)
        for v in (a, b):
            if v.kind != "spikes":
                what = "currents" if v.kind == "current" else v.kind
                raise WorkloadError(f"{op.where} adds {what}" + (f" of layer '{v.layer}'" if v.layer else ""),
                                    key=op.name, expected="an add of two spike tensors, then a spiking module "
                                    "(format v1's add layer with a neuron, SEW-ResNet style)",
                                    found=f"operands: {a.kind} ({a.layer or '-'}), {b.kind} ({b.layer or '-'})",
                                    suggestion="put a spiking module on each branch before the add; an add of "
                                    "currents cannot be written as a layer over spikes")
        if a.shape != b.shape:
            raise WorkloadError(f"{op.where} adds tensors of different shapes", key=op.name,
                                expected=str(list(a.shape)), found=str(list(b.shape)))
        c = a.shape[0]
        layer = self._add(Layer(op.name, "add", [a.layer, b.layer], a.shape),
                          _Info(modules=[op.name], a=np.ones(c), d=np.zeros(c)))
        return _Val("current", a.shape, layer.name)

    def _op_neuron(self, op: _Op) -> _Val:
        m = op.module
        self.neuron_uses[op.name] = self.neuron_uses.get(op.name, 0) + 1
        if self.neuron_uses[op.name] > 1:
            raise WorkloadError(f"spiking {op.where} is called at more than one place", key=op.name,
                                expected="one call per spiking module and step (its membrane is its state)",
                                found="called again", suggestion="give each place its own spiking module")
        if len(op.args) != 1:
            raise WorkloadError(f"spiking {op.where} is called with its state as an argument", key=op.name,
                                expected="the module keeping its own state: lif(current) (snnTorch: init_hidden=True "
                                "or no mem argument)", found=f"{len(op.args)} tensor arguments")
        v = self._arg(op)
        spec = self.rec.spec(m, op.name)
        self.specs[op.name] = spec
        if v.kind == "current":
            self._single_user(op, v)
            layer = self.by_name[v.layer]
        elif v.kind == "spikes" and v.absorbable:
            src = self.by_name[v.layer]
            if self.ops[op.args[0]].users == 1 and src.neuron is None and not self.info[src.name].modules[1:]:
                layer = src
                self.info[src.name].a = np.ones(src.out_shape[0])
                self.info[src.name].d = np.zeros(src.out_shape[0])
            else:
                layer = Layer(op.name, src.op, list(src.inputs), src.out_shape, kernel=src.kernel,
                              stride=src.stride, padding=src.padding)
                c = src.out_shape[0]
                layer = self._add(layer, _Info(modules=[op.name], a=np.ones(c), d=np.zeros(c)))
        elif v.kind == "spikes":
            raise WorkloadError(f"spiking {op.where} reads the spikes of layer '{v.layer}' directly", key=op.name,
                                expected="a synaptic op (Conv/Linear), a pool, a flatten or an add between two "
                                "spiking modules", found="two spiking modules in a row")
        elif v.kind == "analog":
            raise WorkloadError(f"spiking {op.where} reads the analog input directly", key=op.name,
                                expected="the input feeding a Conv2d/Conv3d/Linear (or Flatten) first",
                                found="input -> spiking module")
        else:
            raise self._needs_spikes(op, v)
        info = self.info[layer.name]
        info.spec = spec
        info.neuron_module = op.name
        info.neuron_shape = v.shape
        info.modules.append(op.name)
        layer.neuron = Neuron(model=spec.model)  # thresholds are set in finalise()
        out = _Val("spikes", layer.out_shape, layer.name)
        if info.flat_name:
            flat = self._add(Layer(info.flat_name, "flatten", [layer.name], (layer.out_size,)),
                             _Info(modules=[info.flat_name]))
            out = _Val("spikes", flat.out_shape, flat.name, absorbable=True)
        if op.params.get("tuple"):
            return _Val("tuple", out.shape, out.layer, inner=out)
        return out

    def _op_output(self, op: _Op) -> _Val:
        for a in op.args:
            v = self.vals[a]
            assert v is not None
            if v.kind == "tuple":
                v = v.inner
            if v is None or v.kind != "current":
                continue
            info = self.info[v.layer]
            if info.weight is None:
                raise WorkloadError(f"the model's output is the current of layer '{v.layer}' "
                                    f"({self.by_name[v.layer].op}), which has no weights", key=v.layer,
                                    expected="a Conv/Linear output layer, or spikes", found=self.by_name[v.layer].op)
            info.output = True
        return _Val("other")

    # -- thresholds and weights

    def finalise(self) -> dict[str, np.ndarray]:
        """Thresholds of every neuron layer (set on the layers), stored weights per layer."""
        weights: dict[str, np.ndarray] = {}
        self.thresholds: dict[str, np.ndarray] = {}
        for layer in self.layers:
            info = self.info[layer.name]
            if info.weight is not None:
                w = info.weight.copy()
                if info.output:
                    w = w * info.a.reshape((-1,) + (1,) * (w.ndim - 1))
                    if np.any(info.d != 0):
                        info.notes.append("output layer's bias/batch-norm shift not stored (format v1 has no bias; "
                                          "the layer is not recorded)")
                        self.notes.append(f"{layer.name}: output bias not stored")
                weights[layer.name] = w
            if layer.neuron is None:
                continue
            spec = info.spec
            assert spec is not None
            c = layer.out_shape[0]
            try:
                thr = _per_channel(spec.threshold, info.neuron_shape, layer.out_shape)
            except ValueError as e:
                raise _unsupported(info.neuron_module, f"thresholds of '{info.neuron_module}' ({spec.source}) "
                                   f"cannot be mapped to channels of layer '{layer.name}'", str(e),
                                   "use one threshold per layer or per output channel") from None
            thr_x = thr / spec.gain  # in units of the module's input X
            a, d = info.a, info.d
            if info.d_mag is not None and np.any(d != 0):
                tiny = np.abs(d) <= SHIFT_RTOL * info.d_mag
                if np.all(tiny):  # e.g. beta = gamma mu / sigma computed in float32
                    info.notes.append(f"batch-norm/bias shift zero within float32 rounding (|d| <= {SHIFT_RTOL:g} x "
                                      f"its terms; largest {float(np.abs(d).max()):.3g}): taken as 0")
                    d = np.zeros_like(d)
            if np.any(d != 0) and self.T > 1:
                n = int(np.count_nonzero(d))
                raise WorkloadError(f"layer '{layer.name}' adds a constant current every step, which format v1 cannot "
                                    "store", key=layer.name,
                                    expected="no bias, and batch norms whose shift beta - gamma mu / sigma is 0 "
                                    "(a constant current accumulates in the membrane, so over more than one step it "
                                    "cannot be folded into a threshold)",
                                    found=f"a shift in {n} of {c} channels from {', '.join(info.shift_from)}",
                                    suggestion="train with bias=False (and without batch-norm shifts), or export "
                                    "with time_steps=1 (then it folds exactly into the thresholds)")
            mag = np.abs(a)
            theta = np.where(mag > 0, (thr_x - d) / np.where(mag > 0, mag, 1.0), thr_x)
            if np.any((mag == 0) & (d >= thr_x)):
                raise WorkloadError(f"layer '{layer.name}' has channels that fire on their constant shift alone",
                                    key=layer.name, expected="a threshold > 0 after folding", found="gamma = 0 channels")
            bad = ~np.isfinite(theta) | (theta <= 0)
            if np.any(bad):
                ch = int(np.flatnonzero(bad)[0])
                raise WorkloadError(f"layer '{layer.name}': folded threshold not positive", key=layer.name,
                                    expected="thresholds > 0 (format v1)", found=f"channel {ch}: {theta[ch]:g} "
                                    f"(threshold {thr_x[ch]:g}, shift {d[ch]:g}, scale {a[ch]:g})")
            if info.weight is not None and np.any(a != 1.0):
                sign = np.where(a < 0, -1.0, np.where(a > 0, 1.0, 0.0))
                weights[layer.name] = weights[layer.name] * sign.reshape((-1,) + (1,) * (info.weight.ndim - 1))
                folded = ", ".join(info.modules[1:-1]) or "scale"
                info.notes.append(f"batch norm ({folded}) folded: per-channel thresholds theta / a, a = gamma / sigma"
                                  + ("; weights of channels with gamma < 0 negated" if np.any(a < 0) else ""))
            if np.any(d != 0):
                info.notes.append("bias folded into the thresholds (time_steps = 1): theta' = (theta - d) / a")
            th32 = theta.astype(np.float32)
            if spec.strict:  # v > theta is v >= the next float32 above theta, for float32 membranes
                th32 = np.nextafter(th32, np.float32(np.inf))
            if np.all(th32 == th32[0]):
                layer.neuron = Neuron(model=spec.model, threshold=float(th32[0]), leak=float(spec.leak),
                                      reset=spec.reset, per_channel=False)
            else:
                layer.neuron = Neuron(model=spec.model, threshold=float(th32.mean()), leak=float(spec.leak),
                                      reset=spec.reset, per_channel=True)
                self.thresholds[layer.name] = th32
            if c != th32.size:  # pragma: no cover - _per_channel guarantees it
                raise AssertionError(layer.name)
        return {k: v.astype(np.float32) for k, v in weights.items()}


def _per_channel(thr: Any, at_shape: tuple[int, ...], layer_shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(thr, dtype=np.float64)
    try:
        full = np.broadcast_to(arr, at_shape)
    except ValueError:
        raise ValueError(f"threshold of shape {list(arr.shape)} for neurons of shape {list(at_shape)}") from None
    flat = full.reshape(layer_shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        raise ValueError(f"thresholds of shape {list(arr.shape)} differ within a channel")
    return flat[:, 0].copy()


# ----------------------------------------------------------------------------- weights' bits

def _grid_bits(w: np.ndarray) -> int | None:
    """The smallest b <= 16 whose sign-magnitude grid (per output channel) holds every weight."""
    if binary_form(w) is not None:
        return 1
    flat = np.abs(w.reshape(w.shape[0], -1).astype(np.float64))
    alpha = flat.max(axis=1)
    safe = np.where(alpha > 0, alpha, 1.0)[:, None]
    for b in range(2, 17):
        levels = max(1, 2 ** (b - 1) - 1)
        scaled = flat / safe * levels
        if np.all(np.abs(scaled - np.rint(scaled)) <= 1e-4):
            return b
    return None


# ----------------------------------------------------------------------------- the run

def _as_input(inputs: Any) -> np.ndarray:
    torch = _torch()
    if isinstance(inputs, torch.Tensor):
        x = inputs.detach().cpu().double().numpy()
    else:
        try:
            x = np.asarray(inputs, dtype=np.float64)
        except (TypeError, ValueError):
            raise UsageError("inputs must be a tensor or an array", key="inputs",
                             expected="(samples, C, H, W), (samples, C, D, H, W) or (samples, F) values in [0, 1]",
                             found=type(inputs).__name__) from None
    if x.ndim not in (2, 4, 5) or x.shape[0] < 1 or 0 in x.shape:
        raise UsageError("inputs have the wrong shape", key="inputs",
                         expected="(samples, C, H, W), (samples, C, D, H, W) or (samples, F)",
                         found=str(list(x.shape)))
    if not np.all(np.isfinite(x)):
        raise UsageError("inputs hold NaN or infinite values", key="inputs", expected="finite values in [0, 1]",
                         found="non-finite values")
    if x.min() < 0.0 or x.max() > 1.0:
        raise UsageError("inputs out of range", key="inputs", expected="analog values in [0, 1] (direct encoding)",
                         found=f"[{x.min():g}, {x.max():g}]", suggestion="scale the inputs to [0, 1]")
    return x.astype(np.float32)


def _step_mode(model: Any, rec: _Recognizer) -> str:
    modes = {getattr(m, "step_mode", "s") for m in model.modules() if rec.is_spiking(m)}
    if len(modes) > 1:
        raise UsageError("the model mixes single-step and multi-step spiking modules", key="step_mode",
                         expected="every neuron in step_mode 's' or every one in 'm'", found=str(sorted(modes)))
    mode = modes.pop() if modes else "s"
    if mode not in ("s", "m"):
        raise UsageError("unknown step mode", key="step_mode", expected="'s' or 'm'", found=repr(mode))
    return mode


def _record(model: Any, x: np.ndarray, time_steps: int, multi: bool, neurons: dict[str, Any],
            rec: _Recognizer) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Run the model; per neuron module: spikes (S, T, n) bool and its input currents (S, T, n)."""
    torch = _torch()
    store: dict[str, list[tuple[Any, Any]]] = {n: [] for n in neurons}
    handles = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_m: Any, inp: Any, out: Any) -> None:
            spk = out[0] if isinstance(out, (tuple, list)) else out
            store[name].append((inp[0].detach().float().cpu().clone(), spk.detach().float().cpu().clone()))
        return hook

    for name, m in neurons.items():
        handles.append(m.register_forward_hook(hook_for(name)))
    param = next(iter(model.parameters()), None)
    dev = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    xt = torch.as_tensor(x, dtype=dtype, device=dev)
    try:
        for m in model.modules():
            if rec.is_stateful(m):
                rec.reset(m)
        with torch.no_grad():
            if multi:
                model(xt.unsqueeze(0).expand(time_steps, *xt.shape).contiguous())
            else:
                for _ in range(time_steps):
                    model(xt)
    except SnnsimError:
        raise
    except Exception as e:
        raise UsageError("the model fails on the given inputs", key="inputs",
                         expected="inputs of the shape the model was built for",
                         found=f"shape {list(x.shape)}: {type(e).__name__}: {e}") from None
    finally:
        for h in handles:
            h.remove()
        for m in model.modules():
            if rec.is_stateful(m):
                rec.reset(m)
    s_ = x.shape[0]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    calls = 1 if multi else time_steps
    for name, items in store.items():
        if len(items) != calls:
            raise WorkloadError(f"spiking module '{name}' ran {len(items)} times for {calls} model call(s)",
                                key=name, expected="one call per model call (per step)",
                                found=f"{len(items)} calls", suggestion="a module called in a loop or at several "
                                "places keeps one state for all of them; give each call its own module")
        if multi:
            cur, spk = items[0]
            if cur.shape[0] != time_steps or cur.shape[1] != s_:
                raise WorkloadError(f"multi-step module '{name}' got a tensor of shape {list(cur.shape)}", key=name,
                                    expected=f"[T={time_steps}, samples={s_}, ...]", found=str(list(cur.shape)))
            cur = cur.transpose(0, 1)
            spk = spk.transpose(0, 1)
        else:
            cur = torch.stack([c for c, _ in items], dim=1)
            spk = torch.stack([s for _, s in items], dim=1)
        cur_np = cur.reshape(s_, time_steps, -1).numpy()
        spk_np = spk.reshape(s_, time_steps, -1).numpy()
        if not np.all((spk_np == 0) | (spk_np == 1)):
            bad = spk_np[(spk_np != 0) & (spk_np != 1)]
            raise WorkloadError(f"spiking module '{name}' outputs values other than 0 and 1", key=name,
                                expected="binary spikes", found=f"e.g. {float(bad.reshape(-1)[0]):g}",
                                suggestion="graded or surrogate (non-spiking) outputs are not spikes")
        out[name] = (spk_np.astype(bool), cur_np.astype(np.float32))
    return out


# ----------------------------------------------------------------------------- self-check

def _self_check(wl: Workload, recorded: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Replay each neuron layer with format v1's dynamics in float64 from recorded inputs."""
    torch = _torch()
    F = torch.nn.functional
    s_, t_ = wl.samples, wl.time_steps
    result: dict[str, dict[str, Any]] = {}
    for layer in wl.layers:
        if layer.neuron is None:
            continue
        n = layer.neuron
        if layer.inputs == ["input"]:
            src = torch.as_tensor(wl.input, dtype=torch.float64)
            src = src.unsqueeze(1).expand(s_, t_, *src.shape[1:]).reshape(s_ * t_, *src.shape[1:])
        else:
            srcs = [torch.as_tensor(recorded[i], dtype=torch.float64) for i in layer.inputs]
            src = srcs[0].reshape(s_ * t_, *srcs[0].shape[2:])
        if layer.op in ("conv2d", "conv3d", "linear"):
            w = torch.as_tensor(wl.weights[layer.name], dtype=torch.float64)
            if layer.op == "linear":
                x = src.reshape(s_ * t_, -1)
                cur, mag = x @ w.T, x.abs() @ w.abs().T
            else:
                conv = F.conv2d if layer.op == "conv2d" else F.conv3d
                kw = {"stride": layer.stride, "padding": layer.padding, "groups": layer.groups}
                cur, mag = conv(src, w, **kw), conv(src.abs(), w.abs(), **kw)
        elif layer.op == "add":
            cur = sum(torch.as_tensor(recorded[i], dtype=torch.float64).reshape(s_ * t_, *layer.out_shape)
                      for i in layer.inputs)
            mag = cur
        elif layer.op == "avgpool":
            cur = F.avg_pool2d(src, layer.kernel, layer.stride, layer.padding, count_include_pad=True)
            mag = cur
        elif layer.op == "maxpool":
            cur = F.max_pool2d(src, layer.kernel, layer.stride, layer.padding)
            mag = cur
        else:  # flatten with a neuron
            cur = src.reshape(s_ * t_, -1)
            mag = cur.abs()
        c = layer.out_shape[0]
        cur = cur.reshape(s_, t_, c, -1).numpy()
        mag = mag.reshape(s_, t_, c, -1).numpy()
        th = (wl.thresholds[layer.name].astype(np.float64) if n.per_channel
              else np.full(c, n.threshold)).reshape(1, c, 1)
        v = np.zeros((s_, c, cur.shape[3]))
        acc = np.zeros_like(v)
        keep = 1.0 - n.leak
        spikes = np.zeros(cur.shape, dtype=bool)
        margin = np.zeros(cur.shape)
        for t in range(t_):
            v = keep * v + cur[:, t]
            acc = keep * acc + mag[:, t]
            s = v >= th
            spikes[:, t] = s
            margin[:, t] = np.abs(v - th) / (th + acc)
            if n.reset == "subtract":
                v = v - s * th
            else:
                v = np.where(s, 0.0, v)
        rec = recorded[layer.name].reshape(s_, t_, c, -1)
        diff = spikes != rec
        trains = diff.any(axis=1)
        first = np.argmax(diff, axis=1)
        m_first = np.take_along_axis(margin, first[:, None], axis=1)[:, 0]
        within = int(np.count_nonzero(trains & (m_first <= RTOL)))
        total = int(np.count_nonzero(trains))
        result[layer.name] = {"neurons": int(s_ * layer.out_size), "bits_differing": int(np.count_nonzero(diff)),
                              "trains_differing": total, "within_tolerance": within,
                              "beyond_tolerance": total - within}
    return result


# ----------------------------------------------------------------------------- entry point

def from_torch(model: Any, inputs: Any, time_steps: int, path: str | Path | None = None, *,
               spiking: Any = None, model_name: str | None = None, dataset: str | None = None,
               weight_bits: int | dict[str, int] | None = None) -> Workload:
    """Run ``model`` on ``inputs`` for ``time_steps`` steps (direct encoding) and return its spike
    trace; write it to ``path`` (atomically) when given.

    ``inputs``: tensor or array (samples, C, H, W), (samples, C, D, H, W) or (samples, F), values
    in [0, 1]. ``spiking``: extra spiking module classes or predicates ``module -> bool``
    (snnTorch and SpikingJelly neurons are known). ``weight_bits``: the on-chip width of the
    weights, one int or ``{layer: bits}``; by default the smallest sign-magnitude grid the
    weights lie on (1 for +-alpha per channel), else 16 (the weights are stored as float32 as
    they are; quantise the model first for a chip that computes with fewer bits).

    Raises ``UsageError`` for bad arguments or a model that fails on the inputs, and
    ``WorkloadError`` for a model format v1 cannot describe exactly (naming the module).
    """
    torch = _torch()
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise UsageError("time_steps must be a positive integer", key="time_steps", expected="an integer >= 1",
                         found=repr(time_steps))
    if not isinstance(model, torch.nn.Module):
        raise UsageError("model must be a torch.nn.Module", key="model", expected="an nn.Module",
                         found=type(model).__name__)
    if weight_bits is not None and not isinstance(weight_bits, (int, dict)) or isinstance(weight_bits, bool):
        raise UsageError("weight_bits must be an int or a {layer: bits} mapping", key="weight_bits",
                         expected="1..32 or {name: 1..32}", found=repr(weight_bits))
    x = _as_input(inputs)
    rec = _Recognizer(spiking)
    mode = _step_mode(model, rec)
    multi = mode == "m"
    lead = 2 if multi else 1
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        param = next(iter(model.parameters()), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        dev = param.device if param is not None else torch.device("cpu")
        probe = torch.as_tensor(x[:1], dtype=dtype, device=dev)
        if multi:
            probe = probe.unsqueeze(0).expand(time_steps, *probe.shape).contiguous()
        try:
            ops = _fx_ops(model, probe, lead, rec)
            traced = "torch.fx"
        except _TraceFailed as e:
            if not isinstance(model, torch.nn.Sequential):
                raise WorkloadError("torch.fx cannot trace the model", key="model",
                                    expected="an fx-traceable forward (spiking modules are leaf modules) or an "
                                    "nn.Sequential", found=str(e).split("\n")[0],
                                    suggestion="name custom spiking modules in spiking=(...) so fx does not trace "
                                    "into them") from None
            ops = _sequential_ops(model, rec)
            traced = "nn.Sequential call order"
        builder = _Builder(ops, tuple(x.shape[1:]), rec, time_steps)
        builder.build()
        weights = builder.finalise()
        layers = builder.layers
        if not any(la.neuron is not None for la in layers):
            raise WorkloadError("the model has no spiking module", key="model",
                                expected="at least one spiking module", found="none",
                                suggestion="name your neuron class in spiking=(...)")
        check_graph(layers, tuple(x.shape[1:]))
        bits = _weight_bits(layers, weights, weight_bits)
        neuron_modules = {builder.info[la.name].neuron_module: la for la in layers if la.neuron is not None}
        modules = {name: model.get_submodule(name) for name in neuron_modules}
        no_reset = [n for n, m in modules.items() if not rec.reset(m)]
        recorded_raw = _record(model, x, time_steps, multi, modules, rec)
    finally:
        for m, flag in was_training.items():
            m.training = flag

    s_ = x.shape[0]
    recorded: dict[str, np.ndarray] = {}
    currents: dict[str, np.ndarray] = {}
    for la in layers:
        if la.neuron is not None:
            spk, cur = recorded_raw[builder.info[la.name].neuron_module]
            if spk.shape[2] != la.out_size:
                raise WorkloadError(f"spiking module '{builder.info[la.name].neuron_module}' output has "
                                    f"{spk.shape[2]} neurons per sample", key=la.name,
                                    expected=f"{la.out_size} (layer shape {list(la.out_shape)})",
                                    found=str(spk.shape[2]))
            recorded[la.name] = spk.reshape(s_, time_steps, *la.out_shape)
            currents[la.name] = cur
        elif la.spiking:
            src = recorded[la.inputs[0]]
            if la.op == "flatten":
                recorded[la.name] = src.reshape(s_, time_steps, -1)
            else:  # maxpool of spikes: their OR over each window
                t = torch.as_tensor(src.reshape(s_ * time_steps, *src.shape[2:]), dtype=torch.float32)
                o = torch.nn.functional.max_pool2d(t, la.kernel, la.stride, la.padding)
                recorded[la.name] = o.numpy().astype(bool).reshape(s_, time_steps, *la.out_shape)
    packed = {name: pack_spikes(s) for name, s in recorded.items()}
    wl = Workload(layers=layers, input=x, packed_spikes=packed, time_steps=time_steps,
                  model=model_name or type(model).__name__, dataset=dataset or "unknown",
                  weights=weights, thresholds=builder.thresholds)
    _check_arrays(wl)
    check = _self_check(wl, recorded)
    rates = {name: float(s.mean()) for name, s in recorded.items()}
    per_layer: dict[str, Any] = {}
    for la in layers:
        info = builder.info[la.name]
        entry: dict[str, Any] = {"modules": info.modules}
        if info.spec is not None:
            entry["neuron"] = {"source": info.spec.source, "exact": info.spec.exact, "note": info.spec.note}
        if la.name in bits:
            entry["weight_bits"] = bits[la.name]
        if info.notes:
            entry["notes"] = info.notes
        if info.output:
            entry["output"] = True
        per_layer[la.name] = entry
        la.extra = {"modules": list(info.modules)}
        if info.spec is not None:
            la.extra["neuron_source"] = info.spec.source
    versions = {"torch": torch.__version__}
    for lib in ("snntorch", "spikingjelly"):
        mod = sys.modules.get(lib)
        if mod is not None:
            versions[lib] = str(getattr(mod, "__version__", "unknown"))
    wl.provenance = {
        "generator": "snnsim.export.from_torch",
        "export": {
            "graph": traced, "step_mode": mode, "versions": versions, "layers": per_layer,
            "self_check": check, "self_check_rtol": RTOL, "spike_rates": rates,
            "notes": builder.notes + [f"'{n}' has no reset method: its state was not reset" for n in no_reset],
        },
        "note": "spikes recorded from the model's own forward pass (float32); weights stored as float32",
    }
    for name, c in check.items():
        spec = builder.info[name].spec
        if c["beyond_tolerance"] or (spec is not None and not spec.exact):
            why = f": {spec.inexact}" if spec is not None and spec.inexact else ""
            warnings.warn(f"layer '{name}' ({builder.info[name].neuron_module}, {spec.source if spec else '?'}) is not "
                          f"exactly a format-v1 neuron{why}. On these inputs {c['beyond_tolerance']} of {c['neurons']} "
                          f"spike trains differ from format v1's dynamics beyond float rounding "
                          f"(provenance.export.self_check)", stacklevel=2)
    if path is not None:
        wl.source = str(save_workload(wl, path))
    return wl


def _weight_bits(layers: list[Layer], weights: dict[str, np.ndarray], declared: Any) -> dict[str, int]:
    names = [la.name for la in layers if la.op in ("conv2d", "conv3d", "linear")]
    if isinstance(declared, dict):
        for k, v in declared.items():
            if k not in names:
                raise UsageError("weight_bits names a layer the model does not have", key=f"weight_bits.{k}",
                                 expected="a conv/linear layer", found=str(k), suggestion=did_you_mean(str(k), names))
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 32:
                raise UsageError("weight_bits out of range", key=f"weight_bits.{k}", expected="1..32", found=repr(v))
    elif isinstance(declared, int) and not 1 <= declared <= 32:
        raise UsageError("weight_bits out of range", key="weight_bits", expected="1..32", found=repr(declared))
    out = {}
    for la in layers:
        if la.name not in names:
            continue
        if isinstance(declared, dict) and la.name in declared:
            b = declared[la.name]
        elif isinstance(declared, int):
            b = declared
        else:
            b = _grid_bits(weights[la.name]) or 16
        la.weight_bits = int(b)
        out[la.name] = int(b)
    return out
