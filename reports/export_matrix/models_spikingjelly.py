"""The SpikingJelly and plain-PyTorch models of the export matrix (see :mod:`models`):
SpikingJelly's IF, LIF and PLIF neurons in single- and multi-step mode, Spiking-ResNet and
SEW-ResNet blocks, pooling before neurons and a global-average-pool head, and a hand-written
neuron declaring its model with ``snnsim_neuron()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models import (
    NOT_IN_PIXEL,
    MatrixModel,
    _nn,
    _scaled,
    _sj,
    _torch,
    _torch_model,
    digits12,
    rgb12,
)

# ----------------------------------------------------------------------------- SpikingJelly

def _sj_net(node: Callable[[], Any], mode: str, rgb: bool = False) -> Any:
    """conv (kernel = stride) -> BN -> neuron -> maxpool -> flatten -> linear -> neuron -> linear,
    in single-step layers or, multi-step, the conv and BN in a SeqToANNContainer."""
    neuron, layer, functional = _sj()
    nn = _nn()
    c = 3 if rgb else 1
    front = ([layer.SeqToANNContainer(_scaled(nn.Conv2d(c, 4, 2, stride=2), 2.0), nn.BatchNorm2d(4))]
             if mode == "m" else [_scaled(layer.Conv2d(c, 4, 2, stride=2), 2.0), layer.BatchNorm2d(4)])
    net = nn.Sequential(*front, node(), layer.MaxPool2d(2), layer.Flatten(), layer.Linear(36, 8), node(),
                        layer.Linear(8, 2))
    functional.set_step_mode(net, mode)
    return net


def _sj_model(name: str, constructs: tuple[str, ...], node: Callable[[], Any], mode: str, steps: int,
              rgb: bool = False) -> MatrixModel:
    def build() -> Any:
        return _sj_net(node, mode, rgb)

    x = (lambda: rgb12(3, 2)) if rgb else (lambda: digits12(3, 100)[0])
    return _torch_model(name, "spikingjelly", (*constructs, "batchnorm", "maxpool.after_neuron",
                                               f"step.{'multi' if mode == 'm' else 'single'}"),
                        build, x, steps, multi=mode == "m")


def model_sj_if_single() -> MatrixModel:
    return _sj_model("sj_if_single_step", ("spikingjelly.if", "v_reset.0"), lambda: _sj()[0].IFNode(), "s", 4)


def model_sj_if_multi_soft_reset() -> MatrixModel:
    return _sj_model("sj_if_multi_step_v_reset_none", ("spikingjelly.if", "v_reset.none"),
                     lambda: _sj()[0].IFNode(v_reset=None), "m", 4)


def model_sj_lif_decay_input_false() -> MatrixModel:
    return _sj_model("sj_lif_decay_input_false", ("spikingjelly.lif", "decay_input.false", "v_reset.0"),
                     lambda: _sj()[0].LIFNode(tau=3.0, decay_input=False, v_reset=0.0), "m", 5)


def model_sj_lif_decay_input_true() -> MatrixModel:
    return _sj_model("sj_lif_decay_input_true_rgb", ("spikingjelly.lif", "decay_input.true", "v_reset.none",
                                                     "input.rgb"),
                     lambda: _sj()[0].LIFNode(tau=2.0, decay_input=True, v_reset=None), "s", 5, rgb=True)


def model_sj_plif() -> MatrixModel:
    return _sj_model("sj_plif_multi_step", ("spikingjelly.plif",),
                     lambda: _sj()[0].ParametricLIFNode(init_tau=2.5, v_reset=-0.1), "m", 4)


class _Blocks:
    """Spiking-ResNet and SEW-ResNet basic blocks as SpikingJelly writes them (after its
    ``model/spiking_resnet.py`` and ``model/sew_resnet.py``)."""

    @staticmethod
    def basic(neuron: Callable[[], Any], c: int) -> Any:
        torch = _torch()
        nn = torch.nn

        class Basic(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
                self.sn1 = neuron()
                self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
                self.sn2 = neuron()

            def forward(self, x: Any) -> Any:  # spiking ResNet: sn2(bn2(conv2(...)) + x)
                out = self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x)))))
                return self.sn2(out + x)

        return Basic()

    @staticmethod
    def sew(neuron: Callable[[], Any], c: int, cnf: str) -> Any:
        torch = _torch()
        nn = torch.nn

        class Sew(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
                self.sn1 = neuron()
                self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
                self.sn2 = neuron()

            def forward(self, x: Any) -> Any:
                out = self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x))))))
                return x + out if cnf == "ADD" else x * (1.0 - out)  # sew_function ADD / IAND

        return Sew()


def model_spiking_resnet_block() -> MatrixModel:
    def build() -> Any:
        torch = _torch()
        neuron, layer, _ = _sj()
        nn = torch.nn

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.stem = _scaled(layer.Conv2d(1, 4, 2, stride=2), 2.0)
                self.sn0 = neuron.IFNode()
                self.block = _Blocks.basic(neuron.IFNode, 4)
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(4, 3)

            def forward(self, x: Any) -> Any:
                return self.fc(torch.flatten(self.pool(self.block(self.sn0(self.stem(x)))), 1))

        return Net()

    return _torch_model("spiking_resnet_block", "spikingjelly",
                        ("spiking_resnet.add", "spikingjelly.if", "batchnorm", "adaptive_avgpool", "gap_head",
                         "bias.off", "readout.no_neuron"),
                        build, lambda: digits12(3, 110)[0], 4)


def _sew_model(cnf: str) -> MatrixModel:
    def build() -> Any:
        torch = _torch()
        neuron, layer, _ = _sj()
        nn = torch.nn

        def lif() -> Any:
            return neuron.IFNode(v_threshold=0.5)

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.stem = _scaled(layer.Conv2d(1, 4, 2, stride=2), 2.0)
                self.sn0 = lif()
                self.b1, self.b2 = _Blocks.sew(lif, 4, cnf), _Blocks.sew(lif, 4, cnf)
                self.fc = nn.Linear(4 * 36, 3)

            def forward(self, x: Any) -> Any:
                return self.fc(self.b2(self.b1(self.sn0(self.stem(x)))).flatten(1))

        return Net()

    return _torch_model(f"sew_resnet_{cnf.lower()}", "spikingjelly",
                        (f"sew.{cnf.lower()}", "spikingjelly.if", "batchnorm", "readout.no_neuron"),
                        build, lambda: digits12(3, 120)[0], 4)


def model_sew_add() -> MatrixModel:
    return _sew_model("ADD")


def model_sew_iand() -> MatrixModel:
    return _sew_model("IAND")


def model_gap_head() -> MatrixModel:
    """conv -> BN -> IF -> global average pool -> linear head."""
    def build() -> Any:
        nn = _nn()
        neuron = _sj()[0]
        return nn.Sequential(nn.Conv2d(3, 6, 3, stride=3), nn.BatchNorm2d(6), neuron.IFNode(v_threshold=0.5),
                             nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(6, 3))

    return _torch_model("gap_linear_head", "spikingjelly",
                        ("gap_head", "adaptive_avgpool", "batchnorm", "spikingjelly.if", "readout.no_neuron",
                         "input.rgb"), build, lambda: rgb12(3, 3), 4)


def model_pools_before_neuron() -> MatrixModel:
    """conv -> average pool of currents -> LIF, then conv -> adaptive average pool -> LIF."""
    def build() -> Any:
        nn = _nn()
        neuron = _sj()[0]
        return nn.Sequential(_scaled(nn.Conv2d(1, 4, 3, padding=1), 6.0), nn.AvgPool2d(2),
                             neuron.LIFNode(tau=2.0), _scaled(nn.Conv2d(4, 6, 3, padding=1), 4.0),
                             nn.AdaptiveAvgPool2d(3),
                             neuron.LIFNode(tau=2.0, v_threshold=0.5), nn.Flatten(), nn.Linear(54, 3))

    return _torch_model("pools_before_neuron", "spikingjelly",
                        ("avgpool.before_neuron", "adaptive_avgpool", "spikingjelly.lif", "conv2d"),
                        build, lambda: digits12(3, 130)[0], 4, p2m_refusal=NOT_IN_PIXEL,
                        why_not_p2m="an average pool between the conv and the neuron")


# ----------------------------------------------------------------------------- plain PyTorch

def model_plain_neuron() -> MatrixModel:
    """A hand-written PyTorch LIF (SpikingJelly's LIF without decay_input) declaring its model."""
    def build() -> Any:
        torch = _torch()
        nn = torch.nn

        class MyLIF(nn.Module):
            def __init__(self, tau: float = 2.0) -> None:
                super().__init__()
                self.tau, self.v = tau, None

            def reset(self) -> None:
                self.v = None

            def snnsim_neuron(self) -> tuple[str, dict[str, Any]]:
                return "spikingjelly.lif", {"tau": self.tau, "decay_input": False, "v_reset": 0.0,
                                            "v_threshold": 1.0}

            def forward(self, x: Any) -> Any:
                v = torch.zeros_like(x) if self.v is None else self.v
                v = v - (v - 0.0) / self.tau + x
                s = (v - 1.0 >= 0).float()
                self.v = s * 0.0 + (1 - s) * v
                return s

        return nn.Sequential(_scaled(nn.Conv2d(1, 3, 2, stride=2), 4.0), MyLIF(), nn.Flatten(), nn.Linear(108, 2))

    return _torch_model("plain_pytorch_neuron", "pytorch", ("plain.snnsim_neuron", "conv2d", "readout.no_neuron"),
                        build, lambda: digits12(3, 140)[0], 4)


ORDER = [
    "model_sj_if_single", "model_sj_if_multi_soft_reset", "model_sj_lif_decay_input_false",
    "model_sj_lif_decay_input_true", "model_sj_plif", "model_spiking_resnet_block", "model_sew_add",
    "model_sew_iand", "model_gap_head", "model_pools_before_neuron", "model_plain_neuron",
]
