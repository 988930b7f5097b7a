"""Chip mode of layer stacks that do not fit one chip: sequential partitions.

The reference is the same network run in one piece. On an ideal chip with
``dt_us = 0.008`` (the FPGA's time-stamp tick) a replayed spike reaches the next layer in
the same integration step as the on-chip route would deliver it, and all used circuits get
the same calibration targets, so the partitioned forward pass must agree exactly.
"""

import concurrent.futures

import pytest
import torch

from cysim import VirtualChip
from pynn_brainscales2 import snn
from pynn_brainscales2.errors import PlacementError, RoutingError
from pynn_brainscales2.snn.partition import PartitionedRunner

PARAMS = dict(tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0, refractory_us=0.0)  # EventProp-ready
STEPS, RUNTIME = 300, 30.0


def stack(max_circuits=None, gradient=None, executor=None, out_size=10):
    """5 inputs -> 20 LIF -> ``out_size`` LIF; both layers with the same largest weight, so
    every circuit in use has the same calibration targets."""
    torch.manual_seed(0)
    exp = snn.Experiment(
        mock=False, dt=0.1, chip=VirtualChip.ideal(dt_us=0.008), max_circuits=max_circuits, executor=executor
    )
    kw = {} if gradient is None else {"gradient": gradient}
    inp = snn.InputNeuron(5, exp)
    s1 = snn.Synapse(5, 20, exp, mean=0.3, std=0.3)
    h1 = snn.LIF(20, exp, **PARAMS, **kw)
    s2 = snn.Synapse(20, out_size, exp, mean=0.15, std=0.25)
    h2 = snn.LIF(out_size, exp, **PARAMS, **kw)
    with torch.no_grad():
        for s in (s1, s2):
            s.weight.clamp_(-0.8, 0.8)
            s.weight[0, 0] = 0.8
    return exp, inp, s1, h1, s2, h2


def inputs(batch=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(STEPS, batch, 5)
    for b in range(batch):
        for k in range(5):
            for _ in range(2):
                x[int(10 + 150 * torch.rand(1, generator=g)), b, k] = 1.0
    return x


def forward(net, x):
    exp, inp, s1, h1, s2, h2 = net
    a = h1(s1(inp(x)))
    o = h2(s2(a))
    snn.run(exp, RUNTIME)
    return a, o


@pytest.fixture(scope="module")
def whole_and_parts():
    x = inputs()
    whole, parts = stack(), stack(max_circuits=10)
    out_w, out_p = forward(whole, x), forward(parts, x)
    return x, (whole, out_w), (parts, out_p)


def test_plan_of_the_partitioned_pass(whole_and_parts):
    _, (whole, _), (parts, _) = whole_and_parts
    assert whole[0].partition_plan.n_runs == 1
    plan = parts[0].partition_plan
    assert isinstance(parts[0]._runner, PartitionedRunner)
    assert plan.n_runs == 3
    assert [lp.ranges for lp in plan.layers] == [((0, 10), (10, 20)), ((0, 10),)]
    assert "3 chip runs" in str(plan)


def test_partitioned_forward_equals_the_whole_network(whole_and_parts):
    _, (_, (a_w, o_w)), (_, (a_p, o_p)) = whole_and_parts
    assert a_w.spikes.sum() > 50 and o_w.spikes.sum() > 20
    for x_w, x_p in ((a_w, a_p), (o_w, o_p)):
        assert torch.equal(x_w.spikes.detach(), x_p.spikes.detach())
        assert torch.equal(x_w.fraction, x_p.fraction)
        assert torch.equal(x_w.v.detach(), x_p.v.detach())


def test_gradients_through_the_partitioned_forward_equal_the_whole(whole_and_parts):
    _, (whole, (a_w, o_w)), (parts, (a_p, o_p)) = whole_and_parts
    for a, o in ((a_w, o_w), (a_p, o_p)):
        loss = o.v.pow(2).mean() + 0.1 * a.spikes.mean()
        loss.backward()
    for s_w, s_p in ((whole[2], parts[2]), (whole[4], parts[4])):
        assert s_p.weight.grad is not None and s_p.weight.grad.abs().sum() > 0
        torch.testing.assert_close(s_p.weight.grad, s_w.weight.grad, rtol=1e-5, atol=1e-7)


def test_eventprop_spike_times_and_gradients_through_partitions():
    x = inputs(batch=2, seed=3)
    times, grads = [], []
    for budget in (None, 10):
        exp, inp, s1, h1, s2, h2 = net = stack(max_circuits=budget, gradient="eventprop")
        _, o = forward(net, x)
        t = o.first_spike_times()
        t.sum().backward()
        times.append(t.detach())
        grads.append((s1.weight.grad.clone(), s2.weight.grad.clone()))
    assert torch.isfinite(times[0]).any()
    assert torch.equal(times[0], times[1])
    for g_w, g_p in zip(*grads, strict=True):
        assert g_p.abs().sum() > 0
        torch.testing.assert_close(g_p, g_w, rtol=1e-5, atol=1e-7)


def test_partitions_of_a_layer_run_together_on_an_executor(whole_and_parts):
    x, _, (_, (a_p, o_p)) = whole_and_parts
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        net = stack(max_circuits=10, executor=pool)
        a, o = forward(net, x)
    assert isinstance(net[0]._runner, PartitionedRunner)
    assert torch.equal(a.spikes.detach(), a_p.spikes.detach())
    assert torch.equal(o.v.detach(), o_p.v.detach())


def test_recurrent_network_that_does_not_fit_is_refused():
    exp = snn.Experiment(mock=False, dt=0.1, chip=VirtualChip.ideal(), max_circuits=8)
    inp = snn.InputNeuron(3, exp)
    s_in = snn.Synapse(3, 12, exp)
    rec = snn.Synapse(12, 12, exp)
    lif = snn.LIF(12, exp)
    x = torch.zeros(50, 1, 3)
    x[5] = 1.0
    h = lif(s_in(inp(x)))
    lif(rec(h))  # the population receives its own spikes
    with pytest.raises(PlacementError) as err:
        snn.run(exp, 5.0)
    msg = str(err.value)
    assert "recurrent" in msg and "cycle" in msg and "12 neuron circuits" in msg
    assert "passes spikes forward only" in msg and "mock=True" in msg


def test_a_network_that_is_no_layer_stack_is_refused_with_the_reason():
    exp = snn.Experiment(mock=False, dt=0.1, chip=VirtualChip.ideal(), max_circuits=8)
    a, b = snn.InputNeuron(3, exp), snn.InputNeuron(2, exp)
    sa, sb = snn.Synapse(3, 12, exp), snn.Synapse(2, 12, exp)
    lif = snn.LIF(12, exp)
    lif(sa(a(torch.zeros(50, 1, 3))), sb(b(torch.zeros(50, 1, 2))))
    with pytest.raises((PlacementError, RoutingError), match="feed-forward layer stacks only"):
        snn.run(exp, 5.0)


def test_max_circuits_is_checked():
    with pytest.raises(ValueError, match="max_circuits = 0"):
        snn.Experiment(mock=False, max_circuits=0)
    with pytest.raises(ValueError, match="max_circuits = 600"):
        snn.Experiment(mock=False, max_circuits=600)
