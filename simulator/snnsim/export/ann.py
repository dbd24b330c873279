"""ANN-to-SNN conversion of a trained ReLU network, and the export of the spiking network it gives.

:func:`from_ann` converts a trained PyTorch ReLU CNN (conv/linear with or without bias, batch
norm, ReLU, max/average pooling, flatten, dropout) into a spiking network of integrate-and-fire
neurons and writes its trace with :func:`snnsim.export.from_torch`; :func:`convert_ann` does the
conversion alone. The method is data-based threshold balancing (Diehl et al., IJCNN 2015) with
the robust percentile normalisation and reset by subtraction of Rueckauer et al. (Front. Neurosci.
11:682, 2017); ``../shared/reference/pim-loihi-ncs2.md`` section D compares the tools.

1. Batch norm is folded into the conv/linear before it (:mod:`.ann_chain`: exact up to float32).
2. The ANN runs on the calibration inputs; each ReLU layer ``l`` gets ``lambda_l``, the maximum
   (``method="max"``) or the ``percentile``-th percentile of its non-zero activations
   (``method="percentile"``), and the weights are rescaled ``W_l * lambda_{l-1} / lambda_l``,
   the biases ``b_l / lambda_l``, the thresholds 1 (:mod:`.ann_calibrate`).
3. Each ReLU becomes a :class:`~.ann_snn.SubtractIF` (SpikingJelly's ``IFNode(v_reset=None)``
   arithmetic): its spike rate over ``T`` steps approximates ``activation / lambda_l``. Biases (and
   folded batch-norm shifts) are constant currents added every step. The last conv/linear layer
   is the readout: no neuron; its current summed over the ``T`` steps gives the class scores
   (their argmax is the prediction).
4. Max pooling: ``maxpool="or"`` keeps it on the spikes, where a max of spikes is their OR per step
   (an approximation of the ANN's max: the OR's rate is at least the largest input rate, so the
   error does not shrink with T; on the digits CNN of tests/test_ann.py it costs 3 to 7 points);
   ``maxpool="current"`` moves a max pool that follows a ReLU before the neuron (``max(relu(a),
   relu(b)) = relu(max(a, b))``: the same ANN), so the SNN pools currents at each step: exact for
   a layer whose current is constant over the steps (the first layer with direct input), an
   approximation after spiking layers (the max per step of fluctuating currents, biased upwards):
   within about a point of the ANN on that CNN with direct input, but worse than the OR with
   rate-coded input (87 % against 93 %, the ANN 97 %); ``maxpool="avg"`` replaces it with average pooling (same
   kernel, stride, padding; calibrated on the ANN with that replacement), a different network
   from the one trained.
5. Input: ``input_coding="direct"`` feeds the analog input (in [0, 1]) to the first layer at every
   step (a multi-bit layer on hardware); ``"rate"`` puts a :class:`~.ann_snn.SubtractIF` with
   threshold 1 on the analog input, a deterministic rate code (``floor(x T)`` spikes in ``T`` steps,
   up to float32 rounding) instead of Poisson spikes, so that the trace is reproducible.

The converted network (:class:`~.ann_snn.ConvertedSNN`) is single-step: one call is one step.
Every approximation made is listed in :attr:`ConversionResult.notes` and in the trace's
provenance (``provenance.conversion``).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError, WorkloadError, did_you_mean
from .ann_calibrate import METHODS, ann_modules, build_snn, relu_lambdas, run_ann
from .ann_chain import ann_chain

INPUT_CODINGS = ("direct", "rate")
MAXPOOLS = ("or", "current", "avg")
#: the chain read from the model must reproduce its forward to this relative tolerance (float32
#: rounding of folded batch norms), else the model does something its modules do not show
CHAIN_RTOL = 1e-3
REFERENCES = ("Diehl et al., Fast-classifying, high-accuracy spiking deep networks through weight and threshold "
              "balancing, IJCNN 2015",
              "Rueckauer et al., Conversion of continuous-valued deep networks to efficient event-driven networks "
              "for image classification, Front. Neurosci. 11:682, 2017")


@dataclass
class ConversionResult:
    """What a conversion gives: the spiking network, its scales, its accuracy, its export.

    ``lambdas``: the activation scale of every layer with neurons (keyed by the conv/linear
    module whose ReLU it is), and ``input`` (1: the input is in [0, 1]). Accuracies are fractions in
    [0, 1] on ``accuracy_on`` (``eval`` or ``calibration`` inputs), None without labels;
    ``snn_accuracy_per_step[t]`` is the accuracy of the readout summed over steps 1..t+1."""

    snn: Any
    lambdas: dict[str, float]
    method: str
    percentile: float | None
    time_steps: int
    input_coding: str
    maxpool: str
    ann_accuracy: float | None = None
    snn_accuracy: float | None = None
    snn_accuracy_per_step: list[float] = field(default_factory=list)
    accuracy_on: str | None = None
    notes: list[str] = field(default_factory=list)
    export: Any = None
    path: Path | None = None

    def provenance(self) -> dict[str, Any]:
        """The conversion's settings, scales, accuracies and notes as JSON values."""
        return {"generator": "snnsim.export.from_ann", "method": self.method, "percentile": self.percentile,
                "time_steps": self.time_steps, "input_coding": self.input_coding, "maxpool": self.maxpool,
                "lambdas": dict(self.lambdas), "reset": "subtract", "threshold": 1.0,
                "ann_accuracy": self.ann_accuracy, "snn_accuracy": self.snn_accuracy,
                "accuracy_on": self.accuracy_on, "notes": list(self.notes), "references": list(REFERENCES)}


# ----------------------------------------------------------------------------- argument checks

def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError("ANN-to-SNN conversion needs PyTorch", expected="the torch package",
                         found="no module named 'torch'", suggestion='pip install "snnsim[torch]"') from None
    return torch


def _choice(value: Any, key: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        raise WorkloadError(f"unknown {key}", key=key, expected=" or ".join(repr(o) for o in options),
                            found=repr(value)[:200], suggestion=did_you_mean(str(value), options))
    return value


def _inputs(x: Any, key: str) -> Any:
    """A float32 CPU tensor of samples in [0, 1] (raises WorkloadError naming ``key``)."""
    torch = _torch()
    try:
        t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise WorkloadError("inputs must be an array of numbers", key=key, expected="a tensor or array (samples, "
                            "C, H, W) or (samples, features)", found=f"{type(x).__name__}: {e}") from None
    if t.dim() < 2 or t.shape[0] < 1 or t.numel() == 0:
        raise WorkloadError("inputs need a sample axis and at least one sample", key=key,
                            expected="(samples, C, H, W) or (samples, features)", found=f"shape {list(t.shape)}",
                            suggestion="add the batch axis: x.unsqueeze(0)")
    if not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1:
        raise WorkloadError("input values out of range", key=key, expected="finite values in [0, 1] (what a sensor "
                            "gives and a trace stores)", found=f"[{float(t.min()):g}, {float(t.max()):g}]",
                            suggestion="scale the inputs to [0, 1], folding any normalisation into the first layer")
    return t.contiguous()


def _labels(y: Any, n: int, key: str) -> np.ndarray:
    a = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y)
    if a.ndim != 1 or a.shape[0] != n or a.dtype.kind not in "iu":
        raise WorkloadError("labels must be one integer class per sample", key=key,
                            expected=f"{n} integers", found=f"{a.dtype} array of shape {list(a.shape)}")
    return a.astype(np.int64)


def _check_time_steps(time_steps: Any) -> int:
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise WorkloadError("time_steps must be a positive integer", key="time_steps", expected="an integer >= 1",
                            found=repr(time_steps)[:200])
    return time_steps


def _check_percentile(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 < p <= 100:
        raise WorkloadError("percentile out of range", key="percentile", expected="a number in (0, 100], e.g. 99.9 "
                            "or 99.99", found=repr(p)[:200], suggestion="method='max' is percentile 100")
    return float(p)


def _run_model(model: Any, x: Any, key: str, batch: int = 256) -> Any:
    """The model's outputs (float32 CPU) on ``x``; a failure names ``key`` and the shapes."""
    torch = _torch()
    param = next(iter(model.parameters()), None)
    dev = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    outs = []
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch):
                outs.append(model(x[i:i + batch].to(device=dev, dtype=dtype)).float().cpu())
    except Exception as e:
        raise WorkloadError("the model fails on these inputs", key=key, expected="inputs of the shape the model "
                            "was trained on, with a sample axis first", found=f"shape {list(x.shape)}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                            suggestion="pass inputs shaped like one training batch") from None
    if not all(isinstance(o, torch.Tensor) for o in outs):
        raise WorkloadError("the model's output is not one tensor", key="model", expected="a tensor of class "
                            "scores", found=type(outs[0]).__name__)
    return torch.cat(outs)


def _accuracy(scores: Any, labels: np.ndarray) -> float:
    pred = scores.reshape(scores.shape[0], -1).argmax(dim=1).numpy()
    return float(np.mean(pred == labels))


def snn_scores(snn: Any, x: Any, time_steps: int, batch: int = 256) -> Any:
    """The readout currents of the converted network summed over steps 1..t, for every t:
    (T, samples, classes) float64 (the class scores after t steps are ``[t - 1]``)."""
    torch = _torch()
    out = []
    for i in range(0, x.shape[0], batch):
        cur = snn.run(x[i:i + batch], time_steps)
        out.append(torch.cumsum(cur.double().reshape(time_steps, cur.shape[1], -1), dim=0))
    return torch.cat(out, dim=1)


# ----------------------------------------------------------------------------- conversion

def _notes(steps: list[Any], maxpool: str, input_coding: str, method: str, percentile: float) -> list[str]:
    """Every approximation (and exact rewrite) the conversion makes, in words."""
    notes = [f"batch norm '{s.folded}' folded into '{s.where}' (exact up to float32 rounding)"
             for s in steps if s.kind == "weighted" and s.folded]
    clip = "the maximum" if method == "max" else f"the {percentile:g}th percentile of the non-zero activations"
    notes.append("each ReLU is an integrate-and-fire neuron with reset by subtraction (threshold 1): its spike "
                 "rate over T steps approximates the activation divided by the layer's lambda, quantised to 1/T "
                 f"and clipped at one spike per step (lambda = {clip} on the calibration inputs)")
    if any(s.kind == "weighted" and s.module.bias is not None for s in steps):
        notes.append("biases (and folded batch-norm shifts) are constant currents added at every step")
    readout = [s for s in steps if s.kind == "weighted"][-1]
    notes.append(f"'{readout.where}' is the readout (no neuron): its current summed over the T steps gives the "
                 "class scores")
    seen_relu = False
    for s in steps:
        if s.kind == "relu":
            seen_relu = True
        elif s.kind == "weighted":
            seen_relu = False
        elif s.kind == "maxpool" and maxpool == "current" and seen_relu:
            notes.append(f"'{s.where}': max pooling moved before the neuron (max and ReLU commute): the max of the "
                         "currents at each step, exact when they are constant over the steps (direct input), an "
                         "approximation of the ANN's max after spiking layers")
        elif s.kind == "maxpool" and maxpool in ("or", "current"):
            if seen_relu and maxpool == "or":
                notes.append(f"'{s.where}': max pooling of spikes is their OR at each step, an approximation of the "
                             "ANN's max (the OR's rate is at least the largest input rate)")
            else:
                notes.append(f"'{s.where}': max pooling of currents before a neuron takes the max at each step, an "
                             "approximation of the ANN's max of the averaged input")
        elif s.kind == "maxpool":
            notes.append(f"'{s.where}': max pooling replaced by average pooling (same kernel, stride and padding); "
                         "the lambdas come from the ANN with that replacement, the ANN accuracy is the original's")
        elif s.kind == "tail":
            notes.append(f"'{s.where}': the final softmax is left out (it does not change the argmax)")
    if input_coding == "direct":
        notes.append("direct input: the analog input drives the first layer at every step (a multi-bit layer on "
                     "hardware, multiply-accumulate rather than accumulate)")
    else:
        notes.append("rate input: an integrate-and-fire neuron with threshold 1 on the analog input, a deterministic "
                     "rate code (floor(x T) spikes in T steps, up to float32 rounding), not Poisson spikes")
    return notes


def convert_ann(model: Any, calibration_inputs: Any, time_steps: int, *, method: str = "max",
                percentile: float = 99.99, input_coding: str = "direct", labels: Any = None,
                eval_inputs: Any = None, eval_labels: Any = None, maxpool: str = "or") -> ConversionResult:
    """Convert a trained ReLU network to a spiking one (module docstring) without exporting it.

    ``calibration_inputs``: (samples, ...) in [0, 1], the data the activation scales come from;
    ``labels`` their classes. The accuracies are measured on ``eval_inputs`` / ``eval_labels``
    when given, else on the calibration inputs with ``labels``. ``model`` is put in ``eval()``.
    Raises WorkloadError naming the argument or module at fault."""
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise WorkloadError("model must be a torch.nn.Module", key="model", expected="a trained nn.Module",
                            found=type(model).__name__)
    time_steps = _check_time_steps(time_steps)
    method = _choice(method, "method", METHODS)
    input_coding = _choice(input_coding, "input_coding", INPUT_CODINGS)
    maxpool = _choice(maxpool, "maxpool", MAXPOOLS)
    pct = _check_percentile(percentile)
    x = _inputs(calibration_inputs, "calibration_inputs")
    y = _labels(labels, x.shape[0], "labels") if labels is not None else None
    xe = _inputs(eval_inputs, "eval_inputs") if eval_inputs is not None else None
    if eval_labels is not None and xe is None:
        raise WorkloadError("eval_labels without eval_inputs", key="eval_labels", expected="eval_inputs too",
                            found="eval_inputs=None", suggestion="pass the inputs the labels belong to")
    ye = _labels(eval_labels, xe.shape[0], "eval_labels") if eval_labels is not None else None
    if xe is not None and tuple(xe.shape[1:]) != tuple(x.shape[1:]):
        raise WorkloadError("eval_inputs and calibration_inputs differ in shape", key="eval_inputs",
                            expected=f"(samples, {', '.join(map(str, x.shape[1:]))})", found=f"{list(xe.shape)}")
    model.eval()
    steps, chain_notes = ann_chain(model)
    reference = _run_model(model, x, "calibration_inputs")
    out, acts = run_ann(ann_modules(steps, "or", tail=True), x)
    tol = CHAIN_RTOL * max(float(reference.abs().max()), 1e-6)
    diff = float((out - reference).abs().max()) if out.shape == reference.shape else math.inf
    if diff > tol:
        raise WorkloadError("the model's forward computes something its modules do not show", key="model",
                            expected="the forward to be the chain of its modules and supported functions",
                            found=f"outputs {list(out.shape)} differ from the model's {list(reference.shape)} by "
                            f"{diff:.3g} (tolerance {tol:.3g})",
                            suggestion="write the forward as a plain chain, or as an nn.Sequential")
    if maxpool == "avg":  # calibrate the network the SNN approximates
        _, acts = run_ann(ann_modules(steps, "avg"), x)
    lams, dead = relu_lambdas(acts, method, pct)
    snn = build_snn(steps, lams, maxpool, input_coding)
    feeding = [owner.where for owner, _ in _relu_owners(steps)]
    notes = chain_notes + _notes(steps, maxpool, input_coding, method, pct)
    notes += [f"the ReLU after '{feeding[k]}' never fired on the calibration inputs: lambda set to 1" for k in dead]
    result = ConversionResult(snn=snn, lambdas={"input": 1.0, **dict(zip(feeding, lams, strict=True))},
                              method=method, percentile=pct if method == "percentile" else None,
                              time_steps=time_steps, input_coding=input_coding, maxpool=maxpool, notes=notes)
    xa, ya = (xe, ye) if ye is not None else (x, y)
    if ya is not None:
        result.accuracy_on = "eval" if ye is not None else "calibration"
        result.ann_accuracy = _accuracy(_run_model(model, xa, result.accuracy_on + "_inputs"), ya)
        scores = snn_scores(snn, xa, time_steps)
        result.snn_accuracy_per_step = [_accuracy(scores[t], ya) for t in range(time_steps)]
        result.snn_accuracy = result.snn_accuracy_per_step[-1]
        if maxpool == "avg":
            avg_out, _ = run_ann(ann_modules(steps, "avg"), xa)
            result.notes.append(f"the ANN with average pooling in place of max pooling has accuracy "
                                f"{_accuracy(avg_out, ya):.4f} on the {result.accuracy_on} inputs (the original: "
                                f"{result.ann_accuracy:.4f})")
    return result


def _relu_owners(steps: list[Any]) -> list[tuple[Any, Any]]:
    """(the weighted step, the ReLU step it feeds) per ReLU, in order."""
    out, owner = [], None
    for s in steps:
        if s.kind == "weighted":
            owner = s
        elif s.kind == "relu":
            out.append((owner, s))
    return out


# ----------------------------------------------------------------------------- export

def _export(result: ConversionResult, inputs: Any, path: str | Path | None, model_name: str | None,
            dataset: str, options: dict[str, Any]) -> None:
    """Write the converted network's trace with :func:`snnsim.export.from_torch`, the conversion
    recorded in its provenance (passed as ``provenance=`` when the exporter takes it, else added
    to the trace before it is saved)."""
    from .torch import from_torch

    accepted = inspect.signature(from_torch).parameters
    kwargs = dict(options)
    if "model_name" in accepted:
        kwargs.setdefault("model_name", model_name or "converted_ann")
    if "dataset" in accepted:
        kwargs.setdefault("dataset", dataset)
    conversion = result.provenance()
    if "provenance" in accepted:
        extra = dict(kwargs.pop("provenance", None) or {})
        extra["conversion"] = conversion
        trace = from_torch(result.snn, inputs, result.time_steps, path, provenance=extra, **kwargs)
        written = Path(getattr(trace, "source", path)) if path is not None else None
    else:
        trace = from_torch(result.snn, inputs, result.time_steps, None, **kwargs)
        trace.provenance = {**dict(trace.provenance or {}), "conversion": conversion}
        written = _save(trace, path) if path is not None else None
    result.export = trace
    result.path = written


def _save(trace: Any, path: str | Path) -> Path:
    if hasattr(trace, "nodes"):
        from ..workload.graphtrace import save_graph_trace

        out = save_graph_trace(trace, path)
    else:
        from ..workload.trace import save_workload

        out = save_workload(trace, path)
    trace.source = str(out)
    return Path(out)


def from_ann(model: Any, calibration_inputs: Any, time_steps: int, path: str | Path | None = None, *,
             method: str = "max", percentile: float = 99.99, input_coding: str = "direct", labels: Any = None,
             eval_inputs: Any = None, eval_labels: Any = None, maxpool: str = "or", model_name: str | None = None,
             dataset: str = "unknown", **export_options: Any) -> ConversionResult:
    """Convert a trained ReLU network (:func:`convert_ann`) and export the spiking network's trace
    for ``time_steps`` steps with :func:`snnsim.export.from_torch` (on ``eval_inputs`` when given,
    else on ``calibration_inputs``), written to ``path`` when given. ``export_options`` go to
    ``from_torch``; the conversion's settings, scales, accuracies and notes go to the trace's
    ``provenance.conversion``. Returns the :class:`ConversionResult` with ``export`` (the trace)
    and ``path`` set."""
    result = convert_ann(model, calibration_inputs, time_steps, method=method, percentile=percentile,
                         input_coding=input_coding, labels=labels, eval_inputs=eval_inputs,
                         eval_labels=eval_labels, maxpool=maxpool)
    inputs = _inputs(eval_inputs if eval_inputs is not None else calibration_inputs, "inputs").numpy()
    _export(result, inputs, path, model_name, dataset, export_options)
    return result
