"""The spiking network an ANN converts to (:func:`snnsim.export.ann.from_ann`), as plain PyTorch.

Two modules, both single-step (one call is one time step; ``reset()`` clears the state before a
new sample):

- :class:`SubtractIF`: the integrate-and-fire neuron with reset by subtraction of Rueckauer et
  al. (2017), in exactly SpikingJelly's ``IFNode(v_reset=None)`` float32 arithmetic (``h = v + x``;
  ``spike = H(h - v_threshold)`` with ``H(0) = 1``; ``v = h - spike * v_threshold``; membranes start
  at 0; SpikingJelly ``_ops/if_/reference.py`` and ``_ops/reset.py``). It declares these dynamics to
  the exporter through :meth:`SubtractIF.snnsim_neuron` (``spikingjelly.if`` of
  :mod:`snnsim.neurons`), so SpikingJelly itself is not needed.
- :class:`ConvertedSNN`: an ``nn.Sequential`` of the rescaled convolutions / linear layers (their
  biases added every step as constant currents), ``SubtractIF`` neurons where the ANN had ReLUs,
  the pooling and flatten modules, and the readout (the last weighted layer, no neuron).
  :meth:`ConvertedSNN.run` steps it ``T`` times on one (direct or rate-coded) input.

PyTorch is imported by this module; :mod:`snnsim.export.ann` imports it only when a conversion
runs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SubtractIF(nn.Module):
    """Integrate-and-fire neuron with reset by subtraction (single step, float32 state).

    ``h = v + x``; ``spike = 1`` where ``h - v_threshold >= 0``; ``v = h - spike * v_threshold``.
    The state ``v`` has the shape of the input and starts at 0 (``reset()``)."""

    def __init__(self, v_threshold: float = 1.0) -> None:
        super().__init__()
        self.v_threshold = float(v_threshold)
        self.v_reset = None  # SpikingJelly's spelling of "reset by subtraction"
        self.reset_mechanism = "subtract"
        self.v: torch.Tensor | None = None

    def snnsim_neuron(self) -> tuple[str, dict[str, Any]]:
        """The model of :mod:`snnsim.neurons` these dynamics are, with its parameters."""
        return "spikingjelly.if", {"v_threshold": self.v_threshold, "v_reset": None}

    def reset(self) -> None:
        """Forget the membrane: the next call starts from ``v = 0``."""
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(x) if self.v is None else self.v
        h = v + x
        spike = ((h - self.v_threshold) >= 0).to(x.dtype)
        self.v = h - spike * self.v_threshold
        return spike

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}, reset=subtract"


class ConvertedSNN(nn.Sequential):
    """The converted network: one call of ``forward`` is one time step (direct input: the same
    analog frame every step; rate input: the first module is a :class:`SubtractIF` encoder on the
    analog frame). Its output is the readout's current at that step; the class scores are its
    sum over the steps (:meth:`run`)."""

    def reset(self) -> None:
        """Reset every neuron's membrane (call before each new batch of samples)."""
        for m in self.modules():
            if isinstance(m, SubtractIF):
                m.reset()

    @torch.no_grad()
    def run(self, x: torch.Tensor, time_steps: int) -> torch.Tensor:
        """The readout currents (T, samples, ...) of ``time_steps`` steps on input ``x`` (samples,
        ...), from reset membranes; the state is reset again afterwards."""
        self.reset()
        try:
            return torch.stack([self(x) for _ in range(time_steps)])
        finally:
            self.reset()
