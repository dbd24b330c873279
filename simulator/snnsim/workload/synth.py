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
unit ``u``, integer thresholds ``theta / u``, membranes saturating to 16-bit signed integers:

    v[t] = clip(v[t-1] + I[t], -2^15, 2^15 - 1);  spike if v[t] >= theta;  then v[t] -= theta

so ``snnsim verify`` recomputes every recorded spike bit for bit. Layers run in topological
order over all T steps at once (the graph is feed-forward).

Calibration (one pass, layer by layer): each channel gets a target rate (the layer target spread
log-normally across channels, mean preserved). For integer layers the threshold is found by
bisection over the integers 1 .. 2^15 - 1 on the real T-step dynamics of that channel's currents
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
GENERATOR_VERSION = 1

#: Topology name -> short description.
TOPOLOGIES: dict[str, str] = {
    "resnet18": "ImageNet ResNet-18 (224x224 RGB), stem replaced by an in-pixel conv k4 s4 -> 56x56; "
                "SEW-style spiking residual adds; 1000-way linear classifier",
    "small_cnn": "tiny test network (32x32 RGB): in-pixel conv, two 3x3 convs joined by an add, "
                 "maxpool, grouped conv, avgpool, linear 10",
    "vgg_small": "small VGG (64x64 RGB): in-pixel conv, 3x3 convs 32-32-M-64-64-M-128-128-M, "
                 "global avgpool, linear 10",
}

_DEFAULT_IMAGE_SIZE = {"resnet18": 224, "small_cnn": 32, "vgg_small": 64}
_MIN_IMAGE_SIZE = {"resnet18": 32, "small_cnn": 16, "vgg_small": 32}

#: Weights are stored for every synaptic layer when the network has at most this many parameters;
#: above it only the in-pixel layer's (binary layers are regenerated from the seed on demand).
WEIGHT_STORE_LIMIT = 1_000_000

#: Log-normal sigma of the per-channel target rates around a layer's target (default).
DEFAULT_RATE_SPREAD = 0.5

_BISECTION_STEPS = 32

STATEMENT = ("untrained network (random binary weights), calibrated activity, real photos: "
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


# ----------------------------------------------------------------------------- argument checks

def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}", key=name,
                         expected=f"an integer >= {minimum}", found=repr(value))
    return int(value)


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise UsageError(f"{name} must be a spike rate strictly between 0 and 1", key=name,
                         expected="a number in (0, 1) (spikes per neuron per time step)",
                         found=repr(value), suggestion="typical values are 0.02 to 0.3")
    return float(value)


# ----------------------------------------------------------------------------- photos

@dataclass
class _Photo:
    name: str
    pixels: np.ndarray  # uint8 (H, W, 3)


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


_BUILDERS = {"resnet18": _build_resnet18, "small_cnn": _build_small_cnn, "vgg_small": _build_vgg_small}


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
           groups: int) -> np.ndarray:
    """Plain grouped 2-D convolution (cross-correlation), float32: x (B, C, H, W), w (C_o, C/g, kh, kw)
    -> (B, C_o, H_o, W_o). For 0/1 inputs and +-1 weights every sum is an exact integer."""
    x = np.asarray(x, dtype=np.float32)
    co, cg, kh, kw = w.shape
    win = _windows(x, (kh, kw), stride, padding)
    b, _, ho, wo = win.shape[:4]
    out = np.empty((b, ho, wo, co), dtype=np.float32)
    cog = co // groups
    for g in range(groups):
        patches = win[:, g * cg:(g + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, cg * kh * kw)
        wg = np.ascontiguousarray(w[g * cog:(g + 1) * cog].reshape(cog, -1).T, dtype=np.float32)
        out[..., g * cog:(g + 1) * cog] = (patches @ wg).reshape(b, ho, wo, cog)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def if_dynamics(current: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """IF neurons (leak 0, reset by subtraction), float32: current (T, N, C, ...) and per-channel
    thresholds (C,) -> bool spikes (T, N, C, ...)."""
    cur = np.asarray(current, dtype=np.float32)
    th = np.asarray(theta, dtype=np.float32).reshape((-1,) + (1,) * (cur.ndim - 3))
    v = np.zeros(cur.shape[1:], dtype=np.float32)
    out = np.empty(cur.shape, dtype=bool)
    for t in range(cur.shape[0]):
        v += cur[t]
        s = v >= th
        v -= s * th
        out[t] = s
    return out


def _channel_rates(cur: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Per-channel spike rate of IF neurons; cur (T, N, C, P), theta (C,)."""
    t_steps, n, c, p = cur.shape
    th = theta.astype(np.float32)[:, None]
    v = np.zeros((n, c, p), dtype=np.float32)
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
    xc = x.astype(np.float32)[:, None]
    best = np.full(x.shape, np.inf if above else -np.inf)
    for t in range(cum.shape[0]):
        for k in range(1, t + 2):
            c = cum[t] / np.float32(k)
            if above:
                mask = (c > xc) if strict else (c >= xc)
                best = np.minimum(best, np.where(mask, c, np.inf).min(axis=(0, 2)))
            else:
                best = np.maximum(best, np.where((c < xc) & (c > 0), c, -np.inf).max(axis=(0, 2)))
    return best


def _midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.float64) + b.astype(np.float64)) / 2.0).astype(np.float32)


def _calibrate(cur: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-channel thresholds (float32, > 0) giving the target rates; cur (T, N, C, P).

    Bisection on the real IF rate brackets each channel's target between two plateaus of the
    rate-versus-threshold step function; each candidate threshold is then moved to the middle of
    its plateau (far from every tie v == theta, so any faithful re-implementation gives the same
    spikes). Thresholds stay above half the smallest positive input, so one input event never
    makes a neuron fire on its own for several steps. The choice between the two candidates
    carries the rounding error across channels so that the layer's mean rate hits its target.
    """
    c = cur.shape[2]
    cum = np.cumsum(cur, axis=0, dtype=np.float32)
    smallest = np.where(cur > 0, cur, np.float32(np.inf)).min(axis=(0, 1, 3))
    silent = ~np.isfinite(smallest)  # no positive input: never fires at any threshold > 0
    lo0 = np.where(silent, np.float32(0.5), smallest / np.float32(2)).astype(np.float32)
    first = _critical(cum, lo0, above=True)
    theta_max = np.where(np.isfinite(first), _midpoint(lo0, np.where(np.isfinite(first), first, 0)),
                         2 * lo0).astype(np.float32)
    reachable = (_channel_rates(cur, theta_max) > targets) & ~silent

    hi = (np.maximum(cum.max(axis=(0, 1, 3)), lo0) * np.float32(1.001) + np.float32(1e-6)).astype(np.float32)
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
    bf = np.where(b_ok, b, hi).astype(np.float32)
    nxt = _critical(cum, bf, above=True)
    prev = np.maximum(_critical(cum, bf, above=False), lo0)
    theta_hi = np.where(np.isfinite(nxt), _midpoint(bf, np.where(np.isfinite(nxt), nxt, 0)), 2 * bf)
    theta_hi = np.where(b_ok, theta_hi, hi).astype(np.float32)
    theta_lo = np.where(b_ok & (bf > lo0), _midpoint(prev, bf), theta_hi).astype(np.float32)
    theta_hi = np.where(reachable, theta_hi, theta_max).astype(np.float32)
    theta_lo = np.where(reachable, theta_lo, theta_max).astype(np.float32)

    r_hi = _channel_rates(cur, theta_hi)
    r_lo = _channel_rates(cur, theta_lo)
    theta = theta_hi.copy()
    carry = 0.0
    for ch in range(c):
        want = targets[ch] + carry
        rate = r_hi[ch]
        if abs(r_lo[ch] - want) < abs(r_hi[ch] - want):
            theta[ch], rate = theta_lo[ch], r_lo[ch]
        carry = want - rate
    return theta.astype(np.float32)


def _channel_targets(rate: float, channels: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    if spread <= 0 or channels == 1:
        return np.full(channels, rate)
    r = np.exp(spread * rng.standard_normal(channels))
    r = rate * r / r.mean()
    return np.clip(r, rate / 20.0, min(0.95, 1.0 - (1.0 - rate) / 20.0))


def _binary_weights(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, np.float32(-1.0), np.float32(1.0)).astype(np.float32)


def _check_topology(topology: Any) -> str:
    if not isinstance(topology, str) or topology not in TOPOLOGIES:
        raise UsageError("unknown topology", key="topology", expected=f"one of {', '.join(TOPOLOGIES)}",
                         found=repr(topology), suggestion=did_you_mean(str(topology), TOPOLOGIES))
    return topology


def build_topology(topology: str, *, out_channels: int = 64, image_size: int | None = None,
                   first_layer_weight_bits: int = 4) -> list[Layer]:
    """The checked layer graph of a topology (shapes filled in, thresholds not yet calibrated)."""
    topology = _check_topology(topology)
    out_channels = _check_int("out_channels", out_channels, 1)
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
    shape = (3, int(image_size), int(image_size))
    net = _Net(shape)
    _BUILDERS[topology](net, out_channels, bits)
    check_graph(net.layers, shape)
    return net.layers


# ----------------------------------------------------------------------------- the generator

def synthesize(topology: str, *, samples: int, time_steps: int, out_channels: int = 64,
               image_size: int | None = None, seed: int = 0, target_rate: float = 0.1,
               first_layer_rate: float | None = None, first_layer_weight_bits: int = 4,
               rate_spread: float = DEFAULT_RATE_SPREAD, store_weights: bool | None = None) -> Workload:
    """A spike trace of an untrained, activity-calibrated SNN on real photos.

    ``topology`` is a key of :data:`TOPOLOGIES`. ``conv0`` is the in-pixel layer (kernel 4,
    stride 4, ``out_channels`` channels, weights quantised to ``first_layer_weight_bits``
    sign-magnitude bits, transfer curve of the P2M pixel); every later synaptic layer has random
    +-1 weights. Thresholds are calibrated so that ``conv0`` fires at ``first_layer_rate``
    (default ``target_rate``) and every other recorded layer at ``target_rate``, each channel at
    a log-normally spread rate (sigma ``rate_spread``; 0 = all channels alike).

    ``store_weights``: True stores every layer's weights, False only ``conv0``'s; None (default)
    stores all when the network has at most :data:`WEIGHT_STORE_LIMIT` parameters.
    Deterministic for a given seed (and photo set).
    """
    topology = _check_topology(topology)
    samples = _check_int("samples", samples, 1)
    time_steps = _check_int("time_steps", time_steps, 1)
    out_channels = _check_int("out_channels", out_channels, 1)
    seed = _check_int("seed", seed, 0)
    bits = _check_int("first_layer_weight_bits", first_layer_weight_bits, 1)
    target_rate = _check_rate("target_rate", target_rate)
    first_rate = target_rate if first_layer_rate is None else _check_rate("first_layer_rate", first_layer_rate)
    if isinstance(rate_spread, bool) or not isinstance(rate_spread, numbers.Real) \
            or not 0.0 <= float(rate_spread) <= 3.0:
        raise UsageError("rate_spread out of range", key="rate_spread",
                         expected="a number in [0, 3] (log-normal sigma of the channel rates)",
                         found=repr(rate_spread))
    if store_weights is not None and not isinstance(store_weights, bool):
        raise UsageError("store_weights must be True, False or None", key="store_weights",
                         expected="True, False or None (automatic)", found=repr(store_weights))
    layers = build_topology(topology, out_channels=out_channels, image_size=image_size,
                            first_layer_weight_bits=bits)
    image_size = layers[0].in_shape[1]

    images, image_names, photo_names = _images(samples, image_size, seed)
    weights, thresholds, spikes, achieved, targets, per_step = _forward(
        layers, images, time_steps, seed, target_rate, first_rate, bits, float(rate_spread))

    n_params = sum(w.size for w in weights.values())
    keep_all = n_params <= WEIGHT_STORE_LIMIT if store_weights is None else store_weights
    stored = weights if keep_all else {"conv0": weights["conv0"]}
    for layer in layers:
        if layer.neuron is not None and layer.name in thresholds:
            layer.neuron.threshold = round(float(np.mean(thresholds[layer.name], dtype=np.float64)), 6)

    packed = {name: pack_spikes(np.swapaxes(s, 0, 1)) for name, s in spikes.items()}
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
        "out_channels": out_channels,
        "first_layer_weight_bits": bits,
        "target_rate": target_rate,
        "first_layer_rate": first_rate,
        "rate_spread": float(rate_spread),
        "achieved_rates": achieved,
        "achieved_rate_mean": round(float(np.mean(list(achieved.values()))), 5),
        "achieved_rates_per_step": per_step,
        "target_rates": targets,
        "neuron": "IF, leak 0, reset by subtraction, per-channel thresholds, float32 arithmetic "
                  "in the order v += I; spike = v >= theta; v -= spike * theta",
        "encoding": "direct: the same analog image at every time step",
        "weights": "conv0: uniform in [-1, 1], sign-magnitude quantised, channel polarity chosen so "
                   "that the channel can fire; other synaptic layers: random +-1 (scale 1)",
        "weights_stored": sorted(stored),
        "calibration": "per-channel threshold by bisection on the T-step IF rate of the channel's "
                       "currents over all samples; channel targets log-normal around the layer "
                       "target; rounding error carried across channels",
        "transfer_curve": {"source": "Datta et al., Sci. Rep. 12:14396 (2022), "
                                     "github.com/godatta/In-Pixel-constrained-models",
                           "coefficients": COEFFICIENTS},
        "images": image_names,
        "image_sources": {name: _PHOTO_SOURCES[name] for name in photo_names},
        "image_preprocessing": "square crop, area (box-filter) resize, scaled to [0, 1], channels first",
        "software": _software_versions(),
    }
    if not keep_all:
        provenance["weights_note"] = (
            f"{n_params} parameters: only conv0's weights are stored; the others are regenerated "
            "bit-exactly by synthesize(..., store_weights=True) with the same arguments")
    return Workload(layers=layers, input=images, packed_spikes=packed, time_steps=time_steps,
                    model=topology, dataset=DATASET, encoding="direct", weights=stored,
                    thresholds=thresholds, provenance=provenance)


def _forward(layers: list[Layer], images: np.ndarray, steps: int, seed: int, target_rate: float,
             first_rate: float, bits: int, spread: float):
    """Run and calibrate the network; returns weights, thresholds, spikes (T, N, *shape) per
    spiking layer, achieved and target rates per recorded layer, achieved rates per step."""
    n = images.shape[0]
    weights: dict[str, np.ndarray] = {}
    thresholds: dict[str, np.ndarray] = {}
    spikes: dict[str, np.ndarray] = {}
    achieved: dict[str, float] = {}
    targets: dict[str, float] = {}
    per_step: dict[str, list[float]] = {}

    def flat(name: str) -> np.ndarray:  # (T*N, *shape), time-major
        s = spikes[name]
        return s.reshape(steps * n, *s.shape[2:])

    for index, layer in enumerate(layers):
        rate = first_rate if layer.name == "conv0" else target_rate
        c = layer.out_shape[0]
        ch_targets = _channel_targets(rate, c, spread, _rng(seed, index, 1)) if layer.neuron else None
        if layer.name == "conv0":
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
            current = current.reshape(steps, n, *current.shape[1:])
        elif layer.op == "add":
            current = sum(spikes[s].astype(np.float32) for s in layer.inputs)
        elif layer.op in ("avgpool", "maxpool"):
            win = _windows(flat(layer.inputs[0]), layer.kernel, layer.stride, layer.padding)
            if layer.op == "maxpool" and layer.neuron is None:
                spikes[layer.name] = win.any(axis=(-2, -1)).reshape(steps, n, *layer.out_shape)
                continue
            if layer.op == "maxpool":
                current = win.max(axis=(-2, -1)).astype(np.float32)
            else:
                area = np.float32(math.prod(layer.kernel))
                current = win.sum(axis=(-2, -1), dtype=np.float32) / area
            current = current.reshape(steps, n, *layer.out_shape)
        elif layer.op == "flatten":
            spikes[layer.name] = spikes[layer.inputs[0]].reshape(steps, n, -1)
            continue
        else:  # pragma: no cover - the builders emit only the ops above
            raise AssertionError(layer.op)

        cur4 = np.asarray(current, dtype=np.float32).reshape(steps, n, c, -1)
        theta = _calibrate(cur4, ch_targets)
        s = if_dynamics(cur4, theta).reshape(steps, n, *layer.out_shape)
        spikes[layer.name] = s
        thresholds[layer.name] = theta
        achieved[layer.name] = round(float(s.mean(dtype=np.float64)), 5)
        per_step[layer.name] = [round(float(x), 5) for x in s.reshape(steps, -1).mean(axis=1, dtype=np.float64)]
        targets[layer.name] = rate
    return weights, thresholds, spikes, achieved, targets, per_step


def _snnsim_version() -> str:
    from .. import __version__

    return __version__


def _software_versions() -> dict[str, str]:
    import matplotlib

    versions = {"numpy": np.__version__, "matplotlib": matplotlib.__version__}
    try:
        import PIL

        versions["pillow"] = PIL.__version__
    except ImportError:  # pragma: no cover - matplotlib requires Pillow
        pass
    try:
        import skimage

        versions["scikit-image"] = skimage.__version__
    except ImportError:
        pass
    return versions
