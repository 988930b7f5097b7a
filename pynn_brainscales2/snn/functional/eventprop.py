"""EventProp: exact gradients of spike times from the adjoint dynamics (Wunderlich & Pehle 2021).

Model (per neuron, the LIF of :mod:`.neurons` without refractory time, rails or bias, one
synaptic time constant for both signs of weight)::

    dV/dt = -(V - v_leak)/tau_m + I,     dI/dt = -I/tau_s,
    I += w_ij at every arrival of a spike of source j,
    V >= v_th: spike at t_k, V = v_reset.

A spike sent at ``t`` arrives ``latency`` (0.1 us, the chip's routing latency) later.

Forward (mock mode): event by event, exactly. Between arrivals the state has the closed
form ``V(s) - v_leak = x_0 exp(-s/tau_m) + I_0 K(s)``, ``I(s) = I_0 exp(-s/tau_s)``, with the
PSP kernel ``K(s) = int_0^s exp(-(s-u)/tau_m) exp(-u/tau_s) du`` (:func:`psp_kernel`). The
extremum of ``V`` in an interval is known in closed form; where ``V`` reaches ``v_th`` the
crossing is ``s = -tau W0(z) - x_0/I_0`` (Lambert W, :func:`lambert_w0`) for
``tau_m = tau_s = tau``, else a bracketed Newton iteration on the monotonic part (float64, to
about 1e-12 us). A reset subtracts ``v_th - v_reset`` from ``V`` at ``t_k``, decaying with
``tau_m`` (the dynamics is linear), so the state at every arrival is a sum over arrivals and
resets (:func:`lif_spike_times`). Neurons are processed spike rank by spike rank; only those
that spiked at rank ``r`` can spike at ``r + 1``.

Backward: the adjoint ``(lambda_V, lambda_I)`` runs backwards in time from
``lambda(t_end) = 0``::

    -d lambda_V/dt = -lambda_V/tau_m,     -d lambda_I/dt = -lambda_I/tau_s + lambda_V.

``lambda_I`` is continuous; at a spike ``t_k`` of the neuron, with ``g_k = dL/dt_k`` (from the
loss and from everything downstream) and the slopes ``dV/dt`` just before and after the
spike, ``Vdot- = -(v_th - v_leak)/tau_m + I(t_k)``, ``Vdot+ = -(v_reset - v_leak)/tau_m + I(t_k)``::

    lambda_V(t_k-) = (Vdot+ lambda_V(t_k+) - g_k) / Vdot-.

Between events the adjoint has a closed form too: with ``delta_k`` the jump of ``lambda_V``
at ``t_k``, ``lambda_V(t) = sum_{t_k > t} delta_k exp(-(t_k - t)/tau_m)`` and
``lambda_I(t) = sum_{t_k > t} delta_k K(t_k - t)``. The gradients follow at the arrivals
``a_j`` of the inputs::

    dL/dw_ij = sum_{arrivals of j} lambda_I,i(a),
    dL/da    = w_ij (lambda_I,i(a)/tau_s - lambda_V,i(a))     (summed over the targets i)

and ``dL/da`` is the ``g_k`` of the presynaptic spike, so layers chain through autograd
(:class:`LIFEventProp`). With one spike and ``L = t_k`` this is
``dt_k/dw = -K(t_k - a) / Vdot-``, the textbook result. For the paper's normalisation
(``tau_m dV/dt = -V + I``, ``tau_s dI/dt = -I``) the weight gradient reads
``-tau_s sum lambda_I``; here, with currents as rates of change of ``V``, it is ``sum lambda_I``.

A leaky integrator's maximum over time ``V(t_max)`` is the same with one pseudo-spike at
``t_max`` whose jump is ``dL/dV_max`` (:class:`LIMaxEventProp`).

Nothing is stored per time step: the forward saves the input arrivals, their sources, the
weights and the output spike times; the backward works on pairs (output spike, input
arrival), in chunks.

Edge cases (never NaN):

- ``Vdot-`` below ``min_slope`` (a spike that only grazes the threshold, or, in chip mode, a
  measured spike where the model's membrane would not rise) is clamped to ``min_slope``;
- a spike exactly at ``t_end`` counts (intervals are closed at the end); its gradient is the
  one-sided one;
- padding (no spike) is ``inf`` and carries no gradient.

:func:`euler_first_spike` is the time-stepped version (explicit Euler for the forward and the
adjoint dynamics, the spike time interpolated inside its step), whose gradient converges to
the exact one to first order in ``dt``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .neurons import LIFParameters, LIParameters

__all__ = [
    "EventPropParameters",
    "SpikeEvents",
    "LIFEventProp",
    "LIMaxEventProp",
    "eventprop_parameters",
    "psp_kernel",
    "lif_spike_times",
    "li_maximum",
    "membrane",
    "spike_jumps",
    "current_at",
    "adjoint_to_inputs",
    "lif_events",
    "li_max_events",
    "dense_to_times",
    "flatten_events",
    "euler_first_spike",
    "lambert_w0",
    "first_spike_time_analytic",
    "DEFAULT_MIN_SLOPE",
    "DEFAULT_MAX_SPIKES",
]

INF = math.inf
DEFAULT_MIN_SLOPE = 1e-3  # [pu/us] lower clamp of dV/dt at a spike (see module docstring)
DEFAULT_MAX_SPIKES = 64  # spikes per neuron and sample simulated in mock mode
_PAIR_BUDGET = 1 << 20  # elements of one chunk of pairwise tensors


class EventPropParameters(NamedTuple):
    """Scalar parameters of an EventProp population (times in us, potentials in pu)."""

    tau_mem_us: float
    tau_syn_us: float
    v_leak: float
    v_th: float
    v_reset: float
    t_end_us: float
    spiking: bool = True
    min_slope: float = DEFAULT_MIN_SLOPE
    max_spikes: int = DEFAULT_MAX_SPIKES


class SpikeEvents(NamedTuple):
    """Spike times of a population in one run.

    ``times`` is ``[batch, neurons, m]``, each neuron's spikes in ascending order, padded with
    ``inf``; it carries EventProp gradients. ``t_end`` is the end of the run [us].
    """

    times: torch.Tensor
    t_end: float

    def first(self, missing: str = "end") -> torch.Tensor:
        """First spike time per neuron ``[batch, neurons]``; a neuron without spike gets
        ``t_end`` (``missing="end"``, no gradient) or ``inf`` (``missing="inf"``)."""
        t = self.times[..., 0]
        if missing == "inf":
            return t
        if missing != "end":
            raise ValueError(f"SpikeEvents.first: missing must be 'end' or 'inf', got {missing!r}.")
        return torch.where(torch.isfinite(t), t, torch.full_like(t, self.t_end))

    def count(self) -> torch.Tensor:
        """Number of spikes per neuron ``[batch, neurons]`` (no gradient)."""
        return torch.isfinite(self.times.detach()).sum(-1)

    def to_dense(self, dt_us: float, n_steps: int | None = None) -> torch.Tensor:
        """Spike counts per grid step ``[time, batch, neurons]`` (no gradient); a spike at ``t``
        counts in step ``floor(t / dt)``."""
        t = self.times.detach()
        n_steps = int(math.ceil(self.t_end / dt_us - 1e-9)) if n_steps is None else n_steps
        batch, n, _ = t.shape
        out = t.new_zeros((n_steps, batch, n))
        b, i, k = torch.nonzero(torch.isfinite(t), as_tuple=True)
        step = torch.floor(t[b, i, k] / dt_us).long().clamp(0, n_steps - 1)
        out.index_put_((step, b, i), torch.ones_like(step, dtype=t.dtype), accumulate=True)
        return out


def eventprop_parameters(
    p, t_end_us: float, min_slope: float = DEFAULT_MIN_SLOPE, max_spikes: int = DEFAULT_MAX_SPIKES, who=""
) -> EventPropParameters:
    """Check that ``p`` (LIF or LI parameters) is covered by EventProp and return the scalars.

    Raises ``ValueError`` naming what is not supported: per-neuron tensors, different
    excitatory and inhibitory time constants, refractory time, bias current, rails.
    """
    who = f"{who}: " if who else ""

    def scalar(name):
        x = getattr(p, name)
        if torch.is_tensor(x):
            if x.numel() != 1:
                raise ValueError(
                    f"{who}EventProp needs a scalar {name}, got a tensor of shape {list(x.shape)}."
                )
            x = float(x.detach())
        return float(x)

    spiking = isinstance(p, LIFParameters)
    if not (spiking or isinstance(p, LIParameters)):
        raise ValueError(f"{who}EventProp supports LIF and LI populations, got {type(p).__name__}.")
    tau_m, tau_e, tau_i = scalar("tau_mem_us"), scalar("tau_syn_exc_us"), scalar("tau_syn_inh_us")
    if tau_e != tau_i:
        raise ValueError(
            f"{who}EventProp needs one synaptic time constant (tau_syn_exc_us = tau_syn_inh_us), got "
            f"{tau_e} and {tau_i}."
        )
    if scalar("i_bias") != 0.0:
        raise ValueError(f"{who}EventProp does not model a bias current (i_bias = 0 needed).")
    if p.v_min != -INF or p.v_max != INF:
        raise ValueError(f"{who}EventProp does not model membrane rails (v_min, v_max must be unbounded).")
    if not (tau_m > 0 and tau_e > 0):
        raise ValueError(f"{who}time constants must be positive, got tau_mem {tau_m}, tau_syn {tau_e}.")
    v_leak = scalar("v_leak")
    if spiking:
        if scalar("refractory_us") != 0.0:
            raise ValueError(f"{who}EventProp needs refractory_us = 0 (no refractory clamp in the adjoint).")
        v_th, v_reset = scalar("v_th"), scalar("v_reset")
        if not v_reset < v_th or not v_leak < v_th:
            raise ValueError(f"{who}EventProp needs v_reset < v_th and v_leak < v_th.")
    else:
        v_th, v_reset = INF, v_leak
    if not (min_slope > 0 and math.isfinite(min_slope)):
        raise ValueError(f"{who}min_slope must be positive and finite, got {min_slope}.")
    return EventPropParameters(
        tau_m, tau_e, v_leak, v_th, v_reset, float(t_end_us), spiking, float(min_slope), int(max_spikes)
    )


# --- closed forms -------------------------------------------------------------------------
def psp_kernel(s: torch.Tensor, tau_m: float, tau_s: float) -> torch.Tensor:
    """``K(s) = int_0^s exp(-(s-u)/tau_m) exp(-u/tau_s) du``: the membrane response [pu] to a
    unit current jump [pu/us] at ``s = 0`` (zero for ``s <= 0``); stable for ``tau_m ~ tau_s``.

    >>> round(float(psp_kernel(torch.tensor(6.0), 6.0, 6.0)), 6)  # peak tau/e at s = tau
    2.207277
    """
    s = s.clamp(min=0.0)
    slow, fast = max(tau_m, tau_s), min(tau_m, tau_s)
    d = 1.0 / fast - 1.0 / slow
    if d * slow < 1e-12:
        return s * torch.exp(-s / slow)
    return torch.exp(-s / slow) * (-torch.expm1(-s * d)) / d


def _extremum(x0, i0, tau_m: float, tau_s: float):
    """Time ``s_e >= 0`` where ``dV/ds = 0`` for the start state ``(x0 = V - v_leak, I0)``, ``inf``
    where there is none (a sum of two exponentials has at most one extremum)."""
    c = 1.0 / tau_s - 1.0 / tau_m
    nonzero = i0 != 0
    i_safe = torch.where(nonzero, i0, torch.ones_like(i0))
    g = tau_s * (1.0 - x0 / (tau_m * i_safe))
    ok = nonzero & (g > 0)
    if abs(c) * max(tau_m, tau_s) < 1e-12:
        s = g
    else:
        arg = -c * g
        ok = ok & (arg > -1.0)
        s = -torch.log1p(torch.where(ok, arg, torch.zeros_like(arg))) / c
    return torch.where(ok, s, torch.full_like(s, INF))


def _v(x0, i0, s, p: EventPropParameters):
    """``V(s) - v_leak`` from the start state."""
    return x0 * torch.exp(-s.clamp(min=0.0) / p.tau_mem_us) + i0 * psp_kernel(s, p.tau_mem_us, p.tau_syn_us)


def _v_dv(x0, i0, s, p: EventPropParameters):
    """``V(s) - v_leak`` and ``dV/ds`` together."""
    s = s.clamp(min=0.0)
    em = torch.exp(-s / p.tau_mem_us)
    es = em if p.tau_syn_us == p.tau_mem_us else torch.exp(-s / p.tau_syn_us)
    x = x0 * em + i0 * psp_kernel(s, p.tau_mem_us, p.tau_syn_us)
    return x, -x / p.tau_mem_us + i0 * es


def _crossing_bracket(x0, i0, length, p: EventPropParameters):
    """Whether ``V`` reaches ``v_th`` within ``[0, length]`` and a bracket ``[lo, hi]`` on which
    ``V`` rises through it."""
    theta = p.v_th - p.v_leak
    s_e = _extremum(x0, i0, p.tau_mem_us, p.tau_syn_us)
    rising = (-x0 / p.tau_mem_us + i0) > 0
    hi = torch.where(rising, torch.minimum(s_e, length), length)
    lo = torch.where(rising, torch.zeros_like(s_e), torch.where(s_e < length, s_e, length))
    # rounding must not hide a crossing exactly at the end of an interval (or of the run)
    cross = (_v(x0, i0, hi, p) >= theta * (1.0 - 1e-12)) & (rising | (s_e < length))
    return cross, lo, hi


def _root(x0, i0, lo, hi, p: EventPropParameters, iterations: int = 60):
    """First ``s`` in ``[lo, hi]`` with ``V(s) = v_th`` (``V`` rising there), bracketed Newton."""
    theta = p.v_th - p.v_leak
    f_lo = _v(x0, i0, lo, p) - theta
    done = f_lo >= 0  # numerically already at threshold at the start
    if p.tau_mem_us == p.tau_syn_us:
        # (x0 + I0 s) exp(-s/tau) = theta has the closed form s = -tau W0(z) - x0/I0 with
        # z = -(theta/(I0 tau)) exp(-x0/(I0 tau)); a crossing needs I0 > 0 (then lo = 0)
        tau = p.tau_mem_us
        i_safe = torch.where(i0 > 0, i0, torch.ones_like(i0))
        z = (-(theta / (i_safe * tau)) * torch.exp(-x0 / (i_safe * tau))).clamp(min=-1.0 / math.e)
        s = -tau * lambert_w0(z) - x0 / i_safe
        s = torch.minimum(torch.maximum(s, lo), hi)
        return torch.where(done | (i0 <= 0), lo, s)
    s = lo.clone()
    tol = 1e-12 * max(p.tau_mem_us, p.tau_syn_us, 1.0)
    for _ in range(iterations):
        f, df = _v_dv(x0, i0, s, p)
        f = f - theta
        above = f >= 0
        hi = torch.where(above, s, hi)
        lo = torch.where(above, lo, s)
        step = f / torch.where(df > 0, df, torch.ones_like(df))
        newton = s - step
        bad = (df <= 0) | (newton < lo) | (newton > hi)
        s_new = torch.where(bad, 0.5 * (lo + hi), newton)
        converged = done | (~bad & (step.abs() <= tol)) | (hi - lo <= tol)
        s = torch.where(done, s, s_new)
        done = converged
        if bool(done.all()):
            break
    return s


def _pair_chunks(rows: int, cols: int, batch: int) -> int:
    return max(1, min(rows, _PAIR_BUDGET // max(1, batch * max(cols, 1))))


def _prefix_by_cumsum(a, w_ev, p: EventPropParameters):
    """The prefix states by running sums of exponentially weighted arrivals (O(K) instead of
    the pairwise O(K^2)), where that is accurate: equal time constants, or time constants that
    differ by more than 5 %, and a span of arrivals short enough for ``exp`` (float64).
    Returns None otherwise."""
    tau_m, tau_s = p.tau_mem_us, p.tau_syn_us
    c = 1.0 / tau_s - 1.0 / tau_m
    equal = tau_m == tau_s
    if a.shape[1] == 0 or not (equal or abs(c) * max(tau_m, tau_s) > 0.05):
        return None
    rel = a - a[:, :1]  # relative to the first arrival of the row
    if float(rel[:, -1].max()) > 100.0 * min(tau_m, tau_s):
        return None
    rel = rel[:, :, None]
    if equal:
        up = torch.exp(rel / tau_m)
        s0 = torch.cumsum(w_ev * up, 1)
        s1 = torch.cumsum(w_ev * (rel * up), 1)
        down = torch.exp(-rel / tau_m)
        return down * (rel * s0 - s1), down * s0
    sm = torch.cumsum(w_ev * torch.exp(rel / tau_m), 1)
    ss = torch.cumsum(w_ev * torch.exp(rel / tau_s), 1)
    ds = torch.exp(-rel / tau_s)
    return (torch.exp(-rel / tau_m) * sm - ds * ss) / c, ds * ss


def _prefix_states(a, w_ev, p: EventPropParameters, block: int | None = None):
    """Membrane without resets and current just after every arrival: ``(x, I)`` ``[B, K, n]``.

    ``a`` ``[B, K]`` sorted (invalid arrivals moved to ``t_end`` with zero weight). Blocks of
    ``block`` arrivals are summed pairwise; the state is carried from block to block."""
    batch, k, n = w_ev.shape
    fast = _prefix_by_cumsum(a, w_ev, p)
    if fast is not None:
        return fast
    if block is None:
        block = max(16, int(math.sqrt(_PAIR_BUDGET / 4 / max(batch, 1))))
    xs, cs = [], []
    x_c = i_c = None
    t_c = None
    for j0 in range(0, k, block):
        ab, wb = a[:, j0 : j0 + block], w_ev[:, j0 : j0 + block]
        d = ab[:, :, None] - ab[:, None, :]  # [B, kb, kb]
        before = d >= 0
        dpos = d.clamp(min=0.0)
        kv = torch.where(before, psp_kernel(dpos, p.tau_mem_us, p.tau_syn_us), torch.zeros_like(d))
        ki = torch.where(before, torch.exp(-dpos / p.tau_syn_us), torch.zeros_like(d))
        x, c = torch.bmm(kv, wb), torch.bmm(ki, wb)
        if x_c is not None:
            gap = (ab - t_c)[:, :, None]  # [B, kb, 1]
            x = x + x_c * torch.exp(-gap / p.tau_mem_us) + i_c * psp_kernel(gap, p.tau_mem_us, p.tau_syn_us)
            c = c + i_c * torch.exp(-gap / p.tau_syn_us)
        xs.append(x)
        cs.append(c)
        x_c, i_c, t_c = x[:, -1:], c[:, -1:], ab[:, -1:]
    if not xs:
        z = w_ev.new_zeros((batch, 0, n))
        return z, z
    return torch.cat(xs, 1), torch.cat(cs, 1)


def _sorted_events(arrivals, source, weight, p: EventPropParameters):
    """Arrivals sorted in time, invalid ones (``inf``, after ``t_end``) at ``t_end`` with zero
    weight; the weight of every arrival onto every neuron ``[B, K, n]`` (float64)."""
    a = arrivals.detach().to(torch.float64)
    order, valid = _compact(torch.isfinite(a) & (a <= p.t_end_us))
    a = torch.where(valid, torch.gather(a, 1, order), torch.full((), INF, dtype=a.dtype))
    src = torch.gather(source, 1, order)
    a, by_time = torch.sort(a, dim=1, stable=True)
    src = torch.gather(src, 1, by_time)
    valid = torch.gather(valid, 1, by_time)
    a = torch.where(valid, a, torch.full((), p.t_end_us, dtype=a.dtype))
    w = weight.detach().to(torch.float64)
    w_ev = w.t()[src] * valid[..., None]  # [B, K, n]
    return a, w_ev


def lif_spike_times(arrivals, source, weight, p: EventPropParameters, want_max: bool = False):
    """Exact spike times of LIF neurons driven by input arrivals (no gradient).

    Parameters
    ----------
    arrivals : Tensor ``[B, K]``
        Arrival times [us] of input events (any order; ``inf`` = none).
    source : LongTensor ``[B, K]``
        Column of ``weight`` each arrival uses.
    weight : Tensor ``[n, n_in]``
        Weights [pu/us].
    p : EventPropParameters

    want_max : bool
        Also return the maximum of each membrane over the run and its time ``[B, n]``
        (``v_th`` and the first spike time for neurons that spike).

    Returns
    -------
    Tensor ``[B, n, m]`` of spike times in ascending order per neuron, ``inf`` padded,
    ``m >= 1``, in the dtype of ``weight`` (and the maxima with ``want_max``).
    """
    batch, n = arrivals.shape[0], weight.shape[0]
    a, w_ev = _sorted_events(arrivals, source, weight, p)
    k = a.shape[1]
    found = []  # (row, time) per rank
    vmax = a.new_zeros(batch * n)  # V - v_leak
    tmax = a.new_zeros(batch * n)
    if k > 0:
        x_free, i_at = _prefix_states(a, w_ev, p)  # [B, K, n]
        # one row per (batch, neuron); later ranks only keep the rows that spiked before
        xf = x_free.permute(0, 2, 1).reshape(batch * n, k)
        ia = i_at.permute(0, 2, 1).reshape(batch * n, k)
        row = torch.arange(batch * n, device=a.device)
        ar = a.repeat_interleave(n, 0)  # [R, K]
        a_next = torch.cat([a[:, 1:], a.new_full((batch, 1), p.t_end_us)], 1).repeat_interleave(n, 0)
        reset = torch.zeros_like(xf)  # sum over resets of exp(-(a_j - t_r)/tau_m)
        t_last = a.new_full((batch * n, 1), -INF)
        jump = p.v_th - p.v_reset
        x_reset = p.v_reset - p.v_leak
        pos = torch.arange(k, device=a.device)
        if want_max:  # the membrane of neurons that never spike is the free one
            vmax, tmax = _free_maximum(ar, a_next, xf, ia, p)
        for _ in range(p.max_spikes):
            after = ar >= t_last  # state from the sums (all resets so far included)
            contains = ~after & (a_next > t_last)  # the interval in which the last reset lies
            since = torch.where(contains, t_last - ar, torch.zeros_like(ar))
            x0 = torch.where(after, xf - jump * reset, torch.full_like(xf, x_reset))
            i0 = torch.where(contains, ia * torch.exp(-since / p.tau_syn_us), ia)
            s0 = torch.where(after, ar, t_last.expand_as(ar))
            cross, lo, hi = _crossing_bracket(x0, i0, a_next - s0, p)
            cross = cross & (after | contains)
            first = torch.where(cross, pos, k).amin(1)  # [R]
            has = first < k
            if not bool(has.any()):
                break
            r_idx = torch.nonzero(has)[:, 0]
            j_idx = first[r_idx]
            sel = (r_idx, j_idx)
            t_new = s0[sel] + _root(x0[sel], i0[sel], lo[sel], hi[sel], p)
            found.append((row[r_idx], t_new))
            # keep the rows that spiked; add the new reset
            xf, ia, ar, a_next, reset, row = (x[r_idx] for x in (xf, ia, ar, a_next, reset, row))
            t_last = t_new[:, None]
            fired = ar >= t_last
            reset = reset + torch.where(
                fired,
                torch.exp(-(ar - torch.where(fired, t_last, ar)) / p.tau_mem_us),
                torch.zeros_like(reset),
            )
    m = max(1, len(found))
    out = torch.full((batch * n, m), INF, dtype=torch.float64, device=arrivals.device)
    for rank, (r, t) in enumerate(found):
        out[r, rank] = t
    out = out.reshape(batch, n, m).to(weight.dtype)
    if not want_max:
        return out
    spiked = torch.isfinite(out[..., 0])
    vmax = torch.where(
        spiked, torch.full_like(out[..., 0], p.v_th), (vmax + p.v_leak).reshape(batch, n).to(out.dtype)
    )
    tmax = torch.where(spiked, out[..., 0], tmax.reshape(batch, n).to(out.dtype))
    return out, vmax, tmax


def membrane(times, arrivals, source, weight, p: EventPropParameters) -> torch.Tensor:
    """Membrane without resets ``V(t)`` [pu] at ``times`` ``[B, n, q]`` (no gradient)."""
    a, w_ev = _sorted_events(arrivals, source, weight, p)
    t = times.detach().to(torch.float64)
    batch, n, q = t.shape
    out = a.new_full((batch, n, q), p.v_leak)
    if a.shape[1] == 0:
        return out.to(weight.dtype)
    # sum_j w_ev[b, j, i] K(t[b, i, q] - a[b, j])
    d = t[:, :, :, None] - a[:, None, None, :]  # [B, n, q, K]
    kern = torch.where(d > 0, psp_kernel(d, p.tau_mem_us, p.tau_syn_us), torch.zeros_like(d))
    out = out + torch.einsum("biqj,bji->biq", kern, w_ev)
    return out.to(weight.dtype)


def _free_maximum(ar, a_next, x, i0, p: EventPropParameters):
    """Maximum of ``V - v_leak`` (no resets) over ``[0, t_end]`` and its time, per row, from the
    states ``(x, I0)`` just after the arrivals ``ar`` ``[R, K]``; ``a_next`` ends each interval.
    The membrane rests (``V - v_leak = 0``) before the first arrival."""
    length = a_next - ar
    s_e = _extremum(x, i0, p.tau_mem_us, p.tau_syn_us)
    interior = (s_e < length) & ((-x / p.tau_mem_us + i0) > 0)
    s_e = torch.where(interior, s_e, torch.zeros_like(s_e))
    cands = torch.cat(
        [
            x,  # at the arrival
            torch.where(interior, _v(x, i0, s_e, p), torch.full_like(x, -INF)),  # interior peak
            _v(x, i0, length, p),  # at the end of the interval
            x.new_zeros((x.shape[0], 1)),  # at rest, t = 0
        ],
        1,
    )
    times = torch.cat([ar, ar + s_e, a_next, ar.new_zeros((ar.shape[0], 1))], 1)
    best, idx = cands.max(1)
    return best, torch.gather(times, 1, idx[:, None])[:, 0]


def li_maximum(arrivals, source, weight, p: EventPropParameters):
    """Exact maximum over ``[0, t_end]`` of leaky integrators and its time, ``[B, n]`` each
    (no gradient). The membrane rests at ``v_leak`` until the first arrival."""
    batch, n = arrivals.shape[0], weight.shape[0]
    a, w_ev = _sorted_events(arrivals, source, weight, p)
    if a.shape[1] == 0:
        return weight.new_full((batch, n), p.v_leak), weight.new_zeros((batch, n))
    x, i0 = _prefix_states(a, w_ev, p)
    k = a.shape[1]
    rows = (x.permute(0, 2, 1).reshape(batch * n, k), i0.permute(0, 2, 1).reshape(batch * n, k))
    a_next = torch.cat([a[:, 1:], a.new_full((batch, 1), p.t_end_us)], 1)
    best, t_best = _free_maximum(a.repeat_interleave(n, 0), a_next.repeat_interleave(n, 0), *rows, p)
    return (best + p.v_leak).reshape(batch, n).to(weight.dtype), t_best.reshape(batch, n).to(weight.dtype)


# --- adjoint ----------------------------------------------------------------------------------
def _compact(valid: torch.Tensor):
    """Indices ``[B, R']`` that put the valid entries of each row first (in their order), ``R'``
    the largest count of valid entries, and the validity of the gathered entries."""
    batch, r = valid.shape
    counts = valid.sum(1)
    keep = int(counts.max()) if valid.numel() else 0
    rank = torch.cumsum(valid, 1) - 1
    slot = torch.where(valid, rank, torch.full_like(rank, keep))  # invalid ones to a spare slot
    order = torch.zeros((batch, keep + 1), dtype=torch.long, device=valid.device)
    order.scatter_(1, slot, torch.arange(r, device=valid.device).expand(batch, r))
    order = order[:, :keep]
    ok = torch.arange(keep, device=valid.device)[None, :] < counts[:, None]
    return order, ok


def _spike_list(times):
    """Valid spikes of ``[B, n, m]`` as a compact list: ``(t [B, R], neuron [B, R], valid [B, R],
    position [B, R])`` with ``position`` the flat index ``neuron * m + k``."""
    batch, n, m = times.shape
    tf = times.reshape(batch, n * m)
    order, valid = _compact(torch.isfinite(tf))
    t = torch.gather(tf, 1, order)
    return torch.where(valid, t, torch.zeros_like(t)), order // m, valid, order


def _arrival_list(arrivals, source, p: EventPropParameters):
    a = arrivals.detach()
    order, valid = _compact(torch.isfinite(a) & (a <= p.t_end_us))
    a = torch.gather(a, 1, order)
    return torch.where(valid, a, torch.zeros_like(a)), torch.gather(source, 1, order), valid, order


def spike_jumps(g_times, times, arrivals, source, weight, p: EventPropParameters) -> torch.Tensor:
    """Jumps ``delta_k`` of ``lambda_V`` at the spikes ``times`` ``[B, n, m]`` given ``g_times =
    dL/dt_k`` (same shape); zero for padding. ``dV/dt`` before a spike uses the model's current
    ``I(t_k)`` from the arrivals before ``t_k``, clamped below at ``min_slope``."""
    batch, n, m = times.shape
    t = times.detach()
    valid = torch.isfinite(t)
    i_k = current_at(t, arrivals, source, weight, p)  # [B, n, m]
    slope = (-(p.v_th - p.v_leak) / p.tau_mem_us + i_k).clamp(min=p.min_slope)
    g = torch.where(valid, g_times, torch.zeros_like(g_times))
    delta = torch.zeros_like(t)
    lam = t.new_zeros((batch, n))  # lambda_V just after the spike being processed
    gain = (p.v_th - p.v_reset) / p.tau_mem_us  # Vdot+ - Vdot-
    for k in range(m - 1, -1, -1):
        if k + 1 < m:
            nxt = valid[..., k + 1] & valid[..., k]
            gap = torch.where(nxt, t[..., k + 1] - t[..., k], torch.zeros_like(lam))
            lam = torch.where(nxt, lam * torch.exp(-gap / p.tau_mem_us), torch.zeros_like(lam))
        d = (gain * lam - g[..., k]) / slope[..., k]
        d = torch.where(valid[..., k], d, torch.zeros_like(d))
        delta[..., k] = d
        lam = lam + d
    return delta


def current_at(times, arrivals, source, weight, p: EventPropParameters):
    """Synaptic current ``I(t-)`` [pu/us] of each neuron at its times ``[B, n, m]`` (0 at padding)."""
    batch, n, m = times.shape
    t, nidx, valid_t, pos = _spike_list(times.detach())
    a, src, valid_a, _ = _arrival_list(arrivals, source, p)
    w = weight.detach()
    cur = t.new_zeros(t.shape)
    rows = t.shape[1]
    step = _pair_chunks(rows, a.shape[1], batch)
    for r0 in range(0, rows, step):
        sl = slice(r0, r0 + step)
        d = t[:, sl, None] - a[:, None, :]  # [B, rc, K]
        before = (d > 0) & valid_t[:, sl, None] & valid_a[:, None, :]
        w_pair = w[nidx[:, sl, None], src[:, None, :]]
        e = torch.where(before, torch.exp(-d.clamp(min=0.0) / p.tau_syn_us), torch.zeros_like(d))
        cur[:, sl] = (e * w_pair).sum(-1)
    out = t.new_zeros((batch, n * m))
    out.scatter_add_(1, pos, torch.where(valid_t, cur, torch.zeros_like(cur)))
    return out.reshape(batch, n, m)


def adjoint_to_inputs(delta, times, arrivals, source, weight, p: EventPropParameters):
    """Weight gradient ``[n, n_in]`` and arrival-time gradient ``[B, K]`` from the ``lambda_V``
    jumps ``delta`` at ``times`` ``[B, n, m]`` (closed-form adjoint between events)."""
    batch, n, m = times.shape
    n_in = weight.shape[1]
    t, nidx, valid_t, pos = _spike_list(times.detach())
    dlt = torch.gather(delta.reshape(batch, n * m), 1, pos)
    valid_t = valid_t & (dlt != 0)
    a, src, valid_a, a_pos = _arrival_list(arrivals, source, p)
    w = weight.detach()
    d_w = torch.zeros(n * n_in, dtype=w.dtype, device=w.device)
    g_a = a.new_zeros(a.shape)
    rows = t.shape[1]
    step = _pair_chunks(rows, a.shape[1], batch)
    for r0 in range(0, rows, step):
        sl = slice(r0, r0 + step)
        s = t[:, sl, None] - a[:, None, :]  # [B, rc, K]
        after = (s > 0) & valid_t[:, sl, None] & valid_a[:, None, :]
        s = torch.where(after, s, torch.zeros_like(s))
        dr = dlt[:, sl, None]
        lam_i = torch.where(after, dr * psp_kernel(s, p.tau_mem_us, p.tau_syn_us), torch.zeros_like(s))
        lam_v = torch.where(after, dr * torch.exp(-s / p.tau_mem_us), torch.zeros_like(s))
        flat = nidx[:, sl, None] * n_in + src[:, None, :]
        d_w.index_add_(0, flat.reshape(-1), lam_i.reshape(-1).to(w.dtype))
        w_pair = w[nidx[:, sl, None], src[:, None, :]]
        g_a = g_a + (w_pair * (lam_i / p.tau_syn_us - lam_v)).sum(1)
    g_full = arrivals.new_zeros(arrivals.shape)
    g_full.scatter_add_(1, a_pos, torch.where(valid_a, g_a, torch.zeros_like(g_a)).to(g_full.dtype))
    return d_w.reshape(n, n_in), g_full


# --- autograd functions --------------------------------------------------------------------------
class LIFEventProp(torch.autograd.Function):
    """Spike times of a LIF population ``[B, n, m]`` as a function of its weights and the
    arrival times of its inputs; backward by EventProp. With ``observed`` (chip mode) the
    forward values are the given spike times and only the backward uses the model.

    The second output is the maximum of each membrane over the run ``[B, n]``: ``v_th`` for
    neurons that spike (no gradient), the exact maximum of the model's membrane for those that
    do not (gradient as for a leaky integrator); the third its time (no gradient).
    """

    @staticmethod
    def forward(ctx, weight, arrivals, source, p, observed):
        if observed is None:
            times, vmax, tmax = lif_spike_times(arrivals, source, weight, p, want_max=True)
        else:
            times = observed.detach().to(weight.dtype)
            spiked = torch.isfinite(times[..., 0])
            vmax, tmax = li_maximum(arrivals, source, weight, p._replace(spiking=False))
            vmax = torch.where(spiked, torch.full_like(vmax, p.v_th), vmax)
            tmax = torch.where(spiked, times[..., 0], tmax)
        ctx.p = p
        ctx.save_for_backward(weight, arrivals, source, times, tmax)
        ctx.mark_non_differentiable(tmax)
        return times, vmax, tmax

    @staticmethod
    def backward(ctx, g_times, g_vmax, g_tmax):
        weight, arrivals, source, times, tmax = ctx.saved_tensors
        p = ctx.p
        if g_times is None:
            g_times = torch.zeros_like(times)
        delta = spike_jumps(g_times, times, arrivals, source, weight, p)
        if g_vmax is not None:  # silent neurons: a pseudo-spike at the maximum (as for LI)
            silent = ~torch.isfinite(times[..., 0])
            g = torch.where(silent, g_vmax, torch.zeros_like(g_vmax))
            times = torch.cat([times, torch.where(silent, tmax, torch.full_like(tmax, INF))[..., None]], -1)
            delta = torch.cat([delta, g[..., None]], -1)
        d_w, g_a = adjoint_to_inputs(delta, times, arrivals, source, weight, p)
        return d_w, g_a.to(arrivals.dtype), None, None, None


class LIMaxEventProp(torch.autograd.Function):
    """Maximum over time of leaky integrators ``[B, n]`` and its time (no gradient).

    With ``observed = (v_max, t_max)`` (chip mode: from the CADC trace) the forward values are
    those; the backward uses the model's kernel at ``t_max``. With ``limits = (lo, hi)`` the
    gradient is zero where the model's membrane at ``t_max`` lies outside the readable range.
    """

    @staticmethod
    def forward(ctx, weight, arrivals, source, p, observed, limits):
        if observed is None:
            vmax, tmax = li_maximum(arrivals, source, weight, p)
            keep = None
        else:
            vmax, tmax = (x.detach().to(weight.dtype) for x in observed)
            keep = None
            if limits is not None:
                v_model = membrane(tmax[..., None], arrivals, source, weight, p)[..., 0]
                lo, hi = limits
                keep = (v_model >= lo) & (v_model <= hi)
        ctx.p = p
        ctx.keep = keep
        ctx.save_for_backward(weight, arrivals, source, tmax)
        ctx.mark_non_differentiable(tmax)
        return vmax, tmax

    @staticmethod
    def backward(ctx, g_vmax, g_tmax):
        weight, arrivals, source, tmax = ctx.saved_tensors
        p = ctx.p
        g = g_vmax if ctx.keep is None else torch.where(ctx.keep, g_vmax, torch.zeros_like(g_vmax))
        d_w, g_a = adjoint_to_inputs(g[..., None], tmax[..., None], arrivals, source, weight, p)
        return d_w, g_a.to(arrivals.dtype), None, None, None, None


def lif_events(weight, arrivals, source, p: EventPropParameters, observed=None, with_max: bool = False):
    """Differentiable spike times ``[B, n, m]`` (see :class:`LIFEventProp`); with ``with_max`` also
    ``(v_max, t_max)`` ``[B, n]``."""
    times, vmax, tmax = LIFEventProp.apply(weight, arrivals, source, p, observed)
    return (times, vmax, tmax) if with_max else times


def li_max_events(weight, arrivals, source, p: EventPropParameters, observed=None, limits=None):
    """Differentiable ``(v_max, t_max)`` ``[B, n]`` (see :class:`LIMaxEventProp`)."""
    return LIMaxEventProp.apply(weight, arrivals, source, p, observed, limits)


# --- helpers -------------------------------------------------------------------------------------
def dense_to_times(spikes: torch.Tensor, dt_us: float) -> torch.Tensor:
    """Spike tensor ``[time, batch, n]`` on the grid -> send times ``[batch, n, m]`` (``k dt`` for a
    spike at index ``k``; ``inf`` padded, ``m >= 1``)."""
    z = spikes.detach() > 0
    steps, batch, n = z.shape
    counts = z.sum(0)  # [B, n]
    m = max(1, int(counts.max()) if counts.numel() else 1)
    out = torch.full((batch, n, m), INF, dtype=spikes.dtype, device=spikes.device)
    k, b, i = torch.nonzero(z, as_tuple=True)  # ordered by time first
    if k.numel():
        key = b * n + i
        order = torch.sort(key, stable=True).indices  # per (b, i), still in time order
        key_sorted = key[order]
        first = torch.searchsorted(key_sorted, key_sorted, right=False)
        rank = torch.arange(key_sorted.numel(), device=key.device) - first
        out[b[order], i[order], rank] = k[order].to(spikes.dtype) * dt_us
    return out


def flatten_events(times: torch.Tensor, offset: int = 0):
    """``[B, n, m]`` spike times -> ``(times [B, n*m], source [B, n*m])`` with sources
    ``offset + neuron``."""
    batch, n, m = times.shape
    src = (torch.arange(n, device=times.device) + offset).repeat_interleave(m)
    return times.reshape(batch, n * m), src[None, :].expand(batch, n * m)


# --- references: time-stepped EventProp and the analytic first spike ------------------------------
def euler_first_spike(
    weight: torch.Tensor,
    input_times,
    p: EventPropParameters,
    dt_us: float,
):
    """Time-stepped EventProp for the first spike of independent LIF neurons (the numerical
    scheme of seed 003, Fig. 1): explicit Euler for the forward dynamics and, backwards in time,
    for the adjoint; inputs arrive at the grid point ``round(a / dt)``; the spike time is
    interpolated linearly inside the step where ``V`` crosses ``v_th``, and the adjoint starts
    there with ``lambda_V = -1 / Vdot-`` (loss ``L = t_first``).

    Parameters
    ----------
    weight : Tensor ``[N, n_in]``
        Weights of ``N`` independent neurons from ``n_in`` inputs [pu/us].
    input_times : sequence of float
        Arrival time [us] of each input (one spike each).
    p : EventPropParameters
    dt_us : float

    Returns
    -------
    ``(t_first [N], dt_first/dw [N, n_in])``; ``t_first = inf`` and zero gradient where the neuron
    does not spike before ``t_end``.
    """
    w = weight.detach().to(torch.float64)
    n, n_in = w.shape
    steps = int(math.ceil(p.t_end_us / dt_us - 1e-9))
    by_step: dict[int, list] = {}
    for j, t in enumerate(input_times):
        by_step.setdefault(int(round(float(t) / dt_us)), []).append(j)
    v = torch.full((n,), p.v_leak, dtype=torch.float64)
    i = torch.zeros(n, dtype=torch.float64)
    t_first = torch.full((n,), INF, dtype=torch.float64)
    k_spike = torch.full((n,), -1, dtype=torch.long)  # the step in which V crosses
    frac = torch.zeros(n, dtype=torch.float64)
    i_spike = torch.zeros(n, dtype=torch.float64)
    for k in range(steps):
        for j in by_step.get(k, ()):
            i = i + w[:, j]
        v_new = v + dt_us * (-(v - p.v_leak) / p.tau_mem_us + i)
        new = (v_new >= p.v_th) & (k_spike < 0)
        if bool(new.any()):
            f = ((p.v_th - v) / (v_new - v))[new]
            frac[new] = f
            k_spike[new] = k
            t_first[new] = (k + f) * dt_us
            i_spike[new] = i[new] * (1.0 - f * dt_us / p.tau_syn_us)
        i = i - dt_us * i / p.tau_syn_us
        v = torch.where(k_spike >= 0, torch.full_like(v, p.v_reset), v_new)
        if bool((k_spike >= 0).all()):
            break
    slope = (-(p.v_th - p.v_leak) / p.tau_mem_us + i_spike).clamp(min=p.min_slope)
    lam_v = torch.zeros(n, dtype=torch.float64)
    lam_i = torch.zeros(n, dtype=torch.float64)
    grad = torch.zeros((n, n_in), dtype=torch.float64)
    last = int(k_spike.max())
    for k in range(last, -1, -1):
        start = k_spike == k
        if bool(start.any()):  # from t_first back to t_k: a partial Euler step
            h = frac * dt_us
            lv = -1.0 / slope
            lam_v = torch.where(start, lv * (1.0 - h / p.tau_mem_us), lam_v)
            lam_i = torch.where(start, h * lv, lam_i)
        for j in by_step.get(k, ()):
            grad[:, j] = lam_i
        lam_v, lam_i = (
            lam_v - dt_us * lam_v / p.tau_mem_us,
            lam_i + dt_us * (-lam_i / p.tau_syn_us + lam_v),
        )
    return t_first.to(weight.dtype), grad.to(weight.dtype)


def lambert_w0(x: torch.Tensor) -> torch.Tensor:
    """Principal branch of the Lambert W function for ``x >= -1/e`` (smaller values are
    clamped): a series start near the branch point, then Halley's iteration (float64)."""
    x = x.to(torch.float64).clamp(min=-1.0 / math.e)
    p = torch.sqrt((2.0 * (math.e * x + 1.0)).clamp(min=0.0))
    near = -1.0 + p * (1.0 + p * (-1.0 / 3.0 + p * 11.0 / 72.0))  # branch-point series
    small = x * (1.0 - x * (1.0 - 1.5 * x))  # around 0
    big = torch.log1p(x.clamp(min=0.0))
    big = big - torch.log1p(big)
    w = torch.where(x < -0.2, near, torch.where(x < 0.5, small, big))
    for _ in range(12):
        ew = torch.exp(w)
        f = w * ew - x
        wp1 = w + 1.0
        denom = ew * wp1 - (w + 2.0) * f / (2.0 * torch.where(wp1.abs() > 1e-300, wp1, torch.ones_like(wp1)))
        ok = (denom != 0) & (f.abs() > 4e-16 * (x.abs() + ew * w.abs()))
        dw = torch.where(ok, f / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(f))
        w = torch.where(wp1 > 0, w - dw, w)  # stays at -1 at the branch point
        if bool((dw.abs() <= 1e-15 * (1.0 + w.abs())).all()):
            break
    return w


def first_spike_time_analytic(weights, times, tau: float, v_th: float, v_leak: float = 0.0):
    """First spike time for ``tau_mem = tau_syn = tau`` (REFERENCES "Analytic checks"):
    ``t* = tau [b/a - W0(-(theta/a) exp(b/a))]`` with ``a = sum_i w_i exp(t_i/tau)`` and
    ``b = sum_i w_i (t_i/tau) exp(t_i/tau)`` in the kernel ``(s/tau) exp(-s/tau)`` (our weight
    times ``tau``), assuming all inputs arrive before ``t*``; and ``dt*/dw_i = -K(t* - t_i) /
    Vdot(t*)``. ``weights [N, n_in]``, ``times [n_in]``; returns ``(t* [N], dt*/dw [N, n_in])``,
    ``inf`` / NaN-free zeros where ``V`` never reaches ``v_th``.

    >>> t, g = first_spike_time_analytic(torch.tensor([[0.5]]), torch.tensor([1.0]), 6.0, 1.0)
    >>> round(float(t), 6), round(float(g), 6)
    (4.714368, -19.50113)
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    ti = torch.as_tensor(times, dtype=torch.float64)
    theta = v_th - v_leak
    ref = ti.max()  # shift for stability: exp((t_i - ref)/tau)
    e = torch.exp((ti - ref) / tau)
    a = (w * tau * e).sum(-1)  # weight in the (s/tau) exp(-s/tau) kernel is w tau
    b = (w * tau * (ti - ref) / tau * e).sum(-1)
    ok = a > 0
    a_safe = torch.where(ok, a, torch.ones_like(a))
    arg = -(theta / a_safe) * torch.exp(b / a_safe)
    ok = ok & (arg >= -1.0 / math.e)
    wv = lambert_w0(torch.where(ok, arg, torch.zeros_like(arg)))
    t = ref + tau * (b / a_safe - wv)
    t = torch.where(ok, t, torch.full_like(t, INF))
    s = (t[:, None] - ti[None, :]).clamp(min=0.0)
    s = torch.where(torch.isfinite(s), s, torch.zeros_like(s))
    kern = s * torch.exp(-s / tau)
    vdot = -theta / tau + (w * torch.exp(-s / tau) * (t[:, None] > ti[None, :])).sum(-1)
    grad = torch.where(ok[:, None], -kern / torch.where(ok, vdot, torch.ones_like(vdot))[:, None], 0.0)
    return t, grad
