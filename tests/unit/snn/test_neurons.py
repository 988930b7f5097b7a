"""Neuron dynamics of snn.functional against closed-form solutions."""

import math

import pytest
import torch

from pynn_brainscales2.snn.functional import (
    AdExParameters,
    LIFParameters,
    LIParameters,
    delays,
    integrate,
    spike_arrivals,
)

F64 = torch.float64


def _input(n_steps, at, weight, dtype=F64):
    x = torch.zeros(n_steps, 1, 1, dtype=dtype)
    x[at] = weight
    return x


@pytest.mark.parametrize("tau_s", [5.0, 6.0, 6.0 + 1e-10])
def test_subthreshold_trace_is_the_analytic_psp(tau_s):
    """One input arriving at step k: V(t) = w (e^{-s/tau_m} - e^{-s/tau_s}) / (1/tau_s - 1/tau_m)
    (``w s e^{-s/tau}`` for equal time constants), s = t - k dt, exactly on the grid."""
    tau_m, dt, w, k = 6.0, 0.1, 0.3, 7
    p = LIFParameters(tau_mem_us=tau_m, tau_syn_exc_us=tau_s, tau_syn_inh_us=tau_s, v_leak=-0.2, v_th=10.0)
    out = integrate(p, dt, _input(400, k, w))
    s = (torch.arange(400, dtype=F64) - k).clamp(min=0) * dt
    if abs(tau_s - tau_m) < 1e-6:
        expected = w * s * torch.exp(-s / tau_m)
    else:
        expected = w * (torch.exp(-s / tau_m) - torch.exp(-s / tau_s)) / (1 / tau_s - 1 / tau_m)
    torch.testing.assert_close(out.v[:, 0, 0], expected - 0.2, rtol=1e-9, atol=1e-10)
    # the current is the arriving weight decaying with tau_syn
    torch.testing.assert_close(out.current[k:, 0, 0], w * torch.exp(-s[k:] / tau_s), rtol=1e-9, atol=1e-12)


def test_trace_does_not_depend_on_the_step_size():
    """Exact propagation: the same events give the same membrane at common grid points."""
    p = LIFParameters(tau_mem_us=8.0, tau_syn_exc_us=3.0, v_th=10.0, i_bias=0.02)
    coarse = integrate(p, 0.5, _input(100, 4, 0.5)).v[:, 0, 0]
    fine = integrate(p, 0.05, _input(1000, 40, 0.5)).v[::10, 0, 0]
    torch.testing.assert_close(coarse, fine, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("refractory_us", [0.0, 0.5, 1.2])
def test_regular_firing_from_a_constant_current(refractory_us):
    """Bias i: from reset 0 the membrane follows v_inf (1 - e^{-t/tau}), v_inf = i tau; it
    crosses theta after t* = -tau ln(1 - theta/v_inf). On the grid the period is
    ceil(t*/dt) + round(t_ref/dt) steps."""
    tau, i_bias, theta, dt = 6.0, 0.3, 1.0, 0.1
    p = LIFParameters(tau_mem_us=tau, v_th=theta, i_bias=i_bias, refractory_us=refractory_us)
    out = integrate(p, dt, torch.zeros(2000, 1, 1, dtype=F64))
    spikes = torch.nonzero(out.spikes[:, 0, 0]).flatten()
    t_star = -tau * math.log(1 - theta / (i_bias * tau))
    period = math.ceil(t_star / dt) + round(refractory_us / dt)
    assert spikes[0].item() == math.ceil(t_star / dt) - 1
    assert torch.all(torch.diff(spikes) == period)
    # refractory: held at reset for round(t_ref/dt) grid points after the reset
    n = spikes[0].item()
    hold = round(refractory_us / dt)
    assert torch.all(out.v[n + 1 : n + 2 + hold, 0, 0] == 0.0)
    assert out.v[n + 2 + hold, 0, 0] > 0.0


def test_crossing_fraction_interpolates_linearly():
    p = LIFParameters(tau_mem_us=6.0, v_th=1.0, i_bias=0.3)
    out = integrate(p, 0.1, torch.zeros(100, 1, 1, dtype=F64), fraction=True)
    n = int(torch.nonzero(out.spikes[:, 0, 0])[0])
    v0 = out.v[n, 0, 0]
    v1 = 1.8 * (1 - math.exp(-(n + 1) * 0.1 / 6.0))  # the membrane before the reset
    assert out.fraction[n, 0, 0].item() == pytest.approx(float((1.0 - v0) / (v1 - v0)), rel=1e-9)


def test_inhibitory_channel_with_its_own_time_constant():
    p = LIFParameters(tau_mem_us=6.0, tau_syn_exc_us=2.0, tau_syn_inh_us=9.0, v_th=10.0)
    exc = _input(300, 5, 0.4)
    inh = _input(300, 5, 0.4)
    out = integrate(p, 0.1, exc, inh)
    s = (torch.arange(300, dtype=F64) - 5).clamp(min=0) * 0.1

    def psp(tau_s):
        return (torch.exp(-s / 6.0) - torch.exp(-s / tau_s)) / (1 / tau_s - 1 / 6.0)

    torch.testing.assert_close(out.v[:, 0, 0], 0.4 * (psp(2.0) - psp(9.0)), rtol=1e-9, atol=1e-12)


def test_membrane_clamped_to_the_rails():
    p = LIFParameters(v_leak=0.5, v_th=10.0, v_min=0.0, v_max=1.2)
    out = integrate(p, 0.1, _input(300, 5, 5.0) - _input(300, 150, 20.0))
    assert out.v.max().item() == 1.2 and out.v.min().item() == 0.0


def test_li_equals_lif_without_threshold():
    x = torch.randn(200, 3, 4, dtype=F64) * 0.2
    li = integrate(LIParameters(tau_mem_us=7.0, tau_syn_exc_us=4.0), 0.1, x)
    lif = integrate(LIFParameters(tau_mem_us=7.0, tau_syn_exc_us=4.0, v_th=math.inf), 0.1, x)
    assert li.spikes is None
    torch.testing.assert_close(li.v, lif.v)


def test_adex_without_exponential_and_adaptation_is_lif():
    x = (torch.rand(300, 2, 3, dtype=F64) < 0.05).to(F64) * 0.8
    lif = integrate(LIFParameters(refractory_us=0.3), 0.1, x)
    adex = integrate(AdExParameters(refractory_us=0.3, v_exp=100.0, delta_t=1e-3), 0.1, x)
    torch.testing.assert_close(adex.v, lif.v)
    assert torch.equal(adex.spikes, lif.spikes)


def test_adex_adaptation_lengthens_the_interspike_intervals():
    base = dict(tau_mem_us=6.0, v_th=1.0, i_bias=0.3, v_exp=0.9, delta_t=0.02, tau_w_us=50.0)
    plain = integrate(AdExParameters(**base), 0.1, torch.zeros(1500, 1, 1, dtype=F64))
    adapted = integrate(AdExParameters(**base, b=0.02, a=0.01), 0.1, torch.zeros(1500, 1, 1, dtype=F64))
    isi_plain = torch.diff(torch.nonzero(plain.spikes[:, 0, 0]).flatten()).double()
    isi = torch.diff(torch.nonzero(adapted.spikes[:, 0, 0]).flatten()).double()
    assert torch.all(isi_plain == isi_plain[0])
    assert isi[-1] > isi[0] and adapted.spikes.sum() < plain.spikes.sum()


def test_exponential_term_pulls_the_membrane_up():
    x = _input(200, 5, 0.4)
    lif = integrate(AdExParameters(v_exp=100.0, delta_t=1e-3, v_th=10.0), 0.1, x)
    adex = integrate(AdExParameters(v_exp=0.9, delta_t=0.1, v_th=10.0), 0.1, x)
    assert torch.all(adex.v >= lif.v) and (adex.v - lif.v).max() > 0.01


def test_delays_of_the_chip_latency():
    assert delays(0.1) == (1, 1, 2, pytest.approx(0.5))
    assert delays(0.05) == (2, 2, 3, pytest.approx(0.5))
    assert delays(0.5)[:3] == (0, 1, 1)
    z = torch.zeros(10, 1, 2)
    z[3, 0, 0] = z[3, 0, 1] = 1.0
    frac = torch.zeros(10, 1, 2)
    frac[3, 0, 1] = 0.7  # crosses late in the step: arrives a step later
    a = spike_arrivals(z, frac, 0.1)
    assert a[4, 0, 0] == 1 and a[5, 0, 1] == 1 and a.sum() == 2
