"""Programmable plasticity: Python kernels run by the virtual plasticity processors.

- :class:`Timer`, :class:`PlasticityRule`, the kernel context (:class:`RuleContext`):
  :mod:`.rules`;
- the built-in sensor-based :class:`STDPRule` (also behind PyNN's ``STDPMechanism``):
  :mod:`.stdp`;
- rules -> chip programs and results back: :mod:`.runtime`.

Short-term plasticity (``TsodyksMarkramSynapse``) is no rule: it runs in the synapse
drivers, configured by mapping (see docs/plasticity.md).
"""

from .rules import (
    PlasticityRule,
    PlasticityWarning,
    PopulationAccess,
    ProjectionAccess,
    RuleContext,
    RuleRecord,
    SensorSettings,
    Timer,
)
from .stdp import STDP_DEFAULT_AMPLITUDE_LSB, STDP_DEFAULT_PERIOD_MS, STDPRule

__all__ = [
    "PlasticityRule",
    "PlasticityWarning",
    "PopulationAccess",
    "ProjectionAccess",
    "RuleContext",
    "RuleRecord",
    "STDPRule",
    "STDP_DEFAULT_AMPLITUDE_LSB",
    "STDP_DEFAULT_PERIOD_MS",
    "SensorSettings",
    "Timer",
]
