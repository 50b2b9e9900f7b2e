"""Image detectors that need no downloaded weights, an adapter for the user's own model, and
`safe_detect`, the one door through which a frame reaches any detector.

Every detector turns one frame into box :class:`~perception.detections.Detections` (SORT
measurement [u, v, s, r] with covariance from a pixel edge noise). Whatever a detector does —
raise, return garbage, or get handed something that is not an image — `safe_detect` turns it into
a :class:`~perception.errors.DetectorError` with a reason, so the safety layer sees a fault, never
a crash and never a silent pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
from numpy.typing import NDArray

from perception.detections import Detections
from perception.errors import DetectorError, InvalidDetectionsError

FloatArray = NDArray[np.float64]
Frame = NDArray[Any]

__all__ = [
    "BackgroundSubtractionDetector",
    "CallableDetector",
    "ColorBlobDetector",
    "Detector",
    "HOGPeopleDetector",
    "as_image",
    "nms",
    "safe_detect",
]

#: Smallest frame side (pixels) any built-in detector accepts.
MIN_FRAME_SIDE = 8


@runtime_checkable
class Detector(Protocol):
    """Anything that turns a frame taken at time ``t`` into Detections (space "box" for images)."""

    name: str

    def detect(self, frame: Any, t: float) -> Detections: ...


# --------------------------------------------------------------------------- frame checks
def as_image(frame: object, detector: str = "detector", *, colour: bool = False) -> Frame:
    """Validate ``frame`` as an image and return it as contiguous uint8 (H, W) or (H, W, 3|4).

    Non-uint8 real frames are clipped to [0, 255] (as :func:`perception.imagestats.image_stats`
    does); anything else — not an array, empty, wrong rank or channel count, NaN/inf, complex —
    raises :class:`DetectorError` naming ``detector``. ``colour=True`` also demands 3 channels.
    """
    if not isinstance(frame, np.ndarray):
        raise DetectorError(detector, f"frame is {type(frame).__name__}, expected a numpy image")
    if frame.ndim not in (2, 3):
        raise DetectorError(
            detector, f"frame has shape {frame.shape}, expected (H, W) or (H, W, C)"
        )
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        raise DetectorError(detector, f"frame has {frame.shape[2]} channels, expected 1, 3 or 4")
    if frame.shape[0] < MIN_FRAME_SIDE or frame.shape[1] < MIN_FRAME_SIDE:
        raise DetectorError(
            detector, f"frame {frame.shape[:2]} is smaller than {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}"
        )
    if frame.dtype.kind not in "biuf":
        raise DetectorError(detector, f"frame dtype {frame.dtype} is not a real number type")
    img = frame
    if img.dtype != np.uint8:
        if img.dtype.kind == "f" and not np.all(np.isfinite(img)):
            raise DetectorError(detector, "frame contains NaN or inf")
        img = np.clip(img.astype(np.float64), 0.0, 255.0).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if colour:
        if img.ndim != 3:
            raise DetectorError(detector, f"frame has shape {frame.shape}, expected a BGR image")
        if img.shape[2] == 4:
            img = img[..., :3]
    return np.ascontiguousarray(img)


def _grey(img: Frame) -> Frame:
    if img.ndim == 2:
        return img
    code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(img, code)


def _bgr(img: Frame) -> Frame:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return np.ascontiguousarray(img[..., :3])
    return img


def _component_boxes(mask: Frame, min_area: float) -> tuple[FloatArray, FloatArray]:
    """Outer boxes (xyxy) and fill ratios of the 8-connected foreground components of ``mask``."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    st = stats[1:n].astype(np.float64)  # row 0 is the background
    x, y, w, h, area = st[:, 0], st[:, 1], st[:, 2], st[:, 3], st[:, 4]
    keep = area >= min_area
    boxes = np.column_stack([x, y, x + w, y + h])[keep]
    fill = (area / np.maximum(w * h, 1.0))[keep]
    return boxes.reshape(-1, 4), np.clip(fill, 0.0, 1.0)


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float) -> NDArray[np.int64]:
    """Greedy non-maximum suppression: indices of kept boxes, best score first."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    area = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        ix1 = np.maximum(b[i, 0], b[rest, 0])
        iy1 = np.maximum(b[i, 1], b[rest, 1])
        ix2 = np.minimum(b[i, 2], b[rest, 2])
        iy2 = np.minimum(b[i, 3], b[rest, 3])
        inter = np.maximum(ix2 - ix1, 0.0) * np.maximum(iy2 - iy1, 0.0)
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


# --------------------------------------------------------------------------- detectors
class BackgroundSubtractionDetector:
    """Moving-object detector: OpenCV MOG2 background model, morphology, connected blobs → boxes.

    Finds what moves against a static camera's background. Each blob's box must hold at least
    ``min_area`` foreground pixels; its score is the foreground fill ratio of the box (a compact
    object scores high, a sparse flicker low). MOG2 shadows (grey 127) are dropped.
    Stateful: feed frames of one camera in time order; ``reset()`` forgets the background.
    """

    input_kind = "image"

    def __init__(
        self,
        *,
        history: int = 500,
        var_threshold: float = 16.0,
        detect_shadows: bool = True,
        learning_rate: float = -1.0,
        min_area: float = 100.0,
        kernel_size: int = 3,
        min_score: float = 0.0,
        warmup_frames: int = 1,
        label: int = 0,
        sigma_px: float = 2.0,
        name: str = "mog2",
        sensor: str = "camera",
    ) -> None:
        if history < 1 or kernel_size < 1 or min_area < 0 or sigma_px <= 0:
            raise ValueError("history, kernel_size ≥ 1, min_area ≥ 0 and sigma_px > 0 required")
        self.name = name
        self.sensor = sensor
        self.history = int(history)
        self.var_threshold = float(var_threshold)
        self.detect_shadows = bool(detect_shadows)
        self.learning_rate = float(learning_rate)
        self.min_area = float(min_area)
        self.min_score = float(min_score)
        self.warmup_frames = max(int(warmup_frames), 0)
        self.label = int(label)
        self.sigma_px = float(sigma_px)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
        self._shape: tuple[int, ...] | None = None
        self.frames_seen = 0
        self.reset()

    def reset(self) -> None:
        """Forget the learned background (e.g. after the camera moved)."""
        self._mog = cv2.createBackgroundSubtractorMOG2(
            history=self.history, varThreshold=self.var_threshold, detectShadows=self.detect_shadows
        )
        self._shape = None
        self.frames_seen = 0

    def foreground(self, frame: Any) -> Frame:
        """Update the background model with ``frame`` and return the cleaned binary mask (0/255)."""
        img = as_image(frame, self.name)
        if self._shape is not None and img.shape != self._shape:
            raise DetectorError(
                self.name, f"frame shape {img.shape} differs from the background's {self._shape}"
            )
        self._shape = img.shape
        raw = self._mog.apply(img, learningRate=self.learning_rate)
        self.frames_seen += 1
        _, mask = cv2.threshold(raw, 200, 255, cv2.THRESH_BINARY)  # drop shadows (127)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._kernel, iterations=2)

    def detect(self, frame: Any, t: float) -> Detections:
        """Boxes of the moving blobs in ``frame`` (none while warming up)."""
        mask = self.foreground(frame)
        if self.frames_seen <= self.warmup_frames:
            return Detections.empty(t, self.sensor, "box")
        boxes, fill = _component_boxes(mask, self.min_area)
        keep = fill >= self.min_score
        boxes, fill = boxes[keep], fill[keep]
        labels = np.full(len(boxes), self.label, dtype=np.int64)
        return Detections.from_boxes(
            boxes, t=t, scores=fill, labels=labels, sensor=self.sensor, sigma_px=self.sigma_px
        )


class ColorBlobDetector:
    """Colour detector: pixels inside an HSV range, cleaned by morphology, grouped into blobs.

    ``lower_hsv``/``upper_hsv`` use OpenCV's HSV scale (H 0..179, S and V 0..255); a lower hue
    above the upper hue wraps around red. Score is the blob's fill ratio of its box.
    """

    input_kind = "image"

    def __init__(
        self,
        lower_hsv: Sequence[float],
        upper_hsv: Sequence[float],
        *,
        min_area: float = 50.0,
        kernel_size: int = 3,
        min_score: float = 0.0,
        label: int = 0,
        sigma_px: float = 2.0,
        name: str = "color_blob",
        sensor: str = "camera",
    ) -> None:
        lo = np.asarray(lower_hsv, dtype=np.float64).reshape(-1)
        hi = np.asarray(upper_hsv, dtype=np.float64).reshape(-1)
        if (
            lo.shape != (3,)
            or hi.shape != (3,)
            or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)))
        ):
            raise ValueError("lower_hsv and upper_hsv must be three finite numbers each")
        if np.any(lo[1:] > hi[1:]):
            raise ValueError("lower S and V must not exceed upper S and V")
        self.lower = np.clip(lo, 0, [179, 255, 255]).astype(np.uint8)
        self.upper = np.clip(hi, 0, [179, 255, 255]).astype(np.uint8)
        self.min_area = float(min_area)
        self.min_score = float(min_score)
        self.label = int(label)
        self.sigma_px = float(sigma_px)
        self.name = name
        self.sensor = sensor
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))

    def mask(self, frame: Any) -> Frame:
        """Binary mask (0/255) of the pixels in the HSV range, after opening and closing."""
        img = as_image(frame, self.name, colour=True)
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        lo, hi = self.lower, self.upper
        if lo[0] <= hi[0]:
            m = cv2.inRange(hsv, lo, hi)
        else:  # hue wraps around 180 → 0
            upper = cv2.inRange(hsv, lo, np.array([179, hi[1], hi[2]], np.uint8))
            lower = cv2.inRange(hsv, np.array([0, lo[1], lo[2]], np.uint8), hi)
            m = cv2.bitwise_or(upper, lower)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, self._kernel)
        return cv2.morphologyEx(m, cv2.MORPH_CLOSE, self._kernel)

    def detect(self, frame: Any, t: float) -> Detections:
        """Boxes of the blobs of the configured colour."""
        boxes, fill = _component_boxes(self.mask(frame), self.min_area)
        keep = fill >= self.min_score
        boxes, fill = boxes[keep], fill[keep]
        labels = np.full(len(boxes), self.label, dtype=np.int64)
        return Detections.from_boxes(
            boxes, t=t, scores=fill, labels=labels, sensor=self.sensor, sigma_px=self.sigma_px
        )


class HOGPeopleDetector:
    """Pedestrian detector: OpenCV's HOG descriptor with its built-in linear SVM (no download).

    ``detectMultiScale`` runs over an image pyramid; SVM margins ``w`` become scores
    ``1 / (1 + exp(-score_gain * w))`` (a window at the decision boundary scores 0.5), then
    greedy non-maximum suppression at ``nms_iou`` merges overlapping windows. Smallest person
    found is the 64×128 window (scale frames up with ``upscale`` for small people).
    """

    input_kind = "image"

    def __init__(
        self,
        *,
        win_stride: tuple[int, int] = (8, 8),
        padding: tuple[int, int] = (8, 8),
        scale: float = 1.05,
        hit_threshold: float = 0.0,
        score_gain: float = 2.0,
        min_score: float = 0.0,
        nms_iou: float = 0.4,
        upscale: float = 1.0,
        label: int = 0,
        sigma_px: float = 3.0,
        name: str = "hog_people",
        sensor: str = "camera",
    ) -> None:
        if scale <= 1.0 or upscale <= 0 or score_gain <= 0:
            raise ValueError("scale must exceed 1, upscale and score_gain must be positive")
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(
            np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32)
        )
        self.win_stride = (int(win_stride[0]), int(win_stride[1]))
        self.padding = (int(padding[0]), int(padding[1]))
        self.scale = float(scale)
        self.hit_threshold = float(hit_threshold)
        self.score_gain = float(score_gain)
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.upscale = float(upscale)
        self.label = int(label)
        self.sigma_px = float(sigma_px)
        self.name = name
        self.sensor = sensor

    def raw(self, frame: Any) -> tuple[FloatArray, FloatArray]:
        """HOG windows above ``hit_threshold``, before NMS: boxes xyxy (frame px), SVM margins."""
        img = _bgr(as_image(frame, self.name))
        k = self.upscale
        if k != 1.0:
            img = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
        if img.shape[0] < 128 or img.shape[1] < 64:
            return np.zeros((0, 4)), np.zeros(0)
        rects, weights = self._hog.detectMultiScale(
            img,
            hitThreshold=self.hit_threshold,
            winStride=self.win_stride,
            padding=self.padding,
            scale=self.scale,
        )
        r = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / k
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        boxes = np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]])
        return boxes.reshape(-1, 4), w

    def detect(self, frame: Any, t: float) -> Detections:
        """People boxes in ``frame`` after score squashing and non-maximum suppression."""
        boxes, w = self.raw(frame)
        scores = 1.0 / (1.0 + np.exp(-self.score_gain * np.clip(w, -50.0, 50.0)))
        keep = nms(boxes, scores, self.nms_iou)
        keep = keep[scores[keep] >= self.min_score]
        labels = np.full(keep.size, self.label, dtype=np.int64)
        return Detections.from_boxes(
            boxes[keep],
            t=t,
            scores=scores[keep],
            labels=labels,
            sensor=self.sensor,
            sigma_px=self.sigma_px,
        )


class CallableDetector:
    """Adapter for any user model: ``fn(frame) -> (boxes_xyxy (N,4), scores (N,)[, labels (N,)])``.

    The return is checked strictly (tuple arity, numeric real arrays, shapes, finiteness,
    positive box sizes, scores in [0, 1], integer labels); anything else raises
    :class:`DetectorError` with the reason, so a user's YOLO that misbehaves becomes a finding.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        name: str = "callable",
        sensor: str = "camera",
        sigma_px: float = 2.0,
        check_frame: bool = True,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name
        self.sensor = sensor
        self.sigma_px = float(sigma_px)
        #: "image": safe_detect validates frames as images first; "any": passes raw input through.
        self.input_kind = "image" if check_frame else "any"

    def detect(self, frame: Any, t: float) -> Detections:
        """Run ``fn`` on ``frame`` and validate what it returned."""
        out = self.fn(frame)
        if isinstance(out, (str, bytes)) or not isinstance(out, (tuple, list)):
            raise DetectorError(
                self.name, f"returned {type(out).__name__}, expected (boxes, scores[, labels])"
            )
        if len(out) not in (2, 3):
            raise DetectorError(self.name, f"returned {len(out)} items, expected 2 or 3")
        boxes = _real_array(self.name, "boxes", out[0])
        scores = _real_array(self.name, "scores", out[1])
        if boxes.size == 0 and scores.size == 0:
            n = 0
            boxes = boxes.reshape(0, 4)
        elif boxes.ndim != 2 or boxes.shape[1] != 4:
            raise DetectorError(self.name, f"boxes shape {boxes.shape}, expected (N, 4)")
        else:
            n = boxes.shape[0]
        scores = scores.reshape(-1) if scores.size == n else scores
        if scores.shape != (n,):
            raise DetectorError(self.name, f"scores shape {scores.shape}, expected ({n},)")
        if len(out) == 3 and out[2] is not None:
            lab = _real_array(self.name, "labels", out[2])
            if not (np.all(np.isfinite(lab)) and np.all(lab == np.round(lab))):
                raise DetectorError(self.name, "labels are not integers")
            if np.any(np.abs(lab) > 2**62):
                raise DetectorError(self.name, "labels out of the int64 range")
            labels = lab.astype(np.int64).reshape(-1) if lab.size == n else lab
            if labels.shape != (n,):
                raise DetectorError(self.name, f"labels shape {lab.shape}, expected ({n},)")
        else:
            labels = np.zeros(n, dtype=np.int64)
        if not np.all(np.isfinite(boxes)):
            raise DetectorError(self.name, "boxes contain NaN or inf")
        if not np.all(np.isfinite(scores)):
            raise DetectorError(self.name, "scores contain NaN or inf")
        bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if np.any(bad):
            raise DetectorError(
                self.name,
                "boxes with non-positive width or height at rows "
                f"{np.flatnonzero(bad)[:5].tolist()}",
            )
        if np.any((scores < 0.0) | (scores > 1.0)):
            raise DetectorError(self.name, "scores outside [0, 1]")
        return Detections.from_boxes(
            boxes, t=t, scores=scores, labels=labels, sensor=self.sensor, sigma_px=self.sigma_px
        )


def _real_array(detector: str, what: str, value: object) -> FloatArray:
    """``value`` as a float64 array, refusing objects, strings, complex numbers and ragged lists."""
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise DetectorError(detector, f"{what} is {type(value).__name__}, expected an array")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists, objects whose __array__ raises
        raise DetectorError(detector, f"{what} is not an array: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise DetectorError(detector, f"{what} dtype {arr.dtype} is not a real number type")
    return arr.astype(np.float64)


# --------------------------------------------------------------------------- the guard
def _detector_name(detector: object) -> str:
    try:
        name = detector.name  # type: ignore[attr-defined]
    except Exception:
        name = None
    return name if isinstance(name, str) else type(detector).__name__


def safe_detect(
    detector: Detector, frame: Any, t: float, *, space: str | None = None
) -> Detections:
    """Run ``detector`` on ``frame`` and return valid Detections, or raise only DetectorError.

    Checks the frame is an image (unless the detector declares ``input_kind = "any"``) and ``t``
    is finite; wraps any exception the detector raises; rejects a return that is not a valid
    :class:`Detections` (or not of ``space`` when given). Never raises anything else.
    """
    name = _detector_name(detector)
    try:
        tt = float(t)
    except Exception as exc:
        raise DetectorError(name, f"timestamp {t!r} is not a number") from exc
    if not math.isfinite(tt):
        raise DetectorError(name, f"timestamp {tt} is not finite")
    try:
        kind = getattr(detector, "input_kind", "image")
    except Exception:
        kind = "image"
    if kind != "any":
        try:
            frame = as_image(frame, name)
        except DetectorError:
            raise
        except Exception as exc:  # pragma: no cover - as_image only raises DetectorError
            raise DetectorError(name, f"frame check failed: {exc!r}") from exc
    try:
        detect = detector.detect
    except Exception as exc:
        raise DetectorError(name, f"has no usable detect(): {exc!r}") from exc
    try:
        out = detect(frame, tt)
    except DetectorError:
        raise
    except InvalidDetectionsError as exc:
        raise DetectorError(
            name, f"produced invalid detections: {exc.field}: {exc.reason}"
        ) from exc
    except Exception as exc:
        raise DetectorError(name, f"raised {type(exc).__name__}: {exc}") from exc
    return _check_output(name, out, space)


def _check_output(name: str, out: object, space: str | None) -> Detections:
    """Re-check a returned Detections cheaply (it may have been built bypassing validation)."""
    if not isinstance(out, Detections):
        raise DetectorError(name, f"returned {type(out).__name__}, expected Detections")
    try:
        z, R, s, lab = out.z, out.R, out.scores, out.labels
        ok_types = all(isinstance(a, np.ndarray) for a in (z, R, s, lab))
        if not ok_types:
            raise DetectorError(name, "returned Detections whose fields are not arrays")
        m = 4 if out.space == "box" else 2 if out.space == "point" else -1
        if m < 0:
            raise DetectorError(name, f"returned Detections of unknown space {out.space!r}")
        if space is not None and out.space != space:
            raise DetectorError(name, f"returned {out.space!r} detections, expected {space!r}")
        n = z.shape[0] if z.ndim == 2 else -1
        if z.shape != (n, m) or R.shape != (n, m, m) or s.shape != (n,) or lab.shape != (n,):
            raise DetectorError(name, "returned Detections with inconsistent array shapes")
        if z.dtype.kind != "f" or R.dtype.kind != "f" or s.dtype.kind != "f":
            raise DetectorError(name, "returned Detections with non-float arrays")
        if not (np.all(np.isfinite(z)) and np.all(np.isfinite(R)) and np.all(np.isfinite(s))):
            raise DetectorError(name, "returned Detections containing NaN or inf")
        if np.any((s < 0.0) | (s > 1.0)):
            raise DetectorError(name, "returned scores outside [0, 1]")
        if out.space == "box" and n and np.any(z[:, 2:4] <= 0.0):
            raise DetectorError(name, "returned boxes with non-positive area or aspect")
        if not isinstance(out.t, float) or not math.isfinite(out.t):
            raise DetectorError(name, f"returned a non-finite timestamp {out.t!r}")
    except DetectorError:
        raise
    except Exception as exc:
        raise DetectorError(name, f"returned malformed Detections: {exc!r}") from exc
    return out
