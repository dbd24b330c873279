"""Verification of a format v2 trace: every recorded node recomputed from the recorded activity it
reads, and compared with what the trace recorded (``docs/verify.md``).

Each hardware layer (:func:`snnsim.workload.nodes.lower`) is recomputed by the reference
evaluator (:func:`snnsim.workload.forward.evaluate`) with *teacher forcing*: the layer reads the
recorded spikes or events of its sources (and a delay reads the recorded previous step), not
recomputed ones, so one wrong layer is reported alone instead of making every later layer wrong.

Arithmetic, per layer (the table's ``arithmetic`` column):

- ``integer``: a layer without a neuron (the OR of a max pool of spikes, an IAND, a sum of spikes
  several layers read) is integer arithmetic on recorded integers: compared exactly.
- ``exact``: a neuron whose current is integer valued (integer weights, biases, scales and shifts;
  spike or event inputs, or an integer-valued input; no average pool) and whose magnitude sum
  ``sum |w x|`` stays below 2^24: every partial sum is then exact in float32 and in float64, in
  any order, so the framework's float32 forward pass and this recomputation give the neuron the
  same current, and the neuron model (:mod:`snnsim.neurons`) reproduces the framework's own
  arithmetic bit for bit. Compared exactly: any differing spike is a mismatch.
- ``float64``: any other neuron. Its current is computed in float64 and rounded once to the
  model's float32, while the framework summed it in float32 in its own order (blocked, pairwise,
  or by a convolution algorithm), so the two currents can differ in the last bits, and a
  membrane lying that close to the threshold can fire in one and not the other. A differing spike
  train is *explained* (``within tol``, not a mismatch) when, at its first differing step, the
  membrane the model compares (before that step's reset) lies within ``tolerance`` of the
  threshold relative to everything summed into it: ``|v - thr| <= tolerance (|v| + |thr| +
  acc)``, with ``acc`` the magnitude sum ``sum |w x|`` of the currents integrated by the same
  neuron dynamics (leak, decay) without reset. The default, ``FLOAT_RTOL`` = 1e-5 of
  :mod:`snnsim.verify` (~84 float32 epsilons), is argued there: it covers float32 summation error
  over the synapse counts of real layers, while a real error (a wrong weight, threshold or input
  spike) moves the membrane by a whole weight. Later steps of an explained train are not
  compared: the neuron's own state differs once its spikes do.

A layer whose weights the trace does not hold is skipped, and a readout (a current: nothing is
recorded) is reported as not recorded, each with a note saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SnnsimError, UsageError
from .verify import (
    ARITHMETICS,
    FLOAT_RTOL,
    LayerCheck,
    VerifyResult,
    _describe_mismatch,
    verify_workload,
)
from .workload.forward import (
    NeuronStepper,
    _checked_graph,
    delayed,
    evaluate,
    magnitude_model,
    membrane,
    recorded_values,
    threshold_of,
)
from .workload.graphtrace import FORMAT_VERSION, GraphTrace, check
from .workload.nodes import WEIGHTED, HardwareLayer, Node, lower

#: Currents whose magnitude sum stays below this are exact in float32 (24-bit significand).
EXACT_BOUND = 2 ** 24

ARITH_INTEGER = "integer"
ARITH_EXACT = "exact"
ARITH_FLOAT = "float64"

#: The arrays of an op that enter its current (``params/`` are the neurons').
_OP_ARRAYS = ("weights", "bias", "scale", "shift")

_HEAD_NOTES = {
    "maxpool": "OR (max) of the recorded inputs over each window",
    "iand": "IAND of the recorded inputs: (1 - a) b",
    "add": "sum of the recorded inputs: events",
    "sumpool": "sum of the recorded inputs over each window: events",
}


@dataclass
class GraphLayerCheck(LayerCheck):
    """:class:`snnsim.verify.LayerCheck` of one v2 hardware layer, with
    ``values_compared`` = samples x steps x neurons, and ``values_differing`` = how many of those
    values differ, explained by float rounding or not (``bits_differing`` counts those of the
    unexplained trains only, as in v1)."""

    values_compared: int = 0
    values_differing: int = 0


@dataclass
class GraphVerifyResult(VerifyResult):
    """:class:`snnsim.verify.VerifyResult` of a v2 trace; ``tolerance`` is the relative float
    tolerance of ``float64`` layers (membrane and input widths do not apply: v2 neurons are the
    frameworks' models)."""

    tolerance: float = FLOAT_RTOL
    format_version: int = FORMAT_VERSION

    def settings(self) -> str:
        return f"format v{self.format_version}, arithmetic {self.arithmetic}, float tolerance {self.tolerance:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "model": self.model, "format_version": self.format_version,
                "samples": self.samples, "time_steps": self.time_steps, "arithmetic": self.arithmetic,
                "tolerance": self.tolerance, "ok": self.ok, "counts": dict(self.counts),
                "within_tolerance": self.within_tolerance, "layers": [c.to_dict() for c in self.layers]}

    def format_table(self) -> str:
        """A plain-text table, one row per hardware layer, then the summary line (v1's layout,
        with the values compared: samples x steps x neurons)."""
        head = ("layer", "op", "arithmetic", "status", "neurons", "values", "mismatches", "within tol",
                "first mismatch", "note")
        rows = [head]
        for c in self.layers:
            compared = c.status in ("match", "mismatch")
            values = getattr(c, "values_compared", 0)
            rows.append((c.name, c.op, c.arithmetic, c.status, str(c.neurons_checked) if c.neurons_checked else "-",
                         str(values) if values else "-", str(c.mismatches) if compared else "-",
                         str(c.within_tolerance) if compared else "-", _describe_mismatch(c.first_mismatch), c.note))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(len(widths))) + "  " + r[-1] for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 4)
        return "\n".join(line.rstrip() for line in lines) + "\n" + self.summary()


# ----------------------------------------------------------------------------- entry points

def verify_graph(gt: GraphTrace, *, tolerance: float = FLOAT_RTOL, arithmetic: str = "auto") -> GraphVerifyResult:
    """Recompute every recorded node of ``gt`` from the recorded values its layer reads and
    compare with the recording. ``tolerance``: the relative float tolerance of ``float64`` layers
    (module docstring). ``arithmetic``: ``auto`` (per layer: exact where the currents are integer
    valued, with the tolerance elsewhere), ``integer`` (every layer compared exactly, no
    tolerance) or ``float64`` (the tolerance for every neuron layer)."""
    if not isinstance(gt, GraphTrace):
        raise UsageError("verify_graph needs a format v2 trace", key="gt",
                         expected="a GraphTrace (load_graph_trace)", found=type(gt).__name__)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise UsageError("tolerance out of range", key="tolerance", expected="a number in [0, 1)",
                         found=repr(tolerance))
    if arithmetic not in ARITHMETICS:
        raise UsageError("unknown arithmetic", key="arithmetic", expected=" or ".join(ARITHMETICS),
                         found=repr(arithmetic))
    try:
        check(gt)
        graph = _checked_graph(gt.nodes, gt.arrays, gt.input_shape)
    except SnnsimError as e:
        raise type(e)(e.message, file=e.file or gt.source, key=e.key, expected=e.expected, found=e.found,
                      suggestion=e.suggestion) from None
    checker = _Checker(gt, graph, float(tolerance), arithmetic)
    checks = [checker.check(la) for la in lower(graph)]
    return GraphVerifyResult(layers=checks, model=gt.model, source=gt.source, samples=gt.samples,
                             time_steps=gt.time_steps, arithmetic=arithmetic, tolerance=float(tolerance))


def verify_path(path: str | Path, *, membrane_bits: int = 16, input_bits: int = 8, arithmetic: str = "auto",
                tolerance: float = FLOAT_RTOL) -> VerifyResult:
    """Verify the trace at ``path``: a v2 file with :func:`verify_graph` (``tolerance``,
    ``arithmetic``); a v1 file, or a v2 file made only of format v1's constructs whose activity
    was computed in the core's integer arithmetic (what ``snnsim workload synth`` writes and
    records in its provenance), with the v1 verifier
    (:func:`snnsim.verify.verify_workload` with ``membrane_bits``, ``input_bits`` and
    ``arithmetic``: the core's integer arithmetic), exactly as before format v2."""
    from .workload.graphtrace import graph_from_manifest
    from .workload.npzfile import NpzArchive
    from .workload.trace import FORMAT_NAME, _from_manifest, _read_manifest, checked_trace_path

    source = str(path)
    with NpzArchive(checked_trace_path(path), source) as z:
        man = _read_manifest(z, source)
        if isinstance(man, dict) and man.get("format") == FORMAT_NAME and man.get("version") == FORMAT_VERSION:
            gt = graph_from_manifest(man, z, source)
            wl = _v1_twin(gt)
            if wl is None:
                return verify_graph(gt, tolerance=tolerance, arithmetic=arithmetic)
            return verify_workload(wl, membrane_bits=membrane_bits, input_bits=input_bits, arithmetic=arithmetic)
        wl = _from_manifest(man, z, source)
    return verify_workload(wl, membrane_bits=membrane_bits, input_bits=input_bits, arithmetic=arithmetic)


def _v1_twin(gt: GraphTrace):
    """The v1 workload of a v2 trace made only of v1's constructs whose activity was computed in
    the core's integer arithmetic (``snnsim workload synth`` records it in
    ``provenance.arithmetic.core_layers``), or None: such a trace is checked as v1 checked it."""
    from .workload.graphtrace import to_workload

    arithmetic = gt.provenance.get("arithmetic")
    if not (isinstance(arithmetic, dict) and "core_layers" in arithmetic):
        return None
    wl = to_workload(gt)
    return wl if all(la.parts is None for la in wl.layers) else None


# ----------------------------------------------------------------------------- per layer

def _layer_label(la: HardwareLayer) -> str:
    """The ops of a layer, e.g. ``conv2d+affine+maxpool>snntorch.leaky``."""
    ops = "+".join(n.op for n in la.ops if n is not la.output or n.op != "neuron")
    head = la.output
    if head.op == "neuron":
        return f"{ops}>{head.params.get('model')}" if ops else str(head.params.get("model"))
    return ops


def _integer_valued(a: np.ndarray) -> bool:
    return bool(np.all(np.asarray(a, np.float64) == np.rint(np.asarray(a, np.float64))))


class _Checker:
    def __init__(self, gt: GraphTrace, graph: list[Node], tolerance: float, arithmetic: str) -> None:
        self.gt = gt
        self.graph = graph
        self.by_name = {n.name: n for n in graph}
        self.tolerance = tolerance
        self.arithmetic = arithmetic
        self.recorded = recorded_values(gt)
        self.forced = dict(self.recorded)  # teacher forcing: recorded nodes, and delays of them
        for n in graph:
            if n.op == "delay" and n.inputs[0] in self.recorded:
                self.forced[n.name] = delayed(self.recorded[n.inputs[0]])
        self._abs_arrays: dict[str, np.ndarray] | None = None

    def run(self, la: HardwareLayer, keep: list[str], magnitudes: bool = False) -> dict[str, np.ndarray]:
        """Evaluate what ``keep`` needs of the layer with every other recorded node forced;
        ``magnitudes``: of |input| with |arrays| (each value then bounds the magnitude sum of the
        terms of the real one)."""
        sources = {k: v for k, v in self.forced.items() if k != la.output.name}
        gt = self.gt
        if not magnitudes:
            return evaluate(self.graph, gt.input, gt.time_steps, arrays=gt.arrays, sources=sources, keep=keep)
        if self._abs_arrays is None:
            self._abs_arrays = {k: np.abs(v) if k.split("/")[0] in _OP_ARRAYS else v for k, v in gt.arrays.items()}
        return evaluate(self.graph, np.abs(gt.input), gt.time_steps, arrays=self._abs_arrays, sources=sources,
                        keep=keep)

    def check(self, la: HardwareLayer) -> GraphLayerCheck:
        head = la.output
        label = _layer_label(la)
        if head.kind == "current":
            return GraphLayerCheck(la.name, label, "not recorded",
                                   note="a readout (a current): the trace records nothing to compare")
        missing = [f"weights/{n.name}" for n in la.ops if n.op in WEIGHTED and f"weights/{n.name}" not in self.gt.arrays]
        if missing:
            return GraphLayerCheck(la.name, label, "skipped", note=f"no {missing[0]} in the trace: skipped")
        notes = []
        unforced = [s for s in la.sources if s != "input" and s not in self.forced]
        if unforced:
            notes.append(f"reads {', '.join(unforced)}, which the trace does not record: recomputed, not "
                         "teacher-forced")
        if head.op != "neuron":
            got = self.run(la, [head.name])[head.name]
            notes.insert(0, _HEAD_NOTES.get(head.op, f"{head.op} of the recorded inputs"))
            if head.kind == "events" and got.max(initial=0) > 255:
                notes.append("recomputed counts above 255, which a uint8 event cannot hold")
            return self._compare(la, label, got, ARITH_INTEGER, notes)
        return self._neuron_layer(la, label, notes)

    def _not_integer(self, la: HardwareLayer) -> str | None:
        """Why the layer's current is not integer valued (None: it is)."""
        for n in la.ops:
            if n.op == "avgpool":
                return f"{n.name} averages (divides by the kernel size)"
            for role in _OP_ARRAYS:
                key = f"{role}/{n.name}"
                if key in self.gt.arrays and not _integer_valued(self.gt.arrays[key]):
                    return f"{key} is not integer valued"
        for s in la.sources:
            if s == "input":
                if not _integer_valued(self.gt.input):
                    return "the analog input is not integer valued"
            elif self.by_name[s].kind == "current":
                return f"it reads the current {s}"
        return None

    def _neuron_layer(self, la: HardwareLayer, label: str, notes: list[str]) -> GraphLayerCheck:
        head = la.output
        s_, t_ = self.gt.samples, self.gt.time_steps
        inputs = list(head.inputs)
        ops = [n.name for n in la.ops if n is not head]
        cur = self.run(la, inputs)
        mag = self.run(la, list(dict.fromkeys(inputs + ops)), magnitudes=True)
        peak = max((float(np.max(mag[k], initial=0)) for k in mag), default=0.0)
        why = self._not_integer(la)
        if why is None and peak >= EXACT_BOUND:
            why = f"its magnitude sum reaches {peak:.3g} >= 2^24, beyond float32's exact integers"
        model_name = head.params.get("model")
        stepper = NeuronStepper.of(head, s_)
        dtype = np.dtype(stepper.dtype).name
        if why is None:
            arith = ARITH_EXACT
            notes.append(f"integer currents (magnitude sum <= {peak:.6g} < 2^24): exact in float32 and float64; "
                         f"{model_name} stepped in {dtype}, compared exactly")
        else:
            arith = ARITH_FLOAT
            notes.append(f"float64 currents ({why}) rounded to {model_name}'s {dtype}")
        if self.arithmetic == "integer" and arith == ARITH_FLOAT:
            notes.append("arithmetic integer: compared exactly, without float tolerance")
        if self.arithmetic == "float64" and arith == ARITH_EXACT:
            arith = ARITH_FLOAT
            notes.append("arithmetic float64: with the float tolerance")
        use_tolerance = arith == ARITH_FLOAT and self.arithmetic != "integer"
        acc_model = NeuronStepper(magnitude_model(stepper.model), (s_, *head.out_shape))
        thr = threshold_of(stepper.model)
        shape = (s_, t_, *head.out_shape)
        spikes = np.empty(shape, bool)
        decided = np.zeros(shape)  # the membrane compared with the threshold, before the reset
        acc = np.zeros(shape)
        for t in range(t_):
            args = [cur[i][:, t] for i in inputs]
            if use_tolerance and thr is not None:
                decided[:, t] = stepper.decision(*args)
                acc_model.step(*[mag[i][:, t] for i in inputs])
                acc[:, t] = np.abs(membrane(acc_model.state))
            spikes[:, t] = stepper.step(*args)
        near = None
        if use_tolerance:
            if thr is None:
                notes.append(f"{model_name} has no threshold: no float tolerance applies")
            else:
                thr_b = np.broadcast_to(thr, (s_, *head.out_shape))[:, None]
                near = np.abs(decided - thr_b) <= self.tolerance * (np.abs(decided) + np.abs(thr_b) + acc)
        details = {"current": cur[inputs[0]], "membrane": decided, "acc": acc, "threshold": thr} \
            if use_tolerance and thr is not None else {"current": cur[inputs[0]]}
        return self._compare(la, label, spikes, arith, notes, near=near, details=details)

    def _compare(self, la: HardwareLayer, label: str, got: np.ndarray, arith: str, notes: list[str],
                 near: np.ndarray | None = None, details: dict[str, Any] | None = None) -> GraphLayerCheck:
        """Compare recomputed (S, T, *shape) values with the recorded ones; with ``near`` (S, T,
        *shape): a differing train whose first differing step is near the threshold is explained."""
        head = la.output
        s_, t_ = got.shape[:2]
        n = head.size
        rec = self.recorded[head.name].reshape(s_, t_, n)
        exp = got.reshape(s_, t_, n)
        diff = exp != rec
        check = GraphLayerCheck(la.name, label, "match", neurons_checked=s_ * n, arithmetic=arith,
                                values_compared=s_ * t_ * n, values_differing=int(np.count_nonzero(diff)))
        if near is not None and diff.any():
            trains = diff.any(axis=1)  # (S, N)
            first = np.argmax(diff, axis=1)
            near_first = np.take_along_axis(near.reshape(s_, t_, n), first[:, None], axis=1)[:, 0]
            within = trains & near_first
            if within.any():
                check.within_tolerance = int(np.count_nonzero(within))
                sample, neuron = (int(i[0]) for i in np.nonzero(within))
                d = self._details(details, sample, int(first[sample, neuron]), neuron, head)
                notes = notes + [f"{check.within_tolerance} spike train(s) differ only within float rounding of the "
                                 f"threshold (first: sample {sample} step {first[sample, neuron]} neuron {neuron}, "
                                 f"|v - thr| = {d['margin']:.3g} <= {d['bound']:.3g})"]
                diff = diff & ~within[:, None, :]
        bad = int(np.count_nonzero(diff))
        if bad:
            check.status = "mismatch"
            check.bits_differing = bad
            check.mismatches = int(np.count_nonzero(diff.any(axis=1)))
            sample, step, neuron = (int(i) for i in np.unravel_index(int(np.flatnonzero(diff)[0]), diff.shape))
            info: dict[str, Any] = {
                "sample": sample, "step": step, "neuron": neuron,
                "position": [int(i) for i in np.unravel_index(neuron, head.out_shape)],
                "expected": int(exp[sample, step, neuron]), "recorded": int(rec[sample, step, neuron]),
            }
            if details:
                info.update(self._details(details, sample, step, neuron, head))
            info["reason"] = ("beyond float tolerance" if near is not None else
                              "differs from the exact recomputation")
            check.first_mismatch = info
        check.note = "; ".join(notes)
        return check

    def _details(self, details: dict[str, Any] | None, sample: int, step: int, neuron: int,
                 head: Node) -> dict[str, Any]:
        """The current into one neuron at one step and, on the float path, its membrane before the
        decision, the threshold, the margin |v - thr| and the tolerance bound there."""
        if not details:
            return {}
        pos = np.unravel_index(neuron, head.out_shape)
        out: dict[str, Any] = {"current": float(details["current"][(sample, step, *pos)])}
        if "membrane" in details:
            v = float(details["membrane"][(sample, step, *pos)])
            thr = float(np.broadcast_to(details["threshold"], head.out_shape)[pos])
            acc = float(details["acc"][(sample, step, *pos)])
            out.update(membrane=v, threshold=thr, margin=abs(v - thr),
                       bound=self.tolerance * (abs(v) + abs(thr) + acc))
        return out
