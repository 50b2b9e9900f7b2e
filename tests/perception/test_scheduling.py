"""DetectionScheduler: skips the detector on schedule, forces re-detection when drift grows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from perception.detections import Detections
from perception.errors import TrackerError
from perception.scheduling import DetectionScheduler
from perception.tracker import Tracker


class TruthDetector:
    """Detects the ground-truth points carried by the frame (plus seeded noise), counting calls."""

    name = "truth"

    def __init__(self, sigma: float = 0.1, seed: int = 0) -> None:
        self.sigma = sigma
        self.rng = np.random.default_rng(seed)
        self.calls: list[float] = []

    def detect(self, frame: Any, t: float) -> Detections:
        self.calls.append(t)
        noise = self.rng.normal(scale=self.sigma, size=np.shape(frame))
        z = np.asarray(frame, dtype=np.float64) + noise
        return Detections.from_points(z, t=t, sigma=self.sigma)


def _frames(n: int, dt: float) -> list[tuple[float, np.ndarray]]:
    """Two targets moving at constant velocity; the 'frame' is their true positions."""
    p0 = np.array([[0.0, 0.0], [10.0, 5.0]])
    v = np.array([[1.0, 0.5], [-0.5, 1.0]])
    return [(k * dt, p0 + v * k * dt) for k in range(n)]


def test_detector_runs_every_k_frames_and_the_rest_are_saved() -> None:
    det = TruthDetector()
    sched = DetectionScheduler(det, Tracker("cv", n_init=3, max_coast=1.0), every=5)
    frames = _frames(40, 0.05)
    for t, frame in frames:
        out = sched.step(t, frame)
    assert sched.frames == 40
    assert sched.detector_calls == 8 and len(det.calls) == 8
    assert det.calls == pytest.approx([frames[k][0] for k in range(0, 40, 5)])
    assert sched.saved == 32
    assert sum(sched.forced.values()) == 0 and sched.last_reason is None
    # coasting on the tracker between detections still follows both targets
    assert out.confirmed.sum() == 2
    err = np.min(np.linalg.norm(out.position[:, None, :] - frames[-1][1][None], axis=2), axis=0)
    assert np.all(err < 0.3)


def test_every_one_never_skips() -> None:
    det = TruthDetector()
    sched = DetectionScheduler(det, Tracker("cv"), every=1)
    for t, frame in _frames(10, 0.1):
        sched.step(t, frame)
    assert sched.detector_calls == 10 and sched.saved == 0


def test_forces_redetection_when_a_confirmed_track_coasts_too_long() -> None:
    det = TruthDetector()
    tracker = Tracker("cv", n_init=1, max_coast=1.0, max_cov_trace=1e6)
    sched = DetectionScheduler(det, tracker, every=10, max_coast=0.3)
    max_tsu = 0.0
    for t, frame in _frames(30, 0.2):
        out = sched.step(t, frame)
        max_tsu = max(max_tsu, float(out.time_since_update.max()))
        assert len(out) == 2  # never lost: re-detection comes before the tracker's max_coast
    # tsu 0.2 is fine, 0.4 would exceed 0.3: the detector runs every second frame
    assert max_tsu == pytest.approx(0.2)
    assert sched.detector_calls == 15 and sched.saved == 15
    # the schedule counts from the latest run of any kind: only frame 0 ran on schedule
    assert sched.forced["max_coast"] == 14
    assert sched.last_reason == "max_coast"


def test_forces_redetection_when_uncertainty_grows_too_large() -> None:
    det = TruthDetector()
    tracker = Tracker("cv", process_noise=200.0, n_init=1, max_coast=10.0, max_cov_trace=1e6)
    sched = DetectionScheduler(det, tracker, every=50, max_cov_trace=2.0)
    for t, frame in _frames(20, 0.1):
        out = sched.step(t, frame)
        assert np.all(out.cov_trace[out.confirmed] <= 2.0)
    assert sched.forced["cov_trace"] > 0
    assert sched.last_reason == "cov_trace"
    assert sched.saved > 0 and sched.detector_calls < 20


def test_tentative_tracks_do_not_force_redetection() -> None:
    det = TruthDetector()
    tracker = Tracker("cv", n_init=3, max_coast=5.0, max_cov_trace=1e6)
    sched = DetectionScheduler(det, tracker, every=4, max_coast=0.05)
    for t, frame in _frames(4, 0.1):
        sched.step(t, frame)
    assert sched.detector_calls == 1 and sum(sched.forced.values()) == 0


def test_between_source_feeds_the_tracker_between_detector_runs() -> None:
    det = TruthDetector()
    between_calls: list[float] = []

    def between(frame: Any, t: float) -> Detections:
        between_calls.append(t)
        return Detections.from_points(np.asarray(frame), t=t, sigma=0.2, sensor="appearance")

    sched = DetectionScheduler(det, Tracker("cv", n_init=3), every=4, between=between)
    for t, frame in _frames(12, 0.1):
        out = sched.step(t, frame)
        assert out.updated.all() or t == 0.0  # every frame after the births brought a measurement
    assert sched.detector_calls == 3 and len(between_calls) == 9 and sched.saved == 9
    assert out.confirmed.sum() == 2


class FakeAppearance:
    """Box follower with the AppearanceTracker surface: start(frame, boxes) and detect(frame, t)."""

    name = "appearance"

    def __init__(self) -> None:
        self.boxes = np.zeros((0, 4))
        self.starts = 0

    def start(self, frame: Any, boxes_xyxy: np.ndarray) -> None:
        self.starts += 1
        self.boxes = np.asarray(boxes_xyxy, dtype=np.float64).copy()

    def detect(self, frame: Any, t: float) -> Detections:
        return Detections.from_boxes(self.boxes, t=t, sensor="appearance")


class BoxDetector:
    name = "boxes"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame: Any, t: float) -> Detections:
        self.calls += 1
        return Detections.from_boxes(np.asarray(frame, dtype=np.float64), t=t)


def test_appearance_follower_is_reseeded_after_every_detector_run() -> None:
    app = FakeAppearance()
    det = BoxDetector()
    tracker = Tracker("box", gating="iou", n_init=2, max_coast=5.0, max_cov_trace=1e12)
    sched = DetectionScheduler(det, tracker, every=3, between=app)
    for f in range(9):
        frame = np.array([[10 + f, 10, 50 + f, 90]], dtype=np.float64)
        out = sched.step(float(f), frame)
        seeded = 3 * (f // 3)  # the frame of the latest detector run
        np.testing.assert_allclose(app.boxes, np.array([[10 + seeded, 10, 50 + seeded, 90]]))
        assert out.updated.all() or f == 0
    assert det.calls == 3 and app.starts == 3 and sched.saved == 6
    assert out.ids.tolist() == [0] and out.confirmed.all()


def test_defaults_are_half_the_tracker_bounds_and_bad_every_is_rejected() -> None:
    tracker = Tracker("cv", max_coast=2.0, max_cov_trace=60.0)
    sched = DetectionScheduler(TruthDetector(), tracker)
    assert sched.max_coast == 1.0 and sched.max_cov_trace == 30.0
    with pytest.raises(ValueError):
        DetectionScheduler(TruthDetector(), tracker, every=0)


def test_backwards_time_fails_before_the_detector_runs() -> None:
    det = TruthDetector()
    sched = DetectionScheduler(det, Tracker("cv"), every=1)
    sched.step(1.0, np.zeros((1, 2)))
    with pytest.raises(TrackerError):
        sched.step(1.0, np.zeros((1, 2)))
    assert len(det.calls) == 1 and sched.frames == 1
