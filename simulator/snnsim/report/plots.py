"""PNG plots of a Report (and of a comparison of reports), drawn with matplotlib's Agg renderer.

matplotlib is imported inside the functions, so importing snnsim stays light. Figures are built
as ``matplotlib.figure.Figure`` objects with an Agg canvas, never through pyplot's global state,
and saved without the Software tag so the same report gives the same PNG bytes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..fileio import atomic_write
from .report import Report

__all__ = ["write_plots", "compare_plot"]

DPI = 120
_COMPONENTS = ("sensor", "link", "core", "dram")
_COLORS = {"sensor": "#4c72b0", "link": "#dd8452", "core": "#55a868", "system": "#8172b3"}
_SAVE = {"dpi": DPI, "format": "png", "metadata": {"Software": None}}
_WIDE = 100.0  # max/min ratio above which a positive-valued axis goes logarithmic


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    """A new Agg-backed figure and its axes, row by row (no pyplot, no global figure registry)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        # Nothing has picked an interactive backend yet: make the headless choice explicit.
        # (When pyplot is already in use we leave its backend alone; the Agg canvas below does
        # not depend on it.)
        matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def _save(fig, path: Path) -> Path:
    """Save atomically: into a temporary beside ``path``, then renamed, so that a run killed while
    saving leaves the previous plot or none, never a truncated PNG. (``_SAVE`` names the format:
    the temporary's name ends in .tmp.)"""
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, **_SAVE))


def _energy_unit(values: Sequence[float]) -> tuple[float, str]:
    """Divisor and unit (pJ/nJ/uJ/mJ) that keep the largest of ``values`` (pJ) readable."""
    peak = max((abs(v) for v in values if v is not None and math.isfinite(v)), default=0.0)
    for div, unit in ((1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if peak >= div:
            return div, unit
    return 1.0, "pJ"


def _time_unit(values: Sequence[float]) -> tuple[float, str]:
    """Divisor and unit (ps/ns/us/ms/s) that keep the largest of ``values`` (ps) readable."""
    peak = max((abs(v) for v in values if v is not None and math.isfinite(v)), default=0.0)
    for div, unit in ((1e12, "s"), (1e9, "ms"), (1e6, "us"), (1e3, "ns")):
        if peak >= div:
            return div, unit
    return 1.0, "ps"


def _is_wide(values: Sequence[float]) -> bool:
    pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return len(pos) >= 2 and max(pos) / min(pos) > _WIDE


def _layer_ticks(ax, names: Sequence[str]) -> None:
    ax.set_xticks(range(len(names)))
    many = len(names) > 8 or max((len(n) for n in names), default=0) > 8
    ax.set_xticklabels(names, rotation=60 if many else 0, ha="right" if many else "center",
                       fontsize=8 if len(names) > 16 else 9)
    ax.set_xlim(-0.6, len(names) - 0.4)


def _describe(report: Report) -> str:
    hw = report.meta.get("hardware", {}).get("name", "?")
    kind = report.meta.get("sensor", {}).get("kind", "?")
    model = report.meta.get("workload", {}).get("model", "?")
    return f"{model} on {hw} ({kind} sensor)"


# -- single report -------------------------------------------------------------------------------

def _plot_energy_breakdown(report: Report, path: Path) -> Path:
    en = report.summary["energy"]
    by_action: dict[str, float] = en["by_action_pj_per_frame"]
    comps = [c for c in _COMPONENTS if c in en["by_component_pj_per_frame"]]
    comps += sorted({k.partition(".")[0] for k in by_action} - set(comps))
    actions = sorted({k.partition(".")[2] for k in by_action})
    div, unit = _energy_unit(list(en["by_component_pj_per_frame"].values()))

    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    fig, (ax,) = _figure(7.5, 4.5)
    bottoms = [0.0] * len(comps)
    for i, action in enumerate(actions):
        vals = [by_action.get(f"{c}.{action}", 0.0) / div for c in comps]
        if not any(vals):
            continue
        ax.bar(range(len(comps)), vals, bottom=bottoms, color=cmap(i % 20), label=action,
               edgecolor="white", linewidth=0.5)
        bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
    for x, top in enumerate(bottoms):
        ax.annotate(f"{top:.3g}", (x, top), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(comps)))
    ax.set_xticklabels(comps)
    ax.set_xlabel("component")
    ax.set_ylabel(f"energy per frame ({unit})")
    ax.set_title(f"Energy per frame by component and action\n{_describe(report)}, "
                 f"total {en['total_pj_per_frame'] / div:.4g} {unit}", fontsize=10)
    peak = max(bottoms, default=0.0)
    ax.set_ylim(0.0, peak * 1.12 if peak > 0 else 1.0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="action", fontsize=8, title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, path)


def _layer_colors(layers: Sequence[dict[str, Any]]) -> list[str]:
    return [_COLORS.get(la.get("runs_on", "core"), "#999999") for la in layers]


def _runs_on_legend(ax, layers: Sequence[dict[str, Any]]) -> None:
    from matplotlib.patches import Patch

    found = {la.get("runs_on", "core") for la in layers}
    where = [c for c in _COMPONENTS if c in found] + sorted(found - set(_COMPONENTS))
    ax.legend(handles=[Patch(color=_COLORS.get(w, "#999999"), label=f"runs on {w}") for w in where],
              fontsize=8, frameon=False)


def _plot_layer_energy(report: Report, path: Path) -> Path:
    layers = report.summary["layers"]
    names = [la["name"] for la in layers]
    pj = [la["energy_pj_per_frame"] for la in layers]
    log = _is_wide(pj)
    div, unit = (1.0, "pJ") if log else _energy_unit(pj)
    fig, (ax,) = _figure(max(6.0, 0.32 * len(names) + 2.5), 4.5)
    ax.bar(range(len(names)), [v / div for v in pj], color=_layer_colors(layers))
    if log:
        ax.set_yscale("log")
    _layer_ticks(ax, names)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"energy per frame ({unit}{', log scale' if log else ''})")
    static = report.summary["energy"].get("static_pj_per_frame", 0.0)
    sd, su = _energy_unit([static]) if static else (1.0, "pJ")
    ax.set_title(f"Dynamic energy per layer: {_describe(report)}\nthe first layer's bar holds the sensor readout "
                 f"and the link; static energy ({static / sd:.3g} {su} per frame) is in no layer", fontsize=10)
    _runs_on_legend(ax, layers)
    return _save(fig, path)


def _plot_layer_cycles(report: Report, path: Path) -> Path:
    layers = report.summary["layers"]
    names = [la["name"] for la in layers]
    cycles = [la["core_cycles_per_frame"] for la in layers]
    log = _is_wide(cycles)
    fig, (ax,) = _figure(max(6.0, 0.32 * len(names) + 2.5), 4.5)
    ax.bar(range(len(names)), cycles, color=_layer_colors(layers))
    if log:
        ax.set_yscale("log")
    _layer_ticks(ax, names)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"core cycles per frame{' (log scale)' if log else ''}")
    mhz = report.meta.get("core", {}).get("clock_mhz")
    clock = f" at {mhz:g} MHz" if isinstance(mhz, (int, float)) else ""
    ax.set_title(f"Core cycles per layer{clock}\n{_describe(report)}", fontsize=10)
    _runs_on_legend(ax, layers)
    return _save(fig, path)


def _plot_activity(report: Report, path: Path) -> Path:
    layers = report.summary["layers"]
    names = [la["name"] for la in layers]
    rates = [la["spike_rate"] for la in layers]
    steps = int(report.summary["time_steps"])
    fig, (ax0, ax1) = _figure(max(10.0, 0.45 * len(names) + 5.0), 4.8, ncols=2)

    ax0.bar(range(len(names)), [r if r is not None else 0.0 for r in rates], color=_layer_colors(layers))
    for x, r in enumerate(rates):
        if r is None:
            ax0.annotate("n/s", (x, 0), ha="center", va="bottom", fontsize=7, color="#666666",
                         xytext=(0, 2), textcoords="offset points")
    _layer_ticks(ax0, names)
    ax0.set_xlabel("layer")
    ax0.set_ylabel("spike rate (spikes / neuron / step)")
    ax0.set_title("Spike rate per layer (n/s = not spiking)", fontsize=10)
    ax0.set_ylim(0, max([r for r in rates if r is not None] + [0.0]) * 1.15 or 1.0)
    _runs_on_legend(ax0, layers)

    import numpy as np

    grid = np.full((len(names), max(steps, 1)), np.nan)
    for i, la in enumerate(layers):
        for t, r in enumerate(la.get("spike_rate_per_step", [])[:steps]):
            if r is not None:
                grid[i, t] = r
    masked = np.ma.masked_invalid(grid)
    im = ax1.imshow(masked, aspect="auto", cmap="viridis", interpolation="nearest",
                    vmin=0.0, vmax=float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0)
    ax1.set_facecolor("#dddddd")
    ax1.set_yticks(range(len(names)))
    ax1.set_yticklabels(names, fontsize=8 if len(names) > 16 else 9)
    tick_every = max(1, math.ceil(steps / 16))
    ax1.set_xticks(range(0, steps, tick_every))
    ax1.set_xlabel("time step")
    ax1.set_ylabel("layer")
    ax1.set_title("Spike rate per layer and step (grey = not spiking)", fontsize=10)
    cb = fig.colorbar(im, ax=ax1)
    cb.set_label("spike rate")
    fig.suptitle(f"Activity: {_describe(report)}", fontsize=10)
    return _save(fig, path)


def write_plots(report: Report, outdir: str | Path) -> list[Path]:
    """Write energy_breakdown.png, layer_energy.png, layer_cycles.png and activity.png (each
    atomically; ``outdir`` is created when the first is written)."""
    out = Path(outdir)
    return [
        _plot_energy_breakdown(report, out / "energy_breakdown.png"),
        _plot_layer_energy(report, out / "layer_energy.png"),
        _plot_layer_cycles(report, out / "layer_cycles.png"),
        _plot_activity(report, out / "activity.png"),
    ]


# -- comparison ----------------------------------------------------------------------------------

def _grouped(ax, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], colors=None,
             fmt=lambda v: f"{v:.3g}") -> None:
    """Bars of several series side by side within each group, each labelled with its value."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (label, vals) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        kw = {"color": colors[i]} if colors else {}
        bars = ax.bar(xs, vals, width=width * 0.95, label=label, **kw)
        ax.bar_label(bars, labels=[fmt(v) for v in vals], fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)


def _panel(ax, log: bool, xlabel: str, ylabel: str, title: str) -> None:
    """Scale, labels, title, headroom for the value labels, and the legend of a compare panel."""
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.15)
    ax.legend(fontsize=8, frameon=False)


def compare_plot(reports: Sequence[Report], labels: Sequence[str], path: str | Path) -> Path:
    """Four panels of grouped bars, one bar per report: energy per frame by component (and
    total), bits per frame, latency (mean, and makespan per frame), and EDP."""
    if len(reports) != len(labels) or not reports:
        raise ValueError(f"{len(reports)} reports but {len(labels)} labels")
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    colors = [cmap(i % 10) for i in range(len(reports))]
    groups = [*_COMPONENTS, "total"]
    pj = [[r.summary["energy"]["by_component_pj_per_frame"].get(c, 0.0) for c in _COMPONENTS]
          + [r.summary["energy"]["total_pj_per_frame"]] for r in reports]
    e_log = _is_wide([v for row in pj for v in row])
    div, unit = (1.0, "pJ") if e_log else _energy_unit([v for row in pj for v in row])

    bit_groups = ["payload", "on the wire"]
    bits = [[r.summary["bandwidth"]["payload_bits_per_frame"], r.summary["bandwidth"]["wire_bits_per_frame"]]
            for r in reports]
    b_log = _is_wide([v for row in bits for v in row])

    lat_groups = ["mean latency", "makespan per frame"]
    lat = [[r.summary["delay"]["latency_ps_mean"], r.summary["delay"]["makespan_ps"] / max(r.summary["frames"], 1)]
           for r in reports]
    t_log = _is_wide([v for row in lat for v in row])
    t_div, t_unit = _time_unit([v for row in lat for v in row])

    edp = [r.summary.get("edp_j_s") or 0.0 for r in reports]
    d_log = _is_wide(edp)

    fig, (ax0, ax1, ax2, ax3) = _figure(max(10.0, 2.2 * len(reports) + 6.0), 9.0, ncols=2, nrows=2)
    _grouped(ax0, groups, [(lb, [v / div for v in row]) for lb, row in zip(labels, pj, strict=True)], colors)
    _panel(ax0, e_log, "component", f"energy per frame ({unit}{', log scale' if e_log else ''})",
           "Energy per frame by component")

    _grouped(ax1, bit_groups, [(lb, row) for lb, row in zip(labels, bits, strict=True)], colors,
             fmt=lambda v: f"{v:,.0f}")
    _panel(ax1, b_log, "sensor-to-core traffic", f"bits per frame{' (log scale)' if b_log else ''}",
           "Sensor-to-core traffic per frame")

    _grouped(ax2, lat_groups, [(lb, [v / t_div for v in row]) for lb, row in zip(labels, lat, strict=True)],
             colors)
    _panel(ax2, t_log, "delay", f"time per frame ({t_unit}{', log scale' if t_log else ''})",
           "Latency per frame (mean) and makespan per frame")

    bars = ax3.bar(range(len(labels)), edp, color=colors, width=0.6)
    ax3.bar_label(bars, labels=[f"{v:.3g}" for v in edp], fontsize=7, padding=1)
    if d_log:
        ax3.set_yscale("log")
    ax3.set_xticks(range(len(labels)))
    ax3.set_xticklabels(labels)
    ax3.set_xlabel("chip")
    ax3.set_ylabel(f"energy-delay product (J*s{', log scale' if d_log else ''})")
    ax3.set_title("EDP (energy per frame x mean latency)", fontsize=10)
    ax3.margins(y=0.15)
    fig.suptitle("Comparison: " + " vs ".join(labels), fontsize=11)
    return _save(fig, Path(path))
