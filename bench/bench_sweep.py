"""Benchmark: a 1,000-point design-space sweep of the ResNet-18 P2M frame.

    python bench/bench_sweep.py [--jobs 2] [--shell-points 20] [--no-dask]

The sweep: C_o in {8, 16, 32, 64} (each its own trace of one frame, T = 1, synthesized here by
``snnsim workload synth``, zipped with ``sensor.p2m.out_channels``) x ``link.lanes`` 1..5 x
``core.vector_width`` 4, 8, ..., 200: 4 x 5 x 50 = 1,000 points on ``hwconfigs/p2m.yaml``.

Timed, as whole commands (wall clock, start-up included), in one run so the times share the
machine's noise:
  1. ``snnsim sweep SPEC -o DIR -j JOBS``: the issue's goal is under 60 s with -j 2.
  2. the shell way (``reports/p2m/sweep.sh``): one ``snnsim run --set ... --format csv`` process per
     point, for ``--shell-points`` points, extrapolated to 1,000.
  3. the same sweep on a Dask ``LocalCluster`` of JOBS worker processes (``--scheduler``); the goal:
     within 1.5x of the process pool. The cluster's own start-up is printed apart.
The three tables are checked to be the same bytes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
C_O = (8, 16, 32, 64)
LANES = (1, 2, 3, 4, 5)
WIDTHS = tuple(range(4, 201, 4))


def snnsim(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snnsim", *args], check=True, capture_output=True, text=True,
                          cwd=ROOT, **kw)


def write_spec(tmp: Path) -> Path:
    import yaml

    traces = []
    for c in C_O:
        t = tmp / f"resnet18_co{c}.npz"
        if not t.exists():
            snnsim("workload", "synth", "--topology", "resnet18", "--samples", "1", "--time-steps", "1",
                   "--out-channels", str(c), "--seed", "0", "-o", str(t))
        traces.append(t.name)
    spec = {"name": "p2m-1000", "hwconfig": str(ROOT / "hwconfigs" / "p2m.yaml"),
            "axes": [{"workload": traces, "sensor.p2m.out_channels": list(C_O)},
                     {"link.lanes": list(LANES)}, {"core.vector_width": list(WIDTHS)}]}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--shell-points", type=int, default=20)
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask part")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="snnsim-bench-sweep-"))
    try:
        spec = write_spec(tmp)
        n = len(C_O) * len(LANES) * len(WIDTHS)
        pool = timed(lambda: snnsim("sweep", str(spec), "-o", str(tmp / "pool"), "-j", str(args.jobs),
                                    "--progress", "never"))
        table = (tmp / "pool" / "results.csv").read_bytes()
        assert table.count(b"\n") == n + 1

        # the shell loop: one process per point, as reports/p2m/sweep.sh
        points = [(c, la, w) for c in C_O for la in LANES for w in WIDTHS][:: n // args.shell_points][: args.shell_points]

        def shell() -> None:
            for c, la, w in points:
                snnsim("run", "hwconfigs/p2m.yaml", str(tmp / f"resnet18_co{c}.npz"),
                       "--set", f"sensor.p2m.out_channels={c}", "--set", f"link.lanes={la}",
                       "--set", f"core.vector_width={w}", "--format", "csv", "--progress", "never")

        shell_s = timed(shell)
        print(f"{n} points of the ResNet-18 P2M frame (C_o x lanes x vector width)")
        print(f"  snnsim sweep -j {args.jobs}:          {pool:7.1f} s wall ({n / pool:6.1f} points/s), start-up included")
        print(f"  shell loop, {len(points)} points:      {shell_s:7.1f} s -> {shell_s / len(points) * n:7.1f} s for {n} "
              f"(extrapolated; {shell_s / len(points) * n / pool:.0f}x the sweep)")
        if not args.no_dask:
            from distributed import LocalCluster

            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=args.jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=50)
            up = time.perf_counter() - t0
            try:
                dask_s = timed(lambda: snnsim("sweep", str(spec), "-o", str(tmp / "dask"), "--scheduler",
                                              cluster.scheduler_address, "--progress", "never"))
            finally:
                cluster.close()
            same = (tmp / "dask" / "results.csv").read_bytes() == table
            print(f"  Dask LocalCluster, {args.jobs} workers: {dask_s:7.1f} s wall ({dask_s / pool:.2f}x the pool; "
                  f"cluster start-up {up:.1f} s apart); table identical: {same}")
            assert same
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
