"""Calibrate all circuits of a chip to LIF targets, by measurement.

The sequence, every step on all 512 circuits at once:

1. **leak**: spiking off, mean CADC reading; secant search of ``v_leak``.
2. **reset**: threshold below everything and a long refractory time clamp the membrane at
   the reset; search of ``v_reset``.
3. **sawtooth** (:func:`.measure.measure_sawtooth`): leak above the threshold, regular
   firing; joint search of ``i_bias_leak`` (tau_mem), ``v_threshold`` and
   ``refractory_time``.
4. **synaptic input** (:func:`.measure.measure_synaptic_input`): PSPs through 128 rows per
   receptor; joint search of ``i_bias_syn_exc/inh`` (tau_syn) and ``i_syn_gm_exc/inh``
   (gain per weight step).
5. **check**: every quantity measured again in fresh runs (new noise; the synaptic input
   through the other 128 rows than the search used). These are the reported residuals.

Logical (multi-compartment) neurons (``CalibrationTargets(compartments=...)``): these
steps run on the single circuits, then :func:`.compartments.calibrate_compartments`
calibrates the joined membranes.

Targets a circuit cannot reach raise :class:`~pynn_brainscales2.errors.CalibrationError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from cysim import ChipConfig, VirtualChip
from cysim import constants as C

from .. import hardware as hw
from ..errors import CalibrationError
from . import measure as M
from .search import Search
from .targets import UNITS, CalibrationTargets, _fmt_idx

#: bump when the procedure changes: cached results of other versions are recomputed
CALIBRATION_VERSION = "2"

#: CapMem cells a LIF calibration writes
LIF_CELLS = (
    "v_leak",
    "v_reset",
    "v_threshold",
    "i_bias_leak",
    "refractory_time",
    "i_bias_syn_exc",
    "i_bias_syn_inh",
    "i_syn_gm_exc",
    "i_syn_gm_inh",
)
#: CapMem cells written only where an optional target is given (cell -> that target)
_TARGET_OF_OPTIONAL_CELL = {
    "i_bias_const": "bias_current",
    "v_exp": "v_exp_lsb",
    "i_exp": "delta_t_lsb",
    "i_adapt_a": "adapt_a",
    "i_adapt_b": "adapt_b",
    "i_adapt_tau": "tau_w_us",
}
# nominal design transfer of the voltage cells (hardware.CAPMEM_PER_LSB, about 4 CapMem
# steps per CADC LSB); only used to place the first probes
_CAPMEM_PER_LSB = hw.CAPMEM_PER_LSB
_ITERATIONS = 3


# nominal design transfer of the synaptic cells, only used to size the first probe PSPs
def _nominal_tau_syn(capmem):
    return 80.0 * np.exp(-np.log(80.0 / 0.12) * np.asarray(capmem) / C.CAPMEM_MAX)


def _tau_probes(target_us, tau_at_0, tau_at_max):
    """Two CapMem probes around the nominal setting of a bias-current time constant."""
    x = np.log(tau_at_0 / np.asarray(target_us)) / np.log(tau_at_0 / tau_at_max) * C.CAPMEM_MAX
    return x - 80, x + 80


def _nominal_syn_gain(capmem):
    return np.asarray(capmem) / C.CAPMEM_MAX * hw.SYN_GAIN_LSB_PER_US_AT_MAX  # LSB/us per step


@dataclass(frozen=True)
class CalibrationResult:
    """CapMem values found for every circuit, and what the check measured.

    ``capmem[cell]`` are int arrays of 512 values; ``measured[name]`` and
    ``residual[name]`` use the target names of :class:`CalibrationTargets` (residuals of time
    constants and gains are relative, of potentials in LSB, NaN for circuits not calibrated).
    """

    targets: CalibrationTargets
    capmem: dict
    measured: dict
    residual: dict
    chip_seed: int
    version: str = CALIBRATION_VERSION
    seconds: float = 0.0
    from_cache: bool = False
    runs: int = 0
    extra: dict = field(default_factory=dict)

    def apply(self, config: ChipConfig, circuits=None) -> ChipConfig:
        """Write the calibrated CapMem values of ``circuits`` (default: the calibrated ones);
        ``i_bias_const`` only where a bias-current target was given, the AdEx cells only where
        their family's targets were given (the bias and AdEx switches stay as they are)."""
        sel = self.targets.circuits if circuits is None else circuits
        for cell, values in self.capmem.items():
            mask = sel
            gate = _TARGET_OF_OPTIONAL_CELL.get(cell)
            if gate is not None:
                mask = np.zeros(len(values), bool)
                mask[sel] = True
                mask &= np.isfinite(self.targets.array(gate))
            getattr(config, cell)[mask] = np.asarray(values)[mask]
        return config

    def summary(self) -> dict:
        """Largest absolute residual of each quantity over the calibrated circuits."""
        return {k: float(np.nanmax(np.abs(v))) for k, v in self.residual.items()}


def _raise_unreached(search: Search, name: str, what: str = "") -> None:
    # unreachable: missed by more than the tolerance with the setting at a CapMem end
    # (a miss inside the range is measurement noise; it shows in the reported residual)
    bad = search.failed() & ((search.x == 0) | (search.x == C.CAPMEM_MAX))
    if not bad.any():
        return
    circuits = np.flatnonzero(bad)
    reach = []
    for b, label in ((0, "CapMem 0"), (C.CAPMEM_MAX, f"CapMem {C.CAPMEM_MAX}")):
        vals = search.bound_values.get(b)
        if vals is not None and np.isfinite(vals[bad]).any():
            v = vals[bad][np.isfinite(vals[bad])]
            reach.append(f"{v.min():.3g}..{v.max():.3g} {UNITS[name]} at {label}")
    tgt = search.target[bad]
    meas = search.measured[bad]
    raise CalibrationError(
        f"{name}: target {tgt.min():.4g}..{tgt.max():.4g} {UNITS[name]} cannot be reached on circuit(s) "
        f"{_fmt_idx(circuits)}{what}; measured {np.nanmin(meas):.4g}..{np.nanmax(meas):.4g} {UNITS[name]} at the "
        f"closest setting" + (f" (reachable end: {'; '.join(reach)})" if reach else "") + ". "
        "Choose a target inside what these circuits reach, or leave them out of the calibration."
    )


def _potential_search(chip, config, cell: str, target, fill, iterations: int):
    """Secant search of a voltage cell whose value is the mean CADC reading of ``config``
    (leak with spiking off; reset with the membrane clamped). Returns (search, runs)."""
    search = Search(cell, target, (fill * _CAPMEM_PER_LSB - 60, fill * _CAPMEM_PER_LSB + 60), tolerance=2.0)

    def measure(settings):
        c = config.copy()
        setattr(c, cell, settings[cell])
        return {cell: M.measure_potential(chip, c)}

    return search, _run_search([search], measure, iterations)


def _run_search(searches: list[Search], measure, iterations: int) -> int:
    runs = 0
    for _ in range(2 + iterations):
        settings = {s.cell: s.next_values() for s in searches}
        results = measure(settings)
        runs += 1
        for s in searches:
            s.record(results[s.cell])
    return runs


def _base_config() -> ChipConfig:
    cfg = ChipConfig()
    cfg.enable_spiking = False
    M.clear_synaptic_input(cfg)
    return cfg


def calibrate_lif(
    chip: VirtualChip, targets: CalibrationTargets, iterations: int = _ITERATIONS
) -> CalibrationResult:
    """Find CapMem values that give every selected circuit the LIF ``targets`` (and, where
    given, the bias current: :func:`.bias.calibrate_bias`, and the AdEx terms:
    :func:`.adex.calibrate_adex`).

    Parameters
    ----------
    chip : the chip to measure
    targets : per-circuit targets in hardware units (checked against the documented ranges
        before anything is measured)
    iterations : secant refinements after the two probes of each search

    Returns
    -------
    CalibrationResult

    Raises
    ------
    CalibrationError
        if circuits cannot reach their targets (names parameter, target, circuits and the
        reachable end).
    """
    targets.check()
    if targets.has_compartments:
        from .compartments import calibrate_compartments

        base = calibrate_lif(chip, targets.per_circuit(), iterations)
        return calibrate_compartments(chip, base, targets)
    if targets.has_adex:
        from .adex import calibrate_adex

        base = calibrate_lif(chip, targets.without_adex(), iterations)
        return calibrate_adex(chip, base, targets)
    if targets.has_bias:
        from .bias import calibrate_bias

        base = calibrate_lif(chip, targets.without_bias(), iterations)
        return calibrate_bias(chip, base, targets, iterations)
    t0 = time.perf_counter()
    sel = targets.circuits
    T = {name: np.where(sel, targets.array(name), np.nan) for name in targets.names}
    fill = {name: np.where(sel, targets.array(name), np.nanmedian(T[name])) for name in targets.names}
    runs = 0
    cfg = _base_config()

    # 1. leak, 2. reset (the membrane clamped at it) ----------------------------------------
    leak, n = _potential_search(chip, cfg, "v_leak", T["leak_lsb"], fill["leak_lsb"], iterations)
    runs += n
    _raise_unreached(leak, "leak_lsb")
    cfg.v_leak = leak.x
    reset, n = _potential_search(
        chip, M.reset_clamp(cfg), "v_reset", T["reset_lsb"], fill["reset_lsb"], iterations
    )
    runs += n
    _raise_unreached(reset, "reset_lsb")
    cfg.v_reset = reset.x

    # 3. sawtooth: tau_mem, threshold, refractory ------------------------------------------
    th = fill["threshold_lsb"]
    scfg = cfg.copy()
    scfg.v_leak = leak.setting_for(np.minimum(th + 35.0, 245.0))
    saw_leak = M.measure_potential(chip, scfg, trials=4)
    runs += 1
    saw_reset_target = np.maximum(np.minimum(fill["reset_lsb"], th - 40.0), 35.0)
    scfg.v_reset = reset.setting_for(saw_reset_target)
    saw_reset = M.measure_potential(chip, M.reset_clamp(scfg))
    runs += 1
    ref_t = fill["refractory_us"]
    ref_guess = ref_t / 0.035 - 1.0  # nominal refractory clock 35 ns per step
    searches = [
        Search(
            "i_bias_leak",
            T["tau_mem_us"],
            _tau_probes(fill["tau_mem_us"], 150.0, 0.2),
            log=True,
            tolerance=0.02,
        ),
        Search(
            "v_threshold",
            T["threshold_lsb"],
            (th * _CAPMEM_PER_LSB - 30, th * _CAPMEM_PER_LSB + 30),
            tolerance=2.0,
            nan_step=-40,
        ),
        Search(
            "refractory_time", T["refractory_us"], (ref_guess * 0.8 - 1, ref_guess * 1.2 + 2), tolerance=0.0
        ),
    ]
    state = {"duration": 1500.0}

    saw_calls = [0]

    def measure_saw(settings, trials=None):
        c = scfg.copy()
        for cell, values in settings.items():
            setattr(c, cell, values)
        if trials is None:  # coarse probes, finer refinements
            trials = 2 if saw_calls[0] < 2 else 4
        saw_calls[0] += 1
        r = M.measure_sawtooth(chip, c, saw_leak, saw_reset, duration_us=state["duration"], trials=trials)
        isi = r.isi_us[sel & np.isfinite(r.isi_us)]
        if isi.size:
            state["duration"] = float(np.clip(20.0 * np.percentile(isi, 99), 80.0, 3000.0))
        return {
            "i_bias_leak": r.tau_mem_us,
            "v_threshold": r.threshold_lsb,
            "refractory_time": r.refractory_us,
        }

    runs += _run_search(searches, measure_saw, iterations)
    tau_s, th_s, ref_s = searches
    _raise_unreached(tau_s, "tau_mem_us")
    _raise_unreached(th_s, "threshold_lsb")
    tau_s.x = tau_s.fitted()
    for s in searches:
        setattr(cfg, s.cell, s.x)
    # the PSP fits below need tau_mem precisely (an error of the assumed tau_mem moves the
    # fitted tau_syn by several times as much): measure it once more, long, and read it off
    # the line through this and the search's measurements
    tau_mem_measured = measure_saw({s.cell: s.x for s in searches}, trials=32)["i_bias_leak"]
    runs += 1
    tau_s.record_extra(tau_s.x, tau_mem_measured)
    line = tau_s.line_value(tau_s.x)
    tau_mem_measured = np.where(np.isfinite(line), line, tau_mem_measured)

    # 4. synaptic input ----------------------------------------------------------------
    # PSPs with the calibrated membrane (tau_mem from the sawtooth) give tau_syn and gains
    pcfg = cfg.copy()
    pcfg.v_leak = leak.setting_for(np.full(512, 125.0))
    tau_m = np.where(np.isfinite(tau_mem_measured), tau_mem_measured, fill["tau_mem_us"])
    tau_syn_t = np.maximum(fill["tau_syn_exc_us"], fill["tau_syn_inh_us"])
    windows = {
        "slow": float(np.clip(4.0 * np.nanmax(np.maximum(tau_syn_t, tau_m)), 8.0, 400.0)),
    }
    searches = [
        Search(
            "i_bias_syn_exc",
            T["tau_syn_exc_us"],
            _tau_probes(fill["tau_syn_exc_us"], 80.0, 0.12),
            log=True,
            tolerance=0.02,
        ),
        Search(
            "i_bias_syn_inh",
            T["tau_syn_inh_us"],
            _tau_probes(fill["tau_syn_inh_us"], 80.0, 0.12),
            log=True,
            tolerance=0.02,
        ),
        Search(
            "i_syn_gm_exc",
            T["syn_gain_exc"],
            (fill["syn_gain_exc"] * C.CAPMEM_MAX * 0.7, fill["syn_gain_exc"] * C.CAPMEM_MAX * 1.4 + 20),
            relative=True,
            tolerance=0.03,
        ),
        Search(
            "i_syn_gm_inh",
            T["syn_gain_inh"],
            (fill["syn_gain_inh"] * C.CAPMEM_MAX * 0.7, fill["syn_gain_inh"] * C.CAPMEM_MAX * 1.4 + 20),
            relative=True,
            tolerance=0.03,
        ),
    ]
    by_cell = {s.cell: s for s in searches}

    def psp_weights(settings, tau_mem):
        """Total weight steps per circuit that give PSPs of about 50 LSB with the expected gains."""
        weights, expected = {}, []
        for kind in ("exc", "inh"):
            ts = by_cell[f"i_bias_syn_{kind}"].predict(settings[f"i_bias_syn_{kind}"], _nominal_tau_syn)
            g = by_cell[f"i_syn_gm_{kind}"].predict(settings[f"i_syn_gm_{kind}"], _nominal_syn_gain)
            peak = g * M.psp_peak(ts, tau_mem)
            weights[kind] = np.clip(np.rint(50.0 / peak), 8, 128 * C.WEIGHT_MAX)
            expected.append(ts[np.isfinite(ts)])
        expected = np.concatenate(expected)
        # tau_syn candidates: 2 % steps around the expected values
        lo, hi = max(0.02, expected.min() / 3.0), min(500.0, expected.max() * 3.0)
        grid = np.exp(np.arange(np.log(lo), np.log(hi), np.log(1.02)))
        return weights, grid

    syn_calls = [0]

    def measure_syn(settings, buses=M.SEARCH_BUSES, phases=None):
        if phases is None:  # coarse probes, finer refinements
            phases = 8 if syn_calls[0] < 2 else 24
        syn_calls[0] += 1
        out = {}
        slow = pcfg.copy()
        for cell, values in settings.items():
            setattr(slow, cell, values)
        full = {cell: np.asarray(getattr(slow, cell)) for cell in by_cell}
        weights, grid = psp_weights(full, tau_m)
        r = M.measure_synaptic_input(
            chip, slow, tau_m, weights, windows["slow"], buses=buses, phases=phases, tau_grid=grid
        )
        out["i_bias_syn_exc"], out["i_bias_syn_inh"] = r.tau_syn_exc_us, r.tau_syn_inh_us
        out["i_syn_gm_exc"], out["i_syn_gm_inh"] = r.gain_exc, r.gain_inh
        return out

    runs += _run_search(searches, measure_syn, iterations)
    for s, name in zip(
        searches, ("tau_syn_exc_us", "tau_syn_inh_us", "syn_gain_exc", "syn_gain_inh"), strict=True
    ):
        _raise_unreached(s, name)
        setattr(cfg, s.cell, s.fitted())

    # 5. independent check -----------------------------------------------------------------
    measured = {}
    measured["leak_lsb"] = M.measure_potential(chip, cfg, duration_us=60.0, trials=4)
    measured["reset_lsb"] = M.measure_potential(chip, M.reset_clamp(cfg), duration_us=60.0, trials=4)
    c = cfg.copy()
    c.v_leak = scfg.v_leak
    c.v_reset = scfg.v_reset
    r = M.measure_sawtooth(chip, c, saw_leak, saw_reset, duration_us=state["duration"], trials=8)
    measured["tau_mem_us"], measured["threshold_lsb"], measured["refractory_us"] = (
        r.tau_mem_us,
        r.threshold_lsb,
        r.refractory_us,
    )
    tau_m = np.where(np.isfinite(r.tau_mem_us), r.tau_mem_us, tau_m)
    for cell in by_cell:
        setattr(pcfg, cell, np.asarray(getattr(cfg, cell)))
    r = measure_syn({}, buses=M.CHECK_BUSES, phases=48)
    measured["tau_syn_exc_us"] = r["i_bias_syn_exc"]
    measured["tau_syn_inh_us"] = r["i_bias_syn_inh"]
    measured["syn_gain_exc"] = r["i_syn_gm_exc"]
    measured["syn_gain_inh"] = r["i_syn_gm_inh"]
    runs += 6
    residual = {}
    for name, m in measured.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = name.endswith("_us") or name.startswith("syn_gain")
            r_ = m / T[name] - 1.0 if rel else m - T[name]
        residual[name] = np.where(sel, r_, np.nan)
    capmem = {cell: np.asarray(getattr(cfg, cell)).astype(np.int16) for cell in LIF_CELLS}
    return CalibrationResult(
        targets=targets,
        capmem=capmem,
        measured={k: np.where(sel, v, np.nan) for k, v in measured.items()},
        residual=residual,
        chip_seed=chip.seed,
        seconds=time.perf_counter() - t0,
        runs=runs,
    )
