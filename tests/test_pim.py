"""The SRAM CIM macro model (snnsim.hw.pim): presets against published figures, hand-counted
layers, the fast counts against the one-at-a-time reference, and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snnsim.errors import ConfigError, MappingError, WorkloadError
from snnsim.hw import pim
from snnsim.reference.pim import layer_counts_reference

BASE = {"rows": 4, "cols": 8, "weight_bits": 4, "input_bits": 4, "cols_per_adc": 4, "adc_share": "combine",
        "n_arrays": 3, "t_sense_ns": 2.5}


def cfg_of(**changes):
    return pim.macro_config({**BASE, **changes}, "test")


# ---------------------------------------------------------------------------------------------
# presets reproduce their published figures
# ---------------------------------------------------------------------------------------------

def test_at_least_three_presets_with_published_figures():
    names = [n for n in pim.preset_names() if pim.published_figures(n)]
    assert len(names) >= 3
    assert {"sinangil7_4b", "wang22_8b", "jia65_1b", "ibm14_6b6b"} <= set(names)


@pytest.mark.parametrize("name", pim.preset_names())
def test_preset_reproduces_published_figures(name):
    cfg = pim.macro_config(pim.preset(name), name)
    figures = pim.macro_figures(cfg)
    published = pim.published_figures(name)
    assert set(published) == {"tops_per_w", "gops"}
    for key, ref in published.items():
        assert ref["source"]
        assert abs(figures[key] - ref["value"]) <= ref["tolerance"], (key, figures[key], ref)


def test_preset_figures_by_hand():
    # Sinangil: 64 rows x 16 four-bit weights per 5.5 ns cycle
    f = pim.macro_figures(pim.macro_config(pim.preset("sinangil7_4b"), "s"))
    assert f["macs_per_mvm"] == 1024 and f["t_mvm_ns"] == pytest.approx(5.5)
    assert f["gops"] == pytest.approx(2 * 1024 / 5.5)
    # Wang: 8 row groups of 6.9 ns each, 16 eight-bit weights x 512 rows
    f = pim.macro_figures(pim.macro_config(pim.preset("wang22_8b"), "w"))
    assert f["macs_per_mvm"] == 512 * 16 and f["t_mvm_ns"] == pytest.approx(8 * 6.9)
    # Jia: bit serial, ADC muxed over 3 columns: 3 sense slots of 450 ns
    f = pim.macro_figures(pim.macro_config(pim.preset("jia65_1b"), "j"))
    assert f["t_mvm_ns"] == pytest.approx(1350.0)


def test_figures_scale_with_arrays_not_efficiency():
    one = pim.macro_config({**pim.preset("wang22_8b"), "n_arrays": 1}, "w")
    four = pim.macro_config({**pim.preset("wang22_8b"), "n_arrays": 4}, "w")
    f1, f4 = pim.macro_figures(one), pim.macro_figures(four)
    assert f4["gops"] == pytest.approx(4 * f1["gops"])
    assert f4["tops_per_w"] == pytest.approx(f1["tops_per_w"])


def test_pulse_energy_depends_on_input_value():
    cfg = pim.macro_config({**pim.preset("sinangil7_4b"), "e_pulse_pj": 0.01}, "s")
    full, half = pim.macro_figures(cfg, 1.0), pim.macro_figures(cfg, 0.0)
    # 64 rows x 15 pulses at full scale, none at zero
    assert full["energy_per_mvm_pj"] - half["energy_per_mvm_pj"] == pytest.approx(64 * 15 * 0.01)


# ---------------------------------------------------------------------------------------------
# hand-computed layers
# ---------------------------------------------------------------------------------------------

def test_hybridsn_first_layer_fits_one_64x64_array():
    cfg = pim.macro_config({"rows": 64, "cols": 64, "weight_bits": 6, "cols_per_adc": 6}, "t")
    geo = pim.layer_geometry("L1", (1, 7 + 23, 25, 25), 8, kernel=(7, 3, 3))  # (C, bands, H, W)
    m = pim.map_layer(cfg, geo)
    assert m.rows == 63 and m.row_tile_rows == (63,) and m.col_tile_weights == (8,) and m.tiles == 1
    assert m.positions == 24 * 23 * 23 == 12696


def test_small_conv2d_counts_by_hand():
    cfg = cfg_of()
    geo = pim.layer_geometry("c", (1, 4, 4), 2, kernel=3, weight_bits=4)
    m = pim.map_layer(cfg, geo)
    assert m.row_tile_rows == (4, 4, 1) and m.col_tile_weights == (2,) and m.tiles == 3
    x = np.full((1, 1, 4, 4), 0.5)
    c = pim.layer_counts(cfg, m, x, 2)
    expect = {"mvms": 12, "array_reads": 12, "bitline_reads": 96, "adc_conversions": 24, "row_activations": 36,
              "shift_adds": 0, "partial_sum_adds": 16, "neuron_updates": 8, "input_pulses": 0,
              "time_ps": 4 * 2500, "current_reads": 0, "weight_write_bits": 0}
    for k, v in expect.items():
        assert c[k].tolist() == [[v, v]], k
    assert c["e_adc_conversions_pj"][0, 0] == pytest.approx(24 * cfg.e_adc_pj)
    assert c["energy_pj"][0, 0] == pytest.approx(sum(c[f"e_{k}_pj"][0, 0] for k in pim.PRICED))


def test_bit_serial_mux_pulses_and_shift_adds_by_hand():
    cfg = cfg_of(input_mode="bit_serial", adc_share="mux", cols_per_adc=2, input_bits=3, rows=8, n_arrays=1)
    geo = pim.layer_geometry("fc", (3,), 2, weight_bits=4)
    m = pim.map_layer(cfg, geo)
    x = np.array([[0.0, 3 / 7, 1.0]])  # codes 0, 3, 7: set bits 0 + 2 + 3
    c = pim.layer_counts(cfg, m, x, 1)
    assert c["input_pulses"][0, 0] == 5
    assert c["array_reads"][0, 0] == 3  # one read per input bit
    assert c["adc_conversions"][0, 0] == 3 * 8  # every column converted at every read
    assert c["shift_adds"][0, 0] == 2 * (3 * 4 - 1)  # per weight: 3 bits x 4 columns of partial values
    assert c["row_activations"][0, 0] == 3 * 3
    assert c["time_ps"][0, 0] == 3 * 2 * 2500  # 3 reads x 2 muxed sense slots


def test_pulse_count_sums_codes():
    cfg = cfg_of(input_mode="pulse_count", rows=8, n_arrays=1)
    geo = pim.layer_geometry("fc", (3,), 2, weight_bits=4)
    c = pim.layer_counts(cfg, pim.map_layer(cfg, geo), np.array([[1.0, 0.2, 0.0]]), 1)
    assert c["input_pulses"][0, 0] == 15 + 3  # rint(0.2 x 15) = 3; one column tile
    two = cfg_of(input_mode="pulse_count", rows=8, n_arrays=2)  # 4 weights: two column tiles, each driven
    geo4 = pim.layer_geometry("fc", (3,), 4, weight_bits=4)
    assert pim.layer_counts(two, pim.map_layer(two, geo4), np.array([[1.0, 0.2, 0.0]]), 1)["input_pulses"][0, 0] == 36


def test_direct_encoding_computes_once():
    cfg = cfg_of(recompute_per_step=False)
    geo = pim.layer_geometry("c", (1, 4, 4), 2, kernel=3, weight_bits=4)
    c = pim.layer_counts(cfg, pim.map_layer(cfg, geo), np.full((1, 1, 4, 4), 0.5), 3)
    assert c["mvms"].tolist() == [[12, 0, 0]]
    assert c["time_ps"].tolist() == [[10000, 0, 0]]
    assert c["current_writes"].tolist() == [[8, 0, 0]] and c["current_reads"].tolist() == [[0, 8, 8]]
    assert c["neuron_updates"].tolist() == [[8, 8, 8]]


def test_skip_zero_inputs_skips_padding_only_mvms():
    cfg = cfg_of(skip_zero_inputs=True, rows=9, n_arrays=1)
    geo = pim.layer_geometry("c", (1, 3, 3), 2, kernel=3, padding=1, weight_bits=4)
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 0] = 1.0  # only windows covering the corner see a non-zero input
    c = pim.layer_counts(cfg, pim.map_layer(cfg, geo), x, 1)
    assert c["mvms"][0, 0] == 4
    assert pim.layer_counts(cfg_of(rows=9, n_arrays=1), pim.map_layer(cfg, geo), x, 1)["mvms"][0, 0] == 9


def test_grouped_conv_maps_each_group():
    cfg = cfg_of(rows=16, n_arrays=4)
    geo = pim.layer_geometry("g", (4, 3, 3), 4, kernel=3, groups=2, weight_bits=4)
    m = pim.map_layer(cfg, geo)
    assert m.rows == 18 and m.row_tile_rows == (16, 2) and m.col_tile_weights == (2,) and m.tiles == 4


# ---------------------------------------------------------------------------------------------
# fast counts == reference counts on random cases
# ---------------------------------------------------------------------------------------------

@st.composite
def cases(draw):
    rows = draw(st.integers(1, 12))
    row_groups = draw(st.sampled_from([d for d in range(1, rows + 1) if rows % d == 0]))
    bpc = draw(st.sampled_from([1, 2]))
    cols = draw(st.integers(bpc, 16))
    slot = draw(st.integers(1, max(1, min(4, cols // bpc))))
    share = draw(st.sampled_from(pim.ADC_SHARES))
    d = {
        "rows": rows, "cols": cols, "bits_per_cell": bpc, "weight_bits": slot * bpc, "row_groups": row_groups,
        "input_mode": draw(st.sampled_from(pim.INPUT_MODES)), "input_bits": draw(st.integers(1, 4)),
        "adc_share": share, "cols_per_adc": slot if share == "combine" else draw(st.integers(1, cols)),
        "n_arrays": draw(st.integers(1, 6)), "t_sense_ns": draw(st.sampled_from([0.1, 1.0, 2.5, 5.5, 6.9, 33.3])),
        "t_write_row_ns": draw(st.sampled_from([0.0, 0.7, 1.0, 3.3])),
        "recompute_per_step": draw(st.booleans()), "skip_zero_inputs": draw(st.booleans()),
        "allow_weight_reload": True,
    }
    for key in pim.ENERGY_KEYS:
        d[key] = draw(st.sampled_from([0.0, 0.1, 0.37, 1.5]))
    rank = draw(st.sampled_from([0, 2, 3]))
    groups = draw(st.integers(1, 2)) if rank else 1
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 3))
    wb = bpc * draw(st.integers(1, slot))
    if rank == 0:
        geo = pim.layer_geometry("fc", (c_in,), c_out, groups=groups, weight_bits=wb)
    else:
        spatial = tuple(draw(st.integers(1, 4)) for _ in range(rank))
        padding = tuple(draw(st.integers(0, 1)) for _ in range(rank))
        kernel = tuple(draw(st.integers(1, n + 2 * p)) for n, p in zip(spatial, padding, strict=True))
        stride = tuple(draw(st.integers(1, 2)) for _ in range(rank))
        geo = pim.layer_geometry("conv", (c_in, *spatial), c_out, kernel=kernel, stride=stride, padding=padding,
                                 groups=groups, weight_bits=wb)
    samples = draw(st.integers(1, 2))
    size = samples * math.prod(geo.in_shape)
    values = draw(st.lists(st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.77, 1.0]), min_size=size, max_size=size))
    x = np.array(values).reshape(samples, *geo.in_shape)
    return d, geo, x, draw(st.integers(1, 3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_fast_counts_equal_reference(case):
    d, geo, x, steps = case
    cfg = pim.macro_config(d, "hypothesis")
    mapping = pim.map_layer(cfg, geo)
    fast = pim.layer_counts(cfg, mapping, x, steps)
    ref = layer_counts_reference(cfg, mapping, x, steps)
    assert set(fast) == set(ref)
    for key in fast:
        assert fast[key].shape == (x.shape[0], steps), key
        assert fast[key].dtype == ref[key].dtype, key
        assert np.array_equal(fast[key], ref[key]), (key, fast[key], ref[key])


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_unknown_key_suggests():
    with pytest.raises(ConfigError) as e:
        pim.macro_config({"rowz": 64}, "m.yaml")
    assert e.value.key == "rowz" and "rows" in e.value.suggestion and e.value.file == "m.yaml"


@pytest.mark.parametrize("key,value", [("rows", 0), ("cols", 10**6), ("adc_bits", 2.5), ("n_arrays", True),
                                       ("t_sense_ns", 0.0), ("e_adc_pj", -1.0), ("e_adc_pj", float("nan")),
                                       ("input_mode", "analogue"), ("recompute_per_step", "yes")])
def test_out_of_range_or_wrong_type(key, value):
    with pytest.raises(ConfigError) as e:
        pim.macro_config({key: value}, "m.yaml")
    assert e.value.key == key and e.value.expected


def test_integer_valued_float_is_accepted():
    assert pim.macro_config({"rows": 64.0}, "m").rows == 64


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="multiple of the bits per cell"):
        pim.macro_config({"bits_per_cell": 2, "weight_bits": 5}, "m")
    with pytest.raises(ConfigError) as e:
        pim.macro_config({"cols_per_adc": 4}, "m")  # combine with a 6-column slot
    assert e.value.key == "cols_per_adc"
    with pytest.raises(ConfigError) as e:
        pim.macro_config({"rows": 64, "row_groups": 5}, "m")
    assert e.value.key == "row_groups"
    with pytest.raises(ConfigError):
        pim.macro_config({"cols": 4, "weight_bits": 6, "cols_per_adc": 4}, "m")


def test_layer_wider_than_macro_weight():
    geo = pim.layer_geometry("L1", (1, 5, 5), 8, kernel=3, weight_bits=8)
    with pytest.raises(MappingError) as e:
        pim.map_layer(pim.macro_config({}, "m"), geo)
    assert e.value.key == "weight_bits" and "L1" in e.value.file


def test_layer_weight_bits_vs_bits_per_cell():
    cfg = pim.macro_config({"bits_per_cell": 2, "weight_bits": 6, "adc_share": "mux", "cols_per_adc": 4}, "m")
    with pytest.raises(MappingError, match="multiple of the bits per cell"):
        pim.map_layer(cfg, pim.layer_geometry("L1", (1, 5, 5), 8, kernel=3, weight_bits=3))


def test_layer_that_does_not_fit_without_reload():
    cfg = pim.macro_config({"rows": 8, "cols": 12}, "m")  # 2 weights per column tile
    geo = pim.layer_geometry("L1", (2, 5, 5), 4, kernel=3)  # 18 rows -> 3 x 2 tiles
    with pytest.raises(MappingError) as e:
        pim.map_layer(cfg, geo)
    assert e.value.key == "n_arrays" and "6 tiles" in e.value.expected
    reload = pim.macro_config({"rows": 8, "cols": 12, "allow_weight_reload": True}, "m")
    m = pim.map_layer(reload, geo)
    c = pim.layer_counts(reload, m, np.zeros((1, 2, 5, 5)), 1)
    assert c["weight_write_bits"][0, 0] == 18 * 4 * 6  # every used cell (18 rows x 4 six-bit weights) written per computing step


def test_unknown_preset():
    with pytest.raises(ConfigError) as e:
        pim.preset("sinangil7_4")
    assert "sinangil7_4b" in e.value.suggestion


@pytest.mark.parametrize("x", [np.full((1, 1, 4, 4), 1.5), np.full((1, 1, 4, 4), np.nan), np.zeros((1, 4, 4)),
                               np.full((1, 1, 4, 4), -0.1)])
def test_bad_inputs(x):
    cfg = cfg_of()
    m = pim.map_layer(cfg, pim.layer_geometry("c", (1, 4, 4), 2, kernel=3, weight_bits=4))
    with pytest.raises(WorkloadError):
        pim.layer_counts(cfg, m, x, 1)


def test_bad_geometry_and_steps():
    with pytest.raises(WorkloadError, match="invalid layer geometry"):
        pim.layer_geometry("c", (1, 4, 4), 2, kernel=6)
    with pytest.raises(WorkloadError):
        pim.layer_geometry("c", (3, 4, 4), 2, kernel=3, groups=2)
    with pytest.raises(WorkloadError):
        pim.layer_geometry("fc", (4,), 2, kernel=3)
    cfg = cfg_of()
    m = pim.map_layer(cfg, pim.layer_geometry("c", (1, 4, 4), 2, kernel=3, weight_bits=4))
    with pytest.raises(WorkloadError):
        pim.layer_counts(cfg, m, np.zeros((1, 1, 4, 4)), 0)
