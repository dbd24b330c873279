"""The ``snnsim`` command: a thin layer over the Python API.

Only the standard library is imported at start-up, so ``snnsim --help`` answers without loading
NumPy or Numba. Errors raised as :class:`snnsim.errors.SnnsimError` become one message on stderr
and exit status 2; so do usage errors.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

EXIT_USAGE = 2
FORMATS = ("table", "json", "csv")
#: The files ``run -o DIR`` writes: the report, and the plots (report/plots.py, write_plots).
RUN_REPORT_FILES = ("report.json", "report.csv")
RUN_PLOT_FILES = ("energy_breakdown.png", "layer_energy.png", "layer_cycles.png", "activity.png")
#: The files ``compare -o DIR`` writes.
COMPARE_FILES = ("compare.json", "compare.csv", "compare.png")


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a hwconfig value, e.g. --set link.lanes=4 (repeatable; see `snnsim schema`)")


def _format_option(p: argparse.ArgumentParser, summary: bool = False) -> None:
    """``--format``; with ``summary`` (run, compare) the default off a terminal is one summary line."""
    if summary:
        text = ("output on stdout: table (default on a terminal), json (the full report), or csv; without "
                "--format and not on a terminal, one summary line (the headline figures and the files written)")
    else:
        text = "output on stdout: table (default on a terminal), json (default otherwise), or csv"
    p.add_argument("--format", choices=FORMATS, default=None, help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snnsim",
        description="Cycle-accurate, event-driven simulator for in-sensor spiking-neural-network chips: "
                    "replays a spike trace on a chip described in YAML and reports bandwidth, energy, "
                    "delay and EDP per component, layer and time step.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    p = sub.add_parser("run", help="simulate a workload on one chip and report",
                       description="Simulate TRACE on the chip HWCONFIG and print the report.")
    p.add_argument("hwconfig", help="hardware YAML, e.g. hwconfigs/p2m.yaml")
    p.add_argument("trace", help="spike trace (.npz, format v1 or v2), e.g. workloads/resnet_imagenet.npz")
    _set_option(p)
    _format_option(p, summary=True)
    p.add_argument("-o", "--output", metavar="DIR",
                   help="also write report.json, report.csv and plots into DIR (never overwrites without --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing report files in DIR")
    p.add_argument("--no-plots", action="store_true",
                   help="with -o: skip the plots (an earlier run's plots in DIR are refused without "
                        "--overwrite and removed with it, so DIR never mixes two runs)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress on stderr: auto = only on a terminal and when a run takes more than a moment")
    p.add_argument("--verify", action="store_true",
                   help="first check the trace with the core's arithmetic (as `snnsim verify`); stop with status 1 on a mismatch")

    p = sub.add_parser("compare", help="simulate one workload on several chips, side by side with ratios",
                       description="Simulate TRACE on each HWCONFIG; ratios are relative to the first.")
    p.add_argument("hwconfigs", nargs="+", metavar="HWCONFIG", help="two or more hardware YAMLs")
    p.add_argument("trace", help="spike trace (.npz)")
    p.add_argument("--labels", help="comma-separated labels (default: the hwconfig names)")
    _set_option(p)
    p.add_argument("--set-for", dest="chip_overrides", nargs=2, action="append", default=[],
                   metavar=("CHIP", "KEY.PATH=VALUE"),
                   help="override a hwconfig value of one chip only, after the --set items, e.g. "
                        "--set-for 2 link.lanes=4; CHIP is the hwconfig's position on the command line "
                        "(from 1) or its label (--labels, else the hwconfig's name); repeatable")
    _format_option(p, summary=True)
    p.add_argument("-o", "--output", metavar="DIR", help="also write compare.json, compare.csv and compare.png")
    p.add_argument("--overwrite", action="store_true", help="allow replacing files in DIR")

    p = sub.add_parser("info", help="describe a spike trace (or list technology tables)",
                       description="Print a trace's manifest, graph and spike rates; or, with --tech, the "
                                   "technology tables and their sourced entries.")
    p.add_argument("trace", nargs="?", help="spike trace (.npz)")
    p.add_argument("--tech", nargs="?", const="", metavar="TABLE", help="list technology tables, or show one")
    _format_option(p)

    p = sub.add_parser("verify", help="recompute every layer's spikes with the core's arithmetic and compare",
                       description="Recompute every layer's output spikes from its recorded inputs, weights and "
                                   "thresholds, and compare with TRACE: bit for bit in the core's integer "
                                   "arithmetic, or in float64 (float weights, real thresholds) where spike trains "
                                   "that differ only by float rounding are within tolerance (docs/verify.md). "
                                   "A format v2 trace is recomputed node by node from its graph, each layer from "
                                   "the recorded activity it reads (membrane and input widths do not apply). "
                                   "Exit status 0 when every recorded layer matches, 1 on any mismatch.")
    p.add_argument("trace", help="spike trace (.npz)")
    p.add_argument("--hwconfig", help="take membrane_bits and input_bits from this chip (default: 16 and 8)")
    p.add_argument("--membrane-bits", type=int, help="membrane width (overrides the hwconfig)")
    p.add_argument("--input-bits", type=int, help="encoding-layer input bits (overrides the hwconfig)")
    p.add_argument("--arithmetic", choices=("auto", "integer", "float64"), default="auto",
                   help="auto (default): per layer, integer when its weights, input and thresholds are on the "
                        "core's integer grids, float64 otherwise; integer: always the core's; float64: always "
                        "float64 from the float weights")
    _set_option(p)
    _format_option(p)

    p = sub.add_parser("validate", help="check hwconfigs and traces without simulating",
                       description="Check each FILE (a .yaml hwconfig or a .npz trace); exit 2 on the first problem.")
    p.add_argument("files", nargs="+", metavar="FILE")
    _set_option(p)

    p = sub.add_parser("schema", help="print the JSON Schema of hwconfig files",
                       description="The JSON Schema of hwconfigs, for editors and validators.")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write it to FILE instead of stdout (never overwrites without --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing FILE")
    p.add_argument("--markdown", action="store_true", help="a Markdown table of every key instead of JSON Schema")

    p = sub.add_parser("workload", help="make spike traces (synthesize, from/to NIR)")
    wsub = p.add_subparsers(dest="wverb", metavar="ACTION")
    s = wsub.add_parser("synth", help="synthesize a trace by a real forward pass of an untrained SNN over photos",
                        description="Forward pass of a chosen topology (binary weights, IF neurons, direct "
                                    "encoding) over real photos, with thresholds calibrated to target spike rates.")
    s.add_argument("--topology", default="resnet18", help="network topology (default resnet18; see --list)")
    s.add_argument("--list", action="store_true", help="list topologies and exit")
    s.add_argument("--samples", type=int, default=4, help="images (frames) in the trace")
    s.add_argument("--time-steps", type=int, default=None, help="time steps T (default: the topology's, 1 or 8)")
    s.add_argument("--membrane-bits", type=int, default=None, help="membrane width the thresholds are calibrated for")
    s.add_argument("--out-channels", type=int, default=64, help="channels C_o of the in-pixel first layer")
    s.add_argument("--image-size", type=int, default=None, help="square image size in pixels (topology default)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--target-rate", type=float, default=0.1, help="target spike rate of each layer")
    s.add_argument("--first-layer-rate", type=float, default=None, help="target spike rate of the first layer")
    s.add_argument("--first-layer-weight-bits", type=int, default=4, help="bits of the in-pixel weights")
    s.add_argument("-o", "--output", metavar="FILE", help="trace to write (.npz); refuses to overwrite without --overwrite")
    s.add_argument("--overwrite", action="store_true")
    n = wsub.add_parser("from-nir", help="a trace from a NIR graph: recorded spikes (NIRData) or simulated",
                        description="Map a NIR graph's nodes to trace layers; take the spikes from a NIRData "
                                    "file, or simulate the graph on --inputs for --time-steps steps "
                                    "(forward Euler with --dt). Needs: pip install \"snnsim[nir]\".")
    n.add_argument("graph", help="NIR graph file (written by nir.write)")
    n.add_argument("--spikes", metavar="DATA", help="NIRData file with each neuron node's spikes")
    n.add_argument("--inputs", metavar="FILE", help="analog inputs, .npy or .npz, (samples, *input shape) in [0, 1]")
    n.add_argument("--time-steps", type=int, default=None, help="time steps T (to simulate, or to bin event data)")
    n.add_argument("--dt", type=float, default=1e-4, help="time step of the discretisation (default 1e-4)")
    n.add_argument("--weight-bits", type=int, default=8, help="bits recorded for non-binary weights (default 8)")
    n.add_argument("--model", default=None, help="model name recorded in the trace")
    n.add_argument("--dataset", default="unknown", help="dataset name recorded in the trace")
    n.add_argument("-o", "--output", metavar="TRACE", help="trace to write (.npz)")
    n.add_argument("--overwrite", action="store_true")
    t = wsub.add_parser("to-nir", help="write a trace's graph (and optionally its spikes) as NIR",
                        description="The reverse of from-nir. Needs: pip install \"snnsim[nir]\".")
    t.add_argument("trace", help="spike trace (.npz, format v2 or v1) with weights")
    t.add_argument("--data", metavar="DATA", help="also write the input and spikes as a NIRData file")
    t.add_argument("--dt", type=float, default=None,
                   help="time step of the discretisation (default: the NIR neurons' own, else 1e-4)")
    t.add_argument("--approximate", action="store_true",
                   help="write a neuron NIR cannot express exactly (snnsim.if's subtractive reset) as the nearest "
                        "NIR neuron; snnsim reads the exact one back from the node's metadata")
    t.add_argument("-o", "--output", metavar="GRAPH", help="NIR file to write")
    t.add_argument("--overwrite", action="store_true")

    from .cli_plot import add_plot_parser
    from .cli_sweep import add_sweep_parser

    add_sweep_parser(sub)
    add_plot_parser(sub)
    return parser


class _Progress:
    """A one-line progress display on stderr, shown only on a terminal after a short delay."""

    def __init__(self, mode: str) -> None:
        self.enabled = mode == "always" or (mode == "auto" and sys.stderr.isatty())
        self.shown = False
        self.start = time.perf_counter()

    def __call__(self, stage: str, elapsed: float) -> None:
        if not self.enabled:
            return
        if not self.shown and time.perf_counter() - self.start < 0.5 and stage != "done":
            return
        if stage == "done":
            if self.shown:
                sys.stderr.write("\r\033[K")
                sys.stderr.flush()
            return
        self.shown = True
        sys.stderr.write(f"\r\033[Ksnnsim: {stage} ... {time.perf_counter() - self.start:5.1f} s")
        sys.stderr.flush()


def _default_format(fmt: str | None, summary: bool = False) -> str:
    """The ``--format`` given; else table on a terminal, and off a terminal json, or with
    ``summary`` (run, compare) "summary": one line of headline figures."""
    if fmt:
        return fmt
    if sys.stdout.isatty():
        return "table"
    return "summary" if summary else "json"


def _output_file(path: str | os.PathLike[str], overwrite: bool, inputs: Iterable[str | None] = ()) -> Path:
    """Check an output file before any work is done: a name the file system takes, in a writable
    folder, not a folder (whatever ``overwrite`` says), none of the command's ``inputs``, and new
    unless ``overwrite``. Raises :class:`UsageError`; creates nothing."""
    from .errors import UsageError
    from .fileio import check_output

    out = Path(path)
    if check_output(out, inputs=inputs) and not overwrite:
        raise UsageError("refusing to overwrite an existing file", file=str(out),
                         expected="a new file", found="the file exists",
                         suggestion="choose another output, or pass --overwrite")
    return out


def _safe_write(path: Path, text: str | bytes, overwrite: bool) -> None:
    """Write atomically (fileio.atomic_write: no partial file, no stray temporary); refuse to
    replace an existing file unless ``overwrite``; any OSError becomes a UsageError naming ``path``."""
    from .fileio import atomic_write, writing

    if not overwrite:
        _output_file(path, overwrite)
    data = text.encode("utf-8") if isinstance(text, str) else text

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    with writing(path):
        atomic_write(path, write)


def _prepare_outdir(outdir: str, names: Sequence[str], overwrite: bool, inputs: Iterable[str | None]) -> Path:
    """Check the ``-o`` folder before simulating; create nothing (a run that fails must not leave
    an empty folder behind). Refused: a file, a name the file system does not take, an unwritable
    place, a report name that is a folder or one of the command's ``inputs``, and (without
    ``overwrite``) any of ``names`` already there."""
    from .errors import UsageError
    from .fileio import check_output

    inputs = list(inputs)
    d = Path(outdir)
    if check_output(d, folder=True, inputs=inputs):
        for name in names:
            check_output(d / name, inputs=inputs)
        clash = [n for n in names if os.path.lexists(d / n)]
        if clash and not overwrite:
            raise UsageError("refusing to overwrite existing report files", file=outdir,
                             expected="a directory without them", found=", ".join(clash),
                             suggestion="choose another -o DIR, or pass --overwrite")
    return d


@contextmanager
def _undo_on_failure(files: Sequence[Path], folder: Path | None = None) -> Iterator[None]:
    """Create ``folder`` (and its missing parents) and run the block; if it fails, remove those of
    ``files`` that did not exist before and the folders created here, so that a failed command
    leaves nothing of its own. Files that existed before are never removed (one replaced under
    --overwrite stays replaced)."""
    from .fileio import make_dirs, remove_dirs, writing

    created: list[Path] = []
    if folder is not None:
        with writing(folder):
            created = make_dirs(folder)
    before = {f for f in files if os.path.lexists(f)}
    try:
        yield
    except BaseException:
        for f in files:
            if f not in before:
                try:
                    f.unlink()
                except OSError:
                    pass
        remove_dirs(created)
        raise


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    from .hwconfig import load_hardware
    from .report import writers
    from .simulation import simulate
    from .workload.trace import load_workload

    fmt = _default_format(args.format, summary=True)
    hw = load_hardware(args.hwconfig, args.overrides)
    wl = load_workload(args.trace)
    outdir = None
    # With --no-plots the plot names still count: DIR must not mix this run's report with the
    # plots of an earlier one.
    names = [*RUN_REPORT_FILES, *RUN_PLOT_FILES]
    if args.output:
        outdir = _prepare_outdir(args.output, names, args.overwrite, [args.hwconfig, args.trace])
    if args.verify:
        from .verify_graph import verify_path

        check = verify_path(args.trace, membrane_bits=hw["core"]["membrane_bits"], input_bits=hw["core"]["input_bits"])
        if not check.ok:
            sys.stderr.write(check.format_table() + "\n")
            sys.stderr.write(f"snnsim: {args.trace}: the trace disagrees with the core's arithmetic; not simulated\n")
            return 1
    report = simulate(hw, wl, progress=_Progress(args.progress))
    written: list[Path] = []
    if outdir is not None:
        from .fileio import writing

        with _undo_on_failure([outdir / n for n in names], outdir):
            _safe_write(outdir / "report.json", writers.to_json(report), True)
            _safe_write(outdir / "report.csv", writers.to_csv(report, summary_rows=True), True)
            if not args.no_plots:
                from .report.plots import write_plots

                with writing(*(outdir / n for n in RUN_PLOT_FILES)):
                    write_plots(report, outdir)
            elif args.overwrite:
                for name in RUN_PLOT_FILES:  # stale plots of an earlier run; only these names
                    stale = outdir / name
                    if os.path.lexists(stale) and not stale.is_dir():
                        with writing(stale):
                            stale.unlink()
        written = [outdir / n for n in (RUN_REPORT_FILES if args.no_plots else names)]
    if fmt == "summary":
        _emit(writers.summary_line(report, written))
    elif fmt == "csv":
        _emit(writers.to_csv(report, summary_rows=True))
    else:
        _emit({"table": writers.format_table, "json": writers.to_json}[fmt](report))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .hwconfig import load_hardware
    from .report import writers
    from .simulation import simulate
    from .workload.trace import load_workload

    if len(args.hwconfigs) < 2:
        raise UsageError("compare needs at least two hwconfigs and a trace", key="compare",
                         expected="HWCONFIG HWCONFIG [...] TRACE", found=" ".join(args.hwconfigs + [args.trace]))
    fmt = _default_format(args.format, summary=True)
    hws = [load_hardware(h, args.overrides) for h in args.hwconfigs]
    labels = args.labels.split(",") if args.labels else [h.name for h in hws]
    if len(labels) != len(hws):
        raise UsageError("one label per hwconfig", key="--labels", expected=f"{len(hws)} labels",
                         found=f"{len(labels)}: {args.labels}")
    per_chip = _chip_overrides(args.chip_overrides, labels)
    for i, items in enumerate(per_chip):
        if items:
            hws[i] = _load_with(args.hwconfigs[i], args.overrides, items, i + 1)
    if not args.labels:  # a --set-for name=... renames its chip
        labels = [h.name for h in hws]
    wl = load_workload(args.trace)
    outdir = _prepare_outdir(args.output, COMPARE_FILES, args.overwrite, [*args.hwconfigs, args.trace]) \
        if args.output else None
    reports = [simulate(h, wl) for h in hws]
    if outdir is not None:
        from .fileio import writing
        from .report.plots import compare_plot

        with _undo_on_failure([outdir / n for n in COMPARE_FILES], outdir):
            _safe_write(outdir / "compare.json", writers.compare_json(reports, labels), True)
            _safe_write(outdir / "compare.csv", writers.compare_csv(reports, labels), True)
            with writing(outdir / "compare.png"):
                compare_plot(reports, labels, outdir / "compare.png")
    if fmt == "summary":
        written = [outdir / n for n in COMPARE_FILES] if outdir is not None else []
        _emit(writers.compare_summary_line(reports, labels, written))
        return 0
    out = {"table": writers.format_compare, "json": writers.compare_json, "csv": writers.compare_csv}[fmt]
    _emit(out(reports, labels))
    return 0


_POSITION = re.compile(r"[+-]?[0-9]+")


def _chip_index(chip: str, labels: Sequence[str]) -> int:
    """The 0-based index of the chip ``chip`` names: its 1-based position, or its label."""
    from .errors import UsageError, nearest

    n = len(labels)
    listing = ", ".join(f"{i} = {lb}" for i, lb in enumerate(labels, 1))
    text = chip.strip()
    if _POSITION.fullmatch(text):
        pos = int(text)
        if 1 <= pos <= n:
            return pos - 1
        raise UsageError("no chip at this position", key="--set-for",
                         expected=f"a position from 1 to {n}, or a label", found=chip,
                         suggestion=f"positions count the hwconfigs from 1: {listing}")
    hits = [i for i, lb in enumerate(labels) if lb == text]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UsageError("two or more chips have this label", key="--set-for",
                         expected="a label of one chip, or a position", found=chip,
                         suggestion=f"name the chip by its position: {listing}")
    best = nearest(text, labels)
    raise UsageError("no chip has this label", key="--set-for",
                     expected=f"a position from 1 to {n}, or a label", found=chip,
                     suggestion=f"{f'did you mean {best!r}? ' if best else ''}the chips are {listing}")


def _chip_overrides(items: Sequence[Sequence[str]], labels: Sequence[str]) -> list[list[str]]:
    """The ``--set-for CHIP KEY=VALUE`` items of each chip, in order; each is parsed as --set's are."""
    from .errors import ConfigError
    from .hwconfig import parse_overrides

    per_chip: list[list[str]] = [[] for _ in labels]
    for chip, item in items:
        index = _chip_index(chip, labels)
        try:
            parse_overrides([item], source="--set-for")
        except ConfigError as e:
            raise ConfigError(e.message, file=e.file, key=e.key, expected=e.expected, found=e.found,
                              suggestion=f"for example --set-for {index + 1} link.lanes=4") from None
        per_chip[index].append(item)
    return per_chip


def _load_with(hwconfig: str, overrides: Sequence[str], chip_items: Sequence[str], position: int):
    """Load one chip of ``compare`` with the --set items, then its own --set-for items. The chip
    has loaded with the --set items alone, so an error about an override here is about one of
    its --set-for items: it names ``--set-for POSITION``."""
    from .errors import ConfigError
    from .hwconfig import OVERRIDE_SOURCE, load_hardware

    try:
        return load_hardware(hwconfig, [*overrides, *chip_items])
    except ConfigError as e:
        if e.file != OVERRIDE_SOURCE:
            raise
        raise ConfigError(e.message, file=f"--set-for {position}", key=e.key, expected=e.expected,
                          found=e.found, suggestion=e.suggestion) from None


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from .errors import UsageError

    fmt = _default_format(args.format)
    if args.tech is not None:
        from .energy import available_tables, load_energy_table

        if args.tech == "":
            tables = {n: load_energy_table(n).description for n in available_tables()}
            if fmt == "json":
                _emit(json.dumps(tables, indent=1))
            else:
                _emit("\n".join(f"{n}: {d}" for n, d in tables.items()))
            return 0
        t = load_energy_table(args.tech)
        if fmt == "json":
            _emit(json.dumps(t.as_dict(), indent=1))
            return 0
        lines = [f"technology table {t.name}: {t.description}", ""]
        for e in t.entries.values():
            lines.append(f"  {e.name:24s} {e.value:>10g} {e.unit:3s}  per {e.per}\n  {'':24s} source: {e.source}")
        _emit("\n".join(lines))
        return 0
    if not args.trace:
        raise UsageError("info needs a trace or --tech", key="info", expected="snnsim info TRACE | snnsim info --tech",
                         found="nothing")
    from .workload.trace import load_workload

    wl = load_workload(args.trace)
    rates = {}
    for layer in wl.layers:
        if layer.spiking:
            c = wl.spike_counts(layer.name)
            rates[layer.name] = float(c.sum()) / (layer.out_size * wl.samples * wl.time_steps)
    gt = None
    if wl.format_version == 2:
        from .workload.graphtrace import load_graph_trace, manifest_of

        gt = load_graph_trace(args.trace)
    if fmt == "json":
        man = manifest_of(gt) if gt is not None else wl.manifest()
        if gt is not None:
            man["arrays"] = sorted([*gt.recorded, *gt.arrays])
        man["spike_rates"] = rates
        man["file"] = wl.source
        _emit(json.dumps(man, indent=1))
        return 0
    if gt is not None:
        n_w = sum(1 for k in gt.arrays if k.startswith("weights/"))
        per_neuron = sum(1 for k in gt.arrays if k.startswith("params/"))
        held = f"weights  {n_w} nodes   neuron parameter arrays {per_neuron}   format v2 ({len(gt.nodes)} nodes)"
    else:
        held = f"weights  {len(wl.weights)} layers   per-channel thresholds {len(wl.thresholds)} layers"
    lines = [f"trace    {wl.source}", f"model    {wl.model}", f"dataset  {wl.dataset}",
             f"samples  {wl.samples}   time steps {wl.time_steps}   encoding {wl.encoding}",
             f"input    {list(wl.input_shape)} float32", held, "",
             f"{'layer':22s} {'op':24s} {'inputs':28s} {'out shape':16s} {'neuron':16s} {'rate':>7s}"]
    from .report.ops import describe_parts

    for layer in wl.layers:
        if layer.parts is not None:
            p = layer.parts
            neuron = str(p.neuron.params.get("model")) if p.neuron is not None else f"({p.output.kind})"
            op = describe_parts(layer)
        else:
            neuron = layer.neuron.model if layer.neuron else ("(spikes)" if layer.spiking else "-")
            op = layer.op
        rate = f"{rates[layer.name]:.4f}" if layer.name in rates else "-"
        ins = ",".join(layer.inputs)
        lines.append(f"{layer.name:22s} {op[:24]:24s} {ins[:28]:28s} {str(list(layer.out_shape)):16s} "
                     f"{neuron[:16]:16s} {rate:>7s}")
    prov = wl.provenance
    if prov:
        lines += ["", "provenance:"] + [f"  {k}: {v}" for k, v in prov.items() if not isinstance(v, (dict, list))]
    _emit("\n".join(lines))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    import json

    from .verify_graph import verify_path

    membrane_bits, input_bits = 16, 8
    if args.hwconfig:
        from .hwconfig import load_hardware

        hw = load_hardware(args.hwconfig, args.overrides)
        membrane_bits, input_bits = hw["core"]["membrane_bits"], hw["core"]["input_bits"]
    elif args.overrides:
        from .errors import UsageError

        raise UsageError("--set needs --hwconfig", key="--set", expected="--hwconfig FILE with --set",
                         found=" ".join(args.overrides))
    membrane_bits = args.membrane_bits or membrane_bits
    input_bits = args.input_bits or input_bits
    # a v1 file: the v1 verifier, as before; a v2 file: its graph, recomputed node by node
    result = verify_path(args.trace, membrane_bits=membrane_bits, input_bits=input_bits, arithmetic=args.arithmetic)
    fmt = _default_format(args.format)
    if fmt == "json":
        _emit(json.dumps(result.to_dict(), indent=1))
    elif fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["layer", "op", "status", "neurons_checked", "mismatches", "within_tolerance", "arithmetic",
                    "note"])
        for c in result.layers:
            w.writerow([c.name, c.op, c.status, c.neurons_checked, c.mismatches, c.within_tolerance, c.arithmetic,
                        c.note])
        _emit(buf.getvalue())
    else:
        _emit(result.format_table())
    return 0 if result.ok else 1


def cmd_validate(args: argparse.Namespace) -> int:
    from .hwconfig import load_hardware, parse_overrides
    from .workload.trace import load_workload

    if args.overrides:
        from .errors import UsageError

        parse_overrides(args.overrides)  # a malformed item fails whatever the files are
        if all(f.endswith(".npz") for f in args.files):
            raise UsageError("--set needs a hwconfig among the files", key="--set",
                             expected="a hwconfig FILE (.yaml) with --set", found=" ".join(args.overrides),
                             suggestion="add the hwconfig the overrides apply to, or drop --set")
    hws, wls = [], []
    for f in args.files:
        if f.endswith(".npz"):
            wl = load_workload(f)
            wls.append(wl)
            _emit(f"{f}: valid trace (format v{wl.format_version}, {len(wl.layers)} layers, {wl.samples} samples, "
                  f"{wl.time_steps} steps)")
        else:
            hw = load_hardware(f, args.overrides)
            hws.append(hw)
            target = hw["mapping"]["target"]
            if target == "loihi":
                what = f"Loihi-class target, preset {hw['loihi']['preset']}, {hw['loihi']['chips']} chip(s)"
            elif target == "ncs2":
                what = "NCS2-class dense target"
            else:
                entry = "frames from DRAM" if hw["mapping"]["input"] == "dram" else f"sensor {hw['sensor']['kind']}"
                what = f"{entry}, technology {hw.energy.name}"
            _emit(f"{f}: valid hwconfig '{hw.name}' ({what})")
    if not (hws and wls):
        return 0
    # every hwconfig with every trace: all the mismatches of a pair at once, not one per run
    from .hw.fit import fit_problems

    failed = False
    for hw in hws:
        for wl in wls:
            problems = fit_problems(hw, wl)
            if not problems:
                _emit(f"{hw.source} + {wl.source}: the trace fits the chip")
                continue
            failed = True
            lines = [f"{hw.source} + {wl.source}: {len(problems)} problem{'s' if len(problems) > 1 else ''}"]
            for i, p in enumerate(problems, 1):
                body = p.render().splitlines()
                lines += [f"  {i}. {body[0]}"] + [f"     {line.strip()}" for line in body[1:]]
            sys.stderr.write("snnsim: error: " + "\n".join(lines) + "\n")
    return EXIT_USAGE if failed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from .schema import json_schema, markdown_reference

    out = _output_file(args.output, args.overwrite) if args.output else None
    text = markdown_reference() if args.markdown else json.dumps(json_schema(), indent=1)
    if out is not None:
        _safe_write(out, text + "\n", overwrite=True)
    else:
        _emit(text)
    return 0


def cmd_workload(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .errors import UsageError

    if args.wverb == "from-nir":
        return cmd_from_nir(args)
    if args.wverb == "to-nir":
        return cmd_to_nir(args)
    if args.wverb != "synth":
        parser.parse_args(["workload", "--help"])
        return EXIT_USAGE
    from .workload.synth import TOPOLOGIES, synthesize

    if args.list:
        _emit("\n".join(f"{k:12s} {v}" for k, v in TOPOLOGIES.items()))
        return 0
    if not args.output:
        raise UsageError("synth needs an output file", key="-o", expected="-o FILE.npz", found="nothing")
    out = _output_file(args.output, args.overwrite)
    from .fileio import writing
    from .workload.graphtrace import from_v1, save_graph_trace

    wl = synthesize(args.topology, samples=args.samples, time_steps=args.time_steps,
                    out_channels=args.out_channels, image_size=args.image_size, seed=args.seed,
                    target_rate=args.target_rate, first_layer_rate=args.first_layer_rate,
                    first_layer_weight_bits=args.first_layer_weight_bits,
                    **({"membrane_bits": args.membrane_bits} if args.membrane_bits else {}))
    with writing(out), _undo_on_failure([out]):
        save_graph_trace(from_v1(wl), out)  # format v2 (of v1's constructs: IF neurons, no bias)
    _emit(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {wl.model}, {wl.samples} samples, "
          f"{wl.time_steps} steps, {len(wl.layers)} layers")
    return 0


def _new_output(args: argparse.Namespace, what: str, *extra: str | None,
                inputs: Iterable[str | None] = ()) -> list[Path]:
    """The checked output files of a workload action (``-o`` and ``extra``, e.g. --data): see
    :func:`_output_file`; two outputs may not name the same file either."""
    from .errors import UsageError
    from .fileio import same_file

    if not args.output:
        raise UsageError(f"{what} needs an output file", key="-o", expected="-o FILE", found="nothing")
    inputs = list(inputs)
    outs = [_output_file(p, args.overwrite, inputs) for p in (args.output, *extra) if p]
    if len(outs) == 2 and same_file(outs[0], outs[1]):
        raise UsageError("-o and --data name the same file", file=str(outs[0]), expected="two different files",
                         found=f"{outs[0]} and {outs[1]}", suggestion="give --data another name")
    return outs


def cmd_from_nir(args: argparse.Namespace) -> int:
    from .export.nir import workload_from_nir
    from .fileio import writing
    from .workload.graphtrace import load_graph_trace, save_graph_trace

    (out,) = _new_output(args, "from-nir", inputs=[args.graph, args.spikes, args.inputs])
    made = workload_from_nir(args.graph, spikes=args.spikes, inputs=args.inputs, time_steps=args.time_steps,
                             dt=args.dt, weight_bits=args.weight_bits, model=args.model, dataset=args.dataset)
    with writing(out), _undo_on_failure([out]):
        save_graph_trace(made, out)
    gt = load_graph_trace(out)
    _emit(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {gt.model}, {gt.samples} samples, "
          f"{gt.time_steps} steps, {len(gt.nodes)} nodes ({len(gt.recorded)} recorded); "
          f"spikes {gt.provenance.get('spikes', '?')}")
    for note in gt.provenance.get("notes", []):
        _emit(f"note: {note}")
    return 0


def cmd_to_nir(args: argparse.Namespace) -> int:
    import json

    from .export.nir import workload_to_nir, write_nir
    from .fileio import writing
    from .workload.graphtrace import load_graph_trace

    outs = _new_output(args, "to-nir", args.data, inputs=[args.trace])
    gt = load_graph_trace(args.trace)
    with writing(*outs), _undo_on_failure(outs):
        write_nir(gt, outs[0], dt=args.dt, data_path=args.data, approximate=args.approximate)
    _emit(f"wrote {outs[0]}" + (f" and {args.data}" if args.data else "") + f" ({len(gt.nodes)} nodes)")
    if args.approximate:
        notes = workload_to_nir(gt, args.dt, approximate=True).metadata.get("snnsim_notes")
        for note in json.loads(notes) if notes else []:
            _emit(f"note: {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``snnsim`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        _emit(f"snnsim {__version__}")
        return 0
    if not args.verb:
        parser.print_help()
        return EXIT_USAGE
    from .errors import SnnsimError

    try:
        if args.verb == "workload":
            return cmd_workload(args, parser)
        if args.verb == "sweep":
            from .cli_sweep import cmd_sweep

            return cmd_sweep(args)
        if args.verb == "plot":
            from .cli_plot import cmd_plot

            return cmd_plot(args)
        return {"run": cmd_run, "compare": cmd_compare, "info": cmd_info, "validate": cmd_validate,
                "verify": cmd_verify, "schema": cmd_schema}[args.verb](args)
    except SnnsimError as e:
        sys.stderr.write(f"snnsim: error: {e.render()}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("snnsim: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # not met on purpose: still one message and status 2, never a traceback
        where = f"{os.fsdecode(e.filename)}: " if e.filename else ""
        sys.stderr.write(f"snnsim: error: {where}{e.strerror or e}\n")
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
