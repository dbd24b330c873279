"""Synthetic trace generator and P2M pixel transfer curve."""

from __future__ import annotations

import numpy as np
import pytest
from snnsim.errors import UsageError
from snnsim.hw.pixel_curve import p2m_conv2d, pixel_response, quantize_weights
from snnsim.workload.synth import ENCODING_TOPOLOGIES, TOPOLOGIES, build_topology, synthesize
from snnsim.workload.trace import load_workload, save_workload

# Coefficients written out again (Datta et al., Sci. Rep. 2022), independent of the module.
COEF = dict(p00=0.1694, p01=0.422378, p10=0.25498, p11=0.072789, p20=-0.17645, p21=-0.043589,
            p30=-0.09217)

SMALL = dict(samples=2, time_steps=3, out_channels=4, seed=3, target_rate=0.1, first_layer_rate=0.15)
SMALL_VSA = dict(samples=2, time_steps=4, seed=5, target_rate=0.1)


@pytest.fixture(scope="module")
def small():
    return synthesize("small_cnn", **SMALL)


@pytest.fixture(scope="module")
def small_vsa():
    return synthesize("small_vsa", **SMALL_VSA)


# ----------------------------------------------------------------------------- references

def ref_f(x: float, w: float) -> float:
    d = x - 0.5
    c = COEF
    return (c["p00"] + c["p10"] * d + c["p20"] * d * d + c["p30"] * d * d * d
            + w * (c["p01"] + c["p11"] * d + c["p21"] * d * d))


def ref_p2m(images, weights, stride):
    n, ci, h, w = images.shape
    co, _, kh, kw = weights.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, co, ho, wo))
    for b in range(n):
        for o in range(co):
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0
                    for c in range(ci):
                        for u in range(kh):
                            for v in range(kw):
                                wt = float(weights[o, c, u, v])
                                x = float(images[b, c, i * stride + u, j * stride + v])
                                if wt > 0:
                                    acc += ref_f(x, wt)
                                elif wt < 0:
                                    acc -= ref_f(x, -wt)
                    out[b, o, i, j] = acc
    return out


def ref_conv(x, w, stride, pad, groups):
    """x (B, C, H, W) 0/1, w (Co, C/g, k, k): plain loops."""
    b_, c_, h, wd = x.shape
    co, cg, kh, kw = w.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    cog = co // groups
    out = np.zeros((b_, co, ho, wo))
    for b in range(b_):
        for o in range(co):
            g = o // cog
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0
                    for c in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                r, q = i * stride + u - pad, j * stride + v - pad
                                if 0 <= r < h and 0 <= q < wd:
                                    acc += float(w[o, c, u, v]) * float(x[b, g * cg + c, r, q])
                    out[b, o, i, j] = acc
    return out


def ref_if(current, thresholds, dtype=np.float32):
    """current (T, N, C, ...) float; scalar loop in the documented order, in ``dtype``."""
    t_steps = current.shape[0]
    flat = current.reshape(t_steps, current.shape[1], current.shape[2], -1)
    out = np.zeros(flat.shape, dtype=bool)
    for n in range(flat.shape[1]):
        for c in range(flat.shape[2]):
            th = dtype(np.float32(thresholds[c]))
            for p in range(flat.shape[3]):
                v = dtype(0.0)
                for t in range(t_steps):
                    v = dtype(v + dtype(flat[t, n, c, p]))
                    if v >= th:
                        out[t, n, c, p] = True
                        v = dtype(v - th)
    return out.reshape(current.shape)


def ref_int_if(current, thresholds, bits=16):
    """Integer IF with a saturating signed ``bits`` membrane; plain Python integers."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    t_steps = current.shape[0]
    flat = current.reshape(t_steps, current.shape[1], current.shape[2], -1)
    out = np.zeros(flat.shape, dtype=bool)
    for n in range(flat.shape[1]):
        for c in range(flat.shape[2]):
            th = int(thresholds[c])
            for p in range(flat.shape[3]):
                v = 0
                for t in range(t_steps):
                    v = min(max(v + int(flat[t, n, c, p]), lo), hi)
                    if v >= th:
                        out[t, n, c, p] = True
                        v -= th
    return out.reshape(current.shape)


def spikes_tn(wl, name):
    """Recorded spikes as (T, N, ...)."""
    return np.swapaxes(wl.spikes(name), 0, 1)


# ----------------------------------------------------------------------------- pixel curve

def test_pixel_response_values_and_broadcasting():
    assert pixel_response(0.5, 0.0) == pytest.approx(COEF["p00"])
    assert pixel_response(0.5, 1.0) == pytest.approx(COEF["p00"] + COEF["p01"])
    x = np.linspace(0, 1, 5)[:, None]
    w = np.linspace(0, 1, 3)[None, :]
    got = pixel_response(x, w)
    assert got.shape == (5, 3)
    want = np.array([[ref_f(a, b) for b in w[0]] for a in x[:, 0]])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_p2m_conv2d_matches_loops_and_skips_zero_weights():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 9, 10), dtype=np.float32)
    weights = quantize_weights(rng.uniform(-1, 1, (4, 3, 3, 3)), 3)
    weights[0, 0, 0, 0] = 0.0
    assert (weights == 0).any() and (weights > 0).any() and (weights < 0).any()
    got = p2m_conv2d(images, weights, 2)
    assert got.shape == (2, 4, 4, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_p2m(images, weights, 2), rtol=1e-5, atol=1e-5)
    # A window with all-zero weights outputs exactly 0 (no transistors, no offset).
    zero = p2m_conv2d(images, np.zeros((1, 3, 3, 3), np.float32), 3)
    assert np.all(zero == 0)
    # Up/down counting: negating the weights negates the output.
    np.testing.assert_allclose(p2m_conv2d(images, -weights, 2), -got, rtol=1e-6)


def test_quantize_weights():
    w = np.linspace(-1, 1, 201)
    q1 = quantize_weights(w, 1)
    assert set(np.unique(q1)) == {-1.0, 1.0}
    q4 = quantize_weights(w, 4)
    assert q4.dtype == np.float32
    np.testing.assert_allclose(q4 * 7, np.round(q4 * 7), atol=1e-5)  # magnitudes k / 7
    assert np.max(np.abs(q4 - w)) <= 1 / 14 + 1e-6
    assert np.all(np.sign(q4[q4 != 0]) == np.sign(w[q4 != 0]))
    assert quantize_weights(np.array([0.0]), 4)[0] == 0.0
    assert set(np.unique(quantize_weights(w, 2))) == {-1.0, 0.0, 1.0}
    with pytest.raises(UsageError):
        quantize_weights(w, 0)


# ----------------------------------------------------------------------------- traces

def test_deterministic_for_a_seed_and_differs_for_another(small):
    again = synthesize("small_cnn", **SMALL)
    assert small.packed_spikes.keys() == again.packed_spikes.keys()
    for name, packed in small.packed_spikes.items():
        assert packed.tobytes() == again.packed_spikes[name].tobytes()
    for name, th in small.thresholds.items():
        assert th.tobytes() == again.thresholds[name].tobytes()
    assert small.input.tobytes() == again.input.tobytes()
    other = synthesize("small_cnn", **{**SMALL, "seed": 4})
    assert any(small.packed_spikes[k].tobytes() != other.packed_spikes[k].tobytes()
               for k in small.packed_spikes)


def test_save_load_round_trip(small, tmp_path):
    path = save_workload(small, tmp_path / "small.npz")
    back = load_workload(path)
    assert [x.as_dict() for x in back.layers] == [x.as_dict() for x in small.layers]
    assert back.time_steps == small.time_steps and back.samples == small.samples
    assert back.model == "small_cnn" and back.dataset == small.dataset
    np.testing.assert_array_equal(back.input, small.input)
    for name in small.packed_spikes:
        np.testing.assert_array_equal(back.packed_spikes[name], small.packed_spikes[name])
    for name in small.weights:
        np.testing.assert_array_equal(back.weight(name), small.weights[name])
    for name in small.thresholds:
        np.testing.assert_array_equal(back.thresholds[name], small.thresholds[name])
    assert back.provenance["achieved_rates"] == small.provenance["achieved_rates"]


def test_graph_weights_and_provenance(small):
    names = [x.name for x in small.layers]
    assert names == ["conv0", "conv1", "conv2", "add", "maxpool", "conv3", "avgpool", "flatten", "fc"]
    shapes = {x.name: x.out_shape for x in small.layers}
    assert shapes["conv0"] == (4, 8, 8) and shapes["add"] == (16, 8, 8) and shapes["conv3"] == (16, 4, 4)
    assert shapes["avgpool"] == (16, 2, 2) and shapes["fc"] == (10,)
    assert small.layer("conv3").groups == 2 and small.layer("conv0").weight_bits == 4
    assert small.layer("fc").neuron is None and "fc" not in small.packed_spikes
    for layer in small.layers:
        if layer.weight_shape is not None:
            w = small.weights[layer.name]
            assert w.shape == layer.weight_shape and w.dtype == np.float32
        if layer.neuron is not None:
            assert layer.neuron.per_channel and layer.neuron.leak == 0.0 and layer.neuron.reset == "subtract"
            th = small.thresholds[layer.name]
            assert th.shape == (layer.out_shape[0],) and np.all(th > 0)
            assert layer.neuron.threshold == pytest.approx(float(th.mean()), rel=1e-5)
    for name in ("conv1", "conv2", "conv3", "fc"):
        assert set(np.unique(small.weights[name])) <= {-1.0, 1.0}
    levels = small.weights["conv0"] * 7
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-5)
    p = small.provenance
    assert "not accuracy" in p["statement"] and p["seed"] == 3 and p["topology"] == "small_cnn"
    assert p["images"][0].startswith("grace_hopper") and "grace_hopper" in p["image_sources"]
    assert small.input.shape == (2, 3, 32, 32) and small.input.dtype == np.float32
    assert 0.0 <= small.input.min() and small.input.max() <= 1.0 and small.input.std() > 0.05


def test_rates_near_target(small):
    achieved = small.provenance["achieved_rates"]
    assert set(achieved) == {x.name for x in small.layers if x.neuron is not None}
    for name, rate in achieved.items():
        target = 0.15 if name == "conv0" else 0.1
        assert target / 2 <= rate <= target * 2, (name, rate)
        counts = small.spike_counts(name).sum()
        assert rate == pytest.approx(counts / (small.layer(name).out_size * 2 * 3), abs=1e-5)
    assert abs(achieved["conv0"] - 0.15) < 0.01


def test_more_samples_than_photos_use_distinct_crops():
    wl = synthesize("small_cnn", samples=7, time_steps=1, out_channels=2, seed=0)
    assert len(wl.provenance["images"]) == 7
    assert "crop" in wl.provenance["images"][6]
    flat = wl.input.reshape(7, -1)
    assert len({row.tobytes() for row in flat}) == 7


def test_in_pixel_layer_matches_loop_reference(small):
    layer = small.layer("conv0")
    current = ref_p2m(small.input, small.weights["conv0"], layer.stride[0]).astype(np.float32)
    current = np.broadcast_to(current, (small.time_steps, *current.shape))
    want = ref_if(current, small.thresholds["conv0"], dtype=np.float64)
    np.testing.assert_array_equal(spikes_tn(small, "conv0"), want)


@pytest.mark.parametrize("name", ["conv1", "conv3"])
def test_binary_conv_layer_matches_loop_reference(small, name):
    layer = small.layer(name)
    src = spikes_tn(small, layer.inputs[0])
    t_steps, n = src.shape[:2]
    x = src.reshape(t_steps * n, *src.shape[2:])
    cur = ref_conv(x, small.weights[name], layer.stride[0], layer.padding[0], layer.groups)
    cur = cur.reshape(t_steps, n, *cur.shape[1:])
    np.testing.assert_array_equal(spikes_tn(small, name), ref_if(cur, small.thresholds[name]))


def test_add_pool_flatten_layers_recompute(small):
    add = sum(spikes_tn(small, s).astype(np.float32) for s in small.layer("add").inputs)
    np.testing.assert_array_equal(spikes_tn(small, "add"), ref_if(add, small.thresholds["add"]))
    a = spikes_tn(small, "add")
    mp = a.reshape(*a.shape[:3], 4, 2, 4, 2).any(axis=(4, 6))
    np.testing.assert_array_equal(spikes_tn(small, "maxpool"), mp)
    c3 = spikes_tn(small, "conv3")
    avg = c3.reshape(*c3.shape[:3], 2, 2, 2, 2).sum(axis=(4, 6), dtype=np.float32) / np.float32(4)
    np.testing.assert_array_equal(spikes_tn(small, "avgpool"), ref_if(avg, small.thresholds["avgpool"]))
    np.testing.assert_array_equal(small.spikes("flatten"), small.spikes("avgpool").reshape(2, 3, -1))


def test_store_weights_false_keeps_spikes(small):
    lean = synthesize("small_cnn", **SMALL, store_weights=False)
    assert sorted(lean.weights) == ["conv0"] and "weights_note" in lean.provenance
    np.testing.assert_array_equal(lean.weights["conv0"], small.weights["conv0"])
    for name, packed in small.packed_spikes.items():
        np.testing.assert_array_equal(lean.packed_spikes[name], packed)


def test_resnet18_graph_shapes():
    layers = build_topology("resnet18")
    by = {x.name: x for x in layers}
    assert by["conv0"].out_shape == (64, 56, 56) and by["conv0"].kernel == (4, 4)
    assert by["conv0"].stride == (4, 4) and by["conv0"].padding == (0, 0) and by["conv0"].weight_bits == 4
    assert "layer1.0.downsample" not in by
    for stage, (c, hw) in enumerate(((64, 56), (128, 28), (256, 14), (512, 7)), start=1):
        for block in range(2):
            assert by[f"layer{stage}.{block}.add"].out_shape == (c, hw, hw)
        if stage > 1:
            ds = by[f"layer{stage}.0.downsample"]
            assert ds.kernel == (1, 1) and ds.stride == (2, 2)
            assert by[f"layer{stage}.0.conv1"].stride == (2, 2)
    assert by["avgpool"].kernel == (7, 7) and by["avgpool"].out_shape == (512, 1, 1)
    assert by["fc"].weight_shape == (1000, 512) and by["fc"].neuron is None
    assert all(x.neuron is not None for x in layers if x.op in ("conv2d", "add", "avgpool"))
    wide = {x.name: x for x in build_topology("resnet18", out_channels=32)}
    assert wide["layer1.0.downsample"].weight_shape == (64, 32, 1, 1)
    assert wide["layer1.0.downsample"].stride == (1, 1)


def test_every_topology_builds():
    for name in TOPOLOGIES:
        layers = build_topology(name)
        assert layers[0].name == "conv0" and layers[-1].op == "linear"


@pytest.mark.parametrize("kwargs, key", [
    (dict(topology="resnet19"), "topology"),
    (dict(samples=0), "samples"),
    (dict(samples=True), "samples"),
    (dict(time_steps=-1), "time_steps"),
    (dict(out_channels=0), "out_channels"),
    (dict(image_size=8), "image_size"),
    (dict(seed=-1), "seed"),
    (dict(target_rate=0.0), "target_rate"),
    (dict(target_rate=1.5), "target_rate"),
    (dict(first_layer_rate=1.0), "first_layer_rate"),
    (dict(first_layer_weight_bits=0), "first_layer_weight_bits"),
    (dict(rate_spread=-1.0), "rate_spread"),
])
def test_bad_arguments_raise_usage_error(kwargs, key):
    args = dict(topology="small_cnn", samples=1, time_steps=1)
    args.update(kwargs)
    topology = args.pop("topology")
    with pytest.raises(UsageError) as info:
        synthesize(topology, **args)
    err = info.value
    assert err.key == key and err.expected and err.found is not None
    if key == "topology":
        assert "resnet18" in err.suggestion


def test_without_scikit_image_uses_matplotlib_photo_only(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skimage.data", None)
    wl = synthesize("small_cnn", samples=2, time_steps=1, out_channels=2, seed=0)
    images = wl.provenance["images"]
    assert images[0].startswith("grace_hopper (centre") and images[1].startswith("grace_hopper (crop")
    assert list(wl.provenance["image_sources"]) == ["grace_hopper"]


# ----------------------------------------------------------------------------- integer thresholds, VSA

def test_core_thresholds_are_integers_in_their_unit(small):
    for layer in small.layers:
        if layer.neuron is None or layer.name == "conv0":
            continue
        th = small.thresholds[layer.name].astype(np.float64)
        unit = 1.0 / np.prod(layer.kernel) if layer.op == "avgpool" else 1.0
        levels = th / unit
        np.testing.assert_array_equal(levels, np.round(levels))
        assert levels.min() >= 1 and levels.max() <= 2 ** 15 - 1, layer.name
    # The in-pixel layer keeps real-valued thresholds.
    th0 = small.thresholds["conv0"].astype(np.float64)
    assert np.any(th0 != np.round(th0))


def test_vsa_graph_shapes_and_defaults():
    by = {x.name: x for x in build_topology("vsa_cifar10")}
    assert [x.name for x in by.values()] == ["conv0", "conv1", "pool1", "conv2", "pool2", "conv3", "pool3",
                                             "flatten", "fc1", "fc2"]
    assert by["conv0"].in_shape == (3, 32, 32) and by["conv0"].out_shape == (64, 32, 32)
    assert by["conv0"].kernel == (3, 3) and by["conv0"].padding == (1, 1) and by["conv0"].weight_bits == 8
    assert not by["conv0"].extra.get("in_pixel")
    assert by["conv1"].out_shape == (128, 32, 32) and by["conv2"].out_shape == (256, 16, 16)
    assert by["conv3"].out_shape == (256, 8, 8) and by["pool3"].out_shape == (256, 4, 4)
    assert all(by[f"pool{i}"].neuron is None and by[f"pool{i}"].op == "maxpool" for i in (1, 2, 3))
    assert by["fc1"].weight_shape == (512, 4096) and by["fc1"].neuron is not None
    assert by["fc2"].weight_shape == (10, 512) and by["fc2"].neuron is None
    assert all(by[n].weight_bits == 1 for n in ("conv1", "conv2", "conv3", "fc1", "fc2"))
    by = {x.name: x for x in build_topology("vsa_mnist", out_channels=7, first_layer_weight_bits=3)}
    assert by["conv0"].in_shape == (1, 28, 28) and by["conv0"].out_shape == (32, 28, 28)
    assert by["conv0"].weight_bits == 8  # out_channels and first_layer_weight_bits are ignored
    assert by["conv1"].out_shape == (32, 28, 28) and by["conv2"].out_shape == (64, 14, 14)
    assert by["pool2"].out_shape == (64, 7, 7) and by["fc1"].weight_shape == (256, 3136)
    assert by["fc2"].weight_shape == (10, 256) and by["fc2"].neuron is None
    assert set(ENCODING_TOPOLOGIES) <= set(TOPOLOGIES)
    wl = synthesize("small_vsa", samples=1)
    assert wl.time_steps == 8
    assert synthesize("small_cnn", samples=1, out_channels=2).time_steps == 1


def test_encoding_layer_weights_thresholds_and_inputs_on_the_integer_grid(small_vsa):
    w = small_vsa.weights["conv0"].astype(np.float64)
    levels = w * 2 ** 15 / 255
    np.testing.assert_array_equal(levels, np.round(levels))
    assert np.all(np.abs(levels).reshape(levels.shape[0], -1).max(axis=1) == 127)
    th = small_vsa.thresholds["conv0"].astype(np.float64) * 2 ** 15
    np.testing.assert_array_equal(th, np.round(th))
    assert th.min() >= 1 and th.max() <= 2 ** 15 - 1
    x = small_vsa.input.astype(np.float64) * 255
    np.testing.assert_allclose(x, np.round(x), atol=1e-4)
    assert small_vsa.provenance["arithmetic"]["membrane_bits"] == 16
    assert small_vsa.provenance["first_layer_weight_bits"] == 8
    assert sorted(small_vsa.weights) == ["conv0", "conv1", "conv2", "fc1", "fc2"]  # all stored


def test_encoding_layer_matches_integer_loop_reference(small_vsa):
    """conv0 recomputed with plain integer loops: x_q w_q sums and the saturating 16-bit IF."""
    layer = small_vsa.layer("conv0")
    xq = np.rint(small_vsa.input.astype(np.float64) * 255)
    wq = np.rint(small_vsa.weights["conv0"].astype(np.float64) * 2 ** 15 / 255)
    cur = np.rint(ref_conv(xq, wq, 1, 1, 1)).astype(np.int64)
    cur = np.broadcast_to(cur, (small_vsa.time_steps, *cur.shape))
    theta = np.rint(small_vsa.thresholds["conv0"].astype(np.float64) * 2 ** 15)
    np.testing.assert_array_equal(spikes_tn(small_vsa, "conv0"), ref_int_if(cur, theta))
    assert layer.neuron.reset == "subtract"
    for name in ("conv1", "fc1"):
        src = spikes_tn(small_vsa, small_vsa.layer(name).inputs[0])
        t_steps, n = src.shape[:2]
        x = src.reshape(t_steps * n, *src.shape[2:]).astype(np.int64)
        w = small_vsa.weights[name]
        cur = ref_conv(x, w, 1, 1, 1) if name == "conv1" else x @ w.T.astype(np.int64)
        cur = cur.reshape(t_steps, n, *cur.shape[1:])
        np.testing.assert_array_equal(spikes_tn(small_vsa, name), ref_int_if(cur, small_vsa.thresholds[name]))


def test_small_vsa_deterministic_and_rates(small_vsa):
    again = synthesize("small_vsa", **SMALL_VSA)
    for name, packed in small_vsa.packed_spikes.items():
        assert packed.tobytes() == again.packed_spikes[name].tobytes()
    for name, w in small_vsa.weights.items():
        assert w.tobytes() == again.weights[name].tobytes()
    for name, rate in small_vsa.provenance["achieved_rates"].items():
        assert 0.05 <= rate <= 0.2, (name, rate)


def test_membrane_bits_caps_thresholds():
    wl = synthesize("small_vsa", samples=1, time_steps=2, membrane_bits=12)
    for name, th in wl.thresholds.items():
        unit = 2.0 ** -15 if name == "conv0" else (0.25 if name == "avgpool" else 1.0)
        assert np.max(np.rint(th.astype(np.float64) / unit)) <= 2 ** 11 - 1
    assert wl.provenance["arithmetic"]["membrane_bits"] == 12
    with pytest.raises(UsageError) as info:
        synthesize("small_vsa", samples=1, membrane_bits=40)
    assert info.value.key == "membrane_bits"


def test_vsa_mnist_uses_handwritten_digits_or_says_it_does_not():
    wl = synthesize("vsa_mnist", samples=2, time_steps=1, image_size=8)
    assert wl.input.shape == (2, 1, 8, 8)
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        assert "fallback" in wl.dataset and wl.provenance["images"][0].startswith("grey")
    else:
        assert "digits" in wl.dataset and wl.provenance["images"][0].startswith("digit 0")
        assert "load_digits" in wl.provenance["image_sources"]
        assert wl.input[:, :, 0].max() == 0.0  # the frame around the digit box is background


def test_vsa_mnist_falls_back_to_grey_photos(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    wl = synthesize("vsa_mnist", samples=2, time_steps=1, image_size=8)
    assert "fallback" in wl.dataset and "scikit-learn not installed" in wl.dataset
    assert wl.provenance["images"][0].startswith("grey grace_hopper")
    assert wl.input.shape == (2, 1, 8, 8) and wl.input.std() > 0.01
