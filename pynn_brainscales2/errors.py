"""Errors of pynn_brainscales2.

Every error derives from :class:`BrainScaleS2Error` and from the matching PyNN or builtin
error, so ``except ValueError`` and ``except pyNN.errors.ConnectionError`` keep
working in existing scripts. Messages give the value with its unit, what is allowed and
what to do.
"""

from __future__ import annotations

from pyNN import errors as _pynn_errors


class BrainScaleS2Error(Exception):
    """Base class of all errors raised by pynn_brainscales2."""


class ParameterRangeError(BrainScaleS2Error, _pynn_errors.InvalidParameterValueError):
    """A parameter lies outside what the chip can be configured or calibrated to."""


class CalibrationError(BrainScaleS2Error, RuntimeError):
    """Calibration targets that some circuits cannot reach, or a failed calibration."""


class CalibrationRangeError(CalibrationError, ParameterRangeError):
    """A calibration target outside the chip's documented range (refused before measuring)."""


class PlacementError(BrainScaleS2Error, ValueError):
    """Populations do not fit onto the chip's neuron circuits."""


class RoutingError(BrainScaleS2Error, _pynn_errors.ConnectionError):
    """Projections do not fit onto the chip's synapse drivers, rows, labels or buses."""


class PlasticityKernelError(BrainScaleS2Error, RuntimeError):
    """A plasticity kernel failed or did something the plasticity processor cannot do."""


class StrictModeError(BrainScaleS2Error, NotImplementedError):
    """A feature the physical chip lacks was requested with ``setup(strict=True)``."""


__all__ = [
    "BrainScaleS2Error",
    "ParameterRangeError",
    "CalibrationError",
    "CalibrationRangeError",
    "PlacementError",
    "RoutingError",
    "PlasticityKernelError",
    "StrictModeError",
]


class ChipFeatureError(BrainScaleS2Error, NotImplementedError):
    """A model feature the chip (and this backend) cannot realise, e.g. alpha-shaped synapses,
    a time-varying current or an initial membrane potential other than the leak potential."""


class RecordingError(BrainScaleS2Error, _pynn_errors.RecordingError):
    """A variable the chip cannot read out for this cell type, or an impossible readout."""

    def __init__(self, message: str):
        Exception.__init__(self, message)
        self.message = message

    def __str__(self):
        return self.message


class WeightSignError(BrainScaleS2Error, _pynn_errors.ConnectionError):
    """A weight whose sign does not match the receptor type (exc >= 0; current-based inh <= 0)."""


class SetupError(BrainScaleS2Error, TypeError):
    """``setup()`` was not called, or called with an argument the backend does not know."""


__all__ += ["ChipFeatureError", "RecordingError", "WeightSignError", "SetupError"]


class ShapeError(BrainScaleS2Error, ValueError):
    """A tensor of the torch bridge (``snn``) has the wrong shape for the module it enters."""


class TensorTypeError(BrainScaleS2Error, TypeError):
    """A tensor of the torch bridge (``snn``) has the wrong dtype or lies on the wrong device."""


__all__ += ["ShapeError", "TensorTypeError"]


class ExecutionError(BrainScaleS2Error, RuntimeError):
    """A run spread over workers (Dask or a ``concurrent.futures`` executor) did not
    complete: a worker died or a task failed. No partial batch is ever returned."""


__all__ += ["ExecutionError"]


class NIRError(BrainScaleS2Error, ValueError):
    """A NIR graph (``pynn_brainscales2.io.nir``) holds a node, a structure or a unit this
    project cannot read, or a network holds something NIR cannot express."""


__all__ += ["NIRError"]
