"""Partitioning: a feed-forward layer stack that does not fit one chip, as sequential runs.

One chip has 512 neuron circuits, and one circuit receives at most 256 synapse rows: 128
inputs of signed weight (an excitatory and an inhibitory row each), 256 of one sign.
Neighbouring circuits can form one logical (multi-compartment) neuron of ``c`` circuits
whose inputs are spread over the ``c`` columns, so fan-in grows to ``c x 128``. Per layer
``i`` of a stack ``l_0 -> l_1 -> ... -> l_L`` (``l_0`` the inputs):

.. math::

    c_i = \\lceil l_{i-1} / 128 \\rceil, \\qquad
    N_{c,i} = \\lfloor 512 / c_i \\rfloor, \\qquad
    p_i = \\lceil l_i / N_{c,i} \\rceil .

Layer ``i`` then runs as ``p_i`` chip runs, each with all ``l_{i-1}`` outputs of the
previous layer played in as external spike events and a contiguous range of at most
``N_{c,i}`` of the layer's neurons on the chip. The runs of one layer are independent; the
next layer starts from their concatenated output spikes. ``484 -> 256 -> 10`` gives
``c = 4, N_c = 128, p = 2`` for the hidden layer and ``c = 2, p = 1`` for the output:
three runs. A logical neuron lies within one hemisphere, so where ``c`` does not divide
256, ``N_c = 2 floor(256 / c)`` can be one less than ``floor(512 / c)``. A stack whose
neurons fit the chip at once runs as one.

:func:`plan_feedforward` does the arithmetic (pure data, no chip);
:meth:`PartitionPlan.check` maps every run with :func:`~.result.map_network` (synapse
rows, drivers, PADI buses and event addresses included) and names the run that does not fit.

Examples
--------
>>> plan = plan_feedforward([484, 256, 10])
>>> plan.n_runs, [(l.circuits_per_neuron, l.partitions) for l in plan.layers]
(3, [(4, 2), (2, 1)])
>>> [(r.layer, r.start, r.stop) for r in plan.runs]
[(1, 0, 128), (1, 128, 256), (2, 0, 10)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import hardware as hw
from ..errors import PlacementError, RoutingError

#: Most circuits one logical neuron can merge (neighbouring circuits sharing a membrane).
MAX_CIRCUITS_PER_NEURON = int(getattr(hw, "MAX_CIRCUITS_PER_NEURON", 64))
#: Sources the chip can tell apart (PADI buses x row selects x labels).
MAX_SOURCES = hw.N_PADI_BUSES * hw.N_ROW_SELECTS * hw.N_LABELS

__all__ = [
    "LayerPlan",
    "PartitionPlan",
    "PartitionRun",
    "MAX_CIRCUITS_PER_NEURON",
    "inputs_per_circuit",
    "plan_feedforward",
]


def inputs_per_circuit(signed: bool = True, rows_per_weight: int = 1) -> int:
    """Inputs one circuit takes: 256 synapse rows over the rows each input needs.

    A signed weight needs an excitatory and an inhibitory row, a weight above 63 steps one
    row per 63 steps (``rows_per_weight``).

    >>> inputs_per_circuit(), inputs_per_circuit(signed=False), inputs_per_circuit(rows_per_weight=2)
    (128, 256, 64)
    """
    return hw.N_ROWS // ((2 if signed else 1) * int(rows_per_weight))


@dataclass(frozen=True)
class LayerPlan:
    """How one layer of the stack is cut.

    Attributes
    ----------
    layer : int
        Position in ``layer_sizes`` (1 for the first layer of neurons).
    name : str
    fan_in, size : int
        ``l_{i-1}`` and ``l_i``.
    circuits_per_neuron : int
        ``c``: circuits per logical neuron.
    neurons_per_run : int
        ``N_c``: logical neurons of this size that fit one run (``floor(max_circuits / c)``,
        at most ``2 floor(256 / c)``: a logical neuron lies within one hemisphere).
    partitions : int
        ``p``: runs of this layer (1 also when the layer shares the one run of a stack that
        fits the chip at once).
    ranges : tuple of (start, stop)
        Neuron range of each partition.
    rows_per_weight : int
        Synapse rows per input and sign (``max_steps`` above 63 steps needs more).
    """

    layer: int
    name: str
    fan_in: int
    size: int
    circuits_per_neuron: int
    neurons_per_run: int
    partitions: int
    ranges: tuple
    rows_per_weight: int = 1

    @property
    def circuits(self) -> int:
        """Circuits the whole layer needs."""
        return self.size * self.circuits_per_neuron


@dataclass(frozen=True)
class PartitionRun:
    """One chip run of a plan: neurons ``start:stop`` of layer ``layer`` (or, for a stack that
    fits the chip at once, all layers: ``layers`` lists them)."""

    index: int
    layers: tuple  # ((layer, start, stop, circuits_per_neuron), ...)

    @property
    def layer(self) -> int:
        """The (first) layer of the run."""
        return self.layers[0][0]

    @property
    def start(self) -> int:
        return self.layers[0][1]

    @property
    def stop(self) -> int:
        return self.layers[0][2]

    @property
    def size(self) -> int:
        """Logical neurons on the chip in this run."""
        return sum(stop - start for _, start, stop, _ in self.layers)

    @property
    def circuits(self) -> int:
        """Circuits the run uses."""
        return sum((stop - start) * c for _, start, stop, c in self.layers)


@dataclass(frozen=True)
class PartitionPlan:
    """Result of :func:`plan_feedforward`: per layer ``c``, ``N_c``, ``p`` and the runs.

    ``str(plan)`` is a table; :attr:`runs` lists the chip runs in execution order (the runs
    of one layer are independent of each other).
    """

    layer_sizes: tuple
    layers: tuple
    runs: tuple
    max_circuits: int = hw.N_CIRCUITS
    signed: bool = True

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def partitioned(self) -> bool:
        """Whether the stack needs more than one chip run."""
        return len(self.runs) > 1

    def runs_of(self, layer: int) -> tuple:
        """The runs that hold neurons of ``layer``."""
        return tuple(r for r in self.runs if any(s[0] == layer for s in r.layers))

    def __str__(self) -> str:
        head = (
            f"PartitionPlan {' -> '.join(str(s) for s in self.layer_sizes)}: {self.n_runs} chip run"
            f"{'s' if self.n_runs != 1 else ''} (budget {self.max_circuits} circuits, "
            f"{'signed' if self.signed else 'same-sign'} inputs)"
        )
        rows = [("layer", "fan-in", "size", "c", "N_c", "p", "neurons per run")]
        for lp in self.layers:
            ranges = ", ".join(f"{a}:{b}" for a, b in lp.ranges)
            rows.append(
                (
                    f"{lp.layer} {lp.name}".strip(),
                    str(lp.fan_in),
                    str(lp.size),
                    str(lp.circuits_per_neuron),
                    str(lp.neurons_per_run),
                    str(lp.partitions),
                    ranges,
                )
            )
        widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
        lines = [head] + [
            "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        if self.n_runs == 1 and len(self.layers) > 1:
            lines.append("  all layers share one run")
        else:
            for r in self.runs:
                lines.append(
                    f"  run {r.index}: layer {r.layer}, neurons {r.start}:{r.stop} ({r.circuits} circuits)"
                )
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = ", ".join(f"c={lp.circuits_per_neuron} p={lp.partitions}" for lp in self.layers)
        return f"PartitionPlan({list(self.layer_sizes)}, runs={self.n_runs}: {parts})"

    # --- checking by mapping -------------------------------------------------------------
    def network_spec(self, run: PartitionRun, max_steps: int | None = None):
        """The :class:`~.spec.NetworkSpec` of one run with all-to-all projections (one
        ``"external"`` population ``"in"`` of ``l_{i-1}`` sources, one neuron population
        ``"L<i>"`` per layer part, an excitatory and, for signed inputs, an inhibitory
        projection per layer; ``max_steps`` reserves rows as the front ends do)."""
        from .spec import EXCITATORY, EXTERNAL, INHIBITORY, NetworkSpec, PopulationSpec, ProjectionSpec

        first = run.layers[0][0]
        pops = [PopulationSpec("in", self.layer_sizes[first - 1], EXTERNAL)]
        projs = []
        pre = "in"
        for layer, start, stop, c in run.layers:
            label = f"L{layer}"
            pops.append(PopulationSpec(label, stop - start, circuits_per_neuron=c))
            n_in, n_out = (pops[-2].size, stop - start)
            post_idx, pre_idx = np.meshgrid(np.arange(n_out), np.arange(n_in), indexing="ij")
            rpw = self.layers[layer - 1].rows_per_weight
            steps = np.zeros(n_in * n_out, dtype=np.int64)
            ms = max_steps if max_steps is not None else hw.WEIGHT_MAX * rpw
            for receptor in (EXCITATORY, INHIBITORY) if self.signed else (EXCITATORY,):
                projs.append(
                    ProjectionSpec(
                        f"{pre}->{label}:{receptor[:3]}",
                        pre,
                        label,
                        pre_idx.ravel(),
                        post_idx.ravel(),
                        steps,
                        receptor,
                        max_steps=ms,
                    )
                )
            pre = label
        return NetworkSpec(tuple(pops), tuple(projs))

    def check(self, max_steps: int | None = None) -> PartitionPlan:
        """Map every run (placement and routing, no chip); returns the plan.

        Raises
        ------
        PlacementError, RoutingError
            naming the run, its layer and neuron range, ``c``, the fan-in and the reason
            the mapping gave.
        """
        from .result import map_network

        seen = set()
        for run in self.runs:
            shape = tuple((layer, stop - start, c) for layer, start, stop, c in run.layers)
            if shape in seen:
                continue
            seen.add(shape)
            try:
                map_network(self.network_spec(run, max_steps))
            except (PlacementError, RoutingError) as err:
                raise type(err)(_run_failed(self, run, err)) from err
        return self


def _run_failed(plan: PartitionPlan, run: PartitionRun, err: Exception) -> str:
    layer, start, stop, c = run.layers[0]
    lp = plan.layers[layer - 1]
    what = (
        "the whole stack in one run"
        if len(run.layers) > 1
        else f"run {run.index} (layer {layer} {lp.name!r}, neurons {start}:{stop}, c = {c})"
    )
    return (
        f"Partition plan {list(plan.layer_sizes)}: {what} does not map onto one chip: every one of its "
        f"{lp.fan_in} inputs is an external source that needs synapse rows in each hemisphere it reaches "
        f"({'2 rows per input and weight row for signed weights' if plan.signed else '1 row per input'}). "
        f"Mapping said: {err}"
    )


def _as_list(value, n: int, name: str) -> list:
    if isinstance(value, (list, tuple, np.ndarray)):
        out = [int(v) for v in value]
        if len(out) != n:
            raise PlacementError(
                f"plan_feedforward: {name} has {len(out)} entries for {n} layers; give one per layer."
            )
        return out
    return [int(value)] * n


def plan_feedforward(
    layer_sizes,
    *,
    signed: bool = True,
    rows_per_weight=1,
    max_circuits: int = hw.N_CIRCUITS,
    names=None,
    split: bool | None = None,
    check: bool = False,
    max_steps: int | None = None,
) -> PartitionPlan:
    """Plan the chip runs of a feed-forward layer stack (seed eq. 19).

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[l_0, l_1, ..., l_L]``: inputs first, then the layers of neurons (all-to-all
        between consecutive layers).
    signed : bool
        Inputs of either sign (an excitatory and an inhibitory row each: 128 per circuit),
        or of one sign (256 per circuit).
    rows_per_weight : int or sequence of int
        Synapse rows per input and sign (weights above 63 steps need ``ceil(steps / 63)``);
        one value for all layers or one per layer. Default 1.
    max_circuits : int
        Circuits a run may use (default all 512; smaller to test partitioning on small
        networks).
    names : sequence of str, optional
        A name per layer of neurons, for the table and messages.
    split : bool, optional
        ``None`` (default): one run when the whole stack fits (circuits and an estimate of
        the synapse rows per hemisphere), else ``p_i`` runs per layer. ``True``: always one
        layer per run. ``False``: one run (error if the circuits do not suffice).
    check : bool
        Map every run (:meth:`PartitionPlan.check`) before returning.
    max_steps : int, optional
        Rows reserved per connection when checking (default ``63 x rows_per_weight``).

    Returns
    -------
    PartitionPlan

    Raises
    ------
    PlacementError
        A layer needs more than 64 circuits per neuron (fan-in above 64 x 128 signed
        inputs), more circuits per neuron than the budget, or a layer is empty.
    RoutingError
        A layer has more inputs than the chip can address (8192), or (``check``) a run does
        not map.

    Examples
    --------
    >>> print(plan_feedforward([484, 256, 10], names=["hidden", "out"]))  # doctest: +NORMALIZE_WHITESPACE
    PartitionPlan 484 -> 256 -> 10: 3 chip runs (budget 512 circuits, signed inputs)
      layer     fan-in  size  c  N_c  p  neurons per run
      1 hidden  484     256   4  128  2  0:128, 128:256
      2 out     256     10    2  256  1  0:10
      run 0: layer 1, neurons 0:128 (512 circuits)
      run 1: layer 1, neurons 128:256 (512 circuits)
      run 2: layer 2, neurons 0:10 (20 circuits)
    >>> plan_feedforward([5, 20, 3]).n_runs
    1
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2:
        raise PlacementError(
            f"plan_feedforward: layer_sizes = {sizes}; give the number of inputs and at least one layer of neurons."
        )
    for k, s in enumerate(sizes):
        if s < 1:
            raise PlacementError(
                f"plan_feedforward: layer {k} has size {s}; every layer needs at least one neuron."
            )
    n_layers = len(sizes) - 1
    max_circuits = int(max_circuits)
    if not 1 <= max_circuits <= hw.N_CIRCUITS:
        raise PlacementError(
            f"plan_feedforward: max_circuits = {max_circuits}; allowed 1..{hw.N_CIRCUITS} (the chip's circuits)."
        )
    rpw = _as_list(rows_per_weight, n_layers, "rows_per_weight")
    names = [""] * n_layers if names is None else [str(n) for n in names]
    if len(names) != n_layers:
        raise PlacementError(
            f"plan_feedforward: {len(names)} names for {n_layers} layers; give one per layer."
        )
    c_limit = min(MAX_CIRCUITS_PER_NEURON, max_circuits)
    geometry = []
    for i in range(1, n_layers + 1):
        fan_in, size, r = sizes[i - 1], sizes[i], rpw[i - 1]
        if not 1 <= r <= hw.N_ROWS // 2:
            raise PlacementError(
                f"plan_feedforward: rows_per_weight = {r} for layer {i}; allowed 1..{hw.N_ROWS // 2}."
            )
        label = f"layer {i}" + (f" {names[i - 1]!r}" if names[i - 1] else "")
        if fan_in > MAX_SOURCES:
            raise RoutingError(
                f"{label} has a fan-in of {fan_in} inputs; the chip can address {MAX_SOURCES} sources "
                f"({hw.N_PADI_BUSES} PADI buses x {hw.N_ROW_SELECTS} row selects x {hw.N_LABELS} labels) "
                "per run, and partitioning splits only the neurons of a layer, never its inputs. Reduce the "
                "size of the previous layer, or connect it sparsely."
            )
        per_circuit = inputs_per_circuit(signed, r)
        c = math.ceil(fan_in / per_circuit)
        if c > c_limit:
            why = (
                f"a logical neuron merges at most {MAX_CIRCUITS_PER_NEURON} circuits"
                if c > MAX_CIRCUITS_PER_NEURON
                else f"the budget is {max_circuits} circuits per run"
            )
            raise PlacementError(
                f"{label} has a fan-in of {fan_in} inputs ({per_circuit} per circuit with "
                f"{'signed' if signed else 'same-sign'} weights and {r} row(s) per weight), which needs "
                f"c = {c} circuits per neuron; {why}, so the largest fan-in is {c_limit * per_circuit}. "
                "Reduce the size of the previous layer"
                + (", keep weights at most 63 steps (fewer rows per weight)" if r > 1 else "")
                + (", or raise max_circuits" if c <= MAX_CIRCUITS_PER_NEURON else "")
                + "."
            )
        # a logical neuron lies within one hemisphere
        n_c = min(max_circuits // c, hw.N_HEMISPHERES * (hw.N_COLUMNS // c))
        geometry.append((fan_in, size, c, n_c, r, names[i - 1]))
    total = sum(size * c for _, size, c, _, _, _ in geometry)
    one_run = split is False or (split is None and total <= max_circuits and _rows_fit(geometry, signed))
    if split is False and total > max_circuits:
        raise PlacementError(
            f"plan_feedforward(split=False): the stack {sizes} needs {total} circuits; a run has {max_circuits}. "
            "Let the planner split it (split=None)."
        )
    layers, runs = [], []
    for i, (fan_in, size, c, n_c, r, name) in enumerate(geometry, start=1):
        p = 1 if one_run else math.ceil(size / n_c)
        bounds = [size * k // p for k in range(p + 1)]  # near-equal parts
        ranges = tuple((bounds[k], bounds[k + 1]) for k in range(p))
        layers.append(LayerPlan(i, name, fan_in, size, c, n_c, p, ranges, r))
        if not one_run:
            for a, b in ranges:
                runs.append(PartitionRun(len(runs), ((i, a, b, c),)))
    if one_run:
        runs = [PartitionRun(0, tuple((lp.layer, 0, lp.size, lp.circuits_per_neuron) for lp in layers))]
    plan = PartitionPlan(tuple(sizes), tuple(layers), tuple(runs), max_circuits, bool(signed))
    if check:
        plan.check(max_steps)
    return plan


def _rows_fit(geometry, signed: bool) -> bool:
    """Estimate for a single run: layers placed one after another from circuit 0; each
    hemisphere a layer reaches needs ``(2 if signed) x rows x ceil(fan_in / c)`` rows."""
    rows = np.zeros(hw.N_HEMISPHERES, dtype=np.int64)
    pos = 0
    for fan_in, size, c, _, r, _ in geometry:
        first, last = pos // hw.N_COLUMNS, (pos + size * c - 1) // hw.N_COLUMNS
        need = (2 if signed else 1) * r * math.ceil(fan_in / c)
        rows[first : last + 1] += need
        pos += size * c
    return bool(np.all(rows <= hw.N_ROWS))
