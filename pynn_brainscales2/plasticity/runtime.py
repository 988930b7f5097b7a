"""Rules -> :class:`cysim.PPUProgram` for one run, and the run's plasticity data back onto
the rules and projections.

Per run, every rule becomes one program (per-trial kernel, name = rule name). Its kernel
wrapper reads and resets the chip's 8-bit spike counters at every tick of every rule and
adds them to each rule's own counts (so every rule sees the spikes since *its* previous
tick), builds a :class:`~pynn_brainscales2.plasticity.rules.RuleContext`, calls the
user's kernel and writes the cached weights and CapMem values back.

A built-in :class:`~pynn_brainscales2.plasticity.STDPRule` becomes a compiled program
(:class:`cysim.ppu.STDPProgram`) that the engine runs without calling back into Python,
unless the run counts spikes for some rule (the wrapper above then has to read the
counters at the STDP rule's ticks too) or the rule cannot be compiled
(:meth:`STDPRule.compiled_program`).
"""

from __future__ import annotations

import warnings

import numpy as np

from cysim import PPUProgram

from .. import hardware as hw
from ..errors import ChipFeatureError, PlasticityKernelError
from .rules import PlasticityWarning, RuleContext, RuleRecord

_SENSOR_CELLS = ("corr_tau_causal", "corr_tau_acausal", "corr_amp_causal", "corr_amp_acausal")


class ProjectionBinding:
    """Where the connections of one projection sit: one synapse per connection."""

    def __init__(self, projection, coords, scale):
        self.projection = projection
        self.coords = coords  # (hemisphere, row, column), one per connection
        self.scale = float(scale)
        self._index = None

    def index(self, cctx) -> np.ndarray:
        if self._index is None:
            idx = np.asarray(cctx.synapse_index(*self.coords), dtype=np.int64)
            if np.any(idx < 0):
                raise PlasticityKernelError(
                    f"internal: projection {self.projection.label!r} has untracked synapses"
                )
            self._index = idx
        return self._index


class PopulationBinding:
    def __init__(self, population, circuits):
        self.population = population
        self.circuits = np.asarray(circuits, dtype=np.int64)


class RuleBinding:
    """One rule in one run."""

    def __init__(self, rule, projections, populations):
        self.rule = rule
        self.projections = projections
        self.populations = populations
        self.counts = np.zeros(hw.N_CIRCUITS, dtype=np.int64)
        self.last_time = 0.0

    def projection_binding(self, projection):
        for b in self.projections:
            if b.projection is projection:
                return b
        raise PlasticityKernelError(
            f"Plasticity rule {self.rule.name!r} has no projection {getattr(projection, 'label', projection)!r}; "
            f"its projections: {', '.join(repr(b.projection.label) for b in self.projections) or 'none'} "
            "(a projection joins a rule through PlasticSynapse(plasticity_rule=rule))."
        )

    def population_binding(self, population):
        for b in self.populations:
            if b.population is population:
                return b
        raise PlasticityKernelError(
            f"Plasticity rule {self.rule.name!r} has no population {getattr(population, 'label', population)!r}; "
            f"its populations: {', '.join(repr(b.population.label) for b in self.populations) or 'none'} "
            "(pass populations=[...] when making the rule)."
        )


class PlasticityRun:
    """The programs of one run and their bookkeeping."""

    def __init__(self, bindings, speedup, vmap, t_stop: float):
        self.bindings = bindings
        self.speedup = float(speedup)
        self.vmap = vmap
        self.t_stop = float(t_stop)  # [ms] no tick after the end of the PyNN run
        self.count_spikes = any(b.populations for b in bindings)
        self.programs = [self._program(b) for b in bindings]

    def _program(self, binding):
        rule = binding.rule
        timing = self._timing(rule)
        compiled = getattr(rule, "compiled_program", None)
        if compiled is not None and not self.count_spikes:
            native = compiled(binding.projections, timing, rule.record_weights and bool(binding.projections))
            if native is not None:
                return native
        mask = np.zeros((hw.N_HEMISPHERES, hw.N_ROWS, hw.N_COLUMNS), dtype=bool)
        for b in binding.projections:
            mask[b.coords] = True

        def kernel(cctx, binding=binding):
            self._collect_counts(cctx)
            ctx = RuleContext(self, binding, cctx)
            try:
                rule.kernel(ctx)
            finally:
                binding.last_time = ctx.time
            ctx._flush()
            binding.counts[:] = 0

        return PPUProgram(
            kernel,
            **timing,
            name=rule.name,
            synapses=mask if mask.any() else None,
            correlation=rule.sensors is not None,
            per_trial=True,
            record_weights=rule.record_weights and bool(binding.projections),
        )

    def _timing(self, rule) -> dict:
        """``start_us``, ``period_us``, ``num_periods`` of the rule's program in this run."""
        timing = rule.timer.hardware(self.speedup)
        timer = rule.timer
        if timer.start > self.t_stop + 1e-9:
            timing["num_periods"] = 1
            timing["start_us"] = float(hw.bio_ms_to_hw_us(self.t_stop, self.speedup)) + 1e9  # never reached
            timing["period_us"] = None
        elif timer.period is not None:
            last = int(np.floor((self.t_stop - timer.start) / timer.period + 1e-9)) + 1
            timing["num_periods"] = last if timer.num_periods is None else min(timer.num_periods, last)
            if timing["num_periods"] == 1:
                timing["period_us"] = None
        return timing

    def _collect_counts(self, cctx):
        if not self.count_spikes:
            return
        counts = cctx.spike_counts.astype(np.int64)
        for b in self.bindings:
            if b.populations:
                b.counts += counts
        cctx.reset_spike_counts()

    # --- after the run ------------------------------------------------------------------------
    def collect(self, log) -> None:
        """Put records, weight histories and learned weights of ``log`` onto the rules."""
        if log is None:
            return
        for b in self.bindings:
            rule = b.rule
            rule._records = {
                name: RuleRecord(hw.hw_us_to_bio_ms(rec.times_us, self.speedup), rec.values)
                for name, rec in log.records.get(rule.name, {}).items()
            }
            rule._history = {}
            index = _log_index(log)
            for pb in b.projections:
                idx = index[pb.coords]
                hist = log.weight_history.get(rule.name)
                if hist is not None:
                    steps = np.asarray(hist.values)[:, 0, :][:, idx].astype(np.int64)
                    rule._history[id(pb.projection)] = (
                        hw.hw_us_to_bio_ms(hist.times_us, self.speedup),
                        steps,
                        pb.scale * _sign(pb.projection),
                    )
                final = log.weights[0, idx].astype(float) / pb.scale
                pb.projection._learned = final * _sign(pb.projection)
            mine = np.array([p == rule.name for p in log.tick_programs], dtype=bool)
            clipped = int(log.weights_clipped[mine].sum()) if mine.size else 0
            if clipped:
                warnings.warn(
                    f"Plasticity rule {rule.name!r} wrote {clipped} weight(s) outside 0..63 (6-bit) over "
                    f"{int((log.weights_clipped[mine] > 0).sum())} tick(s); they were clipped to 0..63.",
                    PlasticityWarning,
                    stacklevel=5,
                )
            clipped_c = int(log.capmem_clipped[mine].sum()) if mine.size else 0
            if clipped_c:
                warnings.warn(
                    f"Plasticity rule {rule.name!r} wrote {clipped_c} parameter value(s) outside the CapMem range "
                    "0..1022; they were clipped.",
                    PlasticityWarning,
                    stacklevel=5,
                )


def _sign(projection) -> float:
    conductance = bool(getattr(projection.post, "conductance_based", False))
    return -1.0 if (projection.receptor_type == "inhibitory" and not conductance) else 1.0


def _log_index(log) -> np.ndarray:
    index = np.full((hw.N_HEMISPHERES, hw.N_ROWS, hw.N_COLUMNS), -1, dtype=np.int64)
    index[log.hemisphere, log.row, log.column] = np.arange(log.hemisphere.size)
    return index


def sensor_capmem(bindings, speedup) -> dict:
    """Per-hemisphere sensor CapMem values the rules ask for: ``{cell: {hemisphere: value}}``;
    refuses two rules that need different settings in one hemisphere."""
    chosen: dict = {}
    owner: dict = {}
    for b in bindings:
        if b.rule.sensors is None:
            continue
        values = b.rule.sensors.capmem(speedup)
        hemispheres = sorted({int(h) for pb in b.projections for h in np.unique(pb.coords[0])})
        for h in hemispheres:
            if h in chosen and chosen[h] != values:
                raise ChipFeatureError(
                    f"Plasticity rules {owner[h]!r} and {b.rule.name!r} need different correlation-sensor settings "
                    f"in hemisphere {h} ({chosen[h]} vs {values}); the chip has one setting per hemisphere. Give "
                    "them the same tau/amplitude, or place their target populations on different hemispheres."
                )
            chosen[h], owner[h] = values, b.rule.name
    return chosen


def apply_sensor_capmem(config, chosen) -> None:
    for h, values in chosen.items():
        for cell in _SENSOR_CELLS:
            arr = np.array(config.array(cell), copy=True)
            arr[h] = values[cell]
            setattr(config, cell, arr)


__all__ = ["PlasticityRun", "ProjectionBinding", "PopulationBinding", "RuleBinding", "sensor_capmem"]
