"""Bad input: each raises this project's error, and the process can still build and run a
valid network afterwards."""

import numpy as np
import pytest

import pynn_brainscales2 as sim
from pynn_brainscales2 import errors


def _valid_network_runs():
    sim.setup(chip=sim.VirtualChip.ideal())
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[5.0]))
    p = sim.Population(2, sim.IF_curr_exp(i_offset=1.0))
    sim.Projection(src, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=0.5))
    p.record("spikes")
    sim.run(40.0)
    trains = p.get_data().segments[0].spiketrains
    sim.end()
    assert all(len(t) >= 1 for t in trains)


def _too_many_neurons():
    sim.setup(chip=sim.VirtualChip.ideal())
    sim.Population(600, sim.IF_curr_exp())
    sim.run(1.0)


def _too_much_fan_in():
    sim.setup(chip=sim.VirtualChip.ideal())
    src = sim.Population(300, sim.SpikeSourceArray(spike_times=[1.0]))
    p = sim.Population(1, sim.IF_curr_exp())
    sim.Projection(src, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=0.1))
    sim.run(1.0)


def _wrong_sign():
    sim.setup(chip=sim.VirtualChip.ideal())
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[1.0]))
    p = sim.Population(1, sim.IF_curr_exp())
    sim.Projection(src, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=0.5), receptor_type="inhibitory")


def _nan_parameter():
    sim.setup(chip=sim.VirtualChip.ideal())
    sim.Population(1, sim.IF_curr_exp(tau_m=np.nan))


def _inf_parameter():
    sim.setup(chip=sim.VirtualChip.ideal())
    sim.Population(1, sim.IF_curr_exp(v_thresh=np.inf))


def _negative_tau():
    sim.setup(chip=sim.VirtualChip.ideal())
    sim.Population(1, sim.IF_curr_exp(tau_syn_E=-1.0))
    sim.run(1.0)


def _unsorted_spikes():
    sim.setup(chip=sim.VirtualChip.ideal())
    sim.Population(1, sim.SpikeSourceArray(spike_times=[5.0, 2.0]))


def _negative_spikes():
    sim.setup(chip=sim.VirtualChip.ideal())
    sim.Population(1, sim.SpikeSourceArray(spike_times=[-1.0, 2.0]))


def _run_before_setup():
    sim.end()
    sim.run(10.0)


def _unknown_setup_argument():
    sim.setup(chip=sim.VirtualChip.ideal(), turbo=True)


def _unrecordable():
    sim.setup(chip=sim.VirtualChip.ideal())
    sim.Population(1, sim.IF_cond_exp()).record("gsyn_exc")


CASES = {
    "too many neurons": (_too_many_neurons, errors.PlacementError, "512"),
    "too much fan-in": (_too_much_fan_in, errors.RoutingError, "256"),
    "wrong weight sign": (_wrong_sign, errors.WeightSignError, "inhibitory"),
    "NaN parameter": (_nan_parameter, errors.ParameterRangeError, "tau_m"),
    "inf parameter": (_inf_parameter, errors.ParameterRangeError, "v_thresh"),
    "negative time constant": (_negative_tau, errors.ParameterRangeError, "tau_syn_E = -1 ms"),
    "unsorted spike times": (_unsorted_spikes, errors.ParameterRangeError, "not sorted"),
    "negative spike times": (_negative_spikes, errors.ParameterRangeError, "-1 ms"),
    "run before setup": (_run_before_setup, errors.SetupError, "setup"),
    "unknown setup argument": (_unknown_setup_argument, errors.SetupError, "turbo"),
    "unrecordable variable": (_unrecordable, errors.RecordingError, "gsyn_exc"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_clear_error_then_valid_network_runs(case):
    build, error, fragment = CASES[case]
    with pytest.raises(error, match=fragment) as info:
        build()
    assert isinstance(info.value, errors.BrainScaleS2Error)
    _valid_network_runs()


def test_unsupported_models_list_the_supported_ones():
    sim.setup(chip=sim.VirtualChip.ideal())
    with pytest.raises(errors.ChipFeatureError, match="IF_curr_exp"):
        sim.IF_curr_alpha()
    with pytest.raises(errors.ChipFeatureError, match="StaticSynapse"):
        sim.SimpleStochasticSynapse()
    with pytest.raises(errors.ChipFeatureError, match="DCSource"):
        sim.ACSource()
    _valid_network_runs()


def test_delay_warns_once_and_strict_mode_raises():
    sim.setup(chip=sim.VirtualChip.ideal())
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[1.0]))
    p = sim.Population(1, sim.IF_curr_exp())
    sim.Projection(src, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=0.5, delay=2.0))
    with pytest.warns(sim.PortabilityWarning, match="delay"):
        sim.run(5.0)
    assert [e["feature"] for e in sim.portability_report()] == ["delay"]
    sim.setup(chip=sim.VirtualChip.ideal(), strict=True)
    src = sim.Population(1, sim.SpikeSourceArray(spike_times=[1.0]))
    p = sim.Population(1, sim.IF_curr_exp())
    sim.Projection(src, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=0.5, delay=2.0))
    with pytest.raises(errors.StrictModeError, match="2 ms"):
        sim.run(5.0)
    _valid_network_runs()


def test_changing_a_time_varying_current_raises():
    sim.setup(chip=sim.VirtualChip.ideal())
    p = sim.Population(1, sim.IF_curr_exp())
    sim.DCSource(amplitude=0.5, start=10.0, stop=20.0).inject_into(p)
    with pytest.raises(errors.ChipFeatureError, match="start=10 ms"):
        sim.run(30.0)
    _valid_network_runs()
