"""snnsim.export.from_torch on tiny models: recorded spikes, graph, neuron mapping, errors.

Each test skips cleanly when torch, snnTorch or SpikingJelly is not installed.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from snnsim.errors import UsageError, WorkloadError
from snnsim.workload.trace import load_workload

T = 3


@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    t.manual_seed(0)
    return t


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
    wl = _export(net, x, T, model_name="tiny")
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
    by_hand = {"conv0": s0, "conv1": s1, "pool": sp}
    for name, steps in by_hand.items():
        want = torch.stack(steps, dim=1).numpy().astype(bool)
        np.testing.assert_array_equal(wl.spikes(name), want, err_msg=name)
    np.testing.assert_array_equal(wl.spikes("flatten"), wl.spikes("pool").reshape(3, T, -1))
    assert wl.spikes("conv0").any() and wl.spikes("conv1").any()
    np.testing.assert_allclose(wl.input, x.numpy())
    np.testing.assert_array_equal(wl.weight("conv1"), net.conv1.weight.detach().numpy())
    assert wl.model == "tiny" and wl.time_steps == T and wl.samples == 3


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

    wl = _export(_scale(Res(), torch), _images(torch), T)
    graph = [(la.name, la.op, la.inputs, la.out_shape) for la in wl.layers]
    assert graph == [
        ("c0", "conv2d", ["input"], (4, 4, 4)),
        ("c1", "conv2d", ["c0"], (4, 4, 4)),
        ("add", "add", ["c0", "c1"], (4, 4, 4)),
        ("gap", "avgpool", ["add"], (4, 1, 1)),
        ("flat", "flatten", ["gap"], (4,)),
        ("fc", "linear", ["flat"], (2,)),
    ]
    assert [la.neuron is not None for la in wl.layers] == [True, True, True, True, False, False]
    assert wl.layer("gap").kernel == (4, 4) and wl.layer("c1").padding == (1, 1)
    assert wl.layer("add").extra["modules"] == ["add", "na"]
    checks = wl.provenance["export"]["self_check"]
    assert set(checks) == {"c0", "c1", "add", "gap"}
    assert all(c["beyond_tolerance"] == 0 for c in checks.values())


def test_flatten_before_the_neuron_is_rewritten_exactly(torch, snn):
    nn = torch.nn
    net = _scale(nn.Sequential(nn.Conv2d(1, 2, 2, stride=2, bias=False), nn.Flatten(),
                               snn.Leaky(beta=1.0, init_hidden=True), nn.Linear(32, 2, bias=False)), torch)
    wl = _export(net, _images(torch), T)
    assert [(la.name, la.op, la.inputs) for la in wl.layers] == [
        ("0", "conv2d", ["input"]), ("1", "flatten", ["0"]), ("3", "linear", ["1"])]
    assert wl.layer("0").neuron is not None and wl.layer("1").neuron is None
    np.testing.assert_array_equal(wl.spikes("1"), wl.spikes("0").reshape(3, T, -1))


# ----------------------------------------------------------------------------- neurons

def test_snntorch_neuron_parameters(torch, snn):
    wl = _export(_snn_net(torch, snn, beta=0.75, reset="zero"), _images(torch), T)
    n0, n1 = wl.layer("conv0").neuron, wl.layer("conv1").neuron
    assert (n0.model, n0.leak, n0.reset) == ("LIF", 0.25, "zero")
    # snnTorch fires on mem > threshold: the next float32 above it is the same test for v >= theta
    assert n0.threshold == float(np.nextafter(np.float32(0.5), np.float32(np.inf)))
    assert (n1.model, n1.leak, n1.reset, n1.per_channel) == ("IF", 0.0, "subtract", False)
    assert wl.provenance["export"]["layers"]["conv0"]["neuron"]["source"] == "snntorch.Leaky"


def test_snntorch_subtract_with_leak_is_flagged_not_exact(torch, snn):
    net = _snn_net(torch, snn, beta=0.5, reset="subtract")
    with pytest.warns(UserWarning, match="subtracts the threshold after the decay"):
        wl = _export(net, _images(torch), 6)
    entry = wl.provenance["export"]["layers"]["conv0"]["neuron"]
    assert entry["exact"] is False
    check = wl.provenance["export"]["self_check"]["conv0"]
    assert check["trains_differing"] == check["within_tolerance"] + check["beyond_tolerance"]


def test_snntorch_synaptic(torch, snn):
    nn = torch.nn
    ok = _scale(nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=False),
                              snn.Synaptic(alpha=0.0, beta=1.0, init_hidden=True)), torch)
    wl = _export(ok, _images(torch), T)
    assert wl.layer("0").neuron.model == "IF"
    bad = nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=False), snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True))
    with pytest.raises(WorkloadError, match="synaptic-current state"):
        _export(bad, _images(torch), T)


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
    for la in s.layers:
        if la.spiking:
            np.testing.assert_array_equal(s.spikes(la.name), m.spikes(la.name), err_msg=la.name)
    lif, if_ = s.layer("0").neuron, s.layer("2").neuron
    # decay_input: H = V + (X - V) / tau, so leak 1/tau and threshold * tau in units of X
    assert (lif.model, lif.leak, lif.reset, lif.threshold) == ("LIF", 0.25, "subtract", 4.0)
    assert (if_.model, if_.leak, if_.reset, if_.threshold) == ("IF", 0.0, "zero", 0.5)
    assert all(c["beyond_tolerance"] == 0 for c in s.provenance["export"]["self_check"].values())


def test_spikingjelly_other_reset_voltage_is_refused(torch, sj):
    neuron, layer, _ = sj
    net = torch.nn.Sequential(layer.Conv2d(1, 2, 2, 2, bias=False), neuron.IFNode(v_reset=-0.5))
    with pytest.raises(WorkloadError, match="resets to -0.5"):
        _export(net, _images(torch), T)


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
        wl = _export(net, _images(torch), T, spiking=spiking)
        n = wl.layer("0").neuron
        assert (n.model, n.threshold, n.reset) == ("IF", pytest.approx(0.7), "zero")
        assert wl.provenance["export"]["self_check"]["0"]["trains_differing"] == 0
    with pytest.raises(WorkloadError, match="MyIF|spiking"):
        _export(net, _images(torch), T)  # not named: fx traces into it and meets its comparison


def test_batch_norm_folds_into_per_channel_thresholds(torch, snn):
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 3, 2, 2, bias=False), nn.BatchNorm2d(3),
                        snn.Leaky(beta=1.0, threshold=1.0, init_hidden=True))
    _scale(net, torch)
    bn = net[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 0.5, -1.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]) - bn.eps)
        bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.3]))
        bn.bias.copy_(bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps))  # no shift
    wl = _export(net, _images(torch), T)
    layer = wl.layer("0")
    assert layer.neuron.per_channel
    sigma_over_gamma = np.array([2.0 / 2.0, 1.0 / 0.5, 0.5 / 1.0])
    np.testing.assert_allclose(wl.thresholds["0"], sigma_over_gamma, rtol=1e-6)
    w = net[0].weight.detach().numpy()
    np.testing.assert_allclose(wl.weight("0")[:2], w[:2])
    np.testing.assert_allclose(wl.weight("0")[2], -w[2])  # gamma < 0: the channel's weights negated
    check = wl.provenance["export"]["self_check"]["0"]
    assert check["beyond_tolerance"] == 0
    with torch.no_grad():
        bn.bias.add_(0.1)  # now a shift per step: not foldable over T > 1 ...
    with pytest.raises(WorkloadError, match="constant current"):
        _export(net, _images(torch), T)
    wl1 = _export(net, _images(torch), 1)  # ... but exactly foldable for one step
    assert wl1.provenance["export"]["self_check"]["0"]["trains_differing"] == 0


# ----------------------------------------------------------------------------- files

def test_round_trip_through_save_and_load(torch, snn, tmp_path):
    path = tmp_path / "t.npz"
    wl = _export(_snn_net(torch, snn), _images(torch), T, path, dataset="random", weight_bits=4)
    back = load_workload(path)
    assert [la.as_dict() for la in back.layers] == [la.as_dict() for la in wl.layers]
    assert back.dataset == "random" and back.layer("conv0").weight_bits == 4
    for la in wl.layers:
        if la.spiking:
            np.testing.assert_array_equal(back.spikes(la.name), wl.spikes(la.name))
        if la.weight_shape:
            np.testing.assert_array_equal(back.weight(la.name), wl.weight(la.name))
    assert back.provenance["generator"] == "snnsim.export.from_torch"
    assert wl.source == str(path)


def test_weight_bits_detected_from_the_grid(torch, snn):
    net = _snn_net(torch, snn)
    with torch.no_grad():
        net.conv1.weight.copy_(torch.sign(net.conv1.weight) * 0.5)  # +-alpha: binary
        w = net.conv0.weight
        alpha = w.abs().amax(dim=(1, 2, 3), keepdim=True)
        w.copy_(torch.round(w / alpha * 7) * alpha / 7)  # 4-bit sign-magnitude
    wl = _export(net, _images(torch), T)
    assert (wl.layer("conv0").weight_bits, wl.layer("conv1").weight_bits, wl.layer("fc").weight_bits) == (4, 1, 16)
    with pytest.raises(UsageError, match="weight_bits"):
        _export(net, _images(torch), T, weight_bits={"conv9": 4})


@pytest.mark.parametrize("case", ["pool_current", "relu", "add_current", "bias", "two_neurons"])
def test_unsupported_models_raise_and_write_nothing(torch, snn, tmp_path, case):
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
                         "pools the currents of layer '0'"),
        "relu": (nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=False), nn.ReLU(), lif()), "unsupported module '1'"),
        "add_current": (AddCurrents(), "adds currents"),
        "bias": (nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=True), lif()), "constant current"),
        "two_neurons": (nn.Sequential(nn.Conv2d(1, 2, 2, 2, bias=False), lif(), lif()), "two spiking modules"),
    }
    model, message = models[case]
    path = tmp_path / "out.npz"
    with pytest.raises(WorkloadError, match=message) as e:
        _export(model, _images(torch), T, path)
    assert "expected" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_usage_errors(torch, snn):
    net = _snn_net(torch, snn)
    with pytest.raises(UsageError, match="out of range"):
        _export(net, _images(torch) * 2, T)
    with pytest.raises(UsageError, match="wrong shape"):
        _export(net, torch.rand(2, 8, 8), T)  # neither (samples, F) nor (samples, C, H, W)
    with pytest.raises(UsageError, match="time_steps"):
        _export(net, _images(torch), 0)
    with pytest.raises(UsageError, match="module 'conv0'"):
        _export(net, _images(torch, c=3), T)  # the model wants 1 channel


def test_sequential_fallback_gives_the_same_trace(torch, snn, monkeypatch):
    from snnsim.export import torch as exporter

    nn = torch.nn
    net = _scale(nn.Sequential(nn.Conv2d(1, 3, 2, 2, bias=False), snn.Leaky(beta=1.0, init_hidden=True),
                               nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2, bias=False)), torch)
    x = _images(torch)
    traced = _export(net, x, T)

    def untraceable(*_a, **_k):
        raise exporter._TraceFailed("no fx")

    monkeypatch.setattr(exporter, "_fx_ops", untraceable)
    fallback = _export(net, x, T)
    assert fallback.provenance["export"]["graph"] == "nn.Sequential call order"
    assert [la.as_dict() for la in fallback.layers] == [la.as_dict() for la in traced.layers]
    for la in traced.layers:
        if la.spiking:
            np.testing.assert_array_equal(fallback.spikes(la.name), traced.spikes(la.name))


# ----------------------------------------------------------------------------- the simulator

def test_exported_snntorch_trace_runs_through_simulate(torch, snn):
    from snnsim import load_hardware, simulate

    wl = _export(_snn_net(torch, snn), _images(torch), T, weight_bits=4)
    hw = load_hardware({
        "name": "tiny-p2m-export",
        "sensor": {"kind": "p2m", "pixel_rows": 8, "pixel_cols": 8, "photodiodes_per_pixel": 1,
                   "p2m": {"kernel": 2, "stride": 2, "out_channels": 4, "weight_bits": 4}},
        "link": {"lanes": 1},
        "core": {"vector_width": 8, "weight_bits": 4},
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = simulate(hw, wl)
    # the sensor sends conv0's spike map: 4 channels x 4 x 4 bits per step
    assert report.summary["bandwidth"]["payload_bits_per_frame"] == 4 * 4 * 4 * T
    assert report.summary["energy"]["total_pj_per_frame"] > 0


def test_a_model_straight_after_a_training_step_exports(torch, snn, tmp_path):
    """snnTorch neurons then hold hidden state with autograd history, which deep copies refuse:
    the export copies it detached and leaves the user's model as it was."""
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 2, stride=2, bias=False), snn.Leaky(beta=0.5, init_hidden=True),
                              torch.nn.Flatten(), torch.nn.Linear(256, 3, bias=False))
    x = torch.rand(2, 1, 16, 16)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(x).sum().backward()
    opt.step()
    net(x)  # the neuron's membrane now has a grad_fn
    assert not net[1].mem.is_leaf
    before = [p.detach().clone() for p in net.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(net, x.numpy(), time_steps=2, path=tmp_path / "t.npz")
    assert load_workload(tmp_path / "t.npz").time_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
