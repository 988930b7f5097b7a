"""AdEx firing patterns on the virtual chip: the parameter sets of Naud et al. (2008).

Each pattern is one ``EIF_cond_exp_isfa_ista`` neuron driven by a constant current from
t = 0 (the chip's bias current is constant during a run). The chip
calibrates every neuron to its own AdEx parameters (exponential term and adaptation
included), then runs them all in one experiment. Prints the spike count, first and last
inter-spike interval of each pattern, writes the membrane traces (MADC, two neurons at a
time, so the patterns run in pairs) to ``results/adex_firing_patterns.png``.

The "irregular" set of that paper needs a negative subthreshold adaptation ``a``, which the
chip's adaptation circuit cannot produce: the backend refuses it with a clear error, which
the script prints.

Run: ``python examples/adex_firing_patterns.py [--chip ideal|realistic] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

import pynn_brainscales2 as sim

# Naud, Marcille, Clopath, Gerstner (2008), Table 1: C [pF], g_L [nS], E_L, V_T, V_r [mV],
# Delta_T [mV], a [nS], tau_w [ms], b [pA], I [pA]
PATTERNS = {
    "tonic": dict(C=200, gL=10, EL=-70, VT=-50, DT=2, a=2, tau_w=30, b=0, Vr=-58, I=500),
    "adapting": dict(C=200, gL=12, EL=-70, VT=-50, DT=2, a=2, tau_w=300, b=60, Vr=-58, I=500),
    "initial burst": dict(C=130, gL=18, EL=-58, VT=-50, DT=2, a=4, tau_w=150, b=120, Vr=-50, I=400),
    "bursting": dict(C=200, gL=10, EL=-58, VT=-50, DT=2, a=2, tau_w=120, b=100, Vr=-46, I=210),
    "irregular": dict(C=100, gL=12, EL=-60, VT=-50, DT=2, a=-11, tau_w=130, b=30, Vr=-48, I=160),
}
T_STOP = 400.0  # ms
# the bursting sets reset above V_T: a voltage map that puts -46 mV inside the chip's reset
# range (0.35 mV per CADC LSB from -100 mV; the default map has 0.25 mV per LSB)
VMAP = sim.hardware.VoltageMap(mv_at_zero_lsb=-100.0, mv_per_lsb=0.35)


def cell(p):
    return sim.EIF_cond_exp_isfa_ista(
        cm=p["C"] / 1000.0,
        tau_m=p["C"] / p["gL"],
        v_rest=p["EL"],
        v_thresh=p["VT"],
        delta_T=p["DT"],
        a=p["a"],
        tau_w=p["tau_w"],
        b=p["b"] / 1000.0,
        v_reset=p["Vr"],
        v_spike=-40.0,
        tau_refrac=0.2,
        i_offset=p["I"] / 1000.0,
        e_rev_E=-30.0,  # no synaptic input here; inside the chip's voltage range
        e_rev_I=-80.0,
    )


def run_pair(names, chip):
    """Two patterns in one experiment (the MADC records two neurons at full resolution)."""
    sim.setup(timestep=0.05, chip=chip, voltage_map=VMAP)
    pops = {}
    for name in names:
        p = PATTERNS[name]
        pop = sim.Population(1, cell(p), label=name)
        pop.record(["spikes", "v"])
        pops[name] = pop
    sim.run(T_STOP)
    out = {}
    for name, pop in pops.items():
        seg = pop.get_data().segments[0]
        v = seg.filter(name="v")[0]
        out[name] = (np.asarray(seg.spiketrains[0].magnitude), v.times.magnitude, v.magnitude[:, 0])
    sim.end()
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", choices=["ideal", "realistic"], default="realistic")
    parser.add_argument("--out", type=Path, default=Path("results/adex_firing_patterns.png"))
    args = parser.parse_args(argv)
    chip = sim.VirtualChip.ideal() if args.chip == "ideal" else sim.VirtualChip(seed=0)

    results, refused = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sim.PortabilityWarning)
        for pair in (("tonic", "adapting"), ("initial burst", "bursting")):
            results.update(run_pair(pair, chip))
        try:
            results.update(run_pair(("irregular",), chip))
        except sim.errors.BrainScaleS2Error as exc:
            refused["irregular"] = f"{type(exc).__name__}: {exc}"
            sim.end()

    summary = {}
    print(f"pattern        spikes  first ISI [ms]  last ISI [ms]   ({args.chip} chip)")
    for name, (spikes, _, _) in results.items():
        isi = np.diff(spikes)
        first, last = (float(isi[0]), float(isi[-1])) if isi.size else (float("nan"),) * 2
        summary[name] = {"spikes": int(spikes.size), "first_isi_ms": first, "last_isi_ms": last}
        print(f"{name:13s}  {spikes.size:6d}  {first:14.1f}  {last:13.1f}")
    for name, why in refused.items():
        print(f"{name:13s}  refused: {why}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, sharex=True, figsize=(7, 1.6 * len(results) + 0.6))
    for ax, (name, (_, t, v)) in zip(np.atleast_1d(axes), results.items(), strict=True):
        ax.plot(t, v, lw=0.7)
        ax.set_ylabel("v [mV]")
        ax.set_title(name, fontsize=9, loc="left")
    np.atleast_1d(axes)[-1].set_xlabel("time [ms]")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")
    result = {"chip": args.chip, "patterns": summary, "refused": sorted(refused)}
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
