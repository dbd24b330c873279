"""Spike-trace format v1: one ``.npz``, documented in ``docs/workload-format.md``, read by the
bounded, pickle-free reader of :mod:`.npzfile`.

Arrays (NIRData's time-gridded layout: samples x steps x neurons):

- ``manifest``            uint8, the UTF-8 bytes of a JSON manifest (graph, sizes, provenance)
- ``input``               float32 (samples, *input_shape), analog input in [0, 1]
- ``spikes/<layer>``      uint8 (samples, T, ceil(N / 8)): output spikes of each spiking layer,
                          neurons flattened channels-first and bit-packed MSB first
- ``weights/<layer>``     float32, optional: (C_out, C_in / groups, *kernel) or (out, in)
- ``binary_weights/<layer>`` uint8 (ceil(N_w / 8),) and ``weight_scales/<layer>`` float32 (C_out,):
                          the compact form of binary weights (+-scale per output channel), bit set
                          = positive, packed MSB first over the flattened weight tensor; the writer
                          chooses it by itself for 1-bit layers whose weights are +-scale
- ``thresholds/<layer>``  float32 (C_out,), required when the neuron is ``per_channel``

One writer (:func:`save_workload`) serves every producer; it writes a temporary file and renames
it, so a failed write never leaves half a trace.
"""

from __future__ import annotations

import json
import math
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WorkloadError, did_you_mean
from ..fileio import atomic_write
from .graph import Layer, check_graph, check_graph_once, layer_from_dict
from .npzfile import NpzArchive, describe_dtype, os_error_text, sniff

FORMAT_NAME = "snnsim-trace"
FORMAT_VERSION = 1
ENCODINGS = ("direct",)


@dataclass
class Workload:
    """A spike trace in memory: graph, analog input, packed spikes, optional parameters."""

    layers: list[Layer]
    input: np.ndarray
    packed_spikes: dict[str, np.ndarray]
    time_steps: int
    model: str = "unnamed"
    dataset: str = "unknown"
    encoding: str = "direct"
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: dict[str, np.ndarray] = field(default_factory=dict)
    # binary weights as loaded from a file: name -> (packed sign bits, per-channel scale)
    packed_weights: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    format_version: int = FORMAT_VERSION  # of the file it was read from (a v2 file of v1 constructs: 2)
    # format v2: the counts of layers whose outputs are events, uint8 (samples, T, N); their
    # packed_spikes hold which events are non-zero
    events: dict[str, np.ndarray] = field(default_factory=dict)
    # format v2: the trace's parameter arrays by their names in the file (weights/<node>, bias/<node>...)
    node_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    nodes: list = field(default_factory=list)  # format v2: the checked graph (its nodes, arrays resolved)

    @property
    def samples(self) -> int:
        return int(self.input.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.input.shape[1:])

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise WorkloadError("no such layer", file=self.source, key=name, expected="a layer of the trace",
                            found=name, suggestion=did_you_mean(name, [x.name for x in self.layers]))

    def has_weights(self, name: str) -> bool:
        return name in self.weights or name in self.packed_weights

    def weight(self, name: str) -> np.ndarray:
        """The float32 weights of a layer (unpacked from binary form when stored so)."""
        if name in self.weights:
            return self.weights[name]
        if name in self.packed_weights:
            bits, scale = self.packed_weights[name]
            shape = self.layer(name).weight_shape
            n = int(np.prod(shape))
            signs = np.unpackbits(bits, count=n).astype(np.float32) * 2.0 - 1.0
            w = signs.reshape(shape) * scale.reshape((-1,) + (1,) * (len(shape) - 1))
            return w.astype(np.float32)
        raise WorkloadError("the trace holds no weights for this layer", file=self.source, key=f"weights/{name}",
                            expected="weights/<layer> or binary_weights/<layer>", found="neither")

    def packed(self, name: str) -> np.ndarray:
        """The packed spikes of a spiking layer, after a cheap check of their type, dtype and
        shape (an array put in place by hand may be anything)."""
        layer = self.layer(name)
        a = self.packed_spikes.get(name)
        want = (self.samples, self.time_steps, math.ceil(layer.out_size / 8))
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.shape != want:
            raise WorkloadError("packed spikes missing or misshaped", file=self.source,
                                key=f"packed_spikes[{name!r}]", expected=f"uint8 ndarray {list(want)}",
                                found=describe_array(a), suggestion=PACK_HINT)
        return a

    def spikes(self, name: str) -> np.ndarray:
        """Unpacked spikes of a layer: bool (samples, T, *out_shape)."""
        layer = self.layer(name)
        flat = np.unpackbits(self.packed(name), axis=-1, count=layer.out_size).astype(bool)
        return flat.reshape(self.samples, self.time_steps, *layer.out_shape)

    def spike_counts(self, name: str) -> np.ndarray:
        """Spikes per (sample, step) of a layer, int64, counted from the packed bits."""
        return self.derived(name, "counts", lambda a: np.bitwise_count(a).sum(axis=-1, dtype=np.int64))

    def spike_form(self, name: str):
        """A layer's spikes in the form the replay kernels read (:mod:`snnsim.hw.spikes`)."""
        hit = self.__dict__.get("_derived", {}).get(("form", name))
        if hit is not None and hit[0] is self.packed_spikes.get(name) and not hit[0].flags.writeable:
            return hit[1]  # the common case, kept short: every replay asks for every map
        from ..hw.spikes import spike_form

        layer = self.layer(name)
        plane = layer.out_size // layer.out_shape[0] if len(layer.out_shape) > 1 else layer.out_size
        return self.derived(name, "form", lambda a: spike_form(a, layer.out_size, plane))

    def derived(self, name: str, kind: str, compute: Callable[[np.ndarray], Any]) -> Any:
        """``compute(packed spikes of name)``, kept while that array is read-only and in place.

        The loader and :func:`pack_spikes` give read-only arrays, so every hardware replaying a
        trace reuses what was derived from its spikes once. A writable array (one a caller may
        still change) is never cached, and replacing an array invalidates what was derived
        from the old one."""
        arr = self.packed(name)
        if arr.flags.writeable:
            return compute(arr)
        cache = self.__dict__.setdefault("_derived", {})
        hit = cache.get((kind, name))
        if hit is None or hit[0] is not arr:
            hit = cache[(kind, name)] = (arr, compute(arr))
        return hit[1]

    def spike_count_table(self, names: list[str]) -> np.ndarray:
        """Spikes per (sample, layer of ``names``, step), int64, derived like :meth:`derived`."""
        arrays = tuple(self.packed_spikes.get(n) for n in names)
        cache = self.__dict__.setdefault("_count_tables", {})
        key = tuple(names)
        hit = cache.get(key)
        if (hit is not None and all(a is b for a, b in zip(hit[0], arrays, strict=True))
                and not any(a.flags.writeable for a in arrays)):
            return hit[1]
        table = np.zeros((self.samples, len(names), self.time_steps), np.int64)
        for i, n in enumerate(names):
            table[:, i, :] = self.spike_counts(n)
        if len(cache) > 16:  # a few layer lists recur (the core's, the report's): keep the cache small
            cache.clear()
        cache[key] = (arrays, table)
        return table

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "model": self.model,
            "dataset": self.dataset,
            "time_steps": self.time_steps,
            "samples": self.samples,
            "encoding": self.encoding,
            "input": {"shape": list(self.input_shape), "dtype": "float32", "range": [0.0, 1.0],
                      "layout": "channels_first"},
            "layers": [layer.as_dict() for layer in self.layers],
            "has_weights": sorted(set(self.weights) | set(self.packed_weights)),
            "provenance": self.provenance,
        }


def pack_spikes(spikes: np.ndarray) -> np.ndarray:
    """bool/0-1 array (samples, T, *shape) -> packed uint8 (samples, T, ceil(N/8)), MSB first."""
    s, t = spikes.shape[:2]
    flat = np.ascontiguousarray(spikes, dtype=bool).reshape(s, t, -1)
    packed = np.packbits(flat, axis=-1)
    packed.flags.writeable = False  # a trace's spikes do not change once recorded (copy to edit)
    return packed


def _check_arrays(wl: Workload) -> None:
    """The arrays a writer is about to store must match the graph (the reader checks them again)."""
    for layer in wl.layers:
        if layer.spiking:
            want = (wl.samples, wl.time_steps, math.ceil(layer.out_size / 8))
            a = wl.packed_spikes.get(layer.name)
            if a is None or tuple(a.shape) != want:
                raise WorkloadError("spikes of a spiking layer missing or misshaped", key=f"spikes/{layer.name}",
                                    expected=f"uint8 {list(want)} (use pack_spikes)",
                                    found="nothing" if a is None else f"{a.dtype.name} {list(a.shape)}")
        if layer.neuron is not None and layer.neuron.per_channel and layer.name not in wl.thresholds:
            raise WorkloadError("per-channel thresholds missing", key=f"thresholds/{layer.name}",
                                expected=f"float32 [{layer.out_shape[0]}]", found="nothing")
    names = {la.name: la for la in wl.layers}
    for name, w in wl.weights.items():
        if name not in names or names[name].weight_shape is None or tuple(w.shape) != names[name].weight_shape:
            raise WorkloadError("weights do not fit their layer", key=f"weights/{name}",
                                expected=str(list(names[name].weight_shape)) if name in names else "a layer name",
                                found=f"{list(w.shape)}")
    for name, th in wl.thresholds.items():
        if name not in names or names[name].neuron is None or tuple(th.shape) != (names[name].out_shape[0],):
            raise WorkloadError("thresholds do not fit their layer", key=f"thresholds/{name}",
                                expected="one per output channel of a layer with a neuron", found=f"{list(th.shape)}")


PACK_HINT = ("build packed spikes with snnsim.workload.trace.pack_spikes(bool array (samples, T, *out_shape)) "
             "and put them in place: wl.packed_spikes[name] = pack_spikes(edited)")


def describe_array(a: Any) -> str:
    """``float32 ('<f4') [2, 3]`` for an array, the type name for anything else."""
    if isinstance(a, np.ndarray):
        return f"{describe_dtype(a.dtype)} {list(a.shape)}"
    return "nothing" if a is None else f"a {type(a).__name__}, not a numpy array"


def _frozen(a: np.ndarray) -> bool:
    """Read-only and so is the memory under it: a check of its values stays true while the same
    array object is in place (a read-only view of a writable array could still change)."""
    base = a.base
    return not a.flags.writeable and (base is None or isinstance(base, bytes)
                                      or isinstance(base, np.ndarray) and not base.flags.writeable)


def check_replay_arrays(wl: Workload) -> None:
    """Check every array a replay (:func:`snnsim.simulation.simulate`) reads, cheaply.

    The loader checks what a file holds; a caller may since have put other arrays in place
    (``docs/workload-format.md`` tells how to edit spikes that way), and a wrong dtype or shape
    would otherwise give silently wrong counts (a uint16 bitmap) or a raw NumPy error. Checked:
    the graph; ``input`` float32 (samples, *input_shape), finite, in [0, 1]; per spiking layer,
    packed spikes uint8 (samples, T, ceil(N / 8)) with zero padding bits; every weight array
    float32 of the layer's weight shape and finite; binary weights uint8 (ceil(N_w / 8),) with
    float32 scales (C_out,) > 0; thresholds float32 (C_out,) > 0, present where per-channel.

    What passed is remembered per read-only array (by identity, as :meth:`Workload.derived`
    keeps what it derives); a writable array is checked again at every call."""
    snapshot = _replay_snapshot(wl)
    last = wl.__dict__.get("_replay_ok")
    if last is not None and len(last) == len(snapshot) and all(a is b for a, b in zip(last, snapshot, strict=True)):
        return  # the same read-only arrays and graph that passed last time: nothing to check again
    src = wl.source
    x = wl.input
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim < 2 or x.size == 0:
        raise WorkloadError("input is not a float32 array (samples, *input_shape)", file=src, key="input",
                            expected="float32 ndarray (samples, *input_shape), values in [0, 1]",
                            found=describe_array(x), suggestion="np.asarray(images, dtype=np.float32)")
    t = wl.time_steps
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise WorkloadError("time_steps must be a positive integer", file=src, key="time_steps",
                            expected="an integer >= 1", found=repr(t))
    try:
        check_graph_once(wl, wl.layers, wl.input_shape)
    except WorkloadError as e:
        raise WorkloadError(e.message, file=e.file or src, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    done = wl.__dict__.setdefault("_replay_checked", {})

    def once(slot: tuple, a: Any, key: str, dtype: Any, shape: tuple[int, ...], check: Callable) -> None:
        hit = done.get(slot)
        if hit is not None and hit[0] is a and hit[1] == shape:
            return
        if not isinstance(a, np.ndarray) or a.dtype != np.dtype(dtype) or a.shape != shape:
            raise WorkloadError("array missing or misshaped", file=src, key=key,
                                expected=f"{describe_dtype(np.dtype(dtype))} ndarray {list(shape)}",
                                found=describe_array(a), suggestion=PACK_HINT if dtype is np.uint8 else None)
        _raise(check(a))
        if _frozen(a):
            done[slot] = (a, shape)
        else:
            done.pop(slot, None)

    def values(kind: str, key: str) -> Callable:
        return lambda a: _value_error(src, key, a, kind)

    once(("input",), x, "input", np.float32, x.shape, values("input", "input"))
    names = {la.name: la for la in wl.layers}
    for layer in wl.layers:
        if layer.spiking:
            key = f"packed_spikes[{layer.name!r}]"
            want = (wl.samples, int(t), math.ceil(layer.out_size / 8))
            once(("spikes", layer.name, layer.out_size), wl.packed_spikes.get(layer.name), key, np.uint8, want,
                 lambda a, la=layer, k=key: _padding_error(a, la.out_size, src, k))
        if layer.neuron is not None and layer.neuron.per_channel and layer.name not in wl.thresholds:
            raise WorkloadError("per-channel thresholds missing", file=src, key=f"thresholds[{layer.name!r}]",
                                expected=f"float32 [{layer.out_shape[0]}]", found="nothing")
    for what, table in (("packed_spikes", wl.packed_spikes), ("weights", wl.weights),
                        ("packed_weights", wl.packed_weights), ("thresholds", wl.thresholds)):
        for name in table:
            la = names.get(name)
            fits = la is not None and {"packed_spikes": la.spiking, "thresholds": la.neuron is not None}.get(
                what, la.weight_shape is not None)
            if not fits:
                raise WorkloadError(f"{what} of a layer that has none or is not in the graph", file=src,
                                    key=f"{what}[{name!r}]", expected="a layer of the graph that takes them",
                                    found=name, suggestion=did_you_mean(name, names))
    for name, w in wl.weights.items():
        key = f"weights[{name!r}]"
        once(("weights", name), w, key, np.float32, names[name].weight_shape, values("finite", key))
    for name, pair in wl.packed_weights.items():
        shape = names[name].weight_shape
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise WorkloadError("binary weights must be a pair", file=src, key=f"packed_weights[{name!r}]",
                                expected="(packed sign bits, per-channel scales)", found=describe_array(pair))
        once(("bits", name), pair[0], f"packed_weights[{name!r}][0]", np.uint8,
             (math.ceil(math.prod(shape) / 8),), lambda a: None)
        key = f"packed_weights[{name!r}][1]"
        once(("scales", name), pair[1], key, np.float32, (shape[0],), values("positive", key))
    for name, th in wl.thresholds.items():
        key = f"thresholds[{name!r}]"
        once(("thresholds", name), th, key, np.float32, (names[name].out_shape[0],), values("positive", key))
    arrays = [a for a in snapshot if isinstance(a, np.ndarray)]
    wl.__dict__["_replay_ok"] = snapshot if all(_frozen(a) for a in arrays) else None


def _replay_snapshot(wl: Workload) -> tuple:
    """Everything :func:`check_replay_arrays` reads, as objects compared by identity."""
    out: list[Any] = [wl.input, wl.time_steps, wl.__dict__.get("_checked_graph"), len(wl.layers)]
    for table in (wl.packed_spikes, wl.weights, wl.thresholds):
        out.append(len(table))
        for name, a in table.items():
            out += [name, a]
    out.append(len(wl.packed_weights))
    for name, pair in wl.packed_weights.items():
        out += [name, pair] + (list(pair) if isinstance(pair, tuple) else [])
    return tuple(out)


def binary_form(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(packed signs, per-channel scale) if every weight of a channel is +-the same scale > 0."""
    w = np.asarray(w, dtype=np.float32)
    flat = np.abs(w.reshape(w.shape[0], -1))
    scale = flat[:, 0].copy()
    if np.any(scale <= 0) or not np.array_equal(flat, np.broadcast_to(scale[:, None], flat.shape)):
        return None
    return np.packbits((w > 0).reshape(-1)), scale.astype(np.float32)


def save_workload(wl: Workload, path: str | Path, compressed: bool = False) -> Path:
    """Write a trace atomically (temporary file, then rename). Stored uncompressed by default,
    because uncompressed arrays load ~6x faster and bitmaps compress only ~2.7x at 5% firing."""
    check_graph(wl.layers, wl.input_shape)
    _check_arrays(wl)
    arrays: dict[str, np.ndarray] = {
        "manifest": np.frombuffer(json.dumps(wl.manifest(), indent=1).encode("utf-8"), dtype=np.uint8),
        "input": np.ascontiguousarray(wl.input, dtype=np.float32),
    }
    for layer in wl.layers:
        if layer.spiking:
            arrays[f"spikes/{layer.name}"] = np.ascontiguousarray(wl.packed_spikes[layer.name], dtype=np.uint8)
    for name, (bits, scale) in wl.packed_weights.items():
        arrays[f"binary_weights/{name}"] = np.ascontiguousarray(bits, dtype=np.uint8)
        arrays[f"weight_scales/{name}"] = np.ascontiguousarray(scale, dtype=np.float32)
    for name, w in wl.weights.items():
        packed = binary_form(w) if wl.layer(name).weight_bits == 1 else None
        if packed is not None:
            arrays[f"binary_weights/{name}"], arrays[f"weight_scales/{name}"] = packed
        else:
            arrays[f"weights/{name}"] = np.ascontiguousarray(w, dtype=np.float32)
    for name, th in wl.thresholds.items():
        arrays[f"thresholds/{name}"] = np.ascontiguousarray(th, dtype=np.float32)
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)

    return atomic_write(path, write)


# Bounds of the manifest (the arrays are bounded by the file, see npzfile): counts and sizes fit
# in 31 bits so no product of a few of them overflows int64 in a kernel
MAX_MANIFEST_BYTES = 64 << 20
MAX_COUNT = 2**31 - 1
_FROM_NIR = "snnsim workload from-nir GRAPH --inputs INPUTS.npy -o TRACE.npz"
_SWAPPED = ("the arguments look swapped: give the hardware config first, then the trace "
            "(snnsim run HWCONFIG TRACE)")


def load_workload(path: str | Path) -> Workload:
    """Read and check a v1 trace: the file's kind, the container (:class:`.npzfile.NpzArchive`),
    the manifest's types, the graph, every array's header against the manifest before any data
    is read, then the values (input in [0, 1], padding bits zero, thresholds and scales > 0)."""
    source = str(path)
    p = checked_trace_path(path)
    with NpzArchive(p, source) as z:
        man = _read_manifest(z, source)
        if isinstance(man, dict) and man.get("format") == FORMAT_NAME and man.get("version") == 2:
            from .graphtrace import graph_from_manifest, to_workload

            return to_workload(graph_from_manifest(man, z, source))
        return _from_manifest(man, z, source)


def checked_trace_path(path: str | Path) -> Path:
    """The path of an existing regular file that looks like an .npz (else one WorkloadError
    saying what it is instead: missing, a folder, a NIR graph, YAML, a single .npy...)."""
    source = str(path)
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise WorkloadError("file not found", file=source, expected="an existing .npz spike trace",
                            found="no such file") from None
    except (OSError, ValueError) as e:  # ENAMETOOLONG, EACCES, ELOOP, an embedded NUL...
        raise WorkloadError("cannot open the file", file=source, expected="a readable .npz spike trace",
                            found=os_error_text(e) if isinstance(e, OSError) else str(e)) from None
    if stat.S_ISDIR(st.st_mode):
        raise WorkloadError("is a directory", file=source, expected="an .npz file", found="a directory")
    if not stat.S_ISREG(st.st_mode):  # opening a FIFO would wait for a writer
        raise WorkloadError("not a regular file", file=source, expected="an .npz file",
                            found="a FIFO, device or socket")
    _refuse_other_formats(sniff(p, source), source)
    return p


def _refuse_other_formats(kind: str, source: str) -> None:
    """A clear message for the files most often given in a trace's place."""
    if kind == "zip":
        return
    message, found, hint = {
        "hdf5": ("this is a NIR graph (HDF5), not a spike trace", "an HDF5 file",
                 f"make a trace from it: {_FROM_NIR} (or --spikes DATA for recorded spikes)"),
        "npy": ("not an .npz archive: a single .npy array, not a spike trace", "a single .npy array",
                "a trace is an .npz of named arrays (save_workload writes one); from a NIR graph and "
                f"its inputs: {_FROM_NIR}"),
        "yaml": ("this is a YAML file (a hardware config?), not an .npz spike trace", "YAML text", _SWAPPED),
        "text": ("not an .npz archive: the file is text", "text", f"if it is a hardware config, {_SWAPPED}"),
        "empty": ("not an .npz archive: the file is empty", "0 bytes", None),
    }.get(kind, ("not an .npz archive (another format)", "bytes of another format", None))
    raise WorkloadError(message, file=source, expected="an .npz spike trace (format v1)", found=found,
                        suggestion=hint)


def _read_manifest(z: NpzArchive, source: str) -> Any:
    if "manifest" not in z.names:
        raise WorkloadError("no manifest", file=source, key="manifest",
                            expected="a 'manifest' array (UTF-8 JSON)", found=f"arrays {sorted(z.names)[:8]}")
    return z.read_json("manifest", MAX_MANIFEST_BYTES)


def _field(man: dict, key: str, kind: type | tuple, source: str, check=None, expected: str = "") -> Any:
    if key not in man:
        raise WorkloadError("manifest misses a field", file=source, key=f"manifest.{key}",
                            expected=expected or kind.__name__, found="nothing",
                            suggestion=did_you_mean(key, man))
    v = man[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is int or (check and not check(v)):
        raise WorkloadError("invalid manifest field", file=source, key=f"manifest.{key}",
                            expected=expected or getattr(kind, "__name__", str(kind)), found=repr(v)[:200])
    return v


def _is_count(v: Any) -> bool:
    """A JSON integer (not a boolean) in 1..MAX_COUNT."""
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_COUNT


def _text(man: dict, key: str, default: str, source: str) -> str:
    v = man.get(key, default)
    if not isinstance(v, str):
        raise WorkloadError("invalid manifest field", file=source, key=f"manifest.{key}", expected="a string",
                            found=repr(v)[:200])
    return v


def _weighted_layer(array_name: str, by_name: dict[str, Layer], source: str) -> str:
    """The layer a ``weights/``-like array belongs to; it must exist and have weights."""
    lname = array_name.partition("/")[2]
    if lname not in by_name or by_name[lname].weight_shape is None:
        raise WorkloadError("weights for a layer that has none", file=source, key=array_name,
                            expected="a conv2d, conv3d or linear layer", found=lname,
                            suggestion=did_you_mean(lname, by_name))
    return lname


def _array_plan(names: list[str], layers: list[Layer], samples: int, steps: int, in_shape: tuple[int, ...],
                source: str) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """name -> (dtype, shape) of every array the file must and may hold, from the manifest; an
    unexpected, misplaced or missing array is refused here, before any array is read."""
    by_name = {layer.name: layer for layer in layers}
    plan: dict[str, tuple[Any, tuple[int, ...]]] = {"input": (np.float32, (samples, *in_shape))}
    for layer in layers:
        if layer.spiking:
            plan[f"spikes/{layer.name}"] = (np.uint8, (samples, steps, math.ceil(layer.out_size / 8)))
    present = set(names)
    for name in names:
        prefix, _, lname = name.partition("/")
        if name in ("manifest", "input"):
            continue
        if prefix == "spikes":
            if name not in plan:
                raise WorkloadError("spikes for a layer that is not spiking or not in the manifest", file=source,
                                    key=name, expected="one array per spiking layer", found=name)
        elif prefix == "weights":
            plan[name] = (np.float32, by_name[_weighted_layer(name, by_name, source)].weight_shape)
        elif prefix == "binary_weights":
            shape = by_name[_weighted_layer(name, by_name, source)].weight_shape
            plan[name] = (np.uint8, (math.ceil(math.prod(shape) / 8),))
            plan[f"weight_scales/{lname}"] = (np.float32, (shape[0],))
        elif prefix == "weight_scales":
            if f"binary_weights/{lname}" not in present:
                raise WorkloadError("weight scales without binary weights", file=source, key=name,
                                    expected=f"binary_weights/{lname} beside it", found="none")
        elif prefix == "thresholds":
            if lname not in by_name or by_name[lname].neuron is None:
                raise WorkloadError("thresholds for a layer without a neuron", file=source, key=name,
                                    expected="a layer with a neuron", found=lname,
                                    suggestion=did_you_mean(lname, by_name))
            plan[name] = (np.float32, (by_name[lname].out_shape[0],))
        else:
            raise WorkloadError("unexpected array", file=source, key=name,
                                expected="manifest, input, spikes/*, weights/*, binary_weights/*, "
                                "weight_scales/*, thresholds/*", found=name)
    for name, (dtype, shape) in plan.items():
        if name not in present:
            raise WorkloadError("array missing", file=source, key=name,
                                expected=f"{describe_dtype(np.dtype(dtype))} array of shape {list(shape)}",
                                found="no such array", suggestion=did_you_mean(name, names))
    for layer in layers:
        if layer.neuron is not None and layer.neuron.per_channel and f"thresholds/{layer.name}" not in plan:
            raise WorkloadError("per-channel thresholds missing", file=source, key=f"thresholds/{layer.name}",
                                expected=f"float32 [{layer.out_shape[0]}]", found="no such array")
    return plan


def _finite(a: np.ndarray) -> bool:
    """No NaN or infinity (min and max propagate both; no temporary array)."""
    return a.size == 0 or (math.isfinite(a.min()) and math.isfinite(a.max()))


def _value_error(source: str, key: str, a: np.ndarray, kind: str) -> WorkloadError | None:
    """The error for values a replay must not see, or None: ``input`` in [0, 1], ``positive``
    finite values > 0, ``finite`` values."""
    if a.size == 0:
        return None
    lo, hi = float(a.min()), float(a.max())
    if math.isfinite(lo) and math.isfinite(hi):
        if kind == "input" and (lo < 0.0 or hi > 1.0):
            return WorkloadError("input values out of range", file=source, key=key,
                                 expected="analog pixel values in [0, 1]", found=f"[{lo:g}, {hi:g}]")
        if kind == "positive" and lo <= 0.0:
            return WorkloadError("values must be finite and positive", file=source, key=key,
                                 expected="values > 0", found=f"min {lo:g}")
        return None
    what = {"input": "finite values in [0, 1]", "positive": "finite values > 0"}.get(kind, "finite values")
    return WorkloadError("array holds NaN or infinite values", file=source, key=key, expected=what,
                         found="non-finite values")


def _padding_error(a: np.ndarray, n_neurons: int, source: str, key: str) -> WorkloadError | None:
    pad = a.shape[-1] * 8 - n_neurons
    if pad and np.any(a[..., -1] & np.uint8((1 << pad) - 1)):
        return WorkloadError("padding bits past the last neuron are set", file=source, key=key,
                             expected=f"the last {pad} bits of each row zero", found="ones in the padding",
                             suggestion="pack spikes with pack_spikes(bool array (samples, T, *out_shape))")
    return None


def _raise(err: WorkloadError | None) -> None:
    if err is not None:
        raise err


def _from_manifest(man: Any, z: NpzArchive, source: str) -> Workload:
    if not isinstance(man, dict):
        raise WorkloadError("manifest must be a JSON object", file=source, key="manifest",
                            expected="{...}", found=type(man).__name__)
    fmt = man.get("format")
    if fmt != FORMAT_NAME:
        raise WorkloadError("not an snnsim trace", file=source, key="manifest.format",
                            expected=repr(FORMAT_NAME), found=repr(fmt)[:200])
    version = man.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise WorkloadError("unsupported format version", file=source, key="manifest.version",
                            expected=str(FORMAT_VERSION), found=repr(version)[:200],
                            suggestion="upgrade snnsim, or re-export the trace" if isinstance(version, int)
                            and version > FORMAT_VERSION else None)
    count = f"an integer in 1..{MAX_COUNT}"
    steps = _field(man, "time_steps", int, source, _is_count, count)
    samples = _field(man, "samples", int, source, _is_count, count)
    encoding = man.get("encoding", "direct")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise WorkloadError("unsupported input encoding", file=source, key="manifest.encoding",
                            expected=" or ".join(ENCODINGS), found=repr(encoding)[:200])
    model, dataset = _text(man, "model", "unnamed", source), _text(man, "dataset", "unknown", source)
    provenance = man.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        raise WorkloadError("invalid manifest field", file=source, key="manifest.provenance",
                            expected="a JSON object (or null)", found=repr(provenance)[:200])
    inp = _field(man, "input", dict, source, expected="{shape: [...]}")
    shape = inp.get("shape")
    if not isinstance(shape, list) or not shape or not all(_is_count(s) for s in shape):
        raise WorkloadError("invalid input shape", file=source, key="manifest.input.shape",
                            expected=f"a non-empty list of integers in 1..{MAX_COUNT} (channels first)",
                            found=repr(shape)[:200])
    layers_raw = _field(man, "layers", list, source, lambda v: len(v) > 0, "a non-empty list of layers")
    try:
        layers = [layer_from_dict(d, i) for i, d in enumerate(layers_raw)]
        check_graph(layers, tuple(shape))
    except WorkloadError as e:
        raise WorkloadError(e.message, file=source, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    plan = _array_plan(z.names, layers, samples, steps, tuple(shape), source)
    for name, (dtype, want) in plan.items():  # every header before any data: a lie fails here
        z.expect(name, dtype, want)
    sizes = {layer.name: layer.out_size for layer in layers}
    arrays = {}
    for name, (dtype, want) in plan.items():
        a = arrays[name] = z.read(name, dtype, want)
        a.flags.writeable = False  # the trace's record: what is checked and derived from it can be kept
        prefix, _, lname = name.partition("/")
        if name == "input":
            _raise(_value_error(source, name, a, "input"))
        elif prefix == "spikes":
            _raise(_padding_error(a, sizes[lname], source, name))
        elif a.dtype.kind == "f":
            _raise(_value_error(source, name, a, "positive" if prefix in ("thresholds", "weight_scales")
                                else "finite"))
    packed = {n.partition("/")[2]: a for n, a in arrays.items() if n.startswith("spikes/")}
    weights = {n.partition("/")[2]: a for n, a in arrays.items() if n.startswith("weights/")}
    thresholds = {n.partition("/")[2]: a for n, a in arrays.items() if n.startswith("thresholds/")}
    packed_weights = {n.partition("/")[2]: (a, arrays[f"weight_scales/{n.partition('/')[2]}"])
                      for n, a in arrays.items() if n.startswith("binary_weights/")}
    return Workload(layers=layers, input=arrays["input"], packed_spikes=packed, time_steps=steps,
                    model=model, dataset=dataset, encoding=encoding, weights=weights, thresholds=thresholds,
                    packed_weights=packed_weights, provenance=dict(provenance or {}), source=source)

