"""Cheap per-frame image statistics: digest (frozen frames), brightness, contrast, sharpness."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ImageStats:
    """Statistics of one frame; the audit log keeps these instead of pixels."""

    digest: str  # SHA-256 of the pixel buffer (identical frames ⇒ identical digest)
    brightness: float  # mean intensity, 0..255
    contrast: float  # intensity standard deviation
    sharpness: float  # variance of the Laplacian (blur lowers it)
    shape: tuple[int, ...]


def image_stats(frame: NDArray[np.generic]) -> ImageStats:
    """Compute :class:`ImageStats` of an 8-bit grey or BGR frame (other dtypes are scaled)."""
    img = np.ascontiguousarray(frame)
    digest = hashlib.sha256(img.tobytes()).hexdigest()
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 and img.shape[2] == 3 else img
    if grey.ndim == 3:
        grey = grey[..., 0]
    if grey.dtype != np.uint8:
        grey = np.clip(grey.astype(np.float64), 0, 255).astype(np.uint8)
    mean, std = cv2.meanStdDev(grey)
    lap = cv2.Laplacian(grey, cv2.CV_64F)
    return ImageStats(
        digest, float(mean[0, 0]), float(std[0, 0]), float(lap.var()), tuple(img.shape)
    )
