"""Synthetic hyperspectral scenes, PCA and patch extraction: the inputs of 3D (HSI) SNN workloads.

Why synthetic: the hyperspectral benchmarks of ACE-SNN / HYPER-SNN (Datta et al., Front. Neurosci.
16:815258, 2022) are Indian Pines, Pavia University and Salinas. None of them ships with this
package and nothing is downloaded, so a workload generator needs a scene with the *structure* of
such data: a cube of reflectances (height x width x bands), a class map, smooth spectra, mixed
pixels at region borders, noise. This module makes one from a seed. It is **not** any of those
datasets: the presets only copy their published sizes and class counts (Indian Pines 145 x 145 x
200 bands, 16 classes; Pavia University 610 x 340 x 103, 9; Salinas 512 x 217 x 204, 16). Accuracy
measured on these scenes says nothing about accuracy on the real ones.

The scene model (linear mixing, the standard model of hyperspectral unmixing):

- **Endmembers.** One spectrum per class plus a background spectrum (label 0, "unlabelled", as in
  the real datasets): a base level plus a sum of 3-6 Gaussian bumps over the band axis (centre
  uniform over the bands, width 3-25 % of the band count), rescaled to reflectances in [0.05, 0.8].
- **Abundances.** A seeded Voronoi partition of the image plane: each class owns
  ``sites_per_class`` sites, the background its own. A pixel's abundance of a class is a soft-min
  over the distances to that class's sites, ``a_c = sum_{s in c} exp(-(d_s - d_min) / border)``
  normalised so that the abundances of a pixel sum to 1. ``d_s - d_min`` grows by at most 2 pixels
  per pixel away from a region edge (exactly 2 between the two sites, less off that line), so a
  pixel nearer than ~2.3 ``border`` to an edge is mixed (largest abundance < 0.99) and the
  interior of a region is pure; ``meta.pure_fraction`` says how much of the scene is. The label is
  the class of the nearest site. Sites and ``border`` (1 pixel of the full-size scene by default)
  scale with the image, so a scaled scene is the same map at a lower resolution.
- **Mixing and illumination.** ``clean = illumination(x, y) * sum_c a_c * endmember_c``, where the
  illumination is a smooth field of mean 1 and amplitude ``illumination`` (a sum of a few long
  spatial cosines), like shading and sun-angle variation.
- **Noise.** Per-band zero-mean Gaussian noise at the stated signal-to-noise ratio:
  ``sigma_b = sqrt(mean(clean_b ** 2) / 10 ** (snr_db / 10))``. The cube is then clipped to [0, 1]
  (the clipped fraction is in ``meta``; it is ~0 at the defaults).

All randomness comes from ``numpy.random.SeedSequence(seed)`` spawned into independent streams
(spectra, sites, illumination, noise), so the same seed and sizes give the same arrays, and the
noise-free scene of a seed is the noisy one minus its noise.

Then :func:`pca` reduces the bands (HybridSN: 30 components for Indian Pines, 15 for Pavia and
Salinas), :func:`unit_scale` maps each component to [0, 1] (an analog pixel value, what a direct-
encoded SNN's first layer receives) and :func:`patches` cuts zero-padded square patches centred on
the labelled pixels, with a seeded stratified train/test split, as (N, 1, bands, size, size): the
layout of a PyTorch ``Conv3d`` input (channels, depth = spectral, height, width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import WorkloadError, did_you_mean

# published sizes only (height, width, bands, classes), not the data
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "indian_pines": (145, 145, 200, 16),
    "pavia_university": (610, 340, 103, 9),
    "salinas": (512, 217, 204, 16),
}
# HybridSN's PCA components per dataset (Roy et al. 2020, reference implementation)
PCA_BANDS: dict[str, int] = {"indian_pines": 30, "pavia_university": 15, "salinas": 15}


@dataclass
class SceneMeta:
    """How a scene was made: sizes, seed, settings, and what a test needs to check them.

    ``abundances`` (H, W, classes + 1; column 0 the background) and ``clean`` (the noise-free
    cube) are kept only when ``synthetic_scene(keep=True)``; ``noise_sigma`` is per band, in
    reflectance units."""

    preset: str | None
    height: int
    width: int
    bands: int
    classes: int
    seed: int
    scale: float
    snr_db: float | None
    illumination: float
    border: float
    sites_per_class: int
    endmembers: np.ndarray  # (classes + 1, bands) float32, row 0 the background
    noise_sigma: np.ndarray  # (bands,) float64; zeros when snr_db is None
    clipped_fraction: float
    pure_fraction: float  # pixels whose largest abundance exceeds 0.99
    abundances: np.ndarray | None = None
    clean: np.ndarray | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON-able settings (for a trace's provenance)."""
        return {"generator": "snnsim.workload.hsi.synthetic_scene", "preset": self.preset,
                "sizes": [self.height, self.width, self.bands], "classes": self.classes, "seed": self.seed,
                "scale": self.scale, "snr_db": self.snr_db, "illumination": self.illumination,
                "border": self.border, "sites_per_class": self.sites_per_class,
                "clipped_fraction": self.clipped_fraction, "pure_fraction": round(self.pure_fraction, 6),
                "note": "synthetic linear-mixing scene; preset sizes only, not the dataset"}


def _positive_int(v: Any, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise WorkloadError("must be a positive integer", key=key, expected="an integer >= 1", found=repr(v))
    return int(v)


def _sizes(preset: str | None, sizes: Any, scale: float) -> tuple[int, int, int, int]:
    if sizes is not None:
        if preset is not None:
            raise WorkloadError("give a preset or sizes, not both", key="sizes", expected="one of them",
                                found=f"preset {preset!r} and sizes {sizes!r}")
        if not isinstance(sizes, (tuple, list)) or len(sizes) != 4:
            raise WorkloadError("sizes must be (height, width, bands, classes)", key="sizes",
                                expected="4 positive integers", found=repr(sizes))
        h, w, b, c = (_positive_int(v, f"sizes[{i}]") for i, v in enumerate(sizes))
    else:
        if preset not in PRESETS:
            raise WorkloadError("unknown scene preset", key="preset", expected=", ".join(PRESETS), found=repr(preset),
                                suggestion=did_you_mean(str(preset), tuple(PRESETS)))
        h, w, b, c = PRESETS[preset]
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale <= 1):
        raise WorkloadError("scale must be in (0, 1]", key="scale", expected="0 < scale <= 1 (spatial only)",
                            found=repr(scale))
    h, w = max(4, round(h * scale)), max(4, round(w * scale))
    return h, w, b, c


def endmember_spectra(n: int, bands: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` smooth random spectra (n, bands) float64 in [0.05, 0.8]: a base level plus 3-6
    Gaussian bumps each (centre over the bands, width 3-25 % of ``bands``), min-max rescaled to a
    random sub-range of [0.05, 0.8] of span at least 0.3 (reflectances of distinct materials)."""
    axis = np.arange(bands, dtype=np.float64)
    out = np.empty((n, bands))
    for i in range(n):
        s = np.full(bands, rng.uniform(0.0, 0.5))
        for _ in range(int(rng.integers(3, 7))):
            centre = rng.uniform(0, bands - 1)
            width = rng.uniform(0.03, 0.25) * bands
            s += rng.uniform(-1.0, 1.0) * np.exp(-0.5 * ((axis - centre) / width) ** 2)
        lo = rng.uniform(0.05, 0.45)
        hi = rng.uniform(lo + 0.3, 0.8)
        span = s.max() - s.min()
        out[i] = lo + (s - s.min()) / (span if span > 0 else 1.0) * (hi - lo)
    return out


def abundance_maps(h: int, w: int, classes: int, sites_per_class: int, border: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Soft Voronoi abundances (h, w, classes + 1) float64 summing to 1 per pixel, and the labels
    (h, w) int64 (0 = background) of the nearest site. The background owns ``sites_per_class``
    sites like each class. ``border``: the soft-min length in pixels (0: pure, hard partition)."""
    owners = np.repeat(np.arange(classes + 1), sites_per_class)
    sites = rng.uniform((0, 0), (h, w), size=(len(owners), 2))
    yy, xx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    d = np.sqrt((yy[..., None] - sites[:, 0]) ** 2 + (xx[..., None] - sites[:, 1]) ** 2)  # (h, w, sites)
    nearest = d.argmin(axis=-1)
    labels = owners[nearest].astype(np.int64)
    if border > 0:
        wts = np.exp(-(d - d.min(axis=-1, keepdims=True)) / border)
    else:
        wts = (np.arange(len(owners)) == nearest[..., None]).astype(np.float64)
    ab = np.zeros((h, w, classes + 1))
    for c in range(classes + 1):
        ab[..., c] = wts[..., owners == c].sum(axis=-1)
    ab /= ab.sum(axis=-1, keepdims=True)
    return ab, labels


def illumination_field(h: int, w: int, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field (h, w) of mean ~1 in [1 - amplitude, 1 + amplitude]: three
    spatial cosines with wavelengths of 0.5-2 image sizes, normalised to that range."""
    if amplitude == 0:
        return np.ones((h, w))
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    f = np.zeros((h, w))
    for _ in range(3):
        ky, kx = rng.uniform(0.5, 2.0, size=2) * rng.choice([-1, 1], size=2)
        f += np.cos(2 * np.pi * (ky * yy + kx * xx) + rng.uniform(0, 2 * np.pi))
    peak = np.abs(f).max()
    return 1.0 + amplitude * f / (peak if peak > 0 else 1.0)


def synthetic_scene(preset: str | None = "indian_pines", *, sizes: tuple[int, int, int, int] | None = None,
                    scale: float = 1.0, seed: int = 0, snr_db: float | None = 30.0, illumination: float = 0.1,
                    border: float = 1.0, sites_per_class: int = 2,
                    keep: bool = False) -> tuple[np.ndarray, np.ndarray, SceneMeta]:
    """A synthetic hyperspectral scene: ``(cube (H, W, B) float32 in [0, 1], labels (H, W) int64,
    meta)``. Labels are 0 for the background (unlabelled) and 1..classes for the classes.

    ``preset``: a name of :data:`PRESETS` (its sizes, not its data), or None with ``sizes =
    (height, width, bands, classes)``. ``scale``: spatial factor in (0, 1] (bands and classes are
    kept), for small scenes in tests and CPU training. ``snr_db``: the per-band signal-to-noise
    ratio (mean signal power over noise variance) in dB; None for no noise. ``illumination``:
    the relative amplitude of the smooth illumination field (0 for none, < 0.25). ``border``: the
    mixing length at region edges in pixels of the full-size scene (it is scaled with the image,
    as the sites are: a scaled scene is the same map at a lower resolution). ``keep``: keep the abundances and the clean cube in
    ``meta`` (memory: two more cubes). Deterministic from ``seed`` (see the module docstring).
    """
    h, w, b, c = _sizes(preset, sizes, scale)
    spc = _positive_int(sites_per_class, "sites_per_class")
    if not (isinstance(illumination, (int, float)) and 0 <= illumination < 0.25):
        raise WorkloadError("illumination out of range", key="illumination", expected="0 <= illumination < 0.25",
                            found=repr(illumination), suggestion="a relative amplitude such as 0.1")
    if not (isinstance(border, (int, float)) and border >= 0):
        raise WorkloadError("border must be >= 0", key="border", expected="a length in pixels", found=repr(border))
    if snr_db is not None and not (isinstance(snr_db, (int, float)) and math.isfinite(snr_db)):
        raise WorkloadError("snr_db must be a finite number or None", key="snr_db", expected="e.g. 30.0",
                            found=repr(snr_db))
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise WorkloadError("seed must be a non-negative integer", key="seed", expected="e.g. 0", found=repr(seed))
    r_spec, r_site, r_illum, r_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4))
    ends = endmember_spectra(c + 1, b, r_spec)
    ab, labels = abundance_maps(h, w, c, spc, float(border) * float(scale), r_site)
    illum = illumination_field(h, w, float(illumination), r_illum)
    clean = illum[..., None] * (ab.reshape(-1, c + 1) @ ends).reshape(h, w, b)
    if snr_db is None:
        sigma = np.zeros(b)
        cube = clean.copy()
    else:
        sigma = np.sqrt((clean ** 2).mean(axis=(0, 1)) / 10.0 ** (snr_db / 10.0))
        cube = clean + r_noise.standard_normal((h, w, b)) * sigma
    clipped = float(np.mean((cube < 0) | (cube > 1)))
    cube = np.clip(cube, 0.0, 1.0).astype(np.float32)
    meta = SceneMeta(preset=preset, height=h, width=w, bands=b, classes=c, seed=int(seed), scale=float(scale),
                     snr_db=None if snr_db is None else float(snr_db), illumination=float(illumination),
                     border=float(border), sites_per_class=spc, endmembers=ends.astype(np.float32),
                     noise_sigma=sigma, clipped_fraction=clipped, pure_fraction=float(np.mean(ab.max(axis=-1) > 0.99)),
                     abundances=ab if keep else None, clean=clean if keep else None)
    return cube, labels, meta


@dataclass
class Pca:
    """A fitted principal-component transform of the band axis: ``apply(x) = ((x - mean) @
    components.T) / (sqrt(explained_variance) if whiten)``. Components are rows (k, bands), in
    decreasing variance, each signed so that its largest-magnitude loading is positive (the SVD's
    sign is otherwise arbitrary): the same cube gives the same transform."""

    mean: np.ndarray  # (bands,) float64
    components: np.ndarray  # (k, bands) float64
    explained_variance: np.ndarray  # (k,) float64 (divisor n - 1)
    explained_variance_ratio: np.ndarray  # (k,)
    whiten: bool = False

    def apply(self, cube: np.ndarray) -> np.ndarray:
        """(..., bands) -> (..., k) float32."""
        x = np.asarray(cube, dtype=np.float64)
        if x.shape[-1] != self.mean.shape[0]:
            raise WorkloadError("the cube's band count differs from the fitted PCA's", key="cube",
                                expected=f"{self.mean.shape[0]} bands", found=f"{x.shape[-1]}")
        y = (x - self.mean) @ self.components.T
        if self.whiten:
            y = y / np.sqrt(np.maximum(self.explained_variance, 1e-30))
        return y.astype(np.float32)


def pca(cube: np.ndarray, k: int, *, whiten: bool = False) -> tuple[np.ndarray, Pca]:
    """Reduce the bands of ``cube`` (H, W, B) to ``k`` principal components: ``(reduced (H, W, k)
    float32, transform)``, fitted on every pixel by a NumPy SVD in float64. ``whiten``: divide
    each component by its standard deviation (HybridSN's PCA is whitened)."""
    x = np.asarray(cube)
    if x.ndim != 3:
        raise WorkloadError("pca needs a cube (height, width, bands)", key="cube", expected="3 dimensions",
                            found=f"shape {list(x.shape)}")
    k = _positive_int(k, "k")
    if k > x.shape[-1]:
        raise WorkloadError("more components than bands", key="k", expected=f"<= {x.shape[-1]}", found=str(k))
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    var = s ** 2 / max(flat.shape[0] - 1, 1)
    t = Pca(mean=mean, components=comps, explained_variance=var[:k],
            explained_variance_ratio=var[:k] / var.sum(), whiten=bool(whiten))
    return t.apply(x), t


def unit_scale(x: np.ndarray, lo: np.ndarray | None = None,
               hi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map each band of ``x`` (..., k) to [0, 1]: ``clip((x - lo) / (hi - lo), 0, 1)`` with
    ``lo``/``hi`` the per-band minimum and maximum over all pixels unless given (give the fitted
    ones to scale other data the same way). Returns ``(scaled float32, lo, hi)``."""
    a = np.asarray(x, dtype=np.float64)
    lo_ = a.reshape(-1, a.shape[-1]).min(axis=0) if lo is None else np.asarray(lo, np.float64)
    hi_ = a.reshape(-1, a.shape[-1]).max(axis=0) if hi is None else np.asarray(hi, np.float64)
    span = np.where(hi_ > lo_, hi_ - lo_, 1.0)
    return np.clip((a - lo_) / span, 0.0, 1.0).astype(np.float32), lo_, hi_


@dataclass
class PatchSet:
    """Patches (N, 1, bands, size, size) float32 and their labels (N,) int64 (0-based: scene label
    - 1), for the training and test pixels; ``*_centres`` (N, 2) are the (row, col) of each patch's
    centre pixel in the scene."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_centres: np.ndarray
    test_centres: np.ndarray
    size: int
    settings: dict[str, Any] = field(default_factory=dict)


def _cut(padded: np.ndarray, centres: np.ndarray, size: int) -> np.ndarray:
    """Patches (N, 1, k, size, size) of a zero-padded (H + 2m, W + 2m, k) cube around centres."""
    out = np.empty((len(centres), 1, padded.shape[-1], size, size), np.float32)
    for i, (r, c) in enumerate(centres):
        out[i, 0] = padded[r:r + size, c:c + size].transpose(2, 0, 1)
    return out


def patches(cube: np.ndarray, labels: np.ndarray, size: int, *, test_fraction: float = 0.7, seed: int = 0,
            max_per_class: int | None = None) -> PatchSet:
    """Square patches centred on every labelled pixel (label > 0) of ``cube`` (H, W, k) in [0, 1]:
    the cube is zero-padded by ``size // 2`` on each side, so border pixels get zeros outside the
    scene. A seeded split per class keeps ``test_fraction`` of each class's pixels for testing
    (HybridSN: 0.7) and at least one for training; ``max_per_class`` caps the pixels drawn per class
    (before the split), for small CPU runs. Patch layout: (N, 1, k, size, size)."""
    x = np.asarray(cube)
    lab = np.asarray(labels)
    if x.ndim != 3 or lab.shape != x.shape[:2]:
        raise WorkloadError("patches need a cube (H, W, bands) and labels (H, W)", key="labels",
                            expected=f"labels of shape {list(x.shape[:2])}", found=f"{list(lab.shape)}")
    if not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise WorkloadError("the cube must be in [0, 1] (an analog pixel value)", key="cube",
                            expected="values in [0, 1]", found=f"[{float(np.nanmin(x))}, {float(np.nanmax(x))}]",
                            suggestion="rescale the PCA output with unit_scale()")
    size = _positive_int(size, "size")
    if size % 2 == 0:
        raise WorkloadError("patch size must be odd (centred on a pixel)", key="size", expected="an odd size",
                            found=str(size), suggestion=f"{size + 1}")
    if not 0.0 <= test_fraction < 1.0:
        raise WorkloadError("test_fraction out of range", key="test_fraction", expected="0 <= f < 1",
                            found=repr(test_fraction))
    rng = np.random.default_rng(int(seed))
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in np.unique(lab[lab > 0]):
        idx = np.argwhere(lab == c)
        idx = idx[rng.permutation(len(idx))]
        if max_per_class is not None:
            idx = idx[:_positive_int(max_per_class, "max_per_class")]
        n_test = min(len(idx) - 1, int(round(test_fraction * len(idx))))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    if not train:
        raise WorkloadError("the scene has no labelled pixel", key="labels", expected="labels > 0", found="none")
    tr, te = np.concatenate(train), np.concatenate(test)
    tr, te = tr[rng.permutation(len(tr))], te[rng.permutation(len(te))]
    m = size // 2
    padded = np.pad(x.astype(np.float32), ((m, m), (m, m), (0, 0)))
    return PatchSet(x_train=_cut(padded, tr, size), y_train=(lab[tr[:, 0], tr[:, 1]] - 1).astype(np.int64),
                    x_test=_cut(padded, te, size), y_test=(lab[te[:, 0], te[:, 1]] - 1).astype(np.int64),
                    train_centres=tr, test_centres=te, size=size,
                    settings={"size": size, "padding": "zeros", "test_fraction": test_fraction, "seed": int(seed),
                              "max_per_class": max_per_class, "split": "per class, seeded permutation"})
