"""The fast models against the slow reference models: every stamp and every counter must agree.

* ``run_pipeline`` (event-driven, Numba) vs ``run_pipeline_reference`` (tick by tick);
* ``simulate`` vs ``simulate_reference`` (loop-by-loop re-derivation of the sensor, link and
  core counts) on random small workloads and hardware configurations;
* the sensor, link and core plans against the reference components on configurations whose
  timing is not tick-friendly (the reference pipeline would be too slow there);
* a few hand-computed cases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snnsim.engine.pipeline import StageSpec, run_pipeline
from snnsim.errors import MappingError
from snnsim.hw.core import COUNTERS, core_plan
from snnsim.hw.link import burst_ps, link_plan
from snnsim.hw.sensor import sensor_plan
from snnsim.hwconfig import load_hardware
from snnsim.reference import run_pipeline_reference, simulate_reference
from snnsim.reference.components import reference_core, reference_link, reference_sensor
from snnsim.simulation import simulate
from snnsim.workload.graph import Layer, Neuron, check_graph, conv_out
from snnsim.workload.trace import Workload, pack_spikes

BASE = {"deadline": None, "derandomize": True, "suppress_health_check": [HealthCheck.too_slow]}


# ---------------------------------------------------------------------------------------------
# pipeline
# ---------------------------------------------------------------------------------------------

def _assert_same_pipeline(a, b) -> None:
    assert a.names == b.names
    for x, y in zip(a.start_ps + a.end_ps + a.done_ps, b.start_ps + b.end_ps + b.done_ps, strict=True):
        assert x.tolist() == y.tolist()
    assert a.busy_ps.tolist() == b.busy_ps.tolist()
    assert a.stall_ps.tolist() == b.stall_ps.tolist()
    assert a.idle_ps.tolist() == b.idle_ps.tolist()
    assert int(a.makespan_ps) == int(b.makespan_ps)


def _split(draw, total: int, parts: int, most: int) -> list[int]:
    """``total`` tokens as ``parts`` counts of at most ``most`` each (parts * most >= total)."""
    counts = [0] * parts
    for _ in range(total):
        free = [i for i in range(parts) if counts[i] < most]
        counts[free[draw(st.integers(0, len(free) - 1))]] += 1
    return counts


@st.composite
def chains(draw):
    n_stages = draw(st.integers(1, 4))
    unit = draw(st.sampled_from([1, 3, 1000]))
    caps = [draw(st.integers(1, 4)) for _ in range(n_stages - 1)]
    sizes = [draw(st.integers(1, 5)) for _ in range(n_stages)]
    # tokens each FIFO carries in total; the consumer's counts never exceed the FIFO's capacity
    totals = [draw(st.integers(0, sizes[i + 1] * caps[i])) for i in range(n_stages - 1)]
    stages = []
    for i, n in enumerate(sizes):
        service = [unit * draw(st.integers(0, 6)) for _ in range(n)]
        release = [unit * draw(st.integers(0, 20)) if draw(st.booleans()) else 0 for _ in range(n)]
        if i == 0:
            consume = [draw(st.integers(0, 3)) for _ in range(n)]  # no input FIFO: ignored
        else:
            consume = _split(draw, totals[i - 1], n, caps[i - 1])
        if i < n_stages - 1:
            produce = _split(draw, totals[i], n, totals[i])
        else:
            produce = [draw(st.integers(0, 3)) for _ in range(n)]  # unbounded output
        stages.append(StageSpec.make(f"s{i}", service, consume, produce, release))
    return stages, caps


@settings(**BASE, max_examples=400)
@given(chains())
def test_pipeline_matches_reference(case):
    stages, caps = case
    _assert_same_pipeline(run_pipeline(stages, caps), run_pipeline_reference(stages, caps))


@settings(**BASE, max_examples=20)
@given(st.integers(2, 4), st.integers(1, 3), st.lists(st.integers(0, 5), min_size=2, max_size=2))
def test_pipeline_deadlock_raises_in_both(need, cap, services):
    """A consumer that needs more tokens than the FIFO holds waits forever in both models."""
    stages = [StageSpec.make("a", [services[0]] * need, produce=[1] * need),
              StageSpec.make("b", [services[1]], consume=[need])]
    caps = [min(cap, need - 1)]
    for run in (run_pipeline, run_pipeline_reference):
        with pytest.raises(RuntimeError):
            run(stages, caps)


def test_pipeline_hand_computed_three_stages():
    """A fast producer, a slow middle stage and a fast consumer, all FIFOs of one token.

    A finishes its third row at 30 but the FIFO still holds the second: it stalls until B
    takes that token at 40."""
    stages = [StageSpec.make("a", [10, 10, 10], produce=[1, 1, 1]),
              StageSpec.make("b", [30, 30, 30], consume=[1, 1, 1], produce=[1, 1, 1]),
              StageSpec.make("c", [5, 5, 5], consume=[1, 1, 1])]
    want = {
        "start": [[0, 10, 20], [10, 40, 70], [40, 70, 100]],
        "end": [[10, 20, 30], [40, 70, 100], [45, 75, 105]],
        "done": [[10, 20, 40], [40, 70, 100], [45, 75, 105]],
        "busy": [30, 90, 15], "stall": [10, 0, 0], "idle": [65, 15, 90], "makespan": 105,
    }
    for run in (run_pipeline, run_pipeline_reference):
        r = run(stages, [1, 1])
        assert [x.tolist() for x in r.start_ps] == want["start"]
        assert [x.tolist() for x in r.end_ps] == want["end"]
        assert [x.tolist() for x in r.done_ps] == want["done"]
        assert r.busy_ps.tolist() == want["busy"]
        assert r.stall_ps.tolist() == want["stall"]
        assert r.idle_ps.tolist() == want["idle"]
        assert r.makespan_ps == want["makespan"]


def test_pipeline_same_instant_handoffs():
    """A zero-time middle stage: a token pushed at t passes through it and is taken by the last
    stage at t; a consumer taking a token at t lets the blocked middle stage push at t."""
    stages = [StageSpec.make("a", [2, 2, 2], produce=[1, 1, 1]),
              StageSpec.make("m", [0, 0, 0], consume=[1, 1, 1], produce=[1, 1, 1]),
              StageSpec.make("b", [5, 5, 5], consume=[1, 1, 1])]
    for run in (run_pipeline, run_pipeline_reference):
        r = run(stages, [1, 1])
        assert [x.tolist() for x in r.start_ps] == [[0, 2, 4], [2, 4, 6], [2, 7, 12]]
        assert [x.tolist() for x in r.end_ps] == [[2, 4, 6], [2, 4, 6], [7, 12, 17]]
        assert [x.tolist() for x in r.done_ps] == [[2, 4, 6], [2, 4, 7], [7, 12, 17]]
        assert r.busy_ps.tolist() == [6, 0, 15]
        assert r.stall_ps.tolist() == [0, 1, 0]
        assert r.idle_ps.tolist() == [11, 16, 2]
        assert r.makespan_ps == 17


# ---------------------------------------------------------------------------------------------
# random workloads and hardware
# ---------------------------------------------------------------------------------------------

def _maxpool_or(x: np.ndarray, kernel, stride, padding, out_shape) -> np.ndarray:
    """Structural max pooling of spikes (S, T, C, H, W): OR over each in-bounds window."""
    s_n, t_n, c_n, h, w = x.shape
    _, h_o, w_o = out_shape
    y = np.zeros((s_n, t_n, c_n, h_o, w_o), bool)
    for oy in range(h_o):
        for ox in range(w_o):
            y0, x0 = oy * stride[0] - padding[0], ox * stride[1] - padding[1]
            win = x[..., max(y0, 0):max(y0 + kernel[0], 0), max(x0, 0):max(x0 + kernel[1], 0)]
            if win.size:
                y[..., oy, ox] = win.any(axis=(-1, -2))
    return y


@st.composite
def graphs(draw, max_hw: int = 9):
    """A small random graph: an in-pixel-compatible conv0 on the image, then 1-3 blocks."""
    h = draw(st.integers(3, max_hw))
    w = draw(st.integers(3, max_hw))
    k0 = draw(st.integers(1, 3))
    c0 = draw(st.integers(1, 5))
    layers = [Layer("conv0", "conv2d", ["input"], (c0, conv_out(h, k0, k0, 0), conv_out(w, k0, k0, 0)),
                    kernel=(k0, k0), stride=(k0, k0), padding=(0, 0), weight_bits=draw(st.integers(1, 4)),
                    neuron=Neuron())]
    shapes = {"conv0": layers[0].out_shape}
    prev = "conv0"
    n_blocks = draw(st.integers(1, 3))
    for b in range(n_blocks):
        shape = shapes[prev]
        flat = len(shape) == 1
        kinds = ["linear"] if flat else ["conv", "maxpool", "avgpool", "add", "flatten_linear"]
        kind = draw(st.sampled_from(kinds))
        new: list[Layer] = []
        if kind == "conv":
            c_in, hh, ww = shape
            k = draw(st.integers(1, 3))
            s = draw(st.integers(1, 2))
            p = draw(st.integers(0, 1))
            if min(hh, ww) + 2 * p < k:
                k = 1
            c_out = draw(st.integers(1, 4))
            groups = 2 if c_in % 2 == 0 and c_out % 2 == 0 and draw(st.booleans()) else 1
            new.append(Layer(f"conv{b + 1}", "conv2d", [prev], (c_out, conv_out(hh, k, s, p), conv_out(ww, k, s, p)),
                             kernel=(k, k), stride=(s, s), padding=(p, p), groups=groups,
                             weight_bits=draw(st.integers(1, 2)), neuron=Neuron()))
        elif kind in ("maxpool", "avgpool"):
            c_in, hh, ww = shape
            k = draw(st.integers(1, 3 if kind == "avgpool" else 2))
            s = draw(st.integers(1, 2))
            p = draw(st.integers(0, k // 2))
            if min(hh, ww) + 2 * p < k:
                k, p = 1, 0
            neuron = Neuron() if kind == "avgpool" or draw(st.booleans()) else None
            new.append(Layer(f"{kind}{b + 1}", kind, [prev], (c_in, conv_out(hh, k, s, p), conv_out(ww, k, s, p)),
                             kernel=(k, k), stride=(s, s), padding=(p, p), neuron=neuron))
        elif kind == "add":
            c_in, hh, ww = shape
            k = draw(st.sampled_from([1, 3]))
            new.append(Layer(f"branch{b + 1}", "conv2d", [prev], shape, kernel=(k, k), stride=(1, 1),
                             padding=(k // 2, k // 2), weight_bits=1, neuron=Neuron()))
            new.append(Layer(f"add{b + 1}", "add", [prev, f"branch{b + 1}"], shape, neuron=Neuron()))
        else:
            if not flat:
                new.append(Layer(f"flat{b + 1}", "flatten", [prev], (math.prod(shape),)))
            new.append(Layer(f"fc{b + 1}", "linear", [new[-1].name if new else prev], (draw(st.integers(1, 6)),),
                             weight_bits=draw(st.integers(1, 2)), neuron=Neuron()))
        for la in new:
            shapes[la.name] = la.out_shape
        layers += new
        prev = new[-1].name
    last = layers[-1]
    if last.op in ("conv2d", "linear", "avgpool", "add") and draw(st.booleans()):
        last.neuron = None  # a classifier output: membranes read out, no spikes
    return (3, h, w), layers


@st.composite
def workloads(draw, max_hw: int = 9, max_samples: int = 3, max_steps: int = 3):
    input_shape, layers = draw(graphs(max_hw))
    check_graph(layers, input_shape)
    samples = draw(st.integers(1, max_samples))
    steps = draw(st.integers(1, max_steps))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spikes: dict[str, np.ndarray] = {}
    for la in layers:
        if not la.spiking:
            continue
        if la.op == "flatten" and la.neuron is None:
            src = spikes[la.inputs[0]]
            spikes[la.name] = src.reshape(samples, steps, -1)
        elif la.op == "maxpool" and la.neuron is None:
            spikes[la.name] = _maxpool_or(spikes[la.inputs[0]], la.kernel, la.stride, la.padding, la.out_shape)
        else:
            rate = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
            spikes[la.name] = rng.random((samples, steps, *la.out_shape)) < rate
    inp = rng.random((samples, *input_shape)).astype(np.float32)
    return Workload(layers=layers, input=inp, packed_spikes={k: pack_spikes(v) for k, v in spikes.items()},
                    time_steps=steps)


def _timing_friendly_hw(draw, kind: str, wl: Workload) -> dict:
    """A hardware configuration whose times share a large common divisor (for the tick model)."""
    conv0 = wl.layers[0]
    _, h, w = wl.input_shape
    return {
        "name": "random",
        "sensor": {
            "kind": kind, "pixel_rows": h + draw(st.integers(0, 3)), "pixel_cols": w + draw(st.integers(0, 3)),
            "photodiodes_per_pixel": draw(st.sampled_from([1, 4])),
            "adc_bits": draw(st.integers(1, 5)), "adc_counter_clock_mhz": draw(st.sampled_from([1000.0, 2000.0])),
            "cds_ramps": draw(st.integers(1, 2)), "row_overhead_ns": float(draw(st.integers(0, 40))),
            "frame_period_us": draw(st.sampled_from([0.0, 0.0, 0.02, 0.1, 0.5])),
            "line_buffer_lines": draw(st.integers(1, 3)),
            "p2m": {"kernel": conv0.kernel[0], "stride": conv0.stride[0], "out_channels": conv0.out_shape[0],
                    "adc_bits": draw(st.integers(1, 5)), "ramps_per_conversion": draw(st.integers(1, 2)),
                    "adcs_per_output_column": draw(st.integers(1, 3)),
                    "row_overhead_ns": float(draw(st.integers(0, 40)))},
        },
        "link": {
            "lanes": draw(st.integers(1, 4)), "gbps_per_lane": draw(st.sampled_from([0.5, 1.0, 2.0, 4.0, 8.0])),
            "encoding": draw(st.sampled_from(["bitmap", "aer"])), "raw_bits": draw(st.integers(8, 12)),
            "virtual_channel_bits": draw(st.integers(0, 2)),
            "line_blanking_ns": float(draw(st.integers(0, 20))), "frame_blanking_ns": float(draw(st.integers(0, 50))),
            "continuous_clock": draw(st.booleans()),
            "t_lpx_ns": float(draw(st.integers(0, 10))), "t_hs_prepare_zero_ns": float(draw(st.integers(0, 20))),
            "t_hs_trail_ns": float(draw(st.integers(0, 10))), "t_hs_exit_ns": float(draw(st.integers(0, 10))),
            "t_clk_overhead_ns": float(draw(st.integers(0, 20))),
            "output_fifo_packets": draw(st.integers(1, 3)),
        },
        "core": {
            "clock_mhz": draw(st.sampled_from([250.0, 500.0, 1000.0, 2000.0])),
            "vector_width": draw(st.integers(1, 8)), "membrane_bits": draw(st.integers(4, 16)),
            "weight_bits": 4, "spike_bits": draw(st.integers(1, 2)),
            "pipeline_depth": draw(st.integers(0, 4)),
        },
    }


@st.composite
def systems(draw, kind: str):
    wl = draw(workloads(max_hw=9 if kind == "p2m" else 7))
    return load_hardware(_timing_friendly_hw(draw, kind, wl)), wl


def _assert_same_report(fast, ref) -> None:
    def keyed(report):
        out = {}
        for r in report.records:
            key = (r.sample, r.layer, r.step, r.component, r.metric)
            assert key not in out, f"duplicate record {key}"
            out[key] = (r.value, r.unit)
        return out

    a, b = keyed(fast), keyed(ref)
    assert a.keys() == b.keys()
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diff, f"records differ (fast, reference): {diff}"
    assert [(r.sample, r.layer, r.step, r.component, r.metric) for r in fast.records] == \
        [(r.sample, r.layer, r.step, r.component, r.metric) for r in ref.records]
    assert fast.summary == ref.summary
    meta_a = {k: v for k, v in fast.meta.items() if k != "elapsed_s"}
    meta_b = {k: v for k, v in ref.meta.items() if k != "elapsed_s"}
    assert meta_a == meta_b


@settings(**BASE, max_examples=100)
@given(systems("p2m"))
def test_simulate_matches_reference_p2m(system):
    hw, wl = system
    _assert_same_report(simulate(hw, wl), simulate_reference(hw, wl))


@settings(**BASE, max_examples=100)
@given(systems("conventional"))
def test_simulate_matches_reference_conventional(system):
    hw, wl = system
    _assert_same_report(simulate(hw, wl), simulate_reference(hw, wl))


# ---------------------------------------------------------------------------------------------
# component plans on arbitrary (not tick-friendly) timing values
# ---------------------------------------------------------------------------------------------

def _decimal(draw, lo: int, hi: int, scale: int) -> float:
    return draw(st.integers(lo, hi)) / scale


def _any_timing_hw(draw, kind: str, wl: Workload) -> dict:
    conv0 = wl.layers[0]
    _, h, w = wl.input_shape
    return {
        "sensor": {
            "kind": kind, "pixel_rows": h, "pixel_cols": w, "photodiodes_per_pixel": draw(st.sampled_from([1, 4, 9])),
            "adc_bits": draw(st.integers(1, 10)), "adc_counter_clock_mhz": _decimal(draw, 10, 40000, 10),
            "cds_ramps": draw(st.integers(1, 4)), "row_overhead_ns": _decimal(draw, 0, 20000, 10),
            "p2m": {"kernel": conv0.kernel[0], "stride": conv0.stride[0], "out_channels": conv0.out_shape[0],
                    "adc_bits": draw(st.integers(1, 10)), "ramps_per_conversion": draw(st.integers(1, 4)),
                    "adcs_per_output_column": draw(st.integers(1, 4)), "row_overhead_ns": _decimal(draw, 0, 20000, 10)},
        },
        "link": {
            "lanes": draw(st.integers(1, 8)), "gbps_per_lane": _decimal(draw, 8, 1000, 100),
            "encoding": draw(st.sampled_from(["bitmap", "aer"])), "raw_bits": draw(st.integers(1, 16)),
            "virtual_channel_bits": draw(st.integers(0, 4)),
            "line_blanking_ns": _decimal(draw, 0, 5000, 10), "frame_blanking_ns": _decimal(draw, 0, 5000, 10),
            "continuous_clock": draw(st.booleans()),
            "t_lpx_ns": _decimal(draw, 0, 1000, 10), "t_hs_prepare_zero_ns": _decimal(draw, 0, 3000, 10),
            "t_hs_trail_ns": _decimal(draw, 0, 1000, 10), "t_hs_exit_ns": _decimal(draw, 0, 2000, 10),
            "t_clk_overhead_ns": _decimal(draw, 0, 6000, 10),
        },
        "core": {"clock_mhz": _decimal(draw, 10, 40000, 10), "vector_width": draw(st.integers(1, 8)),
                 "membrane_bits": draw(st.integers(1, 32)), "weight_bits": 4,
                 "spike_bits": draw(st.integers(1, 8)), "pipeline_depth": draw(st.integers(0, 8))},
    }


@st.composite
def plan_cases(draw):
    kind = draw(st.sampled_from(["p2m", "conventional"]))
    wl = draw(workloads(max_hw=7, max_samples=2, max_steps=11))  # > 8 steps: step tags with 0 VC bits
    return load_hardware(_any_timing_hw(draw, kind, wl)), wl


@settings(**BASE, max_examples=100)
@given(plan_cases())
def test_component_plans_match_reference(case):
    hw, wl = case
    sp, rs = sensor_plan(hw, wl), reference_sensor(hw, wl)
    assert (sp.kind, sp.rows, sp.packets_per_row, sp.layer) == (rs.kind, rs.rows, rs.packets_per_row, rs.layer)
    assert list(zip(sp.packet_step.tolist(), sp.packet_row.tolist(), strict=True)) == rs.packets
    assert sp.actions == rs.actions
    assert {k: v for k, v in sp.details.items() if k != "row_time_ps"} == \
        {k: v for k, v in rs.details.items() if k != "row_time_ps"}
    assert sp.row_time_ps == rs.row_time_ps

    lp, rl = link_plan(hw, wl, sp), reference_link(hw, wl, rs)
    assert (lp.encoding, lp.bits_per_event, lp.ui_ps) == (rl.encoding, rl.bits_per_event, rl.ui_ps)
    assert lp.conventional_bits_per_frame == rl.conventional_payload_bits
    assert lp.step.tolist() == [p.step for p in rl.packets[0]]
    for s in range(wl.samples):
        pk = rl.packets[s]
        assert lp.payload_bits[s].tolist() == [p.payload_bits for p in pk]
        assert lp.wc_bytes[s].tolist() == [p.wc_bytes for p in pk]
        assert lp.wire_bytes[s].tolist() == [p.wire_bytes for p in pk]
        assert lp.bursts[s].tolist() == [p.bursts for p in pk]
        for fast_burst, fast_service, p in zip(lp.burst_ps[s].tolist(), lp.service_ps[s].tolist(), pk, strict=True):
            assert fast_burst == p.burst_ps
            assert fast_service == p.service_ps

    cp, rc = core_plan(hw, wl, sp, lp.payload_bits), reference_core(hw, wl, rs, rl)
    assert (cp.period_ps, cp.layer_names, cp.details) == (rc.period_ps, rc.layer_names, rc.details)
    for k in COUNTERS:
        assert cp.counters[k].tolist() == rc.counters[k].tolist(), k
    assert cp.tx_cycles.tolist() == rc.tx_cycles
    assert cp.tx_consume.tolist() == rc.tx_consume


# ---------------------------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------------------------

def _one_spike_system(y: int, x: int, encoding: str = "bitmap"):
    """p2m conv0 (1x1, 2 channels) on a 5x5 image with a single spike at channel 1, (y, x), step 0,
    feeding a 3x3 conv (padding 1, 4 channels) on a 3-wide vector unit."""
    layers = [Layer("conv0", "conv2d", ["input"], (2, 5, 5), kernel=(1, 1), stride=(1, 1), padding=(0, 0),
                    neuron=Neuron()),
              Layer("conv1", "conv2d", ["conv0"], (4, 5, 5), kernel=(3, 3), stride=(1, 1), padding=(1, 1),
                    weight_bits=2, neuron=Neuron())]
    check_graph(layers, (3, 5, 5))
    s0 = np.zeros((1, 1, 2, 5, 5), bool)
    s0[0, 0, 1, y, x] = True
    wl = Workload(layers=layers, input=np.zeros((1, 3, 5, 5), np.float32), time_steps=1,
                  packed_spikes={"conv0": pack_spikes(s0), "conv1": pack_spikes(np.zeros((1, 1, 4, 5, 5), bool))})
    hw = load_hardware({"sensor": {"kind": "p2m", "pixel_rows": 5, "pixel_cols": 5,
                                   "p2m": {"kernel": 1, "stride": 1, "out_channels": 2}},
                        "link": {"lanes": 2, "gbps_per_lane": 1.0, "encoding": encoding},
                        "core": {"vector_width": 3, "membrane_bits": 16, "weight_bits": 2, "pipeline_depth": 3}})
    return hw, wl


@pytest.mark.parametrize(("y", "x", "reached"), [(2, 2, 9), (0, 0, 4), (0, 2, 6)])
def test_single_spike_fans_out_over_its_window(y, x, reached):
    hw, wl = _one_spike_system(y, x)
    fast = core_plan(hw, wl, sensor_plan(hw, wl), link_plan(hw, wl, sensor_plan(hw, wl)).payload_bits)
    rs = reference_sensor(hw, wl)
    ref = reference_core(hw, wl, rs, reference_link(hw, wl, rs))
    for c in (fast.counters, ref.counters):
        assert c["input_spikes"][0, 0, 0] == 1
        assert c["vector_ops"][0, 0, 0] == reached * 2  # ceil(4 channels / 3 lanes) per position
        assert c["synaptic_ops"][0, 0, 0] == reached * 4
        assert c["weight_read_bits"][0, 0, 0] == reached * 4 * 2
        # the scatter's membranes, then the fire pass over all 100 neurons
        assert c["membrane_read_bits"][0, 0, 0] == (reached * 4 + 100) * 16
        assert c["fire_ops"][0, 0, 0] == 25 * 2
        # the spike's row packet does the scatter, the others just arrive; then fire pass + fill
        assert c["cycles"][0, 0, 0] == reached * 2 + 4 + 25 * 2 + 3
    packets = [max(1, reached * 2) if row == y else 1 for row in range(5)]
    assert fast.tx_cycles.tolist() == [packets + [25 * 2 + 3]]
    assert ref.tx_cycles == [packets + [25 * 2 + 3]]


def test_packet_wire_bytes_and_burst_time():
    """Bitmap rows of 5 positions x 2 channels = 10 bits -> 2 payload bytes, 8-byte long packets;
    frame start rides with row 0 and frame end with row 4. At 1 Gbps (UI = 1 ns) on 2 lanes the
    burst overhead is 50 + 145 + 10 + 8 + max(8, 60 + 4) + 100 = 377 ns; a long packet adds 4 bytes
    per lane = 32 UI, a short packet 16 UI."""
    hw, wl = _one_spike_system(2, 2)
    lp = link_plan(hw, wl, sensor_plan(hw, wl))
    ref = reference_link(hw, wl, reference_sensor(hw, wl)).packets[0]
    for wire, bursts, service in ((lp.wire_bytes[0].tolist(), lp.bursts[0].tolist(), lp.service_ps[0].tolist()),
                                  ([p.wire_bytes for p in ref], [p.bursts for p in ref], [p.service_ps for p in ref])):
        assert wire == [12, 8, 8, 8, 12]
        assert bursts == [2, 1, 1, 1, 2]
        assert service == [409_000 + 393_000, 409_000, 409_000, 409_000, 409_000 + 393_000]
    # AER: 10 neurons per row -> 4-bit addresses; the one spike's row carries 1 payload byte
    hw, wl = _one_spike_system(2, 2, encoding="aer")
    lp = link_plan(hw, wl, sensor_plan(hw, wl))
    ref = reference_link(hw, wl, reference_sensor(hw, wl)).packets[0]
    assert lp.payload_bits[0].tolist() == [p.payload_bits for p in ref] == [0, 0, 4, 0, 0]
    assert lp.wire_bytes[0].tolist() == [p.wire_bytes for p in ref] == [10, 6, 7, 6, 10]


def test_reference_sensor_actions_by_hand():
    """P2M, 2x2 RGGB quads (q = 2), kernel 2 stride 2 on a 4x6 image -> 2x3 outputs, 3 channels, 2 steps."""
    layers = [Layer("conv0", "conv2d", ["input"], (3, 2, 3), kernel=(2, 2), stride=(2, 2), padding=(0, 0),
                    neuron=Neuron())]
    check_graph(layers, (3, 4, 6))
    wl = Workload(layers=layers, input=np.zeros((1, 3, 4, 6), np.float32), time_steps=2,
                  packed_spikes={"conv0": pack_spikes(np.zeros((1, 2, 3, 2, 3), bool))})
    hw = load_hardware({"sensor": {"kind": "p2m", "pixel_rows": 4, "pixel_cols": 6, "adc_counter_clock_mhz": 1000.0,
                                   "p2m": {"kernel": 2, "stride": 2, "out_channels": 3, "adc_bits": 3,
                                           "ramps_per_conversion": 2, "adcs_per_output_column": 2,
                                           "row_overhead_ns": 5.0}},
                        "link": {}, "core": {}})
    want = {"pixel_frames": 4 * 6 * 4, "pixel_reads": 2 * 3 * 3 * 16, "row_activations": 2 * 3 * 4,
            "adc_conversions": 18, "neuron_updates": 36, "row_reads": 2,
            "in_pixel_macs": 2 * 3 * 3 * (2 * 2 * 3)}  # outputs x window (k k C_in)
    # 3 channels on 2 ADCs: 2 conversions in a row, each 2 ramps x 8 counts x 1 ns
    for plan in (sensor_plan(hw, wl), reference_sensor(hw, wl)):
        assert plan.actions == want
        assert plan.row_time_ps == 5_000 + 2 * 2 * 8 * 1_000


# ---------------------------------------------------------------------------------------------
# cases that once disagreed: kept as regression tests
# ---------------------------------------------------------------------------------------------

def _small_workload(layers: list[Layer], input_shape, steps: int = 1, seed: int = 0) -> Workload:
    check_graph(layers, input_shape)
    rng = np.random.default_rng(seed)
    spikes: dict[str, np.ndarray] = {}
    for la in layers:
        if la.spiking:
            if la.op == "flatten" and la.neuron is None:
                spikes[la.name] = spikes[la.inputs[0]].reshape(1, steps, -1)
            else:
                spikes[la.name] = rng.random((1, steps, *la.out_shape)) < 0.5
    return Workload(layers=layers, input=rng.random((1, *input_shape)).astype(np.float32), time_steps=steps,
                    packed_spikes={k: pack_spikes(v) for k, v in spikes.items()})


def _small_hw(kind: str, k0: int = 1, c0: int = 2, **core) -> object:
    return load_hardware({
        "sensor": {"kind": kind, "pixel_rows": 8, "pixel_cols": 8, "adc_bits": 2, "row_overhead_ns": 10.0,
                   "p2m": {"kernel": k0, "stride": k0, "out_channels": c0, "adc_bits": 2, "row_overhead_ns": 10.0}},
        "link": {"gbps_per_lane": 1.0, "t_lpx_ns": 5.0, "t_hs_prepare_zero_ns": 5.0, "t_hs_trail_ns": 5.0,
                 "t_hs_exit_ns": 5.0},
        "core": {"clock_mhz": 1000.0, "vector_width": 2, **core}})


def _conv(name, inputs, out_shape, k=1, s=1, p=0, groups=1, neuron=True) -> Layer:
    return Layer(name, "conv2d", inputs, out_shape, kernel=(k, k), stride=(s, s), padding=(p, p), groups=groups,
                 neuron=Neuron() if neuron else None)


def test_burst_time_is_the_exact_ceiling():
    # 1.5 Gbps (UI = 2000/3 ps), non-continuous clock, one lane, a 4-byte short packet:
    # 50 + 145 + 60 + 100 + 520 ns + (10 + 8 + 4 + 32) UI = 875000 + 36000 ps exactly
    hw = load_hardware({"sensor": {}, "link": {"lanes": 1, "continuous_clock": False}, "core": {}})
    assert int(burst_ps(4, hw["link"])) == 911_000


def test_p2m_row_time_is_the_exact_ceiling():
    # 7 channels on one ADC, 3 ramps of 2^8 counts at 1400 MHz: 7 * 3 * 256 / 1400 us = 3840000 ps
    wl = _small_workload([_conv("conv0", ["input"], (7, 2, 2))], (3, 2, 2))
    hw = load_hardware({"sensor": {"kind": "p2m", "pixel_rows": 2, "pixel_cols": 2, "adc_counter_clock_mhz": 1400.0,
                                   "p2m": {"kernel": 1, "stride": 1, "out_channels": 7, "adc_bits": 8,
                                           "ramps_per_conversion": 3, "row_overhead_ns": 0.0}},
                        "link": {}, "core": {}})
    assert reference_sensor(hw, wl).row_time_ps == 3_840_000
    assert sensor_plan(hw, wl).row_time_ps == 3_840_000


def _flat_head(last: Layer) -> list[Layer]:
    return [_conv("conv0", ["input"], (2, 2, 2)),
            Layer("flat", "flatten", ["conv0"], (8,)),
            Layer("fa", "linear", ["flat"], (4,), neuron=Neuron()),
            Layer("fb", "linear", ["fa"], (4,), neuron=Neuron()),
            last]


@pytest.mark.parametrize("last", [Layer("sum", "add", ["fa", "fb"], (4,), neuron=Neuron()),
                                  Layer("flat2", "flatten", ["fb"], (4,))])
def test_flat_inputs_of_add_and_flatten(last):
    wl = _small_workload(_flat_head(last), (3, 2, 2))
    hw = _small_hw("p2m")
    _assert_same_report(simulate(hw, wl), simulate_reference(hw, wl))


def test_grouped_encoding_layer():
    wl = _small_workload([_conv("conv0", ["input"], (4, 2, 2), groups=2), _conv("c1", ["conv0"], (2, 2, 2))], (2, 2, 2))
    hw = _small_hw("conventional")
    _assert_same_report(simulate(hw, wl), simulate_reference(hw, wl))


@pytest.mark.parametrize(("k", "p", "out"), [(3, 1, 2), (1, 1, 4)])
def test_padded_encoding_layer(k, p, out):
    wl = _small_workload([_conv("conv0", ["input"], (1, out, out), k=k, p=p), _conv("c1", ["conv0"], (1, out, out))],
                         (1, 2, 2))
    hw = _small_hw("conventional")
    _assert_same_report(simulate(hw, wl), simulate_reference(hw, wl))


def test_two_encoding_layers():
    wl = _small_workload([_conv("conv0", ["input"], (1, 2, 2)), _conv("convb", ["input"], (8, 2, 2)),
                          _conv("out", ["convb"], (1, 2, 2), neuron=False)], (1, 2, 2))
    hw = _small_hw("conventional", vector_width=1)
    _assert_same_report(simulate(hw, wl), simulate_reference(hw, wl))


def test_p2m_with_an_encoding_layer_on_the_core_is_refused():
    wl = _small_workload([_conv("conv0", ["input"], (2, 2, 2)), _conv("convb", ["input"], (2, 2, 2)),
                          Layer("sum", "add", ["conv0", "convb"], (2, 2, 2))], (1, 2, 2), steps=3)
    with pytest.raises(ValueError):
        simulate_reference(_small_hw("p2m"), wl)
    with pytest.raises(MappingError):
        simulate(_small_hw("p2m"), wl)
