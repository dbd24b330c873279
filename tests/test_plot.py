"""`snnsim plot`: figures of saved reports and of sweep tables; refusals; reproducible bytes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import snnsim
from snnsim.cli import main
from snnsim.report import writers
from snnsim.report.figures import load_sweep, pareto_front, report_from_dict
from snnsim.report.units import axis_label, quantity

ROOT = Path(__file__).resolve().parents[1]
MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF"}


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """A folder with the report.json of resnet18 on p2m (what `snnsim run -o DIR` writes)."""
    rep = snnsim.simulate(snnsim.load_hardware(str(ROOT / "hwconfigs" / "p2m.yaml")),
                          snnsim.load_workload(str(ROOT / "workloads" / "resnet_imagenet.npz")))
    d = tmp_path_factory.mktemp("report")
    (d / "report.json").write_text(writers.to_json(rep), encoding="utf-8")
    return d


def _energy(wl: str, lanes: int, width: int) -> float:
    return 1e8 * (1 + lanes / 4) * (32 / width) * (2 if wl == "lenet" else 1)


def _latency(lanes: int, width: int) -> float:
    return 4e10 / lanes / (width / 16)


@pytest.fixture
def sweep_dir(tmp_path) -> Path:
    """2 workloads x link.lanes {1, 2, 4} x core.vector_width {16, 32}, and one failed row."""
    cols = ["point", "status", "error", "hwconfig", "workload", "link.lanes", "core.vector_width",
            "energy.total_pj_per_frame", "delay.latency_ps_mean", "edp_j_s",
            "delay.throughput_fps"]
    rows, i = [], 0
    for wl in ("resnet18", "lenet"):
        for lanes in (1, 2, 4):
            for width in (16, 32):
                e, lat = _energy(wl, lanes, width), _latency(lanes, width)
                rows.append([i, "ok", "", "p2m", wl, lanes, width, e, lat, e * lat * 1e-24,
                             1e12 / lat])
                i += 1
    rows.append([i, "failed", "out of SRAM", "p2m", "lenet", 8, 32, "", "", "", ""])
    d = tmp_path / "sweep"
    d.mkdir()
    with open(d / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)
    (d / "sweep.json").write_text(json.dumps({"schema": "snnsim-sweep",
                                              "axes": ["link.lanes", "core.vector_width"]}))
    return d


# -- Pareto front and units ----------------------------------------------------------------------

def test_pareto_front_minimize_with_ties_and_duplicates():
    xs = [1, 2, 2, 3, 4, 1, 5, 3, None]
    ys = [5, 3, 3, 4, 1, 6, 1, 2, 0]
    # (1,5) front; (2,3) twice: duplicates both kept; (3,4) dominated by (2,3); (4,1) front;
    # (1,6) dominated by (1,5) (same x, worse y); (5,1) dominated by (4,1) (same y, worse x);
    # (3,2) front; the point with a missing x never is
    assert pareto_front(xs, ys) == [0, 1, 2, 4, 7]


def test_pareto_front_maximize():
    xs, ys = [1, 2, 3, 3], [10, 30, 20, 30]
    assert pareto_front(xs, ys, maximize=(False, True)) == [0, 1]
    assert pareto_front(xs, ys, maximize=(True, True)) == [3]
    assert pareto_front([], []) == []


def test_units_are_fixed_per_quantity():
    assert axis_label("energy.total_pj_per_frame").endswith("(\u00b5J)")
    assert axis_label("energy.by_component_pj_per_frame.core").endswith("(\u00b5J)")
    assert axis_label("delay.latency_ps_mean").endswith("(ms)")
    assert axis_label("delay.makespan_ps").endswith("(ms)")
    assert quantity("delay.latency_ps_mean").scale == 1e-9
    assert quantity("energy.total_pj_per_frame").scale == 1e-6
    assert (quantity("edp_j_s").unit, quantity("edp_j_s").scale) == ("\u00b5J\u00b7ms", 1e9)
    assert axis_label("bandwidth.wire_bits_per_frame").endswith("(kbit)")
    assert axis_label("operations.synaptic_ops_per_frame").endswith("(count)")
    assert axis_label("activity.spike_rate").endswith("(spikes/neuron/step)")


# -- report figures ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["breakdown", "layers", "steps"])
def test_report_figures_png_pdf_svg(report_dir, tmp_path, capsys, kind):
    outs = [tmp_path / f"{kind}{s}" for s in (".png", ".pdf", ".svg")]
    code, out, err = run(["plot", report_dir, "--kind", kind, *sum((["-o", o] for o in outs), [])],
                         capsys)
    assert code == 0, err
    for o in outs:
        head = o.read_bytes()[:200]
        if o.suffix == ".svg":
            assert head.startswith(b"<?xml") or head.startswith(b"<svg")
        else:
            assert head.startswith(MAGIC[o.suffix])
        assert f"wrote {o}" in out
    assert not list(tmp_path.glob("*.tmp"))


def test_same_inputs_same_bytes(report_dir, tmp_path, capsys):
    files = {}
    for n in (1, 2):
        outs = [tmp_path / f"b{n}{s}" for s in (".png", ".pdf", ".svg")]
        code, _out, err = run(["plot", report_dir / "report.json", report_dir, "--labels", "a,b",
                               *sum((["-o", o] for o in outs), [])], capsys)
        assert code == 0, err
        files[n] = [o.read_bytes() for o in outs]
    assert files[1] == files[2]


def test_existing_output_refused_and_unchanged(report_dir, tmp_path, capsys):
    out = tmp_path / "fig.png"
    out.write_bytes(b"keep me")
    code, _out, err = run(["plot", report_dir, "-o", out], capsys)
    assert code == 2
    assert "refusing to overwrite an existing file" in err and "--overwrite" in err
    assert out.read_bytes() == b"keep me"
    code, _out, err = run(["plot", report_dir, "-o", out, "--overwrite"], capsys)
    assert code == 0, err
    assert out.read_bytes().startswith(MAGIC[".png"])


def test_bad_suffix_and_missing_output_refused(report_dir, tmp_path, capsys):
    code, _out, err = run(["plot", report_dir, "-o", tmp_path / "fig.jpg"], capsys)
    assert code == 2 and ".jpg" in err and ".png" in err
    assert not (tmp_path / "fig.jpg").exists()
    code, _out, err = run(["plot", report_dir], capsys)
    assert code == 2 and "-o" in err


def test_foreign_json_refused(tmp_path, capsys):
    foreign = tmp_path / "other.json"
    foreign.write_text(json.dumps({"schema": "something-else", "data": [1, 2]}))
    code, _out, err = run(["plot", foreign, "-o", tmp_path / "f.png"], capsys)
    assert code == 2
    assert str(foreign) in err and "snnsim-report" in err and "something-else" in err
    assert not (tmp_path / "f.png").exists()
    with pytest.raises(snnsim.errors.UsageError, match="no 'meta'"):
        report_from_dict({"schema": "snnsim-report", "schema_version": "1.0"}, "x.json")


def test_layers_needs_one_report(report_dir, tmp_path, capsys):
    code, _out, err = run(["plot", report_dir, report_dir, "--kind", "layers", "-o",
                           tmp_path / "l.png"], capsys)
    assert code == 2 and "one report" in err


# -- sweep figures -------------------------------------------------------------------------------

def test_load_sweep_axes_and_failed(sweep_dir, tmp_path):
    t = load_sweep(sweep_dir)
    assert t.axes == ["link.lanes", "core.vector_width"] and t.failed == 1 and len(t.rows) == 12
    # without sweep.json the axes come from the column names
    (sweep_dir / "sweep.json").unlink()
    t = load_sweep(sweep_dir / "results.csv")
    assert t.axes == ["link.lanes", "core.vector_width"]
    assert "edp_j_s" in t.metrics and "energy.total_pj_per_frame" in t.metrics


def test_sweep_pareto_heatmap_line(sweep_dir, tmp_path, capsys):
    cases = [
        ["--kind", "pareto", "--x", "latency", "--y", "energy"],
        ["--kind", "pareto", "--x", "latency", "--y", "throughput", "--maximize", "y",
         "--log", "x"],
        ["--kind", "heatmap", "--x", "link.lanes", "--y", "core.vector_width", "--metric",
         "energy", "--where", "workload=lenet"],
        ["--kind", "line", "--x", "link.lanes", "--metric", "edp_j_s", "--where",
         "core.vector_width=16"],
    ]
    for i, extra in enumerate(cases):
        out = tmp_path / f"s{i}.png"
        code, stdout, err = run(["plot", sweep_dir, *extra, "-o", out], capsys)
        assert code == 0, err
        assert out.read_bytes().startswith(MAGIC[".png"]) and f"wrote {out}" in stdout
        assert "1 failed point skipped" in err


def test_jsonl_source(sweep_dir, tmp_path, capsys):
    t = load_sweep(sweep_dir)
    jl = tmp_path / "results.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in t.rows))
    code, _out, err = run(["plot", jl, "--kind", "line", "--x", "core.vector_width", "--metric",
                           "energy", "--where", "link.lanes=2", "-o", tmp_path / "j.svg"], capsys)
    assert code == 0, err
    assert (tmp_path / "j.svg").read_bytes().lstrip().startswith((b"<?xml", b"<svg"))


def test_heatmap_ambiguity_refused(sweep_dir, tmp_path, capsys):
    out = tmp_path / "h.png"
    code, _out, err = run(["plot", sweep_dir, "--kind", "heatmap", "--x", "link.lanes", "--y",
                           "core.vector_width", "--metric", "energy", "-o", out], capsys)
    assert code == 2
    assert "workload" in err and "--where" in err
    assert not out.exists()
    code, _out, err = run(["plot", sweep_dir, "--kind", "heatmap", "--x", "link.lanes", "--y",
                           "workload", "--metric", "energy", "-o", out], capsys)
    assert code == 2 and "core.vector_width" in err and "--where" in err


def test_unknown_metric_and_axis(sweep_dir, tmp_path, capsys):
    code, _out, err = run(["plot", sweep_dir, "--kind", "line", "--x", "link.lanes", "--metric",
                           "energy.total_pj_per_frme", "-o", tmp_path / "u.png"], capsys)
    assert code == 2 and "unknown metric" in err and "did you mean 'energy.total_pj_per_frame'" in err
    code, _out, err = run(["plot", sweep_dir, "--kind", "line", "--x", "link.lane", "--metric",
                           "energy", "-o", tmp_path / "u.png"], capsys)
    assert code == 2 and "unknown axis" in err and "did you mean 'link.lanes'" in err
    assert not (tmp_path / "u.png").exists()


def test_where_unknown_column(sweep_dir, tmp_path, capsys):
    code, _out, err = run(["plot", sweep_dir, "--kind", "line", "--x", "link.lanes", "--metric",
                           "energy", "--where", "core.vector_widht=16", "-o", tmp_path / "w.png"],
                          capsys)
    assert code == 2 and "core.vector_width" in err
