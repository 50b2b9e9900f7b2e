"""Triggers: OR of AND groups, edges, delays, each condition kind."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sim.triggers import Trigger, TriggerConfig, TriggerContext


def ctx(t: float, **kw: object) -> TriggerContext:
    return TriggerContext(t=t, **kw)  # type: ignore[arg-type]


def series(trig: Trigger, contexts: list[TriggerContext]) -> list[bool]:
    return [trig.evaluate(c) for c in contexts]


def cond(kind: str, **kw: object) -> dict[str, object]:
    return {"kind": kind, **kw}


def test_at_shorthand_and_bare_number() -> None:
    for cfg in (TriggerConfig(at=2.0), TriggerConfig.model_validate(2.0)):
        out = series(Trigger(cfg), [ctx(t) for t in (0.0, 1.0, 2.0, 2.1, 5.0)])
        assert out == [False, False, True, True, True]


def test_and_within_group_or_across_groups() -> None:
    cfg = TriggerConfig.model_validate(
        {
            "any_of": [
                [cond("simulation_time", value=1.0), cond("ego_speed", rule="less", value=5.0)],
                [cond("simulation_time", value=10.0)],
            ]
        }
    )
    trig = Trigger(cfg)
    assert not trig.evaluate(ctx(2.0, ego_speed=8.0))  # time ok, speed not: AND fails
    assert trig.evaluate(ctx(2.1, ego_speed=4.0))  # both hold
    assert not trig.evaluate(ctx(0.5, ego_speed=4.0))  # speed ok, time not
    assert trig.evaluate(ctx(11.0, ego_speed=30.0))  # the second group alone


def test_rising_edge_fires_once_per_crossing() -> None:
    cfg = TriggerConfig.model_validate(
        {"any_of": [[cond("ego_speed", rule="greater", value=5.0, edge="rising")]]}
    )
    speeds = [0, 6, 7, 8, 3, 9, 9]
    out = series(Trigger(cfg), [ctx(i * 0.1, ego_speed=v) for i, v in enumerate(speeds)])
    assert out == [False, True, False, False, False, True, False]


def test_first_evaluation_is_not_an_edge() -> None:
    cfg = TriggerConfig.model_validate(
        {"any_of": [[cond("ego_speed", rule="greater", value=5.0, edge="rising")]]}
    )
    assert series(Trigger(cfg), [ctx(0.0, ego_speed=9.0), ctx(0.1, ego_speed=9.0)]) == [
        False,
        False,
    ]


def test_falling_and_either_edge() -> None:
    speeds = [9, 9, 2, 2, 9, 1]
    fall = TriggerConfig.model_validate(
        {"any_of": [[cond("ego_speed", value=5.0, edge="falling")]]}
    )
    both = TriggerConfig.model_validate(
        {"any_of": [[cond("ego_speed", value=5.0, edge="rising_or_falling")]]}
    )
    cs = [ctx(i * 0.1, ego_speed=v) for i, v in enumerate(speeds)]
    assert series(Trigger(fall), cs) == [False, False, True, False, False, True]
    assert series(Trigger(both), cs) == [False, False, True, False, True, True]


def test_delay_on_a_level_condition() -> None:
    cfg = TriggerConfig.model_validate(
        {"any_of": [[cond("ego_speed", rule="greater", value=5.0, delay=0.3)]]}
    )
    speeds = [0, 0, 9, 9, 9, 9, 9, 0, 0, 0, 0]
    ts = [round(i * 0.1, 10) for i in range(len(speeds))]
    out = series(Trigger(cfg), [ctx(t, ego_speed=v) for t, v in zip(ts, speeds, strict=True)])
    # true from t=0.2, reported from t=0.5; false from t=0.7, reported from t=1.0
    assert out == [False, False, False, False, False, True, True, True, True, True, False]


def test_delay_on_an_edge_fires_once_later() -> None:
    cfg = TriggerConfig.model_validate(
        {"any_of": [[cond("ego_speed", value=5.0, edge="rising", delay=0.25)]]}
    )
    speeds = [0, 9, 9, 9, 9, 9]
    ts = [i * 0.1 for i in range(len(speeds))]
    out = series(Trigger(cfg), [ctx(t, ego_speed=v) for t, v in zip(ts, speeds, strict=True)])
    # edge at t=0.1, fires at the first evaluation at or after 0.35
    assert out == [False, False, False, False, True, False]


def test_distance_condition_nearest_and_named_actor() -> None:
    ids = np.array([1, 2])
    pos = np.array([[30.0, 0.0], [8.0, 6.0]])  # actor 2 at 10 m
    near = Trigger(TriggerConfig.model_validate({"any_of": [[cond("distance", value=12.0)]]}))
    one = Trigger(
        TriggerConfig.model_validate({"any_of": [[cond("distance", actor=1, value=12.0)]]})
    )
    far = Trigger(
        TriggerConfig.model_validate(
            {"any_of": [[cond("distance", actor=1, rule="greater", value=25.0)]]}
        )
    )
    c = ctx(0.0, ids=ids, positions=pos)
    assert near.evaluate(c) and not one.evaluate(c) and far.evaluate(c)
    missing = Trigger(
        TriggerConfig.model_validate({"any_of": [[cond("distance", actor=9, value=1e9)]]})
    )
    assert not missing.evaluate(c)  # absent actor: infinitely far


def test_supervisor_state_value_or_callable() -> None:
    state = {"now": "NOMINAL"}
    cfg = TriggerConfig.model_validate(
        {"any_of": [[cond("supervisor_state", states=["DEGRADED", "TAKEOVER_REQUESTED"])]]}
    )
    trig = Trigger(cfg)
    assert not trig.evaluate(ctx(0.0, supervisor_state=lambda: state["now"]))
    state["now"] = "DEGRADED"
    assert trig.evaluate(ctx(0.1, supervisor_state=lambda: state["now"]))
    assert trig.evaluate(ctx(0.2, supervisor_state="takeover_requested"))
    neg = Trigger(
        TriggerConfig.model_validate(
            {"any_of": [[cond("supervisor_state", states=["NOMINAL"], negate=True)]]}
        )
    )
    assert not neg.evaluate(ctx(0.0, supervisor_state="NOMINAL"))
    assert neg.evaluate(ctx(0.1, supervisor_state="MANUAL"))
    assert not neg.evaluate(ctx(0.2))  # no state known: the condition never holds


def test_reset_forgets_edge_state() -> None:
    cfg = TriggerConfig.model_validate({"any_of": [[cond("ego_speed", value=5.0, edge="rising")]]})
    trig = Trigger(cfg)
    trig.evaluate(ctx(0.0, ego_speed=0.0))
    trig.reset()
    assert not trig.evaluate(ctx(0.1, ego_speed=9.0))  # first evaluation after reset: no edge


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="needs"):
        TriggerConfig()
    with pytest.raises(ValidationError, match="empty"):
        TriggerConfig.model_validate({"any_of": [[]]})
    with pytest.raises(ValidationError):
        TriggerConfig.model_validate({"any_of": [[cond("lunar_phase", value=1)]]})
    with pytest.raises(ValidationError):
        TriggerConfig.model_validate({"at": 1.0, "when": 2})


def test_describe_reads_like_the_rule() -> None:
    cfg = TriggerConfig.model_validate(
        {
            "any_of": [
                [cond("distance", actor=3, value=10.0), cond("ego_speed", value=2.0, edge="rising")]
            ],
            "at": 9.0,
        }
    )
    text = Trigger(cfg).describe()
    assert "distance to actor 3 < 10 m" in text and "rising edge" in text and "t >= 9" in text
