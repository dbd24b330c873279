"""snnsim: cycle-accurate, event-driven simulator for in-sensor spiking-neural-network chips.

The public API is ``load_hardware``, ``load_workload``, ``simulate``, ``sweep`` and ``Report``. Imports are
lazy so that ``snnsim --help`` starts without loading Numba.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_hardware", "load_workload", "simulate", "sweep", "Report", "__version__"]


def __getattr__(name: str):
    if name == "load_hardware":
        from .hwconfig import load_hardware

        return load_hardware
    if name == "load_workload":
        from .workload.trace import load_workload

        return load_workload
    if name == "simulate":
        from .simulation import simulate

        return simulate
    if name == "sweep":
        from .sweeps import sweep

        return sweep
    if name == "Report":
        from .report.report import Report

        return Report
    raise AttributeError(f"module 'snnsim' has no attribute {name!r}")
