"""Routing: event addresses for the sources, synapse rows and columns for the connections.

How an event reaches a synapse (see ``docs/HARDWARE.md``): a source sends on PADI bus
``b`` (0..3) of a hemisphere with an 11-bit address ``row_select << 6 | label``; the
synapse drivers ``d`` with ``d % 4 == b`` whose 5-bit row select matches forward it to
their two rows ``2d, 2d+1``; in those rows, the synapses whose 6-bit label matches
deliver it to their column's circuit, excitatory or inhibitory as the row's mode says.

The router therefore works with *source groups*: up to 64 sources sharing one PADI bus
and one row-select address, told apart by their labels 0..63. In each hemisphere a group
owns a set of synapse drivers on its bus; its rows hold, per target column, at most one
synapse per row, so a group needs as many excitatory (inhibitory) rows as the largest
number of its excitatory (inhibitory) synapses onto one column -- a multapse, or a weight
above 63 steps that is split, takes one row per piece. Groups are bundles of consecutive
active sources (population order), halved where a group would need more than the 32
drivers of one bus, and packed onto the four buses largest first.

Short-term plasticity (``ProjectionSpec.stp``) lives in the synapse drivers, one state
and one setting per driver: a source of a projection with STP gets a group (and so
drivers) of its own, and within a group the rows of each STP setting (and of static
connections) get drivers of their own. Two projections that need different settings
therefore never share a driver; a source with several settings needs more drivers.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .. import hardware as hw
from ..errors import RoutingError
from .compartments import source_compartments
from .placement import Placement, _readonly
from .spec import INHIBITORY, NetworkSpec

_COLS = hw.N_COLUMNS


@dataclass(frozen=True, eq=False)
class SynapseMap:
    """Where the connections of one projection sit in the synapse arrays.

    Connection ``i`` occupies the synapses ``piece_ptr[i]:piece_ptr[i+1]`` of the
    per-synapse arrays (one piece per row: weights above 63 steps, or rows reserved
    with ``max_steps``, take several).

    Attributes
    ----------
    piece_ptr : ndarray, shape (n_connections + 1,)
    connection, piece : ndarray, shape (n_synapses,)
        Connection index of each synapse, and its position within the connection.
    hemisphere, row, column : ndarray, shape (n_synapses,)
        Synapse coordinates.
    label : ndarray, shape (n_synapses,)
        6-bit synapse label (that of the source).
    steps : ndarray, shape (n_synapses,)
        Weight written initially [steps, 0..63].
    """

    piece_ptr: np.ndarray
    connection: np.ndarray
    piece: np.ndarray
    hemisphere: np.ndarray
    row: np.ndarray
    column: np.ndarray
    label: np.ndarray
    steps: np.ndarray

    @property
    def n_pieces(self) -> np.ndarray:
        """Synapses (rows) per connection."""
        return np.diff(self.piece_ptr)

    def synapses_of(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(hemisphere, row, column)`` arrays of the synapses of connection ``i``."""
        s = slice(self.piece_ptr[i], self.piece_ptr[i + 1])
        return self.hemisphere[s], self.row[s], self.column[s]


@dataclass(frozen=True, eq=False)
class SourceRoute:
    """Event addresses of the sources of one population.

    Attributes
    ----------
    address : ndarray of int, shape (size,)
        11-bit address ``row_select << 6 | label``; -1 for sources without targets.
    bus_mask : ndarray of uint8, shape (size,)
        Bit mask of the chip's 8 buses (``hemisphere * 4 + padi_bus``) the source sends
        on: one bus per hemisphere it reaches.
    """

    address: np.ndarray
    bus_mask: np.ndarray

    def event_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """``(source_index, event_label)`` pairs: one per source and bus it sends on.

        The 14-bit event labels are those a host stimulus uses (:func:`cysim.event_label`).
        """
        src, bus = np.nonzero((self.bus_mask[:, None].astype(np.int64) >> np.arange(hw.N_BUSES)) & 1)
        return src, (bus << hw.ADDRESS_BITS) | self.address[src]


@dataclass(frozen=True, eq=False)
class Routing:
    """Result of :func:`route_projections`: data for the routing fields of a ChipConfig.

    Attributes
    ----------
    sources : Mapping[str, SourceRoute]
        Event addresses of every population (neurons, external and background sources).
    synapses : Mapping[str, SynapseMap]
        Synapse coordinates of every projection's connections.
    row_modes : ndarray, shape (2, 256)
        ``ROW_OFF``/``ROW_EXC``/``ROW_INH`` of every synapse row.
    driver_row_select : ndarray, shape (2, 128)
        Row-select address of every synapse driver (0 where unused).
    driver_group : ndarray, shape (2, 128)
        Source group served by each driver, -1 where unused.
    driver_stp : ndarray, shape (2, 128)
        Short-term plasticity setting of each driver: 0 none, ``k`` the setting
        ``stp_settings[k - 1]``.
    stp_settings : tuple
        The distinct ``ProjectionSpec.stp`` settings of the network.
    group_padi_bus, group_row_select : ndarray, shape (n_groups,)
        PADI bus (0..3) and row-select address of each source group.
    synapse_weights, synapse_labels : ndarray, shape (2, 256, 256)
        Initial weights [steps] and labels of the synapse arrays.
    """

    sources: MappingProxyType
    synapses: MappingProxyType
    row_modes: np.ndarray
    driver_row_select: np.ndarray
    driver_group: np.ndarray
    group_padi_bus: np.ndarray
    group_row_select: np.ndarray
    synapse_weights: np.ndarray
    synapse_labels: np.ndarray
    driver_stp: np.ndarray = None
    stp_settings: tuple = ()

    def rows_used(self) -> np.ndarray:
        """Synapse rows switched on, per hemisphere (shape (2,))."""
        return np.count_nonzero(self.row_modes != hw.ROW_OFF, axis=1)

    @property
    def n_groups(self) -> int:
        return int(self.group_padi_bus.size)


def _pieces(spec: NetworkSpec, placement: Placement) -> dict:
    """All connections of all projections, flattened, and their pieces (one per row)."""
    offsets = np.cumsum([0] + [p.size for p in spec.populations])
    src, circ, inh, steps, npieces, proj, stp = [], [], [], [], [], [], []
    settings = sorted({p.stp for p in spec.projections if p.stp is not None})
    for k, p in enumerate(spec.projections):
        stp.append(np.full(p.n_connections, 0 if p.stp is None else settings.index(p.stp) + 1))
        src.append(offsets[spec.population_index(p.pre)] + p.pre_idx)
        comp = placement.compartments[p.post] if placement.compartments is not None else None
        if comp is None or comp.shape[1] == 1:
            circ.append(placement.circuits[p.post][p.post_idx])
        else:  # logical neurons: each source into the compartment the round-robin rule gives it
            circ.append(comp[p.post_idx, source_compartments(spec, p.label, comp.shape[1])])
        inh.append(np.full(p.n_connections, p.receptor == INHIBITORY))
        steps.append(p.steps)
        reserve = p.steps if p.max_steps is None else np.maximum(p.steps, int(p.max_steps))
        npieces.append(hw.rows_needed(reserve))
        proj.append(np.full(p.n_connections, k))
    cat = {"src": src, "circ": circ, "inh": inh, "steps": steps, "npieces": npieces, "proj": proj, "stp": stp}
    c = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in cat.items()}
    c["offsets"] = offsets
    c["stp_settings"] = tuple(settings)
    c["conn_ptr"] = np.cumsum([0] + [p.n_connections for p in spec.projections])
    n_conn = c["src"].size
    piece_ptr = np.zeros(n_conn + 1, dtype=np.int64)
    np.cumsum(c["npieces"], out=piece_ptr[1:])
    conn = np.repeat(np.arange(n_conn), c["npieces"])
    piece = np.arange(conn.size) - piece_ptr[conn]
    c.update(
        piece_ptr=piece_ptr,
        p_conn=conn,
        p_piece=piece,
        p_steps=np.clip(c["steps"][conn] - hw.WEIGHT_MAX * piece, 0, hw.WEIGHT_MAX),
        p_h=c["circ"][conn] // _COLS,
        p_col=c["circ"][conn] % _COLS,
        p_inh=c["inh"][conn].astype(np.int64),
        p_stp=c["stp"][conn].astype(np.int64),
    )
    return c


def _fan_in_message(spec, c, column_key: int, rows: int, limit: str) -> str:
    h, col = divmod(column_key, _COLS)
    circuit = h * _COLS + col
    pop_of = placement_of_circuit = None
    for pop_label, comp in (c.get("compartments") or {}).items():
        hit = np.argwhere(comp == circuit)
        if hit.size:
            pop_of, placement_of_circuit = pop_label, (int(hit[0, 0]), int(hit[0, 1]), comp.shape[1])
    sel = c["circ"][c["p_conn"]] == circuit
    per_proj = np.bincount(c["proj"][c["p_conn"][sel]], minlength=len(spec.projections))
    parts = ", ".join(
        f"{spec.projections[k].label!r} {int(per_proj[k])}" for k in np.argsort(-per_proj) if per_proj[k]
    )
    where = f"the neuron on circuit {circuit} (hemisphere {h})"
    fix = "or raise `circuits_per_neuron` of the target population (logical neurons of several circuits)."
    if placement_of_circuit is not None and placement_of_circuit[2] > 1:
        n_idx, o, cpn = placement_of_circuit
        where = (
            f"compartment {o} (circuit {circuit}, hemisphere {h}) of neuron {n_idx} of population "
            f"{pop_of!r} ({cpn} circuits per neuron)"
        )
        fix = f"or raise `circuits_per_neuron` of {pop_of!r} above {cpn}."
    return (
        f"Fan-in too large: {where} needs {rows} synapse rows "
        f"({parts}; weights above {hw.WEIGHT_MAX} steps and multapses take a row each), but {limit}. "
        "Reduce the number of connections per neuron, keep weights at most "
        f"{hw.WEIGHT_MAX} steps (or lower `max_steps`), " + fix
    )


def _group_needs(bounds, rank, c, n_groups):
    """Rows needed per (group, hemisphere, STP class, receptor) and drivers per (group,
    hemisphere): each STP class (0: static) fills drivers of its own."""
    n_cls = len(c["stp_settings"]) + 1
    group = np.searchsorted(bounds, rank, side="right") - 1
    pg = group[c["p_rank"]]
    key = (((pg * 2 + c["p_h"]) * n_cls + c["p_stp"]) * _COLS + c["p_col"]) * 2 + c["p_inh"]
    counts = np.bincount(key, minlength=n_groups * 2 * n_cls * _COLS * 2).reshape(
        n_groups, 2, n_cls, _COLS, 2
    )
    rows = counts.max(axis=3)
    drivers = (-(-rows.sum(axis=3) // hw.ROWS_PER_DRIVER)).sum(axis=2)
    return group, key, rows, drivers


def _make_groups(spec, c, n_active):
    """Bundle active sources into groups of at most 64 that each fit one PADI bus; a source
    of a projection with short-term plasticity forms a group of its own."""
    rank = np.arange(n_active)
    bounds = np.arange(0, n_active, hw.N_LABELS)
    stp_ranks = np.unique(c["p_rank"][c["p_stp"] > 0])
    if stp_ranks.size:
        cuts = np.concatenate([stp_ranks, stp_ranks + 1])
        bounds = np.union1d(bounds, cuts[cuts < n_active])
    while True:
        group, key, rows, drivers = _group_needs(bounds, rank, c, bounds.size)
        too_big = np.flatnonzero(drivers.max(axis=1) > hw.DRIVERS_PER_PADI_BUS)
        if too_big.size == 0:
            return bounds, group, key, rows, drivers
        ends = np.append(bounds[1:], n_active)
        sizes = ends[too_big] - bounds[too_big]
        if np.any(sizes == 1):
            g = int(too_big[sizes == 1][0])
            h = int(np.argmax(drivers[g]))
            rows_g = rows[g, h].sum()
            col = int(np.argmax(np.bincount(c["p_col"][(group[c["p_rank"]] == g) & (c["p_h"] == h)])))
            raise RoutingError(
                _fan_in_message(
                    spec,
                    c,
                    h * _COLS + col,
                    int(rows_g),
                    f"one source reaches at most {hw.ROWS_PER_PADI_BUS} rows (the "
                    f"{hw.DRIVERS_PER_PADI_BUS} drivers of one PADI bus)",
                )
            )
        bounds = np.union1d(bounds, bounds[too_big] + sizes // 2)


def _hemisphere_message(spec, c, h: int, drivers) -> str:
    sel = c["p_h"] == h
    keyed = c["proj"][c["p_conn"][sel]] * _COLS + c["p_col"][sel]
    per = np.bincount(keyed, minlength=len(spec.projections) * _COLS).reshape(-1, _COLS).max(axis=1)
    parts = ", ".join(
        f"{spec.projections[k].label!r} up to {int(per[k])}" for k in np.argsort(-per)[:4] if per[k]
    )
    stp_note = (
        " Sources of projections with short-term plasticity (TsodyksMarkramSynapse) need synapse drivers "
        "of their own (one STP state per driver, one driver per source and setting); use fewer such "
        "sources per hemisphere (at most 128)."
        if c["stp_settings"]
        else ""
    )
    return (
        f"Projections into hemisphere {h} need {2 * int(drivers[:, h].sum())} synapse rows "
        f"({int(drivers[:, h].sum())} drivers in {drivers.shape[0]} source groups, 32 per PADI bus), "
        f"but the hemisphere has {hw.N_ROWS} rows ({hw.N_DRIVERS} drivers). Rows per target neuron: "
        f"{parts}. Sources are bundled 64 per row address, so sparse random connectivity needs more "
        "rows than its fan-in. Fix: reduce the connectivity, place (pin) the target population over "
        "both hemispheres, or keep weights at most 63 steps." + stp_note
    )


def _pack_buses(spec, c, drivers):
    """Assign each group a PADI bus (0..3) and a row select (0..31), largest first."""
    n_groups = drivers.shape[0]
    load = np.zeros((hw.N_HEMISPHERES, hw.N_PADI_BUSES), dtype=np.int64)
    n_selects = np.zeros(hw.N_PADI_BUSES, dtype=np.int64)
    bus = np.empty(n_groups, dtype=np.int64)
    select = np.empty(n_groups, dtype=np.int64)
    for g in np.argsort(-drivers.sum(axis=1), kind="stable"):
        new = load + drivers[g][:, None]
        fits = (new <= hw.DRIVERS_PER_PADI_BUS).all(axis=0) & (n_selects < hw.N_ROW_SELECTS)
        if not fits.any():
            worst = int(np.argmax(drivers.sum(axis=0)))
            raise RoutingError(_hemisphere_message(spec, c, worst, drivers))
        b = int(np.flatnonzero(fits)[np.argmin(new.max(axis=0)[fits])])
        bus[g], select[g] = b, n_selects[b]
        load[:, b] = new[:, b]
        n_selects[b] += 1
    return bus, select


def route_projections(spec: NetworkSpec, placement: Placement) -> Routing:
    """Give every source an event address and every connection its synapses.

    Parameters
    ----------
    spec : NetworkSpec
        The network (weights in integer steps).
    placement : Placement
        Result of :func:`place_populations` for ``spec``.

    Returns
    -------
    Routing

    Raises
    ------
    RoutingError
        When the connections need more synapse rows, drivers or addresses than the chip
        has; the message names the projections, the resource and the numbers.

    Examples
    --------
    >>> from pynn_brainscales2.mapping import (
    ...     NetworkSpec, PopulationSpec, ProjectionSpec, place_populations)
    >>> spec = NetworkSpec(
    ...     (PopulationSpec("in", 2, "external"), PopulationSpec("out", 2)),
    ...     (ProjectionSpec("in->out", "in", "out", [0, 1], [1, 1], [20, 100]),))
    >>> routing = route_projections(spec, place_populations(spec))
    >>> routing.synapses["in->out"].n_pieces.tolist()  # 100 steps = 63 + 37: two rows
    [1, 2]
    >>> routing.rows_used().tolist()  # three synapses onto neuron 1: three rows
    [3, 0]
    """
    c = _pieces(spec, placement)
    c["compartments"] = placement.compartments
    n_sources = int(c["offsets"][-1])
    active, conn_rank = np.unique(c["src"], return_inverse=True)
    c["p_rank"] = conn_rank.reshape(-1)[c["p_conn"]]
    capacity = hw.N_PADI_BUSES * hw.N_ROW_SELECTS * hw.N_LABELS
    if active.size > capacity:
        raise RoutingError(
            f"The projections have {active.size} distinct sources; the chip can address {capacity} "
            f"({hw.N_PADI_BUSES} PADI buses x {hw.N_ROW_SELECTS} row selects x {hw.N_LABELS} labels). "
            "Reduce the number of source neurons."
        )
    col_rows = np.bincount(c["p_h"] * _COLS + c["p_col"], minlength=hw.N_CIRCUITS)
    if col_rows.size and col_rows.max() > hw.N_ROWS:
        worst = int(np.argmax(col_rows))
        raise RoutingError(
            _fan_in_message(spec, c, worst, int(col_rows[worst]), f"a hemisphere has {hw.N_ROWS}")
        )

    bounds, group, key, rows, drivers = _make_groups(spec, c, active.size)
    n_groups = bounds.size
    bus, select = _pack_buses(spec, c, drivers)

    # drivers and rows of every (group, hemisphere): exc rows first, then inh rows
    row_modes = np.full((hw.N_HEMISPHERES, hw.N_ROWS), hw.ROW_OFF, dtype=np.uint8)
    driver_select = np.zeros((hw.N_HEMISPHERES, hw.N_DRIVERS), dtype=np.uint8)
    driver_group = np.full((hw.N_HEMISPHERES, hw.N_DRIVERS), -1, dtype=np.int64)
    n_cls = len(c["stp_settings"]) + 1
    driver_stp = np.zeros((hw.N_HEMISPHERES, hw.N_DRIVERS), dtype=np.int64)
    row_start = np.zeros((n_groups, hw.N_HEMISPHERES, n_cls, 2), dtype=np.int64)
    flat_rows = []
    used = np.zeros((hw.N_HEMISPHERES, hw.N_PADI_BUSES), dtype=np.int64)
    n_flat = 0
    for g in range(n_groups):
        for h in range(hw.N_HEMISPHERES):
            n_drv = int(drivers[g, h])
            if n_drv == 0:
                continue
            d = bus[g] + hw.N_PADI_BUSES * np.arange(used[h, bus[g]], used[h, bus[g]] + n_drv)
            used[h, bus[g]] += n_drv
            driver_select[h, d] = select[g]
            driver_group[h, d] = g
            first = 0
            for k in range(n_cls):
                n_exc, n_inh = int(rows[g, h, k, 0]), int(rows[g, h, k, 1])
                n_k = -(-(n_exc + n_inh) // hw.ROWS_PER_DRIVER)
                if n_k == 0:
                    continue
                dk = d[first : first + n_k]
                first += n_k
                driver_stp[h, dk] = k
                r = np.stack([2 * dk, 2 * dk + 1], axis=1).reshape(-1)
                row_modes[h, r[:n_exc]] = hw.ROW_EXC
                row_modes[h, r[n_exc : n_exc + n_inh]] = hw.ROW_INH
                row_start[g, h, k] = (n_flat, n_flat + n_exc)
                flat_rows.append(r[: n_exc + n_inh])
                n_flat += n_exc + n_inh
    flat_rows = np.concatenate(flat_rows) if flat_rows else np.zeros(0, dtype=np.int64)

    # rank of each piece among the pieces of its (group, hemisphere, column, receptor)
    order = np.argsort(key, kind="stable")
    sk = key[order]
    start = np.r_[True, sk[1:] != sk[:-1]] if sk.size else np.zeros(0, dtype=bool)
    first = np.flatnonzero(start)
    rank = np.empty(key.size, dtype=np.int64)
    rank[order] = np.arange(sk.size) - first[np.cumsum(start) - 1]
    pg = group[c["p_rank"]]
    p_row = flat_rows[row_start[pg, c["p_h"], c["p_stp"], c["p_inh"]] + rank]
    label = c["p_rank"] - bounds[pg]

    weights = np.zeros((hw.N_HEMISPHERES, hw.N_ROWS, _COLS), dtype=np.uint8)
    labels = np.zeros_like(weights)
    weights[c["p_h"], p_row, c["p_col"]] = c["p_steps"]
    labels[c["p_h"], p_row, c["p_col"]] = label

    # event addresses of the sources
    src_group = np.searchsorted(bounds, np.arange(active.size), side="right") - 1
    address = np.full(n_sources, -1, dtype=np.int64)
    address[active] = (select[src_group] << 6) | (np.arange(active.size) - bounds[src_group])
    bus_mask = np.zeros(n_sources, dtype=np.uint8)
    for h in range(hw.N_HEMISPHERES):
        on = np.bincount(c["p_rank"][c["p_h"] == h], minlength=active.size) > 0
        bus_mask[active[on]] |= (1 << (h * hw.N_PADI_BUSES + bus[src_group[on]])).astype(np.uint8)
    sources = {
        p.label: SourceRoute(
            _readonly(address[c["offsets"][i] : c["offsets"][i + 1]].copy()),
            _readonly(bus_mask[c["offsets"][i] : c["offsets"][i + 1]].copy()),
        )
        for i, p in enumerate(spec.populations)
    }

    synapses = {}
    for k, p in enumerate(spec.projections):
        lo, hi = c["conn_ptr"][k], c["conn_ptr"][k + 1]
        ps = slice(c["piece_ptr"][lo], c["piece_ptr"][hi])
        synapses[p.label] = SynapseMap(
            piece_ptr=_readonly(c["piece_ptr"][lo : hi + 1] - c["piece_ptr"][lo]),
            connection=_readonly(c["p_conn"][ps] - lo),
            piece=_readonly(c["p_piece"][ps].copy()),
            hemisphere=_readonly(c["p_h"][ps].copy()),
            row=_readonly(p_row[ps].copy()),
            column=_readonly(c["p_col"][ps].copy()),
            label=_readonly(label[ps].copy()),
            steps=_readonly(c["p_steps"][ps].copy()),
        )
    return Routing(
        sources=MappingProxyType(sources),
        synapses=MappingProxyType(synapses),
        row_modes=_readonly(row_modes),
        driver_row_select=_readonly(driver_select),
        driver_group=_readonly(driver_group),
        group_padi_bus=_readonly(bus),
        group_row_select=_readonly(select),
        synapse_weights=_readonly(weights),
        synapse_labels=_readonly(labels),
        driver_stp=_readonly(driver_stp),
        stp_settings=c["stp_settings"],
    )
