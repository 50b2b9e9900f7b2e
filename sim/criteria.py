"""Scenario expectations (criteria), in the CARLA ScenarioRunner sense.

Each criterion is a pydantic model discriminated by ``kind`` and evaluates a finished run into a
`CriterionResult` (name, expected, actual, units, optional, verdict). A criterion with an
``acceptable`` bound yields ACCEPTABLE (a pass with a remark) when the value misses the strict
bound but stays inside the acceptable one. A scenario fails when any non-optional criterion is
a FAILURE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from sim.metrics import FUSED, ToleranceConfig, match_frames
from sim.results import (
    STATE_CODE,
    CriterionResult,
    FaultWindow,
    FindingRecord,
    Metrics,
    TakeoverEvent,
    TimeSeries,
    Verdict,
)


def _upper(v: object) -> object:
    if isinstance(v, str):
        return v.upper()
    if isinstance(v, list | tuple):
        return [x.upper() if isinstance(x, str) else x for x in v]
    return v


StateName = Literal["NOMINAL", "DEGRADED", "TAKEOVER_REQUESTED", "MANUAL", "MINIMAL_RISK"]
States = Annotated[StateName | list[StateName], BeforeValidator(_upper)]


@dataclass
class Evaluation:
    """What criteria look at: the recorded run, its metrics and the tolerance it was judged by."""

    series: TimeSeries
    metrics: Metrics
    faults: Sequence[FaultWindow]
    findings: Sequence[FindingRecord]
    takeover_events: Sequence[TakeoverEvent]
    tolerance: ToleranceConfig


class _Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, description="label in reports (default: derived)")
    optional: bool = Field(
        default=False, description="a failure is reported but does not fail the run"
    )

    def label(self) -> str:
        return self.name or self._default_name()

    def _default_name(self) -> str:
        return str(getattr(self, "kind", type(self).__name__))

    def evaluate(self, ev: Evaluation) -> CriterionResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def _result(
        self, expected: str, actual: str, units: str, verdict: Verdict, message: str = ""
    ) -> CriterionResult:
        return CriterionResult(
            name=self.label(),
            kind=str(getattr(self, "kind", "")),
            expected=expected,
            actual=actual,
            units=units,
            optional=self.optional,
            verdict=verdict,
            message=message,
        )


def _fmt(x: float | None) -> str:
    if x is None:
        return "none"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.6g}"


def _upper_bound(actual: float | None, limit: float, acceptable: float | None) -> Verdict:
    """SUCCESS if actual ≤ limit, ACCEPTABLE if ≤ acceptable, else FAILURE (None fails)."""
    if actual is None or math.isnan(actual):
        return Verdict.FAILURE
    if actual <= limit + 1e-9:
        return Verdict.SUCCESS
    if acceptable is not None and actual <= acceptable + 1e-9:
        return Verdict.ACCEPTABLE
    return Verdict.FAILURE


def _lower_bound(actual: float | None, limit: float, acceptable: float | None) -> Verdict:
    """SUCCESS if actual ≥ limit, ACCEPTABLE if ≥ acceptable, else FAILURE (None fails)."""
    if actual is None or math.isnan(actual):
        return Verdict.FAILURE
    if actual >= limit - 1e-9:
        return Verdict.SUCCESS
    if acceptable is not None and actual >= acceptable - 1e-9:
        return Verdict.ACCEPTABLE
    return Verdict.FAILURE


def _ok(cond: bool) -> Verdict:
    return Verdict.SUCCESS if cond else Verdict.FAILURE


def _states(s: str | Sequence[str]) -> list[str]:
    return [s] if isinstance(s, str) else list(s)


# --------------------------------------------------------------------------- criteria
class MaxSilentFailure(_Criterion):
    """Silent-failure time (wrong output while NOMINAL) at most ``max_s`` seconds."""

    kind: Literal["max_silent_failure_s"] = "max_silent_failure_s"
    max_s: float = Field(default=0.0, ge=0)
    acceptable_s: float | None = Field(default=None, ge=0)

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        a = ev.metrics.silent_failure_s
        msg = (
            ""
            if ev.metrics.first_silent_t is None
            else f"first silent at t={_fmt(ev.metrics.first_silent_t)} s"
        )
        return self._result(
            f"<= {_fmt(self.max_s)}",
            _fmt(a),
            "s",
            _upper_bound(a, self.max_s, self.acceptable_s),
            msg,
        )


class FaultDetected(_Criterion):
    """An injected fault is detected within ``within_s`` of its onset by a finding that names the
    right channel (and, if given, monitor / finding kind).

    ``fault``: index or name of the fault in the scenario, or None for every fault. ``channel``:
    None means the fault's own channel (any channel if the fault has none), ``"*"`` any channel.
    ``finding`` matches a finding kind exactly or as a dotted prefix ("liveness" ⊃ "liveness.*").
    ``by_state`` also accepts a health-state escalation as detection.
    """

    kind: Literal["fault_detected"] = "fault_detected"
    fault: int | str | None = None
    within_s: float = Field(gt=0)
    acceptable_s: float | None = Field(default=None, gt=0)
    channel: str | None = None
    monitor: str | None = None
    finding: str | None = None
    by_state: bool = False

    def _default_name(self) -> str:
        return f"fault_detected[{'all' if self.fault is None else self.fault}]"

    def _targets(self, faults: Sequence[FaultWindow]) -> list[FaultWindow]:
        if self.fault is None:
            return list(faults)
        if isinstance(self.fault, int):
            return [f for f in faults if f.index == self.fault]
        return [f for f in faults if f.name == self.fault]

    def _matches(self, r: FindingRecord, f: FaultWindow) -> bool:
        if r.event != "raised":
            return False
        want = (
            f.channel if self.channel is None else (None if self.channel == "*" else self.channel)
        )
        if want is not None and r.channel != want:
            return False
        if self.monitor is not None and r.monitor != self.monitor:
            return False
        return (
            self.finding is None or r.kind == self.finding or r.kind.startswith(self.finding + ".")
        )

    def delay(self, f: FaultWindow, ev: Evaluation) -> tuple[float | None, str]:
        """Onset → first qualifying detection of ``f`` (None if never), and what detected it."""
        best: float | None = None
        what = ""
        for r in ev.findings:
            if r.t >= f.onset - 1e-9 and self._matches(r, f):
                best, what = r.t - f.onset, f"{r.kind} ({r.monitor}, {r.channel})"
                break
        if self.by_state:
            from sim.metrics import escalations

            idx = np.flatnonzero(escalations(ev.series.state) & (ev.series.t >= f.onset - 1e-9))
            if idx.size:
                d = float(ev.series.t[idx[0]]) - f.onset
                if best is None or d < best:
                    best, what = d, f"state {ev.series.state_names()[int(idx[0])]}"
        return best, what

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        targets = self._targets(ev.faults)
        exp = f"<= {_fmt(self.within_s)}"
        if not targets:
            return self._result(
                exp, "no such fault", "s", Verdict.FAILURE, f"fault {self.fault!r} not in scenario"
            )
        worst: float | None = -math.inf
        notes = []
        for f in targets:
            d, what = self.delay(f, ev)
            notes.append(f"{f.name}: {_fmt(d)} s" + (f" by {what}" if what else " (undetected)"))
            if d is None:
                worst = None
            elif worst is not None:
                worst = max(worst, d)
        return self._result(
            exp,
            _fmt(worst),
            "s",
            _upper_bound(worst, self.within_s, self.acceptable_s),
            "; ".join(notes),
        )


class StateAt(_Criterion):
    """The health state in force at time ``t`` is (one of) ``state``."""

    kind: Literal["state_at"] = "state_at"
    t: float = Field(ge=0)
    state: States

    def _default_name(self) -> str:
        return f"state_at[{_fmt(self.t)}]"

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        want = _states(self.state)
        got = ev.series.state_at(self.t)
        return self._result("|".join(want), str(got), "state", _ok(got in want))


class StateBy(_Criterion):
    """The health state becomes (one of) ``state`` at some step between ``after`` and ``t``."""

    kind: Literal["state_by"] = "state_by"
    t: float = Field(ge=0)
    state: States
    after: float = Field(default=0.0, ge=0)

    def _default_name(self) -> str:
        return f"state_by[{'|'.join(_states(self.state))}]"

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        want = [STATE_CODE[s] for s in _states(self.state)]
        s = ev.series
        hit = np.flatnonzero(np.isin(s.state, want) & (s.t >= self.after - 1e-9))
        first = float(s.t[hit[0]]) if hit.size else None
        ok = first is not None and first <= self.t + 1e-9
        return self._result(f"reached by {_fmt(self.t)}", f"reached at {_fmt(first)}", "s", _ok(ok))


class StateNever(_Criterion):
    """The health state is never (one of) ``state`` between ``from_t`` and ``to_t``."""

    kind: Literal["state_never"] = "state_never"
    state: States
    from_t: float = Field(default=0.0, ge=0)
    to_t: float | None = None

    def _default_name(self) -> str:
        return f"state_never[{'|'.join(_states(self.state))}]"

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        want = [STATE_CODE[s] for s in _states(self.state)]
        s = ev.series
        end = math.inf if self.to_t is None else self.to_t
        hit = np.flatnonzero(
            np.isin(s.state, want) & (s.t >= self.from_t - 1e-9) & (s.t <= end + 1e-9)
        )
        first = float(s.t[hit[0]]) if hit.size else None
        actual = "never" if first is None else f"at {_fmt(first)}"
        return self._result("never", actual, "s", _ok(first is None))


class TakeoverLead(_Criterion):
    """A takeover is requested at least ``min_s`` before the output could no longer be vouched for
    (sim.metrics defines the instant). Passes when the output never became unvouchable."""

    kind: Literal["takeover_lead"] = "takeover_lead"
    min_s: float = 0.0
    acceptable_s: float | None = None

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        m = ev.metrics
        exp = f">= {_fmt(self.min_s)}"
        if m.takeover_requested_at is None:
            return self._result(
                exp, "no request", "s", Verdict.FAILURE, "no takeover was requested"
            )
        if m.unvouchable_at is None:
            return self._result(exp, "inf", "s", Verdict.SUCCESS, "output never became unvouchable")
        return self._result(
            exp,
            _fmt(m.takeover_lead_s),
            "s",
            _lower_bound(m.takeover_lead_s, self.min_s, self.acceptable_s),
            f"requested at {_fmt(m.takeover_requested_at)},"
            f" unvouchable at {_fmt(m.unvouchable_at)}",
        )


class HumanTookOver(_Criterion):
    """The human took over (``expected``), before the request's deadline if ``before_deadline``."""

    kind: Literal["human_took_over"] = "human_took_over"
    expected: bool = True
    before_deadline: bool = True

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        m = ev.metrics
        took = m.human_took_over and (not self.before_deadline or bool(m.took_over_before_deadline))
        actual = "no" if not m.human_took_over else f"at {_fmt(m.took_over_at)}"
        exp = (
            ("yes" + (" before deadline" if self.before_deadline else ""))
            if self.expected
            else "no"
        )
        return self._result(
            exp, actual, "", _ok(took == self.expected), f"deadline {_fmt(m.takeover_deadline)}"
        )


class MrmEntered(_Criterion):
    """MINIMAL_RISK is entered (``expected``), by time ``by`` if given."""

    kind: Literal["mrm_entered"] = "mrm_entered"
    expected: bool = True
    by: float | None = None

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        at = ev.metrics.mrm_entered_at
        entered = at is not None and (self.by is None or at <= self.by + 1e-9)
        exp = (
            ("yes" + ("" if self.by is None else f" by {_fmt(self.by)}")) if self.expected else "no"
        )
        return self._result(
            exp, "no" if at is None else f"at {_fmt(at)}", "s", _ok(entered == self.expected)
        )


class Nominal(_Criterion):
    """A fault-free drive: no takeover request, no MRM, at most ``max_degraded_s`` in DEGRADED."""

    kind: Literal["nominal"] = "nominal"
    max_degraded_s: float = Field(default=0.0, ge=0)

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        tis = ev.metrics.time_in_state
        deg = tis["DEGRADED"]
        tk = ev.metrics.takeover_requested_at is not None or tis["TAKEOVER_REQUESTED"] > 0
        mrm = ev.metrics.mrm_entered_at is not None
        ok = not tk and not mrm and deg <= self.max_degraded_s + 1e-9
        yn = {True: "yes", False: "no"}
        actual = f"degraded {_fmt(deg)} s, takeover {yn[tk]}, mrm {yn[mrm]}"
        return self._result(
            f"degraded <= {_fmt(self.max_degraded_s)} s, no takeover, no mrm", actual, "", _ok(ok)
        )


class MaxFalseAlarms(_Criterion):
    """False alarms (sim.metrics) per hour of fault-free operation at most ``max``."""

    kind: Literal["max_false_alarms_per_hour"] = "max_false_alarms_per_hour"
    max: float = Field(default=0.0, ge=0)
    acceptable: float | None = Field(default=None, ge=0)

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        m = ev.metrics
        msg = f"{m.false_alarms} alarm(s) in {_fmt(m.fault_free_s)} s fault-free"
        return self._result(
            f"<= {_fmt(self.max)}",
            _fmt(m.false_alarms_per_hour),
            "1/h",
            _upper_bound(m.false_alarms_per_hour, self.max, self.acceptable),
            msg,
        )


class RmseBelow(_Criterion):
    """Position RMSE of a channel's confirmed tracks (or the ``fused`` output) at most ``max_m``."""

    kind: Literal["rmse_below"] = "rmse_below"
    channel: str = FUSED
    max_m: float = Field(gt=0)
    acceptable_m: float | None = Field(default=None, gt=0)

    def _default_name(self) -> str:
        return f"rmse_below[{self.channel}]"

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        if self.channel not in ev.metrics.rmse:
            return self._result(
                f"<= {_fmt(self.max_m)}",
                "n/a",
                "m",
                Verdict.FAILURE,
                f"no ground-frame tracks for channel {self.channel!r}",
            )
        a = ev.metrics.rmse[self.channel]
        return self._result(
            f"<= {_fmt(self.max_m)}",
            _fmt(a),
            "m",
            _upper_bound(a, self.max_m, self.acceptable_m),
            "" if a is not None else "no matched tracks",
        )


class IdSwitchesBelow(_Criterion):
    """ID switches of a channel (or the ``fused`` output) at most ``max``."""

    kind: Literal["id_switches_below"] = "id_switches_below"
    channel: str = FUSED
    max: int = Field(default=0, ge=0)
    acceptable: int | None = Field(default=None, ge=0)

    def _default_name(self) -> str:
        return f"id_switches_below[{self.channel}]"

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        a = ev.metrics.id_switches.get(self.channel)
        v = _upper_bound(None if a is None else float(a), self.max, self.acceptable)
        return self._result(f"<= {self.max}", "n/a" if a is None else str(a), "switches", v)


class ObjectOutput(_Criterion):
    """Actor ``actor`` is in the output (within the position tolerance) on at least ``min_fraction``
    of the steps in [from_t, to_t] where it exists (and is in the critical zone if
    ``in_zone_only``); with ``uncorroborated`` set, the matched object also carries that flag."""

    kind: Literal["object_output"] = "object_output"
    actor: int | str
    from_t: float = Field(default=0.0, ge=0)
    to_t: float | None = None
    min_fraction: float = Field(default=1.0, gt=0, le=1)
    in_zone_only: bool = True
    uncorroborated: bool | None = None

    def _default_name(self) -> str:
        return f"object_output[{self.actor}]"

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        s = ev.series
        exp = f">= {_fmt(self.min_fraction)}" + (
            ""
            if self.uncorroborated is None
            else (" uncorroborated" if self.uncorroborated else " corroborated")
        )
        if str(self.actor) not in s.actor_ids:
            return self._result(exp, "n/a", "fraction", Verdict.FAILURE, f"no actor {self.actor!r}")
        a = s.actor_ids.index(str(self.actor))
        end = math.inf if self.to_t is None else self.to_t
        m = match_frames(s.truth_pos, s.objects, ev.tolerance.gate)
        exists = ~np.isnan(s.truth_pos[:, a, 0]) & (s.t >= self.from_t - 1e-9) & (s.t <= end + 1e-9)
        if self.in_zone_only:
            exists &= ev.tolerance.critical_zone.contains(s.truth_pos[:, a])
        with np.errstate(invalid="ignore"):
            ok = exists & m.matched[:, a] & (m.dist[:, a] <= ev.tolerance.position_m)
        if self.uncorroborated is not None and s.objects.flags.size:
            corr = (s.objects.flags[np.maximum(m.row[:, a], 0)] & 1) == 1
            ok &= corr != self.uncorroborated
        n = int(exists.sum())
        if n == 0:
            return self._result(
                exp, "n/a", "fraction", Verdict.FAILURE, "actor never in the evaluated window"
            )
        frac = float(ok.sum()) / n
        return self._result(
            exp,
            _fmt(frac),
            "fraction",
            _ok(frac >= self.min_fraction - 1e-12),
            f"{int(ok.sum())}/{n} steps",
        )


class ShadowNeverOutput(_Criterion):
    """No output object ever draws on shadow channel ``channel`` (None: every shadow channel)."""

    kind: Literal["shadow_never_output"] = "shadow_never_output"
    channel: str | None = None

    def evaluate(self, ev: Evaluation) -> CriterionResult:
        s = ev.series
        names = (
            [self.channel]
            if self.channel
            else [c for c, r in s.channel_roles.items() if r == "shadow"]
        )
        bits = 0
        for c in names:
            if c in s.channels:
                bits |= 1 << (s.channels.index(c) + 1)
        n = int(np.count_nonzero(s.objects.flags & bits)) if bits else 0
        msg = "" if names else "no shadow channel configured"
        return self._result("0", str(n), "objects", _ok(n == 0), msg)


Criterion = Annotated[
    MaxSilentFailure
    | FaultDetected
    | StateAt
    | StateBy
    | StateNever
    | TakeoverLead
    | HumanTookOver
    | MrmEntered
    | Nominal
    | MaxFalseAlarms
    | RmseBelow
    | IdSwitchesBelow
    | ObjectOutput
    | ShadowNeverOutput,
    Field(discriminator="kind"),
]


class _CriterionList(BaseModel):
    """Wrapper used to validate a bare list of criteria."""

    model_config = ConfigDict(extra="forbid")
    items: list[Criterion]


def parse_criteria(items: Sequence[object]) -> list[Criterion]:
    """Validate a list of criterion dicts (mostly for tests and tools)."""
    return list(_CriterionList.model_validate({"items": list(items)}).items)


def evaluate_criteria(criteria: Sequence[Criterion], ev: Evaluation) -> list[CriterionResult]:
    """Evaluate every criterion; an error inside one becomes that criterion's FAILURE."""
    out = []
    for c in criteria:
        try:
            out.append(c.evaluate(ev))
        except Exception as exc:  # a broken criterion must fail loudly, not abort the report
            out.append(c._result("", "error", "", Verdict.FAILURE, f"evaluation error: {exc!r}"))
    return out
