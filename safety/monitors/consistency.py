"""Filter consistency: windowed NIS of each channel's tracker, tested two-sided against chi-square.

Per channel the NIS of the updated tracks over the last ``window_s`` is summed; for a consistent
filter the sum is chi-square with dof = dz · (number of updates). Too large (``nis_high``): the
filter underestimates its errors (noise increase, bias, wrong model). Too small (``nis_low``): the
filter is too pessimistic, which hides faults behind wide gates.

False alarms: every step tests 2 · C hypotheses (C channels, both tails) at family-wise level α
with Holm's step-down correction (Bonferroni-strong, uniformly more powerful). α comes from the
budget: α = budget_per_hour / (3600 · step_rate_hz), so the expected number of alarming steps per
hour in control — an upper bound on the number of false alarm episodes, since overlapping windows
make alarms cluster — is at most the budget.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Literal

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from scipy.special import chdtr, chdtrc
from scipy.stats import chi2

from perception.kernels import BIN1, IN1, compiled, pairwise_sum
from safety.channels import ChannelConfig
from safety.context import MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import (
    BudgetedSettings,
    ChannelSet,
    finding,
    is_valid,
    label,
)


class ConsistencyConfig(BudgetedSettings):
    """Window, minimum evidence and the false-alarm budget (None: the monitors-wide budget)."""

    window_s: float = Field(default=2.0, gt=0)
    min_dof: int = Field(default=20, ge=1)
    confirmed_only: bool = True  # tentative tracks carry clutter associations
    correction: Literal["holm", "bonferroni"] = "holm"


def holm_reject(p: np.ndarray, alpha: float, method: str = "holm") -> tuple[np.ndarray, np.ndarray]:
    """Which of the p-values are rejected at family-wise level ``alpha``, and each one's level."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    if method == "bonferroni":
        level = np.full(m, alpha / m)
        return p <= level, level
    order = np.argsort(p, kind="stable")
    level_sorted = alpha / (m - np.arange(m))
    ok_sorted = p[order] <= level_sorted
    first_fail = int(np.argmin(ok_sorted)) if not ok_sorted.all() else m
    rej = np.zeros(m, dtype=bool)
    rej[order[:first_fail]] = True
    level = np.empty(m)
    level[order] = level_sorted
    return rej, level


def _tails(s: NDArray[np.float64], d: NDArray[np.float64]) -> NDArray[np.float64]:
    """Upper then lower chi-square tail probabilities of sums ``s`` with ``d`` degrees of freedom.

    The special functions ``chi2.sf`` / ``chi2.cdf`` evaluate, called directly where the
    arguments are in the distribution's support (finite s ≥ 0, d > 0: always, in practice),
    without the per-call argument handling of ``scipy.stats`` (about 20 µs a call).
    """
    if np.all(np.isfinite(s) & (s >= 0) & np.isfinite(d) & (d > 0)):
        return np.concatenate([chdtrc(d, s), chdtr(d, s)])
    return np.concatenate([chi2.sf(s, d), chi2.cdf(s, d)])


@compiled(nb.types.Tuple((nb.float64, nb.int64))(IN1, BIN1, BIN1, nb.boolean))
def _nis_total(nis, updated, confirmed, confirmed_only):
    """Sum and count of the finite, non-negative NIS of the updated (and, if ``confirmed_only``,
    confirmed) tracks: one call instead of a chain of masks; the sum as ``nis[sel].sum()``."""
    n = nis.shape[0]
    if updated.shape[0] != n or (confirmed_only and confirmed.shape[0] != n):
        raise ValueError("nis, updated and confirmed differ in length")
    sel = np.empty(n)
    k = 0
    for i in range(n):
        v = nis[i]
        if updated[i] and np.isfinite(v) and v >= 0 and (not confirmed_only or confirmed[i]):
            sel[k] = v
            k += 1
    return pairwise_sum(sel, 0, k), k


_NO_MASK = np.zeros(0, bool)


class _Window:
    """One channel's NIS window as parallel columns (times, NIS sums, degrees of freedom), so
    the per-step totals are plain C-level sums over a deque instead of generator passes."""

    __slots__ = ("dof", "dof_total", "nis", "t")

    def __init__(self) -> None:
        self.t: deque[float] = deque()
        self.nis: deque[float] = deque()
        self.dof: deque[int] = deque()
        self.dof_total = 0  # sum(self.dof), kept as entries come and go (integers: exact)

    def add(self, t: float, nis: float, dof: int) -> None:
        self.t.append(t)
        self.nis.append(nis)
        self.dof.append(dof)
        self.dof_total += dof

    def drop_outside(self, t_min: float, t_max: float) -> None:
        """Drop entries at or before ``t_min`` or after ``t_max`` from the front."""
        t = self.t
        while t and (t[0] <= t_min or t[0] > t_max):
            t.popleft()
            self.nis.popleft()
            self.dof_total -= self.dof.popleft()


class ConsistencyMonitor:
    """Per channel: windowed NIS chi-square test, both tails, Holm-corrected over channels."""

    spec = MonitorSpec(
        name="consistency",
        watches="NIS of each channel's updated tracks over a sliding window",
        threshold="chi-square(dz·updates) tails at family-wise α = budget / (3600·rate), Holm "
        "over channels × both tails",
        impact=Impact.CHANNEL,
        kinds=("consistency.nis_high", "consistency.nis_low"),
    )

    def __init__(
        self,
        cfg: ConsistencyConfig,
        channels: Sequence[ChannelConfig],
        *,
        step_rate_hz: float = 10.0,
        budget_per_hour: float = 1e-3,
    ) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        budget = cfg.budget(budget_per_hour)
        self.step_rate_hz = float(step_rate_hz)
        self.alpha = float(budget) / (3600.0 * self.step_rate_hz)
        self._windows: dict[str, _Window] = {}
        # per (dof, level): sums proven quiet below / above the mean (see _quiet)
        self._spans: dict[tuple[int, float], list[float]] = {}

    def false_alarm_rate(self) -> float:
        """Upper bound on false alarms per hour in control: α · steps per hour."""
        return self.alpha * 3600.0 * self.step_rate_hz

    def reset(self) -> None:
        """Empty every window."""
        self._windows.clear()

    def _quiet(self, sums: list[float], dofs: list[int]) -> bool:
        """True when no tail probability can reach the smallest level alpha / (2 · channels),
        the common case, so no correction needs computing (one special-function call per
        channel instead of the full family).

        Only the tail on the sum's side of its mean can be small: the other one is at least
        P(χ²_d ≤ d) > 1/2 or P(χ²_d > d) > 0.31, above any level below 1/4. False whenever in
        doubt (the full test then decides, as always).

        Each tail is monotone in the sum, so once a sum's tail was found clearly above the
        level (by a relative 1e-5, far beyond the special functions' ~1e-13 accuracy), every
        sum between it and the mean is quiet too: per (dof, level) the proven-quiet span
        [lo, d) ∪ [d, hi] is kept, and only sums outside it call the special function.
        """
        level = self.alpha / (2 * len(sums))
        if not level < 0.25:
            return False
        spans = self._spans
        clear = level * (1.0 + 1e-5)
        for x, k in zip(sums, dofs, strict=True):
            if not 0.0 <= x < math.inf:
                return False
            span = spans.get((k, level))
            d = float(k)
            if span is not None and (span[1] >= x >= d or d > x >= span[0]):
                continue
            p = chdtrc(d, x) if x >= d else chdtr(d, x)
            if not p > level:
                return False
            if p > clear:  # proven: every sum between x and the mean is quiet
                if span is None:
                    if len(spans) >= 4096:
                        spans.clear()
                    span = spans[(k, level)] = [math.inf, -math.inf]
                if x >= d:
                    span[1] = max(span[1], x)
                else:
                    span[0] = min(span[0], x)
        return True

    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings for channels whose windowed NIS falls in a corrected chi-square tail."""
        t = float(ctx.t)
        names: list[str] = []
        sums: list[float] = []
        dofs: list[int] = []
        only = self.cfg.confirmed_only
        windows = self._windows
        t_min = t - self.cfg.window_s
        min_dof = self.cfg.min_dof
        for name, _ch, obs in self.channels.visit(ctx):
            win = windows.get(name)
            if win is None:
                win = windows[name] = _Window()
            tr = obs.tracks if obs is not None and is_valid(obs) else None
            if tr is not None and len(tr) > 0:
                inn = tr.innovation
                if (inn.ndim if type(inn) is np.ndarray else np.ndim(inn)) == 2:
                    mask = tr.confirmed if only else _NO_MASK
                    try:  # a tracker's float64 / bool vectors go in as they are
                        total, n = _nis_total(tr.nis, tr.updated, mask, only)
                    except TypeError:  # anything else converted first
                        total, n = _nis_total(np.asarray(tr.nis, dtype=np.float64).reshape(-1),
                                              np.asarray(tr.updated, bool).reshape(-1),
                                              np.asarray(mask, bool).reshape(-1), only)
                    if n:
                        win.add(t, total, n * int(inn.shape[1]))
            win.drop_outside(t_min, t)
            dof = win.dof_total
            if dof >= min_dof:
                names.append(name)
                sums.append(sum(win.nis))  # in arrival order, as always
                dofs.append(dof)
        if not names:
            return []
        if self._quiet(sums, dofs):
            return []
        s = np.asarray(sums)
        d = np.asarray(dofs, dtype=np.float64)
        p = _tails(s, d)
        rej, level = holm_reject(p, self.alpha, self.cfg.correction)
        out: list[Finding] = []
        c = len(names)
        for i in np.flatnonzero(rej):
            j = int(i % c)
            high = i < c
            ratio = s[j] / d[j]
            crit = (chi2.isf(level[i], d[j]) if high else chi2.ppf(level[i], d[j])) / d[j]
            if high:
                msg = (
                    f"The tracker of {label(names[j])} fits its measurements worse than its "
                    f"noise model allows: mean NIS {ratio:.2f} per degree of freedom over "
                    f"{self.cfg.window_s:g} s (expected 1.00, limit {crit:.2f})."
                )
            else:
                msg = (
                    f"The tracker of {label(names[j])} is far more pessimistic than its "
                    f"measurements warrant: mean NIS {ratio:.2f} per degree of freedom over "
                    f"{self.cfg.window_s:g} s (expected 1.00, limit {crit:.2f}), which can "
                    "hide faults."
                )
            out.append(
                finding(
                    self.spec,
                    "consistency.nis_high" if high else "consistency.nis_low",
                    t,
                    msg,
                    channel=names[j],
                    value=ratio,
                    threshold=crit,
                    window=self.cfg.window_s,
                )
            )
        return out
