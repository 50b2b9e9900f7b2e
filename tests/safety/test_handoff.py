"""Takeover request (stages, reason, affected objects) and MRM tier choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from safety.crosscheck import VouchedObject
from safety.fallback import FallbackConfig, FallbackTier, plan_mrm, required_deceleration
from safety.findings import Finding, Impact
from safety.handoff import (
    TakeoverConfig,
    TakeoverStage,
    make_takeover_request,
    takeover_reason,
)


def fd(
    kind: str,
    channel: str | None,
    msg: str,
    impact: Impact = Impact.CHANNEL,
    track_ids: tuple[int, ...] = (),
) -> Finding:
    return Finding(kind, "m", channel, impact, 1.0, 0.5, 0.0, msg, 0.0, track_ids)


def obj(i: int, x: float, y: float = 0.0, channels: tuple[str, ...] = ("radar",)) -> VouchedObject:
    return VouchedObject(
        object_id=i,
        position=np.array([x, y]),
        cov=np.eye(2),
        channels=channels,
        track_ids={c: 100 + i for c in channels},
        corroborated=len(channels) > 1,
    )


# --------------------------------------------------------------------------- takeover
def test_default_budget_is_ten_seconds_ALKS() -> None:
    assert TakeoverConfig().budget_s == 10.0


def test_stage_timing() -> None:
    cfg = TakeoverConfig(budget_s=10.0, warning_after_s=3.0, critical_last_s=4.0)
    req = make_takeover_request(5.0, [fd("a", "camera", "Camera image frozen")], cfg)
    assert req.issued_at == 5.0 and req.deadline == 15.0
    expect = {
        5.0: "information",
        7.99: "information",
        8.0: "warning",
        10.99: "warning",
        11.0: "critical",
        14.99: "critical",
        15.0: "expired",
        99.0: "expired",
    }
    for t, stage in expect.items():
        assert req.stage(t) == TakeoverStage(stage), t
    assert req.remaining(5.0) == 10.0 and req.remaining(12.5) == 2.5 and req.remaining(20.0) == 0
    assert req.stage(math.nan) is TakeoverStage.EXPIRED


@given(
    budget=st.floats(1.0, 60.0),
    warn_frac=st.floats(0, 1),
    crit_frac=st.floats(0.01, 1),
    t=st.floats(-5.0, 80.0),
)
def test_stages_are_ordered_in_time(
    budget: float, warn_frac: float, crit_frac: float, t: float
) -> None:
    crit = crit_frac * budget
    cfg = TakeoverConfig(
        budget_s=budget, warning_after_s=warn_frac * (budget - crit), critical_last_s=crit
    )
    req = make_takeover_request(0.0, [], cfg)
    order = list(TakeoverStage)
    s1, s2 = req.stage(t), req.stage(t + 0.5)
    assert order.index(s1) <= order.index(s2)
    if t >= req.deadline - crit and t < req.deadline:
        assert s1 is TakeoverStage.CRITICAL
    assert 0.0 <= req.remaining(t) <= budget


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"budget_s": 3.0, "critical_last_s": 4.0}, "critical stage"),
        ({"budget_s": 6.0, "warning_after_s": 3.0, "critical_last_s": 4.0}, "warning stages"),
        ({"budget_s": 0.0}, "greater than 0"),
        ({"budget_s": -1.0}, "greater than 0"),
    ],
)
def test_takeover_budget_shorter_than_stages_is_rejected(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        TakeoverConfig(**kwargs)


def test_reason_is_one_plain_sentence_from_root_causes() -> None:
    found = [
        fd("liveness.stale", "radar", "Radar has sent nothing for 1.5 s.", Impact.CHANNEL),
        fd("integrity.frozen", "camera", "Camera image frozen", Impact.SYSTEM),
        fd("confidence.low", "camera", "Low confidence", Impact.INFO),
    ]
    reason = takeover_reason(found)
    # most severe first, INFO left out, driver wording (numbers stay in the evidence)
    assert (
        reason
        == "The camera image is frozen and the radar has stopped delivering — please take over."
    )
    assert reason.count(".") == 1  # one sentence
    three = [*found[:2], fd("calibration.drift", None, "Bias 0.8 m", Impact.SYSTEM)]
    assert takeover_reason(three) == (
        "The sensors have drifted out of calibration, the camera image is frozen and the radar "
        "has stopped delivering — please take over."
    )
    dup = [
        fd("liveness.stale", "radar", "a", Impact.CHANNEL),
        fd("liveness.rate", "radar", "b", Impact.CHANNEL),
    ]
    assert takeover_reason(dup) == "The radar has stopped delivering — please take over."
    assert takeover_reason([fd("x", None, "NaN in radar detections")]) == (
        "NaN in radar detections — please take over."
    )
    assert takeover_reason([]) == "Perception can no longer be vouched for — please take over."


def test_affected_objects_follow_faulted_channels_and_tracks() -> None:
    objects = [
        obj(1, 10.0, channels=("camera", "radar")),
        obj(2, 20.0, channels=("radar",)),
        obj(3, 30.0, channels=("camera",)),
    ]
    req = make_takeover_request(
        0.0, [fd("a", "camera", "Camera frozen")], TakeoverConfig(), objects=objects
    )
    assert req.affected_objects == (1, 3)
    req = make_takeover_request(
        0.0, [fd("a", "radar", "ghost", track_ids=(102,))], TakeoverConfig(), objects=objects
    )
    assert req.affected_objects == (2,)
    req = make_takeover_request(0.0, [fd("a", None, "system")], TakeoverConfig(), objects=objects)
    assert req.affected_objects == (1, 2, 3)
    d = req.to_dict()
    assert d["deadline"] == 10.0 and d["evidence"][0]["kind"] == "a"


# --------------------------------------------------------------------------- fallback
CFG = FallbackConfig(
    tiers=[
        FallbackTier(name="comfortable_stop", deceleration=2.0),
        FallbackTier(name="emergency_stop", deceleration=6.0),
    ],
    path_half_width_m=1.5,
    stop_margin_m=2.0,
    actuation_delay_s=0.0,
)


def test_without_ego_speed_comfortable_stop() -> None:
    cmd = plan_mrm(1.0, [obj(1, 5.0)], None, CFG, "No usable perception.")
    assert (cmd.tier, cmd.deceleration, cmd.outcome) == ("comfortable_stop", 2.0, "commanded")
    assert cmd.reason == "No usable perception."


def test_no_object_in_path_comfortable_stop() -> None:
    cmd = plan_mrm(0.0, [obj(1, 10.0, y=5.0), obj(2, -4.0)], 20.0, CFG, "r")
    assert cmd.tier == "comfortable_stop" and cmd.obstacle_distance is None


def test_picks_gentlest_sufficient_tier() -> None:
    # 10 m/s, object 27 m ahead, margin 2 → 25 m room → needs 2.0 m/s²: comfortable suffices
    cmd = plan_mrm(0.0, [obj(1, 27.0), obj(2, 60.0)], 10.0, CFG, "r")
    assert cmd.tier == "comfortable_stop" and cmd.outcome == "commanded"
    assert cmd.required_deceleration == pytest.approx(2.0) and cmd.obstacle_distance == 27.0
    # 12 m closer → needs 100/26 ≈ 3.85 m/s²: emergency
    cmd = plan_mrm(0.0, [obj(1, 15.0)], 10.0, CFG, "r")
    assert cmd.tier == "emergency_stop" and cmd.outcome == "commanded"


def test_fails_when_even_strongest_tier_cannot_stop() -> None:
    cmd = plan_mrm(0.0, [obj(1, 8.0)], 20.0, CFG, "Radar lost.")
    assert cmd.tier == "emergency_stop" and cmd.deceleration == 6.0 and cmd.outcome == "failed"
    assert "cannot stop" in cmd.reason and cmd.reason.startswith("Radar lost.")
    cmd = plan_mrm(0.0, [obj(1, 1.0)], 5.0, CFG, "r")  # inside the margin already
    assert cmd.outcome == "failed" and math.isinf(cmd.required_deceleration or 0.0)


def test_fails_when_no_tier_can_be_commanded() -> None:
    cmd = plan_mrm(0.0, [], 10.0, CFG, "r", available=[])
    assert cmd.outcome == "failed" and cmd.tier == "none" and cmd.deceleration == 0.0


def test_never_gentler_than_floor() -> None:
    cmd = plan_mrm(0.0, [], 10.0, CFG, "r", at_least="emergency_stop")
    assert cmd.tier == "emergency_stop"


@given(speed=st.floats(0.0, 50.0), dist=st.floats(0.1, 200.0))
def test_tier_choice_is_minimal_and_sufficient(speed: float, dist: float) -> None:
    cmd = plan_mrm(0.0, [obj(1, dist)], speed, CFG, "r")
    need = required_deceleration(speed, dist, CFG)
    decels = [t.deceleration for t in CFG.tiers]
    if cmd.outcome == "commanded":
        assert cmd.deceleration >= need
        assert all(d < need for d in decels if d < cmd.deceleration)  # gentlest that suffices
    else:
        assert need > max(decels) and cmd.deceleration == max(decels)


def test_tiers_must_go_gentlest_to_strongest() -> None:
    with pytest.raises(ValidationError, match="gentlest to strongest"):
        FallbackConfig(
            tiers=[
                FallbackTier(name="a", deceleration=6.0),
                FallbackTier(name="b", deceleration=2.0),
            ]
        )
    with pytest.raises(ValidationError, match="duplicate tier"):
        FallbackConfig(
            tiers=[
                FallbackTier(name="a", deceleration=1.0),
                FallbackTier(name="a", deceleration=2.0),
            ]
        )
    with pytest.raises(ValidationError):
        FallbackTier(name="a", deceleration=0.0)
