"""The Loihi-class target, one neuron, one synapse and one spike at a time (small inputs only).

It re-derives what :mod:`snnsim.hw.loihi` computes with arrays and kernels: each layer's
synapses by walking every destination neuron's window back through its chain of ops, each core's
compartments, input axons, synaptic words and output axons by counting, every core's place on
the mesh, and per sample and step every message, hop, synaptic op and updated neuron, then the
step times and energies by the rules written in :mod:`snnsim.hw.loihi`. Only the choice of the
split (which the partitioner's tests check on their own) is taken from the engine; that it
meets every limit is checked here.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from ..hw.loihi import Network, network, ps, syn_format
from ..hw.synapses import window


def _unravel(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for n in reversed(shape):
        out.append(i % n)
        i //= n
    return tuple(reversed(out))


def _ravel(idx: tuple[int, ...], shape: tuple[int, ...]) -> int:
    i = 0
    for a, n in zip(idx, shape, strict=True):
        i = i * n + a
    return i


def _inputs_of(node: Any, in_shape: tuple[int, ...], j: int) -> set[int]:
    """The input positions (flat) one output position ``j`` of a chain op reads."""
    out_shape = tuple(node.out_shape)
    if node.op in ("flatten", "reshape"):
        return {j}
    if node.op == "linear":
        return set(range(math.prod(in_shape)))
    kernel, stride, padding, dilation = window(node)
    co, *o = _unravel(j, out_shape)
    groups = in_shape[0] if node.op.endswith("pool") else int(node.params.get("groups", 1))
    per_in, per_out = in_shape[0] // groups, out_shape[0] // groups
    chans = [co] if node.op.endswith("pool") else range(co // per_out * per_in, co // per_out * per_in + per_in)
    found = set()
    for ci in chans:
        for offs in itertools.product(*(range(k) for k in kernel)):
            pos = [oo * s - p + kk * d for oo, s, p, kk, d in zip(o, stride, padding, offs, dilation, strict=True)]
            if all(0 <= x < n for x, n in zip(pos, in_shape[1:], strict=True)):
                found.add(_ravel((ci, *pos), in_shape))
    return found


def synapse_pairs(wl: Any, layer: Any, src_shape: tuple[int, ...]) -> set[tuple[int, int]]:
    """Every (source neuron, destination neuron) pair a v2 layer's synapse connects."""
    sy = layer.parts.synapses[0]
    shapes = [tuple(src_shape)] + [tuple(n.out_shape) for n in sy.chain]
    pairs = set()
    for j in range(math.prod(layer.out_shape)):
        reach = {j}
        for k in range(len(sy.chain) - 1, -1, -1):
            reach = set().union(*(_inputs_of(sy.chain[k], shapes[k], x) for x in reach)) if reach else set()
        pairs.update((i, j) for i in reach)
    return pairs


def _block(pop: Any, j: int) -> int:
    if pop.flat:
        return j // pop.sizes[0]
    idx = _unravel(j, pop.out_shape)
    b = 0
    for x, size, parts in zip(idx, pop.sizes, pop.parts, strict=True):
        b = b * parts + x // size
    return b


def reference_loihi(hw: Any, wl: Any) -> dict[str, Any]:
    """Everything the engine reports for the Loihi target, recomputed plainly: per-core
    stats, and per (sample, layer, step) counts and energies, per (sample, step) times, per
    sample static energy."""
    cfg, net = network(hw, wl)
    pops = net.pops
    by_layer = {la.name: la for la in wl.layers}
    shapes = {p.name: p.out_shape for p in pops}
    pairs = {}
    core_of: dict[str, list[int]] = {}
    first = 0
    for p in pops:
        core_of[p.name] = [first + _block(p, j) for j in range(p.neurons)]
        first += p.cores
        if p.source is not None:
            pairs[p.name] = synapse_pairs(wl, by_layer[p.name], shapes[p.source])
    n_cores = first
    assert n_cores == net.n_cores

    def where(g: int) -> tuple[int, int, int]:
        chip, local = divmod(g, cfg.cores_per_chip)
        tile = local // cfg.cores_per_tile
        return chip, chip * cfg.mesh_x + tile % cfg.mesh_x, tile // cfg.mesh_x

    stats = _core_stats(pops, pairs, core_of, cfg, n_cores)
    readers = {p.name: [r for r in pops if r.source == p.name] for p in pops}
    dests: dict[str, dict[int, dict[int, int]]] = {}  # layer -> neuron -> destination core -> synapses
    for p in pops:
        table: dict[int, dict[int, int]] = {i: {} for i in range(p.neurons)}
        for r in readers[p.name]:
            for i, j in pairs[r.name]:
                k = core_of[r.name][j]
                table[i][k] = table[i].get(k, 0) + 1
        dests[p.name] = table
    v = cfg.values
    s_n, t_n, names = wl.samples, wl.time_steps, [p.name for p in pops]
    counts = {m: [[[0] * t_n for _ in pops] for _ in range(s_n)]
              for m in ("updates", "messages", "tile_hops_ew", "tile_hops_ns", "chip_crossings", "messages_in",
                        "synaptic_ops", "core_busy_ps", "fired")}
    steps = {m: [[0] * t_n for _ in range(s_n)] for m in ("step_ps", "compute_ps", "hop_latency_ps",
                                                           "barrier_ps", "management_ps")}
    layer_index = {p.name: li for li, p in enumerate(pops)}
    core_layer = [li for li, p in enumerate(pops) for _ in range(p.cores)]
    tiles = len({(where(g)[0], (g % cfg.cores_per_chip) // cfg.cores_per_tile) for g in range(n_cores)})
    spikes = {p.name: wl.spikes(p.name).reshape(s_n, t_n, -1) for p in pops if p.spiking}
    for s in range(s_n):
        for t in range(t_n):
            fired_sets = {name: {i for i, x in enumerate(a[s, t]) if x} for name, a in spikes.items()}
            core = {m: [0] * n_cores for m in ("fired", "sent", "received", "synops", "updated")}
            longest = 0
            for p in pops:
                li = layer_index[p.name]
                for i in sorted(fired_sets.get(p.name, ())):
                    c = core_of[p.name][i]
                    core["fired"][c] += 1
                    for k, n_syn in sorted(dests[p.name][i].items()):
                        core["sent"][c] += 1
                        core["received"][k] += 1
                        core["synops"][k] += n_syn
                        (ca, xa, ya), (cb, xb, yb) = where(c), where(k)
                        ew, ns, chip = abs(xa - xb), abs(ya - yb), abs(ca - cb)
                        counts["tile_hops_ew"][s][li][t] += ew
                        counts["tile_hops_ns"][s][li][t] += ns
                        counts["chip_crossings"][s][li][t] += chip
                        lat = ew * ps(v["t_hop_ew_ns"]) + ns * ps(v["t_hop_ns_ns"]) + chip * ps(cfg.t_chip_hop_ns)
                        longest = max(longest, lat)
            for p in pops:
                if p.always_updated:
                    for j in range(p.neurons):
                        core["updated"][core_of[p.name][j]] += 1
                    continue
                reached = {j for i, j in pairs[p.name] if i in fired_sets.get(p.source, ())}
                reached |= fired_sets.get(p.name, set())
                for j in reached:
                    core["updated"][core_of[p.name][j]] += 1
            busiest = 0
            for g in range(n_cores):
                li = core_layer[g]
                p = pops[li]
                neurons = sum(1 for x in core_of[p.name] if x == g)
                neuron_ps = (neurons * ps(v["t_access_ns"]) + core["updated"][g] * ps(v["t_update_ns"])
                             + core["fired"][g] * ps(v["t_spike_ns"]) + core["sent"][g] * ps(v["t_msg_out_ns"]))
                message_ps = (core["received"][g] * ps(v["t_msg_in_ns"])
                              + core["synops"][g] * ps(v[f"t_syn_{syn_format(p, cfg)}_ns"]))
                busy = max(neuron_ps, message_ps)
                busiest = max(busiest, busy)
                counts["core_busy_ps"][s][li][t] += busy
                counts["updates"][s][li][t] += core["updated"][g]
                counts["messages"][s][li][t] += core["sent"][g]
                counts["messages_in"][s][li][t] += core["received"][g]
                counts["synaptic_ops"][s][li][t] += core["synops"][g]
                counts["fired"][s][li][t] += core["fired"][g]
            barrier = cfg.barrier_ps(tiles)
            mgmt = ps(cfg.management_ns_per_step)
            steps["compute_ps"][s][t] = busiest
            steps["hop_latency_ps"][s][t] = longest
            steps["barrier_ps"][s][t] = barrier
            steps["management_ps"][s][t] = mgmt
            steps["step_ps"][s][t] = busiest + longest + barrier + mgmt
    energy = {a: [[[0.0] * t_n for _ in pops] for _ in range(s_n)] for a in
              ("access", "update", "spike", "msg_out", "hop", "msg_in", "synapse")}
    for s in range(s_n):
        for li, p in enumerate(pops):
            fmt = syn_format(p, cfg)
            for t in range(t_n):
                c = {m: counts[m][s][li][t] for m in counts}
                energy["access"][s][li][t] = p.neurons * v["e_access_pj"]
                energy["update"][s][li][t] = c["updates"] * v["e_update_pj"]
                energy["spike"][s][li][t] = c["fired"] * v["e_spike_pj"]
                energy["msg_out"][s][li][t] = c["messages"] * v["e_msg_out_pj"]
                energy["hop"][s][li][t] = (c["tile_hops_ew"] * v["e_hop_ew_pj"] + c["tile_hops_ns"] * v["e_hop_ns_pj"]
                                           + c["chip_crossings"] * cfg.e_chip_hop_pj)
                energy["msg_in"][s][li][t] = c["messages_in"] * v["e_msg_in_pj"]
                energy["synapse"][s][li][t] = c["synaptic_ops"] * v[f"e_syn_{fmt}_pj"]
    io = ps(cfg.t_io_sample_us * 1000.0)
    chips = -(-n_cores // cfg.cores_per_chip)
    wall = [io + sum(steps["step_ps"][s]) for s in range(s_n)]
    # one frame interval: frames run back to back, the mean completion interval (a single frame: its time)
    interval = wall[0] if s_n == 1 else sum(wall[1:]) / (s_n - 1)
    static = [cfg.static_mw_per_chip * chips * interval * 1e-3] * s_n
    return {"layers": names, "counts": counts, "energy": energy, "steps": steps, "static_pj": static,
            "wall_ps": wall, "stats": stats, "cores": n_cores, "chips": chips, "tiles": tiles}


def _core_stats(pops: list, pairs: dict, core_of: dict, cfg: Any, n_cores: int) -> list[dict[str, int]]:
    """Per core: compartments, input axons, synaptic words, output axons, counted one by one."""
    stats = [{"compartments": 0, "input_axons": 0, "synaptic_words": 0, "output_axons": 0} for _ in range(n_cores)]
    bits = cfg.weight_bits + cfg.index_bits
    for p in pops:
        for j in range(p.neurons):
            stats[core_of[p.name][j]]["compartments"] += p.compartments_per_neuron
        if p.source is None:
            continue
        per_axon: dict[tuple[int, int], int] = {}
        for i, j in pairs[p.name]:
            key = (core_of[p.name][j], i)
            per_axon[key] = per_axon.get(key, 0) + 1
        for (g, _i), n in per_axon.items():
            stats[g]["input_axons"] += 1
            while n > 0:  # one entry at a time, each starting a new word
                take = min(n, cfg.max_syn_per_entry)
                stats[g]["synaptic_words"] += math.ceil(take * bits / cfg.word_bits)
                n -= take
        src_cores: dict[int, set[int]] = {}
        for i, j in pairs[p.name]:
            src_cores.setdefault(i, set()).add(core_of[p.name][j])
        for i, ks in src_cores.items():
            stats[core_of[p.source][i]]["output_axons"] += len(ks)
    return stats


def engine_stats(net: Network) -> list[dict[str, int]]:
    """The engine's per-core figures in the same form."""
    out = []
    for p in net.pops:
        for c in range(p.cores):
            out.append({k: int(p.stats[k][c]) for k in ("compartments", "input_axons", "synaptic_words",
                                                         "output_axons")})
    return out
