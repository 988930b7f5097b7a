"""Surrogate spike functions against their analytic pseudo-derivatives."""

import pytest
import torch

from pynn_brainscales2.errors import BrainScaleS2Error
from pynn_brainscales2.snn.functional import SURROGATES, UnknownSurrogateError, heaviside

X = torch.linspace(-2.0, 2.0, 81, dtype=torch.float64)

ANALYTIC = {
    "superspike": lambda x, a: 1.0 / (1.0 + a * x.abs()) ** 2,
    "sigmoid": lambda x, a: 4.0 * torch.exp(-a * x) / (1.0 + torch.exp(-a * x)) ** 2,
    "triangle": lambda x, a: torch.clamp(1.0 - a * x.abs(), min=0.0),
}


@pytest.mark.parametrize("method", sorted(SURROGATES))
@pytest.mark.parametrize("alpha", [2.0, 10.0, 100.0])
def test_gradient_is_the_analytic_pseudo_derivative(method, alpha):
    x = X.clone().requires_grad_(True)
    upstream = torch.linspace(0.5, 1.5, X.numel(), dtype=torch.float64)
    heaviside(x, method, alpha).backward(upstream)
    torch.testing.assert_close(x.grad, upstream * ANALYTIC[method](X, alpha), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", sorted(SURROGATES))
def test_forward_is_the_threshold_comparison(method):
    z = heaviside(X, method, 5.0)
    assert torch.equal(z, (X >= 0).to(X.dtype))
    assert heaviside(torch.tensor([0.0]), method).item() == 1.0  # V == v_th spikes, like the chip


@pytest.mark.parametrize("method", sorted(SURROGATES))
def test_pseudo_derivative_peaks_at_threshold_with_height_one(method):
    x = torch.tensor([0.0, 0.05, -0.05], requires_grad=True)
    heaviside(x, method, 10.0).sum().backward()
    assert x.grad[0].item() == pytest.approx(1.0)
    assert x.grad[1].item() < 1.0 and x.grad[1].item() == pytest.approx(x.grad[2].item())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownSurrogateError) as err:
        heaviside(X, "fast_sigmoid")
    message = str(err.value)
    assert "'fast_sigmoid'" in message
    for name in SURROGATES:
        assert name in message
    assert isinstance(err.value, ValueError) and isinstance(err.value, BrainScaleS2Error)
