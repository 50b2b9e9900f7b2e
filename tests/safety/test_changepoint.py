"""CUSUM / Page-Hinkley: the ARL maths against simulation, thresholds from budgets, detection."""

from __future__ import annotations

import numpy as np
import pytest

from safety.monitors.changepoint import (
    Cusum,
    PageHinkley,
    arl_target,
    design_cusum,
    false_alarm_rate,
    siegmund_arl,
    simulate_run_lengths,
    threshold_for_arl,
    two_sided_arl,
)


def test_siegmund_matches_known_table_value() -> None:
    # k = 0.5, h = 4: the exact one-sided in-control ARL is ≈ 336 (Markov chain / integral eq.)
    assert siegmund_arl(4.0, 0.5) == pytest.approx(336, rel=0.02)
    assert two_sided_arl(4.0, 0.5) == pytest.approx(siegmund_arl(4.0, 0.5) / 2)
    assert siegmund_arl(4.0, 0.5, mu=0.5) == pytest.approx((4.0 + 1.166) ** 2)


@pytest.mark.parametrize("h", [3.0, 4.0])
@pytest.mark.parametrize("two_sided", [True, False])
def test_arl0_matches_simulation(h: float, two_sided: bool) -> None:
    rng = np.random.default_rng(12)
    rl = simulate_run_lengths(h, 0.5, 3000, rng, two_sided=two_sided)
    theory = two_sided_arl(h, 0.5) if two_sided else siegmund_arl(h, 0.5)
    se = rl.std() / np.sqrt(rl.size)
    assert abs(rl.mean() - theory) < max(3 * se, 0.06 * theory)


@pytest.mark.parametrize("shift", [0.5, 1.0, 2.0])
def test_detection_delay_matches_simulation(shift: float) -> None:
    rng = np.random.default_rng(3)
    d = design_cusum(0.5, 1e-3, 3600.0, streams=2)
    rl = simulate_run_lengths(d.h, d.k, 2000, rng, mu=shift)
    assert rl.mean() == pytest.approx(d.detection_delay(shift), rel=0.08)


def test_threshold_inverts_arl_and_budget_is_met() -> None:
    for arl in (50.0, 1e3, 1e6, 1e9):
        h = threshold_for_arl(arl, 0.5)
        assert two_sided_arl(h, 0.5) == pytest.approx(arl, rel=1e-6)
    # ≤ 1 false alarm per 1000 h at 10 Hz, shared by 4 streams
    d = design_cusum(0.5, 1e-3, 36000.0, streams=4)
    assert d.false_alarms_per_hour == pytest.approx(1e-3, rel=1e-6)
    assert d.arl0 == pytest.approx(arl_target(1e-3, 36000.0, 4), rel=1e-6)
    assert false_alarm_rate(d.arl0, 36000.0, 4) == pytest.approx(1e-3, rel=1e-6)
    assert 15.0 < d.h < 20.0
    # an explicit h reports the rate it implies
    loose = design_cusum(0.5, 1e-3, 36000.0, streams=4, h=4.0)
    assert loose.false_alarms_per_hour == pytest.approx(4 * 36000.0 / two_sided_arl(4.0, 0.5))
    assert "ARL0" in d.describe()


def test_cusum_class_run_length_matches_theory() -> None:
    rng = np.random.default_rng(5)
    n, h, k = 3000, 3.0, 0.5
    c = Cusum(k, h, n, cap=np.inf)
    first = np.zeros(n)
    for step in range(1, 3000):
        alarm = c.update(rng.standard_normal(n))
        first = np.where((first == 0) & alarm, step, first)
        if (first > 0).all():
            break
    assert first.mean() == pytest.approx(two_sided_arl(h, k), rel=0.08)


def test_cusum_holds_invalid_streams_caps_and_clears() -> None:
    c = Cusum(0.5, 5.0, 2, cap=1.5)
    for _ in range(50):
        c.update(np.array([3.0, np.nan]))
    assert c.alarm.tolist() == [True, False]
    assert c.statistic[0] == pytest.approx(7.5)  # capped at 1.5 h
    assert c.direction[0] == 1.0
    steps = 0
    while c.alarm[0]:
        c.update(np.zeros(2))
        steps += 1
    assert steps <= 6  # (cap − 1)·h / k = 5 clean samples, +1 for the boundary


def test_page_hinkley_detects_step_and_stays_quiet_before() -> None:
    rng = np.random.default_rng(9)
    ph = PageHinkley(delta=0.5, lam=threshold_for_arl(1e5, 0.5), n=1)
    for _ in range(500):
        assert not ph.update(rng.standard_normal(1)).any()
    delay = None
    for i in range(200):
        if ph.update(rng.standard_normal(1) - 2.0).any():
            delay = i + 1
            break
    assert delay is not None and delay < 30


@pytest.mark.slow
def test_arl0_long_runs_match_simulation() -> None:
    rng = np.random.default_rng(21)
    for h in (5.0, 6.0):
        rl = simulate_run_lengths(h, 0.5, 20000, rng)
        assert rl.mean() == pytest.approx(two_sided_arl(h, 0.5), rel=0.04)
