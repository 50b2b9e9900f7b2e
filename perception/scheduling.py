"""Detection scheduling: run the expensive detector every k frames, coast or follow in between.

Between detector runs the tracker is fed by a cheap ``between`` source (an appearance tracker)
or only predicted; a fresh detection is forced at once when any confirmed track's uncertainty or
time without update crosses its bound, so skipping the detector never lets drift grow unbounded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from perception.detections import Detections
from perception.errors import TrackerError
from perception.tracker import Tracker
from perception.tracks import Tracks


@runtime_checkable
class FrameDetector(Protocol):
    """Anything with ``detect(frame, t) -> Detections`` (see perception.detectors.Detector)."""

    def detect(self, frame: Any, t: float) -> Detections: ...


BetweenSource = FrameDetector | Callable[[Any, float], Detections | None]


class DetectionScheduler:
    """Runs ``detector`` every ``every`` frames and feeds ``tracker``; forces re-detection early.

    Between runs the tracker gets ``between(frame, t)`` (a :class:`FrameDetector` or a callable;
    None from it means no measurement) or, without ``between``, a predict-only step. Before each
    frame the tracker is peeked at ``t``: if a confirmed track's position-covariance trace would
    exceed ``max_cov_trace`` or its time since update would exceed ``max_coast``, the detector
    runs on this frame. Bounds default to half the tracker's deletion bounds, so re-detection
    comes before the tracker gives up on a track. If ``between`` has ``start(frame, boxes_xyxy)``
    (an appearance tracker), it is re-seeded with the boxes of every detector run.
    """

    def __init__(
        self,
        detector: FrameDetector,
        tracker: Tracker,
        every: int = 5,
        max_cov_trace: float | None = None,
        max_coast: float | None = None,
        between: BetweenSource | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.detector = detector
        self.tracker = tracker
        self.every = int(every)
        half_trace, half_coast = 0.5 * tracker.max_cov_trace, 0.5 * tracker.max_coast
        self.max_cov_trace = half_trace if max_cov_trace is None else float(max_cov_trace)
        self.max_coast = half_coast if max_coast is None else float(max_coast)
        if self.max_cov_trace <= 0 or self.max_coast <= 0:
            raise ValueError("max_cov_trace and max_coast must be positive")
        self.between = between
        self.detector_calls = 0
        self.frames = 0
        self.saved = 0
        self.forced: Counter[str] = Counter()
        self.last_reason: str | None = None
        self._since_detect: int | None = None  # frames since the last detector run

    def force_reason(self, t: float) -> str | None:
        """Why the detector must run at ``t`` regardless of the schedule ("cov_trace",
        "max_coast"), or None. Looks only at confirmed tracks, predicted to ``t``."""
        view = self.tracker.peek(t)
        if len(view) == 0:
            return None
        conf = view.confirmed
        if np.any(conf & ~(view.cov_trace <= self.max_cov_trace)):
            return "cov_trace"
        if np.any(conf & (view.time_since_update > self.max_coast)):
            return "max_coast"
        return None

    def _between(self, frame: Any, t: float) -> Detections | None:
        src = self.between
        if src is None:
            return None
        if isinstance(src, FrameDetector):
            return src.detect(frame, t)
        return src(frame, t)

    def step(self, t: float, frame: Any) -> Tracks:
        """Process one frame at time ``t``: detect if scheduled or forced, else follow/coast."""
        last = self.tracker.t
        if last is not None and not float(t) > last:  # fail before running anything
            raise TrackerError(f"time must strictly increase: got {t} after {last}")
        scheduled = self._since_detect is None or self._since_detect + 1 >= self.every
        reason = None if scheduled else self.force_reason(t)
        self.frames += 1
        dets: Detections | None
        if scheduled or reason is not None:
            dets = self.detector.detect(frame, t)
            self.detector_calls += 1
            self._since_detect = 0
            if reason is not None:
                self.forced[reason] += 1
                self.last_reason = reason
            start = getattr(self.between, "start", None)
            if callable(start) and dets is not None and dets.space == "box":
                start(frame, dets.boxes_xyxy())
        else:
            dets = self._between(frame, t)
            self.saved += 1
            self._since_detect = (self._since_detect or 0) + 1
        return self.tracker.step(t, dets)
