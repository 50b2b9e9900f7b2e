"""Metrics on hand-made series: silent failure, detection time, false alarms, lead, tracking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.metrics import (
    CriticalZone,
    ToleranceConfig,
    compute_metrics,
    evaluate_steps,
    id_switches,
    match_frames,
    mot_scores,
)
from sim.results import (
    FaultWindow,
    FindingRecord,
    PointSets,
    SeriesBuilder,
    TakeoverEvent,
    TimeSeries,
)

DT = 0.1
TOL = ToleranceConfig(
    position_m=2.0, critical_zone=CriticalZone(x=(0.0, 60.0), y=(-5.0, 5.0)), entry_grace_s=0.0
)


def series(
    n: int,
    truth: np.ndarray,
    objects: list[list[tuple[int, float, float, int]]],
    states: list[str],
    *,
    tracks: dict[str, list[list[tuple[int, float, float]]]] | None = None,
) -> TimeSeries:
    """n steps at 10 Hz; truth (n, A, 2); objects[i] = [(id, x, y, flags)]; tracks confirmed."""
    chans = list(tracks or {})
    b = SeriesBuilder([f"a{i}" for i in range(truth.shape[1])], chans)
    for i in range(n):
        ob = objects[i]
        tr = {
            c: (
                [r[0] for r in rows[i]],
                np.array([[r[1], r[2]] for r in rows[i]]).reshape(-1, 2),
                [1] * len(rows[i]),
            )
            for c, rows in (tracks or {}).items()
        }
        b.add_step(
            i * DT,
            states[i],
            truth[i],
            (
                [o[0] for o in ob],
                np.array([[o[1], o[2]] for o in ob]).reshape(-1, 2),
                [o[3] for o in ob],
            ),
            tracks=tr,
        )
    return b.build()


def one_actor(n: int, x: float = 20.0, y: float = 0.0) -> np.ndarray:
    return np.tile(np.array([[[x, y]]]), (n, 1, 1))


def test_silent_failure_counts_only_nominal_time() -> None:
    n = 30
    truth = one_actor(n)
    objects = [[(1, 20.0, 0.0, 1)] if not (10 <= i < 20) else [] for i in range(n)]
    states = ["NOMINAL"] * 15 + ["DEGRADED"] * 15
    m = compute_metrics(series(n, truth, objects, states), [], [], [], TOL)
    assert m.silent_failure_s == pytest.approx(0.5)
    assert m.wrong_output_s == pytest.approx(1.0)
    assert m.first_silent_t == pytest.approx(1.0)
    assert m.per_step.silent.sum() == 5


def test_position_error_beyond_tolerance_is_wrong_within_is_not() -> None:
    n = 10
    truth = one_actor(n)
    objects = [[(1, 21.5, 0.0, 1)]] * 5 + [[(1, 22.5, 0.0, 1)]] * 5
    per = evaluate_steps(series(n, truth, objects, ["NOMINAL"] * n), TOL)
    assert per.wrong.tolist() == [False] * 5 + [True] * 5
    assert per.off.tolist() == [0] * 5 + [1] * 5
    assert per.missing.sum() == 0
    assert per.max_error[0] == pytest.approx(1.5)


def test_actor_outside_critical_zone_may_be_missing() -> None:
    n = 5
    truth = np.concatenate([one_actor(n, 20.0, 0.0), one_actor(n, 20.0, 8.0)], axis=1)
    objects = [[(1, 20.0, 0.0, 1)]] * n
    m = compute_metrics(series(n, truth, objects, ["NOMINAL"] * n), [], [], [], TOL)
    assert m.silent_failure_s == 0.0
    assert m.per_step.in_zone.tolist() == [1] * n


def test_actor_must_be_output_only_after_entry_grace() -> None:
    n = 30
    truth = one_actor(n, 70.0)  # outside the zone (x <= 60) until step 10
    truth[10:, 0, 0] = 55.0
    objects = [[] if i < 14 else [(1, 55.0, 0.0, 1)] for i in range(n)]
    tol = TOL.model_copy(update={"entry_grace_s": 0.3})
    per = evaluate_steps(series(n, truth, objects, ["NOMINAL"] * n), tol)
    assert np.flatnonzero(per.silent).tolist() == [13]  # in zone from 1.0 s, due at 1.3 s
    truth[20:22, 0, 0] = 70.0  # leaves and re-enters: the grace starts again
    objects = [[] if i < 14 or i >= 20 else [(1, 55.0, 0.0, 1)] for i in range(n)]
    per = evaluate_steps(series(n, truth, objects, ["NOMINAL"] * n), tol)
    assert np.flatnonzero(per.silent).tolist() == [13, 25, 26, 27, 28, 29]


def test_one_output_cannot_vouch_for_two_close_actors() -> None:
    # nearest neighbour would give both actors the same object; the assignment must not
    n = 3
    truth = np.concatenate([one_actor(n, 20.0, 0.0), one_actor(n, 20.0, 1.0)], axis=1)
    objects = [[(1, 20.0, 0.5, 1)]] * n
    per = evaluate_steps(series(n, truth, objects, ["NOMINAL"] * n), TOL)
    assert per.missing.tolist() == [1, 1, 1]
    assert per.silent.all()


def test_match_frames_is_one_to_one_and_gated() -> None:
    truth = np.array([[[0.0, 0.0], [1.0, 0.0], [50.0, 0.0]]])
    hyp = PointSets(
        np.array([0, 2]),
        np.array([7, 8]),
        np.array([[0.9, 0.0], [0.2, 0.0]]),
        np.zeros(2, np.int64),
    )
    m = match_frames(truth, hyp, gate=3.0)
    assert sorted(m.row[0, :2].tolist()) == [0, 1]
    assert m.row[0, 0] == 1 and m.row[0, 1] == 0  # minimum total distance
    assert m.row[0, 2] == -1 and math.isnan(m.dist[0, 2])


def test_detection_time_first_finding_on_channel_or_escalation() -> None:
    n = 50
    truth = one_actor(n)
    objects = [[(1, 20.0, 0.0, 1)]] * n
    fault = FaultWindow(0, "radar dropout", "dropout", "radar", onset=2.0, end=None)
    findings = [
        FindingRecord(1.5, "raised", "liveness.stale", "liveness", "radar", "channel", 1, 1, "old"),
        FindingRecord(
            2.1, "raised", "confidence.low", "confidence", "camera", "channel", 1, 1, "x"
        ),
        FindingRecord(2.5, "raised", "liveness.stale", "liveness", "radar", "channel", 1, 1, "y"),
    ]
    states = ["NOMINAL"] * n
    d = compute_metrics(series(n, truth, objects, states), [fault], findings, [], TOL).detections[0]
    assert (
        d.delay_s == pytest.approx(0.5) and d.by == "finding" and d.finding_kind == "liveness.stale"
    )
    states = ["NOMINAL"] * 23 + ["DEGRADED"] * 27
    d = compute_metrics(series(n, truth, objects, states), [fault], findings, [], TOL).detections[0]
    assert d.delay_s == pytest.approx(0.3) and d.by == "state" and d.state == "DEGRADED"
    d = compute_metrics(
        series(n, truth, objects, ["NOMINAL"] * n), [fault], findings[:2], [], TOL
    ).detections[0]
    assert d.detected_at is None and d.delay_s is None


def test_de_escalation_is_not_a_detection() -> None:
    n = 40
    states = ["DEGRADED"] * 25 + ["NOMINAL"] * 15
    fault = FaultWindow(0, "f", "noise", "camera", onset=2.0, end=None)
    s = series(n, one_actor(n), [[(1, 20.0, 0.0, 1)]] * n, states)
    assert compute_metrics(s, [fault], [], [], TOL).detections[0].detected_at is None


def test_false_alarms_exclude_fault_windows_and_grace() -> None:
    n = 600  # 60 s
    states = ["NOMINAL"] * n
    states[10:20] = ["DEGRADED"] * 10  # 1.0-2.0 s: no fault → false alarm
    states[300:320] = ["DEGRADED"] * 20  # during the fault → not false
    states[330:340] = ["DEGRADED"] * 10  # 1 s after the fault ended, within grace → not false
    fault = FaultWindow(0, "f", "bias", "radar", onset=29.0, end=32.0)
    s = series(n, one_actor(n), [[(1, 20.0, 0.0, 1)]] * n, states)
    tol = TOL.model_copy(update={"alarm_grace_s": 5.0})
    m = compute_metrics(s, [fault], [], [], tol)
    assert m.false_alarms == 1 and m.false_degraded_entries == 1
    assert m.false_degraded_s == pytest.approx(1.0)
    assert m.fault_free_s == pytest.approx(60.0 - 8.0)
    assert m.false_alarms_per_hour == pytest.approx(3600.0 / 52.0)
    tol0 = TOL.model_copy(update={"alarm_grace_s": 0.0})
    assert compute_metrics(s, [fault], [], [], tol0).false_alarms == 2


def test_false_takeover_and_mrm_without_any_fault() -> None:
    n = 100
    states = ["NOMINAL"] * 20 + ["TAKEOVER_REQUESTED"] * 30 + ["MINIMAL_RISK"] * 50
    m = compute_metrics(series(n, one_actor(n), [[(1, 20.0, 0.0, 1)]] * n, states), [], [], [], TOL)
    assert (m.false_takeovers, m.false_mrms, m.false_degraded_entries) == (1, 1, 0)
    assert m.false_alarms_per_hour == pytest.approx(2 * 3600.0 / 10.0)
    assert m.takeover_lead_s is None  # no fault: no lead time
    assert m.mrm_entered_at == pytest.approx(5.0)


def test_takeover_lead_and_human_before_deadline() -> None:
    n = 100
    truth = one_actor(n)
    objects = [[(1, 20.0, 0.0, 1)] if i < 50 else [(1, 30.0, 0.0, 1)] for i in range(n)]
    states = ["NOMINAL"] * 30 + ["TAKEOVER_REQUESTED"] * 40 + ["MANUAL"] * 30
    fault = FaultWindow(0, "drift", "bias_ramp", "camera", onset=2.0, end=None)
    events = [
        TakeoverEvent(3.0, "issued", "information", deadline=13.0, reason="camera drift"),
        TakeoverEvent(7.0, "acknowledged"),
    ]
    m = compute_metrics(series(n, truth, objects, states), [fault], [], events, TOL)
    assert m.takeover_requested_at == pytest.approx(3.0)
    assert m.unvouchable_at == pytest.approx(5.0)
    assert m.takeover_lead_s == pytest.approx(2.0)
    assert m.human_took_over and m.took_over_at == pytest.approx(7.0)
    assert m.took_over_before_deadline is True
    assert m.silent_failure_s == 0.0  # wrong only after the request


def test_unvouchable_when_every_channel_is_wrong_even_if_output_is_right() -> None:
    n = 60
    truth = one_actor(n)
    objects = [[(1, 20.0, 0.0, 1)]] * n
    good = [(1, 20.0, 0.0)]
    bad = [(1, 26.0, 0.0)]
    tracks = {
        "camera": [good if i < 30 else bad for i in range(n)],
        "radar": [good if i < 40 else [] for i in range(n)],
    }
    fault = FaultWindow(0, "f", "bias", "camera", onset=1.0, end=None)
    states = ["NOMINAL"] * 20 + ["TAKEOVER_REQUESTED"] * 40
    m = compute_metrics(series(n, truth, objects, states, tracks=tracks), [fault], [], [], TOL)
    assert m.unvouchable_at == pytest.approx(4.0)
    assert m.takeover_lead_s == pytest.approx(2.0)
    assert m.took_over_before_deadline is False and not m.human_took_over


def test_rmse_and_id_switches_per_channel_and_fused() -> None:
    n = 20
    truth = one_actor(n)
    objects = [[(1 if i < 10 else 2, 20.3, 0.0, 1)] for i in range(n)]
    tracks = {"radar": [[(5, 20.0, 0.4)] for _ in range(n)]}
    m = compute_metrics(series(n, truth, objects, ["NOMINAL"] * n, tracks=tracks), [], [], [], TOL)
    assert m.rmse["fused"] == pytest.approx(0.3)
    assert m.rmse["radar"] == pytest.approx(0.4)
    assert m.id_switches == {"radar": 0, "fused": 1}


def test_id_switches_ignores_gaps_and_counts_returns() -> None:
    ids = np.array([[1, 4], [-1, 4], [1, 5], [2, -1], [1, 5]])
    # actor 0: 1, gap, 1, 2 (switch), 1 (switch); actor 1: 4, 4, 5 (switch), gap, 5
    assert id_switches(ids) == 3


def test_mot_scores_perfect_tracking_and_a_miss() -> None:
    n = 10
    tz = one_actor(n)
    perfect = PointSets(
        np.arange(n + 1), np.ones(n, np.int64), tz[:, 0].copy(), np.ones(n, np.int64)
    )
    mota, idf1, source = mot_scores(tz, perfect, 6.0)
    assert mota == pytest.approx(1.0) and idf1 == pytest.approx(1.0)
    assert source == "perception.metrics"
    half = PointSets(
        np.concatenate([np.arange(6), np.full(5, 5)]),
        np.ones(5, np.int64),
        tz[:5, 0].copy(),
        np.ones(5, np.int64),
    )
    mota, idf1, _ = mot_scores(tz, half, 6.0)
    assert mota == pytest.approx(0.5)
    assert idf1 == pytest.approx(2 * 5 / 15)
