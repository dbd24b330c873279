"""run and compare off a terminal: one summary line (the full JSON with --format json);
compare's --set-for (one chip's overrides) and its four-panel compare.png."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from snnsim.cli import COMPARE_FILES, RUN_PLOT_FILES, RUN_REPORT_FILES, main
from snnsim.hwconfig import load_hardware
from snnsim.report import writers
from snnsim.simulation import simulate
from snnsim.workload.trace import load_workload

ROOT = Path(__file__).resolve().parents[1]
P2M = "hwconfigs/p2m.yaml"
BASE = "hwconfigs/baseline.yaml"
TRACE = "workloads/resnet_imagenet.npz"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _report(hwconfig: str, overrides=()):
    return simulate(load_hardware(hwconfig, list(overrides)), load_workload(TRACE))


def _headline(summary: dict) -> list[str]:
    return [f"{writers.fmt_quantity(summary['energy']['total_pj_per_frame'], 'pJ')}/frame",
            f"latency {writers.fmt_quantity(summary['delay']['latency_ps_mean'], 'ps')}",
            f"EDP {summary['edp_j_s']:.4g} J*s"]


# -- run -----------------------------------------------------------------------------------------

def test_run_prints_one_summary_line_off_a_terminal(capsys):
    code, out, err = run(["run", P2M, TRACE], capsys)
    assert code == 0, err
    assert out.endswith("\n") and out.count("\n") == 1
    line = out.rstrip("\n")
    s = _report(P2M).summary
    assert line.startswith(f"snnsim run: resnet18 on p2m ({P2M}) x {TRACE}: ")
    assert f"{s['frames']} frames, T={s['time_steps']}: " in line
    for part in _headline(s):
        assert part in line
    assert f"{int(s['bandwidth']['wire_bits_per_frame']):,} bits/frame on the wire" in line
    assert "wrote" not in line
    assert re.search(r": [0-9.]+ [pnum]?J/frame, latency [0-9.]+ [pnum]?s, EDP [0-9.e+-]+ J\*s, "
                     r"[0-9,]+ bits/frame on the wire$", line), line


def test_run_summary_names_every_file_written(tmp_path, capsys):
    out_dir = tmp_path / "results"
    code, out, err = run(["run", P2M, TRACE, "-o", out_dir], capsys)
    assert code == 0, err
    assert out.count("\n") == 1
    names = [*RUN_REPORT_FILES, *RUN_PLOT_FILES]
    assert out.rstrip("\n").endswith("; wrote " + ", ".join(str(out_dir / n) for n in names))
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(names)

    bare = tmp_path / "bare"
    code, out, err = run(["run", P2M, TRACE, "-o", bare, "--no-plots"], capsys)
    assert code == 0, err
    assert out.rstrip("\n").endswith("; wrote " + ", ".join(str(bare / n) for n in RUN_REPORT_FILES))
    assert sorted(p.name for p in bare.iterdir()) == sorted(RUN_REPORT_FILES)


def test_run_format_json_is_the_full_report(capsys):
    code, out, err = run(["run", P2M, TRACE, "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out) == json.loads(writers.to_json(_report(P2M)))
    code, out, _ = run(["run", P2M, TRACE, "--format", "csv"], capsys)
    assert out == writers.to_csv(_report(P2M), summary_rows=True)
    code, out, _ = run(["run", P2M, TRACE, "--format", "table"], capsys)
    assert out == writers.format_table(_report(P2M))


def test_run_through_a_pipe_prints_the_summary_line():
    r = subprocess.run([sys.executable, "-m", "snnsim", "run", P2M, TRACE], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and r.stdout.startswith("snnsim run: resnet18 on p2m")


def test_format_help_tells_the_default(capsys):
    for verb in ("run", "compare"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "one summary line" in text and "table (default on a terminal)" in text


# -- compare -------------------------------------------------------------------------------------

def test_compare_prints_one_summary_line_with_ratios(tmp_path, capsys):
    out_dir = tmp_path / "cmp"
    code, out, err = run(["compare", P2M, BASE, TRACE, "-o", out_dir], capsys)
    assert code == 0, err
    assert out.count("\n") == 1
    line = out.rstrip("\n")
    a, b = _report(P2M).summary, _report(BASE).summary
    assert line.startswith(f"snnsim compare: resnet18 x {TRACE}: ")
    assert "ratios to p2m" in line
    chip_a, chip_b = line.split("; wrote ")[0].split(": ", 3)[3].split("; ")
    assert chip_a.startswith(f"p2m ({P2M}) ") and chip_b.startswith(f"baseline ({BASE}) ")
    for part in _headline(a):
        assert part in chip_a
    ratio = b["energy"]["total_pj_per_frame"] / a["energy"]["total_pj_per_frame"]
    assert f"{_headline(b)[0]} ({ratio:.3g}x)" in chip_b
    ratio = b["delay"]["latency_ps_mean"] / a["delay"]["latency_ps_mean"]
    assert f"{_headline(b)[1]} ({ratio:.3g}x)" in chip_b
    assert f"{_headline(b)[2]} ({b['edp_j_s'] / a['edp_j_s']:.3g}x)" in chip_b
    assert line.endswith("; wrote " + ", ".join(str(out_dir / n) for n in COMPARE_FILES))


def test_compare_format_json_is_unchanged(capsys):
    code, out, err = run(["compare", P2M, BASE, TRACE, "--format", "json"], capsys)
    assert code == 0, err
    expected = writers.compare_json([_report(P2M), _report(BASE)], ["p2m", "baseline"])
    assert json.loads(out) == json.loads(expected)
    code, out, _ = run(["compare", P2M, BASE, TRACE, "--format", "table"], capsys)
    assert out == writers.format_compare([_report(P2M), _report(BASE)], ["p2m", "baseline"])


def _compare_rows(argv, capsys) -> dict[str, dict]:
    code, out, err = run(["compare", *argv, "--format", "json"], capsys)
    assert code == 0, err
    return {row["metric"]: row for row in json.loads(out)["rows"]}


def _rows_of(report) -> dict[str, float | None]:
    return {row["metric"]: row["x"] for row in writers.compare_rows([report], ["x"])}


def test_set_for_changes_only_its_chip(capsys):
    rows = _compare_rows([P2M, P2M, TRACE, "--labels", "l2,l4", "--set-for", "2", "link.lanes=4"], capsys)
    plain, four = _rows_of(_report(P2M)), _rows_of(_report(P2M, ["link.lanes=4"]))
    assert {m: r["l2"] for m, r in rows.items()} == plain
    assert {m: r["l4"] for m, r in rows.items()} == four
    assert rows["latency_ps_mean"]["l4"] != rows["latency_ps_mean"]["l2"]
    # by label, the same
    by_label = _compare_rows([P2M, P2M, TRACE, "--labels", "l2,l4", "--set-for", "l4", "link.lanes=4"], capsys)
    assert by_label == rows
    # by hwconfig name, when no --labels
    by_name = _compare_rows([P2M, BASE, TRACE, "--set-for", "baseline", "link.lanes=4"], capsys)
    assert {m: r["p2m"] for m, r in by_name.items()} == plain
    assert {m: r["baseline"] for m, r in by_name.items()} == _rows_of(_report(BASE, ["link.lanes=4"]))


def test_set_for_applies_after_set(capsys):
    rows = _compare_rows([P2M, P2M, TRACE, "--labels", "a,b", "--set", "link.lanes=1",
                          "--set-for", "2", "link.lanes=4", "--set-for", "1", "link.gbps_per_lane=1.0"], capsys)
    assert {m: r["a"] for m, r in rows.items()} == _rows_of(_report(P2M, ["link.lanes=1", "link.gbps_per_lane=1.0"]))
    assert {m: r["b"] for m, r in rows.items()} == _rows_of(_report(P2M, ["link.lanes=4"]))


@pytest.mark.parametrize(("chip", "item", "words"), [
    ("0", "link.lanes=4", ["no chip at this position", "from 1 to 2", "found:    0", "1 = l2, 2 = l4"]),
    ("3", "link.lanes=4", ["no chip at this position", "found:    3"]),
    ("-1", "link.lanes=4", ["no chip at this position", "found:    -1"]),
    ("l3", "link.lanes=4", ["no chip has this label", "found:    l3", "did you mean 'l4'?"]),
    ("2", "link.lanes", ["key.path=value", "for example --set-for 2"]),
    ("2", "link.lanez=4", ["--set-for 2", "unknown key", "link.lanes"]),
    ("l4", "link.lanes=many", ["--set-for 2", "link.lanes", "invalid value"]),
])
def test_bad_set_for_exits_2_and_writes_nothing(chip, item, words, tmp_path, capsys):
    out_dir = tmp_path / "never"
    code, out, err = run(["compare", P2M, P2M, TRACE, "--labels", "l2,l4", "--set-for", chip, item,
                          "-o", out_dir], capsys)
    assert code == 2 and out == ""
    assert err.startswith("snnsim: error: --set-for") and "Traceback" not in err
    assert "expected:" in err and ("found:" in err or "hint:" in err)
    for w in words:
        assert w in err, (w, err)
    assert not out_dir.exists()


def test_set_for_an_ambiguous_label_asks_for_the_position(capsys):
    code, _, err = run(["compare", P2M, P2M, TRACE, "--set-for", "p2m", "link.lanes=4"], capsys)
    assert code == 2
    assert "--set-for" in err and "two or more chips" in err and "1 = p2m, 2 = p2m" in err


def test_set_for_needs_two_values():
    with pytest.raises(SystemExit) as e:
        main(["compare", P2M, P2M, TRACE, "--set-for", "2"])
    assert e.value.code == 2


# -- compare.png ---------------------------------------------------------------------------------

def test_compare_png_is_a_deterministic_png(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        code, _, err = run(["compare", P2M, BASE, TRACE, "-o", d], capsys)
        assert code == 0, err
    png = (first / "compare.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert png == (second / "compare.png").read_bytes()
    assert sorted(p.name for p in first.iterdir()) == sorted(COMPARE_FILES)


def test_compare_plot_has_the_four_panels(tmp_path, monkeypatch):
    from snnsim.report import plots

    figures = []
    real = plots._save

    def keep(fig, path):
        figures.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    reports = [_report(P2M), _report(BASE)]
    path = plots.compare_plot(reports, ["p2m", "baseline"], tmp_path / "compare.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    (fig,) = figures
    axes = fig.get_axes()
    assert len(axes) == 4
    titles = " | ".join(ax.get_title() for ax in axes)
    for word in ("Energy", "traffic", "Latency", "EDP"):
        assert word in titles
    units = ["J)", "bits", "(ms", "(J*s"]  # a unit on every value axis
    for ax, unit in zip(axes, units, strict=True):
        assert unit in ax.get_ylabel(), ax.get_ylabel()
        assert ax.get_xlabel()
    edp_ax = axes[3]
    shown = [t.get_text() for t in edp_ax.texts]
    assert shown == [f"{r.summary['edp_j_s']:.3g}" for r in reports]


def test_compare_plot_goes_logarithmic_for_wide_edp(tmp_path, monkeypatch):
    from snnsim.report import plots

    figures = []
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), real(fig, path))[1])
    a, b = _report(P2M), _report(BASE)
    b.summary["edp_j_s"] = a.summary["edp_j_s"] * 1000.0
    plots.compare_plot([a, b], ["a", "b"], tmp_path / "wide.png")
    edp_ax = figures[0].get_axes()[3]
    assert edp_ax.get_yscale() == "log" and "log scale" in edp_ax.get_ylabel()
