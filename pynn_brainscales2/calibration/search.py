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

    def _line(self):
        """Least-squares line through every finite measured point of each circuit, in the
        transformed domain: ``(mean x, mean y, slope, usable)``."""
        xs = np.array([p[0] for p in self._points], dtype=np.float64)  # (points, circuits)
        ys = self._t(np.array([p[1] for p in self._points], dtype=np.float64))
        ok = np.isfinite(ys)
        n = ok.sum(0)
        xs0, ys0 = np.where(ok, xs, 0.0), np.where(ok, ys, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mx, my = xs0.sum(0) / n, ys0.sum(0) / n
            sxx = (ok * (xs0 - mx) ** 2).sum(0)
            slope = (ok * (xs0 - mx) * (ys0 - my)).sum(0) / sxx
        usable = (n >= 3) & (sxx > 0) & np.isfinite(slope) & (np.sign(slope) == np.sign(self._probe_slope))
        return mx, my, slope, usable

    def fitted(self, near: float = 0.05) -> np.ndarray:
        """CapMem values for the targets from all measured points instead of the last one.

        Every point within ``near`` of the target (relative for relative searches) gives an estimate ``x_i + (target - m_i) / slope``, with the slope of the
        least-squares line through all points of the circuit (the probes' where that line is
        unusable); their mean averages the noise of the single measurements. Circuits with
        fewer than two such points use the line itself, and the last setting where neither
        exists.
        """
        mx, my, slope, usable = self._line()
        tt = self._t(self.target)
        with np.errstate(invalid="ignore", divide="ignore"):
            x_line = mx + (tt - my) / slope
        x = np.where(usable & np.isfinite(x_line), x_line, self.x)
        xs = np.array([p[0] for p in self._points], dtype=np.float64)
        ys = self._t(np.array([p[1] for p in self._points], dtype=np.float64))
        # ``near`` is relative for log and relative searches, in measurement units otherwise
        close = np.isfinite(ys) & (
            np.abs(ys - tt) < (near * np.abs(tt) if self.relative and not self.log else near)
        )
        k = np.where(usable, slope, self._probe_slope)
        with np.errstate(invalid="ignore", divide="ignore"):
            est = np.where(close, xs + (tt - ys) / k, 0.0).sum(0) / close.sum(0)
        x = np.where((close.sum(0) >= 2) & np.isfinite(est), est, x)
        return np.clip(np.rint(x), 0, CAPMEM_MAX).astype(np.int64)

    def record_extra(self, x: np.ndarray, measured: np.ndarray) -> None:
        """Add a measurement at ``x`` to the points of the line (not a search step)."""
        self._points.append((np.asarray(x, dtype=np.int64).copy(), np.asarray(measured, dtype=np.float64)))

    def line_value(self, x: np.ndarray) -> np.ndarray:
        """The measured quantity at ``x`` read off the least-squares line (NaN where unusable)."""
        mx, my, slope, usable = self._line()
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            t = my + slope * (np.asarray(x, dtype=np.float64) - mx)
            v = np.exp(t) if self.log else t
        return np.where(usable, v, np.nan)

    def residual(self) -> np.ndarray:
        """measured - target (relative for log searches), NaN where not calibrated."""
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.measured / self.target - 1.0 if self.relative else self.measured - self.target
        return np.where(self.active, r, np.nan)

    def failed(self) -> np.ndarray:
        """Circuits whose last measurement misses the target by more than the tolerance."""
        r = self.residual()
        return self.active & ~(np.abs(r) <= self.tolerance)
