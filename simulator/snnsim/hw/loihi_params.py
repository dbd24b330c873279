"""The keys of the Loihi-class target (the hwconfig's ``loihi:`` section) and their presets.

The chip's structure (per-core limits, the tile mesh, chips on the board, host I/O) is set by
keys with Loihi 1 defaults (pim-loihi-ncs2.md B.1 [V]); its per-action energies and latencies,
the barrier table and the static power come from a preset (``tech/loihi/presets.yaml``:
``sanafe_loihi``, ``davies2018``, ``keras_spiking``), each value with its source, and any of
them can be overridden. :func:`loihi_config` resolves the section into a :class:`LoihiConfig`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from ..errors import ConfigError
from ..fields import Field, Section

MAX_PJ = 1e6
MAX_NS = 1e6
SYNAPSE_FORMATS = ("auto", "dense", "sparse", "conv")

# per-action values a preset sets (pJ per action, ns per action), in the order of the model
PRESET_KEYS: dict[str, str] = {
    "e_access_pj": "per mapped neuron and step (the soma reads its state), pJ",
    "t_access_ns": "per mapped neuron and step, ns",
    "e_update_pj": "extra per neuron whose state changes in a step (it received input, has a bias, or fired), pJ",
    "t_update_ns": "extra per updated neuron, ns",
    "e_spike_pj": "extra per neuron that fires, pJ",
    "t_spike_ns": "extra per neuron that fires, ns",
    "e_msg_out_pj": "per spike message sent (one per destination core of a fired neuron), pJ",
    "t_msg_out_ns": "per spike message sent, at the sender, ns",
    "e_msg_in_pj": "per spike message received, pJ",
    "t_msg_in_ns": "per spike message received, at the receiver, ns",
    "e_syn_dense_pj": "per synaptic op in the dense format, pJ",
    "t_syn_dense_ns": "per synaptic op in the dense format, ns",
    "e_syn_sparse_pj": "per synaptic op in the sparse format, pJ",
    "t_syn_sparse_ns": "per synaptic op in the sparse format, ns",
    "e_syn_conv_pj": "per synaptic op in the shared-weight conv format, pJ",
    "t_syn_conv_ns": "per synaptic op in the shared-weight conv format, ns",
    "e_hop_ew_pj": "per east-west tile hop of a message, pJ",
    "t_hop_ew_ns": "per east-west tile hop, ns",
    "e_hop_ns_pj": "per north-south tile hop of a message, pJ",
    "t_hop_ns_ns": "per north-south tile hop, ns",
}


def _pos(default: int, doc: str, maximum: int) -> Field:
    return Field("int", default, doc, minimum=1, maximum=maximum)


_CHIP: dict[str, Field] = {
    "preset": Field("str", "sanafe_loihi", "energy and timing preset (snnsim/tech/loihi/presets.yaml)",
                    choices=("sanafe_loihi", "davies2018", "keras_spiking")),
    "chips": _pos(32, "chips on the board (a model may use any number of them; 32: a Nahuku board)", 16384),
    "mesh_x": _pos(8, "tiles per chip along x (east-west)", 64),
    "mesh_y": _pos(4, "tiles per chip along y (north-south)", 64),
    "cores_per_tile": _pos(4, "neuro-cores per tile", 64),
    "max_compartments": _pos(1024, "compartments per core", 1 << 20),
    "max_input_axons": _pos(4096, "input axons per core (distinct source neurons it receives from)", 1 << 20),
    "max_output_axons": _pos(4096, "output axon entries per core (one per neuron and destination core)",
                             1 << 20),
    "syn_mem_words": _pos(16384, "synaptic memory words per core", 1 << 24),
    "word_bits": _pos(64, "bits per synaptic memory word", 1024),
    "max_syn_per_entry": _pos(60, "synapses per synaptic entry (an axon's synapses into a core take "
                              "ceil(n / this) entries, each starting a new word)", 1 << 16),
    "weight_bits": Field("int", 8, "bits of each stored weight (Loihi: 1-9)", minimum=1, maximum=9),
    "index_bits": Field("int", 0, "bits of the target index stored beside each weight (0: a dense or "
                        "shared-weight encoding)", minimum=0, maximum=32),
    "soft_reset_compartments": _pos(2, "compartments per neuron with reset by subtraction (Loihi 1: 2)", 16),
    "synapse_format": Field("str", "auto", "synaptic op format priced: auto (conv layers conv, others dense), "
                            "dense, sparse or conv", choices=SYNAPSE_FORMATS),
    "t_io_sample_us": Field("float", 1760.0, "host I/O per sample (input injection and read-out), at static "
                            "power", minimum=0.0, maximum=1e7),
    "management_ns_per_step": Field("float", 0.0, "management phase after every step's barrier, ns",
                                    minimum=0.0, maximum=MAX_NS),
    "e_chip_hop_pj": Field("float", 50.0, "per message crossing from one chip to the next, pJ",
                           minimum=0.0, maximum=MAX_PJ),
    "t_chip_hop_ns": Field("float", 100.0, "per chip-to-chip crossing of a message, ns", minimum=0.0,
                           maximum=MAX_NS),
}

_OVERRIDES: dict[str, Field] = {
    **{k: Field("float", None, f"{doc} (default: the preset's)", minimum=0.0,
                maximum=MAX_PJ if k.endswith("_pj") else MAX_NS, nullable=True)
       for k, doc in PRESET_KEYS.items()},
    "barrier_table": Field("str", None, "barrier time by mapped tiles, 'tiles:ns, ...' (linear between the "
                        "points, the last value beyond) (default: the preset's)", nullable=True),
    "static_mw_per_chip": Field("float", None, "static power of each chip the model uses, mW (default: the "
                                "preset's)", minimum=0.0, maximum=1e6, nullable=True),
}

SECTION = Section("A Loihi-class many-core neuromorphic chip (mapping.target = loihi; docs/loihi.md): per-core "
                  "limits, the tile mesh, host I/O, and an energy/timing preset with any value overridden.",
                  {**_CHIP, **_OVERRIDES}, required=False)


@dataclass(frozen=True)
class LoihiConfig:
    """The resolved ``loihi`` section (units in the names; ``barrier`` as (tiles, ps) points)."""

    preset: str
    chips: int
    mesh_x: int
    mesh_y: int
    cores_per_tile: int
    max_compartments: int
    max_input_axons: int
    max_output_axons: int
    syn_mem_words: int
    word_bits: int
    max_syn_per_entry: int
    weight_bits: int
    index_bits: int
    soft_reset_compartments: int
    synapse_format: str
    t_io_sample_us: float
    management_ns_per_step: float
    e_chip_hop_pj: float
    t_chip_hop_ns: float
    values: dict[str, float]  # PRESET_KEYS resolved
    barrier: tuple[tuple[int, int], ...]
    static_mw_per_chip: float
    sources: dict[str, str]  # each resolved value's source

    @property
    def cores_per_chip(self) -> int:
        return self.mesh_x * self.mesh_y * self.cores_per_tile

    def barrier_ps(self, tiles: int) -> int:
        """The barrier after a step with ``tiles`` mapped tiles: the table, linear between its
        points (rounded to whole ps), its first value below and its last beyond."""
        pts = self.barrier
        if tiles <= pts[0][0]:
            return pts[0][1]
        for (a, ta), (b, tb) in zip(pts, pts[1:], strict=False):
            if tiles <= b:
                return ta + ((tb - ta) * (tiles - a) + (b - a) // 2) // (b - a)
        return pts[-1][1]


@functools.lru_cache(maxsize=1)
def presets() -> dict[str, dict[str, Any]]:
    text = resources.files("snnsim.tech").joinpath("loihi/presets.yaml").read_text()
    return yaml.safe_load(text)


def parse_barrier(text: str, source: str, key: str = "loihi.barrier_table") -> tuple[tuple[int, int], ...]:
    """'tiles:ns, ...' -> ((tiles, ps), ...), increasing tiles, whole picoseconds."""
    pts = []
    try:
        for item in str(text).split(","):
            a, b = item.split(":")
            tiles, ns = int(a), float(b)
            if tiles < 1 or not 0 <= ns <= MAX_NS:
                raise ValueError
            pts.append((tiles, round(ns * 1000)))
    except ValueError:
        raise ConfigError("a barrier table is 'tiles:ns' pairs", file=source, key=key,
                          expected="e.g. '1:600, 2:1000, 4:1400, 29:1800' (tiles >= 1, 0 <= ns <= 1e6)",
                          found=repr(text)[:80]) from None
    if not pts or any(b[0] <= a[0] for a, b in zip(pts, pts[1:], strict=False)):
        raise ConfigError("a barrier table's tile counts must increase", file=source, key=key,
                          expected="increasing tile counts", found=repr(text)[:80])
    return tuple(pts)


def loihi_config(hw: Any) -> LoihiConfig:
    """The ``loihi`` section of a hwconfig with its preset applied."""
    sec = hw["loihi"]
    pre = presets()[sec["preset"]]["values"]
    values, sources = {}, {}
    for k in (*PRESET_KEYS, "barrier_table", "static_mw_per_chip"):
        if sec[k] is None:
            values[k], sources[k] = pre[k]["value"], f"preset {sec['preset']}: {pre[k]['source']}"
        else:
            values[k], sources[k] = sec[k], "hwconfig"
    barrier = parse_barrier(values.pop("barrier_table"), hw.source)
    static = float(values.pop("static_mw_per_chip"))
    chip = {k: sec[k] for k in _CHIP if k != "preset"}
    return LoihiConfig(preset=sec["preset"], **chip, values={k: float(v) for k, v in values.items()},
                       barrier=barrier, static_mw_per_chip=static, sources=sources)

