"""The units around the core against their reference models, whole runs on random cases: stored
frames read from DRAM (``mapping.input: dram``), the PIM macro as a unit of the chain
(``mapping.pim``), 2D frames and 3D cubes (conv3d first layers), the core's encoding layer once
or at every step. Every record (each PIM counter and energy per sample and step, the frame
reader's lines, bits and time, the core's counters), the summary and the metadata must agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from snnsim.errors import ConfigError, MappingError
from snnsim.hwconfig import load_hardware
from snnsim.simulation import simulate
from snnsim.workload.graphtrace import to_workload

from .test_reference import BASE, _memory_config, _simulate_both, _timing_friendly_hw
from .test_reference_v2 import MODELS, N, _axis, trace_of


@st.composite
def first_layers(draw):
    """A direct-encoded first layer on a 2D frame (conv2d) or a cube (conv3d over its bands), then
    one or two spiking layers."""
    cube = draw(st.booleans())
    bits = draw(st.integers(1, 4))
    model, params = draw(st.sampled_from(MODELS))
    if cube:
        d, h, w = draw(st.integers(3, 6)), draw(st.integers(3, 5)), draw(st.integers(3, 5))
        k = [draw(st.integers(1, min(3, d))), draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w)))]
        pad = draw(st.integers(0, 1))
        co = draw(st.integers(1, 3))
        shape_in = (1, d, h, w)
        nodes = [N("c0", "conv3d", ["input"], out_channels=co, kernel=k, padding=pad, bias=draw(st.booleans()),
                   weight_bits=bits)]
        out = (co, *(_axis(n, kk, 1, pad) for n, kk in zip((d, h, w), k, strict=True)))
    else:
        c, h, w = draw(st.sampled_from([1, 3])), draw(st.integers(3, 6)), draw(st.integers(3, 6))
        k, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        pad = draw(st.integers(0, 1))
        co = draw(st.integers(1, 3))
        shape_in = (c, h, w)
        nodes = [N("c0", "conv2d", ["input"], out_channels=co, kernel=k, stride=s, padding=pad,
                   bias=draw(st.booleans()), weight_bits=bits)]
        out = (co, _axis(h, k, s, pad), _axis(w, k, s, pad))
    if draw(st.booleans()):
        nodes.append(N("bn0", "affine", [nodes[-1].name]))
    nodes.append(N("n0", "neuron", [nodes[-1].name], model=model, **params))
    prev = "n0"
    if draw(st.booleans()):  # a spiking conv of the same rank
        co2 = draw(st.integers(1, 3))
        nodes += [N("c1", nodes[0].op, [prev], out_channels=co2, kernel=1, weight_bits=bits),
                  N("n1", "neuron", ["c1"], model="snnsim.if")]
        out = (co2, *out[1:])
        prev = "n1"
    if draw(st.booleans()):
        nodes += [N("f", "flatten", [prev]), N("fc", "linear", ["f"], out_features=draw(st.integers(1, 3)),
                                               weight_bits=bits),
                  N("n2", "neuron", ["fc"], model="snnsim.if")]
    return nodes, shape_in, cube


def _macro(draw, rows_out: int) -> dict:
    """A small macro drawn around the layer: tiles, reloads, every input mode and ADC sharing."""
    mode = draw(st.sampled_from(["dac", "bit_serial", "pulse_count"]))
    share = draw(st.sampled_from(["mux", "combine"]))
    weight_bits = 4
    return {
        "rows": draw(st.integers(2, 12)), "cols": draw(st.integers(4, 16)), "bits_per_cell": 1,
        "weight_bits": weight_bits, "input_mode": mode, "input_bits": draw(st.integers(2, 4)),
        "adc_bits": 4, "cols_per_adc": weight_bits if share == "combine" else draw(st.integers(1, 4)),
        "adc_share": share, "row_groups": draw(st.integers(1, 2)), "n_arrays": draw(st.integers(1, 4)),
        # a multiple of the output rows, so that each row's share of the macro time is whole ns
        "t_sense_ns": float(rows_out * draw(st.integers(1, 3))), "t_write_row_ns": float(rows_out),
        "recompute_per_step": draw(st.booleans()), "skip_zero_inputs": draw(st.booleans()),
        "allow_weight_reload": True,
    }


@st.composite
def unit_systems(draw):
    nodes, shape_in, cube = draw(first_layers())
    gt = trace_of(nodes, shape_in, draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(0, 2**31)),
                  rate=draw(st.sampled_from([0.0, 0.2, 0.6])))
    wl = to_workload(gt)
    pim = draw(st.booleans())
    entry = "dram" if cube or draw(st.booleans()) else "sensor"
    event(f"{'cube' if cube else 'frame'} from {entry}{' into PIM' if pim else ''}")
    kind = "p2m" if pim else "conventional"  # the core's layers: after the first, or all
    if entry == "sensor":
        config, wl = _timing_friendly_hw(draw, kind, wl)
        config["sensor"]["kind"] = "conventional"
    else:
        extra, dram, wl = _memory_config(draw, kind, wl, friendly=True)
        config = {"name": "random", "dram": dram,
                  "core": {"clock_mhz": draw(st.sampled_from([250.0, 500.0, 1000.0, 2000.0])),
                           "vector_width": draw(st.integers(1, 8)), "pipeline_depth": draw(st.integers(0, 4)),
                           **extra}}
    config["core"]["weight_bits"] = 4
    if draw(st.integers(0, 3)):  # mostly buffers that hold every layer (v2 layers are not tiled)
        config["core"].update(weight_sram_kib=64.0, membrane_sram_kib=64.0)
    config["mapping"] = {"input": entry, "pim": "0" if pim else ""}
    if entry == "dram":
        # whole ps per bit (125 or 250), so that the tick model's tick stays large
        config["dram"]["bandwidth_gbytes_per_s"] = draw(st.sampled_from([0.5, 1.0]))
        config["frames"] = {"bits_per_value": draw(st.integers(4, 8)),
                            "line_overhead_ns": float(draw(st.integers(0, 20))),
                            "frame_period_us": draw(st.sampled_from([0.0, 0.0, 0.05, 0.5])),
                            "input_buffer_lines": draw(st.integers(1, 3))}
        config["core"]["input_bits"] = min(config["core"].get("input_bits", 8), config["frames"]["bits_per_value"])
    if pim:
        first = wl.layers[0]
        sp = first.out_shape[1:]
        rows_out = int(np.prod(sp[:-1])) if len(sp) > 1 else 1
        config["pim"] = {"preset": "wang22_8b", "output_buffer_rows": draw(st.integers(1, 3)),
                         **_macro(draw, rows_out)}
    elif any("input" in la.inputs for la in wl.layers):
        config["core"]["encoding_per_step"] = draw(st.booleans())
    return load_hardware(config), wl


def _simulate_or_refuse(hw, wl) -> None:
    """The same report from both models, or a mapping the fast model refuses (a layer that does
    not fit the macro or the core's buffers) refused by the reference too."""
    try:
        simulate(hw, wl)
    except (MappingError, ConfigError) as e:
        event(f"refused: {e.key}")
        return
    _simulate_both(hw, wl)


@settings(**{**BASE, "max_examples": 150})
@given(unit_systems())
def test_units_match_reference(system):
    _simulate_or_refuse(*system)


# ---------------------------------------------------------------------------------------------
# by hand
# ---------------------------------------------------------------------------------------------

def _cube_hw(**extra) -> dict:
    base = {"name": "cube", "mapping": {"input": "dram"},
            "frames": {"bits_per_value": 8, "line_overhead_ns": 10.0, "input_buffer_lines": 2},
            "core": {"clock_mhz": 1000.0, "vector_width": 4, "weight_bits": 4, "input_bits": 8,
                     "encoding_mode": "multiplier", "pipeline_depth": 0},
            "dram": {"bandwidth_gbytes_per_s": 1.0}}
    for k, v in extra.items():
        base.setdefault(k, {}).update(v)
    return base


def _cube_trace(steps: int = 2):
    nodes = [N("c0", "conv3d", ["input"], out_channels=2, kernel=[2, 2, 2], weight_bits=4),
             N("n0", "neuron", ["c0"], model="snnsim.if")]
    return to_workload(trace_of(nodes, (1, 3, 3, 4), 1, steps, 0, rate=0.5))


def test_frames_read_each_line_of_the_cube_at_the_dram_bandwidth():
    wl = _cube_trace()
    r = simulate(load_hardware(_cube_hw()), wl)
    rec = {(x.component, x.metric): x.value for x in r.records if x.component == "frames"}
    # a (1, 3, 3, 4) cube: 3 lines (the row axis) of 1 x 3 bands x 4 columns = 12 values of 8 bits
    assert rec[("frames", "lines")] == 3
    assert rec[("frames", "payload_bits")] == 3 * 12 * 8
    assert r.meta["frames"]["line_ps"] == 96 * 125 + 10_000  # 96 bits at 8 bits/ns, plus 10 ns
    assert rec[("frames", "energy.dram_read")] == pytest.approx(288 * r.meta["energy_table"]["entries"]["dram.bit"]["value"])


def test_conv3d_on_the_core_counts_every_in_bounds_mac_once_or_per_step():
    wl = _cube_trace(steps=3)
    # out (2, 2, 2, 3): 24 outputs, each 8 taps of 1 channel: 192 MACs per computation
    once = simulate(load_hardware(_cube_hw()), wl)
    per = simulate(load_hardware(_cube_hw(core={"encoding_per_step": True})), wl)

    def macs(r, t):
        return sum(x.value for x in r.records if x.component == "core" and x.metric == "macs" and x.step == t)
    assert [macs(once, t) for t in range(3)] == [192, 0, 0]
    assert [macs(per, t) for t in range(3)] == [192, 192, 192]


def test_setting_with_no_effect_on_the_dram_entry_is_refused():
    with pytest.raises(ConfigError, match="no effect") as e:
        load_hardware({**_cube_hw(), "sensor": {"kind": "conventional"}})
    assert e.value.key == "sensor"
    with pytest.raises(ConfigError, match="no effect") as e:
        load_hardware({"name": "x", "sensor": {}, "link": {}, "core": {}, "frames": {"bits_per_value": 8}})
    assert e.value.key == "frames"
    with pytest.raises(ConfigError, match="missing required section") as e:
        load_hardware({"name": "x", "link": {}, "core": {}})
    assert e.value.key == "sensor"


def test_encoding_per_step_without_a_core_encoding_layer_is_refused():
    wl = _cube_trace()
    hw = load_hardware(_cube_hw(mapping={"pim": "0"}, core={"encoding_per_step": True},
                                pim={"preset": "wang22_8b", "weight_bits": 4, "cols_per_adc": 4}))
    with pytest.raises(ConfigError, match="no effect") as e:
        simulate(hw, wl)
    assert e.value.key == "core.encoding_per_step"


def test_mapping_input_changes_the_chain():
    wl = _cube_trace()
    r = simulate(load_hardware(_cube_hw()), wl)
    assert r.meta["engine"]["stages"] == ["frames", "core"]
    r = simulate(load_hardware(_cube_hw(mapping={"pim": "n0"}, pim={"preset": "wang22_8b", "weight_bits": 4,
                                                                      "cols_per_adc": 4})), wl)
    assert r.meta["engine"]["stages"] == ["frames", "pim", "core"]
    assert [la["runs_on"] for la in r.meta["workload"]["layers"]] == ["pim"]
