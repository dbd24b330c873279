"""The export matrix: every model of ``models.py`` exported to a format v2 trace, replayed on a
P2M chip and on a conventional-sensor chip, and verified.

Usage: ``python reports/export_matrix/matrix.py [--out DIR]``: prints the table and writes
``results.md`` next to this file (the traces go to a temporary directory unless ``--out``).

The chips are ``hwconfigs/p2m.yaml`` and ``hwconfigs/baseline.yaml`` sized to each trace: the
pixel array to the input's rows and columns, one photodiode per pixel for a mono input and four
(Bayer RGGB) for RGB; the P2M array's kernel, stride and output channels to the trace's first
conv2d (if it has one); the in-pixel and core weight widths to the widest weights the trace
declares (the exporters record float weights as 16-bit). Everything else is the YAML's. A chip
refusing a trace must do so with a ``MappingError`` / ``WorkloadError`` / ``ConfigError`` (the
row shows its message); anything else is an error of the simulator and is shown as such.

Figures: the conventional chip's energy per frame (nJ, all components) and the spikes per frame
(the simulator's activity total), and the P2M chip's energy per frame where it runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HWCONFIGS = ROOT / "hwconfigs"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from models import MatrixModel, all_models  # noqa: E402

MAX_WEIGHT_BITS = 16  # the hwconfig schema's limit for core.weight_bits and sensor.p2m.weight_bits


@dataclass
class Outcome:
    """One chip's (or the exporter's, or verify's) verdict on one model: ``status`` is ``ok``,
    ``refused`` (a clean snnsim error: ``error_type`` and ``message``), ``error`` (anything
    else: the simulator or exporter failed), or ``skipped`` (the export failed)."""

    status: str
    message: str = ""
    error_type: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    model: MatrixModel
    export: Outcome
    p2m: Outcome
    conventional: Outcome
    verify: Outcome


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _clean(e: BaseException) -> bool:
    from snnsim.errors import SnnsimError

    return isinstance(e, SnnsimError)


def _failure(e: BaseException) -> Outcome:
    if _clean(e):  # keys and messages, not the file: the traces live in a temporary directory
        problems = getattr(e, "problems", None) or [e]  # a FitError lists several
        what = "; ".join(f"{p.key}: {p.message}" if p.key else p.message for p in problems)
        return Outcome("refused", what, type(e).__name__)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return Outcome("error", f"{type(e).__name__}: {_first_line(e)}{where}", type(e).__name__)


def chip_overrides(wl: Any, kind: str) -> list[str]:
    """``--set`` overrides sizing ``hwconfigs/<kind>.yaml`` to the trace (module docstring)."""
    shape = tuple(wl.input_shape)
    out: list[str] = []
    if len(shape) == 3:
        c, h, w = shape
        out += [f"sensor.pixel_rows={h}", f"sensor.pixel_cols={w}",
                f"sensor.photodiodes_per_pixel={4 if c == 3 else 1}"]
    bits = [int(la.weight_bits) for la in wl.layers if getattr(la, "weight_bits", None)]
    width = min(max(bits, default=1), MAX_WEIGHT_BITS)
    out.append(f"core.weight_bits={width}")
    if kind == "p2m":
        first = wl.layers[0]
        if len(first.kernel) == 2 and first.inputs == ["input"] and first.out_shape:
            out += [f"sensor.p2m.kernel={first.kernel[0]}", f"sensor.p2m.stride={first.stride[0]}",
                    f"sensor.p2m.out_channels={first.out_shape[0]}",
                    f"sensor.p2m.weight_bits={min(int(first.weight_bits or 1), MAX_WEIGHT_BITS)}"]
    return out


def run_chip(path: Path, kind: str) -> Outcome:
    """Replay the trace at ``path`` on the sized ``p2m`` or ``baseline`` chip."""
    from snnsim import load_hardware, simulate
    from snnsim.workload.trace import load_workload

    try:
        wl = load_workload(path)
        hw = load_hardware(HWCONFIGS / f"{kind}.yaml", chip_overrides(wl, kind))
        report = simulate(hw, wl)
    except Exception as e:  # noqa: BLE001 - every failure is a row of the table
        return _failure(e)
    s = report.summary
    return Outcome("ok", figures={"energy_nj": s["energy"]["total_pj_per_frame"] / 1e3,
                                  "spikes": s["activity"]["spikes_per_frame"],
                                  "in_pixel": s["layers"][0]["runs_on"] if s["layers"] else "-"})


def run_verify(path: Path) -> Outcome:
    from snnsim.verify_graph import verify_path

    try:
        v = verify_path(path)
    except Exception as e:  # noqa: BLE001
        return _failure(e)
    mism = sum(c.mismatches for c in v.layers)
    figures = {"match": v.counts.get("match", 0), "mismatch": v.counts.get("mismatch", 0),
               "skipped": v.counts.get("skipped", 0), "trains_differing": mism,
               "within_tolerance": v.within_tolerance}
    if v.ok:
        return Outcome("ok", figures=figures)
    bad = [c for c in v.layers if c.status == "mismatch"]
    msg = "; ".join(f"{c.name}: {c.mismatches}/{c.neurons_checked} trains" for c in bad)
    return Outcome("fail", msg, figures=figures)


def run_model(m: MatrixModel, out_dir: Path) -> Row:
    path = out_dir / f"{m.name}.npz"
    try:
        m.export(path)
        export = Outcome("ok")
    except Exception as e:  # noqa: BLE001
        export = _failure(e)
    if export.status != "ok":
        skipped = Outcome("skipped", "export failed")
        return Row(m, export, skipped, skipped, skipped)
    return Row(m, export, run_chip(path, "p2m"), run_chip(path, "baseline"), run_verify(path))


def run_matrix(out_dir: Path | None = None) -> list[Row]:
    """Every model's row; traces under ``out_dir`` (a temporary directory when None)."""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        return [run_model(m, out_dir) for m in all_models()]
    with tempfile.TemporaryDirectory(prefix="export_matrix_") as tmp:
        return [run_model(m, Path(tmp)) for m in all_models()]


# ----------------------------------------------------------------------------- formatting

def _cell_chip(o: Outcome, m: MatrixModel, column: str) -> str:
    bug = "BUG (known): " if column in dict(m.known_bugs) else ""
    if o.status == "ok":
        return f"{bug}ok {o.figures['energy_nj']:.1f} nJ"
    expected = m.p2m_refusal if column == "p2m" else m.conventional_refusal
    if o.status == "refused" and expected and expected in o.message:
        why = f" ({m.why_not_p2m})" if column == "p2m" and m.why_not_p2m else ""
        return f"n/a{why}: {o.error_type}: {o.message}"
    if o.status == "refused":
        return f"{bug}refused: {o.error_type}: {o.message}"
    return f"{bug}{o.status.upper()}: {o.message}"


def _cell_verify(o: Outcome, m: MatrixModel) -> str:
    f = o.figures
    bug = "BUG (known): " if "verify" in dict(m.known_bugs) else ""
    if o.status == "ok":
        tol = f", {f['within_tolerance']} within tol" if f.get("within_tolerance") else ""
        return f"pass ({f['match']} layers match, {f['mismatch']} mismatch{tol})"
    if o.status == "fail":
        return f"FAIL ({f['mismatch']} layers mismatch: {o.message})"
    return f"{bug}{o.status.upper()}: {o.message}"


def _spikes(r: Row) -> str:
    return f"{r.conventional.figures['spikes']:.1f}" if r.conventional.status == "ok" else "-"


HEADER = ("model", "framework", "constructs", "export", "P2M", "conventional", "spikes/frame", "verify")


def table_rows(rows: list[Row]) -> list[tuple[str, ...]]:
    out = []
    for r in rows:
        export = "ok" if r.export.status == "ok" else f"{r.export.status.upper()}: {r.export.message}"
        out.append((r.model.name, r.model.framework, ", ".join(r.model.constructs), export,
                    _cell_chip(r.p2m, r.model, "p2m"), _cell_chip(r.conventional, r.model, "conventional"),
                    _spikes(r), _cell_verify(r.verify, r.model)))
    return out


def format_text(rows: list[Row], width: int = 44) -> str:
    """A plain-text table (cells clipped to ``width`` characters) for a terminal."""
    cells = [HEADER, *table_rows(rows)]
    cells = [tuple(c if len(c) <= width else c[:width - 3] + "..." for c in row) for row in cells]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n" + summary(rows)


def summary(rows: list[Row]) -> str:
    def n(pred: Any) -> int:
        return sum(1 for r in rows if pred(r))

    return (f"{len(rows)} models: export ok {n(lambda r: r.export.status == 'ok')}, "
            f"P2M ok {n(lambda r: r.p2m.status == 'ok')} / refused {n(lambda r: r.p2m.status == 'refused')} / "
            f"error {n(lambda r: r.p2m.status == 'error')}, "
            f"conventional ok {n(lambda r: r.conventional.status == 'ok')} / refused "
            f"{n(lambda r: r.conventional.status == 'refused')} / error "
            f"{n(lambda r: r.conventional.status == 'error')}, "
            f"verify pass {n(lambda r: r.verify.status == 'ok')} / fail {n(lambda r: r.verify.status == 'fail')}")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_markdown(rows: list[Row]) -> str:
    versions = []
    for pkg in ("snnsim", "torch", "snntorch", "spikingjelly", "nir", "numpy", "scikit-learn"):
        try:
            versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{pkg} (not installed)")
    lines = [
        "# Export matrix",
        "",
        "Every model of `reports/export_matrix/models.py` exported to a format v2 trace, replayed on a P2M chip "
        "(`hwconfigs/p2m.yaml`) and on a conventional-sensor chip (`hwconfigs/baseline.yaml`), each sized to the "
        "trace (pixel array, colour model, P2M kernel/stride/channels, weight widths: see `matrix.py`), and "
        "verified with `snnsim.verify_graph.verify_path`. Energies are per frame, all components; spikes per "
        "frame are the conventional run's activity total.",
        "",
        "Made by: `python reports/export_matrix/matrix.py`",
        "",
        "Versions: " + ", ".join(versions),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table_rows(rows)]
    lines += ["", summary(rows), ""]
    bugs = [(r.model.name, col, bug) for r in rows for col, bug in r.model.known_bugs]
    if bugs:
        lines += ["## Known simulator bugs shown by the matrix", "",
                  "Rows whose failure is a simulator bug (not an expected refusal); the test expects each strictly, so "
                  "a fix turns it into an unexpected pass.", ""]
        lines += [f"- `{name}`, {col}: {bug}" for name, col, bug in bugs]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="keep the traces in this directory")
    ap.add_argument("--results", type=Path, default=HERE / "results.md", help="where to write the markdown table")
    args = ap.parse_args(argv)
    rows = run_matrix(args.out)
    print(format_text(rows))
    args.results.write_text(format_markdown(rows))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
