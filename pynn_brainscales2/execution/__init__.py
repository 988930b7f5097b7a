"""Execution: a mapped and calibrated network in, batched chip runs, observables out.

Both front ends (the PyNN backend and the torch bridge) run networks only through
:class:`Executor`; re-running with new weights or inputs never re-places or re-routes.

Runs can be spread over workers (a ``dask.distributed.Client`` or any
``concurrent.futures.Executor``): :mod:`.distributed` for the trials of a batch,
:func:`parameter_sweep` for whole PyNN experiments.
"""

from .distributed import run_distributed
from .executor import Executor
from .observables import Observables
from .sweep import parameter_sweep

__all__ = ["Executor", "Observables", "parameter_sweep", "run_distributed"]
