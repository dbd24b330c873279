"""The SNN core: runs the layers after the sensor, event by event, on a vector of PEs.

Micro-architecture (first version; the vectorwise accelerator grows from it):

* A vector of ``vector_width`` PEs updates that many output channels of one output position in
  one cycle. Every recorded input spike fans out through its kernel: for each output position
  its window reaches (``taps``), ceil(C_group / V) vector operations, each reading C weights and
  reading and writing C membranes (C <= V lanes in use). Lanes without work are clock-gated.
* Pooling and residual adds update one membrane per spike and tap (one vector op each); a
  maxpool without a neuron is an OR of spikes (no membranes). Flatten only relabels addresses:
  no reads, no work.
* After a layer's spikes of a step are in, a fire pass visits every output position:
  ceil(C / V) vector ops, each comparing V membranes with their thresholds, resetting, and
  writing the output spike bits. ``pipeline_depth`` cycles fill the datapath per layer pass.
* Loop order: layers outer, time steps inner; each step of a layer is one pass.
* The first layer after the sensor is fed by the link: each received packet (one spike row of one
  step from a P2M sensor, or one raw line of a conventional sensor) is one transaction, gated by
  its arrival, so the core overlaps with the readout. A spike row's scatter starts at once; a
  conventional frame's first (encoding) layer computes an output row with multi-bit MACs as soon
  as the last input line it needs has arrived (weights read per MAC, the input window once per
  output position; the currents are reused for all T steps, as direct encoding allows).
* Dataflow: with ``scatter`` each vector op reads and writes C membranes in the membrane SRAM;
  with ``gather`` (output-stationary) the partial sums of the positions being computed stay in PE
  registers and reach the membrane SRAM only in the fire pass. Cycles are the same (every
  (spike, tap) pair is one vector op either way); packet-fed work is counted on arrival in both [A].
* The bitmap scan that finds the next spike is done by a priority encoder within the same cycle
  (an assumption); every packet costs at least one cycle to accept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, MappingError, SnnsimError
from ..units import period_ps as period_ps_exact
from ..workload.graph import Layer, graph_key
from ..workload.trace import Workload
from .chain import in_pixels, input_bits_limit
from .frames import frame_lines
from .memory import dram_cycles, memory_plan, tilings
from .sensor import SensorPlan
from .spikes import form_work, window_taps
from .synapses import dense_macs as syn_dense_macs
from .synapses import neuron_work, pass_work, synapse_fanout

COUNTERS = (
    "cycles", "compute_cycles", "dram_stall_cycles", "vector_ops", "synaptic_ops", "macs", "shift_adds",
    "fire_ops", "compares", "input_spikes", "output_spikes", "weight_read_bits", "membrane_read_bits",
    "membrane_write_bits", "spike_read_bits", "spike_write_bits", "input_buffer_read_bits", "weight_load_bits",
    "line_buffer_bits", "dram_read_bits", "dram_write_bits", "fusion_saved_bits", "dense_macs",
)


@dataclass
class CorePlan:
    """Core transactions per sample and action counters per (sample, layer, step)."""

    period_ps: int
    layer_names: list[str]  # layers the core runs, in order
    counters: dict[str, np.ndarray]  # name -> int64 (samples, n_layers, T)
    # transactions of one sample, concatenated over samples in order
    tx_cycles: np.ndarray  # (samples, n_tx)
    tx_consume: np.ndarray  # (n_tx,)
    tx_layer: np.ndarray  # (n_tx,) index into layer_names
    details: dict[str, float] = field(default_factory=dict)


def _spatial(shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """(channels, spatial dims) of a channels-first activation; a flat vector is F channels."""
    if len(shape) == 1:
        return shape[0], ()
    return shape[0], tuple(shape[1:])


def edge_fanout(layer: Layer) -> tuple[np.ndarray, int]:
    """(taps per input spatial position, channels each tap updates) of a spiking input edge."""
    c_in, sp_in = _spatial(layer.in_shape)
    _, sp_out = _spatial(layer.out_shape)
    if layer.op in ("conv2d", "conv3d"):
        taps = window_taps(sp_in, layer.kernel, layer.stride, layer.padding, sp_out)
        return taps, layer.out_shape[0] // layer.groups
    if layer.op == "linear":
        return np.ones(layer.in_shape[0], np.int64), layer.out_shape[0]
    if layer.op in ("avgpool", "maxpool"):
        return window_taps(sp_in, layer.kernel, layer.stride, layer.padding, sp_out), 1
    plane = plane_geometry(layer.in_shape)[0]
    if layer.op == "add":
        return np.ones(plane, np.int64), 1
    if layer.op == "flatten":
        return np.zeros(plane, np.int64), 0
    raise MappingError("the core cannot run this op", key=f"layers.{layer.name}.op",
                       expected="conv2d, conv3d, linear, avgpool, maxpool, add, flatten", found=layer.op)


def plane_geometry(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(plane, width, rows) of an activation: positions per channel, row length, spatial rows."""
    c, sp = _spatial(shape)
    if not sp:
        return shape[0], shape[0], 1  # a flat vector is one row of F positions
    plane = math.prod(sp)
    width = sp[-1]
    return plane, width, plane // width


def core_problems(hw, wl: Workload, first: int) -> list[SnnsimError]:
    """Every reason the core cannot run the layers from ``first`` on (empty when they fit): a core
    layer reading the analog input behind a P2M sensor, an encoding layer that is not a conv2d or
    asks for more input bits than the link carries, weights wider than the weight SRAM's, and
    buffers too small to tile a layer into."""
    cfg = hw["core"]
    out: list[SnnsimError] = []
    p2m = in_pixels(hw)
    raw_bits, raw_key = input_bits_limit(hw)
    for layer in wl.layers[first:]:
        key = f"layers.{layer.name}"
        if "input" in layer.inputs:
            if p2m:
                out.append(MappingError("with a P2M sensor only the in-pixel layer may read the analog input",
                                        file=wl.source, key=f"{key}.inputs",
                                        expected="spiking inputs (the core never sees the raw frame)",
                                        found=f"{layer.inputs}",
                                        suggestion="use a conventional sensor: --set sensor.kind=conventional"))
            elif (layer.op not in ("conv2d", "conv3d") if layer.parts is None else not encoding_supported(layer)):
                out.append(MappingError("the core runs a direct-encoded first layer as a conv2d or conv3d, a linear "
                                        "of the flattened frame, or a neuron on the frame (a rate code)",
                                        file=wl.source, key=f"{key}.op",
                                        expected="conv2d, conv3d, flatten -> linear, or a neuron",
                                        found=layer.op if layer.parts is None else _describe(layer)))
            elif cfg["input_bits"] > raw_bits:
                out.append(ConfigError("the encoding layer reads more bits per input than the chip's input carries",
                                       file=hw.source, key="core.input_bits",
                                       expected=f"<= {raw_key} ({raw_bits})", found=str(cfg["input_bits"]),
                                       suggestion=f"--set core.input_bits={raw_bits}"))
        elif (layer.op in ("conv2d", "conv3d", "linear") or layer.parts is not None and layer.parts.weighted) \
                and layer.weight_bits > cfg["weight_bits"]:
            out.append(MappingError("the core stores weights of fewer bits than this layer needs", file=wl.source,
                                    key=f"{key}.weight_bits", expected=f"<= {cfg['weight_bits']} "
                                    f"({hw.source}: core.weight_bits)", found=str(layer.weight_bits),
                                    suggestion=f"--set core.weight_bits={layer.weight_bits}"))
    if cfg["encoding_per_step"] and not any("input" in la.inputs for la in wl.layers[first:]):
        out.append(ConfigError("core.encoding_per_step has no effect: no layer on the core reads the frame",
                               file=hw.source, key="core.encoding_per_step", expected="false",
                               found="true", suggestion="--set core.encoding_per_step=false (a PIM macro's "
                               "choice is pim.recompute_per_step)"))
    return out + tilings(hw, wl.layers[first:])[4]


def core_plan(hw, wl: Workload, sensor: SensorPlan, link_payload_bits: np.ndarray,
              graph: tuple | None = None) -> CorePlan:
    """Count the core's work for every layer, step and sample, and cut it into transactions.

    ``link_payload_bits`` is (samples, packets) from the link plan: what the input buffer holds.
    ``graph`` is the workload's :func:`~snnsim.workload.graph.graph_key`, if known.
    """
    cfg = hw["core"]
    v = cfg["vector_width"]
    mem_bits = cfg["membrane_bits"]
    period_ps = round(period_ps_exact(cfg["clock_mhz"]))
    first = 1 if sensor.layer else 0  # a layer computed before the core (in the pixels) is not the core's
    layers = wl.layers[first:]
    names = [la.name for la in layers]
    s_n, t_n = wl.samples, wl.time_steps
    n_l = len(layers)
    block = np.zeros((len(COUNTERS), s_n, n_l, t_n), np.int64)
    cnt = {k: block[i] for i, k in enumerate(COUNTERS)}  # name -> (samples, layers, steps) view
    n_packets = sensor.rows * sensor.packets_per_row
    pkt_ops = np.zeros((s_n, n_packets), np.int64)  # cycles of work done inside packet transactions
    fed_ops = np.zeros((s_n, n_l, t_n), np.int64)  # the same work, per layer and step
    serial = cfg["input_bits"] if cfg["encoding_mode"] == "bit_serial" else 1
    scatter = cfg["dataflow"] == "scatter"
    sensor_layer = wl.layer(sensor.layer) if sensor.layer else None
    mp = memory_plan(hw, layers, sensor_layer, t_n)

    # what each layer does per step, independent of its spikes: scalars per layer
    per_layer = {k: [0] * n_l for k in ("dense_macs", "fire_ops", "compares", "fire_membrane_bits", "readout_bits")}
    # every spiking input edge: (layer, source, plane, taps, vector ops per tap, channels per tap,
    # weight bits per update, membrane bits read and written per update)
    edges: list[tuple[int, str, int, np.ndarray, int, int, int, int]] = []
    encoding: list[tuple[int, Layer]] = []
    statics = _layer_statics(wl, first, graph)
    dense_pass = np.zeros((3, n_l, t_n), np.int64)  # v2 dense current passes: vector ops, bits read, written
    for li, (layer, st) in enumerate(zip(layers, statics, strict=True)):
        per_layer["dense_macs"][li] = st.dense_macs
        if st.encoding:
            encoding.append((li, layer))
        for ed in st.edges:  # a flatten (no edges) relabels its input's neurons: no reads, no work
            groups = vector_ops_per_tap(ed.c_group, v, mp.tile_channels[li])
            # scatter: every update is a read-modify-write of a membrane (an OR of spikes has none);
            # gather: partial sums stay in the PEs until the fire pass
            rmw = mem_bits if scatter and ed.membranes else 0
            edges.append((li, ed.source, ed.plane, ed.taps, groups, ed.c_group, ed.w_bits, rmw, ed.delayed,
                          ed.events))
        if layer.parts is not None:
            fire_ops, compares, fire_bits = neuron_work(layer.parts, v, mem_bits)
            per_layer["fire_ops"][li], per_layer["compares"][li] = fire_ops, compares
            per_layer["fire_membrane_bits"][li] = fire_bits
            once = layer.parts.constant_currents
            work = pass_work(layer.parts, v, mem_bits, into_membrane=not once)
            # a direct-encoded layer's currents are the same at every step: its passes run once
            dense_pass[:, li, :1 if once else t_n] += np.asarray(work, np.int64)[:, None]
        elif st.fire_positions:
            # threshold, fire and reset over every output neuron, once per step
            per_layer["fire_ops"][li] = st.fire_positions * math.ceil(st.channels / v)
            per_layer["compares"][li] = st.out_size
            per_layer["fire_membrane_bits"][li] = st.out_size * mem_bits
        # a classifier's membranes are read out after the last step
        per_layer["readout_bits"][li] = st.readout_neurons * mem_bits

    # the spikes, event by event: per (edge, sample, step) spikes and summed fan-out
    n_e = len(edges)
    recurrent_ops = np.zeros((s_n, n_l, t_n), np.int64)
    spk = np.zeros((n_e, s_n, t_n), np.int64)
    work = np.zeros((n_e, s_n, t_n), np.int64)
    buffer_read: set[tuple[int, str]] = set()
    for e, (li, src, plane, taps, groups, _cg, _wb, _rmw, delayed, _ev) in enumerate(edges):
        form = wl.spike_form(src)
        if form.plane != plane:  # pragma: no cover - a bug, not bad input
            raise AssertionError(f"spike map {src} has {form.plane} positions per channel, not {plane}")
        if src == sensor.layer and li == 0 and not delayed:
            # fed by the link, row by row; packets go row-major with the steps inside
            _plane, width, rows = plane_geometry(sensor_layer.out_shape)
            row_spk, row_work = form_work(form, taps, width, rows)
            spk[e], work[e] = row_spk.sum(axis=2), row_work.sum(axis=2)
            pkt_ops += (row_work * groups).transpose(0, 2, 1).reshape(s_n, n_packets)
            fed_ops[:, li, :] += work[e] * groups
            # the input buffer's packets are read once per v1 input, once per v2 layer (its
            # synapses from that map share each spike)
            if layers[li].parts is None or (li, src) not in buffer_read:
                cnt["input_buffer_read_bits"][:, li, :] += sensor.per_step(link_payload_bits, t_n)
                buffer_read.add((li, src))
        else:
            spk[e], work[e] = form_work(form, taps)
        if delayed:  # a recurrent edge delivers the previous step's spikes
            spk[e] = np.concatenate([np.zeros_like(spk[e][:, :1]), spk[e][:, :-1]], axis=1)
            work[e] = np.concatenate([np.zeros_like(work[e][:, :1]), work[e][:, :-1]], axis=1)
    if n_e:
        # per edge: vector ops, updates, input spikes, weight bits, membrane bits read (= written)
        coef = np.array([(ed[4], ed[5], 0, ed[5] * ed[6], ed[5] * ed[7]) for ed in edges], np.int64)
        per_edge = work[:, None] * coef[:, :, None, None]  # (edges, 5, samples, steps)
        per_edge[:, 2] = spk
        sums = np.zeros((n_l, 5, s_n, t_n), np.int64)
        np.add.at(sums, np.array([ed[0] for ed in edges], np.int64), per_edge)
        sums = sums.transpose(1, 2, 0, 3)  # (5, samples, layers, steps)
        for i, k in enumerate(("vector_ops", "synaptic_ops", "input_spikes", "weight_read_bits",
                               "membrane_read_bits")):
            cnt[k] += sums[i]
        recurrent_ops = sums[0].copy()  # spike-driven work (of an encoding layer: its recurrence)
        cnt["membrane_write_bits"] += sums[4]
        # events carry counts: every update multiplies its weight by the count
        ev = np.array([ed[9] for ed in edges], bool)
        if ev.any():
            np.add.at(cnt["macs"].transpose(1, 0, 2), np.array([ed[0] for ed in edges], np.int64)[ev],
                      per_edge[ev, 1])
    # input lines per row of the frame: a Bayer quad's photodiode rows, one line of a stored frame
    q = max(1, sensor.rows // frame_lines(tuple(wl.input_shape))[0])
    repeated = ("vector_ops", "macs", "shift_adds", "weight_read_bits", "input_buffer_read_bits", "membrane_write_bits")
    for li, layer in encoding:
        before = {k: cnt[k][:, li, 0].copy() for k in repeated}
        if layer.parts is None:
            _encoding_layer(hw, wl, layer, li, cnt, pkt_ops, fed_ops, v, mem_bits, serial, mp.tile_channels[li], q)
        else:
            encoding_parts(hw, wl, layer, li, cnt, pkt_ops, fed_ops, v, mem_bits, serial, mp.tile_channels[li], q)
        if cfg["encoding_per_step"]:
            # the same frame at every step, its MACs done again in the layer's pass of each later
            # step (step 0's are done as the lines arrive) and their currents stored again
            for k in repeated:
                cnt[k][:, li, 1:] += (cnt[k][:, li, 0] - before[k])[:, None]
            if layer.parts is not None and layer.parts.frame_synapse.weighted is None:
                # a rate code's copies are not bit-serial MACs: kept out of the serial stretch
                recurrent_ops[:, li, 1:] += (cnt["vector_ops"][:, li, 0] - before["vector_ops"])[:, None]
    cnt["vector_ops"] += dense_pass[0][None]
    cnt["membrane_read_bits"] += dense_pass[1][None]
    cnt["membrane_write_bits"] += dense_pass[2][None]
    for k in ("dense_macs", "fire_ops", "compares"):
        cnt[k] += np.asarray(per_layer[k], np.int64)[None, :, None]
    cnt["membrane_read_bits"] += np.asarray(per_layer["fire_membrane_bits"], np.int64)[None, :, None]
    cnt["membrane_write_bits"] += np.asarray(per_layer["fire_membrane_bits"], np.int64)[None, :, None]
    if t_n:
        cnt["membrane_read_bits"][:, :, -1] += np.asarray(per_layer["readout_bits"], np.int64)[None, :]
    spiking = [li for li, layer in enumerate(layers) if layer.spiking]
    if spiking:
        cnt["output_spikes"][:, spiking, :] = wl.spike_count_table([layers[li].name for li in spiking])

    # buffers and DRAM
    for k, arr in (("spike_read_bits", mp.spike_sram_read), ("spike_write_bits", mp.spike_sram_write),
                   ("line_buffer_bits", mp.line_buffer_bits), ("dram_read_bits", mp.dram_read_bits),
                   ("dram_write_bits", mp.dram_write_bits), ("weight_load_bits", mp.weight_load_bits),
                   ("fusion_saved_bits", mp.fusion_saved_bits)):
        cnt[k] += arr[None, :, :]
    cnt["dram_read_bits"][0] += mp.first_frame_only_bits
    cnt["weight_load_bits"][0] += mp.first_frame_only_bits

    # every packet costs at least one cycle to accept
    pkt_cycles = np.maximum(pkt_ops, 1)
    # one pass per (layer, step): what was not done on arrival, the fire pass, the pipeline fill,
    # stretched by DRAM transfers the compute cannot hide
    # a flatten pass does no work, so it fills no pipeline
    fill = cfg["pipeline_depth"] * np.array([la.op != "flatten" for la in layers], np.int64)[None, :, None]
    compute = cnt["vector_ops"] - fed_ops + cnt["fire_ops"] + fill
    if serial > 1:
        # encoding-layer MACs not done on arrival take input_bits cycles per vector op too (the
        # dense current passes and recurrent synapses of a v2 layer are not bit-serial)
        compute += (serial - 1) * (cnt["vector_ops"] - fed_ops - dense_pass[0][None] - recurrent_ops) \
            * _is_encoding(layers)[None, :, None]
    dram = dram_cycles(cnt["dram_read_bits"] + cnt["dram_write_bits"], hw, period_ps)
    passes = np.maximum(compute, dram) if hw["dram"]["double_buffered"] else compute + dram
    cnt["dram_stall_cycles"] = passes - compute
    cnt["compute_cycles"] = compute.copy()
    cnt["cycles"] = passes.copy()
    if layers and n_packets:
        on_arrival = sensor.per_step(pkt_cycles, t_n)
        cnt["cycles"][:, 0, :] += on_arrival
        cnt["compute_cycles"][:, 0, :] += on_arrival
    # one transaction per pass, in the loop order
    if cfg["loop_order"] == "time_inner":
        rest = passes.reshape(s_n, n_l * t_n)
        order_layer = np.repeat(np.arange(n_l, dtype=np.int64), t_n)
    else:
        rest = passes.transpose(0, 2, 1).reshape(s_n, t_n * n_l)
        order_layer = np.tile(np.arange(n_l, dtype=np.int64), t_n)
    tx_cycles = np.concatenate([pkt_cycles, rest], axis=1)
    tx_consume = np.concatenate([np.ones(n_packets, np.int64), np.zeros(rest.shape[1], np.int64)])
    tx_layer = np.concatenate([np.zeros(n_packets, np.int64), order_layer])
    return CorePlan(period_ps=period_ps, layer_names=names, counters=cnt, tx_cycles=tx_cycles,
                    tx_consume=tx_consume, tx_layer=tx_layer,
                    details={"vector_width": v, "membrane_bits": mem_bits, "clock_mhz": cfg["clock_mhz"],
                             "period_ps": period_ps, "loop_order": cfg["loop_order"], "fusion": cfg["fusion"],
                             "fused_pairs": [list(p) for p in mp.fused_pairs], "fusion_refused": mp.fusion_refused,
                             "spike_maps_in_dram": mp.map_in_dram, "weights_resident": mp.weights_resident,
                             "encoding_mode": cfg["encoding_mode"], "input_bits": cfg["input_bits"],
                             "encoding_per_step": cfg["encoding_per_step"]})


class Edge(NamedTuple):
    """One input edge of a layer: the recorded map it reads and what each of its spikes does."""

    source: str
    plane: int  # the source's positions per channel
    taps: np.ndarray  # fan-out per source position
    c_group: int  # output channels each reached position updates
    w_bits: int  # weight bits read per update (0: no weights)
    membranes: bool  # updates membranes or accumulators (an OR of spikes has none)
    delayed: bool  # delivers the previous step's spikes (a recurrent edge)
    events: bool  # the source carries counts: each update is a multiply


class LayerStatics(NamedTuple):
    """What a layer asks of any core, from its geometry alone (the same on every hardware)."""

    dense_macs: int
    encoding: bool  # reads the analog input
    edges: tuple[Edge, ...]  # spiking input edges (none for an encoding layer or a flatten)
    fire_positions: int  # output positions of the fire pass (0: no neuron)
    channels: int
    out_size: int
    readout_neurons: int  # a classifier output read after the last step


def _layer_statics(wl: Workload, first: int, key: tuple | None) -> list[LayerStatics]:
    """LayerStatics of the layers from ``first`` on, derived once per workload and graph."""
    key = (graph_key(wl.layers, wl.input_shape) if key is None else key, first)
    hit = wl.__dict__.get("_core_statics")
    if hit is not None and hit[0] == key:
        return hit[1]
    by_name = {la.name: la for la in wl.layers}
    out = []
    for layer in wl.layers[first:]:
        if layer.parts is not None:
            out.append(_parts_statics(layer, by_name))
            continue
        enc = "input" in layer.inputs
        edges: tuple[Edge, ...] = ()
        if not enc and layer.op != "flatten":
            taps, c_group = edge_fanout(layer)
            weighted = layer.op in ("conv2d", "conv3d", "linear")
            membranes = layer.neuron is not None or layer.op != "maxpool"
            edges = tuple(Edge(src, plane_geometry(by_name[src].out_shape)[0], taps, c_group,
                               layer.weight_bits if weighted else 0, membranes, False, False) for src in layer.inputs)
            for ed in edges:
                if taps.shape[0] != ed.plane:  # pragma: no cover - a bug, not bad input
                    raise AssertionError(f"fan-out table of {layer.name} has {taps.shape[0]} entries, not {ed.plane}")
        c, sp = _spatial(layer.out_shape)
        has_neuron = layer.neuron is not None
        out.append(LayerStatics(
            dense_macs=dense_macs(layer), encoding=enc, edges=edges,
            fire_positions=(math.prod(sp) if sp else 1) if has_neuron else 0, channels=c, out_size=layer.out_size,
            readout_neurons=layer.out_size if not has_neuron and layer.op not in ("maxpool", "flatten") else 0))
    wl.__dict__["_core_statics"] = (key, out)
    return out


def _parts_statics(layer: Layer, by_name: dict[str, Layer]) -> LayerStatics:
    """LayerStatics of a format v2 layer: one edge per synapse (:mod:`.synapses`)."""
    parts = layer.parts
    edges = []
    for sy in parts.synapses:
        if sy.value == "analog":
            continue  # the encoding layer's MACs are counted from the frame (encoding_parts)
        shape = by_name[sy.source].out_shape
        taps, c_group = synapse_fanout(sy, shape, layer.name)
        w = sy.weighted
        edges.append(Edge(sy.source, plane_geometry(shape)[0], taps, c_group,
                          int(w.params.get("weight_bits", 1) or 1) if w is not None else 0,
                          not parts.or_of_spikes, sy.delayed, sy.value == "events"))
    out = parts.output
    readout = out.size if out.kind == "current" else 0
    return LayerStatics(dense_macs=sum(syn_dense_macs(w, shape) for w, shape in parts.weighted_in),
                        encoding=parts.encoding, edges=tuple(edges), fire_positions=0,
                        channels=_spatial(out.out_shape)[0], out_size=out.size, readout_neurons=readout)


def vector_ops_per_tap(channels: int, v: int, tile: int) -> int:
    """Vector operations to update ``channels`` output channels of one position, in weight tiles
    of ``tile`` channels (0 = untiled), ``v`` lanes at a time."""
    if not channels:
        return 0
    if not tile or tile >= channels:
        return math.ceil(channels / v)
    full, rest = divmod(channels, tile)
    return full * math.ceil(tile / v) + (math.ceil(rest / v) if rest else 0)


def _is_encoding(layers: list[Layer]) -> np.ndarray:
    return np.array(["input" in la.inputs for la in layers], dtype=np.int64)


def dense_macs(layer: Layer) -> int:
    """MACs of the equivalent dense (non-spiking) layer for one time step."""
    if layer.op in ("conv2d", "conv3d"):
        c_in = layer.in_shape[0]
        return layer.out_size * (c_in // layer.groups) * math.prod(layer.kernel)
    if layer.op == "linear":
        return layer.out_size * layer.in_shape[0]
    return 0


def _encoding_layer(hw, wl: Workload, layer: Layer, li: int, cnt: dict, pkt_ops: np.ndarray,
                    fed_ops: np.ndarray, v: int, mem_bits: int, serial: int, tile: int, q: int,
                    held: int | None = None) -> None:
    """A direct-encoded first layer on the core (conv2d, or conv3d over a cube's bands): multi-bit
    MACs over the in-bounds part of each window (padding is not multiplied), an output row (one
    index of the row axis, the second-to-last spatial one) computed as soon as the input line
    holding its last input row has arrived; ``q`` input lines make one row (the photodiode rows
    of a Bayer quad; 1 for stored frames)."""
    c_in, *sp_in = layer.in_shape
    c_o, *sp_out = layer.out_shape
    kernel, stride, padding = tuple(layer.kernel), tuple(layer.stride), tuple(layer.padding)
    c_o_g = c_o // layer.groups
    r = len(sp_in) - 2  # the row axis
    valid = [axis_taps_out(sp_in[a], kernel[a], stride[a], padding[a], sp_out[a]) for a in range(len(sp_in))]
    within = math.prod(int(valid[a].sum()) for a in range(len(sp_in)) if a != r)  # in-bounds taps along a row
    h, kh, sh, ph = sp_in[r], kernel[r], stride[r], padding[r]
    in_bits = hw["core"]["input_bits"]  # each raw sample enters the input buffer as input_bits MSBs
    chunks = vector_ops_per_tap(c_o_g, v, tile)
    for y in range(sp_out[r]):
        taps = int(valid[r][y]) * within  # (window element, output position) pairs in bounds
        if taps == 0:
            continue
        last_row = min(h - 1, y * sh - ph + kh - 1)
        packet = (last_row + 1) * q - 1
        ops = taps * c_in * chunks
        macs = taps * c_in * c_o_g
        pkt_ops[:, packet] += ops * serial
        fed_ops[:, li, 0] += ops
        cnt["vector_ops"][:, li, 0] += ops
        cnt["macs"][:, li, 0] += macs
        if hw["core"]["encoding_mode"] == "bit_serial":
            cnt["shift_adds"][:, li, 0] += macs * serial
        cnt["weight_read_bits"][:, li, 0] += macs * layer.weight_bits
        cnt["input_buffer_read_bits"][:, li, 0] += taps * c_in * in_bits
    _store_once(cnt, li, layer.out_size, layer.out_size if held is None else held, mem_bits)


def _store_once(cnt: dict, li: int, computed: int, held: int, mem_bits: int) -> None:
    """The currents of a direct-encoded layer are stored once (``computed`` values) and the
    ``held`` values that reach the neuron are added to the membranes at every step."""
    cnt["membrane_write_bits"][:, li, 0] += computed * mem_bits
    cnt["synaptic_ops"][:, li, :] += held
    cnt["membrane_read_bits"][:, li, :] += held * mem_bits


def encoding_supported(layer: Layer) -> bool:
    """A format v2 layer on the analog frame the core can run: one path from the frame into a
    conv2d (no dilation), a flatten -> linear, or straight into a neuron (a rate code)."""
    analog = [sy for sy in layer.parts.synapses if sy.value == "analog"]
    others = [sy for sy in layer.parts.synapses if sy.value != "analog"]
    if len(analog) != 1 or not all(sy.delayed for sy in others):  # besides the frame, only recurrence
        return False
    (sy,) = analog
    w = sy.weighted
    if w is None:
        return not sy.chain and sy.into_membrane
    if w.op in ("conv2d", "conv3d"):
        return len(sy.chain) == 1 and w.params.get("dilation", 1) in (1, [1, 1], [1, 1, 1])
    return w.op == "linear" and all(n.op in ("flatten", "reshape") for n in sy.chain[:-1])


def _describe(layer: Layer) -> str:
    chains = [" -> ".join(["input", *(n.op for n in sy.chain), sy.target]) for sy in layer.parts.synapses]
    return "; ".join(chains)[:200]


def encoding_parts(hw, wl: Workload, layer: Layer, li: int, cnt: dict, pkt_ops: np.ndarray, fed_ops: np.ndarray,
                   v: int, mem_bits: int, serial: int, tile: int, q: int) -> None:
    """A format v2 layer on the analog frame (:func:`encoding_supported`): a conv2d as v1's
    encoding layer; a linear of the whole frame, computed when its last line has arrived; a
    rate code, the frame's values copied once into the currents a neuron adds every step."""
    parts = layer.parts
    sy = parts.frame_synapse
    w = sy.weighted
    held = parts.output.size
    if w is not None and w.op in ("conv2d", "conv3d"):
        (_w, w_in), = parts.weighted_in
        conv = Layer(layer.name, w.op, ["input"], w.out_shape, in_shape=w_in, kernel=layer.kernel,
                     stride=layer.stride, padding=layer.padding, groups=layer.groups, weight_bits=layer.weight_bits)
        _encoding_layer(hw, wl, conv, li, cnt, pkt_ops, fed_ops, v, mem_bits, serial, tile, q, held=held)
        return
    n_in = math.prod(wl.input_shape)
    in_bits = hw["core"]["input_bits"]
    if w is None:  # a rate code: one copy per value
        c, sp = _spatial(parts.output.out_shape)
        ops, macs, computed = (math.prod(sp) if sp else 1) * math.ceil(c / v), 0, n_in
    else:
        ops, macs, computed = n_in * vector_ops_per_tap(w.out_shape[0], v, tile), n_in * w.out_shape[0], w.size
        cnt["macs"][:, li, 0] += macs
        cnt["weight_read_bits"][:, li, 0] += macs * layer.weight_bits
        if hw["core"]["encoding_mode"] == "bit_serial":
            cnt["shift_adds"][:, li, 0] += macs * serial
    pkt_ops[:, -1] += ops * (serial if w is not None else 1)
    fed_ops[:, li, 0] += ops
    cnt["vector_ops"][:, li, 0] += ops
    cnt["input_buffer_read_bits"][:, li, 0] += n_in * in_bits
    _store_once(cnt, li, computed, held, mem_bits)


def axis_taps_out(in_len: int, k: int, s: int, p: int, out_len: int) -> np.ndarray:
    """For each output index along one axis, how many kernel positions fall inside the input."""
    o = np.arange(out_len)[:, None]
    i = o * s - p + np.arange(k)[None, :]
    return ((i >= 0) & (i < in_len)).sum(axis=1).astype(np.int64)
