"""Spike-trace format v1: one ``.npz`` (read with ``allow_pickle=False``), documented in
``docs/workload-format.md``.

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
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WorkloadError, did_you_mean
from ..fileio import atomic_write
from .graph import Layer, check_graph, layer_from_dict

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

    def spikes(self, name: str) -> np.ndarray:
        """Unpacked spikes of a layer: bool (samples, T, *out_shape)."""
        layer = self.layer(name)
        packed = self.packed_spikes[name]
        flat = np.unpackbits(packed, axis=-1, count=layer.out_size).astype(bool)
        return flat.reshape(self.samples, self.time_steps, *layer.out_shape)

    def spike_counts(self, name: str) -> np.ndarray:
        """Spikes per (sample, step) of a layer, int64, counted from the packed bits."""
        return self.derived(name, "counts", lambda a: np.bitwise_count(a).sum(axis=-1, dtype=np.int64))

    def spike_form(self, name: str):
        """A layer's spikes in the form the replay kernels read (:mod:`snnsim.hw.spikes`)."""
        hit = self.__dict__.get("_derived", {}).get(("form", name))
        if hit is not None and hit[0] is self.packed_spikes[name] and not hit[0].flags.writeable:
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
        arr = self.packed_spikes[name]
        if arr.flags.writeable:
            return compute(arr)
        cache = self.__dict__.setdefault("_derived", {})
        hit = cache.get((kind, name))
        if hit is None or hit[0] is not arr:
            hit = cache[(kind, name)] = (arr, compute(arr))
        return hit[1]

    def spike_count_table(self, names: list[str]) -> np.ndarray:
        """Spikes per (sample, layer of ``names``, step), int64, derived like :meth:`derived`."""
        arrays = tuple(self.packed_spikes[n] for n in names)
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


def _expect(arrays: Any, name: str, shape: tuple[int, ...], dtype: Any, source: str) -> np.ndarray:
    if name not in arrays.files:
        raise WorkloadError("array missing", file=source, key=name,
                            expected=f"{np.dtype(dtype).name} array of shape {list(shape)}", found="no such array",
                            suggestion=did_you_mean(name, arrays.files))
    try:
        a = arrays[name]
    except ValueError as e:
        raise WorkloadError("array cannot be read without pickle (object arrays are refused)", file=source,
                            key=name, expected=f"{np.dtype(dtype).name} array", found=str(e).split(".")[0]) from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WorkloadError("array is damaged", file=source, key=name, expected="a readable array",
                            found=str(e)) from None
    if a.dtype != np.dtype(dtype) or tuple(a.shape) != tuple(shape):
        raise WorkloadError("array has the wrong shape or dtype", file=source, key=name,
                            expected=f"{np.dtype(dtype).name} {list(shape)}", found=f"{a.dtype.name} {list(a.shape)}")
    return a


def load_workload(path: str | Path) -> Workload:
    """Read and check a v1 trace: every array against the manifest, the graph for consistency."""
    source = str(path)
    p = Path(path)
    if not p.exists():
        raise WorkloadError("file not found", file=source, expected="an existing .npz spike trace",
                            found="no such file")
    if p.is_dir():
        raise WorkloadError("is a directory", file=source, expected="an .npz file", found="a directory")
    try:
        arrays = np.load(p, allow_pickle=False)
    except ValueError as e:
        raise WorkloadError("not a spike trace: the file holds a pickle, which snnsim never loads", file=source,
                            expected="an .npz archive written by snnsim", found=str(e).split(".")[0]) from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WorkloadError("not an .npz archive (truncated or another format)", file=source,
                            expected="an .npz archive", found=str(e) or type(e).__name__) from None
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise WorkloadError("not an .npz archive", file=source, expected="an .npz archive of named arrays",
                            found="a single .npy array")
    with arrays:
        if "manifest" not in arrays.files:
            raise WorkloadError("no manifest", file=source, key="manifest",
                                expected="a 'manifest' array (UTF-8 JSON)", found=f"arrays {sorted(arrays.files)[:8]}")
        m = _expect_any(arrays, "manifest", source)
        if m.dtype != np.uint8 or m.ndim != 1:
            raise WorkloadError("manifest must be UTF-8 bytes", file=source, key="manifest",
                                expected="uint8 1-D array", found=f"{m.dtype.name} {list(m.shape)}")
        try:
            man = json.loads(m.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WorkloadError("manifest is not valid JSON", file=source, key="manifest", expected="UTF-8 JSON",
                                found=str(e)) from None
        return _from_manifest(man, arrays, source)


def _expect_any(arrays: Any, name: str, source: str) -> np.ndarray:
    try:
        return arrays[name]
    except ValueError as e:
        raise WorkloadError("array cannot be read without pickle (object arrays are refused)", file=source,
                            key=name, expected="a plain numeric array", found=str(e).split(".")[0]) from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WorkloadError("array is damaged", file=source, key=name, expected="a readable array",
                            found=str(e)) from None


def _field(man: dict, key: str, kind: type | tuple, source: str, check=None, expected: str = "") -> Any:
    if key not in man:
        raise WorkloadError("manifest misses a field", file=source, key=f"manifest.{key}",
                            expected=expected or kind.__name__, found="nothing",
                            suggestion=did_you_mean(key, man))
    v = man[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is int or (check and not check(v)):
        raise WorkloadError("invalid manifest field", file=source, key=f"manifest.{key}",
                            expected=expected or getattr(kind, "__name__", str(kind)), found=repr(v))
    return v


def _weighted_layer(array_name: str, by_name: dict[str, Layer], source: str) -> str:
    """The layer a ``weights/``-like array belongs to; it must exist and have weights."""
    lname = array_name.split("/", 1)[1]
    if lname not in by_name or by_name[lname].weight_shape is None:
        raise WorkloadError("weights for a layer that has none", file=source, key=array_name,
                            expected="a conv2d, conv3d or linear layer", found=lname,
                            suggestion=did_you_mean(lname, by_name))
    return lname


def _from_manifest(man: Any, arrays: Any, source: str) -> Workload:
    if not isinstance(man, dict):
        raise WorkloadError("manifest must be a JSON object", file=source, key="manifest",
                            expected="{...}", found=type(man).__name__)
    fmt = man.get("format")
    if fmt != FORMAT_NAME:
        raise WorkloadError("not an snnsim trace", file=source, key="manifest.format",
                            expected=repr(FORMAT_NAME), found=repr(fmt))
    version = man.get("version")
    if version != FORMAT_VERSION:
        raise WorkloadError("unsupported format version", file=source, key="manifest.version",
                            expected=str(FORMAT_VERSION), found=repr(version),
                            suggestion="upgrade snnsim, or re-export the trace" if isinstance(version, int)
                            and version > FORMAT_VERSION else None)
    steps = _field(man, "time_steps", int, source, lambda v: v >= 1, "an integer >= 1")
    samples = _field(man, "samples", int, source, lambda v: v >= 1, "an integer >= 1")
    encoding = man.get("encoding", "direct")
    if encoding not in ENCODINGS:
        raise WorkloadError("unsupported input encoding", file=source, key="manifest.encoding",
                            expected=" or ".join(ENCODINGS), found=repr(encoding))
    inp = _field(man, "input", dict, source, expected="{shape: [...]}")
    shape = inp.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise WorkloadError("invalid input shape", file=source, key="manifest.input.shape",
                            expected="a list of positive integers (channels first)", found=repr(shape))
    layers_raw = _field(man, "layers", list, source, lambda v: len(v) > 0, "a non-empty list of layers")
    try:
        layers = [layer_from_dict(d, i) for i, d in enumerate(layers_raw)]
        check_graph(layers, tuple(shape))
    except WorkloadError as e:
        e.file = source
        raise WorkloadError(e.message, file=source, key=e.key, expected=e.expected, found=e.found,
                            suggestion=e.suggestion) from None
    x = _expect(arrays, "input", (samples, *shape), np.float32, source)
    if not np.all(np.isfinite(x)):
        raise WorkloadError("input holds NaN or infinite values", file=source, key="input",
                            expected="finite values in [0, 1]", found="non-finite values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise WorkloadError("input values out of range", file=source, key="input",
                            expected="analog pixel values in [0, 1]", found=f"[{x.min():g}, {x.max():g}]")
    packed = {}
    for layer in layers:
        if layer.spiking:
            nbytes = math.ceil(layer.out_size / 8)
            a = _expect(arrays, f"spikes/{layer.name}", (samples, steps, nbytes), np.uint8, source)
            pad = nbytes * 8 - layer.out_size
            if pad and np.any(a[..., -1] & np.uint8((1 << pad) - 1)):
                raise WorkloadError("padding bits past the last neuron are set", file=source,
                                    key=f"spikes/{layer.name}", expected=f"the last {pad} bits of each row zero",
                                    found="ones in the padding")
            a.flags.writeable = False  # the trace's record: what is derived from it can be kept
            packed[layer.name] = a
    weights, thresholds, packed_weights = {}, {}, {}
    by_name = {layer.name: layer for layer in layers}
    for name in arrays.files:
        if name.startswith("weights/"):
            lname = _weighted_layer(name, by_name, source)
            weights[lname] = _expect(arrays, name, by_name[lname].weight_shape, np.float32, source)
        elif name.startswith("binary_weights/"):
            lname = _weighted_layer(name, by_name, source)
            shape = by_name[lname].weight_shape
            bits = _expect(arrays, name, (math.ceil(math.prod(shape) / 8),), np.uint8, source)
            scales = _expect(arrays, f"weight_scales/{lname}", (shape[0],), np.float32, source)
            if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
                raise WorkloadError("weight scales must be finite and positive", file=source,
                                    key=f"weight_scales/{lname}", expected="values > 0", found=f"min {scales.min():g}")
            packed_weights[lname] = (bits, scales)
        elif name.startswith("weight_scales/"):
            if f"binary_weights/{name.split('/', 1)[1]}" not in arrays.files:
                raise WorkloadError("weight scales without binary weights", file=source, key=name,
                                    expected=f"binary_weights/{name.split('/', 1)[1]} beside it", found="none")
        elif name.startswith("thresholds/"):
            lname = name.split("/", 1)[1]
            if lname not in by_name or by_name[lname].neuron is None:
                raise WorkloadError("thresholds for a layer without a neuron", file=source, key=name,
                                    expected="a layer with a neuron", found=lname,
                                    suggestion=did_you_mean(lname, by_name))
            thresholds[lname] = _expect(arrays, name, (by_name[lname].out_shape[0],), np.float32, source)
            if not np.all(np.isfinite(thresholds[lname])) or np.any(thresholds[lname] <= 0):
                raise WorkloadError("thresholds must be finite and positive", file=source, key=name,
                                    expected="values > 0", found=f"min {thresholds[lname].min():g}")
        elif name not in ("manifest", "input") and not name.startswith("spikes/"):
            raise WorkloadError("unexpected array", file=source, key=name,
                                expected="manifest, input, spikes/*, weights/*, binary_weights/*, "
                                "weight_scales/*, thresholds/*", found=name)
        elif name.startswith("spikes/") and name.split("/", 1)[1] not in packed:
            raise WorkloadError("spikes for a layer that is not spiking or not in the manifest", file=source,
                                key=name, expected="one array per spiking layer", found=name)
    for layer in layers:
        if layer.neuron is not None and layer.neuron.per_channel and layer.name not in thresholds:
            raise WorkloadError("per-channel thresholds missing", file=source, key=f"thresholds/{layer.name}",
                                expected=f"float32 [{layer.out_shape[0]}]", found="no such array")
    return Workload(layers=layers, input=x, packed_spikes=packed, time_steps=steps,
                    model=str(man.get("model", "unnamed")), dataset=str(man.get("dataset", "unknown")),
                    encoding=encoding, weights=weights, thresholds=thresholds, packed_weights=packed_weights,
                    provenance=dict(man.get("provenance", {}) or {}), source=source)
