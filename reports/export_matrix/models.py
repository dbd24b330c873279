"""The models of the export matrix: small networks of every kind the exporters accept, each
trained for a few deterministic optimizer steps and exported to a format v2 trace.

Each ``model_*`` function returns a :class:`MatrixModel`: its name, framework, the constructs it
exercises (words of :data:`CONSTRUCTS`), a callable writing its trace to a path, and what the
P2M chip and the conventional chip are expected to say of it (``None``: it runs; otherwise a
substring of the simulator's refusal). Inputs are 1x12x12 (mono, the scikit-learn digits padded
by two pixels) or 3x12x12 (RGB, uniform noise), with T = 3..6 steps and 2..4 samples. Training is
plain sign-gradient steps (``torch.optim``'s first use costs seconds of imports) on random
targets or the digits' labels, so biases and batch-norm statistics are not zero; every model has
a fixed seed and runs on one thread, so its trace is the same on every run.

Sources for the layers are the frameworks' own documentation: snnTorch's tutorial 6 CNN
(Conv2d -> MaxPool2d -> Leaky twice, then Linear -> Leaky), SpikingJelly's
``activation_based`` neurons and its Spiking-/SEW-ResNet basic blocks (``model/spiking_resnet.py``,
``model/sew_resnet.py``), and the NIR primitives of the ``nir`` package.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# every construct the matrix must cover at least once (tests/test_matrix.py checks it)
CONSTRUCTS = (
    "snntorch.leaky", "reset.subtract", "reset.zero", "reset.none", "reset_delay.on", "reset_delay.off",
    "learned.beta", "learned.threshold", "snntorch.synaptic", "snntorch.rleaky", "snntorch.rsynaptic",
    "spikingjelly.if", "spikingjelly.lif", "spikingjelly.plif", "decay_input.true", "decay_input.false",
    "v_reset.none", "v_reset.0", "step.single", "step.multi", "plain.snnsim_neuron",
    "conv1d", "conv2d", "conv3d", "linear", "bias.on", "bias.off", "batchnorm",
    "maxpool.before_neuron", "maxpool.after_neuron", "avgpool.before_neuron", "avgpool.after_neuron",
    "adaptive_avgpool", "sumpool", "spiking_resnet.add", "sew.add", "sew.iand", "flatten.analog",
    "gap_head", "readout.no_neuron", "snntorch.tutorial_cnn",
    "nir.lif", "nir.cubalif", "nir.if", "nir.li", "nir.affine", "nir.conv2d", "nir.sumpool2d",
    "ann.max", "ann.percentile", "ann.direct", "ann.rate", "input.rgb", "input.mono",
)

# the P2M chip's refusals (substrings of the simulator's MappingError messages)
NOT_IN_PIXEL = "layer 0 is not that"  # the first layer is not input -> conv2d [-> bias/affine] -> neuron
NOT_AN_IMAGE = "the sensor needs an image input"  # a (C, L) or (C, D, H, W) input on any image sensor


@dataclass(frozen=True)
class MatrixModel:
    """One row of the matrix. ``export(path)`` builds, trains and exports the model to ``path``.
    ``p2m_refusal`` / ``conventional_refusal``: ``None`` when the chip is expected to run the
    trace, else a substring of the expected refusal; ``why_not_p2m``: the reason in words.
    ``known_bugs``: columns where the simulator is known to fail this model today (the row
    shows the failure as it is; tests/test_matrix.py expects it strictly, so a fix shows up)."""

    name: str
    framework: str
    constructs: tuple[str, ...]
    export: Callable[[Path], Any]
    p2m_refusal: str | None = None
    why_not_p2m: str = ""
    conventional_refusal: str | None = None
    known_bugs: tuple[tuple[str, str], ...] = ()  # (column: p2m/conventional/verify, the simulator bug)


# ----------------------------------------------------------------------------- shared helpers

def _torch() -> Any:
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is faster and the results do not vary
    return torch


def digits12(n: int = 3, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scikit-learn digits (bundled with the package: no download) as (n, 1, 12, 12) in
    [0, 1], the 8x8 images padded by two pixels, and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.zeros((n, 1, 12, 12), np.float32)
    x[:, 0, 2:10, 2:10] = d.images[offset:offset + n] / 16.0
    return x, d.target[offset:offset + n].astype(np.int64)


def rgb12(n: int = 3, seed: int = 0) -> np.ndarray:
    """``n`` 3x12x12 uniform-noise frames (values in [0, 1])."""
    return np.random.default_rng(seed).random((n, 3, 12, 12)).astype(np.float32)


def _is_neuron(m: Any) -> bool:
    mod = type(m).__module__
    return ((mod.startswith("snntorch") and hasattr(m, "reset_mem"))
            or (mod.startswith("spikingjelly") and "neuron" in mod) or hasattr(m, "snnsim_neuron"))


def _reset(model: Any) -> None:
    for m in model.modules():
        if _is_neuron(m):
            (getattr(m, "reset_mem", None) or m.reset)()


def _run(model: Any, x: Any, steps: int, multi: bool) -> Any:
    """The model's output summed over ``steps`` (direct encoding), from reset neurons."""
    _reset(model)
    if multi:
        return model(x.unsqueeze(0).repeat(steps, *([1] * x.dim()))).sum(0)
    total = 0
    for _ in range(steps):
        o = model(x)
        total = total + (o[0] if isinstance(o, tuple) else o)
    return total


def train(model: Any, x: np.ndarray, steps: int, multi: bool = False, iters: int = 3,
          labels: np.ndarray | None = None, lr: float = 0.03) -> Any:
    """A few sign-gradient steps (fixed seed) on random targets, or on ``labels`` by cross
    entropy: weights, biases and batch-norm statistics move away from their initial values."""
    torch = _torch()
    torch.manual_seed(1)
    xt = torch.as_tensor(x)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    for _ in range(iters):
        for p in params:
            p.grad = None
        out = _run(model, xt, steps, multi).float().flatten(1)
        if labels is not None and out.shape[1] > int(labels.max()):
            loss = torch.nn.functional.cross_entropy(out, torch.as_tensor(labels))
        else:
            loss = ((out - torch.rand_like(out)) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.sub_(lr * p.grad.sign())
    model.eval()
    _reset(model)
    return model


def _export_torch(model: Any, x: np.ndarray, steps: int, name: str, path: Path) -> Any:
    from snnsim.export import from_torch

    _reset(model)
    return from_torch(model, x, steps, path, model_name=name, dataset="matrix")


def _scaled(layer: Any, factor: float) -> Any:
    """Multiply a layer's weights by ``factor`` (so that a small random network fires)."""
    torch = _torch()
    with torch.no_grad():
        layer.weight.mul_(factor)
    return layer


def _torch_model(name: str, framework: str, constructs: tuple[str, ...], build: Callable[[], Any],
                 x: Callable[[], np.ndarray], steps: int, *, multi: bool = False, labels: Any = None,
                 p2m_refusal: str | None = None, why_not_p2m: str = "",
                 conventional_refusal: str | None = None,
                 known_bugs: tuple[tuple[str, str], ...] = ()) -> MatrixModel:
    def export(path: Path) -> Any:
        torch = _torch()
        torch.manual_seed(0)
        model = build()
        inputs = x()
        train(model, inputs, steps, multi=multi, labels=labels() if callable(labels) else labels)
        return _export_torch(model, inputs, steps, name, path)

    return MatrixModel(name, framework, constructs, export, p2m_refusal, why_not_p2m, conventional_refusal,
                       known_bugs)


def _snn() -> Any:
    import snntorch

    return snntorch


def _sj() -> tuple[Any, Any, Any]:
    from spikingjelly.activation_based import functional, layer, neuron

    return neuron, layer, functional


def _nn() -> Any:
    return _torch().nn


# ----------------------------------------------------------------------------- snnTorch

def model_snntorch_tutorial_cnn() -> MatrixModel:
    """snnTorch tutorial 6's CNN exactly, biases on, on the digits (12x12: 5x5 conv -> 8x8)."""
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(nn.Conv2d(1, 8, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Conv2d(8, 16, 3), nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Flatten(), nn.Linear(16, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True))

    return _torch_model("snntorch_tutorial_cnn", "snntorch",
                        ("snntorch.tutorial_cnn", "snntorch.leaky", "conv2d", "bias.on", "maxpool.before_neuron",
                         "linear", "reset.subtract", "reset_delay.on", "input.mono"),
                        build, lambda: digits12(4)[0], 5, labels=lambda: digits12(4)[1],
                        p2m_refusal=NOT_IN_PIXEL, why_not_p2m="a max pool between the conv and the neuron")


def model_leaky_subtract_p2m() -> MatrixModel:
    """conv 2x2 stride 2 -> Leaky (subtract reset): the in-pixel layer a P2M chip computes."""
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv2d(1, 8, 2, stride=2), 3.0), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Flatten(), nn.Linear(8 * 36, 10), snn.Leaky(beta=0.8, init_hidden=True))

    return _torch_model("leaky_subtract_p2m", "snntorch",
                        ("snntorch.leaky", "reset.subtract", "reset_delay.on", "conv2d", "bias.on", "linear",
                         "input.mono"),
                        build, lambda: digits12(3)[0], 4, labels=lambda: digits12(3)[1])


def model_leaky_zero_reset_rgb() -> MatrixModel:
    """RGB input, conv 3x3 stride 3 -> Leaky with reset to zero."""
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv2d(3, 6, 3, stride=3), 2.0),
                             snn.Leaky(beta=0.7, threshold=0.6, reset_mechanism="zero", init_hidden=True),
                             nn.Flatten(), nn.Linear(6 * 16, 4), snn.Leaky(beta=0.9, init_hidden=True))

    return _torch_model("leaky_zero_reset_rgb", "snntorch",
                        ("snntorch.leaky", "reset.zero", "reset_delay.on", "conv2d", "bias.on", "input.rgb"),
                        build, lambda: rgb12(3), 5)


def model_leaky_no_reset() -> MatrixModel:
    """conv without bias -> Leaky with no reset (the membrane keeps integrating)."""
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv2d(1, 4, 2, stride=2, bias=False), 3.0),
                             snn.Leaky(beta=0.6, reset_mechanism="none", init_hidden=True),
                             nn.Flatten(), nn.Linear(4 * 36, 3, bias=False))

    return _torch_model("leaky_no_reset", "snntorch",
                        ("snntorch.leaky", "reset.none", "conv2d", "bias.off", "linear", "readout.no_neuron"),
                        build, lambda: digits12(3, 10)[0], 4)


def model_leaky_reset_delay_off() -> MatrixModel:
    """Leaky with reset_delay=False (subtract, then zero) in two layers."""
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv2d(1, 4, 3, stride=3), 3.0),
                             snn.Leaky(beta=0.8, threshold=0.7, reset_delay=False, init_hidden=True),
                             nn.Flatten(), nn.Linear(4 * 16, 6),
                             snn.Leaky(beta=0.8, reset_mechanism="zero", reset_delay=False, init_hidden=True))

    return _torch_model("leaky_reset_delay_off", "snntorch",
                        ("snntorch.leaky", "reset.subtract", "reset.zero", "reset_delay.off", "conv2d", "linear"),
                        build, lambda: digits12(3, 20)[0], 6)


def model_leaky_learned_beta_threshold() -> MatrixModel:
    """Per-neuron learned beta and threshold (trace arrays params/<node>/beta, .../threshold)."""
    def build() -> Any:
        torch, nn, snn = _torch(), _nn(), _snn()
        lif = snn.Leaky(beta=torch.rand(12) * 0.5 + 0.4, threshold=torch.rand(12) * 0.5 + 0.5, learn_beta=True,
                        learn_threshold=True, init_hidden=True)
        return nn.Sequential(nn.Flatten(), _scaled(nn.Linear(144, 12), 2.0), lif, nn.Linear(12, 3))

    return _torch_model("leaky_learned_beta_threshold", "snntorch",
                        ("snntorch.leaky", "learned.beta", "learned.threshold", "flatten.analog", "linear",
                         "readout.no_neuron"),
                        build, lambda: digits12(3, 30)[0], 4, p2m_refusal=NOT_IN_PIXEL,
                        why_not_p2m="flatten -> linear of the frame")


def model_synaptic() -> MatrixModel:
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv2d(1, 4, 2, stride=2), 3.0),
                             snn.Synaptic(alpha=0.7, beta=0.85, init_hidden=True), nn.Flatten(),
                             nn.Linear(4 * 36, 3))

    return _torch_model("synaptic", "snntorch", ("snntorch.synaptic", "conv2d", "linear", "readout.no_neuron"),
                        build, lambda: digits12(3, 40)[0], 5)


def model_rleaky_all_to_all() -> MatrixModel:
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv2d(1, 4, 3, stride=3), 2.0), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Flatten(), nn.Linear(64, 10),
                             snn.RLeaky(beta=0.9, linear_features=10, init_hidden=True), nn.Linear(10, 3))

    return _torch_model("rleaky_all_to_all", "snntorch", ("snntorch.rleaky", "snntorch.leaky", "conv2d", "linear"),
                        build, lambda: digits12(3, 50)[0], 6)


def model_rleaky_one_to_one() -> MatrixModel:
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(nn.Flatten(), _scaled(nn.Linear(144, 10), 2.0),
                             snn.RLeaky(beta=0.9, V=0.4, all_to_all=False, init_hidden=True), nn.Linear(10, 2))

    return _torch_model("rleaky_one_to_one_first_layer", "snntorch", ("snntorch.rleaky", "flatten.analog", "linear"),
                        build, lambda: digits12(3, 60)[0], 6, p2m_refusal=NOT_IN_PIXEL,
                        why_not_p2m="flatten -> linear of the frame")


def model_rleaky_one_to_one_after_conv() -> MatrixModel:
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv2d(1, 4, 3, stride=3), 2.0), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Flatten(), nn.Linear(64, 10),
                             snn.RLeaky(beta=0.9, V=0.4, all_to_all=False, init_hidden=True), nn.Linear(10, 2))

    return _torch_model("rleaky_one_to_one", "snntorch", ("snntorch.rleaky", "conv2d", "linear"),
                        build, lambda: digits12(3, 60)[0], 6)


def model_rsynaptic() -> MatrixModel:
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv2d(1, 4, 3, stride=3), 2.0), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Flatten(), nn.Linear(64, 10),
                             snn.RSynaptic(alpha=0.6, beta=0.9, linear_features=10, init_hidden=True),
                             nn.Linear(10, 2))

    return _torch_model("rsynaptic", "snntorch", ("snntorch.rsynaptic", "conv2d", "linear"),
                        build, lambda: digits12(3, 70)[0], 6)


def model_conv1d() -> MatrixModel:
    """conv1d on a (C, L) = (2, 16) signal -> Leaky -> max pool of spikes -> linear."""
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv1d(2, 4, 3, padding=1), 3.0), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.MaxPool1d(2), nn.Flatten(), nn.Linear(32, 2))

    return _torch_model("conv1d_signal", "snntorch", ("conv1d", "maxpool.after_neuron", "readout.no_neuron"),
                        build, lambda: np.random.default_rng(1).random((3, 2, 16)).astype(np.float32), 4,
                        p2m_refusal=NOT_AN_IMAGE, why_not_p2m="a (C, L) signal, not an image",
                        conventional_refusal=NOT_AN_IMAGE)


def model_conv3d() -> MatrixModel:
    """conv3d on a (C, D, H, W) = (1, 4, 8, 8) clip."""
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(_scaled(nn.Conv3d(1, 3, (2, 3, 3), stride=(1, 2, 2)), 3.0),
                             snn.Leaky(beta=0.9, init_hidden=True), nn.Flatten(), nn.Linear(81, 2))

    return _torch_model("conv3d_clip", "snntorch", ("conv3d", "linear", "readout.no_neuron"),
                        build, lambda: np.random.default_rng(2).random((2, 1, 4, 8, 8)).astype(np.float32), 3,
                        p2m_refusal=NOT_AN_IMAGE, why_not_p2m="a (C, D, H, W) clip, not an image",
                        conventional_refusal=NOT_AN_IMAGE)


def model_conv_batchnorm_p2m() -> MatrixModel:
    """conv (kernel = stride, no bias) -> trained BatchNorm2d -> Leaky: an in-pixel layer with an affine."""
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(nn.Conv2d(3, 8, 2, stride=2, bias=False), nn.BatchNorm2d(8),
                             snn.Leaky(beta=0.8, init_hidden=True), nn.Flatten(), nn.Linear(8 * 36, 4),
                             snn.Leaky(beta=0.8, init_hidden=True))

    return _torch_model("conv_batchnorm_p2m", "snntorch",
                        ("batchnorm", "conv2d", "bias.off", "input.rgb", "snntorch.leaky"),
                        build, lambda: rgb12(3, 1), 4)


def model_pools_after_neurons() -> MatrixModel:
    """Average pool and sum pool (avg_pool2d with divisor 1) of spikes, between two neurons."""
    torch = _torch()
    snn = _snn()

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = _scaled(torch.nn.Conv2d(1, 4, 2, stride=2), 3.0)
            self.lif = snn.Leaky(beta=0.9, init_hidden=True)
            self.avg = torch.nn.AvgPool2d(2)
            self.lif2 = snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True)
            self.lif3 = snn.Leaky(beta=1.0, threshold=1.5, init_hidden=True)

        def forward(self, x: Any) -> Any:
            s = self.lif(self.conv(x))
            a = self.lif2(self.avg(s))
            return self.lif3(torch.nn.functional.avg_pool2d(a, 3, divisor_override=1))

    return _torch_model("pools_after_neurons", "snntorch",
                        ("avgpool.after_neuron", "sumpool", "conv2d", "snntorch.leaky"),
                        Net, lambda: digits12(3, 80)[0], 5)


def model_flatten_linear() -> MatrixModel:
    def build() -> Any:
        nn, snn = _nn(), _snn()
        return nn.Sequential(nn.Flatten(), _scaled(nn.Linear(144, 10), 2.0), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Linear(10, 10, bias=False), snn.Leaky(beta=0.9, init_hidden=True))

    return _torch_model("flatten_linear", "snntorch", ("flatten.analog", "linear", "bias.on", "bias.off"),
                        build, lambda: digits12(4, 90)[0], 4, labels=lambda: digits12(4, 90)[1],
                        p2m_refusal=NOT_IN_PIXEL, why_not_p2m="flatten -> linear of the frame")


def all_models() -> list[MatrixModel]:
    """Every model of the matrix, in table order: snnTorch (here), then SpikingJelly and plain
    PyTorch (:mod:`models_spikingjelly`), then NIR and converted ANNs (:mod:`models_nir_ann`)."""
    import models_nir_ann
    import models_spikingjelly

    out = []
    for module in (sys.modules[__name__], models_spikingjelly, models_nir_ann):
        out += [getattr(module, name)() for name in module.ORDER]
    return out


ORDER = [
    "model_snntorch_tutorial_cnn", "model_leaky_subtract_p2m", "model_leaky_zero_reset_rgb", "model_leaky_no_reset",
    "model_leaky_reset_delay_off", "model_leaky_learned_beta_threshold", "model_synaptic",
    "model_rleaky_all_to_all", "model_rleaky_one_to_one", "model_rleaky_one_to_one_after_conv",
    "model_rsynaptic", "model_conv1d", "model_conv3d", "model_conv_batchnorm_p2m", "model_pools_after_neurons",
    "model_flatten_linear",
]
