"""Pinhole camera: projection round trips, box ↔ ground, covariance against finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from perception.camera import PinholeCamera
from perception.detections import Detections, xyxy_to_z


@st.composite
def cameras(draw: st.DrawFn) -> PinholeCamera:
    w = draw(st.integers(320, 1920))
    h = draw(st.integers(240, 1080))
    f = draw(st.floats(200.0, 2000.0))
    return PinholeCamera(
        fx=f,
        fy=f * draw(st.floats(0.9, 1.1)),
        cx=w / 2 + draw(st.floats(-20, 20)),
        cy=h / 2 + draw(st.floats(-20, 20)),
        width=w,
        height=h,
        mount_height=draw(st.floats(0.3, 3.0)),
        pitch_rad=draw(st.floats(-0.05, 0.4)),
        yaw_rad=draw(st.floats(-0.5, 0.5)),
        x_offset=draw(st.floats(-2.0, 3.0)),
        y_offset=draw(st.floats(-1.0, 1.0)),
    )


def ground_pixels(cam: PinholeCamera, fu: float, fv: float) -> np.ndarray:
    """A pixel inside the image and safely below the horizon, from fractions in [0, 1]."""
    u = fu * (cam.width - 1)
    hz = float(cam.horizon_v(u))
    top = max(0.0, hz + 5.0) if math.isfinite(hz) else 0.0
    assume(top < cam.height - 1)
    return np.array([[u, top + fv * (cam.height - 1 - top)]])


CAM = PinholeCamera.from_fov(1280, 720, 90.0, 1.4, pitch_rad=0.05, yaw_rad=0.1, x_offset=1.5)


# --------------------------------------------------------------------------- geometry basics
def test_axis_conventions() -> None:
    cam = PinholeCamera.from_fov(640, 480, 90.0, 1.5)  # level, looking along +x
    uv = cam.project([[10.0, 0.0, 1.5], [10.0, 2.0, 1.5], [10.0, 0.0, 0.0], [-10.0, 0.0, 0.0]])
    np.testing.assert_allclose(uv[0], [320, 240])  # straight ahead at camera height → centre
    assert uv[1, 0] < 320  # y left → image left
    assert uv[2, 1] > 240  # ground ahead → below centre
    assert np.all(np.isnan(uv[3]))  # behind → flagged NaN
    np.testing.assert_allclose(cam.horizon_v([0, 320]), [240, 240])
    down = PinholeCamera.from_fov(640, 480, 90.0, 1.5, pitch_rad=0.2)
    assert down.horizon_v(320) < 240  # pitched down: horizon moves up
    left = PinholeCamera.from_fov(640, 480, 90.0, 1.5, yaw_rad=0.3)
    assert left.project([[10.0, 0.0]])[0, 0] > 320  # turned left: straight-ahead moves right


def test_visible_and_in_front() -> None:
    pts = np.array([[10.0, 0.0], [10.0, 50.0], [-3.0, 0.0], [2.0, 0.0], [30.0, -2.0]])
    assert CAM.in_front(pts).tolist() == [True, True, False, True, True]
    assert CAM.visible(pts).tolist() == [True, False, False, False, True]


def test_invalid_parameters_rejected() -> None:
    for kw in ({"fx": 0.0}, {"mount_height": -1.0}, {"width": 0}, {"pitch_rad": math.nan}):
        base = dict(fx=500.0, fy=500.0, cx=320.0, cy=240.0, width=640, height=480, mount_height=1.0)
        base.update(kw)
        with pytest.raises(ValueError):
            PinholeCamera(**base)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CAM.project(np.zeros((3, 4)))


# --------------------------------------------------------------------------- round trips
@given(cameras(), st.floats(0, 1), st.floats(0, 1))
def test_pixel_ground_pixel_round_trip(cam: PinholeCamera, fu: float, fv: float) -> None:
    px = ground_pixels(cam, fu, fv)
    g, _ = cam.pixel_to_ground(px)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(cam.project(g), px, atol=1e-6)


@given(cameras(), st.floats(1.0, 80.0), st.floats(-30.0, 30.0))
def test_ground_pixel_ground_round_trip(cam: PinholeCamera, x: float, y: float) -> None:
    p = np.array([[cam.x_offset + x, y]])
    assume(cam.visible(p)[0])
    uv = cam.project(p)
    assume(float(uv[0, 1]) > float(cam.horizon_v(uv[0, 0])) + 1.0)  # not on the horizon line
    g, _ = cam.pixel_to_ground(uv)
    np.testing.assert_allclose(g, p, rtol=1e-7, atol=1e-6)


@given(cameras(), st.floats(0, 1), st.floats(0, 1), st.floats(0.3, 3.0), st.floats(0.5, 2.5))
def test_box_ground_box_round_trip(
    cam: PinholeCamera, fu: float, fv: float, width_m: float, height_m: float
) -> None:
    g, _ = cam.pixel_to_ground(ground_pixels(cam, fu, fv))
    boxes = cam.ground_to_box(g, width_m, height_m)
    assume(np.all(np.isfinite(boxes)))  # a tall object right below the camera: top behind it
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    back, cov = cam.box_to_ground(boxes, 2.0)
    np.testing.assert_allclose(back, g, rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(
        cam.ground_to_box(back, width_m, height_m), boxes, rtol=1e-7, atol=1e-5
    )
    assert np.all(np.linalg.eigvalsh(cov) >= -1e-12)


def test_ground_to_box_size_follows_distance() -> None:
    pts = np.array([[5.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    b = CAM.ground_to_box(pts, [0.6, 0.6, 0.6], 1.8)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    assert np.all(np.diff(w) < 0) and np.all(np.diff(h) < 0)
    np.testing.assert_allclose(w * np.array([3.5, 8.5, 18.5]), w[0] * 3.5, rtol=0.02)
    assert np.all(np.isnan(CAM.ground_to_box([[-5.0, 0.0]], 1.0, 1.0)))


# --------------------------------------------------------------------------- covariance
def fd_jacobian(cam: PinholeCamera, px: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    J = np.zeros((len(px), 2, 2))
    for j in range(2):
        d = np.zeros(2)
        d[j] = eps
        J[:, :, j] = (cam.pixel_to_ground(px + d)[0] - cam.pixel_to_ground(px - d)[0]) / (2 * eps)
    return J


@given(cameras(), st.floats(0, 1), st.floats(0, 1), st.floats(0.2, 5.0), st.floats(-0.8, 0.8))
def test_covariance_matches_finite_difference_jacobian(
    cam: PinholeCamera, fu: float, fv: float, sigma: float, rho: float
) -> None:
    px = ground_pixels(cam, fu, fv)
    S = sigma**2 * np.array([[1.0, rho], [rho, 1.5]])
    _, cov = cam.pixel_to_ground(px, S)
    J = fd_jacobian(cam, px)
    expected = J @ S @ np.swapaxes(J, 1, 2)
    np.testing.assert_allclose(cov, expected, rtol=1e-4, atol=1e-10)


def test_far_points_have_larger_covariance() -> None:
    xs = np.array([4.0, 8.0, 16.0, 32.0, 64.0])
    pts = np.column_stack([CAM.x_offset + xs, np.zeros_like(xs)])
    boxes = CAM.ground_to_box(pts, 1.8, 1.5)
    _, cov = CAM.box_to_ground(boxes, 2.0)
    tr = np.trace(cov, axis1=1, axis2=2)
    assert np.all(np.diff(tr) > 0)
    assert tr[-1] / tr[0] > 100  # range error grows roughly with distance squared
    assert np.all(cov[:, 0, 0] > cov[:, 1, 1])  # the range direction is the uncertain one


def test_above_horizon_is_flagged_nan() -> None:
    g, cov = CAM.pixel_to_ground([[640.0, 0.0], [640.0, 700.0]])
    assert np.all(np.isnan(g[0])) and np.all(np.isnan(cov[0]))
    assert np.all(np.isfinite(g[1]))
    assert CAM.ground_hit([[640.0, 0.0], [640.0, 700.0]]).tolist() == [False, True]


# --------------------------------------------------------------------------- detections
def test_detections_to_ground_matches_box_to_ground_and_keeps_metadata() -> None:
    pts = np.array([[6.0, 1.0], [15.0, -2.0], [30.0, 4.0]])
    boxes = CAM.ground_to_box(pts, [0.5, 1.8, 0.7], [1.7, 1.5, 1.2])
    sky = np.array([[600.0, 10.0, 660.0, 60.0]])  # bottom edge above the horizon
    all_boxes = np.vstack([boxes[:2], sky, boxes[2:]])
    dets = Detections.from_boxes(
        all_boxes,
        t=4.25,
        scores=[0.9, 0.8, 0.7, 0.6],
        labels=[1, 2, 3, 4],
        sensor="front_cam",
        sigma_px=3.0,
    )
    out, kept = CAM.detections_to_ground_with_mask(dets)
    assert kept.tolist() == [True, True, False, True]
    assert out.space == "point" and out.t == 4.25 and out.sensor == "front_cam"
    assert out.scores.tolist() == [0.9, 0.8, 0.6] and out.labels.tolist() == [1, 2, 4]
    np.testing.assert_allclose(out.z, pts, rtol=1e-6, atol=1e-6)
    assert len(CAM.detections_to_ground(dets, max_range=20.0)) == 2
    assert np.all(np.isnan(CAM.ground_to_box([[1.6, 0.0]], 0.5, 3.0)[:, 1]))  # top behind camera
    with pytest.raises(ValueError, match="box"):
        CAM.detections_to_ground(Detections.from_points([[1.0, 2.0]], t=0.0))
    assert len(CAM.detections_to_ground(Detections.empty(0.0, "c", "box"))) == 0


def test_detections_to_ground_agrees_with_box_to_ground_for_from_boxes_covariance() -> None:
    pts = np.array([[6.0, 1.0], [15.0, -2.0], [30.0, 4.0]])
    boxes = CAM.ground_to_box(pts, [0.5, 1.8, 0.7], [1.7, 1.5, 1.2])
    out = CAM.detections_to_ground(Detections.from_boxes(boxes, t=0.0, sigma_px=3.0))
    _, cov = CAM.box_to_ground(boxes, 3.0)
    np.testing.assert_allclose(out.R, cov, rtol=1e-5, atol=1e-9)


def box_covariance(boxes: np.ndarray, sigma: float) -> np.ndarray:
    """[u, v, s, r] covariance of boxes with independent edge noise σ (correct Jacobian)."""
    x1, y1, x2, y2 = boxes.T
    w, h = x2 - x1, y2 - y1
    J = np.zeros((len(boxes), 4, 4))
    J[:, 0, 0] = J[:, 0, 2] = J[:, 1, 1] = J[:, 1, 3] = 0.5
    J[:, 2, 0], J[:, 2, 1], J[:, 2, 2], J[:, 2, 3] = -h, -w, h, w
    J[:, 3, 0], J[:, 3, 1], J[:, 3, 2], J[:, 3, 3] = -1 / h, w / h**2, 1 / h, -w / h**2
    return sigma**2 * J @ np.swapaxes(J, 1, 2)


def test_detections_to_ground_agrees_with_box_to_ground() -> None:
    pts = np.array([[6.0, 1.0], [15.0, -2.0], [30.0, 4.0]])
    boxes = CAM.ground_to_box(pts, [0.5, 1.8, 0.7], [1.7, 1.5, 1.2])
    R = box_covariance(boxes, 3.0) + 1e-9 * np.eye(4)
    dets = Detections(xyxy_to_z(boxes), R, np.ones(3), np.zeros(3, np.int64), 0.0, "c", "box")
    out = CAM.detections_to_ground(dets)
    _, cov = CAM.box_to_ground(boxes, 3.0)
    np.testing.assert_allclose(out.z, pts, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.R, cov, rtol=1e-5, atol=1e-9)


@given(
    cameras(),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(10.0, 200.0),
    st.floats(0.3, 3.0),
    st.floats(0.5, 4.0),
)
def test_detections_to_ground_covariance_matches_finite_differences_in_z(
    cam: PinholeCamera, fu: float, fv: float, w: float, r: float, sigma: float
) -> None:
    """The [u, v, s, r] → bottom-centre → ground chain, checked by finite differences in z."""
    bottom = ground_pixels(cam, fu, fv)[0]
    h = w / r
    z0 = np.array([bottom[0], bottom[1] - h / 2, w * h, r])
    R = np.diag([sigma**2, sigma**2, (sigma * 20) ** 2, 0.01])
    dets = Detections(z0[None], R[None], np.ones(1), np.zeros(1, np.int64), 0.0, "c", "box")
    out, kept = cam.detections_to_ground_with_mask(dets)
    assert kept.all()

    def f(z: np.ndarray) -> np.ndarray:
        hh = math.sqrt(z[2] / z[3])
        return cam.pixel_to_ground(np.array([[z[0], z[1] + hh / 2]]))[0][0]

    J = np.zeros((2, 4))
    for j in range(4):
        e = np.zeros(4)
        e[j] = 1e-6 * max(1.0, abs(z0[j]))
        J[:, j] = (f(z0 + e) - f(z0 - e)) / (2 * e[j])
    np.testing.assert_allclose(out.z[0], f(z0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(out.R[0], J @ R @ J.T, rtol=1e-4, atol=1e-10)
