"""Reproduction study of Chandarana, Mohammadi, Seekings, Zand, "Energy-Efficient Deployment of
Machine Learning Workloads on Neuromorphic Hardware" (arXiv 2210.05006, 2022): pre-trained CNNs
converted to SNNs run on Intel's Loihi, which draws up to 27x less power and 5x less energy than
the Intel Neural Compute Stick 2 (the energy/power ratio implies ~5.4x longer inferences on
Loihi; Mohammadi et al. 2022 report up to 20.6x / 4.1x, ~5.0x, on ASL gestures).

    python reports/loihi_vs_ncs2/study.py     # regenerates README.md, results.json and the plots here

The paper's workflow on data we have offline: the ANNs of workloads/train_conversion.py (a
LeNet-class CNN on scikit-learn digits, the NxTF MNIST tutorial network, a deeper CNN on
scikit-image photos), trained, converted with snnsim.export.from_ann (rate-coded input, reset by
subtraction, percentile normalisation) at several T; every trace `workloads/<net>_T<T>.npz`
present is run on hwconfigs/loihi.yaml (the SNN) and hwconfigs/ncs2.yaml (the equivalent
non-spiking network: the ANN the SNN came from). Per inference (one sample):

* power = the mean power over the inference (total: static included; dynamic apart);
* energy = total energy per inference; latency = mean latency per inference;
* ratios: power and energy NCS2 / Loihi (the paper's "x less"), latency Loihi / NCS2.

The sweeps show which assumptions drive the ratios: Loihi's static power per chip, the host I/O
per sample on Loihi, the NCS2's per-request overhead and its power outside the layers' compute
(idle: 300 mW [R]; 1500 mW if the stick draws its active power for the whole request), and T (the
traces). Accuracies (ANN and SNN)
come from workloads/conversion_accuracy.json, written by the conversion.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "simulator"))

LOIHI, NCS2 = "hwconfigs/loihi.yaml", "hwconfigs/ncs2.yaml"
PAPER = {"power": 27.0, "energy": 5.0, "latency": 27.0 / 5.0}
PAPER_ASL = {"power": 20.64, "energy": 4.10, "latency": 20.64 / 4.10}
TRACE_RE = re.compile(r"(lenet_digits|nxtf_mnist|cnn_photos)_T(\d+)\.npz")
NET_NAMES = {"lenet_digits": "LeNet-class CNN, digits", "nxtf_mnist": "NxTF MNIST CNN, digits",
             "cnn_photos": "deeper CNN, skimage photos"}
SWEEPS = {  # (chip, key, values, unit): one at a time, the rest at the hwconfigs' values
    "static": ("loihi", "loihi.static_mw_per_chip", [0.0, 30.0, 60.0, 104.0, 150.0], "mW per chip"),
    "host_io": ("loihi", "loihi.t_io_sample_us", [0.0, 500.0, 1760.0, 5000.0, 10000.0], "us per sample"),
    "ncs2_request": ("ncs2", "ncs2.request_overhead_us", [0.0, 500.0, 1000.0, 2000.0, 5000.0], "us per request"),
    "ncs2_idle": ("ncs2", "ncs2.p_idle_mw", [100.0, 300.0, 750.0, 1500.0], "mW outside the layers' compute"),
}


def find_traces() -> list[tuple[str, int, Path]]:
    out = []
    for p in sorted((ROOT / "workloads").glob("*.npz")):
        m = TRACE_RE.fullmatch(p.name)
        if m:
            out.append((m.group(1), int(m.group(2)), p))
    return sorted(out, key=lambda x: (x[0], x[1]))


def figures(report: Any) -> dict[str, float]:
    s = report.summary
    lat = s["delay"]["latency_ps_mean"] * 1e-12
    total = s["energy"]["total_pj_per_frame"] * 1e-12
    dyn = s["energy"]["dynamic_pj_per_frame"] * 1e-12
    return {"latency_s": lat, "energy_j": total, "dynamic_energy_j": dyn,
            # mean power over one inference (energy / its latency): what a power meter over a run shows
            "power_w": total / lat, "dynamic_power_w": dyn / lat, "edp_js": total * lat}


def run(chip: str, trace: Path, overrides: tuple[str, ...] = ()) -> dict[str, float]:
    from snnsim.hwconfig import load_hardware
    from snnsim.simulation import simulate

    hw = load_hardware(ROOT / (LOIHI if chip == "loihi" else NCS2), list(overrides))
    rep = simulate(hw, _workload(trace))
    out = figures(rep)
    if chip == "loihi":
        nm = rep.summary["neuromorphic"]
        out.update(cores=nm["cores_used"], chips=nm["chips_used"], step_s=nm["step_ps_mean"] * 1e-12,
                   spikes=rep.summary["activity"]["spikes_per_frame"], synops=nm["synaptic_ops_per_frame"])
    return out


_WL: dict[Path, Any] = {}


def _workload(path: Path) -> Any:
    from snnsim.workload.trace import load_workload

    if path not in _WL:
        _WL[path] = load_workload(path)
    return _WL[path]


def ratios(lo: dict[str, float], nc: dict[str, float]) -> dict[str, float]:
    return {"power": nc["power_w"] / lo["power_w"], "energy": nc["energy_j"] / lo["energy_j"],
            "latency": lo["latency_s"] / nc["latency_s"], "edp": nc["edp_js"] / lo["edp_js"],
            "dynamic_power": nc["dynamic_power_w"] / lo["dynamic_power_w"],
            "dynamic_energy": nc["dynamic_energy_j"] / lo["dynamic_energy_j"]}


def compute(traces: list[tuple[str, int, Path]], sweep_on: list[tuple[str, int, Path]] | None = None,
            sweeps: dict[str, tuple] = SWEEPS) -> dict[str, Any]:
    """Every trace on both chips, and the sweeps on ``sweep_on`` (default: each net's middle T)."""
    acc_path = ROOT / "workloads" / "conversion_accuracy.json"
    accuracy = json.loads(acc_path.read_text()).get("networks", {}) if acc_path.exists() else {}
    rows = []
    for net, t, path in traces:
        lo, nc = run("loihi", path), run("ncs2", path)
        a = accuracy.get(net, {})
        rows.append({"net": net, "T": t, "trace": str(path.relative_to(ROOT)), "loihi": lo, "ncs2": nc,
                     "ratios": ratios(lo, nc), "ann_accuracy": a.get("ann_test_accuracy"),
                     "snn_accuracy": (a.get("snn_test_accuracy") or {}).get(str(t)),
                     "test_samples": a.get("test_samples")})
    if sweep_on is None:
        by_net: dict[str, list] = {}
        for tr in traces:
            by_net.setdefault(tr[0], []).append(tr)
        sweep_on = [v[len(v) // 2] for v in by_net.values()]
    sweep_rows = {}
    for name, (chip, key, values, unit) in sweeps.items():
        per = []
        for net, t, path in sweep_on:
            pts = []
            for v in values:
                lo = run("loihi", path, (f"{key}={v}",) if chip == "loihi" else ())
                nc = run("ncs2", path, (f"{key}={v}",) if chip == "ncs2" else ())
                pts.append({"value": v, "ratios": ratios(lo, nc)})
            per.append({"net": net, "T": t, "points": pts})
        sweep_rows[name] = {"chip": chip, "key": key, "unit": unit, "runs": per}
    best = {k: max(r["ratios"][k] for r in rows) if rows else None for k in ("power", "energy", "latency")}
    return {"paper": PAPER, "paper_asl": PAPER_ASL, "rows": rows, "sweeps": sweep_rows, "best": best,
            "hwconfigs": {"loihi": LOIHI, "ncs2": NCS2}}


# ------------------------------------------------------------------------------------------ output

def write_atomic(path: Path, data: str | bytes) -> None:
    """Via a temporary file in the same folder and os.replace: never a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def plots(st: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in zip(axes, ("power", "energy", "latency"),
                              ("power, NCS2 / Loihi (x)", "energy per inference, NCS2 / Loihi (x)",
                               "latency per inference, Loihi / NCS2 (x)"), strict=True):
        for net in dict.fromkeys(r["net"] for r in st["rows"]):
            rs = [r for r in st["rows"] if r["net"] == net]
            ax.plot([r["T"] for r in rs], [r["ratios"][key] for r in rs], "o-", label=NET_NAMES.get(net, net))
        ax.axhline(st["paper"][key], color="k", ls="--", lw=1, label=f"paper {st['paper'][key]:.3g}x")
        ax.axhline(1.0, color="grey", lw=0.6)
        ax.set_xscale("log", base=2)
        ts = sorted({r["T"] for r in st["rows"]})
        ax.set_xticks(ts, [str(t) for t in ts])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("time steps T")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle("Converted SNNs on the Loihi-class target against the ANNs on the NCS2-class stick")
    fig.tight_layout()
    write_atomic(out / "ratios_vs_T.png", _png(fig))
    plt.close(fig)
    names.append("ratios_vs_T.png")
    for name, sw in st["sweeps"].items():
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for ax, key in zip(axes, ("power", "energy", "latency"), strict=True):
            for r in sw["runs"]:
                ax.plot([p["value"] for p in r["points"]], [p["ratios"][key] for p in r["points"]], "o-",
                        label=f"{NET_NAMES.get(r['net'], r['net'])}, T={r['T']}")
            ax.axhline(st["paper"][key], color="k", ls="--", lw=1, label=f"paper {st['paper'][key]:.3g}x")
            ax.set_yscale("log")
            ax.set_xlabel(f"{sw['key']} ({sw['unit']})")
            ax.set_ylabel(f"{key} ratio (x)")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"Sweep of {sw['key']} ({sw['chip']}); the other chip at its hwconfig")
        fig.tight_layout()
        write_atomic(out / f"sweep_{name}.png", _png(fig))
        plt.close(fig)
        names.append(f"sweep_{name}.png")
    return names


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def readme(st: dict[str, Any], pngs: list[str]) -> str:
    lines = ["# Loihi against the NCS2: converted SNNs and their ANNs", "",
             "Generated by `python reports/loihi_vs_ncs2/study.py` (the module docstring has the definitions).",
             "Per inference of one sample; Loihi: `hwconfigs/loihi.yaml` (SANA-FE energies and timing, static power "
             "104 mW per chip used, host I/O 1.76 ms per sample); NCS2: `hwconfigs/ncs2.yaml` (USB3).", "",
             f"Paper (Chandarana et al. 2022): up to {PAPER['power']:g}x less power and {PAPER['energy']:g}x less "
             f"energy on Loihi, so ~{PAPER['latency']:.1f}x longer inferences; ASL gestures (Mohammadi et al. 2022): "
             f"{PAPER_ASL['power']:g}x / {PAPER_ASL['energy']:g}x / ~{PAPER_ASL['latency']:.1f}x.", "",
             "| network | T | ANN acc | SNN acc | Loihi cores | Loihi power | NCS2 power | power x | Loihi energy "
             "| NCS2 energy | energy x | Loihi latency | NCS2 latency | latency x (Loihi/NCS2) | dynamic energy x |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in st["rows"]:
        lo, nc, q = r["loihi"], r["ncs2"], r["ratios"]
        acc = "-" if r["ann_accuracy"] is None else f"{100 * r['ann_accuracy']:.1f} %"
        sacc = "-" if r["snn_accuracy"] is None else f"{100 * r['snn_accuracy']:.1f} %"
        lines.append(f"| {NET_NAMES.get(r['net'], r['net'])} | {r['T']} | {acc} | {sacc} | {lo['cores']} | "
                     f"{1e3 * lo['power_w']:.1f} mW | {1e3 * nc['power_w']:.0f} mW | {q['power']:.1f} | "
                     f"{1e3 * lo['energy_j']:.3f} mJ | {1e3 * nc['energy_j']:.3f} mJ | {q['energy']:.2f} | "
                     f"{1e3 * lo['latency_s']:.2f} ms | {1e3 * nc['latency_s']:.2f} ms | {q['latency']:.2f} | "
                     f"{q['dynamic_energy']:.2f} |")
    b = st["best"]
    lines += ["", f"Best ratios over these runs: power {_fmt(b['power'])}x, energy {_fmt(b['energy'])}x, latency "
              f"{_fmt(b['latency'])}x (paper: {PAPER['power']:g}x, {PAPER['energy']:g}x, ~{PAPER['latency']:.1f}x).",
              "", "## What drives the ratios (one assumption swept at a time)", ""]
    for _name, sw in st["sweeps"].items():
        lines += [f"`{sw['key']}` ({sw['unit']}, {sw['chip']}):", "",
                  "| network | T | " + " | ".join(f"{p['value']:g}" for p in sw["runs"][0]["points"]) + " |",
                  "|---|---:|" + "---:|" * len(sw["runs"][0]["points"])]
        for r in sw["runs"]:
            cells = [f"{p['ratios']['power']:.1f} / {p['ratios']['energy']:.2f} / {p['ratios']['latency']:.2f}"
                     for p in r["points"]]
            lines.append(f"| {NET_NAMES.get(r['net'], r['net'])} | {r['T']} | " + " | ".join(cells) + " |")
        lines += ["", "(power x / energy x / latency x)", ""]
    lines += ["## Reading", "",
              "* Loihi's power is its static power (104 mW per chip used, [T] Frady 2020) plus a few to a few tens "
              "of mW of dynamic power; the NCS2's is its idle power (300 mW [R]) for most of a request, because a "
              "small network's layers take a fraction of the per-request overhead. So the power ratio stays near "
              "NCS2 power / Loihi static power (2-4x here), far from 27x; with no static power on Loihi it reaches "
              "~8x, and with the stick at its active power for the whole request it grows by another ~3-4x "
              "(the sweeps above). The paper's 27x needs both: a stick near 1.5 W and a Loihi near 50 mW.",
              "* The energy ratio falls with T: Loihi's time (and so its static energy) grows with the steps, the "
              "NCS2's does not. Rate-coded conversions need T of 32-128 steps here for the SNN to reach the ANN's "
              "accuracy; the paper's 'SNN improvement techniques' cut T, which is what its 5x rests on.",
              "* The host I/O per sample (1.76 ms, the NxSDK MNIST tutorial's) is charged at Loihi's static power and "
              "adds to its latency; it lowers the energy ratio and raises the latency ratio.", ""]
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in pngs] + [""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE), help="folder for the results (default: this script's)")
    args = ap.parse_args()
    traces = find_traces()
    if not traces:
        raise SystemExit("no workloads/<net>_T<T>.npz trace found: run workloads/train_conversion.py")
    st = compute(traces)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(st, indent=1, sort_keys=True) + "\n")
    pngs = plots(st, out)
    write_atomic(out / "README.md", readme(st, pngs) + _validation_section(out))
    print((out / "README.md").read_text())
    return 0


def _validation_section(out: Path) -> str:
    """The validation rows (validation.py's table), appended when present."""
    path = out / "validation.md"
    return ("\n" + path.read_text()) if path.exists() else ""


if __name__ == "__main__":
    raise SystemExit(main())
