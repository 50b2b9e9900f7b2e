"""Input-distribution drift: detection scores, detection rate and image statistics against a
reference window — "the model doesn't change, the world around the model changes".

Per channel and statistic the step values are averaged over blocks of ``block_s`` (which absorbs
frame-to-frame correlation), the first ``reference_blocks`` block means form the reference, and
later block means, standardised by the reference, feed a two-sided CUSUM.

The detection count depends on the world as much as on the sensor (objects come and go), so by
default (``rate_mode="relative"``, with two or more voting channels) a channel's count is divided
by the median count of the voting channels that delivered in that step: a change in the scene
moves all channels together and cancels, a channel that starts missing (or inventing) objects
does not. With three or more channels the median isolates the odd one; with two, both shares
move and both channels are flagged (which one is wrong cannot be told, as for a disagreement).
Channels with very different fields of view still see different shares as objects move between
them; use ``watch`` to leave "rate" out where that matters.

The reference is estimated, so the ARL maths is made conservative with probability
``reference_confidence`` over the reference sample: the standard deviation used is the upper
confidence bound s·sqrt((n−1)/χ²_{1−c}(n−1)) (floored by ``min_sigma``/``min_rel_sigma`` so a
practically irrelevant change never counts), and the CUSUM reference is widened by the mean's
uncertainty, k_eff = k + z_c·s/(√n·σ_used). h then follows from the false-alarm budget shared by
all channels × statistics (:func:`design_cusum`). The reference must be learnt on nominal
operation: a fault present from start-up becomes part of the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy.stats import chi2, norm

from safety.channels import ChannelConfig
from safety.context import ChannelObservation, MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import (
    ChannelSet,
    MonitorSettings,
    block_due,
    finding,
    is_valid,
    label,
)
from safety.monitors.changepoint import Cusum, arl_target, threshold_for_arl, two_sided_arl

FloatArray = NDArray[np.float64]
Stat = Literal["score", "rate", "brightness", "contrast", "sharpness"]
STATS: tuple[Stat, ...] = ("score", "rate", "brightness", "contrast", "sharpness")
KINDS: dict[str, str] = {
    "score": "distribution.score_shift",
    "rate": "distribution.rate_shift",
    "brightness": "distribution.brightness",
    "contrast": "distribution.contrast",
    "sharpness": "distribution.sharpness",
}
_WHAT: dict[str, str] = {
    "score": "mean detection score",
    "rate": "number of detections per frame",
    "brightness": "image brightness",
    "contrast": "image contrast",
    "sharpness": "image sharpness",
}


class DistributionConfig(MonitorSettings):
    """Which statistics, block and reference sizes, CUSUM reference and practical floors."""

    watch: tuple[Stat, ...] = STATS
    block_s: float = Field(default=0.5, gt=0)
    reference_blocks: int = Field(default=30, ge=5)
    reference_confidence: float = Field(default=0.95, gt=0.5, lt=1)
    k: float = Field(default=0.5, gt=0)
    cap: float = Field(default=1.5, gt=1)  # statistic cap, × h
    score_min_sigma: float = Field(default=0.03, gt=0)  # absolute, score units
    rate_mode: Literal["relative", "absolute"] = "relative"
    rate_min_sigma: float = Field(default=0.3, gt=0)  # detections per frame (absolute mode)
    relative_rate_min_sigma: float = Field(default=0.1, gt=0)  # share of the consensus
    rate_min_rel_sigma: float = Field(default=0.1, ge=0)
    image_min_rel_sigma: float = Field(default=0.05, ge=0)  # brightness, contrast
    sharpness_min_rel_sigma: float = Field(default=0.15, ge=0)
    image_min_sigma: float = Field(default=0.5, gt=0)  # grey levels (sharpness: its own units)
    false_alarms_per_hour: float | None = Field(default=None, gt=0)


@dataclass
class _Channel:
    start: float | None = None
    sums: FloatArray = field(default_factory=lambda: np.zeros(len(STATS)))
    counts: FloatArray = field(default_factory=lambda: np.zeros(len(STATS)))
    ref: list[FloatArray] = field(default_factory=list)
    frozen: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(len(STATS), bool))
    mu: FloatArray = field(default_factory=lambda: np.full(len(STATS), np.nan))
    sigma: FloatArray = field(default_factory=lambda: np.full(len(STATS), np.nan))
    last: FloatArray = field(default_factory=lambda: np.full(len(STATS), np.nan))
    cusum: Cusum | None = None


class DistributionMonitor:
    """Per channel: have scores, detection rate or image statistics left their reference?"""

    spec = MonitorSpec(
        name="distribution",
        watches="per-channel block means of detection score, detections per frame, image "
        "brightness, contrast and sharpness",
        threshold="two-sided CUSUM vs a learnt reference window; h from the false-alarm budget "
        "(Siegmund ARL0), conservative for the reference's estimation error",
        impact=Impact.CHANNEL,
        kinds=tuple(KINDS.values()),
    )

    def __init__(
        self,
        cfg: DistributionConfig,
        channels: Sequence[ChannelConfig],
        *,
        step_rate_hz: float = 10.0,
        budget_per_hour: float = 1e-3,
    ) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        self.step_rate_hz = float(step_rate_hz)
        self.budget = float(
            cfg.false_alarms_per_hour if cfg.false_alarms_per_hour is not None else budget_per_hour
        )
        self.watch = np.array([s in cfg.watch for s in STATS])
        self.streams = max(1, len(self.channels.configs)) * max(1, int(self.watch.sum()))
        self.samples_per_hour = 3600.0 / cfg.block_s
        self.relative_rate = cfg.rate_mode == "relative" and len(self.channels.voting) >= 2
        self._ch: dict[str, _Channel] = {}

    def false_alarm_rate(self) -> float:
        """Budgeted false alarms per hour over all channels and statistics (each CUSUM's h is
        chosen so its Siegmund ARL0 is ``streams`` × samples per hour / budget)."""
        return self.budget

    def arl0(self, k_eff: float) -> float:
        """In-control ARL (blocks) of one statistic's CUSUM when its reference widens k to k_eff."""
        return two_sided_arl(self._h(k_eff), k_eff)

    def _h(self, k_eff: float) -> float:
        return threshold_for_arl(
            arl_target(self.budget, self.samples_per_hour, self.streams), k_eff
        )

    def reset(self) -> None:
        """Forget references: they are learnt again from the next blocks."""
        self._ch.clear()

    def _sample(self, obs: ChannelObservation | None) -> FloatArray:
        x = np.full(len(STATS), np.nan)
        if obs is None:
            return x
        if is_valid(obs) and obs.detections is not None:
            n = len(obs.detections)
            x[1] = n
            if n:
                x[0] = float(np.mean(obs.detections.scores))
        st = obs.image_stats
        if st is not None:
            x[2:] = (st.brightness, st.contrast, st.sharpness)
        return np.where(self.watch & np.isfinite(x), x, np.nan)

    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings for channel statistics whose CUSUM is above threshold."""
        t = float(ctx.t)
        step = ctx.dt if ctx.dt > 0 else 1.0 / self.step_rate_hz
        out: list[Finding] = []
        visits = list(self.channels.visit(ctx))
        samples = [self._sample(obs) for _, _, obs in visits]
        if self.relative_rate:
            voting = [x[1] for (_, ch, _), x in zip(visits, samples, strict=True)
                      if ch.role != "shadow" and np.isfinite(x[1])]
            consensus = float(np.median(voting)) if len(voting) >= 2 else np.nan
            for x in samples:
                x[1] = x[1] / consensus if consensus > 0 else np.nan
        for (name, _ch, _obs), x in zip(visits, samples, strict=True):
            st = self._ch.setdefault(name, _Channel())
            if st.start is None:
                st.start = t
            ok = np.isfinite(x)
            st.sums = st.sums + np.where(ok, x, 0.0)
            st.counts = st.counts + ok
            if block_due(t, st.start, self.cfg.block_s, step):
                self._close(st)
                st.start = t + step
            if st.cusum is not None and st.cusum.alarm.any():
                out += self._findings(ctx, name, st)
        return out

    def _close(self, st: _Channel) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(st.counts > 0, st.sums / st.counts, np.nan)
        st.sums = np.zeros(len(STATS))
        st.counts = np.zeros(len(STATS))
        st.last = np.where(np.isfinite(mean), mean, st.last)
        learning = ~st.frozen
        if learning.any():
            st.ref.append(np.where(learning, mean, np.nan))
            self._maybe_freeze(st)
        if st.cusum is not None:
            z = (mean - st.mu) / st.sigma
            st.cusum.update(z, st.frozen & np.isfinite(z))

    def _maybe_freeze(self, st: _Channel) -> None:
        ref = np.array(st.ref)
        n = np.sum(np.isfinite(ref), axis=0)
        ready = ~st.frozen & (n >= self.cfg.reference_blocks)
        if not ready.any():
            return
        c = self.cfg
        if st.cusum is None:
            st.cusum = Cusum(c.k, np.inf, len(STATS), c.cap)
        rate_floor = c.relative_rate_min_sigma if self.relative_rate else c.rate_min_sigma
        floor_abs = np.array(
            [
                c.score_min_sigma,
                rate_floor,
                c.image_min_sigma,
                c.image_min_sigma,
                c.image_min_sigma,
            ]
        )
        floor_rel = np.array(
            [
                0.0,
                c.rate_min_rel_sigma,
                c.image_min_rel_sigma,
                c.image_min_rel_sigma,
                c.sharpness_min_rel_sigma,
            ]
        )
        z_c = float(norm.ppf(0.5 + 0.5 * c.reference_confidence))
        for i in np.flatnonzero(ready):
            v = ref[:, i][np.isfinite(ref[:, i])]
            m = v.size
            mu, s = float(v.mean()), float(v.std(ddof=1))
            s_ucb = s * np.sqrt((m - 1) / chi2.ppf(1.0 - c.reference_confidence, m - 1))
            sigma = max(s_ucb, floor_abs[i], floor_rel[i] * abs(mu))
            k_eff = c.k + z_c * s / (np.sqrt(m) * sigma)
            st.mu[i], st.sigma[i] = mu, sigma
            st.cusum.k[i], st.cusum.h[i] = k_eff, self._h(k_eff)
            st.frozen[i] = True
        if st.frozen.all() or not (self.watch & ~st.frozen).any():
            st.ref = []

    def _findings(self, ctx: StepContext, name: str, st: _Channel) -> list[Finding]:
        assert st.cusum is not None
        out: list[Finding] = []
        stat = st.cusum.statistic
        for i in np.flatnonzero(st.cusum.alarm):
            s = STATS[i]
            what = ("number of detections, relative to the other channels,"
                    if s == "rate" and self.relative_rate else _WHAT[s])
            direction = "risen" if st.cusum.direction[i] > 0 else "fallen"
            out.append(
                finding(
                    self.spec,
                    KINDS[s],
                    ctx.t,
                    f"The {what} of {label(name)} has {direction}: "
                    f"now {st.last[i]:.3g} against "
                    f"{st.mu[i]:.3g} ± {st.sigma[i]:.2g} in its reference (CUSUM {stat[i]:.1f}, "
                    f"limit {st.cusum.h[i]:.1f}); the input no longer looks like what it was "
                    "tuned on.",
                    channel=name,
                    value=float(stat[i]),
                    threshold=float(st.cusum.h[i]),
                    window=self.cfg.block_s,
                )
            )
        return out
