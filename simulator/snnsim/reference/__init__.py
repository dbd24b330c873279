"""Slow, plainly written reference models that the fast engine and component models must match.

``pipeline`` advances time tick by tick; ``components`` re-derives every count by looping over
spikes, kernel taps, channels, neurons and bytes. Both are meant for small inputs in tests.
"""

from __future__ import annotations

from .pipeline import run_pipeline_reference
from .system import simulate_reference

__all__ = ["run_pipeline_reference", "simulate_reference"]
