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
    """Whether :func:`scan` applies: LIF or LI, no refractory time, no rails, start at rest,
    tensor parameters without gradient and of the input's dtype and device."""
    from .neurons import LIFParameters, LIParameters

    if type(p) not in (LIFParameters, LIParameters) or state is not None:
        return False
    if prop.ref_steps is not None or p.v_min != -INF or p.v_max != INF:
        return False
    for x in p:  # tensor parameters: no gradient, and no type promotion of the result
        if torch.is_tensor(x) and (
            x.requires_grad or x.dtype != input_exc.dtype or x.device != input_exc.device
        ):
            return False
    return input_inh is None or input_inh.shape == input_exc.shape


class NeuronScan(torch.autograd.Function):
    """LIF (``spiking=True``) or LI time loop; see the module docstring."""

    @staticmethod
    def forward(ctx, input_exc, input_inh, p, prop, spiking: bool, want_fraction: bool):
        from .neurons import crossing_fraction

        steps, batch, n = input_exc.shape
        like = input_exc

        def c(x):  # Python numbers as 0-dim tensors (cheaper per op, the same float arithmetic)
            return x if torch.is_tensor(x) else torch.tensor(x, dtype=like.dtype, device=like.device)

        v_leak, mem, psp_exc, syn_exc = c(p.v_leak), prop.mem, prop.psp_exc, prop.syn_exc
        inhibitory = input_inh is not None
        # outputs are written in place into [time, batch, n] buffers (no stacking)
        v_rec, c_rec = like.new_empty((steps, batch, n)), like.new_empty((steps, batch, n))
        if spiking:
            v_th, v_reset = c(p.v_th), c(p.v_reset)
            z_rec, x_rec = like.new_empty((steps, batch, n)), like.new_empty((steps, batch, n))
        zeros = like.new_zeros((batch, n))
        v_rec[0] = zeros + v_leak
        i_exc = zeros
        i_inh = zeros if inhibitory else None
        exc = input_exc.unbind(0)
        inh = input_inh.unbind(0) if inhibitory else None
        fs = []
        v_end = None
        for k in range(steps):
            v = v_rec[k]
            if inhibitory:
                i_exc = i_exc + exc[k]
                i_inh = i_inh + inh[k]
                torch.sub(i_exc, i_inh, out=c_rec[k])
            else:
                i_exc = torch.add(i_exc, exc[k], out=c_rec[k])
            if k + 1 < steps:
                target = v_rec[k + 1]
            else:
                target = v_end = like.new_empty((batch, n))
            # v_new = v_leak + (v - v_leak) mem + i_exc psp_exc - i_inh psp_inh + bias
            u = like.new_empty((batch, n)) if spiking else target
            torch.sub(v, v_leak, out=u).mul_(mem).add_(v_leak).add_(i_exc * psp_exc)
            if inhibitory:
                u.sub_(i_inh * prop.psp_inh)
            if prop.bias is not None:
                u.add_(prop.bias)
            if spiking:
                x = torch.sub(u, v_th, out=x_rec[k])
                z = torch.ge(x, 0, out=z_rec[k])
                if want_fraction:
                    fs.append(crossing_fraction(v, u, p.v_th))
                # v_after = v_new - z (v_new - v_reset)
                torch.sub(u, (u - v_reset).mul_(z), out=target)
            i_exc = i_exc * syn_exc
            if inhibitory:
                i_inh = i_inh * prop.syn_inh
        if v_end is None:  # no steps
            v_end = zeros + v_leak
        frac = torch.stack(fs) if spiking and want_fraction else None
        ctx.spiking, ctx.steps, ctx.inhibitory, ctx.prop = spiking, steps, inhibitory, prop
        ctx.method, ctx.alpha = (p.method, p.alpha) if spiking else (None, None)
        if spiking:
            ctx.save_for_backward(z_rec, x_rec)
            if frac is not None:
                ctx.mark_non_differentiable(frac)
        ctx.set_materialize_grads(False)
        return (z_rec if spiking else None), v_rec, c_rec, frac, v_end, i_exc, i_inh

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
        shape = ref.shape[-2:]
        zero = ref.new_zeros(shape)
        g_v = zero if g_v is None else g_v
        g_ie = zero if g_ie is None else g_ie
        g_ii = zero if (g_ii is None or not ctx.inhibitory) else g_ii
        g_exc = ref.new_empty((steps, *shape))
        g_inh = ref.new_empty((steps, *shape)) if ctx.inhibitory else None
        for k in range(steps - 1, -1, -1):
            g_u = g_v if keep is None else g_v * keep[k]
            if drive is not None:
                g_u = g_u + drive[k]
            g_ie = torch.mul(g_ie, prop.syn_exc, out=g_exc[k]).addcmul_(g_u, prop.psp_exc)
            if g_crec is not None:
                g_ie.add_(g_crec[k])
            if g_inh is not None:
                g_ii = torch.mul(g_ii, prop.syn_inh, out=g_inh[k]).addcmul_(g_u, prop.psp_inh, value=-1.0)
                if g_crec is not None:
                    g_ii.sub_(g_crec[k])
            g_v = g_u * prop.mem if g_vrec is None else torch.addcmul(g_vrec[k], g_u, prop.mem)
        return g_exc, g_inh, None, None, None, None


def scan(p, prop, input_exc, input_inh, fraction: bool):
    """LIF / LI neurons over ``input_exc.shape[0]`` steps from rest; returns
    ``(spikes, v, current, fraction, (v_end, i_exc_end, i_inh_end))``."""
    from .neurons import LIFParameters

    spiking = type(p) is LIFParameters
    z, v, c, f, v_end, ie_end, ii_end = NeuronScan.apply(input_exc, input_inh, p, prop, spiking, fraction)
    return z, v, c, f, (v_end, ie_end, ii_end)
