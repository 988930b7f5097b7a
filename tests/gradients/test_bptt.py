"""Gradients through the simulated dynamics (BPTT) against analytic values."""

import math

import torch

from pynn_brainscales2 import snn
from pynn_brainscales2.snn.functional import LIFParameters, LIParameters, integrate

DT = 0.1


def _psp(t, tau_m, tau_s):
    """Membrane response to a unit current jump at t = 0 (exponential synapse)."""
    return (math.exp(-t / tau_m) - math.exp(-t / tau_s)) / (1.0 / tau_s - 1.0 / tau_m)


def test_li_weight_gradient_is_the_psp_kernel():
    """An LI membrane is linear in the weights: dV(t)/dw = PSP kernel(t - t_arrival)."""
    exp = snn.Experiment(mock=True, dt=DT)
    inp = snn.InputNeuron(2, exp)
    syn = snn.Synapse(2, 1, exp)
    li = snn.LI(1, exp, tau_mem_us=8.0, tau_syn_exc_us=3.0, tau_syn_inh_us=3.0)
    spikes = torch.zeros(300, 1, 2)
    spikes[20, 0, 0] = 1.0
    spikes[70, 0, 1] = 1.0
    h = li(syn(inp(spikes)))
    snn.run(exp, 30.0)
    n = 200
    h.v[n, 0, 0].backward()
    # external events arrive one step (0.1 us latency) after they are sent
    expected = [_psp((n - 21) * DT, 8.0, 3.0), _psp((n - 71) * DT, 8.0, 3.0)]
    torch.testing.assert_close(syn.weight.grad[0], torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_spike_gradient_uses_the_surrogate_at_the_threshold_crossing():
    """d z_n / d w of the first spike is surrogate(V_{n+1} - v_th) * dV_{n+1}/dw."""
    w = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    x = torch.zeros(200, 1, 1, dtype=torch.float64)
    x[10] = 1.0
    p = LIFParameters(tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0, v_th=1.0, alpha=10.0)
    out = integrate(p, DT, x * w)
    n = int(torch.nonzero(out.spikes[:, 0, 0])[0])
    out.spikes[n, 0, 0].backward()
    v_next = w.detach() * _psp((n + 1 - 10) * DT, 6.0, 5.0)
    expected = _psp((n + 1 - 10) * DT, 6.0, 5.0) / (1.0 + 10.0 * abs(float(v_next) - 1.0)) ** 2
    assert abs(w.grad.item() - expected) < 1e-9


def test_gradients_reach_every_weight_of_a_two_layer_network():
    torch.manual_seed(1)
    exp = snn.Experiment(mock=True, dt=0.5)
    inp = snn.InputNeuron(4, exp)
    s1 = snn.Synapse(4, 10, exp, mean=0.6, std=0.2)
    lif = snn.LIF(10, exp)
    s2 = snn.Synapse(10, 2, exp)
    li = snn.LI(2, exp)
    spikes = (torch.rand(40, 3, 4) < 0.1).float()
    out = li(s2(lif(s1(inp(spikes)))))
    snn.run(exp, 20.0)
    out.v.max(0).values.sum().backward()
    assert s1.weight.grad.abs().sum() > 0 and s2.weight.grad.abs().sum() > 0


def test_li_parameters_and_integrate_are_linear():
    x = torch.randn(50, 2, 3, dtype=torch.float64)
    p = LIParameters(tau_mem_us=4.0, tau_syn_exc_us=2.0, tau_syn_inh_us=2.0)
    a = integrate(p, DT, x).v
    b = integrate(p, DT, 2.5 * x).v
    torch.testing.assert_close(b, 2.5 * a)
