"""Stored frames read from DRAM: the chip's input when ``mapping.input`` is ``dram``.

A hyperspectral patch, a frame captured elsewhere or a dataset's sample is not read out of an
image sensor: it waits in DRAM and the chip reads it line by line into its input buffer. A line
is one index of the frame's row axis (the second-to-last spatial axis) with every channel and
every other spatial position: C x W values of a (C, H, W) frame, C x D x W of a (C, D, H, W) cube
(its band axis inside the line), the whole vector of a flat input. Each value is stored in
``frames.bits_per_value`` bits (the frame quantised to unsigned integers, as a sensor's RAW
samples are).

Timing: a line takes its bits at ``dram.bandwidth_gbytes_per_s`` plus ``frames.line_overhead_ns``
(row activation and request latency [A] 0 by default), rounded up to whole ps once per line.
Energy: every bit read costs the technology table's ``dram.bit``. The lines enter the buffer of
the unit after the reader (``frames.input_buffer_lines`` lines), which is where a core or a PIM
macro takes them from, exactly as from the CSI-2 link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..report.report import Record
from ..units import exact, ns_to_ps
from .chain import Plan, StageTimes
from .sensor import SensorPlan


@dataclass(frozen=True)
class FrameLines:
    """One frame as the reader delivers it: ``rows`` lines of ``values`` values each."""

    rows: int
    values: int
    bits_per_value: int
    line_ps: int

    @property
    def line_bits(self) -> int:
        return self.values * self.bits_per_value


def frame_lines(shape: tuple[int, ...]) -> tuple[int, int]:
    """(lines, values per line) of a frame of ``shape`` (channels first)."""
    c, *sp = shape
    if not sp:
        return 1, c
    rows = sp[-2] if len(sp) >= 2 else 1
    return rows, math.prod(shape) // rows


def line_time_ps(bits: int, gbytes_per_s: float, overhead_ns: float) -> int:
    """Whole ps to read ``bits`` at the DRAM bandwidth, plus the per-line overhead (exact)."""
    bits_per_ps = 8 * exact(gbytes_per_s) / 1000  # 1 GB/s moves 8 bits per ns
    return math.ceil(Fraction(bits) / bits_per_ps) + ns_to_ps(overhead_ns)


def reader_of(hw: Any, wl: Any) -> FrameLines:
    """The frame reader's lines for the workload's input."""
    cfg = hw["frames"]
    rows, values = frame_lines(tuple(wl.input_shape))
    bits = cfg["bits_per_value"]
    return FrameLines(rows=rows, values=values, bits_per_value=bits,
                      line_ps=line_time_ps(values * bits, hw["dram"]["bandwidth_gbytes_per_s"],
                                           cfg["line_overhead_ns"]))


class Frames:
    """The frame reader at the head of the chain: stored frames, line by line, from DRAM."""

    name = "frames"

    def plan(self, hw: Any, wl: Any, upstream: list[Plan], graph: tuple | None) -> Plan:
        fl = reader_of(hw, wl)
        s_n = wl.samples
        first = wl.layers[0].name  # the lines are the first layer's input
        if fl.line_ps * fl.rows >= 2**62:
            raise ConfigError("the frame's read time cannot be held in integer picoseconds", file=hw.source,
                              key="dram.bandwidth_gbytes_per_s", expected="a frame read shorter than 2^62 ps",
                              found=f"{fl.rows} lines of {fl.line_ps} ps")
        layout = SensorPlan(kind="dram", rows=fl.rows, row_time_ps=fl.line_ps, packets_per_row=1,
                            packet_step=np.zeros(fl.rows, np.int64), packet_row=np.arange(fl.rows, dtype=np.int64))
        payload = np.full((s_n, fl.rows), fl.line_bits, np.int64)
        frame_bits = fl.rows * fl.line_bits

        def records(times: StageTimes) -> list:
            read = (times.done_ps[:, -1] - times.start_ps[:, 0]).tolist()
            out = []
            for s in range(s_n):
                out.append(Record(s, first, None, "frames", "lines", float(fl.rows), "count"))
                out.append(Record(s, first, None, "frames", "payload_bits", float(frame_bits), "bit"))
                out.append(Record(s, first, None, "frames", "wire_bits", float(frame_bits), "bit"))
                out.append(Record(s, first, None, "frames", "energy.dram_read",
                                  float(frame_bits) * hw.energy.pj("dram.bit"), "pJ"))
                out.append(Record(s, first, None, "frames", "read_ps", float(read[s]), "ps"))
            return out

        details = {"kind": "dram", "lines_per_frame": fl.rows, "values_per_line": fl.values,
                   "bits_per_value": fl.bits_per_value, "line_ps": fl.line_ps,
                   "conventional_payload_bits_per_frame": frame_bits,
                   "conventional_wire_bits_per_frame": frame_bits}
        return Plan(name=self.name, service_ps=np.full((s_n, fl.rows), fl.line_ps, np.int64),
                    consume=np.zeros(fl.rows, np.int64), produce=np.ones(fl.rows, np.int64),
                    fifo_after=hw["frames"]["input_buffer_lines"],
                    time_keys="dram.bandwidth_gbytes_per_s, frames.line_overhead_ns", details=details,
                    released_by="frames.frame_period_us", energy_entries=("dram.bit",), records=records,
                    inner=fl, delivery=(layout, payload))
