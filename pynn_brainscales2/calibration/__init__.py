"""Calibration by measurement: model targets -> per-circuit CapMem values.

>>> from cysim import VirtualChip
>>> from pynn_brainscales2.calibration import CalibrationTargets, calibrate
>>> result = calibrate(VirtualChip(seed=0), CalibrationTargets(tau_mem_us=10.0), cache=False)
>>> bool(abs(result.residual["tau_mem_us"]).max() < 0.05)
True
"""

from .adex import ADEX_CELLS, calibrate_adex
from .bias import calibrate_bias
from .cache import calibrate, default_cache_dir
from .compartments import calibrate_compartments
from .lif import CALIBRATION_VERSION, LIF_CELLS, CalibrationResult, calibrate_lif
from .synapses import measure_synapse_gains
from .targets import ADEX_TARGETS, OPTIONAL_RANGES, RANGES, CalibrationTargets

__all__ = [
    "calibrate",
    "calibrate_lif",
    "calibrate_bias",
    "calibrate_adex",
    "calibrate_compartments",
    "measure_synapse_gains",
    "default_cache_dir",
    "CalibrationTargets",
    "CalibrationResult",
    "CALIBRATION_VERSION",
    "LIF_CELLS",
    "RANGES",
    "OPTIONAL_RANGES",
    "ADEX_TARGETS",
    "ADEX_CELLS",
]
