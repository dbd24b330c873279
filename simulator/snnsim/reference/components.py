"""Reference re-derivation of the sensor, link and core counts, and a reference ``simulate``.

Everything here is counted one item at a time from the unpacked spike maps and the hardware
configuration: every photodiode, ramp count, spike, kernel offset, output channel, neuron and
byte. Time quantities are computed in exact rational arithmetic and rounded up to integer
picoseconds once, where the models round. It is slow on purpose and meant for small workloads.

The core's buffers are tiled channel by channel and row by row, and every frame's passes are
walked in execution order with the buffers' contents kept explicitly (the weight tiles held, the
live spike maps and their sizes, the membranes that found no room), so every SRAM, line-buffer
and DRAM bit is counted where it moves. A pass's DRAM time is an exact fraction of core cycles,
rounded up once.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..hw.sensor import ps
from ..report.report import Report
from ..workload.trace import Workload
from . import parts as ref_parts

CORE_COUNTERS = (
    "cycles", "compute_cycles", "dram_stall_cycles", "vector_ops", "synaptic_ops", "macs", "shift_adds",
    "fire_ops", "compares", "input_spikes", "output_spikes", "weight_read_bits", "membrane_read_bits",
    "membrane_write_bits", "spike_read_bits", "spike_write_bits", "input_buffer_read_bits", "weight_load_bits",
    "line_buffer_bits", "dram_read_bits", "dram_write_bits", "fusion_saved_bits", "dense_macs",
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
    if layer.parts is not None:  # a v2 layer 0: input -> conv2d [-> bias/affine/scale] -> spiking neuron
        syn = layer.parts.synapses
        in_pixels = (len(syn) == 1 and [n.op for n in syn[0].chain] == ["conv2d"] and syn[0].source == "input"
                     and all(n.op in ("bias", "affine", "scale") for n in layer.parts.passes)
                     and layer.parts.spiking_neuron)
    else:
        in_pixels = layer.op == "conv2d" and layer.neuron is not None
    if (not in_pixels or layer.inputs != ["input"] or layer.groups != 1
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
            lines.append((step, row, data_id, payload, len(bits) + (16 if needs_tag else 0)))
        frames.append(_frame(lines, cfg))
    return LinkReference(encoding, frames, bpe, conv_payload, conv_wire, float(Fraction(1000) / _exact(cfg["gbps_per_lane"])))


# ---------------------------------------------------------------------------------------------
# core
# ---------------------------------------------------------------------------------------------

KIB_BITS = 8 * 1024
_WINDOWED = ("conv2d", "conv3d", "avgpool", "maxpool")


class ReferenceMappingError(ValueError):
    """The workload does not fit the core's buffers (a weight tile needs at least one output
    channel, a membrane tile at least one output row; grouped layers are not tiled)."""


@dataclass
class CoreReference:
    period_ps: int
    layer_names: list[str]
    counters: dict[str, np.ndarray]  # (samples, layers, steps)
    tx_cycles: list[list[int]]  # [sample][transaction]: packets in send order, then the passes in loop order
    tx_consume: list[int]
    details: dict[str, float] = field(default_factory=dict)


@dataclass
class SpikeMap:
    """A spike map the core stores between the pass that writes it and its last reader."""

    name: str
    writer: int  # core layer whose passes write it (the first core layer for the sensor's map)
    bits_per_step: int
    readers: list[int]  # one entry per read (a layer reading the map twice appears twice)
    source: object  # the layer whose neurons the map holds


@dataclass
class CoreMapping:
    """Where everything of one frame lives: weight tiles, membrane tiles, fused pairs, spike maps."""

    weight_tiles: list[list[list[int]]]  # per layer: tiles of output channels (one tile if it fits)
    tile_weight_bits: list[list[int]]  # per layer and tile: weight bits loaded into the weight SRAM
    resident: bool  # the weights of every layer fit together
    row_tiles: list[list[list[int]]]  # per layer: tiles of output rows (one tile if the membranes fit)
    membrane_spill_bits: list[int]  # per layer (time_outer): membrane bits kept in DRAM
    fused: list[tuple[int, int]]
    refused: dict[str, str]
    maps: list[SpikeMap]


def _capacity_bits(kib: float) -> Fraction:
    """A buffer size given in KiB, in bits, exactly as written (0.05 KiB = 409.6 bits)."""
    return _exact(kib) * KIB_BITS


def _channel_weight_bits(layer) -> list[int]:
    """Bits of each output channel's weights, added up weight by weight (empty without weights)."""
    if layer.op in ("conv2d", "conv3d"):
        fan_in = layer.in_shape[0] // layer.groups
        offsets = list(itertools.product(*(range(k) for k in layer.kernel)))
    elif layer.op == "linear":
        fan_in, offsets = layer.in_shape[0], [()]
    else:
        return []
    out = []
    for _co in range(layer.out_shape[0]):
        bits = 0
        for _ci in range(fan_in):
            for _offset in offsets:
                bits += layer.weight_bits
        out.append(bits)
    return out


def _has_membranes(layer) -> bool:
    """Synaptic ops and neurons keep membranes; flatten and an OR of spikes keep none."""
    return not (layer.op == "flatten" or (layer.op == "maxpool" and layer.neuron is None))


def _membrane_bits(layer, mem_bits: int) -> int:
    if layer.parts is not None:
        return ref_parts.membrane_bits(layer.parts, mem_bits)
    bits = 0
    if _has_membranes(layer):
        for _n in range(layer.out_size):
            bits += mem_bits
    return bits


def _rows(shape: tuple[int, ...]) -> int:
    """Spatial rows of an activation (the second-to-last spatial axis); a flat vector is one row."""
    _c, sp = _spatial(shape)
    return sp[-2] if len(sp) >= 2 else 1


def _row_of(pos: tuple[int, ...]) -> int:
    return pos[-2] if len(pos) >= 2 else 0


def _weight_tiles(layer, cap: Fraction) -> list[list[int]]:
    """Output channels in tiles whose weights fit the weight SRAM, filled channel by channel."""
    channels = list(range(layer.out_shape[0]))
    per_channel = _channel_weight_bits(layer)
    if sum(per_channel) <= cap:
        return [channels]
    if layer.groups != 1:
        raise ReferenceMappingError(f"the weights of {layer.name} do not fit and a grouped layer is not tiled")
    tiles: list[list[int]] = []
    tile: list[int] = []
    used = 0
    for co in channels:
        if per_channel[co] > cap:
            raise ReferenceMappingError(f"one output channel of {layer.name} needs {per_channel[co]} weight bits")
        if used + per_channel[co] > cap:
            tiles.append(tile)
            tile, used = [], 0
        tile.append(co)
        used += per_channel[co]
    tiles.append(tile)
    return tiles


def _row_tiles(layer, cap: Fraction, mem_bits: int) -> list[list[int]]:
    """Output rows in tiles whose membranes fit the membrane SRAM, filled row by row."""
    rows = list(range(_rows(layer.out_shape)))
    total = _membrane_bits(layer, mem_bits)
    if total <= cap:
        return [rows]
    if layer.parts is not None:
        raise ReferenceMappingError(f"the membranes of {layer.name} ({total} bits) do not fit")
    row_bits = total // len(rows)  # every output row holds the same neurons
    tiles: list[list[int]] = []
    tile: list[int] = []
    for r in rows:
        if (len(tile) + 1) * row_bits > cap:
            if not tile:
                raise ReferenceMappingError(f"one output row of {layer.name} needs {row_bits} membrane bits")
            tiles.append(tile)
            tile = []
        tile.append(r)
    tiles.append(tile)
    return tiles


def _readers(name: str, layers: list) -> list[int]:
    """Core layers that read the neurons of ``name``: its consumers, and through a flatten (a
    relabelling) the flatten's consumers; a flatten nobody consumes counts as the reader."""
    out = []
    for j, la in enumerate(layers):
        for src in la.inputs:
            if src == name:
                if la.op == "flatten":
                    out += _readers(la.name, layers) or [j]
                else:
                    out.append(j)
    return out


def _fusion(layers: list, cfg: dict, t_n: int) -> tuple[list[tuple[int, int]], dict[str, str]]:
    """Pairs of consecutive layers pipelined through the line buffer, formed from the first core
    layer on, and for each pair refused the reason."""
    if cfg["fusion"] != "two_layer":
        return [], {}
    cap = _capacity_bits(cfg["line_buffer_kib"])
    steps_held = t_n if cfg["loop_order"] == "time_inner" else 1
    pairs: list[tuple[int, int]] = []
    refused: dict[str, str] = {}
    i = 0
    while i + 1 < len(layers):
        a, b = layers[i], layers[i + 1]
        others = [la.name for la in layers for src in la.inputs if src == a.name and la.name != b.name]
        why = None
        if a.parts is not None or b.parts is not None:
            why = "fusing format v2 layers (several ops in a layer) is not modelled"
        elif b.inputs != [a.name]:
            why = f"{b.name} does not read only {a.name}"
        elif others:
            why = f"{a.name} also feeds {', '.join(others)}"
        elif not a.spiking:
            why = f"{a.name} does not spike"
        elif b.op not in _WINDOWED:
            why = f"{b.name} ({b.op}) needs its whole input, not a window of rows"
        else:
            # the rows of a's map one window of b covers, every column and channel, for the steps held
            c_a, sp_a = _spatial(a.out_shape)
            window_rows = b.kernel[-2] * (b.kernel[0] if b.op == "conv3d" else 1)
            need = 0
            for _row in range(window_rows):
                for _x in range(sp_a[-1]):
                    for _c in range(c_a):
                        for _t in range(steps_held):
                            need += cfg["spike_bits"]
            if need > cap:
                why = f"the line buffer needs {need} bits for {b.name}'s window, has {math.floor(cap)}"
        if why is None:
            pairs.append((i, i + 1))
            i += 2
        else:
            refused[f"{a.name}->{b.name}"] = why
            i += 1
    return pairs, refused


def _map_core(hw, layers: list, sensor_layer, t_n: int) -> CoreMapping:
    """Tile every layer into the buffers and list the spike maps the core has to store."""
    cfg = hw["core"]
    mem_bits, spike_bits = cfg["membrane_bits"], cfg["spike_bits"]
    time_inner = cfg["loop_order"] == "time_inner"
    cap_w = _capacity_bits(cfg["weight_sram_kib"])
    cap_m = _capacity_bits(cfg["membrane_sram_kib"])

    weight_tiles, tile_bits = [], []
    for la in layers:
        if la.parts is not None:  # a format v2 layer is not tiled: its weights fit or it is refused
            bits = ref_parts.weight_bits(la.parts)
            if bits > cap_w:
                raise ReferenceMappingError(f"the weights of {la.name} ({bits} bits) do not fit")
            weight_tiles.append([list(range(la.out_shape[0]))])
            tile_bits.append([bits] if bits else [])
            continue
        tiles = _weight_tiles(la, cap_w)
        weight_tiles.append(tiles)
        per_channel = _channel_weight_bits(la)
        tile_bits.append([sum(per_channel[co] for co in tile) for tile in tiles] if per_channel else [])
    resident = sum(sum(bits) for bits in tile_bits) <= cap_w

    # time_inner: one layer's membranes at a time, in row tiles if they do not fit;
    # time_outer: every layer's membranes persist, the buffer filled in layer order
    if time_inner:
        row_tiles = [_row_tiles(la, cap_m, mem_bits) for la in layers]
        spill = [0] * len(layers)
    else:
        row_tiles = [[list(range(_rows(la.out_shape)))] for la in layers]
        spill = []
        free = math.floor(cap_m)  # filled bit by bit: a layer may keep part of its membranes
        for la in layers:
            bits = _membrane_bits(la, mem_bits)
            kept = min(bits, free)
            free -= kept
            spill.append(bits - kept)

    fused, refused = _fusion(layers, cfg, t_n)
    fused_first = {a for a, _b in fused}

    maps = []
    if sensor_layer is not None:
        # the first core layer is fed from the input buffer; the map is stored for the others
        readers = [r for r in _readers(sensor_layer.name, layers) if r != 0]
        if readers:
            maps.append(SpikeMap(sensor_layer.name, 0, sensor_layer.out_size * spike_bits, readers, sensor_layer))
    for i, la in enumerate(layers):
        readers = _readers(la.name, layers)
        if la.spiking and la.op != "flatten" and readers and i not in fused_first:
            per_value = la.parts.out_bits if la.parts is not None and la.parts.output.kind == "events" else spike_bits
            bits = 0
            for _n in range(la.out_size):
                bits += per_value
            maps.append(SpikeMap(la.name, i, bits, readers, la))
    return CoreMapping(weight_tiles, tile_bits, resident, row_tiles, spill, fused, refused, maps)


def _rows_read(reader, tile: list[int], tiled: bool, in_rows: int) -> int:
    """Rows of an input map one row tile of ``reader`` reads: the whole map when the layer is not
    tiled; otherwise from the first input row its windows cover to the last, within the map."""
    if not tiled or reader.op not in _WINDOWED + ("add",):
        return in_rows
    k, s, p = (reader.kernel[-2], reader.stride[-2], reader.padding[-2]) if reader.op != "add" else (1, 1, 0)
    top = min(oy * s - p for oy in tile)
    bottom = max(oy * s - p + k - 1 for oy in tile)
    count = 0
    for row in range(in_rows):
        if top <= row <= bottom:
            count += 1
    return count


def _map_read_bits(m: SpikeMap, r: int, layers: list, mapping: CoreMapping) -> int:
    """Bits of one step of map ``m`` that layer ``r`` reads: every weight tile reads, for each of
    its row tiles, the input rows that tile needs."""
    in_rows = _rows(m.source.out_shape)
    row_bits = m.bits_per_step // in_rows
    tiled = len(mapping.row_tiles[r]) > 1
    bits = 0
    for _wt in mapping.weight_tiles[r]:
        for tile in mapping.row_tiles[r]:
            bits += _rows_read(layers[r], tile, tiled, in_rows) * row_bits
    return bits


def _reached(pos: tuple[int, ...], kernel, stride, padding, out: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Output positions whose window holds input position ``pos`` (no dilation in format v1)."""
    return ref_parts.reached(pos, kernel, stride, padding, (1,) * len(kernel), out)


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


def _dense_macs(layer) -> int:
    """MACs of the layer computed densely for one step: every output neuron, every input of its
    window (padding included)."""
    count = 0
    if layer.op in ("conv2d", "conv3d"):
        window = layer.in_shape[0] // layer.groups
        for k in layer.kernel:
            window *= k
        for _n in range(layer.out_size):
            count += window
    elif layer.op == "linear":
        for _n in range(layer.out_size):
            count += layer.in_shape[0]
    return count


def reference_core(hw, wl: Workload, sensor: SensorReference, link: LinkReference) -> CoreReference:
    cfg = hw["core"]
    v, mem_bits, depth = cfg["vector_width"], cfg["membrane_bits"], cfg["pipeline_depth"]
    period = round(Fraction(1_000_000) / _exact(cfg["clock_mhz"]))
    layers = wl.layers[1:] if sensor.layer else list(wl.layers)  # a layer computed before the core is not its
    s_n, t_n, l_n = wl.samples, wl.time_steps, len(layers)
    time_inner = cfg["loop_order"] == "time_inner"
    scatter = cfg["dataflow"] == "scatter"
    sensor_layer = wl.layer(sensor.layer) if sensor.layer else None
    mapping = _map_core(hw, layers, sensor_layer, t_n)
    cnt = {k: [[[0] * t_n for _ in range(l_n)] for _ in range(s_n)] for k in CORE_COUNTERS}
    n_pk = len(sensor.packets)
    packet_index = {sp: i for i, sp in enumerate(sensor.packets)}
    packet_ops = [[0] * n_pk for _ in range(s_n)]  # cycles of work done inside packet transactions
    pass_ops = [[[0] * t_n for _ in range(l_n)] for _ in range(s_n)]  # vector ops left to the passes

    def add(name: str, s: int, li: int, t: int, n: int) -> None:
        cnt[name][s][li][t] += n

    # input lines per row of the frame: a Bayer quad's photodiode rows; one line of a stored frame
    q = _quad_side(hw["sensor"]["photodiodes_per_pixel"]) if sensor.kind == "conventional" else 1
    for li, layer in enumerate(layers):
        if layer.parts is not None:
            _reference_parts_layer(hw, wl, layer, li, sensor, link, packet_index, packet_ops, pass_ops, add, q)
            continue
        dense = _dense_macs(layer)
        for s in range(s_n):
            for t in range(t_n):
                add("dense_macs", s, li, t, dense)
        if "input" in layer.inputs:
            if sensor.kind not in ("conventional", "dram"):
                raise ValueError("an encoding layer on the core needs the raw frame")
            def run(add_, pk_, layer=layer, li=li) -> None:
                _reference_encoding(hw, wl, layer, li, q, mapping.weight_tiles[li], packet_index, pk_, add_)
            _encoding_steps(hw, wl, li, packet_ops, pass_ops, add, run)
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
                            targets = _targets(layer, c, pos)
                            ops = 0
                            # the layer runs weight tile by weight tile, each over its row tiles;
                            # a vector op updates channels of one tile at one output position
                            for w_tile in mapping.weight_tiles[li]:
                                for r_tile in mapping.row_tiles[li]:
                                    for opos, channels in targets:
                                        if _row_of(opos) not in r_tile:
                                            continue
                                        mine = [co for co in channels if co in w_tile]
                                        ops += _chunks(len(mine), v)
                                        for _co in mine:
                                            add("synaptic_ops", s, li, t, 1)
                                            add("weight_read_bits", s, li, t, w_bits)
                                            if scatter and not or_of_spikes:
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
        _reference_fire(layer, li, s_n, t_n, v, mem_bits, add)
        if layer.spiking:
            out = wl.spikes(layer.name)
            for s in range(s_n):
                for t in range(t_n):
                    for fired in out[s, t].reshape(-1):
                        if fired:
                            add("output_spikes", s, li, t, 1)

    if time_inner:
        passes = [(li, t) for li in range(l_n) for t in range(t_n)]
    else:
        passes = [(li, t) for t in range(t_n) for li in range(l_n)]
    in_dram = _reference_memory(hw, layers, mapping, passes, s_n, t_n, add)

    # DRAM time of a pass: its bits at the DRAM bandwidth, in cycles of the core's whole-ps
    # period (the cycle the pipeline runs on), rounded up once
    bits_per_ps = 8 * _exact(hw["dram"]["bandwidth_gbytes_per_s"]) / 1000  # 1 GB/s = 8 bits per ns
    tx_cycles = []
    for s in range(s_n):
        packet_cycles = [max(ops, 1) for ops in packet_ops[s]]  # at least one cycle to accept
        pass_cycles = []
        for li, t in passes:
            fill = 0 if layers[li].op == "flatten" else depth  # a flatten pass does no work
            compute = pass_ops[s][li][t] + cnt["fire_ops"][s][li][t] + fill
            moved = cnt["dram_read_bits"][s][li][t] + cnt["dram_write_bits"][s][li][t]
            dram = math.ceil(Fraction(moved) / bits_per_ps / period)
            if hw["dram"]["double_buffered"]:
                cycles = max(compute, dram)  # transfers overlap the compute
            else:
                cycles = compute + dram
            pass_cycles.append(cycles)
            add("compute_cycles", s, li, t, compute)
            add("dram_stall_cycles", s, li, t, cycles - compute)
            add("cycles", s, li, t, cycles)
        if l_n:
            for (t, _row), c in zip(sensor.packets, packet_cycles, strict=True):
                add("cycles", s, 0, t, c)
                add("compute_cycles", s, 0, t, c)
        tx_cycles.append(packet_cycles + pass_cycles)
    counters = {k: np.asarray(cnt[k], dtype=np.int64).reshape(s_n, l_n, t_n) for k in CORE_COUNTERS}
    return CoreReference(period_ps=int(period), layer_names=[la.name for la in layers], counters=counters,
                         tx_cycles=tx_cycles, tx_consume=[1] * n_pk + [0] * (l_n * t_n),
                         details={"vector_width": v, "membrane_bits": mem_bits, "clock_mhz": cfg["clock_mhz"],
                                  "period_ps": int(period), "loop_order": cfg["loop_order"], "fusion": cfg["fusion"],
                                  "fused_pairs": [[layers[a].name, layers[b].name] for a, b in mapping.fused],
                                  "fusion_refused": mapping.refused, "spike_maps_in_dram": sorted(in_dram),
                                  "weights_resident": mapping.resident, "encoding_mode": cfg["encoding_mode"],
                                  "input_bits": cfg["input_bits"], "encoding_per_step": cfg["encoding_per_step"]})


def _reference_memory(hw, layers: list, mapping: CoreMapping, passes: list[tuple[int, int]], s_n: int, t_n: int,
                      add) -> set[str]:
    """Walk every frame's passes in execution order with explicit buffer contents: load weight
    tiles, place and free spike maps, move spilled membranes; count SRAM, line-buffer and DRAM bits.
    Returns the spike maps that went to DRAM."""
    cfg = hw["core"]
    spike_bits = cfg["spike_bits"]
    time_inner = cfg["loop_order"] == "time_inner"
    cap_s = _capacity_bits(cfg["spike_sram_kib"])
    fused_next = dict(mapping.fused)  # a -> b
    fused_prev = {b: a for a, b in mapping.fused}
    by_name = {m.name: m for m in mapping.maps}
    in_dram: set[str] = set()
    weight_buffer: set[tuple[int, int]] = set()  # (layer, tile) held; kept from one frame to the next
    for s in range(s_n):
        live: dict[tuple[str, int], int] = {}  # (map, first step held) -> bits, in the spike SRAM
        where: dict[tuple[str, int], str] = {}  # (map, step) -> "sram" or "dram"
        for li, t in passes:
            # weights: with time_inner a layer runs tile by tile (all steps of a tile before the
            # next), each tile loaded before its step-0 work; with time_outer every pass needs
            # every tile of its layer again
            if not time_inner or t == 0:
                for k, bits in enumerate(mapping.tile_weight_bits[li]):
                    if (li, k) in weight_buffer:
                        continue
                    if not mapping.resident:
                        weight_buffer.clear()  # only the tile in use fits
                    weight_buffer.add((li, k))
                    add("dram_read_bits", s, li, t, bits)
                    add("weight_load_bits", s, li, t, bits)
            # membranes without room on chip (time_outer): fetched for the pass, written back after
            add("dram_read_bits", s, li, t, mapping.membrane_spill_bits[li])
            add("dram_write_bits", s, li, t, mapping.membrane_spill_bits[li])
            # maps this pass starts to write: next to the live ones if they fit, else in DRAM
            for m in mapping.maps:
                if m.writer == li and (not time_inner or t == 0):
                    held = list(range(t_n)) if time_inner else [t]
                    size = 0
                    for _step in held:
                        size += m.bits_per_step
                    place = "sram" if sum(live.values()) + size <= cap_s else "dram"
                    if place == "sram":
                        live[(m.name, held[0])] = size
                    else:
                        in_dram.add(m.name)
                    for step in held:
                        where[(m.name, step)] = place
            # the pass writes its output map and reads its input maps
            for m in mapping.maps:
                if m.writer == li:
                    kind = "spike_write_bits" if where[(m.name, t)] == "sram" else "dram_write_bits"
                    add(kind, s, li, t, m.bits_per_step)
                for r in m.readers:
                    if r == li:
                        kind = "spike_read_bits" if where[(m.name, t)] == "sram" else "dram_read_bits"
                        add(kind, s, li, t, _map_read_bits(m, r, layers, mapping))
            # a fused pair: the first layer's spikes go through the line buffer to the second
            if li in fused_next:
                for _n in range(layers[li].out_size):
                    add("line_buffer_bits", s, li, t, spike_bits)  # written
                    add("fusion_saved_bits", s, li, t, 2 * spike_bits)  # not written to and read from the spike SRAM
            if li in fused_prev:
                for _n in range(layers[fused_prev[li]].out_size):
                    add("line_buffer_bits", s, li, t, spike_bits)  # read
            # maps whose last reader this was are freed
            for key in list(live):
                name, first = key
                if max(by_name[name].readers) == li and (t == t_n - 1 if time_inner else first == t):
                    del live[key]
    return in_dram


def _reference_parts_layer(hw, wl: Workload, layer, li: int, sensor, link, packet_index: dict, packet_ops, pass_ops,
                           add, q: int) -> None:
    """A format v2 layer (:mod:`.parts`): its synapses spike by spike, its dense passes and neuron
    value by value, its output spikes one by one."""
    cfg = hw["core"]
    v, mem_bits = cfg["vector_width"], cfg["membrane_bits"]
    s_n, t_n = wl.samples, wl.time_steps
    dense = ref_parts.dense_macs(layer.parts)
    for s in range(s_n):
        for t in range(t_n):
            add("dense_macs", s, li, t, dense)
    if layer.parts.encoding:
        if sensor.kind not in ("conventional", "dram"):
            raise ValueError("an encoding layer on the core needs the raw frame")
        _encoding_steps(hw, wl, li, packet_ops, pass_ops, add, lambda add_, pk_: ref_parts.encoding(
            hw, wl, layer, li, q, packet_index, pk_, add_, _reference_encoding))
    fed_sources = {sy.source for sy in layer.parts.synapses} & ({sensor.layer} if li == 0 and sensor.layer else set())

    sp_src = _spatial(wl.layer(sensor.layer).out_shape)[1] if fed_sources else ()

    def fed_row(sy, s: int, t: int, pos: tuple, ops: int) -> bool:
        """The link delivers the sensor's map to the first core layer row by row."""
        if not fed_sources or sy.source != sensor.layer or sy.delayed:
            return False
        packet_ops[s][packet_index[(t, _spatial_row(pos, sp_src))]] += ops
        return True

    ref_parts.synapses(wl, layer, li, s_n, t_n, v, mem_bits, cfg["dataflow"] == "scatter", add, pass_ops, fed_row)
    if fed_sources:  # the input buffer holds the packets' payloads
        for s in range(s_n):
            for pkt in link.packets[s]:
                add("input_buffer_read_bits", s, li, pkt.step, pkt.payload_bits)
    ref_parts.passes_and_neuron(wl, layer, li, s_n, t_n, v, mem_bits, add, pass_ops)
    if layer.spiking:
        out = wl.spikes(layer.name)  # spikes, or which events are non-zero
        for s in range(s_n):
            for t in range(t_n):
                for fired in out[s, t].reshape(-1):
                    if fired:
                        add("output_spikes", s, li, t, 1)


_REPEATED = ("vector_ops", "macs", "shift_adds", "weight_read_bits", "input_buffer_read_bits", "membrane_write_bits")


class _IntoPass:
    """Stands for the packet transactions' work when a later step repeats the encoding: whatever
    would be added to a packet goes to the layer's pass of step ``t`` instead."""

    def __init__(self, pass_ops, li: int, t: int) -> None:
        self.pass_ops, self.li, self.t = pass_ops, li, t

    def __getitem__(self, s: int) -> _IntoPass._Row:
        return _IntoPass._Row(self, s)

    class _Row:
        def __init__(self, owner: _IntoPass, s: int) -> None:
            self.owner, self.s = owner, s

        def __getitem__(self, _packet: int) -> int:
            return 0

        def __setitem__(self, _packet: int, ops: int) -> None:
            self.owner.pass_ops[self.s][self.owner.li][self.owner.t] += ops


def _encoding_steps(hw, wl: Workload, li: int, packet_ops, pass_ops, add, run) -> None:
    """The encoding layer's work as the frame's lines arrive (step 0); with
    ``core.encoding_per_step`` the same work again in the pass of every later step: the MACs,
    reads and stored currents of step 0, not the per-step adds of the currents (counted once per
    step already)."""
    run(add, packet_ops)
    if not hw["core"]["encoding_per_step"]:
        return
    for t in range(1, wl.time_steps):
        def add_t(name: str, s: int, li_: int, step: int, n: int, t: int = t) -> None:
            if name in _REPEATED and step == 0:
                add(name, s, li_, t, n)
        run(add_t, _IntoPass(pass_ops, li, t))


def _reference_encoding(hw, wl: Workload, layer, li: int, q: int, weight_tiles: list[list[int]], packet_index: dict,
                        packet_ops: list[list[int]], add, held: int | None = None) -> None:
    """A direct-encoded conv2d (or a conv3d over a cube's bands) on the analog frame: multi-bit
    MACs over the in-bounds window, each output row (an index of the second-to-last spatial axis)
    computed when the input line completing its last input row arrives (``q`` lines per row: a
    Bayer quad's photodiode rows, 1 for stored frames). A vector op updates output channels of
    one weight tile; bit-serial, it takes input_bits cycles and every MAC is input_bits shift-adds."""
    if layer.op not in ("conv2d", "conv3d"):
        raise ValueError("the core runs a direct-encoded first layer only as conv2d or conv3d")
    cfg = hw["core"]
    v, mem_bits = cfg["vector_width"], cfg["membrane_bits"]
    bit_serial = cfg["encoding_mode"] == "bit_serial"
    cycles_per_op = cfg["input_bits"] if bit_serial else 1
    in_bits = cfg["input_bits"]  # a raw sample is kept as its input_bits most significant bits
    c_in, *sp_in = layer.in_shape
    c_o, *sp_out = layer.out_shape
    r_axis = len(sp_in) - 2  # the row axis
    in_per_group, out_per_group = c_in // layer.groups, c_o // layer.groups
    kernel, stride, padding = tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding)
    for s in range(wl.samples):
        for oy in range(sp_out[r_axis]):
            last_row = -1
            row_ops = 0
            others = [range(n) if a != r_axis else range(oy, oy + 1) for a, n in enumerate(sp_out)]
            for opos in itertools.product(*others):
                for off in itertools.product(*(range(k) for k in kernel)):
                    ipos = [o * st - p + d for o, st, p, d in zip(opos, stride, padding, off, strict=True)]
                    if not all(0 <= i < n for i, n in zip(ipos, sp_in, strict=True)):
                        continue  # padding: nothing to read or multiply
                    last_row = max(last_row, ipos[r_axis])
                    for ci in range(c_in):
                        add("input_buffer_read_bits", s, li, 0, in_bits)
                        g = ci // in_per_group
                        group = range(g * out_per_group, (g + 1) * out_per_group)
                        for tile in weight_tiles:
                            row_ops += _chunks(len([co for co in group if co in tile]), v)
                        for _co in group:
                            add("macs", s, li, 0, 1)
                            add("weight_read_bits", s, li, 0, layer.weight_bits)
                            if bit_serial:
                                for _bit in range(cfg["input_bits"]):
                                    add("shift_adds", s, li, 0, 1)
            add("vector_ops", s, li, 0, row_ops)
            # the packet carrying the last input line of that row releases the work
            gate = (last_row + 1) * q - 1 if last_row >= 0 else 0
            packet_ops[s][packet_index[(0, gate)]] += row_ops * cycles_per_op
        for _n in range(layer.out_size):
            add("membrane_write_bits", s, li, 0, mem_bits)  # the currents, stored once
        for t in range(wl.time_steps):
            for _n in range(layer.out_size if held is None else held):
                add("synaptic_ops", s, li, t, 1)  # a current added to its membrane
                add("membrane_read_bits", s, li, t, mem_bits)


def _reference_fire(layer, li: int, s_n: int, t_n: int, v: int, mem_bits: int, add) -> None:
    """The per-step pass over the layer's output neurons (the spikes it writes are counted with
    the spike maps)."""
    c, sp = _spatial(layer.out_shape)
    for s in range(s_n):
        for t in range(t_n):
            if layer.neuron is None:
                if layer.op not in ("maxpool", "flatten") and t == t_n - 1:  # classifier read out after the last step
                    for _n in range(layer.out_size):
                        add("membrane_read_bits", s, li, t, mem_bits)
                continue
            for _pos in _positions(sp):
                add("fire_ops", s, li, t, _chunks(c, v))
                for _ch in range(c):
                    add("compares", s, li, t, 1)
                    add("membrane_read_bits", s, li, t, mem_bits)
                    add("membrane_write_bits", s, li, t, mem_bits)


def simulate_reference(hw, wl: Workload) -> Report:
    """The records and summary of :func:`snnsim.simulation.simulate`, from the reference models
    (composed in :mod:`.system`)."""
    from .system import simulate_reference as run

    return run(hw, wl)
