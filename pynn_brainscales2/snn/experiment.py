"""The experiment a network's modules belong to, and :func:`run`, which executes it.

An :class:`Experiment` keeps the registered modules and, for the current forward pass,
the handles the modules returned (the graph). :func:`run` executes that graph:

- ``mock=True``: in torch, with the dynamics of :mod:`.functional.neurons` (the ideal
  chip's equations on the experiment's grid) and the chip's event latency
  (:mod:`.functional.events`). Populations are simulated in topological order; a
  population that is not part of a cycle gets all its input at once (one matrix product
  over ``[time, batch]``) and loops over time alone; the populations of a cycle
  (recurrent networks) advance together step by step.
- ``mock=False``: on the chip through :mod:`pynn_brainscales2.execution`
  (:mod:`.chip`, :func:`_run_on_chip`): mapped and calibrated once, the chip's spikes and
  membrane traces injected into the torch graph. A feed-forward layer stack that does not
  fit one chip runs as sequential partitions (:mod:`.partition`); see
  :attr:`Experiment.partition_plan`.

After the run the pass is closed: the next forward pass records a new graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ShapeError, TensorTypeError
from ..execution.distributed import check_pool
from .eventprop import run_eventprop, uses_eventprop
from .functional.events import delays, input_arrivals, spike_arrivals, step_arrival
from .functional.neurons import initial_state, integrate, propagators, step_function
from .handles import NeuronHandle, SynapseHandle
from .modules import InputNeuron

__all__ = ["Experiment", "run"]


class Experiment:
    """Container of the modules of one network and of its execution settings.

    Parameters
    ----------
    mock : bool
        Simulate in torch (True) or run on the chip (False).
    dt : float
        Grid step [us of hardware time]. The chip integrates with ``dt <= 0.1 us``;
        mock mode accepts any step (larger ones are faster but place events and spikes
        on a coarser grid).
    chip : cysim.VirtualChip, optional
        The chip for ``mock=False`` (default: ``VirtualChip(seed=0)``, realistic).
    weight_headroom : float
        Chip mode: the largest weight step count of a target population maps to this many
        times its largest weight at mapping time (larger weights saturate; a larger headroom
        leaves more room to grow at a coarser resolution). Default 2.
    executor : dask.distributed.Client or concurrent.futures.Executor, optional
        Chip mode: spread the trials of every batch over these workers (each holds a chip of
        the same seed with the calibrated configuration shipped to it); results are
        bit-identical to running in this process. Default: run in this process. The
        partitions of one layer of a partitioned network are submitted together.
    max_circuits : int, optional
        Chip mode: neuron circuits one chip run may use (default all 512). A network that
        needs more (or does not map at all) and is a feed-forward layer stack runs as
        sequential partitions of at most this many circuits; a smaller value lets small
        networks be partitioned (tests, comparisons).
    calibrate_synapses : bool
        Chip mode: measure the gain of every synapse the network uses once, after the
        circuit calibration, and write each weight as the steps that give it on that synapse
        (:mod:`pynn_brainscales2.calibration.synapses`; about 5 % spread per synapse driver
        and 3 % per synapse on a realistic chip, which the circuit calibration averages
        over 64 drivers). Default True; False writes every weight with its circuit's gain.
        Neurons joined from several circuits always use their circuits' gain.

    Notes
    -----
    Partitioning: in chip mode a network that does not fit one chip, if it is a layer stack
    (``InputNeuron -> Synapse -> LIF -> Synapse -> ... -> LI``), is cut per layer into
    partitions of ``c``-circuit neurons (``c = ceil(fan-in / 128)``, at most
    ``floor(max_circuits / c)`` per run; seed eq. 19) that run one after another, the spikes
    of a layer played in as the next layer's input. :attr:`partition_plan` shows the plan of
    the last chip-mode pass (``print(exp.partition_plan)``);
    :func:`pynn_brainscales2.mapping.plan_feedforward` plans without a chip. Recurrent
    networks that do not fit raise an error.

    Examples
    --------
    >>> exp = Experiment(mock=True, dt=0.1)
    >>> exp
    Experiment(mock=True, dt=0.1 us, 0 modules)
    """

    def __init__(
        self,
        mock: bool = True,
        dt: float = 0.1,
        chip=None,
        weight_headroom: float = 2.0,
        executor=None,
        max_circuits: int | None = None,
        calibrate_synapses: bool = True,
    ):
        check_pool(executor)
        if max_circuits is not None:
            from .. import hardware as hw

            if (
                isinstance(max_circuits, bool)
                or not isinstance(max_circuits, int)
                or not (1 <= max_circuits <= hw.N_CIRCUITS)
            ):
                raise ValueError(
                    f"Experiment max_circuits = {max_circuits!r}: give an integer 1..{hw.N_CIRCUITS} (the chip's "
                    "neuron circuits), or None for all."
                )
        self.max_circuits = max_circuits
        self.calibrate_synapses = bool(calibrate_synapses)
        dt = float(dt)
        if not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"Experiment dt = {dt} us: give a positive grid step in us (e.g. 0.1).")
        self.mock = bool(mock)
        if not (math.isfinite(weight_headroom) and weight_headroom >= 1.0):
            raise ValueError(f"Experiment weight_headroom = {weight_headroom}: give a number >= 1.")
        self.weight_headroom = float(weight_headroom)
        self.dt = dt
        self.chip = chip
        self.executor = executor
        self.modules: list = []
        self._handles: dict = {}  # module -> NeuronHandle of the current pass
        self._synapses: list = []  # SynapseHandles of the current pass
        self._runner = None  # chip mode: mapping, calibration and executor, built once

    def __repr__(self):
        return f"Experiment(mock={self.mock}, dt={self.dt:g} us, {len(self.modules)} modules)"

    @property
    def partition_plan(self):
        """The :class:`~pynn_brainscales2.mapping.PartitionPlan` of the last chip-mode pass:
        ``n_runs == 1`` when the network fit one chip, more when it ran as partitions; None
        before the first chip-mode pass and for networks that are no layer stack."""
        return getattr(self._runner, "plan", None)

    # --- registration (called by the modules) -----------------------------------------
    def register(self, module) -> None:
        """Add a module to the experiment (done by the module's constructor)."""
        self.modules.append(module)

    def neuron_handle(self, module) -> NeuronHandle:
        """The handle of ``module`` in the current pass (created on first use)."""
        if module not in self._handles:
            self._handles[module] = NeuronHandle(module)
        return self._handles[module]

    def synapse_handle(self, module, pre: NeuronHandle) -> SynapseHandle:
        handle = SynapseHandle(module, pre)
        self._synapses.append(handle)
        return handle

    def clear(self) -> None:
        """Forget the graph of the current pass (handles already returned stay valid)."""
        self._handles = {}
        self._synapses = []

    def steps(self, runtime_us: float) -> int:
        """Number of grid steps of a run of ``runtime_us`` [us] (as the chip counts them)."""
        return int(math.ceil(float(runtime_us) / self.dt - 1e-9))


def run(experiment: Experiment, runtime: float) -> None:
    """Execute the graph recorded in ``experiment`` for ``runtime`` [us] and fill its handles.

    Parameters
    ----------
    experiment : Experiment
    runtime : float
        Duration of the run [us of hardware time]; ``ceil(runtime / dt)`` grid steps.
        Input spikes beyond it are ignored, missing steps count as silent.
    """
    runtime = float(runtime)
    if not math.isfinite(runtime) or runtime <= 0:
        raise ValueError(f"run: runtime = {runtime} us; give a positive duration in us.")
    try:
        if experiment.mock:
            if uses_eventprop(experiment._handles):
                run_eventprop(experiment, experiment.steps(runtime))
            else:
                _run_mock(experiment, experiment.steps(runtime))
        else:
            _run_on_chip(experiment, experiment.steps(runtime))
    finally:
        experiment.clear()


# --- chip mode ------------------------------------------------------------------------
def _run_on_chip(experiment: Experiment, n_steps: int) -> None:
    """Chip mode: map once, rewrite weights and inputs per batch, run the batch as trials,
    inject the observables (forward = chip, backward = model).

    The chip runs the whole graph first. Then the model equations run in torch population by
    population, but every population passes on the chip's spikes and membrane (straight-
    through: ``x_model + (x_chip - x_model).detach()``), so downstream layers see what the
    chip did while gradients flow through the model. Inside a recurrent cycle the model
    uses its own spikes; the cycle's outputs are injected afterwards.
    """
    from .chip import ChipRunner
    from .partition import make_runner

    if experiment.chip is None:
        from cysim import VirtualChip

        experiment.chip = VirtualChip(seed=0)
    handles = experiment._handles
    _check_batch(handles)
    signature = ChipRunner.structure_signature(handles, experiment._synapses)
    runner = experiment._runner
    if runner is None or runner.signature != signature:
        runner = experiment._runner = make_runner(experiment, handles, experiment._synapses)
    if uses_eventprop(handles):
        run_eventprop(experiment, n_steps, runner.run_events(handles, n_steps), runner.realised_weight)
        return
    observed = runner.run(handles, n_steps)
    _run_mock(experiment, n_steps, inject=observed, weight_of=runner.realised_weight)


def _inject(model: torch.Tensor | None, chip: torch.Tensor, limits=None) -> torch.Tensor:
    """Forward value of the chip, gradient of the model; with ``limits`` (the readable range of
    a trace) the model is clipped to it first, so no gradient asks for what the read-out
    cannot show."""
    if model is None:
        return chip
    if limits is not None:
        model = torch.maximum(torch.minimum(model, limits[1]), limits[0])
    return model + (chip - model).detach()


# --- mock mode ------------------------------------------------------------------------
def _graph(experiment: Experiment):
    """Populations of the pass, their incoming projections, and the cycles among them."""
    handles = experiment._handles
    for syn in experiment._synapses:
        if syn.pre.module not in handles:
            raise ShapeError(f"{syn.module.describe()} starts at a population that is not part of this pass.")
    succ = {m: [] for m in handles}
    for m, h in handles.items():
        for syn in h.inputs:
            succ[syn.pre.module].append(m)
    return handles, _strongly_connected(list(handles), succ), succ


def _strongly_connected(nodes, succ):
    """Strongly connected components in topological order (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(succ[nxt])))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x is node:
                        break
                out.append(comp)
    return out[::-1]


def _fit(x: torch.Tensor, n_steps: int) -> torch.Tensor:
    """``x`` cut or zero-padded to ``n_steps`` along time."""
    if x.shape[0] >= n_steps:
        return x[:n_steps]
    return torch.cat([x, x.new_zeros((n_steps - x.shape[0], *x.shape[1:]))])


def _weights(syn: SynapseHandle, separate: bool, weight_of=None):
    w = syn.module.weight if weight_of is None else weight_of(syn.module)
    if separate:
        return w.clamp(min=0.0), (-w).clamp(min=0.0)
    return w, None


def _check_batch(handles) -> tuple[int, torch.Tensor]:
    """Batch size and a reference tensor (dtype, device) from the inputs of the pass."""
    inputs = [h for m, h in handles.items() if isinstance(m, InputNeuron)]
    if not inputs:
        raise ShapeError("run: the experiment has no InputNeuron with spikes in this pass.")
    ref = inputs[0].spikes
    for h in inputs[1:]:
        if h.spikes.shape[1] != ref.shape[1]:
            raise ShapeError(
                f"{h.module.describe()} got a batch of {h.spikes.shape[1]}, "
                f"{inputs[0].module.describe()} one of {ref.shape[1]}; all inputs need the same batch."
            )
    for h in handles.values():
        for syn in h.inputs:
            w = syn.module.weight
            if w.device != ref.device or w.dtype != ref.dtype:
                raise TensorTypeError(
                    f"{syn.module.describe()} has weights of {w.dtype} on {w.device}, the input spikes "
                    f"are {ref.dtype} on {ref.device}; move the model or the data (model.to(...))."
                )
    return ref.shape[1], ref


def _run_mock(experiment: Experiment, n_steps: int, inject: dict | None = None, weight_of=None) -> None:
    """Mock mode; with ``inject`` (chip mode) populations pass on the chip's observables and
    ``weight_of(synapse)`` gives the weights the chip realises (clipped and rounded)."""
    dt = experiment.dt
    handles, components, _ = _graph(experiment)
    batch, ref = _check_batch(handles)
    need_fraction = delays(dt).early != delays(dt).late
    arrivals: dict = {}  # module -> arriving spikes [time, batch, n]

    def arrivals_of(module):
        if module not in arrivals:
            h = handles[module]
            if isinstance(module, InputNeuron):
                arrivals[module] = input_arrivals(_fit(h.spikes, n_steps), dt)
            else:
                arrivals[module] = spike_arrivals(h.spikes, h.fraction, dt)
        return arrivals[module]

    def external_input(module, members):
        """Summed input of ``module`` from populations outside ``members``."""
        h = handles[module]
        separate = module.separate_inhibition
        exc = inh = None
        for syn in h.inputs:
            if syn.pre.module in members:
                continue
            w_exc, w_inh = _weights(syn, separate, weight_of)
            a = arrivals_of(syn.pre.module)
            e = F.linear(a, w_exc)
            syn.current = e if w_inh is None else e - F.linear(a, w_inh)
            exc = e if exc is None else exc + e
            if w_inh is not None:
                i = F.linear(a, w_inh)
                inh = i if inh is None else inh + i
        if exc is None:
            exc = ref.new_zeros((n_steps, batch, module.size))
        if separate and inh is None:
            inh = ref.new_zeros((n_steps, batch, module.size))
        return exc, inh

    for comp in components:
        members = set(comp)
        if len(comp) == 1 and isinstance(comp[0], InputNeuron):
            h = handles[comp[0]]
            h.spikes = _fit(h.spikes, n_steps)
            continue
        recurrent = len(comp) > 1 or any(s.pre.module is comp[0] for s in handles[comp[0]].inputs)
        if not recurrent:
            module = comp[0]
            exc, inh = external_input(module, members)
            out = integrate(module.params, dt, exc, inh, fraction=need_fraction)
            if inject is not None and module in inject:
                z, f, v, limits = inject[module]
                spikes = None if out.spikes is None else _inject(out.spikes, z)
                _fill(
                    handles[module],
                    spikes,
                    _inject(out.v, v, limits),
                    out.current,
                    f if spikes is not None else None,
                )
            else:
                _fill(handles[module], out.spikes, out.v, out.current, out.fraction)
        else:
            _run_recurrent(
                comp,
                handles,
                {m: external_input(m, members) for m in comp},
                dt,
                n_steps,
                need_fraction,
                weight_of,
            )
            for m in comp if inject is not None else ():
                if m in inject:
                    h = handles[m]
                    z, f, v, limits = inject[m]
                    if h.spikes is not None:
                        h.spikes, h.fraction = _inject(h.spikes, z), f
                    h.v = _inject(h.v, v, limits)
    for syn in experiment._synapses:  # projections no population consumed, and recurrent ones
        if syn.current is None:
            w = syn.module.weight
            syn.current = F.linear(arrivals_of(syn.pre.module), w)


def _fill(handle: NeuronHandle, spikes, v, current, fraction):
    handle.spikes, handle.v, handle.current, handle.fraction = spikes, v, current, fraction


def _run_recurrent(comp, handles, external, dt, n_steps, need_fraction, weight_of=None):
    """Populations of one cycle, advanced together step by step."""
    members = set(comp)
    state, prop, step_fn = {}, {}, {}
    internal = {m: [s for s in handles[m].inputs if s.pre.module in members] for m in comp}
    weights = {m: [_weights(s, m.separate_inhibition, weight_of) for s in internal[m]] for m in comp}
    hist = {m: ([], []) for m in comp}  # spikes, fractions per step
    rec = {m: ([], [], []) for m in comp}
    for m in comp:
        exc, inh = external[m]
        external[m] = (exc.unbind(0), None if inh is None else inh.unbind(0))
        state[m] = initial_state(m.params, exc.shape[1], m.size, exc, inhibitory=inh is not None)
        prop[m] = propagators(m.params, dt, exc)
        step_fn[m] = step_function(m.params)
    syn_current = {id(s): [] for m in comp for s in internal[m]}
    for n in range(n_steps):
        outs = {}
        for m in comp:
            exc, inh = external[m]
            e, i = exc[n], None if inh is None else inh[n]
            for syn, (w_exc, w_inh) in zip(internal[m], weights[m], strict=True):
                spikes, fracs = hist[syn.pre.module]
                a = step_arrival(spikes, fracs, n, dt)
                if a is None:
                    syn_current[id(syn)].append(torch.zeros_like(e))
                    continue
                ce = F.linear(a, w_exc)
                e = e + ce
                if w_inh is not None:
                    ci = F.linear(a, w_inh)
                    i = i + ci
                    ce = ce - ci
                syn_current[id(syn)].append(ce)
            outs[m] = step_fn[m](state[m], e, i, m.params, prop[m], need_fraction)
        for m in comp:  # all populations see the spikes of step n only from step n+1 on
            (z, v, c, f), state[m] = outs[m]
            if z is None:
                z = torch.zeros_like(v)
            hist[m][0].append(z)
            hist[m][1].append(f)
            for lst, x in zip(rec[m], (z, v, c), strict=True):
                lst.append(x)
    for m in comp:
        z, v, c = (torch.stack(x) for x in rec[m])
        frac = torch.stack(hist[m][1]) if need_fraction and hist[m][1][0] is not None else None
        _fill(handles[m], None if m.Parameters.__name__ == "LIParameters" else z, v, c, frac)
        for s in internal[m]:
            s.current = torch.stack(syn_current[id(s)])
