"""`Detections`: one sensor's measurements at one instant, as a validated structure of arrays.

Every channel hands the tracker and the safety layer the same type, whatever made it
(a detector on an image, a radar, a user's model), so nothing downstream needs to know how.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.errors import InvalidDetectionsError
from perception.kernels import z_to_xyxy_kernel

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: What ``z`` holds. ``box``: SORT box measurement [u, v, s, r] (centre px, area px², aspect w/h);
#: ``point``: a position [x, y] (ground plane in metres, or an image point in px).
Space = Literal["box", "point"]

_Z_DIM: dict[str, int] = {"box": 4, "point": 2}


def _psd_ok(R: FloatArray, tol: float = 1e-9) -> NDArray[np.bool_]:
    """Per-matrix check that R is symmetric positive semi-definite (vectorized)."""
    if R.shape[0] == 0:
        return np.ones(0, dtype=bool)
    if R.shape[1] == 2:  # closed form for the common 2×2 case: symmetric, trace ≥ 0, det ≥ 0
        a, b, c, d = R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1]
        sym2 = np.abs(b - c) <= tol * (1.0 + np.abs(b))
        m = 0.5 * (b + c)
        half_tr = 0.5 * (a + d)
        root = np.sqrt(np.maximum(0.25 * (a - d) ** 2 + m * m, 0.0))
        low, high = half_tr - root, half_tr + root  # eigenvalues, ascending
        return sym2 & (low >= -tol * np.maximum(1.0, np.maximum(np.abs(low), np.abs(high))))
    sym = np.all(np.abs(R - np.swapaxes(R, 1, 2)) <= tol * (1.0 + np.abs(R)), axis=(1, 2))
    eig = np.linalg.eigvalsh(0.5 * (R + np.swapaxes(R, 1, 2)))
    scale = np.maximum(1.0, np.abs(eig).max(axis=1))
    return sym & (eig.min(axis=1) >= -tol * scale)


@dataclass(frozen=True, eq=False)
class Detections:
    """N measurements of dimension m taken at time ``t`` by ``sensor``.

    Arrays: ``z`` (N, m) measurements, ``R`` (N, m, m) their covariances, ``scores`` (N,) in
    [0, 1], ``labels`` (N,) integer classes. Optional ``range_rate`` (N,) for radar.
    Construction validates everything and raises :class:`InvalidDetectionsError` naming the field.
    """

    z: FloatArray
    R: FloatArray
    scores: FloatArray
    labels: IntArray
    t: float
    sensor: str = "sensor"
    space: Space = "point"
    range_rate: FloatArray | None = field(default=None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.space not in _Z_DIM:
            raise InvalidDetectionsError(
                "space", f"must be one of {sorted(_Z_DIM)}, got {self.space!r}"
            )
        m = _Z_DIM[self.space]
        try:
            t = float(self.t)
        except (TypeError, ValueError) as exc:
            raise InvalidDetectionsError("t", f"not a number: {self.t!r}") from exc
        if not np.isfinite(t):
            raise InvalidDetectionsError("t", f"not finite: {t}")
        set_(self, "t", t)
        z = _as_float("z", self.z)
        if z.ndim == 1 and z.size == 0:
            z = z.reshape(0, m)
        if z.ndim != 2 or z.shape[1] != m:
            raise InvalidDetectionsError(
                "z", f"shape {z.shape}, expected (N, {m}) for space {self.space!r}"
            )
        n = z.shape[0]
        R = _as_float("R", self.R)
        if R.size == 0 and n == 0:
            R = R.reshape(0, m, m)
        if R.shape != (n, m, m):
            raise InvalidDetectionsError("R", f"shape {R.shape}, expected {(n, m, m)}")
        scores = (
            _as_float("scores", self.scores).reshape(-1) if np.size(self.scores) else np.zeros(0)
        )
        if scores.shape != (n,):
            raise InvalidDetectionsError("scores", f"shape {scores.shape}, expected ({n},)")
        if np.any((scores < 0.0) | (scores > 1.0)):
            raise InvalidDetectionsError("scores", "outside [0, 1]")
        labels_in = np.asarray(self.labels)
        if labels_in.size == 0:
            labels_in = np.zeros(0, dtype=np.int64)
        if labels_in.dtype.kind not in "iub":
            if (
                labels_in.dtype.kind == "f"
                and np.all(np.isfinite(labels_in))
                and np.all(labels_in == np.round(labels_in))
            ):
                labels_in = labels_in.astype(np.int64)
            else:
                raise InvalidDetectionsError("labels", f"dtype {labels_in.dtype} is not integer")
        labels = labels_in.astype(np.int64).reshape(-1)
        if labels.shape != (n,):
            raise InvalidDetectionsError("labels", f"shape {labels.shape}, expected ({n},)")
        for name, arr in (("z", z), ("R", R), ("scores", scores)):
            if not np.all(np.isfinite(arr)):
                raise InvalidDetectionsError(name, "contains NaN or inf")
        bad = ~_psd_ok(R)
        if np.any(bad):
            raise InvalidDetectionsError(
                "R",
                f"not symmetric positive semi-definite at rows {np.flatnonzero(bad)[:5].tolist()}",
            )
        if self.space == "box" and n and np.any(z[:, 2:4] <= 0.0):
            raise InvalidDetectionsError("z", "box area and aspect must be positive")
        rr = self.range_rate
        if rr is not None:
            rr = _as_float("range_rate", rr).reshape(-1)
            if rr.shape != (n,):
                raise InvalidDetectionsError("range_rate", f"shape {rr.shape}, expected ({n},)")
            if not np.all(np.isfinite(rr)):
                raise InvalidDetectionsError("range_rate", "contains NaN or inf")
        fields: dict[str, np.ndarray | None] = {
            "z": z, "R": R, "scores": scores, "labels": labels, "range_rate": rr,
        }
        for name, value in fields.items():
            if value is not None:
                value = np.ascontiguousarray(value)
                value.setflags(write=False)
            set_(self, name, value)
        if not isinstance(self.sensor, str):
            raise InvalidDetectionsError(
                "sensor", f"must be a string, got {type(self.sensor).__name__}"
            )

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.z.shape[0])

    @property
    def dim(self) -> int:
        return int(self.z.shape[1])

    def subset(self, index: ArrayLike) -> Detections:
        """The detections selected by a boolean mask or integer index."""
        idx = np.asarray(index)
        return Detections(
            z=self.z[idx],
            R=self.R[idx],
            scores=self.scores[idx],
            labels=self.labels[idx],
            t=self.t,
            sensor=self.sensor,
            space=self.space,
            range_rate=None if self.range_rate is None else self.range_rate[idx],
        )

    def with_time(self, t: float) -> Detections:
        """The same measurements stamped with another time."""
        return Detections(
            self.z, self.R, self.scores, self.labels, t, self.sensor, self.space, self.range_rate
        )

    def boxes_xyxy(self) -> FloatArray:
        """Boxes as (N, 4) [x1, y1, x2, y2]; only for ``space == 'box'``."""
        if self.space != "box":
            raise InvalidDetectionsError("space", "boxes_xyxy needs box detections")
        return z_to_xyxy(self.z)

    # ------------------------------------------------------------- builders
    @classmethod
    def empty(cls, t: float, sensor: str = "sensor", space: Space = "point") -> Detections:
        m = _Z_DIM[space]
        return cls(
            np.zeros((0, m)),
            np.zeros((0, m, m)),
            np.zeros(0),
            np.zeros(0, np.int64),
            t,
            sensor,
            space,
        )

    @classmethod
    def from_boxes(
        cls,
        boxes: ArrayLike,
        *,
        t: float,
        fmt: Literal["xyxy", "xywh"] = "xyxy",
        scores: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        sensor: str = "camera",
        sigma_px: float = 2.0,
        R: ArrayLike | None = None,
    ) -> Detections:
        """Image boxes → SORT measurements [u, v, s, r] with covariance from a pixel corner noise.

        ``sigma_px`` is the standard deviation of each box edge in pixels; it is propagated
        through the box → [u, v, s, r] Jacobian so R reflects the box's size. An explicit
        ``R`` ((4, 4) for all boxes, or (N, 4, 4)) replaces that model.
        """
        b = _as_float("boxes", boxes)
        if b.size == 0:
            return cls.empty(t, sensor, "box")
        if b.ndim != 2 or b.shape[1] != 4:
            raise InvalidDetectionsError("boxes", f"shape {b.shape}, expected (N, 4)")
        if not np.all(np.isfinite(b)):
            raise InvalidDetectionsError("boxes", "contains NaN or inf")
        xyxy = (
            b.copy()
            if fmt == "xyxy"
            else np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]])
        )
        if np.any(xyxy[:, 2] <= xyxy[:, 0]) or np.any(xyxy[:, 3] <= xyxy[:, 1]):
            raise InvalidDetectionsError("boxes", "non-positive width or height")
        z = xyxy_to_z(xyxy)
        n = len(z)
        w = xyxy[:, 2] - xyxy[:, 0]
        h = xyxy[:, 3] - xyxy[:, 1]
        # Jacobian of [u, v, s, r] w.r.t. [x1, y1, x2, y2]
        J = np.zeros((n, 4, 4))
        J[:, 0, 0] = J[:, 0, 2] = 0.5
        J[:, 1, 1] = J[:, 1, 3] = 0.5
        J[:, 2, 0], J[:, 2, 2] = -h, h
        J[:, 2, 1], J[:, 2, 3] = -w, w
        J[:, 3, 0], J[:, 3, 2] = -1.0 / h, 1.0 / h
        J[:, 3, 1], J[:, 3, 3] = w / h**2, -w / h**2
        if R is None:
            cov = (sigma_px**2) * np.einsum("nij,nkj->nik", J, J)
        else:
            cov = np.broadcast_to(_as_float("R", R), (n, 4, 4)).copy()
        return cls(z, cov, _scores(scores, n), _labels(labels, n), t, sensor, "box")

    @classmethod
    def from_points(
        cls,
        points: ArrayLike,
        *,
        t: float,
        sigma: float | ArrayLike = 0.5,
        scores: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        sensor: str = "sensor",
    ) -> Detections:
        """Positions (N, 2) with isotropic ``sigma`` (scalar or (N,)) or (N, 2, 2) covariance."""
        p = _as_float("points", points)
        if p.size == 0:
            return cls.empty(t, sensor, "point")
        if p.ndim != 2 or p.shape[1] != 2:
            raise InvalidDetectionsError("points", f"shape {p.shape}, expected (N, 2)")
        n = len(p)
        s = np.asarray(sigma, dtype=np.float64)
        if s.ndim == 3:
            R = s
        else:
            R = np.broadcast_to(s, (n,)).reshape(n, 1, 1) ** 2 * np.eye(2)
        return cls(p, R, _scores(scores, n), _labels(labels, n), t, sensor, "point")

    @classmethod
    def from_polar(
        cls,
        rng: ArrayLike,
        azimuth: ArrayLike,
        *,
        t: float,
        range_rate: ArrayLike | None = None,
        sigma_range: float = 0.3,
        sigma_azimuth: float = np.deg2rad(1.0),
        scores: ArrayLike | None = None,
        labels: ArrayLike | None = None,
        sensor: str = "radar",
    ) -> Detections:
        """Radar (range m, azimuth rad, CCW from x forward) → ground points, converted covariance.

        R = J diag(σr², σθ²) Jᵀ with J the Jacobian of (r cos θ, r sin θ).
        """
        r = _as_float("range", rng).reshape(-1)
        a = _as_float("azimuth", azimuth).reshape(-1)
        if r.shape != a.shape:
            raise InvalidDetectionsError("azimuth", f"shape {a.shape} differs from range {r.shape}")
        if r.size == 0:
            return cls.empty(t, sensor, "point")
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(a))):
            raise InvalidDetectionsError("range", "contains NaN or inf")
        if np.any(r < 0):
            raise InvalidDetectionsError("range", "negative range")
        n = r.size
        c, s = np.cos(a), np.sin(a)
        z = np.column_stack([r * c, r * s])
        J = np.empty((n, 2, 2))
        J[:, 0, 0], J[:, 0, 1] = c, -r * s
        J[:, 1, 0], J[:, 1, 1] = s, r * c
        D = np.diag([sigma_range**2, sigma_azimuth**2])
        R = J @ D @ np.swapaxes(J, 1, 2)
        rr = None if range_rate is None else _as_float("range_rate", range_rate).reshape(-1)
        return cls(z, R, _scores(scores, n), _labels(labels, n), t, sensor, "point", rr)


# ------------------------------------------------------------------ helpers
def xyxy_to_z(xyxy: FloatArray) -> FloatArray:
    """[x1, y1, x2, y2] → SORT measurement [u, v, s, r]."""
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    return np.column_stack([xyxy[:, 0] + 0.5 * w, xyxy[:, 1] + 0.5 * h, w * h, w / h])


def z_to_xyxy(z: FloatArray) -> FloatArray:
    """SORT measurement/state head [u, v, s, r] → [x1, y1, x2, y2] (s ≤ 0 → zero-size box)."""
    out: FloatArray = z_to_xyxy_kernel(np.asarray(z, dtype=np.float64))
    return out


def _as_float(name: str, a: object) -> FloatArray:
    """``a`` as a float64 array; complex, object or string input is rejected, not coerced."""
    try:
        raw = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise InvalidDetectionsError(name, f"not numeric ({type(a).__name__})") from exc
    if raw.dtype.kind not in "biuf":
        if raw.dtype.kind == "O" and raw.size:
            try:
                raw = np.asarray(raw.tolist(), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidDetectionsError(name, f"not numeric ({raw.dtype})") from exc
        elif raw.size or raw.dtype.kind not in "OUS":
            raise InvalidDetectionsError(name, f"not real numbers (dtype {raw.dtype})")
    try:
        return raw.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDetectionsError(name, f"not numeric ({type(a).__name__})") from exc


def _scores(scores: ArrayLike | None, n: int) -> FloatArray:
    return np.ones(n) if scores is None else _as_float("scores", scores).reshape(-1)


def _labels(labels: ArrayLike | None, n: int) -> IntArray:
    return np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels).reshape(-1)
