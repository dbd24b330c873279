"""Neuron dynamics, defined once: each framework's own update, fire and reset order, step by step.

A trace is only as exact as the neuron that replays it: snnTorch's ``Leaky`` decays the membrane,
adds the input and subtracts the *previous* step's spike times the threshold (``reset_delay``),
firing on ``mem > threshold``; SpikingJelly's ``IFNode`` charges, fires on ``v >= v_threshold`` and
resets in the same step. Written as one formula ("v = (1 - leak) v + I; spike when v >= threshold;
then reset") the two disagree on a few percent of spike trains. This module states each
framework's order as it is in its source, in float32 operations in that order, so a recorded
trace is reproduced bit for bit (tests/test_neurons.py runs the frameworks' own modules beside
these).

Each model is a frozen dataclass with ``state(shape)`` (the zero state before the first step) and
``step(state, current) -> (spikes, state)`` on NumPy arrays; ``run(model, currents)`` steps a
(T, ...) sequence. Parameters are float32 scalars or arrays broadcast over the neurons (a learned
per-neuron beta or threshold).

Sources (read in the installed packages): snnTorch 0.9-1.0 ``_neurons/leaky.py``, ``synaptic.py``
and ``neurons.py`` (``fire``: Heaviside of ``mem - threshold``, strictly positive;
``mem_reset``: the same of the state before the update); SpikingJelly ``activation_based``
``neuron/base_node.py`` and ``lif.py`` (charge, then ``heaviside(v - v_threshold)``, which is
``>= 0``, then hard reset ``spike * v_reset + (1 - spike) * v`` or soft reset ``v - v_threshold *
spike``).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

import numpy as np

from .errors import WorkloadError, did_you_mean

RESETS = ("subtract", "zero", "none")
F32 = np.float32


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=F32)


def _above(v: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """snnTorch's Heaviside: 1 where ``v - threshold > 0`` (float32)."""
    return ((v - threshold) > 0).astype(F32)


def _at_or_above(v: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """SpikingJelly's Heaviside: 1 where ``v - threshold >= 0`` (float32)."""
    return ((v - threshold) >= 0).astype(F32)


def _check_reset(reset: str) -> None:
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, not {reset!r}")


def _reset_now(mem: np.ndarray, spk: np.ndarray, r: np.ndarray, thr: np.ndarray, reset: str) -> np.ndarray:
    """snnTorch's reset right after the spike (``reset_delay=False``): ``do = spk - r`` (the
    previous step's reset is already in, so none is done twice), then ``mem - do * thr``
    (subtract) or ``mem - do * mem`` (zero)."""
    do = spk - r
    if reset == "subtract":
        return mem - do * thr
    if reset == "zero":
        return mem - do * mem
    return mem


@dataclass(frozen=True)
class SnnTorchLeaky:
    """snnTorch ``Leaky``: first-order leaky integrate-and-fire.

    With ``r = H(mem[t-1] - thr)`` (did the previous state fire):
    ``subtract``: ``mem = beta * mem + x - r * thr``; ``zero``: ``mem = beta * ((1 - r) * mem) + x``;
    ``none``: ``mem = beta * mem + x``; then ``spk = H(mem - thr)``. With ``reset_delay=False`` the
    spike's own reset follows at once: ``mem -= (spk - r) * thr`` (subtract) or ``mem -= (spk -
    r) * mem`` (zero). ``beta`` is clamped to [0, 1] as snnTorch does."""

    beta: Any
    threshold: Any = 1.0
    reset: str = "subtract"
    reset_delay: bool = True

    def __post_init__(self) -> None:
        _check_reset(self.reset)

    def state(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"mem": np.zeros(shape, F32)}

    def step(self, state: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        thr = _f32(self.threshold)
        beta = np.clip(_f32(self.beta), F32(0), F32(1))
        mem = state["mem"]
        r = _above(mem, thr)
        if self.reset == "zero":
            mem = (F32(1) - r) * mem
        mem = beta * mem + _f32(x)
        if self.reset == "subtract":
            mem = mem - r * thr
        spk = _above(mem, thr)
        if not self.reset_delay:
            mem = _reset_now(mem, spk, r, thr, self.reset)
        return spk, {"mem": mem}


@dataclass(frozen=True)
class SnnTorchSynaptic:
    """snnTorch ``Synaptic``: a synaptic current and a membrane, both leaky (CubaLIF).

    With ``r = H(mem[t-1] - thr)``: ``syn = alpha * syn + x``; ``mem = beta * mem + syn``, then
    ``subtract``: ``mem -= r * thr``; ``zero``: ``mem -= mem * r`` (the whole new membrane is
    discarded; the current is kept, as snnTorch's ``_base_zero`` does); then ``spk = H(mem -
    thr)`` and, with ``reset_delay=False``, the immediate reset as in :class:`SnnTorchLeaky`."""

    alpha: Any
    beta: Any
    threshold: Any = 1.0
    reset: str = "subtract"
    reset_delay: bool = True

    def __post_init__(self) -> None:
        _check_reset(self.reset)

    def state(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"syn": np.zeros(shape, F32), "mem": np.zeros(shape, F32)}

    def step(self, state: dict[str, np.ndarray], x: np.ndarray,
             rec: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One step; ``rec`` (RSynaptic's recurrent current) is added after the input."""
        thr = _f32(self.threshold)
        alpha = np.clip(_f32(self.alpha), F32(0), F32(1))
        beta = np.clip(_f32(self.beta), F32(0), F32(1))
        syn, mem = state["syn"], state["mem"]
        r = _above(mem, thr)
        syn = alpha * syn + _f32(x)
        if rec is not None:
            syn = syn + _f32(rec)
        mem = beta * mem + syn
        if self.reset == "subtract":
            mem = mem - r * thr
        elif self.reset == "zero":
            mem = mem - mem * r
        spk = _above(mem, thr)
        if not self.reset_delay:
            mem = _reset_now(mem, spk, r, thr, self.reset)
        return spk, {"syn": syn, "mem": mem}


@dataclass(frozen=True)
class SpikingJellyIF:
    """SpikingJelly ``IFNode``: ``v = v + x``; ``spike = H(v - v_th)`` (``>= 0``); hard reset to
    ``v_reset``, or soft reset (``v_reset=None``) ``v = v - v_th * spike``."""

    v_threshold: Any = 1.0
    v_reset: float | None = 0.0

    def state(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"v": np.full(shape, F32(0.0 if self.v_reset is None else self.v_reset), F32)}

    def charge(self, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        return v + _f32(x)

    def step(self, state: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        thr = _f32(self.v_threshold)
        v = self.charge(state["v"], x)
        spike = _at_or_above(v, thr)
        if self.v_reset is None:
            v = v - thr * spike
        else:
            v = spike * F32(self.v_reset) + (F32(1) - spike) * v
        return spike, {"v": v}


@dataclass(frozen=True)
class SpikingJellyLIF(SpikingJellyIF):
    """SpikingJelly ``LIFNode``: charge ``v = v + (x - (v - v_reset)) / tau`` with
    ``decay_input``, ``v = v - (v - v_reset) / tau + x`` without (``v_reset`` taken as 0 for a
    soft reset); fire and reset as :class:`SpikingJellyIF`."""

    tau: Any = 2.0
    decay_input: bool = True

    def charge(self, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        tau = _f32(self.tau)
        rest = F32(0.0 if self.v_reset is None else self.v_reset)
        if self.decay_input:
            return v + (_f32(x) - (v - rest)) / tau
        return v - (v - rest) / tau + _f32(x)


@dataclass(frozen=True)
class SpikingJellyPLIF(SpikingJellyIF):
    """SpikingJelly ``ParametricLIFNode``: the decay is ``q = sigmoid(w)`` (a learned reciprocal
    of tau) and it multiplies: ``v = v + (x - (v - v_reset)) * q`` with ``decay_input``, ``v = v -
    (v - v_reset) * q + x`` without. ``q`` is stored as the float32 value the framework computed
    (``w.sigmoid()``), not recomputed, so no last-bit difference of two sigmoid implementations
    enters."""

    q: Any = 0.5
    decay_input: bool = True

    def charge(self, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        q = _f32(self.q)
        rest = F32(0.0 if self.v_reset is None else self.v_reset)
        if self.decay_input:
            return v + (_f32(x) - (v - rest)) * q
        return v - (v - rest) * q + _f32(x)


@dataclass(frozen=True)
class SnnTorchRLeaky(SnnTorchLeaky):
    """snnTorch ``RLeaky``: a :class:`SnnTorchLeaky` whose input gets its own previous spikes
    through a recurrent weight (``rec``, computed by the graph's one-step delayed edge) added
    last: ``base = (beta * mem + x) + rec``; ``subtract``: ``mem = base - r * thr``; ``zero``:
    ``mem = base - r * base`` (unlike ``Leaky``, the new membrane is discarded, not the old one).
    The order of the two additions is snnTorch's, and float32 rounding depends on it."""

    def step(self, state: dict[str, np.ndarray], x: np.ndarray,
             rec: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        thr = _f32(self.threshold)
        beta = np.clip(_f32(self.beta), F32(0), F32(1))
        mem = state["mem"]
        r = _above(mem, thr)
        base = beta * mem + _f32(x)
        if rec is not None:
            base = base + _f32(rec)
        if self.reset == "subtract":
            mem = base - r * thr
        elif self.reset == "zero":
            mem = base - r * base
        else:
            mem = base
        spk = _above(mem, thr)
        if not self.reset_delay:
            mem = _reset_now(mem, spk, r, thr, self.reset)
        return spk, {"mem": mem}


@dataclass(frozen=True)
class SnnTorchRSynaptic(SnnTorchSynaptic):
    """snnTorch ``RSynaptic``: a :class:`SnnTorchSynaptic` whose synaptic current gets its own
    previous spikes through a recurrent weight (``rec``, the graph's one-step delayed edge), added
    after the input: ``syn = (alpha * syn + x) + rec``; ``mem = beta * mem + syn``; ``subtract``:
    ``mem -= r * thr``; ``zero``: ``mem -= mem * r`` (the current is kept); then ``spk = H(mem -
    thr)``. snnTorch 0.9-1.0's ``reset_delay=False`` branch of ``RSynaptic.forward`` updates a
    local variable only and never reaches the state, so the dynamics are these for either value
    (``reset_delay`` must stay True here: the model has no other)."""

    def __post_init__(self) -> None:
        _check_reset(self.reset)
        if not self.reset_delay:
            raise ValueError("snnTorch's RSynaptic has no immediate reset: reset_delay must be True")

    # step: SnnTorchSynaptic's, with ``rec`` added to the current after the input


@dataclass(frozen=True)
class SnnsimIF:
    """Format v1's neuron, as ``snnsim verify`` computes it in float64: ``v = (1 - leak) v + I``
    (``v + I`` when ``leak`` is 0); spike when ``v >= threshold``; then ``v -= threshold``
    (``subtract``) or ``v = 0`` (``zero``). v1 traces migrate to it unchanged."""

    dtype: ClassVar[type] = np.float64  # its parameters as neuron_model stores them

    threshold: Any = 1.0
    leak: float = 0.0
    reset: str = "subtract"

    def __post_init__(self) -> None:
        if self.reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be subtract or zero, not {self.reset!r}")

    def state(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"v": np.zeros(shape, np.float64)}

    def step(self, state: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        thr = np.asarray(self.threshold, np.float64)
        v = state["v"]
        v = v * (1.0 - float(self.leak)) + x if self.leak else v + x
        spike = v >= thr
        v = v - spike * thr if self.reset == "subtract" else np.where(spike, 0.0, v)
        return spike.astype(np.float64), {"v": v}


@dataclass(frozen=True)
class NirLIF:
    """NIR's ``LIF`` (and ``IF`` with ``tau=None``), forward Euler with step ``dt`` as snnTorch's
    and SpikingJelly's NIR exports use it, in float64: ``v = (1 - a) v + a v_leak + a r I`` with
    ``a = dt / tau`` (IF: ``v = v + dt r I``); spike when ``v > v_threshold``; then ``v =
    v_reset``. (``export/nir.py``'s functional model, which divides the membrane by the input gain
    to reach format v1's form, gives the same spikes.)"""

    dtype: ClassVar[type] = np.float64

    dt: Any = 1e-4
    r: Any = 1.0
    tau: Any = None
    v_leak: Any = 0.0
    v_threshold: Any = 1.0
    v_reset: Any = 0.0

    def state(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"v": np.zeros(shape, np.float64)}

    def charge(self, state: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
        v, r, dt = state["v"], np.float64(1) * self.r, np.float64(self.dt)
        if self.tau is None:
            return {"v": v + dt * r * x}
        a = dt / np.asarray(self.tau, np.float64)
        return {"v": (1 - a) * v + a * np.asarray(self.v_leak, np.float64) + a * r * x}

    def step(self, state: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        state = self.charge(state, np.asarray(x, np.float64))
        v = state["v"]
        spike = v > np.asarray(self.v_threshold, np.float64)
        state["v"] = np.where(spike, np.asarray(self.v_reset, np.float64), v)
        return spike.astype(np.float64), state


@dataclass(frozen=True)
class NirCubaLIF(NirLIF):
    """NIR's ``CubaLIF``: a synaptic current ``I = (1 - b) I + b w_in S`` (``b = dt / tau_syn``)
    drives the LIF membrane with ``tau = tau_mem``; fire and reset as :class:`NirLIF`."""

    tau_syn: Any = 1.0
    w_in: Any = 1.0

    def state(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"i": np.zeros(shape, np.float64), "v": np.zeros(shape, np.float64)}

    def charge(self, state: dict[str, np.ndarray], x: np.ndarray) -> dict[str, np.ndarray]:
        b = np.float64(self.dt) / np.asarray(self.tau_syn, np.float64)
        i = (1 - b) * state["i"] + b * np.asarray(self.w_in, np.float64) * x
        return {"i": i, **super().charge({"v": state["v"]}, i)}


@dataclass(frozen=True)
class NirLI:
    """NIR's ``LI``, a leaky integrator read out by its membrane (no spikes): forward Euler in
    float64, ``v = (1 - a) v + a v_leak + a r I`` with ``a = dt / tau``; its output is ``v``."""

    dtype: ClassVar[type] = np.float64
    spiking: ClassVar[bool] = False

    dt: Any = 1e-4
    tau: Any = 1.0
    r: Any = 1.0
    v_leak: Any = 0.0

    def state(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"v": np.zeros(shape, np.float64)}

    def step(self, state: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        a = np.float64(self.dt) / np.asarray(self.tau, np.float64)
        v = (1 - a) * state["v"] + a * np.asarray(self.v_leak, np.float64) + a * np.asarray(self.r, np.float64) * x
        return v, {"v": v}


@dataclass(frozen=True)
class NirIntegrator:
    """NIR's ``Integrator`` (``dv/dt = r I``), read out by its membrane: ``v = v + dt r I`` in
    float64; its output is ``v``."""

    dtype: ClassVar[type] = np.float64
    spiking: ClassVar[bool] = False

    dt: Any = 1e-4
    r: Any = 1.0

    def state(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        return {"v": np.zeros(shape, np.float64)}

    def step(self, state: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        v = state["v"] + np.float64(self.dt) * np.asarray(self.r, np.float64) * x
        return v, {"v": v}


def is_spiking(model: Any) -> bool:
    """Whether a model (class or instance) gives spikes; readouts (LI, Integrator) give their
    membrane."""
    return getattr(model, "spiking", True)


MODELS: dict[str, type] = {
    "nir.cubalif": NirCubaLIF,
    "nir.integrator": NirIntegrator,
    "nir.li": NirLI,
    "nir.lif": NirLIF,
    "snnsim.if": SnnsimIF,
    "snntorch.leaky": SnnTorchLeaky,
    "snntorch.rleaky": SnnTorchRLeaky,
    "snntorch.rsynaptic": SnnTorchRSynaptic,
    "snntorch.synaptic": SnnTorchSynaptic,
    "spikingjelly.if": SpikingJellyIF,
    "spikingjelly.lif": SpikingJellyLIF,
    "spikingjelly.plif": SpikingJellyPLIF,
}


def model_name(model: Any) -> str:
    """The registered name of a neuron model instance (the ``model`` of a v2 neuron node)."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise KeyError(type(model).__name__)


def neuron_model(name: Any, params: dict[str, Any], key: str = "neuron", source: str | None = None) -> Any:
    """The model ``name`` with ``params``, checked: a registered name, only its parameters, each
    of its type (booleans as booleans, a reset among :data:`RESETS`, ``v_reset`` a number or None,
    numbers finite, float32 scalars or per-neuron arrays). Raises WorkloadError naming ``key``."""
    def fail(what: str, k: str, expected: str, found: Any, hint: str | None = None) -> WorkloadError:
        return WorkloadError(what, file=source, key=f"{key}.{k}", expected=expected, found=repr(found)[:200],
                             suggestion=hint)

    if name not in MODELS:
        raise fail("unknown neuron model", "model", f"one of {', '.join(MODELS)}", name, did_you_mean(str(name), MODELS))
    cls = MODELS[name]
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for k, v in params.items():
        if k not in known:
            raise fail(f"{name} has no parameter {k!r}", k, f"one of {', '.join(known)}", k, did_you_mean(k, known))
        default = known[k].default
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise fail("expected true or false", k, "a boolean", v)
        elif k == "reset":
            if v not in RESETS:
                raise fail("unknown reset mechanism", k, " or ".join(RESETS), v)
        elif k == "v_reset" and v is None:
            pass
        else:
            arr = np.asarray(v) if not isinstance(v, bool) else None
            if arr is None or arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
                raise fail("expected a finite number or array of numbers", k, "a number", v)
            dtype = getattr(cls, "dtype", F32)  # the frameworks' float32, or v1's float64
            v = arr.astype(dtype) if arr.ndim else dtype(arr)
        out[k] = v
    missing = [f.name for f in fields(cls) if f.name not in out and f.default is MISSING]
    if missing:
        raise fail(f"{name} needs {', '.join(missing)}", missing[0], "a value", None)
    try:
        return cls(**out)
    except ValueError as e:  # a value the model's own check refuses (e.g. a reset it does not have)
        raise fail(f"invalid {name} parameters", "params", "parameters the model accepts", str(e)) from None


def run(model: Any, currents: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Step ``model`` over ``currents`` (T, ...) from its zero state; (spikes (T, ...) bool, the
    state after each step as arrays (T, ...) per state variable). A readout model (LI,
    Integrator: :func:`is_spiking` false) gives no spikes: read its ``v`` from the states."""
    return run_recurrent(model, currents, None)


def run_recurrent(model: Any, currents: np.ndarray, recurrent: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`run` with a recurrent input: ``recurrent(previous spikes) -> current``, given to the
    model's ``step`` as ``rec`` (None: no recurrence). Spikes before the first step are zero."""
    dtype = getattr(model, "dtype", F32)  # the frameworks' float32, or v1's float64
    currents = np.asarray(currents, dtype=dtype)
    state = model.state(currents.shape[1:])
    spikes = np.zeros(currents.shape, bool)
    trace: dict[str, list[np.ndarray]] = {k: [] for k in state}
    prev = np.zeros(currents.shape[1:], dtype)
    for t in range(currents.shape[0]):
        if recurrent is None:
            spk, state = model.step(state, currents[t])
        else:
            spk, state = model.step(state, currents[t], rec=recurrent(prev))
        prev = spk
        spikes[t] = spk > 0
        for k, v in state.items():
            trace[k].append(v)
    return spikes, {k: np.stack(v) if v else np.zeros(currents.shape, dtype) for k, v in trace.items()}
