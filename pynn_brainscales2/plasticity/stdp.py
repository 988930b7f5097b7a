"""Built-in pair-based STDP from the correlation sensors: :class:`STDPRule`.

At every tick the rule reads each synapse's causal and acausal sensor, subtracts the
readout after a reset (the sensor's offset) and empties it. With ``eta`` the sensor
amplitude per pair at zero delay, ``K+ = causal / eta`` and ``K- = acausal / eta`` count
pairs weighted by ``exp(-|Delta t| / tau)``, and (weights in 6-bit steps,
``w_max``/``w_min`` converted with the projection's weight scale)::

    additive:        dw = A_plus * w_max * K+  -  A_minus * w_max * K-
    multiplicative:  dw = A_plus * (w_max - w) * K+  -  A_minus * (w - w_min) * K-

(PyNN's ``AdditiveWeightDependence``/``MultiplicativeWeightDependence`` with
``SpikePairRule``). The fractional part of ``dw`` is carried to the next tick (a
higher-resolution accumulator in the processor's memory), so small changes add up;
weights stay within ``w_min..w_max``.

Execution: like the real chip's compiled plasticity code, the rule runs inside the
virtual chip's engine (:class:`cysim.ppu.STDPProgram`, one program per rule): its ticks
do not return to Python, and only synapses whose sensors changed since the previous tick
are visited. The kernel below (:meth:`STDPRule._kernel`) is the same rule in Python;
``STDPRule(..., compiled=False)`` runs it, with bit-identical weights. A run falls back to
the Python kernel by itself when another rule reads spike counters (they are read and
reset at the ticks of every rule) or a parameter is not finite.

Where this differs from a simulator's ``SpikePairRule`` (all-to-all traces, updates at
every spike): a post spike pairs only with the *latest* pre spike (and a pre spike with
the latest post spike), and a later post spike pairs with the same pre spike again;
the sensors are 8 bit and saturate at 255 LSB between ticks; weights change only at the
ticks (a multiplicative update uses the weight of the tick); tau_plus/tau_minus are one
setting per hemisphere; on a realistic chip each synapse's sensor amplitude and time
constant deviate (about 10 % each, uncalibrated).
"""

from __future__ import annotations

import numpy as np

from cysim.ppu import STDPProgram

from .. import hardware as hw
from ..errors import ChipFeatureError
from .rules import PlasticityRule, SensorSettings, Timer

#: [ms] tick period of the rule that runs PyNN's STDPMechanism
STDP_DEFAULT_PERIOD_MS = 10.0
#: [sensor LSB per pair at zero delay] sensor amplitude of STDPMechanism's rule (8 pairs
#: at zero delay fill the 8-bit sensor between two ticks)
STDP_DEFAULT_AMPLITUDE_LSB = 32.0
DEPENDENCES = ("additive", "multiplicative")


class STDPRule(PlasticityRule):
    """Pair-based STDP on the correlation sensors (see the module docstring).

    Parameters
    ----------
    tau_plus, tau_minus : float
        [ms] decay of the causal / acausal window (correlation-sensor time constants).
    A_plus, A_minus : float
        Amplitudes, relative to ``w_max`` (additive) or to the distance to the bound
        (multiplicative), per pair at zero delay.
    w_min, w_max : float, optional
        [nA/uS] weight bounds; ``w_max=None``: 63 steps.
    dependence : {"additive", "multiplicative"}
    timer : Timer, optional
        Default: a tick every ``STDP_DEFAULT_PERIOD_MS`` from 0 ms.
    sensor_amplitude : float
        [sensor LSB] per pair at zero delay (larger: finer readout, earlier saturation).
    observables, name
        As for :class:`PlasticityRule`.
    compiled : bool
        Run the rule inside the engine (default); False: the Python kernel (same results).

    Examples
    --------
    >>> rule = STDPRule(tau_plus=20.0, tau_minus=30.0, A_plus=0.02, A_minus=0.01)
    >>> rule.sensors.tau_acausal
    30.0
    """

    def __init__(
        self,
        tau_plus: float = 20.0,
        tau_minus: float = 20.0,
        A_plus: float = 0.01,
        A_minus: float = 0.01,
        w_min: float = 0.0,
        w_max: float | None = None,
        dependence: str = "additive",
        timer: Timer | None = None,
        sensor_amplitude: float = STDP_DEFAULT_AMPLITUDE_LSB,
        observables=None,
        name: str = "stdp",
        compiled: bool = True,
    ):
        if dependence not in DEPENDENCES:
            raise ChipFeatureError(f"STDPRule dependence = {dependence!r}: allowed {', '.join(DEPENDENCES)}.")
        timer = Timer(0.0, STDP_DEFAULT_PERIOD_MS, None) if timer is None else timer
        sensors = SensorSettings(
            float(tau_plus), float(tau_minus), float(sensor_amplitude), float(sensor_amplitude)
        )
        super().__init__(self._kernel, timer, observables=observables, sensors=sensors, name=name)
        self.dependence = dependence
        self.compiled = bool(compiled)
        self.params = {"A_plus": A_plus, "A_minus": A_minus, "w_min": w_min, "w_max": w_max}
        self._per_projection: dict = {}
        self._carry: dict = {}

    @classmethod
    def for_projection(cls, projection) -> STDPRule:
        """The rule of a projection made with PyNN's ``STDPMechanism``."""
        from ..standardmodels.synapses import MultiplicativeWeightDependence

        syn = projection.synapse_type
        extra = projection._extra
        taus = {}
        for name in ("tau_plus", "tau_minus"):
            values = np.unique(extra[name]) if extra[name].size else np.array([20.0])
            if values.size > 1:
                raise ChipFeatureError(
                    f"Projection {projection.label!r}: {name} takes {values.size} values ({values.min():g}.."
                    f"{values.max():g} ms); the correlation sensors have one time constant per hemisphere. Give one "
                    f"{name} per projection."
                )
            taus[name] = float(values[0])
        dependence = (
            "multiplicative"
            if isinstance(syn.weight_dependence, MultiplicativeWeightDependence)
            else "additive"
        )
        rule = cls(
            taus["tau_plus"], taus["tau_minus"], dependence=dependence, name=f"stdp[{projection.label}]"
        )
        rule._per_projection[id(projection)] = projection
        return rule

    def _arrays(self, access):
        """A_plus, A_minus [1], w_min, w_max [steps] per connection."""
        return self.connection_parameters(access.projection, access.weight_scale)

    def connection_parameters(self, prj, scale):
        """A_plus, A_minus [1], w_min, w_max [steps] per connection of projection ``prj``
        with weight scale ``scale`` [steps per nA/uS]."""
        n = len(prj)
        if id(prj) in self._per_projection:
            e = prj._extra
            a_plus, a_minus, w_min, w_max = e["A_plus"], e["A_minus"], e["w_min"], e["w_max"]
        else:
            p = self.params
            w_max = np.nan if p["w_max"] is None else p["w_max"]
            a_plus, a_minus, w_min = p["A_plus"], p["A_minus"], p["w_min"]
        full = [np.broadcast_to(np.asarray(x, dtype=float), (n,)) for x in (a_plus, a_minus, w_min, w_max)]
        w_max_steps = np.where(np.isnan(full[3]), hw.WEIGHT_MAX, np.abs(full[3]) * scale)
        return full[0], full[1], np.abs(full[2]) * scale, np.minimum(w_max_steps, hw.WEIGHT_MAX)

    def sensor_amplitudes(self) -> tuple:
        """``(eta_causal, eta_acausal)`` [sensor LSB per pair at zero delay] that ``K``
        divides by: the nominal amplitudes of the sensor CapMem cells."""
        return (
            float(hw.corr_amp_lsb(hw.corr_amp_capmem(self.sensors.amp_causal))),
            float(hw.corr_amp_lsb(hw.corr_amp_capmem(self.sensors.amp_acausal))),
        )

    def compiled_program(self, bindings, timing: dict, record_weights: bool):
        """The rule as a :class:`cysim.ppu.STDPProgram` for projection bindings
        ``bindings`` (``coords``, ``scale``, ``projection`` each), or None where it must
        run as a Python kernel (not compiled, no projection, a synapse in two projections,
        a parameter that is not finite)."""
        if not self.compiled or not bindings:
            return None
        coords = [
            np.concatenate([np.asarray(b.coords[i], dtype=np.int64) for b in bindings]) for i in range(3)
        ]
        flat = np.ravel_multi_index(tuple(coords), (hw.N_HEMISPHERES, hw.N_ROWS, hw.N_COLUMNS))
        order = np.argsort(flat, kind="stable")
        if np.any(np.diff(flat[order]) == 0):
            return None
        per = [self.connection_parameters(b.projection, b.scale) for b in bindings]
        columns = [np.concatenate([p[i] for p in per]) for i in range(4)]
        if not all(np.all(np.isfinite(c)) for c in columns):
            return None
        mask = np.zeros((hw.N_HEMISPHERES, hw.N_ROWS, hw.N_COLUMNS), dtype=bool)
        mask.flat[flat] = True
        eta_c, eta_a = self.sensor_amplitudes()
        a_plus, a_minus, w_min, w_max = (c[order] for c in columns)
        return STDPProgram(
            **timing,
            A_plus=a_plus,
            A_minus=a_minus,
            w_min=w_min,
            w_max=w_max,
            eta_causal=eta_c,
            eta_acausal=eta_a,
            dependence=self.dependence,
            synapses=mask,
            name=self.name,
            record_weights=record_weights,
        )

    def _kernel(self, ctx):
        eta_c, eta_a = self.sensor_amplitudes()
        for access in ctx.projections:
            key = id(access.projection)
            if ctx.tick == 0 or key not in self._carry:
                self._carry[key] = np.zeros(len(access.projection))
            causal = access.causal.astype(float)
            acausal = access.acausal.astype(float)
            access.reset_correlation()
            k_plus = np.maximum(causal - access.causal, 0.0) / eta_c  # readout minus the reset value
            k_minus = np.maximum(acausal - access.acausal, 0.0) / eta_a
            a_plus, a_minus, w_min, w_max = self._arrays(access)
            w = access.weights
            if self.dependence == "additive":
                dw = a_plus * w_max * k_plus - a_minus * w_max * k_minus
            else:
                dw = a_plus * (w_max - w) * k_plus - a_minus * (w - w_min) * k_minus
            carry = self._carry[key]
            carry += dw
            step = np.floor(carry + 0.5)  # nearest: the carry stays within -0.5..0.5 steps
            carry -= step
            new = np.clip(w + step, np.ceil(w_min - 1e-9), np.floor(w_max + 1e-9))
            access.weights = new


__all__ = ["STDPRule", "STDP_DEFAULT_PERIOD_MS", "STDP_DEFAULT_AMPLITUDE_LSB"]
