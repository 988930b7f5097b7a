"""Pure torch functions of the torch bridge: neuron dynamics, event arrival, surrogates.

The model equations stand once, in :mod:`.neurons`; :mod:`.events` places spikes on the
time grid with the chip's routing latency; :mod:`.surrogate` holds the surrogate
gradients chosen by name; :mod:`.scan` is the fused LIF/LI time loop that
:func:`~.neurons.integrate` uses where it applies (same values, one autograd node);
:mod:`.eventprop` holds the exact event-based forward and the EventProp adjoint.
"""

from . import eventprop
from .events import Delays, delays, input_arrivals, shift, spike_arrivals, step_arrival
from .neurons import (
    AdExParameters,
    AdExState,
    LIFParameters,
    LIFState,
    LIParameters,
    LIState,
    Propagators,
    Trace,
    adex_step,
    crossing_fraction,
    initial_state,
    integrate,
    li_step,
    lif_step,
    propagators,
    step_function,
)
from .surrogate import SURROGATES, SigmoidSpike, SuperSpike, TriangleSpike, UnknownSurrogateError, heaviside

__all__ = [
    "eventprop",
    "AdExParameters",
    "AdExState",
    "Delays",
    "LIFParameters",
    "LIFState",
    "LIParameters",
    "LIState",
    "Propagators",
    "SURROGATES",
    "SigmoidSpike",
    "SuperSpike",
    "Trace",
    "TriangleSpike",
    "UnknownSurrogateError",
    "adex_step",
    "crossing_fraction",
    "delays",
    "heaviside",
    "initial_state",
    "input_arrivals",
    "integrate",
    "li_step",
    "lif_step",
    "propagators",
    "shift",
    "spike_arrivals",
    "step_arrival",
    "step_function",
]
