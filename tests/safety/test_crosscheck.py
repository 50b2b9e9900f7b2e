"""Cross-checking: association, agreement, covariance-intersection fusion, voting, shadows, ids."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from perception.tracks import Tracks, TrackStatus
from safety.channels import ChannelConfig, FieldOfView
from safety.crosscheck import (
    CrosscheckConfig,
    CrossChecker,
    CrosscheckResult,
    assign_sparse,
    components,
    covariance_intersection,
    fov_masks,
    gated_pairs,
    hidden_among,
    hidden_behind,
    mahalanobis2,
)


def make_tracks(
    sensor: str,
    positions: list[list[float]] | np.ndarray,
    *,
    sigma: float = 0.3,
    ids: list[int] | None = None,
    status: list[int] | None = None,
    t: float = 0.0,
) -> Tracks:
    """Tracks with the given positions, isotropic position covariance, all confirmed by default."""
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    ids_a = np.arange(1, n + 1, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    st_a = np.full(n, TrackStatus.CONFIRMED, np.int64) if status is None else np.asarray(status)
    cov = np.broadcast_to(np.eye(2) * sigma**2, (n, 2, 2)).copy()
    x = np.zeros((n, 4))
    x[:, :2] = p
    x[:, 2] = 1.0
    P = np.broadcast_to(np.eye(4) * sigma**2, (n, 4, 4)).copy()
    z = np.zeros
    return Tracks(
        t=t, sensor=sensor, ids=ids_a, status=st_a, x=x, P=P, position=p, position_cov=cov,
        age=np.full(n, 5, np.int64), hits=np.full(n, 5, np.int64), time_since_update=z(n),
        cov_trace=np.trace(cov, axis1=1, axis2=2), updated=np.ones(n, bool), nis=z(n),
        innovation=z((n, 2)), innovation_cov=z((n, 2, 2)), scores=np.ones(n),
        labels=np.zeros(n, np.int64), det_index=np.arange(n, dtype=np.int64),
    )


def channels(*names: str, shadow: tuple[str, ...] = (), fov: dict[str, FieldOfView] | None = None):
    fov = fov or {}
    out = [ChannelConfig(name=n, role="primary" if i == 0 else "redundant",
                         fov=fov.get(n, FieldOfView())) for i, n in enumerate(names)]
    out += [ChannelConfig(name=n, role="shadow", fov=fov.get(n, FieldOfView())) for n in shadow]
    return out


CFG = CrosscheckConfig(persistence=1)
SCENE = [[10.0, 0.0], [20.0, 5.0], [30.0, -8.0], [15.0, -3.0]]


def spd(draw_vals: tuple[float, float, float]) -> np.ndarray:
    a, b, c = draw_vals
    L = np.array([[a, 0.0], [b, c]])
    return L @ L.T + 1e-3 * np.eye(2)


# ----------------------------------------------------------------------------- config
def test_config_rejects_unknown_keys_and_loose_agreement() -> None:
    with pytest.raises(ValidationError):
        CrosscheckConfig(gate=3.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="agreement_probability"):
        CrosscheckConfig(association_probability=0.9, agreement_probability=0.99)
    cfg = CrosscheckConfig()
    assert cfg.agreement_threshold < cfg.association_gate


# ----------------------------------------------------------------------------- fusion maths
finite = st.floats(0.05, 3.0)


@given(st.tuples(finite, st.floats(-2, 2), finite), st.tuples(finite, st.floats(-2, 2), finite))
def test_ci_trace_never_larger_than_either_input(ta: tuple, tb: tuple) -> None:
    Pa, Pb = spd(ta)[None], spd(tb)[None]
    _, P, w = covariance_intersection(np.zeros((1, 2)), Pa, np.ones((1, 2)), Pb)
    tr = np.trace(P[0])
    assert tr <= min(np.trace(Pa[0]), np.trace(Pb[0])) * (1 + 1e-9)
    assert 0.0 <= w[0] <= 1.0
    # ω is optimal: no grid point does better
    grid = np.linspace(0, 1, 401)
    Ai, Bi = np.linalg.inv(Pa[0]), np.linalg.inv(Pb[0])
    best = min(np.trace(np.linalg.inv(g * Ai + (1 - g) * Bi)) for g in grid)
    assert tr <= best * (1 + 1e-9)
    assert np.all(np.linalg.eigvalsh(P[0]) > 0)


def test_ci_is_consistent_for_correlated_errors() -> None:
    """The fused covariance bounds the actual error covariance whatever the correlation."""
    rng = np.random.default_rng(7)
    Pa = np.array([[4.0, 0.5], [0.5, 0.3]])
    Pb = np.array([[0.3, -0.2], [-0.2, 3.0]])
    truth = np.array([5.0, -2.0])
    for rho in (-0.9, 0.0, 0.6, 0.95):
        La, Lb = np.linalg.cholesky(Pa), np.linalg.cholesky(Pb)
        n = 20000
        e1 = rng.standard_normal((n, 2))
        e2 = rho * e1 + np.sqrt(1 - rho**2) * rng.standard_normal((n, 2))
        xa = truth + e1 @ La.T
        xb = truth + e2 @ Lb.T
        x, P, _ = covariance_intersection(
            xa, np.broadcast_to(Pa, (n, 2, 2)), xb, np.broadcast_to(Pb, (n, 2, 2))
        )
        err = x - truth
        emp = err.T @ err / n
        # P − E[e eᵀ] must be positive semi-definite (up to sampling error)
        assert np.linalg.eigvalsh(P[0] - emp).min() > -0.02 * np.trace(P[0]), rho


def test_mahalanobis_matches_numpy_and_rejects_singular() -> None:
    S = np.array([[2.0, 0.3], [0.3, 1.0]])
    d = np.array([1.0, -2.0])
    assert mahalanobis2(d, S) == pytest.approx(d @ np.linalg.solve(S, d))
    assert mahalanobis2(d, np.zeros((2, 2))) == np.inf


# ----------------------------------------------------------------------------- two channels
def test_two_agreeing_channels_fuse_and_corroborate() -> None:
    rng = np.random.default_rng(1)
    cc = CrossChecker(CFG, channels("cam", "radar"))
    truth = np.array(SCENE)
    a = make_tracks("cam", truth + rng.normal(0, 0.1, truth.shape), sigma=0.3)
    b = make_tracks("radar", truth + rng.normal(0, 0.1, truth.shape), sigma=0.5, ids=[7, 8, 9, 10])
    res = cc.check(0.0, {"cam": a, "radar": b})
    assert len(res.objects) == 4
    assert not res.disagreements
    for o in res.objects:
        assert o.corroborated and o.channels == ("cam", "radar")
        assert np.trace(o.cov) <= 0.3**2 * 2 * (1 + 1e-9)  # no larger than the better input
        assert np.all(np.linalg.eigvalsh(o.cov) > 0)
        i = o.track_ids["cam"] - 1
        assert o.track_ids["radar"] == i + 7
        assert np.linalg.norm(o.position - truth[i]) < 0.5
        assert o.velocity is not None and o.velocity[0] == pytest.approx(1.0)
    assert res.residuals[("cam", "radar")].shape == (4, 2)
    assert res.residual_covs[("cam", "radar")].shape == (4, 2, 2)
    assert "objects=4 (corroborated 4)" in res.summary()


def test_biased_channel_produces_disagreements_after_persistence() -> None:
    cc = CrossChecker(CrosscheckConfig(persistence=3), channels("cam", "radar"))
    truth = np.array(SCENE)
    bias = np.array([1.5, 0.0])  # 3σ-ish of the combined covariance: associated, not agreeing
    counts = []
    for k in range(4):
        res = cc.check(0.1 * k, {"cam": make_tracks("cam", truth),
                                 "radar": make_tracks("radar", truth + bias)})
        counts.append(len(res.disagreements))
        assert len(res.objects) == 4  # still output, never dropped
        assert not any(o.corroborated for o in res.objects)
    assert counts == [0, 0, 4, 4]
    d = res.disagreements[0]
    assert d.kind == "disagreement" and d.channels == ("cam", "radar")
    assert d.statistic > d.threshold and d.steps == 4
    np.testing.assert_allclose(res.residuals[("cam", "radar")], -np.tile(bias, (4, 1)))
    # the output covers both estimates: the mixture covariance includes the spread
    for o in res.objects:
        assert o.cov[0, 0] >= 0.25 * bias[0] ** 2


def test_unbiased_noise_rarely_disagrees() -> None:
    rng = np.random.default_rng(3)
    cc = CrossChecker(CFG, channels("cam", "radar"))
    truth = rng.uniform([5, -20], [60, 20], size=(200, 2))
    sa, sb = 0.3, 0.4
    a = make_tracks("cam", truth + rng.normal(0, sa, truth.shape), sigma=sa)
    b = make_tracks("radar", truth + rng.normal(0, sb, truth.shape), sigma=sb)
    res = cc.check(0.0, {"cam": a, "radar": b})
    assert len(res.objects) <= 200 + 5
    assert len(res.disagreements) <= 10  # 1 % expected at agreement_probability 0.99


# ----------------------------------------------------------------------------- three channels
def test_three_channels_outvote_the_biased_one() -> None:
    cc = CrossChecker(CFG, channels("a", "b", "c"))
    truth = np.array(SCENE)
    rng = np.random.default_rng(5)
    a = make_tracks("a", truth + rng.normal(0, 0.05, truth.shape))
    b = make_tracks("b", truth + rng.normal(0, 0.05, truth.shape), ids=[11, 12, 13, 14])
    c = make_tracks("c", truth + np.array([0.0, 1.6]), ids=[21, 22, 23, 24])
    res = cc.check(0.0, {"a": a, "b": b, "c": c})
    assert len(res.objects) == 4
    assert res.vote_losers == {"a": 0, "b": 0, "c": 4}
    for o in res.objects:
        assert o.channels == ("a", "b")
        assert set(o.outvoted) == {"c"}
        assert o.corroborated
        i = o.track_ids["a"] - 1
        assert np.linalg.norm(o.position - truth[i]) < 0.2  # the biased estimate is left out
    assert {d.channels for d in res.disagreements} == {("a", "c"), ("b", "c")}


def test_three_channels_all_agree_fuses_all() -> None:
    cc = CrossChecker(CFG, channels("a", "b", "c"))
    truth = np.array(SCENE)
    res = cc.check(0.0, {n: make_tracks(n, truth) for n in "abc"})
    assert all(o.channels == ("a", "b", "c") and not o.outvoted for o in res.objects)
    assert res.vote_losers == {"a": 0, "b": 0, "c": 0}


def test_three_channels_outvote_a_ghost_and_a_miss() -> None:
    cc = CrossChecker(CFG, channels("a", "b", "c"))
    truth = np.array(SCENE)
    a = make_tracks("a", np.vstack([truth, [[25.0, 10.0]]]))  # ghost at (25, 10)
    b = make_tracks("b", truth)
    c = make_tracks("c", truth[:3])  # misses the fourth object
    res = cc.check(0.0, {"a": a, "b": b, "c": c})
    assert len(res.objects) == 5  # the ghost is still output (never drop), uncorroborated
    ghost = [o for o in res.objects if o.channels == ("a",)]
    assert len(ghost) == 1 and not ghost[0].corroborated
    assert res.vote_losers == {"a": 1, "b": 0, "c": 1}
    misses = {(d.channels, d.track_ids) for d in res.disagreements if d.kind == "miss"}
    assert misses == {(("a", "b"), (5, -1)), (("a", "c"), (5, -1)),
                      (("a", "c"), (4, -1)), (("b", "c"), (4, -1))}


# ----------------------------------------------------------------------------- coverage
def test_lone_object_is_output_uncorroborated_and_is_a_miss() -> None:
    cc = CrossChecker(CFG, channels("cam", "radar"))
    res = cc.check(0.0, {"cam": make_tracks("cam", [[20.0, 0.0]]),
                         "radar": make_tracks("radar", [])})
    assert len(res.objects) == 1
    o = res.objects[0]
    assert not o.corroborated and o.channels == ("cam",) and o.track_ids == {"cam": 1}
    assert o.covered_by == ("cam", "radar")
    assert [(d.kind, d.channels, d.track_ids) for d in res.disagreements] == [
        ("miss", ("cam", "radar"), (1, -1))
    ]


def test_object_outside_second_fov_is_not_a_miss() -> None:
    fov = {"cam": FieldOfView(azimuth_min_deg=-30, azimuth_max_deg=30, range_max=50),
           "radar": FieldOfView(azimuth_min_deg=-60, azimuth_max_deg=60, range_max=150)}
    cc = CrossChecker(CFG, channels("cam", "radar", fov=fov))
    radar = make_tracks("radar", [[100.0, 0.0], [20.0, 20.0], [49.0, 0.0]])  # 45° is outside cam
    res = cc.check(0.0, {"cam": make_tracks("cam", []), "radar": radar})
    assert len(res.objects) == 3 and not any(o.corroborated for o in res.objects)
    assert res.disagreements == []  # beyond cam range, outside cam azimuth, within the FOV margin
    assert {o.covered_by for o in res.objects} == {("radar",)}


def test_duplicate_track_is_not_a_miss_of_the_other_channel() -> None:
    # the radar carries two tracks of one car 0.6 m apart; the camera sees the car once: the
    # unmatched radar track is a duplicate inside the camera track's gate, not a camera miss
    cc = CrossChecker(CFG, channels("cam", "radar"))
    res = cc.check(0.0, {"cam": make_tracks("cam", [[30.0, 3.5]]),
                         "radar": make_tracks("radar", [[30.1, 3.5], [30.3, 4.1]])})
    assert len(res.objects) == 2  # both radar tracks are still output
    assert [d for d in res.disagreements if d.kind == "miss"] == []
    # a second object well outside the gate is still a miss
    res = cc.check(0.1, {"cam": make_tracks("cam", [[30.0, 3.5]], t=0.1),
                         "radar": make_tracks("radar", [[30.1, 3.5], [30.0, -3.5]], t=0.1)})
    assert [(d.kind, d.track_ids) for d in res.disagreements] == [("miss", (2, -1))]


def test_object_hidden_behind_a_nearer_track_of_the_blind_channel_is_not_a_miss() -> None:
    """A car cut in 28 m ahead hides the lead car at 45 m from the camera (the radar sees under
    cars): the camera is not blamed for missing it, and the lead car is still output. Beside
    the occluder the same gap is a miss."""
    cc = CrossChecker(CFG, channels("cam", "radar"))
    res = cc.check(0.0, {"cam": make_tracks("cam", [[28.0, 0.2]]),
                         "radar": make_tracks("radar", [[28.0, 0.2], [45.0, 0.0]])})
    assert len(res.objects) == 2
    assert [d for d in res.disagreements if d.kind == "miss"] == []
    res = cc.check(0.1, {"cam": make_tracks("cam", [[28.0, 0.2]], t=0.1),
                         "radar": make_tracks("radar", [[28.0, 0.2], [45.0, 3.5]], t=0.1)})
    assert [(d.kind, d.channels, d.track_ids) for d in res.disagreements] == [
        ("miss", ("radar", "cam"), (2, -1))]
    # switched off: the hidden car is a miss again
    off = CrossChecker(CrosscheckConfig(persistence=1, occlusion=False), channels("cam", "radar"))
    res = off.check(0.0, {"cam": make_tracks("cam", [[28.0, 0.2]]),
                          "radar": make_tracks("radar", [[28.0, 0.2], [45.0, 0.0]])})
    assert [d.kind for d in res.disagreements] == ["miss"]


def test_hidden_object_does_not_outvote_the_channel_it_is_hidden_from() -> None:
    """Three channels: the camera cannot see the car behind the cut-in car, radar and lidar
    can. The camera loses no existence vote for it; a car in plain view it misses does."""
    cc = CrossChecker(CFG, channels("cam", "radar", "lidar"))
    near, far, aside = [28.0, 0.2], [45.0, 0.0], [40.0, -6.0]
    res = cc.check(0.0, {"cam": make_tracks("cam", [near]),
                         "radar": make_tracks("radar", [near, far, aside]),
                         "lidar": make_tracks("lidar", [near, far, aside])})
    assert res.vote_losers == {"cam": 1, "radar": 0, "lidar": 0}  # the car aside only
    assert len(res.objects) == 3


def test_excluded_channels_are_never_output_but_still_checked() -> None:
    cc = CrossChecker(CFG, channels("a", "b", "c"))
    truth = np.array(SCENE)
    tr = {"a": make_tracks("a", truth), "b": make_tracks("b", truth + 5.0), "c": None}
    res = cc.check(0.0, tr, excluded={"b"})
    assert res.active == ("a",)
    assert all(o.channels == ("a",) for o in res.objects) and len(res.objects) == 4
    assert all(o.covered_by == ("a",) for o in res.objects)
    # the evidence against b keeps coming (it misses a's objects); b's own tracks blame nobody
    assert {(d.kind, d.channels) for d in res.disagreements} == {("miss", ("a", "b"))}
    assert res.vote_losers == {}


def test_an_excluded_channel_outvoted_stays_outvoted() -> None:
    # three channels, c knocked 1.5 m sideways and already excluded: it is still outvoted each
    # step (so its fault stays latched), never output, and a and b are fused and corroborated
    cc = CrossChecker(CFG, channels("a", "b", "c"))
    truth = np.array(SCENE)
    tr = {"a": make_tracks("a", truth), "b": make_tracks("b", truth + 0.1),
          "c": make_tracks("c", truth + np.array([0.0, 1.5]))}
    res = cc.check(0.0, tr, excluded={"c"})
    assert res.vote_losers["c"] == 4 and res.vote_losers["a"] == res.vote_losers["b"] == 0
    assert len(res.objects) == 4
    assert all(o.channels == ("a", "b") and o.corroborated for o in res.objects)
    assert all(o.outvoted == {"c": i + 1} for i, o in enumerate(res.objects))
    assert [d for d in res.disagreements if "c" in d.channels and d.kind != "miss"] == []


def test_unconfirmed_and_nan_tracks_are_ignored() -> None:
    cc = CrossChecker(CFG, channels("a", "b"))
    a = make_tracks("a", [[10.0, 0.0], [20.0, 0.0], [30.0, 0.0]],
                    status=[TrackStatus.CONFIRMED, TrackStatus.TENTATIVE, TrackStatus.COASTING])
    b_pos = np.array([[10.0, 0.0], [np.nan, 1.0]])
    res = cc.check(0.0, {"a": a, "b": make_tracks("b", b_pos)})
    assert sorted(o.track_ids["a"] for o in res.objects) == [1, 3]
    assert [o.channels for o in res.objects if o.track_ids["a"] == 1] == [("a", "b")]


@given(
    st.lists(st.tuples(st.floats(5, 70), st.floats(-30, 30)), max_size=12),
    st.lists(st.tuples(st.floats(5, 70), st.floats(-30, 30)), max_size=12),
    st.lists(st.tuples(st.floats(5, 70), st.floats(-30, 30)), max_size=12),
)
def test_every_confirmed_track_ends_up_in_exactly_one_object(pa, pb, pc) -> None:
    cc = CrossChecker(CFG, channels("a", "b", "c"))
    tr = {"a": make_tracks("a", pa, sigma=1.0), "b": make_tracks("b", pb, sigma=1.0),
          "c": make_tracks("c", pc, sigma=1.0)}
    res = cc.check(0.0, tr)
    for name, pts in (("a", pa), ("b", pb), ("c", pc)):
        seen = sorted(
            [o.track_ids[name] for o in res.objects if name in o.track_ids]
            + [o.outvoted[name] for o in res.objects if name in o.outvoted]
        )
        assert seen == list(range(1, len(pts) + 1))
    ids = [o.object_id for o in res.objects]
    assert len(set(ids)) == len(ids)
    for o in res.objects:
        assert np.all(np.isfinite(o.position)) and np.all(np.linalg.eigvalsh(o.cov) > 0)


# ----------------------------------------------------------------------------- shadow
def test_shadow_is_scored_and_never_output() -> None:
    cc = CrossChecker(CFG, channels("cam", "radar", shadow=("candidate",)))
    truth = np.array(SCENE)
    shadow_pos = np.vstack([truth[:2], truth[2] + [0.0, 1.5], [[40.0, 0.0]]])
    res = cc.check(0.0, {"cam": make_tracks("cam", truth), "radar": make_tracks("radar", truth),
                         "candidate": make_tracks("candidate", shadow_pos, ids=[91, 92, 93, 94])})
    assert all("candidate" not in o.channels and "candidate" not in o.covered_by
               for o in res.objects)
    assert len(res.objects) == 4
    s = res.shadow["candidate"]
    assert (s.matched, s.disagreeing, s.missed, s.extra) == (2, 1, 1, 1)
    assert "candidate" not in res.active and res.disagreements == []
    assert "shadow candidate: 2 matched/1 missed/1 extra/1 disagreeing" in res.summary()


# ----------------------------------------------------------------------------- identities
def test_object_ids_stable_across_steps() -> None:
    cc = CrossChecker(CFG, channels("cam", "radar"))
    truth = np.array(SCENE)
    first = cc.check(0.0, {"cam": make_tracks("cam", truth),
                           "radar": make_tracks("radar", truth, ids=[5, 6, 7, 8])})
    by_cam = {o.track_ids["cam"]: o.object_id for o in first.objects}
    assert len(set(by_cam.values())) == 4
    # objects move, cam loses track 2 and re-acquires it as 9; radar still carries it as 6
    moved = truth + np.array([1.0, 0.0])
    second = cc.check(0.1, {"cam": make_tracks("cam", moved, ids=[1, 9, 3, 4]),
                            "radar": make_tracks("radar", moved, ids=[5, 6, 7, 8])})
    by_radar = {o.track_ids["radar"]: o.object_id for o in second.objects}
    assert by_radar == {5: by_cam[1], 6: by_cam[2], 7: by_cam[3], 8: by_cam[4]}
    # radar drops out for a step: cam's tracks keep their ids; a new object gets a fresh id
    third = cc.check(0.2, {"cam": make_tracks("cam", np.vstack([moved, [[60.0, 0.0]]]),
                                              ids=[1, 9, 3, 4, 10]), "radar": None})
    ids3 = {o.track_ids["cam"]: o.object_id for o in third.objects}
    assert ids3[1] == by_cam[1] and ids3[9] == by_cam[2]
    assert ids3[10] not in by_cam.values()


def test_result_defaults_are_empty() -> None:
    r = CrosscheckResult()
    assert r.objects == [] and r.summary().startswith("t=0.000")


# ----------------------------------------------------------------------------- clean data
AGREE_LEVEL = 1.0 - CrosscheckConfig().agreement_probability  # per pair, object and step


def grid(n: int) -> np.ndarray:
    """n objects on a grid ahead, ≥ 5 m apart (the step benchmark's layout)."""
    k = np.arange(n)
    return np.column_stack([12.0 + 5.0 * (k // 5), -12.0 + 6.0 * (k % 5)])


def clean_drive(steps: int, n: int, sigmas: dict[str, float], seed: int = 0,
                duplicate: tuple[str, int, range] | None = None):
    """Consistent tracks: each channel's error is N(0, σ² I), independent, as its covariance
    says. ``duplicate`` = (channel, object, steps): that channel also carries a second track of
    the object (as a tracker that split it would), with its own consistent error."""
    rng = np.random.default_rng(seed)
    base = grid(n)
    for k in range(steps):
        t = 0.05 * k
        truth = base + np.array([0.5 * np.sin(0.2 * t), 0.3 * np.cos(0.3 * t)])
        tracks = {}
        for c, (name, s) in enumerate(sorted(sigmas.items())):
            pos = truth + rng.normal(0.0, s, truth.shape)
            ids = list(range(1 + 1000 * c, 1 + 1000 * c + n))
            if duplicate is not None and duplicate[0] == name and k in duplicate[2]:
                pos = np.vstack([pos, truth[duplicate[1]] + rng.normal(0.0, s, 2)])
                ids.append(999 + 1000 * c)
            tracks[name] = make_tracks(name, pos, sigma=s, ids=ids, t=t)
        yield t, truth, tracks


def test_clean_data_raises_no_outvote_disagreement_or_miss() -> None:
    # 3 channels × 50 objects × 300 steps of statistically consistent estimates. Single-step
    # exceedances of the agreement test happen at its 1 % level (checked, so the test is not
    # vacuous), but a channel may only be blamed once the same contradiction persists: with
    # independent errors, 3 steps in a row happen with probability ≤ 0.01³ per pair and object,
    # 45 000 pair-object-steps → expected 0.045 reports. Persisted outvotes are rarer still.
    cc = CrossChecker(CrosscheckConfig(), channels("cam", "lidar", "radar"))
    sig = {"cam": 0.3, "lidar": 0.2, "radar": 0.5}
    n, steps = 50, 300
    exceed = trials = 0
    losers = 0
    reported = []
    corroborated = 0
    thr = CFG.agreement_threshold
    for t, _, tracks in clean_drive(steps, n, sig):
        res = cc.check(t, tracks)
        for pair, r in res.residuals.items():
            exceed += int((mahalanobis2(r, res.residual_covs[pair]) > thr).sum())
            trials += len(r)
        losers += sum(res.vote_losers.values())
        reported += res.disagreements
        assert len(res.objects) == n
        corroborated += sum(o.corroborated for o in res.objects)
    assert trials >= (1 - 1e-3) * 3 * n * steps  # the gate (0.9999) drops a few pairs
    rate = exceed / trials
    assert 0.5 * AGREE_LEVEL < rate < 1.5 * AGREE_LEVEL  # the test's own level, as designed
    assert losers == 0, f"clean channels outvoted {losers} times"
    assert reported == [], [(d.kind, d.channels, d.steps) for d in reported[:5]]
    assert corroborated >= 0.97 * n * steps


def test_a_duplicate_track_is_neither_a_ghost_nor_a_miss_in_the_vote() -> None:
    # the radar tracker splits one object into two tracks for 200 steps; both agree with the
    # camera and lidar. The spare track is still output (never drop) but blames nobody.
    cc = CrossChecker(CrosscheckConfig(), channels("cam", "lidar", "radar"))
    sig = {"cam": 0.3, "lidar": 0.2, "radar": 0.5}
    losers: dict[str, int] = {}
    for t, _, tracks in clean_drive(260, 20, sig, seed=4, duplicate=("radar", 7, range(40, 240))):
        res = cc.check(t, tracks)
        for k, v in res.vote_losers.items():
            losers[k] = losers.get(k, 0) + v
        assert [d for d in res.disagreements if d.kind == "miss"] == []
        if 40 <= round(t / 0.05) < 240:
            assert any(o.track_ids.get("radar") == 2999 for o in res.objects)
    assert losers == {"cam": 0, "lidar": 0, "radar": 0}


def test_outvotes_need_persistence_and_then_name_the_channel() -> None:
    # one object, c contradicted by a and b: counted from the persistence-th step on, and the
    # disagreements it causes carry the vote's verdict
    cc = CrossChecker(CrosscheckConfig(persistence=3), channels("a", "b", "c"))
    counts = []
    for k in range(5):
        res = cc.check(0.1 * k, {"a": make_tracks("a", [[20.0, 0.0]]),
                                 "b": make_tracks("b", [[20.1, 0.0]]),
                                 "c": make_tracks("c", [[20.0, 1.6]])})
        counts.append(res.vote_losers["c"])
    assert counts == [0, 0, 1, 1, 1]
    assert {d.outvoted for d in res.disagreements} == {"c"}
    # a disagreement the vote cannot resolve carries no verdict
    cc = CrossChecker(CFG, channels("a", "b"))
    res = cc.check(0.0, {"a": make_tracks("a", [[20.0, 0.0]]),
                         "b": make_tracks("b", [[20.0, 1.6]])})
    assert [d.outvoted for d in res.disagreements] == [None]


# ----------------------------------------------------------------------------- vectorised parts
points = st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), max_size=30)


@given(points, st.floats(-3, 3), st.floats(-3, 3))
def test_fov_masks_decide_like_field_of_view_contains(pts, m1, m2) -> None:
    fovs = [FieldOfView(), FieldOfView(azimuth_min_deg=-10, azimuth_max_deg=80, range_min=3,
                                       range_max=40),
            FieldOfView(image_width=640, image_height=480)]
    p = np.array(pts, dtype=np.float64).reshape(-1, 2)
    got = fov_masks(fovs, p, (m1, m2))
    for k, f in enumerate(fovs):
        for j, m in enumerate((m1, m2)):
            np.testing.assert_array_equal(got[:, k, j], f.contains(p, m))


@given(points, st.floats(-3, 3))
def test_sector_field_of_view_is_range_and_azimuth_shrunk_by_the_margin(pts, m) -> None:
    """The compiled sector test against its definition, written out in numpy."""
    f = FieldOfView(azimuth_min_deg=-10, azimuth_max_deg=80, range_min=3, range_max=40)
    p = np.array(pts, dtype=np.float64).reshape(-1, 2)
    r = np.hypot(p[:, 0], p[:, 1])
    az = np.degrees(np.arctan2(p[:, 1], p[:, 0]))
    arc = np.degrees(m / np.maximum(r, 1e-6))
    want = (r >= 3 + m) & (r <= 40 - m) & (az >= -10 + arc) & (az <= 80 - arc)
    np.testing.assert_array_equal(f.contains(p, m), want)


@given(points, points)
def test_hidden_behind_matches_its_pairwise_definition(pts, occ) -> None:
    p = np.array(pts, dtype=np.float64).reshape(-1, 2) * 0.5
    o = np.array(occ, dtype=np.float64).reshape(-1, 2) * 0.5
    got = hidden_behind(p, o, 1.5, 0.9)
    want = np.zeros(len(p), dtype=bool)
    for i, (px, py) in enumerate(p):
        rp = max(np.hypot(px, py), 1e-6)
        for ox, oy in o:
            ro = np.hypot(ox, oy)
            gap = abs(np.arctan2(py, px) - np.arctan2(oy, ox))
            gap = min(gap, 2 * np.pi - gap)
            if gap < np.arctan2(1.5, rp) + np.arctan2(0.9, max(ro, 1e-6)) and ro < rp - 3.0:
                want[i] = True
    np.testing.assert_array_equal(got, want)
    # occluders given as a mask over the same points: the same as passing those points
    both = np.concatenate([p, o])
    mask = np.r_[np.zeros(len(p), bool), np.ones(len(o), bool)]
    np.testing.assert_array_equal(hidden_among(both, mask, 1.5, 0.9)[: len(p)], want)


@given(points, points, st.floats(0.05, 4.0), st.floats(0.05, 4.0))
def test_gated_pairs_and_sparse_assignment_match_the_dense_solution(pa, pb, sa, sb) -> None:
    from scipy.optimize import linear_sum_assignment

    a = np.array(pa, dtype=np.float64).reshape(-1, 2) * 0.2
    b = np.array(pb, dtype=np.float64).reshape(-1, 2) * 0.2
    Pa = np.broadcast_to(np.array([[sa, 0.3 * sa], [0.3 * sa, sa]]), (len(a), 2, 2))
    Pb = np.broadcast_to(np.diag([sb, 2 * sb]), (len(b), 2, 2))
    gate = CFG.association_gate
    dense = mahalanobis2(a[:, None] - b[None], Pa[:, None] + Pb[None])
    i, j, d2 = gated_pairs(a, Pa, b, Pb, gate)
    want = np.argwhere(dense <= gate)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [tuple(x) for x in want.tolist()]
    np.testing.assert_allclose(d2, dense[i, j])
    ri, rj, rd = assign_sparse(i, j, d2, gate)
    assert np.all(np.diff(ri) > 0) and len(set(rj.tolist())) == rj.size and np.all(rd <= gate)
    if dense.size:  # same number of matches and the same total cost as the dense Hungarian
        big = gate * (min(dense.shape) + 1) + 1.0
        r, c = linear_sum_assignment(np.where(dense <= gate, dense, big))
        ok = dense[r, c] <= gate
        assert ri.size == int(ok.sum())
        assert rd.sum() == pytest.approx(dense[r[ok], c[ok]].sum(), abs=1e-9)


@given(st.lists(st.tuples(st.integers(0, 19), st.integers(0, 19)), max_size=30))
def test_components_number_like_scipy(edges) -> None:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    e = np.array(edges, dtype=np.int64).reshape(-1, 2)
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(20, 20))
    np.testing.assert_array_equal(components(20, e[:, 0], e[:, 1]),
                                  connected_components(g, directed=False)[1])


def test_disagreeing_pair_is_output_at_the_more_certain_estimate_never_between() -> None:
    # camera honest but noisy (σ 3 m) at (32, 9.1); radar (σ 0.3 m) at (37, 0.2): associated,
    # not agreeing. A midpoint (34.5, 4.65) would be where neither channel saw anything.
    cc = CrossChecker(CFG, channels("cam", "radar"))
    res = cc.check(0.0, {"cam": make_tracks("cam", [[32.0, 9.1]], sigma=3.0),
                         "radar": make_tracks("radar", [[37.0, 0.2]], sigma=0.3)})
    assert len(res.objects) == 1
    o = res.objects[0]
    assert not o.corroborated and set(o.channels) == {"cam", "radar"}
    np.testing.assert_allclose(o.position, [37.0, 0.2])
    # the covariance still covers the camera's estimate (its spread about the radar's)
    d = np.array([32.0 - 37.0, 9.1 - 0.2])
    assert d @ np.linalg.solve(o.cov, d) < 4.0


def test_indefinite_track_covariance_still_fuses_to_a_finite_estimate() -> None:
    cc = CrossChecker(CFG, channels("cam", "radar"))
    bad = make_tracks("radar", [[0.26, 0.0]], sigma=0.3)
    bad.position_cov[0] = [[1e-4, 2e-4], [2e-4, 1e-4]]  # rounding made it indefinite
    for cam in ([0.3, 0.0], [5.3, 0.0]):  # fused with the camera, and alone
        res = cc.check(cam[0], {"cam": make_tracks("cam", [cam], sigma=0.3), "radar": bad})
        assert any("radar" in o.channels for o in res.objects), "the obstacle must be output"
        for o in res.objects:
            assert np.all(np.isfinite(o.position)) and np.all(np.isfinite(o.cov))
            assert np.all(np.linalg.eigvalsh(o.cov) > 0)
