"""A trace's network as a Loihi-class chip holds it: populations, their synapses, cores and places.

Why: on a neuromorphic chip every neuron lives in one core and every synapse is an entry of the
destination core's synaptic memory; the per-step work of a core, the messages between cores and
their hops all follow from which neuron sits where. This module turns the trace's graph into
*populations* (one per layer: its neurons and the synapses that feed them), maps each onto cores
(:mod:`.loihi_map` ranks the splits of its output volume; the best split that also meets every
per-core limit exactly is taken), and places the cores on the tile mesh of one or more chips.

What runs on the chip (anything else is refused, naming the layer):

* the input layer: neurons on the analog frame without weights (``input_coding="rate"`` of
  :func:`snnsim.export.from_ann`): compartments driven by a bias, the pixel value, as Intel's
  NxTF and SNN Toolbox inject images [V: pim-loihi-ncs2.md B.2, D.2]; they fire into the chip;
* a layer of integrate-and-fire (or leaky) neurons, or a readout without a neuron (its
  compartments integrate), fed by the spikes of one earlier layer through flatten / reshape /
  average or sum pooling and at most one conv1d/2d/3d or linear op; its bias and a per-channel
  affine or scale are folded into the compartments' bias and weights [A: no cost of their own].

Synapses are the distinct (source neuron, destination neuron) pairs the chain connects: a pool
followed by a convolution is one composite connection (its weights summed per pair), as a
compiler folds it. A neuron with reset by subtraction takes ``soft_reset_compartments``
compartments (Loihi 1: 2 [V] NxSDK ``nx_backend.py``), others one.

Exact per-core figures of a split (what the limits are checked against):

* compartments: neurons x compartments per neuron;
* input axons: distinct source neurons with a synapse into the core;
* synaptic words: for every input axon, its n synapses into the core fill ceil(n / max_syn_per_entry)
  entries, each starting a new word and packing its synapses at weight_bits + index_bits
  [A: entries are word-aligned, no header word];
* output axons: for every neuron, the distinct cores (of every layer reading it) it has a synapse
  into: one axon-out entry and one message per spike each.

Placement [A]: cores are numbered layer after layer, block after block (row-major over the
split); core g sits on chip g // cores_per_chip, tile (g mod cores_per_chip) // cores_per_tile,
tiles row-major over a mesh_x x mesh_y mesh; chips side by side along x, so a message crosses
|dx| east-west and |dy| north-south tile hops and |chip_a - chip_b| chip boundaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MappingError
from .loihi_map import CoreLimits, LayerShape, candidates, partition
from .synapses import window

#: the most synapses a population may have for the model to hold its connectivity (about 1 GB)
MAX_PAIRS = 1 << 27
STRUCTURAL = ("flatten", "reshape", "avgpool", "sumpool")
FOLDED_PASSES = ("bias", "affine", "scale", "flatten", "reshape")  # folded, or a relabelling
WEIGHTED_OPS = ("conv1d", "conv2d", "conv3d", "linear")
#: candidate splits checked exactly before a layer is refused (they come fewest cores first)
MAX_TRIES = 64


@dataclass
class Population:
    """One layer on the chip: its neurons, the synapses feeding them, its split onto cores."""

    name: str
    out_shape: tuple[int, ...]
    source: str | None  # the population whose spikes feed it (None: the input layer)
    spiking: bool  # it fires (a readout does not)
    compartments_per_neuron: int
    always_updated: bool  # a bias, a leak or the frame changes every neuron's state every step
    kind: str  # input, conv, linear, pool (a chain without a weighted op)
    src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # synapses: source neuron
    dst: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # and destination neuron
    shape: LayerShape | None = None  # for ranking splits
    parts: tuple[int, ...] = ()  # the chosen split per output axis
    sizes: tuple[int, ...] = ()  # its block size per axis (flat: one size over the neurons)
    flat: bool = False  # split over the flattened neurons (input and linear layers)
    block: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # core (within the layer) per neuron
    cores: int = 0
    first_core: int = 0  # global index of its first core
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # exact per-core figures

    @property
    def neurons(self) -> int:
        return math.prod(self.out_shape)


def _ints(v: Any, n: int) -> tuple[int, ...]:
    return tuple([int(v)] * n) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)


def window_pairs(in_shape: tuple[int, ...], out_shape: tuple[int, ...], kernel, stride, padding, dilation,
                 groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(source, destination) flat indices of every in-bounds tap of a conv or pool window
    (channels first, row-major), channel groups respected (a pool: groups = channels)."""
    c_in, c_out = in_shape[0], out_shape[0]
    sp_in, sp_out = in_shape[1:], out_shape[1:]
    # spatial pairs: one axis at a time, then their outer product
    pin, pout = np.zeros(1, np.int64), np.zeros(1, np.int64)
    for n, o, k, s, p, d in zip(sp_in, sp_out, kernel, stride, padding, dilation, strict=True):
        oo = np.repeat(np.arange(o, dtype=np.int64), k)
        ii = oo * s - p + np.tile(np.arange(k, dtype=np.int64), o) * d
        ok = (ii >= 0) & (ii < n)
        oo, ii = oo[ok], ii[ok]
        pin = (pin[:, None] * n + ii[None, :]).reshape(-1)
        pout = (pout[:, None] * o + oo[None, :]).reshape(-1)
    plane_in, plane_out = math.prod(sp_in), math.prod(sp_out)
    per_out, per_in = c_out // groups, c_in // groups
    co = np.arange(c_out, dtype=np.int64)
    ci = (co // per_out * per_in)[:, None] + np.arange(per_in, dtype=np.int64)[None, :]  # (c_out, per_in)
    src = (ci[:, :, None] * plane_in + pin[None, None, :]).reshape(-1)
    dst = np.broadcast_to(co[:, None, None] * plane_out + pout[None, None, :], (c_out, per_in, pin.size)).reshape(-1)
    return src, dst


def _node_pairs(node: Any, in_shape: tuple[int, ...], layer: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The pairs of one chain op (None: an identity relabelling)."""
    out_shape = tuple(node.out_shape)
    if node.op in ("flatten", "reshape"):
        return None
    if node.op == "linear":
        n_in, n_out = math.prod(in_shape), out_shape[0]
        _check_size(n_in * n_out, layer)
        return (np.tile(np.arange(n_in, dtype=np.int64), n_out),
                np.repeat(np.arange(n_out, dtype=np.int64), n_in))
    kernel, stride, padding, dilation = window(node)
    groups = in_shape[0] if node.op.endswith("pool") else int(node.params.get("groups", 1))
    taps = math.prod(out_shape) * (in_shape[0] // groups) * math.prod(kernel)
    _check_size(taps, layer)
    return window_pairs(in_shape, out_shape, kernel, stride, padding, dilation, groups)


def _check_size(n: int, layer: str) -> None:
    if n > MAX_PAIRS:
        raise MappingError(f"layer {layer} has too many synapses for the Loihi model to hold", key=f"layers.{layer}",
                           expected=f"at most {MAX_PAIRS} synapses per layer", found=str(n),
                           suggestion="a smaller network (a Loihi chip holds about 2 M 8-bit synapses per 16 cores)")


def compose(a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray] | None,
            n_mid: int, layer: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Pairs of a then b (a: source -> middle, b: middle -> destination); None is the identity."""
    if a is None:
        return b
    if b is None:
        return a
    order = np.argsort(b[0], kind="stable")
    b_src, b_dst = b[0][order], b[1][order]
    ptr = np.zeros(n_mid + 1, np.int64)
    np.cumsum(np.bincount(b_src, minlength=n_mid), out=ptr[1:])
    counts = ptr[a[1] + 1] - ptr[a[1]]
    total = int(counts.sum())
    _check_size(total, layer)
    src = np.repeat(a[0], counts)
    starts = np.repeat(ptr[a[1]] - np.cumsum(counts) + counts, counts)
    dst = b_dst[starts + np.arange(total, dtype=np.int64)]
    return src, dst


def unique_pairs(src: np.ndarray, dst: np.ndarray, n_dst: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs, sorted by source then destination."""
    key = np.unique(src * n_dst + dst)
    return key // n_dst, key % n_dst


def _refuse(layer: Any, wl: Any, found: str, suggestion: str) -> MappingError:
    return MappingError(f"layer {layer.name} cannot run on the Loihi-class target", file=wl.source,
                        key=f"layers.{layer.name}", expected="an input layer of neurons on the frame (rate coding), "
                        "or neurons (or a readout) fed by one earlier layer's spikes through flatten/reshape/"
                        "avg or sum pools and at most one conv or linear", found=found, suggestion=suggestion)


def _soft_reset(params: dict[str, Any]) -> bool:
    """Whether a neuron resets by subtraction (the converters' choice; SpikingJelly's v_reset None)."""
    for key in ("reset", "reset_mechanism"):
        if key in params:
            return params[key] == "subtract"
    if "v_reset" in params:
        return params["v_reset"] is None
    return True  # [A] snnTorch's and our neurons' default


def _leaky(params: dict[str, Any]) -> bool:
    """Whether the membrane decays (then every neuron's state changes every step) [A: a leaky
    membrane is updated every step, input or not]."""
    beta = params.get("beta")
    if isinstance(beta, (int, float)) and not isinstance(beta, bool):
        return float(beta) != 1.0
    if any(k in params for k in ("tau", "decay", "leak")):
        return True
    model = str(params.get("model", "")).lower()
    return "lif" in model or "leaky" in model


def populations(wl: Any, cfg: Any) -> list[Population]:
    """The trace's layers as populations, checked, with their synapses (not yet on cores)."""
    out: list[Population] = []
    alias: dict[str, str] = {}  # v1 flatten layers: the population they rename
    shapes: dict[str, tuple[int, ...]] = {}
    for la in wl.layers:
        if la.parts is None:
            pop = _v1_population(la, wl, cfg, alias, shapes)
            if pop is None:
                continue
        else:
            pop = _v2_population(la, wl, cfg, alias, shapes)
        shapes[pop.name] = pop.out_shape
        out.append(pop)
    return out


def _population(name: str, out_shape: tuple[int, ...], source: str | None, spiking: bool, params: dict, kind: str,
                cfg: Any, always: bool) -> Population:
    cpn = cfg.soft_reset_compartments if spiking and _soft_reset(params) else 1
    return Population(name=name, out_shape=tuple(int(x) for x in out_shape), source=source, spiking=spiking,
                      compartments_per_neuron=cpn, always_updated=always or (spiking and _leaky(params)), kind=kind)


def _v2_population(la: Any, wl: Any, cfg: Any, alias: dict, shapes: dict) -> Population:
    p = la.parts
    neuron = p.neuron.params if p.neuron is not None else {}
    if p.or_of_spikes:
        raise _refuse(la, wl, f"a {p.output.op} of spikes", "Loihi has no max pool: convert with maxpool='avg' "
                      "(average pooling), or train the ANN with average pooling")
    if p.neuron is None and p.output.kind != "current":
        raise _refuse(la, wl, f"a {p.output.kind} output without a neuron", "put a neuron or a readout there")
    if len(p.synapses) != 1:
        raise _refuse(la, wl, f"{len(p.synapses)} synapses (an add of several sources)",
                      "a network without residual adds")
    sy = p.synapses[0]
    bad_pass = [n.op for n in p.passes if n.op not in FOLDED_PASSES]
    if bad_pass:
        raise _refuse(la, wl, f"a {bad_pass[0]} of currents", "pool spikes instead of currents (maxpool='avg')")
    if sy.delayed:
        raise _refuse(la, wl, "a recurrent (delayed) synapse", "a feed-forward network")
    has_bias = bool(p.bias_adds) or any(n.op in ("bias", "affine") for n in p.passes)
    if sy.value == "analog":
        if sy.chain:
            raise _refuse(la, wl, f"a {sy.chain[-1].op} on the analog frame (direct input)",
                          "Loihi's synapses take spikes: convert with input_coding='rate' (the input as neurons "
                          "driven by the pixel values)")
        return _population(la.name, la.out_shape, None, p.spiking_neuron, neuron, "input", cfg, True)
    if sy.value != "spikes":
        raise _refuse(la, wl, f"synapses reading {sy.value}", "a network of spiking layers")
    ops = [n.op for n in sy.chain]
    w = sy.weighted
    front = sy.chain[:-1] if w is not None else sy.chain
    if any(n.op not in STRUCTURAL for n in front) or (w is not None and w.op not in WEIGHTED_OPS):
        raise _refuse(la, wl, " -> ".join(ops) or "no op", "flatten/reshape/avg or sum pools, then a conv or linear")
    src = alias.get(sy.source, sy.source)
    in_shape = shapes[src]
    kind = "pool" if w is None else ("linear" if w.op == "linear" else "conv")
    pop = _population(la.name, la.out_shape, src, p.spiking_neuron, neuron, kind, cfg, has_bias)
    pairs, shape, n_mid = None, tuple(in_shape), math.prod(in_shape)
    for node in sy.chain:
        pairs = compose(pairs, _node_pairs(node, shape, la.name), n_mid, la.name)
        shape, n_mid = tuple(node.out_shape), math.prod(node.out_shape)
    if pairs is None:  # flatten/reshape only: one synapse each
        n = math.prod(in_shape)
        pairs = (np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64))
    pop.src, pop.dst = unique_pairs(pairs[0], pairs[1], pop.neurons)
    pop.shape = _ranking_shape(pop, tuple(in_shape), sy.chain, cfg)
    return pop


def _v1_population(la: Any, wl: Any, cfg: Any, alias: dict, shapes: dict) -> Population | None:
    if la.op == "flatten" and la.neuron is None:
        alias[la.name] = alias.get(la.inputs[0], la.inputs[0])
        return None
    neuron = {"reset": la.neuron.reset} if la.neuron is not None and hasattr(la.neuron, "reset") else {}
    if la.op not in ("conv2d", "linear", "avgpool") or len(la.inputs) != 1:
        raise _refuse(la, wl, f"a v1 {la.op} layer with inputs {la.inputs}", "conv2d, linear or avgpool layers")
    src = alias.get(la.inputs[0], la.inputs[0])
    if src == "input":
        raise _refuse(la, wl, f"a {la.op} on the analog frame (direct input)",
                      "Loihi's synapses take spikes: convert with input_coding='rate'")
    in_shape = shapes[src]
    kind = {"conv2d": "conv", "linear": "linear", "avgpool": "pool"}[la.op]
    pop = _population(la.name, la.out_shape, src, la.neuron is not None, neuron, kind, cfg,
                      bool(getattr(la, "bias", False)))
    if la.op == "linear":
        pairs = _node_pairs(_Op("linear", la.out_shape, {}), in_shape, la.name)
    else:
        params = {"kernel": _ints(la.kernel, 2), "stride": _ints(la.stride, 2) if la.stride else None,
                  "padding": _ints(la.padding, 2) if la.padding else 0, "groups": la.groups}
        params = {k: v for k, v in params.items() if v is not None}
        pairs = _node_pairs(_Op(la.op, la.out_shape, params), in_shape, la.name)
    pop.src, pop.dst = unique_pairs(pairs[0], pairs[1], pop.neurons)
    pop.shape = LayerShape(la.name, pop.out_shape, tuple(in_shape), kernel=tuple(la.kernel) if la.op != "linear" else (),
                           stride=tuple(la.stride) if la.op != "linear" else (),
                           padding=tuple(la.padding) if la.op != "linear" else (),
                           groups=int(la.groups or 1) if la.op == "conv2d" else (in_shape[0] if la.op == "avgpool" else 1),
                           weight_bits=cfg.weight_bits, compartments_per_neuron=pop.compartments_per_neuron)
    return pop


@dataclass
class _Op:
    op: str
    out_shape: tuple[int, ...]
    params: dict


def _ranking_shape(pop: Population, in_shape: tuple[int, ...], chain: tuple, cfg: Any) -> LayerShape:
    """The layer as :func:`.loihi_map.candidates` ranks its splits: a linear over the flattened
    input, or one convolution whose window is the chain's pools and conv composed (pool k, s then
    conv K, S, P: kernel (K - 1) s + k, stride S s, padding P s; exact for pools whose kernel is
    their stride, an upper bound for overlapping ones). The exact figures decide legality."""
    spatial = len(pop.out_shape) - 1
    if pop.kind == "linear" or spatial == 0 or len(in_shape) != len(pop.out_shape):
        return LayerShape(pop.name, (pop.neurons,), (math.prod(in_shape),), weight_bits=cfg.weight_bits,
                          compartments_per_neuron=pop.compartments_per_neuron)
    k, s, p = [1] * spatial, [1] * spatial, [0] * spatial
    groups = 1
    for node in chain:
        if node.op in ("flatten", "reshape"):
            continue
        kn, sn, pn, _dn = window(node)
        for a in range(spatial):
            p[a] += pn[a] * s[a]
            k[a] += (kn[a] - 1) * s[a]
            s[a] *= sn[a]
        if node.op.endswith("pool") and len(chain) == 1:
            groups = in_shape[0]
        elif not node.op.endswith("pool"):
            groups = int(node.params.get("groups", 1))
    return LayerShape(pop.name, pop.out_shape, in_shape, kernel=tuple(k), stride=tuple(s), padding=tuple(p),
                      groups=groups, weight_bits=cfg.weight_bits, compartments_per_neuron=pop.compartments_per_neuron)


def block_of(out_shape: tuple[int, ...], parts: tuple[int, ...], block: tuple[int, ...]) -> np.ndarray:
    """The block (core within the layer, row-major over the split) of every neuron."""
    idx = np.zeros(1, np.int64)
    for n, m, b in zip(out_shape, parts, block, strict=True):
        idx = (idx[:, None] * m + (np.arange(n, dtype=np.int64) // b)[None, :]).reshape(-1)
    return idx


def limits_of(cfg: Any) -> CoreLimits:
    return CoreLimits(compartments=cfg.max_compartments, input_axons=cfg.max_input_axons,
                      output_axons=cfg.max_output_axons, synaptic_words=cfg.syn_mem_words, word_bits=cfg.word_bits,
                      cores_per_chip=cfg.cores_per_chip)


def in_stats(pop: Population, block: np.ndarray, cores: int, cfg: Any) -> dict[str, np.ndarray]:
    """Exact compartments, input axons and synaptic words of each core of a split."""
    comp = np.bincount(block, minlength=cores).astype(np.int64) * pop.compartments_per_neuron
    if pop.src.size == 0:
        zero = np.zeros(cores, np.int64)
        return {"compartments": comp, "input_axons": zero, "synaptic_words": zero.copy(), "synapses": zero.copy()}
    n_src = int(pop.src.max()) + 1
    key, n = np.unique(block[pop.dst] * n_src + pop.src, return_counts=True)  # (core, axon) -> synapses
    core = key // n_src
    per = cfg.max_syn_per_entry
    bits = cfg.weight_bits + cfg.index_bits
    full, rest = n // per, n % per
    words = full * (-(-per * bits // cfg.word_bits)) + (-(-rest * bits // cfg.word_bits))
    return {"compartments": comp, "input_axons": np.bincount(core, minlength=cores).astype(np.int64),
            "synaptic_words": np.bincount(core, weights=words, minlength=cores).astype(np.int64),
            "synapses": np.bincount(core, weights=n, minlength=cores).astype(np.int64)}


def out_axons(pop: Population, block: np.ndarray, cores: int, readers: list[Population]) -> np.ndarray:
    """Exact output axon entries of each core of a split: per neuron, the distinct cores of every
    reader it has a synapse into."""
    per_neuron = np.zeros(pop.neurons, np.int64)
    for r in readers:
        key = np.unique(r.src * max(r.cores, 1) + r.block[r.dst])
        per_neuron += np.bincount(key // max(r.cores, 1), minlength=pop.neurons)
    return np.bincount(block, weights=per_neuron, minlength=cores).astype(np.int64)


def _fits(stats: dict[str, np.ndarray], cfg: Any) -> str | None:
    for key, cap in (("compartments", cfg.max_compartments), ("input_axons", cfg.max_input_axons),
                     ("synaptic_words", cfg.syn_mem_words), ("output_axons", cfg.max_output_axons)):
        if int(stats[key].max(initial=0)) > cap:
            return key
    return None


def map_network(pops: list[Population], cfg: Any, source: str) -> int:
    """Split every population onto cores (the last layer first: a layer's output axons depend on
    its readers' splits), number the cores, and return how many the network uses."""
    limits = limits_of(cfg)
    readers: dict[str, list[Population]] = {p.name: [] for p in pops}
    for p in pops:
        if p.source is not None:
            readers[p.source].append(p)
    found = {}
    for pop in pops:  # a fan-in no core holds is named in the network's order
        if pop.kind != "input":
            found[pop.name] = candidates(pop.shape, limits, cfg.index_bits)
            if not found[pop.name]:
                partition(pop.shape, limits, cfg.index_bits)  # raises, naming the limit
    for pop in reversed(pops):
        _split(pop, readers[pop.name], cfg, found.get(pop.name, []))
    first = 0
    for pop in pops:
        pop.first_core = first
        first += pop.cores
    return first


def _split(pop: Population, readers: list[Population], cfg: Any, found: list) -> None:
    if pop.kind == "input":  # no synapses in: contiguous runs of neurons, as many as a core holds
        per = cfg.max_compartments // pop.compartments_per_neuron
        if per < 1:
            raise MappingError(f"layer {pop.name}: one neuron needs more compartments than a core has",
                               key="loihi.max_compartments", expected=f">= {pop.compartments_per_neuron}",
                               found=str(cfg.max_compartments))
        tries = [((-(-pop.neurons // size),), (size,)) for size in range(per, 0, -max(1, per // MAX_TRIES))]
        flat = True
    else:
        tries = [(c.parts, c.block) for c in found[:MAX_TRIES]]
        flat = len(pop.shape.out_shape) != len(pop.out_shape)
    failed = None
    for parts, size in tries:
        block = (np.arange(pop.neurons, dtype=np.int64) // size[0]) if flat else block_of(pop.out_shape, parts, size)
        cores = int(block.max()) + 1
        stats = in_stats(pop, block, cores, cfg)
        stats["output_axons"] = out_axons(pop, block, cores, readers)
        bad = _fits(stats, cfg)
        if bad is None:
            pop.parts, pop.block, pop.cores, pop.stats = tuple(parts), block, cores, stats
            pop.sizes, pop.flat = tuple(size), flat
            return
        if failed is None:
            failed = (bad, int(stats[bad].max()))
    key, value = failed
    cap = {"compartments": cfg.max_compartments, "input_axons": cfg.max_input_axons,
           "synaptic_words": cfg.syn_mem_words, "output_axons": cfg.max_output_axons}[key]
    raise MappingError(f"layer {pop.name} has no legal partition onto the cores: every split leaves a core with "
                       f"too many {key.replace('_', ' ')}", key=f"layers.{pop.name}",
                       expected=f"<= {cap} {key.replace('_', ' ')} per core (loihi.max_{key})",
                       found=f"{value} in the best split tried",
                       suggestion="fewer channels or a smaller fan-in/fan-out, or raise the limit with --set")


@dataclass(frozen=True)
class Place:
    """Where a core sits: its chip, and its tile's x (global, chips side by side) and y."""

    chip: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tile: np.ndarray  # global tile index (chip, tile)


def place(n_cores: int, cfg: Any) -> Place:
    g = np.arange(n_cores, dtype=np.int64)
    chip = g // cfg.cores_per_chip
    tile = (g % cfg.cores_per_chip) // cfg.cores_per_tile
    return Place(chip=chip, x=chip * cfg.mesh_x + tile % cfg.mesh_x, y=tile // cfg.mesh_x,
                 tile=chip * (cfg.mesh_x * cfg.mesh_y) + tile)
