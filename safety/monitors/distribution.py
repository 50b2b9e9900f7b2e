"""Input-distribution drift: has what a channel delivers left what it was tuned on? — "the model
doesn't change, the world around the model changes".

A drive changes its scene all the time (objects at other ranges, fewer objects, a car partly
hiding another), and a scene change is not a change of the input distribution. So no statistic
here compares a channel against its own raw past:

- **score**: only scores of detections that updated a confirmed, unoccluded track (clutter and
  partly hidden objects score differently and come and go with the scene), each minus the
  channel's reference mean score of its (label, range bin): camera scores fall with range, so the
  mix of ranges must not move the statistic.
- **rate**: the number of confirmed, unoccluded tracks a channel updates inside the field of view
  *all* voting channels of its frame share, relative to the median of those channels (per block:
  Σ own count / Σ median count, ``rate_mode="relative"``): a scene change moves every channel
  together and cancels. With three
  or more channels the median isolates the odd one. With two, both shares move whichever is
  wrong, so the channel is named only when the evidence points at it: its own count changed
  against its recent history while the other's did not; otherwise the finding is information.
  A channel with no peer in its frame can only be judged on its absolute count, which the scene
  moves: information only.
- **brightness / contrast**: an operating envelope (ODD bounds, checked from the first block on:
  below the night floor, saturated by glare, no contrast left), and a relative test.
- **sharpness** (and brightness, contrast): relative to the channel's reference, with a minimum
  effect size.

Relative tests: each statistic is averaged over blocks of ``block_s``; the first
``reference_blocks`` block values form the reference (for the score: the bin means are learnt
from the same blocks, then each block's mean residual; a bin first met later is learnt from its
first ``score_bin_samples`` scores and used from then on) (median m, and σ, the standard deviation's
upper confidence bound at ``reference_confidence``). Later block values, standardised
z = (x − m)/σ, feed a two-sided CUSUM whose reference value is
``k_eff = max(k + z_c·s/(√n·σ), min_shift/σ)``: ``min_shift`` is the minimum effect size a normal
drive never reaches (defaults below, with their reasons), so shifts smaller than it never
accumulate (an indifference zone: this monitor is for shifts that matter; the confidence gate and
the cross-check watch the rest), and the estimation error of the reference widens k as well. h
then follows from the false-alarm budget shared by all channels × statistics (Siegmund's ARL,
:func:`threshold_for_arl`), so the in-control rate is at most the budget
(``false_alarm_rate``); large effect sizes make k large and h small, so a shift well beyond the
effect size is named within a block or two. Measured: zero findings in the one-hour fault-free
highway drive and the one-minute urban stop-and-go drive of scenarios/ (the earlier design, a
CUSUM against the raw first 15 s, gave 24–36 per hour there).

The reference must be learnt on nominal operation: a fault present from start-up becomes part of
it (the envelope still applies from start-up).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy.stats import chi2, norm

from safety.channels import ChannelConfig
from safety.context import ChannelObservation, MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import (
    BudgetedSettings,
    ChannelSet,
    block_due,
    finding,
    is_valid,
    label,
    occluded,
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
    "score": "detection score (against its reference at the same range)",
    "rate": "number of objects it confirms",
    "brightness": "image brightness",
    "contrast": "image contrast",
    "sharpness": "image sharpness",
}
_S, _R, _B, _C, _H = range(5)
_SCORE = np.arange(len(STATS)) == _S
#: objects this close to the edge of a shared field of view are left out of the rate (m, px):
#: one channel may see them and the other not, by a tracking error's width
_FOV_MARGIN: dict[str, float] = {"ground": 2.0, "image": 20.0}
_MAX_K = 10.0  # σ is floored at min_shift / _MAX_K, so k_eff never exceeds this
_RECENT = 4  # blocks after a rate alarm's onset within which two-channel attribution decides
_OWN_RATIO = 3.0  # the named channel's own count moved at least this much more than the other's
Visit = tuple[str, ChannelConfig, ChannelObservation | None]
BinKey = tuple[int, int]  # (label, range bin)


class DistributionConfig(BudgetedSettings):
    """Statistics watched, blocks, reference, minimum effect sizes and the operating envelope.

    Minimum effect sizes (shifts below them never accumulate), chosen beyond what nominal
    driving produces and below what a fault that matters produces:

    - ``score_min_shift`` 0.1: conditioned on range, fault-free block means stay within ±0.03
      (the sim camera's score noise); the confidence faults worth naming cost 0.25 and more.
    - ``rate_min_shift`` 0.3 of the consensus: healthy channels' detection probabilities differ
      by ~10 % at the edge of their range; a dirty lens or glare costs 50–100 %.
    - image statistics, relative to the reference: brightness ±35 % and contrast ±50 % (an
      auto-exposed camera holds both; the sim's fault-free block means vary by ±5 %), sharpness
      ±60 % (scene content moves it by ±15 %; defocus, fog and glare take 80–100 %).

    The envelope (ODD bounds of an 8-bit camera, checked from start-up): mean brightness within
    ``brightness_range`` (below 40 the night floor, where an auto-exposed camera runs out of
    gain; above 215 most of the image is saturated by glare) and contrast (grey-level standard
    deviation) above ``contrast_floor``, for ``persist_blocks`` blocks.
    """

    watch: tuple[Stat, ...] = STATS
    block_s: float = Field(default=0.5, gt=0)
    reference_blocks: int = Field(default=30, ge=5)
    reference_confidence: float = Field(default=0.95, gt=0.5, lt=1)
    k: float = Field(default=0.5, gt=0)  # CUSUM allowance (σ units) when above the effect size
    cap: float = Field(default=1.5, gt=1)  # statistic cap, × h
    score_min_shift: float = Field(default=0.1, gt=0)  # score units
    score_bin_m: float = Field(default=10.0, gt=0)  # range bins of the score reference
    score_bin_samples: int = Field(default=30, ge=5)  # scores that fix a bin's reference
    rate_mode: Literal["relative", "absolute"] = "relative"
    rate_min_shift: float = Field(default=0.3, gt=0)  # fraction of the reference share / count
    rate_prior_sigma: float = Field(default=0.15, gt=0)  # share σ assumed until learnt
    brightness_min_shift: float = Field(default=0.35, gt=0)  # fraction of the reference
    contrast_min_shift: float = Field(default=0.5, gt=0)
    sharpness_min_shift: float = Field(default=0.6, gt=0)
    brightness_range: tuple[float, float] = (40.0, 215.0)  # 8-bit grey levels
    contrast_floor: float = Field(default=12.0, ge=0)
    persist_blocks: int = Field(default=2, ge=1)  # consecutive blocks outside the envelope
    attribution_blocks: int = Field(default=20, ge=2)  # own-history blocks, two-channel rates
    occluder_half_width_m: float = Field(default=0.9, gt=0)  # occlusion test (as in drift)
    object_half_width_m: float = Field(default=1.5, gt=0)

    @model_validator(mode="after")
    def _envelope_ordered(self) -> DistributionConfig:
        lo, hi = self.brightness_range
        if not 0 <= lo < hi:
            raise ValueError("brightness_range must be (low, high) with 0 <= low < high")
        return self


def _zeros() -> FloatArray:
    return np.zeros(len(STATS))


def _nans() -> FloatArray:
    return np.full(len(STATS), np.nan)


def _median(xs: list[float]) -> float:
    """Median of a few finite floats, as ``np.median`` gives it (middle value, or the mean of
    the two middle ones), without its array overhead (tens of µs for a handful of channels)."""
    v = sorted(xs)
    k = len(v) // 2
    return v[k] if len(v) % 2 else (v[k - 1] + v[k]) / 2.0


@dataclass
class _Channel:
    start: float | None = None
    sums: FloatArray = field(default_factory=_zeros)
    counts: FloatArray = field(default_factory=_zeros)
    ref: list[FloatArray] = field(default_factory=list)  # block values while learning
    frozen: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(len(STATS), bool))
    provisional: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(len(STATS), bool))
    relative: bool = False  # its rate is a share of its frame's consensus
    centre: FloatArray = field(default_factory=_nans)
    sigma: FloatArray = field(default_factory=_nans)
    min_shift: FloatArray = field(default_factory=_nans)
    cusum: Cusum = field(default_factory=lambda: Cusum(0.0, np.inf, len(STATS), np.inf))
    alarm: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(len(STATS), bool))
    last: FloatArray = field(default_factory=_nans)
    env_run: NDArray[np.int64] = field(default_factory=lambda: np.zeros(len(STATS), np.int64))
    env_alarm: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(len(STATS), bool))
    # score reference: raw (bin, score) samples per block until frozen, then fixed bin means
    score_block: list[tuple[BinKey, float]] = field(default_factory=list)
    score_ref: list[list[tuple[BinKey, float]]] = field(default_factory=list)
    bins: dict[BinKey, list[float]] = field(default_factory=dict)  # bins still learning
    bin_mean: dict[BinKey, float] = field(default_factory=dict)
    # own absolute counts (block means), for two-channel rate attribution
    n_sum: float = 0.0
    n_steps: int = 0
    history: deque[float] = field(default_factory=deque)
    total: int = 0  # blocks appended to history so far
    onset: int | None = None  # history block index where the current rate alarm began
    culprit: str | None = None


class DistributionMonitor:
    """Per channel: have scores, detection rate or image statistics left their reference or the
    operating envelope by more than a normal drive ever moves them?"""

    spec = MonitorSpec(
        name="distribution",
        watches="per-channel block means of range-conditioned scores of confirmed objects, "
        "objects confirmed in the shared field of view relative to the other channels, image "
        "brightness, contrast and sharpness",
        threshold="two-sided CUSUM vs a learnt reference, its allowance at least the minimum "
        "effect size; h from the false-alarm budget (Siegmund ARL0); image brightness/contrast "
        "outside the operating envelope for persist_blocks blocks",
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
        self.budget = cfg.budget(budget_per_hour)
        self.watch = np.array([s in cfg.watch for s in STATS])
        self.streams = max(1, len(self.channels.configs)) * max(1, int(self.watch.sum()))
        self.blocks_per_hour = 3600.0 / cfg.block_s
        self.relative_rate = cfg.rate_mode == "relative"
        self._ch: dict[str, _Channel] = {}

    def false_alarm_rate(self) -> float:
        """Budgeted in-control false alarms per hour over all channels and statistics (each
        CUSUM's h gives ARL0 = streams × blocks per hour / budget)."""
        return self.budget

    def arl0(self, k_eff: float) -> float:
        """In-control ARL (blocks) of one statistic's CUSUM whose allowance is ``k_eff``."""
        return two_sided_arl(self._h(k_eff), k_eff)

    def _h(self, k_eff: float) -> float:
        return threshold_for_arl(
            arl_target(self.budget, self.blocks_per_hour, self.streams), k_eff
        )

    def reset(self) -> None:
        """Forget references: they are learnt again from the next blocks."""
        self._ch.clear()

    # ------------------------------------------------------------------ per-step samples
    def _seen(self, obs: ChannelObservation | None) -> NDArray[np.bool_] | None:
        """Confirmed tracks updated this step and not hidden behind a nearer one (None: no
        usable tracks this step)."""
        if obs is None or not is_valid(obs) or obs.tracks is None:
            return None
        tr = obs.tracks
        seen = np.asarray(tr.confirmed, bool) & np.asarray(tr.updated, bool)
        if seen.any():
            seen &= ~occluded(tr, seen, self.cfg.object_half_width_m,
                              self.cfg.occluder_half_width_m)
        return seen

    def _bin_keys(self, obs: ChannelObservation, seen: NDArray[np.bool_]
                  ) -> tuple[list[BinKey], FloatArray]:
        """(label, range bin) and score of every seen track with a finite score."""
        tr = obs.tracks
        assert tr is not None
        scores = np.asarray(tr.scores, dtype=np.float64)[seen]
        labels = np.asarray(tr.labels, dtype=np.int64)[seen]
        if tr.space == "box":
            bins = np.zeros(len(scores), np.int64)
        else:
            pos = np.asarray(tr.position, dtype=np.float64)[seen]
            bins = (np.hypot(pos[:, 0], pos[:, 1]) // self.cfg.score_bin_m).astype(np.int64)
        ok = np.isfinite(scores) & (bins >= 0)
        keys = list(zip(labels[ok].tolist(), bins[ok].tolist(), strict=True))
        return keys, scores[ok]

    def _add_scores(self, st: _Channel, keys: list[BinKey], scores: FloatArray) -> None:
        """Residuals against known bins into the block; unknown bins learn (a few per step)."""
        if not st.frozen[_S]:
            st.score_block.extend(zip(keys, scores.tolist(), strict=True))
            return
        for key, sc in zip(keys, scores.tolist(), strict=True):
            mu = st.bin_mean.get(key)
            if mu is not None:
                st.sums[_S] += sc - mu
                st.counts[_S] += 1.0
                continue
            learning = st.bins.setdefault(key, [])
            learning.append(sc)
            if len(learning) >= self.cfg.score_bin_samples:
                st.bin_mean[key] = float(np.mean(learning))
                del st.bins[key]

    def _rate_counts(self, visits: list[Visit], seen: dict[str, NDArray[np.bool_] | None]
                     ) -> dict[str, float]:
        """Seen tracks inside the field of view shared by the voting channels of each frame."""
        peers: dict[str, list[ChannelConfig]] = {}
        for _, ch, _ in visits:
            if ch.role != "shadow":
                peers.setdefault(ch.frame, []).append(ch)
        counts: dict[str, float] = {}
        for name, ch, obs in visits:
            s = seen.get(name)
            if s is None or obs is None or obs.tracks is None:
                continue
            pos = np.asarray(obs.tracks.position, dtype=np.float64).reshape(-1, 2)[s]
            inside = np.ones(len(pos), bool)
            for peer in peers.get(ch.frame, []):
                inside &= peer.fov.contains(pos, margin=_FOV_MARGIN.get(ch.frame, 0.0))
            counts[name] = float(inside.sum())
        return counts

    def _groups(self, visits: list[Visit]) -> dict[str, list[str]]:
        """Voting channels by frame (rates are compared only within a frame)."""
        groups: dict[str, list[str]] = {}
        for name, ch, _ in visits:
            if ch.role != "shadow":
                groups.setdefault(ch.frame, []).append(name)
        return groups

    def _accumulate(self, visits: list[Visit], trusted: set[str]) -> None:
        seen = {name: self._seen(obs) for name, _, obs in visits}
        counts = self._rate_counts(visits, seen)
        groups = self._groups(visits)
        consensus: dict[str, float] = {}
        for frame, names in groups.items():
            # the consensus is the trusted channels' (a channel already known faulty, excluded
            # by the cross-check, is judged against it but is no yardstick for the others)
            have = [counts[n] for n in names if n in counts]
            good = [counts[n] for n in names if n in counts and n in trusted]
            consensus[frame] = (_median(good) if good and len(good) < len(have)
                                else _median(have) if len(have) >= 2 else np.nan)
        for name, ch, obs in visits:
            st = self._ch.get(name)
            if st is None:  # built only when new (not a throwaway default every step)
                st = self._ch[name] = _Channel()
            s = seen[name]
            if obs is not None and s is not None and self.watch[_S] and s.any():
                self._add_scores(st, *self._bin_keys(obs, s))
            if name in counts and self.watch[_R]:
                n = counts[name]
                st.n_sum += n
                st.n_steps += 1
                if self.relative_rate and len(groups.get(ch.frame, [])) >= 2:
                    st.relative = True
                    c = consensus.get(ch.frame, np.nan)
                    if c > 0:  # Σ own / Σ consensus over the block
                        st.sums[_R] += n
                        st.counts[_R] += c
                else:
                    st.sums[_R] += n
                    st.counts[_R] += 1.0
            im = obs.image_stats if obs is not None else None
            if im is not None:
                v = np.array([im.brightness, im.contrast, im.sharpness], dtype=np.float64)
                ok = np.isfinite(v) & self.watch[_B:]
                st.sums[_B:] += np.where(ok, v, 0.0)
                st.counts[_B:] += ok

    # ------------------------------------------------------------------ observe
    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings for channel statistics whose CUSUM is above threshold, or outside the
        envelope long enough."""
        t = float(ctx.t)
        step = ctx.dt if ctx.dt > 0 else 1.0 / self.step_rate_hz
        visits = list(self.channels.visit(ctx))
        cc = ctx.crosscheck
        voting = {n for n, c, _ in visits if c.role != "shadow"}
        trusted = set(cc.active) & voting if cc is not None and cc.active else voting
        self._accumulate(visits, trusted)
        closed = False
        for name, _ch, _obs in visits:
            st = self._ch[name]
            if st.start is None:
                st.start = t
            if block_due(t, st.start, self.cfg.block_s, step):
                self._close(st)
                st.start = t + step
                closed = True
        if closed:
            self._attribute_rates(visits, trusted)
        out: list[Finding] = []
        for name, ch, _obs in visits:
            st = self._ch[name]
            if st.alarm.any() or st.env_alarm.any():
                out += self._findings(ctx, name, ch, st, visits)
        return out

    def _close(self, st: _Channel) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(st.counts > 0, st.sums / st.counts, np.nan)
        st.sums, st.counts = _zeros(), _zeros()
        if st.n_steps:
            st.history.append(st.n_sum / st.n_steps)
            st.total += 1
            while len(st.history) > self.cfg.attribution_blocks + _RECENT + 2:
                st.history.popleft()
        st.n_sum, st.n_steps = 0.0, 0
        st.last = np.where(np.isfinite(mean), mean, st.last)
        self._envelope(st, mean)
        if not st.frozen[_S] and st.score_block:
            st.score_ref.append(st.score_block)
            st.score_block = []
            self._maybe_freeze_score(st)
        if st.relative and not st.frozen[_R] and self.watch[_R]:
            self._freeze_prior(st)
        learning = (~st.frozen | st.provisional) & self.watch
        learning[_S] = False
        if learning.any():
            st.ref.append(np.where(learning, mean, np.nan))
            ref = np.array(st.ref)
            for i in np.flatnonzero(learning):
                v = ref[:, i][np.isfinite(ref[:, i])]
                if v.size >= self.cfg.reference_blocks:
                    self._freeze(st, int(i), v)
            if not ((~st.frozen | st.provisional) & self.watch & ~_SCORE).any():
                st.ref = []
        known = st.frozen & np.isfinite(mean)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (mean - st.centre) / st.sigma
        st.alarm = st.cusum.update(np.where(known, z, 0.0), known) & st.frozen

    def _envelope(self, st: _Channel, mean: FloatArray) -> None:
        lo, hi = self.cfg.brightness_range
        out = np.zeros(len(STATS), bool)
        known = np.zeros(len(STATS), bool)
        if self.watch[_B] and np.isfinite(mean[_B]):
            known[_B] = True
            out[_B] = not lo <= mean[_B] <= hi
        if self.watch[_C] and np.isfinite(mean[_C]):
            known[_C] = True
            out[_C] = mean[_C] < self.cfg.contrast_floor
        st.env_run = np.where(out, st.env_run + 1, np.where(known, 0, st.env_run))
        st.env_alarm = st.env_run >= self.cfg.persist_blocks

    def _maybe_freeze_score(self, st: _Channel) -> None:
        """Once ``reference_blocks`` blocks held scores: bin means from them, then the block
        mean residuals of the same blocks form the score reference."""
        if len(st.score_ref) < self.cfg.reference_blocks:
            return
        pooled: dict[BinKey, list[float]] = {}
        for blk in st.score_ref:
            for key, sc in blk:
                pooled.setdefault(key, []).append(sc)
        for key, v in pooled.items():
            if len(v) >= self.cfg.score_bin_samples:
                st.bin_mean[key] = float(np.mean(v))
        values = []
        for blk in st.score_ref:
            res = [sc - st.bin_mean[key] for key, sc in blk if key in st.bin_mean]
            if res:
                values.append(float(np.mean(res)))
        if len(values) < self.cfg.reference_blocks:
            if len(st.score_ref) > 4 * self.cfg.reference_blocks:  # bound memory; keep learning
                st.score_ref.pop(0)
            st.bin_mean.clear()
            return
        st.bins = {k: v for k, v in pooled.items() if k not in st.bin_mean}
        st.score_ref = []
        self._freeze(st, _S, np.array(values))

    def _min_shift(self, i: int, centre: float) -> float:
        c = self.cfg
        if i == _S:
            return c.score_min_shift
        if i == _R:
            return c.rate_min_shift * max(abs(centre), 1.0 if self.relative_rate else 0.5)
        rel = {_B: c.brightness_min_shift, _C: c.contrast_min_shift, _H: c.sharpness_min_shift}
        return rel[i] * max(abs(centre), 1e-9)

    def _freeze_prior(self, st: _Channel) -> None:
        """Relative rate before its reference is learnt: healthy redundant channels confirm the
        same objects in their shared field of view, so the share starts at 1 ± ``rate_prior_
        sigma`` (wider than the 0.06–0.09 measured on fault-free drives); a blind channel is
        caught from the first blocks on, not only after the reference window."""
        c = self.cfg
        if not np.isfinite(st.cusum.h).any():
            st.cusum = Cusum(c.k, np.inf, len(STATS), c.cap)
        shift = self._min_shift(_R, 1.0)
        k_eff = max(c.k, shift / c.rate_prior_sigma)
        st.centre[_R], st.sigma[_R], st.min_shift[_R] = 1.0, c.rate_prior_sigma, shift
        st.cusum.k[_R], st.cusum.h[_R] = k_eff, self._h(k_eff)
        st.frozen[_R] = st.provisional[_R] = True

    def _freeze(self, st: _Channel, i: int, v: FloatArray) -> None:
        """Fix statistic ``i``'s reference from its block values ``v`` and design its CUSUM."""
        c = self.cfg
        if not np.isfinite(st.cusum.h).any():
            st.cusum = Cusum(c.k, np.inf, len(STATS), c.cap)
        z_c = float(norm.ppf(0.5 + 0.5 * c.reference_confidence))
        m = v.size
        centre, s = float(np.median(v)), float(v.std(ddof=1))
        shift = self._min_shift(i, centre)
        s_ucb = s * np.sqrt((m - 1) / chi2.ppf(1.0 - c.reference_confidence, m - 1))
        sigma = max(s_ucb, shift / _MAX_K)  # a noiseless reference still has a finite σ
        k_eff = max(c.k + z_c * s / (np.sqrt(m) * sigma), shift / sigma)
        st.centre[i], st.sigma[i], st.min_shift[i] = centre, sigma, shift
        st.cusum.k[i], st.cusum.h[i] = k_eff, self._h(k_eff)
        st.frozen[i] = True
        st.provisional[i] = False

    # ------------------------------------------------------------------ attribution
    def _attribute_rates(self, visits: list[Visit], trusted: set[str]) -> None:
        """Two voting channels in a frame: name the one whose own count moved (by the effect
        size, and ``_OWN_RATIO`` times more than the other's) — a sensor going blind or seeing
        ghosts while the scene holds; else nobody (both moved: a scene change and a fault look
        alike with two channels).

        Own counts after the alarm's onset (from the block before it) are compared with those
        before; the decision is taken within ``_RECENT`` blocks of the onset and kept while the
        alarm lasts. Heuristic limit: if the scene fills up exactly as one channel goes blind,
        the other (whose count rose) is named; the cross-check's per-object misses still point
        at the blind one. A channel already excluded as faulty (outside the cross-check's trusted
        set) is the one named: a frozen camera re-sending old objects keeps its count while the
        healthy one's follows the scene.
        """
        for names in self._groups(visits).values():
            sts = [self._ch[n] for n in names]
            if len(names) != 2 or not any(st.alarm[_R] for st in sts):
                for st in sts:
                    st.culprit, st.onset = None, None
                continue
            onsets = []
            for st in sts:
                if st.onset is None:
                    st.onset = st.total - 2  # the change may have begun in the block before
                onsets.append(st.total - st.onset)
            if sts[0].culprit is not None or min(onsets) > _RECENT + 2:
                continue  # decided, or too long after the onset to tell
            excluded = [n for n in names if n not in trusted]
            if len(excluded) == 1:  # one is already known faulty: its fault explains the shift
                for st in sts:
                    st.culprit = excluded[0]
                continue
            moved = np.array([self._own_change(st) for st in sts])
            culprit: str | None = None
            for j in (0, 1):
                mine, other = abs(moved[j]), abs(moved[1 - j])
                if mine >= self.cfg.rate_min_shift and mine >= _OWN_RATIO * other:
                    culprit = names[j]
            for st in sts:
                st.culprit = culprit

    @staticmethod
    def _own_change(st: _Channel) -> float:
        """Relative change of the channel's own count since the alarm's onset (NaN without
        enough history on either side)."""
        if st.onset is None:
            return np.nan
        h = np.array(st.history, dtype=np.float64)
        split = st.onset - (st.total - h.size)  # index of the onset block in the history
        if split < 4 or split >= h.size:
            return np.nan
        before, after = float(h[:split].mean()), float(h[split:].mean())
        return (after - before) / max(before, 0.5)

    # ------------------------------------------------------------------ findings
    def _findings(self, ctx: StepContext, name: str, ch: ChannelConfig, st: _Channel,
                  visits: list[Visit]) -> list[Finding]:
        out: list[Finding] = []
        lo, hi = self.cfg.brightness_range
        for i in np.flatnonzero(st.env_alarm):
            s = STATS[i]
            v = float(st.last[i])
            if s == "brightness":
                where, limit = (f"below its floor {lo:g}", lo) if v < lo else (
                    f"above its ceiling {hi:g}", hi)
            else:
                where, limit = f"below its floor {self.cfg.contrast_floor:g}", \
                    self.cfg.contrast_floor
            out.append(finding(
                self.spec, KINDS[s], ctx.t,
                f"The {_WHAT[s]} of {label(name)} is {v:.3g}, {where}: the camera is outside "
                "the conditions it is specified for.",
                channel=name, value=v, threshold=limit,
                window=self.cfg.block_s * self.cfg.persist_blocks,
            ))
        peers = self._groups(visits).get(ch.frame, [])
        stat = st.cusum.statistic
        for i in np.flatnonzero(st.alarm & ~st.env_alarm):
            s = STATS[i]
            impact: Impact | None = None
            why = "the input no longer looks like what it was tuned on."
            if s == "rate" and ch.role != "shadow" and self.relative_rate:
                if len(peers) < 2:
                    impact = Impact.INFO
                    why = ("a lone channel's count also follows the scene, so this is "
                           "information only.")
                elif len(peers) == 2:
                    if st.culprit is None:
                        impact = Impact.INFO
                        why = ("with two channels both shares move, and neither channel's own "
                               "count changed alone, so it cannot be told which one is wrong.")
                    elif st.culprit != name:
                        continue  # the other channel is the one whose own count moved
            what = ("number of objects it confirms, relative to the other channels,"
                    if s == "rate" and self.relative_rate and len(peers) >= 2 else _WHAT[s])
            direction = "risen" if st.cusum.direction[i] > 0 else "fallen"
            out.append(finding(
                self.spec, KINDS[s], ctx.t,
                f"The {what} of {label(name)} has {direction}: now {st.last[i]:.3g} against "
                f"{st.centre[i]:.3g} ± {st.sigma[i]:.2g} in its reference, beyond the "
                f"{st.min_shift[i]:.2g} a normal drive moves it (CUSUM {stat[i]:.1f}, limit "
                f"{st.cusum.h[i]:.1f}); {why}",
                channel=name, impact=impact, value=float(stat[i]),
                threshold=float(st.cusum.h[i]), window=self.cfg.block_s,
            ))
        return out
