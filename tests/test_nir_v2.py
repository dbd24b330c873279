"""NIR <-> format v2, one primitive to one node: each primitive built with the nir package's own
classes, imported, saved, reloaded, and its recorded spikes compared with a plain NumPy
simulation written here from NIR's equations (forward Euler, fire on v > threshold, reset to
v_reset). Weights and inputs are multiples of powers of two, so float32 storage changes nothing
and exact ties occur (and must not fire)."""

from __future__ import annotations

import numpy as np
import pytest

nir = pytest.importorskip("nir")

from snnsim.errors import WorkloadError  # noqa: E402
from snnsim.export.nir import workload_from_nir, workload_to_nir, write_nir  # noqa: E402
from snnsim.workload.graphtrace import GraphTrace, load_graph_trace, save_graph_trace  # noqa: E402
from snnsim.workload.nodes import Node  # noqa: E402

DT = 1.0


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _chain(shape_in, *named) -> nir.NIRGraph:
    """Input -> the named nodes in order -> Output."""
    nodes = {"input": nir.Input(input_type={"input": np.array(shape_in)}), **dict(named),
             "output": nir.Output(output_type={"output": np.array([1])})}
    names = list(nodes)
    return _graph(nodes, list(zip(names[:-1], names[1:], strict=True)))


def _grid(rng, shape, denom=8):
    return rng.integers(0, denom + 1, size=shape) / denom


def _weights(rng, shape):
    return rng.integers(-4, 5, size=shape) / 4.0


def _import(g, x, steps, tmp_path, **kw) -> GraphTrace:
    gt = workload_from_nir(g, inputs=x, time_steps=steps, dt=DT, **kw)
    path = save_graph_trace(gt, tmp_path / "t.npz")
    return load_graph_trace(path)


def _spikes(gt: GraphTrace, name: str) -> np.ndarray:
    node = next(n for n in gt.nodes if n.name == name)
    a = gt.recorded[f"spikes/{name}"]
    return np.unpackbits(a, axis=-1, count=int(np.prod(node.out_shape))).astype(bool).reshape(
        gt.samples, gt.time_steps, *node.out_shape)


def _node(gt: GraphTrace, name: str) -> Node:
    return next(n for n in gt.nodes if n.name == name)


# ----------------------------------------------------------------------------- NumPy references

def lif(cur, tau=None, r=1.0, v_leak=0.0, thr=1.0, v_reset=0.0, dt=DT):
    """NIR IF (tau None) / LIF by forward Euler over cur (S, T, ...): bool spikes."""
    v = np.zeros(cur[:, 0].shape)
    out = np.zeros(cur.shape, bool)
    for t in range(cur.shape[1]):
        if tau is None:
            v = v + dt * r * cur[:, t]
        else:
            a = dt / tau
            v = (1 - a) * v + a * v_leak + a * r * cur[:, t]
        out[:, t] = v > thr
        v = np.where(out[:, t], v_reset, v)
    return out


def repeat(cur, steps):
    return np.repeat(cur[:, None], steps, axis=1)


def conv2d(x, w, b, stride=1, pad=0):
    s, c, h, wd = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    co, _, kh, kw = w.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((s, co, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("sckl,ockl->so", patch, w) + b
    return out


# ----------------------------------------------------------------------------- one test per primitive

def test_affine_becomes_linear_with_bias_and_lif(tmp_path):
    rng = np.random.default_rng(0)
    w, b = _weights(rng, (5, 6)), _weights(rng, 5)
    g = _chain([6], ("fc", nir.Affine(weight=w, bias=b)),
               ("lif", nir.LIF(tau=np.full(5, 4.0), r=np.full(5, 2.0), v_leak=np.full(5, 0.25),
                               v_threshold=np.full(5, 1.0), v_reset=np.full(5, -0.5))))
    x = _grid(rng, (3, 6))
    gt = _import(g, x, 6, tmp_path)
    fc = _node(gt, "fc")
    assert fc.op == "linear" and fc.params["bias"] is True and fc.params["out_features"] == 5
    np.testing.assert_array_equal(gt.arrays["bias/fc"], b.astype(np.float32))
    assert _node(gt, "lif").params["model"] == "nir.lif" and _node(gt, "lif").params["v_reset"] == -0.5
    want = lif(repeat(x @ w.T + b, 6), tau=4.0, r=2.0, v_leak=0.25, v_reset=-0.5)
    np.testing.assert_array_equal(_spikes(gt, "lif"), want)
    assert want.any() and not want.all()


def test_linear_and_if_fire_only_above_the_threshold(tmp_path):
    # current 0.5 into IF (r = 1, dt = 1): v = .5, 1.0 (a tie: no spike), 1.5 spike, .5, 1.0
    g = _chain([2], ("fc", nir.Linear(weight=np.array([[0.5, 0.0], [0.25, 0.5]]))),
               ("if", nir.IF(r=np.ones(2), v_threshold=np.ones(2))))
    gt = _import(g, np.array([[1.0, 0.5]]), 5, tmp_path)
    assert _node(gt, "fc").params["bias"] is False
    n = _node(gt, "if")
    assert n.params["model"] == "nir.lif" and "tau" not in n.params
    assert _spikes(gt, "if")[0, :, 0].astype(int).tolist() == [0, 0, 1, 0, 0]
    np.testing.assert_array_equal(_spikes(gt, "if"), lif(repeat(np.array([[0.5, 0.5]]), 5)))


def test_conv1d_with_bias(tmp_path):
    rng = np.random.default_rng(1)
    w, b = _weights(rng, (3, 2, 3)), _weights(rng, 3)
    g = _chain([2, 8], ("conv", nir.Conv1d(input_shape=8, weight=w, stride=1, padding=1, dilation=1, groups=1,
                                           bias=b)),
               ("if", nir.IF(r=np.ones((3, 8)), v_threshold=np.full((3, 8), 1.5))))
    x = _grid(rng, (2, 2, 8))
    gt = _import(g, x, 4, tmp_path)
    conv = _node(gt, "conv")
    assert conv.op == "conv1d" and conv.params["padding"] == [1] and conv.params["bias"] is True
    xp = np.pad(x, [(0, 0), (0, 0), (1, 1)])
    cur = np.stack([np.einsum("sck,ock->so", xp[:, :, i:i + 3], w) + b for i in range(8)], axis=-1)
    np.testing.assert_array_equal(_spikes(gt, "if"), lif(repeat(cur, 4), thr=1.5))


def test_conv2d_stride_and_zero_bias(tmp_path):
    rng = np.random.default_rng(2)
    w = _weights(rng, (4, 2, 3, 3))
    g = _chain([2, 6, 6], ("conv", nir.Conv2d(input_shape=(6, 6), weight=w, stride=2, padding=1, dilation=1,
                                              groups=1, bias=np.zeros(4))),
               ("lif", nir.LIF(tau=np.full((4, 3, 3), 2.0), r=np.ones((4, 3, 3)), v_leak=np.zeros((4, 3, 3)),
                               v_threshold=np.full((4, 3, 3), 0.75))))
    x = _grid(rng, (2, 2, 6, 6))
    gt = _import(g, x, 5, tmp_path)
    conv = _node(gt, "conv")
    assert conv.params["stride"] == [2, 2] and conv.params["bias"] is False and "bias/conv" not in gt.arrays
    assert _node(gt, "lif").out_shape == (4, 3, 3)
    want = lif(repeat(conv2d(x, w, 0.0, stride=2, pad=1), 5), tau=2.0, thr=0.75)
    np.testing.assert_array_equal(_spikes(gt, "lif"), want)


@pytest.mark.parametrize("pool", ["SumPool2d", "AvgPool2d"])
def test_pools_of_spikes(pool, tmp_path):
    rng = np.random.default_rng(3)
    w = _weights(rng, (2, 1, 1, 1)) + 1.0
    s4, s2 = (2, 4, 4), (2, 2, 2)
    g = _chain([1, 4, 4], ("conv", nir.Conv2d(input_shape=(4, 4), weight=w, stride=1, padding=0, dilation=1,
                                              groups=1, bias=np.zeros(2))),
               ("if1", nir.IF(r=np.ones(s4), v_threshold=np.full(s4, 0.5))),
               ("pool", getattr(nir, pool)(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                           padding=np.array([0, 0]))),
               ("if2", nir.IF(r=np.ones(s2), v_threshold=np.full(s2, 0.75))))
    x = _grid(rng, (2, 1, 4, 4))
    gt = _import(g, x, 6, tmp_path)
    assert _node(gt, "pool").op == pool[:-2].lower()
    s1 = lif(repeat(conv2d(x, w, 0.0), 6), thr=0.5)
    np.testing.assert_array_equal(_spikes(gt, "if1"), s1)
    win = s1.reshape(2, 6, 2, 2, 2, 2, 2).sum(axis=(4, 6)).astype(float)
    cur = win if pool == "SumPool2d" else win / 4
    np.testing.assert_array_equal(_spikes(gt, "if2"), lif(cur, thr=0.75))


def test_flatten_full_and_partial(tmp_path):
    rng = np.random.default_rng(4)
    w = _weights(rng, (3, 8))
    g = _chain([2, 2, 2], ("conv", nir.Conv2d(input_shape=(2, 2), weight=np.ones((2, 2, 1, 1)) / 2, stride=1,
                                              padding=0, dilation=1, groups=1, bias=np.zeros(2))),
               ("if", nir.IF(r=np.ones((2, 2, 2)), v_threshold=np.full((2, 2, 2), 0.5))),
               ("flat", nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1)),
               ("fc", nir.Linear(weight=w)), ("if2", nir.IF(r=np.ones(3), v_threshold=np.ones(3))))
    x = _grid(rng, (2, 2, 2, 2))
    gt = _import(g, x, 4, tmp_path)
    assert _node(gt, "flat").op == "flatten" and _node(gt, "flat").out_shape == (8,)
    s1 = lif(repeat(np.einsum("schw,oc->sohw", x, np.ones((2, 2)) / 2), 4), thr=0.5)
    np.testing.assert_array_equal(_spikes(gt, "if2"), lif(s1.reshape(2, 4, 8) @ w.T))
    part = nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=1, end_dim=2)
    g2 = _chain([2, 2, 2], ("flat", part), ("sc", nir.Scale(scale=np.ones((2, 4)))),
                ("if", nir.IF(r=np.ones((2, 4)), v_threshold=np.full((2, 4), 0.5))))
    gt2 = _import(g2, x, 2, tmp_path)
    assert _node(gt2, "flat").op == "reshape" and _node(gt2, "flat").params["shape"] == [2, 4]


def test_scale_per_channel(tmp_path):
    rng = np.random.default_rng(5)
    w = _weights(rng, (4, 3))
    s = np.array([0.5, 2.0, -1.0, 1.25])
    g = _chain([3], ("fc", nir.Linear(weight=w)), ("sc", nir.Scale(scale=s)),
               ("if", nir.IF(r=np.ones(4), v_threshold=np.ones(4))))
    x = _grid(rng, (3, 3))
    gt = _import(g, x, 5, tmp_path)
    assert _node(gt, "sc").op == "scale"
    np.testing.assert_array_equal(gt.arrays["scale/sc"], s.astype(np.float32))
    np.testing.assert_array_equal(_spikes(gt, "if"), lif(repeat((x @ w.T) * s, 5)))
    bad = _chain([2, 2], ("sc", nir.Scale(scale=np.array([[1.0, 2.0], [1.0, 1.0]]))),
                 ("if", nir.IF(r=np.ones((2, 2)), v_threshold=np.ones((2, 2)))))
    with pytest.raises(WorkloadError, match="varies within a channel") as e:
        workload_from_nir(bad, inputs=np.zeros((1, 2, 2)), time_steps=1)
    assert e.value.key == "nodes.sc"


def _recurrent(delay: bool, rng) -> tuple[nir.NIRGraph, np.ndarray, np.ndarray]:
    w, v = _weights(rng, (3, 2)), _weights(rng, (3, 3))
    nodes = {"input": nir.Input(input_type={"input": np.array([2])}), "fc": nir.Linear(weight=w),
             "lif": nir.LIF(tau=np.full(3, 2.0), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.5)),
             "rec": nir.Linear(weight=v), "output": nir.Output(output_type={"output": np.array([3])})}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "output"), ("rec", "lif")]
    if delay:
        nodes["d"] = nir.Delay(delay=np.full(3, DT))
        edges += [("lif", "d"), ("d", "rec")]
    else:
        edges += [("lif", "rec")]
    return _graph(nodes, edges), w, v


def _recurrent_reference(x, w, v, steps):
    cur = x @ w.T
    vm = np.zeros(cur.shape)
    prev = np.zeros(cur.shape, bool)
    out = []
    for _t in range(steps):
        i = cur + prev.astype(float) @ v.T
        vm = 0.5 * vm + 0.5 * i
        prev = vm > 0.5
        vm = np.where(prev, 0.0, vm)
        out.append(prev)
    return np.stack(out, 1)


@pytest.mark.parametrize("explicit", [True, False])
def test_delay_recurrent_network(explicit, tmp_path):
    rng = np.random.default_rng(6)
    g, w, v = _recurrent(explicit, rng)
    x = _grid(rng, (4, 2))
    gt = _import(g, x, 8, tmp_path)
    delay = next(n for n in gt.nodes if n.op == "delay")
    assert delay.inputs == ["lif"] and delay.params == {"shape": [3], "kind": "spikes"}
    assert _node(gt, "rec").inputs == [delay.name] and _node(gt, "lif.sum").inputs == ["fc", "rec"]
    want = _recurrent_reference(x, w, v, 8)
    np.testing.assert_array_equal(_spikes(gt, "lif"), want)
    assert want.any() and not want.all()
    if not explicit:
        assert any("reads the previous step" in note for note in gt.provenance["notes"])


def test_delay_of_several_steps_is_refused():
    g, _, _ = _recurrent(True, np.random.default_rng(0))
    g.nodes["d"] = nir.Delay(delay=np.full(3, 3 * DT))
    with pytest.raises(WorkloadError, match="one time step") as e:
        workload_from_nir(g, inputs=np.zeros((1, 2)), time_steps=2, dt=DT)
    assert e.value.key == "nodes.d"


def test_cubalif_network(tmp_path):
    rng = np.random.default_rng(7)
    w, w2 = _weights(rng, (4, 3)), _weights(rng, (2, 4))
    p = dict(tau_syn=np.full(4, 2.0), tau_mem=np.full(4, 4.0), r=np.full(4, 2.0), v_leak=np.zeros(4),
             v_threshold=np.array([0.25, 0.5, 0.75, 1.0]), w_in=np.full(4, 1.5))
    g = _chain([3], ("fc", nir.Linear(weight=w)), ("cuba", nir.CubaLIF(**p)), ("fc2", nir.Linear(weight=w2)),
               ("if", nir.IF(r=np.ones(2), v_threshold=np.ones(2))))
    x = _grid(rng, (3, 3))
    gt = _import(g, x, 10, tmp_path)
    c = _node(gt, "cuba")
    assert c.params["model"] == "nir.cubalif" and c.params["tau"] == 4.0 and c.params["w_in"] == 1.5
    assert c.params["v_threshold"] == {"array": "params/cuba/v_threshold"}
    cur = x @ w.T
    i = np.zeros(cur.shape)
    vm = np.zeros(cur.shape)
    spk = []
    for _t in range(10):
        i = (1 - 0.5) * i + 0.5 * 1.5 * cur
        vm = (1 - 0.25) * vm + 0.25 * 2.0 * i
        s = vm > p["v_threshold"]
        vm = np.where(s, 0.0, vm)
        spk.append(s)
    want = np.stack(spk, 1)
    np.testing.assert_array_equal(_spikes(gt, "cuba"), want)
    np.testing.assert_array_equal(_spikes(gt, "if"), lif(want.astype(float) @ w2.T))
    assert want.any() and not want.all()


@pytest.mark.parametrize("kind", ["LI", "I"])
def test_membrane_readouts(kind, tmp_path):
    rng = np.random.default_rng(8)
    w, w2 = _weights(rng, (4, 3)), _weights(rng, (2, 4))
    ro = nir.LI(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2)) if kind == "LI" else nir.I(r=np.ones(2))
    g = _chain([3], ("fc", nir.Linear(weight=w)), ("if", nir.IF(r=np.ones(4), v_threshold=np.full(4, 0.5))),
               ("fc2", nir.Linear(weight=w2)), ("ro", ro))
    x = _grid(rng, (2, 3))
    gt = _import(g, x, 4, tmp_path)
    r = _node(gt, "ro")
    assert r.params["model"] == ("nir.li" if kind == "LI" else "nir.integrator") and r.kind == "current"
    assert sorted(gt.recorded) == ["spikes/if"]
    np.testing.assert_array_equal(_spikes(gt, "if"), lif(repeat(x @ w.T, 4), thr=0.5))


def test_threshold_is_a_memoryless_neuron(tmp_path):
    w = np.array([[0.5, 0.25], [1.0, -0.5]])
    g = _chain([2], ("fc", nir.Linear(weight=w)), ("th", nir.Threshold(threshold=np.array([0.5, 0.25]))))
    x = np.array([[1.0, 0.0], [0.5, 0.5], [1.0, 1.0]])  # currents [.5, 1], [.375, .25] (tie), [.75, .5]
    gt = _import(g, x, 3, tmp_path)
    n = _node(gt, "th")
    assert n.params["model"] == "nir.lif" and n.params["tau"] == DT and n.params["r"] == 1.0
    want = repeat(x @ w.T > np.array([0.5, 0.25]), 3)
    np.testing.assert_array_equal(_spikes(gt, "th"), want)
    assert _spikes(gt, "th")[1, 0].tolist() == [False, False]  # both exact ties
    back = workload_to_nir(gt)
    assert type(back.nodes["th"]).__name__ == "Threshold"


def test_nested_graph_is_dissolved(tmp_path):
    rng = np.random.default_rng(9)
    w = _weights(rng, (3, 2))
    inner = _graph({"in": nir.Input(input_type={"input": np.array([3])}),
                    "n": nir.IF(r=np.ones(3), v_threshold=np.full(3, 0.5)),
                    "out": nir.Output(output_type={"output": np.array([3])})}, [("in", "n"), ("n", "out")])
    g = _chain([2], ("fc", nir.Linear(weight=w)), ("block", inner))
    x = _grid(rng, (2, 2))
    gt = _import(g, x, 3, tmp_path)
    assert _node(gt, "block.n").inputs == ["fc"]
    np.testing.assert_array_equal(_spikes(gt, "block.n"), lif(repeat(x @ w.T, 3), thr=0.5))


# ----------------------------------------------------------------------------- round trips and refusals

def _everything(rng) -> nir.NIRGraph:
    s4 = (2, 4, 4)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
        "conv": nir.Conv2d(input_shape=(4, 4), weight=_weights(rng, (2, 1, 3, 3)), stride=1, padding=1, dilation=1,
                           groups=1, bias=_weights(rng, 2)),
        "lif": nir.LIF(tau=np.full(s4, 2.0), r=np.ones(s4), v_leak=np.zeros(s4), v_threshold=np.full(s4, 0.5)),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "th": nir.Threshold(threshold=np.full((2, 2, 2), 0.25)),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=_weights(rng, (3, 8)), bias=_weights(rng, 3)),
        "cuba": nir.CubaLIF(tau_syn=np.full(3, 2.0), tau_mem=np.full(3, 2.0), r=np.ones(3), v_leak=np.zeros(3),
                            v_threshold=np.full(3, 0.25)),
        "d": nir.Delay(delay=np.full(3, DT)),
        "rec": nir.Linear(weight=_weights(rng, (3, 3))),
        "fc2": nir.Linear(weight=_weights(rng, (2, 3))),
        "li": nir.LI(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2)),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "pool"), ("pool", "th"), ("th", "flat"), ("flat", "fc"),
             ("fc", "cuba"), ("cuba", "d"), ("d", "rec"), ("rec", "cuba"), ("cuba", "fc2"), ("fc2", "li"),
             ("li", "output")]
    return _graph(nodes, edges)


def _same(a: GraphTrace, b: GraphTrace) -> None:
    assert [(n.name, n.op, n.inputs, n.params) for n in a.nodes] == [(n.name, n.op, n.inputs, n.params)
                                                                      for n in b.nodes]
    assert sorted(a.recorded) == sorted(b.recorded)
    for k in a.recorded:
        np.testing.assert_array_equal(a.recorded[k], b.recorded[k])
    assert sorted(a.arrays) == sorted(b.arrays)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    np.testing.assert_array_equal(a.input, b.input)


def test_round_trip_v2_nir_v2(tmp_path):
    rng = np.random.default_rng(10)
    x = _grid(rng, (3, 1, 4, 4))
    gt = _import(_everything(rng), x, 6, tmp_path)
    assert all(k in gt.recorded for k in ("spikes/lif", "spikes/th", "spikes/cuba"))
    write_nir(gt, tmp_path / "g.nir", data_path=tmp_path / "d.nir")
    from_data = workload_from_nir(tmp_path / "g.nir", spikes=tmp_path / "d.nir", dt=DT)
    _same(gt, from_data)
    simulated = workload_from_nir(tmp_path / "g.nir", inputs=gt.input, time_steps=6, dt=DT)
    _same(gt, simulated)


def test_v1_neurons_export_exactly_with_a_zero_reset(tmp_path):
    """snnsim.if (v >= threshold, zero reset, leak) written as IF/LIF, read back with its
    metadata stripped: the NIR neurons alone give the same spikes, ties included."""
    w = np.full((3, 2), 0.25)
    nodes = [Node("fc", "linear", ["input"], {"out_features": 3, "bias": False}),
             Node("n", "neuron", ["fc"], {"model": "snnsim.if", "threshold": 0.5, "leak": 0.0, "reset": "zero"}),
             Node("fc2", "linear", ["n"], {"out_features": 2, "bias": False}),
             Node("m", "neuron", ["fc2"], {"model": "snnsim.if", "threshold": 0.75, "leak": 0.25, "reset": "zero"})]
    arrays = {"weights/fc": w.astype(np.float32), "weights/fc2": np.full((2, 3), 0.5, np.float32)}
    x = np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]], np.float32)
    from snnsim.workload.forward import evaluate

    vals = evaluate(nodes, x, 6, arrays=arrays, keep=["n", "m"])
    assert vals["n"][0, 1].all()  # 0.25 + 0.25 = 0.5: fires on the tie (v >= threshold)
    from snnsim.workload.trace import pack_spikes

    gt = GraphTrace(nodes=nodes, input=x, recorded={f"spikes/{k}": pack_spikes(vals[k]) for k in "nm"},
                    arrays=arrays, time_steps=6)
    g = workload_to_nir(gt, dt=1e-3)
    assert type(g.nodes["n"]).__name__ == "IF" and type(g.nodes["m"]).__name__ == "LIF"
    for node in g.nodes.values():
        node.metadata = {}
    back = workload_from_nir(g, inputs=x, time_steps=6, dt=1e-3)
    assert _node(back, "n").params["model"] == "nir.lif"
    np.testing.assert_array_equal(_spikes(back, "n"), vals["n"])
    np.testing.assert_array_equal(_spikes(back, "m"), vals["m"])
    # with its metadata the exact node comes back
    again = workload_from_nir(workload_to_nir(gt, dt=1e-3), inputs=x, time_steps=6, dt=1e-3)
    assert _node(again, "m").params == nodes[3].params


def test_export_refuses_what_nir_cannot_express():
    x = np.zeros((1, 2), np.float32)
    base = [Node("fc", "linear", ["input"], {"out_features": 2, "bias": False})]
    arrays = {"weights/fc": np.eye(2, dtype=np.float32)}
    leaky = GraphTrace(base + [Node("n", "neuron", ["fc"], {"model": "snntorch.leaky", "beta": 0.5})], x, {},
                       arrays, 1)
    leaky.recorded = {"spikes/n": np.zeros((1, 1, 1), np.uint8)}
    with pytest.raises(WorkloadError) as e:
        workload_to_nir(leaky)
    assert e.value.key == "nodes.n" and "reset_delay" in e.value.suggestion
    sub = GraphTrace(base + [Node("n", "neuron", ["fc"], {"model": "snnsim.if", "reset": "subtract"})], x,
                     {"spikes/n": np.zeros((1, 1, 1), np.uint8)}, arrays, 1)
    with pytest.raises(WorkloadError, match="subtractive reset") as e:
        workload_to_nir(sub)
    assert "approximate" in e.value.suggestion
    g = workload_to_nir(sub, approximate=True)
    assert "approximate" in g.metadata["snnsim_notes"]
    back = workload_from_nir(g, inputs=x, time_steps=1)
    assert _node(back, "n").params["reset"] == "subtract"  # read back exactly from the metadata
    iand = GraphTrace([Node("a", "neuron", ["input"], {"model": "snnsim.if"}),
                       Node("b", "neuron", ["input"], {"model": "snnsim.if", "threshold": 0.5}),
                       Node("i", "iand", ["a", "b"])], x, {}, {}, 1)
    iand.recorded = {f"spikes/{k}": np.zeros((1, 1, 1), np.uint8) for k in "abi"}
    with pytest.raises(WorkloadError, match="IAND") as e:
        workload_to_nir(iand, approximate=True)
    assert e.value.key == "nodes.i"


def test_unsupported_primitive_names_the_node():
    g = _chain([2], ("fc", nir.Linear(weight=np.eye(2))),
               ("odd", nir.CubaLI(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))))
    with pytest.raises(WorkloadError) as e:
        workload_from_nir(g, inputs=np.zeros((1, 2)), time_steps=1)
    assert e.value.key == "nodes.odd" and "CubaLI" in str(e.value) and "Threshold" in str(e.value)
