"""Global state of the BrainScaleS-2 PyNN backend: the network built so far, the chip,
the current time and the portability report.

PyNN scripts describe a network object by object; nothing touches the chip until
``run()``. Then :mod:`pynn_brainscales2.translation` maps, calibrates and runs the whole
network through :class:`pynn_brainscales2.execution.Executor`.

Time: the chip cannot stop and continue a membrane state, so every ``run()`` replays the
experiment from t = 0 to the new end time with the same trial seed (identical results
for the part already run). Changing parameters, weights or structure between two
``run()`` calls without ``reset()`` would need a configuration write during a run, which
the chip lacks: it raises :class:`~pynn_brainscales2.errors.ChipFeatureError`.
"""

from __future__ import annotations

import warnings

from pyNN import common

from .errors import SetupError, StrictModeError

name = "BrainScaleS-2 (virtual chip)"


class ID(int, common.IDMixin):
    """A neuron of a population: an int with PyNN's ID interface."""

    def __init__(self, n):
        int.__init__(n)
        common.IDMixin.__init__(self)


class PortabilityWarning(UserWarning):
    """A PyNN feature the physical chip lacks ran in an emulated or approximated form."""


class State(common.control.BaseState):
    """Everything the backend knows between ``setup()`` and ``end()``."""

    def __init__(self):
        super().__init__()
        self.mpi_rank = 0
        self.num_processes = 1
        self.initialized = False
        self.portability: list[dict] = []
        self._warned: set = set()
        self.chip = None
        self.clear()
        self.dt = 0.1

    # --- network registry ----------------------------------------------------------------
    def clear(self):
        """Forget the network (called by ``setup()``)."""
        self.recorders = set()
        self.populations = []
        self.projections = []
        self.current_sources = []
        self.rules = []  # plasticity rules that act on populations (projections bring their own)
        self.id_counter = 0
        self.segment_counter = -1
        self.revision = 0
        self.last_run = None  # translation.RunRecord of the current segment
        self.compiled = None  # translation.CompiledNetwork reused across runs
        self.write_on_end = []
        self.reset()

    def touch(self):
        """Note a change of the network (parameters, weights, structure)."""
        self.revision += 1

    def register_population(self, population):
        self.populations.append(population)
        self.touch()

    def register_projection(self, projection):
        self.projections.append(projection)
        self.touch()

    def register_rule(self, rule):
        if not any(r is rule for r in self.rules):
            self.rules.append(rule)
        self.touch()

    def register_current_source(self, source):
        if source not in self.current_sources:
            self.current_sources.append(source)
        self.touch()

    def check_setup(self, what: str = "this"):
        if not self.initialized:
            raise SetupError(f"Call sim.setup() before {what} (no chip is set up).")

    # --- time ------------------------------------------------------------------------------
    def run(self, simtime):
        self.run_until(self.t + simtime)

    def run_until(self, tstop):
        from . import experiment

        self.check_setup("run()")
        experiment.run_network(self, float(tstop))
        self.t = float(tstop)
        self.running = True

    def reset(self):
        """Back to t = 0; a new segment starts."""
        self.running = False
        self.t = 0.0
        self.t_start = 0.0
        self.segment_counter += 1
        self.last_run = None

    # --- portability -------------------------------------------------------------------------
    def report(self, feature: str, detail: str):
        """Record use of a feature the physical chip lacks: a one-time warning and an entry in
        :func:`portability_report`, or :class:`StrictModeError` with ``setup(strict=True)``."""
        if self.strict:
            raise StrictModeError(
                f"{feature}: {detail} The physical chip lacks this; setup(strict=True) refuses it. "
                "Change the model, or run with strict=False to accept the emulation."
            )
        key = (feature, detail)
        if key in self._warned:
            return
        self._warned.add(key)
        self.portability.append({"feature": feature, "detail": detail})
        warnings.warn(f"{feature}: {detail}", PortabilityWarning, stacklevel=4)

    def report_note(self, feature: str, detail: str):
        """Like :meth:`report`, for approximations that strict mode accepts (a limitation of
        precision or sampling, not an emulated feature)."""
        key = (feature, detail)
        if key in self._warned:
            return
        self._warned.add(key)
        self.portability.append({"feature": feature, "detail": detail, "strict": "allowed"})
        warnings.warn(f"{feature}: {detail}", PortabilityWarning, stacklevel=4)

    def note_once(self, key, message: str):
        """A one-time warning (e.g. weight quantisation per projection)."""
        if key in self._warned:
            return
        self._warned.add(key)
        warnings.warn(message, QuantisationWarning, stacklevel=4)

    strict = False
    partition = False
    max_circuits = 512
    speedup = 1000.0
    rng_seed = 0
    calibration_cache = True
    vmap = None


class QuantisationWarning(UserWarning):
    """Weights were rounded to the chip's 6-bit steps with a noticeable error."""


state = State()
