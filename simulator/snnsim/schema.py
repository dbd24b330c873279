"""The hwconfig schema: every key a hardware YAML may hold, with type, range, unit and meaning.

Fields register themselves with a default, a validator and a docstring (Brian2's preferences
idea), so the same table validates files, applies ``--set`` overrides, fills defaults, and is
exported as JSON Schema (``snnsim schema``) for editors. Units live in key names.

Every number has a physically sane range, so that no single key can push a run past what its
arithmetic holds: time is integer picoseconds in int64 (at most ~9.22e18 ps, about 106 days), so
durations are at most 1 s (``*_ns`` <= 1e9), the frame period at most 100 s, clocks between 1 kHz
and 1 THz (one cycle between 1e9 ps and 1 ps); capacities at most 2^30 KiB (2^43 bits, an int64);
counts at most a few orders of magnitude above any chip built; energies finite, 0..1e9 pJ (or mW),
so that a run's float sums stay finite. Whether a whole run's time fits is checked by the
simulation, not here.
"""

from __future__ import annotations

from typing import Any

from .fields import Field, Section, format_bound

# The ranges of the module docstring, in the units of the keys that use them.
MAX_DURATION_NS = 1e9  # 1 s: 1e12 ps per duration, room for ~1e7 of them in int64 ps
MAX_FRAME_PERIOD_US = 1e8  # 100 s between frames
MIN_CLOCK_MHZ = 1e-3  # 1 kHz: one cycle = 1e9 ps
MAX_CLOCK_MHZ = 1e6  # 1 THz: one cycle = 1 ps, the time resolution
MAX_CAPACITY_KIB = float(2**30)  # 1 TiB = 2^43 bits
MIN_DRAM_GBYTES_PER_S = 1e-3
MAX_DRAM_GBYTES_PER_S = 1e5  # 100 TB/s, ~100x the fastest HBM stack
MAX_ENERGY = 1e9  # pJ per action (1 mJ) or mW of static power (1 kW)
MAX_PIXELS_PER_SIDE = 100_000  # the largest image sensors have ~20,000 pixels per side
MAX_CHANNELS = 4096
MAX_FIFO_ENTRIES = 1_000_000


def _pos_int(default: int, doc: str, maximum: int) -> Field:
    return Field("int", default, doc, minimum=1, maximum=maximum)


def _duration_ns(default: float, doc: str) -> Field:
    return Field("float", default, doc, minimum=0.0, maximum=MAX_DURATION_NS)


def _clock_mhz(default: float, doc: str) -> Field:
    return Field("float", default, doc, minimum=MIN_CLOCK_MHZ, maximum=MAX_CLOCK_MHZ)


def _capacity_kib(default: float, doc: str) -> Field:
    return Field("float", default, doc, minimum=0.0, exclusive_minimum=True, maximum=MAX_CAPACITY_KIB)


SENSOR = Section(
    "The image sensor: a conventional CMOS readout or a P2M pixel array computing layer 0 in the pixels.",
    {
        "kind": Field("str", "p2m", "conventional (Bayer CIS, raw readout) or p2m (processing-in-pixel first layer)",
                      choices=("conventional", "p2m")),
        "pixel_rows": _pos_int(224, "RGB pixel rows of the array (each RGB pixel is a 2x2 RGGB quad of photodiodes)",
                               maximum=MAX_PIXELS_PER_SIDE),
        "pixel_cols": _pos_int(224, "RGB pixel columns of the array", maximum=MAX_PIXELS_PER_SIDE),
        "photodiodes_per_pixel": _pos_int(4, "photodiodes per RGB pixel: 4 for a Bayer RGGB quad", maximum=16),
        "adc_bits": _pos_int(12, "conventional readout: bits per conversion of the column single-slope ADC", maximum=16),
        "adc_counter_clock_mhz": _clock_mhz(2000.0, "single-slope ADC counter clock (one ramp = 2^bits counts)"),
        "cds_ramps": _pos_int(2, "ramps per conventional conversion: 2 with digital CDS (reset + signal)", maximum=4),
        "row_overhead_ns": _duration_ns(1000.0, "per row read: row select, reset and sample settling before the ramps"),
        "frame_period_us": Field("float", 0.0, "time between frame starts; 0 = free-running, next frame as soon as the sensor can",
                                 minimum=0.0, maximum=MAX_FRAME_PERIOD_US),
        "line_buffer_lines": _pos_int(2, "lines the sensor can hold for the link (FIFO depth, in line packets)",
                                      maximum=MAX_PIXELS_PER_SIDE),
        "p2m": Section(
            "The processing-in-pixel first layer (used when kind = p2m).",
            {
                "kernel": _pos_int(4, "in-pixel convolution kernel size, in RGB pixels", maximum=256),
                "stride": _pos_int(4, "in-pixel convolution stride, in RGB pixels", maximum=256),
                "out_channels": _pos_int(64, "output channels C_o computed in the pixel array", maximum=MAX_CHANNELS),
                "weight_bits": _pos_int(4, "bits of each in-pixel weight (transistor widths)", maximum=16),
                "adc_bits": _pos_int(8, "bits of the ramp that digitises a window's weighted sum", maximum=16),
                "ramps_per_conversion": _pos_int(2, "ramps per conversion: 2 for signed weights (up-count positive, down-count negative)", maximum=4),
                "adcs_per_output_column": _pos_int(1, "column ADCs serving one output column (they split the channels)",
                                                   maximum=MAX_CHANNELS),
                "row_overhead_ns": _duration_ns(1000.0, "per output row: activating the kernel's photodiode rows and settling"),
            },
            required=False,
        ),
    },
    required=False,  # required when mapping.input is sensor (hwconfig.py)
)

LINK = Section(
    "MIPI CSI-2 over D-PHY between sensor and processor.",
    {
        "lanes": _pos_int(2, "D-PHY data lanes", maximum=8),
        "gbps_per_lane": Field("float", 1.5, "HS bit rate per lane (D-PHY v1.2: 0.08-2.5)", minimum=0.08, maximum=10.0),
        "encoding": Field("str", "bitmap", "payload of spike rows: bitmap (1 bit per neuron of the row) or aer (one address per spike); conventional sensors always send raw",
                          choices=("bitmap", "aer")),
        "raw_bits": _pos_int(12, "bits per raw sample of a conventional readout (RAW12)", maximum=16),
        "virtual_channel_bits": Field("int", 2, "bits of the virtual channel field (2 in CSI-2 v1, 4 with the v2 extension)", minimum=0, maximum=4),
        "line_blanking_ns": _duration_ns(0.0, "forced idle between line packets (HBLANK)"),
        "frame_blanking_ns": _duration_ns(0.0, "forced idle after the frame end packet (VBLANK)"),
        "continuous_clock": Field("bool", True, "clock lane stays in HS between bursts (saves the clock lane's own SoT/EoT per burst)"),
        "t_lpx_ns": _duration_ns(50.0, "D-PHY T_LPX (spec >= 50 ns)"),
        "t_hs_prepare_zero_ns": _duration_ns(145.0, "T_HS-PREPARE + T_HS-ZERO, fixed part (spec >= 145 ns + 10 UI)"),
        "t_hs_trail_ns": _duration_ns(60.0, "T_HS-TRAIL, fixed part (spec >= max(8 UI, 60 ns + 4 UI))"),
        "t_hs_exit_ns": _duration_ns(100.0, "T_HS-EXIT (spec >= 100 ns)"),
        "t_clk_overhead_ns": _duration_ns(520.0, "extra per burst with a non-continuous clock: T_LPX + clock prepare/zero + post + trail + exit"),
        "output_fifo_packets": _pos_int(4, "packets the processor's input buffer holds", maximum=MAX_FIFO_ENTRIES),
    },
    required=False,  # required when mapping.input is sensor (hwconfig.py)
)

FRAMES = Section(
    "Stored frames read from DRAM line by line (used when mapping.input = dram; docs/components.md).",
    {
        "bits_per_value": _pos_int(8, "bits of each stored input value (the frame quantised to unsigned integers)",
                                   maximum=32),
        "line_overhead_ns": _duration_ns(0.0, "per line read: row activation and request latency, on top of the "
                                         "line's bits at dram.bandwidth_gbytes_per_s"),
        "frame_period_us": Field("float", 0.0, "time between frame starts; 0 = free-running, next frame as soon as "
                                 "the reader can", minimum=0.0, maximum=MAX_FRAME_PERIOD_US),
        "input_buffer_lines": _pos_int(2, "lines of the frame the next unit's input buffer holds",
                                       maximum=MAX_FIFO_ENTRIES),
    },
    required=False,
)

CORE = Section(
    "The SNN core that runs the layers after the sensor, event by event (mapping.target = core).",
    {
        "clock_mhz": _clock_mhz(500.0, "core clock"),
        "vector_width": _pos_int(32, "PEs: output channels updated together by one vector operation", maximum=4096),
        "membrane_bits": _pos_int(16, "bits of each stored membrane potential", maximum=32),
        "weight_bits": _pos_int(1, "bits per weight in the weight SRAM (1 = binary weights)", maximum=16),
        "spike_bits": _pos_int(1, "bits per neuron of a stored spike map (read by the next layer, written by the fire pass)", maximum=8),
        "pipeline_depth": Field("int", 3, "cycles to fill the PE pipeline at the start of a layer pass", minimum=0, maximum=64),
        "input_bits": _pos_int(8, "bits of each analog input value as the encoding layer reads it (pixels quantised to unsigned integers)", maximum=16),
        "encoding_mode": Field("str", "bit_serial", "encoding-layer MACs: bit_serial (shift-add, input_bits cycles per vector op) or multiplier (one cycle)",
                               choices=("bit_serial", "multiplier")),
        "encoding_per_step": Field("bool", False, "a direct-encoded first layer on the core recomputes its MACs at every time step (the same frame each step) instead of computing them once and reusing the currents"),
        "dataflow": Field("str", "scatter", "scatter: each spike's vector ops read-modify-write membranes in the membrane SRAM; gather: partial sums stay in PE registers and reach the membrane SRAM once per neuron and step, in the fire pass",
                          choices=("scatter", "gather")),
        "loop_order": Field("str", "time_inner", "time_inner: layers outer, time steps inside each layer; time_outer: every layer once per step",
                            choices=("time_inner", "time_outer")),
        "fusion": Field("str", "none", "none, or two_layer: pairs of layers pipelined through a line buffer, the first's spikes never stored",
                        choices=("none", "two_layer")),
        "weight_sram_kib": _capacity_kib(64.0, "weight buffer capacity"),
        "membrane_sram_kib": _capacity_kib(128.0, "membrane buffer capacity"),
        "spike_sram_kib": _capacity_kib(64.0, "global spike-map buffer capacity (layer inputs and outputs)"),
        "line_buffer_kib": _capacity_kib(16.0, "line buffer between two fused layers"),
    },
    required=False,  # required when mapping.target is core (hwconfig.py)
)

DRAM = Section(
    "Off-chip memory for what the on-chip buffers cannot hold.",
    {
        "bandwidth_gbytes_per_s": Field("float", 12.8, "sustained DRAM bandwidth (LPDDR4-3200 x16: 6.4 GB/s per channel; 2 channels)",
                                        minimum=MIN_DRAM_GBYTES_PER_S, maximum=MAX_DRAM_GBYTES_PER_S),
        "double_buffered": Field("bool", True, "transfers overlap compute (a pass takes the longer of the two) instead of adding to it"),
    },
    required=False,
)

ENERGY_OVERRIDE = Field("float", None, "energy (pJ per action) or static power (mW), in the unit of the table's entry",
                        minimum=0.0, maximum=MAX_ENERGY)

TECHNOLOGY = Section(
    "Per-action energies: a named table shipped with snnsim, and inline overrides (entry name -> value).",
    {
        "table": Field("str", "p2m_paper", "name of the technology table (see `snnsim info --tech`)"),
        "overrides": Section("entry name -> energy (pJ) or power (mW), replacing the table's value", {},
                             required=False, open_keys=True, values=ENERGY_OVERRIDE),
    },
    required=False,
)

HWCONFIG = Section(
    "An snnsim hardware configuration.",
    {
        "name": Field("str", "unnamed", "short name used in reports"),
        "description": Field("str", "", "free text"),
        "sensor": SENSOR,
        "link": LINK,
        "frames": FRAMES,
        "core": CORE,
        "dram": DRAM,
        "technology": TECHNOLOGY,
    },
)


def iter_fields(section: Section, prefix: str = ""):
    """Yield (dotted path, Field) for every scalar field of ``section``."""
    for key, item in section.fields.items():
        path = f"{prefix}{key}"
        if isinstance(item, Section):
            yield from iter_fields(item, path + ".")
        else:
            yield path, item


def _field_json(f: Field) -> dict[str, Any]:
    jtype = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}[f.type]
    out: dict[str, Any] = {"type": [jtype, "null"] if f.nullable else jtype, "description": f.doc,
                           "default": f.default}
    if f.minimum is not None:
        out["exclusiveMinimum" if f.exclusive_minimum else "minimum"] = f.minimum
    if f.maximum is not None:
        out["maximum"] = f.maximum
    if f.choices:
        out["enum"] = list(f.choices)
    return out


def json_schema(section: Section = HWCONFIG, top: bool = True) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a section, with every field's doc and default."""
    if section.open_keys:
        values: dict[str, Any] = {"type": "number"}
        if section.values is not None:
            values = _field_json(section.values)
            values.pop("default")
        return {"type": "object", "description": section.doc, "additionalProperties": values}
    props = {}
    required = []
    for key, item in section.fields.items():
        if isinstance(item, Section):
            props[key] = json_schema(item, top=False)
            if item.required:
                required.append(key)
        else:
            props[key] = _field_json(item)
    out: dict[str, Any] = {"type": "object", "description": section.doc, "properties": props,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    if top:
        out = {"$schema": "https://json-schema.org/draft/2020-12/schema",
               "$id": "https://snnsim.dev/schema/hwconfig-1.json", "title": "snnsim hwconfig", **out}
    return out


def markdown_reference(section: Section = HWCONFIG) -> str:
    """Every hwconfig key as a Markdown table (the docs are generated from the registrations)."""
    lines = ["# hwconfig reference", "", "Generated by `snnsim schema --markdown` from the schema itself.", "",
             "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for path, f in iter_fields(section):
        allowed = ", ".join(f.choices) if f.choices else ""
        if f.minimum is not None or f.maximum is not None:
            allowed = _bounds_text(f)
        lines.append(f"| `{path}` | {f.type} | `{f.default}` | {allowed} | {f.doc} |")
    lines += ["", "`technology.overrides` maps energy-table entry names (see `snnsim info --tech TABLE`) to values"
              f" ({ENERGY_OVERRIDE.doc}; {_bounds_text(ENERGY_OVERRIDE)}).", "",
              "Every number has a physically sane range (the allowed column) so that no single value can overflow"
              " time, which is integer picoseconds in int64 (at most ~106 days), or make an energy infinite:"
              f" durations at most {format_bound(MAX_DURATION_NS)} ns (1 s), the frame period at most"
              f" {format_bound(MAX_FRAME_PERIOD_US)} us, clocks {format_bound(MIN_CLOCK_MHZ)} to"
              f" {format_bound(MAX_CLOCK_MHZ)} MHz (a cycle of 1e9 ps down to 1 ps), capacities at most 2^30 KiB."
              " Whether a whole run fits is checked when it is simulated.", ""]
    return "\n".join(lines)


def _bounds_text(f: Field) -> str:
    integer = f.type == "int"
    lo = "" if f.minimum is None else f"{'>' if f.exclusive_minimum else '>='} {format_bound(f.minimum, integer)}"
    hi = "" if f.maximum is None else f"<= {format_bound(f.maximum, integer)}"
    return " and ".join(x for x in (lo, hi) if x)


def _unit_sections() -> None:
    """The ``pim``, ``loihi``, ``ncs2`` and ``mapping`` sections: each unit's keys are defined once,
    by its model (:mod:`snnsim.hw.pim`, :mod:`snnsim.hw.loihi_params`, :mod:`snnsim.hw.ncs2`),
    which itself uses this module's fields; so they join the schema last."""
    from dataclasses import replace

    from .hw.loihi_params import SECTION as LOIHI
    from .hw.ncs2 import SECTION as NCS2
    from .hw.pim import _FIELDS as MACRO_FIELDS
    from .hw.pim import preset_names

    overrides = {k: replace(f, default=None, nullable=True, doc=f"{f.doc} (default: the preset's)")
                 for k, f in MACRO_FIELDS.items() if k != "name"}
    HWCONFIG.fields["pim"] = Section(
        "An SRAM compute-in-memory macro running the layers mapping.pim gives it (docs/pim.md): a published "
        "preset, and any of its parameters overridden.",
        {"preset": Field("str", "wang22_8b", "the macro preset (snnsim/tech/pim/macros.yaml)",
                         choices=tuple(preset_names())),
         "output_buffer_rows": _pos_int(2, "output rows of spikes (T packets each) the buffer between the macro "
                                        "and the core holds", maximum=MAX_FIFO_ENTRIES),
         **overrides},
        required=False)
    HWCONFIG.fields["loihi"] = LOIHI
    HWCONFIG.fields["ncs2"] = NCS2
    HWCONFIG.fields["mapping"] = Section(
        "Which unit runs which layers (the processor runs every layer no other unit takes).",
        {"target": Field("str", "core", "the processor: core (the event-driven SNN core, after a sensor or stored "
                         "frames), loihi (a Loihi-class many-core neuromorphic chip: the loihi section) or ncs2 "
                         "(an NCS2 / Myriad X-class dense DNN accelerator running the equivalent non-spiking "
                         "network: the ncs2 section)", choices=TARGETS),
         "input": Field("str", "sensor", "where frames enter the chip: sensor (the image sensor, then the CSI-2 "
                        "link), dram (stored frames read from DRAM: the frames section) or host (a host computer "
                        "sends each frame over the target's I/O; the input of targets loihi and ncs2)",
                        choices=("sensor", "dram", "host")),
         "pim": Field("str", "", "layers the PIM macro runs, by name or index, comma-separated: the first layer, "
                      "reading the frame (empty: no PIM macro)")},
        required=False)


#: the processors mapping.target names, and the sections only one of them reads
TARGETS = ("core", "loihi", "ncs2")
TARGET_SECTIONS = {"core": ("core", "dram", "pim"), "loihi": ("loihi",), "ncs2": ("ncs2",)}

_unit_sections()
