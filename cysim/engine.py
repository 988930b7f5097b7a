"""The chip's dynamics and the bridge from a configuration to the compiled integrator.

Model equations (hardware time ``t`` [us], potentials [V], currents as ``I/C`` [V/us]),
per neuron circuit::

    dV/dt   = -(V - E_L)/tau_m + I_exc - I_inh + I_bias
              + [Delta_T/tau_m * exp((V - V_T)/Delta_T)]   (exponential term switched on)
              - [w]                                         (adaptation switched on)
    dI_x/dt = -I_x / tau_syn_x,      I_x += w_syn * gain  at every arriving event
    tau_w dw/dt = a (V - E_L) - w,   w += b               at every spike
    V >= V_th (spiking switched on):  spike; V = V_reset for t_ref

In conductance-based mode the synaptic states are conductances ``g_x`` [1/us] and the
input becomes ``g_exc (E_exc - V) + g_inh (E_inh - V)``. The membrane stays within the
supply rails ``[0, V_RAIL]``. Temporal noise is an Ornstein-Uhlenbeck term on ``V`` with
stationary standard deviation ``sigma`` (exact for the leak alone).

Integration on a fixed grid ``t_n = n dt``:

- The linear part (leak, exponentially decaying currents, constant current) is integrated
  exactly over each step with precomputed propagators (no error from the step size).
- The exponential and adaptation terms are held constant over a step (exponential Euler,
  first order in ``dt``); ``tests/scenarios/test_adex_convergence.py`` shows the error
  falling linearly with ``dt``. Conductance-based input uses the exact solution for the
  step-averaged conductances.
- Every event reaches its synapses :data:`~cysim.constants.ROUTING_LATENCY_US` after it
  was sent, rounded to the nearest grid point.
- Threshold crossings are located by linear interpolation inside the step and time-stamped
  at the FPGA's 8 ns resolution.
- CADC samples read the state on the grid; MADC samples interpolate linearly between
  grid points (use ``dt_us <= 0.034`` for the MADC's full bandwidth).

Logical (multi-compartment) neurons: circuits joined by closed ``connect_membrane_right``
switches add a coupling term ``sum_j g_ij (V_j - V_i)`` (``g`` from
:attr:`cysim.physics.HiddenPhysics.switch_conductance`). After the local step of every
circuit, each logical neuron that is not refractory applies the exact propagator
``expm(-L dt)`` of its coupling (:func:`coupling_matrix`); then the thresholds of its
compartments with spiking on are compared, and a compartment that fires resets every
compartment of the neuron (clamped at its own reset potential for the firing one's
refractory time). Joined circuits are always integrated.

Circuits without any input, bias or chance to spike ("passive") are not integrated step by
step: their membrane is an exact Ornstein-Uhlenbeck process around ``E_L`` sampled at the
CADC sample times.

Plasticity (runs with a :class:`~cysim.PPUProgram` or a synapse driver with short-term
plasticity on; tables in :mod:`cysim.plasticity`). Events then reach their synapses with
the weights, driver states and sensors of their arrival time ``t`` (the arrival step):

- Short-term plasticity, per synapse driver (Tsodyks-Markram as NEST's
  ``tsodyks2_synapse``), updated by every event that passes the driver, ``h`` the time
  since its previous one (``x = 1, u = U`` before the first)::

      x = 1 + (x - x u - 1) exp(-h / tau_rec)
      u = U + u (1 - U) exp(-h / tau_fac)          (u = U without facilitation)
      I_x += w_syn * gain * u x                     at every synapse of the driver

- Correlation sensors, per tracked synapse, with nearest-spike traces (the chip's trace
  capacitors are reset to a fixed value by each spike): with ``t_pre`` the synapse's last
  event arrival and ``t_post`` its circuit's last spike::

      causal  += eta_c exp(-(t_spike - t_pre) / tau_c)    at each spike of the circuit
      acausal += eta_a exp(-(t_arrival - t_post) / tau_a)  at each event arriving at it

  accumulated analog, saturating at 255 LSB (terms below 1e-15 LSB are skipped), read
  as 8 bit: ``clip(round(value + offset), 0, 255)``. ``eta``, ``tau`` come from the
  per-hemisphere CapMem cells, with per-synapse mismatch; ``offset`` per synapse.
- Spike counters: per circuit, 8-bit saturating (0..255).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from . import constants as C

try:
    from . import _engine
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "The compiled engine of cysim (cysim._engine) is not built. Rebuild it with "
        "`pip install -e .` (or `python setup.py build_ext --inplace`) in the repository root."
    ) from exc

COBA_REFERENCE_V = 0.3  # a COBA weight gives the CUBA current at this driving force
N_KEYS = C.N_BUSES << C.ADDRESS_BITS

FLAG_SPIKE, FLAG_EXP, FLAG_ADAPT, FLAG_COBA, FLAG_COUPLED = 1, 2, 4, 8, 16


def _keys(bus_masks: np.ndarray, addresses: np.ndarray):
    """Routing keys (bus << 11 | address) of each source with a bus bit mask."""
    src, bus = np.nonzero((bus_masks[:, None].astype(np.int64) >> np.arange(C.N_BUSES)) & 1)
    keys = (bus << C.ADDRESS_BITS) | addresses[src].astype(np.int64)
    ptr = np.zeros(bus_masks.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=bus_masks.size), out=ptr[1:])
    return ptr, keys.astype(np.int32)


def synapse_targets(config, physics, params):
    """All synapses an event can reach, grouped by routing key.

    Returns ``(key_ptr, circuit, channel, amplitude)``: the synapses reached by key ``k``
    are entries ``key_ptr[k]:key_ptr[k+1]`` of the other arrays (channel 0 exc, 1 inh;
    amplitude in V/us, or 1/us for conductance-based circuits).
    """
    w = config.array("synapse_weights")
    modes = config.array("row_modes")
    rows = np.arange(C.N_ROWS)
    row_on = (modes != C.ROW_OFF) & config.array("driver_enable")[:, rows // 2]
    on = np.flatnonzero((w > 0) & row_on[:, :, None])  # one index array: C order, as np.nonzero
    h, r, c = on // (C.N_ROWS * C.N_COLUMNS), on // C.N_COLUMNS % C.N_ROWS, on % C.N_COLUMNS
    d = r // 2
    bus = h * C.N_PADI_BUSES + d % C.N_PADI_BUSES
    select = config.array("driver_row_select")[h, d].astype(np.int64)
    key = (bus.astype(np.int64) << C.ADDRESS_BITS) | (select << 6) | config.array("synapse_labels")[h, r, c]
    circuit = h * C.N_COLUMNS + c
    channel = (modes[h, r] == C.ROW_INH).astype(np.int64)
    gain = np.where(channel == 0, params.syn_gain_exc[circuit], params.syn_gain_inh[circuit])
    coba = config.array("enable_coba")[circuit]
    gain = np.where(coba, gain / COBA_REFERENCE_V, gain)
    amp = w[h, r, c] * physics.driver_gain[h, d] * physics.synapse_gain[h, r, c] * gain
    srt = np.argsort(key, kind="stable")
    key_ptr = np.zeros(N_KEYS + 1, dtype=np.int64)
    np.cumsum(np.bincount(key, minlength=N_KEYS), out=key_ptr[1:])
    return key_ptr, circuit[srt], channel[srt], amp[srt]


def _propagator(h, tau_m, tau_s):
    """Exact response of V over a step ``h`` to a unit exponentially decaying current."""
    x = h * (1.0 / tau_m - 1.0 / tau_s)
    small = np.abs(x) < 1e-8
    ratio = np.where(small, 1.0 + x / 2, np.expm1(np.where(small, 1.0, x)) / np.where(small, 1.0, x))
    return h * np.exp(-h / tau_m) * ratio


def compile_config(config, physics):
    """Physical circuit parameters and the routing table of a configuration."""
    params = physics.circuit_parameters(
        {n: config.array(n).astype(np.float64) for n in C.CAPMEM_FIELDS},
        {n: config.array(n) for n in C.SWITCH_FIELDS},
    )
    return params, synapse_targets(config, physics, params)


def circuit_inputs(params: dict, flags: np.ndarray, dt_us: float, cadc_period_us: float) -> dict:
    """Per-circuit arrays of the integrator (propagators, thresholds, ...) in local order.

    ``params`` maps the fields of :class:`~cysim.physics.CircuitParameters` to arrays in
    local circuit order; ``flags`` are the switch flags (``FLAG_*``) in the same order.
    Used by :func:`prepare` and, when a plasticity kernel rewrites CapMem cells, for the
    new parameters of one trial (so both give bit-identical arrays).
    """
    p = params
    tau_m, tau_e, tau_i = p["tau_mem_us"], p["tau_syn_exc_us"], p["tau_syn_inh_us"]
    h = dt_us
    p_mem = np.exp(-h / tau_m)
    p_vconst = -tau_m * np.expm1(-h / tau_m)
    rho = np.exp(-cadc_period_us / tau_m)
    return {
        "e_l": p["v_leak"],
        "v_reset": p["v_reset"],
        "v_th": p["v_threshold"],
        "v_t": p["v_exp"],
        "delta_t": p["delta_t_v"],
        "e_rev_e": p["e_rev_exc"],
        "e_rev_i": p["e_rev_inh"],
        "inv_tau_m": 1.0 / tau_m,
        "p_mem": p_mem,
        "p_vexc": _propagator(h, tau_m, tau_e),
        "p_vinh": _propagator(h, tau_m, tau_i),
        "p_vconst": p_vconst,
        "p_exc": np.exp(-h / tau_e),
        "p_inh": np.exp(-h / tau_i),
        "f_exc": -tau_e * np.expm1(-h / tau_e) / h,
        "f_inh": -tau_i * np.expm1(-h / tau_i) / h,
        "p_w": np.exp(-h / p["tau_w_us"]),
        "a": p["adapt_a"],
        "b": p["adapt_b"],
        "i_bias": p["bias_current"],
        "bias_step": p["bias_current"] * p_vconst,  # the constant term of the linear step
        "noise_step": p["noise_sigma_v"] * np.sqrt(1.0 - p_mem**2),
        "ref_steps": np.rint(p["refractory_us"] / h),
        # compartments of logical neurons are tested against their threshold after the
        # coupling step (see coupling_inputs), not inside the local step
        "v_th_spike": np.where(
            ((flags & FLAG_SPIKE) != 0) & ((flags & FLAG_COUPLED) == 0), p["v_threshold"], np.inf
        ),
        "v_th_coupled": np.where((flags & FLAG_SPIKE) != 0, p["v_threshold"], np.inf),
        "exp_scale": p["delta_t_v"] * (1.0 / tau_m),
        "m_exp": (flags & FLAG_EXP).astype(bool).astype(np.float64),
        "m_adapt": (flags & FLAG_ADAPT).astype(bool).astype(np.float64),
        "m_coba": (flags & FLAG_COBA).astype(bool).astype(np.float64),
        "passive_rho": rho,
        "passive_sigma": p["noise_sigma_v"] * np.sqrt(1.0 - rho**2),
    }


def coupled_circuits(config) -> np.ndarray:
    """Whether each circuit (global order) belongs to a logical neuron of two or more."""
    right = config.array("connect_membrane_right")
    left = np.zeros_like(right)
    left[1:] = right[:-1]
    return right | left


def switch_flags(config) -> np.ndarray:
    """``FLAG_*`` bits of every circuit (global order)."""
    sw = {n: config.array(n) for n in C.SWITCH_FIELDS}
    return (
        sw["enable_spiking"] * FLAG_SPIKE
        + sw["enable_exponential"] * FLAG_EXP
        + sw["enable_adaptation"] * FLAG_ADAPT
        + sw["enable_coba"] * FLAG_COBA
        + coupled_circuits(config) * FLAG_COUPLED
    ).astype(np.uint8)


def coupling_matrix(conductance, dt_us: float) -> np.ndarray:
    """Exact propagator ``expm(-L dt)`` of the membrane coupling of one logical neuron.

    ``conductance[k]`` [1/us] joins compartments ``k`` and ``k + 1`` (a chain); with equal
    membrane capacitances the coupling term is ``dV_i/dt = sum_j g_ij (V_j - V_i) = -(L V)_i``
    with the symmetric graph Laplacian ``L``. ``expm(-L dt)`` is symmetric, non-negative and
    doubly stochastic: it keeps the mean membrane voltage (the common mode, the charge) and
    damps every differential mode by ``exp(-lambda dt)``, exactly, however short the
    coupling time constant ``1 / lambda`` is against ``dt``.
    """
    g = np.asarray(conductance, dtype=np.float64)
    m = g.size + 1
    lap = np.zeros((m, m))
    k = np.arange(m - 1)
    lap[k, k + 1] = lap[k + 1, k] = -g
    lap[np.arange(m), np.arange(m)] = -lap.sum(axis=1)
    lam, q = np.linalg.eigh(lap)
    lam = np.maximum(lam, 0.0)
    return (q * np.exp(-lam * dt_us)) @ q.T


def coupling_inputs(config, physics, local: np.ndarray, dt_us: float) -> dict:
    """Logical neurons of a configuration for the engine: ``cpl_ptr`` (groups),
    ``cpl_idx`` (local circuit of each compartment, left to right), ``cpl_contig`` (1 where
    a group's compartments are consecutive local circuits), ``cpl_mat_ptr`` and ``cpl_mat``
    (each group's propagator :func:`coupling_matrix`, stored column by column).

    They are computed once for the same switches, local order, switch conductances and
    step (a network run batch after batch) and copied from that."""
    right = np.ascontiguousarray(config.array("connect_membrane_right"), dtype=bool)
    if not right.any():
        cached = _coupling_inputs(right.tobytes(), b"", b"", float(dt_us))
    else:
        g_sw = np.ascontiguousarray(physics.switch_conductance, dtype=np.float64)
        local = np.ascontiguousarray(local, dtype=np.int64)
        cached = _coupling_inputs(right.tobytes(), local.tobytes(), g_sw.tobytes(), float(dt_us))
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in cached.items()}


@functools.lru_cache(maxsize=32)
def _coupling_inputs(right: bytes, local: bytes, g_sw: bytes, dt_us: float) -> dict:
    from .config import compartment_runs

    runs = compartment_runs(np.frombuffer(right, dtype=bool))
    local_a = np.frombuffer(local, dtype=np.int64)
    g = np.frombuffer(g_sw, dtype=np.float64)
    ptr = np.zeros(len(runs) + 1, dtype=np.int64)
    mat_ptr = np.zeros(len(runs) + 1, dtype=np.int64)
    idx, mats = [], []
    contig = np.zeros(len(runs), dtype=np.uint8)
    for k, run in enumerate(runs):
        ptr[k + 1] = ptr[k] + run.size
        mat_ptr[k + 1] = mat_ptr[k] + run.size**2
        idx.append(local_a[run])
        contig[k] = bool(np.all(np.diff(local_a[run]) == 1))
        mats.append(coupling_matrix(g[run[:-1]], dt_us).T.reshape(-1))
    return {
        "cpl_groups": len(runs),
        "cpl_ptr": ptr,
        "cpl_idx": (np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)).astype(np.int32),
        "cpl_contig": contig,
        "cpl_mat_ptr": mat_ptr,
        "cpl_mat": np.concatenate(mats) if mats else np.zeros(0),
    }


def prepare(
    config, physics, stimulus, duration_us, trials, trial_seeds, dt_us, compiled=None, extra_active=None
):
    """Everything the integrator needs for one batched run, as a dict of arrays.

    ``compiled`` is the result of :func:`compile_config` for this configuration, when the
    caller has it cached. ``extra_active`` (bool, per circuit) marks circuits that must be
    integrated step by step even if they look passive (a plasticity kernel may change
    their parameters or give them input).
    """
    params, (key_ptr, circuit, channel, amp) = compiled or compile_config(config, physics)
    sw = {n: config.array(n) for n in C.SWITCH_FIELDS}

    # --- which circuits must be integrated ----------------------------------------------
    active = np.zeros(C.N_CIRCUITS, dtype=bool)
    active[circuit] = True
    active |= params.bias_current != 0
    active |= sw["enable_spiking"] & (params.v_leak + 8 * params.noise_sigma_v >= params.v_threshold)
    active |= sw["enable_exponential"] & ((params.v_leak - params.v_exp) / params.delta_t_v > -12.0)
    active[list(config.madc_circuits)] = True
    coupled = coupled_circuits(config)
    if extra_active is not None:
        active |= extra_active
    active |= coupled  # compartments of logical neurons are always integrated
    # local order: nonlinear active circuits (exponential term, adaptation or COBA), the
    # other active circuits, then the passive ones
    nonlinear = sw["enable_exponential"] | sw["enable_adaptation"] | sw["enable_coba"]
    order = np.concatenate(
        [np.flatnonzero(active & nonlinear), np.flatnonzero(active & ~nonlinear), np.flatnonzero(~active)]
    )
    n_special = int(np.count_nonzero(active & nonlinear))
    local = np.empty(C.N_CIRCUITS, dtype=np.int64)
    local[order] = np.arange(C.N_CIRCUITS)
    n = int(active.sum())
    act = order[:n]

    # --- routing table: key -> (local target, amplitude) ------------------------------
    key_target = (channel * n + local[circuit]).astype(np.int32)

    spiking_out = sw["enable_output"] & sw["enable_spiking"]
    out_ptr, out_keys = _keys(
        np.where(spiking_out, config.array("output_buses"), 0)[act], config.array("output_address")[act]
    )
    bg_mode = config.array("bg_mode").astype(np.uint8)
    bg_ptr, bg_keys = _keys(np.where(bg_mode > 0, config.array("bg_buses"), 0), config.array("bg_address"))
    bg_seed = config.array("bg_seed").astype(np.uint64)
    bg_seeds = (bg_seed[None, :] << np.uint64(32)) ^ (
        trial_seeds[:, None].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    )

    # --- stimulus ------------------------------------------------------------------------
    n_steps = int(np.ceil(duration_us / dt_us - 1e-9))
    if stimulus.n_trials == 1 and trials > 1:
        ev_trial = np.repeat(np.arange(trials), len(stimulus))
        ev_time = np.tile(stimulus.times_us, trials)
        ev_label = np.tile(stimulus.labels, trials)
    else:
        ev_trial, ev_time, ev_label = stimulus.trials, stimulus.times_us, stimulus.labels
    ev_step = np.floor((ev_time + C.ROUTING_LATENCY_US) / dt_us + 0.5).astype(np.int64)
    keep = ev_step < n_steps
    ev_trial, ev_step, ev_label = ev_trial[keep], ev_step[keep], ev_label[keep]
    ev_ptr = np.zeros(trials + 1, dtype=np.int64)
    np.cumsum(np.bincount(ev_trial, minlength=trials), out=ev_ptr[1:])

    # --- per-circuit propagators (local order) ------------------------------------------
    p = {name: getattr(params, name)[order] for name in params.__dataclass_fields__}
    h = dt_us
    flags = switch_flags(config)[order]
    cadc_times = (
        np.arange(0.0, duration_us - 1e-9, config.cadc_period_us) if config.cadc_enable else np.zeros(0)
    )
    madc_times = np.arange(0.0, duration_us - 1e-9, C.MADC_PERIOD_US) if config.madc_circuits else np.zeros(0)
    return {
        "order": order,
        "n": n,
        "n_total": C.N_CIRCUITS,
        "n_trials": int(trials),
        "dt": float(h),
        "n_steps": n_steps,
        "latency": C.ROUTING_LATENCY_US,
        "rail": C.V_RAIL_V,
        "ring_len": int(np.ceil((C.ROUTING_LATENCY_US + h) / h)) + 2,
        "params": p,
        **circuit_inputs(p, flags, h, config.cadc_period_us),
        "flags": flags,
        "n_special": n_special,
        "has_noise": bool(np.any(p["noise_sigma_v"][:n] > 0)),
        "key_ptr": key_ptr,
        "key_target": key_target,
        "key_amp": amp,
        "out_ptr": out_ptr,
        "out_keys": out_keys,
        "ev_ptr": ev_ptr,
        "ev_step": ev_step,
        "ev_key": ev_label.astype(np.int32),
        "n_bg": C.N_BACKGROUND_GENERATORS,
        "bg_mode": bg_mode,
        "bg_period": config.array("bg_period_cycles").astype(np.float64) * C.BG_CLOCK_US,
        "bg_ptr": bg_ptr,
        "bg_keys": bg_keys,
        "bg_seeds": bg_seeds,
        "noise_seeds": trial_seeds.astype(np.uint64),
        "cadc_gain": C.CADC_LSB_PER_V * physics.cadc_gain[order],
        "cadc_offset": physics.cadc_offset_lsb[order],
        "cadc_noise": float(physics.cadc_noise_lsb),
        "madc_gain": C.MADC_LSB_PER_V * physics.madc_gain[order],
        "madc_offset": physics.madc_offset_lsb[order],
        "madc_noise": float(physics.madc_noise_lsb),
        "cadc_times": cadc_times,
        "cadc_steps": np.rint(cadc_times / h).astype(np.int64),
        "n_cadc": cadc_times.size,
        "madc_times": madc_times,
        "madc_local": local[list(config.madc_circuits)].astype(np.int32),
        "n_madc": len(config.madc_circuits),
        "n_madc_samples": madc_times.size,
        "madc_period": C.MADC_PERIOD_US,
        **coupling_inputs(config, physics, local, h),
    }


def default_threads(trials: int) -> int:
    """Threads over trials when the caller gives none: all cores, at most one per trial."""
    return max(1, min(os.cpu_count() or 1, int(trials)))


def simulate(inp: dict, threads: int | None = None):
    """Run the compiled integrator; see :func:`cysim._engine.simulate`."""
    if threads is None:
        threads = default_threads(inp["n_trials"])
    return _engine.simulate(inp, int(threads))
