"""Mapping: a network description in, placement, routing and a ChipConfig out.

Pure functions over frozen dataclasses, no global state::

    NetworkSpec --place_populations--> Placement --route_projections--> Routing
    NetworkSpec --map_network--> MappingResult (placement + routing + ChipConfig + lookups)

``PopulationSpec.circuits_per_neuron`` merges circuits into logical neurons that raise
fan-in; :func:`plan_feedforward` (:mod:`.partition`) cuts a feed-forward layer stack that
does not fit one chip into sequential single-chip runs whose inputs are ``"external"``
sources (seed eq. 19).
"""

from .compartments import (
    MAX_CIRCUITS_PER_NEURON,
    compartments_needed,
    resolve_compartments,
    source_compartments,
)
from .partition import LayerPlan, PartitionPlan, PartitionRun, plan_feedforward
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
    "MAX_CIRCUITS_PER_NEURON",
    "MappingResult",
    "LayerPlan",
    "NetworkSpec",
    "PartitionPlan",
    "PartitionRun",
    "Placement",
    "PopulationSpec",
    "ProjectionSpec",
    "Routing",
    "SourceRoute",
    "SynapseMap",
    "compartments_needed",
    "map_network",
    "resolve_compartments",
    "source_compartments",
    "place_populations",
    "plan_feedforward",
    "route_projections",
]
