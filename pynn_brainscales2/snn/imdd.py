"""A simulated IM/DD optical link (PAM4 over a short fibre) as an endless data set.

Intensity modulation / direct detection (IM/DD) with four amplitude levels, the public
"IM/DD task" of the SNN-equalisation papers (Arnold et al., ECOC 2022; arXiv 2302.14726).
Per block of ``N`` symbols:

1. **Source and mapping.** Symbol indices ``k in {0, 1, 2, 3}`` drawn uniformly; levels
   ``a_k in {-3, -1, 1, 3}`` (:data:`LEVELS`); Gray bits ``00, 01, 11, 10`` (:data:`GRAY`),
   so neighbouring levels differ in one bit.
2. **Transmitter.** Up-sampling by ``s`` (zeros between symbols), a root-raised-cosine
   filter ``H_rrc(f) = sqrt(H_rc(f))`` with roll-off ``beta`` (``H_rc = 1`` in the pass
   band, a raised cosine in the roll-off band, 0 above ``(1 + beta) R / 2``), the bias
   ``b`` added and the waveform scaled to unit RMS: ``x = (h_rrc * u + b) / rms``.
3. **Fibre.** Chromatic dispersion as an all-pass filter
   ``H_cd(f) = exp(j pi lambda^2 / c D L f^2)`` (``c = 3e8 m/s``) on the field ``x``.
4. **Photodiode.** Square law ``y = |x_cd|^2`` (mean 1, since ``x`` has unit RMS and
   ``H_cd`` is all-pass), plus white Gaussian noise of variance
   ``sigma^2 = 10^(noise_db / 10)`` on every sample of the oversampled signal:
   ``noise_db`` is the noise power in dB relative to the unit signal power, so
   ``noise_db = -20`` is an SNR of 20 dB.
5. **Receiver.** The same root-raised-cosine filter, down-sampling to one sample per
   symbol at the symbol centres (times ``s``, so that ``RC * RRC`` returns the levels'
   scale), and a window of ``n_taps`` consecutive samples centred on the symbol to decide.

All filters act in the frequency domain over the whole block (a periodic transmission:
the block's end wraps onto its start; windows wrap the same way), with zero phase, so the
symbol centres stay at multiples of ``s``. Defaults: 112 GBd, ``s = 3``, ``beta = 0.2``,
``b = 2.25``, ``lambda = 1270 nm``, ``D = -5 ps/nm/km``, ``L = 4 km``, 7 taps.

A bit-error rate counts the wrong Gray bits per transmitted bit (two per symbol); the
baseline is the linear minimum-mean-square-error equaliser :class:`LMMSE` on the same
window, which decides for the level nearest to its output.

>>> link = IMDD(noise_db=-20.0)
>>> x, k = link.batch(1000, torch.Generator().manual_seed(0))
>>> tuple(x.shape), tuple(k.shape), sorted(set(k.tolist()))
((1000, 7), (1000,), [0, 1, 2, 3])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import ParameterRangeError, ShapeError

__all__ = [
    "IMDD",
    "IMDDParameters",
    "LEVELS",
    "GRAY",
    "LMMSE",
    "symbol_bits",
    "nearest_level",
    "bit_errors",
    "clopper_pearson",
]

#: PAM4 amplitude levels; the symbol index ``k`` is the position in this tuple
LEVELS = (-3.0, -1.0, 1.0, 3.0)
#: Gray bits of the levels: neighbours differ in one bit
GRAY = ((0, 0), (0, 1), (1, 1), (1, 0))
LIGHT_SPEED = 3e8  # [m/s], as in the task definition


@dataclass(frozen=True)
class IMDDParameters:
    """Parameters of the link (units in the names)."""

    noise_db: float | None = -20.0  # noise power relative to the signal [dB]; None: no noise
    n_taps: int = 7  # samples per decision window
    oversampling: int = 3  # samples per symbol on the line
    baud_rate_gbd: float = 112.0  # symbol rate [GBd]
    roll_off: float = 0.2  # of the root-raised-cosine filters
    bias: float = 2.25  # added to the transmit waveform before normalisation
    wavelength_nm: float = 1270.0
    dispersion_ps_nm_km: float = -5.0
    fiber_length_km: float = 4.0
    square_law: bool = True  # photodiode |x|^2 (False: the field's real part, for tests)
    block_symbols: int = 10_000  # symbols per periodic block


class IMDD(IterableDataset):
    """PAM4 IM/DD link generated on the fly: windows of received samples and symbol indices.

    Iterating yields ``(window, k)``: a float32 tensor ``[n_taps]`` of received samples and
    the int64 index of the sent symbol (``LEVELS[k]``). :meth:`batch` draws ``n`` samples at
    once with a given generator.

    Parameters
    ----------
    noise_db : float or None
        Noise power relative to the unit signal power [dB] (``-20``: SNR 20 dB); ``None`` or
        ``-inf`` switches the noise off.
    seed : int
        Seed of the generator used when iterating (each data-loader worker adds its id).
    size : int, optional
        Samples per iteration (default: endless).
    **params
        Any field of :class:`IMDDParameters` (units in the names), e.g. ``n_taps``,
        ``roll_off``, ``fiber_length_km`` or ``square_law``.

    Examples
    --------
    >>> link = IMDD(noise_db=-20.0, seed=1, size=3)
    >>> [tuple(x.shape) for x, _ in link]
    [(7,), (7,), (7,)]
    >>> IMDD(noise_db=-20.0).noise_std
    0.1
    """

    def __init__(self, noise_db: float | None = -20.0, seed: int = 0, size: int | None = None, **params):
        unknown = set(params) - set(IMDDParameters.__dataclass_fields__)
        if unknown:
            raise TypeError(
                f"IMDD got unknown parameters {sorted(unknown)}; known: "
                f"{', '.join(IMDDParameters.__dataclass_fields__)}."
            )
        p = IMDDParameters(noise_db=noise_db, **params)
        if p.oversampling < 1 or p.n_taps < 1 or p.block_symbols < p.n_taps:
            raise ParameterRangeError(
                f"IMDD: oversampling = {p.oversampling}, n_taps = {p.n_taps}, block_symbols = "
                f"{p.block_symbols}; give positive integers with block_symbols >= n_taps."
            )
        if not 0.0 < p.roll_off <= 1.0:
            raise ParameterRangeError(f"IMDD: roll_off = {p.roll_off}; give a value in (0, 1].")
        self.params = p
        self.seed = int(seed)
        self.size = None if size is None else int(size)
        self._filters: dict = {}

    def __repr__(self):
        return f"IMDD(noise_db={self.params.noise_db}, n_taps={self.params.n_taps})"

    @property
    def noise_std(self) -> float:
        """Standard deviation of the photodiode noise per line sample [signal RMS]."""
        db = self.params.noise_db
        if db is None or db == -math.inf:
            return 0.0
        return math.sqrt(10.0 ** (db / 10.0))

    # --- filters ------------------------------------------------------------------------
    def _frequencies(self, n: int) -> torch.Tensor:
        """FFT frequencies of ``n`` line samples [Hz]."""
        rate = self.params.oversampling * self.params.baud_rate_gbd * 1e9
        return torch.fft.fftfreq(n, d=1.0 / rate, dtype=torch.float64)

    def filters(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Root-raised-cosine and dispersion filters for ``n`` line samples (FFT order)."""
        if n not in self._filters:
            p = self.params
            f = self._frequencies(n).abs() / (p.baud_rate_gbd * 1e9)  # [symbol rate]
            lo, hi = (1.0 - p.roll_off) / 2.0, (1.0 + p.roll_off) / 2.0
            rolled = torch.cos(math.pi / (2.0 * p.roll_off) * (f - lo)) ** 2
            rc = torch.where(f <= lo, torch.ones_like(f), torch.where(f <= hi, rolled, torch.zeros_like(f)))
            lam, d = p.wavelength_nm * 1e-9, p.dispersion_ps_nm_km * 1e-6  # [m], [s/m^2]
            phase = math.pi * lam**2 / LIGHT_SPEED * d * p.fiber_length_km * 1e3 * self._frequencies(n) ** 2
            self._filters[n] = (rc.sqrt(), torch.polar(torch.ones_like(phase), phase))
        return self._filters[n]

    # --- the link, stage by stage -------------------------------------------------------
    def transmit(self, k: torch.Tensor) -> torch.Tensor:
        """Transmit waveform [unit RMS] ``[N s]`` (float64) of the symbol indices ``k`` ``[N]``."""
        s = self.params.oversampling
        up = torch.zeros(k.shape[0] * s, dtype=torch.float64)
        up[::s] = torch.as_tensor(LEVELS, dtype=torch.float64)[k]
        rrc, _ = self.filters(up.shape[0])
        tx = torch.fft.ifft(torch.fft.fft(up) * rrc).real + self.params.bias
        return tx / tx.square().mean().sqrt()

    def fibre(self, tx: torch.Tensor) -> torch.Tensor:
        """Field after the fibre (complex) ``[N s]``."""
        _, cd = self.filters(tx.shape[0])
        return torch.fft.ifft(torch.fft.fft(tx.to(torch.complex128)) * cd)

    def photodiode(self, field: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Detected intensity with noise ``[N s]``: ``|field|^2 + sigma n``."""
        y = field.abs().square() if self.params.square_law else field.real
        if self.noise_std > 0.0:
            y = y + self.noise_std * torch.randn(y.shape, generator=generator, dtype=y.dtype)
        return y

    def receive(self, y: torch.Tensor) -> torch.Tensor:
        """Matched filter and down-sampling: one sample per symbol ``[N]``."""
        s = self.params.oversampling
        rrc, _ = self.filters(y.shape[0])
        return s * torch.fft.ifft(torch.fft.fft(y) * rrc).real[::s]

    def windows(self, rx: torch.Tensor) -> torch.Tensor:
        """Windows ``[N, n_taps]`` of ``n_taps`` samples centred on each symbol (periodic)."""
        n = self.params.n_taps
        idx = (torch.arange(rx.shape[0]).unsqueeze(1) + torch.arange(n) - n // 2) % rx.shape[0]
        return rx[idx]

    def block(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One periodic block: windows ``[N, n_taps]`` (float32) and symbol indices ``[N]``."""
        n = self.params.block_symbols
        k = torch.randint(0, len(LEVELS), (n,), generator=generator)
        y = self.photodiode(self.fibre(self.transmit(k)), generator)
        return self.windows(self.receive(y)).float(), k

    def batch(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples: windows ``[n, n_taps]`` and symbol indices ``[n]``, drawn from
        ``ceil(n / block_symbols)`` independent blocks."""
        xs, ks, have = [], [], 0
        while have < n:
            x, k = self.block(generator)
            xs.append(x)
            ks.append(k)
            have += k.shape[0]
        return torch.cat(xs)[:n], torch.cat(ks)[:n]

    def __iter__(self):
        info = get_worker_info()
        generator = torch.Generator().manual_seed(self.seed + (info.id if info is not None else 0))
        left = math.inf if self.size is None else self.size
        if info is not None and self.size is not None:  # split the samples among the workers
            left = self.size // info.num_workers + (info.id < self.size % info.num_workers)
        while left > 0:
            x, k = self.block(generator)
            for i in range(int(min(left, k.shape[0]))):
                yield x[i], k[i]
            left -= k.shape[0]


# --- decisions and bit errors -------------------------------------------------------------
def symbol_bits(k: torch.Tensor) -> torch.Tensor:
    """Gray bits ``[..., 2]`` of symbol indices ``k``."""
    return torch.as_tensor(GRAY, device=k.device)[k]


def nearest_level(values: torch.Tensor) -> torch.Tensor:
    """Index of the PAM4 level nearest to each value (thresholds at -2, 0, 2)."""
    return torch.bucketize(values, torch.tensor([-2.0, 0.0, 2.0], dtype=values.dtype, device=values.device))


def bit_errors(decided: torch.Tensor, sent: torch.Tensor) -> int:
    """Number of wrong Gray bits between two tensors of symbol indices."""
    return int((symbol_bits(decided) != symbol_bits(sent)).sum())


def clopper_pearson(errors: int, bits: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of an error rate from ``errors`` out of
    ``bits``, by bisection on the binomial tail (computed in log space).

    >>> lo, hi = clopper_pearson(0, 1000)
    >>> lo, round(hi, 5)
    (0.0, 0.00368)
    """
    if not 0 <= errors <= bits or bits < 1:
        raise ParameterRangeError(
            f"clopper_pearson: errors = {errors}, bits = {bits}; need 0 <= errors <= bits."
        )
    alpha = 1.0 - confidence

    def cdf(k: int, p: float) -> float:  # P(X <= k), X ~ Binomial(bits, p)
        if k < 0:
            return 0.0
        if p <= 0.0:
            return 1.0
        if p >= 1.0:
            return 1.0 if k >= bits else 0.0
        lg = math.lgamma(bits + 1)
        terms = [
            lg
            - math.lgamma(i + 1)
            - math.lgamma(bits - i + 1)
            + i * math.log(p)
            + (bits - i) * math.log1p(-p)
            for i in range(k + 1)
        ]
        top = max(terms)
        return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))

    def solve(target, k, decreasing=True):  # p with cdf(k, p) = target; cdf falls with p
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if (cdf(k, mid) > target) == decreasing:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    lower = 0.0 if errors == 0 else solve(1.0 - alpha / 2.0, errors - 1)
    upper = 1.0 if errors == bits else solve(alpha / 2.0, errors)
    return lower, upper


class LMMSE:
    """Linear minimum-mean-square-error equaliser: ``a_hat = w . x + w_0`` on a window ``x``,
    fitted in closed form ``w = (X^T X)^-1 X^T a`` (``X`` with a column of ones for
    ``w_0``, ``a`` the sent levels), decided by the nearest level.

    >>> link = IMDD(noise_db=-20.0)
    >>> x, k = link.batch(20000, torch.Generator().manual_seed(0))
    >>> eq = LMMSE().fit(x, k)
    >>> 0.0 < bit_errors(eq.decide(x), k) / (2 * len(k)) < 0.05
    True
    """

    def __init__(self):
        self.weight: torch.Tensor | None = None  # [n_taps + 1], the bias last

    @staticmethod
    def _design(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ShapeError(f"LMMSE expects windows [samples, taps], got {list(x.shape)}.")
        x = x.double()
        return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)

    def fit(self, x: torch.Tensor, k: torch.Tensor) -> LMMSE:
        """Fit to windows ``x`` ``[n, taps]`` and sent symbol indices ``k`` ``[n]``."""
        a = torch.as_tensor(LEVELS, dtype=torch.float64)[k]
        design = self._design(x)
        self.weight = torch.linalg.solve(design.T @ design, design.T @ a)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Equalised levels ``[n]``."""
        if self.weight is None:
            raise RuntimeError("LMMSE: call fit(x, k) before equalising.")
        return self._design(x) @ self.weight

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        """Decided symbol indices ``[n]``."""
        return nearest_level(self(x))
