"""Reading spike maps event by event (Numba kernels).

A spike map is packed MSB-first over neurons in channels-first order, so neuron ``n`` sits at
spatial position ``n % plane`` and spatial row ``(n % plane) // width``.

A map is replayed from one of two forms, whichever is smaller in memory:

* **bitmap**: the packed bits viewed as 64-bit words. Zero words are skipped with one test and
  the set bits of a word are visited lowest first (count-trailing-zeros), so the cost is one
  test per 64 neurons plus a few operations per spike. Used above 1/32 density.
* **events**: the spatial position (within its channel's plane) of every spike, in ascending
  neuron order, per (sample, step), as int32. Used at or below 1/32 density, where 32 bits per
  spike take no more memory than the bitmap; a replay then costs one table lookup and one add
  per spike and nothing per silent neuron. (The channel of a spike is not kept: no model of the
  replay needs it, and the bitmap still holds it.)

The form of a read-only map is built once per workload (see :meth:`Workload.derived`); every
replay of the trace on any hardware reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.jit import njit

# the set bit of a power of two 2**i is found from (2**i) % 67, which is distinct for i < 64
_CTZ67 = np.zeros(67, np.int64)
for _i in range(64):
    _CTZ67[(1 << _i) % 67] = _i
del _i

_M67 = np.uint64(67)
_ONE = np.uint64(1)
_B1 = np.uint64(0x5555555555555555)
_B2 = np.uint64(0x3333333333333333)
_B4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_S1, _S2, _S4 = np.uint64(1), np.uint64(2), np.uint64(4)

# events are at most this fraction of a map's neurons: 32-bit indices then take no more memory than bits
EVENTS_MAX_DENSITY = 1 / 32


@njit(cache=True, inline="always")
def _msb_first(w):
    """Reverse the bits inside every byte: bit i of the result is neuron i of the word (the packing
    is MSB-first within bytes, bytes in little-endian order)."""
    w = ((w >> _S1) & _B1) | ((w & _B1) << _S1)
    w = ((w >> _S2) & _B2) | ((w & _B2) << _S2)
    return ((w >> _S4) & _B4) | ((w & _B4) << _S4)


@njit(cache=True)
def _bitmap_work(words, last_mask, plane, taps, row_of, n_rows, by_row):
    # the set-bit walk is written out here and in _decode_events: a shared helper that hands over
    # a word's positions through a buffer made this kernel 20% slower
    s_n, t_n, n_words = words.shape
    spikes = np.zeros((s_n, t_n, n_rows), np.int64)
    work = np.zeros((s_n, t_n, n_rows), np.int64)
    last = n_words - 1
    for s in range(s_n):
        for t in range(t_n):
            pos0 = 0  # spatial position of the word's first neuron
            n_sp = 0
            acc = 0
            for wi in range(n_words):
                w = words[s, t, wi]
                if w != 0:
                    if wi == last:
                        w &= last_mask
                    w = _msb_first(w)
                    while w != 0:
                        low = w & (~w + _ONE)
                        w ^= low
                        pos = pos0 + _CTZ67[np.int64(low % _M67)]
                        if pos >= plane:
                            pos %= plane
                        tp = taps[pos]
                        n_sp += 1
                        acc += tp
                        if by_row:
                            r = row_of[pos]
                            spikes[s, t, r] += 1
                            work[s, t, r] += tp
                pos0 += 64
                if pos0 >= plane:
                    pos0 %= plane
            if not by_row:
                spikes[s, t, 0] = n_sp
                work[s, t, 0] = acc
    return spikes, work


@njit(cache=True)
def _events_work(positions, offsets, s_n, t_n, taps, row_of, n_rows, by_row):
    spikes = np.zeros((s_n, t_n, n_rows), np.int64)
    work = np.zeros((s_n, t_n, n_rows), np.int64)
    for s in range(s_n):
        for t in range(t_n):
            i = s * t_n + t
            if by_row:
                for e in range(offsets[i], offsets[i + 1]):
                    pos = positions[e]
                    r = row_of[pos]
                    spikes[s, t, r] += 1
                    work[s, t, r] += taps[pos]
            else:
                acc = 0
                for e in range(offsets[i], offsets[i + 1]):
                    acc += taps[positions[e]]
                spikes[s, t, 0] = offsets[i + 1] - offsets[i]
                work[s, t, 0] = acc
    return spikes, work


@njit(cache=True)
def _decode_events(words, last_mask, plane, total):
    """The spatial positions of the spikes of every (sample, step) of a bitmap with ``total``
    spikes, in ascending neuron order."""
    s_n, t_n, n_words = words.shape
    positions = np.empty(total, np.int32)
    offsets = np.zeros(s_n * t_n + 1, np.int64)
    last = n_words - 1
    k = 0
    for s in range(s_n):
        for t in range(t_n):
            offsets[s * t_n + t] = k
            pos0 = 0
            for wi in range(n_words):
                w = words[s, t, wi]
                if w != 0:
                    if wi == last:
                        w &= last_mask
                    w = _msb_first(w)
                    while w != 0:
                        low = w & (~w + _ONE)
                        w ^= low
                        pos = pos0 + _CTZ67[np.int64(low % _M67)]
                        if pos >= plane:
                            pos %= plane
                        positions[k] = pos
                        k += 1
                pos0 += 64
                if pos0 >= plane:
                    pos0 %= plane
    offsets[s_n * t_n] = k
    return positions, offsets


@dataclass(frozen=True)
class SpikeForm:
    """A spike map ready for replay: 64-bit words of the bitmap, or the spikes as events."""

    samples: int
    steps: int
    n_neurons: int
    plane: int  # spatial positions per channel
    spikes: int  # total over samples and steps
    words: np.ndarray | None  # uint64 (S, T, W), bitmap form
    last_mask: np.uint64  # the valid neurons of a row's last word
    positions: np.ndarray | None  # int32, events form: each spike's position within its plane
    offsets: np.ndarray | None  # int64 (S * T + 1,), spikes of (s, t) at offsets[s*T+t]:offsets[s*T+t+1]

    @property
    def kind(self) -> str:
        return "bitmap" if self.positions is None else "events"


def _words(packed: np.ndarray) -> np.ndarray:
    s_n, t_n, nbytes = packed.shape
    pad = (-nbytes) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((s_n, t_n, pad), np.uint8)], axis=2)
    return np.ascontiguousarray(packed).view("<u8")


def _last_mask(n_neurons: int, n_words: int) -> np.uint64:
    """Bits (before the in-byte reversal) of the neurons a row's last word really holds."""
    rem = n_neurons - (n_words - 1) * 64 if n_words else 0
    mask = 0
    for k in range(rem):
        mask |= 1 << ((k & ~7) | (7 - (k & 7)))
    return np.uint64(mask)


def spike_form(packed: np.ndarray, n_neurons: int, plane: int, events: bool | None = None) -> SpikeForm:
    """The replay form of a packed map (uint8 (S, T, ceil(N/8))) of ``n_neurons`` neurons,
    ``plane`` positions per channel: events at or below ``EVENTS_MAX_DENSITY``, else the bitmap;
    ``events`` forces one or the other."""
    s_n, t_n, _ = packed.shape
    words = _words(packed)
    n_valid = -(-n_neurons // 64)
    if words.shape[2] > n_valid:  # bytes past the last neuron's word hold no neurons
        words = np.ascontiguousarray(words[:, :, :n_valid])
    mask = _last_mask(n_neurons, words.shape[2])
    total = int(np.bitwise_count(words[:, :, :-1]).sum()) if words.shape[2] > 1 else 0
    if words.shape[2]:
        total += int(np.bitwise_count(words[:, :, -1] & mask).sum())
    if events is None:
        events = total <= EVENTS_MAX_DENSITY * n_neurons * s_n * t_n
    if events:
        pos, off = _decode_events(words, mask, plane, total)
        return SpikeForm(s_n, t_n, n_neurons, plane, total, None, mask, pos, off)
    return SpikeForm(s_n, t_n, n_neurons, plane, total, words, mask, None, None)


_ROW_TABLES: dict[tuple[int, int], np.ndarray] = {}
_NO_ROWS = np.zeros(1, np.int64)


def _row_table(plane: int, width: int) -> np.ndarray:
    """Spatial row of every position (cached: the same few geometries recur)."""
    key = (plane, width)
    if key not in _ROW_TABLES:
        _ROW_TABLES[key] = np.arange(plane, dtype=np.int64) // width
    return _ROW_TABLES[key]


def form_work(form: SpikeForm, taps: np.ndarray, width: int = 0, n_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spikes and summed per-spike fan-out ``taps[position]`` of a map, event by event.

    With ``n_rows`` > 0 both are per (sample, step, spatial row) (``width`` positions a row),
    otherwise per (sample, step). int64 arrays either way.
    """
    by_row = n_rows > 0
    plane = form.plane
    row_of = _row_table(plane, width) if by_row else _NO_ROWS
    rows = n_rows if by_row else 1
    if taps.dtype != np.int64 or not taps.flags.c_contiguous:
        taps = np.ascontiguousarray(taps, dtype=np.int64)
    if form.positions is None:
        spikes, work = _bitmap_work(form.words, form.last_mask, plane, taps, row_of, rows, by_row)
    else:
        spikes, work = _events_work(form.positions, form.offsets, form.samples, form.steps, taps, row_of,
                                    rows, by_row)
    return (spikes, work) if by_row else (spikes[:, :, 0], work[:, :, 0])


def row_work(packed: np.ndarray, n_neurons: int, plane: int, width: int, n_rows: int,
             taps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spikes and summed per-spike fan-out per (sample, step, spatial row) of a packed map.

    ``packed`` is uint8 (S, T, nbytes); ``taps[pos]`` is the fan-out weight of a spike at
    spatial position ``pos`` (e.g. how many output positions its kernel reaches).
    """
    return form_work(spike_form(packed, n_neurons, plane, events=False), taps, width, n_rows)


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
