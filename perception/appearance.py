"""Appearance trackers: OpenCV's CSRT / KCF single-object trackers, one per object, as a Detector.

They follow objects between runs of an expensive detector by matching appearance, which is cheap
but fragile: when the target changes appearance, is occluded or jumps, the tracker either reports
the loss or — worse — locks onto the background and keeps reporting a confident, wrong box. That
drift is exactly what the safety layer's monitors must catch, so nothing here hides it.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.detections import Detections
from perception.detectors import as_image
from perception.errors import DetectorError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
TrackerKind = Literal["csrt", "kcf"]

__all__ = ["AppearanceTracker", "make_cv_tracker"]


def make_cv_tracker(kind: str) -> Any:
    """A fresh OpenCV single-object tracker of ``kind`` ("csrt" or "kcf")."""
    cls_name = {"csrt": "TrackerCSRT", "kcf": "TrackerKCF"}.get(kind)
    if cls_name is None:
        raise ValueError(f"unknown appearance tracker kind {kind!r}; expected 'csrt' or 'kcf'")
    cls = getattr(cv2, cls_name, None)
    if cls is not None and hasattr(cls, "create"):
        return cls.create()
    factory = getattr(cv2, f"{cls_name}_create", None)  # older OpenCV spellings
    if factory is None:
        legacy = getattr(cv2, "legacy", None)
        factory = getattr(legacy, f"{cls_name}_create", None)
    if factory is None:
        raise RuntimeError(f"this OpenCV build has no {cls_name} (opencv-contrib is needed)")
    return factory()


class AppearanceTracker:
    """Follows a set of boxes from frame to frame with one CSRT or KCF tracker each.

    ``start(frame, boxes_xyxy)`` (re)initialises one tracker per box; ``detect(frame, t)``
    updates them all and returns box Detections for those still tracked (so it is itself a
    Detector). ``ids`` are the indices (into the ``start`` boxes) of the rows last returned.
    A tracker is dropped — and ``lost`` incremented — when OpenCV reports failure, its box
    degenerates, or it leaves the image. Scores are 1.0, or with ``use_tracker_score`` the
    tracker's ``getTrackingScore()`` clipped to [0, 1] (OpenCV 5.0's CSRT and KCF report 0 there:
    they expose no confidence). Measured on synthetic frames, OpenCV 5.0's KCF box lags the
    target by one frame's motion; CSRT does not.
    """

    input_kind = "image"

    def __init__(
        self,
        kind: TrackerKind = "csrt",
        *,
        sensor: str = "appearance",
        name: str | None = None,
        sigma_px: float = 3.0,
        use_tracker_score: bool = False,
        min_size_px: float = 2.0,
    ) -> None:
        make_cv_tracker(kind)  # fail early on an unknown kind or a build without it
        self.kind = kind
        self.sensor = sensor
        self.name = name if name is not None else kind
        self.sigma_px = float(sigma_px)
        self.use_tracker_score = bool(use_tracker_score)
        self.min_size_px = float(min_size_px)
        self._trackers: list[Any] = []
        self.ids: IntArray = np.zeros(0, dtype=np.int64)
        self._labels: IntArray = np.zeros(0, dtype=np.int64)
        #: Trackers dropped since the last ``start`` (failure, degenerate box, left the image).
        self.lost = 0
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self._trackers)

    def start(self, frame: Any, boxes_xyxy: ArrayLike, labels: ArrayLike | None = None) -> None:
        """Start one tracker per box (xyxy, pixels) on ``frame``; replaces any current set.

        Boxes are clipped to the image; a box left smaller than ``min_size_px`` counts as lost.
        Raises DetectorError on a bad frame or malformed boxes.
        """
        img = as_image(frame, self.name)
        b = np.asarray(boxes_xyxy, dtype=np.float64)
        if b.size == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4 or not np.all(np.isfinite(b)):
            raise DetectorError(
                self.name, f"start boxes must be finite (N, 4), got shape {b.shape}"
            )
        n = b.shape[0]
        lab = np.zeros(n, np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
        if lab.shape != (n,):
            raise DetectorError(self.name, f"labels shape {lab.shape}, expected ({n},)")
        h, w = img.shape[:2]
        c = np.column_stack(
            [
                np.clip(b[:, 0], 0, w),
                np.clip(b[:, 1], 0, h),
                np.clip(b[:, 2], 0, w),
                np.clip(b[:, 3], 0, h),
            ]
        )
        ok = ((c[:, 2] - c[:, 0]) >= self.min_size_px) & ((c[:, 3] - c[:, 1]) >= self.min_size_px)
        self._trackers = []
        self.lost = int(np.count_nonzero(~ok))
        self._shape = img.shape
        xywh = np.rint(np.column_stack([c[:, :2], c[:, 2:] - c[:, :2]])[ok]).astype(np.int64)
        xywh[:, 2:] = np.maximum(xywh[:, 2:], 1)
        for x, y, bw, bh in xywh.tolist():  # OpenCV's trackers are per object: one init each
            tr = make_cv_tracker(self.kind)
            tr.init(img, (x, y, bw, bh))
            self._trackers.append(tr)
        self.ids = np.flatnonzero(ok).astype(np.int64)
        self._labels = lab[ok]

    def detect(self, frame: Any, t: float) -> Detections:
        """Update every live tracker on ``frame`` and return the boxes of those still tracked."""
        img = as_image(frame, self.name)
        if self._shape is not None and img.shape != self._shape:
            raise DetectorError(self.name, f"frame shape {img.shape} differs from {self._shape}")
        n = len(self._trackers)
        boxes = np.zeros((n, 4))
        scores = np.ones(n)
        ok = np.zeros(n, dtype=bool)
        for i, tr in enumerate(self._trackers):  # one OpenCV update per object
            found, bb = tr.update(img)
            ok[i] = bool(found)
            boxes[i] = bb
            if self.use_tracker_score:
                scores[i] = _tracker_score(tr)
        hh, ww = img.shape[:2]
        xyxy = np.column_stack(
            [boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]]
        )
        inside = (xyxy[:, 2] > 0) & (xyxy[:, 3] > 0) & (xyxy[:, 0] < ww) & (xyxy[:, 1] < hh)
        sized = (boxes[:, 2] >= self.min_size_px) & (boxes[:, 3] >= self.min_size_px)
        keep = ok & inside & sized & np.all(np.isfinite(xyxy), axis=1)
        self.lost += int(np.count_nonzero(~keep))
        self._trackers = [tr for tr, k in zip(self._trackers, keep, strict=True) if k]
        self.ids = self.ids[keep]
        self._labels = self._labels[keep]
        return Detections.from_boxes(
            xyxy[keep],
            t=t,
            scores=np.clip(scores[keep], 0.0, 1.0),
            labels=self._labels,
            sensor=self.sensor,
            sigma_px=self.sigma_px,
        )

    def reset(self) -> None:
        """Drop every tracker."""
        self._trackers = []
        self.ids = np.zeros(0, dtype=np.int64)
        self._labels = np.zeros(0, dtype=np.int64)
        self.lost = 0
        self._shape = None


def _tracker_score(tr: Any) -> float:
    """The tracker's own confidence if it reports a finite one, else 1.0."""
    get = getattr(tr, "getTrackingScore", None)
    if get is None:
        return 1.0
    try:
        s = float(get())
    except Exception:
        return 1.0
    return s if np.isfinite(s) else 1.0
