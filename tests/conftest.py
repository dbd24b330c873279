"""Shared fixtures: small traces and hwconfigs built in the test, so tests need no data files."""

from __future__ import annotations

import numpy as np
import pytest
from snnsim.workload.graph import Layer, Neuron
from snnsim.workload.trace import Workload, pack_spikes, save_workload


def make_tiny_workload(samples: int = 2, steps: int = 3, seed: int = 0, rate: float = 0.2) -> Workload:
    """conv0 (in-pixel, 2x2 stride 2, 8 ch) -> conv 3x3 -> flatten -> linear, random spikes."""
    rng = np.random.default_rng(seed)
    layers = [
        Layer("c0", "conv2d", ["input"], (8, 4, 4), kernel=(2, 2), stride=(2, 2), padding=(0, 0),
              weight_bits=4, neuron=Neuron()),
        Layer("c1", "conv2d", ["c0"], (4, 4, 4), kernel=(3, 3), stride=(1, 1), padding=(1, 1), neuron=Neuron()),
        Layer("f", "flatten", ["c1"], (64,)),
        Layer("fc", "linear", ["f"], (10,)),
    ]
    s1 = rng.random((samples, steps, 4, 4, 4)) < rate
    spikes = {
        "c0": pack_spikes(rng.random((samples, steps, 8, 4, 4)) < rate),
        "c1": pack_spikes(s1),
        "f": pack_spikes(s1.reshape(samples, steps, 64)),
    }
    x = rng.random((samples, 3, 8, 8)).astype(np.float32)
    return Workload(layers, x, spikes, steps, model="tiny", dataset="random")


TINY_P2M = {
    "name": "tiny-p2m",
    "sensor": {"kind": "p2m", "pixel_rows": 8, "pixel_cols": 8,
               "p2m": {"kernel": 2, "stride": 2, "out_channels": 8}},
    "link": {"lanes": 2},
    "core": {"vector_width": 4},
}
TINY_BASE = {
    "name": "tiny-base",
    "sensor": {"kind": "conventional", "pixel_rows": 8, "pixel_cols": 8},
    "link": {"lanes": 2},
    "core": {"vector_width": 4},
}


@pytest.fixture
def tiny_trace(tmp_path):
    path = tmp_path / "tiny.npz"
    save_workload(make_tiny_workload(), path)
    return path


@pytest.fixture
def tiny_hw_files(tmp_path):
    import yaml

    p = tmp_path / "p2m.yaml"
    b = tmp_path / "base.yaml"
    p.write_text(yaml.safe_dump(TINY_P2M))
    b.write_text(yaml.safe_dump(TINY_BASE))
    return p, b
