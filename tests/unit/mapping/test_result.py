"""map_network and MappingResult: config, lookups, weight updates without re-routing."""

import dataclasses

import numpy as np
import pytest

from cysim import ChipConfig
from cysim import constants as C
from pynn_brainscales2.errors import RoutingError
from pynn_brainscales2.mapping import (
    EXTERNAL,
    INHIBITORY,
    NetworkSpec,
    PopulationSpec,
    ProjectionSpec,
    map_network,
)
from tests.unit.mapping.conftest import delivered, expected_delivery


@pytest.fixture(scope="module")
def small():
    spec = NetworkSpec(
        (
            PopulationSpec("in", 4, EXTERNAL),
            PopulationSpec("a", 3),
            PopulationSpec("b", 2, pinned=(300, 10)),
        ),
        (
            ProjectionSpec("in->a", "in", "a", [0, 1, 2, 3], [0, 1, 2, 2], [10, 20, 30, 100]),
            ProjectionSpec("in->b", "in", "b", [0, 3], [0, 1], [5, 6], max_steps=126),
            ProjectionSpec("a->b", "a", "b", [0, 1], [0, 0], [7, 8], INHIBITORY),
        ),
    )
    return spec, map_network(spec)


def test_config_holds_routing_and_outputs_only(small):
    spec, m = small
    cfg = m.config
    default = ChipConfig()
    for name in ("v_leak", "v_threshold", "i_bias_leak", "enable_spiking", "bg_mode"):
        assert np.array_equal(cfg.array(name), default.array(name))
    a = m.circuits("a")
    assert cfg.enable_output[a].tolist() == [True, True, False]  # a[2] projects nowhere
    assert cfg.output_buses[a[0]] == 1 << (4 + m.routing.group_padi_bus[0])  # to b[0] on hemisphere 1
    assert int(np.count_nonzero(cfg.array("driver_enable"))) == np.count_nonzero(m.routing.driver_group >= 0)
    assert m.config is not m.config and m.config == cfg  # fresh copies
    assert delivered(spec, m) == expected_delivery(spec, m)


def test_write_routing_into_a_calibrated_config_keeps_capmem(small):
    _, m = small
    calibrated = ChipConfig()
    calibrated.v_leak = 321
    calibrated.enable_spiking = True
    out = m.write_routing(calibrated)
    assert out is calibrated
    assert np.all(calibrated.array("v_leak") == 321) and np.all(calibrated.array("enable_spiking"))
    assert np.array_equal(calibrated.array("synapse_weights"), m.config.array("synapse_weights"))


def test_lookups_between_model_and_chip(small):
    spec, m = small
    assert m.circuits("b").tolist() == [300, 10]
    pops, idx = m.neurons_of_circuits([300, 10, 1, 200])
    assert pops.tolist() == [2, 2, 1, -1] and idx.tolist() == [0, 1, 1, -1]
    syn = m.synapses("in->a")
    h, r, c = syn.synapses_of(3)  # 100 steps: two rows onto a[2]
    assert h.tolist() == [0, 0] and c.tolist() == [2, 2] and len(set(r.tolist())) == 2
    assert m.synapse_projection[h, r, c].tolist() == [0, 0]
    assert m.synapse_connection[h, r, c].tolist() == [3, 3]
    assert np.count_nonzero(m.synapse_projection >= 0) == sum(
        m.synapses(p.label).row.size for p in spec.projections
    )
    with pytest.raises(KeyError, match="known: a, b"):
        m.circuits("in")


def test_stimulus_events_expand_over_buses(small):
    _, m = small
    idx, labels = m.source_labels("in")
    assert sorted(idx.tolist()) == [0, 0, 1, 2, 3]  # source 0 reaches both hemispheres
    buses = labels >> 11
    assert sorted((buses[idx == 0] // 4).tolist()) == [0, 1]
    times, ev = m.stimulus_events("in", [0, 1, 3], [1.0, 2.0, 3.0])
    assert times.tolist() == [1.0, 1.0, 2.0, 3.0]
    assert sorted(ev[:2].tolist()) == sorted(labels[idx == 0].tolist())
    assert ev[2:].tolist() == [labels[idx == 1][0], labels[idx == 3][0]]
    with pytest.raises(RoutingError, match=r"0..3\) per spike time; got 1 indices \(range 4..4\)"):
        m.stimulus_events("in", [4], [1.0])
    with pytest.raises(RoutingError, match="not external"):
        m.stimulus_events("a", [0], [1.0])


def test_with_weights_rewrites_without_rerouting(small):
    spec, m = small
    new = m.with_weights("in->a", [63, 0, 1, 126])
    assert m.read_weights(new, "in->a").tolist() == [63, 0, 1, 126]
    assert m.read_weights(m.config, "in->a").tolist() == [10, 20, 30, 100]  # original untouched
    assert m.read_weights(new, "a->b").tolist() == [7, 8]
    new = m.with_weights("in->b", [126, 0], config=new)  # rows reserved by max_steps
    assert m.read_weights(new, "in->b").tolist() == [126, 0]
    assert m.read_weights(new, "in->a").tolist() == [63, 0, 1, 126]
    changed = np.argwhere(new.array("synapse_weights") != m.config.array("synapse_weights"))
    assert np.all(m.synapse_projection[tuple(changed.T)] >= 0)  # nothing outside the routed synapses
    for name in ("synapse_labels", "row_modes", "driver_row_select", "output_address"):
        assert np.array_equal(new.array(name), m.config.array(name))


def test_with_weights_rejects_what_the_rows_cannot_hold(small):
    _, m = small
    with pytest.raises(
        RoutingError, match=r"connection 0 gets 64 steps; its synapses hold 0..63 .*max_steps"
    ):
        m.with_weights("in->a", [64, 0, 0, 0])
    with pytest.raises(RoutingError, match="give 4 integer weights"):
        m.with_weights("in->a", [1, 2])
    with pytest.raises(RoutingError, match="give 4 integer weights"):
        m.with_weights("in->a", [1.5, 2, 3, 4])
    assert m.read_weights(m.with_weights("in->a", np.array([1.0, 2, 3, 4])), "in->a").tolist() == [1, 2, 3, 4]
    cfg = m.config
    m.write_weights(cfg, "a->b", [0, 63])
    assert m.read_weights(cfg, "a->b").tolist() == [0, 63]


def test_mapping_result_is_frozen(small):
    _, m = small
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.spec = None
    with pytest.raises(ValueError):
        m.routing.synapse_weights[0, 0, 0] = 1
    assert m.routing.synapse_weights.shape == (C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS)


def test_balanced_and_all_to_all_networks_map(balanced):
    """Performance sanity (no timing asserted): the issue's reference networks map."""
    m = map_network(balanced)
    assert m.placement.n_used == 500
    steps = [
        np.random.default_rng(k).integers(0, 64, p.n_connections) for k, p in enumerate(balanced.projections)
    ]
    cfg = m.config
    for proj, s in zip(balanced.projections, steps, strict=True):
        m.write_weights(cfg, proj.label, s)
    for proj, s in zip(balanced.projections, steps, strict=True):
        assert np.array_equal(m.read_weights(cfg, proj.label), s)
