"""Helpers for training SNNs whose traces a chip replays as trained: quantisation-aware weights on
a chip's sign-magnitude grid, and direct-encoded runs of a single-step snnTorch model.

Used by ``workloads/train_digits.py`` and ``workloads/train_ace_snn.py``; PyTorch is imported
only when a helper is called.
"""

from __future__ import annotations

from typing import Any


def sign_magnitude(bits: int) -> Any:
    """A weight parametrization that fake-quantises to ``bits``-bit sign-magnitude levels per
    output channel (``alpha * k / L``, k = -L..L, L = 2^(bits-1) - 1, alpha the channel's largest
    magnitude), with a straight-through gradient: register it with
    ``torch.nn.utils.parametrize.register_parametrization(module, "weight", sign_magnitude(b))``
    and remove it with ``leave_parametrized=True`` to keep the quantised weights."""
    import torch

    levels = 2 ** (bits - 1) - 1

    class SignMagnitude(torch.nn.Module):
        def forward(self, w):
            alpha = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1).clamp_min(1e-8)
            alpha = alpha.reshape((-1,) + (1,) * (w.dim() - 1))
            q = torch.round(w / alpha * levels) * alpha / levels
            return w + (q - w).detach()

    return SignMagnitude()


def reset_state(model: Any) -> None:
    """Zero the hidden state of every snnTorch neuron of ``model`` (``init_hidden`` neurons)."""
    for m in model.modules():
        if hasattr(m, "reset_mem"):
            m.reset_mem()


def run_direct(model: Any, x: Any, steps: int) -> Any:
    """Direct encoding: the same input at every step from a zero state; the read-out is the sum of
    the model's outputs over the steps."""
    reset_state(model)
    out = 0
    for _ in range(steps):
        out = out + model(x)
    return out


def train_direct(model: Any, x: Any, y: Any, steps: int, *, epochs: int, lr: float, batch: int = 64, seed: int = 0,
                 log: Any = None) -> None:
    """Train ``model`` (a single-step SNN) on direct-encoded inputs ``x`` with labels ``y``:
    Adam at ``lr`` on a cosine schedule over ``epochs``, cross-entropy of the read-out summed over
    ``steps`` steps, mini-batches of ``batch`` in a seeded order (deterministic on the CPU);
    ``log(epoch, mean loss)`` after each epoch."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(perm), batch):
            b = perm[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(run_direct(model, x[b], steps), y[b])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        sched.step()
        if log is not None:
            log(epoch, total / len(y))
