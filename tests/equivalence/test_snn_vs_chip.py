"""The torch bridge's mock mode against the ideal virtual chip.

The torch network is parameterised with the ideal chip's physical circuit parameters,
read through the private door ``VirtualChip._physics.circuit_parameters`` (tests only), in
volts, microseconds and V/us. External events are sent on grid points; one circuit's
spikes drive another circuit through the on-chip routing, so the latency split of
:mod:`pynn_brainscales2.snn.functional.events` is exercised. Spike times must agree to
the FPGA's 8 ns timestamp and CADC samples to their rounding.
"""

import numpy as np
import pytest
import torch

from cysim import ROW_EXC, ChipConfig, Stimulus, VirtualChip
from cysim import constants as C
from pynn_brainscales2 import snn
from tests.conftest import connect_input

DT = 0.1
DURATION = 80.0
N = 3  # circuits 0..2 of hemisphere 0


def _configure(adex: bool = False):
    cfg = ChipConfig()
    cfg.v_leak = 300
    cfg.v_reset = 260
    cfg.v_threshold = 420
    cfg.i_bias_leak = 600
    cfg.i_bias_syn_exc = 560
    cfg.i_bias_syn_inh = 500
    cfg.i_syn_gm_exc = 700
    cfg.i_syn_gm_inh = 600
    cfg.refractory_time = 40
    for c in range(N):
        cfg.enable_spiking[c] = True
    if adex:
        cfg.enable_exponential[2] = True
        cfg.enable_adaptation[2] = True
        cfg.v_exp[2] = 400
        cfg.i_exp[2] = 150
        cfg.i_adapt_a[2] = 60
        cfg.i_adapt_b[2] = 400
        cfg.i_adapt_tau[2] = 600
    # external inputs: (circuit, row, weight, label, inhibitory)
    inputs = [(0, 0, 63, 1, False), (1, 2, 50, 2, False), (2, 4, 63, 3, False), (2, 6, 40, 4, True)]
    labels = []
    for circuit, row, weight, label, inh in inputs:
        labels.append(connect_input(cfg, circuit, row, weight, label=label, row_select=1, inhibitory=inh))
    # circuit 0 -> circuit 1 on the chip: bus 1 (driver 9 listens to bus 9 % 4 = 1), address 2<<6|7
    address = (2 << 6) | 7
    cfg.enable_output[0] = True
    cfg.output_buses[0] = 1 << 1
    cfg.output_address[0] = address
    cfg.driver_row_select[0, 9] = 2
    cfg.row_modes[0, 18] = ROW_EXC
    cfg.synapse_weights[0, 18, 1] = 45
    cfg.synapse_labels[0, 18, 1] = 7
    return cfg, inputs, labels


def _parameters(chip, cfg, adex):
    capmem = {n: cfg.array(n).astype(np.float64) for n in C.CAPMEM_FIELDS}
    switches = {n: cfg.array(n) for n in C.SWITCH_FIELDS}
    p = chip._physics.circuit_parameters(capmem, switches)

    def t(name):
        return torch.tensor(getattr(p, name)[:N], dtype=torch.float64)

    common = dict(
        tau_mem_us=t("tau_mem_us"),
        tau_syn_exc_us=t("tau_syn_exc_us"),
        tau_syn_inh_us=t("tau_syn_inh_us"),
        v_leak=t("v_leak"),
        v_reset=t("v_reset"),
        v_th=t("v_threshold"),
        refractory_us=t("refractory_us"),
        i_bias=t("bias_current"),
        v_min=0.0,
        v_max=C.V_RAIL_V,
    )
    if adex:
        common.update(
            v_exp=t("v_exp"), delta_t=t("delta_t_v"), a=t("adapt_a"), b=t("adapt_b"), tau_w_us=t("tau_w_us")
        )
        return p, common
    return p, common


def _events(n_inputs, rng):
    """Random grid-aligned events per input (send step, input index)."""
    steps, idx = [], []
    for k in range(n_inputs):
        s = np.sort(rng.choice(np.arange(10, int(DURATION / DT) - 50), size=6, replace=False))
        steps.append(s)
        idx.append(np.full(s.size, k))
    return np.concatenate(steps), np.concatenate(idx)


def _torch_run(p, params, inputs, steps, idx, adex):
    """The same network as a torch experiment: inputs -> circuits, circuit 0 -> circuit 1."""
    n_steps = int(round(DURATION / DT))
    exp = snn.Experiment(mock=True, dt=DT)
    inp = snn.InputNeuron(len(inputs), exp)
    syn_in = snn.Synapse(len(inputs), N, exp)
    syn_rec = snn.Synapse(N, N, exp)
    if adex:
        # only circuit 2 is AdEx on the chip; run the population with exponential and
        # adaptation terms that vanish for circuits 0 and 1
        big = torch.tensor([1e3, 1e3, 0.0], dtype=torch.float64)
        params = dict(params)
        params["v_exp"] = params["v_exp"] + big
        params["delta_t"] = torch.where(big > 0, torch.full_like(big, 1e-3), params["delta_t"])
        mask = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        params["a"], params["b"] = params["a"] * mask, params["b"] * mask
        neurons = snn.AdEx(N, exp, **params)
    else:
        neurons = snn.LIF(N, exp, **params)
    with torch.no_grad():
        syn_in.weight.zero_()
        for k, (circuit, _row, weight, _label, inh) in enumerate(inputs):
            gain = p.syn_gain_inh[circuit] if inh else p.syn_gain_exc[circuit]
            syn_in.weight[circuit, k] = (-1.0 if inh else 1.0) * weight * gain
        syn_rec.weight.zero_()
        syn_rec.weight[1, 0] = 45 * p.syn_gain_exc[1]
    syn_in.double()
    syn_rec.double()
    spikes = torch.zeros(n_steps, 1, len(inputs), dtype=torch.float64)
    spikes[steps, 0, idx] = 1.0
    h = neurons(syn_in(inp(spikes)))
    neurons(syn_rec(h))
    snn.run(exp, DURATION)
    return h


@pytest.mark.parametrize("adex", [False, True], ids=["lif", "adex"])
def test_mock_matches_ideal_chip(adex):
    chip = VirtualChip.ideal(dt_us=DT)
    cfg, inputs, labels = _configure(adex)
    p, params = _parameters(chip, cfg, adex)
    rng = np.random.default_rng(3)
    steps, idx = _events(len(inputs), rng)
    stim = Stimulus(steps * DT, np.asarray(labels)[idx])
    result = chip.run(cfg, stim, duration_us=DURATION)
    h = _torch_run(p, params, inputs, steps, idx, adex)

    # spikes: same circuits, same 8 ns timestamps
    circuits, times = result.spikes(0)
    t_torch = h.spike_times_us(DT)[:, 0]
    got = sorted(
        (int(c), int(np.floor(float(t) / C.FPGA_TICK_US + 1e-9)))
        for c in range(N)
        for t in t_torch[:, c][torch.isfinite(t_torch[:, c])]
    )
    want = sorted(zip(circuits.tolist(), result.spike_timestamps.tolist(), strict=True))
    assert len(want) >= 10, "the scenario should make the circuits spike"
    assert any(c == 1 for c, _ in want) and any(c == 2 for c, _ in want)
    assert [c for c, _ in got] == [c for c, _ in want]
    assert np.max(np.abs(np.array([s for _, s in got]) - np.array([s for _, s in want]))) <= 1

    # CADC samples: the torch membrane at the sample times, rounded like the ADC
    sample_steps = np.rint(result.cadc_times_us / DT).astype(int)
    v = h.v[sample_steps, 0].detach().numpy()
    expected = np.clip(np.floor(v * C.CADC_LSB_PER_V + 0.5), 0, C.CADC_MAX)
    measured = result.cadc[0][:, :N].astype(float)
    assert np.abs(measured - expected).max() <= 1.0
    assert np.mean(measured == expected) > 0.98


def test_on_chip_latency_depends_on_crossing_fraction():
    """Circuit 1 is driven only by circuit 0; its first PSP starts one or two steps after
    circuit 0's spike, as the chip's rounding of ``t_spike + 0.1 us`` says."""
    chip = VirtualChip.ideal(dt_us=DT)
    cfg, inputs, labels = _configure()
    p, params = _parameters(chip, cfg, False)
    # only circuit 0 gets external input
    steps = np.array([100, 103, 106, 109])
    idx = np.zeros(4, dtype=int)
    h = _torch_run(p, params, inputs, steps, idx, False)
    s0 = torch.nonzero(h.spikes[:, 0, 0]).flatten()
    assert s0.numel() >= 1
    n0 = int(s0[0])
    frac = float(h.fraction[n0, 0, 0])
    arrival = max(int(np.floor((n0 + frac) * DT / DT + C.ROUTING_LATENCY_US / DT + 0.5)), n0 + 1)
    current = h.current[:, 0, 1].detach()
    assert float(current[arrival - 1]) == 0.0
    assert float(current[arrival]) > 0.0
