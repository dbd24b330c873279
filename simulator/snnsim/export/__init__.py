"""Exporters: format v2 spike traces from trained models, and NIR graphs.

The PyTorch exporter reads, by file: ``torch.py`` (:func:`from_torch`, the entry point),
``capture.py`` (the model's graph: torch.fx, or an nn.Sequential's call order), ``adapters.py``
(each framework's neurons as :mod:`snnsim.neurons` models, and the ``snnsim_neuron()`` hook),
``lowering.py`` (the captured ops as v2 nodes and arrays), ``recording.py`` (the forward pass,
recorded) and ``checks.py`` (the neurons' self-check). ``ann.py`` converts a trained ReLU
network to an SNN (:func:`from_ann`; ``ann_chain.py`` reads it, ``ann_calibrate.py`` balances
its thresholds, ``ann_snn.py`` is the converted network). ``nir.py`` reads and writes NIR
(``nir_import.py``, ``nir_trace.py``, ``nir_export.py``).
PyTorch itself is imported only when an exporter is called (``pip install "snnsim[torch]"``).
"""

from __future__ import annotations

from typing import Any

from .ann import ConversionResult, convert_ann, from_ann
from .torch import from_torch

__all__ = ["from_torch", "from_ann", "convert_ann", "ConversionResult", "SubtractIF", "ConvertedSNN"]


def __getattr__(name: str) -> Any:
    """The converted network's modules import torch: they load on first use."""
    if name in ("SubtractIF", "ConvertedSNN"):
        from . import ann_snn

        return getattr(ann_snn, name)
    raise AttributeError(name)
