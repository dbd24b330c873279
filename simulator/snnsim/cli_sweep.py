"""The ``snnsim sweep`` verb (standard library only at import: ``snnsim --help`` stays light)."""

from __future__ import annotations

import argparse
import sys


def add_sweep_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="simulate a design space: axes of hwconfig keys over chips and traces",
        description="Expand SPEC (a YAML file: hwconfig(s), workload(s), and axes of hwconfig keys as a grid, "
                    "zipped keys, explicit points or random samples with a seed; docs/sweep.md) and simulate "
                    "every point. Each finished point is appended to DIR/results.jsonl at once, so a sweep "
                    "stopped at any moment (even by kill -9) resumes when the same command is run again; "
                    "when all are done, DIR/results.csv holds the table in point order, the same bytes "
                    "whatever ran it (-j 1, -j N, a Dask cluster).")
    p.add_argument("spec", help="sweep spec (.yaml); paths in it are relative to it")
    p.add_argument("-o", "--output", metavar="DIR", help="results folder (created; resumed if it holds this sweep)")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="local worker processes (default 1: this process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on the Dask cluster of this scheduler, e.g. tcp://10.0.0.5:8786 "
                        '(pip install "snnsim[dask]"; every worker must see the input files)')
    p.add_argument("--dry-run", action="store_true", help="list the points and exit; nothing is simulated or written")
    p.add_argument("--overwrite", action="store_true",
                   help="if DIR holds other results (another spec, changed inputs), discard them and start over")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr: auto = only on a terminal")


def _dry_run(spec) -> int:
    import csv

    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["point", "hwconfig", "workload", *spec.axes])
    for p in spec.points:
        w.writerow([p.index, p.hwconfig, p.workload, *(v for _, v in p.axes)])
    sys.stderr.write(f"snnsim sweep: {len(spec.points)} points ({len(spec.hwconfigs)} hwconfig(s), "
                     f"{len(spec.workloads)} workload(s), axes: {', '.join(spec.axes) or 'none'})\n")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .sweeps import ProgressBar, load_spec, run_sweep

    if args.scheduler is not None and args.jobs != 1:
        raise UsageError("-j and --scheduler exclude each other", key="-j",
                         expected="local processes (-j N) or a Dask cluster (--scheduler)",
                         found=f"-j {args.jobs} --scheduler {args.scheduler}",
                         suggestion="the cluster's workers set the parallelism; drop -j")
    spec = load_spec(args.spec)
    if args.dry_run:
        return _dry_run(spec)
    if not args.output:
        raise UsageError("sweep needs a results folder", key="-o", expected="-o DIR", found="nothing",
                         suggestion="for example -o results/ (or --dry-run to list the points)")
    tty = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    bar = ProgressBar(len(spec.points)) if tty else None
    try:
        table = run_sweep(spec, args.output, jobs=args.jobs, scheduler=args.scheduler,
                          overwrite=args.overwrite, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    n_failed = len(table.failed)
    rate = table.ran / table.seconds if table.seconds > 0 and table.ran else 0.0
    where = ", ".join(str(f) for f in table.files)
    parts = [f"snnsim sweep {spec.name}: {len(table)} points ({len(table) - n_failed} ok, {n_failed} failed)"]
    if table.resumed:
        parts.append(f"{table.resumed} done before, {table.ran} now")
    parts.append(f"{table.seconds:.1f} s" + (f", {rate:.1f} points/s" if rate else ""))
    sys.stdout.write("; ".join(parts) + (f"; wrote {where}" if where else "") + "\n")
    if n_failed:
        first = table.failed[0]
        sys.stderr.write(f"snnsim: {n_failed} point(s) failed; the first, point {first['point']}: {first['error']}\n")
    return 0
