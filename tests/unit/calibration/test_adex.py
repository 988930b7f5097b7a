"""AdEx calibration (exponential term and adaptation) on a mismatched, noisy chip.

Ground truth through the chip's private door (``VirtualChip._physics``), as in
test_calibration.py: the calibration never reads it. The targets cover the documented
ranges: ``V_T`` 60..170 LSB, ``Delta_T`` 2..8 LSB, ``a`` 0 and 0.01..0.5 1/us, ``b`` 0 and
0.3..10 LSB/us, ``tau_w`` 20..800 us, spread over the 512 circuits of ``VirtualChip(seed=0)``.
"""

import numpy as np
import pytest

from cysim import ChipConfig, VirtualChip
from cysim import constants as C
from pynn_brainscales2 import hardware as hw
from pynn_brainscales2.calibration import ADEX_CELLS, CalibrationTargets, calibrate
from pynn_brainscales2.calibration import adex as adex_module
from pynn_brainscales2.calibration import targets as targets_module
from pynn_brainscales2.errors import CalibrationError, CalibrationRangeError

LIF = dict(tau_mem_us=10.0, leak_lsb=80.0, reset_lsb=80.0, threshold_lsb=200.0, refractory_us=2.0)
_rng = np.random.default_rng(5)
V_T = np.linspace(60.0, 170.0, C.N_CIRCUITS)[_rng.permutation(C.N_CIRCUITS)]
DELTA_T = np.linspace(2.0, 8.0, C.N_CIRCUITS)
A = np.tile([0.0, 0.01, 0.02, 0.2, 0.5], 103)[: C.N_CIRCUITS]
B = np.tile([0.0, 0.3, 1.0, 3.0, 10.0, 0.5, 2.0], 74)[: C.N_CIRCUITS]
TAU_W = np.geomspace(20.0, 800.0, C.N_CIRCUITS)[_rng.permutation(C.N_CIRCUITS)]
TARGETS = CalibrationTargets(**LIF, v_exp_lsb=V_T, delta_t_lsb=DELTA_T, adapt_a=A, adapt_b=B, tau_w_us=TAU_W)


def true_adex(chip, config):
    """AdEx parameters of every circuit in the calibration's units (private door)."""
    capmem = {k: np.asarray(getattr(config, k)).astype(float) for k in C.CAPMEM_FIELDS}
    switches = {k: np.asarray(getattr(config, k)) for k in C.SWITCH_FIELDS}
    p = chip._physics.circuit_parameters(capmem, switches)
    lsb_per_v = C.CADC_LSB_PER_V * chip._physics.cadc_gain
    return {
        "v_exp_lsb": p.v_exp * lsb_per_v + chip._physics.cadc_offset_lsb,
        "delta_t_lsb": p.delta_t_v * lsb_per_v,
        "adapt_a": p.adapt_a,
        "adapt_b": p.adapt_b * lsb_per_v,
        "tau_w_us": p.tau_w_us,
    }


@pytest.fixture(scope="module")
def chip():
    return VirtualChip(seed=0)


@pytest.fixture(scope="module")
def cached(chip, tmp_path_factory):
    path = tmp_path_factory.mktemp("adex-cache")
    return calibrate(chip, TARGETS, cache=path), path


@pytest.fixture(scope="module")
def truth(chip, cached):
    return true_adex(chip, cached[0].apply(ChipConfig()))


def rel(got, target):
    return np.abs(got / target - 1.0)


def test_uncalibrated_spread_is_large(chip):
    """The nominal transfers alone: V_T off by several LSB, Delta_T, a, b, tau_w by 15-25 %."""
    cfg = ChipConfig()
    cfg.v_exp = hw.nominal_potential_capmem(np.full(C.N_CIRCUITS, 150.0))
    cfg.i_exp = np.rint(4.0 / hw.DELTA_T_LSB_AT_MAX * C.CAPMEM_MAX).astype(int)
    cfg.i_adapt_a = 200
    cfg.i_adapt_b = 200
    cfg.i_adapt_tau = np.rint(hw.nominal_tau_capmem(100.0, hw.TAU_W_AT_0_US, hw.TAU_W_AT_MAX_US)).astype(int)
    p = true_adex(chip, cfg)
    assert np.std(p["v_exp_lsb"]) > 4.0  # measured: 7.8 LSB
    for name in ("delta_t_lsb", "adapt_a", "adapt_b", "tau_w_us"):
        assert np.std(p[name]) / np.mean(p[name]) > 0.13, name  # measured: 0.15..0.27


def test_exponential_term_meets_targets(truth):
    err_vt = np.abs(truth["v_exp_lsb"] - V_T)
    assert err_vt.max() < 0.6  # measured: 0.20 LSB (aim: 2 LSB)
    err = rel(truth["delta_t_lsb"], DELTA_T)
    # measured: worst 3.9 %, 4.6 %, 5.6 % in three noise draws of the measurement runs
    # (Delta_T 2..3 LSB, where the membrane noise of about 0.4 LSB blurs the exponential
    # onset; noisier circuits read Delta_T up to 3 % too large; the 5 % aim is missed there,
    # see docs/calibration.md), 95th percentile 1.7-1.9 %; 1.6-1.8 % worst above 5 LSB
    assert err.max() < 0.065
    assert err[DELTA_T >= 3.0].max() < 0.05
    assert np.percentile(err, 95) < 0.03
    assert err[DELTA_T >= 5.0].max() < 0.03


def test_adaptation_meets_targets(truth):
    on = A > 0
    err_a = rel(truth["adapt_a"][on], A[on])
    # from 0.02 1/us the aim holds (measured: 3.6 %); below, one CapMem step (about 0.001
    # 1/us) is 5..15 % of a and the rounding to whole steps dominates (measured: 5.9 % at 0.01)
    assert err_a[A[on] >= 0.02].max() < 0.05
    assert err_a.max() < 0.08
    assert np.all(truth["adapt_a"][A == 0] == 0.0)  # CapMem 0: a is off
    on = B > 0
    err_b = rel(truth["adapt_b"][on], B[on])
    assert err_b.max() < 0.05  # measured: 3.8 % (b = 0.3 LSB/us: 15 CapMem steps)
    assert np.percentile(err_b, 95) < 0.03  # measured: 2.1 %
    err_tw = rel(truth["tau_w_us"], TAU_W)
    assert err_tw.max() < 0.03  # measured: 1.2 %
    assert np.percentile(err_tw, 95) < 0.015  # measured: 0.7 %


def test_residuals_come_from_a_check_run(cached, truth):
    result, _ = cached
    r = result.residual
    assert np.abs(r["v_exp_lsb"]).max() < 0.8  # measured: 0.28 LSB
    assert np.abs(r["delta_t_lsb"]).max() < 0.09  # measured: 6.1 % (noise of the check run)
    assert np.abs(r["tau_w_us"]).max() < 0.06  # measured: 4.1 %
    for name in ("delta_t_lsb", "adapt_a", "tau_w_us"):
        assert np.isfinite(r[name]).all(), name
        assert 0 < np.std(r[name]) < 0.03, name  # noisy, but small: not copied from the search
    # b = 0 is not measured (the cell is at 0); a = 0 is, and reads about 0
    assert np.isnan(r["adapt_b"][B == 0]).all() and np.isfinite(r["adapt_b"][B > 0]).all()
    assert np.abs(result.measured["adapt_a"][A == 0]).max() < 2e-3
    # the check agrees with the truth: a measurement, not a copy of the targets
    got = result.measured["delta_t_lsb"] / truth["delta_t_lsb"] - 1.0
    assert np.abs(got).max() < 0.08
    assert set(ADEX_CELLS.values()) <= set(result.summary())


def test_zero_targets_write_capmem_zero(cached):
    result, _ = cached
    assert np.all(result.capmem["i_adapt_a"][A == 0] == 0)
    assert np.all(result.capmem["i_adapt_b"][B == 0] == 0)


def test_apply_writes_adex_cells_only_where_targets_are_given(cached):
    result, _ = cached
    partial = CalibrationTargets(
        **LIF,
        v_exp_lsb=np.where(np.arange(C.N_CIRCUITS) < 10, V_T, np.nan),
        delta_t_lsb=np.where(np.arange(C.N_CIRCUITS) < 10, DELTA_T, np.nan),
    )
    from dataclasses import replace

    cfg = ChipConfig()
    cfg.v_exp = 123
    cfg.i_adapt_tau = 321
    replace(result, targets=partial).apply(cfg)
    assert np.all(np.asarray(cfg.v_exp)[10:] == 123) and np.all(
        np.asarray(cfg.v_exp)[:10] == result.capmem["v_exp"][:10]
    )
    assert np.all(np.asarray(cfg.i_adapt_tau) == 321)


def test_lif_part_is_cached_on_its_own(chip, cached):
    result, path = cached
    assert len(list(path.glob("*.npz"))) == 2  # LIF part + AdEx result
    lif = TARGETS.without_adex()
    assert lif.key() == CalibrationTargets(**LIF).key()  # LIF-only keys did not change
    assert TARGETS.key() != lif.key()
    base = calibrate(chip, lif, cache=path)
    assert base.from_cache and not set(ADEX_CELLS) & set(base.capmem)
    again = calibrate(chip, TARGETS, cache=path)
    assert again.from_cache
    for cell in ADEX_CELLS:
        assert (again.capmem[cell] == result.capmem[cell]).all()
    np.testing.assert_array_equal(again.residual["tau_w_us"], result.residual["tau_w_us"])


def test_ideal_chip():
    """Without mismatch and noise the circuits follow the nominal design; the calibration
    still measures everything (and removes the CADC's rounding by dithering the settings)."""
    chip = VirtualChip.ideal()
    sel = np.zeros(C.N_CIRCUITS, bool)
    sel[:4] = True
    t = CalibrationTargets(
        tau_mem_us=9.37, leak_lsb=77.6, reset_lsb=77.6, threshold_lsb=200.0, refractory_us=0.1,
        v_exp_lsb=[158.4, 120.0, 90.0, 150.0] + [100.0] * 508, delta_t_lsb=[8.0, 2.0, 4.0, 6.0] + [4.0] * 508,
        adapt_a=[0.0142, 0.0, 0.1, 0.5] + [0.1] * 508, adapt_b=[1.146, 0.5, 0.0, 10.0] + [1.0] * 508,
        tau_w_us=[144.0, 30.0, 500.0, 60.0] + [100.0] * 508, circuits=sel,
    )  # fmt: skip
    result = calibrate(chip, t, cache=False)
    p = true_adex(chip, result.apply(ChipConfig()))
    assert np.abs(p["v_exp_lsb"][:4] - t.v_exp_lsb[:4]).max() < 0.5
    assert rel(p["delta_t_lsb"][:4], t.delta_t_lsb[:4]).max() < 0.02
    assert rel(p["tau_w_us"][:4], t.tau_w_us[:4]).max() < 0.02
    # a and b within the rounding to whole CapMem steps (about 0.001 1/us and 0.02 LSB/us
    # per step: half a step is 3.5 % of a = 0.0142 and 2 % of b = 0.5) plus 1 %
    b_on = t.adapt_b[:4] > 0
    step_b = 0.5 * hw.ADAPT_B_LSB_PER_US_AT_MAX / C.CAPMEM_MAX / t.adapt_b[:4][b_on]
    assert np.all(rel(p["adapt_b"][:4][b_on], t.adapt_b[:4][b_on]) < step_b + 0.01)
    a_on = t.adapt_a[:4] > 0
    step_a = 0.5 * hw.ADAPT_A_PER_US_AT_MAX / C.CAPMEM_MAX / t.adapt_a[:4][a_on]
    assert np.all(rel(p["adapt_a"][:4][a_on], t.adapt_a[:4][a_on]) < step_a + 0.01)
    assert np.isnan(result.residual["delta_t_lsb"][4:]).all()


class _NoRunChip(VirtualChip):
    def run(self, *args, **kwargs):
        raise AssertionError("measured although the targets were out of range")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"v_exp_lsb": 200.0, "delta_t_lsb": 4.0}, "v_exp_lsb = 200 CADC LSB"),
        ({"v_exp_lsb": 150.0, "delta_t_lsb": 1.0}, "delta_t_lsb = 1 CADC LSB"),
        ({"adapt_a": 0.005, "adapt_b": 1.0, "tau_w_us": 100.0}, "adapt_a = 0.005 1/us .* 0 or 0.01..0.5"),
        ({"adapt_a": 0.1, "adapt_b": 20.0, "tau_w_us": 100.0}, "adapt_b = 20"),
        ({"adapt_a": 0.1, "adapt_b": 1.0, "tau_w_us": 5.0}, "tau_w_us = 5 us"),
        ({"v_exp_lsb": 150.0}, "must be given together"),
        ({"adapt_a": 0.1, "adapt_b": 1.0}, "must be given together"),
        ({"v_exp_lsb": 150.0, "delta_t_lsb": 4.0, "threshold_lsb": 140.0}, "must lie below threshold_lsb"),
    ],
)
def test_out_of_range_targets_refused_before_measuring(kwargs, fragment):
    with pytest.raises(CalibrationRangeError, match=fragment) as err:
        calibrate(_NoRunChip(seed=0), CalibrationTargets(**kwargs), cache=False)
    assert isinstance(err.value, ValueError)


def test_unreachable_target_raises_calibration_error(monkeypatch):
    """A Delta_T above what the slope cell reaches at CapMem 1022 (about 12.8 LSB nominal)."""
    monkeypatch.setitem(targets_module.OPTIONAL_RANGES, "delta_t_lsb", (2.0, 40.0))
    sel = np.zeros(C.N_CIRCUITS, bool)
    sel[[3, 4, 5]] = True
    d = np.full(C.N_CIRCUITS, 4.0)
    d[[3, 4]] = 30.0
    t = CalibrationTargets(v_exp_lsb=100.0, delta_t_lsb=d, circuits=sel)
    with pytest.raises(CalibrationError) as err:
        calibrate(VirtualChip(seed=1), t, cache=False)
    msg = str(err.value)
    assert "delta_t_lsb" in msg and "3, 4" in msg and "30" in msg and "CapMem 1022" in msg
    assert ", 5" not in msg


def test_interval_model_matches_quadrature():
    """The tabulated ISI integral against adaptive quadrature."""
    from scipy.integrate import quad

    def rate(v, leak, v_t, delta_t):
        return 1.0 / (leak - v + delta_t * np.exp((v - v_t) / delta_t))

    for leak, v_reset, v_spike, v_t, delta_t in [
        (100, 60, 200, 100, 2),
        (95, 60, 200, 100, 8),
        (98.2, 60, 160, 100, 2),
    ]:
        exact = quad(rate, v_reset, v_spike, args=(leak, v_t, delta_t), points=[v_t], limit=400)[0]
        got = float(adex_module.passage_time(leak, v_reset, v_spike, v_t, delta_t))
        assert got == pytest.approx(exact, rel=1e-4)
    assert np.isinf(adex_module.passage_time(97.0, 60.0, 200.0, 100.0, 2.0))  # below the rheobase
