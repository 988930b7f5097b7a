"""Plain-NumPy reference integrator of the virtual chip, kept for equivalence tests only.

It integrates the model of :mod:`cysim.engine` with the semantics of the compiled engine
(:func:`cysim._engine.simulate`) and returns the same arrays, but it is written
independently of it so that the two can check each other:

- **Routing** is recomputed from the configuration itself (bus, synapse drivers and their
  row-select addresses, row modes, synapse labels and weights), not read from the routing
  tables that :func:`cysim.engine.prepare` builds (``key_*``, ``out_*``, ``bg_keys``).
- **Propagators** are recomputed from the physical circuit parameters
  (``inp["params"]``), with different (algebraically equal) formulas.
- Circuits are handled as NumPy vectors; only time steps (and trials) are Python loops.

Semantics shared with the compiled engine, per step ``t = step * dt``: events due at the
step are added to the synaptic states; background generators emit every event sent
before ``t + dt``; the CADC samples the membranes at ``t``; the membranes advance by one
exact linear step (exponential term and adaptation current held constant over the step,
step-averaged conductances in COBA mode), clamped to ``[0, V_RAIL]`` and to the reset
potential while refractory (``round(t_ref / dt)`` steps after the step of a spike, none of
which can spike); threshold crossings are interpolated linearly inside the step.
An event sent at time ``s`` arrives at step ``round((s + latency) / dt)`` (halves rounded
up), but never before the step after the one that sent it. External events use the
arrival steps of ``inp["ev_step"]``. MADC samples interpolate linearly between grid
points (up to the threshold and then the reset inside a step with a spike). Circuits
after the first ``inp["n"]`` of ``inp["order"]`` are passive: they rest at ``E_L`` (an
Ornstein-Uhlenbeck process sampled at the CADC times when noise is on). A CADC sample
whose time rounds to the grid point ``n_steps * dt`` at the very end of the run reads the
final state (the compiled engine leaves such a sample at zero).

Random numbers: with noise off and no Poisson background generator the result equals the
compiled engine's up to floating-point rounding. Membrane, passive-circuit and readout
noise come from :func:`numpy.random.default_rng` seeded with ``inp["noise_seeds"][trial]``,
and Poisson background generators from generators seeded with ``inp["bg_seeds"][trial, g]``.
These streams differ from the compiled engine's (xoshiro256+ with a normal table), so
with noise or Poisson generators the two engines agree in distribution only, not sample
by sample. Regular generators (mode 2) are deterministic and agree exactly.
"""

from __future__ import annotations

import numpy as np

from . import constants as C
from .engine import COBA_REFERENCE_V
from .engine import coupled_circuits as engine_coupled

__all__ = ["simulate"]


def _round_half_up(x):
    """Nearest integer of ``x >= 0``, halves rounded up (like C ``llround``)."""
    x = np.asarray(x, dtype=np.float64)
    base = np.floor(x)
    return (base + (x - base >= 0.5)).astype(np.int64)


class _Router:
    """Synaptic input caused by one event, found from the configuration arrays.

    Parameters
    ----------
    config : ChipConfig
        The configuration written to the chip.
    physics : HiddenPhysics
        Driver and synapse gains of the chip.
    local : ndarray of int
        Local index of every global circuit.
    n : int
        Number of integrated circuits; synapses onto other circuits are an error.
    gain_exc, gain_inh : ndarray
        Synaptic gain of every global circuit [V/us per LSB, or 1/us per LSB (COBA)].
    """

    def __init__(self, config, physics, local, n, gain_exc, gain_inh):
        self.weights = config.array("synapse_weights")
        self.labels = config.array("synapse_labels")
        self.modes = config.array("row_modes")
        self.driver_enable = config.array("driver_enable")
        self.row_select = config.array("driver_row_select")
        self.coba = config.array("enable_coba")
        self.driver_gain = physics.driver_gain
        self.synapse_gain = physics.synapse_gain
        self.local = local
        self.n = n
        self.gain = np.stack([gain_exc, gain_inh])  # [channel, global circuit]
        self._cache = {}

    def __call__(self, key: int) -> np.ndarray:
        """Input of the event with routing key ``bus << 11 | address``, shape ``(2, n)``.

        Row 0 holds the excitatory, row 1 the inhibitory increments of the local circuits.
        """
        key = int(key)
        if key not in self._cache:
            self._cache[key] = self._route(key)
        return self._cache[key]

    def _route(self, key: int) -> np.ndarray:
        bus, address = key >> C.ADDRESS_BITS, key & C.ADDRESS_MAX
        h = bus // C.N_PADI_BUSES
        drivers = np.arange(bus % C.N_PADI_BUSES, C.N_DRIVERS, C.N_PADI_BUSES)
        drivers = drivers[self.driver_enable[h, drivers] & (self.row_select[h, drivers] == address >> 6)]
        rows = (C.ROWS_PER_DRIVER * drivers[:, None] + np.arange(C.ROWS_PER_DRIVER)).ravel()
        rows = rows[self.modes[h, rows] != C.ROW_OFF]
        weights = self.weights[h, rows].astype(np.float64)
        hit_row, column = np.nonzero((self.labels[h, rows] == (address & C.LABEL_MAX)) & (weights > 0))
        row = rows[hit_row]
        circuit = h * C.N_COLUMNS + column
        channel = (self.modes[h, row] == C.ROW_INH).astype(np.int64)
        gain = self.gain[channel, circuit] / np.where(self.coba[circuit], COBA_REFERENCE_V, 1.0)
        amp = (
            weights[hit_row, column]
            * self.driver_gain[h, row // C.ROWS_PER_DRIVER]
            * self.synapse_gain[h, row, column]
            * gain
        )
        target = self.local[circuit]
        if np.any(target >= self.n):
            raise ValueError(
                f"event key {key} reaches circuits {circuit[target >= self.n]} that the engine input "
                "does not integrate (inp['order'] / inp['n'] inconsistent with the configuration)"
            )
        out = np.zeros((2, self.n))
        np.add.at(out, (channel, target), amp)
        return out

    def keys(self, bus_mask: int, address: int) -> list[int]:
        """Routing keys of a source sending ``address`` to the buses in ``bus_mask``."""
        return [
            (bus << C.ADDRESS_BITS) | int(address) for bus in range(C.N_BUSES) if (int(bus_mask) >> bus) & 1
        ]

    def sum(self, bus_mask: int, address: int) -> np.ndarray:
        """Total input of one source's event on all its buses, shape ``(2, n)``."""
        out = np.zeros((2, self.n))
        for key in self.keys(bus_mask, address):
            out = out + self(key)
        return out


def _psp_propagator(h, tau_m, tau_s):
    """Membrane response after ``h`` to a unit current decaying with ``tau_s``.

    ``int_0^h exp(-(h - s)/tau_m) exp(-s/tau_s) ds``; the limit ``h exp(-h/tau_m)`` is
    used (with its first-order correction) where the two time constants nearly coincide.
    """
    k = 1.0 / tau_m - 1.0 / tau_s
    near = np.abs(k * h) < 1e-6
    k_safe = np.where(near, 1.0, k)
    exact = (np.exp(-h / tau_s) - np.exp(-h / tau_m)) / k_safe
    limit = h * np.exp(-h / tau_m) * (1.0 + 0.5 * k * h)
    return np.where(near, limit, exact)


def _circuit_arrays(inp: dict, config) -> dict:
    """Per-circuit constants of the integrated circuits (local order), from physics."""
    n, dt = int(inp["n"]), float(inp["dt"])
    act = np.asarray(inp["order"])[:n]
    p = {k: np.asarray(v, dtype=np.float64)[:n] for k, v in inp["params"].items()}
    tau_m, tau_e, tau_i, tau_w = p["tau_mem_us"], p["tau_syn_exc_us"], p["tau_syn_inh_us"], p["tau_w_us"]
    decay_m = np.exp(-dt / tau_m)
    sw = {name: config.array(name)[act].astype(bool) for name in C.SWITCH_FIELDS}
    return {
        **p,
        "inv_tau_m": 1.0 / tau_m,
        "decay_m": decay_m,
        "psp_exc": _psp_propagator(dt, tau_m, tau_e),
        "psp_inh": _psp_propagator(dt, tau_m, tau_i),
        "const": tau_m * (1.0 - decay_m),  # response to a unit constant current
        "decay_syn": np.stack([np.exp(-dt / tau_e), np.exp(-dt / tau_i)]),
        "mean_syn": np.stack(
            [tau_e / dt * (1.0 - np.exp(-dt / tau_e)), tau_i / dt * (1.0 - np.exp(-dt / tau_i))]
        ),
        "decay_w": np.exp(-dt / tau_w),
        "noise": p["noise_sigma_v"] * np.sqrt(1.0 - decay_m**2),
        "ref_steps": np.rint(p["refractory_us"] / dt).astype(np.int64),
        "spiking": sw["enable_spiking"],
        "exponential": sw["enable_exponential"],
        "adaptation": sw["enable_adaptation"],
        "coba": sw["enable_coba"],
        "coupled": engine_coupled(config)[act],
        "has_output": sw["enable_output"] & sw["enable_spiking"] & (config.array("output_buses")[act] != 0),
    }


def _logical_neurons(config, physics, local, dt):
    """``(local circuits, propagator)`` of every logical neuron, the propagator from
    :func:`scipy.linalg.expm` of the coupling matrix (independently of the engine's
    eigendecomposition)."""
    from scipy.linalg import expm

    from .config import compartment_runs

    out = []
    for run in compartment_runs(config.array("connect_membrane_right")):
        g = physics.switch_conductance[run[:-1]]
        m = run.size
        a = np.zeros((m, m))
        for k in range(m - 1):
            a[k, k] -= g[k]
            a[k + 1, k + 1] -= g[k]
            a[k, k + 1] += g[k]
            a[k + 1, k] += g[k]
        out.append((local[run], expm(a * dt)))
    return out


def _background_arrivals(inp: dict, config, trial: int, t_end: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(generator, arrival steps)`` of every event the background generators send."""
    dt, n_steps = float(inp["dt"]), t_end.size
    horizon = t_end[-1] if n_steps else 0.0
    modes = config.array("bg_mode")
    periods = config.array("bg_period_cycles").astype(np.float64) * C.BG_CLOCK_US
    seeds = np.asarray(inp["bg_seeds"], dtype=np.uint64).reshape(-1, C.N_BACKGROUND_GENERATORS)
    out = []
    for g in np.flatnonzero(modes != C.BG_OFF):
        period = periods[g]
        if modes[g] == C.BG_REGULAR:
            times = np.cumsum(np.full(int(horizon / period) + 2, period))
        else:
            rng = np.random.default_rng(int(seeds[trial, g]))
            times = np.cumsum(rng.exponential(period, size=int(horizon / period) + 16))
            while times[-1] < horizon:
                times = np.concatenate(
                    [times, times[-1] + np.cumsum(rng.exponential(period, size=times.size))]
                )
        sent = np.searchsorted(t_end, times, side="right")  # the step that emits the event
        times, sent = times[sent < n_steps], sent[sent < n_steps]
        arrival = np.maximum(_round_half_up((times + C.ROUTING_LATENCY_US) / dt), sent + 1)
        out.append((int(g), arrival))
    return out


def _run_trial(inp, config, physics, trial, cp, router, out_input, local_madc, groups=()):
    """One trial: spikes, CADC samples ``(n_cadc, 512)`` and MADC samples (local order)."""
    n, dt, n_steps = int(inp["n"]), float(inp["dt"]), int(inp["n_steps"])
    order = np.asarray(inp["order"])
    params = {k: np.asarray(v, dtype=np.float64) for k, v in inp["params"].items()}
    rng = np.random.default_rng(int(np.asarray(inp["noise_seeds"]).reshape(-1)[trial]))
    steps = np.arange(n_steps, dtype=np.float64) * dt
    t_end = steps + dt

    # --- every input known before the run: external events and background generators --
    pending: dict[int, np.ndarray] = {}

    def deliver(step, vec):
        pending[step] = pending[step] + vec if step in pending else vec.copy()

    ev_ptr = np.asarray(inp["ev_ptr"])
    for k in range(int(ev_ptr[trial]), int(ev_ptr[trial + 1])):
        deliver(int(inp["ev_step"][k]), router(int(inp["ev_key"][k])))
    for g, arrival in _background_arrivals(inp, config, trial, t_end):
        vec = router.sum(config.array("bg_buses")[g], config.array("bg_address")[g])
        for step, count in zip(*np.unique(arrival[arrival < n_steps], return_counts=True), strict=True):
            deliver(int(step), count * vec)

    # --- readout ----------------------------------------------------------------------
    cadc_times = np.asarray(inp["cadc_times"], dtype=np.float64)
    cadc_at = {int(s): k for k, s in enumerate(np.rint(cadc_times / dt).astype(np.int64))}
    cadc_gain = C.CADC_LSB_PER_V * physics.cadc_gain[order]
    cadc_offset = physics.cadc_offset_lsb[order]
    cadc = np.zeros((cadc_times.size, order.size))
    e_l_all = params["v_leak"]
    passive = np.arange(n, order.size)
    rho = np.exp(-config.cadc_period_us / params["tau_mem_us"][passive])
    sigma_passive = params["noise_sigma_v"][passive] * np.sqrt(1.0 - rho**2)
    v_passive = e_l_all[passive].copy()
    madc_trace = np.zeros((n_steps + 1, local_madc.size))  # membrane on the grid
    madc_frac = np.full((n_steps, local_madc.size), 2.0)  # spike position inside a step

    # --- state --------------------------------------------------------------------------
    e_l, v_th, v_reset = cp["v_leak"], cp["v_threshold"], cp["v_reset"]
    v = e_l.copy()
    w = np.zeros(n)
    syn = np.zeros((2, n))
    ref = np.zeros(n, dtype=np.int64)
    noisy = bool(np.any(cp["noise"] != 0.0))
    sp_local, sp_time = [], []

    def sample_cadc(k, v, v_passive):
        """Write CADC sample ``k`` of the membranes ``v``; return the passive membranes."""
        if k > 0 and np.any(sigma_passive != 0.0):
            noise = sigma_passive * rng.standard_normal(passive.size)
            v_passive = e_l_all[passive] + (v_passive - e_l_all[passive]) * rho + noise
        cadc[k, :n] = v * cadc_gain[:n] + cadc_offset[:n]
        cadc[k, n:] = v_passive * cadc_gain[n:] + cadc_offset[n:]
        if physics.cadc_noise_lsb != 0.0:
            cadc[k] += physics.cadc_noise_lsb * rng.standard_normal(order.size)
        return v_passive

    for step in range(n_steps):
        t = steps[step]
        if step in pending:
            syn += pending.pop(step)
        if step in cadc_at:
            v_passive = sample_cadc(cadc_at[step], v, v_passive)
        madc_trace[step] = v[local_madc]

        # membranes: exact linear step, non-linear currents held over the step
        i_exc, i_inh = syn
        arg = np.minimum((v - cp["v_exp"]) / cp["delta_t_v"], 30.0)
        i_exp = np.where(
            cp["exponential"] & (arg > -40.0), cp["delta_t_v"] * cp["inv_tau_m"] * np.exp(arg), 0.0
        )
        current = cp["bias_current"] + i_exp - np.where(cp["adaptation"], w, 0.0)
        v_cuba = (
            e_l
            + (v - e_l) * cp["decay_m"]
            + i_exc * cp["psp_exc"]
            - i_inh * cp["psp_inh"]
            + current * cp["const"]
        )
        g_exc, g_inh = syn * cp["mean_syn"]
        g_tot = cp["inv_tau_m"] + g_exc + g_inh
        v_inf = (e_l * cp["inv_tau_m"] + g_exc * cp["e_rev_exc"] + g_inh * cp["e_rev_inh"] + current) / g_tot
        v_new = np.where(cp["coba"], v_inf + (v - v_inf) * np.exp(-dt * g_tot), v_cuba)
        if noisy:
            v_new = v_new + cp["noise"] * rng.standard_normal(n)
        v_new = np.clip(v_new, 0.0, C.V_RAIL_V)
        refractory = ref > 0
        ref[refractory] -= 1
        v_new[refractory] = v_reset[refractory]
        # logical neurons: exact coupling step unless refractory, then their thresholds;
        # a compartment that fires resets the whole neuron
        coupled_spike = np.zeros(n, dtype=bool)
        for idx_g, prop in groups:
            if refractory[idx_g].any():
                continue
            v_new[idx_g] = prop @ v_new[idx_g]
            fire = cp["spiking"][idx_g] & (v_new[idx_g] >= v_th[idx_g])
            if fire.any():
                coupled_spike[idx_g[fire]] = True
                rest = idx_g[~fire]
                v_new[rest] = v_reset[rest]
                ref[rest] = cp["ref_steps"][idx_g[np.argmax(fire)]]
        w = np.where(
            cp["adaptation"], w * cp["decay_w"] + cp["adapt_a"] * (v - e_l) * (1.0 - cp["decay_w"]), w
        )
        syn *= cp["decay_syn"]

        # spikes (not while refractory): interpolated crossing, reset, refractory counter,
        # events into the routing
        spiking = (cp["spiking"] & ~cp["coupled"] & ~refractory & (v_new >= v_th)) | coupled_spike
        if spiking.any():
            idx = np.flatnonzero(spiking)
            rise = v_new[idx] - v[idx]
            frac = np.where(rise > 0, (v_th[idx] - v[idx]) / np.where(rise > 0, rise, 1.0), 0.0)
            frac = np.maximum(frac, 0.0)
            ts = t + frac * dt
            sp_local.append(idx)
            sp_time.append(ts)
            v_new[idx] = v_reset[idx]
            ref[idx] = cp["ref_steps"][idx]
            w[idx] += np.where(cp["adaptation"][idx], cp["adapt_b"][idx], 0.0)
            hit = np.isin(local_madc, idx)
            madc_frac[step, hit] = frac[np.searchsorted(idx, local_madc[hit])]
            sends = cp["has_output"][idx]
            arrival = np.maximum(_round_half_up((ts[sends] + C.ROUTING_LATENCY_US) / dt), step + 1)
            for a in np.unique(arrival[arrival < n_steps]):  # one or two distinct steps
                deliver(int(a), out_input[idx[sends][arrival == a]].sum(axis=0))
        v = v_new
    madc_trace[n_steps] = v[local_madc]
    if n_steps in cadc_at:  # a sample time rounded to the end of the run reads the final state
        sample_cadc(cadc_at[n_steps], v, v_passive)

    madc = _madc_samples(inp, physics, order, local_madc, cp, madc_trace, madc_frac, steps, t_end, rng)
    if sp_local:
        sp_local, sp_time = np.concatenate(sp_local), np.concatenate(sp_time)
    else:
        sp_local, sp_time = np.zeros(0, dtype=np.int64), np.zeros(0)
    return sp_local, sp_time, cadc, madc


def _madc_samples(inp, physics, order, local_madc, cp, trace, frac_spike, steps, t_end, rng):
    """MADC samples interpolated inside the steps that contain them, shape (samples, channels)."""
    n_samples = int(np.asarray(inp["madc_times"]).size)
    out = np.zeros((n_samples, local_madc.size))
    if n_samples == 0 or local_madc.size == 0:
        return out
    tk = np.arange(n_samples) * C.MADC_PERIOD_US
    step = np.searchsorted(t_end, tk, side="right")  # first step whose end lies after tk
    ok = step < steps.size
    tk, step = tk[ok], step[ok]
    frac = ((tk - steps[step]) / float(inp["dt"]))[:, None]
    prev, nxt, sf = trace[step], trace[step + 1], frac_spike[step]
    v_th = cp["v_threshold"][local_madc]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = prev + frac / sf * (v_th - prev)
    v = np.where(sf > 1.0, prev + frac * (nxt - prev), np.where(frac < sf, rising, nxt))
    gain = C.MADC_LSB_PER_V * physics.madc_gain[order][local_madc]
    out[ok] = v * gain + physics.madc_offset_lsb[order][local_madc]
    if physics.madc_noise_lsb != 0.0:
        out[ok] += physics.madc_noise_lsb * rng.standard_normal(out[ok].shape)
    return out


def simulate(inp: dict, config, physics):
    """Integrate all trials of ``inp`` like :func:`cysim._engine.simulate`, in NumPy.

    Parameters
    ----------
    inp : dict
        Engine input from :func:`cysim.engine.prepare`. Only its circuit order, time grid,
        physical parameters, stimulus events, readout times and seeds are used; routing is
        recomputed from ``config``.
    config : ChipConfig
        The configuration ``inp`` was prepared from.
    physics : HiddenPhysics
        The chip's hidden physics (driver, synapse and readout gains, readout noise).

    Returns
    -------
    spike_trial : ndarray of int32
        Trial of each spike.
    spike_local : ndarray of int32
        Local circuit index of each spike (global circuit ``inp["order"][local]``).
    spike_time_us : ndarray of float64
        Interpolated spike times [us].
    cadc_v : ndarray of float64, shape (trials, n_cadc, 512)
        CADC samples before quantisation [LSB], circuits in local order.
    madc_v : ndarray of float64, shape (trials, n_madc_samples, n_madc)
        MADC samples before quantisation [LSB].
    """
    n, n_trials = int(inp["n"]), int(inp["n_trials"])
    order = np.asarray(inp["order"], dtype=np.int64)
    local = np.empty(order.size, dtype=np.int64)
    local[order] = np.arange(order.size)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in inp["params"].items()}
    # gains per global circuit (params come in local order)
    router = _Router(config, physics, local, n, params["syn_gain_exc"][local], params["syn_gain_inh"][local])
    cp = _circuit_arrays(inp, config)
    out_input = np.zeros((n, 2, n))
    for i in np.flatnonzero(cp["has_output"]):
        g = order[i]
        out_input[i] = router.sum(config.array("output_buses")[g], config.array("output_address")[g])
    local_madc = local[list(config.madc_circuits)].astype(np.int64)
    groups = _logical_neurons(config, physics, local, float(inp["dt"]))

    trials, locs, times, cadcs, madcs = [], [], [], [], []
    for trial in range(n_trials):
        sp_local, sp_time, cadc, madc = _run_trial(
            inp, config, physics, trial, cp, router, out_input, local_madc, groups
        )
        trials.append(np.full(sp_local.size, trial, dtype=np.int32))
        locs.append(sp_local.astype(np.int32))
        times.append(sp_time)
        cadcs.append(cadc)
        madcs.append(madc)
    return (
        np.concatenate(trials) if trials else np.zeros(0, dtype=np.int32),
        np.concatenate(locs) if locs else np.zeros(0, dtype=np.int32),
        np.concatenate(times) if times else np.zeros(0),
        np.stack(cadcs) if cadcs else np.zeros((0, int(inp["n_cadc"]), order.size)),
        np.stack(madcs) if madcs else np.zeros((0, int(inp["n_madc_samples"]), int(inp["n_madc"]))),
    )
