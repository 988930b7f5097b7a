"""Execution: a mapped and calibrated network in, batched chip runs, observables out.

Both front ends (the PyNN backend and the torch bridge) run networks only through
:class:`Executor`; re-running with new weights or inputs never re-places or re-routes.
"""

from .executor import Executor
from .observables import Observables

__all__ = ["Executor", "Observables"]
