"""A trained ReLU network read as the chain of operations ANN-to-SNN conversion rescales.

:func:`ann_chain` turns a PyTorch model (an ``nn.Sequential``, nested or not, or a module whose
``forward`` is a straight chain that ``torch.fx`` can trace, with ``F.relu``, ``torch.flatten``,
``x.view(x.size(0), -1)`` and functional pooling allowed) into a list of :class:`Step`:

- ``weighted``: a ``Conv1d/2d/3d`` or ``Linear``, as a float32 copy with the batch norm that
  follows it folded in;
- ``relu``: where an integrate-and-fire neuron goes;
- ``maxpool``, ``avgpool`` (average and adaptive average pooling), ``flatten``;
- ``tail``: a trailing ``Softmax`` / ``LogSoftmax`` (dropped: the readout's argmax is the same).

Dropout and Identity are skipped (the model is evaluated in ``eval()``). Anything else (another
activation, a residual add, a batch norm not right after a conv/linear) raises WorkloadError
naming the module, what is supported and what to do.

Batch norm folding (as SpikingJelly's ``fuse_conv_bn_eval`` and SNN Toolbox do): in eval mode a
batch norm after a conv/linear computes ``y = a (z - mu) + beta`` per output channel with
``a = gamma / sqrt(var + eps)``, so ``W' = a W`` (per output channel) and ``b' = a (b - mu) +
beta`` give the same output; computed in float64 and stored as float32.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any

from ..errors import WorkloadError

SUPPORTED = ("Conv1d/2d/3d, Linear (with or without bias), BatchNorm1d/2d/3d right after one, ReLU (module, F.relu, "
             "torch.relu, .relu()), MaxPool, AvgPool, AdaptiveAvgPool, Flatten, Dropout, Identity, a final "
             "Softmax/LogSoftmax; a straight chain (no residual adds yet)")

# activation modules a user may have trained with: each gets the "only ReLU converts" message
_OTHER_ACTIVATIONS = ("Sigmoid", "Tanh", "GELU", "SiLU", "ELU", "SELU", "CELU", "LeakyReLU", "PReLU", "RReLU",
                      "ReLU6", "Hardtanh", "Hardsigmoid", "Hardswish", "Mish", "Softplus", "Softsign", "Tanhshrink",
                      "Threshold", "GLU", "LogSigmoid", "Softmin", "Softmax2d")


@dataclass
class Step:
    """One operation of the chain: its kind, where it is in the model (for messages and names),
    and the module computing it (a folded float32 copy for ``weighted``; None for ``relu``)."""

    kind: str  # weighted | relu | maxpool | avgpool | flatten | tail
    where: str
    module: Any = None
    folded: str | None = None  # the batch norm folded into a weighted step


def _torch() -> Any:
    import torch

    return torch


def _type_name(m: Any) -> str:
    t = type(m)
    return f"{t.__module__}.{t.__qualname__}"


def _unsupported(where: str, what: str, found: str, suggestion: str) -> WorkloadError:
    return WorkloadError(what, key=f"model.{where}", expected=f"supported: {SUPPORTED}", found=found,
                         suggestion=suggestion)


def _classify(m: Any, where: str) -> str:
    """The kind of a leaf module (raises WorkloadError for one conversion cannot map)."""
    nn = _torch().nn
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        return "weighted"
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        return "bn"
    if type(m) is nn.ReLU:
        return "relu"
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        if m.return_indices:
            raise _unsupported(where, "a max pool that returns indices", _type_name(m), "set return_indices=False")
        return "maxpool"
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                      nn.AdaptiveAvgPool3d)):
        return "avgpool"
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(where, "a Flatten that keeps more than the batch axis", f"Flatten(start_dim="
                               f"{m.start_dim}, end_dim={m.end_dim})", "use nn.Flatten() (start_dim=1, end_dim=-1)")
        return "flatten"
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)):
        return "skip"
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        return "tail"
    if type(m).__name__ in _OTHER_ACTIVATIONS or type(m).__module__ == "torch.nn.modules.activation":
        raise _unsupported(where, f"{type(m).__name__} is not a ReLU: only ReLU activations convert to "
                           "integrate-and-fire neurons (a spike rate approximates max(0, x))", _type_name(m),
                           "retrain the model with nn.ReLU in its place")
    raise _unsupported(where, "a module ANN-to-SNN conversion cannot map", _type_name(m),
                       "rebuild the model from the supported modules, or convert it yourself and export the "
                       "spiking model with snnsim.export.from_torch")


# ----------------------------------------------------------------------------- reading the model

_POOL_ARGS = {
    "max_pool": ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg_pool": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "adaptive_avg_pool": ("output_size",),
}


def _functional_pool(fn: Any, args: tuple, kwargs: dict, where: str) -> tuple[str, Any] | None:
    """A pooling module equivalent to a functional pooling call, or None if ``fn`` is none."""
    nn = _torch().nn
    name = getattr(fn, "__name__", "")
    for prefix, names in _POOL_ARGS.items():
        for rank in (1, 2, 3):
            if name == f"{prefix}{rank}d":
                kw = dict(zip(names, args, strict=False))
                kw.update(kwargs)
                cls = {"max_pool": "MaxPool", "avg_pool": "AvgPool", "adaptive_avg_pool": "AdaptiveAvgPool"}[prefix]
                try:
                    module = getattr(nn, f"{cls}{rank}d")(**kw)
                except TypeError as e:
                    raise _unsupported(where, "a functional pooling call with unexpected arguments", str(e),
                                       "use the pooling module instead") from None
                kind = _classify(module, where)
                return kind, module
    return None


def _fx_steps(model: Any) -> list[tuple[str, str, Any]]:
    """(kind, where, module) per operation of an fx-traceable chain, in call order."""
    torch = _torch()
    F = torch.nn.functional
    gm = torch.fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    out: list[tuple[str, str, Any]] = []
    meta: set[Any] = set()  # nodes holding sizes, not tensors
    prev = None  # the last node of the chain
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise _unsupported("forward", "a model with more than one input", f"{len(placeholders)} inputs",
                           "convert a model whose forward takes one tensor")
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            prev = node
            continue
        if node.op == "get_attr":
            raise _unsupported(node.name, "a forward that reads a parameter or buffer directly", str(node.target),
                               "wrap the computation in a module")
        tensors = [a for a in node.all_input_nodes if a not in meta]
        where = str(node.target) if node.op == "call_module" else node.name
        if node.op == "output":
            (res,) = node.args
            if res is not prev:
                raise _unsupported("forward", "the model's output is not the end of its chain of operations",
                                   repr(res)[:200], "return the last layer's output (one tensor)")
            break
        is_size = (node.op == "call_method" and node.target in ("size", "dim")
                   or node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",)
                   or node.op == "call_function" and node.target is operator.getitem and node.args[0] in meta)
        if is_size:
            meta.add(node)
            continue
        if tensors != [prev]:
            what = ("a residual add or another join of two branches" if len(tensors) > 1
                    else "an operation that reads an earlier value than the previous one (a branch)")
            raise _unsupported(where, what, f"{node.op} {getattr(node.target, '__name__', node.target)} reading "
                               f"{[t.name for t in tensors]}", "residual (ResNet-style) networks are not converted "
                               "yet: convert a straight chain, or convert with SpikingJelly's ann2snn and export "
                               "the result with snnsim.export.from_torch")
        if node.op == "call_module":
            m = modules[node.target]
            out.append((_classify(m, where), where, m))
        elif node.op == "call_function":
            fn = node.target
            pool = _functional_pool(fn, node.args[1:], dict(node.kwargs), where)
            if fn in (F.relu, torch.relu, torch.relu_) or fn is getattr(F, "relu_", None):
                out.append(("relu", where, None))
            elif fn is torch.flatten:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
                if (start, end) != (1, -1):
                    raise _unsupported(where, "a flatten that does not keep the batch axis", f"torch.flatten("
                                       f"start_dim={start}, end_dim={end})", "flatten with torch.flatten(x, 1)")
                out.append(("flatten", where, torch.nn.Flatten()))
            elif pool is not None:
                out.append((pool[0], where, pool[1]))
            elif fn in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d):
                continue
            else:
                raise _unsupported(where, "a function ANN-to-SNN conversion cannot map",
                                   f"{getattr(fn, '__module__', '')}.{getattr(fn, '__name__', fn)}",
                                   "only relu, flatten, pooling and dropout may be called as functions")
        elif node.op == "call_method":
            if node.target in ("relu", "relu_"):
                out.append(("relu", where, None))
            elif node.target == "flatten" and tuple(node.args[1:]) in ((1,), (1, -1)):
                out.append(("flatten", where, torch.nn.Flatten()))
            elif node.target in ("view", "reshape") and len(node.args) == 3 and node.args[2] == -1 \
                    and node.args[1] in meta:
                out.append(("flatten", where, torch.nn.Flatten()))  # x.view(x.size(0), -1)
            else:
                raise _unsupported(where, "a tensor method ANN-to-SNN conversion cannot map",
                                   f".{node.target}{tuple(repr(a) for a in node.args[1:])}",
                                   "use x.relu(), torch.flatten(x, 1) or x.view(x.size(0), -1)")
        else:  # pragma: no cover - fx has no other node kinds
            raise _unsupported(where, "an unknown fx node", node.op, "")
        prev = node
    return out


def _sequential_steps(model: Any, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(kind, where, module) of an nn.Sequential's leaf modules in order (nested containers
    flattened), for a model fx cannot trace."""
    nn = _torch().nn
    out: list[tuple[str, str, Any]] = []
    for name, m in model.named_children():
        where = f"{prefix}{name}"
        if type(m) is nn.Sequential:
            out += _sequential_steps(m, f"{where}.")
        else:
            out.append((_classify(m, where), where, m))
    return out


def _fold(weighted: Any, bn: Any, where: str, bn_where: str) -> Any:
    """A float32 copy of ``weighted`` with the batch norm ``bn`` folded in (module docstring)."""
    torch = _torch()
    if bn.running_mean is None or bn.running_var is None:
        raise _unsupported(bn_where, "a batch norm without running statistics (track_running_stats=False)",
                           _type_name(bn), "train with track_running_stats=True so eval() uses fixed statistics")
    c = weighted.weight.shape[0]
    if bn.num_features != c:
        raise _unsupported(bn_where, "a batch norm whose channels differ from its conv/linear", f"{bn.num_features} "
                           f"features after {c} output channels of '{where}'", "fix the model")
    w = weighted.weight.detach().double()
    b = weighted.bias.detach().double() if weighted.bias is not None else torch.zeros(c, dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones(c, dtype=torch.float64)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros(c, dtype=torch.float64)
    a = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    out = _float_copy(weighted)
    out.weight = torch.nn.Parameter((w * a.reshape(-1, *([1] * (w.dim() - 1)))).float(), requires_grad=False)
    out.bias = torch.nn.Parameter(((b - bn.running_mean.detach().double()) * a + beta).float(), requires_grad=False)
    return out


def _float_copy(m: Any) -> Any:
    """A float32 CPU copy of a module, detached from training."""
    out = copy.deepcopy(m).float().cpu().eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def ann_chain(model: Any) -> tuple[list[Step], list[str]]:
    """The model as a chain of :class:`Step` (module docstring), batch norms folded, dropout and
    identities skipped, and notes on what was dropped. Raises WorkloadError naming the first
    module conversion cannot map."""
    torch = _torch()
    try:
        raw = _fx_steps(model)
    except WorkloadError:
        raise
    except Exception as e:  # fx could not trace the forward (data-dependent control flow...)
        if not isinstance(model, torch.nn.Sequential):
            raise WorkloadError("torch.fx cannot trace the model", key="model", expected="an nn.Sequential, or a "
                                "module whose forward is a straight chain of supported operations",
                                found=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                                suggestion="rewrite the forward without data-dependent control flow, or as an "
                                "nn.Sequential") from None
        raw = _sequential_steps(model)
    steps: list[Step] = []
    for kind, where, m in raw:
        if kind == "skip":
            continue
        if kind == "bn":
            last = steps[-1] if steps else None
            if last is None or last.kind != "weighted" or last.folded is not None:
                raise _unsupported(where, "a batch norm that does not directly follow a conv or linear layer",
                                   f"after {last.kind + ' ' + last.where if last else 'the input'}",
                                   "put each batch norm right after its conv/linear (conv -> bn -> relu), where "
                                   "it folds into the weights")
            last.module = _fold(last.module, m, last.where, where)
            last.folded = where
            continue
        if kind == "tail" and steps and steps[-1].kind == "tail":
            raise _unsupported(where, "two softmax layers", where, "keep one at the end")
        if steps and steps[-1].kind == "tail":
            raise _unsupported(steps[-1].where, "a softmax before the end of the model", steps[-1].where,
                               "a softmax may only be the last operation")
        module = _float_copy(m) if kind == "weighted" else (copy.deepcopy(m) if m is not None else None)
        steps.append(Step(kind=kind, where=where, module=module))
    return _checked(steps)


def _checked(steps: list[Step]) -> tuple[list[Step], list[str]]:
    """Drop ReLUs that act on values already non-negative (noted), and check the chain has a
    weighted layer and ends in a readout (a weighted layer, maybe pooled, flattened or
    softmaxed)."""
    weighted = [i for i, s in enumerate(steps) if s.kind == "weighted"]
    if not weighted:
        raise WorkloadError("the model has no conv or linear layer to convert", key="model",
                            expected="at least one Conv/Linear layer (the last one is the readout)",
                            found=f"{len(steps)} operations: {[s.kind for s in steps][:8]}",
                            suggestion="pass the trained network itself")
    out: list[Step] = []
    notes: list[str] = []
    nonneg = True  # the analog input is in [0, 1]
    for s in steps:
        if s.kind == "relu" and nonneg:
            notes.append(f"'{s.where}': a ReLU of values already non-negative (after "
                         f"{out[-1].where if out else 'the input, which is in [0, 1]'}) is the identity: dropped")
            continue
        if s.kind == "weighted":
            nonneg = False
        elif s.kind == "relu":
            nonneg = True
        out.append(s)
    last = max(i for i, s in enumerate(out) if s.kind == "weighted")
    for s in out[last + 1:]:
        if s.kind == "relu":
            raise _unsupported(s.where, "a ReLU after the last conv/linear layer", "relu after the readout "
                               f"'{out[last].where}'", "remove the final ReLU: the last layer is the readout, whose "
                               "current summed over the steps gives the class scores")
        if s.kind == "maxpool":
            raise _unsupported(s.where, "a max pool after the last conv/linear layer", "maxpool after the readout "
                               f"'{out[last].where}'", "use an average pool after the readout, or end with a "
                               "linear layer")
    return out, notes
