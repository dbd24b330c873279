"""Reference re-derivation of the sensor, link and core counts, and a reference ``simulate``.

Everything here is counted one item at a time from the unpacked spike maps and the hardware
configuration: every photodiode, ramp count, spike, kernel offset, output channel, neuron and
byte. Time quantities are computed in exact rational arithmetic and rounded up to integer
picoseconds once, where the models round. It is slow on purpose and meant for small workloads.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..engine.pipeline import StageSpec
from ..hw.sensor import ps
from ..report.report import Record, Report
from ..simulation import core_records, run_meta, system_records
from ..workload.trace import Workload
from .pipeline import run_pipeline_reference

CORE_COUNTERS = (
    "cycles", "vector_ops", "synaptic_ops", "macs", "fire_ops", "compares", "input_spikes",
    "output_spikes", "weight_read_bits", "membrane_read_bits", "membrane_write_bits",
    "spike_read_bits", "spike_write_bits", "input_buffer_read_bits",
)

# CSI-2 data types and identifiers
_USER_TYPES = 8  # user-defined data types 0x30-0x37
_USER_DATA_TYPE = 0x30
_FRAME_START, _FRAME_END = 0x00, 0x01
_RAW_TYPES = {6: 0x28, 7: 0x29, 8: 0x2A, 10: 0x2B, 12: 0x2C, 14: 0x2D, 16: 0x2E}


# ---------------------------------------------------------------------------------------------
# small counting helpers
# ---------------------------------------------------------------------------------------------

def _chunks(n: int, size: int) -> int:
    """How many groups of at most ``size`` items ``n`` items fill (counted one group at a time)."""
    count = 0
    for _first in range(0, n, size):
        count += 1
    return count


def _quad_side(photodiodes: int) -> int:
    side = 1
    while side * side < photodiodes:
        side += 1
    if side * side != photodiodes:
        raise ValueError("photodiodes per pixel must be a square number")
    return side


def _ramp_ticks(ramps: int, bits: int) -> int:
    """Counter-clock ticks of ``ramps`` single-slope ramps of 2^bits counts, counted one by one."""
    ticks = 0
    for _ramp in range(ramps):
        for _count in range(2 ** bits):
            ticks += 1
    return ticks


def _exact(x: float) -> Fraction:
    """A configuration number as the decimal it was written as (1.5 -> 3/2, 0.1 -> 1/10)."""
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


def _ticks_to_ps(ticks: int, clock_mhz: float) -> Fraction:
    """Exact duration of ``ticks`` periods of a clock of ``clock_mhz`` MHz, in ps."""
    return Fraction(ticks) * 1_000_000 / _exact(clock_mhz)


def _spatial(shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """(channels, spatial shape); a flat vector is its features as channels, with no space."""
    return shape[0], tuple(shape[1:])


def _positions(spatial: tuple[int, ...]):
    return itertools.product(*(range(n) for n in spatial))


# ---------------------------------------------------------------------------------------------
# sensor
# ---------------------------------------------------------------------------------------------

@dataclass
class SensorReference:
    kind: str
    rows: int  # row transactions per frame
    row_time_ps: int
    packets_per_row: int
    packets: list[tuple[int, int]]  # (step, spatial row) of each packet of a frame, in send order
    actions: dict[str, int]
    details: dict[str, float]
    layer: str | None = None
    conversion_exact_ps: Fraction = Fraction(0)  # a row's conversion time before rounding up


def reference_sensor(hw, wl: Workload) -> SensorReference:
    cfg = hw["sensor"]
    _c, h, w = wl.input_shape
    if h > cfg["pixel_rows"] or w > cfg["pixel_cols"]:
        raise ValueError("image larger than the pixel array")
    q = _quad_side(cfg["photodiodes_per_pixel"])
    clock = cfg["adc_counter_clock_mhz"]
    if cfg["kind"] == "conventional":
        rows, cols = h * q, w * q
        ticks = _ramp_ticks(cfg["cds_ramps"], cfg["adc_bits"])
        exact = _ticks_to_ps(ticks, clock)
        row_ps = ps(cfg["row_overhead_ns"]) + math.ceil(exact)
        actions = {"pixel_reads": 0, "adc_conversions": 0, "row_reads": 0}
        for _r in range(rows):
            actions["row_reads"] += 1
            for _col in range(cols):
                actions["pixel_reads"] += 1
                actions["adc_conversions"] += 1
        return SensorReference(
            kind="conventional", rows=rows, row_time_ps=row_ps, packets_per_row=1,
            packets=[(0, r) for r in range(rows)], actions=actions,
            details={"photodiode_rows": rows, "photodiode_cols": cols,
                     "conversion_ps": float(_ticks_to_ps(ticks, clock)), "row_time_ps": row_ps,
                     "adc_bits": cfg["adc_bits"]},
            conversion_exact_ps=exact,
        )

    p = cfg["p2m"]
    layer = wl.layers[0]
    if (layer.op != "conv2d" or layer.inputs != ["input"] or layer.neuron is None or layer.groups != 1
            or tuple(layer.kernel) != (p["kernel"],) * 2 or tuple(layer.stride) != (p["stride"],) * 2
            or tuple(layer.padding) != (0, 0) or layer.out_shape[0] != p["out_channels"]):
        raise ValueError("layer 0 is not the convolution of the pixel array")
    c_o, h_o, w_o = layer.out_shape
    k, stride, steps = p["kernel"], p["stride"], wl.time_steps
    # the channels of an output column are dealt to its ADCs; the busiest ADC sets the row time
    per_adc = [0] * p["adcs_per_output_column"]
    for ch in range(c_o):
        per_adc[ch % len(per_adc)] += 1
    slots = max(per_adc)
    conversion_ticks = _ramp_ticks(p["ramps_per_conversion"], p["adc_bits"])
    row_ticks = 0
    for _slot in range(slots):
        row_ticks += conversion_ticks
    exact = _ticks_to_ps(row_ticks, clock)
    row_ps = ps(p["row_overhead_ns"]) + math.ceil(exact)
    actions = {"pixel_frames": 0, "pixel_reads": 0, "row_activations": 0, "adc_conversions": 0,
               "neuron_updates": 0, "in_pixel_macs": 0, "row_reads": 0}
    for _y in range(h * q):
        for _x in range(w * q):
            actions["pixel_frames"] += 1
    for oy in range(h_o):
        actions["row_reads"] += 1
        for _ch in range(c_o):
            for pd_row in range(k * q):  # the kernel's photodiode rows, once per channel
                assert oy * stride * q + pd_row < h * q
                actions["row_activations"] += 1
        for ox in range(w_o):
            for _ch in range(c_o):
                actions["adc_conversions"] += 1
                for _t in range(steps):
                    actions["neuron_updates"] += 1
                for _dy in range(k):
                    for _dx in range(k):
                        for _ci in range(layer.in_shape[0]):
                            actions["in_pixel_macs"] += 1
                for wy in range(k * q):
                    for wx in range(k * q):
                        assert oy * stride * q + wy < h * q and ox * stride * q + wx < w * q
                        actions["pixel_reads"] += 1
    return SensorReference(
        kind="p2m", rows=h_o, row_time_ps=row_ps, packets_per_row=steps,
        packets=[(t, r) for r in range(h_o) for t in range(steps)], actions=actions,
        details={"output_rows": h_o, "output_cols": w_o, "channels": c_o, "kernel": k,
                 "input_channels": layer.in_shape[0], "conversion_ps": float(_ticks_to_ps(conversion_ticks, clock)),
                 "conversion_slots": slots, "row_time_ps": row_ps, "adc_bits": p["adc_bits"]},
        layer=layer.name, conversion_exact_ps=exact,
    )


# ---------------------------------------------------------------------------------------------
# link
# ---------------------------------------------------------------------------------------------

@dataclass
class PacketReference:
    step: int
    row: int
    payload_bits: int
    wc_bytes: int
    wire_bytes: int  # the long packet plus the frame start / end short packets sent with it
    bursts: int
    burst_ps: int
    service_ps: int
    burst_exact_ps: list[Fraction] = field(default_factory=list)  # each burst before rounding up


@dataclass
class LinkReference:
    encoding: str
    packets: list[list[PacketReference]]  # [sample][packet of the frame, in send order]
    bits_per_event: int
    conventional_payload_bits: int
    conventional_wire_bits: int
    ui_ps: float


def _pack(bits: list[int]) -> list[int]:
    """Bits (MSB first) to bytes, the last byte padded with zeros."""
    out = []
    for first in range(0, len(bits), 8):
        byte = 0
        for j in range(8):
            bit = bits[first + j] if first + j < len(bits) else 0
            byte = (byte << 1) | bit
        out.append(byte)
    return out


def _int_bits(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - j)) & 1 for j in range(width)]


def _address_bits(n: int) -> int:
    """Bits of an address naming one of ``n`` items (at least one bit)."""
    b = 1
    while (1 << b) < n:
        b += 1
    return b


def _long_packet(data_id: int, payload: list[int]) -> list[int]:
    wc = len(payload)
    if wc > 0xFFFF:
        raise ValueError("a line exceeds the 16-bit CSI-2 word count")
    header = [data_id, wc & 0xFF, wc >> 8, 0]  # ECC byte: its value does not matter here
    return header + payload + [0, 0]  # checksum bytes


def _short_packet(data_type: int) -> list[int]:
    return [data_type, 0, 0, 0]


def _burst_exact_ps(packet: list[int], cfg: dict) -> Fraction:
    """One HS burst carrying ``packet``: bytes dealt round-robin over the lanes, UI counted on the
    busiest lane, plus the burst's fixed entry/sync/trail/exit cost (exact, in ps)."""
    per_lane = [0] * cfg["lanes"]
    for i in range(len(packet)):
        per_lane[i % cfg["lanes"]] += 8
    ui = Fraction(1000) / _exact(cfg["gbps_per_lane"])

    def ns(key: str) -> Fraction:
        return _exact(cfg[key]) * 1000

    entry = ns("t_lpx_ns") + ns("t_hs_prepare_zero_ns") + 10 * ui
    sync = 8 * ui
    trail = max(8 * ui, ns("t_hs_trail_ns") + 4 * ui)
    leave = ns("t_hs_exit_ns")
    clock_lane = Fraction(0) if cfg["continuous_clock"] else ns("t_clk_overhead_ns")
    return entry + sync + max(per_lane) * ui + trail + leave + clock_lane


def _frame(lines: list[tuple[int, int, int, list[int], int]], cfg: dict) -> list[PacketReference]:
    """Send one frame: for each line (step, row, data identifier, payload bytes, payload bits) a
    long packet in its own burst, the frame start before the first and the frame end after the last."""
    out = []
    for i, (step, row, data_id, payload, bits) in enumerate(lines):
        burst_list = [_long_packet(data_id, payload)]
        if i == 0:
            burst_list.insert(0, _short_packet(_FRAME_START))
        if i == len(lines) - 1:
            burst_list.append(_short_packet(_FRAME_END))
        exact = [_burst_exact_ps(b, cfg) for b in burst_list]
        durations = [math.ceil(x) for x in exact]
        service = sum(durations) + ps(cfg["line_blanking_ns"])
        if i == len(lines) - 1:
            service += ps(cfg["frame_blanking_ns"])
        out.append(PacketReference(step=step, row=row, payload_bits=bits, wc_bytes=len(payload),
                                   wire_bytes=sum(len(b) for b in burst_list), bursts=len(burst_list),
                                   burst_ps=sum(durations), service_ps=service, burst_exact_ps=exact))
    return out


def _raw_lines(rows: int, cols: int, raw_bits: int) -> list[tuple[int, int, int, list[int], int]]:
    """A RAW frame: each line carries every photodiode sample of its row (sample values zero)."""
    data_id = _RAW_TYPES.get(raw_bits, _RAW_TYPES[12])  # virtual channel 0
    lines = []
    for r in range(rows):
        bits: list[int] = []
        for _col in range(cols):
            bits += [0] * raw_bits
        lines.append((0, r, data_id, _pack(bits), len(bits)))
    return lines


def reference_link(hw, wl: Workload, sensor: SensorReference) -> LinkReference:
    cfg = hw["link"]
    q = _quad_side(hw["sensor"]["photodiodes_per_pixel"])
    raw_rows, raw_cols = wl.input_shape[1] * q, wl.input_shape[2] * q
    raw = _frame(_raw_lines(raw_rows, raw_cols, cfg["raw_bits"]), cfg)
    conv_payload = sum(p.payload_bits for p in raw)
    conv_wire = 8 * sum(p.wire_bytes for p in raw)

    frames: list[list[PacketReference]] = []
    if sensor.kind == "conventional":
        lines = _raw_lines(int(sensor.details["photodiode_rows"]), int(sensor.details["photodiode_cols"]),
                           cfg["raw_bits"])
        for _s in range(wl.samples):
            frames.append(_frame(lines, cfg))
        return LinkReference("raw", frames, 0, conv_payload, conv_wire, float(Fraction(1000) / _exact(cfg["gbps_per_lane"])))

    encoding = cfg["encoding"]
    spikes = wl.spikes(sensor.layer)  # (S, T, C_o, H_o, W_o)
    c_o, _h_o, w_o = spikes.shape[2:]
    bpe = _address_bits(w_o * c_o) if encoding == "aer" else 0
    # the step rides in data type + virtual channel unless there are more steps than they name
    nameable = _USER_TYPES * (2 ** cfg["virtual_channel_bits"])
    needs_tag = wl.time_steps > nameable
    for s in range(wl.samples):
        lines = []
        for step, row in sensor.packets:
            bits: list[int] = []
            for c in range(c_o):  # channels first within the row
                for x in range(w_o):
                    fired = bool(spikes[s, step, c, row, x])
                    if encoding == "bitmap":
                        bits.append(1 if fired else 0)
                    elif fired:
                        bits += _int_bits(c * w_o + x, bpe)
            payload = _pack(bits)
            if needs_tag:  # a 2-byte step prefix; the data type stays the first user type
                payload = [step >> 8, step & 0xFF] + payload
                data_id = _USER_DATA_TYPE
            else:  # data type 0x30 + step % 8, virtual channel step // 8 (low 2 bits in the DI byte)
                data_id = (((step // _USER_TYPES) & 0x3) << 6) | (_USER_DATA_TYPE + step % _USER_TYPES)
            lines.append((step, row, data_id, payload, len(bits)))
        frames.append(_frame(lines, cfg))
    return LinkReference(encoding, frames, bpe, conv_payload, conv_wire, float(Fraction(1000) / _exact(cfg["gbps_per_lane"])))


# ---------------------------------------------------------------------------------------------
# core
# ---------------------------------------------------------------------------------------------

@dataclass
class CoreReference:
    period_ps: int
    layer_names: list[str]
    counters: dict[str, np.ndarray]  # (samples, layers, steps)
    tx_cycles: list[list[int]]  # [sample][transaction]: packets in send order, then (layer, step) passes
    tx_consume: list[int]
    details: dict[str, float] = field(default_factory=dict)


def _reached(pos: tuple[int, ...], kernel, stride, padding, out: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Output positions whose window holds input position ``pos``: output o reads input
    o * stride - padding + d for every kernel offset d."""
    found = []
    for offsets in itertools.product(*(range(k) for k in kernel)):
        o = []
        for axis, d in enumerate(offsets):
            shifted = pos[axis] + padding[axis] - d
            if shifted % stride[axis] != 0:
                break
            oi = shifted // stride[axis]
            if not 0 <= oi < out[axis]:
                break
            o.append(oi)
        else:
            found.append(tuple(o))
    return found


def _targets(layer, c: int, pos: tuple[int, ...]) -> list[tuple[tuple[int, ...], list[int]]]:
    """(output position, output channels) pairs one input spike (channel c, position pos) updates."""
    c_in, _ = _spatial(layer.in_shape)
    c_out, sp_out = _spatial(layer.out_shape)
    if layer.op in ("conv2d", "conv3d"):
        in_per_group = c_in // layer.groups
        out_per_group = c_out // layer.groups
        g = c // in_per_group
        channels = list(range(g * out_per_group, (g + 1) * out_per_group))
        return [(o, channels) for o in _reached(pos, layer.kernel, layer.stride, layer.padding, sp_out)]
    if layer.op in ("avgpool", "maxpool"):
        return [(o, [c]) for o in _reached(pos, layer.kernel, layer.stride, layer.padding, sp_out)]
    if layer.op == "linear":
        return [((), list(range(c_out)))]
    if layer.op == "add":
        return [(pos, [c])]
    if layer.op == "flatten":
        return []  # relabels addresses only
    raise ValueError(f"the core cannot run {layer.op}")


def _spatial_row(pos: tuple[int, ...], spatial: tuple[int, ...]) -> int:
    """Row index of a spatial position: its row-major index divided by the row length."""
    if not spatial:
        return 0
    flat = 0
    for i, n in zip(pos, spatial, strict=True):
        flat = flat * n + i
    return flat // spatial[-1]


def reference_core(hw, wl: Workload, sensor: SensorReference, link: LinkReference) -> CoreReference:
    cfg = hw["core"]
    v, mem_bits, depth = cfg["vector_width"], cfg["membrane_bits"], cfg["pipeline_depth"]
    period = round(Fraction(1_000_000) / _exact(cfg["clock_mhz"]))
    layers = wl.layers[1:] if sensor.kind == "p2m" else list(wl.layers)
    s_n, t_n, l_n = wl.samples, wl.time_steps, len(layers)
    cnt = {k: [[[0] * t_n for _ in range(l_n)] for _ in range(s_n)] for k in CORE_COUNTERS}
    n_pk = len(sensor.packets)
    packet_index = {sp: i for i, sp in enumerate(sensor.packets)}
    packet_ops = [[0] * n_pk for _ in range(s_n)]  # vector ops done inside packet transactions
    pass_ops = [[[0] * t_n for _ in range(l_n)] for _ in range(s_n)]  # vector ops left to the passes

    def add(name: str, s: int, li: int, t: int, n: int) -> None:
        cnt[name][s][li][t] += n

    q = _quad_side(hw["sensor"]["photodiodes_per_pixel"])
    for li, layer in enumerate(layers):
        if "input" in layer.inputs:
            if sensor.kind != "conventional":
                raise ValueError("an encoding layer on the core needs the raw frame of a conventional sensor")
            _reference_encoding(hw, wl, layer, li, q, packet_index, packet_ops, add)
        elif layer.op == "flatten":
            pass  # flatten renames its input's neurons: nothing is read or computed
        else:
            weighted = layer.op in ("conv2d", "conv3d", "linear")
            or_of_spikes = layer.op == "maxpool" and layer.neuron is None
            w_bits = layer.weight_bits if weighted else 0
            for src in layer.inputs:
                src_layer = wl.layer(src)
                spikes = wl.spikes(src)
                _c_src, sp_src = _spatial(src_layer.out_shape)
                fed = li == 0 and src == sensor.layer  # scattered as the link delivers its rows
                for s in range(s_n):
                    for t in range(t_n):
                        for idx in np.argwhere(spikes[s, t]):
                            c, pos = int(idx[0]), tuple(int(i) for i in idx[1:])
                            add("input_spikes", s, li, t, 1)
                            ops = 0
                            for _opos, channels in _targets(layer, c, pos):
                                ops += _chunks(len(channels), v)
                                for _co in channels:
                                    add("synaptic_ops", s, li, t, 1)
                                    add("weight_read_bits", s, li, t, w_bits)
                                    if not or_of_spikes:
                                        add("membrane_read_bits", s, li, t, mem_bits)
                                        add("membrane_write_bits", s, li, t, mem_bits)
                            add("vector_ops", s, li, t, ops)
                            if fed:
                                packet_ops[s][packet_index[(t, _spatial_row(pos, sp_src))]] += ops
                            else:
                                pass_ops[s][li][t] += ops
                        if fed:  # the input buffer holds the packets' payloads
                            for pkt in link.packets[s]:
                                if pkt.step == t:
                                    add("input_buffer_read_bits", s, li, t, pkt.payload_bits)
                        else:  # the whole spike map of the source is read once per step
                            for _n in range(src_layer.out_size):
                                add("spike_read_bits", s, li, t, cfg["spike_bits"])
        _reference_fire(layer, li, s_n, t_n, v, mem_bits, cfg["spike_bits"], add)
        if layer.spiking:
            out = wl.spikes(layer.name)
            for s in range(s_n):
                for t in range(t_n):
                    for fired in out[s, t].reshape(-1):
                        if fired:
                            add("output_spikes", s, li, t, 1)

    tx_cycles = []
    for s in range(s_n):
        packet_cycles = [max(ops, 1) for ops in packet_ops[s]]  # at least one cycle to accept
        passes = []
        for li in range(l_n):
            for t in range(t_n):
                c = pass_ops[s][li][t] + cnt["fire_ops"][s][li][t] + depth
                passes.append(c)
                add("cycles", s, li, t, c)
        if l_n:
            for (t, _row), c in zip(sensor.packets, packet_cycles, strict=True):
                add("cycles", s, 0, t, c)
        tx_cycles.append(packet_cycles + passes)
    counters = {k: np.asarray(cnt[k], dtype=np.int64).reshape(s_n, l_n, t_n) for k in CORE_COUNTERS}
    return CoreReference(period_ps=int(period), layer_names=[la.name for la in layers], counters=counters,
                         tx_cycles=tx_cycles, tx_consume=[1] * n_pk + [0] * (l_n * t_n),
                         details={"vector_width": v, "membrane_bits": mem_bits, "clock_mhz": cfg["clock_mhz"],
                                  "period_ps": int(period)})


def _reference_encoding(hw, wl: Workload, layer, li: int, q: int, packet_index: dict,
                        packet_ops: list[list[int]], add) -> None:
    """A direct-encoded conv2d on the analog frame: multi-bit MACs over the in-bounds window,
    each output row computed when the photodiode line completing its last input row arrives."""
    if layer.op != "conv2d":
        raise ValueError("the core runs a direct-encoded first layer only as conv2d")
    v, mem_bits = hw["core"]["vector_width"], hw["core"]["membrane_bits"]
    in_bits = hw["link"]["raw_bits"]
    c_in, h, w = layer.in_shape
    c_o, h_o, w_o = layer.out_shape
    in_per_group, out_per_group = c_in // layer.groups, c_o // layer.groups
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    for s in range(wl.samples):
        for oy in range(h_o):
            last_row = -1
            row_ops = 0
            for ox in range(w_o):
                for dy in range(kh):
                    for dx in range(kw):
                        iy, ix = oy * sh - ph + dy, ox * sw - pw + dx
                        if not (0 <= iy < h and 0 <= ix < w):
                            continue  # padding: nothing to read or multiply
                        last_row = max(last_row, iy)
                        for ci in range(c_in):
                            add("input_buffer_read_bits", s, li, 0, in_bits)
                            g = ci // in_per_group
                            row_ops += _chunks(out_per_group, v)
                            for _co in range(g * out_per_group, (g + 1) * out_per_group):
                                add("macs", s, li, 0, 1)
                                add("weight_read_bits", s, li, 0, layer.weight_bits)
            add("vector_ops", s, li, 0, row_ops)
            # the packet carrying the last photodiode line of that RGB row releases the work
            gate = (last_row + 1) * q - 1 if last_row >= 0 else 0
            packet_ops[s][packet_index[(0, gate)]] += row_ops
        for t in range(wl.time_steps):
            for _n in range(layer.out_size):
                if t == 0:
                    add("membrane_write_bits", s, li, 0, mem_bits)  # the currents, stored once
                add("synaptic_ops", s, li, t, 1)  # a current added to its membrane
                add("membrane_read_bits", s, li, t, mem_bits)


def _reference_fire(layer, li: int, s_n: int, t_n: int, v: int, mem_bits: int, spike_bits: int, add) -> None:
    """The per-step pass over the layer's output neurons."""
    c, sp = _spatial(layer.out_shape)
    for s in range(s_n):
        for t in range(t_n):
            if layer.neuron is None:
                if layer.op == "maxpool":  # a structural OR: the output map is written
                    for _n in range(layer.out_size):
                        add("spike_write_bits", s, li, t, spike_bits)
                elif layer.op != "flatten" and t == t_n - 1:  # classifier read out after the last step
                    for _n in range(layer.out_size):
                        add("membrane_read_bits", s, li, t, mem_bits)
                continue
            for _pos in _positions(sp):
                add("fire_ops", s, li, t, _chunks(c, v))
                for _ch in range(c):
                    add("compares", s, li, t, 1)
                    add("membrane_read_bits", s, li, t, mem_bits)
                    add("membrane_write_bits", s, li, t, mem_bits)
                    add("spike_write_bits", s, li, t, spike_bits)


# ---------------------------------------------------------------------------------------------
# the whole simulation
# ---------------------------------------------------------------------------------------------

def simulate_reference(hw, wl: Workload) -> Report:
    """The records and summary of :func:`snnsim.simulation.simulate`, from the reference models."""
    sen = reference_sensor(hw, wl)
    lnk = reference_link(hw, wl, sen)
    core = reference_core(hw, wl, sen, lnk)
    s_n, t_n = wl.samples, wl.time_steps
    n_pk = len(sen.packets)
    frame_ps = round(_exact(hw["sensor"]["frame_period_us"]) * 10**6)

    sensor_release, sensor_produce = [], []
    for s in range(s_n):
        for r in range(sen.rows):
            sensor_release.append(s * frame_ps if r == 0 else 0)
            sensor_produce.append(sen.packets_per_row)
    link_service = [p.service_ps for s in range(s_n) for p in lnk.packets[s]]
    core_service = [c * core.period_ps for s in range(s_n) for c in core.tx_cycles[s]]
    stages = [
        StageSpec.make("sensor", [sen.row_time_ps] * (s_n * sen.rows), produce=sensor_produce,
                       release_ps=sensor_release),
        StageSpec.make("link", link_service, consume=[1] * (s_n * n_pk), produce=[1] * (s_n * n_pk)),
        StageSpec.make("core", core_service, consume=core.tx_consume * s_n),
    ]
    caps = [hw["sensor"]["line_buffer_lines"], hw["link"]["output_fifo_packets"]]
    pr = run_pipeline_reference(stages, caps)

    n_tx = len(core.tx_consume)
    frame_start = [int(pr.start_ps[0][s * sen.rows]) for s in range(s_n)]
    sensor_done = [int(pr.done_ps[0][(s + 1) * sen.rows - 1]) for s in range(s_n)]
    link_done = [int(pr.done_ps[1][(s + 1) * n_pk - 1]) for s in range(s_n)]
    frame_done = [int(pr.done_ps[2][(s + 1) * n_tx - 1]) for s in range(s_n)]

    table = hw.energy
    records: list[Record] = []
    add = records.append
    sensor_layer = sen.layer or "-"
    if sen.kind == "p2m":
        energy_uses = {"pixel": ("pixel_frames", "p2m.pixel_read"), "adc": ("adc_conversions", "p2m.adc_conversion")}
    else:
        energy_uses = {"pixel": ("pixel_reads", "sensor.pixel_read"), "adc": ("adc_conversions", "sensor.adc_conversion")}
    for s in range(s_n):
        for action, n in sen.actions.items():
            add(Record(s, sensor_layer, None, "sensor", action, float(n), "count"))
        for action, (count, entry) in energy_uses.items():
            add(Record(s, sensor_layer, None, "sensor", f"energy.{action}",
                       sen.actions[count] * table.pj(entry), "pJ"))
        add(Record(s, sensor_layer, None, "sensor", "readout_ps", float(sensor_done[s] - frame_start[s]), "ps"))
    for s in range(s_n):
        for t in range(t_n if sen.kind == "p2m" else 1):
            step = t if sen.kind == "p2m" else None
            mine = [p for p in lnk.packets[s] if p.step == t]
            add(Record(s, sensor_layer, step, "link", "payload_bits", float(sum(p.payload_bits for p in mine)), "bit"))
            add(Record(s, sensor_layer, step, "link", "wire_bits", float(8 * sum(p.wire_bytes for p in mine)), "bit"))
            add(Record(s, sensor_layer, step, "link", "packets", float(len(mine)), "count"))
        add(Record(s, sensor_layer, None, "link", "bursts", float(sum(p.bursts for p in lnk.packets[s])), "count"))
        add(Record(s, sensor_layer, None, "link", "hs_burst_ps", float(sum(p.burst_ps for p in lnk.packets[s])), "ps"))
    records += core_records(hw, core.layer_names, core.counters)
    for layer in wl.layers:
        if not layer.spiking:
            continue
        spikes = wl.spikes(layer.name)
        for s in range(s_n):
            for t in range(t_n):
                n = 0
                for fired in spikes[s, t].reshape(-1):
                    n += 1 if fired else 0
                add(Record(s, layer.name, t, "activity", "spikes", float(n), "count"))
                add(Record(s, layer.name, t, "activity", "neurons", float(layer.out_size), "count"))

    makespan = int(pr.makespan_ps)
    records += system_records(hw, [8 * sum(p.wire_bytes for p in lnk.packets[s]) for s in range(s_n)],
                              [sum(p.bursts for p in lnk.packets[s]) for s in range(s_n)],
                              frame_start, frame_done, link_done, pr)
    meta = run_meta(hw, wl, sen.kind, sen.layer, sen.details,
                    {"encoding": lnk.encoding, "bits_per_event": lnk.bits_per_event, "ui_ps": lnk.ui_ps,
                     "conventional_payload_bits_per_frame": lnk.conventional_payload_bits,
                     "conventional_wire_bits_per_frame": lnk.conventional_wire_bits},
                    core.details, makespan, pr.names, caps)
    return Report.build(meta, records)
