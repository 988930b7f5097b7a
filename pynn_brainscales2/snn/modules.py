"""Modules of the torch bridge: thin ``nn.Module`` shells that hold configuration.

A module is created inside an :class:`~.experiment.Experiment` and registers itself
there. Calling it in a forward pass returns a handle (:mod:`.handles`) and records the
connection; :func:`~.experiment.run` executes the recorded graph and fills the handles.
The dynamics live in :mod:`.functional.neurons`; the parameters below are those of its
``*Parameters`` tuples (times in us of hardware time, potentials in pu, currents in pu/us).

>>> import torch
>>> from pynn_brainscales2 import snn
>>> exp = snn.Experiment(mock=True, dt=0.1)
>>> inp = snn.InputNeuron(2, exp)
>>> syn = snn.Synapse(2, 3, exp)
>>> lif = snn.LIF(3, exp)
>>> h = lif(syn(inp(torch.zeros(50, 4, 2))))
>>> snn.run(exp, 5.0)
>>> tuple(h.v.shape)
(50, 4, 3)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ShapeError, TensorTypeError
from .functional.eventprop import DEFAULT_MAX_SPIKES, DEFAULT_MIN_SLOPE, eventprop_parameters
from .functional.neurons import AdExParameters, LIFParameters, LIParameters
from .functional.surrogate import check_method
from .handles import NeuronHandle, SynapseHandle

__all__ = ["InputNeuron", "Synapse", "LIF", "LI", "AdEx", "Population"]


class _Registered(nn.Module):
    """A module that belongs to an experiment."""

    def __init__(self, experiment, name: str | None):
        super().__init__()
        from .experiment import Experiment  # the experiment imports the modules' handles

        if not isinstance(experiment, Experiment):
            raise TypeError(
                f"{type(self).__name__} needs an snn.Experiment as its experiment, got "
                f"{type(experiment).__name__}."
            )
        # a plain attribute would make the experiment a submodule; keep it out of state_dict
        object.__setattr__(self, "experiment", experiment)
        self.label = name or f"{type(self).__name__}#{len(experiment.modules)}"
        experiment.register(self)

    def describe(self) -> str:
        return f"{type(self).__name__} {self.label!r}"


class Population(_Registered):
    """Base class of the neuron modules: ``size`` neurons of one kind."""

    def __init__(self, size: int, experiment, name: str | None = None):
        if not isinstance(size, int) or size < 1:
            raise ShapeError(f"{type(self).__name__} size must be a positive integer, got {size!r}.")
        self.size = size
        super().__init__(experiment, name)

    def extra_repr(self) -> str:
        return f"size={self.size}, name={self.label!r}"


class InputNeuron(Population):
    """Spike sources: calling it with spikes ``[time, batch, size]`` (0/1 on the grid, a
    spike at index ``k`` is sent at ``k dt``) returns their handle."""

    def forward(self, spikes: torch.Tensor) -> NeuronHandle:
        if not torch.is_tensor(spikes):
            raise TensorTypeError(f"{self.describe()} takes a spike tensor, got {type(spikes).__name__}.")
        if spikes.dim() != 3 or spikes.shape[2] != self.size:
            raise ShapeError(
                f"{self.describe()} expects spikes of shape [time, batch, {self.size}], got "
                f"{list(spikes.shape)}."
            )
        if not spikes.is_floating_point():
            raise TensorTypeError(
                f"{self.describe()} expects floating-point spikes (0. or 1.), got {spikes.dtype}; "
                "use spikes.float()."
            )
        handle = self.experiment.neuron_handle(self)
        handle.spikes = spikes
        return handle


class Synapse(_Registered):
    """Dense all-to-all projection with signed weights ``[out_features, in_features]`` [pu/us].

    Positive weights excite, negative ones inhibit (on the chip: excitatory and inhibitory
    synapse rows). The default initialisation draws from a normal distribution with
    ``mean`` and ``std`` [pu/us].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        experiment,
        mean: float = 0.0,
        std: float | None = None,
        name: str | None = None,
    ):
        for what, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or v < 1:
                raise ShapeError(f"Synapse {what} must be a positive integer, got {v!r}.")
        self.in_features, self.out_features = in_features, out_features
        super().__init__(experiment, name)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        std = 1.0 / math.sqrt(in_features) if std is None else std
        with torch.no_grad():
            self.weight.normal_(mean, std)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, name={self.label!r}"

    def forward(self, pre: NeuronHandle) -> SynapseHandle:
        if not isinstance(pre, NeuronHandle):
            raise TypeError(
                f"{self.describe()} takes the handle a population returned, got {type(pre).__name__}."
            )
        if pre.module.size != self.in_features:
            raise ShapeError(
                f"{self.describe()} expects {self.in_features} presynaptic neurons; "
                f"{pre.module.describe()} has {pre.module.size}."
            )
        return self.experiment.synapse_handle(self, pre)


GRADIENTS = ("surrogate", "eventprop")


class _Neuron(Population):
    """A population with dynamics from :mod:`.functional.neurons`.

    ``gradient`` chooses how gradients are computed: ``"surrogate"`` (BPTT through the time
    grid with a surrogate spike derivative) or ``"eventprop"`` (exact gradients of spike times
    from the adjoint dynamics, :mod:`.functional.eventprop`; LIF and LI only). EventProp
    populations take two more settings: ``min_slope`` [pu/us], the lower clamp of ``dV/dt``
    at a spike in the adjoint's jump condition (default
    :data:`~.functional.eventprop.DEFAULT_MIN_SLOPE`), and ``max_spikes``, the most spikes per
    neuron and sample the mock-mode forward computes (default
    :data:`~.functional.eventprop.DEFAULT_MAX_SPIKES`; 1 suffices for a time-to-first-spike
    read-out).
    """

    Parameters: type = LIFParameters

    def __init__(
        self,
        size: int,
        experiment,
        name: str | None = None,
        gradient: str = "surrogate",
        min_slope: float | None = None,
        max_spikes: int | None = None,
        **params,
    ):
        unknown = set(params) - set(self.Parameters._fields)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown parameters {sorted(unknown)}; known: "
                f"{', '.join(self.Parameters._fields)}."
            )
        if "method" in params:
            check_method(params["method"])
        if gradient not in GRADIENTS:
            raise ValueError(
                f"{type(self).__name__}: unknown gradient {gradient!r}; known: {', '.join(GRADIENTS)}."
            )
        if gradient != "eventprop" and (min_slope is not None or max_spikes is not None):
            raise TypeError(
                f"{type(self).__name__}: min_slope and max_spikes apply to gradient='eventprop' only."
            )
        self.gradient = gradient
        self.min_slope = DEFAULT_MIN_SLOPE if min_slope is None else float(min_slope)
        self.max_spikes = DEFAULT_MAX_SPIKES if max_spikes is None else int(max_spikes)
        if self.max_spikes < 1:
            raise ValueError(f"{type(self).__name__}: max_spikes must be at least 1, got {max_spikes}.")
        super().__init__(size, experiment, name)
        self.params = self.Parameters(**params)
        if gradient == "eventprop":  # refuse what EventProp does not model now, not at run time
            eventprop_parameters(self.params, 1.0, self.min_slope, self.max_spikes, who=self.describe())

    def extra_repr(self) -> str:
        extra = "" if self.gradient == "surrogate" else ", gradient='eventprop'"
        return (
            super().extra_repr()
            + extra
            + ", "
            + ", ".join(f"{k}={v}" for k, v in self.params._asdict().items())
        )

    @property
    def separate_inhibition(self) -> bool:
        """Whether inhibition needs its own channel (different synaptic time constants)."""
        a, b = self.params.tau_syn_exc_us, self.params.tau_syn_inh_us
        if torch.is_tensor(a) or torch.is_tensor(b):
            return not (a is b or torch.equal(torch.as_tensor(a), torch.as_tensor(b)))
        return a != b

    def forward(self, *inputs: SynapseHandle) -> NeuronHandle:
        handle = self.experiment.neuron_handle(self)
        for syn in inputs:
            if not isinstance(syn, SynapseHandle):
                raise TypeError(
                    f"{self.describe()} takes handles returned by Synapse modules, got {type(syn).__name__}."
                )
            if syn.module.out_features != self.size:
                raise ShapeError(
                    f"{self.describe()} has {self.size} neurons but {syn.module.describe()} projects onto "
                    f"{syn.module.out_features}."
                )
            if any(s is syn for s in handle.inputs):
                continue
            handle.inputs.append(syn)
        return handle


class LIF(_Neuron):
    """Leaky integrate-and-fire neurons; keyword parameters of
    :class:`~.functional.neurons.LIFParameters`."""

    Parameters = LIFParameters


class LI(_Neuron):
    """Leaky integrators (no spikes); keyword parameters of
    :class:`~.functional.neurons.LIParameters`."""

    Parameters = LIParameters


class AdEx(_Neuron):
    """Adaptive exponential integrate-and-fire neurons; keyword parameters of
    :class:`~.functional.neurons.AdExParameters`."""

    Parameters = AdExParameters
