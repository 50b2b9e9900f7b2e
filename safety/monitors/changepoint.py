"""Change detectors (two-sided CUSUM, Page-Hinkley) and the run-length maths behind thresholds.

Thresholds are derived, not guessed: a detector watching ``streams`` standardised N(0, 1) streams
at ``samples_per_hour`` may raise at most ``budget_per_hour`` false alarms per hour, so each
stream needs an in-control average run length (ARL0) of at least
``streams * samples_per_hour / budget_per_hour`` samples. Siegmund's approximation gives the ARL of
a one-sided CUSUM ``S ← max(0, S + x − k)``, alarm when ``S > h``, for x ~ N(μ, 1)::

    ARL(μ) ≈ (exp(−2Δb) + 2Δb − 1) / (2Δ²),   Δ = μ − k,  b = h + 1.166   (b² when Δ = 0)

and a two-sided pair alarms at rate 1/ARL⁺ + 1/ARL⁻ (so in control ARL0 = ARL⁺(0)/2). The
approximation is accurate to a few percent for h ≥ 2 (checked by simulation in the tests).
Run lengths are close to geometric, so alarm rates of independent streams add.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from perception.kernels import BIN1, F1, IN1, compiled

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

SIEGMUND_CORRECTION = 1.166  # 2·0.583: the expected overshoot correction of a Gaussian CUSUM


def siegmund_arl(h: float, k: float, mu: float = 0.0) -> float:
    """Average run length (samples) of a one-sided upper CUSUM, reference ``k``, threshold ``h``.

    Observations are N(``mu``, 1). Siegmund's (1985) corrected Brownian approximation.
    """
    delta = mu - k
    b = h + SIEGMUND_CORRECTION
    if abs(delta) < 1e-9:
        return b * b
    x = 2.0 * delta * b
    if -x > 700.0:  # far in control: the exponential dominates
        return math.exp(min(-x, 700.0)) / (2.0 * delta * delta)
    return (math.exp(-x) + x - 1.0) / (2.0 * delta * delta)


def two_sided_arl(h: float, k: float, mu: float = 0.0) -> float:
    """ARL of a two-sided CUSUM (upper and lower arms, same ``k`` and ``h``) for N(mu, 1) data."""
    return 1.0 / (1.0 / siegmund_arl(h, k, mu) + 1.0 / siegmund_arl(h, k, -mu))


def arl_target(budget_per_hour: float, samples_per_hour: float, streams: int = 1) -> float:
    """Per-stream in-control ARL (samples) so ``streams`` streams stay within the alarm budget."""
    if budget_per_hour <= 0 or samples_per_hour <= 0:
        raise ValueError("budget_per_hour and samples_per_hour must be positive")
    return max(1, streams) * samples_per_hour / budget_per_hour


def threshold_for_arl(arl0: float, k: float, two_sided: bool = True) -> float:
    """Smallest CUSUM threshold ``h`` whose in-control ARL (Siegmund) reaches ``arl0`` samples."""
    if arl0 <= 1.0:
        return 0.0

    def gap(h: float) -> float:
        arl = two_sided_arl(h, k) if two_sided else siegmund_arl(h, k)
        return math.log(arl) - math.log(arl0)

    if gap(0.0) >= 0.0:
        return 0.0
    hi = 10.0
    while gap(hi) < 0.0:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"no finite threshold reaches ARL0 {arl0:g} with k={k}")
    return float(brentq(gap, 0.0, hi, xtol=1e-9))


@dataclass(frozen=True)
class CusumDesign:
    """A CUSUM threshold chosen from a false-alarm budget, with the figures that justify it."""

    k: float  # reference value (allowance), in standard deviations
    h: float  # decision threshold
    streams: int  # independent standardised streams the budget is shared by
    samples_per_hour: float
    arl0: float  # in-control ARL of one stream (samples)
    false_alarms_per_hour: float  # expected false alarms per hour over all streams

    def detection_delay(self, shift: float) -> float:
        """Expected samples to alarm after a step change of ``shift`` standard deviations."""
        return two_sided_arl(self.h, self.k, shift)

    def describe(self) -> str:
        """One line for specs and reports."""
        return (
            f"two-sided CUSUM k={self.k:.3g}, h={self.h:.3g}: ARL0 {self.arl0:.3g} samples per "
            f"stream, {self.false_alarms_per_hour:.3g} false alarms/h over {self.streams} streams"
        )


def design_cusum(
    k: float,
    budget_per_hour: float,
    samples_per_hour: float,
    streams: int = 1,
    h: float | None = None,
) -> CusumDesign:
    """Two-sided CUSUM threshold from an alarm budget (or the rate an explicit ``h`` gives)."""
    if h is None:
        h = threshold_for_arl(arl_target(budget_per_hour, samples_per_hour, streams), k)
    arl0 = two_sided_arl(h, k)
    return CusumDesign(
        k,
        h,
        max(1, streams),
        samples_per_hour,
        arl0,
        false_alarm_rate(arl0, samples_per_hour, streams),
    )


def false_alarm_rate(arl0: float, samples_per_hour: float, streams: int = 1) -> float:
    """False alarms per hour of ``streams`` independent detectors with in-control ARL ``arl0``."""
    return max(1, streams) * samples_per_hour / arl0


@compiled(nb.types.Tuple((F1, F1))(IN1, IN1, IN1, BIN1, IN1, IN1, nb.float64))
def _cusum_step(pos, neg, x, valid, k, h, cap):
    """One two-sided CUSUM step of every stream (streams not ``valid`` or with a non-finite
    sample hold), capped at ``cap · h`` where h > 0: numpy's ``where``/``clip`` steps in one
    call (clip's order: NaN kept, then max with 0, then min with the cap)."""
    n = pos.shape[0]
    p2 = np.empty(n)
    n2 = np.empty(n)
    for i in range(n):
        if not (valid[i] and math.isfinite(x[i])):
            p2[i] = pos[i]
            n2[i] = neg[i]
            continue
        lim = cap * h[i] if h[i] > 0 else np.inf
        for arm in range(2):
            v = pos[i] + x[i] - k[i] if arm == 0 else neg[i] - x[i] - k[i]
            if not (v != v or v > 0.0):
                v = 0.0
            if not (v != v or v < lim):
                v = lim
            if arm == 0:
                p2[i] = v
            else:
                n2[i] = v
    return p2, n2


class Cusum:
    """Vectorised two-sided CUSUM over a fixed number of standardised streams (k, h per stream).

    ``update(x, valid)`` advances the streams where ``valid`` (others hold) and returns the alarm
    mask ``max(S⁺, S⁻) > h``. Statistics are capped at ``cap · h`` (cap > 1) so that after a
    change ends the alarm clears within about ``(cap − 1)·h / k`` clean samples instead of growing
    without bound.
    """

    def __init__(
        self, k: float | FloatArray, h: float | FloatArray, n: int, cap: float = 1.5
    ) -> None:
        self.k = np.broadcast_to(np.asarray(k, dtype=np.float64), (n,)).copy()
        self.h = np.broadcast_to(np.asarray(h, dtype=np.float64), (n,)).copy()
        if n < 1 or not cap > 1 or np.any(self.k < 0) or np.any(self.h < 0):
            raise ValueError("need k >= 0, h >= 0, n >= 1, cap > 1 (inf: no cap)")
        self.cap = float(cap)
        self.pos = np.zeros(n)
        self.neg = np.zeros(n)

    def reset(self) -> None:
        """Back to the in-control state."""
        self.pos[:] = 0.0
        self.neg[:] = 0.0

    def update(self, x: FloatArray, valid: BoolArray | None = None) -> BoolArray:
        """Feed one standardised sample per stream; returns which streams are in alarm."""
        x = np.asarray(x, dtype=np.float64).reshape(self.pos.shape)
        ok = np.ones(x.shape, bool) if valid is None else np.asarray(valid, bool)
        if ok.shape != x.shape:
            ok = np.broadcast_to(ok, x.shape)
        self.pos, self.neg = _cusum_step(self.pos, self.neg, x, ok, self.k, self.h, self.cap)
        return self.alarm

    @property
    def alarm(self) -> BoolArray:
        """Streams whose statistic is above the threshold."""
        return np.maximum(self.pos, self.neg) > self.h

    @property
    def statistic(self) -> FloatArray:
        """max(S⁺, S⁻) per stream."""
        return np.maximum(self.pos, self.neg)

    @property
    def direction(self) -> FloatArray:
        """+1 where the upper arm leads, −1 where the lower arm does."""
        return np.where(self.pos >= self.neg, 1.0, -1.0)


class PageHinkley:
    """Page-Hinkley test: a CUSUM against the running mean instead of a known in-control mean.

    For unit-variance data it alarms when the cumulative deviation from the running mean, less
    ``delta`` per sample, rises ``lam`` above its minimum (either direction). Once the running
    mean has settled it behaves like a CUSUM with k = ``delta`` and h = ``lam``, so
    :func:`design_cusum` gives its threshold and ARL0 (slightly optimistic early on, when the
    running mean is still noisy). Useful where no in-control mean is known in advance.
    """

    def __init__(self, delta: float, lam: float, n: int = 1) -> None:
        self.delta, self.lam = float(delta), float(lam)
        self.count = np.zeros(n)
        self.mean = np.zeros(n)
        self.up = np.zeros(n)
        self.up_min = np.zeros(n)
        self.down = np.zeros(n)
        self.down_max = np.zeros(n)

    def reset(self) -> None:
        """Forget everything, including the running mean."""
        for a in (self.count, self.mean, self.up, self.up_min, self.down, self.down_max):
            a[:] = 0.0

    def update(self, x: FloatArray) -> BoolArray:
        """Feed one sample per stream; returns the alarm mask."""
        x = np.asarray(x, dtype=np.float64).reshape(self.mean.shape)
        ok = np.isfinite(x)
        xs = np.where(ok, x, 0.0)
        self.count = self.count + ok
        self.mean = np.where(
            ok, self.mean + (xs - self.mean) / np.maximum(self.count, 1.0), self.mean
        )
        dev = xs - self.mean
        self.up = np.where(ok, self.up + dev - self.delta, self.up)
        self.up_min = np.minimum(self.up_min, self.up)
        self.down = np.where(ok, self.down + dev + self.delta, self.down)
        self.down_max = np.maximum(self.down_max, self.down)
        return self.alarm

    @property
    def alarm(self) -> BoolArray:
        """Streams whose upward or downward excursion exceeds ``lam``."""
        return ((self.up - self.up_min) > self.lam) | ((self.down_max - self.down) > self.lam)


def simulate_run_lengths(
    h: float,
    k: float,
    n: int,
    rng: np.random.Generator,
    mu: float = 0.0,
    max_steps: int = 100_000,
    two_sided: bool = True,
) -> FloatArray:
    """Run lengths of ``n`` independent CUSUMs on N(mu, 1) data (for checking the ARL maths).

    Streams still quiet after ``max_steps`` report ``max_steps`` (a lower bound).
    """
    pos = np.zeros(n)
    neg = np.zeros(n)
    rl = np.full(n, float(max_steps))
    alive = np.ones(n, dtype=bool)
    for step in range(1, max_steps + 1):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        x = rng.standard_normal(idx.size) + mu
        pos[idx] = np.maximum(0.0, pos[idx] + x - k)
        hit = pos[idx] > h
        if two_sided:
            neg[idx] = np.maximum(0.0, neg[idx] - x - k)
            hit |= neg[idx] > h
        rl[idx[hit]] = step
        alive[idx[hit]] = False
    return rl
