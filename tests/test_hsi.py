"""Synthetic hyperspectral scenes, PCA, patches, and the ACE-SNN models' export (snnsim.workload.hsi)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from snnsim.errors import WorkloadError
from snnsim.workload import hsi

ROOT = Path(__file__).resolve().parents[1]
NEEDS_TORCH = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("torch", "snntorch")),
                                 reason="needs the torch extra: pip install -e '.[torch]'")


@pytest.fixture(scope="module")
def scene():
    return hsi.synthetic_scene("indian_pines", scale=0.2, seed=3, keep=True)


def test_scene_shapes_ranges_and_classes(scene):
    cube, labels, meta = scene
    assert cube.shape == (29, 29, 200) and cube.dtype == np.float32
    assert labels.shape == (29, 29) and labels.dtype == np.int64
    assert 0.0 <= cube.min() and cube.max() <= 1.0
    assert meta.classes == 16 and meta.endmembers.shape == (17, 200)
    assert set(np.unique(labels)) <= set(range(17))
    assert len(np.unique(labels)) >= 12  # 2 sites per class: nearly every class owns some pixels
    assert meta.clipped_fraction == 0.0
    assert meta.as_dict()["note"].startswith("synthetic")


@pytest.mark.parametrize("preset,scale,want", [("pavia_university", 0.05, (30, 17, 103, 9)),
                                               ("salinas", 0.05, (26, 11, 204, 16))])
def test_presets_keep_bands_and_classes(preset, scale, want):
    cube, labels, meta = hsi.synthetic_scene(preset, scale=scale, seed=0)
    assert (*cube.shape, meta.classes) == want
    assert labels.max() <= want[3]


def test_explicit_sizes_and_full_preset_sizes():
    cube, labels, meta = hsi.synthetic_scene(None, sizes=(12, 10, 8, 3), seed=1)
    assert cube.shape == (12, 10, 8) and meta.classes == 3 and labels.max() <= 3
    assert hsi.PRESETS["indian_pines"] == (145, 145, 200, 16)


def test_deterministic_from_the_seed(scene):
    cube, labels, meta = scene
    again, lab2, _ = hsi.synthetic_scene("indian_pines", scale=0.2, seed=3)
    assert np.array_equal(cube, again) and np.array_equal(labels, lab2)
    other, _, _ = hsi.synthetic_scene("indian_pines", scale=0.2, seed=4)
    assert not np.array_equal(cube, other)


def test_abundances_sum_to_one_and_pure_inside_regions(scene):
    _, labels, meta = scene
    ab = meta.abundances
    assert ab.shape == (29, 29, 17)
    assert np.allclose(ab.sum(axis=-1), 1.0, atol=1e-12) and ab.min() >= 0
    # the label is the class of the nearest site: its abundance is the pixel's largest... mostly
    assert np.mean(ab.argmax(axis=-1) == labels) > 0.95
    big = hsi.synthetic_scene(None, sizes=(48, 48, 10, 3), seed=0, sites_per_class=1, keep=True)[2].abundances
    purity = big.max(axis=-1)
    assert np.mean(purity > 0.99) > 0.3 and np.mean(purity < 0.9) > 0.05  # pure inside regions, mixed at edges
    assert meta.pure_fraction == pytest.approx(float(np.mean(ab.max(axis=-1) > 0.99)))
    hard = hsi.synthetic_scene("indian_pines", scale=0.2, seed=3, border=0.0, keep=True)[2].abundances
    assert set(np.unique(hard)) == {0.0, 1.0}


def test_noise_level_is_the_stated_snr(scene):
    cube, _, meta = scene
    noise = cube.astype(np.float64) - meta.clean
    snr = 10 * np.log10((meta.clean ** 2).mean(axis=(0, 1)) / noise.var(axis=(0, 1)))
    assert abs(float(np.median(snr)) - 30.0) < 0.3  # 841 pixels per band: ~0.2 dB spread
    assert np.allclose(noise.std(axis=(0, 1)) / meta.noise_sigma, 1.0, atol=0.12)
    assert abs(float(noise.mean())) < 3 * meta.noise_sigma.mean() / np.sqrt(noise.size)
    quiet, _, qmeta = hsi.synthetic_scene("indian_pines", scale=0.2, seed=3, snr_db=None)
    assert np.array_equal(quiet, meta.clean.astype(np.float32)) and not qmeta.noise_sigma.any()


def test_illumination_varies_brightness():
    flat = hsi.synthetic_scene(None, sizes=(40, 40, 10, 1), seed=0, snr_db=None, illumination=0.0,
                               sites_per_class=1, border=0.0, keep=True)[2]
    lit = hsi.synthetic_scene(None, sizes=(40, 40, 10, 1), seed=0, snr_db=None, illumination=0.2,
                              sites_per_class=1, border=0.0, keep=True)[2]
    ratio = lit.clean / flat.clean
    assert np.allclose(ratio, ratio[..., :1])  # one factor per pixel, the same for every band
    assert 0.79 < ratio.min() < 0.95 and 1.05 < ratio.max() < 1.21


def test_bad_arguments_are_workload_errors():
    with pytest.raises(WorkloadError) as e:
        hsi.synthetic_scene("indian_pine")
    assert "indian_pines" in str(e.value)
    for kwargs in ({"scale": 0}, {"scale": 2.0}, {"illumination": 0.5}, {"seed": -1}, {"snr_db": float("inf")}):
        with pytest.raises(WorkloadError):
            hsi.synthetic_scene("salinas", **kwargs)
    with pytest.raises(WorkloadError):
        hsi.synthetic_scene("salinas", sizes=(4, 4, 4, 2))


def test_pca_ordering_orthonormality_and_reproducibility(scene):
    cube, _, _ = scene
    red, t = hsi.pca(cube, 30)
    assert red.shape == (29, 29, 30) and red.dtype == np.float32
    ev = t.explained_variance
    assert np.all(np.diff(ev) <= 0) and 0.9 < t.explained_variance_ratio.sum() <= 1.0
    assert np.allclose(t.components @ t.components.T, np.eye(30), atol=1e-10)
    assert np.allclose(red.reshape(-1, 30).var(axis=0, ddof=1), ev, rtol=1e-4)
    red2, t2 = hsi.pca(cube.copy(), 30)
    assert np.array_equal(red, red2) and np.array_equal(t.components, t2.components)
    assert np.array_equal(t.apply(cube), red)
    white, tw = hsi.pca(cube, 5, whiten=True)
    assert np.allclose(white.reshape(-1, 5).std(axis=0, ddof=1), 1.0, atol=1e-4)
    full, tf = hsi.pca(cube[:, :, :12], 12)
    back = full.astype(np.float64) @ tf.components + tf.mean
    assert np.allclose(back, cube[:, :, :12], atol=1e-5)  # all components: the cube again
    with pytest.raises(WorkloadError):
        hsi.pca(cube, 201)
    with pytest.raises(WorkloadError):
        t.apply(cube[:, :, :10])


def test_unit_scale_maps_each_band_to_0_1(scene):
    red, _ = hsi.pca(scene[0], 4)
    u, lo, hi = hsi.unit_scale(red)
    assert u.min() == 0.0 and u.max() == 1.0
    assert np.allclose(u.reshape(-1, 4).min(axis=0), 0) and np.allclose(u.reshape(-1, 4).max(axis=0), 1)
    u2, _, _ = hsi.unit_scale(red * 2, lo, hi)  # fitted ranges reused: out-of-range values clipped
    assert u2.max() == 1.0 and u2.min() == 0.0


def test_patches_are_centred_padded_and_split(scene):
    cube, labels, _ = scene
    u, _, _ = hsi.unit_scale(hsi.pca(cube, 6)[0])
    ps = hsi.patches(u, labels, 7, test_fraction=0.7, seed=1)
    n = int((labels > 0).sum())
    assert len(ps.y_train) + len(ps.y_test) == n
    assert ps.x_train.shape[1:] == (1, 6, 7, 7) and ps.x_train.dtype == np.float32
    for x, y, centres in ((ps.x_train, ps.y_train, ps.train_centres), (ps.x_test, ps.y_test, ps.test_centres)):
        r, c = centres[:, 0], centres[:, 1]
        assert np.array_equal(x[:, 0, :, 3, 3], u[r, c])  # the centre pixel, all bands
        assert np.array_equal(y, labels[r, c] - 1)
    assert 0.0 <= ps.x_train.min() and ps.x_train.max() <= 1.0
    for cls in np.unique(labels[labels > 0]):  # per-class split, at least one training pixel
        k = int((labels == cls).sum())
        assert int((ps.y_train == cls - 1).sum()) == k - min(k - 1, round(0.7 * k))
    # a pixel next to the corner: the padded rows and columns are zeros, the rest the scene
    corner = hsi.patches(u, np.where(np.arange(labels.size).reshape(labels.shape) == 0, 1, 0), 7,
                         test_fraction=0.0)
    patch = corner.x_train[0, 0]
    assert np.all(patch[:, :3, :] == 0) and np.all(patch[:, :, :3] == 0)
    assert np.array_equal(patch[:, 3:, 3:], u[:4, :4].transpose(2, 0, 1))
    again = hsi.patches(u, labels, 7, test_fraction=0.7, seed=1)
    assert np.array_equal(again.x_test, ps.x_test) and np.array_equal(again.train_centres, ps.train_centres)
    capped = hsi.patches(u, labels, 7, max_per_class=3, seed=1)
    assert np.bincount(np.concatenate([capped.y_train, capped.y_test])).max() <= 3


def test_patches_refuse_unscaled_cubes_and_even_sizes(scene):
    cube, labels, _ = scene
    red, _ = hsi.pca(cube, 3)
    with pytest.raises(WorkloadError) as e:
        hsi.patches(red, labels, 5)
    assert "unit_scale" in str(e.value)
    with pytest.raises(WorkloadError):
        hsi.patches(hsi.unit_scale(red)[0], labels, 4)
    with pytest.raises(WorkloadError):
        hsi.patches(hsi.unit_scale(red)[0], labels[:5], 5)


def _script():
    sys.path.insert(0, str(ROOT / "workloads"))
    try:
        import train_ace_snn
    finally:
        sys.path.pop(0)
    return train_ace_snn


@NEEDS_TORCH
@pytest.mark.parametrize("family", ["3d", "hybrid"])
def test_models_of_the_script_export_and_verify(family, tmp_path):
    import torch
    from snnsim.export import from_torch
    from snnsim.verify_graph import verify_path

    s = _script()
    torch.manual_seed(0)
    model = s.build_model(family, bands=13, patch=9, classes=5)
    s.quantise(model)
    with torch.no_grad():  # strong enough weights for every layer to spike on a random input
        for m in s.weighted(model):
            m.parametrizations.weight.original.mul_(3.0)
    s.freeze_quantised(model)
    model.eval()
    x = torch.rand(2, 1, 13, 9, 9)
    path = tmp_path / f"{family}.npz"
    gt = from_torch(model, x, s.TIME_STEPS, path=path, weight_bits=s.WEIGHT_BITS)
    ops = [n.op for n in gt.nodes]
    assert ops.count("conv3d") == 3 and ops.count("neuron") == (3 if family == "3d" else 5)
    if family == "hybrid":
        merge = next(n for n in gt.nodes if n.op == "reshape")
        assert merge.out_shape == (32 * 1, 3, 3)  # channels x the remaining band merged into 2D channels
    rates = gt.provenance["export"]["spike_rates"]
    assert all(r > 0 for r in rates.values()), rates
    result = verify_path(path)
    assert result.ok and result.counts["match"] == ops.count("neuron")


@pytest.mark.parametrize("name,neurons", [("hsi_ip_3d", 3), ("hsi_ip_hybrid", 5)])
def test_committed_traces_verify(name, neurons):
    from snnsim.verify_graph import verify_path
    from snnsim.workload.graphtrace import load_graph_trace

    path = ROOT / "workloads" / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"{path.name} not written (python workloads/train_ace_snn.py)")
    assert path.stat().st_size < 1_000_000
    gt = load_graph_trace(path)
    assert gt.time_steps == 5 and 0.0 <= gt.input.min() and gt.input.max() <= 1.0
    assert gt.provenance["trained"]["data"]["scene"]["note"].startswith("synthetic")
    result = verify_path(path)
    assert result.ok and result.counts["match"] == neurons
