"""`snnsim verify` of format v2 traces (snnsim.verify_graph): traces whose activity the reference
evaluator made verify, saved and loaded; a flipped spike or count far from the threshold fails
naming the layer, sample, step and neuron; a float near-tie is explained, an integer one is not;
v1 files keep their v1 verdicts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from snnsim.cli import main
from snnsim.errors import UsageError
from snnsim.verify import verify_workload
from snnsim.verify_graph import GraphVerifyResult, verify_graph, verify_path
from snnsim.workload.forward import NeuronStepper, evaluate_trace
from snnsim.workload.graphtrace import GraphTrace, load_graph_trace, save_graph_trace
from snnsim.workload.nodes import Node
from snnsim.workload.trace import load_workload, pack_spikes

from .test_forward import GRAPHS, make_trace

# the arithmetic each recorded layer is verified in
ARITHMETIC = {
    "cnn_snntorch": {"lif1": "float64", "lif2": "float64"},
    "sew_spikingjelly": {"a": "float64", "b": "float64", "sew": "integer", "c": "float64", "e": "float64",
                         "nand": "integer", "d": "float64", "r": "float64", "fc": None},
    "recurrent_rleaky": {"rl": "float64", "rv": "float64"},
    "conv3d_synaptic": {"syn": "float64"},
    "integer_snnsim": {"l0": "float64", "n1": "exact", "sp": "integer", "n2": "exact", "n3": "exact"},
}


def _saved(gt: GraphTrace, path) -> GraphTrace:
    save_graph_trace(gt, path)
    return load_graph_trace(path)


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_a_trace_made_by_the_evaluator_verifies(graph, tmp_path):
    gt = _saved(make_trace(GRAPHS[graph]), tmp_path / "g.npz")
    result = verify_graph(gt)
    assert isinstance(result, GraphVerifyResult) and result.ok, result.format_table()
    for name, arith in ARITHMETIC[graph].items():
        c = result.layer(name)
        if arith is None:
            assert c.status == "not recorded" and "readout" in c.note
            continue
        assert (c.status, c.arithmetic) == ("match", arith), (name, c)
        assert c.mismatches == c.within_tolerance == c.values_differing == 0
        n = next(nd for nd in gt.nodes if nd.name == name).size
        assert c.neurons_checked == gt.samples * n and c.values_compared == gt.samples * gt.time_steps * n
    assert {c.name for c in result.layers if c.status == "match"} == {
        k.split("/", 1)[1] for k in gt.recorded}


def _far_from_threshold(gt: GraphTrace, name: str, step: int) -> tuple[int, int]:
    """(sample, neuron) of ``name`` whose membrane at ``step`` is farthest from its threshold."""
    node = next(n for n in gt.layers() if n.name == name).output
    cur = evaluate_trace(gt, teacher_forcing=True, keep=node.inputs)
    stepper = NeuronStepper.of(node, gt.samples)
    for t in range(step + 1):
        args = [cur[i][:, t] for i in node.inputs]
        v = stepper.decision(*args)
        stepper.step(*args)
    thr = np.broadcast_to(np.asarray(node.params.get("threshold", node.params.get("v_threshold", 1.0))), v.shape)
    margin = np.abs(v - thr).reshape(gt.samples, -1)
    sample, neuron = np.unravel_index(int(np.argmax(margin)), margin.shape)
    return int(sample), int(neuron)


def _flip(gt: GraphTrace, name: str, sample: int, step: int, neuron: int) -> None:
    key = f"spikes/{name}"
    bits = np.unpackbits(gt.recorded[key], axis=-1)
    bits[sample, step, neuron] ^= 1
    gt.recorded[key] = np.packbits(bits, axis=-1)


@pytest.mark.parametrize(("graph", "layer"), [("cnn_snntorch", "lif1"), ("sew_spikingjelly", "b"),
                                              ("recurrent_rleaky", "rl"), ("conv3d_synaptic", "syn"),
                                              ("integer_snnsim", "n1")])
def test_a_flipped_spike_far_from_threshold_fails_naming_where(graph, layer, tmp_path, capsys):
    gt = make_trace(GRAPHS[graph], seed=1)
    step = 2
    sample, neuron = _far_from_threshold(gt, layer, step)
    _flip(gt, layer, sample, step, neuron)
    path = tmp_path / "bad.npz"
    save_graph_trace(gt, path)
    result = verify_path(path)
    assert not result.ok
    c = result.layer(layer)
    assert c.status == "mismatch" and c.mismatches >= 1 and c.within_tolerance == 0
    m = c.first_mismatch
    assert (m["sample"], m["step"], m["neuron"]) == (sample, step, neuron)
    assert m["recorded"] != m["expected"]
    if c.arithmetic == "float64":
        assert m["margin"] > m["bound"] and m["reason"] == "beyond float tolerance"
    # the CLI: status 1 and the same place in its table
    assert main(["verify", str(path), "--format", "table"]) == 1
    out = capsys.readouterr().out
    assert f"sample {sample} step {step} neuron {neuron}" in out and "FAILED" in out and "format v2" in out


def test_a_wrong_event_count_fails_in_integer_arithmetic(tmp_path):
    gt = make_trace(GRAPHS["sew_spikingjelly"], seed=2)
    ev = gt.recorded["events/sew"].copy()
    ev[1, 3, 17] += 1
    gt.recorded["events/sew"] = ev
    result = verify_graph(_saved(gt, tmp_path / "g.npz"))
    c = result.layer("sew")
    assert c.status == "mismatch" and c.arithmetic == "integer"
    assert (c.first_mismatch["sample"], c.first_mismatch["step"], c.first_mismatch["neuron"]) == (1, 3, 17)
    assert c.first_mismatch["reason"] == "differs from the exact recomputation"


def _near_tie_trace(weights: np.ndarray, x: np.ndarray, model: dict) -> tuple[GraphTrace, int]:
    """linear -> neuron whose threshold is, for neuron 0, exactly its float32 current at step 0:
    snnTorch (mem > thr) does not fire there; the trace records that it did."""
    weights = weights.copy()
    cur = (x.astype(np.float64) @ weights.astype(np.float64).T)[0, 0]
    if cur < 0:  # a positive threshold (below zero, a zero membrane fires at once)
        weights[0], cur = -weights[0], -cur
    assert cur > 1
    thr = np.full(weights.shape[0], 5.0, np.float32)
    thr[0] = np.float32(cur)
    nodes = [Node("fc", "linear", ["input"], {"out_features": weights.shape[0]}),
             Node("lif", "neuron", ["fc"], {**model, "threshold": {"array": "params/lif/threshold"}})]
    gt = GraphTrace(nodes=nodes, input=x, recorded={}, arrays={"weights/fc": weights, "params/lif/threshold": thr},
                    time_steps=3)
    spikes = evaluate_trace(gt, keep=["lif"])["lif"]
    assert not spikes[0, 0, 0]
    spikes[0, 0, 0] = True
    gt.recorded = {"spikes/lif": pack_spikes(spikes)}
    return gt, 0


def test_a_near_tie_in_float_arithmetic_is_explained_not_a_mismatch(tmp_path):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((4, 30)).astype(np.float32)
    x = rng.random((2, 30)).astype(np.float32)
    gt, _ = _near_tie_trace(w, x, {"model": "snntorch.leaky", "beta": 0.5})
    gt = _saved(gt, tmp_path / "tie.npz")
    result = verify_graph(gt)
    c = result.layer("lif")
    assert result.ok and c.status == "match" and c.arithmetic == "float64"
    assert c.within_tolerance == 1 and c.values_differing >= 1 and "within float rounding" in c.note
    assert "within float tolerance" in result.summary()
    strict = verify_graph(gt, arithmetic="integer")  # no tolerance: the same near-tie is a mismatch
    assert not strict.ok and strict.layer("lif").first_mismatch["step"] == 0


def test_a_near_tie_with_integer_currents_is_a_mismatch(tmp_path):
    """Integer weights and inputs: the current is exact, so the spike decision is too."""
    rng = np.random.default_rng(8)
    w = rng.integers(-3, 4, (4, 30)).astype(np.float32)
    x = (rng.random((2, 30)) < 0.5).astype(np.float32)  # a binary image is integer valued
    gt, _ = _near_tie_trace(w, x, {"model": "snntorch.leaky", "beta": 0.5})
    result = verify_graph(_saved(gt, tmp_path / "tie.npz"))
    c = result.layer("lif")
    assert c.arithmetic == "exact" and c.status == "mismatch" and c.within_tolerance == 0
    assert (c.first_mismatch["sample"], c.first_mismatch["step"], c.first_mismatch["neuron"]) == (0, 0, 0)
    assert "exact" in c.note
    # the float64 arithmetic would explain it
    assert verify_graph(gt, arithmetic="float64").layer("lif").within_tolerance == 1


def test_a_layer_without_weights_is_skipped_with_its_reason(tmp_path):
    gt = make_trace(GRAPHS["cnn_snntorch"])
    del gt.arrays["weights/fc"]
    result = verify_graph(_saved(gt, tmp_path / "g.npz"))
    c = result.layer("lif2")
    assert c.status == "skipped" and "weights/fc" in c.note
    assert result.layer("lif1").status == "match" and result.ok and result.counts["skipped"] == 1


def test_cli_verify_of_a_v2_trace_in_every_format(tmp_path, capsys):
    path = tmp_path / "g.npz"
    save_graph_trace(make_trace(GRAPHS["integer_snnsim"]), path)
    assert main(["verify", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["format_version"] == 2 and doc["counts"]["match"] == 5
    assert {c["name"]: c["arithmetic"] for c in doc["layers"]}["n3"] == "exact"
    assert main(["verify", str(path), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("layer,op,status") and any(r.startswith("n1,") and ",match," in r for r in rows)
    assert main(["verify", str(path), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "OK: 5 match" in out and "values" in out.splitlines()[0]


def test_a_v1_file_keeps_the_v1_verifier():
    v1 = "tests/data/digits_snn_v1.npz"
    want = verify_workload(load_workload(v1)).to_dict()
    assert verify_path(v1).to_dict() == want
    assert verify_path(v1, arithmetic="float64").to_dict() == verify_workload(load_workload(v1),
                                                                              arithmetic="float64").to_dict()


def test_a_migrated_v1_trace_verifies_as_v2(tmp_path):
    gt = _saved(load_graph_trace("tests/data/digits_snn_v1.npz"), tmp_path / "v2.npz")
    result = verify_graph(gt)
    assert result.ok and result.counts["match"] == 3, result.format_table()


def test_bad_options_are_usage_errors():
    gt = make_trace(GRAPHS["conv3d_synaptic"])
    with pytest.raises(UsageError):
        verify_graph(gt, tolerance=-1)
    with pytest.raises(UsageError):
        verify_graph(gt, arithmetic="fast")
    with pytest.raises(UsageError):
        verify_graph("not a trace")


def test_neurons_reading_the_analog_input_directly_verify(tmp_path):
    """input -> neuron and input -> flatten -> neuron: no op between, the input is the current."""
    def build(rng):
        nodes = [Node("n", "neuron", ["input"], {"model": "spikingjelly.lif", "tau": 2.0, "v_threshold": 0.3}),
                 Node("f", "flatten", ["input"]), Node("m", "neuron", ["f"], {"model": "snnsim.if", "threshold": 1.5})]
        return nodes, {}, rng.random((2, 2, 4, 4)).astype(np.float32), 4

    gt = _saved(make_trace(build), tmp_path / "g.npz")
    result = verify_graph(gt)
    assert result.ok and result.counts["match"] == 2
    assert {c.name: c.arithmetic for c in result.layers} == {"n": "float64", "m": "float64"}
