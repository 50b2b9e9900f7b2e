"""Channel declarations: what each sensor channel is, where it looks, and how it is tracked."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from perception.kernels import IN1, IN2, compiled
from perception.tracker import DEFAULT_MAX_COV_TRACE


@compiled(nb.bool_[:, :, ::1](IN2, IN2, IN1))
def sector_masks(points, limits, margins):  # pragma: no cover - compiled
    """(N, F, M) mask: point n inside sector f (``limits`` rows: range min, range max, azimuth
    min, azimuth max in degrees) shrunk by margin m (grown if negative; the angular margin is
    the margin's arc at the point's range). One compiled pass: range and azimuth once per point.
    """
    n, nf, nm = points.shape[0], limits.shape[0], margins.shape[0]
    out = np.zeros((n, nf, nm), np.bool_)
    for i in range(n):
        r = np.hypot(points[i, 0], points[i, 1])
        az = np.degrees(np.arctan2(points[i, 1], points[i, 0]))
        rr = np.maximum(r, 1e-6)
        for m in range(nm):
            mg = margins[m]
            ang = np.degrees(mg / rr)
            for f in range(nf):
                out[i, f, m] = (
                    r >= limits[f, 0] + mg and r <= limits[f, 1] - mg
                    and az >= limits[f, 2] + ang and az <= limits[f, 3] - ang
                )
    return out


class FieldOfView(BaseModel):
    """Ground-plane sector (ego frame: x forward, y left), or a pixel rectangle for images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    azimuth_min_deg: float = -60.0
    azimuth_max_deg: float = 60.0
    range_min: float = 0.0
    range_max: float = 80.0
    image_width: int | None = None  # image channels only
    image_height: int | None = None

    @model_validator(mode="after")
    def _check(self) -> FieldOfView:
        if self.azimuth_max_deg <= self.azimuth_min_deg:
            raise ValueError("azimuth_max_deg must exceed azimuth_min_deg")
        if self.range_max <= self.range_min or self.range_min < 0:
            raise ValueError("need 0 <= range_min < range_max")
        return self

    def contains(self, points: NDArray[np.float64], margin: float = 0.0) -> NDArray[np.bool_]:
        """Mask of (N, 2) points inside the field of view shrunk by ``margin`` (m or px)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if self.image_width is not None and self.image_height is not None:
            return (
                (p[:, 0] >= margin)
                & (p[:, 0] <= self.image_width - margin)
                & (p[:, 1] >= margin)
                & (p[:, 1] <= self.image_height - margin)
            )
        return sector_masks(p, self.sector_limits, np.array([float(margin)]))[:, 0, 0]

    @property
    def sector_limits(self) -> NDArray[np.float64]:
        """(1, 4) [range min, range max, azimuth min, azimuth max (deg)] for `sector_masks`."""
        return _limits(self.range_min, self.range_max, self.azimuth_min_deg, self.azimuth_max_deg)


@lru_cache(maxsize=1024)
def _limits(*limits: float) -> NDArray[np.float64]:
    """One read-only limits row per distinct sector (kept out of the model: a cached array
    attribute would break its field-by-field equality)."""
    out = np.array([limits], dtype=np.float64)
    out.flags.writeable = False
    return out


class TrackerSettings(BaseModel):
    """Per-channel tracker parameters (see perception.Tracker).

    ``max_cov_trace`` defaults from the physics of the channel's space (perception.tracker's
    DEFAULT_MAX_COV_TRACE): 200 m² on the ground plane (10 m standard deviation per axis; a fresh
    track survives a missed measurement down to 3 Hz), 5e4 px² for image boxes (about 160 px; a
    fresh SORT box track survives a missed frame). The old 100 deleted a fresh ground track that
    missed one step at dt >= 0.3 s and every box track at its first miss.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["cv", "ca", "box"] = "cv"
    process_noise: float = Field(default=1.0, gt=0)
    gating: Literal["mahalanobis", "iou"] = "mahalanobis"
    gate_probability: float = Field(default=0.999, gt=0, lt=1)
    # a confirmed track that missed its gate gets a second chance inside this looser one
    recovery_gate_probability: float = Field(default=0.99999, gt=0, lt=1)
    coalesce_steps: int = Field(default=3, ge=0)  # twins of an older track deleted after N steps
    iou_threshold: float = Field(default=0.3, gt=0, lt=1)
    n_init: int = Field(default=3, ge=1)
    init_window: int = Field(default=5, ge=1)
    max_coast: float = Field(default=1.0, gt=0)  # seconds without update before deletion
    max_cov_trace: float = Field(default=DEFAULT_MAX_COV_TRACE["point"], gt=0)  # box: see above
    backend: Literal["vectorized", "filterpy"] = "vectorized"

    @model_validator(mode="after")
    def _gates_ordered(self) -> TrackerSettings:
        if self.recovery_gate_probability < self.gate_probability:
            raise ValueError(
                "@recovery_gate_probability: the recovery gate must be at least as loose as "
                f"gate_probability ({self.gate_probability})"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _space_default(cls, data: Any) -> Any:
        """Box models get the image-space covariance bound unless one is given."""
        if isinstance(data, dict) and data.get("model") == "box" and "max_cov_trace" not in data:
            return {**data, "max_cov_trace": DEFAULT_MAX_COV_TRACE["box"]}
        return data


class ChannelConfig(BaseModel):
    """One source of measurements with its own detector (if fed images) and tracker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: Literal["camera", "radar", "lidar", "detector", "other"] = "camera"
    frame: Literal["ground", "image"] = "ground"
    role: Literal["primary", "redundant", "shadow"] = "primary"
    fov: FieldOfView = FieldOfView()
    expected_rate_hz: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)  # stale after this long without valid input
    tracker: TrackerSettings = TrackerSettings()
