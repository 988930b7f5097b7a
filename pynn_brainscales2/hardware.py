"""Chip facts and every conversion between biological (model) and hardware units.

This is the one module that multiplies by the speed-up factor, converts millivolts to
CADC least significant bits (LSB) or biological weights to 6-bit weight steps.

Time
    The chip runs ``speedup`` times faster than biology (default 1000): 1 ms of
    biological time is 1 us of hardware time.
Potentials
    One linear map, :class:`VoltageMap`, sends biological membrane potentials [mV] onto
    the CADC readout scale [LSB] (8 bit, 0..255)::

        lsb = (v_mv - mv_at_zero_lsb) / mv_per_lsb

    The default, ``VoltageMap(mv_at_zero_lsb=-90.0, mv_per_lsb=0.25)``, puts -80 mV at
    40 LSB, -65 mV at 100 LSB, -50 mV at 160 LSB and -40 mV at 200 LSB, so the usual
    resting, reset and threshold potentials fall into the calibratable ranges
    (leak/reset 50..160 LSB = -77.5..-50 mV, threshold 50..220 LSB = -77.5..-35 mV) and
    into the CADC's reliable range (30..210 LSB = -82.5..-37.5 mV).
Weights
    A projection's biological weights [nA for current-based, uS for conductance-based
    synapses] become integer steps through a per-projection ``scale`` [steps/nA or
    steps/uS]: ``steps = round(|w| * scale)``. One synapse holds 0..63 steps; larger
    values are split over several synapse rows (123 -> 63 + 60). Positive weights go to
    excitatory rows, negative ones to inhibitory rows. Calibration makes one step worth
    ``1 / scale`` of the model unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cysim.constants import (  # noqa: F401  (re-exported chip facts)
    ADDRESS_BITS,
    ADDRESS_MAX,
    BG_CLOCK_US,
    BG_OFF,
    BG_PERIOD_MAX_CYCLES,
    BG_POISSON,
    BG_REGULAR,
    CADC_LSB_PER_V,
    CADC_MAX,
    CADC_PERIOD_MIN_US,
    CADC_RELIABLE_RANGE_LSB,
    CAPMEM_FIELDS,
    CAPMEM_MAX,
    EVENT_LABEL_MAX,
    FPGA_TICK_US,
    LABEL_MAX,
    LEAK_RANGE_LSB,
    MADC_LSB_PER_V,
    MADC_MAX,
    MAX_COMPARTMENTS,
    N_BACKGROUND_GENERATORS,
    N_BUSES,
    N_CIRCUITS,
    N_COLUMNS,
    N_DRIVERS,
    N_HEMISPHERES,
    N_PADI_BUSES,
    N_ROWS,
    REFRACTORY_RANGE_US,
    RESET_RANGE_LSB,
    ROUTING_LATENCY_US,
    ROW_EXC,
    ROW_INH,
    ROW_OFF,
    ROW_SELECT_MAX,
    ROWS_PER_DRIVER,
    SWITCH_FIELDS,
    TAU_MEM_RANGE_US,
    TAU_SYN_RANGE_US,
    THRESHOLD_RANGE_LSB,
    V_RAIL_V,
    WEIGHT_MAX,
    circuit_of,
    event_label,
)
from cysim.engine import COBA_REFERENCE_V  # noqa: F401  (design constant of the COBA mode, re-exported)

from .errors import ParameterRangeError

DEFAULT_SPEEDUP = 1000.0  # hardware time runs this much faster than biological time
N_LABELS = LABEL_MAX + 1  # synapse labels per row-select address
N_ROW_SELECTS = ROW_SELECT_MAX + 1
DRIVERS_PER_PADI_BUS = N_DRIVERS // N_PADI_BUSES  # 32: driver d listens to bus d % 4
ROWS_PER_PADI_BUS = DRIVERS_PER_PADI_BUS * ROWS_PER_DRIVER  # 64
MAX_CIRCUITS_PER_NEURON = MAX_COMPARTMENTS  # 64 circuits joined into one logical neuron


# --- time ---------------------------------------------------------------------------
def _check_speedup(speedup: float) -> float:
    s = float(speedup)
    if not np.isfinite(s) or s <= 0:
        raise ParameterRangeError(
            f"speedup = {speedup}: allowed a finite factor > 0 (the chip runs "
            f"{DEFAULT_SPEEDUP:g}x faster than biology by default). Pass e.g. speedup=1000.0."
        )
    return s


def bio_ms_to_hw_us(t_ms, speedup: float = DEFAULT_SPEEDUP):
    """Biological time [ms] -> hardware time [us].

    Examples
    --------
    >>> float(bio_ms_to_hw_us(20.0))
    20.0
    >>> float(bio_ms_to_hw_us(20.0, speedup=500.0))
    40.0
    """
    return np.asarray(t_ms, dtype=float) * (1000.0 / _check_speedup(speedup))


def hw_us_to_bio_ms(t_us, speedup: float = DEFAULT_SPEEDUP):
    """Hardware time [us] -> biological time [ms].

    >>> float(hw_us_to_bio_ms(3.5))
    3.5
    """
    return np.asarray(t_us, dtype=float) * (_check_speedup(speedup) / 1000.0)


def bio_hz_to_hw_per_us(rate_hz, speedup: float = DEFAULT_SPEEDUP):
    """Biological rate [Hz] -> hardware rate [1/us].

    >>> float(bio_hz_to_hw_per_us(100.0))
    0.1
    """
    return np.asarray(rate_hz, dtype=float) * (_check_speedup(speedup) * 1e-6)


def bg_period_cycles(rate_hz: float, speedup: float = DEFAULT_SPEEDUP) -> int:
    """(Mean) period of an on-chip background generator [250 MHz cycles] for a biological
    rate [Hz].

    Raises :class:`ParameterRangeError` when the rate needs a period outside
    ``1..65535`` cycles.

    >>> bg_period_cycles(1000.0)  # 1 kHz bio = 1 MHz hardware = 1 us = 250 cycles
    250
    """
    rate = float(bio_hz_to_hw_per_us(rate_hz, speedup))
    cycles = np.inf if rate <= 0 else 1.0 / (rate * BG_CLOCK_US)
    if not np.isfinite(cycles) or not 1 <= round(cycles) <= BG_PERIOD_MAX_CYCLES:
        lo = 1e6 / (BG_PERIOD_MAX_CYCLES * BG_CLOCK_US * speedup)
        hi = 1e6 / (BG_CLOCK_US * speedup)
        raise ParameterRangeError(
            f"Background rate {rate_hz:g} Hz is out of range: allowed {lo:.3g}..{hi:.3g} Hz at "
            f"speedup {speedup:g} (period 1..{BG_PERIOD_MAX_CYCLES} cycles of 250 MHz). "
            "Use a SpikeSourcePoisson from the host for other rates."
        )
    return int(round(cycles))


# --- potentials ---------------------------------------------------------------------
@dataclass(frozen=True)
class VoltageMap:
    """Linear map between biological potentials [mV] and CADC readout values [LSB].

    Parameters
    ----------
    mv_at_zero_lsb : float
        Biological potential [mV] that corresponds to CADC value 0.
    mv_per_lsb : float
        Biological potential difference [mV] of one CADC LSB (> 0).

    Examples
    --------
    >>> vmap = VoltageMap()
    >>> float(vmap.to_lsb(-65.0)), float(vmap.to_mv(160.0))
    (100.0, -50.0)
    >>> [float(x) for x in vmap.range_mv(LEAK_RANGE_LSB)]
    [-77.5, -50.0]
    """

    mv_at_zero_lsb: float = -90.0
    mv_per_lsb: float = 0.25

    def __post_init__(self):
        if not (np.isfinite(self.mv_per_lsb) and self.mv_per_lsb > 0 and np.isfinite(self.mv_at_zero_lsb)):
            raise ParameterRangeError(
                f"VoltageMap(mv_at_zero_lsb={self.mv_at_zero_lsb}, mv_per_lsb={self.mv_per_lsb}): "
                "give a finite offset [mV] and a finite slope > 0 [mV/LSB]."
            )

    def to_lsb(self, v_mv):
        """Potential [mV] -> CADC value [LSB] (not rounded, not clipped)."""
        return (np.asarray(v_mv, dtype=float) - self.mv_at_zero_lsb) / self.mv_per_lsb

    def to_mv(self, lsb):
        """CADC value [LSB] -> potential [mV]."""
        return np.asarray(lsb, dtype=float) * self.mv_per_lsb + self.mv_at_zero_lsb

    def delta_to_lsb(self, dv_mv):
        """Potential difference [mV] (e.g. a PSP height or Delta_T) -> [LSB]."""
        return np.asarray(dv_mv, dtype=float) / self.mv_per_lsb

    def delta_to_mv(self, dlsb):
        """Difference [LSB] -> potential difference [mV]."""
        return np.asarray(dlsb, dtype=float) * self.mv_per_lsb

    def madc_to_mv(self, madc_lsb):
        """MADC value [10-bit LSB] -> potential [mV] (nominal readout gains)."""
        return self.to_mv(np.asarray(madc_lsb, dtype=float) * (CADC_LSB_PER_V / MADC_LSB_PER_V))

    def range_mv(self, range_lsb) -> tuple[float, float]:
        """A hardware range ``(low, high)`` [LSB] as biological potentials [mV]."""
        lo, hi = self.to_mv(range_lsb[0]), self.to_mv(range_lsb[1])
        return float(lo), float(hi)

    def check_range(self, name: str, v_mv, range_lsb, what: str = "") -> np.ndarray:
        """Convert ``v_mv`` [mV] to [LSB], raising :class:`ParameterRangeError` outside
        ``range_lsb``.

        >>> VoltageMap().check_range("v_thresh", -30.0, THRESHOLD_RANGE_LSB)
        Traceback (most recent call last):
        ...
        pynn_brainscales2.errors.ParameterRangeError: v_thresh = -30 mV is out of range: allowed -77.5..-35 mV ...
        """
        lsb = np.atleast_1d(self.to_lsb(v_mv))
        bad = ~np.isfinite(lsb) | (lsb < range_lsb[0] - 1e-9) | (lsb > range_lsb[1] + 1e-9)
        if bad.any():
            lo, hi = self.range_mv(range_lsb)
            value = float(np.atleast_1d(v_mv)[np.flatnonzero(bad)[0]])
            raise ParameterRangeError(
                f"{name} = {value:g} mV is out of range: allowed {lo:g}..{hi:g} mV "
                f"({range_lsb[0]:g}..{range_lsb[1]:g} CADC LSB{', ' + what if what else ''}) with "
                f"{self}. Choose a value inside, or a different VoltageMap."
            )
        return lsb

    def slope_to_lsb_per_us(self, mv_per_ms, speedup: float = DEFAULT_SPEEDUP):
        """Rate of change of a potential [mV/ms biological] -> [LSB/us hardware].

        A current ``I`` [nA] on a capacitance ``C`` [nF] gives ``I / C`` [mV/ms].

        >>> float(VoltageMap().slope_to_lsb_per_us(1.0))  # 1 mV/ms = 4 LSB/ms = 4 LSB/us
        4.0
        """
        s = _check_speedup(speedup)
        return np.asarray(mv_per_ms, dtype=float) / self.mv_per_lsb * (s / 1000.0)


DEFAULT_VOLTAGE_MAP = VoltageMap()


def mv_to_lsb(v_mv, vmap: VoltageMap = DEFAULT_VOLTAGE_MAP):
    """Biological potential [mV] -> CADC value [LSB] with ``vmap``.

    >>> float(mv_to_lsb(-70.0))
    80.0
    """
    return vmap.to_lsb(v_mv)


def lsb_to_mv(lsb, vmap: VoltageMap = DEFAULT_VOLTAGE_MAP):
    """CADC value [LSB] -> biological potential [mV] with ``vmap``.

    >>> float(lsb_to_mv(80))
    -70.0
    """
    return vmap.to_mv(lsb)


def lsb_to_volt(lsb):
    """CADC value [LSB] -> membrane voltage on the chip [V] (nominal readout gain)."""
    return np.asarray(lsb, dtype=float) / CADC_LSB_PER_V


# --- nominal design transfers of CapMem cells ---------------------------------------------
# Design values, not the chip's hidden per-circuit deviations: exact on the ideal chip,
# a first guess (or, where nothing is calibrated, the setting) on a realistic one.

#: voltage cells: CapMem steps per CADC LSB (1.2 V rail over 1023 steps, CADC 256 LSB over 1.2 V)
CAPMEM_PER_LSB = 1023.0 / 256.0
#: bias-current cell: membrane slope [CADC LSB/us] at CapMem 1022
BIAS_LSB_PER_US_AT_MAX = 40.0
#: synaptic transconductance cells: jump of the synaptic input per weight step, as membrane
#: slope [CADC LSB/us], at CapMem 1022
SYN_GAIN_LSB_PER_US_AT_MAX = 1.0
#: driving force [CADC LSB] at which a COBA weight equals the CUBA one
COBA_REFERENCE_LSB = COBA_REFERENCE_V * CADC_LSB_PER_V


def nominal_potential_capmem(lsb) -> np.ndarray:
    """CapMem value of a voltage cell for a potential [CADC LSB], nominal transfer, clipped
    to 0..1022.

    >>> nominal_potential_capmem([0.0, 100.0, 300.0]).tolist()
    [0, 400, 1022]
    """
    v = np.rint(np.asarray(lsb, dtype=float) * CAPMEM_PER_LSB)
    return np.clip(v, 0, CAPMEM_MAX).astype(np.int64)


def nominal_bias_capmem(slope_lsb_per_us) -> np.ndarray:
    """CapMem value of the bias-current cell for a membrane slope ``|I/C|`` [CADC LSB/us],
    nominal transfer (not clipped: values above 1022 are out of range).

    >>> nominal_bias_capmem([4.0, -40.0]).tolist()
    [102, 1022]
    """
    return np.rint(
        np.abs(np.asarray(slope_lsb_per_us, dtype=float)) / BIAS_LSB_PER_US_AT_MAX * CAPMEM_MAX
    ).astype(np.int64)


def nominal_syn_gain_capmem(gain_lsb_per_us) -> np.ndarray:
    """CapMem value (not rounded) of a synaptic transconductance cell for a gain [CADC LSB/us
    per weight step], nominal transfer.

    >>> float(nominal_syn_gain_capmem(0.1))
    102.2
    """
    return np.asarray(gain_lsb_per_us, dtype=float) / SYN_GAIN_LSB_PER_US_AT_MAX * CAPMEM_MAX


#: membrane leak bias cell: tau_mem [us] at CapMem 0 and at 1022 (log domain)
TAU_MEM_AT_0_US, TAU_MEM_AT_MAX_US = 150.0, 0.2
#: AdEx exponential slope cell: Delta_T [CADC LSB] at CapMem 1022 (linear)
DELTA_T_LSB_AT_MAX = 0.06 * CADC_LSB_PER_V
#: AdEx adaptation cells: a [1/us] and b [CADC LSB/us per spike] at CapMem 1022 (linear),
#: tau_w [us] at CapMem 0 and at 1022 (log domain)
ADAPT_A_PER_US_AT_MAX = 1.0
ADAPT_B_LSB_PER_US_AT_MAX = 20.0
TAU_W_AT_0_US, TAU_W_AT_MAX_US = 2000.0, 1.0


def nominal_tau_capmem(tau_us, tau_at_0_us: float, tau_at_max_us: float) -> np.ndarray:
    """CapMem value (float, not rounded or clipped) of a bias cell that sets a time constant
    exponentially, ``tau = tau_0 (tau_max / tau_0) ** (c / 1022)``, nominal transfer.

    >>> round(float(nominal_tau_capmem(44.72, TAU_W_AT_0_US, TAU_W_AT_MAX_US)), 1)  # sqrt(2000) us
    511.0
    """
    tau = np.asarray(tau_us, dtype=float)
    return CAPMEM_MAX * np.log(tau_at_0_us / tau) / np.log(tau_at_0_us / tau_at_max_us)


def adaptation_to_per_us(a_ns, cm_nf, speedup: float = DEFAULT_SPEEDUP):
    """AdEx subthreshold adaptation ``a`` [nS] on ``cm`` [nF] -> ``a / C`` [1/us hardware].

    >>> float(adaptation_to_per_us(4.0, 0.281))  # a/C = 14.2 1/s biological
    0.014234875444839857
    """
    return bio_hz_to_hw_per_us(np.asarray(a_ns, dtype=float) / np.asarray(cm_nf, dtype=float), speedup)


def conductance_to_lsb_per_us(cm_nf, speedup: float = DEFAULT_SPEEDUP):
    """Membrane slope [CADC LSB/us] of a COBA weight of 1 uS on ``cm`` [nF] at the reference
    driving force (a conductance jump ``g / cm`` [1/ms] times :data:`COBA_REFERENCE_LSB`).

    >>> float(conductance_to_lsb_per_us(1.0))  # 1 uS / 1 nF = 1/ms = 1/us hardware
    64.0
    """
    return bio_hz_to_hw_per_us(1000.0 / np.asarray(cm_nf, dtype=float), speedup) * COBA_REFERENCE_LSB


# --- weights ------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class QuantisedWeights:
    """Biological weights as integer weight steps.

    Attributes
    ----------
    steps : ndarray of int64
        ``|w|`` in weight steps, >= 0 (may exceed 63: split over rows).
    inhibitory : ndarray of bool
        Where the weight was negative (inhibitory rows).
    scale : float
        Steps per model unit [steps/nA or steps/uS].
    max_relative_error : float
        Worst ``|steps / scale - |w|| / |w|`` over the non-zero weights (0 if none).
    """

    steps: np.ndarray
    inhibitory: np.ndarray
    scale: float
    max_relative_error: float

    @property
    def rows(self) -> np.ndarray:
        """Synapse rows each weight occupies (at least 1)."""
        return rows_needed(self.steps)


def weight_scale(max_abs_weight: float, max_steps: int = WEIGHT_MAX) -> float:
    """Scale [steps per model unit] that maps ``max_abs_weight`` to ``max_steps`` steps.

    >>> weight_scale(0.5)  # 0.5 nA -> 63 steps
    126.0
    """
    w = float(max_abs_weight)
    if not np.isfinite(w) or w <= 0:
        raise ParameterRangeError(
            f"max_abs_weight = {max_abs_weight}: give the largest |weight| [nA or uS], a finite value > 0."
        )
    if int(max_steps) < 1:
        raise ParameterRangeError(f"max_steps = {max_steps}: allowed >= 1 weight steps.")
    return int(max_steps) / w


def quantise_weights(weights, scale: float | None = None, max_steps: int = WEIGHT_MAX) -> QuantisedWeights:
    """Biological weights [nA or uS] -> integer steps.

    Parameters
    ----------
    weights : array_like of float
        Signed model weights [nA (current-based) or uS (conductance-based)]; negative
        values are inhibitory.
    scale : float, optional
        Steps per model unit [steps/nA or steps/uS]. Default: the largest ``|w|`` gets
        ``max_steps`` steps (:func:`weight_scale`).
    max_steps : int
        Steps of the largest weight when ``scale`` is not given (63: one row each; 126:
        finer resolution, two rows for the largest weights).

    Examples
    --------
    >>> q = quantise_weights([0.5, -0.25, 1.0], scale=63.0)
    >>> q.steps.tolist(), q.inhibitory.tolist(), q.rows.tolist()
    ([32, 16, 63], [False, True, False], [1, 1, 1])
    >>> round(q.max_relative_error, 4)
    0.0159
    """
    w = np.asarray(weights, dtype=float)
    if not np.all(np.isfinite(w)):
        raise ParameterRangeError("Weights must be finite numbers [nA or uS]; got NaN or infinity.")
    nonzero = w != 0
    if scale is None:
        scale = weight_scale(np.abs(w).max(), max_steps) if nonzero.any() else 1.0
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ParameterRangeError(f"scale = {scale}: allowed a finite value > 0 [steps per nA or uS].")
    steps = np.rint(np.abs(w) * scale).astype(np.int64)
    err = np.abs(steps / scale - np.abs(w))[nonzero] / np.abs(w[nonzero])
    return QuantisedWeights(
        steps=steps,
        inhibitory=w < 0,
        scale=scale,
        max_relative_error=float(err.max()) if err.size else 0.0,
    )


def steps_to_weight(steps, scale: float, inhibitory=False):
    """Integer steps -> model weights [nA or uS], negative where ``inhibitory``.

    >>> steps_to_weight([63, 10], 126.0, inhibitory=[False, True]).tolist()
    [0.5, -0.07936507936507936]
    """
    w = np.asarray(steps, dtype=float) / float(scale)
    return np.where(np.asarray(inhibitory, dtype=bool), -w, w)


def rows_needed(steps):
    """Synapse rows a weight of ``steps`` occupies: ``max(1, ceil(steps / 63))``.

    >>> rows_needed([0, 63, 64, 123, 190]).tolist()
    [1, 1, 2, 2, 4]
    """
    s = np.asarray(steps, dtype=np.int64)
    return np.maximum(1, -(-s // WEIGHT_MAX))


def split_steps(steps, n_rows=None) -> np.ndarray:
    """Split weights [steps] over synapse rows: full rows of 63 first, then the rest.

    Returns shape ``(len(steps), n_rows)``; ``n_rows`` defaults to the largest
    :func:`rows_needed`.

    >>> split_steps([123, 5]).tolist()
    [[63, 60], [5, 0]]
    """
    s = np.asarray(steps, dtype=np.int64).reshape(-1)
    k = int(rows_needed(s).max()) if n_rows is None else int(n_rows)
    if k < 1 or (s.size and np.any(s > k * WEIGHT_MAX)):
        raise ParameterRangeError(
            f"Weights up to {int(s.max()) if s.size else 0} steps do not fit {k} synapse row(s) of "
            f"{WEIGHT_MAX} steps each."
        )
    return np.clip(s[:, None] - WEIGHT_MAX * np.arange(k)[None, :], 0, WEIGHT_MAX)


# --- plasticity: correlation sensors and driver short-term plasticity ------------------
# Nominal design transfers of the per-hemisphere sensor cells and the per-driver STP cells
# (cysim.constants): exact on the ideal chip; on a realistic one every synapse (sensors,
# 10 % log-normal) and every driver (STP: 5 % on U, 10 % on the time constants) deviates,
# and nothing here calibrates that.
from cysim.constants import (  # noqa: E402
    CORR_AMP_MAX_LSB,
    CORR_MAX,
    CORR_TAU_MAX_US,
    CORR_TAU_MIN_US,
    STP_TAU_MAX_US,
    STP_TAU_MIN_US,
)


def _log_capmem(tau_us, tau_max, tau_min, what: str) -> np.ndarray:
    tau = np.asarray(tau_us, dtype=float)
    if (
        not np.all(np.isfinite(tau))
        or np.any(tau < tau_min * (1 - 1e-9))
        or np.any(tau > tau_max * (1 + 1e-9))
    ):
        bad = tau[~np.isfinite(tau) | (tau < tau_min * (1 - 1e-9)) | (tau > tau_max * (1 + 1e-9))].flat[0]
        raise ParameterRangeError(
            f"{what} = {bad:g} us (hardware time) is out of range: allowed {tau_min:g}..{tau_max:g} us "
            f"({tau_min:g}..{tau_max:g} ms at speedup 1000). Choose a time constant inside."
        )
    c = CAPMEM_MAX * np.log(np.clip(tau, tau_min, tau_max) / tau_max) / np.log(tau_min / tau_max)
    return np.clip(np.rint(c), 0, CAPMEM_MAX).astype(np.int64)


def corr_tau_capmem(tau_us) -> np.ndarray:
    """CapMem value of a correlation-sensor time constant [us hardware], nominal transfer
    ``tau = 200 us * (1/200) ** (c / 1022)``.

    >>> corr_tau_capmem(20.0).tolist()
    444
    """
    return _log_capmem(tau_us, CORR_TAU_MAX_US, CORR_TAU_MIN_US, "correlation sensor time constant")


def corr_tau_us(capmem) -> np.ndarray:
    """Nominal correlation-sensor time constant [us hardware] of a CapMem value."""
    c = np.asarray(capmem, dtype=float)
    return CORR_TAU_MAX_US * (CORR_TAU_MIN_US / CORR_TAU_MAX_US) ** (c / CAPMEM_MAX)


def corr_amp_capmem(eta_lsb) -> np.ndarray:
    """CapMem value of a correlation-sensor amplitude [sensor LSB per pair at zero delay],
    nominal transfer ``eta = 255 LSB * c / 1022``.

    >>> corr_amp_capmem(32.0).tolist()
    128
    """
    eta = np.asarray(eta_lsb, dtype=float)
    if not np.all(np.isfinite(eta)) or np.any(eta <= 0) or np.any(eta > CORR_AMP_MAX_LSB):
        raise ParameterRangeError(
            f"correlation sensor amplitude = {eta.flat[0]:g} LSB per pair is out of range: allowed "
            f"0..{CORR_AMP_MAX_LSB:g} LSB (the 8-bit sensor saturates at {CORR_MAX})."
        )
    return np.clip(np.rint(eta / CORR_AMP_MAX_LSB * CAPMEM_MAX), 1, CAPMEM_MAX).astype(np.int64)


def corr_amp_lsb(capmem) -> np.ndarray:
    """Nominal correlation-sensor amplitude [LSB per pair at zero delay] of a CapMem value."""
    return CORR_AMP_MAX_LSB * np.asarray(capmem, dtype=float) / CAPMEM_MAX


def stp_utilization_capmem(u) -> np.ndarray:
    """CapMem value of the STP utilisation ``U`` (0..1), nominal transfer ``U = c / 1022``.

    >>> stp_utilization_capmem(0.5).tolist()
    511
    """
    u = np.asarray(u, dtype=float)
    if not np.all(np.isfinite(u)) or np.any(u < 0) or np.any(u > 1):
        raise ParameterRangeError(f"short-term plasticity U = {u.flat[0]:g} is out of range: allowed 0..1.")
    return np.rint(u * CAPMEM_MAX).astype(np.int64)


def stp_utilization(capmem) -> np.ndarray:
    """Nominal STP utilisation of a CapMem value."""
    return np.asarray(capmem, dtype=float) / CAPMEM_MAX


def stp_tau_capmem(tau_us) -> np.ndarray:
    """CapMem value of an STP time constant [us hardware], nominal transfer
    ``tau = 1000 us * (1/1000) ** (c / 1022)``.

    >>> stp_tau_capmem(100.0).tolist()
    341
    """
    return _log_capmem(tau_us, STP_TAU_MAX_US, STP_TAU_MIN_US, "short-term plasticity time constant")


def stp_tau_us(capmem) -> np.ndarray:
    """Nominal STP time constant [us hardware] of a CapMem value."""
    c = np.asarray(capmem, dtype=float)
    return STP_TAU_MAX_US * (STP_TAU_MIN_US / STP_TAU_MAX_US) ** (c / CAPMEM_MAX)


def potential_delta_capmem(dv_mv, vmap: VoltageMap = DEFAULT_VOLTAGE_MAP) -> np.ndarray:
    """CapMem steps (float) of a change of a voltage cell (threshold, leak, reset) by
    ``dv_mv`` [mV], nominal transfer (exact on the ideal chip; a realistic circuit's gain
    deviates by a few percent).

    >>> float(potential_delta_capmem(1.0))  # 1 mV = 4 LSB = 16 CapMem steps
    15.984375
    """
    return vmap.delta_to_lsb(dv_mv) * CAPMEM_PER_LSB


__all__ = [
    "corr_amp_capmem",
    "corr_amp_lsb",
    "corr_tau_capmem",
    "corr_tau_us",
    "potential_delta_capmem",
    "stp_tau_capmem",
    "stp_tau_us",
    "stp_utilization",
    "stp_utilization_capmem",
    "BIAS_LSB_PER_US_AT_MAX",
    "CAPMEM_PER_LSB",
    "COBA_REFERENCE_LSB",
    "COBA_REFERENCE_V",
    "SYN_GAIN_LSB_PER_US_AT_MAX",
    "TAU_MEM_AT_0_US",
    "TAU_MEM_AT_MAX_US",
    "DELTA_T_LSB_AT_MAX",
    "ADAPT_A_PER_US_AT_MAX",
    "ADAPT_B_LSB_PER_US_AT_MAX",
    "TAU_W_AT_0_US",
    "TAU_W_AT_MAX_US",
    "nominal_tau_capmem",
    "adaptation_to_per_us",
    "conductance_to_lsb_per_us",
    "nominal_bias_capmem",
    "nominal_potential_capmem",
    "nominal_syn_gain_capmem",
    "DEFAULT_SPEEDUP",
    "DEFAULT_VOLTAGE_MAP",
    "DRIVERS_PER_PADI_BUS",
    "N_LABELS",
    "N_ROW_SELECTS",
    "ROWS_PER_PADI_BUS",
    "QuantisedWeights",
    "VoltageMap",
    "bg_period_cycles",
    "bio_hz_to_hw_per_us",
    "bio_ms_to_hw_us",
    "hw_us_to_bio_ms",
    "lsb_to_mv",
    "lsb_to_volt",
    "mv_to_lsb",
    "quantise_weights",
    "rows_needed",
    "split_steps",
    "steps_to_weight",
    "weight_scale",
    "ADDRESS_BITS",
    "ADDRESS_MAX",
    "BG_CLOCK_US",
    "BG_OFF",
    "BG_POISSON",
    "BG_REGULAR",
    "BG_PERIOD_MAX_CYCLES",
    "CAPMEM_FIELDS",
    "CAPMEM_MAX",
    "CADC_LSB_PER_V",
    "CADC_MAX",
    "CADC_PERIOD_MIN_US",
    "CADC_RELIABLE_RANGE_LSB",
    "EVENT_LABEL_MAX",
    "FPGA_TICK_US",
    "LABEL_MAX",
    "LEAK_RANGE_LSB",
    "MADC_LSB_PER_V",
    "MADC_MAX",
    "N_BACKGROUND_GENERATORS",
    "N_BUSES",
    "N_CIRCUITS",
    "N_COLUMNS",
    "N_DRIVERS",
    "N_HEMISPHERES",
    "N_PADI_BUSES",
    "N_ROWS",
    "REFRACTORY_RANGE_US",
    "RESET_RANGE_LSB",
    "ROUTING_LATENCY_US",
    "ROW_EXC",
    "ROW_INH",
    "ROW_OFF",
    "ROW_SELECT_MAX",
    "ROWS_PER_DRIVER",
    "SWITCH_FIELDS",
    "TAU_MEM_RANGE_US",
    "TAU_SYN_RANGE_US",
    "THRESHOLD_RANGE_LSB",
    "V_RAIL_V",
    "WEIGHT_MAX",
    "circuit_of",
    "event_label",
]


# --- torch bridge: potential units (pu) <-> CADC LSB ------------------------------------
@dataclass(frozen=True)
class PotentialUnitMap:
    """The torch bridge's potential units on the chip: ``lsb = rest_lsb + (v - v_leak) * lsb_per_pu``.

    ``snn`` models speak "pu" (leak 0, threshold 1 in training) and pu/us for currents and
    weights. LIF populations rest low in the CADC range with 50 LSB per pu; LI read-out
    populations (no threshold) rest in the middle with 6 LSB per pu, so that their traces
    can swing by about +-21 pu.

    >>> m = PU_MAPS["LIF"]
    >>> float(m.to_lsb(1.0)), float(m.to_pu(120.0))
    (120.0, 1.0)
    """

    lsb_per_pu: float
    rest_lsb: float

    def to_lsb(self, v_pu, v_leak_pu=0.0):
        """Potential [pu] -> CADC [LSB]."""
        return self.rest_lsb + (np.asarray(v_pu, dtype=float) - v_leak_pu) * self.lsb_per_pu

    def to_pu(self, lsb, rest_lsb=None, v_leak_pu=0.0):
        """CADC [LSB] -> potential [pu]; ``rest_lsb`` (e.g. measured per neuron) defaults to
        the nominal resting level."""
        rest = self.rest_lsb if rest_lsb is None else rest_lsb
        return (np.asarray(lsb, dtype=float) - rest) / self.lsb_per_pu + v_leak_pu

    def slope_to_lsb(self, pu_per_us):
        """Current or weight [pu/us] -> membrane slope [CADC LSB/us]."""
        return np.asarray(pu_per_us, dtype=float) * self.lsb_per_pu


PU_MAPS = {"LIF": PotentialUnitMap(50.0, 70.0), "LI": PotentialUnitMap(6.0, 127.0)}
