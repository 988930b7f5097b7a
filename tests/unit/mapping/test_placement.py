"""place_populations: contiguous blocks, pins, generators, errors."""

import numpy as np
import pytest

from pynn_brainscales2.errors import PlacementError
from pynn_brainscales2.mapping import (
    BACKGROUND,
    EXTERNAL,
    NetworkSpec,
    PopulationSpec,
    place_populations,
)


def _place(*pops):
    return place_populations(NetworkSpec(tuple(pops)))


def test_populations_get_contiguous_blocks_inside_one_hemisphere():
    p = _place(PopulationSpec("a", 200), PopulationSpec("b", 100), PopulationSpec("c", 50))
    assert p.circuits["a"].tolist() == list(range(200))
    assert p.circuits["b"].tolist() == list(range(256, 356))  # 56 left in hemisphere 0
    assert p.circuits["c"].tolist() == list(range(200, 250))  # first fit back in hemisphere 0
    assert p.n_used == 350


def test_population_larger_than_a_hemisphere_crosses_the_boundary():
    p = _place(PopulationSpec("big", 400))
    assert p.circuits["big"].tolist() == list(range(400))


def test_fragmented_chip_still_places_in_circuit_order():
    p = _place(
        PopulationSpec("x", 2, pinned=(100, 300)),
        PopulationSpec("fill", 505),
        PopulationSpec("rest", 5),
    )
    placed = np.concatenate([p.circuits[k] for k in ("x", "fill", "rest")])
    assert np.unique(placed).size == 512
    assert p.circuits["rest"].tolist() == [507, 508, 509, 510, 511]
    assert np.all(np.diff(p.circuits["fill"]) > 0)


def test_lookup_arrays_invert_the_placement():
    p = _place(
        PopulationSpec("ext", 3, EXTERNAL), PopulationSpec("a", 4), PopulationSpec("b", 2, pinned=(511, 0))
    )
    assert p.population_of_circuit[[0, 1, 4, 5, 511]].tolist() == [2, 1, 1, -1, 2]
    assert p.neuron_of_circuit[[0, 1, 4, 511]].tolist() == [1, 0, 3, 0]
    assert "ext" not in p.circuits  # external sources need no circuits
    assert p.circuits["b"].tolist() == [511, 0]
    with pytest.raises(ValueError):
        p.circuits["a"][0] = 7  # read-only


def test_background_sources_get_generators():
    p = _place(PopulationSpec("bg1", 3, BACKGROUND, pinned=(5, 6, 7)), PopulationSpec("bg2", 5, BACKGROUND))
    assert p.generators["bg1"].tolist() == [5, 6, 7]
    assert p.generators["bg2"].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(
        PlacementError, match=r"'bg3' needs 2 background generators; the chip has 8 \(7 in use"
    ):
        _place(PopulationSpec("bg", 7, BACKGROUND), PopulationSpec("bg3", 2, BACKGROUND))


def test_too_many_neurons_names_population_numbers_and_fix():
    with pytest.raises(PlacementError) as err:
        _place(PopulationSpec("small", 41), PopulationSpec("exc", 600))
    msg = str(err.value)
    assert "'exc' needs 600 neuron circuits; the chip has 512 (41 in use, 471 free)" in msg
    assert "Reduce its size" in msg


@pytest.mark.parametrize(
    ("pops", "match"),
    [
        ((PopulationSpec("a", 2, pinned=(1,)),), "has 2 neurons but pins 1"),
        ((PopulationSpec("a", 1, pinned=(512,)),), "pins neuron circuit 512; allowed 0..511"),
        ((PopulationSpec("a", 2, pinned=(3, 3)),), "twice"),
        ((PopulationSpec("a", 1, pinned=(3,)), PopulationSpec("b", 1, pinned=(3,))), "already pinned by 'a'"),
    ],
)
def test_bad_pins(pops, match):
    with pytest.raises(PlacementError, match=match):
        _place(*pops)


def test_bad_population_specs():
    with pytest.raises(PlacementError, match="size 0"):
        PopulationSpec("a", 0)
    with pytest.raises(PlacementError, match="kind 'neurons'"):
        PopulationSpec("a", 1, kind="neurons")
    with pytest.raises(PlacementError, match="cannot be pinned"):
        PopulationSpec("a", 1, EXTERNAL, pinned=(0,))
    with pytest.raises(PlacementError, match="allowed: an integer 1..64"):
        PopulationSpec("a", 1, circuits_per_neuron=65)
    with pytest.raises(PlacementError, match="allowed: an integer 1..1"):
        PopulationSpec("a", 1, EXTERNAL, circuits_per_neuron=2)
    with pytest.raises(PlacementError, match="unique"):
        NetworkSpec((PopulationSpec("a", 1), PopulationSpec("a", 2)))
