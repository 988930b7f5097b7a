"""EventProp with the realistic virtual chip in the loop (seed 003, Fig. 3).

50 LIF circuits of a mismatched, calibrated chip each receive one input spike; EventProp
computes dt_first/dw from the chip's spike times and the model's adjoint. The per-circuit
gradients spread (mismatch after calibration, noise), their mean agrees with the analytic
gradient. Each input feeds two circuits, so the inputs use 25 different synapse rows and
drivers: one shared driver would add its own gain error (about +-10 % on these chips) to all
circuits alike.
"""

import math

import torch

from cysim import VirtualChip
from pynn_brainscales2 import snn
from pynn_brainscales2.snn.functional import eventprop as E

N = 50
SEND_US, LATENCY_US = 1.0, 0.1


def test_mean_chip_gradient_over_50_circuits_agrees_with_the_analytic_one():
    torch.manual_seed(0)
    # the circuits' calibrated gains only: every synapse keeps its driver's and its own
    # deviation (the measured synapse gains would take out most of the spread checked below)
    exp = snn.Experiment(mock=False, dt=0.1, chip=VirtualChip(seed=0), calibrate_synapses=False)
    inp = snn.InputNeuron(N // 2, exp)
    syn = snn.Synapse(N // 2, N, exp)
    lif = snn.LIF(N, exp, gradient="eventprop", tau_mem_us=6.0, tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
    rows, cols = torch.arange(N), torch.arange(N) // 2
    w = torch.zeros(N, N // 2)
    w[rows, cols] = 0.8
    syn.weight.data = w
    trials = 2
    x = torch.zeros(200, trials, N // 2)
    x[int(round(SEND_US / 0.1))] = 1.0
    h = lif(syn(inp(x)))
    snn.run(exp, 20.0)
    t_first = h.first_spike_times()
    assert h.events.count().min() >= 1  # every circuit spiked in every trial
    t_first.sum().backward()
    grad = syn.weight.grad[rows, cols] / trials
    w_chip = float(exp._runner.realised_weight(syn).detach()[0, 0])  # 6-bit weight on the chip
    t_ref, g_ref = E.first_spike_time_analytic(
        torch.tensor([[w_chip]]), torch.tensor([SEND_US + LATENCY_US]), 6.0, 1.0
    )
    g_ref = float(g_ref)
    assert torch.isfinite(grad).all()
    # the circuits differ (mismatch): a spread of several percent ...
    assert grad.std() > 0.02 * abs(g_ref)
    # ... but the mean agrees with the analytic gradient: measured -1.8 % (chip seed 0),
    # +0.6 % (seed 1), -0.3 % (seed 2), standard error of the mean 1.0-1.3 %
    rel = float(grad.mean()) / g_ref - 1.0
    sem = float(grad.std()) / math.sqrt(N) / abs(g_ref)
    assert abs(rel) < 0.05, (rel, sem)
    assert abs(float(t_first.detach().mean()) - float(t_ref)) < 0.05 * (float(t_ref) - SEND_US)


def test_chip_mode_li_maximum_comes_from_the_cadc_trace():
    """LI read-out in chip mode: v_max is the maximum of the CADC trace, the gradient the
    model's kernel at that time."""
    torch.manual_seed(1)
    exp = snn.Experiment(mock=False, dt=0.1, chip=VirtualChip.ideal())
    inp = snn.InputNeuron(2, exp)
    syn = snn.Synapse(2, 3, exp, mean=0.3, std=0.05)
    li = snn.LI(3, exp, gradient="eventprop", tau_mem_us=6.0, tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
    x = torch.zeros(300, 2, 2)
    x[20, :, 0] = 1.0
    x[40, :, 1] = 1.0
    h = li(syn(inp(x)))
    snn.run(exp, 30.0)
    assert h.v is not None and h.v.shape == (300, 2, 3)
    torch.testing.assert_close(h.v_max.detach(), h.v.max(0).values)
    h.v_max.sum().backward()
    # dV(t_max)/dw_i = K(t_max - a_i) for the kernel of the model
    a = torch.tensor([2.0, 4.0]) + LATENCY_US
    k = E.psp_kernel(h.t_max[..., None] - a, 6.0, 6.0)  # [batch, 3, 2]
    torch.testing.assert_close(syn.weight.grad, k.sum(0), rtol=1e-4, atol=1e-5)
    # the ideal chip's maximum is the model's (6-bit weights, CADC rounding)
    v_model, _ = E.li_maximum(
        torch.tensor([[2.1, 4.1]] * 2),
        torch.tensor([[0, 1]] * 2),
        exp._runner.realised_weight(syn).detach(),
        E.EventPropParameters(6.0, 6.0, 0.0, math.inf, 0.0, 30.0, spiking=False),
    )
    torch.testing.assert_close(h.v_max.detach(), v_model, atol=0.05, rtol=0.05)
