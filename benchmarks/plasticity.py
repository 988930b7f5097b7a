"""Cost of the virtual plasticity processors (``VirtualChip.run(..., plasticity=...)``).

- ``tick_overhead_us``: wall time per kernel call of a kernel that does nothing: a small
  network (the 5-120-3 network of ``benchmarks/engine.py``, one trial, 400 us hardware
  time) with a no-op program ticking every 0.1 us, minus the same run with one tick,
  divided by the number of extra ticks. It covers pausing and resuming the engine, the
  context and the call.
- ``stdp_full_array_slowdown``: the full-chip LIF network of ``benchmarks/engine.py``
  (every one of the 131,072 synapses in use, realistic chip) with the built-in pair-based
  STDP rule (``cysim.ppu.STDPProgram``, additive, ``A_plus = A_minus = 1/63``: one weight
  step per pair at zero delay, nominal sensor amplitude, weights 0..63) on all synapses,
  ticking every 1 us hardware time (1 ms biological), divided by the wall time of the same
  run without plasticity. The rule runs compiled inside the engine.
- ``stdp_full_array_slowdown_python_kernel``: the same with a hand-written NumPy kernel
  on the 8-bit sensor readouts and the int16 weights (the generic Python-kernel path):
  ``w += (causal >> 5) - (acausal >> 5)``, then a sensor reset.
- ``stdp_full_array_slowdown_same_activity``: the built-in rule with every weight held at
  its initial value (per-synapse bounds ``w_min = w_max`` = initial weight), so that the
  network keeps the activity of the run without plasticity. (Both rules above depress
  the recurrent synapses of the fast-firing circuits within about 100 us and silence
  the network: the JSON reports the spikes of every run.)
- ``plastic_path_overhead``: a run with a one-tick no-op program (so on the event path:
  events queued and delivered at arrival with per-trial weights, sensors, counters) vs
  the same run without plasticity, for the full-chip network.

Variants are timed in turns (one run of each per round), so that a change of the
machine's load affects all alike.

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
from cysim.ppu import STDPProgram  # noqa: E402


def _median_wall(fn, repeats):
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
    return float(np.median(walls)), out


def _median_walls(fns: dict, repeats) -> tuple[dict, dict]:
    """Median wall time of each of ``fns`` over ``repeats`` rounds (one call of each per
    round, in turns), and the last output of each."""
    walls = {name: [] for name in fns}
    outs = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            walls[name].append(time.perf_counter() - t0)
    return {name: float(np.median(w)) for name, w in walls.items()}, outs


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
    initial = np.asarray(cfg.synapse_weights).astype(np.float64)
    programs = {
        "plain": None,
        "one_tick": PPUProgram(noop, 0.0),
        "stdp": STDPProgram(0.0, 1.0, None, A_plus=1 / 63, A_minus=1 / 63),
        "python_kernel": PPUProgram(stdp, 0.0, 1.0, None),
        "same_activity": STDPProgram(
            0.0, 1.0, None, A_plus=1 / 63, A_minus=1 / 63, w_min=initial, w_max=initial
        ),
    }

    def runner(program):
        return lambda: chip.run(cfg, duration_us=duration_us, threads=1, plasticity=program)

    for program in programs.values():  # warm up (mismatch draws, tables)
        runner(program)()
    walls, outs = _median_walls({name: runner(p) for name, p in programs.items()}, repeats)
    out = {
        "stdp_full_array_slowdown": walls["stdp"] / walls["plain"],
        "stdp_full_array_slowdown_python_kernel": walls["python_kernel"] / walls["plain"],
        "stdp_full_array_slowdown_same_activity": walls["same_activity"] / walls["plain"],
        "plastic_path_overhead": walls["one_tick"] / walls["plain"],
        **{f"wall_s_{name}": wall for name, wall in walls.items()},
        **{f"spikes_{name}": int(res.spike_counts().sum()) for name, res in outs.items()},
    }
    for name in ("stdp", "python_kernel", "same_activity"):
        log = outs[name].plasticity
        start = initial[log.hemisphere, log.row, log.column].astype(int)
        out[f"weights_changed_{name}"] = int(np.count_nonzero(log.weights[0].astype(int) != start))
        out[f"weights_clipped_{name}"] = log.n_clipped_weights
    log = outs["stdp"].plasticity
    out["ticks"] = int(log.tick_times_us.size)
    out["synapses"] = int(log.weights.shape[1])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (seconds instead of a minute)")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else 5
    tick = bench_tick_overhead(40.0 if args.quick else 400.0, repeats)
    print(f"tick overhead : {tick['tick_overhead_us']:.1f} us per kernel call ({tick['ticks']} ticks)")
    stdp_run = bench_stdp(100.0 if args.quick else 1000.0, repeats)
    print(
        f"STDP full array: {stdp_run['stdp_full_array_slowdown']:.2f}x slower with the built-in rule "
        f"({stdp_run['ticks']} ticks, {stdp_run['synapses']} synapses), "
        f"{stdp_run['stdp_full_array_slowdown_python_kernel']:.2f}x with a NumPy kernel, "
        f"{stdp_run['stdp_full_array_slowdown_same_activity']:.2f}x with the activity kept; "
        f"event path alone {stdp_run['plastic_path_overhead']:.2f}x"
    )
    print(
        "spikes: "
        + ", ".join(
            f"{name} {stdp_run['spikes_' + name]}"
            for name in ("plain", "one_tick", "stdp", "python_kernel", "same_activity")
        )
    )
    result = {
        "tick_overhead_us": round(tick["tick_overhead_us"], 2),
        "stdp_full_array_slowdown": round(stdp_run["stdp_full_array_slowdown"], 2),
        "stdp_full_array_slowdown_python_kernel": round(
            stdp_run["stdp_full_array_slowdown_python_kernel"], 2
        ),
        "stdp_full_array_slowdown_same_activity": round(
            stdp_run["stdp_full_array_slowdown_same_activity"], 2
        ),
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
