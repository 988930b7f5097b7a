"""Neuron dynamics of the chip in torch: LIF, LI and AdEx with exponential synaptic currents.

Units: time in microseconds of hardware time (``_us``); potentials in one freely chosen
unit ("pu": volts to compare with :mod:`cysim`, or a normalised scale with leak 0 and
threshold 1 for training); currents in pu/us (the rate of change they cause, like the
chip's ``I / C_mem``); weights in pu/us per spike. The equations are those of
:mod:`cysim.engine`, per neuron::

    dV/dt   = -(V - v_leak)/tau_mem + I_exc - I_inh + i_bias
              + delta_t/tau_mem exp((V - v_exp)/delta_t) - w      (AdEx only)
    dI_x/dt = -I_x / tau_syn_x,   I_x += sum of arriving weights   (x = exc, inh)
    tau_w dw/dt = a (V - v_leak) - w,   w += b at every spike        (AdEx only)
    V >= v_th (LIF, AdEx): spike; V = v_reset for round(refractory / dt) steps

They are integrated on the fixed grid ``t_n = n dt`` in the order of the chip's engine
(:mod:`cysim.reference`). Step ``n``:

1. events arriving at step ``n`` are added to ``I_exc``, ``I_inh``; the recorded membrane
   and current are the values at ``t_n`` (the CADC reads the same membrane);
2. ``V`` advances by the exact solution of the linear part over ``dt`` (leak, decaying
   currents, bias); the AdEx exponential term and adaptation current are held constant
   over the step (the exponent is capped at 30 and ignored below -40);
3. ``V`` is clamped to ``[v_min, v_max]`` (the chip's supply rails; unbounded by default);
4. a refractory neuron is held at ``v_reset`` and counts its refractory steps down;
5. ``w`` relaxes with the old ``V``; the synaptic currents decay over the step;
6. a neuron that is not refractory and has ``V >= v_th`` spikes: the spike lies in step
   ``n`` at the crossing fraction ``(v_th - V_n) / (V_{n+1} - V_n)`` (linear interpolation),
   ``V = v_reset``, the refractory counter restarts, ``w += b``.

The spike is ``heaviside(V_{n+1} - v_th)`` with a surrogate gradient
(:mod:`.surrogate`); the reset itself passes no gradient (``dV_after/dV = 1 - z``). Only the exact linear propagation makes the result independent of
``dt`` up to the position of spikes and events on the grid.

:func:`integrate` runs LIF and LI neurons that start at rest, without refractory time or
rails, through the fused loop of :mod:`.scan` (the same expressions in the same order,
one autograd node with a hand-written adjoint instead of ~15 nodes per step).

The inhibitory channel is optional: a neuron whose two synaptic time constants are equal
can take signed input on the excitatory channel alone (the sum is the same), which
saves work. Parameters may be Python floats or tensors broadcasting against
``[batch, neurons]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .scan import can_scan, scan
from .surrogate import check_method, heaviside

__all__ = [
    "LIFParameters",
    "LIFState",
    "LIParameters",
    "LIState",
    "AdExParameters",
    "AdExState",
    "Propagators",
    "Trace",
    "propagators",
    "crossing_fraction",
    "lif_step",
    "li_step",
    "adex_step",
    "integrate",
    "initial_state",
]

INF = math.inf


class LIFParameters(NamedTuple):
    """Leaky integrate-and-fire neuron (current-based, exponential synapses)."""

    tau_mem_us: float | torch.Tensor = 6.0  # membrane time constant [us]
    tau_syn_exc_us: float | torch.Tensor = 5.0  # excitatory synaptic time constant [us]
    tau_syn_inh_us: float | torch.Tensor = 5.0  # inhibitory synaptic time constant [us]
    v_leak: float | torch.Tensor = 0.0  # leak potential [pu]
    v_reset: float | torch.Tensor = 0.0  # reset potential [pu]
    v_th: float | torch.Tensor = 1.0  # threshold [pu]
    refractory_us: float | torch.Tensor = 0.0  # refractory time [us]
    i_bias: float | torch.Tensor = 0.0  # constant current [pu/us]
    v_min: float = -INF  # lower clamp of the membrane [pu] (chip: 0 V)
    v_max: float = INF  # upper clamp of the membrane [pu] (chip: 1.2 V)
    method: str = "superspike"  # surrogate gradient, see surrogate.SURROGATES
    alpha: float = 50.0  # sharpness of the surrogate [1/pu]


class LIFState(NamedTuple):
    """State of LIF neurons ``[batch, neurons]``; ``i_inh`` is None without inhibitory input."""

    v: torch.Tensor  # membrane [pu]
    i_exc: torch.Tensor  # excitatory current [pu/us]
    i_inh: torch.Tensor | None  # inhibitory current [pu/us]
    ref: torch.Tensor | None  # remaining refractory steps (None without refractory time)


class LIParameters(NamedTuple):
    """Leaky integrator: a LIF neuron that never spikes (read-out layers)."""

    tau_mem_us: float | torch.Tensor = 6.0
    tau_syn_exc_us: float | torch.Tensor = 5.0
    tau_syn_inh_us: float | torch.Tensor = 5.0
    v_leak: float | torch.Tensor = 0.0
    i_bias: float | torch.Tensor = 0.0
    v_min: float = -INF
    v_max: float = INF


class LIState(NamedTuple):
    """State of LI neurons ``[batch, neurons]``."""

    v: torch.Tensor
    i_exc: torch.Tensor
    i_inh: torch.Tensor | None


class AdExParameters(NamedTuple):
    """Adaptive exponential integrate-and-fire neuron (current-based)."""

    tau_mem_us: float | torch.Tensor = 6.0
    tau_syn_exc_us: float | torch.Tensor = 5.0
    tau_syn_inh_us: float | torch.Tensor = 5.0
    v_leak: float | torch.Tensor = 0.0
    v_reset: float | torch.Tensor = 0.0
    v_th: float | torch.Tensor = 1.0
    refractory_us: float | torch.Tensor = 0.0
    i_bias: float | torch.Tensor = 0.0
    v_exp: float | torch.Tensor = 0.8  # exponential term threshold V_T [pu]
    delta_t: float | torch.Tensor = 0.05  # exponential slope factor [pu]
    a: float | torch.Tensor = 0.0  # subthreshold adaptation [1/us]
    b: float | torch.Tensor = 0.0  # spike-triggered adaptation [pu/us]
    tau_w_us: float | torch.Tensor = 100.0  # adaptation time constant [us]
    v_min: float = -INF
    v_max: float = INF
    method: str = "superspike"
    alpha: float = 50.0


class AdExState(NamedTuple):
    """State of AdEx neurons ``[batch, neurons]``."""

    v: torch.Tensor
    i_exc: torch.Tensor
    i_inh: torch.Tensor | None
    w: torch.Tensor  # adaptation current [pu/us]
    ref: torch.Tensor | None


class Propagators(NamedTuple):
    """Exact one-step propagators of the linear part for a grid ``dt`` [us]."""

    dt_us: float
    mem: torch.Tensor  # exp(-dt/tau_mem)
    const: torch.Tensor  # response of V to a unit constant current: tau_mem (1 - mem)
    psp_exc: torch.Tensor  # response of V to a unit excitatory current decaying over the step
    psp_inh: torch.Tensor
    syn_exc: torch.Tensor  # exp(-dt/tau_syn_exc)
    syn_inh: torch.Tensor
    bias: torch.Tensor | None  # i_bias * const, None when there is no bias
    ref_steps: torch.Tensor | None  # round(refractory / dt), None when zero everywhere
    w: torch.Tensor | None  # exp(-dt/tau_w) (AdEx)


class Trace(NamedTuple):
    """Result of :func:`integrate`, all ``[time, batch, neurons]``.

    ``v`` and ``current`` are the values at the grid points ``t_n`` (after the arrivals of
    step ``n``), ``spikes`` the spikes within step ``n`` (None for LI), ``fraction`` their
    crossing fractions (None unless asked for).
    """

    spikes: torch.Tensor | None
    v: torch.Tensor
    current: torch.Tensor
    fraction: torch.Tensor | None
    state: tuple


def _t(x, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _psp(h: float, tau_m: torch.Tensor, tau_s: torch.Tensor) -> torch.Tensor:
    """``int_0^h exp(-(h - s)/tau_m) exp(-s/tau_s) ds``, stable for tau_m ~ tau_s."""
    x = h * (1.0 / tau_m - 1.0 / tau_s)
    small = x.abs() < 1e-8
    x_safe = torch.where(small, torch.ones_like(x), x)
    ratio = torch.where(small, 1.0 + x / 2, torch.expm1(x_safe) / x_safe)
    return h * torch.exp(-h / tau_m) * ratio


def propagators(p, dt_us: float, like: torch.Tensor) -> Propagators:
    """Propagators of the parameters ``p`` for steps of ``dt_us`` [us].

    They are computed in float64 and cast to the dtype and device of ``like``.
    """
    f64 = torch.zeros((), dtype=torch.float64, device=like.device)
    tau_m, tau_e, tau_i = (_t(getattr(p, k), f64) for k in ("tau_mem_us", "tau_syn_exc_us", "tau_syn_inh_us"))
    h = float(dt_us)
    mem = torch.exp(-h / tau_m)
    const = -tau_m * torch.expm1(-h / tau_m)
    bias = None
    if torch.is_tensor(p.i_bias) or p.i_bias != 0.0:
        bias = _t(p.i_bias, f64) * const
    ref_steps = None
    refractory = getattr(p, "refractory_us", 0.0)
    if torch.is_tensor(refractory) or refractory != 0.0:
        ref_steps = torch.round(_t(refractory, f64) / h)
    w = torch.exp(-h / _t(p.tau_w_us, f64)) if hasattr(p, "tau_w_us") else None

    def cast(x):
        return None if x is None else x.to(dtype=like.dtype)

    return Propagators(
        h,
        cast(mem),
        cast(const),
        cast(_psp(h, tau_m, tau_e)),
        cast(_psp(h, tau_m, tau_i)),
        cast(torch.exp(-h / tau_e)),
        cast(torch.exp(-h / tau_i)),
        cast(bias),
        cast(ref_steps),
        cast(w),
    )


def initial_state(p, batch: int, n: int, like: torch.Tensor, inhibitory: bool = True):
    """Neurons at rest (``V = v_leak``, no current, not refractory), ``[batch, n]``."""
    zeros = like.new_zeros((batch, n))
    v = zeros + _t(p.v_leak, like)
    i_inh = zeros if inhibitory else None
    if isinstance(p, LIParameters):
        return LIState(v, zeros, i_inh)
    ref = zeros if (torch.is_tensor(p.refractory_us) or p.refractory_us != 0.0) else None
    if isinstance(p, AdExParameters):
        return AdExState(v, zeros, i_inh, zeros, ref)
    return LIFState(v, zeros, i_inh, ref)


def crossing_fraction(v: torch.Tensor, v_new: torch.Tensor, v_th) -> torch.Tensor:
    """Where in the step ``V`` crossed ``v_th``, by linear interpolation (no gradient)."""
    with torch.no_grad():
        rise = v_new - v
        up = rise > 0
        frac = torch.where(up, (v_th - v) / torch.where(up, rise, torch.ones_like(rise)), 0.0)
        return frac.clamp(min=0.0)


def _arrive(state, input_exc, input_inh):
    i_exc = state.i_exc if input_exc is None else state.i_exc + input_exc
    i_inh = state.i_inh
    if input_inh is not None:
        i_inh = input_inh if i_inh is None else i_inh + input_inh
    return i_exc, i_inh


def _linear(p, prop: Propagators, v, i_exc, i_inh, extra=None):
    """Exact linear step of the membrane (plus ``extra`` current held over the step)."""
    v_new = p.v_leak + (v - p.v_leak) * prop.mem + i_exc * prop.psp_exc
    if i_inh is not None:
        v_new = v_new - i_inh * prop.psp_inh
    if prop.bias is not None:
        v_new = v_new + prop.bias
    if extra is not None:
        v_new = v_new + extra * prop.const
    if p.v_min != -INF or p.v_max != INF:
        v_new = v_new.clamp(p.v_min, p.v_max)
    return v_new


def _current(i_exc, i_inh):
    return i_exc if i_inh is None else i_exc - i_inh


def _spike(p, prop: Propagators, v, v_new, ref, want_fraction: bool):
    """Refractory clamp, threshold, reset: returns ``(z, v_after, ref, fraction, refractory)``."""
    refractory = None
    if ref is not None:
        refractory = ref > 0
        ref = ref - refractory.to(ref.dtype)
        v_new = torch.where(refractory, _t(p.v_reset, v_new), v_new)
    z = heaviside(v_new - p.v_th, p.method, p.alpha)
    if refractory is not None:
        z = z * (~refractory).to(z.dtype)
    frac = crossing_fraction(v, v_new, p.v_th) if want_fraction else None
    # the reset does not carry gradient (its surrogate term would cancel the membrane's
    # gradient just below threshold, Zenke & Vogels 2021)
    v_after = v_new - z.detach() * (v_new - p.v_reset)
    if ref is not None:
        ref = torch.where(z > 0, prop.ref_steps.expand_as(ref), ref)
    return z, v_after, ref, frac


def lif_step(state: LIFState, input_exc, input_inh, p: LIFParameters, prop: Propagators, fraction=False):
    """One grid step of LIF neurons.

    Parameters
    ----------
    state : LIFState
        State at ``t_n`` before the arrivals of step ``n``.
    input_exc, input_inh : Tensor or None
        Weights arriving at step ``n`` ``[batch, neurons]`` [pu/us].
    p : LIFParameters
    prop : Propagators
        From :func:`propagators` for ``p``.
    fraction : bool
        Also return the crossing fractions of the spikes.

    Returns
    -------
    (spikes, v_n, current_n, fraction), new_state
    """
    i_exc, i_inh = _arrive(state, input_exc, input_inh)
    v = state.v
    v_new = _linear(p, prop, v, i_exc, i_inh)
    z, v_after, ref, frac = _spike(p, prop, v, v_new, state.ref, fraction)
    current = _current(i_exc, i_inh)
    i_exc = i_exc * prop.syn_exc
    i_inh = None if i_inh is None else i_inh * prop.syn_inh
    return (z, v, current, frac), LIFState(v_after, i_exc, i_inh, ref)


def li_step(state: LIState, input_exc, input_inh, p: LIParameters, prop: Propagators, fraction=False):
    """One grid step of LI neurons; returns ``(None, v_n, current_n, None), new_state``."""
    i_exc, i_inh = _arrive(state, input_exc, input_inh)
    v_new = _linear(p, prop, state.v, i_exc, i_inh)
    current = _current(i_exc, i_inh)
    i_inh_next = None if i_inh is None else i_inh * prop.syn_inh
    return (None, state.v, current, None), LIState(v_new, i_exc * prop.syn_exc, i_inh_next)


def adex_step(state: AdExState, input_exc, input_inh, p: AdExParameters, prop: Propagators, fraction=False):
    """One grid step of AdEx neurons (exponential Euler for the non-linear terms)."""
    i_exc, i_inh = _arrive(state, input_exc, input_inh)
    v, w = state.v, state.w
    arg = ((v - p.v_exp) / p.delta_t).clamp(max=30.0)
    i_exp = torch.where(arg > -40.0, (p.delta_t / p.tau_mem_us) * torch.exp(arg), 0.0)
    v_new = _linear(p, prop, v, i_exc, i_inh, extra=i_exp - w)
    z, v_after, ref, frac = _spike(p, prop, v, v_new, state.ref, fraction)
    w = w * prop.w + p.a * (v - p.v_leak) * (1.0 - prop.w) + z * p.b
    current = _current(i_exc, i_inh)
    i_exc = i_exc * prop.syn_exc
    i_inh = None if i_inh is None else i_inh * prop.syn_inh
    return (z, v, current, frac), AdExState(v_after, i_exc, i_inh, w, ref)


_STEPS = {LIFParameters: lif_step, LIParameters: li_step, AdExParameters: adex_step}


def step_function(p):
    """The step function for a parameter tuple (LIF, LI or AdEx)."""
    return _STEPS[type(p)]


def integrate(
    p,
    dt_us: float,
    input_exc: torch.Tensor,
    input_inh: torch.Tensor | None = None,
    state=None,
    fraction: bool = False,
    fast: bool = True,
) -> Trace:
    """Simulate neurons over ``input_exc.shape[0]`` grid steps.

    Parameters
    ----------
    p : LIFParameters, LIParameters or AdExParameters
        Neuron parameters (the type selects the model).
    dt_us : float
        Grid step [us].
    input_exc, input_inh : Tensor
        Weights arriving at each step ``[time, batch, neurons]`` [pu/us]; ``input_inh``
        (added as inhibition, so non-negative on the chip) may be None.
    state : optional
        Initial state (default: :func:`initial_state`).
    fraction : bool
        Also return crossing fractions of the spikes.
    fast : bool
        Use the fused time loop of :mod:`.scan` where it applies (LIF or LI from rest,
        no refractory time, no rails, no parameter gradient): the same values, a cheaper
        backward pass. False always loops over the step functions.

    Examples
    --------
    >>> import torch
    >>> from pynn_brainscales2.snn.functional import LIFParameters, integrate
    >>> x = torch.zeros(100, 1, 1)
    >>> x[10] = 0.4  # a weight of 0.4 pu/us arriving at step 10: PSP peak ~2 w
    >>> out = integrate(LIFParameters(), 0.1, x)
    >>> int(out.spikes.sum()), round(float(out.v.max()), 3)
    (0, 0.804)
    >>> x[10] = 0.6
    >>> int(integrate(LIFParameters(), 0.1, x).spikes.sum())
    1
    """
    if hasattr(p, "method"):
        check_method(p.method)
    steps, batch, n = input_exc.shape
    prop = propagators(p, dt_us, input_exc)
    if fast and can_scan(p, prop, state, input_exc, input_inh):
        spikes, v, current, frac, (v_end, i_exc, i_inh) = scan(p, prop, input_exc, input_inh, fraction)
        if isinstance(p, LIParameters):
            return Trace(None, v, current, None, LIState(v_end, i_exc, i_inh))
        return Trace(spikes, v, current, frac, LIFState(v_end, i_exc, i_inh, None))
    if state is None:
        state = initial_state(p, batch, n, input_exc, inhibitory=input_inh is not None)
    step = step_function(p)
    zs, vs, cs, fs = [], [], [], []
    # unbind, not indexing: the backward of x[k] would fill a full-size zero tensor per step
    exc = input_exc.unbind(0)
    inh = [None] * steps if input_inh is None else input_inh.unbind(0)
    for k in range(steps):
        (z, v, c, f), state = step(state, exc[k], inh[k], p, prop, fraction)
        zs.append(z)
        vs.append(v)
        cs.append(c)
        fs.append(f)
    spikes = None if zs[0] is None else torch.stack(zs)
    frac = torch.stack(fs) if fraction and fs[0] is not None else None
    return Trace(spikes, torch.stack(vs), torch.stack(cs), frac, state)
