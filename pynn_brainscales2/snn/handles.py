"""Handles: what calling a module returns, filled with observables by :func:`snn.run`.

Calling a module inside a forward pass only records a connection in its
:class:`~.experiment.Experiment` and returns a handle; :func:`~.experiment.run` then
simulates (or, later, emulates on the chip) the whole registered graph at once and fills
every handle. All tensors are ``[time, batch, neurons]`` on the experiment's grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["NeuronHandle", "SynapseHandle"]


@dataclass(eq=False)
class NeuronHandle:
    """Observables of one population (an :class:`InputNeuron`, :class:`LIF`, :class:`LI` or
    :class:`AdEx` module) in one run.

    Attributes
    ----------
    module : torch.nn.Module
        The population.
    spikes : Tensor or None
        Spikes per grid step (1 where the neuron spiked within step ``n``), with surrogate
        gradients; None for LI neurons and before the run.
    v : Tensor or None
        Membrane at the grid points ``t_n`` [pu] (what the CADC reads on the chip).
    current : Tensor or None
        Total synaptic current ``I_exc - I_inh`` at ``t_n`` [pu/us].
    fraction : Tensor or None
        Position of each spike inside its step (0..1), where it was computed.
    inputs : list of SynapseHandle
        The projections onto this population in this pass.
    events : SpikeEvents or None
        EventProp populations (``gradient="eventprop"``) and their inputs: spike times
        ``[batch, neurons, m]`` (``inf`` padded) with EventProp gradients; ``spikes`` stays
        None for EventProp populations (nothing is stored per time step).
    v_max, t_max : Tensor or None
        EventProp populations: the maximum of the membrane over the run ``[batch, neurons]``
        [pu] (with EventProp gradients) and its time [us] (no gradient). For LIF neurons that
        spike it is ``v_th`` at the first spike (no gradient).
    """

    module: torch.nn.Module
    spikes: torch.Tensor | None = None
    v: torch.Tensor | None = None
    current: torch.Tensor | None = None
    fraction: torch.Tensor | None = None
    inputs: list = field(default_factory=list)
    events: object | None = None
    v_max: torch.Tensor | None = None
    t_max: torch.Tensor | None = None

    @property
    def observables(self) -> dict:
        """The filled observables by name."""
        names = ("spikes", "v", "current", "events", "v_max", "t_max")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def first_spike_times(self, missing: str = "end") -> torch.Tensor:
        """First spike time per neuron ``[batch, neurons]`` [us] of an EventProp population (see
        :meth:`~.functional.eventprop.SpikeEvents.first`)."""
        if self.events is None:
            raise ValueError(
                f"{self.module.describe()} has no spike events; first_spike_times needs an "
                "LIF population with gradient='eventprop' after snn.run."
            )
        return self.events.first(missing)

    def spike_times_us(self, dt_us: float) -> torch.Tensor:
        """Spike times [us] per grid step (interpolated where ``fraction`` is known), ``inf``
        where there is no spike; shape like ``spikes``."""
        steps = torch.arange(self.spikes.shape[0], dtype=self.spikes.dtype, device=self.spikes.device)
        t = steps.view(-1, *([1] * (self.spikes.dim() - 1)))
        if self.fraction is not None:
            t = t + self.fraction
        t = (t * dt_us).expand_as(self.spikes)
        return torch.where(self.spikes.detach() > 0, t, torch.full_like(t, float("inf")))


@dataclass(eq=False)
class SynapseHandle:
    """One projection in one run.

    Attributes
    ----------
    module : Synapse
        The projection (holds the weights).
    pre : NeuronHandle
        The presynaptic population's handle.
    current : Tensor or None
        The weights arriving at each step ``[time, batch, post]`` [pu/us] (signed), after
        the run.
    """

    module: torch.nn.Module
    pre: NeuronHandle
    current: torch.Tensor | None = None
