"""One ``sim.run()``: translate the PyNN network, map it (or reuse the mapping), calibrate
(cached), configure and run it through :class:`~pynn_brainscales2.execution.Executor`.

The mapping is reused as long as the network's structure (populations, connections and
synapse rows per connection) is unchanged; new weights are written into the existing
synapses, new parameters only recalibrate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from cysim import KernelError
from cysim import constants as C

from . import hardware as hw
from . import partitioned
from . import translation as T
from .calibration import calibrate
from .errors import ChipFeatureError, PlacementError, PlasticityKernelError, RecordingError, RoutingError
from .execution import Executor, Observables
from .mapping import NEURON, NetworkSpec
from .plasticity.runtime import (
    PlasticityRun,
    PopulationBinding,
    ProjectionBinding,
    RuleBinding,
    apply_sensor_capmem,
    sensor_capmem,
)
from .standardmodels import cells

_CALIBRATIONS: dict = {}  # in-memory cache: (chip identity, targets key) -> CalibrationResult


@dataclass
class Compiled:
    """A mapped network kept between runs."""

    key: tuple
    mapping: object
    executor: Executor


@dataclass
class RunRecord:
    """What one run of the current segment produced."""

    t_stop: float  # [ms]
    revision: int
    observables: Observables
    key_of: dict  # id(population) -> population key in the spec
    source_spikes: dict  # id(population) -> (neuron index, times [ms]) of host sources
    cadc_period_ms: float
    madc: dict  # (id(population), neuron index) -> True


def _structure_key(spec: NetworkSpec) -> tuple:
    pops = tuple((p.label, p.size, p.kind) for p in spec.populations)
    projs = tuple(
        (
            p.label,
            p.pre,
            p.post,
            p.receptor,
            p.pre_idx.tobytes(),
            p.post_idx.tobytes(),
            hw.rows_needed(p.steps).tobytes(),
            p.max_steps,
            p.stp,
        )
        for p in spec.projections
    )
    return pops, projs


def _calibration(state, targets):
    chip = state.chip
    key = (chip.seed, chip.mismatch, chip.noise, chip.dt_us, targets.key())
    if key not in _CALIBRATIONS:
        _CALIBRATIONS[key] = calibrate(chip, targets, cache=state.calibration_cache)
    return _CALIBRATIONS[key]


def _check_delays(state, projection):
    latency_ms = float(hw.hw_us_to_bio_ms(C.ROUTING_LATENCY_US, state.speedup))
    d = projection._delay
    off = np.abs(d - latency_ms) > 1e-6 * max(latency_ms, 1.0)
    if off.any():
        state.report(
            "delay",
            f"Projection {projection.label!r} asks for delays {d.min():g}..{d.max():g} ms; the chip has only its fixed "
            f"routing latency of {latency_ms:g} ms, which is used instead.",
        )


def _check_initial_values(state, pop):
    if not isinstance(pop.celltype, T.LIF_TYPES):
        return
    if "w" in pop.initial_values and "w" in pop._user_initial:
        w0 = np.asarray(pop.initial_values["w"].evaluate(simplify=False), dtype=float)
        if np.any(w0 != 0):
            raise ChipFeatureError(
                f"Population {pop.label!r}: initial w = {w0[w0 != 0][0]:g} nA; the chip's adaptation starts every run "
                "at w = 0 and cannot be preset. Leave w at 0."
            )
    v_rest = T.param(pop, "v_rest")
    v0 = np.asarray(pop.initial_values["v"].evaluate(simplify=False), dtype=float)
    differs = np.abs(v0 - v_rest) > 1e-6
    if not differs.any():
        return
    if "v" in pop._user_initial:
        k = int(np.flatnonzero(differs)[0])
        raise ChipFeatureError(
            f"Population {pop.label!r}: initial v = {v0[k]:g} mV on neuron {k} differs from v_rest = {v_rest[k]:g} mV; "
            "the chip's membranes start every run at their leak potential and cannot be preset. Initialise v to "
            "v_rest (or leave it at its default)."
        )
    state.report(
        "initial membrane potential",
        f"Population {pop.label!r}: PyNN's default initial v ({v0[0]:g} mV) differs from v_rest; on the chip every "
        "membrane starts at v_rest.",
    )


def _currents(state, t_stop):
    """Total constant current [nA] per neuron population (i_offset plus injected sources)."""
    out = {}
    for pop in state.populations:
        if isinstance(pop.celltype, T.LIF_TYPES):
            i = T.param(pop, "i_offset")
            T._check_finite(pop, "i_offset", i, "nA")
            if np.any(i != 0):
                out[id(pop)] = i.copy()
    for source in state.current_sources:
        amp = source.current_at(t_stop)
        for cell in source.cell_list:
            pop = cell.parent
            if not isinstance(pop.celltype, T.LIF_TYPES):
                raise ChipFeatureError(
                    f"Current injection into {type(pop.celltype).__name__} population {pop.label!r}: set the bias "
                    "CapMem cells of HXNeuron directly."
                )
            out.setdefault(id(pop), np.zeros(pop.size))[pop.id_to_index(cell)] += amp
    return out


def _configure(state, mapping, key_of, gains, t_stop):
    """The full chip configuration: routing, calibration, switches, bias, generators."""
    cfg = mapping.config
    circuits_of = {
        id(p): mapping.circuits(key_of[id(p)]) for p in state.populations if T.kind_of(p.celltype) == NEURON
    }
    slopes = T.bias_slopes(
        state.populations, circuits_of, _currents(state, t_stop), state.vmap, state.speedup
    )
    bias_targets = T.bias_targets(slopes)
    targets = T.lif_targets(state.populations, circuits_of, gains, state.vmap, state.speedup, bias_targets)
    if targets is not None:
        _calibration(state, targets).apply(cfg)  # writes i_bias_const where bias_targets is finite
    for pop in state.populations:
        kind = T.kind_of(pop.celltype)
        if kind == NEURON:
            c = circuits_of[id(pop)]
            if isinstance(pop.celltype, cells.HXNeuron):
                for name in pop.celltype.default_parameters:
                    getattr(cfg, name)[c] = np.rint(T.param(pop, name)).astype(np.int64)
                continue
            cfg.enable_spiking[c] = True
            if isinstance(pop.celltype, T.COBA_TYPES):
                cfg.enable_coba[c] = True
                cfg.e_rev_exc[c] = T.reversal_capmem(pop, "e_rev_E", state.vmap)
                cfg.e_rev_inh[c] = T.reversal_capmem(pop, "e_rev_I", state.vmap)
                state.report_note(
                    "uncalibrated reversal potentials",
                    "IF_cond_exp and EIF_cond_exp_isfa_ista e_rev_E/e_rev_I are written with the nominal CapMem "
                    "transfer (exact on the ideal chip, a few mV off on a realistic one).",
                )
            if isinstance(pop.celltype, T.ADEX_TYPES):  # the calibration wrote the AdEx cells
                cfg.enable_exponential[c] = True
                cfg.enable_adaptation[c] = (T.param(pop, "a") != 0) | (T.param(pop, "b") != 0)
            cfg.enable_bias_current[c] = slopes[c] != 0
            cfg.bias_current_sink[c] = slopes[c] < 0
            small = np.isnan(bias_targets[c]) & (slopes[c] != 0)  # below the calibrated range
            cfg.i_bias_const[c[small]] = hw.nominal_bias_capmem(slopes[c[small]])
        elif kind == T.BACKGROUND:
            gens = mapping.placement.generators[key_of[id(pop)]]
            rates = T.param(pop, "rate")
            seeds = T.param(pop, "seed")
            for k, g in enumerate(gens):
                cfg.bg_mode[g] = C.BG_POISSON
                cfg.bg_period_cycles[g] = hw.bg_period_cycles(rates[k], state.speedup)
                cfg.bg_seed[g] = int(seeds[k])
    return cfg


_POISSON_BLOCK_MS = 100.0


def _poisson(pop, seed, segment, t_stop):
    """Host-generated Poisson spikes ``(source index, time [ms])``, prefix-stable in ``t_stop``.

    Time is cut into blocks of 100 ms; block ``b`` draws, for all sources at once, a
    Poisson count and uniform times from its own seed ``(rng_seed, segment, population,
    b)``. A longer run only adds blocks, so ``run(a); run(b)`` sees the spikes of ``run(a + b)``.
    """
    rate, start, duration = T.param(pop, "rate"), T.param(pop, "start"), T.param(pop, "duration")
    for name, v in (("rate", rate), ("start", start)):
        T._check_finite(pop, name, v, "Hz" if name == "rate" else "ms")
    if np.any(rate < 0) or np.any(start < 0) or np.any(duration < 0):
        raise T.ParameterRangeError(
            f"Population {pop.label!r}: rate [Hz], start [ms] and duration [ms] must be >= 0."
        )
    stop = np.minimum(start + duration, t_stop)
    active = (rate > 0) & (stop > start)
    if not active.any():
        return np.zeros(0, np.int64), np.zeros(0)
    block = _POISSON_BLOCK_MS
    first, last = int(start[active].min() // block), int(np.ceil(stop[active].max() / block))
    mean_count = np.where(active, rate, 0.0) * (block / 1000.0)
    idx, times = [], []
    for b in range(first, last):
        rng = np.random.default_rng([seed, segment, pop._index, b])
        counts = rng.poisson(mean_count)
        i = np.repeat(np.arange(pop.size), counts)
        t = b * block + rng.random(i.size) * block
        keep = (t >= start[i]) & (t < stop[i])
        idx.append(i[keep])
        times.append(t[keep])
    return np.concatenate(idx).astype(np.int64), np.concatenate(times)  # ordered by block, not by time


def _sources(state, key_of, t_stop):
    out = {}
    for pop in state.populations:
        if isinstance(pop.celltype, cells.SpikeSourceArray):
            trains = T.check_spike_times(pop)
            idx = (
                np.concatenate([np.full(t.size, i) for i, t in enumerate(trains)]) if trains else np.zeros(0)
            )
            t = np.concatenate(trains) if trains else np.zeros(0)
            keep = t < t_stop + 1e-9
            idx, t = idx[keep].astype(np.int64), t[keep]
            last = state.last_run
            if last is not None and id(pop) in last.source_spikes:
                # spikes already sent stay as they were; new spike_times act from the current time on
                old_i, old_t = last.source_spikes[id(pop)]
                past = old_t <= last.t_stop + 1e-9
                future = t > last.t_stop + 1e-9
                idx = np.concatenate([old_i[past], idx[future]])
                t = np.concatenate([old_t[past], t[future]])
                order = np.argsort(t, kind="stable")
                idx, t = idx[order], t[order]
            out[id(pop)] = (idx, t)
        elif isinstance(pop.celltype, cells.SpikeSourcePoisson):
            out[id(pop)] = _poisson(pop, state.rng_seed, state.segment_counter, t_stop)
    return out


def _v_cells(rec):
    return [rec.population.id_to_index(c) for v, ids in rec.recorded.items() if v.name == "v" for c in ids]


def _readout(state, cfg):
    """CADC period and MADC neurons from what the recorders ask for (see recording.py)."""
    cadc_min_ms = float(hw.hw_us_to_bio_ms(C.CADC_PERIOD_MIN_US, state.speedup))
    recs = [r for r in state.recorders if _v_cells(r)]
    forced = [r for r in recs if r.readout == "madc"]
    fine = [r for r in recs if r.readout == "auto" and r.requested_interval < cadc_min_ms - 1e-9]
    n_fine = sum(len(_v_cells(r)) for r in fine)
    n_forced = sum(len(_v_cells(r)) for r in forced)
    madc_recs = forced + (fine if n_fine + n_forced <= C.MADC_MAX_CHANNELS else [])
    madc = {(id(r.population), k): r for r in madc_recs for k in _v_cells(r)}
    if len(madc) > C.MADC_MAX_CHANNELS:
        raise RecordingError(
            f"{len(madc)} neurons are recorded with readout='madc'; the MADC records at most "
            f"{C.MADC_MAX_CHANNELS} (one even, one odd circuit). Record the others with the CADC (readout='cadc')."
        )
    for r in fine:
        if r not in madc_recs:
            raise RecordingError(
                f"Population {r.population.label!r}: 'v' at a sampling interval of {r.requested_interval:g} ms needs "
                f"the MADC, which records at most {C.MADC_MAX_CHANNELS} neurons ({n_fine + n_forced} ask for it); "
                f"the CADC samples all neurons every {cadc_min_ms:g} ms at the finest. Pass "
                f"sampling_interval >= {cadc_min_ms:g} ms, or record('v', readout='cadc') to accept the CADC's "
                "period, or record fewer neurons."
            )
    requested = [r.requested_interval for r in recs if r not in madc_recs]
    period_us = (
        float(hw.bio_ms_to_hw_us(min(requested), state.speedup)) if requested else C.CADC_PERIOD_DEFAULT_US
    )
    if period_us < C.CADC_PERIOD_MIN_US - 1e-9:
        period_us = C.CADC_PERIOD_MIN_US
        state.report_note(
            "CADC sampling interval",
            f"'v' recorded through the CADC is sampled every {cadc_min_ms:g} ms (the CADC's shortest period).",
        )
    dt = state.chip.dt_us
    period_us = max(C.CADC_PERIOD_MIN_US, round(period_us / dt) * dt)
    cfg.cadc_enable = True
    cfg.cadc_period_us = period_us
    return float(hw.hw_us_to_bio_ms(period_us, state.speedup)), madc


def _plasticity(state, mapping, key_of, proj_specs, groups, t_stop):
    """One :class:`PlasticityRun` for the rules of the network (None without rules)."""
    rules, members = [], {}
    for prj in state.projections:
        rule = getattr(prj, "plasticity_rule", None)
        if rule is None:
            continue
        if not any(r is rule for r in rules):
            rules.append(rule)
        members.setdefault(id(rule), []).append(prj)
    for rule in state.rules:
        if not any(r is rule for r in rules):
            rules.append(rule)
    if not rules:
        return None
    spec_of = {g.label: ps for g, ps in zip(groups, proj_specs, strict=True)}
    bindings = []
    for rule in rules:
        pbs = []
        for prj in members.get(id(rule), []):
            n = len(prj)
            coords = np.zeros((3, n), dtype=np.int64)
            scale = 1.0
            for g in (g for g in groups if g.projection is prj):
                syn = mapping.synapses(g.label)
                first = syn.piece_ptr[:-1]
                coords[:, g.rows] = np.stack([syn.hemisphere[first], syn.row[first], syn.column[first]])
                scale = spec_of[g.label].weight_scale or 1.0
            pbs.append(ProjectionBinding(prj, tuple(coords), scale))
        pops = []
        for pop in rule.populations:
            if not any(p is pop for p in state.populations):
                raise PlasticityKernelError(
                    f"Plasticity rule {rule.name!r}: population {pop.label!r} is not part of the current network "
                    "(made before the last setup()?)."
                )
            if T.kind_of(pop.celltype) != NEURON:
                raise PlasticityKernelError(
                    f"Plasticity rule {rule.name!r}: population {pop.label!r} is a spike source; rules see on-chip "
                    "neuron populations only."
                )
            pops.append(PopulationBinding(pop, mapping.circuits(key_of[id(pop)])))
        bindings.append(RuleBinding(rule, pbs, pops))
    names = [b.rule.name for b in bindings]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise PlasticityKernelError(
            f"Two plasticity rules are named {sorted(dup)[0]!r}; give each rule its own name=."
        )
    return PlasticityRun(bindings, state.speedup, state.vmap, t_stop)


def _kernel_error(state, exc, plastic, compiled, last_args):
    """Keep what was recorded up to the failing tick, then raise PlasticityKernelError."""
    key_of, sources, cadc_period_ms, madc = last_args
    result = exc.result
    t_ms = float(hw.hw_us_to_bio_ms(exc.time_us, state.speedup))
    if result is not None:
        obs = Observables(result, compiled.mapping, compiled.executor.speedup, compiled.executor.vmap)
        state.last_run = RunRecord(t_ms, state.revision, obs, key_of, sources, cadc_period_ms, madc)
        plastic.collect(result.plasticity)
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    error = PlasticityKernelError(
        f"Plasticity rule {exc.program!r} failed at tick {exc.tick} (t = {t_ms:g} ms): "
        f"{type(cause).__name__}: {cause}. The run stopped there; spikes, membrane samples and the rule's "
        "records up to that tick are kept (get_data())."
    )
    error.rule, error.tick, error.time = exc.program, exc.tick, t_ms
    state.t, state.running = t_ms, True  # the segment ends at the failing tick
    raise error from cause


def run_network(state, t_stop: float) -> None:
    """Run the network of ``state`` from 0 to ``t_stop`` [ms] and keep the observables."""
    last = state.last_run
    if last is not None and last.revision != state.revision:
        raise ChipFeatureError(
            "The network was changed (parameters, weights, connections or current sources) after run() without "
            "reset(): the chip cannot change its configuration during a run. Call sim.reset() before changing it."
        )
    if last is None:  # a new segment starts from the weights the previous one learned
        for prj in state.projections:
            prj._adopt_learned()
    key_of = {id(p): f"p{i}" for i, p in enumerate(state.populations)}
    for pop in state.populations:
        T.kind_of(pop.celltype)
        _check_initial_values(state, pop)
    groups = [g for prj in state.projections for g in T.projection_connections(prj)]
    seen: set = set()
    for k, g in enumerate(groups):  # projections with the same (default) label stay apart
        if g.label in seen:
            g.label = f"{g.label}#{k}"
        seen.add(g.label)
    for prj in state.projections:
        _check_delays(state, prj)
    scales, gains = T.weight_scales(groups, state.populations, state.vmap, state.speedup)
    proj_specs = []
    for g in groups:
        ps, err = T.projection_spec(g, key_of, scales.get((id(g.post), g.receptor), 1.0))
        proj_specs.append(ps)
        if err > 0.005:
            state.note_once(
                ("quantisation", g.projection.label),
                f"Projection {g.projection.label!r}: weights quantised to 6-bit steps of "
                f"{1.0 / ps.weight_scale:.4g} {'uS' if g.post.conductance_based else 'nA'}; worst relative error "
                f"{err:.1%}.",
            )
    spec = NetworkSpec(
        tuple(T.population_spec(key_of[id(p)], p) for p in state.populations), tuple(proj_specs)
    )
    key = _structure_key(spec)
    if isinstance(state.compiled, partitioned.PartitionedCompiled) and state.compiled.key == key:
        return _run_partitioned(state, spec, key_of, gains, t_stop)
    if state.compiled is None or state.compiled.key != key:
        try:
            mapping = partitioned.map_within(spec, getattr(state, "max_circuits", None))
        except (PlacementError, RoutingError) as err:
            label_of = {key_of[id(p)]: p.label for p in state.populations}
            if not getattr(state, "partition", False):
                if partitioned.is_feed_forward(spec):
                    raise type(err)(
                        f"{err} The network is feed-forward: setup(partition=True) runs it as sequential "
                        "single-chip partitions (spikes recorded in one run are played into the next)."
                    ) from err
                raise
            partitioned.check_partitionable(state, spec, label_of, err)
            state.compiled = partitioned.build(state, spec, key, label_of)
            return _run_partitioned(state, spec, key_of, gains, t_stop)
        state.compiled = Compiled(key, mapping, partitioned.executor_for(state, mapping))
    compiled = state.compiled
    cfg = _configure(state, compiled.mapping, key_of, gains, t_stop)
    plastic = _plasticity(state, compiled.mapping, key_of, spec.projections, groups, t_stop)
    if plastic is not None:
        apply_sensor_capmem(cfg, sensor_capmem(plastic.bindings, state.speedup))
    compiled.executor.set_config(cfg)
    for ps in spec.projections:
        compiled.executor.set_weights(ps.label, ps.steps)
    cadc_period_ms, madc = _readout(state, compiled.executor.config)
    madc_circuits = [int(compiled.mapping.circuits(key_of[p])[i]) for (p, i) in madc]
    if len(madc_circuits) == 2 and madc_circuits[0] % 2 == madc_circuits[1] % 2:
        raise RecordingError(
            f"The two MADC neurons sit on circuits {madc_circuits}, both {'even' if madc_circuits[0] % 2 == 0 else 'odd'}; "
            "the MADC reads one even and one odd circuit. Record one of them with the CADC."
        )
    compiled.executor.config.madc_circuits = madc_circuits
    sources = _sources(state, key_of, t_stop)
    stimuli = {
        key_of[pid]: (idx, hw.bio_ms_to_hw_us(t, state.speedup))
        for pid, (idx, t) in sources.items()
        if idx.size
    }
    duration_us = (
        float(hw.bio_ms_to_hw_us(t_stop, state.speedup)) + compiled.executor.config.cadc_period_us + 0.2
    )
    seed = int(np.random.SeedSequence([state.rng_seed, state.segment_counter]).generate_state(1)[0])
    programs = None if plastic is None else plastic.programs
    try:
        with warnings.catch_warnings():
            obs = compiled.executor.run(
                stimuli, duration_us=duration_us, trials=1, trial_seeds=[seed], plasticity=programs
            )
    except KernelError as exc:
        _kernel_error(state, exc, plastic, compiled, (key_of, sources, cadc_period_ms, madc))
    state.last_run = RunRecord(t_stop, state.revision, obs, key_of, sources, cadc_period_ms, madc)
    if plastic is not None:
        plastic.collect(obs.result.plasticity)


def _run_partitioned(state, spec, key_of, gains, t_stop: float) -> None:
    """``run()`` of a network kept as sequential partitions (see :mod:`.partitioned`)."""
    sources = _sources(state, key_of, t_stop)
    n_runs = len(state.compiled.runs)
    seeds = np.random.SeedSequence([state.rng_seed, state.segment_counter]).generate_state(n_runs)
    obs, cadc_period_ms, madc = partitioned.run(
        state, state.compiled, spec, key_of, gains, t_stop, _configure, _readout, sources, seeds
    )
    state.last_run = RunRecord(t_stop, state.revision, obs, key_of, sources, cadc_period_ms, madc)
