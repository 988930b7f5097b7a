"""PyNN on the virtual BrainScaleS-2 chip: 20 Poisson inputs drive 10 LIF neurons.

Prints spike counts and the portability report, writes results/pynn_quickstart.png.
Run: ``python examples/pynn_quickstart.py`` (``PYNN_BRAINSCALES2_CHIP=ideal`` for the
ideal chip).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import pynn_brainscales2 as sim  # noqa: E402

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
sim.run(500.0)

block = neurons.get_data()
trains = block.segments[0].spiketrains
v = block.segments[0].analogsignals[0]
print(f"chip: {sim.simulator.state.chip}")
print("neuron  spikes  rate [Hz]")
for i, train in enumerate(trains):
    print(f"{i:6d}  {len(train):6d}  {len(train) / 0.5:9.1f}")
print("portability report:", sim.portability_report())
sim.end()

out = Path("results")
out.mkdir(exist_ok=True)
fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(7, 5))
for i, train in enumerate(trains):
    ax1.plot(train.magnitude, [i] * len(train), "|k")
ax1.set_ylabel("neuron")
ax2.plot(v.times.magnitude, v.magnitude[:, 0])
ax2.set_xlabel("time [ms]")
ax2.set_ylabel("v [mV] (neuron 0, CADC)")
fig.tight_layout()
fig.savefig(out / "pynn_quickstart.png", dpi=120)
print(f"wrote {out / 'pynn_quickstart.png'}")
