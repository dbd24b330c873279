"""What the NIR importer (:mod:`.nir_import`) and exporter (:mod:`.nir_export`) share: the
``nir`` package (imported only when used), the discretisation step, and how a format v2 node
rides along in a NIR node's metadata.

NIR's neurons are continuous-time; snnsim's ``nir.*`` neuron models (:mod:`snnsim.neurons`)
discretise them by forward Euler with a step ``dt`` stored in each neuron node, the convention of
snnTorch's and SpikingJelly's NIR export, whose default step 1e-4 is ours too.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import UsageError

DEFAULT_DT = 1e-4
# metadata key of a NIR node holding the v2 node it was written from (JSON): read back when the
# NIR primitive alone does not say everything (snnsim.if's reset and tie, an OR max pool)
NODE_META = "snnsim_node"
# NIR primitives this package maps onto format v2, one to one
PRIMITIVES = ("Input", "Output", "Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten",
              "Scale", "Delay", "IF", "LIF", "CubaLIF", "LI", "I (Integrator)", "Threshold", "NIRGraph (nested)")


def require_nir() -> Any:
    """The ``nir`` module, or a UsageError saying how to install it."""
    try:
        import nir
    except ImportError:
        raise UsageError("NIR support needs the 'nir' package", expected="nir installed",
                         found="no module named 'nir'", suggestion='pip install "snnsim[nir]"') from None
    return nir


def check_dt(dt: Any, key: str = "dt") -> float:
    """A positive finite discretisation step, or a UsageError."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not np.isfinite(dt) or dt <= 0:
        raise UsageError("dt must be a positive number", key=key, expected="a number > 0 (seconds per step)",
                         found=repr(dt))
    return float(dt)


def text(v: Any) -> Any:
    """A string as NIR's HDF5 files give it back (bytes, 0-d string arrays), else ``v``."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SUO" and v.size == 1:
        return text(v.reshape(-1)[0])
    return v


def type_name(node: Any) -> str:
    return type(node).__name__


def node_meta(node: Any) -> dict[str, Any]:
    """The v2 node a NIR node was written from (its ``snnsim_node`` metadata), or {}."""
    md = getattr(node, "metadata", None)
    raw = text(md.get(NODE_META)) if isinstance(md, dict) else None
    if not isinstance(raw, str):
        return {}
    try:
        d = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return d if isinstance(d, dict) else {}


def jsonable(v: Any) -> Any:
    """A parameter value as JSON (arrays as nested lists, NumPy scalars as numbers)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v
