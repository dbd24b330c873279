"""Bit-exact verification of a spike trace against the core's arithmetic (``docs/verify.md``).

Every recorded layer is recomputed independently from its *recorded* inputs (the recorded spikes
of its input layers, or the analog ``input`` for a first layer) and its output spikes are
compared bit for bit with the trace, so a mismatch is localised to one layer.

The core computes with integers: each layer's currents are integers in a per-output-channel
unit ``u`` and its thresholds are integers in that unit (batch norm folded into the threshold),
its membranes are signed ``membrane_bits`` integers that saturate. An in-pixel layer is the
sensor's analog arithmetic (recomputed in float64), and a leaky (LIF) neuron cannot be done in
integers (float64 too); the report says so for each such layer.
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

#: theta / u must be within this *relative* distance (times max(1, |theta / u|)) of an integer:
#: thresholds are stored as float32, so theta_int * u is exact only to ~6e-8 relative.
THRESHOLD_TOLERANCE = 1e-6
#: weights / inputs must be within this distance (in grid steps) of their integer grid.
GRID_TOLERANCE = 1e-4

_INTEGER = "integer"
_IN_PIXEL = "float64 (in-pixel)"
_LIF = "float64 (LIF)"
_NONE = "none"

# Elements of one im2col block (bounds the memory of a convolution to ~64 MB in float32).
_BLOCK_ELEMENTS = 1 << 24


@dataclass
class LayerCheck:
    """The verdict on one layer.

    ``neurons_checked`` = samples x neurons of the layer (each over all time steps);
    ``mismatches`` = how many of those have a spike train that differs in at least one step;
    ``bits_differing`` = how many (sample, step, neuron) spike bits differ;
    ``first_mismatch`` = the earliest differing bit in (sample, step, neuron) order.
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
                "input_bits": self.input_bits, "ok": self.ok, "counts": dict(self.counts),
                "layers": [c.to_dict() for c in self.layers]}

    def summary(self) -> str:
        c = self.counts
        verdict = "OK" if self.ok else "FAILED"
        return (f"{verdict}: {c['match']} match, {c['mismatch']} mismatch, {c['skipped']} skipped, "
                f"{c['not recorded']} not recorded ({self.model}, {self.samples} samples, "
                f"{self.time_steps} steps, {self.membrane_bits}-bit membranes, {self.input_bits}-bit inputs)")

    def format_table(self) -> str:
        """A plain-text table, one row per layer, then the summary line."""
        head = ("layer", "op", "arithmetic", "status", "neurons", "mismatches", "first mismatch", "note")
        rows = [head]
        for c in self.layers:
            rows.append((c.name, c.op, c.arithmetic, c.status, str(c.neurons_checked) if c.neurons_checked else "-",
                         str(c.mismatches) if c.status in ("match", "mismatch") else "-",
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

def verify_workload(wl: Workload, membrane_bits: int = 16, input_bits: int = 8) -> VerifyResult:
    """Recompute every recorded layer of ``wl`` from its recorded inputs with the core's
    arithmetic and compare bit for bit. ``membrane_bits``: signed, saturating membrane width
    (``core.membrane_bits``); ``input_bits``: unsigned width of the analog input as an encoding
    layer reads it (``core.input_bits``)."""
    if not isinstance(wl, Workload):
        raise UsageError("verify needs a workload", key="wl", expected="a snnsim Workload (load_workload)",
                         found=type(wl).__name__)
    membrane_bits = _check_bits("membrane_bits", membrane_bits, 2, 32)
    input_bits = _check_bits("input_bits", input_bits, 1, 16)
    try:  # an in-memory workload gets the writer's checks (and its layers' spiking flags)
        check_graph(wl.layers, wl.input_shape)
        _check_arrays(wl)
    except SnnsimError as e:
        raise type(e)(e.message, file=e.file or wl.source, key=e.key, expected=e.expected, found=e.found,
                      suggestion=e.suggestion) from None
    checker = _Checker(wl, membrane_bits, input_bits)
    checks = [checker.check(layer) for layer in wl.layers]
    return VerifyResult(layers=checks, model=wl.model, source=wl.source, samples=wl.samples,
                        time_steps=wl.time_steps, membrane_bits=membrane_bits, input_bits=input_bits)


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
    dt = _exact_dtype(bound)
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
    res = np.empty((b, n_out, co), dtype=np.int64)
    chunk = max(1, _BLOCK_ELEMENTS // max(1, n_out * k))
    for g in range(groups):
        wg = np.ascontiguousarray(wq[g * cog:(g + 1) * cog].reshape(cog, k).T).astype(dt)
        part = win[:, g * cg:(g + 1) * cg]
        for b0 in range(0, b, chunk):
            blk = np.moveaxis(part[b0:b0 + chunk], 1, 1 + nd)  # (b, *S_o, C/g, *k)
            patches = blk.reshape(-1, k).astype(dt)
            prod = patches @ wg
            if dt is not np.int64:
                prod = np.rint(prod)
            res[b0:b0 + chunk, :, g * cog:(g + 1) * cog] = prod.reshape(-1, n_out, cog).astype(np.int64)
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


def _membrane_trace(cur: np.ndarray, theta: float, leak: float, reset: str, bits: int | None) -> list:
    """Membrane after integration at each step of one neuron (cur (T,)); integer when bits."""
    out = []
    v: Any = 0 if bits else 0.0
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if bits else (None, None)
    for i in cur:
        if bits:
            v = min(max(v + int(i), lo), hi)
        else:
            v = (1.0 - leak) * v + float(i)
        out.append(v)
        if v >= theta:
            v = v - theta if reset == "subtract" else (0 if bits else 0.0)
    return out


# ----------------------------------------------------------------------------- per layer

class _Checker:
    def __init__(self, wl: Workload, membrane_bits: int, input_bits: int) -> None:
        self.wl = wl
        self.bits = membrane_bits
        self.input_bits = input_bits
        self._spikes: dict[str, np.ndarray] = {}
        self._xq: tuple[np.ndarray, bool] | None = None
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
        neuron = layer.neuron
        assert neuron is not None
        notes: list[str] = []
        c = layer.out_shape[0]  # output channels (the neurons of a flat layer)
        arithmetic = _INTEGER
        if layer.op in ("conv2d", "conv3d", "linear"):
            if not self.wl.has_weights(layer.name):
                raise _Skip("no weights in the trace: skipped")
            if layer.inputs == ["input"] and layer.extra.get("in_pixel"):
                cur = self._in_pixel_current(layer)
                arithmetic = _IN_PIXEL
                notes.append("the sensor's analog arithmetic (P2M transfer curve), recomputed in float64 "
                             "with the float thresholds, not the core's")
                unit = None
            else:
                if layer.extra.get("in_pixel"):
                    notes.append("in_pixel flag ignored: the layer does not read the analog input")
                cur, unit = self._synaptic_current(layer, notes)
        elif layer.op == "add":
            cur = sum(self.recorded(s).astype(np.int64) for s in layer.inputs)
            unit = np.ones(c)
        elif layer.op in ("avgpool", "maxpool"):
            cur, unit = self._pool_current(layer)
        elif layer.op == "flatten":
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
        else:  # pragma: no cover - check_graph admits only the ops above
            raise _Skip(f"op {layer.op} not supported")

        s_, t_ = self.wl.samples, self.wl.time_steps
        cur = cur.reshape(s_, t_, c, -1)
        theta = self._thresholds(layer, c)
        if arithmetic == _IN_PIXEL:
            spikes = _if_float(cur, theta, neuron.leak, neuron.reset)
            return self._compare(layer, spikes.reshape(s_, t_, -1), arithmetic, notes, cur=cur, theta=theta,
                                 leak=neuron.leak, int_bits=None)
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
        w = self.wl.weight(layer.name)
        wb = layer.weight_bits
        wq, alpha, on_grid = _quantise_weights(w, wb)
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
                 int_bits: int | None = None) -> LayerCheck:
        rec = self.recorded(layer.name)
        s_, t_ = rec.shape[:2]
        rec = rec.reshape(s_, t_, -1).astype(bool)
        diff = expected != rec
        n = rec.shape[2]
        check = LayerCheck(layer.name, layer.op, "match", neurons_checked=s_ * n, arithmetic=arithmetic)
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
                per_ch = n // cur.shape[2]
                ch, pos = divmod(neuron, per_ch)
                trace = cur[sample, :, ch, pos]
                th = theta[ch]
                membranes = _membrane_trace(trace, th if int_bits is None else int(th), leak,
                                            layer.neuron.reset, int_bits)
                if int_bits is None:
                    info.update(current=float(trace[step]), membrane=float(membranes[step]), threshold=float(th))
                else:
                    info.update(current=int(trace[step]), membrane=int(membranes[step]), threshold=int(th))
            check.first_mismatch = info
        check.note = "; ".join(notes)
        return check


class _Skip(Exception):
    """A layer that cannot be verified (the reason is the message)."""
