"""Calibrate the constant bias current of every circuit, by measurement.

Runs on top of a LIF calibration (:func:`.lif.calibrate_lif`), only for circuits with a
``bias_current`` target [CADC LSB/us]. With spiking off and the bias current on, the
membrane settles at ``V_leak + I tau_mem``; the mean CADC shift against the same circuit
without bias, divided by the measured ``tau_mem``, is the bias current ``I`` (as membrane
slope ``I / C``). To keep that shift inside the CADC's range (about 130 LSB above a leak
lowered to about 50 LSB) and large enough to be measured precisely, every circuit is
measured with the membrane time constant ``tau = 130 LSB / I`` (within 0.5..60 us), whose value is measured by the sawtooth
method of the LIF calibration. A secant search of ``i_bias_const`` (linear in CapMem)
meets the target; a check with fresh runs (new noise, a second ``tau_mem`` measurement)
gives the reported residual.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from cysim import ChipConfig, VirtualChip
from cysim import constants as C

from .. import hardware as hw
from . import measure as M
from .search import Search

#: membrane shift aimed at during the measurement [CADC LSB]
_SHIFT_LSB = 130.0
#: leak potential during the measurement [CADC LSB], nominal (measured as the baseline)
_LEAK_LSB = 50.0
#: nominal design transfer of the leak bias cell: tau_mem [us] at CapMem 0 and 1022
_TAU_MEM_AT_0_US, _TAU_MEM_AT_MAX_US = 150.0, 0.2
_TRIALS = 3


def _measurement_config(base, targets, on, tau_measured):
    """The calibrated configuration, spiking off, leak lowered and tau_mem set for a shift of
    about ``_SHIFT_LSB``; returns it and the aimed-at tau_mem [us]."""
    cfg = base.apply(ChipConfig())
    cfg.enable_spiking = False
    M.clear_synaptic_input(cfg)
    bias = np.where(on, targets.bias_current, 1.0)
    tau_target = np.where(on, targets.tau_mem_us, 10.0)
    tau_now = np.where(np.isfinite(tau_measured), tau_measured, tau_target)
    tau_b = np.clip(_SHIFT_LSB / bias, C.TAU_MEM_RANGE_US[0], C.TAU_MEM_RANGE_US[1])
    kappa = np.log(_TAU_MEM_AT_0_US / _TAU_MEM_AT_MAX_US) / C.CAPMEM_MAX
    leak_cell = np.asarray(cfg.i_bias_leak, dtype=float) + np.log(tau_now / tau_b) / kappa
    cfg.i_bias_leak = np.where(on, np.clip(np.rint(leak_cell), 0, C.CAPMEM_MAX), cfg.i_bias_leak).astype(
        np.int64
    )
    v_leak = np.asarray(cfg.v_leak, dtype=float) + (_LEAK_LSB - np.where(on, targets.leak_lsb, _LEAK_LSB)) * (
        hw.CAPMEM_PER_LSB
    )
    cfg.v_leak = np.where(on, np.clip(np.rint(v_leak), 0, C.CAPMEM_MAX), cfg.v_leak).astype(np.int64)
    cfg.enable_bias_current = False
    cfg.bias_current_sink = False
    return cfg, tau_b


def _measure_tau(chip, cfg, targets, on, tau_b, trials):
    """tau_mem [us] of the measurement configuration, by the sawtooth method."""
    scfg = cfg.copy()
    th, reset = targets.threshold_lsb, targets.reset_lsb
    # leak above the threshold, reset at least 40 LSB below it (nominal shifts of the
    # calibrated settings; the sawtooth measures the actual leak and reset)
    v_leak = (
        np.asarray(scfg.v_leak, dtype=float) + (np.minimum(th + 35.0, 245.0) - _LEAK_LSB) * hw.CAPMEM_PER_LSB
    )
    scfg.v_leak = np.where(on, np.clip(np.rint(v_leak), 0, C.CAPMEM_MAX), scfg.v_leak).astype(np.int64)
    v_reset = (
        np.asarray(scfg.v_reset, dtype=float)
        + (np.maximum(np.minimum(reset, th - 40.0), 35.0) - reset) * hw.CAPMEM_PER_LSB
    )
    scfg.v_reset = np.where(on, np.clip(np.rint(v_reset), 0, C.CAPMEM_MAX), scfg.v_reset).astype(np.int64)
    saw_leak = M.measure_potential(chip, scfg, trials=2)
    saw_reset = M.measure_potential(chip, M.reset_clamp(scfg), trials=2)
    isi = np.where(
        on, tau_b * np.log(np.maximum(saw_leak - saw_reset, 2.0) / 35.0) + targets.refractory_us, 0.0
    )
    duration = float(np.clip(20.0 * np.nanmax(isi), 80.0, 3000.0))
    r = M.measure_sawtooth(chip, scfg, saw_leak, saw_reset, duration_us=duration, trials=trials)
    return np.where(on, r.tau_mem_us, np.nan)


def calibrate_bias(chip: VirtualChip, base, targets, iterations: int = 3):
    """Add ``i_bias_const`` to a LIF calibration ``base`` for the circuits with a
    ``bias_current`` target (see the module docstring).

    Parameters
    ----------
    chip : the chip to measure
    base : CalibrationResult of the same targets without bias current
    targets : CalibrationTargets with ``bias_current`` [CADC LSB/us]
    iterations : secant refinements after the two probes

    Returns
    -------
    CalibrationResult
        ``capmem['i_bias_const']`` (0 where not calibrated), ``measured['bias_current']``
        and ``residual['bias_current']`` (relative) from the check run.
    """
    from .lif import _raise_unreached, _run_search

    t0 = time.perf_counter()
    sel = targets.circuits
    on = sel & np.isfinite(targets.bias_current)
    target = np.where(on, targets.bias_current, np.nan)
    cfg, tau_b = _measurement_config(base, targets, on, base.measured["tau_mem_us"])
    tau = _measure_tau(chip, cfg, targets, on, tau_b, trials=8)
    settle = float(min(6.0 * np.nanmax(np.where(on, tau, np.nan)), 400.0))
    duration = settle + 40.0
    baseline = M.measure_potential(chip, cfg, duration_us=duration, trials=_TRIALS, settle_us=settle)
    runs = 4

    nominal = hw.nominal_bias_capmem(np.where(on, target, 0.0)).astype(float)
    search = Search(
        "i_bias_const", target, (nominal * 0.85, nominal * 1.15 + 4), relative=True, tolerance=0.03
    )

    def measure(settings, base_v=baseline, tau_m=tau, trials=_TRIALS):
        c = cfg.copy()
        c.enable_bias_current = on
        c.i_bias_const = np.where(on, settings["i_bias_const"], 0)
        v = M.measure_potential(chip, c, duration_us=duration, trials=trials, settle_us=settle)
        return {"i_bias_const": (v - base_v) / tau_m}

    runs += _run_search([search], measure, iterations)
    _raise_unreached(search, "bias_current")
    value = np.where(on, search.fitted(), 0).astype(np.int64)

    # check: a second tau_mem measurement and fresh baseline and shift runs
    tau_check = _measure_tau(chip, cfg, targets, on, tau_b, trials=8)
    base_check = M.measure_potential(chip, cfg, duration_us=duration, trials=4, settle_us=settle)
    measured = measure({"i_bias_const": value}, base_v=base_check, tau_m=tau_check, trials=4)["i_bias_const"]
    runs += 5
    measured = np.where(on, measured, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = np.where(on, measured / target - 1.0, np.nan)
    capmem = dict(base.capmem)
    capmem["i_bias_const"] = value.astype(np.int16)
    return replace(
        base,
        targets=targets,
        capmem=capmem,
        measured={**base.measured, "bias_current": measured},
        residual={**base.residual, "bias_current": residual},
        seconds=base.seconds + time.perf_counter() - t0,
        runs=base.runs + runs,
        from_cache=False,
    )
