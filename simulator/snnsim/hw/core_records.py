"""The core's records: every counter of :mod:`.core` and its energy per action, per (sample,
layer, step), through the technology table (the core owns its records and energy)."""

from __future__ import annotations

import numpy as np

from ..errors import MappingError
from ..report.report import RecordBlock
from .core import COUNTERS as CORE_COUNTERS


def core_energy(hw, c: dict[str, np.ndarray]) -> dict[str, tuple[str, str, np.ndarray]]:
    """Energy per action of the core and its DRAM: action -> (component, table entry, pJ per
    (sample, layer, step)), from the action counts."""
    t = hw.energy
    reads = c["weight_read_bits"] + c["membrane_read_bits"] + c["spike_read_bits"] + c["input_buffer_read_bits"]
    writes = c["membrane_write_bits"] + c["spike_write_bits"] + c["weight_load_bits"]
    bit_serial = hw["core"]["encoding_mode"] == "bit_serial"
    return {
        "accumulate": ("core", "core.ac", c["synaptic_ops"] * t.pj("core.ac")),
        # a bit-serial MAC is input_bits shift-adds; a multiplier MAC is one core.mac
        "mac": ("core", "core.ac" if bit_serial else "core.mac",
                c["shift_adds"] * t.pj("core.ac") if bit_serial else c["macs"] * t.pj("core.mac")),
        "compare": ("core", "core.compare", c["compares"] * t.pj("core.compare")),
        "sram_read": ("core", "core.sram_read_bit", reads * t.pj("core.sram_read_bit")),
        "sram_write": ("core", "core.sram_write_bit", writes * t.pj("core.sram_write_bit")),
        "line_buffer": ("core", "core.line_buffer_bit", c["line_buffer_bits"] * t.pj("core.line_buffer_bit")),
        "transfer": ("dram", "dram.bit", (c["dram_read_bits"] + c["dram_write_bits"]) * t.pj("dram.bit")),
    }


def core_records(hw, layer_names: list[str], counters: dict[str, np.ndarray]) -> list[RecordBlock]:
    """Every core counter and energy per (sample, layer, step), as one block of records."""
    energy = core_energy(hw, counters)
    units = {k: ("bit" if k.endswith("_bits") else "count") for k in CORE_COUNTERS}
    metrics = [(k, units[k], "core", counters[k]) for k in CORE_COUNTERS]
    metrics += [(f"energy.{a}", "pJ", comp, arr) for a, (comp, _e, arr) in energy.items()]
    biggest = max((int(counters[k].max(initial=0)) for k in CORE_COUNTERS), default=0)
    if biggest >= 2**53:  # past 2^53 a float64 record would round the count
        raise MappingError("the core's counts are too large to report exactly", file=hw.source, key="core",
                           expected="counts below 2^53 per (sample, layer, step)", found=f"{biggest:.4g}",
                           suggestion="simulate fewer samples or steps")
    values = np.stack([m[3] for m in metrics], axis=-1, dtype=np.float64)
    return [RecordBlock(layers=list(layer_names), metrics=[m[0] for m in metrics],
                        components=[m[2] for m in metrics], units=[m[1] for m in metrics], values=values)]
