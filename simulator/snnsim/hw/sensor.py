"""Image sensors: a conventional rolling-shutter CMOS readout, and the P2M pixel array that
computes the first SNN layer inside the pixels.

Conventional (Bayer RGGB, column-parallel single-slope ADCs):
    photodiode rows per frame = H * q, with q = sqrt(photodiodes per RGB pixel) (2 for RGGB);
    row time = row overhead + cds_ramps * 2^adc_bits / f_counter;
    every photodiode is read and converted once per frame; one RAW line packet per row.

P2M (Datta et al., Sci. Rep. 2022; ICASSP 2023): for each output row the kernel's k*q photodiode
rows are activated once per output channel; each column line carries the window's weighted sum
(weights are transistor widths, signed by up/down counting: ``ramps_per_conversion`` ramps of
2^adc_bits counts), the column ADC digitises it once, and a digital IF neuron beside the counter
integrates that constant (direct-encoded) current over the T time steps, applying the threshold.
So conversions per frame = H_o * W_o * C_o, independent of T (our assumption, written in docs/),
and the row emits one spike-map packet per time step.
    row time = row overhead + ceil(C_o / ADCs per output column) * ramps * 2^adc_bits / f_counter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, MappingError, SnnsimError
from ..units import ceil_ps, ns_to_ps, period_ps
from ..workload.graph import Layer
from ..workload.trace import Workload

ps = ns_to_ps


def quad_side(photodiodes_per_pixel: int, source: str) -> int:
    q = math.isqrt(photodiodes_per_pixel)
    if q * q != photodiodes_per_pixel:
        raise ConfigError("photodiodes per pixel must be a square (1 mono, 4 RGGB)", file=source,
                          key="sensor.photodiodes_per_pixel", expected="1, 4, 9 or 16",
                          found=str(photodiodes_per_pixel))
    return q


@dataclass
class SensorPlan:
    """What the sensor does for each frame: its row transactions, their packets, and its actions."""

    kind: str
    rows: int  # row transactions per frame
    row_time_ps: int
    packets_per_row: int
    # packet stream of one frame, in send order: which (step, spatial row) each packet carries
    packet_step: np.ndarray
    packet_row: np.ndarray
    # actions per frame
    actions: dict[str, int] = field(default_factory=dict)
    # per-row details for reports
    details: dict[str, float] = field(default_factory=dict)
    layer: str | None = None  # the network layer computed in the sensor (P2M) or None

    def per_step(self, values: np.ndarray, n_steps: int) -> np.ndarray:
        """(samples, packets) -> (samples, steps): each packet's value added to the step it
        carries, exactly in int64 and in memory linear in packets (no packets x steps matrix)."""
        values = np.asarray(values, np.int64)
        order = np.argsort(self.packet_step, kind="stable")  # the packets grouped by step
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self.packet_step, minlength=n_steps))])
        # running sums over each sample's packets in step order: a step's total is a difference
        run = np.zeros((values.shape[0], values.shape[1] + 1), np.int64)
        np.cumsum(values[:, order], axis=1, out=run[:, 1:])
        return run[:, bounds[1:]] - run[:, bounds[:-1]]


# input channels each colour filter arrangement delivers: a monochrome pixel is one photodiode; a
# Bayer-type quad (RGGB 2x2, nona 3x3, quad Bayer 4x4) has red, green and blue photodiodes
COLOUR_CHANNELS = {1: 1, 4: 3, 9: 3, 16: 3}
COLOUR_NAMES = {1: "monochrome", 4: "Bayer RGGB", 9: "nona-Bayer (3x3)", 16: "quad-Bayer (4x4)"}


def image_problems(hw_source: str, cfg: dict, wl: Workload) -> list[SnnsimError]:
    """What keeps the trace's input from being this array's image: its rank, its size, and the
    colour model (the photodiodes of a pixel must deliver the trace's input channels)."""
    shape = wl.input_shape
    if len(shape) != 3:
        return [MappingError("the sensor needs an image input", file=wl.source, key="manifest.input.shape",
                             expected="[channels, height, width]", found=str(list(shape)))]
    out: list[SnnsimError] = []
    c, h, w = shape
    if h > cfg["pixel_rows"] or w > cfg["pixel_cols"]:
        out.append(MappingError("image larger than the pixel array", file=wl.source, key="input",
                                expected=f"at most {cfg['pixel_rows']} x {cfg['pixel_cols']} pixels "
                                f"(sensor.pixel_rows x sensor.pixel_cols in {hw_source})",
                                found=f"{h} x {w}",
                                suggestion=f"--set sensor.pixel_rows={h} --set sensor.pixel_cols={w}"))
    pd = cfg["photodiodes_per_pixel"]
    if math.isqrt(pd) ** 2 != pd:
        out.append(ConfigError("photodiodes per pixel must be a square (1 mono, 4 RGGB)", file=hw_source,
                               key="sensor.photodiodes_per_pixel", expected="1, 4, 9 or 16", found=str(pd)))
    elif COLOUR_CHANNELS.get(pd) != c:
        fix = {1: 1, 3: 4}.get(c)
        out.append(MappingError(
            "the sensor's colour model does not match the trace's input channels", file=hw_source,
            key="sensor.photodiodes_per_pixel",
            expected=f"{'1 (monochrome)' if c == 1 else '4 (Bayer RGGB), 9 or 16' if c == 3 else 'a colour model'} "
            f"for the {c}-channel input of {wl.source}",
            found=f"{pd} ({COLOUR_NAMES.get(pd, 'no colour model')}: "
            f"{COLOUR_CHANNELS.get(pd, '?')} channels)",
            suggestion=f"--set sensor.photodiodes_per_pixel={fix}" if fix else
            "an image sensor delivers 1 (monochrome) or 3 (colour) channels"))
    return out


def conventional_plan(cfg: dict, wl: Workload, hw_source: str) -> SensorPlan:
    """Rolling-shutter raw readout of the image's rows (windowed to the image if smaller)."""
    _, h, w = wl.input_shape
    q = quad_side(cfg["photodiodes_per_pixel"], hw_source)
    rows, cols = h * q, w * q
    conv_ps = cfg["cds_ramps"] * (2 ** cfg["adc_bits"]) * period_ps(cfg["adc_counter_clock_mhz"])
    row_ps = ps(cfg["row_overhead_ns"]) + ceil_ps(conv_ps)
    return SensorPlan(
        kind="conventional", rows=rows, row_time_ps=row_ps, packets_per_row=1,
        packet_step=np.zeros(rows, np.int64), packet_row=np.arange(rows, dtype=np.int64),
        actions={"pixel_reads": rows * cols, "adc_conversions": rows * cols, "row_reads": rows},
        details={"photodiode_rows": rows, "photodiode_cols": cols, "conversion_ps": float(conv_ps),
                 "row_time_ps": row_ps, "adc_bits": cfg["adc_bits"]},
    )


def p2m_layer_problems(cfg: dict, layer: Layer, wl: Workload, hw_source: str) -> list[SnnsimError]:
    """Every way the trace's layer 0 differs from the convolution this pixel array implements."""
    p = cfg["p2m"]
    key = f"layers.{layer.name}"
    if layer.parts is not None:
        why = _p2m_parts_problem(layer)
        if why:
            return [MappingError("a P2M sensor computes a conv2d on the image, then per-channel scale and shift, "
                                 "then a neuron; layer 0 is not that", file=wl.source, key=key,
                                 expected="input -> conv2d [-> bias/affine/scale] -> spiking neuron", found=why,
                                 suggestion="use a conventional sensor: --set sensor.kind=conventional")]
    elif layer.op != "conv2d" or layer.inputs != ["input"]:
        return [MappingError("a P2M sensor computes a conv2d on the image; layer 0 is not one", file=wl.source,
                             key=key, expected="conv2d with inputs ['input']", found=f"{layer.op} on {layer.inputs}",
                             suggestion="use a conventional sensor: --set sensor.kind=conventional")]
    out: list[SnnsimError] = []
    if layer.neuron is None and layer.parts is None:
        out.append(MappingError("the in-pixel layer must spike (it needs a neuron)", file=wl.source, key=key,
                                expected="a neuron on layer 0", found="none"))
    want = {"kernel": (p["kernel"], p["kernel"]), "stride": (p["stride"], p["stride"]), "padding": (0, 0)}
    for what, value in want.items():
        if tuple(getattr(layer, what)) != value:
            hint = (f"--set sensor.p2m.{what}={getattr(layer, what)[0]}" if what != "padding" else
                    "in-pixel windows cannot be padded: re-export the model with padding 0")
            out.append(MappingError(f"trace layer 0 {what} differs from the pixel array's", file=wl.source,
                                    key=f"{key}.{what}", expected=f"{list(value)} ({hw_source}: sensor.p2m)",
                                    found=str(list(getattr(layer, what))), suggestion=hint))
    if layer.out_shape[0] != p["out_channels"]:
        out.append(MappingError("trace layer 0 channels differ from the pixel array's", file=wl.source,
                                key=f"{key}.out_shape", expected=f"{p['out_channels']} channels "
                                f"({hw_source}: sensor.p2m.out_channels)", found=f"{layer.out_shape[0]} channels",
                                suggestion=f"--set sensor.p2m.out_channels={layer.out_shape[0]}"))
    if layer.weight_bits > p["weight_bits"]:
        out.append(MappingError("trace layer 0 needs more weight bits than the pixel transistors provide",
                                file=wl.source, key=f"{key}.weight_bits",
                                expected=f"<= {p['weight_bits']} ({hw_source}: sensor.p2m.weight_bits)",
                                found=str(layer.weight_bits),
                                suggestion=f"--set sensor.p2m.weight_bits={layer.weight_bits}"))
    if layer.groups != 1:
        out.append(MappingError("in-pixel convolution cannot be grouped", file=wl.source, key=f"{key}.groups",
                                expected="1", found=str(layer.groups)))
    return out


def _p2m_parts_problem(layer: Layer) -> str | None:
    """Why a format v2 layer 0 is not what the pixel array computes (None: it is). A bias or a
    per-channel affine (a batch norm) of the in-pixel convolution is applied by the readout as a
    per-channel offset and gain of the ramp (an assumption: no extra time or energy is charged)."""
    parts = layer.parts
    syn = parts.synapses
    if len(syn) != 1 or syn[0].value != "analog" or syn[0].weighted is None or syn[0].weighted.op != "conv2d" \
            or len(syn[0].chain) != 1:
        return " ; ".join(" -> ".join(["input" if s.value == "analog" else s.source, *(n.op for n in s.chain)])
                          for s in syn)[:200] or "no synapse"
    if syn[0].weighted.params.get("dilation", 1) not in (1, [1, 1]):
        return "a dilated convolution"
    for n in parts.passes:
        if n.op not in ("bias", "affine", "scale"):
            return f"a {n.op} ({n.name}) between the convolution and the neuron"
    if not parts.spiking_neuron:
        return "no spiking neuron"
    return None


def sensor_problems(hw, wl: Workload) -> list[SnnsimError]:
    """Every mismatch between the trace and the configured sensor (empty when the trace fits)."""
    cfg = hw["sensor"]
    out = image_problems(hw.source, cfg, wl)
    if cfg["kind"] == "p2m" and len(wl.input_shape) == 3:
        out += p2m_layer_problems(cfg, wl.layers[0], wl, hw.source)
    return out


def p2m_plan(cfg: dict, wl: Workload, hw_source: str) -> SensorPlan:
    """The in-pixel first layer: conversions, row activations and the T spike packets per row
    (the trace fits the array: :func:`sensor_problems` is empty)."""
    layer = wl.layers[0]
    p = cfg["p2m"]
    q = quad_side(cfg["photodiodes_per_pixel"], hw_source)
    c_o, h_o, w_o = layer.out_shape
    k, c_in = p["kernel"], layer.in_shape[0]
    conv_ps = p["ramps_per_conversion"] * (2 ** p["adc_bits"]) * period_ps(cfg["adc_counter_clock_mhz"])
    slots = math.ceil(c_o / p["adcs_per_output_column"])
    row_ps = ps(p["row_overhead_ns"]) + ceil_ps(slots * conv_ps)
    steps = wl.time_steps
    pd_per_window = k * k * q * q
    return SensorPlan(
        kind="p2m", rows=h_o, row_time_ps=row_ps, packets_per_row=steps,
        packet_step=np.tile(np.arange(steps, dtype=np.int64), h_o),
        packet_row=np.repeat(np.arange(h_o, dtype=np.int64), steps),
        actions={
            # every photodiode of the frame, counted once (the paper's per-pixel sensing energy)
            "pixel_frames": wl.input_shape[1] * wl.input_shape[2] * q * q,
            # each window element is read once per output channel
            "pixel_reads": h_o * w_o * c_o * pd_per_window,
            "row_activations": h_o * c_o * k * q,
            "adc_conversions": h_o * w_o * c_o,
            "neuron_updates": h_o * w_o * c_o * steps,
            # analog multiply-accumulates on the column lines (window elements x channels)
            "in_pixel_macs": h_o * w_o * c_o * k * k * c_in,
            "row_reads": h_o,
        },
        details={"output_rows": h_o, "output_cols": w_o, "channels": c_o, "kernel": k,
                 "input_channels": c_in, "conversion_ps": float(conv_ps), "conversion_slots": slots,
                 "row_time_ps": row_ps, "adc_bits": p["adc_bits"]},
        layer=layer.name,
    )


def sensor_plan(hw, wl: Workload) -> SensorPlan:
    """The plan of the configured sensor kind for this workload (which fits it:
    :func:`snnsim.hw.fit.require_fit`)."""
    cfg = hw["sensor"]
    if cfg["kind"] == "p2m":
        return p2m_plan(cfg, wl, hw.source)
    return conventional_plan(cfg, wl, hw.source)


def sensor_energy_pj(plan: SensorPlan, table) -> dict[str, tuple[str, int, float]]:
    """Energy of one frame per action (``pixel``, ``adc``): action -> (table entry, count, pJ)."""
    if plan.kind == "p2m":
        uses = {"pixel": ("pixel_frames", "p2m.pixel_read"), "adc": ("adc_conversions", "p2m.adc_conversion")}
    else:
        uses = {"pixel": ("pixel_reads", "sensor.pixel_read"), "adc": ("adc_conversions", "sensor.adc_conversion")}
    return {a: (entry, plan.actions[c], plan.actions[c] * table.pj(entry)) for a, (c, entry) in uses.items()}
