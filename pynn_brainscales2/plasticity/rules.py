"""User side of the plasticity processors: :class:`Timer`, :class:`PlasticityRule` and
what a kernel sees, :class:`RuleContext`.

A rule is a Python callable ``kernel(ctx)`` that the virtual plasticity processor (PPU)
runs at the ticks of a :class:`Timer` during ``sim.run()``. It sees, in model terms:

- ``ctx.time`` [ms], ``ctx.tick``, ``ctx.interval`` [ms since the rule's previous tick];
- per projection it was given (through :class:`~pynn_brainscales2.PlasticSynapse`),
  ``ctx.projection(prj)``: writable 6-bit ``weights`` (one per connection, PyNN's
  connection order), the 8-bit ``causal``/``acausal`` correlation sensors and
  ``reset_correlation()``;
- per population it was given, ``ctx.population(pop)``: ``spike_counts`` since the rule's
  previous tick, the last CADC membrane sample ``v`` [mV] / ``v_lsb`` and writable
  CapMem ``parameters`` (``v_threshold``, ``i_bias_const``, ...);
- ``ctx.record(name, value)``.

Everything recorded comes back as arrays: :meth:`PlasticityRule.get_data` and
:meth:`PlasticityRule.weight_history` (see docs/plasticity.md).

>>> import pynn_brainscales2 as sim
>>> def kernel(ctx):
...     ctx.record("t", ctx.time)
>>> rule = sim.PlasticityRule(kernel, sim.Timer(start=0.0, period=10.0, num_periods=3))
>>> rule.timer.period
10.0
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from .. import hardware as hw
from ..errors import PlasticityKernelError


class PlasticityWarning(UserWarning):
    """A plasticity kernel wrote values the chip cannot hold (clipped), or a counter saturated."""


class Timer:
    """When a rule's kernel runs: ticks at ``start + k * period`` [ms, biological time],
    ``k = 0 .. num_periods - 1`` (``num_periods=None``: until the end of the run).

    Parameters
    ----------
    start : float
        [ms] first tick, >= 0.
    period : float, optional
        [ms] between ticks, > 0 (needed unless ``num_periods == 1``).
    num_periods : int or None
        Number of ticks (>= 1), or None for every period until the end of the run.

    Examples
    --------
    >>> Timer(start=5.0, period=10.0, num_periods=None).num_periods is None
    True
    """

    def __init__(self, start: float = 0.0, period: float | None = None, num_periods: int | None = 1):
        start = float(start)
        if not np.isfinite(start) or start < 0:
            raise PlasticityKernelError(f"Timer start = {start} ms: give a finite time >= 0 ms.")
        if num_periods is not None and (
            isinstance(num_periods, bool) or not isinstance(num_periods, (int, np.integer)) or num_periods < 1
        ):
            raise PlasticityKernelError(
                f"Timer num_periods = {num_periods!r}: give an integer >= 1, or None for a tick every period "
                "until the end of the run."
            )
        if period is None and num_periods != 1:
            raise PlasticityKernelError(f"Timer with num_periods = {num_periods} needs a period > 0 ms.")
        if period is not None:
            period = float(period)
            if not np.isfinite(period) or period <= 0:
                raise PlasticityKernelError(f"Timer period = {period} ms: give a finite time > 0 ms.")
        self.start = start
        self.period = period
        self.num_periods = None if num_periods is None else int(num_periods)

    def hardware(self, speedup: float) -> dict:
        """``start_us``, ``period_us``, ``num_periods`` of :class:`cysim.PPUProgram`."""
        return {
            "start_us": float(hw.bio_ms_to_hw_us(self.start, speedup)),
            "period_us": None if self.period is None else float(hw.bio_ms_to_hw_us(self.period, speedup)),
            "num_periods": self.num_periods,
        }

    def __repr__(self):
        return f"Timer(start={self.start}, period={self.period}, num_periods={self.num_periods})"


@dataclass(frozen=True)
class SensorSettings:
    """Correlation-sensor settings of a rule (one per hemisphere on the chip).

    Parameters
    ----------
    tau_causal, tau_acausal : float
        [ms] decay of the pre-before-post and post-before-pre traces (1..200 ms at
        speedup 1000).
    amp_causal, amp_acausal : float
        [sensor LSB] added by one spike pair at zero delay (0..255; the 8-bit sensor
        saturates at 255).
    """

    tau_causal: float = 20.0
    tau_acausal: float = 20.0
    amp_causal: float = 32.0
    amp_acausal: float = 32.0

    def capmem(self, speedup: float) -> dict:
        """Per-hemisphere CapMem values of the four sensor cells."""
        return {
            "corr_tau_causal": int(hw.corr_tau_capmem(hw.bio_ms_to_hw_us(self.tau_causal, speedup))),
            "corr_tau_acausal": int(hw.corr_tau_capmem(hw.bio_ms_to_hw_us(self.tau_acausal, speedup))),
            "corr_amp_causal": int(hw.corr_amp_capmem(self.amp_causal)),
            "corr_amp_acausal": int(hw.corr_amp_capmem(self.amp_acausal)),
        }


@dataclass(frozen=True)
class RuleRecord:
    """Values a rule recorded under one name: ``times`` [ms] of the ticks and ``values``
    (one entry per tick along the first axis; a list when shapes differ)."""

    times: np.ndarray
    values: object


def _check_kernel(kernel, name):
    if not callable(kernel):
        raise PlasticityKernelError(
            f"Plasticity rule {name!r}: the kernel must be a callable kernel(ctx), got {type(kernel).__name__}."
        )
    try:
        sig = inspect.signature(kernel)
    except (TypeError, ValueError):
        return  # builtins without a signature: checked when called
    try:
        sig.bind(object())
    except TypeError:
        raise PlasticityKernelError(
            f"Plasticity rule {name!r}: the kernel must take exactly one argument (the context), "
            f"kernel(ctx); its signature is {getattr(kernel, '__name__', 'kernel')}{sig}."
        ) from None


class PlasticityRule:
    """A kernel the plasticity processor runs on a timer during the experiment.

    Parameters
    ----------
    kernel : callable
        ``kernel(ctx)`` with a :class:`RuleContext`; checked to take one argument.
    timer : Timer
        When the kernel runs (biological ms).
    observables : iterable of str, optional
        Names the kernel records with ``ctx.record`` (others raise); ``"weights"``
        additionally keeps the weights of every projection after each tick
        (:meth:`weight_history`). None: any name, no weight history.
    populations : iterable of Population, optional
        Populations whose spike counts, membrane samples and parameters the kernel sees.
        Projections join through ``PlasticSynapse(plasticity_rule=rule)``.
    sensors : SensorSettings or True, optional
        Correlation-sensor settings for the hemispheres of the rule's projections (True:
        the chip's defaults, 20 ms and 32 LSB per pair). Default: the sensors are read
        only if a setting is given.
    name : str, optional
        Name in messages and records (default: the kernel's name).

    Examples
    --------
    >>> import pynn_brainscales2 as sim
    >>> def double(ctx, factor):
    ...     pass
    >>> sim.PlasticityRule(double, sim.Timer(0.0, 1.0, 2))
    Traceback (most recent call last):
    ...
    pynn_brainscales2.errors.PlasticityKernelError: Plasticity rule 'double': the kernel must take exactly one argument (the context), kernel(ctx); its signature is double(ctx, factor).
    """

    def __init__(self, kernel, timer: Timer, observables=None, populations=(), sensors=None, name=None):
        self.name = str(name if name is not None else getattr(kernel, "__name__", "rule"))
        _check_kernel(kernel, self.name)
        if not isinstance(timer, Timer):
            raise PlasticityKernelError(
                f"Plasticity rule {self.name!r}: timer must be a pynn_brainscales2.Timer, got {type(timer).__name__}."
            )
        if sensors is True:
            sensors = SensorSettings()
        if sensors is not None and not isinstance(sensors, SensorSettings):
            raise PlasticityKernelError(
                f"Plasticity rule {self.name!r}: sensors must be a SensorSettings or True, got {type(sensors).__name__}."
            )
        self.kernel = kernel
        self.timer = timer
        self.observables = None if observables is None else tuple(str(o) for o in observables)
        self.sensors = sensors
        self.populations = list(populations)
        for pop in self.populations:
            if not hasattr(pop, "celltype") or not hasattr(pop, "all_cells"):
                raise PlasticityKernelError(
                    f"Plasticity rule {self.name!r}: populations must be Population objects, got {type(pop).__name__}."
                )
        if self.populations:
            from .. import simulator

            simulator.state.register_rule(self)
        self._records: dict = {}
        self._history: dict = {}

    @property
    def record_weights(self) -> bool:
        return self.observables is not None and "weights" in self.observables

    # --- results of the last run ------------------------------------------------------------
    def get_data(self, name: str | None = None):
        """What the kernel recorded in the last run: ``{name: RuleRecord}``, or one
        :class:`RuleRecord` for ``name``."""
        if name is None:
            return dict(self._records)
        if name not in self._records:
            raise KeyError(
                f"Plasticity rule {self.name!r} recorded no {name!r} in the last run; recorded: "
                f"{', '.join(self._records) or 'nothing'}."
            )
        return self._records[name]

    def weight_history(self, projection, unit: str = "model") -> RuleRecord:
        """Weights of ``projection`` after every tick of the last run (needs
        ``observables=("weights", ...)``): ``values`` of shape (ticks, connections) in
        model units [nA/uS] (``unit="model"``) or 6-bit steps (``unit="steps"``)."""
        if not self.record_weights:
            raise PlasticityKernelError(
                f"Plasticity rule {self.name!r} keeps no weight history; create it with observables=('weights',)."
            )
        if id(projection) not in self._history:
            raise KeyError(
                f"Projection {getattr(projection, 'label', projection)!r} is not part of rule {self.name!r}."
            )
        times, steps, scale = self._history[id(projection)]
        if unit == "steps":
            return RuleRecord(times, steps)
        if unit == "model":
            return RuleRecord(times, steps / scale)
        raise ValueError(f"unit = {unit!r}: allowed 'model' or 'steps'.")

    def __repr__(self):
        return f"PlasticityRule({self.name!r}, {self.timer!r})"


class ProjectionAccess:
    """A rule's view of one projection at a tick (``ctx.projection(prj)``).

    ``weights`` is an int16 array (one per connection, PyNN's connection order) that the
    kernel changes in place or assigns; after the kernel, values outside 0..63 are clipped
    (and counted). ``causal``/``acausal`` are the 8-bit sensor readouts (uint8, read-only).
    ``weight_scale`` [steps per nA/uS] converts: ``model weight = steps / weight_scale``.
    """

    def __init__(self, binding, cctx):
        self._b = binding
        self._c = cctx
        self._w = None

    @property
    def projection(self):
        return self._b.projection

    @property
    def pre_index(self) -> np.ndarray:
        return self._b.projection._pre

    @property
    def post_index(self) -> np.ndarray:
        return self._b.projection._post

    @property
    def weight_scale(self) -> float:
        return self._b.scale

    @property
    def weights(self) -> np.ndarray:
        if self._w is None:
            self._w = self._c.weights[self._b.index(self._c)].astype(np.int16)
        return self._w

    @weights.setter
    def weights(self, value):
        w = self.weights
        if value is w:
            return
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)):
                raise PlasticityKernelError(
                    f"Projection {self._b.projection.label!r}: written weights must be finite."
                )
            arr = np.floor(arr + 0.5)
        w[...] = np.clip(arr, -32768, 32767).astype(np.int16)

    @property
    def causal(self) -> np.ndarray:
        out = self._c.causal[self._b.index(self._c)]
        out.flags.writeable = False
        return out

    @property
    def acausal(self) -> np.ndarray:
        out = self._c.acausal[self._b.index(self._c)]
        out.flags.writeable = False
        return out

    def reset_correlation(self, index=None, causal: bool = True, acausal: bool = True) -> None:
        """Empty the sensors of the connections ``index`` (default: all of this projection)."""
        idx = self._b.index(self._c)
        if index is not None:
            idx = idx[np.asarray(index)]
        self._c.reset_correlation(idx, causal=causal, acausal=acausal)

    def _flush(self):
        if self._w is not None:
            self._c.weights[self._b.index(self._c)] = self._w


class PopulationAccess:
    """A rule's view of one population at a tick (``ctx.population(pop)``).

    ``spike_counts`` (int, one per neuron): spikes since the rule's previous tick (the
    chip's 8-bit counters are read and reset at every tick of every rule; more than 255
    spikes of one neuron between two ticks saturate). ``v`` [mV] / ``v_lsb``: the latest
    CADC sample (None before the first one). ``parameters[name]``: writable CapMem cells
    (int16 per neuron, 0..1022; e.g. ``v_threshold``, ``i_bias_const``); a change of a
    voltage cell by ``dv`` mV is ``hardware.potential_delta_capmem(dv)`` steps.
    """

    def __init__(self, binding, cctx, counts, vmap, speedup):
        self._b = binding
        self._c = cctx
        self._counts = counts
        self._vmap = vmap
        self._speedup = speedup
        self.parameters = _ParameterAccess(binding.circuits, cctx)

    @property
    def population(self):
        return self._b.population

    @property
    def spike_counts(self) -> np.ndarray:
        return self._counts[self._b.circuits].copy()

    @property
    def v_lsb(self):
        sample = self._c.cadc
        return None if sample is None else sample[self._b.circuits]

    @property
    def v(self):
        lsb = self.v_lsb
        return None if lsb is None else self._vmap.to_mv(lsb.astype(float))

    @property
    def v_time(self):
        t = self._c.cadc_time_us
        return None if t is None else float(hw.hw_us_to_bio_ms(t, self._speedup))


class _ParameterAccess:
    """``parameters[name]``: per-neuron CapMem cells, cached for the tick, written back after it."""

    def __init__(self, circuits, cctx):
        self._circuits = circuits
        self._c = cctx
        self._cache = {}

    def __getitem__(self, name):
        if name not in self._cache:
            self._cache[name] = self._c.capmem[name][self._circuits].astype(np.int16)
        return self._cache[name]

    def __setitem__(self, name, value):
        target = self[name]
        if value is target:
            return
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.floor(arr + 0.5)
        target[...] = np.clip(arr, -32768, 32767).astype(np.int16)

    def keys(self):
        return hw.CAPMEM_FIELDS

    def _flush(self):
        for name, values in self._cache.items():
            cells = self._c.capmem[name]
            cells[self._circuits] = values


class RuleContext:
    """What a rule's kernel sees at a tick (see the module docstring)."""

    def __init__(self, run, binding, cctx):
        self._run = run
        self._rule = binding
        self._c = cctx
        self._projections = {}
        self._populations = {}

    @property
    def rule(self) -> str:
        return self._rule.rule.name

    @property
    def time(self) -> float:
        """[ms] biological time of the tick."""
        return float(hw.hw_us_to_bio_ms(self._c.time_us, self._run.speedup))

    @property
    def tick(self) -> int:
        return int(self._c.tick)

    @property
    def interval(self) -> float:
        """[ms] since the rule's previous tick (since 0 at the first)."""
        return self.time - self._rule.last_time

    @property
    def projections(self) -> tuple:
        """Accesses of all the rule's projections (in creation order)."""
        return tuple(self.projection(b.projection) for b in self._rule.projections)

    @property
    def populations(self) -> tuple:
        return tuple(self.population(b.population) for b in self._rule.populations)

    def projection(self, projection) -> ProjectionAccess:
        key = id(projection)
        if key not in self._projections:
            binding = self._rule.projection_binding(projection)
            self._projections[key] = ProjectionAccess(binding, self._c)
        return self._projections[key]

    def population(self, population) -> PopulationAccess:
        key = id(population)
        if key not in self._populations:
            binding = self._rule.population_binding(population)
            self._populations[key] = PopulationAccess(
                binding, self._c, self._rule.counts, self._run.vmap, self._run.speedup
            )
        return self._populations[key]

    def record(self, name: str, value) -> None:
        """Keep ``value`` (copied) under ``name`` for this tick (:meth:`PlasticityRule.get_data`)."""
        allowed = self._rule.rule.observables
        if allowed is not None and name not in allowed:
            raise PlasticityKernelError(
                f"Plasticity rule {self.rule!r} records {name!r}, which is not among its observables "
                f"({', '.join(allowed) or 'none'}); add it to observables=."
            )
        self._c.record(str(name), value)

    def _flush(self):
        for access in self._projections.values():
            access._flush()
        for access in self._populations.values():
            access.parameters._flush()

    def __repr__(self):
        return f"RuleContext(rule={self.rule!r}, tick={self.tick}, time={self.time:g} ms)"


__all__ = [
    "PlasticityRule",
    "PlasticityWarning",
    "PopulationAccess",
    "ProjectionAccess",
    "RuleContext",
    "RuleRecord",
    "SensorSettings",
    "Timer",
]
