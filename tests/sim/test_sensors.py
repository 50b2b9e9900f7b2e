"""Sensors: FOV/range limits, occlusion, range-dependent noise, clutter, rendering + detector."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from perception.detections import Detections
from safety.channels import FieldOfView
from sim.render import RenderConfig, actor_boxes, render_frame
from sim.sensors import (
    CameraConfig,
    CameraSensor,
    FrameCamera,
    FrameCameraConfig,
    RadarConfig,
    RadarSensor,
    SensorConfig,
    build_detector,
    make_sensor,
    occlusion_fraction,
)
from sim.world import ActorConfig, EgoConfig, Truth, World, WorldConfig


def truth_of(
    positions: list[tuple[float, float]], *, kind: str = "vehicle", speed: float = 0.0
) -> Truth:
    cfg = WorldConfig(
        ego=EgoConfig(speed=speed),
        actors=[ActorConfig(id=i + 1, kind=kind, position=p) for i, p in enumerate(positions)],  # type: ignore[arg-type]
    )
    return World(cfg).truth()


def perfect_camera(**kw: object) -> CameraSensor:
    base = {"channel": "camera", "p_detect": 1.0, "p_detect_far": 1.0}
    base.update(kw)
    return CameraSensor(CameraConfig.model_validate(base))


# ----------------------------------------------------------------------------- configs
def test_sensor_config_is_discriminated_by_kind() -> None:
    ta = TypeAdapter(SensorConfig)
    assert isinstance(ta.validate_python({"kind": "radar", "channel": "r"}), RadarConfig)
    assert isinstance(ta.validate_python({"kind": "camera", "channel": "c"}), CameraConfig)
    assert isinstance(
        ta.validate_python({"kind": "camera_frames", "channel": "f"}), FrameCameraConfig
    )
    with pytest.raises(ValidationError):
        ta.validate_python({"kind": "sonar", "channel": "s"})
    with pytest.raises(ValidationError):
        ta.validate_python({"kind": "radar", "channel": "r", "clutter": 3})
    assert isinstance(
        make_sensor(ta.validate_python({"kind": "radar", "channel": "r"})), RadarSensor
    )


def test_rate_grid() -> None:
    cam = perfect_camera(rate_hz=5.0)
    due = [cam.due(round(i * 0.05, 10)) for i in range(21)]  # 20 Hz steps over 1 s
    assert sum(due) == 6 and due[0] and due[4] and due[20] and not due[1]


# ----------------------------------------------------------------------------- camera
def test_camera_field_of_view_and_range_limits() -> None:
    fov = FieldOfView(azimuth_min_deg=-30, azimuth_max_deg=30, range_max=50)
    cam = perfect_camera(fov=fov)
    t = truth_of([(20, 0), (20, 15), (60, 0), (-10, 0), (10, -5)])  # 0°, 37°, 60 m, behind, -27°
    d = cam.measure(0.0, t, np.random.default_rng(0))
    assert len(d) == 2
    assert d.space == "point" and d.sensor == "camera"
    az = np.degrees(np.arctan2(d.z[:, 1], d.z[:, 0]))
    assert np.all(np.abs(az) <= 31)


def test_occlusion_fraction_geometry() -> None:
    sizes = np.array([[4.5, 1.8]] * 3)
    frac = occlusion_fraction(np.array([[10.0, 0.0], [30.0, 0.0], [30.0, 10.0]]), sizes)
    assert frac[0] == 0.0  # nearest: nothing in front
    assert frac[1] == 1.0  # straight behind the first car, narrower in angle
    assert frac[2] == 0.0  # off to the side
    half = occlusion_fraction(np.array([[10.0, 0.0], [20.0, 1.8]]), sizes[:2])
    assert 0.2 < half[1] < 0.8


def test_camera_does_not_see_an_occluded_actor() -> None:
    cam = perfect_camera()
    t = truth_of([(10, 0), (30, 0), (30, 10)])
    rng = np.random.default_rng(1)
    counts = np.zeros(3)
    for _ in range(50):
        d = cam.measure(0.0, t, rng)
        near = np.argmin(
            np.hypot(
                d.z[:, None, 0] - t.positions[None, :, 0], d.z[:, None, 1] - t.positions[None, :, 1]
            ),
            axis=1,
        )
        counts += np.bincount(near, minlength=3)
    assert counts[0] == 50 and counts[2] == 50 and counts[1] == 0


def test_camera_noise_grows_with_range() -> None:
    cam = perfect_camera(score_noise=0.0)
    rng = np.random.default_rng(2)
    near, far = truth_of([(10, 0)]), truth_of([(60, 0)])
    en = np.array([cam.measure(0.0, near, rng).z[0] - [10, 0] for _ in range(400)])
    ef = np.array([cam.measure(0.0, far, rng).z[0] - [60, 0] for _ in range(400)])
    sn, sf = en.std(axis=0), ef.std(axis=0)
    assert sf[0] > 3 * sn[0] and sf[1] > 3 * sn[1]
    # declared covariance tracks the real error: normalised squared error ≈ 2 (χ², 2 dof)
    d = cam.measure(0.0, far, rng)
    exp = 0.2 + 5e-4 * 60**2
    assert math.sqrt(d.R[0, 0, 0]) == pytest.approx(exp, rel=0.15)
    assert sf[0] == pytest.approx(exp, rel=0.15)


def test_camera_scores_fall_with_range_and_detection_probability_holds() -> None:
    cam = CameraSensor(CameraConfig(channel="c", p_detect=0.9, p_detect_far=0.5, score_noise=0.0))
    rng = np.random.default_rng(3)
    near, far = truth_of([(5, 0)]), truth_of([(75, 0)])
    dn = [cam.measure(0.0, near, rng) for _ in range(2000)]
    df = [cam.measure(0.0, far, rng) for _ in range(2000)]
    pn = np.mean([len(d) for d in dn])
    pf = np.mean([len(d) for d in df])
    assert pn == pytest.approx(0.9 - 0.4 * 5 / 80, abs=0.03)
    assert pf == pytest.approx(0.9 - 0.4 * 75 / 80, abs=0.04)
    sn = np.mean([d.scores[0] for d in dn if len(d)])
    sf = np.mean([d.scores[0] for d in df if len(d)])
    assert sn > sf + 0.2


def test_camera_labels_are_actor_kinds() -> None:
    d = perfect_camera().measure(0.0, truth_of([(20, 0)], kind="cyclist"), np.random.default_rng(0))
    assert d.labels.tolist() == [2]


def test_camera_box_output_lands_on_projected_actor() -> None:
    cam = perfect_camera(output="box", sigma_px=1.0)
    t = truth_of([(20, 0), (30, 4)])
    d = cam.measure(0.5, t, np.random.default_rng(4))
    assert d.space == "box" and len(d) == 2
    expect, _ = actor_boxes(t, cam._camera)
    np.testing.assert_allclose(d.boxes_xyxy(), expect, atol=5.0)


def test_same_rng_state_same_output() -> None:
    cam = CameraSensor(CameraConfig(channel="c"))
    t = truth_of([(20, 0), (30, 4), (50, -3)])
    a = cam.measure(0.0, t, np.random.default_rng(9))
    b = cam.measure(0.0, t, np.random.default_rng(9))
    assert a.z.tobytes() == b.z.tobytes() and a.scores.tobytes() == b.scores.tobytes()


# ----------------------------------------------------------------------------- radar
def test_radar_clutter_rate_matches_config() -> None:
    radar = RadarSensor(RadarConfig(channel="r", clutter_rate=2.5))
    rng = np.random.default_rng(5)
    empty = truth_of([])
    counts = np.array([len(radar.measure(0.0, empty, rng)) for _ in range(2000)])
    assert counts.mean() == pytest.approx(2.5, abs=0.12)
    assert counts.var() == pytest.approx(2.5, rel=0.15)  # Poisson: variance = mean
    d = radar.measure(0.0, empty, rng)
    assert np.all(RadarConfig(channel="r").fov.contains(d.z, margin=-1e-6))


def test_radar_measures_range_rate_and_respects_fov() -> None:
    radar = RadarSensor(RadarConfig(channel="r", clutter_rate=0.0, p_detect=1.0))
    t = truth_of([(40, 0), (10, 60)], speed=10.0)  # static actors, ego at 10 m/s: closing
    d = radar.measure(0.0, t, np.random.default_rng(6))
    assert len(d) == 1  # the second one is at 80° azimuth, outside ±60°
    assert d.range_rate is not None and d.range_rate[0] == pytest.approx(-10.0, abs=1.0)
    assert d.z[0, 0] == pytest.approx(40.0, abs=1.5)


def test_radar_detection_probability() -> None:
    radar = RadarSensor(RadarConfig(channel="r", clutter_rate=0.0, p_detect=0.7))
    rng = np.random.default_rng(7)
    t = truth_of([(30, 0)])
    rate = np.mean([len(radar.measure(0.0, t, rng)) for _ in range(3000)])
    assert rate == pytest.approx(0.7, abs=0.03)


# ----------------------------------------------------------------------------- frames
def frame_world() -> Truth:
    return truth_of([(15, 0), (25, 4), (35, -4), (-5, 0)])


def test_rendered_frame_is_deterministic_and_shaped() -> None:
    cam = FrameCamera(FrameCameraConfig(channel="f"))
    t = frame_world()
    a = cam.measure(0.0, t, np.random.default_rng(8))
    b = cam.measure(0.0, t, np.random.default_rng(8))
    assert a.shape == (480, 640, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda c: (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])  # noqa: E731
    return np.asarray(inter / (area(a)[:, None] + area(b)[None, :] - inter))


def test_colour_blob_detector_finds_rendered_actors() -> None:
    cfg = FrameCameraConfig(channel="f")
    cam = FrameCamera(cfg)
    det = build_detector(cfg)
    t = frame_world()
    frame = cam.measure(0.0, t, np.random.default_rng(10))
    d = det.detect(frame, 0.0)
    assert isinstance(d, Detections) and d.space == "box" and d.sensor == "f"
    expect, front = cam.project_truth(t)
    expect = expect[front]
    assert len(expect) == 3 and len(d) == 3
    iou = box_iou(expect, d.boxes_xyxy())
    assert np.all(iou.max(axis=1) > 0.8)  # every projected actor has its detection


def test_background_subtraction_detector_finds_moving_actors() -> None:
    cfg = FrameCameraConfig(channel="f", detector="background_subtraction")
    cam = FrameCamera(cfg)
    det = build_detector(cfg)
    rng = np.random.default_rng(11)
    empty = truth_of([])
    for k in range(30):  # learn the (static) background
        det.detect(cam.measure(k * 0.1, empty, rng), k * 0.1)
    t = frame_world()
    d = det.detect(cam.measure(3.0, t, rng), 3.0)
    expect, front = cam.project_truth(t)
    iou = box_iou(expect[front], d.boxes_xyxy())
    assert np.all(iou.max(axis=1) > 0.6)


def test_darkness_in_render_config_hides_actors_from_colour_detector() -> None:
    dark = FrameCameraConfig(channel="f", render=RenderConfig(light_gain=0.1))
    nominal = FrameCameraConfig(channel="f")
    frame = FrameCamera(dark).measure(0.0, frame_world(), np.random.default_rng(12))
    assert len(build_detector(nominal).detect(frame, 0.0)) == 0


def test_render_draws_near_actor_over_far_actor() -> None:
    cam = FrameCamera(FrameCameraConfig(channel="f"))
    t = truth_of([(30, 0), (12, 0)])
    frame = render_frame(t, cam.camera, RenderConfig(noise_sigma=0.0))
    boxes, _ = actor_boxes(t, cam.camera)
    d = build_detector(FrameCameraConfig(channel="f")).detect(frame, 0.0)
    assert len(d) == 1  # the far car is hidden behind the near one
    assert box_iou(boxes[1:2], d.boxes_xyxy())[0, 0] > 0.8
