"""Homeostatic plasticity on the virtual chip: the rule of seed 004 (target rate 60 Hz).

Every neuron receives the same Poisson input through plastic synapses. At every tick the
kernel reads each neuron's spike count since the previous tick (the chip's rate
counters), and moves all input weights of that neuron by ``ETA * (target - rate)``
(6-bit steps; the fractional part carried to the next tick). Half the neurons start with
weight 0 (silent, far below the target), half with 63 steps (far above).

    python examples/homeostasis.py [--chip ideal|realistic] [--seed 0] [--duration 8000]

Writes ``results/homeostasis.png`` and ``docs/figures/homeostasis.png``; prints
``RESULT {json}`` as its last line (rates over the last second).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

import pynn_brainscales2 as sim

TARGET = 60.0  # [Hz]
N_INPUTS, INPUT_RATE = 64, 40.0  # Poisson sources, [Hz] each
N_NEURONS = 8
W_MAX = 0.2  # [nA] = 63 steps
PERIOD = 100.0  # [ms] between ticks
ETA = 0.1  # [steps per Hz per tick]
CELL = dict(tau_m=20.0, tau_syn_E=5.0, v_rest=-65.0, v_reset=-65.0, v_thresh=-55.0, tau_refrac=2.0, cm=1.0)


def run(chip, duration: float = 8000.0, rng_seed: int = 1):
    """Rates [Hz] per tick (ticks, neurons), tick times [ms] and the weights per tick."""
    sim.setup(chip=chip, rng_seed=rng_seed)
    inputs = sim.Population(N_INPUTS, sim.SpikeSourcePoisson(rate=INPUT_RATE), label="input")
    neurons = sim.Population(
        N_NEURONS, sim.IF_curr_exp(**CELL), initial_values={"v": CELL["v_rest"]}, label="neurons"
    )
    carry = np.zeros(N_NEURONS)

    def homeostasis(ctx):
        rate = (
            ctx.population(neurons).spike_counts / (ctx.interval / 1000.0)
            if ctx.interval > 0
            else np.zeros(N_NEURONS)
        )
        if ctx.tick > 0:
            carry[:] += ETA * (TARGET - rate)
        step = np.floor(carry + 0.5)
        carry[:] -= step
        syn = ctx.projection(projection)
        syn.weights = np.clip(syn.weights + step[syn.post_index], 0, 63)
        ctx.record("rate", rate)

    rule = sim.PlasticityRule(
        homeostasis,
        sim.Timer(start=0.0, period=PERIOD, num_periods=None),
        observables=("rate", "weights"),
        populations=[neurons],
    )
    w0 = np.where(np.arange(N_NEURONS) < N_NEURONS // 2, 0.0, W_MAX)  # half silent, half saturated
    weights = np.tile(w0, (N_INPUTS, 1))
    projection = sim.Projection(
        inputs,
        neurons,
        sim.AllToAllConnector(),
        sim.PlasticSynapse(weight=weights, plasticity_rule=rule, w_max=W_MAX),
        label="input->neurons",
    )
    neurons.record("spikes")
    sim.run(duration)
    rates = rule.get_data("rate")
    history = rule.weight_history(projection, unit="steps")
    trains = neurons.get_data().segments[0].spiketrains
    sim.end()
    mean_w = np.stack(
        [history.values[:, projection._post == j].mean(axis=1) for j in range(N_NEURONS)], axis=1
    )
    final = np.array([np.sum(np.asarray(st.magnitude) > duration - 1000.0) for st in trains], dtype=float)
    return rates.times, np.asarray(rates.values), history.times, mean_w, final


def plot(t, rates, tw, mean_w, paths):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
    for j in range(rates.shape[1]):
        color = "C0" if j < rates.shape[1] // 2 else "C3"
        a.plot(t[1:] / 1000.0, rates[1:, j], color=color, lw=0.8, alpha=0.8)
        b.plot(tw / 1000.0, mean_w[:, j], color=color, lw=0.8, alpha=0.8)
    a.axhline(TARGET, color="k", ls="--", lw=1, label="target 60 Hz")
    a.axhspan(0.9 * TARGET, 1.1 * TARGET, color="0.85", label="+-10 %")
    a.set_ylabel("rate per tick [Hz]")
    a.legend(fontsize=8, loc="upper right")
    a.set_title("Homeostasis on the virtual chip (blue: start silent, red: start saturated)")
    b.set_ylabel("mean input weight [steps]")
    b.set_xlabel("time [s]")
    fig.tight_layout()
    for p in paths:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", choices=("ideal", "realistic"), default="ideal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=8000.0)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="figure path (default: results/homeostasis.png and docs/figures/homeostasis.png)",
    )
    args = parser.parse_args(argv)
    chip = sim.VirtualChip.ideal() if args.chip == "ideal" else sim.VirtualChip(seed=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sim.QuantisationWarning)
        warnings.simplefilter("ignore", sim.PortabilityWarning)
        t, rates, tw, mean_w, final = run(chip, args.duration)
    initial = rates[1]
    print("neuron  first-tick rate [Hz]  rate over the last second [Hz]")
    for j in range(N_NEURONS):
        print(f"{j:6d}  {initial[j]:20.1f}  {final[j]:10.1f}")
    if not args.no_plot:
        root = Path(__file__).resolve().parent.parent
        plot(
            t,
            rates,
            tw,
            mean_w,
            [args.out]
            if args.out
            else [root / "results" / "homeostasis.png", root / "docs" / "figures" / "homeostasis.png"],
        )
    result = {
        "chip": args.chip,
        "target_hz": TARGET,
        "initial_rates_hz": [round(float(r), 1) for r in initial],
        "final_rates_hz": [round(float(r), 1) for r in final],
        "max_relative_error": round(float(np.max(np.abs(final / TARGET - 1))), 4),
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
