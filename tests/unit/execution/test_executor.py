"""The executor's host side: stimuli of many trials and spikes of many trials at once."""

import numpy as np
import pytest

from cysim import Stimulus, VirtualChip
from pynn_brainscales2.errors import ParameterRangeError, RoutingError
from pynn_brainscales2.execution import Executor
from pynn_brainscales2.execution.executor import _events
from pynn_brainscales2.mapping import NetworkSpec, PopulationSpec, ProjectionSpec, map_network


def _mapping(seed=0):
    rng = np.random.default_rng(seed)
    spec = NetworkSpec(
        (
            PopulationSpec("a", 300, "external"),
            PopulationSpec("b", 40, "external"),
            PopulationSpec("out", 20),
        ),
        (
            ProjectionSpec(
                "w", "a", "out", rng.integers(0, 300, 500), rng.integers(0, 20, 500), rng.integers(1, 63, 500)
            ),
            ProjectionSpec(
                "v",
                "b",
                "out",
                rng.integers(0, 40, 100),
                rng.integers(0, 20, 100),
                rng.integers(1, 63, 100),
                receptor="inhibitory",
            ),
        ),
    )
    return map_network(spec)


def _trials(rng, n=30, mixed=True):
    stimuli = []
    for k in range(n):
        trial = {}
        for pop in ["b", "a"] if mixed and k % 3 == 0 else ["a", "b"]:  # in either order
            size = 300 if pop == "a" else 40
            m = int(rng.integers(0, 50))
            trial[pop] = (rng.integers(0, size, m), rng.integers(0, 10, m) * 0.5)  # many equal times
        stimuli.append(trial)
    stimuli[4] = {}  # a trial without events
    return stimuli


@pytest.mark.parametrize("mixed", [False, True])
def test_stimulus_of_many_trials_is_that_of_each_trial_in_turn(mixed):
    """All trials' spikes are mapped at once; the events, their order within equal times
    included, are those of mapping trial after trial (also where trials list their
    populations in different orders)."""
    m = _mapping()
    stimuli = _trials(np.random.default_rng(1), mixed=mixed)
    ex = Executor(m, m.config, VirtualChip.ideal())
    batched = ex.stimulus(stimuli, len(stimuli))
    one_by_one = Stimulus.from_trials([_events(m, s) for s in stimuli])
    assert len(batched) > 1000 and batched.n_trials == one_by_one.n_trials == len(stimuli)
    for field in ("times_us", "labels", "trials"):
        assert np.array_equal(getattr(batched, field), getattr(one_by_one, field)), field


def test_stimulus_of_many_trials_checks_like_one_trial():
    m = _mapping()
    ex = Executor(m, m.config, VirtualChip.ideal())
    good = {"a": ([1, 2], [0.5, 1.0])}
    with pytest.raises(ParameterRangeError, match="finite and >= 0"):
        ex.stimulus([good, {"a": ([1], [-1.0])}], 2)
    with pytest.raises(RoutingError, match="only 'external' populations"):
        ex.stimulus([good, {"out": ([1], [1.0])}], 2)
    with pytest.raises(RoutingError, match="one source index"):
        ex.stimulus([good, {"a": ([1, 2, 3], [1.0])}], 2)
    with pytest.raises(RoutingError, match="one source index"):
        ex.stimulus([good, {"a": ([300], [1.0])}], 2)


def test_spike_events_of_all_trials_are_those_of_each_trial():
    m = _mapping()
    cfg = m.config
    cfg.enable_spiking[m.circuits("out")] = True
    cfg.v_threshold = 400  # low: the outputs fire
    stimuli = _trials(np.random.default_rng(2), n=12)
    obs = Executor(m, cfg, VirtualChip(seed=0)).run(stimuli, duration_us=20.0, trials=len(stimuli))
    trial, neuron, t = obs.spike_events_us("out")
    assert trial.size > 20
    by_trial = obs.spikes_by_trial_us("out")
    assert len(by_trial) == len(stimuli)
    for b in range(len(stimuli)):
        n_b, t_b = obs.spikes_us("out", b)
        assert np.array_equal(neuron[trial == b], n_b) and np.array_equal(t[trial == b], t_b)
        assert np.array_equal(by_trial[b][0], n_b) and np.array_equal(by_trial[b][1], t_b)
