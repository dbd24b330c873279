"""Captured ops (:mod:`.capture`) as format v2 nodes and arrays, one node per module or function.

Nothing is folded or reordered: ``Conv2d(bias=True)`` is a ``conv2d`` node with ``bias: true``
and the arrays ``weights/<node>`` and ``bias/<node>`` (float32, as trained); an eval-mode
``BatchNorm`` is an ``affine`` whose ``scale/<node>`` and ``shift/<node>`` are the float32
constants torch's CPU kernel computes (``scale = gamma * (1 / sqrt(var + eps))`` in float32,
``shift = beta - mean * scale`` rounded once: the kernel then gives ``y = x * scale + shift``
with one rounding, a fused multiply-add; checked bit for bit against ``BatchNorm2d``);
``x * c`` is a ``scale``, and so are SpikingJelly ann2snn's ``VoltageScaler`` and
``ChannelVoltageScaler`` (named after the module, one factor per channel); ``x + c``, ``c + x``,
``x - c`` and ``x + self.b`` with ``c`` a number or a float32 constant per channel are a ``bias``
(``bias/<node>`` (C,)); pools, adds, ``x * (1 - y)`` (SEW's IAND: ``iand(y, x)``, NOT y AND x),
flatten and reshape are their nodes; a neuron is a ``neuron`` node whose model and parameters
come from :mod:`.adapters` (per-neuron parameters as ``params/<node>/<name>`` arrays). A
recurrent neuron (snnTorch RLeaky / RSynaptic) adds ``<neuron>.delay`` (its spikes one step
late) and ``<neuron>.recurrent`` (the ``linear``, ``conv2d`` or ``scale`` of its recurrent
submodule) as its second input. A neuron whose membrane the model returns (snnTorch's ``spk, mem
= lif(x); return mem``; the last of Synaptic's ``spk, syn, mem``) while nothing reads its spikes is
the network's readout, ``output: membrane``; a membrane fed into further ops is refused. Node names
are the modules' qualified names, or fx's names of the functions (``add``, ``flatten_1``...).

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

    kind: str  # tensor | tuple | membrane | state | not | unsqueezed | post | other | const
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
    membranes: dict[str, int] = field(default_factory=dict)  # readout neuron -> op giving its membrane


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
        self.outputs: list[int] = []  # the op indices the model returns
        self.membranes: dict[str, int] = {}

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
        if v.kind == "membrane":
            raise _err(op, f"feeds the membrane of neuron '{v.node}' into further layers",
                       "a membrane only as the network's output (a readout), spikes or currents between layers",
                       f"the membrane of '{v.node}' read by {op.kind}",
                       f"read the spikes of '{v.node}' (its first output), or end the network at its membrane")
        what = {"state": f"{v.value} of neuron '{v.node}' (only its spikes, or its membrane as the network's "
                         "output, are values of format v2)", "tuple": "a neuron's (spikes, state) tuple",
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
        self._readouts()
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
        return Lowered(self.nodes, self.arrays, self.op_of, self.neurons, self.modules, self.notes, self.membranes)

    def _readouts(self) -> None:
        """A neuron whose membrane the model returns and whose spikes nothing reads (no node, not
        the output) is the network's readout: ``output: membrane``, a current, not recorded. A
        membrane returned beside spikes that are used stays a note (its spikes are recorded)."""
        read = {src for n in self.nodes for src in n.inputs}
        returned = {self.vals[a].node for a in self.outputs if self.vals[a].kind in ("tensor", "tuple")}
        for a in self.outputs:
            v = self.vals[a]
            if v.kind not in ("membrane", "state"):
                continue
            what = "the membrane" if v.kind == "membrane" else str(v.value)
            if v.node in read or v.node in returned:
                self.notes.append(f"the model also outputs {what} of '{v.node}' (not stored: its spikes are)")
                continue
            if v.kind == "state":
                raise WorkloadError(f"the model outputs {what} of neuron '{v.node}' and not its spikes", key=v.node,
                                    expected="a neuron read by its spikes, or by its membrane as the readout",
                                    found=f"{what} ({self.neurons[v.node].source})",
                                    suggestion="return its membrane (the last output) or its spikes")
            if v.node in self.membranes:
                continue
            node = next(n for n in self.nodes if n.name == v.node)
            node.params["output"] = "membrane"
            self.membranes[v.node] = a

    def _op_input(self, i: int, op: Op) -> Val:
        return Val("tensor", "input", tuple(op.shape or ()))

    def _op_output(self, i: int, op: Op) -> Val:
        self.outputs = list(op.args)
        return Val("other")

    def _op_other(self, i: int, op: Op) -> Val:
        return Val("other")

    def _op_const(self, i: int, op: Op) -> Val:
        return Val("const", value=op.params.get("value"))

    def _op_identity(self, i: int, op: Op) -> Val:
        if op.args and self.vals[op.args[0]].kind == "membrane":  # mem.detach(), mem.clone() of a readout
            return self.vals[op.args[0]]
        return self._tensor(op)

    def _op_scale(self, i: int, op: Op) -> Val:
        """SpikingJelly ann2snn's ``VoltageScaler`` (``x * scale``, a 0-d buffer) and
        ``ChannelVoltageScaler`` (a (C,) buffer along ``channel_dim``, which must be the channels,
        axis 1 of (B, C, ...)): a ``scale`` node with one float32 factor per channel."""
        v, m = self._tensor(op), op.module
        c = m.scale.detach().cpu()
        if c.dim() > 0:
            dim = int(getattr(m, "channel_dim", 1))
            if dim < 0:
                dim += len(v.shape) + 1
            if dim != 1:
                raise _err(op, "scales along another axis than the channels", "channel_dim=1 (the C of (B, C, ...))",
                           f"channel_dim={m.channel_dim} for inputs (B, {', '.join(map(str, v.shape))})",
                           "format v2 scales per channel: convert with channel_dim=1")
            if c.dim() != 1 or c.numel() != v.shape[0]:
                raise _err(op, "has another number of factors than channels", f"{v.shape[0]} factors",
                           str(list(c.shape)))
        # a (C,) factor along axis 1 is one per channel (reshaped to (C, 1, ...) by the module)
        scale = _per_channel(c.reshape((-1,) + (1,) * (len(v.shape) - 1)) if c.dim() else c, v.shape)
        assert scale is not None
        name = self._emit(i, "scale", [v.node], {})
        self.arrays[f"scale/{name}"] = scale
        return Val("tensor", name, v.shape)

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
            spec = self.neurons.get(v.node)
            state = STATE_OUTPUTS.get(spec.model if spec else "", ())
            if idx < 0:
                idx += len(state) + 1
            if not 1 <= idx <= len(state) or state[idx - 1] != "mem":  # refused where it is used
                what = state[idx - 1] if 1 <= idx <= len(state) else f"output {idx}"
                return Val("state", v.node, v.shape, value=what)
            return Val("membrane", v.node, v.shape)
        if v.kind == "other":
            return Val("other")
        raise _err(op, "indexes a tensor", "the first output (spikes) of a neuron's tuple", f"index {idx!r}")

    def _op_add(self, i: int, op: Op) -> Val:
        bias = self._constant_operand(i, op, sign=1.0)
        if bias is not None:
            return bias
        tensors = [o for o in op.operands if o[0] == "op" and self.vals[o[1]].kind != "other"]
        if len(tensors) != 2 or len(op.operands) != 2 or "alpha" in op.params:
            raise _err(op, "only the sum of two tensors, or of a tensor and a constant, is supported",
                       "a + b (spikes or currents), or x + a constant per channel (a bias)",
                       f"operands {[o[0] if o[0] == 'op' else repr(o[1]) for o in op.operands]}")
        a, b = self._tensor(op, 0), self._tensor(op, 1)
        if a.shape != b.shape:
            raise _err(op, "adds tensors of different shapes", str(list(a.shape)), str(list(b.shape)))
        name = self._emit(i, "add", [a.node, b.node], {})
        return Val("tensor", name, a.shape)

    def _constant_operand(self, i: int, op: Op, sign: float) -> Val | None:
        """``x + c`` (``sign`` 1; ``c + x`` too) or ``x - c`` (``sign`` -1) with ``c`` a number or a
        constant tensor (a parameter or buffer: ``x + self.b``): a ``bias`` node whose ``bias/<node>``
        is ``sign * c`` per channel (float32; negation is exact, so ``x - c`` is ``x + (-c)`` to
        the bit). None when neither operand is a constant."""
        if len(op.operands) != 2 or "alpha" in op.params:
            return None
        vals = [self.vals[o[1]] if o[0] == "op" else Val("const", value=o[1]) for o in op.operands]
        kinds = [v.kind for v in vals]
        if kinds.count("const") != 1 or kinds.count("tensor") != 1 or (sign < 0 and kinds[0] == "const"):
            return None
        x, c = vals[kinds.index("tensor")], vals[kinds.index("const")].value
        if isinstance(c, bool) or not (isinstance(c, (int, float)) or hasattr(c, "detach")):
            raise _err(op, "adds a value that is not a number or tensor", "a number or a constant tensor", repr(c)[:80])
        if hasattr(c, "detach") and c.dim() > 0 and c.dtype != _torch_float32():
            raise _err(op, f"adds a {c.dtype} constant to a float32 current (torch then computes in {c.dtype})",
                       "a float32 constant", str(c.dtype), "keep the constant in float32 (the model's dtype)")
        b = _per_channel(c, x.shape)
        if b is None:
            raise _err(op, "adds a constant that is not one per channel", f"a number or one value per channel of "
                       f"{list(x.shape)} (shape (C, 1, 1) of (C, H, W); (F,) of a flat value)", str(list(np.shape(_np(c)))))
        name = self._emit(i, "bias", [x.node], {})
        self.arrays[f"bias/{name}"] = (b if sign > 0 else -b).astype(np.float32)
        return Val("tensor", name, x.shape)

    def _op_sub(self, i: int, op: Op) -> Val:
        bias = self._constant_operand(i, op, sign=-1.0)
        if bias is not None:
            return bias
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


#: what a framework neuron returns after its spikes, in order (snnTorch's ``forward``): the
#: membrane ``mem`` is a readout; the synaptic current ``syn`` is not an output of format v2
STATE_OUTPUTS = {"snntorch.leaky": ("mem",), "snntorch.rleaky": ("mem",), "snntorch.synaptic": ("syn", "mem"),
                 "snntorch.rsynaptic": ("syn", "mem")}


def _torch_float32() -> Any:
    import torch

    return torch.float32


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
