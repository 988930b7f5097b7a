"""What software can write to the chip: :class:`ChipConfig`.

Every field is validated when it is written, element-wise or whole, so a value the
silicon cannot hold never enters a configuration::

    >>> from cysim import ChipConfig
    >>> cfg = ChipConfig()
    >>> cfg.synapse_weights[0, 3, 5] = 40
    >>> cfg.synapse_weights[0, 3, 5] = 64
    Traceback (most recent call last):
    ...
    cysim.errors.ConfigError: synapse_weights[0, 3, 5] = 64 is out of range: allowed 0..63 (6-bit synapse weight). ...
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import numpy as np

from . import constants as C
from .errors import ConfigError, ConfigIndexError


@dataclass(frozen=True)
class FieldSpec:
    """Shape, type and allowed range of one configuration field."""

    shape: tuple
    dtype: type
    low: float
    high: float
    meaning: str
    default: float = 0
    index_names: tuple = ("circuit",)
    validate: object = None  # callable(whole field) -> error message or None


def compartment_runs(connect_right) -> list[np.ndarray]:
    """The logical neurons a ``connect_membrane_right`` switch pattern forms: one array of
    circuits per run of joined circuits (two or more; unjoined circuits are left out)."""
    sw = np.asarray(connect_right, dtype=bool).reshape(-1)
    runs = []
    i = 0
    while i < sw.size:
        if sw[i]:
            j = i
            while j < sw.size and sw[j]:
                j += 1
            runs.append(np.arange(i, j + 1))
            i = j + 1
        else:
            i += 1
    return runs


def _check_compartment_runs(data) -> str | None:
    sw = np.asarray(data, dtype=bool)
    edge = np.flatnonzero(sw[C.N_COLUMNS - 1 :: C.N_COLUMNS])
    if edge.size:
        c = int(edge[0]) * C.N_COLUMNS + C.N_COLUMNS - 1
        return (
            f"connect_membrane_right[{c}] = True: circuit {c} is the last column of hemisphere "
            f"{c // C.N_COLUMNS} and has no right neighbour there (allowed: switches of columns "
            f"0..{C.N_COLUMNS - 2} of each hemisphere; the two hemispheres are not joined "
            "horizontally). Open this switch."
        )
    for run in compartment_runs(sw):
        if run.size > C.MAX_COMPARTMENTS:
            return (
                f"connect_membrane_right joins circuits {int(run[0])}..{int(run[-1])} into one "
                f"logical neuron of {run.size} circuits; allowed at most {C.MAX_COMPARTMENTS}. "
                f"Open a switch inside the run (e.g. connect_membrane_right[{int(run[0]) + C.MAX_COMPARTMENTS - 1}] = False)."
            )
    return None


def _capmem(meaning, default):
    return FieldSpec((C.N_CIRCUITS,), np.int16, 0, C.CAPMEM_MAX, meaning, default)


def _switch(meaning, default=False):
    return FieldSpec((C.N_CIRCUITS,), np.bool_, 0, 1, meaning, default)


# Nominal CapMem defaults: a leaky, non-spiking membrane at rest near the middle of the
# readout range with moderate time constants; neurons are switched on by the user.
FIELDS: dict[str, FieldSpec] = {
    "v_leak": _capmem("leak potential CapMem cell", 400),
    "v_reset": _capmem("reset potential CapMem cell", 350),
    "v_threshold": _capmem("threshold CapMem cell", 700),
    "i_bias_leak": _capmem("leak bias current CapMem cell (sets tau_mem)", 500),
    "i_bias_syn_exc": _capmem("excitatory synaptic bias CapMem cell (sets tau_syn)", 500),
    "i_bias_syn_inh": _capmem("inhibitory synaptic bias CapMem cell (sets tau_syn)", 500),
    "i_syn_gm_exc": _capmem("excitatory synaptic gain CapMem cell", 500),
    "i_syn_gm_inh": _capmem("inhibitory synaptic gain CapMem cell", 500),
    "refractory_time": _capmem("refractory time CapMem cell", 60),
    "v_exp": _capmem("exponential term threshold CapMem cell", 750),
    "i_exp": _capmem("exponential term slope CapMem cell", 300),
    "i_adapt_a": _capmem("adaptation conductance CapMem cell", 0),
    "i_adapt_b": _capmem("adaptation increment CapMem cell", 0),
    "i_adapt_tau": _capmem("adaptation time constant CapMem cell", 500),
    "i_bias_const": _capmem("constant bias current CapMem cell", 0),
    "e_rev_exc": _capmem("excitatory reversal potential CapMem cell", 1000),
    "e_rev_inh": _capmem("inhibitory reversal potential CapMem cell", 100),
    "enable_spiking": _switch("spike comparator switch"),
    "enable_exponential": _switch("exponential term switch"),
    "enable_adaptation": _switch("adaptation switch"),
    "enable_coba": _switch("conductance-based input switch"),
    "enable_bias_current": _switch("bias current switch"),
    "bias_current_sink": _switch("bias current direction switch (True: sink)"),
    "enable_output": _switch("spike output switch"),
    "connect_membrane_right": FieldSpec(
        (C.N_CIRCUITS,),
        np.bool_,
        0,
        1,
        "membrane switch joining a circuit to its right neighbour in the same hemisphere "
        "(multi-compartment / logical neurons)",
        validate=_check_compartment_runs,
    ),
    "output_buses": FieldSpec(
        (C.N_CIRCUITS,), np.uint8, 0, 255, "bit mask of the 8 event buses a circuit's spikes go to"
    ),
    "output_address": FieldSpec(
        (C.N_CIRCUITS,), np.int16, 0, C.ADDRESS_MAX, "11-bit event address of a circuit's spikes"
    ),
    "synapse_weights": FieldSpec(
        (C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS),
        np.uint8,
        0,
        C.WEIGHT_MAX,
        "6-bit synapse weight",
        index_names=("hemisphere", "row", "column"),
    ),
    "synapse_labels": FieldSpec(
        (C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS),
        np.uint8,
        0,
        C.LABEL_MAX,
        "6-bit synapse label",
        index_names=("hemisphere", "row", "column"),
    ),
    "row_modes": FieldSpec(
        (C.N_HEMISPHERES, C.N_ROWS),
        np.uint8,
        0,
        2,
        "synapse row mode (0 off, 1 excitatory, 2 inhibitory)",
        index_names=("hemisphere", "row"),
    ),
    "driver_enable": FieldSpec(
        (C.N_HEMISPHERES, C.N_DRIVERS),
        np.bool_,
        0,
        1,
        "synapse driver switch",
        default=True,
        index_names=("hemisphere", "driver"),
    ),
    "driver_row_select": FieldSpec(
        (C.N_HEMISPHERES, C.N_DRIVERS),
        np.uint8,
        0,
        C.ROW_SELECT_MAX,
        "5-bit row-select address a synapse driver answers to",
        index_names=("hemisphere", "driver"),
    ),
    # --- plasticity (correlation sensors per hemisphere, short-term plasticity per driver)
    "corr_tau_causal": FieldSpec(
        (C.N_HEMISPHERES,),
        np.int16,
        0,
        C.CAPMEM_MAX,
        "causal correlation sensor time constant CapMem cell",
        default=444,  # ~20 us nominal
        index_names=("hemisphere",),
    ),
    "corr_tau_acausal": FieldSpec(
        (C.N_HEMISPHERES,),
        np.int16,
        0,
        C.CAPMEM_MAX,
        "acausal correlation sensor time constant CapMem cell",
        default=444,
        index_names=("hemisphere",),
    ),
    "corr_amp_causal": FieldSpec(
        (C.N_HEMISPHERES,),
        np.int16,
        0,
        C.CAPMEM_MAX,
        "causal correlation sensor amplitude CapMem cell",
        default=128,  # ~32 LSB per pair at zero delay nominal
        index_names=("hemisphere",),
    ),
    "corr_amp_acausal": FieldSpec(
        (C.N_HEMISPHERES,),
        np.int16,
        0,
        C.CAPMEM_MAX,
        "acausal correlation sensor amplitude CapMem cell",
        default=128,
        index_names=("hemisphere",),
    ),
    "stp_enable": FieldSpec(
        (C.N_HEMISPHERES, C.N_DRIVERS),
        np.bool_,
        0,
        1,
        "short-term plasticity switch of a synapse driver",
        index_names=("hemisphere", "driver"),
    ),
    "stp_facilitation": FieldSpec(
        (C.N_HEMISPHERES, C.N_DRIVERS),
        np.bool_,
        0,
        1,
        "facilitation switch of a synapse driver's short-term plasticity",
        index_names=("hemisphere", "driver"),
    ),
    "stp_utilization": FieldSpec(
        (C.N_HEMISPHERES, C.N_DRIVERS),
        np.int16,
        0,
        C.CAPMEM_MAX,
        "short-term plasticity utilisation CapMem cell of a synapse driver",
        default=511,  # U = 0.5 nominal
        index_names=("hemisphere", "driver"),
    ),
    "stp_tau_rec": FieldSpec(
        (C.N_HEMISPHERES, C.N_DRIVERS),
        np.int16,
        0,
        C.CAPMEM_MAX,
        "short-term plasticity recovery time constant CapMem cell of a synapse driver",
        default=341,  # ~100 us nominal
        index_names=("hemisphere", "driver"),
    ),
    "stp_tau_fac": FieldSpec(
        (C.N_HEMISPHERES, C.N_DRIVERS),
        np.int16,
        0,
        C.CAPMEM_MAX,
        "short-term plasticity facilitation time constant CapMem cell of a synapse driver",
        default=341,
        index_names=("hemisphere", "driver"),
    ),
    "bg_mode": FieldSpec(
        (C.N_BACKGROUND_GENERATORS,),
        np.uint8,
        0,
        2,
        "background generator mode (0 off, 1 Poisson, 2 regular)",
        index_names=("generator",),
    ),
    "bg_period_cycles": FieldSpec(
        (C.N_BACKGROUND_GENERATORS,),
        np.uint16,
        1,
        C.BG_PERIOD_MAX_CYCLES,
        "background generator (mean) period in 250 MHz clock cycles",
        default=250,
        index_names=("generator",),
    ),
    "bg_buses": FieldSpec(
        (C.N_BACKGROUND_GENERATORS,),
        np.uint8,
        0,
        255,
        "bit mask of the 8 event buses a background generator sends to",
        index_names=("generator",),
    ),
    "bg_address": FieldSpec(
        (C.N_BACKGROUND_GENERATORS,),
        np.int16,
        0,
        C.ADDRESS_MAX,
        "11-bit event address of a background generator",
        index_names=("generator",),
    ),
    "bg_seed": FieldSpec(
        (C.N_BACKGROUND_GENERATORS,),
        np.uint32,
        0,
        2**32 - 1,
        "background generator random seed",
        index_names=("generator",),
    ),
}


def _format_index(key) -> str:
    if not isinstance(key, tuple):
        key = (key,)
    parts = []
    for k in key:
        if isinstance(k, slice):
            parts.append(
                ":"
                if k == slice(None)
                else f"{'' if k.start is None else k.start}:{'' if k.stop is None else k.stop}"
            )
        elif isinstance(k, (int, np.integer)):
            parts.append(str(int(k)))
        else:
            parts.append("...")
    return ", ".join(parts)


def _check_values(name: str, spec: FieldSpec, values: np.ndarray, where: str) -> np.ndarray:
    """Validate ``values`` for field ``name``; return them converted to the field dtype."""
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        raise ConfigError(
            f"{name}{where} must be numeric, got {arr.dtype}; allowed {spec.low}..{spec.high} "
            f"({spec.meaning})."
        )
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = np.argwhere(bad)[0] if arr.ndim else ()
            raise ConfigError(
                f"{name}{where} contains {arr[tuple(idx)]} at element {tuple(int(i) for i in idx)}; "
                f"allowed {spec.low}..{spec.high} ({spec.meaning}). Write finite values."
            )
        if np.issubdtype(arr.dtype, np.complexfloating) or np.any(arr != np.round(arr)):
            raise ConfigError(
                f"{name}{where} must hold integers ({spec.meaning}); got non-integer values such as "
                f"{arr.flat[np.flatnonzero(arr != np.round(arr))[0]]}. Round them first."
            )
    if spec.dtype is not np.bool_:
        out_of_range = (arr < spec.low) | (arr > spec.high)
        if np.any(out_of_range):
            flat = np.flatnonzero(out_of_range)[0]
            value = arr.flat[flat]
            element = np.unravel_index(flat, arr.shape) if arr.ndim else ()
            element_s = (
                f" (element {tuple(int(i) for i in element)} of the written block)" if arr.ndim else ""
            )
            raise ConfigError(
                f"{name}{where} = {value:g} is out of range{element_s}: allowed "
                f"{spec.low:g}..{spec.high:g} ({spec.meaning}). Clip or rescale the value."
            )
    elif arr.dtype != np.bool_ and np.any((arr != 0) & (arr != 1)):
        raise ConfigError(f"{name}{where} is a switch: allowed True/False (or 0/1).")
    return arr.astype(spec.dtype)


class ConfigArray:
    """One field of a :class:`ChipConfig`: indexable like a NumPy array, validated on write.

    Reads return copies (``np.asarray(field)`` gives a read-only view), so the only way to
    change the chip is through a validated write.
    """

    __slots__ = ("_name", "_spec", "_data", "_owner")

    def __init__(self, name: str, spec: FieldSpec, data: np.ndarray | None = None, owner=None):
        self._owner = owner
        self._name = name
        self._spec = spec
        self._data = np.full(spec.shape, spec.default, dtype=spec.dtype) if data is None else data

    def _check_index(self, key):
        keys = key if isinstance(key, tuple) else (key,)
        for axis, k in enumerate(keys):
            if axis >= len(self._spec.shape):
                break
            n = self._spec.shape[axis]
            ks = np.asarray(k) if not isinstance(k, slice) and k is not Ellipsis else None
            if ks is not None and ks.dtype != np.bool_ and np.issubdtype(ks.dtype, np.integer):
                bad = (ks < -n) | (ks >= n)
                if np.any(bad):
                    value = int(np.atleast_1d(ks)[np.atleast_1d(bad)][0])
                    what = self._spec.index_names[axis] if axis < len(self._spec.index_names) else "index"
                    raise ConfigIndexError(
                        f"{self._name}: {what} index {value} is out of range: allowed 0..{n - 1}."
                    )

    def __getitem__(self, key):
        self._check_index(key)
        try:
            return self._data[key].copy()
        except IndexError as exc:
            raise ConfigIndexError(f"{self._name}[{_format_index(key)}]: {exc}") from None

    def __setitem__(self, key, value):
        self._check_index(key)
        checked = _check_values(self._name, self._spec, value, f"[{_format_index(key)}]")
        old = self._data.copy() if self._spec.validate is not None else None
        try:
            self._data[key] = checked
        except (IndexError, ValueError) as exc:
            raise ConfigIndexError(f"{self._name}[{_format_index(key)}]: {exc}") from None
        if old is not None:
            problem = self._spec.validate(self._data)
            if problem is not None:
                self._data[...] = old
                raise ConfigError(problem)
        if self._owner is not None:
            self._owner._touch()

    def __array__(self, dtype=None, copy=None):
        view = self._data.view()
        view.flags.writeable = False
        return view if dtype is None else view.astype(dtype)

    def __len__(self):
        return self._spec.shape[0]

    def __iter__(self):
        return iter(self._data.copy())

    def __eq__(self, other):
        return np.asarray(self) == np.asarray(other)

    __hash__ = None

    @property
    def shape(self):
        return self._spec.shape

    @property
    def dtype(self):
        return self._data.dtype

    def __repr__(self):
        return f"ConfigArray({self._name}, shape={self.shape}, dtype={self.dtype})"


class ChipConfig:
    """Everything software can write to a BrainScaleS-2 chip.

    Per circuit (512): the CapMem cells of :data:`cysim.constants.CAPMEM_FIELDS`
    (0..1022 each) and the switches of :data:`cysim.constants.SWITCH_FIELDS`; the spike
    output (``enable_output``, ``output_buses`` bit mask, ``output_address``).
    Per hemisphere: synapse arrays ``synapse_weights`` and ``synapse_labels``
    [hemisphere, row, column] (6 bit each), ``row_modes`` [hemisphere, row]
    (0 off / 1 exc / 2 inh), ``driver_enable`` and ``driver_row_select``
    [hemisphere, driver] (driver ``d`` drives rows ``2d, 2d+1`` and listens to PADI bus
    ``d % 4``). Correlation sensors, per hemisphere: ``corr_tau_causal``,
    ``corr_tau_acausal``, ``corr_amp_causal``, ``corr_amp_acausal`` (CapMem 0..1022).
    Short-term plasticity, per driver [hemisphere, driver]: ``stp_enable``,
    ``stp_facilitation`` (switches), ``stp_utilization``, ``stp_tau_rec``, ``stp_tau_fac``
    (CapMem 0..1022; off by default). Background generators (8): ``bg_mode``, ``bg_period_cycles``,
    ``bg_buses``, ``bg_address``, ``bg_seed``. Readout: ``cadc_enable``,
    ``cadc_period_us`` and ``madc_circuits``.
    Multi-compartment (logical) neurons: ``connect_membrane_right`` [circuit] closes the
    membrane switch between a circuit and its right neighbour in the same hemisphere; a run
    of closed switches joins up to :data:`cysim.constants.MAX_COMPARTMENTS` circuits (see
    :func:`compartment_runs` and ``docs/virtual_chip.md``).

    Assigning a whole field (``cfg.v_leak = values``) broadcasts and validates like an
    element write.
    """

    _tokens = itertools.count()

    def __init__(self):
        object.__setattr__(self, "_token", next(ChipConfig._tokens))
        object.__setattr__(self, "_version", 0)
        object.__setattr__(self, "_fields", {n: ConfigArray(n, s, owner=self) for n, s in FIELDS.items()})
        object.__setattr__(self, "_cadc_enable", True)
        object.__setattr__(self, "_cadc_period_us", C.CADC_PERIOD_DEFAULT_US)
        object.__setattr__(self, "_madc_circuits", ())

    # --- array fields ---------------------------------------------------------------
    def __getattr__(self, name):
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        raise AttributeError(
            f"ChipConfig has no field {name!r}; fields: {', '.join(sorted(fields))}, "
            "cadc_enable, cadc_period_us, madc_circuits."
        )

    def __setattr__(self, name, value):
        if name in self._fields:
            self._fields[name][...] = value
        elif name in ("cadc_enable", "cadc_period_us", "madc_circuits"):
            object.__setattr__(self, name, value)  # dispatched to the properties below
        else:
            raise ConfigError(
                f"ChipConfig has no field {name!r}; fields: {', '.join(sorted(self._fields))}, "
                "cadc_enable, cadc_period_us, madc_circuits."
            )

    # --- readout --------------------------------------------------------------------
    @property
    def cadc_enable(self) -> bool:
        """Whether the CADC samples all 512 membranes during a run."""
        return self._cadc_enable

    @cadc_enable.setter
    def cadc_enable(self, value):
        object.__setattr__(self, "_cadc_enable", bool(value))

    @property
    def cadc_period_us(self) -> float:
        """CADC sampling period [us hardware time], 1.7..1000."""
        return self._cadc_period_us

    @cadc_period_us.setter
    def cadc_period_us(self, value):
        v = float(value)
        if not np.isfinite(v) or not (C.CADC_PERIOD_MIN_US <= v <= C.CADC_PERIOD_MAX_US):
            raise ConfigError(
                f"cadc_period_us = {value} us is out of range: allowed "
                f"{C.CADC_PERIOD_MIN_US}..{C.CADC_PERIOD_MAX_US} us (the CADC samples all 512 "
                "channels in parallel and cannot go faster). Use the MADC for fine traces."
            )
        object.__setattr__(self, "_cadc_period_us", v)

    @property
    def madc_circuits(self) -> tuple:
        """Circuits recorded by the MADC: up to two, at most one even and one odd."""
        return self._madc_circuits

    @madc_circuits.setter
    def madc_circuits(self, value):
        circuits = tuple(int(c) for c in np.atleast_1d(np.asarray(value, dtype=float)))
        for c, raw in zip(circuits, np.atleast_1d(value), strict=True):
            if not np.isfinite(float(raw)) or c != float(raw):
                raise ConfigError(f"madc_circuits: {raw} is not a circuit index (0..511).")
            if not 0 <= c < C.N_CIRCUITS:
                raise ConfigIndexError(
                    f"madc_circuits: circuit index {c} is out of range: allowed 0..{C.N_CIRCUITS - 1}."
                )
        if len(circuits) > C.MADC_MAX_CHANNELS:
            raise ConfigError(
                f"madc_circuits = {circuits}: the MADC records at most {C.MADC_MAX_CHANNELS} "
                "circuits (one even, one odd column). Record the others with the CADC."
            )
        if len(circuits) == 2 and circuits[0] % 2 == circuits[1] % 2:
            raise ConfigError(
                f"madc_circuits = {circuits}: the two MADC channels are wired to one even and one "
                "odd column; choose circuits of different parity."
            )
        object.__setattr__(self, "_madc_circuits", circuits)

    # --- helpers --------------------------------------------------------------------
    def _touch(self):
        object.__setattr__(self, "_version", self._version + 1)

    @property
    def revision(self) -> tuple[int, int]:
        """(identity, write counter): changes whenever anything is written."""
        return (self._token, self._version)

    def copy(self) -> ChipConfig:
        """Deep copy."""
        return copy.deepcopy(self)

    def array(self, name: str) -> np.ndarray:
        """Read-only view of field ``name`` (no copy)."""
        return np.asarray(self._fields[name])

    def __eq__(self, other):
        if not isinstance(other, ChipConfig):
            return NotImplemented
        return (
            all(np.array_equal(self.array(n), other.array(n)) for n in FIELDS)
            and self.cadc_enable == other.cadc_enable
            and self.cadc_period_us == other.cadc_period_us
            and self.madc_circuits == other.madc_circuits
        )

    __hash__ = None

    def __repr__(self):
        used = int(np.count_nonzero(self.array("synapse_weights")))
        spiking = int(np.count_nonzero(self.array("enable_spiking")))
        return f"ChipConfig({spiking} spiking circuits, {used} non-zero synapses)"

    def __deepcopy__(self, memo):
        new = ChipConfig.__new__(ChipConfig)
        object.__setattr__(new, "_token", next(ChipConfig._tokens))
        object.__setattr__(new, "_version", 0)
        object.__setattr__(
            new,
            "_fields",
            {n: ConfigArray(n, FIELDS[n], self.array(n).copy(), owner=new) for n in FIELDS},
        )
        object.__setattr__(new, "_cadc_enable", self._cadc_enable)
        object.__setattr__(new, "_cadc_period_us", self._cadc_period_us)
        object.__setattr__(new, "_madc_circuits", self._madc_circuits)
        return new
