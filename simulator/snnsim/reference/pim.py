"""Reference count of a layer on an SRAM CIM macro, one MVM, one row, one column, one conversion
at a time (the rules of :mod:`snnsim.hw.pim`, re-derived without numpy's vector arithmetic).

For every sample, group, output position and tile, the input vector is gathered element by
element from the (zero-padded) input; the MVM is skipped only when ``skip_zero_inputs`` is on and
every element is zero; each read of the schedule (row group, input bit) drives its rows, reads its
columns and converts them one conversion at a time; each weight's conversions are shift-added one
by one; partial sums of the row tiles are added output by output. Time is summed in exact
fractions of ps and rounded up once per step. Slow on purpose: meant for small layers in tests.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

from ..hw.pim import COUNTERS, MACRO_ACTIONS, PRICED, MacroConfig, Mapping


def _code(x: float, bits: int) -> int:
    """An input in [0, 1] as its integer code: round half to even of x (2^b - 1)."""
    return round(float(x) * float(2**bits - 1))


def _input_at(sample: np.ndarray, geo, channel: int, position: tuple[int, ...], offset: tuple[int, ...],
              bits: int) -> int:
    """The code feeding kernel ``offset`` at output ``position`` (0 in the padding)."""
    index = [channel]
    for axis in range(geo.rank):
        i = position[axis] * geo.stride[axis] + offset[axis] - geo.padding[axis]
        if i < 0 or i >= geo.in_shape[1 + axis]:
            return 0
        index.append(i)
    return _code(sample[tuple(index)], bits)


def _positions(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for n in shape:
        out = [p + (i,) for p in out for i in range(n)]
    return out


def _input_vector(sample: np.ndarray, geo, group: int, position: tuple[int, ...], bits: int) -> list[int]:
    """The unrolled rows of one group at one output position, ordered (channel, kernel axes)."""
    if geo.rank == 0:
        return [_code(sample[i], bits) for i in range(geo.in_shape[0])]
    per_group = geo.in_shape[0] // geo.groups
    vec = []
    for c in range(per_group):
        for offset in _positions(geo.kernel):
            vec.append(_input_at(sample, geo, group * per_group + c, position, offset, bits))
    return vec


def _set_bits(code: int) -> int:
    count = 0
    while code:
        count += code & 1
        code >>= 1
    return count


def layer_counts_reference(cfg: MacroConfig, mapping: Mapping, inputs: Any, time_steps: int) -> dict[str, np.ndarray]:
    """Same keys and values as :func:`snnsim.hw.pim.layer_counts`, counted one item at a time."""
    geo = mapping.geometry
    x = np.asarray(inputs, dtype=np.float64)
    samples = x.shape[0]
    out = {k: np.zeros((samples, time_steps), dtype=np.int64) for k in COUNTERS}
    n_rt, n_ct = len(mapping.row_tile_rows), len(mapping.col_tile_weights)
    tiles = [(g, r, c) for g in range(geo.groups) for r in range(n_rt) for c in range(n_ct)]
    reload = len(tiles) > cfg.n_arrays
    bit_serial = cfg.input_mode == "bit_serial"
    positions = _positions(geo.out_spatial)
    outputs = geo.out_channels * len(positions)
    t_sense = Fraction(repr(float(cfg.t_sense_ns))) * 1000
    t_row = Fraction(repr(float(cfg.t_write_row_ns))) * 1000
    for s in range(samples):
        c = dict.fromkeys(COUNTERS, 0)
        active = {}  # (group, row tile, position) -> the MVM runs
        for g in range(geo.groups):
            for p in positions:
                vec = _input_vector(x[s], geo, g, p, cfg.input_bits)
                start = 0
                for rt in range(n_rt):
                    rows = vec[start:start + mapping.row_tile_rows[rt]]
                    start += mapping.row_tile_rows[rt]
                    runs = not cfg.skip_zero_inputs or any(v != 0 for v in rows)
                    active[(g, rt, p)] = runs
                    if not runs:
                        continue
                    for ct in range(n_ct):
                        weights = mapping.col_tile_weights[ct]
                        columns = weights * mapping.slot_cols
                        c["mvms"] += 1
                        for _group in range(cfg.row_groups):
                            for _bit in range(cfg.input_bits if bit_serial else 1):
                                c["array_reads"] += 1
                                for _col in range(columns):
                                    c["bitline_reads"] += 1
                                if cfg.adc_share == "mux":
                                    for _col in range(columns):
                                        c["adc_conversions"] += 1
                                else:
                                    for _w in range(weights):
                                        c["adc_conversions"] += 1
                        for _row in rows:
                            for _bit in range(cfg.input_bits if bit_serial else 1):
                                c["row_activations"] += 1
                        for v in rows:
                            if cfg.input_mode == "pulse_count":
                                for _pulse in range(v):
                                    c["input_pulses"] += 1
                            elif bit_serial:
                                c["input_pulses"] += _set_bits(v)
                        for _w in range(weights):
                            partial_values = cfg.reads_per_mvm * (mapping.slot_cols if cfg.adc_share == "mux" else 1)
                            for _add in range(partial_values - 1):
                                c["shift_adds"] += 1
                # digital adds of the row tiles' partial sums, output channel by output channel
                for ct in range(n_ct):
                    for _w in range(mapping.col_tile_weights[ct]):
                        running = 0
                        for rt in range(n_rt):
                            if active[(g, rt, p)]:
                                running += 1
                                if running > 1:
                                    c["partial_sum_adds"] += 1
        # time: the MVM schedule of one MVM, exact
        t_mvm = Fraction(0)
        for _group in range(cfg.row_groups):
            for _bit in range(cfg.input_bits if bit_serial else 1):
                for _slot in range(cfg.cols_per_adc if cfg.adc_share == "mux" else 1):
                    t_mvm += t_sense
        total = Fraction(0)
        if reload:
            for first in range(0, len(tiles), cfg.n_arrays):
                batch = tiles[first:first + cfg.n_arrays]
                total += max(mapping.row_tile_rows[r] for _, r, _ in batch) * t_row
                mvms = sum(1 for g, r, _ in batch for p in positions if active[(g, r, p)])
                total += -(-mvms // cfg.n_arrays) * t_mvm
                for _, r, ct in batch:
                    c["weight_write_bits"] += (mapping.row_tile_rows[r] * mapping.col_tile_weights[ct]
                                               * mapping.slot_cols * cfg.bits_per_cell)
        else:
            total = -(-c["mvms"] // cfg.n_arrays) * t_mvm
        c["time_ps"] = math.ceil(total)
        for step in range(time_steps):
            computes = cfg.recompute_per_step or step == 0
            for k in COUNTERS:
                if k in ("neuron_updates", "current_writes", "current_reads"):
                    continue
                out[k][s, step] = c[k] if computes else 0
            out["neuron_updates"][s, step] = outputs
            if not cfg.recompute_per_step:
                out["current_writes"][s, step] = outputs if step == 0 else 0
                out["current_reads"][s, step] = outputs if step > 0 else 0
    total_e = np.zeros((samples, time_steps))
    macro_e = np.zeros((samples, time_steps))
    for counter, key in PRICED.items():
        e = np.zeros((samples, time_steps))
        for s in range(samples):
            for step in range(time_steps):
                e[s, step] = float(out[counter][s, step]) * getattr(cfg, key)
        out[f"e_{counter}_pj"] = e
        total_e = total_e + e
        if counter in MACRO_ACTIONS:
            macro_e = macro_e + e
    out["energy_pj"] = total_e
    out["macro_energy_pj"] = macro_e
    return out
