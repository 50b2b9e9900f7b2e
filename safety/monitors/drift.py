"""Tracker drift: confirmed tracks coasting too long where they should be seen, or whose
uncertainty runs away — the "autofocus drifts off the subject" failure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy.stats import chi2

from perception.detections import Detections
from perception.tracks import Tracks
from safety.channels import ChannelConfig
from safety.context import MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import (
    BudgetedSettings,
    ChannelSet,
    finding,
    label,
    occluded,
)


class DriftConfig(BudgetedSettings):
    """Bounds default to fractions of the channel tracker's own deletion limits."""

    max_coast_s: float | None = Field(
        default=None, gt=0
    )  # None: from the channel's miss rate and the budget, at least coast_fraction·max_coast
    coast_fraction: float = Field(default=0.5, gt=0, le=1)
    miss_reference_steps: int = Field(default=100, ge=10)  # track-steps that fix the miss rate
    prior_miss: float = Field(default=0.05, gt=0, lt=1)  # assumed until then (a good detector)
    miss_margin: float = Field(default=1.5, ge=1)  # misses are likelier at the range limit
    objects: int = Field(default=10, ge=1)  # tracked objects per channel the budget covers
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
    occlusion: bool = True  # a track hidden behind a nearer, not lost track is not lost
    # sizes for that test (tracks carry none): the occluder a car, the hidden object a truck
    # seen slightly off-axis (partly hidden objects are detected less often: they count too)
    occluder_half_width_m: float = Field(default=0.9, gt=0)
    object_half_width_m: float = Field(default=1.5, gt=0)


@dataclass
class _Growth:
    ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted
    trace: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    run: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    start: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    scale: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))  # noise of last update


class DriftMonitor:
    """Per channel: which confirmed tracks coast inside the field of view or grow uncertain."""

    spec = MonitorSpec(
        name="drift",
        watches="time since update and position-covariance trace of each confirmed track",
        threshold="coasting beyond a limit from the channel's learnt miss rate and the "
        "false-alarm budget, inside the field of view with no updated track in its "
        "gate and no nearer updated track hiding it; trace > max_cov_trace, or trace per unit of "
        "measurement noise growing growth_factor× over growth_steps updated steps",
        impact=Impact.CHANNEL,
        kinds=("drift.coasting", "drift.covariance"),
    )

    def __init__(
        self,
        cfg: DriftConfig,
        channels: Sequence[ChannelConfig],
        *,
        step_rate_hz: float = 10.0,
        budget_per_hour: float = 1e-3,
    ) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        self.step_rate_hz = float(step_rate_hz)
        budget = cfg.budget(budget_per_hour)
        # per-track-step probability a healthy track may run into the coasting limit
        self._p_run = budget / (self.step_rate_hz * 3600.0 * cfg.objects)
        self._miss: dict[str, list[float]] = {}  # [eligible track-steps, missed, learnt rate]
        self._growth: dict[str, _Growth] = {}
        self._gate = float(chi2.ppf(cfg.duplicate_gate_probability, 2))

    def reset(self) -> None:
        """Forget covariance histories and learnt miss rates."""
        self._growth.clear()
        self._miss.clear()

    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings naming the drifting tracks of each channel."""
        out: list[Finding] = []
        for name, ch, obs in self.channels.visit(ctx):
            tr = obs.tracks if obs is not None else None
            if tr is None or len(tr) == 0:
                self._growth.pop(name, None)
                continue
            out += self._coasting(ctx, name, ch, tr)
            out += self._covariance(ctx, name, ch, tr, obs.detections if obs else None)
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

    def coast_limit(self, name: str, ch: ChannelConfig, together: int = 1) -> float:
        """Seconds ``together`` confirmed tracks may all coast before they count as lost.

        A healthy channel misses a visible object with some probability q per step (the sim
        camera 2–15 %, more at its range limit), independently from object to object, so k
        given tracks all coast n steps with probability q^(k·n). The limit is the n at which
        C(``objects``, k) · (q · ``miss_margin``)^(k·n) per step at ``step_rate_hz`` stays
        within the false-alarm budget: one track needs a long run (a chance run at the range
        limit is no fault), a channel losing all its tracks at once is named quickly. q is
        learnt from the channel's first ``miss_reference_steps`` eligible track-steps
        (``prior_miss`` until then); the limit is never below ``coast_fraction`` of the
        tracker's deletion age. Beyond the tracker's ``max_coast`` the tracker deletes first:
        lost objects are then the cross-check's (a miss) and the distribution monitor's.
        """
        if self.cfg.max_coast_s is not None:
            return self.cfg.max_coast_s
        st = self._miss.get(name)
        q = st[2] if st is not None and st[2] >= 0 else self.cfg.prior_miss
        q_eff = min(max(q * self.cfg.miss_margin, 1e-6), 0.99)
        k = max(1, min(int(together), self.cfg.objects))
        p = self._p_run / math.comb(self.cfg.objects, k)
        n = int(np.ceil(np.log(p) / (k * np.log(q_eff))))
        floor = self.cfg.coast_fraction * ch.tracker.max_coast
        return max(floor, (n - 0.5) / self.step_rate_hz)

    def _learn_misses(self, name: str, eligible: NDArray[np.bool_], updated: NDArray[np.bool_]
                      ) -> None:
        st = self._miss.setdefault(name, [0.0, 0.0, -1.0])
        if st[2] >= 0:
            return
        st[0] += float(eligible.sum())
        st[1] += float((eligible & ~updated).sum())
        if st[0] >= self.cfg.miss_reference_steps:
            st[2] = st[1] / st[0]

    def _coasting(
        self, ctx: StepContext, name: str, ch: ChannelConfig, tr: Tracks
    ) -> list[Finding]:
        limit = self.coast_limit(name, ch)  # one track's
        tsu = np.asarray(tr.time_since_update, dtype=np.float64)
        confirmed = np.asarray(tr.confirmed, bool)
        inside = self._inside(ch, tr)
        seen = confirmed & (tsu <= limit)  # not lost itself: it can hide what is behind it
        # candidates: coasting, inside the field of view, not hidden behind a nearer object
        # this channel still sees (physics, not a fault: a long occlusion still ends in
        # covariance growth or deletion, and a track still unseen once the occluder has moved
        # on is reported again), not duplicated by an updated track in its gate
        shortest = min(self.cfg.coast_fraction * ch.tracker.max_coast,
                       self.cfg.max_coast_s if self.cfg.max_coast_s is not None else np.inf)
        bad = confirmed & (tsu > shortest) & inside
        st = self._miss.get(name)
        learning = st is None or st[2] < 0
        # occlusion only matters while the miss rate is learnt or when some track coasts
        hidden = (occluded(tr, seen, self.cfg.object_half_width_m,
                           self.cfg.occluder_half_width_m)
                  if self.cfg.occlusion and (learning or bad.any()) else np.zeros(len(tr), bool))
        self._learn_misses(name, seen & inside & ~hidden, np.asarray(tr.updated, bool))
        bad &= ~hidden
        if bad.any():
            bad[bad] = ~self._taken_over(tr, bad)
        if not bad.any():
            return []
        # k tracks coasting at least their k-th longest time: lost if beyond the k-track limit
        order = np.sort(tsu[bad])[::-1]
        limits = np.array([self.coast_limit(name, ch, k + 1) for k in range(order.size)])
        over = np.flatnonzero(order > limits)
        if over.size == 0:
            return []
        k = int(over.max())
        limit = float(limits[k])
        bad &= tsu >= order[k]
        ids = np.asarray(tr.ids)[bad]
        worst = float(tsu[bad].max())
        return [
            finding(
                self.spec,
                "drift.coasting",
                ctx.t,
                f"{label(name).capitalize()} has lost sight of {ids.size} tracked object(s) inside "
                f"its field of view for up to {worst:.2f} s (limit {limit:.2f} s for {ids.size} "
                "together, from its miss rate and the false-alarm budget); their positions are "
                "guesses.",
                channel=name,
                value=worst,
                threshold=limit,
                window=worst,
                track_ids=ids,
            )
        ]

    @staticmethod
    def _noise_scale(tr: Tracks, dets: Detections | None) -> NDArray[np.float64]:
        """Trace of the position block of R of each track's update this step (NaN where unknown).

        A track's covariance follows the noise its measurements declare (a camera's range noise
        grows with r², so a car pulling away from 9 to 20 m quadruples it): growth is judged per
        unit of that noise, so only uncertainty the measurements do not explain counts.
        """
        n = len(tr)
        scale = np.full(n, np.nan)  # NaN: no update with a known R this step
        if dets is None or len(dets) == 0:
            return scale
        idx = np.asarray(tr.det_index, dtype=np.int64).reshape(-1)
        R = np.asarray(dets.R, dtype=np.float64)
        ok = (idx >= 0) & (idx < len(dets)) & np.asarray(tr.updated, bool)
        if not ok.any() or R.ndim != 3 or R.shape[1] < 2:
            return scale
        r = R[idx[ok], 0, 0] + R[idx[ok], 1, 1]
        scale[ok] = np.where(np.isfinite(r) & (r > 0), r, np.nan)
        return scale

    def _covariance(
        self, ctx: StepContext, name: str, ch: ChannelConfig, tr: Tracks,
        dets: Detections | None = None,
    ) -> list[Finding]:
        limit = (
            self.cfg.max_cov_trace
            if self.cfg.max_cov_trace is not None
            else (self.cfg.cov_fraction * ch.tracker.max_cov_trace)
        )
        ids = np.asarray(tr.ids, dtype=np.int64)
        raw = np.asarray(tr.cov_trace, dtype=np.float64)
        g = self._growth.get(name, _Growth())
        pos = np.searchsorted(g.ids, ids)
        pos_c = np.minimum(pos, max(g.ids.size - 1, 0))
        found = (
            (pos < g.ids.size) & (g.ids[pos_c] == ids) if g.ids.size else np.zeros(ids.size, bool)
        )
        # growth per unit of declared measurement noise (the last known R of each track; 1 for
        # tracks whose updates carry none), so R growing with range is not counted as drift
        scale = self._noise_scale(tr, dets)
        prev_scale = np.where(found, g.scale[pos_c] if g.ids.size else 1.0, 1.0)
        scale = np.where(np.isfinite(scale), scale, prev_scale)
        trace = raw / scale
        prev_trace = np.where(found, g.trace[pos_c] if g.ids.size else 0.0, np.nan)
        prev_run = np.where(found, g.run[pos_c] if g.ids.size else 0, 0)
        prev_start = np.where(found, g.start[pos_c] if g.ids.size else 0.0, np.nan)
        grow = found & np.asarray(tr.updated, bool) & (trace > prev_trace)
        run = np.where(grow, prev_run + 1, 0)
        start = np.where(grow & (prev_run > 0), prev_start, np.where(grow, prev_trace, trace))
        order = np.argsort(ids, kind="stable")
        self._growth[name] = _Growth(
            ids[order], trace[order], run[order], start[order], scale[order]
        )
        confirmed = np.asarray(tr.confirmed, bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(start > 0, trace / start, np.inf)
        growing = confirmed & (run >= self.cfg.growth_steps) & (ratio >= self.cfg.growth_factor)
        big = confirmed & ~(raw <= limit)  # NaN trace counts as too big
        bad = big | growing
        if not bad.any():
            return []
        t_ids = ids[bad]
        worst = (
            float(np.nanmax(np.where(bad, raw, np.nan)))
            if np.isfinite(raw[bad]).any()
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
                f"updates, more than their measurement noise explains (limit "
                f"{self.cfg.growth_factor:g}-fold)."
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
