"""ANN-to-SNN conversion (snnsim.export.ann): a ReLU CNN trained on scikit-learn's digits, converted
by max and percentile normalisation, run as a spiking network and exported."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from snnsim.errors import WorkloadError  # noqa: E402
from snnsim.export.ann import ConversionResult, convert_ann, from_ann, snn_scores  # noqa: E402
from snnsim.export.ann_snn import ConvertedSNN, SubtractIF  # noqa: E402
from snnsim.neurons import SpikingJellyIF, neuron_model, run  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402


def _digits_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: one thread is faster than several competing for a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits(one_thread):
    """The digits (8x8, scaled to [0, 1]) split 1400 / 397, and the CNN trained on them."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:1400], idx[1400:]
    torch.manual_seed(1)
    model = _digits_cnn()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    xt, yt = torch.tensor(x[tr]), torch.tensor(y[tr])
    g = torch.Generator().manual_seed(1)
    for _ in range(8):
        model.train()
        perm = torch.randperm(len(tr), generator=g)
        for i in range(0, len(tr), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(xt[b]), yt[b]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.tensor(x[te])).argmax(1).numpy() == y[te]).mean())
    return {"model": model, "x_cal": x[tr][:400], "y_cal": y[tr][:400], "x_test": x[te], "y_test": y[te],
            "acc": acc}


def _convert(digits, time_steps=64, **kw) -> ConversionResult:
    return convert_ann(digits["model"], digits["x_cal"], time_steps, eval_inputs=digits["x_test"],
                       eval_labels=digits["y_test"], **kw)


# ----------------------------------------------------------------------------- the neuron

def test_subtract_if_is_spikingjelly_if_bit_for_bit():
    rng = np.random.default_rng(3)
    cur = rng.normal(0.3, 0.6, (40, 500)).astype(np.float32)
    cur[:, :100] = rng.integers(-2, 6, (40, 100)) * np.float32(0.25)  # exact ties at the threshold
    ref_spikes, ref_state = run(SpikingJellyIF(v_threshold=np.float32(1.0), v_reset=None), cur)
    n = SubtractIF(1.0)
    spikes, mems = [], []
    for t in range(cur.shape[0]):
        spikes.append(n(torch.tensor(cur[t])).numpy())
        mems.append(n.v.numpy())
    assert np.array_equal(np.array(spikes) > 0, ref_spikes)
    assert np.array_equal(np.array(mems), ref_state["v"])
    model, params = n.snnsim_neuron()
    assert (model, params) == ("spikingjelly.if", {"v_threshold": 1.0, "v_reset": None})
    neuron_model(model, params)  # a valid model of snnsim.neurons


def test_subtract_if_resets_by_subtraction():
    n = SubtractIF(1.0)
    assert n(torch.tensor([1.5])).item() == 1.0
    assert n.v.item() == pytest.approx(0.5)  # reset to zero would leave 0
    n.reset()
    counts = sum(n(torch.tensor([0.6])) for _ in range(100))
    assert abs(counts.item() - 60) <= 1  # reset to zero gives 50: the residue is lost at every spike


def test_subtract_if_matches_spikingjelly_ifnode():
    sj = pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import neuron

    del sj
    rng = np.random.default_rng(4)
    cur = torch.tensor(rng.normal(0.4, 0.7, (30, 64, 50)).astype(np.float32))
    ref = neuron.IFNode(v_reset=None)
    mine = SubtractIF(1.0)
    with torch.no_grad():
        for t in range(cur.shape[0]):
            assert torch.equal(ref(cur[t]), mine(cur[t]))


# ----------------------------------------------------------------------------- conversion on digits

def test_trained_cnn_reaches_90_percent(digits):
    assert digits["acc"] > 0.9


@pytest.mark.parametrize("method", ["max", "percentile"])
def test_snn_accuracy_close_to_ann(digits, method):
    exact_pool = _convert(digits, method=method, maxpool="current")
    assert exact_pool.ann_accuracy == pytest.approx(digits["acc"])
    assert exact_pool.accuracy_on == "eval"
    # measured on six trainings: within 1.3 points at T = 64 (max pooling of currents)
    assert exact_pool.snn_accuracy >= exact_pool.ann_accuracy - 0.03
    spikes_or = _convert(digits, 32, method=method, maxpool="or")
    # the OR of spikes overestimates the max: measured 1 to 7 points below the ANN
    assert spikes_or.snn_accuracy >= spikes_or.ann_accuracy - 0.09
    assert any("OR" in n for n in spikes_or.notes)


def test_percentile_scales_are_below_the_maxima(digits):
    by_max = _convert(digits, 8, method="max")
    by_pct = _convert(digits, 8, method="percentile", percentile=99.0)
    assert set(by_max.lambdas) == {"input", "0", "4"}
    assert by_max.lambdas["input"] == by_pct.lambdas["input"] == 1.0
    assert all(by_pct.lambdas[k] < by_max.lambdas[k] for k in ("0", "4"))
    assert by_pct.percentile == 99.0 and by_max.percentile is None


def test_accuracy_grows_with_time_steps(digits):
    r = _convert(digits, 64, maxpool="current")
    acc = r.snn_accuracy_per_step
    assert len(acc) == 64
    assert acc[63] >= acc[7]
    x = torch.tensor(digits["x_test"])
    with torch.no_grad():
        ann = digits["model"](x).argmax(1)
    scores = snn_scores(r.snn, x, 64)
    agree = [float((scores[t].argmax(1) == ann).float().mean()) for t in (7, 63)]
    assert agree[1] > agree[0]
    assert agree[1] >= 0.97  # measured 0.987 to 0.997 over six trainings


def test_rescaled_weights_and_biases(digits):
    r = _convert(digits, 4, method="max")
    snn, ann = r.snn, digits["model"]
    conv, bn = ann[0], ann[1]
    a = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
    folded_w = conv.weight.detach().double() * a.reshape(-1, 1, 1, 1)
    folded_b = (conv.bias.detach().double() - bn.running_mean.double()) * a + bn.bias.detach().double()
    lam1, lam2 = r.lambdas["0"], r.lambdas["4"]
    assert torch.allclose(snn[0].weight.double(), (folded_w / lam1).float().double(), rtol=1e-6, atol=0)
    assert torch.allclose(snn[0].bias.double(), (folded_b / lam1).float().double(), rtol=1e-6, atol=0)
    assert torch.allclose(snn[3].weight.double(), ann[4].weight.double() * lam1 / lam2, rtol=1e-6)
    assert torch.allclose(snn[3].bias.double(), ann[4].bias.double() / lam2, rtol=1e-6)
    assert torch.allclose(snn[7].weight.double(), ann[8].weight.double() * lam2, rtol=1e-6)  # readout
    assert torch.allclose(snn[7].bias, ann[8].bias)
    for layer in (snn[0], snn[3], snn[7]):
        assert float(layer.bias.abs().min()) > 0  # constant currents, added every step
    neurons = [m for m in snn.modules() if isinstance(m, SubtractIF)]
    assert len(neurons) == 2 and all(n.v_threshold == 1.0 for n in neurons)
    assert isinstance(snn, ConvertedSNN) and not isinstance(snn[-1], SubtractIF)
    assert any("batch norm '1' folded into '0'" in n for n in r.notes)
    assert any("constant currents" in n for n in r.notes)


def test_readout_sums_currents_over_steps(digits):
    r = _convert(digits, 16)
    x = torch.tensor(digits["x_test"][:5])
    per_step = r.snn.run(x, 16)
    assert per_step.shape == (16, 5, 10)
    assert torch.allclose(snn_scores(r.snn, x, 16)[-1], per_step.double().sum(0))
    assert all(m.v is None for m in r.snn.modules() if isinstance(m, SubtractIF))  # reset after a run


def test_rate_code_counts(digits):
    r = _convert(digits, 32, input_coding="rate")
    encoder = r.snn[0]
    assert isinstance(encoder, SubtractIF)
    x = torch.tensor(digits["x_test"][:50])
    encoder.reset()
    counts = sum(encoder(x) for _ in range(32)).numpy()
    expected = np.floor(digits["x_test"][:50] * 32)
    assert np.abs(counts - expected).max() <= 1
    assert r.snn_accuracy >= r.ann_accuracy - 0.09
    assert any("rate input" in n for n in r.notes)


def test_maxpool_policies(digits):
    by_or = _convert(digits, 4, maxpool="or")
    kinds = [type(m).__name__ for m in by_or.snn]
    assert kinds[:4] == ["Conv2d", "SubtractIF", "MaxPool2d", "Conv2d"]
    by_current = _convert(digits, 4, maxpool="current")
    assert [type(m).__name__ for m in by_current.snn][:4] == ["Conv2d", "MaxPool2d", "SubtractIF", "Conv2d"]
    assert by_current.lambdas == by_or.lambdas  # max and ReLU commute: the same ANN
    by_avg = _convert(digits, 4, maxpool="avg")
    assert not any(isinstance(m, nn.MaxPool2d) for m in by_avg.snn)
    assert isinstance(by_avg.snn[2], nn.AvgPool2d)
    assert by_avg.lambdas["4"] != by_or.lambdas["4"]  # calibrated on the ANN with average pooling
    assert any("replaced by average pooling" in n for n in by_avg.notes)


def test_functional_forward_converts_like_the_sequential(digits):
    seq = digits["model"]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1, self.conv2, self.fc = seq[0], seq[1], seq[4], seq[8]
            self.drop = nn.Dropout(0.2)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
            x = F.avg_pool2d(torch.relu(self.conv2(x)), 2)
            return self.fc(self.drop(x.reshape(x.size(0), -1)))

    a = _convert(digits, 8)
    b = convert_ann(Net(), digits["x_cal"], 8, eval_inputs=digits["x_test"], eval_labels=digits["y_test"])
    assert list(a.lambdas.values()) == list(b.lambdas.values())
    assert b.snn_accuracy == a.snn_accuracy
    x = torch.tensor(digits["x_test"][:20])
    assert torch.equal(a.snn.run(x, 8), b.snn.run(x, 8))


def test_model_is_left_unchanged(digits):
    before = {k: v.clone() for k, v in digits["model"].state_dict().items()}
    _convert(digits, 2)
    after = digits["model"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ----------------------------------------------------------------------------- bad input

def _x(n=4):
    return np.random.default_rng(0).random((n, 1, 8, 8), dtype=np.float32)


def test_non_relu_activation_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(144, 10))
    with pytest.raises(WorkloadError) as e:
        convert_ann(model, _x(), 8)
    assert e.value.key == "model.1"
    assert "Sigmoid" in e.value.message and "ReLU" in e.value.suggestion


def test_model_without_layers_is_refused():
    with pytest.raises(WorkloadError) as e:
        convert_ann(nn.Sequential(), _x(), 8)
    assert e.value.key == "model" and e.value.suggestion


def test_calibration_inputs_of_the_wrong_shape(digits):
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], np.zeros((4, 64), np.float32), 8)
    assert e.value.key == "calibration_inputs" and "shape [4, 64]" in e.value.found and e.value.suggestion
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], np.zeros(64, np.float32), 8)
    assert e.value.key == "calibration_inputs" and "sample axis" in e.value.message
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], _x() * 255, 8)
    assert e.value.key == "calibration_inputs" and "[0, 1]" in e.value.expected


def test_unknown_options(digits):
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], _x(), 8, method="maximum")
    assert e.value.key == "method" and "'max'" in e.value.suggestion
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], _x(), 8, method="percentile", percentile=150)
    assert e.value.key == "percentile"
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], _x(), 8, input_coding="poisson")
    assert e.value.key == "input_coding"
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], _x(), 8, maxpool="gate")
    assert e.value.key == "maxpool"
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], _x(), 0)
    assert e.value.key == "time_steps"
    with pytest.raises(WorkloadError) as e:
        convert_ann(digits["model"], _x(), 8, labels=[1, 2])
    assert e.value.key == "labels"


def test_unsupported_structures_name_the_module():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            h = F.relu(self.conv1(x))
            return self.fc(torch.flatten(F.relu(self.conv2(h) + h), 1))

    with pytest.raises(WorkloadError) as e:
        convert_ann(Residual(), _x(), 8)
    assert "residual" in e.value.message and "add" in e.value.key
    bn_late = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 10))
    with pytest.raises(WorkloadError) as e:
        convert_ann(bn_late.eval(), _x(), 8)
    assert e.value.key == "model.2" and "batch norm" in e.value.message
    relu_last = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU())
    with pytest.raises(WorkloadError) as e:
        convert_ann(relu_last, _x(), 8)
    assert e.value.key == "model.2" and "readout" in e.value.suggestion


def test_final_softmax_is_dropped_with_a_note():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10), nn.Softmax(dim=1))
    r = convert_ann(model, _x(16), 8, labels=np.arange(16) % 10)
    assert any("softmax" in n for n in r.notes)
    assert r.snn_accuracy is not None and r.accuracy_on == "calibration"


# ----------------------------------------------------------------------------- export

def test_provenance_reaches_the_export(digits, monkeypatch, tmp_path):
    """The conversion's record is handed to the exporter (or added before saving when it takes no
    provenance argument)."""
    import snnsim.export.torch as exporter

    calls = {}

    class Trace:
        provenance = {"generator": "fake"}

    def with_provenance(model, inputs, time_steps, path=None, *, provenance=None, model_name=None, dataset=None):
        calls.update(model=model, inputs=inputs, time_steps=time_steps, path=path, provenance=provenance,
                     model_name=model_name, dataset=dataset)
        t = Trace()
        t.provenance = {**provenance}
        return t

    monkeypatch.setattr(exporter, "from_torch", with_provenance)
    r = from_ann(digits["model"], digits["x_cal"], 8, tmp_path / "t.npz", method="percentile",
                 eval_inputs=digits["x_test"][:10], eval_labels=digits["y_test"][:10], dataset="digits")
    assert isinstance(calls["model"], ConvertedSNN) and calls["time_steps"] == 8
    assert calls["inputs"].shape == (10, 1, 8, 8) and calls["dataset"] == "digits"
    conv = calls["provenance"]["conversion"]
    assert conv["method"] == "percentile" and conv["percentile"] == 99.99 and conv["time_steps"] == 8
    assert conv["snn_accuracy"] == r.snn_accuracy and conv["ann_accuracy"] == r.ann_accuracy
    assert conv["lambdas"] == r.lambdas and conv["notes"] == r.notes
    assert r.export.provenance["conversion"] is conv and r.path == tmp_path / "t.npz"

    def without(model, inputs, time_steps, path=None, *, model_name=None, dataset=None):
        assert path is None  # from_ann saves it itself, with the provenance
        return Trace()

    monkeypatch.setattr(exporter, "from_torch", without)
    r = from_ann(digits["model"], digits["x_cal"], 8)
    assert r.export.provenance["conversion"]["method"] == "max" and r.path is None


def _unpack(packed: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1)[..., :n].astype(bool)


@pytest.mark.parametrize("coding", ["direct", "rate"])
def test_from_ann_writes_a_v2_trace(digits, tmp_path, coding):
    """Needs the v2 from_torch (a module with snnsim_neuron(), biases, pooling of currents)."""
    from snnsim.workload.graphtrace import load_graph_trace

    path = tmp_path / f"digits_{coding}.npz"
    r = from_ann(digits["model"], digits["x_cal"], 16, path, input_coding=coding, maxpool="current",
                 eval_inputs=digits["x_test"][:12], eval_labels=digits["y_test"][:12], dataset="digits")
    assert r.path is not None and r.path.exists()
    gt = load_graph_trace(path)
    assert gt.time_steps == 16 and gt.samples == 12 and gt.dataset == "digits"
    neurons = [n for n in gt.nodes if n.op == "neuron"]
    assert len(neurons) == (3 if coding == "rate" else 2)
    for n in neurons:
        assert n.params["model"] == "spikingjelly.if" and n.params["v_reset"] is None
        assert n.params["v_threshold"] == 1.0
    biases = [k for k in gt.arrays if k.startswith("bias/")]
    assert len(biases) == 3 and all(np.abs(gt.arrays[k]).min() > 0 for k in biases)
    conv = gt.provenance["conversion"]
    assert conv["input_coding"] == coding and conv["maxpool"] == "current"
    assert conv["snn_accuracy"] == r.snn_accuracy
    # the first neuron's recorded spikes are the converted network's own
    first = r.snn[0] if coding == "rate" else r.snn[2]
    seen = []
    handle = first.register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    try:
        r.snn.run(torch.tensor(digits["x_test"][:12]), 16)
    finally:
        handle.remove()
    mine = torch.stack(seen, 1).reshape(12, 16, -1).numpy() > 0
    key = f"spikes/{neurons[0].name}"
    assert np.array_equal(_unpack(gt.recorded[key], mine.shape[2]), mine)


def test_spikingjelly_converter_output_exports(digits):
    """SpikingJelly's ann2snn output (VoltageScaler -> IFNode(v_reset=None) -> VoltageScaler in an
    fx GraphModule) exports through from_torch as scale and spikingjelly.if nodes."""
    pytest.importorskip("spikingjelly")
    from snnsim.export import from_torch
    from spikingjelly.activation_based import ann2snn
    from spikingjelly.activation_based.ann2snn.modules import VoltageScaler

    x = torch.tensor(digits["x_cal"][:100])
    recipe = ann2snn.RateCodingRecipe(dataloader=[(x, torch.zeros(100))], mode="99.9%")
    sj = ann2snn.Converter(recipe).convert(digits["model"])
    scalers = [m for m in sj.modules() if isinstance(m, VoltageScaler)]
    assert len(scalers) == 4
    gt = from_torch(sj, digits["x_test"][:8], 8)
    nodes = gt.nodes
    assert sum(n.op == "neuron" and n.params["model"] == "spikingjelly.if" and n.params["v_reset"] is None
               for n in nodes) == 2
    scales = [n for n in nodes if n.op == "scale"]
    assert len(scales) == 4
    values = sorted(float(gt.arrays[f"scale/{n.name}"][0]) for n in scales)
    assert np.allclose(values, sorted(float(s.scale) for s in scalers), rtol=1e-6)
    assert all(math.isfinite(v) for v in values)
