"""Cell types of the BrainScaleS-2 backend.

Neuron models (emulated by the chip's AdEx circuits, calibrated to the parameters):

- :class:`IF_curr_exp`: LIF with exponential current-based synapses; every parameter is
  calibrated (tau_m, tau_syn_E/I, v_rest, v_reset, v_thresh, tau_refrac, synaptic
  gains, and the bias current ``i_offset`` + injected currents); ``cm`` enters through
  the weight and bias-current scales.
- :class:`IF_cond_exp`: the same circuit in conductance-based mode; ``e_rev_E/I`` are
  written with the nominal CapMem transfer (not calibrated).
- :class:`EIF_cond_exp_isfa_ista`: AdEx (exponential term and adaptation) in
  conductance-based mode: the LIF parameters as for ``IF_cond_exp`` with ``v_spike`` as the
  spike threshold, and ``v_thresh`` (V_T), ``delta_T``, ``a``, ``b``, ``tau_w`` calibrated
  per circuit (docs/calibration.md). ``w`` is not observable on the chip.
- :class:`HXNeuron`: native CapMem values and switches, for experts (no calibration).

Spike sources: :class:`SpikeSourceArray` and :class:`SpikeSourcePoisson` (events played
in by the host), :class:`SpikeSourcePoissonOnChip` (the chip's 8 background generators).

Parameters keep PyNN's names and units (mV, ms, nA, nF, uS, Hz) as native parameters;
the conversion to hardware units happens at run time in
:mod:`pynn_brainscales2.translation`.
"""

from __future__ import annotations

from pyNN.standardmodels import StandardCellType, build_translations
from pyNN.standardmodels import cells as _cells

from cysim import constants as C
from cysim.config import FIELDS

from ._unsupported import unsupported

SUPPORTED_CELL_TYPES = (
    "IF_curr_exp",
    "IF_cond_exp",
    "EIF_cond_exp_isfa_ista",
    "HXNeuron",
    "SpikeSourceArray",
    "SpikeSourcePoisson",
    "SpikeSourcePoissonOnChip",
)


def _identity(*names):
    return build_translations(*[(n, n) for n in names])


class IF_curr_exp(_cells.IF_curr_exp):
    __doc__ = _cells.IF_curr_exp.__doc__
    translations = _identity(*_cells.IF_curr_exp.default_parameters)
    recordable = ["spikes", "v"]


class IF_cond_exp(_cells.IF_cond_exp):
    __doc__ = _cells.IF_cond_exp.__doc__
    translations = _identity(*_cells.IF_cond_exp.default_parameters)
    recordable = ["spikes", "v"]


class EIF_cond_exp_isfa_ista(_cells.EIF_cond_exp_isfa_ista):
    __doc__ = _cells.EIF_cond_exp_isfa_ista.__doc__
    translations = _identity(*_cells.EIF_cond_exp_isfa_ista.default_parameters)
    recordable = ["spikes", "v"]


class SpikeSourceArray(_cells.SpikeSourceArray):
    __doc__ = _cells.SpikeSourceArray.__doc__
    translations = _identity("spike_times")


class SpikeSourcePoisson(_cells.SpikeSourcePoisson):
    """Poisson spike source generated on the host and played into the chip by the FPGA.

    Parameters: ``rate`` [Hz], ``start`` [ms], ``duration`` [ms]. Spike times are drawn
    per segment from the seed given to ``setup(rng_seed=...)``.
    """

    translations = _identity("rate", "start", "duration")


class SpikeSourcePoissonOnChip(StandardCellType):
    """One of the chip's 8 on-chip background generators per neuron (Poisson mode).

    Parameters
    ----------
    rate : float
        Mean rate [Hz, biological]; allowed about 15.3 Hz .. 1 MHz at speed-up 1000
        (period 1..65535 cycles of 250 MHz).
    seed : int
        Seed register of the generator (0..2**32-1).

    The generators run for the whole experiment; their spikes are not recorded by the chip.
    """

    default_parameters = {"rate": 1000.0, "seed": 0}
    translations = _identity("rate", "seed")
    recordable: list = []
    injectable = False
    receptor_types = ()
    units = {}


_HX_SWITCHES = tuple(s for s in C.SWITCH_FIELDS if s != "enable_output")


class HXNeuron(StandardCellType):
    """A neuron circuit configured directly by its CapMem cells and switches (experts only).

    Parameters are the CapMem cells of :data:`cysim.constants.CAPMEM_FIELDS` [CapMem
    units, 0..1022] and the switches ``enable_spiking``, ``enable_exponential``,
    ``enable_adaptation``, ``enable_coba``, ``enable_bias_current``,
    ``bias_current_sink`` (0 or 1). No calibration is applied: the circuit behaves as its
    (mismatched) silicon does. ``v`` is reported through the backend's voltage map [mV].
    Synaptic weights onto HXNeuron populations are taken as integer weight steps.
    """

    default_parameters = {name: float(FIELDS[name].default) for name in C.CAPMEM_FIELDS}
    default_parameters.update({name: 0.0 for name in _HX_SWITCHES})
    default_parameters["enable_spiking"] = 1.0
    translations = _identity(*default_parameters)
    recordable = ["spikes", "v"]
    units = {"v": "mV"}
    receptor_types = ("excitatory", "inhibitory")
    conductance_based = False
    default_initial_values: dict = {}


_ALPHA = "the chip's synaptic inputs decay exponentially; alpha-shaped synapses do not exist"
IF_curr_alpha = unsupported("IF_curr_alpha", "cell type", _ALPHA, SUPPORTED_CELL_TYPES)
IF_cond_alpha = unsupported("IF_cond_alpha", "cell type", _ALPHA, SUPPORTED_CELL_TYPES)
EIF_cond_alpha_isfa_ista = unsupported("EIF_cond_alpha_isfa_ista", "cell type", _ALPHA, SUPPORTED_CELL_TYPES)
IF_curr_delta = unsupported(
    "IF_curr_delta",
    "cell type",
    "synaptic inputs have a finite time constant (0.3..30 us)",
    SUPPORTED_CELL_TYPES,
)
HH_cond_exp = unsupported(
    "HH_cond_exp", "cell type", "the circuits have no Hodgkin-Huxley channels", SUPPORTED_CELL_TYPES
)
Izhikevich = unsupported(
    "Izhikevich", "cell type", "the circuits implement AdEx, not Izhikevich", SUPPORTED_CELL_TYPES
)
GIF_cond_exp = unsupported(
    "GIF_cond_exp", "cell type", "the circuits have no GIF dynamics", SUPPORTED_CELL_TYPES
)
IF_cond_exp_gsfa_grr = unsupported(
    "IF_cond_exp_gsfa_grr",
    "cell type",
    "the circuits have no relative-refractory conductance",
    SUPPORTED_CELL_TYPES,
)
IF_facets_hardware1 = unsupported(
    "IF_facets_hardware1", "cell type", "a model of another chip", SUPPORTED_CELL_TYPES
)
SpikeSourceGamma = unsupported(
    "SpikeSourceGamma",
    "cell type",
    "no gamma process source; the generators are Poisson or regular",
    SUPPORTED_CELL_TYPES,
)
SpikeSourceInhGamma = unsupported(
    "SpikeSourceInhGamma", "cell type", "no inhomogeneous gamma source", SUPPORTED_CELL_TYPES
)
SpikeSourcePoissonRefractory = unsupported(
    "SpikeSourcePoissonRefractory", "cell type", "no Poisson source with dead time", SUPPORTED_CELL_TYPES
)
PointNeuron = unsupported(
    "PointNeuron",
    "cell type",
    "composed neuron models are not mapped; use IF_curr_exp or IF_cond_exp",
    SUPPORTED_CELL_TYPES,
)
MultiCompartmentNeuron = unsupported(
    "MultiCompartmentNeuron", "cell type", "multi-compartment models are not mapped", SUPPORTED_CELL_TYPES
)
LIF = unsupported("LIF", "cell type component", "composed neuron models are not mapped", SUPPORTED_CELL_TYPES)
AdExp = unsupported(
    "AdExp", "cell type component", "composed neuron models are not mapped", SUPPORTED_CELL_TYPES
)

__all__ = [
    "IF_curr_exp",
    "IF_cond_exp",
    "HXNeuron",
    "SpikeSourceArray",
    "SpikeSourcePoisson",
    "SpikeSourcePoissonOnChip",
    "EIF_cond_exp_isfa_ista",
    "EIF_cond_alpha_isfa_ista",
    "IF_curr_alpha",
    "IF_cond_alpha",
    "IF_curr_delta",
    "HH_cond_exp",
    "Izhikevich",
    "GIF_cond_exp",
    "IF_cond_exp_gsfa_grr",
    "IF_facets_hardware1",
    "SpikeSourceGamma",
    "SpikeSourceInhGamma",
    "SpikeSourcePoissonRefractory",
    "PointNeuron",
    "MultiCompartmentNeuron",
    "LIF",
    "AdExp",
    "SUPPORTED_CELL_TYPES",
]
