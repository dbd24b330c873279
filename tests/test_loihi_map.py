"""The Loihi-class partitioner: blocks of a layer's neurons per core under the core limits,
checked against a neuron-by-neuron count of every block, by hand, and against published
mappings."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snnsim.errors import MappingError
from snnsim.hw.loihi_map import CoreLimits, LayerShape, candidates, partition


def _blocks_by_hand(layer: LayerShape, block: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(neurons, input axons, synapses) of every block, neuron by neuron and tap by tap."""
    out_shape, in_shape = layer.out_shape, layer.in_shape
    ranges = [[(a, min(n, a + b)) for a in range(0, n, b)] for n, b in zip(out_shape, block, strict=True)]
    rows = []
    for box in itertools.product(*ranges):
        neurons, sources, synapses = 0, set(), 0
        for idx in itertools.product(*(range(lo, hi) for lo, hi in box)):
            neurons += 1
            co = idx[0]
            if layer.linear:
                for i in range(in_shape[0]):
                    sources.add((i,))
                    synapses += 1
                continue
            per_in = in_shape[0] // layer.groups
            g = co // (out_shape[0] // layer.groups)
            for ci in range(g * per_in, (g + 1) * per_in):
                for off in itertools.product(*(range(k) for k in layer.kernel)):
                    pos = [o * s - p + d for o, s, p, d in zip(idx[1:], layer.stride, layer.padding, off, strict=True)]
                    if all(0 <= x < n for x, n in zip(pos, in_shape[1:], strict=True)):
                        synapses += 1
                        sources.add((ci, *pos))
        rows.append((neurons, len(sources), synapses))
    return rows


@st.composite
def layers(draw):
    if draw(st.integers(0, 4)) == 0:
        return LayerShape("fc", (draw(st.integers(1, 40)),), (draw(st.integers(1, 60)),),
                          weight_bits=draw(st.integers(1, 8)), compartments_per_neuron=draw(st.integers(1, 2)))
    rank = draw(st.integers(1, 2))
    groups = draw(st.sampled_from([1, 1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 4))
    size = [draw(st.integers(2, 7)) for _ in range(rank)]
    k = [draw(st.integers(1, min(3, n))) for n in size]
    s = [draw(st.integers(1, 2)) for _ in range(rank)]
    p = [draw(st.integers(0, kk // 2)) for kk in k]
    out = [(n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip(size, k, s, p, strict=True)]
    return LayerShape("conv", (c_out, *out), (c_in, *size), tuple(k), tuple(s), tuple(p), groups,
                      draw(st.integers(1, 8)), draw(st.integers(1, 2)))


@settings(max_examples=120, deadline=None, derandomize=True)
@given(layers(), st.integers(4, 60), st.integers(8, 200), st.integers(2, 40), st.integers(0, 4))
def test_every_split_is_its_blocks_counted_neuron_by_neuron(layer, comps, axons, words, index_bits):
    """Each candidate's worst block and totals equal the maximum and sum over its blocks counted
    one neuron and one tap at a time, every legal split is offered, and no illegal one."""
    limits = CoreLimits(compartments=comps, input_axons=axons, synaptic_words=words, word_bits=16)
    syn_bits = layer.weight_bits + index_bits
    offered = {c.block: c for c in candidates(layer, limits, index_bits)}
    sizes = [sorted({-(-n // q) for q in range(1, n + 1)}) for n in layer.out_shape]
    for block in itertools.product(*sizes):
        rows = _blocks_by_hand(layer, block)
        fits = all(n * layer.compartments_per_neuron <= comps and a <= axons and -(-sy * syn_bits // 16) <= words
                   for n, a, sy in rows)
        assert (block in offered) == fits, block
        if fits:
            c = offered[block]
            assert c.cores == len(rows)
            assert c.compartments == max(n for n, _a, _s in rows) * layer.compartments_per_neuron
            assert c.input_axons == max(a for _n, a, _s in rows)
            assert c.synaptic_words == -(-max(sy for _n, _a, sy in rows) * syn_bits // 16)
            assert c.total_input_axons == sum(a for _n, a, _s in rows)
            assert c.total_synaptic_words == -(-sum(sy for _n, _a, sy in rows) * syn_bits // 16)
    if offered:
        best = partition(layer, limits, index_bits)
        assert best.cores == min(c.cores for c in offered.values())


def test_a_small_linear_layer_fits_one_core():
    p = partition(LayerShape("fc", (5,), (10,), weight_bits=8), CoreLimits())
    assert (p.cores, p.parts, p.input_axons, p.synaptic_words) == (1, (1,), 10, math.ceil(50 * 8 / 64))


def test_reset_by_subtraction_takes_two_compartments_per_neuron():
    one = partition(LayerShape("fc", (3000,), (10,)), CoreLimits())
    two = partition(LayerShape("fc", (3000,), (10,), compartments_per_neuron=2), CoreLimits())
    assert (one.cores, two.cores) == (3, 6)  # 1024 compartments per core


def test_synaptic_memory_binds_a_wide_fan_in():
    # 4000 inputs x 8 bits = 500 words per neuron: 32 neurons per core of 16,384 words
    p = partition(LayerShape("fc", (300,), (4000,), weight_bits=8), CoreLimits(input_axons=8192))
    assert p.cores == math.ceil(300 / 32) and p.synaptic_words <= 16384


def test_a_fan_in_above_the_input_axons_is_refused_with_the_limit():
    # a 3x3 kernel over 512 channels reads 4608 source neurons: more than a core's 4096 axons
    layer = LayerShape("conv9", (64, 8, 8), (512, 8, 8), (3, 3), (1, 1), (1, 1))
    with pytest.raises(MappingError, match="no legal partition") as e:
        partition(layer, CoreLimits())
    assert e.value.key == "layers.conv9" and e.value.found == "4608" and "4096" in e.value.expected


def test_the_dvs_gesture_network_maps_near_its_published_core_count():
    """SANA-FE's DVS-gesture mapping (snn/dvs.yaml, pim-loihi-ncs2.md B.3) puts the four conv
    layers and the dense one on 8 + 8 + 22 + 9 + 1 = 48 cores; an own cost model lands within 25 %."""
    shapes = [((16, 15, 15), (2, 32, 32), 2), ((32, 13, 13), (16, 15, 15), 1), ((64, 11, 11), (32, 13, 13), 1),
              ((11, 9, 9), (64, 11, 11), 1)]
    cores = sum(partition(LayerShape(f"c{i}", o, i_, (3, 3), (s, s), (0, 0), 1, 8, 2), CoreLimits()).cores
                for i, (o, i_, s) in enumerate(shapes))
    cores += partition(LayerShape("fc", (11,), (891,), weight_bits=8, compartments_per_neuron=2), CoreLimits()).cores
    assert abs(cores - 48) <= 0.25 * 48, cores
