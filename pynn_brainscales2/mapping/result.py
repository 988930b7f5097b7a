"""A mapped network: :class:`MappingResult` and :func:`map_network`.

The mapping owns these fields of a :class:`cysim.ChipConfig`: ``synapse_weights``,
``synapse_labels``, ``row_modes``, ``driver_enable``, ``driver_row_select``,
``enable_output``, ``output_buses``, ``output_address``, ``bg_buses``, ``bg_address``,
the membrane switches of logical neurons (``connect_membrane_right``) and the drivers'
short-term plasticity (``stp_enable``, ``stp_facilitation``,
``stp_utilization``, ``stp_tau_rec``, ``stp_tau_fac``).
Everything else (CapMem values, ``enable_spiking`` and the other neuron switches,
background generator modes and rates, readout) is left to calibration and the front
ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cysim import ChipConfig

from .. import hardware as hw
from ..errors import RoutingError
from .placement import Placement, _readonly, place_populations
from .routing import Routing, SynapseMap, route_projections
from .spec import BACKGROUND, EXTERNAL, NEURON, NetworkSpec


@dataclass(frozen=True, eq=False)
class MappingResult:
    """A network placed and routed onto one chip.

    Attributes
    ----------
    spec : NetworkSpec
        The network that was mapped.
    placement : Placement
        Circuits of the neurons, generators of the background sources.
    routing : Routing
        Event addresses, synapse rows and columns.
    synapse_projection, synapse_connection : ndarray, shape (2, 256, 256)
        For every synapse the index of the projection (in ``spec.projections``) and of
        the connection within it that owns it; -1 where unused.
    """

    spec: NetworkSpec
    placement: Placement
    routing: Routing
    synapse_projection: np.ndarray = field(repr=False)
    synapse_connection: np.ndarray = field(repr=False)
    _config: ChipConfig = field(repr=False)

    # --- the configuration -----------------------------------------------------------
    @property
    def config(self) -> ChipConfig:
        """A fresh copy of the mapped :class:`~cysim.ChipConfig` (routing fields written,
        everything else at its default)."""
        return self._config.copy()

    def write_routing(self, config: ChipConfig) -> ChipConfig:
        """Write the fields the mapping owns into ``config`` (in place; returned).

        Use it to put the routing into a configuration that calibration has filled.
        """
        r = self.routing
        config.synapse_weights = r.synapse_weights
        config.synapse_labels = r.synapse_labels
        config.row_modes = r.row_modes
        config.driver_row_select = r.driver_row_select
        config.driver_enable = r.driver_group >= 0
        buses = np.zeros(hw.N_CIRCUITS, dtype=np.uint8)
        address = np.zeros(hw.N_CIRCUITS, dtype=np.int64)
        bg_buses = np.zeros(hw.N_BACKGROUND_GENERATORS, dtype=np.uint8)
        bg_address = np.zeros(hw.N_BACKGROUND_GENERATORS, dtype=np.int64)
        for pop in self.spec.populations:
            src = r.sources[pop.label]
            if pop.kind == NEURON:
                slots, out_b, out_a = self.placement.circuits[pop.label], buses, address
            elif pop.kind == BACKGROUND:
                slots, out_b, out_a = self.placement.generators[pop.label], bg_buses, bg_address
            else:
                continue
            out_b[slots] = src.bus_mask
            out_a[slots] = np.maximum(src.address, 0)
        config.enable_output = buses != 0
        config.output_buses = buses
        config.output_address = address
        config.bg_buses = bg_buses
        config.bg_address = bg_address
        config.connect_membrane_right = self.placement.connect_membrane_right()
        self._write_stp(config)
        return config

    def _write_stp(self, config: ChipConfig) -> None:
        """Short-term plasticity of the drivers: one setting per driver (see routing)."""
        r = self.routing
        shape = (hw.N_HEMISPHERES, hw.N_DRIVERS)
        values = {
            name: np.zeros(shape, dtype=np.int64)
            for name in ("stp_utilization", "stp_tau_rec", "stp_tau_fac")
        }
        fac = np.zeros(shape, dtype=bool)
        for k, (u, rec, tau_fac, facilitation) in enumerate(r.stp_settings, start=1):
            on = r.driver_stp == k
            values["stp_utilization"][on] = u
            values["stp_tau_rec"][on] = rec
            values["stp_tau_fac"][on] = tau_fac
            fac[on] = facilitation
        config.stp_enable = r.driver_stp > 0
        config.stp_facilitation = fac
        for name, v in values.items():
            setattr(config, name, v)

    # --- neurons <-> circuits --------------------------------------------------------
    def circuits(self, population: str) -> np.ndarray:
        """Circuit (0..511) of each neuron of ``population``; for logical neurons of several
        circuits the spiking (leftmost) one, whose spikes and membrane stand for the neuron."""
        try:
            return self.placement.circuits[population]
        except KeyError:
            raise KeyError(
                f"No on-chip neuron population {population!r}; known: {', '.join(self.placement.circuits)}."
            ) from None

    def compartments(self, population: str) -> np.ndarray:
        """All circuits of each neuron of ``population``, shape (size, c), left to right;
        column 0 is :meth:`circuits` (the spiking compartment)."""
        self.circuits(population)  # the error for an unknown population
        return self.placement.compartments[population]

    def circuits_per_neuron(self, population: str) -> int:
        """``c``: circuits per neuron of ``population`` (chosen from its fan-in unless given)."""
        return int(self.compartments(population).shape[1])

    @property
    def compartment_switches(self) -> np.ndarray:
        """``ChipConfig.connect_membrane_right`` of the mapped network, shape (512,): pass it
        as ``CalibrationTargets(compartments=...)`` to calibrate the logical neurons whole."""
        return self.placement.connect_membrane_right()

    def neurons_of_circuits(self, circuits) -> tuple[np.ndarray, np.ndarray]:
        """``(population_index, neuron_index)`` of each circuit (any compartment of a
        logical neuron); -1 where unused."""
        c = np.asarray(circuits, dtype=np.int64)
        return self.placement.population_of_circuit[c], self.placement.neuron_of_circuit[c]

    # --- sources -> stimulus ---------------------------------------------------------
    def source_labels(self, population: str) -> tuple[np.ndarray, np.ndarray]:
        """``(source_index, event_label)`` pairs of a source population.

        A source reaching both hemispheres has two labels (one per bus); a source
        without targets has none.
        """
        return self.routing.sources[population].event_labels()

    def stimulus_events(self, population: str, sources, times) -> tuple[np.ndarray, np.ndarray]:
        """Spikes of an ``"external"`` population as host events.

        Parameters
        ----------
        population : str
            Label of an external population.
        sources : array_like of int
            Source index of each spike.
        times : array_like of float
            Time of each spike (any unit; passed through).

        Returns
        -------
        times, labels : ndarray
            One event per spike and bus of its source (spikes of sources without targets
            are dropped), ready for :class:`cysim.Stimulus` once ``times`` are hardware
            microseconds.
        """
        if self.spec.population(population).kind != EXTERNAL:
            raise RoutingError(
                f"Population {population!r} is not external; only external sources are played in by the host."
            )
        idx, labels = self.source_labels(population)
        size = self.spec.population(population).size
        src = np.asarray(sources, dtype=np.int64).reshape(-1)
        t = np.asarray(times).reshape(-1)
        if src.shape != t.shape or (src.size and (src.min() < 0 or src.max() >= size)):
            raise RoutingError(
                f"Population {population!r}: give one source index (0..{size - 1}) per spike time; got "
                f"{src.size} indices (range {src.min() if src.size else '-'}..{src.max() if src.size else '-'}) "
                f"for {t.size} times."
            )
        per_src = np.bincount(idx, minlength=size)
        ptr = np.concatenate(([0], np.cumsum(per_src)))
        n = per_src[src]
        spike = np.repeat(np.arange(src.size), n)
        within = np.arange(spike.size) - np.repeat(np.cumsum(n) - n, n)
        return t[spike], labels[ptr[src[spike]] + within]

    # --- connections <-> synapses ----------------------------------------------------
    def synapses(self, projection: str) -> SynapseMap:
        """Synapse coordinates of the connections of ``projection``."""
        return self.routing.synapses[projection]

    def _split(self, projection: str, steps) -> tuple[SynapseMap, np.ndarray]:
        syn = self.synapses(projection)
        s = np.asarray(steps)
        n_conn = syn.piece_ptr.size - 1
        if s.shape != (n_conn,) or (s.size and not np.issubdtype(s.dtype, np.integer)):
            if s.shape == (n_conn,) and np.all(s == np.round(s)):
                s = s.astype(np.int64)
            else:
                raise RoutingError(
                    f"Projection {projection!r}: give {n_conn} integer weights [steps], one per "
                    f"connection; got shape {s.shape}, dtype {s.dtype}."
                )
        capacity = syn.n_pieces * hw.WEIGHT_MAX
        bad = (s < 0) | (s > capacity)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RoutingError(
                f"Projection {projection!r}: connection {i} gets {int(s[i])} steps; its synapses hold "
                f"0..{int(capacity[i])} steps ({int(syn.n_pieces[i])} row(s) were routed). Map the "
                "network with `max_steps` set on the projection to reserve rows for larger weights."
            )
        return syn, np.clip(s[syn.connection] - hw.WEIGHT_MAX * syn.piece, 0, hw.WEIGHT_MAX)

    def write_weights(self, config: ChipConfig, projection: str, steps) -> ChipConfig:
        """Write new weights of ``projection`` into ``config`` (in place; returned).

        ``steps`` holds one integer weight [steps] per connection, at most what the
        routed rows hold (63 per row). No re-placement, no re-routing.
        """
        syn, pieces = self._split(projection, steps)
        config.synapse_weights[syn.hemisphere, syn.row, syn.column] = pieces
        return config

    def with_weights(self, projection: str, steps, config: ChipConfig | None = None) -> ChipConfig:
        """A copy of ``config`` (default: :attr:`config`) with new weights of ``projection``.

        Examples
        --------
        >>> from pynn_brainscales2.mapping import NetworkSpec, PopulationSpec, ProjectionSpec
        >>> spec = NetworkSpec(
        ...     (PopulationSpec("in", 1, "external"), PopulationSpec("out", 1)),
        ...     (ProjectionSpec("w", "in", "out", [0], [0], [10], max_steps=126),))
        >>> m = map_network(spec)
        >>> m.read_weights(m.with_weights("w", [100]), "w").tolist()
        [100]
        """
        return self.write_weights((self._config if config is None else config).copy(), projection, steps)

    def read_weights(self, config: ChipConfig, projection: str) -> np.ndarray:
        """Weights [steps] of the connections of ``projection`` as ``config`` holds them."""
        syn = self.synapses(projection)
        w = config.array("synapse_weights")[syn.hemisphere, syn.row, syn.column]
        return np.bincount(syn.connection, weights=w, minlength=syn.piece_ptr.size - 1).astype(np.int64)


def map_network(spec: NetworkSpec) -> MappingResult:
    """Place and route ``spec`` onto one chip.

    Parameters
    ----------
    spec : NetworkSpec
        Populations and projections (weights in integer steps).

    Returns
    -------
    MappingResult

    Raises
    ------
    PlacementError, RoutingError
        When the network does not fit the chip.

    Examples
    --------
    >>> from pynn_brainscales2.mapping import NetworkSpec, PopulationSpec, ProjectionSpec
    >>> spec = NetworkSpec(
    ...     (PopulationSpec("in", 3, "external"), PopulationSpec("out", 2)),
    ...     (ProjectionSpec("in->out", "in", "out", [0, 1, 2], [0, 1, 1], [30, 40, 50]),))
    >>> m = map_network(spec)
    >>> m.circuits("out").tolist(), m.config.row_modes[0, :3].tolist()
    ([0, 1], [1, 1, 0])
    """
    placement = place_populations(spec)
    routing = route_projections(spec, placement)
    owner_proj = np.full((hw.N_HEMISPHERES, hw.N_ROWS, hw.N_COLUMNS), -1, dtype=np.int64)
    owner_conn = np.full_like(owner_proj, -1)
    for k, proj in enumerate(spec.projections):
        syn = routing.synapses[proj.label]
        owner_proj[syn.hemisphere, syn.row, syn.column] = k
        owner_conn[syn.hemisphere, syn.row, syn.column] = syn.connection
    result = MappingResult(
        spec=spec,
        placement=placement,
        routing=routing,
        synapse_projection=_readonly(owner_proj),
        synapse_connection=_readonly(owner_conn),
        _config=ChipConfig(),
    )
    result.write_routing(result._config)
    return result
