"""The command line: every verb end to end, and bad input -> one message, exit 2, nothing written."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from snnsim.cli import main


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_does_not_import_numba():
    code = ("import sys\nfrom snnsim.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'numba' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "usage: snnsim" in r.stdout


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "snnsim", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("snnsim ")


def test_run_formats_and_outputs(tiny_hw_files, tiny_trace, tmp_path, capsys):
    p2m, _ = tiny_hw_files
    code, out, err = run(["run", p2m, tiny_trace, "--format", "json"], capsys)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["schema"] == "snnsim-report"
    assert rep["summary"]["bandwidth"]["payload_bits_per_frame"] == 8 * 4 * 4 * 3  # C_o W_o H_o T
    code, out, _ = run(["run", p2m, tiny_trace, "--format", "csv"], capsys)
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["sample", "layer", "step", "component", "metric", "value", "unit"]
    assert any(r[3] == "summary" for r in rows[1:])
    code, out, _ = run(["run", p2m, tiny_trace, "--format", "table"], capsys)
    assert "Bandwidth" in out and "reduction" in out
    outdir = tmp_path / "out"
    code, _, err = run(["run", p2m, tiny_trace, "-o", outdir, "--format", "json"], capsys)
    assert code == 0, err
    names = sorted(p.name for p in outdir.iterdir())
    assert names == ["activity.png", "energy_breakdown.png", "layer_cycles.png", "layer_energy.png",
                     "report.csv", "report.json"]
    before = (outdir / "report.json").read_bytes()
    code, _, err = run(["run", p2m, tiny_trace, "-o", outdir], capsys)
    assert code == 2 and "overwrite" in err
    assert (outdir / "report.json").read_bytes() == before
    code, _, _ = run(["run", p2m, tiny_trace, "-o", outdir, "--overwrite", "--format", "json"], capsys)
    assert code == 0


def test_run_is_deterministic(tiny_hw_files, tiny_trace, capsys):
    p2m, _ = tiny_hw_files
    outs = [run(["run", p2m, tiny_trace, "--format", "json"], capsys)[1] for _ in range(2)]
    assert outs[0] == outs[1]


def test_set_changes_results(tiny_hw_files, tiny_trace, capsys):
    p2m, _ = tiny_hw_files
    a = json.loads(run(["run", p2m, tiny_trace, "--format", "json"], capsys)[1])
    b = json.loads(run(["run", p2m, tiny_trace, "--format", "json", "--set", "core.vector_width=1"], capsys)[1])
    assert b["summary"]["operations"]["core_cycles_per_frame"] > a["summary"]["operations"]["core_cycles_per_frame"]
    assert b["meta"]["hardware"]["config"]["core"]["vector_width"] == 1


def test_compare(tiny_hw_files, tiny_trace, tmp_path, capsys):
    p2m, base = tiny_hw_files
    code, out, err = run(["compare", p2m, base, tiny_trace, "--format", "json", "-o", tmp_path / "c"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["labels"] == ["tiny-p2m", "tiny-base"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["compare.csv", "compare.json", "compare.png"]
    code, out, _ = run(["compare", p2m, base, tiny_trace, "--format", "table", "--labels", "P,B"], capsys)
    assert "B/P" in out


def test_info_validate_schema(tiny_hw_files, tiny_trace, capsys):
    p2m, _ = tiny_hw_files
    code, out, _ = run(["info", tiny_trace, "--format", "table"], capsys)
    assert code == 0 and "c1" in out and "conv2d" in out
    code, out, _ = run(["info", tiny_trace, "--format", "json"], capsys)
    assert set(json.loads(out)["spike_rates"]) == {"c0", "c1", "f"}
    code, out, _ = run(["validate", p2m, tiny_trace], capsys)
    assert code == 0 and out.count(": valid") == 2
    code, out, _ = run(["schema"], capsys)
    assert json.loads(out)["title"] == "snnsim hwconfig"
    code, out, _ = run(["info", "--tech", "p2m_paper", "--format", "table"], capsys)
    assert "source" in out and "link.bit" in out


def test_workload_synth(tmp_path, capsys):
    out = tmp_path / "s.npz"
    code, text, err = run(["workload", "synth", "--topology", "small_cnn", "--samples", "2", "--time-steps", "2",
                           "--out-channels", "8", "-o", out], capsys)
    assert code == 0, err
    assert out.exists()
    code, _, err = run(["workload", "synth", "--topology", "small_cnn", "-o", out], capsys)
    assert code == 2 and "overwrite" in err
    code, _, err = run(["workload", "synth", "--topology", "resnet19", "-o", tmp_path / "x.npz"], capsys)
    assert code == 2 and "resnet18" in err
    assert not (tmp_path / "x.npz").exists()


BAD_YAML = {
    "malformed": "sensor:\n  kind: p2m\n link: [\n",
    "unknown key": "sensor: {}\nlink: {lane: 2}\ncore: {}\n",
    "wrong type": "sensor: {}\nlink: {lanes: two}\ncore: {}\n",
    "unit in value": "sensor: {}\nlink: {gbps_per_lane: 1.5 Gbps}\ncore: {}\n",
    "zero size": "sensor: {pixel_rows: 0}\nlink: {}\ncore: {}\n",
    "negative": "sensor: {}\nlink: {}\ncore: {clock_mhz: -1}\n",
}


@pytest.mark.parametrize("name", sorted(BAD_YAML))
def test_bad_hwconfig_exits_2(name, tiny_trace, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_YAML[name])
    outdir = tmp_path / "out"
    code, out, err = run(["run", bad, tiny_trace, "-o", outdir], capsys)
    assert code == 2
    assert str(bad) in err and "Traceback" not in err
    assert "expected" in err and "found" in err
    assert not outdir.exists()


def test_bad_trace_inputs_exit_2(tiny_hw_files, tiny_trace, tmp_path, capsys):
    p2m, _ = tiny_hw_files
    # not an npz
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"\x00" * 100)
    # truncated
    cut = tmp_path / "cut.npz"
    cut.write_bytes(tiny_trace.read_bytes()[:300])
    # pickled array inside
    with np.load(tiny_trace, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["input"] = np.array([object()], dtype=object)
    pick = tmp_path / "pickle.npz"
    np.savez(pick, **arrays)
    for f in (junk, cut, pick, tmp_path / "missing.npz"):
        code, out, err = run(["run", p2m, f], capsys)
        assert code == 2, f
        assert str(f) in err and "Traceback" not in err


def test_trace_disagrees_with_hardware(tiny_hw_files, tiny_trace, capsys):
    p2m, _ = tiny_hw_files
    code, _, err = run(["run", p2m, tiny_trace, "--set", "sensor.pixel_rows=4"], capsys)
    assert code == 2 and "larger than the pixel array" in err and "pixel_rows=8" in err
    code, _, err = run(["run", p2m, tiny_trace, "--set", "sensor.p2m.out_channels=16"], capsys)
    assert code == 2 and "out_channels=8" in err
    code, _, err = run(["run", p2m, tiny_trace, "--set", "sensor.p2m.stride=1"], capsys)
    assert code == 2 and "stride" in err


def test_usage_errors_exit_2(tiny_hw_files, tiny_trace, capsys):
    p2m, _ = tiny_hw_files
    with pytest.raises(SystemExit) as e:
        main(["run", str(p2m)])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["run", str(p2m), str(tiny_trace), "--format", "xml"])
    assert e.value.code == 2
    code, _, err = run(["run", p2m, tiny_trace, "--set", "link.lanes"], capsys)
    assert code == 2 and "key.path=value" in err
    code, _, err = run(["info"], capsys)
    assert code == 2


def test_verify_verb_and_run_verify(tmp_path, capsys):
    from snnsim.workload.synth import synthesize
    from snnsim.workload.trace import load_workload, save_workload

    good = tmp_path / "good.npz"
    save_workload(synthesize("small_vsa", samples=2, time_steps=3, seed=1), good)
    code, out, err = run(["verify", good, "--format", "table"], capsys)
    assert code == 0, err
    assert "OK" in out
    # flip one recorded spike of the second layer
    wl = load_workload(good)
    name = wl.layers[1].name
    wl.packed_spikes[name] = wl.packed_spikes[name].copy()
    wl.packed_spikes[name][0, 0, 0] ^= 0x80
    bad = tmp_path / "bad.npz"
    save_workload(wl, bad)
    code, out, _ = run(["verify", bad, "--format", "json"], capsys)
    assert code == 1
    checks = {c["name"]: c for c in json.loads(out)["layers"]}
    assert checks[name]["status"] == "mismatch"
    first = checks[name]["first_mismatch"]
    assert (first["sample"], first["step"], first["neuron"]) == (0, 0, 0)
    hw = tmp_path / "hw.yaml"
    import yaml

    hw.write_text(yaml.safe_dump({"sensor": {"kind": "conventional", "pixel_rows": 64, "pixel_cols": 64},
                                  "link": {}, "core": {"weight_bits": 1}}))
    code, _, err = run(["run", hw, bad, "--verify", "--format", "json"], capsys)
    assert code == 1 and "disagrees" in err
    code, _, err = run(["run", hw, good, "--verify", "--format", "json"], capsys)
    assert code == 0, err


def test_validate_checks_that_the_pair_fits_and_lists_every_mismatch(tiny_hw_files, tiny_trace, capsys):
    p2m, base = tiny_hw_files
    code, out, err = run(["validate", p2m, base, tiny_trace], capsys)
    assert code == 0, err
    assert out.count("the trace fits the chip") == 2
    sets = ["--set", "sensor.p2m.out_channels=16", "--set", "sensor.p2m.kernel=3", "--set", "sensor.pixel_rows=4",
            "--set", "core.membrane_sram_kib=0.001"]
    code, out, err = run(["validate", p2m, tiny_trace, *sets], capsys)
    assert code == 2
    for key in ("layers.c0.out_shape", "layers.c0.kernel", ": input:", "core.membrane_sram_kib"):
        assert key in err, key
    assert "problems" in err and "Traceback" not in err
