"""NIR (Neuromorphic Intermediate Representation) <-> trace format v2, one primitive to one node.

The work is done by four modules, named for what they model:

- :mod:`.nir_import`: a NIR graph as format v2 nodes (the mapping table is there);
- :mod:`.nir_trace`: a v2 trace from a NIR graph, its activity from NIRData or computed by running
  the graph (:func:`workload_from_nir`, :func:`nir_to_trace`);
- :mod:`.nir_export`: a v2 trace (or a v1 one, migrated) as a NIR graph and NIRData
  (:func:`workload_to_nir`, :func:`write_nir`, :func:`workload_to_nir_data`, :func:`write_nir_data`);
- :mod:`.nir_common`: the ``nir`` package (:func:`require_nir`: a UsageError naming
  ``pip install "snnsim[nir]"`` without it), the step ``dt`` and the metadata both sides share.

This module keeps the public names callers import from ``snnsim.export.nir``.
"""

from __future__ import annotations

from .nir_common import DEFAULT_DT, NODE_META, PRIMITIVES, require_nir
from .nir_export import workload_to_nir, workload_to_nir_data, write_nir, write_nir_data
from .nir_import import Imported, translate
from .nir_trace import load_inputs, nir_to_trace, workload_from_nir

SUPPORTED = PRIMITIVES

__all__ = ["DEFAULT_DT", "NODE_META", "PRIMITIVES", "SUPPORTED", "Imported", "load_inputs", "nir_to_trace",
           "require_nir", "translate", "workload_from_nir", "workload_to_nir", "workload_to_nir_data",
           "write_nir", "write_nir_data"]
