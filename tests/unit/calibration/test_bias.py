"""Calibration of the constant bias current on a mismatched chip.

Ground truth through the chip's private door (``VirtualChip._physics``), as in
test_calibration.py: the calibration never reads it.
"""

import numpy as np
import pytest

from cysim import ChipConfig, VirtualChip
from cysim import constants as C
from pynn_brainscales2 import hardware as hw
from pynn_brainscales2.calibration import CalibrationTargets, calibrate
from pynn_brainscales2.errors import CalibrationRangeError

BIAS = np.full(C.N_CIRCUITS, np.nan)
BIAS[:200] = np.linspace(0.5, 25.0, 200)  # the whole documented range
BIAS[300:340] = 4.0
TARGETS = CalibrationTargets(
    tau_mem_us=20.0, leak_lsb=100.0, reset_lsb=100.0, threshold_lsb=160.0, bias_current=BIAS
)


def true_bias(chip, config):
    """Membrane slope of every circuit's bias current [CADC LSB/us] (private door)."""
    capmem = {k: np.asarray(getattr(config, k)).astype(float) for k in C.CAPMEM_FIELDS}
    switches = {k: np.asarray(getattr(config, k)) for k in C.SWITCH_FIELDS}
    p = chip._physics.circuit_parameters(capmem, switches)
    return p.bias_current * C.CADC_LSB_PER_V * chip._physics.cadc_gain


@pytest.fixture(scope="module")
def chip():
    return VirtualChip(seed=3)


@pytest.fixture(scope="module")
def cached(chip, tmp_path_factory):
    path = tmp_path_factory.mktemp("bias-cache")
    return calibrate(chip, TARGETS, cache=path), path


def _configured(result):
    cfg = result.apply(ChipConfig())
    cfg.enable_bias_current = np.isfinite(BIAS)
    return cfg


def test_uncalibrated_bias_spreads(chip):
    cfg = ChipConfig()
    cfg.enable_bias_current = True
    cfg.i_bias_const = hw.nominal_bias_capmem(np.full(C.N_CIRCUITS, 4.0))
    spread = true_bias(chip, cfg)
    assert np.std(spread) / np.mean(spread) > 0.1  # measured: 0.15


def test_bias_current_meets_target(chip, cached):
    result, _ = cached
    on = np.isfinite(BIAS)
    cfg = _configured(result)
    true = true_bias(chip, cfg)
    cfg.i_bias_const = np.asarray(cfg.i_bias_const) + 1
    step = true_bias(chip, cfg) - true  # one CapMem step, per circuit [LSB/us]
    err = true[on] / BIAS[on] - 1.0
    fine = step[on] / BIAS[on] < 0.03  # CapMem steps finer than 3 % of the target
    # where steps are finer than 3 %: within 3 % (measured: 1.6 %); at the low end of the
    # range (below about 1.3 LSB/us a step is more than 3 %) within one step of the target
    assert fine.sum() > 150
    assert np.abs(err[fine]).max() < 0.03
    assert (np.abs(true[on] - BIAS[on]) < step[on])[~fine].all()
    assert np.percentile(np.abs(err), 95) < 0.015  # measured: 1.0 %


def test_residual_is_measured_and_small(cached):
    result, _ = cached
    r = result.residual["bias_current"]
    on = np.isfinite(BIAS)
    assert np.isfinite(r[on]).all() and np.isnan(r[~on]).all()
    # circuits whose CapMem step is finer than 3 % of the target (nominal step 0.039
    # LSB/us): within 4 %; the coarser low end within about one step plus readout noise
    fine = BIAS > 1.5
    assert 0 < np.nanstd(r) and np.nanmax(np.abs(r[fine])) < 0.04
    assert np.nanmax(np.abs(r[on & ~fine]) * BIAS[on & ~fine]) < 0.06


def test_other_circuits_keep_their_bias_cell(cached):
    result, _ = cached
    cfg = ChipConfig()
    cfg.i_bias_const = 1000
    result.apply(cfg)
    assert (np.asarray(cfg.i_bias_const)[np.isnan(BIAS)] == 1000).all()
    assert (np.asarray(cfg.i_bias_const)[np.isfinite(BIAS)] != 1000).all()


def test_lif_part_is_cached_on_its_own(chip, cached):
    """The targets without bias have their own cache entry (the key they always had); a new
    bias target reuses it and only runs the bias search."""
    result, path = cached
    assert len(list(path.glob("*.npz"))) == 2
    base = calibrate(chip, TARGETS.without_bias(), cache=path)
    assert base.from_cache and "i_bias_const" not in base.capmem
    for cell in base.capmem:
        assert (base.capmem[cell] == result.capmem[cell]).all()
    again = calibrate(chip, TARGETS, cache=path)
    assert again.from_cache
    assert (again.capmem["i_bias_const"] == result.capmem["i_bias_const"]).all()
    assert TARGETS.key() != TARGETS.without_bias().key()
    assert (
        TARGETS.without_bias().key()
        == CalibrationTargets(tau_mem_us=20.0, leak_lsb=100.0, reset_lsb=100.0, threshold_lsb=160.0).key()
    )


def test_ideal_chip_bias_is_near_nominal():
    chip = VirtualChip.ideal()
    bias = np.full(C.N_CIRCUITS, np.nan)
    bias[:4] = [2.0, 4.0, 8.0, 20.0]
    res = calibrate(chip, CalibrationTargets(bias_current=bias), cache=False)
    got = true_bias(chip, _configured_for(res, bias))[:4]
    assert np.abs(got / bias[:4] - 1).max() < 0.02


def _configured_for(result, bias):
    cfg = result.apply(ChipConfig())
    cfg.enable_bias_current = np.isfinite(bias)
    return cfg


@pytest.mark.parametrize("value", [0.2, 30.0, np.inf])
def test_out_of_range_bias_refused(value):
    bias = np.full(C.N_CIRCUITS, np.nan)
    bias[5] = value
    with pytest.raises(CalibrationRangeError, match="bias_current .* circuit\\(s\\) 5"):
        CalibrationTargets(bias_current=bias)
