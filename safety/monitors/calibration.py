"""Calibration drift: persistent inter-channel position bias, by two-sided CUSUM per pair and axis.

Each step the crosscheck hands residuals r_i = a_i − b_i of associated objects with covariances
C_i. Their information-weighted mean β = (Σ C_i⁻¹)⁻¹ Σ C_i⁻¹ r_i has covariance (Σ C_i⁻¹)⁻¹; each
axis of β divided by its standard deviation is N(0, 1) when both channels are calibrated.

Tracker estimates are strongly autocorrelated (a steady-state constant-velocity filter at 10 Hz
has lag-1 correlation 0.7–0.9 of its normalised error), which would make a per-step CUSUM alarm
far more often than its ARL maths says. So the standardised values are averaged over blocks of
``block_s`` and each block mean is scaled by sqrt(n / ``variance_inflation``), the long-run
variance factor of such blocks. The default 8 covers what was measured for CV filters at 10 Hz
(q ∈ [0.1, 1], σ ∈ [0.2, 1] m: factors 3.8–7.9 for 1 s blocks); the block means are then close to
independent N(0, 1) and Siegmund's ARL applies per block.

Threshold: two-sided CUSUM, reference ``k``, threshold h from the budget shared by
pairs × 2 axes (:func:`design_cusum`). With the defaults (10⁻³ false alarms/h, 1 s blocks, one
pair) h ≈ 14.6 and a bias of 2 block standard deviations is found in ≈ 10 s.

Impact: with two voting channels the faulty one cannot be named (SYSTEM) — unless one of the
pair is already excluded as faulty (outside the cross-check's trusted ``active`` set): its known
fault explains the offset, so it is named (CHANNEL). With three or more, a channel common to every
drifting pair, in at least two of them, is named (CHANNEL); anything else is SYSTEM. Pairs with a
shadow channel are information only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from perception.kernels import F1, F2, IN2, IN3, compiled
from safety.channels import ChannelConfig
from safety.context import MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import (
    BudgetedSettings,
    ChannelSet,
    block_due,
    finding,
    label,
)
from safety.monitors.changepoint import Cusum, CusumDesign, design_cusum

FloatArray = NDArray[np.float64]
Pair = tuple[str, str]


class CalibrationConfig(BudgetedSettings):
    """CUSUM settings; ``threshold`` None means: derive h from the false-alarm budget."""

    k: float = Field(default=0.5, gt=0)  # reference, in block standard deviations
    threshold: float | None = Field(default=None, gt=0)
    block_s: float = Field(default=1.0, gt=0)
    variance_inflation: float = Field(default=8.0, ge=1)
    min_block_fill: float = Field(default=0.5, gt=0, le=1)  # share of a block's steps with data
    cap: float = Field(default=1.5, gt=1)  # statistic cap, × h


@compiled(nb.types.Tuple((F1, F2))(IN2, IN3))
def _bias_kernel(r, C):
    """Information-weighted mean of residual rows ``r`` (M, 2) with covariances ``C`` (M, 2, 2)
    and its covariance, over the rows that are finite with a positive definite C (NaN when
    none): the closed-form 2×2 inverses summed in one pass, no per-row arrays."""
    s00 = s01 = s10 = s11 = 0.0  # Σ C⁻¹
    v0 = v1 = 0.0  # Σ C⁻¹ r
    used = 0
    for n in range(r.shape[0]):
        x, y = r[n, 0], r[n, 1]
        a, b, c, d = C[n, 0, 0], C[n, 0, 1], C[n, 1, 0], C[n, 1, 1]
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(a) and np.isfinite(b)
                and np.isfinite(c) and np.isfinite(d)):
            continue
        det = a * d - b * c
        if not (a > 0 and d > 0 and det > 0):
            continue
        i00, i01, i10, i11 = d / det, -b / det, -c / det, a / det
        s00 += i00
        s01 += i01
        s10 += i10
        s11 += i11
        v0 += i00 * x + i01 * y
        v1 += i10 * x + i11 * y
        used += 1
    beta = np.full(2, np.nan)
    cov = np.full((2, 2), np.nan)
    if used:
        det = s00 * s11 - s01 * s10
        cov[0, 0], cov[0, 1], cov[1, 0], cov[1, 1] = s11 / det, -s01 / det, -s10 / det, s00 / det
        beta[0] = cov[0, 0] * v0 + cov[0, 1] * v1
        beta[1] = cov[1, 0] * v0 + cov[1, 1] * v1
    return beta, cov


def weighted_bias(res: FloatArray, cov: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Information-weighted mean of (M, 2) residuals and its (2, 2) covariance (NaN when no
    residual is usable: non-finite, or a covariance that is not positive definite)."""
    r = np.asarray(res, dtype=np.float64)
    C = np.asarray(cov, dtype=np.float64)
    if r.size == 0 or r.size % 2 or C.size != 2 * r.size:
        return np.full(2, np.nan), np.full((2, 2), np.nan)
    out: tuple[FloatArray, FloatArray] = _bias_kernel(r.reshape(-1, 2), C.reshape(-1, 2, 2))
    return out


@dataclass
class _Block:
    start: float | None = None
    sum: tuple[float, float] = (0.0, 0.0)  # Σ bias / its standard deviation, per axis
    n: int = 0
    bias: tuple[float, float] = (0.0, 0.0)  # Σ raw bias (m)


class CalibrationMonitor:
    """Per channel pair: is there a persistent position offset between the two channels?"""

    spec = MonitorSpec(
        name="calibration",
        watches="inter-channel residual bias per channel pair, normalised by residual covariance",
        threshold="two-sided CUSUM per pair and axis on 1 s block means; h from the false-alarm "
        "budget via Siegmund's ARL approximation",
        impact=Impact.SYSTEM,
        kinds=("calibration.drift",),
    )

    def __init__(
        self,
        cfg: CalibrationConfig,
        channels: Sequence[ChannelConfig],
        *,
        step_rate_hz: float = 10.0,
        budget_per_hour: float = 1e-3,
    ) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        budget = cfg.budget(budget_per_hour)
        n_pairs = max(1, len(list(combinations(self.channels.configs, 2))))
        self.design: CusumDesign = design_cusum(
            cfg.k, budget, 3600.0 / cfg.block_s, streams=2 * n_pairs, h=cfg.threshold
        )
        self.step_rate_hz = float(step_rate_hz)
        self._cusum: dict[Pair, Cusum] = {}
        self._block: dict[Pair, _Block] = {}
        self._bias: dict[Pair, FloatArray] = {}
        self._alarm: dict[Pair, bool] = {}  # a stream of the pair's CUSUM is in alarm

    def false_alarm_rate(self) -> float:
        """Expected false alarms per hour over all pairs and axes (Siegmund ARL0)."""
        return self.design.false_alarms_per_hour

    def reset(self) -> None:
        """All pairs back in control."""
        self._cusum.clear()
        self._block.clear()
        self._bias.clear()
        self._alarm.clear()

    def _feed(self, pair: Pair, t: float, res: FloatArray, cov: FloatArray) -> None:
        blk = self._block.get(pair)
        if blk is None:  # built only when new (not a throwaway default every step)
            blk = self._block[pair] = _Block()
        if blk.start is None:
            blk.start = t
        beta, cb = weighted_bias(res, cov)
        b0, b1 = beta.tolist()
        c = cb.ravel().tolist()
        if not all(math.isfinite(v) for v in (b0, b1, *c)) or not (c[0] > 0 and c[3] > 0):
            return
        sd0, sd1 = math.sqrt(c[0]), math.sqrt(c[3])
        if sd0 > 0 and sd1 > 0:
            blk.sum = (blk.sum[0] + b0 / sd0, blk.sum[1] + b1 / sd1)
            blk.bias = (blk.bias[0] + b0, blk.bias[1] + b1)
            blk.n += 1

    def _close_blocks(self, t: float, dt: float) -> None:
        step = dt if dt > 0 else 1.0 / self.step_rate_hz
        for pair, blk in self._block.items():
            if blk.start is None:
                continue
            if not block_due(t, blk.start, self.cfg.block_s, step):
                continue
            expected = max(1, round(self.cfg.block_s * self.step_rate_hz))
            cus = self._cusum.get(pair)
            if cus is None:
                cus = self._cusum[pair] = Cusum(self.cfg.k, self.design.h, 2, self.cfg.cap)
                self._alarm[pair] = False
            if blk.n >= self.cfg.min_block_fill * expected:
                z = np.array(blk.sum) / np.sqrt(blk.n * self.cfg.variance_inflation)
                self._alarm[pair] = bool(cus.update(z).any())
                self._bias[pair] = np.array(blk.bias) / blk.n
            self._block[pair] = _Block()

    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings for channel pairs whose CUSUM is above threshold."""
        cc = ctx.crosscheck
        t = float(ctx.t)
        if cc is not None:
            for pair, res in cc.residuals.items():
                if not (isinstance(pair, tuple) and len(pair) == 2):
                    continue
                cov = cc.residual_covs.get(pair)
                if cov is None or np.size(res) == 0:
                    continue
                self._feed((str(pair[0]), str(pair[1])), t, res, cov)
        self._close_blocks(t, float(ctx.dt))
        alarming = {p: self._cusum[p] for p, a in self._alarm.items() if a}
        if not alarming:
            return []
        shadow = {
            p
            for p in alarming
            if "shadow" in (self.channels.config(p[0]).role, self.channels.config(p[1]).role)
        }
        voting = {p: c for p, c in alarming.items() if p not in shadow}
        # a pair with one channel already excluded as faulty (not in the cross-check's trusted
        # set) is explained by that channel's known fault: it is named, not "one of the two"
        trusted = set(cc.active) if cc is not None else set()
        known = {p: self._excluded_of(p, trusted) for p in voting}
        known = {p: ch for p, ch in known.items() if ch is not None}
        voting = {p: c for p, c in voting.items() if p not in known}
        culprit = self._isolate(set(voting))
        out: list[Finding] = []
        for p in sorted(shadow):
            out.append(
                self._finding(ctx, p, alarming[p], channel=self._shadow_of(p), impact=Impact.INFO)
            )
        for p, ch in sorted(known.items()):
            out.append(
                self._finding(ctx, p, alarming[p], channel=ch, impact=Impact.CHANNEL, culprit=ch)
            )
        if culprit is not None:
            worst = max(voting, key=lambda p: float(voting[p].statistic.max()))
            out.append(
                self._finding(
                    ctx,
                    worst,
                    voting[worst],
                    channel=culprit,
                    impact=Impact.CHANNEL,
                    culprit=culprit,
                )
            )
        else:
            for p in sorted(voting):
                out.append(self._finding(ctx, p, voting[p], channel=None, impact=Impact.SYSTEM))
        return out

    @staticmethod
    def _excluded_of(p: Pair, trusted: set[str]) -> str | None:
        """The one member of ``p`` outside the trusted set (None: both or neither)."""
        out = [c for c in p if c not in trusted]
        return out[0] if len(out) == 1 and trusted else None

    def _shadow_of(self, p: Pair) -> str:
        return p[0] if self.channels.config(p[0]).role == "shadow" else p[1]

    def _isolate(self, pairs: set[Pair]) -> str | None:
        """The channel common to all drifting pairs, if in two or more (needs ≥ 3 channels)."""
        if len(pairs) < 2:
            return None
        common = set.intersection(*(set(p) for p in pairs))
        return next(iter(common)) if len(common) == 1 else None

    def _finding(
        self,
        ctx: StepContext,
        p: Pair,
        cus: Cusum,
        *,
        channel: str | None,
        impact: Impact,
        culprit: str | None = None,
    ) -> Finding:
        stat = cus.statistic
        axis = int(np.argmax(stat))
        bias = self._bias.get(p, np.full(2, np.nan))
        h = self.design.h
        what = (
            f"{label(culprit).capitalize()} is out of calibration: it disagrees with the other "
            "channels by"
            if culprit
            else f"Channels '{p[0]}' and '{p[1]}' disagree by"
        )
        tail = (
            "" if culprit else ("; one of them is out of calibration but it cannot be told which")
        )
        msg = (
            f"{what} a persistent offset of ({bias[0]:+.2f}, {bias[1]:+.2f}) "
            f"(CUSUM {stat[axis]:.1f} on axis {'xy'[axis]}, limit {h:.1f}){tail}."
        )
        return finding(
            self.spec,
            "calibration.drift",
            ctx.t,
            msg,
            channel=channel,
            impact=impact,
            value=float(stat[axis]),
            threshold=h,
            window=self.cfg.block_s,
        )
