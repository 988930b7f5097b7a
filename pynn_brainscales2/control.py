"""Simulation control of the BrainScaleS-2 backend: ``setup``, ``run``, ``reset``, ``end``
and the state queries.

The default chip is a realistic :class:`cysim.VirtualChip` (seed 0, mismatch and noise
on). The environment variable ``PYNN_BRAINSCALES2_CHIP`` selects another default without
code: ``ideal`` (exact model dynamics), ``realistic`` or ``realistic:<seed>``.
"""

from __future__ import annotations

import os

import numpy as np
from pyNN import common
from pyNN.recording import get_io

from cysim import VirtualChip
from cysim import constants as C

from . import hardware as hw
from . import simulator
from .errors import SetupError

ENV_CHIP = "PYNN_BRAINSCALES2_CHIP"

#: setup() keyword arguments besides the named ones: backend options, and options of other
#: PyNN backends that are accepted because they do not change the model on this one
BACKEND_OPTIONS = {
    "rng_seed": "seed of host-generated Poisson spikes and of the trial noise (int, default 0)",
    "calibration_cache": "True (default dir), a directory, or False (always calibrate)",
    "voltage_map": "hardware.VoltageMap: biological mV <-> CADC LSB",
    "max_delay": "accepted for portability [ms]",
    "executor": "dask.distributed.Client or concurrent.futures.Executor that runs the chip (default: this process)",
    "partition": "run a feed-forward network that does not fit one chip as sequential partitions (bool, default False)",
    "max_circuits": "neuron circuits one chip run may use (int 1..512, default 512; smaller partitions small networks)",
}
PORTABLE_OPTIONS = ("spike_precision", "t_flush", "threads", "verbosity", "rank", "num_processes")


def default_chip() -> VirtualChip:
    """The chip ``setup()`` uses without ``chip=``: from ``$PYNN_BRAINSCALES2_CHIP``."""
    value = os.environ.get(ENV_CHIP, "realistic").strip().lower()
    if value == "ideal":
        return VirtualChip.ideal()
    if value == "realistic":
        return VirtualChip(seed=0)
    if value.startswith("realistic:") and value.split(":", 1)[1].isdigit():
        return VirtualChip(seed=int(value.split(":", 1)[1]))
    raise SetupError(
        f"{ENV_CHIP}={value!r} is not understood; allowed: 'ideal', 'realistic' or 'realistic:<seed>'."
    )


def setup(timestep=0.1, min_delay="auto", chip=None, strict=False, speedup=hw.DEFAULT_SPEEDUP, **extra):
    """Start a new experiment on a (virtual) BrainScaleS-2 chip; any existing network is discarded.

    Parameters
    ----------
    timestep : float
        [ms] default sampling interval of recorded signals (the chip itself runs in
        continuous time; the emulator integrates with ``chip.dt_us``).
    min_delay : 'auto' or float
        [ms] 'auto' gives the chip's fixed routing latency (0.1 ms at speedup 1000).
    chip : cysim.VirtualChip, optional
        Default: :func:`default_chip` (realistic, or as ``$PYNN_BRAINSCALES2_CHIP`` says).
    strict : bool
        Refuse features the physical chip lacks (:class:`StrictModeError`) instead of
        emulating them with a warning.
    speedup : float
        Hardware speed-up over biological time.
    **extra
        ``rng_seed``, ``calibration_cache``, ``voltage_map``, ``max_delay``, ``executor`` (a
        ``dask.distributed.Client`` or ``concurrent.futures.Executor`` on which the chip runs:
        a worker rebuilds the chip from its seed and gets the calibrated configuration, so
        results are bit-identical to running in this process), ``partition`` (True: a
        feed-forward network that does not fit one chip runs as sequential single-chip
        partitions, spikes of one played into the next; see
        :mod:`pynn_brainscales2.partitioned` for what changes), ``max_circuits`` (circuits one
        run may use, default 512); options of
        other backends that do not change the model here (spike_precision, t_flush, threads,
        verbosity) are accepted. Anything else raises :class:`SetupError`.

    Examples
    --------
    >>> import pynn_brainscales2 as sim
    >>> sim.setup(chip=sim.VirtualChip.ideal())
    0
    >>> sim.end()
    """
    unknown = sorted(set(extra) - set(BACKEND_OPTIONS) - set(PORTABLE_OPTIONS))
    if unknown:
        raise SetupError(
            f"setup() got unknown argument(s) {', '.join(unknown)}; allowed: timestep, min_delay, chip, strict, "
            f"speedup, {', '.join(BACKEND_OPTIONS)} (and, ignored for portability, {', '.join(PORTABLE_OPTIONS)})."
        )
    ts = float(timestep)
    if not np.isfinite(ts) or ts <= 0:
        raise SetupError(f"timestep = {timestep} ms: give a finite value > 0 ms.")
    latency_ms = float(hw.hw_us_to_bio_ms(C.ROUTING_LATENCY_US, speedup))  # also checks speedup
    chip = default_chip() if chip is None else chip
    if not isinstance(chip, VirtualChip):
        raise SetupError(f"chip must be a cysim.VirtualChip, got {type(chip).__name__}.")
    vmap = extra.get("voltage_map", hw.DEFAULT_VOLTAGE_MAP)
    if not isinstance(vmap, hw.VoltageMap):
        raise SetupError(
            f"voltage_map must be a pynn_brainscales2.hardware.VoltageMap, got {type(vmap).__name__}."
        )
    from .execution.distributed import check_pool

    try:
        check_pool(extra.get("executor"))
    except Exception as exc:
        raise SetupError(str(exc)) from None
    state = simulator.state
    state.clear()
    state.portability = []
    state._warned = set()
    state.dt = ts
    state.chip = chip
    state.strict = bool(strict)
    state.speedup = float(speedup)
    state.vmap = vmap
    state.rng_seed = int(extra.get("rng_seed", 0))
    state.calibration_cache = extra.get("calibration_cache", True)
    state.executor = extra.get("executor")
    partition = extra.get("partition", False)
    if not isinstance(partition, bool):
        raise SetupError(f"partition = {partition!r}: give True or False.")
    state.partition = partition
    max_circuits = extra.get("max_circuits", hw.N_CIRCUITS)
    if (
        isinstance(max_circuits, bool)
        or not isinstance(max_circuits, (int, np.integer))
        or not (1 <= max_circuits <= hw.N_CIRCUITS)
    ):
        raise SetupError(f"max_circuits = {max_circuits!r}: give an integer 1..{hw.N_CIRCUITS}.")
    state.max_circuits = int(max_circuits)
    state.min_delay = latency_ms if min_delay == "auto" else float(min_delay)
    state.max_delay = float(extra.get("max_delay", max(10.0, state.min_delay)))
    state.initialized = True
    return 0


def end(compatible_output=True):
    """Write files requested with ``record(..., to_file=...)``; recorded data stay readable."""
    state = simulator.state
    for population, variables, filename in state.write_on_end:
        population.write_data(get_io(filename), variables)
    state.write_on_end = []
    state.initialized = False


run, run_until = common.build_run(simulator)
run_for = run
reset = common.build_reset(simulator)
initialize = common.initialize
get_current_time, get_time_step, get_min_delay, get_max_delay, num_processes, rank = (
    common.build_state_queries(simulator)
)


def portability_report() -> list[dict]:
    """Features the physical chip lacks that this experiment used in an emulated or
    approximated form, one dict per feature and case (``feature``, ``detail``).

    Examples
    --------
    >>> import pynn_brainscales2 as sim
    >>> sim.portability_report()
    []
    """
    return [dict(e) for e in simulator.state.portability]
