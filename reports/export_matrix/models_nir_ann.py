"""The NIR graphs and converted ANNs of the export matrix (see :mod:`models`): NIR's Conv2d,
Affine, Linear, Flatten, IF, LIF, CubaLIF, LI and SumPool2d primitives imported with
``snnsim.export.nir.nir_to_trace``, and small ReLU CNNs trained on the digits converted by
``snnsim.export.ann.from_ann`` (max and percentile normalisation, direct and rate input)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from models import (
    NOT_IN_PIXEL,
    MatrixModel,
    _torch,
    digits12,
)

# ----------------------------------------------------------------------------- NIR

def _nir_graph(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> Any:
    import nir

    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _nir_chain(shape_in: list[int], *named: tuple[str, Any]) -> Any:
    import nir

    nodes = {"input": nir.Input(input_type={"input": np.array(shape_in)}), **dict(named),
             "output": nir.Output(output_type={"output": np.array([1])})}
    names = list(nodes)
    return _nir_graph(nodes, list(zip(names[:-1], names[1:], strict=True)))


def _nir_weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Multiples of 1/4 in [-1, 1] (exact in float32)."""
    return rng.integers(-4, 5, size=shape) / 4.0


def _nir_model(name: str, constructs: tuple[str, ...], graph: Callable[[], Any], x: Callable[[], np.ndarray],
               steps: int, **kw: Any) -> MatrixModel:
    def export(path: Path) -> Any:
        from snnsim.export.nir import nir_to_trace

        return nir_to_trace(graph(), path, inputs=x(), time_steps=steps, dt=1.0, model=name, dataset="matrix")

    return MatrixModel(name, "nir", constructs, export, **kw)


def model_nir_conv_if_sumpool() -> MatrixModel:
    """NIR Conv2d (2x2 stride 2) -> IF -> SumPool2d -> IF -> Flatten -> Affine -> LI readout."""
    def graph() -> Any:
        import nir

        rng = np.random.default_rng(11)
        w = _nir_weights(rng, (4, 1, 2, 2)) + 0.5
        s6, s3 = (4, 6, 6), (4, 3, 3)
        return _nir_chain(
            [1, 12, 12],
            ("conv", nir.Conv2d(input_shape=(12, 12), weight=w, stride=2, padding=0, dilation=1, groups=1,
                                bias=np.array([0.25, 0.0, -0.25, 0.5]))),
            ("if1", nir.IF(r=np.ones(s6), v_threshold=np.full(s6, 0.75))),
            ("pool", nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))),
            ("if2", nir.IF(r=np.ones(s3), v_threshold=np.full(s3, 1.5))),
            ("flat", nir.Flatten(input_type={"input": np.array(s3)}, start_dim=0, end_dim=-1)),
            ("fc", nir.Affine(weight=_nir_weights(rng, (3, 36)), bias=_nir_weights(rng, 3))),
            ("li", nir.LI(tau=np.full(3, 2.0), r=np.ones(3), v_leak=np.zeros(3))))

    return _nir_model("nir_conv_if_sumpool_li", ("nir.conv2d", "nir.if", "nir.sumpool2d", "nir.affine", "nir.li",
                                                 "sumpool", "readout.no_neuron"),
                      graph, lambda: digits12(3, 150)[0], 5)


def model_nir_lif_affine() -> MatrixModel:
    """NIR Flatten of the frame -> Affine -> LIF -> Affine -> LIF."""
    def graph() -> Any:
        import nir

        rng = np.random.default_rng(12)
        return _nir_chain(
            [1, 12, 12],
            ("flat", nir.Flatten(input_type={"input": np.array([1, 12, 12])}, start_dim=0, end_dim=-1)),
            ("fc", nir.Affine(weight=_nir_weights(rng, (8, 144)) / 4, bias=_nir_weights(rng, 8))),
            ("lif", nir.LIF(tau=np.full(8, 4.0), r=np.full(8, 2.0), v_leak=np.full(8, 0.25),
                            v_threshold=np.full(8, 1.0), v_reset=np.full(8, -0.5))),
            ("fc2", nir.Affine(weight=_nir_weights(rng, (3, 8)), bias=_nir_weights(rng, 3))),
            ("lif2", nir.LIF(tau=np.full(3, 2.0), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.5))))

    return _nir_model("nir_affine_lif", ("nir.affine", "nir.lif", "flatten.analog"), graph,
                      lambda: digits12(3, 160)[0], 6, p2m_refusal=NOT_IN_PIXEL,
                      why_not_p2m="flatten -> linear of the frame")


def model_nir_cubalif() -> MatrixModel:
    """NIR Conv2d (3x3 stride 3) -> CubaLIF -> Flatten -> Linear -> IF."""
    def graph() -> Any:
        import nir

        rng = np.random.default_rng(13)
        s = (4, 4, 4)
        return _nir_chain(
            [1, 12, 12],
            ("conv", nir.Conv2d(input_shape=(12, 12), weight=_nir_weights(rng, (4, 1, 3, 3)) + 0.25, stride=3,
                                padding=0, dilation=1, groups=1, bias=np.zeros(4))),
            ("cuba", nir.CubaLIF(tau_syn=np.full(s, 2.0), tau_mem=np.full(s, 4.0), r=np.full(s, 2.0),
                                 v_leak=np.zeros(s), v_threshold=np.full(s, 0.5), w_in=np.full(s, 1.5))),
            ("flat", nir.Flatten(input_type={"input": np.array(s)}, start_dim=0, end_dim=-1)),
            ("fc", nir.Linear(weight=_nir_weights(rng, (3, 64)))),
            ("if", nir.IF(r=np.ones(3), v_threshold=np.ones(3))))

    return _nir_model("nir_cubalif", ("nir.cubalif", "nir.conv2d", "nir.if"), graph,
                      lambda: digits12(3, 170)[0], 6)


# ----------------------------------------------------------------------------- converted ANNs

def _digits_ann(first: str) -> Any:
    """A small ReLU CNN for 12x12 digits, trained a few Adam-free sign steps by cross entropy.
    ``first``: ``in_pixel`` (conv 2x2 stride 2 -> BN -> ReLU, what P2M computes) or ``padded``."""
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(0)
    head = ([nn.Conv2d(1, 8, 2, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
             nn.AvgPool2d(2), nn.Flatten(), nn.Linear(72, 10)] if first == "in_pixel" else
            [nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
             nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(72, 10)])
    model = nn.Sequential(*head)
    x, y = digits12(256, 200)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    model.train()
    for i in range(30):
        b = slice((i * 64) % 256, (i * 64) % 256 + 64)
        for p in model.parameters():
            p.grad = None
        torch.nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(0.01 * p.grad.sign())
    model.eval()
    return model


def _ann_model(name: str, first: str, method: str, coding: str, steps: int, **kw: Any) -> MatrixModel:
    def export(path: Path) -> Any:
        from snnsim.export.ann import from_ann

        model = _digits_ann(first)
        cal, _ = digits12(128, 200)
        xe, ye = digits12(3, 500)
        return from_ann(model, cal, steps, path, method=method, input_coding=coding, maxpool="current",
                        eval_inputs=xe, eval_labels=ye, model_name=name, dataset="digits")

    cons = (f"ann.{method}", f"ann.{coding}", "bias.on", "readout.no_neuron", "spikingjelly.if", "v_reset.none")
    return MatrixModel(name, "ann", cons + (("batchnorm",) if first == "in_pixel" else ("maxpool.before_neuron",)),
                       export, **kw)


def model_ann_max_direct() -> MatrixModel:
    return _ann_model("ann_max_direct", "in_pixel", "max", "direct", 6)


def model_ann_percentile_direct() -> MatrixModel:
    return _ann_model("ann_percentile_direct_padded", "padded", "percentile", "direct", 6,
                      p2m_refusal=NOT_IN_PIXEL, why_not_p2m="a max pool between the conv and the neuron")


def model_ann_max_rate() -> MatrixModel:
    return _ann_model("ann_max_rate", "in_pixel", "max", "rate", 6, p2m_refusal=NOT_IN_PIXEL,
                      why_not_p2m="a rate-coding neuron on the frame before the conv")


def model_ann_percentile_rate() -> MatrixModel:
    return _ann_model("ann_percentile_rate", "padded", "percentile", "rate", 5, p2m_refusal=NOT_IN_PIXEL,
                      why_not_p2m="a rate-coding neuron on the frame before the conv")


ORDER = [
    "model_nir_conv_if_sumpool", "model_nir_lif_affine", "model_nir_cubalif",
    "model_ann_max_direct", "model_ann_percentile_direct", "model_ann_max_rate", "model_ann_percentile_rate",
]
