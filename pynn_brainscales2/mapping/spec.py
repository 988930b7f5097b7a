"""What mapping takes in: a network description as frozen dataclasses.

A :class:`NetworkSpec` lists populations (:class:`PopulationSpec`) and projections
(:class:`ProjectionSpec`). It is data only: weights are already integer steps
(see :func:`pynn_brainscales2.hardware.quantise_weights`), no PyNN objects appear.

Kinds of population
    ``"neuron"``: neurons emulated by on-chip circuits (the only kind that receives
    projections). ``"external"``: spike sources played in by the host (FPGA), e.g. a
    ``SpikeSourceArray`` or a host-side ``SpikeSourcePoisson``. ``"background"``: the
    chip's own background generators (8 in all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import hardware as hw
from ..errors import PlacementError, RoutingError

NEURON = "neuron"
EXTERNAL = "external"
BACKGROUND = "background"
KINDS = (NEURON, EXTERNAL, BACKGROUND)

EXCITATORY = "excitatory"
INHIBITORY = "inhibitory"
RECEPTORS = (EXCITATORY, INHIBITORY)


@dataclass(frozen=True)
class PopulationSpec:
    """One population of the network.

    Parameters
    ----------
    label : str
        Unique name.
    size : int
        Number of neurons or sources (>= 1).
    kind : str
        ``"neuron"`` (on-chip circuits), ``"external"`` (host spike sources) or
        ``"background"`` (on-chip background generators).
    pinned : tuple of int, optional
        Circuits (0..511) for ``"neuron"``, generators (0..7) for ``"background"``, one per
        neuron, in neuron order. Default: placement chooses.
    circuits_per_neuron : int or None
        Circuits per neuron (``"neuron"`` populations): 1..64 neighbouring circuits of one
        hemisphere joined into one logical neuron whose inputs are spread over their
        synapse columns (see :mod:`.compartments`). None (the default): the fewest the
        population's fan-in needs (1 where it fits one circuit).

    Examples
    --------
    >>> PopulationSpec("exc", 80).kind
    'neuron'
    """

    label: str
    size: int
    kind: str = NEURON
    pinned: tuple[int, ...] | None = None
    circuits_per_neuron: int | None = None

    def __post_init__(self):
        if not isinstance(self.label, str) or not self.label:
            raise PlacementError(f"Population label {self.label!r}: give a non-empty string.")
        if self.kind not in KINDS:
            raise PlacementError(
                f"Population {self.label!r} has kind {self.kind!r}; allowed: {', '.join(KINDS)}."
            )
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise PlacementError(f"Population {self.label!r} has size {self.size!r}; give an integer >= 1.")
        object.__setattr__(self, "size", int(self.size))
        if self.pinned is not None:
            pins = tuple(int(p) for p in np.asarray(self.pinned, dtype=np.int64).reshape(-1))
            object.__setattr__(self, "pinned", pins)
            if self.kind == EXTERNAL:
                raise PlacementError(
                    f"Population {self.label!r} is external: its sources live on the host and cannot "
                    "be pinned. Remove `pinned`."
                )
        c = self.circuits_per_neuron
        if c is not None:
            limit = hw.MAX_CIRCUITS_PER_NEURON if self.kind == NEURON else 1
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 1 <= c <= limit:
                raise PlacementError(
                    f"Population {self.label!r} asks for circuits_per_neuron={c!r}; allowed: an integer "
                    f"1..{limit}"
                    + (
                        " (neighbouring circuits of one hemisphere joined into one logical neuron)"
                        if self.kind == NEURON
                        else f" ({self.kind} sources use no neuron circuits)"
                    )
                    + ", or None to choose from the fan-in."
                )
            object.__setattr__(self, "circuits_per_neuron", int(c))

    @property
    def is_source(self) -> bool:
        """Whether the population is a spike source (external or background)."""
        return self.kind != NEURON


def _int_array(values, name: str, label: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        as_float = arr.astype(float)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise RoutingError(f"Projection {label!r}: {name} must hold integers.")
    out = arr.astype(np.int64).reshape(-1)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class ProjectionSpec:
    """One projection: a list of connections with integer weight steps.

    Parameters
    ----------
    label : str
        Unique name.
    pre, post : str
        Labels of the source population and of the target population (``"neuron"``).
    pre_idx, post_idx : array_like of int
        Indices of each connection's source and target within their populations.
    steps : array_like of int
        Weight of each connection [steps, >= 0]; above 63 it is split over rows.
    receptor : str
        ``"excitatory"`` or ``"inhibitory"``.
    max_steps : int, optional
        Reserve synapse rows for weights up to this many steps, so that
        :meth:`MappingResult.with_weights` can later write larger weights (training)
        without re-routing. Default: only what ``steps`` needs.
    weight_scale : float, optional
        Steps per model unit [steps/nA or steps/uS] the weights were quantised with
        (:func:`pynn_brainscales2.hardware.quantise_weights`); carried along for the front
        ends, not used by mapping.
    stp : tuple of (int, int, int, bool), optional
        Short-term plasticity of the synapse drivers that carry this projection:
        ``(utilization, tau_rec, tau_fac, facilitation)`` as CapMem values (0..1022) and
        switch (see :mod:`pynn_brainscales2.hardware`, ``stp_*_capmem``). The chip has one
        STP state per driver, so routing gives every source of such a projection drivers
        of its own, and rows of different settings different drivers. Default: none.

    Examples
    --------
    >>> p = ProjectionSpec("in->exc", "in", "exc", [0, 1], [3, 3], [10, 70])
    >>> p.n_connections, p.receptor
    (2, 'excitatory')
    """

    label: str
    pre: str
    post: str
    pre_idx: np.ndarray
    post_idx: np.ndarray
    steps: np.ndarray
    receptor: str = EXCITATORY
    max_steps: int | None = None
    weight_scale: float | None = None
    stp: tuple | None = None

    def __post_init__(self):
        if not isinstance(self.label, str) or not self.label:
            raise RoutingError(f"Projection label {self.label!r}: give a non-empty string.")
        if self.stp is not None:
            stp = tuple(self.stp)
            ok = len(stp) == 4 and all(
                isinstance(v, (int, np.integer)) and 0 <= int(v) <= 1022 for v in stp[:3]
            )
            if not ok:
                raise RoutingError(
                    f"Projection {self.label!r}: stp = {self.stp!r}; give (utilization, tau_rec, tau_fac, "
                    "facilitation) with three CapMem values 0..1022 and a bool."
                )
            object.__setattr__(self, "stp", (int(stp[0]), int(stp[1]), int(stp[2]), bool(stp[3])))
        for name in ("pre_idx", "post_idx", "steps"):
            object.__setattr__(self, name, _int_array(getattr(self, name), name, self.label))
        n = self.pre_idx.size
        if self.post_idx.size != n or self.steps.size != n:
            raise RoutingError(
                f"Projection {self.label!r} has {n} pre indices, {self.post_idx.size} post indices and "
                f"{self.steps.size} weights; give one of each per connection."
            )
        if self.receptor not in RECEPTORS:
            raise RoutingError(
                f"Projection {self.label!r} has receptor {self.receptor!r}; allowed: {', '.join(RECEPTORS)}."
            )
        if n and self.steps.min() < 0:
            raise RoutingError(
                f"Projection {self.label!r} has a weight of {int(self.steps.min())} steps; weights are "
                "magnitudes (>= 0). Put negative weights into an inhibitory projection."
            )
        if self.max_steps is not None and int(self.max_steps) < 0:
            raise RoutingError(f"Projection {self.label!r}: max_steps = {self.max_steps}; allowed >= 0.")

    @property
    def n_connections(self) -> int:
        return int(self.pre_idx.size)


@dataclass(frozen=True, eq=False)
class NetworkSpec:
    """Populations and projections of one network, checked for consistency.

    Partitioning (a later hook) splits a spec into several single-chip specs in which cut
    populations reappear as ``"external"`` sources.

    Examples
    --------
    >>> spec = NetworkSpec(
    ...     (PopulationSpec("in", 2, EXTERNAL), PopulationSpec("out", 1)),
    ...     (ProjectionSpec("in->out", "in", "out", [0, 1], [0, 0], [20, 30]),),
    ... )
    >>> spec.population("out").size
    1
    """

    populations: tuple[PopulationSpec, ...]
    projections: tuple[ProjectionSpec, ...] = ()
    _index: dict = field(init=False, repr=False)

    def __post_init__(self):
        pops, projs = tuple(self.populations), tuple(self.projections)
        object.__setattr__(self, "populations", pops)
        object.__setattr__(self, "projections", projs)
        index: dict[str, int] = {}
        for i, pop in enumerate(pops):
            if not isinstance(pop, PopulationSpec):
                raise PlacementError(
                    f"populations[{i}] is {type(pop).__name__}; give PopulationSpec objects."
                )
            if pop.label in index:
                raise PlacementError(f"Two populations are labelled {pop.label!r}; labels must be unique.")
            index[pop.label] = i
        object.__setattr__(self, "_index", index)
        seen = set()
        for proj in projs:
            if not isinstance(proj, ProjectionSpec):
                raise RoutingError(f"projections hold a {type(proj).__name__}; give ProjectionSpec objects.")
            if proj.label in seen:
                raise RoutingError(f"Two projections are labelled {proj.label!r}; labels must be unique.")
            seen.add(proj.label)
            for end in ("pre", "post"):
                if getattr(proj, end) not in index:
                    raise RoutingError(
                        f"Projection {proj.label!r}: {end} population {getattr(proj, end)!r} is unknown; "
                        f"known: {', '.join(index) or 'none'}."
                    )
            post = pops[index[proj.post]]
            if post.kind != NEURON:
                raise RoutingError(
                    f"Projection {proj.label!r} targets {post.label!r}, a population of {post.kind} "
                    "sources; only on-chip neuron populations receive synapses."
                )
            for end, idx in (("pre", proj.pre_idx), ("post", proj.post_idx)):
                size = pops[index[getattr(proj, end)]].size
                if idx.size and (idx.min() < 0 or idx.max() >= size):
                    bad = int(idx[(idx < 0) | (idx >= size)][0])
                    raise RoutingError(
                        f"Projection {proj.label!r}: {end} index {bad} is out of range for population "
                        f"{getattr(proj, end)!r} of size {size} (allowed 0..{size - 1})."
                    )

    def population(self, label: str) -> PopulationSpec:
        """The population called ``label``."""
        return self.populations[self.population_index(label)]

    def population_index(self, label: str) -> int:
        """Position of population ``label`` in :attr:`populations`."""
        try:
            return self._index[label]
        except KeyError:
            raise KeyError(f"No population {label!r}; known: {', '.join(self._index)}.") from None

    def projection(self, label: str) -> ProjectionSpec:
        """The projection called ``label``."""
        return self.projections[self.projection_index(label)]

    def projection_index(self, label: str) -> int:
        """Position of projection ``label`` in :attr:`projections`."""
        for i, proj in enumerate(self.projections):
            if proj.label == label:
                return i
        raise KeyError(f"No projection {label!r}; known: {', '.join(p.label for p in self.projections)}.")
