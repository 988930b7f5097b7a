"""Placeholders for PyNN models the chip cannot express: they raise a clear error."""

from __future__ import annotations

from ..errors import ChipFeatureError


def unsupported(name: str, kind: str, reason: str, supported: tuple[str, ...]) -> type:
    """A class called ``name`` whose instantiation raises :class:`ChipFeatureError`.

    Parameters
    ----------
    name : str
        The PyNN class name.
    kind : str
        "cell type", "synapse type" or "current source".
    reason : str
        What the chip lacks.
    supported : tuple of str
        The supported alternatives, listed in the message.
    """

    def __init__(self, *args, **kwargs):
        raise ChipFeatureError(
            f"{name} is not available on BrainScaleS-2: {reason}. Supported {kind}s: {', '.join(supported)}."
        )

    return type(name, (), {"__init__": __init__, "__doc__": f"Not available on BrainScaleS-2: {reason}."})
