"""PyNN on the virtual BrainScaleS-2 chip: 20 Poisson inputs drive 10 LIF neurons.

The README's main job. Calibrates the default (realistic) chip on the first run (cached),
prints spike counts and rates and the portability report, writes a raster and a membrane
trace to ``results/quickstart.png``.

Run: ``python examples/quickstart.py [--out PATH]`` (``PYNN_BRAINSCALES2_CHIP=ideal`` for
the ideal chip).
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import pynn_brainscales2 as sim  # noqa: E402
from pynn_brainscales2.plotting import plot_membrane, plot_raster  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/quickstart.png"))
    parser.add_argument("--duration", type=float, default=500.0, help="biological time [ms]")
    args = parser.parse_args(argv)

    sim.setup(timestep=0.1)
    inputs = sim.Population(20, sim.SpikeSourcePoisson(rate=40.0), label="inputs")
    neurons = sim.Population(10, sim.IF_curr_exp(tau_m=20.0, tau_syn_E=5.0, v_thresh=-52.0), label="neurons")
    sim.Projection(
        inputs,
        neurons,
        sim.FixedProbabilityConnector(0.5, rng=sim.NumpyRNG(seed=1)),
        sim.StaticSynapse(weight=0.4),
    )
    neurons.record("spikes")
    neurons[0:1].record("v", sampling_interval=2.0)  # CADC: >= 1.7 ms per sample
    sim.run(args.duration)

    block = neurons.get_data()
    trains = block.segments[0].spiketrains
    print(f"chip: {sim.simulator.state.chip}")
    print("neuron  spikes  rate [Hz]")
    rates = []
    for i, train in enumerate(trains):
        rates.append(len(train) / (args.duration / 1000.0))
        print(f"{i:6d}  {len(train):6d}  {rates[-1]:9.1f}")
    print("portability report:", sim.portability_report())
    sim.end()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
    plot_raster(block, ax=ax1, markersize=6)
    plot_membrane(block, ax=ax2)
    ax2.set_ylabel("v [mV] (neuron 0, CADC)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")
    result = {"mean_rate_hz": sum(rates) / len(rates), "figure": str(args.out)}
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
