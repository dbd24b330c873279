"""Right numbers or a clear refusal: time that cannot wrap, exact DRAM stalls, steady-state rates,
energy attributed to the layers, the colour model, and what the docs promise about widths and work."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from snnsim import load_hardware, load_workload, simulate
from snnsim.engine.pipeline import StageSpec
from snnsim.errors import ConfigError, MappingError, SnnsimError
from snnsim.hw.core import core_plan
from snnsim.hw.fit import FitError, fit_problems
from snnsim.hw.link import link_plan
from snnsim.hw.sensor import sensor_plan
from snnsim.reference.components import reference_core, reference_link, reference_sensor
from snnsim.simulation import check_time_budget
from snnsim.workload.graph import Layer, Neuron, check_graph
from snnsim.workload.trace import Workload, pack_spikes

from .conftest import TINY_BASE, TINY_P2M, make_tiny_workload

RESNET = "workloads/resnet_imagenet.npz"


@pytest.fixture(scope="module")
def resnet():
    return load_workload(RESNET)


def hw(base: dict, *sets: str):
    return load_hardware(base, list(sets))


def summary(base: dict, wl, *sets: str) -> dict:
    return simulate(hw(base, *sets), wl).summary


# -- 1. integer time never wraps -----------------------------------------------------------------

def test_a_clock_too_slow_to_count_is_refused_naming_its_key(resnet):
    with pytest.raises(ConfigError) as e:
        simulate(load_hardware("hwconfigs/p2m.yaml", ["core.clock_mhz=1.0e-7"]), resnet)
    assert "core.clock_mhz" in e.value.key


def test_the_slowest_legal_clock_is_exact_or_refused(resnet):
    """At the slowest clock the schema allows, the run is either reported exactly (positive,
    and the core's time is its cycles times its period) or refused naming the clock."""
    try:
        rep = simulate(load_hardware("hwconfigs/p2m.yaml", ["core.clock_mhz=0.001"]), resnet)
    except ConfigError as e:
        assert "core.clock_mhz" in e.key
        return
    d = rep.summary["delay"]
    assert d["latency_ps_min"] > 0 and d["makespan_ps"] < 2**53
    assert rep.summary["edp_j_s"] > 0


def test_time_budget_names_the_stage_that_overflows():
    from snnsim.hw.chain import build_chain
    from snnsim.simulation import time_keys

    wl = load_workload("workloads/digits_snn.npz")
    hw = load_hardware("hwconfigs/p2m_digits.yaml")
    plans = []
    for component in build_chain(hw):
        plans.append(component.plan(hw, wl, plans, None))
    keys = time_keys(plans)  # each component names the keys that set its times
    big = np.full(4, 2**61, np.int64)
    stages = [StageSpec.make("sensor", [1]), StageSpec.make("link", [1]), StageSpec.make("core", big)]
    with pytest.raises(ConfigError) as e:
        check_time_budget(stages, "chip.yaml", keys)
    assert e.value.key == "core.clock_mhz" and e.value.file == "chip.yaml"
    stages = [StageSpec.make("sensor", [1, 1], release_ps=[0, 2**62]), StageSpec.make("link", [1]),
              StageSpec.make("core", [1])]
    with pytest.raises(ConfigError) as e:
        check_time_budget(stages, "chip.yaml", keys)
    assert e.value.key == "sensor.frame_period_us"


def test_long_blanking_gives_a_sane_busy_fraction_or_a_refusal():
    wl = make_tiny_workload()
    for ns in ("1.0e+6", "1.0e+9"):
        s = summary(TINY_P2M, wl, f"link.line_blanking_ns={ns}")
        assert 0.0 <= s["bandwidth"]["link_busy_fraction"] <= 1.0
    with pytest.raises(ConfigError) as e:
        hw(TINY_P2M, "link.line_blanking_ns=1.0e+15")
    assert e.value.key == "link.line_blanking_ns"


def test_a_run_too_long_to_report_exactly_is_refused():
    """100 frames triggered 100 s apart last 1e16 ps: beyond 2^53, so a stamp would be rounded."""
    wl = make_tiny_workload(samples=100, steps=1)
    with pytest.raises(ConfigError) as e:
        simulate(hw(TINY_P2M, "sensor.frame_period_us=1.0e+8"), wl)
    assert e.value.key == "sensor.frame_period_us"


# -- 2. DRAM stalls grow as bandwidth falls, whatever its decimals ------------------------------

def test_dram_stall_grows_as_bandwidth_falls(resnet):
    bws = ["12.8", "1.25", "1.2345678901234567", "0.1"]
    stall = [summary_p2m(resnet, f"dram.bandwidth_gbytes_per_s={b}")["operations"]["memory_stall_cycles_per_frame"]
             for b in bws]
    assert stall[0] < stall[1] < stall[2] < stall[3]


def summary_p2m(wl, *sets: str) -> dict:
    return simulate(load_hardware("hwconfigs/p2m.yaml", list(sets)), wl).summary


def test_dram_stall_matches_the_reference_at_long_decimals():
    """The reference divides exact fractions: the fast path must give its stall cycles exactly."""
    wl = make_tiny_workload()
    check_graph(wl.layers, wl.input_shape)
    for bw in ("0.12345678901234567", "0.012345678901234567"):
        h = hw(TINY_BASE, f"dram.bandwidth_gbytes_per_s={bw}", "core.weight_sram_kib=0.05")
        sp, rs = sensor_plan(h, wl), reference_sensor(h, wl)
        lp, rl = link_plan(h, wl, sp), reference_link(h, wl, rs)
        fast = core_plan(h, wl, sp, lp.payload_bits).counters["dram_stall_cycles"]
        ref = reference_core(h, wl, rs, rl).counters["dram_stall_cycles"]
        assert fast.sum() > 0 and np.array_equal(fast, ref)


# -- 3. throughput is the steady-state rate ------------------------------------------------------

def test_a_trigger_the_chip_keeps_up_with_sets_the_rate():
    wl = make_tiny_workload(samples=3)
    free = summary(TINY_P2M, wl)["delay"]
    assert free["keeps_up_with_trigger"] is None and free["trigger_period_ps"] == 0
    assert free["throughput_fps"] == pytest.approx(1e12 / free["bottleneck_interval_ps"])
    slow_us = 4 * free["bottleneck_interval_ps"] / 1e6
    s = summary(TINY_P2M, wl, f"sensor.frame_period_us={slow_us}", "technology.overrides.core.static_power=2.0")
    d = s["delay"]
    assert d["keeps_up_with_trigger"] is True
    assert d["throughput_fps"] == pytest.approx(1e6 / slow_us, rel=1e-12)
    assert d["frame_interval_ps"] == pytest.approx(slow_us * 1e6)
    # the bottleneck does not depend on the trigger
    assert d["bottleneck_interval_ps"] == free["bottleneck_interval_ps"]
    assert s["bandwidth"]["payload_mbps"] == pytest.approx(
        s["bandwidth"]["payload_bits_per_frame"] * d["throughput_fps"] / 1e6)
    # static power over one frame interval: 2 mW x interval
    assert s["energy"]["by_action_pj_per_frame"]["core.static"] == pytest.approx(2.0 * d["frame_interval_ps"] * 1e-3)
    # makespan keeps its own name: frames over the whole run
    assert d["makespan_fps"] == pytest.approx(3 / (d["makespan_ps"] * 1e-12))


def test_a_trigger_faster_than_the_chip_gives_the_bottleneck_rate():
    wl = make_tiny_workload(samples=3)
    free = summary(TINY_P2M, wl)["delay"]
    fast_us = free["bottleneck_interval_ps"] / 4e6
    d = summary(TINY_P2M, wl, f"sensor.frame_period_us={fast_us}")["delay"]
    assert d["keeps_up_with_trigger"] is False
    assert d["throughput_fps"] == pytest.approx(free["throughput_fps"])
    assert d["throughput_fps"] < 1e6 / fast_us


def test_one_frame_has_a_steady_rate_too():
    """A single frame's rate is that of the frame sent back to back, not 1 / latency."""
    one = summary(TINY_P2M, make_tiny_workload(samples=1))["delay"]
    assert one["throughput_fps"] >= 1e12 / one["latency_ps_mean"]
    assert one["frame_interval_ps"] <= one["latency_ps_mean"]


# -- 4. every dynamic picojoule belongs to a layer ----------------------------------------------

@pytest.mark.parametrize("base", [TINY_P2M, TINY_BASE], ids=["p2m", "conventional"])
def test_layer_energies_and_static_add_up_to_the_total(base):
    s = summary(base, make_tiny_workload(), "technology.overrides.link.static_power=1.5")
    en = s["energy"]
    layers = {la["name"]: la["energy_pj_per_frame"] for la in s["layers"]}
    assert sum(layers.values()) + en["static_pj_per_frame"] == pytest.approx(en["total_pj_per_frame"], rel=1e-12)
    assert en["static_pj_per_frame"] > 0
    comp = en["by_component_pj_per_frame"]
    static = {c: en["by_action_pj_per_frame"].get(f"{c}.static", 0.0) for c in comp}
    # the sensor's readout and the link are the first layer's, for both sensor kinds
    carried = comp["sensor"] - static["sensor"] + comp["link"] - static["link"]
    assert carried > 0 and layers["c0"] >= carried * (1 - 1e-12)


def test_first_layer_energy_is_comparable_across_sensor_kinds():
    wl = make_tiny_workload()
    p2m, conv = summary(TINY_P2M, wl), summary(TINY_BASE, wl)
    c0 = {k: next(la for la in s["layers"] if la["name"] == "c0")["energy_pj_per_frame"] for k, s in
          (("p2m", p2m), ("conv", conv))}
    # the baseline's first layer carries its whole readout: sensor, link and the core's encoding layer
    conv_en = conv["energy"]["by_component_pj_per_frame"]
    assert c0["conv"] >= conv_en["sensor"] + conv_en["link"]
    assert c0["p2m"] > 0


# -- 5. the colour model must match the input channels ------------------------------------------

def _grey(wl: Workload) -> Workload:
    return Workload(wl.layers, wl.input[:, :1].copy(), wl.packed_spikes, wl.time_steps)


def test_a_grey_trace_on_a_bayer_array_is_refused_with_the_fix():
    wl = make_tiny_workload()
    grey_layers = [Layer("c0", "conv2d", ["input"], (8, 4, 4), kernel=(2, 2), stride=(2, 2), padding=(0, 0),
                         weight_bits=4, neuron=Neuron())] + wl.layers[1:]
    grey = Workload(grey_layers, wl.input[:, :1].copy(), wl.packed_spikes, wl.time_steps)
    with pytest.raises(MappingError) as e:
        simulate(hw(TINY_P2M), grey)
    assert e.value.key == "sensor.photodiodes_per_pixel" and "photodiodes_per_pixel=1" in e.value.suggestion
    simulate(hw(TINY_P2M, "sensor.photodiodes_per_pixel=1"), grey)  # the fix works


def test_a_colour_trace_on_a_mono_array_is_refused_with_the_fix():
    for base in (TINY_P2M, TINY_BASE):
        with pytest.raises(MappingError) as e:
            simulate(hw(base, "sensor.photodiodes_per_pixel=1"), make_tiny_workload())
        assert "photodiodes_per_pixel=4" in e.value.suggestion


# -- 6. what the docs say is what the code does ------------------------------------------------

def test_encoding_layer_reads_and_cycles_at_input_bits():
    wl = make_tiny_workload()
    rep = simulate(hw(TINY_BASE, "core.input_bits=8"), wl)
    reads = rep.total("core", "input_buffer_read_bits", layer="c0")
    assert reads == simulate(hw(TINY_BASE, "core.input_bits=8", "link.raw_bits=10"), wl).total(
        "core", "input_buffer_read_bits", layer="c0")
    assert simulate(hw(TINY_BASE, "core.input_bits=4"), wl).total("core", "input_buffer_read_bits",
                                                                  layer="c0") * 2 == reads
    with pytest.raises(ConfigError) as e:
        simulate(hw(TINY_BASE, "core.input_bits=14"), wl)
    assert e.value.key == "core.input_bits"


def test_flatten_costs_no_cycles():
    rep = simulate(hw(TINY_P2M, "core.pipeline_depth=7"), make_tiny_workload())
    assert rep.total("core", "cycles", layer="f") == 0
    assert rep.total("core", "cycles", layer="c1") > 0


def test_line_buffer_holds_lines_of_packets():
    wl = make_tiny_workload(steps=3)
    rep = simulate(hw(TINY_P2M, "sensor.line_buffer_lines=2"), wl)
    assert rep.meta["engine"]["fifo_capacity"]["sensor->link"] == 2 * 3  # a P2M line is T spike packets
    rep = simulate(hw(TINY_BASE, "sensor.line_buffer_lines=2"), wl)
    assert rep.meta["engine"]["fifo_capacity"]["sensor->link"] == 2


def test_step_prefix_is_part_of_the_payload():
    """Past 8 x 2^vc steps the step rides in a 2-byte payload prefix, for AER as for bitmaps."""
    wl = make_tiny_workload(samples=1, steps=9)
    for enc in ("aer", "bitmap"):
        few = simulate(hw(TINY_P2M, f"link.encoding={enc}", "link.virtual_channel_bits=2"), wl).summary
        many = simulate(hw(TINY_P2M, f"link.encoding={enc}", "link.virtual_channel_bits=0"), wl).summary
        packets = 4 * 9  # output rows x steps
        assert many["bandwidth"]["payload_bits_per_frame"] - few["bandwidth"]["payload_bits_per_frame"] == 16 * packets


def test_sensor_layers_key_is_gone():
    with pytest.raises(ConfigError):
        hw(TINY_P2M, "mapping.sensor_layers=1")


# -- validate reports every mismatch at once -----------------------------------------------------

def test_every_mismatch_is_reported_at_once():
    sets = ("sensor.p2m.out_channels=16", "sensor.p2m.kernel=3", "sensor.pixel_rows=4",
            "core.weight_bits=1", "core.membrane_sram_kib=0.001")
    wl = make_tiny_workload()
    problems = fit_problems(hw(TINY_P2M, *sets), wl)
    keys = {p.key for p in problems}
    assert {"layers.c0.out_shape", "layers.c0.kernel", "input", "core.membrane_sram_kib"} <= keys
    with pytest.raises(FitError) as e:
        simulate(hw(TINY_P2M, *sets), wl)
    text = e.value.render()
    assert f"{len(problems)} problems" in text and all(p.message in text for p in problems)
    assert isinstance(e.value, SnnsimError)


# -- scale: memory linear in T, deep graphs ------------------------------------------------------

def _peak_bytes(steps: int) -> int:
    wl = make_tiny_workload(samples=1, steps=steps)
    h = hw(TINY_P2M)
    simulate(h, wl)  # compile and cache first
    tracemalloc.start()
    simulate(h, wl)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_grows_linearly_with_time_steps():
    small, big = _peak_bytes(256), _peak_bytes(2048)
    assert big / small < 8 * 1.5  # 8x the steps: linear, not quadratic (64x)


def test_a_thousand_chained_flattens_run():
    rng = np.random.default_rng(0)
    layers = [Layer("c0", "conv2d", ["input"], (4, 2, 2), kernel=(2, 2), stride=(2, 2), padding=(0, 0),
                    weight_bits=4, neuron=Neuron())]
    for i in range(1, 1500):
        layers.append(Layer(f"f{i}", "flatten", [layers[-1].name], (16,)))
    s0 = rng.random((1, 1, 4, 2, 2)) < 0.3
    spikes = {la.name: pack_spikes(s0 if la.name == "c0" else s0.reshape(1, 1, 16)) for la in layers}
    wl = Workload(layers, rng.random((1, 3, 4, 4)).astype(np.float32), spikes, 1)
    base = {**TINY_P2M, "sensor": {**TINY_P2M["sensor"], "pixel_rows": 4, "pixel_cols": 4,
                                   "p2m": {"kernel": 2, "stride": 2, "out_channels": 4}}}
    rep = simulate(hw(base), wl)
    assert math.isfinite(rep.summary["energy"]["total_pj_per_frame"])


def test_a_non_finite_result_is_refused_not_printed():
    from snnsim.report.report import Record, RecordBlock
    from snnsim.simulation import check_finite

    block = RecordBlock(layers=["c0", "c1"], metrics=["energy.accumulate"], components=["core"], units=["pJ"],
                        values=np.ones((1, 2, 1, 1)))
    check_finite([block, Record(0, "c0", None, "link", "energy.bit", 1e24, "pJ")], "chip.yaml")
    block.values[0, 1, 0, 0] = math.inf
    with pytest.raises(ConfigError) as e:
        check_finite([block], "chip.yaml")
    assert "energy.accumulate of layer c1" in e.value.expected
    with pytest.raises(ConfigError) as e:
        check_finite([Record(0, "c0", None, "link", "energy.bit", math.nan, "pJ")], "chip.yaml")
    assert "energy.bit of the link" in e.value.expected
