"""Run one peer tracker over MOT-format detections; print JSON {name, frames, seconds, fps}.

Usage: python run_peer.py NAME DETECTIONS.txt OUT.txt [--repeat R]
Runs in whichever environment has the peer installed (some peers pin old numpy/filterpy), so
``tracker_peers.py`` can call it with another interpreter. Only numpy and the peer are needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load(path: str) -> dict[int, np.ndarray]:
    """frame → (N, 5) [x1, y1, x2, y2, score] (score 1 where the file says −1)."""
    a = np.loadtxt(path, delimiter=",", ndmin=2)
    out: dict[int, np.ndarray] = {}
    for f in range(int(a[:, 0].min()), int(a[:, 0].max()) + 1):
        r = a[a[:, 0] == f]
        conf = np.where(r[:, 6] < 0, 1.0, r[:, 6])
        out[f] = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5], conf])
    return out


Runner = Callable[[dict[int, np.ndarray]], list[tuple[int, int, np.ndarray]]]


def run_sort(frames: dict[int, np.ndarray]) -> list[tuple[int, int, np.ndarray]]:
    sys.path.insert(0, str(HERE))
    from sort_filterpy import Sort

    tr = Sort(max_age=1, min_hits=3, iou_threshold=0.3)
    out = []
    for f, d in frames.items():
        for row in tr.update(d):
            out.append((f, int(row[4]), row[:4]))
    return out


def run_norfair(frames: dict[int, np.ndarray]) -> list[tuple[int, int, np.ndarray]]:
    from norfair import Detection, Tracker

    tr = Tracker(
        distance_function="iou", distance_threshold=0.7, hit_counter_max=3, initialization_delay=2
    )
    out = []
    for f, d in frames.items():
        dets = [Detection(points=r[:4].reshape(2, 2), scores=np.array([r[4], r[4]])) for r in d]
        for o in tr.update(detections=dets):
            if o.last_detection is not None and o.last_detection in dets:
                out.append((f, int(o.id), o.estimate.reshape(-1)))
    return out


def run_motpy(frames: dict[int, np.ndarray]) -> list[tuple[int, int, np.ndarray]]:
    from motpy import Detection, MultiObjectTracker

    tr = MultiObjectTracker(dt=1.0, tracker_kwargs={"max_staleness": 2})
    ids: dict[str, int] = {}
    out = []
    for f, d in frames.items():
        tr.step([Detection(box=r[:4], score=r[4]) for r in d])
        for t in tr.active_tracks(min_steps_alive=3, max_staleness=0.5):
            out.append((f, ids.setdefault(t.id, len(ids) + 1), np.asarray(t.box)))
    return out


def _roboflow(cls_name: str) -> Runner:
    def run(frames: dict[int, np.ndarray]) -> list[tuple[int, int, np.ndarray]]:
        import supervision as sv
        import trackers

        tr = getattr(trackers, cls_name)()
        out = []
        for f, d in frames.items():
            det = sv.Detections(
                xyxy=d[:, :4].astype(float),
                confidence=d[:, 4].astype(float),
                class_id=np.zeros(len(d), int),
            )
            res = tr.update(det)
            if res.tracker_id is None:
                continue
            for box, tid in zip(res.xyxy, res.tracker_id, strict=True):
                if tid is not None and tid >= 0:
                    out.append((f, int(tid), box))
        return out

    return run


PEERS: dict[str, Runner] = {
    "sort": run_sort,
    "norfair": run_norfair,
    "motpy": run_motpy,
    "trackers-sort": _roboflow("SORTTracker"),
    "trackers-bytetrack": _roboflow("ByteTrackTracker"),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(PEERS))
    ap.add_argument("detections")
    ap.add_argument("out")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    frames = load(a.detections)
    best = float("inf")
    rows: list[tuple[int, int, np.ndarray]] = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        rows = PEERS[a.name](frames)
        best = min(best, time.perf_counter() - t0)
    with open(a.out, "w") as fh:
        for f, i, b in rows:
            fh.write(
                f"{f},{i},{b[0]:.3f},{b[1]:.3f},{b[2] - b[0]:.3f},{b[3] - b[1]:.3f},1,-1,-1,-1\n"
            )
    print(
        json.dumps(
            {"name": a.name, "frames": len(frames), "seconds": best, "fps": len(frames) / best}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
