"""Writers for a Report: JSON, tidy CSV, a terminal table, and side-by-side comparisons.

Everything here reads ``report.meta``, ``report.records`` and ``report.summary`` and never
recomputes a figure the summary already holds. Output is deterministic: the same report gives
the same bytes (nested keys sorted, floats written with ``repr``, ``\\n`` line endings).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..fileio import atomic_write
from .report import COLUMNS, Report

__all__ = [
    "to_json", "write_json", "to_csv", "write_csv", "format_table", "fmt_quantity",
    "compare_rows", "format_compare", "compare_csv", "compare_json", "summary_line", "compare_summary_line",
]

COMPARE_SCHEMA_NAME = "snnsim-compare"
COMPARE_SCHEMA_VERSION = "1.0"

# -- numbers and units ---------------------------------------------------------------------------

_PREFIXES: dict[str, int] = {"a": -18, "f": -15, "p": -12, "n": -9, "u": -6, "m": -3, "": 0,
                             "k": 3, "M": 6, "G": 9, "T": 12}
_BY_EXP = {e: p for p, e in _PREFIXES.items()}
# Units fmt_quantity scales with an SI prefix, and the largest exponent used for each
# (seconds stay seconds rather than becoming ks).
_SCALED_UNITS: dict[str, int] = {"J": 12, "s": 0, "W": 12, "J*s": 12, "bit": 12, "bit/s": 12,
                                 "Hz": 12, "b": 12, "B": 12}


def _split_unit(base_unit: str) -> tuple[int, str] | None:
    """'pJ' -> (-12, 'J'); 'J' -> (0, 'J'); an unknown unit (e.g. 'fps', 'count') -> None."""
    if base_unit in _SCALED_UNITS:
        return 0, base_unit
    if len(base_unit) > 1 and base_unit[0] in _PREFIXES and base_unit[1:] in _SCALED_UNITS:
        return _PREFIXES[base_unit[0]], base_unit[1:]
    return None


def _sig(x: float, digits: int) -> str:
    s = f"{x:.{digits}g}"
    return s if "e" not in s else f"{x:.{max(digits - 1, 0)}e}"


def fmt_quantity(value: float | None, base_unit: str, digits: int = 4) -> str:
    """Format ``value`` (given in ``base_unit``) with the SI prefix that keeps 1 <= |x| < 1000.

    ``fmt_quantity(1500, "pJ") == "1.5 nJ"``, ``fmt_quantity(2.5e6, "ps") == "2.5 us"``.
    Zero keeps the given unit; None prints ``n/a``; units without a known base (``fps``,
    ``count``) are printed as given, with ``digits`` significant digits.
    """
    if value is None:
        return "n/a"
    value = float(value)
    if not math.isfinite(value):
        return f"{value} {base_unit}"
    split = _split_unit(base_unit)
    if split is None or value == 0.0:
        return f"{_sig(value, digits)} {base_unit}"
    exp0, unit = split
    exp = exp0 + 3 * math.floor(math.log10(abs(value)) / 3)
    lo, hi = min(_BY_EXP), min(max(_BY_EXP), _SCALED_UNITS[unit])
    exp = max(lo, min(hi, exp))
    scaled = value * 10.0 ** (exp0 - exp)
    # rounding may carry into the next prefix: 999.96 pJ -> "1000 pJ" -> "1 nJ"
    if abs(float(_sig(scaled, digits))) >= 1000.0 and exp + 3 <= hi:
        exp += 3
        scaled = value * 10.0 ** (exp0 - exp)
    return f"{_sig(scaled, digits)} {_BY_EXP[exp]}{unit}"


def _count(x: float | None) -> str:
    """A count: integers with thousands separators, fractions with 4 significant digits."""
    if x is None:
        return "-"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.1f}" if abs(x) >= 1000 else _sig(x, 4)


def _factor(x: float | None) -> str:
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    return f"{float(x):.2f}x"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _fmt_value(value: Any) -> str:
    """A value exactly: integral floats without '.0', other floats with repr."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) or hasattr(value, "item"):
        f = float(value)
        if math.isfinite(f) and f == int(f) and abs(f) <= 2.0**53:
            return str(int(f))
        return repr(f)
    return str(value)


# -- JSON ----------------------------------------------------------------------------------------

def _jsonable(obj: Any) -> Any:
    """Plain JSON data: nested keys sorted, numpy scalars/arrays unwrapped, non-finite -> None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return obj.as_posix()
    if hasattr(obj, "tolist"):  # numpy scalar or array
        return _jsonable(obj.tolist())
    return str(obj)


def _dumps(top: dict[str, Any]) -> str:
    # The top level keeps its documented order (schema first); everything below is sorted.
    data = {k: _jsonable(v) for k, v in top.items()}
    return json.dumps(data, indent=1, allow_nan=False, ensure_ascii=False) + "\n"


def to_json(report: Report) -> str:
    """The report as JSON text (``Report.to_dict``), deterministic, non-finite numbers as null."""
    return _dumps(report.to_dict())


def write_json(report: Report, path: str | Path) -> Path:
    """Write the report's JSON atomically (a temporary file beside ``path``, then a rename)."""
    text = to_json(report)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# -- CSV -----------------------------------------------------------------------------------------

_SUFFIX_UNITS = (("_pj_per_frame", "pJ"), ("_ps_mean", "ps"), ("_ps_min", "ps"), ("_ps_max", "ps"),
                 ("_pj", "pJ"), ("_ps", "ps"), ("_bits_per_frame", "bit"), ("_bits", "bit"),
                 ("_fps", "fps"), ("_mbps", "Mbps"), ("_j_s", "J*s"), ("busy_ps", "ps"),
                 ("stall_ps", "ps"), ("idle_ps", "ps"))


def _summary_unit(key: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    for suffix, unit in _SUFFIX_UNITS:
        if leaf.endswith(suffix):
            return unit
    return "pJ" if ".by_component_pj_per_frame." in key or ".by_action_pj_per_frame." in key else ""


def _summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Numeric summary figures as tidy rows: component ``summary``, metric = dotted key.

    Per-layer figures carry the layer name in the layer column (metric ``layers.<key>``) and
    per-step rates the step in the step column; strings and shapes are left out.
    """
    rows: list[list[str]] = []

    def number(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k in sorted(obj, key=str):
                walk(f"{prefix}.{k}" if prefix else str(k), obj[k])
        elif number(obj):
            rows.append(["", "-", "", "summary", prefix, _fmt_value(obj), _summary_unit(prefix)])

    for key in sorted(summary, key=str):
        if key == "layers":
            continue
        walk(key, summary[key])
    for la in summary.get("layers", []):
        for k in sorted(la, key=str):
            v = la[k]
            if k == "spike_rate_per_step":
                rows += [["", la["name"], str(t), "summary", f"layers.{k}", _fmt_value(r), ""]
                         for t, r in enumerate(v)]
            elif number(v):
                rows.append(["", la["name"], "", "summary", f"layers.{k}", _fmt_value(v),
                             _summary_unit(f"layers.{k}")])
    return rows


def to_csv(report: Report, summary_rows: bool = False) -> str:
    """The tidy records as CSV: one row per record, empty cells for None.

    With ``summary_rows=True`` the numeric summary figures follow the records as extra rows of
    component ``summary`` (metric = the dotted summary key), so ``grep ',summary,'`` finds them.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in report.records:
        w.writerow([_fmt_value(r.sample), r.layer, _fmt_value(r.step), r.component, r.metric,
                    _fmt_value(r.value), r.unit])
    if summary_rows:
        w.writerows(_summary_rows(report.summary))
    return buf.getvalue()


def write_csv(report: Report, path: str | Path, summary_rows: bool = False) -> Path:
    """Write the tidy CSV atomically (a temporary file beside ``path``, then a rename)."""
    text = to_csv(report, summary_rows=summary_rows)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return atomic_write(path, write)


# -- terminal table ------------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None,
           indent: str = "  ") -> list[str]:
    """Aligned plain-text columns; ``right[i]`` right-aligns column i (numbers)."""
    cols = len(header)
    right = list(right) if right is not None else [False] + [True] * (cols - 1)
    widths = [max(len(str(x[i])) for x in [header, *rows]) for i in range(cols)]

    def line(cells: Sequence[str]) -> str:
        parts = [str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    return [line(header), indent + "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _kv(pairs: Sequence[tuple[str, str]], indent: str = "  ") -> list[str]:
    w = max((len(k) for k, _ in pairs), default=0)
    return [f"{indent}{k.ljust(w)}  {v}".rstrip() for k, v in pairs]


def _section(title: str) -> list[str]:
    return ["", title, "=" * len(title)]


_COMPONENTS = ("sensor", "link", "core", "dram")


def _actions_in_order(by_action: dict[str, float]) -> list[tuple[str, str, float]]:
    out = []
    for key, v in by_action.items():
        comp, _, action = key.partition(".")
        out.append((comp, action, v))
    rank = {c: i for i, c in enumerate(_COMPONENTS)}
    return sorted(out, key=lambda t: (rank.get(t[0], len(rank)), t[0], t[1]))


def _shape(shape: Any) -> str:
    return "x".join(str(d) for d in shape) if isinstance(shape, (list, tuple)) else str(shape)


def _entry_lines(m: dict) -> list[tuple[str, str]]:
    """Where frames enter the chip: the sensor and the link's encoding, or stored frames in DRAM."""
    if "frames" in m:
        return [("input", f"stored frames from DRAM, {m['frames'].get('bits_per_value', '?')} bits per value")]
    if "loihi" in m:
        lo = m["loihi"]
        return [("input", "frames sent by the host"),
                ("target", f"Loihi-class, preset {lo.get('preset', '?')}: {lo.get('cores_used', '?')} cores on "
                           f"{lo.get('chips_used', '?')} chip(s)")]
    if "ncs2" in m:
        return [("input", "frames sent by the host over USB"), ("target", "NCS2-class dense accelerator")]
    return [("sensor", str(m.get("sensor", {}).get("kind", "?"))),
            ("link encoding", str(m.get("link", {}).get("encoding", "?")))]


def format_table(report: Report) -> str:
    """A readable plain-text report of the summary, per-frame figures with engineering units."""
    m, s = report.meta, report.summary
    hw, wl = m.get("hardware", {}), m.get("workload", {})
    bw, en, de = s["bandwidth"], s["energy"], s["delay"]
    ops, act = s["operations"], s["activity"]
    out: list[str] = []

    title = "snnsim report"
    out += [title, "=" * len(title)]
    out += _kv([
        ("hardware", f"{hw.get('name', '?')} ({hw.get('source', '?')})"),
        *_entry_lines(m),
        ("workload", f"{wl.get('model', '?')} ({wl.get('source', '?')})"),
        ("dataset", str(wl.get("dataset", "?"))),
        ("frames", _count(s["frames"])),
        ("time steps", _count(s["time_steps"])),
    ])

    dram = "frames" in m
    out += _section("Bandwidth (per frame)")
    out += _table(
        ["", "payload", "on the wire"],
        [["this design", f"{_count(bw['payload_bits_per_frame'])} bit", f"{_count(bw['wire_bits_per_frame'])} bit"],
         ["raw frame" if dram or "loihi" in m or "ncs2" in m else "conventional readout", f"{_count(bw['conventional_payload_bits_per_frame'])} bit",
          f"{_count(bw['conventional_wire_bits_per_frame'])} bit"],
         ["reduction", _factor(bw["reduction_payload"]), _factor(bw["reduction_wire"])],
         ["rate at achieved fps", f"{bw['payload_mbps']:.4g} Mbps", f"{bw['wire_mbps']:.4g} Mbps"]])
    if "loihi" not in m and "ncs2" not in m:  # a target's host I/O is in its own section
        out += _kv([("DRAM frame reads busy" if dram else "link busy", _pct(bw["link_busy_fraction"], 1.0))])

    total = en["total_pj_per_frame"]
    table = m.get("energy_table")
    table_name = table.get("name", "?") if table else "none (the target's own values)"
    out += _section("Energy per frame")
    pw = s.get("power") or {}
    out += _kv([("total", fmt_quantity(total, "pJ")),
                ("dynamic", fmt_quantity(en.get("dynamic_pj_per_frame"), "pJ")),
                ("static", fmt_quantity(en.get("static_pj_per_frame"), "pJ")),
                ("mean power", "-" if pw.get("total_mw") is None else
                 f"{fmt_quantity(pw['total_mw'] * 1e-3, 'W')} (dynamic {fmt_quantity(pw['dynamic_mw'] * 1e-3, 'W')})"),
                ("technology table", str(table_name))])
    out += ["", "  by component"]
    comp_rows = [[c, fmt_quantity(v, "pJ"), _pct(v, total)]
                 for c, v in sorted(en["by_component_pj_per_frame"].items(),
                                    key=lambda kv: _COMPONENTS.index(kv[0]) if kv[0] in _COMPONENTS else 99)]
    out += _table(["component", "energy", "share"], comp_rows, indent="    ")
    out += ["", "  by action"]
    act_rows = [[c, a, fmt_quantity(v, "pJ"), _pct(v, total)]
                for c, a, v in _actions_in_order(en["by_action_pj_per_frame"])]
    out += _table(["component", "action", "energy", "share"], act_rows, [False, False, True, True], indent="    ")

    out += _section("Delay")
    out += _kv([
        ("latency mean", fmt_quantity(de["latency_ps_mean"], "ps")),
        ("latency min", fmt_quantity(de["latency_ps_min"], "ps")),
        ("latency max", fmt_quantity(de["latency_ps_max"], "ps")),
        ("frame interval", fmt_quantity(de["frame_interval_ps"], "ps")),
        ("throughput", f"{de['throughput_fps']:,.1f} fps"),
        ("makespan", fmt_quantity(de["makespan_ps"], "ps")),
        *([] if dram else [("sensor readout mean", fmt_quantity(de.get("sensor_readout_ps_mean"), "ps"))]),
    ])
    makespan = de["makespan_ps"]
    stages = de.get("stages", {})
    order = list(m.get("engine", {}).get("stages", [])) or sorted(stages)
    order += [n for n in sorted(stages) if n not in order]
    if stages:
        out += ["", "  stage utilisation (% of makespan)"]
        rows = [[n, _pct(stages[n].get("busy_ps", 0.0), makespan), _pct(stages[n].get("stall_ps", 0.0), makespan),
                 _pct(stages[n].get("idle_ps", 0.0), makespan)] for n in order if n in stages]
        out += _table(["stage", "busy", "stall", "idle"], rows, indent="    ")

    nm = s.get("neuromorphic")
    if nm:
        out += _section("Neuromorphic target (per frame)")
        out += _kv([("cores / chips / tiles used", f"{nm['cores_used']} / {nm['chips_used']} / {nm['tiles_used']}"),
                    ("step time mean", fmt_quantity(nm["step_ps_mean"], "ps")),
                    ("  busiest core's work", fmt_quantity(nm["compute_ps_mean"], "ps")),
                    ("  longest message path", fmt_quantity(nm["hop_latency_ps_mean"], "ps")),
                    ("  barrier", fmt_quantity(nm["barrier_ps"], "ps")),
                    ("  management", fmt_quantity(nm["management_ps_mean"], "ps")),
                    ("host I/O", fmt_quantity(nm["io_ps"], "ps")),
                    ("cores' busy share of the steps", _pct(nm["core_busy_fraction"] or 0.0, 1.0)),
                    ("spike messages", _count(nm["messages_per_frame"])),
                    ("synaptic ops", _count(nm["synaptic_ops_per_frame"]))])

    out += _section("Energy-delay product")
    out += _kv([("EDP (energy/frame x mean latency)", fmt_quantity(s["edp_j_s"], "J*s"))])

    out += _section("Activity and cost per layer (per frame)")
    rows = []
    for la in s["layers"]:
        rate = la.get("spike_rate")
        rows.append([la["name"], la["op"], la["runs_on"], _shape(la["out_shape"]),
                     "-" if rate is None else f"{rate:.4f}",
                     fmt_quantity(la["energy_pj_per_frame"], "pJ"),
                     _count(la["core_cycles_per_frame"]), _count(la["synaptic_ops_per_frame"]),
                     _count(la.get("macs_per_frame"))])
    out += _table(["layer", "op", "runs on", "out shape", "spike rate", "energy", "core cycles",
                   "synaptic ops", "MACs"], rows, [False] * 4 + [True] * 5)
    # every dynamic pJ belongs to a layer (the sensor and link to the first); static energy stands apart
    layer_sum = sum(la["energy_pj_per_frame"] for la in s["layers"])
    out += [f"  (layers: {fmt_quantity(layer_sum, 'pJ')}, sensor and link energy in the first layer's; "
            f"static: {fmt_quantity(en.get('static_pj_per_frame', 0.0), 'pJ')}, in no layer)"]

    out += _section("Operations (per frame)")
    rate = act.get("spike_rate")
    out += _kv([
        ("synaptic ops", _count(ops["synaptic_ops_per_frame"])),
        ("MACs", _count(ops["macs_per_frame"])),
        ("core cycles", _count(ops["core_cycles_per_frame"])),
        ("sensor ADC conversions", _count(ops["sensor_adc_conversions_per_frame"])),
        ("spikes", _count(act["spikes_per_frame"])),
        ("spike rate", "-" if rate is None else f"{rate:.4f}"),
        ("in-pixel MACs", _count(ops.get("in_pixel_macs_per_frame"))),
        ("dense MACs (equivalent network, all steps)", _count(ops.get("dense_macs_per_frame"))),
        ("DRAM traffic", "-" if ops.get("dram_bits_per_frame") is None else f"{_count(ops['dram_bits_per_frame'])} bit"),
        ("memory stall cycles", _count(ops.get("memory_stall_cycles_per_frame"))),
        ("TOPS/W effective (2 ops per AC/MAC done)", _num(ops.get("tops_per_w_effective"))),
        ("TOPS/W dense-equivalent", _num(ops.get("tops_per_w_dense"))),
    ])
    nb = ops.get("neurobench") or {}
    if nb:
        out += ["", "  NeuroBench synaptic operations (per sample, docs/ops.md)"]
        out += _kv([("Effective_ACs", _count(nb.get("Effective_ACs"))),
                    ("Effective_MACs", _count(nb.get("Effective_MACs"))),
                    ("Dense", _count(nb.get("Dense")))])
    return "\n".join(out) + "\n"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


# -- comparison ----------------------------------------------------------------------------------

def _component_energy(component: str):
    return lambda s: s["energy"]["by_component_pj_per_frame"].get(component)


# (metric name, unit, getter on the summary): before the per-component energies, and after them
_COMPARE_HEAD: list[tuple[str, str, Any]] = [
    ("payload_bits_per_frame", "bit", lambda s: s["bandwidth"]["payload_bits_per_frame"]),
    ("wire_bits_per_frame", "bit", lambda s: s["bandwidth"]["wire_bits_per_frame"]),
    ("reduction_payload", "x", lambda s: s["bandwidth"]["reduction_payload"]),
    ("reduction_wire", "x", lambda s: s["bandwidth"]["reduction_wire"]),
    ("energy_pj_per_frame", "pJ", lambda s: s["energy"]["total_pj_per_frame"]),
    ("dynamic_energy_pj_per_frame", "pJ", lambda s: s["energy"]["dynamic_pj_per_frame"]),
    ("static_energy_pj_per_frame", "pJ", lambda s: s["energy"]["static_pj_per_frame"]),
    ("power_mw", "mW", lambda s: s.get("power", {}).get("total_mw")),
    ("dynamic_power_mw", "mW", lambda s: s.get("power", {}).get("dynamic_mw")),
]
_COMPARE_TAIL: list[tuple[str, str, Any]] = [
    ("latency_ps_mean", "ps", lambda s: s["delay"]["latency_ps_mean"]),
    ("frame_interval_ps", "ps", lambda s: s["delay"]["frame_interval_ps"]),
    ("throughput_fps", "fps", lambda s: s["delay"]["throughput_fps"]),
    ("edp_j_s", "J*s", lambda s: s["edp_j_s"]),
    ("synaptic_ops_per_frame", "count", lambda s: s["operations"]["synaptic_ops_per_frame"]
     + (s.get("neuromorphic") or {}).get("synaptic_ops_per_frame", 0.0)),
    ("macs_per_frame", "count", lambda s: s["operations"]["macs_per_frame"]
     + (s.get("dense_target") or {}).get("macs_per_frame", 0.0)),
    ("core_cycles_per_frame", "count", lambda s: s["operations"]["core_cycles_per_frame"]),
    ("sensor_adc_conversions_per_frame", "count", lambda s: s["operations"]["sensor_adc_conversions_per_frame"]),
]


def _ratio_key(label: str, base: str) -> str:
    return f"{label}/{base}"


def _labels(reports: Sequence[Report], labels: Sequence[str]) -> list[str]:
    """Validated labels; repeated ones (two hwconfigs both named 'unnamed') get '#2', '#3'..."""
    if len(reports) != len(labels):
        raise ValueError(f"{len(reports)} reports but {len(labels)} labels")
    if not reports:
        raise ValueError("nothing to compare: no reports")
    out: list[str] = []
    taken = {"metric", "unit"}
    for lb in labels:
        name, n = str(lb), 1
        while name in taken:
            n += 1
            name = f"{lb}#{n}"
        taken.add(name)
        out.append(name)
    clash = taken & {_ratio_key(lb, out[0]) for lb in out[1:]}
    if clash:
        raise ValueError(f"label(s) {sorted(clash)} clash with the ratio column names")
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    a, b = float(a), float(b)
    if b == 0.0 or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return a / b


def _compare_metrics(reports: Sequence[Report]) -> list[tuple[str, str, Any]]:
    """The comparison's metrics: one energy row per component any of the chips has (the sensor
    and link rows of chips reading stored frames are left out unless another chip has them)."""
    present = {c for r in reports for c in r.summary["energy"]["by_component_pj_per_frame"]}
    order = [c for c in _COMPONENTS if c in present] + sorted(present - set(_COMPONENTS))
    return [*_COMPARE_HEAD, *[(f"energy_{c}_pj_per_frame", "pJ", _component_energy(c)) for c in order],
            *_COMPARE_TAIL]


def compare_rows(reports: Sequence[Report], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Headline per-frame metrics side by side.

    One dict per metric: ``metric``, ``unit``, one key per label (the value), and for every
    report after the first a ratio key ``"<label>/<first label>"`` (None when undefined).
    A label given twice is made unique with a ``#2`` suffix (and so on).
    """
    labels = _labels(reports, labels)
    rows = []
    for name, unit, get in _compare_metrics(reports):
        vals = []
        for r in reports:
            try:
                v = get(r.summary)
            except (KeyError, TypeError):
                v = None
            vals.append(None if v is None else float(v))
        row: dict[str, Any] = {"metric": name, "unit": unit}
        row.update(zip(labels, vals, strict=True))
        for lb, v in zip(labels[1:], vals[1:], strict=True):
            row[_ratio_key(lb, labels[0])] = _ratio(v, vals[0])
        rows.append(row)
    return rows


def _fmt_metric(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "x":
        return _factor(v)
    if unit == "fps":
        return f"{v:,.1f} fps"
    if unit == "count":
        return _count(v)
    if unit == "bit":
        return f"{_count(v)} bit"
    return fmt_quantity(v, unit)


def _entry_text(m: dict) -> str:
    if "loihi" in m:
        return f"Loihi-class, {m['loihi'].get('cores_used', '?')} cores, preset {m['loihi'].get('preset', '?')}"
    if "ncs2" in m:
        return "NCS2-class dense accelerator"
    return "frames from DRAM" if "frames" in m else f"{m.get('sensor', {}).get('kind', '?')} sensor"


def format_compare(reports: Sequence[Report], labels: Sequence[str]) -> str:
    """Side-by-side table of the headline metrics, with ratios to the first report."""
    labels = _labels(reports, labels)
    rows = compare_rows(reports, labels)
    ratio_keys = [_ratio_key(lb, labels[0]) for lb in labels[1:]]
    header = ["metric", *labels, *ratio_keys]
    body = [[row["metric"], *(_fmt_metric(row[lb], row["unit"]) for lb in labels),
             *("n/a" if row[k] is None else f"{row[k]:.3g}x" for k in ratio_keys)] for row in rows]
    out = ["snnsim comparison", "=" * len("snnsim comparison")]
    out += _kv([(lb, f"hardware {r.meta.get('hardware', {}).get('name', '?')} "
                     f"({_entry_text(r.meta)}), "
                     f"workload {r.meta.get('workload', {}).get('model', '?')}")
                for lb, r in zip(labels, reports, strict=True)])
    out.append("")
    out += _table(header, body)
    return "\n".join(out) + "\n"


def compare_csv(reports: Sequence[Report], labels: Sequence[str]) -> str:
    """The comparison rows as CSV (columns: metric, unit, labels..., ratios...)."""
    labels = _labels(reports, labels)
    rows = compare_rows(reports, labels)
    header = ["metric", "unit", *labels, *(_ratio_key(lb, labels[0]) for lb in labels[1:])]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([row["metric"], row["unit"], *(_fmt_value(row[k]) for k in header[2:])])
    return buf.getvalue()


def compare_json(reports: Sequence[Report], labels: Sequence[str]) -> str:
    """The comparison as JSON: labels, which hardware/workload each is, and the rows."""
    labels = _labels(reports, labels)
    rows = compare_rows(reports, labels)
    top = {
        "schema": COMPARE_SCHEMA_NAME,
        "schema_version": COMPARE_SCHEMA_VERSION,
        "labels": list(labels),
        "reports": [{"label": lb,
                     "hardware": r.meta.get("hardware", {}).get("name"),
                     "hardware_source": r.meta.get("hardware", {}).get("source"),
                     "sensor": "dram" if "frames" in r.meta else r.meta.get("sensor", {}).get("kind"),
                     "workload": r.meta.get("workload", {}).get("model"),
                     "workload_source": r.meta.get("workload", {}).get("source")}
                    for lb, r in zip(labels, reports, strict=True)],
        "rows": rows,
    }
    return _dumps(top)


# -- one-line summaries --------------------------------------------------------------------------

def _one_line(text: Any) -> str:
    """``text`` with line breaks turned into spaces, so that a summary stays one line."""
    return " ".join(str(text).splitlines()) if text is not None else "?"


def _edp_text(v: float | None) -> str:
    return "n/a" if v is None else f"{float(v):.4g} J*s"


def _headline(s: dict[str, Any]) -> tuple[str, str, str]:
    """Energy per frame, mean latency and EDP of a summary, each with a readable unit."""
    return (f"{fmt_quantity(s['energy']['total_pj_per_frame'], 'pJ')}/frame",
            f"latency {fmt_quantity(s['delay']['latency_ps_mean'], 'ps')}",
            f"EDP {_edp_text(s.get('edp_j_s'))}")


def _frames_text(s: dict[str, Any]) -> str:
    frames = s.get("frames")
    plural = "" if frames == 1 else "s"
    return f"{_count(frames)} frame{plural}, T={_count(s.get('time_steps'))}"


def _wrote(written: Sequence[str | Path]) -> str:
    return "; wrote " + ", ".join(_one_line(w) for w in written) if written else ""


def summary_line(report: Report, written: Sequence[str | Path] = ()) -> str:
    """One line: what ran, energy per frame, latency, EDP and wire bits per frame, and the files
    ``written`` (if any). No newline at the end."""
    m, s = report.meta, report.summary
    hw, wl = m.get("hardware", {}), m.get("workload", {})
    energy, latency, edp = _headline(s)
    return (f"snnsim run: {_one_line(wl.get('model'))} on {_one_line(hw.get('name'))} "
            f"({_one_line(hw.get('source'))}) x {_one_line(wl.get('source'))}: {_frames_text(s)}: "
            f"{energy}, {latency}, {edp}, {_count(s['bandwidth']['wire_bits_per_frame'])} bits/frame "
            f"on the wire{_wrote(written)}")


def compare_summary_line(reports: Sequence[Report], labels: Sequence[str],
                         written: Sequence[str | Path] = ()) -> str:
    """One line: each chip's label with its energy per frame, latency and EDP, and after the
    first their ratios to the first's; then the files ``written`` (if any). No newline at the end."""
    labels = _labels(reports, labels)
    first = reports[0]
    wl = first.meta.get("workload", {})
    ref = first.summary

    def ratio(get, s: dict[str, Any]) -> str:
        r = _ratio(get(s), get(ref))
        return " (n/a)" if r is None else f" ({r:.3g}x)"

    getters = (lambda s: s["energy"]["total_pj_per_frame"], lambda s: s["delay"]["latency_ps_mean"],
               lambda s: s.get("edp_j_s"))
    chips = []
    for i, (lb, r) in enumerate(zip(labels, reports, strict=True)):
        parts = _headline(r.summary)
        if i:
            parts = tuple(p + ratio(g, r.summary) for p, g in zip(parts, getters, strict=True))
        chips.append(f"{_one_line(lb)} ({_one_line(r.meta.get('hardware', {}).get('source'))}) "
                     + ", ".join(parts))
    return (f"snnsim compare: {_one_line(wl.get('model'))} x {_one_line(wl.get('source'))}: "
            f"{_frames_text(ref)}, ratios to {_one_line(labels[0])}: " + "; ".join(chips) + _wrote(written))
