"""Running an experiment whose populations use ``gradient="eventprop"``.

The graph is walked in topological order (feed-forward only). Every population gets the
spike times of its sources, shifted by the routing latency (0.1 us), and the weights of its
incoming projections, and passes them through :func:`~.functional.eventprop.lif_events`
(LIF: spike times ``[batch, n, m]`` in ``handle.events``) or
:func:`~.functional.eventprop.li_max_events` (LI: ``handle.v_max``, ``handle.t_max``). LIF populations also get ``v_max``: ``v_th`` where a
neuron spiked, else the maximum of its membrane (with gradient), for penalties on silent
neurons.

Mock mode computes the spike times exactly, event by event. In chip mode the forward values
are the chip's (spike times from the FPGA timestamps; for LI the maximum of the CADC trace on
the grid, which also fills ``handle.v``), and the backward runs the model's adjoint on them,
with the weights the chip realises. Input spikes are sent at their grid points ``k dt``.
"""

from __future__ import annotations

import torch

from .functional.eventprop import (
    SpikeEvents,
    dense_to_times,
    eventprop_parameters,
    flatten_events,
    li_max_events,
    lif_events,
)
from .functional.events import ROUTING_LATENCY_US
from .functional.neurons import LIParameters
from .modules import InputNeuron

__all__ = ["uses_eventprop", "run_eventprop"]


def uses_eventprop(handles: dict) -> bool:
    """Whether the pass has EventProp populations; refuses passes that mix the two gradients."""
    kinds = {getattr(m, "gradient", None) for m in handles if not isinstance(m, InputNeuron)}
    if "eventprop" not in kinds:
        return False
    if kinds != {"eventprop"}:
        mixed = [m.describe() for m in handles if getattr(m, "gradient", "eventprop") != "eventprop"]
        raise NotImplementedError(
            "run: a pass with gradient='eventprop' populations needs EventProp for all of them; "
            f"these use surrogate gradients: {', '.join(mixed)}."
        )
    return True


def run_eventprop(experiment, n_steps: int, observed: dict | None = None, weight_of=None) -> None:
    """Fill the handles of the pass (see the module docstring).

    ``observed`` (chip mode): module -> ``("LIF", times [B, n, m])`` or
    ``("LI", v [steps, B, n], (lo, hi) [B, n])``; ``weight_of(synapse)`` gives the weights the chip
    realises.
    """
    from .experiment import _check_batch, _fit, _graph

    dt = experiment.dt
    t_end = n_steps * dt
    handles, components, _ = _graph(experiment)
    batch, ref = _check_batch(handles)
    times: dict = {}
    for comp in components:
        module = comp[0]
        h = handles[module]
        if len(comp) > 1 or any(s.pre.module is module for s in h.inputs):
            raise NotImplementedError(
                f"run: {module.describe()} is part of a recurrent cycle; gradient='eventprop' supports "
                "feed-forward networks only."
            )
        if isinstance(module, InputNeuron):
            h.spikes = _fit(h.spikes, n_steps)
            times[module] = dense_to_times(h.spikes, dt)
            h.events = SpikeEvents(times[module], t_end)
            continue
        p = eventprop_parameters(
            module.params, t_end, module.min_slope, module.max_spikes, who=module.describe()
        )
        weights, arrivals, sources = [], [], []
        offset = 0
        for syn in h.inputs:
            pre = times.get(syn.pre.module)
            if pre is None:
                raise NotImplementedError(
                    f"run: {syn.pre.module.describe()} has no spike times (LI populations do not spike)."
                )
            a, src = flatten_events(pre, offset)
            arrivals.append(a + ROUTING_LATENCY_US)
            sources.append(src)
            weights.append(syn.module.weight if weight_of is None else weight_of(syn.module))
            offset += syn.module.in_features
        if weights:
            w = torch.cat(weights, 1)
            a = torch.cat(arrivals, 1)
            src = torch.cat(sources, 1)
        else:  # no input: nothing happens
            w = ref.new_zeros((module.size, 1))
            a = ref.new_full((batch, 1), float("inf"))
            src = torch.zeros((batch, 1), dtype=torch.long, device=ref.device)
        obs = None if observed is None else observed.get(module)
        if isinstance(module.params, LIParameters):
            limits = None
            if obs is not None:
                _, v, limits = obs
                vmax, idx = v.max(0)
                obs = (vmax, idx.to(v.dtype) * dt)
                h.v = v
            h.v_max, h.t_max = li_max_events(w, a, src, p, obs, limits)
        else:
            out, h.v_max, h.t_max = lif_events(w, a, src, p, None if obs is None else obs[1], with_max=True)
            times[module] = out
            h.events = SpikeEvents(out, t_end)
