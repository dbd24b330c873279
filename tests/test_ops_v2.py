"""NeuroBench's synaptic-operation counts of format v2 traces: the same numbers as NeuroBench's
own SynapticOperations on the PyTorch model the trace was exported from."""

from __future__ import annotations

import pytest
from snnsim.report.ops import neurobench_ops
from snnsim.workload.trace import load_workload


def _neurobench():
    """torch, snntorch and NeuroBench's SynapticOperations and TorchModel (the test is skipped
    without them)."""
    torch = pytest.importorskip("torch")
    snn = pytest.importorskip("snntorch")
    try:
        from neurobench.metrics.workload import SynapticOperations
        from neurobench.models import TorchModel
    except Exception as e:  # an installed NeuroBench that cannot import here
        pytest.skip(f"neurobench does not import: {e}")
    return torch, snn, SynapticOperations, TorchModel


def _neurobench_counts(net, x, steps: int) -> dict:
    """NeuroBench's synaptic operations of ``net`` stepped through ``steps`` steps of ``x``."""
    torch, _snn, SynapticOperations, TorchModel = _neurobench()

    class Steps(torch.nn.Module):
        """NeuroBench calls the model once on (batch, T, ...): step the net through time."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, xt):
            for m in self.net.modules():
                if hasattr(m, "reset_mem"):
                    m.reset_mem()
            return torch.stack([self.net(xt[:, t]) for t in range(xt.shape[1])], 1)

    model = TorchModel(Steps(net))
    model.register_hooks()
    xt = x[:, None].repeat(1, steps, *([1] * (x.dim() - 1)))
    with torch.no_grad():
        preds = model(xt)
    return SynapticOperations()(model, preds, (xt, torch.zeros(x.shape[0])))


def test_v2_counts_equal_neurobench_on_the_exported_model(tmp_path):
    torch, snn, _ops, _model = _neurobench()
    from snnsim.export import from_torch

    torch.manual_seed(1)
    steps = 3

    class Net(torch.nn.Module):
        """conv(bias) -> batch norm -> max pool of currents -> Leaky; a SEW add of two spike maps
        into a conv (a non-binary input: MACs); global average pool -> linear (MACs); zero weights."""

        def __init__(self):
            super().__init__()
            self.c0 = torch.nn.Conv2d(2, 4, 3, padding=1, bias=True)
            self.bn = torch.nn.BatchNorm2d(4)
            self.pool = torch.nn.MaxPool2d(2)
            self.n0 = snn.Leaky(beta=0.9, threshold=0.3, init_hidden=True)
            self.c1 = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.n1 = snn.Leaky(beta=0.8, threshold=0.2, init_hidden=True)
            self.c2 = torch.nn.Conv2d(4, 6, 1, bias=True)
            self.n2 = snn.Leaky(beta=0.8, threshold=0.2, init_hidden=True)
            self.gap = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = torch.nn.Linear(6, 5, bias=True)
            with torch.no_grad():
                self.c1.weight[self.c1.weight.abs() < 0.1] = 0
                self.fc.weight[:, :2] = 0
                self.bn.running_mean.uniform_(-0.2, 0.2)
                self.bn.running_var.uniform_(0.5, 1.5)

        def forward(self, x):
            s0 = self.n0(self.pool(self.bn(self.c0(x))))
            s1 = self.n1(self.c1(s0))
            s2 = self.n2(self.c2(s0 + s1))
            return self.fc(torch.flatten(self.gap(s2), 1))

    net = Net().eval()
    x = torch.rand(4, 2, 8, 8)
    x[:, :, :2] = 0  # zero inputs: no effective MACs there
    gt = from_torch(net, x.numpy(), steps, path=tmp_path / "t.npz")
    assert gt is not None

    nb = _neurobench_counts(net, x, steps)
    ours = neurobench_ops(load_workload(tmp_path / "t.npz"))["neurobench"]
    assert nb["Effective_MACs"] > 0 and nb["Effective_ACs"] > 0
    assert ours == {k: float(v) for k, v in nb.items()}


def test_v2_conv3d_counts_equal_neurobench(tmp_path):
    """A hybrid 3D/2D SNN on a hyperspectral cube (ACE-SNN's shape): a direct-encoded conv3d on
    the analog cube (MACs), a spiking conv3d (ACs), the depth merged into channels, a conv2d and a
    linear read-out: our counts equal NeuroBench's."""
    torch, snn, _ops, _model = _neurobench()
    from snnsim.export import from_torch

    torch.manual_seed(2)
    steps = 3

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv3d(1, 3, (3, 3, 3), bias=False)
            self.n1 = snn.Leaky(beta=0.9, threshold=0.2, init_hidden=True)
            self.c2 = torch.nn.Conv3d(3, 4, (2, 1, 1), bias=False)
            self.n2 = snn.Leaky(beta=0.9, threshold=0.1, init_hidden=True)
            self.c3 = torch.nn.Conv2d(4 * 3, 5, 3, bias=False)
            self.n3 = snn.Leaky(beta=0.9, threshold=0.1, init_hidden=True)
            self.fc = torch.nn.Linear(5, 2, bias=False)

        def forward(self, x):
            s1 = self.n1(self.c1(x))  # (3, 4, 3, 3)
            s2 = self.n2(self.c2(s1))  # (4, 3, 3, 3)
            s3 = self.n3(self.c3(torch.flatten(s2, 1, 2)))  # (5, 1, 1)
            return self.fc(torch.flatten(s3, 1))

    net = Net().eval()
    x = torch.rand(3, 1, 6, 5, 5)
    x[:, :, :, :1] = 0  # zero inputs: no effective MACs there
    gt = from_torch(net, x.numpy(), steps, path=tmp_path / "t.npz")
    assert gt is not None and gt.nodes[0].op == "conv3d"

    nb = _neurobench_counts(net, x, steps)
    ours = neurobench_ops(load_workload(tmp_path / "t.npz"))["neurobench"]
    assert nb["Effective_MACs"] > 0 and nb["Effective_ACs"] > 0
    # the same whole counts over the batch; the per-sample means may differ in the last bit
    # (NeuroBench adds its batch's per-sample figures in another order)
    assert {k: round(v * 3) for k, v in ours.items()} == {k: round(float(v) * 3) for k, v in nb.items()}
    assert ours == pytest.approx({k: float(v) for k, v in nb.items()}, rel=1e-14)
