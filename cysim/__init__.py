"""cysim: a virtual BrainScaleS-2 neuromorphic chip.

Configuration in (:class:`ChipConfig`), observables out (:class:`RunResult`)::

    >>> from cysim import VirtualChip, ChipConfig, Stimulus, event_label
    >>> chip = VirtualChip(seed=0)          # realistic: mismatch and noise
    >>> ideal = VirtualChip.ideal()         # exact model dynamics
"""

from . import constants
from .chip import VirtualChip
from .config import ChipConfig, compartment_runs
from .constants import ROW_EXC, ROW_INH, ROW_OFF, circuit_of, event_label
from .errors import (
    ChipError,
    ConfigError,
    ConfigIndexError,
    KernelError,
    PlasticityError,
    RunError,
    StimulusError,
)
from .ppu import PlasticityContext, PPUProgram, STDPProgram
from .result import PlasticityLog, PlasticityRecord, RunResult
from .stimulus import Stimulus

__all__ = [
    "VirtualChip",
    "ChipConfig",
    "Stimulus",
    "RunResult",
    "PPUProgram",
    "STDPProgram",
    "PlasticityContext",
    "PlasticityLog",
    "PlasticityRecord",
    "KernelError",
    "PlasticityError",
    "ChipError",
    "ConfigError",
    "ConfigIndexError",
    "RunError",
    "StimulusError",
    "constants",
    "event_label",
    "circuit_of",
    "compartment_runs",
    "ROW_EXC",
    "ROW_INH",
    "ROW_OFF",
]
__version__ = "0.1.0"
