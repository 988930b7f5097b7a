"""PyNN networks that do not fit one chip, run as sequential single-chip partitions.

With ``setup(partition=True)``, a network whose mapping fails (or that needs more circuits
than one chip has) and whose neuron populations form a directed acyclic graph (spike
sources outside it) runs as a sequence of chip runs. The neuron populations are taken in
topological order and packed greedily: a population joins the current run when the run
still maps with it (:func:`~pynn_brainscales2.mapping.map_network`), else it starts the
next run. In each run, populations of earlier runs that project into it are replayed as
host spike sources (like a ``SpikeSourceArray``) from the spikes the chip recorded, at the
middle of their 8 ns time stamps; connections inside a run stay on the chip. Recorded
spikes and CADC membrane traces of every population come from the run that held it, so
``get_data()`` returns the usual Neo blocks.

What changes when partitioned:

- The unit of a partition is a whole population: a population that does not fit one chip
  on its own cannot be split (the error says so). For layer stacks in the torch bridge,
  :mod:`pynn_brainscales2.snn.partition` splits layers by neuron ranges.
- Each run is a separate chip experiment: the membranes of different runs are recorded
  in different runs (same duration, same CADC sampling grid), replayed spikes may reach
  their synapses one integration step (``chip.dt_us``) off the on-chip route, each run
  has its own calibration (identical targets give identical values), and trial noise is
  drawn per run.
- Not supported (a clear error): plasticity rules (a rule sees one chip run),
  recurrent connections among neuron populations (a cycle must share one run and does not
  fit), the chip's background generators (``SpikeSourcePoissonOnChip``: play Poisson spikes
  in from the host with ``SpikeSourcePoisson``), and MADC recording (record ``v`` with
  ``readout='cadc'``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cysim import constants as C

from . import hardware as hw
from .errors import ChipFeatureError, PlacementError, RecordingError, RoutingError
from .execution import Executor
from .mapping import EXTERNAL, NEURON, NetworkSpec, PopulationSpec, map_network


@dataclass
class PartitionRun:
    """One chip run: neuron populations ``keys`` with their mapping and executor."""

    keys: tuple
    mapping: object
    executor: Executor


@dataclass
class PartitionedCompiled:
    """The runs of a partitioned network, kept between ``run()`` calls."""

    key: tuple
    runs: list


class PartitionedObservables:
    """The observables of a partitioned run, addressed like
    :class:`~pynn_brainscales2.execution.Observables`: each population's from its run."""

    def __init__(self, by_key: dict, runs: list):
        self.by_key = by_key
        self.runs = runs

    @property
    def trials(self) -> int:
        return 1

    def _of(self, population: str):
        try:
            return self.by_key[population]
        except KeyError:
            raise RecordingError(f"Population key {population!r} ran on no partition.") from None

    def spikes_us(self, population: str, trial: int = 0):
        return self._of(population).spikes_us(population, trial)

    def spikes_ms(self, population: str, trial: int = 0):
        return self._of(population).spikes_ms(population, trial)

    def spike_counts(self, population: str):
        return self._of(population).spike_counts(population)

    def cadc_times_ms(self):
        return self.runs[0].cadc_times_ms()

    def cadc_lsb(self, population: str, neurons=None):
        return self._of(population).cadc_lsb(population, neurons)

    def v_mv(self, population: str, neurons=None):
        return self._of(population).v_mv(population, neurons)

    def madc_times_ms(self):
        raise RecordingError("A partitioned network records 'v' through the CADC only; use readout='cadc'.")

    madc_v_mv = madc_times_ms


def _successors(spec: NetworkSpec) -> dict:
    neuron = {p.label for p in spec.populations if p.kind == NEURON}
    succ = {k: set() for k in neuron}
    for proj in spec.projections:
        if proj.pre in neuron:
            succ[proj.pre].add(proj.post)
    return succ


def find_cycle(spec: NetworkSpec):
    """Labels of a cycle among the neuron populations (a self-loop counts), or None."""
    succ = _successors(spec)
    color, parent = {k: 0 for k in succ}, {}
    for root in succ:
        if color[root]:
            continue
        stack = [(root, iter(sorted(succ[root])))]
        color[root] = 1
        while stack:
            node, it = stack[-1]
            for nxt in it:
                if color[nxt] == 1:  # back edge: nxt ... node -> nxt
                    cycle, cur = [node], node
                    while cur != nxt:
                        cur = parent[cur]
                        cycle.append(cur)
                    return cycle[::-1]
                if color[nxt] == 0:
                    color[nxt], parent[nxt] = 1, node
                    stack.append((nxt, iter(sorted(succ[nxt]))))
                    break
            else:
                color[node] = 2
                stack.pop()
    return None


def _topological(spec: NetworkSpec) -> list:
    succ = _successors(spec)
    indeg = {k: 0 for k in succ}
    for k in succ:
        for n in succ[k]:
            indeg[n] += 1
    order_of = {p.label: i for i, p in enumerate(spec.populations)}
    ready = sorted((k for k, d in indeg.items() if d == 0), key=order_of.get)
    out = []
    while ready:
        k = ready.pop(0)
        out.append(k)
        for n in sorted(succ[k], key=order_of.get):
            indeg[n] -= 1
            if indeg[n] == 0:
                ready.append(n)
        ready.sort(key=order_of.get)
    return out


def sub_spec(spec: NetworkSpec, keys) -> NetworkSpec:
    """The spec of one run: its neuron populations, their incoming projections, and their
    sources (neuron populations of other runs become ``"external"``)."""
    keys = set(keys)
    projs = tuple(p for p in spec.projections if p.post in keys)
    needed = keys | {p.pre for p in projs}
    pops = []
    for p in spec.populations:
        if p.label not in needed:
            continue
        if p.kind == NEURON and p.label not in keys:
            pops.append(PopulationSpec(p.label, p.size, EXTERNAL))
        else:
            pops.append(p)
    return NetworkSpec(tuple(pops), projs)


def map_within(spec: NetworkSpec, max_circuits=None):
    """:func:`map_network`, and a :class:`PlacementError` when it uses more than
    ``max_circuits`` circuits (None: the chip's 512)."""
    mapping = map_network(spec)
    budget = hw.N_CIRCUITS if max_circuits is None else int(max_circuits)
    if mapping.placement.n_used > budget:
        raise PlacementError(
            f"The network uses {mapping.placement.n_used} neuron circuits; setup(max_circuits={budget}) allows "
            f"{budget}. Raise max_circuits (at most {hw.N_CIRCUITS})."
        )
    return mapping


def plan_runs(spec: NetworkSpec, label_of: dict, max_circuits=None) -> list:
    """Neuron population keys per run, packed greedily in topological order; with the
    mapping of each run: ``[(keys, MappingResult), ...]``."""
    runs, cur, cur_map = [], [], None
    for k in _topological(spec):
        try:
            m = map_within(sub_spec(spec, cur + [k]), max_circuits)
            cur, cur_map = cur + [k], m
            continue
        except (PlacementError, RoutingError) as err:
            if not cur:
                raise _alone(spec, k, label_of, err) from err
        runs.append((tuple(cur), cur_map))
        try:
            cur, cur_map = [k], map_within(sub_spec(spec, [k]), max_circuits)
        except (PlacementError, RoutingError) as err:
            raise _alone(spec, k, label_of, err) from err
    if cur:
        runs.append((tuple(cur), cur_map))
    return runs


def _alone(spec, key, label_of, err):
    return type(err)(
        f"setup(partition=True): population {label_of.get(key, key)!r} ({spec.population(key).size} neurons) "
        f"does not fit one chip on its own, with its inputs played in from the host: {err} Partitioning of PyNN "
        "networks cuts between populations; split the population into smaller ones (or, for a layer stack, "
        "use the torch bridge, which splits layers by neuron ranges)."
    )


def check_partitionable(state, spec: NetworkSpec, label_of: dict, err: Exception) -> None:
    """Raise a clear error for what partitioning cannot handle."""
    cycle = find_cycle(spec)
    if cycle is not None:
        names = " -> ".join(repr(label_of.get(k, k)) for k in cycle + cycle[:1])
        raise type(err)(
            f"The network does not fit one chip ({err}) and it is recurrent: {names}. setup(partition=True) runs "
            "populations one after another and passes spikes forward only, so the populations of a cycle, which "
            "exchange spikes during the run, must share one chip. Make the cycle fit (fewer neurons or "
            "connections) or remove the recurrent projection."
        ) from err
    rules = [p for p in state.projections if getattr(p, "plasticity_rule", None) is not None]
    if rules or state.rules:
        raise ChipFeatureError(
            f"The network does not fit one chip ({err}) and has plasticity rules; setup(partition=True) does not "
            "support plasticity across partitions (a rule sees one chip run). Remove the rules or make the "
            "network fit one chip."
        ) from err
    background = [p.label for p in spec.populations if p.kind not in (NEURON, EXTERNAL)]
    if background:
        raise ChipFeatureError(
            f"The network does not fit one chip ({err}) and uses the chip's background generators "
            f"({', '.join(repr(label_of.get(k, k)) for k in background)}); with setup(partition=True) every run "
            "would draw its own spikes. Use host spike sources (SpikeSourcePoisson) instead."
        ) from err


def is_feed_forward(spec: NetworkSpec) -> bool:
    return find_cycle(spec) is None


def executor_for(state, mapping) -> Executor:
    """The simulator's executor of one mapped network (its chip, speed-up, voltage map, pool)."""
    return Executor(
        mapping, mapping.config, state.chip, state.speedup, state.vmap, pool=getattr(state, "executor", None)
    )


def build(state, spec: NetworkSpec, key, label_of: dict) -> PartitionedCompiled:
    runs = [
        PartitionRun(keys, mapping, executor_for(state, mapping))
        for keys, mapping in plan_runs(spec, label_of, getattr(state, "max_circuits", None))
    ]
    return PartitionedCompiled(key, runs)


class _View:
    """The state as one run sees it: only the run's neuron populations."""

    def __init__(self, state, populations):
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "populations", populations)

    def __getattr__(self, name):
        return getattr(self._state, name)


def run(
    state, compiled: PartitionedCompiled, spec, key_of, gains, t_stop, configure, readout, sources, seeds
):
    """Run the partitions one after another; returns ``(observables, cadc_period_ms, madc)``."""
    pop_of_key = {key_of[id(p)]: p for p in state.populations}
    replay, by_key, all_obs = {}, {}, []
    cadc_period_ms, madc = None, {}
    for k, run_ in enumerate(compiled.runs):
        view = _View(state, [pop_of_key[key] for key in run_.keys])
        cfg = configure(view, run_.mapping, key_of, gains, t_stop)
        run_.executor.set_config(cfg)
        for ps in spec.projections:
            if ps.post in run_.keys:
                run_.executor.set_weights(ps.label, ps.steps)
        cadc_period_ms, madc = readout(state, run_.executor.config)
        if madc:
            raise RecordingError(
                "setup(partition=True): 'v' recorded through the MADC; a partitioned network records membranes "
                "through the CADC only. Use record('v', readout='cadc') or a sampling interval of at least the "
                "CADC's period."
            )
        run_.executor.config.madc_circuits = []
        stimuli = {}
        for p in run_.mapping.spec.populations:
            if p.kind != EXTERNAL:
                continue
            if p.label in replay:
                stimuli[p.label] = replay[p.label]
                continue
            pop = pop_of_key[p.label]
            idx, t = sources.get(id(pop), (np.zeros(0, np.int64), np.zeros(0)))
            if idx.size:
                stimuli[p.label] = (idx, hw.bio_ms_to_hw_us(t, state.speedup))
        duration_us = (
            float(hw.bio_ms_to_hw_us(t_stop, state.speedup)) + run_.executor.config.cadc_period_us + 0.2
        )
        obs = run_.executor.run(stimuli, duration_us=duration_us, trials=1, trial_seeds=[int(seeds[k])])
        all_obs.append(obs)
        for key in run_.keys:
            by_key[key] = obs
            idx, t_us = obs.spikes_us(key, 0)
            replay[key] = (idx, t_us + 0.5 * C.FPGA_TICK_US)  # the middle of the time-stamp tick
    return PartitionedObservables(by_key, all_obs), cadc_period_ms, madc
