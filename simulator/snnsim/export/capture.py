"""Capture a torch model as a list of operations, one per module or function call, in call order.

``torch.fx`` traces the forward with neurons (and the other known modules) as leaf modules, so
every call of the model's code becomes one :class:`Op`: a module (``conv``, ``linear``, ``bn``,
``pool``, ``flatten``, ``neuron``, ...) or a function (``add``, ``mul``, ``1 - x``, ``flatten``,
``view``, pooling, ``unsqueeze``/``repeat`` of the input over time, ...). One probe run of the
traced graph on a copy of the model gives every op's output shape per sample. A model fx cannot
trace is accepted when it is an ``nn.Sequential`` (its modules in call order, shapes from forward
hooks). SpikingJelly's ``SeqToANNContainer`` / ``MultiStepContainer`` are expanded into their
modules (recorded through hooks on them).

Nothing here decides what an op means in format v2: :mod:`.lowering` does.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

from ..errors import SnnsimError, UsageError, WorkloadError
from .adapters import NeuronAdapters, describe

SUPPORTED = ("Conv1d/2d/3d, Linear, BatchNorm1d/2d/3d (eval), MaxPool/AvgPool/AdaptiveAvgPool 1d/2d/3d, Flatten, "
             "Dropout/Identity, '+' and torch.add, x + constant (a bias), x * (1 - y) (IAND), x * constant, "
             "SpikingJelly ann2snn VoltageScaler/ChannelVoltageScaler, flatten/view/reshape, "
             "x.unsqueeze(0).repeat(T, ...), SpikingJelly layer.* and containers, and the neurons of adapters.py")


#: SpikingJelly ann2snn's current scalers (``ann2snn/modules.py``): ``x * scale`` with a 0-d or, per
#: channel, a (C,) ``scale`` buffer; leaf modules, so fx neither traces into their shape checks
#: nor names the product after the function
SJ_SCALERS = ("VoltageScaler", "ChannelVoltageScaler")


class TraceFailed(Exception):
    """torch.fx could not trace the model (the caller may fall back to nn.Sequential order)."""


@dataclass
class Op:
    """One call of the model: ``kind`` says what it is, ``args`` index the ops it reads (tensor
    operands, in order), ``operands`` the binary ops' operands (("op", i) or ("value", x))."""

    name: str
    kind: str
    args: list[int]
    module: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    operands: list[tuple[str, Any]] = field(default_factory=list)
    shape: tuple[int, ...] | None = None  # per-sample output shape
    where: str = ""
    fx_name: str = ""  # recorded by the interpreter (an fx node) ...
    hook: str = ""  # ... or by a forward hook on this module (qualified name)
    tuple_out: bool = False


@dataclass
class Capture:
    """A captured model: its ops, how it was captured, the runnable twin (a copy of the model)
    and, with fx, the graph module that runs it; ``lead`` is 1 (B, ...) or 2 (T, B, ...) of the
    model's input, ``repeats`` True when the model repeats its (B, ...) input over time itself."""

    ops: list[Op]
    method: str
    twin: Any
    graph_module: Any = None
    lead: int = 1
    repeats: bool = False


def module_kind(m: Any, adapters: NeuronAdapters) -> str | None:
    """What a module is for the export (None: unknown)."""
    import torch.nn as nn

    if adapters.is_neuron(m):
        return "neuron"
    name = type(m).__name__
    if type(m).__module__.startswith("spikingjelly") and name in (
            "SeqToANNContainer", "MultiStepContainer", "StepModeContainer"):
        return "container"
    if type(m).__module__.startswith("spikingjelly") and name in SJ_SCALERS:
        return "scale"
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "conv"
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "bn"
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                      nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                      nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return "pool"
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        return "reshape"
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity)) or (
            type(m).__module__.startswith("spikingjelly") and name in ("Dropout", "Dropout2d")):
        return "identity"
    if isinstance(m, nn.Sequential):
        return "sequential"
    return None


def copy_model(model: Any) -> Any:
    """A deep copy that leaves the user's model untouched, even straight after a training step:
    neurons then hold hidden state with autograd history (non-leaf tensors), which
    ``copy.deepcopy`` refuses; such tensors are copied detached (the copy is reset before it runs)."""
    import torch

    memo: dict[int, Any] = {}
    for m in model.modules():
        for v in (*vars(m).values(), *getattr(m, "_buffers", {}).values()):  # snnTorch keeps mem as a buffer
            if isinstance(v, torch.Tensor) and not v.is_leaf:
                memo[id(v)] = v.detach().clone()
    return copy.deepcopy(model, memo)


def reset_all(model: Any, adapters: NeuronAdapters) -> list[str]:
    """Reset every stateful module; the names of those without a reset method."""
    missing = []
    for name, m in model.named_modules():
        if adapters.is_stateful(m) and not adapters.reset(m):
            missing.append(name)
    return missing


def _children(m: Any, prefix: str, adapters: NeuronAdapters, inner: bool = False) -> list[tuple[str, Any, bool]]:
    """Leaf modules of a container in call order (nested Sequentials expanded), each with whether
    a SpikingJelly container runs it (then it sees (T * B, ...) or one step (B, ...))."""
    out = []
    for n, child in m.named_children():
        q = f"{prefix}.{n}" if prefix else n
        kind = module_kind(child, adapters)
        if kind in ("container", "sequential"):
            out.extend(_children(child, q, adapters, inner or kind == "container"))
        else:
            out.append((q, child, inner))
    return out


def _module_ops(name: str, m: Any, args: list[int], adapters: NeuronAdapters, fx_name: str = "") -> list[Op]:
    """The ops of one module call: one op, or a container's modules (args -1: the op before)."""
    kind = module_kind(m, adapters)
    where = f"module '{name}' ({describe(m)})"
    if kind is None and type(m).__module__.startswith("spikingjelly") and type(m).__name__.startswith("NonSpiking"):
        raise WorkloadError(f"unsupported {where}: a non-spiking readout whose dynamics no snnsim.neurons model "
                            "reproduces exactly", key=name, expected="a readout format v2 models: a spiking neuron "
                            "read by its membrane (snnTorch: spk, mem = lif(x); return mem), or the currents of the "
                            "last conv/linear", found=type(m).__name__,
                            suggestion="end the network with the last linear layer (its current is the readout)")
    if kind is None:
        hint = None
        if type(m).__name__ in ("ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Tanh"):
            hint = ("an ANN activation: convert the trained network with snnsim.export.from_ann(model, "
                    "calibration_inputs, time_steps=T) (ReLU networks), then it exports as an SNN")
        elif not list(m.parameters(recurse=False)) and not list(m.children()):
            hint = (f"if it is a spiking neuron, give it snnsim_neuron() or name it: from_torch(..., "
                    f"spiking=({type(m).__name__},))")
        raise WorkloadError(f"unsupported {where}", key=name, expected=f"supported: {SUPPORTED}",
                            found=type(m).__name__, suggestion=hint)
    if kind in ("container", "sequential"):
        ops: list[Op] = []
        for q, child, inner in _children(m, name, adapters, kind == "container"):
            for op in _module_ops(q, child, args if not ops else [-1], adapters):
                op.hook, op.fx_name = q, ""
                op.params["inner"] = inner
                ops.append(op)
        return ops
    return [Op(name, kind, list(args), module=m, where=where, fx_name=fx_name, hook="" if fx_name else name)]


_ADD = {operator.add, operator.iadd}
_SUB = {operator.sub, operator.isub}
_MUL = {operator.mul, operator.imul}
_IDENTITY_METHODS = {"contiguous", "clone", "detach", "float", "to", "type_as"}
_RESHAPE_METHODS = {"flatten", "view", "reshape"}


def _function_kind(n: Any) -> str | None:
    """The kind of a call_function / call_method node (None: unsupported)."""
    import torch
    import torch.nn.functional as F

    t = n.target
    if n.op == "call_method":
        return {"add": "add", "add_": "add", "sub": "sub", "rsub": "rsub", "mul": "mul", "mul_": "mul",
                "unsqueeze": "unsqueeze", "repeat": "repeat", "mean": "time_reduce", "sum": "time_reduce",
                **{m: "reshape" for m in _RESHAPE_METHODS}, **{m: "identity" for m in _IDENTITY_METHODS}}.get(t)
    if t in _ADD or t is torch.add:
        return "add"
    if t in _SUB or t is torch.sub:
        return "sub"
    if t is torch.rsub:
        return "rsub"
    if t in _MUL or t is torch.mul:
        return "mul"
    if t is operator.getitem:
        return "getitem"
    if t in (torch.flatten, torch.reshape):
        return "reshape"
    if t is torch.unsqueeze:
        return "unsqueeze"
    if t in (torch.mean, torch.sum):
        return "time_reduce"
    if t in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, torch.clone):
        return "identity"
    pools = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
             F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
             F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d}
    if t in pools:
        return "pool"
    return None


def _pool_call_params(n: Any) -> dict[str, Any]:
    """A functional pool's arguments by name (the pool's type from the function's name)."""
    fname = getattr(n.target, "__name__", str(n.target)).lstrip("_")
    kind = "adaptive_max" if "adaptive_max" in fname else "adaptive_avg" if "adaptive_avg" in fname else \
        "max" if "max" in fname else "avg"
    digits = [c for c in fname if c.isdigit()]
    rank = int(digits[0]) if digits else 2
    names = ("output_size",) if kind.startswith("adaptive") else (
        ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices") if kind == "max" else
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"))
    p: dict[str, Any] = {"type": kind, "rank": rank}
    for i, k in enumerate(names):
        if len(n.args) > i + 1:
            p[k] = n.args[i + 1]
    p.update({k: v for k, v in n.kwargs.items()})
    return p


def capture_fx(model: Any, probe: Any, adapters: NeuronAdapters, lead: int, time_steps: int) -> Capture:
    """Trace ``model`` (a copy of it) with fx and run the graph once on ``probe`` for the shapes.
    Raises :class:`TraceFailed` when fx cannot trace it."""
    import torch.fx as fx

    twin = copy_model(model).eval()  # batch norms use their running statistics, dropout is off

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            kind = module_kind(m, adapters)
            return (kind is not None and kind != "sequential") or super().is_leaf_module(m, qualname)

    try:
        graph = Tracer().trace(twin)
    except Exception as e:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        raise TraceFailed(f"{type(e).__name__}: {e}") from None
    gm = fx.GraphModule(twin, graph)
    _refuse_time_loops(graph, twin, adapters)
    repeats = _repeat_count(graph)
    if repeats is not None:
        if repeats != time_steps:
            raise UsageError("the model repeats its input over time itself", key="time_steps",
                             expected=f"time_steps={repeats} (the count of its x.unsqueeze(0).repeat({repeats}, ...))",
                             found=f"time_steps={time_steps}",
                             suggestion=f"pass time_steps={repeats}, or change the repeat count in the model")
        lead, probe = 1, probe[0] if lead == 2 else probe
    shapes = _probe_shapes(gm, twin, probe, adapters)
    ops = _ops_from_graph(graph, twin, adapters, shapes, lead, int(probe.shape[lead - 1]), time_steps)
    return Capture(ops, "torch.fx", twin, gm, lead=lead, repeats=repeats is not None)


def _refuse_time_loops(graph: Any, twin: Any, adapters: NeuronAdapters) -> None:
    """A neuron called several times in one forward pass: the forward loops over time itself."""
    calls: dict[str, list[Any]] = {}
    for n in graph.nodes:
        if n.op == "call_module" and adapters.is_neuron(twin.get_submodule(n.target)):
            calls.setdefault(str(n.target), []).append(n)
    for target, nodes in calls.items():
        if len(nodes) > 1:
            raise WorkloadError(f"neuron module '{target}' is called {len(nodes)} times in one forward pass",
                                key=target, expected="a forward that runs one time step (each neuron called once; "
                                "from_torch calls it time_steps times), or a multi-step (T, B, ...) SpikingJelly model",
                                found=f"{len(nodes)} calls: the forward loops over time itself (or reuses the neuron)",
                                suggestion=f"export the per-step network with time_steps={len(nodes)}: move the "
                                "loop out of forward (neurons with init_hidden=True keep their own state), or give "
                                "each place its own neuron module")
    for target, nodes in calls.items():
        extra = [a for a in (*nodes[0].args[1:], *nodes[0].kwargs.values()) if a is not None]
        if extra:
            raise WorkloadError(f"neuron module '{target}' is called with its state as an argument", key=target,
                                expected="the module keeping its own state: lif(current)",
                                found=f"{1 + len(extra)} arguments",
                                suggestion="snnTorch: use init_hidden=True (or call lif(cur) without mem); the "
                                "export resets every neuron before the first step")


def _repeat_count(graph: Any) -> int | None:
    """T of an ``x.unsqueeze(0).repeat(T, 1, ...)`` of the model's input, or None."""
    for n in graph.nodes:
        if n.op != "placeholder":
            continue
        for u in n.users:
            if _function_kind(u) == "unsqueeze" and (u.args[1:2] or (u.kwargs.get("dim"),))[0] == 0:
                for r in u.users:
                    if _function_kind(r) == "repeat":
                        sizes = r.args[1:] if not isinstance(r.args[1], (tuple, list)) else tuple(r.args[1])
                        if sizes and isinstance(sizes[0], int):
                            return int(sizes[0])
    return None


def _probe_shapes(gm: Any, twin: Any, probe: Any, adapters: NeuronAdapters) -> dict[str, Any]:
    """Each fx node's output shape (a tuple, "tuple" of tensors, or None) and, under the key
    ``hook:<module>``, the output shape of every module inside a container."""
    import torch
    import torch.fx as fx

    shapes: dict[str, Any] = {}
    current: dict[str, Any] = {}

    class Shapes(fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            current["node"] = n
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                shapes[n.name] = tuple(int(s) for s in out.shape)
            elif isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
                shapes[n.name] = "tuple"
                shapes[f"tuple:{n.name}"] = tuple(int(s) for s in out[0].shape)
            return out

    handles = []
    for name, m in twin.named_modules():
        if module_kind(m, adapters) not in (None, "container", "sequential"):
            def hook(_m: Any, _i: Any, out: Any, name: str = name) -> None:
                t = out[0] if isinstance(out, (tuple, list)) else out
                if isinstance(t, torch.Tensor):
                    shapes[f"hook:{name}"] = tuple(int(s) for s in t.shape)
            handles.append(m.register_forward_hook(hook))
    reset_all(twin, adapters)
    try:
        with torch.no_grad():
            Shapes(gm).run(probe)
    except SnnsimError:
        raise
    except Exception as e:
        n = current.get("node")
        what = (f"module '{n.target}' ({describe(twin.get_submodule(n.target))})" if n is not None and
                n.op == "call_module" else f"operation '{getattr(n, 'name', '?')}'")
        raise UsageError(f"the model fails on the given inputs at {what}", key="inputs",
                         expected="inputs of the shape the model was built for",
                         found=f"samples of shape {list(probe.shape)}: {type(e).__name__}: "
                         f"{str(e).split(chr(10))[0]}") from None
    finally:
        for h in handles:
            h.remove()
        reset_all(twin, adapters)
    return shapes


def _ops_from_graph(graph: Any, twin: Any, adapters: NeuronAdapters, shapes: dict[str, Any], lead_in: int,
                    batch: int, time_steps: int) -> list[Op]:
    import torch.fx as fx

    ops: list[Op] = []
    index: dict[Any, int] = {}
    lead: dict[Any, int] = {}

    def tensor_arg(a: Any) -> bool:
        return a in index and ops[index[a]].kind not in ("other",)

    def per_sample(n: Any, k: int) -> tuple[int, ...] | None:
        sh = shapes.get(n.name)
        if sh == "tuple":  # a neuron's (spikes, state): the shape of its spikes
            sh = shapes.get(f"tuple:{n.name}")
        if not isinstance(sh, tuple):
            return None
        want = (batch,) if k == 1 else (time_steps, batch)
        if tuple(sh[:k]) != want and _function_kind(n) not in ("unsqueeze", "time_reduce"):
            raise WorkloadError(f"operation '{n.name}' changes the batch or time dimensions", key=n.name,
                                expected=f"leading dimensions {list(want)} ({'B' if k == 1 else 'T, B'})",
                                found=f"output of shape {list(sh)}",
                                suggestion="keep the batch (and, multi-step, the time) dimension first; flatten "
                                "with x.flatten(1) (single-step) or x.flatten(2) (multi-step)")
        return tuple(sh[k:])

    for n in graph.nodes:
        firsts = [a for a in n.all_input_nodes if a in lead]
        k = lead[firsts[0]] if firsts else lead_in
        stack = n.meta.get("nn_module_stack") or {}
        inside = ""
        if stack:
            last = list(stack.values())[-1]
            path, cls = last if isinstance(last, tuple) else (list(stack)[-1], None)
            inside = f" in module '{path}'" + (f" ({getattr(cls, '__name__', cls)})" if cls else "")
        if n.op == "placeholder":
            if any(o.kind == "input" for o in ops):
                raise WorkloadError("the model takes more than one input", key=n.name, expected="one analog input",
                                    found=f"argument '{n.name}'")
            lead[n], index[n] = lead_in, len(ops)
            ops.append(Op("input", "input", [], shape=per_sample(n, lead_in), where="the input"))
            continue
        if n.op == "output":
            args: list[int] = _tensor_args(n.args, index, tensor_arg)
            ops.append(Op("output", "output", args, where="the output"))
            continue
        if n.op == "get_attr":
            index[n] = len(ops)
            target = twin
            for part in str(n.target).split("."):
                target = getattr(target, part)
            ops.append(Op(n.name, "const", [], params={"value": target}, where=f"constant '{n.target}'"))
            continue
        args = _tensor_args((n.args, n.kwargs), index, tensor_arg)
        if n.op == "call_module":
            m = twin.get_submodule(n.target)
            sub = _module_ops(str(n.target), m, args[:1], adapters, fx_name=n.name)
            base = len(ops)
            for i, op in enumerate(sub):
                op.args = [base + i + a if a < 0 else a for a in op.args]
                op.shape = (per_sample(n, k) if op.fx_name else
                            _inner_shape(shapes.get(f"hook:{op.hook}")))
                op.tuple_out = shapes.get(n.name) == "tuple" and bool(op.fx_name)
            if sub and sub[-1].fx_name == "" and shapes.get(n.name) is not None:
                sub[-1].shape = per_sample(n, k)
            ops.extend(sub)
            lead[n] = k
            index[n] = len(ops) - 1 if sub else args[0]
            continue
        tname = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
        where = f"operation '{n.name}' ({tname}){inside}"
        kind = _function_kind(n)
        if kind == "unsqueeze":
            k = 2
        lead[n] = 1 if kind == "time_reduce" else k
        sh = shapes.get(n.name)
        if sh is None and kind != "getitem":  # sizes and other non-tensor values
            index[n] = len(ops)
            ops.append(Op(n.name, "other", [], where=where))
            continue
        if kind is None:
            hint = (f"if {inside.strip()} is a neuron, give it snnsim_neuron() or name it in spiking=(...) so that "
                    "fx does not trace into it") if stack else None
            raise WorkloadError(f"unsupported {where}", key=n.name, expected=f"supported: {SUPPORTED}", found=tname,
                                suggestion=hint)
        operands = [("op", index[a]) if isinstance(a, fx.Node) and a in index else ("value", a) for a in n.args]
        params: dict[str, Any] = dict(n.kwargs)
        if kind == "pool":
            params = _pool_call_params(n)
        elif kind in ("reshape", "unsqueeze", "repeat", "time_reduce", "getitem"):
            params = {"args": [a for a in n.args[1:] if not isinstance(a, fx.Node)], **n.kwargs}
        params["lead"] = k
        index[n] = len(ops)
        ops.append(Op(n.name, kind, args, operands=operands, params=params,
                      shape=per_sample(n, k) if isinstance(sh, tuple) and kind != "time_reduce" else None,
                      where=where, fx_name=n.name,
                      tuple_out=sh == "tuple"))
    return ops


def _tensor_args(args: Any, index: dict[Any, int], is_tensor: Any) -> list[int]:
    """The op indices of the tensor-valued fx nodes among ``args``, in order."""
    import torch.fx as fx

    out: list[int] = []
    fx.node.map_arg(args, lambda a: out.append(index[a]) if is_tensor(a) else None)
    return out


def _inner_shape(sh: Any) -> tuple[int, ...] | None:
    """A container's module sees (T * B, ...) or (B, ...): the per-sample shape drops one axis."""
    return tuple(sh[1:]) if isinstance(sh, tuple) else None


def capture_sequential(model: Any, probe: Any, adapters: NeuronAdapters, lead: int) -> Capture:
    """An nn.Sequential's modules in call order (the fallback when fx cannot trace it)."""
    import torch

    twin = copy_model(model).eval()
    ops = [Op("input", "input", [], shape=tuple(int(s) for s in probe.shape[lead:]), where="the input")]
    for q, child, inner in _children(twin, "", adapters):
        for op in _module_ops(q, child, [len(ops) - 1], adapters):
            op.args = [len(ops) + a if a < 0 else a for a in op.args]
            op.params["inner"] = inner
            ops.append(op)
    ops.append(Op("output", "output", [len(ops) - 1], where="the output"))
    shapes: dict[str, Any] = {}
    handles = []
    for op in ops[1:-1]:
        def hook(_m: Any, _i: Any, out: Any, name: str = op.hook) -> None:
            t = out[0] if isinstance(out, (tuple, list)) else out
            shapes[name] = (tuple(int(s) for s in t.shape), isinstance(out, (tuple, list)))
        handles.append(op.module.register_forward_hook(hook))
    reset_all(twin, adapters)
    try:
        with torch.no_grad():
            twin(probe)
    except SnnsimError:
        raise
    except Exception as e:
        raise UsageError("the model fails on the given inputs", key="inputs",
                         expected="inputs of the shape the model was built for",
                         found=f"shape {list(probe.shape)}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    finally:
        for h in handles:
            h.remove()
        reset_all(twin, adapters)
    for op in ops[1:-1]:
        sh, is_tuple = shapes.get(op.hook, (None, False))
        # a multi-step module sees (T, B, ...) unless a container folds T into the batch or steps it
        op.shape = None if sh is None else tuple(sh[1:] if op.params.get("inner") or lead == 1 else sh[2:])
        op.tuple_out = is_tuple
    return Capture(ops, "nn.Sequential call order", twin, None, lead=lead)


def fallback_allowed(model: Any) -> bool:
    import torch

    return isinstance(model, torch.nn.Sequential)
