"""Criteria verdicts on hand-made runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pydantic
import pytest

from sim.criteria import Evaluation, evaluate_criteria, parse_criteria
from sim.metrics import ToleranceConfig, compute_metrics
from sim.results import (
    FaultWindow,
    FindingRecord,
    SeriesBuilder,
    TakeoverEvent,
    Verdict,
    passed_from,
)

TOL = ToleranceConfig(position_m=2.0, entry_grace_s=0.0)
N = 100  # 10 s at 10 Hz
CORR = 1 | (1 << 1) | (1 << 2)  # corroborated, channels camera + radar
UNCORR_RADAR = 1 << 2  # uncorroborated, radar only
SHADOW = 1 << 3


def run(
    states: list[str],
    *,
    obj_x: float = 20.0,
    flags: int = CORR,
    missing_from: int | None = None,
    faults: list[FaultWindow] | None = None,
    findings: list[FindingRecord] | None = None,
    events: list[TakeoverEvent] | None = None,
) -> Evaluation:
    # image-frame channels: no ground tracks, so only the output decides what is vouchable
    b = SeriesBuilder(
        ["car"],
        ["camera", "radar", "shadow"],
        roles={"shadow": "shadow"},
        spaces={"camera": "box", "radar": "box", "shadow": "box"},
    )
    for i in range(N):
        present = missing_from is None or i < missing_from
        objs = ([1], [[obj_x, 0.0]], [flags]) if present else ([], np.zeros((0, 2)), [])
        b.add_step(i * 0.1, states[i], [[20.0, 0.0]], objs)
    s = b.build()
    f, fi, ev = faults or [], findings or [], events or []
    m = compute_metrics(s, f, fi, ev, TOL)
    return Evaluation(s, m, f, fi, ev, TOL)


def verdicts(crit: list[dict], ev: Evaluation) -> list[Verdict]:
    return [r.verdict for r in evaluate_criteria(parse_criteria(crit), ev)]


NOMINAL = ["NOMINAL"] * N


def test_max_silent_failure_success_acceptable_failure() -> None:
    ev = run(NOMINAL, missing_from=90)  # 1.0 s silent
    assert verdicts([{"kind": "max_silent_failure_s"}], ev) == [Verdict.FAILURE]
    assert verdicts([{"kind": "max_silent_failure_s", "max_s": 1.0}], ev) == [Verdict.SUCCESS]
    assert verdicts([{"kind": "max_silent_failure_s", "max_s": 0.5, "acceptable_s": 1.5}], ev) == [
        Verdict.ACCEPTABLE
    ]
    r = evaluate_criteria(parse_criteria([{"kind": "max_silent_failure_s"}]), ev)[0]
    assert (r.expected, r.actual, r.units) == ("<= 0", "1", "s")
    assert "9" in r.message  # first silent instant


FAULT = FaultWindow(0, "radar-drop", "dropout", "radar", onset=2.0, end=5.0)
FINDINGS = [
    FindingRecord(
        2.2, "raised", "crosscheck.disagreement", "crosscheck", None, "channel", 1, 1, "m"
    ),
    FindingRecord(2.6, "raised", "liveness.stale", "liveness", "radar", "channel", 1.0, 0.5, "m"),
]


@pytest.mark.parametrize(
    ("crit", "expected"),
    [
        ({"within_s": 1.0}, Verdict.SUCCESS),
        ({"within_s": 0.5}, Verdict.FAILURE),
        ({"within_s": 0.5, "acceptable_s": 0.7}, Verdict.ACCEPTABLE),
        ({"within_s": 1.0, "finding": "liveness"}, Verdict.SUCCESS),
        ({"within_s": 1.0, "finding": "live"}, Verdict.FAILURE),  # dotted prefix only
        ({"within_s": 1.0, "monitor": "integrity"}, Verdict.FAILURE),
        ({"within_s": 0.3, "channel": "*"}, Verdict.SUCCESS),  # the channel-less finding at 2.2
        ({"within_s": 1.0, "channel": "camera"}, Verdict.FAILURE),
        ({"within_s": 1.0, "fault": "radar-drop"}, Verdict.SUCCESS),
        ({"within_s": 1.0, "fault": 3}, Verdict.FAILURE),
    ],
)
def test_fault_detected(crit: dict, expected: Verdict) -> None:
    ev = run(NOMINAL, faults=[FAULT], findings=FINDINGS)
    assert verdicts([{"kind": "fault_detected", **crit}], ev) == [expected]


def test_fault_detected_by_state_only_when_allowed() -> None:
    states = ["NOMINAL"] * 21 + ["DEGRADED"] * 79
    ev = run(states, faults=[FAULT])
    assert verdicts([{"kind": "fault_detected", "within_s": 0.5}], ev) == [Verdict.FAILURE]
    assert verdicts([{"kind": "fault_detected", "within_s": 0.5, "by_state": True}], ev) == [
        Verdict.SUCCESS
    ]


def test_state_criteria() -> None:
    states = ["NOMINAL"] * 30 + ["DEGRADED"] * 20 + ["TAKEOVER_REQUESTED"] * 50
    ev = run(states)
    crit = [
        {"kind": "state_at", "t": 3.5, "state": "degraded"},
        {"kind": "state_at", "t": 3.5, "state": ["NOMINAL", "TAKEOVER_REQUESTED"]},
        {"kind": "state_by", "t": 5.0, "state": "TAKEOVER_REQUESTED"},
        {"kind": "state_by", "t": 4.9, "state": "TAKEOVER_REQUESTED"},
        {"kind": "state_never", "state": "MINIMAL_RISK"},
        {"kind": "state_never", "state": "DEGRADED", "to_t": 2.9},
        {"kind": "state_never", "state": "DEGRADED"},
    ]
    assert verdicts(crit, ev) == [
        Verdict.SUCCESS,
        Verdict.FAILURE,
        Verdict.SUCCESS,
        Verdict.FAILURE,
        Verdict.SUCCESS,
        Verdict.SUCCESS,
        Verdict.FAILURE,
    ]


def test_takeover_lead_human_and_mrm() -> None:
    states = ["NOMINAL"] * 30 + ["TAKEOVER_REQUESTED"] * 30 + ["MANUAL"] * 40
    fault = FaultWindow(0, "drift", "bias_ramp", "camera", onset=2.0, end=None)
    events = [
        TakeoverEvent(3.0, "issued", "information", deadline=13.0),
        TakeoverEvent(6.0, "acknowledged"),
    ]
    ev = run(states, faults=[fault], events=events, missing_from=55)  # unvouchable at 5.5
    crit = [
        {"kind": "takeover_lead", "min_s": 2.0},
        {"kind": "takeover_lead", "min_s": 3.0},
        {"kind": "takeover_lead", "min_s": 3.0, "acceptable_s": 2.5},
        {"kind": "human_took_over"},
        {"kind": "human_took_over", "expected": False},
        {"kind": "mrm_entered", "expected": False},
        {"kind": "mrm_entered"},
    ]
    assert verdicts(crit, ev) == [
        Verdict.SUCCESS,
        Verdict.FAILURE,
        Verdict.ACCEPTABLE,
        Verdict.SUCCESS,
        Verdict.FAILURE,
        Verdict.SUCCESS,
        Verdict.FAILURE,
    ]


def test_takeover_lead_fails_without_request_and_passes_when_never_unvouchable() -> None:
    fault = FaultWindow(0, "f", "noise", "camera", onset=2.0, end=None)
    ev = run(NOMINAL, faults=[fault])
    assert verdicts([{"kind": "takeover_lead", "min_s": 1.0}], ev) == [Verdict.FAILURE]
    states = ["NOMINAL"] * 30 + ["TAKEOVER_REQUESTED"] * 70
    ev = run(states, faults=[fault])
    assert verdicts([{"kind": "takeover_lead", "min_s": 1.0}], ev) == [Verdict.SUCCESS]


def test_human_after_deadline_is_not_a_timely_takeover() -> None:
    states = ["NOMINAL"] * 10 + ["TAKEOVER_REQUESTED"] * 60 + ["MANUAL"] * 30
    fault = FaultWindow(0, "f", "noise", "camera", onset=0.5, end=None)
    events = [TakeoverEvent(1.0, "issued", deadline=5.0), TakeoverEvent(7.0, "acknowledged")]
    ev = run(states, faults=[fault], events=events)
    assert verdicts(
        [{"kind": "human_took_over"}, {"kind": "human_took_over", "before_deadline": False}], ev
    ) == [Verdict.FAILURE, Verdict.SUCCESS]


def test_mrm_by_time() -> None:
    states = ["NOMINAL"] * 40 + ["MINIMAL_RISK"] * 60
    ev = run(states)
    assert verdicts(
        [{"kind": "mrm_entered", "by": 4.0}, {"kind": "mrm_entered", "by": 3.9}], ev
    ) == [
        Verdict.SUCCESS,
        Verdict.FAILURE,
    ]


def test_nominal_and_false_alarms() -> None:
    states = ["NOMINAL"] * 50 + ["DEGRADED"] * 5 + ["NOMINAL"] * 45
    ev = run(states)
    assert verdicts([{"kind": "nominal"}, {"kind": "nominal", "max_degraded_s": 0.5}], ev) == [
        Verdict.FAILURE,
        Verdict.SUCCESS,
    ]
    # one false alarm in 10 s = 360 per hour
    assert verdicts(
        [
            {"kind": "max_false_alarms_per_hour", "max": 0},
            {"kind": "max_false_alarms_per_hour", "max": 360},
            {"kind": "max_false_alarms_per_hour", "max": 100, "acceptable": 400},
        ],
        ev,
    ) == [Verdict.FAILURE, Verdict.SUCCESS, Verdict.ACCEPTABLE]


def test_rmse_and_id_switches() -> None:
    ev = run(NOMINAL, obj_x=20.5)
    assert verdicts(
        [
            {"kind": "rmse_below", "max_m": 0.6},
            {"kind": "rmse_below", "max_m": 0.4},
            {"kind": "rmse_below", "channel": "lidar", "max_m": 1.0},
            {"kind": "id_switches_below", "max": 0},
        ],
        ev,
    ) == [Verdict.SUCCESS, Verdict.FAILURE, Verdict.FAILURE, Verdict.SUCCESS]


def test_object_output_presence_and_uncorroborated_flag() -> None:
    ev = run(NOMINAL, flags=UNCORR_RADAR, missing_from=95)
    assert verdicts(
        [
            {"kind": "object_output", "actor": "car"},
            {"kind": "object_output", "actor": "car", "to_t": 9.0},
            {"kind": "object_output", "actor": "car", "min_fraction": 0.9},
            {"kind": "object_output", "actor": "car", "to_t": 9.0, "uncorroborated": True},
            {"kind": "object_output", "actor": "car", "to_t": 9.0, "uncorroborated": False},
            {"kind": "object_output", "actor": "bus"},
        ],
        ev,
    ) == [
        Verdict.FAILURE,
        Verdict.SUCCESS,
        Verdict.SUCCESS,
        Verdict.SUCCESS,
        Verdict.FAILURE,
        Verdict.FAILURE,
    ]


def test_shadow_never_output() -> None:
    assert verdicts([{"kind": "shadow_never_output"}], run(NOMINAL)) == [Verdict.SUCCESS]
    ev = run(NOMINAL, flags=CORR | SHADOW)
    assert verdicts(
        [{"kind": "shadow_never_output"}, {"kind": "shadow_never_output", "channel": "radar"}], ev
    ) == [
        Verdict.FAILURE,
        Verdict.FAILURE,
    ]


def test_optional_failure_does_not_fail_the_run_and_acceptable_passes() -> None:
    ev = run(NOMINAL, missing_from=90)
    res = evaluate_criteria(
        parse_criteria(
            [
                {"kind": "max_silent_failure_s", "optional": True, "name": "no silent failure"},
                {"kind": "max_silent_failure_s", "max_s": 0.1, "acceptable_s": 5.0},
            ]
        ),
        ev,
    )
    assert [r.verdict for r in res] == [Verdict.FAILURE, Verdict.ACCEPTABLE]
    assert res[0].name == "no silent failure" and res[0].optional
    assert passed_from(res)
    strict = dataclasses.replace(res[0], optional=False)
    assert not passed_from([strict, res[1]])


def test_criterion_schema_rejects_unknown_kind_and_keys() -> None:
    with pytest.raises(pydantic.ValidationError, match="kind"):
        parse_criteria([{"kind": "max_silence"}])
    with pytest.raises(pydantic.ValidationError, match="within"):
        parse_criteria([{"kind": "fault_detected", "whithin_s": 1.0}])
    with pytest.raises(pydantic.ValidationError):
        parse_criteria([{"kind": "state_at", "t": 1.0, "state": "SLEEPING"}])
