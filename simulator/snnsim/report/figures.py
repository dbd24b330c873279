"""Paper-ready figures of saved results: one or several ``report.json`` files, or a sweep's table.

Sources are read back without simulating: :func:`load_report` rebuilds a :class:`Report` from its
JSON (:func:`report_from_dict`), :func:`load_sweep` reads a sweep's ``results.csv`` or
``results.jsonl``. Every figure shows each quantity in one fixed unit (:mod:`.units`), titles say
what was simulated, and :func:`save_figure` writes PNG, PDF or SVG with reproducible bytes (no
dates, no tool versions, a fixed SVG id salt), each file atomically.

Reading saved results is :mod:`.tables`.

matplotlib and NumPy are imported inside the functions that draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fileio import atomic_write
from .plots import _COLORS, _figure, _layer_ticks
from .report import Report
from .tables import (
    MAX_READ_BYTES,
    SavedSweep,
    _listing,
    _order,
    _show,
    filter_rows,
    flatten_summary,
    load_report,
    load_sweep,
    pareto_front,
    parse_value,
    parse_where,
    report_from_dict,
    resolve_axis,
    resolve_metric,
)
from .units import Quantity, axis_quantity, format_value, quantity, si_format

__all__ = ["MAX_READ_BYTES", "SavedSweep", "report_from_dict", "load_report", "load_sweep",
           "flatten_summary", "pareto_front", "resolve_metric", "resolve_axis", "parse_value",
           "parse_where", "breakdown_figure", "layers_figure", "steps_figure", "pareto_figure",
           "heatmap_figure", "line_figure", "save_figure", "FORMATS"]

DPI = 150
_COMPONENTS = ("sensor", "link", "core", "dram")
#: suffix -> (matplotlib format, metadata that keeps the bytes free of dates and versions)
FORMATS = {
    ".png": ("png", {"Software": None}),
    ".pdf": ("pdf", {"Creator": None, "Producer": None, "CreationDate": None}),
    ".svg": ("svg", {"Date": None, "Creator": None}),
}


# -- figure helpers ------------------------------------------------------------------------------

def _new(width: float, height: float, ncols: int = 1, nrows: int = 1, **kw):
    """An Agg figure (plots._figure) with constrained layout and an ``nrows`` x ``ncols`` grid."""
    fig, axes = _figure(width, height, ncols)
    if nrows > 1 or kw:
        fig.clear()
        axes = list(fig.subplots(nrows, ncols, squeeze=False, **kw).ravel())
    fig.set_layout_engine("constrained")
    return fig, axes


def _format_axis(axis, q: Quantity) -> None:
    from matplotlib.ticker import FuncFormatter, ScalarFormatter

    if q.count:
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: si_format(v)))
    elif axis.get_scale() == "linear":
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_powerlimits((-4, 5))
        axis.set_major_formatter(fmt)


def _scaled(key: str, v: Any) -> float:
    return float(v) * quantity(key).scale if isinstance(v, (int, float)) else math.nan


def _palette(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _apply_log(ax, log: str | None) -> None:
    if log and "x" in log:
        ax.set_xscale("log")
    if log and "y" in log:
        ax.set_yscale("log")


def _names_ticks(ax, labels: Sequence[str]) -> None:
    """Bar-group tick labels, slanted when they are many or long."""
    ax.set_xticks(range(len(labels)))
    slant = len(labels) > 4 or max((len(s) for s in labels), default=0) > 10
    ax.set_xticklabels(labels, rotation=30 if slant else 0, ha="right" if slant else "center",
                       fontsize=8)


def _describe_reports(reports: Sequence[Report]) -> str:
    """"resnet18 on p2m, baseline" (one model), else "resnet18 on p2m, lenet on loihi"."""
    models = [r.meta.get("workload", {}).get("model", "?") for r in reports]
    hws = [r.meta.get("hardware", {}).get("name", "?") for r in reports]
    if len(set(models)) == 1:
        return f"{models[0]} on {', '.join(dict.fromkeys(hws))}"
    pairs = list(dict.fromkeys(f"{m} on {h}" for m, h in zip(models, hws, strict=True)))
    return ", ".join(pairs[:4]) + (f" and {len(pairs) - 4} more" if len(pairs) > 4 else "")


def _num(v: float) -> str:
    """A bar label: 3 significant digits, whole numbers from 1000 up (no exponent)."""
    if not math.isfinite(v):
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def report_labels(reports: Sequence[Report], labels: str | None) -> list[str]:
    """``--labels a,b,c`` (one per report), else the hwconfig names (made unique)."""
    if labels:
        out = [s.strip() for s in labels.split(",")]
        if len(out) != len(reports):
            raise UsageError("one label per report", key="--labels",
                             expected=f"{len(reports)} labels", found=f"{len(out)}: {labels}")
        return out
    names = [r.meta.get("hardware", {}).get("name", f"report {i + 1}")
             for i, r in enumerate(reports)]
    if len(set(names)) < len(names):
        models = [r.meta.get("workload", {}).get("model", "?") for r in reports]
        names = [f"{n} / {m}" for n, m in zip(names, models, strict=True)]
    if len(set(names)) < len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    return names


# -- report figures ------------------------------------------------------------------------------

def breakdown_figure(reports: Sequence[Report], labels: Sequence[str], log: str | None = None):
    """Three panels per report: energy per frame by component (stacked), latency (mean latency
    per frame and makespan per frame), and EDP."""
    comps = list(_COMPONENTS)
    for r in reports:
        comps += [c for c in r.summary["energy"]["by_component_pj_per_frame"] if c not in comps]
    by = [r.summary["energy"]["by_component_pj_per_frame"] for r in reports]
    comps = [c for c in comps if any(b.get(c) for b in by)]
    colors = dict(zip(comps, _palette(len(comps)), strict=True))
    colors.update({c: _COLORS[c] for c in comps if c in _COLORS})
    colors.setdefault("dram", "#c44e52")
    n = len(reports)
    fig, (a0, a1, a2) = _new(max(12.0, 1.1 * n * 3 + 6.0), 4.6, ncols=3)
    xs = list(range(n))
    qe = quantity("energy.total_pj_per_frame")
    bottom = [0.0] * n
    for c in comps:
        vals = [(b.get(c) or 0.0) * qe.scale for b in by]
        a0.bar(xs, vals, bottom=bottom, color=colors[c], label=c, edgecolor="white",
               linewidth=0.5)
        bottom = [s + v for s, v in zip(bottom, vals, strict=True)]
    for x, top in zip(xs, bottom, strict=True):
        a0.annotate(_num(top), (x, top), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 2), textcoords="offset points")
    a0.set_ylabel(f"energy per frame ({qe.unit})")
    a0.set_title("Energy per frame by component", fontsize=10)
    a0.legend(fontsize=7, frameon=False, title="component", title_fontsize=7)

    qt = quantity("delay.latency_ps_mean")
    lat = [_scaled("delay.latency_ps_mean", r.summary["delay"].get("latency_ps_mean")) for r in reports]
    mk = [_scaled("delay.makespan_ps", r.summary["delay"].get("makespan_ps"))
          / max(int(r.summary.get("frames") or 1), 1) for r in reports]
    w = 0.38
    for off, vals, lab, col in ((-w / 2, lat, "mean latency per frame", "#4c72b0"),
                                (w / 2, mk, "makespan per frame", "#dd8452")):
        bars = a1.bar([x + off for x in xs], vals, width=w * 0.95, label=lab, color=col)
        a1.bar_label(bars, labels=[_num(v) for v in vals], fontsize=7, padding=1)
    a1.set_ylabel(f"time per frame ({qt.unit})")
    a1.set_title("Latency", fontsize=10)
    a1.legend(fontsize=7, frameon=False)

    qd = quantity("edp_j_s")
    edp = [_scaled("edp_j_s", r.summary.get("edp_j_s")) for r in reports]
    bars = a2.bar(xs, edp, color=_palette(n))
    a2.bar_label(bars, labels=[_num(v) for v in edp], fontsize=7, padding=1)
    a2.set_ylabel(qd.label())
    a2.set_title("Energy-delay product (energy x mean latency)", fontsize=10)
    for ax in (a0, a1, a2):
        _names_ticks(ax, labels)
        ax.set_xlabel("report (hwconfig)")
        if log and "y" in log:
            ax.set_yscale("log")
        else:
            ax.margins(y=0.12)
            _format_axis(ax.yaxis, qe)
    fig.suptitle(f"Energy, latency and EDP per frame: {_describe_reports(reports)}", fontsize=11)
    return fig


def _layer_axis_ticks(ax, names: Sequence[str]) -> None:
    """plots._layer_ticks, and with more than 40 layers only every k-th name (k = n / 40)."""
    _layer_ticks(ax, names)
    if len(names) > 40:
        k = math.ceil(len(names) / 40)
        ax.set_xticklabels([s if i % k == 0 else "" for i, s in enumerate(names)])


def layers_figure(report: Report, log: str | None = None):
    """Per-layer dynamic energy per frame (top) and core cycles per frame (bottom; synaptic
    operations instead on a target without core cycles), bars coloured by where a layer runs."""
    from matplotlib.patches import Patch

    layers = report.summary.get("layers") or []
    if not layers:
        raise UsageError("the report has no layers", key="summary.layers",
                         expected="a report of a simulated workload", found="no layers")
    names = [la["name"] for la in layers]
    colors = [_COLORS.get(la.get("runs_on", "core"), "#999999") for la in layers]
    fig, (a0, a1) = _new(max(7.0, 0.3 * len(names) + 3.0), 6.4, nrows=2, sharex=True)
    qe = quantity("energy.total_pj_per_frame")
    a0.bar(range(len(names)), [(la.get("energy_pj_per_frame") or 0.0) * qe.scale for la in layers],
           color=colors)
    a0.set_ylabel(f"dynamic energy per frame ({qe.unit})")
    cycles = [la.get("core_cycles_per_frame") or 0.0 for la in layers]
    if any(cycles):
        what, vals = "core cycles per frame", cycles
    else:
        what, vals = "synaptic ops per frame", [la.get("synaptic_ops_per_frame") or 0.0
                                                for la in layers]
    a1.bar(range(len(names)), vals, color=colors)
    a1.set_ylabel(f"{what} (count)")
    for ax, q in ((a0, qe), (a1, Quantity(what, 1.0, "count", True))):
        if log and "y" in log:
            ax.set_yscale("log")
        _format_axis(ax.yaxis, q)
    _layer_axis_ticks(a1, names)
    a1.set_xlabel("layer (name)")
    found = {la.get("runs_on", "core") for la in layers}
    where = [c for c in (*_COMPONENTS, "loihi") if c in found] + sorted(found - {*_COMPONENTS, "loihi"})
    a0.legend(handles=[Patch(color=_COLORS.get(w, "#999999"), label=f"runs on {w}") for w in where],
              fontsize=7, frameon=False)
    mhz = report.meta.get("core", {}).get("clock_mhz")
    clock = f", core clock {mhz:g} MHz" if isinstance(mhz, (int, float)) and any(cycles) else ""
    fig.suptitle(f"Per-layer energy and {what.split(' per')[0]}: {_describe_reports([report])}"
                 f" ({len(names)} layers{clock})", fontsize=10)
    return fig


def steps_figure(report: Report, log: str | None = None):
    """Per-step activity: spike rate per layer and step (heatmap, grey = not spiking) and the
    total spikes per frame at each step (line), sharing the time axis."""
    import numpy as np

    steps = int(report.summary.get("time_steps") or 0)
    layers = [la for la in report.summary.get("layers") or []
              if la.get("op") != "flatten" and any(r is not None for r in la.get("spike_rate_per_step", []))]
    if steps < 1 or not layers:
        raise UsageError("the report has no per-step activity", key="summary.layers",
                         expected="spiking layers with spike_rate_per_step", found="none")
    names = [la["name"] for la in layers]
    grid = np.full((len(layers), steps), np.nan)
    total = np.zeros(steps)
    for i, la in enumerate(layers):
        neurons = math.prod(int(s) for s in la.get("out_shape") or [0])
        for t, r in enumerate(la.get("spike_rate_per_step", [])[:steps]):
            if r is not None:
                grid[i, t] = r
                total[t] += r * neurons
    fig, (a0, a1) = _new(max(8.0, 0.06 * steps + 6.0), max(5.0, 0.22 * len(names) + 3.2),
                         nrows=2, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    vmax = float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0
    im = a0.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis",
                   interpolation="nearest", vmin=0.0, vmax=vmax or 1.0)
    a0.set_facecolor("#dddddd")
    a0.set_yticks(range(len(names)))
    a0.set_yticklabels(names, fontsize=7 if len(names) > 16 else 8)
    a0.set_ylabel("layer (name)")
    cb = fig.colorbar(im, ax=[a0, a1], shrink=0.9)
    cb.set_label(quantity("activity.spike_rate").label())
    a1.plot(range(steps), total, color="#4c72b0", marker="o" if steps <= 32 else None, markersize=3)
    a1.set_ylabel("spikes per frame (count)")
    if log and "y" in log:
        a1.set_yscale("log")
    _format_axis(a1.yaxis, Quantity("spikes", 1.0, "count", True))
    every = max(1, math.ceil(steps / 16))
    a1.set_xticks(range(0, steps, every))
    a1.set_xlim(-0.5, steps - 0.5)
    a1.set_xlabel("time step (index)")
    fig.suptitle(f"Activity per time step: {_describe_reports([report])} "
                 f"(T = {steps}, {len(names)} spiking layers, means over "
                 f"{report.summary.get('frames', '?')} frames)", fontsize=10)
    return fig


# -- sweep and multi-report figures --------------------------------------------------------------

def _context(rows: Sequence[dict[str, Any]], failed: int, where: Sequence[tuple[str, Any]]) -> str:
    text = (f"{_listing([r.get('workload') for r in rows])} on "
            f"{_listing([r.get('hwconfig') for r in rows])}; {len(rows)} points")
    if failed:
        text += f" ({failed} failed, not shown)"
    if where:
        text += "; " + ", ".join(f"{k} = {_show(v)}" for k, v in where)
    return text


def pareto_figure(points: Sequence[dict[str, Any]], x: str, y: str,
                  maximize: tuple[bool, bool] = (False, False), log: str | None = None,
                  title_context: str = "", label_keys: Sequence[str] = ()):
    """Scatter of ``points`` (dicts with the two metric columns, ``workload`` and an optional
    ``label``), coloured by workload, with each workload's Pareto front as a step line."""
    groups = sorted({str(p.get("workload")) for p in points})
    colors = dict(zip(groups, _palette(len(groups)), strict=True))
    qx, qy = quantity(x), quantity(y)
    fig, (ax,) = _new(7.5, 5.2)
    for g in groups:
        pts = [p for p in points if str(p.get("workload")) == g]
        xs = [_scaled(x, p.get(x)) for p in pts]
        ys = [_scaled(y, p.get(y)) for p in pts]
        ax.scatter(xs, ys, s=22, color=colors[g], alpha=0.45, linewidths=0, label=g)
        front = sorted(pareto_front(xs, ys, maximize), key=lambda i: (xs[i], ys[i]))
        if not front:
            continue
        fx, fy = [xs[i] for i in front], [ys[i] for i in front]
        ax.step(fx, fy, where="pre" if maximize[0] else "post", color=colors[g], linewidth=1.2)
        ax.scatter(fx, fy, s=48, facecolors=colors[g], edgecolors="black", linewidths=0.8,
                   zorder=3)
        if len(front) <= 10:
            for i in front:
                text = pts[i].get("label") or ", ".join(
                    f"{k.split('.')[-1]}={_show(pts[i].get(k))}" for k in label_keys)
                if text:
                    ax.annotate(text, (xs[i], ys[i]), fontsize=6, xytext=(4, 3),
                                textcoords="offset points")
    _apply_log(ax, log)
    ax.set_xlabel(qx.label())
    ax.set_ylabel(qy.label())
    _format_axis(ax.xaxis, qx)
    _format_axis(ax.yaxis, qy)
    ax.grid(True, color="#eeeeee", linewidth=0.6)
    ax.legend(title="workload (front: outlined)", fontsize=7, title_fontsize=7, frameon=False)
    goal = " and ".join(f"{'maximize' if m else 'minimize'} {q.name}"
                        for m, q in zip(maximize, (qx, qy), strict=True))
    ax.set_title(f"Pareto front ({goal})\n{title_context}", fontsize=9)
    return fig


def _ambiguous(cells: dict, keys: Sequence[str], exclude: Sequence[str], what: str) -> None:
    """Refuse when some cell holds more than one row: name the columns varying inside it."""
    crowded = [rows for rows in cells.values() if len(rows) > 1]
    if not crowded:
        return
    varying = {}
    for rows in crowded:
        for k in keys:
            if k not in exclude and len({_show(r.get(k)) for r in rows}) > 1:
                varying.setdefault(k, set()).update(_show(r.get(k)) for r in rows)
    found = "; ".join(f"{k} takes {_listing(list(v))}" for k, v in varying.items()) \
        or "duplicate rows"
    first = next(iter(varying), None)
    example = f"--where {first}={sorted(varying[first])[0]}" if first else "--where KEY=VALUE"
    raise UsageError(f"several results for one {what}", key="--where",
                     expected=f"one result per {what}",
                     found=f"up to {max(len(r) for r in crowded)} per {what}: other columns vary "
                           f"({found})",
                     suggestion=f"fix the other columns with {example} (repeatable)")


def heatmap_figure(table: SavedSweep, x: str, y: str, metric: str,
                   where: Sequence[tuple[str, Any]] = (), log: str | None = None):
    """``metric`` over the grid of axes ``x`` and ``y``, each cell annotated with its value."""
    import numpy as np
    from matplotlib.colors import LogNorm

    rows = filter_rows(table.rows, where)
    if not rows:
        raise UsageError("no ok results left to plot", key="--where", expected="some matching row",
                         found=f"0 of {len(table.rows)} ok rows match")
    cells: dict[tuple, list] = {}
    for r in rows:
        cells.setdefault((_show(r.get(x)), _show(r.get(y))), []).append(r)
    _ambiguous(cells, [*table.axes, "hwconfig", "workload"], (x, y), "cell")
    xv = sorted({r.get(x) for r in rows}, key=_order)
    yv = sorted({r.get(y) for r in rows}, key=_order)
    q = quantity(metric)
    grid = np.full((len(yv), len(xv)), np.nan)
    for (cx, cy), (r,) in cells.items():
        grid[[_show(v) for v in yv].index(cy), [_show(v) for v in xv].index(cx)] = \
            _scaled(metric, r.get(metric))
    fig, (ax,) = _new(max(5.5, 0.9 * len(xv) + 3.0), max(4.0, 0.5 * len(yv) + 2.5))
    finite = grid[np.isfinite(grid)]
    norm = LogNorm() if log and (finite > 0).all() and finite.size else None
    im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap="viridis",
                   norm=norm, interpolation="nearest")
    ax.set_facecolor("#dddddd")
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for i in range(len(yv)):
        for j in range(len(xv)):
            v = grid[i, j]
            if not math.isfinite(v):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="#555555")
                continue
            frac = (v - lo) / (hi - lo) if hi > lo else 0.5
            ax.text(j, i, format_value(metric, v / q.scale), ha="center", va="center",
                    fontsize=7, color="black" if frac > 0.6 else "white")
    qx = axis_quantity(x, [r.get(x) for r in rows])
    qy = axis_quantity(y, [r.get(y) for r in rows])
    ax.set_xticks(range(len(xv)))
    ax.set_xticklabels([_show(v) for v in xv], fontsize=8)
    ax.set_yticks(range(len(yv)))
    ax.set_yticklabels([_show(v) for v in yv], fontsize=8)
    ax.set_xlabel(qx.label())
    ax.set_ylabel(qy.label())
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(q.label())
    ax.set_title(f"{q.name} ({q.unit}) over {x} and {y}\n"
                 f"{_context(rows, table.failed, where)}", fontsize=9)
    return fig


def line_figure(table: SavedSweep, x: str, metric: str,
                where: Sequence[tuple[str, Any]] = (), log: str | None = None):
    """``metric`` against axis ``x``: one line per workload (and per hwconfig when several)."""
    rows = filter_rows(table.rows, where)
    if not rows:
        raise UsageError("no ok results left to plot", key="--where", expected="some matching row",
                         found=f"0 of {len(table.rows)} ok rows match")
    by = [k for k in ("hwconfig", "workload") if k != x and len({r.get(k) for r in rows}) > 1]
    if not by:
        by = ["workload"] if x != "workload" else []
    series: dict[str, list] = {}
    for r in rows:
        series.setdefault(" / ".join(_show(r.get(k)) for k in by) or "all", []).append(r)
    cells = {(name, _show(r.get(x))): [] for name, rs in series.items() for r in rs}
    for name, rs in series.items():
        for r in rs:
            cells[(name, _show(r.get(x)))].append(r)
    _ambiguous(cells, [*table.axes, "hwconfig", "workload"], (x, *by), "point of a line")
    xv = sorted({r.get(x) for r in rows}, key=_order)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xv)
    q = quantity(metric)
    qx = axis_quantity(x, xv)
    fig, (ax,) = _new(7.0, 4.8)
    for (name, rs), color in zip(sorted(series.items()), _palette(len(series)), strict=True):
        rs = sorted(rs, key=lambda r: _order(r.get(x)))
        pos = [float(r.get(x)) if numeric else xv.index(r.get(x)) for r in rs]
        ax.plot(pos, [_scaled(metric, r.get(metric)) for r in rs], marker="o", markersize=4,
                color=color, label=name)
    _apply_log(ax, log if numeric else (log or "").replace("x", ""))
    if numeric and len(xv) <= 16:
        ax.set_xticks([float(v) for v in xv])
        ax.set_xticklabels([_show(v) for v in xv])
    elif not numeric:
        ax.set_xticks(range(len(xv)))
        ax.set_xticklabels([_show(v) for v in xv])
    ax.set_xlabel(qx.label())
    ax.set_ylabel(q.label())
    _format_axis(ax.yaxis, q)
    ax.grid(True, color="#eeeeee", linewidth=0.6)
    ax.legend(title=" / ".join(by) or None, fontsize=7, title_fontsize=7, frameon=False)
    ax.set_title(f"{q.name} against {x}\n{_context(rows, table.failed, where)}", fontsize=9)
    return fig


# -- saving --------------------------------------------------------------------------------------

def save_figure(fig, paths: Sequence[str | Path]) -> list[Path]:
    """Write ``fig`` to each path, the suffix (.png, .pdf, .svg) naming the format, atomically
    and without dates or tool versions, so the same inputs give the same bytes."""
    import matplotlib

    out = []
    with matplotlib.rc_context({"svg.hashsalt": "snnsim"}):
        for p in map(Path, paths):
            fmt, meta = FORMATS[p.suffix.lower()]
            atomic_write(p, lambda tmp, fmt=fmt, meta=meta: fig.savefig(
                tmp, format=fmt, dpi=DPI, metadata=meta))
            out.append(p)
    return out
