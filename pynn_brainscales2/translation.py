"""PyNN objects -> what the lower layers take: a :class:`~pynn_brainscales2.mapping.NetworkSpec`,
:class:`~pynn_brainscales2.calibration.CalibrationTargets` and the non-calibrated CapMem values.

Every unit conversion goes through :mod:`pynn_brainscales2.hardware`:

- times [ms] -> [us hardware] by the speed-up factor (``bio_ms_to_hw_us``);
- potentials [mV] -> [CADC LSB] by the backend's :class:`~pynn_brainscales2.hardware.VoltageMap`;
- currents: ``I / cm`` [mV/ms] -> membrane slope [LSB/us] (``VoltageMap.slope_to_lsb_per_us``);
- weights [nA or uS] -> integer steps with one scale per target population and receptor
  (``quantise_weights``); the calibrated synaptic gain makes one step worth ``1 / scale``.

Weight scale: the largest |w| onto a population's receptor gets ``n`` steps (at most 63
when the resulting per-step gain can lie in the calibratable range 0.01..0.5 LSB/us;
more, split over rows, only when it cannot). Two roundings make a weight on the chip
differ from the model: the weight to integer steps and the per-step gain to an integer
CapMem value (about 1/1022 LSB/us per CapMem step: a gain of 0.015 LSB/us is resolved to
3 %). ``n`` is the step count in the allowed range whose effective weights (both roundings,
nominal CapMem transfer) deviate least from the model weights, weighted by |w|; among
counts within 0.1 % of the best, the largest. A target with plastic projections
(``PlasticSynapse``, ``STDPMechanism``) takes the plastic ``w_max`` into its largest
weight and the finest step that fits (63 steps where the gain allows), so that the 6-bit
weights a rule writes span ``0..w_max``; each plastic connection gets exactly one synapse
row (``max_steps=63``), also when it starts at 0.

Short-term plasticity (``TsodyksMarkramSynapse``): ``U``, ``tau_rec`` and ``tau_facil``
[ms] become the drivers' CapMem values (``hardware.stp_*_capmem``, nominal transfers);
connections with different settings form separate projection specs, and mapping gives
each setting drivers of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cysim import constants as C

from . import hardware as hw
from .calibration import OPTIONAL_RANGES, RANGES, CalibrationTargets
from .calibration.targets import UNITS
from .errors import ChipFeatureError, ParameterRangeError, RoutingError
from .mapping import BACKGROUND, EXCITATORY, EXTERNAL, INHIBITORY, NEURON, PopulationSpec, ProjectionSpec
from .standardmodels import cells

MAX_STEPS = 4 * hw.WEIGHT_MAX  # at most 4 rows per connection
#: steps counts of the largest weight whose weighted error is within this of the best are
#: equivalent; the largest of them (finest weight resolution) is taken
_STEP_CHOICE_TOLERANCE = 1e-3

#: cell types whose parameters are calibrated (the LIF part; the AdEx terms of EIF too)
LIF_TYPES = (cells.IF_curr_exp, cells.IF_cond_exp, cells.EIF_cond_exp_isfa_ista)
#: conductance-based cell types (COBA mode; weights in uS)
COBA_TYPES = (cells.IF_cond_exp, cells.EIF_cond_exp_isfa_ista)
ADEX_TYPES = (cells.EIF_cond_exp_isfa_ista,)


def kind_of(celltype) -> str:
    """Mapping kind of a cell type: neuron, external or background."""
    if isinstance(celltype, (cells.SpikeSourceArray, cells.SpikeSourcePoisson)):
        return EXTERNAL
    if isinstance(celltype, cells.SpikeSourcePoissonOnChip):
        return BACKGROUND
    if isinstance(celltype, (*LIF_TYPES, cells.HXNeuron)):
        return NEURON
    raise ChipFeatureError(
        f"Cell type {type(celltype).__name__} is not supported on BrainScaleS-2; supported: "
        f"{', '.join(cells.SUPPORTED_CELL_TYPES)}."
    )


def param(population, name: str) -> np.ndarray:
    """Native parameter ``name`` of every neuron of ``population`` as a float array."""
    value = population._parameters[name]
    return np.broadcast_to(np.asarray(value, dtype=float), (population.size,)).astype(float)


# --- parameter checks in biological units -------------------------------------------------
def _check_finite(population, name, values, unit):
    bad = ~np.isfinite(values)
    if bad.any():
        raise ParameterRangeError(
            f"Population {population.label!r}: {name} = {values[bad][0]} {unit} (neuron {int(np.flatnonzero(bad)[0])}); "
            "parameters must be finite numbers."
        )


def time_to_us(population, name: str, range_us, speedup: float) -> np.ndarray:
    """A time parameter [ms] as hardware time [us], checked against ``range_us``."""
    v = param(population, name)
    _check_finite(population, name, v, "ms")
    t_us = hw.bio_ms_to_hw_us(v, speedup)
    bad = (t_us < range_us[0] - 1e-12) | (t_us > range_us[1] + 1e-12)
    if bad.any():
        lo, hi = (float(x) for x in hw.hw_us_to_bio_ms(np.asarray(range_us), speedup))
        raise ParameterRangeError(
            f"Population {population.label!r}: {name} = {v[bad][0]:g} ms is out of range: allowed "
            f"{lo:g}..{hi:g} ms at speedup {speedup:g} ({range_us[0]:g}..{range_us[1]:g} us on the chip). "
            "Choose a value inside, or a different speedup."
        )
    return t_us


def potential_to_lsb(population, name: str, range_lsb, vmap: hw.VoltageMap) -> np.ndarray:
    """A potential [mV] as CADC LSB, checked against ``range_lsb``."""
    v = param(population, name)
    _check_finite(population, name, v, "mV")
    try:
        return vmap.check_range(name, v, range_lsb)
    except ParameterRangeError as exc:
        raise ParameterRangeError(f"Population {population.label!r}: {exc}") from None


def check_spike_times(population) -> list[np.ndarray]:
    """Spike times [ms] of each source of a SpikeSourceArray, checked: finite, >= 0, sorted."""
    raw = population._parameters["spike_times"]
    seqs = [raw] if not isinstance(raw, np.ndarray) else list(raw)
    if len(seqs) == 1 and population.size > 1:
        seqs = seqs * population.size
    out = []
    for i, seq in enumerate(seqs):
        t = np.asarray(getattr(seq, "value", seq), dtype=float).reshape(-1)
        if t.size and (not np.all(np.isfinite(t)) or t.min() < 0):
            bad = t[~np.isfinite(t) | (t < 0)][0]
            raise ParameterRangeError(
                f"Population {population.label!r}: spike_times of source {i} contain {bad:g} ms; allowed "
                "finite times >= 0 ms. Remove negative or non-finite times."
            )
        if t.size > 1 and np.any(np.diff(t) < 0):
            k = int(np.flatnonzero(np.diff(t) < 0)[0])
            raise ParameterRangeError(
                f"Population {population.label!r}: spike_times of source {i} are not sorted ({t[k]:g} ms "
                f"before {t[k + 1]:g} ms); give them in increasing order (e.g. np.sort)."
            )
        out.append(t)
    return out


# --- network spec ------------------------------------------------------------------------------
@dataclass
class Connections:
    """Connections of one (pre population, post population, receptor) with PyNN weights."""

    label: str
    pre: object
    post: object
    receptor: str
    pre_idx: np.ndarray
    post_idx: np.ndarray
    weight: np.ndarray  # nA, uS, or steps (HXNeuron)
    projection: object
    rows: np.ndarray  # which connections of the projection these are
    stp: tuple | None = None  # driver STP setting (CapMem values), see ProjectionSpec.stp
    plastic: bool = False  # weights rewritten by a plasticity rule: one synapse row each


def _cells_of(group):
    """(population, index in population) of every cell of a Population/View/Assembly."""
    ids = group.all_cells
    parents = [i.parent for i in ids]
    index = np.array([p.id_to_index(i) for p, i in zip(parents, ids, strict=True)], dtype=np.int64)
    return parents, index


def projection_connections(projection) -> list[Connections]:
    """Split a projection into per-(pre population, post population) connection groups."""
    receptor = projection.receptor_type
    if receptor not in (EXCITATORY, INHIBITORY):
        raise RoutingError(
            f"Projection {projection.label!r}: receptor_type {receptor!r} does not exist on the chip; "
            "allowed: 'excitatory', 'inhibitory'."
        )
    pre_pops, pre_index = _cells_of(projection.pre)
    post_pops, post_index = _cells_of(projection.post)
    pre_i, post_i, w = projection._pre, projection._post, projection._weight
    pre_key = (
        np.array([id(p) for p in pre_pops], dtype=np.int64)[pre_i] if pre_i.size else np.zeros(0, np.int64)
    )
    post_key = (
        np.array([id(p) for p in post_pops], dtype=np.int64)[post_i] if post_i.size else np.zeros(0, np.int64)
    )
    groups = []
    lookup = {id(p): p for p in pre_pops + post_pops}
    pairs = sorted(set(zip(pre_key.tolist(), post_key.tolist(), strict=True)))
    stp_of, stp_keys = _stp_settings(projection)
    plastic = getattr(projection, "plasticity_rule", None) is not None
    for a, b in pairs:
        both = (pre_key == a) & (post_key == b)
        for k, setting in enumerate(stp_keys):
            sel = np.flatnonzero(both & (stp_of == k))
            if sel.size == 0:
                continue
            groups.append(
                Connections(
                    label=f"{projection.label}[{len(groups)}]",
                    pre=lookup[a],
                    post=lookup[b],
                    receptor=receptor,
                    pre_idx=pre_index[pre_i[sel]],
                    post_idx=post_index[post_i[sel]],
                    weight=w[sel],
                    projection=projection,
                    rows=sel,
                    stp=setting,
                    plastic=plastic,
                )
            )
    return groups


def _stp_settings(projection) -> tuple[np.ndarray, list]:
    """Per connection the index of its driver STP setting, and the settings (CapMem
    tuples; ``[None]`` for a projection without short-term plasticity)."""
    from .standardmodels.synapses import TsodyksMarkramSynapse

    n = len(projection._pre)
    if not isinstance(projection.synapse_type, TsodyksMarkramSynapse):
        return np.zeros(n, dtype=np.int64), [None]
    from . import simulator

    speedup = simulator.state.speedup
    e = projection._extra
    u, rec, fac = e["U"], e["tau_rec"], e["tau_facil"]
    for name, v in (("U", u), ("tau_rec", rec), ("tau_facil", fac)):
        if v.size and not np.all(np.isfinite(v)):
            raise ParameterRangeError(f"Projection {projection.label!r}: {name} must be finite.")
    if fac.size and np.any(fac < 0):
        raise ParameterRangeError(
            f"Projection {projection.label!r}: tau_facil = {fac.min():g} ms; allowed >= 0 ms."
        )
    try:
        u_c = hw.stp_utilization_capmem(u)
        rec_c = hw.stp_tau_capmem(hw.bio_ms_to_hw_us(rec, speedup))
        on = fac > 0
        fac_c = np.zeros(n, dtype=np.int64)
        fac_c[on] = hw.stp_tau_capmem(hw.bio_ms_to_hw_us(fac[on], speedup))
    except ParameterRangeError as exc:
        raise ParameterRangeError(
            f"Projection {projection.label!r} (TsodyksMarkramSynapse): {exc} (tau_rec, tau_facil in ms: "
            f"{hw.STP_TAU_MIN_US * speedup / 1000:g}..{hw.STP_TAU_MAX_US * speedup / 1000:g} ms at speedup {speedup:g}; "
            "tau_facil = 0 switches facilitation off.)"
        ) from None
    table = np.stack([u_c, rec_c, fac_c, on.astype(np.int64)], axis=1) if n else np.zeros((0, 4), np.int64)
    uniq, inverse = np.unique(table, axis=0, return_inverse=True)
    keys = [(int(r[0]), int(r[1]), int(r[2]), bool(r[3])) for r in uniq]
    return inverse.reshape(-1).astype(np.int64), keys or [None]


def plastic_w_max(projection) -> float:
    """[nA/uS] weight of the largest step count a plasticity rule may write."""
    from .standardmodels.synapses import PlasticSynapse, STDPMechanism

    syn = projection.synapse_type
    w = np.abs(projection._weight)
    candidates = [float(w.max()) if w.size else 0.0]
    if isinstance(syn, STDPMechanism) and projection._extra["w_max"].size:
        candidates.append(float(np.abs(projection._extra["w_max"]).max()))
    elif isinstance(syn, PlasticSynapse):
        if syn.w_max is not None:
            candidates = [syn.w_max, candidates[0]]
        elif getattr(syn.plasticity_rule, "params", {}).get("w_max") is not None:
            candidates.append(abs(float(syn.plasticity_rule.params["w_max"])))
    if max(candidates) <= 0:
        raise ParameterRangeError(
            f"Projection {projection.label!r}: every plastic weight is 0 and no w_max is given, so the 6-bit weights "
            "of the plasticity rule have no scale. Pass PlasticSynapse(w_max=...) [nA or uS]."
        )
    return max(candidates)


def weight_scales(groups, populations, vmap, speedup) -> tuple[dict, dict]:
    """Scale [steps per nA/uS] per (post population, receptor) and the synaptic gain target
    per circuit-neuron [LSB/us per step], ``{(pop_key, receptor): (scale, gain_array)}``."""
    scales, gains = {}, {}
    by_target: dict = {}
    for g in groups:
        by_target.setdefault((id(g.post), g.receptor), []).append(g)
    for (_, receptor), gs in by_target.items():
        post = gs[0].post
        wmax = max(float(np.abs(g.weight).max()) if g.weight.size else 0.0 for g in gs)
        plastic = [plastic_w_max(g.projection) for g in gs if g.plastic]
        wmax = max([wmax, *plastic])
        if isinstance(post.celltype, cells.HXNeuron):
            scales[(id(post), receptor)] = 1.0  # weights are steps
            continue
        if wmax == 0:
            continue
        cm = param(post, "cm")
        if isinstance(post.celltype, COBA_TYPES):  # conductance jump [1/us] per uS
            per_unit = hw.conductance_to_lsb_per_us(cm, speedup)
        else:  # membrane slope [LSB/us] per nA
            per_unit = vmap.slope_to_lsb_per_us(1.0 / cm, speedup)
        slope = wmax * per_unit  # LSB/us of the largest weight on each neuron
        lo, hi = RANGES["syn_gain_exc"]
        n_max = np.floor(slope.min() / lo)
        n_min = np.ceil(slope.max() / hi)
        if n_min <= hw.WEIGHT_MAX:
            n = float(min(hw.WEIGHT_MAX, n_max))
            if n >= max(1.0, n_min) and not plastic:
                weights = np.concatenate([np.abs(g.weight) for g in gs])
                n = _steps_of_largest_weight(weights, wmax, per_unit, int(max(1.0, n_min)), int(n))
        else:
            n = n_min
        unit = "uS" if isinstance(post.celltype, COBA_TYPES) else "nA"
        if n < 1 or n < n_min or n > MAX_STEPS:
            w_lo, w_hi = lo / per_unit.max(), MAX_STEPS * hi / per_unit.min()
            raise ParameterRangeError(
                f"Projections onto {post.label!r} ({receptor}): the largest |weight| is {wmax:g} {unit}; the chip's "
                f"synaptic gain range allows {w_lo:.3g}..{w_hi:.3g} {unit} for the largest weight (with cm = "
                f"{cm.min():g}..{cm.max():g} nF). Scale the weights into that range."
            )
        scale = n / wmax
        scales[(id(post), receptor)] = scale
        gains[(id(post), receptor)] = per_unit / scale
    return scales, gains


def _steps_of_largest_weight(weights, wmax: float, per_unit, n_lo: int, n_hi: int) -> float:
    """Steps ``n`` (``n_lo..n_hi``) of the largest weight whose effective weights deviate least
    from ``weights`` (see the module docstring); ``per_unit`` [LSB/us per model unit] per neuron."""
    w, count = np.unique(weights[weights > 0], return_counts=True)
    if w.size == 0:
        return float(n_hi)
    unit_slopes = np.unique(per_unit)
    total = float((w * count).sum())
    ns = np.arange(n_lo, n_hi + 1)
    cost = np.empty(ns.size)
    for k, n in enumerate(ns):
        scale = n / wmax
        capmem = hw.nominal_syn_gain_capmem(unit_slopes / scale)
        gain_ratio = np.maximum(np.rint(capmem), 1.0) / capmem  # CapMem rounding of the gain
        effective = np.rint(w * scale)[None, :] / scale * gain_ratio[:, None]
        cost[k] = float((np.abs(effective - w[None, :]) * count).sum(axis=1).max()) / total
    ok = cost <= cost.min() + _STEP_CHOICE_TOLERANCE
    return float(ns[ok].max())


def projection_spec(g: Connections, key_of, scale: float) -> tuple[ProjectionSpec, float]:
    """The :class:`ProjectionSpec` of a connection group and its worst relative quantisation error."""
    if isinstance(g.post.celltype, cells.HXNeuron):
        steps = np.abs(g.weight)
        if np.any(steps != np.round(steps)):
            raise ParameterRangeError(
                f"Projection {g.projection.label!r} onto HXNeuron population {g.post.label!r}: weights are integer "
                f"weight steps (0..{MAX_STEPS}); got {steps[steps != np.round(steps)][0]:g}."
            )
        q_steps, err = steps.astype(np.int64), 0.0
    else:
        q = hw.quantise_weights(np.abs(g.weight), scale=scale)
        q_steps, err = q.steps, q.max_relative_error
    if g.plastic and q_steps.size and q_steps.max() > hw.WEIGHT_MAX:
        raise ParameterRangeError(
            f"Projection {g.projection.label!r}: a plastic weight needs {int(q_steps.max())} steps; a plasticity rule "
            f"works on one 6-bit synapse per connection (at most {hw.WEIGHT_MAX} steps). Lower the weights, or raise "
            "w_max."
        )
    if q_steps.size and q_steps.max() > MAX_STEPS:
        raise ParameterRangeError(
            f"Projection {g.projection.label!r}: a weight needs {int(q_steps.max())} steps; at most {MAX_STEPS} "
            f"({MAX_STEPS // hw.WEIGHT_MAX} synapse rows) per connection."
        )
    spec = ProjectionSpec(
        g.label,
        key_of[id(g.pre)],
        key_of[id(g.post)],
        g.pre_idx,
        g.post_idx,
        q_steps,
        g.receptor,
        max_steps=hw.WEIGHT_MAX if g.plastic else None,
        weight_scale=scale,
        stp=g.stp,
    )
    return spec, err


def population_spec(key: str, population) -> PopulationSpec:
    kind = kind_of(population.celltype)
    # the PyNN backend calibrates and records single circuits: one circuit per neuron
    return PopulationSpec(key, population.size, kind, circuits_per_neuron=1 if kind == NEURON else None)


# --- calibration targets and CapMem values ------------------------------------------------
def lif_targets(populations, circuits_of, gains, vmap, speedup, bias=None) -> CalibrationTargets | None:
    """Calibration targets of every LIF circuit (None if there is none); ``bias``: bias-current
    targets [CADC LSB/us] per circuit (:func:`bias_targets`)."""
    arrays = {name: np.full(C.N_CIRCUITS, np.nan) for name in RANGES}
    defaults = CalibrationTargets.__dataclass_fields__
    for name in arrays:
        arrays[name][:] = defaults[name].default
    mask = np.zeros(C.N_CIRCUITS, dtype=bool)
    for pop in populations:
        if not isinstance(pop.celltype, LIF_TYPES):
            continue
        c = circuits_of[id(pop)]
        mask[c] = True
        arrays["tau_mem_us"][c] = time_to_us(pop, "tau_m", C.TAU_MEM_RANGE_US, speedup)
        arrays["tau_syn_exc_us"][c] = time_to_us(pop, "tau_syn_E", C.TAU_SYN_RANGE_US, speedup)
        arrays["tau_syn_inh_us"][c] = time_to_us(pop, "tau_syn_I", C.TAU_SYN_RANGE_US, speedup)
        arrays["refractory_us"][c] = time_to_us(pop, "tau_refrac", C.REFRACTORY_RANGE_US, speedup)
        arrays["leak_lsb"][c] = potential_to_lsb(pop, "v_rest", C.LEAK_RANGE_LSB, vmap)
        arrays["reset_lsb"][c] = potential_to_lsb(pop, "v_reset", C.RESET_RANGE_LSB, vmap)
        # the comparator threshold: v_thresh of LIF cells, the spike potential v_spike of AdEx
        # cells (whose v_thresh is V_T of the exponential term, see adex_targets)
        spike = "v_spike" if isinstance(pop.celltype, ADEX_TYPES) else "v_thresh"
        arrays["threshold_lsb"][c] = potential_to_lsb(pop, spike, C.THRESHOLD_RANGE_LSB, vmap)
        bad = arrays["reset_lsb"][c] >= arrays["threshold_lsb"][c]
        if bad.any():
            raise ParameterRangeError(
                f"Population {pop.label!r}: v_reset = {param(pop, 'v_reset')[bad][0]:g} mV must lie below {spike} = "
                f"{param(pop, spike)[bad][0]:g} mV."
            )
        cm = param(pop, "cm")
        _check_finite(pop, "cm", cm, "nF")
        if np.any(cm <= 0):
            raise ParameterRangeError(
                f"Population {pop.label!r}: cm = {cm[cm <= 0][0]:g} nF; allowed > 0 nF."
            )
        for receptor, name in ((EXCITATORY, "syn_gain_exc"), (INHIBITORY, "syn_gain_inh")):
            if (id(pop), receptor) in gains:
                arrays[name][c] = gains[(id(pop), receptor)]
    if not mask.any():
        return None
    if bias is not None:
        bias = np.where(mask, bias, np.nan)
    adex = adex_targets(populations, circuits_of, vmap, speedup)
    return CalibrationTargets(**arrays, bias_current=bias, circuits=mask, **(adex or {}))


def adex_targets(populations, circuits_of, vmap, speedup) -> dict | None:
    """AdEx calibration targets of the ``EIF_cond_exp_isfa_ista`` circuits (NaN elsewhere), in
    hardware units, or None without such populations:

    - ``v_thresh`` (V_T) [mV] -> ``v_exp_lsb`` through the voltage map; ``delta_T`` [mV] ->
      ``delta_t_lsb`` (a potential difference);
    - ``a`` [nS] -> ``a / cm`` [1/us] (``hardware.adaptation_to_per_us``);
    - ``b`` [nA] -> ``b / cm`` [mV/ms] -> membrane slope [LSB/us] (``VoltageMap.slope_to_lsb_per_us``);
    - ``tau_w`` [ms] -> [us] by the speed-up.

    Values outside the calibratable ranges raise :class:`ParameterRangeError` in biological
    units (``a = 0`` and ``b = 0`` are allowed: that part of the adaptation is off).
    """
    pops = [p for p in populations if isinstance(p.celltype, ADEX_TYPES)]
    if not pops:
        return None
    out = {
        name: np.full(C.N_CIRCUITS, np.nan)
        for name in ("v_exp_lsb", "delta_t_lsb", "adapt_a", "adapt_b", "tau_w_us")
    }
    for pop in pops:
        c = circuits_of[id(pop)]
        cm = param(pop, "cm")
        _check_finite(pop, "cm", cm, "nF")
        if np.any(cm <= 0):
            raise ParameterRangeError(
                f"Population {pop.label!r}: cm = {cm[cm <= 0][0]:g} nF; allowed > 0 nF."
            )
        v_t = potential_to_lsb(pop, "v_thresh", OPTIONAL_RANGES["v_exp_lsb"], vmap)
        v_spike = vmap.to_lsb(param(pop, "v_spike"))
        bad = v_t >= v_spike
        if bad.any():
            raise ParameterRangeError(
                f"Population {pop.label!r}: v_thresh = {param(pop, 'v_thresh')[bad][0]:g} mV (V_T of the exponential "
                f"term) must lie below v_spike = {param(pop, 'v_spike')[bad][0]:g} mV."
            )
        out["v_exp_lsb"][c] = v_t
        d = param(pop, "delta_T")
        _check_finite(pop, "delta_T", d, "mV")
        out["delta_t_lsb"][c] = _in_range(
            pop, "delta_T", vmap.delta_to_lsb(d), d, "mV", "delta_t_lsb", vmap.delta_to_mv(1.0)
        )
        a = param(pop, "a")
        _check_finite(pop, "a", a, "nS")
        per_unit = hw.adaptation_to_per_us(1.0, cm, speedup)  # [1/us] per nS
        out["adapt_a"][c] = _in_range(pop, "a", a * per_unit, a, "nS", "adapt_a", 1.0 / per_unit, zero=True)
        b = param(pop, "b")
        _check_finite(pop, "b", b, "nA")
        per_unit = vmap.slope_to_lsb_per_us(1.0 / cm, speedup)  # [LSB/us] per nA
        out["adapt_b"][c] = _in_range(pop, "b", b * per_unit, b, "nA", "adapt_b", 1.0 / per_unit, zero=True)
        out["tau_w_us"][c] = time_to_us(pop, "tau_w", OPTIONAL_RANGES["tau_w_us"], speedup)
        off = c[(a == 0) & (b == 0)]  # no adaptation at all: switched off, nothing to calibrate
        for name in ("adapt_a", "adapt_b", "tau_w_us"):
            out[name][off] = np.nan
    return out


def _in_range(population, name, hw_value, bio_value, unit, target, bio_per_hw, zero=False):
    """``hw_value`` checked against the calibratable range of ``target``; the error names the
    allowed range in biological units (``bio_per_hw``: biological units per hardware unit,
    per neuron or scalar)."""
    lo, hi = OPTIONAL_RANGES[target]
    ok = (hw_value >= lo * (1 - 1e-9)) & (hw_value <= hi * (1 + 1e-9))
    if zero:
        ok |= hw_value == 0
    if not ok.all():
        k = int(np.flatnonzero(~ok)[0])
        scale = np.broadcast_to(np.asarray(bio_per_hw, dtype=float), np.shape(hw_value))[k]
        raise ParameterRangeError(
            f"Population {population.label!r}: {name} = {bio_value[k]:g} {unit} (neuron {k}) is out of range: allowed "
            f"{'0 or ' if zero else ''}{lo * scale:.3g}..{hi * scale:.3g} {unit} for this neuron "
            f"({lo:g}..{hi:g} {UNITS[target]} on the chip). Choose a value inside."
        )
    return hw_value


def bias_slopes(populations, circuits_of, currents_na, vmap, speedup) -> np.ndarray:
    """Signed membrane slope ``I / cm`` [CADC LSB/us] of the bias current of every circuit
    (0 where there is none), checked against the calibratable range."""
    slopes = np.zeros(C.N_CIRCUITS)
    hi = OPTIONAL_RANGES["bias_current"][1]
    for pop in populations:
        if id(pop) not in currents_na:
            continue
        i_na = currents_na[id(pop)]
        cm = param(pop, "cm")
        slope = vmap.slope_to_lsb_per_us(i_na / cm, speedup)
        if np.any(np.abs(slope) > hi):
            limit = float((hi / vmap.slope_to_lsb_per_us(1.0 / cm, speedup)).min())
            k = int(np.flatnonzero(np.abs(slope) > hi)[0])
            raise ParameterRangeError(
                f"Population {pop.label!r}: current (i_offset + injected) = {i_na[k]:g} nA on neuron {k} is out of "
                f"range: allowed -{limit:.3g}..{limit:.3g} nA with cm = {cm[k]:g} nF at speedup {speedup:g}."
            )
        slopes[circuits_of[id(pop)]] = slope
    return slopes


def bias_targets(slopes) -> np.ndarray:
    """Bias-current calibration targets [CADC LSB/us]: ``|slope|`` where it lies in the
    calibratable range, NaN elsewhere (no current, or too small: nominal transfer)."""
    lo = OPTIONAL_RANGES["bias_current"][0]
    mag = np.abs(slopes)
    return np.where(mag >= lo, mag, np.nan)


def reversal_capmem(population, name: str, vmap) -> np.ndarray:
    """Nominal (uncalibrated) CapMem value of a reversal potential [mV]."""
    lsb = potential_to_lsb(population, name, (0.0, float(C.CADC_MAX)), vmap)
    return hw.nominal_potential_capmem(lsb)
