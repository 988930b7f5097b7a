"""Synapse types of the BrainScaleS-2 backend.

- :class:`StaticSynapse`: a 6-bit weight per synapse row (weights above 63 steps use
  several rows) with the chip's fixed routing latency as its delay. Weights are in nA
  (current-based cells), uS (conductance-based cells) or integer steps (HXNeuron).
- :class:`PlasticSynapse`: a static synapse whose 6-bit weight a
  :class:`~pynn_brainscales2.plasticity.PlasticityRule` rewrites during the run (one
  synapse row per connection; ``w_max`` is the weight of 63 steps).
- :class:`STDPMechanism` with :class:`SpikePairRule` and :class:`AdditiveWeightDependence`
  or :class:`MultiplicativeWeightDependence`: PyNN's pair-based STDP, run as the built-in
  sensor-based rule :class:`~pynn_brainscales2.plasticity.STDPRule` (see docs/plasticity.md
  for where it differs from a simulator's).
- :class:`TsodyksMarkramSynapse`: short-term depression/facilitation of the synapse drivers
  (one setting per driver; mapping gives such sources drivers of their own).

The other PyNN plasticity models raise :class:`~pynn_brainscales2.errors.ChipFeatureError`.
"""

from __future__ import annotations

import numpy as np
from pyNN.standardmodels import build_translations
from pyNN.standardmodels import synapses as _synapses

from ..errors import ChipFeatureError, WeightSignError
from ._unsupported import unsupported

_LATENCY_MS = 0.1  # routing latency at speedup 1000, the delay before setup() is called

SUPPORTED_SYNAPSE_TYPES = (
    "StaticSynapse",
    "PlasticSynapse",
    "STDPMechanism (SpikePairRule with AdditiveWeightDependence or MultiplicativeWeightDependence)",
    "TsodyksMarkramSynapse",
)


def check_weight_sign(weights, projection) -> None:
    """Refuse weights whose sign does not fit the receptor.

    Excitatory and conductance-based synapses take weights >= 0; current-based inhibitory
    synapses take weights <= 0 (PyNN's convention).
    """
    w = np.asarray(weights, dtype=float)
    if w.size and not np.all(np.isfinite(w)):
        raise WeightSignError(
            f"Projection onto {projection.post.label!r}: weights must be finite numbers [nA or uS]; "
            f"got {w[~np.isfinite(w)].flat[0]}."
        )
    conductance = bool(getattr(projection.post, "conductance_based", False))
    receptor = projection.receptor_type
    if conductance or receptor == "excitatory":
        if w.size and w.min() < 0:
            raise WeightSignError(
                f"Projection onto {projection.post.label!r} (receptor {receptor!r}): weight {w.min():g} "
                f"{'uS' if conductance else 'nA'} is negative; allowed >= 0 for excitatory and "
                "conductance-based synapses. Use receptor_type='inhibitory' with "
                + ("a positive weight." if conductance else "a negative weight.")
            )
    elif receptor == "inhibitory":
        if w.size and w.max() > 0:
            raise WeightSignError(
                f"Projection onto {projection.post.label!r} (receptor 'inhibitory', current-based): weight "
                f"{w.max():g} nA is positive; allowed <= 0 (PyNN's convention for inhibitory current-based "
                "synapses). Give a negative weight, or use receptor_type='excitatory'."
            )


class StaticSynapse(_synapses.StaticSynapse):
    __doc__ = _synapses.StaticSynapse.__doc__
    translations = build_translations(("weight", "weight"), ("delay", "delay"))
    parameter_checks = {"weight": check_weight_sign}

    def _get_minimum_delay(self):
        from .. import simulator

        return getattr(simulator.state, "min_delay", None) or _LATENCY_MS


class PlasticSynapse(StaticSynapse):
    """A synapse whose 6-bit weight a plasticity rule rewrites during the run.

    Parameters
    ----------
    weight : float
        Initial weight [nA, uS, or steps for HXNeuron].
    delay : float, optional
        [ms] the chip's routing latency (other values are reported like for StaticSynapse).
    plasticity_rule : pynn_brainscales2.plasticity.PlasticityRule
        The rule whose kernel sees (and writes) these synapses.
    w_max : float, optional
        Weight [nA/uS] of 63 steps, the largest the rule can write; default: the largest
        initial weight of the projection. (Static weights onto the same receptor that are
        larger make a step coarser.)

    Examples
    --------
    >>> import pynn_brainscales2 as sim
    >>> rule = sim.PlasticityRule(lambda ctx: None, sim.Timer(0.0, 10.0, 5))
    >>> syn = sim.PlasticSynapse(weight=0.1, plasticity_rule=rule)
    """

    def __init__(self, weight=0.0, delay=None, plasticity_rule=None, w_max=None):
        from ..plasticity import PlasticityRule

        if not isinstance(plasticity_rule, PlasticityRule):
            raise ChipFeatureError(
                f"PlasticSynapse needs plasticity_rule=<pynn_brainscales2.PlasticityRule>, got "
                f"{type(plasticity_rule).__name__}."
            )
        if w_max is not None and (not np.isfinite(float(w_max)) or float(w_max) <= 0):
            raise ChipFeatureError(f"PlasticSynapse w_max = {w_max}: give a finite weight > 0 (nA or uS).")
        super().__init__(weight=weight, delay=delay)
        self.plasticity_rule = plasticity_rule
        self.w_max = None if w_max is None else float(w_max)


class TsodyksMarkramSynapse(_synapses.TsodyksMarkramSynapse):
    __doc__ = (
        (_synapses.TsodyksMarkramSynapse.__doc__ or "")
        + """
    On BrainScaleS-2 the depression and facilitation run in the synapse drivers (see
    docs/plasticity.md): U 0..1, tau_rec 1..1000 ms and tau_facil 0 (off) or 1..1000 ms at
    speedup 1000, through the drivers' nominal CapMem transfers (exact on the ideal chip).
    """
    )
    translations = build_translations(
        ("weight", "weight"),
        ("delay", "delay"),
        ("U", "U"),
        ("tau_rec", "tau_rec"),
        ("tau_facil", "tau_facil"),
    )
    parameter_checks = {"weight": check_weight_sign}

    def _get_minimum_delay(self):
        from .. import simulator

        return getattr(simulator.state, "min_delay", None) or _LATENCY_MS


class SpikePairRule(_synapses.SpikePairRule):
    __doc__ = _synapses.SpikePairRule.__doc__
    translations = build_translations(
        ("tau_plus", "tau_plus"), ("tau_minus", "tau_minus"), ("A_plus", "A_plus"), ("A_minus", "A_minus")
    )
    possible_models = {"sensor_stdp"}


class AdditiveWeightDependence(_synapses.AdditiveWeightDependence):
    __doc__ = _synapses.AdditiveWeightDependence.__doc__
    translations = build_translations(("w_max", "w_max"), ("w_min", "w_min"))
    possible_models = {"sensor_stdp"}


class MultiplicativeWeightDependence(_synapses.MultiplicativeWeightDependence):
    __doc__ = _synapses.MultiplicativeWeightDependence.__doc__
    translations = build_translations(("w_max", "w_max"), ("w_min", "w_min"))
    possible_models = {"sensor_stdp"}


class STDPMechanism(_synapses.STDPMechanism):
    __doc__ = (
        (_synapses.STDPMechanism.__doc__ or "")
        + """
    On BrainScaleS-2: run by the built-in sensor-based rule
    :class:`pynn_brainscales2.plasticity.STDPRule` (one plasticity program per projection,
    a tick every ``plasticity.STDP_DEFAULT_PERIOD_MS``); see docs/plasticity.md for the
    differences to a simulator's all-to-all pair rule.
    """
    )
    base_translations = build_translations(
        ("weight", "weight"), ("delay", "delay"), ("dendritic_delay_fraction", "dendritic_delay_fraction")
    )
    parameter_checks = {"weight": check_weight_sign}

    def __init__(
        self,
        timing_dependence=None,
        weight_dependence=None,
        voltage_dependence=None,
        dendritic_delay_fraction=1.0,
        weight=0.0,
        delay=None,
    ):
        if not isinstance(timing_dependence, SpikePairRule):
            raise ChipFeatureError(
                f"STDPMechanism on BrainScaleS-2 takes timing_dependence=SpikePairRule(...), got "
                f"{type(timing_dependence).__name__}; the correlation sensors measure spike pairs only."
            )
        if not isinstance(weight_dependence, (AdditiveWeightDependence, MultiplicativeWeightDependence)):
            raise ChipFeatureError(
                f"STDPMechanism on BrainScaleS-2 takes weight_dependence=AdditiveWeightDependence(...) or "
                f"MultiplicativeWeightDependence(...), got {type(weight_dependence).__name__}."
            )
        if voltage_dependence is not None:
            raise ChipFeatureError("STDPMechanism on BrainScaleS-2 has no voltage dependence; pass None.")
        self.base_translations = dict(type(self).base_translations)
        super().__init__(timing_dependence, weight_dependence, None, dendritic_delay_fraction, weight, delay)

    def _get_minimum_delay(self):
        from .. import simulator

        return getattr(simulator.state, "min_delay", None) or _LATENCY_MS


_PLASTIC = "this plasticity model is not mapped onto the chip; write a PlasticityRule kernel instead"
ElectricalSynapse = unsupported(
    "ElectricalSynapse", "synapse type", "no gap junctions", SUPPORTED_SYNAPSE_TYPES
)
SimpleStochasticSynapse = unsupported(
    "SimpleStochasticSynapse", "synapse type", "no stochastic synapses", SUPPORTED_SYNAPSE_TYPES
)
StochasticTsodyksMarkramSynapse = unsupported(
    "StochasticTsodyksMarkramSynapse", "synapse type", "no stochastic synapses", SUPPORTED_SYNAPSE_TYPES
)
MultiQuantalSynapse = unsupported(
    "MultiQuantalSynapse", "synapse type", "no multi-quantal synapses", SUPPORTED_SYNAPSE_TYPES
)
AdditivePotentiationMultiplicativeDepression = unsupported(
    "AdditivePotentiationMultiplicativeDepression", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES
)
GutigWeightDependence = unsupported(
    "GutigWeightDependence", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES
)
Vogels2011Rule = unsupported("Vogels2011Rule", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES)

__all__ = [
    "StaticSynapse",
    "PlasticSynapse",
    "TsodyksMarkramSynapse",
    "STDPMechanism",
    "ElectricalSynapse",
    "SimpleStochasticSynapse",
    "StochasticTsodyksMarkramSynapse",
    "MultiQuantalSynapse",
    "AdditiveWeightDependence",
    "MultiplicativeWeightDependence",
    "AdditivePotentiationMultiplicativeDepression",
    "GutigWeightDependence",
    "SpikePairRule",
    "Vogels2011Rule",
    "SUPPORTED_SYNAPSE_TYPES",
    "check_weight_sign",
]
