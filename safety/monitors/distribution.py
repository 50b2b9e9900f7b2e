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

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy.stats import chi2, norm

from perception.kernels import BIN1, F1, IIN1, IN1, IN2, compiled
from safety.channels import ChannelConfig, FieldOfView, sector_masks
from safety.context import ChannelObservation, MonitorSpec, StepContext
from safety.crosscheck import hidden_among
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
#: objects this close to the edge of a shared field of view are left out of the rate (m, px):
#: one channel may see them and the other not, by a tracking error's width
_FOV_MARGIN: dict[str, float] = {"ground": 2.0, "image": 20.0}
_MAX_K = 10.0  # σ is floored at min_shift / _MAX_K, so k_eff never exceeds this
_RECENT = 4  # blocks after a rate alarm's onset within which two-channel attribution decides
_OWN_RATIO = 3.0  # the named channel's own count moved at least this much more than the other's
Visit = tuple[str, ChannelConfig, ChannelObservation | None]
BinKey = tuple[int, int]  # (label, range bin)
IntArray = NDArray[np.int64]
Samples = tuple[IntArray, IntArray, FloatArray]  # labels, range bins, scores
_NO_POS = np.zeros((0, 2))
_TABLE_LABELS, _TABLE_BINS = 64, 4096  # bin means held in the dense lookup (others: the dict)
_INT64_END = 9.223372036854775807e18  # 2**63: range bins at or beyond it are not representable


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


def _nans() -> FloatArray:
    return np.full(len(STATS), np.nan)


def _median(xs: list[float]) -> float:
    """Median of a few finite floats, as ``np.median`` gives it (middle value, or the mean of
    the two middle ones), without its array overhead (tens of µs for a handful of channels)."""
    v = sorted(xs)
    k = len(v) // 2
    return v[k] if len(v) % 2 else (v[k - 1] + v[k]) / 2.0


@compiled(nb.types.Tuple((nb.int64[::1], nb.int64[::1], F1))(
    IN1, IIN1, IN2, BIN1, nb.float64, nb.boolean))
def _score_samples(scores, labels, pos, seen, bin_m, ranged):
    """(label, range bin, score) of every seen track with a finite score and a representable
    bin (bin 0 when not ``ranged``): the numpy selection and ``hypot // bin_m`` in one call."""
    n = seen.shape[0]
    lab = np.empty(n, np.int64)
    bins = np.empty(n, np.int64)
    sc = np.empty(n)
    m = 0
    for t in range(n):
        if not seen[t] or not math.isfinite(scores[t]):
            continue
        b = 0
        if ranged:
            q = np.hypot(pos[t, 0], pos[t, 1]) // bin_m
            if not (q >= 0.0 and q < _INT64_END):  # NaN, inf, overflow: no bin
                continue
            b = int(q)
        lab[m] = labels[t]
        bins[m] = b
        sc[m] = scores[t]
        m += 1
    return lab[:m].copy(), bins[:m].copy(), sc[:m].copy()


@compiled(nb.types.Tuple((nb.float64, nb.float64, nb.int64))(
    IIN1, IIN1, IN1, IN2, nb.float64, nb.float64, nb.int64))
def _score_residuals(lab, bins, sc, table, s, c, start):
    """Adds score − bin mean to the running sum ``s`` (count ``c``) in order from ``start``, up
    to the first sample whose bin the dense ``table`` does not hold (NaN); returns its index
    (the length when all were known), so the caller deals with it and resumes."""
    n_lab, n_bin = table.shape
    for i in range(start, sc.shape[0]):
        a, b = lab[i], bins[i]
        if a < 0 or a >= n_lab or b < 0 or b >= n_bin:
            return s, c, i
        mu = table[a, b]
        if mu != mu:
            return s, c, i
        s += sc[i] - mu
        c += 1.0
    return s, c, sc.shape[0]


_SAMPLE, _FROZEN = 1, 2  # _channel_step modes: collect score samples; add their residuals
_NONE_SEEN = (True, 0.0, 0, 0.0, 0.0, 0)  # _channel_step's result for a channel without tracks


@compiled(nb.types.Tuple((nb.boolean, nb.float64, nb.int64, nb.float64, nb.float64, nb.int64))(
    BIN1, BIN1, IN2, IN1, IIN1, IN2, nb.int64[:, ::1], F1, IN2, nb.int64, nb.int64, nb.float64,
    nb.float64))
def _channel_step(confirmed, updated, pos, scores, labels, geo, ibuf, fbuf, table, at, mode,
                  s, c):
    """One ground channel's step in one call: seen tracks (confirmed, updated, not hidden behind a
    nearer seen one: :func:`hidden_among`), how many of them lie inside every peer sector of
    ``geo`` (row 0: object and occluder half widths, score bin width, margin; then the sectors'
    :func:`sector_masks` limits), and their score samples written to ``ibuf``/``fbuf`` from row
    ``at`` (mode ``_SAMPLE``, as :func:`_score_samples`); with ``_FROZEN`` also their residuals
    added to ``s``, ``c`` as :func:`_score_residuals` does. Returns ok (False: the track arrays'
    shapes disagree, nothing done), count, samples written, s, c, and the first sample whose bin
    ``table`` does not hold (the number written when all were known)."""
    n = confirmed.shape[0]
    if (updated.shape[0] != n or pos.shape[0] != n or pos.shape[1] != 2
            or scores.shape[0] != n or labels.shape[0] != n or ibuf.shape[0] < at + n
            or fbuf.shape[0] < at + n):
        return False, 0.0, 0, s, c, 0
    seen = np.empty(n, np.bool_)
    k = 0
    for t in range(n):
        seen[t] = confirmed[t] and updated[t]
        if seen[t]:
            k += 1
    if k == 0:
        return True, 0.0, 0, s, c, 0
    hidden = hidden_among(pos, seen, geo[0, 0], geo[0, 1])
    pts = np.empty((n, 2))
    k = 0
    for t in range(n):
        if seen[t] and hidden[t]:
            seen[t] = False
        if seen[t]:
            pts[k, 0], pts[k, 1] = pos[t, 0], pos[t, 1]
            k += 1
    margins = np.full(1, geo[0, 3])
    inside = sector_masks(pts[:k], geo[1:], margins)
    count = 0
    for i in range(k):
        ok = True
        for f in range(inside.shape[1]):
            ok = ok and inside[i, f, 0]
        if ok:
            count += 1
    m = 0
    if mode & _SAMPLE:
        bin_m = geo[0, 2]
        for t in range(n):
            if not seen[t] or not math.isfinite(scores[t]):
                continue
            q = np.hypot(pos[t, 0], pos[t, 1]) // bin_m
            if not (q >= 0.0 and q < _INT64_END):  # NaN, inf, overflow: no bin
                continue
            ibuf[at + m, 0] = labels[t]
            ibuf[at + m, 1] = int(q)
            fbuf[at + m] = scores[t]
            m += 1
    stop = m
    if mode & _FROZEN:
        n_lab, n_bin = table.shape
        for i in range(m):
            a, b = ibuf[at + i, 0], ibuf[at + i, 1]
            if a < 0 or a >= n_lab or b < 0 or b >= n_bin:
                stop = i
                break
            mu = table[a, b]
            if mu != mu:
                stop = i
                break
            s += fbuf[at + i] - mu
            c += 1.0
    return True, float(count), m, s, c, stop


def _bin_table(bin_mean: dict[BinKey, float]) -> FloatArray:
    """Dense (label, bin) → mean lookup of the known bins that fit it; NaN elsewhere."""
    keys = [k for k in bin_mean if 0 <= k[0] < _TABLE_LABELS and 0 <= k[1] < _TABLE_BINS]
    if not keys:
        return np.full((0, 0), np.nan)
    table = np.full((max(k[0] for k in keys) + 1, max(k[1] for k in keys) + 1), np.nan)
    for k in keys:
        table[k] = bin_mean[k]
    return table


def _pool_by_bin(lab: IntArray, bins: IntArray, sc: FloatArray
                 ) -> tuple[IntArray, IntArray, list[FloatArray]]:
    """The distinct (label, bin) keys in ascending order, each sample's key index, and each
    key's scores in arrival order: what ``np.unique(..., axis=0, return_inverse=True)`` and a
    stable sort by key give (the same values, in the same order, as pooling them block by
    block), with one stable lexsort instead of unique's sort of structured rows."""
    n = sc.shape[0]
    order = np.lexsort((bins, lab))  # stable: ties keep arrival order
    sl, sb = lab[order], bins[order]
    new = np.ones(n, bool)
    new[1:] = (sl[1:] != sl[:-1]) | (sb[1:] != sb[:-1])
    starts = np.flatnonzero(new)
    keys = np.stack([sl[starts], sb[starts]], 1)
    inv = np.empty(n, np.int64)
    inv[order] = np.cumsum(new) - 1
    return keys, inv, np.split(sc[order], starts[1:])


def _float3(a: object, b: object, c: object) -> list[float]:
    """Three values as float64, as ``np.array([...], dtype=np.float64)`` converts them."""
    out: list[float] = np.array([a, b, c], dtype=np.float64).tolist()
    return out


@dataclass
class _Channel:
    start: float | None = None
    # block sums and counts per statistic, plain floats (added to every step, read per block)
    sums: list[float] = field(default_factory=lambda: [0.0] * len(STATS))
    counts: list[float] = field(default_factory=lambda: [0.0] * len(STATS))
    ref: list[list[float]] = field(default_factory=list)  # block values while learning
    ref_n: list[int] = field(default_factory=lambda: [0] * len(STATS))  # finite ones in ref
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
    env_any: bool = False  # env_alarm has a stream set
    alerting: bool = False  # alarm or env_alarm has a stream set (both change only per block)
    # score reference: (label, bin, score) samples of the open block (rows [:n_block] of
    # ibuf = (label, bin), fbuf = score; scratch once frozen), then per block, until frozen;
    # then fixed bin means (dict, and the dense table of those that fit it)
    ibuf: IntArray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    fbuf: FloatArray = field(default_factory=lambda: np.zeros(0))
    n_block: int = 0
    score_ref: list[Samples] = field(default_factory=list)
    bins: dict[BinKey, list[float]] = field(default_factory=dict)  # bins still learning
    bin_mean: dict[BinKey, float] = field(default_factory=dict)
    table: FloatArray = field(default_factory=lambda: np.full((0, 0), np.nan))
    # own absolute counts (block means), for two-channel rate attribution
    n_sum: float = 0.0
    n_steps: int = 0
    history: deque[float] = field(default_factory=deque)
    total: int = 0  # blocks appended to history so far
    onset: int | None = None  # history block index where the current rate alarm began
    culprit: str | None = None


def _add_rate(st: _Channel, n: float, relative: bool, consensus: float) -> None:
    """A step's count of seen tracks into the channel's block: its own absolute count, and its
    rate, as a share of the frame's consensus (``relative``; Σ own / Σ consensus over the block,
    steps without a consensus left out) or as is."""
    st.n_sum += n
    st.n_steps += 1
    if relative:
        st.relative = True
        if consensus > 0:
            st.sums[_R] += n
            st.counts[_R] += consensus
    else:
        st.sums[_R] += n
        st.counts[_R] += 1.0


def _room(st: _Channel, need: int) -> None:
    """Grows the channel's sample buffers to hold at least ``need`` rows (contents kept)."""
    cap = st.fbuf.shape[0]
    if cap >= need:
        return
    cap = max(need, 2 * cap, 64)
    ibuf, fbuf = np.zeros((cap, 2), np.int64), np.zeros(cap)
    m = st.n_block
    ibuf[:m], fbuf[:m] = st.ibuf[:m], st.fbuf[:m]
    st.ibuf, st.fbuf = ibuf, fbuf


@dataclass
class _Lane:
    """A channel's per-step constants: its settings, frame, and for :func:`_channel_step` the
    geometry of its frame (None: a peer's field of view is an image rectangle, numpy path)."""

    name: str
    cfg: ChannelConfig
    frame: str
    relative: bool  # its rate is a share of its frame's consensus
    geo: FloatArray | None


@dataclass
class _Layout:
    """What depends only on the channels known so far (rebuilt when one turns up)."""

    size: int  # len(ChannelSet.configs) it was built for
    names: frozenset[str]
    lanes: list[_Lane]
    voting: set[str]
    groups: dict[str, list[str]]  # voting channels by frame


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
        # per-step constants as plain Python values
        self._watch_s, self._watch_r = "score" in cfg.watch, "rate" in cfg.watch
        self._watch_img = tuple(s in cfg.watch for s in STATS[_B:])
        self._any_img = any(self._watch_img)
        # statistics with a block-value reference (the score's is learnt from its bins)
        self._learnable = [i for i in range(len(STATS)) if i != _S and self.watch[i]]
        self._z_c = float(norm.ppf(0.5 + 0.5 * cfg.reference_confidence))
        self._chi2_lo: dict[int, float] = {}  # χ² lower quantiles by degrees of freedom
        self._h_of: dict[float, float] = {}  # CUSUM threshold by allowance
        self._fovs: dict[tuple[str, ...], list[FieldOfView]] = {}  # distinct fovs of peers
        self._lay: _Layout | None = None
        # constants the first references need, computed now rather than in the block that
        # freezes them: the χ² quantile of a full reference and the prior rate CUSUM's h
        self._chi2_lo[cfg.reference_blocks] = chi2.ppf(1.0 - cfg.reference_confidence,
                                                       cfg.reference_blocks - 1)
        if self._watch_r and self.relative_rate:
            try:
                self._h(max(cfg.k, self._min_shift(_R, 1.0) / cfg.rate_prior_sigma))
            except Exception:  # left to the block that needs it, as before
                self._h_of.clear()

    def false_alarm_rate(self) -> float:
        """Budgeted in-control false alarms per hour over all channels and statistics (each
        CUSUM's h gives ARL0 = streams × blocks per hour / budget)."""
        return self.budget

    def arl0(self, k_eff: float) -> float:
        """In-control ARL (blocks) of one statistic's CUSUM whose allowance is ``k_eff``."""
        return two_sided_arl(self._h(k_eff), k_eff)

    def _h(self, k_eff: float) -> float:
        h = self._h_of.get(k_eff)
        if h is None:
            h = self._h_of[k_eff] = threshold_for_arl(
                arl_target(self.budget, self.blocks_per_hour, self.streams), k_eff
            )
        return h

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

    def _samples(self, obs: ChannelObservation, seen: NDArray[np.bool_], pos: FloatArray
                 ) -> Samples:
        """(label, range bin, score) of every seen track with a finite score."""
        tr = obs.tracks
        assert tr is not None
        scores = np.asarray(tr.scores, dtype=np.float64)
        labels = np.asarray(tr.labels, dtype=np.int64)
        if scores.shape != seen.shape or labels.shape != seen.shape:
            raise IndexError("track scores or labels do not match the tracks")
        if tr.space == "box":
            out: Samples = _score_samples(scores, labels, _NO_POS, seen,
                                          self.cfg.score_bin_m, False)
            return out
        if pos.shape[0] != seen.shape[0]:
            raise IndexError("track positions do not match the tracks")
        out = _score_samples(scores, labels, pos, seen, self.cfg.score_bin_m, True)
        return out

    def _add_scores(self, st: _Channel, samples: Samples) -> None:
        """Residuals against known bins into the block, in track order; unknown bins learn (a
        few per step)."""
        lab, bins, sc = samples
        n = sc.shape[0]
        if not n:
            return
        if not st.frozen[_S]:
            m = st.n_block
            _room(st, m + n)
            st.ibuf[m:m + n, 0], st.ibuf[m:m + n, 1], st.fbuf[m:m + n] = lab, bins, sc
            st.n_block = m + n
            return
        self._resume_scores(st, lab, bins, sc, st.sums[_S], st.counts[_S], 0)

    def _resume_scores(self, st: _Channel, lab: IntArray, bins: IntArray, sc: FloatArray,
                       s: float, c: float, i: int) -> None:
        """Residuals of samples ``i`` on added to ``s``, ``c`` (the score's block sum and count,
        stored back), learning the bins not known yet."""
        n = sc.shape[0]
        while True:
            s, c, i = _score_residuals(lab, bins, sc, st.table, s, c, i)
            if i >= n:
                break
            key, x = (int(lab[i]), int(bins[i])), float(sc[i])
            mu = st.bin_mean.get(key)
            if mu is not None:  # a known bin outside the dense table
                s += x - mu
                c += 1.0
            else:
                learning = st.bins.setdefault(key, [])
                learning.append(x)
                if len(learning) >= self.cfg.score_bin_samples:
                    st.bin_mean[key] = float(np.mean(learning))
                    del st.bins[key]
                    st.table = _bin_table(st.bin_mean)
            i += 1
        st.sums[_S], st.counts[_S] = s, c

    def _peer_fovs(self, frame: str, peers: list[ChannelConfig]) -> list[FieldOfView]:
        """The distinct fields of view of a frame's voting channels (a point inside all of
        them is inside each distinct one)."""
        key = (frame, *(p.name for p in peers))
        fovs = self._fovs.get(key)
        if fovs is None:
            fovs = []
            for p in peers:
                if not any(p.fov == f for f in fovs):
                    fovs.append(p.fov)
            self._fovs[key] = fovs
        return fovs

    def _rate_counts(self, visits: list[Visit], seen: dict[str, NDArray[np.bool_] | None],
                     pos: dict[str, FloatArray]) -> dict[str, float]:
        """Seen tracks inside the field of view shared by the voting channels of each frame
        (one test per distinct field of view over all channels of the frame)."""
        peers: dict[str, list[ChannelConfig]] = {}
        members: dict[str, list[str]] = {}
        for name, ch, _ in visits:
            if ch.role != "shadow":
                peers.setdefault(ch.frame, []).append(ch)
            if name in pos:
                members.setdefault(ch.frame, []).append(name)
        counts: dict[str, float] = {}
        for frame, names in members.items():
            own = {n: pos[n][seen[n]] for n in names}
            sizes = [own[n].shape[0] for n in names]
            fovs = self._peer_fovs(frame, peers.get(frame, []))
            if not fovs or not any(sizes):
                counts.update((n, float(k)) for n, k in zip(names, sizes, strict=True))
                continue
            pts = own[names[0]] if len(names) == 1 else np.concatenate([own[n] for n in names])
            margin = _FOV_MARGIN.get(frame, 0.0)
            inside = fovs[0].contains(pts, margin=margin)
            for f in fovs[1:]:
                inside = inside & f.contains(pts, margin=margin)
            a = 0
            for n, k in zip(names, sizes, strict=True):
                counts[n] = float(np.count_nonzero(inside[a:a + k]))
                a += k
        return counts

    def _groups(self, visits: list[Visit]) -> dict[str, list[str]]:
        """Voting channels by frame (rates are compared only within a frame)."""
        groups: dict[str, list[str]] = {}
        for name, ch, _ in visits:
            if ch.role != "shadow":
                groups.setdefault(ch.frame, []).append(name)
        return groups

    def _layout(self) -> _Layout:
        """Per-channel constants of the channels known now (visit order: configured first)."""
        items = list(self.channels.configs.items())
        groups: dict[str, list[str]] = {}
        peers: dict[str, list[ChannelConfig]] = {}
        for name, ch in items:
            if ch.role != "shadow":
                groups.setdefault(ch.frame, []).append(name)
                peers.setdefault(ch.frame, []).append(ch)
        c = self.cfg
        geos: dict[str, FloatArray | None] = {}
        lanes = []
        for name, ch in items:
            if ch.frame not in geos:
                fovs = self._peer_fovs(ch.frame, peers.get(ch.frame, []))
                head = [[c.object_half_width_m, c.occluder_half_width_m, c.score_bin_m,
                         _FOV_MARGIN.get(ch.frame, 0.0)]]
                geos[ch.frame] = None if any(
                    f.image_width is not None and f.image_height is not None for f in fovs
                ) else np.array(head + [f.sector_limits[0].tolist() for f in fovs], np.float64)
            relative = self.relative_rate and len(groups.get(ch.frame, [])) >= 2
            lanes.append(_Lane(name, ch, ch.frame, relative, geos[ch.frame]))
        return _Layout(len(items), frozenset(n for n, _ in items), lanes,
                       {n for n, ch in items if ch.role != "shadow"}, groups)

    def _fast_accumulate(self, chans: dict[str, ChannelObservation], lay: _Layout,
                         trusted: set[str]) -> bool:
        """:meth:`_accumulate` with one :func:`_channel_step` call per channel with tracks. False
        (nothing changed) when a step needs the general path: box tracks, an image field of view,
        track arrays of other types or shapes."""
        watch_s = self._watch_s
        per: dict[str, tuple[bool, float, int, float, float, int]] = {}
        counts: dict[str, float] = {}
        for ln in lay.lanes:
            st = self._ch.get(ln.name)
            if st is None:  # built only when new (not a throwaway default every step)
                st = self._ch[ln.name] = _Channel()
            obs = chans.get(ln.name)
            if obs is None or not obs.received or obs.input_error is not None:
                continue
            tr = obs.tracks
            if tr is None:
                continue
            if ln.geo is None or tr.space == "box":
                return False
            try:
                conf, upd = tr.confirmed, tr.updated
                if conf.shape == upd.shape == (0,) and tr.position.shape == (0, 2):
                    counts[ln.name] = 0.0
                    per[ln.name] = _NONE_SEEN
                    continue
                frozen = bool(st.frozen[_S])
                at = 0 if frozen else st.n_block
                _room(st, at + conf.shape[0])
                r = _channel_step(conf, upd, tr.position, tr.scores, tr.labels, ln.geo, st.ibuf,
                                  st.fbuf, st.table, at,
                                  (_SAMPLE if watch_s else 0) | (_FROZEN if frozen else 0),
                                  st.sums[_S], st.counts[_S])
            except (TypeError, AttributeError):  # not arrays, or of other dtypes or dimensions
                return False
            if not r[0]:
                return False
            counts[ln.name] = r[1]
            per[ln.name] = r
        consensus: dict[str, float] = {}
        for frame, names in lay.groups.items():
            have = [counts[n] for n in names if n in counts]
            good = [counts[n] for n in names if n in counts and n in trusted]
            consensus[frame] = (_median(good) if good and len(good) < len(have)
                                else _median(have) if len(have) >= 2 else np.nan)
        any_img = self._any_img
        for ln in lay.lanes:
            st = self._ch[ln.name]
            r = per.get(ln.name)
            if any_img:
                obs = chans.get(ln.name)
                im = obs.image_stats if obs is not None else None
            if r is None:
                if any_img and im is not None:
                    self._add_image(st, im)
                continue
            _, n, m, s, c, stop = r
            if watch_s and m:
                if st.frozen[_S]:
                    if stop < m:
                        self._resume_scores(st, st.ibuf[:m, 0], st.ibuf[:m, 1], st.fbuf[:m], s,
                                            c, stop)
                    else:
                        st.sums[_S], st.counts[_S] = s, c
                else:
                    st.n_block += m
            if self._watch_r:
                _add_rate(st, n, ln.relative, consensus.get(ln.frame, np.nan))
            if any_img and im is not None:
                self._add_image(st, im)
        return True

    def _add_image(self, st: _Channel, im: object) -> None:
        v = _float3(im.brightness, im.contrast, im.sharpness)  # type: ignore[attr-defined]
        for j, (x, w) in enumerate(zip(v, self._watch_img, strict=True)):
            if w and math.isfinite(x):
                st.sums[_B + j] += x
                st.counts[_B + j] += 1.0

    def _accumulate(self, visits: list[Visit], trusted: set[str]) -> None:
        seen: dict[str, NDArray[np.bool_] | None] = {}
        pos: dict[str, FloatArray] = {}  # positions of the channels with usable tracks
        for name, _, obs in visits:
            s = seen[name] = self._seen(obs)
            if s is not None and obs is not None and obs.tracks is not None:
                pos[name] = np.asarray(obs.tracks.position, dtype=np.float64).reshape(-1, 2)
        counts = self._rate_counts(visits, seen, pos)
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
            if name in counts:
                n = counts[name]
                if self._watch_s and obs is not None:
                    s = seen[name]
                    if s is not None and s.any():
                        self._add_scores(st, self._samples(obs, s, pos[name]))
                if self._watch_r:
                    _add_rate(st, n,
                              self.relative_rate and len(groups.get(ch.frame, [])) >= 2,
                              consensus.get(ch.frame, np.nan))
            im = obs.image_stats if obs is not None else None
            if im is not None and self._any_img:
                self._add_image(st, im)

    # ------------------------------------------------------------------ observe
    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings for channel statistics whose CUSUM is above threshold, or outside the
        envelope long enough."""
        t = float(ctx.t)
        step = ctx.dt if ctx.dt > 0 else 1.0 / self.step_rate_hz
        chans = ctx.channels
        lay = self._lay
        if lay is None or not chans.keys() <= lay.names:
            for _ in self.channels.visit(ctx):  # registers channels that turned up
                pass
            if lay is None or lay.size != len(self.channels.configs):
                lay = self._lay = self._layout()
        cc = ctx.crosscheck
        voting = lay.voting
        trusted = set(cc.active) & voting if cc is not None and cc.active else voting
        visits: list[Visit] | None = None
        if not self._fast_accumulate(chans, lay, trusted):
            visits = [(ln.name, ln.cfg, chans.get(ln.name)) for ln in lay.lanes]
            self._accumulate(visits, trusted)
        closed = alerting = False
        block_s = self.cfg.block_s
        sts = self._ch
        for ln in lay.lanes:
            st = sts[ln.name]
            if st.start is None:
                st.start = t
            if block_due(t, st.start, block_s, step):
                self._close(st)
                st.start = t + step
                closed = True
            alerting = alerting or st.alerting
        if not (closed or alerting):
            return []
        if visits is None:
            visits = [(ln.name, ln.cfg, chans.get(ln.name)) for ln in lay.lanes]
        if closed:
            self._attribute_rates(visits, trusted)
        out: list[Finding] = []
        for name, ch, _obs in visits:
            st = sts[name]
            if st.alerting:
                out += self._findings(ctx, name, ch, st, visits)
        return out

    def _close(self, st: _Channel) -> None:
        """Closes the channel's block: its means feed the envelope, the references still being
        learnt and the CUSUMs (plain floats over the few statistics: no numpy call per block)."""
        mean = [s / c if c > 0 else math.nan for s, c in zip(st.sums, st.counts, strict=True)]
        st.sums, st.counts = [0.0] * len(STATS), [0.0] * len(STATS)
        if st.n_steps:
            st.history.append(st.n_sum / st.n_steps)
            st.total += 1
            while len(st.history) > self.cfg.attribution_blocks + _RECENT + 2:
                st.history.popleft()
        st.n_sum, st.n_steps = 0.0, 0
        finite = [math.isfinite(x) for x in mean]
        last = st.last
        for i, x in enumerate(mean):
            if finite[i]:
                last[i] = x
        self._envelope(st, mean)
        if not st.frozen[_S] and st.n_block:
            m = st.n_block
            st.score_ref.append((st.ibuf[:m, 0].copy(), st.ibuf[:m, 1].copy(),
                                 st.fbuf[:m].copy()))
            st.n_block = 0
            self._maybe_freeze_score(st)
        if st.relative and not st.frozen[_R] and self._watch_r:
            self._freeze_prior(st)
        frozen, provisional = st.frozen.tolist(), st.provisional.tolist()
        learning = [i for i in self._learnable if not frozen[i] or provisional[i]]
        if learning:
            row = [math.nan] * len(STATS)
            for i in learning:
                row[i] = mean[i]
                if finite[i]:
                    st.ref_n[i] += 1
            st.ref.append(row)
            for i in learning:
                if st.ref_n[i] >= self.cfg.reference_blocks:
                    v = np.array([r[i] for r in st.ref])
                    self._freeze(st, i, v[np.isfinite(v)])
            frozen, provisional = st.frozen.tolist(), st.provisional.tolist()
            if not any(not frozen[i] or provisional[i] for i in self._learnable):
                st.ref = []
                st.ref_n = [0] * len(STATS)
        if not any(frozen):  # nothing to test yet (every stream holds, none can alarm)
            if st.alarm.any():
                st.alarm = np.zeros(len(STATS), bool)
            st.alerting = st.env_any
            return
        alarm = self._cusum_block(st, mean, finite, frozen)
        st.alarm = np.array(alarm)
        st.alerting = any(alarm) or st.env_any

    @staticmethod
    def _cusum_block(st: _Channel, mean: list[float], finite: list[bool],
                     frozen: list[bool]) -> list[bool]:
        """``Cusum.update`` of the standardised block means of the frozen, finite statistics
        (others hold) and the alarm mask & frozen, as plain floats: the same IEEE operations as
        the compiled CUSUM step, in the same order."""
        cus = st.cusum
        pos, neg, k, h = cus.pos, cus.neg, cus.k.tolist(), cus.h.tolist()
        centre, sigma, cap = st.centre.tolist(), st.sigma.tolist(), cus.cap
        alarm = [False] * len(STATS)
        for i in range(len(STATS)):
            if not frozen[i]:
                continue
            p, q = float(pos[i]), float(neg[i])
            if finite[i]:
                d, sg = mean[i] - centre[i], sigma[i]
                x = d / sg if sg != 0.0 else float(np.divide(d, sg))  # numpy's inf/NaN
                if math.isfinite(x):
                    lim = cap * h[i] if h[i] > 0 else math.inf
                    p = p + x - k[i]
                    if not (p != p or p > 0.0):
                        p = 0.0
                    if not (p != p or p < lim):
                        p = lim
                    q = q - x - k[i]
                    if not (q != q or q > 0.0):
                        q = 0.0
                    if not (q != q or q < lim):
                        q = lim
                    pos[i], neg[i] = p, q
            alarm[i] = p == p and q == q and max(p, q) > h[i]
        return alarm

    def _envelope(self, st: _Channel, mean: list[float]) -> None:
        lo, hi = self.cfg.brightness_range
        b, c = float(mean[_B]), float(mean[_C])
        if not ((self._watch_img[0] and math.isfinite(b))
                or (self._watch_img[1] and math.isfinite(c))):
            return  # nothing known this block: the runs hold
        run = st.env_run.copy()
        if self._watch_img[0] and math.isfinite(b):
            run[_B] = run[_B] + 1 if not lo <= b <= hi else 0
        if self._watch_img[1] and math.isfinite(c):
            run[_C] = run[_C] + 1 if c < self.cfg.contrast_floor else 0
        st.env_run = run
        st.env_alarm = run >= self.cfg.persist_blocks
        st.env_any = bool(st.env_alarm.any())

    def _maybe_freeze_score(self, st: _Channel) -> None:
        """Once ``reference_blocks`` blocks held scores: bin means from them, then the block
        mean residuals of the same blocks form the score reference."""
        if len(st.score_ref) < self.cfg.reference_blocks:
            return
        sc = np.concatenate([b[2] for b in st.score_ref])
        keys, inv, pooled = _pool_by_bin(np.concatenate([b[0] for b in st.score_ref]),
                                         np.concatenate([b[1] for b in st.score_ref]), sc)
        means = np.full(len(keys), np.nan)
        known = np.zeros(len(keys), bool)
        for u, v in enumerate(pooled):
            if v.size >= self.cfg.score_bin_samples:
                # = float(np.mean(v)): the same pairwise sum and division, without its overhead
                means[u] = mu = float(np.add.reduce(v)) / v.size
                known[u] = True
                st.bin_mean[(int(keys[u, 0]), int(keys[u, 1]))] = mu
        # each block's mean residual over its samples of known bins (blocks without any: none)
        res = sc - means[inv]
        ok = known[inv]
        n_ok = np.concatenate([[0], np.cumsum(ok)]).tolist()
        values = []
        a = 0
        for blk in st.score_ref:
            b = a + blk[2].shape[0]
            k = n_ok[b] - n_ok[a]
            if k:
                r = res[a:b] if k == b - a else res[a:b][ok[a:b]]
                values.append(float(np.add.reduce(r)) / r.size)
            a = b
        if len(values) < self.cfg.reference_blocks:
            if len(st.score_ref) > 4 * self.cfg.reference_blocks:  # bound memory; keep learning
                st.score_ref.pop(0)
            st.bin_mean.clear()
            return
        st.bins = {(int(keys[u, 0]), int(keys[u, 1])): pooled[u].tolist()
                   for u in np.flatnonzero(~known)}
        st.table = _bin_table(st.bin_mean)
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
        z_c = self._z_c
        m = v.size
        centre, s = float(np.median(v)), float(v.std(ddof=1))
        shift = self._min_shift(i, centre)
        lo = self._chi2_lo.get(m)
        if lo is None:
            lo = self._chi2_lo[m] = chi2.ppf(1.0 - c.reference_confidence, m - 1)
        s_ucb = s * np.sqrt((m - 1) / lo)
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
