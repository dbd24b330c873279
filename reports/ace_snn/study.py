"""Reproduction study of ACE-SNN (Datta, Kundu, Jaiswal, Beerel, Front. Neurosci. 16:815258, 2022):
direct-encoded 3D and hybrid 3D/2D SNNs on hyperspectral patches (T = 5, 6-bit weights) against
iso-architecture CNNs (paper: ~560.6x less energy than FP32, ~44.8x less than 6-bit), and an SRAM
compute-in-memory first layer against a digital one (paper: energy, delay and EDP better by 30, 7
and 38 %, averaged over three datasets).

    python reports/ace_snn/study.py        # regenerates README.md, results.json and the plots here

Every trace `workloads/hsi_<dataset>_<family>.npz` present (sorted) is simulated on
hwconfigs/ace_snn_pim.yaml (patch from DRAM -> PIM macro running the first layer -> digital SNN
core) and hwconfigs/ace_snn_digital.yaml (the same chip, first layer as digital MACs on the core),
under both first-layer accountings (once, the hwconfigs' default, and at every time step). The
sweeps of the assumptions that move each figure run on the first dataset's traces (`--sweep-all`:
every trace). The CNN comparison is the framework-level estimate of snnsim.report.baselines.

Definitions (per frame; "L1" is the first layer, the one reading the analog patch):
* improvement x = 1 - x_PIM / x_digital, for energy, mean latency and EDP (energy x mean latency);
* E_L1c = the L1 energy of the report's per-layer table minus the patch read from DRAM (the
  `frames` component, booked to L1 on both chips and identical on both);
* r = E_L1c(PIM chip) / E_L1c(digital chip);  f = E_L1c(digital) / E_total(digital);
  so the energy improvement is f (1 - r) plus the (zero) change of the later layers;
* t_L1(digital) = L1's core cycles per frame x the core's clock period; t_L1(PIM) = the macro
  stage's busy time per frame (its MVMs x t_mvm); s = t_L1(digital) / t_L1(PIM);
* g = t_L1(digital) / the digital core's busy time per frame; g (1 - 1/s) is the serial-schedule
  estimate of the delay improvement (pim-loihi-ncs2.md A.4), shown beside the simulated one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHIPS = {"pim": "hwconfigs/ace_snn_pim.yaml", "digital": "hwconfigs/ace_snn_digital.yaml"}
# the override that makes each chip's first layer run at every time step instead of once
PER_STEP_KEY = {"pim": "pim.recompute_per_step", "digital": "core.encoding_per_step"}
ACCOUNTINGS = ("once", "per_step")
DATASETS = {"ip": "Indian Pines", "pu": "Pavia University", "sa": "Salinas"}
FAMILIES = {"3d": "3D", "hybrid": "hybrid 3D/2D"}
TRACE_RE = re.compile(r"hsi_([a-z0-9]+)_(3d|hybrid)\.npz")
PIM_ENERGY_KEYS = ("e_row_pj", "e_bitline_pj", "e_adc_pj")  # the macro's per-action energies scaled together


@dataclass(frozen=True)
class Sweeps:
    """Swept values: digital MAC energy (pJ per MAC, both chips), the factor on the macro's row,
    bit-line and ADC energies, and the macro's sense slot (ns). All run with the first layer once."""

    mac_pj: tuple[float, ...] = tuple(round(10 ** (k / 3 - 1), 4) for k in range(7))  # 0.1 .. 10 pJ
    pim_scale: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
    t_sense_ns: tuple[float, ...] = tuple(round(10 ** (1 + k / 3), 1) for k in range(7))  # 10 .. 1000 ns


@dataclass(frozen=True)
class Trace:
    """One committed trace: `workloads/hsi_<dataset>_<family>.npz`."""

    path: str  # relative to the repository root
    dataset: str
    family: str

    @property
    def name(self) -> str:
        return Path(self.path).stem

    @property
    def label(self) -> str:
        return f"{DATASETS.get(self.dataset, self.dataset.upper())}, {FAMILIES[self.family]}"


@dataclass
class Study:
    """Everything the study computes; `results.json` is `asdict` of it."""

    paper: dict[str, float]
    sweeps: dict[str, list[float]]
    traces: list[dict[str, str]]
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    chips: dict[str, dict[str, Any]] = field(default_factory=dict)  # trace -> accounting -> pair
    means: list[dict[str, Any]] = field(default_factory=list)
    sweep_results: dict[str, dict[str, Any]] = field(default_factory=dict)  # trace -> sweep -> points
    pim_macro: dict[str, float] = field(default_factory=dict)
    sweep_traces: list[str] = field(default_factory=list)


def find_traces(root: Path = ROOT) -> list[Trace]:
    """The HSI traces present under `workloads/`, sorted by file name."""
    out = []
    for p in sorted((root / "workloads").glob("hsi_*_*.npz")):
        m = TRACE_RE.fullmatch(p.name)
        if m:
            out.append(Trace(p.relative_to(root).as_posix(), m.group(1), m.group(2)))
    return out


def paper_figures() -> dict[str, float]:
    """ACE-SNN's reported figures, from the sourced table snnsim/tech/digital/ops.yaml."""
    from snnsim.report.baselines import digital_ops, reported_ratio

    rep = digital_ops()["reported"]
    return {"snn_vs_fp32_cnn": float(rep["snn_vs_fp_cnn"]["value"]),
            "snn_vs_6bit_cnn": float(rep["snn_vs_6bit_cnn"]["value"]),
            "fp32_over_6bit": reported_ratio(),
            "energy": float(rep["pim_energy_saving"]["value"]), "delay": float(rep["pim_delay_saving"]["value"]),
            "edp": float(rep["pim_edp_saving"]["value"]), "time_steps": float(rep["time_steps"]["value"])}


def resolved_macro() -> dict[str, float]:
    """The macro's per-action energies (pJ) and sense slot (ns) as ace_snn_pim.yaml resolves them
    (its overrides on top of the preset), the base values the PIM-energy sweep scales."""
    from snnsim.hw.pim_unit import macro_of
    from snnsim.hwconfig import load_hardware

    m = macro_of(load_hardware(ROOT / CHIPS["pim"]))
    return {k: float(getattr(m, k)) for k in (*PIM_ENERGY_KEYS, "e_add_pj", "e_neuron_pj", "t_sense_ns")} | {
        "n_arrays": float(m.n_arrays), "rows": float(m.rows), "cols": float(m.cols)}


# ---------------------------------------------------------------------------------------- runs


@lru_cache(maxsize=8)
def _workload(path: str):
    from snnsim.workload.trace import load_workload

    return load_workload(ROOT / path)


def run_chip(chip: str, trace: str, sets: tuple[str, ...]) -> dict[str, Any]:
    """Simulate `trace` on `chip` ("pim" or "digital") with `--set` overrides; a compact summary.

    Energies are pJ per frame, times ps (per frame unless named otherwise)."""
    from snnsim.hwconfig import load_hardware
    from snnsim.simulation import simulate

    rep = simulate(load_hardware(ROOT / CHIPS[chip], list(sets)), _workload(trace))
    s = rep.summary
    frames = s["frames"]
    comp = dict(s["energy"]["by_component_pj_per_frame"])
    layers = [{"name": L["name"], "runs_on": L["runs_on"], "energy_pj": L["energy_pj_per_frame"],
               "core_cycles": L["core_cycles_per_frame"]} for L in s["layers"]]
    stages = s["delay"]["stages"]
    l1 = layers[0]
    period_ps = float(rep.meta["core"]["period_ps"])
    if l1["runs_on"] == "pim":
        t_l1 = stages["pim"]["busy_ps"] / frames  # the macro stage runs the first layer only (mapping.pim: "0")
    else:
        t_l1 = l1["core_cycles"] * period_ps
    patch_pj = comp.get("frames", 0.0)  # the patch read from DRAM, booked to the first layer
    first = [x.value for x in rep.records if x.component == "system" and x.metric == "latency_ps" and x.sample == 0]
    l1_mac = sum(x.value for x in rep.records if x.layer == l1["name"] and x.metric == "energy.mac") / frames
    return {"chip": chip, "trace": trace, "sets": list(sets), "frames": frames,
            "energy_pj": s["energy"]["total_pj_per_frame"], "latency_ps": s["delay"]["latency_ps_mean"],
            "latency_min_ps": s["delay"]["latency_ps_min"], "latency_first_ps": first[0] if first else math.nan,
            "frame_interval_ps": s["delay"]["frame_interval_ps"],
            "edp_j_s": s["edp_j_s"], "by_component_pj": comp, "layers": layers,
            "l1_pj": l1["energy_pj"], "patch_read_pj": patch_pj, "l1_compute_pj": l1["energy_pj"] - patch_pj,
            "l1_mac_pj": l1_mac, "l1_time_ps": t_l1, "core_busy_ps": stages["core"]["busy_ps"] / frames,
            "period_ps": period_ps, "tech_pj": {k: v["value"] for k, v in rep.meta["energy_sources"].items()}}


def _flag(per_step: bool) -> str:
    return "true" if per_step else "false"


def base_sets(chip: str, accounting: str) -> tuple[str, ...]:
    """The override fixing `chip`'s first-layer accounting ("once" or "per_step")."""
    return (f"{PER_STEP_KEY[chip]}={_flag(accounting == 'per_step')}",)


def mac_sets(chip: str, mac_pj: float) -> tuple[str, ...]:
    return (*base_sets(chip, "once"), f"technology.overrides.core.mac={mac_pj:.6g}")


def pim_scale_sets(factor: float, macro: dict[str, float]) -> tuple[str, ...]:
    return (*base_sets("pim", "once"), *(f"pim.{k}={macro[k] * factor:.6g}" for k in PIM_ENERGY_KEYS))


def t_sense_sets(t_ns: float) -> tuple[str, ...]:
    return (*base_sets("pim", "once"), f"pim.t_sense_ns={t_ns:.6g}")


class Runner:
    """Runs (chip, trace, sets) tasks once each, in a process pool when jobs > 1; results keyed by task."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)
        self.done: dict[tuple, dict[str, Any]] = {}

    def run(self, tasks: list[tuple[str, str, tuple[str, ...]]]) -> None:
        todo = [t for t in dict.fromkeys(tasks) if t not in self.done]
        if self.jobs == 1 or len(todo) < 2:
            for t in todo:
                self.done[t] = run_chip(*t)
            return
        with ProcessPoolExecutor(max_workers=self.jobs) as ex:
            for t, res in zip(todo, ex.map(run_chip, *zip(*todo, strict=True), chunksize=1), strict=True):
                self.done[t] = res

    def __call__(self, chip: str, trace: str, sets: tuple[str, ...]) -> dict[str, Any]:
        key = (chip, trace, sets)
        if key not in self.done:
            self.run([key])
        return self.done[key]


# ------------------------------------------------------------------------------------- metrics


def improvement(pim: float, digital: float) -> float:
    """1 - pim / digital: the fraction saved by the PIM first layer (negative: PIM is worse)."""
    return 1.0 - pim / digital


def pair_metrics(pim: dict[str, Any], dig: dict[str, Any]) -> dict[str, Any]:
    """Improvements of the PIM chip over the digital chip and the implied r, s, f, g (module docstring)."""
    e = improvement(pim["energy_pj"], dig["energy_pj"])
    d = improvement(pim["latency_ps"], dig["latency_ps"])
    r = pim["l1_compute_pj"] / dig["l1_compute_pj"]
    f = dig["l1_compute_pj"] / dig["energy_pj"]
    s = dig["l1_time_ps"] / pim["l1_time_ps"]
    g = dig["l1_time_ps"] / dig["core_busy_ps"]
    later = sum(L["energy_pj"] for L in pim["layers"][1:]) - sum(L["energy_pj"] for L in dig["layers"][1:])
    return {"energy": e, "delay": d, "edp": improvement(pim["edp_j_s"], dig["edp_j_s"]),
            "edp_composed": 1.0 - (1.0 - e) * (1.0 - d),
            "r": r, "r_with_patch_read": pim["l1_pj"] / dig["l1_pj"], "f": f, "energy_rule": f * (1.0 - r),
            "later_layers_delta_share": later / dig["energy_pj"],
            "s": s, "g": g, "delay_rule": g * (1.0 - 1.0 / s),
            "frame_interval_improvement": improvement(pim["frame_interval_ps"], dig["frame_interval_ps"]),
            "delay_first_frame": improvement(pim["latency_first_ps"], dig["latency_first_ps"]),
            "edp_first_frame": improvement(pim["energy_pj"] * pim["latency_first_ps"],
                                           dig["energy_pj"] * dig["latency_first_ps"]),
            "pim": pim, "digital": dig}


def baseline_metrics(trace: str) -> dict[str, Any]:
    """SNN against the FP32 and 6-bit iso-architecture CNNs with `baselines.compare`'s defaults
    (FP32 base, rule solve_12_5, first layer digital at every step), and the same with the first
    layer once; the implied FP32/6-bit ratio of the rules and the bound total MACs / L1 MACs."""
    from snnsim.report.baselines import compare, mac_energy

    wl = _workload(trace)
    c = compare(wl)
    once = compare(wl, first_layer_per_step=False)
    l1_macs = c["cnn_full"]["layers"][0]["macs"]
    fp32 = mac_energy("fp32").pj
    rules = {rule: fp32 / mac_energy("6bit", rule=rule).pj for rule in ("quadratic_mult", "linear", "power_law(1.5)")}
    return {"rule": c["snn"]["rule"], "base": c["snn"]["base"], "time_steps": c["snn"]["time_steps"],
            "e_mac_fp32_pj": c["cnn_full"]["e_mac_pj"], "e_mac_6bit_pj": c["cnn_quantized"]["e_mac_pj"],
            "e_ac_pj": c["snn"]["e_ac_pj"],
            "snn_vs_fp32": c["snn_vs_full"], "snn_vs_6bit": c["snn_vs_quantized"],
            "implied_fp32_over_6bit": c["implied_full_over_quantized"],
            "first_layer_share": c["snn"]["first_layer_share"],
            "once_snn_vs_fp32": once["snn_vs_full"], "once_snn_vs_6bit": once["snn_vs_quantized"],
            "once_first_layer_share": once["snn"]["first_layer_share"],
            "l1_macs": l1_macs, "total_macs": c["cnn_full"]["macs"],
            "bound_total_over_l1_macs": c["cnn_full"]["macs"] / l1_macs,
            "fp32_over_6bit_other_rules": rules}


def mean_over_datasets(per_trace: dict[str, dict[str, Any]], traces: list[Trace], family: str | None,
                       accounting: str) -> dict[str, Any]:
    """The paper's averaging: the mean of the per-dataset improvements (of one model family, or of
    every trace when `family` is None), and 1 - (1 - mean e)(1 - mean d) beside the mean EDP one."""
    sel = [t for t in traces if family is None or t.family == family]
    rows = [per_trace[t.name][accounting] for t in sel]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("energy", "delay", "edp")}
    return {"family": family or "all", "accounting": accounting, "traces": [t.name for t in sel], **mean,
            "composed": 1.0 - (1.0 - mean["energy"]) * (1.0 - mean["delay"])}


def crossings(points: list[dict[str, Any]], x: str, y: str, target: float, param: str) -> list[dict[str, float]]:
    """Where `y` crosses `target` along a sweep, interpolated linearly between neighbouring points
    (in `x`, and in log `param` for the swept value): [{x, param}], empty if never reached."""
    out = []
    for a, b in pairwise(points):
        ya, yb = a[y] - target, b[y] - target
        if ya == 0.0:
            out.append({"x": a[x], "param": a[param]})
        elif ya * yb < 0.0:
            t = ya / (ya - yb)
            p = math.exp(math.log(a[param]) + t * (math.log(b[param]) - math.log(a[param])))
            out.append({"x": a[x] + t * (b[x] - a[x]), "param": p})
    if points and points[-1][y] == target:
        out.append({"x": points[-1][x], "param": points[-1][param]})
    return out


def _sweep_points(pairs: list[tuple[float, dict[str, Any]]], paper: dict[str, float], xkey: str,
                  param: str) -> dict[str, Any]:
    pts = []
    for v, pm in pairs:
        pts.append({param: v, **{k: pm[k] for k in ("energy", "delay", "edp", "r", "s", "f", "g", "energy_rule")},
                    "pim_energy_pj": pm["pim"]["energy_pj"], "digital_energy_pj": pm["digital"]["energy_pj"],
                    "pim_latency_ps": pm["pim"]["latency_ps"], "digital_latency_ps": pm["digital"]["latency_ps"],
                    "pim_l1_time_ps": pm["pim"]["l1_time_ps"], "digital_l1_time_ps": pm["digital"]["l1_time_ps"]})
    pts.sort(key=lambda p: p[xkey])
    reach = {k: crossings(pts, xkey, k, paper[k], param) for k in ("energy", "delay", "edp")}
    return {"x": xkey, "param": param, "points": pts, "paper_met_at": reach}


# --------------------------------------------------------------------------------------- study


def _trace_info(t: Trace) -> dict[str, Any]:
    wl = _workload(t.path)
    return asdict(t) | {"name": t.name, "label": t.label, "time_steps": wl.time_steps, "samples": wl.samples,
                        "input_shape": [int(x) for x in wl.input_shape],
                        "description": str(wl.dataset), "model": wl.model, "layers": [L.name for L in wl.layers]}


def compute(traces: list[Trace], sweep_traces: list[Trace], sweeps: Sweeps = Sweeps(), jobs: int = 1) -> Study:
    """Run every simulation of the study and derive its figures (no files written)."""
    paper = paper_figures()
    macro = resolved_macro()
    st = Study(paper=paper, sweeps={k: list(v) for k, v in asdict(sweeps).items()},
               traces=[_trace_info(t) for t in traces], pim_macro=macro,
               sweep_traces=[t.name for t in sweep_traces])
    tasks = [(chip, t.path, base_sets(chip, acc)) for t in traces for acc in ACCOUNTINGS for chip in CHIPS]
    for t in sweep_traces:
        tasks += [(chip, t.path, mac_sets(chip, v)) for v in sweeps.mac_pj for chip in CHIPS]
        tasks += [("pim", t.path, pim_scale_sets(v, macro)) for v in sweeps.pim_scale]
        tasks += [("pim", t.path, t_sense_sets(v)) for v in sweeps.t_sense_ns]
    run = Runner(jobs)
    run.run(tasks)

    for t in traces:
        st.baselines[t.name] = baseline_metrics(t.path)
        st.chips[t.name] = {acc: pair_metrics(run("pim", t.path, base_sets("pim", acc)),
                                              run("digital", t.path, base_sets("digital", acc)))
                            for acc in ACCOUNTINGS}
    for fam in [*sorted({t.family for t in traces}), None]:
        for acc in ACCOUNTINGS:
            st.means.append(mean_over_datasets(st.chips, traces, fam, acc))
    for t in sweep_traces:
        dig = run("digital", t.path, base_sets("digital", "once"))
        st.sweep_results[t.name] = {
            "first_layer_share": _sweep_points(
                [(v, pair_metrics(run("pim", t.path, mac_sets("pim", v)),
                                  run("digital", t.path, mac_sets("digital", v)))) for v in sweeps.mac_pj],
                paper, "f", "mac_pj"),
            "pim_energy_ratio": _sweep_points(
                [(v, pair_metrics(run("pim", t.path, pim_scale_sets(v, macro)), dig)) for v in sweeps.pim_scale],
                paper, "r", "pim_scale"),
            "delay": _sweep_points(
                [(v, pair_metrics(run("pim", t.path, t_sense_sets(v)), dig)) for v in sweeps.t_sense_ns],
                paper, "s", "t_sense_ns"),
        }
    return st


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write a file via a temporary file in the same folder and os.replace (never a half-written file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the results are ordinary repository files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_results(st: Study, out: Path) -> list[Path]:
    """results.json, README.md and the plots into `out`; the paths written."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # render_ace_snn.py sits beside this script
    import render_ace_snn as render

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(asdict(st), indent=1, sort_keys=True) + "\n")
    plots = render.plots(st, out, write_atomic)
    write_atomic(out / "README.md", render.readme(st, [p.name for p in plots]))
    return [out / "results.json", out / "README.md", *plots]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE), help="folder for the results (default: this script's)")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="simulations run in parallel")
    ap.add_argument("--sweep-all", action="store_true", help="sweep every trace, not only the first dataset's")
    args = ap.parse_args()
    traces = find_traces()
    if not traces:
        raise SystemExit("no workloads/hsi_<dataset>_<3d|hybrid>.npz trace found")
    first = traces[0].dataset
    sweep_traces = traces if args.sweep_all else [t for t in traces if t.dataset == first]
    st = compute(traces, sweep_traces, Sweeps(), jobs=args.jobs)
    for t in traces:
        b, c = st.baselines[t.name], st.chips[t.name]
        print(f"{t.name:16s} SNN vs FP32 CNN {b['snn_vs_fp32']:.2f}x, vs 6-bit {b['snn_vs_6bit']:.3f}x; "
              + "; ".join(f"{acc}: E {100 * c[acc]['energy']:+.1f} %, D {100 * c[acc]['delay']:+.1f} %, "
                          f"EDP {100 * c[acc]['edp']:+.1f} %" for acc in ACCOUNTINGS), flush=True)
    for p in write_results(st, Path(args.out)):
        print("wrote", p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
