"""Hypothesis strategies produce valid, usable objects."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from perception.detections import Detections
from sim.faults import FaultChain, build_fault_chains
from sim.human import HumanConfig
from sim.sensors import CameraConfig, RadarConfig, make_sensor
from sim.strategies import (
    detections,
    fault_configs,
    fault_schedules,
    human_configs,
    scenarios,
    sensor_configs,
    triggers,
    worlds,
)
from sim.triggers import Trigger, TriggerContext
from sim.world import World, WorldConfig


@given(detections())
def test_detections_are_valid(d: Detections) -> None:
    assert isinstance(d, Detections)
    assert d.space in ("point", "box") and d.z.shape == (len(d), d.dim)


@given(detections(space="point", min_size=1, max_size=4, t=1.5, sensor="radar"))
def test_detections_respect_arguments(d: Detections) -> None:
    assert d.space == "point" and 1 <= len(d) <= 4 and d.t == 1.5 and d.sensor == "radar"


@given(triggers(duration=10.0))
def test_triggers_fire_within_duration(cfg: object) -> None:
    trig = Trigger(cfg)  # type: ignore[arg-type]
    fired = [
        trig.evaluate(
            TriggerContext(
                t=k * 0.1, ego_speed=10.0, ids=np.array([1]), positions=np.array([[3.0, 0.0]])
            )
        )
        for k in range(101)
    ]
    assert any(fired)


@given(worlds(max_actors=4))
def test_worlds_step(cfg: WorldConfig) -> None:
    w = World(cfg, 0)
    t = w.step(0.1)
    assert len(t) == len(cfg.actors)


@given(sensor_configs())
def test_sensor_configs_build(cfg: CameraConfig | RadarConfig) -> None:
    sensor = make_sensor(cfg)
    truth = World(WorldConfig()).truth()
    out = sensor.measure(0.0, truth, np.random.default_rng(0))
    assert isinstance(out, Detections)


@given(fault_schedules(channels=("a", "b"), duration=5.0, max_faults=4))
def test_fault_schedules_run_on_a_stream(faults: list) -> None:
    chains = build_fault_chains(faults, 0, channels=["a", "b"])
    for k in range(60):
        t = round(k * 0.1, 10)
        for ch, chain in chains.items():
            chain.update(TriggerContext(t=t, ego_speed=10.0))
            if chain.needs_detector and chain.detector is None:
                chain.make_detector()
            chain.apply(t, Detections.from_points([[10.0, 0.0]], t=t, sensor=ch))
    for chain in chains.values():
        assert isinstance(chain, FaultChain)
        for f in chain.faults:
            assert all(s <= 5.0 for s in f.onsets)
            assert f.describe().startswith(f"{f.channel}: {f.kind}")


@given(fault_configs(kinds=["glare", "darkness", "blur"]))
def test_fault_configs_of_chosen_kinds(cfg: object) -> None:
    assert cfg.kind in ("glare", "darkness", "blur")  # type: ignore[attr-defined]


@given(human_configs())
def test_human_configs(cfg: HumanConfig) -> None:
    assert cfg.profile in ("attentive", "distracted", "absent")


@given(st.data())
def test_scenarios_produce_a_complete_description(data: st.DataObject) -> None:
    sc = data.draw(scenarios(duration=5.0, as_dict=True))
    assert set(sc) >= {"name", "duration_s", "seed", "world", "sensors", "faults", "human"}
    WorldConfig.model_validate(sc["world"])
    full = data.draw(scenarios(duration=5.0))
    from sim.scenario import ScenarioConfig

    assert isinstance(full, ScenarioConfig)
    assert [s.channel for s in full.sensors] == [c.name for c in full.supervisor.channels]
