"""Errors raised by the virtual chip.

Every error names the offending field, the index, the value and what is allowed.
"""


class ChipError(Exception):
    """Base class of all errors of the virtual chip."""


class ConfigError(ChipError, ValueError):
    """A value written to a :class:`~cysim.ChipConfig` is outside what the chip holds."""


class ConfigIndexError(ConfigError, IndexError):
    """An index into a :class:`~cysim.ChipConfig` field is outside the chip's geometry."""


class StimulusError(ChipError, ValueError):
    """An external spike train cannot be sent to the chip."""


class RunError(ChipError, ValueError):
    """Arguments of :meth:`~cysim.VirtualChip.run` are invalid."""


class PlasticityError(ChipError, ValueError):
    """A plasticity program (:class:`~cysim.PPUProgram`) or a kernel's access is invalid."""


class KernelError(ChipError, RuntimeError):
    """A plasticity kernel raised an exception; the run stopped at that tick.

    The original exception is chained (``__cause__``). Attributes: ``program`` (its name),
    ``tick`` (index of the tick within the program), ``time_us`` (hardware time of the
    tick), ``trial`` (the trial of a per-trial kernel, else None) and ``result``: the
    :class:`~cysim.RunResult` up to the tick (spikes, samples, plasticity records).
    """

    def __init__(self, message, *, program=None, tick=None, time_us=None, trial=None, result=None):
        super().__init__(message)
        self.program = program
        self.tick = tick
        self.time_us = time_us
        self.trial = trial
        self.result = result
