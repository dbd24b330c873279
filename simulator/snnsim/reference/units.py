"""Reference models of the units that may stand around the core: stored frames read from DRAM
(:mod:`snnsim.hw.frames`) and the PIM macro as a unit of the chain (:mod:`snnsim.hw.pim_unit`).

Written plainly from the rules in those modules' docstrings, one line, value and packet at a
time, with time in exact fractions rounded up once where the models round. Each returns what the
reference core reads (a :class:`SensorReference`-like packet layout and per-packet payloads), the
unit's pipeline transactions per frame, and its records.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..report.report import Record, RecordBlock
from ..workload.trace import Workload
from .components import PacketReference, SensorReference, _exact
from .pim import layer_counts_reference


@dataclass
class UnitReference:
    """One unit of the chain as the reference pipeline runs it, and what it hands the next unit."""

    name: str
    service: list[list[int]]  # [sample][transaction] ps
    consume: list[int]
    produce: list[int]
    layout: SensorReference  # the packets the next unit reads: (step, row) of each, in order
    payloads: list[list[PacketReference]]  # [sample][packet]: what each packet carries (payload_bits, step)
    details: dict
    layers: tuple[str, ...] = ()
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # the PIM macro's, (samples, steps)


def _packet(step: int, row: int, bits: int) -> PacketReference:
    return PacketReference(step=step, row=row, payload_bits=bits, wc_bytes=0, wire_bytes=0, bursts=0, burst_ps=0,
                           service_ps=0)


def reference_frames(hw, wl: Workload) -> UnitReference:
    """Every line of every stored frame: its values counted one by one, its read time exact."""
    cfg = hw["frames"]
    shape = tuple(wl.input_shape)
    _c, *sp = shape
    rows = sp[-2] if len(sp) >= 2 else 1
    values = [0] * rows
    for idx in itertools.product(*(range(n) for n in shape)):
        values[idx[-2] if len(sp) >= 2 else 0] += 1  # the value's line: its index on the row axis
    bits_per_ps = 8 * _exact(hw["dram"]["bandwidth_gbytes_per_s"]) / 1000
    overhead = round(_exact(cfg["line_overhead_ns"]) * 1000)
    line_bits = [n * cfg["bits_per_value"] for n in values]
    line_ps = [math.ceil(Fraction(b) / bits_per_ps) + overhead for b in line_bits]
    layout = SensorReference(kind="dram", rows=rows, row_time_ps=line_ps[0], packets_per_row=1,
                             packets=[(0, r) for r in range(rows)], actions={}, details={})
    frame_bits = sum(line_bits)
    details = {"kind": "dram", "lines_per_frame": rows, "values_per_line": values[0],
               "bits_per_value": cfg["bits_per_value"], "line_ps": line_ps[0],
               "conventional_payload_bits_per_frame": frame_bits, "conventional_wire_bits_per_frame": frame_bits}
    return UnitReference("frames", [list(line_ps) for _ in range(wl.samples)], [0] * rows, [1] * rows, layout,
                         [[_packet(0, r, line_bits[r]) for r in range(rows)] for _ in range(wl.samples)], details)


def frames_records(hw, wl: Workload, unit: UnitReference, start: list[int], done: list[int]) -> list[Record]:
    first = wl.layers[0].name
    bits = sum(p.payload_bits for p in unit.payloads[0])
    out = []
    for s in range(wl.samples):
        out.append(Record(s, first, None, "frames", "lines", float(len(unit.payloads[s])), "count"))
        out.append(Record(s, first, None, "frames", "payload_bits", float(bits), "bit"))
        out.append(Record(s, first, None, "frames", "wire_bits", float(bits), "bit"))
        out.append(Record(s, first, None, "frames", "energy.dram_read", float(bits) * hw.energy.pj("dram.bit"), "pJ"))
        out.append(Record(s, first, None, "frames", "read_ps", float(done[s] - start[s]), "ps"))
    return out


def reference_pim(hw, wl: Workload, upstream_packets: int) -> UnitReference:
    """The macro's counts value by value (:func:`.pim.layer_counts_reference`) on the frame; its
    whole-frame time shared evenly by the output rows (the remainder in the last); T packets of
    each output row's spikes, one bit per neuron of the row."""
    from ..hw.pim import map_layer
    from ..hw.pim_unit import _geometry, macro_of, mapped_layers

    (name,) = mapped_layers(hw, wl)
    layer = wl.layer(name)
    cfg = macro_of(hw)
    mapping = map_layer(cfg, _geometry(hw, wl, layer))
    t_n = wl.time_steps
    counts = layer_counts_reference(cfg, mapping, wl.input, t_n)
    c_o, *sp = layer.out_shape
    row_len = sp[-1] if sp else c_o  # neurons of a row per channel: the last axis (a vector: one row)
    rows = 1
    for n in sp[:-1]:
        rows *= n  # a 3D map's rows are its (depth, row) pairs
    service = []
    for s in range(wl.samples):
        total = 0
        for t in range(t_n):
            total += int(counts["time_ps"][s, t])
        share = [total // rows] * rows
        share[-1] += total - sum(share)
        service.append([0] * upstream_packets + share)
    packets = [(t, r) for r in range(rows) for t in range(t_n)]
    bits = row_len * (c_o if sp else 1)
    layout = SensorReference(kind="pim", rows=rows, row_time_ps=0, packets_per_row=t_n, packets=packets,
                             actions={}, details={}, layer=name)
    details = {"preset": hw["pim"]["preset"], "layer": name, "tiles": int(mapping.tiles),
               "recompute_per_step": bool(cfg.recompute_per_step), "t_mvm_ps": float(cfg.t_mvm_ps),
               "macro": {k: getattr(cfg, k) for k in ("rows", "cols", "bits_per_cell", "weight_bits", "input_mode",
                                                      "input_bits", "adc_bits", "cols_per_adc", "n_arrays")},
               "source": "snnsim/tech/pim/macros.yaml"}
    return UnitReference("pim", service, [1] * upstream_packets + [0] * rows, [0] * upstream_packets + [t_n] * rows,
                         layout, [[_packet(t, r, bits) for t, r in packets] for _ in range(wl.samples)], details,
                         layers=(name,), counts=counts)


def pim_records(wl: Workload, unit: UnitReference) -> list[RecordBlock]:
    """The macro's counters and energies per (sample, step), in the fast model's metric order,
    as one block of records (so the summary adds them up in the same order as the fast model's)."""
    from ..hw.pim import COUNTERS

    (name,) = unit.layers
    counters = [k for k in COUNTERS if k in unit.counts and k != "time_ps"]
    energies = [k for k in unit.counts if k.startswith("e_") and k.endswith("_pj")]
    values = np.zeros((wl.samples, 1, wl.time_steps, len(counters) + len(energies)), np.float64)
    for s in range(wl.samples):
        for t in range(wl.time_steps):
            for m, k in enumerate([*counters, *energies]):
                values[s, 0, t, m] = float(unit.counts[k][s, t])
    metrics = counters + [f"energy.{k[2:-3]}" for k in energies]
    units = ["count"] * len(counters) + ["pJ"] * len(energies)
    return [RecordBlock(layers=[name], metrics=metrics, components=["pim"] * len(metrics), units=units,
                        values=values)]
