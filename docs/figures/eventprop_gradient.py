"""EventProp gradient of a single spike: numerical convergence and the chip (seed 003, Fig. 1, 3).

One LIF neuron (tau_mem = tau_syn = 6 us, threshold 1, reset 0) receives one input spike with
weight ``w`` (sent at 1.0 us, arriving 0.1 us later); the loss is the time of its first spike.

Top row (Fig. 1): the spike time, the analytic gradient ``dt*/dw = -eps(t* - t_in) / Vdot(t*)``
(Lambert W), the exact event-based EventProp gradient, and the time-stepped EventProp
(explicit Euler for the forward and the adjoint dynamics) for several ``dt``; its error
shrinks in proportion to ``dt``.

Bottom row (Fig. 3): 50 circuits of a realistic, calibrated virtual chip (``VirtualChip(seed=0)``:
fixed-pattern mismatch, temporal noise) in chip mode; EventProp uses the chip's spike times.
Each circuit in grey, their mean dashed, the analytic result in blue.

    .venv/bin/python docs/figures/eventprop_gradient.py     # writes eventprop_gradient.png

The last line printed is ``RESULT {json}`` with the numbers shown.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from pynn_brainscales2 import snn
from pynn_brainscales2.snn.functional import eventprop as E

HERE = Path(__file__).resolve().parent
TAU, THETA, SEND, LATENCY = 6.0, 1.0, 1.0, 0.1
T_IN = SEND + LATENCY
N_CIRCUITS = 50


def exact_eventprop(weights: np.ndarray):
    """Spike times and EventProp gradients of independent neurons, mock mode (exact forward)."""
    exp = snn.Experiment(mock=True, dt=0.1)
    inp = snn.InputNeuron(1, exp)
    syn = snn.Synapse(1, len(weights), exp)
    lif = snn.LIF(
        len(weights), exp, gradient="eventprop", tau_mem_us=TAU, tau_syn_exc_us=TAU, tau_syn_inh_us=TAU
    )
    syn.weight.data = torch.tensor(weights, dtype=torch.float64)[:, None]
    x = torch.zeros(300, 1, 1, dtype=torch.float64)
    x[int(round(SEND / 0.1))] = 1.0
    h = lif(syn(inp(x)))
    snn.run(exp, 30.0)
    t = h.first_spike_times(missing="inf")[0]
    t.sum().backward()
    return t.detach().numpy(), syn.weight.grad[:, 0].numpy()


def chip_sweep(weights: np.ndarray, seed: int = 0, trials: int = 2):
    """Per-circuit spike times and gradients on a realistic chip, largest weight first (it sets
    the synaptic gain at mapping time). Each input feeds two circuits (25 inputs, 25 synapse
    drivers)."""
    from cysim import VirtualChip

    n = N_CIRCUITS
    exp = snn.Experiment(mock=False, dt=0.1, chip=VirtualChip(seed=seed))
    inp = snn.InputNeuron(n // 2, exp)
    syn = snn.Synapse(n // 2, n, exp)
    lif = snn.LIF(n, exp, gradient="eventprop", tau_mem_us=TAU, tau_syn_exc_us=TAU, tau_syn_inh_us=TAU)
    rows, cols = torch.arange(n), torch.arange(n) // 2
    out_t, out_g, realised = [], [], []
    for w in sorted(weights, reverse=True):
        m = torch.zeros(n, n // 2)
        m[rows, cols] = float(w)
        syn.weight.data = m
        syn.weight.grad = None
        x = torch.zeros(200, trials, n // 2)
        x[int(round(SEND / 0.1))] = 1.0
        h = lif(syn(inp(x)))
        snn.run(exp, 20.0)
        t = h.first_spike_times(missing="inf")
        torch.where(torch.isfinite(t), t, torch.zeros_like(t)).sum().backward()
        t_mean = torch.where(torch.isfinite(t), t, torch.nan).detach().nanmean(0)
        out_t.append(t_mean.numpy())
        out_g.append((syn.weight.grad[rows, cols] / trials).numpy())
        realised.append(float(exp._runner.realised_weight(syn).detach()[0, 0]))
    order = np.argsort(realised)
    return np.array(realised)[order], np.array(out_t)[order], np.array(out_g)[order]


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    w = np.linspace(0.47, 2.0, 120)
    t_ref, g_ref = (
        x.numpy()
        for x in E.first_spike_time_analytic(torch.tensor(w)[:, None], torch.tensor([T_IN]), TAU, THETA)
    )
    g_ref = g_ref[:, 0]
    w_ex = np.linspace(0.5, 2.0, 13)
    t_ex, g_ex = exact_eventprop(w_ex)
    g_ex_ref = E.first_spike_time_analytic(torch.tensor(w_ex)[:, None], torch.tensor([T_IN]), TAU, THETA)[1][
        :, 0
    ]
    exact_rel = float(np.max(np.abs(g_ex / g_ex_ref.numpy() - 1.0)))
    p = E.EventPropParameters(TAU, TAU, 0.0, THETA, 0.0, 30.0)
    steps = {}
    for dt in (1.0, 0.5, 0.2, 0.05):
        _, g = E.euler_first_spike(torch.tensor(w)[:, None], [T_IN], p, dt)
        steps[dt] = g[:, 0].numpy()
    dts = [0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001]
    w_err = torch.tensor([[0.6], [1.0], [1.5]], dtype=torch.float64)
    g_err_ref = E.first_spike_time_analytic(w_err, torch.tensor([T_IN]), TAU, THETA)[1][:, 0]
    errors = []
    for dt in dts:
        _, g = E.euler_first_spike(w_err, [T_IN], p, dt)
        errors.append((g[:, 0] / g_err_ref - 1.0).abs().numpy())
    errors = np.array(errors)
    slope = float(np.polyfit(np.log(dts), np.log(errors.mean(1)), 1)[0])

    w_chip = np.linspace(0.55, 1.0, 10)
    wr, t_chip, g_chip = chip_sweep(w_chip)
    tr, gr = (
        x.numpy()
        for x in E.first_spike_time_analytic(torch.tensor(wr)[:, None], torch.tensor([T_IN]), TAU, THETA)
    )
    gr = gr[:, 0]
    rel_mean = g_chip.mean(1) / gr - 1.0
    rel_sem = g_chip.std(1) / math.sqrt(N_CIRCUITS) / np.abs(gr)

    fig, ax = plt.subplots(2, 3, figsize=(13, 7.2))
    ax[0, 0].plot(w, t_ref - T_IN, "k", label="analytic (Lambert W)")
    ax[0, 0].plot(w_ex, t_ex - T_IN, "o", color="C3", ms=4, label="event-based forward")
    ax[0, 0].set(xlabel="weight w [pu/us]", ylabel="t_post - t_in [us]", title="spike time, one input")
    ax[0, 0].legend(fontsize=8)
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(steps)))
    for (dt, g), c in zip(steps.items(), colours, strict=True):
        ax[0, 1].plot(w, g, "--", color=c, label=f"Euler EventProp, dt = {dt} us")
    ax[0, 1].plot(w, g_ref, "k", lw=1.5, label="analytic")
    ax[0, 1].plot(w_ex, g_ex, "o", color="C3", ms=4, label="exact EventProp")
    ax[0, 1].set(
        xlabel="weight w [pu/us]",
        ylabel="dL/dw [us / (pu/us)]",
        ylim=(-7, 0.2),
        xlim=(0.55, 1.6),
        title="gradient of L = t_post",
    )
    ax[0, 1].legend(fontsize=7)
    for k, wv in enumerate(w_err[:, 0].tolist()):
        ax[0, 2].loglog(dts, errors[:, k], "o-", ms=3, label=f"w = {wv}")
    ax[0, 2].loglog(dts, errors[0, 0] * np.array(dts) / dts[0], "k:", label="slope 1")
    ax[0, 2].set(
        xlabel="dt [us]", ylabel="|relative error|", title=f"Euler EventProp: error ~ dt^{slope:.2f}"
    )
    ax[0, 2].legend(fontsize=8)

    for k in range(N_CIRCUITS):
        ax[1, 0].plot(wr, t_chip[:, k] - T_IN, color="0.75", lw=0.6)
        ax[1, 1].plot(wr, g_chip[:, k], color="0.75", lw=0.6)
    ax[1, 0].plot(wr, t_chip.mean(1) - T_IN, "k--", label=f"mean of {N_CIRCUITS} circuits")
    ax[1, 0].plot(wr, tr - T_IN, color="C0", label="analytic")
    ax[1, 0].set(
        xlabel="weight w (6-bit, as realised) [pu/us]", ylabel="t_post - t_in [us]", title="chip: spike time"
    )
    ax[1, 0].legend(fontsize=8)
    ax[1, 1].plot(wr, g_chip.mean(1), "k--", label="mean")
    ax[1, 1].plot(wr, gr, color="C0", label="analytic")
    ax[1, 1].set(xlabel="weight w [pu/us]", ylabel="dL/dw", title="chip: EventProp gradient per circuit")
    ax[1, 1].legend(fontsize=8)
    ax[1, 2].errorbar(wr, 100 * rel_mean, yerr=100 * rel_sem, fmt="o-", ms=3, color="k", capsize=2)
    ax[1, 2].axhline(0.0, color="C0")
    ax[1, 2].set(
        xlabel="weight w [pu/us]",
        ylabel="mean / analytic - 1 [%]",
        title="chip: mean gradient vs analytic (+- s.e.m.)",
    )
    for a in ax.flat:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(HERE / "eventprop_gradient.png", dpi=110)
    result = {
        "exact_max_rel_error": exact_rel,
        "euler_dt_us": dts,
        "euler_mean_rel_error": [float(x) for x in errors.mean(1)],
        "euler_order": slope,
        "chip_weights": [round(float(x), 4) for x in wr],
        "chip_mean_rel_error_percent": [round(float(x) * 100, 2) for x in rel_mean],
        "chip_sem_percent": [round(float(x) * 100, 2) for x in rel_sem],
        "chip_circuit_spread_percent": [round(float(s) * 100, 1) for s in g_chip.std(1) / np.abs(gr)],
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
