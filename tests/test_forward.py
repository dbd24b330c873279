"""The reference evaluator of v2 graphs (snnsim.workload.forward) against PyTorch: its ops against
torch.nn.functional, and whole networks against the same networks built from torch ops and the
frameworks' own neuron modules (snnTorch Leaky, Synaptic, RLeaky; SpikingJelly IF, LIF), spike
for spike on random inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest
from snnsim.errors import WorkloadError
from snnsim.workload.forward import conv, evaluate, evaluate_trace, pool
from snnsim.workload.graphtrace import GraphTrace
from snnsim.workload.nodes import Node, check_nodes, recorded
from snnsim.workload.trace import pack_spikes

torch = pytest.importorskip("torch")
F = torch.nn.functional

F32 = np.float32


# ----------------------------------------------------------------------------- graphs
# Each builder returns (nodes, arrays, input (samples, *shape) float32 in [0, 1], time steps).

def cnn_snntorch(rng: np.random.Generator, samples: int = 4):
    """conv2d+bias -> affine (batch norm) -> maxpool -> snntorch.leaky -> flatten -> linear+bias
    -> snntorch.leaky (the readout's spikes)."""
    nodes = [Node("conv1", "conv2d", ["input"], {"out_channels": 4, "kernel": 3, "padding": 1, "bias": True}),
             Node("bn1", "affine", ["conv1"]),
             Node("pool1", "maxpool", ["bn1"], {"kernel": 2}),
             Node("lif1", "neuron", ["pool1"], {"model": "snntorch.leaky", "beta": 0.8}),
             Node("flat", "flatten", ["lif1"]),
             Node("fc", "linear", ["flat"], {"out_features": 5, "bias": True}),
             Node("lif2", "neuron", ["fc"], {"model": "snntorch.leaky", "beta": 0.9, "threshold": 0.5})]
    arrays = {"weights/conv1": rng.standard_normal((4, 2, 3, 3)).astype(F32) * F32(0.5),
              "bias/conv1": rng.standard_normal(4).astype(F32) * F32(0.1),
              "scale/bn1": rng.uniform(0.5, 1.5, 4).astype(F32), "shift/bn1": rng.standard_normal(4).astype(F32) * F32(0.1),
              "weights/fc": rng.standard_normal((5, 64)).astype(F32) * F32(0.3),
              "bias/fc": rng.standard_normal(5).astype(F32) * F32(0.1)}
    return nodes, arrays, rng.random((samples, 2, 8, 8)).astype(F32), 6


def sew_spikingjelly(rng: np.random.Generator, samples: int = 3):
    """SpikingJelly neurons: a SEW ADD of spikes read by two layers (recorded events) and one read
    by a single conv (its fan-out); an IAND; a conv -> avgpool of currents; a Spiking-ResNet add of
    two conv branches' currents; LIF with a soft reset (v_reset None)."""
    def cv(name, src, c_out, k=3, **kw):
        return Node(name, "conv2d", [src], {"out_channels": c_out, "kernel": k, "padding": k // 2, **kw})

    nodes = [cv("ca", "input", 4, bias=True), Node("a", "neuron", ["ca"], {"model": "spikingjelly.if"}),
             cv("cb", "input", 4), Node("b", "neuron", ["cb"], {"model": "spikingjelly.lif", "tau": 2.0,
                                                               "v_reset": None}),
             Node("sew", "add", ["a", "b"]),
             cv("cc", "sew", 4), Node("c", "neuron", ["cc"], {"model": "spikingjelly.if", "v_reset": None}),
             Node("flat", "flatten", ["sew"]), Node("fc", "linear", ["flat"], {"out_features": 3}),
             Node("sew2", "add", ["a", "c"]),
             cv("ce", "sew2", 2), Node("e", "neuron", ["ce"], {"model": "spikingjelly.lif", "tau": 3.0}),
             Node("nand", "iand", ["a", "b"]),
             cv("cd", "nand", 4), Node("pool", "avgpool", ["cd"], {"kernel": 2}),
             Node("d", "neuron", ["pool"], {"model": "spikingjelly.lif", "tau": 2.0, "decay_input": False}),
             cv("ra", "a", 4, k=1), cv("rb", "b", 4, k=1), Node("radd", "add", ["ra", "rb"]),
             Node("r", "neuron", ["radd"], {"model": "spikingjelly.if"})]
    arrays = {f"weights/{n.name}": (rng.standard_normal((n.params["out_channels"], 4 if n.inputs != ["input"] else 2,
                                                         n.params["kernel"], n.params["kernel"])) * 0.6).astype(F32)
              for n in nodes if n.op == "conv2d"}
    arrays["weights/cd"] *= F32(3)  # an average of a sparse IAND: a weak current otherwise
    arrays["bias/ca"] = rng.standard_normal(4).astype(F32) * F32(0.2)
    arrays["weights/fc"] = rng.standard_normal((3, 256)).astype(F32)
    return nodes, arrays, rng.random((samples, 2, 8, 8)).astype(F32), 5


def recurrent_rleaky(rng: np.random.Generator, samples: int = 4):
    """snnTorch RLeaky, all to all (a linear with bias of its delayed spikes) and one to one (a
    scale V of them)."""
    n = 10
    nodes = [Node("fc", "linear", ["input"], {"out_features": n, "bias": True}),
             Node("rl", "neuron", ["fc", "rfc"], {"model": "snntorch.rleaky", "beta": 0.9}),
             Node("d", "delay", ["rl"], {"shape": [n], "kind": "spikes"}),
             Node("rfc", "linear", ["d"], {"out_features": n, "bias": True}),
             Node("fc2", "linear", ["input"], {"out_features": n}),
             Node("rv", "neuron", ["fc2", "rs"], {"model": "snntorch.rleaky", "beta": 0.8, "reset": "zero"}),
             Node("d2", "delay", ["rv"], {"shape": [n], "kind": "spikes"}),
             Node("rs", "scale", ["d2"])]
    arrays = {"weights/fc": rng.standard_normal((n, 12)).astype(F32) * F32(0.5),
              "bias/fc": rng.standard_normal(n).astype(F32) * F32(0.1),
              "weights/rfc": rng.standard_normal((n, n)).astype(F32) * F32(0.4),
              "bias/rfc": rng.standard_normal(n).astype(F32) * F32(0.05),
              "weights/fc2": rng.standard_normal((n, 12)).astype(F32) * F32(0.5),
              "scale/rs": np.full(n, 0.35, F32)}
    return nodes, arrays, rng.random((samples, 12)).astype(F32), 12


def conv3d_synaptic(rng: np.random.Generator, samples: int = 2):
    """conv3d (stride, padding) -> snntorch.synaptic."""
    nodes = [Node("c3", "conv3d", ["input"], {"out_channels": 3, "kernel": [3, 3, 3], "stride": [1, 2, 2],
                                              "padding": 1}),
             Node("syn", "neuron", ["c3"], {"model": "snntorch.synaptic", "alpha": 0.7, "beta": 0.8})]
    arrays = {"weights/c3": rng.standard_normal((3, 2, 3, 3, 3)).astype(F32) * F32(0.3)}
    return nodes, arrays, rng.random((samples, 2, 5, 6, 6)).astype(F32), 5


def integer_snnsim(rng: np.random.Generator, samples: int = 3):
    """A float first layer, then snnsim.if layers with integer weights on spikes (exact
    arithmetic): conv (weights in -2..2) -> IF threshold 2; a sum pool of its spikes (events) read
    by two layers: a 1x1 conv (weights 0/1) -> IF (zero reset), and flatten -> linear (weights -1..1) -> IF."""
    nodes = [Node("c0", "conv2d", ["input"], {"out_channels": 4, "kernel": 3, "padding": 1}),
             Node("l0", "neuron", ["c0"], {"model": "snntorch.leaky", "beta": 0.9}),
             Node("c1", "conv2d", ["l0"], {"out_channels": 4, "kernel": 3, "padding": 1}),
             Node("n1", "neuron", ["c1"], {"model": "snnsim.if", "threshold": 2.0}),
             Node("sp", "sumpool", ["n1"], {"kernel": 2}),
             Node("c2", "conv2d", ["sp"], {"out_channels": 2, "kernel": 1}),
             Node("n2", "neuron", ["c2"], {"model": "snnsim.if", "threshold": 3.0, "reset": "zero"}),
             Node("flat", "flatten", ["sp"]),
             Node("fc", "linear", ["flat"], {"out_features": 6}),
             Node("n3", "neuron", ["fc"], {"model": "snnsim.if", "threshold": 3.0})]
    arrays = {"weights/c0": rng.standard_normal((4, 1, 3, 3)).astype(F32),
              "weights/c1": rng.integers(-2, 3, (4, 4, 3, 3)).astype(F32),
              "weights/c2": rng.integers(0, 2, (2, 4, 1, 1)).astype(F32),
              "weights/fc": rng.integers(-1, 2, (6, 64)).astype(F32)}
    return nodes, arrays, rng.random((samples, 1, 8, 8)).astype(F32), 6


GRAPHS = {"cnn_snntorch": cnn_snntorch, "sew_spikingjelly": sew_spikingjelly, "recurrent_rleaky": recurrent_rleaky,
          "conv3d_synaptic": conv3d_synaptic, "integer_snnsim": integer_snnsim}


def make_trace(build, seed: int = 0) -> GraphTrace:
    """A v2 trace whose recorded activity is the evaluator's own."""
    nodes, arrays, x, steps = build(np.random.default_rng(seed))
    values = evaluate(nodes, x, steps, arrays=arrays)
    check_nodes(nodes, x.shape[1:])
    rec = {}
    for n in recorded(nodes):
        v = values[n.name]
        rec[f"{n.kind}/{n.name}"] = pack_spikes(v) if n.kind == "spikes" else \
            v.reshape(v.shape[0], steps, -1).astype(np.uint8)
    return GraphTrace(nodes=nodes, input=x, recorded=rec, arrays=arrays, time_steps=steps, model=build.__name__)


# ----------------------------------------------------------------------------- ops against torch

@pytest.mark.parametrize(("rank", "stride", "padding", "dilation", "groups"), [
    (1, 2, 1, 1, 1), (2, 1, 0, 1, 1), (2, 2, 1, 2, 2), (2, (1, 2), (2, 0), (2, 1), 4), (3, (1, 2, 2), 1, 1, 2)])
def test_conv_is_torch_conv(rank, stride, padding, dilation, groups):
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((3, 4) + (9,) * rank)
    w = rng.standard_normal((8, 4 // groups) + (3,) * rank)
    tf = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    want = tf(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=padding, dilation=dilation,
              groups=groups).numpy()

    def axes(v):
        return tuple([v] * rank if isinstance(v, int) else v)

    got = conv(x, w, axes(stride), axes(padding), axes(dilation), groups)
    assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("kernel", "stride", "padding"), [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1))])
def test_pools_are_torch_pools(kernel, stride, padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 8))
    t = torch.from_numpy(x)

    def axes(v):
        return tuple([v] * 2 if isinstance(v, int) else v)

    k, s, p, d = axes(kernel), axes(stride), axes(padding), (1, 1)
    assert np.array_equal(pool("maxpool", x, k, s, p, d), F.max_pool2d(t, kernel, stride, padding).numpy())
    avg = F.avg_pool2d(t, kernel, stride, padding, count_include_pad=True).numpy()
    assert np.allclose(pool("avgpool", x, k, s, p, d), avg, rtol=0, atol=1e-14)
    summed = pool("sumpool", x, k, s, p, d)
    assert np.allclose(summed, avg * np.prod(k), rtol=0, atol=1e-12)


def test_elementwise_ops_and_shapes():
    rng = np.random.default_rng(2)
    x = rng.random((2, 3, 4, 4)).astype(F32)
    b, s, h = (rng.standard_normal(3).astype(F32) for _ in range(3))
    nodes = [Node("b", "bias", ["input"]), Node("s", "scale", ["b"]), Node("a", "affine", ["s"]),
             Node("r", "reshape", ["a"], {"shape": [12, 4]}), Node("f", "flatten", ["r"])]
    out = evaluate(nodes, x, 2, arrays={"bias/b": b, "scale/s": s, "scale/a": s, "shift/a": h})
    xb = x.astype(np.float64) + b[:, None, None]
    xs = xb * s[:, None, None]
    assert np.array_equal(out["b"][:, 1], xb) and np.array_equal(out["s"][:, 0], xs)
    assert np.array_equal(out["a"][:, 0], xs * s[:, None, None] + h[:, None, None])
    assert out["r"].shape == (2, 2, 12, 4) and np.array_equal(out["f"][:, 0], out["a"][:, 0].reshape(2, -1))
    assert all(v.dtype == np.float64 for v in out.values())


def test_iand_add_and_delay_of_spikes():
    """iand is (1 - a) b; adding spikes gives integer events; a delay gives the previous step
    (zero at step 0); kinds come out as bool, int64 and float64."""
    nodes, arrays, x, steps = sew_spikingjelly(np.random.default_rng(3))
    nodes += [Node("late", "delay", ["a"], {"shape": [4, 8, 8], "kind": "spikes"}),
              Node("both", "add", ["late", "a"])]
    out = evaluate(nodes, x, steps, arrays=arrays)
    a, b = out["a"], out["b"]
    assert a.dtype == np.bool_ and out["sew"].dtype == np.int64 and out["radd"].dtype == np.float64
    assert np.array_equal(out["nand"], ~a & b)
    assert np.array_equal(out["sew"], a.astype(int) + b)
    assert not out["late"][:, 0].any() and np.array_equal(out["late"][:, 1:], a[:, :-1])
    assert np.array_equal(out["both"], out["late"].astype(int) + a)
    assert 0.05 < a.mean() < 0.95 and 0.05 < b.mean() < 0.95 and out["nand"].any()


# ----------------------------------------------------------------------------- networks against torch

def _t(a: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(a))


def _torch_cnn_snntorch(arrays, x, steps):
    snntorch = pytest.importorskip("snntorch")
    lif1, lif2 = snntorch.Leaky(beta=0.8), snntorch.Leaky(beta=0.9, threshold=0.5)
    xt = _t(x)
    mem1, mem2 = torch.zeros(x.shape[0], 4, 4, 4), torch.zeros(x.shape[0], 5)
    s1, s2 = [], []
    for _ in range(steps):
        c = F.conv2d(xt, _t(arrays["weights/conv1"]), _t(arrays["bias/conv1"]), padding=1)
        c = c * _t(arrays["scale/bn1"])[:, None, None] + _t(arrays["shift/bn1"])[:, None, None]
        spk1, mem1 = lif1(F.max_pool2d(c, 2), mem1)
        spk2, mem2 = lif2(F.linear(spk1.flatten(1), _t(arrays["weights/fc"]), _t(arrays["bias/fc"])), mem2)
        s1.append(spk1.numpy() > 0)
        s2.append(spk2.numpy() > 0)
    return {"lif1": np.stack(s1, 1), "lif2": np.stack(s2, 1)}


def _torch_sew_spikingjelly(arrays, x, steps):
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    a_n, b_n = sj.IFNode(), sj.LIFNode(tau=2.0, v_reset=None)
    c_n, e_n = sj.IFNode(v_reset=None), sj.LIFNode(tau=3.0)
    d_n, r_n = sj.LIFNode(tau=2.0, decay_input=False), sj.IFNode()
    w = {k.split("/")[1]: _t(v) for k, v in arrays.items() if k.startswith("weights/")}
    xt = _t(x)
    out = {k: [] for k in "abcedr"}
    out["nand"] = []
    for _ in range(steps):
        a = a_n(F.conv2d(xt, w["ca"], _t(arrays["bias/ca"]), padding=1))
        b = b_n(F.conv2d(xt, w["cb"], padding=1))
        c = c_n(F.conv2d(a + b, w["cc"], padding=1))
        e = e_n(F.conv2d(a + c, w["ce"], padding=1))
        nand = (1 - a) * b
        d = d_n(F.avg_pool2d(F.conv2d(nand, w["cd"], padding=1), 2))
        r = r_n(F.conv2d(a, w["ra"]) + F.conv2d(b, w["rb"]))
        for k, v in zip("abcedr", (a, b, c, e, d, r), strict=True):
            out[k].append(v.numpy() > 0)
        out["nand"].append(nand.numpy() > 0)
    return {k: np.stack(v, 1) for k, v in out.items()}


def _torch_recurrent_rleaky(arrays, x, steps):
    snntorch = pytest.importorskip("snntorch")
    n = 10
    rl = snntorch.RLeaky(beta=0.9, linear_features=n)
    rl.recurrent.weight.data = _t(arrays["weights/rfc"])
    rl.recurrent.bias.data = _t(arrays["bias/rfc"])
    rv = snntorch.RLeaky(beta=0.8, V=0.35, all_to_all=False, reset_mechanism="zero")
    xt = _t(x)
    spk, mem = torch.zeros(x.shape[0], n), torch.zeros(x.shape[0], n)
    spk2, mem2 = torch.zeros(x.shape[0], n), torch.zeros(x.shape[0], n)
    out = {"rl": [], "rv": []}
    with torch.no_grad():
        for _ in range(steps):
            spk, mem = rl(F.linear(xt, _t(arrays["weights/fc"]), _t(arrays["bias/fc"])), spk, mem)
            spk2, mem2 = rv(F.linear(xt, _t(arrays["weights/fc2"])), spk2, mem2)
            out["rl"].append(spk.numpy() > 0)
            out["rv"].append(spk2.numpy() > 0)
    return {k: np.stack(v, 1) for k, v in out.items()}


def _torch_conv3d_synaptic(arrays, x, steps):
    snntorch = pytest.importorskip("snntorch")
    neuron = snntorch.Synaptic(alpha=0.7, beta=0.8)
    cur = F.conv3d(_t(x), _t(arrays["weights/c3"]), stride=(1, 2, 2), padding=1)
    syn, mem = torch.zeros(cur.shape), torch.zeros(cur.shape)
    out = []
    for _ in range(steps):
        spk, syn, mem = neuron(cur, syn, mem)
        out.append(spk.numpy() > 0)
    return {"syn": np.stack(out, 1)}


TORCH_TWINS = {"cnn_snntorch": _torch_cnn_snntorch, "sew_spikingjelly": _torch_sew_spikingjelly,
               "recurrent_rleaky": _torch_recurrent_rleaky, "conv3d_synaptic": _torch_conv3d_synaptic}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("graph", sorted(TORCH_TWINS))
def test_evaluate_gives_the_spikes_of_the_same_torch_network(graph, seed):
    nodes, arrays, x, steps = GRAPHS[graph](np.random.default_rng(seed))
    with torch.no_grad():
        want = TORCH_TWINS[graph](arrays, x, steps)
    got = evaluate(nodes, x, steps, arrays=arrays, keep=list(want))
    for name, spikes in want.items():
        assert got[name].dtype == np.bool_
        assert np.array_equal(got[name], spikes), (graph, name, int((got[name] != spikes).sum()))
        assert 0.01 < spikes.mean() < 0.99, (graph, name, spikes.mean())  # a test that could fail


# ----------------------------------------------------------------------------- interface

def test_sources_replace_computed_values_and_cut_what_feeds_them():
    nodes, arrays, x, steps = cnn_snntorch(np.random.default_rng(4))
    forced = np.random.default_rng(5).random((x.shape[0], steps, 4, 4, 4)) < 0.5
    arrays = {k: v for k, v in arrays.items() if not k.endswith("conv1") and not k.endswith("bn1")}
    out = evaluate(nodes, x, steps, arrays=arrays, sources={"lif1": forced}, keep=["lif1", "flat", "fc"])
    assert set(out) == {"lif1", "flat", "fc"}  # conv1 and bn1 were not needed: their arrays are not read
    assert np.array_equal(out["flat"], forced.reshape(x.shape[0], steps, -1))
    want = forced.reshape(x.shape[0], steps, -1) @ arrays["weights/fc"].astype(np.float64).T + arrays["bias/fc"]
    assert np.allclose(out["fc"], want, rtol=0, atol=1e-12)


def test_teacher_forced_trace_recomputes_the_recurrence_from_recorded_spikes():
    gt = make_trace(recurrent_rleaky)
    free = evaluate_trace(gt, keep=["rl", "rfc"])
    forced = evaluate_trace(gt, teacher_forcing=True, keep=["rl", "rfc"])
    assert np.array_equal(free["rl"], forced["rl"]) and np.allclose(free["rfc"], forced["rfc"])
    assert free["rl"].any() and not free["rl"].all()


def test_a_missing_array_is_named():
    nodes, arrays, x, steps = cnn_snntorch(np.random.default_rng(0))
    for key in ("weights/fc", "bias/conv1", "shift/bn1"):
        partial = {k: v for k, v in arrays.items() if k != key}
        with pytest.raises(WorkloadError) as e:
            evaluate(nodes, x, steps, arrays=partial)
        assert e.value.key == key and key in e.value.render()
    with pytest.raises(WorkloadError) as e:
        evaluate(nodes, x, steps, arrays={**arrays, "weights/fc": np.zeros((5, 63), F32)})
    assert e.value.key == "weights/fc" and "[5, 64]" in e.value.render()


def test_bad_arguments_are_workload_errors():
    nodes, arrays, x, steps = cnn_snntorch(np.random.default_rng(0))
    cases = [dict(keep=["lif3"]), dict(sources={"lif1": np.zeros((4, steps, 4, 4))}),
             dict(sources={"nope": np.zeros((4, steps, 5))})]
    for kw in cases:
        with pytest.raises(WorkloadError):
            evaluate(nodes, x, steps, arrays=arrays, **kw)
    with pytest.raises(WorkloadError):
        evaluate(nodes, x[:, :1], steps, arrays=arrays)  # the graph wants 2 input channels
    with pytest.raises(WorkloadError):
        evaluate(nodes, x, 0, arrays=arrays)


def test_a_28x28_cnn_at_10_steps_with_16_samples_is_fast():
    rng = np.random.default_rng(0)
    nodes = [Node("c1", "conv2d", ["input"], {"out_channels": 8, "kernel": 3, "padding": 1, "bias": True}),
             Node("p1", "maxpool", ["c1"], {"kernel": 2}),
             Node("l1", "neuron", ["p1"], {"model": "snntorch.leaky", "beta": 0.9}),
             Node("c2", "conv2d", ["l1"], {"out_channels": 16, "kernel": 3, "padding": 1}),
             Node("p2", "maxpool", ["c2"], {"kernel": 2}),
             Node("l2", "neuron", ["p2"], {"model": "snntorch.leaky", "beta": 0.9}),
             Node("f", "flatten", ["l2"]), Node("fc", "linear", ["f"], {"out_features": 10}),
             Node("o", "neuron", ["fc"], {"model": "snntorch.leaky", "beta": 0.9})]
    arrays = {"weights/c1": rng.standard_normal((8, 1, 3, 3)).astype(F32), "bias/c1": np.zeros(8, F32),
              "weights/c2": rng.standard_normal((16, 8, 3, 3)).astype(F32) * F32(0.5),
              "weights/fc": rng.standard_normal((10, 784)).astype(F32) * F32(0.1)}
    x = rng.random((16, 1, 28, 28)).astype(F32)
    t0 = time.perf_counter()
    out = evaluate(nodes, x, 10, arrays=arrays)
    assert time.perf_counter() - t0 < 1.0
    assert out["o"].shape == (16, 10, 10) and out["l2"].any()


def test_a_per_channel_neuron_parameter_broadcasts_over_positions():
    """A (C,) parameter of a neuron with spatial axes is per channel, not per last axis; a shape
    that fits neither is named."""
    from snnsim.neurons import SpikingJellyIF, run

    x = np.random.default_rng(9).random((2, 3, 5, 4))
    thr = np.array([0.2, 0.5, 2.0], F32)
    got = evaluate([Node("n", "neuron", ["input"], {"model": "spikingjelly.if", "v_threshold": thr})], x, 3,
                   arrays={})["n"]
    want = np.stack([run(SpikingJellyIF(v_threshold=thr.reshape(3, 1, 1)), np.broadcast_to(x[s], (3, 3, 5, 4)))[0]
                     for s in range(2)])
    assert np.array_equal(got, want) and got.any() and not got.all()
    with pytest.raises(WorkloadError) as e:
        evaluate([Node("n", "neuron", ["input"], {"model": "spikingjelly.if", "v_threshold": np.ones(5, F32)})], x, 2,
                 arrays={})
    assert e.value.key == "nodes.n.v_threshold"
