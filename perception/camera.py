"""Pinhole camera over a flat ground: projection, and image boxes ↔ ground points with covariance.

Frames. Ego ground frame: metres, x forward, y left, z up, ground plane z = 0. Camera frame
(OpenCV): X right, Y down, Z along the optical axis. With zero pitch and yaw the camera looks
along +x. Positive ``pitch_rad`` tilts it down towards the ground, positive ``yaw_rad`` turns it
left (counter-clockwise seen from above). Its centre sits at (``x_offset``, ``y_offset``,
``mount_height``) in the ego frame.

This is how a camera channel joins the safety layer's common frame: a box's bottom-centre (where
the object touches the ground) is back-projected onto z = 0, and the pixel noise is carried into
a ground covariance through the analytic Jacobian — far objects get the large covariance they
deserve, so cross-checks against radar are fair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.detections import Detections

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

__all__ = ["PinholeCamera"]

#: Rays must descend at least this much (ground-frame z of the unit-depth ray) to meet the ground.
_MIN_DESCENT = 1e-9

# Camera axes (X right, Y down, Z forward) in the vehicle body frame (x fwd, y left, z up).
_CAM_IN_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _points3(points: ArrayLike) -> FloatArray:
    p = np.asarray(points, dtype=np.float64)
    if p.size == 0:
        return np.zeros((0, 3))
    if p.ndim == 1:
        p = p.reshape(1, -1)
    if p.ndim != 2 or p.shape[1] not in (2, 3):
        raise ValueError(f"points must be (N, 2) or (N, 3), got shape {p.shape}")
    if p.shape[1] == 2:
        p = np.column_stack([p, np.zeros(len(p))])
    return p


def _per_row(value: ArrayLike, n: int, what: str) -> FloatArray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size == 1:
        return np.full(n, float(v[0]))
    if v.shape != (n,):
        raise ValueError(f"{what} must be a scalar or ({n},), got shape {v.shape}")
    return v


@dataclass(frozen=True)
class PinholeCamera:
    """A calibrated pinhole camera (no lens distortion) mounted on the ego vehicle over flat ground.

    Intrinsics ``fx, fy, cx, cy`` (pixels) and image ``width, height``; extrinsics
    ``mount_height`` (m above ground, > 0), ``pitch_rad`` (down positive), ``yaw_rad`` (left
    positive), ``x_offset`` / ``y_offset`` (m, forward / left). Points whose depth along the
    optical axis is below ``min_depth`` (m) count as behind the camera.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    mount_height: float
    pitch_rad: float = 0.0
    yaw_rad: float = 0.0
    x_offset: float = 0.0
    y_offset: float = 0.0
    min_depth: float = 0.1
    _C: FloatArray = field(init=False, repr=False, compare=False)  # camera → ground rotation

    def __post_init__(self) -> None:
        vals = (
            self.fx,
            self.fy,
            self.cx,
            self.cy,
            self.mount_height,
            self.pitch_rad,
            self.yaw_rad,
            self.x_offset,
            self.y_offset,
            self.min_depth,
        )
        if not all(math.isfinite(float(v)) for v in vals):
            raise ValueError("camera parameters must be finite")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError("focal lengths fx, fy must be positive")
        if self.width <= 0 or self.height <= 0:
            raise ValueError("image width and height must be positive")
        if self.mount_height <= 0:
            raise ValueError("mount_height must be positive (camera above the ground plane)")
        if self.min_depth <= 0:
            raise ValueError("min_depth must be positive")
        cy_, sy_ = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        cp, sp = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        rz = np.array([[cy_, -sy_, 0.0], [sy_, cy_, 0.0], [0.0, 0.0, 1.0]])
        ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])  # +pitch: x tips down
        object.__setattr__(self, "_C", rz @ ry @ _CAM_IN_BODY)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_fov(
        cls, width: int, height: int, hfov_deg: float, mount_height: float, **extrinsics: float
    ) -> PinholeCamera:
        """Square-pixel camera with principal point at the image centre and horizontal FOV."""
        if not 0.0 < hfov_deg < 180.0:
            raise ValueError("hfov_deg must lie in (0, 180)")
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(f, f, width / 2.0, height / 2.0, width, height, mount_height, **extrinsics)

    # ----------------------------------------------------------------- geometry
    @property
    def position(self) -> FloatArray:
        """Camera centre in the ego frame (3,)."""
        return np.array([self.x_offset, self.y_offset, self.mount_height])

    @property
    def rotation(self) -> FloatArray:
        """Rotation taking ego-frame vectors into the camera frame (3, 3)."""
        return self._C.T.copy()

    def to_camera(self, points: ArrayLike) -> FloatArray:
        """Ego-frame points (N, 2) on the ground or (N, 3) → camera-frame coordinates (N, 3)."""
        return (_points3(points) - self.position) @ self._C

    def project(self, points: ArrayLike) -> FloatArray:
        """Ego-frame points (N, 2) on the ground or (N, 3) → pixels (N, 2).

        Rows of points behind the camera (depth < ``min_depth``) are NaN — flagged, not dropped,
        so rows stay aligned with the input.
        """
        pc = self.to_camera(points)
        z = pc[:, 2]
        front = z >= self.min_depth
        zs = np.where(front, z, np.nan)
        return np.column_stack(
            [self.fx * pc[:, 0] / zs + self.cx, self.fy * pc[:, 1] / zs + self.cy]
        )

    def in_front(self, points: ArrayLike) -> BoolArray:
        """Mask of points at least ``min_depth`` in front of the camera."""
        return np.asarray(self.to_camera(points)[:, 2] >= self.min_depth)

    def visible(self, points: ArrayLike) -> BoolArray:
        """Mask of points in front of the camera whose projection falls inside the image."""
        uv = self.project(points)
        with np.errstate(invalid="ignore"):
            inside = (
                (uv[:, 0] >= 0)
                & (uv[:, 0] < self.width)
                & (uv[:, 1] >= 0)
                & (uv[:, 1] < self.height)
            )
        return np.asarray(inside & np.all(np.isfinite(uv), axis=1))

    def horizon_v(self, u: ArrayLike) -> FloatArray:
        """Image row of the horizon at columns ``u`` (pixels below it see the ground)."""
        uu = np.asarray(u, dtype=np.float64)
        c = self._C[2]  # ground z of camera axes
        # ray z = c0 (u-cx)/fx + c1 (v-cy)/fy + c2 = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.cy - self.fy * (c[0] * (uu - self.cx) / self.fx + c[2]) / c[1])

    def _rays(self, pixels: FloatArray) -> FloatArray:
        """Ego-frame directions (N, 3) of the rays through ``pixels`` (unit depth in the camera)."""
        ray_c = np.column_stack(
            [
                (pixels[:, 0] - self.cx) / self.fx,
                (pixels[:, 1] - self.cy) / self.fy,
                np.ones(len(pixels)),
            ]
        )
        return ray_c @ self._C.T

    def ground_hit(self, pixels: ArrayLike) -> BoolArray:
        """Mask of pixels whose ray meets the ground in front of the camera (below the horizon)."""
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        return np.asarray(self._rays(px)[:, 2] < -_MIN_DESCENT)

    def pixel_to_ground(
        self, pixels: ArrayLike, cov_px: ArrayLike | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Back-project pixels (N, 2) onto the ground: points (N, 2) and covariances (N, 2, 2).

        ``cov_px`` is (N, 2, 2) or (2, 2) pixel covariance (default identity). Pixels at or above
        the horizon never meet the ground: their rows are NaN (flagged, rows stay aligned).
        Covariance is ``J cov_px Jᵀ`` with J the analytic Jacobian ∂(x, y)/∂(u, v).
        """
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        n = len(px)
        a = self._rays(px)  # (N, 3)
        hit = a[:, 2] < -_MIN_DESCENT
        az = np.where(hit, a[:, 2], np.nan)
        h = self.mount_height
        lam = -h / az
        pts = self.position[:2] + lam[:, None] * a[:, :2]
        E = self._C[:, :2] / np.array([self.fx, self.fy])  # ∂ray/∂(u, v), (3, 2)
        # ∂(h a_i / a_z)/∂q_j = h (E_ij a_z - a_i E_zj) / a_z², with p_i = t_i - h a_i / a_z
        J = (
            -h
            * (az[:, None, None] * E[None, :2, :] - a[:, :2, None] * E[None, 2:3, :])
            / (az**2)[:, None, None]
        )
        if cov_px is None:
            S = np.broadcast_to(np.eye(2), (n, 2, 2))
        else:
            S = np.broadcast_to(np.asarray(cov_px, dtype=np.float64), (n, 2, 2))
        cov = J @ S @ np.swapaxes(J, 1, 2)
        return pts, 0.5 * (cov + np.swapaxes(cov, 1, 2))

    def box_to_ground(
        self, boxes_xyxy: ArrayLike, sigma_px: float | ArrayLike = 2.0
    ) -> tuple[FloatArray, FloatArray]:
        """Each box's bottom-centre back-projected onto the ground: points (N, 2), cov (N, 2, 2).

        ``sigma_px`` (scalar or (N,)) is the standard deviation of each box edge, as in
        :meth:`Detections.from_boxes`: the bottom-centre (x1+x2)/2 gets σ²/2, the bottom edge σ².
        Boxes whose bottom edge is at or above the horizon give NaN rows.
        """
        b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        n = len(b)
        s2 = _per_row(sigma_px, n, "sigma_px") ** 2
        bottom = np.column_stack([0.5 * (b[:, 0] + b[:, 2]), b[:, 3]])
        S = np.zeros((n, 2, 2))
        S[:, 0, 0] = 0.5 * s2
        S[:, 1, 1] = s2
        return self.pixel_to_ground(bottom, S)

    def ground_to_box(
        self, points: ArrayLike, width_m: float | ArrayLike, height_m: float | ArrayLike
    ) -> FloatArray:
        """Boxes xyxy (N, 4) of upright objects ``width_m`` wide and ``height_m`` tall standing at
        ground points (N, 2): bottom-centre at the point's projection, top at the projection of
        the point raised by ``height_m``, width ``fx · width_m / depth``. Rows whose foot or top
        is behind the camera are NaN (flagged; rows stay aligned).
        """
        p = _points3(points)[:, :2]
        n = len(p)
        w = _per_row(width_m, n, "width_m")
        hm = _per_row(height_m, n, "height_m")
        foot = self.project(p)
        top = self.project(np.column_stack([p, hm]))
        depth = self.to_camera(p)[:, 2]
        depth = np.where(depth >= self.min_depth, depth, np.nan)
        half = 0.5 * self.fx * w / depth
        return np.column_stack([foot[:, 0] - half, top[:, 1], foot[:, 0] + half, foot[:, 1]])

    # ----------------------------------------------------------------- detections
    def detections_to_ground_with_mask(
        self, dets: Detections, *, max_range: float = math.inf
    ) -> tuple[Detections, BoolArray]:
        """Box Detections → ground point Detections, and the mask of input rows kept.

        Bottom-centre pixel = (u, v + h/2) with h = √(s/r) from each row's [u, v, s, r]; its
        covariance G R Gᵀ (G = ∂bottom/∂[u, v, s, r]) is carried to the ground through the
        back-projection Jacobian. Rows whose bottom-centre is at/above the horizon, or farther
        than ``max_range`` metres from the camera, are DROPPED (the mask says which).
        """
        if dets.space != "box":
            raise ValueError(f"detections_to_ground needs box detections, got space {dets.space!r}")
        z, R = dets.z, dets.R
        n = len(dets)
        u, v, s, r = z[:, 0], z[:, 1], z[:, 2], z[:, 3]
        h = np.sqrt(s / r)
        bottom = np.column_stack([u, v + 0.5 * h])
        G = np.zeros((n, 2, 4))
        G[:, 0, 0] = 1.0
        G[:, 1, 1] = 1.0
        G[:, 1, 2] = 1.0 / (4.0 * r * h)  # ½ ∂h/∂s
        G[:, 1, 3] = -h / (4.0 * r)  # ½ ∂h/∂r
        S = G @ R @ np.swapaxes(G, 1, 2)
        pts, cov = self.pixel_to_ground(bottom, S)
        ok = np.all(np.isfinite(pts), axis=1) & np.all(np.isfinite(cov), axis=(1, 2))
        if math.isfinite(max_range):
            rng = np.hypot(pts[:, 0] - self.x_offset, pts[:, 1] - self.y_offset)
            with np.errstate(invalid="ignore"):
                ok &= rng <= max_range
        out = Detections(
            z=pts[ok],
            R=cov[ok],
            scores=dets.scores[ok],
            labels=dets.labels[ok],
            t=dets.t,
            sensor=dets.sensor,
            space="point",
            range_rate=None if dets.range_rate is None else dets.range_rate[ok],
        )
        return out, ok

    def detections_to_ground(self, dets: Detections, *, max_range: float = math.inf) -> Detections:
        """Box Detections → ground point Detections (same scores/labels/t/sensor).

        Rows that cannot be placed on the ground (bottom-centre at/above the horizon) or lie
        beyond ``max_range`` are dropped; use :meth:`detections_to_ground_with_mask` to see which.
        """
        return self.detections_to_ground_with_mask(dets, max_range=max_range)[0]
