"""Translation choices that decide how exactly the chip reproduces a model."""

import numpy as np
import pytest

from pynn_brainscales2 import hardware as hw
from pynn_brainscales2 import translation as T


def _effective(weights, wmax, per_unit, n):
    """Weights as the ideal chip realises them with ``n`` steps for ``wmax`` (nominal CapMem)."""
    scale = n / wmax
    capmem = hw.nominal_syn_gain_capmem(per_unit / scale)
    return np.rint(np.asarray(weights) * scale) / scale * np.rint(capmem) / capmem


def test_gain_resolution_enters_the_step_choice():
    """Weights 0.05 and 0.06 nA onto cm = 0.25 nF (16 LSB/us per nA): with 63 steps the gain
    is 0.0152 LSB/us = CapMem 15.6, so rounding it costs 2.4 % (and 0.05 nA rounds by 1 %);
    the chosen step count keeps both weights within 1 % (measured: -0.07 % and +0.7 %)."""
    per_unit = np.full(4, 16.0)
    weights = np.r_[np.full(40, 0.05), 0.06]
    worst_63 = np.abs(_effective([0.05, 0.06], 0.06, 16.0, 63) / [0.05, 0.06] - 1).max()
    assert worst_63 > 0.02
    n = T._steps_of_largest_weight(weights, 0.06, per_unit, 1, 63)
    assert 1 <= n <= 63
    worst = np.abs(_effective([0.05, 0.06], 0.06, 16.0, n) / [0.05, 0.06] - 1).max()
    assert worst < 0.01


def test_many_distinct_weights_keep_fine_steps():
    """Random weights: the weight rounding dominates, so (nearly) all 63 steps are used."""
    w = np.random.default_rng(0).uniform(0.01, 0.5, 2000)
    n = T._steps_of_largest_weight(w, w.max(), np.array([4.0]), 1, 63)
    assert n >= 55


@pytest.mark.parametrize("cm", [0.25, 1.0])
def test_one_weight_is_exact_on_the_ideal_chip(cm):
    per_unit = np.array([4.0 / cm])
    n = T._steps_of_largest_weight(np.array([0.1]), 0.1, per_unit, 1, 63)
    assert abs(_effective([0.1], 0.1, per_unit[0], n)[0] / 0.1 - 1) < 1e-3
