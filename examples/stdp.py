"""An STDP window measured on the virtual chip through PyNN's ``STDPMechanism``.

Pair protocol: every post neuron is made to fire by a strong "teacher" input every
``PERIOD`` ms; its one plastic input (a ``SpikeSourceArray``) fires ``Delta t`` before
(Delta t > 0: causal) or after (Delta t < 0: acausal) each post spike, one value of
Delta t per neuron, ``PAIRS`` pairings. The weight change per neuron against Delta t is
the STDP window; exponentials fitted to each side give the decay constants, compared with
the configured tau_plus / tau_minus.

    python examples/stdp.py [--chip ideal|realistic] [--seed 0] [--pairs 20]

Writes ``results/stdp_window.png`` and ``docs/figures/stdp_window.png`` and prints
``RESULT {json}`` as its last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

import pynn_brainscales2 as sim

TAU_PLUS, TAU_MINUS = 20.0, 30.0  # [ms] configured window
A_PLUS, A_MINUS = 0.02, 0.02  # per pair, relative to w_max (additive)
W_MAX = 1.0  # [nA] = 63 steps
W_START = 0.5  # [nA] = 32 steps
PERIOD = 200.0  # [ms] between pairings
FIRST = 50.0  # [ms] first teacher spike
N_TEACHERS = 16
DELTAS = np.array(
    [-50, -40, -30, -25, -20, -15, -10, -6, -3, -1, 1, 3, 6, 10, 15, 20, 25, 30, 40, 50], dtype=float
)
CELL = dict(tau_m=20.0, tau_syn_E=1.0, v_rest=-65.0, v_reset=-70.0, v_thresh=-55.0, tau_refrac=2.0, cm=1.0)
LATENCY = 0.1  # [ms] routing latency at speedup 1000: a pre spike reaches its synapse this much later


def _network(pre_times, teacher_times, pairs: int, sensor_amplitude: float):
    n = DELTAS.size
    teacher = sim.Population(N_TEACHERS, sim.SpikeSourceArray(spike_times=teacher_times), label="teacher")
    pre = sim.Population(n, sim.SpikeSourceArray(spike_times=[list(t) for t in pre_times]), label="pre")
    post = sim.Population(n, sim.IF_curr_exp(**CELL), initial_values={"v": CELL["v_rest"]}, label="post")
    post.record("spikes")
    sim.Projection(teacher, post, sim.AllToAllConnector(), sim.StaticSynapse(weight=W_MAX), label="teacher")
    stdp = sim.STDPMechanism(
        timing_dependence=sim.SpikePairRule(
            tau_plus=TAU_PLUS, tau_minus=TAU_MINUS, A_plus=A_PLUS, A_minus=A_MINUS
        ),
        weight_dependence=sim.AdditiveWeightDependence(w_min=0.0, w_max=W_MAX),
        weight=W_START,
    )
    prj = sim.Projection(pre, post, sim.OneToOneConnector(), stdp, label="plastic")
    # the rule behind STDPMechanism: one pairing per tick at most, so a large sensor
    # amplitude (finer 8-bit readout) cannot saturate
    rule = prj.plasticity_rule
    rule.sensors = dataclasses.replace(
        rule.sensors, amp_causal=sensor_amplitude, amp_acausal=sensor_amplitude
    )
    return post, prj


def measure_window(chip, pairs: int = 20, sensor_amplitude: float = 128.0):
    """Weight change [steps of W_MAX/63] per neuron and the measured Delta t [ms] (post
    spike minus pre arrival, mean over the pairings)."""
    teacher_times = FIRST + PERIOD * np.arange(pairs)
    t_stop = FIRST + PERIOD * pairs
    # 1) where does each post neuron fire after a teacher volley? (pre sources silent)
    sim.setup(chip=chip)
    post, _ = _network([[] for _ in DELTAS], teacher_times, pairs, sensor_amplitude)
    sim.run(t_stop)
    trains = post.get_data().segments[0].spiketrains
    first = np.array([float(np.asarray(st.magnitude)[0]) for st in trains]) - FIRST
    sim.end()
    # 2) the pairing run: pre spikes placed relative to each neuron's own post spike
    pre_times = [np.round(teacher_times + first[i] - DELTAS[i] - LATENCY, 3) for i in range(DELTAS.size)]
    sim.setup(chip=chip)
    post, prj = _network(pre_times, teacher_times, pairs, sensor_amplitude)
    sim.run(t_stop)
    w = np.asarray(prj.get("weight", format="array"))
    w = np.array([w[i, i] for i in range(DELTAS.size)])
    trains = post.get_data().segments[0].spiketrains
    dt = []
    for i, st in enumerate(trains):
        t_post = np.asarray(st.magnitude)
        arrivals = pre_times[i] + LATENCY
        k = np.argmin(np.abs(t_post[:, None] - arrivals[None, :] - DELTAS[i]), axis=0)
        dt.append(float(np.mean(t_post[k] - arrivals)))
        if t_post.size != pairs:
            warnings.warn(f"post neuron {i} fired {t_post.size} times (expected {pairs})", stacklevel=2)
    sim.end()
    scale = 63.0 / W_MAX
    return np.array(dt), np.rint(w * scale) - np.rint(W_START * scale)


def fit_window(dt, dw):
    """Amplitudes and decay constants [ms] of ``A exp(-|dt|/tau)`` fitted to each side."""
    from scipy.optimize import curve_fit

    out = {}
    for side, sel, sign in (("plus", dt > 0, 1.0), ("minus", dt < 0, -1.0)):
        x, y = np.abs(dt[sel]), sign * dw[sel]
        (a, tau), _ = curve_fit(lambda t, a, tau: a * np.exp(-t / tau), x, y, p0=(y.max(), 20.0))
        out[f"A_{side}_steps"], out[f"tau_{side}"] = float(a), float(tau)
    return out


def plot(dt, dw, fit, paths):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(0, color="0.7", lw=0.8)
    ax.axvline(0, color="0.7", lw=0.8)
    ax.plot(dt, dw, "o", label="virtual chip (weight change)")
    x = np.linspace(0.5, 55, 200)
    ax.plot(
        x,
        fit["A_plus_steps"] * np.exp(-x / fit["tau_plus"]),
        "C1",
        label=f"fit tau+ = {fit['tau_plus']:.1f} ms",
    )
    ax.plot(
        -x,
        -fit["A_minus_steps"] * np.exp(-x / fit["tau_minus"]),
        "C2",
        label=f"fit tau- = {fit['tau_minus']:.1f} ms",
    )
    ax.set_xlabel("Delta t = t_post - t_pre [ms]")
    ax.set_ylabel("weight change [6-bit steps]")
    ax.set_title(f"STDP window (configured tau+ = {TAU_PLUS:g} ms, tau- = {TAU_MINUS:g} ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    for p in paths:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", choices=("ideal", "realistic"), default="ideal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="figure path (default: results/stdp_window.png and docs/figures/stdp_window.png)",
    )
    args = parser.parse_args(argv)
    chip = sim.VirtualChip.ideal() if args.chip == "ideal" else sim.VirtualChip(seed=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sim.QuantisationWarning)
        warnings.simplefilter("ignore", sim.PortabilityWarning)
        dt, dw = measure_window(chip, args.pairs)
    fit = fit_window(dt, dw)
    for d, w in zip(dt, dw, strict=True):
        print(f"  Delta t = {d:7.2f} ms   dw = {w:+5.0f} steps")
    root = Path(__file__).resolve().parent.parent
    if not args.no_plot:
        paths = [root / "results" / "stdp_window.png", root / "docs" / "figures" / "stdp_window.png"]
        plot(dt, dw, fit, [args.out] if args.out else paths)
    result = {
        "chip": args.chip,
        "tau_plus_configured": TAU_PLUS,
        "tau_plus_fitted": round(fit["tau_plus"], 2),
        "tau_minus_configured": TAU_MINUS,
        "tau_minus_fitted": round(fit["tau_minus"], 2),
        "tau_plus_error": round(abs(fit["tau_plus"] / TAU_PLUS - 1), 4),
        "tau_minus_error": round(abs(fit["tau_minus"] / TAU_MINUS - 1), 4),
        "sign_change_at_zero": bool(np.all(dw[dt > 0] > 0) and np.all(dw[dt < 0] < 0)),
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
