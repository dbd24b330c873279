"""The Loihi-class target's replay kernels: every spike of a trace visited once, with its messages.

:func:`replay_messages` walks one source layer's packed spikes (bytes with no spike are skipped
eight neurons at a time) and, for each spike, charges the firing core and every message the
neuron sends: one per destination core, with its synapses, hops and path latency. Its cost is
the spikes and messages of the layer plus one test per eight neurons and step.

:func:`replay_updates` counts, per step and core of a layer fed by synapses, the neurons whose
state changes: those reached by at least one synapse of a spike that step, or that fire. Its
cost is the synaptic events of the layer (one stamp per event) plus the same byte tests.

Both run as plain Python under ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import numpy as np

from ..engine.jit import njit


@njit
def set_bits(row, n, out):
    """The indices of the set bits of a packed row (bit 7 of byte 0 first, at most ``n``) into
    ``out``; returns how many. Bytes with no spike are skipped eight neurons at a time."""
    k = 0
    for b in range(row.shape[0]):
        byte = row[b]
        if byte == 0:
            continue
        for bit in range(8):
            if byte & (128 >> bit):
                i = b * 8 + bit
                if i >= n:
                    break
                out[k] = i
                k += 1
    return k


@njit
def replay_messages(packed, n_src, src_core, msg_ptr, msg_core, msg_syn, msg_ew, msg_ns, msg_chip, msg_lat,
                    fired, sent, received, synops, hops, max_lat):
    """One sample of one source layer. ``packed``: (T, bytes) uint8, neurons row-major. Per spike
    of neuron i at step t: ``fired[t, src_core[i]] += 1``; per message m of i
    (``msg_ptr[i]..msg_ptr[i+1]``): ``sent[t, src_core[i]]``, ``received[t, msg_core[m]]`` += 1,
    ``synops[t, msg_core[m]] += msg_syn[m]``, ``hops[t] += (ew, ns, chip)``,
    ``max_lat[t] = max(max_lat[t], msg_lat[m])``."""
    on = np.empty(n_src, np.int64)
    for t in range(packed.shape[0]):
        for q in range(set_bits(packed[t], n_src, on)):
            i = on[q]
            c = src_core[i]
            fired[t, c] += 1
            for m in range(msg_ptr[i], msg_ptr[i + 1]):
                k = msg_core[m]
                sent[t, c] += 1
                received[t, k] += 1
                synops[t, k] += msg_syn[m]
                hops[t, 0] += msg_ew[m]
                hops[t, 1] += msg_ns[m]
                hops[t, 2] += msg_chip[m]
                if msg_lat[m] > max_lat[t]:
                    max_lat[t] = msg_lat[m]


@njit
def replay_updates(packed_src, n_src, nbr_ptr, nbr_dst, packed_own, n_own, own_core, stamp, base, updated):
    """One sample of one layer fed by synapses: ``updated[t, core]`` += the distinct neurons of
    the layer reached at step t by a synapse of a source spike, or firing at t (``packed_own``;
    an empty array for a readout). ``stamp`` (one int64 per neuron) holds the last step a neuron
    was counted, as ``base + t`` (callers give each sample its own base)."""
    on_src = np.empty(n_src, np.int64)
    on_own = np.empty(n_own, np.int64)
    for t in range(packed_src.shape[0]):
        mark = base + t
        for q in range(set_bits(packed_src[t], n_src, on_src)):
            i = on_src[q]
            for e in range(nbr_ptr[i], nbr_ptr[i + 1]):
                j = nbr_dst[e]
                if stamp[j] != mark:
                    stamp[j] = mark
                    updated[t, own_core[j]] += 1
        if packed_own.shape[0]:
            for q in range(set_bits(packed_own[t], n_own, on_own)):
                j = on_own[q]
                if stamp[j] != mark:
                    stamp[j] = mark
                    updated[t, own_core[j]] += 1


def empty_packed() -> np.ndarray:
    return np.zeros((0, 0), np.uint8)
