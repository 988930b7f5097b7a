"""Calibrate logical (multi-compartment) neurons as a whole, by measurement.

A logical neuron is a run of ``c`` neighbouring circuits whose membranes are joined by
closed ``connect_membrane_right`` switches (see ``docs/virtual_chip.md``). Its targets
(:class:`~.targets.CalibrationTargets` with ``compartments``) describe the shared
membrane: leak, reset, threshold (of the leftmost, spiking circuit), tau_mem, tau_syn and
the synaptic gain per weight step through *any* of its ``c`` columns.

1. **single circuits** (switches open): the usual LIF calibration
   (:func:`.lif.calibrate_lif`) of every circuit to the neuron's targets, the synaptic
   gains times ``c`` (:meth:`~.targets.CalibrationTargets.per_circuit`): joined, ``c`` equal
   membranes sum their leak conductances and capacitances, keep tau_mem and the leak
   potential, and a synaptic current moves the shared membrane ``c`` times less.
2. **joined** (switches closed): the membrane switches are not ideal and the circuits not
   equal, so the gain of every column is measured where it matters, on the shared
   membrane. Per compartment position ``o`` one run sends PSPs into column ``o`` of every
   logical neuron only and fits them on the spiking circuit's CADC trace, with the shared
   membrane's time constant taken from step 1 (joined leak conductances and capacitances
   add, so circuits of equal ``tau_mem = C_i / g_i`` keep it: ``c / sum(1 / tau_i)`` of the
   measured ones; fitting it along would trade it against ``tau_syn``, the PSP kernel being
   symmetric in the two); each column's gain cell is rescaled by
   ``target / measured`` (the gain is proportional to the cell), ``iterations`` times.
   Before that, the leak of the shared membrane, read on the spiking circuit, is moved to
   its target by shifting the leak cells of all its circuits alike (``iterations`` times).
3. **check**: the leak of the joined membranes (on the spiking circuit) and the PSPs of every column measured again
   through other synapse drivers and rows (as the LIF check does); these are the reported
   ``measured`` and ``residual`` values of the joined circuits (``syn_gain_*`` and
   ``tau_syn_*`` of a circuit: those of its column, seen on the spiking circuit).

Nothing here reads the chip's hidden parameters (switch conductances included).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from cysim import compartment_runs
from cysim import constants as C

from . import measure as M
from .lif import _CAPMEM_PER_LSB, CalibrationResult, _base_config
from .targets import CalibrationTargets

N = C.N_CIRCUITS
_ITERATIONS = 2


def _layout(targets: CalibrationTargets):
    """Per circuit: the spiking (leftmost) circuit of its neuron and its position in it."""
    head = np.arange(N)
    pos = np.zeros(N, dtype=np.int64)
    for run in compartment_runs(targets.compartments):
        head[run] = run[0]
        pos[run] = np.arange(run.size)
    return head, pos


def measure_column_psps(chip, config, targets: CalibrationTargets, joined, buses, phases, tau_mem_us=None):
    """PSPs of every column of the joined circuits ``joined`` (bool, per circuit), each
    seen on the spiking circuit of its logical neuron: ``{name: per-circuit values}`` for
    ``tau_syn_exc_us``, ``tau_syn_inh_us``, ``syn_gain_exc``, ``syn_gain_inh``."""
    head, pos = _layout(targets)
    sel = targets.circuits & joined
    tau_m = np.where(np.isfinite(targets.tau_mem_us), targets.tau_mem_us, 10.0)
    if tau_mem_us is not None:
        tau_m = np.where(np.isfinite(tau_mem_us), tau_mem_us, tau_m)
    tau_s = np.maximum(targets.tau_syn_exc_us, targets.tau_syn_inh_us)
    window = float(np.clip(4.0 * np.nanmax(np.maximum(tau_s, tau_m)[sel]), 8.0, 400.0))
    weights = {}
    for kind in ("exc", "inh"):
        g = targets.array(f"syn_gain_{kind}")[sel]
        peak = g * M.psp_peak(targets.array(f"tau_syn_{kind}_us")[sel], tau_m[sel])
        weights[kind] = float(np.clip(np.rint(50.0 / np.median(peak)), 8, 128 * C.WEIGHT_MAX))
    out = {
        n: np.full(N, np.nan) for n in ("tau_syn_exc_us", "tau_syn_inh_us", "syn_gain_exc", "syn_gain_inh")
    }
    for o in range(int(pos[sel].max()) + 1 if sel.any() else 0):
        cols = sel & (pos == o)
        r = M.measure_synaptic_input(
            chip,
            config,
            tau_m,
            weights,
            window,
            buses=buses,
            phases=phases,
            columns=cols,
        )
        x = np.flatnonzero(cols)
        out["tau_syn_exc_us"][x] = r.tau_syn_exc_us[head[x]]
        out["tau_syn_inh_us"][x] = r.tau_syn_inh_us[head[x]]
        out["syn_gain_exc"][x] = r.gain_exc[head[x]]
        out["syn_gain_inh"][x] = r.gain_inh[head[x]]
    return out


def calibrate_compartments(
    chip, base: CalibrationResult, targets: CalibrationTargets, iterations: int = _ITERATIONS
) -> CalibrationResult:
    """Refine a per-circuit calibration ``base`` (of ``targets.per_circuit()``) for the
    logical neurons of ``targets.compartments``; see the module documentation."""
    t0 = time.perf_counter()
    sel = targets.circuits
    joined = targets.neuron_size() > 1
    cfg = base.apply(_base_config())
    cfg.connect_membrane_right = targets.compartments
    # PSPs around 125 LSB (room for inhibitory ones above the CADC's reliable floor)
    shift = np.rint(
        (125.0 - np.where(np.isfinite(targets.leak_lsb), targets.leak_lsb, 125.0)) * _CAPMEM_PER_LSB
    )
    runs = base.runs
    head, _ = _layout(targets)
    upd = sel & joined
    # the shared membrane's leak, read on the spiking circuit: every circuit of the neuron
    # moves its leak cell by the same amount (secant-free: the nominal CapMem per LSB)
    for _ in range(iterations):
        leak = M.measure_potential(chip, cfg, duration_us=40.0, trials=3)
        runs += 1
        step = np.rint((targets.leak_lsb - leak[head]) * _CAPMEM_PER_LSB)
        new = np.where(upd & np.isfinite(step), np.asarray(cfg.v_leak) + step, np.asarray(cfg.v_leak))
        cfg.v_leak = np.clip(new, 0, C.CAPMEM_MAX).astype(np.int64)
    cells = {"exc": "i_syn_gm_exc", "inh": "i_syn_gm_inh"}
    tau_joint = np.full(N, np.nan)
    tau_base = base.measured["tau_mem_us"]
    for run in compartment_runs(targets.compartments):
        tau_joint[run] = run.size / np.sum(1.0 / tau_base[run])
    pcfg = cfg.copy()
    pcfg.v_leak = np.clip(np.asarray(cfg.v_leak) + np.where(sel, shift, 0), 0, C.CAPMEM_MAX)
    for _ in range(iterations):
        m = measure_column_psps(chip, pcfg, targets, joined, M.SEARCH_BUSES, phases=24, tau_mem_us=tau_joint)
        runs += 1
        for kind, cell in cells.items():
            now = np.asarray(getattr(pcfg, cell), dtype=np.float64)
            ratio = targets.array(f"syn_gain_{kind}") / m[f"syn_gain_{kind}"]
            ok = sel & joined & np.isfinite(ratio) & (ratio > 0)
            new = np.where(ok, np.clip(np.rint(now * np.clip(ratio, 0.5, 2.0)), 1, C.CAPMEM_MAX), now)
            setattr(pcfg, cell, new.astype(np.int64))
            setattr(cfg, cell, new.astype(np.int64))

    # check: joined leak, and every column's PSPs through the other drivers and rows
    measured = {k: np.array(v, dtype=np.float64) for k, v in base.measured.items()}
    leak = M.measure_potential(chip, cfg, duration_us=60.0, trials=4)
    m = measure_column_psps(chip, pcfg, targets, joined, M.CHECK_BUSES, phases=48, tau_mem_us=tau_joint)
    runs += 2
    measured["leak_lsb"] = np.where(upd, leak[head], measured["leak_lsb"])
    for name, v in m.items():
        measured[name] = np.where(upd, v, measured[name])
    residual = {}
    for name, v in measured.items():
        t = targets.array(name)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = name.endswith("_us") or name.startswith("syn_gain") or name in ("bias_current",)
            r_ = v / t - 1.0 if rel else v - t
        residual[name] = np.where(sel, r_, np.nan) if name in base.residual else r_
    residual = {k: residual[k] for k in base.residual}
    capmem = dict(base.capmem)
    for cell in cells.values():
        capmem[cell] = np.asarray(getattr(cfg, cell)).astype(np.int16)
    return replace(
        base,
        targets=targets,
        capmem=capmem,
        measured={k: np.where(sel, v, np.nan) for k, v in measured.items() if k in base.measured},
        residual=residual,
        seconds=base.seconds + time.perf_counter() - t0,
        runs=runs,
        from_cache=False,
        extra={
            **base.extra,
            "compartments": {"logical_neurons": len(compartment_runs(targets.compartments))},
        },
    )
