"""The spike replay kernels: both forms of a map (bitmap, events) against plain NumPy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from snnsim.hw.spikes import EVENTS_MAX_DENSITY, form_work, row_work, spike_form
from snnsim.workload.graph import Layer, Neuron
from snnsim.workload.trace import Workload, pack_spikes


def naive(bits: np.ndarray, plane: int, width: int, n_rows: int, taps: np.ndarray):
    """Per (sample, step, row) spikes and summed taps, from the unpacked bits."""
    s_n, t_n, n = bits.shape
    pos = np.arange(n) % plane
    row = pos // width
    spikes = np.zeros((s_n, t_n, n_rows), np.int64)
    work = np.zeros((s_n, t_n, n_rows), np.int64)
    for r in range(n_rows):
        m = row == r
        spikes[:, :, r] = bits[:, :, m].sum(axis=2)
        work[:, :, r] = (bits[:, :, m] * taps[pos[m]]).sum(axis=2)
    return spikes, work


@settings(max_examples=60, deadline=None)
@given(channels=st.integers(1, 5), height=st.integers(1, 9), width=st.integers(1, 23),
       samples=st.integers(1, 3), steps=st.integers(1, 3), density=st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.0]),
       seed=st.integers(0, 2**31 - 1))
def test_both_forms_match_numpy(channels, height, width, samples, steps, density, seed):
    rng = np.random.default_rng(seed)
    plane = height * width
    n = channels * plane
    bits = rng.random((samples, steps, n)) < density
    taps = rng.integers(0, 50, plane)
    packed = pack_spikes(bits)
    want_s, want_w = naive(bits.astype(np.int64), plane, width, height, taps)
    for events in (False, True):
        form = spike_form(packed, n, plane, events=events)
        assert form.kind == ("events" if events else "bitmap")
        assert form.spikes == int(bits.sum())
        s, w = form_work(form, taps, width, height)
        np.testing.assert_array_equal(s, want_s)
        np.testing.assert_array_equal(w, want_w)
        s, w = form_work(form, taps)
        np.testing.assert_array_equal(s, want_s.sum(axis=2))
        np.testing.assert_array_equal(w, want_w.sum(axis=2))
    s, w = row_work(packed, n, plane, width, height, taps)
    np.testing.assert_array_equal(w, want_w)


def test_padding_bits_past_the_last_neuron_are_ignored():
    bits = np.ones((1, 1, 70), bool)
    packed = np.concatenate([pack_spikes(bits), np.zeros((1, 1, 23), np.uint8)], axis=2)
    packed[0, 0, 8] |= 0x3F  # garbage past neuron 69
    packed[0, 0, 20:] = 0xFF  # and in spare words
    for events in (False, True):
        form = spike_form(packed, 70, 70, events=events)
        s, w = form_work(form, np.arange(70))
        assert s[0, 0] == 70 and w[0, 0] == np.arange(70).sum()


def test_form_follows_density():
    rng = np.random.default_rng(0)
    n = 64 * 40
    sparse = pack_spikes(rng.random((2, 2, n)) < EVENTS_MAX_DENSITY / 2)
    dense = pack_spikes(rng.random((2, 2, n)) < 4 * EVENTS_MAX_DENSITY)
    assert spike_form(sparse, n, 40).kind == "events"
    assert spike_form(dense, n, 40).kind == "bitmap"
    ev = spike_form(sparse, n, 40)
    assert ev.positions.nbytes <= sparse.nbytes


def _one_layer_workload(packed: np.ndarray) -> Workload:
    layer = Layer("c", "conv2d", ["input"], (2, 4, 4), kernel=(3, 3), stride=(1, 1), padding=(1, 1),
                  neuron=Neuron())
    return Workload([layer], np.zeros((1, 1, 4, 4), np.float32), {"c": packed}, 1)


def test_derived_data_is_kept_only_for_read_only_spikes():
    rng = np.random.default_rng(1)
    packed = pack_spikes(rng.random((1, 1, 32)) < 0.5)
    assert not packed.flags.writeable
    wl = _one_layer_workload(packed)
    assert wl.spike_form("c") is wl.spike_form("c")
    # replacing the array drops what was derived from the old one
    flipped = packed.copy()
    flipped[0, 0, 0] ^= 0x80
    wl.packed_spikes["c"] = flipped
    assert wl.spike_counts("c")[0, 0] == np.bitwise_count(flipped).sum()
    # a writable array may still change: nothing derived from it is kept
    flipped[0, 0, 1] ^= 0x01
    assert wl.spike_counts("c")[0, 0] == np.bitwise_count(flipped).sum()
    with pytest.raises(ValueError):
        packed[0, 0, 0] = 0


def test_spike_count_table_follows_the_arrays():
    rng = np.random.default_rng(2)
    packed = pack_spikes(rng.random((1, 1, 32)) < 0.5)
    wl = _one_layer_workload(packed)
    first = wl.spike_count_table(["c"])
    assert first is wl.spike_count_table(["c"])
    assert first[0, 0, 0] == np.bitwise_count(packed).sum()
    more = np.full_like(packed, 0xFF)
    more.flags.writeable = False
    wl.packed_spikes["c"] = more
    assert wl.spike_count_table(["c"])[0, 0, 0] == 32
