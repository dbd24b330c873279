"""Reproduction study of the in-sensor SNN paper (Datta et al., ICASSP 2023): bandwidth reduction
of the P2M sensor for C_o = 8, 16, 32, 64 at T = 1 on the ResNet-18 workload, against the closed
form 48 s^2 / (C_o T), and total energy of P2M against the conventional baseline (paper: 2.32x).

    python reports/p2m/study.py            # regenerates results.md, results.csv and the plots here

Every figure comes from simulating a synthesized ResNet-18 trace (real photos, untrained binary
network, calibrated spike rates) on hwconfigs/p2m.yaml and hwconfigs/baseline.yaml.
"""

from __future__ import annotations

import argparse
import csv
import sys
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHANNELS = (8, 16, 32, 64)
PAPER_BR = "12-96x"
PAPER_ENERGY_RATIO = 2.32
SRAM_PJ_PER_BIT = 0.15625  # Horowitz ISSCC 2014: 10 pJ per 64-bit read of an 8 KB SRAM


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2, help="photos per trace")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE), help="folder for the results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from snnsim import load_hardware, simulate
    from snnsim.workload.synth import synthesize

    p2m_yaml, base_yaml = ROOT / "hwconfigs" / "p2m.yaml", ROOT / "hwconfigs" / "baseline.yaml"
    rows = []
    for c_o in CHANNELS:
        wl = synthesize("resnet18", samples=args.samples, time_steps=1, out_channels=c_o, seed=args.seed,
                        target_rate=0.1, first_layer_rate=0.15)
        p2m = simulate(load_hardware(p2m_yaml, [f"sensor.p2m.out_channels={c_o}"]), wl)
        base = simulate(load_hardware(base_yaml), wl)
        sram = [f"technology.overrides.core.sram_{x}_bit={SRAM_PJ_PER_BIT}" for x in ("read", "write")]
        p2m_sram = simulate(load_hardware(p2m_yaml, [f"sensor.p2m.out_channels={c_o}", *sram]), wl)
        base_sram = simulate(load_hardware(base_yaml, sram), wl)
        aer = simulate(load_hardware(p2m_yaml, [f"sensor.p2m.out_channels={c_o}", "link.encoding=aer"]), wl)
        s = wl.layers[0].stride[0]
        closed = Fraction(48 * s * s, c_o * wl.time_steps)
        bw = p2m.summary["bandwidth"]
        measured = Fraction(int(bw["conventional_payload_bits_per_frame"]), int(round(bw["payload_bits_per_frame"])))
        if measured != closed:
            raise SystemExit(f"payload reduction {measured} != closed form {closed} for C_o={c_o}")
        e_p, e_b = p2m.summary["energy"], base.summary["energy"]
        rows.append({
            "C_o": c_o, "T": wl.time_steps,
            "payload_bits_p2m": int(bw["payload_bits_per_frame"]),
            "payload_bits_conventional": int(bw["conventional_payload_bits_per_frame"]),
            "reduction_payload": float(measured), "closed_form": float(closed),
            "wire_bits_p2m": int(bw["wire_bits_per_frame"]),
            "wire_bits_conventional": int(bw["conventional_wire_bits_per_frame"]),
            "reduction_wire": bw["reduction_wire"],
            "reduction_wire_aer": aer.summary["bandwidth"]["reduction_wire"],
            "layer0_spike_rate": p2m.summary["layers"][0]["spike_rate"],
            "energy_p2m_uj": e_p["total_pj_per_frame"] / 1e6,
            "energy_baseline_uj": e_b["total_pj_per_frame"] / 1e6,
            "energy_ratio": e_b["total_pj_per_frame"] / e_p["total_pj_per_frame"],
            "energy_ratio_with_sram": base_sram.summary["energy"]["total_pj_per_frame"]
            / p2m_sram.summary["energy"]["total_pj_per_frame"],
            "energy_p2m_with_sram_uj": p2m_sram.summary["energy"]["total_pj_per_frame"] / 1e6,
            "energy_baseline_with_sram_uj": base_sram.summary["energy"]["total_pj_per_frame"] / 1e6,
            "latency_p2m_us": p2m.summary["delay"]["latency_ps_mean"] / 1e6,
            "latency_baseline_us": base.summary["delay"]["latency_ps_mean"] / 1e6,
            "edp_ratio": base.summary["edp_j_s"] / p2m.summary["edp_j_s"],
            "_p2m": p2m, "_base": base,
        })
        print(f"C_o={c_o:3d}: payload reduction {float(measured):6.2f}x (closed form {float(closed):g}), "
              f"wire {bw['reduction_wire']:.2f}x, energy baseline/P2M {rows[-1]['energy_ratio']:.2f}x", flush=True)

    fields = [k for k in rows[0] if not k.startswith("_")]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in fields})
    _plots(rows, out)
    _markdown(rows, out, args)
    return 0


def _plots(rows, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = [r["C_o"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(c, [r["closed_form"] for r in rows], "k--", label="closed form 48 s²/(C_o T)")
    ax[0].plot(c, [r["reduction_payload"] for r in rows], "o", label="simulated, payload")
    ax[0].plot(c, [r["reduction_wire"] for r in rows], "s", label="simulated, on the wire (bitmap)")
    ax[0].plot(c, [r["reduction_wire_aer"] for r in rows], "^", label="simulated, on the wire (AER)")
    ax[0].set(xscale="log", yscale="log", xlabel="in-pixel output channels C_o", ylabel="bandwidth reduction (x)",
              title="Sensor-to-processor bandwidth reduction, T = 1")
    ax[0].set_xticks(c, [str(x) for x in c])
    ax[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax[0].legend(fontsize=8)
    comps = ("sensor", "link", "core", "dram")
    width = 0.38
    for i, r in enumerate(rows):
        for j, (key, _label) in enumerate((("_base", "baseline"), ("_p2m", "P2M"))):
            e = r[key].summary["energy"]["by_component_pj_per_frame"]
            bottom = 0.0
            for k, comp in enumerate(comps):
                v = e[comp] / 1e6
                ax[1].bar(i + (j - 0.5) * width, v, width, bottom=bottom, color=f"C{k}",
                          label=comp if i == 0 and j == 0 else None, hatch="//" if j == 0 else None,
                          edgecolor="k", linewidth=0.3)
                bottom += v
    ax[1].set_xticks(range(len(rows)), [f"C_o={r['C_o']}\n(base | P2M)" for r in rows], fontsize=8)
    ax[1].set(ylabel="energy per frame (uJ)", title="Energy per frame: baseline (hatched) vs P2M")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "p2m_study.png", dpi=120, metadata={"Software": None})
    plt.close(fig)


def _markdown(rows, out: Path, args) -> None:
    p64 = next(r for r in rows if r["C_o"] == 64)
    e_p = p64["_p2m"].summary["energy"]["by_action_pj_per_frame"]
    e_b = p64["_base"].summary["energy"]["by_action_pj_per_frame"]
    src = p64["_p2m"].meta["energy_sources"] | p64["_base"].meta["energy_sources"]
    lines = [
        "# P2M reproduction: bandwidth and energy",
        "",
        "Regenerate: `python reports/p2m/study.py` (ResNet-18 traces synthesized with seed "
        f"{args.seed}, {args.samples} photos each, T = 1; hwconfigs/p2m.yaml and hwconfigs/baseline.yaml). "
        "The traces are an untrained network with calibrated spike rates over real photos: the "
        "bandwidth figures depend only on shapes, the energy figures on the activity too.",
        "",
        "## Bandwidth reduction (paper: " + PAPER_BR + ")",
        "",
        "| C_o | payload bits/frame (P2M) | conventional (12-bit Bayer) | reduction, payload | closed form 48 s²/(C_o T) | reduction on the wire (bitmap) | on the wire (AER) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['C_o']} | {r['payload_bits_p2m']:,} | {r['payload_bits_conventional']:,} | "
                     f"{r['reduction_payload']:g}x | {r['closed_form']:g}x | {r['reduction_wire']:.2f}x | "
                     f"{r['reduction_wire_aer']:.2f}x |")
    lines += [
        "",
        "The payload reduction equals the closed form exactly (the script stops otherwise). On the wire,",
        "each CSI-2 line adds a 6-byte header and footer and each frame 8 bytes of FS/FE; a P2M row packet",
        "is shorter than a RAW12 line, so the overhead weighs more and the wire-level reduction is a",
        "little lower. AER sends an address per spike instead of a bitmap: at these spike rates it is",
        "larger than the bitmap (a bitmap wins above ~1/address-bits firing).",
        "",
        f"## Total energy (paper: {PAPER_ENERGY_RATIO}x lower with P2M)",
        "",
        "With the paper's accounting (compute, sensing, ADC and link energy; SRAM traffic not charged):",
        "",
        "| C_o | baseline (uJ/frame) | P2M (uJ/frame) | baseline / P2M | EDP baseline / P2M | latency baseline / P2M (us) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['C_o']} | {r['energy_baseline_uj']:.1f} | {r['energy_p2m_uj']:.1f} | "
                     f"{r['energy_ratio']:.2f}x | {r['edp_ratio']:.2f}x | "
                     f"{r['latency_baseline_us']:.0f} / {r['latency_p2m_us']:.0f} |")
    lines += ["", f"Charging the core's SRAM traffic too ({SRAM_PJ_PER_BIT} pJ/bit read or written, Horowitz 45 nm; "
              "weights, membranes and spike maps, counted per access by the core model):", "",
              "| C_o | baseline (uJ/frame) | P2M (uJ/frame) | baseline / P2M |", "|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['C_o']} | {r['energy_baseline_with_sram_uj']:.1f} | {r['energy_p2m_with_sram_uj']:.1f} | "
                     f"{r['energy_ratio_with_sram']:.2f}x |")
    lines += ["", "Energy per frame by action at C_o = 64 (uJ):", "",
              "| action | baseline | P2M |", "|---|---:|---:|"]
    for k in sorted(set(e_p) | set(e_b)):
        if e_p.get(k, 0) or e_b.get(k, 0):
            lines.append(f"| {k} | {e_b.get(k, 0) / 1e6:.2f} | {e_p.get(k, 0) / 1e6:.2f} |")
    lines += ["", "## Energy assumptions and their sources", "",
              "| entry | value | per | source |", "|---|---:|---|---|"]
    for name, e in sorted(src.items()):
        lines.append(f"| {name} | {e['value']:g} {e['unit']} | {e['per']} | {e['source']} |")
    lines += [
        "",
        "## How far from the paper, and why",
        "",
        "- Bandwidth: the paper's 12-96x is reproduced exactly by the payload (96/48/24/12x for",
        "  C_o = 8/16/32/64 at T = 1), by construction of the 4x4 stride-4 in-pixel layer; the wire-level",
        "  figures are our addition.",
        "- Energy: the ratio depends on the per-unit energies, which are [R, low] placeholders recalled",
        "  from the P2M paper (sensing, ADC, link per value, MAdd), and on the processor's energy for the",
        "  remaining layers, which both we and the paper model as AC/MAC counts. Charged to the core, the",
        "  SRAM traffic for weights and membranes (which the paper's model omits) is nearly the same for",
        "  both chips and dilutes the ratio, as the second table shows. The link at 75 pJ/bit (derived",
        "  from 900 pJ per 12-bit value) dominates the baseline. The ratio falls as C_o grows because",
        "  the P2M sensor converts and sends more. Change any entry with",
        "  `--set technology.overrides.<entry>=<value>` to see its effect.",
        "",
        "![study](p2m_study.png)",
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
