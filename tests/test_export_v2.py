"""snnsim.export.from_torch writes format v2 traces of the models people train.

Every model is trained for a couple of optimizer steps on random data (so biases and batch-norm
statistics are not zero), exported, reloaded with load_graph_trace, and its recorded spikes are
compared with the framework's own forward pass, recorded here by forward hooks on the user's
model (not by the exporter's machinery).
"""

from __future__ import annotations

import numpy as np
import pytest
from snnsim.errors import UsageError, WorkloadError
from snnsim.workload.graphtrace import load_graph_trace

torch = pytest.importorskip("torch")
nn = torch.nn
T = 4


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is ~50x faster than several contending for a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def snn():
    return pytest.importorskip("snntorch")


@pytest.fixture
def sj():
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    layer = pytest.importorskip("spikingjelly.activation_based.layer")
    functional = pytest.importorskip("spikingjelly.activation_based.functional")
    return neuron, layer, functional


def _export(*args, **kwargs):
    from snnsim.export import from_torch

    return from_torch(*args, **kwargs)


def _is_neuron(m) -> bool:
    mod = type(m).__module__
    return (mod.startswith("snntorch") and hasattr(m, "reset_mem")) or (
        mod.startswith("spikingjelly") and "neuron" in mod) or hasattr(m, "snnsim_neuron")


def _reset(model) -> None:
    for m in model.modules():
        if _is_neuron(m):
            (getattr(m, "reset_mem", None) or m.reset)()


def _run(model, x, steps=T, multi=False):
    """The model's own output over ``steps`` (direct encoding), from reset neurons."""
    _reset(model)
    if multi:
        return model(x.unsqueeze(0).repeat(steps, *([1] * x.dim())))
    outs = [model(x) for _ in range(steps)]
    first = outs[0][0] if isinstance(outs[0], tuple) else outs[0]
    return sum(o[0] if isinstance(o, tuple) else o for o in outs[1:]) + first


def _train(model, x, steps=T, multi=False, iters=2):
    """A couple of optimizer steps on random targets (biases and batch-norm statistics move)."""
    torch.manual_seed(1)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    for _ in range(iters):  # plain gradient steps (torch.optim's first use imports its compiler: seconds)
        for p in params:
            p.grad = None
        out = _run(model, x, steps, multi).float()
        loss = ((out - torch.rand_like(out)) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.sub_(0.05 * p.grad.sign())
    model.eval()
    return model


def _framework_spikes(model, x, steps=T, multi=False, repeats=False):
    """{module name: (samples, T, *shape) bool} of every neuron module, by hooks on the model."""
    got: dict[str, list] = {}
    handles = []
    for name, m in model.named_modules():
        if _is_neuron(m):
            def hook(_m, _i, out, name=name):
                s = out[0] if isinstance(out, tuple) else out
                got.setdefault(name, []).append(s.detach().clone())
            handles.append(m.register_forward_hook(hook))
    _reset(model)
    try:
        with torch.no_grad():
            if repeats:
                model(x)
            else:
                _run(model, x, steps, multi)
    finally:
        for h in handles:
            h.remove()
        _reset(model)
    out = {}
    for name, items in got.items():
        if multi or repeats:
            (a,) = items
            a = a.transpose(0, 1)
        else:
            a = torch.stack(items, dim=1)
        out[name] = a.numpy().astype(bool)
    return out


def _unpack(gt, name):
    node = next(n for n in gt.nodes if n.name == name)
    bits = np.unpackbits(gt.recorded[f"spikes/{name}"], axis=-1)[..., :node.size]
    return bits.reshape(gt.samples, gt.time_steps, *node.out_shape).astype(bool)


def _roundtrip(model, x, tmp_path, steps=T, multi=False, repeats=False, **kw):
    """Export, reload, and check every neuron's spikes against the framework's; the trace."""
    path = tmp_path / "trace.npz"
    _export(model, x, steps, path, **kw)
    gt = load_graph_trace(path)
    want = _framework_spikes(model, x, steps, multi, repeats)
    assert want, "the model has neurons"
    for name, spikes in want.items():
        np.testing.assert_array_equal(_unpack(gt, name), spikes, err_msg=name)
    fired = [s.mean() for s in want.values()]
    assert max(fired) > 0, "some neuron fires"
    assert all(c["trains_differing"] == 0 for c in gt.provenance["export"]["self_check"].values())
    return gt


def _graph(gt):
    return [(n.name, n.op, n.inputs) for n in gt.nodes]


def _images(n=3, c=1, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g)


# ----------------------------------------------------------------------------- snnTorch

def test_snntorch_tutorial_cnn_with_biases(snn, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True),
                        nn.Conv2d(8, 16, 3), nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True),
                        nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
                        snn.Leaky(beta=0.9, init_hidden=True, output=True))
    x = _images(4, size=16)
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path)
    assert _graph(gt) == [("0", "conv2d", ["input"]), ("1", "maxpool", ["0"]), ("2", "neuron", ["1"]),
                          ("3", "conv2d", ["2"]), ("4", "maxpool", ["3"]), ("5", "neuron", ["4"]),
                          ("6", "flatten", ["5"]), ("7", "linear", ["6"]), ("8", "neuron", ["7"])]
    for i in ("0", "3", "7"):
        np.testing.assert_array_equal(gt.arrays[f"bias/{i}"], net[int(i)].bias.detach().numpy())
        np.testing.assert_array_equal(gt.arrays[f"weights/{i}"], net[int(i)].weight.detach().numpy())
        assert np.any(gt.arrays[f"bias/{i}"] != 0)
    n2 = gt.nodes[2].params
    assert (n2["model"], n2["reset"], n2["reset_delay"]) == ("snntorch.leaky", "subtract", True)
    assert np.float32(n2["beta"]) == np.float32(0.9)
    assert set(gt.recorded) == {"spikes/2", "spikes/5", "spikes/8"}


def test_conv_batchnorm_leaky(snn, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), snn.Leaky(beta=0.8, init_hidden=True),
                        nn.Flatten(), nn.Linear(4 * 64, 3))
    x = _images()
    _train(net, x)
    bn = net[1]
    assert torch.any(bn.running_mean != 0) and torch.any(bn.bias != 0)
    gt = _roundtrip(net, x, tmp_path)
    assert [n.op for n in gt.nodes] == ["conv2d", "affine", "neuron", "flatten", "linear"]
    # the affine's constants are torch's own: x * scale + shift, rounded once, is bn(x) bit for bit
    z = torch.randn(5, 4, 6, 6)
    with torch.no_grad():
        want = bn(z).numpy()
    scale, shift = gt.arrays["scale/1"].reshape(1, 4, 1, 1), gt.arrays["shift/1"].reshape(1, 4, 1, 1)
    got = (z.numpy().astype(np.float64) * scale + shift).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    gamma_over_sigma = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    np.testing.assert_allclose(gt.arrays["scale/1"], gamma_over_sigma, rtol=1e-6)


def test_graph_check_and_extra_provenance(snn, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), snn.Leaky(beta=0.9, init_hidden=True))
    x = _images()
    _train(net, x)
    gt = _export(net, x, T, tmp_path / "t.npz", provenance={"trained": {"epochs": 2}}, model_name="m",
                 dataset="random")
    back = load_graph_trace(tmp_path / "t.npz")
    assert back.provenance["trained"] == {"epochs": 2} and (back.model, back.dataset) == ("m", "random")
    # the current into the neuron, recomputed by the v2 graph's ops, is torch's to float rounding
    assert gt.provenance["export"]["graph_check"]["1"] < 1e-5


def test_synaptic(snn, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), snn.Synaptic(alpha=0.7, beta=0.85, init_hidden=True),
                        nn.Linear(12, 3))
    x = _images()
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path)
    p = gt.nodes[2].params
    assert p["model"] == "snntorch.synaptic" and np.float32(p["alpha"]) == np.float32(0.7)
    assert [n.op for n in gt.nodes] == ["flatten", "linear", "neuron", "linear"]


@pytest.mark.parametrize("all_to_all", [True, False])
def test_rleaky_is_a_neuron_with_its_delayed_recurrent_input(snn, tmp_path, all_to_all):
    torch.manual_seed(0)
    lif = (snn.RLeaky(beta=0.9, linear_features=10, init_hidden=True) if all_to_all else
           snn.RLeaky(beta=0.9, V=0.4, all_to_all=False, init_hidden=True))
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), lif, nn.Linear(10, 2))
    x = _images()
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path, steps=6)
    rec = "2.recurrent"
    assert ("2", "neuron", ["1", rec]) in _graph(gt)
    assert ("2.delay", "delay", ["2"]) in _graph(gt)
    if all_to_all:
        assert (rec, "linear", ["2.delay"]) in _graph(gt)
        np.testing.assert_array_equal(gt.arrays[f"weights/{rec}"], lif.recurrent.weight.detach().numpy())
        np.testing.assert_array_equal(gt.arrays[f"bias/{rec}"], lif.recurrent.bias.detach().numpy())
    else:
        assert (rec, "scale", ["2.delay"]) in _graph(gt)
        np.testing.assert_array_equal(gt.arrays[f"scale/{rec}"], np.full(10, lif.V.item(), np.float32))
    assert gt.provenance["export"]["self_check"]["2"]["recurrent_wired"]
    assert gt.provenance["export"]["self_check"]["2"]["recurrent_max_abs_diff"] < 1e-5


def test_rsynaptic(snn, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10),
                        snn.RSynaptic(alpha=0.6, beta=0.9, linear_features=10, init_hidden=True), nn.Linear(10, 2))
    x = _images()
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path, steps=6)
    assert gt.nodes[-2].params["model"] == "snntorch.rsynaptic"


@pytest.mark.parametrize("reset,delay", [("zero", True), ("none", True), ("subtract", False), ("zero", False)])
def test_leaky_reset_mechanisms_and_delay(snn, tmp_path, reset, delay):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), snn.Leaky(beta=0.7, threshold=0.6, reset_mechanism=reset,
                                                      reset_delay=delay, init_hidden=True))
    x = _images()
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path, steps=6)
    p = gt.nodes[1].params
    assert (p["reset"], p["reset_delay"]) == (reset, delay)


def test_learned_per_neuron_beta_and_threshold_are_arrays(snn, tmp_path):
    torch.manual_seed(0)
    lif = snn.Leaky(beta=torch.rand(6) * 0.5 + 0.5, threshold=torch.rand(6) + 0.5, learn_beta=True,
                    learn_threshold=True, init_hidden=True)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), lif)
    x = _images()
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path)
    assert gt.nodes[2].params["beta"] == {"array": "params/2/beta"}
    np.testing.assert_array_equal(gt.arrays["params/2/threshold"], lif.threshold.detach().numpy())


def test_a_model_straight_after_a_training_step_is_left_untouched(snn, tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 4, 2, stride=2), snn.Leaky(beta=0.5, init_hidden=True), nn.Flatten(),
                        nn.Linear(64, 3))
    x = _images()
    net(x).sum().backward()
    assert not net[1].mem.is_leaf
    before = [p.detach().clone() for p in net.parameters()]
    _export(net, x, 2, tmp_path / "t.npz")
    assert load_graph_trace(tmp_path / "t.npz").time_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


# ----------------------------------------------------------------------------- SpikingJelly

@pytest.mark.parametrize("kind", ["IF", "LIF", "PLIF"])
@pytest.mark.parametrize("mode", ["s", "m"])
def test_spikingjelly_neurons_single_and_multi_step(sj, tmp_path, kind, mode):
    neuron, layer, functional = sj
    torch.manual_seed(0)
    make = {"IF": lambda: neuron.IFNode(v_reset=None),
            "LIF": lambda: neuron.LIFNode(tau=3.0, decay_input=False, v_reset=0.0),
            "PLIF": lambda: neuron.ParametricLIFNode(init_tau=2.5, v_reset=-0.1)}[kind]
    # multi-step: conv and batch norm in a SeqToANNContainer (T folded into the batch)
    front = ([layer.SeqToANNContainer(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4))] if mode == "m" else
             [layer.Conv2d(1, 4, 3, padding=1), layer.BatchNorm2d(4)])
    net = nn.Sequential(*front, make(), layer.MaxPool2d(2), layer.Flatten(), layer.Linear(64, 8), make(),
                        layer.Linear(8, 2))
    functional.set_step_mode(net, mode)
    with torch.no_grad():
        (net[0][0] if mode == "m" else net[0]).weight.mul_(2)
    x = _images()
    _train(net, x, multi=mode == "m")
    functional.reset_net(net)
    gt = _roundtrip(net, x, tmp_path, multi=mode == "m")
    assert gt.provenance["export"]["step_mode"] == mode
    assert [n.op for n in gt.nodes] == ["conv2d", "affine", "neuron", "maxpool", "flatten", "linear", "neuron",
                                        "linear"]
    model = {"IF": "spikingjelly.if", "LIF": "spikingjelly.lif", "PLIF": "spikingjelly.plif"}[kind]
    lif, pool = gt.nodes[2], gt.nodes[3]
    assert lif.params["model"] == model
    # the OR of the max pool of spikes is recorded too
    spikes = torch.from_numpy(_unpack(gt, lif.name)).float().reshape(-1, 4, 8, 8)
    want = torch.nn.functional.max_pool2d(spikes, 2).reshape(3, T, 4, 4, 4).numpy().astype(bool)
    np.testing.assert_array_equal(_unpack(gt, pool.name), want)


class _BasicBlock(nn.Module):
    """Spiking-ResNet's basic block as spikingjelly's model/spiking_resnet.py writes it:
    sn2(bn2(conv2(sn1(bn1(conv1(x))))) + x): an add of a current and spikes."""

    def __init__(self, neuron, c):
        super().__init__()
        self.conv1, self.bn1, self.sn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), neuron()
        self.conv2, self.bn2, self.sn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), neuron()

    def forward(self, x):
        identity = x
        out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
        out += identity
        return self.sn2(out)


def _sew_function(x, y, cnf):  # spikingjelly model/sew_resnet.py
    if cnf == "ADD":
        return x + y
    if cnf == "IAND":
        return x * (1.0 - y)
    raise NotImplementedError


class _SewBlock(_BasicBlock):
    """SEW-ResNet's basic block (spikingjelly's model/sew_resnet.py): sew(x, sn2(bn2(conv2(...))))."""

    def __init__(self, neuron, c, cnf):
        super().__init__(neuron, c)
        self.cnf = cnf

    def forward(self, x):
        out = self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x))))))
        return _sew_function(x, out, self.cnf)


def test_spiking_resnet_block_adds_currents(sj, tmp_path):
    neuron, layer, functional = sj
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = layer.Conv2d(1, 4, 3, padding=1)
            self.sn0 = neuron.IFNode()
            self.block = _BasicBlock(neuron.IFNode, 4)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.block(self.sn0(self.stem(x)))), 1))

    net = Net()
    x = _images()
    _train(net, x)
    functional.reset_net(net)
    gt = _roundtrip(net, x, tmp_path)
    g = {n.name: n for n in gt.nodes}
    (add,) = [n for n in gt.nodes if n.op == "add"]
    assert sorted(add.inputs) == ["block.bn2", "sn0"] and g["block.sn2"].inputs == [add.name]
    assert add.kind == "current" and g["pool"].op == "avgpool" and g["pool"].params["kernel"] == [8, 8]


@pytest.mark.parametrize("cnf", ["ADD", "IAND"])
def test_sew_resnet_blocks(sj, tmp_path, cnf):
    neuron, layer, functional = sj
    torch.manual_seed(0)

    def lif():
        return neuron.IFNode(v_threshold=0.5)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = layer.Conv2d(1, 4, 3, padding=1)
            self.sn0 = lif()
            self.b1, self.b2 = _SewBlock(lif, 4, cnf), _SewBlock(lif, 4, cnf)
            self.fc = nn.Linear(4 * 64, 3)

        def forward(self, x):
            return self.fc(self.b2(self.b1(self.sn0(self.stem(x)))).flatten(1))

    net = Net()
    x = _images()
    _train(net, x)
    functional.reset_net(net)
    gt = _roundtrip(net, x, tmp_path)
    joins = [n for n in gt.nodes if n.op in ("add", "iand")]
    assert [n.op for n in joins] == [cnf.lower()] * 2
    first = joins[0]
    want = _framework_spikes(net, x)
    if cnf == "ADD":  # read by b2.conv1 and b2's add: events, recorded as counts
        assert first.kind == "events" and sorted(first.inputs) == ["b1.sn2", "sn0"]
        events = gt.recorded[f"events/{first.name}"]
        np.testing.assert_array_equal(events.reshape(want["sn0"].shape),
                                      want["sn0"].astype(np.uint8) + want["b1.sn2"])
        assert events.any() and events.max() <= 2
    else:  # identity * (1 - out): NOT out AND identity
        assert first.kind == "spikes" and first.inputs == ["b1.sn2", "sn0"]
        iand = _unpack(gt, first.name)
        np.testing.assert_array_equal(iand, want["sn0"] & ~want["b1.sn2"])
        assert iand.any()


def test_model_that_repeats_its_input_over_time(sj, tmp_path):
    neuron, layer, functional = sj
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.T = 5
            self.conv = layer.Conv2d(1, 4, 3, step_mode="m")
            self.sn = neuron.LIFNode(tau=2.0, step_mode="m")
            self.fc = layer.Linear(4 * 36, 2, step_mode="m")

        def forward(self, x):
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
            return self.fc(self.sn(self.conv(x)).flatten(2)).mean(0)

    net = Net()
    x = _images()
    with torch.no_grad():
        net.conv.weight.mul_(3)
    gt = _roundtrip(net, x, tmp_path, steps=5, repeats=True)
    assert gt.provenance["export"]["input_repeated_by_model"] and gt.time_steps == 5
    with pytest.raises(UsageError, match="repeats its input") as e:
        _export(net, x, 4)
    assert "time_steps=5" in str(e.value)


# ----------------------------------------------------------------------------- shapes and ops

def test_global_average_pool_head(sj, tmp_path):
    neuron, layer, functional = sj
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), neuron.IFNode(v_threshold=0.5),
                        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(6, 3))
    x = _images()
    _train(net, x)
    functional.reset_net(net)
    gt = _roundtrip(net, x, tmp_path)
    pool = gt.nodes[3]
    assert (pool.op, pool.params["kernel"], pool.kind) == ("avgpool", [8, 8], "current")
    uneven = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), neuron.IFNode(), nn.AdaptiveAvgPool2d(3))
    with pytest.raises(WorkloadError, match="does not divide the input"):
        _export(uneven, x, T)


def test_flatten_of_the_analog_input(snn, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True))
    x = _images()
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path)
    assert _graph(gt) == [("0", "flatten", ["input"]), ("1", "linear", ["0"]), ("2", "neuron", ["1"])]


def test_conv3d(snn, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 3, (2, 3, 3), stride=(1, 2, 2)), snn.Leaky(beta=0.9, init_hidden=True),
                        nn.Flatten(), nn.Linear(3 * 3 * 3 * 3, 2))
    with torch.no_grad():
        net[0].weight.mul_(3)
    x = torch.rand(3, 1, 4, 8, 8)
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path)
    assert gt.nodes[0].op == "conv3d" and gt.nodes[0].out_shape == (3, 3, 3, 3)
    assert gt.nodes[0].params["stride"] == [1, 2, 2]


@pytest.mark.parametrize("mode", ["s", "m"])
def test_spikingjelly_conv3d_exports_and_replays_on_stored_frames(sj, tmp_path, mode):
    """A SpikingJelly 3D SNN on a (1, bands, H, W) cube, single- and multi-step: the conv3d exports
    one to one, each neuron's spikes are the framework's, and the trace runs on the ACE-SNN chips
    (its first layer as digital MACs and in the PIM macro)."""
    from snnsim.hwconfig import load_hardware
    from snnsim.simulation import simulate
    from snnsim.workload.trace import load_workload

    neuron, layer, functional = sj
    torch.manual_seed(0)
    net = nn.Sequential(layer.Conv3d(1, 4, (3, 3, 3), bias=False), neuron.LIFNode(tau=2.0, v_reset=None),
                        layer.Conv3d(4, 4, (2, 1, 1), bias=False), neuron.IFNode(v_reset=None), layer.Flatten(),
                        layer.Linear(4 * 3 * 3 * 3, 2, bias=False))
    functional.set_step_mode(net, mode)
    with torch.no_grad():
        net[0].weight.mul_(3)
    x = torch.rand(3, 1, 6, 5, 5, generator=torch.Generator().manual_seed(1))
    _train(net, x, multi=mode == "m")
    functional.reset_net(net)
    gt = _roundtrip(net, x, tmp_path, multi=mode == "m")
    assert [n.op for n in gt.nodes[:4]] == ["conv3d", "neuron", "conv3d", "neuron"]
    assert gt.nodes[0].out_shape == (4, 4, 3, 3)
    wl = load_workload(tmp_path / "trace.npz")
    macs = []
    wide = ["core.weight_bits=16"]  # the float weights export at 16 bits
    for hw, sets in (("hwconfigs/ace_snn_digital.yaml", wide),
                     ("hwconfigs/ace_snn_pim.yaml", [*wide, "pim.weight_bits=16", "pim.cols_per_adc=16"])):
        r = simulate(load_hardware(hw, sets), wl)
        macs.append(r.summary["operations"]["macs_per_frame"])
    # the first layer's in-bounds MACs on the core (4 x 3 x 3 x 3 outputs of 27 taps), none with PIM
    assert macs == [4 * 4 * 3 * 3 * 27, 0]


def test_conv1d(snn, tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True), nn.MaxPool1d(2),
                        nn.Flatten(), nn.Linear(32, 2))
    with torch.no_grad():
        net[0].weight.mul_(3)
    x = torch.rand(3, 2, 16)
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path)
    assert [n.op for n in gt.nodes] == ["conv1d", "neuron", "maxpool", "flatten", "linear"]
    assert gt.nodes[0].out_shape == (4, 16) and gt.nodes[2].kind == "spikes"


def test_sum_pool_of_spikes_gives_events(snn, tmp_path):
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True)
            self.lif2 = snn.Leaky(beta=1.0, threshold=1.5, init_hidden=True)

        def forward(self, x):
            s = self.lif(self.conv(x))
            return self.lif2(torch.nn.functional.avg_pool2d(s, 2, divisor_override=1))

    net = Net()
    with torch.no_grad():
        net.conv.weight.mul_(3)
    x = _images()
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path)
    assert [n.op for n in gt.nodes] == ["conv2d", "neuron", "sumpool", "neuron"]
    assert gt.nodes[2].kind == "events" and "events/avg_pool2d" not in gt.recorded  # one layer reads it


def test_plain_pytorch_neuron_declares_its_model(tmp_path):
    class MyLIF(nn.Module):
        """A plain PyTorch neuron: SpikingJelly's LIF without decay_input, written by hand."""

        def __init__(self, tau=2.0):
            super().__init__()
            self.tau, self.v = tau, None

        def reset(self):
            self.v = None

        def snnsim_neuron(self):
            return "spikingjelly.lif", {"tau": self.tau, "decay_input": False, "v_reset": 0.0, "v_threshold": 1.0}

        def forward(self, x):
            v = torch.zeros_like(x) if self.v is None else self.v
            v = v - (v - 0.0) / self.tau + x
            s = (v - 1.0 >= 0).float()
            self.v = s * 0.0 + (1 - s) * v
            return s

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 2, 2), MyLIF(), nn.Flatten(), nn.Linear(48, 2))
    with torch.no_grad():
        net[0].weight.mul_(4)
    x = _images()
    gt = _roundtrip(net, x, tmp_path)
    assert gt.nodes[1].params == {"model": "spikingjelly.lif", "tau": 2.0, "decay_input": False, "v_reset": 0.0,
                                  "v_threshold": 1.0}

    class Liar(MyLIF):
        def snnsim_neuron(self):
            return "spikingjelly.if", {"v_threshold": 1.0}

    liar = nn.Sequential(nn.Conv2d(1, 3, 2, 2), Liar())
    with torch.no_grad():
        liar[0].weight.mul_(4)
    with pytest.raises(WorkloadError, match="differ from its model") as e:
        _export(liar, x, 6, tmp_path / "no.npz")
    assert "spike trains differ" in str(e.value)
    assert not (tmp_path / "no.npz").exists()
    with pytest.warns(UserWarning, match="differ from their models"):
        gt = _export(liar, x, 6, on_mismatch="warn")
    assert gt.provenance["export"]["self_check"]["1"]["trains_differing"] > 0


def test_a_forward_that_loops_over_time_says_what_to_pass(snn):
    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 4)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x):
            out = 0
            for _ in range(7):
                out = out + self.lif(self.fc(x.flatten(1)))
            return out

    with pytest.raises(WorkloadError, match="called 7 times") as e:
        _export(Loop(), _images(), 7)
    assert "time_steps=7" in str(e.value) and "move the loop out of forward" in str(e.value)

    class ExplicitState(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 4)
            self.lif = snn.Leaky(beta=0.9)

        def forward(self, x):
            mem = self.lif.init_leaky()
            spk, mem = self.lif(self.fc(x.flatten(1)), mem)
            return spk

    with pytest.raises(WorkloadError, match="with its state as an argument"):
        _export(ExplicitState(), _images(), 3)


@pytest.mark.parametrize("case", ["and", "relu", "add_constant", "add_float64", "ceil_mode"])
def test_what_stays_unsupported_is_named(snn, case, tmp_path):
    class And(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(1, 2, 3)
            self.na, self.nb = snn.Leaky(beta=0.9, init_hidden=True), snn.Leaky(beta=0.9, init_hidden=True)

        def forward(self, x):
            return self.na(self.a(x)) * self.nb(self.b(x))

    class AddConstant(nn.Module):
        """A constant that differs within a channel is no bias of format v2 (one value per channel)."""

        def __init__(self, dtype=torch.float32):
            super().__init__()
            self.a, self.n = nn.Conv2d(1, 2, 3), snn.Leaky(beta=0.9, init_hidden=True)
            self.register_buffer("b", torch.rand(2, 6, 6, dtype=dtype) if dtype == torch.float32 else
                                 torch.rand(2, 1, 1, dtype=dtype))

        def forward(self, x):
            return self.n(self.a(x) + self.b)

    models = {
        "and": (And(), "multiplies two tensors"),
        "relu": (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), snn.Leaky(beta=0.9, init_hidden=True)),
                 "unsupported module '1'"),
        "add_constant": (AddConstant(), "adds a constant that is not one per channel"),
        "add_float64": (AddConstant(torch.float64), "adds a torch.float64 constant"),
        "ceil_mode": (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(4, ceil_mode=True),
                                    snn.Leaky(beta=0.9, init_hidden=True)), "ceil_mode"),
    }
    model, message = models[case]
    with pytest.raises(WorkloadError, match=message) as e:
        _export(model, _images(), T, tmp_path / "out.npz")
    assert "expected" in str(e.value)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- constants added to currents

def test_constants_added_to_currents_are_bias_nodes(snn, tmp_path):
    """x + self.b (a learned (C, 1, 1) parameter), c + x and x - c with numbers: bias nodes whose
    bias/<node> is the constant per channel (a scalar broadcast to C, x - c as + (-c))."""
    class Biased(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.b = nn.Conv2d(1, 3, 3), nn.Parameter(torch.rand(3, 1, 1) - 0.2)
            self.lif1 = snn.Leaky(beta=0.9, init_hidden=True)
            self.fc, self.lif2 = nn.Linear(3 * 36, 4), snn.Leaky(beta=0.8, init_hidden=True)

        def forward(self, x):
            s = self.lif1(self.conv(x) + self.b)
            return self.lif2(0.5 + self.fc(s.flatten(1)) - 0.25)

    torch.manual_seed(0)
    net = Biased()
    x = _images()
    _train(net, x)
    gt = _roundtrip(net, x, tmp_path)
    assert _graph(gt) == [("conv", "conv2d", ["input"]), ("add", "bias", ["conv"]), ("lif1", "neuron", ["add"]),
                          ("flatten", "flatten", ["lif1"]), ("fc", "linear", ["flatten"]),
                          ("add_1", "bias", ["fc"]), ("sub", "bias", ["add_1"]), ("lif2", "neuron", ["sub"])]
    np.testing.assert_array_equal(gt.arrays["bias/add"], net.b.detach().numpy().reshape(3))
    np.testing.assert_array_equal(gt.arrays["bias/add_1"], np.full(4, 0.5, np.float32))
    np.testing.assert_array_equal(gt.arrays["bias/sub"], np.full(4, -0.25, np.float32))
    assert gt.provenance["export"]["graph_check"]["add"] < 1e-5  # the graph's current into lif1 is torch's


# ----------------------------------------------------------------------------- membrane readouts

class _MembraneOut(nn.Module):
    """Two snnTorch layers; the second returns its membrane (``spk, mem = lif(x); return mem``)."""

    def __init__(self, snn, synaptic=False, read="mem", init_hidden=True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(64, 10), nn.Linear(10, 3)
        self.lif1 = snn.Leaky(beta=0.9, init_hidden=init_hidden)
        self.lif2 = (snn.Synaptic(alpha=0.6, beta=0.8, init_hidden=init_hidden, output=True) if synaptic else
                     snn.Leaky(beta=0.8, init_hidden=init_hidden, output=True))
        self.read, self.init_hidden, self.synaptic = read, init_hidden, synaptic

    def forward(self, x):
        s = self.lif1(self.fc1(x.flatten(1)))
        if not self.init_hidden:
            s = s[0]
        if self.synaptic:
            spk, syn, mem = self.lif2(self.fc2(s))
        else:
            (spk, mem), syn = self.lif2(self.fc2(s)), None
        return {"mem": mem, "both": (spk, mem), "syn": syn}[self.read]


def _membranes(net, x, steps=T):
    """The membrane the model returns at every step (samples, T, ...)."""
    _reset(net)
    with torch.no_grad():
        return torch.stack([net(x) for _ in range(steps)], dim=1).numpy()


@pytest.mark.parametrize("synaptic,init_hidden", [(False, True), (True, True), (False, False)])
def test_a_returned_membrane_is_a_readout_neuron(snn, tmp_path, synaptic, init_hidden):
    from snnsim.workload.forward import evaluate

    torch.manual_seed(0)
    net = _MembraneOut(snn, synaptic, init_hidden=init_hidden)
    with torch.no_grad():
        net.fc1.weight.mul_(3)
    x = _images()
    path = tmp_path / "readout.npz"
    _export(net, x, T, path)
    gt = load_graph_trace(path)
    lif2 = next(n for n in gt.nodes if n.name == "lif2")
    assert lif2.params["output"] == "membrane" and lif2.kind == "current"
    assert lif2.params["model"] == ("snntorch.synaptic" if synaptic else "snntorch.leaky")
    assert set(gt.recorded) == {"spikes/lif1"}  # the readout is a current: nothing recorded for it
    spikes = _unpack(gt, "lif1")
    assert spikes.any()
    check = gt.provenance["export"]["self_check"]
    assert check["lif2"]["readout"] == "membrane" and check["lif2"]["values_differing"] == 0
    assert check["lif1"]["trains_differing"] == 0
    # the trace's own graph, from lif1's recorded spikes, gives the membrane the model returned
    want = _membranes(net, x)
    got = evaluate(gt.nodes, gt.input, T, arrays=gt.arrays, sources={"lif1": spikes}, keep=["lif2"])["lif2"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(want).max() > 0


def test_membrane_beside_used_spikes_stays_a_note_and_other_states_are_refused(snn, tmp_path):
    torch.manual_seed(0)
    gt = _export(_MembraneOut(snn, read="both"), _images(), T)
    assert "spikes/lif2" in gt.recorded and "output" not in gt.nodes[-1].params
    assert any("membrane of 'lif2'" in note for note in gt.provenance["export"]["notes"])
    with pytest.raises(WorkloadError, match="outputs syn of neuron 'lif2'"):
        _export(_MembraneOut(snn, synaptic=True, read="syn"), _images(), T)


def test_a_membrane_fed_into_further_layers_is_refused(snn):
    class Hidden(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 10), nn.Linear(10, 3)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True, output=True)

        def forward(self, x):
            _, mem = self.lif(self.fc1(x.flatten(1)))
            return self.fc2(mem)

    with pytest.raises(WorkloadError, match="feeds the membrane of neuron 'lif' into further layers") as e:
        _export(Hidden(), _images(), T)
    assert "end the network at its membrane" in str(e.value)


def test_spikingjelly_non_spiking_readout_is_named(sj):
    neuron, layer, functional = sj
    net = nn.Sequential(layer.Flatten(), layer.Linear(64, 4), neuron.IFNode(), layer.Linear(4, 2),
                        neuron.NonSpikingLIFNode(tau=2.0))
    functional.set_step_mode(net, "m")
    with pytest.raises(WorkloadError, match="non-spiking readout") as e:
        _export(net, _images(), T)
    assert "NonSpikingLIFNode" in str(e.value)


# ----------------------------------------------------------------------------- SpikingJelly ann2snn

def _relu_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 6, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 2 * 2, 3)).eval()


def _convert(ann, x, **recipe):
    ann2snn = pytest.importorskip("spikingjelly.activation_based.ann2snn")
    r = ann2snn.RateCodingRecipe(dataloader=[(x, torch.zeros(len(x)))], **recipe)  # a one-batch loader, offline
    return ann2snn.Converter(r).convert(ann)


@pytest.mark.parametrize("recipe", [{"mode": "max"}, {"mode": "99.9%", "channel_wise": True}])
def test_ann2snn_voltage_scalers_are_scale_nodes(sj, tmp_path, recipe):
    from spikingjelly.activation_based.ann2snn.modules import ChannelVoltageScaler, VoltageScaler

    x = _images(16)
    snn_model = _convert(_relu_cnn(), x, **recipe)
    scalers = {name: m for name, m in snn_model.named_modules() if isinstance(m, (VoltageScaler, ChannelVoltageScaler))}
    assert len(scalers) == 4 and all(isinstance(m, ChannelVoltageScaler) == ("channel_wise" in recipe)
                                     for m in scalers.values())
    gt = _roundtrip(snn_model, x[:4], tmp_path, steps=8)
    prefix = "channel_spiking" if "channel_wise" in recipe else "spiking"
    assert _graph(gt) == [
        ("0", "conv2d", ["input"]), (f"{prefix}_0.scaler0", "scale", ["0"]),
        (f"{prefix}_0.if_node", "neuron", [f"{prefix}_0.scaler0"]),
        (f"{prefix}_0.scaler1", "scale", [f"{prefix}_0.if_node"]), ("2", "avgpool", [f"{prefix}_0.scaler1"]),
        ("3", "conv2d", ["2"]), (f"{prefix}_1.scaler0", "scale", ["3"]),
        (f"{prefix}_1.if_node", "neuron", [f"{prefix}_1.scaler0"]),
        (f"{prefix}_1.scaler1", "scale", [f"{prefix}_1.if_node"]), ("5", "flatten", [f"{prefix}_1.scaler1"]),
        ("6", "linear", ["5"])]
    for name, m in scalers.items():
        c = gt.nodes[[n.name for n in gt.nodes].index(name)].out_shape[0]
        want = np.broadcast_to(m.scale.detach().numpy().astype(np.float32), (c,))
        np.testing.assert_array_equal(gt.arrays[f"scale/{name}"], want)
    if "channel_wise" in recipe:  # one threshold per channel, not one per layer
        assert len(set(gt.arrays[f"scale/{prefix}_0.scaler1"].tolist())) == 4
    for n in gt.nodes:
        if n.op == "neuron":
            assert (n.params["model"], n.params["v_reset"]) == ("spikingjelly.if", None)
    assert all(v < 1e-5 for v in gt.provenance["export"]["graph_check"].values())


def test_ann2snn_half_threshold_and_other_channel_axes_are_refused(sj):
    from spikingjelly.activation_based.ann2snn.modules import ChannelVoltageScaler

    neuron, _, _ = sj
    x = _images(16)
    half = _convert(_relu_cnn(), x, mode="99.9%", channel_wise=True, half_threshold=True)
    with pytest.raises(WorkloadError, match=r"membrane at v_threshold / 2") as e:
        _export(half, x[:4], 8)
    assert "half_threshold=False" in str(e.value)
    last = nn.Sequential(nn.Conv2d(1, 3, 3), ChannelVoltageScaler(torch.rand(6) + 0.5, channel_dim=-1),
                         neuron.IFNode(v_reset=None))
    with pytest.raises(WorkloadError, match="scales along another axis than the channels") as e:
        _export(last, x[:4], 4)
    assert "channel_dim=-1" in str(e.value)
    # channel_dim -3 of (B, C, H, W) is the channels
    ok = nn.Sequential(nn.Conv2d(1, 3, 3), ChannelVoltageScaler(torch.tensor([2.0, 3.0, 4.0]), channel_dim=-3),
                       neuron.IFNode(v_reset=None))
    gt = _export(ok, x[:4], 4)
    np.testing.assert_array_equal(gt.arrays["scale/1"], np.array([2.0, 3.0, 4.0], np.float32))
