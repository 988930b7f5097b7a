"""Vectorised search of CapMem values: all circuits at once, by measurement.

A :class:`Search` holds, for one CapMem cell, the targets of all circuits, the current
CapMem values and the last two measurements. The measured quantity is assumed monotonic in
the CapMem value and close to linear in a transformed domain (identity for potentials and
gains, logarithm for time constants, which bias currents set exponentially). Two probe
settings give a secant per circuit; each further measurement refines it (secant with a
safeguard that keeps the slope sign of the probes). The search never reads the physics:
it only sees what :mod:`.measure` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cysim import constants as C

CAPMEM_MAX = C.CAPMEM_MAX
_MIN_SECANT_SPAN = 24  # CapMem steps


@dataclass
class Search:
    """Secant search of one CapMem cell for all circuits.

    Parameters
    ----------
    cell : ChipConfig field name (e.g. ``"i_bias_leak"``)
    target : target per circuit, in measurement units
    probes : two arrays of CapMem values measured first
    log : search in the logarithm of the measured quantity
    tolerance : largest acceptable |measured - target| (absolute, or relative if ``relative``)
    relative : relative residuals (default: the same as ``log``)
    nan_step : CapMem step applied where a measurement failed (NaN) before the secant exists
    """

    cell: str
    target: np.ndarray
    probes: tuple[np.ndarray, np.ndarray]
    log: bool = False
    tolerance: float = 0.0
    nan_step: int = 0
    relative: bool | None = None
    active: np.ndarray | None = None
    x: np.ndarray = field(init=False)
    measured: np.ndarray = field(init=False)
    _points: list = field(init=False, default_factory=list)
    _probe_slope: np.ndarray | None = field(init=False, default=None)
    bound_values: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        self.target = np.asarray(self.target, dtype=np.float64)
        if self.relative is None:
            self.relative = self.log
        if self.active is None:
            self.active = np.isfinite(self.target)
        p0, p1 = (np.clip(np.rint(np.broadcast_to(p, self.target.shape)), 0, CAPMEM_MAX) for p in self.probes)
        p1 = np.where(p1 == p0, np.minimum(p0 + 20, CAPMEM_MAX), p1)
        p1 = np.where(p1 == p0, p0 - 20, p1)
        self._queue = [p0.astype(np.int64), p1.astype(np.int64)]
        self.x = self._queue[0]
        self.measured = np.full(self.target.shape, np.nan)

    def _t(self, m):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(m) if self.log else m

    def next_values(self) -> np.ndarray:
        """CapMem values to measure next (probes first, then secant updates)."""
        if self._queue:
            self.x = self._queue.pop(0)
            return self.x
        (x0, m0), (x1, m1) = self._points[-2], self._points[-1]
        tm0, tm1, tt = self._t(m0), self._t(m1), self._t(self.target)
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = (tm1 - tm0) / (x1 - x0)
        ref = self._probe_slope
        # close points give a slope dominated by measurement noise: keep the probes' one
        weak = ~np.isfinite(slope) | (np.sign(slope) != np.sign(ref)) | (np.abs(slope) < 0.2 * np.abs(ref))
        weak |= np.abs(x1 - x0) < _MIN_SECANT_SPAN
        slope = np.where(weak, ref, slope)
        # go from the better of the two last points
        better1 = ~(np.abs(tm0 - tt) < np.abs(tm1 - tt))
        xb, tb = np.where(better1, x1, x0), np.where(better1, tm1, tm0)
        with np.errstate(invalid="ignore", divide="ignore"):
            step = (tt - tb) / slope
        new = np.where(np.isfinite(step), xb + step, np.where(np.isfinite(tb), xb, x1 + self.nan_step))
        self.x = np.clip(np.rint(new), 0, CAPMEM_MAX).astype(np.int64)
        return self.x

    def record(self, measured: np.ndarray) -> None:
        """Store the measurement belonging to the last :meth:`next_values`."""
        measured = np.asarray(measured, dtype=np.float64)
        self.measured = measured
        at_bound = (self.x == 0) | (self.x == CAPMEM_MAX)
        for b in (0, CAPMEM_MAX):
            hit = (self.x == b) & np.isfinite(measured) & at_bound
            if hit.any():
                store = self.bound_values.setdefault(b, np.full(self.target.shape, np.nan))
                store[hit] = measured[hit]
        if self._queue and len(self._points) == 0 and self.nan_step:
            # a probe that could not be measured is shifted for the second probe too
            self._queue[0] = np.where(
                np.isfinite(measured), self._queue[0], np.clip(self._queue[0] + self.nan_step, 0, CAPMEM_MAX)
            )
        self._points.append((self.x.copy(), measured))
        if len(self._points) == 2:
            (x0, m0), (x1, m1) = self._points
            with np.errstate(invalid="ignore", divide="ignore"):
                slope = (self._t(m1) - self._t(m0)) / (x1 - x0)
            # circuits whose probes failed borrow the median slope of the others
            good = np.isfinite(slope) & (slope != 0)
            fill = np.median(slope[good]) if good.any() else (1.0 if not self.log else -1e-3)
            self._probe_slope = np.where(good, slope, fill)

    def slope(self) -> np.ndarray:
        """Slope of the (transformed) measurement per CapMem step, from the widest secant."""
        (x0, m0), (x1, m1) = self._points[-2], self._points[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            s = (self._t(m1) - self._t(m0)) / (x1 - x0)
        ok = (
            np.isfinite(s)
            & (np.sign(s) == np.sign(self._probe_slope))
            & (np.abs(x1 - x0) >= _MIN_SECANT_SPAN)
        )
        return np.where(ok, s, self._probe_slope)

    def setting_for(self, value: np.ndarray) -> np.ndarray:
        """CapMem values predicted to give ``value`` (extrapolated from the last measurement)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            x = self.x + (self._t(np.asarray(value, dtype=float)) - self._t(self.measured)) / self.slope()
        return np.clip(np.rint(np.where(np.isfinite(x), x, self.x)), 0, CAPMEM_MAX).astype(np.int64)

    def predict(self, x: np.ndarray, nominal) -> np.ndarray:
        """Expected measurement at CapMem ``x``: from the secant once two points exist, else
        ``nominal(x)`` (a design-value guess)."""
        if len(self._points) < 2:
            return nominal(x)
        (x1, m1) = self._points[-1]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            t = self._t(m1) + self.slope() * (np.asarray(x) - x1)
            value = np.exp(t) if self.log else t
        return np.where(np.isfinite(value), value, nominal(x))

    def residual(self) -> np.ndarray:
        """measured - target (relative for log searches), NaN where not calibrated."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.measured / self.target - 1.0 if self.relative else self.measured - self.target
        return np.where(self.active, r, np.nan)

    def failed(self) -> np.ndarray:
        """Circuits whose last measurement misses the target by more than the tolerance."""
        r = self.residual()
        return self.active & ~(np.abs(r) <= self.tolerance)
