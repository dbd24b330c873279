"""One simulation: hardware + workload -> component plans -> event-driven pipeline -> Report.

The chip is the chain of components of :func:`snnsim.hw.chain.build_chain` (today: sensor rows
-> link packets, through the sensor's line buffer -> the processor's input buffer -> the core).
Each component returns a plan (:class:`snnsim.hw.chain.Plan`); this module turns the plans into
pipeline stages and bounded FIFOs, runs the event-driven engine, and asks each plan for its
records. It knows no component by name. Frames (samples) follow each other through the same
pipeline; with a frame trigger (the first component's ``released_by`` key) each frame enters on
that period.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from . import __version__
from .engine.pipeline import StageSpec, run_pipeline
from .errors import ConfigError
from .hw.chain import Plan, StageTimes, build_chain
from .hw.fit import require_fit
from .hwconfig import Hardware
from .report.ops import describe_parts
from .report.report import Record, RecordBlock, Report
from .units import us_to_ps
from .workload.graph import check_graph_once
from .workload.trace import Workload, check_replay_arrays

Progress = Callable[[str, float], None]


def time_keys(plans: list[Plan]) -> dict[str, str]:
    """The hwconfig keys that set each stage's service times, and the frame trigger's
    (``release``), named when a run's time cannot be held."""
    keys = {p.name: p.time_keys for p in plans}
    keys["release"] = next((p.released_by for p in plans if p.released_by), "")
    return keys


def pipeline_stages(plans: list[Plan], frames: list[int], frame_ps: int) -> list[StageSpec]:
    """The pipeline stages of the plans for the given frames (sample indices, in order), frame
    k entering the chip at k * ``frame_ps`` (0: free-running) at the plan that releases frames."""
    n_f = len(frames)
    idx = np.asarray(frames, np.int64)
    stages = []
    for p in plans:
        release = None
        if p.released_by is not None:
            r = np.zeros((n_f, p.transactions), np.int64)
            if p.transactions:
                r[:, 0] = np.arange(n_f, dtype=np.int64) * frame_ps
            release = r.reshape(-1)
        stages.append(StageSpec.make(p.name, p.service_ps[idx].reshape(-1), consume=np.tile(p.consume, n_f),
                                     produce=np.tile(p.produce, n_f), release_ps=release))
    return stages


def fifo_capacities(plans: list[Plan]) -> list[int]:
    """Tokens each FIFO between two stages holds (each plan says the capacity of the one after it)."""
    return [int(p.fifo_after) for p in plans[:-1]]


def _time_by_cause(stages: list[StageSpec]) -> dict[str, float]:
    """Picoseconds each stage's service adds up to, and the last frame trigger."""
    totals = {st.name: float(st.service_ps.sum(dtype=np.float64)) for st in stages}
    totals["release"] = float(max((int(st.release_ps.max()) for st in stages if st.release_ps.size), default=0))
    return totals


def check_time_budget(stages: list[StageSpec], source: str, keys: dict[str, str]) -> None:
    """Refuse a run whose time could wrap the engine's int64 picoseconds.

    No time stamp of a run exceeds the last trigger plus the sum of every service time, so when
    that bound is below 2^62 no addition in the engine can wrap."""
    totals = _time_by_cause(stages)
    if sum(totals.values()) < 2.0**62:
        return
    worst = max(totals, key=totals.get)
    raise ConfigError("the run's time cannot be held in integer picoseconds", file=source, key=keys[worst],
                      expected="a run shorter than 2^62 ps (about 53 days of simulated time)",
                      found=f"the {worst} alone needs {totals[worst]:.3g} ps",
                      suggestion="check the units of these keys (clocks in MHz, times in ns or us)")


def check_exact_time(stages: list[StageSpec], pr, source: str, keys: dict[str, str]) -> None:
    """A run's stamps and totals must be exact in the report's float64 values: its makespan must
    stay below 2^53 ps (every integer up to 2^53 is a float64)."""
    if pr.makespan_ps < 2**53:
        return
    totals = _time_by_cause(stages)
    worst = max(totals, key=totals.get)
    raise ConfigError("the run's simulated time is too long to report exactly", file=source, key=keys[worst],
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

    plans: list[Plan] = []
    for component in build_chain(hw):
        tick(component.name)
        plans.append(component.plan(hw, wl, plans, gkey))
    tick("engine")
    s_n = wl.samples
    frame_ps = us_to_ps(next((hw.get(p.released_by) for p in plans if p.released_by), 0.0))
    keys = time_keys(plans)
    stages = pipeline_stages(plans, list(range(s_n)), frame_ps)
    caps = fifo_capacities(plans)
    check_time_budget(stages, hw.source, keys)
    pr = run_pipeline(stages, caps)
    check_exact_time(stages, pr, hw.source, keys)

    # a frame ends with the last transaction of the last stage that has any
    last = max((i for i, p in enumerate(plans) if p.transactions), default=0)
    entry = next((i for i, p in enumerate(plans) if p.released_by is not None), 0)

    def last_done(result, n: int) -> list[int]:
        """Completion stamp of each of ``n`` frames."""
        return result.done_ps[last].reshape(n, plans[last].transactions)[:, -1].tolist()

    def rerun(frames: list[int]) -> list[int]:
        return last_done(run_pipeline(pipeline_stages(plans, frames, 0), caps), len(frames))

    frame_done = last_done(pr, s_n)
    interval = steady_interval_ps(frame_done if frame_ps == 0 else None, rerun, s_n)
    tick("report")
    times = {p.name: StageTimes(pr.start_ps[i].reshape(s_n, p.transactions), pr.done_ps[i].reshape(s_n, p.transactions))
             for i, p in enumerate(plans)}
    frame_start = [int(x) for x in times[plans[entry].name].start_ps[:, 0]]

    records: list = []
    for p in plans:  # each component's own records (actions, energy, time) per frame, layer and step
        records += p.records(times[p.name])
    records.append(activity_records(wl))  # activity of every spiking layer (the sensor's included)
    timing = frame_timing(frame_ps, interval, int(pr.makespan_ps))
    records += system_records(hw, plans, times, frame_start, frame_done, pr, timing)
    meta = run_meta(hw, wl, plans, timing, pr.names, caps)
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


def system_records(hw: Hardware, plans: list[Plan], times: dict[str, StageTimes], frame_start: list[int],
                   frame_done: list[int], pr, timing: dict) -> list[Record]:
    """Per frame: each component's energy beside its records (the link's bits and bursts), the
    static energy of each component with a static power (over one steady-state frame interval,
    apart from every layer), the frame's latency and stamps, each component's stamps; then each
    stage's busy, stalled and idle time."""
    mw_ps_to_pj = 1e-3  # 1 mW for 1 ps = 1e-15 J
    interval = timing["frame_interval_ps"]
    static_pj = [(p.name, (hw.energy.mw(p.static_entry) if p.static_entry else p.static_mw) * interval * mw_ps_to_pj)
                 for p in plans if p.static_entry or p.static_mw is not None]
    out = []
    for s in range(len(frame_done)):
        for p in plans:
            out += p.frame_energy(s)
        for name, pj in static_pj:
            out.append(Record(s, "-", None, name, "energy.static", pj, "pJ"))
        out.append(Record(s, "-", None, "system", "latency_ps", float(frame_done[s] - frame_start[s]), "ps"))
        out.append(Record(s, "-", None, "system", "frame_start_ps", float(frame_start[s]), "ps"))
        out.append(Record(s, "-", None, "system", "frame_done_ps", float(frame_done[s]), "ps"))
        for p in plans:
            out += p.frame_stamps(s, times.get(p.name))
    for i, name in enumerate(pr.names):
        for metric, arr in (("busy_ps", pr.busy_ps), ("stall_ps", pr.stall_ps), ("idle_ps", pr.idle_ps)):
            out.append(Record(None, "-", None, name, metric, float(arr[i]), "ps"))
    return out


def run_meta(hw: Hardware, wl: Workload, plans: list[Plan], timing: dict, stages: list[str], caps: list[int]) -> dict:
    """The report's metadata: configuration, workload (each layer with the component that runs
    it), energy table, each component's section and the engine's."""
    runs_on = {name: p.name for p in plans for name in p.layers}
    meta = {
        "snnsim_version": __version__,
        "hardware": {"name": hw.name, "source": hw.source, "config": hw.config},
        "workload": {"source": wl.source, "model": wl.model, "dataset": wl.dataset, "samples": wl.samples,
                     "time_steps": wl.time_steps, "encoding": wl.encoding,
                     "layers": [{"name": la.name, "op": la.op if la.parts is None else describe_parts(la),
                                 "out_shape": list(la.out_shape), "spiking": la.spiking,
                                 "runs_on": runs_on.get(la.name, "-")}
                                for la in wl.layers]},
        # the technology table, when a component prices its actions with it (a target with its own
        # presets does not)
        "energy_table": hw.energy.as_dict() if any(p.energy_entries or p.static_entry for p in plans) else None,
        **{p.name: p.details for p in plans},
        "engine": {**timing, "stages": stages,
                   "fifo_capacity": {f"{a.name}->{b.name}": c for a, b, c in zip(plans, plans[1:], caps, strict=False)}},
        "energy_sources": energy_sources(hw, plans),
        "neurobench_ops": neurobench_meta(wl),
    }
    return meta


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


def energy_sources(hw: Hardware, plans: list[Plan]) -> dict[str, dict]:
    """The energy-table entries the run's components use, with value, unit and source."""
    out = {}
    for p in plans:
        for name in (*p.energy_entries, *([p.static_entry] if p.static_entry else [])):
            e = hw.energy.entry(name)
            out[name] = {"value": e.value, "unit": e.unit, "per": e.per, "source": e.source}
    return out
