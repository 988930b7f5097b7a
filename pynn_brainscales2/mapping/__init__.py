"""Mapping: a network description in, placement, routing and a ChipConfig out.

Pure functions over frozen dataclasses, no global state::

    NetworkSpec --place_populations--> Placement --route_projections--> Routing
    NetworkSpec --map_network--> MappingResult (placement + routing + ChipConfig + lookups)

Hooks for later work: ``PopulationSpec.circuits_per_neuron`` (multi-compartment neurons
that raise fan-in), and partitioning, which would split a :class:`NetworkSpec` into
single-chip specs whose cut populations become ``"external"`` sources, each mapped with
:func:`map_network`.
"""

from .placement import Placement, place_populations
from .result import MappingResult, map_network
from .routing import Routing, SourceRoute, SynapseMap, route_projections
from .spec import (
    BACKGROUND,
    EXCITATORY,
    EXTERNAL,
    INHIBITORY,
    NEURON,
    NetworkSpec,
    PopulationSpec,
    ProjectionSpec,
)

__all__ = [
    "BACKGROUND",
    "EXCITATORY",
    "EXTERNAL",
    "INHIBITORY",
    "NEURON",
    "MappingResult",
    "NetworkSpec",
    "Placement",
    "PopulationSpec",
    "ProjectionSpec",
    "Routing",
    "SourceRoute",
    "SynapseMap",
    "map_network",
    "place_populations",
    "route_projections",
]
