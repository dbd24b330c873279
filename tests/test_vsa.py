"""The VSA chip on the committed MNIST-like trace: the knobs move results the way hardware would."""

from __future__ import annotations

import pytest
from snnsim import load_hardware, load_workload, simulate
from snnsim.errors import MappingError

HW = "hwconfigs/vsa.yaml"


@pytest.fixture(scope="module")
def mnist():
    return load_workload("workloads/vsa_mnist.npz")


def run(wl, *sets):
    # the MNIST trace is grey: its frames come from a monochrome array (vsa.yaml's is Bayer)
    mono = ["sensor.photodiodes_per_pixel=1"] if wl.input_shape[0] == 1 else []
    return simulate(load_hardware(HW, mono + list(sets)), wl)


def ops(rep):
    return rep.summary["operations"]


def test_wider_vectors_fewer_cycles_until_they_bind(mnist):
    cycles = [ops(run(mnist, f"core.vector_width={v}"))["core_cycles_per_frame"] for v in (8, 16, 32, 64, 256)]
    assert all(a > b for a, b in zip(cycles, cycles[1:], strict=False))
    # halving the work per spike stops paying once fills, fire passes and DRAM bind
    assert cycles[0] / cycles[1] > 1.8 and cycles[3] / cycles[4] < 1.2


def test_fusion_removes_the_intermediate_maps_round_trip(mnist):
    off, on = run(mnist, "core.fusion=none"), run(mnist, "core.fusion=two_layer")
    sram = lambda r: r.total("core", "spike_read_bits") + r.total("core", "spike_write_bits")  # noqa: E731
    dram = lambda r: ops(r)["dram_bits_per_frame"]  # noqa: E731
    assert ops(on)["fusion_saved_bits_per_frame"] > 0 and ops(off)["fusion_saved_bits_per_frame"] == 0
    assert sram(on) + dram(on) * on.summary["frames"] < sram(off) + dram(off) * off.summary["frames"]
    assert on.meta["core"]["fused_pairs"] and not off.meta["core"]["fused_pairs"]
    assert ops(on)["core_cycles_per_frame"] == ops(off)["core_cycles_per_frame"]  # same PE array
    tiny = run(mnist, "core.fusion=two_layer", "core.line_buffer_kib=0.01")
    assert not tiny.meta["core"]["fused_pairs"]
    assert any("line buffer" in why for why in tiny.meta["core"]["fusion_refused"].values())


def test_buffers_decide_dram_traffic(mnist):
    small, big = run(mnist, "core.weight_sram_kib=64"), run(mnist, "core.weight_sram_kib=512")
    assert not small.meta["core"]["weights_resident"] and big.meta["core"]["weights_resident"]
    assert ops(big)["dram_bits_per_frame"] < ops(small)["dram_bits_per_frame"]
    assert ops(big)["tops_per_w_dense"] > ops(small)["tops_per_w_dense"]
    spill = run(mnist, "core.loop_order=time_outer", "core.membrane_sram_kib=4")
    assert ops(spill)["dram_bits_per_frame"] > ops(run(mnist, "core.loop_order=time_outer"))["dram_bits_per_frame"]


def test_dataflow_and_encoding_mode(mnist):
    scatter, gather = run(mnist, "core.dataflow=scatter"), run(mnist, "core.dataflow=gather")
    assert scatter.total("core", "membrane_read_bits") > gather.total("core", "membrane_read_bits")
    assert ops(scatter)["core_cycles_per_frame"] == ops(gather)["core_cycles_per_frame"]
    serial, mult = run(mnist, "core.encoding_mode=bit_serial"), run(mnist, "core.encoding_mode=multiplier")
    enc = mnist.layers[0].name
    cyc = lambda r: r.total("core", "cycles", layer=enc)  # noqa: E731
    assert cyc(serial) > cyc(mult)
    assert serial.total("core", "shift_adds") == 8 * serial.total("core", "macs")


def test_impossible_buffers_are_clear_errors(mnist):
    with pytest.raises(MappingError) as e:
        run(mnist, "core.membrane_sram_kib=0.001")
    assert e.value.key == "core.membrane_sram_kib" and "--set core.membrane_sram_kib=" in e.value.suggestion
    with pytest.raises(MappingError) as e:
        run(mnist, "core.weight_sram_kib=0.001")
    assert e.value.key == "core.weight_sram_kib"


def test_tops_per_w_definitions(mnist):
    rep = run(mnist)
    o = rep.summary["operations"]
    e = rep.summary["energy"]["by_component_pj_per_frame"]
    assert o["ops_effective_per_frame"] == 2 * (o["synaptic_ops_per_frame"] + o["macs_per_frame"])
    assert o["tops_per_w_effective"] == pytest.approx(o["ops_effective_per_frame"] / ((e["core"] + e["dram"]) * 1e-12) / 1e12)
    assert o["tops_per_w_dense"] > o["tops_per_w_effective"]  # sparse activity
