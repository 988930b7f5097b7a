"""Measurement experiments: configure the chip, run, read observables back.

Every function takes a :class:`cysim.VirtualChip` and a base :class:`cysim.ChipConfig`
and measures all 512 circuits at once (one batched ``VirtualChip.run``). Nothing here reads
the chip's hidden physics: the only inputs are spikes and CADC samples.

Units: potentials in CADC LSB, times in microseconds (hardware time), synaptic gains as the
jump of the synaptic input per weight step expressed as the membrane's rate of change
[CADC LSB/us].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cysim import ROW_EXC, ROW_INH, ROW_OFF, ChipConfig, Stimulus, VirtualChip, event_label
from cysim import constants as C

CADC_PERIOD_US = C.CADC_PERIOD_MIN_US
N = C.N_CIRCUITS


def _mean_ignoring_nan(x, axis):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(x, axis=axis) if np.isfinite(x).any() else np.full(x.shape[-1], np.nan)


def measure_potential(
    chip: VirtualChip, config: ChipConfig, duration_us: float = 40.0, trials: int = 3, settle_us: float = 4.0
) -> np.ndarray:
    """Mean CADC reading of every circuit [LSB], samples before ``settle_us`` dropped.

    With spiking off this is the leak potential; with a threshold below the reset and a long
    refractory time the membrane is clamped at the reset potential.
    """
    cfg = config.copy()
    cfg.cadc_enable = True
    cfg.cadc_period_us = CADC_PERIOD_US
    res = chip.run(cfg, duration_us=duration_us, trials=trials)
    keep = res.cadc_times_us >= settle_us
    return res.cadc[:, keep, :].astype(np.float64).mean(axis=(0, 1))


def reset_clamp(config: ChipConfig) -> ChipConfig:
    """A copy of ``config`` whose membranes sit at the reset potential: spiking on, the
    threshold below everything and the longest refractory time (measure with
    :func:`measure_potential`)."""
    cfg = config.copy()
    cfg.enable_spiking = True
    cfg.v_threshold = 0
    cfg.refractory_time = C.CAPMEM_MAX
    return cfg


@dataclass(frozen=True)
class Sawtooth:
    """Result of :func:`measure_sawtooth`, one value per circuit (NaN: not measurable)."""

    tau_mem_us: np.ndarray
    threshold_lsb: np.ndarray
    refractory_us: np.ndarray
    isi_us: np.ndarray
    n_samples: np.ndarray


def measure_sawtooth(
    chip: VirtualChip,
    config: ChipConfig,
    leak_lsb: np.ndarray,
    reset_lsb: np.ndarray,
    duration_us: float,
    trials: int = 2,
    min_spikes: int = 4,
) -> Sawtooth:
    """Regular firing with the leak above the threshold: tau_mem, threshold and refractory.

    Between the end of the refractory period and the next spike the membrane relaxes from
    the reset towards the leak, ``V(s) = V_leak - D exp(-s / tau_mem)`` with ``s`` the time
    since the last spike. CADC samples fall at all phases of the inter-spike interval
    (the 1.7 us sampling is incommensurate with it, and noise jitters it); a weighted
    log-linear fit of ``ln(V_leak - V)`` against ``s`` gives ``tau_mem`` and ``D``. The
    threshold is the fitted curve at ``s = ISI``; the refractory time is where the fitted
    curve starts at the reset: ``t_ref = tau_mem * (ln D - ln(V_leak - V_reset))``.

    ``leak_lsb`` and ``reset_lsb`` are the leak and reset potentials the configuration sets
    [LSB], measured beforehand.
    """
    leak = np.asarray(leak_lsb, dtype=np.float64)
    reset = np.asarray(reset_lsb, dtype=np.float64)
    # Without temporal noise a circuit whose interval is commensurate with the sampling
    # period would be seen at a few phases only: a second run samples at another period.
    periods = (CADC_PERIOD_US,) if chip.noise else (CADC_PERIOD_US, 1.37 * CADC_PERIOD_US)
    runs = []
    for k, period in enumerate(periods):
        cfg = config.copy()
        cfg.enable_spiking = True
        cfg.cadc_enable = True
        cfg.cadc_period_us = period
        n_tr = max(1, trials // len(periods) + (k < trials % len(periods)))
        runs.append(chip.run(cfg, duration_us=duration_us, trials=n_tr))

    isi_sum, isi_n = np.zeros(N), np.zeros(N)
    since_all, v_all = [], []
    for res in runs:
        since, d_sum, d_n = _time_since_spike(res, duration_us)
        isi_sum += d_sum
        isi_n += d_n
        since_all.append(since.reshape(-1, N))
        v_all.append(res.cadc.astype(np.float64).reshape(-1, N))
    with np.errstate(invalid="ignore", divide="ignore"):
        isi = np.where(isi_n >= min_spikes - 1, isi_sum / np.maximum(isi_n, 1), np.nan)
    since, v = np.concatenate(since_all), np.concatenate(v_all)

    gap = leak[None, :] - v
    # the relaxation part: above the reset plateau, below the leak, after the first spike
    use = np.isfinite(since) & (v > reset[None, :] + 4.0) & (gap > 3.0)
    # a sample taken in the step of a spike may read the membrane before or after the reset
    guard = chip.dt_us + 0.02
    use &= (since > guard) & (since < isi[None, :] - guard)
    w = np.where(use, gap**2, 0.0)
    x = np.where(use, since, 0.0)
    y = np.where(use, np.log(np.where(use, gap, 1.0)), 0.0)
    sw, sx, sy = w.sum(0), (w * x).sum(0), (w * y).sum(0)
    sxx, sxy = (w * x * x).sum(0), (w * x * y).sum(0)
    n_used = use.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = sw * sxx - sx * sx
        slope = (sw * sxy - sx * sy) / denom
        intercept = (sy - slope * sx) / sw
        tau = -1.0 / slope
        threshold = leak - np.exp(intercept - isi / tau)
        refractory = tau * (intercept - np.log(leak - reset))
    bad = (n_used < 8) | ~np.isfinite(isi) | ~(tau > 0)
    tau, threshold, refractory = (np.where(bad, np.nan, a) for a in (tau, threshold, refractory))
    return Sawtooth(tau, threshold, refractory, isi, n_used)


def _time_since_spike(res, duration_us: float):
    """Time since the circuit's last spike at every CADC sample (NaN before the first), and
    the sums and counts of steady-state inter-spike intervals (first interval skipped)."""
    t_s = res.cadc_times_us
    n_tr, n_smp = res.cadc.shape[:2]
    since = np.full((n_tr, n_smp, N), np.nan)
    isi_sum, isi_n = np.zeros(N), np.zeros(N)
    span = float(duration_us) + 1.0
    col = np.tile(np.arange(N), n_smp)
    qk = (np.arange(N)[None, :] * span + t_s[:, None]).ravel()
    for k in range(n_tr):
        circ, times = res.spikes(k)
        if circ.size == 0:
            continue
        order = np.lexsort((times, circ))
        circ, times = circ[order], times[order]
        same = circ[1:] == circ[:-1]
        steady = same & np.r_[False, same[:-1]]  # an interval whose start is not a first spike
        np.add.at(isi_sum, circ[1:][steady], np.diff(times)[steady])
        np.add.at(isi_n, circ[1:][steady], 1)
        keys = circ * span + times  # sorted: by circuit, then time
        idx = np.searchsorted(keys, qk, side="right") - 1
        ok = idx >= 0
        ok[ok] = circ[idx[ok]] == col[ok]
        s = np.full(qk.size, np.nan)
        s[ok] = qk[ok] - keys[idx[ok]]
        since[k] = s.reshape(n_smp, N)
    return since, isi_sum, isi_n


@dataclass(frozen=True)
class SynapticInput:
    """Result of :func:`measure_synaptic_input`, one value per circuit and receptor."""

    tau_syn_exc_us: np.ndarray
    tau_syn_inh_us: np.ndarray
    gain_exc: np.ndarray  # LSB/us per weight step
    gain_inh: np.ndarray


# drivers d with d % 4 == bus_offset listen to bus 4h + bus_offset; each drives rows 2d, 2d+1
# The search measures each receptor through two buses (128 rows, 64 drivers) per
# hemisphere; the check swaps them, so it sees other drivers and synapses than the search.
SEARCH_BUSES = {"exc": (0, 1), "inh": (2, 3)}
CHECK_BUSES = {"exc": (2, 3), "inh": (0, 1)}
_LABEL = 7


def synaptic_input_rows(bus_offsets) -> np.ndarray:
    """The synapse rows (per hemisphere) fed by the drivers on the given PADI buses (64 per bus)."""
    drivers = np.concatenate([np.arange(b, C.N_DRIVERS, 4) for b in np.atleast_1d(bus_offsets)])
    return np.sort(np.r_[2 * drivers, 2 * drivers + 1])


def psp_basis(t: np.ndarray, tau_syn: np.ndarray, tau_mem: np.ndarray) -> np.ndarray:
    """Membrane response [LSB] to a unit jump of the synaptic input [LSB/us] at ``t = 0``.

    ``tau_m tau_s / (tau_s - tau_m) (exp(-t/tau_s) - exp(-t/tau_m))``, its limit
    ``t exp(-t/tau)`` where both time constants agree, zero before the event.
    """
    ts, tm = np.asarray(tau_syn, dtype=float), np.asarray(tau_mem, dtype=float)
    tt = np.maximum(t, 0.0)
    close = np.abs(ts - tm) < 1e-6 * tm
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        general = tm * ts / (ts - tm) * (np.exp(-tt / ts) - np.exp(-tt / tm))
    return np.where(t > 0, np.where(close, tt * np.exp(-tt / tm), general), 0.0)


def psp_peak(tau_syn, tau_mem):
    """Largest value of :func:`psp_basis` [LSB per LSB/us], at ``t = ln(ts/tm) ts tm / (ts - tm)``."""
    ts, tm = np.asarray(tau_syn, dtype=float), np.asarray(tau_mem, dtype=float)
    close = np.abs(ts - tm) < 1e-6 * tm
    with np.errstate(invalid="ignore", divide="ignore"):
        t_peak = np.where(close, tm, np.log(ts / tm) * ts * tm / (ts - tm))
    return psp_basis(t_peak, ts, tm)


def measure_synaptic_input(
    chip: VirtualChip,
    config: ChipConfig,
    tau_mem_us: np.ndarray,
    weight,
    window_us: float,
    buses=SEARCH_BUSES,
    phases: int = 6,
    tau_grid: np.ndarray | None = None,
    tau_syn_us: dict | None = None,
    tau_mem_scales: np.ndarray | None = None,
    columns: np.ndarray | None = None,
) -> SynapticInput:
    """Excitatory and inhibitory PSPs of all circuits: synaptic time constants and gains.

    One event on each PADI bus of ``buses[kind]`` reaches 64 synapse rows (32 drivers) with
    weight ``weight`` on every column, so each circuit sums 64 synapses of its column,
    averaging out the spread of individual drivers and synapses. The responses are sampled
    by the CADC; ``phases`` trials shift the events against the sampling grid. For each
    circuit, ``V - V_leak = A * psp_basis(t; tau_syn, tau_mem)`` is fitted with ``tau_syn`` on
    a log grid (refined by a parabola) and ``A`` by least squares; the gain per weight step
    is ``|A|`` divided by the total weight steps. ``tau_mem_us`` are the circuits' measured membrane time
    constants [us]. Excitatory and inhibitory PSPs are recorded in separate trials, each over
    ``window_us`` after its event.

    With ``tau_mem_scales`` the membrane time constant is fitted too, as ``tau_mem_us``
    times one of these factors (for a fast membrane, whose time constant is only roughly
    known: the PSP is then nearly the synaptic current itself and ``tau_syn`` barely depends
    on it). With ``tau_syn_us`` (``{"exc": ..., "inh": ...}``) the synaptic time constants are
    taken as known and only the gains are fitted. With ``columns`` (bool, per circuit) only
    those circuits' columns receive the events (logical neurons: the PSP of one compartment's
    column, read on every circuit of the joined membrane).
    """
    cfg = config.copy()
    cfg.enable_spiking = False
    cfg.cadc_enable = True
    cfg.cadc_period_us = CADC_PERIOD_US
    # ``weight``: total weight steps per circuit over the rows of its receptor. Spread as
    # evenly as 6-bit weights allow over all rows, or over fewer rows (at least 8) with
    # weight 1 where the total is smaller than the number of rows.
    total, n_rows = {}, {}
    for k in ("exc", "inh"):
        want = np.broadcast_to(
            np.asarray(weight[k] if isinstance(weight, dict) else weight, dtype=float), (N,)
        )
        avail = synaptic_input_rows(buses[k]).size
        per_row = np.clip(np.rint(want / avail), 1, C.WEIGHT_MAX)
        rows_used = np.where(want < avail, np.clip(np.rint(want), 8, avail), avail)
        total[k] = (per_row * rows_used).astype(np.int64)
        n_rows[k] = (rows_used.astype(np.int64), per_row.astype(np.int64))
    labels = {}
    for kind, mode in (("exc", ROW_EXC), ("inh", ROW_INH)):
        rows = synaptic_input_rows(buses[kind])
        used, per_row = n_rows[kind]
        for h in range(C.N_HEMISPHERES):
            cols = slice(h * C.N_COLUMNS, (h + 1) * C.N_COLUMNS)
            cfg.row_modes[h, rows] = mode
            cfg.driver_row_select[h, rows[::2] // 2] = 0
            on = np.arange(rows.size)[:, None] < used[cols][None, :]
            if columns is not None:
                on &= np.asarray(columns, dtype=bool)[cols][None, :]
            cfg.synapse_weights[h, rows, :] = np.where(on, per_row[cols][None, :], 0)
            cfg.synapse_labels[h, rows, :] = _LABEL
        labels[kind] = [
            event_label(h * 4 + b, 0, _LABEL)
            for h in range(C.N_HEMISPHERES)
            for b in np.atleast_1d(buses[kind])
        ]
    lead = 6.0  # baseline before the event [us]
    dt = chip.dt_us
    # trials 0..phases-1: one excitatory event; phases..2*phases-1: one inhibitory event
    per_trial, arrival = [], []
    for kind in ("exc", "inh"):
        for k in range(phases):
            t0 = np.round((lead + k * CADC_PERIOD_US / phases) / dt) * dt
            per_trial.append((np.full(len(labels[kind]), t0), np.asarray(labels[kind])))
            arrival.append(t0 + C.ROUTING_LATENCY_US)
    duration = lead + CADC_PERIOD_US + window_us
    res = chip.run(cfg, Stimulus.from_trials(per_trial), duration_us=duration, trials=2 * phases)
    v = res.cadc.astype(np.float64)  # (trials, samples, circuits)
    t_s = res.cadc_times_us
    baseline = v[:, (t_s > 2.0) & (t_s < lead - 0.5), :].mean(axis=(0, 1))
    y = v - baseline[None, None, :]
    rel_all = t_s[None, :] - np.asarray(arrival)[:, None]  # (trials, samples)

    if tau_grid is None:
        tau_grid = np.geomspace(0.05, 200.0, 421)  # 2 % steps
    out = {}
    for kind, trials in (("exc", slice(0, phases)), ("inh", slice(phases, 2 * phases))):
        rel = rel_all[trials]
        mask = (rel > -1.0) & (rel < window_us)
        yk = y[trials][mask]  # (m, circuits)
        tk = rel[mask][:, None]
        if tau_syn_us is not None:
            tau_fit, edge, tau_m = np.asarray(tau_syn_us[kind], dtype=float), np.zeros(N, bool), tau_mem_us
        else:
            tau_fit, edge, tau_m = _fit_tau_syn(tk, yk, tau_mem_us, tau_grid, tau_mem_scales)
        basis = psp_basis(tk, tau_fit[None, :], tau_m[None, :])
        amp = (basis * yk).sum(0) / (basis * basis).sum(0)
        gain = np.abs(amp) / total[kind]
        wrong_sign = amp <= 0 if kind == "exc" else amp >= 0
        bad = wrong_sign | ~np.isfinite(tau_mem_us) | ~np.isfinite(tau_fit) | edge
        out[kind] = (np.where(bad, np.nan, tau_fit), np.where(bad, np.nan, gain))
    return SynapticInput(out["exc"][0], out["inh"][0], out["exc"][1], out["inh"][1])


def _fit_tau_syn(tk, yk, tau_mem_us, grid, tau_mem_scales=None):
    """Least-squares tau_syn per circuit on a log grid shared by all circuits, refined by a
    parabola through the three best grid points; optionally the best of several membrane
    time constants ``tau_mem_us * scale``. Returns ``(tau_syn, at_edge, tau_mem)``.

    The model ``y = A * psp_basis(t; tau_s, tau_m)`` is linear in ``A``; for a candidate
    ``tau_s`` the best ``A`` leaves ``sum(y^2) - (b.y)^2 / (b.b)``. With
    ``b = c (E_s - E_m)``, ``E_s = exp(-t/tau_s)`` (shared by all circuits) and
    ``E_m = exp(-t/tau_m)`` (one column per circuit), both sums are matrix products.
    """
    t = tk[:, 0]
    on = (t > 0).astype(np.float64)
    tp = np.maximum(t, 0)
    es = np.exp(-tp[None, :] / grid[:, None]) * on[None, :]  # (G, m)
    es2 = (es * es).sum(1)[:, None]
    yy = (yk * yk).sum(0)
    esy = es @ yk
    c = np.arange(N)
    best = None
    for scale in np.atleast_1d(1.0 if tau_mem_scales is None else tau_mem_scales):
        tm = tau_mem_us * scale
        em = np.exp(-tp[:, None] / tm[None, :]) * on[:, None]  # (m, circuits)
        sy = esy - (yk * em).sum(0)[None, :]  # sum of y (E_s - E_m)
        ss = es2 - 2.0 * (es @ em) + (em * em).sum(0)[None, :]  # sum of (E_s - E_m)^2
        with np.errstate(invalid="ignore", divide="ignore"):
            sse = yy[None, :] - sy * sy / ss
        # where tau_s nearly equals tau_m the difference E_s - E_m cancels numerically;
        # such candidates are skipped (their neighbours 2 % away are well conditioned)
        degenerate = np.abs(grid[:, None] / tm[None, :] - 1.0) < 1e-3
        sse = np.where(np.isfinite(sse) & ~degenerate, sse, np.inf)
        gi = np.argmin(sse, axis=0)
        k = np.clip(gi, 1, grid.size - 2)
        s0, s1, s2 = sse[k - 1, c], sse[k, c], sse[k + 1, c]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = 0.5 * (s0 - s2) / (s0 - 2 * s1 + s2)
        frac = np.where(np.isfinite(frac), np.clip(frac, -1, 1), 0.0)
        cand = (grid[k] * (grid[1] / grid[0]) ** frac, (gi == 0) | (gi == grid.size - 1), tm, s1)
        if best is None:
            best = cand
        else:
            better = cand[3] < best[3]
            best = tuple(np.where(better, a, b) for a, b in zip(cand, best, strict=True))
    return best[0], best[1], best[2]


def clear_synaptic_input(config: ChipConfig) -> None:
    """Switch all synapse rows off (measurements of the bare membrane)."""
    config.row_modes = ROW_OFF
