"""The Report: tidy records of everything the model counted, and the summary derived from them.

Every number in the summary is an aggregation of records, and every record comes from a component
replaying the trace; nothing is typed in. Units are in the key names of the summary (``_pj``,
``_ps``, ``_bits``) and in the ``unit`` column of the records.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

SCHEMA_NAME = "snnsim-report"
SCHEMA_VERSION = "1.0"
COLUMNS = ("sample", "layer", "step", "component", "metric", "value", "unit")


class Record(NamedTuple):
    """One tidy row: a metric of a component, for a sample, layer and time step (None = all).

    A named tuple: reports hold thousands of them, and tuples are cheap to build."""

    sample: int | None
    layer: str
    step: int | None
    component: str
    metric: str
    value: float
    unit: str


@dataclass
class RecordBlock:
    """Records on a (sample, layer, step, metric) grid, kept as one array until someone reads them
    as rows: a run builds thousands, and most runs only need the summary."""

    layers: list[str]
    metrics: list[str]
    components: list[str]
    units: list[str]
    values: np.ndarray  # float64 (samples, layers, steps, metrics)

    def rows(self) -> list[Record]:
        """The block's records in (sample, layer, step, metric) order."""
        s_n, n_l, t_n, n_m = self.values.shape
        shape = self.values.shape
        n = s_n * n_l * t_n
        samples = np.broadcast_to(np.arange(s_n)[:, None, None, None], shape).reshape(-1).tolist()
        layers = [self.layers[i] for i in np.broadcast_to(np.arange(n_l)[None, :, None, None], shape).reshape(-1)]
        steps = np.broadcast_to(np.arange(t_n)[None, None, :, None], shape).reshape(-1).tolist()
        return list(map(Record._make, zip(samples, layers, steps, self.components * n, self.metrics * n,
                                          self.values.reshape(-1).tolist(), self.units * n, strict=True)))


class Report:
    """A simulation's result: metadata, tidy records and the derived summary.

    ``records`` may be given as rows and :class:`RecordBlock` items; blocks are expanded into rows
    the first time ``records`` is read, in place, so the order is the order they were given in.
    """

    def __init__(self, meta: dict[str, Any], records: list, summary: dict[str, Any] | None = None) -> None:
        self.meta = meta
        self._items = list(records)
        self._rows: list[Record] | None = None
        self.summary = summary if summary is not None else {}

    @property
    def records(self) -> list[Record]:
        if self._rows is None:
            rows: list[Record] = []
            for item in self._items:
                if isinstance(item, RecordBlock):
                    rows += item.rows()
                else:
                    rows.append(item)
            self._rows = rows
        return self._rows

    @classmethod
    def build(cls, meta: dict[str, Any], records: list) -> Report:
        r = cls(meta=meta, records=records)
        r.summary = summarize(meta, r._items)
        return r

    # -- access ---------------------------------------------------------------------------------
    def total(self, component: str, metric: str, **where: Any) -> float:
        """Sum of a metric over the records matching component, metric and ``where`` filters."""
        out = 0.0
        for r in self.records:
            if r.component == component and r.metric == metric and all(getattr(r, k) == v for k, v in where.items()):
                out += r.value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_NAME,
            "schema_version": SCHEMA_VERSION,
            "meta": self.meta,
            "summary": self.summary,
            "records": {"columns": list(COLUMNS),
                        "rows": [[r.sample, r.layer, r.step, r.component, r.metric, r.value, r.unit]
                                 for r in self.records]},
        }


def _tops_per_w(ops_total: float, core_pj_per_frame: float, samples: int) -> float | None:
    """Ops per joule of the processor (core + DRAM), in TOPS/W (= tera-ops per joule)."""
    if core_pj_per_frame <= 0:
        return None
    return (ops_total / samples) / (core_pj_per_frame * 1e-12) / 1e12


# the components every summary lists (zero when a chip has none); any other component with energy
# (a unit a chain adds) is listed after them. Every component's dynamic energy belongs to layers.
_COMPONENTS = ("sensor", "link", "core", "dram")
_NOT_ENERGY = ("system", "activity")
_PER_LAYER = ("neurons", "spikes", "cycles", "synaptic_ops", "macs")  # the metrics the summary reads per layer


def _sum_block(b: RecordBlock, tot: dict, by_layer: dict[tuple[str, str], dict[str, float]], by_step: dict[tuple[str, str], list[float]],
               energy_action: dict, layer_energy: dict) -> None:
    """Add a block of records to the summary's sums, as arrays (one Python step per metric)."""
    sums = b.values.sum(axis=(0, 2))  # over samples and steps: (layers, metrics)
    col = sums.sum(axis=0).tolist()
    energy_cols = []
    for m, (comp, metric) in enumerate(zip(b.components, b.metrics, strict=True)):
        tot[(comp, metric)] += col[m]
        if metric.startswith("energy."):
            energy_action[(comp, metric[7:])] += col[m]
            if comp not in _NOT_ENERGY:
                energy_cols.append(m)
        if metric in _PER_LAYER:
            acc = by_layer.get((comp, metric))
            if acc is None:
                by_layer[(comp, metric)] = dict(zip(b.layers, sums[:, m].tolist(), strict=True))
            else:
                for layer, v in zip(b.layers, sums[:, m].tolist(), strict=True):
                    acc[layer] = acc.get(layer, 0.0) + v
    if energy_cols:
        for layer, v in zip(b.layers, sums[:, energy_cols].sum(axis=1).tolist(), strict=True):
            layer_energy[layer] += v
    activity = [m for m, comp in enumerate(b.components) if comp == "activity"]
    if activity:
        steps = b.values.sum(axis=0)  # (layers, steps, metrics)
        for m in activity:
            metric = b.metrics[m]
            for layer, per_step in zip(b.layers, steps[:, :, m].tolist(), strict=True):
                acc = by_step.get((layer, metric))
                if acc is None:
                    by_step[(layer, metric)] = per_step
                else:
                    for t, v in enumerate(per_step):
                        acc[t] += v


def _target_summary(meta: dict[str, Any], tot: dict, samples: int, steps: int) -> dict[str, Any]:
    """A neuromorphic target's own headline figures: cores and chips used, the mean step time
    and its parts, the host I/O time, the cores' mean busy share of the step time."""
    if "ncs2" in meta:  # the dense target's own figures
        return {"dense_target": {"macs_per_frame": tot[("ncs2", "macs")] / samples,
                                 "bytes_per_frame": tot[("ncs2", "bytes")] / samples,
                                 "usb_ps": tot[("ncs2", "usb_ps")] / samples,
                                 "request_ps": tot[("ncs2", "request_ps")] / samples,
                                 "compute_ps": tot[("ncs2", "time_ps")] / samples}}
    if "loihi" not in meta:
        return {}
    m = meta["loihi"]
    n = samples * steps
    step = tot[("loihi", "step_ps")] / n
    busy = tot[("loihi", "core_busy_ps")]
    return {"neuromorphic": {
        "cores_used": m["cores_used"], "chips_used": m["chips_used"], "tiles_used": m["tiles_used"],
        "step_ps_mean": step, "compute_ps_mean": tot[("loihi", "compute_ps")] / n,
        "hop_latency_ps_mean": tot[("loihi", "hop_latency_ps")] / n, "barrier_ps": m["barrier_ps_used"],
        "management_ps_mean": tot[("loihi", "management_ps")] / n, "io_ps": tot[("loihi", "io_ps")] / samples,
        "core_busy_fraction": busy / (m["cores_used"] * tot[("loihi", "step_ps")]) if tot[("loihi", "step_ps")] else None,
        "messages_per_frame": tot[("loihi", "messages")] / samples,
        "synaptic_ops_per_frame": tot[("loihi", "synaptic_ops")] / samples}}


def summarize(meta: dict[str, Any], records: list) -> dict[str, Any]:
    """Headline figures per frame (means over the workload's samples) and per layer."""
    samples = meta["workload"]["samples"]
    steps = meta["workload"]["time_steps"]
    tot: dict[tuple[str, str], float] = defaultdict(float)
    by_layer: dict[tuple[str, str], dict[str, float]] = {}  # (component, metric) -> layer -> sum
    by_step: dict[tuple[str, str], list[float]] = {}  # activity: (layer, metric) -> per step
    energy_action: dict[tuple[str, str], float] = defaultdict(float)
    # a layer's energy is what computes and carries it: the core and its DRAM traffic, and for the
    # first layer the sensor's readout and the link (records of layer "-", static energy, stand apart)
    layer_energy: dict[str, float] = defaultdict(float)
    per_sample: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * samples)
    stage: dict[str, dict[str, float]] = defaultdict(dict)
    # one pass; records are tuples, unpacked directly; a block of records is summed as an array
    rows = []
    for item in records:
        if isinstance(item, RecordBlock):
            _sum_block(item, tot, by_layer, by_step, energy_action, layer_energy)
        else:
            rows.append(item)
    for sample, layer, step, component, metric, value, _unit in rows:
        tot[(component, metric)] += value
        if metric in _PER_LAYER:
            acc = by_layer.setdefault((component, metric), {})
            acc[layer] = acc.get(layer, 0.0) + value
        if metric.startswith("energy."):
            energy_action[(component, metric[7:])] += value
            if component not in _NOT_ENERGY:
                layer_energy[layer] += value
        if component == "activity":
            acc = by_step.get((layer, metric))
            if acc is None:
                acc = by_step[(layer, metric)] = [0.0] * steps
            acc[step] += value
        if sample is None:
            stage[component][metric] = value
        elif component == "system":
            per_sample[(component, metric)][sample] += value
    # the sensor and link are shown when frames enter through them; the core and DRAM always
    base = tuple(c for c in _COMPONENTS if c in meta or (c == "dram" and "core" in meta))
    components = base + tuple(sorted({c for c, _a in energy_action} - set(base)))
    energy_component = {c: sum(v for (cc, _a), v in energy_action.items() if cc == c) / samples for c in components}
    energy_frame = sum(energy_component.values())
    core_pj = energy_component.get("core", 0.0) + energy_component.get("dram", 0.0)  # the SNN core's TOPS/W
    latency = per_sample[("system", "latency_ps")]
    lat_mean = sum(latency) / samples
    eng = meta["engine"]
    makespan = eng["makespan_ps"]
    # the steady-state rate: the trigger's when the chip keeps up with it, the bottleneck's otherwise
    interval = eng["frame_interval_ps"]
    fps = 1e12 / interval if interval else None
    static = sum(v for (_c, a), v in energy_action.items() if a == "static") / samples
    # what carries frames into the chip: the CSI-2 link, or the frame reader from DRAM
    # (or the host, for a target that takes frames over its own I/O)
    entry = next((c for c in ("link", "frames", *eng["stages"])
                  if "conventional_payload_bits_per_frame" in (meta.get(c) or {})), None)
    payload = tot[(entry, "payload_bits")] / samples
    wire = tot[(entry, "wire_bits")] / samples
    conv_payload = meta[entry]["conventional_payload_bits_per_frame"] if entry else 0.0
    conv_wire = meta[entry]["conventional_wire_bits_per_frame"] if entry else 0.0

    nb = meta.get("neurobench_ops") or {}
    nb_layers = nb.get("layers", {})
    # NeuroBench's effective operations of the layers the core runs (not the in-pixel one)
    nb_core_ops = sum(v["synops"] for la in meta["workload"]["layers"] if la["runs_on"] == "core"
                      for v in [nb_layers.get(la["name"])] if v)
    layers_out = []
    no_steps = [0.0] * steps
    layer_neurons, layer_spikes = by_layer.get(("activity", "neurons"), {}), by_layer.get(("activity", "spikes"), {})
    layer_cycles = by_layer.get(("core", "cycles"), {})
    layer_synops = dict(by_layer.get(("core", "synaptic_ops"), {}))
    for layer, v in by_layer.get(("loihi", "synaptic_ops"), {}).items():  # a neuromorphic target's
        layer_synops[layer] = layer_synops.get(layer, 0.0) + v
    layer_macs = by_layer.get(("core", "macs"), {})
    for la in meta["workload"]["layers"]:
        name = la["name"]
        neurons = layer_neurons.get(name, 0.0)
        spikes = layer_spikes.get(name, 0.0)
        step_spikes = by_step.get((name, "spikes"), no_steps)
        step_neurons = by_step.get((name, "neurons"), no_steps)
        layers_out.append({
            "name": name, "op": la["op"], "runs_on": la["runs_on"], "out_shape": la["out_shape"],
            "spike_rate": spikes / neurons if neurons else None,
            "spikes_per_frame": spikes / samples,
            "spike_rate_per_step": [sp / n if n else None for sp, n in zip(step_spikes, step_neurons, strict=True)],
            "energy_pj_per_frame": layer_energy[name] / samples,
            "core_cycles_per_frame": layer_cycles.get(name, 0.0) / samples,
            "synaptic_ops_per_frame": layer_synops.get(name, 0.0) / samples,
            "macs_per_frame": layer_macs.get(name, 0.0) / samples,
            "neurobench": nb_layers.get(name),
        })
    # flatten only renames its input's neurons: counting it would count those spikes twice
    counted = [x for x, la in zip(layers_out, meta["workload"]["layers"], strict=True) if la["op"] != "flatten"]
    total_spikes = sum(x["spikes_per_frame"] for x in counted)
    # neurons x steps per frame (the activity records hold one 'neurons' row per step)
    total_neuron_steps = sum(layer_neurons.get(x["name"], 0.0) for x in counted) / samples
    return {
        "frames": samples,
        "time_steps": steps,
        "bandwidth": {
            "payload_bits_per_frame": payload,  # floats throughout: means over frames
            "wire_bits_per_frame": wire,
            "conventional_payload_bits_per_frame": float(conv_payload),
            "conventional_wire_bits_per_frame": float(conv_wire),
            "reduction_payload": conv_payload / payload if payload else None,
            "reduction_wire": conv_wire / wire if wire else None,
            "payload_mbps": payload * fps / 1e6 if fps else None,
            "wire_mbps": wire * fps / 1e6 if fps else None,
            "link_busy_fraction": stage[entry].get("busy_ps", 0.0) / makespan if makespan else 0.0,
        },
        "energy": {
            "total_pj_per_frame": energy_frame,
            "dynamic_pj_per_frame": energy_frame - static,
            # static power over one steady-state frame interval, apart from every layer's energy
            "static_pj_per_frame": static,
            "by_component_pj_per_frame": energy_component,
            "by_action_pj_per_frame": {f"{c}.{a}": v / samples for (c, a), v in sorted(energy_action.items())},
        },
        "delay": {
            "latency_ps_mean": lat_mean,
            "latency_ps_min": min(latency),
            "latency_ps_max": max(latency),
            "frame_interval_ps": interval,
            "throughput_fps": fps,
            "bottleneck_interval_ps": eng["bottleneck_interval_ps"],
            "trigger_period_ps": eng["trigger_period_ps"],
            "keeps_up_with_trigger": eng["keeps_up_with_trigger"],
            "makespan_ps": makespan,
            "makespan_fps": samples / (makespan * 1e-12) if makespan else None,
            "stages": {name: dict(v) for name, v in stage.items()},
            "sensor_readout_ps_mean": tot[("sensor", "readout_ps")] / samples,
        },
        # mean power over a frame interval (pJ / ps = W)
        "power": {"total_mw": 1e3 * energy_frame / interval if interval else None,
                  "dynamic_mw": 1e3 * (energy_frame - static) / interval if interval else None,
                  "static_mw": 1e3 * static / interval if interval else None},
        "edp_j_s": energy_frame * 1e-12 * lat_mean * 1e-12,
        **_target_summary(meta, tot, samples, steps),
        "activity": {
            "spikes_per_frame": total_spikes,
            "spike_rate": (total_spikes / total_neuron_steps) if total_neuron_steps else None,
        },
        "operations": {
            "synaptic_ops_per_frame": tot[("core", "synaptic_ops")] / samples,
            "macs_per_frame": tot[("core", "macs")] / samples,
            "core_cycles_per_frame": tot[("core", "cycles")] / samples,
            "sensor_adc_conversions_per_frame": tot[("sensor", "adc_conversions")] / samples,
            "in_pixel_macs_per_frame": tot[("sensor", "in_pixel_macs")] / samples,
            "dense_macs_per_frame": tot[("core", "dense_macs")] / samples,
            # one synaptic operation (accumulate) or MAC = 2 ops, the accelerator convention
            "ops_effective_per_frame": 2 * (tot[("core", "synaptic_ops")] + tot[("core", "macs")]) / samples,
            "ops_dense_per_frame": 2 * tot[("core", "dense_macs")] / samples,
            "tops_per_w_effective": _tops_per_w(2 * (tot[("core", "synaptic_ops")] + tot[("core", "macs")]),
                                                core_pj, samples),
            "tops_per_w_dense": _tops_per_w(2 * tot[("core", "dense_macs")],
                                            core_pj, samples),
            "neurobench": dict(nb.get("neurobench", {})),
            "neurobench_core_synops_per_frame": nb_core_ops,
            "tops_per_w_neurobench": _tops_per_w(2 * nb_core_ops * samples,
                                                 core_pj, samples),
            "dram_bits_per_frame": (tot[("core", "dram_read_bits")] + tot[("core", "dram_write_bits")]) / samples,
            "memory_stall_cycles_per_frame": tot[("core", "dram_stall_cycles")] / samples,
            "fusion_saved_bits_per_frame": tot[("core", "fusion_saved_bits")] / samples,
        },
        "layers": layers_out,
    }


def flatten(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The summary's scalars under dotted keys, in the summary's order; lists (per layer, per
    step) are left out: they belong in a full report, not in one row."""
    out: dict[str, Any] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            continue
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:  # a NumPy scalar that slipped through
            out[key] = v.item() if hasattr(v, "item") else str(v)
    return out
