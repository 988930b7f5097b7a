"""Weight transforms, encoders, decoders and regularisers."""

import math

import pytest
import torch

from pynn_brainscales2.errors import ShapeError
from pynn_brainscales2.snn import transforms as T


def test_saturation_is_identity_below_the_knee_and_bounded_by_the_cap():
    cap, start = 2.1, 61.0
    knee = cap * start / 63.0
    w = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    f = T.saturate_weights(w, cap, start)
    inside = w.abs() <= knee
    torch.testing.assert_close(f[inside], w[inside])
    assert f.abs().max() <= cap and torch.all(torch.diff(f) >= 0)
    near = w.abs() < 2.5
    assert torch.all(torch.diff(f[near]) > 0) and f[near].abs().max() < cap  # strictly increasing
    assert f[-1].item() == pytest.approx(cap, abs=1e-6) and f[0].item() == pytest.approx(-cap, abs=1e-6)
    # eq. (30)-(31) at one point beyond the knee
    a = 1.0 / (1.0 - start / 63.0)
    x = torch.tensor([2.05], dtype=torch.float64)
    expected = cap * (1.0 - math.exp(-a * (2.05 / cap - (1.0 - 1.0 / a))) / a)
    assert T.saturate_weights(x, cap, start).item() == pytest.approx(expected, rel=1e-12)


def test_saturation_is_smooth_with_nonzero_slope():
    w = torch.tensor([1.0, 2.03, 2.0334, 2.2, 2.5], dtype=torch.float64, requires_grad=True)
    T.saturate_weights(w, 2.1, 61.0).sum().backward()
    g = w.grad
    assert g[0] == 1.0 and g[1] == 1.0
    assert g[2].item() == pytest.approx(1.0, abs=1e-3)  # slope 1 at the knee (continuity of f')
    assert 0 < g[4] < g[3] < 1.0
    with pytest.raises(ValueError):
        T.saturate_weights(w, 2.1, 63.0)


def test_round_ste_rounds_forward_and_passes_gradients():
    x = torch.tensor([0.4, 1.6, -2.5], requires_grad=True)
    y = T.round_ste(x)
    assert y.tolist() == [0.0, 2.0, -2.0]
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0]


def test_weight_round_trip_within_half_a_step():
    scale = 25.0
    w = torch.linspace(-2.3, 2.3, 501, dtype=torch.float64)  # inside the linear range 61/25
    hw = T.weight_to_hardware(w, scale)
    assert torch.all(hw == torch.round(hw)) and hw.abs().max() <= 63
    back = T.weight_to_model(hw, scale)
    assert (back - w).abs().max() <= 0.5 / scale + 1e-12
    # the hardware weights of model weights on the step grid come back exactly
    grid = torch.arange(-60, 61, dtype=torch.float64)
    torch.testing.assert_close(T.weight_to_hardware(T.weight_to_model(grid, scale), scale), grid)


def test_weight_to_hardware_saturates_and_keeps_gradients():
    w = torch.tensor([3.5, -3.5, 1.0], requires_grad=True)
    hw = T.weight_to_hardware(w, scale=20.0)
    assert hw.tolist() == [63.0, -63.0, 20.0]
    hw.sum().backward()
    assert torch.all(w.grad > 0)  # even saturated weights see a gradient


def test_trace_scaling_maps_leak_and_threshold():
    v_hw = torch.tensor([0.36, 0.5, 0.64])
    v = T.scale_trace(v_hw, v_leak_hw=0.36, v_th_hw=0.64)
    torch.testing.assert_close(v, torch.tensor([0.0, 0.5, 1.0]))


def test_ttfs_coordinates_places_one_spike_per_feature():
    x = torch.tensor([[0.0, 1.0, 0.25], [0.5, 0.5, 0.5]])
    s = T.ttfs_coordinates(x, dt_us=0.5, runtime_us=38.0, bias_us=0.0)
    assert s.shape == (76, 2, 4)
    assert torch.all(s.sum(0) == 1)
    first = s.argmax(0)
    assert first[0].tolist() == [4, 52, 16, 0]  # 2 us, 26 us, 8 us, bias at 0
    assert first[1].tolist() == [28, 28, 28, 0]
    with pytest.raises(ShapeError):
        T.ttfs_coordinates(torch.zeros(3), 0.5, 38.0)


def test_ttfs_pixels_inverts_and_drops_the_background():
    img = torch.tensor([[[0.0, 1.0], [0.5, 0.02]]])
    s = T.ttfs_pixels(img, dt_us=0.5, steps=30, step_us=1.0)
    assert s.shape == (60, 1, 4)
    counts = s.sum(0)[0]
    assert counts.tolist() == [0.0, 1.0, 1.0, 1.0]  # zero pixel silent
    idx = s.argmax(0)[0]
    assert idx[1].item() == 0  # brightest first
    assert idx[2].item() == 30  # 0.5 -> level 15 -> index 15 -> 15 us -> step 30
    assert idx[3].item() == 58  # 0.02 -> level 1 -> index 29 -> 29 us


def test_receptive_field_code():
    centers = torch.linspace(0, 1, 5)
    s = T.receptive_field(torch.tensor([[0.5]]), centers, width=0.1, dt_us=1.0, runtime_us=30.0)
    assert s.shape == (30, 1, 5)
    assert s.sum(0)[0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # far centres below min_response
    assert s[:, 0, 2].argmax().item() == 0
    s2 = T.receptive_field(torch.tensor([[0.55]]), centers, width=0.1, dt_us=1.0, runtime_us=30.0)
    assert s2[:, 0, 2].argmax().item() > 0 and s2[:, 0, 3].sum() == 1


def test_decoders():
    v = torch.tensor([[[1.0, -1.0]], [[3.0, 0.0]], [[2.0, 4.0]]])
    assert T.decode(v, "max").tolist() == [[3.0, 4.0]]
    assert T.decode(v, "sum").tolist() == [[6.0, 3.0]]
    assert T.decode(v, "mean").tolist() == [[2.0, 1.0]]
    with pytest.raises(ValueError, match="max, sum, mean"):
        T.decode(v, "last")
    with pytest.raises(ShapeError):
        T.decode(v[0], "max")


def test_regularisers():
    spikes = torch.zeros(10, 2, 3)
    spikes[0, 0, 0] = spikes[1, 0, 0] = spikes[4, 1, 2] = 1.0
    # counts [[2, 0, 0], [0, 0, 1]]; target 1 -> deviations 1,1,1,1,1,0
    assert T.firing_rate_regulariser(spikes, target=1.0).item() == pytest.approx(5 / 6)
    w1, w2 = torch.tensor([1.0, -2.0]), torch.tensor([[0.5]])
    assert T.weight_regulariser([w1, w2], 3.0).item() == pytest.approx(3.0 * (1 + 16 + 0.0625) / 3)


def test_center_crop_keeps_the_middle():
    img = torch.arange(36.0).view(1, 6, 6)
    out = T.center_crop(img, 2)
    assert out.tolist() == [[[14.0, 15.0], [20.0, 21.0]]]
    with pytest.raises(ShapeError, match="1..6"):
        T.center_crop(img, 7)


def test_rotate_turns_counter_clockwise_and_keeps_the_centre():
    img = torch.zeros(2, 7, 7)
    img[:, 3, 3] = 1.0
    img[:, 3, 5] = 1.0  # two pixels right of the centre
    out = T.rotate(img, torch.tensor([0.0, 90.0]))
    torch.testing.assert_close(out[0], img[0], atol=1e-6, rtol=0)
    expected = torch.zeros(7, 7)
    expected[3, 3] = expected[1, 3] = 1.0  # now two pixels above it
    torch.testing.assert_close(out[1], expected, atol=1e-5, rtol=0)
    # 45 degrees: bilinear interpolation spreads the pixel, its mass stays close to one
    spread = T.rotate(img[:1], torch.tensor([45.0]))
    assert 1.5 < float(spread.sum()) < 2.5 and float(spread.max()) < 1.0 + 1e-6


def test_random_rotation_rotates_about_a_fraction_p_and_brightens_them():
    img = torch.zeros(400, 9, 9)
    img[:, 4, 2:7] = 0.6  # a horizontal bar
    out = T.random_rotation(img, 25.0, p=0.5, gain=1.5, generator=torch.Generator().manual_seed(1))
    changed = (out != img).flatten(1).any(1)
    assert 0.4 < float(changed.float().mean()) < 0.6
    assert float(out.max()) <= 1.0 and float(out[changed].max()) > 0.6  # gain 1.5, clipped at 1
    # the bar's end moves by at most 25 degrees: row offset <= 2 tan(25 deg) + interpolation
    rows = out[changed].sum(2).argmax(1)
    assert int((rows - 4).abs().max()) <= 1
    again = T.random_rotation(img, 25.0, p=0.5, gain=1.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, again)


def test_stroke_noise_only_near_the_strokes():
    img = torch.zeros(200, 16, 16)
    img[:, 6:10, 6:10] = 0.5
    out = T.stroke_noise(img, std=0.3, p=0.5, sigma_px=1.0, generator=torch.Generator().manual_seed(0))
    noisy = (out != img).flatten(1).any(1)
    assert 0.35 < float(noisy.float().mean()) < 0.65
    far = torch.ones(16, 16, dtype=torch.bool)
    far[3:13, 3:13] = False  # beyond 3 pixels of the square the blurred mask is < 1e-2 ... and 0 here
    assert float(out[:, far].abs().max()) == 0.0
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    inside = out[noisy][:, 6:10, 6:10]
    assert 0.15 < float(inside.std()) < 0.4  # std 0.3, mask close to 1 inside the square
    torch.testing.assert_close(out[~noisy], img[~noisy])


def test_burst_and_trace_regularisers():
    spikes = torch.zeros(10, 2, 3)
    spikes[:4, 0, 0] = 1.0  # 4 spikes: 3 beyond one
    spikes[0, 0, 1] = spikes[5, 1, 2] = spikes[6, 1, 2] = 1.0  # 1 and 2 spikes
    # sample 0: 3^2 + 0 = 9, sample 1: 1^2 = 1 -> mean 5
    assert T.burst_regulariser(spikes).item() == pytest.approx(5.0)
    assert T.burst_regulariser(spikes, allowed=0, power=1).item() == pytest.approx((5 + 2) / 2)
    # averaged over the 3 neurons instead of summed (the MNIST example's reading)
    assert T.burst_regulariser(spikes, neurons="mean").item() == pytest.approx(5.0 / 3)
    with pytest.raises(ValueError, match="neurons='max'"):
        T.burst_regulariser(spikes, neurons="max")
    v = torch.tensor([[2.0, -1.0], [0.0, 3.0]], requires_grad=True)
    r = T.trace_regulariser(v)
    assert r.item() == pytest.approx((16 + 1 + 0 + 81) / 4)
    r.backward()
    torch.testing.assert_close(v.grad, v.detach() ** 3)  # d/dv mean(v^4) = 4 v^3 / 4
