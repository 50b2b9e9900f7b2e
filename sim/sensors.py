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

import numpy as np
from numpy.random import Generator
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from perception.detections import Detections
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

    def due(self, t: float) -> bool:
        """Whether a measurement is due at ``t`` (rate_hz grid)."""
        return self._rate.due(t)

    def measure(self, t: float, truth: Truth, rng: Generator) -> Detections:
        """One frame's detections of ``truth``."""
        cfg = self.cfg
        n = len(truth)
        # fixed number of draws per actor: detection, 2 noise, score noise
        u = rng.random(n)
        noise = rng.standard_normal((n, 2))
        snoise = rng.standard_normal(n)
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

    def due(self, t: float) -> bool:
        """Whether a scan is due at ``t`` (rate_hz grid)."""
        return self._rate.due(t)

    def measure(self, t: float, truth: Truth, rng: Generator) -> Detections:
        """One scan: detections of actors in the FOV plus clutter."""
        cfg = self.cfg
        n = len(truth)
        u = rng.random(n)
        noise = rng.standard_normal((n, 3))
        snoise = rng.standard_normal(n)
        n_clutter = int(rng.poisson(cfg.clutter_rate))
        cu = rng.random((n_clutter, 4))
        pos = truth.positions
        r, az, rr = truth.ranges, truth.azimuths, truth.range_rates
        pd = np.full(n, cfg.p_detect)
        if cfg.occlusion:
            occ = occlusion_fraction(pos, truth.sizes)
            pd = np.where(occ > cfg.max_occlusion, 0.0, pd * (1.0 - occ))
        d = _in_fov(cfg.fov, pos) & (u < pd)
        sa = math.radians(cfg.sigma_azimuth_deg)
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
