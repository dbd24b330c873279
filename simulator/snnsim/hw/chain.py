"""A chip as a chain of components, each implementing one plan protocol (``../ARCHITECTURE.md``,
Components).

A component is given the hardware, the workload and the plans of the components before it in
the chain, and returns a :class:`Plan`: its transactions (service time of each, tokens it takes
from the FIFO before it and gives to the FIFO after it), the capacity of that FIFO, the network
layers it runs, its section of the report's metadata, the energy-table entries it uses, and its
own records (actions, energy, time) once the pipeline has run. ``simulation.py`` builds the
pipeline from the plans and asks each for its records; it knows no component by name, so a new
processing unit is a new component here plus its reference model, not an edit of the
orchestration.

The chain today is a sensor (a conventional readout or a P2M pixel array) and the MIPI CSI-2
link, or stored frames read from DRAM (:mod:`.frames`); then an optional PIM macro
(:mod:`.pim_unit`) and the SNN core; or a whole target fed by a host: a Loihi-class
neuromorphic chip (:mod:`.loihi`) or an NCS2-class dense accelerator (:mod:`.ncs2`)
(:func:`build_chain`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError
from ..report.report import Record, RecordBlock


@dataclass
class StageTimes:
    """One component's stamps in the main run, per frame: (samples, transactions) each."""

    start_ps: np.ndarray
    done_ps: np.ndarray


@dataclass
class Plan:
    """What one component does for every frame of the workload, and how it reports it."""

    name: str  # the pipeline stage and the records' component
    service_ps: np.ndarray  # (samples, transactions) int64
    consume: np.ndarray  # (transactions,) tokens taken from the FIFO before the stage
    produce: np.ndarray  # (transactions,) tokens given to the FIFO after it
    fifo_after: int | None  # tokens the FIFO after the stage holds (None: the last stage)
    time_keys: str  # the hwconfig keys that set its service times (named when a time cannot be held)
    details: dict[str, Any]  # its section of the report's metadata
    layers: tuple[str, ...] = ()  # network layers it runs
    released_by: str | None = None  # the key of the frame trigger period (us), if frames enter the chip here
    energy_entries: tuple[str, ...] = ()  # energy-table entries its records use
    static_entry: str | None = None  # its static power (mW), charged over one frame interval
    static_mw: float | None = None  # or that power itself, for a unit with its own values
    # its records once the pipeline has run: (its stamps, every plan's stamps by name)
    records: Callable[[StageTimes], list[Record | RecordBlock]] = field(default=lambda times: [])
    frame_energy: Callable[[int], list[Record]] = field(default=lambda s: [])  # per-frame energy beside the run's
    frame_stamps: Callable[[int, StageTimes], list[Record]] = field(default=lambda s, times: [])
    inner: Any = None  # the component's own plan, for the components after it
    # what it hands the next unit, packet by packet: (packet layout (a SensorPlan: rows, packets per
    # row, each packet's step), payload bits (samples, packets)); None: nothing a core reads
    delivery: tuple | None = None

    @property
    def transactions(self) -> int:
        return int(self.consume.shape[0])


class Component(Protocol):
    """One unit of the chip."""

    name: str

    def plan(self, hw: Any, wl: Any, upstream: list[Plan], graph: tuple | None) -> Plan: ...


class Sensor:
    """The image sensor: a conventional readout, or a P2M pixel array computing layer 0."""

    name = "sensor"

    def plan(self, hw: Any, wl: Any, upstream: list[Plan], graph: tuple | None) -> Plan:
        from .sensor import sensor_energy_pj, sensor_plan

        sp = sensor_plan(hw, wl)
        s_n = wl.samples
        first = wl.layers[0].name  # the readout carries the first layer (its input, or its spikes)
        kind = sp.kind
        entries = ("p2m.pixel_read", "p2m.adc_conversion") if kind == "p2m" else \
            ("sensor.pixel_read", "sensor.adc_conversion")

        def records(times: StageTimes) -> list[Record | RecordBlock]:
            energy = sensor_energy_pj(sp, hw.energy)
            per_frame = [(a, float(n), "count") for a, n in sp.actions.items()]
            per_frame += [(f"energy.{a}", pj, "pJ") for a, (_entry, _n, pj) in energy.items()]
            readout = (times.done_ps[:, -1] - times.start_ps[:, 0]).tolist()
            out: list[Record | RecordBlock] = []
            for s in range(s_n):
                for metric, value, unit in per_frame:
                    out.append(Record(s, first, None, "sensor", metric, value, unit))
                out.append(Record(s, first, None, "sensor", "readout_ps", float(readout[s]), "ps"))
            return out

        return Plan(name=self.name, service_ps=np.full((s_n, sp.rows), sp.row_time_ps, np.int64),
                    consume=np.zeros(sp.rows, np.int64), produce=np.full(sp.rows, sp.packets_per_row, np.int64),
                    fifo_after=hw["sensor"]["line_buffer_lines"] * sp.packets_per_row,
                    time_keys="sensor.row_overhead_ns, sensor.adc_counter_clock_mhz, sensor.p2m.row_overhead_ns",
                    details={"kind": kind, **sp.details}, layers=(sp.layer,) if sp.layer else (),
                    released_by="sensor.frame_period_us", energy_entries=entries,
                    static_entry="sensor.static_power", records=records, inner=sp)


class Link:
    """The MIPI CSI-2 link from the sensor to the processor's input buffer."""

    name = "link"

    def plan(self, hw: Any, wl: Any, upstream: list[Plan], graph: tuple | None) -> Plan:
        from .link import link_plan, raw_frame_wire_bits

        sp = upstream[-1].inner  # the sensor's rows and their packets
        lp = link_plan(hw, wl, sp)
        s_n = wl.samples
        n_pk = sp.rows * sp.packets_per_row
        first = wl.layers[0].name
        p2m = sp.kind == "p2m"
        wire_bits = [int(x) for x in 8 * lp.wire_bytes.sum(axis=1)]
        n_bursts = [int(x) for x in lp.bursts.sum(axis=1)]

        def records(times: StageTimes) -> list[Record | RecordBlock]:
            # per step of the spike rows it carries (a conventional frame has no steps)
            n_steps = wl.time_steps if p2m else 1  # a conventional frame's packets all carry step 0
            payload = sp.per_step(lp.payload_bits, n_steps).tolist()
            wire = sp.per_step(8 * lp.wire_bytes, n_steps).tolist()
            packets = np.bincount(sp.packet_step, minlength=n_steps).tolist()
            bursts = lp.bursts.sum(axis=1).tolist()
            burst_time = lp.burst_ps.sum(axis=1).tolist()
            out: list[Record | RecordBlock] = []
            for s in range(s_n):
                for t in range(n_steps):
                    step = t if p2m else None
                    out.append(Record(s, first, step, "link", "payload_bits", float(payload[s][t]), "bit"))
                    out.append(Record(s, first, step, "link", "wire_bits", float(wire[s][t]), "bit"))
                    out.append(Record(s, first, step, "link", "packets", float(packets[t]), "count"))
                out.append(Record(s, first, None, "link", "bursts", float(bursts[s]), "count"))
                out.append(Record(s, first, None, "link", "hs_burst_ps", float(burst_time[s]), "ps"))
            return out

        def frame_energy(s: int) -> list[Record]:  # the first layer's, like the link's other records
            return [Record(s, first, None, "link", "energy.bit", float(wire_bits[s]) * hw.energy.pj("link.bit"), "pJ"),
                    Record(s, first, None, "link", "energy.burst", float(n_bursts[s]) * hw.energy.pj("link.burst"),
                           "pJ")]

        def frame_stamps(s: int, times: StageTimes) -> list[Record]:
            return [Record(s, "-", None, "system", "link_done_ps", float(times.done_ps[s, -1]), "ps")]

        details = {"encoding": lp.encoding, "bits_per_event": lp.bits_per_event, "ui_ps": lp.ui_ps,
                   "conventional_payload_bits_per_frame": lp.conventional_bits_per_frame,
                   "conventional_wire_bits_per_frame": raw_frame_wire_bits(hw, wl)}
        return Plan(name=self.name, service_ps=lp.service_ps, consume=np.ones(n_pk, np.int64),
                    produce=np.ones(n_pk, np.int64), fifo_after=hw["link"]["output_fifo_packets"],
                    time_keys="link.gbps_per_lane, link.line_blanking_ns, link.frame_blanking_ns", details=details,
                    energy_entries=("link.bit", "link.burst"), static_entry="link.static_power", records=records,
                    frame_energy=frame_energy, frame_stamps=frame_stamps, inner=lp,
                    delivery=(sp, lp.payload_bits))


class Core:
    """The SNN core and its memories, running every layer after the sensor's."""

    name = "core"

    def plan(self, hw: Any, wl: Any, upstream: list[Plan], graph: tuple | None) -> Plan:
        from .core import core_plan
        from .core_records import core_records

        layout, payload = upstream[-1].delivery  # the packets the unit before it hands it
        cp = core_plan(hw, wl, layout, payload, graph=graph)
        if cp.tx_cycles.size and float(cp.tx_cycles.max()) * cp.period_ps >= 2.0**62:  # the product would wrap
            raise ConfigError("the run's time cannot be held in integer picoseconds", file=hw.source,
                              key="core.clock_mhz", expected="core passes shorter than 2^62 ps",
                              found=f"{int(cp.tx_cycles.max())} cycles of {cp.period_ps} ps",
                              suggestion="check the unit of the key (MHz)")
        n_tx = cp.tx_cycles.shape[1]
        return Plan(name=self.name, service_ps=cp.tx_cycles * cp.period_ps, consume=cp.tx_consume,
                    produce=np.zeros(n_tx, np.int64), fifo_after=None, time_keys="core.clock_mhz",
                    details=cp.details, layers=tuple(cp.layer_names),
                    energy_entries=("core.ac", "core.mac", "core.compare", "core.sram_read_bit", "core.sram_write_bit",
                                    "core.line_buffer_bit", "dram.bit"),
                    static_entry="core.static_power",
                    records=lambda times: core_records(hw, cp.layer_names, cp.counters), inner=cp)


def in_pixels(hw: Any) -> bool:
    """Whether a P2M sensor computes the first layer (frames enter through a sensor that is P2M)."""
    return hw["mapping"]["input"] == "sensor" and hw["sensor"]["kind"] == "p2m"


def input_bits_limit(hw: Any) -> tuple[int, str]:
    """The bits of each raw input value the chip's entry delivers, and the key that sets them."""
    if hw["mapping"]["input"] == "dram":
        return hw["frames"]["bits_per_value"], "frames.bits_per_value"
    return hw["link"]["raw_bits"], "link.raw_bits"


def build_chain(hw: Any) -> list[Component]:
    """The components of the chip, in the order frames flow through them: where frames enter
    (``mapping.input``: the sensor and the link, or the frame reader from DRAM), a PIM macro when
    ``mapping.pim`` gives it a layer, the core; or, with ``mapping.target`` loihi or ncs2, that
    target alone (it takes each frame from the host over its own I/O)."""
    from .frames import Frames
    from .pim_unit import Pim

    target = hw["mapping"]["target"]
    if target == "loihi":
        from .loihi import Loihi

        return [Loihi()]
    if target == "ncs2":
        from .ncs2 import Ncs2

        return [Ncs2()]

    head: list[Component] = [Frames()] if hw["mapping"]["input"] == "dram" else [Sensor(), Link()]
    middle = [Pim()] if hw["mapping"]["pim"].strip() else []
    return [*head, *middle, Core()]
