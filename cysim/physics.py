"""Hidden physics of a virtual chip: the one module that knows how CapMem values become
physical quantities and how each circuit deviates from its nominal design.

Nothing outside :mod:`cysim` reads this module; the software stack finds these values by
measurement (calibration). Tests may open it through ``VirtualChip._physics``.

Transfer functions (nominal, before mismatch), with ``x = capmem / 1022``:

- potentials ``v_leak, v_reset, v_threshold, v_exp, e_rev_exc, e_rev_inh``:
  ``V = offset + gain * capmem * V_RAIL / 1023`` [V]
- time constants ``tau_mem``, ``tau_syn_exc/inh``, ``tau_w``: bias currents in a log
  domain, ``tau = tau_0 * exp(-kappa * capmem)`` [us]
- synaptic gain (current step per weight LSB), adaptation ``a`` and ``b``, bias current,
  exponential slope ``Delta_T``: linear in ``x``
- refractory time: a clocked counter, ``t_ref = t_clk * (capmem + 1)`` [us]

Currents are expressed as rates of change of the membrane voltage, ``I / C_mem``
[V/us]; conductances as ``g / C_mem`` [1/us].

Plasticity circuits (nominal transfer functions in :mod:`cysim.constants`):

- correlation sensors: per hemisphere a time constant (log domain) and an amplitude
  (linear) per direction; every synapse scales them by its own factors and adds its own
  readout offset [LSB];
- short-term plasticity: per synapse driver a utilisation ``U = c / 1022`` and recovery /
  facilitation time constants (log domain); every driver scales them by its own factors.

Multi-compartment neurons: a closed ``connect_membrane_right`` switch joins two
neighbouring membranes through a finite conductance ``g_sw`` (nominal on-resistance
:data:`SWITCH_RESISTANCE_KOHM` between membranes of :data:`MEMBRANE_CAPACITANCE_PF`, i.e.
``g_sw / C = 1 / (R_on C)`` = :data:`SWITCH_CONDUCTANCE_PER_US`, about 21 /us, a coupling
time constant of 48 ns); every switch scales it by its own log-normal factor.

Mismatch: each circuit draws its own gains and offsets (spreads of tens of percent for
time constants and gains, tens of mV for potentials), every synapse driver and every
synapse its own gain factor, and every readout channel its own gain and offset. Temporal
noise: an Ornstein-Uhlenbeck process on every membrane and Gaussian noise on every readout
sample. The plasticity circuits draw their deviations from a separate stream, on first
use, so chips that never use them pay nothing and keep the deviations above unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from . import constants as C

# --- nominal design values ----------------------------------------------------------
_V_PER_CAPMEM = C.V_RAIL_V / 1023.0
TAU_MEM_0_US, TAU_MEM_MIN_US = 150.0, 0.2  # at capmem 0 and 1022
TAU_SYN_0_US, TAU_SYN_MIN_US = 80.0, 0.12
TAU_W_0_US, TAU_W_MIN_US = 2000.0, 1.0
SYN_GAIN_MAX = 1.0 / C.CADC_LSB_PER_V  # V/us per weight LSB at capmem 1022 (1 LSB/us)
BIAS_CURRENT_MAX = 40.0 / C.CADC_LSB_PER_V  # V/us (40 CADC LSB/us)
ADAPT_A_MAX = 1.0  # 1/us
ADAPT_B_MAX = 20.0 / C.CADC_LSB_PER_V  # V/us per spike
DELTA_T_MAX_V = 0.06
REFRACTORY_CLOCK_US = 0.035
# membrane switch between neighbouring circuits (multi-compartment neurons): a transmission
# gate with a finite on-resistance between two membrane capacitances
MEMBRANE_CAPACITANCE_PF = 2.4  # per circuit (all circuits alike; its spread is folded into
#                                the per-circuit time-constant and gain deviations)
SWITCH_RESISTANCE_KOHM = 20.0  # nominal on-resistance of one membrane switch
#: conductance of a closed switch relative to one membrane, 1 / (R_on C_mem) [1/us]
SWITCH_CONDUCTANCE_PER_US = 1.0 / (SWITCH_RESISTANCE_KOHM * 1e3 * MEMBRANE_CAPACITANCE_PF * 1e-12) * 1e-6

# --- mismatch and noise magnitudes (standard deviations) -----------------------------
SPREAD = {
    "v_gain": 0.04,  # relative
    "v_offset": 0.020,  # V
    "tau_scale": 0.25,  # log-normal sigma
    "tau_kappa": 0.03,  # relative
    "syn_gain": 0.20,  # log-normal sigma
    "lin_gain": 0.15,  # adaptation, bias current, Delta_T
    "refractory_clock": 0.04,
    "driver_gain": 0.05,
    "synapse_gain": 0.03,
    "cadc_gain": 0.015,
    "cadc_offset_lsb": 1.5,
    "madc_gain": 0.01,
    "madc_offset_lsb": 3.0,
    "corr_amp": 0.10,  # log-normal sigma, per synapse and direction
    "corr_tau": 0.10,  # log-normal sigma, per synapse and direction
    "corr_offset_lsb": 1.0,  # readout offset per synapse and direction
    "stp_utilization": 0.05,  # relative, per driver
    "stp_tau": 0.10,  # log-normal sigma, per driver
    "switch_conductance": 0.25,  # log-normal sigma, per membrane switch
}
NOISE = {
    "membrane_v": 0.002,  # stationary std of the membrane noise [V]
    "cadc_lsb": 0.7,  # readout noise per CADC sample
    "madc_lsb": 1.5,  # readout noise per MADC sample
}

_VOLTAGE_CELLS = ("v_leak", "v_reset", "v_threshold", "v_exp", "e_rev_exc", "e_rev_inh")
_TAU_CELLS = {
    "i_bias_leak": ("tau_mem_us", TAU_MEM_0_US, TAU_MEM_MIN_US),
    "i_bias_syn_exc": ("tau_syn_exc_us", TAU_SYN_0_US, TAU_SYN_MIN_US),
    "i_bias_syn_inh": ("tau_syn_inh_us", TAU_SYN_0_US, TAU_SYN_MIN_US),
    "i_adapt_tau": ("tau_w_us", TAU_W_0_US, TAU_W_MIN_US),
}
_LINEAR_CELLS = {
    "i_syn_gm_exc": ("syn_gain_exc", SYN_GAIN_MAX),
    "i_syn_gm_inh": ("syn_gain_inh", SYN_GAIN_MAX),
    "i_adapt_a": ("adapt_a", ADAPT_A_MAX),
    "i_adapt_b": ("adapt_b", ADAPT_B_MAX),
    "i_bias_const": ("bias_current", BIAS_CURRENT_MAX),
    "i_exp": ("delta_t_v", DELTA_T_MAX_V),
}


@dataclass(frozen=True)
class CircuitParameters:
    """Physical parameters of all 512 circuits, as the engine integrates them."""

    v_leak: np.ndarray  # V
    v_reset: np.ndarray
    v_threshold: np.ndarray
    v_exp: np.ndarray
    e_rev_exc: np.ndarray
    e_rev_inh: np.ndarray
    tau_mem_us: np.ndarray
    tau_syn_exc_us: np.ndarray
    tau_syn_inh_us: np.ndarray
    tau_w_us: np.ndarray
    syn_gain_exc: np.ndarray  # V/us per weight LSB (or 1/us per LSB in COBA mode)
    syn_gain_inh: np.ndarray
    adapt_a: np.ndarray  # 1/us
    adapt_b: np.ndarray  # V/us
    bias_current: np.ndarray  # V/us, signed, zero where switched off
    delta_t_v: np.ndarray  # V
    refractory_us: np.ndarray
    noise_sigma_v: np.ndarray  # stationary membrane noise [V]


class HiddenPhysics:
    """Seeded fixed-pattern deviations and noise magnitudes of one chip."""

    def __init__(self, seed: int, mismatch: bool, noise: bool):
        self.seed = int(seed)
        self.mismatch = bool(mismatch)
        self.noise = bool(noise)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x6253532]))
        n = C.N_CIRCUITS
        s = SPREAD if mismatch else {k: 0.0 for k in SPREAD}

        def normal(shape, sigma):
            # draw even when sigma is 0 so every field keeps its own random stream
            return rng.standard_normal(shape) * sigma

        self.v_gain = {c: 1.0 + normal(n, s["v_gain"]) for c in _VOLTAGE_CELLS}
        self.v_offset = {c: normal(n, s["v_offset"]) for c in _VOLTAGE_CELLS}
        self.tau_scale = {c: np.exp(normal(n, s["tau_scale"])) for c in _TAU_CELLS}
        self.tau_kappa = {c: 1.0 + normal(n, s["tau_kappa"]) for c in _TAU_CELLS}
        self.lin_gain = {
            c: np.exp(normal(n, s["syn_gain"] if c.startswith("i_syn") else s["lin_gain"]))
            for c in _LINEAR_CELLS
        }
        self.refractory_clock = REFRACTORY_CLOCK_US * (1.0 + normal(n, s["refractory_clock"]))
        self.driver_gain = 1.0 + normal((C.N_HEMISPHERES, C.N_DRIVERS), s["driver_gain"])
        self.synapse_gain = 1.0 + normal((C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS), s["synapse_gain"])
        self.cadc_gain = 1.0 + normal(n, s["cadc_gain"])
        self.cadc_offset_lsb = normal(n, s["cadc_offset_lsb"])
        self.madc_gain = 1.0 + normal(n, s["madc_gain"])
        self.madc_offset_lsb = normal(n, s["madc_offset_lsb"])
        noise_scale = np.exp(normal(n, 0.2 if mismatch else 0.0))
        self.noise_sigma_v = NOISE["membrane_v"] * noise_scale if noise else np.zeros(n)
        self.cadc_noise_lsb = NOISE["cadc_lsb"] if noise else 0.0
        self.madc_noise_lsb = NOISE["madc_lsb"] if noise else 0.0
        self._plasticity_mismatch = None
        self._switch_conductance = None

    @property
    def switch_conductance(self) -> np.ndarray:
        """Conductance of each circuit's membrane switch to its right neighbour, relative to
        one membrane capacitance [1/us], shape (512,): nominal
        :data:`SWITCH_CONDUCTANCE_PER_US` times a log-normal per-switch factor (drawn on
        first use from a stream of its own; 1 without mismatch)."""
        if self._switch_conductance is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x535743]))
            sigma = SPREAD["switch_conductance"] if self.mismatch else 0.0
            self._switch_conductance = SWITCH_CONDUCTANCE_PER_US * np.exp(
                rng.standard_normal(C.N_CIRCUITS) * sigma
            )
        return self._switch_conductance

    def _plasticity_deviations(self) -> dict:
        """Per-synapse sensor and per-driver STP deviations, drawn once on first use."""
        if self._plasticity_mismatch is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x504C4153]))
            s = SPREAD if self.mismatch else {k: 0.0 for k in SPREAD}
            syn = (C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS)
            drv = (C.N_HEMISPHERES, C.N_DRIVERS)
            dev = {}
            for direction in ("causal", "acausal"):
                dev[f"amp_{direction}"] = np.exp(rng.standard_normal(syn) * s["corr_amp"])
                dev[f"tau_{direction}"] = np.exp(rng.standard_normal(syn) * s["corr_tau"])
                dev[f"offset_{direction}"] = rng.standard_normal(syn) * s["corr_offset_lsb"]
            dev["stp_utilization"] = 1.0 + rng.standard_normal(drv) * s["stp_utilization"]
            dev["stp_tau_rec"] = np.exp(rng.standard_normal(drv) * s["stp_tau"])
            dev["stp_tau_fac"] = np.exp(rng.standard_normal(drv) * s["stp_tau"])
            self._plasticity_mismatch = dev
        return self._plasticity_mismatch

    def correlation_parameters(self, capmem: dict, hemisphere, row, column) -> dict:
        """Sensor parameters of the synapses ``(hemisphere, row, column)`` (index arrays).

        ``capmem`` holds the per-hemisphere cells ``corr_tau_causal``, ``corr_tau_acausal``,
        ``corr_amp_causal``, ``corr_amp_acausal``. Returns per synapse ``eta_causal``,
        ``eta_acausal`` [sensor LSB per pair at zero delay], ``tau_causal_us``,
        ``tau_acausal_us`` [us] and ``offset_causal``, ``offset_acausal`` [LSB].
        """
        dev = self._plasticity_deviations()
        idx = (hemisphere, row, column)
        out = {}
        for direction in ("causal", "acausal"):
            c_tau = np.asarray(capmem[f"corr_tau_{direction}"], dtype=np.float64)  # per hemisphere
            c_amp = np.asarray(capmem[f"corr_amp_{direction}"], dtype=np.float64)
            tau = C.CORR_TAU_MAX_US * (C.CORR_TAU_MIN_US / C.CORR_TAU_MAX_US) ** (c_tau / C.CAPMEM_MAX)
            eta = C.CORR_AMP_MAX_LSB * c_amp / C.CAPMEM_MAX
            out[f"tau_{direction}_us"] = tau[hemisphere] * dev[f"tau_{direction}"][idx]
            out[f"eta_{direction}"] = eta[hemisphere] * dev[f"amp_{direction}"][idx]
            out[f"offset_{direction}"] = dev[f"offset_{direction}"][idx].copy()
        return out

    def stp_parameters(self, capmem: dict) -> dict:
        """Short-term plasticity of all drivers, shape (2, 128) each: ``utilization``
        (0..1), ``tau_rec_us`` and ``tau_fac_us`` [us], from the per-driver CapMem cells
        ``stp_utilization``, ``stp_tau_rec``, ``stp_tau_fac``."""
        dev = self._plasticity_deviations()
        ratio = C.STP_TAU_MIN_US / C.STP_TAU_MAX_US
        u = np.asarray(capmem["stp_utilization"], dtype=np.float64) / C.CAPMEM_MAX
        out = {"utilization": np.clip(u * dev["stp_utilization"], 0.0, 1.0)}
        for name in ("rec", "fac"):
            c = np.asarray(capmem[f"stp_tau_{name}"], dtype=np.float64)
            out[f"tau_{name}_us"] = C.STP_TAU_MAX_US * ratio ** (c / C.CAPMEM_MAX) * dev[f"stp_tau_{name}"]
        return out

    def circuit_parameters(self, capmem: dict, switches: dict) -> CircuitParameters:
        """Physical parameters from CapMem values (dict of int arrays) and switches."""
        out = {}
        for cell in _VOLTAGE_CELLS:
            v = self.v_offset[cell] + self.v_gain[cell] * capmem[cell] * _V_PER_CAPMEM
            out[cell] = np.clip(v, 0.0, C.V_RAIL_V)
        for cell, (name, tau0, tau_min) in _TAU_CELLS.items():
            kappa = np.log(tau0 / tau_min) / C.CAPMEM_MAX * self.tau_kappa[cell]
            out[name] = self.tau_scale[cell] * tau0 * np.exp(-kappa * capmem[cell])
        for cell, (name, maximum) in _LINEAR_CELLS.items():
            out[name] = self.lin_gain[cell] * maximum * capmem[cell] / C.CAPMEM_MAX
        out["delta_t_v"] = out["delta_t_v"] + 1e-3  # the slope never vanishes fully
        sign = np.where(switches["bias_current_sink"], -1.0, 1.0)
        out["bias_current"] = np.where(switches["enable_bias_current"], sign * out["bias_current"], 0.0)
        out["refractory_us"] = self.refractory_clock * (capmem["refractory_time"] + 1.0)
        out["noise_sigma_v"] = self.noise_sigma_v.copy()
        names = {f.name for f in fields(CircuitParameters)}
        return CircuitParameters(**{k: np.asarray(v, dtype=np.float64) for k, v in out.items() if k in names})
