"""One PyNN script, two simulators: a balanced network on pyNN.nest and on pynn_brainscales2.

The network (fits one chip): 400 excitatory + 100 inhibitory ``IF_curr_exp`` neurons,
sparse random recurrent connectivity (each neuron receives ``EPSILON`` x 400 excitatory and
``EPSILON`` x 100 inhibitory inputs, drawn once with NumPy and given to both simulators
through ``FromListConnector``, so both run the same network), and one
``SpikeSourcePoisson`` per neuron as external drive. All delays are 0.1 ms (NEST's
minimal delay at ``dt = 0.1 ms``; the chip's fixed routing latency at speed-up 1000).

It runs, in one process, on

- ``nest``: pyNN.nest (NEST 3, ``iaf_psc_exp``, spikes on the 0.1 ms grid), one thread
  (``--nest-threads``); again with precise spike times
  (``nest_off_grid``: ``iaf_psc_exp_ps``, ``poisson_generator_ps``), the closer reference
  for the chip, whose spikes are not bound to a grid;
- ``ideal``: pynn_brainscales2 on ``VirtualChip.ideal()`` (exact model dynamics);
- ``realistic``: pynn_brainscales2 on ``VirtualChip(seed=0)`` (mismatch and noise,
  calibrated).

For each: ``build_s`` (setup, populations, projections, recording), ``run_s`` (``sim.run``:
for the chip, translation, mapping, calibration lookup, host Poisson events, the chip run
and the read-back), ``get_data_s`` (medians over the repetitions) and the mean rates [Hz]
of both populations (means over the repetitions, each with its own Poisson drive;
``rate_sem_hz`` is the standard error of that mean: the network's rate fluctuates by a few
percent from one drive to the next, on NEST as on the chip). For the
chip, ``run_s`` is measured with the calibration cached (the second run of the same
network, a fresh ``setup``) and ``first_run_s`` with an empty calibration cache.
``speedup_vs_nest`` is NEST's ``run_s`` (grid-based, one thread) over the ideal chip's
cached ``run_s`` (the engine runs one trial on one thread). ``rate_rel_diff_*`` compare
mean rates over all 500 neurons with NEST's.

Prints ``RESULT {json}`` as its last line. ``--quick`` runs 200 ms and one repetition
(for tests). pyNN.nest (``pip install nest-simulator``) is needed; it is not a dependency
of pynn_brainscales2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import platform
import sys
import tempfile
import time
import warnings

import numpy as np

N_E, N_I = 400, 100
EPSILON = 0.1  # connection probability
CELL = {
    "tau_m": 20.0,  # ms
    "cm": 0.25,  # nF
    "v_rest": -65.0,  # mV
    "v_reset": -65.0,
    "v_thresh": -50.0,
    "tau_refrac": 2.0,  # ms
    "tau_syn_E": 5.0,
    "tau_syn_I": 5.0,
    "i_offset": 0.0,  # nA
}
W_E = 0.05  # nA: PSP peak ~0.6 mV
G = 5.0  # relative strength of inhibition
W_EXT = 0.06  # nA
RATE_EXT = 550.0  # Hz, one Poisson source per neuron
DELAY = 0.1  # ms


def connection_lists(seed: int):
    """(exc->all, inh->all, ext->all) lists of (pre, post, weight, delay), drawn once."""
    rng = np.random.default_rng(seed)
    n = N_E + N_I
    lists = []
    for n_pre, w in ((N_E, W_E), (N_I, -G * W_E)):
        k = int(round(EPSILON * n_pre))
        rows = []
        for post in range(n):
            pre = rng.choice(n_pre, size=k, replace=False)
            rows.extend((int(i), post, w, DELAY) for i in pre)
        lists.append(rows)
    lists.append([(i, i, W_EXT, DELAY) for i in range(n)])
    return lists


def run_network(sim, duration_ms: float, lists, setup_kwargs: dict, rng_seed: int = 1) -> dict:
    """Build and run the network on ``sim``; times [s] and mean rates [Hz]."""
    t0 = time.perf_counter()
    sim.setup(timestep=0.1, min_delay=DELAY, **setup_kwargs)
    cells = sim.Population(N_E + N_I, sim.IF_curr_exp(**CELL), label="cells")
    exc, inh = cells[:N_E], cells[N_E:]
    ext = sim.Population(N_E + N_I, sim.SpikeSourcePoisson(rate=RATE_EXT), label="drive")
    exc_rows, inh_rows, ext_rows = lists
    sim.Projection(exc, cells, sim.FromListConnector(exc_rows), receptor_type="excitatory", label="E")
    sim.Projection(inh, cells, sim.FromListConnector(inh_rows), receptor_type="inhibitory", label="I")
    sim.Projection(ext, cells, sim.FromListConnector(ext_rows), receptor_type="excitatory", label="ext")
    cells.initialize(v=CELL["v_rest"])
    cells.record("spikes")
    t1 = time.perf_counter()
    sim.run(duration_ms)
    t2 = time.perf_counter()
    block = cells.get_data("spikes")
    t3 = time.perf_counter()
    counts = np.array([len(st) for st in block.segments[0].spiketrains], dtype=float)
    sim.end()
    rates = counts / (duration_ms / 1000.0)
    return {
        "build_s": t1 - t0,
        "run_s": t2 - t1,
        "get_data_s": t3 - t2,
        "rate_hz": float(rates.mean()),
        "rate_exc_hz": float(rates[:N_E].mean()),
        "rate_inh_hz": float(rates[N_E:].mean()),
        "silent_fraction": float(np.mean(counts == 0)),
    }


def _summary(runs: list[dict]) -> dict:
    """Median times; rates averaged over the repetitions (each a new Poisson drive), with
    the standard error of that mean (``rate_sem_hz``)."""
    out = {k: float(np.median([r[k] for r in runs])) for k in runs[0] if k.endswith("_s")}
    for k in runs[0]:
        if not k.endswith("_s"):
            out[k] = float(np.mean([r[k] for r in runs]))
    rates = [r["rate_hz"] for r in runs]
    out["rate_sem_hz"] = (
        float(np.std(rates, ddof=1) / np.sqrt(len(rates))) if len(rates) > 1 else float("nan")
    )
    return out


def run_nest(duration_ms, lists, repeats, threads, precision="on_grid"):
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = importlib.import_module("pyNN.nest")
        sim.nest.set_verbosity("M_ERROR")
        kw = {"threads": threads, "spike_precision": precision}
        runs = [run_network(sim, duration_ms, lists, {**kw, "rng_seed": 100 + k}) for k in range(repeats)]
    return _summary(runs)


def run_chip(duration_ms, lists, repeats, chip_factory):
    import pynn_brainscales2 as sim

    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as cache:
        warnings.simplefilter("ignore")
        first = run_network(sim, duration_ms, lists, {"chip": chip_factory(), "calibration_cache": cache})
        runs = [
            run_network(
                sim, duration_ms, lists, {"chip": chip_factory(), "calibration_cache": cache, "rng_seed": k}
            )
            for k in range(repeats)
        ]
    out = _summary(runs)
    out["first_run_s"] = first["run_s"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=2000.0, help="biological time [ms]")
    ap.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="runs per simulator, each with its own Poisson drive (median times)",
    )
    ap.add_argument("--seed", type=int, default=1, help="seed of the connectivity")
    ap.add_argument("--nest-threads", type=int, default=1, help="NEST threads (the chip engine uses one)")
    ap.add_argument("--quick", action="store_true", help="200 ms, one repetition (for tests)")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.repeats = 200.0, 1
    try:
        importlib.import_module("nest")
    except ImportError:
        sys.exit("pyNN.nest needs NEST: pip install nest-simulator")
    from cysim import VirtualChip

    lists = connection_lists(args.seed)
    cores = os.cpu_count() or 1
    res = {
        "nest": run_nest(args.duration, lists, args.repeats, threads=args.nest_threads),
        "nest_off_grid": run_nest(
            args.duration, lists, args.repeats, args.nest_threads, precision="off_grid"
        ),
        "ideal": run_chip(args.duration, lists, args.repeats, VirtualChip.ideal),
        "realistic": run_chip(args.duration, lists, args.repeats, lambda: VirtualChip(seed=0)),
    }
    nest_run = res["nest"]["run_s"]
    nest_rate = res["nest"]["rate_hz"]
    out = {
        "duration_ms": args.duration,
        "neurons": N_E + N_I,
        "synapses": sum(len(x) for x in lists),
        **{k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in res.items()},
        "speedup_vs_nest": round(nest_run / res["ideal"]["run_s"], 2),
        "speedup_vs_nest_realistic": round(nest_run / res["realistic"]["run_s"], 2),
        "nest_threads": args.nest_threads,
        "rate_rel_diff_ideal": round(res["ideal"]["rate_hz"] / nest_rate - 1.0, 4),
        "rate_rel_diff_realistic": round(res["realistic"]["rate_hz"] / nest_rate - 1.0, 4),
        "rate_rel_diff_ideal_vs_off_grid": round(
            res["ideal"]["rate_hz"] / res["nest_off_grid"]["rate_hz"] - 1.0, 4
        ),
        "machine": f"{platform.machine()} {cores} cores",
    }
    for name in res:
        r = res[name]
        print(
            f"{name:15s} build {r['build_s']:.3f} s  run {r['run_s']:.3f} s  rate {r['rate_hz']:.2f} Hz "
            f"(exc {r['rate_exc_hz']:.2f}, inh {r['rate_inh_hz']:.2f})"
        )
    print("RESULT " + json.dumps(out))
    return out


if __name__ == "__main__":
    main()
