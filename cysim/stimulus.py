"""External spike events sent by the FPGA to the chip, per trial."""

from __future__ import annotations

import numpy as np

from . import constants as C
from .errors import StimulusError


def _ordered(trials: np.ndarray, times: np.ndarray) -> bool:
    """Whether events are ordered by trial, then time (what the sort would keep as is)."""
    if trials.size < 2:
        return True
    dk = np.diff(trials)
    return bool(np.all(dk >= 0) and np.all((dk > 0) | (np.diff(times) >= 0)))


class Stimulus:
    """Spike events entering the chip from outside, for one or several trials.

    Parameters
    ----------
    times_us : array_like
        Send times [us hardware time], >= 0. The event reaches its synapses
        :data:`~cysim.constants.ROUTING_LATENCY_US` later.
    labels : array_like of int
        14-bit event labels (bus << 11 | row_select << 6 | synapse_label), see
        :func:`cysim.event_label`.
    trials : array_like of int, optional
        Trial index of each event (default: all in trial 0).
    n_trials : int, optional
        Number of trials described (default: ``max(trials) + 1``, at least 1).

    Examples
    --------
    >>> from cysim import Stimulus, event_label
    >>> stim = Stimulus([1.0, 2.5], [event_label(0, 0, 3)] * 2)
    >>> stim.n_trials, len(stim)
    (1, 2)
    """

    def __init__(self, times_us=(), labels=(), trials=None, n_trials=None):
        times = np.asarray(times_us, dtype=float).reshape(-1)
        labels_a = np.asarray(labels).reshape(-1)
        if times.shape != labels_a.shape:
            raise StimulusError(
                f"Stimulus has {times.size} times but {labels_a.size} labels; give one label per event."
            )
        if labels_a.size and not np.issubdtype(labels_a.dtype, np.integer):
            as_float = labels_a.astype(float)
            if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
                raise StimulusError("Stimulus labels must be integers (14-bit event labels).")
        labels_i = labels_a.astype(np.int64)
        bad_t = ~np.isfinite(times) | (times < 0)
        if bad_t.any():
            k = int(np.flatnonzero(bad_t)[0])
            raise StimulusError(f"Stimulus event {k} has time {times[k]} us; allowed: finite times >= 0 us.")
        bad_l = (labels_i < 0) | (labels_i > C.EVENT_LABEL_MAX)
        if bad_l.any():
            k = int(np.flatnonzero(bad_l)[0])
            raise StimulusError(
                f"Stimulus event {k} has label {labels_i[k]}; allowed 0..{C.EVENT_LABEL_MAX} "
                "(bus << 11 | row_select << 6 | synapse_label, see cysim.event_label)."
            )
        trial_a = np.zeros(times.size, dtype=np.int64) if trials is None else np.asarray(trials).reshape(-1)
        if trial_a.shape != times.shape:
            raise StimulusError(f"Stimulus has {times.size} events but {trial_a.size} trial indices.")
        trial_a = trial_a.astype(np.int64)
        if trial_a.size and trial_a.min() < 0:
            raise StimulusError("Stimulus trial indices must be >= 0.")
        needed = int(trial_a.max()) + 1 if trial_a.size else 1
        if n_trials is None:
            n_trials = needed
        if int(n_trials) < needed:
            raise StimulusError(f"Stimulus has events in trial {needed - 1} but n_trials = {n_trials}.")
        if _ordered(trial_a, times):  # already by trial, then time (e.g. built so)
            self.times_us, self.labels, self.trials = times.copy(), labels_i, trial_a
        else:
            if trial_a.size and trial_a.max() == 0:  # one trial: a stable sort by time suffices
                order = np.argsort(times, kind="stable")
            else:
                order = np.lexsort((times, trial_a))
            self.times_us = times[order]
            self.labels = labels_i[order]
            self.trials = trial_a[order]
        self.n_trials = int(n_trials)

    @classmethod
    def from_trials(cls, per_trial) -> Stimulus:
        """One stimulus from a list of ``(times_us, labels)`` pairs, one per trial."""
        per_trial = list(per_trial)
        times, labels, trials = [], [], []
        for k, (t, lab) in enumerate(per_trial):
            t = np.asarray(t, dtype=float).reshape(-1)
            times.append(t)
            labels.append(np.asarray(lab).reshape(-1))
            trials.append(np.full(t.size, k))
        if not per_trial:
            return cls()
        return cls(np.concatenate(times), np.concatenate(labels), np.concatenate(trials), len(per_trial))

    def trial(self, k: int) -> Stimulus:
        """The events of trial ``k`` as a one-trial stimulus."""
        sel = self.trials == k
        return Stimulus(self.times_us[sel], self.labels[sel])

    def __len__(self):
        return self.times_us.size

    def __repr__(self):
        return f"Stimulus({len(self)} events in {self.n_trials} trial(s))"
