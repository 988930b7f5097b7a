"""Surrogate spike functions: a Heaviside step forward, a smooth pseudo-derivative backward.

Each surrogate is one :class:`torch.autograd.Function`. The forward pass is the exact
threshold comparison of the chip, ``z = 1 if x >= 0 else 0`` with ``x = V - V_th``; the
backward pass replaces the Dirac delta ``dz/dx`` by a bump of height 1 at ``x = 0`` whose
width is set by the sharpness ``alpha`` [1 / potential unit]:

========== =============================================
name       pseudo-derivative ``dz/dx``
========== =============================================
superspike ``1 / (1 + alpha |x|)^2``  (fast-sigmoid derivative, Zenke & Ganguli 2018)
sigmoid    ``4 s(alpha x) (1 - s(alpha x))``, ``s`` the logistic function
triangle   ``max(0, 1 - alpha |x|)``
========== =============================================

Choose one by name with :func:`heaviside`; an unknown name raises an error listing the
known ones.

>>> import torch
>>> x = torch.tensor([-0.1, 0.0, 0.2], requires_grad=True)
>>> z = heaviside(x, "superspike", 10.0)
>>> z.tolist()
[0.0, 1.0, 1.0]
>>> z.sum().backward()
>>> [round(g, 4) for g in x.grad.tolist()]
[0.25, 1.0, 0.1111]
"""

from __future__ import annotations

import torch

from ...errors import BrainScaleS2Error

__all__ = [
    "SuperSpike",
    "SigmoidSpike",
    "TriangleSpike",
    "SURROGATES",
    "SURROGATE_GRADIENTS",
    "heaviside",
    "UnknownSurrogateError",
]


class UnknownSurrogateError(BrainScaleS2Error, ValueError):
    """A surrogate gradient was requested by a name that does not exist."""


def _superspike_grad(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    return grad / (1.0 + alpha * x.abs()) ** 2


def _sigmoid_grad(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    s = torch.sigmoid(alpha * x)
    return grad * 4.0 * s * (1.0 - s)


def _triangle_grad(grad: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    return grad * (1.0 - alpha * x.abs()).clamp(min=0.0)


def _surrogate(name: str, grad_fn, doc: str) -> type[torch.autograd.Function]:
    """A Heaviside spike function whose backward pass is ``grad_fn(grad, x, alpha)``."""

    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_fn(grad, x, ctx.alpha), None

    return type(
        name,
        (torch.autograd.Function,),
        {"__doc__": doc, "forward": staticmethod(forward), "backward": staticmethod(backward)},
    )


SuperSpike = _surrogate(
    "SuperSpike", _superspike_grad, "Heaviside forward; ``1 / (1 + alpha |x|)^2`` backward."
)
SigmoidSpike = _surrogate(
    "SigmoidSpike",
    _sigmoid_grad,
    "Heaviside forward; ``4 s(alpha x) (1 - s(alpha x))`` backward (height 1 at 0).",
)
TriangleSpike = _surrogate(
    "TriangleSpike", _triangle_grad, "Heaviside forward; ``max(0, 1 - alpha |x|)`` backward."
)


SURROGATES: dict[str, type[torch.autograd.Function]] = {
    "superspike": SuperSpike,
    "sigmoid": SigmoidSpike,
    "triangle": TriangleSpike,
}


#: ``grad * dz/dx`` of each surrogate, ``(grad, x, alpha) -> Tensor`` (the backward passes above;
#: also used by the fused time loop of :mod:`.scan`)
SURROGATE_GRADIENTS = {"superspike": _superspike_grad, "sigmoid": _sigmoid_grad, "triangle": _triangle_grad}


def check_method(method: str) -> str:
    """Return ``method`` if it names a surrogate, else raise :class:`UnknownSurrogateError`."""
    if method not in SURROGATES:
        raise UnknownSurrogateError(
            f"Unknown surrogate gradient {method!r}; choose one of {', '.join(sorted(SURROGATES))}."
        )
    return method


def heaviside(x: torch.Tensor, method: str = "superspike", alpha: float = 50.0) -> torch.Tensor:
    """Spikes ``x >= 0`` with the surrogate gradient ``method``.

    Parameters
    ----------
    x : Tensor
        Distance to threshold, ``V - V_th`` [potential unit].
    method : str
        ``"superspike"``, ``"sigmoid"`` or ``"triangle"``.
    alpha : float
        Sharpness of the pseudo-derivative [1 / potential unit].
    """
    return SURROGATES[check_method(method)].apply(x, float(alpha))
