"""PlasticityRule, Timer, kernel context and errors, PlasticSynapse, STDPMechanism and
TsodyksMarkramSynapse mapping (pynn_brainscales2.plasticity)."""

import warnings

import numpy as np
import pytest

import pynn_brainscales2 as sim
from pynn_brainscales2.errors import ChipFeatureError, ParameterRangeError, PlasticityKernelError


@pytest.fixture(autouse=True)
def _ideal():
    sim.setup(chip=sim.VirtualChip.ideal())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sim.QuantisationWarning)
        warnings.simplefilter("ignore", sim.PortabilityWarning)
        yield
    sim.end()


def _net(kernel, timer=None, w=0.5, observables=None, populations=None, n_post=2):
    src = sim.Population(3, sim.SpikeSourceArray(spike_times=[5.0, 15.0, 25.0, 35.0]), label="src")
    post = sim.Population(n_post, sim.IF_curr_exp(i_offset=0.0), label="post")
    rule = sim.PlasticityRule(
        kernel,
        timer or sim.Timer(0.0, 10.0, None),
        observables=observables,
        populations=[post] if populations is None else populations(post),
    )
    prj = sim.Projection(
        src, post, sim.AllToAllConnector(), sim.PlasticSynapse(weight=w, plasticity_rule=rule, w_max=1.0)
    )
    return src, post, rule, prj


# --- construction --------------------------------------------------------------------------
def test_kernel_signature_is_checked_when_the_rule_is_made():
    with pytest.raises(PlasticityKernelError, match="exactly one argument"):
        sim.PlasticityRule(lambda: None, sim.Timer(0.0, 1.0, 2))
    with pytest.raises(PlasticityKernelError, match="exactly one argument"):
        sim.PlasticityRule(lambda ctx, extra: None, sim.Timer(0.0, 1.0, 2))
    with pytest.raises(PlasticityKernelError, match="callable"):
        sim.PlasticityRule(42, sim.Timer(0.0, 1.0, 2))
    sim.PlasticityRule(lambda ctx, scale=1.0: None, sim.Timer(0.0, 1.0, 2))  # defaults are fine


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(start=-1.0, period=1.0, num_periods=2), "start"),
        (dict(start=0.0, period=0.0, num_periods=2), "period"),
        (dict(start=0.0, period=None, num_periods=3), "needs a period"),
        (dict(start=0.0, period=1.0, num_periods=0), "num_periods"),
    ],
)
def test_timer_rejects_bad_values(kwargs, match):
    with pytest.raises(PlasticityKernelError, match=match):
        sim.Timer(**kwargs)


def test_timer_ticks_in_biological_ms_and_stop_at_the_end_of_the_run():
    _, _, rule, _ = _net(lambda ctx: ctx.record("t", ctx.time), timer=sim.Timer(2.0, 5.0, None))
    sim.run(20.0)
    np.testing.assert_allclose(rule.get_data("t").times, [2.0, 7.0, 12.0, 17.0])
    np.testing.assert_allclose(rule.get_data("t").values, [2.0, 7.0, 12.0, 17.0])


# --- what the kernel sees --------------------------------------------------------------------
def test_weights_written_by_the_kernel_act_and_come_back():
    def kernel(ctx):
        syn = ctx.projection(prj)
        syn.weights[:] = 63 if ctx.tick == 1 else syn.weights

    _, post, rule, prj = _net(kernel, timer=sim.Timer(10.0, 10.0, 2), observables=("weights",))
    sim.run(40.0)
    np.testing.assert_allclose(prj.get("weight", format="array"), 1.0)  # 63 steps = w_max
    hist = rule.weight_history(prj, unit="steps")
    np.testing.assert_array_equal(hist.values[:, 0], [32, 63])
    np.testing.assert_allclose(hist.times, [10.0, 20.0])


def test_spike_counts_since_the_previous_tick_and_membrane_samples():
    def kernel(ctx):
        pop = ctx.population(post)
        ctx.record("counts", pop.spike_counts)
        ctx.record("v", pop.v if pop.v is not None else np.full(2, np.nan))

    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[]))
    post = sim.Population(2, sim.IF_curr_exp(i_offset=[5.0, 0.0], tau_refrac=2.0))
    post.record("spikes")
    rule = sim.PlasticityRule(kernel, sim.Timer(10.0, 10.0, None), populations=[post])
    sim.run(50.0)
    counts = rule.get_data("counts").values
    spikes = np.asarray(post.get_data().segments[0].spiketrains[0].magnitude)
    edges = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0])
    expected = np.histogram(spikes, bins=edges)[0]
    np.testing.assert_array_equal(counts[:, 0], expected)
    assert counts[:, 0].sum() > 5 and np.all(counts[:, 1] == 0)
    v = rule.get_data("v").values
    assert np.all(np.abs(v[:, 1] - (-65.0)) < 1.0)  # neuron 1 rests at v_rest
    assert src.size == 1


def test_population_parameters_are_writable():
    def kernel(ctx):
        ctx.population(post).parameters["v_threshold"] = 1022  # threshold far above the rail

    post = sim.Population(1, sim.IF_curr_exp(i_offset=2.0))
    post.record("spikes")
    sim.PlasticityRule(kernel, sim.Timer(20.0), populations=[post])
    sim.run(60.0)
    spikes = np.asarray(post.get_data().segments[0].spiketrains[0].magnitude)
    assert spikes.size >= 2 and spikes.max() < 21.0


def test_record_refuses_undeclared_observables():
    _net(lambda ctx: ctx.record("other", 1.0), observables=("rate",))
    with pytest.raises(PlasticityKernelError, match="'other'.*observables"):
        sim.run(20.0)


# --- errors ------------------------------------------------------------------------------------
def test_exception_in_kernel_stops_the_run_and_keeps_recordings():
    def kernel(ctx):
        ctx.record("t", ctx.time)
        if ctx.tick == 3:
            raise ZeroDivisionError("boom")

    _, post, rule, _ = _net(kernel, observables=("t",))
    post.record("spikes")
    with pytest.raises(PlasticityKernelError, match=r"'kernel' failed at tick 3 \(t = 30 ms\).*boom") as info:
        sim.run(100.0)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert (info.value.rule, info.value.tick, info.value.time) == ("kernel", 3, 30.0)
    np.testing.assert_allclose(rule.get_data("t").values, [0.0, 10.0, 20.0, 30.0])
    block = post.get_data()
    assert float(block.segments[0].spiketrains[0].t_stop) == pytest.approx(30.0)


def test_out_of_range_weights_are_clipped_with_a_warning():
    def kernel(ctx):
        syn = ctx.projection(prj)
        syn.weights[:2] = 100
        syn.weights[2:4] = -5

    _, _, _, prj = _net(kernel, timer=sim.Timer(0.0, 10.0, 3))
    with pytest.warns(sim.PlasticityWarning, match=r"wrote 12 weight\(s\) outside 0..63 .* 3 tick"):
        sim.run(30.0)
    w = prj.get("weight", format="list", with_address=False)
    np.testing.assert_allclose(w[:2], 1.0)
    np.testing.assert_allclose(w[2:4], 0.0)


def test_plastic_synapse_needs_a_rule_and_a_scale():
    with pytest.raises(ChipFeatureError, match="plasticity_rule"):
        sim.PlasticSynapse(weight=0.1)
    rule = sim.PlasticityRule(lambda ctx: None, sim.Timer(0.0, 10.0, 1))
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[1.0]))
    post = sim.Population(1, sim.IF_curr_exp())
    sim.Projection(src, post, sim.AllToAllConnector(), sim.PlasticSynapse(weight=0.0, plasticity_rule=rule))
    with pytest.raises(ParameterRangeError, match="w_max"):
        sim.run(10.0)


def test_zero_initial_weights_are_writable():
    def kernel(ctx):
        ctx.projection(prj).weights = np.full(3, 40)

    _, _, _, prj = _net(kernel, w=0.0, timer=sim.Timer(0.0, 10.0, 1), n_post=1)
    sim.run(10.0)
    np.testing.assert_allclose(prj.get("weight", format="list", with_address=False), 40 / 63)


# --- PyNN's STDPMechanism and TsodyksMarkramSynapse ------------------------------------------------
def test_stdp_mechanism_parameters_and_rule():
    src = sim.Population(2, sim.SpikeSourceArray(spike_times=[]))
    post = sim.Population(2, sim.IF_curr_exp())
    stdp = sim.STDPMechanism(
        timing_dependence=sim.SpikePairRule(tau_plus=15.0, tau_minus=25.0, A_plus=0.03, A_minus=0.02),
        weight_dependence=sim.MultiplicativeWeightDependence(w_min=0.0, w_max=0.8),
        weight=0.4,
    )
    prj = sim.Projection(src, post, sim.AllToAllConnector(), stdp)
    a_plus, w_max = prj.get(["A_plus", "w_max"], format="array")
    np.testing.assert_allclose(a_plus, 0.03)
    np.testing.assert_allclose(w_max, 0.8)
    rule = prj.plasticity_rule
    assert isinstance(rule, sim.STDPRule) and rule.dependence == "multiplicative"
    assert (rule.sensors.tau_causal, rule.sensors.tau_acausal) == (15.0, 25.0)
    sim.run(20.0)  # no spikes: weights unchanged (40 % of w_max: 32 steps of 63)
    np.testing.assert_allclose(prj.get("weight", format="array"), 32 / 63 * 0.8)


def test_stdp_mechanism_refuses_what_the_sensors_cannot_do():
    with pytest.raises(ChipFeatureError, match="SpikePairRule"):
        sim.STDPMechanism(timing_dependence=None, weight_dependence=sim.AdditiveWeightDependence())
    with pytest.raises(ChipFeatureError):
        sim.GutigWeightDependence()


def test_tsodyks_markram_projections_get_drivers_of_their_own():
    src = sim.Population(2, sim.SpikeSourceArray(spike_times=[5.0]))
    post = sim.Population(2, sim.IF_curr_exp())
    a = sim.Projection(src, post, sim.OneToOneConnector(), sim.TsodyksMarkramSynapse(weight=0.5, U=0.4))
    b = sim.Projection(
        src, post, sim.AllToAllConnector(), sim.TsodyksMarkramSynapse(weight=0.5, U=0.7, tau_facil=50.0)
    )
    sim.run(10.0)
    compiled = sim.simulator.state.compiled
    routing, cfg = compiled.mapping.routing, compiled.executor.config
    assert len(routing.stp_settings) == 2
    on = routing.driver_stp > 0
    # every STP driver serves one source and one setting
    for k, setting in enumerate(routing.stp_settings, start=1):
        drivers = routing.driver_stp == k
        assert drivers.any()
        np.testing.assert_array_equal(cfg.stp_utilization[drivers], setting[0])
        assert np.all(cfg.stp_facilitation[drivers] == setting[3])
    assert np.array_equal(cfg.stp_enable, on)
    groups = routing.driver_group[on]
    assert np.unique(groups).size == 2  # one group (source) each
    u = b.get("U", format="array")
    np.testing.assert_allclose(u, 0.7)
    assert len(a) == 2


def test_tsodyks_markram_out_of_range():
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[5.0]))
    post = sim.Population(1, sim.IF_curr_exp())
    sim.Projection(src, post, sim.AllToAllConnector(), sim.TsodyksMarkramSynapse(weight=0.5, tau_rec=5000.0))
    with pytest.raises(ParameterRangeError, match="tau_rec"):
        sim.run(10.0)


def test_two_rules_with_different_sensor_settings_in_one_hemisphere():
    src = sim.Population(2, sim.SpikeSourceArray(spike_times=[]))
    post = sim.Population(2, sim.IF_curr_exp())
    for tau in (10.0, 30.0):
        rule = sim.STDPRule(tau_plus=tau, name=f"stdp{tau:g}")
        sim.Projection(
            src, post, sim.OneToOneConnector(), sim.PlasticSynapse(weight=0.2, plasticity_rule=rule)
        )
    with pytest.raises(ChipFeatureError, match="one setting per hemisphere"):
        sim.run(10.0)
