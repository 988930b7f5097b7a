"""The virtual BrainScaleS-2 chip: :class:`VirtualChip`."""

from __future__ import annotations

import copy

import numpy as np

from . import constants as C
from . import engine, ppu
from .config import ChipConfig
from .errors import RunError
from .physics import HiddenPhysics
from .result import RunResult
from .stimulus import Stimulus

MAX_DURATION_US = 1.0e7


class VirtualChip:
    """A virtual BrainScaleS-2 chip: configuration in, observables out.

    Parameters
    ----------
    seed : int
        Seed of the chip's fixed-pattern deviations (its "serial number") and of its
        default noise streams.
    mismatch : bool
        Whether circuits, synapse drivers, synapses and readout channels deviate from the
        nominal design (like uncalibrated silicon).
    noise : bool
        Whether membranes and readout carry temporal noise.
    dt_us : float
        Integration step [us hardware time], 0.001..0.1.

    Examples
    --------
    >>> from cysim import VirtualChip, ChipConfig
    >>> chip = VirtualChip.ideal()
    >>> result = chip.run(ChipConfig(), duration_us=10.0)
    >>> result.cadc.shape
    (1, 6, 512)
    """

    def __init__(
        self,
        seed: int = 0,
        mismatch: bool = True,
        noise: bool = True,
        dt_us: float = C.DT_DEFAULT_US,
        engine: str = "compiled",
    ):
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise RunError(f"VirtualChip seed must be a non-negative integer, got {seed!r}.")
        if engine not in ("compiled", "reference"):
            raise RunError(f"VirtualChip engine {engine!r} is unknown; choose 'compiled' or 'reference'.")
        self.seed = int(seed)
        self.mismatch = bool(mismatch)
        self.noise = bool(noise)
        self.dt_us = self._check_dt(dt_us)
        self.engine = engine
        self._physics = HiddenPhysics(self.seed, self.mismatch, self.noise)
        self._compiled = (None, None)  # (config revision, compile_config result)
        self._plastic_tables = None  # (key, plasticity.plastic_tables result)
        self._entropy = np.random.default_rng(np.random.SeedSequence([self.seed, 0x6E6F697365]))

    @classmethod
    def ideal(cls, seed: int = 0, dt_us: float = C.DT_DEFAULT_US, engine: str = "compiled") -> VirtualChip:
        """A chip without mismatch and without noise: it follows the model equations exactly."""
        return cls(seed=seed, mismatch=False, noise=False, dt_us=dt_us, engine=engine)

    def twin(self) -> VirtualChip:
        """The same chip (seed, mismatch, noise, step, engine) with the trial-seed stream of a
        freshly made one: runs on the twin draw no seeds from this chip's stream. Calibration
        measures on a twin, so that a result does not depend on whether it came from the cache."""
        other = copy.copy(self)
        other._compiled = (None, None)
        other._plastic_tables = None
        other._entropy = np.random.default_rng(np.random.SeedSequence([self.seed, 0x6E6F697365]))
        return other

    @property
    def is_ideal(self) -> bool:
        return not (self.mismatch or self.noise)

    def __repr__(self):
        return (
            f"VirtualChip(seed={self.seed}, mismatch={self.mismatch}, noise={self.noise}, dt_us={self.dt_us})"
        )

    @staticmethod
    def _check_dt(dt_us) -> float:
        dt = float(dt_us)
        if not np.isfinite(dt) or not C.DT_MIN_US <= dt <= C.DT_MAX_US:
            raise RunError(
                f"dt_us = {dt_us} us is out of range: allowed {C.DT_MIN_US}..{C.DT_MAX_US} us "
                "(the step must resolve the routing latency of "
                f"{C.ROUTING_LATENCY_US} us)."
            )
        return dt

    def run(
        self,
        config: ChipConfig,
        stimulus: Stimulus | None = None,
        duration_us: float = 100.0,
        trials: int = 1,
        trial_seeds=None,
        dt_us: float | None = None,
        threads: int | None = None,
        plasticity=None,
    ) -> RunResult:
        """Run ``trials`` independent trials of one configuration.

        Parameters
        ----------
        config : ChipConfig
            What is written to the chip.
        stimulus : Stimulus, optional
            External events: one trial (sent in every trial) or one per trial.
        duration_us : float
            Run time of each trial [us hardware time].
        trials : int
            Number of independent trials (different stimulus and noise each).
        trial_seeds : array_like of int, optional
            One seed per trial for everything random in it (membrane and readout noise,
            Poisson background generators together with their seed registers). Default:
            fresh seeds from the chip's own stream when noise is on (repeated runs
            differ, as on silicon); ``0..trials-1`` when noise is off.
        dt_us : float, optional
            Integration step [us]; default the chip's ``dt_us``.
        threads : int, optional
            Threads over trials (default: all cores). Results do not depend on it.
        plasticity : PPUProgram or sequence of PPUProgram, optional
            Kernels the plasticity processors run on timers during the run (see
            :mod:`cysim.ppu`); their records come back in ``result.plasticity``. A kernel
            that raises stops the run with :class:`~cysim.KernelError`, which carries
            the result up to that tick.
        """
        if not isinstance(config, ChipConfig):
            raise RunError(f"config must be a cysim.ChipConfig, got {type(config).__name__}.")
        duration = float(duration_us)
        if not np.isfinite(duration) or not 0 < duration <= MAX_DURATION_US:
            raise RunError(
                f"duration_us = {duration_us} us is out of range: allowed 0 < duration <= "
                f"{MAX_DURATION_US:g} us."
            )
        if not isinstance(trials, (int, np.integer)) or trials < 1:
            raise RunError(f"trials = {trials!r}: give a positive integer.")
        trials = int(trials)
        dt = self.dt_us if dt_us is None else self._check_dt(dt_us)
        if stimulus is None:
            stimulus = Stimulus()
        if not isinstance(stimulus, Stimulus):
            raise RunError(f"stimulus must be a cysim.Stimulus, got {type(stimulus).__name__}.")
        if stimulus.n_trials not in (1, trials):
            raise RunError(
                f"stimulus describes {stimulus.n_trials} trials but trials = {trials}; give one "
                "trial (sent in every trial) or one per trial."
            )
        seeds = self._trial_seeds(trial_seeds, trials)
        if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
            raise RunError(f"threads = {threads!r}: give a positive integer.")
        programs = ppu.programs_of(plasticity)
        if programs or config.array("stp_enable").any():
            if self.engine != "compiled":
                raise RunError(
                    "the reference engine has no plasticity (programs or synapse-driver short-term "
                    "plasticity); run these with engine='compiled'."
                )
            from . import plasticity as plastic_run

            inp, outputs, log = plastic_run.run(
                self, config, stimulus, duration, trials, seeds, dt, threads, programs
            )
            return self._result(inp, config, duration, dt, trials, seeds, *outputs, plasticity=log)

        if self._compiled[0] != config.revision:
            self._compiled = (config.revision, engine.compile_config(config, self._physics))
        inp = engine.prepare(
            config, self._physics, stimulus, duration, trials, seeds, dt, compiled=self._compiled[1]
        )
        if self.engine == "compiled":
            sp_trial, sp_local, sp_time, cadc_v, madc_v = engine.simulate(inp, threads)
        else:
            from . import reference

            sp_trial, sp_local, sp_time, cadc_v, madc_v = reference.simulate(inp, config, self._physics)
        return self._result(
            inp, config, duration, dt, trials, seeds, sp_trial, sp_local, sp_time, cadc_v, madc_v
        )

    def _trial_seeds(self, trial_seeds, trials) -> np.ndarray:
        if trial_seeds is None:
            if self.noise:
                return self._entropy.integers(0, 2**63, size=trials, dtype=np.uint64)
            return np.arange(trials, dtype=np.uint64)
        seeds = np.asarray(trial_seeds).reshape(-1)
        if seeds.size != trials:
            raise RunError(f"trial_seeds has {seeds.size} entries for {trials} trials; give one per trial.")
        if not np.issubdtype(seeds.dtype, np.integer) or np.any(seeds < 0):
            raise RunError("trial_seeds must be non-negative integers.")
        return seeds.astype(np.uint64)

    def _result_from(self, plastic, outputs, time_us) -> RunResult:
        """The result of a plastic run stopped at ``time_us`` (see :class:`KernelError`)."""
        inp = plastic.inp
        return self._result(
            inp,
            plastic.config,
            float(time_us),
            float(inp["dt"]),
            int(inp["n_trials"]),
            np.asarray(inp["noise_seeds"]),
            *outputs,
            plasticity=plastic.log(),
        )

    @staticmethod
    def _result(
        inp, config, duration, dt, trials, seeds, sp_trial, sp_local, sp_time, cadc_v, madc_v, plasticity=None
    ):
        order = inp["order"]
        circuits = order[sp_local].astype(np.int16)
        stamps = np.floor(sp_time / C.FPGA_TICK_US + 1e-9).astype(np.int64)
        if sp_trial.size and sp_trial.max() < 2**20 and stamps.max() < 2**33 and stamps.min() >= 0:
            # trial, time stamp and circuit (10 bits) in one key: one sort instead of three
            key = (sp_trial.astype(np.int64) << 43) | (stamps << 10) | circuits.astype(np.int64)
            srt = np.argsort(key, kind="stable")
        else:
            srt = np.lexsort((circuits, stamps, sp_trial))
        if cadc_v.dtype == np.uint8:  # the compiled engine quantises itself
            cadc, madc = cadc_v, madc_v
        else:  # reference engine: values in LSB, local circuit order
            cadc = np.empty(cadc_v.shape, dtype=np.uint8)
            cadc[:, :, order] = np.clip(np.floor(cadc_v + 0.5), 0, C.CADC_MAX).astype(np.uint8)
            madc = np.clip(np.floor(madc_v + 0.5), 0, C.MADC_MAX).astype(np.uint16)
        if not config.cadc_enable:
            cadc = None
        return RunResult(
            spike_trials=sp_trial[srt],
            spike_circuits=circuits[srt],
            spike_timestamps=stamps[srt],
            cadc=cadc,
            cadc_times_us=inp["cadc_times"][: cadc_v.shape[1]],
            madc=madc,
            madc_times_us=inp["madc_times"][: madc_v.shape[1]],
            madc_circuits=tuple(config.madc_circuits),
            duration_us=duration,
            dt_us=dt,
            trials=trials,
            trial_seeds=seeds,
            plasticity=plasticity,
        )
