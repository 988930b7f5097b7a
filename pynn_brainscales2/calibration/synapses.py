"""Gains of single synapses, measured on the calibrated chip.

The circuit calibration sets each circuit's synaptic gain through 64 synapse drivers at
once (:func:`~pynn_brainscales2.calibration.measure.measure_synaptic_input`), so the
spread of single drivers and synapses averages out of it but stays in every network: a
network whose inputs use a few drivers sees each driver's deviation (about 5 % per driver
and 3 % per synapse on a realistic chip) in all of that input's weights.
:func:`measure_synapse_gains` measures the synapses a network uses one row at a time and
returns each one's gain relative to its circuit's calibrated gain; the torch bridge's chip
mode divides the weights it writes by it (``Experiment(calibrate_synapses=True)``, the
default), so the rounding to 6-bit steps is what remains.

Measurement: a copy of the configuration with spiking off and every synapse row
addressable on its own (each driver answers to its own row-select address, the two rows of
a driver to two synapse labels); only the listed synapses hold a weight, chosen per circuit
so that its PSP peaks about ``peak_lsb`` from rest. Trial ``k`` sends one event to the
``k``-th used row of each hemisphere (``phases`` trials per row, shifted against the CADC
sampling grid); each circuit's response is fitted with its calibrated PSP shape
(:func:`~pynn_brainscales2.calibration.measure.psp_basis`, the circuits' target time
constants).
"""

from __future__ import annotations

import numpy as np

from cysim import ROW_EXC, ROW_INH, ChipConfig, Stimulus, VirtualChip, event_label
from cysim import constants as C

from ..errors import ParameterRangeError
from .measure import psp_basis, psp_peak

__all__ = ["measure_synapse_gains"]

_LEAD_US = 4.0  # baseline before the event
_PHASES = 16
_MAX_PHASES = 128
_RUN_BYTES = 64e6  # CADC samples held per chip run


def measure_synapse_gains(
    chip: VirtualChip,
    config: ChipConfig,
    hemisphere,
    row,
    column,
    gain,
    tau_mem_us,
    tau_syn_exc_us,
    tau_syn_inh_us,
    phases: int | None = None,
    peak_lsb: float = 40.0,
) -> np.ndarray:
    """Gain of each listed synapse relative to the calibrated gain of its circuit.

    Parameters
    ----------
    chip : VirtualChip
    config : ChipConfig
        The calibrated configuration (row modes as the network uses them).
    hemisphere, row, column : array_like of int
        The synapses (distinct), in the synapse arrays' coordinates.
    gain : array_like
        Calibrated synaptic gain [CADC LSB/us per step] per circuit (512), one for both
        receptors.
    tau_mem_us, tau_syn_exc_us, tau_syn_inh_us : array_like
        The circuits' calibrated time constants [us] (512 each).
    phases : int, optional
        Trials per row, shifted by ``1/phases`` of the CADC period. Default: 16, more
        (up to 128) where 63 steps lift a PSP less than ``peak_lsb``, so that the smallest
        PSPs are measured about as precisely as the others.
    peak_lsb : float
        PSP height aimed at [CADC LSB].

    Returns
    -------
    numpy.ndarray
        Measured gain over calibrated gain per synapse; NaN where no PSP of the expected
        sign was seen (a row switched off, a circuit without a target gain).
    """
    h = np.asarray(hemisphere, dtype=np.int64).reshape(-1)
    r = np.asarray(row, dtype=np.int64).reshape(-1)
    col = np.asarray(column, dtype=np.int64).reshape(-1)
    if not (h.shape == r.shape == col.shape):
        raise ParameterRangeError(
            f"measure_synapse_gains: hemisphere, row and column need the same length, got {h.size}, "
            f"{r.size} and {col.size} entries; give one of each per synapse."
        )
    out = np.full(h.size, np.nan)
    if h.size == 0:
        return out
    circuit = h * C.N_COLUMNS + col
    gain = np.asarray(gain, dtype=float).reshape(-1)
    tau_m = np.asarray(tau_mem_us, dtype=float).reshape(-1)
    tau_s = {
        ROW_EXC: np.asarray(tau_syn_exc_us, dtype=float),
        ROW_INH: np.asarray(tau_syn_inh_us, dtype=float),
    }
    modes = config.array("row_modes")[h, r]

    # a weight per circuit that lifts its PSP to about peak_lsb (the larger of the two
    # receptors' peaks, so that neither leaves the CADC range)
    peak = np.fmax(psp_peak(tau_s[ROW_EXC], tau_m), psp_peak(tau_s[ROW_INH], tau_m))
    with np.errstate(invalid="ignore", divide="ignore"):
        steps = np.rint(peak_lsb / (gain * peak))
    steps = np.where(np.isfinite(steps), np.clip(steps, 1, C.WEIGHT_MAX), 0).astype(np.int64)

    cfg = config.copy()
    cfg.enable_spiking = False
    cfg.cadc_enable = True
    cfg.cadc_period_us = C.CADC_PERIOD_MIN_US
    cfg.stp_enable = False
    cfg.bg_mode = 0
    weights = np.zeros((C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS), dtype=np.int64)
    weights[h, r, col] = steps[circuit]
    cfg.synapse_weights = weights
    # 32 drivers per bus: one row-select address each
    cfg.driver_row_select = np.tile(np.arange(C.N_DRIVERS) // 4, (C.N_HEMISPHERES, 1))
    cfg.driver_enable = True
    labels = np.zeros((C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS), dtype=np.int64)
    labels[:, 1::2, :] = 1  # the two rows of a driver answer to labels 0 and 1
    cfg.synapse_labels = labels

    if phases is None:
        lowest = float(np.nanmin((steps * gain * peak)[circuit]))
        phases = int(np.clip(np.ceil(_PHASES * (peak_lsb / max(lowest, 1e-3)) ** 2), _PHASES, _MAX_PHASES))
    rows_of = [np.unique(r[h == k]) for k in range(C.N_HEMISPHERES)]
    n_slots = max(len(x) for x in rows_of)
    used = np.zeros(C.N_CIRCUITS, bool)
    used[circuit] = True
    slowest = float(np.nanmax(np.fmax(np.fmax(tau_s[ROW_EXC], tau_s[ROW_INH]), tau_m)[used]))
    window = min(4.0 * slowest, 400.0)
    duration = _LEAD_US + window
    dt = chip.dt_us
    slot_rows = []
    for k in range(n_slots):
        slot_rows.append([(hh, int(rows_of[hh][k])) for hh in range(C.N_HEMISPHERES) if k < len(rows_of[hh])])
    t0 = np.round((_LEAD_US + np.arange(phases) * C.CADC_PERIOD_MIN_US / phases) / dt) * dt
    # slots per chip run: the CADC samples of a run stay below about 64 MB
    samples = int(duration / C.CADC_PERIOD_MIN_US) + 2
    chunk = max(1, int(_RUN_BYTES // (phases * samples * C.N_CIRCUITS)))
    for first in range(0, n_slots, chunk):
        slots = slot_rows[first : first + chunk]
        per_trial = []
        for here in slots:
            events = np.asarray(
                [event_label(hh * 4 + (rr // 2) % 4, (rr // 2) // 4, rr % 2) for hh, rr in here],
                dtype=np.int64,
            )
            per_trial += [(np.full(events.size, t), events) for t in t0]
        res = chip.run(cfg, Stimulus.from_trials(per_trial), duration_us=duration, trials=len(per_trial))
        t_s = res.cadc_times_us
        tt = (t_s[None, :] - (t0 + C.ROUTING_LATENCY_US)[:, None])[:, :, None]  # (phases, samples, 1)
        for j, here in enumerate(slots):
            y = res.cadc[j * phases : (j + 1) * phases].astype(np.float64)  # (phases, samples, circuits)
            for hh, rr in here:
                sel = np.flatnonzero((h == hh) & (r == rr))
                cs = circuit[sel]
                mode = modes[sel]
                ts = np.where(mode == ROW_EXC, tau_s[ROW_EXC][cs], tau_s[ROW_INH][cs])
                b = psp_basis(tt, ts[None, None, :], tau_m[cs][None, None, :])
                # PSP and resting level fitted together (a resting level taken from the few
                # samples before the event would carry their rounding into the amplitude)
                n = b[..., :1].size
                sb, sbb = b.sum(axis=(0, 1)), (b * b).sum(axis=(0, 1))
                sy, sby = y[:, :, cs].sum(axis=(0, 1)), (b * y[:, :, cs]).sum(axis=(0, 1))
                amp = (n * sby - sb * sy) / (n * sbb - sb * sb)
                sign = np.where(mode == ROW_EXC, 1.0, -1.0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = sign * amp / (steps[cs] * gain[cs])
                ok = (mode != 0) & (steps[cs] > 0) & np.isfinite(rel) & (rel > 0)
                out[sel] = np.where(ok, rel, np.nan)
    return out
