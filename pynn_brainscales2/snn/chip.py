"""Chip mode of the torch bridge: the experiment's graph on the virtual chip.

:class:`ChipRunner` maps an experiment's populations and projections once
(:mod:`pynn_brainscales2.mapping`), calibrates the circuits to the modules' parameters
(:mod:`pynn_brainscales2.calibration`, cached) and keeps one
:class:`~pynn_brainscales2.execution.Executor`. Every forward pass only rewrites the
weights and the input events; a batch runs as trials of one chip call.

Units. The torch modules speak "pu" (potential units; leak 0, threshold 1 in training)
and pu/us for currents and weights; :data:`pynn_brainscales2.hardware.PU_MAPS` places them
on the chip (LIF: 50 CADC LSB per pu, resting at 70 LSB; LI read-out: 6 LSB per pu,
resting in the middle of the CADC range). A weight ``w`` [pu/us] onto a population becomes
``round(slope_to_lsb(|w|) / gain)`` steps on excitatory (``w > 0``) or
inhibitory rows, with ``gain`` [CADC LSB/us per step] calibrated per target population
from the largest weight at mapping time times the experiment's ``weight_headroom`` (default
:data:`WEIGHT_HEADROOM`; weights beyond that
saturate at the largest step count); connections may use up to 4 rows (252 steps). With
``Experiment(calibrate_synapses=True)`` (the default) the steps are those that give the
weight on each synapse's measured gain
(:func:`pynn_brainscales2.calibration.synapses.measure_synapse_gains`, once per mapping),
row by row as the mapping fills a connection's rows.

What comes back (per population, on the experiment's grid ``t_n = n dt``): spikes from the
FPGA timestamps (binned into steps, with their position in the step), and membrane traces
from the CADC (one sample every 1.7 us, linearly interpolated onto the grid, in pu relative
to each neuron's measured resting level before the first input).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cysim import constants as C

from .. import calibration
from .. import hardware as hw
from ..calibration.synapses import measure_synapse_gains
from ..errors import ParameterRangeError, PlacementError, ShapeError
from ..execution import Executor
from ..mapping import (
    EXCITATORY,
    EXTERNAL,
    INHIBITORY,
    NEURON,
    NetworkSpec,
    PopulationSpec,
    ProjectionSpec,
    map_network,
)
from .functional.neurons import LIFParameters, LIParameters
from .modules import InputNeuron

WEIGHT_HEADROOM = 2.0  # the largest step count maps to this many times the largest weight
MAX_ROWS = 4
_GAIN_RANGE = calibration.RANGES["syn_gain_exc"]

__all__ = ["ChipRunner"]


def _scalar(x, what: str, module) -> float:
    v = x.detach() if torch.is_tensor(x) else torch.as_tensor(x)
    if v.numel() != 1 and not torch.all(v == v.flatten()[0]):
        raise ParameterRangeError(
            f"{module.describe()}: chip mode needs one {what} per population (per-neuron values are "
            "calibrated only as scalars so far); got a tensor of different values."
        )
    return float(v.flatten()[0])


def _kind(module) -> str:
    if isinstance(module.params, LIParameters):
        return "LI"
    if isinstance(module.params, LIFParameters):
        return "LIF"
    raise ParameterRangeError(
        f"{module.describe()}: chip mode supports LIF and LI populations; AdEx needs AdEx calibration "
        "targets, which the calibration does not offer yet. Use snn.Experiment(mock=True) for AdEx."
    )


def max_gain(circuits_per_neuron: int = 1) -> float:
    """Largest gain [CADC LSB/us per step] a neuron of ``c`` circuits reaches (the synaptic
    current of one column is shared by ``c`` membranes); larger weights saturate."""
    return _GAIN_RANGE[1] / max(1, int(circuits_per_neuron))


def weight_range(post, wmax: float, headroom: float) -> tuple[float, int]:
    """``(gain, max_steps)`` of a target population (a module, or its kind ``"LIF"``/``"LI"``)
    whose largest incoming weight is ``wmax`` [pu/us]: the largest step count maps to
    ``headroom x wmax`` over up to :data:`MAX_ROWS` rows."""
    kind = post if isinstance(post, str) else _kind(post)
    wmax_lsb = float(hw.PU_MAPS[kind].slope_to_lsb(max(wmax, 1e-6) * headroom))
    rows = min(MAX_ROWS, max(1, math.ceil(wmax_lsb / (63 * _GAIN_RANGE[1] * 0.95))))
    gain = float(np.clip(wmax_lsb / (63 * rows), *_GAIN_RANGE))
    return gain, 63 * rows


class ChipRunner:
    """Mapping, calibration and executor of one experiment structure.

    Parameters
    ----------
    experiment : Experiment
        Gives the chip and the grid step.
    handles : dict
        Module -> NeuronHandle of the pass that defines the structure.
    synapses : list
        SynapseHandles of that pass.
    """

    def __init__(self, experiment, handles: dict, synapses: list):
        self.chip = experiment.chip
        self.dt = experiment.dt
        self.headroom = getattr(experiment, "weight_headroom", WEIGHT_HEADROOM)
        self._experiment = experiment
        self.modules = list(handles)
        self.label = {m: f"p{i}" for i, m in enumerate(self.modules)}
        self.external = {m for m in self.modules if isinstance(m, InputNeuron)}
        self.sizes = {m: m.size for m in self.modules}
        self.gain, self.max_steps = {}, {}
        self.synapses = [s.module for s in synapses]
        self.pre_of = {s.module: s.pre.module for s in synapses}
        self.post_of = {}
        for m, h in handles.items():
            for s in h.inputs:
                self.post_of[s.module] = m
        for s in self.synapses:
            if s not in self.post_of:
                raise ShapeError(f"{s.describe()} projects onto no population of this pass.")
        self.signature = self.structure_signature(handles, synapses)
        self.plan = None  # the PartitionPlan (one run) when the network is a layer stack
        self._build()

    @staticmethod
    def structure_signature(handles: dict, synapses: list) -> tuple:
        """What decides mapping and calibration: modules, connections, parameters."""
        mods = tuple((id(m), m.size, tuple(repr(v) for v in getattr(m, "params", ()))) for m in handles)
        syns = tuple((id(s.module), id(s.pre.module)) for s in synapses)
        return mods, syns

    # --- building ------------------------------------------------------------------------
    def _weight(self, synapse) -> torch.Tensor:
        """The weights of ``synapse`` this runner puts on the chip."""
        return synapse.weight

    def _population_spec(self, module) -> PopulationSpec:
        kind = EXTERNAL if module in self.external else NEURON
        return PopulationSpec(self.label[module], self.sizes[module], kind)

    def _build(self) -> None:
        pops = [self._population_spec(m) for m in self.modules]
        # gain per target population from the largest incoming weight (unless given)
        for post in {self.post_of[s] for s in self.synapses}:
            if post in self.gain:
                continue
            wmax = max(float(s.weight.detach().abs().max()) for s in self.synapses if self.post_of[s] is post)
            self.gain[post], self.max_steps[post] = weight_range(post, wmax, self.headroom)
        projections = []
        for s in self.synapses:
            pre, post = self.pre_of[s], self.post_of[s]
            n_out, n_in = self._weight(s).shape
            post_idx, pre_idx = np.meshgrid(np.arange(n_out), np.arange(n_in), indexing="ij")
            for receptor in (EXCITATORY, INHIBITORY):
                projections.append(
                    ProjectionSpec(
                        self._proj(s, receptor),
                        self.label[pre],
                        self.label[post],
                        pre_idx.ravel(),
                        post_idx.ravel(),
                        np.zeros(n_out * n_in, dtype=np.int64),
                        receptor,
                        max_steps=self.max_steps[post],
                    )
                )
        self.mapping = map_network(NetworkSpec(tuple(pops), tuple(projections)))
        for post in self.gain:  # a logical neuron of c circuits: a step moves c membranes
            c = getattr(self.mapping, "circuits_per_neuron", lambda label: 1)(self.label[post])
            self.gain[post] = min(self.gain[post], max_gain(c))
        budget = int(getattr(self._experiment, "max_circuits", None) or hw.N_CIRCUITS)
        if self.mapping.placement.n_used > budget:
            raise PlacementError(
                f"The network uses {self.mapping.placement.n_used} neuron circuits; the experiment allows "
                f"{budget} (max_circuits). Raise max_circuits (at most {hw.N_CIRCUITS}) or make the network smaller."
            )
        self._targets_cache = self._targets()
        self.calibration = calibration.calibrate(self.chip, self._targets_cache)
        config = self.calibration.apply(self.mapping.config)
        for m in self.modules:
            if m in self.external:
                continue
            circuits = self.mapping.circuits(self.label[m])
            config.enable_spiking[circuits] = _kind(m) == "LIF"
            config.enable_output[circuits] = _kind(m) == "LIF"
        self.executor = Executor(
            self.mapping, config, self.chip, pool=getattr(self._experiment, "executor", None)
        )
        self.synapse_gain = {}  # projection -> measured over calibrated gain, per connection and row
        if getattr(self._experiment, "calibrate_synapses", True):
            self._measure_synapses()

    def _measure_synapses(self) -> None:
        """Gains of the network's synapses relative to their circuits' calibrated gain
        (:func:`pynn_brainscales2.calibration.synapses.measure_synapse_gains`), per
        projection an array ``(connections, rows)`` (1 where a connection has no such row,
        or where no PSP was seen). Target populations of neurons joined from several
        circuits are left out: their synapses' PSPs spread over the joined membrane."""
        targets = self._targets_cache
        names, syns = [], []
        for s in self.synapses:
            post = self.post_of[s]
            c = getattr(self.mapping, "circuits_per_neuron", lambda label: 1)(self.label[post])
            if c != 1:
                continue
            for receptor in (EXCITATORY, INHIBITORY):
                names.append(self._proj(s, receptor))
                syns.append(self.mapping.synapses(names[-1]))
        if not syns:
            return
        h = np.concatenate([x.hemisphere for x in syns])
        r = np.concatenate([x.row for x in syns])
        col = np.concatenate([x.column for x in syns])
        flat = (h * C.N_ROWS + r) * C.N_COLUMNS + col
        uniq, back = np.unique(flat, return_inverse=True)
        rel = measure_synapse_gains(
            self.chip,
            self.executor.config,
            uniq // (C.N_ROWS * C.N_COLUMNS),
            (uniq // C.N_COLUMNS) % C.N_ROWS,
            uniq % C.N_COLUMNS,
            targets.syn_gain_exc,  # the same target for both receptors
            targets.tau_mem_us,
            targets.tau_syn_exc_us,
            targets.tau_syn_inh_us,
        )[back]
        rel = np.where(np.isfinite(rel), rel, 1.0)
        start = 0
        for name, x in zip(names, syns, strict=True):
            per = np.ones((x.piece_ptr.size - 1, max(int(x.piece.max(initial=0)) + 1, 1)))
            per[x.connection, x.piece] = rel[start : start + x.row.size]
            start += x.row.size
            self.synapse_gain[name] = per

    @staticmethod
    def _compensated(x: np.ndarray, rel: np.ndarray) -> np.ndarray:
        """Steps whose sum over a connection's rows (filled in order, 63 per row, as the
        mapping splits them) gives ``x`` steps of the calibrated gain, row ``i`` counting
        ``rel[:, i]`` of a step."""
        steps = np.zeros_like(x)
        left = x.copy()
        for i in range(rel.shape[1]):
            take = np.minimum(left, hw.WEIGHT_MAX * rel[:, i])
            steps += take / rel[:, i]
            left -= take
        return steps + left

    def _proj(self, synapse, receptor: str) -> str:
        return f"{self.label[self.pre_of[synapse]]}->{self.label[self.post_of[synapse]]}#{id(synapse)}:{receptor[:3]}"

    def _targets(self) -> calibration.CalibrationTargets:
        fields = {name: np.full(C.N_CIRCUITS, np.nan) for name in calibration.RANGES}
        used = np.zeros(C.N_CIRCUITS, bool)
        for m in self.modules:
            if m in self.external:
                continue
            kind = _kind(m)
            p = m.params
            c = self._target_circuits(m)
            pu = hw.PU_MAPS[kind]
            leak = pu.rest_lsb
            fields["leak_lsb"][c] = leak
            fields["tau_mem_us"][c] = _scalar(p.tau_mem_us, "tau_mem_us", m)
            fields["tau_syn_exc_us"][c] = _scalar(p.tau_syn_exc_us, "tau_syn_exc_us", m)
            fields["tau_syn_inh_us"][c] = _scalar(p.tau_syn_inh_us, "tau_syn_inh_us", m)
            if kind == "LIF":
                v_leak = _scalar(p.v_leak, "v_leak", m)
                fields["threshold_lsb"][c] = pu.to_lsb(_scalar(p.v_th, "v_th", m), v_leak)
                fields["reset_lsb"][c] = pu.to_lsb(_scalar(p.v_reset, "v_reset", m), v_leak)
                fields["refractory_us"][c] = max(
                    _scalar(p.refractory_us, "refractory_us", m), calibration.RANGES["refractory_us"][0]
                )
            else:  # read-out: never spikes; threshold and reset are only placeholders
                fields["threshold_lsb"][c] = 200.0
                fields["reset_lsb"][c] = leak
                fields["refractory_us"][c] = 1.0
            gain = self.gain.get(m, 0.1)
            fields["syn_gain_exc"][c] = gain
            fields["syn_gain_inh"][c] = gain
            used[c] = True
        for name, (lo, hi) in calibration.RANGES.items():  # unused circuits: any valid value
            fields[name][~used] = 0.5 * (lo + hi) if name != "reset_lsb" else lo
        switches = getattr(self.mapping, "compartment_switches", None)
        if switches is not None and np.any(switches):  # logical neurons are calibrated whole
            return calibration.CalibrationTargets(**fields, circuits=used, compartments=switches)
        return calibration.CalibrationTargets(**fields, circuits=used)

    def _target_circuits(self, module) -> np.ndarray:
        """All circuits of the neurons of ``module`` (every compartment of a logical neuron)."""
        compartments = getattr(self.mapping, "compartments", None)
        if compartments is None:
            return self.mapping_circuits_preview(module)
        return np.asarray(compartments(self.label[module])).reshape(-1)

    def mapping_circuits_preview(self, module) -> np.ndarray:
        return self.mapping.circuits(self.label[module])

    # --- running ---------------------------------------------------------------------------
    def weight_steps(self, synapse) -> dict:
        """Integer steps of ``synapse`` per receptor (connection order: post-major)."""
        post = self.post_of[synapse]
        w = (
            hw.PU_MAPS[_kind(post)].slope_to_lsb(self._weight(synapse).detach().cpu().double().numpy())
            / self.gain[post]
        )
        cap = self.max_steps[post]
        w = w.ravel()
        out = {}
        for receptor, x in ((EXCITATORY, np.maximum(w, 0.0)), (INHIBITORY, np.maximum(-w, 0.0))):
            rel = self.synapse_gain.get(self._proj(synapse, receptor))
            if rel is not None:
                x = self._compensated(x, rel)
            out[receptor] = np.clip(np.rint(x), 0, cap).astype(np.int64)
        return out

    def realised_weight(self, synapse) -> torch.Tensor:
        """The weights [pu/us] the chip realises, for the model's pass: clipped to the largest
        step count (no gradient beyond it, so weights do not grow where the chip cannot
        follow) and rounded to steps with a straight-through gradient."""
        post = self.post_of[synapse]
        per_step = float(self.gain[post] / hw.PU_MAPS[_kind(post)].slope_to_lsb(1.0))  # pu/us per step
        w = synapse.weight
        limit = self.max_steps[post] * per_step
        clipped = w.clamp(-limit, limit)
        rounded = torch.round(clipped / per_step) * per_step
        return clipped + (rounded - clipped).detach()

    def saturated_fraction(self, synapse) -> float:
        """Fraction of the weights of ``synapse`` at or beyond the largest step count."""
        post = self.post_of[synapse]
        per_step = float(self.gain[post] / hw.PU_MAPS[_kind(post)].slope_to_lsb(1.0))
        limit = self.max_steps[post] * per_step
        return float((synapse.weight.detach().abs() >= limit).float().mean())

    def run(self, handles: dict, n_steps: int) -> dict:
        """Run the pass on the chip; returns module -> (spikes, fraction, v) tensors."""
        return self.collect(*self._execute(handles, n_steps), n_steps)

    def collect(self, obs, first_input, batch: int, ref: torch.Tensor, n_steps: int) -> dict:
        """Tensors of :meth:`run` from the observables of a run."""
        out = {}
        grid = np.arange(n_steps) * self.dt
        dtype = torch.empty(0, dtype=ref.dtype).numpy().dtype  # filled in the tensors' dtype
        for m in self.modules:
            if m in self.external:
                continue
            label = self.label[m]
            spikes = np.zeros((n_steps, batch, self.sizes[m]), dtype=dtype)
            frac = np.zeros((n_steps, batch, self.sizes[m]), dtype=dtype)
            if _kind(m) == "LIF":
                trial, neuron, t = obs.spike_events_us(label)
                pos = t / self.dt
                step = np.floor(pos).astype(np.int64)
                ok = step < n_steps
                spikes[step[ok], trial[ok], neuron[ok]] = 1.0
                frac[step[ok], trial[ok], neuron[ok]] = pos[ok] - step[ok]
            v, lo, hi = self._trace(obs, label, m, grid, first_input, dtype)
            tensors = tuple(
                torch.as_tensor(x, dtype=ref.dtype, device=ref.device) for x in (spikes, frac, v, lo, hi)
            )
            out[m] = (tensors[0], tensors[1], tensors[2], (tensors[3], tensors[4]))
        return out

    def run_events(self, handles: dict, n_steps: int) -> dict:
        """Run the pass on the chip for EventProp; returns module -> ``("LIF", times)`` with the
        spike times [us] ``[batch, n, m]`` (ascending per neuron, ``inf`` padded), or
        ``("LI", v, (lo, hi))`` with the CADC trace on the grid [pu] ``[steps, batch, n]`` and the
        readable range ``[batch, n]``. Nothing per time step is read for LIF populations."""
        return self.collect_events(*self._execute(handles, n_steps), n_steps)

    def collect_events(self, obs, first_input, batch: int, ref: torch.Tensor, n_steps: int) -> dict:
        """What :meth:`run_events` returns, from the observables of a run."""
        out = {}
        grid = np.arange(n_steps) * self.dt
        t_end = n_steps * self.dt
        for m in self.modules:
            if m in self.external:
                continue
            label = self.label[m]
            if _kind(m) == "LIF":
                per_trial = obs.spikes_by_trial_us(label)
                counts = np.zeros((batch, self.sizes[m]), dtype=np.int64)
                for b, (neuron, t) in enumerate(per_trial):
                    np.add.at(counts[b], neuron[t <= t_end], 1)
                times = np.full((batch, self.sizes[m], max(1, int(counts.max(initial=0)))), np.inf)
                for b, (neuron, t) in enumerate(per_trial):
                    ok = t <= t_end
                    neuron, t = neuron[ok], t[ok]
                    order = np.lexsort((t, neuron))
                    neuron, t = neuron[order], t[order]
                    start = np.searchsorted(neuron, neuron, side="left")
                    times[b, neuron, np.arange(neuron.size) - start] = t
                out[m] = ("LIF", torch.as_tensor(times, dtype=ref.dtype, device=ref.device))
            else:
                v, lo, hi = self._trace(obs, label, m, grid, first_input)
                v, lo, hi = (torch.as_tensor(x, dtype=ref.dtype, device=ref.device) for x in (v, lo, hi))
                out[m] = ("LI", v, (lo[0], hi[0]))
        return out

    def _execute(self, handles: dict, n_steps: int):
        """Write weights and inputs, run the batch as trials; returns the observables, the time
        of the first input per trial, the batch size and a reference tensor."""
        stimuli, first_input, batch, ref = self.stimuli(handles, n_steps)
        return self.execute(stimuli, n_steps), first_input, batch, ref

    def execute(self, stimuli: list, n_steps: int, trial_seeds=None):
        """Write the current weights and run one trial per entry of ``stimuli`` (a dict
        ``{label: (neuron indices, times [us])}`` per trial); returns the observables."""
        self.write_weights()
        return self.executor.run(
            stimuli, duration_us=n_steps * self.dt, trials=len(stimuli), trial_seeds=trial_seeds
        )

    def write_weights(self) -> None:
        """Write the synapses' current weights into the executor's configuration."""
        for s in self.synapses:
            for receptor, steps in self.weight_steps(s).items():
                self.executor.set_weights(self._proj(s, receptor), steps)

    def stimuli(self, handles: dict, n_steps: int):
        """Host events of the input modules per trial, the time of the first input per trial,
        the batch size and a reference tensor (dtype, device)."""
        inputs = [m for m in self.modules if isinstance(m, InputNeuron)]
        ref = handles[inputs[0]].spikes
        batch = ref.shape[1]
        stimuli = [{} for _ in range(batch)]
        first_input = np.full(batch, np.inf)
        for m in inputs:
            z = handles[m].spikes[:n_steps].detach().cpu().numpy()
            # trial by trial, each in time order (neurons ascending at equal times)
            b_idx, t_idx, n_idx = np.nonzero(z.transpose(1, 0, 2) > 0.5)
            times = t_idx * self.dt
            bounds = np.searchsorted(b_idx, np.arange(batch + 1))
            for b in range(batch):
                lo, hi = bounds[b], bounds[b + 1]
                stimuli[b][self.label[m]] = (n_idx[lo:hi], times[lo:hi])
                if hi > lo:
                    first_input[b] = min(first_input[b], times[lo])
        return stimuli, first_input, batch, ref

    def _trace(self, obs, label, module, grid, first_input, dtype=np.float64) -> np.ndarray:
        """CADC samples of ``label`` on the grid [pu], relative to the measured resting level,
        and the readable range [pu] per trial and neuron (CADC 0..255 LSB)."""
        lsb = np.ascontiguousarray(
            obs.cadc_lsb(label).transpose(1, 0, 2), dtype=np.float64
        )  # (samples, trials, n)
        t = obs.result.cadc_times_us
        # resting level: the mean of each trial's samples before its first input arrives
        before = t[:, None] < np.minimum(first_input + C.ROUTING_LATENCY_US, t[-1])[None, :]
        before[0] = True
        rest = (lsb * before[:, :, None]).sum(axis=0) / before.sum(axis=0)[:, None]  # (trials, n)
        v_leak = _scalar(module.params.v_leak, "v_leak", module)
        pmap = hw.PU_MAPS[_kind(module)]
        pu = pmap.to_pu(lsb, rest[None], v_leak)
        idx = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, t.size - 1)
        nxt = np.clip(idx + 1, 0, t.size - 1)
        span = np.where(nxt > idx, t[nxt] - t[idx], 1.0)
        w = np.clip((grid - t[idx]) / span, 0.0, 1.0)
        v = np.empty((grid.size, *pu.shape[1:]), dtype=dtype)  # (steps, trials, n)
        for s in range(grid.size):  # step by step: the arrays of one step stay in the cache
            v[s] = pu[idx[s]] * (1 - w[s]) + pu[nxt[s]] * w[s]
        lo, hi = (pmap.to_pu(x, rest, v_leak)[None] for x in (0.0, 255.0))
        return v, lo, hi
