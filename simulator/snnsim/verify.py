"""Verification of a spike trace against the arithmetic that made it (``docs/verify.md``).

Every recorded layer is recomputed independently from its *recorded* inputs (the recorded spikes
of its input layers, or the analog ``input`` for a first layer) and its output spikes are
compared with the trace, so a mismatch is localised to one layer.

The core computes with integers: each layer's currents are integers in a per-output-channel
unit ``u`` and its thresholds are integers in that unit (batch norm folded into the threshold),
its membranes are signed ``membrane_bits`` integers that saturate. That path compares bit for
bit. An in-pixel layer is the sensor's analog arithmetic (recomputed in float64), and a leaky
(LIF) neuron cannot be done in integers (float64 too); the report says so for each such layer.

A trace exported from a trained float model (real-valued weights or thresholds) cannot be
reproduced in integers. The float64 path recomputes such a layer from the stored float weights
without quantisation, and a spike train that differs only where the membrane lies within float32
rounding of the threshold (``FLOAT_RTOL``) is counted as within tolerance, not as a mismatch.
``arithmetic="auto"`` picks the integer path for a layer whose weights, input and thresholds lie
on the core's integer grids, and the float64 path otherwise.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import SnnsimError, UsageError
from .workload.graph import Layer, check_graph
from .workload.trace import Workload, _check_arrays

STATUSES = ("match", "mismatch", "skipped", "not recorded")
#: ``verify_workload(arithmetic=...)``: per layer as the trace allows, always the core's integers
#: (in-pixel and LIF layers aside), or always float64 from the float weights.
ARITHMETICS = ("auto", "integer", "float64")

#: theta / u must be within this *relative* distance (times max(1, |theta / u|)) of an integer:
#: thresholds are stored as float32, so theta_int * u is exact only to ~6e-8 relative.
THRESHOLD_TOLERANCE = 1e-6
#: weights / inputs must be within this distance (in grid steps) of their integer grid.
GRID_TOLERANCE = 1e-4
#: float64 path: a spike train whose first differing step has |v - theta| <= FLOAT_RTOL x
#: (|theta| + acc) is float rounding ("within tolerance"), not a mismatch; acc = sum |x| |w|
#: integrated with the same leak, the magnitude of everything summed into the membrane.
#: Why 1e-5: the recorded spikes come from float32 arithmetic, where every addition or product is
#: off by at most u = 2^-24 (half of float32's epsilon 2^-23 ~ 1.2e-7) of its magnitude. After n
#: terms (the synapses, then the T membrane updates) a float32 membrane lies within about
#: n u (|theta| + acc) of the exact one in the worst case (sequential summation). 1e-5 is ~84
#: epsilons = 168 u: a summation depth of 168 terms in that worst case (the exported digits model's
#: deepest layer has 72 synapses + 4 steps), and far deeper sums with the blocked or pairwise
#: summation of BLAS and convolution kernels, whose error grows like log2 n (on average like
#: sqrt(n) u: ~68 u for the 4,608 terms of a 3x3x512 convolution). A real error (a wrong weight,
#: threshold or input spike) moves the membrane by a whole weight level or more, and 1e-5 x acc
#: stays below one level while acc is below 1e5 levels; a wrong output spike is caught unless the
#: membrane lay that close to the threshold, where rounding could have decided it. The format v2
#: verifier (``snnsim.verify_graph``) uses the same number as its default tolerance; the export's
#: neuron self-check needs none (``snnsim.export.checks``: the neuron models are exact).
FLOAT_RTOL = 1e-5

_INTEGER = "integer"
_IN_PIXEL = "float64 (in-pixel)"
_LIF = "float64 (LIF)"
_FLOAT = "float64 (float weights)"  # a synaptic layer on the float64 path
_FLOAT_PLAIN = "float64"  # a layer without weights (add, pool, flatten with a neuron) on that path
_NONE = "none"

#: ``first_mismatch["reason"]`` by the layer's arithmetic.
REASONS = {
    _INTEGER: "differs from the exact recomputation",
    _IN_PIXEL: "differs from the float64 recomputation (compared exactly)",
    _LIF: "differs from the float64 recomputation (compared exactly)",
    _FLOAT: "beyond float tolerance",
    _FLOAT_PLAIN: "beyond float tolerance",
}

# Elements of one im2col block (bounds the memory of a convolution to ~64 MB in float32).
_BLOCK_ELEMENTS = 1 << 24


@dataclass
class LayerCheck:
    """The verdict on one layer.

    ``neurons_checked`` = samples x neurons of the layer (each over all time steps);
    ``mismatches`` = how many of those have a spike train that differs in at least one step;
    ``bits_differing`` = how many (sample, step, neuron) spike bits of those trains differ;
    ``first_mismatch`` = the earliest of those bits in (sample, step, neuron) order;
    ``within_tolerance`` = (float64 path only) how many spike trains differ only by float
    rounding: at their first differing step the membrane is within ``FLOAT_RTOL`` of the
    threshold. They are not counted in ``mismatches`` and do not make the status "mismatch".
    """

    name: str
    op: str
    status: str
    neurons_checked: int = 0
    mismatches: int = 0
    first_mismatch: dict[str, Any] | None = None
    arithmetic: str = _NONE
    note: str = ""
    bits_differing: int = 0
    within_tolerance: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyResult:
    """Per-layer checks of one trace; ``ok`` when no layer mismatches."""

    layers: list[LayerCheck]
    model: str = "unnamed"
    source: str = "<memory>"
    samples: int = 0
    time_steps: int = 0
    membrane_bits: int = 16
    input_bits: int = 8
    arithmetic: str = "auto"
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {s: sum(1 for c in self.layers if c.status == s) for s in STATUSES}

    @property
    def ok(self) -> bool:
        return all(c.status != "mismatch" for c in self.layers)

    def layer(self, name: str) -> LayerCheck:
        for c in self.layers:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "model": self.model, "samples": self.samples,
                "time_steps": self.time_steps, "membrane_bits": self.membrane_bits,
                "input_bits": self.input_bits, "arithmetic": self.arithmetic, "ok": self.ok,
                "counts": dict(self.counts), "within_tolerance": self.within_tolerance,
                "layers": [c.to_dict() for c in self.layers]}

    @property
    def within_tolerance(self) -> int:
        """Spike trains, over all layers, that differ only by float rounding."""
        return sum(c.within_tolerance for c in self.layers)

    def summary(self) -> str:
        c = self.counts
        verdict = "OK" if self.ok else "FAILED"
        within = self.within_tolerance
        tol = f"; {within} spike train(s) within float tolerance" if within else ""
        return (f"{verdict}: {c['match']} match, {c['mismatch']} mismatch, {c['skipped']} skipped, "
                f"{c['not recorded']} not recorded{tol} ({self.model}, {self.samples} samples, "
                f"{self.time_steps} steps, {self.settings()})")

    def settings(self) -> str:
        """How the layers were recomputed, for the summary line."""
        return f"{self.membrane_bits}-bit membranes, {self.input_bits}-bit inputs, arithmetic {self.arithmetic}"

    def format_table(self) -> str:
        """A plain-text table, one row per layer, then the summary line."""
        head = ("layer", "op", "arithmetic", "status", "neurons", "mismatches", "within tol", "first mismatch",
                "note")
        rows = [head]
        for c in self.layers:
            compared = c.status in ("match", "mismatch")
            rows.append((c.name, c.op, c.arithmetic, c.status, str(c.neurons_checked) if c.neurons_checked else "-",
                         str(c.mismatches) if compared else "-", str(c.within_tolerance) if compared else "-",
                         _describe_mismatch(c.first_mismatch), c.note))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = []
        for r in rows:
            lines.append("  ".join(r[i].ljust(widths[i]) for i in range(len(widths))) + "  " + r[-1])
        lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 4)
        return "\n".join(line.rstrip() for line in lines) + "\n" + self.summary()


def _describe_mismatch(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    pos = ",".join(str(p) for p in m["position"])
    return f"sample {m['sample']} step {m['step']} neuron {m['neuron']} ({pos}): expected {m['expected']}, recorded {m['recorded']}"


# ----------------------------------------------------------------------------- entry point

def verify_workload(wl: Workload, membrane_bits: int = 16, input_bits: int = 8,
                    arithmetic: str = "auto") -> VerifyResult:
    """Recompute every recorded layer of ``wl`` from its recorded inputs and compare with the
    recorded spikes. ``membrane_bits``: signed, saturating membrane width (``core.membrane_bits``);
    ``input_bits``: unsigned width of the analog input as an encoding layer reads it
    (``core.input_bits``). ``arithmetic``: ``"integer"`` = the core's integer arithmetic, bit for
    bit; ``"float64"`` = float64 from the stored float weights, spike trains that differ within
    float rounding (``FLOAT_RTOL``) counted apart; ``"auto"`` = per layer, integer when the
    layer's weights, input and thresholds are on the core's integer grids, float64 otherwise.
    In-pixel layers keep their own float64 sensor path under every choice."""
    if not isinstance(wl, Workload):
        raise UsageError("verify needs a workload", key="wl", expected="a snnsim Workload (load_workload)",
                         found=type(wl).__name__)
    membrane_bits = _check_bits("membrane_bits", membrane_bits, 2, 32)
    input_bits = _check_bits("input_bits", input_bits, 1, 16)
    if not isinstance(arithmetic, str) or arithmetic not in ARITHMETICS:
        raise UsageError("unknown arithmetic", key="arithmetic", expected=" or ".join(ARITHMETICS),
                         found=repr(arithmetic))
    try:  # an in-memory workload gets the writer's checks (and its layers' spiking flags)
        check_graph(wl.layers, wl.input_shape)
        _check_arrays(wl)
    except SnnsimError as e:
        raise type(e)(e.message, file=e.file or wl.source, key=e.key, expected=e.expected, found=e.found,
                      suggestion=e.suggestion) from None
    checker = _Checker(wl, membrane_bits, input_bits, arithmetic)
    checks = [checker.check(layer) for layer in wl.layers]
    return VerifyResult(layers=checks, model=wl.model, source=wl.source, samples=wl.samples,
                        time_steps=wl.time_steps, membrane_bits=membrane_bits, input_bits=input_bits,
                        arithmetic=arithmetic)


def _check_bits(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise UsageError(f"{name} out of range", key=name, expected=f"an integer in {lo}..{hi}",
                         found=repr(value))
    return int(value)


# ----------------------------------------------------------------------------- arithmetic

def _exact_dtype(bound: float) -> Any:
    """A dtype in which sums of integer products are exact when every partial sum is <= bound."""
    if bound < 2 ** 24:
        return np.float32
    if bound < 2 ** 53:
        return np.float64
    return np.int64


def _conv(x: np.ndarray, wq: np.ndarray, stride: tuple[int, ...], padding: tuple[int, ...],
          groups: int, bound: float) -> np.ndarray:
    """Exact integer grouped N-d convolution (cross-correlation), zero padding:
    x (B, C, *S) integers, wq (C_o, C/g, *k) integers -> int64 (B, C_o, *S_o)."""
    return _correlate(x, wq, stride, padding, groups, _exact_dtype(bound), exact=True)


def _conv_float(x: np.ndarray, w: np.ndarray, stride: tuple[int, ...], padding: tuple[int, ...],
                groups: int) -> np.ndarray:
    """float64 grouped N-d convolution (cross-correlation), zero padding -> float64 (B, C_o, *S_o)."""
    return _correlate(x, w, stride, padding, groups, np.float64, exact=False)


def _correlate(x: np.ndarray, wq: np.ndarray, stride: tuple[int, ...], padding: tuple[int, ...],
               groups: int, dt: Any, exact: bool) -> np.ndarray:
    """im2col convolution in ``dt``; ``exact``: integer sums, rounded back to int64."""
    nd = x.ndim - 2
    kernel = tuple(wq.shape[2:])
    if any(padding):
        x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    win = sliding_window_view(x, kernel, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    b = win.shape[0]
    out_sp = win.shape[2:2 + nd]
    n_out = math.prod(out_sp)
    co, cg = wq.shape[:2]
    cog = co // groups
    k = cg * math.prod(kernel)
    res = np.empty((b, n_out, co), dtype=np.int64 if exact else np.float64)
    chunk = max(1, _BLOCK_ELEMENTS // max(1, n_out * k))
    for g in range(groups):
        wg = np.ascontiguousarray(wq[g * cog:(g + 1) * cog].reshape(cog, k).T).astype(dt)
        part = win[:, g * cg:(g + 1) * cg]
        for b0 in range(0, b, chunk):
            blk = np.moveaxis(part[b0:b0 + chunk], 1, 1 + nd)  # (b, *S_o, C/g, *k)
            patches = blk.reshape(-1, k).astype(dt)
            prod = patches @ wg
            if exact and dt is not np.int64:
                prod = np.rint(prod)
            res[b0:b0 + chunk, :, g * cog:(g + 1) * cog] = prod.reshape(-1, n_out, cog).astype(res.dtype)
    return np.moveaxis(res, 2, 1).reshape(b, co, *out_sp)


def _linear(x: np.ndarray, wq: np.ndarray, bound: float) -> np.ndarray:
    dt = _exact_dtype(bound)
    prod = x.astype(dt) @ wq.T.astype(dt)
    if dt is not np.int64:
        prod = np.rint(prod)
    return prod.astype(np.int64)


def _quantise_weights(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sign-magnitude weight levels of each output channel: alpha_c = max |w| of the channel,
    w_q = round(w / alpha_c * L), L = max(1, 2^(bits-1) - 1). Returns (w_q int64, alpha (C,),
    on_grid: every weight within GRID_TOLERANCE of its level)."""
    w = np.asarray(w, dtype=np.float64)
    levels = max(1, 2 ** (bits - 1) - 1)
    flat = w.reshape(w.shape[0], -1)
    alpha = np.abs(flat).max(axis=1)
    safe = np.where(alpha > 0, alpha, 1.0)
    scaled = flat / safe[:, None] * levels
    wq = np.rint(scaled)
    on_grid = bool(np.all(np.abs(scaled - wq) <= GRID_TOLERANCE))
    return wq.astype(np.int64).reshape(w.shape), alpha, on_grid


def _if_int(cur: np.ndarray, theta: np.ndarray, bits: int, reset: str) -> tuple[np.ndarray, int, int]:
    """Integer IF: cur (S, T, C, P) int64, theta (C,) int64 -> spikes (S, T, C, P) and the numbers
    of membrane updates saturated at the top and at the bottom of the signed ``bits`` range."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    th = theta.reshape(1, -1, 1)
    s_, t_ = cur.shape[:2]
    v = np.zeros((s_,) + cur.shape[2:], dtype=np.int64)
    spikes = np.empty(cur.shape, dtype=bool)
    top = bottom = 0
    for t in range(t_):
        v += cur[:, t]
        top += int(np.count_nonzero(v > hi))
        bottom += int(np.count_nonzero(v < lo))
        np.clip(v, lo, hi, out=v)
        s = v >= th
        spikes[:, t] = s
        if reset == "subtract":
            v -= s * th
        else:
            v[s] = 0
    return spikes, top, bottom


def _if_float(cur: np.ndarray, theta: np.ndarray, leak: float, reset: str) -> np.ndarray:
    """float64 IF/LIF: v = (1 - leak) v + I; spike v >= theta; reset. cur (S, T, C, P)."""
    th = np.asarray(theta, dtype=np.float64).reshape(1, -1, 1)
    s_, t_ = cur.shape[:2]
    v = np.zeros((s_,) + cur.shape[2:], dtype=np.float64)
    spikes = np.empty(cur.shape, dtype=bool)
    keep = 1.0 - leak
    for t in range(t_):
        v = v * keep + cur[:, t] if leak else v + cur[:, t]
        s = v >= th
        spikes[:, t] = s
        if reset == "subtract":
            v -= s * th
        else:
            v[s] = 0.0
    return spikes


def _if_float_tol(cur: np.ndarray, mag: np.ndarray, theta: np.ndarray, leak: float,
                  reset: str) -> tuple[np.ndarray, np.ndarray]:
    """float64 IF/LIF as ``_if_float``, and at every step whether the membrane (after integration)
    lies within float rounding of the threshold: |v - theta| <= FLOAT_RTOL (|theta| + acc), with
    acc = (1 - leak) acc + |I| (``mag``, the magnitude sum of the current's terms)."""
    th = np.asarray(theta, dtype=np.float64).reshape(1, -1, 1)
    s_, t_ = cur.shape[:2]
    v = np.zeros((s_,) + cur.shape[2:], dtype=np.float64)
    acc = np.zeros_like(v)
    spikes = np.empty(cur.shape, dtype=bool)
    near = np.empty(cur.shape, dtype=bool)
    keep = 1.0 - leak
    for t in range(t_):
        v = v * keep + cur[:, t] if leak else v + cur[:, t]
        acc = acc * keep + mag[:, t] if leak else acc + mag[:, t]
        s = v >= th
        spikes[:, t] = s
        near[:, t] = np.abs(v - th) <= FLOAT_RTOL * (np.abs(th) + acc)
        if reset == "subtract":
            v -= s * th
        else:
            v[s] = 0.0
    return spikes, near


def _membrane_trace(cur: np.ndarray, theta: float, leak: float, reset: str, bits: int | None) -> list:
    """Membrane after integration at each step of one neuron (cur (T,)); integer when bits."""
    out = []
    v: Any = 0 if bits else 0.0
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if bits else (None, None)
    for i in cur:
        if bits:
            v = min(max(v + int(i), lo), hi)
        else:
            v = v * (1.0 - leak) + float(i) if leak else v + float(i)
        out.append(v)
        if v >= theta:
            v = v - theta if reset == "subtract" else (0 if bits else 0.0)
    return out


# ----------------------------------------------------------------------------- per layer

class _Checker:
    def __init__(self, wl: Workload, membrane_bits: int, input_bits: int, arithmetic: str = "auto") -> None:
        self.wl = wl
        self.bits = membrane_bits
        self.input_bits = input_bits
        self.arithmetic = arithmetic
        self._spikes: dict[str, np.ndarray] = {}
        self._xq: tuple[np.ndarray, bool] | None = None
        self._wq: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
        arith = wl.provenance.get("arithmetic") if isinstance(wl.provenance, dict) else None
        made = arith.get("membrane_bits") if isinstance(arith, dict) else None
        self.made_with_bits = made if isinstance(made, int) and not isinstance(made, bool) else None

    def recorded(self, name: str) -> np.ndarray:
        """Recorded spikes of a layer as uint8 (S, T, *shape)."""
        if name not in self._spikes:
            self._spikes[name] = self.wl.spikes(name).view(np.uint8)
        return self._spikes[name]

    def quantised_input(self) -> tuple[np.ndarray, bool]:
        """x_q = round(x (2^b - 1)) as int64, and whether the input lay on that grid."""
        if self._xq is None:
            levels = 2 ** self.input_bits - 1
            scaled = self.wl.input.astype(np.float64) * levels
            xq = np.rint(scaled)
            self._xq = xq.astype(np.int64), bool(np.all(np.abs(scaled - xq) <= GRID_TOLERANCE))
        return self._xq

    def quantised_weights(self, layer: Layer) -> tuple[np.ndarray, np.ndarray, bool]:
        """``_quantise_weights`` of a synaptic layer (w_q, alpha, on_grid), once per layer."""
        if layer.name not in self._wq:
            self._wq[layer.name] = _quantise_weights(self.wl.weight(layer.name), layer.weight_bits)
        return self._wq[layer.name]

    # -- dispatch

    def check(self, layer: Layer) -> LayerCheck:
        if not layer.spiking:
            return LayerCheck(layer.name, layer.op, "not recorded", note="not recorded: nothing to compare")
        try:
            if layer.neuron is None:
                return self._structural(layer)
            return self._neuron_layer(layer)
        except _Skip as e:
            return LayerCheck(layer.name, layer.op, "skipped", note=str(e))

    # -- structural layers (no neuron): compare directly

    def _structural(self, layer: Layer) -> LayerCheck:
        src = self.recorded(layer.inputs[0])
        s_, t_ = src.shape[:2]
        if layer.op == "flatten":
            expected = src.reshape(s_, t_, -1)
            note = "the recorded input, reshaped"
        else:  # maxpool of spikes = OR over the window
            x = src.reshape(s_ * t_, *src.shape[2:])
            nd = len(layer.kernel)
            if any(layer.padding):
                x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in layer.padding])
            win = sliding_window_view(x, tuple(layer.kernel), axis=tuple(range(2, 2 + nd)))
            win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in layer.stride)]
            expected = win.max(axis=tuple(range(-nd, 0)))
            note = "OR of the recorded input spikes over each window"
        expected = expected.reshape(s_, t_, -1).astype(bool)
        return self._compare(layer, expected, _INTEGER, [note])

    # -- layers with a neuron

    def _neuron_layer(self, layer: Layer) -> LayerCheck:
        notes: list[str] = []
        if layer.op in ("conv2d", "conv3d", "linear"):
            if not self.wl.has_weights(layer.name):
                raise _Skip("no weights in the trace: skipped")
            if layer.inputs == ["input"] and layer.extra.get("in_pixel"):
                return self._in_pixel_layer(layer)
            if layer.extra.get("in_pixel"):
                notes.append("in_pixel flag ignored: the layer does not read the analog input")
        elif layer.op not in ("add", "avgpool", "maxpool", "flatten"):  # pragma: no cover - check_graph
            raise _Skip(f"op {layer.op} not supported")
        theta = self._thresholds(layer, layer.out_shape[0])
        mode = self.arithmetic
        if mode == "auto":
            off = self._off_integer_grid(layer, theta)
            if off:
                notes.append("auto chose float64: " + "; ".join(off))
                mode = "float64"
        if mode == "float64":
            return self._float_layer(layer, theta, notes)
        return self._integer_layer(layer, theta, notes)

    def _in_pixel_layer(self, layer: Layer) -> LayerCheck:
        """The sensor's float64 path (under every arithmetic)."""
        neuron = layer.neuron
        cur = self._in_pixel_current(layer)
        notes = ["the sensor's analog arithmetic (P2M transfer curve), recomputed in float64 "
                 "with the float thresholds, not the core's"]
        s_, t_ = self.wl.samples, self.wl.time_steps
        c = layer.out_shape[0]
        cur = cur.reshape(s_, t_, c, -1)
        theta = self._thresholds(layer, c)
        spikes = _if_float(cur, theta, neuron.leak, neuron.reset)
        return self._compare(layer, spikes.reshape(s_, t_, -1), _IN_PIXEL, notes, cur=cur, theta=theta,
                             leak=neuron.leak, int_bits=None)

    def _off_integer_grid(self, layer: Layer, theta: np.ndarray) -> list[str]:
        """Why the integer path cannot reproduce a layer made in float arithmetic (empty: it can).

        The weights must lie on their sign-magnitude grid, an analog input on the input_bits
        grid, and (IF neurons) every threshold within THRESHOLD_TOLERANCE of an integer multiple
        of the current unit."""
        reasons: list[str] = []
        c = layer.out_shape[0]
        b = self.input_bits
        reads_input = layer.inputs == ["input"]
        if layer.op in ("conv2d", "conv3d", "linear"):
            wb = layer.weight_bits
            _, alpha, on_grid = self.quantised_weights(layer)
            levels = max(1, 2 ** (wb - 1) - 1)
            if not on_grid:
                reasons.append(f"weights not on the {wb}-bit sign-magnitude grid of their channel scale")
            unit = alpha / (levels * (2 ** b - 1)) if reads_input else alpha / levels
        elif layer.op == "avgpool":
            unit = np.full(c, 1.0 / math.prod(layer.kernel))
        elif layer.op == "flatten" and reads_input:
            unit = np.full(c, 1.0 / (2 ** b - 1))
        else:
            unit = np.ones(c)
        if reads_input and not self.quantised_input()[1]:
            reasons.append(f"input not on the {b}-bit grid")
        if layer.neuron.leak == 0:
            never = ~(unit > 0)
            ratio = theta / np.where(never, 1.0, unit)
            off = np.abs(ratio - np.rint(ratio)) > THRESHOLD_TOLERANCE * np.maximum(1.0, np.abs(ratio))
            off &= ~never
            if off.any():
                ch = int(np.flatnonzero(off)[0])
                reasons.append(f"threshold not an integer multiple of the current unit in {int(off.sum())} "
                               f"channel(s) (first: channel {ch}, theta/u = {ratio[ch]:.6g})")
        return reasons

    def _integer_layer(self, layer: Layer, theta: np.ndarray, notes: list[str]) -> LayerCheck:
        """The core's integer arithmetic (LIF: quantised currents, float64 dynamics)."""
        neuron = layer.neuron
        c = layer.out_shape[0]  # output channels (the neurons of a flat layer)
        if layer.op in ("conv2d", "conv3d", "linear"):
            cur, unit = self._synaptic_current(layer, notes)
        elif layer.op == "add":
            cur = sum(self.recorded(s).astype(np.int64) for s in layer.inputs)
            unit = np.ones(c)
        elif layer.op in ("avgpool", "maxpool"):
            cur, unit = self._pool_current(layer)
        else:  # flatten
            if layer.inputs == ["input"]:
                xq, on_grid = self.quantised_input()
                if not on_grid:
                    notes.append(f"input not on the {self.input_bits}-bit grid: quantised, may mismatch")
                cur = np.broadcast_to(xq.reshape(xq.shape[0], 1, -1), (xq.shape[0], self.wl.time_steps, xq[0].size))
                unit = np.full(c, 1.0 / (2 ** self.input_bits - 1))
            else:
                src = self.recorded(layer.inputs[0])
                cur = src.reshape(src.shape[0], src.shape[1], -1).astype(np.int64)
                unit = np.ones(c)

        s_, t_ = self.wl.samples, self.wl.time_steps
        cur = cur.reshape(s_, t_, c, -1)
        if neuron.leak > 0:
            notes.append("LIF: the leak cannot be done in integers; verified in float64 with "
                         "v = (1 - leak) v + I u and the float thresholds")
            real = cur * unit.reshape(1, 1, -1, 1)
            spikes = _if_float(real, theta, neuron.leak, neuron.reset)
            return self._compare(layer, spikes.reshape(s_, t_, -1), _LIF, notes, cur=real, theta=theta,
                                 leak=neuron.leak, int_bits=None)
        theta_int = self._integer_thresholds(theta, unit, notes)
        spikes, top, bottom = _if_int(cur, theta_int, self.bits, neuron.reset)
        if top or bottom:
            notes.append(f"membranes saturated at {self.bits} bits ({top} updates above, {bottom} below)")
        made = self.made_with_bits
        if made is not None and made != self.bits:
            notes.append(f"the trace was made for {made}-bit membranes")
        return self._compare(layer, spikes.reshape(s_, t_, -1), _INTEGER, notes, cur=cur, theta=theta_int,
                             leak=0.0, int_bits=self.bits)

    def _float_layer(self, layer: Layer, theta: np.ndarray, notes: list[str]) -> LayerCheck:
        """float64 from the stored float weights (no quantisation) and the raw analog input, with
        the float thresholds, the leak and the reset; no membrane saturation. The currents' terms
        are summed as magnitudes too, for the tolerance."""
        neuron = layer.neuron
        s_, t_ = self.wl.samples, self.wl.time_steps
        c = layer.out_shape[0]
        arithmetic = _FLOAT_PLAIN
        if layer.op in ("conv2d", "conv3d", "linear"):
            arithmetic = _FLOAT
            w = np.asarray(self.wl.weight(layer.name), dtype=np.float64)
            aw = np.abs(w)
            kw = {"stride": layer.stride, "padding": layer.padding, "groups": layer.groups}
            if layer.inputs == ["input"]:
                x = self.wl.input.astype(np.float64)
                if layer.op == "linear":
                    cur, mag = x.reshape(s_, -1) @ w.T, np.abs(x).reshape(s_, -1) @ aw.T
                else:
                    cur, mag = _conv_float(x, w, **kw), _conv_float(np.abs(x), aw, **kw)
                cur = np.broadcast_to(cur.reshape(s_, 1, -1), (s_, t_, cur[0].size))
                mag = np.broadcast_to(mag.reshape(s_, 1, -1), cur.shape)
                notes.append("recomputed in float64 from the analog input and the stored float weights "
                             "(neither quantised)")
            else:
                src = self.recorded(layer.inputs[0])
                x = src.reshape(s_ * t_, *src.shape[2:])
                if layer.op == "linear":
                    xf = x.reshape(s_ * t_, -1).astype(np.float64)
                    cur, mag = xf @ w.T, xf @ aw.T
                else:
                    cur, mag = _conv_float(x, w, **kw), _conv_float(x, aw, **kw)
                cur, mag = cur.reshape(s_, t_, -1), mag.reshape(s_, t_, -1)
                notes.append("recomputed in float64 from the stored float weights (not quantised)")
        elif layer.op == "add":
            cur = sum(self.recorded(s).astype(np.float64) for s in layer.inputs)
            mag = cur
            notes.append("recomputed in float64")
        elif layer.op in ("avgpool", "maxpool"):
            count, _ = self._pool_current(layer)
            cur = count.astype(np.float64)
            if layer.op == "avgpool":
                cur /= math.prod(layer.kernel)
            mag = cur
            notes.append("recomputed in float64")
        else:  # flatten
            if layer.inputs == ["input"]:
                x = self.wl.input.astype(np.float64).reshape(s_, 1, -1)
                cur = np.broadcast_to(x, (s_, t_, x.shape[-1]))
                mag = np.abs(cur)
                notes.append("recomputed in float64 from the analog input (not quantised)")
            else:
                src = self.recorded(layer.inputs[0])
                cur = src.reshape(s_, t_, -1).astype(np.float64)
                mag = cur
                notes.append("recomputed in float64")
        if neuron.leak > 0:
            notes.append("LIF: v = (1 - leak) v + I")
        cur = cur.reshape(s_, t_, c, -1)
        mag = mag.reshape(s_, t_, c, -1)
        spikes, near = _if_float_tol(cur, mag, theta, neuron.leak, neuron.reset)
        return self._compare(layer, spikes.reshape(s_, t_, -1), arithmetic, notes, cur=cur, theta=theta,
                             leak=neuron.leak, int_bits=None, mag=mag, near=near)

    def _thresholds(self, layer: Layer, c: int) -> np.ndarray:
        neuron = layer.neuron
        if neuron.per_channel and layer.name in self.wl.thresholds:
            return np.asarray(self.wl.thresholds[layer.name], dtype=np.float64)
        return np.full(c, float(neuron.threshold))

    def _integer_thresholds(self, theta: np.ndarray, unit: np.ndarray, notes: list[str]) -> np.ndarray:
        never = ~(unit > 0)
        ratio = theta / np.where(never, 1.0, unit)
        theta_int = np.rint(ratio)
        off = np.abs(ratio - theta_int) > THRESHOLD_TOLERANCE * np.maximum(1.0, np.abs(ratio))
        off &= ~never
        if off.any():
            ch = int(np.flatnonzero(off)[0])
            notes.append(f"threshold not an integer multiple of the current unit in {int(off.sum())} "
                         f"channel(s) (first: channel {ch}, theta/u = {ratio[ch]:.6g}); rounded, may mismatch")
        hi = 2 ** (self.bits - 1)
        if never.any():
            notes.append(f"{int(never.sum())} channel(s) with all-zero weights: no current, never fire")
        theta_int = np.where(never, hi, np.clip(theta_int, -hi, hi)).astype(np.int64)
        if np.any(theta_int[~never] <= 0):
            notes.append("threshold rounds to <= 0 in the current unit")
        if np.any(theta_int[~never] >= hi):
            notes.append(f"threshold above the {self.bits}-bit membrane range in some channels: they never fire")
        return theta_int

    # -- currents

    def _synaptic_current(self, layer: Layer, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Integer currents (S, T, C_o, P) and the unit per output channel."""
        wb = layer.weight_bits
        wq, alpha, on_grid = self.quantised_weights(layer)
        levels = max(1, 2 ** (wb - 1) - 1)
        if not on_grid:
            notes.append(f"weights not on the {wb}-bit sign-magnitude grid of their channel scale: "
                         "quantised, may mismatch")
        s_, t_ = self.wl.samples, self.wl.time_steps
        wsum = float(np.abs(wq.reshape(wq.shape[0], -1)).sum(axis=1).max(initial=0))
        if layer.inputs == ["input"]:
            xq, in_grid = self.quantised_input()
            if not in_grid:
                notes.append(f"input not on the {self.input_bits}-bit grid: quantised, may mismatch")
            bound = float(2 ** self.input_bits - 1) * wsum
            if layer.op == "linear":
                cur = _linear(xq.reshape(s_, -1), wq, bound)
            else:
                cur = _conv(xq, wq, layer.stride, layer.padding, layer.groups, bound)
            cur = np.broadcast_to(cur.reshape(s_, 1, -1), (s_, t_, cur[0].size))
            unit = alpha / (levels * (2 ** self.input_bits - 1))
            notes.append(f"multi-bit encoding layer: {self.input_bits}-bit inputs x {wb}-bit weights")
            return cur, unit
        src = self.recorded(layer.inputs[0])
        x = src.reshape(s_ * t_, *src.shape[2:])
        if layer.op == "linear":
            cur = _linear(x.reshape(s_ * t_, -1), wq, wsum)
        else:
            cur = _conv(x, wq, layer.stride, layer.padding, layer.groups, wsum)
        return cur.reshape(s_, t_, -1), alpha / levels

    def _in_pixel_current(self, layer: Layer) -> np.ndarray:
        from .hw.pixel_curve import p2m_conv2d

        if layer.op != "conv2d" or layer.groups != 1 or any(layer.padding) or len(set(layer.stride)) != 1:
            raise _Skip("in-pixel layer with padding, groups or unequal strides: p2m_conv2d cannot "
                        "recompute it; skipped")
        try:
            cur = p2m_conv2d(self.wl.input, self.wl.weight(layer.name), int(layer.stride[0]))
        except SnnsimError as e:
            raise _Skip(f"in-pixel layer cannot be recomputed ({e.message}); skipped") from None
        s_ = self.wl.samples
        cur = cur.astype(np.float64).reshape(s_, 1, -1)
        return np.broadcast_to(cur, (s_, self.wl.time_steps, cur.shape[-1]))

    def _pool_current(self, layer: Layer) -> tuple[np.ndarray, np.ndarray]:
        src = self.recorded(layer.inputs[0])
        s_, t_ = src.shape[:2]
        x = src.reshape(s_ * t_, *src.shape[2:])
        nd = len(layer.kernel)
        if any(layer.padding):
            x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in layer.padding])
        win = sliding_window_view(x, tuple(layer.kernel), axis=tuple(range(2, 2 + nd)))
        win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in layer.stride)]
        axes = tuple(range(-nd, 0))
        c = layer.out_shape[0]
        if layer.op == "maxpool":
            return win.max(axis=axes).astype(np.int64), np.ones(c)
        count = win.sum(axis=axes, dtype=np.int64)
        return count, np.full(c, 1.0 / math.prod(layer.kernel))

    # -- comparison

    def _compare(self, layer: Layer, expected: np.ndarray, arithmetic: str, notes: list[str],
                 cur: np.ndarray | None = None, theta: np.ndarray | None = None, leak: float = 0.0,
                 int_bits: int | None = None, mag: np.ndarray | None = None,
                 near: np.ndarray | None = None) -> LayerCheck:
        """Compare (S, T, N) spikes. With ``near`` (S, T, C, P): a differing spike train whose first
        differing step is near the threshold is within tolerance, not a mismatch."""
        rec = self.recorded(layer.name)
        s_, t_ = rec.shape[:2]
        rec = rec.reshape(s_, t_, -1).astype(bool)
        diff = expected != rec
        n = rec.shape[2]
        check = LayerCheck(layer.name, layer.op, "match", neurons_checked=s_ * n, arithmetic=arithmetic)
        if near is not None and diff.any():
            trains = diff.any(axis=1)  # (S, N)
            first_step = np.argmax(diff, axis=1)
            at_first = np.take_along_axis(near.reshape(s_, t_, -1), first_step[:, None], axis=1)[:, 0]
            within = trains & at_first
            if within.any():
                check.within_tolerance = int(np.count_nonzero(within))
                wd = diff & within[:, None, :]
                sample, step, neuron = (int(i) for i in np.unravel_index(int(np.flatnonzero(wd)[0]), wd.shape))
                d = self._details(layer, cur, mag, theta, leak, None, sample, step, neuron, n)
                notes = notes + [f"{check.within_tolerance} spike train(s) differ only within float rounding of "
                                 f"the threshold (first: sample {sample} step {step} neuron {neuron}, "
                                 f"|v - theta| = {d['margin']:.3g} <= {d['tolerance']:.3g})"]
                diff = diff & ~within[:, None, :]
        bad = int(np.count_nonzero(diff))
        if bad:
            check.status = "mismatch"
            check.bits_differing = bad
            check.mismatches = int(np.count_nonzero(diff.any(axis=1)))
            first = int(np.flatnonzero(diff.reshape(-1))[0])
            sample, step, neuron = (int(i) for i in np.unravel_index(first, diff.shape))
            info: dict[str, Any] = {
                "sample": sample, "step": step, "neuron": neuron,
                "position": [int(i) for i in np.unravel_index(neuron, layer.out_shape)],
                "expected": int(expected[sample, step, neuron]), "recorded": int(rec[sample, step, neuron]),
            }
            if cur is not None and theta is not None:
                info.update(self._details(layer, cur, mag, theta, leak, int_bits, sample, step, neuron, n))
            info["reason"] = REASONS[arithmetic]
            check.first_mismatch = info
        check.note = "; ".join(notes)
        return check

    @staticmethod
    def _details(layer: Layer, cur: np.ndarray, mag: np.ndarray | None, theta: np.ndarray, leak: float,
                 int_bits: int | None, sample: int, step: int, neuron: int, n: int) -> dict[str, Any]:
        """Current, membrane (after integration) and threshold of one neuron at one step; with the
        magnitudes ``mag``, also |v - theta| ("margin") and the float tolerance there."""
        per_ch = n // cur.shape[2]
        ch, pos = divmod(neuron, per_ch)
        trace = cur[sample, :, ch, pos]
        th = theta[ch]
        membranes = _membrane_trace(trace, th if int_bits is None else int(th), leak, layer.neuron.reset, int_bits)
        if int_bits is not None:
            return {"current": int(trace[step]), "membrane": int(membranes[step]), "threshold": int(th)}
        out = {"current": float(trace[step]), "membrane": float(membranes[step]), "threshold": float(th)}
        if mag is not None:
            acc = 0.0
            for m in mag[sample, :step + 1, ch, pos]:
                acc = acc * (1.0 - leak) + float(m) if leak else acc + float(m)
            out.update(margin=abs(out["membrane"] - float(th)), tolerance=FLOAT_RTOL * (abs(float(th)) + acc))
        return out


class _Skip(Exception):
    """A layer that cannot be verified (the reason is the message)."""
