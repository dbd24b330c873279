"""NeuroBench-consistent operation counts (snnsim.report.ops) on hand-computed cases, against the
core's counters, and, where NeuroBench and PyTorch are installed, against NeuroBench itself."""

from __future__ import annotations

import numpy as np
import pytest
from snnsim import load_hardware, simulate
from snnsim.hw.spikes import window_taps
from snnsim.report.ops import fanout, neurobench_ops
from snnsim.workload.graph import Layer, Neuron, check_graph
from snnsim.workload.trace import Workload, pack_spikes

from .conftest import TINY_BASE, TINY_P2M, make_tiny_workload


def _layer(wl: Workload, name: str) -> dict:
    ops = neurobench_ops(wl)
    return next(x for x in ops["layers"] if x["name"] == name)


def _conv_workload(spikes: np.ndarray, weights: np.ndarray | None = None, **conv) -> Workload:
    """input (1, 3, 3) -> conv0 (spikes given as (samples, T, 1, 3, 3)) -> conv1 over them."""
    s, t = spikes.shape[:2]
    layers = [Layer("conv0", "conv2d", ["input"], (1, 3, 3), kernel=(1, 1), stride=(1, 1), padding=(0, 0),
                    neuron=Neuron()),
              Layer("conv1", "conv2d", ["conv0"], conv.pop("out_shape"), neuron=Neuron(), **conv)]
    x = np.full((s, 1, 3, 3), 0.5, np.float32)
    wl = Workload(layers, x, {"conv0": pack_spikes(spikes), "conv1": pack_spikes(
        np.zeros((s, t, *layers[1].out_shape), bool))}, t, weights={} if weights is None else {"conv1": weights})
    check_graph(wl.layers, wl.input_shape)
    return wl


def test_conv_fanout_at_the_borders():
    # 3x3 kernel, padding 1, 2 output channels on a 3x3 map: a corner input reaches 4 output
    # positions, an edge input 6, the centre 9 (times 2 channels); padding is never counted
    spikes = np.zeros((2, 2, 1, 3, 3), bool)
    spikes[0, 0, 0, 0, 0] = True  # corner: 8
    spikes[0, 1, 0, 1, 1] = True  # centre: 18
    spikes[0, 1, 0, 0, 0] = True  # corner: 8
    spikes[1, 0, 0, 0, 1] = True  # edge: 12
    wl = _conv_workload(spikes, out_shape=(2, 3, 3), kernel=(3, 3), stride=(1, 1), padding=(1, 1))
    e = _layer(wl, "conv1")
    assert e["effective_acs"] == (8 + 18 + 8 + 12) / 2  # per sample, summed over steps
    assert e["effective_macs"] == 0
    # dense: every output sums its in-bounds window: (2+3+2)^2 = 49 pairs, 2 channels, 2 steps
    assert e["dense"] == 49 * 2 * 2
    assert e["synops"] == e["effective_acs"]


def test_strided_conv_fanout_matches_the_core_taps():
    layer = Layer("c", "conv2d", ["x"], (3, 3, 4), in_shape=(2, 6, 7), kernel=(3, 2), stride=(2, 2),
                  padding=(1, 1), groups=1)
    f = fanout(layer, None).reshape(2, -1)
    taps = window_taps((6, 7), (3, 2), (2, 2), (1, 1), (3, 4))
    assert np.array_equal(f[0], taps * 3) and np.array_equal(f[1], taps * 3)


def test_zero_weights_count_nothing_and_groups():
    # groups 2: input channel 0 feeds output channels 0-1, input channel 1 outputs 2-3
    w = np.ones((4, 1, 1, 1), np.float32)
    w[1] = 0.0  # output channel 1 never gets an operation
    layer = Layer("c", "conv2d", ["x"], (4, 2, 2), in_shape=(2, 2, 2), kernel=(1, 1), stride=(1, 1),
                  padding=(0, 0), groups=2)
    assert fanout(layer, w).reshape(2, 4).tolist() == [[1] * 4, [2] * 4]
    assert fanout(layer, None).reshape(2, 4).tolist() == [[2] * 4, [2] * 4]


def test_linear_with_zero_weights_and_the_classifier():
    layers = [Layer("c0", "conv2d", ["input"], (1, 2, 2), kernel=(1, 1), stride=(1, 1), padding=(0, 0),
                    neuron=Neuron()),
              Layer("f", "flatten", ["c0"], (4,)),
              Layer("fc", "linear", ["f"], (3,))]
    w = np.array([[1, 0, 2, 0], [1, 1, 0, 0], [1, 0, 0, 0]], np.float32)  # column non-zeros 3, 1, 1, 0
    s = np.zeros((1, 3, 1, 2, 2), bool)
    s[0, 0, 0, 0, 0] = s[0, 1, 0, 0, 1] = s[0, 2, 0, 1, 1] = s[0, 2, 0, 1, 0] = True  # inputs 0; 1; 3, 2
    x = np.ones((1, 1, 2, 2), np.float32)
    wl = Workload(layers, x, {"c0": pack_spikes(s), "f": pack_spikes(s.reshape(1, 3, 4))}, 3,
                  weights={"fc": w})
    ops = neurobench_ops(wl)
    fc = next(x for x in ops["layers"] if x["name"] == "fc")
    assert fc["effective_acs"] == 3 + 1 + (0 + 1)
    assert fc["dense"] == 12 * 3
    flat = next(x for x in ops["layers"] if x["name"] == "f")
    assert not flat["counted"] and flat["dense"] == 0
    # an all-ones analog input is 'spiking' for NeuroBench (every value 0, 1 or -1): ACs
    c0 = next(x for x in ops["layers"] if x["name"] == "c0")
    assert c0["effective_macs"] == 0 and c0["effective_acs"] == 4 * 3


def test_first_layer_on_multibit_input_counts_nonzero_inputs_at_every_step():
    layers = [Layer("c0", "conv2d", ["input"], (2, 2, 2), kernel=(2, 2), stride=(1, 1), padding=(0, 0),
                    neuron=Neuron())]
    x = np.zeros((2, 1, 3, 3), np.float32)
    x[0, 0, 0, 0] = 0.5  # a corner: reaches 1 output position
    x[0, 0, 1, 1] = 0.25  # the centre: 4 positions
    x[1, 0, 1, 0] = 1.0  # an edge: 2 positions (the value 1.0 is still a multi-bit input)
    wl = Workload(layers, x, {"c0": pack_spikes(np.zeros((2, 4, 2, 2, 2), bool))}, 4)
    e = _layer(wl, "c0")
    assert e["input"] == "analog"
    assert e["effective_acs"] == 0
    assert e["effective_macs"] == 4 * 2 * ((1 + 4) + 2) / 2  # T x channels x fan-out, per sample
    assert e["dense"] == 4 * 2 * 4 * 4  # T x channels x 4 positions x 4 window elements


def test_pooling_and_adds_count_nothing():
    layers = [Layer("c0", "conv2d", ["input"], (2, 4, 4), kernel=(1, 1), stride=(1, 1), padding=(0, 0),
                    neuron=Neuron()),
              Layer("p", "avgpool", ["c0"], (2, 2, 2), kernel=(2, 2), stride=(2, 2), padding=(0, 0),
                    neuron=Neuron()),
              Layer("m", "maxpool", ["c0"], (2, 2, 2), kernel=(2, 2), stride=(2, 2), padding=(0, 0)),
              Layer("a", "add", ["p", "m"], (2, 2, 2), neuron=Neuron())]
    rng = np.random.default_rng(0)
    sp = {n: pack_spikes(rng.random((1, 2, *s)) < 0.5) for n, s in (("c0", (2, 4, 4)), ("p", (2, 2, 2)),
                                                                   ("m", (2, 2, 2)), ("a", (2, 2, 2)))}
    wl = Workload(layers, rng.random((1, 1, 4, 4)).astype(np.float32), sp, 2)
    ops = neurobench_ops(wl)
    for e in ops["layers"][1:]:
        assert not e["counted"] and e["dense"] == e["synops"] == 0
    assert ops["total"]["dense"] == ops["layers"][0]["dense"]


@pytest.mark.parametrize("cfg", [TINY_P2M, TINY_BASE], ids=["p2m", "conventional"])
def test_core_synaptic_ops_equal_effective_acs_of_spike_fed_layers(cfg):
    wl = make_tiny_workload(samples=3, steps=2, rate=0.3)
    hw = load_hardware(cfg, ["core.weight_bits=4"])
    report = simulate(hw, wl)
    ops = neurobench_ops(wl)
    by = {e["name"]: e for e in ops["layers"]}
    for name in ("c1", "fc"):  # spike-fed synaptic layers, no weights in the trace: all non-zero
        core = report.total("core", "synaptic_ops", layer=name) / wl.samples
        assert by[name]["effective_acs"] == core > 0
    # c1 has padding 1: the core's dense MACs count the padded taps, NeuroBench's do not
    core_dense = report.total("core", "dense_macs", layer="c1") / wl.samples
    assert core_dense == 64 * 8 * 9 * 2  # out neurons x C_in x kernel x T
    assert by["c1"]["dense"] == 4 * 8 * 2 * ((2 + 3 + 3 + 2) ** 2) < core_dense
    if cfg is TINY_BASE:
        # the encoding layer: the core does its in-bounds MACs once, NeuroBench counts them at every step
        assert report.total("core", "macs", layer="c0") / wl.samples == by["c0"]["dense"] / wl.time_steps


# ----------------------------------------------------------------------------- NeuroBench itself

class _IF:
    def __init__(self, theta: float):
        self.theta, self.v = theta, 0.0

    def __call__(self, cur):
        self.v = self.v + cur
        z = (self.v >= self.theta).float()
        self.v = self.v - z * self.theta
        return z


def test_same_numbers_as_neurobench():
    torch = pytest.importorskip("torch")
    pytest.importorskip("snntorch")
    try:
        from neurobench.metrics.workload import SynapticOperations
        from neurobench.models import TorchModel
    except Exception as e:  # an installed NeuroBench that cannot import here (e.g. torchvision)
        pytest.skip(f"neurobench does not import: {e}")
    torch.manual_seed(0)
    steps = 3

    class Net(torch.nn.Module):
        """Direct-encoded conv (bias: not counted) -> IF -> strided grouped conv with zero weights
        -> IF -> avgpool -> IF -> flatten -> linear with zero weights; stepped through time."""

        def __init__(self):
            super().__init__()
            self.c0 = torch.nn.Conv2d(2, 4, 3, padding=1, bias=True)
            self.c1 = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False)
            self.pool = torch.nn.AvgPool2d(2)
            self.fc = torch.nn.Linear(24, 5, bias=False)
            with torch.no_grad():
                self.c1.weight[self.c1.weight.abs() < 0.1] = 0
                self.fc.weight[:, :3] = 0

        def forward(self, x):
            n0, n1, n2 = _IF(0.3), _IF(0.2), _IF(0.25)
            rec: dict[str, list] = {"c0": [], "c1": [], "pool": [], "flat": []}
            for t in range(x.shape[1]):
                z0 = n0(self.c0(x[:, t]))
                z1 = n1(self.c1(z0))
                z2 = n2(self.pool(z1))
                f = z2.flatten(1)
                self.fc(f)
                for k, v in (("c0", z0), ("c1", z1), ("pool", z2), ("flat", f)):
                    rec[k].append(v)
            self.rec = {k: torch.stack(v, 1) for k, v in rec.items()}
            return self.rec["flat"]

    net = Net()
    x = torch.rand(4, 2, 8, 8)
    x[:, :, :2] = 0  # zero inputs: no effective MACs
    xt = x[:, None].repeat(1, steps, 1, 1, 1)
    model = TorchModel(net)
    model.register_hooks()
    with torch.no_grad():
        preds = model(xt)
    nb = SynapticOperations()(model, preds, (xt, torch.zeros(4)))

    # the same run as a trace (a small converter: layers by hand, spikes and weights recorded)
    layers = [Layer("c0", "conv2d", ["input"], (4, 8, 8), kernel=(3, 3), stride=(1, 1), padding=(1, 1),
                    weight_bits=8, neuron=Neuron(threshold=0.3)),
              Layer("c1", "conv2d", ["c0"], (6, 4, 4), kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=2,
                    weight_bits=8, neuron=Neuron(threshold=0.2)),
              Layer("pool", "avgpool", ["c1"], (6, 2, 2), kernel=(2, 2), stride=(2, 2), padding=(0, 0),
                    neuron=Neuron(threshold=0.25)),
              Layer("flat", "flatten", ["pool"], (24,)),
              Layer("fc", "linear", ["flat"], (5,), weight_bits=8)]
    spikes = {k: pack_spikes(v.numpy().astype(bool)) for k, v in net.rec.items()}
    weights = {k: getattr(net, k).weight.detach().numpy() for k in ("c0", "c1", "fc")}
    wl = Workload(layers, x.numpy(), spikes, steps, weights=weights)
    ours = neurobench_ops(wl)["neurobench"]
    assert nb["Effective_MACs"] > 0 and nb["Effective_ACs"] > 0
    assert ours == {k: float(v) for k, v in nb.items()}
