"""The health state machine, pure logic (no I/O, no clock): latch findings, aggregate, decide.

Three small pieces the supervisor chains every step:

1. :class:`FaultLatch` — one active fault per (kind, channel); a fault clears only after its
   monitor has been quiet for the clean interval (a detector that resets itself cannot clear it).
2. :func:`assess` — fault-tree aggregation: a CHANNEL fault that another healthy non-shadow
   channel covers stays CHANNEL (DEGRADED); on the last healthy channel it becomes SYSTEM
   (takeover). Findings on shadow channels are information only.
3. :class:`HealthStateMachine` — looks each assessed fault up in :data:`CONSEQUENCES` (one
   declarative Impact × HealthState table) and takes the most severe consequence. Escalation is
   immediate; de-escalation waits for the clean interval; MINIMAL_RISK is latched until reset.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from safety.crosscheck import VouchedObject
from safety.findings import Finding, Impact
from safety.handoff import TakeoverConfig, TakeoverRequest, make_takeover_request, root_causes


class HealthState(StrEnum):
    """What the supervisor currently vouches for."""

    NOMINAL = "nominal"  # all channels healthy
    DEGRADED = "degraded"  # a fault redundancy covers; automation continues
    TAKEOVER_REQUESTED = "takeover_requested"  # automation no longer assured; human asked
    MANUAL = "manual"  # the human drives; automation off until engaged again
    MINIMAL_RISK = "minimal_risk"  # minimal-risk manoeuvre; latched until explicit reset


class Consequence(IntEnum):
    """What a fault does to the state (ordered: the most severe wins)."""

    NONE = 0  # information only, or the state already handles it
    DEGRADE = 1
    TAKEOVER = 2
    MRM = 3


_S = HealthState
_C = Consequence

#: The declarative consequence table (as openpilot's events table): Impact × HealthState.
#: Impacts are the *assessed* ones (after redundancy: an uncovered CHANNEL fault reads SYSTEM).
#: In MANUAL the human drives, so nothing is commanded; active faults only block re-engaging.
CONSEQUENCES: Mapping[Impact, Mapping[HealthState, Consequence]] = {
    Impact.INFO: {
        _S.NOMINAL: _C.NONE, _S.DEGRADED: _C.NONE, _S.TAKEOVER_REQUESTED: _C.NONE,
        _S.MANUAL: _C.NONE, _S.MINIMAL_RISK: _C.NONE,
    },
    Impact.CHANNEL: {
        _S.NOMINAL: _C.DEGRADE, _S.DEGRADED: _C.DEGRADE, _S.TAKEOVER_REQUESTED: _C.NONE,
        _S.MANUAL: _C.NONE, _S.MINIMAL_RISK: _C.NONE,
    },
    Impact.SYSTEM: {
        _S.NOMINAL: _C.TAKEOVER, _S.DEGRADED: _C.TAKEOVER, _S.TAKEOVER_REQUESTED: _C.NONE,
        _S.MANUAL: _C.NONE, _S.MINIMAL_RISK: _C.NONE,
    },
    Impact.CRITICAL: {
        _S.NOMINAL: _C.MRM, _S.DEGRADED: _C.MRM, _S.TAKEOVER_REQUESTED: _C.MRM,
        _S.MANUAL: _C.NONE, _S.MINIMAL_RISK: _C.NONE,
    },
}

IMPACT_RANK: Mapping[Impact, int] = {
    Impact.INFO: 0, Impact.CHANNEL: 1, Impact.SYSTEM: 2, Impact.CRITICAL: 3,
}


class StateTimings(BaseModel):
    """Hysteresis: a fault clears, and DEGRADED returns to NOMINAL, after this clean interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recover_after_s: float = Field(default=2.0, gt=0)


# --------------------------------------------------------------------------- latch
@dataclass
class ActiveFault:
    """A latched fault: the first and the latest finding of one (kind, channel)."""

    first: Finding
    latest: Finding
    since: float  # supervisor time it was raised
    last_seen: float  # supervisor time the monitor last reported it

    @property
    def key(self) -> tuple[str, str | None]:
        return self.first.key


@dataclass
class LatchUpdate:
    """What changed in one latch step."""

    raised: list[Finding] = field(default_factory=list)
    cleared: list[ActiveFault] = field(default_factory=list)


class FaultLatch:
    """Active faults keyed by (kind, channel); each clears after ``clear_after_s`` of quiet."""

    def __init__(self, clear_after_s: float) -> None:
        self.clear_after_s = float(clear_after_s)
        self.active: dict[tuple[str, str | None], ActiveFault] = {}

    def update(self, t: float, findings: Iterable[Finding]) -> LatchUpdate:
        """Latch this step's findings (reported at ``t``); clear faults quiet long enough."""
        out = LatchUpdate()
        for f in findings:
            a = self.active.get(f.key)
            if a is None:
                self.active[f.key] = ActiveFault(f, f, t, t)
                out.raised.append(f)
            else:  # keep the most severe report while active: no de-escalation without quiet
                if IMPACT_RANK[f.impact] >= IMPACT_RANK[a.latest.impact]:
                    a.latest = f
                a.last_seen = t
        if len(self.active) > len(out.raised):
            for key, a in list(self.active.items()):
                if a.last_seen < t and t - a.last_seen >= self.clear_after_s:
                    out.cleared.append(self.active.pop(key))
        return out

    def findings(self) -> list[Finding]:
        """The latest finding of every active fault."""
        return [a.latest for a in self.active.values()]

    def clear(self) -> list[ActiveFault]:
        """Drop every active fault (used only by an explicit reset); returns them."""
        gone = list(self.active.values())
        self.active.clear()
        return gone


# --------------------------------------------------------------------------- aggregation
@dataclass(frozen=True)
class AssessedFault:
    """An active fault after redundancy: its assessed impact and who covers it."""

    finding: Finding
    impact: Impact
    last_seen: float
    covered_by: tuple[str, ...] = ()


def assess(
    faults: Iterable[ActiveFault], roles: Mapping[str, str]
) -> list[AssessedFault]:
    """Fault-tree aggregation of active faults given each channel's role.

    Shadow-channel findings are information only. A CHANNEL fault is covered when another
    non-shadow channel has no active CHANNEL-or-worse fault; otherwise it reads SYSTEM, as does a
    CHANNEL finding that names no channel.
    """
    items = list(faults)
    if not items:
        return []
    info = Impact.INFO
    unhealthy = set()
    for a in items:
        f = a.latest
        c = f.channel
        if c is not None and f.impact is not info and roles.get(c) != "shadow":
            unhealthy.add(c)
    healthy: tuple[str, ...] | None = None  # built when a CHANNEL fault needs it
    out: list[AssessedFault] = []
    for a in items:
        f = a.latest
        impact = f.impact
        ch = f.channel
        if ch is not None and roles.get(ch) == "shadow":
            impact = info
        covered: tuple[str, ...] = ()
        if impact is Impact.CHANNEL:
            if healthy is None:
                healthy = tuple(c for c, role in roles.items()
                                if role != "shadow" and c not in unhealthy)
            covered = tuple(c for c in healthy if c != ch)
            if ch is None or not covered:
                impact = Impact.SYSTEM
        out.append(_assessed(f, impact, a.last_seen, covered))
    return out


def _assessed(finding: Finding, impact: Impact, last_seen: float, covered_by: tuple[str, ...]
              ) -> AssessedFault:
    """``AssessedFault(finding, impact, last_seen, covered_by)`` without the frozen dataclass's
    per-field ``object.__setattr__`` calls (the same instance dictionary)."""
    a = object.__new__(AssessedFault)
    object.__setattr__(a, "__dict__", {"finding": finding, "impact": impact,
                                       "last_seen": last_seen, "covered_by": covered_by})
    return a


def healthy_channels(faults: Iterable[AssessedFault], names: Iterable[str]) -> dict[str, bool]:
    """Channel name → True when it has no active fault worse than information."""
    bad = {
        a.finding.channel for a in faults
        if a.finding.channel is not None and a.finding.impact is not Impact.INFO
    }
    if not bad:
        return dict.fromkeys(names, True)
    return {n: n not in bad for n in names}


# --------------------------------------------------------------------------- state machine
@dataclass(frozen=True)
class Transition:
    """A state change with its reason (plain words) and the findings behind it."""

    t: float
    source: HealthState
    target: HealthState
    reason: str
    findings: tuple[Finding, ...] = ()
    cause: str = "fault"  # fault | deadline | recovered | acknowledged | engaged | reset

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit log's state_change event."""
        return {
            "from": str(self.source), "to": str(self.target), "reason": self.reason,
            "cause": self.cause, "findings": [f.to_dict() for f in self.findings],
        }


def _sentence(findings: Sequence[Finding], tail: str) -> str:
    parts = [f.message.strip().rstrip(".!").strip() for f in root_causes(findings)]
    parts = [p for p in parts if p] or ["A monitor reported a fault"]
    return f"{'; '.join(parts)} — {tail}"


class HealthStateMachine:
    """NOMINAL / DEGRADED / TAKEOVER_REQUESTED / MANUAL / MINIMAL_RISK, driven by assessed faults.

    ``step`` returns at most one transition per call (the most severe consequence wins).
    """

    def __init__(self, timings: StateTimings, takeover: TakeoverConfig) -> None:
        self.timings = timings
        self.takeover_cfg = takeover
        self.state = HealthState.NOMINAL
        self.since = -math.inf
        self.takeover: TakeoverRequest | None = None
        self.locked_out = False
        self._requests: deque[float] = deque()
        self._last_evidence = -math.inf

    # ------------------------------------------------------------------ queries
    @property
    def last_evidence_t(self) -> float:
        """Supervisor time a fault worse than information was last reported."""
        return self._last_evidence

    def consequence(self, faults: Iterable[AssessedFault]) -> Consequence:
        """The most severe consequence of ``faults`` in the current state."""
        row = (CONSEQUENCES[a.impact][self.state] for a in faults)
        return max(row, default=Consequence.NONE)

    # ------------------------------------------------------------------ step
    def step(
        self, t: float, faults: Sequence[AssessedFault], objects: Sequence[VouchedObject] = ()
    ) -> Transition | None:
        """Advance to time ``t`` with the currently active (assessed) faults."""
        serious = [a for a in faults if a.impact is not Impact.INFO]
        if serious:
            self._last_evidence = max(self._last_evidence, max(a.last_seen for a in serious))
        state = self.state
        if state is HealthState.MINIMAL_RISK:
            return None
        by: dict[Consequence, list[Finding]] = {}
        for a in serious:
            by.setdefault(CONSEQUENCES[a.impact][state], []).append(a.finding)
        if Consequence.MRM in by:
            return self._go(t, HealthState.MINIMAL_RISK, _sentence(
                by[Consequence.MRM], "no usable perception: starting the minimal-risk manoeuvre."
            ), by[Consequence.MRM])
        if state is HealthState.TAKEOVER_REQUESTED and self.takeover is not None:
            if t >= self.takeover.deadline:
                budget = self.takeover.budget_s
                return self._go(
                    t, HealthState.MINIMAL_RISK,
                    f"No one took over within {budget:g} s — starting the minimal-risk "
                    "manoeuvre.", self.takeover.evidence, cause="deadline",
                )
            return None
        if Consequence.TAKEOVER in by:
            req = make_takeover_request(t, by[Consequence.TAKEOVER], self.takeover_cfg,
                                        objects=objects)
            self.takeover = req
            self._note_request(t)
            return self._go(t, HealthState.TAKEOVER_REQUESTED, req.reason, req.evidence)
        if Consequence.DEGRADE in by and state is HealthState.NOMINAL:
            found = by[Consequence.DEGRADE]
            cover = sorted({c for a in serious for c in a.covered_by})
            verb = "covers" if len(cover) == 1 else "cover"
            tail = (f"{' and '.join(cover)} still {verb} it; continuing with reduced redundancy."
                    if cover else "continuing with reduced redundancy.")
            return self._go(t, HealthState.DEGRADED, _sentence(found, tail), found)
        if (
            state is HealthState.DEGRADED and not serious and not self.locked_out
            and t - self._last_evidence >= self.timings.recover_after_s
        ):
            return self._go(
                t, HealthState.NOMINAL,
                f"All faults clear for {self.timings.recover_after_s:g} s — back to nominal.",
                (), cause="recovered",
            )
        return None

    # ------------------------------------------------------------------ human / operator
    def acknowledge(self, t: float) -> Transition | None:
        """The human takes over: TAKEOVER_REQUESTED → MANUAL (None if no request is pending)."""
        if self.state is not HealthState.TAKEOVER_REQUESTED or self.takeover is None:
            return None
        if not t < self.takeover.deadline:
            return None
        self.takeover = TakeoverRequest(**{**self.takeover.__dict__, "acknowledged_at": t})
        lead = t - self.takeover.issued_at
        return self._go(t, HealthState.MANUAL, f"Driver took over after {lead:.1f} s — "
                        "automation off.", self.takeover.evidence, cause="acknowledged")

    def engage_refusal(self, faults: Sequence[AssessedFault]) -> str | None:
        """Why automation may not be engaged now (None: it may)."""
        if self.state is not HealthState.MANUAL:
            return f"automation can be engaged only from manual, not {self.state}"
        if self.locked_out:
            return "automation is locked out after repeated takeover requests; reset first"
        serious = [a.finding for a in faults if a.impact is not Impact.INFO]
        if serious:
            return _sentence(serious, "cannot engage while this fault is active.")
        return None

    def engage(self, t: float, faults: Sequence[AssessedFault]) -> Transition | None:
        """MANUAL → NOMINAL when no fault is active and automation is not locked out."""
        if self.engage_refusal(faults) is not None:
            return None
        return self._go(t, HealthState.NOMINAL, "Automation engaged: no active fault.", (),
                        cause="engaged")

    def reset(self, t: float, faults: Sequence[AssessedFault]) -> Transition:
        """Explicit reset: unlatch MINIMAL_RISK, lift lockout, drop the request.

        Goes to NOMINAL when no fault is active, else MANUAL (the human keeps control).
        """
        serious = tuple(a.finding for a in faults if a.impact is not Impact.INFO)
        self.locked_out = False
        self._requests.clear()
        self.takeover = None
        target = HealthState.MANUAL if serious else HealthState.NOMINAL
        reason = (
            _sentence(serious, "reset: the human keeps control until the fault clears.")
            if serious else "Reset by the operator: no active fault."
        )
        tr = Transition(t, self.state, target, reason, serious, cause="reset")
        self.state, self.since = target, t
        return tr

    # ------------------------------------------------------------------ internals
    def _note_request(self, t: float) -> None:
        q = self._requests
        q.append(t)
        window = self.takeover_cfg.lockout.window_s
        while q and t - q[0] > window:
            q.popleft()
        if len(q) >= self.takeover_cfg.lockout.max_requests:
            self.locked_out = True

    def _go(
        self, t: float, target: HealthState, reason: str, findings: Iterable[Finding],
        cause: str = "fault",
    ) -> Transition:
        tr = Transition(t, self.state, target, reason, tuple(findings), cause)
        self.state, self.since = target, t
        if target in (HealthState.NOMINAL, HealthState.DEGRADED):
            self.takeover = None
        return tr
