"""NIR import and export (snnsim.export.nir) through format v2: a mixed network, a v1 trace
through NIR and back, event data, input files, and the errors (tests/test_nir_v2.py has one
test per primitive)."""

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
    write_nir,
)
from snnsim.workload.graph import Layer, Neuron  # noqa: E402
from snnsim.workload.graphtrace import load_graph_trace, save_graph_trace  # noqa: E402
from snnsim.workload.trace import Workload, pack_spikes, save_workload  # noqa: E402


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


def test_import_maps_nodes_to_v2_nodes(tmp_path):
    rng = np.random.default_rng(0)
    g = _network(rng)
    nir.write(tmp_path / "g.nir", g)
    x = rng.random((3, 2, 6, 6))
    gt = workload_from_nir(tmp_path / "g.nir", inputs=x, time_steps=4, dt=1.0)
    by = {n.name: n for n in gt.nodes}
    assert [(n.name, n.op) for n in gt.nodes] == [
        ("conv", "conv2d"), ("if1", "neuron"), ("conv2", "conv2d"), ("lif2", "neuron"), ("res.sum", "add"),
        ("res", "neuron"), ("pool", "sumpool"), ("pif", "neuron"), ("flat", "flatten"), ("fc", "linear"),
        ("lif3", "neuron"), ("fc2", "linear")]
    assert by["res.sum"].inputs == ["lif2", "if1"] and by["conv"].params["padding"] == [1, 1]
    assert by["if1"].params == {"model": "nir.lif", "dt": 1.0, "r": 2.0, "v_threshold": 1.0, "v_reset": 0.0}
    # the affine's bias is modelled (v1 could only carry it as an annotation)
    assert by["fc"].params["bias"] is True
    np.testing.assert_array_equal(gt.arrays["bias/fc"], g.nodes["fc"].bias.astype(np.float32))
    assert by["lif3"].params["v_threshold"] == {"array": "params/lif3/v_threshold"}
    np.testing.assert_array_equal(gt.arrays["weights/conv"], g.nodes["conv"].weight.astype(np.float32))
    assert sorted(gt.recorded) == ["spikes/if1", "spikes/lif2", "spikes/lif3", "spikes/pif", "spikes/res"]
    save_graph_trace(gt, tmp_path / "t.npz")
    assert load_graph_trace(tmp_path / "t.npz").time_steps == 4


def test_v1_options_are_refused_with_a_hint():
    g = _graph({"input": nir.Input(input_type={"input": np.array([2])}), "a": nir.Linear(weight=np.eye(2)),
                "na": nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.full(2, 0.5)),
                "output": nir.Output(output_type={"output": np.array([2])})},
               [("input", "a"), ("a", "na"), ("na", "output")])
    for kw in ({"spike_condition": "v1"}, {"reset": "subtract"}):
        with pytest.raises(UsageError, match="format v1 option") as e:
            workload_from_nir(g, inputs=np.zeros((1, 2)), time_steps=1, **kw)
        assert "v_threshold" in e.value.suggestion
    # a non-zero reset potential is a v2 neuron parameter now
    gt = workload_from_nir(g, inputs=np.zeros((1, 2)), time_steps=1)
    assert gt.nodes[1].params["v_reset"] == 0.5
    with pytest.raises(UsageError, match="inputs"):
        workload_from_nir(g)


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


def test_round_trip_v1_trace_to_nir_to_trace(tmp_path):
    """A v1 trace (subtractive resets: written approximately, on request) through NIR and back:
    the same v2 nodes (the snnsim.if neurons and the OR max pool from the nodes' metadata) and
    the same recorded spikes (from NIRData)."""
    wl = _trace_with_everything(np.random.default_rng(1))
    save_workload(wl, tmp_path / "t.npz")
    gt = load_graph_trace(tmp_path / "t.npz")
    with pytest.raises(WorkloadError, match="subtractive reset"):
        write_nir(gt, tmp_path / "g.nir")
    write_nir(gt, tmp_path / "g.nir", data_path=tmp_path / "d.nir", approximate=True)
    g = nir.read(tmp_path / "g.nir", type_check=False)
    kinds = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert kinds["conv0:conv2d"] == "Conv2d" and kinds["conv1"] == "LIF" and kinds["add"] == "IF"
    assert kinds["mp"] == "SumPool2d" and kinds["mp.or"] == "Threshold" and kinds["ap:avgpool"] == "AvgPool2d"
    assert ("conv1", "add") in g.edges and ("conv0", "add") in g.edges  # the add's inputs, summed by NIR
    back = workload_from_nir(tmp_path / "g.nir", spikes=tmp_path / "d.nir")
    # the same nodes up to the name of the add (NIR has no node for it: it is named after its reader)
    assert [(n.name, n.op) for n in back.nodes if n.op != "add"] == [(n.name, n.op) for n in gt.nodes
                                                                       if n.op != "add"]
    assert [n.inputs for n in back.nodes if n.op == "add"] == [n.inputs for n in gt.nodes if n.op == "add"]
    assert [n.params for n in back.nodes if n.op == "neuron"] == [n.params for n in gt.nodes if n.op == "neuron"]
    assert sorted(back.recorded) == sorted(gt.recorded)
    for k in gt.recorded:
        np.testing.assert_array_equal(back.recorded[k], gt.recorded[k])
    assert back.model == "everything" and back.dataset == "random"
    save_graph_trace(back, tmp_path / "back.npz")


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
    bits = np.unpackbits(wl.recorded["spikes/n"], axis=-1, count=2)
    assert bits[0].astype(int).tolist() == [[1, 0], [0, 1], [0, 0], [0, 1]]


@pytest.mark.parametrize("node, kind", [
    (lambda: nir.CubaLI(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)), "CubaLI"),
    (lambda: nir.Delay(delay=np.full(3, 0.5)), "one time step"),
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
    assert "nodes.odd" in msg and kind in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.nir"]  # no trace, no temporary


def test_unrepresentable_graphs_are_refused():
    # an asymmetric 'same' padding (even kernel)
    g = _graph({"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
                "c": nir.Conv2d(input_shape=(4, 4), weight=np.ones((1, 1, 2, 2)), stride=1, padding="same",
                                dilation=1, groups=1, bias=np.zeros(1)),
                "n": nir.IF(r=np.ones((1, 4, 4)), v_threshold=np.ones((1, 4, 4))),
                "output": nir.Output(output_type={"output": np.array([1, 4, 4])})},
               [("input", "c"), ("c", "n"), ("n", "output")])
    with pytest.raises(WorkloadError, match="padding 'same'") as e:
        workload_from_nir(g, inputs=np.zeros((1, 1, 4, 4)), time_steps=1)
    assert e.value.key == "nodes.c"
    # a dense layer on an image: NIR's Affine reads a flat vector
    g = _graph({"input": nir.Input(input_type={"input": np.array([1, 2, 2])}), "fc": nir.Linear(weight=np.eye(4)),
                "output": nir.Output(output_type={"output": np.array([4])})}, [("input", "fc"), ("fc", "output")])
    with pytest.raises(WorkloadError, match="does not fit") as e:
        workload_from_nir(g, inputs=np.zeros((1, 1, 2, 2)), time_steps=1)
    assert "Flatten" in e.value.suggestion


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
        write_nir(good, tmp_path / "g.nir", approximate=True)
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
