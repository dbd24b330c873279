"""The reference ``simulate``: the chain the hwconfig describes, composed from the reference
models of its units, run on the tick-by-tick reference pipeline.

Where frames enter (``mapping.input``): the sensor and the CSI-2 link (:mod:`.components`), or
stored frames read from DRAM (:mod:`.units`); then the PIM macro when ``mapping.pim`` gives it a
layer (:mod:`.units`); then the core (:mod:`.components`), fed by the packets of the unit before
it. The report's system records and metadata are written by the same functions as the fast
model's, from the reference's own numbers, the units described as the fast chain's plans
describe them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..engine.pipeline import StageSpec
from ..hw.chain import Plan
from ..hw.core_records import core_records
from ..report.report import Record, Report
from ..simulation import run_meta, system_records
from ..workload.trace import Workload
from .components import LinkReference, _exact, reference_core, reference_link, reference_sensor
from .pipeline import run_pipeline_reference
from .units import frames_records, pim_records, reference_frames, reference_pim

_CORE_ENTRIES = ("core.ac", "core.mac", "core.compare", "core.sram_read_bit", "core.sram_write_bit",
                 "core.line_buffer_bit", "dram.bit")


@dataclass
class _Stage:
    """One unit's transactions per frame and the FIFO after it."""

    name: str
    service: list[list[int]]  # [sample][transaction] ps
    consume: list[int]
    produce: list[int]
    cap_after: int | None
    plan: Plan  # how the report describes the unit
    entry: bool = False  # frames enter the chip here
    records: list = field(default_factory=list)


def _none_plan(name: str, details: dict, **kw) -> Plan:
    return Plan(name, np.zeros((0, 0), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), None, "", details,
                **kw)


def _sensor_and_link(hw, wl: Workload, s_n: int, t_n: int, table) -> tuple[list[_Stage], object, object, Callable]:
    """The sensor's rows and the link's packets; the records they write once the run's stamps
    are known."""
    sen = reference_sensor(hw, wl)
    lnk = reference_link(hw, wl, sen)
    first = wl.layers[0].name  # the sensor and link records belong to the first layer
    if sen.kind == "p2m":
        uses = {"pixel": ("pixel_frames", "p2m.pixel_read"), "adc": ("adc_conversions", "p2m.adc_conversion")}
    else:
        uses = {"pixel": ("pixel_reads", "sensor.pixel_read"), "adc": ("adc_conversions", "sensor.adc_conversion")}
    wire = [8 * sum(p.wire_bytes for p in lnk.packets[s]) for s in range(s_n)]
    bursts = [sum(p.bursts for p in lnk.packets[s]) for s in range(s_n)]
    link_done: list[int] = []

    def link_energy(s: int) -> list[Record]:
        return [Record(s, first, None, "link", "energy.bit", float(wire[s]) * table.pj("link.bit"), "pJ"),
                Record(s, first, None, "link", "energy.burst", float(bursts[s]) * table.pj("link.burst"), "pJ")]

    def link_stamps(s: int, _times) -> list[Record]:
        return [Record(s, "-", None, "system", "link_done_ps", float(link_done[s]), "ps")]

    sensor_plan = _none_plan("sensor", {"kind": sen.kind, **sen.details}, layers=(sen.layer,) if sen.layer else (),
                             released_by="sensor.frame_period_us", energy_entries=tuple(e for _c, e in uses.values()),
                             static_entry="sensor.static_power")
    link_plan = _none_plan("link", {"encoding": lnk.encoding, "bits_per_event": lnk.bits_per_event, "ui_ps": lnk.ui_ps,
                                    "conventional_payload_bits_per_frame": lnk.conventional_payload_bits,
                                    "conventional_wire_bits_per_frame": lnk.conventional_wire_bits},
                           energy_entries=("link.bit", "link.burst"), static_entry="link.static_power",
                           frame_energy=link_energy, frame_stamps=link_stamps)
    n_pk = len(sen.packets)
    stages = [
        _Stage("sensor", [[sen.row_time_ps] * sen.rows for _ in range(s_n)], [0] * sen.rows,
               [sen.packets_per_row] * sen.rows, hw["sensor"]["line_buffer_lines"] * sen.packets_per_row, sensor_plan,
               entry=True),
        _Stage("link", [[p.service_ps for p in lnk.packets[s]] for s in range(s_n)], [1] * n_pk, [1] * n_pk,
               hw["link"]["output_fifo_packets"], link_plan),
    ]

    def records(start: list[int], done_of) -> list[Record]:
        sensor_done, done = done_of(0), done_of(1)
        link_done.extend(done)
        out: list[Record] = []
        for s in range(s_n):
            for action, n in sen.actions.items():
                out.append(Record(s, first, None, "sensor", action, float(n), "count"))
            for action, (count, entry) in uses.items():
                out.append(Record(s, first, None, "sensor", f"energy.{action}", sen.actions[count] * table.pj(entry),
                                  "pJ"))
            out.append(Record(s, first, None, "sensor", "readout_ps", float(sensor_done[s] - start[s]), "ps"))
        for s in range(s_n):
            for t in range(t_n if sen.kind == "p2m" else 1):
                step = t if sen.kind == "p2m" else None
                mine = [p for p in lnk.packets[s] if p.step == t]
                out.append(Record(s, first, step, "link", "payload_bits", float(sum(p.payload_bits for p in mine)),
                                  "bit"))
                out.append(Record(s, first, step, "link", "wire_bits", float(8 * sum(p.wire_bytes for p in mine)),
                                  "bit"))
                out.append(Record(s, first, step, "link", "packets", float(len(mine)), "count"))
            out.append(Record(s, first, None, "link", "bursts", float(sum(p.bursts for p in lnk.packets[s])), "count"))
            out.append(Record(s, first, None, "link", "hs_burst_ps", float(sum(p.burst_ps for p in lnk.packets[s])),
                              "ps"))
        return out

    return stages, sen, lnk.packets, records


def simulate_reference(hw, wl: Workload) -> Report:
    """The records and summary of :func:`snnsim.simulation.simulate`, from the reference models."""
    s_n, t_n = wl.samples, wl.time_steps
    table = hw.energy
    record_writers = []  # (stage indices, writer(start, done_of) -> records)
    if hw["mapping"]["input"] == "dram":
        fr = reference_frames(hw, wl)
        stages = [_Stage("frames", fr.service, fr.consume, fr.produce, hw["frames"]["input_buffer_lines"],
                         _none_plan("frames", fr.details, released_by="frames.frame_period_us",
                                    energy_entries=("dram.bit",)), entry=True)]
        layout, payloads = fr.layout, fr.payloads
        frame_ps = round(_exact(hw["frames"]["frame_period_us"]) * 10**6)

        def frames_writer(start, done_of):
            return frames_records(hw, wl, fr, start, done_of(0))
        record_writers.append(frames_writer)
    else:
        stages, layout, payloads, writer = _sensor_and_link(hw, wl, s_n, t_n, table)
        frame_ps = round(_exact(hw["sensor"]["frame_period_us"]) * 10**6)
        record_writers.append(writer)
    if hw["mapping"]["pim"].strip():
        pu = reference_pim(hw, wl, len(layout.packets))
        stages.append(_Stage("pim", pu.service, pu.consume, pu.produce, hw["pim"]["output_buffer_rows"] * t_n,
                             _none_plan("pim", pu.details, layers=pu.layers)))
        layout, payloads = pu.layout, pu.payloads
        record_writers.append(lambda start, done_of: pim_records(wl, pu))
    core = reference_core(hw, wl, layout, LinkReference("raw", payloads, 0, 0, 0, 0.0))
    stages.append(_Stage("core", [[c * core.period_ps for c in core.tx_cycles[s]] for s in range(s_n)],
                         core.tx_consume, [0] * len(core.tx_consume), None,
                         _none_plan("core", core.details, layers=tuple(core.layer_names),
                                    energy_entries=_CORE_ENTRIES, static_entry="core.static_power")))

    def stages_for(frames: list[int], period_ps: int) -> list[StageSpec]:
        out = []
        for st in stages:
            n_tx = len(st.consume)
            release = None
            if st.entry:
                release = [k * period_ps if i == 0 else 0 for k in range(len(frames)) for i in range(n_tx)]
            out.append(StageSpec.make(st.name, [x for s in frames for x in st.service[s]],
                                      consume=st.consume * len(frames), produce=st.produce * len(frames),
                                      release_ps=release))
        return out

    caps = [st.cap_after for st in stages[:-1]]
    pr = run_pipeline_reference(stages_for(list(range(s_n)), frame_ps), caps)
    last = max((i for i, st in enumerate(stages) if st.consume), default=0)  # a frame ends at its last stage with work

    def done_in(result, i: int, n: int) -> list[int]:
        n_tx = len(stages[i].consume)
        return [int(result.done_ps[i][(k + 1) * n_tx - 1]) for k in range(n)]

    n_entry = len(stages[0].consume)
    frame_start = [int(pr.start_ps[0][s * n_entry]) for s in range(s_n)]
    frame_done = done_in(pr, last, s_n)
    free = frame_done if frame_ps == 0 and s_n > 1 else None
    if free is None:  # the free-running interval: all frames back to back (one frame twice)
        order = [0, 0] if s_n == 1 else list(range(s_n))
        free = done_in(run_pipeline_reference(stages_for(order, 0), caps), last, len(order))
    interval = (free[-1] - free[0]) / (len(free) - 1)

    records: list = []
    for writer in record_writers:
        records += writer(frame_start, lambda i: done_in(pr, i, s_n))
    records += core_records(hw, core.layer_names, core.counters)
    spiking = [(layer, wl.spikes(layer.name)) for layer in wl.layers if layer.spiking]
    for s in range(s_n):
        for layer, spikes in spiking:
            for t in range(t_n):
                n = 0
                for fired in spikes[s, t].reshape(-1):
                    n += 1 if fired else 0
                records.append(Record(s, layer.name, t, "activity", "spikes", float(n), "count"))
                records.append(Record(s, layer.name, t, "activity", "neurons", float(layer.out_size), "count"))
    makespan = int(pr.makespan_ps)
    keeps_up = None if frame_ps == 0 else interval <= frame_ps
    timing = {"makespan_ps": makespan, "trigger_period_ps": frame_ps, "bottleneck_interval_ps": interval,
              "frame_interval_ps": float(max(frame_ps, interval)), "keeps_up_with_trigger": keeps_up}
    plans = [st.plan for st in stages]
    records += system_records(hw, plans, {}, frame_start, frame_done, pr, timing)
    meta = run_meta(hw, wl, plans, timing, pr.names, caps)
    return Report.build(meta, records)
