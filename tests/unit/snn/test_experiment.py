"""Experiment, modules and run(): graph execution, recurrence, errors."""

import pytest
import torch

from pynn_brainscales2 import snn
from pynn_brainscales2.errors import BrainScaleS2Error, ShapeError, TensorTypeError
from pynn_brainscales2.snn.functional import (
    LIFParameters,
    UnknownSurrogateError,
    initial_state,
    input_arrivals,
    integrate,
    lif_step,
    propagators,
    step_arrival,
)


def _net(dt=0.1, recurrent_weight=None, hidden=6):
    torch.manual_seed(0)
    exp = snn.Experiment(mock=True, dt=dt)
    inp = snn.InputNeuron(3, exp, name="in")
    s1 = snn.Synapse(3, hidden, exp, mean=0.5, std=0.3, name="in->h")
    lif = snn.LIF(hidden, exp, name="h", tau_syn_inh_us=3.0)
    s2 = snn.Synapse(hidden, 2, exp, name="h->out")
    li = snn.LI(2, exp, name="out")
    rec = None
    if recurrent_weight is not None:  # created last: the other weights stay the same
        rec = snn.Synapse(hidden, hidden, exp, name="h->h")
        with torch.no_grad():
            rec.weight.fill_(recurrent_weight)
    return exp, inp, s1, lif, rec, s2, li


def _spikes(steps=200, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, 3, generator=g) < 0.03).float()


def _forward(net, spikes, runtime=20.0):
    exp, inp, s1, lif, rec, s2, li = net
    h = lif(s1(inp(spikes)))
    if rec is not None:
        lif(rec(h))
    o = li(s2(h))
    snn.run(exp, runtime)
    return h, o


def test_feed_forward_run_equals_the_functional_simulation():
    net = _net()
    exp, inp, s1, lif, _, _, _ = net
    x = _spikes()
    h, o = _forward(net, x)
    arr = input_arrivals(x, 0.1)
    w = s1.weight
    out = integrate(lif.params, 0.1, arr @ w.clamp(min=0).T, arr @ (-w).clamp(min=0).T, fraction=True)
    torch.testing.assert_close(h.v, out.v)
    assert torch.equal(h.spikes, out.spikes)
    assert h.spikes.sum() > 0 and o.spikes is None and o.v.shape == (200, 4, 2)


def test_zero_recurrent_weights_take_the_step_path_with_the_same_result():
    x = _spikes()
    h_ff, o_ff = _forward(_net(), x)
    h_rec, o_rec = _forward(_net(recurrent_weight=0.0), x)
    torch.testing.assert_close(h_rec.v, h_ff.v)
    torch.testing.assert_close(o_rec.v, o_ff.v)


def test_recurrent_network_equals_a_hand_written_step_loop():
    net = _net(recurrent_weight=0.05)
    exp, inp, s1, lif, rec, _, _ = net
    x = _spikes()
    h, _ = _forward(net, x)
    # by hand: lif_step with input and recurrent arrivals, latency split by crossing fraction
    arr = input_arrivals(x, 0.1)
    w_in, w_rec = s1.weight, rec.weight
    p = lif.params
    state = initial_state(p, 4, 6, x)
    prop = propagators(p, 0.1, x)
    zs, fs, vs = [], [], []
    for n in range(200):
        e = arr[n] @ w_in.clamp(min=0).T
        i = arr[n] @ (-w_in).clamp(min=0).T
        a = step_arrival(zs, fs, n, 0.1)
        if a is not None:
            e = e + a @ w_rec.clamp(min=0).T
            i = i + a @ (-w_rec).clamp(min=0).T
        (z, v, _, f), state = lif_step(state, e, i, p, prop, True)
        zs.append(z)
        fs.append(f)
        vs.append(v)
    torch.testing.assert_close(h.v, torch.stack(vs))
    assert torch.stack(zs).sum() > _forward(_net(), x)[0].spikes.sum()  # excitation adds spikes


def test_two_population_cycle_runs_and_gradients_flow():
    torch.manual_seed(2)
    exp = snn.Experiment(mock=True, dt=0.2)
    inp = snn.InputNeuron(2, exp)
    a, b = snn.LIF(4, exp), snn.LIF(3, exp)
    s_in, s_ab, s_ba = (
        snn.Synapse(2, 4, exp, mean=1.0),
        snn.Synapse(4, 3, exp, mean=0.6),
        snn.Synapse(3, 4, exp),
    )
    ha = a(s_in(inp(_spikes(100, 2)[:, :, :2])))
    hb = b(s_ab(ha))
    a(s_ba(hb))
    snn.run(exp, 20.0)
    assert ha.spikes.shape == (100, 2, 4) and hb.spikes.shape == (100, 2, 3)
    (ha.v.sum() + hb.v.sum()).backward()
    assert s_ba.weight.grad is not None and s_in.weight.grad.abs().sum() > 0


def test_handles_carry_currents_and_runtime_pads_inputs():
    net = _net()
    exp, inp, s1, lif, _, s2, li = net
    x = _spikes(50)
    h_in = inp(x)
    syn = s1(h_in)
    h = lif(syn)
    snn.run(exp, 20.0)  # 200 steps: the 50 input steps are padded with silence
    assert h.v.shape[0] == 200 and h_in.spikes.shape[0] == 200
    assert syn.current.shape == (200, 4, 6)
    torch.testing.assert_close(h.current[1:], h.current[1:])  # filled
    assert set(h.observables) == {"spikes", "v", "current"}


def test_chip_mode_rejects_adex_with_a_clear_error():
    from cysim import VirtualChip
    from pynn_brainscales2.errors import ParameterRangeError

    exp = snn.Experiment(mock=False, dt=0.1, chip=VirtualChip.ideal())
    inp = snn.InputNeuron(1, exp)
    snn.AdEx(1, exp)(snn.Synapse(1, 1, exp)(inp(torch.zeros(10, 1, 1))))
    with pytest.raises(ParameterRangeError, match="AdEx"):
        snn.run(exp, 1.0)
    assert exp._handles == {}  # the pass is closed even after the error


def test_shape_errors_name_the_module_and_the_expected_shape():
    exp, inp, s1, lif, _, s2, li = _net()
    with pytest.raises(ShapeError, match=r"InputNeuron 'in' expects spikes of shape \[time, batch, 3\]"):
        inp(torch.zeros(10, 3))
    with pytest.raises(
        ShapeError, match=r"Synapse 'h->out' expects 6 presynaptic neurons; InputNeuron 'in' has 3"
    ):
        s2(inp(torch.zeros(10, 1, 3)))
    with pytest.raises(ShapeError, match=r"LI 'out' has 2 neurons but Synapse 'in->h' projects onto 6"):
        li(s1(inp(torch.zeros(10, 1, 3))))
    assert issubclass(ShapeError, ValueError) and issubclass(ShapeError, BrainScaleS2Error)


def test_dtype_and_device_errors():
    exp, inp, s1, lif, _, s2, li = _net()
    with pytest.raises(TensorTypeError, match="InputNeuron 'in' expects floating-point spikes"):
        inp(torch.zeros(10, 1, 3, dtype=torch.int64))
    s1.double()
    lif(s1(inp(torch.zeros(10, 1, 3))))
    with pytest.raises(TensorTypeError, match=r"Synapse 'in->h' has weights of torch.float64"):
        snn.run(exp, 1.0)


def test_unknown_surrogate_and_parameter_names():
    exp = snn.Experiment()
    with pytest.raises(UnknownSurrogateError, match="superspike"):
        snn.LIF(3, exp, method="exact")
    with pytest.raises(TypeError, match="tau_mem_us"):
        snn.LIF(3, exp, tau_m=5.0)
    with pytest.raises(ValueError, match="positive grid step"):
        snn.Experiment(dt=0.0)


def test_modules_work_as_parts_of_a_plain_torch_model():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.exp = snn.Experiment(dt=0.5)
            self.inp = snn.InputNeuron(3, self.exp)
            self.syn = snn.Synapse(3, 2, self.exp)
            self.out = snn.LI(2, self.exp)

        def forward(self, x):
            h = self.out(self.syn(self.inp(x)))
            snn.run(self.exp, 10.0)
            return h.v.max(0).values

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["syn.weight"]
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.zeros(20, 1, 3)
    x[2] = 1.0
    before = net(x).sum().item()
    (-net(x).sum()).backward()  # ascend the score
    opt.step()
    assert net(x).sum().item() > before
    assert LIFParameters()._fields[0] == "tau_mem_us"
