"""PyNN backend for the virtual BrainScaleS-2 chip (in development)."""

from cysim import VirtualChip

__all__ = ["VirtualChip"]
__version__ = "0.1.0"
