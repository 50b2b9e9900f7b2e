"""Human takeover model: reaction-time distributions, absent driver, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from sim.human import Human, HumanConfig
from sim.rng import child, root


def draws(cfg: HumanConfig, n: int = 4000, seed: int = 0) -> np.ndarray:
    h = Human(cfg, seed)
    return np.array([h.respond(10.0) for _ in range(n)], dtype=float) - 10.0


def test_attentive_lognormal_median_and_spread() -> None:
    rt = draws(HumanConfig(profile="attentive"))
    assert np.median(rt) == pytest.approx(2.5, rel=0.05)
    logs = np.log(rt)
    assert logs.std() == pytest.approx(0.35, rel=0.08)
    assert rt.min() >= 0.3


def test_distracted_is_slower_than_attentive() -> None:
    a = draws(HumanConfig(profile="attentive"))
    d = draws(HumanConfig(profile="distracted"))
    assert np.median(d) == pytest.approx(6.0, rel=0.06)
    assert np.percentile(d, 10) > np.percentile(a, 50)


def test_configured_median_and_fixed_distribution() -> None:
    rt = draws(HumanConfig(median=4.0, sigma=0.2))
    assert np.median(rt) == pytest.approx(4.0, rel=0.04)
    fixed = draws(HumanConfig(distribution="fixed", median=3.25), n=10)
    assert np.all(fixed == 3.25)


def test_absent_never_responds() -> None:
    h = Human(HumanConfig(profile="absent"), 1)
    assert all(h.respond(t) is None for t in range(50))
    with pytest.raises(ValidationError):
        HumanConfig(profile="absent", median=2.0)


def test_ignore_probability() -> None:
    h = Human(HumanConfig(p_ignore=0.3), 2)
    missed = np.mean([h.respond(0.0) is None for _ in range(4000)])
    assert missed == pytest.approx(0.3, abs=0.03)


def test_deterministic_by_seed_sequence() -> None:
    a = Human(HumanConfig(), child(root(5), "human"))
    b = Human(HumanConfig(), child(root(5), "human"))
    c = Human(HumanConfig(), child(root(6), "human"))
    ra = [a.respond(float(i)) for i in range(20)]
    assert ra == [b.respond(float(i)) for i in range(20)]
    assert ra != [c.respond(float(i)) for i in range(20)]
    assert all(r is not None and math.isfinite(r) and r > i for i, r in enumerate(ra))


def test_profile_switch_keeps_the_stream() -> None:
    """Same seed, different profile: the underlying draws are the same (monotone in median)."""
    fast = draws(HumanConfig(median=2.0), n=50, seed=3)
    slow = draws(HumanConfig(median=4.0), n=50, seed=3)
    np.testing.assert_allclose(slow[fast > 0.3], 2.0 * fast[fast > 0.3])
