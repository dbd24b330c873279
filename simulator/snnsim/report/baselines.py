"""Digital baselines of an SNN trace: the same architecture run once as a CNN, and the SNN costed
by the energy framework of the ACE-SNN seed paper, both on standard digital hardware.

ACE-SNN (Datta, Kundu, Jaiswal, Beerel, Front. Neurosci. 16:815258, 2022) reports that its SNN
uses ~560.6x less energy than a full-precision CNN of the same architecture and ~44.8x less than a
6-bit quantized CNN. Its group's framework (shared/reference/seeds-research.md 2.4,
pim-loihi-ncs2.md A.2) is

- ``E_CNN = sum_l FLOPs_l * E_MAC`` (one inference, no time steps);
- ``E_SNN = E_layer1 + sum_{l>=2} FLOPs_l * zeta_l * E_AC``, where ``E_layer1`` is the
  direct-encoded first layer's multi-bit MACs (``FLOPs_1 * E_MAC``, once or times T) and
  ``zeta_l`` the spikes per neuron of layer l's input summed over the T steps.

``FLOPs_l`` here are the MACs of each conv/linear op (a "FLOP" of the paper is one MAC):
``C_out * C_in/groups * kernel elements`` per output position. By default only the in-bounds
taps are counted (``count="valid"``: a padded border multiplies nothing); ``count="dense"`` counts
padding taps too (:func:`snnsim.hw.synapses.dense_macs`, :func:`snnsim.hw.core.dense_macs`).
Pooling, residual adds, biases and neurons cost nothing in this framework (as in the paper).

Three knobs of the framework are not fixed by the paper (pim-loihi-ncs2.md A.2) and are options:

1. whether the first layer is recomputed every step (``first_layer_per_step``);
2. how a 6-bit MAC's energy follows from a 32-bit one (``rule``): ``table`` (only sourced
   formats), ``quadratic_mult`` (multiplier ~ b^2, adder ~ b), ``linear`` (both ~ b),
   ``power_law(alpha)`` (whole MAC ~ b^alpha), ``solve_12_5`` (the power law whose exponent makes
   the 32-bit / 6-bit ratio equal the reported 560.6 / 44.8: an assumption chosen to reproduce
   the paper, not a measurement);
3. the full-precision base, FP32 (4.6 / 0.9 pJ) or INT32 (3.2 / 0.1 pJ) (``base``).

Zero-gating (a MAC with a zero input costs nothing) can be applied to the first layer only: its
input (the frame) is the only CNN activation a spike trace holds; the CNN's later activations were
never recorded, so they are counted dense. The SNN's later layers are event driven, gated by
nature.

Every count comes from the trace's own graph and spikes; every energy from
``snnsim/tech/digital/ops.yaml`` with its source. Energies are pJ per sample (mean over samples).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError, UsageError, WorkloadError, did_you_mean
from ..workload.trace import Workload

OPS_FILE = "snnsim/tech/digital/ops.yaml"
RULES = ("table", "quadratic_mult", "linear", "power_law(alpha)", "solve_12_5")
BASES = ("fp32", "int32")
COUNTS = ("valid", "dense")
FIRST_LAYER = ("digital_mac", "given_pj")
SYNOPS = ("rate", "neurobench")
WEIGHTED_V1 = ("conv1d", "conv2d", "conv3d", "linear")


# ---------------------------------------------------------------------------- per-op energies


@lru_cache(maxsize=1)
def digital_ops() -> dict[str, Any]:
    """The parsed ``tech/digital/ops.yaml`` (checked: every entry a {value, source})."""
    text = (resources.files("snnsim") / "tech" / "digital" / "ops.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for section in ("ops", "mac_formats", "ac_formats", "reported"):
        entries = data.get(section) if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise ConfigError("malformed digital op table", file=OPS_FILE, key=section,
                              expected="a mapping of {value, source}", found=type(entries).__name__)
        for k, v in entries.items():
            if not (isinstance(v, dict) and "value" in v and "source" in v):
                raise ConfigError("malformed digital op entry", file=OPS_FILE, key=f"{section}.{k}",
                                  expected="{value, source}", found=str(v))
    return data


def _op(name: str) -> float:
    return float(digital_ops()["ops"][name]["value"])


def reported_ratio() -> float:
    """ACE-SNN's implied FP-CNN / 6-bit-CNN energy ratio, 560.6 / 44.8 (= 12.51)."""
    rep = digital_ops()["reported"]
    return float(rep["snn_vs_fp_cnn"]["value"]) / float(rep["snn_vs_6bit_cnn"]["value"])


@dataclass(frozen=True)
class Energy:
    """One per-op energy and where it comes from."""

    pj: float
    source: str


def parse_precision(precision: str) -> tuple[str, int]:
    """("fp" or "int", bits) of a precision name: fp32, fp16, int32, int8, int6, 6bit, ..."""
    p = str(precision).strip().lower()
    m = re.fullmatch(r"(fp|int)(\d+)", p) or re.fullmatch(r"(\d+)[-_ ]?bits?", p)
    if m is None:
        raise UsageError("unknown precision", key="precision", expected="fp32, fp16, int32, int8, intN or Nbit",
                         found=str(precision), suggestion=did_you_mean(p, ["fp32", "fp16", "int32", "int8", "6bit"]))
    kind, bits = (m.group(1), int(m.group(2))) if m.re.pattern.startswith("(fp") else ("int", int(m.group(1)))
    if not 1 <= bits <= 64:
        raise UsageError("precision out of range", key="precision", expected="1 to 64 bits", found=str(precision))
    return kind, bits


def parse_rule(rule: str) -> tuple[str, float | None]:
    """(rule name, exponent) of a scaling rule: table, quadratic_mult, linear, power_law(a), solve_12_5."""
    r = str(rule).strip().lower().replace(" ", "")
    if r in ("table", "quadratic_mult", "linear"):
        return r, None
    if r == "solve_12_5":
        return r, math.log(reported_ratio()) / math.log(32 / 6)
    m = re.fullmatch(r"power_law\(([0-9.eE+-]+)\)", r)
    if m:
        try:
            alpha = float(m.group(1))
        except ValueError:
            alpha = float("nan")
        if math.isfinite(alpha) and alpha > 0:
            return "power_law", alpha
        raise UsageError("bad power-law exponent", key="rule", expected="power_law(alpha) with alpha > 0",
                         found=str(rule))
    raise UsageError("unknown MAC energy scaling rule", key="rule", expected=", ".join(RULES), found=str(rule),
                     suggestion=did_you_mean(r, ["table", "quadratic_mult", "linear", "power_law(1.5)", "solve_12_5"]))


def _check_base(base: str) -> str:
    b = str(base).strip().lower()
    if b not in BASES:
        raise UsageError("unknown full-precision base", key="base", expected=" or ".join(BASES), found=str(base),
                         suggestion=did_you_mean(b, BASES))
    return b


def mac_energy(precision: str, *, rule: str = "table", base: str = "fp32") -> Energy:
    """Energy of one MAC at ``precision`` (pJ), with its derivation.

    Table formats (fp32, fp16, int32, int8) are mult + add of the same format. With a scaling
    rule other than ``table``, an integer width below 32 bits is derived from the ``base``
    32-bit MAC (mult M, add A; r = bits / 32): ``quadratic_mult`` M r^2 + A r; ``linear``
    (M + A) r; ``power_law(alpha)`` (M + A) r^alpha; ``solve_12_5`` the power law with
    alpha = ln(560.6 / 44.8) / ln(32 / 6) = 1.509, so that E(base) / E(6 bit) is the reported
    ratio. 32-bit and floating-point precisions are always the table's.
    """
    kind, bits = parse_precision(precision)
    name, alpha = parse_rule(rule)
    b = _check_base(base)
    tab = digital_ops()["mac_formats"]
    fmt = f"{kind}{bits}"
    if name == "table" or kind == "fp" or bits >= 32:
        if fmt not in tab:
            raise ConfigError("no sourced digital MAC energy for this precision", file=OPS_FILE,
                              key=f"mac_formats.{fmt}", expected=", ".join(tab), found=fmt,
                              suggestion="choose a scaling rule (rule='quadratic_mult', 'linear', "
                                         "'power_law(1.5)' or 'solve_12_5') for integer widths below 32 bits")
        mult, add = tab[fmt]["value"]
        return Energy(_op(mult) + _op(add), f"table {fmt}: {tab[fmt]['source']}")
    mult, add = tab[b]["value"]
    m, a = _op(mult), _op(add)
    r = bits / 32
    if name == "quadratic_mult":
        pj, how = m * r * r + a * r, f"{m} x ({bits}/32)^2 + {a} x ({bits}/32)"
    elif name == "linear":
        pj, how = (m + a) * r, f"({m} + {a}) x {bits}/32"
    else:
        pj, how = (m + a) * r ** alpha, f"({m} + {a}) x ({bits}/32)^{alpha:.4f}"
    tag = "[A] solve_12_5: exponent chosen to reproduce 560.6/44.8" if name == "solve_12_5" else f"[A] {name}"
    return Energy(pj, f"{tag}, {b} base: {how} ({tab[b]['source']})")


def ac_energy(e_ac: str | float) -> Energy:
    """Energy of one accumulate: a format of the table (fp32, int32, ...) or a number of pJ."""
    if isinstance(e_ac, (int, float)) and not isinstance(e_ac, bool):
        if not (math.isfinite(e_ac) and e_ac >= 0):
            raise UsageError("bad AC energy", key="e_ac", expected="a finite number of pJ >= 0", found=str(e_ac))
        return Energy(float(e_ac), "[A] given")
    tab = digital_ops()["ac_formats"]
    fmt = str(e_ac).strip().lower()
    if fmt not in tab:
        raise UsageError("unknown AC format", key="e_ac", expected=", ".join(tab) + " or a number of pJ",
                         found=str(e_ac), suggestion=did_you_mean(fmt, tab))
    return Energy(_op(tab[fmt]["value"]), f"table {fmt}: {tab[fmt]['source']}")


# ---------------------------------------------------------------------------- the graph's MACs


@dataclass(frozen=True)
class WeightedOp:
    """One conv or linear op of a hardware layer, as the framework counts it."""

    layer: str
    name: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    sources: tuple[str, ...]  # the recorded maps (or 'input') whose activity it reads
    delayed: tuple[bool, ...] = ()  # per source: read through a delay (the previous step's spikes)

    @property
    def first(self) -> bool:
        return "input" in self.sources

    def axis_reach(self) -> list[np.ndarray]:
        """Per spatial axis: how many (output, kernel offset) pairs each input index takes part in."""
        out = []
        for n, k, s, p, d, o in zip(self.in_shape[1:], self.kernel, self.stride, self.padding, self.dilation,
                                    self.out_shape[1:], strict=True):
            i = (np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d).reshape(-1)
            out.append(np.bincount(i[(i >= 0) & (i < n)], minlength=n).astype(np.int64))
        return out

    def macs(self, count: str) -> int:
        """MACs of one dense evaluation: every tap (``dense``) or in-bounds taps only (``valid``)."""
        if self.op == "linear":
            return self.out_shape[0] * self.in_shape[0]
        per_tap = self.out_shape[0] * (self.in_shape[0] // self.groups)
        if count == "dense":
            return per_tap * math.prod(self.out_shape[1:]) * math.prod(self.kernel)
        return per_tap * math.prod(int(a.sum()) for a in self.axis_reach())

    def fanout(self) -> np.ndarray:
        """MACs each input value takes part in (flattened channels-first), padding excluded."""
        if self.op == "linear":
            return np.full(self.in_shape[0], self.out_shape[0], np.int64)
        taps = np.ones(1, np.int64)
        for a in self.axis_reach():
            taps = np.multiply.outer(taps, a).reshape(-1)
        per_pos = taps * (self.out_shape[0] // self.groups)
        return np.tile(per_pos, self.in_shape[0])


def _ints(v, rank: int) -> tuple[int, ...]:
    return tuple([int(v)] * rank) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)


def weighted_ops(wl: Workload) -> list[WeightedOp]:
    """Every conv/linear op of the workload, in layer order (format v1 layers or v2 parts)."""
    out: list[WeightedOp] = []
    for layer in wl.layers:
        parts = getattr(layer, "parts", None)
        if parts is not None:
            for w, in_shape in parts.weighted_in:
                paths = tuple(dict.fromkeys((s.source, s.delayed) for s in parts.synapses if s.weighted is w))
                rank = len(w.out_shape) - 1
                if w.op == "linear":
                    geo = ((), (), (), (), 1)
                else:
                    p = w.params
                    geo = (_ints(p["kernel"], rank), _ints(p.get("stride", 1), rank), _ints(p.get("padding", 0), rank),
                           _ints(p.get("dilation", 1), rank), int(p.get("groups", 1)))
                out.append(WeightedOp(layer.name, w.name, w.op, tuple(in_shape), tuple(w.out_shape), *geo,
                                      tuple(p[0] for p in paths), tuple(p[1] for p in paths)))
        elif layer.op in WEIGHTED_V1:
            if not layer.in_shape:
                from ..workload.graph import check_graph

                check_graph(wl.layers, wl.input_shape)
            rank = len(layer.out_shape) - 1
            if layer.op == "linear":
                geo = ((), (), (), (), 1)
            else:
                geo = (tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding),
                       tuple(layer.extra.get("dilation", (1,) * rank)), int(layer.groups))
            out.append(WeightedOp(layer.name, layer.name, layer.op, tuple(layer.in_shape), tuple(layer.out_shape),
                                  *geo, tuple(layer.inputs), (False,) * len(layer.inputs)))
    if not out:
        raise WorkloadError("the workload has no conv or linear op to cost", file=wl.source, key="layers",
                            expected="at least one conv or linear", found="none")
    return out


def _check_count(count: str) -> str:
    if count not in COUNTS:
        raise UsageError("unknown MAC count", key="count", expected=" or ".join(COUNTS), found=str(count),
                         suggestion=did_you_mean(str(count), COUNTS))
    return count


def gated_first_macs(wl: Workload, w: WeightedOp) -> float:
    """MACs of a first-layer op whose zero input values are skipped, per sample (padding excluded)."""
    x = np.asarray(wl.input, np.float64).reshape(wl.samples, -1)
    f = w.fanout()
    if x.shape[1] != f.shape[0]:  # pragma: no cover - check_nodes guarantees the shapes
        raise WorkloadError("first-layer input size differs from the frame", file=wl.source, key=w.name,
                            expected=str(f.shape[0]), found=str(x.shape[1]))
    return float(((x != 0).astype(np.int64) @ f).mean())


def source_rate(wl: Workload, sources: tuple[str, ...], delayed: tuple[bool, ...] = ()) -> float:
    """zeta per step: spikes (or event counts) per source neuron and step, mean over samples.

    A source read through a delay (a recurrent edge) delivers its steps 0..T-2 within the T
    steps: its last step's spikes are not counted."""
    total, neurons = 0.0, 0
    for s, late in zip(sources, delayed or (False,) * len(sources), strict=True):
        last = wl.time_steps - 1 if late else wl.time_steps
        if s == "input":
            raise WorkloadError("a layer reads both the frame and spikes", key=s, expected="one kind of input",
                                found=", ".join(sources))
        if s in wl.events:
            total += float(np.asarray(wl.events[s], np.float64)[:, :last].sum())
        elif s in wl.packed_spikes:
            total += float(wl.spike_counts(s)[:, :last].sum())
        else:
            raise WorkloadError("no recorded activity for a layer's input", file=wl.source, key=f"spikes/{s}",
                                expected="spikes or events of every layer a conv/linear reads", found="missing")
        neurons += wl.layer(s).out_size
    return total / (wl.samples * wl.time_steps * neurons)


def _binary_frame(wl: Workload) -> bool:
    from .ops import input_is_binary

    return input_is_binary(wl)


# ---------------------------------------------------------------------------- the baselines


def iso_cnn_energy(wl: Workload, precision: str = "fp32", *, rule: str = "table", base: str = "fp32",
                   zero_gating: bool = False, count: str = "valid") -> dict[str, Any]:
    """Energy of the same architecture run once as a CNN: ``sum_l MACs_l x E_MAC(precision)``.

    ``zero_gating`` skips the first layer's MACs on zero input values (the frame is the only CNN
    activation the trace holds; later layers are counted dense). Returns ``{"precision", "rule",
    "base", "count", "zero_gating", "e_mac_pj", "e_mac_source", "layers": [{"layer", "ops",
    "macs", "energy_pj"}], "macs", "energy_pj", "assumptions"}`` (per sample).
    """
    e = mac_energy(precision, rule=rule, base=base)
    count = _check_count(count)
    layers: dict[str, dict[str, Any]] = {}
    for w in weighted_ops(wl):
        macs = gated_first_macs(wl, w) if zero_gating and w.first else float(w.macs(count))
        entry = layers.setdefault(w.layer, {"layer": w.layer, "ops": [], "macs": 0.0, "energy_pj": 0.0})
        entry["ops"].append(w.name)
        entry["macs"] += macs
        entry["energy_pj"] += macs * e.pj
    total = sum(x["macs"] for x in layers.values())
    return {"precision": precision, "rule": rule, "base": base, "count": count, "zero_gating": bool(zero_gating),
            "e_mac_pj": e.pj, "e_mac_source": e.source, "layers": list(layers.values()), "macs": total,
            "energy_pj": total * e.pj, "assumptions": _cnn_assumptions(count, zero_gating)}


def _cnn_assumptions(count: str, zero_gating: bool) -> list[str]:
    a = ["one inference, no time steps; biases, pooling, adds and activations cost nothing",
         "padding taps excluded" if count == "valid" else "padding taps included (dense count)"]
    a.append("first layer's zero frame values skipped; later layers dense (their CNN activations are not in "
             "the trace)" if zero_gating else "no zero-gating")
    return a


def snn_energy(wl: Workload, *, first_layer: str = "digital_mac", first_layer_per_step: bool = True,
               e_ac: str | float | None = None, base: str = "fp32", first_layer_precision: str | None = None,
               rule: str = "table", first_layer_pj: float | None = None, synops: str = "rate",
               zero_gating: bool = False, count: str = "valid") -> dict[str, Any]:
    """The seed framework ``E_SNN = E_layer1 + sum_{l>=2} FLOPs_l * zeta_l * E_AC``, per sample.

    First layer (the ops reading the frame): its MACs (``count``; zero frame values skipped with
    ``zero_gating``) x ``E_MAC(first_layer_precision or base)`` (``first_layer="digital_mac"``)
    or x ``first_layer_pj`` (``"given_pj"``, e.g. a PIM macro's energy per MAC), times T when
    ``first_layer_per_step``. Later ops: their synaptic operations x ``E_AC`` (``e_ac``: a table
    format or pJ; default the base's AC). ``synops="rate"``: MACs x zeta x T, zeta the measured
    spikes per neuron and step of the recorded map(s) the op reads (through a pool or add this is
    the source map's rate, not the pooled value's); ``"neurobench"``: the exact effective
    operations of :func:`snnsim.report.ops.neurobench_ops` (padding, zero weights, per spike).
    """
    base = _check_base(base)
    count = _check_count(count)
    if first_layer not in FIRST_LAYER:
        raise UsageError("unknown first-layer costing", key="first_layer", expected=" or ".join(FIRST_LAYER),
                         found=str(first_layer), suggestion=did_you_mean(str(first_layer), FIRST_LAYER))
    if synops not in SYNOPS:
        raise UsageError("unknown synaptic-operation count", key="synops", expected=" or ".join(SYNOPS),
                         found=str(synops), suggestion=did_you_mean(str(synops), SYNOPS))
    if not isinstance(first_layer_per_step, bool):
        raise UsageError("first_layer_per_step must be true or false", key="first_layer_per_step",
                         expected="a bool", found=repr(first_layer_per_step))
    if first_layer == "given_pj":
        if (first_layer_pj is None or isinstance(first_layer_pj, bool) or not isinstance(first_layer_pj, (int, float))
                or not math.isfinite(first_layer_pj) or first_layer_pj < 0):
            raise UsageError("first_layer='given_pj' needs the energy per first-layer MAC", key="first_layer_pj",
                             expected="a finite number of pJ >= 0", found=repr(first_layer_pj))
        e1 = Energy(float(first_layer_pj), "[A] given per first-layer MAC")
    else:
        if first_layer_pj is not None:
            raise UsageError("first_layer_pj is only read with first_layer='given_pj'", key="first_layer_pj",
                             expected="None", found=repr(first_layer_pj), suggestion="set first_layer='given_pj'")
        e1 = mac_energy(first_layer_precision or base, rule=rule, base=base)
    eac = ac_energy(base if e_ac is None else e_ac)
    t_n = wl.time_steps
    reps = t_n if first_layer_per_step else 1
    nb = None
    if synops == "neurobench":
        from .ops import neurobench_ops

        nb = {x["name"]: x for x in neurobench_ops(wl)["layers"]}
    layers: dict[str, dict[str, Any]] = {}
    for w in weighted_ops(wl):
        entry = layers.setdefault(w.layer, {"layer": w.layer, "ops": [], "first": False, "macs": 0.0, "zeta": None,
                                            "synops": 0.0, "first_pj": 0.0, "later_pj": 0.0, "energy_pj": 0.0})
        entry["ops"].append(w.name)
        if w.first:
            macs = gated_first_macs(wl, w) if zero_gating else float(w.macs(count))
            entry["first"] = True
            entry["macs"] += macs * reps
            entry["first_pj"] += macs * reps * e1.pj
            continue
        zeta = source_rate(wl, w.sources, w.delayed)
        if entry["zeta"] is None:
            entry["zeta"] = zeta * t_n  # spikes per input neuron over the T steps (of the layer's first op)
        entry["synops"] += float(w.macs(count)) * zeta * t_n
    for name, entry in layers.items():
        if nb is not None and entry["first"] and len(entry["ops"]) > 1 and _binary_frame(wl):
            raise UsageError("NeuroBench counts a binary frame's MACs as ACs: the spike-driven ops of a first "
                             "layer cannot be told apart", key="synops", expected="rate for this trace",
                             found=f"neurobench, layer {name} reads a 0/1 frame and its own spikes",
                             suggestion="use synops='rate'")
        if nb is not None:  # the exact counts are per hardware layer (a first layer's analog part: its MACs)
            entry["synops"] = float(nb[name]["effective_acs" if entry["first"] else "synops"])
        entry["later_pj"] = entry["synops"] * eac.pj
        entry["energy_pj"] = entry["first_pj"] + entry["later_pj"]
    first = sum(x["first_pj"] for x in layers.values())
    rest = sum(x["later_pj"] for x in layers.values())
    return {"first_layer": first_layer, "first_layer_per_step": first_layer_per_step, "time_steps": t_n,
            "base": base, "rule": rule, "synops_count": synops, "zero_gating": bool(zero_gating), "count": count,
            "e_first_mac_pj": e1.pj, "e_first_mac_source": e1.source, "e_ac_pj": eac.pj, "e_ac_source": eac.source,
            "layers": list(layers.values()), "first_layer_pj": first, "later_layers_pj": rest,
            "first_layer_share": first / (first + rest) if first + rest > 0 else 0.0, "energy_pj": first + rest}


def compare(wl: Workload, *, base: str = "fp32", quantized: str = "6bit", rule: str = "solve_12_5",
            first_layer: str = "digital_mac", first_layer_per_step: bool = True, e_ac: str | float | None = None,
            first_layer_pj: float | None = None, synops: str = "rate", zero_gating: bool = False,
            count: str = "valid") -> dict[str, Any]:
    """The SNN against the full-precision (``base``) and the ``quantized`` iso-architecture CNN.

    Returns ``{"snn", "cnn_full", "cnn_quantized", "snn_vs_full", "snn_vs_quantized",
    "implied_full_over_quantized", "reported": {...}}``: the ratios are CNN energy / SNN energy
    (the paper's "x less"); ``implied_full_over_quantized`` is E_MAC(base) / E_MAC(quantized) of
    the chosen ``rule``, to set beside the reported 560.6 / 44.8 = 12.51. ``zero_gating`` applies
    to the first layer of all three.
    """
    snn = snn_energy(wl, first_layer=first_layer, first_layer_per_step=first_layer_per_step, e_ac=e_ac, base=base,
                     rule=rule, first_layer_pj=first_layer_pj, synops=synops, zero_gating=zero_gating, count=count)
    full = iso_cnn_energy(wl, base, rule=rule, base=base, zero_gating=zero_gating, count=count)
    quant = iso_cnn_energy(wl, quantized, rule=rule, base=base, zero_gating=zero_gating, count=count)
    rep = digital_ops()["reported"]
    e_snn = snn["energy_pj"]
    return {"snn": snn, "cnn_full": full, "cnn_quantized": quant,
            "snn_vs_full": full["energy_pj"] / e_snn if e_snn > 0 else math.inf,
            "snn_vs_quantized": quant["energy_pj"] / e_snn if e_snn > 0 else math.inf,
            "implied_full_over_quantized": full["e_mac_pj"] / quant["e_mac_pj"],
            "reported": {"snn_vs_full": float(rep["snn_vs_fp_cnn"]["value"]),
                         "snn_vs_quantized": float(rep["snn_vs_6bit_cnn"]["value"]),
                         "full_over_quantized": reported_ratio(), "source": rep["snn_vs_fp_cnn"]["source"]}}


def table(result: dict[str, Any]) -> str:
    """A text form of :func:`compare`'s result: per layer, totals, ratios beside the reported ones."""
    snn, full, quant = result["snn"], result["cnn_full"], result["cnn_quantized"]
    lines = [f"SNN (T={snn['time_steps']}, first layer {snn['first_layer']} "
             f"{'x T' if snn['first_layer_per_step'] else 'once'}, E_first_MAC {snn['e_first_mac_pj']:.4g} pJ, "
             f"E_AC {snn['e_ac_pj']:.4g} pJ, synops {snn['synops_count']}, {snn['count']} MACs"
             f"{', zero-gated first layer' if snn['zero_gating'] else ''})",
             f"CNN {full['precision']} E_MAC {full['e_mac_pj']:.4g} pJ; CNN {quant['precision']} E_MAC "
             f"{quant['e_mac_pj']:.4g} pJ (rule {quant['rule']}, base {quant['base']})",
             f"{'layer':<14}{'CNN MACs':>14}{'zeta (/T)':>11}{'SNN ops':>14}{'SNN pJ':>12}"
             f"{'CNN ' + full['precision'] + ' pJ':>16}{'CNN ' + quant['precision'] + ' pJ':>16}"]
    for s, f, q in zip(snn["layers"], full["layers"], quant["layers"], strict=True):
        zeta = "first" if s["zeta"] is None else f"{s['zeta']:.4f}"
        ops = s["macs"] + s["synops"]
        lines.append(f"{s['layer']:<14}{f['macs']:>14,.0f}{zeta:>11}{ops:>14,.0f}{s['energy_pj']:>12.4g}"
                     f"{f['energy_pj']:>16.4g}{q['energy_pj']:>16.4g}")
    lines.append(f"{'total':<14}{full['macs']:>14,.0f}{'':>11}{'':>14}{snn['energy_pj']:>12.4g}"
                 f"{full['energy_pj']:>16.4g}{quant['energy_pj']:>16.4g}")
    rep = result["reported"]
    lines += [f"first-layer share of SNN energy: {snn['first_layer_share']:.3f}",
              f"SNN vs CNN {full['precision']}: {result['snn_vs_full']:.2f}x less (ACE-SNN reports "
              f"{rep['snn_vs_full']}x)",
              f"SNN vs CNN {quant['precision']}: {result['snn_vs_quantized']:.2f}x less (ACE-SNN reports "
              f"{rep['snn_vs_quantized']}x)",
              f"E_MAC {full['precision']} / {quant['precision']} of rule {quant['rule']}: "
              f"{result['implied_full_over_quantized']:.3f} (reported implies {rep['full_over_quantized']:.3f})"]
    if quant["rule"] == "solve_12_5":
        lines.append("assumption: solve_12_5 picks the bit-width exponent that reproduces the reported ratio")
    return "\n".join(lines)


def pim_first_layer(wl: Workload, preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first layer (every op reading the frame directly) computed in an SRAM PIM macro
    (:mod:`snnsim.hw.pim`, the preset's parameters with ``overrides``) on the trace's own frames:
    energy and time per sample, summed over the steps (the macro computes once or per step as its
    ``recompute_per_step`` says), and the energy per first-layer MAC that gives, for
    :func:`snn_energy`'s ``first_layer='given_pj'``."""
    from ..hw import pim

    params = {**pim.preset(preset), **(overrides or {})}
    cfg = pim.macro_config(params, f"pim preset {preset}")
    ops = [w for w in weighted_ops(wl) if w.first]
    if not ops:
        raise UsageError("the trace has no layer reading the frame", key="first_layer", expected="a conv or linear "
                         "on the analog input", found="none", suggestion="the PIM macro computes the multi-bit layer")
    energy = time = macs = 0.0
    mvms = 0
    for w in ops:
        if any(d != 1 for d in w.dilation):
            raise UsageError("the PIM macro model has no dilated convolution", key=f"layers.{w.layer}",
                             expected="dilation 1", found=str(list(w.dilation)))
        geometry = pim.layer_geometry(w.name, w.in_shape, w.out_shape[0], kernel=w.kernel or (), stride=w.stride or 1,
                                      padding=w.padding or 0, groups=w.groups, weight_bits=_weight_bits(wl, w))
        counts = pim.layer_counts(cfg, pim.map_layer(cfg, geometry), wl.input, wl.time_steps)
        energy += float(counts["energy_pj"].sum()) / wl.samples
        time += float(counts["time_ps"].sum()) / wl.samples
        mvms += int(counts["mvms"].sum())
        macs += float(w.macs("valid")) * (wl.time_steps if cfg.recompute_per_step else 1)
    return {"preset": preset, "energy_pj": energy, "time_ps": time, "mvms_per_sample": mvms / wl.samples,
            "macs": macs, "pj_per_mac": energy / macs if macs else 0.0,
            "recompute_per_step": cfg.recompute_per_step, "source": params.get("source", f"tech/pim/macros.yaml {preset}")}


def _weight_bits(wl: Workload, w: WeightedOp) -> int:
    for la in wl.layers:
        if la.name == w.layer:
            if la.parts is not None:
                for node, _shape in la.parts.weighted_in:
                    if node.name == w.name:
                        return int(node.params.get("weight_bits", 1) or 1)
            return int(la.weight_bits)
    return 1  # pragma: no cover - weighted_ops only gives the trace's layers


def first_layer_on_pim(wl: Workload, preset: str, *, overrides: dict[str, Any] | None = None,
                       base: str = "fp32", **snn_options: Any) -> dict[str, Any]:
    """The SNN's energy with its first layer on digital hardware (``E_MAC`` of ``base``, per
    step as the macro computes) against the same first layer in the PIM macro, the rest as
    :func:`snn_energy` counts it: ``improvement`` = 1 - E_pim / E_digital (ACE-SNN reports 30 %
    on average; delay and EDP need the whole chip's schedule and are not in this estimate)."""
    p = pim_first_layer(wl, preset, overrides)
    per_step = bool(p["recompute_per_step"])
    digital = snn_energy(wl, base=base, first_layer_per_step=per_step, **snn_options)
    on_pim = snn_energy(wl, base=base, first_layer="given_pj", first_layer_pj=p["pj_per_mac"],
                        first_layer_per_step=per_step, **snn_options)
    e_d, e_p = digital["energy_pj"], on_pim["energy_pj"]
    return {"pim": p, "digital_pj": e_d, "pim_pj": e_p, "improvement": 1 - e_p / e_d if e_d else None,
            "first_layer_share_digital": digital["first_layer_pj"] / e_d if e_d else None}
