"""Loss functions for spiking read-outs.

- Time to first spike (LIF outputs, EventProp): :func:`ttfs_cross_entropy`, the loss of
  Wunderlich & Pehle (2021) used for Yin-Yang in seed 003: a cross-entropy over
  ``softmax(-t_first / tau_0)`` plus the regulariser ``alpha (exp(t_label / tau_1) - 1)`` that
  rewards an early spike of the correct neuron. An output neuron that does not spike counts
  with ``t_first = t_end`` (the end of the run) and passes no gradient for its missing spike;
  the other neurons' spikes still carry the loss's gradient. Optionally (``silent_penalty >
  0``) a sample whose correct neuron stays silent counts ``silent_penalty (v_th - v_max)``
  instead, with ``v_max`` the maximum of that neuron's membrane (``handle.v_max``): its
  gradient raises the membrane towards the threshold, where the spike time has no gradient
  yet; the sample's cross-entropy is left out, since its gradient would only push the other
  outputs out of the run too (all outputs silent has a lower cross-entropy than a silent
  correct output).
  :func:`ttfs_predict` is the matching decision (earliest spike).
- Maximum over time (LI outputs): :func:`max_over_time` gives ``[batch, n]`` for any LI handle
  (EventProp: the exact maximum ``handle.v_max``, or the CADC trace's in chip mode; surrogate
  gradients: the maximum of the trace), and :func:`max_over_time_cross_entropy` the
  cross-entropy on it.

>>> import torch
>>> t = torch.tensor([[3.0, 5.0, 38.0]])
>>> round(float(ttfs_cross_entropy(t, torch.tensor([0]), tau0_us=1.0)), 4)
0.1269
>>> ttfs_predict(t).tolist()
[0]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "first_spike_times",
    "ttfs_cross_entropy",
    "ttfs_predict",
    "max_over_time",
    "max_over_time_cross_entropy",
]


def first_spike_times(handle, missing: str = "end") -> torch.Tensor:
    """First spike per neuron ``[batch, n]`` [us] of an EventProp LIF handle; a neuron without
    spike gets the end of the run (``missing="end"``, no gradient) or ``inf``."""
    return handle.first_spike_times(missing)


def ttfs_cross_entropy(
    t_first: torch.Tensor,
    labels: torch.Tensor,
    tau0_us: float = 0.5,
    alpha: float = 0.0,
    tau1_us: float = 6.4,
    t_end: float | None = None,
    reduction: str = "mean",
    v_max: torch.Tensor | None = None,
    silent_penalty: float = 0.0,
    v_th: float = 1.0,
) -> torch.Tensor:
    """Time-to-first-spike cross-entropy (Wunderlich & Pehle 2021)::

        L = -log softmax(-t / tau_0)[label] + alpha (exp(t_label / tau_1) - 1)

    per sample; with ``silent_penalty > 0``, a sample whose label neuron did not spike counts
    ``silent_penalty (v_th - v_max[label])`` instead.

    Parameters
    ----------
    t_first : Tensor ``[batch, classes]``
        First spike times [us] (e.g. :func:`first_spike_times`); ``inf`` entries (no spike) are
        replaced by ``t_end`` (no gradient) when ``t_end`` is given, else by the largest finite
        time of the batch.
    labels : LongTensor ``[batch]``
    tau0_us : float
        Temperature of the softmax over negative times [us].
    alpha, tau1_us : float
        Weight and time scale [us] of the early-spike regulariser (0 switches it off).
    reduction : "mean" or "sum"
    v_max : Tensor ``[batch, classes]``, optional
        Maximum membrane per output (``handle.v_max`` of an EventProp LIF population); needed
        for ``silent_penalty``.
    silent_penalty, v_th : float
        Weight of the penalty on a silent label neuron and the threshold [pu].
    """
    if t_first.dim() != 2 or labels.shape != t_first.shape[:1]:
        raise ValueError(
            f"ttfs_cross_entropy: t_first must be [batch, classes] and labels [batch]; got "
            f"{list(t_first.shape)} and {list(labels.shape)}."
        )
    finite = torch.isfinite(t_first)
    if not bool(finite.all()):
        fill = t_end
        if fill is None:
            fill = float(t_first.detach()[finite].max()) if bool(finite.any()) else 0.0
        t_first = torch.where(finite, t_first, torch.full_like(t_first, fill))
    loss = F.cross_entropy(-t_first / tau0_us, labels, reduction="none")
    if alpha:
        t_label = t_first.gather(1, labels[:, None])[:, 0]
        loss = loss + alpha * torch.expm1(t_label / tau1_us)
    if silent_penalty:
        if v_max is None:
            raise ValueError("ttfs_cross_entropy: silent_penalty needs v_max (handle.v_max).")
        # v_max = v_th (no gradient) where the neuron spiked; where it did not, the sample's
        # cross-entropy would only push the other outputs out of the run as well (all silent
        # has a lower loss than a silent correct neuron): the penalty replaces it there
        v_label = v_max.gather(1, labels[:, None])[:, 0]
        silent = v_label < v_th
        loss = torch.where(silent, silent_penalty * (v_th - v_label), loss)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"ttfs_cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}.")


def ttfs_predict(t_first: torch.Tensor) -> torch.Tensor:
    """Class with the earliest first spike ``[batch]`` (ties: the lowest index)."""
    return torch.argmin(t_first.detach(), dim=1)


def max_over_time(handle) -> torch.Tensor:
    """Maximum of the membrane over the run ``[batch, n]`` of an LI (or any traced) handle."""
    if handle.v_max is not None:
        return handle.v_max
    if handle.v is None:
        raise ValueError(f"{handle.module.describe()} has no membrane trace; run the experiment first.")
    return handle.v.max(0).values


def max_over_time_cross_entropy(handle, labels: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Cross-entropy on ``scale * max_over_time(handle)``."""
    return F.cross_entropy(scale * max_over_time(handle), labels)
