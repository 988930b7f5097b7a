"""End to end: a mapped network on the ideal chip delivers every connection, and only those.

Each source fires alone (external sources in their own trial, background generators and
on-chip neurons in their own run); spiking is off on every other circuit, so each
circuit's CADC trace shows the summed PSPs of exactly the synapses the source reaches.
On the ideal chip all circuits are identical and the response is linear in the weight:
its time integral must be proportional to the signed weight sum the spec prescribes,
and exactly zero where the spec has no connection.
"""

import numpy as np
import pytest

from cysim import Stimulus, VirtualChip
from cysim import constants as C
from pynn_brainscales2.mapping import (
    BACKGROUND,
    EXCITATORY,
    EXTERNAL,
    INHIBITORY,
    NetworkSpec,
    PopulationSpec,
    ProjectionSpec,
    map_network,
)


def _random_projection(rng, label, pre, post, n_pre, n_post, p, receptor, exclude_diagonal=False, avoid=None):
    """Random connections with weights 15..40 steps, none on the pairs of ``avoid``
    (so that excitation and inhibition never cancel on one pair)."""
    mask = rng.random((n_pre, n_post)) < p
    if exclude_diagonal:
        np.fill_diagonal(mask, False)
    if avoid is not None:
        mask[avoid.pre_idx, avoid.post_idx] = False
    i, j = np.nonzero(mask)
    return ProjectionSpec(label, pre, post, i, j, rng.integers(15, 41, i.size), receptor)


@pytest.fixture(scope="module")
def network():
    rng = np.random.default_rng(11)
    pops = (
        PopulationSpec("ext", 5, EXTERNAL),
        PopulationSpec("bg", 2, BACKGROUND),
        PopulationSpec("A", 6),
        PopulationSpec("B", 5, pinned=(254, 255, 256, 257, 400)),  # spans both hemispheres
    )
    ext_a_exc = _random_projection(rng, "ext->A exc", "ext", "A", 5, 6, 0.4, EXCITATORY)
    a_b_exc = _random_projection(rng, "A->B exc", "A", "B", 6, 5, 0.4, EXCITATORY)
    projs = (
        # a multapse (0 -> 2 twice) on top of the random connections
        ProjectionSpec(
            "ext->A exc",
            "ext",
            "A",
            np.r_[ext_a_exc.pre_idx, 0, 0],
            np.r_[ext_a_exc.post_idx, 2, 2],
            np.r_[ext_a_exc.steps, 20, 25],
            EXCITATORY,
        ),
        _random_projection(rng, "ext->A inh", "ext", "A", 5, 6, 0.3, INHIBITORY, avoid=ext_a_exc),
        # 100 steps: split over two rows; source 4 reaches both hemispheres
        ProjectionSpec("ext->B", "ext", "B", [4, 4, 1], [1, 2, 4], [100, 30, 35], EXCITATORY),
        a_b_exc,
        _random_projection(rng, "A->B inh", "A", "B", 6, 5, 0.3, INHIBITORY, avoid=a_b_exc),
        _random_projection(rng, "A->A", "A", "A", 6, 6, 0.4, EXCITATORY, exclude_diagonal=True),
        _random_projection(rng, "B->A", "B", "A", 5, 6, 0.5, INHIBITORY),
        ProjectionSpec("bg->B", "bg", "B", [0, 1, 1], [0, 3, 4], [40, 25, 30], EXCITATORY),
    )
    spec = NetworkSpec(pops, projs)
    return spec, map_network(spec)


def _expected(spec, mapping, population):
    """Signed summed weight [steps] of each source of ``population`` onto every circuit."""
    size = spec.population(population).size
    out = np.zeros((size, C.N_CIRCUITS))
    for proj in spec.projections:
        if proj.pre != population:
            continue
        sign = -1.0 if proj.receptor == INHIBITORY else 1.0
        circuits = mapping.circuits(proj.post)[proj.post_idx]
        np.add.at(out, (proj.pre_idx, circuits), sign * proj.steps)
    return out


def _response(result):
    """Time integral of every circuit's CADC deviation from its first sample, per trial."""
    cadc = result.cadc.astype(float)
    return (cadc - cadc[:, :1, :]).sum(axis=1)


def _check(response, expected, what, skip=None):
    connected = expected != 0
    if skip is not None:
        connected[skip] = False
        response = response.copy()
        response[skip] = 0.0
    silent = np.flatnonzero(~connected & (response != 0))
    assert silent.size == 0, f"{what}: circuits {silent} respond without a connection"
    ratio = response[connected] / expected[connected]
    assert np.all(ratio > 0), f"{what}: wrong sign on circuits {np.flatnonzero(connected)[ratio <= 0]}"
    assert np.allclose(ratio, np.median(ratio), rtol=0.08), f"{what}: response not proportional {ratio}"


def test_every_external_source_reaches_exactly_its_targets(network):
    spec, mapping = network
    n = spec.population("ext").size
    per_trial = [mapping.stimulus_events("ext", [k], [2.0]) for k in range(n)]
    result = VirtualChip.ideal().run(mapping.config, Stimulus.from_trials(per_trial), 30.0, trials=n)
    expected = _expected(spec, mapping, "ext")
    response = _response(result)
    assert np.any(mapping.routing.sources["ext"].bus_mask == 0b0001_0001)  # both hemispheres
    for k in range(n):
        assert np.count_nonzero(expected[k]) > 0
        _check(response[k], expected[k], f"external source {k}")


def test_every_background_generator_reaches_exactly_its_targets(network):
    spec, mapping = network
    expected = _expected(spec, mapping, "bg")
    for k, generator in enumerate(mapping.placement.generators["bg"]):
        cfg = mapping.config
        cfg.bg_mode[generator] = C.BG_REGULAR
        cfg.bg_period_cycles[generator] = 1250  # one event at 5 us
        result = VirtualChip.ideal().run(cfg, duration_us=9.9)
        _check(_response(result)[0], expected[k], f"background source {k}")


@pytest.mark.parametrize("population", ["A", "B"])
def test_every_onchip_neuron_reaches_exactly_its_targets(network, population):
    spec, mapping = network
    expected = _expected(spec, mapping, population)
    chip = VirtualChip.ideal()
    for k, circuit in enumerate(mapping.circuits(population)):
        cfg = mapping.config
        cfg.enable_spiking[circuit] = True
        cfg.enable_bias_current[circuit] = True  # drives the source to threshold once
        cfg.i_bias_const[circuit] = 1022
        cfg.refractory_time[circuit] = 1022
        result = chip.run(cfg, duration_us=30.0)
        assert result.spike_counts()[0].tolist() == [int(c == circuit) for c in range(C.N_CIRCUITS)]
        skip = np.zeros(C.N_CIRCUITS, dtype=bool)
        skip[circuit] = True
        if np.count_nonzero(expected[k]):
            _check(_response(result)[0], expected[k], f"{population} neuron {k}", skip=skip)
        else:
            assert not cfg.enable_output[circuit]
            assert np.all(_response(result)[0][~skip] == 0)
