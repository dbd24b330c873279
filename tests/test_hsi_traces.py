"""The six committed ACE-SNN hyperspectral traces (workloads/hsi_{ip,pu,sa}_{3d,hybrid}.npz).

``workloads/train_ace_snn.py --preset all`` writes them from synthetic scenes with the published
sizes of Indian Pines, Pavia University and Salinas (:data:`snnsim.workload.hsi.PRESETS`). These
tests read the files only (no torch): the graph each family must have, the class count of each
preset, T = 5, 6-bit weights that really lie on the 6-bit sign-magnitude grid, the learned
neurons, the provenance naming the synthetic preset and its scale, and the accuracies documented
in workloads/README.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from snnsim.workload import hsi
from snnsim.workload.graphtrace import load_graph_trace

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ROOT / "workloads"

# tag -> (preset, scene height in pixels, scene width, display name in the provenance's note)
PRESETS = {"ip": ("indian_pines", 60, 60, "Indian Pines"), "pu": ("pavia_university", 80, 45, "Pavia University"),
           "sa": ("salinas", 92, 39, "Salinas")}
# (tag, family) -> (test accuracy, train accuracy) as train_ace_snn.py printed them (workloads/README.md)
ACCURACY = {("ip", "3d"): (0.9618, 1.0), ("ip", "hybrid"): (0.9585, 0.9971),
            ("pu", "3d"): (0.9754, 1.0), ("pu", "hybrid"): (0.9769, 1.0),
            ("sa", "3d"): (0.9673, 1.0), ("sa", "hybrid"): (0.9656, 1.0)}
# family -> [(node, op)] of the exported graph
GRAPH = {"3d": [("conv1", "conv3d"), ("lif1", "neuron"), ("conv2", "conv3d"), ("lif2", "neuron"),
                ("conv3", "conv3d"), ("lif3", "neuron"), ("flat", "flatten"), ("fc", "linear")],
         "hybrid": [("conv1", "conv3d"), ("lif1", "neuron"), ("conv2", "conv3d"), ("lif2", "neuron"),
                    ("conv3", "conv3d"), ("lif3", "neuron"), ("merge", "reshape"), ("conv4", "conv2d"),
                    ("lif4", "neuron"), ("flat", "flatten"), ("fc1", "linear"), ("lif5", "neuron"),
                    ("fc2", "linear")]}
# family -> {spiking node: output shape}; the same for every preset (15 PCA bands, 9x9 patches)
SPIKING = {"3d": {"lif1": (8, 9, 7, 7), "lif2": (16, 5, 5, 5), "lif3": (32, 3, 3, 3)},
           "hybrid": {"lif1": (8, 9, 7, 7), "lif2": (16, 5, 5, 5), "lif3": (32, 3, 3, 3), "lif4": (64, 1, 1),
                      "lif5": (128,)}}
CASES = [(tag, family) for tag in PRESETS for family in GRAPH]
IDS = [f"hsi_{tag}_{family}" for tag, family in CASES]


@pytest.fixture(scope="module")
def traces():
    """Each trace loaded once for the module."""
    return {}


def _trace(traces: dict, tag: str, family: str):
    if (tag, family) not in traces:
        path = WORKLOADS / f"hsi_{tag}_{family}.npz"
        assert path.is_file(), f"{path.name} missing: python workloads/train_ace_snn.py --preset all"
        traces[tag, family] = load_graph_trace(path)
    return traces[tag, family]


@pytest.mark.parametrize("tag,family", CASES, ids=IDS)
def test_graph_shapes_and_classes(traces, tag, family):
    gt = _trace(traces, tag, family)
    preset = PRESETS[tag][0]
    classes = hsi.PRESETS[preset][3]
    assert (WORKLOADS / f"hsi_{tag}_{family}.npz").stat().st_size < 500_000
    assert gt.model == f"ace_snn_{family}"
    assert gt.time_steps == 5 and gt.samples == 6
    assert gt.input_shape == (1, 15, 9, 9) and gt.input.dtype == np.float32
    assert 0.0 <= gt.input.min() and gt.input.max() <= 1.0 and gt.input.max() > 0.5
    assert [(n.name, n.op) for n in gt.nodes] == GRAPH[family]
    readout = gt.nodes[-1]
    assert readout.params["out_features"] == classes
    assert gt.arrays[f"weights/{readout.name}"].shape[0] == classes
    spiking = {name: shape for name, (shape, _) in gt.spike_rates().items()}
    assert spiking == SPIKING[family]


@pytest.mark.parametrize("tag,family", CASES, ids=IDS)
def test_weights_on_the_6_bit_sign_magnitude_grid(traces, tag, family):
    gt = _trace(traces, tag, family)
    weighted = [n for n in gt.nodes if n.op in ("conv2d", "conv3d", "linear")]
    assert weighted and all(n.params["weight_bits"] == 6 and n.params["bias"] is False for n in weighted)
    for n in weighted:
        w = gt.arrays[f"weights/{n.name}"].astype(np.float64).reshape(len(gt.arrays[f"weights/{n.name}"]), -1)
        step = np.abs(w).max(axis=1, keepdims=True) / 31  # alpha / (2^5 - 1) per output channel
        assert (step > 0).all()
        k = w / step
        assert np.abs(k - np.round(k)).max() < 1e-3, n.name
        assert np.abs(np.round(k)).max() == 31  # the largest magnitude of each channel is level 31
        assert len(np.unique(np.round(k))) > 16, n.name  # uses the grid, not a few levels


@pytest.mark.parametrize("tag,family", CASES, ids=IDS)
def test_learned_neurons_and_spikes(traces, tag, family):
    gt = _trace(traces, tag, family)
    learned = gt.provenance["trained"]["learned"]
    neurons = [n for n in gt.nodes if n.op == "neuron"]
    assert sorted(learned) == sorted(n.name for n in neurons)
    for n in neurons:
        assert n.params["model"] == "snntorch.leaky" and n.params["reset"] == "subtract"
        # the trace keeps the raw learned beta; snnTorch (and snnsim.neurons) clamp it to [0, 1] in the
        # update, and the provenance records the clamped, effective value (a few layers learn beta > 1)
        assert 0.5 < n.params["beta"] < 1.1 and n.params["threshold"] > 0.0
        assert 0.5 < learned[n.name]["beta"] <= 1.0
        assert learned[n.name]["beta"] == pytest.approx(min(n.params["beta"], 1.0), abs=1e-6)
        assert learned[n.name]["threshold"] == pytest.approx(n.params["threshold"], abs=1e-6)
    for name, (_, per_step) in gt.spike_rates().items():
        assert per_step.shape == (5,)
        assert 0.0 < per_step.mean() < 0.6, name
        assert per_step[0] < per_step[1:].mean(), name  # membranes start at 0: the first step is quieter


@pytest.mark.parametrize("tag,family", CASES, ids=IDS)
def test_provenance_names_the_synthetic_preset(traces, tag, family):
    gt = _trace(traces, tag, family)
    preset, height, width, name = PRESETS[tag]
    full_height, _, bands, classes = hsi.PRESETS[preset]
    trained = gt.provenance["trained"]
    scene = trained["data"]["scene"]
    assert scene["generator"] == "snnsim.workload.hsi.synthetic_scene"
    assert scene["preset"] == preset and scene["note"].startswith("synthetic")
    assert scene["sizes"] == [height, width, bands] and scene["classes"] == classes and scene["seed"] == 0
    assert scene["scale"] == pytest.approx(height / full_height)
    assert trained["data"]["pca"]["components"] == 15 and trained["data"]["patches"]["size"] == 9
    assert gt.dataset.startswith("synthetic HSI") and preset in gt.dataset
    assert f"scale {height}/{full_height}" in gt.dataset and "seed 0" in gt.dataset
    assert trained["note"].startswith("accuracy on a synthetic scene") and trained["note"].endswith(f"not on {name}")
    assert trained["family"] == family and trained["time_steps"] == 5 and trained["seed"] == 0
    assert trained["weights"].startswith("6-bit sign-magnitude")
    assert (trained["test_accuracy"], trained["train_accuracy"]) == ACCURACY[tag, family]
    assert len(trained["labels"]) == 6 and all(0 <= v < classes for v in trained["labels"])
    assert 0.0 <= trained["exported_accuracy"] <= 1.0


@pytest.mark.parametrize("tag,family", CASES, ids=IDS)
def test_committed_trace_verifies(tag, family):
    from snnsim.verify_graph import verify_path

    result = verify_path(WORKLOADS / f"hsi_{tag}_{family}.npz")
    assert result.ok and result.counts["match"] == len(SPIKING[family]) and result.counts["mismatch"] == 0
