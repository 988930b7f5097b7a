"""The EventProp API of the torch bridge: modules, handles, events, losses, refusals, memory."""

import math

import pytest
import torch

from pynn_brainscales2 import snn
from pynn_brainscales2.snn.functional import eventprop as E

TAU = dict(tau_mem_us=6.0, tau_syn_exc_us=6.0, tau_syn_inh_us=6.0)


def _net(dt=0.5, batch=4, out="LIF", seed=0):
    torch.manual_seed(seed)
    exp = snn.Experiment(mock=True, dt=dt)
    inp = snn.InputNeuron(3, exp)
    s1 = snn.Synapse(3, 8, exp, mean=0.5, std=0.2)
    hid = snn.LIF(8, exp, gradient="eventprop", **TAU)
    s2 = snn.Synapse(8, 2, exp, mean=0.3, std=0.1)
    o = (snn.LIF if out == "LIF" else snn.LI)(2, exp, gradient="eventprop", **TAU)
    steps = int(round(20.0 / dt))
    x = torch.zeros(steps, batch, 3)
    g = torch.Generator().manual_seed(seed)
    for b in range(batch):
        for i in range(3):
            x[int(torch.randint(0, int(round(8.0 / dt)), (1,), generator=g)), b, i] = 1.0
    return exp, inp, s1, hid, s2, o, x


def test_handles_of_an_eventprop_pass():
    exp, inp, s1, hid, s2, out, x = _net()
    h = hid(s1(inp(x)))
    o = out(s2(h))
    snn.run(exp, 20.0)
    assert h.spikes is None and h.v is None  # nothing per time step
    assert isinstance(h.events, snn.SpikeEvents) and h.events.times.shape[:2] == (4, 8)
    t = h.events.times
    finite = torch.isfinite(t)
    assert finite.any()
    # ascending per neuron, padding only at the end
    assert (t[..., 1:][finite[..., 1:]] >= t[..., :-1][finite[..., 1:]]).all()
    assert (finite[..., 1:] <= finite[..., :-1]).all()
    assert o.first_spike_times().shape == (4, 2) and o.v_max.shape == (4, 2)
    dense = h.events.to_dense(0.5)
    assert dense.shape == (40, 4, 8) and dense.sum() == finite.sum()
    assert torch.equal(h.events.count(), finite.sum(-1))
    assert "events" in h.observables and "v_max" in o.observables
    assert repr(hid).count("gradient='eventprop'") == 1


def test_li_read_out_and_max_over_time_loss():
    exp, inp, s1, hid, s2, out, x = _net(out="LI")
    o = out(s2(hid(s1(inp(x)))))
    snn.run(exp, 20.0)
    assert o.v is None and o.v_max.shape == (4, 2) and o.t_max.shape == (4, 2)
    assert snn.losses.max_over_time(o) is o.v_max
    loss = snn.losses.max_over_time_cross_entropy(o, torch.tensor([0, 1, 0, 1]), scale=2.0)
    loss.backward()
    assert s1.weight.grad.abs().sum() > 0 and s2.weight.grad.abs().sum() > 0


def test_the_exact_maximum_is_above_every_grid_sample():
    """The exact maximum of an LI membrane is at least the surrogate path's grid maximum."""
    torch.manual_seed(2)
    x = torch.zeros(200, 3, 2)
    x[10, :, 0] = 1.0
    x[35, :, 1] = 1.0
    res = {}
    for grad in ("surrogate", "eventprop"):
        exp = snn.Experiment(mock=True, dt=0.1)
        inp = snn.InputNeuron(2, exp)
        syn = snn.Synapse(2, 3, exp)
        syn.weight.data = torch.tensor([[0.3, 0.2], [0.4, -0.3], [-0.2, 0.5]])
        li = snn.LI(3, exp, gradient=grad, tau_mem_us=8.0, tau_syn_exc_us=3.0, tau_syn_inh_us=3.0)
        h = li(syn(inp(x)))
        snn.run(exp, 20.0)
        res[grad] = snn.losses.max_over_time(h)
    assert (res["eventprop"] >= res["surrogate"] - 1e-6).all()
    assert (res["eventprop"] - res["surrogate"]).abs().max() < 5e-3  # the grid misses little


def test_ttfs_loss_values_and_prediction():
    t = torch.tensor([[3.0, 5.0, math.inf], [9.0, 2.0, 4.0]])
    labels = torch.tensor([0, 2])
    loss = snn.losses.ttfs_cross_entropy(t, labels, tau0_us=1.0, t_end=10.0, reduction="sum")
    t_filled = torch.tensor([[3.0, 5.0, 10.0], [9.0, 2.0, 4.0]])
    ref = torch.nn.functional.cross_entropy(-t_filled, labels, reduction="sum")
    torch.testing.assert_close(loss, ref)
    reg = snn.losses.ttfs_cross_entropy(t_filled, labels, 1.0, alpha=0.1, tau1_us=5.0)
    extra = 0.1 * (torch.exp(torch.tensor([3.0, 4.0]) / 5.0) - 1).mean()
    torch.testing.assert_close(reg, ref / 2 + extra)
    assert snn.losses.ttfs_predict(t_filled).tolist() == [0, 1]
    with pytest.raises(ValueError, match="silent_penalty needs v_max"):
        snn.losses.ttfs_cross_entropy(t_filled, labels, silent_penalty=1.0)


def test_refusals():
    exp = snn.Experiment(mock=True, dt=0.5)
    with pytest.raises(ValueError, match="unknown gradient"):
        snn.LIF(2, exp, gradient="bptt")
    with pytest.raises(ValueError, match="one synaptic time constant"):
        snn.LIF(2, exp, gradient="eventprop", tau_syn_exc_us=5.0, tau_syn_inh_us=3.0)
    with pytest.raises(ValueError, match="refractory_us = 0"):
        snn.LIF(2, exp, gradient="eventprop", refractory_us=1.0, **TAU)
    with pytest.raises(ValueError, match="bias current"):
        snn.LIF(2, exp, gradient="eventprop", i_bias=0.1, **TAU)
    with pytest.raises(ValueError, match="LIF and LI"):
        snn.AdEx(2, exp, gradient="eventprop", **TAU)
    with pytest.raises(TypeError, match="apply to gradient='eventprop' only"):
        snn.LIF(2, exp, max_spikes=3)
    # mixing both gradients in one pass
    inp = snn.InputNeuron(1, exp)
    s1, s2 = snn.Synapse(1, 2, exp), snn.Synapse(2, 2, exp)
    a = snn.LIF(2, exp, gradient="eventprop", **TAU)
    b = snn.LIF(2, exp, **TAU)
    b(s2(a(s1(inp(torch.zeros(10, 1, 1))))))
    with pytest.raises(NotImplementedError, match="surrogate gradients"):
        snn.run(exp, 5.0)
    # recurrent connections
    exp2 = snn.Experiment(mock=True, dt=0.5)
    inp2 = snn.InputNeuron(1, exp2)
    s_in, s_rec = snn.Synapse(1, 2, exp2), snn.Synapse(2, 2, exp2)
    lif = snn.LIF(2, exp2, gradient="eventprop", **TAU)
    h = lif(s_in(inp2(torch.zeros(10, 1, 1))))
    lif(s_rec(h))
    with pytest.raises(NotImplementedError, match="feed-forward"):
        snn.run(exp2, 5.0)


def test_max_spikes_bounds_the_spikes_per_neuron():
    exp = snn.Experiment(mock=True, dt=0.5)
    inp = snn.InputNeuron(1, exp)
    syn = snn.Synapse(1, 1, exp, mean=5.0, std=0.0)  # strong: many spikes
    lif = snn.LIF(1, exp, gradient="eventprop", max_spikes=3, **TAU)
    x = torch.zeros(40, 1, 1)
    x[0] = 1.0
    h = lif(syn(inp(x)))
    snn.run(exp, 20.0)
    assert h.events.times.shape[-1] == 3 and torch.isfinite(h.events.times).all()


def test_saved_state_grows_with_spikes_not_with_time_steps():
    """The same network and spikes on a 10x finer grid: the tensors EventProp keeps for the
    backward pass have the same size (no per-time-step state)."""
    sizes = {}
    for dt in (0.5, 0.05):
        exp, inp, s1, hid, s2, out, x = _net(dt=dt)
        if dt == 0.05:  # the same input spike times on the finer grid
            coarse = _net(dt=0.5)[-1]
            x = torch.zeros(400, 4, 3)
            k, b, i = torch.nonzero(coarse, as_tuple=True)
            x[k * 10, b, i] = 1.0
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            o = out(s2(hid(s1(inp(x)))))
            snn.run(exp, 20.0)
            loss = o.first_spike_times().sum()
        sizes[dt] = sum(saved)
        loss.backward()
    assert sizes[0.5] == sizes[0.05]
    assert sizes[0.05] < 400 * 4 * 8 / 5  # far less than one value per (step, sample, hidden neuron)


def test_dense_to_times_round_trip():
    z = torch.zeros(6, 2, 3)
    z[1, 0, 0] = z[4, 0, 0] = z[2, 1, 2] = 1.0
    t = E.dense_to_times(z, 0.5)
    assert t.shape == (2, 3, 2)
    assert t[0, 0].tolist() == [0.5, 2.0] and t[1, 2, 0].item() == 1.0
    assert not torch.isfinite(t[0, 1]).any()
    torch.testing.assert_close(E.SpikeEvents(t, 3.0).to_dense(0.5), z)
