"""Channel declarations: what each sensor channel is, where it looks, and how it is tracked."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from perception.tracker import DEFAULT_MAX_COV_TRACE


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
        r = np.hypot(p[:, 0], p[:, 1])
        az = np.degrees(np.arctan2(p[:, 1], p[:, 0]))
        ang_margin = np.degrees(margin / np.maximum(r, 1e-6))
        return (
            (r >= self.range_min + margin)
            & (r <= self.range_max - margin)
            & (az >= self.azimuth_min_deg + ang_margin)
            & (az <= self.azimuth_max_deg - ang_margin)
        )


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
