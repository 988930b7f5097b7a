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
