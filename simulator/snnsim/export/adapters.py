"""Framework neurons as :mod:`snnsim.neurons` models: one adapter per framework.

Every adapter reads a trained neuron module and returns a :class:`NeuronSpec`: the registered
model name (``snntorch.leaky``, ``spikingjelly.lif``, ...), its parameters under exactly that
dataclass's names, and for a recurrent neuron the recurrent op it computes internally. The
dynamics are not approximated: a module whose dynamics no model reproduces exactly is refused.

- snnTorch (``_neurons/leaky.py``, ``synaptic.py``, ``rleaky.py``, ``rsynaptic.py``):
  ``Leaky`` (``beta``, ``threshold``, ``reset_mechanism`` subtract/zero/none, ``reset_delay``),
  ``Synaptic`` (``alpha`` too), ``RLeaky`` and ``RSynaptic`` (their ``recurrent`` submodule: an
  ``nn.Linear`` (``linear_features``), an ``nn.Conv2d`` (``conv2d_channels``, ``kernel_size``) or
  the one-to-one ``V``). Learned (per-neuron) ``beta``, ``alpha`` and ``threshold`` are kept as
  arrays. Inhibition, state quantisation and graded spikes are refused.
- SpikingJelly (``activation_based/neuron``): ``IFNode``, ``LIFNode`` (``tau``, ``decay_input``)
  and ``ParametricLIFNode`` (its decay ``sigmoid(w)`` as torch computes it), ``v_reset`` a value
  or None (soft reset), single- or multi-step. ``HalfThresholdIFNode`` (ann2snn's
  ``half_threshold=True``, ``neuron/integrate_and_fire.py``) charges, fires and soft-resets as
  ``IFNode(v_reset=None)`` but starts each run at ``v_threshold / 2``, a state no model has: it is
  refused, not approximated.
- Any module with a method ``snnsim_neuron(self) -> tuple[str, dict]`` returning a model name of
  :data:`snnsim.neurons.MODELS` and its parameters (checked by :func:`snnsim.neurons.neuron_model`).
  This is how a plain PyTorch neuron (or a converted ANN activation) declares its dynamics::

      class MyIF(torch.nn.Module):
          def snnsim_neuron(self):
              return "spikingjelly.if", {"v_threshold": self.threshold, "v_reset": None}

  The module keeps its own state between calls (one call per step, or one call on a (T, B, ...)
  sequence when its ``step_mode`` is ``'m'``) and has ``reset()`` (or ``reset_state()``); the
  export checks the declared dynamics against the spikes the module gives.
- Modules named in ``from_torch(..., spiking=(MyNeuron,))`` (classes or predicates) without that
  method: format v1's neuron (``snnsim.if``: ``v = (1 - leak) v + I``, spike on ``v >=
  threshold``) with ``threshold`` (or ``v_threshold``), ``leak`` (or ``1 - beta``) and
  ``reset_mechanism`` (or ``reset_mode``) read from its attributes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError, WorkloadError
from ..neurons import RESETS, neuron_model
from ..workload.nodes import RECURRENT_MODELS

SUPPORTED_NEURONS = ("snntorch Leaky, Synaptic, RLeaky, RSynaptic; spikingjelly IFNode, LIFNode, ParametricLIFNode; "
                     "modules with snnsim_neuron(), or named in spiking=(...)")


@dataclass
class RecurrentSpec:
    """The recurrent current a neuron adds (``neuron -> delay -> op -> neuron``): ``op`` is
    ``linear``, ``conv2d`` or ``scale``; ``module`` the torch module computing it (recorded)."""

    op: str
    module: Any
    params: dict[str, Any] = field(default_factory=dict)
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    scale: Any = None  # the one-to-one V (a number or per-neuron array)


@dataclass
class NeuronSpec:
    """A neuron module as a model of :mod:`snnsim.neurons`."""

    model: str
    params: dict[str, Any]
    source: str  # the framework class, e.g. snntorch.Leaky
    recurrent: RecurrentSpec | None = None
    note: str = ""


def describe(m: Any) -> str:
    t = type(m)
    return f"{t.__module__}.{t.__qualname__}"


def value(v: Any) -> Any:
    """A framework parameter as float32: a Python float for one value, else an array (a learned
    per-neuron or per-channel parameter)."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().float().numpy()
    arr = np.asarray(v, dtype=np.float32)
    return float(arr.reshape(-1)[0]) if arr.size == 1 else arr


def _refuse(name: str, what: str, found: str, suggestion: str | None = None,
            expected: str = f"supported: {SUPPORTED_NEURONS}") -> WorkloadError:
    return WorkloadError(what, key=name, expected=expected, found=found, suggestion=suggestion)


class NeuronAdapters:
    """Which modules are neurons, how to reset them, and their models."""

    def __init__(self, spiking: Any = None) -> None:
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
        self.snn = {k: getattr(snn, k, None) for k in ("Leaky", "Synaptic", "RLeaky", "RSynaptic")} if snn else {}
        sjn = sys.modules.get("spikingjelly.activation_based.neuron")
        sjb = sys.modules.get("spikingjelly.activation_based.base")
        self.sj_base = tuple(c for c in (getattr(sjn, n, None) for n in ("BaseNode", "SimpleBaseNode")) if c) \
            if sjn else ()
        self.sj = {k: getattr(sjn, k, None) for k in ("IFNode", "LIFNode", "ParametricLIFNode")} if sjn else {}
        self.sj_memory = getattr(sjb, "MemoryModule", None) if sjb else None

    # -- recognising

    def is_neuron(self, m: Any) -> bool:
        if callable(getattr(m, "snnsim_neuron", None)):
            return True
        if self.classes and isinstance(m, tuple(self.classes)):
            return True
        if any(t(m) for t in self.tests):
            return True
        if self.snn_base is not None and isinstance(m, self.snn_base):
            return True
        return bool(self.sj_base) and isinstance(m, self.sj_base)

    def is_stateful(self, m: Any) -> bool:
        return self.is_neuron(m) or (self.sj_memory is not None and isinstance(m, self.sj_memory))

    def reset(self, m: Any) -> bool:
        """Reset a stateful module to its zero state; False when it has no reset method."""
        if self.snn_base is not None and isinstance(m, self.snn_base):
            names: tuple[str, ...] = ("reset_mem", "init_leaky", "reset_hidden")
        else:
            names = ("reset", "reset_state", "reset_states", "reset_mem")
        for n in names:
            fn = getattr(m, n, None)
            if callable(fn):
                fn()
                return True
        return False

    def step_mode(self, m: Any) -> str:
        return str(getattr(m, "step_mode", "s"))

    # -- models

    def adapt(self, m: Any, name: str) -> NeuronSpec:
        """The model of neuron module ``m`` (named ``name`` in the model), or WorkloadError."""
        where = f"module '{name}' ({describe(m)})"
        if callable(getattr(m, "snnsim_neuron", None)):
            return self._declared(m, name, where)
        if self.snn_base is not None and isinstance(m, self.snn_base):
            return self._snntorch(m, name, where)
        if self.sj_base and isinstance(m, self.sj_base):
            return self._spikingjelly(m, name, where)
        return self._attributes(m, name, where)

    def _declared(self, m: Any, name: str, where: str) -> NeuronSpec:
        try:
            out = m.snnsim_neuron()
        except Exception as e:  # the user's method: any failure is reported with its module
            raise _refuse(name, f"snnsim_neuron() of {where} failed", f"{type(e).__name__}: {e}") from None
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], str) and isinstance(out[1], dict)):
            raise _refuse(name, f"snnsim_neuron() of {where} must return (model name, parameters)", repr(out)[:200],
                          expected="('spikingjelly.if', {'v_threshold': 1.0, ...})")
        model, params = out
        if model in RECURRENT_MODELS:
            raise _refuse(name, f"{where} declares a recurrent model", model,
                          "use snnTorch's RLeaky/RSynaptic (their recurrent weight is exported), or a feed-forward model",
                          expected="a feed-forward model of snnsim.neurons")
        params = {k: value(v) if not isinstance(v, (bool, str)) and v is not None else v for k, v in params.items()}
        neuron_model(model, params, key=name)
        return NeuronSpec(model, params, source=describe(m), note="declared by snnsim_neuron()")

    def _snntorch(self, m: Any, name: str, where: str) -> NeuronSpec:
        t = type(m)
        kinds = {v: k for k, v in self.snn.items() if v is not None}
        if t not in kinds:
            raise _refuse(name, f"unsupported snnTorch neuron {where}", t.__name__,
                          "use snntorch Leaky, Synaptic, RLeaky or RSynaptic")
        kind = kinds[t]
        if getattr(m, "inhibition", False):
            raise _refuse(name, f"{where} uses inhibition (winner-take-all)", "inhibition=True",
                          "train without inhibition")
        if getattr(m, "state_quant", False) not in (False, None):
            raise _refuse(name, f"{where} quantises its state", "state_quant set", "export without state_quant")
        g = np.asarray(value(m.graded_spikes_factor))
        if not np.all(g == 1.0):
            raise _refuse(name, f"{where} gives graded spikes", f"graded_spikes_factor={g.tolist()}",
                          "use graded_spikes_factor=1.0 (spikes are 0/1)")
        reset = m.reset_mechanism
        if reset not in RESETS:
            raise _refuse(name, f"unknown reset mechanism of {where}", repr(reset))
        params: dict[str, Any] = {"beta": value(m.beta), "threshold": value(m.threshold), "reset": reset}
        if kind in ("Synaptic", "RSynaptic"):
            params = {"alpha": value(m.alpha), **params}
        if kind != "RSynaptic":
            params["reset_delay"] = bool(getattr(m, "reset_delay", True))
        elif not getattr(m, "reset_delay", True):
            raise _refuse(name, f"{where} has reset_delay=False", "reset_delay=False",
                          "snnTorch's RSynaptic ignores it (and fails without explicit state): use reset_delay=True")
        spec = NeuronSpec(f"snntorch.{kind.lower()}", params, source=f"snntorch.{kind}")
        if kind in ("RLeaky", "RSynaptic"):
            spec.recurrent = _snntorch_recurrent(m, name, where)
        neuron_model(spec.model, params, key=name)
        return spec

    def _spikingjelly(self, m: Any, name: str, where: str) -> NeuronSpec:
        kinds = {v: k for k, v in self.sj.items() if v is not None}
        kind = kinds.get(type(m))
        if type(m).__name__ == "HalfThresholdIFNode":
            raise _refuse(name, f"{where} starts every run with its membrane at v_threshold / 2", "HalfThresholdIFNode "
                          "(ann2snn half_threshold=True)", "convert with half_threshold=False (IFNode(v_reset=None)); "
                          "its charge, fire and soft reset are spikingjelly.if's, but that model starts from 0, so "
                          "the spikes would differ", expected="a neuron whose first step starts from the zero state "
                          "of a model of snnsim.neurons")
        if kind is None:
            raise _refuse(name, f"unsupported SpikingJelly neuron {where}", type(m).__name__,
                          "use spikingjelly IFNode, LIFNode or ParametricLIFNode")
        v_reset = None if m.v_reset is None else value(m.v_reset)
        params: dict[str, Any] = {"v_threshold": value(m.v_threshold), "v_reset": v_reset}
        model = {"IFNode": "spikingjelly.if", "LIFNode": "spikingjelly.lif", "ParametricLIFNode": "spikingjelly.plif"}[kind]
        if kind == "LIFNode":
            params.update(tau=value(m.tau), decay_input=bool(m.decay_input))
        elif kind == "ParametricLIFNode":
            params.update(q=value(m.w.detach().sigmoid()), decay_input=bool(m.decay_input))
        neuron_model(model, params, key=name)
        return NeuronSpec(model, params, source=f"spikingjelly.{kind}",
                          note="q = sigmoid(w) as torch computed it" if kind == "ParametricLIFNode" else "")

    def _attributes(self, m: Any, name: str, where: str) -> NeuronSpec:
        def first(*names: str) -> Any:
            for n in names:
                v = getattr(m, n, None)
                if v is not None and not callable(v):
                    return v
            return None

        thr, leak, beta = first("threshold", "v_threshold"), first("leak"), first("beta")
        reset = first("reset_mechanism", "reset_mode") or "subtract"
        leak_v = 0.0 if leak is None and beta is None else (
            float(value(leak)) if leak is not None else 1.0 - float(value(beta)))
        if reset not in ("subtract", "zero"):
            raise _refuse(name, f"reset of {where} is not snnsim.if's", repr(reset),
                          "set reset_mechanism to 'subtract' or 'zero', or give the module snnsim_neuron()")
        if not 0.0 <= leak_v < 1.0:
            raise _refuse(name, f"leak of {where} out of range", f"leak={leak_v}", "0 <= leak < 1")
        params = {"threshold": 1.0 if thr is None else value(thr), "leak": leak_v, "reset": reset}
        neuron_model("snnsim.if", params, key=name)
        return NeuronSpec("snnsim.if", params, source=describe(m),
                          note="format v1's neuron, parameters from the module's attributes; checked against its "
                          "spikes (give it snnsim_neuron() to declare other dynamics)")


def _snntorch_recurrent(m: Any, name: str, where: str) -> RecurrentSpec:
    """RLeaky / RSynaptic's ``recurrent`` submodule: nn.Linear, nn.Conv2d or RecurrentOneToOne."""
    import torch

    rec = getattr(m, "recurrent", None)
    if isinstance(rec, torch.nn.Linear):
        return RecurrentSpec("linear", rec, {"out_features": int(rec.out_features), "bias": rec.bias is not None},
                             weight=_f32(rec.weight), bias=None if rec.bias is None else _f32(rec.bias))
    if isinstance(rec, torch.nn.Conv2d):
        if rec.padding_mode != "zeros" or isinstance(rec.padding, str) or any(d != 1 for d in rec.dilation):
            raise _refuse(name, f"the recurrent convolution of {where} is not a plain zero-padded Conv2d",
                          f"padding {rec.padding!r}, mode {rec.padding_mode}, dilation {rec.dilation}")
        return RecurrentSpec("conv2d", rec, {"out_channels": int(rec.out_channels), "kernel": list(rec.kernel_size),
                                             "stride": list(rec.stride), "padding": [int(p) for p in rec.padding],
                                             "groups": int(rec.groups), "bias": rec.bias is not None},
                             weight=_f32(rec.weight), bias=None if rec.bias is None else _f32(rec.bias))
    if rec is not None and hasattr(rec, "V"):
        return RecurrentSpec("scale", rec, scale=value(rec.V))
    raise _refuse(name, f"{where} has no recurrent connection the export knows", type(rec).__name__,
                  expected="recurrent = nn.Linear, nn.Conv2d or the one-to-one V")


def _f32(t: Any) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()
