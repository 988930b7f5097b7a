"""setup(partition=True): feed-forward PyNN networks that do not fit one chip run as
sequential partitions; Neo data look as usual.

The reference is the same network in one run on an ideal chip with ``dt_us = 0.008`` (the
FPGA tick: a replayed spike reaches its synapses in the step the on-chip route would), both
projections with the same weights (the same calibration targets on every used circuit), so
the partitioned run must agree exactly. ``max_circuits=12`` forces the 20-neuron network
into two runs.
"""

import numpy as np
import pytest

import pynn_brainscales2 as sim
from pynn_brainscales2.errors import PlacementError
from pynn_brainscales2.partitioned import PartitionedCompiled

CELL = dict(
    tau_m=10.0, tau_syn_E=5.0, tau_syn_I=5.0, v_rest=-65.0, v_reset=-65.0, v_thresh=-55.0, tau_refrac=2.0
)


def _network(**setup):
    sim.setup(chip=sim.VirtualChip.ideal(dt_us=0.008), **setup)
    src = sim.Population(
        4, sim.SpikeSourceArray(spike_times=[[5.0, 30.0], [8.0, 31.0], [12.0], [20.0, 21.0]]), label="src"
    )
    a = sim.Population(12, sim.IF_curr_exp(**CELL), label="a")
    b = sim.Population(8, sim.IF_curr_exp(**CELL), label="b")
    rng = np.random.default_rng(0)
    sim.Projection(
        src, a, sim.FixedProbabilityConnector(0.7, rng=sim.NumpyRNG(seed=1)), sim.StaticSynapse(weight=2.5)
    )
    sim.Projection(
        a, b, sim.FixedProbabilityConnector(0.5, rng=sim.NumpyRNG(seed=2)), sim.StaticSynapse(weight=2.5)
    )
    del rng
    a.record("spikes")
    b.record(["spikes", "v"], sampling_interval=2.0)
    return a, b


def _data(pops):
    out = []
    for p in pops:
        seg = p.get_data().segments[0]
        out.append([np.asarray(st.magnitude) for st in seg.spiketrains])
        v = seg.filter(name="v")
        out.append(np.asarray(v[0].magnitude) if v else None)
    return out


@pytest.fixture(scope="module")
def whole_and_parts():
    pops = _network()
    sim.run(50.0)
    whole = _data(pops)
    sim.end()
    pops = _network(partition=True, max_circuits=12)
    sim.run(50.0)
    compiled = sim.simulator.state.compiled
    parts = _data(pops)
    sim.end()
    return whole, parts, compiled


def test_partitioned_network_runs_in_two_runs(whole_and_parts):
    _, _, compiled = whole_and_parts
    assert isinstance(compiled, PartitionedCompiled)
    assert [len(r.keys) for r in compiled.runs] == [1, 1]


def test_partitioned_neo_data_equal_the_whole_network(whole_and_parts):
    whole, parts, _ = whole_and_parts
    spikes_a, _, spikes_b, v_b = whole
    assert sum(s.size for s in spikes_a) > 10 and sum(s.size for s in spikes_b) > 3
    p_a, _, p_b, p_v = parts
    for w, p in zip(spikes_a + spikes_b, p_a + p_b, strict=True):
        np.testing.assert_array_equal(p, w)
    assert p_v.shape == v_b.shape
    np.testing.assert_array_equal(p_v, v_b)


def test_without_partition_the_error_names_the_option():
    _network(max_circuits=12)
    with pytest.raises(PlacementError, match=r"feed-forward: setup\(partition=True\)"):
        sim.run(10.0)
    sim.end()


def test_recurrent_network_with_partition_is_refused():
    a, b = _network(partition=True, max_circuits=12)
    sim.Projection(b, a, sim.AllToAllConnector(), sim.StaticSynapse(weight=0.5))
    with pytest.raises(PlacementError) as err:
        sim.run(10.0)
    sim.end()
    msg = str(err.value)
    assert "it is recurrent:" in msg and "'a' -> 'b'" in msg and "'b' -> 'a'" in msg
    assert "passes spikes forward only" in msg


def test_setup_checks_the_options():
    with pytest.raises(sim.errors.SetupError, match="partition = 'yes'"):
        sim.setup(partition="yes")
    with pytest.raises(sim.errors.SetupError, match="max_circuits = 0"):
        sim.setup(max_circuits=0)
