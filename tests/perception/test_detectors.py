"""Detectors on frames generated here, the user-callable adapter, and the safe_detect guard."""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perception.detections import Detections
from perception.detectors import (
    BackgroundSubtractionDetector,
    CallableDetector,
    ColorBlobDetector,
    Detector,
    HOGPeopleDetector,
    as_image,
    nms,
    safe_detect,
)
from perception.errors import DetectorError

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def check_valid(d: Detections, t: float, sensor: str) -> None:
    assert isinstance(d, Detections)
    assert d.space == "box"
    assert d.t == t
    assert d.sensor == sensor
    assert np.all(np.isfinite(d.z)) and np.all((d.scores >= 0) & (d.scores <= 1))


# --------------------------------------------------------------------------- background subtraction
def moving_scene(n: int = 45, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Static textured background with a static bright box; a textured box moves from frame 20."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 60, (120, 160, 3)).astype(np.uint8), (5, 5), 0)
    bg[85:110, 120:150] = (230, 230, 230)  # static object: part of the background
    tex = rng.integers(120, 256, (40, 20, 3)).astype(np.uint8)
    frames, truth = [], []
    for i in range(n):
        f = np.clip(bg + rng.normal(0.0, 2.0, bg.shape), 0, 255).astype(np.uint8)
        box = None
        if i >= 20:
            x = 10 + 4 * (i - 20)
            f[30:70, x : x + 20] = tex
            box = np.array([x, 30, x + 20, 70], dtype=float)
        frames.append(f)
        truth.append(box)
    return frames, truth


def test_background_subtraction_finds_the_moving_box_not_the_background() -> None:
    frames, truth = moving_scene()
    det = BackgroundSubtractionDetector(min_area=50, sensor="cam0")
    assert isinstance(det, Detector)
    for i, (f, box) in enumerate(zip(frames, truth, strict=True)):
        d = det.detect(f, 0.1 * i)
        check_valid(d, 0.1 * i, "cam0")
        if box is None:
            assert len(d) == 0, f"frame {i}: detections on a static scene"
        else:
            assert len(d) == 1, f"frame {i}: {len(d)} detections"
            assert iou(d.boxes_xyxy()[0], box) > 0.8
            assert d.scores[0] > 0.9  # a solid blob fills its box


def test_background_subtraction_reset_and_shape_change() -> None:
    frames, _ = moving_scene(5)
    det = BackgroundSubtractionDetector()
    det.detect(frames[0], 0.0)
    with pytest.raises(DetectorError, match="differs"):
        det.detect(frames[1][:60], 0.1)
    det.reset()
    assert len(det.detect(frames[1][:60], 0.2)) == 0


def test_min_area_filters_small_blobs() -> None:
    frames, _ = moving_scene()
    det = BackgroundSubtractionDetector(min_area=2000)  # the mover has 800 px
    assert all(len(det.detect(f, float(i))) == 0 for i, f in enumerate(frames))


# --------------------------------------------------------------------------- colour blobs
def test_color_blob_detector_finds_red_and_green_blobs() -> None:
    img = np.full((100, 150, 3), 40, np.uint8)
    cv2.rectangle(img, (10, 20), (39, 59), (0, 0, 255), -1)  # red (BGR)
    cv2.circle(img, (110, 50), 15, (0, 200, 0), -1)  # green
    red = ColorBlobDetector((170, 120, 80), (10, 255, 255), label=3, sensor="rgb")  # wraps hue
    green = ColorBlobDetector((45, 120, 80), (75, 255, 255), label=5, sensor="rgb")
    dr = red.detect(img, 1.0)
    dg = green.detect(img, 1.0)
    check_valid(dr, 1.0, "rgb")
    assert len(dr) == 1 and len(dg) == 1
    np.testing.assert_allclose(dr.boxes_xyxy()[0], [10, 20, 40, 60], atol=1.0)
    assert dr.labels[0] == 3 and dg.labels[0] == 5
    assert dr.scores[0] > 0.95  # a filled rectangle
    assert 0.6 < dg.scores[0] < 0.85  # a disc fills π/4 of its box
    assert iou(dg.boxes_xyxy()[0], np.array([95, 35, 126, 66])) > 0.85


def test_color_blob_detector_nothing_on_grey_and_rejects_grey_frame() -> None:
    blue = ColorBlobDetector((100, 120, 80), (130, 255, 255))
    assert len(blue.detect(np.full((64, 64, 3), 128, np.uint8), 0.0)) == 0
    with pytest.raises(DetectorError, match="BGR"):
        blue.detect(np.zeros((64, 64), np.uint8), 0.0)


# --------------------------------------------------------------------------- HOG
def silhouette_frame(centres: tuple[int, ...] = (96,), width: int = 192) -> np.ndarray:
    """Dark upright person-like silhouettes on a light background, at HOG's 64×128 scale."""
    img = np.full((256, width, 3), 200, np.uint8)
    top, ink = 64, (40, 40, 40)
    for cx in centres:
        cv2.circle(img, (cx, top + 10), 9, ink, -1)  # head
        cv2.rectangle(img, (cx - 14, top + 20), (cx + 14, top + 70), ink, -1)  # torso
        cv2.line(img, (cx - 14, top + 24), (cx - 22, top + 62), ink, 7)  # arms
        cv2.line(img, (cx + 14, top + 24), (cx + 22, top + 62), ink, 7)
        cv2.line(img, (cx - 6, top + 70), (cx - 12, top + 118), ink, 9)  # legs
        cv2.line(img, (cx + 6, top + 70), (cx + 12, top + 118), ink, 9)
    return img


def test_hog_finds_the_silhouette_and_nothing_on_an_empty_frame() -> None:
    hog = HOGPeopleDetector(sensor="cam")
    d = hog.detect(silhouette_frame(), 2.0)
    check_valid(d, 2.0, "cam")
    assert len(d) == 1
    x1, y1, x2, y2 = d.boxes_xyxy()[0]
    assert x1 <= 70 and y1 <= 64 and x2 >= 122 and y2 >= 187  # encloses the figure
    assert (x2 - x1) < 3 * 52 and (y2 - y1) < 2 * 123  # and is not a whole-frame box
    assert d.scores[0] > 0.9
    empty = hog.detect(np.full((256, 192, 3), 128, np.uint8), 2.0)
    assert len(empty) == 0
    assert len(hog.detect(np.zeros((64, 64), np.uint8), 0.0)) == 0  # smaller than one window


def test_hog_two_people_scores_are_squashed_margins_without_overlap() -> None:
    hog = HOGPeopleDetector()
    frame = silhouette_frame((80, 240), width=320)
    _, margins = hog.raw(frame)
    d = hog.detect(frame, 0.0)
    assert len(d) == 2
    assert sorted(d.boxes_xyxy()[:, 0] < 160) == [False, True]  # one on each side
    expected = 1.0 / (1.0 + np.exp(-2.0 * margins))
    for s in d.scores:
        assert np.min(np.abs(expected - s)) < 1e-9
    kept = d.boxes_xyxy()
    assert iou(kept[0], kept[1]) <= 0.4


@pytest.mark.skipif(not os.path.exists(VTEST), reason=f"{VTEST} absent (Debian package opencv-doc)")
def test_hog_finds_people_in_the_opencv_pedestrian_video() -> None:
    cap = cv2.VideoCapture(VTEST)
    hog = HOGPeopleDetector()
    found = 0
    for i in range(0, 60, 10):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, frame = cap.read()
        assert ok
        d = hog.detect(frame, float(i))
        found += len(d)
        b = d.boxes_xyxy()
        assert np.all((b[:, 3] - b[:, 1]) / (b[:, 2] - b[:, 0]) > 1.5)  # upright boxes
    assert found >= 3


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]], float)
    keep = nms(boxes, np.array([0.5, 0.9, 0.3, 0.1]), 0.5)
    assert keep.tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0


# --------------------------------------------------------------------------- callable adapter
FRAME = np.zeros((48, 64, 3), np.uint8)


def test_callable_detector_good_function() -> None:
    def fn(frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert frame.shape == (48, 64, 3)
        return np.array([[1, 2, 11, 22], [30, 5, 40, 25]]), np.array([0.9, 0.4]), np.array([2, 7])

    d = safe_detect(CallableDetector(fn, name="yolo", sensor="front"), FRAME, 3.5)
    check_valid(d, 3.5, "front")
    np.testing.assert_allclose(d.boxes_xyxy(), [[1, 2, 11, 22], [30, 5, 40, 25]])
    assert d.scores.tolist() == [0.9, 0.4] and d.labels.tolist() == [2, 7]
    two = CallableDetector(lambda f: ([[0, 0, 4, 4]], [1.0])).detect(FRAME, 0.0)
    assert two.labels.tolist() == [0]
    empty = CallableDetector(lambda f: (np.zeros((0, 4)), np.zeros(0))).detect(FRAME, 0.0)
    assert len(empty) == 0
    assert len(CallableDetector(lambda f: ([], [])).detect(FRAME, 0.0)) == 0


GARBAGE_RETURNS: list[tuple[str, Any]] = [
    ("None", None),
    ("string", "boxes"),
    ("dict", {"boxes": [[0, 0, 1, 1]]}),
    ("one item", ([[0, 0, 1, 1]],)),
    ("four items", ([[0, 0, 1, 1]], [1.0], [0], [0])),
    ("wrong box width", (np.zeros((2, 3)), np.ones(2))),
    ("flat boxes", (np.array([0, 0, 1, 1]), np.ones(1))),
    ("score count", (np.array([[0, 0, 1, 1]]), np.ones(3))),
    ("NaN box", (np.array([[0, np.nan, 1, 1]]), np.ones(1))),
    ("inf score", (np.array([[0, 0, 1, 1]]), np.array([np.inf]))),
    ("negative size", (np.array([[5, 5, 1, 9]]), np.ones(1))),
    ("zero height", (np.array([[0, 5, 4, 5]]), np.ones(1))),
    ("score above 1", (np.array([[0, 0, 1, 1]]), np.array([3.2]))),
    ("negative score", (np.array([[0, 0, 1, 1]]), np.array([-0.1]))),
    ("string boxes", (np.array([["a", "b", "c", "d"]]), np.ones(1))),
    ("complex boxes", (np.array([[0, 0, 1j, 1]]), np.ones(1))),
    ("ragged boxes", ([[0, 0, 1, 1], [0, 0, 1]], [1.0, 1.0])),
    ("object boxes", (np.array([[object()] * 4], dtype=object), np.ones(1))),
    ("float labels", (np.array([[0, 0, 1, 1]]), np.ones(1), np.array([0.5]))),
    ("label count", (np.array([[0, 0, 1, 1]]), np.ones(1), np.array([1, 2]))),
    ("string labels", (np.array([[0, 0, 1, 1]]), np.ones(1), ["car"])),
]


@pytest.mark.parametrize(("case", "value"), GARBAGE_RETURNS, ids=[c for c, _ in GARBAGE_RETURNS])
def test_callable_detector_garbage_becomes_detector_error(case: str, value: Any) -> None:
    det = CallableDetector(lambda f: value, name="bad")
    with pytest.raises(DetectorError) as info:
        safe_detect(det, FRAME, 0.0)
    assert info.value.detector == "bad"
    assert info.value.reason


def test_safe_detect_wraps_exceptions_with_the_reason() -> None:
    def boom(frame: Any) -> Any:
        raise ZeroDivisionError("model exploded")

    with pytest.raises(DetectorError, match="ZeroDivisionError: model exploded"):
        safe_detect(CallableDetector(boom, name="m"), FRAME, 0.0)


@pytest.mark.parametrize(
    "frame",
    [
        None,
        "image.png",
        3,
        [[0, 1], [2, 3]],
        np.zeros((0, 0, 3), np.uint8),
        np.zeros(64, np.uint8),
        np.zeros((4, 4, 3), np.uint8),
        np.zeros((32, 32, 5), np.uint8),
        np.zeros((2, 32, 32, 3), np.uint8),
        np.full((32, 32), np.nan),
        np.zeros((32, 32), complex),
        np.zeros((32, 32), dtype=object),
    ],
    ids=[
        "None",
        "str",
        "int",
        "list",
        "empty",
        "1-D",
        "tiny",
        "5ch",
        "4-D",
        "NaN",
        "complex",
        "object",
    ],
)
def test_safe_detect_rejects_non_images(frame: Any) -> None:
    called: list[int] = []

    def fn(frame: Any) -> tuple[list[float], list[float]]:
        called.append(1)
        return [], []

    det = CallableDetector(fn, name="c")
    with pytest.raises(DetectorError):
        safe_detect(det, frame, 0.0)
    assert not called  # the detector never sees a bad frame
    for d in (
        BackgroundSubtractionDetector(),
        ColorBlobDetector((0, 0, 0), (179, 255, 255)),
        HOGPeopleDetector(),
    ):
        with pytest.raises(DetectorError):
            safe_detect(d, frame, 0.0)


def test_safe_detect_accepts_float_and_grey_frames() -> None:
    grey = np.zeros((48, 64), np.float32)
    d = safe_detect(BackgroundSubtractionDetector(), grey, 0.0)
    assert len(d) == 0
    assert as_image(np.full((16, 16), 300.0)).max() == 255


def test_safe_detect_rejects_bad_time_and_bad_detector_objects() -> None:
    good = CallableDetector(lambda f: ([], []))
    for t in (float("nan"), float("inf"), "soon", None):
        with pytest.raises(DetectorError, match="timestamp"):
            safe_detect(good, FRAME, t)  # type: ignore[arg-type]

    class NoDetect:
        name = "nodetect"

    class BadName:
        @property
        def name(self) -> str:
            raise RuntimeError("no name")

        def detect(self, frame: Any, t: float) -> Any:
            return 42

    class WrongSpace:
        name = "radarish"

        def detect(self, frame: Any, t: float) -> Detections:
            return Detections.from_points([[1.0, 2.0]], t=t)

    with pytest.raises(DetectorError, match="detect"):
        safe_detect(NoDetect(), FRAME, 0.0)  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="int"):
        safe_detect(BadName(), FRAME, 0.0)  # type: ignore[arg-type]
    assert len(safe_detect(WrongSpace(), FRAME, 0.0)) == 1
    with pytest.raises(DetectorError, match="expected 'box'"):
        safe_detect(WrongSpace(), FRAME, 0.0, space="box")


def test_safe_detect_catches_detections_built_past_validation() -> None:
    forged = object.__new__(Detections)
    for k, v in dict(
        z=np.array([[1.0, 2.0, np.nan, 1.0]]),
        R=np.zeros((1, 4, 4)),
        scores=np.ones(1),
        labels=np.zeros(1, np.int64),
        t=0.0,
        sensor="s",
        space="box",
        range_rate=None,
    ).items():
        object.__setattr__(forged, k, v)

    class Forger:
        name = "forger"

        def detect(self, frame: Any, t: float) -> Detections:
            return forged

    with pytest.raises(DetectorError, match="NaN"):
        safe_detect(Forger(), FRAME, 0.0)


def test_callable_detector_may_accept_raw_input() -> None:
    det = CallableDetector(lambda raw: ([raw["box"]], [0.5]), check_frame=False)
    d = safe_detect(det, {"box": [0, 0, 2, 3]}, 1.0)
    assert len(d) == 1


# --------------------------------------------------------------------------- property: never leaks
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.complex_numbers(),
)
garbage_leaf = st.one_of(
    scalars,
    st.lists(scalars, max_size=5),
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5), max_size=4),
    st.builds(
        lambda shape, fill: np.full(shape, fill),
        st.tuples(st.integers(0, 3), st.integers(0, 5)),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    st.builds(
        lambda n, seed: np.random.default_rng(seed).normal(0, 50, (n, 4)),
        st.integers(0, 4),
        st.integers(0, 2**32 - 1),
    ),
    st.dictionaries(st.text(max_size=2), scalars, max_size=2),
)
garbage = st.one_of(
    garbage_leaf,
    st.tuples(garbage_leaf, garbage_leaf),
    st.tuples(garbage_leaf, garbage_leaf, garbage_leaf),
    st.lists(garbage_leaf, max_size=4),
)


@given(garbage)
def test_safe_detect_never_raises_anything_but_detector_error(value: Any) -> None:
    det = CallableDetector(lambda f: value, name="fuzz")
    try:
        d = safe_detect(det, FRAME, 0.0)
    except DetectorError as exc:
        assert exc.detector == "fuzz" and exc.reason
    else:
        check_valid(d, 0.0, "camera")


@given(garbage)
def test_safe_detect_never_leaks_on_garbage_frames(frame: Any) -> None:
    for det in (CallableDetector(lambda f: ([], [])), BackgroundSubtractionDetector()):
        try:
            safe_detect(det, frame, 0.0)
        except DetectorError:
            pass
