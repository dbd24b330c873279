"""Partitioning a layer's neurons onto Loihi-class neuro-cores under the per-core limits.

Why: a neuromorphic chip holds a layer only as blocks of neurons, one block per core, and each
core has hard limits: compartments (neuron state), input axons (distinct source neurons whose
spikes it receives), synaptic memory (the weights of every synapse from those axons into its
neurons) and output axons. Which limit binds first decides the core count, and the core count
decides static power, barrier time and spike traffic. Intel's compiler (NxTF, Rueckauer et al.
2022) enumerates splits of a layer's output volume into per-core blocks, drops those that break
a limit and ranks the rest by cost; this module does the same with its own cost model.

Limits (``CoreLimits``; Loihi 1 values, pim-loihi-ncs2.md B.1 [V]): 1024 compartments, 4096
input axons, 4096 output-axon entries, 16,384 synaptic-memory words of 64 bits per core, 128
cores per chip; a neuron with reset by subtraction takes 2 compartments.

The model of one block (a box of the output volume: a range of channels x a range of each
spatial axis):

* compartments = neurons x compartments per neuron;
* input axons = the source neurons any neuron of the block reads: the channels of the groups the
  block's channels belong to, times along each spatial axis the input positions its windows
  cover (padding excluded); a linear layer reads every input;
* synapses = for every neuron of the block, its in-bounds kernel taps x input channels per group
  (a linear: every input); synaptic words = ceil(synapses x (weight bits + index bits) / 64)
  [A: synapses packed densely into 64-bit words; ``index_bits`` = 0 models a dense encoding, a
  sparse one stores an index beside each weight];
* output axons are not a property of the block alone (they count the cores of the next layer a
  neuron sends to) and are not checked here.

Every metric is a product of per-axis terms, so a split's worst block is the product of each
axis's worst range and each split is checked in O(axes x ranges). The candidates are every
distinct block size per axis (the sizes ceil(n / p) for p = 1..n, O(sqrt n) of them); the legal
split with the fewest cores wins, ties broken by the fewest input axons then synaptic words
summed over cores, then by splitting channels last (a channel block of a standard convolution
needs the whole input window of every channel: NxTF's heuristic, B.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import MappingError


@dataclass(frozen=True)
class CoreLimits:
    """What one neuro-core holds (Loihi 1 defaults, pim-loihi-ncs2.md B.1)."""

    compartments: int = 1024
    input_axons: int = 4096
    output_axons: int = 4096
    synaptic_words: int = 16384
    word_bits: int = 64
    cores_per_chip: int = 128


@dataclass(frozen=True)
class LayerShape:
    """A weighted layer as the partitioner sees it: output (C, *spatial) or (F,), input
    (C_in, *spatial) or (F_in,), the kernel, stride and padding per spatial axis (empty for a
    linear layer), groups, weight bits and compartments per neuron."""

    name: str
    out_shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    groups: int = 1
    weight_bits: int = 8
    compartments_per_neuron: int = 1

    @property
    def linear(self) -> bool:
        return not self.kernel


@dataclass(frozen=True)
class Partition:
    """A layer split into blocks: ``parts`` per output axis (channels first), the block size per
    axis, the cores, and the worst block's figures (what the limits are checked against)."""

    layer: str
    parts: tuple[int, ...]
    block: tuple[int, ...]
    cores: int
    compartments: int  # the worst block's
    input_axons: int
    synaptic_words: int
    total_input_axons: int  # summed over the cores
    total_synaptic_words: int

    def utilisation(self, limits: CoreLimits) -> dict[str, float]:
        """The worst block's share of each limit."""
        return {"compartments": self.compartments / limits.compartments,
                "input_axons": self.input_axons / limits.input_axons,
                "synaptic_words": self.synaptic_words / limits.synaptic_words}


def _ranges(n: int, size: int) -> list[tuple[int, int]]:
    """The blocks of an axis of length ``n`` cut into pieces of ``size`` (the last may be shorter)."""
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def _sizes(n: int) -> list[int]:
    """Every distinct block size ceil(n / p), p = 1..n, largest first."""
    return sorted({-(-n // p) for p in range(1, n + 1)}, reverse=True)


def _axis_terms(lo: int, hi: int, n_in: int, k: int, s: int, p: int) -> tuple[int, int]:
    """Along one spatial axis, for the outputs lo..hi-1: the input positions their windows cover
    (inside the input) and the sum over the outputs of their in-bounds taps."""
    covered, taps, reached = 0, 0, -1  # reached: the last input position counted
    for o in range(lo, hi):
        a, b = max(0, o * s - p), min(n_in - 1, o * s - p + k - 1)
        if b < a:
            continue  # a window entirely in the padding
        taps += b - a + 1
        start = max(a, reached + 1)  # windows overlap when the stride is below the kernel, leave gaps above it
        if b >= start:
            covered += b - start + 1
        reached = max(reached, b)
    return covered, taps


def _check_shape(layer: LayerShape) -> None:
    rank = len(layer.out_shape) - 1
    if layer.linear:
        if len(layer.out_shape) != 1 or len(layer.in_shape) != 1:
            raise MappingError("a linear layer maps (F_in,) to (F_out,)", key=f"layers.{layer.name}",
                               expected="1-D input and output", found=f"{layer.in_shape} -> {layer.out_shape}")
        return
    if len(layer.in_shape) != rank + 1 or not (len(layer.kernel) == len(layer.stride) == len(layer.padding) == rank):
        raise MappingError("a convolution needs a kernel, stride and padding per spatial axis",
                           key=f"layers.{layer.name}", expected=f"{rank} values each",
                           found=f"kernel {layer.kernel}, stride {layer.stride}, padding {layer.padding}")
    if layer.out_shape[0] % layer.groups or layer.in_shape[0] % layer.groups:
        raise MappingError("groups must divide the channels", key=f"layers.{layer.name}.groups",
                           expected=f"a divisor of {layer.in_shape[0]} and {layer.out_shape[0]}",
                           found=str(layer.groups))


def _channel_terms(layer: LayerShape, size: int) -> list[tuple[int, int, int]]:
    """Per channel block: (channels, input channels it reads, input channels per output channel)."""
    c_out = layer.out_shape[0]
    if layer.linear:
        return [(hi - lo, layer.in_shape[0], layer.in_shape[0]) for lo, hi in _ranges(c_out, size)]
    per_group_out, per_group_in = c_out // layer.groups, layer.in_shape[0] // layer.groups
    out = []
    for lo, hi in _ranges(c_out, size):
        groups = (hi - 1) // per_group_out - lo // per_group_out + 1
        out.append((hi - lo, groups * per_group_in, per_group_in))
    return out


def candidates(layer: LayerShape, limits: CoreLimits, index_bits: int = 0) -> list[Partition]:
    """Every split of the layer's output volume whose worst block fits one core, best first."""
    _check_shape(layer)
    syn_bits = layer.weight_bits + index_bits
    axes = list(layer.out_shape)
    spatial = axes[1:]
    # per axis and block size: the worst block's terms and the sums over its blocks
    ch = {b: _channel_terms(layer, b) for b in _sizes(axes[0])}
    sp = []
    for a, n in enumerate(spatial):
        terms = {}
        for b in _sizes(n):
            rows = [_axis_terms(lo, hi, layer.in_shape[a + 1], layer.kernel[a], layer.stride[a], layer.padding[a])
                    + (hi - lo,) for lo, hi in _ranges(n, b)]
            terms[b] = rows  # (covered inputs, taps, outputs) per block
        sp.append(terms)
    out = []
    for cb, crow in ch.items():
        c_worst = max(c for c, _i, _g in crow)
        room = limits.compartments // layer.compartments_per_neuron // c_worst  # neurons left per channel
        combos: list[list[int]] = [[]]
        for terms in sp:  # only blocks whose neurons fit the compartments
            combos = [c + [b] for c in combos for b in terms
                      if math.prod(max(r[2] for r in sp[i][x]) for i, x in enumerate(c + [b])) <= room]
        for blocks in combos:
            per_axis = [sp[a][b] for a, b in enumerate(blocks)]
            n_blocks = len(crow) * math.prod(len(r) for r in per_axis)
            # worst block: the product of each axis's worst term (all terms are non-negative)
            comp = c_worst * math.prod(max(r[2] for r in rows) for rows in per_axis) * layer.compartments_per_neuron
            if comp > limits.compartments:
                continue
            in_axons = max(i for _c, i, _g in crow) * math.prod(max(r[0] for r in rows) for rows in per_axis)
            if in_axons > limits.input_axons:
                continue
            synapses = max(c * g for c, _i, g in crow) * math.prod(max(r[1] for r in rows) for rows in per_axis)
            words = -(-synapses * syn_bits // limits.word_bits)
            if words > limits.synaptic_words:
                continue
            tot_axons = sum(i for _c, i, _g in crow) * math.prod(sum(r[0] for r in rows) for rows in per_axis)
            tot_syn = sum(c * g for c, _i, g in crow) * math.prod(sum(r[1] for r in rows) for rows in per_axis)
            out.append(Partition(layer.name, (len(crow), *(len(r) for r in per_axis)),
                                 (cb, *blocks), n_blocks, comp, in_axons, words, tot_axons,
                                 -(-tot_syn * syn_bits // limits.word_bits)))
    out.sort(key=lambda p: (p.cores, p.total_input_axons, p.total_synaptic_words, p.parts[0]))
    return out


def partition(layer: LayerShape, limits: CoreLimits, index_bits: int = 0) -> Partition:
    """The best legal split of the layer, or a :class:`MappingError` naming the limit that no
    split meets, with the smallest value any split reaches (one neuron per core at the least)."""
    found = candidates(layer, limits, index_bits)
    if found:
        return found[0]
    # which limit fails even for the smallest block: one neuron per core, an interior window
    c_in = layer.in_shape[0] if layer.linear else layer.in_shape[0] // layer.groups
    taps = math.prod(layer.kernel) if layer.kernel else 1
    axons = c_in * taps
    words = -(-c_in * taps * (layer.weight_bits + index_bits) // limits.word_bits)
    if layer.compartments_per_neuron > limits.compartments:
        key, need, cap = "compartments", layer.compartments_per_neuron, limits.compartments
    elif axons > limits.input_axons:
        key, need, cap = "input_axons", axons, limits.input_axons
    else:
        key, need, cap = "synaptic_words", words, limits.synaptic_words
    raise MappingError(f"layer {layer.name} has no legal partition onto the cores: one neuron alone needs more "
                       f"{key.replace('_', ' ')} than a core has", key=f"layers.{layer.name}",
                       expected=f"<= {cap} {key.replace('_', ' ')} per core", found=str(need),
                       suggestion="split the layer's fan-in (fewer input channels or a smaller kernel)")
