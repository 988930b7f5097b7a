"""Current sources of the BrainScaleS-2 backend.

A neuron circuit has one constant bias current (CapMem cell ``i_bias_const`` with a
source/sink switch). The virtual chip's configuration cannot change during a run and the
membrane state cannot be carried from one run into the next, so only currents that are
constant for the whole run can be realised:

- :class:`DCSource` with ``start <= 0`` and ``stop`` at or after the end of the run,
- :class:`StepCurrentSource` with one step at time 0 (or none: zero current).

Anything that changes during the run raises
:class:`~pynn_brainscales2.errors.ChipFeatureError` when the network is run (splitting
the run into segments would restart every membrane at its leak potential, so it is not
done). :class:`ACSource` and :class:`NoisyCurrentSource` raise when created.

The current [nA] becomes a membrane slope ``I / cm`` [mV/ms -> CADC LSB/us] that the
calibration meets per circuit (``bias_current`` target: within 2 % on a realistic chip,
against a 15 % circuit spread of the nominal transfer); currents below the calibrated
range (0.5 LSB/us) use the nominal transfer.
"""

from __future__ import annotations

import numpy as np
from pyNN.parameters import ParameterSpace, Sequence
from pyNN.standardmodels import build_translations
from pyNN.standardmodels import electrodes as _electrodes

from ..errors import ChipFeatureError, ParameterRangeError
from ._unsupported import unsupported

SUPPORTED_CURRENT_SOURCES = ("DCSource (constant for the whole run)", "StepCurrentSource (one step at t = 0)")


class _ChipCurrentSource:
    """Stores parameters and the cells a source is injected into (in the simulator state)."""

    def __init__(self, **parameters):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "cell_list", [])
        self._parameters.update(self.default_parameters)
        super().__init__(**parameters)
        if parameters:
            self.set_parameters(**parameters)

    def inject_into(self, cells):
        from .. import simulator

        for cell in cells:
            if not cell.celltype.injectable:
                raise TypeError(
                    f"Can't inject current into a spike source ({cell.celltype.__class__.__name__})."
                )
        self.cell_list.extend(cells)
        simulator.state.register_current_source(self)

    def set_native_parameters(self, parameters):
        from .. import simulator

        parameters.evaluate(simplify=True)
        for name, value in parameters.items():
            self._parameters[name] = value.value if hasattr(value, "value") else value
        self._check()
        simulator.state.touch()

    def _check(self):
        pass

    def get_native_parameters(self):
        # like pyNN.nest: sequences as plain arrays, so ``source.times`` evaluates to the times
        # themselves (len, indexing) rather than to one Sequence object
        values = {
            name: np.asarray(value.value, dtype=float) if isinstance(value, Sequence) else value
            for name, value in self._parameters.items()
        }
        return ParameterSpace(values)

    def _get_data(self):
        raise ChipFeatureError(
            f"{type(self).__name__}.get_data(): the chip does not read back the injected current. The "
            "current is the constant bias set from `amplitude`."
        )

    def current_at(self, t_stop_ms: float) -> float:
        """The constant current [nA] over ``[0, t_stop_ms]``; raises if it changes."""
        raise NotImplementedError


class DCSource(_ChipCurrentSource, _electrodes.DCSource):
    __doc__ = _electrodes.DCSource.__doc__
    translations = build_translations(("amplitude", "amplitude"), ("start", "start"), ("stop", "stop"))

    def current_at(self, t_stop_ms: float) -> float:
        p = self._parameters
        start, stop = float(p["start"]), float(p["stop"])
        if start > 1e-9 or stop < t_stop_ms - 1e-9:
            raise ChipFeatureError(
                f"DCSource(amplitude={p['amplitude']:g} nA, start={start:g} ms, stop={stop:g} ms) changes during "
                f"the run of 0..{t_stop_ms:g} ms: the chip's bias current is constant for a whole run (no timed "
                "writes; runs cannot continue a membrane state). Use start=0 and a stop at or after the end of "
                "the run."
            )
        return float(p["amplitude"])


class StepCurrentSource(_ChipCurrentSource, _electrodes.StepCurrentSource):
    __doc__ = _electrodes.StepCurrentSource.__doc__
    translations = build_translations(("amplitudes", "amplitudes"), ("times", "times"))

    def _check(self):
        from .. import simulator

        times = np.asarray(
            getattr(self._parameters["times"], "value", self._parameters["times"]), dtype=float
        )
        amps = np.asarray(
            getattr(self._parameters["amplitudes"], "value", self._parameters["amplitudes"]), dtype=float
        )
        if times.size != amps.size:
            raise ParameterRangeError(
                f"StepCurrentSource: {times.size} times but {amps.size} amplitudes; give one amplitude [nA] per time [ms]."
            )
        if times.size and (not np.all(np.isfinite(times)) or times.min() < 0 or np.any(np.diff(times) <= 0)):
            raise ParameterRangeError(
                f"StepCurrentSource times = {times.tolist()} ms: allowed finite times >= 0 ms in increasing order."
            )
        # like PyNN's other backends: times on the time-step grid, duplicates removed (last wins)
        grid = self._round_timestamp(times, simulator.state.dt)
        keep = np.append(grid[1:] != grid[:-1], True) if grid.size else np.zeros(0, bool)
        self._parameters["times"] = Sequence(grid[keep])
        self._parameters["amplitudes"] = Sequence(amps[keep])

    def current_at(self, t_stop_ms: float) -> float:
        times = np.asarray(
            getattr(self._parameters["times"], "value", self._parameters["times"]), dtype=float
        )
        amps = np.asarray(
            getattr(self._parameters["amplitudes"], "value", self._parameters["amplitudes"]), dtype=float
        )
        if times.size == 0:
            return 0.0
        inside = times < t_stop_ms - 1e-9
        if (
            times.size != amps.size
            or np.count_nonzero(inside) > 1
            or (inside.any() and times[inside][0] > 1e-9)
        ):
            raise ChipFeatureError(
                f"StepCurrentSource(times={times.tolist()} ms, amplitudes={amps.tolist()} nA) changes during the "
                f"run of 0..{t_stop_ms:g} ms: the chip's bias current is constant for a whole run (no timed "
                "writes; runs cannot continue a membrane state). Use one step at time 0."
            )
        return float(amps[0]) if inside.any() else 0.0


_VARYING = "the chip's bias current is constant for a whole run"
ACSource = unsupported("ACSource", "current source", _VARYING, SUPPORTED_CURRENT_SOURCES)
NoisyCurrentSource = unsupported("NoisyCurrentSource", "current source", _VARYING, SUPPORTED_CURRENT_SOURCES)

__all__ = ["DCSource", "StepCurrentSource", "ACSource", "NoisyCurrentSource", "SUPPORTED_CURRENT_SOURCES"]
