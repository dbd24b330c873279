"""snnsim sweep: spec expansion and checking, the results folder, resuming, failed points, the
executors agreeing bit for bit, and the Python API."""

from __future__ import annotations

import json

import pytest
import snnsim
import yaml
from snnsim.cli import main
from snnsim.errors import ConfigError, UsageError
from snnsim.sweeps import load_spec
from snnsim.sweeps.store import JOURNAL, MANIFEST, TABLE


@pytest.fixture
def files(tiny_trace, tiny_hw_files):
    return tiny_hw_files[0], tiny_trace


def write_spec(tmp_path, spec: dict, name: str = "spec.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


GRID = {"hwconfig": "p2m.yaml", "workload": "tiny.npz",
        "axes": [{"link.lanes": [1, 2, 4]}, {"core.vector_width": [2, 4]}]}


def test_grid_order_and_labels(tmp_path, files):
    s = load_spec(write_spec(tmp_path, GRID))
    assert s.axes == ["link.lanes", "core.vector_width"]
    assert [dict(p.axes) for p in s.points][:3] == [
        {"link.lanes": 1, "core.vector_width": 2}, {"link.lanes": 1, "core.vector_width": 4},
        {"link.lanes": 2, "core.vector_width": 2}]
    assert len(s.points) == 6 and {p.hwconfig for p in s.points} == {"p2m"}
    assert {p.workload for p in s.points} == {"tiny"}


def test_zip_points_and_sample(tmp_path, files):
    z = load_spec(write_spec(tmp_path, {**GRID, "axes": [{"link.lanes": [1, 2], "core.vector_width": [2, 4]}]}))
    assert [dict(p.axes) for p in z.points] == [{"link.lanes": 1, "core.vector_width": 2},
                                                {"link.lanes": 2, "core.vector_width": 4}]
    e = load_spec(write_spec(tmp_path, {"hwconfig": "p2m.yaml", "workload": "tiny.npz",
                                        "points": [{"link.lanes": 3}, {"core.clock_mhz": 250}]}))
    assert [dict(p.overrides) for p in e.points] == [{"link.lanes": 3}, {"core.clock_mhz": 250.0}]
    sample = {"hwconfig": "p2m.yaml", "workload": "tiny.npz",
              "sample": {"n": 20, "seed": 7, "axes": {"link.lanes": [1, 2, 4], "core.clock_mhz": {"uniform": [100, 500]},
                                                      "core.vector_width": {"integers": [1, 8]}}}}
    a = load_spec(write_spec(tmp_path, sample))
    b = load_spec(write_spec(tmp_path, sample, "again.yaml"))
    assert [p.axes for p in a.points] == [p.axes for p in b.points]  # the seed fixes the draw
    clocks = [dict(p.axes)["core.clock_mhz"] for p in a.points]
    assert all(100 <= c <= 500 for c in clocks) and len(set(clocks)) == 20
    assert {dict(p.axes)["core.vector_width"] for p in a.points} <= set(range(1, 9))
    other = load_spec(write_spec(tmp_path, {**sample, "sample": {**sample["sample"], "seed": 8}}, "c.yaml"))
    assert [p.axes for p in other.points] != [p.axes for p in a.points]


def test_workload_axis_zipped_with_a_key(tmp_path, files):
    import shutil

    shutil.copy(files[1], tmp_path / "tiny2.npz")
    s = load_spec(write_spec(tmp_path, {"hwconfig": "p2m.yaml", "axes": [
        {"workload": ["tiny.npz", "tiny2.npz"], "link.lanes": [1, 2]}]}))
    assert [(p.workload, dict(p.axes)) for p in s.points] == [("tiny", {"link.lanes": 1}), ("tiny2", {"link.lanes": 2})]


@pytest.mark.parametrize("spec, key, words", [
    ({**GRID, "axes": [{"link.lanse": [1, 2]}]}, "link.lanse", "did you mean 'link.lanes'"),
    ({**GRID, "axes": [{"link.lanes": ["two"]}]}, "link.lanes", "an integer"),
    ({**GRID, "axes": [{"link.lanes": [0]}]}, "link.lanes", ">= 1"),
    ({**GRID, "axes": [{"link.lanes": []}]}, "link.lanes", "empty axis"),
    ({**GRID, "axes": [{"link.lanes": [1, 2], "core.vector_width": [4]}]}, "axes[0]", "same length"),
    ({**GRID, "workload": "missing.npz"}, "workload", "not found"),
    ({**GRID, "axis": {}}, "axis", "did you mean 'axes'"),
    ({"hwconfig": "p2m.yaml", "axes": GRID["axes"]}, "workload", "no workload"),
    ({**GRID, "sample": {"n": 3, "seed": 0, "axes": {"link.lanes": [1]}}}, "sample", "one of axes, points or sample"),
    ({**GRID, "axes": None, "sample": {"n": 3, "seed": 0, "axes": {"core.clock_mhz": {"normal": [1, 2]}}}},
     "sample.axes", "did you mean"),
])
def test_bad_spec_one_message_exit_2_nothing_written(tmp_path, files, capsys, spec, key, words):
    spec = {k: v for k, v in spec.items() if v is not None}
    p = write_spec(tmp_path, spec)
    out = tmp_path / "results"
    assert main(["sweep", str(p), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnsim: error:") and key in err and words in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_unreachable_scheduler_exit_2_nothing_written(tmp_path, files, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pytest.importorskip("distributed")
    out = tmp_path / "results"
    assert main(["sweep", str(write_spec(tmp_path, GRID)), "-o", str(out), "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler" in err and str(port) in err
    assert not out.exists()


def test_dry_run_lists_points_and_writes_nothing(tmp_path, files, capsys):
    out = tmp_path / "results"
    assert main(["sweep", str(write_spec(tmp_path, GRID)), "-o", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "point,hwconfig,workload,link.lanes,core.vector_width"
    assert lines[1:] == [f"{i},p2m,tiny,{la},{vw}" for i, (la, vw) in
                         enumerate((la, vw) for la in (1, 2, 4) for vw in (2, 4))]
    assert not out.exists()


def _table(out):
    return (out / TABLE).read_bytes(), (out / JOURNAL).read_bytes()


def test_results_equal_single_runs_and_jobs_agree(tmp_path, files, capsys):
    spec = write_spec(tmp_path, GRID)
    assert main(["sweep", str(spec), "-o", str(tmp_path / "a")]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "6 points (6 ok, 0 failed)" in line and "results.csv" in line
    assert main(["sweep", str(spec), "-o", str(tmp_path / "b"), "-j", "2"]) == 0
    assert _table(tmp_path / "a") == _table(tmp_path / "b")
    rows = [json.loads(x) for x in (tmp_path / "a" / JOURNAL).read_text().splitlines()]
    assert [r["point"] for r in rows] == list(range(6))
    # each row holds exactly what a single run of that point reports
    hw = snnsim.load_hardware(str(files[0]), ["link.lanes=4", "core.vector_width=2"])
    one = snnsim.simulate(hw, snnsim.load_workload(str(files[1]))).summary
    r = rows[4]
    assert (r["link.lanes"], r["core.vector_width"]) == (4, 2)
    assert r["energy.total_pj_per_frame"] == one["energy"]["total_pj_per_frame"]
    assert r["delay.latency_ps_mean"] == one["delay"]["latency_ps_mean"]
    assert r["edp_j_s"] == one["edp_j_s"]
    assert len({x["delay.latency_ps_mean"] for x in rows}) > 1  # the axes change the result
    header = (tmp_path / "a" / TABLE).read_text().splitlines()[0].split(",")
    assert header[:7] == ["point", "status", "error", "hwconfig", "workload", "link.lanes", "core.vector_width"]


def test_failed_point_recorded_and_sweep_goes_on(tmp_path, files, capsys):
    spec = write_spec(tmp_path, {**GRID, "axes": [{"sensor.p2m.out_channels": [8, 16, 8]}]})
    out = tmp_path / "r"
    assert main(["sweep", str(spec), "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert "3 points (2 ok, 1 failed)" in cap.out and "point 1" in cap.err
    rows = [json.loads(x) for x in (out / JOURNAL).read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "out_channels" in rows[1]["error"] and "energy.total_pj_per_frame" not in rows[1]
    assert rows[0]["energy.total_pj_per_frame"] == rows[2]["energy.total_pj_per_frame"]
    csv_rows = (out / TABLE).read_text().splitlines()
    assert csv_rows[2].startswith("1,failed,")


def test_resume_skips_done_points_and_cuts_a_torn_line(tmp_path, files, capsys):
    spec = write_spec(tmp_path, GRID)
    full = tmp_path / "full"
    assert main(["sweep", str(spec), "-o", str(full)]) == 0
    part = tmp_path / "part"
    assert main(["sweep", str(spec), "-o", str(part)]) == 0
    lines = (part / JOURNAL).read_bytes().splitlines(keepends=True)
    # as if killed while the fourth line was being written, before the table
    (part / JOURNAL).write_bytes(b"".join([lines[4], lines[1], lines[0]]) + lines[2][:17])
    (part / TABLE).unlink()
    capsys.readouterr()
    assert main(["sweep", str(spec), "-o", str(part)]) == 0
    assert "3 done before, 3 now" in capsys.readouterr().out
    assert _table(part) == _table(full)
    # all done: running again changes nothing
    assert main(["sweep", str(spec), "-o", str(part)]) == 0
    assert "6 done before, 0 now" in capsys.readouterr().out
    assert _table(part) == _table(full)


def test_changed_spec_refused_unless_overwrite(tmp_path, files, capsys):
    spec = write_spec(tmp_path, GRID)
    out = tmp_path / "r"
    assert main(["sweep", str(spec), "-o", str(out)]) == 0
    before = _table(out)
    write_spec(tmp_path, {**GRID, "axes": [{"link.lanes": [1, 2]}]})
    capsys.readouterr()
    assert main(["sweep", str(spec), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds other results" in err and "--overwrite" in err and "6 points -> 2" in err
    assert _table(out) == before
    assert main(["sweep", str(spec), "-o", str(out), "--overwrite"]) == 0
    assert len((out / JOURNAL).read_text().splitlines()) == 2
    # a changed input file is a changed sweep too
    files[0].write_text(files[0].read_text().replace("lanes: 2", "lanes: 3"))
    assert main(["sweep", str(spec), "-o", str(out)]) == 2
    assert "p2m.yaml changed" in capsys.readouterr().err


def test_foreign_folder_refused(tmp_path, files, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / JOURNAL).write_text("mine\n")
    assert main(["sweep", str(write_spec(tmp_path, GRID)), "-o", str(out)]) == 2
    assert f"without {MANIFEST}" in capsys.readouterr().err
    assert (out / JOURNAL).read_text() == "mine\n"


def test_reports_per_point(tmp_path, files):
    spec = write_spec(tmp_path, {**GRID, "reports": True, "axes": [{"link.lanes": [1, 2]}]})
    snnsim.sweep(str(spec), tmp_path / "r")
    reps = sorted((tmp_path / "r" / "reports").iterdir())
    assert [p.name for p in reps] == ["point-0000000.json", "point-0000001.json"]
    doc = json.loads(reps[1].read_text())
    rows = [json.loads(x) for x in (tmp_path / "r" / JOURNAL).read_text().splitlines()]
    assert doc["summary"]["energy"]["total_pj_per_frame"] == rows[1]["energy.total_pj_per_frame"]


def test_python_api_returns_the_table(tmp_path, files, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = snnsim.sweep({"hwconfig": "p2m.yaml", "workload": "tiny.npz", "axes": {"link.lanes": [1, 2]}})
    assert len(t) == 2 and t.column("link.lanes") == [1, 2] and not t.failed
    assert t.columns[:6] == ["point", "status", "error", "hwconfig", "workload", "link.lanes"]
    assert t.to_csv().splitlines()[0].startswith("point,status,error")
    with pytest.raises(UsageError, match="did you mean"):
        t.column("energy.total_pj_per_fram")
    with pytest.raises(ConfigError, match="link.lanes"):
        snnsim.sweep({"hwconfig": "p2m.yaml", "workload": "tiny.npz", "axes": {"link.lanes": [1.5]}})
    assert not any(tmp_path.glob("*.jsonl"))  # no folder given: nothing written


def test_p2m_sweep_yaml_is_the_twin_of_sweep_sh(tmp_path):
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sh = (root / "reports" / "p2m" / "sweep.sh").read_text()
    lanes = [int(v) for v in re.search(r"for lanes in ([0-9 ]+); do", sh).group(1).split()]
    widths = [int(v) for v in re.search(r"for vw in ([0-9 ]+); do", sh).group(1).split()]
    spec = load_spec(root / "reports" / "p2m" / "sweep.yaml")
    assert [dict(p.axes) for p in spec.points] == [{"link.lanes": la, "core.vector_width": w}
                                                   for la in lanes for w in widths]
    assert set(spec.workloads.values()) == {root / "workloads" / "resnet_imagenet.npz"}
    table = snnsim.sweep(str(root / "reports" / "p2m" / "sweep.yaml"))
    hw = snnsim.load_hardware(str(root / "hwconfigs" / "p2m.yaml"), [f"link.lanes={lanes[-1]}",
                                                                     f"core.vector_width={widths[0]}"])
    one = snnsim.simulate(hw, snnsim.load_workload(str(root / "workloads" / "resnet_imagenet.npz")))
    row = table.rows[len(widths) * (len(lanes) - 1)]
    from snnsim.report.report import flatten

    assert {k: row[k] for k in flatten(one.summary)} == flatten(one.summary)


def test_energy_entries_and_dotted_names_are_sweepable(tmp_path, files):
    s = load_spec(write_spec(tmp_path, {**GRID, "axes": {"technology.overrides.p2m.adc_conversion": [10, 20.5]}}))
    assert [dict(p.overrides) for p in s.points] == [{"technology.overrides.p2m.adc_conversion": 10.0},
                                                     {"technology.overrides.p2m.adc_conversion": 20.5}]
    t = snnsim.sweep(str(write_spec(tmp_path, {**GRID, "axes": {"technology.overrides.p2m.adc_conversion": [10, 20.5]}})))
    e = t.column("energy.by_component_pj_per_frame.sensor")
    assert not t.failed and e[1] > e[0]


def test_bad_jobs_and_jobs_with_scheduler_exit_2(tmp_path, files, capsys):
    spec = str(write_spec(tmp_path, GRID))
    out = tmp_path / "r"
    assert main(["sweep", spec, "-o", str(out), "-j", "0"]) == 2
    assert "-j" in capsys.readouterr().err
    assert main(["sweep", spec, "-o", str(out), "-j", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert not out.exists()
