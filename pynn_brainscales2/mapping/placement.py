"""Placement: which neuron circuit emulates which neuron, which generator which source.

Each ``"neuron"`` population gets circuits, contiguous where possible: pinned
populations first, then the others in order, each into the first free run of circuits
inside one hemisphere that holds it whole, else the first free run across the
hemisphere boundary, else the first free circuits in index order. ``"background"``
populations get background generators the same way; ``"external"`` ones need no
on-chip resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .. import hardware as hw
from ..errors import PlacementError
from .spec import BACKGROUND, NEURON, NetworkSpec


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Placement:
    """Result of :func:`place_populations`.

    Attributes
    ----------
    circuits : Mapping[str, ndarray]
        For each ``"neuron"`` population, the circuit (0..511) of each neuron.
    generators : Mapping[str, ndarray]
        For each ``"background"`` population, the generator (0..7) of each source.
    population_of_circuit : ndarray of int, shape (512,)
        Index into ``spec.populations`` of the population on each circuit, -1 if free.
    neuron_of_circuit : ndarray of int, shape (512,)
        Index of the neuron within its population, -1 if free.
    """

    circuits: MappingProxyType
    generators: MappingProxyType
    population_of_circuit: np.ndarray
    neuron_of_circuit: np.ndarray

    @property
    def n_used(self) -> int:
        """Number of circuits in use."""
        return int(np.count_nonzero(self.population_of_circuit >= 0))


def _free_runs(free: np.ndarray, offset: int = 0):
    """``(start, length)`` of every run of True in ``free``."""
    padded = np.concatenate(([False], free, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a) + offset, int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _choose(free: np.ndarray, size: int, block: int) -> np.ndarray:
    """Indices for ``size`` items: a run inside one block, a run anywhere, or scattered."""
    for b in range(0, free.size, block):
        for start, length in _free_runs(free[b : b + block], b):
            if length >= size:
                return np.arange(start, start + size)
    for start, length in _free_runs(free):
        if length >= size:
            return np.arange(start, start + size)
    return np.flatnonzero(free)[:size]


def _check_pins(pop, n_slots: int, what: str, taken: np.ndarray, owner: list) -> np.ndarray:
    pins = np.asarray(pop.pinned, dtype=np.int64)
    if pins.size != pop.size:
        raise PlacementError(
            f"Population {pop.label!r} has {pop.size} neurons but pins {pins.size} {what}s; "
            "give one per neuron."
        )
    if pins.min() < 0 or pins.max() >= n_slots:
        bad = int(pins[(pins < 0) | (pins >= n_slots)][0])
        raise PlacementError(
            f"Population {pop.label!r} pins {what} {bad}; allowed 0..{n_slots - 1}. Fix `pinned`."
        )
    if np.unique(pins).size != pins.size:
        raise PlacementError(f"Population {pop.label!r} pins a {what} twice; give distinct {what}s.")
    clash = pins[taken[pins]]
    if clash.size:
        raise PlacementError(
            f"Population {pop.label!r} pins {what} {int(clash[0])}, already pinned by "
            f"{owner[int(clash[0])]!r}. Give the populations disjoint {what}s."
        )
    return pins


def _assign(spec: NetworkSpec, kind: str, n_slots: int, block: int, what: str):
    taken = np.zeros(n_slots, dtype=bool)
    owner = [""] * n_slots
    out = {}
    pops = [p for p in spec.populations if p.kind == kind]
    for pop in pops:
        if pop.pinned is not None:
            pins = _check_pins(pop, n_slots, what, taken, owner)
            taken[pins] = True
            for p in pins:
                owner[int(p)] = pop.label
            out[pop.label] = pins
    for pop in pops:
        if pop.pinned is not None:
            continue
        free = ~taken
        n_free = int(free.sum())
        if pop.size > n_free:
            raise PlacementError(_too_big_message(pop, kind, n_slots, n_slots - n_free, what))
        slots = _choose(free, pop.size, block)
        taken[slots] = True
        out[pop.label] = slots
    return {p.label: _readonly(np.asarray(out[p.label], dtype=np.int64)) for p in pops}


def _too_big_message(pop, kind: str, n_slots: int, in_use: int, what: str) -> str:
    if kind == NEURON:
        fix = (
            "Reduce its size (or that of other populations), or split a feed-forward network into "
            "sequential runs with `snn.partition`."
        )
    else:
        fix = "Use fewer on-chip background sources, or play Poisson spikes in from the host (SpikeSourcePoisson)."
    return (
        f"Population {pop.label!r} needs {pop.size} {what}s; the chip has {n_slots} "
        f"({in_use} in use, {n_slots - in_use} free). {fix}"
    )


def place_populations(spec: NetworkSpec) -> Placement:
    """Assign neuron circuits and background generators to the populations of ``spec``.

    Parameters
    ----------
    spec : NetworkSpec
        The network.

    Returns
    -------
    Placement

    Raises
    ------
    PlacementError
        A population does not fit the free circuits (or generators), or its pins are
        invalid. The message names the population, what it needs and what is free.

    Examples
    --------
    >>> from pynn_brainscales2.mapping import NetworkSpec, PopulationSpec
    >>> spec = NetworkSpec((PopulationSpec("a", 200), PopulationSpec("b", 100)))
    >>> p = place_populations(spec)
    >>> int(p.circuits["a"][0]), int(p.circuits["b"][0])  # b does not fit hemisphere 0 whole
    (0, 256)
    """
    circuits = _assign(spec, NEURON, hw.N_CIRCUITS, hw.N_COLUMNS, "neuron circuit")
    generators = _assign(
        spec, BACKGROUND, hw.N_BACKGROUND_GENERATORS, hw.N_BACKGROUND_GENERATORS, "background generator"
    )
    pop_of = np.full(hw.N_CIRCUITS, -1, dtype=np.int64)
    neuron_of = np.full(hw.N_CIRCUITS, -1, dtype=np.int64)
    for label, c in circuits.items():
        pop_of[c] = spec.population_index(label)
        neuron_of[c] = np.arange(c.size)
    return Placement(
        circuits=MappingProxyType(circuits),
        generators=MappingProxyType(generators),
        population_of_circuit=_readonly(pop_of),
        neuron_of_circuit=_readonly(neuron_of),
    )
