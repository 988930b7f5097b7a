"""Logical (multi-compartment) neurons: how many circuits a neuron needs, and which of its
compartments takes which source.

One neuron circuit receives at most 256 synapse rows (its column of the synapse array):
128 inputs of signed weight (an excitatory and an inhibitory row each) or 256 of one
sign. ``c`` neighbouring circuits of one hemisphere joined by their membrane switches
(``ChipConfig.connect_membrane_right``) form one logical neuron with ``c`` columns, so
``c x 256`` rows. The leftmost circuit is the spiking one (threshold, reset, spike
output, readout); the others add their synapse columns.

Sources are spread over the compartments by one rule shared by all neurons of a
population: the distinct sources of all projections into the population, in global
order (populations in :class:`~.spec.NetworkSpec` order, then index), go round-robin
to compartments ``0, 1, ..., c - 1, 0, ...``. All neurons of the population therefore see a
source in the same compartment, and a bundle of 64 consecutive sources (one PADI row
address, told apart by their 6-bit synapse labels) puts ``64 / c`` of them into each
compartment: the same synapse rows serve different sources in the different compartment
columns, as on the chip.
"""

from __future__ import annotations

import math

import numpy as np

from .. import hardware as hw
from ..errors import RoutingError
from .spec import NEURON, NetworkSpec

__all__ = ["compartments_needed", "resolve_compartments", "source_compartments", "MAX_CIRCUITS_PER_NEURON"]

#: Most circuits one logical neuron can join.
MAX_CIRCUITS_PER_NEURON = hw.MAX_CIRCUITS_PER_NEURON


def compartments_needed(fan_in: int, signed: bool = True, rows_per_weight: int = 1) -> int:
    """Circuits a logical neuron needs for ``fan_in`` inputs.

    Each input takes ``rows_per_weight`` synapse rows per sign (weights above 63 steps
    are split over rows), a signed input one excitatory and one inhibitory set; a circuit
    has 256 rows. ``ceil(fan_in / 128)`` for signed inputs of at most 63 steps.

    >>> compartments_needed(484), compartments_needed(256), compartments_needed(128)
    (4, 2, 1)
    >>> compartments_needed(484, signed=False)
    2
    """
    fan_in, rows_per_weight = int(fan_in), int(rows_per_weight)
    if fan_in < 0 or rows_per_weight < 1:
        raise RoutingError(
            f"compartments_needed: fan_in = {fan_in}, rows_per_weight = {rows_per_weight}; give "
            "fan_in >= 0 and rows_per_weight >= 1."
        )
    rows = fan_in * rows_per_weight * (2 if signed else 1)
    return max(1, math.ceil(rows / hw.N_ROWS))


def _sources_into(spec: NetworkSpec, post: str) -> np.ndarray:
    offsets = np.cumsum([0] + [p.size for p in spec.populations])
    ids = [offsets[spec.population_index(p.pre)] + p.pre_idx for p in spec.projections if p.post == post]
    return np.unique(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)


def source_compartments(spec: NetworkSpec, projection: str, c: int) -> np.ndarray:
    """Compartment (0..c-1) that receives each connection of ``projection`` when its target
    population has ``c`` circuits per neuron (the round-robin rule of this module)."""
    proj = spec.projection(projection)
    if c == 1:
        return np.zeros(proj.n_connections, dtype=np.int64)
    offsets = np.cumsum([0] + [p.size for p in spec.populations])
    sources = _sources_into(spec, proj.post)
    rank = np.searchsorted(sources, offsets[spec.population_index(proj.pre)] + proj.pre_idx)
    return rank % int(c)


def _rows_per_compartment(spec: NetworkSpec, post: str, c: int) -> np.ndarray:
    """Synapse rows each compartment column of each neuron of ``post`` needs, (size, c)."""
    size = spec.population(post).size
    rows = np.zeros((size, c), dtype=np.int64)
    for proj in spec.projections:
        if proj.post != post:
            continue
        reserve = proj.steps if proj.max_steps is None else np.maximum(proj.steps, int(proj.max_steps))
        comp = source_compartments(spec, proj.label, c)
        np.add.at(rows, (proj.post_idx, comp), hw.rows_needed(reserve))
    return rows


def resolve_compartments(spec: NetworkSpec) -> dict:
    """Circuits per neuron of every ``"neuron"`` population: the explicit
    ``PopulationSpec.circuits_per_neuron`` where given (checked), else the fewest that give
    every compartment column at most 256 synapse rows.

    Raises
    ------
    RoutingError
        An explicit value is too small for the population's fan-in, or the fan-in needs
        more than 64 circuits per neuron.
    """
    out = {}
    for pop in spec.populations:
        if pop.kind != NEURON:
            continue
        rows_total = _rows_per_compartment(spec, pop.label, 1)[:, 0]
        worst = int(rows_total.max()) if rows_total.size else 0
        if pop.circuits_per_neuron is not None:
            c = int(pop.circuits_per_neuron)
            need = _rows_per_compartment(spec, pop.label, c).max() if c > 1 else worst
            if need > hw.N_ROWS:
                fix = _fewest(spec, pop.label, worst)
                raise RoutingError(
                    f"Population {pop.label!r} has circuits_per_neuron={c}, but a neuron needs {worst} "
                    f"synapse rows in all, {int(need)} in its fullest compartment column; a column has "
                    f"{hw.N_ROWS} rows (128 signed inputs). "
                    + (
                        f"Set circuits_per_neuron={fix} (or leave it None to choose automatically)."
                        if fix is not None
                        else _too_many(pop.label, worst)
                    )
                )
            out[pop.label] = c
        else:
            c = _fewest(spec, pop.label, worst)
            if c is None:
                raise RoutingError(_too_many(pop.label, worst) + f" Population {pop.label!r}: {worst} rows.")
            out[pop.label] = c
    return out


def _fewest(spec, label, worst):
    c = max(1, math.ceil(worst / hw.N_ROWS))
    while c <= MAX_CIRCUITS_PER_NEURON:
        if c == 1 or _rows_per_compartment(spec, label, c).max() <= hw.N_ROWS:
            return c
        c += 1
    return None


def _too_many(label, worst) -> str:
    return (
        f"The fan-in of population {label!r} needs more than {MAX_CIRCUITS_PER_NEURON} circuits per "
        f"neuron ({worst} synapse rows; one logical neuron joins at most {MAX_CIRCUITS_PER_NEURON} "
        f"circuits of {hw.N_ROWS} rows). Reduce the number of inputs per neuron (e.g. pool or "
        "subsample the input), or keep weights at most 63 steps."
    )
