"""The Loihi-class target: the engine against the one-spike-at-a-time reference on random
networks, chips and presets; its bad inputs; its figures on a hand-sized case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from snnsim.errors import ConfigError, MappingError
from snnsim.hwconfig import load_hardware
from snnsim.reference.loihi import engine_stats, reference_loihi
from snnsim.simulation import simulate
from snnsim.workload.graphtrace import to_workload

from .test_reference_v2 import N, trace_of

IF = {"model": "spikingjelly.if"}


def _hw(**loihi):
    return load_hardware({"name": "l", "mapping": {"target": "loihi", "input": "host"}, "loihi": loihi})


def _net(rng: np.random.Generator) -> tuple[list, tuple[int, ...]]:
    c, h, w = int(rng.integers(1, 3)), int(rng.integers(4, 8)), int(rng.integers(4, 8))
    nodes = [N("in", "neuron", ["input"], **IF)]
    k, s, p = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    c1 = int(rng.integers(2, 5))
    nodes += [N("c1", "conv2d", ["in"], out_channels=c1, kernel=k, stride=s, padding=p, bias=bool(rng.random() < 0.5)),
              N("n1", "neuron", ["c1"], **IF)]
    last = "n1"
    if rng.random() < 0.5:
        nodes += [N("p1", rng.choice(["avgpool", "sumpool"]), ["n1"], kernel=2, stride=2),
                  N("c2", "conv2d", ["p1"], out_channels=int(rng.integers(2, 4)), kernel=int(rng.integers(1, 3)),
                    padding=int(rng.integers(0, 2)), groups=1, bias=False),
                  N("n2", "neuron", ["c2"], **IF)]
        last = "n2"
    nodes += [N("f", "flatten", [last]), N("fc", "linear", ["f"], out_features=int(rng.integers(2, 6)), bias=False)]
    if rng.random() < 0.5:
        nodes.append(N("nf", "neuron", ["fc"], **IF))
    return nodes, (c, h, w)


def _records(report) -> dict:
    return {(r.sample, r.layer, r.step, r.metric): r.value for r in report.records if r.component == "loihi"}


def _draw_case(seed: int):
    rng = np.random.default_rng(seed)
    nodes, shape = _net(rng)
    try:
        wl = to_workload(trace_of(nodes, shape, int(rng.integers(1, 3)), int(rng.integers(1, 4)), seed,
                                  rate=float(rng.uniform(0.05, 0.6))))
    except Exception:  # a random geometry the graph refuses (an empty output)
        return None
    over = {"preset": str(rng.choice(["sanafe_loihi", "davies2018", "keras_spiking"])),
            "max_compartments": int(rng.integers(8, 80)), "max_input_axons": int(rng.integers(20, 200)),
            "max_output_axons": int(rng.integers(20, 400)), "syn_mem_words": int(rng.integers(20, 400)),
            "max_syn_per_entry": int(rng.integers(1, 70)), "weight_bits": int(rng.integers(1, 10)),
            "index_bits": int(rng.integers(0, 9)), "mesh_x": int(rng.integers(1, 4)),
            "mesh_y": int(rng.integers(1, 3)), "cores_per_tile": int(rng.integers(1, 4)),
            "soft_reset_compartments": int(rng.integers(1, 3)),
            "synapse_format": str(rng.choice(["auto", "dense", "sparse", "conv"])),
            "t_io_sample_us": float(rng.integers(0, 50)), "management_ns_per_step": float(rng.integers(0, 900)) / 10,
            "t_chip_hop_ns": float(rng.integers(0, 300)) / 10, "e_chip_hop_pj": float(rng.integers(0, 99)),
            "t_msg_in_ns": float(rng.integers(0, 200)) / 10, "t_hop_ew_ns": float(rng.integers(0, 90)) / 10,
            "barrier_table": "1:100, 3:250, 9:700" if rng.random() < 0.5 else None}
    return wl, over


def test_engine_matches_reference_on_random_networks_and_chips():
    compared = multi_core = multi_chip = 0
    for seed in range(400):
        case = _draw_case(seed)
        if case is None:
            continue
        wl, over = case
        try:
            hw = _hw(**over)
            report = simulate(hw, wl)
        except MappingError:
            continue  # limits no split meets: refused (tested below)
        ref = reference_loihi(hw, wl)
        from snnsim.hw.loihi import network

        _cfg, net = network(hw, wl)
        assert engine_stats(net) == ref["stats"]
        for st in ref["stats"]:  # every core within every limit
            assert st["compartments"] <= over["max_compartments"]
            assert st["input_axons"] <= over["max_input_axons"]
            assert st["output_axons"] <= over["max_output_axons"]
            assert st["synaptic_words"] <= over["syn_mem_words"]
        rec = _records(report)
        for li, name in enumerate(ref["layers"]):
            for s in range(wl.samples):
                for t in range(wl.time_steps):
                    for m, table in ref["counts"].items():
                        if m != "fired":
                            assert rec[(s, name, t, m)] == table[s][li][t], (seed, m, name, s, t)
                    for a, table in ref["energy"].items():
                        assert rec[(s, name, t, f"energy.{a}")] == pytest.approx(table[s][li][t], rel=1e-12, abs=1e-9)
        for s in range(wl.samples):
            for t in range(wl.time_steps):
                for m, table in ref["steps"].items():
                    assert rec[(s, "-", t, m)] == table[s][t], (seed, m)
        static = [r.value for r in report.records if r.metric == "energy.static"]
        assert static == pytest.approx(ref["static_pj"], rel=1e-12)
        assert report.meta["loihi"]["cores_used"] == ref["cores"]
        assert report.meta["loihi"]["tiles_used"] == ref["tiles"]
        lat = [r.value for r in report.records if r.metric == "latency_ps"]
        assert lat == ref["wall_ps"]
        compared += 1
        multi_core += ref["cores"] > 4
        multi_chip += ref["chips"] > 1
        if compared >= 60:
            break
    assert compared >= 40 and multi_core >= 10 and multi_chip >= 5, (compared, multi_core, multi_chip)


def _small_wl(direct: bool = False, maxpool: bool = False, seed: int = 0):
    nodes = [] if direct else [N("in", "neuron", ["input"], **IF)]
    src = "input" if direct else "in"
    nodes += [N("c1", "conv2d", [src], out_channels=4, kernel=3, padding=1, bias=False), N("n1", "neuron", ["c1"], **IF)]
    last = "n1"
    if maxpool:
        nodes += [N("mp", "maxpool", ["n1"], kernel=2, stride=2)]
        last = "mp"
    nodes += [N("f", "flatten", [last]), N("fc", "linear", ["f"], out_features=3, bias=False)]
    return to_workload(trace_of(nodes, (1, 6, 6), 2, 3, seed))


def test_direct_input_is_refused_with_the_conversion_to_use():
    with pytest.raises(MappingError) as e:
        simulate(_hw(), _small_wl(direct=True))
    assert e.value.key == "layers.n1" and "input_coding='rate'" in e.value.suggestion


def test_max_pool_of_spikes_is_refused():
    with pytest.raises(MappingError) as e:
        simulate(_hw(), _small_wl(maxpool=True))
    assert e.value.key == "layers.mp" and "maxpool='avg'" in e.value.suggestion


def test_a_fan_in_no_core_holds_is_refused_naming_the_limit():
    with pytest.raises(MappingError) as e:
        simulate(_hw(max_input_axons=8), _small_wl())  # a 3x3 window over 1 channel reads 9 axons
    assert e.value.key == "layers.n1" and "input axons" in e.value.message and "9" in e.value.found


def test_a_model_needing_more_chips_than_the_board_has_is_refused():
    with pytest.raises(MappingError) as e:
        simulate(_hw(max_compartments=16, chips=1, mesh_x=1, mesh_y=1, cores_per_tile=2), _small_wl())
    assert e.value.key == "loihi.chips" and "--set loihi.chips=" in e.value.suggestion


def test_sections_of_other_units_and_other_inputs_are_refused():
    with pytest.raises(ConfigError) as e:
        load_hardware({"mapping": {"target": "loihi"}})
    assert e.value.key == "mapping.input"
    with pytest.raises(ConfigError) as e:
        load_hardware({"mapping": {"target": "loihi", "input": "host"}, "core": {}})
    assert e.value.key == "core"
    with pytest.raises(ConfigError) as e:
        load_hardware({"mapping": {"target": "core", "input": "host"}, "core": {}})
    assert e.value.key == "mapping.input"
    with pytest.raises(ConfigError) as e:
        _hw(barrier_table="4:100, 2:300")
        simulate(_hw(barrier_table="4:100, 2:300"), _small_wl())
    assert e.value.key == "loihi.barrier_table"


def test_hand_sized_case_charges_what_the_rules_say():
    """1 input neuron layer of 36 -> conv 4x3x3 pad 1 (144 neurons) -> linear 3: with every neuron
    in one core per layer, each spike of an input neuron sends one message to the conv core with
    its window's synapses; every mapped neuron is accessed every step."""
    wl = _small_wl(seed=3)
    hw = _hw(preset="davies2018", t_io_sample_us=0.0)
    rep = simulate(hw, wl)
    rec = _records(rep)
    spikes_in = wl.spikes("in").reshape(2, 3, -1)
    cores = rep.meta["loihi"]["layers"]
    assert [c["cores"] for c in cores] == [1, 1, 1]  # 72, 288, 3 compartments
    reach = np.zeros(36, np.int64)  # synapses of each input neuron into the conv: 4 channels x its taps
    for y in range(6):
        for x in range(6):
            taps = sum(1 for dy in (-1, 0, 1) for dx in (-1, 0, 1) if 0 <= y + dy < 6 and 0 <= x + dx < 6)
            reach[y * 6 + x] = 4 * taps
    for s in range(2):
        for t in range(3):
            fired = spikes_in[s, t]
            assert rec[(s, "in", t, "messages")] == fired.sum()
            assert rec[(s, "n1", t, "synaptic_ops")] == (reach * fired).sum()
            assert rec[(s, "n1", t, "energy.access")] == pytest.approx(144 * 52.0)
            assert rec[(s, "n1", t, "energy.synapse")] == pytest.approx((reach * fired).sum() * 23.6)
    # one chip: static power x the run's time, apart from the dynamic energy
    s = rep.summary
    assert s["neuromorphic"]["chips_used"] == 1
    interval = s["delay"]["frame_interval_ps"]
    assert s["energy"]["static_pj_per_frame"] == pytest.approx(104.0 * interval * 1e-3)
    assert s["power"]["static_mw"] == pytest.approx(104.0, rel=1e-6)
    assert math.isclose(s["energy"]["total_pj_per_frame"],
                        s["energy"]["dynamic_pj_per_frame"] + s["energy"]["static_pj_per_frame"])


def test_cli_refuses_a_direct_coded_trace_with_exit_status_2():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "snnsim", "run", "hwconfigs/loihi.yaml", "workloads/digits_snn.npz"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Loihi" in r.stderr and "input_coding='rate'" in r.stderr
