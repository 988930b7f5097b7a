"""Accuracy of the integration of the nonlinear terms (exponential, adaptation, COBA).

The exponential term and the adaptation current are held constant over a step
(exponential Euler), so spike times converge to the exact trajectory linearly in ``dt``.
The reference is the same circuit at the smallest step the chip allows (0.001 us).
"""

import numpy as np
import pytest

from cysim import ChipConfig, Stimulus, VirtualChip
from tests.conftest import connect_input


def _adex_config():
    cfg = ChipConfig()
    c = 0
    cfg.enable_spiking[c] = True
    cfg.enable_exponential[c] = True
    cfg.enable_adaptation[c] = True
    cfg.v_leak[c] = 350
    cfg.v_reset[c] = 380
    cfg.v_exp[c] = 480
    cfg.i_exp[c] = 200
    cfg.v_threshold[c] = 650
    cfg.i_bias_leak[c] = 450
    cfg.i_adapt_a[c] = 5
    cfg.i_adapt_b[c] = 30
    cfg.i_adapt_tau[c] = 500
    cfg.refractory_time[c] = 3
    cfg.enable_bias_current[c] = True
    cfg.i_bias_const[c] = 300
    return cfg


def _spike_times(cfg, dt, duration=60.0, stimulus=None):
    res = VirtualChip.ideal(dt_us=dt).run(cfg, stimulus, duration_us=duration)
    return res.spike_times_us[res.spike_circuits == 0]


def _errors(cfg, dts, n_spikes=5):
    """Largest error of the first ``n_spikes`` spike times for each step in ``dts``."""
    exact = _spike_times(cfg, 0.001)[:n_spikes]
    assert exact.size == n_spikes
    errs = []
    for dt in dts:
        t = _spike_times(cfg, dt)[:n_spikes]
        assert t.size == n_spikes, f"dt={dt}: {t.size} spikes instead of {n_spikes}"
        errs.append(np.max(np.abs(t - exact)))
    return np.array(errs)


def test_adex_spike_times_converge_linearly():
    cfg = _adex_config()
    dts = np.array([0.1, 0.05, 0.025, 0.0125])
    errs = _errors(cfg, dts)
    order = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert errs[-1] < errs[0] / 4
    assert 0.7 < order < 1.6, f"errors {errs} give order {order:.2f}"
    assert errs[-1] < 0.25  # us, at dt = 0.0125 us, after 5 spikes (about 1 % of the time)


def test_adaptation_lengthens_intervals():
    cfg = _adex_config()
    t = _spike_times(cfg, 0.01)
    isi = np.diff(t)
    assert isi[-1] > 1.3 * isi[0]
    cfg.enable_adaptation[0] = False
    isi_plain = np.diff(_spike_times(cfg, 0.01))
    assert np.allclose(isi_plain[1:], isi_plain[1], rtol=0.02)  # tonic without adaptation


def test_coba_membrane_converges():
    """Sub-threshold membrane under conductance-based input (MADC) against dt = 0.001 us.

    Events arrive every 0.5 us, a multiple of every step tested, so only the integration
    of the time-varying conductance contributes to the error."""
    cfg = ChipConfig()
    cfg.enable_coba[0] = True
    cfg.e_rev_exc[0] = 700
    labels = [connect_input(cfg, 0, 2 * k, 40, label=k + 1, row_select=k) for k in range(2)]
    cfg.i_syn_gm_exc[0] = 800
    cfg.madc_circuits = (0,)
    times = np.arange(0.4, 20.0, 0.5)
    stim = Stimulus(np.repeat(times, 2), labels * times.size)

    def trace(dt):
        res = VirtualChip.ideal(dt_us=dt).run(cfg, stim, duration_us=25.0)
        return res.madc[0, :, 0].astype(float)

    exact = trace(0.001)
    assert exact.max() - exact[0] > 100  # a strong drive (MADC LSB)
    # the step-averaged conductance keeps the error within the MADC's quantisation
    for dt in (0.1, 0.05, 0.025):
        assert np.max(np.abs(trace(dt) - exact)) <= 1.0


def test_coba_driving_force_saturates_at_reversal():
    """A conductance-based input cannot drive the membrane beyond its reversal potential."""
    cfg = ChipConfig()
    cfg.enable_coba[0] = True
    cfg.e_rev_exc[0] = 500
    label = connect_input(cfg, 0, 0, 63, label=1)
    cfg.i_syn_gm_exc[0] = 1022
    stim = Stimulus(np.arange(1.0, 20.0, 0.2), [label] * 95)
    cuba = cfg.copy()
    cuba.enable_coba[0] = False
    chip = VirtualChip.ideal()
    peak_coba = chip.run(cfg, stim, duration_us=25.0).cadc[0, :, 0].max()
    peak_cuba = chip.run(cuba, stim, duration_us=25.0).cadc[0, :, 0].max()
    e_rev_lsb = 500 * 1.2 / 1023 * 256 / 1.2
    assert peak_coba <= e_rev_lsb + 1
    assert peak_cuba > peak_coba + 10
    assert peak_coba == pytest.approx(e_rev_lsb, abs=6)
