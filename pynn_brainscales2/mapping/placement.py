"""Placement: which neuron circuit emulates which neuron, which generator which source.

Each ``"neuron"`` population gets circuits, contiguous where possible: pinned
populations first, then the others in order, each into the first free run of circuits
inside one hemisphere that holds it whole, else the first free run across the
hemisphere boundary, else the first free circuits in index order. ``"background"``
populations get background generators the same way; ``"external"`` ones need no
on-chip resource.

A population of logical neurons with ``c > 1`` circuits per neuron (see
:mod:`.compartments`) gets ``c`` neighbouring circuits of one hemisphere per neuron:
such populations are placed before the others (largest ``c`` first), into the first free
run of one hemisphere that holds all of them, else neuron by neuron into the free runs of
both hemispheres. A pinned neuron of such a population pins its first (spiking) circuit;
its compartments follow to the right.
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
        For each ``"neuron"`` population, the circuit (0..511) of each neuron: for logical
        neurons the spiking (leftmost) compartment.
    compartments : Mapping[str, ndarray]
        For each ``"neuron"`` population, all circuits of each neuron, shape (size, c),
        left to right (column 0 is :attr:`circuits`).
    circuits_per_neuron : Mapping[str, int]
        ``c`` of each ``"neuron"`` population.
    generators : Mapping[str, ndarray]
        For each ``"background"`` population, the generator (0..7) of each source.
    population_of_circuit : ndarray of int, shape (512,)
        Index into ``spec.populations`` of the population on each circuit, -1 if free
        (every compartment of a logical neuron counts).
    neuron_of_circuit : ndarray of int, shape (512,)
        Index of the neuron within its population, -1 if free.
    """

    circuits: MappingProxyType
    generators: MappingProxyType
    population_of_circuit: np.ndarray
    neuron_of_circuit: np.ndarray
    compartments: MappingProxyType = None
    circuits_per_neuron: MappingProxyType = None

    def connect_membrane_right(self) -> np.ndarray:
        """The ``ChipConfig.connect_membrane_right`` switches that join the circuits of every
        logical neuron, shape (512,)."""
        sw = np.zeros(hw.N_CIRCUITS, dtype=bool)
        for comp in (self.compartments or {}).values():
            if comp.shape[1] > 1:
                sw[comp[:, :-1].reshape(-1)] = True
        return sw

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


def _assign(
    spec: NetworkSpec, kind: str, n_slots: int, block: int, what: str, pops=None, taken=None, owner=None
):
    taken = np.zeros(n_slots, dtype=bool) if taken is None else taken
    owner = [""] * n_slots if owner is None else owner
    out = {}
    pops = [p for p in spec.populations if p.kind == kind] if pops is None else pops
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
            "sequential runs: PyNN `setup(partition=True)`; `snn` chip mode does it by itself."
        )
    else:
        fix = "Use fewer on-chip background sources, or play Poisson spikes in from the host (SpikeSourcePoisson)."
    return (
        f"Population {pop.label!r} needs {pop.size} {what}s; the chip has {n_slots} "
        f"({in_use} in use, {n_slots - in_use} free). {fix}"
    )


def _choose_blocks(free: np.ndarray, size: int, c: int) -> np.ndarray | None:
    """``(size, c)`` circuits: ``size`` blocks of ``c`` neighbours inside one hemisphere each,
    one run of a hemisphere if one holds them all, else block by block; None if they do
    not fit."""
    runs = [
        r
        for h in range(hw.N_HEMISPHERES)
        for r in _free_runs(free[h * hw.N_COLUMNS : (h + 1) * hw.N_COLUMNS], h * hw.N_COLUMNS)
    ]
    for start, length in runs:
        if length >= size * c:
            return np.arange(start, start + size * c).reshape(size, c)
    blocks = []
    for start, length in runs:
        for k in range(length // c):
            blocks.append(np.arange(start + k * c, start + (k + 1) * c))
            if len(blocks) == size:
                return np.stack(blocks)
    return None


def _assign_logical(
    spec: NetworkSpec, cpn: dict, taken: np.ndarray, owner: list, reserved: np.ndarray
) -> dict:
    """Compartments of the populations with more than one circuit per neuron."""
    out = {}
    multi = [p for p in spec.populations if p.kind == NEURON and cpn[p.label] > 1]
    for pop in multi:
        if pop.pinned is None:
            continue
        c = cpn[pop.label]
        pins = _check_pins(pop, hw.N_CIRCUITS, "neuron circuit", taken, owner)
        comp = pins[:, None] + np.arange(c)[None, :]
        bad = (comp[:, -1] >= hw.N_CIRCUITS) | (comp[:, 0] // hw.N_COLUMNS != comp[:, -1] // hw.N_COLUMNS)
        if bad.any():
            p0 = int(pins[bad][0])
            raise PlacementError(
                f"Population {pop.label!r} pins neuron circuit {p0} for a logical neuron of {c} circuits "
                f"({p0}..{p0 + c - 1}), which crosses the end of hemisphere {p0 // hw.N_COLUMNS}; the "
                f"circuits of one logical neuron lie in one hemisphere. Pin the first circuit at most at "
                f"column {hw.N_COLUMNS - c} of a hemisphere."
            )
        if np.unique(comp).size != comp.size or taken[comp].any():
            clash = (
                int(comp.reshape(-1)[taken[comp.reshape(-1)]][0]) if taken[comp].any() else int(comp[0, 0])
            )
            raise PlacementError(
                f"Population {pop.label!r}: the logical neurons pinned at {pins.tolist()[:8]} need circuits "
                f"pin..pin+{c - 1}; circuit {clash} is taken twice. Pin neurons at least {c} circuits apart."
            )
        taken[comp.reshape(-1)] = True
        for x in comp.reshape(-1):
            owner[int(x)] = pop.label
        out[pop.label] = comp
    for pop in sorted((p for p in multi if p.pinned is None), key=lambda p: -cpn[p.label]):
        c = cpn[pop.label]
        comp = _choose_blocks(~(taken | reserved), pop.size, c)
        if comp is None:
            n_free = int((~taken).sum())
            raise PlacementError(
                f"Population {pop.label!r} needs {pop.size} logical neurons of {c} circuits "
                f"({pop.size * c} neuron circuits, {c} neighbours in one hemisphere each); the chip has "
                f"{hw.N_CIRCUITS} ({hw.N_CIRCUITS - n_free} in use, {n_free} free). Reduce its size, "
                "or split a feed-forward network into sequential runs (partitioning); fewer inputs per "
                "neuron need fewer circuits per neuron."
            )
        taken[comp.reshape(-1)] = True
        for x in comp.reshape(-1):
            owner[int(x)] = pop.label
        out[pop.label] = comp
    return out


def place_populations(spec: NetworkSpec, circuits_per_neuron: dict | None = None) -> Placement:
    """Assign neuron circuits and background generators to the populations of ``spec``.

    Parameters
    ----------
    spec : NetworkSpec
        The network.
    circuits_per_neuron : dict, optional
        ``c`` per ``"neuron"`` population; default
        :func:`.compartments.resolve_compartments` (explicit values, else from the fan-in).

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
    if circuits_per_neuron is None:
        from .compartments import resolve_compartments

        circuits_per_neuron = resolve_compartments(spec)
    cpn = {p.label: int(circuits_per_neuron.get(p.label, 1)) for p in spec.populations if p.kind == NEURON}
    taken = np.zeros(hw.N_CIRCUITS, dtype=bool)
    owner = [""] * hw.N_CIRCUITS
    reserved = np.zeros(hw.N_CIRCUITS, dtype=bool)  # pins of one-circuit neurons
    for p in spec.populations:
        if p.kind == NEURON and cpn[p.label] == 1 and p.pinned is not None:
            pins = np.asarray(p.pinned, dtype=np.int64)
            reserved[pins[(pins >= 0) & (pins < hw.N_CIRCUITS)]] = True
    logical = _assign_logical(spec, cpn, taken, owner, reserved)
    single = [p for p in spec.populations if p.kind == NEURON and cpn[p.label] == 1]
    circuits = _assign(spec, NEURON, hw.N_CIRCUITS, hw.N_COLUMNS, "neuron circuit", single, taken, owner)
    compartments = {}
    for pop in spec.populations:
        if pop.kind != NEURON:
            continue
        comp = logical[pop.label] if pop.label in logical else circuits[pop.label][:, None]
        compartments[pop.label] = _readonly(np.ascontiguousarray(comp, dtype=np.int64))
    circuits = {label: _readonly(comp[:, 0].copy()) for label, comp in compartments.items()}
    generators = _assign(
        spec, BACKGROUND, hw.N_BACKGROUND_GENERATORS, hw.N_BACKGROUND_GENERATORS, "background generator"
    )
    pop_of = np.full(hw.N_CIRCUITS, -1, dtype=np.int64)
    neuron_of = np.full(hw.N_CIRCUITS, -1, dtype=np.int64)
    for label, comp in compartments.items():
        pop_of[comp] = spec.population_index(label)
        neuron_of[comp] = np.arange(comp.shape[0])[:, None]
    return Placement(
        circuits=MappingProxyType(circuits),
        generators=MappingProxyType(generators),
        population_of_circuit=_readonly(pop_of),
        neuron_of_circuit=_readonly(neuron_of),
        compartments=MappingProxyType(compartments),
        circuits_per_neuron=MappingProxyType(cpn),
    )
