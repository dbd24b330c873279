"""One simulation: hardware + workload -> component plans -> event-driven pipeline -> Report.

The frame's journey: sensor rows -> link packets (bounded FIFO: the sensor's line buffer) ->
the core's input buffer (bounded FIFO) -> the core, which scatters each arriving packet at once
and then runs its layer passes. Frames (samples) follow each other through the same pipeline;
with ``sensor.frame_period_us`` > 0 each frame is triggered on that period.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from . import __version__
from .engine.pipeline import StageSpec, run_pipeline
from .errors import ConfigError, MappingError
from .hw.core import COUNTERS as CORE_COUNTERS
from .hw.core import core_plan
from .hw.fit import require_fit
from .hw.link import link_plan, raw_frame_wire_bits
from .hw.sensor import sensor_energy_pj, sensor_plan
from .hwconfig import Hardware
from .report.ops import describe_parts
from .report.report import Record, RecordBlock, Report
from .units import us_to_ps
from .workload.graph import check_graph_once
from .workload.trace import Workload, check_replay_arrays

Progress = Callable[[str, float], None]


def core_energy(hw: Hardware, c: dict[str, np.ndarray]) -> dict[str, tuple[str, str, np.ndarray]]:
    """Energy per action of the core and its DRAM: action -> (component, table entry, pJ per
    (sample, layer, step)), from the action counts."""
    t = hw.energy
    reads = c["weight_read_bits"] + c["membrane_read_bits"] + c["spike_read_bits"] + c["input_buffer_read_bits"]
    writes = c["membrane_write_bits"] + c["spike_write_bits"] + c["weight_load_bits"]
    bit_serial = hw["core"]["encoding_mode"] == "bit_serial"
    return {
        "accumulate": ("core", "core.ac", c["synaptic_ops"] * t.pj("core.ac")),
        # a bit-serial MAC is input_bits shift-adds; a multiplier MAC is one core.mac
        "mac": ("core", "core.ac" if bit_serial else "core.mac",
                c["shift_adds"] * t.pj("core.ac") if bit_serial else c["macs"] * t.pj("core.mac")),
        "compare": ("core", "core.compare", c["compares"] * t.pj("core.compare")),
        "sram_read": ("core", "core.sram_read_bit", reads * t.pj("core.sram_read_bit")),
        "sram_write": ("core", "core.sram_write_bit", writes * t.pj("core.sram_write_bit")),
        "line_buffer": ("core", "core.line_buffer_bit", c["line_buffer_bits"] * t.pj("core.line_buffer_bit")),
        "transfer": ("dram", "dram.bit", (c["dram_read_bits"] + c["dram_write_bits"]) * t.pj("dram.bit")),
    }


def core_records(hw: Hardware, layer_names: list[str], counters: dict[str, np.ndarray]) -> list[RecordBlock]:
    """Every core counter and energy per (sample, layer, step), as one block of records."""
    energy = core_energy(hw, counters)
    units = {k: ("bit" if k.endswith("_bits") else "count") for k in CORE_COUNTERS}
    metrics = [(k, units[k], "core", counters[k]) for k in CORE_COUNTERS]
    metrics += [(f"energy.{a}", "pJ", comp, arr) for a, (comp, _e, arr) in energy.items()]
    biggest = max((int(counters[k].max(initial=0)) for k in CORE_COUNTERS), default=0)
    if biggest >= 2**53:  # past 2^53 a float64 record would round the count
        raise MappingError("the core's counts are too large to report exactly", file=hw.source, key="core",
                           expected="counts below 2^53 per (sample, layer, step)", found=f"{biggest:.4g}",
                           suggestion="simulate fewer samples or steps")
    values = np.stack([m[3] for m in metrics], axis=-1, dtype=np.float64)
    return [RecordBlock(layers=list(layer_names), metrics=[m[0] for m in metrics],
                        components=[m[2] for m in metrics], units=[m[1] for m in metrics], values=values)]


# the hwconfig keys that set each stage's service times, named when a run's time cannot be held
STAGE_KEYS = {
    "sensor": "sensor.row_overhead_ns, sensor.adc_counter_clock_mhz, sensor.p2m.row_overhead_ns",
    "link": "link.gbps_per_lane, link.line_blanking_ns, link.frame_blanking_ns",
    "core": "core.clock_mhz",
    "release": "sensor.frame_period_us",  # the frame trigger
}


def pipeline_stages(sp, lp, cp, frames: list[int], frame_ps: int, hw_source: str) -> list[StageSpec]:
    """The sensor -> link -> core stages for the given frames (sample indices, in order), frame
    k triggered at k * ``frame_ps`` (0: free-running)."""
    n_f = len(frames)
    n_pk = sp.rows * sp.packets_per_row
    if cp.tx_cycles.size and float(cp.tx_cycles.max()) * cp.period_ps >= 2.0**62:  # the int64 product would wrap
        raise ConfigError("the run's time cannot be held in integer picoseconds", file=hw_source, key="core.clock_mhz",
                          expected="core passes shorter than 2^62 ps",
                          found=f"{int(cp.tx_cycles.max())} cycles of {cp.period_ps} ps",
                          suggestion="check the unit of the key (MHz)")
    idx = np.asarray(frames, np.int64)
    release = np.zeros((n_f, sp.rows), np.int64)
    release[:, 0] = np.arange(n_f, dtype=np.int64) * frame_ps
    return [
        StageSpec.make("sensor", np.full(n_f * sp.rows, sp.row_time_ps), produce=np.full(n_f * sp.rows, sp.packets_per_row),
                       release_ps=release.reshape(-1)),
        StageSpec.make("link", lp.service_ps[idx].reshape(-1), consume=np.ones(n_f * n_pk), produce=np.ones(n_f * n_pk)),
        StageSpec.make("core", (cp.tx_cycles[idx] * cp.period_ps).reshape(-1), consume=np.tile(cp.tx_consume, n_f)),
    ]


def fifo_capacities(hw: Hardware, sp) -> list[int]:
    """Tokens each FIFO holds: the sensor's line buffer holds whole lines (every packet of a row:
    T spike packets of a P2M row, one RAW packet of a conventional row); the processor's input
    buffer holds packets."""
    return [hw["sensor"]["line_buffer_lines"] * sp.packets_per_row, hw["link"]["output_fifo_packets"]]


def _time_by_cause(stages: list[StageSpec]) -> dict[str, float]:
    """Picoseconds each stage's service adds up to, and the last frame trigger."""
    totals = {st.name: float(st.service_ps.sum(dtype=np.float64)) for st in stages}
    totals["release"] = float(max((int(st.release_ps.max()) for st in stages if st.release_ps.size), default=0))
    return totals


def check_time_budget(stages: list[StageSpec], source: str) -> None:
    """Refuse a run whose time could wrap the engine's int64 picoseconds.

    No time stamp of a run exceeds the last trigger plus the sum of every service time, so when
    that bound is below 2^62 no addition in the engine can wrap."""
    totals = _time_by_cause(stages)
    if sum(totals.values()) < 2.0**62:
        return
    worst = max(totals, key=totals.get)
    raise ConfigError("the run's time cannot be held in integer picoseconds", file=source, key=STAGE_KEYS[worst],
                      expected="a run shorter than 2^62 ps (about 53 days of simulated time)",
                      found=f"the {worst} alone needs {totals[worst]:.3g} ps",
                      suggestion="check the units of these keys (clocks in MHz, times in ns or us)")


def check_exact_time(stages: list[StageSpec], pr, source: str) -> None:
    """A run's stamps and totals must be exact in the report's float64 values: its makespan must
    stay below 2^53 ps (every integer up to 2^53 is a float64)."""
    if pr.makespan_ps < 2**53:
        return
    totals = _time_by_cause(stages)
    worst = max(totals, key=totals.get)
    raise ConfigError("the run's simulated time is too long to report exactly", file=source, key=STAGE_KEYS[worst],
                      expected="a makespan below 2^53 ps (about 2.5 hours)",
                      found=f"{pr.makespan_ps:.4g} ps, {totals[worst]:.3g} ps of it from the {worst}",
                      suggestion="check the units of these keys, or simulate fewer frames")


def steady_interval_ps(frame_done: list[int], rerun: Callable[[list[int]], list[int]], s_n: int) -> float:
    """The chip's free-running interval between frames: the mean completion interval of the
    workload's frames sent back to back (a single frame is sent twice). ``frame_done`` are the
    completion stamps of a free-running run of all frames, or None to ask ``rerun``."""
    if s_n == 1:
        done = rerun([0, 0])
    else:
        done = frame_done if frame_done is not None else rerun(list(range(s_n)))
    return (done[-1] - done[0]) / (len(done) - 1)


def simulate(hw: Hardware, wl: Workload, progress: Progress | None = None) -> Report:
    """Replay the workload's spike trace on the hardware and return the full report."""
    t0 = time.perf_counter()
    gkey = check_graph_once(wl, wl.layers, wl.input_shape)  # a Workload built in memory may not have been checked
    check_replay_arrays(wl)  # arrays a caller replaced since loading are checked again
    require_fit(hw, wl)

    def tick(stage: str) -> None:
        if progress is not None:
            progress(stage, time.perf_counter() - t0)

    tick("sensor")
    sp = sensor_plan(hw, wl)
    tick("link")
    lp = link_plan(hw, wl, sp)
    tick("core")
    cp = core_plan(hw, wl, sp, lp.payload_bits, graph=gkey)
    tick("engine")
    s_n = wl.samples
    n_pk = sp.rows * sp.packets_per_row
    frame_ps = us_to_ps(hw["sensor"]["frame_period_us"])
    stages = pipeline_stages(sp, lp, cp, list(range(s_n)), frame_ps, hw.source)
    caps = fifo_capacities(hw, sp)
    check_time_budget(stages, hw.source)
    pr = run_pipeline(stages, caps)
    check_exact_time(stages, pr, hw.source)

    n_tx = cp.tx_cycles.shape[1]

    def last_done(result, n: int) -> list[int]:
        """Completion stamp of each of ``n`` frames: the core's last transaction (or the link's)."""
        if n_tx:
            return result.done_ps[2].reshape(n, n_tx)[:, -1].tolist()
        return result.done_ps[1].reshape(n, n_pk)[:, -1].tolist()

    def rerun(frames: list[int]) -> list[int]:
        return last_done(run_pipeline(pipeline_stages(sp, lp, cp, frames, 0, hw.source), caps), len(frames))

    frame_done = last_done(pr, s_n)
    interval = steady_interval_ps(frame_done if frame_ps == 0 else None, rerun, s_n)
    tick("report")
    frame_start = pr.start_ps[0].reshape(s_n, sp.rows)[:, 0]
    link_done = pr.done_ps[1].reshape(s_n, n_pk)[:, -1]
    sensor_done = pr.done_ps[0].reshape(s_n, sp.rows)[:, -1]

    records: list = []
    add = records.append
    # the sensor's readout and the link carry the first layer: its input (a conventional frame) or
    # its output spikes (P2M); their actions and energy are that layer's, for both sensor kinds
    first = wl.layers[0].name
    s_energy = sensor_energy_pj(sp, hw.energy)
    per_frame = [(a, float(n), "count") for a, n in sp.actions.items()]
    per_frame += [(f"energy.{a}", pj, "pJ") for a, (_entry, _n, pj) in s_energy.items()]
    readout = (sensor_done - frame_start).tolist()
    for s in range(s_n):
        for metric, value, unit in per_frame:
            add(Record(s, first, None, "sensor", metric, value, unit))
        add(Record(s, first, None, "sensor", "readout_ps", float(readout[s]), "ps"))
    # link, per step of the spike rows it carries (a conventional frame has no steps)
    p2m = sp.kind == "p2m"
    n_steps = wl.time_steps if p2m else 1  # a conventional frame's packets all carry step 0
    payload = sp.per_step(lp.payload_bits, n_steps).tolist()
    wire = sp.per_step(8 * lp.wire_bytes, n_steps).tolist()
    packets = np.bincount(sp.packet_step, minlength=n_steps).tolist()
    bursts = lp.bursts.sum(axis=1).tolist()
    burst_time = lp.burst_ps.sum(axis=1).tolist()
    for s in range(s_n):
        for t in range(n_steps):
            step = t if p2m else None
            add(Record(s, first, step, "link", "payload_bits", float(payload[s][t]), "bit"))
            add(Record(s, first, step, "link", "wire_bits", float(wire[s][t]), "bit"))
            add(Record(s, first, step, "link", "packets", float(packets[t]), "count"))
        add(Record(s, first, None, "link", "bursts", float(bursts[s]), "count"))
        add(Record(s, first, None, "link", "hs_burst_ps", float(burst_time[s]), "ps"))
    # core, per layer and step
    records += core_records(hw, cp.layer_names, cp.counters)
    # activity of every spiking layer (sensor layer included)
    records.append(activity_records(wl))

    makespan_ps = int(pr.makespan_ps)
    timing = frame_timing(frame_ps, interval, makespan_ps)
    records += system_records(hw, first, [int(x) for x in 8 * lp.wire_bytes.sum(axis=1)],
                              [int(x) for x in lp.bursts.sum(axis=1)], [int(x) for x in frame_start],
                              frame_done, [int(x) for x in link_done], pr, timing)
    meta = run_meta(hw, wl, sp.kind, sp.layer, sp.details,
                    {"encoding": lp.encoding, "bits_per_event": lp.bits_per_event, "ui_ps": lp.ui_ps,
                     "conventional_payload_bits_per_frame": lp.conventional_bits_per_frame,
                     "conventional_wire_bits_per_frame": raw_frame_wire_bits(hw, wl)},
                    cp.details, timing, pr.names, caps)
    check_finite(records, hw.source)
    tick("done")
    return Report.build(meta, records)


def check_finite(records: list, source: str) -> None:
    """Every record is a finite number: an infinite or NaN energy means a value the model cannot
    hold, and is refused, never printed (the summary's figures are sums and guarded ratios of
    these). Blocks are checked as arrays."""
    for item in records:
        if isinstance(item, RecordBlock):
            if np.isfinite(item.values).all():
                continue
            bad = np.argwhere(~np.isfinite(item.values))[0]
            where, value = f"{item.metrics[bad[3]]} of layer {item.layers[bad[1]]}", float(item.values[tuple(bad)])
        elif math.isfinite(item.value):
            continue
        else:
            where, value = f"{item.metric} of the {item.component}", item.value
        raise ConfigError("a result cannot be held as a finite number", file=source, key="technology.overrides",
                          expected=f"a finite {where}", found=repr(value),
                          suggestion="check the energy table's values and overrides (pJ per action, mW)")


def frame_timing(frame_ps: int, interval_ps: float, makespan_ps: int) -> dict:
    """The run's rate figures: the steady-state interval between frames is the trigger period when
    the chip keeps up with it, the chip's own free-running interval (its bottleneck) otherwise."""
    keeps_up = None if frame_ps == 0 else interval_ps <= frame_ps
    return {"makespan_ps": makespan_ps, "trigger_period_ps": frame_ps, "bottleneck_interval_ps": interval_ps,
            "frame_interval_ps": float(max(frame_ps, interval_ps)), "keeps_up_with_trigger": keeps_up}


def activity_records(wl: Workload) -> RecordBlock:
    """Spikes and neurons of every spiking layer per (sample, step), as one block of records."""
    spiking = [la for la in wl.layers if la.spiking]
    values = np.empty((wl.samples, len(spiking), wl.time_steps, 2), np.float64)
    values[..., 0] = wl.spike_count_table([la.name for la in spiking])
    values[..., 1] = np.array([la.out_size for la in spiking], np.float64)[None, :, None]
    return RecordBlock(layers=[la.name for la in spiking], metrics=["spikes", "neurons"],
                       components=["activity", "activity"], units=["count", "count"], values=values)


def system_records(hw: Hardware, first: str, wire_bits: list[int], bursts: list[int], frame_start: list[int],
                   frame_done: list[int], link_done: list[int], pr, timing: dict) -> list[Record]:
    """Per-frame link energy (the first layer's, like the link's other records), static energy
    (each component's static power over one steady-state frame interval, apart from every layer),
    timing records, and per-stage utilisation."""
    s_n = len(wire_bits)
    mw_ps_to_pj = 1e-3  # 1 mW for 1 ps = 1e-15 J
    interval = timing["frame_interval_ps"]
    static_pj = {c: hw.energy.mw(f"{c}.static_power") * interval * mw_ps_to_pj for c in ("sensor", "link", "core")}
    out = []
    for s in range(s_n):
        out.append(Record(s, first, None, "link", "energy.bit", float(wire_bits[s]) * hw.energy.pj("link.bit"), "pJ"))
        out.append(Record(s, first, None, "link", "energy.burst", float(bursts[s]) * hw.energy.pj("link.burst"), "pJ"))
        for c in ("sensor", "link", "core"):
            out.append(Record(s, "-", None, c, "energy.static", static_pj[c], "pJ"))
        out.append(Record(s, "-", None, "system", "latency_ps", float(frame_done[s] - frame_start[s]), "ps"))
        out.append(Record(s, "-", None, "system", "frame_start_ps", float(frame_start[s]), "ps"))
        out.append(Record(s, "-", None, "system", "frame_done_ps", float(frame_done[s]), "ps"))
        out.append(Record(s, "-", None, "system", "link_done_ps", float(link_done[s]), "ps"))
    for i, name in enumerate(pr.names):
        for metric, arr in (("busy_ps", pr.busy_ps), ("stall_ps", pr.stall_ps), ("idle_ps", pr.idle_ps)):
            out.append(Record(None, "-", None, name, metric, float(arr[i]), "ps"))
    return out


def run_meta(hw: Hardware, wl: Workload, sensor_kind: str, sensor_layer: str | None, sensor_details: dict,
             link_details: dict, core_details: dict, timing: dict, stages: list[str], caps: list[int]) -> dict:
    """The report's metadata: configuration, workload, energy table and the derived parameters."""
    return {
        "snnsim_version": __version__,
        "hardware": {"name": hw.name, "source": hw.source, "config": hw.config},
        "workload": {"source": wl.source, "model": wl.model, "dataset": wl.dataset, "samples": wl.samples,
                     "time_steps": wl.time_steps, "encoding": wl.encoding,
                     "layers": [{"name": la.name, "op": la.op if la.parts is None else describe_parts(la),
                                 "out_shape": list(la.out_shape),
                                 "spiking": la.spiking, "runs_on": "sensor" if la.name == sensor_layer else "core"}
                                for la in wl.layers]},
        "energy_table": hw.energy.as_dict(),
        "sensor": {"kind": sensor_kind, **sensor_details},
        "link": link_details,
        "core": core_details,
        "engine": {**timing, "stages": stages,
                   "fifo_capacity": {"sensor->link": caps[0], "link->core": caps[1]}},
        "energy_sources": energy_sources(hw, sensor_kind),
        "neurobench_ops": neurobench_meta(wl),
    }


def neurobench_meta(wl: Workload) -> dict:
    """NeuroBench's synaptic-operation counts of the workload (per sample; docs/ops.md)."""
    from .report.ops import neurobench_ops

    # a property of the workload alone: computed once per workload, whatever the chips it runs on
    cache = wl.__dict__.setdefault("_neurobench_ops", [])
    if not cache:
        cache.append(neurobench_ops(wl))
    ops = cache[0]
    keys = ("dense", "effective_macs", "effective_acs", "synops")
    return {"source": ops["source"], "total": ops["total"], "neurobench": ops["neurobench"],
            "layers": {e["name"]: {k: e[k] for k in keys} for e in ops["layers"] if e["counted"]}}


def energy_sources(hw: Hardware, kind: str) -> dict[str, dict]:
    """The energy-table entries a run of this sensor kind uses, with value, unit and source."""
    used = ["link.bit", "link.burst", "core.ac", "core.mac", "core.compare", "core.sram_read_bit",
            "core.sram_write_bit", "core.line_buffer_bit", "dram.bit", "sensor.static_power",
            "link.static_power", "core.static_power"]
    used += ["p2m.pixel_read", "p2m.adc_conversion"] if kind == "p2m" else ["sensor.pixel_read", "sensor.adc_conversion"]
    out = {}
    for name in used:
        e = hw.energy.entry(name)
        out[name] = {"value": e.value, "unit": e.unit, "per": e.per, "source": e.source}
    return out
