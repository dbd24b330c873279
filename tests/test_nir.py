"""NIR import and export (snnsim.export.nir): hand-built graphs, the functional model on
hand-computed cases, round trips, and the errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from snnsim.errors import UsageError, WorkloadError  # noqa: E402
from snnsim.export.nir import (  # noqa: E402
    nir_to_trace,
    require_nir,
    workload_from_nir,
    workload_to_nir,
    write_nir,
)
from snnsim.workload.graph import Layer, Neuron  # noqa: E402
from snnsim.workload.trace import Workload, load_workload, pack_spikes, save_workload  # noqa: E402


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _full(shape, v):
    return np.full(shape, float(v))


def _network(rng) -> nir.NIRGraph:
    """conv -> IF, conv -> LIF, residual sum into an IF, sum pool -> IF, flatten, affine -> LIF,
    linear read-out."""
    s4 = (4, 6, 6)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(size=(4, 2, 3, 3)), stride=1, padding=1,
                           dilation=1, groups=1, bias=np.zeros(4)),
        "if1": nir.IF(r=_full(s4, 2.0), v_threshold=_full(s4, 1.0)),
        "conv2": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(size=(4, 4, 3, 3)), stride=1, padding=1,
                            dilation=1, groups=1, bias=np.zeros(4)),
        "lif2": nir.LIF(tau=_full(s4, 4.0), r=_full(s4, 2.0), v_leak=_full(s4, 0.0), v_threshold=_full(s4, 1.0)),
        "res": nir.IF(r=_full(s4, 1.0), v_threshold=_full(s4, 1.5)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "pif": nir.IF(r=_full((4, 3, 3), 1.0), v_threshold=_full((4, 3, 3), 2.0)),
        "flat": nir.Flatten(input_type={"input": np.array([4, 3, 3])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.normal(size=(5, 36)), bias=rng.normal(size=5)),
        "lif3": nir.LIF(tau=_full(5, 5.0), r=_full(5, 5.0), v_leak=_full(5, 0.0),
                        v_threshold=rng.uniform(0.5, 1.5, 5)),
        "fc2": nir.Linear(weight=rng.normal(size=(3, 5))),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "conv"), ("conv", "if1"), ("if1", "conv2"), ("conv2", "lif2"), ("lif2", "res"),
             ("if1", "res"), ("res", "pool"), ("pool", "pif"), ("pif", "flat"), ("flat", "fc"),
             ("fc", "lif3"), ("lif3", "fc2"), ("fc2", "output")]
    return _graph(nodes, edges)


def test_import_maps_nodes_to_layers(tmp_path):
    rng = np.random.default_rng(0)
    g = _network(rng)
    nir.write(tmp_path / "g.nir", g)
    x = rng.random((3, 2, 6, 6))
    wl = workload_from_nir(tmp_path / "g.nir", inputs=x, time_steps=4, dt=1.0)
    by = {la.name: la for la in wl.layers}
    assert [la.name for la in wl.layers] == ["conv", "conv2", "res", "pool", "flat", "fc", "fc2"]
    assert [by[n].op for n in by] == ["conv2d", "conv2d", "add", "avgpool", "flatten", "linear", "linear"]
    assert by["conv"].inputs == ["input"] and by["res"].inputs == ["conv2", "conv"]
    assert by["conv"].padding == (1, 1) and by["pool"].kernel == (2, 2)
    # IF: v += dt R I, threshold 1 -> 1 / (dt R) = 0.5
    assert by["conv"].neuron == Neuron("IF", 0.5, 0.0, "zero", False)
    # LIF: a = dt / tau = 0.25, gain a R = 0.5 -> threshold 2
    assert by["conv2"].neuron == Neuron("LIF", 2.0, 0.25, "zero", False)
    # a sum pool is an avgpool whose threshold is divided by the kernel's 4 elements
    assert by["pool"].neuron.threshold == 0.5 and by["pool"].extra["nir"]["type"] == "SumPool2d"
    # per-neuron thresholds of the LIF become per-channel thresholds; the bias rides in extra
    assert by["fc"].neuron.per_channel and by["fc"].neuron.leak == 0.2
    np.testing.assert_array_equal(wl.thresholds["fc"], (g.nodes["lif3"].v_threshold / 1.0).astype(np.float32))
    np.testing.assert_allclose(by["fc"].extra["bias"], g.nodes["fc"].bias)
    assert by["fc2"].neuron is None and not by["fc2"].spiking
    np.testing.assert_array_equal(wl.weight("conv"), g.nodes["conv"].weight.astype(np.float32))
    assert wl.samples == 3 and wl.time_steps == 4
    save_workload(wl, tmp_path / "t.npz")  # a valid v1 trace
    assert load_workload(tmp_path / "t.npz").layer("res").spiking


def test_functional_model_on_a_hand_computed_case():
    # input (1, 2, 2) -> conv 2x2 of ones (one output) -> IF threshold 1; dt = 1, R = 1
    g = _graph({"input": nir.Input(input_type={"input": np.array([1, 2, 2])}),
                "c": nir.Conv2d(input_shape=(2, 2), weight=np.ones((1, 1, 2, 2)), stride=1, padding=0,
                                dilation=1, groups=1, bias=np.zeros(1)),
                "n": nir.IF(r=np.ones((1, 1, 1)), v_threshold=np.ones((1, 1, 1))),
                "output": nir.Output(output_type={"output": np.array([1, 1, 1])})},
               [("input", "c"), ("c", "n"), ("n", "output")])
    x = np.array([[[[0.25, 0.0], [0.125, 0.125]]],  # current 0.5: v = .5, 1 (no spike: v > 1 fails), 1.5 spike
                  [[[0.25, 0.25], [0.25, 0.0]]]])  # current 0.75: v = .75, 1.5 spike, .75, 1.5 spike
    wl = workload_from_nir(g, inputs=x, time_steps=4, dt=1.0)
    assert wl.spikes("c")[:, :, 0, 0, 0].astype(int).tolist() == [[0, 0, 1, 0], [0, 1, 0, 1]]
    # format v1's condition (v >= threshold) fires on the tie
    v1 = workload_from_nir(g, inputs=x, time_steps=4, dt=1.0, spike_condition="v1")
    assert v1.spikes("c")[:, :, 0, 0, 0].astype(int).tolist() == [[0, 1, 0, 1], [0, 1, 0, 1]]
    # subtractive reset keeps the excess: 0.75, 1.5 -> .5, 1.25 -> .25, 1.0 (tie: no spike)
    sub = workload_from_nir(g, inputs=x, time_steps=4, dt=1.0, reset="subtract")
    assert sub.layer("c").neuron.reset == "subtract"
    assert sub.spikes("c")[1, :, 0, 0, 0].astype(int).tolist() == [0, 1, 1, 0]


def test_lif_leak_and_v_leak_by_hand():
    # tau = 2 dt: v = v / 2 + v_leak / 2 + R I / 2, with R = 2 and v_leak = 0.4: v = v / 2 + 0.2 + I
    g = _graph({"input": nir.Input(input_type={"input": np.array([1])}),
                "l": nir.Linear(weight=np.array([[0.5]])),
                "n": nir.LIF(tau=np.array([2.0]), r=np.array([2.0]), v_leak=np.array([0.4]),
                             v_threshold=np.array([1.2])),
                "output": nir.Output(output_type={"output": np.array([1])})},
               [("input", "l"), ("l", "n"), ("n", "output")])
    wl = workload_from_nir(g, inputs=np.ones((1, 1)), time_steps=5, dt=1.0)
    la = wl.layer("l")
    assert la.neuron.leak == 0.5 and la.neuron.threshold == 1.2 and la.extra["bias"] == [0.2]
    # v: 0.7, 1.05, 1.225 (spike, to 0), 0.7, 1.05
    assert wl.spikes("l")[0, :, 0].astype(int).tolist() == [0, 0, 1, 0, 0]


def _trace_with_everything(rng) -> Workload:
    """A v1 trace of most features: binary and multi-bit weights, grouped conv, per-channel
    thresholds, subtractive reset, leak, maxpool of spikes, avgpool with a neuron, residual add,
    flatten, a linear read-out, an extra field; random spikes (a trace need not be simulated)."""
    layers = [
        Layer("conv0", "conv2d", ["input"], (4, 4, 4), kernel=(2, 2), stride=(2, 2), padding=(0, 0), weight_bits=4,
              neuron=Neuron(threshold=1.0, per_channel=True), extra={"in_pixel": True}),
        Layer("conv1", "conv2d", ["conv0"], (4, 4, 4), kernel=(3, 3), stride=(1, 1), padding=(1, 1), groups=2,
              neuron=Neuron(model="LIF", threshold=2.0, leak=0.125)),
        Layer("add", "add", ["conv1", "conv0"], (4, 4, 4), neuron=Neuron(threshold=1.0, reset="zero")),
        Layer("mp", "maxpool", ["add"], (4, 2, 2), kernel=(2, 2), stride=(2, 2), padding=(0, 0)),
        Layer("ap", "avgpool", ["mp"], (4, 1, 1), kernel=(2, 2), stride=(2, 2), padding=(0, 0),
              neuron=Neuron(threshold=0.5)),
        Layer("flat", "flatten", ["ap"], (4,)),
        Layer("fc", "linear", ["flat"], (3,)),
    ]
    s_n, t_n = 2, 3
    spikes = {}
    for la, shape in (("conv0", (4, 4, 4)), ("conv1", (4, 4, 4)), ("add", (4, 4, 4)), ("mp", (4, 2, 2)),
                      ("ap", (4, 1, 1))):
        spikes[la] = rng.random((s_n, t_n, *shape)) < 0.3
    spikes["flat"] = spikes["ap"].reshape(s_n, t_n, 4)
    weights = {"conv0": rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
               "conv1": np.where(rng.random((4, 2, 3, 3)) < 0.5, -0.5, 0.5).astype(np.float32),
               "fc": np.where(rng.random((3, 4)) < 0.5, -1.0, 1.0).astype(np.float32)}
    return Workload(layers, rng.random((s_n, 3, 8, 8)).astype(np.float32),
                    {k: pack_spikes(v) for k, v in spikes.items()}, t_n, model="everything", dataset="random",
                    weights=weights, thresholds={"conv0": np.array([1.0, 0.5, 2.0, 0.25], np.float32)})


def _assert_same(a: Workload, b: Workload) -> None:
    assert [la.as_dict() for la in a.layers] == [la.as_dict() for la in b.layers]
    assert a.input_shape == b.input_shape and a.time_steps == b.time_steps and a.samples == b.samples
    np.testing.assert_array_equal(a.input, b.input)
    assert sorted(a.packed_spikes) == sorted(b.packed_spikes)
    for k in a.packed_spikes:
        np.testing.assert_array_equal(a.packed_spikes[k], b.packed_spikes[k])
    for la in a.layers:
        assert a.has_weights(la.name) == b.has_weights(la.name)
        if a.has_weights(la.name):
            np.testing.assert_array_equal(a.weight(la.name), b.weight(la.name))
    assert sorted(a.thresholds) == sorted(b.thresholds)
    for k in a.thresholds:
        np.testing.assert_array_equal(a.thresholds[k], b.thresholds[k])


def test_round_trip_trace_to_nir_to_trace(tmp_path):
    wl = _trace_with_everything(np.random.default_rng(1))
    save_workload(wl, tmp_path / "t.npz")
    wl = load_workload(tmp_path / "t.npz")
    write_nir(wl, tmp_path / "g.nir", data_path=tmp_path / "d.nir")
    g = nir.read(tmp_path / "g.nir", type_check=False)
    kinds = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert kinds["conv0"] == "Conv2d" and kinds["conv1.lif"] == "LIF" and kinds["add"] == "IF"
    assert kinds["mp"] == "SumPool2d" and kinds["mp.threshold"] == "Threshold" and kinds["ap"] == "AvgPool2d"
    assert kinds["fc"] == "Linear" and kinds["flat"] == "Flatten"
    assert ("conv1.lif", "add") in g.edges and ("conv0.if", "add") in g.edges
    back = workload_from_nir(tmp_path / "g.nir", spikes=tmp_path / "d.nir")
    _assert_same(wl, back)
    assert back.model == "everything" and back.dataset == "random"
    save_workload(back, tmp_path / "back.npz")
    _assert_same(wl, load_workload(tmp_path / "back.npz"))


def test_round_trip_nir_to_trace_to_nir_with_simulated_spikes(tmp_path):
    rng = np.random.default_rng(2)
    nir.write(tmp_path / "g.nir", _network(rng))
    x = rng.random((2, 2, 6, 6))
    wl = workload_from_nir(tmp_path / "g.nir", inputs=x, time_steps=3)
    write_nir(wl, tmp_path / "g2.nir")
    g2 = nir.read(tmp_path / "g2.nir", type_check=False)
    assert {"conv", "if1", "conv2", "lif2", "res", "pool", "pif", "flat", "fc", "lif3", "fc2"} <= set(g2.nodes)
    again = workload_from_nir(tmp_path / "g2.nir", inputs=wl.input, time_steps=3)
    _assert_same(wl, again)


def test_dense_on_an_image_becomes_a_full_kernel_conv(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 12))
    g = _graph({"input": nir.Input(input_type={"input": np.array([3, 2, 2])}),
                "flatten": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
                "fc1": nir.Linear(weight=w),
                "lif": nir.LIF(tau=_full(6, 2e-4), r=_full(6, 2.0), v_leak=_full(6, 0.0), v_threshold=_full(6, 0.5)),
                "fc2": nir.Linear(weight=rng.normal(size=(2, 6))),
                "li": nir.LI(tau=_full(2, 1e-3), r=_full(2, 1.0), v_leak=_full(2, 0.0)),
                "output": nir.Output(output_type={"output": np.array([2])})},
               [("input", "flatten"), ("flatten", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "li"),
                ("li", "output")])
    x = rng.random((2, 3, 2, 2))
    wl = workload_from_nir(g, inputs=x, time_steps=3)
    assert [(la.name, la.op) for la in wl.layers] == [("fc1", "conv2d"), ("fc1.flat", "flatten"), ("fc2", "linear")]
    assert wl.layer("fc1").kernel == (2, 2) and wl.layer("fc1").out_shape == (6, 1, 1)
    np.testing.assert_array_equal(wl.weight("fc1").reshape(6, 12), w.astype(np.float32))
    # the same spikes as the dense layer on the flattened input
    cur = x.reshape(2, 12) @ w.astype(np.float32).astype(np.float64).T
    v = np.zeros_like(cur)
    expect = []
    for _t in range(3):
        v = 0.5 * v + cur
        s = v > 0.5
        v[s] = 0.0
        expect.append(s)
    np.testing.assert_array_equal(wl.spikes("fc1.flat"), np.stack(expect, 1))
    back = workload_from_nir(workload_to_nir(wl), inputs=wl.input, time_steps=3)
    _assert_same(wl, back)
    assert type(workload_to_nir(wl).nodes["flatten"]).__name__ == "Flatten"


def test_event_data_are_binned_into_steps(tmp_path):
    g = _graph({"input": nir.Input(input_type={"input": np.array([2])}),
                "l": nir.Linear(weight=np.eye(2)),
                "n": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
                "output": nir.Output(output_type={"output": np.array([2])})},
               [("input", "l"), ("l", "n"), ("n", "output")])
    ev = nir.EventData(idx=np.array([[0, 1, 1, -1]]), time=np.array([[0.0, 0.25, 0.75, np.inf]]),
                       n_neurons=2, t_max=1.0)
    data = nir.NIRGraphData({"n": nir.NIRNodeData({"spikes": ev})})
    wl = workload_from_nir(g, spikes=data, inputs=np.full((1, 2), 0.5), time_steps=4)
    assert wl.spikes("l")[0].astype(int).tolist() == [[1, 0], [0, 1], [0, 0], [0, 1]]


@pytest.mark.parametrize("node, kind", [
    (lambda: nir.Delay(delay=np.ones(3)), "Delay"),
    (lambda: nir.Scale(scale=np.ones(3)), "Scale"),
    (lambda: nir.Threshold(threshold=np.ones(3)), "Threshold"),
])
def test_unsupported_primitive_names_the_node(tmp_path, node, kind):
    g = _graph({"input": nir.Input(input_type={"input": np.array([3])}),
                "odd": node(),
                "l": nir.Linear(weight=np.eye(3)),
                "n": nir.IF(r=np.ones(3), v_threshold=np.ones(3)),
                "output": nir.Output(output_type={"output": np.array([3])})},
               [("input", "l"), ("l", "n"), ("n", "odd"), ("odd", "output")])
    nir.write(tmp_path / "g.nir", g)
    with pytest.raises(WorkloadError) as e:
        nir_to_trace(tmp_path / "g.nir", tmp_path / "t.npz", inputs=np.zeros((1, 3)), time_steps=2)
    msg = str(e.value)
    assert "nodes.odd" in msg and kind in msg and "Conv2d" in msg and "CubaLIF" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.nir"]  # no trace, no temporary


def test_unrepresentable_graphs_are_refused():
    # a synaptic node with two inputs (NIR sums them: not binary, so not a v1 layer input)
    g = _graph({"input": nir.Input(input_type={"input": np.array([2])}),
                "a": nir.Linear(weight=np.eye(2)), "na": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
                "b": nir.Linear(weight=np.eye(2)),
                "output": nir.Output(output_type={"output": np.array([2])})},
               [("input", "a"), ("a", "na"), ("na", "b"), ("input", "b"), ("b", "output")])
    with pytest.raises(WorkloadError, match="several inputs"):
        workload_from_nir(g, inputs=np.zeros((1, 2)), time_steps=1)
    # a non-zero reset potential
    g = _graph({"input": nir.Input(input_type={"input": np.array([2])}),
                "a": nir.Linear(weight=np.eye(2)),
                "na": nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.full(2, 0.5)),
                "output": nir.Output(output_type={"output": np.array([2])})},
               [("input", "a"), ("a", "na"), ("na", "output")])
    with pytest.raises(WorkloadError, match="v_reset"):
        workload_from_nir(g, inputs=np.zeros((1, 2)), time_steps=1)
    # simulation needs inputs and steps
    with pytest.raises(UsageError, match="inputs"):
        workload_from_nir(g)


def test_export_errors_leave_no_file(tmp_path, monkeypatch):
    layers = [Layer("c", "conv3d", ["input"], (2, 2, 2, 2), kernel=(1, 1, 1), stride=(1, 1, 1),
                    padding=(0, 0, 0), neuron=Neuron())]
    wl = Workload(layers, np.zeros((1, 1, 2, 2, 2), np.float32),
                  {"c": pack_spikes(np.zeros((1, 1, 2, 2, 2, 2), bool))}, 1,
                  weights={"c": np.ones((2, 1, 1, 1, 1), np.float32)})
    with pytest.raises(WorkloadError, match="3-D convolution"):
        write_nir(wl, tmp_path / "g.nir", data_path=tmp_path / "d.nir")
    # a failure inside the writer: the temporary file is removed, the target never appears
    good = _trace_with_everything(np.random.default_rng(4))

    def broken(path, graph, *a, **k):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(OSError):
        write_nir(good, tmp_path / "g.nir")
    assert list(tmp_path.iterdir()) == []


def test_missing_nir_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(UsageError) as e:
        require_nir()
    assert 'pip install "snnsim[nir]"' in str(e.value)


def test_inputs_files_are_read_with_bounds(tmp_path):
    """--inputs files: a .npy whose header claims 10^12 values and a damaged header are refused
    before anything is allocated (an .npz goes through the trace reader's checks); good ones load."""
    from numpy.lib import format as npy_format

    rng = np.random.default_rng(0)
    g = _network(rng)
    nir.write(tmp_path / "g.nir", g)
    x = rng.random((2, 2, 6, 6))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", input=x)
    for good in ("x.npy", "x.npz"):
        wl = workload_from_nir(tmp_path / "g.nir", inputs=tmp_path / good, time_steps=2, dt=1.0)
        assert wl.samples == 2
    with open(tmp_path / "huge.npy", "wb") as fh:
        npy_format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
        fh.write(b"\0" * 16)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',\n")
    for bad in ("huge.npy", "bad.npy"):
        with pytest.raises(WorkloadError) as e:
            workload_from_nir(tmp_path / "g.nir", inputs=tmp_path / bad, time_steps=2, dt=1.0)
        assert e.value.file.endswith(bad)
