"""The core's buffers and DRAM: what fits on chip, what spills, and what two-layer fusion saves.

Buffers (capacities in the hwconfig's ``core`` section):

* **weight SRAM**: a layer's weights are loaded from DRAM before its first pass. A layer whose
  weights exceed the buffer is split into output-channel tiles that fit; every tile re-reads the
  layer's input spike maps (a layer one of whose output channels alone does not fit is an error). If the weights of
  all core layers fit together they stay resident, loaded once for the first frame only. Otherwise
  each layer loads its own once per frame with ``time_inner`` (layers outer), or once per step
  with ``time_outer`` (every layer runs at every step, so the weights cycle through the buffer).
* **membrane SRAM**: with ``time_inner`` one layer's membranes are live at a time; a layer whose
  membranes do not fit runs in tiles of output rows (all steps of a tile before the next), and
  each tile re-reads the band of input rows its windows span (the halo). One output row that does not
  fit is an error. With ``time_outer`` every layer's membranes persist across steps: the buffer
  is filled in layer order and what does not fit spills to DRAM, written back and read again at
  every step.
* **spike SRAM** (global buffer): each layer's output spike map lives from its producing pass to
  its last consumer. With ``time_inner`` a map holds all T steps (T x N bits), with ``time_outer``
  one step (N bits). Maps are placed in the order they are produced; a map that does not fit next
  to the live ones goes to DRAM instead: written once per step and read by each consumer.
  A P2M sensor's map arrives through the input buffer; it is stored in the spike SRAM only if a
  core layer other than the first also reads it.
* **two-layer fusion** (``fusion: two_layer``): consecutive layers (a, b) are pipelined through a
  line buffer when b reads only a, a feeds only b, b has a window (conv or pool) and the line
  buffer holds b's window rows of a's map (kernel rows x width x channels x spike bits, x T with
  ``time_inner``). Then a's map never enters the spike SRAM or DRAM; its bits go through the line
  buffer instead. Pairs are formed greedily from the first core layer.

DRAM time: a pass moving D bits takes D / bandwidth; with ``double_buffered`` the transfers
overlap compute (the pass lasts the longer of the two), otherwise they add to it. The extra
cycles are the pass's memory stall.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import MappingError
from ..workload.graph import Layer
from .synapses import window

KIB_BITS = 8 * 1024


@dataclass
class MemoryPlan:
    """DRAM and buffer traffic per (layer, step) of one frame, and the placement decisions."""

    dram_read_bits: np.ndarray  # (L, T) for every frame
    dram_write_bits: np.ndarray
    weight_load_bits: np.ndarray  # weight SRAM writes (L, T)
    first_frame_only_bits: np.ndarray  # (L, T) resident weights: DRAM reads and SRAM writes of frame 0 only
    spike_sram_write: np.ndarray  # (L, T) output maps written to the spike SRAM (or line buffer)
    spike_sram_read: np.ndarray  # (L, T) input maps read from the spike SRAM
    line_buffer_bits: np.ndarray  # (L, T) bits through fusion line buffers (written + read)
    fusion_saved_bits: np.ndarray  # (L, T) spike-SRAM/DRAM traffic fusion avoided
    fused_pairs: list[tuple[str, str]] = field(default_factory=list)
    fusion_refused: dict[str, str] = field(default_factory=dict)
    map_in_dram: list[str] = field(default_factory=list)
    weight_tiles: list[int] = field(default_factory=list)  # per layer: output-channel tiles (1 = fits)
    row_tiles: list[int] = field(default_factory=list)  # per layer: output-row tiles for membranes (1 = fits)
    rows_per_tile: list[int] = field(default_factory=list)
    tile_channels: list[int] = field(default_factory=list)  # output channels per tile (0 = untiled)
    weights_resident: bool = False
    membrane_spill_bits: int = 0


def weight_bits(layer: Layer) -> int:
    """Bits of a layer's weights as stored (0 for ops without weights); a format v2 layer's are
    those of all its weighted ops."""
    if layer.parts is not None:
        total = 0
        for node, in_shape in layer.parts.weighted_in:
            groups = int(node.params.get("groups", 1))
            per_out = in_shape[0] // groups * (math.prod(window(node)[0]) if node.op != "linear" else 1)
            total += node.out_shape[0] * per_out * int(node.params.get("weight_bits", 1) or 1)
        return total
    shape = layer.weight_shape
    return math.prod(shape) * layer.weight_bits if shape else 0


def membrane_bits_of(layer: Layer, mem_bits: int) -> int:
    """Membrane storage of a layer (neurons with state: synaptic ops and neurons); a format v2
    layer also holds its accumulators (currents before pooling, residual branches) and a second
    state per neuron where its model has one."""
    if layer.parts is not None:
        p = layer.parts
        if p.or_of_spikes:
            return 0
        held = p.states * p.output.size if p.neuron is not None else p.output.size
        return (p.accumulator_values + held) * mem_bits
    if layer.op == "flatten" or (layer.op == "maxpool" and layer.neuron is None):
        return 0
    return layer.out_size * mem_bits


def map_bits_per_value(layer: Layer, spike_bits: int) -> int:
    """Bits of one value of a layer's stored map: ``spike_bits`` per spike, or an event's count
    width (:mod:`snnsim.workload.hwlayer`) for a map of events."""
    if layer.parts is not None and layer.parts.output.kind == "events":
        return layer.parts.out_bits
    return spike_bits


def fusion_pairs(layers: list[Layer], consumers: dict[str, list[str]], cfg: dict, steps: int,
                 spike_bits: int) -> tuple[list[tuple[int, int]], dict[str, str]]:
    """Greedy pairs (a, b) of consecutive core layers that can be pipelined, and why others cannot."""
    if cfg["fusion"] != "two_layer":
        return [], {}
    cap = cfg["line_buffer_kib"] * KIB_BITS
    pairs, refused = [], {}
    i = 0
    while i < len(layers) - 1:
        a, b = layers[i], layers[i + 1]
        why = None
        if a.parts is not None or b.parts is not None:
            why = "fusing format v2 layers (several ops in a layer) is not modelled"
        elif b.inputs != [a.name]:
            why = f"{b.name} does not read only {a.name}"
        elif consumers.get(a.name, []) != [b.name]:
            why = f"{a.name} also feeds {', '.join(c for c in consumers.get(a.name, []) if c != b.name)}"
        elif not a.spiking:
            why = f"{a.name} does not spike"
        elif b.op not in ("conv2d", "conv3d", "avgpool", "maxpool"):
            why = f"{b.name} ({b.op}) needs its whole input, not a window of rows"
        else:
            c, *sp = a.out_shape
            rows = b.kernel[-2] if len(b.kernel) >= 2 else b.kernel[0]
            depth = b.kernel[0] if b.op == "conv3d" else 1
            need = rows * depth * sp[-1] * c * spike_bits * (steps if cfg["loop_order"] == "time_inner" else 1)
            if need > cap:
                why = f"the line buffer needs {need} bits for {b.name}'s window, has {int(cap)}"
        if why is None:
            pairs.append((i, i + 1))
            i += 2
        else:
            refused[f"{a.name}->{b.name}"] = why
            i += 1
    return pairs, refused


class _Traffic:
    """Bits per layer of one traffic array: the same at every step, plus extra at step 0."""

    __slots__ = ("every", "first")

    def __init__(self, n: int) -> None:
        self.every = [0] * n
        self.first = [0] * n



def _untiled(hw, layer: Layer, bits: int, what: str, key: str) -> MappingError:
    """A format v2 layer whose weights or membranes exceed their SRAM (v2 layers are not tiled)."""
    need = math.ceil(bits / KIB_BITS)
    return MappingError(f"the {what} of a format v2 layer do not fit in its SRAM (tiling a layer of several "
                        "ops is not modelled)", file=hw.source, key=f"core.{key}",
                        expected=f">= {need} KiB for layer {layer.name}", found=f"{hw['core'][key]:g} KiB",
                        suggestion=f"--set core.{key}={need}")


def tilings(hw, layers: list[Layer]) -> tuple[list[int], list[int], list[int], list[int], list[MappingError]]:
    """How each layer is cut to fit the buffers: (weight tiles, output channels per tile (0 =
    untiled), membrane row tiles, output rows per tile), and every layer that cannot be cut small
    enough (one output channel's weights or one output row's membranes larger than its buffer)."""
    cfg = hw["core"]
    n_l = len(layers)
    weight_tiles, tile_channels, row_tiles, rows_per_tile = [1] * n_l, [0] * n_l, [1] * n_l, [0] * n_l
    problems: list[MappingError] = []
    cap_w = cfg["weight_sram_kib"] * KIB_BITS
    for i, la in enumerate(layers):
        bits = weight_bits(la)
        if bits <= cap_w:
            continue
        if la.parts is not None:
            problems.append(_untiled(hw, la, bits, "weights", "weight_sram_kib"))
            continue
        per_channel = bits // la.out_shape[0]
        if per_channel > cap_w or la.groups != 1:
            need = math.ceil(per_channel / KIB_BITS) if la.groups == 1 else math.ceil(bits / KIB_BITS)
            problems.append(MappingError(
                "a layer's weights cannot be tiled into the weight SRAM", file=hw.source, key="core.weight_sram_kib",
                expected=f">= {need} KiB for layer {la.name} (one output channel's weights"
                f"{'' if la.groups == 1 else ', grouped layers are not tiled'})",
                found=f"{cfg['weight_sram_kib']:g} KiB", suggestion=f"--set core.weight_sram_kib={need}"))
            continue
        # output channels in tiles that fit; each tile re-reads the layer's input spikes
        per_tile = int(cap_w // per_channel)
        weight_tiles[i] = math.ceil(la.out_shape[0] / per_tile)
        tile_channels[i] = per_tile
    if cfg["loop_order"] == "time_inner":
        # one layer at a time: a layer whose membranes do not fit runs in tiles of output rows,
        # each tile taking all steps; the tiles re-read the input rows their windows overlap
        cap_m = cfg["membrane_sram_kib"] * KIB_BITS
        for i, la in enumerate(layers):
            bits = membrane_bits_of(la, cfg["membrane_bits"])
            if bits <= cap_m:
                continue
            if la.parts is not None:
                problems.append(_untiled(hw, la, bits, "membranes and accumulators", "membrane_sram_kib"))
                continue
            c, *sp = la.out_shape
            rows = sp[-2] if len(sp) >= 2 else 1
            row_bits = bits // rows
            per_tile = int(cap_m // row_bits)
            if per_tile < 1:
                need = math.ceil(row_bits / KIB_BITS)
                problems.append(MappingError(
                    "one output row's membranes do not fit in the membrane SRAM", file=hw.source,
                    key="core.membrane_sram_kib", expected=f">= {need} KiB for layer {la.name}",
                    found=f"{cfg['membrane_sram_kib']:g} KiB", suggestion=f"--set core.membrane_sram_kib={need}"))
                continue
            row_tiles[i] = math.ceil(rows / per_tile)
            rows_per_tile[i] = per_tile
    return weight_tiles, tile_channels, row_tiles, rows_per_tile, problems


def memory_plan(hw, layers: list[Layer], sensor_layer: Layer | None, steps: int) -> MemoryPlan:
    """Place weights, membranes and spike maps of one frame; count DRAM and buffer traffic."""
    cfg = hw["core"]
    mem_bits, spike_bits = cfg["membrane_bits"], cfg["spike_bits"]
    n_l = len(layers)
    dram_read, dram_write, weight_load, first_only = (_Traffic(n_l) for _ in range(4))
    sram_write, sram_read, line_buffer, saved = (_Traffic(n_l) for _ in range(4))
    index = {la.name: i for i, la in enumerate(layers)}
    consumers: dict[str, list[str]] = {}
    for la in layers:
        for src in la.inputs:
            consumers.setdefault(src, []).append(la.name)
    time_inner = cfg["loop_order"] == "time_inner"

    weight_tiles, tile_channels, row_tiles, rows_per_tile, problems = tilings(hw, layers)
    if problems:
        raise problems[0]
    w = [weight_bits(la) for la in layers]
    cap_w = cfg["weight_sram_kib"] * KIB_BITS
    weights_resident = sum(w) <= cap_w
    for i, bits in enumerate(w):
        if not bits:
            continue
        if weights_resident:  # loaded once, for the first frame
            first_only.first[i] += bits
        elif time_inner:
            dram_read.first[i] += bits
            weight_load.first[i] += bits
        else:
            dram_read.every[i] += bits
            weight_load.every[i] += bits

    # --- membranes
    m = [membrane_bits_of(la, mem_bits) for la in layers]
    cap_m = cfg["membrane_sram_kib"] * KIB_BITS
    spill = 0
    if not time_inner:
        # every layer keeps its membranes across steps; the buffer is filled in layer order and the
        # layers that find no room spill
        free = int(cap_m)
        for i, bits in enumerate(m):
            kept = min(bits, free)
            free -= kept
            excess = bits - kept
            dram_read.every[i] += excess
            dram_write.every[i] += excess
            spill += excess * steps

    # --- fusion
    pairs, refused = fusion_pairs(layers, consumers, cfg, steps, spike_bits)
    fused_a = {a for a, _ in pairs}

    # --- spike maps: producer index (-1 = the sensor's map), readers, bits per step
    readers_of = {la.name: _readers(la.name, consumers, index, layers) for la in layers}
    maps: list[tuple[int, Layer]] = []
    if sensor_layer is not None:
        readers_of[sensor_layer.name] = _readers(sensor_layer.name, consumers, index, layers)
        if any(r != 0 for r in readers_of[sensor_layer.name]):
            maps.append((-1, sensor_layer))
    for i, la in enumerate(layers):
        if la.spiking and la.op != "flatten" and la.name in consumers and i not in fused_a:
            maps.append((i, la))
    map_bits = {la.name: la.out_size * map_bits_per_value(la, spike_bits) for _i, la in maps}
    cap_s = int(cfg["spike_sram_kib"] * KIB_BITS)
    span = steps if time_inner else 1
    produced_by: dict[int, list[str]] = {}
    freed_after: dict[int, list[str]] = {}
    for i, la in maps:
        produced_by.setdefault(i, []).append(la.name)
        freed_after.setdefault(max(readers_of[la.name]), []).append(la.name)
    live: dict[str, int] = {}
    used = 0
    in_dram: set[str] = set()
    # walk the passes in layer order: allocate a map when produced, free it after its last use
    for step_layer in range(-1, n_l):
        for name in produced_by.get(step_layer, ()):
            size = map_bits[name] * span
            if used + size <= cap_s:
                live[name] = size
                used += size
            else:
                in_dram.add(name)
        for name in freed_after.get(step_layer, ()):
            if name in live:
                used -= live.pop(name)

    plan = MemoryPlan(dram_read_bits=dram_read, dram_write_bits=dram_write, weight_load_bits=weight_load,
                      first_frame_only_bits=first_only, spike_sram_write=sram_write, spike_sram_read=sram_read,
                      line_buffer_bits=line_buffer, fusion_saved_bits=saved,
                      fused_pairs=[(layers[a].name, layers[b].name) for a, b in pairs], fusion_refused=refused,
                      map_in_dram=sorted(in_dram), weight_tiles=weight_tiles, row_tiles=row_tiles,
                      rows_per_tile=rows_per_tile, tile_channels=tile_channels, weights_resident=weights_resident,
                      membrane_spill_bits=spill)
    # traffic of each map, per step (the same every step)
    for i, la in maps:
        name = la.name
        per_step = map_bits[name]
        writer = max(i, 0)  # the sensor's map is written by the first core layer as it arrives
        readers = [r for r in readers_of[name] if not (i == -1 and r == 0)]
        if name in in_dram:
            dram_write.every[writer] += per_step
            for r in readers:
                dram_read.every[r] += _read_bits(layers[r], la, per_step, plan, r)
        else:
            sram_write.every[writer] += per_step
            for r in readers:
                sram_read.every[r] += _read_bits(layers[r], la, per_step, plan, r)
    for a, b in pairs:
        per_step = layers[a].out_size * spike_bits
        line_buffer.every[a] += per_step  # written by a's fire pass
        line_buffer.every[b] += per_step  # read by b's scatter
        saved.every[a] += 2 * per_step  # the global-buffer write and read avoided
    names = ("dram_read_bits", "dram_write_bits", "weight_load_bits", "first_frame_only_bits", "spike_sram_write",
             "spike_sram_read", "line_buffer_bits", "fusion_saved_bits")
    traffic = [getattr(plan, k) for k in names]
    arrays = np.repeat(np.array([tr.every for tr in traffic], np.int64).reshape(len(names), n_l, 1), steps, axis=2)
    if steps:
        arrays[:, :, 0] += np.array([tr.first for tr in traffic], np.int64).reshape(len(names), n_l)
    for k, arr in zip(names, arrays, strict=True):
        setattr(plan, k, arr)
    return plan


def input_rows_read(layer: Layer, in_rows: int, tiles: int, rows_per_tile: int) -> int:
    """Input rows a layer reads over its output-row tiles (each tile reads its windows' rows)."""
    if tiles <= 1 or layer.op not in ("conv2d", "conv3d", "avgpool", "maxpool", "add"):
        return in_rows
    if layer.op == "add":
        return _tiled_rows(layer.out_shape[-2], 1, 1, 0, in_rows, rows_per_tile)
    return _tiled_rows(layer.out_shape[-2], layer.kernel[-2], layer.stride[-2], layer.padding[-2], in_rows,
                       rows_per_tile)


@functools.lru_cache(maxsize=4096)
def _tiled_rows(out_rows: int, k: int, s: int, p: int, in_rows: int, rows_per_tile: int) -> int:
    """Input rows read by the output-row tiles of one window geometry (a pure function: cached)."""
    total = 0
    for first in range(0, out_rows, rows_per_tile):
        last = min(out_rows, first + rows_per_tile) - 1
        lo, hi = max(0, first * s - p), min(in_rows - 1, last * s - p + k - 1)
        total += max(0, hi - lo + 1)
    return total


def _read_bits(reader: Layer, src: Layer, per_step: int, plan: MemoryPlan, r: int) -> int:
    """Bits of one step of ``src``'s map that ``reader`` reads, over its weight and row tiles."""
    if plan.row_tiles[r] <= 1:
        return plan.weight_tiles[r] * per_step  # one pass over the whole map per weight tile
    shape = src.out_shape
    in_rows = shape[-2] if len(shape) >= 3 else 1
    rows = input_rows_read(reader, in_rows, plan.row_tiles[r], plan.rows_per_tile[r])
    return plan.weight_tiles[r] * per_step * rows // in_rows


def _readers(name: str, consumers: dict[str, list[str]], index: dict[str, int], layers: list[Layer]) -> list[int]:
    """Layers that read a map: its consumers, looking through flatten (a relabelling) to theirs
    (a flatten no one reads counts as the reader). Iterative: a chain of thousands of flattens
    must not exhaust Python's stack."""
    out: list[int] = []
    stack = list(reversed(consumers.get(name, [])))
    while stack:
        c = stack.pop()
        if layers[index[c]].op != "flatten":
            out.append(index[c])
            continue
        below = consumers.get(c, [])
        if not below:
            out.append(index[c])
        stack += reversed(below)
    return out


def dram_cycles(bits: np.ndarray, hw, period_ps: int) -> np.ndarray:
    """Core cycles to move ``bits`` at the DRAM bandwidth: ceil(bits / bits per cycle), exactly.

    The bandwidth is the decimal it was written as, so its fraction can have a large numerator and
    denominator (1.2345678901234567 GB/s has a denominator of 10^16): the product is taken in
    Python integers, once per distinct bit count (a pass moves one of a few sizes)."""
    p, q = _bits_per_cycle(hw["dram"]["bandwidth_gbytes_per_s"], period_ps)
    b = np.asarray(bits, dtype=np.int64)
    uniq, inv = np.unique(b, return_inverse=True)
    cycles = [-(-int(x) * q // p) for x in uniq.tolist()]
    if cycles and cycles[-1] >= 2**62:
        raise MappingError("DRAM transfers take more cycles than the model can count", file=hw.source,
                           key="dram.bandwidth_gbytes_per_s", expected="a bandwidth that moves a pass's "
                           "bits in fewer than 2^62 core cycles", found=f"{hw['dram']['bandwidth_gbytes_per_s']!r} GB/s")
    return np.asarray(cycles, np.int64)[inv].reshape(b.shape)


@functools.lru_cache(maxsize=256)
def _bits_per_cycle(bandwidth_gbytes_per_s: float, period_ps: int) -> tuple[int, int]:
    """DRAM bits per core cycle as an exact fraction (numerator, denominator)."""
    from fractions import Fraction

    from ..units import exact

    per_cycle = Fraction(8) * exact(bandwidth_gbytes_per_s) * period_ps / 1000  # GB/s = 8 bits per ns
    return per_cycle.numerator, per_cycle.denominator
