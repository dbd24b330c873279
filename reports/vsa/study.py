"""Reproduction study of the VSA accelerator (Lien, Hsu, Chang, ISCAS 2021: binary-weight SNN,
multi-bit encoding layer, 8 time steps, two-layer fusion; 25.9 TOPS/W on MNIST and CIFAR-10).

    python reports/vsa/study.py            # regenerates results.md, results.csv and the plots here

Every figure is simulated on hwconfigs/vsa.yaml (technology table vsa_28nm) replaying the
committed traces workloads/vsa_mnist.npz and workloads/vsa_cifar10.npz, or traces synthesized
here with the same generator for the time-step sweep.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PAPER_TOPS_W = 25.9
WORKLOADS = {"MNIST": "vsa_mnist", "CIFAR-10": "vsa_cifar10"}
WIDTHS = (8, 16, 32, 64, 128, 256)
STEPS = (1, 2, 4, 8)
BUFFERS = ((64, 32), (128, 128), (512, 128), (512, 512))  # (weight SRAM, spike SRAM) in KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE), help="folder for the results")
    ap.add_argument("--samples", type=int, default=2, help="photos per synthesized trace (time-step sweep)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from snnsim import load_hardware, load_workload, simulate
    from snnsim.workload.synth import synthesize

    hw_yaml = ROOT / "hwconfigs" / "vsa.yaml"
    rows: list[dict] = []

    def run(label: str, wl, sets: list[str], **extra) -> dict:
        # grey MNIST frames come from a monochrome array; vsa.yaml's sensor is Bayer, for CIFAR-10
        if wl.input_shape[0] == 1:
            sets = ["sensor.photodiodes_per_pixel=1", *sets]
        rep = simulate(load_hardware(hw_yaml, sets), wl)
        s = rep.summary
        ops = s["operations"]
        row = {
            "study": label, "workload": wl.model, "T": wl.time_steps, "settings": " ".join(sets) or "(vsa.yaml)",
            "tops_per_w_effective": ops["tops_per_w_effective"], "tops_per_w_dense": ops["tops_per_w_dense"],
            "core_energy_uj": (s["energy"]["by_component_pj_per_frame"]["core"]
                               + s["energy"]["by_component_pj_per_frame"]["dram"]) / 1e6,
            "core_cycles": ops["core_cycles_per_frame"], "memory_stall_cycles": ops["memory_stall_cycles_per_frame"],
            "dram_bits": ops["dram_bits_per_frame"],
            "spike_sram_bits": rep.total("core", "spike_read_bits") / s["frames"]
            + rep.total("core", "spike_write_bits") / s["frames"],
            "line_buffer_bits": rep.total("core", "line_buffer_bits") / s["frames"],
            "fusion_saved_bits": ops["fusion_saved_bits_per_frame"],
            "latency_us": s["delay"]["latency_ps_mean"] / 1e6,
            "synaptic_ops": ops["synaptic_ops_per_frame"], "spike_rate": s["activity"]["spike_rate"],
            **extra,
        }
        row["_report"] = rep
        rows.append(row)
        return row

    traces = {name: load_workload(ROOT / "workloads" / f"{stem}.npz") for name, stem in WORKLOADS.items()}
    for name, wl in traces.items():
        for flow in ("gather", "scatter"):
            run("tops", wl, [f"core.dataflow={flow}"], dataset=name, dataflow=flow)
        for fusion in ("none", "two_layer"):
            run("fusion", wl, [f"core.fusion={fusion}"], dataset=name, fusion=fusion)
        for wk, sk in BUFFERS:
            run("buffers", wl, [f"core.weight_sram_kib={wk}", f"core.spike_sram_kib={sk}"], dataset=name,
                weight_kib=wk, spike_kib=sk)
        for v in WIDTHS:
            run("width", wl, [f"core.vector_width={v}"], dataset=name, vector_width=v)
        for t in STEPS:
            syn = synthesize(WORKLOADS[name], samples=args.samples, time_steps=t, seed=0, target_rate=0.1)
            run("steps", syn, [], dataset=name, steps=t)
        print(f"{name}: done", flush=True)

    fields = sorted({k for r in rows for k in r if not k.startswith("_")},
                    key=lambda k: (k not in ("study", "dataset", "workload", "T", "settings"), k))
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if not k.startswith("_")})
    _plots(rows, out)
    _markdown(rows, out, traces)
    return 0


def _sel(rows, study, dataset):
    return [r for r in rows if r["study"] == study and r["dataset"] == dataset]


def _plots(rows, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, name in enumerate(WORKLOADS):
        sel = _sel(rows, "tops", name)
        for j, r in enumerate(sel):
            ax[0].bar(i * 3 + j, r["tops_per_w_effective"], color=f"C{j}", label=f"{r['dataflow']}, effective" if i == 0 else None)
            ax[0].bar(i * 3 + j, r["tops_per_w_dense"], color=f"C{j}", alpha=0.3, hatch="//",
                      label=f"{r['dataflow']}, dense-equivalent" if i == 0 else None)
    ax[0].axhline(PAPER_TOPS_W, color="k", ls="--", label=f"paper: {PAPER_TOPS_W} TOPS/W")
    ax[0].set_xticks([0.5, 3.5], list(WORKLOADS))
    ax[0].set(ylabel="TOPS/W (core + DRAM)", title="Energy efficiency, T = 8", yscale="log")
    ax[0].legend(fontsize=7)
    for k, name in enumerate(WORKLOADS):
        sel = _sel(rows, "fusion", name)
        keys = ("dram_bits", "spike_sram_bits", "line_buffer_bits")
        for j, r in enumerate(sel):
            ax[1].bar([k * 4 + x + 0.4 * j for x in range(3)], [r[kk] for kk in keys], 0.4,
                      color=f"C{j}", label=f"fusion {r['fusion']}" if k == 0 else None)
    ax[1].set_xticks([x + 0.2 + 4 * k for k in range(2) for x in range(3)],
                     [f"{n}\n{lbl}" for n in WORKLOADS for lbl in ("DRAM", "spike SRAM", "line buffer")], fontsize=7)
    ax[1].set(ylabel="bits per frame", title="Memory traffic with and without two-layer fusion", yscale="log")
    ax[1].legend(fontsize=8)
    for k, name in enumerate(WORKLOADS):
        sel = _sel(rows, "width", name)
        ax[2].plot([r["vector_width"] for r in sel], [r["core_cycles"] for r in sel], "o-", color=f"C{k}",
                   label=f"{name}: vs vector width (T=8)")
        st = _sel(rows, "steps", name)
        ax2 = ax[2]
        ax2.plot([r["steps"] * 32 for r in st], [r["core_cycles"] for r in st], "s--", color=f"C{k}", alpha=0.6,
                 label=f"{name}: vs T (x-axis = 32 T, width 32)")
    ax[2].set(xscale="log", yscale="log", xlabel="vector width (or 32 x time steps)", ylabel="core cycles per frame",
              title="Cycles against vector width and time steps")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "vsa_study.png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def _markdown(rows, out: Path, traces) -> None:
    rep = rows[0]["_report"]
    src = rep.meta["energy_sources"]
    L = ["# VSA reproduction: TOPS/W, fusion, vector width and time steps", "",
         "Regenerate: `python reports/vsa/study.py`. Chip: `hwconfigs/vsa.yaml` (technology `vsa_28nm`); "
         "traces: `workloads/vsa_mnist.npz`, `workloads/vsa_cifar10.npz` (untrained binary networks with "
         "calibrated activity over real inputs; see workloads/README.md). The grey MNIST frames come from a "
         "monochrome array (`--set sensor.photodiodes_per_pixel=1`), the CIFAR-10 photos from the chip's Bayer "
         "array: the sensor's colour model must match the trace's input channels.", "",
         "## What an op is", "",
         "- **effective**: 2 ops per synaptic operation the core actually performs (one accumulate of a binary",
         "  weight into a membrane, for each input spike and each output it reaches) and 2 per MAC of the",
         "  multi-bit encoding layer; zero inputs cost nothing and count nothing.",
         "- **dense-equivalent**: 2 ops per MAC of the same network run densely (every input, spiking or not),",
         "  at every time step: the convention of accelerator papers that compare with ANN hardware.",
         "- TOPS/W = ops per frame / (core + DRAM energy per frame); the sensor and the link are excluded, as a",
         "  chip paper reports its processor alone.", "",
         f"## TOPS/W against the paper's {PAPER_TOPS_W}", "",
         "| dataset | dataflow | spike rate | effective TOPS/W | dense-equivalent TOPS/W | core+DRAM energy (uJ/frame) | latency (us) |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for name in WORKLOADS:
        for r in _sel(rows, "tops", name):
            L.append(f"| {name} | {r['dataflow']} | {r['spike_rate']:.3f} | {r['tops_per_w_effective']:.2f} | "
                     f"{r['tops_per_w_dense']:.2f} | {r['core_energy_uj']:.3f} | {r['latency_us']:.1f} |")
    L += ["", "## Two-layer fusion and memory traffic (bits per frame)", "",
          "| dataset | fusion | DRAM | spike SRAM | line buffer | saved by fusion | core+DRAM energy (uJ) | cycles |",
          "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in WORKLOADS:
        for r in _sel(rows, "fusion", name):
            L.append(f"| {name} | {r['fusion']} | {r['dram_bits']:,.0f} | {r['spike_sram_bits']:,.0f} | "
                     f"{r['line_buffer_bits']:,.0f} | {r['fusion_saved_bits']:,.0f} | {r['core_energy_uj']:.3f} | "
                     f"{r['core_cycles']:,.0f} |")
    L += ["", "## Buffer capacities: what stays on chip", "",
          "| dataset | weight SRAM (KiB) | spike SRAM (KiB) | DRAM bits | spike maps in DRAM | weights resident | "
          "effective TOPS/W | dense-equivalent TOPS/W |", "|---|---:|---:|---:|---|---|---:|---:|"]
    for name in WORKLOADS:
        for r in _sel(rows, "buffers", name):
            core = r["_report"].meta["core"]
            L.append(f"| {name} | {r['weight_kib']} | {r['spike_kib']} | {r['dram_bits']:,.0f} | "
                     f"{', '.join(core['spike_maps_in_dram']) or '-'} | {core['weights_resident']} | "
                     f"{r['tops_per_w_effective']:.2f} | {r['tops_per_w_dense']:.2f} |")
    L += ["", "With the weights resident, DRAM is read for the first frame only; the figures above are means over",
          "the trace's frames, so the first frame's load is amortised over them."]
    fused = rows[0]["_report"].meta["core"]
    L += ["", f"Pairs fused on the first trace: {fused['fused_pairs']}; refused: {fused['fusion_refused']}.", "",
          "## Cycles against vector width (T = 8) and time steps (width 32)", "",
          "| dataset | vector width | core cycles | memory stall cycles | latency (us) |", "|---|---:|---:|---:|---:|"]
    for name in WORKLOADS:
        for r in _sel(rows, "width", name):
            L.append(f"| {name} | {r['vector_width']} | {r['core_cycles']:,.0f} | {r['memory_stall_cycles']:,.0f} | "
                     f"{r['latency_us']:.1f} |")
    L += ["", "| dataset | T | spike rate | synaptic ops | core cycles | effective TOPS/W |", "|---|---:|---:|---:|---:|---:|"]
    for name in WORKLOADS:
        for r in _sel(rows, "steps", name):
            L.append(f"| {name} | {r['steps']} | {r['spike_rate']:.3f} | {r['synaptic_ops']:,.0f} | "
                     f"{r['core_cycles']:,.0f} | {r['tops_per_w_effective']:.2f} |")
    L += ["", "## Energy entries and their sources", "", "| entry | value | source |", "|---|---:|---|"]
    for k, e in sorted(src.items()):
        L.append(f"| {k} | {e['value']:g} {e['unit']} | {e['source']} |")
    cif = {r["dataflow"]: r for r in _sel(rows, "tops", "CIFAR-10")}
    best = max((r for r in rows if r["study"] == "buffers" and r["dataset"] == "CIFAR-10"),
               key=lambda r: r["tops_per_w_dense"])
    fz = {r["fusion"]: r for r in _sel(rows, "fusion", "CIFAR-10")}
    e = cif["gather"]["_report"].summary["energy"]["by_action_pj_per_frame"]
    dram_share = e.get("dram.transfer", 0.0) / max(1e-9, sum(v for k, v in e.items() if k.startswith(("core.", "dram."))))
    L += ["", "## How far from the paper, and why", "",
          "- The paper's node, clock, PE array, buffer sizes and op-counting convention are not public; our",
          "  energies are 45 nm figures scaled to 28 nm (first order). The dense-equivalent figure is the one",
          "  comparable to the paper's if, as is common, it counts the dense network's operations.",
          f"- On CIFAR-10 with vsa.yaml (gather) we get {cif['gather']['tops_per_w_effective']:.2f} effective and "
          f"{cif['gather']['tops_per_w_dense']:.2f} dense-equivalent TOPS/W against {PAPER_TOPS_W}.",
          f"  DRAM is {100 * dram_share:.0f}% of the core+DRAM energy: with 64 KiB of weight SRAM the weights are"
          " reloaded every frame",
          f"  and some spike maps spill. With {best['weight_kib']} KiB of weights and {best['spike_kib']} KiB of spike"
          f" SRAM the dense-equivalent figure reaches {best['tops_per_w_dense']:.2f} TOPS/W: on-chip capacity is",
          "  the assumption that moves our number most towards the paper's.",
          f"- The dataflow is the next lever: `scatter` (every synaptic update a 16-bit membrane read and write in"
          f" SRAM) gives {cif['scatter']['tops_per_w_dense']:.2f} dense-equivalent TOPS/W, `gather` (partial sums"
          f" in PE registers) {cif['gather']['tops_per_w_dense']:.2f}.",
          "- Spike activity sets the effective/dense ratio: the dense-equivalent efficiency grows as firing",
          "  falls, the effective one does not; more time steps amortise the per-frame weight load.",
          f"- Two-layer fusion cuts CIFAR-10's DRAM traffic from {fz['none']['dram_bits']:,.0f} to "
          f"{fz['two_layer']['dram_bits']:,.0f} bits per frame and its spike-SRAM traffic from "
          f"{fz['none']['spike_sram_bits']:,.0f} to {fz['two_layer']['spike_sram_bits']:,.0f}; cycles do not change"
          " (one PE array runs both layers).",
          "- Wider vectors cut cycles until the per-pass fill, the fire passes of narrow layers and the DRAM time",
          "  bind; cycles grow roughly linearly with time steps.",
          "", "![study](vsa_study.png)", ""]
    (out / "results.md").write_text("\n".join(L))


if __name__ == "__main__":
    sys.exit(main())
