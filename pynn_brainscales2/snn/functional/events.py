"""Event arrival on the time grid: the chip's fixed routing latency, in tensor form.

On the chip (see :mod:`cysim.engine`) every event reaches its synapses
``latency = 0.1 us`` after it was sent, rounded to the nearest grid point (halves up):

- an external event sent at grid point ``k`` (time ``k dt``) arrives at step
  ``k + floor(L + 1/2)`` with ``L = latency / dt``;
- a spike of an on-chip neuron in step ``n`` at the interpolated time
  ``(n + f) dt`` (``0 <= f <= 1``, see :func:`~.neurons.crossing_fraction`) arrives at step
  ``max(n + floor(f + L + 1/2), n + 1)``.

So an on-chip spike arrives after one of two delays: ``early = max(1, D)`` steps when
``f < D + 1/2 - L`` and ``late = max(1, D + 1)`` steps otherwise, ``D = floor(L + 1/2)``.
For ``dt >= 2 latency`` both are one step and the crossing fraction is not needed.
Arriving events add to the synaptic currents at the start of their step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from cysim.constants import ROUTING_LATENCY_US

__all__ = ["Delays", "delays", "shift", "input_arrivals", "spike_arrivals", "ROUTING_LATENCY_US"]


class Delays(NamedTuple):
    """Arrival delays on a grid [steps]."""

    external: int  # events from the host, sent on grid points
    early: int  # on-chip spikes with crossing fraction < split
    late: int  # on-chip spikes with crossing fraction >= split
    split: float  # crossing fraction at which a spike arrives one step later


def delays(dt_us: float, latency_us: float = ROUTING_LATENCY_US) -> Delays:
    """Arrival delays for the grid ``dt_us`` [us] and the routing latency [us]."""
    ratio = latency_us / dt_us
    d = math.floor(ratio + 0.5)
    return Delays(external=d, early=max(1, d), late=max(1, d + 1), split=d + 0.5 - ratio)


def shift(x: torch.Tensor, steps: int) -> torch.Tensor:
    """``x`` delayed by ``steps`` along dim 0 (time), zeros shifted in, length kept."""
    if steps <= 0:
        return x
    if steps >= x.shape[0]:
        return torch.zeros_like(x)
    return torch.cat([x.new_zeros((steps, *x.shape[1:])), x[:-steps]], dim=0)


def input_arrivals(spikes: torch.Tensor, dt_us: float) -> torch.Tensor:
    """Arrivals ``[time, batch, n]`` of host events given on grid points ``[time, batch, n]``."""
    return shift(spikes, delays(dt_us).external)


def spike_arrivals(spikes: torch.Tensor, fraction: torch.Tensor | None, dt_us: float) -> torch.Tensor:
    """Arrivals ``[time, batch, n]`` of on-chip spikes ``[time, batch, n]``.

    ``fraction`` holds the crossing fraction of each spike inside its step; it may be
    ``None`` when both delays coincide (``dt_us >= 0.2``). Gradients flow through
    ``spikes``; the choice of delay is a constant.
    """
    d = delays(dt_us)
    if d.early == d.late:
        return shift(spikes, d.early)
    late = (fraction >= d.split).to(spikes.dtype)
    z_late = spikes * late
    return shift(spikes - z_late, d.early) + shift(z_late, d.late)


def step_arrival(history: list, fractions: list, n: int, dt_us: float):
    """Arrivals at step ``n`` of spikes recorded step by step (recurrent simulation).

    ``history[k]`` are the spikes of step ``k`` ``[batch, neurons]``, ``fractions[k]`` their
    crossing fractions (or ``None`` when not needed). Returns ``None`` when nothing can
    arrive yet.
    """
    d = delays(dt_us)
    out = None
    if d.early == d.late:
        k = n - d.early
        return history[k] if k >= 0 else None
    k = n - d.early
    if k >= 0:
        out = history[k] * (fractions[k] < d.split).to(history[k].dtype)
    k = n - d.late
    if k >= 0:
        late = history[k] * (fractions[k] >= d.split).to(history[k].dtype)
        out = late if out is None else out + late
    return out
