"""The layer graph of a workload: one small dataclass per layer, shape inference, and checks.

Layouts follow NIR / PyTorch: activations are channels-first (C, H, W) or (C, D, H, W); conv
weights are (C_out, C_in / groups, *kernel); linear weights are (out, in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import WorkloadError, did_you_mean

OPS = ("conv2d", "conv3d", "linear", "avgpool", "maxpool", "add", "flatten")
NEURON_MODELS = ("IF", "LIF")
RESET_MODES = ("subtract", "zero")
SPATIAL = {"conv2d": 2, "conv3d": 3, "avgpool": 2, "maxpool": 2}


@dataclass
class Neuron:
    """Integrate-and-fire neuron: v[t] = (1 - leak) v[t-1] + I[t]; spike when v >= threshold.

    Membranes start at 0 before the first step of every sample.

    ``reset`` is ``subtract`` (v -= threshold) or ``zero`` (v = 0). ``leak`` = 0 is IF.
    ``per_channel`` says the thresholds are in the trace's ``thresholds/<layer>`` array.
    """

    model: str = "IF"
    threshold: float = 1.0
    leak: float = 0.0
    reset: str = "subtract"
    per_channel: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "threshold": self.threshold, "leak": self.leak,
                "reset": self.reset, "per_channel": self.per_channel}


@dataclass
class Layer:
    """One node of the graph: a synaptic or structural op, optionally followed by a neuron.

    A layer's output is *spiking* (binary, recorded in the trace) when it has a neuron, or when it
    is a maxpool/flatten whose inputs are all spiking. Every input of a layer must be spiking or
    the analog ``input`` (format v1 rule: the processor sees only spikes after layer 0).
    """

    name: str
    op: str
    inputs: list[str]
    out_shape: tuple[int, ...]
    in_shape: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    groups: int = 1
    weight_bits: int = 1
    neuron: Neuron | None = None
    spiking: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # a format v2 hardware layer: its synapses, dense passes and neuron (snnsim.workload.hwlayer.Parts)
    parts: Any = field(default=None, compare=False, repr=False)

    @property
    def out_size(self) -> int:
        return math.prod(self.out_shape)

    @property
    def in_size(self) -> int:
        return math.prod(self.in_shape)

    @property
    def weight_shape(self) -> tuple[int, ...] | None:
        if self.op in ("conv2d", "conv3d"):
            return (self.out_shape[0], self.in_shape[0] // self.groups, *self.kernel)
        if self.op == "linear":
            return (self.out_shape[0], self.in_shape[0])
        return None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "op": self.op, "inputs": list(self.inputs),
                             "in_shape": list(self.in_shape), "out_shape": list(self.out_shape)}
        if self.op in SPATIAL:
            d.update(kernel=list(self.kernel), stride=list(self.stride), padding=list(self.padding))
        if self.op in ("conv2d", "conv3d"):
            d["groups"] = self.groups
        if self.op in ("conv2d", "conv3d", "linear"):
            d["weight_bits"] = self.weight_bits
        d["neuron"] = self.neuron.as_dict() if self.neuron else None
        if self.extra:
            d["extra"] = self.extra
        return d


def conv_out(size: int, k: int, s: int, p: int) -> int:
    """Output length of a convolution/pooling along one axis."""
    return (size + 2 * p - k) // s + 1


def infer_out_shape(layer: Layer, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape this layer's op gives for these input shapes (raises WorkloadError)."""
    name = layer.name
    first = in_shapes[0]
    if layer.op == "add":
        for s in in_shapes[1:]:
            if s != first:
                raise WorkloadError("inputs of an add have different shapes", key=f"layers.{name}",
                                    expected=str(list(first)), found=str(list(s)))
        return first
    if layer.op == "flatten":
        if len(in_shapes) != 1:
            raise WorkloadError("flatten takes exactly one input", key=f"layers.{name}.inputs",
                                expected="1 input", found=f"{len(in_shapes)} inputs")
        return (math.prod(first),)
    if len(in_shapes) != 1:
        raise WorkloadError(f"{layer.op} takes exactly one input", key=f"layers.{name}.inputs",
                            expected="1 input", found=f"{len(in_shapes)} inputs")
    if layer.op == "linear":
        if len(first) != 1:
            raise WorkloadError("linear input must be flat", key=f"layers.{name}.in_shape",
                                expected="[features]", found=str(list(first)),
                                suggestion="insert a flatten layer before it")
        return (layer.out_shape[0],)
    nd = SPATIAL[layer.op]
    if len(first) != nd + 1:
        raise WorkloadError(f"{layer.op} input must have {nd + 1} dimensions (channels first)",
                            key=f"layers.{name}.in_shape", expected=f"{nd + 1} dimensions",
                            found=str(list(first)))
    for what, v in (("kernel", layer.kernel), ("stride", layer.stride), ("padding", layer.padding)):
        if len(v) != nd:
            raise WorkloadError(f"{what} must have {nd} entries", key=f"layers.{name}.{what}",
                                expected=f"{nd} integers", found=str(list(v)))
    if any(k < 1 for k in layer.kernel) or any(s < 1 for s in layer.stride) or any(p < 0 for p in layer.padding):
        raise WorkloadError("kernel and stride must be >= 1, padding >= 0", key=f"layers.{name}",
                            expected="positive sizes", found=f"kernel {list(layer.kernel)}, stride "
                            f"{list(layer.stride)}, padding {list(layer.padding)}")
    spatial = tuple(conv_out(first[1 + i], layer.kernel[i], layer.stride[i], layer.padding[i]) for i in range(nd))
    if any(s < 1 for s in spatial):
        raise WorkloadError("kernel larger than its (padded) input", key=f"layers.{name}",
                            expected="output size >= 1", found=f"output {list(spatial)}")
    if layer.op in ("conv2d", "conv3d"):
        c_out = layer.out_shape[0]
        if layer.groups < 1 or first[0] % layer.groups or c_out % layer.groups:
            raise WorkloadError("groups must divide input and output channels", key=f"layers.{name}.groups",
                                expected=f"a divisor of {first[0]} and {c_out}", found=str(layer.groups))
        return (c_out, *spatial)
    return (first[0], *spatial)


MAX_INT = 2**31 - 1  # bound of every size in a manifest: products of a few stay within int64


def _ints(value: Any, key: str, n: int | None = None, shape: bool = False) -> tuple[int, ...]:
    """A list of JSON integers, each within +-``MAX_INT`` (booleans are not integers here; signs
    of kernels and paddings are checked with the graph). An integer alone means ``n`` copies of
    it, except for a ``shape``, which must be a non-empty list of positive integers."""
    if shape and (not isinstance(value, list) or not value):
        raise WorkloadError("expected a non-empty list of positive integers", key=key,
                            expected=f"[int, ...] with each in 1..{MAX_INT}", found=repr(value)[:200])
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * (n or 1)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise WorkloadError("expected a list of integers", key=key, expected="[int, ...]", found=repr(value)[:200])
    lo = 1 if shape else -MAX_INT
    if not all(lo <= v <= MAX_INT for v in value):
        raise WorkloadError("integer out of range", key=key, expected=f"integers in {lo}..{MAX_INT}",
                            found=repr(value)[:200])
    return tuple(value)


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise WorkloadError("expected a positive integer", key=key, expected=f"an integer in 1..{MAX_INT}",
                            found=repr(value)[:200])
    return value


def layer_from_dict(d: Any, index: int) -> Layer:
    """Parse one manifest layer entry (types only; graph checks come later)."""
    key = f"layers[{index}]"
    if not isinstance(d, dict):
        raise WorkloadError("a layer must be a mapping", key=key, expected="{name, op, inputs, ...}",
                            found=type(d).__name__)
    for req in ("name", "op", "inputs", "out_shape"):
        if req not in d:
            raise WorkloadError("layer misses a required field", key=f"{key}.{req}",
                                expected=f"'{req}'", found=f"fields {sorted(d)}")
    name = d["name"]
    if not isinstance(name, str) or not name or name == "input" or "/" in name:
        raise WorkloadError("invalid layer name", key=f"{key}.name",
                            expected="a non-empty string without '/', not 'input'", found=repr(name))
    key = f"layers.{name}"
    op = d["op"]
    if op not in OPS:
        raise WorkloadError("unsupported op", key=f"{key}.op", expected=f"one of {', '.join(OPS)}",
                            found=repr(op), suggestion=did_you_mean(str(op), OPS))
    inputs = d["inputs"]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise WorkloadError("inputs must be a non-empty list of layer names", key=f"{key}.inputs",
                            expected="['input'] or ['<layer>', ...]", found=repr(inputs))
    nd = SPATIAL.get(op)
    neuron = None
    nd_ = d.get("neuron")
    if nd_ is not None:
        if not isinstance(nd_, dict):
            raise WorkloadError("neuron must be a mapping or null", key=f"{key}.neuron",
                                expected="{model, threshold, leak, reset}", found=repr(nd_))
        model = nd_.get("model", "IF")
        if model not in NEURON_MODELS:
            raise WorkloadError("unsupported neuron model", key=f"{key}.neuron.model",
                                expected=" or ".join(NEURON_MODELS), found=repr(model),
                                suggestion=did_you_mean(str(model), NEURON_MODELS))
        reset = nd_.get("reset", "subtract")
        if reset not in RESET_MODES:
            raise WorkloadError("unsupported reset mode", key=f"{key}.neuron.reset",
                                expected=" or ".join(RESET_MODES), found=repr(reset))
        thr, leak = nd_.get("threshold", 1.0), nd_.get("leak", 0.0)
        for what, v in (("threshold", thr), ("leak", leak)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise WorkloadError(f"{what} must be a number", key=f"{key}.neuron.{what}",
                                    expected="a finite number", found=repr(v))
        if thr <= 0:
            raise WorkloadError("threshold must be positive", key=f"{key}.neuron.threshold",
                                expected="a number > 0", found=repr(thr))
        if not 0.0 <= leak < 1.0:
            raise WorkloadError("leak out of range", key=f"{key}.neuron.leak", expected="0 <= leak < 1",
                                found=repr(leak))
        per_channel = nd_.get("per_channel", False)
        if not isinstance(per_channel, bool):  # bool("false") is True: only JSON booleans
            raise WorkloadError("per_channel must be true or false", key=f"{key}.neuron.per_channel",
                                expected="a JSON boolean", found=repr(per_channel)[:200])
        neuron = Neuron(model=model, threshold=float(thr), leak=float(leak), reset=reset,
                        per_channel=per_channel)
    extra = d.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise WorkloadError("extra must be a mapping or null", key=f"{key}.extra", expected="a JSON object",
                            found=repr(extra)[:200])
    in_shape = d.get("in_shape")
    return Layer(
        name=name, op=op, inputs=list(inputs),
        out_shape=_ints(d["out_shape"], f"{key}.out_shape", shape=True),
        in_shape=() if in_shape is None or in_shape == [] else _ints(in_shape, f"{key}.in_shape", shape=True),
        kernel=_ints(d.get("kernel", 1), f"{key}.kernel", nd) if nd else (),
        stride=_ints(d.get("stride", d.get("kernel", 1)), f"{key}.stride", nd) if nd else (),
        padding=_ints(d.get("padding", 0), f"{key}.padding", nd) if nd else (),
        groups=_int(d.get("groups", 1), f"{key}.groups"),
        weight_bits=_int(d.get("weight_bits", 1), f"{key}.weight_bits"),
        neuron=neuron,
        extra=dict(extra or {}),
    )


def check_graph(layers: list[Layer], input_shape: tuple[int, ...]) -> None:
    """Check names, edges, order, shapes and the spiking rule; fill in_shape and spiking."""
    shapes: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}
    spiking: dict[str, bool] = {"input": False}
    for layer in layers:
        key = f"layers.{layer.name}"
        if layer.parts is not None:  # a format v2 layer: its nodes were checked by nodes.check_nodes
            shapes[layer.name], spiking[layer.name] = tuple(layer.out_shape), layer.spiking
            continue
        if layer.name in shapes:
            raise WorkloadError("duplicate layer name", key=key, expected="unique names", found=layer.name)
        for src in layer.inputs:
            if src not in shapes:
                known = [n for n in shapes]
                raise WorkloadError("input refers to an unknown or later layer", key=f"{key}.inputs",
                                    expected="'input' or an earlier layer", found=src,
                                    suggestion=did_you_mean(src, known))
            if src == "input" and layer.op not in ("conv2d", "conv3d", "linear", "flatten"):
                raise WorkloadError("the analog input must feed a synaptic layer", key=f"{key}.inputs",
                                    expected="conv2d, conv3d or linear", found=layer.op)
            if src != "input" and not spiking[src]:
                raise WorkloadError("input is not spiking", key=f"{key}.inputs",
                                    expected=f"layer '{src}' to have a neuron (format v1 feeds only spikes "
                                    "between layers)", found=f"'{src}' has no neuron",
                                    suggestion=f"give '{src}' a neuron, or make '{layer.name}' consume its inputs")
        in_shapes = [shapes[s] for s in layer.inputs]
        expected = infer_out_shape(layer, in_shapes)
        if tuple(layer.out_shape) != expected:
            raise WorkloadError("out_shape disagrees with the op and its input shape", key=f"{key}.out_shape",
                                expected=str(list(expected)), found=str(list(layer.out_shape)))
        if layer.in_shape and tuple(layer.in_shape) != in_shapes[0]:
            raise WorkloadError("in_shape disagrees with the shape of its input", key=f"{key}.in_shape",
                                expected=str(list(in_shapes[0])), found=str(list(layer.in_shape)))
        layer.in_shape = in_shapes[0]
        if layer.op in ("conv2d", "conv3d", "linear") and not 1 <= layer.weight_bits <= 32:
            raise WorkloadError("weight_bits out of range", key=f"{key}.weight_bits", expected="1..32",
                                found=str(layer.weight_bits))
        structural = layer.op in ("maxpool", "flatten") and all(spiking[s] for s in layer.inputs)
        if layer.op in ("maxpool", "flatten") and layer.neuron is None and not structural:
            raise WorkloadError("maxpool/flatten of a non-spiking input needs a neuron", key=key,
                                expected="spiking inputs", found=f"inputs {layer.inputs}")
        layer.spiking = layer.neuron is not None or structural
        shapes[layer.name] = layer.out_shape
        spiking[layer.name] = layer.spiking
    consumers = {s for layer in layers for s in layer.inputs}
    for layer in layers[:-1]:
        if layer.name not in consumers and not layer.spiking:
            raise WorkloadError("a non-spiking layer feeds nothing", key=f"layers.{layer.name}",
                                expected="only the last layer may be a non-spiking output",
                                found=f"'{layer.name}' has no neuron and no consumer")


def graph_key(layers: list[Layer], input_shape: tuple[int, ...]) -> tuple:
    """Everything :func:`check_graph` reads and fills in, as one hashable value: two graphs with
    the same key have the same shapes, edges and spiking layers."""
    return (tuple(input_shape),) + tuple(
        (la.name, la.op, tuple(la.inputs), tuple(la.in_shape), tuple(la.out_shape), tuple(la.kernel),
         tuple(la.stride), tuple(la.padding), la.groups, la.weight_bits, la.neuron is None, la.spiking,
         id(la.parts) if la.parts is not None else None)
        for la in layers)


def check_graph_once(owner: Any, layers: list[Layer], input_shape: tuple[int, ...]) -> tuple:
    """:func:`check_graph`, skipped when ``owner`` (a workload) already passed it with the graph
    unchanged since; returns the graph's key."""
    key = graph_key(layers, input_shape)
    if owner.__dict__.get("_checked_graph") != key:
        check_graph(layers, input_shape)
        key = graph_key(layers, input_shape)  # check_graph fills in in_shape and spiking
        owner.__dict__["_checked_graph"] = key
    return key
