"""Detections: validation names the offending field; builders convert covariances correctly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from perception.detections import Detections, xyxy_to_z, z_to_xyxy
from perception.errors import InvalidDetectionsError

GOOD = dict(
    z=np.zeros((2, 2)), R=np.stack([np.eye(2)] * 2), scores=[0.5, 1.0], labels=[0, 1], t=0.0
)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"z": np.array([[np.nan, 0.0], [0.0, 0.0]])}, "z"),
        ({"z": np.array([[np.inf, 0.0], [0.0, 0.0]])}, "z"),
        ({"z": np.zeros((2, 3))}, "z"),
        ({"z": np.array([[1j, 0], [0, 0]])}, "z"),
        ({"R": np.stack([np.eye(2)] * 3)}, "R"),
        ({"R": np.stack([np.eye(2), -np.eye(2)])}, "R"),
        ({"R": np.stack([np.eye(2), np.array([[1.0, 2.0], [0.0, 1.0]])])}, "R"),
        ({"scores": [0.5]}, "scores"),
        ({"scores": [0.5, 1.5]}, "scores"),
        ({"scores": [0.5, np.nan]}, "scores"),
        ({"labels": [0.5, 1.0]}, "labels"),
        ({"labels": [0]}, "labels"),
        ({"t": float("nan")}, "t"),
        ({"t": "soon"}, "t"),
        ({"z": "garbage"}, "z"),
    ],
)
def test_invalid_input_raises_typed_error_naming_the_field(change: dict, field: str) -> None:
    with pytest.raises(InvalidDetectionsError) as info:
        Detections(**{**GOOD, **change})
    assert info.value.field == field


def test_valid_detections_are_read_only_and_sliceable() -> None:
    d = Detections(**GOOD)
    assert len(d) == 2 and d.dim == 2
    with pytest.raises(ValueError):
        d.z[0, 0] = 1.0
    assert len(d.subset(np.array([True, False]))) == 1
    assert d.with_time(3.0).t == 3.0
    assert len(Detections.empty(1.0, "x", "box")) == 0


def test_box_builder_matches_finite_difference_jacobian() -> None:
    box = np.array([[10.0, 20.0, 40.0, 80.0]])
    d = Detections.from_boxes(box, t=0.0, sigma_px=2.0)
    eps = 1e-6
    J = np.column_stack(
        [(xyxy_to_z(box + eps * e) - xyxy_to_z(box - eps * e))[0] / (2 * eps) for e in np.eye(4)]
    )
    np.testing.assert_allclose(d.R[0], 4.0 * J @ J.T, rtol=1e-6, atol=1e-9)
    xywh = Detections.from_boxes([[10.0, 20.0, 30.0, 60.0]], t=0.0, fmt="xywh")
    np.testing.assert_allclose(xywh.z, d.z)


def test_box_builder_rejects_degenerate_boxes() -> None:
    with pytest.raises(InvalidDetectionsError):
        Detections.from_boxes([[10.0, 10.0, 5.0, 20.0]], t=0.0)


def test_polar_covariance_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    r, a, sr, sa = 30.0, 0.4, 0.5, np.deg2rad(2.0)
    d = Detections.from_polar([r], [a], t=0.0, sigma_range=sr, sigma_azimuth=sa, range_rate=[1.0])
    rs = r + sr * rng.standard_normal(200_000)
    az = a + sa * rng.standard_normal(200_000)
    emp = np.cov(np.column_stack([rs * np.cos(az), rs * np.sin(az)]).T)
    np.testing.assert_allclose(d.R[0], emp, rtol=0.03, atol=1e-3)
    np.testing.assert_allclose(d.z[0], [r * np.cos(a), r * np.sin(a)])
    with pytest.raises(InvalidDetectionsError):
        Detections.from_polar([-1.0], [0.0], t=0.0)


@given(
    hnp.arrays(np.float64, (5, 2), elements=st.floats(-1e3, 1e3)),
    hnp.arrays(np.float64, (5, 2), elements=st.floats(1.0, 500.0)),
)
def test_box_measurement_round_trip(corner: np.ndarray, size: np.ndarray) -> None:
    xyxy = np.column_stack([corner, corner + size])
    np.testing.assert_allclose(z_to_xyxy(xyxy_to_z(xyxy)), xyxy, rtol=1e-9, atol=1e-9)
