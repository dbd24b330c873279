"""The P2M pixel transfer curve: what an in-pixel convolution really computes.

In a processing-in-pixel (P2M) sensor each element of a kernel window is a photodiode driving a
weight transistor whose width encodes the weight magnitude. The element's contribution to the
column line is not the ideal product ``x * w`` but a curve fitted to circuit simulation:

    f(x, w) = p00 + p10 d + p20 d^2 + p30 d^3 + w (p01 + p11 d + p21 d^2),   d = x - 0.5

with ``x`` in [0, 1] the pixel value and ``w`` in [0, 1] the weight magnitude.

Source of the curve and its coefficients: G. Datta et al., "A processing-in-pixel-in-memory
paradigm for resource-constrained TinyML applications", Sci. Rep. 12:14396 (2022), public code
``godatta/In-Pixel-constrained-models`` (``MobileNetv2.py``, class ``customConv2``).

Signed weights are realised by up/down counting: the window output is the sum of ``f(x, |w|)``
over the elements with ``w > 0`` minus the same sum over the elements with ``w < 0``. An element
with ``w == 0`` has no transistor and contributes nothing (not even the ``p00`` offset).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import UsageError

P00 = 0.1694
P01 = 0.422378
P10 = 0.25498
P11 = 0.072789
P20 = -0.17645
P21 = -0.043589
P30 = -0.09217

#: The fitted coefficients, by name.
COEFFICIENTS = {"p00": P00, "p01": P01, "p10": P10, "p11": P11, "p20": P20, "p21": P21, "p30": P30}


def _offset_term(d: np.ndarray) -> np.ndarray:
    """p00 + p10 d + p20 d^2 + p30 d^3: the part of f that does not scale with the weight."""
    return P00 + P10 * d + P20 * d**2 + P30 * d**3


def _weight_term(d: np.ndarray) -> np.ndarray:
    """p01 + p11 d + p21 d^2: the part of f multiplied by the weight magnitude."""
    return P01 + P11 * d + P21 * d**2


def pixel_response(x, w):
    """f(x, w) of one kernel-window element, elementwise (numpy broadcasting).

    ``x`` is the pixel value in [0, 1], ``w`` the weight magnitude in [0, 1]. Returns float64
    (a numpy scalar for scalar arguments).
    """
    d = np.asarray(x, dtype=np.float64) - 0.5
    return _offset_term(d) + np.asarray(w, dtype=np.float64) * _weight_term(d)


def _check_array(a: np.ndarray, name: str, ndim: int, lo: float, hi: float) -> None:
    if a.ndim != ndim:
        raise UsageError(f"{name} must have {ndim} dimensions", key=name,
                         expected=f"a {ndim}-D array", found=f"shape {list(a.shape)}")
    if a.size and not np.all(np.isfinite(a)):
        raise UsageError(f"{name} holds NaN or infinite values", key=name,
                         expected="finite values", found="non-finite values")
    if a.size and (a.min() < lo or a.max() > hi):
        raise UsageError(f"{name} out of range", key=name, expected=f"values in [{lo:g}, {hi:g}]",
                         found=f"[{a.min():g}, {a.max():g}]")


def p2m_conv2d(images: np.ndarray, weights: np.ndarray, stride: int) -> np.ndarray:
    """The in-pixel convolution: signed window sums of the transfer curve, no padding.

    ``images`` (N, C, H, W) in [0, 1], ``weights`` (C_out, C, kh, kw) in [-1, 1], ``stride`` s.
    Returns (N, C_out, H_o, W_o) float32 with H_o = (H - kh) // s + 1.

    Because sign(w) f(x, |w|) = sign(w) (p00 + p10 d + ...) + w (p01 + p11 d + ...), the window
    sum is two matrix products over the im2col patches (computed in float64).
    """
    x = np.asarray(images)
    wt = np.asarray(weights)
    _check_array(x, "images", 4, 0.0, 1.0)
    _check_array(wt, "weights", 4, -1.0, 1.0)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise UsageError("stride must be a positive integer", key="stride", expected="an integer >= 1",
                         found=repr(stride))
    n, c, h, w = x.shape
    c_out, c_in, kh, kw = wt.shape
    if c_in != c:
        raise UsageError("weights do not match the image channels", key="weights",
                         expected=f"(C_out, {c}, kh, kw)", found=f"shape {list(wt.shape)}")
    if kh > h or kw > w:
        raise UsageError("kernel larger than the image", key="weights", expected=f"kernel <= {h}x{w}",
                         found=f"kernel {kh}x{kw}")
    s = int(stride)
    win = sliding_window_view(x.astype(np.float64, copy=False), (kh, kw), axis=(2, 3))[:, :, ::s, ::s]
    ho, wo = win.shape[2], win.shape[3]
    patches = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    d = patches - 0.5
    wf = wt.reshape(c_out, -1).astype(np.float64)
    out = _offset_term(d) @ np.sign(wf).T + _weight_term(d) @ wf.T
    return np.ascontiguousarray(out.reshape(n, ho, wo, c_out).transpose(0, 3, 1, 2), dtype=np.float32)


def quantize_weights(w: np.ndarray, bits: int) -> np.ndarray:
    """Sign-magnitude quantisation: 1 sign bit and ``bits - 1`` magnitude bits.

    Magnitudes are clipped to [0, 1] and rounded to the grid k / L, L = 2^(bits-1) - 1 (so 4 bits
    give the magnitudes 0, 1/7, ..., 1; a zero weight means "no transistor"). ``bits = 1`` keeps
    only the sign: every weight becomes +1 or -1 (zero maps to +1). Returns float32.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 32:
        raise UsageError("weight bits out of range", key="bits", expected="an integer in 1..32",
                         found=repr(bits))
    a = np.asarray(w, dtype=np.float64)
    if a.size and not np.all(np.isfinite(a)):
        raise UsageError("weights hold NaN or infinite values", key="w", expected="finite values",
                         found="non-finite values")
    if bits == 1:
        return np.where(a < 0, -1.0, 1.0).astype(np.float32)
    levels = 2 ** (int(bits) - 1) - 1
    mag = np.round(np.clip(np.abs(a), 0.0, 1.0) * levels) / levels
    return (np.sign(a) * mag).astype(np.float32)
