"""Render what a forward camera sees: sky, road with lane lines, actors as shaded boxes.

Actors are drawn far to near (so nearer ones occlude farther ones) in one saturated hue that
nothing in the background has, so a colour-blob detector finds them reliably in good light and
loses them in the conditions image faults create (darkness, glare, blur). The background is
static (solid lane lines), so a background-subtraction detector also works.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import cv2
import numpy as np
from numpy.random import Generator
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RenderConfig", "actor_boxes", "render_frame"]

FloatArray = NDArray[np.float64]


class RenderConfig(BaseModel):
    """Scene appearance: colours (BGR), actor hue (OpenCV HSV 0..179), lighting and sensor noise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sky_bgr: tuple[int, int, int] = (200, 190, 175)
    road_bgr: tuple[int, int, int] = (95, 95, 95)
    lane_bgr: tuple[int, int, int] = (235, 235, 235)
    lane_offsets: list[float] = Field(default_factory=lambda: [-5.25, -1.75, 1.75, 5.25])
    actor_hue: int = Field(default=8, ge=0, le=179)  # orange-red
    actor_saturation: int = Field(default=220, ge=120, le=255)
    actor_value: int = Field(default=210, ge=60, le=255)
    shading: float = Field(default=0.25, ge=0, le=0.6)  # top-to-bottom value drop (lit from above)
    light_gain: float = Field(default=1.0, gt=0)
    noise_sigma: float = Field(default=2.0, ge=0)
    outline_px: int = Field(default=1, ge=0)

    def actor_hsv_range(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """HSV bounds that hold the rendered actor body under nominal lighting and noise."""
        h = self.actor_hue
        v_lo = max(
            30, int(self.actor_value * (1.0 - self.shading) * min(self.light_gain, 1.0) * 0.6)
        )
        lo = ((h - 10) % 180, max(60, self.actor_saturation - 100), v_lo)
        hi = ((h + 10) % 180, 255, 255)
        return lo, hi


def actor_boxes(truth: Any, camera: Any) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Image boxes (N, 4) xyxy of the actors' silhouettes, and a mask of actors in front.

    The silhouette is the footprint's width across the line of sight by the actor's height,
    standing on the ground at the actor's position (``camera.ground_to_box``). Boxes of actors
    behind the camera are zeros.
    """
    pos = np.asarray(truth.positions, dtype=np.float64).reshape(-1, 2)
    n = len(pos)
    boxes = np.zeros((n, 4))
    front = pos[:, 0] > 0.5
    if not np.any(front):
        return boxes, front
    az = np.arctan2(pos[:, 1], pos[:, 0])
    sizes = np.asarray(truth.sizes, dtype=np.float64).reshape(-1, 2)
    across = sizes[:, 1] * np.abs(np.cos(az)) + sizes[:, 0] * np.abs(np.sin(az))
    heights = np.asarray(truth.heights, dtype=np.float64).reshape(-1)
    b = np.asarray(camera.ground_to_box(pos[front], across[front], heights[front]), np.float64)
    b = b.reshape(-1, 4)
    ok = np.all(np.isfinite(b), axis=1)
    idx = np.flatnonzero(front)
    boxes[idx[ok]] = b[ok]
    front[idx[~ok]] = False
    return boxes, front


def _background(cfg: RenderConfig, camera: Any) -> NDArray[np.uint8]:
    w, h = int(camera.width), int(camera.height)
    img = np.empty((h, w, 3), np.uint8)
    horizon = float(np.asarray(camera.horizon_v(np.array([camera.cx]))).reshape(-1)[0])
    hv = int(np.clip(round(horizon), 0, h)) if np.isfinite(horizon) else 0
    img[:hv] = cfg.sky_bgr
    img[hv:] = cfg.road_bgr
    xs = np.linspace(2.0, 150.0, 200)
    for off in cfg.lane_offsets:
        pts = camera.project(np.column_stack([xs, np.full_like(xs, off)]))
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if len(pts) < 2:
            continue
        pts = np.round(np.clip(pts, -1e5, 1e5)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, cfg.lane_bgr, 2, lineType=cv2.LINE_8)
    return img



_BACKGROUNDS: dict[tuple[Any, ...], NDArray[np.uint8]] = {}


def _cached_background(cfg: RenderConfig, camera: Any) -> NDArray[np.uint8]:
    key = (
        cfg.model_dump_json(),
        float(camera.fx),
        float(camera.fy),
        float(camera.cx),
        float(camera.cy),
        int(camera.width),
        int(camera.height),
        float(camera.mount_height),
        float(getattr(camera, "pitch_rad", 0.0)),
    )
    bg = _BACKGROUNDS.get(key)
    if bg is None:
        if len(_BACKGROUNDS) > 32:
            _BACKGROUNDS.clear()
        bg = _background(cfg, camera)
        bg.setflags(write=False)
        _BACKGROUNDS[key] = bg
    return bg


def _actor_colour(cfg: RenderConfig, value_scale: float) -> tuple[int, int, int]:
    v = int(np.clip(cfg.actor_value * value_scale, 0, 255))
    hsv = np.array([[[cfg.actor_hue, cfg.actor_saturation, v]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _coverage(lo: float, hi: float, n: int) -> tuple[int, FloatArray]:
    """Exact fraction of each pixel k ∈ [a, b) covered by [lo, hi) (pixel k spans [k, k+1)).

    Returns (a, fractions); ``a`` is the first pixel with any coverage, clipped to [0, n).
    """
    a = int(np.clip(np.floor(lo), 0, n))
    b = int(np.clip(np.ceil(hi), a, n))
    k = np.arange(a, b, dtype=np.float64)
    return a, np.clip(np.minimum(k + 1.0, hi) - np.maximum(k, lo), 0.0, 1.0)


def _paint(img: NDArray[np.float32], x1: float, x2: float, rows: list[tuple[float, float]],
           colours: list[tuple[int, int, int]]) -> None:
    """Blend axis-aligned bands ``[x1, x2) × [y_lo, y_hi)`` of ``colours`` into ``img`` with each
    pixel weighted by its exact covered area (what a lens integrates over a pixel)."""
    h, w = img.shape[:2]
    c0, cx = _coverage(x1, x2, w)
    if cx.size == 0:
        return
    r0 = int(np.clip(np.floor(min(lo for lo, _ in rows)), 0, h))
    r1 = int(np.clip(np.ceil(max(hi for _, hi in rows)), r0, h))
    if r1 <= r0:
        return
    alpha = np.zeros(r1 - r0, np.float64)
    paint = np.zeros((r1 - r0, 3), np.float64)
    for (lo, hi), col in zip(rows, colours, strict=True):
        a, cy = _coverage(lo, hi, h)
        sl = slice(a - r0, a - r0 + cy.size)
        alpha[sl] += cy
        paint[sl] += cy[:, None] * np.asarray(col, np.float64)
    area = alpha[:, None] * cx[None, :]  # (rows, cols)
    patch = img[r0:r1, c0:c0 + cx.size]
    col_w = cx[None, :, None]
    patch *= (1.0 - area)[..., None].astype(np.float32)
    patch += (paint[:, None, :] * col_w).astype(np.float32)


def render_frame(
    truth: Any, camera: Any, cfg: RenderConfig | None = None, rng: Generator | None = None
) -> NDArray[np.uint8]:
    """A BGR uint8 frame of ``truth`` seen by ``camera`` (a ``PinholeCamera``).

    Draws one Gaussian noise field per frame from ``rng`` (if ``noise_sigma`` > 0 and rng given).
    """
    cfg = cfg or RenderConfig()
    out = _cached_background(cfg, camera).astype(np.float32)
    boxes, front = actor_boxes(truth, camera)
    ranges = np.hypot(truth.positions[:, 0], truth.positions[:, 1]) if len(front) else np.zeros(0)
    order = np.argsort(-ranges, kind="stable")  # far to near
    bands = 6
    top_c = [_actor_colour(cfg, 1.0 - cfg.shading * k / (bands - 1)) for k in range(bands)]
    outline = (20, 20, 20)
    # silhouettes cover exactly their box [x1, x2) × [y1, y2): each pixel takes the area-weighted
    # mix of actor and what is behind it, as a lens integrates light over a pixel, so sensor
    # noise and sub-pixel motion move detected box edges the way they do on a real camera
    # (integer-snapped edges would give bit-identical boxes for slowly moving objects) and the
    # detected edges are unbiased. The dark contour lies just outside the silhouette.
    o = float(cfg.outline_px)
    for i in order:
        if not front[i]:
            continue
        x1, y1, x2, y2 = np.clip(boxes[i], -1e5, 1e5)
        if x2 - x1 < 1.0 or y2 - y1 < 1.0:
            continue
        if o > 0:
            _paint(out, x1 - o, x2 + o, [(y1 - o, y2 + o)], [outline])
        edges = np.linspace(y1, y2, bands + 1)
        _paint(out, x1, x2, list(pairwise(edges)), top_c)
    if cfg.light_gain != 1.0:
        out *= cfg.light_gain
    if cfg.noise_sigma > 0 and rng is not None:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(cfg.noise_sigma)
    return np.clip(out, 0, 255).astype(np.uint8)
