"""Observables of one run: :class:`RunResult`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import constants as C


@dataclass(frozen=True)
class RunResult:
    """What the chip hands back after a run, in hardware units.

    Attributes
    ----------
    spike_trials, spike_circuits : ndarray of int
        Trial and circuit (0..511) of every spike, ordered by trial then time.
    spike_timestamps : ndarray of int64
        FPGA timestamps [8 ns ticks of hardware time].
    cadc : ndarray of uint8, shape (trials, samples, 512), or None
        CADC samples of all circuits (None when the CADC was off).
    cadc_times_us : ndarray
        Sample times [us].
    madc : ndarray of uint16, shape (trials, samples, channels)
        MADC samples of ``madc_circuits`` (10 bit).
    madc_times_us : ndarray
        Sample times [us].
    """

    spike_trials: np.ndarray
    spike_circuits: np.ndarray
    spike_timestamps: np.ndarray
    cadc: np.ndarray | None
    cadc_times_us: np.ndarray
    madc: np.ndarray
    madc_times_us: np.ndarray
    madc_circuits: tuple
    duration_us: float
    dt_us: float
    trials: int
    trial_seeds: np.ndarray

    @property
    def spike_times_us(self) -> np.ndarray:
        """Spike times [us hardware time] at the FPGA's 8 ns resolution."""
        return self.spike_timestamps * C.FPGA_TICK_US

    def spikes(self, trial: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(circuits, times_us)`` of the spikes of one trial."""
        sel = self.spike_trials == trial
        return self.spike_circuits[sel], self.spike_times_us[sel]

    def spike_counts(self) -> np.ndarray:
        """Spike counts, shape (trials, 512)."""
        counts = np.zeros((self.trials, C.N_CIRCUITS), dtype=np.int64)
        np.add.at(counts, (self.spike_trials, self.spike_circuits), 1)
        return counts

    def first_spike_times_us(self) -> np.ndarray:
        """First spike time per trial and circuit [us], ``inf`` where none; shape (trials, 512)."""
        first = np.full((self.trials, C.N_CIRCUITS), np.inf)
        np.minimum.at(first, (self.spike_trials, self.spike_circuits), self.spike_times_us)
        return first
