"""Calibrate the AdEx terms of every circuit (exponential term and adaptation), by measurement.

Runs on top of a LIF calibration (:func:`.lif.calibrate_lif`), for the circuits with AdEx
targets, all of them at once. Every quantity is found from spike times and CADC samples
only; each measurement configuration starts from the calibrated LIF cells of the circuit
and moves potentials and time constants with the nominal transfers, then measures what it
needs (leak, reset, ``tau_mem``, refractory time) instead of trusting those transfers.

**Exponential term** (``v_exp_lsb`` = ``V_T``, ``delta_t_lsb`` = ``Delta_T``; adaptation
off). A circuit fires on its own iff its leak lies above the rheobase ``V_T - Delta_T``;
its inter-spike interval is then

    ISI = t_ref + tau_m * integral_{V_reset}^{V_spike} dV / (E_L - V + Delta_T exp((V - V_T) / Delta_T))

The mean ISI is measured at seven leak potentials from half a ``Delta_T`` to 45 LSB above
the expected rheobase (the leak potentials from a straight line through readings with
spiking and the exponential term off, the reset clamped and measured, ``tau_m`` and
``t_ref`` from sawtooth runs), and ``(V_T, Delta_T)`` are fitted per circuit (grid start,
Levenberg-Marquardt; the integral is tabulated in ``(E_L - V_T) / Delta_T`` and
``(V - V_T) / Delta_T``), each level weighted by the variance of its mean ISI. The emulator
integrates the exponential term to first order in its time step (exponential Euler); at
the default step of 0.1 us this lengthens every interval by about 0.3 us, which would bias
``Delta_T`` by +10 %. These runs therefore use a step of 0.02 us (``_ISI_DT_US``) and are
repeated at 0.04 us: the difference, its median over the circuits, removes the rest
(Richardson extrapolation). A first, coarse scan at the chip's own step locates ``V_T``
and ``Delta_T`` at the nominal settings; two precise sets then give each circuit's offset
of ``V_T`` (``v_exp`` linear with ``hardware.CAPMEM_PER_LSB``) and gain of ``Delta_T``
(proportional to ``i_exp``), averaged over the sets.

**Adaptation** (``adapt_a`` = ``a``, ``adapt_b`` = ``b``, ``tau_w_us`` = ``tau_w``; the
exponential term off):

- ``a``: spiking off, a constant bias current ``I``; the membrane settles at
  ``E_L + I tau_m`` without and at ``E_L + I tau_m / (1 + a tau_m)`` with adaptation, so
  ``a = (V_off - V_on) / ((V_on - E_L) tau_m)``. ``tau_m`` is set to about ``1 / a`` for the
  measurement (and measured). Secant search of ``i_adapt_a`` (linear).
- ``b`` and ``tau_w``: ``a = 0``, the reset at the leak; eight strong, fast synaptic kicks
  3 us apart make the circuit fire eight times. After the last refractory period ``t_r`` the
  membrane follows ``V - E_L = -b S kappa(s) + (V_reset - E_L) exp(-s / tau_m)`` with
  ``kappa(s) = tau_m tau_w / (tau_w - tau_m) (exp(-s / tau_w) - exp(-s / tau_m))`` and
  ``S = sum_i exp(-(t_last + t_r - t_i) / tau_w)`` over the spike times ``t_i`` of the
  trial. ``tau_w`` is fitted per circuit by golden-section search (``b`` by linear least
  squares for each candidate), over CADC samples of many trials whose kicks are shifted
  against the sampling grid. ``tau_m`` of the measurement is chosen near ``tau_w`` or
  smaller, so that the after-hyperpolarisation is about 60 LSB deep. Joint secant searches
  of ``i_adapt_tau`` (log domain) and ``i_adapt_b`` (linear).

``a = 0`` and ``b = 0`` are written as CapMem 0 (the cells are linear; the check measures
``a`` there, ``b = 0`` is not measured). Every quantity is then measured again in fresh runs
with new noise; these are the reported residuals (``V_T`` in LSB, the others relative;
for ``a = 0`` the measured ``a`` itself).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from cysim import ROW_EXC, ChipConfig, Stimulus, VirtualChip, event_label
from cysim import constants as C

from .. import hardware as hw
from ..errors import CalibrationError
from . import measure as M
from .search import Search
from .targets import UNITS, _fmt_idx

N = C.N_CIRCUITS
CPL = hw.CAPMEM_PER_LSB
_KAPPA_MEM = np.log(hw.TAU_MEM_AT_0_US / hw.TAU_MEM_AT_MAX_US) / C.CAPMEM_MAX

#: AdEx CapMem cells and the target each one is calibrated to
ADEX_CELLS = {
    "v_exp": "v_exp_lsb",
    "i_exp": "delta_t_lsb",
    "i_adapt_a": "adapt_a",
    "i_adapt_b": "adapt_b",
    "i_adapt_tau": "tau_w_us",
}

# --- exponential term -------------------------------------------------------------------
#: integration step of the inter-spike-interval runs [us] (see the module docstring)
_ISI_DT_US = 0.02
#: trials of every inter-spike-interval run at that step
_ISI_TRIALS = 4
#: membrane time constant of the inter-spike-interval runs [us] (nominal)
_ISI_TAU_US = 10.0
#: leak levels above the expected rheobase, in units of Delta_T (at most _LEVEL_MAX_LSB)
_LEVELS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
_LEVEL_MAX_LSB = 45.0
_LEAK_MAX_LSB = 210.0  # the top of the CADC's reliable range
#: leak levels of the coarse scan around the nominal rheobase [LSB]
_COARSE_LEVELS = (-16.0, -10.0, -5.0, -1.0, 3.0, 8.0, 14.0, 22.0, 32.0, 45.0)
#: reset below V_T and spike potential above it during the measurement [LSB]
_RESET_BELOW_VT = 25.0
_SPIKE_ABOVE_VT = 60.0
#: precise measurement sets before the check
_EXP_SETS = 2

# --- adaptation -------------------------------------------------------------------------
#: depth of the after-hyperpolarisation aimed at [LSB], leak during it [LSB]
_AHP_LSB = 60.0
_AHP_LEAK_LSB = 180.0
_KICK_COUNTS = (1, 2, 4, 8)  # kicks per circuit (one synapse label each)
_TAU_W_GROUPS = (40.0, 160.0)  # tau_w [us] separating the measurement groups
_KICK_SPACING_US = 3.0
_KICK_REFRACTORY_US = 2.0
_KICK_LABEL = 11
#: b used to measure tau_w where the b target is 0 [LSB/us]
_B_PROBE = 1.0
#: chip time per AHP run (all trials) [us]
_AHP_BUDGET_US = 24000.0
#: membrane shift aimed at in the a measurement [LSB], leak during it [LSB]
_A_SHIFT_LSB = 100.0
_A_LEAK_LSB = 60.0
_A_TAU_W_US = 3.0  # adaptation time constant during the a measurement (nominal)
#: reset, threshold and leak [LSB] of the sawtooths that measure tau_mem and t_ref
_SAW_LSB = (45.0, 150.0, 185.0)


class _FineStep:
    """The chip, run with another integration step (the measurement functions of
    :mod:`.measure` call ``chip.run`` without one)."""

    def __init__(self, chip: VirtualChip, dt_us: float):
        self.chip = chip
        self.dt_us = float(dt_us)
        self.noise = chip.noise

    def run(self, config, stimulus=None, duration_us=100.0, trials=1, **kwargs):
        return self.chip.run(
            config, stimulus, duration_us=duration_us, trials=trials, dt_us=self.dt_us, **kwargs
        )


# --- configuration helpers ----------------------------------------------------------------
def _ref_config(base, on) -> ChipConfig:
    """The calibrated LIF configuration, synaptic input off, every AdEx term, the bias current
    and spiking off (the circuits ``on`` are switched on by each measurement)."""
    cfg = base.apply(ChipConfig())
    M.clear_synaptic_input(cfg)
    for switch in ("enable_spiking", "enable_exponential", "enable_adaptation", "enable_bias_current"):
        setattr(cfg, switch, False)
    cfg.bias_current_sink = False
    return cfg


def _set_potential(cfg, ref, cell, ref_lsb, want_lsb, on) -> None:
    """Move the voltage cell ``cell`` of the circuits ``on`` from its calibrated value
    (``ref``, which gives ``ref_lsb``) to about ``want_lsb`` (nominal transfer)."""
    c = np.asarray(getattr(ref, cell), dtype=float) + (np.asarray(want_lsb) - ref_lsb) * CPL
    new = np.where(
        on, np.clip(np.rint(np.where(np.isfinite(c), c, 0.0)), 0, C.CAPMEM_MAX), getattr(cfg, cell)
    )
    setattr(cfg, cell, new.astype(np.int64))


def _set_tau_mem(cfg, ref, tau_ref, tau_want, on) -> None:
    """Move ``i_bias_leak`` of the circuits ``on`` from the calibrated setting (``ref``, which
    gives ``tau_ref`` [us]) to about ``tau_want`` [us] (nominal log transfer)."""
    c = np.asarray(ref.i_bias_leak, dtype=float) + np.log(tau_ref / np.asarray(tau_want)) / _KAPPA_MEM
    c = np.where(np.isfinite(c), c, ref.i_bias_leak)
    cfg.i_bias_leak = np.where(on, np.clip(np.rint(c), 0, C.CAPMEM_MAX), cfg.i_bias_leak).astype(np.int64)


def _rest(chip, cfg, on, duration_us=120.0, trials=4) -> np.ndarray:
    """Leak potential [LSB] of ``cfg``: spiking, AdEx terms and bias current off, and a fast
    membrane (about 1 us; the leak potential does not depend on it) so that the average
    over the noise converges quickly."""
    c = cfg.copy()
    c.enable_spiking = False
    c.enable_exponential = False
    c.enable_adaptation = False
    c.enable_bias_current = False
    fast = np.rint(hw.nominal_tau_capmem(1.0, hw.TAU_MEM_AT_0_US, hw.TAU_MEM_AT_MAX_US))
    c.i_bias_leak = np.where(on, fast, c.i_bias_leak).astype(np.int64)
    return M.measure_potential(chip, c, duration_us=duration_us, trials=trials if chip.noise else 1)


def _reset(chip, cfg, on) -> np.ndarray:
    """Reset potential [LSB] of ``cfg``: the circuits ``on`` clamped at it (threshold 0,
    longest refractory time)."""
    c = cfg.copy()
    c.enable_spiking = on
    c.enable_exponential = False
    c.enable_adaptation = False
    c.enable_bias_current = False
    c.v_threshold = np.where(on, 0, c.v_threshold).astype(np.int64)
    c.refractory_time = np.where(on, C.CAPMEM_MAX, c.refractory_time).astype(np.int64)
    return M.measure_potential(chip, c, duration_us=200.0, trials=4 if chip.noise else 1)


def _dithered(chip, cfg, on, measure, cell="v_leak"):
    """``measure(config)`` [LSB per circuit], free of the CADC's rounding on a chip without
    temporal noise: there the reading is repeated with ``cell`` moved by -6..+6 CapMem steps
    (about +-1.5 LSB) and a straight line through the readings is evaluated at the setting
    of ``cfg`` (with noise, the noise dithers the rounding and one reading is used)."""
    if chip.noise:
        return measure(cfg)
    steps = np.array([-6, -3, 0, 3, 6])
    values = []
    for d in steps:
        c = cfg.copy()
        base = np.asarray(getattr(c, cell), dtype=np.int64)
        setattr(c, cell, np.where(on, np.clip(base + d, 0, C.CAPMEM_MAX), base))
        values.append(measure(c))
    values = np.array(values)
    slope = ((steps - steps.mean())[:, None] * (values - values.mean(0))).sum(0) / (
        (steps - steps.mean()) ** 2
    ).sum()
    return values.mean(0) - slope * steps.mean()


def _membrane(chip, cfg, ref, targets, on, tau_expect, trials=6):
    """``tau_mem`` [us] and the effective refractory time [us] of the circuits ``on`` with the
    leak bias and refractory settings of ``cfg``, by the sawtooth of :func:`.measure.measure_sawtooth`
    (reset, threshold and leak at ``_SAW_LSB``, AdEx terms off). ``chip`` may run with a
    finer step (:class:`_FineStep`); the potentials are measured at the chip's own step."""
    base_chip = chip.chip if isinstance(chip, _FineStep) else chip
    c = cfg.copy()
    c.enable_spiking = False
    c.enable_exponential = False
    c.enable_adaptation = False
    c.enable_bias_current = False
    # threshold, leak above it and reset below it in the middle of the CADC range
    _set_potential(c, ref, "v_threshold", targets.threshold_lsb, _SAW_LSB[1], on)
    _set_potential(c, ref, "v_leak", targets.leak_lsb, _SAW_LSB[2], on)
    _set_potential(c, ref, "v_reset", targets.reset_lsb, _SAW_LSB[0], on)
    leak = _dithered(base_chip, c, on, lambda x: _rest(base_chip, x, on, duration_us=200.0))
    reset = _dithered(base_chip, c, on, lambda x: _reset(base_chip, x, on), "v_reset")
    ref_steps = np.asarray(c.refractory_time, dtype=float)
    t_ref = 0.035 * (ref_steps + 1.0)  # nominal refractory clock, only for the run length
    isi = np.where(on, tau_expect * np.log(np.maximum(leak - reset, 2.0) / 35.0) + t_ref, 0.0)
    duration = float(np.clip(20.0 * np.nanmax(isi), 80.0, 3000.0))
    c.enable_spiking = on
    r = M.measure_sawtooth(chip, c, leak, reset, duration_us=duration, trials=trials)
    return np.where(on, r.tau_mem_us, np.nan), np.where(on, r.refractory_us, np.nan)


# --- the interval model of the exponential term -------------------------------------------
_TABLE: dict = {}


def _table():
    """``H(c, x) = integral_{-300}^{x} dx' / (c - x' + exp(x'))`` on a grid of ``u = ln(c + 1)``
    and ``x`` (cumulative trapezoid; fine where the integrand peaks, near ``x = 0``)."""
    if not _TABLE:
        x = np.concatenate(
            [
                np.arange(-300.0, -10.0, 0.25),
                np.arange(-10.0, -2.0, 0.02),
                np.arange(-2.0, 2.0, 0.004),
                np.arange(2.0, 10.0, 0.02),
                np.arange(10.0, 60.001, 0.1),
            ]
        )
        u = np.linspace(np.log(0.005), np.log(2000.0), 600)
        c = np.exp(u) - 1.0
        h = np.empty((u.size, x.size))
        h[:, 0] = 0.0
        dx = np.diff(x)
        ex = np.exp(x)
        for k in range(u.size):  # row by row: the full matrix of integrands is not needed at once
            f = 1.0 / (c[k] - x + ex)
            np.cumsum(0.5 * (f[1:] + f[:-1]) * dx, out=h[k, 1:])
        _TABLE.update(x=x, u=u, h=h)
    return _TABLE["x"], _TABLE["u"], _TABLE["h"]


def _h(c, x):
    xg, ug, h = _table()
    u = np.log(np.maximum(c + 1.0, 1e-300))
    iu = np.clip(np.searchsorted(ug, u) - 1, 0, ug.size - 2)
    fu = np.clip((u - ug[iu]) / (ug[iu + 1] - ug[iu]), 0.0, 1.0)
    x = np.clip(x, xg[0], xg[-1])
    ix = np.clip(np.searchsorted(xg, x) - 1, 0, xg.size - 2)
    fx = (x - xg[ix]) / (xg[ix + 1] - xg[ix])
    lo = (1 - fx) * h[iu, ix] + fx * h[iu, ix + 1]
    hi = (1 - fx) * h[iu + 1, ix] + fx * h[iu + 1, ix + 1]
    return (1 - fu) * lo + fu * hi


def passage_time(leak, v_reset, v_spike, v_t, delta_t) -> np.ndarray:
    """Time [in units of ``tau_m``] from ``v_reset`` to ``v_spike`` of a membrane with leak
    ``leak``, exponential threshold ``v_t`` and slope ``delta_t`` (all in the same units);
    infinite where the circuit does not fire on its own (leak at or below the rheobase
    ``v_t - delta_t``).

    >>> round(float(passage_time(100.0, 60.0, 200.0, 100.0, 2.0)), 3)  # quadrature: 5.1221
    5.122
    """
    c = (np.asarray(leak, dtype=float) - v_t) / delta_t
    with np.errstate(invalid="ignore", divide="ignore"):
        out = _h(c, (np.asarray(v_spike) - v_t) / delta_t) - _h(c, (np.asarray(v_reset) - v_t) / delta_t)
    return np.where(c > -1.0 + 0.005, out, np.inf)


def fit_exponential(leak, isi, var, v_reset, v_spike, tau_m, t_ref, v_t0, delta_t0, span=(20.0, 1.2)):
    """``(V_T, Delta_T)`` per circuit from mean inter-spike intervals.

    Parameters
    ----------
    leak, isi, var : arrays ``(levels, circuits)``: leak potential [LSB], mean ISI [us] (NaN:
        no regular firing) and the variance of that mean [us^2]
    v_reset, v_spike, tau_m, t_ref : per circuit [LSB, LSB, us, us]
    v_t0, delta_t0 : start values per circuit [LSB]
    span : half-widths of the start grid in V_T [LSB] and in ln(Delta_T)

    Returns ``(v_t, delta_t)``, NaN where fewer than three levels fired.
    """
    ok = np.isfinite(isi) & (isi > t_ref[None, :]) & np.isfinite(leak) & (var > 0)
    y = np.where(ok, isi, 0.0)
    w = np.where(ok, 1.0 / np.where(ok, var, 1.0), 0.0)

    def model(vt, ldt):
        return t_ref + tau_m * passage_time(leak, v_reset, v_spike, vt, np.exp(ldt))

    def cost(vt, ldt):
        m = model(vt, ldt)
        with np.errstate(invalid="ignore", over="ignore"):
            r = np.where(ok, np.where(np.isfinite(m), (y - m) ** 2 * w, np.inf), 0.0)
        return r.sum(0)

    # start: the best point of a grid around the start values (steps of 1 LSB and 10 %)
    best = np.full(v_t0.shape, np.inf)
    vt, ldt = v_t0.astype(float).copy(), np.log(delta_t0)
    for dv in np.linspace(-span[0], span[0], int(round(span[0])) + 1):
        for dl in np.linspace(-span[1], span[1], int(round(10 * span[1])) + 1):
            c = cost(v_t0 + dv, np.log(delta_t0) + dl)
            better = c < best
            best = np.where(better, c, best)
            vt = np.where(better, v_t0 + dv, vt)
            ldt = np.where(better, np.log(delta_t0) + dl, ldt)
    # Levenberg-Marquardt, all circuits at once
    lam = np.full(v_t0.shape, 1e-3)
    sw = np.sqrt(w)
    for _ in range(25):
        m0 = model(vt, ldt)
        with np.errstate(invalid="ignore", over="ignore"):
            jv = (model(vt + 1e-3, ldt) - m0) / 1e-3
            jl = (model(vt, ldt + 1e-4) - m0) / 1e-4
            jv, jl = (np.nan_to_num(np.where(ok, j * sw, 0.0)) for j in (jv, jl))
            r = np.nan_to_num(np.where(ok, (y - m0) * sw, 0.0))
        a11, a12, a22 = (jv * jv).sum(0), (jv * jl).sum(0), (jl * jl).sum(0)
        g1, g2 = (jv * r).sum(0), (jl * r).sum(0)
        b11, b22 = a11 * (1 + lam) + 1e-12, a22 * (1 + lam) + 1e-12
        det = b11 * b22 - a12 * a12
        with np.errstate(invalid="ignore", divide="ignore"):
            s1 = (b22 * g1 - a12 * g2) / det
            s2 = (b11 * g2 - a12 * g1) / det
        s1, s2 = np.nan_to_num(s1), np.nan_to_num(s2)
        c_new = cost(vt + s1, ldt + s2)
        better = c_new < best
        vt, ldt = np.where(better, vt + s1, vt), np.where(better, ldt + s2, ldt)
        best = np.where(better, c_new, best)
        lam = np.where(better, lam * 0.3, lam * 10.0)
    bad = (ok.sum(0) < 3) | ~np.isfinite(best)
    return np.where(bad, np.nan, vt), np.where(bad, np.nan, np.exp(ldt))


def _leak_line(points, min_spread_lsb=10.0):
    """Straight line ``leak = ym + gain (setting - xm)`` per circuit through ``(setting,
    measured leak)`` pairs; ``use`` where there are at least four readings spread by at least
    ``min_spread_lsb`` (standard deviation) and the gain is positive."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points])
    ok = np.isfinite(y)
    n = ok.sum(0)
    xm = np.where(ok, x, 0.0).sum(0) / np.maximum(n, 1)
    ym = np.where(ok, y, 0.0).sum(0) / np.maximum(n, 1)
    sxx = np.where(ok, (x - xm) ** 2, 0.0).sum(0)
    sxy = np.where(ok, (x - xm) * (y - ym), 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = sxy / sxx
    spread = np.sqrt(sxx / np.maximum(n, 1)) * np.abs(np.nan_to_num(gain))
    use = (n >= 4) & (gain > 0) & (spread >= min_spread_lsb)
    return xm, ym, np.where(use, gain, 0.0), use


def _isi_stats(res):
    """Mean inter-spike interval [us], the variance of that mean [us^2] and the number of
    intervals per circuit, over all trials (the first interval of each trial, which starts
    at the leak rather than at the reset, is skipped)."""
    s1, s2, n = np.zeros(N), np.zeros(N), np.zeros(N)
    for k in range(res.trials):
        circ, t = res.spikes(k)
        if circ.size < 3:
            continue
        order = np.lexsort((t, circ))
        circ, t = circ[order], t[order]
        same = circ[1:] == circ[:-1]
        steady = same & np.r_[False, same[:-1]]
        d = np.diff(t)[steady]
        c = circ[1:][steady]
        np.add.at(s1, c, d)
        np.add.at(s2, c, d * d)
        np.add.at(n, c, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 / n - mean**2, 0.0) * n / np.maximum(n - 1, 1) / n
    return mean, var, n


class _Exponential:
    """Measurements of the exponential term for the circuits ``on``."""

    def __init__(self, chip, base, targets, on):
        self.chip, self.targets, self.on = chip, targets, on
        self.fine = _FineStep(chip, min(_ISI_DT_US, chip.dt_us))
        self.coarser = _FineStep(chip, 2.0 * self.fine.dt_us)
        self.vt = np.where(on, targets.v_exp_lsb, 100.0)
        self.dt = np.where(on, targets.delta_t_lsb, 4.0)
        self.ref = _ref_config(base, on)
        cfg = self.ref.copy()
        tau_base = np.where(
            np.isfinite(base.measured["tau_mem_us"]), base.measured["tau_mem_us"], targets.tau_mem_us
        )
        _set_tau_mem(cfg, self.ref, tau_base, _ISI_TAU_US, on)
        _set_potential(cfg, self.ref, "v_reset", targets.reset_lsb, self.vt - _RESET_BELOW_VT, on)
        v_spike = np.minimum(self.vt + _SPIKE_ABOVE_VT, 235.0)
        _set_potential(cfg, self.ref, "v_threshold", targets.threshold_lsb, v_spike, on)
        self.cfg = cfg
        self.v_spike = v_spike  # nominal: beyond V_T + 7 Delta_T it hardly enters the interval
        self.runs = 0
        self._leak_points = []  # (v_leak setting, measured leak) of every level run

    def leak_setting(self, want_lsb):
        """``v_leak`` for leak potentials ``want_lsb``: from the straight line through the leak
        potentials measured so far (see :func:`_leak_line`), else the nominal transfer from
        the calibrated cell."""
        c = self.ref.copy()
        _set_potential(c, self.ref, "v_leak", self.targets.leak_lsb, want_lsb, self.on)
        setting = np.asarray(c.v_leak, dtype=float)
        if self._leak_points:
            xm, ym, gain, use = _leak_line(self._leak_points)
            with np.errstate(invalid="ignore", divide="ignore"):
                fitted = xm + (want_lsb - ym) / gain
            setting = np.where(use & self.on & np.isfinite(fitted), fitted, setting)
        return np.clip(np.rint(setting), 0, C.CAPMEM_MAX).astype(np.int64)

    def characterise(self):
        """Reset potential, tau_mem and refractory time of the measurement configuration
        (fresh runs each call)."""
        self.v_reset = _dithered(
            self.chip, self.cfg, self.on, lambda c: _reset(self.chip, c, self.on), "v_reset"
        )
        # tau_mem at the chip's own step (exact for the linear membrane; many trials, cheaply),
        # the refractory time at the step of the interval runs (the release falls on a step)
        tau, _ = _membrane(self.chip, self.cfg, self.ref, self.targets, self.on, np.full(N, _ISI_TAU_US), 24)
        _, t_ref = _membrane(self.fine, self.cfg, self.ref, self.targets, self.on, np.full(N, _ISI_TAU_US))
        self.tau = np.where(np.isfinite(tau), tau, _ISI_TAU_US)
        self.t_ref = np.where(np.isfinite(t_ref), t_ref, self.targets.refractory_us)
        self.runs += 8

    def levels(self, settings, offsets, chip, duration_us, trials, coarser=None):
        """Leak potentials [LSB], mean ISIs [us] and their variances [us^2] at the leak
        levels ``offsets`` [LSB, (levels, 512)], measured with ``chip`` (possibly a finer
        step). With ``coarser`` (the chip at twice that step) every level is repeated there
        and the step error is removed (Richardson): ``ISI - median(ISI_coarser - ISI)``, the
        median over the circuits (the error hardly depends on the circuit at a given level in
        units of Delta_T, and the median of 512 circuits is precise)."""
        leak, isi, var, points = [], [], [], []
        for off in offsets:
            c = self.cfg.copy()
            c.v_exp = np.where(self.on, settings["v_exp"], c.v_exp).astype(np.int64)
            c.i_exp = np.where(self.on, settings["i_exp"], c.i_exp).astype(np.int64)
            c.v_leak = np.where(self.on, self.leak_setting(np.minimum(off, _LEAK_MAX_LSB)), c.v_leak).astype(
                np.int64
            )
            leak.append(_dithered(self.chip, c, self.on, lambda x: _rest(self.chip, x, self.on)))
            points.append((np.asarray(c.v_leak), np.where(self.on, leak[-1], np.nan)))
            c.enable_spiking = self.on
            c.enable_exponential = self.on
            duration = float(duration_us(off))
            trials = trials if chip.noise else 1  # (without noise, every trial is the same)
            mean, v, n = _isi_stats(chip.run(c, duration_us=duration, trials=trials))
            enough = (n >= 3) & self.on
            self.runs += 2
            if coarser is not None:  # (one trial suffices for a median over many circuits)
                n_tr = trials if self.on.sum() < 64 else 1
                mean2, _, n2 = _isi_stats(coarser.run(c, duration_us=duration, trials=n_tr))
                both = enough & (n2 >= 3)
                if both.any():
                    mean = mean - float(np.median((mean2 - mean)[both]))
                self.runs += 1
            isi.append(np.where(enough, mean, np.nan))
            # at least the spread of the interval itself over a few intervals (few samples)
            var.append(np.where(enough, np.maximum(v, (0.002 * mean) ** 2), np.nan))
        self._leak_points.extend(points)
        # the leak potentials from the straight line through this set's readings: averages
        # the noise of the readings (and, on a chip without noise, the CADC's rounding)
        xm, ym, gain, use = _leak_line(points)
        leak = np.array(leak)
        line = ym[None, :] + gain[None, :] * (np.array([p[0] for p in points]) - xm[None, :])
        leak = np.where(use[None, :], line, leak)
        return leak, np.array(isi), np.array(var)

    def coarse(self, settings):
        """``(V_T, Delta_T)`` at ``settings`` from a wide scan at the chip's own step (V_T is
        accurate; Delta_T is biased by the step, see the module docstring), and the leak of
        the lowest level that fired (NaN: none fired)."""
        rheo = self.vt - self.dt
        offsets = [rheo + o for o in _COARSE_LEVELS]
        leak, isi, var = self.levels(settings, offsets, self.chip, lambda _: 250.0, 2)
        vt, dt = self._fit(leak, isi, var, self.vt, self.dt, (20.0, 1.2))
        fired = np.isfinite(isi)
        lowest = np.where(fired.any(0), np.where(fired, leak, np.inf).min(0), np.nan)
        return vt, dt, lowest, fired.all(0)

    def precise(self, settings, vt_pred, dt_pred, trials=_ISI_TRIALS):
        """``(V_T, Delta_T)`` at ``settings`` (expected about ``vt_pred``, ``dt_pred``)."""
        rheo = vt_pred - dt_pred
        offsets = [rheo + np.minimum(e * dt_pred, _LEVEL_MAX_LSB) for e in _LEVELS]
        tau = self.tau

        def duration(off):
            isi = self.t_ref + tau * passage_time(off, self.v_reset, self.v_spike, vt_pred, dt_pred)
            isi = isi[self.on & np.isfinite(isi)]
            slow = float(np.percentile(isi, 90)) if isi.size else 50.0
            return np.clip(6.0 * slow, 300.0, 1500.0)

        leak, isi, var = self.levels(settings, offsets, self.fine, duration, trials, coarser=self.coarser)
        return self._fit(leak, isi, var, vt_pred, dt_pred, (6.0, 0.5))

    def _fit(self, leak, isi, var, vt0, dt0, span):
        """:func:`fit_exponential` for the circuits ``on`` (NaN elsewhere)."""
        i = np.flatnonzero(self.on)
        vt, dt = np.full(N, np.nan), np.full(N, np.nan)
        vt[i], dt[i] = fit_exponential(
            leak[:, i],
            isi[:, i],
            var[:, i],
            self.v_reset[i],
            self.v_spike[i],
            self.tau[i],
            self.t_ref[i],
            vt0[i],
            dt0[i],
            span,
        )
        return vt, dt


def _calibrate_exponential(chip, base, targets, on, n_sets=_EXP_SETS):
    ex = _Exponential(chip, base, targets, on)
    vt_t, dt_t = ex.vt, ex.dt
    ex.characterise()
    # coarse scans at the nominal settings; circuits whose rheobase lies outside the scanned
    # leak levels (a large offset of the v_exp cell) are moved towards it and scanned again
    c_v = np.clip(np.rint(vt_t * CPL), 0, C.CAPMEM_MAX)
    c_i = np.clip(np.rint(dt_t / hw.DELTA_T_LSB_AT_MAX * C.CAPMEM_MAX), 1, C.CAPMEM_MAX)
    vt_m, dt_m = np.full(N, np.nan), np.full(N, np.nan)
    m_v, m_i = c_v.copy(), c_i.copy()  # the settings at which vt_m, dt_m were measured
    for _ in range(4):
        vt0, dt0, lowest, all_fired = ex.coarse({"v_exp": c_v, "i_exp": c_i})
        new = on & np.isnan(vt_m) & np.isfinite(vt0) & np.isfinite(dt0)
        vt_m, dt_m = np.where(new, vt0, vt_m), np.where(new, dt0, dt_m)
        m_v, m_i = np.where(new, c_v, m_v), np.where(new, c_i, m_i)
        pending = on & np.isnan(vt_m)
        if not pending.any():
            break
        # rheobase estimate: just below the lowest level that fired; above all levels if none
        rheo = np.where(np.isnan(lowest), vt_t - dt_t + _COARSE_LEVELS[-1] + 15.0, lowest - 2.0)
        rheo = np.where(all_fired, vt_t - dt_t + _COARSE_LEVELS[0] - 10.0, rheo)
        shift = np.clip((vt_t - dt_t) - rheo, -40.0, 40.0) * CPL
        c_v = np.where(pending, np.clip(np.rint(c_v + shift), 0, C.CAPMEM_MAX), c_v)
    # V_T = offset + v_exp / CPL (nominal gain), Delta_T = gain * i_exp: the offset and the
    # gain of every circuit, from the coarse scan and then averaged over the precise sets
    good = on & np.isfinite(vt_m) & np.isfinite(dt_m)
    offset = np.where(good, vt_m - m_v / CPL, 0.0)
    gain = np.where(good, dt_m / m_i, hw.DELTA_T_LSB_AT_MAX / C.CAPMEM_MAX)
    offsets, gains = [], []
    for k in range(n_sets + 1):
        want_v = (vt_t - offset) * CPL
        want_i = dt_t / gain
        new_v = np.clip(np.rint(want_v), 0, C.CAPMEM_MAX)
        new_i = np.clip(np.rint(want_i), 1, C.CAPMEM_MAX)
        pred_v, pred_d = offset + new_v / CPL, gain * new_i
        if k == n_sets:
            break
        vt_p, dt_p = ex.precise({"v_exp": new_v, "i_exp": new_i}, pred_v, pred_d)
        fitted = on & np.isfinite(vt_p) & np.isfinite(dt_p)
        offsets.append(np.where(fitted, vt_p - new_v / CPL, np.nan))
        gains.append(np.where(fitted, dt_p / new_i, np.nan))
        offset = _mean_where_finite(np.array(offsets), offset)
        gain = _mean_where_finite(np.array(gains), gain)
    # unreachable: the wanted setting outside the CapMem range, and the value predicted at
    # the end of the range misses the target
    _raise_if_unreached("v_exp_lsb", on, vt_t, want_v, new_v, pred_v, 2.0)
    _raise_if_unreached("delta_t_lsb", on, dt_t, want_i, new_i, pred_d, 0.05 * dt_t)
    c_v, c_i = new_v, new_i
    # check: fresh characterisation and intervals
    ex.characterise()
    vt_c, dt_c = ex.precise({"v_exp": c_v, "i_exp": c_i}, pred_v, pred_d)
    capmem = {"v_exp": c_v.astype(np.int16), "i_exp": c_i.astype(np.int16)}
    measured = {"v_exp_lsb": np.where(on, vt_c, np.nan), "delta_t_lsb": np.where(on, dt_c, np.nan)}
    residual = {
        "v_exp_lsb": np.where(on, vt_c - vt_t, np.nan),
        "delta_t_lsb": np.where(on, dt_c / dt_t - 1.0, np.nan),
    }
    return capmem, measured, residual, ex.runs


def _mean_where_finite(values, fallback):
    """Mean over axis 0 of the finite entries; ``fallback`` where there is none."""
    ok = np.isfinite(values)
    n = ok.sum(0)
    return np.where(n > 0, np.where(ok, values, 0.0).sum(0) / np.maximum(n, 1), fallback)


def _raise_if_unreached(name, on, target, wanted, setting, reached, tolerance):
    """CalibrationError where the wanted CapMem value lies outside 0..1022 and the value
    reached at the end of the range misses the target by more than ``tolerance``."""
    outside = on & ((wanted < -0.5) | (wanted > C.CAPMEM_MAX + 0.5))
    with np.errstate(invalid="ignore"):
        bad = outside & ~(np.abs(reached - target) <= tolerance)
    if not bad.any():
        return
    circuits = np.flatnonzero(bad)
    tgt, got = target[bad], reached[bad]
    ends = np.where(setting[bad] >= C.CAPMEM_MAX, f"CapMem {C.CAPMEM_MAX}", "CapMem 0")
    raise CalibrationError(
        f"{name}: target {np.nanmin(tgt):.4g}..{np.nanmax(tgt):.4g} {UNITS[name]} cannot be reached on circuit(s) "
        f"{_fmt_idx(circuits)}; the closest setting ({', '.join(sorted(set(ends.tolist())))}) gives "
        f"{np.nanmin(got):.4g}..{np.nanmax(got):.4g} {UNITS[name]} (reachable end). Choose a target inside what "
        "these circuits reach, or leave them out of the calibration."
    )


# --- adaptation: a ----------------------------------------------------------------------------
class _SubthresholdAdaptation:
    """Measurements of ``a`` for the circuits ``on`` (steady state under a bias current)."""

    def __init__(self, chip, base, targets, on):
        self.chip, self.targets, self.on = chip, targets, on
        self.ref = ref = _ref_config(base, on)
        a = np.where(on, targets.adapt_a, 0.0)
        self.tau_aim = np.where(a > 0, np.clip(1.0 / np.where(a > 0, a, 1.0), 2.0, 60.0), 20.0)
        current = np.clip(_A_SHIFT_LSB / self.tau_aim, 2.0, 25.0)
        cfg = ref.copy()
        tau_base = np.where(
            np.isfinite(base.measured["tau_mem_us"]), base.measured["tau_mem_us"], targets.tau_mem_us
        )
        _set_tau_mem(cfg, ref, tau_base, self.tau_aim, on)
        _set_potential(cfg, ref, "v_leak", targets.leak_lsb, _A_LEAK_LSB, on)
        cfg.i_bias_const = np.where(on, hw.nominal_bias_capmem(current), cfg.i_bias_const).astype(np.int64)
        cfg.i_adapt_b = np.where(on, 0, cfg.i_adapt_b).astype(np.int64)
        tau_w = np.rint(hw.nominal_tau_capmem(_A_TAU_W_US, hw.TAU_W_AT_0_US, hw.TAU_W_AT_MAX_US))
        cfg.i_adapt_tau = np.where(on, tau_w, cfg.i_adapt_tau).astype(np.int64)
        self.cfg = cfg
        self.runs = 0

    def characterise(self):
        """tau_mem, leak and the biased membrane without adaptation (fresh runs)."""
        tau, _ = _membrane(self.chip, self.cfg, self.ref, self.targets, self.on, self.tau_aim, trials=16)
        self.tau = np.where(np.isfinite(tau), tau, self.tau_aim)
        tmax = float(np.nanmax(np.where(self.on, self.tau, np.nan)))
        self.settle = 8.0 * max(tmax, 4.0 * _A_TAU_W_US)
        self.window = 500.0
        self.leak = self._potential(bias=False, adapt=False)
        self.v_off = self._potential(bias=True, adapt=False)
        self.runs += 5

    def _potential(self, bias, adapt, setting=None):
        c = self.cfg.copy()
        c.enable_bias_current = self.on & bias
        c.enable_adaptation = self.on & adapt
        if setting is not None:
            c.i_adapt_a = np.where(self.on, setting, c.i_adapt_a).astype(np.int64)

        def measure(config):
            return M.measure_potential(
                self.chip,
                config,
                duration_us=self.settle + self.window,
                trials=4 if self.chip.noise else 1,
                settle_us=self.settle,
            )

        return _dithered(self.chip, c, self.on, measure)

    def measure(self, setting):
        v_on = self._potential(bias=True, adapt=True, setting=setting)
        self.runs += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            a = (self.v_off - v_on) / ((v_on - self.leak) * self.tau)
        ok = self.on & (self.v_off - self.leak > 5.0)
        return np.where(ok, a, np.nan)


def _calibrate_a(chip, base, targets, on, iterations):
    sa = _SubthresholdAdaptation(chip, base, targets, on)
    sa.characterise()
    target = np.where(on & (targets.adapt_a > 0), targets.adapt_a, np.nan)
    nominal = np.nan_to_num(target) / hw.ADAPT_A_PER_US_AT_MAX * C.CAPMEM_MAX
    search = Search("i_adapt_a", target, (nominal * 0.85, nominal * 1.15 + 4), relative=True, tolerance=0.03)
    from .lif import _raise_unreached, _run_search

    if np.isfinite(target).any():
        _run_search([search], lambda s: {"i_adapt_a": sa.measure(s["i_adapt_a"])}, iterations)
        _raise_unreached(search, "adapt_a")
    # the setting the secant predicts for the target (rounded: the CapMem resolution,
    # about 0.001 1/us per step, matters for small a)
    setting = np.where(np.isfinite(target), search.setting_for(target), 0).astype(np.int64)
    sa.characterise()
    measured = np.where(on, sa.measure(setting), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = np.where(on & (targets.adapt_a > 0), measured / targets.adapt_a - 1.0, measured)
    return setting, measured, np.where(on, residual, np.nan), sa.runs


# --- adaptation: b and tau_w ----------------------------------------------------------------
class _SpikeAdaptation:
    """After-hyperpolarisation after a burst of spikes: ``b`` and ``tau_w`` of the circuits ``on``.

    Every circuit gets ``_KICK_COUNTS`` kicks (1, 2, 4 or 8, by its synapse label) and a
    membrane time constant (3..60 us) for an after-hyperpolarisation of about ``_AHP_LSB``;
    circuits are measured in groups of similar ``tau_w`` (``_TAU_W_GROUPS``), each with its
    own run length and CADC period."""

    def __init__(self, chip, base, targets, on):
        self.chip, self.targets, self.on = chip, targets, on
        self.ref = ref = _ref_config(base, on)
        self.tau_w = np.where(on, targets.tau_w_us, 100.0)
        b = np.where(on & (targets.adapt_b > 0), targets.adapt_b, _B_PROBE)
        steps = np.exp(-np.arange(max(_KICK_COUNTS))[:, None] * _KICK_SPACING_US / self.tau_w[None, :])
        acc = {k: steps[:k].sum(0) for k in _KICK_COUNTS}  # accumulated jumps after k kicks
        most = max(_KICK_COUNTS)
        self.tau_aim = np.clip(np.minimum(self.tau_w, _AHP_LSB / (0.63 * b * acc[most])), 3.0, 60.0)
        # as many kicks as keep the after-hyperpolarisation inside the CADC range
        kicks = np.full(N, min(_KICK_COUNTS))
        for k in sorted(_KICK_COUNTS):
            kicks = np.where(0.63 * b * self.tau_aim * acc[k] <= 1.3 * _AHP_LSB, k, kicks)
        self.kicks = kicks
        cfg = ref.copy()
        tau_base = np.where(
            np.isfinite(base.measured["tau_mem_us"]), base.measured["tau_mem_us"], targets.tau_mem_us
        )
        _set_tau_mem(cfg, ref, tau_base, self.tau_aim, on)
        _set_potential(cfg, ref, "v_leak", targets.leak_lsb, _AHP_LEAK_LSB, on)
        _set_potential(cfg, ref, "v_reset", targets.reset_lsb, _AHP_LEAK_LSB, on)
        _set_potential(cfg, ref, "v_threshold", targets.threshold_lsb, _AHP_LEAK_LSB + 25.0, on)
        ref_cell = np.rint(_KICK_REFRACTORY_US / 0.035 - 1.0)  # nominal refractory clock 35 ns
        cfg.refractory_time = np.where(on, ref_cell, cfg.refractory_time).astype(np.int64)
        cfg.i_adapt_a = np.where(on, 0, cfg.i_adapt_a).astype(np.int64)
        # the kicks: one event reaches 64 rows of weight 63 with the fastest, strongest input
        cfg.i_bias_syn_exc = np.where(on, C.CAPMEM_MAX, cfg.i_bias_syn_exc).astype(np.int64)
        cfg.i_syn_gm_exc = np.where(on, C.CAPMEM_MAX, cfg.i_syn_gm_exc).astype(np.int64)
        self.rows = M.synaptic_input_rows(0)
        for h in range(C.N_HEMISPHERES):
            cfg.row_modes[h, self.rows] = ROW_EXC
            cfg.driver_row_select[h, self.rows[::2] // 2] = 0
            cols = kicks[h * C.N_COLUMNS : (h + 1) * C.N_COLUMNS]
            label = np.array([_KICK_LABEL + _KICK_COUNTS.index(k) for k in cols])
            cfg.synapse_labels[h, self.rows, :] = label[None, :]
        self.cfg = cfg
        self.runs = 0

    def characterise(self):
        """Leak, reset, tau_mem and refractory time of the configuration (fresh runs)."""
        self.leak = _dithered(
            self.chip, self.cfg, self.on, lambda c: _rest(self.chip, c, self.on, duration_us=200.0)
        )
        self.v_reset = _dithered(
            self.chip, self.cfg, self.on, lambda c: _reset(self.chip, c, self.on), "v_reset"
        )
        tau, t_ref = _membrane(self.chip, self.cfg, self.ref, self.targets, self.on, self.tau_aim, trials=16)
        self.tau = np.where(np.isfinite(tau), tau, self.tau_aim)
        self.t_ref = np.where(np.isfinite(t_ref), t_ref, _KICK_REFRACTORY_US)
        self.runs += 5

    def measure(self, settings, tau_w_guess):
        """``(b, tau_w)`` at ``settings`` (``i_adapt_b``, ``i_adapt_tau``); ``tau_w_guess``:
        the expected ``tau_w`` [us] (the fit searches within a factor of 5 of it)."""
        b_out, tw_out = np.full(N, np.nan), np.full(N, np.nan)
        edges = (0.0, *_TAU_W_GROUPS, np.inf)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            group = self.on & (self.tau_w >= lo) & (self.tau_w < hi)
            if group.any():
                b, tw = self._measure_group(group, settings, tau_w_guess)
                b_out, tw_out = np.where(group, b, b_out), np.where(group, tw, tw_out)
        return b_out, tw_out

    def _measure_group(self, group, settings, tau_w_guess):
        c = self.cfg.copy()
        c.enable_spiking = group
        c.enable_adaptation = group
        c.i_adapt_b = np.where(group, settings["i_adapt_b"], c.i_adapt_b).astype(np.int64)
        c.i_adapt_tau = np.where(group, settings["i_adapt_tau"], c.i_adapt_tau).astype(np.int64)
        labels = []
        for h in range(C.N_HEMISPHERES):
            cols = group[h * C.N_COLUMNS : (h + 1) * C.N_COLUMNS]
            c.synapse_weights[h, self.rows, :] = np.where(cols, C.WEIGHT_MAX, 0)[None, :]
            if cols.any():
                labels.append(h)
        period = float(np.clip(np.min(self.tau[group]) / 4.0, M.CADC_PERIOD_US, 10.0))
        c.cadc_enable = True
        c.cadc_period_us = period
        lead = max(10.0, 3.0 * period + 2.0)
        window = float(np.clip(4.0 * np.nanmax(tau_w_guess[group]), 40.0, 3200.0))
        burst = max(_KICK_COUNTS) * _KICK_SPACING_US
        duration = lead + period + burst + window
        trials = int(np.clip(round(_AHP_BUDGET_US / duration), 6, 96))
        per_trial = []
        for k in range(trials):
            t0 = np.round((lead + k * period / trials) / self.chip.dt_us) * self.chip.dt_us
            times, labs = [], []
            for i in range(max(_KICK_COUNTS)):
                # kick i reaches the circuits that get more than i kicks
                for j, count in enumerate(_KICK_COUNTS):
                    if count > i:
                        for h in labels:
                            times.append(t0 + i * _KICK_SPACING_US)
                            labs.append(event_label(h * C.N_PADI_BUSES, 0, _KICK_LABEL + j))
            per_trial.append((np.array(times), np.array(labs)))
        res = self.chip.run(c, Stimulus.from_trials(per_trial), duration_us=duration, trials=trials)
        self.runs += 1
        return _fit_ahp(res, group, self.leak, self.v_reset, self.tau, self.t_ref, tau_w_guess)


def _fit_ahp(res, on, leak, v_reset, tau_m, t_ref, tau_w_guess):
    """Fit ``(b, tau_w)`` to the membrane after the last spike of every trial (see the module
    docstring) for the circuits ``on``. NaN where a circuit missed a spike in some trial or
    the fit ran to the edge of its search interval."""
    idx = np.flatnonzero(on)
    n, n_tr = idx.size, res.trials
    local = np.full(N, -1)
    local[idx] = np.arange(n)
    spikes = []
    last = np.full((n_tr, n), np.nan)
    count = np.zeros((n_tr, n))
    for k in range(n_tr):
        circ, t = res.spikes(k)
        keep = local[circ] >= 0
        circ, t = local[circ[keep]], t[keep]
        spikes.append((circ, t))
        np.fmax.at(last[k], circ, t)
        np.add.at(count[k], circ, 1)
    tm, tr = tau_m[idx], t_ref[idx]
    release = last + tr[None, :]  # end of the last refractory period, per trial and circuit
    t_s = res.cadc_times_us
    t0 = np.nanmin(release) if np.isfinite(release).any() else t_s[-1]
    keep = t_s > t0  # samples before every release carry nothing
    t = t_s[keep] - t0
    r = np.where(np.isfinite(release), release - t0, np.inf)  # (trials, n)
    s = t[None, :, None] - r[:, None, :]  # time since the release
    use = s > 0.0
    s = np.where(use, s, 0.0)
    e_m = np.where(use, np.exp(-s / tm[None, None, :]), 0.0)
    y = res.cadc[:, keep][:, :, idx].astype(np.float64) - leak[idx][None, None, :]
    y = np.where(use, y - (v_reset - leak)[idx][None, None, :] * e_m, 0.0)  # known: the reset term
    u = use.astype(np.float64)
    yy = (y * y).sum((0, 1))
    y_em = (y * e_m).sum(1)  # (trials, n)
    em_em = (e_m * e_m).sum(1)
    r_fin = np.where(np.isfinite(r), r, 0.0)

    def accumulated(tw):
        """``S`` per trial and circuit: the jumps of all spikes of the trial, decayed to the
        end of the last refractory period."""
        out = np.zeros((n_tr, n))
        for k, (circ, ts) in enumerate(spikes):
            d = last[k, circ] + tr[circ] - ts
            np.add.at(out[k], circ, np.exp(-d / tw[circ]))
        return out

    def fit(tw):
        """Residual sum of squares and ``b`` for ``tau_w = tw`` per circuit. The basis
        ``-b S kappa(s)``, ``kappa = f (exp(-s / tw) - exp(-s / tm))``, is summed through
        ``exp(-s / tw) = exp(-t / tw) exp(r / tw)`` so that only ``exp(-t / tw)`` (shared by
        the trials) is evaluated per candidate."""
        tw = np.where(np.abs(tw / tm - 1.0) < 1e-5, tm * (1.0 + 1e-5), tw)
        f = tm * tw / (tw - tm)
        e_t = np.exp(-t[:, None] / tw[None, :])  # (samples, n)
        p = np.exp(r_fin / tw[None, :])  # (trials, n)
        acc = accumulated(tw) * f[None, :]
        y_e = np.einsum("jtc,tc->jc", y, e_t)
        u_ee = np.einsum("jtc,tc->jc", u, e_t * e_t)
        em_e = np.einsum("jtc,tc->jc", e_m, e_t)
        by = -(acc * (p * y_e - y_em)).sum(0)
        bb = (acc * acc * (p * p * u_ee - 2.0 * p * em_e + em_em)).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return yy - by * by / bb, by / bb

    # golden-section search in ln(tau_w)
    guess = np.log(tau_w_guess[idx])
    lo, hi = guess - np.log(5.0), guess + np.log(5.0)
    g = (np.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = fit(np.exp(x1))[0], fit(np.exp(x2))[0]
    for _ in range(22):
        left = ~(f2 < f1)  # the minimum lies in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        new = np.where(left, hi - g * (hi - lo), lo + g * (hi - lo))
        fn = fit(np.exp(new))[0]
        x1, x2, f1, f2 = (
            np.where(left, new, x2),
            np.where(left, x1, new),
            np.where(left, fn, f2),
            np.where(left, f1, fn),
        )
    ln_tw = 0.5 * (x1 + x2)
    _, b = fit(np.exp(ln_tw))
    edge = np.abs(ln_tw - guess) > np.log(5.0) - 0.01
    bad = (count == 0).any(0) | (use.sum((0, 1)) < 8) | edge | ~(b > 0)
    b_out, tw_out = np.full(N, np.nan), np.full(N, np.nan)
    b_out[idx] = np.where(bad, np.nan, b)
    tw_out[idx] = np.where(bad, np.nan, np.exp(ln_tw))
    return b_out, tw_out


def _calibrate_b_tau(chip, base, targets, on, iterations):
    from .lif import _raise_unreached, _run_search

    sp = _SpikeAdaptation(chip, base, targets, on)
    sp.characterise()
    b_t = np.where(on & (targets.adapt_b > 0), targets.adapt_b, np.nan)
    tw_t = np.where(on, targets.tau_w_us, np.nan)
    nominal_b = np.nan_to_num(b_t) / hw.ADAPT_B_LSB_PER_US_AT_MAX * C.CAPMEM_MAX
    b_probe = np.rint(_B_PROBE / hw.ADAPT_B_LSB_PER_US_AT_MAX * C.CAPMEM_MAX)
    nominal_tw = hw.nominal_tau_capmem(np.where(on, tw_t, 100.0), hw.TAU_W_AT_0_US, hw.TAU_W_AT_MAX_US)
    s_tau = Search("i_adapt_tau", tw_t, (nominal_tw - 60, nominal_tw + 60), log=True, tolerance=0.03)
    s_b = Search("i_adapt_b", b_t, (nominal_b * 0.85, nominal_b * 1.15 + 4), relative=True, tolerance=0.03)
    tw_aim = np.where(on, tw_t, 100.0)
    kappa_w = np.log(hw.TAU_W_AT_0_US / hw.TAU_W_AT_MAX_US) / C.CAPMEM_MAX

    def measure(settings):
        b_cell = np.where(np.isfinite(b_t), settings["i_adapt_b"], b_probe)
        tw_cell = settings["i_adapt_tau"]
        # expected tau_w at these settings: from the search (nominal before it has a secant)
        expect = s_tau.predict(tw_cell, lambda x: tw_aim * np.exp(-(x - nominal_tw) * kappa_w))
        expect = np.where(np.isfinite(expect) & (expect > 0), expect, tw_aim)
        b, tw = sp.measure({"i_adapt_b": b_cell, "i_adapt_tau": tw_cell}, expect)
        return {"i_adapt_b": b, "i_adapt_tau": tw}

    _run_search([s_tau, s_b], measure, iterations)
    _raise_unreached(s_tau, "tau_w_us")
    _raise_unreached(s_b, "adapt_b")
    tw_cell = np.where(on, s_tau.setting_for(tw_t), s_tau.x).astype(np.int64)
    b_cell = np.where(np.isfinite(b_t), s_b.setting_for(b_t), 0).astype(np.int64)
    # check: fresh characterisation and AHP runs (circuits with b = 0 show tau_w with the probe b)
    sp.characterise()
    b_m, tw_m = sp.measure(
        {"i_adapt_b": np.where(np.isfinite(b_t), b_cell, b_probe), "i_adapt_tau": tw_cell}, tw_aim
    )
    b_m = np.where(np.isfinite(b_t), b_m, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        res_b = b_m / b_t - 1.0
        res_tw = tw_m / tw_t - 1.0
    return (
        b_cell,
        tw_cell,
        {"adapt_b": b_m, "tau_w_us": np.where(on, tw_m, np.nan)},
        {"adapt_b": res_b, "tau_w_us": np.where(on, res_tw, np.nan)},
        sp.runs,
    )


def calibrate_adex(chip: VirtualChip, base, targets, iterations: int = 2):
    """Add the AdEx cells to a LIF calibration ``base`` for the circuits with AdEx targets
    (see the module docstring).

    Parameters
    ----------
    chip : the chip to measure
    base : CalibrationResult of the same targets without the AdEx targets
    targets : CalibrationTargets with ``v_exp_lsb``/``delta_t_lsb`` and/or ``adapt_a``/
        ``adapt_b``/``tau_w_us``
    iterations : secant refinements after the two probes of the adaptation searches

    Returns
    -------
    CalibrationResult
        with ``capmem`` of ``v_exp``, ``i_exp``, ``i_adapt_a``, ``i_adapt_b``,
        ``i_adapt_tau`` (written by ``apply`` only where the family's targets are given),
        and ``measured``/``residual`` of the AdEx targets from the check runs.

    Raises
    ------
    CalibrationError
        if circuits cannot reach their targets.
    """
    t0 = time.perf_counter()
    sel = targets.circuits
    defaults = ChipConfig()
    capmem = dict(base.capmem)
    for cell in ADEX_CELLS:
        capmem[cell] = np.asarray(getattr(defaults, cell)).astype(np.int16)
    measured, residual = dict(base.measured), dict(base.residual)
    for name in ADEX_CELLS.values():
        measured[name] = np.full(N, np.nan)
        residual[name] = np.full(N, np.nan)
    runs = 0
    on_e = sel & np.isfinite(targets.v_exp_lsb)
    if on_e.any():
        cells, m, r, n = _calibrate_exponential(chip, base, targets, on_e)
        for cell, v in cells.items():
            capmem[cell] = np.where(on_e, v, capmem[cell]).astype(np.int16)
        measured.update(m)
        residual.update(r)
        runs += n
    on_a = sel & np.isfinite(targets.tau_w_us)
    if on_a.any():
        a_cell, a_m, a_r, n = _calibrate_a(chip, base, targets, on_a, iterations)
        capmem["i_adapt_a"] = np.where(on_a, a_cell, capmem["i_adapt_a"]).astype(np.int16)
        measured["adapt_a"], residual["adapt_a"] = a_m, a_r
        runs += n
        b_cell, tw_cell, m, r, n = _calibrate_b_tau(chip, base, targets, on_a, iterations)
        capmem["i_adapt_b"] = np.where(on_a, b_cell, capmem["i_adapt_b"]).astype(np.int16)
        capmem["i_adapt_tau"] = np.where(on_a, tw_cell, capmem["i_adapt_tau"]).astype(np.int16)
        measured.update(m)
        residual.update(r)
        runs += n
    return replace(
        base,
        targets=targets,
        capmem=capmem,
        measured=measured,
        residual=residual,
        seconds=base.seconds + time.perf_counter() - t0,
        runs=base.runs + runs,
        from_cache=False,
    )
