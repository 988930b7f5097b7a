"""Mapping of logical (multi-compartment) neurons: placement on neighbouring circuits,
inputs spread over the compartments' columns, automatic choice of ``c`` and its errors."""

from collections import defaultdict

import numpy as np
import pytest

from cysim import ChipConfig, Stimulus, VirtualChip, compartment_runs
from cysim import constants as C
from pynn_brainscales2.errors import PlacementError, RoutingError
from pynn_brainscales2.mapping import (
    EXTERNAL,
    INHIBITORY,
    NetworkSpec,
    PopulationSpec,
    ProjectionSpec,
    compartments_needed,
    map_network,
    source_compartments,
)
from tests.unit.mapping.conftest import delivered


def _dense(n_in, n_out, c=None, steps=20, signed=True, seed=0):
    rng = np.random.default_rng(seed)
    pre = np.repeat(np.arange(n_in), n_out)
    post = np.tile(np.arange(n_out), n_in)
    w = rng.integers(1, 64, pre.size) if steps is None else np.full(pre.size, steps)
    projs = [ProjectionSpec("exc", "in", "out", pre, post, w)]
    if signed:
        projs.append(ProjectionSpec("inh", "in", "out", pre, post, w[::-1].copy(), receptor=INHIBITORY))
    return NetworkSpec(
        (PopulationSpec("in", n_in, EXTERNAL), PopulationSpec("out", n_out, circuits_per_neuron=c)),
        tuple(projs),
    )


def _expected(spec, mapping):
    out = defaultdict(int)
    comp = mapping.compartments("out")
    for proj in spec.projections:
        o = source_compartments(spec, proj.label, comp.shape[1])
        circuits = comp[proj.post_idx, o]
        for i, c, s in zip(proj.pre_idx.tolist(), circuits.tolist(), proj.steps.tolist(), strict=True):
            out[(proj.pre, i, c, proj.receptor == INHIBITORY)] += s
    return dict(out)


def test_compartments_needed():
    assert [compartments_needed(n) for n in (1, 128, 129, 256, 484, 8192)] == [1, 1, 2, 2, 4, 64]
    assert compartments_needed(484, signed=False) == 2
    assert compartments_needed(100, rows_per_weight=2) == 2
    with pytest.raises(RoutingError, match="fan_in >= 0"):
        compartments_needed(-1)


def test_484_to_128_signed_all_to_all_fits_one_chip_with_four_circuits_per_neuron():
    spec = _dense(484, 128, steps=None)
    m = map_network(spec)
    comp = m.compartments("out")
    assert m.circuits_per_neuron("out") == 4 and comp.shape == (128, 4)
    assert np.array_equal(np.sort(comp.ravel()), np.arange(512))  # the whole chip
    assert np.all(comp[:, 0] // 256 == comp[:, -1] // 256)  # one hemisphere per neuron
    assert np.all(np.diff(comp, axis=1) == 1)  # neighbours
    assert np.array_equal(m.circuits("out"), comp[:, 0])
    cfg = m.config
    runs = compartment_runs(cfg.connect_membrane_right)
    assert sorted(tuple(r) for r in runs) == sorted(tuple(r) for r in comp.tolist())
    assert np.array_equal(cfg.array("connect_membrane_right"), m.compartment_switches)
    # every column holds 121 inputs of each sign: 242 of its 256 rows
    w = cfg.array("synapse_weights")
    per_column = (w > 0).sum(axis=1).reshape(-1)
    assert per_column.max() <= C.N_ROWS and per_column.min() == 242
    # the chip delivers every connection, into the compartment the round-robin rule names
    assert delivered(spec, m) == _expected(spec, m)
    assert np.array_equal(m.read_weights(cfg, "exc"), spec.projection("exc").steps)


def test_256_to_10_signed_all_to_all_takes_two_circuits_per_neuron():
    spec = _dense(256, 10)
    m = map_network(spec)
    assert m.compartments("out").shape == (10, 2)
    assert (m.config.array("synapse_weights") > 0).sum(axis=1).max() == 256
    assert delivered(spec, m) == _expected(spec, m)


def test_explicit_circuits_per_neuron_wins_and_too_small_is_refused():
    m = map_network(_dense(100, 4, c=3))
    assert m.compartments("out").shape == (4, 3)
    assert delivered(_dense(100, 4, c=3), m) == _expected(_dense(100, 4, c=3), m)
    with pytest.raises(RoutingError) as err:
        map_network(_dense(484, 8, c=2))
    msg = str(err.value)
    assert "Population 'out' has circuits_per_neuron=2" in msg and "needs 968 synapse rows" in msg
    assert "a column has 256 rows" in msg and "Set circuits_per_neuron=4" in msg


def test_more_than_64_circuits_per_neuron_is_refused():
    # 4100 inputs of 253 steps (5 rows each): 20500 rows, 81 columns of 256
    with pytest.raises(RoutingError, match=r"needs more than 64 circuits per neuron \(20500 synapse rows"):
        map_network(_dense(4100, 1, signed=False, steps=253))


def test_more_circuits_than_the_chip_has_is_refused():
    with pytest.raises(PlacementError) as err:
        map_network(_dense(300, 200))  # 3 circuits per neuron: 600 circuits
    msg = str(err.value)
    assert "Population 'out' needs 200 logical neurons of 3 circuits (600 neuron circuits" in msg
    assert "the chip has 512" in msg and "partitioning" in msg


def test_logical_neurons_placed_before_single_circuits_and_pins():
    spec = NetworkSpec(
        (
            PopulationSpec("in", 200, EXTERNAL),
            PopulationSpec("single", 10),
            PopulationSpec("big", 3, circuits_per_neuron=4),
            PopulationSpec("pinned", 2, circuits_per_neuron=2, pinned=(254, 300)),
        ),
        (ProjectionSpec("p", "in", "single", np.arange(200), np.zeros(200, int), np.ones(200, int)),),
    )
    m = map_network(spec)
    assert m.compartments("pinned").tolist() == [[254, 255], [300, 301]]
    assert m.compartments("big").tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert m.circuits("single").tolist() == list(range(12, 22))
    pop, neuron = m.neurons_of_circuits([9, 255, 12])
    assert pop.tolist() == [2, 3, 1] and neuron.tolist() == [2, 0, 0]
    with pytest.raises(PlacementError, match="crosses the end of hemisphere 0"):
        map_network(NetworkSpec((PopulationSpec("x", 1, circuits_per_neuron=4, pinned=(254,)),)))


def _run_small(c, engine="compiled", seed=4):
    rng = np.random.default_rng(seed)
    n_in, n_out = 200, 3
    pre = np.repeat(np.arange(n_in), n_out)
    post = np.tile(np.arange(n_out), n_in)
    steps = rng.integers(0, 20, pre.size)
    times = np.sort(rng.uniform(1.0, 60.0, 300))
    sources = rng.integers(0, n_in, times.size)
    spec = NetworkSpec(
        (PopulationSpec("in", n_in, EXTERNAL), PopulationSpec("out", n_out, circuits_per_neuron=c)),
        (ProjectionSpec("w", "in", "out", pre, post, steps),),
    )
    m = map_network(spec)
    cfg = m.config
    cfg.v_leak = 300
    cfg.v_reset = 280
    cfg.v_threshold = 360
    cfg.i_bias_leak = 520
    cfg.i_bias_syn_exc = 420
    cfg.refractory_time = 30
    cfg.i_syn_gm_exc = 45 * c  # c times the gain per circuit: the same input to the shared membrane
    cfg.enable_spiking[m.circuits("out")] = True
    t, labels = m.stimulus_events("in", sources, times)
    res = VirtualChip.ideal(dt_us=0.01, engine=engine).run(cfg, Stimulus(t, labels), duration_us=70.0)
    circuits, spike_t = res.spikes(0)
    assert set(circuits.tolist()) <= set(m.circuits("out").tolist())
    neuron = m.neurons_of_circuits(circuits)[1]
    return [np.sort(spike_t[neuron == k]) for k in range(n_out)]


def test_mapped_logical_neurons_agree_with_the_reference_engine():
    """200 excitatory inputs -> 3 logical neurons of 4 circuits (explicit), ideal chip: the
    compiled engine and the independent NumPy reference give the same spikes."""
    a, b = _run_small(4), _run_small(4, engine="reference")
    assert sum(x.size for x in a) >= 30
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_mapped_logical_neurons_spike_like_single_circuit_neurons():
    """The same network on single circuits (fan-in 200 of one sign fits one column) and on
    logical neurons of 4 circuits with 4 times the gain per circuit: the mean of the four
    compartments then follows the single membrane exactly, the spiking circuit only up to
    the coupling transients. Spike counts agree and first spikes agree within 0.1 us; later
    spikes of the logical neurons come earlier by a drift of 1-2 % of an interval (measured:
    -0.03 to -0.07 us per interval, 0.45 us after 20 spikes): a transient that lifts the
    spiking circuit above the mean reaches the threshold before the mean would, while one
    that lowers it does not delay the crossing as much."""
    single, logical = _run_small(1), _run_small(4)
    assert sum(x.size for x in single) >= 30  # measured: 62
    for a, b in zip(single, logical, strict=True):
        assert a.size == b.size
        assert abs(a[0] - b[0]) <= 0.1
        d = b - a
        assert np.all(d <= 0.01)  # earlier, never later
        assert np.all(np.diff(a).mean() * 0.03 * np.arange(1, a.size + 1) >= -d)


def test_default_specs_still_map_to_one_circuit_per_neuron():
    spec = _dense(100, 20)
    m = map_network(spec)
    assert m.compartments("out").shape == (20, 1)
    assert not m.config.array("connect_membrane_right").any()
    assert ChipConfig().array("connect_membrane_right").sum() == 0
