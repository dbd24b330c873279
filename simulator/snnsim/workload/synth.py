"""Synthetic spike traces: a real forward pass of an untrained, activity-calibrated SNN on real
images.

The network has random binary weights after its first layer, so its outputs mean nothing; its
*activity* is made realistic instead: every layer's per-channel IF thresholds are calibrated so
that the layer fires at a target rate. That is what a hardware-cost simulation needs (event
counts, their spatial structure driven by real images, layer shapes), not accuracy.

Forward pass: direct encoding (the same analog image at every time step). Layer 0 (``conv0``) is
either

- an *in-pixel* convolution (``extra["in_pixel"]``; topologies ``resnet18``, ``small_cnn``,
  ``vgg_small``) computed by the sensor with the P2M pixel transfer curve
  (:func:`snnsim.hw.pixel_curve.p2m_conv2d`), its IF neuron in float64 with float thresholds, or
- a *digital multi-bit encoding layer* (the VSA topologies): 8-bit unsigned inputs
  ``x_q = round(255 x)`` times 8-bit sign-magnitude weights ``w_q`` (integers in -127..127,
  weights stored as ``w = alpha w_q / 127``), summed exactly as integers.

Every later synaptic layer has random +-1 weights (scale 1): its input current is the exact
integer sum of +-1 over the input spikes. Pools and residual adds count spikes. Every layer
after the sensor runs the core's integer arithmetic (``docs/verify.md``): currents in a per-layer
unit ``u``, integer thresholds ``theta / u``, membranes saturating to signed ``m``-bit integers
(``membrane_bits``, 16 by default, as the core's default):

    v[t] = clip(v[t-1] + I[t], -2^(m-1), 2^(m-1) - 1);  spike if v[t] >= theta;  then v[t] -= theta

so ``snnsim verify`` recomputes every recorded spike bit for bit. Layers run in topological
order over all T steps at once (the graph is feed-forward).

Calibration (one pass, layer by layer): each channel gets a target rate (the layer target spread
log-normally across channels, mean preserved). For integer layers the threshold is found by
bisection over the integers 1 .. 2^(m-1) - 1 on the real T-step dynamics of that channel's currents
(over all samples and positions); for the in-pixel layer by bisection on the float dynamics, then
moved to the middle of its plateau of the rate-versus-threshold step function (so no neuron sits
on a tie). The final choice between the two bracketing thresholds carries the rounding error
from channel to channel so that the layer's mean rate lands on its target.

The weights of layers after ``conv0`` are drawn from an independent stream per layer, so they
depend only on the seed and the topology; ``conv0``'s also on the images (a channel whose
current can never reach a positive threshold gets its weights negated).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import UsageError, did_you_mean
from ..hw.pixel_curve import COEFFICIENTS, p2m_conv2d, quantize_weights
from .graph import Layer, Neuron, check_graph, infer_out_shape
from .trace import Workload, pack_spikes

GENERATOR = "snnsim.workload.synth"
GENERATOR_VERSION = 2

#: Topology name -> short description.
TOPOLOGIES: dict[str, str] = {
    "resnet18": "ImageNet ResNet-18 (224x224 RGB), stem replaced by an in-pixel conv k4 s4 -> 56x56; "
                "SEW-style spiking residual adds; 1000-way linear classifier",
    "small_cnn": "tiny test network (32x32 RGB): in-pixel conv, two 3x3 convs joined by an add, "
                 "maxpool, grouped conv, avgpool, linear 10",
    "vgg_small": "small VGG (64x64 RGB): in-pixel conv, 3x3 convs 32-32-M-64-64-M-128-128-M, "
                 "global avgpool, linear 10",
    "vsa_cifar10": "VSA-style CIFAR-10 network (3x32x32 photo crops): digital 8-bit encoding conv "
                   "3->64 k3 p1, binary convs 128-M-256-M-256-M (M = maxpool 2, OR of spikes), "
                   "fc 4096->512 with neuron, fc 512->10; T = 8 by default",
    "vsa_mnist": "VSA-style MNIST network (1x28x28 handwritten digits): digital 8-bit encoding conv "
                 "1->32 k3 p1, binary convs 32-M-64-M, fc 3136->256 with neuron, fc 256->10; "
                 "T = 8 by default",
    "small_vsa": "tiny test network (16x16 RGB) with a digital 8-bit encoding conv 3->8 k3 p1, "
                 "conv 16, maxpool, grouped conv, avgpool, fc 32 with neuron, fc 10",
}

#: Topologies whose conv0 is a digital multi-bit encoding layer (run by the core, not the pixels);
#: they ignore ``out_channels`` and ``first_layer_weight_bits`` (their conv0 is fixed).
ENCODING_TOPOLOGIES = ("vsa_cifar10", "vsa_mnist", "small_vsa")

_DEFAULT_IMAGE_SIZE = {"resnet18": 224, "small_cnn": 32, "vgg_small": 64, "vsa_cifar10": 32,
                       "vsa_mnist": 28, "small_vsa": 16}
_MIN_IMAGE_SIZE = {"resnet18": 32, "small_cnn": 16, "vgg_small": 32, "vsa_cifar10": 8,
                   "vsa_mnist": 4, "small_vsa": 4}
_INPUT_CHANNELS = {"vsa_mnist": 1}
#: Time steps when ``time_steps`` is not given (8 for the VSA networks, as in the VSA paper).
_DEFAULT_TIME_STEPS = {"vsa_cifar10": 8, "vsa_mnist": 8, "small_vsa": 8}

#: The core's arithmetic the traces are made with (``docs/verify.md``): membranes are signed
#: integers of this many bits (the default of ``core.membrane_bits``), saturating.
MEMBRANE_BITS = 16
#: Bits of the unsigned input integers an encoding layer reads (``core.input_bits``).
INPUT_BITS = 8
#: Sign-magnitude weight bits of an encoding layer (magnitudes 0..127).
ENCODING_WEIGHT_BITS = 8
#: Encoding-layer weights are stored as w_q * 2^-15 * (2^8 - 1): the scale (the largest magnitude)
#: is alpha = 127 * 255 / 2^15, so the current unit alpha / (255 * 127) is exactly 2^-15 and every
#: integer threshold theta_int * 2^-15 is exact in float32.
_ENCODING_UNIT = 2.0 ** -15

#: Log-normal sigma of the per-channel target rates around a layer's target (default).
DEFAULT_RATE_SPREAD = 0.5

_BISECTION_STEPS = 32

#: Bounds of the sizes :func:`synthesize` accepts, each far above any study's, refused before
#: anything is allocated. The memory and work caps below bound their products.
MAX_SAMPLES = 100_000
MAX_TIME_STEPS = 10_000
MAX_IMAGE_SIZE = 4096
MAX_OUT_CHANNELS = 4096
#: Cap of a synthesis's estimated peak memory (:func:`estimate_synthesis`): the trace's input and
#: spikes plus the forward pass's working arrays. The estimate is within about 30 % of the peak
#: measured with tracemalloc on resnet18, vgg_small, small_cnn and vsa_cifar10.
MAX_MEMORY_BYTES = 8 * 2 ** 30
#: Cap of a synthesis's estimated work in neuron updates (neurons x time steps x samples; the
#: calibration's bisection passes are proportional to it). 2.8 to 9 million updates per second were
#: measured on one core (resnet18 from 224 to 4096 pixels, vsa_cifar10, small_cnn), so the cap
#: keeps a synth under about 3 minutes; the shipped traces need 5 % of it at most.
MAX_NEURON_STEPS = 500_000_000

STATEMENT = ("untrained network (random binary weights), calibrated activity, real images: "
             "for hardware cost, not accuracy")
DATASET = "photos (matplotlib/scikit-image samples)"

_PHOTO_SOURCES = {
    "grace_hopper": "matplotlib sample data grace_hopper.jpg (Grace M. Hopper, U.S. Navy photograph, "
                    "public domain)",
    "astronaut": "scikit-image skimage.data.astronaut (Eileen Collins, NASA, public domain)",
    "coffee": "scikit-image skimage.data.coffee (Rachel Michetti, CC0)",
    "chelsea": "scikit-image skimage.data.chelsea (Stefan van der Walt, CC0)",
    "rocket": "scikit-image skimage.data.rocket (SpaceX DSCOVR launch, public domain)",
}
_SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
_DIGITS_SOURCE = ("scikit-learn sklearn.datasets.load_digits: the UCI ML hand-written digits data set "
                  "(E. Alpaydin, C. Kaynak, 1998; CC BY 4.0), 8x8 pixels, 17 grey levels")


# ----------------------------------------------------------------------------- argument checks

def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}", key=name,
                         expected=f"an integer >= {minimum}" + (f" and <= {maximum:,}" if maximum else ""),
                         found=repr(value))
    if maximum is not None and value > maximum:
        raise UsageError(f"{name} out of range", key=name, expected=f"an integer in {minimum}..{maximum:,}",
                         found=f"{int(value):,}", suggestion=f"{name} at most {maximum:,}")
    return int(value)


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise UsageError(f"{name} must be a spike rate strictly between 0 and 1", key=name,
                         expected="a number in (0, 1) (spikes per neuron per time step)",
                         found=repr(value), suggestion="typical values are 0.02 to 0.3")
    return float(value)


# ----------------------------------------------------------------------------- images

@dataclass
class _Photo:
    name: str
    pixels: np.ndarray  # uint8 (H, W, 3)


@dataclass
class _Inputs:
    images: np.ndarray  # float32 (samples, C, H, W) in [0, 1]
    names: list[str]
    sources: dict[str, str]
    dataset: str
    preprocessing: str


def _load_photos() -> list[_Photo]:
    """The available photos, in a fixed order: matplotlib's, then scikit-image's if installed."""
    import matplotlib.image as mpimg
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photos = [_Photo("grace_hopper", _rgb8(mpimg.imread(path)))]
    try:
        import skimage.data as skdata
    except ImportError:
        return photos
    for name in _SKIMAGE_PHOTOS:
        try:
            photos.append(_Photo(name, _rgb8(getattr(skdata, name)())))
        except (AttributeError, OSError, ValueError):
            continue
    return photos


def _rgb8(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float64) * (255.0 if a.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def _area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) box-filter resampling matrix: each output pixel averages the source interval it
    covers (area interpolation; exact anti-aliasing when shrinking)."""
    edges = np.arange(dst + 1, dtype=np.float64) * (src / dst)
    j = np.arange(src, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _linear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) bilinear resampling matrix (pixel centres aligned, edges clamped)."""
    pos = np.clip((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5, 0.0, src - 1.0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, src - 1)
    f = pos - i0
    m = np.zeros((dst, src))
    rows = np.arange(dst)
    np.add.at(m, (rows, i0), 1.0 - f)
    np.add.at(m, (rows, i1), f)
    return m


def _on_grid(x: np.ndarray, bits: int) -> np.ndarray:
    """Round [0, 1] values to the unsigned ``bits`` grid k / (2^bits - 1), as float32."""
    levels = 2 ** bits - 1
    return (np.rint(np.clip(x.astype(np.float64), 0.0, 1.0) * levels) / levels).astype(np.float32)


def _prepare_image(pixels: np.ndarray, size: int, top: int, left: int, side: int, flip: bool) -> np.ndarray:
    crop = pixels[top:top + side, left:left + side].astype(np.float64) / 255.0
    if flip:
        crop = crop[:, ::-1]
    r = _area_matrix(side, size)
    out = np.stack([r @ crop[:, :, ch] @ r.T for ch in range(3)])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _images(samples: int, size: int, seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    """(samples, 3, size, size) float32 in [0, 1], the per-sample descriptions, the photo names.

    Samples cycle through the photos; the first round uses centre crops, later rounds random
    square crops (60-90 % of the short side) and horizontal flips drawn from the seed.
    """
    photos = _load_photos()
    out = np.empty((samples, 3, size, size), dtype=np.float32)
    names = []
    for i in range(samples):
        photo = photos[i % len(photos)]
        h, w = photo.pixels.shape[:2]
        short = min(h, w)
        if i < len(photos):
            side, top, left, flip = short, (h - short) // 2, (w - short) // 2, False
            names.append(f"{photo.name} (centre crop {side}x{side})")
        else:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
            side = max(1, int(round(short * rng.uniform(0.6, 0.9))))
            top = int(rng.integers(0, h - side + 1))
            left = int(rng.integers(0, w - side + 1))
            flip = bool(rng.random() < 0.5)
            names.append(f"{photo.name} (crop {side}x{side} at row {top}, col {left}"
                         f"{', mirrored' if flip else ''})")
        out[i] = _prepare_image(photo.pixels, size, top, left, side, flip)
    used = [p.name for p in photos[:min(samples, len(photos))]]
    return out, names, used


def _photo_inputs(samples: int, size: int, seed: int, quantised: bool) -> _Inputs:
    images, names, used = _images(samples, size, seed)
    prep = "square crop, area (box-filter) resize"
    if quantised:
        images = _on_grid(images, INPUT_BITS)
        prep += f" to {size}x{size}, scaled to [0, 1] and rounded to the 8-bit grid k/255"
    else:
        prep += ", scaled to [0, 1]"
    return _Inputs(images, names, {n: _PHOTO_SOURCES[n] for n in used}, DATASET, prep + ", channels first")


def _digit_inputs(samples: int, size: int, seed: int) -> _Inputs:
    """MNIST-like digits: scikit-learn's 8x8 handwritten digits, bilinear-upsampled into a 20/28
    box centred in the frame (MNIST's layout), on the 8-bit grid. Without scikit-learn: grey-scale
    photo crops, said so in the names and the data set."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        photos = _photo_inputs(samples, size, seed, quantised=False)
        grey = np.tensordot(np.array([0.299, 0.587, 0.114]), photos.images.astype(np.float64), axes=(0, 1))
        images = _on_grid(grey[:, None], INPUT_BITS)
        return _Inputs(images, [f"grey {n}" for n in photos.names], photos.sources,
                       "grey-scale photos (fallback: scikit-learn not installed, no handwritten digits)",
                       photos.preprocessing.replace(", channels first", "") + ", ITU-R BT.601 luma, "
                       "rounded to the 8-bit grid k/255, 1 channel")
    digits = load_digits()
    box = min(size, max(2, int(round(size * 20 / 28))))
    off = (size - box) // 2
    r = _linear_matrix(8, box)
    out = np.zeros((samples, 1, size, size), dtype=np.float64)
    names = []
    for i in range(samples):
        idx = i % len(digits.images)
        img = r @ (np.asarray(digits.images[idx], dtype=np.float64) / 16.0) @ r.T
        out[i, 0, off:off + box, off:off + box] = img
        names.append(f"digit {int(digits.target[idx])} (load_digits index {idx})")
    prep = (f"8x8 digit (16 = ink) scaled to [0, 1], bilinear-upsampled to {box}x{box}, centred in "
            f"{size}x{size} (MNIST's 20-in-28 layout), rounded to the 8-bit grid k/255, 1 channel")
    return _Inputs(_on_grid(out, INPUT_BITS), names, {"load_digits": _DIGITS_SOURCE},
                   "handwritten digits (scikit-learn load_digits, MNIST-like)", prep)


def _inputs(topology: str, samples: int, size: int, seed: int) -> _Inputs:
    if topology == "vsa_mnist":
        return _digit_inputs(samples, size, seed)
    inputs = _photo_inputs(samples, size, seed, quantised=topology in ENCODING_TOPOLOGIES)
    if topology == "vsa_cifar10":
        inputs.dataset = f"photos (matplotlib/scikit-image samples), CIFAR-10-like {size}x{size} crops"
    return inputs


# ----------------------------------------------------------------------------- graph builder

class _Net:
    """Builds the layer list with shapes; every neuron is an IF, per-channel thresholds."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.layers: list[Layer] = []
        self.shapes: dict[str, tuple[int, ...]] = {"input": tuple(input_shape)}

    def _add(self, layer: Layer) -> str:
        layer.in_shape = self.shapes[layer.inputs[0]]
        layer.out_shape = infer_out_shape(layer, [self.shapes[s] for s in layer.inputs])
        self.layers.append(layer)
        self.shapes[layer.name] = layer.out_shape
        return layer.name

    @staticmethod
    def _neuron() -> Neuron:
        return Neuron(model="IF", threshold=1.0, leak=0.0, reset="subtract", per_channel=True)

    def conv(self, name: str, src: str, c_out: int, k: int, stride: int = 1, pad: int = 0,
             groups: int = 1, bits: int = 1, extra: dict[str, Any] | None = None) -> str:
        return self._add(Layer(name=name, op="conv2d", inputs=[src], out_shape=(c_out,), kernel=(k, k),
                               stride=(stride, stride), padding=(pad, pad), groups=groups,
                               weight_bits=bits, neuron=self._neuron(), extra=extra or {}))

    def pool(self, name: str, op: str, src: str, k: int, neuron: bool) -> str:
        return self._add(Layer(name=name, op=op, inputs=[src], out_shape=(), kernel=(k, k), stride=(k, k),
                               padding=(0, 0), neuron=self._neuron() if neuron else None))

    def add(self, name: str, srcs: list[str]) -> str:
        return self._add(Layer(name=name, op="add", inputs=list(srcs), out_shape=(), neuron=self._neuron()))

    def flatten(self, name: str, src: str) -> str:
        return self._add(Layer(name=name, op="flatten", inputs=[src], out_shape=()))

    def linear(self, name: str, src: str, out: int, neuron: bool) -> str:
        return self._add(Layer(name=name, op="linear", inputs=[src], out_shape=(out,),
                               neuron=self._neuron() if neuron else None))

    def in_pixel(self, c_out: int, bits: int) -> str:
        return self.conv("conv0", "input", c_out, 4, 4, 0, bits=bits,
                         extra={"in_pixel": True, "transfer_curve": "p2m_sci_rep_2022"})

    def encoding(self, c_out: int) -> str:
        """The digital multi-bit encoding layer: 3x3, padding 1, 8-bit weights, run by the core."""
        return self.conv("conv0", "input", c_out, 3, 1, 1, bits=ENCODING_WEIGHT_BITS)


def _build_resnet18(net: _Net, out_channels: int, bits: int) -> None:
    x = net.in_pixel(out_channels, bits)
    in_c = out_channels
    for stage, (c, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        for block in range(2):
            s = stride if block == 0 else 1
            pre = f"layer{stage}.{block}"
            h = net.conv(f"{pre}.conv1", x, c, 3, s, 1)
            h = net.conv(f"{pre}.conv2", h, c, 3, 1, 1)
            shortcut = x
            if s != 1 or in_c != c:
                shortcut = net.conv(f"{pre}.downsample", x, c, 1, s, 0)
            x = net.add(f"{pre}.add", [h, shortcut])
            in_c = c
    x = net.pool("avgpool", "avgpool", x, net.shapes[x][1], neuron=True)
    x = net.flatten("flatten", x)
    net.linear("fc", x, 1000, neuron=False)


def _build_small_cnn(net: _Net, out_channels: int, bits: int) -> None:
    x = net.in_pixel(out_channels, bits)
    a = net.conv("conv1", x, 16, 3, 1, 1)
    b = net.conv("conv2", a, 16, 3, 1, 1)
    x = net.add("add", [a, b])
    x = net.pool("maxpool", "maxpool", x, 2, neuron=False)
    x = net.conv("conv3", x, 16, 3, 1, 1, groups=2)
    x = net.pool("avgpool", "avgpool", x, 2, neuron=True)
    x = net.flatten("flatten", x)
    net.linear("fc", x, 10, neuron=False)


def _build_vgg_small(net: _Net, out_channels: int, bits: int) -> None:
    x = net.in_pixel(out_channels, bits)
    i = 1
    for stage, c in enumerate((32, 64, 128), start=1):
        for _ in range(2):
            x = net.conv(f"conv{i}", x, c, 3, 1, 1)
            i += 1
        x = net.pool(f"pool{stage}", "maxpool", x, 2, neuron=False)
    x = net.pool("avgpool", "avgpool", x, net.shapes[x][1], neuron=True)
    x = net.flatten("flatten", x)
    net.linear("fc", x, 10, neuron=False)


def _vsa_net(net: _Net, encoding_channels: int, convs: tuple[int, ...], hidden: int) -> None:
    """Encoding conv, then (binary conv 3x3 + OR max-pool) per entry of ``convs``, flatten,
    a spiking hidden linear layer and a 10-way classifier read out as membranes."""
    x = net.encoding(encoding_channels)
    for i, c in enumerate(convs, start=1):
        x = net.conv(f"conv{i}", x, c, 3, 1, 1)
        x = net.pool(f"pool{i}", "maxpool", x, 2, neuron=False)
    x = net.flatten("flatten", x)
    x = net.linear("fc1", x, hidden, neuron=True)
    net.linear("fc2", x, 10, neuron=False)


def _build_vsa_cifar10(net: _Net, out_channels: int, bits: int) -> None:
    _vsa_net(net, 64, (128, 256, 256), 512)


def _build_vsa_mnist(net: _Net, out_channels: int, bits: int) -> None:
    _vsa_net(net, 32, (32, 64), 256)


def _build_small_vsa(net: _Net, out_channels: int, bits: int) -> None:
    x = net.encoding(8)
    x = net.conv("conv1", x, 16, 3, 1, 1)
    x = net.pool("maxpool", "maxpool", x, 2, neuron=False)
    x = net.conv("conv2", x, 16, 3, 1, 1, groups=2)
    x = net.pool("avgpool", "avgpool", x, 2, neuron=True)
    x = net.flatten("flatten", x)
    x = net.linear("fc1", x, 32, neuron=True)
    net.linear("fc2", x, 10, neuron=False)


_BUILDERS = {"resnet18": _build_resnet18, "small_cnn": _build_small_cnn, "vgg_small": _build_vgg_small,
             "vsa_cifar10": _build_vsa_cifar10, "vsa_mnist": _build_vsa_mnist,
             "small_vsa": _build_small_vsa}


# ----------------------------------------------------------------------------- numerics

def _rng(seed: int, index: int, purpose: int) -> np.random.Generator:
    """An independent stream per (layer, purpose), so layers do not shift each other's draws."""
    return np.random.default_rng(np.random.SeedSequence([seed, 2, index, purpose]))


def _windows(x: np.ndarray, kernel: tuple[int, ...], stride: tuple[int, ...],
             padding: tuple[int, ...]) -> np.ndarray:
    """(B, C, H, W) -> view (B, C, H_o, W_o, kh, kw) of the (zero-padded) sliding windows."""
    (ph, pw), (sh, sw) = padding, stride
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return sliding_window_view(x, tuple(kernel), axis=(2, 3))[:, :, ::sh, ::sw]


def conv2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
           groups: int, dtype: Any = np.float32) -> np.ndarray:
    """Plain grouped 2-D convolution (cross-correlation) in ``dtype``: x (B, C, H, W),
    w (C_o, C/g, kh, kw) -> (B, C_o, H_o, W_o). Integer-valued operands give exact integer sums
    while every partial sum stays below 2^24 (float32) or 2^53 (float64)."""
    x = np.asarray(x, dtype=dtype)
    co, cg, kh, kw = w.shape
    win = _windows(x, (kh, kw), stride, padding)
    b, _, ho, wo = win.shape[:4]
    out = np.empty((b, ho, wo, co), dtype=dtype)
    cog = co // groups
    for g in range(groups):
        patches = win[:, g * cg:(g + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, cg * kh * kw)
        wg = np.ascontiguousarray(w[g * cog:(g + 1) * cog].reshape(cog, -1).T, dtype=dtype)
        out[..., g * cog:(g + 1) * cog] = (patches @ wg).reshape(b, ho, wo, cog)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def if_dynamics(current: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """IF neurons (leak 0, reset by subtraction) in float64, the in-pixel layer's arithmetic:
    current (T, N, C, ...) and per-channel thresholds (C,) -> bool spikes (T, N, C, ...)."""
    cur = np.asarray(current, dtype=np.float64)
    th = np.asarray(theta, dtype=np.float64).reshape((-1,) + (1,) * (cur.ndim - 3))
    v = np.zeros(cur.shape[1:], dtype=np.float64)
    out = np.empty(cur.shape, dtype=bool)
    for t in range(cur.shape[0]):
        v += cur[t]
        s = v >= th
        v -= s * th
        out[t] = s
    return out


def _int_dtype(cur: np.ndarray) -> Any:
    big = max(abs(int(cur.max(initial=0))), abs(int(cur.min(initial=0))))
    return np.int32 if big < 2 ** 30 else np.int64


def int_if_dynamics(current: np.ndarray, theta: np.ndarray,
                    membrane_bits: int = MEMBRANE_BITS) -> tuple[np.ndarray, tuple[int, int]]:
    """The core's IF neurons: integer currents (T, N, C, ...), integer per-channel thresholds (C,),
    membranes saturating to signed ``membrane_bits`` integers, reset by subtraction.
    Returns bool spikes (T, N, C, ...) and the numbers of membrane updates saturated at the top
    and at the bottom of the range."""
    cur = np.asarray(current)
    dt = _int_dtype(cur)
    lo, hi = -(2 ** (membrane_bits - 1)), 2 ** (membrane_bits - 1) - 1
    th = np.asarray(theta, dtype=dt).reshape((-1,) + (1,) * (cur.ndim - 3))
    v = np.zeros(cur.shape[1:], dtype=dt)
    out = np.empty(cur.shape, dtype=bool)
    top = bottom = 0
    for t in range(cur.shape[0]):
        v += cur[t].astype(dt, copy=False)
        top += int(np.count_nonzero(v > hi))
        bottom += int(np.count_nonzero(v < lo))
        np.clip(v, lo, hi, out=v)
        s = v >= th
        v -= s * th
        out[t] = s
    return out, (top, bottom)


def _int_channel_rates(cur: np.ndarray, theta: np.ndarray, membrane_bits: int = MEMBRANE_BITS) -> np.ndarray:
    """Per-channel spike rate of the core's integer IF neurons; cur (T, N, C, P), theta (C,)."""
    t_steps, n, c, p = cur.shape
    dt = _int_dtype(cur)
    lo, hi = -(2 ** (membrane_bits - 1)), 2 ** (membrane_bits - 1) - 1
    th = theta.astype(dt)[:, None]
    v = np.zeros((n, c, p), dtype=dt)
    count = np.zeros(c, dtype=np.int64)
    for t in range(t_steps):
        v += cur[t].astype(dt, copy=False)
        np.clip(v, lo, hi, out=v)
        s = v >= th
        v -= s * th
        count += s.sum(axis=(0, 2))
    return count / (t_steps * n * p)


def _calibrate_int(cur: np.ndarray, targets: np.ndarray, membrane_bits: int = MEMBRANE_BITS) -> np.ndarray:
    """Per-channel integer thresholds in 1..theta_max giving the target rates; cur (T, N, C, P)
    integer currents in the layer's unit.

    Bisection over the integers 1 .. 2^(membrane_bits - 1) - 1 on the real (saturating) IF rate
    finds, per channel, the smallest threshold whose rate is at most the target and the one below
    it; the choice between the two carries the rounding error across channels so that the layer's
    mean rate hits its target.
    """
    c = cur.shape[2]
    theta_max = 2 ** (membrane_bits - 1) - 1
    lo = np.zeros(c, dtype=np.int64)                   # rate(lo) > target (0: virtually)
    hi = np.full(c, theta_max + 1, dtype=np.int64)     # rate(hi) <= target (theta_max + 1: virtually)
    while np.any(hi - lo > 1):
        active = hi - lo > 1
        mid = np.where(active, (lo + hi) // 2, np.minimum(hi, theta_max))
        above = _int_channel_rates(cur, mid, membrane_bits) > targets
        lo = np.where(active & above, mid, lo)
        hi = np.where(active & ~above, mid, hi)
    theta_hi = np.minimum(hi, theta_max)
    theta_lo = np.where(lo >= 1, lo, theta_hi)
    r_hi = _int_channel_rates(cur, theta_hi, membrane_bits)
    r_lo = _int_channel_rates(cur, theta_lo, membrane_bits)
    return _closest_with_carry(theta_hi, theta_lo, r_hi, r_lo, targets)


def _channel_rates(cur: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Per-channel spike rate of float64 IF neurons; cur (T, N, C, P), theta (C,)."""
    t_steps, n, c, p = cur.shape
    th = theta.astype(np.float64)[:, None]
    v = np.zeros((n, c, p), dtype=np.float64)
    count = np.zeros(c, dtype=np.int64)
    for t in range(t_steps):
        v += cur[t]
        s = v >= th
        v -= s * th
        count += s.sum(axis=(0, 2))
    return count / (t_steps * n * p)


def _critical(cum: np.ndarray, x: np.ndarray, above: bool, strict: bool = True) -> np.ndarray:
    """Per channel, the nearest critical threshold above (or below) x.

    An IF neuron (reset by subtraction) spikes at step t iff S_t >= k theta, with S_t its
    cumulative input and k = 1 + its earlier spikes (1 <= k <= t). So the spike trains change only
    where theta crosses some S_t / k: the rate is constant between consecutive critical values.
    cum: (T, N, C, P) cumulative currents; x: (C,). Returns (C,) float64 (+-inf if none).
    """
    xc = x.astype(np.float64)[:, None]
    best = np.full(x.shape, np.inf if above else -np.inf)
    for t in range(cum.shape[0]):
        for k in range(1, t + 2):
            c = cum[t] / k
            if above:
                mask = (c > xc) if strict else (c >= xc)
                best = np.minimum(best, np.where(mask, c, np.inf).min(axis=(0, 2)))
            else:
                best = np.maximum(best, np.where((c < xc) & (c > 0), c, -np.inf).max(axis=(0, 2)))
    return best


def _midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.float64) + b.astype(np.float64)) / 2.0


def _as_stored(theta: np.ndarray) -> np.ndarray:
    """A threshold as the trace stores it (float32), back in float64."""
    return np.asarray(theta, dtype=np.float32).astype(np.float64)


def _calibrate(cur: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-channel float32 thresholds (> 0) giving the target rates; cur (T, N, C, P) float64.
    For the in-pixel layer, whose currents are real numbers.

    Bisection on the real IF rate brackets each channel's target between two plateaus of the
    rate-versus-threshold step function; each candidate threshold is then moved to the middle of
    its plateau (far from every tie v == theta, so any faithful re-implementation gives the same
    spikes). Thresholds stay above half the smallest positive input, so one input event never
    makes a neuron fire on its own for several steps. The choice between the two candidates (as
    stored, in float32) carries the rounding error across channels so that the layer's mean rate
    hits its target.
    """
    cum = np.cumsum(cur, axis=0, dtype=np.float64)
    smallest = np.where(cur > 0, cur, np.inf).min(axis=(0, 1, 3))
    silent = ~np.isfinite(smallest)  # no positive input: never fires at any threshold > 0
    lo0 = np.where(silent, 0.5, smallest / 2)
    first = _critical(cum, lo0, above=True)
    theta_max = np.where(np.isfinite(first), _midpoint(lo0, np.where(np.isfinite(first), first, 0)), 2 * lo0)
    reachable = (_channel_rates(cur, theta_max) > targets) & ~silent

    hi = np.maximum(cum.max(axis=(0, 1, 3)), lo0) * 1.001 + 1e-6
    lo = lo0.copy()
    for _ in range(_BISECTION_STEPS):
        mid = _midpoint(lo, hi)
        above = _channel_rates(cur, mid) > targets
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    at_floor = lo <= lo0
    b = np.where(at_floor, _critical(cum, lo, above=True, strict=True),
                 _critical(cum, lo, above=True, strict=False))
    b_ok = np.isfinite(b)
    bf = np.where(b_ok, b, hi)
    nxt = _critical(cum, bf, above=True)
    prev = np.maximum(_critical(cum, bf, above=False), lo0)
    theta_hi = np.where(np.isfinite(nxt), _midpoint(bf, np.where(np.isfinite(nxt), nxt, 0)), 2 * bf)
    theta_hi = np.where(b_ok, theta_hi, hi)
    theta_lo = np.where(b_ok & (bf > lo0), _midpoint(prev, bf), theta_hi)
    theta_hi = _as_stored(np.where(reachable, theta_hi, theta_max))
    theta_lo = _as_stored(np.where(reachable, theta_lo, theta_max))

    r_hi = _channel_rates(cur, theta_hi)
    r_lo = _channel_rates(cur, theta_lo)
    return _closest_with_carry(theta_hi, theta_lo, r_hi, r_lo, targets).astype(np.float32)


def _channel_targets(rate: float, channels: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    if spread <= 0 or channels == 1:
        return np.full(channels, rate)
    r = np.exp(spread * rng.standard_normal(channels))
    r = rate * r / r.mean()
    return np.clip(r, rate / 20.0, min(0.95, 1.0 - (1.0 - rate) / 20.0))


def _binary_weights(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, np.float32(-1.0), np.float32(1.0)).astype(np.float32)


def _encoding_levels(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Integer sign-magnitude weight levels (C_o, C, kh, kw) in -127..127 for an encoding layer:
    Laplace-distributed, each channel's mean removed (edge-like filters), scaled so that each
    channel's largest magnitude is exactly 127."""
    levels = 2 ** (ENCODING_WEIGHT_BITS - 1) - 1
    w = rng.laplace(0.0, 1.0, shape)
    w -= w.mean(axis=tuple(range(1, w.ndim)), keepdims=True)
    peak = np.abs(w).max(axis=tuple(range(1, w.ndim)), keepdims=True)
    return np.rint(w / peak * levels).astype(np.int64)


def _check_topology(topology: Any) -> str:
    if not isinstance(topology, str) or topology not in TOPOLOGIES:
        raise UsageError("unknown topology", key="topology", expected=f"one of {', '.join(TOPOLOGIES)}",
                         found=repr(topology), suggestion=did_you_mean(str(topology), TOPOLOGIES))
    return topology


def build_topology(topology: str, *, out_channels: int = 64, image_size: int | None = None,
                   first_layer_weight_bits: int = 4) -> list[Layer]:
    """The checked layer graph of a topology (shapes filled in, thresholds not yet calibrated).

    ``out_channels`` and ``first_layer_weight_bits`` shape the in-pixel ``conv0``; the topologies
    in :data:`ENCODING_TOPOLOGIES` ignore them (their 8-bit encoding layer is fixed)."""
    topology = _check_topology(topology)
    out_channels = _check_int("out_channels", out_channels, 1, MAX_OUT_CHANNELS)
    bits = _check_int("first_layer_weight_bits", first_layer_weight_bits, 1)
    if bits > 16:
        raise UsageError("first_layer_weight_bits out of range", key="first_layer_weight_bits",
                         expected="an integer in 1..16", found=repr(first_layer_weight_bits))
    minimum = _MIN_IMAGE_SIZE[topology]
    if image_size is None:
        image_size = _DEFAULT_IMAGE_SIZE[topology]
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < minimum:
        raise UsageError(f"image_size too small for {topology}", key="image_size",
                         expected=f"an integer >= {minimum}", found=repr(image_size),
                         suggestion=f"the default for {topology} is {_DEFAULT_IMAGE_SIZE[topology]}")
    image_size = _check_int("image_size", image_size, minimum, MAX_IMAGE_SIZE)
    shape = (_INPUT_CHANNELS.get(topology, 3), int(image_size), int(image_size))
    net = _Net(shape)
    _BUILDERS[topology](net, out_channels, bits)
    check_graph(net.layers, shape)
    return net.layers


# ----------------------------------------------------------------------------- cost bound

def estimate_synthesis(layers: list[Layer], samples: int, time_steps: int) -> dict[str, int]:
    """Estimated peak memory and work of :func:`synthesize` over ``layers`` (from
    :func:`build_topology`), from the shapes alone, so that a synthesis too big for the machine is
    refused before anything is allocated.

    With N samples, T steps and n_l the neurons of layer l:

    - ``trace_bytes``: the input (N x C x H x W float32) plus every recorded layer's packed spikes
      (N T ceil(n_l / 8) bytes);
    - ``memory_bytes``: ``trace_bytes`` plus the forward pass's bool spikes of every recorded layer
      (N T n_l bytes; a flatten is a view) plus the largest layer's working arrays: its im2col
      patches (rows x fan-in: N rows in float64 with four such temporaries for the in-pixel and
      encoding layers, computed once; N T rows in float32 otherwise) and 24 bytes per current
      value (N T n_l: the current in float and integer, and the membranes);
    - ``neuron_steps``: the work, N T times the neurons of the layers that have one.
    """
    n, t = int(samples), int(time_steps)
    c, h, w = layers[0].in_shape
    trace = n * c * h * w * 4
    spikes = 0
    working = 0
    neurons = 0
    for layer in layers:
        size = layer.out_size
        if layer.spiking or layer.neuron is not None or layer.op in ("maxpool", "flatten"):
            trace += n * t * math.ceil(size / 8)
            if layer.op != "flatten":
                spikes += n * t * size
        if layer.neuron is not None:
            neurons += size
        patches = 0
        if layer.op == "conv2d":
            fan_in = layer.in_shape[0] // layer.groups * math.prod(layer.kernel)
            positions = math.prod(layer.out_shape[1:])
            patches = n * positions * fan_in * 8 * 4 if layer.inputs == ["input"] else \
                n * t * positions * fan_in * 4
        elif layer.op == "linear":
            patches = n * t * layer.in_size * 4
        working = max(working, patches + 24 * n * t * size)
    return {"trace_bytes": trace, "memory_bytes": trace + spikes + working, "neuron_steps": neurons * n * t}


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 30:.3g} GiB"


def _fit(layers: list[Layer], samples: int, time_steps: int) -> str:
    """What would fit under both caps: the most samples at these steps, or the most steps at these
    samples (each estimate is affine in either)."""
    caps = {"memory_bytes": MAX_MEMORY_BYTES, "neuron_steps": MAX_NEURON_STEPS}
    per_sample = estimate_synthesis(layers, 1, time_steps)
    base = estimate_synthesis(layers, samples, 0)
    one_step = estimate_synthesis(layers, samples, 1)
    most_samples = min(cap // max(per_sample[k], 1) for k, cap in caps.items())
    most_steps = min((cap - base[k]) // max(one_step[k] - base[k], 1) if cap > base[k] else 0
                     for k, cap in caps.items())
    options = []
    if most_samples >= 1:
        options.append(f"at most {most_samples:,} samples at {time_steps:,} time steps")
    if most_steps >= 1:
        options.append(f"at most {most_steps:,} time steps with {samples:,} samples")
    return "use " + (" or ".join(options) if options else "fewer samples and time steps, or a smaller image")


def _check_cost(topology: str, layers: list[Layer], samples: int, time_steps: int) -> None:
    """Refuse a synthesis whose estimated memory or work exceeds :data:`MAX_MEMORY_BYTES` or
    :data:`MAX_NEURON_STEPS`, saying what would fit."""
    cost = estimate_synthesis(layers, samples, time_steps)
    what = f"samples={samples:,}, time_steps={time_steps:,} of {topology}"
    if cost["memory_bytes"] > MAX_MEMORY_BYTES:
        raise UsageError("the synthesis would need more memory than snnsim allows", key="samples, time_steps",
                         expected=f"an estimated peak memory of at most {_gib(MAX_MEMORY_BYTES)} "
                                  "(synth.MAX_MEMORY_BYTES)",
                         found=f"about {_gib(cost['memory_bytes'])} for {what} "
                               f"(the trace alone {_gib(cost['trace_bytes'])})",
                         suggestion=_fit(layers, samples, time_steps))
    if cost["neuron_steps"] > MAX_NEURON_STEPS:
        raise UsageError("the synthesis would take too long", key="samples, time_steps",
                         expected=f"at most {MAX_NEURON_STEPS:,} neuron updates, a few minutes "
                                  "(synth.MAX_NEURON_STEPS)",
                         found=f"{cost['neuron_steps']:,} neuron updates (neurons x time steps x samples) "
                               f"for {what}",
                         suggestion=_fit(layers, samples, time_steps))


# ----------------------------------------------------------------------------- the generator

def synthesize(topology: str, *, samples: int, time_steps: int | None = None, out_channels: int = 64,
               image_size: int | None = None, seed: int = 0, target_rate: float = 0.1,
               first_layer_rate: float | None = None, first_layer_weight_bits: int = 4,
               rate_spread: float = DEFAULT_RATE_SPREAD, store_weights: bool | None = None,
               membrane_bits: int = MEMBRANE_BITS) -> Workload:
    """A spike trace of an untrained, activity-calibrated SNN on real images.

    ``topology`` is a key of :data:`TOPOLOGIES`. In the in-pixel topologies ``conv0`` is the
    in-pixel layer (kernel 4, stride 4, ``out_channels`` channels, weights quantised to
    ``first_layer_weight_bits`` sign-magnitude bits, transfer curve of the P2M pixel); in
    :data:`ENCODING_TOPOLOGIES` it is a digital 8-bit encoding layer (3x3, padding 1) of fixed
    width, and ``out_channels`` and ``first_layer_weight_bits`` are ignored. Every later synaptic
    layer has random +-1 weights. Every layer after the sensor computes with the core's integer
    arithmetic (``membrane_bits``-bit saturating membranes, integer thresholds in the layer's
    current unit).
    Thresholds are calibrated so that ``conv0`` fires at ``first_layer_rate`` (default
    ``target_rate``) and every other recorded layer at ``target_rate``, each channel at a
    log-normally spread rate (sigma ``rate_spread``; 0 = all channels alike).

    ``membrane_bits`` is the core's membrane width the trace is made for (thresholds are capped
    at 2^(membrane_bits - 1) - 1 and saturation is modelled; a wide encoding layer's spikes can
    depend on it). ``time_steps`` defaults to 8 for the VSA topologies and 1 otherwise.
    ``store_weights``: True or None (default) stores every layer's weights (binary ones are packed
    by the writer), False only ``conv0``'s. Deterministic for a given seed (and image set).
    """
    topology = _check_topology(topology)
    samples = _check_int("samples", samples, 1, MAX_SAMPLES)
    if time_steps is None:
        time_steps = _DEFAULT_TIME_STEPS.get(topology, 1)
    time_steps = _check_int("time_steps", time_steps, 1, MAX_TIME_STEPS)
    out_channels = _check_int("out_channels", out_channels, 1, MAX_OUT_CHANNELS)
    seed = _check_int("seed", seed, 0)
    bits = _check_int("first_layer_weight_bits", first_layer_weight_bits, 1)
    target_rate = _check_rate("target_rate", target_rate)
    first_rate = target_rate if first_layer_rate is None else _check_rate("first_layer_rate", first_layer_rate)
    if isinstance(rate_spread, bool) or not isinstance(rate_spread, numbers.Real) \
            or not 0.0 <= float(rate_spread) <= 3.0:
        raise UsageError("rate_spread out of range", key="rate_spread",
                         expected="a number in [0, 3] (log-normal sigma of the channel rates)",
                         found=repr(rate_spread))
    membrane_bits = _check_int("membrane_bits", membrane_bits, 2)
    if membrane_bits > 32:
        raise UsageError("membrane_bits out of range", key="membrane_bits", expected="an integer in 2..32",
                         found=repr(membrane_bits))
    if store_weights is not None and not isinstance(store_weights, bool):
        raise UsageError("store_weights must be True, False or None", key="store_weights",
                         expected="True, False or None (all weights)", found=repr(store_weights))
    layers = build_topology(topology, out_channels=out_channels, image_size=image_size,
                            first_layer_weight_bits=bits)
    _check_cost(topology, layers, samples, time_steps)
    image_size = layers[0].in_shape[1]
    encoding = topology in ENCODING_TOPOLOGIES

    inputs = _inputs(topology, samples, image_size, seed)
    weights, thresholds, spikes, stats = _forward(
        layers, inputs.images, time_steps, seed, target_rate, first_rate, bits, float(rate_spread),
        membrane_bits)

    keep_all = store_weights is None or store_weights
    stored = weights if keep_all else {"conv0": weights["conv0"]}
    for layer in layers:
        if layer.neuron is not None and layer.name in thresholds:
            layer.neuron.threshold = round(float(np.mean(thresholds[layer.name], dtype=np.float64)), 6)

    packed = {name: pack_spikes(np.swapaxes(s, 0, 1)) for name, s in spikes.items()}
    achieved = stats["achieved"]
    first = layers[0]
    if encoding:
        first_desc = (f"conv0: digital encoding layer, {INPUT_BITS}-bit unsigned inputs x_q = round(255 x) "
                      f"times {ENCODING_WEIGHT_BITS}-bit sign-magnitude weights w_q in -127..127 "
                      "(Laplace draws, channel mean removed, largest magnitude 127, channel polarity "
                      "chosen so that the channel can fire), stored as w = w_q * 255 / 2^15 "
                      "(scale alpha = 127 * 255 / 2^15, current unit 2^-15)")
    else:
        first_desc = ("conv0: uniform in [-1, 1], sign-magnitude quantised, channel polarity chosen so "
                      "that the channel can fire")
    provenance = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "snnsim_version": _snnsim_version(),
        "statement": STATEMENT,
        "topology": topology,
        "topology_description": TOPOLOGIES[topology],
        "seed": seed,
        "samples": samples,
        "time_steps": time_steps,
        "image_size": image_size,
        "out_channels": first.out_shape[0],
        "first_layer": "digital encoding layer (core)" if encoding else "in-pixel (P2M sensor)",
        "first_layer_weight_bits": first.weight_bits,
        "target_rate": target_rate,
        "first_layer_rate": first_rate,
        "rate_spread": float(rate_spread),
        "achieved_rates": achieved,
        "achieved_rate_mean": round(float(np.mean(list(achieved.values()))), 5),
        "achieved_rates_per_step": stats["per_step"],
        "target_rates": stats["targets"],
        "neuron": "IF, leak 0, reset by subtraction, per-channel thresholds",
        "arithmetic": {
            "core_layers": f"integer currents in the layer's unit u, integer thresholds theta / u, "
                           f"membranes signed {membrane_bits}-bit saturating: v = clip(v + I); "
                           "spike = v >= theta; v -= spike * theta (docs/verify.md)",
            "units": "binary conv/linear: u = weight scale (1); encoding layer: u = alpha / "
                     "((2^8 - 1)(2^7 - 1)) = 2^-15; avgpool: u = 1 / kernel elements; maxpool, add: u = 1",
            "membrane_bits": membrane_bits,
            "input_bits": INPUT_BITS if encoding else None,
            "in_pixel_layer": None if encoding else
            "float64: v += I (the P2M output, float32); spike = v >= theta (float32); v -= theta",
            "saturated_updates": stats["saturated"],
            "saturation_note": "membrane updates clipped to the signed range, per layer, above and "
                               "below; a direct-encoded (constant) current clipped below never fires "
                               "either way",
        },
        "encoding": "direct: the same analog image at every time step",
        "weights": first_desc + "; other synaptic layers: random +-1 (scale 1)",
        "weights_stored": sorted(stored),
        "calibration": "per-channel threshold by bisection on the T-step IF rate of the channel's "
                       "currents over all samples (over the integers for core layers); channel targets "
                       "log-normal around the layer target; rounding error carried across channels",
        "images": inputs.names,
        "image_sources": inputs.sources,
        "image_preprocessing": inputs.preprocessing,
        "software": _software_versions(digits=topology == "vsa_mnist"),
    }
    if not encoding:
        provenance["transfer_curve"] = {"source": "Datta et al., Sci. Rep. 12:14396 (2022), "
                                                  "github.com/godatta/In-Pixel-constrained-models",
                                        "coefficients": COEFFICIENTS}
    else:
        provenance["ignored_arguments"] = ("out_channels and first_layer_weight_bits (the encoding "
                                           "layer of this topology is fixed)")
    if not keep_all:
        n_params = sum(w.size for w in weights.values())
        provenance["weights_note"] = (
            f"{n_params} parameters: only conv0's weights are stored; the others are regenerated "
            "bit-exactly by synthesize(..., store_weights=True) with the same arguments")
    for a in (inputs.images, *stored.values(), *thresholds.values()):
        a.flags.writeable = False  # the trace's record, as a loaded trace's: checked once, not per run
    return Workload(layers=layers, input=inputs.images, packed_spikes=packed, time_steps=time_steps,
                    model=topology, dataset=inputs.dataset, encoding="direct", weights=stored,
                    thresholds=thresholds, provenance=provenance)


def _forward(layers: list[Layer], images: np.ndarray, steps: int, seed: int, target_rate: float,
             first_rate: float, bits: int, spread: float, membrane_bits: int = MEMBRANE_BITS):
    """Run and calibrate the network; returns weights, thresholds, spikes (T, N, *shape) per
    spiking layer, and statistics: achieved and target rates per recorded layer, achieved rates
    per step, saturated membrane updates per layer (where any)."""
    n = images.shape[0]
    weights: dict[str, np.ndarray] = {}
    thresholds: dict[str, np.ndarray] = {}
    spikes: dict[str, np.ndarray] = {}
    achieved: dict[str, float] = {}
    targets: dict[str, float] = {}
    per_step: dict[str, list[float]] = {}
    saturated: dict[str, dict[str, int]] = {}

    def flat(name: str) -> np.ndarray:  # (T*N, *shape), time-major
        s = spikes[name]
        return s.reshape(steps * n, *s.shape[2:])

    for index, layer in enumerate(layers):
        rate = first_rate if layer.name == "conv0" else target_rate
        c = layer.out_shape[0]
        ch_targets = _channel_targets(rate, c, spread, _rng(seed, index, 1)) if layer.neuron else None
        unit: Any = 1.0
        if layer.inputs == ["input"] and layer.extra.get("in_pixel"):
            w = quantize_weights(_rng(seed, index, 0).uniform(-1.0, 1.0, layer.weight_shape), bits)
            cur0 = p2m_conv2d(images, w, layer.stride[0])
            # Polarity: a channel whose upper-quantile current is not positive cannot fire at a
            # positive threshold; flipping all its weights negates its current exactly.
            q = np.array([np.quantile(cur0[:, ch], 1.0 - ch_targets[ch]) for ch in range(c)])
            flip = q <= 0
            if flip.any():
                w[flip] = -w[flip]
                cur0 = p2m_conv2d(images, w, layer.stride[0])
            weights[layer.name] = w
            cur4 = np.broadcast_to(cur0.astype(np.float64).reshape(1, n, c, -1), (steps, n, c, cur0[0, 0].size))
            theta = _calibrate(cur4, ch_targets)
            s = if_dynamics(cur4, theta).reshape(steps, n, *layer.out_shape)
            thresholds[layer.name] = theta
        else:
            if layer.inputs == ["input"]:  # the digital encoding layer
                levels = 2 ** (ENCODING_WEIGHT_BITS - 1) - 1
                wq = _encoding_levels(layer.weight_shape, _rng(seed, index, 0))
                xq = np.rint(images.astype(np.float64) * (2 ** INPUT_BITS - 1))
                cur0 = np.rint(conv2d(xq, wq, layer.stride, layer.padding, layer.groups,
                                      dtype=np.float64)).astype(np.int64)
                q = np.array([np.quantile(cur0[:, ch], 1.0 - ch_targets[ch]) for ch in range(c)])
                flip = q <= 0
                wq[flip] = -wq[flip]
                cur0[:, flip] = -cur0[:, flip]
                scale = levels * (2 ** INPUT_BITS - 1) * _ENCODING_UNIT  # alpha, exact in float32
                weights[layer.name] = (wq * (scale / levels)).astype(np.float32)
                unit = _ENCODING_UNIT
                current = np.broadcast_to(cur0, (steps, *cur0.shape))
            elif layer.op in ("conv2d", "linear"):
                w = _binary_weights(layer.weight_shape, _rng(seed, index, 0))
                weights[layer.name] = w
                if layer.neuron is None:
                    continue  # the classifier output: not recorded
                x = flat(layer.inputs[0])
                if layer.op == "conv2d":
                    current = conv2d(x, w, layer.stride, layer.padding, layer.groups)
                else:
                    current = np.asarray(x, dtype=np.float32) @ w.T
                # 0/1 inputs and +-1 weights: exact integers in float32 (|sum| < 2^24)
                current = current.astype(np.int32).reshape(steps, n, *current.shape[1:])
            elif layer.op == "add":
                current = sum(spikes[s].astype(np.int32) for s in layer.inputs)
            elif layer.op in ("avgpool", "maxpool"):
                win = _windows(flat(layer.inputs[0]), layer.kernel, layer.stride, layer.padding)
                if layer.op == "maxpool" and layer.neuron is None:
                    spikes[layer.name] = win.any(axis=(-2, -1)).reshape(steps, n, *layer.out_shape)
                    continue
                if layer.op == "maxpool":
                    current = win.max(axis=(-2, -1)).astype(np.int32)
                else:  # spike count in the window, unit 1 / kernel elements
                    current = win.sum(axis=(-2, -1), dtype=np.int32)
                    unit = 1.0 / math.prod(layer.kernel)
                current = current.reshape(steps, n, *layer.out_shape)
            elif layer.op == "flatten":
                spikes[layer.name] = spikes[layer.inputs[0]].reshape(steps, n, -1)
                continue
            else:  # pragma: no cover - the builders emit only the ops above
                raise AssertionError(layer.op)
            cur4 = np.asarray(current).reshape(steps, n, c, -1)
            theta_int = _calibrate_int(cur4, ch_targets, membrane_bits)
            s, (top, bottom) = int_if_dynamics(cur4, theta_int, membrane_bits)
            s = s.reshape(steps, n, *layer.out_shape)
            thresholds[layer.name] = (theta_int * unit).astype(np.float32)
            if top or bottom:
                saturated[layer.name] = {"above": top, "below": bottom}

        spikes[layer.name] = s
        achieved[layer.name] = round(float(s.mean(dtype=np.float64)), 5)
        per_step[layer.name] = [round(float(x), 5) for x in s.reshape(steps, -1).mean(axis=1, dtype=np.float64)]
        targets[layer.name] = rate
    stats = {"achieved": achieved, "targets": targets, "per_step": per_step, "saturated": saturated}
    return weights, thresholds, spikes, stats


def _snnsim_version() -> str:
    from .. import __version__

    return __version__


def _software_versions(digits: bool = False) -> dict[str, str]:
    import matplotlib

    versions = {"numpy": np.__version__, "matplotlib": matplotlib.__version__}
    try:
        import PIL

        versions["pillow"] = PIL.__version__
    except ImportError:  # pragma: no cover - matplotlib requires Pillow
        pass
    modules = (("scikit-image", "skimage"), ("scikit-learn", "sklearn")) if digits else (("scikit-image", "skimage"),)
    for name, module in modules:
        try:
            versions[name] = __import__(module).__version__
        except ImportError:
            pass
    return versions


def _closest_with_carry(theta_hi: np.ndarray, theta_lo: np.ndarray, r_hi: np.ndarray, r_lo: np.ndarray,
                        targets: np.ndarray) -> np.ndarray:
    """Per channel, the threshold of the two candidates whose rate is nearer the target, carrying
    each channel's error into the next so the layer's mean rate stays on target."""
    theta = theta_hi.copy()
    carry = 0.0
    for ch in range(theta.shape[0]):
        want = targets[ch] + carry
        rate = r_hi[ch]
        if abs(r_lo[ch] - want) < abs(r_hi[ch] - want):
            theta[ch], rate = theta_lo[ch], r_lo[ch]
        carry = want - rate
    return theta
