"""Recorded Neo data to tensors: train the torch bridge on what the PyNN backend recorded.

``Population.get_data()`` returns a :class:`neo.Block` with one ``Segment`` per run
between ``reset()`` calls; each segment holds one ``SpikeTrain`` per recorded neuron
(annotated with the neuron's ``source_index`` in its population) and, for ``v``, one
``AnalogSignal`` with one channel per recorded neuron (array annotation
``channel_index``). Times are biological [ms], membranes [mV].

:func:`block_to_tensors` puts them on the bridge's grid: hardware time [us]
(``t_hw = t_bio * 1000 / speedup``, through :mod:`pynn_brainscales2.hardware`), steps
``t_n = n dt`` counted from each segment's ``t_start``, and the layout of the bridge's
handles, ``[time, batch, neurons]`` with **one batch entry per segment** and neurons at
their index in the population (neurons that were not recorded stay silent / zero):

- ``spikes``: the number of spikes of each neuron in step ``n``, a spike at ``t`` counted
  at step ``round(t / dt)`` (as :func:`.transforms.spike_train` places input spikes), so
  the tensor can be fed to an :class:`~.modules.InputNeuron` directly;
- ``v``: the recorded membrane linearly interpolated onto ``t_n`` [mV] (held at the
  first / last sample outside the recorded range), like the bridge's ``handle.v``.

>>> import neo, quantities as pq
>>> seg = neo.Segment()
>>> seg.spiketrains.append(neo.SpikeTrain([1.0, 2.5] * pq.ms, t_stop=4.0 * pq.ms, source_index=1))
>>> block = neo.Block()
>>> block.segments.append(seg)
>>> out = block_to_tensors(block, dt_us=0.5)
>>> tuple(out.spikes.shape), out.spikes[:, 0, 1].nonzero().flatten().tolist()
((8, 1, 2), [2, 5])
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ..errors import ShapeError
from ..hardware import DEFAULT_SPEEDUP, bio_ms_to_hw_us

__all__ = ["NeoTensors", "block_to_tensors", "spiketrains_to_tensor", "signal_to_tensor"]


class NeoTensors(NamedTuple):
    """Tensors of one population's recording, ``[time, batch (segments), neurons]``."""

    spikes: torch.Tensor | None  # spike counts per grid step, None if no spikes were recorded
    v: torch.Tensor | None  # membrane on the grid [mV], None if ``v`` was not recorded
    dt_us: float  # grid step [us of hardware time]
    population: str | None  # label of the population (annotation ``source_population``)
    recorded: torch.Tensor  # [neurons] bool: recorded (spikes or v) at all


def _ms(x) -> float:
    """A quantity (or a number taken as ms) in ms."""
    if hasattr(x, "rescale"):
        return float(x.rescale("ms").magnitude)
    return float(x)


def _segments(block_or_segments) -> list:
    if hasattr(block_or_segments, "segments"):
        return list(block_or_segments.segments)
    if hasattr(block_or_segments, "spiketrains"):
        return [block_or_segments]
    return list(block_or_segments)


def _labels(segments) -> set:
    labels = set()
    for seg in segments:
        for obj in (*seg.spiketrains, *seg.analogsignals):
            if "source_population" in obj.annotations:
                labels.add(obj.annotations["source_population"])
    return labels


def _of(objs, population):
    return [o for o in objs if population is None or o.annotations.get("source_population") == population]


def _train_index(train, position: int) -> int:
    for key in ("source_index", "channel_index"):
        if key in train.annotations:
            return int(train.annotations[key])
    return position


def _signal_index(signal) -> np.ndarray:
    ann = getattr(signal, "array_annotations", {}) or {}
    if "channel_index" in ann:
        return np.asarray(ann["channel_index"], dtype=np.int64)
    return np.arange(signal.shape[1], dtype=np.int64)


def _steps(duration_us: float, dt_us: float) -> int:
    return int(math.ceil(duration_us / dt_us - 1e-9))


def spiketrains_to_tensor(
    segments,
    dt_us: float,
    n_steps: int,
    size: int,
    speedup: float = DEFAULT_SPEEDUP,
    population: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Spike counts ``[n_steps, len(segments), size]`` on the grid ``dt_us`` [us].

    Spikes at ``round((t - t_start) / dt)`` (hardware time); spikes beyond the last step
    are dropped.
    """
    out = torch.zeros((n_steps, len(segments), size), dtype=dtype)
    for b, seg in enumerate(segments):
        trains = _of(seg.spiketrains, population)
        t0 = _ms(trains[0].t_start) if trains else 0.0
        for pos, train in enumerate(trains):
            k = _train_index(train, pos)
            t_us = bio_ms_to_hw_us(np.asarray(train.rescale("ms").magnitude) - t0, speedup)
            idx = np.rint(t_us / dt_us).astype(np.int64)
            idx = idx[(idx >= 0) & (idx < n_steps)]
            if idx.size:
                out[:, b, k].index_add_(0, torch.from_numpy(idx), torch.ones(idx.size, dtype=dtype))
    return out


def signal_to_tensor(
    segments,
    dt_us: float,
    n_steps: int,
    size: int,
    name: str = "v",
    speedup: float = DEFAULT_SPEEDUP,
    population: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | None:
    """Analog signal ``name`` interpolated onto ``t_n = n dt_us`` [us], ``[n_steps,
    len(segments), size]`` in the signal's units (mV for ``v``); None if no segment has it."""
    out = torch.zeros((n_steps, len(segments), size), dtype=dtype)
    found = False
    for b, seg in enumerate(segments):
        for sig in _of(seg.analogsignals, population):
            if sig.name != name:
                continue
            found = True
            t0 = _ms(sig.t_start)
            t_us = bio_ms_to_hw_us(np.asarray(sig.times.rescale("ms").magnitude) - t0, speedup)
            grid = dt_us * np.arange(n_steps)
            data = np.asarray(sig.magnitude, dtype=np.float64)
            for col, k in enumerate(_signal_index(sig)):
                out[:, b, int(k)] = torch.from_numpy(np.interp(grid, t_us, data[:, col])).to(dtype)
    return out if found else None


def block_to_tensors(
    block,
    dt_us: float = 0.1,
    size: int | None = None,
    runtime_us: float | None = None,
    speedup: float = DEFAULT_SPEEDUP,
    population: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> NeoTensors:
    """Spikes and membrane of a recorded Neo ``Block`` as ``[time, segments, neurons]`` tensors.

    Parameters
    ----------
    block : neo.Block, neo.Segment or list of Segment
        What ``Population.get_data()`` returned (one segment per run between resets).
    dt_us : float
        Grid step [us of hardware time].
    size : int, optional
        Number of neurons (the population's size); default: one more than the largest
        recorded index. Give it when the last neurons were not recorded.
    runtime_us : float, optional
        Length of the grid [us of hardware time]; default: the longest segment
        (the spike trains' ``t_stop - t_start``, else the span of the signal's samples),
        ``ceil(runtime / dt)`` steps.
    speedup : float
        Biological over hardware time (``sim.setup(speedup=...)``; 1000 by default).
    population : str, optional
        Label of the population to take, needed when the block holds several (an
        ``Assembly``).
    dtype : torch.dtype

    Returns
    -------
    NeoTensors
    """
    dt_us = float(dt_us)
    if not math.isfinite(dt_us) or dt_us <= 0:
        raise ValueError(f"block_to_tensors: dt_us = {dt_us} us; give a positive grid step in us.")
    segments = _segments(block)
    if not segments:
        raise ShapeError("block_to_tensors: the block has no segments (was anything recorded and run?).")
    labels = _labels(segments)
    if population is None and len(labels) > 1:
        raise ShapeError(
            f"block_to_tensors: the block holds the populations {sorted(labels)}; choose one with population=..."
        )
    if population is not None and labels and population not in labels:
        raise ShapeError(
            f"block_to_tensors: no population {population!r} in the block; it holds {sorted(labels)}."
        )
    label = population if population is not None else (next(iter(labels)) if labels else None)

    indices = []
    train_ms = signal_ms = 0.0  # the run's duration: spike trains end at t_stop, signals a sample later
    for seg in segments:
        trains = _of(seg.spiketrains, population)
        indices += [_train_index(t, pos) for pos, t in enumerate(trains)]
        for t in trains:
            train_ms = max(train_ms, _ms(t.t_stop) - _ms(t.t_start))
        for sig in _of(seg.analogsignals, population):
            indices += _signal_index(sig).tolist()
            signal_ms = max(signal_ms, _ms(sig.t_stop) - _ms(sig.t_start) - _ms(sig.sampling_period))
    duration_ms = train_ms if train_ms > 0 else signal_ms
    if not indices:
        raise ShapeError("block_to_tensors: the block holds neither spike trains nor analog signals.")
    needed = max(indices) + 1
    if size is None:
        size = needed
    elif size < needed:
        raise ShapeError(
            f"block_to_tensors: size = {size}, but the block has data for neuron index {needed - 1}."
        )
    if runtime_us is None:
        runtime_us = float(bio_ms_to_hw_us(duration_ms, speedup))
    n_steps = max(1, _steps(float(runtime_us), dt_us))

    has_spikes = any(len(_of(seg.spiketrains, population)) for seg in segments)
    spikes = (
        spiketrains_to_tensor(segments, dt_us, n_steps, size, speedup, population, dtype)
        if has_spikes
        else None
    )
    v = signal_to_tensor(segments, dt_us, n_steps, size, "v", speedup, population, dtype)
    recorded = torch.zeros(size, dtype=torch.bool)
    recorded[torch.as_tensor(sorted(set(indices)), dtype=torch.long)] = True
    return NeoTensors(spikes, v, dt_us, label, recorded)
