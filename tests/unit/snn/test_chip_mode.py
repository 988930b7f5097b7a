"""Chip mode of the torch bridge: mapped once, the chip's values forward, model gradients back."""

import numpy as np
import pytest
import torch

from cysim import VirtualChip
from pynn_brainscales2 import snn
from pynn_brainscales2.snn import transforms as T
from pynn_brainscales2.snn.datasets import YinYang


def network(mock, chip=None, hidden=20, seed=0):
    torch.manual_seed(seed)
    exp = snn.Experiment(mock=mock, dt=0.1, chip=chip)
    inp = snn.InputNeuron(5, exp)
    s1 = snn.Synapse(5, hidden, exp, mean=0.3, std=0.3)
    lif = snn.LIF(hidden, exp, tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0, refractory_us=1.0)
    s2 = snn.Synapse(hidden, 3, exp, mean=0.05, std=0.1)
    li = snn.LI(3, exp, tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0)
    return exp, inp, s1, lif, s2, li


def inputs(batch=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(380, batch, 5)
    for b in range(batch):
        for k in range(5):
            x[int(20 + 200 * torch.rand(1, generator=g)), b, k] = 1.0
    return x


def forward(net, x):
    exp, inp, s1, lif, s2, li = net
    h = lif(s1(inp(x)))
    o = li(s2(h))
    snn.run(exp, 38.0)
    return h, o


@pytest.fixture(scope="module")
def pair():
    mock, chip = network(True), network(False, VirtualChip.ideal())
    return mock, chip


def test_ideal_chip_forward_agrees_with_mock(pair):
    (mock, chip), x = pair, inputs()
    hm, om = forward(mock, x)
    hc, oc = forward(chip, x)
    counts_m, counts_c = hm.spikes.sum().item(), hc.spikes.sum().item()
    assert counts_m > 50
    assert abs(counts_c - counts_m) <= 0.05 * counts_m  # 6-bit weights, CADC read-out
    peak_m, peak_c = om.v.max(0).values, oc.v.max(0).values
    assert torch.allclose(peak_c, peak_m, atol=0.15 * float(peak_m.detach().abs().max()))


def test_forward_is_the_chip_and_gradient_is_the_model(pair):
    _, chip = pair
    x = inputs(seed=2)
    exp, inp, s1, lif, s2, li = chip
    h = lif(s1(inp(x)))
    o = li(s2(h))
    runner_before = exp._runner
    snn.run(exp, 38.0)
    observed = exp._runner.run({inp: type("H", (), {"spikes": x})()}, 380)
    z_chip, _, v_chip, _ = observed[lif]
    _, _, out_chip, _ = observed[li]
    # the forward values are the chip's (a second identical chip run: the ideal chip is
    # deterministic)
    assert torch.equal(h.spikes.detach(), z_chip)
    assert torch.allclose(o.v.detach(), out_chip)
    loss = o.v.max(0).values.sum()
    loss.backward()
    assert s2.weight.grad is not None and s2.weight.grad.abs().sum() > 0
    assert s1.weight.grad is not None and torch.isfinite(s1.weight.grad).all()
    assert runner_before is None or runner_before is exp._runner


def test_mapped_once_weights_rewritten(pair):
    _, chip = pair
    exp, inp, s1, lif, s2, li = chip
    forward(chip, inputs())
    runner = exp._runner
    with torch.no_grad():
        saved = s1.weight.clone()
        s1.weight.zero_()
    h, _ = forward(chip, inputs())
    assert exp._runner is runner  # no re-placement, no re-calibration
    assert h.spikes.sum().item() == 0  # the new (zero) weights took effect
    with torch.no_grad():
        s1.weight.copy_(saved)
    h, _ = forward(chip, inputs())
    assert h.spikes.sum().item() > 50
    assert exp._runner is runner


def test_chip_mode_training_beats_chance_on_a_yinyang_subset():
    """Realistic chip (mismatch, noise), calibrated; a few epochs on 300 samples."""
    torch.manual_seed(0)
    dt = 0.1
    exp = snn.Experiment(mock=False, dt=dt, chip=VirtualChip(seed=0))
    inp = snn.InputNeuron(5, exp)
    s1 = snn.Synapse(5, 40, exp, mean=0.15, std=0.25)
    lif = snn.LIF(40, exp, tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0, refractory_us=1.0)
    s2 = snn.Synapse(40, 3, exp, mean=0.05, std=0.1)
    li = snn.LI(3, exp, tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0)
    train, test = YinYang("train", size=300), YinYang("test", size=300)
    opt = torch.optim.Adam([s1.weight, s2.weight], lr=5e-3)

    def scores(x):
        o = li(s2(lif(s1(inp(T.ttfs_coordinates(x, dt, 38.0, bias_us=0.0))))))
        snn.run(exp, 38.0)
        return T.decode(o.v, "max")

    for _ in range(4):
        for k in range(0, 300, 50):
            loss = torch.nn.functional.cross_entropy(
                scores(train.features[k : k + 50]), train.labels[k : k + 50]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = np.mean(
            [
                (scores(test.features[k : k + 100]).argmax(1) == test.labels[k : k + 100])
                .float()
                .mean()
                .item()
                for k in range(0, 300, 100)
            ]
        )
    assert acc > 0.55  # chance: 1/3
