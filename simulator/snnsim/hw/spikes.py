"""Reading bit-packed spike maps event by event (Numba kernels).

A spike map is packed MSB-first over neurons in channels-first order, so neuron ``n`` sits at
spatial position ``n % plane`` and spatial row ``(n % plane) // width``. The kernels skip zero
bytes and decode set bits through a byte table, so their cost follows the number of spikes.
"""

from __future__ import annotations

import numpy as np

from ..engine.jit import njit


def _bit_table() -> tuple[np.ndarray, np.ndarray]:
    """For every byte value: how many bits are set, and their MSB-first positions."""
    count = np.zeros(256, np.int64)
    where = np.zeros((256, 8), np.int64)
    for b in range(256):
        for bit in range(8):
            if b & (0x80 >> bit):
                where[b, count[b]] = bit
                count[b] += 1
    return count, where


_COUNT, _WHERE = _bit_table()


@njit(cache=True)
def _row_work_words(words, n_neurons, plane, row_of, taps, n_rows, count, where):
    s_n, t_n, n_words = words.shape
    spikes = np.zeros((s_n, t_n, n_rows), np.int64)
    work = np.zeros((s_n, t_n, n_rows), np.int64)
    for s in range(s_n):
        for t in range(t_n):
            pos0 = 0  # spatial position of the current word's first neuron, kept without division
            for wi in range(n_words):
                word = words[s, t, wi]
                if word != 0:
                    _scan_word(word, wi * 64, pos0, n_neurons, plane, row_of, taps, count, where,
                               spikes[s, t], work[s, t])
                pos0 += 64
                while pos0 >= plane:
                    pos0 -= plane
    return spikes, work


@njit(cache=True, inline="always")
def _scan_word(word, base, pos0, n_neurons, plane, row_of, taps, count, where, spikes, work):
    byte_i = 0
    while word != 0:  # stops after the last non-zero byte
        # the bytes of a little-endian word hold neurons base + 8 * byte_i ...
        byte = np.int64(word & np.uint64(0xFF))
        word = word >> np.uint64(8)
        byte_i += 1
        if byte == 0:
            continue
        for j in range(count[byte]):
            k = (byte_i - 1) * 8 + where[byte, j]
            if base + k >= n_neurons:
                return
            pos = pos0 + k
            while pos >= plane:
                pos -= plane
            row = row_of[pos]
            spikes[row] += 1
            work[row] += taps[pos]


_ROW_TABLES: dict[tuple[int, int], np.ndarray] = {}


def _row_table(plane: int, width: int) -> np.ndarray:
    """Spatial row of every position (cached: the same few geometries recur)."""
    key = (plane, width)
    if key not in _ROW_TABLES:
        _ROW_TABLES[key] = np.arange(plane, dtype=np.int64) // width
    return _ROW_TABLES[key]


def row_work(packed: np.ndarray, n_neurons: int, plane: int, width: int, n_rows: int,
             taps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spikes and summed per-spike fan-out per (sample, step, spatial row).

    ``packed`` is uint8 (S, T, nbytes); ``taps[pos]`` is the fan-out weight of a spike at
    spatial position ``pos`` (e.g. how many output positions its kernel reaches).
    Returns (spikes, work), both int64 (S, T, n_rows). The bitmap is scanned 64 neurons at a
    time, so silent stretches cost little and the cost follows the spikes.
    """
    s_n, t_n, nbytes = packed.shape
    pad = (-nbytes) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((s_n, t_n, pad), np.uint8)], axis=2)
    words = np.ascontiguousarray(packed).view("<u8")
    row_of = _row_table(plane, width)
    return _row_work_words(words, n_neurons, plane, row_of, np.ascontiguousarray(taps, dtype=np.int64), n_rows,
                           _COUNT, _WHERE)


def axis_taps(in_len: int, k: int, s: int, p: int, out_len: int) -> np.ndarray:
    """For each input index, how many output indices of a conv/pool window along one axis read it."""
    i = np.arange(in_len)[:, None]
    o = np.arange(out_len)[None, :]
    d = i + p - o * s
    return ((d >= 0) & (d < k)).sum(axis=1).astype(np.int64)


def window_taps(in_spatial: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
                padding: tuple[int, ...], out_spatial: tuple[int, ...]) -> np.ndarray:
    """Fan-out (output positions reached) of a spike at each input position, flattened row-major."""
    taps = np.ones(1, np.int64)
    for n, k, s, p, o in zip(in_spatial, kernel, stride, padding, out_spatial, strict=False):
        taps = np.multiply.outer(taps, axis_taps(n, k, s, p, o)).reshape(-1)
    return taps
