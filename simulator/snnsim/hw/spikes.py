"""Reading bit-packed spike maps event by event (Numba kernels).

A spike map is packed MSB-first over neurons in channels-first order, so neuron ``n`` sits at
spatial position ``n % plane`` and spatial row ``(n % plane) // width``. The kernels skip zero
bytes and decode set bits through a byte table, so their cost follows the number of spikes.
"""

from __future__ import annotations

import numpy as np

from ..engine.jit import njit


@njit(cache=True)
def row_work(packed, n_neurons, plane, width, n_rows, taps):
    """Spikes and summed per-spike fan-out per (sample, step, spatial row).

    ``packed`` is uint8 (S, T, nbytes); ``taps[pos]`` is the fan-out weight of a spike at
    spatial position ``pos`` (e.g. how many output positions its kernel reaches).
    Returns (spikes, work), both int64 (S, T, n_rows).
    """
    s_n, t_n, nbytes = packed.shape
    spikes = np.zeros((s_n, t_n, n_rows), np.int64)
    work = np.zeros((s_n, t_n, n_rows), np.int64)
    for s in range(s_n):
        for t in range(t_n):
            for b in range(nbytes):
                byte = packed[s, t, b]
                if byte == 0:
                    continue
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        n = b * 8 + bit
                        if n >= n_neurons:
                            break
                        pos = n % plane
                        row = pos // width
                        spikes[s, t, row] += 1
                        work[s, t, row] += taps[pos]
    return spikes, work


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
