"""Transforms of the torch bridge: weights model <-> hardware, spike encoders, decoders,
regularisers.

Weights
    A model weight ``w`` [pu/us] becomes a signed integer hardware weight ``w_hw``
    (``|w_hw| <= 63``; positive on excitatory, negative on inhibitory synapse rows) by
    :func:`weight_to_hardware`: optionally the saturating map of Dominik's thesis
    (seed 002, eq. (30)-(31), :func:`saturate_weights`), the scale ``w_hw = scale * w``
    (eq. (29): ``scale = (a / b) (theta_hw / theta_sw)``, from measured PSP heights) and
    rounding to integer steps with a straight-through gradient (:func:`round_ste`).
    :func:`weight_to_model` maps back; recorded traces scale with :func:`scale_trace`.
Encoders
    Time-to-first-spike codes for coordinates (:func:`ttfs_coordinates`, e.g. Yin-Yang)
    and pixels (:func:`ttfs_pixels`, seed 002 sec. 5.1), and a receptive-field code
    (:func:`receptive_field`). They return spikes ``[time, batch, inputs]`` on the grid.
Images
    Batched augmentation of images ``[batch, height, width]`` in 0..1 (seed 002, sec. 5.1.1):
    :func:`center_crop`, :func:`rotate` and :func:`random_rotation` (bilinear, zero fill),
    :func:`stroke_noise` (Gaussian noise only near the strokes).
Decoders
    :func:`decode` with ``"max"``, ``"sum"`` or ``"mean"`` over time.
Regularisers
    :func:`firing_rate_regulariser`, :func:`burst_regulariser` (spikes beyond one per
    neuron), :func:`trace_regulariser` (mean ``|v|^4`` of read-out values) and
    :func:`weight_regulariser` (``C sum(w^4) / N``).
"""

from __future__ import annotations

import math

import torch

from ..errors import ShapeError

__all__ = [
    "WEIGHT_MAX",
    "saturate_weights",
    "round_ste",
    "weight_to_hardware",
    "weight_to_model",
    "scale_trace",
    "spike_train",
    "ttfs_coordinates",
    "ttfs_pixels",
    "receptive_field",
    "center_crop",
    "rotate",
    "random_rotation",
    "stroke_noise",
    "decode",
    "DECODERS",
    "firing_rate_regulariser",
    "burst_regulariser",
    "trace_regulariser",
    "weight_regulariser",
]

WEIGHT_MAX = 63  # 6-bit synapse weight; signed weights use an exc and an inh row


# --- weights ----------------------------------------------------------------------------
def saturate_weights(w: torch.Tensor, cap: float, start: float = 61.0, w_max_hw: float = WEIGHT_MAX):
    """Smooth saturation of weights at ``+-cap`` (seed 002, eq. (30)-(31)).

    ``f(w) = w`` for ``|w| / cap <= 1 - 1/a``, else
    ``sign(w) cap (1 - exp(-a (|w|/cap - (1 - 1/a))) / a)`` with ``a = 1 / (1 - start / w_max_hw)``:
    identity up to ``start / w_max_hw`` of the cap, then an exponential roll-off towards the
    cap, continuous with slope 1 at the knee and a non-zero slope everywhere.

    Parameters
    ----------
    w : Tensor
        Weights [any unit].
    cap : float
        Saturation value, in the unit of ``w`` (the model weight worth 63 hardware steps).
    start : float
        Hardware step where the roll-off begins, ``0 < start < w_max_hw``.

    Examples
    --------
    >>> f = saturate_weights(torch.tensor([0.5, 2.0, 100.0]), cap=2.1)
    >>> [round(x, 4) for x in f.tolist()]
    [0.5, 2.0, 2.1]
    """
    if not 0.0 < start < w_max_hw:
        raise ValueError(f"saturate_weights: start = {start} must lie in (0, {w_max_hw}).")
    a = 1.0 / (1.0 - start / w_max_hw)
    knee = 1.0 - 1.0 / a
    r = w.abs() / cap
    rolled = torch.sign(w) * cap * (1.0 - torch.exp(-a * (r - knee).clamp(min=0.0)) / a)
    return torch.where(r <= knee, w, rolled)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to integers forward; identity gradient backward (straight-through)."""
    return _RoundSTE.apply(x)


def weight_to_hardware(
    w: torch.Tensor, scale: float, cap: float | None = None, start: float = 61.0
) -> torch.Tensor:
    """Signed integer hardware weights from model weights, straight-through rounded.

    Parameters
    ----------
    w : Tensor
        Model weights [pu/us].
    scale : float
        Hardware steps per model unit [steps / (pu/us)].
    cap : float, optional
        Saturate smoothly at ``+-cap`` model units first (:func:`saturate_weights`);
        default ``63 / scale``, so no weight leaves the 6-bit range. The result is
        clipped to ``+-63`` either way.

    Examples
    --------
    >>> weight_to_hardware(torch.tensor([0.1, -0.26, 5.0]), scale=20.0).tolist()
    [2.0, -5.0, 63.0]
    """
    cap = WEIGHT_MAX / scale if cap is None else cap
    hw = round_ste(saturate_weights(w, cap, start) * scale)
    return hw.clamp(-WEIGHT_MAX, WEIGHT_MAX)


def weight_to_model(w_hw: torch.Tensor, scale: float) -> torch.Tensor:
    """Model weights [pu/us] from hardware steps."""
    return w_hw / scale


def scale_trace(v_hw: torch.Tensor, v_leak_hw, v_th_hw, v_leak: float = 0.0, v_th: float = 1.0):
    """Trace scaling (seed 002 eq. (28)): map a hardware membrane so that its leak and
    threshold land on the model's ``v_leak`` and ``v_th`` [pu]."""
    return v_leak + (v_hw - v_leak_hw) * ((v_th - v_leak) / (v_th_hw - v_leak_hw))


# --- encoders ---------------------------------------------------------------------------
def spike_train(times_us: torch.Tensor, dt_us: float, n_steps: int) -> torch.Tensor:
    """Spikes ``[time, *shape]`` with one spike at ``round(t / dt)`` for each entry of
    ``times_us`` (``[*shape]``); NaN, infinite or late times give no spike."""
    idx = torch.round(times_us / dt_us)
    valid = torch.isfinite(idx) & (idx >= 0) & (idx < n_steps)
    idx = torch.where(valid, idx, torch.full_like(idx, n_steps)).long()
    out = torch.zeros((n_steps + 1, *times_us.shape), dtype=times_us.dtype, device=times_us.device)
    out.scatter_(0, idx.unsqueeze(0), 1.0)
    return out[:n_steps]


def ttfs_coordinates(
    x: torch.Tensor,
    dt_us: float,
    runtime_us: float,
    t_early_us: float = 2.0,
    t_late_us: float = 26.0,
    bias_us: float | None = None,
    x_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Time-to-first-spike code of coordinates: one spike per feature.

    Feature ``x`` spikes at ``t_early + (x - lo) / (hi - lo) (t_late - t_early)`` [us],
    rounded to the grid; with ``bias_us`` an extra input spikes at that time for every
    sample (a bias neuron, appended last).

    Parameters
    ----------
    x : Tensor
        Features ``[batch, features]`` in ``x_range``.
    dt_us, runtime_us : float
        Grid step and run duration [us].

    Returns
    -------
    Tensor ``[time, batch, features (+1)]``

    Examples
    --------
    >>> s = ttfs_coordinates(torch.tensor([[0.0, 0.5]]), dt_us=1.0, runtime_us=38.0, bias_us=0.0)
    >>> s.shape, s[:, 0].argmax(0).tolist()
    (torch.Size([38, 1, 3]), [2, 14, 0])
    """
    if x.dim() != 2:
        raise ShapeError(f"ttfs_coordinates expects features [batch, features], got {list(x.shape)}.")
    lo, hi = x_range
    t = t_early_us + (x - lo) / (hi - lo) * (t_late_us - t_early_us)
    if bias_us is not None:
        t = torch.cat([t, torch.full_like(t[:, :1], float(bias_us))], dim=1)
    return spike_train(t, dt_us, int(math.ceil(runtime_us / dt_us - 1e-9)))


def ttfs_pixels(
    images: torch.Tensor, dt_us: float, steps: int = 30, step_us: float = 1.0, runtime_us: float | None = None
) -> torch.Tensor:
    """Time-to-first-spike code of pixels (seed 002, sec. 5.1).

    The batch's values are mapped affinely onto ``[0, steps]`` (batch minimum to 0,
    maximum to ``steps``), rounded and inverted: a pixel of value ``k`` spikes at index
    ``steps - k``, i.e. at ``(steps - k) step_us`` [us]; index ``steps`` (the darkest
    pixels, e.g. zero background) does not spike.

    Parameters
    ----------
    images : Tensor
        ``[batch, ...]``; flattened to ``[batch, pixels]``.
    dt_us : float
        Grid step [us].
    steps : int
        Number of code steps ``T``.
    step_us : float
        Duration of one code step [us].
    runtime_us : float, optional
        Run duration (default ``steps * step_us``).
    """
    x = images.reshape(images.shape[0], -1).float()
    lo, hi = x.min(), x.max()
    level = torch.round((x - lo) / (hi - lo).clamp(min=1e-12) * steps)
    index = steps - level
    t = torch.where(index < steps, index * step_us, torch.full_like(index, float("inf")))
    runtime_us = steps * step_us if runtime_us is None else runtime_us
    return spike_train(t, dt_us, int(math.ceil(runtime_us / dt_us - 1e-9)))


def receptive_field(
    x: torch.Tensor,
    centers: torch.Tensor,
    width: float,
    dt_us: float,
    runtime_us: float,
    t_early_us: float = 0.0,
    t_late_us: float | None = None,
    min_response: float = 0.05,
) -> torch.Tensor:
    """Receptive-field code: every feature drives one input per reference point.

    The Gaussian response ``r = exp(-(x - c)^2 / (2 width^2))`` of reference point ``c``
    sets the spike time ``t_early + (1 - r)(t_late - t_early)``; responses below
    ``min_response`` do not spike.

    Parameters
    ----------
    x : Tensor
        Features ``[batch, features]``.
    centers : Tensor
        Reference points ``[points]``.
    width : float
        Width of the receptive fields (unit of ``x``).

    Returns
    -------
    Tensor ``[time, batch, features * points]`` (feature-major).
    """
    if x.dim() != 2:
        raise ShapeError(f"receptive_field expects features [batch, features], got {list(x.shape)}.")
    t_late_us = runtime_us if t_late_us is None else t_late_us
    r = torch.exp(-((x.unsqueeze(-1) - centers.to(x)) ** 2) / (2.0 * width**2))
    t = t_early_us + (1.0 - r) * (t_late_us - t_early_us)
    t = torch.where(r >= min_response, t, torch.full_like(t, float("inf")))
    return spike_train(t.reshape(x.shape[0], -1), dt_us, int(math.ceil(runtime_us / dt_us - 1e-9)))


# --- images -----------------------------------------------------------------------------
def _check_images(images: torch.Tensor, who: str) -> None:
    if images.dim() != 3:
        raise ShapeError(f"{who} expects images [batch, height, width], got {list(images.shape)}.")


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` pixels of images ``[..., height, width]``.

    Examples
    --------
    >>> center_crop(torch.zeros(5, 28, 28), 22).shape
    torch.Size([5, 22, 22])
    """
    h, w = images.shape[-2:]
    if not 0 < size <= min(h, w):
        raise ShapeError(f"center_crop: size {size} must lie in 1..{min(h, w)} for images of {h} x {w}.")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size]


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate every image about its centre by its angle (counter-clockwise, bilinear
    interpolation, zero outside the image).

    Parameters
    ----------
    images : Tensor ``[batch, height, width]``
    degrees : Tensor ``[batch]``
        Angles [degrees].

    Examples
    --------
    >>> img = torch.zeros(1, 5, 5); img[0, 2, 4] = 1.0  # right of the centre
    >>> rotate(img, torch.tensor([90.0]))[0].argmax().item()  # now above it: row 0, column 2
    2
    """
    _check_images(images, "rotate")
    rad = torch.deg2rad(degrees.to(images.dtype))
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    # grid_sample maps output to input coordinates: the inverse rotation (y points down)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(
        theta, [images.shape[0], 1, *images.shape[1:]], align_corners=False
    )
    out = torch.nn.functional.grid_sample(
        images.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out[:, 0]


def random_rotation(
    images: torch.Tensor,
    max_degrees: float = 25.0,
    p: float = 0.5,
    gain: float = 1.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rotate each image with probability ``p`` by an angle drawn uniformly from
    ``[-max_degrees, max_degrees]`` (seed 002, sec. 5.1.1).

    Bilinear interpolation dims thin strokes; rotated images are therefore multiplied by
    ``gain`` and clipped to ``[0, 1]``. Images that are not rotated are returned unchanged.

    Parameters
    ----------
    images : Tensor ``[batch, height, width]``
        Values in ``[0, 1]``.
    max_degrees : float
        Largest angle [degrees].
    p : float
        Probability that an image is rotated.
    gain : float
        Factor applied to rotated images before clipping.
    generator : torch.Generator, optional
        Source of randomness (reproducible augmentation).
    """
    _check_images(images, "random_rotation")
    n = images.shape[0]
    chosen = torch.rand(n, generator=generator) < p
    angles = (2.0 * torch.rand(n, generator=generator) - 1.0) * max_degrees
    if not bool(chosen.any()):
        return images
    out = images.clone()
    idx = chosen.nonzero()[:, 0].to(images.device)
    out[idx] = (gain * rotate(images[idx], angles[chosen].to(images.device))).clamp(0.0, 1.0)
    return out


def _gaussian_kernel(sigma_px: float, dtype, device) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.0 * sigma_px)))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-(x**2) / (2.0 * sigma_px**2))
    return k / k.sum()


def stroke_noise(
    images: torch.Tensor,
    std: float = 0.3,
    p: float = 0.5,
    sigma_px: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add Gaussian noise near the strokes of each image with probability ``p`` (seed 002,
    sec. 5.1.1).

    The mask is the image's support (every pixel above 0 set to 1), blurred with a Gaussian
    of ``sigma_px`` pixels; the noise ``N(0, std^2)`` is multiplied by it pixel by pixel, so
    the background far from the digit stays clean, as in the test images. The result is
    clipped to ``[0, 1]``.

    Parameters
    ----------
    images : Tensor ``[batch, height, width]``
        Values in ``[0, 1]``.
    std : float
        Standard deviation of the noise (unit of the pixel values).
    p : float
        Probability that an image gets noise.
    sigma_px : float
        Width of the blur of the mask [pixels].
    generator : torch.Generator, optional
        Source of randomness.

    Examples
    --------
    >>> img = torch.zeros(1, 20, 20); img[0, 8:12, 8:12] = 1.0
    >>> out = stroke_noise(img, std=0.5, p=1.0, generator=torch.Generator().manual_seed(0))
    >>> bool(out[0, :3, :3].eq(0).all()), bool(out[0, 7:13, 7:13].ne(img[0, 7:13, 7:13]).any())
    (True, True)
    """
    _check_images(images, "stroke_noise")
    n = images.shape[0]
    chosen = torch.rand(n, generator=generator) < p
    noise = torch.randn(images.shape, generator=generator).to(images)
    if not bool(chosen.any()):
        return images
    k = _gaussian_kernel(sigma_px, images.dtype, images.device)
    r = k.numel() // 2
    mask = (images > 0).to(images.dtype).unsqueeze(1)
    mask = torch.nn.functional.conv2d(mask, k.view(1, 1, -1, 1), padding=(r, 0))
    mask = torch.nn.functional.conv2d(mask, k.view(1, 1, 1, -1), padding=(0, r))[:, 0]
    noisy = (images + std * mask * noise).clamp(0.0, 1.0)
    return torch.where(chosen.to(images.device).view(-1, 1, 1), noisy, images)


# --- decoders ---------------------------------------------------------------------------
DECODERS = {
    "max": lambda v: v.max(dim=0).values,
    "sum": lambda v: v.sum(dim=0),
    "mean": lambda v: v.mean(dim=0),
}


def decode(v: torch.Tensor, how: str = "max") -> torch.Tensor:
    """Scores ``[batch, neurons]`` from a trace ``[time, batch, neurons]``: max, sum or
    mean over time."""
    if how not in DECODERS:
        raise ValueError(f"Unknown decoder {how!r}; choose one of {', '.join(DECODERS)}.")
    if v.dim() != 3:
        raise ShapeError(f"decode expects a trace [time, batch, neurons], got {list(v.shape)}.")
    return DECODERS[how](v)


# --- regularisers -----------------------------------------------------------------------
def firing_rate_regulariser(spikes: torch.Tensor, target: float = 0.0, power: int = 2) -> torch.Tensor:
    """Mean over neurons and batch of ``|count - target|^power``, where ``count`` is each
    neuron's number of spikes per sample (``spikes`` ``[time, batch, neurons]``)."""
    counts = spikes.sum(dim=0)
    return ((counts - target).abs() ** power).mean()


def weight_regulariser(weights, coefficient: float = 1.0) -> torch.Tensor:
    """``C sum(w^4) / N`` over one weight tensor or an iterable of them (seed 002, eq. (32))."""
    if torch.is_tensor(weights):
        weights = [weights]
    weights = list(weights)
    total = sum((w**4).sum() for w in weights)
    n = sum(w.numel() for w in weights)
    return coefficient * total / n


def burst_regulariser(
    spikes: torch.Tensor, allowed: float = 1.0, power: int = 2, neurons: str = "sum"
) -> torch.Tensor:
    """Penalty on spikes beyond ``allowed`` per neuron and sample: ``relu(count - allowed)^power``
    summed (``neurons="sum"``) or averaged (``neurons="mean"``) over neurons, averaged over the
    batch (``spikes`` ``[time, batch, neurons]``).

    A time-to-first-spike network needs one spike per neuron at most; this term leaves single
    spikes free and discourages bursts. With ``"mean"`` its weight does not grow with the
    size of the layer.

    Examples
    --------
    >>> s = torch.zeros(5, 1, 2); s[:3, 0, 0] = 1.0; s[0, 0, 1] = 1.0   # counts 3 and 1
    >>> burst_regulariser(s).item()
    4.0
    >>> burst_regulariser(s, neurons="mean").item()
    2.0
    """
    if neurons not in ("sum", "mean"):
        raise ValueError(f"burst_regulariser: neurons={neurons!r}; use 'sum' or 'mean'")
    per_neuron = torch.relu(spikes.sum(dim=0) - allowed) ** power
    return (per_neuron.sum(dim=-1) if neurons == "sum" else per_neuron.mean(dim=-1)).mean()


def trace_regulariser(values: torch.Tensor, power: int = 4) -> torch.Tensor:
    """Mean of ``|values|^power`` (default the "biquadratic" mean of seed 002, sec. 5.6): with
    read-out membranes or scores it keeps them in the readable range, punishing small values
    little and large ones strongly.

    Examples
    --------
    >>> trace_regulariser(torch.tensor([1.0, -2.0])).item()
    8.5
    """
    return (values.abs() ** power).mean()
