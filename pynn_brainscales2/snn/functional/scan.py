"""The time loop of LIF and LI neurons as one autograd function (fast path of ``integrate``).

:func:`~.neurons.integrate` loops over time with :func:`~.neurons.lif_step` /
:func:`~.neurons.li_step`; recorded by autograd, every step leaves about fifteen nodes in
the graph, and walking them back costs more than the forward pass. For the common case
(LIF or LI neurons, no refractory time, no supply rails, parameters without gradient,
starting at rest) :class:`NeuronScan` runs the same steps under ``no_grad``, with the
same expressions in the same order (so the forward values are bit for bit those of the
step functions), and integrates the adjoint of the linear step in one reverse loop.

Backward, with ``u_n`` the membrane after the linear step of step ``n`` (before the
reset), ``z_n = H(u_n - v_th)`` and the reset passing no gradient
(``dv_{n+1}/du_n = 1 - z_n``)::

    g_u   = g_v (1 - z_n) + g_z_n * surrogate'(u_n - v_th)
    g_ie  = g_ie * syn_exc + g_u * psp_exc + g_current_n      -> d loss / d input_exc[n]
    g_ii  = g_ii * syn_inh - g_u * psp_inh - g_current_n      -> d loss / d input_inh[n]
    g_v   = g_u * mem + g_v_n

(``z = 0`` for LI neurons), which is what autograd computes through the step functions.
"""

from __future__ import annotations

import torch

from .surrogate import SURROGATE_GRADIENTS

__all__ = ["NeuronScan", "can_scan", "scan"]

INF = float("inf")


def can_scan(p, prop, state, input_exc, input_inh) -> bool:
    """Whether :func:`scan` applies: LIF or LI, no refractory time, no rails, no parameter
    gradient, start at rest."""
    from .neurons import LIFParameters, LIParameters

    if type(p) not in (LIFParameters, LIParameters) or state is not None:
        return False
    if prop.ref_steps is not None or p.v_min != -INF or p.v_max != INF:
        return False
    if any(torch.is_tensor(x) and x.requires_grad for x in p):
        return False
    return input_inh is None or input_inh.shape == input_exc.shape


class NeuronScan(torch.autograd.Function):
    """LIF (``spiking=True``) or LI time loop; see the module docstring."""

    @staticmethod
    def forward(ctx, input_exc, input_inh, p, prop, spiking: bool, want_fraction: bool):
        from .neurons import crossing_fraction

        steps, batch, n = input_exc.shape
        zeros = input_exc.new_zeros((batch, n))
        v = zeros + torch.as_tensor(p.v_leak, dtype=input_exc.dtype, device=input_exc.device)
        i_exc = zeros
        i_inh = zeros if input_inh is not None else None
        exc = input_exc.unbind(0)
        inh = input_inh.unbind(0) if input_inh is not None else None
        zs, xs, vs, cs, fs = [], [], [], [], []
        for k in range(steps):
            i_exc = i_exc + exc[k]
            if i_inh is not None:
                i_inh = i_inh + inh[k]
            v_new = p.v_leak + (v - p.v_leak) * prop.mem + i_exc * prop.psp_exc
            if i_inh is not None:
                v_new = v_new - i_inh * prop.psp_inh
            if prop.bias is not None:
                v_new = v_new + prop.bias
            vs.append(v)
            cs.append(i_exc if i_inh is None else i_exc - i_inh)
            if spiking:
                x = v_new - p.v_th
                z = (x >= 0).to(x.dtype)
                if want_fraction:
                    fs.append(crossing_fraction(v, v_new, p.v_th))
                v = v_new - z * (v_new - p.v_reset)
                zs.append(z)
                xs.append(x)
            else:
                v = v_new
            i_exc = i_exc * prop.syn_exc
            if i_inh is not None:
                i_inh = i_inh * prop.syn_inh
        v_rec, c_rec = torch.stack(vs), torch.stack(cs)
        z_rec = torch.stack(zs) if spiking else None
        frac = torch.stack(fs) if spiking and want_fraction else None
        ctx.spiking, ctx.steps = spiking, steps
        ctx.inhibitory = input_inh is not None
        ctx.prop = prop
        ctx.method, ctx.alpha = (p.method, p.alpha) if spiking else (None, None)
        if spiking:
            ctx.save_for_backward(z_rec, torch.stack(xs))
            ctx.mark_non_differentiable(*(t for t in (frac,) if t is not None))
        ctx.set_materialize_grads(False)
        return z_rec, v_rec, c_rec, frac, v, i_exc, i_inh

    @staticmethod
    def backward(ctx, g_z, g_vrec, g_crec, g_frac, g_v, g_ie, g_ii):
        prop = ctx.prop
        ref = next(g for g in (g_z, g_vrec, g_crec, g_v, g_ie, g_ii) if g is not None)
        steps = ctx.steps
        keep = drive = None
        if ctx.spiking:
            z, x = ctx.saved_tensors
            keep = 1.0 - z  # the reset passes no gradient
            if g_z is not None:
                drive = SURROGATE_GRADIENTS[ctx.method](g_z, x, ctx.alpha)
        zero = ref.new_zeros(ref.shape[-2:])
        g_v = zero if g_v is None else g_v
        g_ie = zero if g_ie is None else g_ie
        g_ii = zero if (g_ii is None or not ctx.inhibitory) else g_ii
        g_exc = [None] * steps
        g_inh = [None] * steps if ctx.inhibitory else None
        for k in range(steps - 1, -1, -1):
            g_u = g_v if keep is None else g_v * keep[k]
            if drive is not None:
                g_u = g_u + drive[k]
            g_ie = g_ie * prop.syn_exc + g_u * prop.psp_exc
            if g_crec is not None:
                g_ie = g_ie + g_crec[k]
            g_exc[k] = g_ie
            if g_inh is not None:
                g_ii = g_ii * prop.syn_inh - g_u * prop.psp_inh
                if g_crec is not None:
                    g_ii = g_ii - g_crec[k]
                g_inh[k] = g_ii
            g_v = g_u * prop.mem
            if g_vrec is not None:
                g_v = g_v + g_vrec[k]
        return (
            torch.stack(g_exc),
            torch.stack(g_inh) if g_inh is not None else None,
            None,
            None,
            None,
            None,
        )


def scan(p, prop, input_exc, input_inh, fraction: bool):
    """LIF / LI neurons over ``input_exc.shape[0]`` steps from rest; returns
    ``(spikes, v, current, fraction, (v_end, i_exc_end, i_inh_end))``."""
    from .neurons import LIFParameters

    spiking = type(p) is LIFParameters
    z, v, c, f, v_end, ie_end, ii_end = NeuronScan.apply(input_exc, input_inh, p, prop, spiking, fraction)
    return z, v, c, f, (v_end, ie_end, ii_end)
