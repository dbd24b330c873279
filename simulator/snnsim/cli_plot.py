"""The ``snnsim plot`` verb: figures from saved reports or a sweep's results, without simulating.

Standard library only at import, so that ``snnsim --help`` stays light; the drawing code
(report/figures.py, matplotlib, NumPy) is imported when the verb runs.

Sources: ``report.json`` files (or folders holding one), or one sweep (its folder, or its
``results.csv`` / ``results.jsonl``). Outputs: ``-o FILE`` (repeatable), the suffix naming the
format (.png, .pdf, .svg); all are checked before anything is read or drawn, and an existing file
is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

KINDS = ("breakdown", "layers", "steps", "pareto", "heatmap", "line")
REPORT_KINDS = ("breakdown", "layers", "steps", "pareto")
SWEEP_KINDS = ("pareto", "heatmap", "line")
SUFFIXES = (".png", ".pdf", ".svg")


def add_plot_parser(sub) -> None:
    """The ``plot`` sub-command's options."""
    p = sub.add_parser(
        "plot", help="draw figures from saved reports or sweep results",
        description="Draw a figure from report.json files (written by `snnsim run -o DIR`) or from "
                    "a sweep's results (its folder, results.csv or results.jsonl). Every quantity "
                    "has one fixed unit (energy in uJ, time in ms, EDP in uJ*ms, traffic in kbit). "
                    "Metrics are dotted summary keys (e.g. energy.total_pj_per_frame) or the aliases "
                    "energy, latency, edp, bits, power, throughput.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="report.json files or folders, or one sweep folder / results table")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="breakdown (default for reports): energy by component, latency and EDP; "
                        "layers / steps: one report's per-layer energy and cycles / per-step "
                        "activity; pareto: --x vs --y with the Pareto front; heatmap: --metric "
                        "over --x and --y axes; line: --metric against the --x axis")
    p.add_argument("--x", help="pareto: metric on x; heatmap and line: sweep axis on x")
    p.add_argument("--y", help="pareto: metric on y; heatmap: sweep axis on y")
    p.add_argument("--metric", help="heatmap and line: the metric shown")
    p.add_argument("--maximize", choices=("x", "y", "xy"), default=None,
                   help="pareto: coordinates where larger is better (default: minimize both)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="keep only sweep rows whose column KEY equals VALUE (repeatable)")
    p.add_argument("--labels", help="comma-separated labels of the reports (default: hwconfig names)")
    p.add_argument("--log", choices=("x", "y", "xy"), default=None,
                   help="logarithmic axes (heatmap: a logarithmic colour scale)")
    p.add_argument("-o", "--output", action="append", default=[], metavar="FILE",
                   help="figure to write, .png, .pdf or .svg (repeatable: one figure, several files)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing existing files")


def _sources(paths: list[str]) -> tuple[str, list[Path]]:
    """Whether the sources are reports or a sweep, and the files they name (nothing is read)."""
    from .errors import UsageError

    kinds, files = [], []
    for s in paths:
        p = Path(s)
        if p.is_dir():
            if (p / "report.json").is_file():
                kinds.append("report")
                files.append(p / "report.json")
            else:
                found = [p / n for n in ("results.csv", "results.jsonl") if (p / n).is_file()]
                if not found:
                    raise UsageError("the folder holds no report or sweep results", file=s,
                                     expected="report.json, results.csv or results.jsonl inside",
                                     found=", ".join(sorted(os.listdir(p))[:8]) or "an empty folder")
                kinds.append("sweep")
                files.append(found[0])
        elif not p.exists():
            raise UsageError("no such file or folder", file=s, expected="a report.json, a sweep "
                             "folder, or a results.csv / results.jsonl", found="nothing at that path")
        elif p.suffix.lower() in (".csv", ".jsonl"):
            kinds.append("sweep")
            files.append(p)
        elif p.suffix.lower() == ".json":
            kinds.append("report")
            files.append(p)
        else:
            raise UsageError("unrecognized source", file=s, expected="report.json, results.csv, "
                             "results.jsonl or a folder holding one", found=f"a '{p.suffix}' file",
                             suggestion="pass the folder `snnsim run -o` or `snnsim sweep` wrote")
    if "sweep" in kinds and (len(kinds) > 1):
        raise UsageError("plot takes several reports or one sweep, not both", key="SOURCE",
                         expected="report.json files, or one sweep", found=" ".join(paths))
    return kinds[0], files


def _outputs(args: argparse.Namespace, inputs: list[Path]) -> list[Path]:
    """The checked ``-o`` files: known suffixes, writable, distinct, not inputs, and new unless
    ``--overwrite``."""
    from .errors import UsageError
    from .fileio import check_output, same_file

    if not args.output:
        raise UsageError("plot needs an output file", key="-o",
                         expected="-o FILE.png (or .pdf, .svg; repeatable)", found="nothing",
                         suggestion="add e.g. -o figure.png")
    outs: list[Path] = []
    for o in args.output:
        path = Path(o)
        if path.suffix.lower() not in SUFFIXES:
            raise UsageError("unsupported figure format", file=o, key="-o",
                             expected="a file name ending in " + ", ".join(SUFFIXES),
                             found=f"'{path.suffix}'" if path.suffix else "no suffix",
                             suggestion=f"e.g. -o {path.with_suffix('.png')}")
        if check_output(path, inputs=inputs) and not args.overwrite:
            raise UsageError("refusing to overwrite an existing file", file=o,
                             expected="a new file", found="the file exists",
                             suggestion="choose another output, or pass --overwrite")
        for prev in outs:
            if same_file(prev, path):
                raise UsageError("two outputs name the same file", file=o,
                                 expected="different files", found=f"{prev} and {o}",
                                 suggestion="give each -o its own name")
        outs.append(path)
    return outs


def _need(args: argparse.Namespace, kind: str, *names: str) -> None:
    from .errors import UsageError

    missing = [n for n in names if not getattr(args, n)]
    if missing:
        usage = {"pareto": "--x METRIC --y METRIC", "heatmap": "--x AXIS --y AXIS --metric METRIC",
                 "line": "--x AXIS --metric METRIC"}[kind]
        raise UsageError(f"--kind {kind} needs " + " and ".join(f"--{n}" for n in missing),
                         key=f"--{missing[0]}", expected=usage, found="nothing",
                         suggestion="e.g. --x latency --y energy" if kind == "pareto" else None)


def _maximize(args: argparse.Namespace) -> tuple[bool, bool]:
    m = args.maximize or ""
    return ("x" in m, "y" in m)


def _report_figure(args: argparse.Namespace, files: list[Path]):
    from .errors import UsageError
    from .report import figures as F

    kind = args.kind or "breakdown"
    if kind not in REPORT_KINDS:
        raise UsageError(f"--kind {kind} plots a sweep's results", key="--kind",
                         expected="for reports: " + ", ".join(REPORT_KINDS), found=kind,
                         suggestion="pass a sweep folder or results.csv for heatmap and line")
    if args.where:
        raise UsageError("--where filters a sweep's rows", key="--where",
                         expected="a sweep source", found="reports")
    reports = [F.load_report(f) for f in files]
    labels = F.report_labels(reports, args.labels)
    if kind in ("layers", "steps"):
        if len(reports) != 1:
            raise UsageError(f"--kind {kind} draws one report", key="SOURCE",
                             expected="one report.json", found=f"{len(reports)} reports")
        make = F.layers_figure if kind == "layers" else F.steps_figure
        return make(reports[0], log=args.log)
    if kind == "breakdown":
        return F.breakdown_figure(reports, labels, log=args.log)
    _need(args, "pareto", "x", "y")
    flat = [F.flatten_summary(r.summary) for r in reports]
    common = sorted(set.intersection(*(set(f) for f in flat)))
    x = F.resolve_metric(args.x, common, "--x")
    y = F.resolve_metric(args.y, common, "--y")
    points = [{**f, "workload": r.meta.get("workload", {}).get("model", "?"), "label": lab}
              for f, r, lab in zip(flat, reports, labels, strict=True)]
    context = f"{F._describe_reports(reports)}; {len(reports)} reports"
    return F.pareto_figure(points, x, y, _maximize(args), args.log, context)


def _sweep_figure(args: argparse.Namespace, file: Path):
    from .errors import UsageError
    from .report import figures as F

    if not args.kind:
        raise UsageError("a sweep needs --kind", key="--kind", expected=", ".join(SWEEP_KINDS),
                         found="nothing", suggestion="e.g. --kind pareto --x latency --y energy")
    if args.kind not in SWEEP_KINDS:
        raise UsageError(f"--kind {args.kind} plots reports", key="--kind",
                         expected="for a sweep: " + ", ".join(SWEEP_KINDS), found=args.kind,
                         suggestion="pass report.json files for breakdown, layers and steps")
    if args.labels:
        raise UsageError("--labels names reports", key="--labels", expected="report sources",
                         found="a sweep (its rows are labelled by workload and hwconfig)")
    table = F.load_sweep(file)
    if table.failed:
        sys.stderr.write(f"snnsim: note: {file}: {table.failed} failed point"
                         f"{'s' if table.failed > 1 else ''} skipped\n")
    where = F.parse_where(args.where, table)
    if args.kind == "pareto":
        _need(args, "pareto", "x", "y")
        x = F.resolve_metric(args.x, table.metrics, "--x")
        y = F.resolve_metric(args.y, table.metrics, "--y")
        rows = F.filter_rows(table.rows, where)
        if not rows:
            raise UsageError("no ok results left to plot", key="--where",
                             expected="some matching row", found=f"0 of {len(table.rows)} ok rows")
        return F.pareto_figure(rows, x, y, _maximize(args), args.log,
                               F._context(rows, table.failed, where), label_keys=table.axes)
    if args.kind == "heatmap":
        _need(args, "heatmap", "x", "y", "metric")
        x, y = F.resolve_axis(args.x, table, "--x"), F.resolve_axis(args.y, table, "--y")
        if x == y:
            raise UsageError("--x and --y name the same axis", key="--y",
                             expected="two different axes", found=y)
        metric = F.resolve_metric(args.metric, table.metrics)
        return F.heatmap_figure(table, x, y, metric, where, args.log)
    _need(args, "line", "x", "metric")
    x = F.resolve_axis(args.x, table, "--x")
    metric = F.resolve_metric(args.metric, table.metrics)
    return F.line_figure(table, x, metric, where, args.log)


def cmd_plot(args: argparse.Namespace) -> int:
    """Check the outputs, read the sources, draw one figure and write it to every ``-o``."""
    kind, files = _sources(args.sources)
    outs = _outputs(args, files)
    fig = _report_figure(args, files) if kind == "report" else _sweep_figure(args, files[0])

    from .fileio import writing
    from .report.figures import save_figure

    with writing(*outs):
        written = save_figure(fig, outs)
    for p in written:
        sys.stdout.write(f"wrote {p}\n")
    return 0
