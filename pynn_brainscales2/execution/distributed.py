"""Chip runs spread over workers: a ``dask.distributed.Client`` or any
``concurrent.futures.Executor``.

The trials of one batch are split into contiguous chunks, one task per chunk. Every task
carries what a worker needs to reproduce the in-process run exactly: a description of the
chip (seed, mismatch, noise, time step; the worker builds its own :class:`VirtualChip` of
that seed once and keeps it), the complete :class:`~cysim.ChipConfig` (calibrated CapMem
values included: calibrations are shipped, never recomputed on a worker), the chunk's
stimulus and the chunk's trial seeds. The trial seeds of the whole batch are drawn in the
calling process, from the same stream an in-process run draws them from, so results are
bit-identical to in-process execution and do not depend on which worker ran which trial.

A worker that dies mid-batch: Dask reschedules its tasks on the other workers (up to
``retries`` more times per task); if a task still cannot complete, or a
``concurrent.futures`` pool breaks, :class:`~pynn_brainscales2.errors.ExecutionError` is
raised and no partial batch is returned.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

import numpy as np

from cysim import ChipConfig, RunResult, Stimulus, VirtualChip

from ..errors import ExecutionError

#: how many times Dask may reschedule one task whose worker died
RETRIES = 2


@dataclass(frozen=True)
class ChipSpec:
    """What identifies a virtual chip: enough to build an identical one on a worker."""

    seed: int
    mismatch: bool
    noise: bool
    dt_us: float
    engine: str = "compiled"

    @classmethod
    def of(cls, chip: VirtualChip) -> ChipSpec:
        return cls(chip.seed, chip.mismatch, chip.noise, chip.dt_us, chip.engine)

    def build(self) -> VirtualChip:
        return VirtualChip(
            seed=self.seed, mismatch=self.mismatch, noise=self.noise, dt_us=self.dt_us, engine=self.engine
        )


_WORKER_CHIPS: dict = {}


def _worker_chip(spec: ChipSpec) -> VirtualChip:
    """The worker's own chip of ``spec`` (built once per worker process)."""
    chip = _WORKER_CHIPS.get(spec)
    if chip is None:
        chip = _WORKER_CHIPS[spec] = spec.build()
    return chip


def run_chunk(spec: ChipSpec, config: ChipConfig, stimulus: Stimulus, duration_us, seeds, dt_us, threads):
    """One task: ``len(seeds)`` trials on the worker's chip (module-level, so it pickles)."""
    return _worker_chip(spec).run(
        config,
        stimulus,
        duration_us=duration_us,
        trials=len(seeds),
        trial_seeds=seeds,
        dt_us=dt_us,
        threads=threads,
    )


def is_dask_client(pool) -> bool:
    return type(pool).__module__.startswith("distributed") and hasattr(pool, "scheduler_info")


def n_workers(pool) -> int:
    """Number of workers of ``pool`` (Dask client or concurrent.futures executor)."""
    if is_dask_client(pool):
        return max(1, len(pool.scheduler_info().get("workers", {})))
    return max(1, int(getattr(pool, "_max_workers", 1) or 1))


def check_pool(pool) -> None:
    """``pool`` must be a Dask client or a ``concurrent.futures.Executor``."""
    if pool is None or is_dask_client(pool) or isinstance(pool, concurrent.futures.Executor):
        return
    raise ExecutionError(
        f"executor = {pool!r}: give a dask.distributed.Client or a concurrent.futures.Executor "
        "(e.g. ProcessPoolExecutor), or None to run in this process."
    )


def _chunk_stimulus(stimulus: Stimulus, lo: int, hi: int) -> Stimulus:
    if stimulus.n_trials == 1:
        return stimulus
    return Stimulus.from_trials([(s.times_us, s.labels) for s in (stimulus.trial(k) for k in range(lo, hi))])


def merge_results(parts: list[RunResult], seeds: np.ndarray) -> RunResult:
    """One :class:`RunResult` of consecutive trial chunks (trial indices renumbered)."""
    offsets = np.cumsum([0] + [p.trials for p in parts])
    first = parts[0]
    return RunResult(
        spike_trials=np.concatenate([p.spike_trials + o for p, o in zip(parts, offsets, strict=False)]),
        spike_circuits=np.concatenate([p.spike_circuits for p in parts]),
        spike_timestamps=np.concatenate([p.spike_timestamps for p in parts]),
        cadc=None if first.cadc is None else np.concatenate([p.cadc for p in parts], axis=0),
        cadc_times_us=first.cadc_times_us,
        madc=np.concatenate([p.madc for p in parts], axis=0),
        madc_times_us=first.madc_times_us,
        madc_circuits=first.madc_circuits,
        duration_us=first.duration_us,
        dt_us=first.dt_us,
        trials=int(offsets[-1]),
        trial_seeds=np.asarray(seeds),
    )


def run_distributed(
    pool,
    chip: VirtualChip,
    config: ChipConfig,
    stimulus: Stimulus,
    duration_us: float,
    trials: int,
    trial_seeds=None,
    chunks: int | None = None,
) -> RunResult:
    """``chip.run(config, stimulus, duration_us, trials, trial_seeds)`` with the trials
    spread over the workers of ``pool``; bit-identical to running it in this process.

    Parameters
    ----------
    pool : dask.distributed.Client or concurrent.futures.Executor
    chip : the chip whose seed, mismatch, noise and time step the workers reproduce; its
        trial-seed stream is advanced exactly as by an in-process run.
    chunks : number of tasks (default: the number of workers, at most ``trials``).

    Raises
    ------
    ExecutionError
        if a task cannot complete (its worker died more than :data:`RETRIES` times under
        Dask, or the ``concurrent.futures`` pool broke); nothing partial is returned.
    """
    check_pool(pool)
    seeds = chip._trial_seeds(trial_seeds, trials)  # same draws as an in-process run
    n = max(1, min(trials, chunks or n_workers(pool)))
    bounds = np.linspace(0, trials, n + 1).astype(int)
    spec = ChipSpec.of(chip)
    dask = is_dask_client(pool)
    futures = []
    try:
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            args = (spec, config, _chunk_stimulus(stimulus, lo, hi), duration_us, seeds[lo:hi], chip.dt_us, 1)
            if dask:
                futures.append(pool.submit(run_chunk, *args, pure=False, retries=RETRIES))
            else:
                futures.append(pool.submit(run_chunk, *args))  # a pool already broken raises here
        parts = [f.result() for f in futures]
    except concurrent.futures.process.BrokenProcessPool as exc:
        _cancel(futures)
        raise ExecutionError(
            f"a worker process died during a batch of {trials} trials ({n} tasks); no partial batch is "
            "returned. The process pool is broken: create a new executor and run again, or use a Dask "
            "client, which reschedules the tasks of a dead worker."
        ) from exc
    except Exception as exc:  # noqa: BLE001  (re-raised with context, never swallowed)
        _cancel(futures)
        if type(exc).__name__ == "KilledWorker":
            raise ExecutionError(
                f"a task of a batch of {trials} trials was lost with its worker {RETRIES + 1} times "
                f"({exc}); no partial batch is returned. Check the workers' memory limits and logs."
            ) from exc
        raise
    return merge_results(parts, seeds)


def _cancel(futures) -> None:
    for f in futures:
        try:
            f.cancel()
        except Exception:  # noqa: BLE001, S110  (best effort: the error that matters is raised)
            pass
