"""The supervisor's cheaper per-step paths against the formulations they replace: the compiled
finiteness test of detections, fault-tree aggregation, the channel health map, and steps fed
through a plain dict against the same steps fed through another Mapping."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from perception.detections import Detections
from safety.channels import ChannelConfig
from safety.config import SupervisorConfig
from safety.findings import Finding, Impact
from safety.statemachine import (
    ActiveFault,
    AssessedFault,
    assess,
    healthy_channels,
)
from safety.supervisor import Supervisor, _finite


def assess_reference(faults: Iterable[ActiveFault], roles: Mapping[str, str]
                     ) -> list[AssessedFault]:
    """The former formulation of :func:`assess`."""
    items = list(faults)
    unhealthy = {
        a.latest.channel for a in items
        if a.latest.channel is not None and a.latest.impact is not Impact.INFO
        and roles.get(a.latest.channel) != "shadow"
    }
    healthy = tuple(c for c, role in roles.items() if role != "shadow" and c not in unhealthy)
    out: list[AssessedFault] = []
    for a in items:
        f = a.latest
        impact = f.impact
        if f.channel is not None and roles.get(f.channel) == "shadow":
            impact = Impact.INFO
        covered: tuple[str, ...] = ()
        if impact is Impact.CHANNEL:
            covered = tuple(c for c in healthy if c != f.channel)
            if f.channel is None or not covered:
                impact = Impact.SYSTEM
        out.append(AssessedFault(f, impact, a.last_seen, covered))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_assess_equals_the_former_formulation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"][: int(rng.integers(1, 5))]
    roles = {n: str(rng.choice(["primary", "redundant", "shadow"])) for n in names}
    impacts = list(Impact)
    faults = []
    for k in range(int(rng.integers(0, 6))):
        ch = None if rng.random() < 0.2 else str(rng.choice([*names, "unknown"]))
        f = Finding(kind=f"k{k}", monitor="m", channel=ch,
                    impact=impacts[int(rng.integers(0, 4))], value=1.0, threshold=0.0,
                    window=0.0, message="x", t=float(k))
        faults.append(ActiveFault(f, f, float(k), float(k) + 0.5))
    got = assess(faults, roles)
    ref = assess_reference(faults, roles)
    assert got == ref
    for a, b in zip(got, ref, strict=True):
        assert type(a) is AssessedFault and vars(a) == vars(b) and hash(a) == hash(b)
        assert a.impact is b.impact
    assert healthy_channels(got, names) == healthy_channels(ref, names)
    bad = {a.finding.channel for a in ref
           if a.finding.channel is not None and a.finding.impact is not Impact.INFO}
    assert healthy_channels(iter(got), names) == {n: n not in bad for n in names}


@pytest.mark.parametrize("seed", range(20))
def test_finite_equals_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(0, 5))
    z = rng.normal(size=(m, 2))
    R = rng.normal(size=(m, 2, 2))
    if m and seed % 3 == 1:
        z[int(rng.integers(0, m)), int(rng.integers(0, 2))] = [np.nan, np.inf, -np.inf][seed % 3]
    if m and seed % 3 == 2:
        R[int(rng.integers(0, m)), 1, 0] = np.inf
    z.setflags(write=seed % 2 == 0)
    expect = bool(np.isfinite(z).all() and np.isfinite(R).all())
    assert _finite(z, R) is expect
    assert _finite(z[:, ::-1], R.transpose(0, 2, 1)) is expect  # any layout
    assert _finite(z.astype(np.float32), R) is expect  # other dtypes: numpy's test
    assert _finite(np.ravel(z), R) is expect


class _Inputs(Mapping[str, Any]):
    """A Mapping that is not a dict (the general input path)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def __getitem__(self, k: str) -> Any:
        return self._d[k]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


def _dets(rng: np.random.Generator, t: float, nan: bool = False) -> Detections:
    z = np.array([[10.0, 0.0], [20.0, 3.0]]) + rng.normal(0, 0.2, (2, 2)) + [2.0 * t, 0.0]
    d = Detections(z=z, R=np.broadcast_to(0.04 * np.eye(2), (2, 2, 2)).copy(),
                   scores=np.full(2, 0.9), labels=np.zeros(2, np.int64), t=t)
    if nan:  # an instance that skipped validation
        z2 = z.copy()
        z2[0, 0] = np.nan
        object.__setattr__(d, "z", z2)
    return d


def test_dict_and_mapping_inputs_give_the_same_steps() -> None:
    cfg = SupervisorConfig(channels=[ChannelConfig(name="cam", role="primary"),
                                     ChannelConfig(name="radar", role="redundant")])
    a, b = Supervisor(cfg), Supervisor(cfg)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for i in range(40):
        t = 0.1 * (i + 1)
        ins = []
        for rng in (rng_a, rng_b):
            d: dict[str, Any] = {"cam": _dets(rng, t, nan=i == 17),
                                 "radar": None if 10 <= i < 25 else _dets(rng, t)}
            if i == 30:
                d["lidar"] = _dets(rng, t)
            ins.append(d)
        oa = a.step(t, ins[0], ego_speed=10.0)
        ob = b.step(t, _Inputs(ins[1]), ego_speed=10.0)
        assert oa.state == ob.state and oa.channel_health == ob.channel_health
        assert [f.to_dict() for f in oa.raised] == [f.to_dict() for f in ob.raised]
        assert [f.to_dict() for f in oa.faults] == [f.to_dict() for f in ob.faults]
        assert [o.track_ids for o in oa.objects] == [o.track_ids for o in ob.objects]
        assert oa.reason == ob.reason
        if i == 17:
            assert any(f.kind.endswith("nan") or "NaN" in f.message for f in oa.raised)
        if i == 30:
            assert any(f.kind == "integrity.unknown_channel" for f in oa.raised + oa.faults)
