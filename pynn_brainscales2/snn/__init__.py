"""Torch bridge: train spiking networks for the (virtual) BrainScaleS-2 chip with PyTorch.

In the style of hxtorch.snn: modules (:class:`InputNeuron`, :class:`Synapse`,
:class:`LIF`, :class:`LI`, :class:`AdEx`) register in an :class:`Experiment`; calling them
records a graph and returns handles; :func:`run` executes the graph and fills the
handles with spikes, membrane traces and currents as tensors in the autograd graph.

>>> import torch
>>> from pynn_brainscales2 import snn
>>> exp = snn.Experiment(mock=True, dt=0.1)
>>> inp, syn, out = snn.InputNeuron(1, exp), snn.Synapse(1, 1, exp), snn.LI(1, exp)
>>> h = out(syn(inp(torch.zeros(10, 1, 1))))
>>> snn.run(exp, 1.0)
>>> h.v.shape
torch.Size([10, 1, 1])
"""

from . import datasets, functional, io, losses, transforms
from .experiment import Experiment, run
from .functional.eventprop import SpikeEvents
from .handles import NeuronHandle, SynapseHandle
from .modules import LI, LIF, AdEx, InputNeuron, Synapse

__all__ = [
    "Experiment",
    "run",
    "InputNeuron",
    "Synapse",
    "LIF",
    "LI",
    "AdEx",
    "NeuronHandle",
    "SynapseHandle",
    "SpikeEvents",
    "functional",
    "losses",
    "datasets",
    "transforms",
    "io",
]
