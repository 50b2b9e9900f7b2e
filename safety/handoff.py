"""The takeover request: why (in one plain sentence), evidence, affected objects, and the deadline.

Timings follow the ALKS practice (UNECE R157): the human gets at least ``budget_s`` (10 s by
default) before the minimal-risk manoeuvre starts, with the request escalating from information
to warning to critical as the deadline approaches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from safety.crosscheck import VouchedObject
from safety.findings import Finding, Impact


class LockoutConfig(BaseModel):
    """Repeated takeover requests: ``max_requests`` within ``window_s`` lock automation out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_requests: int = Field(default=3, ge=1)
    window_s: float = Field(default=600.0, gt=0)


class TakeoverConfig(BaseModel):
    """Takeover budget and its escalation stages (information → warning → critical)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget_s: float = Field(default=10.0, gt=0)  # UNECE R157 ALKS: at least 10 s
    warning_after_s: float = Field(default=3.0, ge=0)  # information until then
    critical_last_s: float = Field(default=4.0, gt=0)  # critical in the last seconds
    lockout: LockoutConfig = LockoutConfig()

    @model_validator(mode="after")
    def _stages_fit(self) -> TakeoverConfig:
        if self.critical_last_s > self.budget_s:
            raise ValueError(
                f"@budget_s: takeover budget {self.budget_s} s is shorter than the critical stage "
                f"(critical_last_s = {self.critical_last_s} s)"
            )
        if self.warning_after_s > self.budget_s - self.critical_last_s:
            raise ValueError(
                f"@budget_s: takeover budget {self.budget_s} s is shorter than the warning stages "
                f"(warning_after_s {self.warning_after_s} s + critical_last_s "
                f"{self.critical_last_s} s)"
            )
        return self


class TakeoverStage(StrEnum):
    """How urgently the takeover request is presented to the human."""

    INFORMATION = "information"
    WARNING = "warning"
    CRITICAL = "critical"
    EXPIRED = "expired"  # deadline passed: the minimal-risk manoeuvre takes over


_IMPACT_RANK = {Impact.INFO: 0, Impact.CHANNEL: 1, Impact.SYSTEM: 2, Impact.CRITICAL: 3}


@dataclass(frozen=True)
class TakeoverRequest:
    """A request for the human to take over, with its reason, evidence and deadline."""

    reason: str  # one plain sentence a driver understands
    evidence: tuple[Finding, ...]  # the root-cause findings
    affected_objects: tuple[int, ...]  # ids of output objects whose channels are at fault
    issued_at: float
    deadline: float
    warning_after_s: float = 3.0
    critical_last_s: float = 4.0
    acknowledged_at: float | None = field(default=None)

    @property
    def budget_s(self) -> float:
        """Seconds between issue and deadline."""
        return self.deadline - self.issued_at

    def remaining(self, t: float) -> float:
        """Seconds left until the deadline at time ``t`` (between 0 and the budget)."""
        return max(0.0, min(self.budget_s, self.deadline - t))

    def stage(self, t: float) -> TakeoverStage:
        """Escalation stage at ``t``: information, then warning, critical in the last seconds."""
        if not math.isfinite(t) or t >= self.deadline:
            return TakeoverStage.EXPIRED
        if t >= self.deadline - self.critical_last_s:
            return TakeoverStage.CRITICAL
        if t >= self.issued_at + self.warning_after_s:
            return TakeoverStage.WARNING
        return TakeoverStage.INFORMATION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit log."""
        return {
            "reason": self.reason,
            "evidence": [f.to_dict() for f in self.evidence],
            "affected_objects": list(self.affected_objects),
            "issued_at": self.issued_at,
            "deadline": self.deadline,
            "acknowledged_at": self.acknowledged_at,
        }


def _clause(message: str) -> str:
    """A finding's message as a clause: no trailing full stop, first letter kept."""
    m = message.strip().rstrip(".!").strip()
    return m or "a monitor reported a fault"


def _lower_first(clause: str) -> str:
    """Lower-case a clause's first letter unless it starts an acronym ("NaN", "GPS")."""
    return clause[:1].lower() + clause[1:] if clause[1:2].islower() else clause


def root_causes(findings: Iterable[Finding], limit: int = 3) -> list[Finding]:
    """The most severe findings first, one per (kind, channel), at most ``limit``."""
    seen: dict[tuple[str, str | None], Finding] = {}
    for f in findings:
        if f.impact is Impact.INFO:
            continue
        seen.setdefault(f.key, f)
    ordered = sorted(seen.values(), key=lambda f: (-_IMPACT_RANK[f.impact], f.t, f.kind))
    return ordered[:limit]


#: Driver-facing wording per finding kind (longest matching prefix wins). The technical message
#: with numbers stays in the request's evidence; the reason is what a person reads at a glance.
_PHRASES: tuple[tuple[str, str], ...] = (
    ("integrity.frozen", "the {ch} image is frozen"),
    ("integrity.stuck", "the {ch} output is stuck"),
    ("integrity.detector", "the {ch} detector has failed"),
    ("integrity.time", "the {ch} timestamps are wrong"),
    ("integrity.stale_timestamp", "the {ch} data is out of date"),
    ("integrity", "the {ch} is sending corrupted data"),
    ("liveness.latency", "the {ch} data arrives too late"),
    ("liveness", "the {ch} has stopped delivering"),
    ("confidence", "the {ch} is no longer sure what it sees"),
    ("consistency", "the {ch} tracking no longer fits its measurements"),
    ("drift", "the {ch} has lost track of an object"),
    ("crosscheck.disagreement", "the sensors disagree about an object"),
    ("crosscheck", "the {ch} contradicts the other sensors"),
    ("calibration", "the sensors have drifted out of calibration"),
    ("distribution", "the {ch} sees conditions it was not validated for"),
    ("deadline", "the perception system is running too slowly"),
    ("perception.unavailable", "no sensor is delivering usable data"),
    ("internal", "the safety monitor has failed"),
)


def driver_phrase(f: Finding) -> str:
    """A short clause a driver understands for one finding (its own message if no kind fits)."""
    best = max(
        (p for p in _PHRASES if f.kind.startswith(p[0])), key=lambda p: len(p[0]), default=None
    )
    if best is None:
        return _lower_first(_clause(f.message))
    return best[1].format(ch=(f.channel or "perception").replace("_", " "))


def takeover_reason(findings: Sequence[Finding]) -> str:
    """One plain sentence naming what went wrong, ending with the request to take over.

    E.g. "The camera image is frozen and the radar has stopped delivering — please take over."
    """
    phrases: list[str] = []
    for f in root_causes(findings):
        p = driver_phrase(f)
        if p not in phrases:
            phrases.append(p)
    if not phrases:
        phrases = ["perception can no longer be vouched for"]
    text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{text[:1].upper()}{text[1:]} — please take over."


def affected_objects(
    findings: Sequence[Finding], objects: Sequence[VouchedObject]
) -> tuple[int, ...]:
    """Ids of output objects that rest on a faulted channel or on a track a finding names."""
    if not objects:
        return ()
    if any(f.channel is None and not f.track_ids for f in findings):
        return tuple(o.object_id for o in objects)
    chans = {f.channel for f in findings if f.channel is not None and not f.track_ids}
    named = {(f.channel, tid) for f in findings for tid in f.track_ids}
    out = []
    for o in objects:  # few objects carry faults; this is not on the nominal hot path
        if chans.intersection(o.channels) or any(
            (c, tid) in named for c, tid in o.track_ids.items()
        ):
            out.append(o.object_id)
    return tuple(out)


def make_takeover_request(
    t: float,
    findings: Sequence[Finding],
    cfg: TakeoverConfig,
    *,
    objects: Sequence[VouchedObject] = (),
    reason: str | None = None,
) -> TakeoverRequest:
    """A request issued at ``t`` with deadline ``t + budget_s``; reason built from ``findings``."""
    causes = tuple(root_causes(findings, limit=len(findings) or 1))
    return TakeoverRequest(
        reason=reason if reason is not None else takeover_reason(findings),
        evidence=causes,
        affected_objects=affected_objects(causes, objects),
        issued_at=t,
        deadline=t + cfg.budget_s,
        warning_after_s=cfg.warning_after_s,
        critical_last_s=cfg.critical_last_s,
    )
