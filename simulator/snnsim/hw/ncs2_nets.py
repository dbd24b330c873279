"""Published networks as dense-layer tables, for validating the NCS2 model (:mod:`.ncs2`) against
measured latencies without a spike trace.

:func:`mobilenet_v2` is MobileNet v2 (Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2:
Inverted Residuals and Linear Bottlenecks", CVPR 2018, Table 2) at width 1.0 and 224 x 224 x 3:
a 3x3 stride-2 conv of 32 channels; 17 inverted-residual bottlenecks (t, c, n, s) = (1, 16, 1, 1),
(6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1), each a
1x1 expansion to t x C_in channels (absent when t = 1), a 3x3 depthwise conv (stride s in the first
repetition, padding 1), a 1x1 linear projection, and a residual add when the stride is 1 and the
channels match; a 1x1 conv to 1280 channels; a 7x7 global average pool; a fully connected layer
to 1001 classes (the TensorFlow-slim / OpenVINO model has a background class [R, high]). Batch
norm is folded: every conv has a bias of C_out values. The paper gives 300 M multiply-adds and
3.4 M parameters; the table has 300.8 M MACs in its convolutions and FC and 3.5 M weights
(biases included). The measured latencies are the NCS2 rows of pim-loihi-ncs2.md C.2
(``aallan/benchmarking-ml-on-the-edge``): 80.4 ms over USB3, 118.6 ms over USB2.
"""

from __future__ import annotations

from .ncs2_graph import DenseLayer

#: measured NCS2 latency of MobileNet v2 (pim-loihi-ncs2.md C.2 [V]), ms
MOBILENET_V2_USB3_MS = 80.4
MOBILENET_V2_USB2_MS = 118.6
#: Table 2 of Sandler et al. 2018: expansion t, output channels c, repetitions n, first stride s
MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))
MOBILENET_V2_INPUT = (3, 224, 224)
MOBILENET_V2_CLASSES = 1001


def _out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def mobilenet_v2(classes: int = MOBILENET_V2_CLASSES) -> tuple[list[DenseLayer], int, int]:
    """MobileNet v2 (width 1.0, 224 x 224 x 3) as (dense layers, input values, output values)."""
    layers: list[DenseLayer] = []

    def conv(name: str, c_in: int, c_out: int, hw_in: int, k: int, s: int, depthwise: bool = False) -> int:
        hw_out = _out(hw_in, k, s, k // 2)
        per_out = (1 if depthwise else c_in) * k * k
        size = c_out * hw_out * hw_out
        layers.append(DenseLayer(name, name, "depthwise" if depthwise else "conv", size * per_out,
                                 c_out * per_out + c_out, c_in * hw_in * hw_in, size))
        return hw_out

    c, hw = 32, conv("conv0", 3, 32, 224, 3, 2)
    for b, (t, c_out, n, s) in enumerate(MOBILENET_V2_BLOCKS):
        for r in range(n):
            name = f"block{b}_{r}"
            stride = s if r == 0 else 1
            mid = c * t
            if t != 1:
                conv(f"{name}.expand", c, mid, hw, 1, 1)
            hw_out = conv(f"{name}.dw", mid, mid, hw, 3, stride, depthwise=True)
            conv(f"{name}.project", mid, c_out, hw_out, 1, 1)
            if stride == 1 and c == c_out:
                size = c_out * hw_out * hw_out
                layers.append(DenseLayer(f"{name}.add", f"{name}.add", "eltwise", size, 0, 2 * size, size))
            c, hw = c_out, hw_out
    hw = conv("conv_last", c, 1280, hw, 1, 1)
    layers.append(DenseLayer("avgpool", "avgpool", "pool", 1280 * hw * hw, 0, 1280 * hw * hw, 1280))
    layers.append(DenseLayer("fc", "fc", "fc", 1280 * classes, 1280 * classes + classes, 1280, classes))
    c_in, h, w = MOBILENET_V2_INPUT
    return layers, c_in * h * w, classes
