"""Run a mapped, calibrated network on a chip: :class:`Executor`.

This is the one place where a network becomes :meth:`cysim.VirtualChip.run` calls. The
executor is built once per mapping; new weights (:meth:`Executor.set_weights`), new
CapMem values (:meth:`Executor.set_config`) and new inputs (the ``stimuli`` of
:meth:`Executor.run`) never re-place or re-route.

Stimuli are host spike events of the mapping's ``"external"`` populations, in hardware
time [us]::

    {"input": (source_indices, times_us)}            # the same events in every trial
    [{"input": (idx_0, t_0)}, {"input": (idx_1, t_1)}]  # one dict per trial
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from cysim import ChipConfig, Stimulus, VirtualChip

from .. import hardware as hw
from ..errors import ExecutionError, ParameterRangeError, RoutingError
from ..mapping import EXTERNAL, MappingResult
from .distributed import check_pool, run_distributed
from .observables import Observables


def _check_population(mapping: MappingResult, population: str) -> None:
    if mapping.spec.population(population).kind != EXTERNAL:
        raise RoutingError(
            f"Stimulus for {population!r}: only 'external' populations take host events; this one is "
            f"{mapping.spec.population(population).kind!r}."
        )


def _check_times(population: str, t: np.ndarray) -> None:
    if t.size and (not np.all(np.isfinite(t)) or t.min() < 0):
        raise ParameterRangeError(
            f"Stimulus for {population!r}: spike times must be finite and >= 0 us; got "
            f"{t[~np.isfinite(t) | (t < 0)][0]:g} us."
        )


def _events(mapping: MappingResult, stimuli: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Host events ``(times_us, labels)`` of one trial's stimuli."""
    times, labels = [np.zeros(0)], [np.zeros(0, dtype=np.int64)]
    for population, (sources, t_us) in stimuli.items():
        _check_population(mapping, population)
        t = np.asarray(t_us, dtype=float).reshape(-1)
        _check_times(population, t)
        et, el = mapping.stimulus_events(population, sources, t)
        times.append(np.asarray(et, dtype=float))
        labels.append(np.asarray(el, dtype=np.int64))
    return np.concatenate(times), np.concatenate(labels)


def _trial_events(mapping: MappingResult, stimuli: Sequence) -> Stimulus:
    """The stimulus of one dict per trial, each population's spikes of all trials mapped
    at once. The events are those of :func:`_events` trial by trial, in the same order."""
    sources, times, sizes, ranks = {}, {}, {}, {}  # per population, per trial that has it
    in_order = True  # every trial lists its populations in the order they first appear
    for k, trial in enumerate(stimuli):
        last = -1
        for rank, (population, (src, t_us)) in enumerate(trial.items()):
            if population not in sources:
                sources[population], times[population], sizes[population], ranks[population] = [], [], [], []
            t = np.asarray(t_us, dtype=float).reshape(-1)
            sources[population].append(np.asarray(src).reshape(-1))
            times[population].append(t)
            sizes[population].append((k, t.size))
            ranks[population].append(rank)
            first_seen = list(sources).index(population)
            in_order &= first_seen > last
            last = first_seen
    all_t, all_l = [np.zeros(0)], [np.zeros(0, dtype=np.int64)]
    all_k, all_r = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for population in sources:
        _check_population(mapping, population)
        t = np.concatenate(times[population])
        _check_times(population, t)
        trial_of, n = np.asarray(sizes[population], dtype=np.int64).T
        src = np.concatenate(sources[population])
        if src.size != t.size:  # as one trial would report it
            bad = next(
                i
                for i, (a, b) in enumerate(zip(sources[population], times[population], strict=True))
                if a.size != b.size
            )
            mapping.stimulus_events(population, sources[population][bad], times[population][bad])
        # the spikes' positions pass through the mapping in place of their times
        pos, labels = mapping.stimulus_events(population, src, np.arange(t.size))
        all_t.append(t[pos])
        all_l.append(np.asarray(labels, dtype=np.int64))
        all_k.append(np.repeat(trial_of, n)[pos])
        if not in_order:
            all_r.append(np.repeat(np.asarray(ranks[population], dtype=np.int64), n)[pos])
    t, labels, k = (np.concatenate(x) for x in (all_t, all_l, all_k))
    if in_order:  # the stimulus's stable sort by trial and time keeps equal times in this order
        return Stimulus(t, labels, k, len(stimuli))
    # by trial, then time; at equal times each trial's populations in its order, each
    # population's events in theirs
    order = np.lexsort((np.arange(t.size), np.concatenate(all_r), t, k))
    return Stimulus(t[order], labels[order], k[order], len(stimuli))


class Executor:
    """Runs one mapped network on one chip, batched over trials.

    Parameters
    ----------
    mapping : MappingResult
        Placement and routing (:func:`pynn_brainscales2.mapping.map_network`).
    config : cysim.ChipConfig
        The complete configuration: routing written (``mapping.write_routing``), CapMem
        values calibrated, neuron switches and readout set. The executor keeps a copy.
    chip : cysim.VirtualChip
        The chip to run on.
    speedup : float
        Speed-up factor for hardware -> biological time in the observables.
    vmap : VoltageMap
        CADC [LSB] <-> biological potential [mV] map for the observables.
    pool : dask.distributed.Client or concurrent.futures.Executor, optional
        Spread the trials of every run over these workers (:mod:`.distributed`); each
        worker reproduces the chip from its seed and gets the complete configuration, so
        results are bit-identical to running in this process. Default: this process.

    Examples
    --------
    >>> from cysim import VirtualChip
    >>> from pynn_brainscales2.mapping import NetworkSpec, PopulationSpec, ProjectionSpec, map_network
    >>> spec = NetworkSpec((PopulationSpec("in", 1, "external"), PopulationSpec("out", 1)),
    ...                    (ProjectionSpec("w", "in", "out", [0], [0], [63]),))
    >>> m = map_network(spec)
    >>> cfg = m.config
    >>> cfg.enable_spiking[m.circuits("out")] = True
    >>> ex = Executor(m, cfg, VirtualChip.ideal())
    >>> obs = ex.run([{"in": ([0], [5.0])}, {"in": ([], [])}], duration_us=20.0, trials=2)
    >>> obs.cadc_lsb("out").shape[0]
    2
    """

    def __init__(
        self,
        mapping: MappingResult,
        config: ChipConfig,
        chip: VirtualChip,
        speedup: float = hw.DEFAULT_SPEEDUP,
        vmap: hw.VoltageMap = hw.DEFAULT_VOLTAGE_MAP,
        pool=None,
    ):
        check_pool(pool)
        if not isinstance(mapping, MappingResult):
            raise RoutingError(f"mapping must be a MappingResult, got {type(mapping).__name__}.")
        self.mapping = mapping
        self.config = config.copy()
        self.chip = chip
        self.speedup = float(speedup)
        self.vmap = vmap
        self.pool = pool
        self.runs = 0
        self.run_seconds = 0.0  # wall time spent in chip runs (with the distribution), all calls

    # --- changes without re-mapping --------------------------------------------------
    def set_weights(self, projection: str, steps) -> None:
        """New weights [integer steps, one per connection] of ``projection``; no re-routing."""
        self.mapping.write_weights(self.config, projection, steps)

    def weights(self, projection: str) -> np.ndarray:
        """Weights [steps] of ``projection`` as the configuration holds them."""
        return self.mapping.read_weights(self.config, projection)

    def set_config(self, config: ChipConfig) -> None:
        """Replace the configuration (e.g. new CapMem values); the routing is rewritten
        from the mapping so it cannot drift."""
        self.config = self.mapping.write_routing(config.copy())

    # --- running -----------------------------------------------------------------------
    def stimulus(self, stimuli, trials: int) -> Stimulus:
        """The :class:`cysim.Stimulus` of ``stimuli`` (see the module docstring)."""
        if stimuli is None:
            return Stimulus()
        if isinstance(stimuli, Mapping):
            return Stimulus(*_events(self.mapping, stimuli))
        if isinstance(stimuli, Sequence):
            if len(stimuli) != trials:
                raise ParameterRangeError(
                    f"stimuli holds {len(stimuli)} trials but trials = {trials}; give one dict per "
                    "trial, or one dict for all trials."
                )
            return _trial_events(self.mapping, stimuli)
        raise ParameterRangeError(
            f"stimuli must be a dict {{population: (indices, times_us)}} or a list of them; got "
            f"{type(stimuli).__name__}."
        )

    def run(
        self, stimuli=None, duration_us: float = 100.0, trials: int = 1, trial_seeds=None, plasticity=None
    ) -> Observables:
        """Run ``trials`` trials of the network.

        Parameters
        ----------
        stimuli : dict or list of dict, optional
            Host events of external populations, times in [us hardware time].
        duration_us : float
            Length of each trial [us hardware time].
        trials : int
            Independent trials in one batched chip call.
        trial_seeds : array_like of int, optional
            One seed per trial (noise and on-chip Poisson generators); default: the chip's.
        plasticity : cysim.PPUProgram or sequence, optional
            Programs of the plasticity processors (``result.plasticity`` holds their log).
            A kernel that raises stops the run with :class:`cysim.KernelError`.

        Returns
        -------
        Observables
        """
        stim = self.stimulus(stimuli, trials)
        t0 = time.perf_counter()
        if self.pool is not None:
            if plasticity:
                raise ExecutionError(
                    "plasticity programs run in the process that holds their kernels; run this "
                    "experiment without an executor (executor=None)."
                )
            result = run_distributed(
                self.pool, self.chip, self.config, stim, duration_us, trials, trial_seeds
            )
        else:
            result = self.chip.run(
                self.config,
                stim,
                duration_us=duration_us,
                trials=trials,
                trial_seeds=trial_seeds,
                plasticity=plasticity,
            )
        self.runs += 1
        self.run_seconds += time.perf_counter() - t0
        return Observables(result, self.mapping, self.speedup, self.vmap)


__all__ = ["Executor"]
