"""Population, PopulationView and Assembly of the BrainScaleS-2 backend.

Populations only hold parameters (PyNN units) until ``run()``; then they are placed onto
neuron circuits (or background generators, or host sources) by
:mod:`pynn_brainscales2.experiment`. ``Population.record`` takes one extra argument,
``readout``: ``"auto"`` (default), ``"cadc"`` (all neurons, one sample every >= 1.7 ms
at speedup 1000) or ``"madc"`` (at most two neurons, fine sampling); see
:mod:`pynn_brainscales2.recording`.
"""

from __future__ import annotations

import numpy as np
from pyNN import common
from pyNN.parameters import ParameterSpace, simplify
from pyNN.standardmodels import StandardCellType

from . import simulator
from . import translation as T
from .errors import RecordingError
from .recording import Recorder
from .standardmodels import cells

READOUTS = ("auto", "cadc", "madc")


def _check_readout(readout):
    if readout not in (None, *READOUTS):
        raise RecordingError(
            f"readout = {readout!r}: allowed 'auto' (default), 'cadc' (many neurons) or 'madc' (<= 2 neurons)."
        )


class Assembly(common.Assembly):
    _simulator = simulator


class PopulationView(common.PopulationView):
    _assembly_class = Assembly
    _simulator = simulator

    def _get_parameters(self, *names):
        native = self._get_native_parameters(*self.celltype.get_native_names(*names))
        return self.celltype.reverse_translate(native)

    def _get_native_parameters(self, *names):
        out = {}
        for name in names:
            value = self.parent._parameters[name]
            if isinstance(value, np.ndarray):
                value = value[self.mask]
            out[name] = simplify(value)
        return ParameterSpace(out, shape=(self.size,))

    def _set_parameters(self, parameter_space):
        for name, value in parameter_space.items():
            self.parent._parameters[name][self.mask] = value.evaluate(simplify=True)
        self.parent._after_parameter_change()

    def _set_initial_value_array(self, variable, initial_values):
        self.parent._user_initial.add(variable)
        full = self.parent.initial_values.get(variable)
        if full is not None:
            values = np.asarray(full.evaluate(simplify=False), dtype=float).copy()
            values[self.mask] = np.asarray(initial_values.evaluate(simplify=False), dtype=float)[: self.size]
            self.parent.initial_values[variable] = type(full)(values, shape=(self.parent.size,), dtype=float)
        simulator.state.touch()

    def _get_view(self, selector, label=None):
        return PopulationView(self, selector, label)

    def record(self, variables, to_file=None, sampling_interval=None, locations=None, readout=None):
        _check_readout(readout)
        if readout is not None:
            self.recorder.readout = readout
        super().record(variables, to_file, sampling_interval, locations)


class Population(common.Population):
    __doc__ = common.Population.__doc__
    _simulator = simulator
    _recorder_class = Recorder
    _assembly_class = Assembly

    def __init__(self, size, cellclass, cellparams=None, structure=None, initial_values=None, label=None):
        initial_values = {} if initial_values is None else initial_values
        simulator.state.check_setup("creating a Population")
        self._user_initial = set(initial_values)
        super().__init__(size, cellclass, cellparams, structure, initial_values, label)
        self._user_initial = set(initial_values)

    def _create_cells(self):
        T.kind_of(self.celltype)  # refuse unsupported cell types early
        start = simulator.state.id_counter
        self.all_cells = np.array(
            [simulator.ID(i) for i in range(start, start + self.size)], dtype=simulator.ID
        )
        self._mask_local = np.ones(self.size, dtype=bool)
        ps = self.celltype.native_parameters if isinstance(self.celltype, StandardCellType) else None
        ps.shape = (self.size,)
        ps.evaluate(simplify=False)
        self._parameters = ps.as_dict()
        for cell in self.all_cells:
            cell.parent = self
        simulator.state.id_counter += self.size
        self._index = len(simulator.state.populations)
        simulator.state.register_population(self)
        self._after_parameter_change()

    def _after_parameter_change(self):
        if isinstance(self.celltype, cells.SpikeSourceArray):
            T.check_spike_times(self)
            return  # new spike times take effect from the current time on (see experiment._sources)
        for name, value in self._parameters.items():
            if name == "spike_times":
                continue
            v = np.asarray(value, dtype=float)
            if not np.all(np.isfinite(v)):
                raise T.ParameterRangeError(
                    f"Population {self.label!r}: {name} = {v[~np.isfinite(v)].flat[0]}; parameters must be finite numbers."
                )
        simulator.state.touch()

    def initialize(self, **initial_values):
        self._user_initial = getattr(self, "_user_initial", set()) | set(initial_values)
        super().initialize(**initial_values)

    def _set_initial_value_array(self, variable, initial_values):
        simulator.state.touch()

    def _get_view(self, selector, label=None):
        return PopulationView(self, selector, label)

    def _get_parameters(self, *names):
        native = self._get_native_parameters(*self.celltype.get_native_names(*names))
        return self.celltype.reverse_translate(native)

    def _get_native_parameters(self, *names):
        return ParameterSpace({name: simplify(self._parameters[name]) for name in names}, shape=(self.size,))

    def _set_parameters(self, parameter_space):
        parameter_space.evaluate(simplify=False, mask=self._mask_local)
        for name, value in parameter_space.items():
            self._parameters[name] = value
        self._after_parameter_change()

    def record(self, variables, to_file=None, sampling_interval=None, locations=None, readout=None):
        """Record ``variables`` (``'spikes'``, ``'v'``); ``readout`` selects the ADC for ``'v'``:
        ``'auto'`` (default), ``'cadc'`` or ``'madc'`` (at most two neurons)."""
        _check_readout(readout)
        if readout is not None:
            self.recorder.readout = readout
        super().record(variables, to_file, sampling_interval, locations)
