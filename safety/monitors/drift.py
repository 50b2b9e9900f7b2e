"""Tracker drift: confirmed tracks coasting too long where they should be seen, or whose
uncertainty runs away — the "autofocus drifts off the subject" failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy.stats import chi2

from perception.tracks import Tracks
from safety.channels import ChannelConfig
from safety.context import MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import ChannelSet, MonitorSettings, finding, label


class DriftConfig(MonitorSettings):
    """Bounds default to fractions of the channel tracker's own deletion limits."""

    max_coast_s: float | None = Field(
        default=None, gt=0
    )  # None: coast_fraction · tracker.max_coast
    coast_fraction: float = Field(default=0.5, gt=0, le=1)
    max_cov_trace: float | None = Field(
        default=None, gt=0
    )  # None: cov_fraction · tracker.max_cov_trace
    cov_fraction: float = Field(default=0.5, gt=0, le=1)
    growth_steps: int = Field(default=10, ge=2)  # consecutive updated steps of growing trace
    growth_factor: float = Field(default=4.0, gt=1)  # total growth over that run
    fov_margin_m: float = Field(default=2.0, ge=0)  # coasting counts only well inside the FOV
    fov_margin_px: float = Field(default=20.0, ge=0)
    duplicate_gate_probability: float = Field(default=0.999, gt=0, lt=1)  # coasting track
    # within this chi-square gate of an updated track is a duplicate, not a lost object


@dataclass
class _Growth:
    ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted
    trace: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    run: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    start: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


class DriftMonitor:
    """Per channel: which confirmed tracks coast inside the field of view or grow uncertain."""

    spec = MonitorSpec(
        name="drift",
        watches="time since update and position-covariance trace of each confirmed track",
        threshold="coasting > max_coast_s inside the field of view with no updated track in its "
        "gate; trace > max_cov_trace, "
        "or growing growth_factor× over growth_steps updated steps",
        impact=Impact.CHANNEL,
        kinds=("drift.coasting", "drift.covariance"),
    )

    def __init__(self, cfg: DriftConfig, channels: Sequence[ChannelConfig]) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        self._growth: dict[str, _Growth] = {}
        self._gate = float(chi2.ppf(cfg.duplicate_gate_probability, 2))

    def reset(self) -> None:
        """Forget covariance histories."""
        self._growth.clear()

    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings naming the drifting tracks of each channel."""
        out: list[Finding] = []
        for name, ch, obs in self.channels.visit(ctx):
            tr = obs.tracks if obs is not None else None
            if tr is None or len(tr) == 0:
                self._growth.pop(name, None)
                continue
            out += self._coasting(ctx, name, ch, tr)
            out += self._covariance(ctx, name, ch, tr)
        return out

    def _inside(self, ch: ChannelConfig, tr: Tracks) -> NDArray[np.bool_]:
        pos = np.asarray(tr.position, dtype=np.float64).reshape(-1, 2)
        fov = ch.fov
        if tr.space == "box" or ch.frame == "image":
            if fov.image_width is None or fov.image_height is None:
                return np.ones(len(pos), dtype=bool)
            return fov.contains(pos, margin=self.cfg.fov_margin_px)
        return fov.contains(pos, margin=self.cfg.fov_margin_m)

    def _taken_over(self, tr: Tracks, bad: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Which coasting tracks have an updated track of the same channel within the gate.

        The object is then still seen, under a new id (a duplicate the tracker will delete), so
        nothing is lost; d² uses the sum of both position covariances.
        """
        fresh = np.asarray(tr.updated, bool) & ~bad
        if not fresh.any():
            return np.zeros(int(bad.sum()), dtype=bool)
        pos = np.asarray(tr.position, dtype=np.float64)
        cov = np.asarray(tr.position_cov, dtype=np.float64)
        d = pos[bad][:, None, :] - pos[fresh][None, :, :]  # (B, U, 2)
        S = cov[bad][:, None] + cov[fresh][None, :]  # (B, U, 2, 2)
        det = S[..., 0, 0] * S[..., 1, 1] - S[..., 0, 1] * S[..., 1, 0]
        q = (
            S[..., 1, 1] * d[..., 0] ** 2
            - (S[..., 0, 1] + S[..., 1, 0]) * d[..., 0] * d[..., 1]
            + S[..., 0, 0] * d[..., 1] ** 2
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            d2 = np.where(det > 0, q / det, np.inf)
        return np.asarray(np.any(d2 <= self._gate, axis=1))

    def _coasting(
        self, ctx: StepContext, name: str, ch: ChannelConfig, tr: Tracks
    ) -> list[Finding]:
        limit = (
            self.cfg.max_coast_s
            if self.cfg.max_coast_s is not None
            else (self.cfg.coast_fraction * ch.tracker.max_coast)
        )
        tsu = np.asarray(tr.time_since_update, dtype=np.float64)
        bad = np.asarray(tr.confirmed, bool) & (tsu > limit) & self._inside(ch, tr)
        if bad.any():
            bad[bad] = ~self._taken_over(tr, bad)
        if not bad.any():
            return []
        ids = np.asarray(tr.ids)[bad]
        worst = float(tsu[bad].max())
        return [
            finding(
                self.spec,
                "drift.coasting",
                ctx.t,
                f"{label(name).capitalize()} has lost sight of {ids.size} tracked object(s) inside "
                f"its field of view for up to {worst:.2f} s (limit {limit:.2f} s); their positions "
                "are guesses.",
                channel=name,
                value=worst,
                threshold=limit,
                window=worst,
                track_ids=ids,
            )
        ]

    def _covariance(
        self, ctx: StepContext, name: str, ch: ChannelConfig, tr: Tracks
    ) -> list[Finding]:
        limit = (
            self.cfg.max_cov_trace
            if self.cfg.max_cov_trace is not None
            else (self.cfg.cov_fraction * ch.tracker.max_cov_trace)
        )
        ids = np.asarray(tr.ids, dtype=np.int64)
        trace = np.asarray(tr.cov_trace, dtype=np.float64)
        g = self._growth.get(name, _Growth())
        pos = np.searchsorted(g.ids, ids)
        pos_c = np.minimum(pos, max(g.ids.size - 1, 0))
        found = (
            (pos < g.ids.size) & (g.ids[pos_c] == ids) if g.ids.size else np.zeros(ids.size, bool)
        )
        prev_trace = np.where(found, g.trace[pos_c] if g.ids.size else 0.0, np.nan)
        prev_run = np.where(found, g.run[pos_c] if g.ids.size else 0, 0)
        prev_start = np.where(found, g.start[pos_c] if g.ids.size else 0.0, np.nan)
        grow = found & np.asarray(tr.updated, bool) & (trace > prev_trace)
        run = np.where(grow, prev_run + 1, 0)
        start = np.where(grow & (prev_run > 0), prev_start, np.where(grow, prev_trace, trace))
        order = np.argsort(ids, kind="stable")
        self._growth[name] = _Growth(ids[order], trace[order], run[order], start[order])
        confirmed = np.asarray(tr.confirmed, bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(start > 0, trace / start, np.inf)
        growing = confirmed & (run >= self.cfg.growth_steps) & (ratio >= self.cfg.growth_factor)
        big = confirmed & ~(trace <= limit)  # NaN trace counts as too big
        bad = big | growing
        if not bad.any():
            return []
        t_ids = ids[bad]
        worst = (
            float(np.nanmax(np.where(bad, trace, np.nan)))
            if np.isfinite(trace[bad]).any()
            else np.inf
        )
        if big.any():
            msg = (
                f"{label(name).capitalize()} is very unsure where {t_ids.size} tracked object(s) "
                f"are: position uncertainty (covariance trace) up to {worst:.3g}, limit "
                f"{limit:.3g}."
            )
            value, thr = worst, limit
        else:
            grown = float(np.max(ratio[growing]))
            msg = (
                f"The position uncertainty of {t_ids.size} object(s) tracked by {label(name)} "
                f"has grown {grown:.1f}-fold over {self.cfg.growth_steps}+ steps despite "
                f"updates (limit {self.cfg.growth_factor:g}-fold)."
            )
            value, thr = grown, self.cfg.growth_factor
        return [
            finding(
                self.spec,
                "drift.covariance",
                ctx.t,
                msg,
                channel=name,
                value=value,
                threshold=thr,
                track_ids=t_ids,
            )
        ]
