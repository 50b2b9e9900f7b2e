"""Detector + tracker throughput on a real pedestrian video: frames/s for each stage and both.

Video: OpenCV's ``vtest.avi`` (768×576 street scene), shipped by the Debian package opencv-doc:

    apt-get install -y opencv-doc
    python benchmarks/video_pipeline.py                      # MOG2, 300 frames
    python benchmarks/video_pipeline.py --detector hog --frames 100
    python benchmarks/video_pipeline.py --video other.avi --frames 0   # 0 = whole video

Frames are decoded once, up front, so decoding is not timed. Timings: detector alone (fresh
detector over all frames), tracker alone (``perception.tracker.Tracker(model="box",
gating="iou")`` over the recorded detections), and both in one loop. Skips with a message (exit 0)
when the video or the tracker is absent.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.detections import Detections
from perception.detectors import (
    BackgroundSubtractionDetector,
    Detector,
    HOGPeopleDetector,
    safe_detect,
)

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
#: Detections are stamped with the frame index (dt = 1 per frame, the unit SORT's box-model
#: noise is tuned for), so tracker times such as ``max_coast`` are in frames.
FRAME_DT = 1.0


def read_frames(path: Path, limit: int) -> list[np.ndarray]:
    """Decode up to ``limit`` frames (all when ``limit`` is 0)."""
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while limit <= 0 or len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def make_detector(kind: str) -> Detector:
    """A fresh detector of ``kind`` ("mog2" or "hog") for the camera channel."""
    if kind == "mog2":
        return BackgroundSubtractionDetector(min_area=150, kernel_size=3, sensor="vtest")
    return HOGPeopleDetector(sensor="vtest", min_score=0.6)


def make_tracker() -> Any | None:
    """The perception box tracker, or None (with a message) if it is not importable."""
    try:
        from perception.tracker import Tracker
    except ImportError as exc:
        print(f"tracker: skipped, perception.tracker not importable ({exc})")
        return None
    return Tracker(
        model="box",
        gating="iou",
        iou_threshold=0.3,
        n_init=3,
        init_window=5,
        max_coast=3.0,
        max_cov_trace=1e4,
        sensor="vtest",
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(frames: Sequence[np.ndarray], kind: str) -> dict[str, float]:
    """Time detector, tracker and the combined loop; returns frames/s per stage (and counts)."""
    n = len(frames)
    det = make_detector(kind)

    def detect_all() -> list[Detections]:
        return [safe_detect(det, f, i * FRAME_DT) for i, f in enumerate(frames)]

    t_det, dets = timed(detect_all)
    result = {
        "frames": float(n),
        "detector_fps": n / t_det,
        "mean_detections": float(np.mean([len(d) for d in dets])),
    }
    print(
        f"detector ({kind}): {n} frames in {t_det:.2f} s = {n / t_det:.1f} frames/s, "
        f"{result['mean_detections']:.1f} detections/frame"
    )

    tracker = make_tracker()
    if tracker is None:
        return result

    def track_all() -> Any:
        out = None
        for d in dets:
            out = tracker.step(d.t, d)
        return out

    t_trk, _ = timed(track_all)
    result["tracker_fps"] = n / t_trk
    print(f"tracker (box, iou): {n} frames in {t_trk:.3f} s = {n / t_trk:.0f} frames/s")

    det2 = make_detector(kind)
    tracker2 = make_tracker()
    assert tracker2 is not None
    confirmed = []

    def both() -> None:
        for i, f in enumerate(frames):
            tracks = tracker2.step(i * FRAME_DT, safe_detect(det2, f, i * FRAME_DT))
            confirmed.append(int(np.count_nonzero(tracks.confirmed)))

    t_both, _ = timed(both)
    result["pipeline_fps"] = n / t_both
    result["mean_confirmed"] = float(np.mean(confirmed))
    print(
        f"detector + tracker: {n} frames in {t_both:.2f} s = {n / t_both:.1f} frames/s, "
        f"{result['mean_confirmed']:.1f} confirmed tracks/frame"
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=VTEST)
    ap.add_argument("--detector", choices=("mog2", "hog", "both"), default="mog2")
    ap.add_argument("--frames", type=int, default=300, help="frames to use (0 = all)")
    args = ap.parse_args(argv)
    if not args.video.exists():
        print(
            f"skipped: video {args.video} not found "
            "(Debian: apt-get install opencv-doc, or pass --video PATH)"
        )
        return 0
    frames = read_frames(args.video, args.frames)
    if not frames:
        print(f"skipped: could not decode any frame of {args.video}")
        return 0
    h, w = frames[0].shape[:2]
    print(
        f"video {args.video.name}: {len(frames)} frames of {w}x{h}; "
        f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads"
    )
    kinds = ("mog2", "hog") if args.detector == "both" else (args.detector,)
    for kind in kinds:
        run(frames, kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
