"""Captured ops (:mod:`.capture`) as format v2 nodes and arrays, one node per module or function.

Nothing is folded or reordered: ``Conv2d(bias=True)`` is a ``conv2d`` node with ``bias: true``
and the arrays ``weights/<node>`` and ``bias/<node>`` (float32, as trained); an eval-mode
``BatchNorm`` is an ``affine`` whose ``scale/<node>`` and ``shift/<node>`` are the float32
constants torch's CPU kernel computes (``scale = gamma * (1 / sqrt(var + eps))`` in float32,
``shift = beta - mean * scale`` rounded once: the kernel then gives ``y = x * scale + shift``
with one rounding, a fused multiply-add; checked bit for bit against ``BatchNorm2d``);
``x * c`` is a ``scale``; pools, adds, ``x * (1 - y)`` (SEW's IAND: ``iand(y, x)``, NOT y AND x),
flatten and reshape are their nodes; a neuron is a ``neuron`` node whose model and parameters
come from :mod:`.adapters` (per-neuron parameters as ``params/<node>/<name>`` arrays). A
recurrent neuron (snnTorch RLeaky / RSynaptic) adds ``<neuron>.delay`` (its spikes one step
late) and ``<neuron>.recurrent`` (the ``linear``, ``conv2d`` or ``scale`` of its recurrent
submodule) as its second input. Node names are the modules' qualified names, or fx's names of
the functions (``add``, ``flatten_1``...).

Pooling: ``avgpool`` averages over the whole window with zero padding counted (torch's default
``count_include_pad=True``); ``divisor_override=1`` is a ``sumpool``; an adaptive pool whose
output divides its input is the pool with kernel = stride = input / output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError, WorkloadError, did_you_mean
from ..workload.nodes import PARAM_ARRAY, WEIGHTED, Node
from ..workload.trace import binary_form
from .adapters import NeuronAdapters, NeuronSpec
from .capture import SUPPORTED, Op


@dataclass
class Val:
    """What an op gives: a node's value (``node`` a node name or ``input``), a neuron's tuple,
    its membrane, ``1 - y``, a value reduced over time for the output, or a non-tensor."""

    kind: str  # tensor | tuple | membrane | not | unsqueezed | post | other | const
    node: str = ""
    shape: tuple[int, ...] = ()
    value: Any = None


@dataclass
class Lowered:
    """The v2 graph of a captured model: nodes, arrays, and where each node's value is recorded."""

    nodes: list[Node]
    arrays: dict[str, np.ndarray]
    op_of: dict[str, int]  # node name -> index of the op whose output it is
    neurons: dict[str, NeuronSpec]  # neuron node -> its spec
    modules: dict[str, str] = field(default_factory=dict)  # node -> module or function it came from
    notes: list[str] = field(default_factory=list)


def _ints(v: Any, rank: int) -> list[int]:
    if isinstance(v, int):
        return [int(v)] * rank
    t = [int(i) for i in v]
    return t * rank if len(t) == 1 else t


def _err(op: Op, what: str, expected: str, found: str, suggestion: str | None = None) -> WorkloadError:
    return WorkloadError(f"{op.where}: {what}", key=op.name, expected=expected, found=found, suggestion=suggestion)


def grid_bits(w: np.ndarray) -> int | None:
    """The smallest b <= 16 whose sign-magnitude grid (per output channel) holds every weight."""
    if binary_form(w) is not None:
        return 1
    flat = np.abs(w.reshape(w.shape[0], -1).astype(np.float64))
    alpha = flat.max(axis=1)
    safe = np.where(alpha > 0, alpha, 1.0)[:, None]
    for b in range(2, 17):
        levels = max(1, 2 ** (b - 1) - 1)
        scaled = flat / safe * levels
        if np.all(np.abs(scaled - np.rint(scaled)) <= 1e-4):
            return b
    return None


def batch_norm_constants(m: Any) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) float32 of an eval-mode batch norm, the constants torch's CPU kernel uses."""
    f = np.float32
    var = m.running_var.detach().cpu().float().numpy()
    mean = m.running_mean.detach().cpu().float().numpy()
    c = var.shape[0]
    gamma = m.weight.detach().cpu().float().numpy() if m.weight is not None else np.ones(c, f)
    beta = m.bias.detach().cpu().float().numpy() if m.bias is not None else np.zeros(c, f)
    invstd = (f(1) / np.sqrt(var + f(m.eps))).astype(f)
    scale = (invstd * gamma).astype(f)
    shift = (beta.astype(np.float64) - mean.astype(np.float64) * scale.astype(np.float64)).astype(f)
    return scale, shift


class Lowering:
    """Walks the ops once, in call order, emitting nodes."""

    def __init__(self, ops: list[Op], adapters: NeuronAdapters, weight_bits: Any) -> None:
        self.ops = ops
        self.adapters = adapters
        self.declared_bits = weight_bits
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.arrays: dict[str, np.ndarray] = {}
        self.op_of: dict[str, int] = {}
        self.neurons: dict[str, NeuronSpec] = {}
        self.modules: dict[str, str] = {}
        self.notes: list[str] = []
        self.vals: list[Val] = []

    # -- bookkeeping

    def _name(self, base: str) -> str:
        name = base.replace("/", "_") or "node"
        if name == "input":
            name = "input_"
        cand, k = name, 1
        while cand in self.names:
            cand = f"{name}_{k}"
            k += 1
        self.names.add(cand)
        return cand

    def _emit(self, i: int, op: str, inputs: list[str], params: dict[str, Any], base: str | None = None) -> str:
        name = self._name(base or self.ops[i].name)
        self.nodes.append(Node(name, op, list(inputs), params))
        self.op_of[name] = i
        self.modules[name] = self.ops[i].where
        return name

    def _tensor(self, op: Op, j: int = 0) -> Val:
        if len(op.args) <= j:
            raise _err(op, "has no tensor input", "a tensor operand", "none")
        v = self.vals[op.args[j]]
        if v.kind == "tensor":
            return v
        what = {"membrane": "a neuron's membrane (its second output)", "tuple": "a neuron's (spikes, state) tuple",
                "not": "1 - x (only the IAND x * (1 - y) is supported)", "post": "a value reduced over time",
                "unsqueezed": "the input with a new time axis (only .repeat(T, ...) may follow)"}.get(v.kind, v.kind)
        raise _err(op, f"reads {what}", "spikes, a current or the analog input", v.kind,
                   "read the spikes (the first output of the neuron)" if v.kind in ("membrane", "tuple") else None)

    def _weight_bits(self, name: str, w: np.ndarray) -> int:
        d = self.declared_bits
        if isinstance(d, dict) and name in d:
            return int(d[name])
        if isinstance(d, int):
            return d
        return grid_bits(w) or 16

    def _param(self, node: str, key: str, v: Any, shape: tuple[int, ...], op: Op) -> Any:
        """A neuron parameter: a number, or an array broadcasting over the node's neurons."""
        if not isinstance(v, np.ndarray):
            return v
        arr = v.astype(np.float32)
        while arr.ndim > len(shape) and arr.shape[0] == 1:
            arr = arr[0]
        try:
            np.broadcast_to(arr, shape)
        except ValueError:
            raise _err(op, f"parameter {key} does not broadcast over the neurons", f"a shape broadcasting to "
                       f"{list(shape)}", str(list(v.shape))) from None
        name = f"params/{node}/{key}"
        self.arrays[name] = np.ascontiguousarray(arr)
        return {PARAM_ARRAY: name}

    # -- the walk

    def run(self) -> Lowered:
        for i, op in enumerate(self.ops):
            handler = getattr(self, f"_op_{op.kind}", None)
            if handler is None:  # pragma: no cover - capture only makes the kinds below
                raise _err(op, "unsupported operation", f"supported: {SUPPORTED}", op.kind)
            self.vals.append(handler(i, op))
        if not self.neurons:
            raise WorkloadError("the model has no neuron", key="model", expected="at least one spiking module",
                                found="none", suggestion="give your neuron module snnsim_neuron(), or name its class "
                                "in spiking=(...)")
        if isinstance(self.declared_bits, dict):
            weighted = [n.name for n in self.nodes if n.op in WEIGHTED]
            for k in self.declared_bits:
                if k not in weighted:
                    raise UsageError("weight_bits names a node the model does not have", key=f"weight_bits.{k}",
                                     expected="a conv/linear node", found=str(k), suggestion=did_you_mean(str(k), weighted))
        return Lowered(self.nodes, self.arrays, self.op_of, self.neurons, self.modules, self.notes)

    def _op_input(self, i: int, op: Op) -> Val:
        return Val("tensor", "input", tuple(op.shape or ()))

    def _op_output(self, i: int, op: Op) -> Val:
        for a in op.args:
            v = self.vals[a]
            if v.kind == "membrane":
                self.notes.append(f"the model also outputs the membrane of '{v.node}' (not stored: its spikes are)")
        return Val("other")

    def _op_other(self, i: int, op: Op) -> Val:
        return Val("other")

    def _op_const(self, i: int, op: Op) -> Val:
        return Val("const", value=op.params.get("value"))

    def _op_identity(self, i: int, op: Op) -> Val:
        return self._tensor(op)

    def _op_conv(self, i: int, op: Op) -> Val:
        v, m = self._tensor(op), op.module
        rank = len(m.kernel_size)
        if len(v.shape) != rank + 1 or v.shape[0] != m.in_channels:
            raise _err(op, "input shape mismatch", f"({m.in_channels}, {rank} spatial axes)", str(list(v.shape)))
        if m.padding_mode != "zeros":
            raise _err(op, "padding mode", "zeros", repr(m.padding_mode), "pad with zeros")
        pad = m.padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0,) * rank
            elif all(k % 2 == 1 or d * (k - 1) % 2 == 0 for k, d in zip(m.kernel_size, m.dilation, strict=True)):
                pad = tuple(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation, strict=True))
            else:
                raise _err(op, "padding='same' with an even kernel pads unevenly", "an odd kernel or explicit padding",
                           repr(m.padding))
        w = m.weight.detach().cpu().float().numpy().copy()
        name = self._name(op.name)
        self.names.discard(name)
        params = {"out_channels": int(m.out_channels), "kernel": list(m.kernel_size), "stride": list(m.stride),
                  "padding": [int(p) for p in pad], "dilation": list(m.dilation), "groups": int(m.groups),
                  "bias": m.bias is not None, "weight_bits": self._weight_bits(name, w)}
        name = self._emit(i, f"conv{rank}d", [v.node], params, name)
        self.arrays[f"weights/{name}"] = w
        if m.bias is not None:
            self.arrays[f"bias/{name}"] = m.bias.detach().cpu().float().numpy().copy()
        return Val("tensor", name, tuple(op.shape or ()))

    def _op_linear(self, i: int, op: Op) -> Val:
        v, m = self._tensor(op), op.module
        if len(v.shape) != 1:
            raise _err(op, "needs a flat input", "[features]", str(list(v.shape)), "flatten before it (nn.Flatten)")
        if v.shape[0] != m.in_features:
            raise _err(op, "input shape mismatch", f"{m.in_features} features", str(v.shape[0]))
        w = m.weight.detach().cpu().float().numpy().copy()
        name = self._name(op.name)
        self.names.discard(name)
        params = {"out_features": int(m.out_features), "bias": m.bias is not None, "weight_bits": self._weight_bits(name, w)}
        name = self._emit(i, "linear", [v.node], params, name)
        self.arrays[f"weights/{name}"] = w
        if m.bias is not None:
            self.arrays[f"bias/{name}"] = m.bias.detach().cpu().float().numpy().copy()
        return Val("tensor", name, (int(m.out_features),))

    def _op_bn(self, i: int, op: Op) -> Val:
        v, m = self._tensor(op), op.module
        if m.running_mean is None or m.running_var is None:
            raise _err(op, "has no running statistics (track_running_stats=False): it normalises with each batch's "
                       "statistics", "a batch norm with running statistics (eval mode)", "no running statistics")
        if not v.shape or v.shape[0] != m.num_features:
            raise _err(op, "input shape mismatch", f"{m.num_features} channels first", str(list(v.shape)))
        scale, shift = batch_norm_constants(m)
        name = self._emit(i, "affine", [v.node], {})
        self.arrays[f"scale/{name}"], self.arrays[f"shift/{name}"] = scale, shift
        return Val("tensor", name, v.shape)

    def _op_pool(self, i: int, op: Op) -> Val:
        v = self._tensor(op)
        m, p = op.module, op.params
        if m is not None:
            cls = type(m).__name__
            kind = ("adaptive_max" if cls.startswith("AdaptiveMax") else "adaptive_avg" if cls.startswith("AdaptiveAvg")
                    else "max" if cls.startswith("MaxPool") else "avg")
            p = {k: getattr(m, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                              "return_indices", "count_include_pad", "divisor_override",
                                              "output_size") if hasattr(m, k)}
            p["type"] = kind
        kind = p["type"]
        rank = len(v.shape) - 1
        if rank < 1:
            raise _err(op, "pools a flat value", "(C, spatial...)", str(list(v.shape)))
        if p.get("ceil_mode") or p.get("return_indices"):
            raise _err(op, "ceil_mode / return_indices are not pools of format v2", "ceil_mode=False",
                       f"ceil_mode={p.get('ceil_mode')}, return_indices={p.get('return_indices')}")
        if kind.startswith("adaptive"):
            out = p.get("output_size")
            out = [out] * rank if isinstance(out, int) or out is None else list(out)
            out = [v.shape[1 + a] if o is None else int(o) for a, o in enumerate(out)]
            if len(out) != rank or any(v.shape[1 + a] % out[a] for a in range(rank)):
                raise _err(op, f"output {out} does not divide the input {list(v.shape[1:])} evenly",
                           "an output size dividing the input (then it is a plain pool)", f"output_size={out}",
                           "use an output size that divides the input, or an explicit pool")
            k = [v.shape[1 + a] // out[a] for a in range(rank)]
            params = {"kernel": k, "stride": k, "padding": [0] * rank}
            node_op = "maxpool" if kind == "adaptive_max" else "avgpool"
        else:
            k = _ints(p.get("kernel_size"), rank)
            s = p.get("stride")
            s = k if s is None or (isinstance(s, (list, tuple)) and not s) else _ints(s, rank)
            pad = _ints(p.get("padding", 0), rank)
            if _ints(p.get("dilation", 1), rank) != [1] * rank:
                raise _err(op, "dilated pooling", "dilation 1", f"dilation={p.get('dilation')}")
            params = {"kernel": k, "stride": s, "padding": pad}
            node_op = "maxpool" if kind == "max" else "avgpool"
            if kind == "avg":
                div = p.get("divisor_override")
                if any(pad) and not p.get("count_include_pad", True):
                    raise _err(op, "excludes padding from its average", "count_include_pad=True (padding counts as 0)",
                               "count_include_pad=False")
                if div == 1:
                    node_op = "sumpool"
                elif div is not None and div != math.prod(k):
                    raise _err(op, "divides by another number than the window", "divisor_override None, 1 or the "
                               "window size", f"divisor_override={div}")
        name = self._emit(i, node_op, [v.node], params)
        return Val("tensor", name, tuple(op.shape or ()))

    def _op_reshape(self, i: int, op: Op) -> Val:
        v = self._tensor(op)
        shape = tuple(op.shape or ())
        if shape == v.shape:
            return v
        if len(shape) == 1:
            name = self._emit(i, "flatten", [v.node], {})
        else:
            name = self._emit(i, "reshape", [v.node], {"shape": list(shape)})
        return Val("tensor", name, shape)

    def _op_unsqueeze(self, i: int, op: Op) -> Val:
        v = self._tensor(op)
        if v.node != "input" or op.params.get("args", [op.params.get("dim")])[0] != 0:
            raise _err(op, "adds an axis", "x.unsqueeze(0).repeat(T, 1, ...) of the input (direct encoding)",
                       f"unsqueeze of {v.node}")
        return Val("unsqueezed", v.node, v.shape)

    def _op_repeat(self, i: int, op: Op) -> Val:
        v = self.vals[op.args[0]] if op.args else Val("other")
        if v.kind != "unsqueezed":
            raise _err(op, "repeats a tensor", "x.unsqueeze(0).repeat(T, 1, ...) of the input", v.kind)
        return Val("tensor", v.node, v.shape)

    def _op_time_reduce(self, i: int, op: Op) -> Val:
        dims = op.params.get("args") or [op.params.get("dim")]
        if op.params.get("lead") != 2 or dims[:1] != [0]:
            raise _err(op, "reduces a tensor", "a mean or sum over time (dimension 0) of a multi-step output",
                       f"dims {dims}")
        return Val("post")

    def _op_getitem(self, i: int, op: Op) -> Val:
        v = self.vals[op.args[0]] if op.args else Val("other")
        idx = op.params.get("args", [None])[0]
        if v.kind == "tuple" and idx == 0:
            return Val("tensor", v.node, v.shape)
        if v.kind == "tuple" and isinstance(idx, int):
            return Val("membrane", v.node, v.shape)
        if v.kind == "other":
            return Val("other")
        raise _err(op, "indexes a tensor", "the first output (spikes) of a neuron's tuple", f"index {idx!r}")

    def _op_add(self, i: int, op: Op) -> Val:
        tensors = [o for o in op.operands if o[0] == "op" and self.vals[o[1]].kind != "other"]
        if len(tensors) != 2 or len(op.operands) != 2 or "alpha" in op.params:
            raise _err(op, "only the sum of two tensors is supported", "a + b (spikes or currents)",
                       f"operands {[o[0] if o[0] == 'op' else repr(o[1]) for o in op.operands]}",
                       "a constant added every step is a bias: put it in the conv/linear before (bias=True)")
        a, b = self._tensor(op, 0), self._tensor(op, 1)
        if a.shape != b.shape:
            raise _err(op, "adds tensors of different shapes", str(list(a.shape)), str(list(b.shape)))
        name = self._emit(i, "add", [a.node, b.node], {})
        return Val("tensor", name, a.shape)

    def _op_sub(self, i: int, op: Op) -> Val:
        o = op.operands
        if len(o) == 2 and o[0][0] == "value" and o[0][1] == 1 and o[1][0] == "op":
            v = self.vals[o[1][1]]
            if v.kind == "tensor":
                return Val("not", v.node, v.shape)
        raise _err(op, "subtracts", "1 - spikes, as a SEW IAND x * (1 - y)", str([p[0] for p in o]))

    def _op_rsub(self, i: int, op: Op) -> Val:
        o = op.operands
        if len(o) == 2 and o[0][0] == "op" and o[1] == ("value", 1) or len(o) == 2 and o[1][0] == "value" \
                and o[1][1] == 1:
            v = self.vals[o[0][1]]
            if v.kind == "tensor":
                return Val("not", v.node, v.shape)
        raise _err(op, "subtracts", "1 - spikes, as a SEW IAND x * (1 - y)", str([p[0] for p in o]))

    def _op_mul(self, i: int, op: Op) -> Val:
        if len(op.operands) != 2:
            raise _err(op, "multiplies", "two operands", str(len(op.operands)))
        vals = [self.vals[o[1]] if o[0] == "op" else Val("const", value=o[1]) for o in op.operands]
        kinds = [v.kind for v in vals]
        if "not" in kinds and "tensor" in kinds:
            nv, x = (vals[0], vals[1]) if kinds[0] == "not" else (vals[1], vals[0])
            if nv.shape != x.shape:
                raise _err(op, "IAND of different shapes", str(list(x.shape)), str(list(nv.shape)))
            name = self._emit(i, "iand", [nv.node, x.node], {})
            return Val("tensor", name, x.shape)
        if kinds.count("tensor") == 1 and kinds.count("const") == 1:
            x = vals[kinds.index("tensor")]
            c = vals[kinds.index("const")].value
            scale = _per_channel(c, x.shape)
            if scale is None:
                raise _err(op, "multiplies by a factor that is not one per channel", f"a number or one value per "
                           f"channel of {list(x.shape)}", str(list(np.shape(_np(c)))))
            name = self._emit(i, "scale", [x.node], {})
            self.arrays[f"scale/{name}"] = scale
            return Val("tensor", name, x.shape)
        raise _err(op, "multiplies two tensors", "x * (1 - y) (SEW IAND) or x * a constant", ", ".join(kinds),
                   "an AND of two spike maps is not an op of format v2")

    def _op_neuron(self, i: int, op: Op) -> Val:
        v = self._tensor(op)
        spec = self.adapters.adapt(op.module, op.name)
        name = self._name(op.name)
        params: dict[str, Any] = {"model": spec.model}
        for k, val in spec.params.items():
            params[k] = self._param(name, k, val, v.shape, op)
        inputs = [v.node]
        if spec.recurrent is not None:
            inputs.append(self._recurrent(i, name, spec, v.shape))
        self.nodes.append(Node(name, "neuron", inputs, params))
        self.op_of[name] = i
        self.modules[name] = op.where
        self.neurons[name] = spec
        out = Val("tensor", name, v.shape)
        return Val("tuple", name, v.shape) if op.tuple_out else out

    def _recurrent(self, i: int, neuron: str, spec: NeuronSpec, shape: tuple[int, ...]) -> str:
        r = spec.recurrent
        assert r is not None
        delay = self._name(f"{neuron}.delay")
        self.nodes.append(Node(delay, "delay", [neuron], {"shape": list(shape), "kind": "spikes"}))
        name = self._name(f"{neuron}.recurrent")
        self.modules[delay] = self.modules[name] = f"the recurrent connection of '{neuron}'"
        if r.op == "scale":
            scale = _per_channel(r.scale, shape)
            if scale is None:
                raise WorkloadError("a one-to-one recurrent weight V that differs within a channel", key=neuron,
                                    expected=f"V a number or one per channel of {list(shape)}",
                                    found=str(list(np.shape(r.scale))))
            self.nodes.append(Node(name, "scale", [delay], {}))
            self.arrays[f"scale/{name}"] = scale
            return name
        assert r.weight is not None
        if r.op == "linear" and (len(shape) != 1 or r.params["out_features"] != shape[0]):
            raise WorkloadError("the recurrent weight does not fit the neurons", key=neuron,
                                expected=f"linear_features = {shape}", found=str(r.weight.shape))
        self.nodes.append(Node(name, r.op, [delay], {**r.params, "weight_bits": self._weight_bits(name, r.weight)}))
        self.arrays[f"weights/{name}"] = r.weight
        if r.bias is not None:
            self.arrays[f"bias/{name}"] = r.bias
        return name


def _np(v: Any) -> Any:
    return v.detach().cpu().float().numpy() if hasattr(v, "detach") else v


def _per_channel(c: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """A factor as one float32 per channel of ``shape`` (channels first), or None."""
    arr = np.asarray(_np(c), dtype=np.float32)
    if arr.size == 1:
        return np.full(shape[0], arr.reshape(-1)[0], np.float32)
    while arr.ndim > len(shape) and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim > len(shape):
        return None
    full = (1,) * (len(shape) - arr.ndim) + arr.shape
    if full[0] != shape[0] or any(d != 1 for d in full[1:]):
        return None
    return np.ascontiguousarray(arr.reshape(-1), np.float32)


def lower_ops(ops: list[Op], adapters: NeuronAdapters, weight_bits: Any = None) -> Lowered:
    """The v2 nodes and arrays of a captured model (raises WorkloadError naming the op)."""
    return Lowering(ops, adapters, weight_bits).run()
