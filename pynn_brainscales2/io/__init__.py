"""Format bridges of pynn_brainscales2.

- :mod:`pynn_brainscales2.io.nir`: the Neuromorphic Intermediate Representation (NIR):
  :func:`~.nir.export_nir` writes an ``snn`` model or the current PyNN network as a
  ``nir.NIRGraph``, :func:`~.nir.import_nir` builds an ``snn`` model (mock or chip mode) or
  PyNN populations and projections from one.

The submodule is imported on first use, so ``import pynn_brainscales2`` stays free of the
``nir`` package and of torch.
"""

from __future__ import annotations

import importlib

__all__ = [
    "nir",
    "export_nir",
    "import_nir",
    "normalise_norse_graph",
    "NIRModel",
    "PyNNNetwork",
    "NIRUnits",
    "SUPPORTED_NODES",
]

_FROM_NIR = set(__all__) - {"nir"}


def __getattr__(name):
    if name == "nir" or name in _FROM_NIR:
        module = importlib.import_module(".nir", __name__)
        return module if name == "nir" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
