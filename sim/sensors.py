"""Sensor models: what each real channel would hand the supervisor, given the ground truth.

* :class:`CameraSensor` — measurement level: ground-plane points (or image boxes) as a camera
  pipeline would report them: noise growing with range, field of view, occlusion by nearer
  actors, detection probability, scores falling with range and occlusion.
* :class:`FrameCamera` — frame level: renders a BGR frame (``sim.render``) to be passed through
  a real OpenCV detector (:func:`build_detector` builds one that finds rendered actors).
* :class:`RadarSensor` — range / azimuth / range-rate with clutter (Poisson false alarms).

Each sensor is ``measure(t, truth, rng)``; the rng is the sensor's own stream
(``sim.rng.generator(root, "sensor", channel)``), and every call draws the same number of
variates per actor whatever is detected, so a sensor's draws never depend on another's.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Protocol

import numba as nb
import numpy as np
from numpy.random import Generator
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from perception.detections import Detections, polar_points, polar_row
from perception.kernels import F1, F2, F3, IIN1, IN1, IN2, compiled, pairwise_sum
from safety.channels import FieldOfView
from sim.render import RenderConfig, render_frame
from sim.world import KINDS, Truth

__all__ = [
    "CameraConfig",
    "CameraIntrinsics",
    "CameraSensor",
    "FrameCamera",
    "FrameCameraConfig",
    "RadarConfig",
    "RadarSensor",
    "Sensor",
    "SensorConfig",
    "build_detector",
    "make_sensor",
    "occlusion_fraction",
    "polar_covariance",
]

FloatArray = NDArray[np.float64]


class CameraIntrinsics(BaseModel):
    """Intrinsics and mounting of a camera (builds a ``perception.camera.PinholeCamera``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fx: float = Field(default=500.0, gt=0)
    fy: float = Field(default=500.0, gt=0)
    cx: float = 320.0
    cy: float = 240.0
    width: int = Field(default=640, ge=8)
    height: int = Field(default=480, ge=8)
    mount_height: float = Field(default=1.4, gt=0)
    pitch_deg: float = 0.0

    def build(self) -> Any:
        """The matching ``PinholeCamera``."""
        from perception.camera import PinholeCamera

        return PinholeCamera(
            fx=self.fx,
            fy=self.fy,
            cx=self.cx,
            cy=self.cy,
            width=self.width,
            height=self.height,
            mount_height=self.mount_height,
            pitch_rad=math.radians(self.pitch_deg),
        )


class _SensorBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(min_length=1)
    rate_hz: float = Field(default=10.0, gt=0)
    fov: FieldOfView = Field(default_factory=FieldOfView)


class CameraConfig(_SensorBase):
    """Measurement-level camera: point (ground, m) or box (image, px) detections.

    Range noise σ_r = ``sigma_range`` + ``sigma_range_growth``·r² (monocular depth degrades
    quadratically), bearing noise ``sigma_azimuth_deg``. Detection probability falls linearly
    from ``p_detect`` at 0 m to ``p_detect_far`` at the FOV's range_max, times (1 − occlusion);
    actors hidden more than ``max_occlusion`` are never detected.
    """

    kind: Literal["camera"] = "camera"
    output: Literal["point", "box"] = "point"
    sigma_range: float = Field(default=0.2, ge=0)
    sigma_range_growth: float = Field(default=5e-4, ge=0)
    sigma_azimuth_deg: float = Field(default=0.3, ge=0)
    sigma_px: float = Field(default=2.0, gt=0)  # box output: per-edge pixel noise
    p_detect: float = Field(default=0.98, ge=0, le=1)
    p_detect_far: float = Field(default=0.85, ge=0, le=1)
    max_occlusion: float = Field(default=0.7, ge=0, le=1)
    score: float = Field(default=0.9, ge=0, le=1)  # score of a close, unoccluded actor
    score_range_drop: float = Field(default=0.3, ge=0)  # lost at range_max
    score_occlusion_drop: float = Field(default=0.4, ge=0)  # lost when fully occluded
    score_noise: float = Field(default=0.03, ge=0)
    intrinsics: CameraIntrinsics = Field(default_factory=CameraIntrinsics)


class FrameCameraConfig(_SensorBase):
    """Frame-level camera: rendered BGR frames for a real OpenCV detector.

    ``detector`` names the detector :func:`build_detector` makes for it. ``source`` (optional)
    names another camera_frames channel whose frame this channel reuses (a second detector on
    the same camera).
    """

    kind: Literal["camera_frames"] = "camera_frames"
    intrinsics: CameraIntrinsics = Field(default_factory=CameraIntrinsics)
    render: RenderConfig = Field(default_factory=RenderConfig)
    detector: Literal["color_blob", "background_subtraction"] = "color_blob"
    min_area_px: float = Field(default=30.0, ge=0)
    # per-edge pixel noise the detector declares. Its boxes have integer edges on sharp rendered
    # silhouettes: the error is quantisation only; 0.25 px is what the windowed NIS of nominal
    # runs calibrates to (the detector's own 2 px default made every tracker far too pessimistic)
    sigma_px: float = Field(default=0.25, gt=0)
    source: str | None = None


class RadarConfig(_SensorBase):
    """Radar: noisy range, azimuth and range-rate; ``clutter_rate`` false alarms per scan (Poisson).

    ``occlusion`` makes nearer actors hide farther ones (off by default: radar sees under cars).
    """

    kind: Literal["radar"] = "radar"
    sigma_range: float = Field(default=0.25, ge=0)
    sigma_azimuth_deg: float = Field(default=1.0, ge=0)
    sigma_range_rate: float = Field(default=0.2, ge=0)
    p_detect: float = Field(default=0.95, ge=0, le=1)
    clutter_rate: float = Field(default=0.5, ge=0)
    clutter_score: tuple[float, float] = (0.1, 0.5)
    score: float = Field(default=0.85, ge=0, le=1)
    score_noise: float = Field(default=0.05, ge=0)
    occlusion: bool = False
    max_occlusion: float = Field(default=0.9, ge=0, le=1)
    classify: bool = True  # labels = actor kinds (else 0)


SensorConfig = Annotated[
    CameraConfig | FrameCameraConfig | RadarConfig, Field(discriminator="kind")
]


class Sensor(Protocol):
    """A simulated channel source."""

    channel: str

    def measure(
        self, t: float, truth: Truth, rng: Generator
    ) -> Detections | NDArray[Any] | None: ...

    def due(self, t: float) -> bool: ...


# ----------------------------------------------------------------------------- geometry helpers
def occlusion_fraction(positions: FloatArray, sizes: FloatArray) -> FloatArray:
    """Fraction (0..1) of each actor's angular extent hidden by nearer actors (ego at origin).

    The extent is the footprint's width across the line of sight; overlaps with all nearer
    actors in front of the sensor are summed (an upper bound of their union) and capped at 1.
    Actors behind the sensor (x <= 0) neither occlude nor are occluded.
    """
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    if n == 0:
        return np.zeros(0)
    r = np.hypot(p[:, 0], p[:, 1])
    az = np.arctan2(p[:, 1], p[:, 0])
    across = 0.5 * (s[:, 1] * np.abs(np.cos(az)) + s[:, 0] * np.abs(np.sin(az)))
    half = np.arctan2(across, np.maximum(r, 1e-6))
    lo, hi = az - half, az + half
    overlap = np.maximum(
        0.0, np.minimum(hi[:, None], hi[None, :]) - np.maximum(lo[:, None], lo[None, :])
    )
    front = p[:, 0] > 0.0
    nearer = (r[None, :] < r[:, None]) & front[None, :] & front[:, None]
    frac = (overlap * nearer).sum(axis=1) / np.maximum(hi - lo, 1e-12)
    return np.clip(frac, 0.0, 1.0)


def polar_covariance(
    r: FloatArray, az: FloatArray, sigma_r: FloatArray, sigma_az: FloatArray
) -> FloatArray:
    """(N, 2, 2) Cartesian covariance of (r cos θ, r sin θ) for per-row polar sigmas."""
    c, s = np.cos(az), np.sin(az)
    J = np.empty((len(r), 2, 2))
    J[:, 0, 0], J[:, 0, 1] = c, -r * s
    J[:, 1, 0], J[:, 1, 1] = s, r * c
    D = np.zeros((len(r), 2, 2))
    D[:, 0, 0] = np.asarray(sigma_r) ** 2
    D[:, 1, 1] = np.asarray(sigma_az) ** 2
    R = J @ D @ np.swapaxes(J, 1, 2)
    return 0.5 * (R + np.swapaxes(R, 1, 2))


def _in_fov(fov: FieldOfView, positions: FloatArray) -> NDArray[np.bool_]:
    return fov.contains(positions)


def _sector(fov: FieldOfView) -> FloatArray | None:
    """(range_min, range_max, azimuth_min_deg, azimuth_max_deg) of a ground sector, for the
    compiled sensor paths (``FieldOfView.contains`` with no margin); None for an image FOV."""
    if fov.image_width is not None and fov.image_height is not None:
        return None
    return np.array([fov.range_min, fov.range_max, fov.azimuth_min_deg, fov.azimuth_max_deg],
                    dtype=np.float64)


@compiled(nb.types.Tuple((F1, F1, F1))(IN2, IN2, IN1))
def _sight_extent(pos, sizes, az):
    """Range of each actor, its footprint's half-width across the line of sight and the range
    floored at 1e-6 (occlusion_fraction's half-extent is numpy's arctan2 of the last two)."""
    n = pos.shape[0]
    r = np.empty(n)
    across = np.empty(n)
    rden = np.empty(n)
    for i in range(n):
        r[i] = math.hypot(pos[i, 0], pos[i, 1])
        across[i] = 0.5 * (sizes[i, 1] * abs(math.cos(az[i])) + sizes[i, 0] * abs(math.sin(az[i])))
        rden[i] = max(r[i], 1e-6)
    return r, across, rden


@compiled(F1(IN2, IN1, IN1, IN1))
def _occlusion(pos, r, az, half):
    """occlusion_fraction from ranges, bearings and angular half-extents: overlaps with nearer
    actors in front summed per row (numpy's pairwise order), over the extent, clipped to [0, 1]."""
    n = pos.shape[0]
    row = np.empty(n)
    frac = np.empty(n)
    for i in range(n):
        lo_i, hi_i = az[i] - half[i], az[i] + half[i]
        for j in range(n):
            lo_j, hi_j = az[j] - half[j], az[j] + half[j]
            ov = max(0.0, min(hi_i, hi_j) - max(lo_i, lo_j))
            near = r[j] < r[i] and pos[j, 0] > 0.0 and pos[i, 0] > 0.0
            row[j] = ov * (1.0 if near else 0.0)
        f = pairwise_sum(row, 0, n) / max(hi_i - lo_i, 1e-12)
        frac[i] = min(max(f, 0.0), 1.0)
    return frac


@compiled(F2(IN2, IN2, IN1))
def _sight_terms(pos, sizes, az):
    """_sight_extent's footprint half-width across the line of sight (row 0) and floored range
    (row 1) in one array: their numpy arctan2 is each actor's angular half-extent."""
    n = pos.shape[0]
    out = np.empty((2, n))
    for i in range(n):
        out[0, i] = 0.5 * (sizes[i, 1] * abs(math.cos(az[i])) + sizes[i, 0] * abs(math.sin(az[i])))
        out[1, i] = max(math.hypot(pos[i, 0], pos[i, 1]), 1e-6)
    return out


@compiled(
    nb.types.Tuple((F2, F3, F1, nb.int64[::1]))(IN2, IN1, IN1, IN1, IN1, IIN1, IN1)
)
def _camera_points(pos, az, half, u, ns, kinds, p):
    """CameraSensor.measure (point output) after the draws: occlusion, detection, score, polar
    noise and the detected rows' z, R (polar_covariance + 1e-9 I, its matmul sums as fused
    multiply-adds) and labels. ``ns`` holds the normal draws ((n, 2) range/bearing noise, then
    (n,) score noise, flat); ``p`` the config numbers in the order unpacked below, then the
    sector (range_min, range_max, azimuth_min_deg, azimuth_max_deg)."""
    n = pos.shape[0]
    r = np.empty(n)
    for i in range(n):
        r[i] = math.hypot(pos[i, 0], pos[i, 1])
    occ = _occlusion(pos, r, az, half)
    (p_detect, dp_far, max_occ, score0, drop_r, drop_occ, score_noise, sig_r, growth,
     sig_a) = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
    rmin, rmax, amin, amax = p[10], p[11], p[12], p[13]
    det = np.zeros(n, np.bool_)
    score = np.empty(n)
    rn = np.empty(n)
    an = np.empty(n)
    sr = np.empty(n)
    k = 0
    for i in range(n):
        frac_r = min(max(r[i] / rmax, 0.0), 1.0)
        pd = (p_detect + dp_far * frac_r) * (1.0 - occ[i])
        if occ[i] > max_occ:
            pd = 0.0
        az_deg = az[i] * (180.0 / math.pi)
        inside = r[i] >= rmin and r[i] <= rmax and az_deg >= amin and az_deg <= amax
        det[i] = inside and u[i] < pd
        sc = score0 - drop_r * frac_r - drop_occ * occ[i]
        score[i] = min(max(sc + score_noise * ns[2 * n + i], 0.01), 1.0)
        sr[i] = sig_r + growth * (r[i] * r[i])
        rn[i] = max(r[i] + sr[i] * ns[2 * i], 0.0)
        an[i] = az[i] + sig_a * ns[2 * i + 1]
        if det[i]:
            k += 1
    z = np.empty((k, 2))
    R = np.empty((k, 2, 2))
    sc_out = np.empty(k)
    lab = np.empty(k, np.int64)
    m = 0
    var_a = sig_a * sig_a
    for i in range(n):
        if not det[i]:
            continue
        z[m, 0], z[m, 1], r00, r01, r10, r11 = polar_row(rn[i], an[i], sr[i] * sr[i], var_a)
        R[m, 0, 0] = 0.5 * (r00 + r00) + 1e-9
        R[m, 0, 1] = 0.5 * (r01 + r10) + 0.0
        R[m, 1, 0] = 0.5 * (r10 + r01) + 0.0
        R[m, 1, 1] = 0.5 * (r11 + r11) + 1e-9
        sc_out[m] = score[i]
        lab[m] = kinds[i]
        m += 1
    return z, R, sc_out, lab


@nb.njit(cache=True, nogil=True)
def _radar_polar(pos, vel, az, u, ns, cu, kinds, speed, p):  # pragma: no cover - compiled
    """RadarSensor.measure (without occlusion) after the draws: the detected actors' noisy range,
    azimuth, range rate, score and label, then the clutter rows. ``ns`` holds the normal draws
    ((n, 3) noise, then (n,) score noise, flat); ``p`` the config numbers in the order unpacked
    below, then the sector (range_min, range_max, azimuth_min_deg, azimuth_max_deg), then
    ``classify`` (1.0 or 0.0)."""
    n = pos.shape[0]
    nc = cu.shape[0]
    p_detect, sig_r, sig_a, sig_rr, score0, score_noise, c_lo, c_hi = (
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    )
    rmin, rmax, amin, amax = p[10], p[11], p[12], p[13]
    classify = p[14] != 0.0
    det = np.zeros(n, np.bool_)
    k = 0
    for i in range(n):
        r = math.hypot(pos[i, 0], pos[i, 1])
        az_deg = az[i] * (180.0 / math.pi)
        inside = r >= rmin and r <= rmax and az_deg >= amin and az_deg <= amax
        det[i] = inside and u[i] < p_detect
        if det[i]:
            k += 1
    rn = np.empty(k + nc)
    an = np.empty(k + nc)
    rrn = np.empty(k + nc)
    sc = np.empty(k + nc)
    lab = np.zeros(k + nc, np.int64)
    m = 0
    for i in range(n):
        if not det[i]:
            continue
        r = math.hypot(pos[i, 0], pos[i, 1])
        rr = (pos[i, 0] * vel[i, 0] + pos[i, 1] * vel[i, 1]) / max(r, 1e-9)
        rn[m] = max(r + sig_r * ns[3 * i], 0.0)
        an[m] = az[i] + sig_a * ns[3 * i + 1]
        rrn[m] = rr + sig_rr * ns[3 * i + 2]
        sc[m] = min(max(score0 + score_noise * ns[3 * n + i], 0.01), 1.0)
        if classify:
            lab[m] = kinds[i]
        m += 1
    for j in range(nc):
        ca = (amin + (amax - amin) * cu[j, 1]) * (math.pi / 180.0)
        rn[m] = rmin + (rmax - rmin) * cu[j, 0]
        an[m] = ca
        rrn[m] = -speed * math.cos(ca) + sig_rr * (2.0 * cu[j, 2] - 1.0)
        sc[m] = c_lo + (c_hi - c_lo) * cu[j, 3]
        m += 1
    return rn, an, rrn, sc, lab


_RADAR_ARGS = (IN2, IN2, IN1, IN1, IN1, IN2, IIN1, nb.float64, IN1)


@compiled(nb.types.Tuple((F2, F3, F1, nb.int64[::1], F1, nb.int64))(*_RADAR_ARGS))
def _radar_rows(pos, vel, az, u, ns, cu, kinds, speed, p):
    """:func:`_radar_polar`'s rows converted as Detections.from_polar does (z, R and its
    status, :func:`polar_points`), with their scores, labels and range rates."""
    rn, an, rrn, sc, lab = _radar_polar(pos, vel, az, u, ns, cu, kinds, speed, p)
    z, R, status = polar_points(rn, an, p[8], p[9])
    return z, R, sc, lab, rrn, status


@compiled(nb.types.Tuple((F1, F1, F1, F1, nb.int64[::1]))(*_RADAR_ARGS))
def _radar_polar_rows(pos, vel, az, u, ns, cu, kinds, speed, p):
    """:func:`_radar_polar` for the rare rows ``_radar_rows`` cannot convert (from_polar then
    raises its own error)."""
    return _radar_polar(pos, vel, az, u, ns, cu, kinds, speed, p)


class _Rate:
    """Fires on the grid k / rate_hz (k = 0, 1, ...): the first call at or after each tick."""

    def __init__(self, rate_hz: float) -> None:
        self.rate = float(rate_hz)
        self._next = 0.0

    def due(self, t: float) -> bool:
        if t + 1e-9 < self._next:
            return False
        self._next = (math.floor(t * self.rate + 1e-6) + 1) / self.rate
        return True


# ------------------------------------------------------------------ camera (measurements)
class CameraSensor:
    """Measurement-level camera; see :class:`CameraConfig`."""

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self.channel = cfg.channel
        self._rate = _Rate(cfg.rate_hz)
        self._camera: Any = cfg.intrinsics.build() if cfg.output == "box" else None
        # the compiled point path's constants (None: box output or an image-rectangle FOV)
        self._fov = _sector(cfg.fov)
        self._params: FloatArray | None = None
        if cfg.output == "point" and self._fov is not None:
            self._params = np.array([
                cfg.p_detect, cfg.p_detect_far - cfg.p_detect, cfg.max_occlusion, cfg.score,
                cfg.score_range_drop, cfg.score_occlusion_drop, cfg.score_noise, cfg.sigma_range,
                cfg.sigma_range_growth, math.radians(cfg.sigma_azimuth_deg), *self._fov,
            ])

    def due(self, t: float) -> bool:
        """Whether a measurement is due at ``t`` (rate_hz grid)."""
        return self._rate.due(t)

    def measure(self, t: float, truth: Truth, rng: Generator) -> Detections:
        """One frame's detections of ``truth``."""
        n = len(truth)
        # fixed number of draws per actor: detection, 2 noise, score noise (the normal draws
        # in one call: (n, 2) noise then (n,) score noise, the same variates in the same order)
        u = rng.random(n)
        ns = rng.standard_normal(3 * n)
        params = self._params
        if params is None:
            return self._measure_numpy(t, truth, u, ns[: 2 * n].reshape(n, 2), ns[2 * n :])
        pos = truth.positions
        az = truth.bearings()
        ext = _sight_terms(pos, truth.sizes, az)
        z, R, score, labels = _camera_points(
            pos, az, np.arctan2(ext[0], ext[1]), u, ns, truth.kinds, params
        )
        return Detections(z, R, score, labels, t, self.channel, "point")

    def _measure_numpy(
        self, t: float, truth: Truth, u: FloatArray, noise: FloatArray, snoise: FloatArray
    ) -> Detections:
        """measure() after the draws, for box output and image-rectangle fields of view."""
        cfg = self.cfg
        n = len(truth)
        pos = truth.positions
        r, az = truth.ranges, truth.azimuths
        occ = occlusion_fraction(pos, truth.sizes)
        rmax = cfg.fov.range_max
        frac_r = np.clip(r / rmax, 0.0, 1.0)
        pd = (cfg.p_detect + (cfg.p_detect_far - cfg.p_detect) * frac_r) * (1.0 - occ)
        pd = np.where(occ > cfg.max_occlusion, 0.0, pd)
        detected = _in_fov(cfg.fov, pos) & (u < pd)
        score = cfg.score - cfg.score_range_drop * frac_r - cfg.score_occlusion_drop * occ
        score = np.clip(score + cfg.score_noise * snoise, 0.01, 1.0)
        labels = truth.kinds
        if cfg.output == "box":
            return self._boxes(t, truth, detected, noise, score)
        sr = cfg.sigma_range + cfg.sigma_range_growth * r**2
        sa = np.full(n, math.radians(cfg.sigma_azimuth_deg))
        rn = np.maximum(r + sr * noise[:, 0], 0.0)
        an = az + sa * noise[:, 1]
        d = detected
        z = np.column_stack([rn * np.cos(an), rn * np.sin(an)])[d]
        R = polar_covariance(rn[d], an[d], sr[d], sa[d])
        R += np.eye(2) * 1e-9
        return Detections(z, R, score[d], labels[d], t, self.channel, "point")

    def _boxes(
        self,
        t: float,
        truth: Truth,
        detected: NDArray[np.bool_],
        noise: FloatArray,
        score: FloatArray,
    ) -> Detections:
        cam = self._camera
        cfg = self.cfg
        pos = truth.positions
        az = truth.azimuths
        across = truth.sizes[:, 1] * np.abs(np.cos(az)) + truth.sizes[:, 0] * np.abs(np.sin(az))
        front = pos[:, 0] > 0.1
        d = detected & front
        if not np.any(d):
            return Detections.empty(t, self.channel, "box")
        boxes = np.asarray(cam.ground_to_box(pos[d], across[d], truth.heights[d]), dtype=np.float64)
        boxes = boxes.reshape(-1, 4).copy()
        # shift by the drawn noise (centre) — the same two variates per actor as the point output
        boxes[:, [0, 2]] += (cfg.sigma_px * noise[d, 0])[:, None]
        boxes[:, [1, 3]] += (cfg.sigma_px * noise[d, 1])[:, None]
        w, h = cfg.intrinsics.width, cfg.intrinsics.height
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, h)
        ok = (boxes[:, 2] - boxes[:, 0] >= 1.0) & (boxes[:, 3] - boxes[:, 1] >= 1.0)
        return Detections.from_boxes(
            boxes[ok],
            t=t,
            scores=score[d][ok],
            labels=truth.kinds[d][ok],
            sensor=self.channel,
            sigma_px=cfg.sigma_px,
        )


# ----------------------------------------------------------------------------- camera (frames)
class FrameCamera:
    """Frame-level camera: ``measure`` returns a rendered BGR uint8 frame (see ``sim.render``)."""

    def __init__(self, cfg: FrameCameraConfig) -> None:
        self.cfg = cfg
        self.channel = cfg.channel
        self.camera: Any = cfg.intrinsics.build()
        self._rate = _Rate(cfg.rate_hz)

    def due(self, t: float) -> bool:
        """Whether a frame is due at ``t`` (rate_hz grid)."""
        return self._rate.due(t)

    def measure(self, t: float, truth: Truth, rng: Generator) -> NDArray[np.uint8]:
        """Render the frame the camera sees at ``t``."""
        return render_frame(truth, self.camera, self.cfg.render, rng)

    def project_truth(self, truth: Truth) -> tuple[FloatArray, NDArray[np.bool_]]:
        """Projected actor boxes (N, 4) xyxy and a mask of those in front of the camera."""
        from sim.render import actor_boxes

        return actor_boxes(truth, self.camera)


def build_detector(cfg: FrameCameraConfig, *, name: str | None = None) -> Any:
    """The OpenCV detector that finds actors rendered with ``cfg.render`` (a ``Detector``)."""
    from perception.detectors import BackgroundSubtractionDetector, ColorBlobDetector

    if cfg.detector == "color_blob":
        lo, hi = cfg.render.actor_hsv_range()
        return ColorBlobDetector(
            lo,
            hi,
            min_area=cfg.min_area_px,
            kernel_size=3,
            sigma_px=cfg.sigma_px,
            name=name or f"{cfg.channel}.color_blob",
            sensor=cfg.channel,
        )
    return BackgroundSubtractionDetector(
        history=200,
        var_threshold=25.0,
        detect_shadows=False,
        min_area=cfg.min_area_px,
        name=name or f"{cfg.channel}.mog2",
        sensor=cfg.channel,
    )


# ----------------------------------------------------------------------------- radar
class RadarSensor:
    """Radar; see :class:`RadarConfig`. Emits point Detections with ``range_rate``."""

    def __init__(self, cfg: RadarConfig) -> None:
        self.cfg = cfg
        self.channel = cfg.channel
        self._rate = _Rate(cfg.rate_hz)
        # the compiled path's constants (None: occlusion on, or an image-rectangle FOV)
        self._fov = _sector(cfg.fov)
        self._params: FloatArray | None = None
        if not cfg.occlusion and self._fov is not None:
            lo, hi = cfg.clutter_score
            sa = math.radians(cfg.sigma_azimuth_deg)
            self._params = np.array([
                cfg.p_detect, cfg.sigma_range, sa, cfg.sigma_range_rate, cfg.score,
                cfg.score_noise, lo, hi,
                # from_polar's variances, as it squares the sigmas the radar hands it
                float(max(cfg.sigma_range, 1e-3)) ** 2, float(max(sa, 1e-5)) ** 2,
                *self._fov, 1.0 if cfg.classify else 0.0,
            ])

    def due(self, t: float) -> bool:
        """Whether a scan is due at ``t`` (rate_hz grid)."""
        return self._rate.due(t)

    def measure(self, t: float, truth: Truth, rng: Generator) -> Detections:
        """One scan: detections of actors in the FOV plus clutter."""
        cfg = self.cfg
        n = len(truth)
        u = rng.random(n)
        # the normal draws in one call: (n, 3) noise then (n,) score noise, in that order
        ns = rng.standard_normal(4 * n)
        n_clutter = int(rng.poisson(cfg.clutter_rate))
        cu = rng.random((n_clutter, 4))
        params = self._params
        if params is not None:
            pos = truth.positions
            args = (pos, truth.velocities, truth.bearings(), u, ns, cu, truth.kinds,
                    float(truth.speed), params)
            z, R, scores, labels, rrn, status = _radar_rows(*args)
            if status == 0:
                if z.shape[0]:
                    return Detections(z, R, scores, labels, t, self.channel, "point", rrn)
                return Detections.empty(t, self.channel, "point")  # what from_polar makes of it
            rn, an, rrn, scores, labels = _radar_polar_rows(*args)
            sa = math.radians(cfg.sigma_azimuth_deg)
            return Detections.from_polar(
                rn, an, t=t, range_rate=rrn, sigma_range=max(cfg.sigma_range, 1e-3),
                sigma_azimuth=max(sa, 1e-5), scores=scores, labels=labels, sensor=self.channel,
            )
        noise = ns[: 3 * n].reshape(n, 3)
        snoise = ns[3 * n :]
        sa = math.radians(cfg.sigma_azimuth_deg)
        pos = truth.positions
        r, az, rr = truth.ranges, truth.azimuths, truth.range_rates
        pd = np.full(n, cfg.p_detect)
        if cfg.occlusion:
            occ = occlusion_fraction(pos, truth.sizes)
            pd = np.where(occ > cfg.max_occlusion, 0.0, pd * (1.0 - occ))
        d = _in_fov(cfg.fov, pos) & (u < pd)
        rn = np.maximum(r + cfg.sigma_range * noise[:, 0], 0.0)[d]
        an = (az + sa * noise[:, 1])[d]
        rrn = (rr + cfg.sigma_range_rate * noise[:, 2])[d]
        scores = np.clip(cfg.score + cfg.score_noise * snoise, 0.01, 1.0)[d]
        labels = truth.kinds[d] if cfg.classify else np.zeros(int(d.sum()), np.int64)
        # clutter: uniform over the FOV annulus sector, stationary in the world
        fov = cfg.fov
        cr = fov.range_min + (fov.range_max - fov.range_min) * cu[:, 0]
        ca = np.radians(
            fov.azimuth_min_deg + (fov.azimuth_max_deg - fov.azimuth_min_deg) * cu[:, 1]
        )
        crr = -truth.speed * np.cos(ca) + cfg.sigma_range_rate * (2.0 * cu[:, 2] - 1.0)
        lo, hi = cfg.clutter_score
        cs = lo + (hi - lo) * cu[:, 3]
        return Detections.from_polar(
            np.concatenate([rn, cr]),
            np.concatenate([an, ca]),
            t=t,
            range_rate=np.concatenate([rrn, crr]),
            sigma_range=max(cfg.sigma_range, 1e-3),
            sigma_azimuth=max(sa, 1e-5),
            scores=np.concatenate([scores, cs]),
            labels=np.concatenate([labels, np.zeros(n_clutter, np.int64)]),
            sensor=self.channel,
        )


def make_sensor(
    cfg: CameraConfig | FrameCameraConfig | RadarConfig,
) -> CameraSensor | FrameCamera | RadarSensor:
    """Instantiate the sensor a config describes."""
    if isinstance(cfg, CameraConfig):
        return CameraSensor(cfg)
    if isinstance(cfg, FrameCameraConfig):
        return FrameCamera(cfg)
    if isinstance(cfg, RadarConfig):
        return RadarSensor(cfg)
    raise TypeError(f"unknown sensor config {type(cfg).__name__}")


def kind_names() -> tuple[str, ...]:
    """Label names shared by all sensors (index = Detections label)."""
    return KINDS
