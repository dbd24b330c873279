"""Exporters: spike traces (format v1) from trained models.

``from_torch`` runs a PyTorch, snnTorch or SpikingJelly model and writes what it did as a trace.
PyTorch itself is imported only when an exporter is called (``pip install "snnsim[torch]"``).
"""

from __future__ import annotations

from .torch import from_torch

__all__ = ["from_torch"]
