"""EventProp where the adjoint is not defined: defined values, never NaN."""

import math

import torch

from pynn_brainscales2 import snn
from pynn_brainscales2.snn.functional import eventprop as E

P = E.EventPropParameters(6.0, 6.0, 0.0, 1.0, 0.0, 20.0)


def _one_input(w, t_end=20.0, min_slope=E.DEFAULT_MIN_SLOPE):
    weight = torch.tensor([[w]], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[1.0]], dtype=torch.float64)
    src = torch.zeros((1, 1), dtype=torch.long)
    p = P._replace(t_end_us=t_end, min_slope=min_slope)
    times, vmax, tmax = E.lif_events(weight, a, src, p, with_max=True)
    return weight, times, vmax, tmax


def test_no_output_spike_counts_as_t_end_without_gradient():
    weight, times, vmax, _ = _one_input(0.3)  # PSP peak 0.66 < threshold
    assert not torch.isfinite(times).any()
    t = E.SpikeEvents(times, 20.0).first()
    assert t.item() == 20.0
    labels = torch.tensor([0])
    loss = snn.losses.ttfs_cross_entropy(torch.cat([t, t + 1.0], 1), labels, alpha=1e-2)
    loss.backward()
    assert torch.isfinite(loss) and weight.grad.item() == 0.0


def test_silent_penalty_raises_the_membrane_of_a_silent_label_neuron():
    weight, times, vmax, tmax = _one_input(0.3)
    assert 0.0 < vmax.item() < 1.0 and abs(tmax.item() - 7.0) < 1e-9  # peak tau after arrival
    t = E.SpikeEvents(times, 20.0).first()
    loss = snn.losses.ttfs_cross_entropy(
        torch.cat([t, t], 1), torch.tensor([0]), v_max=torch.cat([vmax, vmax], 1), silent_penalty=1.0
    )
    loss.backward()
    # d(1 - v_max)/dw = -K(t_max - a)
    expected = -float(E.psp_kernel(torch.tensor(6.0, dtype=torch.float64), 6.0, 6.0))
    assert abs(weight.grad.item() - expected) < 1e-9


def test_spike_exactly_at_the_end_of_the_window_counts():
    w = 0.5
    t_star = 1.0 + float(-6.0 * E.lambert_w0(torch.tensor(-1.0 / (w * 6.0), dtype=torch.float64)))
    weight, times, _, _ = _one_input(w, t_end=t_star)
    assert torch.isfinite(times[0, 0, 0]) and abs(times[0, 0, 0].item() - t_star) < 1e-9
    times[..., 0].sum().backward()
    assert torch.isfinite(weight.grad).all() and weight.grad.item() < 0
    # just before the window ends there is no spike: the first spike time is continuous there
    _, times_before, _, _ = _one_input(w, t_end=t_star - 1e-6)
    assert E.SpikeEvents(times_before, t_star - 1e-6).first().item() == t_star - 1e-6


def test_grazing_spike_has_a_clamped_finite_gradient():
    """The PSP peak just touches the threshold: dV/dt = 0 there; the jump divides by
    min_slope instead."""
    w = math.e / 6.0 * (1.0 + 1e-12)  # peak w tau / e = threshold
    weight, times, _, _ = _one_input(w)
    assert torch.isfinite(times[0, 0, 0])
    times[..., 0].sum().backward()
    g = weight.grad.item()
    k = float(E.psp_kernel(times[0, 0, 0].detach() - 1.0, 6.0, 6.0))
    assert math.isfinite(g) and abs(g - (-k / E.DEFAULT_MIN_SLOPE)) <= 1e-3 * abs(g)
    # a larger clamp gives a proportionally smaller gradient
    weight2, times2, _, _ = _one_input(w, min_slope=0.1)
    times2[..., 0].sum().backward()
    assert abs(weight2.grad.item() - (-k / 0.1)) <= 1e-3 * abs(weight2.grad.item())


def test_observed_spike_where_the_model_does_not_rise_is_finite():
    """Chip mode: a measured spike at a time where the model's membrane falls."""
    weight = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[1.0]], dtype=torch.float64)
    src = torch.zeros((1, 1), dtype=torch.long)
    observed = torch.tensor([[[15.0]]], dtype=torch.float64)  # long after the model's peak
    times = E.lif_events(weight, a, src, P, observed=observed)
    assert times.item() == 15.0
    times.sum().backward()
    assert torch.isfinite(weight.grad).all()


def test_no_input_at_all_and_all_silent_network():
    exp = snn.Experiment(mock=True, dt=0.5)
    inp = snn.InputNeuron(2, exp)
    s1 = snn.Synapse(2, 4, exp, mean=0.5, std=0.0)
    hidden = snn.LIF(4, exp, gradient="eventprop", tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
    s2 = snn.Synapse(4, 3, exp)
    out = snn.LIF(3, exp, gradient="eventprop", tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
    h = hidden(s1(inp(torch.zeros(20, 3, 2))))
    o = out(s2(h))
    snn.run(exp, 10.0)
    assert h.events.count().sum() == 0 and o.events.count().sum() == 0
    t = o.first_spike_times()
    assert torch.equal(t, torch.full((3, 3), 10.0))
    loss = snn.losses.ttfs_cross_entropy(
        t, torch.tensor([0, 1, 2]), alpha=1e-3, v_max=o.v_max, silent_penalty=1.0
    )
    loss.backward()
    for w in (s1.weight, s2.weight):
        assert w.grad is not None and torch.isfinite(w.grad).all()
    assert torch.isfinite(loss)


def test_li_maximum_without_input_is_the_resting_level():
    exp = snn.Experiment(mock=True, dt=0.5)
    inp = snn.InputNeuron(1, exp)
    syn = snn.Synapse(1, 2, exp)
    li = snn.LI(2, exp, gradient="eventprop", v_leak=0.2, tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)
    h = li(syn(inp(torch.zeros(10, 2, 1))))
    snn.run(exp, 5.0)
    assert torch.equal(h.v_max, torch.full((2, 2), 0.2)) and torch.equal(h.t_max, torch.zeros(2, 2))
    h.v_max.sum().backward()
    assert torch.equal(syn.weight.grad, torch.zeros(2, 1))


def test_inhibition_only_gives_no_spikes_and_zero_gradient():
    weight, times, vmax, _ = _one_input(-1.0)
    assert not torch.isfinite(times).any() and vmax.item() == 0.0  # rest is the maximum
    (times.nan_to_num(posinf=0.0).sum() + vmax.sum()).backward()
    assert weight.grad.item() == 0.0
