"""Trace format v1: round trip, and one clear error for each kind of damaged or inconsistent file."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from snnsim.errors import WorkloadError
from snnsim.workload.trace import load_workload, save_workload

from .conftest import make_tiny_workload


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


def _manifest(arrays):
    return json.loads(arrays["manifest"].tobytes().decode())


def _set_manifest(arrays, man):
    arrays["manifest"] = np.frombuffer(json.dumps(man).encode(), dtype=np.uint8)


def test_round_trip(tiny_trace):
    wl = load_workload(tiny_trace)
    ref = make_tiny_workload()
    assert [la.name for la in wl.layers] == ["c0", "c1", "f", "fc"]
    assert [la.spiking for la in wl.layers] == [True, True, True, False]
    for name in ("c0", "c1", "f"):
        assert np.array_equal(wl.packed_spikes[name], ref.packed_spikes[name])
        assert wl.spikes(name).sum() == wl.spike_counts(name).sum()
    assert np.array_equal(wl.input, ref.input)


def test_atomic_write_leaves_no_temporary(tmp_path):
    save_workload(make_tiny_workload(), tmp_path / "a.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_missing_and_not_npz(tmp_path):
    with pytest.raises(WorkloadError, match="not found"):
        load_workload(tmp_path / "none.npz")
    p = tmp_path / "text.npz"
    p.write_text("hello")
    with pytest.raises(WorkloadError, match="npz"):
        load_workload(p)


def test_truncated_file(tiny_trace, tmp_path):
    data = tiny_trace.read_bytes()
    p = tmp_path / "cut.npz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkloadError) as e:
        load_workload(p)
    assert e.value.file == str(p)


def test_pickled_array_is_refused(tiny_trace, tmp_path):
    a = _arrays(tiny_trace)
    a["input"] = np.array([{"evil": 1}], dtype=object)
    p = tmp_path / "pickle.npz"
    np.savez(p, **a)
    with pytest.raises(WorkloadError) as e:
        load_workload(p)
    assert "pickle" in e.value.message and e.value.key == "input"


def test_single_npy_is_refused(tmp_path):
    p = tmp_path / "x.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    p.write_bytes(buf.getvalue())
    with pytest.raises(WorkloadError):
        load_workload(p)


def test_spike_shape_mismatch_names_the_array(tiny_trace, tmp_path):
    a = _arrays(tiny_trace)
    a["spikes/c1"] = a["spikes/c1"][:, :2]
    with pytest.raises(WorkloadError) as e:
        load_workload(_write(tmp_path / "s.npz", a))
    assert e.value.key == "spikes/c1"
    assert "[2, 3, 8]" in e.value.expected and "[2, 2, 8]" in e.value.found


def test_wrong_dtype(tiny_trace, tmp_path):
    a = _arrays(tiny_trace)
    a["input"] = a["input"].astype(np.float64)
    with pytest.raises(WorkloadError) as e:
        load_workload(_write(tmp_path / "d.npz", a))
    assert "float32" in e.value.expected and "float64" in e.value.found


def test_missing_spikes_and_unexpected_array(tiny_trace, tmp_path):
    a = _arrays(tiny_trace)
    del a["spikes/c0"]
    with pytest.raises(WorkloadError) as e:
        load_workload(_write(tmp_path / "m.npz", a))
    assert e.value.key == "spikes/c0"
    a = _arrays(tiny_trace)
    a["spike/c0"] = a["spikes/c0"]
    with pytest.raises(WorkloadError) as e:
        load_workload(_write(tmp_path / "u.npz", a))
    assert e.value.key == "spike/c0"


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda m: m.update(version=7), "manifest.version"),
        (lambda m: m.update(format="other"), "manifest.format"),
        (lambda m: m.update(time_steps=0), "manifest.time_steps"),
        (lambda m: m["layers"][1].update(op="conv"), "layers.c1.op"),
        (lambda m: m["layers"][1].update(inputs=["c9"]), "layers.c1.inputs"),
        (lambda m: m["layers"][1].update(out_shape=[4, 5, 5]), "layers.c1.out_shape"),
        (lambda m: m["layers"][1]["neuron"].update(reset="hard"), "layers.c1.neuron.reset"),
        (lambda m: m["layers"][1].update(neuron=None), "layers.f.inputs"),
        (lambda m: m["input"].update(shape=[3, 9, 8]), "layers.c0.in_shape"),
    ],
)
def test_manifest_errors(tiny_trace, tmp_path, edit, key):
    a = _arrays(tiny_trace)
    man = _manifest(a)
    edit(man)
    _set_manifest(a, man)
    with pytest.raises(WorkloadError) as e:
        load_workload(_write(tmp_path / "bad.npz", a))
    assert e.value.key == key
    assert e.value.file == str(tmp_path / "bad.npz")


def test_manifest_not_json(tiny_trace, tmp_path):
    a = _arrays(tiny_trace)
    a["manifest"] = np.frombuffer(b"{not json", dtype=np.uint8)
    with pytest.raises(WorkloadError, match="JSON"):
        load_workload(_write(tmp_path / "j.npz", a))


def test_input_out_of_range(tiny_trace, tmp_path):
    a = _arrays(tiny_trace)
    a["input"] = a["input"] * 255
    with pytest.raises(WorkloadError) as e:
        load_workload(_write(tmp_path / "r.npz", a))
    assert e.value.key == "input"


def test_damaged_member(tiny_trace, tmp_path):
    p = tmp_path / "z.npz"
    with zipfile.ZipFile(tiny_trace) as zin, zipfile.ZipFile(p, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "spikes/c1.npy":
                data = data[:20]
            zout.writestr(info, data)
    with pytest.raises(WorkloadError):
        load_workload(p)
