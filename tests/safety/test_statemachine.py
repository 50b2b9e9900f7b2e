"""Health state machine (pure logic): latch, fault-tree aggregation, consequence table, timing."""

from __future__ import annotations

import math

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from safety.findings import Finding, Impact
from safety.handoff import LockoutConfig, TakeoverConfig
from safety.statemachine import (
    CONSEQUENCES,
    Consequence,
    FaultLatch,
    HealthState,
    HealthStateMachine,
    StateTimings,
    assess,
)

ROLES = {"camera": "primary", "radar": "redundant", "shadow": "shadow"}
T_REC = 2.0


def f(kind: str, channel: str | None, impact: Impact, t: float = 0.0, msg: str = "") -> Finding:
    return Finding(kind=kind, monitor="test", channel=channel, impact=impact, value=1.0,
                   threshold=0.5, window=0.0, message=msg or f"{kind} on {channel}", t=t)


class Core:
    """Latch + assess + state machine, chained as the supervisor chains them."""

    def __init__(self, budget: float = 10.0, lockout: int = 3, window: float = 600.0) -> None:
        self.latch = FaultLatch(T_REC)
        self.sm = HealthStateMachine(
            StateTimings(recover_after_s=T_REC),
            TakeoverConfig(budget_s=budget, warning_after_s=min(3.0, budget - 4.0)
                           if budget > 4 else 0.0, critical_last_s=min(4.0, budget),
                           lockout=LockoutConfig(max_requests=lockout, window_s=window)),
        )

    def step(self, t: float, found: list[Finding]):
        upd = self.latch.update(t, found)
        assessed = assess(self.latch.active.values(), ROLES)
        return self.sm.step(t, assessed), upd, assessed


# --------------------------------------------------------------------------- table
def test_consequence_table_is_complete_and_monotone() -> None:
    for impact in Impact:
        assert set(CONSEQUENCES[impact]) == set(HealthState)
    order = [Impact.INFO, Impact.CHANNEL, Impact.SYSTEM, Impact.CRITICAL]
    for state in HealthState:
        row = [CONSEQUENCES[i][state] for i in order]
        assert row == sorted(row), state
    assert all(c is Consequence.NONE for c in CONSEQUENCES[Impact.INFO].values())
    assert all(CONSEQUENCES[i][HealthState.MINIMAL_RISK] is Consequence.NONE for i in Impact)


# --------------------------------------------------------------------------- aggregation
def test_channel_fault_covered_by_other_healthy_channel_is_channel() -> None:
    latch = FaultLatch(T_REC)
    latch.update(0.0, [f("x.y", "camera", Impact.CHANNEL)])
    (a,) = assess(latch.active.values(), ROLES)
    assert a.impact is Impact.CHANNEL and a.covered_by == ("radar",)


def test_channel_fault_on_last_healthy_channel_is_system() -> None:
    latch = FaultLatch(T_REC)
    latch.update(0.0, [f("x.y", "camera", Impact.CHANNEL), f("x.z", "radar", Impact.CHANNEL)])
    out = assess(latch.active.values(), ROLES)
    assert [a.impact for a in out] == [Impact.SYSTEM, Impact.SYSTEM]


def test_shadow_channel_does_not_cover_and_its_findings_are_info() -> None:
    latch = FaultLatch(T_REC)
    latch.update(0.0, [f("a", "camera", Impact.CHANNEL), f("b", "radar", Impact.CHANNEL),
                       f("c", "shadow", Impact.CRITICAL)])
    out = {a.finding.channel: a.impact for a in assess(latch.active.values(), ROLES)}
    assert out == {"camera": Impact.SYSTEM, "radar": Impact.SYSTEM, "shadow": Impact.INFO}


def test_channel_finding_without_channel_cannot_be_covered() -> None:
    latch = FaultLatch(T_REC)
    latch.update(0.0, [f("a", None, Impact.CHANNEL)])
    assert assess(latch.active.values(), ROLES)[0].impact is Impact.SYSTEM


# --------------------------------------------------------------------------- latch
def test_fault_clears_only_after_quiet_interval() -> None:
    latch = FaultLatch(T_REC)
    assert latch.update(0.0, [f("k", "camera", Impact.CHANNEL)]).raised
    assert not latch.update(1.0, [f("k", "camera", Impact.CHANNEL)]).raised  # latched
    assert not latch.update(2.9, []).cleared  # quiet 1.9 s
    assert len(latch.update(3.0, []).cleared) == 1  # quiet 2.0 s
    assert latch.update(3.1, [f("k", "camera", Impact.CHANNEL)]).raised  # raised anew


def test_self_resetting_detector_does_not_clear_fault() -> None:
    """A change detector that fires, resets, fires again keeps the fault active throughout."""
    latch = FaultLatch(T_REC)
    t = 0.0
    for k in range(40):
        t = k * 0.1
        fired = k % 15 == 0  # fires every 1.5 s, silent in between
        upd = latch.update(t, [f("calibration.drift", "radar", Impact.CHANNEL)] if fired else [])
        assert not upd.cleared
        assert ("calibration.drift", "radar") in latch.active
    assert latch.update(t + 2.0, []).cleared


# --------------------------------------------------------------------------- transitions
def test_covered_fault_degrades_then_recovers_after_clean_interval() -> None:
    c = Core()
    tr, _, _ = c.step(0.0, [f("k", "camera", Impact.CHANNEL)])
    assert tr is not None and tr.target is HealthState.DEGRADED and "radar" in tr.reason
    for t in (0.5, 1.0, 1.5, 1.9):
        assert c.step(t, [])[0] is None
        assert c.sm.state is HealthState.DEGRADED
    tr, upd, _ = c.step(2.0, [])
    assert upd.cleared and tr is not None and tr.target is HealthState.NOMINAL
    assert tr.cause == "recovered" and tr.reason


def test_uncovered_fault_requests_takeover_same_step() -> None:
    c = Core()
    found = [f("integrity.frozen_frame", "camera", Impact.CHANNEL, msg="Camera image frozen"),
             f("liveness.stale", "radar", Impact.CHANNEL, msg="Radar has sent nothing for 1.5 s")]
    tr, _, _ = c.step(0.0, found)
    assert tr is not None and tr.target is HealthState.TAKEOVER_REQUESTED
    req = c.sm.takeover
    assert req is not None and req.deadline == pytest.approx(10.0)
    assert req.reason == ("The camera image is frozen and the radar has stopped delivering — "
                          "please take over.")
    assert [e.message for e in req.evidence] == ["Camera image frozen",
                                                 "Radar has sent nothing for 1.5 s"]


def test_takeover_deadline_leads_to_latched_minimal_risk() -> None:
    c = Core()
    c.step(0.0, [f("s", None, Impact.SYSTEM)])
    assert c.step(9.99, [])[0] is None
    tr, _, _ = c.step(10.0, [])
    assert tr is not None and tr.target is HealthState.MINIMAL_RISK and tr.cause == "deadline"
    assert c.step(100.0, [])[0] is None
    assert c.sm.state is HealthState.MINIMAL_RISK
    assert c.sm.acknowledge(100.0) is None  # too late to take over the request
    tr = c.sm.reset(101.0, [])
    assert tr.target is HealthState.NOMINAL


def test_acknowledge_goes_manual_and_engage_needs_no_fault() -> None:
    c = Core()
    c.step(0.0, [f("s", None, Impact.SYSTEM)])
    tr = c.sm.acknowledge(4.0)
    assert tr is not None and tr.target is HealthState.MANUAL and tr.cause == "acknowledged"
    assert c.sm.takeover is not None and c.sm.takeover.acknowledged_at == 4.0
    _, _, assessed = c.step(4.5, [f("s", None, Impact.SYSTEM)])
    assert c.sm.engage(4.6, assessed) is None
    assert "cannot engage" in (c.sm.engage_refusal(assessed) or "")
    _, upd, assessed = c.step(7.0, [])
    assert upd.cleared and not assessed
    tr = c.sm.engage(7.0, assessed)
    assert tr is not None and tr.target is HealthState.NOMINAL


def test_critical_goes_minimal_risk_from_takeover_requested() -> None:
    c = Core()
    c.step(0.0, [f("s", None, Impact.SYSTEM)])
    tr, _, _ = c.step(1.0, [f("internal.monitor_error", None, Impact.CRITICAL)])
    assert tr is not None and tr.target is HealthState.MINIMAL_RISK


def test_repeated_takeover_requests_lock_out() -> None:
    c = Core(lockout=2, window=100.0)
    t = 0.0
    for k in range(2):
        c.step(t, [f("s", None, Impact.SYSTEM)])
        assert c.sm.state is HealthState.TAKEOVER_REQUESTED
        c.sm.acknowledge(t + 1.0)
        t += 5.0
        _, _, assessed = c.step(t, [])
        c.sm.engage(t, assessed)
        if k == 0:
            assert c.sm.state is HealthState.NOMINAL
        t += 1.0
    assert c.sm.locked_out
    assert c.sm.state is HealthState.MANUAL
    assert "locked out" in (c.sm.engage_refusal([]) or "")
    c.sm.reset(t, [])
    assert not c.sm.locked_out and c.sm.state is HealthState.NOMINAL


def test_reset_with_active_fault_leaves_human_in_control() -> None:
    c = Core()
    c.step(0.0, [f("crit", None, Impact.CRITICAL)])
    assert c.sm.state is HealthState.MINIMAL_RISK
    _, _, assessed = c.step(0.5, [f("crit", None, Impact.CRITICAL)])
    tr = c.sm.reset(0.6, assessed)
    assert tr.target is HealthState.MANUAL and tr.reason


def test_manual_is_not_overridden_by_critical_fault() -> None:
    c = Core()
    c.step(0.0, [f("s", None, Impact.SYSTEM)])
    c.sm.acknowledge(1.0)
    assert c.step(2.0, [f("crit", None, Impact.CRITICAL)])[0] is None
    assert c.sm.state is HealthState.MANUAL


# --------------------------------------------------------------------------- stateful property
KINDS = ["liveness.stale", "integrity.nan", "calibration.drift"]
CHANNELS = [None, "camera", "radar", "shadow"]
IMPACTS = [Impact.INFO, Impact.CHANNEL, Impact.SYSTEM, Impact.CRITICAL]
SERIOUS = (Impact.CHANNEL, Impact.SYSTEM, Impact.CRITICAL)
ESCALATION_RANK = {
    HealthState.NOMINAL: 0, HealthState.DEGRADED: 1, HealthState.TAKEOVER_REQUESTED: 2,
    HealthState.MANUAL: 2, HealthState.MINIMAL_RISK: 3,
}

finding_st = st.builds(
    lambda k, c, i: f(k, c, i), st.sampled_from(KINDS), st.sampled_from(CHANNELS),
    st.sampled_from(IMPACTS),
)


class CoreMachine(RuleBasedStateMachine):
    """Random findings, time steps, acknowledgements, engages and resets against invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.core = Core(lockout=3, window=60.0)
        self.t = 0.0
        self.last_serious = -math.inf  # model: last time a serious non-shadow finding was reported
        self.reported: dict[tuple[str, str | None], float] = {}

    @property
    def state(self) -> HealthState:
        return self.core.sm.state

    @rule(dt=st.sampled_from([0.05, 0.3, 1.0, 1.9, 2.0, 3.5, 11.0]),
          found=st.lists(finding_st, max_size=3))
    def step(self, dt: float, found: list[Finding]) -> None:
        self.t += dt
        before = self.state
        found = [Finding(**{**x.__dict__, "t": self.t}) for x in found]
        tr, upd, assessed = self.core.step(self.t, found)
        after = self.state
        for x in found:
            self.reported[x.key] = self.t
            if x.impact in SERIOUS and ROLES.get(x.channel or "") != "shadow":
                self.last_serious = self.t
        # every transition names its reason
        if tr is not None:
            assert tr.reason.strip() and tr.source is before and tr.target is after
        else:
            assert after is before
        # MINIMAL_RISK is latched
        if before is HealthState.MINIMAL_RISK:
            assert after is HealthState.MINIMAL_RISK
        # escalation in the same step as the finding appears
        new_keys = {x.key for x in upd.raised}
        fresh = [a for a in assessed if a.finding.key in new_keys]
        if before in (HealthState.NOMINAL, HealthState.DEGRADED, HealthState.TAKEOVER_REQUESTED):
            if any(a.impact is Impact.CRITICAL for a in fresh):
                assert after is HealthState.MINIMAL_RISK
        if before in (HealthState.NOMINAL, HealthState.DEGRADED):
            if any(a.impact is Impact.SYSTEM for a in fresh):
                assert after in (HealthState.TAKEOVER_REQUESTED, HealthState.MINIMAL_RISK)
            if any(a.impact is Impact.CHANNEL for a in fresh):
                assert after is not HealthState.NOMINAL
        # de-escalation never earlier than the clean interval
        if ESCALATION_RANK[after] < ESCALATION_RANK[before]:
            assert before is HealthState.DEGRADED and after is HealthState.NOMINAL
            assert self.t - self.last_serious >= T_REC - 1e-9
        # a fault clears only after its monitor was quiet for the clean interval
        for a in upd.cleared:
            assert self.t - self.reported[a.key] >= T_REC - 1e-9
        for key, seen in self.reported.items():
            if self.t - seen < T_REC:
                assert key in self.core.latch.active

    @precondition(lambda self: self.state is HealthState.TAKEOVER_REQUESTED)
    @rule(frac=st.floats(0.0, 1.2))
    def acknowledge(self, frac: float) -> None:
        req = self.core.sm.takeover
        assert req is not None
        t = req.issued_at + frac * req.budget_s
        if t < self.t:
            t = self.t
        tr = self.core.sm.acknowledge(t)
        if t < req.deadline:
            assert tr is not None and self.state is HealthState.MANUAL and tr.reason
            self.t = t
        else:
            assert tr is None and self.state is HealthState.TAKEOVER_REQUESTED

    @rule()
    def engage(self) -> None:
        assessed = assess(self.core.latch.active.values(), ROLES)
        before = self.state
        tr = self.core.sm.engage(self.t, assessed)
        if tr is not None:
            assert before is HealthState.MANUAL and not self.core.sm.locked_out
            assert all(a.impact is Impact.INFO for a in assessed)
        else:
            assert self.state is before

    @rule()
    def reset(self) -> None:
        assessed = assess(self.core.latch.active.values(), ROLES)
        tr = self.core.sm.reset(self.t, assessed)
        assert tr.reason and not self.core.sm.locked_out
        serious = any(a.impact is not Impact.INFO for a in assessed)
        assert self.state is (HealthState.MANUAL if serious else HealthState.NOMINAL)

    @invariant()
    def never_nominal_with_active_fault(self) -> None:
        if self.state is HealthState.NOMINAL:
            assessed = assess(self.core.latch.active.values(), ROLES)
            assert all(a.impact is Impact.INFO for a in assessed)

    @invariant()
    def takeover_never_outlives_its_deadline(self) -> None:
        req = self.core.sm.takeover
        if self.state is HealthState.TAKEOVER_REQUESTED:
            assert req is not None and self.t < req.deadline


TestCoreMachine = CoreMachine.TestCase
