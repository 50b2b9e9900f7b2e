"""Cross-channel disagreement: persistent disagreements between channels and repeated outvoting.

A disagreement is persistent when the same channel pair disagrees near the same place for
``persist_steps`` consecutive steps (positions within ``radius`` of last step's, so an object's
own motion and id changes do not break the chain). With two voting channels nobody can tell
which one is wrong: the finding is SYSTEM. With three or more, the crosscheck's majority vote
names the loser; a channel outvoted in ``outvoted_steps`` of the last ``outvoted_window`` steps
cannot be vouched for (CHANNEL), and disagreements involving it are attributed to it (those the
vote already resolved, ``Disagreement.outvoted``, are never an unresolved SYSTEM conflict). A
persistent miss (one channel tracks an object inside the other's field of view, the other has
nothing there) is CHANNEL on the blind channel: the object is output anyway, uncorroborated, so
the safe reading is that the blind channel cannot be vouched for. The crosscheck's own
persistence count (``Disagreement.steps``) counts towards ``persist_steps``. Pairs involving a
shadow channel are reported for information only.

A persistent *position* disagreement is reported only when, besides persisting, its mean d²
over the last ``persist_steps`` steps reaches ``d2_min``, chosen from the false-alarm budget:
track errors are strongly autocorrelated, so a healthy pair exceeds the per-step 99 % agreement
bound for 5 steps in a row about once an hour (measured: 3 in a one-hour fault-free drive). The
mean of χ²₂ values exceeds c with probability at most about e^{-c/2} (fully correlated steps;
independent ones give less), so c = χ²₂ quantile of budget / (steps per hour × pairs ×
``objects``) keeps the rate of all pairs within the budget (39 with the defaults: a ~6σ
offset held for half a second). Smaller persistent offsets are the calibration monitor's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator
from scipy.stats import chi2

from perception.kernels import F2, IIN1, IN1, IN2, compiled, pairwise_sum
from safety.channels import ChannelConfig
from safety.context import MonitorSpec, StepContext
from safety.crosscheck import Disagreement
from safety.findings import Finding, Impact
from safety.monitors.base import BudgetedSettings, ChannelSet, finding, label


class CrossChannelConfig(BudgetedSettings):
    """Persistence (steps, radius) and the outvoting rule (k of the last n steps)."""

    persist_steps: int = Field(default=5, ge=1)
    radius: float = Field(default=3.0, gt=0)  # m (or px for image channels)
    outvoted_steps: int = Field(default=5, ge=1)
    outvoted_window: int = Field(default=10, ge=1)
    shadow_steps: int = Field(default=10, ge=1)  # shadow mismatch persistence (information)
    objects: int = Field(default=10, ge=1)  # objects per pair the disagreement budget covers

    @model_validator(mode="after")
    def _k_of_n(self) -> CrossChannelConfig:
        if self.outvoted_steps > self.outvoted_window:
            raise ValueError(
                f"outvoted_steps ({self.outvoted_steps}) cannot exceed "
                f"outvoted_window ({self.outvoted_window})"
            )
        return self


Pair = tuple[str, str]
_NO_STATE = np.zeros((0, 4))  # a pair without chains last step (see _chain_step)
_EXACT = 2.0**53  # chain lengths below it are exact as float64
_F64 = np.dtype(np.float64)


@compiled(nb.types.Tuple((nb.int64[::1], F2))(
    IN2, IIN1, IN1, IN2, IIN1, IN2, nb.boolean, nb.float64, nb.int64))
def _link_chains(pos, count, stat, prev_pos, prev_count, old, has_old, radius, k):
    """Chains this step's disagreements of a pair onto last step's: each takes the longest
    previous chain within ``radius`` (the first on ties) and continues its count and its last
    ``k`` d² values (a fresh one repeats its own d², non-finite as inf). One call instead of the
    distance matrix, masks and reductions over a handful of rows."""
    m = pos.shape[0]
    out = count.copy()
    hist = np.empty((m, k))
    for i in range(m):
        d2 = stat[i] if np.isfinite(stat[i]) else np.inf
        for j in range(k):
            hist[i, j] = d2
        best, src = 0, 0
        for q in range(prev_pos.shape[0]):
            dx = pos[i, 0] - prev_pos[q, 0]
            dy = pos[i, 1] - prev_pos[q, 1]
            link = prev_count[q] if np.sqrt(dx * dx + dy * dy) <= radius else 0
            if link > best:
                best, src = link, q
        if best > 0:
            if has_old:
                for j in range(1, k):
                    hist[i, j] = old[src, j - 1]
            out[i] = max(out[i], 1 + best)
    return out, hist


#: columns of a pair's chain state (:func:`_chain_step`): position, chain length, then the last
#: ``persist_steps`` d² values, then whether the chain is reported this step
_X, _Y, _N, _HIST = 0, 1, 2, 3


@compiled(nb.types.Tuple((F2, nb.int64))(IN2, IN2, nb.float64, nb.int64, nb.float64))
def _chain_step(rows, prev, radius, k, d2_min):
    """A pair's step in one call: :func:`_link_chains` on this step's disagreements (``rows``:
    x, y, d², chain length so far, miss 1/0, threshold) and last step's state rows ``prev``, then
    which are reported: persisted ``k`` steps and a miss, or a mean d² over the last ``k`` (the
    numpy pairwise sum) of at least ``d2_min``. Returns the state rows (x, y, length, k d²
    values, reported 1/0) and how many are reported."""
    m = rows.shape[0]
    pos, num = rows[:, :2], rows[:, 2:]
    out = np.empty((m, _HIST + k + 1))
    hits = 0
    for i in range(m):
        d2 = num[i, 0] if np.isfinite(num[i, 0]) else np.inf
        for j in range(k):
            out[i, _HIST + j] = d2
        best, src = 0.0, 0
        for q in range(prev.shape[0]):
            dx = pos[i, 0] - prev[q, _X]
            dy = pos[i, 1] - prev[q, _Y]
            link = prev[q, _N] if np.sqrt(dx * dx + dy * dy) <= radius else 0.0
            if link > best:
                best, src = link, q
        n = num[i, 1]
        if best > 0:
            for j in range(1, k):
                out[i, _HIST + j] = prev[src, _HIST + j - 1]
            n = max(n, 1.0 + best)
        out[i, _X], out[i, _Y], out[i, _N] = pos[i, 0], pos[i, 1], n
        strong = num[i, 2] != 0.0 or pairwise_sum(out[i], _HIST, k) / k >= d2_min
        hit = n >= k and strong
        out[i, _HIST + k] = 1.0 if hit else 0.0
        hits += hit
    return out, hits


class CrossChannelMonitor:
    """Turns per-step crosscheck disagreements and votes into persistent, attributed findings."""

    spec = MonitorSpec(
        name="crosscheck",
        watches="crosscheck disagreements, majority-vote losers and shadow-channel agreement",
        threshold="same pair disagreeing within `radius` for persist_steps steps (position "
        "disagreements: mean d² over them beyond a budget-derived bound); outvoted in "
        "outvoted_steps of the last outvoted_window steps",
        impact=Impact.SYSTEM,
        kinds=(
            "crosscheck.disagreement",
            "crosscheck.miss",
            "crosscheck.outvoted",
            "crosscheck.shadow_disagreement",
            "crosscheck.shadow_mismatch",
        ),
    )

    def __init__(
        self,
        cfg: CrossChannelConfig,
        channels: Sequence[ChannelConfig],
        *,
        step_rate_hz: float = 10.0,
        budget_per_hour: float = 1e-3,
    ) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        budget = cfg.budget(budget_per_hour)
        n = max(1, len(self.channels.voting))
        tests = step_rate_hz * 3600.0 * max(1, n * (n - 1) // 2) * cfg.objects
        self.d2_min = float(chi2.isf(min(budget / tests, 0.5), 2))
        # each pair's chains of last step: _chain_step's state rows (position, length, d²)
        self._chains: dict[Pair, NDArray[np.float64]] = {}
        self._votes: dict[str, deque[bool]] = {}
        self._shadow: dict[str, int] = {}

    def reset(self) -> None:
        """Forget persistence chains and vote history."""
        self._chains.clear()
        self._votes.clear()
        self._shadow.clear()

    def _role(self, name: str) -> str:
        return self.channels.config(name).role

    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings for persistent disagreements, repeat vote losers and drifting shadows."""
        cc = ctx.crosscheck
        if cc is None:
            return []
        out: list[Finding] = []
        outvoted = self._outvoted(ctx, cc.vote_losers, out)
        out += self._disagreements(ctx, cc.disagreements, outvoted)
        out += self._shadows(ctx, cc.shadow)
        return out

    def _outvoted(self, ctx: StepContext, losers: dict[str, int], out: list[Finding]) -> set[str]:
        c = self.cfg
        names = set(self._votes) | {n for n in losers if isinstance(n, str)}
        flagged: set[str] = set()
        for name in sorted(names):
            hist = self._votes.setdefault(name, deque(maxlen=c.outvoted_window))
            hist.append(int(losers.get(name, 0) or 0) > 0)
            k = sum(hist)
            if k >= c.outvoted_steps:
                flagged.add(name)
                out.append(
                    finding(
                        self.spec,
                        "crosscheck.outvoted",
                        ctx.t,
                        f"{label(name).capitalize()} was contradicted by the other channels in {k} "
                        f"of the last {len(hist)} steps (limit {c.outvoted_steps}); "
                        "it is treated as "
                        "faulty.",
                        channel=name,
                        impact=Impact.CHANNEL,
                        value=k,
                        threshold=c.outvoted_steps,
                        window=len(hist) * ctx.dt,
                    )
                )
        return flagged

    def _disagreements(
        self, ctx: StepContext, items: Sequence[Disagreement], outvoted: set[str]
    ) -> list[Finding]:
        by_pair: dict[Pair, list[Disagreement]] = {}
        for d in items:
            if getattr(d, "outvoted", None):
                continue  # the vote named the faulty channel: it counts towards its outvote
            pair = (str(d.channels[0]), str(d.channels[1]))
            ds = by_pair.get(pair)
            if ds is None:
                by_pair[pair] = [d]
            else:
                ds.append(d)
        if not by_pair and not self._chains:
            return []
        chains: dict[Pair, NDArray[np.float64]] = {}
        out: list[Finding] = []
        k = self.cfg.persist_steps
        for pair, ds in by_pair.items():
            num, miss = self._rows(ds)
            key = pair if pair in self._chains else (pair[1], pair[0])
            prev = self._chains.get(key)
            state, hits = _chain_step(num, _NO_STATE if prev is None else prev,
                                      self.cfg.radius, k, self.d2_min)
            chains[pair] = state
            if hits:
                rows = state.tolist()
                out += self._pair_finding(
                    ctx, pair, ds, [r[_HIST + k] != 0.0 for r in rows], miss, num[:, 2],
                    num[:, 5], [int(r[_N]) for r in rows], outvoted)
        self._chains = chains
        return out

    @staticmethod
    def _rows(ds: Sequence[Disagreement]) -> tuple[NDArray[np.float64], list[bool]]:
        """A pair's disagreements as rows [x, y, d², chain length so far, miss, threshold] and
        the miss flags, converted as the field-by-field numpy formulation converts them."""
        steps = [max(1, int(getattr(d, "steps", 1) or 1)) for d in ds]
        if max(steps) >= _EXACT:  # as int64 (or the error that gives)
            steps = np.array(steps, np.int64).tolist()
        miss = [getattr(d, "kind", "disagreement") == "miss" for d in ds]
        flat: list[float] = []
        for d, n, m in zip(ds, steps, miss, strict=True):
            p = d.position
            if type(p) is not np.ndarray or p.dtype != _F64 or p.shape != (2,):
                flat = []
                break
            flat += (*p.tolist(), float(d.statistic), n, m, float(d.threshold))
        if flat:
            return np.array(flat).reshape(-1, 6), miss
        pos = np.array([np.asarray(d.position, dtype=np.float64).reshape(2) for d in ds])
        num = np.array([(float(d.statistic), n, m, float(d.threshold))
                        for d, n, m in zip(ds, steps, miss, strict=True)], dtype=np.float64)
        return np.hstack([pos, num]), miss

    def _pair_finding(
        self,
        ctx: StepContext,
        pair: Pair,
        ds: Sequence[Disagreement],
        hit: list[bool],
        miss: list[bool],
        stat: NDArray[np.float64],
        thr: NDArray[np.float64],
        count: list[int],
        outvoted: set[str],
    ) -> list[Finding]:
        """The findings of a pair with reported chains (``hit``; per disagreement, as lists)."""
        a, b = pair
        steps = max(n for n, h in zip(count, hit, strict=True) if h)
        ids = np.array(
            [t for d, h in zip(ds, hit, strict=True) if h for t in d.track_ids if int(t) >= 0],
            dtype=np.int64,
        )
        dis_l = [h and not m for h, m in zip(hit, miss, strict=True)]
        roles = (self._role(a), self._role(b))
        if "shadow" in roles:
            shadow = a if roles[0] == "shadow" else b
            other = b if shadow == a else a
            return [
                finding(
                    self.spec,
                    "crosscheck.shadow_disagreement",
                    ctx.t,
                    f"Shadow {label(shadow)} and {label(other)} disagree about "
                    f"{sum(hit)} object(s) (position or existence) for {steps} "
                    "steps; the shadow is not used for output.",
                    channel=shadow,
                    impact=Impact.INFO,
                    value=float(steps),
                    threshold=float(self.cfg.persist_steps),
                    window=steps * ctx.dt,
                    track_ids=ids,
                )
            ]
        if a in outvoted or b in outvoted:
            return []  # attributed: the outvoted finding already names the faulty channel
        out: list[Finding] = []
        if any(dis_l):
            dis, chained = np.array(dis_l), np.array(count, np.int64)
            value = float(np.max(np.where(np.isfinite(stat[dis]), stat[dis], np.inf)))
            threshold = self.d2_min
            out.append(
                finding(
                    self.spec,
                    "crosscheck.disagreement",
                    ctx.t,
                    f"Channels '{a}' and '{b}' disagree about where {int(dis.sum())} object(s) are "
                    f"(statistic {value:.1f}, beyond {float(np.max(thr[dis])):.1f} for "
                    f"{int(chained[dis].max())} steps in a row, mean over the last "
                    f"{self.cfg.persist_steps} at least {threshold:.1f}), and it cannot be told "
                    "which one is right.",
                    channel=None,
                    impact=Impact.SYSTEM,
                    value=value,
                    threshold=threshold,
                    window=int(chained[dis].max()) * ctx.dt,
                    track_ids=ids,
                )
            )
        # a miss: the channel without a track (id −1) fails to see what the other tracks inside
        # its field of view. The object is still output (uncorroborated), so the blind channel,
        # not the system, is what cannot be vouched for.
        missing: dict[tuple[str, str], list[int]] = {}
        for d, h, m, n in zip(ds, hit, miss, count, strict=True):
            if h and m:
                blind, seer = (b, a) if int(d.track_ids[1]) < 0 else (a, b)
                missing.setdefault((blind, seer), []).append(int(n))
        for (blind, seer), counts in sorted(missing.items()):
            k = max(counts)
            out.append(
                finding(
                    self.spec,
                    "crosscheck.miss",
                    ctx.t,
                    f"{label(blind).capitalize()} has not seen {len(counts)} object(s) that "
                    f"{label(seer)} tracks inside its field of view, for {k} steps in a row; they "
                    f"are still output, from '{seer}' alone.",
                    channel=blind,
                    impact=Impact.CHANNEL,
                    value=float(k),
                    threshold=float(self.cfg.persist_steps),
                    window=k * ctx.dt,
                    track_ids=ids,
                )
            )
        return out

    def _shadows(self, ctx: StepContext, shadow: Mapping[str, object]) -> list[Finding]:
        out: list[Finding] = []
        for name in list(self._shadow):
            if name not in shadow:
                self._shadow[name] = 0
        for name, st in shadow.items():
            bad = int(getattr(st, "missed", 0) or 0) + int(getattr(st, "disagreeing", 0) or 0)
            self._shadow[name] = self._shadow.get(name, 0) + 1 if bad > 0 else 0
            if self._shadow[name] >= self.cfg.shadow_steps:
                out.append(
                    finding(
                        self.spec,
                        "crosscheck.shadow_mismatch",
                        ctx.t,
                        f"Shadow {label(name)} has missed or contradicted output objects for "
                        f"{self._shadow[name]} steps in a row ({bad} this step); "
                        "it would not be safe "
                        "to promote.",
                        channel=name,
                        impact=Impact.INFO,
                        value=bad,
                        threshold=0.0,
                        window=self._shadow[name] * ctx.dt,
                    )
                )
        return out
