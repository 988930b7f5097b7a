"""Cost of the virtual plasticity processors (``VirtualChip.run(..., plasticity=...)``).

- ``tick_overhead_us``: wall time per kernel call of a kernel that does nothing: a small
  network (the 5-120-3 network of ``benchmarks/engine.py``, one trial, 400 us hardware
  time) with a no-op program ticking every 0.1 us, minus the same run with one tick,
  divided by the number of extra ticks. It covers pausing and resuming the engine, the
  context and the call.
- ``stdp_full_array_slowdown``: the full-chip LIF network of ``benchmarks/engine.py``
  (every one of the 131,072 synapses in use, realistic chip) with an additive STDP kernel
  on the correlation sensors of all synapses, ticking every 1 us hardware time (1 ms
  biological), divided by the wall time of the same run without plasticity. The kernel
  is NumPy on the 8-bit sensor readouts and the int16 weights, like the fixed-point
  vector code of the real PPU: ``w += (causal >> 5) - (acausal >> 5)``, then a sensor reset.
- ``plastic_path_overhead``: a run with a one-tick no-op program (so on the event path:
  events queued and delivered at arrival with per-trial weights, sensors, counters) vs
  the same run without plasticity, for the full-chip network.

Prints ``RESULT {json}`` as its last line. ``--quick`` shortens everything (for tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import full_chip_config, yinyang_config, yinyang_stimulus  # noqa: E402

from cysim import PPUProgram, VirtualChip  # noqa: E402


def _median_wall(fn, repeats):
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
    return float(np.median(walls)), out


def noop(ctx):
    pass


def stdp(ctx):
    """Additive pair-based STDP on the sensor readouts of all tracked synapses."""
    dw = (ctx.causal >> 5).astype(np.int16)
    dw -= ctx.acausal >> 5
    ctx.weights += dw
    ctx.reset_correlation()


def bench_tick_overhead(duration_us, repeats):
    chip = VirtualChip(seed=0)
    cfg, labels = yinyang_config()
    stim = yinyang_stimulus(labels, 1)
    period = 0.1
    many = PPUProgram(noop, 0.0, period, None)
    one = PPUProgram(noop, 0.0)
    chip.run(cfg, stim, duration_us=duration_us, plasticity=many, threads=1)  # warm up
    t_many, res = _median_wall(
        lambda: chip.run(cfg, stim, duration_us=duration_us, plasticity=many, threads=1), repeats
    )
    t_one, _ = _median_wall(
        lambda: chip.run(cfg, stim, duration_us=duration_us, plasticity=one, threads=1), repeats
    )
    t_none, _ = _median_wall(lambda: chip.run(cfg, stim, duration_us=duration_us, threads=1), repeats)
    ticks = res.plasticity.tick_times_us.size
    return {
        "tick_overhead_us": (t_many - t_one) / (ticks - 1) * 1e6,
        "ticks": int(ticks),
        "wall_s_ticking": t_many,
        "wall_s_one_tick": t_one,
        "wall_s_no_plasticity": t_none,
    }


def bench_stdp(duration_us, repeats):
    chip = VirtualChip(seed=0)
    cfg = full_chip_config(adex=False)
    program = PPUProgram(stdp, 0.0, 1.0, None)
    one = PPUProgram(noop, 0.0)
    chip.run(cfg, duration_us=duration_us, threads=1, plasticity=program)  # warm up (mismatch draws)
    t_plain, plain = _median_wall(lambda: chip.run(cfg, duration_us=duration_us, threads=1), repeats)
    t_stdp, res = _median_wall(
        lambda: chip.run(cfg, duration_us=duration_us, threads=1, plasticity=program), repeats
    )
    t_path, _ = _median_wall(
        lambda: chip.run(cfg, duration_us=duration_us, threads=1, plasticity=one), repeats
    )
    log = res.plasticity
    initial = np.asarray(cfg.synapse_weights)[log.hemisphere, log.row, log.column].astype(int)
    changed = int(np.count_nonzero(log.weights[0].astype(int) != initial))
    return {
        "stdp_full_array_slowdown": t_stdp / t_plain,
        "plastic_path_overhead": t_path / t_plain,
        "wall_s_plain": t_plain,
        "wall_s_stdp": t_stdp,
        "wall_s_one_tick": t_path,
        "ticks": int(log.tick_times_us.size),
        "synapses": int(log.weights.shape[1]),
        "weights_changed": changed,
        "weights_clipped": log.n_clipped_weights,
        "spikes": int(plain.spike_counts().sum()),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (seconds instead of a minute)")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else 5
    tick = bench_tick_overhead(40.0 if args.quick else 400.0, repeats)
    print(f"tick overhead : {tick['tick_overhead_us']:.1f} us per kernel call ({tick['ticks']} ticks)")
    stdp_run = bench_stdp(100.0 if args.quick else 1000.0, repeats)
    print(
        f"STDP full array: {stdp_run['stdp_full_array_slowdown']:.2f}x slower "
        f"({stdp_run['ticks']} ticks, {stdp_run['synapses']} synapses); event path alone "
        f"{stdp_run['plastic_path_overhead']:.2f}x"
    )
    result = {
        "tick_overhead_us": round(tick["tick_overhead_us"], 2),
        "stdp_full_array_slowdown": round(stdp_run["stdp_full_array_slowdown"], 2),
        "plastic_path_overhead": round(stdp_run["plastic_path_overhead"], 2),
        "tick": tick,
        "stdp": stdp_run,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
