"""Benchmark: events per second of 3D workloads (ACE-SNN on hyperspectral patches) against 2D ones
(ResNet-18 on P2M, VSA on CIFAR-10), and the ResNet-18 P2M frame on this tree against the code
before the chip-as-components refactor, all measured in one run so the ratios are fair.

    python bench/bench_events.py [--copies 2,4,8,16] [--copies-3d 8,16,32,64,128] [--repeats 7]
                                 [--baseline 65d10ee] [--rounds 4]

Part 1, events per second: the HSI traces are tiny (6 patches), so a whole ``simulate`` is mostly
its fixed cost per call (plans, report). Each workload is therefore replayed with its samples
repeated k times for every k of ``--copies`` (2D) or ``--copies-3d`` (3D), and the rate is the
marginal one, Δevents / Δtime between the largest and the smallest k: what one more frame costs.
Events are the spikes of all spiking layers plus the transactions of every pipeline stage (sensor
rows, link packets, stored frames, PIM and core transactions). The trace as committed (x1) is
timed too, for the whole-simulate time per frame and the phases of one call. The runs of all pairs
and copies are interleaved so that they share the machine's noise; each time is the median of
``--repeats`` warm runs.

Part 2, old against new code: the ResNet-18 P2M frame (warm simulate, median of 15 per round) in
child processes running this tree's ``simulator/`` and the ``--baseline`` revision's, exported
with ``git archive``, round after round (alternating which goes first), each tree with its own
Numba cache. Skipped with a message when git or the revision is unavailable.

Timings vary 30-40% between runs on shared machines: compare the ratios printed by one run, not
absolute times across runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

PAIRS = [  # (name, dims, hwconfig, trace)
    ("p2m + resnet_imagenet", "2D", "hwconfigs/p2m.yaml", "workloads/resnet_imagenet.npz"),
    ("vsa + vsa_cifar10", "2D", "hwconfigs/vsa.yaml", "workloads/vsa_cifar10.npz"),
    ("ace_snn_digital + hsi_ip_3d", "3D", "hwconfigs/ace_snn_digital.yaml", "workloads/hsi_ip_3d.npz"),
    ("ace_snn_pim + hsi_ip_3d", "3D", "hwconfigs/ace_snn_pim.yaml", "workloads/hsi_ip_3d.npz"),
    ("ace_snn_digital + hsi_ip_hybrid", "3D", "hwconfigs/ace_snn_digital.yaml", "workloads/hsi_ip_hybrid.npz"),
    ("ace_snn_pim + hsi_ip_hybrid", "3D", "hwconfigs/ace_snn_pim.yaml", "workloads/hsi_ip_hybrid.npz"),
]

# one child process: load the chip and the trace, one warm-up simulate (JIT compile or cache
# load), then `repeats` timed warm runs; prints where snnsim came from and the median
CHILD = """
import statistics, sys, time
import snnsim
from snnsim import load_hardware, load_workload, simulate
hw = load_hardware(sys.argv[1]); wl = load_workload(sys.argv[2]); n = int(sys.argv[3])
simulate(hw, wl)
times = []
for _ in range(n):
    t = time.perf_counter(); simulate(hw, wl); times.append(time.perf_counter() - t)
print(snnsim.__file__)
print(statistics.median(times))
"""


def repeated_workload(trace: Path, copies: int):
    """The trace with its samples repeated ``copies`` times (sample axis of the input and of every
    recorded array), as the Workload the hardware replays. Arrays are read-only like a loaded
    trace's, so what is derived from them is derived once, before any timed run."""
    from snnsim.workload.graphtrace import GraphTrace, load_graph_trace, to_workload

    gt = load_graph_trace(trace)

    def tile(a: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(np.concatenate([a] * copies, axis=0))
        out.flags.writeable = False
        return out

    rep = GraphTrace(nodes=gt.nodes, input=tile(gt.input), recorded={k: tile(v) for k, v in gt.recorded.items()},
                     arrays=gt.arrays, time_steps=gt.time_steps, model=gt.model, dataset=gt.dataset,
                     provenance=gt.provenance, source=f"{gt.source} x{copies}")
    return to_workload(rep)


def events_per_frame(hw, wl) -> tuple[float, dict[str, int]]:
    """Spikes of every spiking layer plus every stage's transactions, per frame, and the
    transactions per frame by stage (from the chain's plans, as simulate builds them)."""
    from snnsim.hw.chain import build_chain
    from snnsim.workload.graph import check_graph_once

    gkey = check_graph_once(wl, wl.layers, wl.input_shape)
    plans: list = []
    for component in build_chain(hw):
        plans.append(component.plan(hw, wl, plans, gkey))
    transactions = {p.name: p.transactions for p in plans}
    spikes = sum(int(wl.spike_counts(la.name).sum()) for la in wl.layers if la.spiking)
    return spikes / wl.samples + sum(transactions.values()), transactions


def _phases(marks: dict[str, float], total: float) -> str:
    """Milliseconds of each phase of one simulate, from its progress marks (each mark is the time
    elapsed when that phase starts): the checks before the first component, each component's
    plan, the pipeline engine, the records, and the report's summary."""
    names = list(marks)
    ends = [marks[n] for n in names[1:]] + [total]
    label = {"report": "records", "done": "summary"}  # the marks name the phase that starts there
    parts = [("checks", marks[names[0]])]
    parts += [(label.get(n, n), end - marks[n]) for n, end in zip(names, ends, strict=True)]
    return ", ".join(f"{n} {t * 1e3:.1f}" for n, t in parts)


def part_events(copies_2d: list[int], copies_3d: list[int], repeats: int) -> None:
    """Marginal events per second of every (hwconfig, trace) pair, and whole-simulate time per frame."""
    from snnsim import load_hardware, simulate

    copies = {i: copies_2d if dims == "2D" else copies_3d for i, (_n, dims, _h, _t) in enumerate(PAIRS)}
    shapes = {i: sorted({1, *c}) for i, c in copies.items()}  # x1: the committed trace, for the whole time
    work = {}  # (pair index, copies) -> (hw, wl)
    per_frame, stages, synops = {}, {}, {}
    for i, (_name, _dims, hwc, trace) in enumerate(PAIRS):
        hw = load_hardware(ROOT / hwc)
        for k in shapes[i]:
            wl = repeated_workload(ROOT / trace, k)
            rep = simulate(hw, wl)  # warm-up per shape: Numba compiled, replay forms derived
            work[i, k] = (hw, wl)
        per_frame[i], stages[i] = events_per_frame(hw, wl)
        synops[i] = rep.summary["operations"]["synaptic_ops_per_frame"]
    times: dict[tuple[int, int], list[float]] = {key: [] for key in work}
    marks: dict[int, list[tuple[dict[str, float], float]]] = {i: [] for i in copies}
    replay: dict[int, list[float]] = {i: [] for i in copies}
    for _ in range(repeats):
        for key, (hw, wl) in work.items():
            m: dict[str, float] = {}
            t = time.perf_counter()
            simulate(hw, wl, progress=lambda stage, el, m=m: m.setdefault(stage, el))
            times[key].append(time.perf_counter() - t)
            if key[1] == 1:
                marks[key[0]].append((m, times[key][-1]))
            if key[1] == copies[key[0]][-1]:  # the replay proper: the components' plans and the engine
                names = list(m)
                replay[key[0]].append(m["report"] - m[names[0]])
    med = {key: statistics.median(v) for key, v in times.items()}

    print(f"Part 1: events per second, 2D against 3D (samples repeated {','.join(map(str, copies_2d))} times "
          f"for 2D, {','.join(map(str, copies_3d))} for 3D; medians of {repeats} interleaved warm runs)")
    print("  events = spikes of all spiking layers + transactions of all pipeline stages; marginal rate = "
          "Δevents / Δtime between the fewest and the most copies")
    rates, marginal_ms, whole_ms = {}, {}, {}
    for i, (name, _dims, _hwc, _trace) in enumerate(PAIRS):
        lo, hi = copies[i][0], copies[i][-1]
        frames_lo, frames_hi = work[i, lo][1].samples, work[i, hi][1].samples
        d_time = med[i, hi] - med[i, lo]
        marginal_ms[i] = d_time / (frames_hi - frames_lo) * 1e3
        rates[i] = per_frame[i] * (frames_hi - frames_lo) / d_time if d_time > 0 else float("nan")
        whole_ms[i] = med[i, 1] / work[i, 1][1].samples * 1e3
        series = ", ".join(f"x{k} {med[i, k] * 1e3:.1f}" for k in shapes[i])
        m, total = min(marks[i], key=lambda x: abs(x[1] - med[i, 1]))  # the run nearest the median
        print(f"  {name}: {frames_lo // lo} frames per copy; transactions/frame "
              f"{', '.join(f'{s} {n}' for s, n in stages[i].items())}")
        print(f"    simulate ms: {series}")
        print(f"    phases of one x1 run, ms: {_phases(m, total)}")
    mean_2d = statistics.mean(r for i, r in rates.items() if PAIRS[i][1] == "2D")
    replay_rate = {i: per_frame[i] * work[i, copies[i][-1]][1].samples / statistics.median(v)
                   for i, v in replay.items()}
    replay_2d = statistics.mean(r for i, r in replay_rate.items() if PAIRS[i][1] == "2D")
    print()
    head = (f"  {'pair':<32} {'dims':>4} {'events/frame':>13} {'synops/frame':>13} {'marginal Mev/s':>15} "
            f"{'marginal ns/synop':>18} {'marginal ms/frame':>18} {'whole ms/frame':>15} {'rate / 2D mean':>15} "
            f"{'replay Mev/s':>13} {'replay / 2D':>12}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    for i, (name, dims, _hwc, _trace) in enumerate(PAIRS):
        ratio = f"{rates[i] / mean_2d:.2f}" if dims == "3D" else "-"
        per_synop = f"{marginal_ms[i] * 1e6 / synops[i]:.3f}" if synops[i] else "-"
        print(f"  {name:<32} {dims:>4} {per_frame[i]:>13,.0f} {synops[i]:>13,.0f} {rates[i] / 1e6:>15.2f} "
              f"{per_synop:>18} {marginal_ms[i]:>18.4f} {whole_ms[i]:>15.3f} {ratio:>15} "
              f"{replay_rate[i] / 1e6:>13.2f} {(f'{replay_rate[i] / replay_2d:.2f}' if dims == '3D' else '-'):>12}")
    print(f"  2D mean marginal rate: {mean_2d / 1e6:.2f} M events/s. whole ms/frame: simulate of the committed "
          "trace (x1) divided by its frames, fixed per-call cost included; synops: the core's synaptic operations")
    print("  replay: events / the time of the components' plans and the pipeline engine at the most copies (the "
          "report's records and summary, per frame and not per event, left out)")


def _child(pythonpath: Path, cache: Path, hw: Path, trace: Path, repeats: int) -> tuple[str, float]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath), NUMBA_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", CHILD, str(hw), str(trace), str(repeats)], env=env, check=True,
                         capture_output=True, text=True, cwd=str(cache)).stdout.split("\n")
    return out[0], float(out[1])


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


def part_baseline(rev: str, rounds: int, repeats: int) -> None:
    """The ResNet-18 P2M frame, warm, on this tree and on ``rev``, round after round."""
    hw, trace = ROOT / "hwconfigs" / "p2m.yaml", ROOT / "workloads" / "resnet_imagenet.npz"
    print(f"Part 2: ResNet-18 P2M frame, this tree against {rev} (warm simulate, median of {repeats} "
          f"per round, {rounds} interleaved rounds)")
    if shutil.which("git") is None:
        print("  skipped: git is not installed")
        return
    found = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0:
        print(f"  skipped: revision {rev!r} not available (no git repository here, or an unknown revision)")
        return
    commit = found.stdout.decode().strip()
    with tempfile.TemporaryDirectory(prefix="bench_events_") as tmp:
        tmp_dir = Path(tmp)
        old_tree = tmp_dir / "old"
        old_tree.mkdir()
        archive = _git("archive", commit, "simulator")
        if archive.returncode != 0:
            print(f"  skipped: git archive {rev} failed: {archive.stderr.decode().strip()}")
            return
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (and security backports)
                tar.extractall(old_tree, filter="data")
            else:
                tar.extractall(old_tree)  # our own repository's archive
        trees = {"old": old_tree / "simulator", "new": ROOT / "simulator"}
        caches = {}
        for name in trees:
            caches[name] = tmp_dir / f"numba_{name}"
            caches[name].mkdir()
        try:
            where, _ = _child(trees["old"], caches["old"], hw, trace, 1)
            print(f"  the baseline reads this tree's {hw.relative_to(ROOT)} and {trace.relative_to(ROOT)}")
        except subprocess.CalledProcessError as e:
            last = (e.stderr.strip().splitlines() or ["?"])[-1]
            print(f"  the baseline cannot read this tree's files ({last}); both trees run on {rev}'s own "
                  "hwconfigs/p2m.yaml and workloads/resnet_imagenet.npz")
            for src, name in ((hw, "p2m.yaml"), (trace, "resnet_imagenet.npz")):
                shown = _git("show", f"{commit}:{src.relative_to(ROOT)}")
                if shown.returncode != 0:
                    print(f"  skipped: {rev} has no {src.relative_to(ROOT)}")
                    return
                (tmp_dir / name).write_bytes(shown.stdout)
            hw, trace = tmp_dir / "p2m.yaml", tmp_dir / "resnet_imagenet.npz"
            where, _ = _child(trees["old"], caches["old"], hw, trace, 1)
        if not Path(where).resolve().is_relative_to(trees["old"].resolve()):
            print(f"  skipped: the baseline child imported snnsim from {where}, not from the exported tree")
            return
        _child(trees["new"], caches["new"], hw, trace, 1)  # both caches filled before the timed rounds
        med: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(rounds):
            for name in (("old", "new") if r % 2 == 0 else ("new", "old")):
                med[name].append(_child(trees[name], caches[name], hw, trace, repeats)[1])
            print(f"  round {r + 1}: old {med['old'][-1] * 1e3:7.2f} ms, new {med['new'][-1] * 1e3:7.2f} ms, "
                  f"new/old {med['new'][-1] / med['old'][-1]:.2f}")
        old, new = statistics.median(med["old"]), statistics.median(med["new"])
        print(f"  median over rounds: old ({rev}) {old * 1e3:.2f} ms, new (this tree) {new * 1e3:.2f} ms, "
              f"new/old = {new / old:.2f}")
        # a child process's speed can settle in one of two levels (about 15 or 21 ms here): the
        # fastest round of each tree is the comparison least moved by that
        print(f"  fastest round: old {min(med['old']) * 1e3:.2f} ms, new {min(med['new']) * 1e3:.2f} ms, "
              f"new/old = {min(med['new']) / min(med['old']):.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", default="2,4,8,16", help="repetitions of a 2D trace's samples (comma-separated)")
    ap.add_argument("--copies-3d", default="8,16,32,64,128", help="repetitions of a 3D trace's samples")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per workload shape in part 1")
    ap.add_argument("--baseline", default="65d10ee", help="git revision to compare against in part 2")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds of part 2")
    ap.add_argument("--baseline-repeats", type=int, default=15, help="timed runs per child in part 2")
    ap.add_argument("--skip-events", action="store_true", help="run part 2 only")
    ap.add_argument("--skip-baseline", action="store_true", help="run part 1 only")
    args = ap.parse_args()
    copies = []
    for opt, text in (("--copies", args.copies), ("--copies-3d", args.copies_3d)):
        counts = sorted({int(c) for c in text.split(",")})
        if len(counts) < 2 or counts[0] < 1:
            ap.error(f"{opt} needs at least two distinct positive counts")
        copies.append(counts)
    t0 = time.perf_counter()
    if not args.skip_events:
        part_events(copies[0], copies[1], args.repeats)
        print()
    if not args.skip_baseline:
        part_baseline(args.baseline, args.rounds, args.baseline_repeats)
    print(f"\nbenchmark wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
