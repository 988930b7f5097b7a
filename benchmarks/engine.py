"""Speed of the virtual chip's engine.

- ``full_chip_lif_realtime_factor`` / ``full_chip_adex_realtime_factor``: all 512 circuits
  spiking, both synapse arrays fully in use (every one of the 131,072 synapses has a
  non-zero weight on an enabled row), background generators driving the network to about
  10 Hz mean rate (biological time), 1 s of biological time (1 ms hardware time) on one
  thread; factor = biological time / wall-clock time. Realistic chip (mismatch and noise),
  uncalibrated: the same CapMem values everywhere, so the fixed-pattern spread of leak and
  threshold leaves many circuits silent while others fire fast (the JSON reports the mean
  rate and the silent fraction).
- ``batch_trials_per_s``: a 5-120-3 feed-forward network (Yin-Yang size), 38 us hardware
  time per trial, 100 trials per call, CADC on; all cores.

Prints ``RESULT {json}`` as its last line. ``--quick`` shortens everything (for tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from cysim import ROW_EXC, ROW_INH, ChipConfig, Stimulus, VirtualChip, event_label
from cysim import constants as C


def full_chip_config(adex: bool, seed: int = 1) -> ChipConfig:
    rng = np.random.default_rng(seed)
    cfg = ChipConfig()
    cfg.enable_spiking = True
    cfg.enable_output = True
    cfg.i_bias_leak = 560  # tau_mem ~ 4 us
    cfg.i_bias_syn_exc = 500
    cfg.i_bias_syn_inh = 500
    cfg.refractory_time = 60  # ~2 us
    cfg.v_leak = 330
    cfg.v_reset = 300
    cfg.v_threshold = 470 if adex else 480
    # every synapse in use: 3/4 of the rows excitatory, 1/4 inhibitory, random labels
    modes = np.where(np.arange(C.N_ROWS) % 4 == 3, ROW_INH, ROW_EXC)
    cfg.row_modes = np.broadcast_to(modes, (2, C.N_ROWS))
    cfg.synapse_weights = rng.integers(1, 4, size=(2, C.N_ROWS, C.N_COLUMNS))
    cfg.synapse_labels = rng.integers(0, 64, size=(2, C.N_ROWS, C.N_COLUMNS))
    cfg.driver_row_select = rng.integers(0, 32, size=(2, C.N_DRIVERS))
    # each neuron's spikes go to one bus of its own hemisphere and one of the other
    own = (np.arange(512) // 256) * 4 + rng.integers(0, 4, 512)
    other = (1 - np.arange(512) // 256) * 4 + rng.integers(0, 4, 512)
    cfg.output_buses = (1 << own) | (1 << other)
    cfg.output_address = rng.integers(0, 2048, 512)
    # background: 8 Poisson generators, 1 event/us each, on all buses
    cfg.bg_mode = C.BG_POISSON
    cfg.bg_period_cycles = 250
    cfg.bg_buses = 0xFF
    cfg.bg_address = rng.integers(0, 2048, 8)
    cfg.bg_seed = np.arange(8)
    if adex:
        cfg.enable_exponential = True
        cfg.enable_adaptation = True
        cfg.v_exp = 440
        cfg.i_exp = 150
        cfg.i_adapt_a = 10
        cfg.i_adapt_b = 40
        cfg.i_adapt_tau = 400
    return cfg


def yinyang_config(seed: int = 2):
    """5 inputs (4 features + bias) -> 120 LIF -> 3 LI, signed weights on exc/inh rows."""
    rng = np.random.default_rng(seed)
    cfg = ChipConfig()
    hidden = np.arange(120)
    out = np.arange(256, 259)
    cfg.enable_spiking[hidden] = True
    cfg.enable_output[hidden] = True
    cfg.i_bias_leak = 520  # ~ 5 us
    cfg.i_bias_syn_exc = 420
    cfg.i_bias_syn_inh = 420
    cfg.v_leak = 300
    cfg.v_reset = 300
    cfg.v_threshold = 480
    labels = []
    for k in range(5):  # input k: rows 2k (exc) and 2k+1 (inh) of driver k in hemisphere 0
        cfg.driver_row_select[0, k] = 0
        cfg.row_modes[0, 2 * k] = ROW_EXC
        cfg.row_modes[0, 2 * k + 1] = ROW_INH
        w = rng.normal(0, 25, 120)
        cfg.synapse_weights[0, 2 * k, hidden] = np.clip(np.rint(w), 0, 63)
        cfg.synapse_weights[0, 2 * k + 1, hidden] = np.clip(np.rint(-w), 0, 63)
        cfg.synapse_labels[0, 2 * k, hidden] = k
        cfg.synapse_labels[0, 2 * k + 1, hidden] = k
        labels.append(event_label(k % 4, 0, k))
    # hidden -> output: hidden neuron j sends on bus 4 + j % 4 (hemisphere 1), address j
    cfg.output_buses[hidden] = 1 << (4 + hidden % 4)
    cfg.output_address[hidden] = (hidden // 4 % 32) << 6 | (hidden % 64)
    for j in hidden:
        d = int(j % 4 + 4 * (j // 4 % 32))  # a driver on bus j % 4 of hemisphere 1 ...
        d = d % 128
        cfg.driver_row_select[1, d] = int(j // 4 % 32)
        cfg.row_modes[1, 2 * d] = ROW_EXC
        cfg.row_modes[1, 2 * d + 1] = ROW_INH
        w = rng.normal(0, 15, 3)
        cfg.synapse_weights[1, 2 * d, out - 256] = np.clip(np.rint(w), 0, 63)
        cfg.synapse_weights[1, 2 * d + 1, out - 256] = np.clip(np.rint(-w), 0, 63)
        cfg.synapse_labels[1, 2 * d, out - 256] = int(j % 64)
        cfg.synapse_labels[1, 2 * d + 1, out - 256] = int(j % 64)
    return cfg, labels


def yinyang_stimulus(labels, trials: int, seed: int = 3) -> Stimulus:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(trials, 2))
    features = np.column_stack([x, 1 - x])  # [x, y, 1-x, 1-y]
    times = 2.0 + 24.0 * features  # t_early 2 us, t_late 26 us
    per_trial = [(np.r_[t, 2.0], labels) for t in times]  # plus a bias spike
    return Stimulus.from_trials(per_trial)


def bench_full_chip(adex: bool, duration_us: float, repeats: int):
    chip = VirtualChip(seed=0)
    cfg = full_chip_config(adex)
    t0 = time.perf_counter()
    first = chip.run(cfg, duration_us=duration_us, threads=1)
    first_s = time.perf_counter() - t0
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = chip.run(cfg, duration_us=duration_us, threads=1)
        walls.append(time.perf_counter() - t0)
    wall = float(np.median(walls))
    bio_s = duration_us * 1e-3  # 1 us hardware = 1 ms biological
    rates = res.spike_counts()[0] / bio_s
    return {
        "realtime_factor": bio_s / wall,
        "realtime_factor_first_run": bio_s / first_s,
        "wall_s": wall,
        "mean_rate_hz": float(rates.mean()),
        "fraction_silent": float(np.mean(rates == 0)),
        "synapses_in_use": int(np.count_nonzero(np.asarray(cfg.synapse_weights))),
        "spikes_first_run": int(first.spike_counts().sum()),
    }


def bench_batch(trials: int, calls: int):
    chip = VirtualChip(seed=0)
    cfg, labels = yinyang_config()
    stim = yinyang_stimulus(labels, trials)
    chip.run(cfg, stim, duration_us=38.0, trials=trials)
    walls = []
    for _ in range(calls):
        t0 = time.perf_counter()
        res = chip.run(cfg, stim, duration_us=38.0, trials=trials)
        walls.append(time.perf_counter() - t0)
    counts = res.spike_counts()
    return {
        "trials_per_s": trials / float(np.median(walls)),
        "hidden_spikes_per_trial": float(counts[:, :120].sum(axis=1).mean()),
        "threads": os.cpu_count(),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (seconds instead of a minute)")
    args = ap.parse_args(argv)
    duration = 100.0 if args.quick else 1000.0
    repeats = 1 if args.quick else 5
    lif = bench_full_chip(False, duration, repeats)
    print(f"full chip LIF : {lif['realtime_factor']:.1f}x real time, {lif['mean_rate_hz']:.1f} Hz")
    adex = bench_full_chip(True, duration, repeats)
    print(f"full chip AdEx: {adex['realtime_factor']:.1f}x real time, {adex['mean_rate_hz']:.1f} Hz")
    batch = bench_batch(20 if args.quick else 100, 2 if args.quick else 10)
    print(f"batch 5-120-3 : {batch['trials_per_s']:.0f} trials/s")
    result = {
        "full_chip_lif_realtime_factor": round(lif["realtime_factor"], 2),
        "full_chip_adex_realtime_factor": round(adex["realtime_factor"], 2),
        "batch_trials_per_s": round(batch["trials_per_s"], 1),
        "lif": lif,
        "adex": adex,
        "batch": batch,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
