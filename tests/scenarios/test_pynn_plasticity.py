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


# --- the built-in STDP rule: compiled in the engine == its Python kernel --------------------------


def _stdp_network(compiled, dependence, chip, homeostasis=False, observables=None):
    """Poisson inputs onto driven neurons through two STDPMechanism projections (one rule
    each) and one STDPRule shared by a third; returns weights, spikes and rule histories."""
    sim.setup(chip=chip)
    pre = sim.Population(24, sim.SpikeSourcePoisson(rate=30.0), label="pre")
    post = sim.Population(12, sim.IF_curr_exp(), label="post")
    drive = sim.Population(12, sim.SpikeSourcePoisson(rate=40.0), label="drive")
    sim.Projection(drive, post, sim.OneToOneConnector(), sim.StaticSynapse(weight=1.0))
    weight = {"additive": sim.AdditiveWeightDependence, "multiplicative": sim.MultiplicativeWeightDependence}
    prjs = []
    for k, (a_plus, a_minus) in enumerate(((0.05, 0.04), (0.02, 0.06))):
        syn = sim.STDPMechanism(
            timing_dependence=sim.SpikePairRule(
                tau_plus=20.0, tau_minus=30.0, A_plus=a_plus, A_minus=a_minus
            ),
            weight_dependence=weight[dependence](w_min=0.05 * k, w_max=0.5),
            weight=0.25,
        )
        prj = sim.Projection(pre[12 * k : 12 * k + 12], post, sim.AllToAllConnector(), syn, label=f"p{k}")
        prj.plasticity_rule.compiled = compiled
        prjs.append(prj)
    rule = sim.STDPRule(
        tau_plus=20.0,
        tau_minus=30.0,
        A_plus=0.03,
        A_minus=0.03,
        dependence=dependence,
        compiled=compiled,
        timer=sim.Timer(0.0, 5.0, None),
        observables=observables,
    )
    shared = sim.Projection(
        pre[:6],
        post,
        sim.FixedProbabilityConnector(0.5, rng=sim.NumpyRNG(seed=4)),
        sim.PlasticSynapse(weight=0.2, plasticity_rule=rule, w_max=0.5),
        label="shared",
    )
    if homeostasis:  # a rule that counts spikes: the STDP rules run their Python kernels
        sim.PlasticityRule(lambda ctx: None, sim.Timer(0.0, 7.0, None), populations=[post])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", sim.PlasticityWarning)
        sim.run(400.0)
    out = {
        "weights": [p.get("weight", format="array") for p in [*prjs, shared]],
        "spikes": [np.asarray(s) for s in post.get_data().segments[0].spiketrains],
        "warnings": [str(w.message) for w in caught if issubclass(w.category, sim.PlasticityWarning)],
        "history": rule.weight_history(shared, unit="steps").values if observables else None,
    }
    sim.end()
    return out


@pytest.mark.parametrize("dependence", ["additive", "multiplicative"])
def test_compiled_stdp_rule_equals_its_python_kernel(dependence, monkeypatch):
    from pynn_brainscales2.plasticity import STDPRule

    calls = []
    kernel = STDPRule._kernel
    monkeypatch.setattr(STDPRule, "_kernel", lambda self, ctx: (calls.append(1), kernel(self, ctx))[1])
    for chip in (sim.VirtualChip.ideal(), sim.VirtualChip(seed=2)):
        runs = [
            _stdp_network(compiled, dependence, chip, observables=("weights",)) for compiled in (True, False)
        ]
        assert len(calls) > 0  # the Python kernels ran in the second run only
        calls.clear()
        a, b = runs
        for wa, wb, w0 in zip(a["weights"], b["weights"], (0.25, 0.25, 0.2), strict=True):
            np.testing.assert_array_equal(wa, wb)
            assert np.nanmax(np.abs(wa - w0)) > 0.01  # weights moved
        for sa, sb in zip(a["spikes"], b["spikes"], strict=True):
            np.testing.assert_array_equal(sa, sb)
        np.testing.assert_array_equal(a["history"], b["history"])
        assert a["warnings"] == b["warnings"]


def test_compiled_stdp_rule_is_used_unless_a_rule_counts_spikes(monkeypatch):
    from pynn_brainscales2.plasticity import STDPRule

    calls = []
    kernel = STDPRule._kernel
    monkeypatch.setattr(STDPRule, "_kernel", lambda self, ctx: (calls.append(1), kernel(self, ctx))[1])
    _stdp_network(True, "additive", sim.VirtualChip.ideal())
    assert calls == []
    counted = _stdp_network(True, "additive", sim.VirtualChip.ideal(), homeostasis=True)
    assert len(calls) > 0
    python = _stdp_network(False, "additive", sim.VirtualChip.ideal(), homeostasis=True)
    for wa, wb in zip(counted["weights"], python["weights"], strict=True):
        np.testing.assert_array_equal(wa, wb)
