"""Compiled paths of Detections and the tracking metrics against the numpy formulations they
replace (seeded random cases)."""

from __future__ import annotations

import numpy as np
import pytest

from perception.detections import Detections, InvalidDetectionsError, polar_points


def _polar_reference(r: np.ndarray, a: np.ndarray, sr: float, sa: float):
    c, s = np.cos(a), np.sin(a)
    z = np.column_stack([r * c, r * s])
    J = np.empty((r.size, 2, 2))
    J[:, 0, 0], J[:, 0, 1] = c, -r * s
    J[:, 1, 0], J[:, 1, 1] = s, r * c
    R = J @ np.diag([sr**2, sa**2]) @ np.swapaxes(J, 1, 2)
    return z, R


@pytest.mark.parametrize("seed", range(20))
def testpolar_points_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    r = rng.uniform(0.0, 150.0, n)
    a = rng.uniform(-np.pi, np.pi, n)
    sr, sa = float(rng.uniform(1e-3, 1.0)), float(rng.uniform(1e-5, 0.1))
    z, R, status = polar_points(r, a, sr**2, sa**2)
    z0, R0 = _polar_reference(r, a, sr, sa)
    assert status == 0
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_allclose(R, R0, rtol=1e-14, atol=1e-300)


def test_from_polar_errors_unchanged() -> None:
    with pytest.raises(InvalidDetectionsError, match="range"):
        Detections.from_polar([1.0, np.nan], [0.0, 0.1], t=0.0)
    with pytest.raises(InvalidDetectionsError, match="range"):
        Detections.from_polar([1.0, 2.0], [0.0, np.inf], t=0.0)
    with pytest.raises(InvalidDetectionsError, match="negative range"):
        Detections.from_polar([1.0, -2.0], [0.0, 0.1], t=0.0)


def _fields(d: Detections) -> tuple:
    return (d.z, d.R, d.scores, d.labels, d.range_rate, d.t)


def _random_case(rng: np.random.Generator, n: int, space: str) -> dict:
    m = 2 if space == "point" else 4
    z = rng.normal(size=(n, m)) * 10
    if space == "box":
        z[:, 2:4] = np.abs(z[:, 2:4]) + 0.1
    A = rng.normal(size=(n, m, m))
    R = A @ np.swapaxes(A, 1, 2)
    R = 0.5 * (R + np.swapaxes(R, 1, 2))
    return {
        "z": z,
        "R": R,
        "scores": rng.uniform(0, 1, n),
        "labels": rng.integers(0, 4, n),
        "t": float(rng.uniform(0, 10)),
        "sensor": "s",
        "space": space,
        "range_rate": rng.normal(size=n) if space == "point" and rng.random() < 0.5 else None,
    }


@pytest.mark.parametrize("seed", range(30))
def test_fast_validation_stores_what_full_validation_stores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    case = _random_case(rng, int(rng.integers(0, 6)), "point" if seed % 3 else "box")
    fast = Detections(**{k: (v.copy() if isinstance(v, np.ndarray) else v)
                         for k, v in case.items()})
    ref = object.__new__(Detections)  # the same inputs through the full validation only
    for k, v in case.items():
        object.__setattr__(ref, k, v.copy() if isinstance(v, np.ndarray) else v)
    ref._validate()
    for a, b in zip(_fields(fast), _fields(ref), strict=True):
        if isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert not a.flags.writeable and a.flags.c_contiguous
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("scores", 1.5, "outside"),
        ("scores", np.nan, "NaN"),
        ("z", np.inf, "NaN"),
        ("R", np.nan, "NaN"),
        ("range_rate", np.nan, "range_rate"),
        ("R_asym", 1.0, "symmetric"),
        ("R_neg", 1.0, "symmetric"),
    ],
)
def test_fast_path_rejects_like_the_full_path(field: str, value: float, match: str) -> None:
    rng = np.random.default_rng(7)
    case = _random_case(rng, 3, "point")
    case["range_rate"] = rng.normal(size=3)
    if field == "R_asym":
        case["R"][1, 0, 1] += value
    elif field == "R_neg":
        case["R"][2] = -case["R"][2]
    elif field in ("z", "R"):
        case[field].reshape(-1)[1] = value
    else:
        case[field][1] = value
    with pytest.raises(InvalidDetectionsError, match=match):
        Detections(**case)


def test_box_fast_path_rejects_non_positive_area() -> None:
    case = _random_case(np.random.default_rng(1), 2, "box")
    case["z"][1, 2] = 0.0
    with pytest.raises(InvalidDetectionsError, match="positive"):
        Detections(**case)


def _euclidean_reference(a: np.ndarray, b: np.ndarray, max_dist: float) -> np.ndarray:
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return np.where(d > max_dist, np.nan, d)


@pytest.mark.parametrize("seed", range(20))
def test_euclidean_distance_matches_numpy(seed: int) -> None:
    from perception.metrics import euclidean_distance

    rng = np.random.default_rng(seed)
    a = rng.normal(size=(int(rng.integers(0, 9)), 2)) * 5
    b = rng.normal(size=(int(rng.integers(0, 9)), 2)) * 5
    gate = float(rng.uniform(0.5, 10))
    np.testing.assert_array_equal(euclidean_distance(a, b, gate), _euclidean_reference(a, b, gate))
