"""The fused time loop (``functional/scan.py``) against the step functions it replaces.

Forward values must be bit for bit those of ``lif_step`` / ``li_step`` (same expressions,
same order); gradients agree to float rounding (the adjoint sums in another order).
"""

import itertools

import pytest
import torch

from pynn_brainscales2.snn.functional.neurons import LIFParameters, LIParameters, integrate

CASES = list(
    itertools.product(
        [torch.float32, torch.float64],  # dtype
        [True, False],  # spiking (LIF) or LI
        [False, True],  # separate inhibitory channel
        [False, True],  # crossing fractions
        [0.0, 0.05],  # bias current [pu/us]
    )
)


@pytest.mark.parametrize("dtype,spiking,inhibitory,fraction,bias", CASES)
def test_fused_loop_equals_the_step_functions(dtype, spiking, inhibitory, fraction, bias):
    gen = torch.Generator().manual_seed(3)
    shape = (60, 7, 9)

    def rand(scale):
        mask = torch.rand(shape, generator=gen) < 0.2
        return (mask * torch.rand(shape, generator=gen) * scale).to(dtype).requires_grad_()

    x_exc = rand(1.5)
    x_inh = rand(1.0) if inhibitory else None
    if spiking:
        p = LIFParameters(6.0, 5.0, 3.0 if inhibitory else 5.0, v_leak=0.3, v_reset=-0.1, i_bias=bias,
                          method="sigmoid", alpha=7.0)  # fmt: skip
    else:
        p = LIParameters(6.0, 5.0, 3.0, v_leak=0.3, i_bias=bias)
    weights = [torch.randn(shape, generator=gen, dtype=dtype) for _ in range(3)]
    runs = []
    for fast in (False, True):
        out = integrate(p, 0.1, x_exc, x_inh, fraction=fraction, fast=fast)
        loss = (out.v * weights[0]).sum() + (out.current * weights[1]).sum() + (out.state.v**2).sum()
        if spiking:
            loss = loss + (out.spikes * weights[2]).sum()
        grads = torch.autograd.grad(loss, [x for x in (x_exc, x_inh) if x is not None])
        runs.append((out, grads))
    (slow, g_slow), (fast, g_fast) = runs
    assert type(fast.v.grad_fn).__name__ == "NeuronScanBackward"  # the fast path was taken
    assert torch.equal(slow.v, fast.v)
    assert torch.equal(slow.current, fast.current)
    assert torch.equal(slow.state.v, fast.state.v)
    if spiking:
        assert slow.spikes.sum() > 50  # the neurons do spike
        assert torch.equal(slow.spikes, fast.spikes)
        assert (slow.fraction is None) == (not fraction)
        if fraction:
            assert torch.equal(slow.fraction, fast.fraction)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(g_slow, g_fast, strict=True):
        assert torch.allclose(a, b, rtol=tol, atol=tol * a.abs().max())


def test_fused_loop_is_not_used_where_it_does_not_apply():
    x = torch.rand(20, 2, 3, requires_grad=True)
    for p in (
        LIFParameters(refractory_us=1.0),
        LIFParameters(v_max=2.0),
        LIFParameters(v_th=torch.tensor(1.0, requires_grad=True)),
    ):
        out = integrate(p, 0.1, x)
        assert type(out.v.grad_fn).__name__ != "NeuronScanBackward"
