"""An SRAM compute-in-memory (PIM) macro running a multi-bit first layer (conv1d/2d/3d or linear).

Why: with direct (analog) input encoding the first SNN layer multiplies multi-bit pixel values by
multi-bit weights (MACs, not spike accumulates). ACE-SNN (Datta et al., Front. Neurosci. 2022)
moves that layer into an SRAM CIM macro. This module models such a macro from its published
structure (array size, cells per weight, input encoding, ADC sharing, read time) and per-action
energies, and counts what a layer costs on it per sample and time step. Sources and the rules are
in docs/pim.md; the presets (``tech/pim/macros.yaml``) reproduce published macros' TOPS/W and GOPS.

The macro: ``n_arrays`` identical arrays of ``rows`` x ``cols`` SRAM cells, ``bits_per_cell`` bits
each. A weight of ``b`` bits occupies ``b / bits_per_cell`` adjacent columns (its *slot*); with
``adc_share = combine`` the slot is fixed at ``weight_bits / bits_per_cell`` columns summed in the
analog domain (binary-weighted) into one conversion, so ``cols_per_adc`` must equal the slot; with
``adc_share = mux`` every column is converted on its own, one ADC serving ``cols_per_adc`` columns
in turn. The rows are read ``row_groups`` at a time (Wang 2022: 8 rows share one C-2C multiplier).

One MVM (one input vector against one tile of weights) is a fixed schedule of *reads*:
    reads per MVM  = row_groups x (input_bits if input_mode = bit_serial else 1)
    sense slots    = cols_per_adc if adc_share = mux else 1          (per read)
    t_mvm          = reads x sense slots x t_sense_ns
Per MVM on a tile with ``r`` used rows, ``c`` used columns and ``w`` weights (output channels):
    bit-line reads   = reads x c
    ADC conversions  = reads x (c if mux else w)
    row activations  = r x (input_bits if bit_serial else 1)   (DAC or driver, one per row and read)
    input pulses     = sum of the input codes (pulse_count) or of their set bits (bit_serial); 0 (dac)
    shift-adds       = w x (reads x conversions per weight - 1), conversions per weight = slot (mux) or 1
Across row tiles an output's partial sums are added digitally (row tiles - 1 adds per output), and
a digital neuron update follows per output neuron and step. The layer's macro time per step is
``ceil(MVMs / n_arrays) x t_mvm`` (MVMs spread evenly over the arrays holding copies of the tiles,
an idealisation written in docs/pim.md), plus weight-load rounds when the layer needs more tiles
than there are arrays and ``allow_weight_reload`` is on. With ``recompute_per_step`` off (direct
encoding: the same image at every step) the MVMs run at step 0 only; the currents are written to
a buffer once and read back at every later step.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from importlib import resources
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError, MappingError, WorkloadError, did_you_mean
from ..fields import Field, check_value, describe_value
from ..units import exact

INPUT_MODES = ("dac", "bit_serial", "pulse_count")
ADC_SHARES = ("mux", "combine")
MAX_ENERGY_PJ = 1e6
MAX_T_NS = 1e4  # one read or one row write: at most 10 us

# Every key of a macro configuration: type, default, meaning (with unit) and bounds. The energy
# defaults are the ibm14_6b6b preset's (a 6-bit x 6-bit macro, ACE-SNN's precision).
_FIELDS: dict[str, Field] = {
    "name": Field("str", "custom", "a label for reports"),
    "rows": Field("int", 64, "word lines (rows) per array", minimum=1, maximum=65536),
    "cols": Field("int", 64, "bit lines (columns) per array", minimum=1, maximum=65536),
    "bits_per_cell": Field("int", 1, "weight bits stored per cell (1 for SRAM)", minimum=1, maximum=4),
    "weight_bits": Field("int", 6, "largest weight precision the macro holds, bits", minimum=1, maximum=16),
    "input_mode": Field("str", "dac", "how a multi-bit input drives a row", choices=INPUT_MODES),
    "input_bits": Field("int", 6, "input precision, bits (inputs in [0, 1] quantised to 2^b - 1 levels)",
                        minimum=1, maximum=16),
    "adc_bits": Field("int", 6, "ADC resolution, bits (recorded; the energy is e_adc_pj per conversion)",
                      minimum=1, maximum=16),
    "cols_per_adc": Field("int", 6, "columns served by one ADC", minimum=1, maximum=1024),
    "adc_share": Field("str", "combine", "mux: one conversion per column, in turn; combine: one per weight slot",
                       choices=ADC_SHARES),
    "row_groups": Field("int", 1, "reads needed to use all rows (rows / rows read together)", minimum=1,
                        maximum=1024),
    "n_arrays": Field("int", 1, "arrays in the macro (copies or tiles of the layer)", minimum=1, maximum=1_000_000),
    "t_sense_ns": Field("float", 10.0, "one read's sense slot (drive, settle, convert), ns", minimum=0.0,
                        exclusive_minimum=True, maximum=MAX_T_NS),
    "e_bitline_pj": Field("float", 1.511, "per bit line and read (array, multiply, charge share), pJ",
                          minimum=0.0, maximum=MAX_ENERGY_PJ),
    "e_adc_pj": Field("float", 4.534, "per ADC conversion, pJ", minimum=0.0, maximum=MAX_ENERGY_PJ),
    "e_row_pj": Field("float", 24.18, "per row activation (DAC or word-line driver), pJ", minimum=0.0,
                      maximum=MAX_ENERGY_PJ),
    "e_pulse_pj": Field("float", 0.0, "per input pulse or set input bit driven, pJ", minimum=0.0,
                        maximum=MAX_ENERGY_PJ),
    "e_shift_add_pj": Field("float", 0.0, "per digital shift-add inside a tile, pJ", minimum=0.0,
                            maximum=MAX_ENERGY_PJ),
    "e_add_pj": Field("float", 0.031, "per digital partial-sum add across row tiles, pJ", minimum=0.0,
                      maximum=MAX_ENERGY_PJ),
    "e_neuron_pj": Field("float", 0.062, "per digital neuron update (one output neuron, one step), pJ",
                         minimum=0.0, maximum=MAX_ENERGY_PJ),
    "e_current_pj": Field("float", 0.0, "per stored-current buffer write or read (recompute off), pJ",
                          minimum=0.0, maximum=MAX_ENERGY_PJ),
    "recompute_per_step": Field("bool", True, "run the MVMs at every step (else at step 0, currents reused)"),
    "skip_zero_inputs": Field("bool", False, "skip an MVM whose input vector is all zero"),
    "allow_weight_reload": Field("bool", False, "rewrite arrays when a layer has more tiles than arrays"),
    "t_write_row_ns": Field("float", 1.0, "time to write one row of weights, ns", minimum=0.0, maximum=MAX_T_NS),
    "e_write_bit_pj": Field("float", 0.0, "per weight bit written on a reload, pJ", minimum=0.0,
                            maximum=MAX_ENERGY_PJ),
}

ENERGY_KEYS = ("e_bitline_pj", "e_adc_pj", "e_row_pj", "e_pulse_pj", "e_shift_add_pj", "e_add_pj",
               "e_neuron_pj", "e_current_pj", "e_write_bit_pj")
# counter -> the per-action energy that prices it (layer_counts gives e_<counter>_pj for each)
PRICED = {"bitline_reads": "e_bitline_pj", "adc_conversions": "e_adc_pj", "row_activations": "e_row_pj",
          "input_pulses": "e_pulse_pj", "shift_adds": "e_shift_add_pj", "partial_sum_adds": "e_add_pj",
          "neuron_updates": "e_neuron_pj", "current_writes": "e_current_pj", "current_reads": "e_current_pj",
          "weight_write_bits": "e_write_bit_pj"}
COUNTERS = ("mvms", "array_reads", "row_activations", "input_pulses", "bitline_reads", "adc_conversions",
            "shift_adds", "partial_sum_adds", "neuron_updates", "current_writes", "current_reads",
            "weight_write_bits", "time_ps")
# actions of the macro itself (what its published TOPS/W covers); the rest are the digital periphery
MACRO_ACTIONS = ("bitline_reads", "adc_conversions", "row_activations", "input_pulses", "shift_adds")


@dataclass(frozen=True)
class MacroConfig:
    """A checked macro configuration (see the module docstring and ``_FIELDS`` for units)."""

    name: str
    rows: int
    cols: int
    bits_per_cell: int
    weight_bits: int
    input_mode: str
    input_bits: int
    adc_bits: int
    cols_per_adc: int
    adc_share: str
    row_groups: int
    n_arrays: int
    t_sense_ns: float
    e_bitline_pj: float
    e_adc_pj: float
    e_row_pj: float
    e_pulse_pj: float
    e_shift_add_pj: float
    e_add_pj: float
    e_neuron_pj: float
    e_current_pj: float
    recompute_per_step: bool
    skip_zero_inputs: bool
    allow_weight_reload: bool
    t_write_row_ns: float
    e_write_bit_pj: float
    source: str = ""

    @property
    def reads_per_mvm(self) -> int:
        """Array reads of one MVM: every row group, and every input bit when bit-serial."""
        return self.row_groups * (self.input_bits if self.input_mode == "bit_serial" else 1)

    @property
    def sense_slots(self) -> int:
        """Sense slots of one read: a muxed ADC converts its columns one after another."""
        return self.cols_per_adc if self.adc_share == "mux" else 1

    @property
    def t_mvm_ps(self) -> Fraction:
        """Exact time of one MVM, ps."""
        return self.reads_per_mvm * self.sense_slots * exact(self.t_sense_ns) * 1000

    @property
    def macro_slot_cols(self) -> int:
        """Columns of one weight at the macro's full weight precision."""
        return self.weight_bits // self.bits_per_cell


def field_docs() -> dict[str, Field]:
    """Every configuration key with its type, default, meaning and bounds (for docs and tools)."""
    return dict(_FIELDS)


def macro_config(d: dict[str, Any], source: str) -> MacroConfig:
    """A :class:`MacroConfig` from a plain mapping (missing keys take their defaults).

    Every key is checked: unknown keys (with a did-you-mean), types (integers where integers are
    meant, no bools for numbers), bounds, and the cross-field rules (weight bits a multiple of bits
    per cell, a weight slot that fits the columns, ``combine`` with one ADC per slot, row groups
    dividing the rows). Raises :class:`ConfigError` naming ``source`` and the key."""
    if not isinstance(d, dict):
        raise ConfigError("a PIM macro configuration must be a mapping", file=source, expected="a mapping",
                          found=describe_value(d))
    for key in d:
        if key not in _FIELDS:
            raise ConfigError("unknown PIM macro key", file=source, key=str(key), expected="a macro parameter",
                              found=str(key), suggestion=did_you_mean(str(key), _FIELDS))
    values = {k: check_value(d.get(k, f.default), f, file=source, key=k) for k, f in _FIELDS.items()}

    def bad(key: str, message: str, expected: str, suggestion: str | None = None) -> None:
        raise ConfigError(message, file=source, key=key, expected=expected, found=repr(values[key]),
                          suggestion=suggestion)

    if values["weight_bits"] % values["bits_per_cell"]:
        bad("weight_bits", "weight bits must be a multiple of the bits per cell",
            f"a multiple of bits_per_cell = {values['bits_per_cell']}")
    slot = values["weight_bits"] // values["bits_per_cell"]
    if slot > values["cols"]:
        bad("weight_bits", "one weight needs more columns than the array has",
            f"weight_bits / bits_per_cell <= cols = {values['cols']}")
    if values["cols_per_adc"] > values["cols"]:
        bad("cols_per_adc", "an ADC cannot serve more columns than the array has", f"<= cols = {values['cols']}")
    if values["adc_share"] == "combine" and values["cols_per_adc"] != slot:
        bad("cols_per_adc", "with adc_share = combine one ADC converts one weight slot",
            f"weight_bits / bits_per_cell = {slot}", "use adc_share: mux for ADCs shared by separate columns")
    if values["rows"] % values["row_groups"]:
        bad("row_groups", "row groups must divide the rows", f"a divisor of rows = {values['rows']}")
    return MacroConfig(**values, source=source)


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _parsed_presets() -> dict[str, Any]:
    """The shipped preset file, parsed once per process (pure-Python YAML: ~30 ms a parse)."""
    text = (resources.files("snnsim") / "tech" / "pim" / "macros.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("macros"), dict):
        raise ConfigError("malformed PIM preset file", file="snnsim/tech/pim/macros.yaml",
                          expected="a mapping with 'macros:'", found=describe_value(data))
    return data["macros"]


def preset_names() -> list[str]:
    """Names of the shipped macro presets."""
    return sorted(_parsed_presets())


def _preset_entry(name: str) -> dict[str, Any]:
    macros = _parsed_presets()
    if name not in macros:
        raise ConfigError("unknown PIM macro preset", file="snnsim/tech/pim/macros.yaml", key=str(name),
                          expected="one of " + ", ".join(sorted(macros)), found=str(name),
                          suggestion=did_you_mean(str(name), macros))
    entry = copy.deepcopy(macros[name])  # the caller may change what it gets
    where = f"snnsim/tech/pim/macros.yaml: macros.{name}"
    if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
        raise ConfigError("malformed PIM preset", file=where, expected="a mapping with 'params:'",
                          found=describe_value(entry))
    for key, p in entry["params"].items():
        if not isinstance(p, dict) or "value" not in p or not str(p.get("source", "")).strip():
            raise ConfigError("every preset parameter needs a value and a source", file=where,
                              key=f"params.{key}", expected="{value, source}", found=describe_value(p))
    return entry


def preset(name: str) -> dict[str, Any]:
    """The plain parameter mapping of a shipped preset (pass it to :func:`macro_config`)."""
    entry = _preset_entry(name)
    out = {k: p["value"] for k, p in entry["params"].items()}
    out["name"] = name
    return out


def published_figures(name: str) -> dict[str, dict[str, Any]]:
    """A preset's published figures: ``{figure: {value, tolerance, source}}`` (GOPS, TOPS/W)."""
    return dict(_preset_entry(name).get("published", {}))


# ---------------------------------------------------------------------------------------------
# layer geometry and mapping
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerGeometry:
    """A weighted layer: ``in_shape`` channels first ((F,) for linear, (C, *spatial) for conv),
    ``out_channels``, per-axis ``kernel``/``stride``/``padding`` (empty for linear), ``groups``."""

    name: str
    in_shape: tuple[int, ...]
    out_channels: int
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    groups: int = 1
    weight_bits: int = 6

    @property
    def rank(self) -> int:
        return len(self.in_shape) - 1

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple((self.in_shape[1 + i] + 2 * self.padding[i] - self.kernel[i]) // self.stride[i] + 1
                     for i in range(self.rank))


def layer_geometry(name: str, in_shape: tuple[int, ...] | list[int], out_channels: int,
                   kernel: int | tuple[int, ...] | list[int] = (), stride: int | tuple[int, ...] | list[int] = 1,
                   padding: int | tuple[int, ...] | list[int] = 0, groups: int = 1,
                   weight_bits: int = 6) -> LayerGeometry:
    """A checked :class:`LayerGeometry`; scalars broadcast over the spatial axes. A 1-D
    ``in_shape`` is a linear layer (no kernel). Raises :class:`WorkloadError` naming the layer."""
    def fail(key: str, expected: str, found: Any) -> None:
        raise WorkloadError("invalid layer geometry", key=f"{name}.{key}", expected=expected,
                            found=describe_value(found))

    def ints(key: str, v: Any, n: int, minimum: int) -> tuple[int, ...]:
        if isinstance(v, int) and not isinstance(v, bool):
            v = (v,) * n
        if (not isinstance(v, (tuple, list)) or len(v) != n
                or any(not isinstance(x, int) or isinstance(x, bool) or x < minimum for x in v)):
            fail(key, f"{n} integer(s) >= {minimum}", v)
        return tuple(int(x) for x in v)

    if not isinstance(in_shape, (tuple, list)) or not 1 <= len(in_shape) <= 4:
        fail("in_shape", "(features,) or (channels, *spatial) with 1 to 3 spatial axes", in_shape)
    shape = ints("in_shape", in_shape, len(in_shape), 1)
    rank = len(shape) - 1
    if rank == 0 and kernel not in ((), []):
        fail("kernel", "no kernel for a linear layer", kernel)
    if rank == 0 and groups != 1:
        fail("groups", "1 for a linear layer", groups)
    k = ints("kernel", kernel, rank, 1) if rank else ()
    s = ints("stride", stride, rank, 1) if rank else ()
    p = ints("padding", padding, rank, 0) if rank else ()
    for key, v, lo in (("out_channels", out_channels, 1), ("groups", groups, 1), ("weight_bits", weight_bits, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            fail(key, f"an integer >= {lo}", v)
    if shape[0] % groups or out_channels % groups:
        fail("groups", f"a divisor of the input channels {shape[0]} and output channels {out_channels}", groups)
    geo = LayerGeometry(name, shape, out_channels, k, s, p, groups, weight_bits)
    if any(n < 1 for n in geo.out_spatial):
        fail("kernel", f"a kernel that fits the padded input {[shape[1 + i] + 2 * p[i] for i in range(rank)]}", k)
    return geo


@dataclass(frozen=True)
class Mapping:
    """A layer unrolled onto the macro's arrays.

    Per group: ``rows`` unrolled rows (kernel elements x C_in / groups, ordered channel then kernel
    axes) cut into ``row_tile_rows`` (rows of each row tile), and ``out_channels / groups`` weights
    of ``slot_cols`` columns cut into ``col_tile_weights`` (weights of each column tile). Tiles
    are ordered group, row tile, column tile."""

    geometry: LayerGeometry
    rows: int
    slot_cols: int
    conversions_per_weight: int
    row_tile_rows: tuple[int, ...]
    col_tile_weights: tuple[int, ...]
    positions: int

    @property
    def tiles(self) -> int:
        return self.geometry.groups * len(self.row_tile_rows) * len(self.col_tile_weights)

    def tile_list(self) -> list[tuple[int, int, int]]:
        """(group, row tile, column tile) of every tile, in mapping order."""
        return [(g, r, c) for g in range(self.geometry.groups) for r in range(len(self.row_tile_rows))
                for c in range(len(self.col_tile_weights))]


def map_layer(cfg: MacroConfig, geometry: LayerGeometry) -> Mapping:
    """Unroll ``geometry`` onto ``cfg``'s arrays (weight stationary).

    Rule: each group g is a matrix of ``rows = prod(kernel) x C_in / groups`` rows by
    ``C_out / groups`` weights; a weight takes a slot of ``weight_bits / bits_per_cell`` columns
    (``adc_share = combine``: the macro's fixed slot, ``cfg.weight_bits / bits_per_cell``, with
    the layer's bits in it). Row tiles hold ``cfg.rows`` rows, column tiles ``cfg.cols // slot``
    whole weights; tiles = groups x ceil(rows / R) x ceil(weights / per column tile). Every output
    position is one MVM on every tile. Refused (:class:`MappingError`): a layer weight wider than
    the macro's weight precision, layer weight bits not a multiple of the bits per cell, and more
    tiles than arrays unless ``allow_weight_reload``."""
    g = geometry
    where = f"layer '{g.name}'"
    if g.weight_bits > cfg.weight_bits:
        raise MappingError("the layer's weights are wider than the macro holds per weight", file=where,
                           key="weight_bits", expected=f"<= {cfg.weight_bits} (the macro's weight_bits)",
                           found=str(g.weight_bits), suggestion="quantise the layer or choose a wider macro")
    if g.weight_bits % cfg.bits_per_cell:
        raise MappingError("the layer's weight bits are not a multiple of the bits per cell", file=where,
                           key="weight_bits", expected=f"a multiple of bits_per_cell = {cfg.bits_per_cell}",
                           found=str(g.weight_bits))
    slot = cfg.macro_slot_cols if cfg.adc_share == "combine" else g.weight_bits // cfg.bits_per_cell
    rows = math.prod(g.kernel) * (g.in_shape[0] // g.groups)
    weights = g.out_channels // g.groups
    per_col_tile = cfg.cols // slot
    row_tiles = tuple(min(cfg.rows, rows - start) for start in range(0, rows, cfg.rows))
    col_tiles = tuple(min(per_col_tile, weights - start) for start in range(0, weights, per_col_tile))
    mapping = Mapping(g, rows, slot, slot if cfg.adc_share == "mux" else 1, row_tiles, col_tiles,
                      math.prod(g.out_spatial))
    if mapping.tiles > cfg.n_arrays and not cfg.allow_weight_reload:
        raise MappingError("the layer needs more arrays than the macro has and reloading is off", file=where,
                           key="n_arrays", expected=f">= {mapping.tiles} tiles ({g.groups} group(s) x "
                           f"{len(row_tiles)} row x {len(col_tiles)} column tiles)", found=str(cfg.n_arrays),
                           suggestion="raise n_arrays or set allow_weight_reload: true")
    return mapping


# ---------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------

def quantise_inputs(cfg: MacroConfig, geometry: LayerGeometry, inputs: Any) -> np.ndarray:
    """Inputs (samples, *in_shape) in [0, 1] as integer codes ``rint(x (2^b - 1))`` (int64).
    Raises :class:`WorkloadError` for a wrong shape, non-finite or out-of-range values."""
    x = np.asarray(inputs)
    where = f"layer '{geometry.name}'"
    if x.ndim != len(geometry.in_shape) + 1 or tuple(x.shape[1:]) != geometry.in_shape or x.shape[0] < 1:
        raise WorkloadError("inputs have the wrong shape", file=where, key="inputs",
                            expected=f"(samples, {', '.join(map(str, geometry.in_shape))})", found=str(x.shape))
    if x.dtype.kind not in "fiub":
        raise WorkloadError("inputs must be numbers", file=where, key="inputs", expected="a float array in [0, 1]",
                            found=str(x.dtype))
    x = x.astype(np.float64)
    finite = np.isfinite(x)
    if not np.all(finite):
        raise WorkloadError("inputs must be finite values in [0, 1]", file=where, key="inputs",
                            expected="finite numbers", found=f"{int((~finite).sum())} NaN or infinite value(s)")
    if x.min() < 0.0 or x.max() > 1.0:
        raise WorkloadError("inputs must be finite values in [0, 1]", file=where, key="inputs",
                            expected="0 <= x <= 1", found=f"min {x.min():g}, max {x.max():g}",
                            suggestion="scale the analog input to [0, 1] before the first layer")
    return np.rint(x * float(2**cfg.input_bits - 1)).astype(np.int64)


def _unrolled(codes: np.ndarray, g: LayerGeometry) -> np.ndarray:
    """(samples, positions, groups, rows): every MVM's input vector, rows ordered (c, kernel)."""
    s = codes.shape[0]
    if g.rank == 0:
        return codes.reshape(s, 1, 1, g.in_shape[0])
    pad = [(0, 0), (0, 0)] + [(p, p) for p in g.padding]
    x = np.pad(codes, pad)
    axes = tuple(range(2, 2 + g.rank))
    win = np.lib.stride_tricks.sliding_window_view(x, g.kernel, axis=axes)
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, st) for st in g.stride)]
    win = win[(slice(None), slice(None)) + tuple(slice(0, n) for n in g.out_spatial)]
    # (s, C, *out, *k) -> (s, *out, C, *k) -> (s, P, groups, C/groups * prod(k))
    win = np.moveaxis(win, 1, 1 + g.rank)
    return win.reshape(s, math.prod(g.out_spatial), g.groups, -1)


def _popcount(a: np.ndarray) -> np.ndarray:
    out = np.zeros_like(a)
    v = a.copy()
    while np.any(v):
        out += v & 1
        v >>= 1
    return out


def layer_counts(cfg: MacroConfig, mapping: Mapping, inputs: Any, time_steps: int) -> dict[str, np.ndarray]:
    """Per (sample, step) counters (int64, :data:`COUNTERS`) and energies (float64 pJ,
    ``e_<counter>_pj`` for every priced counter, ``energy_pj`` their sum, ``macro_energy_pj`` the
    macro's own actions) of ``mapping``'s layer on ``inputs`` (samples, *in_shape) in [0, 1].

    Cost is linear in samples x (positions x unrolled rows) plus samples x steps."""
    if not isinstance(time_steps, int) or isinstance(time_steps, bool) or time_steps < 1:
        raise WorkloadError("time steps must be a positive integer", key="time_steps", expected="an integer >= 1",
                            found=describe_value(time_steps))
    g = mapping.geometry
    codes = quantise_inputs(cfg, g, inputs)
    samples = codes.shape[0]
    # every MVM's input vector is only looked at to skip all-zero vectors or count input pulses
    looked_at = cfg.skip_zero_inputs or cfg.input_mode != "dac"
    if looked_at:
        unrolled = _unrolled(codes.astype(np.int32), g)  # (S, P, G, rows); codes < 2^16
    else:
        unrolled = np.zeros((samples, mapping.positions, g.groups, 0), np.int32)  # every MVM runs
    bit_serial = cfg.input_mode == "bit_serial"
    row_reads = cfg.input_bits if bit_serial else 1
    reads = cfg.reads_per_mvm
    starts = [sum(mapping.row_tile_rows[:i]) for i in range(len(mapping.row_tile_rows))]
    n_ct = len(mapping.col_tile_weights)
    weights_total = sum(mapping.col_tile_weights)
    used_cols = [w * mapping.slot_cols for w in mapping.col_tile_weights]
    conv_units = [c if cfg.adc_share == "mux" else w for c, w in zip(used_cols, mapping.col_tile_weights, strict=True)]

    per_pos = np.zeros((samples, g.groups, len(starts)), dtype=np.int64)  # active MVMs per row tile
    pulses = np.zeros(samples, dtype=np.int64)
    active_row_tiles = np.zeros((samples, mapping.positions, g.groups), dtype=np.int64)
    for rt, (start, n) in enumerate(zip(starts, mapping.row_tile_rows, strict=True)):
        block = unrolled[..., start:start + n]  # (S, P, G, n)
        active = np.any(block != 0, axis=-1) if cfg.skip_zero_inputs else np.ones(unrolled.shape[:3], dtype=bool)
        per_pos[:, :, rt] = active.sum(axis=1)
        active_row_tiles += active
        if cfg.input_mode == "pulse_count":
            pulses += block.sum(axis=(1, 2, 3), dtype=np.int64) * n_ct
        elif bit_serial:
            pulses += _popcount(block).sum(axis=(1, 2, 3), dtype=np.int64) * n_ct
    rows_arr = np.array(mapping.row_tile_rows, dtype=np.int64)
    mvm_rt = per_pos.sum(axis=1)  # (S, row tiles): active MVMs per row tile, summed over groups
    mvms = mvm_rt.sum(axis=1) * n_ct
    step0 = {
        "mvms": mvms,
        "array_reads": mvms * reads,
        "row_activations": (mvm_rt * rows_arr).sum(axis=1) * row_reads * n_ct,
        "input_pulses": pulses,
        "bitline_reads": mvm_rt.sum(axis=1) * sum(used_cols) * reads,
        "adc_conversions": mvm_rt.sum(axis=1) * sum(conv_units) * reads,
        "shift_adds": mvm_rt.sum(axis=1) * weights_total * (reads * mapping.conversions_per_weight - 1),
        "partial_sum_adds": np.maximum(active_row_tiles - 1, 0).sum(axis=(1, 2)) * weights_total,
    }
    tiles = mapping.tile_list()
    reload = mapping.tiles > cfg.n_arrays
    write_bits = sum(mapping.row_tile_rows[r] * used_cols[c] * cfg.bits_per_cell for _, r, c in tiles) if reload else 0
    step0["weight_write_bits"] = np.full(samples, write_bits, dtype=np.int64)
    step0["time_ps"] = _time_ps(cfg, mapping, per_pos, reload)

    out = {k: np.zeros((samples, time_steps), dtype=np.int64) for k in COUNTERS}
    outputs = g.out_channels * mapping.positions
    out["neuron_updates"][:] = outputs
    compute_steps = slice(None) if cfg.recompute_per_step else slice(0, 1)
    for k, v in step0.items():
        out[k][:, compute_steps] = v[:, None]
    if not cfg.recompute_per_step:
        out["current_writes"][:, 0] = outputs
        out["current_reads"][:, 1:] = outputs
    return _with_energies(cfg, out)


def _time_ps(cfg: MacroConfig, mapping: Mapping, per_pos: np.ndarray, reload: bool) -> np.ndarray:
    """Macro time of one computing step per sample, exact, rounded up to whole ps once."""
    t_mvm = cfg.t_mvm_ps
    n_ct = len(mapping.col_tile_weights)
    tiles = mapping.tile_list()
    t_row = exact(cfg.t_write_row_ns) * 1000
    # samples with the same active MVMs per (group, row tile) take the same time: each distinct
    # pattern is timed once (without zero-skipping every sample has the same)
    flat = per_pos.reshape(per_pos.shape[0], -1)
    patterns, which = np.unique(flat, axis=0, return_inverse=True)
    per_pattern = np.zeros(patterns.shape[0], dtype=np.int64)
    for u in range(patterns.shape[0]):
        per_pattern[u] = _pattern_time_ps(cfg, mapping, patterns[u].reshape(per_pos.shape[1:]), reload, tiles,
                                          t_mvm, t_row, n_ct)
    return per_pattern[np.asarray(which).reshape(-1)]


def _pattern_time_ps(cfg: MacroConfig, mapping: Mapping, pos: np.ndarray, reload: bool, tiles: list, t_mvm: Fraction,
                     t_row: Fraction, n_ct: int) -> int:
    """One step's macro time for one pattern of active MVMs per (group, row tile), exact."""
    if not reload:
        total = -(-(int(pos.sum()) * n_ct) // cfg.n_arrays) * t_mvm  # whole rounds of the arrays
    else:
        total = Fraction(0)
        for first in range(0, len(tiles), cfg.n_arrays):
            batch = tiles[first:first + cfg.n_arrays]
            rows_max = max(mapping.row_tile_rows[r] for _, r, _ in batch)
            active = sum(int(pos[gi, r]) for gi, r, _ in batch)
            total += rows_max * t_row + -(-active // cfg.n_arrays) * t_mvm
    ps = math.ceil(total)
    if ps > np.iinfo(np.int64).max:
        raise MappingError("the layer's macro time per step overflows the time range", key="time_ps",
                           expected="< 2^63 ps", found=str(ps))
    return ps


def _with_energies(cfg: MacroConfig, counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = dict(counts)
    total = np.zeros(counts["mvms"].shape, dtype=np.float64)
    macro = np.zeros_like(total)
    for counter, key in PRICED.items():
        e = counts[counter].astype(np.float64) * getattr(cfg, key)
        out[f"e_{counter}_pj"] = e
        total = total + e
        if counter in MACRO_ACTIONS:
            macro = macro + e
    out["energy_pj"] = total
    out["macro_energy_pj"] = macro
    return out


# ---------------------------------------------------------------------------------------------
# the macro's own figures
# ---------------------------------------------------------------------------------------------

def macro_figures(cfg: MacroConfig, input_value: float = 1.0) -> dict[str, float]:
    """Peak throughput and energy efficiency of the macro, from its parameters.

    Computed by the layer rules on the layer that fills one array exactly: a linear layer of
    ``rows`` inputs and ``cols // slot`` outputs at the macro's weight precision, every input at
    ``input_value`` (1.0: full scale, the most pulses). MACs per MVM = rows x weights per row; one
    MAC = 2 ops; the energy is the macro's own actions (bit lines, ADC, rows, pulses, shift-adds).
    GOPS counts all ``n_arrays`` arrays working in parallel."""
    one = MacroConfig(**{**asdict(cfg), "n_arrays": 1, "skip_zero_inputs": False, "recompute_per_step": True,
                         "allow_weight_reload": False})
    weights = cfg.cols // cfg.macro_slot_cols
    geo = layer_geometry("macro_figures", (cfg.rows,), weights, weight_bits=cfg.weight_bits)
    mapping = map_layer(one, geo)
    counts = layer_counts(one, mapping, np.full((1, cfg.rows), float(input_value)), 1)
    macs = cfg.rows * weights
    t_ps = float(one.t_mvm_ps)
    e_pj = float(counts["macro_energy_pj"][0, 0])
    return {
        "macs_per_mvm": float(macs),
        "t_mvm_ns": t_ps / 1000.0,
        "energy_per_mvm_pj": e_pj,
        "gops": cfg.n_arrays * 2.0 * macs / t_ps * 1000.0,
        "tops_per_w": 2.0 * macs / e_pj if e_pj > 0 else math.inf,
        "fj_per_mac": 1000.0 * e_pj / macs,
    }


__all__ = ["ADC_SHARES", "COUNTERS", "INPUT_MODES", "LayerGeometry", "MacroConfig", "Mapping", "field_docs",
           "layer_counts", "layer_geometry", "macro_config", "macro_figures", "map_layer", "preset", "preset_names",
           "published_figures", "quantise_inputs"]
# keep the dataclass and the key table in step
assert [f.name for f in fields(MacroConfig)][:-1] == list(_FIELDS), "MacroConfig fields and _FIELDS differ"

