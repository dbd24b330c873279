"""Malformed, hostile or mistaken trace files, and edited traces in memory: each gives one clear
WorkloadError naming the file and the member or field, never a traceback, a hang or an attempt
to allocate what the file cannot hold. The archives are built byte by byte here, because
zipfile and numpy would repair the sizes, flags and headers under test."""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import time
import zipfile
import zlib

import numpy as np
import pytest
from snnsim.errors import WorkloadError
from snnsim.workload import npzfile
from snnsim.workload.graph import Layer, Neuron
from snnsim.workload.trace import (
    Workload,
    check_replay_arrays,
    load_workload,
    pack_spikes,
    save_workload,
)

from .conftest import TINY_P2M, make_tiny_workload

LOCAL = struct.Struct("<4s5H3L2H")
CENTRAL = struct.Struct("<4s6H3L5HLL")
END = struct.Struct("<4s4H2LH")


def member(name: str, payload: bytes, *, method: int = 0, size: int | None = None, crc: int | None = None,
           flags: int = 0, raw: bytes | None = None) -> dict:
    """One archive member: ``payload`` is the uncompressed bytes (for the CRC and, by default, the
    declared size); ``raw`` the bytes as stored (default: payload, deflated if method 8)."""
    if raw is None:
        raw = payload
        if method == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw = c.compress(payload) + c.flush()
    return {"name": name, "raw": raw, "method": method, "flags": flags,
            "size": len(payload) if size is None else size,
            "crc": zlib.crc32(payload) if crc is None else crc}


def write_zip(path, members: list[dict], offsets: list[int] | None = None):
    """A ZIP written by hand: what the directory declares is exactly what the members say."""
    out, central = bytearray(), bytearray()
    for i, m in enumerate(members):
        name = m["name"].encode()
        offset = len(out)
        out += LOCAL.pack(b"PK\x03\x04", 20, m["flags"], m["method"], 0, 0x21, m["crc"], len(m["raw"]),
                          m["size"] & 0xFFFFFFFF, len(name), 0) + name + m["raw"]
        at = offset if offsets is None else offsets[i]
        central += CENTRAL.pack(b"PK\x01\x02", 20, 20, m["flags"], m["method"], 0, 0x21, m["crc"],
                                len(m["raw"]), m["size"], len(name), 0, 0, 0, 0, 0, at) + name
    cd_at = len(out)
    out += central + END.pack(b"PK\x05\x06", 0, 0, len(members), len(members), len(central), cd_at, 0)
    path.write_bytes(bytes(out))
    return path


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def npy_header(text: str) -> bytes:
    """A format 1.0 .npy header around any text (padded like numpy's)."""
    body = text.encode("latin1")
    body += b" " * (-(len(body) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body


def trace_members(tmp_path, samples: int = 2) -> list[dict]:
    """The members of the tiny trace, stored, as :func:`write_zip` takes them."""
    p = tmp_path / "good.npz"
    save_workload(make_tiny_workload(samples=samples), p)
    with zipfile.ZipFile(p) as z:
        return [member(i.filename, z.read(i.filename)) for i in z.infolist()]


def replaced(members: list[dict], name: str, new: dict | None) -> list[dict]:
    out = [new if m["name"] == name else m for m in members]
    return [m for m in out if m is not None]


def load_error(path) -> WorkloadError:
    with pytest.raises(WorkloadError) as e:
        load_workload(path)
    assert e.value.file == str(path)
    return e.value


def manifest_of(members: list[dict]) -> dict:
    raw = next(m["raw"] for m in members if m["name"] == "manifest.npy")
    return json.loads(np.load(io.BytesIO(raw)).tobytes())


def with_manifest_text(members: list[dict], text: str) -> list[dict]:
    return replaced(members, "manifest.npy", member("manifest.npy", npy(np.frombuffer(text.encode(), np.uint8))))


# ---- item 1: the container -----------------------------------------------------------------


def test_hand_built_archive_loads(tmp_path):
    """The byte-level builder itself makes valid traces (so the failures below are the edits)."""
    wl = load_workload(write_zip(tmp_path / "t.npz", trace_members(tmp_path)))
    assert np.array_equal(wl.packed_spikes["c1"], make_tiny_workload().packed_spikes["c1"])


def test_member_without_npy_magic(tmp_path):
    ms = trace_members(tmp_path)
    e = load_error(write_zip(tmp_path / "b.npz", replaced(ms, "input.npy", member("input.npy", b"raw bytes" * 20))))
    assert e.key == "input" and "not an .npy array" in e.message


def test_member_not_named_npy(tmp_path):
    ms = trace_members(tmp_path) + [member("notes.txt", b"hello")]
    e = load_error(write_zip(tmp_path / "b.npz", ms))
    assert e.key == "notes.txt" and ".npy" in e.message


def test_encrypted_member(tmp_path):
    ms = trace_members(tmp_path)
    m = dict(next(m for m in ms if m["name"] == "spikes/c1.npy"), flags=0x1)
    e = load_error(write_zip(tmp_path / "b.npz", replaced(ms, "spikes/c1.npy", m)))
    assert e.key == "spikes/c1" and "encrypted" in e.message


@pytest.mark.parametrize("method", [7, 12, 14, 99])
def test_unknown_compression_method(tmp_path, method):
    ms = trace_members(tmp_path)
    m = dict(next(m for m in ms if m["name"] == "input.npy"), method=method)
    e = load_error(write_zip(tmp_path / "b.npz", replaced(ms, "input.npy", m)))
    assert e.key == "input" and "compression" in e.message and f"method {method}" in e.found


@pytest.mark.parametrize("header", [
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3",      # tokenize.TokenError in numpy
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3, 8, 8), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (True, 3, 8, 8), }",
    "{'descr': 'zz9', 'fortran_order': False, 'shape': (2, 3, 8, 8), }",
    "{'descr': ('<f4', (2, 2)), 'fortran_order': False, 'shape': (2, 3, 8, 8), }",
    "[1, 2, 3]",
    "{'descr': '<f4', 'fortran_order': 'no', 'shape': (2, 3, 8, 8), }",
    "(" * 300 + ")" * 300,
])
def test_corrupt_npy_header(tmp_path, header):
    ms = trace_members(tmp_path)
    bad = member("input.npy", npy_header(header) + bytes(1536))
    e = load_error(write_zip(tmp_path / "b.npz", replaced(ms, "input.npy", bad)))
    assert e.key == "input"
    assert "header" in e.message or "dtype" in e.message


def test_npy_version_3_and_truncated_header(tmp_path):
    ms = trace_members(tmp_path)
    v3 = npy(np.zeros((2, 3, 8, 8), np.float32)).replace(b"NUMPY\x01\x00", b"NUMPY\x03\x00", 1)
    e = load_error(write_zip(tmp_path / "v.npz", replaced(ms, "input.npy", member("input.npy", v3))))
    assert e.key == "input" and "version" in e.message
    cut = member("input.npy", npy(np.zeros((2, 3, 8, 8), np.float32))[:30])
    e = load_error(write_zip(tmp_path / "c.npz", replaced(ms, "input.npy", cut)))
    assert e.key == "input" and "damaged" in e.message


def test_header_claiming_1e12_elements_is_not_allocated(tmp_path):
    ms = trace_members(tmp_path)
    huge = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }") + bytes(64)
    e = load_error(write_zip(tmp_path / "h.npz", replaced(ms, "input.npy", member("input.npy", huge))))
    assert e.key == "input" and "size disagrees" in e.message
    # the header and the directory agree on 4 TB (a deflated member): the shape disagrees with the manifest
    claim = 4 * 10**12
    hdr = npy_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({claim // 4},), }}")
    bomb = member("input.npy", hdr, method=8, size=(len(hdr) + claim) & 0xFFFFFFFF)
    e = load_error(write_zip(tmp_path / "h2.npz", replaced(ms, "input.npy", bomb)))
    assert e.key == "input"


def zip_bomb_member(name: str, header: bytes, declared: int, compressed_mb: int) -> dict:
    """A deflate stream of ``header`` then blocks of zeros, declaring ``declared`` bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_SYNC_FLUSH)
    zeros = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
    raw = head + zeros * (compressed_mb * (1 << 20) // len(zeros)) + b"\x03\x00"
    return member(name, b"", method=8, size=declared, crc=0, raw=raw)


def test_zip_bomb_is_refused_before_inflating(tmp_path, monkeypatch):
    """19 MB deflated, 4.2 GB declared: the header is read, its shape refused, nothing inflated."""
    monkeypatch.setattr(npzfile, "memory_budget", lambda: 1 << 40)  # as on a machine with the memory
    ms = trace_members(tmp_path)
    declared = 4_200_000_000
    hdr = npy_header(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({declared - 128},), }}")
    assert len(hdr) == 128
    p = write_zip(tmp_path / "bomb.npz", replaced(ms, "spikes/c1.npy", zip_bomb_member("spikes/c1.npy", hdr,
                                                                                       declared, 19)))
    t0 = time.perf_counter()
    e = load_error(p)
    assert time.perf_counter() - t0 < 2.0
    assert e.key == "spikes/c1" and "shape" in e.message and "[2, 3, 8]" in e.expected


def test_deflate_ratio_and_memory_budget(tmp_path, monkeypatch):
    ms = trace_members(tmp_path)
    hdr = npy_header("{'descr': '|u1', 'fortran_order': False, 'shape': (4199999872,), }")
    tiny_bomb = member("spikes/c1.npy", hdr, method=8, size=4_200_000_000, crc=0)
    e = load_error(write_zip(tmp_path / "r.npz", replaced(ms, "spikes/c1.npy", tiny_bomb)))
    assert e.key == "spikes/c1" and "deflate" in e.message
    monkeypatch.setattr(npzfile, "memory_budget", lambda: 1000)
    e = load_error(write_zip(tmp_path / "m.npz", ms))
    assert "memory" in e.message


def test_stored_member_sizes_past_the_file(tmp_path):
    ms = trace_members(tmp_path)
    m = next(m for m in ms if m["name"] == "input.npy")
    liar = dict(m, size=m["size"] + 10**9)  # stored: both sizes must agree
    e = load_error(write_zip(tmp_path / "s.npz", replaced(ms, "input.npy", liar)))
    assert e.key == "input" and "damaged" in e.message


def test_member_size_disagrees_with_header(tmp_path):
    """Trailing bytes after the data: numpy reads what the header says and ignores the rest."""
    ms = trace_members(tmp_path)
    m = next(m for m in ms if m["name"] == "spikes/c1.npy")
    e = load_error(write_zip(tmp_path / "t.npz", replaced(ms, "spikes/c1.npy",
                                                          member("spikes/c1.npy", m["raw"] + bytes(100)))))
    assert e.key == "spikes/c1" and "size disagrees" in e.message


@pytest.mark.parametrize("extra, word", [(b"\x01" * 100, "more"), (None, "fewer")])
def test_deflated_stream_longer_or_shorter_than_declared(tmp_path, extra, word):
    """The declared size and the CRC are those of the good member; only the stream differs."""
    ms = trace_members(tmp_path, samples=16)  # an input past the 4 KiB zipfile inflates for a header
    good = next(m for m in ms if m["name"] == "input.npy")["raw"]
    stream = good + extra if extra else good[:-10]
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    bad = member("input.npy", good, method=8, raw=c.compress(stream) + c.flush())
    e = load_error(write_zip(tmp_path / "d.npz", replaced(ms, "input.npy", bad)))
    assert e.key == "input" and word in e.message


def test_crc_mismatch_and_damaged_deflate(tmp_path):
    ms = trace_members(tmp_path, samples=16)  # past the 4 KiB zipfile reads (and checks) for a header
    m = next(m for m in ms if m["name"] == "input.npy")
    flipped = m["raw"][:-1] + bytes([m["raw"][-1] ^ 1])
    e = load_error(write_zip(tmp_path / "c.npz", replaced(ms, "input.npy", dict(m, raw=flipped))))
    assert e.key == "input" and "CRC" in e.message
    small = next(m for m in ms if m["name"] == "spikes/f.npy")  # zipfile's own check, at the header
    flipped = small["raw"][:-1] + bytes([small["raw"][-1] ^ 1])
    e = load_error(write_zip(tmp_path / "s.npz", replaced(ms, "spikes/f.npy", dict(small, raw=flipped))))
    assert e.key == "spikes/f" and "CRC" in e.found
    d = member("input.npy", m["raw"], method=8)
    d["raw"] = d["raw"][:40] + bytes(b ^ 0x5A for b in d["raw"][40:])
    e = load_error(write_zip(tmp_path / "z.npz", replaced(ms, "input.npy", d)))
    assert e.key == "input" and "damaged" in e.message


def test_duplicate_member_name(tmp_path):
    ms = trace_members(tmp_path)
    twice = ms + [next(m for m in ms if m["name"] == "spikes/c1.npy")]
    e = load_error(write_zip(tmp_path / "dup.npz", twice))
    assert e.key == "spikes/c1" and "duplicate" in e.message


def test_overlapping_members(tmp_path):
    ms = trace_members(tmp_path)[:2]
    e = load_error(write_zip(tmp_path / "o.npz", ms, offsets=[0, 0]))
    assert "overlap" in e.message


def test_oversized_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(npzfile, "MAX_DIRECTORY_BYTES", 100)
    e = load_error(write_zip(tmp_path / "d.npz", trace_members(tmp_path)))
    assert "directory" in e.message


def test_big_endian_is_converted_and_dtype_messages_show_byte_order(tmp_path):
    ms = trace_members(tmp_path)
    x = make_tiny_workload().input
    be = member("input.npy", npy(x.astype(">f4")))
    wl = load_workload(write_zip(tmp_path / "be.npz", replaced(ms, "input.npy", be)))
    assert wl.input.dtype == np.dtype("float32") and wl.input.dtype.isnative
    assert np.array_equal(wl.input, x)
    wrong = member("input.npy", npy(x.astype(">f8")))
    e = load_error(write_zip(tmp_path / "f8.npz", replaced(ms, "input.npy", wrong)))
    assert "'>f8'" in e.found and "'<f4'" in e.expected


def test_fortran_order_and_deflated_traces_load(tmp_path):
    ms = trace_members(tmp_path)
    x = make_tiny_workload().input
    fo = member("input.npy", npy(np.asfortranarray(x)))
    wl = load_workload(write_zip(tmp_path / "fo.npz", replaced(ms, "input.npy", fo)))
    assert wl.input.flags.c_contiguous and np.array_equal(wl.input, x)
    p = tmp_path / "zc.npz"
    save_workload(make_tiny_workload(), p, compressed=True)
    wl = load_workload(p)
    assert np.array_equal(wl.packed_spikes["c0"], make_tiny_workload().packed_spikes["c0"])
    # every array of a loaded trace is read-only: what is checked and derived from it is kept
    assert not wl.packed_spikes["c0"].flags.writeable and not wl.input.flags.writeable


def test_pickle_member_is_refused_without_unpickling(tmp_path):
    ms = trace_members(tmp_path)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    e = load_error(write_zip(tmp_path / "p.npz", replaced(ms, "input.npy", member("input.npy", buf.getvalue()))))
    assert e.key == "input" and "pickle" in e.message


def test_nir_graph_given_as_trace(tmp_path):
    p = tmp_path / "net.nir"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    e = load_error(p)
    assert "NIR" in e.message and "workload from-nir" in e.suggestion and "--inputs" in e.suggestion


def test_hwconfig_given_as_trace(tmp_path):
    import yaml

    p = tmp_path / "p2m.yaml"
    p.write_text(yaml.safe_dump(TINY_P2M))
    e = load_error(p)
    assert "YAML" in e.message and "swapped" in e.suggestion and "HWCONFIG" in e.suggestion
    q = tmp_path / "hw.npz"  # a mapping is recognised by its text, whatever the file is called
    q.write_text("name: tiny\nsensor: {kind: p2m}\n")
    assert "swapped" in load_error(q).suggestion
    r = tmp_path / "notes.npz"
    r.write_text("just some words\n")
    e = load_error(r)
    assert "text" in e.message and "npz" in e.message


def test_single_npy_and_empty_file(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(npy(np.zeros(3)))
    assert ".npy" in load_error(p).message
    q = tmp_path / "empty.npz"
    q.write_bytes(b"")
    assert "empty" in load_error(q).message


def test_name_too_long_and_fifo(tmp_path):
    e = load_error(tmp_path / ("a" * 300 + ".npz"))
    assert "ENAMETOOLONG" in e.found
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    result = []
    th = threading.Thread(target=lambda: result.append(_catch(fifo)), daemon=True)
    th.start()
    th.join(5)
    assert result and isinstance(result[0], WorkloadError) and "regular" in result[0].message


def _catch(path):
    try:
        load_workload(path)
    except WorkloadError as e:
        return e
    return None


def test_manifest_member_size_is_capped(tmp_path, monkeypatch):
    from snnsim.workload import trace

    assert trace.MAX_MANIFEST_BYTES == 64 << 20
    monkeypatch.setattr(trace, "MAX_MANIFEST_BYTES", 1 << 20)  # the same check, with a smaller file
    ms = trace_members(tmp_path)
    hdr = npy_header(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({2 << 20},), }}")
    big = member("manifest.npy", hdr + bytes(2 << 20), method=8)
    e = load_error(write_zip(tmp_path / "m.npz", replaced(ms, "manifest.npy", big)))
    assert e.key == "manifest" and "too large" in e.message


# ---- item 2: the manifest's types ----------------------------------------------------------


@pytest.mark.parametrize("edit, key", [
    (lambda m: m.update(provenance=[1, 2]), "manifest.provenance"),
    (lambda m: m.update(provenance="made by hand"), "manifest.provenance"),
    (lambda m: m["layers"][1].update(extra=5), "layers.c1.extra"),
    (lambda m: m["layers"][1].update(extra=["a"]), "layers.c1.extra"),
    (lambda m: m["layers"][3].update(out_shape=[]), "layers.fc.out_shape"),
    (lambda m: m["layers"][3].update(out_shape=10), "layers.fc.out_shape"),
    (lambda m: m["layers"][3].update(out_shape=[0]), "layers.fc.out_shape"),
    (lambda m: m["layers"][1].update(in_shape=[8, 4, True]), "layers.c1.in_shape"),
    (lambda m: m["layers"][1]["neuron"].update(per_channel="false"), "layers.c1.neuron.per_channel"),
    (lambda m: m["layers"][1]["neuron"].update(per_channel=0), "layers.c1.neuron.per_channel"),
    (lambda m: m["input"].update(shape=[True, 8, 8]), "manifest.input.shape"),
    (lambda m: m["input"].update(shape=[3, 2**40, 8]), "manifest.input.shape"),
    (lambda m: m["layers"][0].update(kernel=[True, 2]), "layers.c0.kernel"),
    (lambda m: m["layers"][0].update(stride=[2**40, 2]), "layers.c0.stride"),
    (lambda m: m["layers"][0].update(padding=True), "layers.c0.padding"),
    (lambda m: m["layers"][1].update(groups=2**40), "layers.c1.groups"),
    (lambda m: m.update(samples=True), "manifest.samples"),
    (lambda m: m.update(samples=2**40), "manifest.samples"),
    (lambda m: m.update(time_steps=True), "manifest.time_steps"),
    (lambda m: m.update(model=5), "manifest.model"),
    (lambda m: m.update(dataset=["photos"]), "manifest.dataset"),
    (lambda m: m.update(encoding=["direct"]), "manifest.encoding"),
    (lambda m: m.update(version=True), "manifest.version"),
])
def test_manifest_types(tmp_path, edit, key):
    ms = trace_members(tmp_path)
    man = manifest_of(ms)
    edit(man)
    e = load_error(write_zip(tmp_path / "m.npz", with_manifest_text(ms, json.dumps(man))))
    assert e.key == key, e


def test_null_provenance_and_extra_still_load(tmp_path):
    ms = trace_members(tmp_path)
    man = manifest_of(ms)
    man["provenance"] = None
    man["layers"][1]["extra"] = None
    wl = load_workload(write_zip(tmp_path / "n.npz", with_manifest_text(ms, json.dumps(man))))
    assert wl.provenance == {} and wl.layers[1].extra == {}


def test_deeply_nested_json(tmp_path):
    ms = trace_members(tmp_path)
    text = json.dumps(manifest_of(ms))
    for depth in (100_000, 100):
        deep = text.replace('"provenance": {}', '"provenance": ' + "[" * depth + "]" * depth)
        assert deep != text
        e = load_error(write_zip(tmp_path / f"d{depth}.npz", with_manifest_text(ms, deep)))
        assert e.key == "manifest" and "nested" in e.message


def test_long_integer_in_manifest(tmp_path):
    ms = trace_members(tmp_path)
    man = manifest_of(ms)
    text = json.dumps(man).replace('"provenance": {}', '"provenance": {"seed": ' + "7" * 5000 + "}")
    e = load_error(write_zip(tmp_path / "i.npz", with_manifest_text(ms, text)))
    assert e.key == "manifest" and "5000 digits" in e.found


def test_tiny_file_claiming_1e9_samples(tmp_path):
    ms = trace_members(tmp_path)
    man = manifest_of(ms)
    man["samples"] = 10**9
    e = load_error(write_zip(tmp_path / "s.npz", with_manifest_text(ms, json.dumps(man))))
    assert e.key == "input" and "1000000000" in e.expected


# ---- item 3: arrays put in place by hand ---------------------------------------------------


def padded_workload() -> Workload:
    """A linear layer of 10 neurons: 2 bytes a row, 6 padding bits."""
    rng = np.random.default_rng(1)
    layers = [Layer("l0", "linear", ["input"], (10,), neuron=Neuron()), Layer("out", "linear", ["l0"], (3,))]
    return Workload(layers, rng.random((2, 12)).astype(np.float32),
                    {"l0": pack_spikes(rng.random((2, 4, 10)) < 0.3)}, 4)


def replay_error(wl) -> WorkloadError:
    with pytest.raises(WorkloadError) as e:
        check_replay_arrays(wl)
    return e.value


def test_valid_workloads_pass(tiny_trace):
    check_replay_arrays(load_workload(tiny_trace))
    check_replay_arrays(make_tiny_workload())
    check_replay_arrays(padded_workload())


@pytest.mark.parametrize("array, found", [
    (lambda a: a.astype(np.uint16), "uint16"),
    (lambda a: a[:, :2], "[2, 2, 8]"),
    (lambda a: a.tolist(), "list"),
    (lambda a: a.astype(bool), "bool"),
])
def test_replaced_spikes_of_wrong_kind(array, found):
    wl = make_tiny_workload()
    wl.packed_spikes["c1"] = array(wl.packed_spikes["c1"])
    e = replay_error(wl)
    assert e.key == "packed_spikes['c1']" and "uint8" in e.expected and found in e.found
    assert "pack_spikes" in e.suggestion
    with pytest.raises(WorkloadError):  # and the derived paths say so too, instead of crashing
        wl.spike_counts("c1")
    with pytest.raises(WorkloadError):
        wl.spike_form("c1")


def test_missing_and_unknown_spikes():
    wl = make_tiny_workload()
    del wl.packed_spikes["f"]
    assert replay_error(wl).key == "packed_spikes['f']"
    with pytest.raises(WorkloadError):
        wl.spike_counts("f")
    wl = make_tiny_workload()
    wl.packed_spikes["c 1"] = wl.packed_spikes["c1"]
    e = replay_error(wl)
    assert e.key == "packed_spikes['c 1']" and "c1" in e.suggestion


def test_padding_bits_and_writable_arrays_are_rechecked():
    wl = padded_workload()
    a = wl.packed_spikes["l0"].copy()  # writable
    wl.packed_spikes["l0"] = a
    check_replay_arrays(wl)
    a[0, 0, -1] |= 1  # a padding bit, set after the first check
    e = replay_error(wl)
    assert e.key == "packed_spikes['l0']" and "padding" in e.message


def test_read_only_arrays_are_checked_once(monkeypatch):
    from snnsim.workload import trace

    calls = []
    real = trace._padding_error
    monkeypatch.setattr(trace, "_padding_error", lambda *a: calls.append(1) or real(*a))
    wl = padded_workload()
    check_replay_arrays(wl)
    check_replay_arrays(wl)
    assert len(calls) == 1
    wl.packed_spikes["l0"] = wl.packed_spikes["l0"].copy()
    check_replay_arrays(wl)
    check_replay_arrays(wl)
    assert len(calls) == 3


@pytest.mark.parametrize("edit, key", [
    (lambda wl: setattr(wl, "input", wl.input.astype(np.float64)), "input"),
    (lambda wl: setattr(wl, "input", wl.input * 255), "input"),
    (lambda wl: wl.input.__setitem__((0, 0, 0, 0), np.nan), "input"),
    (lambda wl: wl.thresholds.update(c1=np.ones(4)), "thresholds['c1']"),
    (lambda wl: wl.thresholds.update(c1=-np.ones(4, np.float32)), "thresholds['c1']"),
    (lambda wl: wl.thresholds.update(c1=np.ones(5, np.float32)), "thresholds['c1']"),
    (lambda wl: wl.thresholds.update(f=np.ones(64, np.float32)), "thresholds['f']"),
    (lambda wl: wl.weights.update(c1=np.ones((4, 8, 3, 3), np.float64)), "weights['c1']"),
    (lambda wl: wl.weights.update(c1=np.ones((4, 8, 3), np.float32)), "weights['c1']"),
    (lambda wl: wl.weights.update(c1=np.full((4, 8, 3, 3), np.inf, np.float32)), "weights['c1']"),
    (lambda wl: wl.weights.update(f=np.ones(3, np.float32)), "weights['f']"),
    (lambda wl: wl.packed_weights.update(c1=(np.zeros(36, np.uint8), np.zeros(4, np.float32))),
     "packed_weights['c1'][1]"),
    (lambda wl: wl.packed_weights.update(c1=(np.zeros(35, np.uint8), np.ones(4, np.float32))),
     "packed_weights['c1'][0]"),
    (lambda wl: wl.layers[1].__setattr__("neuron", Neuron(per_channel=True)), "thresholds['c1']"),
])
def test_replay_arrays_of_wrong_kind(edit, key):
    wl = make_tiny_workload()
    edit(wl)
    e = replay_error(wl)
    assert e.key == key and e.expected and e.found
