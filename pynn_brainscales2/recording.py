"""Recording: spikes and membrane potentials read back from the chip, in PyNN's terms.

- ``spikes``: FPGA time stamps (8 ns hardware = 8 us biological resolution at speedup
  1000) of on-chip neurons; the host's own events for ``SpikeSourceArray`` and
  ``SpikeSourcePoisson``. The background generators' spikes are not read back.
- ``v``: ``readout='auto'`` (default) uses the CADC when the sampling interval is at
  least its period (1.7 us hardware = 1.7 ms at speedup 1000; all neurons in parallel, 8
  bit, 0.25 mV per LSB with the default voltage map) and the MADC for finer intervals
  when at most two neurons of the network record ``v`` that way (10 bit, ~34 ns
  hardware, resampled linearly onto ``sampling_interval``); otherwise it raises
  :class:`~pynn_brainscales2.errors.RecordingError`. ``readout='cadc'`` accepts the
  CADC's period as the sampling interval (with a portability note); ``readout='madc'``
  forces the MADC.
"""

from __future__ import annotations

import numpy as np
from pyNN import recording

from . import simulator
from .errors import RecordingError


class Recorder(recording.Recorder):
    _simulator = simulator

    def __init__(self, population, file=None):
        super().__init__(population, file)
        self.readout = "auto"
        self.requested_interval = self._simulator.state.dt

    def record(self, variables, ids, sampling_interval=None, locations=None):
        names = [variables] if isinstance(variables, str) else list(variables)
        for name in names:
            if name not in self.population.celltype.recordable:
                raise RecordingError(
                    f"Cannot record {name!r} from {self.population.celltype.__class__.__name__} population "
                    f"{self.population.label!r}: the chip reads out "
                    f"{', '.join(repr(v) for v in self.population.celltype.recordable) or 'nothing'} for it. "
                    + (
                        "Synaptic conductances/currents and adaptation are not observable on BrainScaleS-2."
                        if name in ("gsyn_exc", "gsyn_inh", "w", "isyn_exc", "isyn_inh")
                        else ""
                    )
                )
        super().record(variables, ids, sampling_interval, locations)

    def _record(self, variable, new_ids, sampling_interval=None):
        if variable.name != "spikes" and sampling_interval is not None:
            if not np.isfinite(sampling_interval) or sampling_interval <= 0:
                raise RecordingError(
                    f"sampling_interval = {sampling_interval} ms: give a finite value > 0 ms."
                )
            self.requested_interval = float(sampling_interval)
            self.sampling_interval = float(sampling_interval)

    # --- data ----------------------------------------------------------------------------
    def _run(self):
        return self._simulator.state.last_run

    def _start_ms(self) -> float:
        return float(getattr(self._recording_start_time, "magnitude", self._recording_start_time))

    def _get_spiketimes(self, ids, clear=False):
        run = self._run()
        pop = self.population
        out = {int(i): np.zeros(0) for i in ids}
        if run is None:
            return out
        if id(pop) in run.source_spikes:
            idx, times = run.source_spikes[id(pop)]
        else:
            idx, times = run.observables.spikes_ms(run.key_of[id(pop)])
        keep = (times <= run.t_stop + 1e-9) & (times >= self._start_ms() - 1e-9)
        idx, times = idx[keep], times[keep]
        for i in ids:
            k = pop.id_to_index(i)
            out[int(i)] = np.sort(times[idx == k])
        return out

    def _grid(self, run, interval):
        start = self._start_ms()
        n = int(np.floor((run.t_stop - start) / interval + 1e-9)) + 1
        return start + interval * np.arange(n)

    def _get_all_signals(self, variable, ids, clear=False):
        run = self._run()
        pop = self.population
        if variable.name != "v":
            raise RecordingError(f"Variable {variable.name!r} is not read out by the chip.")
        if run is None or not ids:
            return np.zeros((0, len(ids))), None
        idx = np.array([pop.id_to_index(i) for i in ids], dtype=np.int64)
        key = run.key_of[id(pop)]
        if all((id(pop), int(k)) in run.madc for k in idx):
            grid = self._grid(run, self.requested_interval)
            t = run.observables.madc_times_ms()
            data = [np.interp(grid, t, run.observables.madc_v_mv(key, k)[0]) for k in idx]
            self.sampling_interval = self.requested_interval
            return np.stack(data, axis=1), None
        period = run.cadc_period_ms
        ratio = max(1, int(round(self.requested_interval / period)))
        interval = ratio * period
        self.sampling_interval = interval
        t = run.observables.cadc_times_ms()
        v = run.observables.v_mv(key, idx)[0]
        grid = self._grid(run, interval)
        pos = np.rint(grid / period).astype(np.int64)
        pos = pos[(pos < t.size)]
        return v[pos], None

    def _local_count(self, variable, filter_ids=None):
        spikes = self._get_spiketimes(sorted(self.filter_recorded(variable, filter_ids)))
        return {k: v.size for k, v in spikes.items()}

    def _clear_simulator(self):
        pass

    def _reset(self):
        self.readout = "auto"
