"""Association: cost matrices against per-pair loops, and the assignment's guarantees."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from perception.association import (
    Assignment,
    associate,
    chi2_gate,
    iou_matrix,
    iou_matrix_z,
    mahalanobis_cost,
)
from perception.detections import xyxy_to_z, z_to_xyxy

# ---------------------------------------------------------------- strategies
_cost_value = st.one_of(
    st.floats(0.0, 20.0, allow_nan=False),
    st.just(np.inf),
    st.just(np.nan),
)


@st.composite
def cost_and_gate(draw: st.DrawFn) -> tuple[np.ndarray, float]:
    t = draw(st.integers(0, 6))
    d = draw(st.integers(0, 6))
    cost = draw(arrays(np.float64, (t, d), elements=_cost_value))
    gate = draw(st.floats(0.0, 20.0))
    return cost, gate


def _check_valid(a: Assignment, cost: np.ndarray, gate: float) -> None:
    t, d = cost.shape
    m = a.matches
    assert m.shape == (m.shape[0], 2)
    # one-to-one
    assert len(set(m[:, 0].tolist())) == m.shape[0]
    assert len(set(m[:, 1].tolist())) == m.shape[0]
    # every match inside its gate
    if m.size:
        c = cost[m[:, 0], m[:, 1]]
        assert np.all(np.isfinite(c))
        assert np.all(c <= gate)
    # leftovers partition the rest
    assert sorted(m[:, 0].tolist() + a.unmatched_tracks.tolist()) == list(range(t))
    assert sorted(m[:, 1].tolist() + a.unmatched_dets.tolist()) == list(range(d))


def _best_by_brute_force(cost: np.ndarray, gate: float) -> tuple[int, float]:
    """(max number of gated matches, min total cost among those) over all matchings."""
    t, d = cost.shape
    feasible = np.isfinite(cost) & (cost <= gate)
    best = (0, 0.0)
    for k in range(1, min(t, d) + 1):
        for rows in itertools.combinations(range(t), k):
            for cols in itertools.permutations(range(d), k):
                if all(feasible[r, c] for r, c in zip(rows, cols, strict=True)):
                    total = float(sum(cost[r, c] for r, c in zip(rows, cols, strict=True)))
                    if k > best[0] or (k == best[0] and total < best[1]):
                        best = (k, total)
    return best


# ---------------------------------------------------------------- associate
@given(cost_and_gate())
def test_associate_is_one_to_one_and_respects_gate(cg: tuple[np.ndarray, float]) -> None:
    cost, gate = cg
    _check_valid(associate(cost, gate), cost, gate)


@given(cost_and_gate())
def test_associate_maximises_gated_matches_then_minimises_cost(
    cg: tuple[np.ndarray, float],
) -> None:
    cost, gate = cg
    cost = cost[:4, :4]
    a = associate(cost, gate)
    k, total = _best_by_brute_force(cost, gate)
    assert a.matches.shape[0] == k
    got = float(cost[a.matches[:, 0], a.matches[:, 1]].sum()) if k else 0.0
    assert got == pytest.approx(total, abs=1e-9)


def test_associate_never_takes_an_out_of_gate_pair_even_when_cheaper_overall() -> None:
    # The only cheap global optimum uses pair (1, 1) which is outside the gate.
    cost = np.array([[1.0, 2.0], [2.0, 50.0]])
    a = associate(cost, gate=10.0)
    assert {tuple(r) for r in a.matches.tolist()} == {(0, 1), (1, 0)}
    a = associate(np.array([[1.0, 50.0], [50.0, 50.0]]), gate=10.0)
    assert a.matches.tolist() == [[0, 0]]
    assert a.unmatched_tracks.tolist() == [1]
    assert a.unmatched_dets.tolist() == [1]


def test_associate_empty_and_all_infeasible() -> None:
    for shape in [(0, 0), (0, 3), (3, 0)]:
        a = associate(np.zeros(shape), 1.0)
        assert a.matches.shape == (0, 2)
        assert a.unmatched_tracks.tolist() == list(range(shape[0]))
        assert a.unmatched_dets.tolist() == list(range(shape[1]))
    a = associate(np.full((2, 3), 5.0), 1.0)
    assert a.matches.shape == (0, 2)
    assert a.unmatched_tracks.tolist() == [0, 1]
    assert a.unmatched_dets.tolist() == [0, 1, 2]


def test_associate_rejects_non_matrix() -> None:
    with pytest.raises(ValueError):
        associate(np.zeros(3), 1.0)


# ---------------------------------------------------------------- costs
def test_chi2_gate_values() -> None:
    assert chi2_gate(0.99, 2) == pytest.approx(9.2103, abs=1e-3)
    assert chi2_gate(0.95, 4) == pytest.approx(9.4877, abs=1e-3)
    with pytest.raises(ValueError):
        chi2_gate(1.0, 2)
    with pytest.raises(ValueError):
        chi2_gate(0.9, 0)


def _random_spd(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    A = rng.normal(size=(n, m, m))
    return A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(m)


@given(st.integers(0, 2**32 - 1), st.integers(0, 5), st.integers(0, 5), st.sampled_from([2, 4]),
       st.booleans())
def test_mahalanobis_cost_matches_per_pair_loop(
    seed: int, t: int, d: int, m: int, shared_r: bool
) -> None:
    rng = np.random.default_rng(seed)
    zp = rng.normal(size=(t, m)) * 3
    Sp = _random_spd(rng, t, m)
    z = rng.normal(size=(d, m)) * 3
    if shared_r:
        R = np.broadcast_to(_random_spd(rng, 1, m), (d, m, m)).copy()
    else:
        R = _random_spd(rng, d, m)
    got = mahalanobis_cost(zp, Sp, z, R)
    assert got.shape == (t, d)
    for i in range(t):
        for j in range(d):
            y = z[j] - zp[i]
            want = y @ np.linalg.inv(Sp[i] + R[j]) @ y
            assert got[i, j] == pytest.approx(want, rel=1e-8, abs=1e-10)


def test_mahalanobis_cost_survives_singular_innovation_covariance() -> None:
    zp = np.array([[0.0, 0.0]])
    Sp = np.zeros((1, 2, 2))
    z = np.array([[1.0, 0.0], [0.0, 2.0]])
    R = np.zeros((2, 2, 2))
    got = mahalanobis_cost(zp, Sp, z, R)
    assert got.shape == (1, 2)
    assert np.all(np.isfinite(got))


_box = st.tuples(
    st.floats(-50, 50), st.floats(-50, 50), st.floats(0.0, 40), st.floats(0.0, 40)
).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])


@given(st.lists(_box, max_size=5), st.lists(_box, max_size=5))
def test_iou_matrix_matches_scalar_definition(a: list[list[float]], b: list[list[float]]) -> None:
    A = np.array(a, dtype=np.float64).reshape(-1, 4)
    B = np.array(b, dtype=np.float64).reshape(-1, 4)
    got = iou_matrix(A, B)
    assert got.shape == (len(a), len(b))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            want = inter / union if union > 0 else 0.0
            assert got[i, j] == pytest.approx(want, abs=1e-9)
    assert np.all((got >= 0.0) & (got <= 1.0 + 1e-12))


def test_iou_identical_and_disjoint() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 120.0]])
    got = iou_matrix(a, a)
    assert got == pytest.approx(np.eye(2))
    half = iou_matrix(a[:1], np.array([[5.0, 0.0, 15.0, 10.0]]))
    assert half[0, 0] == pytest.approx(50.0 / 150.0)


def test_extreme_but_proper_boxes_survive_the_sort_parametrisation() -> None:
    """A box 1e-256 px wide and 1 px high: s r underflows, √s √r does not."""
    A = np.array([[0.0, 0.0, 1.13e-256, 1.0], [0.0, 0.0, 1e150, 1e-150]])
    za = xyxy_to_z(A)
    np.testing.assert_allclose(z_to_xyxy(za), A, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(iou_matrix_z(za, za), np.eye(2), atol=1e-12)


@given(st.lists(_box, max_size=5), st.lists(_box, max_size=5))
def test_iou_matrix_z_equals_iou_of_the_converted_boxes(
    a: list[list[float]], b: list[list[float]]
) -> None:
    A = np.array(a, dtype=np.float64).reshape(-1, 4)
    B = np.array(b, dtype=np.float64).reshape(-1, 4)
    A = A[(A[:, 2] > A[:, 0]) & (A[:, 3] > A[:, 1])]  # proper boxes only
    B = B[(B[:, 2] > B[:, 0]) & (B[:, 3] > B[:, 1])]
    za, zb = xyxy_to_z(A), xyxy_to_z(B)
    np.testing.assert_allclose(iou_matrix_z(za, zb), iou_matrix(A, B), atol=1e-9)
    np.testing.assert_allclose(iou_matrix_z(za, zb), iou_matrix(z_to_xyxy(za), z_to_xyxy(zb)),
                               atol=1e-12)
    # a state head with non-positive area is an empty box: overlaps nothing
    bad = za.copy()
    bad[:, 2] = -1.0
    assert np.all(iou_matrix_z(bad, zb) == 0.0)
