"""Observables of one run: :class:`RunResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import constants as C


@dataclass(frozen=True)
class PlasticityRecord:
    """What a kernel recorded under one name with ``ctx.record(name, value)``.

    ``times_us`` [us]: the tick of each entry; ``trials``: the trial of a per-trial kernel,
    -1 for a batched call; ``values``: one array per entry, stacked into one ndarray
    (entries along the first axis) when all have the same shape, else a list.
    """

    times_us: np.ndarray
    trials: np.ndarray
    values: object


@dataclass(frozen=True)
class PlasticityLog:
    """What the plasticity processors did in one run (see :mod:`cysim.ppu`).

    Attributes
    ----------
    hemisphere, row, column : ndarray of int
        The tracked synapses (row-major order); every per-synapse array below and every
        kernel's ``ctx.weights``/``ctx.causal``/``ctx.acausal`` uses this order.
    weights : ndarray of uint8, shape (trials, synapses)
        Weights in effect at the end of the run.
    records : dict
        ``records[program][name]`` -> :class:`PlasticityRecord`.
    weight_history : dict
        ``weight_history[program]`` -> :class:`PlasticityRecord` whose values have shape
        (ticks, trials, synapses): the weights after each tick of a program made with
        ``record_weights=True``.
    tick_times_us : ndarray
        Hardware time of every kernel call (one per tick and program; per-trial kernels
        count once per tick).
    tick_programs : tuple of str
        The program of each tick.
    weights_clipped, capmem_clipped : ndarray of int
        Per tick, how many written weights (outside 0..63) and CapMem values (outside
        0..1022) were clipped.
    capmem : dict
        Final per-trial values (trials, 512) of the CapMem fields kernels accessed.
    """

    hemisphere: np.ndarray
    row: np.ndarray
    column: np.ndarray
    weights: np.ndarray
    records: dict
    weight_history: dict
    tick_times_us: np.ndarray
    tick_programs: tuple
    weights_clipped: np.ndarray
    capmem_clipped: np.ndarray
    capmem: dict = field(default_factory=dict)

    @property
    def n_clipped_weights(self) -> int:
        """Total number of out-of-range weight writes (clipped to 0..63)."""
        return int(self.weights_clipped.sum())

    @property
    def n_clipped_capmem(self) -> int:
        """Total number of out-of-range CapMem writes (clipped to 0..1022)."""
        return int(self.capmem_clipped.sum())

    def dense_weights(self, initial, trial: int = 0) -> np.ndarray:
        """All weights (2, 256, 256) after the run: ``initial`` (the configuration's
        ``synapse_weights``) with the tracked synapses' final values of ``trial``."""
        out = np.array(initial, dtype=np.uint8, copy=True)
        out[self.hemisphere, self.row, self.column] = self.weights[trial]
        return out


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
    plasticity : PlasticityLog or None
        What the plasticity kernels did (None for a run without a plasticity program);
        ``plasticity_records`` is a shortcut to its ``records``.
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
    plasticity: PlasticityLog | None = None

    @property
    def plasticity_records(self) -> dict:
        """``ctx.record`` entries of the plasticity kernels: ``[program][name]`` ->
        :class:`PlasticityRecord` (empty without a plasticity program)."""
        return {} if self.plasticity is None else self.plasticity.records

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
