"""snnsim.export.from_torch on tiny models: recorded spikes, graph, neuron mapping, errors.

Format v2 holds what v1 refused (biases, batch-norm shifts, pooling of currents, adds of
currents, leaky subtract resets, Synaptic, other reset voltages): those tests now check that
they export exactly. Each test skips cleanly when torch, snnTorch or SpikingJelly is missing.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from snnsim.errors import UsageError, WorkloadError
from snnsim.workload.graphtrace import load_graph_trace

T = 3


@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    t.manual_seed(0)
    n = t.get_num_threads()
    t.set_num_threads(1)  # tiny models: threads only contend
    yield t
    t.set_num_threads(n)


@pytest.fixture
def snn(torch):
    return pytest.importorskip("snntorch")


@pytest.fixture
def sj(torch):
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    layer = pytest.importorskip("spikingjelly.activation_based.layer")
    functional = pytest.importorskip("spikingjelly.activation_based.functional")
    return neuron, layer, functional


def _export(*args, **kwargs):
    from snnsim.export import from_torch

    return from_torch(*args, **kwargs)


def _scale(model, torch, k=3.0):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(k)
    return model


def _node(gt, name):
    return next(n for n in gt.nodes if n.name == name)


def _spikes(gt, name):
    """The recorded spikes of a node as (samples, T, *shape) bool."""
    n = _node(gt, name)
    bits = np.unpackbits(gt.recorded[f"spikes/{name}"], axis=-1)[..., :n.size]
    return bits.reshape(gt.samples, gt.time_steps, *n.out_shape).astype(bool)


def _checks_clean(gt):
    checks = gt.provenance["export"]["self_check"]
    assert checks and all(c["trains_differing"] == 0 for c in checks.values())
    return checks


def _images(torch, n=3, c=1, size=8):
    return torch.rand(n, c, size, size)


def _snn_net(torch, snn, beta=1.0, reset="subtract"):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0 = nn.Conv2d(1, 4, 2, stride=2, bias=False)
            self.lif0 = snn.Leaky(beta=beta, threshold=0.5, reset_mechanism=reset, init_hidden=True)
            self.conv1 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
            self.lif1 = snn.Leaky(beta=1.0, init_hidden=True)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(6 * 2 * 2, 3, bias=False)

        def forward(self, x):
            s0 = self.lif0(self.conv0(x))
            s1 = self.lif1(self.conv1(s0))
            return self.fc(torch.flatten(self.pool(s1), 1))

    return _scale(Net(), torch)


# ----------------------------------------------------------------------------- without torch

def test_missing_torch_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(UsageError, match="PyTorch") as e:
        _export(object(), np.zeros((1, 1, 4, 4), np.float32), 2)
    assert 'pip install "snnsim[torch]"' in str(e.value)


# ----------------------------------------------------------------------------- recording

def test_hooks_record_exactly_the_models_spikes(torch, snn):
    net = _snn_net(torch, snn, beta=0.75, reset="zero")
    x = _images(torch)
    gt = _export(net, x, T, model_name="tiny")
    # the same model by hand, step by step, from reset states
    for m in (net.lif0, net.lif1):
        m.reset_mem()
    s0, s1, sp = [], [], []
    with torch.no_grad():
        for _ in range(T):
            a = net.lif0(net.conv0(x))
            b = net.lif1(net.conv1(a))
            s0.append(a)
            s1.append(b)
            sp.append(net.pool(b))
    by_hand = {"lif0": s0, "lif1": s1, "pool": sp}
    for name, steps in by_hand.items():
        want = torch.stack(steps, dim=1).numpy().astype(bool)
        np.testing.assert_array_equal(_spikes(gt, name), want, err_msg=name)
    assert set(gt.recorded) == {"spikes/lif0", "spikes/lif1", "spikes/pool"}  # the flatten is fc's fan-out
    assert _spikes(gt, "lif0").any() and _spikes(gt, "lif1").any()
    np.testing.assert_allclose(gt.input, x.numpy())
    np.testing.assert_array_equal(gt.arrays["weights/conv1"], net.conv1.weight.detach().numpy())
    assert gt.model == "tiny" and gt.time_steps == T and gt.samples == 3


def test_graph_shapes_and_edges_with_a_residual_add(torch, snn):
    nn = torch.nn

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv2d(1, 4, 2, stride=2, bias=False)
            self.n0 = snn.Leaky(beta=1.0, init_hidden=True)
            self.c1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.n1 = snn.Leaky(beta=1.0, init_hidden=True)
            self.na = snn.Leaky(beta=1.0, init_hidden=True)
            self.gap = nn.AvgPool2d(4)
            self.ng = snn.Leaky(beta=1.0, threshold=0.3, init_hidden=True)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(4, 2, bias=False)

        def forward(self, x):
            a = self.n0(self.c0(x))
            y = self.na(a + self.n1(self.c1(a)))
            return self.fc(self.flat(self.ng(self.gap(y))))

    gt = _export(_scale(Res(), torch), _images(torch), T)
    graph = [(n.name, n.op, n.inputs, n.out_shape, n.kind) for n in gt.nodes]
    assert graph == [
        ("c0", "conv2d", ["input"], (4, 4, 4), "current"),
        ("n0", "neuron", ["c0"], (4, 4, 4), "spikes"),
        ("c1", "conv2d", ["n0"], (4, 4, 4), "current"),
        ("n1", "neuron", ["c1"], (4, 4, 4), "spikes"),
        ("add", "add", ["n0", "n1"], (4, 4, 4), "events"),
        ("na", "neuron", ["add"], (4, 4, 4), "spikes"),
        ("gap", "avgpool", ["na"], (4, 1, 1), "current"),
        ("ng", "neuron", ["gap"], (4, 1, 1), "spikes"),
        ("flat", "flatten", ["ng"], (4,), "spikes"),
        ("fc", "linear", ["flat"], (2,), "current"),
    ]
    assert _node(gt, "gap").params["kernel"] == [4, 4] and _node(gt, "c1").params["padding"] == [1, 1]
    assert set(_checks_clean(gt)) == {"n0", "n1", "na", "ng"}
    assert "events/add" not in gt.recorded  # one layer (na) reads the sum: part of its fan-out


def test_flatten_before_the_neuron_is_its_own_node(torch, snn):
    nn = torch.nn
    net = _scale(nn.Sequential(nn.Conv2d(1, 2, 2, stride=2, bias=False), nn.Flatten(),
                               snn.Leaky(beta=1.0, init_hidden=True), nn.Linear(32, 2, bias=False)), torch)
    gt = _export(net, _images(torch), T)
    assert [(n.name, n.op, n.inputs, n.kind) for n in gt.nodes] == [
        ("0", "conv2d", ["input"], "current"), ("1", "flatten", ["0"], "current"), ("2", "neuron", ["1"], "spikes"),
        ("3", "linear", ["2"], "current")]
    assert _spikes(gt, "2").shape == (3, T, 32)


# ----------------------------------------------------------------------------- neurons

def test_snntorch_neuron_parameters(torch, snn):
    gt = _export(_snn_net(torch, snn, beta=0.75, reset="zero"), _images(torch), T)
    p0, p1 = _node(gt, "lif0").params, _node(gt, "lif1").params
    assert p0 == {"model": "snntorch.leaky", "beta": 0.75, "threshold": 0.5, "reset": "zero", "reset_delay": True}
    assert (p1["beta"], p1["threshold"], p1["reset"]) == (1.0, 1.0, "subtract")
    assert gt.provenance["export"]["nodes"]["lif0"]["neuron"]["source"] == "snntorch.Leaky"


def test_snntorch_subtract_with_leak_is_exact_now(torch, snn):
    gt = _export(_snn_net(torch, snn, beta=0.5, reset="subtract"), _images(torch), 6)
    checks = _checks_clean(gt)
    assert checks["lif0"]["neurons"] == 3 * 4 * 4 * 4


def test_snntorch_synaptic_with_a_current_state_exports(torch, snn):
    nn = torch.nn
    net = _scale(nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=False),
                               snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True)), torch)
    gt = _export(net, _images(torch), T)
    assert _node(gt, "1").params["model"] == "snntorch.synaptic" and _node(gt, "1").params["alpha"] == 0.5
    _checks_clean(gt)


def test_spikingjelly_single_and_multi_step(torch, sj):
    neuron, layer, functional = sj
    nn = torch.nn

    def net():
        torch.manual_seed(1)
        return _scale(nn.Sequential(
            layer.Conv2d(1, 4, 2, stride=2, bias=False), neuron.LIFNode(tau=4.0, v_reset=None),
            layer.Conv2d(4, 4, 3, padding=1, bias=False), neuron.IFNode(v_reset=0.0, v_threshold=0.5),
            layer.MaxPool2d(2), layer.Flatten(), layer.Linear(16, 2, bias=False)), torch)

    x = _images(torch)
    out = {}
    for mode in ("s", "m"):
        m = net()
        functional.set_step_mode(m, mode)
        out[mode] = _export(m, x, T)
    s, m = out["s"], out["m"]
    assert s.provenance["export"]["step_mode"] == "s" and m.provenance["export"]["step_mode"] == "m"
    assert set(s.recorded) == set(m.recorded) == {"spikes/1", "spikes/3", "spikes/4"}
    for name in ("1", "3", "4"):
        np.testing.assert_array_equal(_spikes(s, name), _spikes(m, name), err_msg=name)
    assert _node(s, "1").params == {"model": "spikingjelly.lif", "v_threshold": 1.0, "v_reset": None, "tau": 4.0,
                                    "decay_input": True}
    assert _node(s, "3").params == {"model": "spikingjelly.if", "v_threshold": 0.5, "v_reset": 0.0}
    _checks_clean(s)


def test_spikingjelly_other_reset_voltage_exports(torch, sj):
    neuron, layer, _ = sj
    net = _scale(torch.nn.Sequential(layer.Conv2d(1, 2, 2, 2, bias=False), neuron.IFNode(v_reset=-0.5)), torch)
    gt = _export(net, _images(torch), T)
    assert _node(gt, "1").params["v_reset"] == -0.5
    _checks_clean(gt)


def test_plain_pytorch_neuron_named_by_class_or_test(torch):
    nn = torch.nn

    class MyIF(nn.Module):  # a plain PyTorch neuron: threshold and state as attributes
        def __init__(self, threshold=0.7):
            super().__init__()
            self.threshold = threshold
            self.reset_mechanism = "zero"
            self.v = None

        def reset(self):
            self.v = None

        def forward(self, x):
            v = x if self.v is None else self.v + x
            s = (v >= self.threshold).float()
            self.v = v * (1 - s)
            return s

    net = _scale(nn.Sequential(nn.Conv2d(1, 3, 2, 2, bias=False), MyIF(), nn.Flatten(),
                               nn.Linear(48, 2, bias=False)), torch)
    for spiking in ((MyIF,), lambda m: isinstance(m, MyIF)):
        gt = _export(net, _images(torch), T, spiking=spiking)
        p = _node(gt, "1").params
        assert (p["model"], p["threshold"], p["reset"]) == ("snnsim.if", pytest.approx(0.7), "zero")
        _checks_clean(gt)
    with pytest.raises(WorkloadError, match="MyIF|spiking"):
        _export(net, _images(torch), T)  # not named: fx traces into it and meets its comparison


def test_batch_norm_is_an_affine_and_its_shift_exports(torch, snn):
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 3, 2, 2, bias=False), nn.BatchNorm2d(3),
                        snn.Leaky(beta=1.0, threshold=1.0, init_hidden=True))
    _scale(net, torch)
    bn = net[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 0.5, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]) - bn.eps)
        bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.3]))
        bn.bias.copy_(torch.tensor([0.1, 0.0, -0.2]))
    gt = _export(net, _images(torch), T)
    assert [n.op for n in gt.nodes] == ["conv2d", "affine", "neuron"]
    np.testing.assert_allclose(gt.arrays["scale/1"], [1.0, 0.5, -2.0], rtol=1e-6)
    np.testing.assert_allclose(gt.arrays["shift/1"], [0.1 - 0.2 * 1.0, 0.0 + 0.1 * 0.5, -0.2 - 0.3 * -2.0], rtol=1e-6)
    np.testing.assert_array_equal(gt.arrays["weights/0"], net[0].weight.detach().numpy())  # never folded
    _checks_clean(gt)


# ----------------------------------------------------------------------------- files

def test_round_trip_through_save_and_load(torch, snn, tmp_path):
    path = tmp_path / "t.npz"
    gt = _export(_snn_net(torch, snn), _images(torch), T, path, dataset="random", weight_bits=4)
    back = load_graph_trace(path)
    assert [(n.name, n.op, n.inputs, n.params) for n in back.nodes] == [
        (n.name, n.op, n.inputs, n.params) for n in gt.nodes]
    assert back.dataset == "random" and _node(back, "conv0").params["weight_bits"] == 4
    for k, a in gt.recorded.items():
        np.testing.assert_array_equal(back.recorded[k], a)
    for k, a in gt.arrays.items():
        np.testing.assert_array_equal(back.arrays[k], a)
    assert back.provenance["generator"] == "snnsim.export.from_torch"
    assert gt.source == str(path)


def test_weight_bits_detected_from_the_grid(torch, snn):
    net = _snn_net(torch, snn)
    with torch.no_grad():
        net.conv1.weight.copy_(torch.sign(net.conv1.weight) * 0.5)  # +-alpha: binary
        w = net.conv0.weight
        alpha = w.abs().amax(dim=(1, 2, 3), keepdim=True)
        w.copy_(torch.round(w / alpha * 7) * alpha / 7)  # 4-bit sign-magnitude
    gt = _export(net, _images(torch), T)
    assert [_node(gt, k).params["weight_bits"] for k in ("conv0", "conv1", "fc")] == [4, 1, 16]
    gt = _export(net, _images(torch), T, weight_bits={"fc": 8})
    assert _node(gt, "fc").params["weight_bits"] == 8
    with pytest.raises(UsageError, match="weight_bits"):
        _export(net, _images(torch), T, weight_bits={"conv9": 4})


@pytest.mark.parametrize("case", ["pool_current", "add_current", "bias", "two_neurons"])
def test_what_format_v1_refused_now_exports(torch, snn, tmp_path, case):
    nn = torch.nn

    def lif():
        return snn.Leaky(beta=1.0, init_hidden=True)

    class AddCurrents(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 2, 2, bias=False)
            self.b = nn.Conv2d(1, 2, 2, 2, bias=False)
            self.n = lif()

        def forward(self, x):
            return self.n(self.a(x) + self.b(x))

    models = {
        "pool_current": (nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=False), nn.MaxPool2d(2), lif()),
                         ["conv2d", "maxpool", "neuron"]),
        "add_current": (AddCurrents(), ["conv2d", "conv2d", "add", "neuron"]),
        "bias": (nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=True), lif()), ["conv2d", "neuron"]),
        "two_neurons": (nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=False), lif(), lif()),
                        ["conv2d", "neuron", "neuron"]),
    }
    model, ops = models[case]
    _scale(model, torch)
    gt = _export(model, _images(torch), T, tmp_path / "out.npz")
    assert [n.op for n in gt.nodes] == ops
    _checks_clean(load_graph_trace(tmp_path / "out.npz"))


def test_unsupported_modules_raise_and_write_nothing(torch, snn, tmp_path):
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=False), nn.ReLU(), snn.Leaky(beta=1.0, init_hidden=True))
    path = tmp_path / "out.npz"
    with pytest.raises(WorkloadError, match="unsupported module '1'") as e:
        _export(model, _images(torch), T, path)
    assert "expected" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_usage_errors(torch, snn):
    net = _snn_net(torch, snn)
    with pytest.raises(UsageError, match="out of range"):
        _export(net, _images(torch) * 2, T)
    with pytest.raises(UsageError, match="wrong shape"):
        _export(net, torch.rand(8), T)  # not one frame per sample
    with pytest.raises(UsageError, match="time_steps"):
        _export(net, _images(torch), 0)
    with pytest.raises(UsageError, match="module 'conv0'"):
        _export(net, _images(torch, c=3), T)  # the model wants 1 channel
    with pytest.raises(UsageError, match="on_mismatch"):
        _export(net, _images(torch), T, on_mismatch="ignore")


def test_sequential_fallback_gives_the_same_trace(torch, snn, monkeypatch):
    from snnsim.export import capture
    from snnsim.export import torch as exporter

    nn = torch.nn
    net = _scale(nn.Sequential(nn.Conv2d(1, 3, 2, 2, bias=False), snn.Leaky(beta=1.0, init_hidden=True),
                               nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2, bias=False)), torch)
    x = _images(torch)
    traced = _export(net, x, T)

    def untraceable(*_a, **_k):
        raise capture.TraceFailed("no fx")

    monkeypatch.setattr(exporter, "capture_fx", untraceable)
    fallback = _export(net, x, T)
    assert fallback.provenance["export"]["graph"] == "nn.Sequential call order"
    assert [(n.name, n.op, n.inputs, n.params) for n in fallback.nodes] == [
        (n.name, n.op, n.inputs, n.params) for n in traced.nodes]
    assert set(fallback.recorded) == set(traced.recorded) == {"spikes/1", "spikes/2"}
    for k in traced.recorded:
        np.testing.assert_array_equal(fallback.recorded[k], traced.recorded[k])


def test_a_model_straight_after_a_training_step_exports(torch, snn, tmp_path):
    """snnTorch neurons then hold hidden state with autograd history, which deep copies refuse:
    the export copies it detached and leaves the user's model as it was."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 2, stride=2, bias=False), snn.Leaky(beta=0.5, init_hidden=True),
                              torch.nn.Flatten(), torch.nn.Linear(256, 3, bias=False))
    x = torch.rand(2, 1, 16, 16)
    net(x).sum().backward()
    with torch.no_grad():
        for p in net.parameters():
            p.sub_(0.1 * p.grad)
    net(x)  # the neuron's membrane now has a grad_fn
    assert not net[1].mem.is_leaf
    before = [p.detach().clone() for p in net.parameters()]
    _export(net, x.numpy(), time_steps=2, path=tmp_path / "t.npz")
    assert load_graph_trace(tmp_path / "t.npz").time_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
