"""Monitors: each must fire on its fault and stay quiet on clean data with realistic noise."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import ArrayLike
from pydantic import ValidationError

from perception.detections import Detections
from perception.imagestats import ImageStats
from perception.tracks import Tracks, TrackStatus
from safety.channels import ChannelConfig, FieldOfView
from safety.context import ChannelObservation, StepContext
from safety.crosscheck import CrosscheckResult, Disagreement, ShadowStats
from safety.findings import Finding, Impact
from safety.monitors import (
    MONITOR_TABLE,
    CalibrationConfig,
    CalibrationMonitor,
    ConfidenceConfig,
    ConfidenceMonitor,
    ConsistencyConfig,
    ConsistencyMonitor,
    CrossChannelConfig,
    CrossChannelMonitor,
    DeadlineConfig,
    DeadlineMonitor,
    DistributionConfig,
    DistributionMonitor,
    DriftConfig,
    DriftMonitor,
    IntegrityConfig,
    IntegrityMonitor,
    LivenessConfig,
    LivenessMonitor,
    MonitorsConfig,
    build_monitors,
)
from safety.monitors.calibration import weighted_bias
from safety.monitors.consistency import holm_reject

DT = 0.1
TWO = [ChannelConfig(name="a"), ChannelConfig(name="b", kind="radar")]
THREE = [*TWO, ChannelConfig(name="c", kind="lidar")]


# ----------------------------------------------------------------------------- builders
def dets(t: float, pts: ArrayLike, scores: ArrayLike | None = None, sensor: str = "a"
         ) -> Detections:
    return Detections.from_points(np.asarray(pts, float).reshape(-1, 2), t=t, sigma=0.5,
                                  scores=scores, sensor=sensor)


def tracks(
    t: float, pos: ArrayLike, *, ids: Sequence[int] | None = None,
    status: ArrayLike = TrackStatus.CONFIRMED, nis: ArrayLike | None = None,
    updated: ArrayLike = True, tsu: ArrayLike = 0.0, cov_trace: ArrayLike = 0.5,
    scores: ArrayLike = 0.9, sensor: str = "a",
) -> Tracks:
    p = np.asarray(pos, float).reshape(-1, 2)
    n = len(p)

    def full(v: object, dtype: type = float) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()

    tr = full(cov_trace)
    with np.errstate(invalid="ignore", over="ignore"):
        P = np.broadcast_to(np.eye(4), (n, 4, 4)) * (tr / 2)[:, None, None]
    return Tracks(
        t=t, sensor=sensor, ids=np.asarray(ids if ids is not None else np.arange(n), np.int64),
        status=full(status, np.int64), x=np.hstack([p, np.zeros((n, 2))]),
        P=P, position=p, position_cov=P[:, :2, :2].copy(), age=full(10, np.int64),
        hits=full(10, np.int64), time_since_update=full(tsu), cov_trace=tr,
        updated=full(updated, bool), nis=full(np.nan) if nis is None else np.asarray(nis, float),
        innovation=np.zeros((n, 2)), innovation_cov=np.broadcast_to(np.eye(2), (n, 2, 2)).copy(),
        scores=full(scores), labels=full(0, np.int64), det_index=full(-1, np.int64),
    )


def obs(name: str, *, d: Detections | None = None, tr: Tracks | None = None, received: bool = True,
        error: str | None = None, kind: str | None = None, img: ImageStats | None = None,
        mt: float | None = None, role: str = "primary") -> ChannelObservation:
    if d is not None and mt is None:
        mt = d.t
    return ChannelObservation(name=name, role=role, received=received, detections=d, tracks=tr,
                              input_error=error, error_kind=kind, image_stats=img,
                              measurement_t=mt)


def ctx(t: float, chans: Sequence[ChannelObservation], *, xc: CrosscheckResult | None = None,
        elapsed: float = 0.0, budget: float = 0.05, dt: float = DT) -> StepContext:
    return StepContext(t=t, dt=dt, channels={c.name: c for c in chans}, crosscheck=xc,
                       last_step_elapsed=elapsed, budget=budget)


def kinds(fs: Sequence[Finding]) -> list[str]:
    return [f.kind for f in fs]


def clean_obs(rng: np.random.Generator, t: float, name: str = "a", n: int = 4,
              img: ImageStats | None = None) -> ChannelObservation:
    """A realistic clean step: n objects 10–40 m ahead, 0.5 m noise, high scores."""
    pts = np.column_stack([rng.uniform(10, 40, n), rng.uniform(-5, 5, n)])
    sc = np.clip(rng.beta(18, 3, n), 0, 1)
    d = dets(t, pts + rng.normal(0, 0.5, pts.shape), sc, name)
    tr = tracks(t, pts, nis=rng.chisquare(2, n), scores=sc, sensor=name)
    return obs(name, d=d, tr=tr, img=img)


def assert_message(f: Finding) -> None:
    assert f.message and f.message.endswith(".") and any(ch.isdigit() for ch in f.message)


# ----------------------------------------------------------------------------- integrity
def test_integrity_quiet_on_clean_stream() -> None:
    rng = np.random.default_rng(0)
    mon = IntegrityMonitor(IntegrityConfig(), TWO)
    for i in range(300):
        t = i * DT
        img = ImageStats(f"d{i}", 120 + rng.normal(), 50.0, 300.0, (480, 640, 3))
        assert mon.observe(ctx(t, [clean_obs(rng, t, "a", img=img), clean_obs(rng, t, "b")])) == []


def test_integrity_rejected_input_names_error_kind() -> None:
    mon = IntegrityMonitor(IntegrityConfig(), TWO)
    fs = mon.observe(ctx(1.0, [obs("a", error="detections contain NaN", kind="nan")]))
    assert kinds(fs) == ["integrity.nan"]
    assert fs[0].channel == "a" and fs[0].impact is Impact.CHANNEL
    assert "NaN" in fs[0].message
    fs = mon.observe(ctx(1.1, [obs("a", error="detector raised", kind="Detector Crash")]))
    assert kinds(fs) == ["integrity.detector_crash"]


def test_integrity_timestamps_backwards_stale_future() -> None:
    mon = IntegrityMonitor(IntegrityConfig(), TWO)

    def p(t: float) -> np.ndarray:
        return np.array([[20.0 + t, 0.0]])

    assert mon.observe(ctx(1.0, [obs("a", d=dets(1.0, p(1.0)))])) == []
    fs = mon.observe(ctx(1.1, [obs("a", d=dets(0.9, p(1.1)))]))
    assert kinds(fs) == ["integrity.time_backwards"]
    assert fs[0].value == pytest.approx(0.1)
    fs = mon.observe(ctx(3.0, [obs("a", d=dets(1.5, p(3.0)))]))
    assert kinds(fs) == ["integrity.stale_timestamp"]  # 1.5 s old, timeout 1.0 s
    fs = mon.observe(ctx(3.1, [obs("a", d=dets(3.5, p(3.1)))]))
    assert kinds(fs) == ["integrity.time_future"]
    assert mon.observe(ctx(3.6, [obs("a", d=dets(3.55, p(3.6)))])) == []


def test_integrity_frozen_frame_after_n_identical_digests() -> None:
    mon = IntegrityMonitor(IntegrityConfig(frozen_frames=3), TWO)
    img = ImageStats("same", 100.0, 40.0, 200.0, (4, 4))
    out = [kinds(mon.observe(ctx(i * DT, [obs("a", img=img)]))) for i in range(4)]
    assert out == [[], [], ["integrity.frozen_frame"], ["integrity.frozen_frame"]]
    fresh = ImageStats("new", 100.0, 40.0, 200.0, (4, 4))
    assert mon.observe(ctx(0.5, [obs("a", img=fresh)])) == []


def test_integrity_stuck_detections_but_not_empty_or_noisy() -> None:
    mon = IntegrityMonitor(IntegrityConfig(stuck_steps=3), TWO)
    p = np.array([[20.0, 1.0], [30.0, -2.0]])
    out = [kinds(mon.observe(ctx(i * DT, [obs("a", d=dets(i * DT, p))]))) for i in range(3)]
    assert out == [[], [], ["integrity.stuck_detections"]]
    mon.reset()
    empty = Detections.empty(0.0)
    assert all(mon.observe(ctx(i * DT, [obs("a", d=empty.with_time(i * DT))])) == []
               for i in range(5))
    rng = np.random.default_rng(1)
    for i in range(5, 10):
        noisy = dets(i * DT, p + rng.normal(0, 1e-3, p.shape))
        assert mon.observe(ctx(i * DT, [obs("a", d=noisy)])) == []


def test_integrity_identical_boxes_from_a_changing_image_are_not_stuck() -> None:
    """An integer-pixel detector on a slow or static scene repeats its boxes while the image
    changes (sensor noise): normal. A frozen image is named by the digest check instead."""
    mon = IntegrityMonitor(IntegrityConfig(stuck_steps=3, frozen_frames=3), TWO)
    box = Detections.from_boxes([[300, 200, 340, 230]], t=0.0, sensor="a")
    for i in range(10):
        img = ImageStats(f"d{i}", 120.0, 40.0, 300.0, (480, 640, 3))
        assert mon.observe(ctx(i * DT, [obs("a", d=box.with_time(i * DT), img=img)])) == []
    frozen = ImageStats("same", 120.0, 40.0, 300.0, (480, 640, 3))
    out = [kinds(mon.observe(ctx(1 + i * DT, [obs("a", d=box.with_time(1 + i * DT), img=frozen)])))
           for i in range(3)]
    assert out == [[], [], ["integrity.frozen_frame"]]


def test_integrity_range_far_outside_fov() -> None:
    ch = [ChannelConfig(name="a", fov=FieldOfView(range_max=80.0))]
    mon = IntegrityMonitor(IntegrityConfig(range_margin_m=10.0), ch)
    assert mon.observe(ctx(0.0, [obs("a", d=dets(0.0, [[85.0, 0.0], [5.0, 0.0]]))])) == []
    fs = mon.observe(ctx(0.1, [obs("a", d=dets(0.1, [[500.0, 0.0], [20.0, 0.0]]))]))
    assert kinds(fs) == ["integrity.range"] and fs[0].value == 1
    fs = mon.observe(ctx(0.2, [obs("a", d=dets(0.2, [[-30.0, 0.0]]))]))  # behind a forward sensor
    assert kinds(fs) == ["integrity.range"]
    img = [ChannelConfig(name="cam", frame="image",
                         fov=FieldOfView(image_width=640, image_height=480))]
    mon = IntegrityMonitor(IntegrityConfig(), img)
    box = Detections.from_boxes([[5000, 10, 5050, 60], [100, 100, 150, 200]], t=0.0)
    assert kinds(mon.observe(ctx(0.0, [obs("cam", d=box)]))) == ["integrity.range"]


def test_integrity_range_allows_for_the_declared_noise() -> None:
    """A camera's range σ is ~3.3 m at 80 m: a car at the edge of its field of view is honestly
    measured 10 m beyond it. Far outside means beyond the margin plus 5 σ of its own noise."""
    ch = [ChannelConfig(name="a", fov=FieldOfView(range_max=80.0))]
    mon = IntegrityMonitor(IntegrityConfig(range_margin_m=10.0), ch)
    R = np.diag([3.3**2, 0.1**2])
    edge = Detections(np.array([[91.0, 0.0]]), R[None], np.array([0.7]), np.array([0]), 0.0, "a",
                      "point")
    assert mon.observe(ctx(0.0, [obs("a", d=edge)])) == []
    far = Detections(np.array([[130.0, 0.0]]), R[None], np.array([0.7]), np.array([0]), 0.1, "a",
                     "point")
    assert kinds(mon.observe(ctx(0.1, [obs("a", d=far)]))) == ["integrity.range"]
    sharp = Detections(np.array([[95.0, 0.0]]), np.diag([0.2**2, 0.1**2])[None],
                       np.array([0.7]), np.array([0]), 0.2, "a", "point")
    assert kinds(mon.observe(ctx(0.2, [obs("a", d=sharp)]))) == ["integrity.range"]


# ----------------------------------------------------------------------------- liveness
def test_liveness_quiet_at_nominal_rate_with_small_latency() -> None:
    rng = np.random.default_rng(2)
    mon = LivenessMonitor(LivenessConfig(), TWO)
    for i in range(300):
        t = i * DT
        a = clean_obs(rng, t - 0.03, "a")
        b = clean_obs(rng, t - 0.05, "b")
        assert mon.observe(ctx(t, [a, b])) == [], t


def test_liveness_stale_when_channel_goes_silent() -> None:
    mon = LivenessMonitor(LivenessConfig(), TWO)
    p = np.array([[20.0, 0.0]])
    for i in range(10):
        mon.observe(ctx(i * DT, [obs("a", d=dets(i * DT, p)), obs("b", d=dets(i * DT, p))]))
    found: list[Finding] = []
    for i in range(10, 25):  # b disappears from the context entirely
        found = mon.observe(ctx(i * DT, [obs("a", d=dets(i * DT, p))]))
    stale = [f for f in found if f.kind == "liveness.stale"]
    assert [f.channel for f in stale] == ["b"]
    assert stale[0].value > 1.0 and stale[0].threshold == 1.0
    assert_message(stale[0])


def test_liveness_invalid_input_is_not_life() -> None:
    mon = LivenessMonitor(LivenessConfig(), [ChannelConfig(name="a")])
    out: list[Finding] = []
    for i in range(15):
        out = mon.observe(ctx(i * DT, [obs("a", error="garbage", kind="type")]))
    assert "liveness.stale" in kinds(out)


def test_liveness_rate_floor_and_latency() -> None:
    mon = LivenessMonitor(LivenessConfig(), [ChannelConfig(name="a", expected_rate_hz=10.0)])
    p = np.array([[20.0, 0.0]])
    out: list[Finding] = []
    for i in range(40):  # one frame in three: 3.3 Hz < 5 Hz floor, gaps 0.3 s < timeout
        t = i * DT
        o = obs("a", d=dets(t, p)) if i % 3 == 0 else obs("a", received=False)
        out = mon.observe(ctx(t, [o]))
    assert kinds(out) == ["liveness.rate"]
    assert out[0].value == pytest.approx(3.5, abs=0.6)
    fs = mon.observe(ctx(4.0, [obs("a", d=dets(3.5, p))]))
    assert "liveness.latency" in kinds(fs)


# ----------------------------------------------------------------------------- confidence
def _conf_run(mon: ConfidenceMonitor, scores: Sequence[float]) -> list[bool]:
    return [bool(mon.observe(ctx(i * DT, [obs("a", d=dets(i * DT, [[20.0, 0.0]], [s]))])))
            for i, s in enumerate(scores)]


def test_confidence_raises_after_debounce_and_clears_after_exit() -> None:
    mon = ConfidenceMonitor(ConfidenceConfig(enter=0.3, exit=0.45, enter_steps=5, exit_steps=10),
                            TWO)
    low = _conf_run(mon, [0.9] * 5 + [0.2] * 6)
    assert low == [False] * 9 + [True] * 2  # fires on the 5th low sample
    mid = _conf_run(mon, [0.4] * 20)  # between the thresholds: stays raised
    assert all(mid)
    high = _conf_run(mon, [0.6] * 12)
    assert high == [True] * 9 + [False] * 3  # clears on the 10th sample above exit


def test_confidence_quiet_on_realistic_scores() -> None:
    rng = np.random.default_rng(3)
    mon = ConfidenceMonitor(ConfidenceConfig(), TWO)
    for i in range(1000):
        assert mon.observe(ctx(i * DT, [clean_obs(rng, i * DT)])) == []


@pytest.mark.parametrize("centre", [0.3, 0.45])
def test_confidence_does_not_flap_around_a_threshold(centre: float) -> None:
    rng = np.random.default_rng(4)
    mon = ConfidenceMonitor(ConfidenceConfig(enter=0.3, exit=0.45), TWO)
    sig = np.clip(centre + 0.04 * np.sign(np.sin(np.arange(600) * 1.3)) + rng.normal(0, 0.02, 600),
                  0, 1)
    state = _conf_run(mon, sig.tolist())
    changes = int(np.count_nonzero(np.diff(np.asarray(state, int))))
    assert changes <= 1


def test_confidence_from_tracks_and_no_detections_hold_state() -> None:
    mon = ConfidenceMonitor(ConfidenceConfig(source="tracks", enter_steps=2), TWO)
    tr = tracks(0.0, [[10.0, 0.0], [20.0, 0.0]], scores=0.1)
    assert mon.observe(ctx(0.0, [obs("a", tr=tr)])) == []
    assert kinds(mon.observe(ctx(0.1, [obs("a", tr=tr)]))) == ["confidence.low"]
    assert kinds(mon.observe(ctx(0.2, [obs("a", received=False)]))) == ["confidence.low"]


def test_confidence_inverted_band_is_rejected() -> None:
    with pytest.raises(ValidationError, match="inverted hysteresis"):
        ConfidenceConfig(enter=0.5, exit=0.4)
    with pytest.raises(ValidationError):
        ConfidenceConfig(enter=0.4, exit=0.4)
    with pytest.raises(ValidationError):
        ConfidenceConfig(enter_steps=0)


# ----------------------------------------------------------------------------- consistency
def _nis_stream(rng: np.random.Generator, scale_a: float, steps: int, n: int = 4
                ) -> Iterator[StepContext]:
    for i in range(steps):
        t = i * DT
        pos = np.column_stack([np.linspace(10, 40, n), np.zeros(n)])
        ta = tracks(t, pos, nis=scale_a * rng.chisquare(2, n), sensor="a")
        tb = tracks(t, pos, nis=rng.chisquare(2, n), sensor="b")
        yield ctx(t, [obs("a", tr=ta), obs("b", tr=tb)])


def test_consistency_quiet_on_consistent_filters() -> None:
    rng = np.random.default_rng(5)
    mon = ConsistencyMonitor(ConsistencyConfig(), TWO)
    assert all(mon.observe(c) == [] for c in _nis_stream(rng, 1.0, 3000))
    assert mon.false_alarm_rate() == pytest.approx(1e-3)


@pytest.mark.parametrize(("scale", "kind"), [(3.0, "consistency.nis_high"),
                                             (0.25, "consistency.nis_low")])
def test_consistency_fires_two_sided(scale: float, kind: str) -> None:
    rng = np.random.default_rng(6)
    mon = ConsistencyMonitor(ConsistencyConfig(window_s=2.0), TWO)
    found = [f for c in _nis_stream(rng, scale, 40) for f in mon.observe(c)]
    assert found and {f.kind for f in found} == {kind}
    assert {f.channel for f in found} == {"a"}
    first = found[0]
    assert first.t <= 2.0 and first.window == 2.0
    assert (first.value > first.threshold) if scale > 1 else (first.value < first.threshold)
    assert_message(first)


def test_consistency_ignores_unconfirmed_and_not_updated() -> None:
    mon = ConsistencyMonitor(ConsistencyConfig(min_dof=2), TWO)
    tr = tracks(0.0, [[10.0, 0.0], [20.0, 0.0]], nis=[500.0, 500.0],
                status=np.array([TrackStatus.TENTATIVE, TrackStatus.CONFIRMED]),
                updated=np.array([True, False]))
    assert mon.observe(ctx(0.0, [obs("a", tr=tr)])) == []


def test_holm_is_step_down_and_never_weaker_than_bonferroni() -> None:
    p = np.array([0.001, 0.013, 0.03, 0.5])
    rej_h, _ = holm_reject(p, 0.05, "holm")
    rej_b, _ = holm_reject(p, 0.05, "bonferroni")
    assert rej_h.tolist() == [True, True, False, False]  # 0.013 ≤ 0.05/3, 0.03 > 0.05/2
    assert rej_b.tolist() == [True, False, False, False]
    assert holm_reject(np.zeros(0), 0.05)[0].size == 0


# ----------------------------------------------------------------------------- drift
#: the coasting rule's geometry, with the limit fixed (its learnt value is tested on its own)
COAST = DriftConfig(max_coast_s=0.5)


def test_drift_coasting_inside_fov_names_tracks() -> None:
    mon = DriftMonitor(COAST, TWO)
    tr = tracks(1.0, [[20.0, 0.0], [30.0, 0.0], [200.0, 0.0], [25.0, 1.0]], ids=[4, 5, 6, 7],
                tsu=[0.8, 0.1, 0.9, 0.9], updated=False,
                status=[TrackStatus.COASTING, TrackStatus.CONFIRMED, TrackStatus.COASTING,
                        TrackStatus.TENTATIVE])
    fs = mon.observe(ctx(1.0, [obs("a", tr=tr)]))
    assert kinds(fs) == ["drift.coasting"]
    assert fs[0].track_ids == (4,)  # 6 is outside the FOV, 7 never confirmed
    assert fs[0].value == pytest.approx(0.8) and fs[0].threshold == pytest.approx(0.5)


def test_drift_coasting_duplicate_of_an_updated_track_is_not_lost() -> None:
    mon = DriftMonitor(COAST, TWO)
    # track 1 drifted off and coasts; track 2 took over the same object 1.6 m away
    tr = tracks(2.0, [[23.4, 2.7], [25.0, 3.0], [40.0, -3.0]], ids=[1, 2, 3],
                tsu=[0.8, 0.0, 0.8], updated=[False, True, False], cov_trace=[1.2, 0.3, 1.2],
                status=[TrackStatus.COASTING, TrackStatus.CONFIRMED, TrackStatus.COASTING])
    fs = mon.observe(ctx(2.0, [obs("a", tr=tr)]))
    assert kinds(fs) == ["drift.coasting"] and fs[0].track_ids == (3,)


def test_drift_quiet_on_updated_tracks() -> None:
    rng = np.random.default_rng(7)
    mon = DriftMonitor(DriftConfig(), TWO)
    for i in range(300):
        tr = tracks(i * DT, rng.uniform([5, -10], [60, 10], (8, 2)), ids=range(8),
                    cov_trace=0.4 + 0.05 * rng.random(8), tsu=np.where(rng.random(8) < 0.2, 0.1, 0))
        assert mon.observe(ctx(i * DT, [obs("a", tr=tr)])) == []


def test_drift_covariance_bound_and_growth() -> None:
    bound = 0.5 * ChannelConfig(name="a").tracker.max_cov_trace  # half the deletion bound
    mon = DriftMonitor(DriftConfig(), TWO)
    tr = tracks(0.0, [[20.0, 0.0], [30.0, 0.0]], ids=[1, 2], cov_trace=[1.2 * bound, 1.0])
    fs = mon.observe(ctx(0.0, [obs("a", tr=tr)]))
    assert kinds(fs) == ["drift.covariance"] and fs[0].track_ids == (1,)
    mon.reset()
    out: list[Finding] = []
    for i in range(13):  # track 3 grows 20 % per updated step, track 4 is steady
        tr = tracks(i * DT, [[20.0, 0.0], [25.0, 0.0]], ids=[3, 4], cov_trace=[0.5 * 1.2**i, 0.5])
        out = mon.observe(ctx(i * DT, [obs("a", tr=tr)]))
        if i < 10:
            assert out == []
    assert kinds(out) == ["drift.covariance"] and out[0].track_ids == (3,)


def test_drift_coasting_limit_follows_the_channels_miss_rate_and_the_budget() -> None:
    """A channel that misses 10 % of its looks at a visible object coasts 5 steps in a row
    about once an hour per object (0.1⁵ × 36 000): too often for a 1e-3/h budget. The limit
    is learnt from the channel's own miss rate (a more reliable channel gets a shorter one),
    and tracks that coast together are far less likely by chance: a channel losing all its
    objects at once is named at the floor (half the tracker's deletion age)."""
    def learn(miss: float) -> DriftMonitor:
        rng = np.random.default_rng(5)
        mon = DriftMonitor(DriftConfig(), TWO)
        for i in range(100):  # 2 objects, 200 track-steps: more than miss_reference_steps
            up = rng.random(2) >= miss
            tr = tracks(i * DT, [[20.0, -3.0], [40.0, 3.0]], ids=[1, 2], updated=up,
                        tsu=np.where(up, 0.0, 0.1))
            assert mon.observe(ctx(i * DT, [obs("a", tr=tr)])) == []
        return mon
    q10, q02 = learn(0.10).coast_limit("a", TWO[0]), learn(0.02).coast_limit("a", TWO[0])
    # 10 · (1.5 q)ⁿ ≤ 1e-3 / (36 000 × 10): q = 10 % → n ≈ 12 steps, beyond the tracker's 1 s
    # deletion age (lost objects are then the cross-check's); q = 2 % → n ≈ 7
    assert q10 > 1.0 and 0.5 < q02 < 0.8
    mon = learn(0.10)
    assert mon.coast_limit("a", TWO[0], together=3) == pytest.approx(0.5)
    pos = [[20.0, -3.0], [40.0, 3.0], [30.0, -8.0]]
    one = tracks(20.0, pos, ids=[1, 2, 3], updated=[True, True, False], tsu=[0.0, 0.0, 0.6])
    assert mon.observe(ctx(20.0, [obs("a", tr=one)])) == []  # a chance run of one track
    mon = learn(0.10)
    three = tracks(20.0, pos, ids=[1, 2, 3], updated=False, tsu=0.6)
    fs = mon.observe(ctx(20.0, [obs("a", tr=three)]))  # the channel went blind
    assert kinds(fs) == ["drift.coasting"] and fs[0].track_ids == (1, 2, 3)


def test_drift_coasting_behind_a_nearer_seen_track_is_occlusion() -> None:
    """A cut-in car hides the lead car from the camera: its coasting track is not a lost object
    while the nearer car is seen in front of it; once the occluder has moved aside it is."""
    mon = DriftMonitor(COAST, TWO)
    hidden = tracks(2.0, [[28.0, 0.0], [45.0, 0.3]], ids=[1, 2], updated=[True, False],
                    tsu=[0.0, 0.8], status=[TrackStatus.CONFIRMED, TrackStatus.COASTING])
    assert mon.observe(ctx(2.0, [obs("a", tr=hidden)])) == []
    aside = tracks(2.1, [[28.0, 4.0], [45.0, 0.3]], ids=[1, 2], updated=[True, False],
                   tsu=[0.0, 0.9], status=[TrackStatus.CONFIRMED, TrackStatus.COASTING])
    fs = mon.observe(ctx(2.1, [obs("a", tr=aside)]))
    assert kinds(fs) == ["drift.coasting"] and fs[0].track_ids == (2,)
    # an occluder that is itself unseen hides nothing: both are lost
    both = tracks(2.2, [[28.0, 0.0], [45.0, 0.3]], ids=[1, 2], updated=False, tsu=[0.7, 1.0],
                  status=TrackStatus.COASTING)
    fs = mon.observe(ctx(2.2, [obs("a", tr=both)]))
    assert kinds(fs) == ["drift.coasting"] and fs[0].track_ids == (1, 2)
    # a farther track never hides a nearer one
    behind = tracks(2.3, [[45.0, 0.0], [28.0, 0.3]], ids=[1, 2], updated=[True, False],
                    tsu=[0.0, 0.8], status=[TrackStatus.CONFIRMED, TrackStatus.COASTING])
    assert kinds(mon.observe(ctx(2.3, [obs("a", tr=behind)]))) == ["drift.coasting"]


def _growing(i: int, r_growth: float) -> tuple[Tracks, Detections]:
    """Two updated tracks; track 3's covariance grows 20 % per step, its update's R by
    ``r_growth`` per step; track 4 is steady."""
    tr = tracks(i * DT, [[20.0, 0.0], [25.0, 0.0]], ids=[3, 4], cov_trace=[0.5 * 1.2**i, 0.5])
    tr = dataclasses.replace(tr, det_index=np.array([0, 1], np.int64))
    d = dets(i * DT, [[20.0, 0.0], [25.0, 0.0]])
    R = d.R.copy()
    R[0] *= r_growth**i
    return tr, dataclasses.replace(d, R=R)


def test_drift_covariance_growth_explained_by_measurement_noise_is_not_drift() -> None:
    """A camera's range noise grows with r²: a car pulling away from 9 to 20 m quadruples its
    track covariance, updates and all. Growth the declared R explains is not drift; the same
    growth with a steady R is."""
    mon = DriftMonitor(DriftConfig(), TWO)
    for i in range(13):
        tr, d = _growing(i, 1.2)
        assert mon.observe(ctx(i * DT, [obs("a", tr=tr, d=d)])) == []
    mon.reset()
    out: list[Finding] = []
    for i in range(13):
        tr, d = _growing(i, 1.0)
        out = mon.observe(ctx(i * DT, [obs("a", tr=tr, d=d)]))
    assert kinds(out) == ["drift.covariance"] and out[0].track_ids == (3,)


# ----------------------------------------------------------------------------- cross-channel
def _dis(pair: tuple[str, str], pos: object, stat: float = 60.0,
         ids: tuple[int, int] = (1, 2), kind: str = "disagreement") -> Disagreement:
    return Disagreement(pair, ids, stat, 9.2, np.asarray(pos, float), kind)  # type: ignore[arg-type]


def test_crosscheck_persistent_disagreement_two_channels_is_system() -> None:
    mon = CrossChannelMonitor(CrossChannelConfig(persist_steps=5), TWO)
    out: list[list[str]] = []
    for i in range(6):  # the object moves 1 m per step; ids change half-way
        xc = CrosscheckResult(disagreements=[_dis(("a", "b"), [20.0 + i, 0.0], ids=(i // 3, 7))])
        out.append(kinds(mon.observe(ctx(i * DT, [], xc=xc))))
    assert out == [[]] * 4 + [["crosscheck.disagreement"]] * 2
    f = mon.observe(ctx(0.6, [], xc=CrosscheckResult(disagreements=[_dis(("a", "b"), [26, 0])])))[0]
    assert f.impact is Impact.SYSTEM and f.channel is None and "'a' and 'b'" in f.message


def test_crosscheck_moderate_persistent_disagreement_is_left_to_calibration() -> None:
    """Healthy tracks' errors are autocorrelated: a pair beyond the 99 % bound (d² 12–30) for
    half a second happens in fault-free driving (3 times in an hour). Only a mean d² over the
    persistence window beyond the budget-derived bound (≈ 39: a 6σ offset) is reported."""
    mon = CrossChannelMonitor(CrossChannelConfig(persist_steps=5), TWO)
    assert 30.0 < mon.d2_min < 45.0
    for i in range(20):
        xc = CrosscheckResult(disagreements=[_dis(("a", "b"), [20.0, 0.0], stat=12.0 + i)])
        assert mon.observe(ctx(i * DT, [], xc=xc)) == []
    out: list[list[str]] = []
    for i in range(20, 26):  # then the offset jumps (a bent bracket)
        xc = CrosscheckResult(disagreements=[_dis(("a", "b"), [20.0, 0.0], stat=80.0)])
        out.append(kinds(mon.observe(ctx(i * DT, [], xc=xc))))
    assert out[-1] == ["crosscheck.disagreement"]


def test_crosscheck_scattered_disagreements_stay_quiet() -> None:
    rng = np.random.default_rng(8)
    mon = CrossChannelMonitor(CrossChannelConfig(), TWO)
    for i in range(200):  # isolated chi-square failures at random places, as in clean operation
        ds = [_dis(("a", "b"), rng.uniform([5, -20], [60, 20]))] if rng.random() < 0.3 else []
        assert mon.observe(ctx(i * DT, [], xc=CrosscheckResult(disagreements=ds))) == []


def test_crosscheck_honours_crosscheck_persistence_count() -> None:
    mon = CrossChannelMonitor(CrossChannelConfig(persist_steps=5), TWO)
    d = Disagreement(("a", "b"), (3, -1), 6.0, 3.0, np.array([15.0, 2.0]), "miss", 6)
    fs = mon.observe(ctx(0.0, [], xc=CrosscheckResult(disagreements=[d])))
    # a persistent miss blames the blind channel (the object is output anyway): CHANNEL on b
    assert [(f.kind, f.channel, f.impact) for f in fs] == [("crosscheck.miss", "b", Impact.CHANNEL)]
    assert fs[0].track_ids == (3,) and "'a'" in fs[0].message
    d = Disagreement(("a", "b"), (-1, 8), 6.0, 3.0, np.array([15.0, 2.0]), "miss", 6)
    fs = mon.observe(ctx(0.1, [], xc=CrosscheckResult(disagreements=[d])))
    assert [(f.kind, f.channel) for f in fs] == [("crosscheck.miss", "a")]


def test_crosscheck_outvoted_channel_with_three() -> None:
    mon = CrossChannelMonitor(CrossChannelConfig(outvoted_steps=5, outvoted_window=10), THREE)
    out: list[Finding] = []
    for i in range(8):
        xc = CrosscheckResult(
            disagreements=[_dis(("a", "c"), [20, 0]), _dis(("b", "c"), [20, 0])],
            vote_losers={"a": 0, "b": 0, "c": 1})
        out = mon.observe(ctx(i * DT, [], xc=xc))
        if i < 4:
            assert "crosscheck.outvoted" not in kinds(out)
    assert kinds(out) == ["crosscheck.outvoted"]  # the pair disagreements are attributed to c
    assert out[0].channel == "c" and out[0].impact is Impact.CHANNEL


def test_crosscheck_shadow_is_information_only() -> None:
    chans = [*TWO, ChannelConfig(name="s", role="shadow")]
    mon = CrossChannelMonitor(CrossChannelConfig(persist_steps=2, shadow_steps=3), chans)
    out: list[Finding] = []
    for i in range(4):
        xc = CrosscheckResult(disagreements=[_dis(("a", "s"), [20, 0])],
                              shadow={"s": ShadowStats(matched=2, missed=1)})
        out = mon.observe(ctx(i * DT, [], xc=xc))
    assert sorted(kinds(out)) == ["crosscheck.shadow_disagreement", "crosscheck.shadow_mismatch"]
    assert all(f.impact is Impact.INFO and f.channel == "s" for f in out)
    assert mon.observe(ctx(1.0, [], xc=None)) == []


# ----------------------------------------------------------------------------- calibration
def _cv_error_model(q: float, sigma: float, dt: float = DT) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray, np.ndarray]:
    """Steady-state 1-D constant-velocity Kalman filter: F, Q, gain K and posterior P."""
    F = np.array([[1.0, dt], [0.0, 1.0]])
    Q = q * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
    H = np.array([[1.0, 0.0]])
    P = np.eye(2)
    for _ in range(500):
        Pp = F @ P @ F.T + Q
        K = Pp @ H.T / (H @ Pp @ H.T + sigma**2)
        P = (np.eye(2) - K @ H) @ Pp
    return F, Q, K[:, 0], P


def kf_residuals(rng: np.random.Generator, steps: int, n_obj: int = 3, q: float = 1.0,
                 sigma: float = 0.5, chans: int = 2) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Position errors of independent steady-state CV filters (chans × objects × axes), as the
    per-channel estimate errors e (chans, n_obj, 2) and their position variance: the real
    autocorrelation a tracker's output has."""
    F, Q, K, P = _cv_error_model(q, sigma)
    Lq = np.linalg.cholesky(Q)
    IKH = np.eye(2) - np.outer(K, [1.0, 0.0])
    e = rng.standard_normal((chans, n_obj, 2, 2)) @ np.linalg.cholesky(P).T
    for _ in range(steps):
        w = rng.standard_normal(e.shape) @ Lq.T
        v = rng.normal(0.0, sigma, e.shape[:-1])
        e = (e @ F.T - w) @ IKH.T + v[..., None] * K
        yield e[..., 0], np.full(2, P[0, 0])


def _pair_step(err: np.ndarray, var: np.ndarray, i: int, j: int, bias: np.ndarray | float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    res = err[i] - err[j] + bias
    cov = np.broadcast_to(np.diag(var * 2), (len(res), 2, 2)).copy()
    return res, cov


def test_default_inflation_covers_real_filter_autocorrelation() -> None:
    # block means (1 s) of normalised residual bias of two real filters: variance ≤ inflation
    for q, sigma in ((1.0, 0.5), (0.1, 1.0)):
        rng = np.random.default_rng(10)
        zs = []
        for err, var in kf_residuals(rng, 6000, q=q, sigma=sigma):
            beta, cb = weighted_bias(*_pair_step(err, var, 0, 1))
            zs.append(beta / np.sqrt(np.diag(cb)))
        z = np.asarray(zs).reshape(-1, 10, 2).mean(axis=1) * np.sqrt(10)
        assert 1.0 < z.var() < CalibrationConfig().variance_inflation


def _calib_iter(mon: CalibrationMonitor, rng: np.random.Generator, steps: int,
                bias: np.ndarray | None = None, onset: float = 0.0, ramp: float = 0.0,
                three: bool = False, pairs: Sequence[tuple[int, int]] | None = None,
                active: tuple[str, ...] = (),
                ) -> Iterator[tuple[float, list[Finding]]]:
    """Step the monitor on real-filter residuals (optionally biased from ``onset``), lazily;
    ``active`` is the cross-check's trusted set (empty: not reported)."""
    names = ["a", "b", "c"]
    pairs = pairs or ([(0, 1), (0, 2), (1, 2)] if three else [(0, 1)])
    for i, (err, var) in enumerate(kf_residuals(rng, steps, chans=3 if three else 2)):
        t = i * DT
        shift = np.zeros((3, 2))
        if bias is not None and t >= onset:
            shift[-1 if three else 1] = bias * (1.0 if ramp == 0 else min(1.0, (t - onset) * ramp))
        err = err + shift[: err.shape[0], None, :]
        xc = CrosscheckResult(active=active)
        for a, b in pairs:
            xc.residuals[(names[a], names[b])], xc.residual_covs[(names[a], names[b])] = (
                _pair_step(err, var, a, b))
        yield t, mon.observe(ctx(t, [], xc=xc))


def _calib_run(mon: CalibrationMonitor, rng: np.random.Generator, steps: int,
               **kw: object) -> list[tuple[float, list[Finding]]]:
    return list(_calib_iter(mon, rng, steps, **kw))  # type: ignore[arg-type]


def test_calibration_quiet_on_clean_filters() -> None:
    rng = np.random.default_rng(11)
    mon = CalibrationMonitor(CalibrationConfig(), TWO)
    assert mon.false_alarm_rate() == pytest.approx(1e-3)
    assert all(fs == [] for _, fs in _calib_iter(mon, rng, 6000))


def test_calibration_bias_step_detected_within_design_delay() -> None:
    rng = np.random.default_rng(12)
    mon = CalibrationMonitor(CalibrationConfig(), TWO)
    _, _, _, P = _cv_error_model(1.0, 0.5)
    sd_beta = np.sqrt(2 * P[0, 0] / 3)  # 3 objects
    shift_block = 2.0  # in block standard deviations
    bias = shift_block * sd_beta * np.sqrt(CalibrationConfig().variance_inflation / 10)
    run = _calib_run(mon, rng, 900, bias=np.array([bias, 0.0]), onset=30.0)
    hits = [t for t, fs in run if fs]
    assert hits and hits[0] >= 30.0
    expected = mon.design.detection_delay(shift_block)  # blocks of 1 s
    assert hits[0] - 30.0 <= 2 * expected + 2.0
    f = next(fs for _, fs in run if fs)[0]
    assert f.kind == "calibration.drift" and f.impact is Impact.SYSTEM and f.channel is None
    assert_message(f)


def test_calibration_offset_against_an_excluded_channel_names_it() -> None:
    """Two channels, one already excluded as faulty (a blurred camera whose boxes, and so its
    ranges, shifted): the offset is its known fault, not "one of the two" (no takeover)."""
    rng = np.random.default_rng(12)
    mon = CalibrationMonitor(CalibrationConfig(), TWO)
    run = _calib_run(mon, rng, 600, bias=np.array([1.0, 0.0]), onset=10.0, active=("a",))
    f = next(fs for _, fs in run if fs)[0]
    assert f.kind == "calibration.drift" and f.impact is Impact.CHANNEL and f.channel == "b"
    rng = np.random.default_rng(12)
    both = _calib_run(CalibrationMonitor(CalibrationConfig(), TWO), rng, 600,
                      bias=np.array([1.0, 0.0]), onset=10.0, active=("a", "b"))
    f = next(fs for _, fs in both if fs)[0]
    assert f.impact is Impact.SYSTEM and f.channel is None


def test_calibration_ramp_detected_before_it_grows_large() -> None:
    rng = np.random.default_rng(13)
    mon = CalibrationMonitor(CalibrationConfig(), TWO)
    run = _calib_run(mon, rng, 1200, bias=np.array([0.0, 1.0]), onset=20.0, ramp=0.02)  # 2 cm/s
    hits = [t for t, fs in run if fs]
    assert hits and 20.0 <= hits[0] <= 20.0 + 30.0  # offset still ≤ 0.6 m when flagged


def test_calibration_three_channels_isolate_the_drifting_one() -> None:
    rng = np.random.default_rng(14)
    mon = CalibrationMonitor(CalibrationConfig(), THREE)
    run = _calib_run(mon, rng, 600, bias=np.array([1.0, 0.0]), onset=5.0, three=True)
    last = run[-1][1]
    assert [(f.kind, f.channel, f.impact) for f in last] == [
        ("calibration.drift", "c", Impact.CHANNEL)]
    assert "'c'" in last[0].message


def test_calibration_weighted_bias_handles_garbage() -> None:
    beta, _ = weighted_bias(np.array([[1.0, 2.0], [np.nan, 0.0]]),
                              np.array([np.eye(2), np.eye(2)]))
    assert beta == pytest.approx([1.0, 2.0])
    assert np.isnan(weighted_bias(np.zeros((2, 2)), np.zeros((3, 2, 2)))[0]).all()
    assert np.isnan(weighted_bias(np.zeros((1, 2)), np.zeros((1, 2, 2)))[0]).all()


# ----------------------------------------------------------------------------- distribution
def _dist_stream(rng: np.random.Generator, steps: int, *, onset: float = 1e9,
                 after: dict[str, float] | None = None, world_rate_after: float | None = None,
                 channels: Sequence[str] = ("a", "b")) -> Iterator[StepContext]:
    """Channels a and b watch one world of Poisson(4) objects, each detecting 95 % of them with
    Beta scores (mean 0.85); a's images drift slowly. From ``onset`` channel a changes as in
    ``after`` (score mean, detection probability ``p_detect``, brightness) and/or the world's
    object rate changes for every channel."""
    bright_noise = 0.0
    for i in range(steps):
        t = i * DT
        late = t >= onset
        world = world_rate_after if late and world_rate_after is not None else 4.0
        n_world = rng.poisson(world)
        pts = rng.uniform([5, -5], [50, 5], (n_world, 2))
        bright_noise = 0.9 * bright_noise + rng.normal(0, 1.0)  # slow, correlated scene change
        out = []
        for name in channels:
            ch_after = after if late and after and name == "a" else {}
            sm = ch_after.get("score", 0.85)
            seen = rng.random(n_world) < ch_after.get("p_detect", 0.95)
            sc = rng.beta(20.0 * sm / (1 - sm), 20.0, int(seen.sum()))
            img = ImageStats(f"{name}{i}", ch_after.get("brightness", 120.0) + bright_noise,
                             50 + rng.normal(0, 1), 300 + rng.normal(0, 15), (480, 640))
            tr = tracks(t, pts[seen], scores=sc, sensor=name)  # each detection confirms a track
            out.append(obs(name, d=dets(t, pts[seen], sc, name), tr=tr, img=img))
        yield ctx(t, out)


def test_distribution_quiet_on_stationary_input() -> None:
    rng = np.random.default_rng(15)
    mon = DistributionMonitor(DistributionConfig(), TWO)
    assert all(mon.observe(c) == [] for c in _dist_stream(rng, 6000))
    assert mon.false_alarm_rate() == pytest.approx(1e-3)


def _first_alarm(mon: DistributionMonitor, stream: Iterator[StepContext]
                 ) -> tuple[float, list[Finding]] | None:
    for c in stream:
        fs = mon.observe(c)
        if fs:
            return c.t, fs
    return None


@pytest.mark.parametrize(("change", "kind"), [
    ({"score": 0.6}, "distribution.score_shift"),
    ({"p_detect": 0.3}, "distribution.rate_shift"),
    ({"brightness": 60.0}, "distribution.brightness"),
])
def test_distribution_detects_shift(change: dict[str, float], kind: str) -> None:
    rng = np.random.default_rng(16)
    mon = DistributionMonitor(DistributionConfig(), THREE)
    first = _first_alarm(mon, _dist_stream(rng, 400, onset=25.0, after=change,
                                           channels=("a", "b", "c")))
    assert first is not None
    t, fs = first
    assert 25.0 <= t <= 25.0 + 6.0
    assert kind in kinds(fs)
    assert all(f.channel == "a" and f.impact is Impact.CHANNEL for f in fs)
    assert_message(fs[0])


def _count_stream(rng: np.random.Generator, steps: int, *, onset: float,
                  world: tuple[int, int] = (4, 4), p_a: tuple[float, float] = (0.95, 0.95),
                  p_b: float = 0.95) -> Iterator[StepContext]:
    """Two channels watching ``world[0]`` (from ``onset``: ``world[1]``) objects 30 m ahead at
    distinct bearings (nobody hides anybody); each channel confirms each object with its
    probability (a's changes at ``onset``)."""
    for i in range(steps):
        t = i * DT
        late = t >= onset
        n = world[1] if late else world[0]
        az = np.radians(np.linspace(-25, 25, n))
        pts = 30.0 * np.column_stack([np.cos(az), np.sin(az)])
        out = []
        for name, p in (("a", p_a[1] if late else p_a[0]), ("b", p_b)):
            seen = rng.random(n) < p
            sc = np.full(int(seen.sum()), 0.85)
            out.append(obs(name, d=dets(t, pts[seen], sc, name),
                           tr=tracks(t, pts[seen], scores=sc, sensor=name)))
        yield ctx(t, out)


def _rate_findings(stream: Iterator[StepContext]) -> list[Finding]:
    mon = DistributionMonitor(DistributionConfig(), TWO)
    return [f for c in stream for f in mon.observe(c) if f.kind == "distribution.rate_shift"]


def test_distribution_two_channels_rate_names_the_channel_whose_own_count_fell() -> None:
    """With two channels both shares move; the one whose own count fell while the other's held
    is named (CHANNEL) within a second or two, the healthy one never is."""
    rng = np.random.default_rng(19)
    found = _rate_findings(_count_stream(rng, 400, onset=25.0, p_a=(0.95, 0.25)))
    named = [f for f in found if f.impact is Impact.CHANNEL]
    assert named and {f.channel for f in named} == {"a"} and named[0].t <= 27.0
    # the random-scene stream too (objects come and go, hide each other)
    rng = np.random.default_rng(19)
    mon = DistributionMonitor(DistributionConfig(), TWO)
    fs = [f for c in _dist_stream(rng, 400, onset=25.0, after={"p_detect": 0.3})
          for f in mon.observe(c) if f.impact is Impact.CHANNEL]
    assert fs and {f.channel for f in fs} == {"a"} and fs[0].t <= 31.0


def test_distribution_two_channels_rate_ambiguous_is_information() -> None:
    """Channel a starts missing objects just as the scene fills up: a's own count halves, b's
    doubles. Nothing points at one channel, so the shift is information, never a channel
    fault; a channel whose own count alone moved (b seeing ghosts) is the one named."""
    rng = np.random.default_rng(20)
    found = _rate_findings(_count_stream(rng, 400, onset=25.0, world=(4, 8), p_a=(0.95, 0.24)))
    assert found and all(f.impact is Impact.INFO for f in found)
    rng = np.random.default_rng(21)
    found = _rate_findings(_count_stream(rng, 400, onset=25.0, world=(4, 8), p_a=(0.95, 0.475)))
    named = [f for f in found if f.impact is Impact.CHANNEL]
    assert named and {f.channel for f in named} == {"b"}


def test_distribution_relative_rate_ignores_the_world_changing() -> None:
    rng = np.random.default_rng(18)
    mon = DistributionMonitor(DistributionConfig(), TWO)
    # the scene empties out (4 → 1.5 objects on average) for every channel: not a sensor fault
    assert _first_alarm(mon, _dist_stream(rng, 900, onset=25.0, world_rate_after=1.5)) is None
    # a lone channel can only be judged on its absolute count, which does move
    rng = np.random.default_rng(18)
    lone = DistributionMonitor(DistributionConfig(), [ChannelConfig(name="a")])
    first = _first_alarm(lone, _dist_stream(rng, 900, onset=25.0, world_rate_after=1.5,
                                            channels=("a",)))
    # ... but a scene change is no sensor fault: information, never a channel fault
    assert first is not None and kinds(first[1]) == ["distribution.rate_shift"]
    assert first[1][0].impact is Impact.INFO


def _range_stream(rng: np.random.Generator, steps: int, *, far_from: float,
                  drop_from: float = 1e9) -> Iterator[StepContext]:
    """Camera a scores 0.9 − 0.3·r/80 (+ noise), radar b 0.85; two cars 15–25 m ahead, from
    ``far_from`` 55–70 m ahead; radar clutter forms low-score tentative tracks. From
    ``drop_from`` the camera's scores fall by 0.25 (a real shift)."""
    for i in range(steps):
        t = i * DT
        lo, hi = (55.0, 70.0) if t >= far_from else (15.0, 25.0)
        pts = np.column_stack([np.linspace(lo, hi, 2) + rng.normal(0, 0.3, 2), [-3.5, 3.5]])
        r = np.hypot(pts[:, 0], pts[:, 1])
        sa = 0.9 - 0.3 * r / 80 + rng.normal(0, 0.03, 2) - (0.25 if t >= drop_from else 0.0)
        sa, sb = np.clip(sa, 0, 1), np.clip(0.85 + rng.normal(0, 0.05, 2), 0, 1)
        clutter = rng.uniform([5, -30], [100, 30], (1, 2))
        trb = tracks(t, np.vstack([pts, clutter]), scores=np.r_[sb, 0.3],
                     status=[TrackStatus.CONFIRMED] * 2 + [TrackStatus.TENTATIVE], sensor="b")
        yield ctx(t, [obs("a", d=dets(t, pts, sa, "a"), tr=tracks(t, pts, scores=sa)),
                      obs("b", d=dets(t, np.vstack([pts, clutter]), np.r_[sb, 0.3], "b"),
                          tr=trb)])


def test_distribution_score_is_judged_at_the_same_range() -> None:
    """Camera scores fall with range: the cars dropping back from 20 to 60 m lower the mean
    score by 0.15 (5 noise σ), which is the scene, not the input distribution. A real fall of
    0.25 at the same ranges is named on the camera."""
    rng = np.random.default_rng(31)
    mon = DistributionMonitor(DistributionConfig(), TWO)
    found = [f for c in _range_stream(rng, 900, far_from=40.0) for f in mon.observe(c)]
    assert found == []
    rng = np.random.default_rng(31)
    mon = DistributionMonitor(DistributionConfig(), TWO)
    first = _first_alarm(mon, _range_stream(rng, 900, far_from=40.0, drop_from=30.0))
    assert first is not None and 30.0 <= first[0] <= 33.0
    assert [(f.kind, f.channel, f.impact) for f in first[1]] == [
        ("distribution.score_shift", "a", Impact.CHANNEL)]


def test_distribution_silent_while_learning_reference() -> None:
    rng = np.random.default_rng(17)
    mon = DistributionMonitor(DistributionConfig(reference_blocks=30), TWO)
    # the change happens during the reference window: it is learnt, not flagged (documented)
    assert _first_alarm(mon, _dist_stream(rng, 140, onset=5.0, after={"score": 0.5})) is None


# ----------------------------------------------------------------------------- deadline
def test_deadline_isolated_is_info_then_system() -> None:
    mon = DeadlineMonitor(DeadlineConfig(escalate_after=3))
    assert mon.observe(ctx(0.0, [], elapsed=0.01, budget=0.05)) == []
    imp = [[f.impact for f in mon.observe(ctx(0.1 * i, [], elapsed=0.08, budget=0.05))]
           for i in range(1, 5)]
    assert imp == [[Impact.INFO], [Impact.INFO], [Impact.SYSTEM], [Impact.SYSTEM]]
    assert mon.observe(ctx(0.6, [], elapsed=0.02, budget=0.05)) == []
    assert [f.impact for f in mon.observe(ctx(0.7, [], elapsed=0.08, budget=0.05))] == [Impact.INFO]
    assert mon.observe(ctx(0.8, [], elapsed=1.0, budget=0.0)) == []  # no budget configured


# ----------------------------------------------------------------------------- table, config
def test_monitor_table_and_build() -> None:
    names = [s.name for s in MONITOR_TABLE]
    assert len(names) == len(set(names)) == 9
    all_kinds = {k for s in MONITOR_TABLE for k in s.kinds}
    for k in ("integrity.nan", "liveness.stale", "confidence.low", "consistency.nis_low",
              "drift.coasting", "crosscheck.outvoted", "calibration.drift",
              "distribution.sharpness", "deadline.overrun"):
        assert k in all_kinds
    mons = build_monitors(MonitorsConfig(), THREE)
    assert [m.spec.name for m in mons] == names
    cfg = MonitorsConfig.model_validate({"calibration": {"enabled": False}})
    assert "calibration" not in [m.spec.name for m in build_monitors(cfg, THREE)]


def test_monitor_config_errors_are_clear() -> None:
    with pytest.raises(ValidationError, match="extra"):
        MonitorsConfig.model_validate({"confidence": {"enterr": 0.2}})
    with pytest.raises(ValidationError, match="inverted hysteresis"):
        MonitorsConfig.model_validate({"confidence": {"enter": 0.6, "exit": 0.5}})
    with pytest.raises(ValidationError, match="greater than 0"):
        MonitorsConfig.model_validate({"consistency": {"window_s": 0}})
    with pytest.raises(ValidationError, match="shorter than one step"):
        MonitorsConfig.model_validate({"step_rate_hz": 10, "calibration": {"block_s": 0.05}})
    with pytest.raises(ValidationError, match="cannot exceed"):
        MonitorsConfig.model_validate({"crosscheck": {"outvoted_steps": 8, "outvoted_window": 4}})
    assert MonitorsConfig.model_validate(MonitorsConfig().model_dump()) == MonitorsConfig()


def test_every_finding_is_explained_with_numbers() -> None:
    """Spot-check messages from several monitors: one sentence, with the numbers."""
    fs = IntegrityMonitor(IntegrityConfig(), TWO).observe(
        ctx(0.0, [obs("a", d=dets(0.0, [[900.0, 0.0]]))]))
    fs += DeadlineMonitor(DeadlineConfig()).observe(ctx(0.0, [], elapsed=0.2, budget=0.05))
    for f in fs:
        assert_message(f)


# ----------------------------------------------------------------------------- robustness
_names = st.sampled_from(["a", "b", "c", "zz"])
_floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def odd_observation(draw: st.DrawFn, name: str) -> ChannelObservation:
    n = draw(st.integers(0, 3))
    t = draw(st.floats(-5, 5))
    d = None
    if draw(st.booleans()):
        d = dets(t, np.asarray(draw(st.lists(st.floats(-1e6, 1e6), min_size=2 * n,
                                             max_size=2 * n))).reshape(n, 2))
    tr = None
    if draw(st.booleans()):
        tr = tracks(t, np.zeros((n, 2)), nis=np.asarray(draw(st.lists(_floats, min_size=n,
                                                                      max_size=n))),
                    tsu=draw(_floats), cov_trace=draw(_floats), updated=draw(st.booleans()),
                    status=draw(st.sampled_from(list(TrackStatus))))
    img = ImageStats("x", draw(_floats), draw(_floats), draw(_floats), (2, 2)) if draw(
        st.booleans()) else None
    return ChannelObservation(
        name=name, role=draw(st.sampled_from(["primary", "redundant", "shadow"])),
        received=draw(st.booleans()), detections=d, tracks=tr,
        input_error=draw(st.none() | st.just("bad")), error_kind=draw(st.none() | st.just("!?")),
        image_stats=img, last_received_t=draw(st.none() | _floats),
        measurement_t=draw(st.none() | _floats))


@st.composite
def odd_context(draw: st.DrawFn) -> StepContext:
    names = draw(st.sets(_names, max_size=3))
    xc = None
    if draw(st.booleans()):
        m = draw(st.integers(0, 3))
        k = draw(st.integers(0, 3))
        xc = CrosscheckResult(
            disagreements=[_dis((draw(_names), draw(_names)), [draw(_floats), draw(_floats)],
                                draw(_floats)) for _ in range(draw(st.integers(0, 2)))],
            residuals={("a", "b"): np.full((m, 2), draw(_floats))},
            residual_covs={("a", "b"): np.broadcast_to(np.diag([draw(_floats)] * 2), (k, 2, 2))},
            vote_losers={draw(_names): draw(st.integers(0, 2))},
            shadow={draw(_names): ShadowStats(missed=draw(st.integers(0, 2)))},
        )
    return StepContext(
        t=draw(st.floats(-10, 100)), dt=draw(st.floats(-1, 1)),
        channels={nm: draw(odd_observation(nm)) for nm in names}, crosscheck=xc,
        last_step_elapsed=draw(_floats), budget=draw(_floats))


@given(st.lists(odd_context(), min_size=1, max_size=6))
def test_monitors_never_raise_on_odd_contexts(seq: list[StepContext]) -> None:
    mons = build_monitors(MonitorsConfig(), THREE)
    for c in seq:
        for m in mons:
            for f in m.observe(c):
                assert isinstance(f, Finding) and f.kind.startswith(m.spec.name.split(".")[0])
    for m in mons:
        m.reset()


# ----------------------------------------------------------------------------- long soaks
@pytest.mark.slow
def test_calibration_false_alarm_rate_by_simulation() -> None:
    """With a loose budget (ARL0 ≈ 100 blocks per stream) the alarm count on real filter
    residuals must not exceed the design rate: the inflation keeps the ARL maths honest."""
    budget = 3600.0 / 100.0 * 2  # alarms per hour over 2 streams → ARL0 = 100 blocks each
    cfg = CalibrationConfig(false_alarms_per_hour=budget, cap=1.01)
    rng = np.random.default_rng(20)
    alarms = 0
    mon = CalibrationMonitor(cfg, TWO)
    for _, fs in _calib_iter(mon, rng, 100_000):
        if fs:
            alarms += 1
            mon.reset()
    expected = 100_000 / 10 / mon.design.arl0 * 2  # blocks / ARL0 × streams
    assert 5 <= alarms <= 1.3 * expected


@pytest.mark.slow
def test_distribution_and_calibration_soak_one_hour() -> None:
    rng = np.random.default_rng(21)
    mon = DistributionMonitor(DistributionConfig(), TWO)
    assert all(mon.observe(c) == [] for c in _dist_stream(rng, 36_000))
    cal = CalibrationMonitor(CalibrationConfig(), TWO)
    assert all(fs == [] for _, fs in _calib_iter(cal, rng, 36_000))
