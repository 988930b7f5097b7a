"""route_projections: addresses, rows, labels, limits and errors."""

import numpy as np
import pytest

from cysim import constants as C
from pynn_brainscales2.errors import RoutingError
from pynn_brainscales2.mapping import (
    BACKGROUND,
    EXTERNAL,
    INHIBITORY,
    NetworkSpec,
    PopulationSpec,
    ProjectionSpec,
    map_network,
    place_populations,
    route_projections,
)
from tests.unit.mapping.conftest import delivered, expected_delivery


def _route(spec):
    return route_projections(spec, place_populations(spec))


def _all_to_all(n_pre, n_post, pre_kind=EXTERNAL, steps=None, seed=0):
    i, j = (a.ravel() for a in np.meshgrid(np.arange(n_pre), np.arange(n_post), indexing="ij"))
    w = np.random.default_rng(seed).integers(1, 64, i.size) if steps is None else np.full(i.size, steps)
    return NetworkSpec(
        (PopulationSpec("pre", n_pre, pre_kind), PopulationSpec("post", n_post)),
        (ProjectionSpec("pre->post", "pre", "post", i, j, w),),
    )


def _check_invariants(spec, routing):
    """One piece per synapse; rows' modes match receptors; labels match source addresses."""
    seen = set()
    for proj in spec.projections:
        syn = routing.synapses[proj.label]
        coords = list(zip(syn.hemisphere.tolist(), syn.row.tolist(), syn.column.tolist(), strict=True))
        assert not seen.intersection(coords)
        seen.update(coords)
        assert len(set(coords)) == len(coords)
        mode = C.ROW_INH if proj.receptor == INHIBITORY else C.ROW_EXC
        assert np.all(routing.row_modes[syn.hemisphere, syn.row] == mode)
        address = routing.sources[proj.pre].address[proj.pre_idx[syn.connection]]
        assert np.array_equal(syn.label, address & 63)
        assert np.array_equal(routing.driver_row_select[syn.hemisphere, syn.row // 2], address >> 6)
        bus = syn.hemisphere * 4 + (syn.row // 2) % 4
        mask = routing.sources[proj.pre].bus_mask[proj.pre_idx[syn.connection]]
        assert np.all((mask >> bus) & 1)
        assert np.array_equal(np.bincount(syn.connection, weights=syn.steps), proj.steps)


def test_balanced_network_delivers_exactly_the_spec(balanced):
    mapping = map_network(balanced)
    _check_invariants(balanced, mapping.routing)
    assert delivered(balanced, mapping) == expected_delivery(balanced, mapping)
    # sources bundled 64 per address: a sparse network needs more rows than its fan-in,
    # but not wastefully more
    fan_in = np.bincount(
        np.concatenate([mapping.circuits(p.post)[p.post_idx] for p in balanced.projections]), minlength=512
    )
    for h in range(2):
        assert fan_in[h * 256 : (h + 1) * 256].max() <= mapping.routing.rows_used()[h] <= 256


def test_all_to_all_256_fills_all_rows_of_one_hemisphere():
    spec = _all_to_all(256, 256)
    routing = _route(spec)
    assert routing.rows_used().tolist() == [256, 0]
    assert np.all(routing.row_modes[0] == C.ROW_EXC)
    assert sorted(routing.group_padi_bus.tolist()) == [0, 1, 2, 3]  # one bus per 64 sources
    mapping = map_network(spec)
    assert delivered(spec, mapping) == expected_delivery(spec, mapping)


def test_onchip_all_to_all_between_hemispheres():
    spec = _all_to_all(256, 256, pre_kind="neuron")
    mapping = map_network(spec)
    assert mapping.routing.rows_used().tolist() == [0, 256]
    assert set(mapping.routing.sources["pre"].bus_mask.tolist()) == {1 << 4, 1 << 5, 1 << 6, 1 << 7}
    assert delivered(spec, mapping) == expected_delivery(spec, mapping)


def test_large_weights_and_multapses_take_one_row_each():
    spec = NetworkSpec(
        (PopulationSpec("in", 2, EXTERNAL), PopulationSpec("out", 3)),
        (
            ProjectionSpec("big", "in", "out", [0, 0, 1], [0, 1, 1], [123, 190, 63]),
            ProjectionSpec("multi", "in", "out", [1, 1, 1], [2, 2, 2], [5, 6, 7]),
        ),
    )
    routing = _route(spec)
    big = routing.synapses["big"]
    assert big.n_pieces.tolist() == [2, 4, 1]
    assert big.steps.tolist() == [63, 60, 63, 63, 63, 1, 63]
    assert routing.synapses["multi"].n_pieces.tolist() == [1, 1, 1]
    assert len(set(routing.synapses["multi"].row.tolist())) == 3
    assert routing.rows_used().tolist() == [5, 0]  # column 1 receives 4 + 1 pieces
    assert np.count_nonzero(routing.driver_group[0] >= 0) == 3  # two rows per driver
    _check_invariants(spec, routing)
    mapping = map_network(spec)
    assert delivered(spec, mapping) == expected_delivery(spec, mapping)


def test_exc_and_inh_from_one_group_share_drivers_but_not_rows():
    spec = NetworkSpec(
        (PopulationSpec("in", 2, EXTERNAL), PopulationSpec("out", 1)),
        (
            ProjectionSpec("e", "in", "out", [0], [0], [10]),
            ProjectionSpec("i", "in", "out", [1], [0], [20], INHIBITORY),
        ),
    )
    routing = _route(spec)
    assert routing.row_modes[0, :2].tolist() == [C.ROW_EXC, C.ROW_INH]
    assert routing.driver_group[0].tolist().count(0) == 1


def test_max_steps_reserves_rows():
    spec = NetworkSpec(
        (PopulationSpec("in", 1, EXTERNAL), PopulationSpec("out", 1)),
        (ProjectionSpec("p", "in", "out", [0], [0], [3], max_steps=200),),
    )
    syn = _route(spec).synapses["p"]
    assert syn.n_pieces.tolist() == [4]
    assert syn.steps.tolist() == [3, 0, 0, 0]


def test_sources_without_targets_get_no_address():
    spec = NetworkSpec(
        (PopulationSpec("in", 3, EXTERNAL), PopulationSpec("out", 2), PopulationSpec("bg", 2, BACKGROUND)),
        (ProjectionSpec("p", "in", "out", [2], [1], [3]), ProjectionSpec("b", "bg", "out", [1], [0], [4])),
    )
    routing = _route(spec)
    assert routing.sources["in"].address[:2].tolist() == [-1, -1]
    assert routing.sources["in"].bus_mask.tolist() == [0, 0, 1]
    assert routing.sources["out"].bus_mask.tolist() == [0, 0]
    assert routing.sources["bg"].bus_mask.tolist() == [0, 1]


def test_empty_network_routes_to_nothing():
    routing = _route(NetworkSpec((PopulationSpec("a", 3),)))
    assert routing.rows_used().tolist() == [0, 0] and routing.n_groups == 0


def test_fan_in_above_256_rows_names_neuron_projection_and_numbers():
    spec = NetworkSpec(
        (
            PopulationSpec("in", 200, EXTERNAL),
            PopulationSpec("more", 100, EXTERNAL),
            PopulationSpec("out", 1),
        ),
        (
            ProjectionSpec("in->out", "in", "out", np.arange(200), np.zeros(200), np.full(200, 10)),
            ProjectionSpec("more->out", "more", "out", np.arange(100), np.zeros(100), np.full(100, 10)),
        ),
    )
    # one circuit per neuron forced at placement: routing names the column and the rows
    with pytest.raises(RoutingError) as err:
        route_projections(spec, place_populations(spec, circuits_per_neuron={"out": 1}))
    msg = str(err.value)
    assert "circuit 0 (hemisphere 0) needs 300 synapse rows ('in->out' 200, 'more->out' 100" in msg
    assert "a hemisphere has 256" in msg and "Reduce the number of connections" in msg
    assert "raise `circuits_per_neuron`" in msg
    # an explicit circuits_per_neuron=1 is refused before routing, with the fix
    explicit = NetworkSpec(
        (spec.populations[0], spec.populations[1], PopulationSpec("out", 1, circuits_per_neuron=1)),
        spec.projections,
    )
    with pytest.raises(RoutingError) as err:
        _route(explicit)
    msg = str(err.value)
    assert "Population 'out' has circuits_per_neuron=1" in msg and "needs 300 synapse rows" in msg
    assert "a column has 256 rows" in msg and "Set circuits_per_neuron=2" in msg
    # left to the mapping, the neuron gets two circuits; 150 sources per column, in rows that
    # carry one source (label) to compartment 0 and another to compartment 1
    assert _route(spec).rows_used().tolist() == [150, 0]  # rows shared by the two columns


def test_one_source_cannot_use_more_than_one_padi_bus():
    spec = NetworkSpec(
        (PopulationSpec("in", 1, EXTERNAL), PopulationSpec("out", 1)),
        (ProjectionSpec("huge", "in", "out", [0], [0], [63 * 65]),),
    )
    with pytest.raises(
        RoutingError,
        match=r"needs 65 synapse rows \('huge' 65.*at most 64 rows \(the 32 drivers of one PADI bus\)",
    ):
        _route(spec)


def test_too_many_rows_in_a_hemisphere_names_projections():
    rng = np.random.default_rng(1)
    i, j = np.nonzero(rng.random((2000, 200)) < 0.1)  # fan-in ~200 per neuron, 32 source groups
    spec = NetworkSpec(
        (PopulationSpec("in", 2000, EXTERNAL), PopulationSpec("out", 200)),
        (ProjectionSpec("in->out", "in", "out", i, j, np.ones(i.size, dtype=int)),),
    )
    with pytest.raises(RoutingError) as err:
        _route(spec)
    msg = str(err.value)
    assert "Projections into hemisphere 0 need" in msg and "has 256 rows" in msg
    assert "'in->out' up to" in msg and "Fix:" in msg


def test_too_many_sources_for_the_address_space():
    n = 4 * 32 * 64 + 1
    spec = NetworkSpec(
        (PopulationSpec("in", n, EXTERNAL), PopulationSpec("out", 512)),
        (ProjectionSpec("p", "in", "out", np.arange(n), np.arange(n) % 512, np.ones(n, dtype=int)),),
    )
    with pytest.raises(RoutingError, match=f"{n} distinct sources; the chip can address 8192"):
        _route(spec)


@pytest.mark.parametrize(
    ("proj", "match"),
    [
        (ProjectionSpec("p", "nope", "out", [0], [0], [1]), "pre population 'nope' is unknown"),
        (ProjectionSpec("p", "out", "in", [0], [0], [1]), "only on-chip neuron populations receive"),
        (ProjectionSpec("p", "in", "out", [0], [5], [1]), "post index 5 is out of range .* size 2"),
    ],
)
def test_inconsistent_projections(proj, match):
    with pytest.raises(RoutingError, match=match):
        NetworkSpec((PopulationSpec("in", 1, EXTERNAL), PopulationSpec("out", 2)), (proj,))


def test_bad_projection_data():
    with pytest.raises(RoutingError, match="weight of -1 steps"):
        ProjectionSpec("p", "a", "b", [0], [0], [-1])
    with pytest.raises(RoutingError, match="one of each per connection"):
        ProjectionSpec("p", "a", "b", [0, 1], [0], [1, 1])
    with pytest.raises(RoutingError, match="must hold integers"):
        ProjectionSpec("p", "a", "b", [0], [0], [1.5])
    with pytest.raises(RoutingError, match="receptor 'exc'"):
        ProjectionSpec("p", "a", "b", [0], [0], [1], receptor="exc")
