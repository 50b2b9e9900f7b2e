"""MOT-challenge text format: read detections / ground truth, write tracks, load shipped samples.

Rows are ``frame, id, x, y, w, h, conf, ...`` (1-based frames, boxes in pixels, top-left corner).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from perception.detections import Detections, z_to_xyxy
from perception.errors import PerceptionError
from perception.tracks import Tracks

FloatArray = NDArray[np.float64]

#: Real sequences shipped inside the py-motmetrics wheel (MOT15 pedestrian video).
SAMPLES = ("TUD-Campus", "TUD-Stadtmitte")


@dataclass(frozen=True)
class MotSequence:
    """A MOT file as arrays: one row per box."""

    frame: NDArray[np.int64]
    ids: NDArray[np.int64]
    xywh: FloatArray
    conf: FloatArray

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @property
    def frames(self) -> NDArray[np.int64]:
        """Sorted distinct frame numbers."""
        return np.unique(self.frame)

    def by_frame(self) -> dict[int, tuple[NDArray[np.int64], FloatArray]]:
        """frame → (ids, xywh boxes), for metrics."""
        order = np.argsort(self.frame, kind="stable")
        f = self.frame[order]
        cuts = np.flatnonzero(np.diff(f)) + 1
        out: dict[int, tuple[NDArray[np.int64], FloatArray]] = {}
        for idx in np.split(order, cuts):
            if idx.size:
                out[int(self.frame[idx[0]])] = (self.ids[idx], self.xywh[idx])
        return out


def read_mot(path: str | Path, min_confidence: float = -np.inf) -> MotSequence:
    """Read a MOT-format text file (comma or whitespace separated)."""
    p = Path(path)
    if not p.is_file():
        raise PerceptionError(f"{p}: no such MOT file")
    text = p.read_text().replace(",", " ")
    rows = [
        ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not rows:
        z = np.zeros(0)
        return MotSequence(z.astype(np.int64), z.astype(np.int64), np.zeros((0, 4)), z)
    try:
        width = min(len(r) for r in rows)
        if width < 6:
            raise ValueError(f"rows need at least 6 columns, found {width}")
        arr = np.array(
            [r[: max(7, min(width, 7))] if len(r) >= 7 else [*r[:6], "1"] for r in rows],
            dtype=np.float64,
        )
    except ValueError as exc:
        raise PerceptionError(f"{p}: not MOT format: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise PerceptionError(f"{p}: non-finite values")
    keep = arr[:, 6] >= min_confidence
    arr = arr[keep]
    return MotSequence(
        arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2:6].copy(), arr[:, 6].copy()
    )


def write_mot(path: str | Path, seq: MotSequence) -> None:
    """Write a sequence in MOT format (conf column then -1,-1,-1)."""
    order = np.lexsort((seq.ids, seq.frame))
    lines = [
        f"{int(f)},{int(i)},{x:.3f},{y:.3f},{w:.3f},{h:.3f},{c:.4g},-1,-1,-1"
        for f, i, (x, y, w, h), c in zip(
            seq.frame[order], seq.ids[order], seq.xywh[order], seq.conf[order], strict=True
        )
    ]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))


def sample_paths(name: str) -> tuple[Path, Path]:
    """(ground truth, detections) of a sequence shipped by the installed py-motmetrics package.

    The detections are a real tracker's output (``test.txt``); their IDs are dropped on use.
    """
    if name not in SAMPLES:
        raise PerceptionError(f"unknown sample {name!r}; available: {', '.join(SAMPLES)}")
    spec = importlib.util.find_spec("motmetrics")
    if spec is None or not spec.submodule_search_locations:
        raise PerceptionError(
            "the sample sequences ship with py-motmetrics: pip install 'vigil[metrics]'"
        )
    base = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    gt, det = base / "gt.txt", base / "test.txt"
    if not gt.is_file() or not det.is_file():
        raise PerceptionError(f"{base}: sample files missing from the installed motmetrics")
    return gt, det


#: SORT's published measurement noise for [u, v, s, r] (MOT boxes carry no uncertainty of
#: their own; using it keeps comparisons with SORT-family trackers like for like).
SORT_R = np.diag([1.0, 1.0, 10.0, 10.0])


def detections_by_frame(
    seq: MotSequence, sensor: str = "camera", R: FloatArray | None = SORT_R
) -> dict[int, Detections]:
    """frame → box Detections (IDs dropped; confidence as score, unknown (−1) as 1).

    ``R`` is the measurement covariance of every box; None derives it from 4 px edge noise.
    """
    out: dict[int, Detections] = {}
    for f, (_, xywh) in seq.by_frame().items():
        sel = seq.frame == f
        conf = np.where(seq.conf[sel] < 0, 1.0, np.clip(seq.conf[sel], 0.0, 1.0))  # -1 = unknown
        good = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
        out[f] = Detections.from_boxes(
            xywh[good], t=float(f), fmt="xywh", scores=conf[good], sensor=sensor, sigma_px=4.0, R=R
        )
    return out


class _Steppable(Protocol):
    def step(self, t: float, detections: Detections | None) -> Tracks: ...


def track_detections(
    dets_by_frame: dict[int, Detections], tracker: _Steppable, *, updated_only: bool = True
) -> MotSequence:
    """Run a box tracker over frames and collect its confirmed tracks as a MOT sequence.

    Frames with no detections still step the tracker (it coasts). With ``updated_only`` only
    tracks updated in that frame are reported, as SORT does; otherwise coasting ones too.
    """
    if not dets_by_frame:
        return MotSequence(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0)
        )
    first, last = min(dets_by_frame), max(dets_by_frame)
    sensor = next(iter(dets_by_frame.values())).sensor
    fr: list[NDArray[np.int64]] = []
    ids: list[NDArray[np.int64]] = []
    boxes: list[FloatArray] = []
    conf: list[FloatArray] = []
    for f in range(first, last + 1):
        d = dets_by_frame.get(f) or Detections.empty(float(f), sensor, "box")
        tr = tracker.step(float(f), d)
        keep = tr.confirmed & (tr.updated if updated_only else True)
        if not np.any(keep):
            continue
        xywh = z_to_xyxy(tr.x[keep])
        xywh[:, 2:] -= xywh[:, :2]
        fr.append(np.full(xywh.shape[0], f, np.int64))
        ids.append(tr.ids[keep])
        boxes.append(xywh)
        conf.append(tr.scores[keep])
    if not fr:
        return MotSequence(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0)
        )
    return MotSequence(
        np.concatenate(fr), np.concatenate(ids), np.concatenate(boxes), np.concatenate(conf)
    )
