"""A Loihi-class many-core neuromorphic chip (``mapping.target: loihi``) replaying a trace.

Why: on a neuromorphic chip a converted network costs more than its synaptic operations times a
pJ figure. Every mapped neuron is visited every step, each spike becomes one message per
destination core routed over a mesh, every core waits for the slowest at a barrier, the chip
draws static power the whole time, and the host spends milliseconds per sample on I/O. Those
overheads decide power, energy and latency against a dense accelerator
(pim-loihi-ncs2.md B, "What to model" 2).

The network is mapped by :mod:`.loihi_net` (populations, synapses, cores, places). Per sample,
the host first injects the frame and reads the result (``t_io_sample_us``, at static power),
then the chip runs T steps. Per step and core (SANA-FE's "simple" timing model [V]
``src/schedule.cpp``, and its charging rules [V] ``src/pipeline.hpp``):

* neuron work = neurons x t_access + updated x t_update + fired x t_spike + messages sent x
  t_msg_out, where a neuron is *updated* when a synapse reaches it that step or it fires, or
  always when its layer has a bias, a leak, or is the input layer [A];
* message work = messages received x t_msg_in + synaptic ops x t_syn (format: the layer's);
* step time = max over cores of max(neuron work, message work) + the longest message path that
  step (E-W hops x t_hop_ew + N-S hops x t_hop_ns + chip crossings x t_chip_hop) + the barrier
  for the tiles in use (the preset's table) + ``management_ns_per_step``.

Energy per step charges the same actions at the preset's pJ, per layer: access, update, spike
(sender), message out and its hops (sender), message in and synaptic ops (receiver); the static
energy is ``static_mw_per_chip`` x chips used x the sample's whole time (I/O included), reported
apart from the dynamic energy. A spike's messages are charged in the step it fires [A: the
pipelining of layers across steps on the chip is not modelled]. All times are integer ps, each
per-action latency rounded to the nearest ps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError, MappingError, SnnsimError
from ..report.report import Record, RecordBlock
from .chain import Plan, StageTimes
from .loihi_net import Population, map_network, place, populations
from .loihi_params import LoihiConfig, loihi_config

COUNT_METRICS = ("updates", "messages", "tile_hops_ew", "tile_hops_ns", "chip_crossings", "messages_in",
                 "synaptic_ops", "core_busy_ps")
ENERGY_ACTIONS = ("access", "update", "spike", "msg_out", "hop", "msg_in", "synapse")
STEP_METRICS = ("step_ps", "compute_ps", "hop_latency_ps", "barrier_ps", "management_ps")


def ps(ns: float) -> int:
    """A latency in ns as whole picoseconds (nearest)."""
    return int(round(ns * 1000.0))


def syn_format(pop: Population, cfg: LoihiConfig) -> str:
    """The synaptic-memory format a layer's ops are priced in: ``auto`` takes the shared-weight
    conv format for conv and pool layers, the dense one otherwise [A]."""
    if cfg.synapse_format != "auto":
        return cfg.synapse_format
    return "conv" if pop.kind in ("conv", "pool") else "dense"


class Network:
    """The mapped network and the tables the replay reads (derived once per graph and chip)."""

    def __init__(self, wl: Any, cfg: LoihiConfig, source: str) -> None:
        self.pops = populations(wl, cfg)
        self.n_cores = map_network(self.pops, cfg, source)
        cap = cfg.chips * cfg.cores_per_chip
        self.chips = -(-self.n_cores // cfg.cores_per_chip)
        if self.n_cores > cap:
            raise MappingError(f"the network needs {self.n_cores} cores on {self.chips} chips; the board has "
                               f"{cfg.chips}", file=source, key="loihi.chips",
                               expected=f"at most {cap} cores ({cfg.chips} chips x {cfg.cores_per_chip})",
                               found=f"{self.n_cores} cores", suggestion=f"--set loihi.chips={self.chips}")
        self.place = place(self.n_cores, cfg)
        self.tiles = int(np.unique(self.place.tile).size)
        self.index = {p.name: i for i, p in enumerate(self.pops)}
        self.core_pop = np.repeat(np.arange(len(self.pops)), [p.cores for p in self.pops])
        self.core_neurons = np.concatenate([np.bincount(p.block, minlength=p.cores) for p in self.pops])
        self.messages = {p.name: self._messages(p, cfg) for p in self.pops if p.spiking}
        self.updates = {p.name: self._neighbours(p) for p in self.pops if not p.always_updated}

    def global_core(self, pop: Population) -> np.ndarray:
        return pop.first_core + pop.block

    def _messages(self, pop: Population, cfg: LoihiConfig) -> tuple:
        """Per neuron of ``pop``: its messages (one per destination core of every reader), each
        with its synapses, hops and path latency, sorted by neuron."""
        keys, counts = [], []
        for r in self.pops:
            if r.source != pop.name:
                continue
            key, n = np.unique(r.src * self.n_cores + self.global_core(r)[r.dst], return_counts=True)
            keys.append(key)
            counts.append(n)
        key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        syn = np.concatenate(counts).astype(np.int64) if counts else np.zeros(0, np.int64)
        order = np.argsort(key, kind="stable")
        key, syn = key[order], syn[order]
        src, dst = key // self.n_cores, key % self.n_cores
        ptr = np.zeros(pop.neurons + 1, np.int64)
        np.cumsum(np.bincount(src, minlength=pop.neurons), out=ptr[1:])
        own = self.global_core(pop)
        a, b = own[src], dst
        pl = self.place
        ew = np.abs(pl.x[a] - pl.x[b])
        ns = np.abs(pl.y[a] - pl.y[b])
        chip = np.abs(pl.chip[a] - pl.chip[b])
        v = cfg.values
        lat = ew * ps(v["t_hop_ew_ns"]) + ns * ps(v["t_hop_ns_ns"]) + chip * ps(cfg.t_chip_hop_ns)
        return (own.astype(np.int64), ptr, dst.astype(np.int64), syn, ew, ns, chip, lat.astype(np.int64))

    def _neighbours(self, pop: Population) -> tuple:
        """The destination neurons of each source neuron (the synapses sorted by source)."""
        src = self.pops[self.index[pop.source]] if pop.source else None
        n_src = src.neurons if src is not None else 0
        ptr = np.zeros(n_src + 1, np.int64)
        np.cumsum(np.bincount(pop.src, minlength=n_src), out=ptr[1:])
        return ptr, pop.dst.astype(np.int64), self.global_core(pop).astype(np.int64)


def network(hw: Any, wl: Any) -> tuple[LoihiConfig, Network]:
    """The chip's configuration and the network mapped onto it, kept per workload graph and chip
    structure (a sweep of energies or timings maps once)."""
    cfg = loihi_config(hw)
    structure = (cfg.chips, cfg.mesh_x, cfg.mesh_y, cfg.cores_per_tile, cfg.max_compartments, cfg.max_input_axons,
                 cfg.max_output_axons, cfg.syn_mem_words, cfg.word_bits, cfg.max_syn_per_entry, cfg.weight_bits,
                 cfg.index_bits, cfg.soft_reset_compartments, ps(cfg.values["t_hop_ew_ns"]),
                 ps(cfg.values["t_hop_ns_ns"]), ps(cfg.t_chip_hop_ns))
    cache = wl.__dict__.setdefault("_loihi_networks", {})
    key = (id(wl.layers), len(wl.layers), structure)
    if key not in cache:
        if len(cache) > 8:
            cache.clear()
        cache[key] = Network(wl, cfg, hw.source)
    return cfg, cache[key]


def replay(net: Network, wl: Any) -> dict[str, np.ndarray]:
    """Per (sample, step, core): fired, sent, received, synaptic ops, updated neurons; per (sample,
    layer, step): tile hops E-W / N-S and chip crossings of the layer's messages; per (sample,
    step): the longest message path (ps)."""
    from .loihi_kernels import empty_packed, replay_messages, replay_updates

    s_n, t_n, c_n, l_n = wl.samples, wl.time_steps, net.n_cores, len(net.pops)
    out = {k: np.zeros((s_n, t_n, c_n), np.int64) for k in ("fired", "sent", "received", "synops", "updated")}
    out["hops"] = np.zeros((s_n, l_n, t_n, 3), np.int64)
    out["max_lat"] = np.zeros((s_n, t_n), np.int64)
    for li, pop in enumerate(net.pops):
        if pop.spiking:
            packed = wl.packed(pop.name)
            tables = net.messages[pop.name]
            for s in range(s_n):
                replay_messages(packed[s], pop.neurons, *tables, out["fired"][s], out["sent"][s], out["received"][s],
                                out["synops"][s], out["hops"][s, li], out["max_lat"][s])
    for pop in net.pops:
        lo, hi = pop.first_core, pop.first_core + pop.cores
        if pop.always_updated:
            out["updated"][:, :, lo:hi] = net.core_neurons[lo:hi]
            continue
        ptr, nbr, own_core = net.updates[pop.name]
        src = net.pops[net.index[pop.source]]
        packed_src = wl.packed(src.name)
        own = wl.packed(pop.name) if pop.spiking else None
        stamp = np.full(pop.neurons, -1, np.int64)
        for s in range(s_n):
            replay_updates(packed_src[s], src.neurons, ptr, nbr, own[s] if own is not None else empty_packed(),
                           pop.neurons, own_core, stamp, s * t_n, out["updated"][s])
    return out


def step_times(net: Network, cfg: LoihiConfig, act: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per (sample, step): the step's time and its parts (ps); per (sample, step, core): busy ps."""
    v = cfg.values
    t_syn = np.array([ps(v[f"t_syn_{syn_format(p, cfg)}_ns"]) for p in net.pops], np.int64)[net.core_pop]
    neuron = (net.core_neurons * ps(v["t_access_ns"]) + act["updated"] * ps(v["t_update_ns"])
              + act["fired"] * ps(v["t_spike_ns"]) + act["sent"] * ps(v["t_msg_out_ns"]))
    message = act["received"] * ps(v["t_msg_in_ns"]) + act["synops"] * t_syn
    busy = np.maximum(neuron, message)
    compute = busy.max(axis=2)
    barrier = np.full_like(compute, cfg.barrier_ps(net.tiles))
    management = np.full_like(compute, ps(cfg.management_ns_per_step))
    step = compute + act["max_lat"] + barrier + management
    return {"step_ps": step, "compute_ps": compute, "hop_latency_ps": act["max_lat"], "barrier_ps": barrier,
            "management_ps": management, "busy": busy}


def per_layer(net: Network, a: np.ndarray) -> np.ndarray:
    """(samples, steps, cores) -> (samples, layers, steps), summed over each layer's cores."""
    bounds = np.array([p.first_core for p in net.pops] + [net.n_cores])
    sums = np.add.reduceat(a, bounds[:-1], axis=2) if net.n_cores else np.zeros(a.shape[:2] + (0,), a.dtype)
    return np.moveaxis(sums, 2, 1)


def layer_counts(net: Network, act: dict[str, np.ndarray], times: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The records' counts per (sample, layer, step)."""
    hops = act["hops"]
    return {"updates": per_layer(net, act["updated"]), "messages": per_layer(net, act["sent"]),
            "tile_hops_ew": hops[..., 0], "tile_hops_ns": hops[..., 1], "chip_crossings": hops[..., 2],
            "messages_in": per_layer(net, act["received"]), "synaptic_ops": per_layer(net, act["synops"]),
            "core_busy_ps": per_layer(net, times["busy"]), "fired": per_layer(net, act["fired"])}


def layer_energy(net: Network, cfg: LoihiConfig, counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """pJ per (sample, layer, step) and action."""
    v = cfg.values
    neurons = np.array([p.neurons for p in net.pops], np.float64)[None, :, None]
    e_syn = np.array([v[f"e_syn_{syn_format(p, cfg)}_pj"] for p in net.pops])[None, :, None]
    f = {k: a.astype(np.float64) for k, a in counts.items()}
    return {"access": np.broadcast_to(neurons * v["e_access_pj"], f["updates"].shape),
            "update": f["updates"] * v["e_update_pj"], "spike": f["fired"] * v["e_spike_pj"],
            "msg_out": f["messages"] * v["e_msg_out_pj"],
            "hop": f["tile_hops_ew"] * v["e_hop_ew_pj"] + f["tile_hops_ns"] * v["e_hop_ns_pj"]
            + f["chip_crossings"] * cfg.e_chip_hop_pj,
            "msg_in": f["messages_in"] * v["e_msg_in_pj"], "synapse": f["synaptic_ops"] * e_syn}


def _details(net: Network, cfg: LoihiConfig, wl: Any) -> dict[str, Any]:
    layers = []
    caps = {"compartments": cfg.max_compartments, "input_axons": cfg.max_input_axons,
            "synaptic_words": cfg.syn_mem_words, "output_axons": cfg.max_output_axons}
    for p in net.pops:
        util = {k: {"max": float(p.stats[k].max(initial=0)) / cap, "mean": float(p.stats[k].mean()) / cap}
                for k, cap in caps.items()}
        layers.append({"name": p.name, "kind": p.kind, "neurons": p.neurons, "compartments_per_neuron":
                       p.compartments_per_neuron, "synapses": int(p.src.size), "cores": p.cores,
                       "first_core": p.first_core, "split": list(p.parts), "synapse_format": syn_format(p, cfg),
                       "utilisation": util})
    n_in = math.prod(wl.input_shape)
    return {"preset": cfg.preset, "cores_used": net.n_cores, "chips_used": net.chips, "tiles_used": net.tiles,
            "chips_on_board": cfg.chips, "cores_per_chip": cfg.cores_per_chip,
            "mesh": [cfg.mesh_x, cfg.mesh_y, cfg.cores_per_tile], "layers": layers,
            "values": dict(cfg.values), "barrier_ps": [list(x) for x in cfg.barrier],
            "barrier_ps_used": cfg.barrier_ps(net.tiles), "static_mw_per_chip": cfg.static_mw_per_chip,
            "t_io_sample_us": cfg.t_io_sample_us, "sources": dict(cfg.sources),
            "source": "snnsim/tech/loihi/presets.yaml",
            # the host sends the frame at 8 bits per value [A], the baseline of the report's bandwidth
            "conventional_payload_bits_per_frame": 8 * n_in, "conventional_wire_bits_per_frame": 8 * n_in}


def _check_exact(counts: dict[str, np.ndarray], source: str) -> None:
    biggest = max((int(a.max(initial=0)) for a in counts.values()), default=0)
    if biggest >= 2**53:
        raise ConfigError("the Loihi model's counts are too large to report exactly", file=source, key="loihi",
                          expected="counts below 2^53 per (sample, layer, step)", found=f"{biggest:.4g}")


class Loihi:
    """The Loihi-class chip: host I/O, then T steps per sample."""

    name = "loihi"

    def plan(self, hw: Any, wl: Any, upstream: list[Plan], graph: tuple | None) -> Plan:
        cfg, net = network(hw, wl)
        act = replay(net, wl)
        times = step_times(net, cfg, act)
        counts = layer_counts(net, act, times)
        _check_exact(counts, hw.source)
        energy = layer_energy(net, cfg, counts)
        s_n = wl.samples
        io = ps(cfg.t_io_sample_us * 1000.0)
        service = np.concatenate([np.full((s_n, 1), io, np.int64), times["step_ps"]], axis=1)
        names = [p.name for p in net.pops]
        n_in = math.prod(wl.input_shape)
        static_mw = cfg.static_mw_per_chip * net.chips

        def records(st: StageTimes) -> list[Record | RecordBlock]:
            values = np.stack([counts[k].astype(np.float64) for k in COUNT_METRICS]
                              + [energy[a] for a in ENERGY_ACTIONS], axis=-1)
            metrics = [*COUNT_METRICS, *(f"energy.{a}" for a in ENERGY_ACTIONS)]
            out: list[Record | RecordBlock] = [
                RecordBlock(layers=names, metrics=metrics, components=["loihi"] * len(metrics),
                            units=["count"] * (len(COUNT_METRICS) - 1) + ["ps"] + ["pJ"] * len(ENERGY_ACTIONS),
                            values=values),
                RecordBlock(layers=["-"], metrics=list(STEP_METRICS), components=["loihi"] * len(STEP_METRICS),
                            units=["ps"] * len(STEP_METRICS),
                            values=np.stack([times[k].astype(np.float64) for k in STEP_METRICS], axis=-1)[:, None])]
            for s in range(s_n):
                out.append(Record(s, "-", None, "loihi", "io_ps", float(io), "ps"))
                out.append(Record(s, "-", None, "loihi", "payload_bits", float(8 * n_in), "bit"))
                out.append(Record(s, "-", None, "loihi", "wire_bits", float(8 * n_in), "bit"))
            return out

        return Plan(name=self.name, service_ps=service, consume=np.zeros(service.shape[1], np.int64),
                    produce=np.zeros(service.shape[1], np.int64), fifo_after=None,
                    time_keys="loihi.t_io_sample_us, loihi.preset, loihi.t_*_ns, loihi.barrier_table",
                    details=_details(net, cfg, wl), layers=tuple(names), records=records, inner=net,
                    static_mw=static_mw)


def loihi_problems(hw: Any, wl: Any) -> list[SnnsimError]:
    """Why the trace cannot run on the chip (empty when it can)."""
    try:
        network(hw, wl)
    except SnnsimError as e:
        return [e]
    return []
