"""Data-based weight normalisation of a ReLU chain (:mod:`.ann_chain`) and the spiking network it
becomes (:mod:`.ann_snn`).

Activation scales (Diehl et al., "Fast-classifying, high-accuracy spiking deep networks through
weight and threshold balancing", IJCNN 2015; Rueckauer et al., "Conversion of continuous-valued
deep networks to efficient event-driven networks for image classification", Front. Neurosci.
11:682, 2017): the ANN runs on the calibration inputs and each ReLU layer ``l`` gets a scale
``lambda_l``: the maximum of its activations (``max``) or the p-th percentile of its non-zero
activations (``percentile``, as SNN Toolbox computes it in ``conversion/utils.py``; robust to a few
outliers, at the price of saturating them).

Rescaling, with ``lambda_0 = 1`` (the input is in [0, 1]: a direct analog input enters as it is,
and the rate code of :class:`~.ann_snn.SubtractIF` with threshold 1 spikes at rate ``x``)::

    W_l <- W_l * lambda_{l-1} / lambda_l        b_l <- b_l / lambda_l        threshold = 1

where ``lambda_{l-1}`` is the scale of the layer's input and ``lambda_l`` that of the ReLU the
layer feeds (1 for the readout, whose current is then the ANN's logits at every step). Pooling
and flatten commute with a positive scale, so a layer keeps the scale of its input through them.
An IF neuron with reset by subtraction fed a constant current ``z / lambda_l`` fires at rate
``min(1, max(0, z / lambda_l))`` up to 1/T quantisation: the ANN's activation divided by its scale.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from .ann_chain import Step

METHODS = ("max", "percentile")


def _torch() -> Any:
    import torch

    return torch


def avg_for_max(m: Any, where: str) -> Any:
    """The average pool with a max pool's kernel, stride, padding and ceil mode (``maxpool="avg"``)."""
    from ..errors import WorkloadError

    nn = _torch().nn
    dil = m.dilation if isinstance(m.dilation, (tuple, list)) else (m.dilation,)
    if any(d != 1 for d in dil):
        raise WorkloadError("a dilated max pool has no average-pool equivalent", key=f"model.{where}",
                            expected="dilation 1 for maxpool='avg'", found=f"dilation {m.dilation}",
                            suggestion="use maxpool='or'")
    cls = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}[
        next(c for c in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d) if isinstance(m, c))]
    return cls(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)


def ann_modules(steps: list[Step], maxpool: str, tail: bool = False) -> list[Any]:
    """The chain as the ANN the SNN approximates: one module per step (ReLUs as ``nn.ReLU``, max
    pools replaced by average pools for ``maxpool="avg"``, a trailing softmax left out unless
    ``tail``)."""
    nn = _torch().nn
    out = []
    for s in steps:
        if s.kind == "relu":
            out.append(nn.ReLU())
        elif s.kind == "maxpool" and maxpool == "avg":
            out.append(avg_for_max(s.module, s.where))
        elif s.kind != "tail" or tail:
            out.append(s.module)
    return out


def run_ann(modules: list[Any], x: Any, batch: int = 256) -> tuple[Any, list[np.ndarray]]:
    """The chain's output on ``x`` (float32 tensor) and, per ReLU, its activations (flattened
    float32 NumPy arrays, all samples)."""
    torch = _torch()
    outs, acts = [], None
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            h = x[i:i + batch]
            mine = []
            for m in modules:
                h = m(h)
                if isinstance(m, torch.nn.ReLU):
                    mine.append(h.reshape(-1).numpy().copy())
            outs.append(h)
            acts = [[a] for a in mine] if acts is None else [p + [a] for p, a in zip(acts, mine, strict=True)]
    return torch.cat(outs), [np.concatenate(a) for a in (acts or [])]


def activation_scale(values: np.ndarray, method: str, percentile: float) -> float:
    """``lambda`` of one layer's activations (module docstring); 0 when the layer never fires."""
    pos = values[values > 0]
    if pos.size == 0:
        return 0.0
    if method == "max":
        return float(pos.max())
    return float(np.percentile(pos.astype(np.float64), percentile))


def weighted_scales(steps: list[Step], relu_lambdas: list[float]) -> list[tuple[float, float]]:
    """Per weighted step, (lambda of its input, lambda of the ReLU it feeds, or 1)."""
    out = []
    scale_in = 1.0
    k = 0  # the next ReLU
    for i, s in enumerate(steps):
        if s.kind == "relu":
            scale_in = relu_lambdas[k]
            k += 1
        elif s.kind == "weighted":
            nxt = next((t for t in steps[i + 1:] if t.kind in ("weighted", "relu")), None)
            scale_out = relu_lambdas[k] if nxt is not None and nxt.kind == "relu" else 1.0
            out.append((scale_in, scale_out))
            scale_in = scale_out
    return out


def _name(where: str, used: set[str]) -> str:
    base = where.replace(".", "_") or "layer"
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}_{n}"
    used.add(name)
    return name


def pools_before_neurons(steps: list[Step]) -> list[Step]:
    """The chain with every max pool that follows a ReLU moved before it (``maxpool="current"``):
    ``max(relu(a), relu(b)) = relu(max(a, b))``, so the ANN is the same, and the SNN pools the
    currents at each step instead of the spikes."""
    out = list(steps)
    for i in range(1, len(out)):
        j = i
        while j > 0 and out[j].kind == "maxpool" and out[j - 1].kind == "relu":
            out[j - 1], out[j] = out[j], out[j - 1]
            j -= 1
    return out


def build_snn(steps: list[Step], relu_lambdas: list[float], maxpool: str, input_coding: str) -> Any:
    """The :class:`~.ann_snn.ConvertedSNN` of a chain: rescaled weighted layers, a
    :class:`~.ann_snn.SubtractIF` (threshold 1) per ReLU, pools (max pools as they are: an OR of
    spikes; moved before the neuron, pooling currents; or replaced by average pools), flatten; a
    rate-coding encoder first when asked."""
    import copy

    from .ann_snn import ConvertedSNN, SubtractIF

    torch = _torch()
    scales = iter(weighted_scales(steps, relu_lambdas))
    layers: OrderedDict[str, Any] = OrderedDict()
    used: set[str] = set()
    if input_coding == "rate":
        layers[_name("input_if", used)] = SubtractIF(1.0)
    for s in (pools_before_neurons(steps) if maxpool == "current" else steps):
        if s.kind == "weighted":
            lam_in, lam_out = next(scales)
            m = copy.deepcopy(s.module)
            w = m.weight.detach().double() * (lam_in / lam_out)
            m.weight = torch.nn.Parameter(w.float(), requires_grad=False)
            if m.bias is not None:
                m.bias = torch.nn.Parameter((m.bias.detach().double() / lam_out).float(), requires_grad=False)
            layers[_name(s.where, used)] = m
        elif s.kind == "relu":
            layers[_name(s.where, used)] = SubtractIF(1.0)
        elif s.kind == "maxpool" and maxpool == "avg":
            layers[_name(s.where, used)] = avg_for_max(s.module, s.where)
        elif s.kind in ("maxpool", "avgpool", "flatten"):
            layers[_name(s.where, used)] = copy.deepcopy(s.module)
    return ConvertedSNN(layers).eval()


def relu_lambdas(acts: list[np.ndarray], method: str, percentile: float) -> tuple[list[float], list[int]]:
    """``lambda`` per ReLU, and the indices of ReLUs that never fired on the calibration inputs
    (given ``lambda = 1``: their layer's weights are then only rescaled by the input's scale)."""
    out, dead = [], []
    for k, a in enumerate(acts):
        lam = activation_scale(a, method, percentile)
        if not (lam > 0 and math.isfinite(lam)):
            dead.append(k)
            lam = 1.0
        out.append(lam)
    return out, dead
