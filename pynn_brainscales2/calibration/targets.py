"""Calibration targets in hardware units, with the chip's documented ranges."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields, replace

import numpy as np

from cysim import constants as C

from ..errors import CalibrationRangeError

N = C.N_CIRCUITS

#: documented calibratable ranges (HARDWARE.md); the synaptic gain range is the one the
#: synaptic-input transconductance covers on every circuit of a typical chip
RANGES = {
    "tau_mem_us": C.TAU_MEM_RANGE_US,
    "tau_syn_exc_us": C.TAU_SYN_RANGE_US,
    "tau_syn_inh_us": C.TAU_SYN_RANGE_US,
    "leak_lsb": C.LEAK_RANGE_LSB,
    "reset_lsb": C.RESET_RANGE_LSB,
    "threshold_lsb": C.THRESHOLD_RANGE_LSB,
    "refractory_us": C.REFRACTORY_RANGE_US,
    "syn_gain_exc": (0.01, 0.5),
    "syn_gain_inh": (0.01, 0.5),
}
#: optional targets: NaN (or None) leaves a circuit's cell uncalibrated; only measured
#: when some circuit has a finite target. ``bias_current``: magnitude of the membrane slope
#: ``|I/C|`` of the constant bias current [CADC LSB/us] (the sign is the sink switch)
OPTIONAL_RANGES = {
    "bias_current": (0.5, 25.0),
    # AdEx exponential term (both or neither per circuit): V_T and Delta_T
    "v_exp_lsb": (60.0, 170.0),
    "delta_t_lsb": (2.0, 8.0),
    # AdEx adaptation (all three or none per circuit); a = 0 and b = 0 are allowed as well
    "adapt_a": (0.01, 0.5),
    "adapt_b": (0.3, 10.0),
    "tau_w_us": (20.0, 800.0),
}
#: the AdEx target families: a circuit gets all targets of a family or none
EXPONENTIAL_TARGETS = ("v_exp_lsb", "delta_t_lsb")
ADAPTATION_TARGETS = ("adapt_a", "adapt_b", "tau_w_us")
ADEX_TARGETS = EXPONENTIAL_TARGETS + ADAPTATION_TARGETS
#: optional targets that may also be exactly 0 (the term switched off through its CapMem cell)
ZERO_ALLOWED = ("adapt_a", "adapt_b")
UNITS = {
    "bias_current": "CADC LSB/us",
    "v_exp_lsb": "CADC LSB",
    "delta_t_lsb": "CADC LSB",
    "adapt_a": "1/us",
    "adapt_b": "CADC LSB/us per spike",
    "tau_w_us": "us",
    "tau_mem_us": "us",
    "tau_syn_exc_us": "us",
    "tau_syn_inh_us": "us",
    "leak_lsb": "CADC LSB",
    "reset_lsb": "CADC LSB",
    "threshold_lsb": "CADC LSB",
    "refractory_us": "us",
    "syn_gain_exc": "LSB/us per weight step",
    "syn_gain_inh": "LSB/us per weight step",
}


@dataclass(frozen=True)
class CalibrationTargets:
    """Per-circuit targets of a LIF calibration (optionally with the bias current and the
    AdEx terms), in hardware units.

    Every field takes a scalar (all circuits) or an array of 512 values; NaN leaves a
    circuit uncalibrated for that parameter... except that all parameters of a calibrated
    circuit must be given. Use :meth:`for_circuits` to calibrate a subset.

    Parameters
    ----------
    tau_mem_us : membrane time constant [us], 0.5..60
    tau_syn_exc_us, tau_syn_inh_us : synaptic time constants [us], 0.3..30
    leak_lsb, reset_lsb : leak and reset potentials [CADC LSB], 50..160
    threshold_lsb : spike threshold [CADC LSB], 50..220
    refractory_us : refractory time [us], 0.04..32
    syn_gain_exc, syn_gain_inh : jump of the synaptic input per weight step, as the rate of
        change of the membrane it causes [CADC LSB/us], 0.01..0.5
    bias_current : optional, magnitude of the membrane slope of the constant bias current
        [CADC LSB/us], 0.5..25; None or NaN: not calibrated (the default)
    v_exp_lsb, delta_t_lsb : optional, AdEx exponential term: ``V_T`` [CADC LSB], 60..170,
        and ``Delta_T`` [CADC LSB], 2..8 (both or neither per circuit; below
        ``threshold_lsb``, which acts as the spike potential)
    adapt_a, adapt_b, tau_w_us : optional, AdEx adaptation: ``a`` [1/us] (0 or
        0.01..0.5), ``b`` as the jump of the membrane slope ``w`` per spike [CADC LSB/us]
        (0 or 0.3..10) and ``tau_w`` [us], 20..800 (all three or none per circuit)
    circuits : bool mask of the circuits to calibrate (default: all 512)
    compartments : optional, the layout of logical (multi-compartment) neurons: the
        ``ChipConfig.connect_membrane_right`` switches (512 bools, e.g.
        ``MappingResult.compartment_switches``). A run of joined circuits is calibrated as
        one neuron: the targets then describe the whole logical neuron (the potentials and
        time constants of the shared membrane, the threshold of its leftmost, spiking
        circuit, and ``syn_gain_*`` as the rate of change of the shared membrane per weight
        step through *any* of its columns). All circuits of a logical neuron must be
        selected and share its targets.

    Examples
    --------
    >>> t = CalibrationTargets(tau_mem_us=10.0, threshold_lsb=150.0)
    >>> t.array("tau_mem_us").shape
    (512,)
    """

    tau_mem_us: object = 10.0
    tau_syn_exc_us: object = 5.0
    tau_syn_inh_us: object = 5.0
    leak_lsb: object = 80.0
    reset_lsb: object = 70.0
    threshold_lsb: object = 140.0
    refractory_us: object = 2.0
    syn_gain_exc: object = 0.1
    syn_gain_inh: object = 0.1
    bias_current: object = None
    v_exp_lsb: object = None
    delta_t_lsb: object = None
    adapt_a: object = None
    adapt_b: object = None
    tau_w_us: object = None
    circuits: object = None
    compartments: object = None

    def __post_init__(self):
        for name in (*RANGES, *OPTIONAL_RANGES):
            raw = getattr(self, name)
            raw = np.nan if raw is None else raw
            value = np.broadcast_to(np.asarray(raw, dtype=np.float64), (N,)).copy()
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        mask = np.ones(N, bool) if self.circuits is None else np.zeros(N, bool)
        if self.circuits is not None:
            c = np.asarray(self.circuits)
            if c.dtype == bool:
                mask[:] = np.broadcast_to(c, (N,))
            else:
                if c.size and (c.min() < 0 or c.max() >= N):
                    raise CalibrationRangeError(
                        f"circuits: indices must lie in 0..{N - 1}, got {c.min()}..{c.max()}."
                    )
                mask[c] = True
        mask.setflags(write=False)
        object.__setattr__(self, "circuits", mask)
        if self.compartments is not None:
            from cysim.config import _check_compartment_runs

            sw = np.asarray(self.compartments)
            if sw.shape != (N,) or not (sw.dtype == bool or np.isin(sw, (0, 1)).all()):
                raise CalibrationRangeError(
                    f"compartments: give the 512 connect_membrane_right switches (bools), got shape {sw.shape}."
                )
            sw = sw.astype(bool)
            problem = _check_compartment_runs(sw)
            if problem is not None:
                raise CalibrationRangeError(f"compartments: {problem}")
            if not sw.any():
                sw = None
            else:
                sw.setflags(write=False)
            object.__setattr__(self, "compartments", sw)
        self.check()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(RANGES)

    def array(self, name: str) -> np.ndarray:
        return getattr(self, name)

    @property
    def has_bias(self) -> bool:
        """Whether some selected circuit has a bias-current target."""
        return bool(np.isfinite(self.bias_current[self.circuits]).any())

    def without_bias(self) -> CalibrationTargets:
        """The same targets without bias-current targets."""
        return replace(self, bias_current=None)

    @property
    def has_exponential(self) -> bool:
        """Whether some selected circuit has targets for the exponential term."""
        return bool(np.isfinite(self.v_exp_lsb[self.circuits]).any())

    @property
    def has_adaptation(self) -> bool:
        """Whether some selected circuit has adaptation targets."""
        return bool(np.isfinite(self.tau_w_us[self.circuits]).any())

    @property
    def has_adex(self) -> bool:
        """Whether some selected circuit has AdEx (exponential or adaptation) targets."""
        return self.has_exponential or self.has_adaptation

    @property
    def has_compartments(self) -> bool:
        """Whether the targets join circuits into logical neurons."""
        return self.compartments is not None

    def neuron_size(self) -> np.ndarray:
        """Circuits of the logical neuron each circuit belongs to (1 where not joined), (512,)."""
        from cysim import compartment_runs

        size = np.ones(N, dtype=np.int64)
        if self.compartments is not None:
            for run in compartment_runs(self.compartments):
                size[run] = run.size
        return size

    def per_circuit(self) -> CalibrationTargets:
        """Targets of the single circuits (switches open) from which a logical neuron starts:
        the same targets, the synaptic gains times the neuron's number of circuits (a current
        into one of ``c`` equal membranes moves the shared one ``c`` times less)."""
        c = self.neuron_size()
        return replace(
            self, compartments=None, syn_gain_exc=self.syn_gain_exc * c, syn_gain_inh=self.syn_gain_inh * c
        )

    def without_adex(self) -> CalibrationTargets:
        """The same targets without the AdEx targets (the LIF and bias-current part)."""
        return replace(self, **{name: None for name in ADEX_TARGETS})

    def check(self) -> None:
        """Refuse targets outside the chip's documented ranges (before any measurement)."""
        sel = self.circuits
        for name, (lo, hi) in RANGES.items():
            v = self.array(name)[sel]
            bad = ~np.isfinite(v) | (v < lo) | (v > hi)
            if bad.any():
                circuits = np.flatnonzero(sel)[bad]
                raise CalibrationRangeError(
                    f"{name} = {_fmt(v[bad])} {UNITS[name]} on circuit(s) {_fmt_idx(circuits)} lies outside "
                    f"the chip's calibratable range {lo}..{hi} {UNITS[name]}. Choose a target in that range."
                )
        for name, (lo, hi) in OPTIONAL_RANGES.items():
            v = self.array(name)[sel]
            bad = (~np.isnan(v)) & (~np.isfinite(v) | (v < lo) | (v > hi))
            zero = name in ZERO_ALLOWED
            if zero:
                bad &= v != 0.0
            if bad.any():
                circuits = np.flatnonzero(sel)[bad]
                raise CalibrationRangeError(
                    f"{name} = {_fmt(v[bad])} {UNITS[name]} on circuit(s) {_fmt_idx(circuits)} lies outside "
                    f"the chip's calibratable range {'0 or ' if zero else ''}{lo}..{hi} {UNITS[name]}. Choose a "
                    "target in that range, or NaN to leave it uncalibrated."
                )
        for family, what in ((EXPONENTIAL_TARGETS, "exponential term"), (ADAPTATION_TARGETS, "adaptation")):
            given = np.stack([np.isfinite(self.array(name)[sel]) for name in family])
            partial = given.any(0) & ~given.all(0)
            if partial.any():
                circuits = np.flatnonzero(sel)[partial]
                raise CalibrationRangeError(
                    f"The AdEx {what} targets {', '.join(family)} must be given together (all finite or all "
                    f"NaN); not so on circuit(s) {_fmt_idx(circuits)}."
                )
        bad = np.isfinite(self.v_exp_lsb[sel]) & (self.v_exp_lsb[sel] >= self.threshold_lsb[sel])
        if bad.any():
            raise CalibrationRangeError(
                "v_exp_lsb (V_T) must lie below threshold_lsb (the spike potential of the exponential term); "
                f"not so on circuit(s) {_fmt_idx(np.flatnonzero(sel)[bad])}."
            )
        if self.compartments is not None:
            from cysim import compartment_runs

            c = self.neuron_size()
            for run in compartment_runs(self.compartments):
                if not sel[run].all() or not sel[run].any():
                    if sel[run].any():
                        raise CalibrationRangeError(
                            f"compartments: circuits {int(run[0])}..{int(run[-1])} form one logical neuron; "
                            "select all of them in `circuits` or none."
                        )
                    continue
                for name in RANGES:
                    v = self.array(name)[run]
                    if not np.all(v == v[0]):
                        raise CalibrationRangeError(
                            f"compartments: circuits {int(run[0])}..{int(run[-1])} form one logical neuron but "
                            f"have different {name} targets ({_fmt(v)}); give its circuits one target."
                        )
            for name in ("syn_gain_exc", "syn_gain_inh"):
                lo, hi = RANGES[name]
                v = self.array(name) * c
                bad = sel & (c > 1) & (v > hi)
                if bad.any():
                    idx = np.flatnonzero(bad)
                    raise CalibrationRangeError(
                        f"{name} = {_fmt(self.array(name)[bad])} {UNITS[name]} on the logical neuron(s) of "
                        f"circuit(s) {_fmt_idx(idx)} with {int(c[bad].max())} circuits: each circuit must then "
                        f"give {_fmt(v[bad])} {UNITS[name]} to its own membrane, above the reachable {hi}. "
                        f"Choose at most {hi / c[bad].max():.3g} {UNITS[name]} (scale the weights up instead), "
                        "or fewer circuits per neuron."
                    )
        bad = self.reset_lsb[sel] >= self.threshold_lsb[sel]
        if bad.any():
            raise CalibrationRangeError(
                f"reset_lsb must lie below threshold_lsb; not so on circuit(s) {_fmt_idx(np.flatnonzero(sel)[bad])}."
            )

    def key(self) -> str:
        """A digest of the targets (for cache keys)."""
        h = hashlib.sha256()
        for name in RANGES:
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.array(name), dtype="<f8").tobytes())
        if self.has_bias:  # (targets without bias keep the digest they had before it existed)
            h.update(b"bias_current")
            h.update(np.ascontiguousarray(self.bias_current, dtype="<f8").tobytes())
        if self.has_adex:  # (and targets without AdEx terms the digest they had before those)
            for name in ADEX_TARGETS:
                h.update(name.encode())
                h.update(np.ascontiguousarray(self.array(name), dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self.circuits).tobytes())
        if self.compartments is not None:  # (targets without logical neurons keep their digest)
            h.update(b"compartments")
            h.update(np.ascontiguousarray(self.compartments).tobytes())
        return h.hexdigest()

    def to_json(self) -> str:
        return json.dumps({f.name: np.asarray(getattr(self, f.name)).tolist() for f in fields(self)})


def _fmt(values: np.ndarray) -> str:
    u = np.unique(values)
    return f"{u[0]:g}" if u.size == 1 else f"{u.min():g}..{u.max():g}"


def _fmt_idx(idx: np.ndarray, limit: int = 8) -> str:
    idx = np.asarray(idx)
    head = ", ".join(str(int(i)) for i in idx[:limit])
    return head + (f", ... ({idx.size} circuits)" if idx.size > limit else "")
