"""What a run of a mapped network hands back, in model terms: :class:`Observables`.

The chip reports circuits and hardware units (:class:`cysim.RunResult`); here every
observable is addressed by population label and neuron index, and converted to
biological units through :mod:`pynn_brainscales2.hardware` (time via the speed-up
factor, potentials via a :class:`~pynn_brainscales2.hardware.VoltageMap`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cysim import RunResult

from .. import hardware as hw
from ..errors import RecordingError
from ..mapping import MappingResult


@dataclass(frozen=True, eq=False)
class Observables:
    """Spikes and membrane traces of one batched run, per population and neuron.

    Attributes
    ----------
    result : cysim.RunResult
        The raw chip observables (hardware units, circuit ids).
    mapping : MappingResult
        The mapping the run used (circuit <-> neuron lookups).
    speedup : float
        Hardware speed-up factor used for hardware -> biological time.
    vmap : VoltageMap
        Map between CADC values [LSB] and biological potentials [mV].

    Examples
    --------
    >>> obs.spikes_ms("exc", trial=0)  # doctest: +SKIP
    (array([0, 3]), array([12.3, 14.1]))
    """

    result: RunResult
    mapping: MappingResult
    speedup: float = hw.DEFAULT_SPEEDUP
    vmap: hw.VoltageMap = hw.DEFAULT_VOLTAGE_MAP

    @property
    def trials(self) -> int:
        return self.result.trials

    def spikes_us(self, population: str, trial: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(neuron_index, time_us)`` of the spikes of ``population`` in ``trial``
        [hardware us], ordered by time."""
        circuits, times = self.result.spikes(trial)
        sel, neuron = self._neurons_of(population, circuits)
        return neuron[sel], times[sel]

    def spike_events_us(self, population: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(trial, neuron_index, time_us)`` of the spikes of ``population`` in all trials
        [hardware us], ordered by trial, then time (:meth:`spikes_us` of every trial at once)."""
        r = self.result  # (its spikes are ordered by trial, then time)
        sel, neuron = self._neurons_of(population, r.spike_circuits)
        return r.spike_trials[sel].astype(np.int64), neuron[sel], r.spike_times_us[sel]

    def spikes_by_trial_us(self, population: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`spikes_us` of every trial, as a list (one pass over the spikes)."""
        trial, neuron, t = self.spike_events_us(population)
        bounds = np.searchsorted(trial, np.arange(self.trials + 1))
        return [(neuron[a:b], t[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _neurons_of(self, population: str, circuits) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``circuits`` belong to ``population``, and their neuron indices."""
        pop_idx, neuron = self.mapping.neurons_of_circuits(circuits)
        return pop_idx == self.mapping.spec.population_index(population), neuron.astype(np.int64)

    def spikes_ms(self, population: str, trial: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(neuron_index, time_ms)`` of the spikes of ``population`` [biological ms]."""
        neuron, t_us = self.spikes_us(population, trial)
        return neuron, hw.hw_us_to_bio_ms(t_us, self.speedup)

    def spike_counts(self, population: str) -> np.ndarray:
        """Spike counts, shape (trials, size of ``population``)."""
        circuits = self.mapping.circuits(population)
        return self.result.spike_counts()[:, circuits]

    def cadc_times_ms(self) -> np.ndarray:
        """CADC sample times [biological ms]."""
        return hw.hw_us_to_bio_ms(self.result.cadc_times_us, self.speedup)

    def cadc_lsb(self, population: str, neurons=None) -> np.ndarray:
        """CADC samples [LSB], shape (trials, samples, neurons)."""
        if self.result.cadc is None:
            raise RecordingError(
                "The CADC was switched off in this run (config.cadc_enable = False); enable it to "
                "read membrane potentials of many neurons."
            )
        circuits = self.mapping.circuits(population)
        if neurons is not None:
            circuits = circuits[np.asarray(neurons, dtype=np.int64)]
        return self.result.cadc[:, :, circuits]

    def v_mv(self, population: str, neurons=None) -> np.ndarray:
        """Membrane potentials from the CADC [biological mV], shape (trials, samples, neurons)."""
        return self.vmap.to_mv(self.cadc_lsb(population, neurons))

    def madc_times_ms(self) -> np.ndarray:
        """MADC sample times [biological ms]."""
        return hw.hw_us_to_bio_ms(self.result.madc_times_us, self.speedup)

    def madc_v_mv(self, population: str, neuron: int) -> np.ndarray:
        """Membrane potential of one neuron from the MADC [biological mV], shape
        (trials, samples)."""
        circuit = int(self.mapping.circuits(population)[int(neuron)])
        if circuit not in self.result.madc_circuits:
            raise RecordingError(
                f"Neuron {neuron} of {population!r} (circuit {circuit}) was not connected to the MADC "
                f"in this run (MADC circuits: {self.result.madc_circuits}). Select it for the MADC "
                "before running; at most 2 neurons, one on an even and one on an odd circuit."
            )
        channel = self.result.madc_circuits.index(circuit)
        return self.vmap.madc_to_mv(self.result.madc[:, :, channel])


__all__ = ["Observables"]
