"""Whole experiments with the chip's plasticity against analytic expectations (ideal chip):
short-term depression and facilitation of a regular train against the Tsodyks-Markram
equations, and a pair-based STDP window measured with the correlation sensors."""

import numpy as np
import pytest

from cysim import ChipConfig, PPUProgram, RunError, Stimulus, VirtualChip
from cysim import constants as C
from tests.conftest import connect_input

PERIOD_US = 50.0
N_EVENTS = 8


def tsodyks_markram(n, interval, U, tau_rec, tau_fac=None):
    """Efficacy ``u_k x_k`` of events ``k = 0..n-1`` of a regular train (NEST's
    tsodyks2_synapse, starting fully recovered)."""
    x, u, out = 1.0, U, []
    for k in range(n):
        if k > 0:
            x = 1.0 + (x - x * u - 1.0) * np.exp(-interval / tau_rec)
            u = U + u * (1.0 - U) * np.exp(-interval / tau_fac) if tau_fac else U
        out.append(u * x)
    return np.array(out)


def train_psps(cfg, label, chip):
    """PSP heights [MADC LSB] of a regular train of N_EVENTS events onto circuit 0."""
    times = 10.0 + PERIOD_US * np.arange(N_EVENTS)
    result = chip.run(cfg, Stimulus(times, [label] * N_EVENTS), duration_us=times[-1] + PERIOD_US)
    v = result.madc[0, :, 0].astype(float)
    t = result.madc_times_us
    base = np.median(v[t < times[0]])
    return np.array([v[(t >= s) & (t < s + 30.0)].max() - base for s in times])


def stp_config(utilization, tau_rec, tau_fac=None):
    cfg = ChipConfig()
    cfg.i_syn_gm_exc[0] = 1000
    cfg.madc_circuits = [0]
    label = connect_input(cfg, 0, 0, 63, label=1)
    plain = cfg.copy()
    cfg.stp_enable[0, 0] = True
    cfg.stp_utilization[0, 0] = utilization
    cfg.stp_tau_rec[0, 0] = tau_rec
    if tau_fac is not None:
        cfg.stp_facilitation[0, 0] = True
        cfg.stp_tau_fac[0, 0] = tau_fac
    return cfg, plain, label


@pytest.mark.parametrize(
    ("utilization", "tau_rec", "tau_fac"),
    [
        (511, 341, None),  # depression: U 0.5, tau_rec ~100 us
        (102, 784, 238),  # facilitation: U 0.1, tau_rec ~5 us, tau_fac ~200 us
        (300, 500, 400),  # both
    ],
)
def test_short_term_plasticity_follows_tsodyks_markram(utilization, tau_rec, tau_fac):
    chip = VirtualChip.ideal(dt_us=0.05)
    cfg, plain, label = stp_config(utilization, tau_rec, tau_fac)
    stp = chip._physics.stp_parameters(
        {k: cfg.array(k) for k in ("stp_utilization", "stp_tau_rec", "stp_tau_fac")}
    )
    U, t_rec, t_fac = (stp[k][0, 0] for k in ("utilization", "tau_rec_us", "tau_fac_us"))
    expected = tsodyks_markram(N_EVENTS, PERIOD_US, U, t_rec, t_fac if tau_fac is not None else None)
    reference = train_psps(plain, label, chip)  # no STP: full efficacy for every event
    assert reference.min() > 150  # large PSPs: MADC quantisation below 0.5 %
    measured = train_psps(cfg, label, chip) / reference
    np.testing.assert_allclose(measured, expected, rtol=0.02, atol=0.003)
    if tau_fac is None:
        assert measured[-1] < 0.6 * measured[0]  # depressing
    elif tau_rec > 700:
        assert measured[-1] > 2.0 * measured[0]  # facilitating


def test_stp_is_per_driver():
    """A driver with STP next to one without: only the events through the first depress;
    the reference engine refuses STP rather than ignoring it."""
    chip = VirtualChip.ideal(dt_us=0.05)
    cfg, plain, label = stp_config(511, 341)
    other = connect_input(cfg, 0, 2, 63, label=1, row_select=1)  # driver 1 (no STP)
    times = 10.0 + PERIOD_US * np.arange(4)
    both = Stimulus(np.r_[times, times + 25.0], [label] * 4 + [other] * 4)
    result = chip.run(cfg, both, duration_us=250.0)
    v, t = result.madc[0, :, 0].astype(float), result.madc_times_us
    base = np.median(v[t < 10.0])
    first = np.array([v[(t >= s) & (t < s + 20.0)].max() - base for s in times])
    second = np.array([v[(t >= s) & (t < s + 20.0)].max() - base for s in times + 25.0])
    assert first[-1] < 0.7 * first[0]
    np.testing.assert_allclose(second, second[0], rtol=0.02)
    with pytest.raises(RunError, match="reference engine"):
        VirtualChip.ideal(engine="reference").run(cfg, both, duration_us=10.0)


def test_stdp_window_from_the_sensors():
    """Pair protocol over Delta t in [-50, 50] us (one trial per Delta t, batched): the
    sensors give exponential windows with the configured time constants, and an additive
    STDP kernel changes the weights with the sign of Delta t."""
    cfg = ChipConfig()
    cfg.enable_spiking[0] = True
    cfg.v_threshold[0] = 500
    cfg.i_syn_gm_exc[0] = 1022
    drive = connect_input(cfg, 0, 0, 30, label=1)
    probe = connect_input(cfg, 0, 2, 4, label=2)  # the plastic synapse: small PSP
    cfg.corr_amp_causal = cfg.corr_amp_acausal = 800
    cfg.corr_tau_causal = 444  # ~20 us
    cfg.corr_tau_acausal = 350  # ~34 us
    deltas = np.array([-50, -35, -20, -10, -5, -2, 2, 5, 10, 20, 35, 50], dtype=float)
    t_post = 60.0
    stim = Stimulus.from_trials([([t_post, t_post - d], [drive, probe]) for d in deltas])

    def stdp(ctx):
        i = ctx.synapse_index(0, 2, 0)
        ctx.record("causal", ctx.causal[:, i])
        ctx.record("acausal", ctx.acausal[:, i])
        dw = (ctx.causal[:, i].astype(np.int16) >> 5) - (ctx.acausal[:, i].astype(np.int16) >> 5)
        ctx.weights[:, i] += dw

    chip = VirtualChip.ideal(dt_us=0.01)
    result = chip.run(cfg, stim, duration_us=140.0, trials=deltas.size, plasticity=PPUProgram(stdp, 130.0))
    counts = result.spike_counts()[:, 0]
    assert np.all(counts == 1)
    post = np.array([result.spikes(k)[1][0] for k in range(deltas.size)])
    pre = np.floor((t_post - deltas + C.ROUTING_LATENCY_US) / 0.01 + 0.5) * 0.01
    lag = post - pre
    rec = result.plasticity_records["program0"]
    causal, acausal = rec["causal"].values[0].astype(float), rec["acausal"].values[0].astype(float)
    assert np.all(causal[lag < 0] == 0) and np.all(acausal[lag > 0] == 0)
    # fit log(value) = log(eta) - |lag| / tau on each side
    for values, side, capmem in ((causal, lag > 0, 444), (acausal, lag < 0, 350)):
        slope, _ = np.polyfit(np.abs(lag[side]), np.log(values[side]), 1)
        tau = C.CORR_TAU_MAX_US * (C.CORR_TAU_MIN_US / C.CORR_TAU_MAX_US) ** (capmem / C.CAPMEM_MAX)
        assert -1.0 / slope == pytest.approx(tau, rel=0.03)
    w = result.plasticity.weights[:, 1].astype(int)  # tracked: drive (row 0), probe (row 2)
    assert np.all(w[(deltas > 0) & (deltas <= 35)] > 4) and np.all(w[deltas < 0] < 4)
    assert np.all(np.diff(w[deltas > 0]) <= 0) and np.all(np.diff(w[deltas < 0]) <= 0)
