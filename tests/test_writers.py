"""Report writers: CSV/JSON round trips, the terminal table, comparisons, plots and units."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from snnsim import load_hardware, load_workload, simulate
from snnsim.report.report import COLUMNS, SCHEMA_NAME, SCHEMA_VERSION, Record, Report
from snnsim.report.writers import (
    compare_csv,
    compare_json,
    compare_rows,
    fmt_quantity,
    format_compare,
    format_table,
    to_csv,
    to_json,
    write_csv,
    write_json,
)
from snnsim.workload.graph import Layer, Neuron
from snnsim.workload.trace import Workload, pack_spikes, save_workload

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> tuple[Report, Report]:
    """(conventional, p2m) reports of the same small random workload."""
    rng = np.random.default_rng(0)
    layers = [
        Layer("c0", "conv2d", ["input"], (8, 4, 4), kernel=(2, 2), stride=(2, 2), padding=(0, 0), neuron=Neuron()),
        Layer("c1", "conv2d", ["c0"], (4, 4, 4), kernel=(3, 3), stride=(1, 1), padding=(1, 1), neuron=Neuron()),
        Layer("f", "flatten", ["c1"], (64,)),
        Layer("fc", "linear", ["f"], (10,)),
    ]
    spikes = {"c0": pack_spikes(rng.random((2, 3, 8, 4, 4)) < 0.2),
              "c1": pack_spikes(rng.random((2, 3, 4, 4, 4)) < 0.2),
              "f": pack_spikes(rng.random((2, 3, 64)) < 0.2)}
    path = tmp_path_factory.mktemp("wl") / "t.npz"
    save_workload(Workload(layers, rng.random((2, 3, 8, 8)).astype(np.float32), spikes, 3), path)
    wl = load_workload(path)
    conv = simulate(load_hardware({"sensor": {"kind": "conventional"}, "link": {}, "core": {}}), wl)
    p2m = simulate(load_hardware({"sensor": {"kind": "p2m", "p2m": {"kernel": 2, "stride": 2, "out_channels": 8}},
                                  "link": {}, "core": {}}), wl)
    return conv, p2m


def _bare(records: list[Record], meta: dict | None = None) -> Report:
    return Report(meta=meta or {}, records=records, summary={})


# -- CSV -----------------------------------------------------------------------------------------

def _opt_int(cell: str) -> int | None:
    return None if cell == "" else int(cell)


def test_csv_round_trip(reports, tmp_path):
    for rep in reports:
        text = to_csv(rep)
        rows = list(csv.reader(io.StringIO(text)))
        assert tuple(rows[0]) == COLUMNS
        body = rows[1:]
        assert len(body) == len(rep.records)
        for row, r in zip(body, rep.records, strict=True):
            assert _opt_int(row[0]) == r.sample
            assert row[1] == r.layer
            assert _opt_int(row[2]) == r.step
            assert (row[3], row[4], row[6]) == (r.component, r.metric, r.unit)
            assert float(row[5]) == r.value  # exact, not approximately
        p = write_csv(rep, tmp_path / "r.csv")
        assert p.read_bytes() == text.encode("utf-8")
        assert b"\r" not in p.read_bytes()
        assert to_csv(rep) == text


def test_csv_value_formatting():
    vals = [3.0, 0.1, 1 / 3, -2.0, 2037.6000000000001, 1e300, 2.0**60, float("nan"), float("inf"), 0.0]
    recs = [Record(None if i % 2 else i, "L", None if i % 3 else i, "core", "m", v, "pJ") for i, v in enumerate(vals)]
    rows = list(csv.reader(io.StringIO(to_csv(_bare(recs)))))[1:]
    cells = [row[5] for row in rows]
    assert cells[0] == "3" and cells[3] == "-2" and cells[9] == "0"  # integral: no ".0"
    assert cells[1] == "0.1" and cells[2] == repr(1 / 3)
    assert cells[4] == "2037.6000000000001"
    for cell, v in zip(cells, vals, strict=True):
        assert float(cell) == v or (math.isnan(v) and math.isnan(float(cell)))
    assert rows[1][0] == "" and rows[0][0] == "0"  # None sample -> empty cell
    assert rows[1][2] == "" and rows[3][2] == "3"


def test_csv_summary_rows(reports):
    conv, p2m = reports
    plain = to_csv(p2m)
    text = to_csv(p2m, summary_rows=True)
    assert text.startswith(plain)
    extra = list(csv.DictReader(io.StringIO(text)))[len(p2m.records):]
    assert extra and all(r["component"] == "summary" for r in extra)
    by = {(r["layer"], r["step"], r["metric"]): r for r in extra}
    s = p2m.summary
    tot = by[("-", "", "energy.total_pj_per_frame")]
    assert float(tot["value"]) == s["energy"]["total_pj_per_frame"] and tot["unit"] == "pJ"
    assert float(by[("-", "", "bandwidth.reduction_payload")]["value"]) == s["bandwidth"]["reduction_payload"]
    assert by[("-", "", "delay.latency_ps_mean")]["unit"] == "ps"
    assert by[("-", "", "delay.stages.link.busy_ps")]["unit"] == "ps"
    assert by[("-", "", "energy.by_component_pj_per_frame.link")]["unit"] == "pJ"
    c1 = next(la for la in s["layers"] if la["name"] == "c1")
    assert float(by[("c1", "", "layers.synaptic_ops_per_frame")]["value"]) == c1["synaptic_ops_per_frame"]
    assert float(by[("c1", "2", "layers.spike_rate_per_step")]["value"]) == c1["spike_rate_per_step"][2]
    assert by[("fc", "", "layers.spike_rate")]["value"] == ""  # not spiking: None


# -- JSON ----------------------------------------------------------------------------------------

def _strict_loads(text: str):
    def bad(token):
        raise AssertionError(f"non-standard JSON number {token}")

    return json.loads(text, parse_constant=bad)


def test_json_round_trip(reports, tmp_path):
    conv, p2m = reports
    for rep in reports:
        text = to_json(rep)
        d = _strict_loads(text)
        assert list(d)[:2] == ["schema", "schema_version"]
        assert d["schema"] == SCHEMA_NAME and d["schema_version"] == SCHEMA_VERSION
        assert d["records"]["columns"] == list(COLUMNS)
        assert len(d["records"]["rows"]) == len(rep.records)
        assert d["records"]["rows"][5] == [getattr(rep.records[5], c) for c in COLUMNS]
        assert d["summary"]["energy"]["total_pj_per_frame"] == rep.summary["energy"]["total_pj_per_frame"]
        assert d["summary"]["bandwidth"]["reduction_wire"] == rep.summary["bandwidth"]["reduction_wire"]
        assert len(d["summary"]["layers"]) == len(rep.summary["layers"])
        assert text.startswith('{\n "schema"')  # indent 1
        assert write_json(rep, tmp_path / "r.json").read_text(encoding="utf-8") == text
        assert to_json(rep) == text


def test_json_non_finite_numpy_and_key_order():
    recs = [Record(0, "L", 1, "core", "m", float("nan"), "pJ"), Record(0, "L", 2, "core", "m", float("inf"), "pJ")]
    meta1 = {"b": 1, "a": {"y": np.float64(2.5), "x": np.int64(3)}, "c": [np.float32(-np.inf), (1, 2)]}
    meta2 = {"c": [float("-inf"), [1, 2]], "a": {"x": 3, "y": 2.5}, "b": 1}
    t1, t2 = to_json(_bare(recs, meta1)), to_json(_bare(recs, meta2))
    assert t1 == t2  # stable key order regardless of insertion order
    d = _strict_loads(t1)
    assert d["meta"] == {"a": {"x": 3, "y": 2.5}, "b": 1, "c": [None, [1, 2]]}
    assert isinstance(d["meta"]["a"]["x"], int)
    assert [row[5] for row in d["records"]["rows"]] == [None, None]


# -- terminal table ------------------------------------------------------------------------------

def test_table_contains_key_figures(reports):
    conv, p2m = reports
    text = format_table(p2m)
    s = p2m.summary
    assert s["bandwidth"]["reduction_payload"] == 8.0
    assert "8.00x" in text
    assert f"{s['bandwidth']['reduction_wire']:.2f}x" in text
    assert fmt_quantity(s["energy"]["total_pj_per_frame"], "pJ") in text
    assert fmt_quantity(s["delay"]["latency_ps_mean"], "ps") in text
    assert fmt_quantity(s["edp_j_s"], "J*s") in text
    assert p2m.meta["energy_table"]["name"] in text
    for title in ("Bandwidth", "Energy per frame", "Delay", "Energy-delay product",
                  "Activity and cost per layer", "Operations"):
        assert title in text
    lines = text.splitlines()
    for la in s["layers"]:
        row = next(ln for ln in lines if ln.split()[:1] == [la["name"]])
        assert la["runs_on"] in row and la["op"] in row
        assert fmt_quantity(la["energy_pj_per_frame"], "pJ") in row
    sensor_row = next(ln for ln in lines if ln.split()[:1] == ["sensor"] and "%" in ln and "nJ" in ln)
    share = 100 * s["energy"]["by_component_pj_per_frame"]["sensor"] / s["energy"]["total_pj_per_frame"]
    assert f"{share:.1f}%" in sensor_row
    # conventional baseline: no reduction; the sensor readout and link belong to the first layer,
    # so the layers and the static energy add up to the total, and the table says where static went
    ctext = format_table(conv)
    assert "1.00x" in ctext and "in no layer" in ctext
    for rep in (p2m, conv):
        en = rep.summary["energy"]
        layers = sum(la["energy_pj_per_frame"] for la in rep.summary["layers"])
        assert layers + en["static_pj_per_frame"] == pytest.approx(en["total_pj_per_frame"], rel=1e-12)


# -- comparison ----------------------------------------------------------------------------------

def test_compare_ratio(reports):
    conv, p2m = reports
    rows = compare_rows([conv, p2m], ["conv", "p2m"])
    by = {r["metric"]: r for r in rows}
    assert by["payload_bits_per_frame"]["conv"] == conv.summary["bandwidth"]["payload_bits_per_frame"]
    assert by["payload_bits_per_frame"]["p2m/conv"] == pytest.approx(384 / 3072)
    e_c, e_p = conv.summary["energy"]["total_pj_per_frame"], p2m.summary["energy"]["total_pj_per_frame"]
    assert by["energy_pj_per_frame"]["p2m/conv"] == pytest.approx(e_p / e_c)
    link_c = conv.summary["energy"]["by_component_pj_per_frame"]["link"]
    link_p = p2m.summary["energy"]["by_component_pj_per_frame"]["link"]
    assert by["energy_link_pj_per_frame"]["p2m/conv"] == pytest.approx(link_p / link_c)
    assert by["sensor_adc_conversions_per_frame"]["p2m/conv"] == pytest.approx(0.5)
    assert by["macs_per_frame"]["p2m"] == 0.0
    for r in rows:
        a, b = r["conv"], r["p2m"]
        assert r["p2m/conv"] == (pytest.approx(b / a) if a else None)
    for metric in ("latency_ps_mean", "throughput_fps", "edp_j_s", "synaptic_ops_per_frame", "wire_bits_per_frame"):
        assert metric in by
    # reversed order gives the reciprocal
    back = {r["metric"]: r for r in compare_rows([p2m, conv], ["p2m", "conv"])}
    assert back["energy_pj_per_frame"]["conv/p2m"] == pytest.approx(e_c / e_p)
    # N reports: each relative to the first
    three = compare_rows([conv, p2m, conv], ["a", "b", "c"])
    assert all(set(r) == {"metric", "unit", "a", "b", "c", "b/a", "c/a"} for r in three)
    assert all(r["c/a"] in (1.0, None) for r in three)


def test_compare_outputs(reports):
    conv, p2m = reports
    text = format_compare([conv, p2m], ["conv", "p2m"])
    assert "p2m/conv" in text and "0.125x" in text
    assert fmt_quantity(p2m.summary["energy"]["total_pj_per_frame"], "pJ") in text
    rows = list(csv.DictReader(io.StringIO(compare_csv([conv, p2m], ["conv", "p2m"]))))
    assert list(rows[0]) == ["metric", "unit", "conv", "p2m", "p2m/conv"]
    assert len(rows) == len(compare_rows([conv, p2m], ["conv", "p2m"]))
    pay = next(r for r in rows if r["metric"] == "payload_bits_per_frame")
    assert (pay["conv"], pay["p2m"], pay["p2m/conv"]) == ("3072", "384", "0.125")
    d = _strict_loads(compare_json([conv, p2m], ["conv", "p2m"]))
    assert d["schema"] == "snnsim-compare" and d["labels"] == ["conv", "p2m"]
    assert [r["sensor"] for r in d["reports"]] == ["conventional", "p2m"]
    assert len(d["rows"]) == len(rows)
    with pytest.raises(ValueError):
        compare_rows([conv, p2m], ["only one"])
    dup = compare_rows([conv, p2m], ["unnamed", "unnamed"])  # two hwconfigs with the same name
    assert set(dup[0]) == {"metric", "unit", "unnamed", "unnamed#2", "unnamed#2/unnamed"}
    assert "unnamed#2/unnamed" in format_compare([conv, p2m], ["unnamed", "unnamed"])


# -- plots ---------------------------------------------------------------------------------------

def test_plots_are_valid_deterministic_pngs(reports, tmp_path):
    from snnsim.report.plots import compare_plot, write_plots

    conv, p2m = reports
    paths = write_plots(p2m, tmp_path / "a")
    assert sorted(p.name for p in paths) == ["activity.png", "energy_breakdown.png", "layer_cycles.png",
                                             "layer_energy.png"]
    first = {}
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
        assert b"Software" not in data and b"Matplotlib" not in data
        first[p.name] = data
    again = write_plots(p2m, tmp_path / "b")
    assert {p.name: p.read_bytes() for p in again} == first
    cp = compare_plot([conv, p2m], ["conv", "p2m"], tmp_path / "c" / "cmp.png")
    assert cp.read_bytes()[:8] == PNG_MAGIC and cp.stat().st_size > 5000


def test_import_stays_light():
    code = ("import sys, snnsim.report.writers, snnsim.report.plots; "
            "sys.exit(1 if 'matplotlib' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- units ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, unit, expected", [
    (1500, "pJ", "1.5 nJ"),
    (134903.31, "pJ", "134.9 nJ"),
    (2.5e6, "pJ", "2.5 uJ"),
    (0.5, "pJ", "500 fJ"),
    (12.0, "pJ", "12 pJ"),
    (999.96, "pJ", "1 nJ"),  # rounding carries into the next prefix
    (-1500, "pJ", "-1.5 nJ"),
    (0, "pJ", "0 pJ"),
    (14089336, "ps", "14.09 us"),
    (2.5e6, "ps", "2.5 us"),
    (750, "ps", "750 ps"),
    (1e9, "ps", "1 ms"),
    (3e15, "ps", "3000 s"),  # no kiloseconds
    (1.90069806e-12, "J*s", "1.901 pJ*s"),
    (0.002, "s", "2 ms"),
    (1536, "bit", "1.536 kbit"),
    (76186.6, "fps", "7.619e+04 fps"),  # unknown base unit: not scaled
    (None, "pJ", "n/a"),
])
def test_fmt_quantity(value, unit, expected):
    assert fmt_quantity(value, unit) == expected
