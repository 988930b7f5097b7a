"""Plasticity through PyNN on the ideal chip, against analytic expectations: the STDP
window of ``examples/stdp.py``, the homeostasis of ``examples/homeostasis.py`` and driver
short-term plasticity (``TsodyksMarkramSynapse``) against the Tsodyks-Markram equations."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

import pynn_brainscales2 as sim

from ..unit.pynn.conftest import calibration_cache_dir  # noqa: F401  (session cache fixture)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sim.QuantisationWarning)
        warnings.simplefilter("ignore", sim.PortabilityWarning)
        yield


def test_stdp_window_matches_configured_time_constants():
    stdp = _example("stdp")
    dt, dw = stdp.measure_window(sim.VirtualChip.ideal(), pairs=20)
    assert np.all(dw[dt > 0] > 0) and np.all(dw[dt < 0] < 0)  # sign change at 0
    assert np.all(np.diff(dw[dt > 0]) <= 0) and np.all(np.diff(dw[dt < 0]) <= 0)  # decays away from 0
    fit = stdp.fit_window(dt, dw)
    assert fit["tau_plus"] == pytest.approx(stdp.TAU_PLUS, rel=0.1)
    assert fit["tau_minus"] == pytest.approx(stdp.TAU_MINUS, rel=0.1)
    # amplitude per side: A * w_max (63 steps) * pairs
    assert fit["A_plus_steps"] == pytest.approx(stdp.A_PLUS * 63 * 20, rel=0.1)
    assert fit["A_minus_steps"] == pytest.approx(stdp.A_MINUS * 63 * 20, rel=0.1)


def test_homeostasis_converges_from_above_and_below():
    homeo = _example("homeostasis")
    t, rates, _, mean_w, final = homeo.run(sim.VirtualChip.ideal(), duration=5000.0)
    first = rates[1]
    assert np.all(first[: homeo.N_NEURONS // 2] < 0.2 * homeo.TARGET)  # far below
    assert np.all(first[homeo.N_NEURONS // 2 :] > 2.0 * homeo.TARGET)  # far above
    np.testing.assert_allclose(final, homeo.TARGET, rtol=0.1)
    assert mean_w[0, 0] == 0 and mean_w[0, -1] == 63


# --- short-term plasticity -----------------------------------------------------------------
SPIKES = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 125.0, 130.0, 230.0])
CELL = dict(tau_m=10.0, tau_syn_E=1.0, v_rest=-65.0, v_reset=-70.0, v_thresh=-35.0, cm=1.0, tau_refrac=1.0)


def _trace(spike_times, synapse):
    sim.setup(chip=sim.VirtualChip.ideal())
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=list(spike_times)))
    post = sim.Population(1, sim.IF_curr_exp(**CELL), initial_values={"v": CELL["v_rest"]})
    sim.Projection(src, post, sim.AllToAllConnector(), synapse())
    post.record("v", sampling_interval=0.1)
    sim.run(300.0)
    v = np.asarray(post.get_data().segments[0].analogsignals[0].magnitude)[:, 0]
    sim.end()
    return v - CELL["v_rest"]


def _efficacies(synapse):
    """Per spike the amplitude relative to a static synapse of the same weight, by least
    squares on the membrane trace with the single-PSP kernel shifted to every spike."""
    kernel = _trace([5.0], lambda: sim.StaticSynapse(weight=12.0))
    v = _trace(SPIKES, synapse)
    shift = np.rint((SPIKES - 5.0) / 0.1).astype(int)
    basis = np.zeros((v.size, SPIKES.size))
    for k, s in enumerate(shift):
        basis[s:, k] = kernel[: v.size - s]
    e, *_ = np.linalg.lstsq(basis, v, rcond=None)
    return e


def _tsodyks_markram(U, tau_rec, tau_fac):
    """NEST tsodyks2_synapse: efficacy u x per spike, starting with x = 1, u = U."""
    x, u, out = 1.0, U, [U]
    for h in np.diff(SPIKES):
        x = 1.0 + (x - x * u - 1.0) * np.exp(-h / tau_rec)
        u = U + u * (1.0 - U) * np.exp(-h / tau_fac) if tau_fac > 0 else U
        out.append(u * x)
    return np.array(out)


@pytest.mark.parametrize(
    "U, tau_rec, tau_facil",
    [(0.5, 50.0, 0.0), (0.1, 20.0, 100.0)],
    ids=["depression", "facilitation"],
)
def test_tsodyks_markram_against_equations(U, tau_rec, tau_facil):
    measured = _efficacies(
        lambda: sim.TsodyksMarkramSynapse(weight=12.0, U=U, tau_rec=tau_rec, tau_facil=tau_facil)
    )
    expected = _tsodyks_markram(U, tau_rec, tau_facil)
    np.testing.assert_allclose(measured, expected, rtol=0.03, atol=0.003)
    if tau_facil == 0:
        assert measured[5] < 0.6 * measured[0]  # depressed within the train
    else:
        assert measured[5] > 2.0 * measured[0]  # facilitated within the train
