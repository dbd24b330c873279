"""What the command line does with the files it writes: a bad output path is one message and exit
status 2 (never a traceback); nothing a user wrote is overwritten or lost (an input named as the
output, a folder, an existing file without --overwrite); every write is atomic and a failure leaves
no temporary, no half file and no folder of its own; plots of an earlier run never mix with a new
report; a synthesis too big for the machine is refused before it allocates."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from snnsim import fileio
from snnsim.cli import RUN_PLOT_FILES, RUN_REPORT_FILES, main
from snnsim.workload.trace import Workload, load_workload, save_workload

from .conftest import make_tiny_workload

LONG = "a" * 300  # longer than any file system's name limit (255 bytes on Linux, macOS, Windows)


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden temporaries included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def weighted_trace(tmp_path) -> Path:
    """The tiny trace with weights on every synaptic layer, as to-nir needs."""
    wl = make_tiny_workload()
    rng = np.random.default_rng(0)
    weights = {"c0": rng.normal(size=(8, 3, 2, 2)).astype(np.float32),
               "c1": np.sign(rng.normal(size=(4, 8, 3, 3))).astype(np.float32),
               "fc": np.sign(rng.normal(size=(10, 64))).astype(np.float32)}
    path = tmp_path / "weighted.npz"
    save_workload(Workload(wl.layers, wl.input, wl.packed_spikes, wl.time_steps, model="tiny", dataset="random",
                           weights=weights), path)
    return path


@pytest.fixture
def nir_files(weighted_trace, tmp_path) -> tuple[Path, Path]:
    """A NIR graph and its NIRData, written from the weighted trace."""
    pytest.importorskip("nir")
    from snnsim.export.nir import write_nir

    graph, data = tmp_path / "g.nir", tmp_path / "d.nir"
    write_nir(load_workload(weighted_trace), graph, data_path=data, approximate=True)
    return graph, data


def _verb_with_output(verb: str, out: Path, tiny_hw_files, tiny_trace, weighted_trace, request) -> list:
    p2m, base = tiny_hw_files
    if verb == "run":
        return ["run", p2m, tiny_trace, "-o", out, "--format", "json"]
    if verb == "compare":
        return ["compare", p2m, base, tiny_trace, "-o", out, "--format", "json"]
    if verb == "schema":
        return ["schema", "-o", out]
    if verb == "synth":
        return ["workload", "synth", "--topology", "small_cnn", "--samples", "1", "-o", out]
    graph, data = request.getfixturevalue("nir_files")
    if verb == "from-nir":
        return ["workload", "from-nir", graph, "--spikes", data, "-o", out]
    return ["workload", "to-nir", weighted_trace, "--approximate", "-o", out]


VERBS = ("run", "compare", "schema", "synth", "from-nir", "to-nir")


# -- 1. any OSError on an output is a UsageError naming the path ---------------------------------

@pytest.mark.parametrize("verb", VERBS)
def test_too_long_output_name_is_a_usage_error(verb, tiny_hw_files, tiny_trace, weighted_trace, tmp_path,
                                               capsys, request):
    argv = _verb_with_output(verb, tmp_path / "o" / LONG, tiny_hw_files, tiny_trace, weighted_trace, request)
    before = listing(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "Traceback" not in err and "too long" in err and "shorter" in err
    assert LONG[:20] in err  # names the path
    assert listing(tmp_path) == before  # not even the parent folder o/ was made


@pytest.mark.parametrize("verb", VERBS)
def test_parent_that_is_a_file_is_a_usage_error(verb, tiny_hw_files, tiny_trace, weighted_trace, tmp_path,
                                                capsys, request):
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    code, _, err = run(_verb_with_output(verb, blocker / "sub" / "out", tiny_hw_files, tiny_trace,
                                         weighted_trace, request), capsys)
    assert code == 2
    assert "a parent of the output is a file" in err and str(blocker) in err
    assert blocker.read_text() == "mine"


def test_permission_denied_while_writing_is_a_usage_error(tiny_hw_files, tiny_trace, tmp_path, capsys,
                                                          monkeypatch):
    p2m, _ = tiny_hw_files
    before = listing(tmp_path)

    def denied(src, dst):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", denied)
    out = tmp_path / "new" / "out"
    code, _, err = run(["run", p2m, tiny_trace, "-o", out, "--format", "json"], capsys)
    assert code == 2
    assert "permission denied" in err and str(out / "report.json") in err and "Traceback" not in err
    assert ".tmp" not in err  # the temporary is not what the user asked about
    assert listing(tmp_path) == before  # no temporary, no report, not the folders new/ and new/out/


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_folder_is_refused_before_simulating(tiny_hw_files, tiny_trace, tmp_path, capsys):
    p2m, _ = tiny_hw_files
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run(["run", p2m, tiny_trace, "-o", locked / "out"], capsys)
        assert code == 2 and "permission denied" in err
        code, _, err = run(["schema", "-o", locked / "s.json"], capsys)
        assert code == 2 and "permission denied" in err
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_read_only_folder_is_refused_up_front(tmp_path, capsys, monkeypatch):
    real = os.statvfs

    class ReadOnly:
        def __init__(self, st):
            self._st = st
            self.f_flag = st.f_flag | os.ST_RDONLY

        def __getattr__(self, name):
            return getattr(self._st, name)

    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly(real(p)))
    out = tmp_path / "s.json"
    code, _, err = run(["schema", "-o", out], capsys)
    assert code == 2 and "read-only" in err and str(out) in err
    assert not out.exists()


def test_no_space_while_writing_a_trace(tmp_path, capsys, monkeypatch):
    from snnsim.workload import trace

    def full(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    from snnsim.workload import graphtrace

    monkeypatch.setattr(trace, "atomic_write", full)
    monkeypatch.setattr(graphtrace, "atomic_write", full)
    out = tmp_path / "t.npz"
    code, _, err = run(["workload", "synth", "--topology", "small_cnn", "--samples", "1", "-o", out], capsys)
    assert code == 2 and "no space" in err and str(out) in err and "Traceback" not in err


# -- 2. a folder is never an output file; no writer leaves a temporary ----------------------------

@pytest.mark.parametrize("verb", ("schema", "synth", "from-nir", "to-nir"))
def test_folder_as_output_file_is_refused_even_with_overwrite(verb, tiny_hw_files, tiny_trace, weighted_trace,
                                                              tmp_path, capsys, request):
    target = tmp_path / "a_folder"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    argv = _verb_with_output(verb, target, tiny_hw_files, tiny_trace, weighted_trace, request) + ["--overwrite"]
    before = listing(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 2 and "is a folder" in err and str(target) in err and "Traceback" not in err
    assert listing(tmp_path) == before  # nothing written, no temporary beside the folder


def test_failed_schema_write_leaves_no_temporary(tmp_path, capsys, monkeypatch):
    def broken(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))

    monkeypatch.setattr(os, "replace", broken)
    sub = tmp_path / "sub"
    sub.mkdir()
    code, _, err = run(["schema", "-o", sub / "s.json"], capsys)
    assert code == 2 and str(sub / "s.json") in err and "Traceback" not in err
    assert list(sub.iterdir()) == []


def test_atomic_write_refuses_a_folder_before_writing(tmp_path):
    calls = []
    with pytest.raises(IsADirectoryError):
        fileio.atomic_write(tmp_path, calls.append)
    assert calls == []


def test_atomic_write_takes_the_longest_legal_name(tmp_path):
    # the temporary's name is longer than the target's: it must be cut, not fail
    name = "b" * 246 + ".npz"
    save_workload(make_tiny_workload(), tmp_path / name)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert load_workload(tmp_path / name).samples == 2


def test_atomic_write_failure_removes_the_folders_it_made(tmp_path):
    def broken(tmp):
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt  # as if the run were killed while writing

    (tmp_path / "mine").mkdir()
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(tmp_path / "mine" / "a" / "b" / "f.bin", broken)
    assert listing(tmp_path) == ["mine"]


# -- 3. an output is never one of the command's inputs -------------------------------------------

def test_to_nir_refuses_to_replace_its_trace(weighted_trace, tmp_path, capsys):
    pytest.importorskip("nir")
    original = weighted_trace.read_bytes()
    link = tmp_path / "link.npz"
    os.link(weighted_trace, link)
    for out in (weighted_trace, Path(os.path.relpath(weighted_trace)), link):
        code, _, err = run(["workload", "to-nir", weighted_trace, "--approximate", "-o", out, "--overwrite"], capsys)
        assert code == 2 and "one of the command's inputs" in err, out
    code, _, err = run(["workload", "to-nir", weighted_trace, "--approximate", "-o", tmp_path / "g.nir",
                        "--data", weighted_trace, "--overwrite"], capsys)
    assert code == 2 and "one of the command's inputs" in err
    assert not (tmp_path / "g.nir").exists()
    code, _, err = run(["workload", "to-nir", weighted_trace, "--approximate", "-o", tmp_path / "g.nir", "--data",
                        tmp_path / "g.nir"], capsys)
    assert code == 2 and "same file" in err
    assert weighted_trace.read_bytes() == original


def test_from_nir_refuses_to_replace_its_inputs(nir_files, tmp_path, capsys):
    graph, data = nir_files
    kept = {p: p.read_bytes() for p in (graph, data)}
    for out in (graph, data):
        code, _, err = run(["workload", "from-nir", graph, "--spikes", data, "-o", out, "--overwrite"], capsys)
        assert code == 2 and "one of the command's inputs" in err
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 8, 8)))
    code, _, err = run(["workload", "from-nir", graph, "--inputs", x, "--time-steps", "2", "-o", x, "--overwrite"],
                       capsys)
    assert code == 2 and "one of the command's inputs" in err
    assert {p: p.read_bytes() for p in (graph, data)} == kept
    assert np.load(x).shape == (1, 3, 8, 8)


def test_run_and_compare_never_write_over_an_input(tiny_hw_files, tiny_trace, tmp_path, capsys):
    p2m, base = tiny_hw_files
    trace_bytes = tiny_trace.read_bytes()
    code, _, err = run(["run", p2m, tiny_trace, "-o", tiny_trace, "--overwrite"], capsys)
    assert code == 2 and "not a directory" in err
    # a hwconfig that happens to sit in DIR under a name compare writes (JSON is YAML)
    import yaml

    folder = tmp_path / "cmp"
    folder.mkdir()
    hw = folder / "compare.json"
    hw.write_text(json.dumps(yaml.safe_load(p2m.read_text())))
    kept = hw.read_bytes()
    code, _, err = run(["compare", hw, base, tiny_trace, "-o", folder, "--overwrite", "--format", "json"], capsys)
    assert code == 2 and "one of the command's inputs" in err and str(hw) in err
    assert hw.read_bytes() == kept and listing(folder) == ["compare.json"]
    assert tiny_trace.read_bytes() == trace_bytes


# -- 4. schema -o asks before overwriting ---------------------------------------------------------

def test_schema_refuses_to_overwrite_without_overwrite(tmp_path, capsys):
    out = tmp_path / "schema.json"
    out.write_text("my notes")
    code, _, err = run(["schema", "-o", out], capsys)
    assert code == 2 and "refusing to overwrite" in err and "--overwrite" in err
    assert out.read_text() == "my notes"
    code, _, err = run(["schema", "-o", out, "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["type"] == "object"


# -- 5. a failed run leaves no folder of its own ---------------------------------------------------

def test_failed_run_leaves_no_output_folder(tiny_hw_files, tiny_trace, tmp_path, capsys):
    p2m, base = tiny_hw_files
    out = tmp_path / "new" / "deeper" / "out"
    code, _, err = run(["run", p2m, tiny_trace, "-o", out, "--set", "sensor.pixel_rows=4"], capsys)
    assert code == 2 and "larger than the pixel array" in err
    assert not (tmp_path / "new").exists()
    code, _, err = run(["compare", p2m, base, tiny_trace, "-o", out, "--set", "sensor.pixel_rows=4"], capsys)
    assert code == 2
    assert not (tmp_path / "new").exists()


def test_failed_write_removes_only_what_the_command_made(tiny_hw_files, tiny_trace, tmp_path, capsys,
                                                         monkeypatch):
    from snnsim.report import plots

    def broken(report, outdir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(outdir) / "layer_energy.png"))

    monkeypatch.setattr(plots, "write_plots", broken)
    p2m, _ = tiny_hw_files
    fresh = tmp_path / "fresh"
    code, _, err = run(["run", p2m, tiny_trace, "-o", fresh], capsys)
    assert code == 2 and "no space" in err and str(fresh / "layer_energy.png") in err
    assert not fresh.exists()
    # a folder that was there, with a file of the user's and an old report: both stay
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    (mine / "report.json").write_text("{}")
    code, _, err = run(["run", p2m, tiny_trace, "-o", mine, "--overwrite"], capsys)
    assert code == 2
    assert listing(mine) == ["notes.txt", "report.json"] and (mine / "notes.txt").read_text() == "keep"


# -- 6. plots are written atomically --------------------------------------------------------------

def test_plots_killed_while_saving_leave_the_old_png(tiny_hw_files, tiny_trace, tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    from snnsim.hwconfig import load_hardware
    from snnsim.report.plots import compare_plot, write_plots
    from snnsim.simulation import simulate

    p2m, base = tiny_hw_files
    wl = load_workload(tiny_trace)
    reports = [simulate(load_hardware(h), wl) for h in (p2m, base)]
    out = tmp_path / "plots"

    def quick(self, fname, **kw):  # stands in for rendering (slow) to make the "earlier" plots
        assert kw.get("format") == "png"  # the temporary's name ends in .tmp: the format must be given
        Path(fname).write_bytes(b"old plot")

    def killed(self, fname, **kw):
        Path(fname).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt  # as if the run were killed while saving

    monkeypatch.setattr(Figure, "tight_layout", lambda self: None)  # layout is not under test (and slow)
    monkeypatch.setattr(Figure, "savefig", quick)
    paths = write_plots(reports[0], out)
    compare_plot(reports, ["p2m", "base"], out / "compare.png")
    assert sorted(p.name for p in paths) == sorted(RUN_PLOT_FILES)  # the names run -o checks for
    assert listing(out) == sorted([*RUN_PLOT_FILES, "compare.png"])
    monkeypatch.setattr(Figure, "savefig", killed)
    with pytest.raises(KeyboardInterrupt):
        write_plots(reports[0], out)
    with pytest.raises(KeyboardInterrupt):
        compare_plot(reports, ["p2m", "base"], out / "compare.png")
    assert listing(out) == sorted([*RUN_PLOT_FILES, "compare.png"])  # no temporary left
    assert {p.read_bytes() for p in out.iterdir()} == {b"old plot"}  # no half PNG


# -- 7. --no-plots never leaves an earlier run's plots beside a new report -----------------------

def test_no_plots_treats_old_plots_as_report_files(tiny_hw_files, tiny_trace, tmp_path, capsys):
    p2m, _ = tiny_hw_files
    out = tmp_path / "out"
    out.mkdir()
    for name in RUN_PLOT_FILES:  # an earlier run's plots (their content does not matter here)
        (out / name).write_bytes(b"old plot")
    code, _, err = run(["run", p2m, tiny_trace, "-o", out, "--no-plots", "--format", "json"], capsys)
    assert code == 2 and "activity.png" in err and "--overwrite" in err
    assert listing(out) == sorted(RUN_PLOT_FILES)
    (out / "notes.txt").write_text("keep")
    (out / "my.png").write_bytes(b"mine")
    code, _, err = run(["run", p2m, tiny_trace, "-o", out, "--no-plots", "--overwrite", "--format", "json"], capsys)
    assert code == 0, err
    assert listing(out) == sorted(["my.png", "notes.txt", *RUN_REPORT_FILES])
    assert (out / "my.png").read_bytes() == b"mine" and (out / "notes.txt").read_text() == "keep"
    assert json.loads((out / "report.json").read_text())["schema"] == "snnsim-report"


def test_a_folder_under_a_report_name_is_refused(tiny_hw_files, tiny_trace, tmp_path, capsys):
    p2m, _ = tiny_hw_files
    out = tmp_path / "out"
    (out / "activity.png").mkdir(parents=True)
    code, _, err = run(["run", p2m, tiny_trace, "-o", out, "--no-plots", "--overwrite"], capsys)
    assert code == 2 and "is a folder" in err and "activity.png" in err
    assert listing(out) == ["activity.png"]


# -- 8. validate --set needs a hwconfig -----------------------------------------------------------

def test_validate_set_without_hwconfig_is_a_usage_error(tiny_hw_files, tiny_trace, capsys):
    p2m, _ = tiny_hw_files
    code, out, err = run(["validate", tiny_trace, "--set", "junk"], capsys)
    assert code == 2 and "key.path=value" in err and out == ""
    code, out, err = run(["validate", tiny_trace, "--set", "link.lanes=4"], capsys)
    assert code == 2 and "needs a hwconfig" in err and out == ""
    code, _, err = run(["validate", p2m, "--set", "junk"], capsys)
    assert code == 2 and "key.path=value" in err
    code, out, err = run(["validate", p2m, "--set", "link.lanes=4"], capsys)
    assert code == 0, err
    assert "valid hwconfig" in out


# -- 9. synth is bounded before it allocates ------------------------------------------------------

@pytest.mark.parametrize("args, key", [
    (["--samples", "0"], "samples"),
    (["--time-steps", "-1"], "time_steps"),
    (["--samples", "100000000"], "samples"),
    (["--time-steps", "10000000"], "time_steps"),
    (["--image-size", "100000"], "image_size"),
    (["--out-channels", "0"], "out_channels"),
    (["--out-channels", "1000000"], "out_channels"),
])
def test_synth_sizes_out_of_bounds(args, key, tmp_path, capsys, monkeypatch):
    from snnsim.workload import synth

    monkeypatch.setattr(synth, "_inputs", lambda *a: pytest.fail("allocated before checking"))
    out = tmp_path / "t.npz"
    code, _, err = run(["workload", "synth", *args, "-o", out], capsys)
    assert code == 2 and f"{key}:" in err and "Traceback" not in err
    assert not out.exists()


def test_synth_memory_and_work_caps_give_the_estimate(tmp_path, capsys, monkeypatch):
    from snnsim.workload import synth

    monkeypatch.setattr(synth, "_inputs", lambda *a: pytest.fail("allocated before checking"))
    out = tmp_path / "t.npz"
    code, _, err = run(["workload", "synth", "--samples", "1000", "-o", out], capsys)
    assert code == 2 and "more memory" in err and "14.5 GiB" in err and "at most 8 GiB" in err
    assert "use at most" in err and "samples at 1 time steps" in err
    code, _, err = run(["workload", "synth", "--samples", "100", "--time-steps", "2", "-o", out], capsys)
    assert code == 2 and "too long" in err and "526,950,400 neuron updates" in err and "500,000,000" in err
    assert not out.exists()
    # the suggested size fits both caps
    layers = synth.build_topology("resnet18")
    cost = synth.estimate_synthesis(layers, 94, 2)
    assert cost["neuron_steps"] <= synth.MAX_NEURON_STEPS and cost["memory_bytes"] <= synth.MAX_MEMORY_BYTES
    assert "at most 94 samples at 2 time steps" in err


def test_synth_trace_estimate_is_exact():
    from snnsim.workload.synth import estimate_synthesis, synthesize

    wl = synthesize("small_vsa", samples=2, time_steps=3, seed=1)
    actual = wl.input.nbytes + sum(a.nbytes for a in wl.packed_spikes.values())
    est = estimate_synthesis(wl.layers, 2, 3)
    assert est["trace_bytes"] == actual
    assert est["memory_bytes"] > actual
    assert est["neuron_steps"] == 2 * 3 * sum(la.out_size for la in wl.layers if la.neuron is not None)


# -- 10. help stays light -------------------------------------------------------------------------

def test_help_of_every_verb_imports_no_numpy():
    code = ("import sys\nfrom snnsim.cli import main\n"
            "for verb in (['schema'], ['workload', 'synth'], ['workload', 'to-nir'], ['run']):\n"
            "    try:\n        main([*verb, '--help'])\n    except SystemExit:\n        pass\n"
            "import snnsim.fileio\n"
            "assert 'numpy' not in sys.modules and 'numba' not in sys.modules, sorted(sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "--overwrite" in r.stdout
