"""A LIF circuit on the ideal chip against closed-form solutions.

The tests read the chip's physical parameters through the private door
(``cysim.engine.compile_config``) to know the exact time constants and gains.
"""

import numpy as np
import pytest
from scipy.special import lambertw

from cysim import ChipConfig, Stimulus, VirtualChip
from cysim import constants as C
from cysim.engine import compile_config
from cysim.physics import TAU_MEM_0_US, TAU_MEM_MIN_US, TAU_SYN_0_US, TAU_SYN_MIN_US
from tests.conftest import connect_input


def _matched_capmem(tau_us):
    """CapMem pair (leak bias, synaptic bias) giving tau_mem == tau_syn closest to ``tau_us``
    on the nominal (ideal) chip."""
    km = np.log(TAU_MEM_0_US / TAU_MEM_MIN_US) / C.CAPMEM_MAX
    ks = np.log(TAU_SYN_0_US / TAU_SYN_MIN_US) / C.CAPMEM_MAX
    cm = np.arange(1023)
    tau_m = TAU_MEM_0_US * np.exp(-km * cm)
    cs = np.clip(np.rint(np.log(TAU_SYN_0_US / tau_m) / ks), 0, 1022)
    tau_s = TAU_SYN_0_US * np.exp(-ks * cs)
    near = np.abs(tau_m - tau_us) < 0.05 * tau_us
    mismatch = np.where(near, np.abs(tau_s / tau_m - 1), np.inf)
    best = int(np.argmin(mismatch))
    return best, int(cs[best])


def _lif_setup(tau_us, weights):
    cfg = ChipConfig()
    cm, cs = _matched_capmem(tau_us)
    cfg.i_bias_leak = cm
    cfg.i_bias_syn_exc = cs
    cfg.v_leak = 300
    cfg.v_threshold = 500
    cfg.i_syn_gm_exc = 1000
    cfg.refractory_time = 100
    labels = []
    for k, w in enumerate(weights):
        cfg.enable_spiking[k] = True
        labels.append(connect_input(cfg, k, 2 * k, int(w), label=k + 1, row_select=k % 32))
    return cfg, labels


def _first_spike_lambert(t_in, w_peak, theta, tau):
    """REFERENCES.md: t* = tau [b/a - W0(-(theta/a) exp(b/a))] for PSP kernel e s/tau exp(-s/tau)."""
    t_in = np.asarray(t_in)
    a = np.sum(w_peak * np.e * np.exp(t_in / tau))
    b = np.sum(w_peak * np.e * (t_in / tau) * np.exp(t_in / tau))
    return tau * (b / a - np.real(lambertw(-(theta / a) * np.exp(b / a), 0)))


@pytest.mark.parametrize("dt_us", [0.1, 0.02])
def test_first_spike_time_matches_lambert_w(dt_us):
    weights = [40, 48, 55, 63]
    tau = 6.0
    chip = VirtualChip.ideal(dt_us=dt_us)
    cfg, labels = _lif_setup(tau, weights)
    params = compile_config(cfg, chip._physics)[0]
    t_send = 2.0
    result = chip.run(cfg, Stimulus([t_send] * len(labels), labels), duration_us=40.0)
    first = result.first_spike_times_us()[0]
    for k, w in enumerate(weights):
        tau_m, tau_s = params.tau_mem_us[k], params.tau_syn_exc_us[k]
        assert abs(tau_m / tau_s - 1) < 2e-3
        tau_k = 0.5 * (tau_m + tau_s)
        jump = w * params.syn_gain_exc[k]  # V/us per event
        w_peak = jump * tau_k / np.e
        theta = params.v_threshold[k] - params.v_leak[k]
        assert w_peak > theta, "the test needs a PSP that crosses the threshold"
        t_arrive = t_send + C.ROUTING_LATENCY_US
        expected = _first_spike_lambert([t_arrive], w_peak, theta, tau_k)
        assert first[k] == pytest.approx(expected, abs=dt_us), f"weight {w}"


def test_first_spike_time_two_inputs():
    """Neither PSP alone reaches the threshold; together they do."""
    chip = VirtualChip.ideal(dt_us=0.02)
    tau = 8.0
    cfg, labels = _lif_setup(tau, [1])
    label2 = connect_input(cfg, 0, 1, 1, label=9, row_select=0)
    params = compile_config(cfg, chip._physics)[0]
    tau_k = 0.5 * (params.tau_mem_us[0] + params.tau_syn_exc_us[0])
    theta = params.v_threshold[0] - params.v_leak[0]
    peak_per_weight = params.syn_gain_exc[0] * tau_k / np.e
    w = int(np.ceil(0.8 * theta / peak_per_weight))
    assert w <= 63
    cfg.synapse_weights[0, 0, 0] = w
    cfg.synapse_weights[0, 1, 0] = w
    times = [1.0, 4.0]
    result = chip.run(cfg, Stimulus(times, [labels[0], label2]), duration_us=60.0)
    expected = _first_spike_lambert(np.array(times) + C.ROUTING_LATENCY_US, w * peak_per_weight, theta, tau_k)
    assert expected > times[1]
    assert result.first_spike_times_us()[0, 0] == pytest.approx(expected, abs=0.02)


def test_free_membrane_matches_exact_psp():
    """Sub-threshold PSP (tau_mem != tau_syn) read by the MADC against the closed form."""
    chip = VirtualChip.ideal(dt_us=0.01)
    cfg = ChipConfig()
    label = connect_input(cfg, 1, 0, 20, label=3)
    cfg.i_bias_leak[1] = 400
    cfg.i_bias_syn_exc[1] = 600
    cfg.madc_circuits = (1,)
    params = compile_config(cfg, chip._physics)[0]
    result = chip.run(cfg, Stimulus([1.0], [label]), duration_us=30.0)
    tm, ts = params.tau_mem_us[1], params.tau_syn_exc_us[1]
    jump = 20 * params.syn_gain_exc[1]
    t = result.madc_times_us - 1.0 - C.ROUTING_LATENCY_US
    psp = np.where(t > 0, jump * tm * ts / (tm - ts) * (np.exp(-t / tm) - np.exp(-t / ts)), 0.0)
    expected_lsb = (params.v_leak[1] + psp) * C.MADC_LSB_PER_V
    assert np.max(np.abs(result.madc[0, :, 0] - expected_lsb)) <= 1.0  # quantisation only


def _psp_heights(chip, circuits, weights, trials=1):
    cfg = ChipConfig()
    cfg.madc_circuits = tuple(circuits)
    labels = [connect_input(cfg, c, 2 * i, 1, label=1 + i) for i, c in enumerate(circuits)]
    heights = np.zeros((len(circuits), len(weights)))
    for j, w in enumerate(weights):
        for i, c in enumerate(circuits):
            h = c // 256
            cfg.synapse_weights[h, 2 * i, c % 256] = w
        res = chip.run(
            cfg,
            Stimulus([1.0] * len(labels), labels),
            duration_us=20.0,
            trials=trials,
            trial_seeds=np.arange(trials) + 1000 * j,
        )
        trace = res.madc.astype(float).mean(axis=0)  # average over trials
        base = trace[res.madc_times_us < 1.0].mean(axis=0)
        heights[:, j] = trace.max(axis=0) - base
    return heights


def test_psp_height_linear_in_weight_ideal_chip():
    weights = np.arange(0, 64, 7)
    heights = _psp_heights(VirtualChip.ideal(dt_us=0.02), [10, 301], weights)
    for row in heights:
        slope, intercept = np.polyfit(weights, row, 1)
        r2 = 1 - np.sum((row - (slope * weights + intercept)) ** 2) / np.sum((row - row.mean()) ** 2)
        assert r2 > 0.99
        assert slope > 0
        assert abs(intercept) < 2.0  # MADC LSB


def test_psp_slope_spread_on_realistic_chip():
    """Fixed-pattern mismatch: uncalibrated PSP slopes differ between circuits by percents
    to tens of percent, each still linear in the weight."""
    weights = np.arange(0, 64, 9)
    heights = _psp_heights(VirtualChip(seed=3, dt_us=0.02), [20, 301], weights, trials=8)
    slopes = []
    for row in heights:
        slope, intercept = np.polyfit(weights, row, 1)
        r2 = 1 - np.sum((row - (slope * weights + intercept)) ** 2) / np.sum((row - row.mean()) ** 2)
        assert r2 > 0.98
        slopes.append(slope)
    assert abs(slopes[0] / slopes[1] - 1) > 0.01
