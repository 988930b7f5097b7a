"""Unit conversions of pynn_brainscales2.hardware."""

import numpy as np
import pytest

from pynn_brainscales2 import hardware as hw
from pynn_brainscales2.errors import ParameterRangeError


def test_time_round_trip_and_speedup():
    t = np.array([0.0, 1.5, 20.0])
    assert np.allclose(hw.bio_ms_to_hw_us(t), t)  # 1 ms bio = 1 us hardware at 1000x
    assert np.allclose(hw.bio_ms_to_hw_us(t, speedup=250.0), 4 * t)
    assert np.allclose(hw.hw_us_to_bio_ms(hw.bio_ms_to_hw_us(t, 333.0), 333.0), t)
    assert float(hw.bio_hz_to_hw_per_us(50.0, speedup=2000.0)) == pytest.approx(0.1)


@pytest.mark.parametrize("speedup", [0.0, -1.0, np.inf, np.nan])
def test_bad_speedup_is_rejected(speedup):
    with pytest.raises(ParameterRangeError, match="speedup"):
        hw.bio_ms_to_hw_us(1.0, speedup)


def test_background_period_and_its_limits():
    assert hw.bg_period_cycles(1000.0) == 250
    assert hw.bg_period_cycles(100.0) == 2500
    with pytest.raises(ParameterRangeError, match="Background rate 1 Hz"):
        hw.bg_period_cycles(1.0)  # needs 250000 cycles
    with pytest.raises(ParameterRangeError):
        hw.bg_period_cycles(0.0)


def test_default_voltage_map_puts_usual_potentials_into_calibratable_ranges():
    vmap = hw.DEFAULT_VOLTAGE_MAP
    assert float(vmap.to_lsb(-65.0)) == 100.0
    lo, hi = hw.LEAK_RANGE_LSB
    for v_mv in (-75.0, -70.0, -65.0, -60.0, -55.0):  # rest and reset potentials
        assert lo <= vmap.to_lsb(v_mv) <= hi
    lo, hi = hw.THRESHOLD_RANGE_LSB
    for v_mv in (-55.0, -50.0, -45.0, -40.0):
        assert lo <= vmap.to_lsb(v_mv) <= hi
    assert vmap.range_mv(hw.CADC_RELIABLE_RANGE_LSB) == (-82.5, -37.5)
    lsb = np.linspace(0, 255, 7)
    assert np.allclose(vmap.to_lsb(vmap.to_mv(lsb)), lsb)
    assert float(vmap.delta_to_lsb(1.0)) == 4.0 and float(vmap.delta_to_mv(4.0)) == 1.0
    assert float(vmap.madc_to_mv(400.0)) == pytest.approx(float(vmap.to_mv(100.0)))
    assert float(hw.lsb_to_volt(hw.CADC_LSB_PER_V)) == pytest.approx(1.0)


def test_voltage_map_checks_ranges_and_itself():
    vmap = hw.VoltageMap(mv_at_zero_lsb=-100.0, mv_per_lsb=0.5)
    assert float(vmap.to_lsb(-60.0)) == 80.0
    assert float(vmap.check_range("v_rest", -60.0, hw.LEAK_RANGE_LSB)[0]) == 80.0
    with pytest.raises(ParameterRangeError, match=r"v_rest = -10 mV .* allowed -75..-20 mV"):
        vmap.check_range("v_rest", [-60.0, -10.0], hw.LEAK_RANGE_LSB)
    with pytest.raises(ParameterRangeError, match="slope"):
        hw.VoltageMap(mv_per_lsb=0.0)
    # 2 mV/ms -> 4 LSB/ms bio -> 4 LSB per us of hardware time at 1000x
    assert float(vmap.slope_to_lsb_per_us(2.0)) == 4.0


def test_quantise_weights_signs_scale_and_error():
    q = hw.quantise_weights([0.1, -0.2, 0.0, 0.4])
    assert q.scale == pytest.approx(63 / 0.4)
    assert q.steps.tolist() == [16, 32, 0, 63]
    assert q.inhibitory.tolist() == [False, True, False, False]
    expected = max(abs(16 / q.scale - 0.1) / 0.1, abs(32 / q.scale - 0.2) / 0.2)
    assert q.max_relative_error == pytest.approx(expected)
    back = hw.steps_to_weight(q.steps, q.scale, q.inhibitory)
    assert np.allclose(back, [0.1, -0.2, 0.0, 0.4], rtol=q.max_relative_error + 1e-12)


def test_quantise_weights_finer_scale_needs_more_rows():
    q = hw.quantise_weights([1.0, 0.5, -0.01], max_steps=126)
    assert q.steps.tolist() == [126, 63, 1]
    assert q.rows.tolist() == [2, 1, 1]
    assert q.max_relative_error == pytest.approx(1 - 1 / 1.26)  # 0.01 -> 1 step = 0.0079
    tiny = hw.quantise_weights([1.0, 0.001], scale=63.0)
    assert tiny.steps.tolist() == [63, 0] and tiny.max_relative_error == 1.0


def test_quantise_weights_rejects_bad_input():
    with pytest.raises(ParameterRangeError):
        hw.quantise_weights([np.nan])
    with pytest.raises(ParameterRangeError):
        hw.quantise_weights([1.0], scale=-1.0)
    with pytest.raises(ParameterRangeError):
        hw.weight_scale(0.0)
    assert hw.quantise_weights([0.0, 0.0]).max_relative_error == 0.0


def test_split_steps_fills_rows_of_63_first():
    assert hw.split_steps([123, 63, 0, 190]).tolist() == [
        [63, 60, 0, 0],
        [63, 0, 0, 0],
        [0, 0, 0, 0],
        [63, 63, 63, 1],
    ]
    assert hw.split_steps([10], n_rows=2).tolist() == [[10, 0]]
    assert hw.split_steps([123]).sum() == 123
    with pytest.raises(ParameterRangeError, match="do not fit 1 synapse row"):
        hw.split_steps([64], n_rows=1)


def test_chip_facts_are_reexported():
    assert hw.N_CIRCUITS == 512 and hw.WEIGHT_MAX == 63 and hw.ROWS_PER_PADI_BUS == 64
    assert hw.event_label(5, 3, 7) == (5 << 11) | (3 << 6) | 7
    assert set(hw.__all__) <= set(dir(hw))


def test_nominal_design_transfers_live_in_hardware():
    """The CapMem design transfers the PyNN layer uses are defined (only) in hardware.py."""
    from cysim.engine import COBA_REFERENCE_V
    from pynn_brainscales2 import hardware as hw_
    from pynn_brainscales2 import translation

    assert hw_.COBA_REFERENCE_V == COBA_REFERENCE_V
    assert hw_.COBA_REFERENCE_LSB == pytest.approx(COBA_REFERENCE_V * hw_.CADC_LSB_PER_V)
    assert hw_.nominal_bias_capmem(hw_.BIAS_LSB_PER_US_AT_MAX).item() == hw_.CAPMEM_MAX
    assert hw_.nominal_syn_gain_capmem(hw_.SYN_GAIN_LSB_PER_US_AT_MAX).item() == pytest.approx(hw_.CAPMEM_MAX)
    assert hw_.nominal_potential_capmem(64.0).item() == 256
    for name in ("BIAS_LSB_PER_US_AT_MAX", "CAPMEM_PER_LSB", "COBA_REFERENCE_LSB", "COBA_REFERENCE_V"):
        assert not hasattr(translation, name), name
