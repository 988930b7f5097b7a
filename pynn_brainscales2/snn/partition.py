"""Chip mode for feed-forward layer stacks that do not fit one chip: sequential partitions.

:func:`make_runner` builds the runner of a chip-mode pass. A network that maps onto one
chip (within the experiment's ``max_circuits``) gets a plain
:class:`~pynn_brainscales2.snn.chip.ChipRunner`, exactly as before. Otherwise, if the pass
is a feed-forward layer stack (one :class:`~.modules.InputNeuron`, then populations each fed
by one :class:`~.modules.Synapse` from the population before it),
:func:`~pynn_brainscales2.mapping.plan_feedforward` cuts every layer into ``p`` partitions
of ``c``-circuit neurons (seed eq. 19) and a :class:`PartitionedRunner` keeps one mapping,
calibration (cached) and executor per partition. A forward pass runs layer by layer: the
partitions of a layer run on the chip one after another (concurrently when the experiment
has an ``executor``), each with all spikes of the previous layer played in as host events
at their FPGA time stamps; their spikes and CADC traces are concatenated along the neuron
axis, so the tensors handed to autograd (surrogate gradients) and to EventProp have the
same form as in an unpartitioned run.

Differences from one chip run: every layer's input spikes are replayed from their 8 ns
time stamps (at the middle of the tick), so an event can reach its synapses one
integration step (``chip.dt_us``) earlier or later than the on-chip route would deliver it
(never with ``chip.dt_us = 0.008``, the tick); each partition is calibrated on its own,
and the calibration may settle one CapMem step apart from the one of the whole network;
the rest level of each trace is measured
before the experiment's first input, as in one run. Recurrent networks cannot be
partitioned (populations of a cycle exchange spikes during the run).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from cysim import constants as C

from .. import hardware as hw
from ..errors import PlacementError, RoutingError
from ..mapping import PopulationSpec, plan_feedforward
from ..mapping.partition import _run_failed
from .chip import ChipRunner, max_gain, weight_range
from .modules import InputNeuron

__all__ = ["PartitionedRunner", "layer_stack", "make_runner"]


def layer_stack(handles: dict, synapses: list):
    """``[input, (synapse, population), ...]`` when the pass is a feed-forward layer stack,
    else None."""
    inputs = [m for m in handles if isinstance(m, InputNeuron)]
    if len(inputs) != 1:
        return None
    out_of = {m: [] for m in handles}
    for m, h in handles.items():
        for s in h.inputs:
            if s.pre.module not in out_of:
                return None
            out_of[s.pre.module].append((s.module, m))
    stack, seen, cur = [inputs[0]], {inputs[0]}, inputs[0]
    while out_of[cur]:
        if len(out_of[cur]) != 1:
            return None
        syn, post = out_of[cur][0]
        if post in seen or len(handles[post].inputs) != 1:
            return None
        stack.append((syn, post))
        seen.add(post)
        cur = post
    if len(stack) - 1 != len(synapses) or len(seen) != len(handles):
        return None
    return stack


def _budget(experiment) -> int:
    return int(getattr(experiment, "max_circuits", None) or hw.N_CIRCUITS)


def _gains(experiment, stack) -> tuple[dict, dict]:
    gain, max_steps = {}, {}
    headroom = getattr(experiment, "weight_headroom", 2.0)
    for syn, post in stack[1:]:
        gain[post], max_steps[post] = weight_range(post, float(syn.weight.detach().abs().max()), headroom)
    return gain, max_steps


def _plan(experiment, stack, max_steps, split):
    return plan_feedforward(
        [stack[0].size] + [post.size for _, post in stack[1:]],
        rows_per_weight=[max_steps[post] // hw.WEIGHT_MAX for _, post in stack[1:]],
        max_circuits=_budget(experiment),
        names=[post.label for _, post in stack[1:]],
        split=split,
    )


def make_runner(experiment, handles: dict, synapses: list):
    """The runner of a chip-mode pass: a :class:`ChipRunner` when the network fits one chip,
    a :class:`PartitionedRunner` for a layer stack that does not; its ``plan`` is the
    :class:`~pynn_brainscales2.mapping.PartitionPlan` (None for networks that are no layer
    stack).

    Raises
    ------
    PlacementError, RoutingError
        The network does not fit and cannot be partitioned (recurrent, or not a layer
        stack), or a partition does not map; the message says which and why.
    """
    try:
        runner = ChipRunner(experiment, handles, synapses)
    except (PlacementError, RoutingError) as err:
        return _partitioned(experiment, handles, synapses, err)
    stack = layer_stack(handles, synapses)
    runner.plan = None
    if stack is not None:
        try:
            runner.plan = _plan(experiment, stack, runner.max_steps, split=False)
        except (PlacementError, RoutingError):
            pass
    return runner


def _partitioned(experiment, handles, synapses, err):
    from .experiment import _strongly_connected

    succ = {m: [] for m in handles}
    for m, h in handles.items():
        for s in h.inputs:
            succ.setdefault(s.pre.module, []).append(m)
    cycles = [
        c
        for c in _strongly_connected(list(succ), succ)
        if len(c) > 1 or any(s.pre.module is c[0] for s in handles[c[0]].inputs)
    ]
    if cycles:
        names = ", ".join(m.describe() for m in cycles[0])
        raise type(err)(
            f"The network does not fit one chip ({err}) and it is recurrent ({names} form a cycle). "
            "Partitioning runs parts of a network one after another and passes spikes forward only, so the "
            "populations of a cycle, which exchange spikes during the run, must share one chip. Make the cycle "
            "fit (fewer neurons or connections, weights of at most 63 steps: a lower weight_headroom), or "
            "train it in mock mode (Experiment(mock=True))."
        ) from err
    stack = layer_stack(handles, synapses)
    if stack is None:
        raise type(err)(
            f"The network does not fit one chip ({err}). Automatic partitioning handles feed-forward layer "
            "stacks only: one InputNeuron, then populations each fed by one Synapse from the population before "
            "it. Restructure the network as such a stack, or make it fit one chip."
        ) from err
    _, max_steps = _gains(experiment, stack)
    plan = _plan(experiment, stack, max_steps, split=True)
    return PartitionedRunner(experiment, handles, synapses, stack, plan)


class _PartRunner(ChipRunner):
    """Neurons ``start:stop`` of one layer on the chip, the previous layer as host input."""

    def __init__(self, experiment, pre, synapse, post, start, stop, c, gain, max_steps):
        self.chip = experiment.chip
        self.dt = experiment.dt
        self.headroom = experiment.weight_headroom
        self._experiment = experiment
        self.modules = [pre, post]
        self.label = {pre: "p0", post: "p1"}
        self.external = {pre}
        self.sizes = {pre: pre.size, post: stop - start}
        self.synapses = [synapse]
        self.pre_of, self.post_of = {synapse: pre}, {synapse: post}
        self.gain, self.max_steps = {post: gain}, {post: max_steps}
        self.start, self.stop, self.c = start, stop, c
        self.signature = None
        self.plan = None
        self._build()

    def _weight(self, synapse) -> torch.Tensor:
        return synapse.weight[self.start : self.stop]

    def _population_spec(self, module) -> PopulationSpec:
        spec = super()._population_spec(module)
        if module in self.external:
            return spec
        return PopulationSpec(spec.label, spec.size, spec.kind, circuits_per_neuron=self.c)


def _events_of(obs, start):
    """Spikes of the part's layer per trial as host events for the next layer: neuron indices
    shifted to the whole layer, times in the middle of their 8 ns time-stamp tick (the
    spike happened somewhere inside it)."""
    return [(neuron + start, t + 0.5 * C.FPGA_TICK_US) for neuron, t in obs.spikes_by_trial_us("p1")]


class PartitionedRunner:
    """A feed-forward layer stack run as sequential single-chip partitions.

    Built by :func:`make_runner`; holds the :attr:`plan` and, per layer, a runner per
    partition (:attr:`parts`: ``[[(start, stop, runner), ...], ...]``). Gains (weight steps
    per model unit) are chosen per layer from the whole weight matrix, so all partitions of
    a layer realise the same weights.
    """

    def __init__(self, experiment, handles, synapses, stack, plan):
        self.signature = ChipRunner.structure_signature(handles, synapses)
        self.plan = plan
        self.dt = experiment.dt
        self.pool = getattr(experiment, "executor", None)
        self.input = stack[0]
        self.stack = stack
        self.synapses = [s for s, _ in stack[1:]]
        self.pre_of, self.post_of = {}, {}
        pre = stack[0]
        for s, post in stack[1:]:
            self.pre_of[s], self.post_of[s] = pre, post
            pre = post
        self.gain, self.max_steps = _gains(experiment, stack)
        for (_, post), lp in zip(stack[1:], plan.layers, strict=True):
            self.gain[post] = min(self.gain[post], max_gain(lp.circuits_per_neuron))
        self.parts = []
        for (syn, post), lp in zip(stack[1:], plan.layers, strict=True):
            layer_parts = []
            for start, stop in lp.ranges:
                try:
                    part = _PartRunner(
                        experiment,
                        self.pre_of[syn],
                        syn,
                        post,
                        start,
                        stop,
                        lp.circuits_per_neuron,
                        self.gain[post],
                        self.max_steps[post],
                    )
                except (PlacementError, RoutingError) as err:
                    run = next(r for r in plan.runs_of(lp.layer) if r.start == start)
                    raise type(err)(_run_failed(plan, run, err)) from err
                layer_parts.append((start, stop, part))
            self.parts.append(layer_parts)

    realised_weight = ChipRunner.realised_weight
    saturated_fraction = ChipRunner.saturated_fraction

    @property
    def executors(self) -> list:
        """The executors of all partitions, in run order."""
        return [part.executor for layer in self.parts for _, _, part in layer]

    def _layers(self, handles: dict, n_steps: int, collect: str):
        """Run layer after layer; yields ``(module, [collected per part])``."""
        stimuli, first_input, batch, ref = self.parts[0][0][2].stimuli(handles, n_steps)
        events = [s["p0"] for s in stimuli]
        for (_, post), layer_parts in zip(self.stack[1:], self.parts, strict=True):
            trials = [{"p0": ev} for ev in events]
            if self.pool is not None and len(layer_parts) > 1:
                # the partitions of a layer are independent: submit them together; trial seeds are
                # drawn here in run order, as the sequential path draws them
                seeds = [part.chip._trial_seeds(None, batch) for _, _, part in layer_parts]
                with ThreadPoolExecutor(len(layer_parts)) as threads:
                    obs = list(
                        threads.map(
                            lambda p, s, trials=trials: p[2].execute(trials, n_steps, s), layer_parts, seeds
                        )
                    )
            else:
                obs = [part.execute(trials, n_steps) for _, _, part in layer_parts]
            pieces = [
                getattr(part, collect)(o, first_input, batch, ref, n_steps)[post]
                for (_, _, part), o in zip(layer_parts, obs, strict=True)
            ]
            yield post, pieces
            per_part = [_events_of(o, start) for (start, _, _), o in zip(layer_parts, obs, strict=True)]
            events = [
                (
                    np.concatenate([p[b][0] for p in per_part]),
                    np.concatenate([p[b][1] for p in per_part]),
                )
                for b in range(batch)
            ]

    def run(self, handles: dict, n_steps: int) -> dict:
        """As :meth:`ChipRunner.run`: module -> (spikes, fraction, v, (lo, hi)), neurons of all
        partitions concatenated."""
        out = {}
        for post, pieces in self._layers(handles, n_steps, "collect"):
            z, f, v = (torch.cat([p[k] for p in pieces], dim=-1) for k in range(3))
            lo, hi = (torch.cat([p[3][k] for p in pieces], dim=-1) for k in range(2))
            out[post] = (z, f, v, (lo, hi))
        return out

    def run_events(self, handles: dict, n_steps: int) -> dict:
        """As :meth:`ChipRunner.run_events`, neurons of all partitions concatenated."""
        out = {}
        for post, pieces in self._layers(handles, n_steps, "collect_events"):
            if pieces[0][0] == "LIF":
                width = max(p[1].shape[-1] for p in pieces)
                padded = [
                    torch.nn.functional.pad(p[1], (0, width - p[1].shape[-1]), value=float("inf"))
                    for p in pieces
                ]
                out[post] = ("LIF", torch.cat(padded, dim=1))
            else:
                v = torch.cat([p[1] for p in pieces], dim=-1)
                lo, hi = (torch.cat([p[2][k] for p in pieces], dim=-1) for k in range(2))
                out[post] = ("LI", v, (lo, hi))
        return out
