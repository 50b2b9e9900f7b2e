"""CLEAR-MOT / IDF1: unit cases and exact agreement with py-motmetrics (when installed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perception.metrics import MotAccumulator, euclidean_distance, evaluate, iou_distance
from perception.mot import SAMPLES, MotSequence, read_mot, sample_paths, write_mot


def _frames(rows: list[tuple[int, int, float, float, float, float]]) -> MotSequence:
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return MotSequence(
        a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6], np.ones(len(a))
    )


def test_perfect_tracker_scores_one() -> None:
    gt = _frames([(f, i, 10.0 * i, 5.0, 8.0, 16.0) for f in range(1, 6) for i in range(1, 4)])
    s = evaluate(gt.by_frame(), gt.by_frame())
    assert s.mota == 1.0 and s.idf1 == 1.0 and s.num_switches == 0 and s.motp == 0.0


def test_identity_swap_counts_one_switch_and_lowers_idf1() -> None:
    gt = _frames([(f, 1, 0.0, 0.0, 10.0, 10.0) for f in range(1, 7)])
    hyp = _frames([(f, 7 if f <= 3 else 8, 0.0, 0.0, 10.0, 10.0) for f in range(1, 7)])
    s = evaluate(gt.by_frame(), hyp.by_frame())
    assert s.num_switches == 1
    assert s.mota == pytest.approx(1 - 1 / 6)
    assert s.idf1 == pytest.approx(0.5)


def test_distance_threshold_makes_misses_and_false_positives() -> None:
    gt = _frames([(1, 1, 0.0, 0.0, 10.0, 10.0)])
    hyp = _frames([(1, 1, 8.0, 8.0, 10.0, 10.0)])  # IoU ≈ 0.02 → do not pair
    s = evaluate(gt.by_frame(), hyp.by_frame())
    assert (s.num_misses, s.num_false_positives, s.num_matches) == (1, 1, 0)


def test_previous_correspondence_is_kept_over_a_closer_newcomer() -> None:
    acc = MotAccumulator()
    acc.update([1], [10], np.array([[0.1]]))
    acc.update([1], [10, 11], np.array([[0.4, 0.0]]))  # 10 still within threshold → kept
    s = acc.scores()
    assert s.num_switches == 0 and s.num_false_positives == 1


def test_euclidean_distance_gate() -> None:
    d = euclidean_distance(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0], [5.0, 0.0]]), max_dist=2.0)
    assert d[0, 0] == 1.0 and np.isnan(d[0, 1])


def test_iou_distance_matches_hand_computation() -> None:
    d = iou_distance(np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([[5.0, 0.0, 10.0, 10.0]]), 1.0)
    assert d[0, 0] == pytest.approx(1 - 50 / 150)


def test_mot_round_trip(tmp_path) -> None:
    seq = _frames([(1, 1, 1.5, 2.25, 3.0, 4.0), (2, 3, 5.0, 6.0, 7.0, 8.0)])
    write_mot(tmp_path / "x.txt", seq)
    back = read_mot(tmp_path / "x.txt")
    np.testing.assert_array_equal(back.frame, seq.frame)
    np.testing.assert_allclose(back.xywh, seq.xywh)


# ----------------------------------------------------------- cross-check with py-motmetrics
mm = pytest.importorskip("motmetrics", reason="cross-check needs the 'metrics' extra (motmetrics)")
if not hasattr(np, "asfarray"):  # py-motmetrics 1.4.0 still calls np.asfarray, removed in numpy 2
    np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]  # noqa: NPY201

_NAMES = [
    "mota",
    "motp",
    "idf1",
    "idp",
    "idr",
    "num_switches",
    "num_misses",
    "num_false_positives",
    "num_objects",
    "num_predictions",
    "idtp",
]


def _motmetrics(gt: MotSequence, hyp: MotSequence) -> dict[str, float]:
    acc = mm.MOTAccumulator(auto_id=False)
    g, h = gt.by_frame(), hyp.by_frame()
    for f in sorted(set(g) | set(h)):
        gi, gx = g.get(f, (np.zeros(0, np.int64), np.zeros((0, 4))))
        hi, hx = h.get(f, (np.zeros(0, np.int64), np.zeros((0, 4))))
        d = (
            mm.distances.iou_matrix(gx, hx, max_iou=0.5)
            if len(gi) and len(hi)
            else np.empty((len(gi), len(hi)))
        )
        acc.update(gi, hi, d, frameid=f)
    s = mm.metrics.create().compute(acc, metrics=_NAMES, name="x")
    return {k: float(s[k].iloc[0]) for k in _NAMES}


def _assert_agree(gt: MotSequence, hyp: MotSequence) -> None:
    ours = evaluate(gt.by_frame(), hyp.by_frame()).as_dict()
    ref = _motmetrics(gt, hyp)
    for k in _NAMES:
        if np.isnan(ref[k]):
            assert np.isnan(ours[k]), k
        else:
            assert ours[k] == pytest.approx(ref[k], abs=1e-6), k


@pytest.mark.parametrize("name", SAMPLES)
def test_agrees_with_motmetrics_on_real_sequences(name: str) -> None:
    gtp, detp = sample_paths(name)
    _assert_agree(read_mot(gtp, min_confidence=1), read_mot(detp))


_row = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(0, 6), st.integers(0, 6))


@given(
    st.lists(_row, max_size=25, unique_by=lambda r: (r[0], r[1])),
    st.lists(_row, max_size=25, unique_by=lambda r: (r[0], r[1])),
    st.randoms(use_true_random=False),
)
def test_agrees_with_motmetrics_on_random_sequences(g, h, rnd) -> None:
    def seq(rows):
        # jitter sizes so that assignment costs have no ties (ties may be broken differently)
        return _frames(
            [
                (f, i, 4.0 * x, 4.0 * y, 10.0 + rnd.random(), 10.0 + rnd.random())
                for f, i, x, y in rows
            ]
        )

    _assert_agree(seq(g), seq(h))
