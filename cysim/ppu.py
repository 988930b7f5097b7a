"""The virtual plasticity processors: :class:`PPUProgram` and the kernel context.

A program is a Python callable (the *kernel*) run on a timer during an experiment, like
the C++ kernels of the real chip's two embedded processors (PPUs)::

    >>> import numpy as np
    >>> from cysim import ChipConfig, PPUProgram, VirtualChip
    >>> def stdp(ctx):                       # additive, on the 8-bit sensor readouts
    ...     ctx.weights += (ctx.causal >> 4).astype(np.int16) - (ctx.acausal >> 4)
    ...     ctx.reset_correlation()
    >>> program = PPUProgram(stdp, start_us=0.0, period_us=1.0, num_periods=None)
    >>> result = VirtualChip.ideal().run(ChipConfig(), duration_us=5.0, plasticity=program)
    >>> result.plasticity.tick_times_us.tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]

Timing: tick ``k`` of a program is due at ``start_us + k * period_us`` (``k <
num_periods``; ``num_periods=None``: until the end of the run), rounded to the integration
grid; ticks up to and including the end of the run are executed. The engine integrates
every trial up to the tick, calls the kernel, applies what it wrote and continues:
weights written at a tick act on every event that arrives at its synapses from the tick
on (also on events already in flight), CapMem values from the next integration step on.
Ticks of several programs at one time run in the order the programs were given; each sees
what the ones before it wrote.

Batched trials: by default a kernel is called once per tick with every array carrying a
leading trial axis (``ctx.weights[trial, synapse]``); with ``per_trial=True`` it is called
once per trial with that trial's 1-D views (``ctx.trial`` tells which).

Built-in rules: :class:`STDPProgram` is pair-based STDP on the correlation sensors. Like
the real chip's vector code it is compiled: the engine runs its ticks itself, without
returning to Python, and visits only the synapses whose sensors events or spikes touched
since the previous tick. Its Python kernel (``compiled=False``) computes the same weights
bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import constants as C
from .errors import PlasticityError


class PPUProgram:
    """A kernel run by the plasticity processors on a timer.

    Parameters
    ----------
    kernel : callable
        ``kernel(ctx)`` with a :class:`PlasticityContext`; its return value is ignored.
    start_us : float
        Time of the first tick [us hardware time], >= 0.
    period_us : float, optional
        Time between ticks [us], > 0; needed unless ``num_periods == 1``.
    num_periods : int or None
        Number of ticks (>= 1); None: every period until the end of the run.
    name : str, optional
        Key of the program's records in the result (default ``"program<k>"`` by position).
    synapses : array_like of bool, shape (2, 256, 256), optional
        Synapses to track besides those in use (non-zero weight on an enabled row):
        e.g. plastic synapses that start at weight 0. Only tracked synapses have
        correlation sensors and writable weights.
    correlation : bool
        Whether this program reads the correlation sensors (if no program does, the
        engine skips the sensor updates).
    per_trial : bool
        Call the kernel once per trial with 1-D views instead of once with a trial axis.
    record_weights : bool
        Keep a snapshot of the tracked weights after each tick
        (``result.plasticity.weight_history[name]``).
    """

    def __init__(
        self,
        kernel: Callable,
        start_us: float = 0.0,
        period_us: float | None = None,
        num_periods: int | None = 1,
        *,
        name: str | None = None,
        synapses=None,
        correlation: bool = True,
        per_trial: bool = False,
        record_weights: bool = False,
    ):
        if not callable(kernel):
            raise PlasticityError(f"PPUProgram kernel must be callable, got {type(kernel).__name__}.")
        start = float(start_us)
        if not np.isfinite(start) or start < 0:
            raise PlasticityError(f"PPUProgram start_us = {start_us} us: give a finite time >= 0 us.")
        if num_periods is not None:
            if not isinstance(num_periods, (int, np.integer)) or num_periods < 1:
                raise PlasticityError(
                    f"PPUProgram num_periods = {num_periods!r}: give a positive integer, or None "
                    "for a tick every period until the end of the run."
                )
            num_periods = int(num_periods)
        if period_us is None:
            if num_periods != 1:
                raise PlasticityError(
                    "PPUProgram needs period_us (> 0 us) for more than one tick "
                    f"(num_periods = {num_periods})."
                )
            period = np.inf
        else:
            period = float(period_us)
            if not np.isfinite(period) or period <= 0:
                raise PlasticityError(f"PPUProgram period_us = {period_us} us: give a finite time > 0 us.")
        if synapses is not None:
            mask = np.asarray(synapses)
            shape = (C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS)
            if mask.shape != shape or mask.dtype != np.bool_:
                raise PlasticityError(
                    f"PPUProgram synapses must be a boolean mask of shape {shape} "
                    f"(hemisphere, row, column); got {mask.dtype} of shape {mask.shape}."
                )
            synapses = mask.copy()
        self.kernel = kernel
        self.start_us = start
        self.period_us = period
        self.num_periods = num_periods
        self.name = None if name is None else str(name)
        self.synapses = synapses
        self.correlation = bool(correlation)
        self.per_trial = bool(per_trial)
        self.record_weights = bool(record_weights)

    def tick_steps(self, n_steps: int, dt_us: float) -> np.ndarray:
        """Integration steps of the ticks of a run of ``n_steps`` steps of ``dt_us``."""
        end = n_steps * dt_us
        if self.start_us > end + dt_us / 2:
            return np.zeros(0, dtype=np.int64)
        count = (
            1
            if not np.isfinite(self.period_us)
            else int(np.floor((end - self.start_us) / self.period_us)) + 2
        )
        if self.num_periods is not None:
            count = min(count, self.num_periods)
        times = self.start_us + np.arange(count) * (self.period_us if count > 1 else 0.0)
        steps = np.floor(times / dt_us + 0.5).astype(np.int64)
        return steps[steps <= n_steps]

    def __repr__(self):
        return (
            f"PPUProgram({getattr(self.kernel, '__name__', self.kernel)!r}, start_us={self.start_us}, "
            f"period_us={self.period_us}, num_periods={self.num_periods}, name={self.name!r})"
        )


DEPENDENCES = ("additive", "multiplicative")


class STDPProgram(PPUProgram):
    """Pair-based STDP on the correlation sensors, run by the engine (a built-in rule).

    At every tick, for every synapse of the program, with ``K+ = (causal - causal_zero) /
    eta_causal`` and ``K- = (acausal - acausal_zero) / eta_acausal`` (8-bit readouts minus
    the readouts of empty sensors; pairs weighted by ``exp(-|Delta t| / tau)``), in 6-bit
    weight steps::

        additive:        dw = A_plus * w_max * K+  -  A_minus * w_max * K-
        multiplicative:  dw = A_plus * (w_max - w) * K+  -  A_minus * (w - w_min) * K-

    ``dw`` adds to a per-synapse carry (float64, zero at the start of a run); the carry's
    nearest integer is the step taken (the rest stays for the next tick). The new weight
    ``w + step`` is bounded to ``ceil(w_min)..floor(w_max)``, then, like any write, to
    0..63 (out-of-range values are counted in ``result.plasticity.weights_clipped``).
    With ``reset_correlation`` the tick then empties the program's sensors.

    Parameters
    ----------
    start_us, period_us, num_periods, name, record_weights
        As for :class:`PPUProgram`.
    A_plus, A_minus, w_min, w_max : float or array_like
        Per synapse: a number, an array of shape (2, 256, 256) (read at the program's
        synapses) or, with ``synapses``, one value per synapse of the mask in row-major
        order; ``w_min``/``w_max`` in weight steps. Finite.
    eta_causal, eta_acausal : float or array_like, optional
        [sensor LSB per pair at zero delay] > 0; default: the nominal amplitude of the
        configuration's ``corr_amp_causal``/``corr_amp_acausal`` cell of each hemisphere.
    dependence : {"additive", "multiplicative"}
    reset_correlation : bool
        Empty the sensors of the program's synapses at every tick.
    synapses : array_like of bool, shape (2, 256, 256), optional
        The synapses the rule updates (tracked); default every tracked synapse of the run.
    compiled : bool
        Run the ticks inside the engine (default). ``False`` runs :meth:`python_kernel`
        like any kernel (same results; for checks). A run also falls back to the Python
        kernel when another compiled program already owns one of the synapses.

    Examples
    --------
    >>> rule = STDPProgram(0.0, 1.0, None, A_plus=0.05, A_minus=0.05, dependence="multiplicative")
    >>> rule.multiplicative, rule.compiled
    (True, True)

    ``VirtualChip.run(config, plasticity=rule)`` then runs it like any program.
    """

    #: order of the parameter rows of the engine
    PARAMETERS = ("A_plus", "A_minus", "w_min", "w_max", "lo", "hi", "eta_causal", "eta_acausal")

    def __init__(
        self,
        start_us: float = 0.0,
        period_us: float | None = None,
        num_periods: int | None = 1,
        *,
        A_plus=0.01,
        A_minus=0.01,
        w_min=0.0,
        w_max=float(C.WEIGHT_MAX),
        eta_causal=None,
        eta_acausal=None,
        dependence: str = "additive",
        reset_correlation: bool = True,
        synapses=None,
        name: str | None = None,
        record_weights: bool = False,
        compiled: bool = True,
    ):
        if dependence not in DEPENDENCES:
            raise PlasticityError(
                f"STDPProgram dependence = {dependence!r}: allowed {', '.join(DEPENDENCES)}."
            )
        params = {"A_plus": A_plus, "A_minus": A_minus, "w_min": w_min, "w_max": w_max}
        for key, value in (("eta_causal", eta_causal), ("eta_acausal", eta_acausal)):
            if value is not None:
                params[key] = value
        n_mask = None if synapses is None else int(np.count_nonzero(synapses))
        for key, value in params.items():
            arr = np.asarray(value, dtype=np.float64)
            if arr.ndim and arr.shape != _SHAPE and not (arr.ndim == 1 and arr.size == n_mask):
                per = "" if n_mask is None else f", or {n_mask} values (one per synapse of the mask)"
                raise PlasticityError(
                    f"STDPProgram {key}: give a number, an array of shape {_SHAPE} (hemisphere, row, "
                    f"column){per}; got shape {arr.shape}."
                )
            if not np.all(np.isfinite(arr)):
                raise PlasticityError(f"STDPProgram {key} must be finite.")
            if key.startswith("eta") and np.any(arr <= 0):
                raise PlasticityError(f"STDPProgram {key} must be > 0 sensor LSB per pair.")
            if arr.ndim:
                arr = arr.copy()
                arr.flags.writeable = False  # fixed with the program (runs reuse its tables)
                params[key] = arr
            else:
                params[key] = float(arr)
        super().__init__(
            self.python_kernel,
            start_us,
            period_us,
            num_periods,
            name=name,
            synapses=synapses,
            correlation=True,
            per_trial=False,
            record_weights=record_weights,
        )
        self.dependence = dependence
        self.reset = bool(reset_correlation)
        self.compiled = bool(compiled)
        self.params = params
        self._state = None

    @property
    def multiplicative(self) -> bool:
        return self.dependence == "multiplicative"

    def positions(self, run) -> np.ndarray:
        """Indices of the program's synapses in the run's tracked synapses (row-major)."""
        if self.synapses is None:
            return np.arange(run.n_syn, dtype=np.int64)
        return run.synapse_index(*np.nonzero(self.synapses))

    def arrays(self, config, coords, uniform: bool = False) -> dict:
        """Per-synapse parameters at ``coords`` (hemisphere, row, column index arrays):
        ``A_plus``, ``A_minus``, ``w_min``, ``w_max``, ``eta_causal``, ``eta_acausal``
        (float64) and the bounds ``lo``, ``hi`` of a new weight. With ``uniform``, one
        value (0-d) per name where every synapse has the same."""
        h = coords[0]
        present = list(range(int(h.min()), int(h.max()) + 1)) if h.size else []
        values = {}
        for key in ("A_plus", "A_minus", "w_min", "w_max", "eta_causal", "eta_acausal"):
            value = self.params.get(key)
            if value is None:  # nominal sensor amplitude of the hemisphere
                cell = "corr_amp_causal" if key == "eta_causal" else "corr_amp_acausal"
                eta = C.CORR_AMP_MAX_LSB * np.asarray(config.array(cell), dtype=np.float64) / C.CAPMEM_MAX
                if np.any(eta[present] <= 0):
                    raise PlasticityError(
                        f"STDPProgram {key}: the sensor amplitude cell {cell} is 0 in a hemisphere of the "
                        f"program's synapses; give {key} or a non-zero cell."
                    )
                if len(set(eta[present].tolist())) <= 1:
                    value = float(eta[present[0]]) if present else 1.0
                else:
                    value = eta[h]
            elif not isinstance(value, float) and value.ndim == 3:
                value = value[coords]
            values[key] = value  # (1-D: one per synapse of the mask, the order of coords)
        if uniform and all(isinstance(v, float) for v in values.values()):
            out = {key: np.float64(v) for key, v in values.items()}
        else:
            out = {key: np.full(h.size, v) if isinstance(v, float) else v for key, v in values.items()}
        out["lo"] = np.ceil(out["w_min"] - 1e-9)
        out["hi"] = np.floor(out["w_max"] + 1e-9)
        return out

    def python_kernel(self, ctx):
        """The rule as a kernel on the context (what ``compiled=False`` runs)."""
        if ctx.tick == 0 or self._state is None:  # the first tick of a run
            idx = self.positions(ctx._run)
            coords = tuple(c[idx] for c in ctx.synapses)
            arrays = self.arrays(ctx._run.config, coords)
            self._state = (idx, arrays, np.zeros((ctx.trials, idx.size)))
        idx, par, carry = self._state
        causal = ctx.causal[:, idx].astype(np.float64)
        acausal = ctx.acausal[:, idx].astype(np.float64)
        if self.reset:
            ctx.reset_correlation(idx)
        k_plus = np.maximum(causal - ctx.causal_zero[idx], 0.0) / par["eta_causal"]
        k_minus = np.maximum(acausal - ctx.acausal_zero[idx], 0.0) / par["eta_acausal"]
        weights = ctx.weights
        w = weights[:, idx]
        a_plus, a_minus, w_min, w_max = par["A_plus"], par["A_minus"], par["w_min"], par["w_max"]
        if self.multiplicative:
            dw = a_plus * (w_max - w) * k_plus - a_minus * (w - w_min) * k_minus
        else:
            dw = a_plus * w_max * k_plus - a_minus * w_max * k_minus
        carry += dw
        step = np.floor(carry + 0.5)  # nearest: the carry stays within -0.5..0.5 steps
        carry -= step
        new = np.clip(w + step, par["lo"], par["hi"])
        weights[:, idx] = np.clip(np.floor(new + 0.5), -32768, 32767).astype(np.int16)

    def __repr__(self):
        return (
            f"STDPProgram({self.dependence!r}, start_us={self.start_us}, period_us={self.period_us}, "
            f"num_periods={self.num_periods}, name={self.name!r}, compiled={self.compiled})"
        )


_SHAPE = (C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS)


def programs_of(plasticity) -> tuple:
    """The programs of ``VirtualChip.run(plasticity=...)``: None, one or a sequence."""
    if plasticity is None:
        return ()
    items = (plasticity,) if isinstance(plasticity, PPUProgram) else tuple(plasticity)
    for item in items:
        if not isinstance(item, PPUProgram):
            raise PlasticityError(
                f"plasticity must be a cysim.PPUProgram or a sequence of them, got {type(item).__name__}."
            )
    names = [p.name or f"program{k}" for k, p in enumerate(items)]
    if len(set(names)) != len(names):
        raise PlasticityError(f"plasticity programs need distinct names, got {names}.")
    return items


class CapMemAccess:
    """``ctx.capmem[name]``: writable per-trial CapMem values of all 512 circuits.

    Returns an int16 array (trials, 512), or (512,) in a per-trial kernel, that the kernel
    changes in place (or assigns: ``ctx.capmem["v_threshold"] = values``). After the
    kernel, values outside 0..1022 are clipped and counted, and changed circuits get their
    new physical parameters.
    """

    __slots__ = ("_ctx",)

    def __init__(self, ctx):
        self._ctx = ctx

    def _array(self, name):
        if name not in C.CAPMEM_FIELDS:
            raise PlasticityError(
                f"ctx.capmem[{name!r}]: no such CapMem cell; per-circuit cells: {', '.join(C.CAPMEM_FIELDS)}."
            )
        values = self._ctx._run.capmem_array(name)
        return values if self._ctx.trial is None else values[self._ctx.trial]

    def __getitem__(self, name):
        return self._array(name)

    def __setitem__(self, name, value):
        target = self._array(name)
        if not (isinstance(value, np.ndarray) and _same_memory(value, target)):  # not after ``+=``
            target[...] = _as_int16(value, f"ctx.capmem[{name!r}]")

    def __contains__(self, name):
        return name in C.CAPMEM_FIELDS

    def keys(self):
        return C.CAPMEM_FIELDS


def _same_memory(a, b) -> bool:
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and a.ctypes.data == b.ctypes.data
        and a.strides == b.strides
    )


def _as_int16(value, what):
    """Integers for an int16 array: floats rounded to the nearest, kept within int16 so
    that out-of-range writes are still seen (and clipped and counted) as such."""
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise PlasticityError(f"{what} takes numbers, got {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise PlasticityError(f"{what}: written values must be finite.")
        arr = np.floor(arr + 0.5)
    return np.clip(arr, -32768, 32767).astype(np.int16)


class PlasticityContext:
    """What a kernel sees at a tick (``kernel(ctx)``).

    Attributes
    ----------
    time_us : float
        Hardware time of the tick [us] (on the integration grid).
    tick : int
        Index of the tick within its program.
    program : str
        Name of the program.
    trial : int or None
        The trial of a per-trial kernel; None for a batched one (arrays with a trial axis).
    trials : int
        Number of trials of the run.

    Arrays below carry a leading trial axis in a batched kernel, none in a per-trial one.
    Per-synapse arrays run over the tracked synapses ``ctx.synapses`` (row-major order).
    """

    __slots__ = ("_run", "time_us", "tick", "program", "trial")

    def __init__(self, run, program: str, tick: int, time_us: float, trial=None):
        self._run = run
        self.program = program
        self.tick = tick
        self.time_us = time_us
        self.trial = trial

    def _rows(self, arr):
        return arr if self.trial is None else arr[self.trial]

    @property
    def trials(self) -> int:
        return self._run.n_trials

    @property
    def synapses(self) -> tuple:
        """``(hemisphere, row, column)`` index arrays of the tracked synapses."""
        return self._run.synapses

    def synapse_index(self, hemisphere, row, column) -> np.ndarray:
        """Positions of synapses ``(hemisphere, row, column)`` in the per-synapse arrays
        (-1 where a synapse is not tracked)."""
        return self._run.synapse_index(hemisphere, row, column)

    # --- weights -------------------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        """Writable 6-bit weights (int16, changed in place); integer arithmetic only
        (``+=`` with floats raises). Values outside 0..63 are clipped after the kernel and
        counted (``result.plasticity.weights_clipped``)."""
        return self._run.weights_for_kernel(self.trial)

    @weights.setter
    def weights(self, value):
        target = self._run.weights_for_kernel(self.trial)
        if value is not target:  # ``ctx.weights += x`` already wrote in place
            target[...] = _as_int16(value, "ctx.weights")

    # --- correlation sensors -----------------------------------------------------------------
    @property
    def causal(self) -> np.ndarray:
        """Causal sensor readouts (uint8, read-only): pre-before-post pairings."""
        return self._rows(self._run.correlation()[0])

    @property
    def acausal(self) -> np.ndarray:
        """Acausal sensor readouts (uint8, read-only): post-before-pre pairings."""
        return self._rows(self._run.correlation()[1])

    @property
    def causal_zero(self) -> np.ndarray:
        """Readouts of empty causal sensors (uint8 per tracked synapse, read-only): the
        sensor offsets, what :attr:`causal` reads after a reset."""
        return self._run.zero_readouts()[0]

    @property
    def acausal_zero(self) -> np.ndarray:
        """Readouts of empty acausal sensors (uint8 per tracked synapse, read-only)."""
        return self._run.zero_readouts()[1]

    def reset_correlation(self, index=None, causal: bool = True, acausal: bool = True) -> None:
        """Reset the accumulated correlation of the synapses ``index`` (default: all
        tracked synapses) of this kernel's trial(s)."""
        self._run.reset_correlation(self.trial, index, causal, acausal)

    # --- neurons ---------------------------------------------------------------------------
    @property
    def spike_counts(self) -> np.ndarray:
        """8-bit saturating spike counters of all 512 circuits (uint8, read-only): spikes
        since the last :meth:`reset_spike_counts` (or the start of the run)."""
        return self._rows(self._run.spike_counts())

    def reset_spike_counts(self, circuits=None) -> None:
        """Set the spike counters of ``circuits`` (default all) of this kernel's trial(s) to 0."""
        self._run.reset_spike_counts(self.trial, circuits)

    @property
    def cadc(self) -> np.ndarray | None:
        """The latest CADC sample of all 512 circuits (uint8 LSB, read-only) at or before
        the tick; None before the first sample or with the CADC off."""
        sample = self._run.last_cadc()
        return None if sample is None else self._rows(sample)

    @property
    def cadc_time_us(self) -> float | None:
        """Time of :attr:`cadc` [us]."""
        return self._run.last_cadc_time()

    @property
    def capmem(self) -> CapMemAccess:
        """Writable per-circuit CapMem cells: ``ctx.capmem["v_threshold"]`` (int16)."""
        return CapMemAccess(self)

    # --- recording -------------------------------------------------------------------------
    def record(self, name: str, value) -> None:
        """Store ``value`` (copied) under ``name`` for this tick (``result.plasticity_records``)."""
        self._run.record(self.program, str(name), self.time_us, self.trial, value)

    def __repr__(self):
        trial = "" if self.trial is None else f", trial={self.trial}"
        return f"PlasticityContext(program={self.program!r}, tick={self.tick}, time_us={self.time_us}{trial})"
