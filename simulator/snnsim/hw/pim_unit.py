"""The SRAM compute-in-memory macro as a unit of the chip's chain (``mapping.pim``).

The macro (:mod:`.pim`, presets in ``tech/pim/macros.yaml``) runs the network's first layer, the
multi-bit one reading the frame, between the link and the core: it takes the frame's raw lines
from the link into its input buffer [A: the whole frame is held before the macro starts; each
line's acceptance takes no time], computes the layer's MVMs on its arrays and its neurons
digitally, and hands the layer's spikes to the core row by row, T spike packets per output row
(a bitmap of the row's neurons, as a P2M sensor's rows), through a buffer of
``pim.output_buffer_rows`` rows. The frame's macro time (:func:`.pim.layer_counts`, once or at
every step as ``recompute_per_step`` says) is shared evenly by its output rows. A bias or a
per-channel affine of the layer is applied in the digital neuron update [A: no extra time or
energy].

What the macro cannot run is refused naming the key and layer: a layer other than the first, a
layer reading spikes (the macro takes multi-bit inputs), a multi-bit frame on a macro of 1-bit
(spike) inputs, pooling or an add before the neuron, a first layer a P2M sensor already computes,
a layer that does not fit the macro.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, MappingError, did_you_mean
from ..report.report import RecordBlock
from .chain import Plan, StageTimes, in_pixels
from .core import plane_geometry
from .sensor import SensorPlan


def mapped_layers(hw: Any, wl: Any) -> list[str]:
    """The layers ``mapping.pim`` names (names or indices, comma-separated), checked."""
    text = hw["mapping"]["pim"].strip()
    if not text:
        return []
    names = [la.name for la in wl.layers]
    out = []
    for item in (x.strip() for x in text.split(",")):
        if item.isdigit() and item not in names:
            i = int(item)
            if i >= len(names):
                raise MappingError("mapping.pim names a layer index the trace does not have", file=hw.source,
                                   key="mapping.pim", expected=f"0..{len(names) - 1} or a layer name", found=item)
            item = names[i]
        if item not in names:
            raise MappingError("mapping.pim names a layer the trace does not have", file=hw.source, key="mapping.pim",
                               expected="a layer name or index", found=item, suggestion=did_you_mean(item, names))
        out.append(item)
    if out != [names[0]]:
        raise MappingError("the PIM macro runs the first layer, the one reading the frame", file=hw.source,
                           key="mapping.pim", expected=f"'{names[0]}' (or 0)", found=", ".join(out),
                           suggestion="the later layers read spikes; the macro takes multi-bit inputs")
    return out


def macro_of(hw: Any) -> Any:
    """The :class:`.pim.MacroConfig` of the hwconfig: the preset, its keys overridden."""
    from . import pim

    params = pim.preset(hw["pim"]["preset"])
    params.update({k: v for k, v in hw["pim"].items() if v is not None and k not in ("preset", "output_buffer_rows")})
    from ..errors import ConfigError

    try:
        return pim.macro_config(params, hw.source)
    except ConfigError as e:  # the macro's keys are the hwconfig's pim.<key>
        raise ConfigError(e.message, file=hw.source, key=f"pim.{e.key}" if e.key else "pim", expected=e.expected,
                          found=e.found, suggestion=e.suggestion) from None


def _geometry(hw: Any, wl: Any, layer: Any) -> Any:
    from . import pim

    if in_pixels(hw):
        raise MappingError("a P2M sensor computes the first layer in its pixels; the PIM macro cannot also run it",
                           file=hw.source, key="mapping.pim", expected="a conventional sensor with a PIM first layer",
                           found="sensor.kind p2m", suggestion="--set sensor.kind=conventional, or --set mapping.pim=")
    if layer.parts is not None:
        p = layer.parts
        syn = p.synapses
        ok = (len(syn) == 1 and syn[0].value == "analog" and syn[0].weighted is not None and len(syn[0].chain) == 1
              and all(n.op in ("bias", "affine", "scale") for n in p.passes) and p.spiking_neuron)
        op = syn[0].weighted.op if ok else "graph"
    else:
        ok = layer.inputs == ["input"] and layer.op in ("conv2d", "conv3d", "linear") and layer.neuron is not None
        op = layer.op
    if not ok or op not in ("conv2d", "conv3d", "linear"):
        raise MappingError("the PIM macro runs a conv2d, conv3d or linear layer on the frame, then a spiking neuron",
                           file=wl.source, key=f"layers.{layer.name}", expected="input -> conv2d/conv3d/linear "
                           "[-> bias/affine] -> neuron", found=op,
                           suggestion="map the layer to the core: --set mapping.pim=")
    kernel = () if op == "linear" else tuple(layer.kernel)
    return pim.layer_geometry(layer.name, tuple(layer.in_shape), int(layer.out_shape[0]), kernel=kernel,
                              stride=tuple(layer.stride) or 1, padding=tuple(layer.padding) or 0, groups=layer.groups,
                              weight_bits=int(layer.weight_bits))


class Pim:
    """The PIM macro between the link and the core."""

    name = "pim"

    def plan(self, hw: Any, wl: Any, upstream: list[Plan], graph: tuple | None) -> Plan:
        from . import pim

        (name,) = mapped_layers(hw, wl)
        layer = wl.layer(name)
        cfg = macro_of(hw)
        mapping = _map(hw, wl, cfg, layer)
        t_n, s_n = wl.time_steps, wl.samples
        counts = pim.layer_counts(cfg, mapping, wl.input, t_n)  # (samples, steps) each
        c_o, *sp = layer.out_shape
        _plane, width, rows = plane_geometry(tuple(layer.out_shape))  # the core's rows: (depth, row) of a 3D map
        n_in = upstream[-1].transactions  # the link's packets of one frame
        total = counts["time_ps"].sum(axis=1).astype(np.int64)  # (samples,)
        row_ps = np.repeat((total // rows)[:, None], rows, axis=1)
        row_ps[:, -1] += total - (total // rows) * rows  # the remainder in the last row: exact
        service = np.concatenate([np.zeros((s_n, n_in), np.int64), row_ps], axis=1)
        consume = np.concatenate([np.ones(n_in, np.int64), np.zeros(rows, np.int64)])
        produce = np.concatenate([np.zeros(n_in, np.int64), np.full(rows, t_n, np.int64)])
        layout = SensorPlan(kind="pim", rows=rows, row_time_ps=0, packets_per_row=t_n,
                            packet_step=np.tile(np.arange(t_n, dtype=np.int64), rows),
                            packet_row=np.repeat(np.arange(rows, dtype=np.int64), t_n), layer=name)
        payload = np.full((s_n, rows * t_n), width * (c_o if sp else 1), np.int64)
        counters = [k for k in pim.COUNTERS if k in counts and k != "time_ps"]
        energies = [k for k in counts if k.startswith("e_") and k.endswith("_pj")]
        biggest = max(int(counts[k].max(initial=0)) for k in counters)
        if biggest >= 2**53:
            raise ConfigError("the PIM macro's counts are too large to report exactly", file=hw.source, key="pim",
                              expected="counts below 2^53 per (sample, step)", found=f"{biggest:.4g}")

        def records(times: StageTimes) -> list:
            values = np.stack([counts[k].astype(np.float64) for k in (*counters, *energies)], axis=-1)
            metrics = counters + [f"energy.{k[2:-3]}" for k in energies]
            units = ["count"] * len(counters) + ["pJ"] * len(energies)
            return [RecordBlock(layers=[name], metrics=metrics, components=["pim"] * len(metrics), units=units,
                                values=values[:, None, :, :])]

        details = {"preset": hw["pim"]["preset"], "layer": name, "tiles": int(mapping.tiles),
                   "recompute_per_step": bool(cfg.recompute_per_step), "t_mvm_ps": float(cfg.t_mvm_ps),
                   "macro": {k: getattr(cfg, k) for k in ("rows", "cols", "bits_per_cell", "weight_bits",
                                                          "input_mode", "input_bits", "adc_bits", "cols_per_adc",
                                                          "n_arrays")},
                   "source": "snnsim/tech/pim/macros.yaml"}
        rows_cap = hw["pim"]["output_buffer_rows"]
        return Plan(name=self.name, service_ps=service, consume=consume, produce=produce,
                    fifo_after=rows_cap * t_n, time_keys="pim.t_sense_ns, pim.preset", details=details, layers=(name,),
                    records=records, delivery=(layout, payload), inner=None)


def pim_problems(hw: Any, wl: Any) -> list:
    """Why the layer ``mapping.pim`` names cannot run in the macro (empty when it can)."""
    from ..errors import SnnsimError

    try:
        (name,) = mapped_layers(hw, wl)
        _map(hw, wl, macro_of(hw), wl.layer(name))
    except SnnsimError as e:
        return [e]
    return []


def _map(hw: Any, wl: Any, cfg: Any, layer: Any) -> Any:
    """The layer unrolled onto the macro; a refusal names the hwconfig's key (``pim.<key>``)."""
    from ..errors import SnnsimError
    from . import pim

    geometry = _geometry(hw, wl, layer)
    if cfg.input_bits == 1 and not _binary_frame(wl):
        raise MappingError("the PIM macro takes 1-bit (spike) inputs; the first layer reads a multi-bit frame",
                           file=hw.source, key="pim.input_bits", expected="input bits of the frame's precision",
                           found="1", suggestion="--set pim.input_bits=8 (a bit-serial macro slices multi-bit "
                           "inputs), or map the layer to the core: --set mapping.pim=")
    try:
        return pim.map_layer(cfg, geometry)
    except SnnsimError as e:
        key = e.key.split(": ")[-1] if e.key else ""
        key = key.rsplit(" ", 1)[-1]
        raise MappingError(f"layer {layer.name} does not fit the PIM macro: {e.message}", file=hw.source,
                           key=f"pim.{key}" if key in pim.field_docs() else "pim", expected=e.expected,
                           found=e.found, suggestion=e.suggestion) from None


def _binary_frame(wl: Any) -> bool:
    """Whether every frame value is 0 or 1 (a binary frame loses nothing on 1-bit inputs)."""
    x = np.asarray(wl.input)
    return bool(np.all((x == 0) | (x == 1)))
