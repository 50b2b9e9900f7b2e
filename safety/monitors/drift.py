"""Tracker drift: confirmed tracks coasting too long where they should be seen, or whose
uncertainty runs away — the "autofocus drifts off the subject" failure."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy.stats import chi2

from perception.detections import Detections
from perception.kernels import BIN1, F2, IIN1, IN1, IN2, IN3, compiled
from perception.tracks import Tracks
from safety.channels import ChannelConfig, sector_masks
from safety.context import MonitorSpec, StepContext
from safety.crosscheck import hidden_among
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


# one channel's covariance histories, one row per track sorted by id: [id (exact as a float),
# trace per unit of noise, growing run (steps), trace at the run's start, noise of last update]
_NO_R = np.zeros((0, 2, 2))  # stands for "no usable R this step"


@compiled(nb.types.Tuple((F2, F2, nb.int64))(
    IN2, IIN1, IN1, BIN1, BIN1, IIN1, IN3, nb.int64, nb.float64, nb.float64))
def _growth_kernel(hist, ids, raw, updated, confirmed, det_index, R, growth_steps,
                   growth_factor, limit):
    """One step of the covariance-growth bookkeeping for all tracks of a channel (one call
    instead of ~30 numpy calls on a few rows).

    Per track: its noise scale (trace of the position block of the R of its update, else the
    last known one, else 1), trace per unit of noise, run of growing updated steps and the
    trace at its start. Returns the new history sorted by id (stable); per track its flag
    (1: trace above ``limit`` or NaN, 2: grown ``growth_factor``-fold over ``growth_steps``+
    steps, 3: both; confirmed tracks only) and growth ratio; and the number of flagged tracks.
    """
    n = ids.shape[0]
    if (raw.shape[0] != n or updated.shape[0] != n or confirmed.shape[0] != n
            or det_index.shape[0] != n):
        raise ValueError("track arrays differ in length")
    g = hist.shape[0]
    nd = R.shape[0]
    state = np.empty((n, 5))
    info = np.zeros((n, 2))
    n_bad = 0
    for i in range(n):
        tid = ids[i]
        lo = 0  # searchsorted, left
        hi = g
        while lo < hi:
            mid = (lo + hi) >> 1
            if hist[mid, 0] < tid:
                lo = mid + 1
            else:
                hi = mid
        found = lo < g and hist[lo, 0] == tid
        scale = np.nan
        k = det_index[i]
        if updated[i] and k >= 0 and k < nd:
            r = R[k, 0, 0] + R[k, 1, 1]
            if np.isfinite(r) and r > 0:
                scale = r
        if not np.isfinite(scale):
            scale = hist[lo, 4] if found else 1.0
        trace = raw[i] / scale
        prev_trace = hist[lo, 1] if found else np.nan
        prev_run = hist[lo, 2] if found else 0.0
        grow = found and updated[i] and trace > prev_trace
        run = prev_run + 1.0 if grow else 0.0
        if grow and prev_run > 0:
            start = hist[lo, 3]
        elif grow:
            start = prev_trace
        else:
            start = trace
        state[i, 0] = tid
        state[i, 1] = trace
        state[i, 2] = run
        state[i, 3] = start
        state[i, 4] = scale
        ratio = trace / start if start > 0 else np.inf
        info[i, 1] = ratio
        if confirmed[i]:
            f = 0.0
            if not raw[i] <= limit:
                f += 1.0
            if run >= growth_steps and ratio >= growth_factor:
                f += 2.0
            if f > 0:
                info[i, 0] = f
                n_bad += 1
    for i in range(1, n):
        if ids[i] < ids[i - 1]:  # not in id order: sort (the tracker's usually are)
            order = np.argsort(ids, kind="mergesort")
            sstate = np.empty((n, 5))
            for j in range(n):
                for c in range(5):
                    sstate[j, c] = state[order[j], c]
            return sstate, info, n_bad
    return state, info, n_bad


@compiled(nb.types.Tuple((F2, nb.int64, nb.int64))(
    IN2, IIN1, IN1, BIN1, BIN1, IIN1, IN3, IN1, IN1))
def _drift_kernel(hist, ids, raw, updated, confirmed, det_index, R, tsu, params):
    """:func:`_growth_kernel` (``params`` = [growth_steps, growth_factor, limit, shortest]) plus
    the number of confirmed tracks coasting longer than ``shortest``: one call per channel-step
    for the quiet case, where neither check has anything to say. Returns one (N, 7) array (the
    new history in columns 0-4, flag and growth ratio in 5-6: one returned array costs less
    than two), the number of flagged and the number of coasting tracks."""
    n = ids.shape[0]
    if tsu.shape[0] != n or confirmed.shape[0] != n or params.shape[0] != 4:
        raise ValueError("track arrays differ in length")
    state, info, n_bad = _growth_kernel(hist, ids, raw, updated, confirmed, det_index, R,
                                        int(params[0]), params[1], params[2])
    out = np.empty((n, 7))
    for i in range(n):
        for c in range(5):
            out[i, c] = state[i, c]
        out[i, 5] = info[i, 0]
        out[i, 6] = info[i, 1]
    shortest = params[3]
    n_coast = 0
    for i in range(n):
        if confirmed[i] and tsu[i] > shortest:
            n_coast += 1
    return out, n_bad, n_coast


@compiled(nb.types.UniTuple(nb.int64, 2)(
    IN2, BIN1, BIN1, IN1, nb.float64, IN2, IN1, nb.boolean, nb.float64, nb.float64))
def _learning_counts(pos, confirmed, updated, tsu, limit, limits, margins, occlusion, half_width,
                     occluder_half_width):
    """Track-steps that count for the miss rate (confirmed, coasting at most ``limit``, inside
    the ground sector ``limits`` shrunk by ``margins[0]``, not hidden behind such a track) and
    how many of them missed: the learning step of a ground channel with no coasting candidate,
    in one call (the same ``sector_masks`` and ``hidden_among`` the checks use)."""
    n = confirmed.shape[0]
    if (pos.shape[0] != n or pos.shape[1] != 2 or updated.shape[0] != n
            or tsu.shape[0] != n):
        raise ValueError("track arrays differ in length")
    inside = sector_masks(pos, limits, margins)
    seen = np.zeros(n, np.bool_)
    any_seen = False
    for i in range(n):
        if confirmed[i] and tsu[i] <= limit:
            seen[i] = True
            any_seen = True
    if occlusion and any_seen:
        hidden = hidden_among(pos, seen, half_width, occluder_half_width)
    else:
        hidden = np.zeros(n, np.bool_)
    eligible = 0
    missed = 0
    for i in range(n):
        if seen[i] and inside[i, 0, 0] and not hidden[i]:
            eligible += 1
            if not updated[i]:
                missed += 1
    return eligible, missed


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
        self._growth: dict[str, NDArray[np.float64]] = {}
        self._gate = float(chi2.ppf(cfg.duplicate_gate_probability, 2))
        self._limits: dict[tuple[float, int, float], float] = {}  # coast_limit's, memoised
        self._empty = np.zeros((0, 5))
        # per channel: its settings and _channel_params of them (recomputed if they change)
        self._params: dict[str, tuple[ChannelConfig, NDArray[np.float64]]] = {}
        self._margins = np.array([float(cfg.fov_margin_m)])
        self._margins.flags.writeable = False

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
            confirmed = np.asarray(tr.confirmed, bool)
            par = self._params.get(name)
            if par is None or par[0] is not ch:
                par = self._params[name] = (ch, self._channel_params(ch))
            # both checks' bookkeeping and quick tests in one call; findings only when one fires
            hist, info, n_bad, n_coast, ids, raw = self._step(name, tr, confirmed, par[1],
                                                              obs.detections if obs else None)
            st = self._miss.get(name)
            if n_coast:  # some track coasts: the full test
                out += self._coasting(ctx, name, ch, tr, confirmed)
            elif st is None or st[2] < 0:  # nothing coasts, the miss rate is still learnt
                self._learn_quietly(ctx, name, ch, tr, confirmed)
            self._growth[name] = hist
            if n_bad:
                out += self._covariance_finding(ctx, name, float(par[1][2]), info, ids, raw)
        return out

    def _learn_quietly(self, ctx: StepContext, name: str, ch: ChannelConfig, tr: Tracks,
                       confirmed: NDArray[np.bool_]) -> None:
        """:meth:`_coasting` while the miss rate is learnt and no track coasts (so it finds
        nothing): only its learning step, in one kernel call for ground channels."""
        fov = ch.fov
        pos = tr.position
        if (tr.space == "box" or ch.frame == "image" or (fov.image_width is not None
                and fov.image_height is not None) or type(pos) is not np.ndarray
                or pos.shape != (len(tr), 2)):
            self._coasting(ctx, name, ch, tr, confirmed)
            return
        margins = self._margins
        try:
            eligible, missed = _learning_counts(
                pos, confirmed, tr.updated, tr.time_since_update, self.coast_limit(name, ch),
                fov.sector_limits, margins, self.cfg.occlusion, self.cfg.object_half_width_m,
                self.cfg.occluder_half_width_m)
        except TypeError:  # vectors of other types: the general path
            self._coasting(ctx, name, ch, tr, confirmed)
            return
        self._learn_counts(name, eligible, missed)

    def _channel_params(self, ch: ChannelConfig) -> NDArray[np.float64]:
        """[growth_steps, growth_factor, covariance limit, shortest coasting limit] of ``ch``."""
        cfg = self.cfg
        limit = (cfg.max_cov_trace if cfg.max_cov_trace is not None
                 else (cfg.cov_fraction * ch.tracker.max_cov_trace))
        shortest = min(cfg.coast_fraction * ch.tracker.max_coast,
                       cfg.max_coast_s if cfg.max_coast_s is not None else np.inf)
        out = np.array([cfg.growth_steps, cfg.growth_factor, float(limit), float(shortest)])
        out.flags.writeable = False
        return out

    def _step(self, name: str, tr: Tracks, confirmed: NDArray[np.bool_],
              params: NDArray[np.float64], dets: Detections | None
              ) -> tuple[NDArray[np.float64], NDArray[np.float64], int, int, NDArray[np.int64],
                         NDArray[np.float64]]:
        """:func:`_drift_kernel` on this step's tracks: the new covariance history, per-track
        flags and growth ratios, the number of flagged and of coasting tracks, ids and traces."""
        R = _NO_R
        if dets is not None and len(dets) > 0:
            R = np.asarray(dets.R, dtype=np.float64)
            if R.ndim != 3 or R.shape[1] < 2 or R.shape[2] < 2:
                R = _NO_R
        hist = self._growth.get(name, self._empty)
        ids, raw = tr.ids, tr.cov_trace
        try:  # a tracker's int64 / float64 / bool vectors go in as they are
            both, n_bad, n_coast = _drift_kernel(
                hist, ids, raw, tr.updated, confirmed, tr.det_index, R, tr.time_since_update,
                params)
        except TypeError:  # anything else converted first
            ids = np.asarray(ids, dtype=np.int64)
            raw = np.asarray(raw, dtype=np.float64)
            both, n_bad, n_coast = _drift_kernel(
                hist, ids, raw, np.asarray(tr.updated, bool), np.asarray(confirmed, bool),
                np.asarray(tr.det_index, dtype=np.int64).reshape(-1), R,
                np.asarray(tr.time_since_update, dtype=np.float64), params)
        return both[:, :5], both[:, 5:], n_bad, n_coast, ids, raw

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
        key = (q, int(together), float(ch.tracker.max_coast))
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = self._coast_limit(q, int(together), ch)
        return limit

    def _coast_limit(self, q: float, together: int, ch: ChannelConfig) -> float:
        q_eff = min(max(q * self.cfg.miss_margin, 1e-6), 0.99)
        k = max(1, min(int(together), self.cfg.objects))
        p = self._p_run / math.comb(self.cfg.objects, k)
        n = int(np.ceil(np.log(p) / (k * np.log(q_eff))))
        floor = self.cfg.coast_fraction * ch.tracker.max_coast
        return max(floor, (n - 0.5) / self.step_rate_hz)

    def _learn_misses(self, name: str, eligible: NDArray[np.bool_], updated: NDArray[np.bool_]
                      ) -> None:
        self._learn_counts(name, int(np.count_nonzero(eligible)),
                           int(np.count_nonzero(eligible & ~updated)))

    def _learn_counts(self, name: str, eligible: int, missed: int) -> None:
        """Add ``eligible`` track-steps, ``missed`` of them without update, to the miss rate
        learnt for ``name`` (fixed once ``miss_reference_steps`` are in)."""
        st = self._miss.setdefault(name, [0.0, 0.0, -1.0])
        if st[2] >= 0:
            return
        st[0] += float(eligible)
        st[1] += float(missed)
        if st[0] >= self.cfg.miss_reference_steps:
            st[2] = st[1] / st[0]

    def _coasting(
        self, ctx: StepContext, name: str, ch: ChannelConfig, tr: Tracks,
        confirmed: NDArray[np.bool_],
    ) -> list[Finding]:
        tsu = np.asarray(tr.time_since_update, dtype=np.float64)
        # candidates: coasting, inside the field of view, not hidden behind a nearer object
        # this channel still sees (physics, not a fault: a long occlusion still ends in
        # covariance growth or deletion, and a track still unseen once the occluder has moved
        # on is reported again), not duplicated by an updated track in its gate
        shortest = min(self.cfg.coast_fraction * ch.tracker.max_coast,
                       self.cfg.max_coast_s if self.cfg.max_coast_s is not None else np.inf)
        bad = confirmed & (tsu > shortest)
        st = self._miss.get(name)
        learning = st is None or st[2] < 0
        if not learning and not bad.any():  # the common case: nothing to learn, nothing coasts
            return []
        limit = self.coast_limit(name, ch)  # one track's
        inside = self._inside(ch, tr)
        seen = confirmed & (tsu <= limit)  # not lost itself: it can hide what is behind it
        bad &= inside
        # occlusion only matters while the miss rate is learnt or when some track coasts
        hidden = (occluded(tr, seen, self.cfg.object_half_width_m,
                           self.cfg.occluder_half_width_m)
                  if self.cfg.occlusion and (learning or bad.any()) else np.zeros(len(tr), bool))
        if learning:
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

    def _covariance_finding(
        self, ctx: StepContext, name: str, limit: float, info: NDArray[np.float64],
        ids: NDArray[np.int64], raw: NDArray[np.float64],
    ) -> list[Finding]:
        """The finding for the tracks :func:`_growth_kernel` flagged: trace above the bound, or
        trace per unit of measurement noise growing.

        A track's covariance follows the noise its measurements declare (a camera's range noise
        grows with r², so a car pulling away from 9 to 20 m quadruples it): growth is judged per
        unit of that noise (the trace of the position block of R of each track's last update
        with a known R; 1 for tracks whose updates carry none), so only uncertainty the
        measurements do not explain counts.
        """
        flag = info[:, 0].astype(np.int64)
        ratio = info[:, 1]
        big = (flag & 1) != 0
        growing = (flag & 2) != 0
        bad = flag != 0
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
