"""Synapse types of the BrainScaleS-2 backend.

:class:`StaticSynapse` is the only one: a 6-bit weight per synapse row (weights above 63
steps use several rows) with the chip's fixed routing latency as its delay. Weights are
in nA (current-based cells), uS (conductance-based cells) or integer steps (HXNeuron).
Plasticity models exist under their PyNN names and raise
:class:`~pynn_brainscales2.errors.ChipFeatureError` (plasticity on the chip's processors
is the job of ``PlasticityRule``, not of PyNN's STDP classes).
"""

from __future__ import annotations

import numpy as np
from pyNN.standardmodels import build_translations
from pyNN.standardmodels import synapses as _synapses

from ..errors import WeightSignError
from ._unsupported import unsupported

SUPPORTED_SYNAPSE_TYPES = ("StaticSynapse",)


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

        return simulator.state.min_delay


_PLASTIC = (
    "PyNN's plasticity models are not mapped onto the chip's plasticity processors; write a "
    "PlasticityRule kernel instead"
)
TsodyksMarkramSynapse = unsupported(
    "TsodyksMarkramSynapse",
    "synapse type",
    "short-term plasticity of the synapse drivers is not mapped from PyNN parameters yet",
    SUPPORTED_SYNAPSE_TYPES,
)
STDPMechanism = unsupported("STDPMechanism", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES)
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
AdditiveWeightDependence = unsupported(
    "AdditiveWeightDependence", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES
)
MultiplicativeWeightDependence = unsupported(
    "MultiplicativeWeightDependence", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES
)
AdditivePotentiationMultiplicativeDepression = unsupported(
    "AdditivePotentiationMultiplicativeDepression", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES
)
GutigWeightDependence = unsupported(
    "GutigWeightDependence", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES
)
SpikePairRule = unsupported("SpikePairRule", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES)
Vogels2011Rule = unsupported("Vogels2011Rule", "synapse type", _PLASTIC, SUPPORTED_SYNAPSE_TYPES)

__all__ = [
    "StaticSynapse",
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
