"""Benchmark: the ResNet-18 frame through P2M + link + core, cold and warm JIT, against the
pure-Python reference model on a small case, all measured in one run so the ratios are fair.

    python bench/bench_run.py [--trace workloads/resnet_imagenet.npz] [--repeats 5]

Prints wall times (median of repeats), events per second (spikes replayed + packets +
transactions) and the ratios. Timings vary 30-40% between runs on shared machines: compare the
ratios printed by one run, not absolute times across runs. "replay" is the sensor, link and core
models and the event-driven pipeline; "whole simulate" adds the report (records and summary).
What depends on the trace alone is derived once per trace and reused by every run on any chip:
the replay form of each spike map (bitmap words or event lists, docs/models.md), the fan-out
tables and NeuroBench's op counts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import time, sys
t0 = time.perf_counter()
from snnsim import load_hardware, load_workload, simulate
hw = load_hardware(sys.argv[1]); wl = load_workload(sys.argv[2])
t1 = time.perf_counter()
simulate(hw, wl)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _child(hw: str, trace: str, cache_dir: str) -> tuple[float, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD, hw, trace], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def events(report, wl) -> int:
    spikes = sum(int(wl.spike_counts(la.name).sum()) for la in wl.layers if la.spiking)
    packets = int(report.total("link", "packets"))
    return spikes + packets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(ROOT / "workloads" / "resnet_imagenet.npz"))
    ap.add_argument("--hwconfig", default=str(ROOT / "hwconfigs" / "p2m.yaml"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from snnsim import load_hardware, load_workload, simulate
    from snnsim.reference.components import simulate_reference

    with tempfile.TemporaryDirectory() as cache:
        cold_import, cold_sim = _child(args.hwconfig, args.trace, cache)
        warm_import, warm_sim = _child(args.hwconfig, args.trace, cache)

    hw = load_hardware(args.hwconfig)
    wl = load_workload(args.trace)
    simulate(hw, wl)  # compile in this process
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        rep = simulate(hw, wl)
        times.append(time.perf_counter() - t)
    fast = statistics.median(times)
    n_ev = events(rep, wl)

    # the small case for the reference: the first sample, with the same chip
    sys.path.insert(0, str(ROOT))
    from tests.conftest import TINY_P2M, make_tiny_workload

    # timings on a 500 ps grid: the reference ticks at the gcd of all times
    small_hw = load_hardware(TINY_P2M, ["link.gbps_per_lane=2.0", "sensor.adc_counter_clock_mhz=1000"])
    small = make_tiny_workload(samples=2, steps=4)
    simulate(small_hw, small)
    ft, rt = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        r_fast = simulate(small_hw, small)
        ft.append(time.perf_counter() - t)
        t = time.perf_counter()
        simulate_reference(small_hw, small)
        rt.append(time.perf_counter() - t)
    small_ev = events(r_fast, small)
    f_small, r_small = statistics.median(ft), statistics.median(rt)

    print(f"trace: {args.trace} ({wl.samples} frames, {wl.time_steps} steps, {n_ev:,} events)")
    print(f"cold process: import+load {cold_import:.2f} s, simulate {cold_sim:.2f} s (JIT compile included)")
    print(f"warm process: import+load {warm_import:.2f} s, simulate {warm_sim:.2f} s (kernels from cache)")
    print(f"in-process simulate, median of {args.repeats}: {fast * 1e3:.1f} ms = {n_ev / fast / 1e6:.2f} M events/s")
    print(f"cold/warm simulate ratio: {cold_sim / warm_sim:.1f}x")
    print(f"small case ({small_ev} events): engine {f_small * 1e3:.2f} ms, reference {r_small * 1e3:.1f} ms, "
          f"reference/engine = {r_small / f_small:.0f}x; reference {small_ev / r_small:,.0f} events/s")
    _cost_linearity(hw, args.repeats)
    return 0


def _cost_linearity(hw, repeats: int) -> None:
    """ResNet-18 frames shaped like the committed trace (4 photos, T = 2, C_o = 64) at target spike
    rates from 0.1 down to 0.01: the time of a run must follow the spikes.

    Each trace's replay forms are derived once (timed apart: a cost per trace, not per run); the
    runs of all rates are interleaved so that they share the machine's noise."""
    import numpy as np
    from snnsim import simulate
    from snnsim.hw.spikes import spike_form
    from snnsim.workload.synth import synthesize

    for events in (False, True):  # load both forms' kernels first: the timings below are the work alone
        spike_form(np.zeros((1, 1, 8), np.uint8), 64, 64, events=events)
    rates = (0.1, 0.05, 0.02, 0.01)
    wls, derive, spikes, forms = {}, {}, {}, {}
    for rate in rates:
        wl = synthesize("resnet18", samples=4, time_steps=2, out_channels=64, seed=0, target_rate=rate,
                        first_layer_rate=1.5 * rate)
        t = time.perf_counter()
        kinds = [wl.spike_form(la.name).kind for la in wl.layers if la.spiking]
        derive[rate] = time.perf_counter() - t
        forms[rate] = f"{kinds.count('events')} event lists, {kinds.count('bitmap')} bitmaps"
        spikes[rate] = sum(int(wl.spike_counts(la.name).sum()) for la in wl.layers if la.spiking)
        simulate(hw, wl)
        wls[rate] = wl
    total = {r: [] for r in rates}
    replay = {r: [] for r in rates}
    for _ in range(max(repeats, 15)):
        for rate in rates:
            marks = {}
            t = time.perf_counter()
            simulate(hw, wls[rate], progress=lambda stage, el, m=marks: m.setdefault(stage, el))
            total[rate].append(time.perf_counter() - t)
            replay[rate].append(marks["report"])  # sensor, link and core models and the pipeline engine
    med = {r: (statistics.median(replay[r]), statistics.median(total[r])) for r in rates}
    print("cost against spikes (ResNet-18, 4 frames, T = 2; medians of interleaved runs):")
    for rate in rates:
        print(f"  target rate {rate:<5} {spikes[rate]:>10,} spikes ({forms[rate]}; derived once in "
              f"{derive[rate] * 1e3:.0f} ms): replay {med[rate][0] * 1e3:6.2f} ms, whole simulate "
              f"{med[rate][1] * 1e3:6.2f} ms")
    x = np.array([spikes[r] for r in rates], float)
    slope, fixed = np.polyfit(x, np.array([med[r][1] for r in rates]), 1)
    print(f"  least-squares fit of whole simulate: {fixed * 1e3:.2f} ms per run + {slope * 1e9:.2f} ns per spike")
    (r1, t1), (r2, t2) = med[0.1], med[0.01]
    print(f"cost linearity: {spikes[0.1] / spikes[0.01]:.1f}x fewer spikes -> replay {r1 / r2:.1f}x less time, "
          f"whole simulate {t1 / t2:.1f}x less time")


if __name__ == "__main__":
    sys.exit(main())
