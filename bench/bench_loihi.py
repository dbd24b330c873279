"""Benchmark: a converted CNN replayed on the Loihi-class target, beside the ResNet-18 P2M frame.

    python bench/bench_loihi.py [--repeats 7]

Part 1: warm ``simulate`` of one sample (median of ``--repeats``) for the converted CNNs of
``workloads/`` (``nxtf_mnist_T100``, ``cnn_photos_T128``, ``lenet_digits_T128``) on
``hwconfigs/loihi.yaml``, and of the ResNet-18 P2M frame on ``hwconfigs/p2m.yaml``, in this
process, so the times share the machine's noise. The issue's goal: under a second per sample
at T = 100.

Part 2, what the cost grows with: the nxtf_mnist sample (a) as recorded, (b) with 7 of every 8
spikes removed (1/8 the spikes and messages), (c) with 4x the time steps, the added steps silent
(idle steps), (d) mapped onto 4x as many cores (``max_compartments`` / 4: more, emptier cores).
The replay (spikes and messages) should scale with (b); (c) and (d) add only per-step and per-core
bookkeeping, not replay work.

Timings vary 30-40% between runs on shared machines: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "simulator"))

from snnsim.hwconfig import load_hardware  # noqa: E402
from snnsim.simulation import simulate  # noqa: E402
from snnsim.workload.trace import load_workload  # noqa: E402


def one_sample(wl, steps: int | None = None, keep_every: int = 1):
    """The first sample of a workload; optionally more (silent) steps, or fewer spikes."""
    packed = {}
    for name, a in wl.packed_spikes.items():
        x = np.unpackbits(a[:1], axis=-1)
        if keep_every > 1:
            flat = x.reshape(-1)
            on = np.flatnonzero(flat)
            flat[on[np.arange(on.size) % keep_every != 0]] = 0
        if steps is not None:
            pad = np.zeros((1, steps - x.shape[1], x.shape[2]), np.uint8)
            x = np.concatenate([x, pad], axis=1)
        p = np.packbits(x, axis=-1)[..., :a.shape[-1]]
        p.setflags(write=False)
        packed[name] = p
    return dataclasses.replace(wl, input=wl.input[:1], packed_spikes=packed, time_steps=steps or wl.time_steps,
                               events={k: v[:1] for k, v in wl.events.items()})


def timed(hw, wl, repeats: int) -> tuple[float, object]:
    rep = simulate(hw, wl)  # warm: kernels compiled, the mapping derived
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        rep = simulate(hw, wl)
        times.append(time.perf_counter() - t)
    return statistics.median(times), rep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    loihi = load_hardware(ROOT / "hwconfigs/loihi.yaml")
    print("Part 1: warm simulate of one sample (median of", args.repeats, "runs)")
    rows = []
    for name in ("nxtf_mnist_T100", "cnn_photos_T128", "lenet_digits_T128"):
        path = ROOT / "workloads" / f"{name}.npz"
        if not path.exists():
            print(f"  {name}: missing ({path.name}); run workloads/train_conversion.py")
            continue
        wl = one_sample(load_workload(path))
        sec, rep = timed(loihi, wl, args.repeats)
        spikes = rep.summary["activity"]["spikes_per_frame"]
        msgs = rep.summary["neuromorphic"]["messages_per_frame"]
        rows.append((f"loihi + {name}", sec, spikes, msgs, rep.summary["neuromorphic"]["cores_used"]))
    p2m = load_hardware(ROOT / "hwconfigs/p2m.yaml")
    sec, rep = timed(p2m, one_sample(load_workload(ROOT / "workloads/resnet_imagenet.npz")), args.repeats)
    rows.append(("p2m + resnet_imagenet (1 frame)", sec, rep.summary["activity"]["spikes_per_frame"], 0, 0))
    print(f"  {'run':<34} {'ms':>9} {'spikes':>12} {'messages':>12} {'cores':>6}")
    for name, sec, spikes, msgs, cores in rows:
        print(f"  {name:<34} {sec * 1e3:9.2f} {spikes:12,.0f} {msgs:12,.0f} {cores:6}")
    path = ROOT / "workloads/nxtf_mnist_T100.npz"
    if not path.exists():
        return 0
    base = load_workload(path)
    print("\nPart 2: what the cost of the nxtf_mnist sample grows with")
    cases = [("as recorded", loihi, one_sample(base)),
             ("1/8 of the spikes", loihi, one_sample(base, keep_every=8)),
             ("4x steps, the extra ones silent", loihi, one_sample(base, steps=4 * base.time_steps)),
             ("4x cores (max_compartments / 4)",
              load_hardware(ROOT / "hwconfigs/loihi.yaml", ["loihi.max_compartments=256"]), one_sample(base))]
    ref = None
    for label, hw, wl in cases:
        sec, rep = timed(hw, wl, args.repeats)
        ref = ref or sec
        print(f"  {label:<34} {sec * 1e3:8.2f} ms ({sec / ref:5.2f}x)  spikes {rep.summary['activity']['spikes_per_frame']:>10,.0f}"
              f"  messages {rep.summary['neuromorphic']['messages_per_frame']:>10,.0f}"
              f"  cores {rep.summary['neuromorphic']['cores_used']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
