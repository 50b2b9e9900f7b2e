"""`Detections`: one sensor's measurements at one instant, as a validated structure of arrays.

Every channel hands the tracker and the safety layer the same type, whatever made it
(a detector on an image, a radar, a user's model), so nothing downstream needs to know how.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numba as nb
import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.errors import InvalidDetectionsError
from perception.kernels import F2, F3, IN1, IN2, IN3, compiled, fma, z_to_xyxy_kernel

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


_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)
_NO_ROWS = np.zeros(0)


@compiled(nb.boolean(IN2, IN3, IN1, IN1, nb.boolean))
def _rows_ok(z, R, scores, rr, box):
    """Every row check of Detections in one pass: z, R, scores (and range_rate when given) finite,
    scores in [0, 1], 2×2 R symmetric PSD (the closed form of ``_psd_ok``), box z[2:4] > 0."""
    n, m = z.shape
    tol = 1e-9
    for i in range(n):
        s = scores[i]
        if not (math.isfinite(s) and s >= 0.0 and s <= 1.0):
            return False
        for j in range(m):
            if not math.isfinite(z[i, j]):
                return False
            for k in range(m):
                if not math.isfinite(R[i, j, k]):
                    return False
        if box and not (z[i, 2] > 0.0 and z[i, 3] > 0.0):
            return False
        if m == 2:
            a, b, c, d = R[i, 0, 0], R[i, 0, 1], R[i, 1, 0], R[i, 1, 1]
            if not abs(b - c) <= tol * (1.0 + abs(b)):
                return False
            mm = 0.5 * (b + c)
            half_tr = 0.5 * (a + d)
            amd = a - d
            root = math.sqrt(max(0.25 * (amd * amd) + mm * mm, 0.0))
            low, high = half_tr - root, half_tr + root
            if not low >= -tol * max(1.0, max(abs(low), abs(high))):
                return False
    for i in range(rr.shape[0]):
        if not math.isfinite(rr[i]):
            return False
    return True


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
        if not self._validated_fast():
            self._validate()

    def _validated_fast(self) -> bool:
        """The common case in one pass: float64/integer C-contiguous arrays of the right shapes,
        checked by one compiled call. Anything else (or any failed check) returns False and
        :meth:`_validate` decides, raising the precise error; what is stored is the same."""
        z, R, scores, labels, rr = self.z, self.R, self.scores, self.labels, self.range_rate
        t = self.t
        m = _Z_DIM.get(self.space) if type(self.space) is str else None
        if not (
            m is not None
            and isinstance(t, (float, int))
            and type(self.sensor) is str
            and np.ndarray is type(z) is type(R) is type(scores) is type(labels)
            and _F64 == z.dtype == R.dtype == scores.dtype
            and labels.dtype.kind in "iub"
            and z.ndim == 2
            and z.shape[1] == m
        ):
            return False
        n = z.shape[0]
        if (
            R.shape != (n, m, m)
            or scores.shape != (n,)
            or labels.shape != (n,)
            or not (z.flags.c_contiguous and R.flags.c_contiguous and scores.flags.c_contiguous)
        ):
            return False
        if rr is None:
            rr_check = _NO_ROWS
        elif (
            type(rr) is not np.ndarray
            or rr.dtype != _F64
            or rr.shape != (n,)
            or not rr.flags.c_contiguous
        ):
            return False
        else:
            rr_check = rr
        t = float(t)
        if not math.isfinite(t) or not _rows_ok(z, R, scores, rr_check, m == 4):
            return False
        if m != 2 and not _psd_ok(R).all():
            return False
        # what _validate stores: z and R themselves, views of scores and range_rate, a copy of
        # the labels, all read-only
        scores = scores.view() if n else np.zeros(0)
        labels = labels.copy() if labels.dtype == _I64 else labels.astype(np.int64)
        if rr is not None:
            rr = rr.view()
            rr.setflags(write=False)
        for a in (z, R, scores, labels):
            a.setflags(write=False)
        self.__dict__.update(t=t, z=z, R=R, scores=scores, labels=labels, range_rate=rr)
        return True

    def _validate(self) -> None:
        """Full validation and normalisation, raising :class:`InvalidDetectionsError`."""
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
        z, R, status = polar_points(r, a, float(sigma_range) ** 2, float(sigma_azimuth) ** 2)
        if status == 1:
            raise InvalidDetectionsError("range", "contains NaN or inf")
        if status == 2:
            raise InvalidDetectionsError("range", "negative range")
        n = r.size
        rr = None if range_rate is None else _as_float("range_rate", range_rate).reshape(-1)
        return cls(z, R, _scores(scores, n), _labels(labels, n), t, sensor, "point", rr)


@nb.njit(cache=True, nogil=True)
def polar_row(r, a, var_r, var_a):  # pragma: no cover - compiled
    """One (r, θ) → (x, y) and R = J diag(var_r, var_a) Jᵀ as (r00, r01, r10, r11), J the
    Jacobian of the conversion; R's sums are the fused multiply-adds of the BLAS product
    ``J @ D @ Jᵀ`` it replaces, so the numbers are the same."""
    c = math.cos(a)
    s = math.sin(a)
    j00, j01, j10, j11 = c, -r * s, s, r * c
    # J D (D diagonal: the other product is an exact zero)
    d00, d01 = j00 * var_r + j01 * 0.0, j00 * 0.0 + j01 * var_a
    d10, d11 = j10 * var_r + j11 * 0.0, j10 * 0.0 + j11 * var_a
    return (r * c, r * s, fma(d01, j01, d00 * j00), fma(d01, j11, d00 * j10),
            fma(d11, j01, d10 * j00), fma(d11, j11, d10 * j10))


@compiled(nb.types.Tuple((F2, F3, nb.int64))(IN1, IN1, nb.float64, nb.float64))
def polar_points(r, a, var_r, var_a):
    """(r, θ) rows → z = (r cos θ, r sin θ) and R = J diag(σr², σθ²) Jᵀ (:func:`polar_row`),
    with status 0 (ok), 1 (a NaN/inf) or 2 (a negative range), in one pass."""
    n = r.shape[0]
    for i in range(n):
        if not (math.isfinite(r[i]) and math.isfinite(a[i])):
            return np.empty((0, 2)), np.empty((0, 2, 2)), 1
    for i in range(n):
        if r[i] < 0.0:
            return np.empty((0, 2)), np.empty((0, 2, 2)), 2
    z = np.empty((n, 2))
    R = np.empty((n, 2, 2))
    for i in range(n):
        z[i, 0], z[i, 1], R[i, 0, 0], R[i, 0, 1], R[i, 1, 0], R[i, 1, 1] = polar_row(
            r[i], a[i], var_r, var_a)
    return z, R, 0


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
