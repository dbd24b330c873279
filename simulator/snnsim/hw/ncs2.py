"""An NCS2 / Movidius Myriad X-class dense DNN accelerator (``mapping.target: ncs2``): the
non-spiking network equivalent to the trace (:mod:`.ncs2_graph`), one inference per sample,
whatever the trace's number of time steps, fed by a host over USB.

Why: a converted SNN is only worth its hardware if it beats the ReLU network it came from on the
edge accelerator that network would otherwise run on (pim-loihi-ncs2.md C and "What to model" 3;
Chandarana 2022, Mohammadi 2022 compare Loihi with the NCS2 this way).

Timing (integer ps; every term rounded up to whole ps from its exact value):

    t_l    = max(MACs_l / (peak x util[type_l]), cmx_bytes_l / cmx_bw, dram_bytes_l / dram_bw)
             + layer_overhead
    bytes_l = weight values x bytes_per_value + (input + output values) x bytes_per_value
    t      = t_request + t_usb_in + sum_l t_l + t_usb_out
    t_usb_in  = frame values x input_bytes_per_value / usb_bw
    t_usb_out = output values x bytes_per_value / usb_bw

Memory [A]: the weights live in the on-chip CMX memory (``cmx_kib``) while the network's weights
fit; when they do not, every layer from the first one whose cumulative weights (in the order
the layers run) exceed CMX reads its weights from DRAM at ``dram_gbytes_per_s``. Activations are
read and written in CMX at ``cmx_gbytes_per_s`` (tiled so that they fit beside the weights: the
capacity they take is not modelled). The two memories are separate channels, each its own
roofline ceiling. The frame is sent as ``input_bytes_per_value`` bytes per value (1: U8, the
device converts it to FP16 [A]); the result comes back at ``bytes_per_value`` (FP16).

Energy (Blouw et al. 2019's convention, pim-loihi-ncs2.md C.2 and "What to model" 3): the stick
draws ``p_active_mw`` while a layer computes and ``p_idle_mw`` otherwise (the request overhead and
USB transfers). Per sample and layer, ``energy.active`` = (P_active - P_idle) x t_l, the dynamic
energy; per sample one ``energy.static`` = P_idle x t, the whole request at idle power. Their sum
is the request's total energy, P_active x sum t_l + P_idle x (t - sum t_l).

The defaults and their sources are in :data:`SECTION` and hwconfigs/ncs2.yaml; the calibration on
MobileNet v2 (80.4 ms over USB3) and the USB2 prediction are in docs/ncs2.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..fields import Field, Section
from ..units import exact as _exact
from .ncs2_graph import LAYER_TYPES, DenseLayer

MAX_PS = 2**62
MAX_EXACT_PS = 2**53


def _rate(default: float, doc: str, maximum: float = 1e6) -> Field:
    return Field("float", default, doc, minimum=0.0, exclusive_minimum=True, maximum=maximum)


def _util(default: float, what: str) -> Field:
    return Field("float", default, f"fraction of the peak MAC rate reached on {what} layers, in (0, 1]; "
                 "calibrated on MobileNet v2 over USB3 (80.4 ms, pim-loihi-ncs2.md C.2; docs/ncs2.md)",
                 minimum=0.0, exclusive_minimum=True, maximum=1.0)


# Calibration (docs/ncs2.md): the ratios between the types are assumptions [A] (conv = fc = 1;
# depthwise, pool and eltwise 1/4: no reduction over input channels, so most of the MAC array's
# lanes idle, or the layer runs on the SHAVE vector cores); their common scale is solved so that
# MobileNet v2 over USB3 takes 80.4 ms.
UTIL_CONV = 0.00949
UTIL_OTHER = 0.00237

SECTION = Section(
    "An NCS2 / Myriad X-class dense DNN accelerator running the equivalent non-spiking network, one inference "
    "per sample, fed by a host over USB (mapping.target = ncs2; docs/ncs2.md).",
    {
        "peak_gmacs_per_s": _rate(500.0, "peak MAC rate of the neural compute engine, GMAC/s ([D] > 1 TOPS peak "
                                  "(AnandTech 11771) / 2 ops per MAC)"),
        "util_conv": _util(UTIL_CONV, "dense conv"),
        "util_depthwise": _util(UTIL_OTHER, "depthwise conv (groups = in = out channels)"),
        "util_fc": _util(UTIL_CONV, "fully connected"),
        "util_pool": _util(UTIL_OTHER, "pooling"),
        "util_eltwise": _util(UTIL_OTHER, "element-wise add"),
        "cmx_kib": Field("float", 2560.0, "on-chip CMX memory holding the weights, KiB ([V] 2.5 MB CMX, lujuzi.cn)",
                         minimum=0.0, maximum=2.0**30),
        "cmx_gbytes_per_s": _rate(450.0, "CMX bandwidth, GB/s ([V] 450 GB/s, lujuzi.cn)"),
        "dram_gbytes_per_s": _rate(12.8, "bandwidth of the in-package LPDDR4 for weights that spill from CMX, "
                                   "GB/s ([R] LPDDR4 x32 at 3200 MT/s)"),
        "bytes_per_value": Field("int", 2, "bytes per weight and activation value ([V] FP16: the MYRIAD plugin "
                                 "runs FP16 models)", minimum=1, maximum=8),
        "input_bytes_per_value": Field("int", 1, "bytes per frame value sent over USB ([A] 1: U8, converted on the "
                                       "device)", minimum=1, maximum=8),
        "layer_overhead_us": Field("float", 20.0, "fixed time per layer (stage dispatch, DMA set-up), us ([A])",
                                   minimum=0.0, maximum=1e6),
        "usb_mbytes_per_s": _rate(400.0, "USB throughput, MB/s ([R] USB 3.0: 5 Gb/s with 8b/10b = 500 MB/s raw, "
                                  "about 400 MB/s of bulk payload)"),
        "request_overhead_us": Field("float", 2000.0, "fixed time per inference request (host API, USB round "
                                     "trips, device scheduling), us ([A] in the 1-20 ms range of pim-loihi-ncs2.md "
                                     "'What to model' 3)", minimum=0.0, maximum=1e7),
        "p_active_mw": Field("float", 1500.0, "stick power while a layer computes, mW ([V] 1-2 W, "
                             "openvinotoolkit/open_model_zoo#42)", minimum=0.0, maximum=1e6),
        "p_idle_mw": Field("float", 300.0, "stick power while it waits (request overhead, USB), mW ([R] 0.3 W; "
                           "NCS1 0.21 W, Blouw 2019)", minimum=0.0, maximum=1e6),
    },
    required=False)

#: the hwconfig key that sets each layer type's utilisation
UTIL_KEYS = {t: f"util_{t}" for t in LAYER_TYPES}


@dataclass(frozen=True)
class Ncs2Config:
    """The ``ncs2:`` section, checked (units in the names; see :data:`SECTION`)."""

    peak_gmacs_per_s: float
    util_conv: float
    util_depthwise: float
    util_fc: float
    util_pool: float
    util_eltwise: float
    cmx_kib: float
    cmx_gbytes_per_s: float
    dram_gbytes_per_s: float
    bytes_per_value: int
    input_bytes_per_value: int
    layer_overhead_us: float
    usb_mbytes_per_s: float
    request_overhead_us: float
    p_active_mw: float
    p_idle_mw: float
    source: str = "<memory>"

    def util(self, kind: str) -> float:
        return getattr(self, UTIL_KEYS[kind])

    @property
    def cmx_bytes(self) -> Fraction:
        return _exact(self.cmx_kib) * 1024


def ncs2_config(hw: Any) -> Ncs2Config:
    """The :class:`Ncs2Config` of a hwconfig (its ``ncs2:`` section, defaults filled in by the
    schema). Refuses an idle power above the active power: the dynamic energy would be negative."""
    from ..errors import ConfigError

    sec = hw["ncs2"]
    values = {k: sec.get(k, f.default) for k, f in SECTION.fields.items()}
    if values["p_idle_mw"] > values["p_active_mw"]:
        raise ConfigError("the idle power exceeds the active power", file=hw.source, key="ncs2.p_idle_mw",
                          expected=f"at most ncs2.p_active_mw = {values['p_active_mw']:g} mW",
                          found=f"{values['p_idle_mw']:g} mW",
                          suggestion="the stick draws more while it computes; check both keys (mW)")
    return Ncs2Config(**values, source=hw.source)


@dataclass(frozen=True)
class LayerTime:
    """One dense layer's time on the accelerator, per inference (ps, rounded up each)."""

    compute_ps: int  # MACs at the type's share of the peak rate
    cmx_ps: int  # activations (and the weights, when in CMX) at CMX bandwidth
    dram_ps: int  # spilled weights at DRAM bandwidth
    overhead_ps: int
    bytes: int  # weights + input and output activations
    weight_bytes: int
    in_cmx: bool  # its weights are held in CMX

    @property
    def time_ps(self) -> int:
        return max(self.compute_ps, self.cmx_ps, self.dram_ps) + self.overhead_ps


@dataclass(frozen=True)
class SampleTiming:
    """One inference's time: the request and USB terms and every dense layer's (ps)."""

    request_ps: int
    usb_in_ps: int
    usb_out_ps: int
    layers: tuple[LayerTime, ...]
    in_bytes: int  # the frame over USB
    out_bytes: int  # the result over USB

    @property
    def compute_ps(self) -> int:
        return sum(t.time_ps for t in self.layers)

    @property
    def total_ps(self) -> int:
        return self.request_ps + self.usb_in_ps + self.compute_ps + self.usb_out_ps


def _ps(value: Fraction, cfg: Ncs2Config, key: str, what: str) -> int:
    """An exact time rounded up to whole ps, refused when it cannot be held below 2^62 ps."""
    from ..errors import ConfigError

    ps = math.ceil(value)
    if ps >= MAX_PS:
        raise ConfigError("a time of the NCS2 model cannot be held in integer picoseconds", file=cfg.source,
                          key=f"ncs2.{key}", expected="times below 2^62 ps", found=f"{what}: {float(value):.4g} ps",
                          suggestion="check the unit of the key (rates in GMAC/s, GB/s, MB/s; times in us)")
    return ps


def sample_timing(cfg: Ncs2Config, layers: Sequence[DenseLayer], input_values: int,
                  output_values: int) -> SampleTiming:
    """The time of one inference of ``layers`` (the module docstring's equations). Raises
    :class:`ConfigError` naming the key when a time cannot be held below 2^62 ps."""
    bpv = cfg.bytes_per_value
    peak = _exact(cfg.peak_gmacs_per_s) * 10**9  # MAC/s
    cmx_bw, dram_bw = _exact(cfg.cmx_gbytes_per_s) * 10**9, _exact(cfg.dram_gbytes_per_s) * 10**9  # B/s
    usb_bw = _exact(cfg.usb_mbytes_per_s) * 10**6  # B/s
    ps_per_s = 10**12
    overhead = _ps(_exact(cfg.layer_overhead_us) * 10**6, cfg, "layer_overhead_us", "the layer overhead")
    cmx, cumulative, times = cfg.cmx_bytes, 0, []
    for d in layers:
        w_bytes = d.weights * bpv
        act = (d.in_values + d.out_values) * bpv
        cumulative += w_bytes
        in_cmx = cumulative <= cmx or w_bytes == 0  # a layer without weights reads none from DRAM
        key = UTIL_KEYS[d.type]
        compute = _ps(Fraction(d.macs * ps_per_s) / (peak * _exact(cfg.util(d.type))), cfg, key, d.name)
        cmx_ps = _ps(Fraction((act + (w_bytes if in_cmx else 0)) * ps_per_s) / cmx_bw, cfg, "cmx_gbytes_per_s",
                     d.name)
        dram_ps = 0 if in_cmx else _ps(Fraction(w_bytes * ps_per_s) / dram_bw, cfg, "dram_gbytes_per_s", d.name)
        times.append(LayerTime(compute, cmx_ps, dram_ps, overhead, w_bytes + act, w_bytes, in_cmx))
    in_bytes, out_bytes = input_values * cfg.input_bytes_per_value, output_values * bpv
    timing = SampleTiming(
        request_ps=_ps(_exact(cfg.request_overhead_us) * 10**6, cfg, "request_overhead_us", "the request"),
        usb_in_ps=_ps(Fraction(in_bytes * ps_per_s) / usb_bw, cfg, "usb_mbytes_per_s", "the frame over USB"),
        usb_out_ps=_ps(Fraction(out_bytes * ps_per_s) / usb_bw, cfg, "usb_mbytes_per_s", "the result over USB"),
        layers=tuple(times), in_bytes=in_bytes, out_bytes=out_bytes)
    if timing.total_ps >= MAX_EXACT_PS:  # the records hold times as floats, exact below 2^53
        from ..errors import ConfigError

        raise ConfigError("one inference of the NCS2 model is too long to report exactly", file=cfg.source,
                          key="ncs2", expected="an inference shorter than 2^53 ps (2.5 hours)",
                          found=f"{timing.total_ps:.4g} ps", suggestion="check the units of the rates and "
                          "times (GMAC/s, GB/s, MB/s, us) and the utilisations")
    return timing


def sample_time_ps(cfg: Ncs2Config, layers: Sequence[DenseLayer], input_values: int, output_values: int) -> int:
    """The time of one inference of ``layers`` on the accelerator, host request and USB included,
    integer ps: what a validation against a measured latency needs, without a spike trace."""
    return sample_timing(cfg, layers, input_values, output_values).total_ps


def energy_pj(power_mw: Fraction, time_ps: int) -> float:
    """mW x ps in pJ (1 mW for 1 ps is 1e-3 pJ), from the exact product."""
    return float(power_mw * time_ps / 1000)


def _parameters(cfg: Ncs2Config) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in SECTION.fields}


class Ncs2:
    """The NCS2-class accelerator as the whole chain: the host sends each frame, the stick runs
    every layer of the dense network, the result comes back."""

    name = "ncs2"

    def plan(self, hw: Any, wl: Any, upstream: list, graph: tuple | None) -> Any:
        import numpy as np

        from ..report.report import Record
        from .chain import Plan, StageTimes
        from .ncs2_graph import dense_layers, network_io

        cfg = ncs2_config(hw)
        dense = dense_layers(wl)
        n_in, n_out = network_io(wl)
        timing = sample_timing(cfg, dense, n_in, n_out)
        names = [la.name for la in wl.layers]
        index = {name: i for i, name in enumerate(names)}
        per_layer = [[0, 0, 0] for _ in names]  # macs, bytes, time_ps of each trace layer
        for d, t in zip(dense, timing.layers, strict=True):
            acc = per_layer[index[d.layer]]
            acc[0] += d.macs
            acc[1] += t.bytes
            acc[2] += t.time_ps
        s_n = wl.samples
        row = [timing.request_ps + timing.usb_in_ps, *(acc[2] for acc in per_layer), timing.usb_out_ps]
        service = np.tile(np.array(row, np.int64), (s_n, 1))
        n_tx = len(row)
        dynamic = _exact(cfg.p_active_mw) - _exact(cfg.p_idle_mw)
        static_pj = energy_pj(_exact(cfg.p_idle_mw), timing.total_ps)
        usb_bits = float(8 * (timing.in_bytes + timing.out_bytes))
        usb_ps = float(timing.usb_in_ps + timing.usb_out_ps)
        layer_rows = [(name, float(m), float(b), float(t), energy_pj(dynamic, t))
                      for name, (m, b, t) in zip(names, per_layer, strict=True)]

        def records(times: StageTimes) -> list:
            out: list = []
            for s in range(s_n):
                for name, macs, nbytes, t, e in layer_rows:
                    out += [Record(s, name, None, "ncs2", "macs", macs, "count"),
                            Record(s, name, None, "ncs2", "bytes", nbytes, "byte"),
                            Record(s, name, None, "ncs2", "time_ps", t, "ps"),
                            Record(s, name, None, "ncs2", "energy.active", e, "pJ")]
                out += [Record(s, "-", None, "ncs2", "payload_bits", usb_bits, "bit"),
                        Record(s, "-", None, "ncs2", "wire_bits", usb_bits, "bit"),
                        Record(s, "-", None, "ncs2", "usb_ps", usb_ps, "ps"),
                        Record(s, "-", None, "ncs2", "request_ps", float(timing.request_ps), "ps"),
                        Record(s, "-", None, "ncs2", "energy.static", static_pj, "pJ")]
            return out

        table = [{"name": d.name, "layer": d.layer, "type": d.type, "macs": d.macs, "weight_bytes": t.weight_bytes,
                  "bytes": t.bytes, "weights_in": ("cmx" if t.in_cmx else "dram") if t.weight_bytes else "-", "compute_ps": t.compute_ps,
                  "cmx_ps": t.cmx_ps, "dram_ps": t.dram_ps, "time_ps": t.time_ps}
                 for d, t in zip(dense, timing.layers, strict=True)]
        details = {"parameters": _parameters(cfg), "dense_layers": table,
                   "macs_per_inference": sum(d.macs for d in dense),
                   "weight_bytes": sum(t.weight_bytes for t in timing.layers),
                   "cmx_bytes": int(cfg.cmx_bytes), "input_values": n_in, "output_values": n_out,
                   "request_ps": timing.request_ps, "usb_in_ps": timing.usb_in_ps, "usb_out_ps": timing.usb_out_ps,
                   "sample_ps": timing.total_ps,
                   "conventional_payload_bits_per_frame": 8 * n_in, "conventional_wire_bits_per_frame": 8 * n_in}
        time_keys = ("ncs2.peak_gmacs_per_s, ncs2.util_*, ncs2.cmx_gbytes_per_s, ncs2.dram_gbytes_per_s, "
                     "ncs2.layer_overhead_us, ncs2.usb_mbytes_per_s, ncs2.request_overhead_us")
        return Plan(name=self.name, service_ps=service, consume=np.zeros(n_tx, np.int64),
                    produce=np.zeros(n_tx, np.int64), fifo_after=None, time_keys=time_keys, details=details,
                    layers=tuple(names), released_by=None, records=records)


def ncs2_problems(hw: Any, wl: Any) -> list:
    """Why the trace cannot run on the accelerator (empty when it can): an op without a dense
    equivalent, a configuration it refuses, a time it cannot hold."""
    from ..errors import SnnsimError
    from .ncs2_graph import dense_layers, network_io

    try:
        cfg = ncs2_config(hw)
        sample_timing(cfg, dense_layers(wl), *network_io(wl))
    except SnnsimError as e:
        return [e]
    return []
