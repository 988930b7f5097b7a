"""A balanced network of 400 excitatory and 100 inhibitory LIF neurons on the virtual chip.

Sparse random recurrent connections (10 %), inhibition five times as strong as
excitation, one Poisson source per neuron as external drive: the network settles into
asynchronous irregular firing. Written with PyNN's standard API only; it runs unchanged
on pyNN.nest (``--simulator nest``, if installed), which is how ``benchmarks/pynn_vs_nest.py``
compares the two. Prints the mean rates and the coefficient of variation of the
inter-spike intervals, writes a raster and rate histogram to ``results/balanced_network.png``.

Run: ``python examples/balanced_network.py [--duration 1000] [--chip ideal|realistic]``
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import numpy as np

N_E, N_I = 400, 100
CELL = dict(
    tau_m=20.0,
    cm=0.25,
    v_rest=-65.0,
    v_reset=-65.0,
    v_thresh=-50.0,
    tau_refrac=2.0,
    tau_syn_E=5.0,
    tau_syn_I=5.0,
)
W_E, G, W_EXT, RATE_EXT = 0.05, 5.0, 0.06, 550.0  # nA, -, nA, Hz


def build(sim, seed: int):
    rng = sim.NumpyRNG(seed=seed)
    exc = sim.Population(N_E, sim.IF_curr_exp(**CELL), label="excitatory")
    inh = sim.Population(N_I, sim.IF_curr_exp(**CELL), label="inhibitory")
    drive = sim.Population(N_E + N_I, sim.SpikeSourcePoisson(rate=RATE_EXT), label="drive")
    every = sim.Assembly(exc, inh)
    conn = sim.FixedProbabilityConnector(0.1, rng=rng, allow_self_connections=False)
    sim.Projection(exc, every, conn, sim.StaticSynapse(weight=W_E, delay=0.1), receptor_type="excitatory")
    sim.Projection(
        inh, every, conn, sim.StaticSynapse(weight=-G * W_E, delay=0.1), receptor_type="inhibitory"
    )
    sim.Projection(
        drive,
        every,
        sim.OneToOneConnector(),
        sim.StaticSynapse(weight=W_EXT, delay=0.1),
        receptor_type="excitatory",
    )
    every.record("spikes")
    return exc, inh


def isi_cv(trains) -> float:
    cvs = []
    for t in trains:
        isi = np.diff(t.magnitude)
        if isi.size >= 3:
            cvs.append(isi.std() / isi.mean())
    return float(np.mean(cvs)) if cvs else float("nan")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1000.0, help="biological time [ms]")
    parser.add_argument("--simulator", default="pynn_brainscales2", help="pynn_brainscales2 or nest")
    parser.add_argument("--chip", choices=["ideal", "realistic"], default="realistic")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/balanced_network.png"))
    args = parser.parse_args(argv)

    if args.simulator == "nest":
        sim = importlib.import_module("pyNN.nest")
        sim.setup(timestep=0.1, min_delay=0.1)
    else:
        import warnings

        import pynn_brainscales2 as sim

        chip = sim.VirtualChip.ideal() if args.chip == "ideal" else sim.VirtualChip(seed=0)
        sim.setup(timestep=0.1, chip=chip)
        warnings.filterwarnings("ignore", category=sim.QuantisationWarning)
    exc, inh = build(sim, args.seed)
    sim.run(args.duration)
    data = {p.label: p.get_data().segments[0] for p in (exc, inh)}
    sim.end()

    seconds = args.duration / 1000.0
    rates = {k: np.array([len(t) for t in seg.spiketrains]) / seconds for k, seg in data.items()}
    cv = isi_cv(data["excitatory"].spiketrains)
    print(f"simulator: {args.simulator}" + ("" if args.simulator == "nest" else f" ({args.chip} chip)"))
    for k, r in rates.items():
        print(f"{k:11s} mean rate {r.mean():6.2f} Hz  (std over neurons {r.std():.2f} Hz)")
    print(f"mean CV of the excitatory inter-spike intervals: {cv:.2f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pynn_brainscales2.plotting import plot_raster

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    plot_raster(data["excitatory"], ax=ax0, markersize=1.5)
    ax0.set_ylim(-1, 100)
    ax0.set_ylabel("excitatory neuron (first 100)")
    ax1.hist([rates["excitatory"], rates["inhibitory"]], bins=20, label=["exc", "inh"], stacked=True)
    ax1.set_xlabel("rate [Hz]")
    ax1.set_ylabel("neurons")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")
    result = {
        "rate_exc_hz": float(rates["excitatory"].mean()),
        "rate_inh_hz": float(rates["inhibitory"].mean()),
        "isi_cv": cv,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
