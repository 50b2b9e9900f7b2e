"""Scenario files (``scenarios/*.yaml``): the schema, loading with precise errors, sweep variants.

A scenario composes the world, its sensors, the supervisor configuration (inline, or a path
relative to the scenario file), injected faults, the human model, the expectations and the
tolerance the output is judged by. ``sweep`` declares parameter distributions for randomized
variants; a variant is fully determined by its seed, so every failing variant is replayable.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from safety.config import (
    ConfigError,
    ConfigProblem,
    SupervisorConfig,
    parse_yaml,
    validation_problems,
    yaml_mark,
)
from sim.criteria import Criterion
from sim.faults import FaultConfig
from sim.human import HumanConfig
from sim.metrics import ToleranceConfig
from sim.rng import generator
from sim.sensors import SensorConfig
from sim.world import EgoConfig, WorldConfig

__all__ = [
    "ScenarioConfig",
    "ScenarioError",
    "SweepConfig",
    "load_scenario",
    "sample_variant",
    "scenario_json_schema",
]


class ScenarioError(ConfigError):
    """A scenario file failed to load: the file, each offending key path and the reason."""


# --------------------------------------------------------------------------- sweep
class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        min_length=1, description="dotted key path in the scenario, e.g. faults.0.start.at"
    )


class UniformParam(_Dist):
    """Uniform on [low, high]."""

    dist: Literal["uniform"] = "uniform"
    low: float
    high: float

    def draw(self, rng: np.random.Generator) -> Any:
        return float(rng.uniform(self.low, self.high))


class IntegerParam(_Dist):
    """Uniform integer on [low, high] (both included)."""

    dist: Literal["integer"] = "integer"
    low: int
    high: int

    def draw(self, rng: np.random.Generator) -> Any:
        return int(rng.integers(self.low, self.high, endpoint=True))


class NormalParam(_Dist):
    """Normal(mean, std), clipped to [low, high] when given."""

    dist: Literal["normal"] = "normal"
    mean: float
    std: float = Field(ge=0)
    low: float | None = None
    high: float | None = None

    def draw(self, rng: np.random.Generator) -> Any:
        x = float(rng.normal(self.mean, self.std))
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        return float(min(max(x, lo), hi))


class ChoiceParam(_Dist):
    """One of ``values`` (optionally weighted)."""

    dist: Literal["choice"] = "choice"
    values: list[Any] = Field(min_length=1)
    weights: list[float] | None = None

    def draw(self, rng: np.random.Generator) -> Any:
        p = None
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            p = w / w.sum()
        return copy.deepcopy(self.values[int(rng.choice(len(self.values), p=p))])


ParamDist = Annotated[
    UniformParam | IntegerParam | NormalParam | ChoiceParam, Field(discriminator="dist")
]


class SweepConfig(BaseModel):
    """Randomized variants: seeds in [seeds[0], seeds[1]) and per-variant parameter draws."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seeds: tuple[int, int] = (0, 100)
    params: list[ParamDist] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if self.seeds[1] <= self.seeds[0]:
            raise ValueError("seeds must be [first, end) with end > first")
        for p in self.params:
            if isinstance(p, UniformParam | IntegerParam) and p.high < p.low:
                raise ValueError(f"{p.path}: high must be >= low")
            if isinstance(p, ChoiceParam) and p.weights is not None:
                if len(p.weights) != len(p.values) or min(p.weights) < 0 or sum(p.weights) <= 0:
                    raise ValueError(f"{p.path}: weights must match values, be >= 0, sum > 0")
        return self


# --------------------------------------------------------------------------- scenario
class ScenarioConfig(BaseModel):
    """One scenario: world, sensors, supervisor, faults, human, expectations, tolerance, sweep."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    duration_s: float = Field(gt=0)
    rate_hz: float = Field(default=10.0, gt=0)
    seed: int = Field(default=0, ge=0)
    world: WorldConfig = Field(default_factory=WorldConfig)
    ego: EgoConfig | None = Field(
        default=None, description="ego motion; shorthand for world.ego (give one, not both)"
    )
    sensors: list[SensorConfig] = Field(min_length=1)
    supervisor: SupervisorConfig = Field(
        description="inline supervisor configuration, or a path relative to the scenario file"
    )
    faults: list[FaultConfig] = Field(default_factory=list)
    human: HumanConfig = Field(default_factory=HumanConfig)
    expectations: list[Criterion] = Field(default_factory=list)
    tolerance: ToleranceConfig = Field(default_factory=ToleranceConfig)
    sweep: SweepConfig | None = None

    @field_validator("supervisor", mode="before")
    @classmethod
    def _supervisor_file(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str | Path):
            base = Path((info.context or {}).get("base_dir", "."))
            p = Path(v)
            return SupervisorConfig.from_yaml(p if p.is_absolute() else base / p)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ScenarioConfig:
        if self.ego is not None and "ego" in self.world.model_fields_set:
            raise ValueError("@ego: ego is given both at the top level and under world; keep one")
        sup = {c.name: c for c in self.supervisor.channels}
        seen: list[str] = []
        for i, s in enumerate(self.sensors):
            if s.channel in seen:
                raise ValueError(f"@sensors.{i}.channel: two sensors feed channel {s.channel!r}")
            seen.append(s.channel)
            if s.channel not in sup:
                raise ValueError(
                    f"@sensors.{i}.channel: {s.channel!r} is not a supervisor channel "
                    f"(channels: {', '.join(sup)})"
                )
            src = getattr(s, "source", None)
            if src is not None and src not in [x.channel for x in self.sensors]:
                raise ValueError(f"@sensors.{i}.source: no sensor feeds channel {src!r}")
        for i, f in enumerate(self.faults):
            if f.channel not in sup:
                raise ValueError(
                    f"@faults.{i}.channel: {f.channel!r} is not a supervisor channel "
                    f"(channels: {', '.join(sup)})"
                )
        actors = {str(a.id) for a in self.world.actors}
        for i, c in enumerate(self.expectations):
            actor = getattr(c, "actor", None)
            if actor is not None and str(actor) not in actors:
                raise ValueError(
                    f"@expectations.{i}.actor: no actor with id {actor!r} in the world"
                )
            ch = getattr(c, "channel", None)
            if c.kind in ("rmse_below", "id_switches_below", "shadow_never_output") and ch not in (
                None,
                "fused",
                *sup,
            ):
                raise ValueError(f"@expectations.{i}.channel: {ch!r} is not a supervisor channel")
            fault = getattr(c, "fault", None)
            if isinstance(fault, int) and not 0 <= fault < len(self.faults):
                raise ValueError(f"@expectations.{i}.fault: no fault with index {fault}")
        return self

    @property
    def effective_world(self) -> WorldConfig:
        """The world with the top-level ``ego`` (if given) in place."""
        if self.ego is None:
            return self.world
        return self.world.model_copy(update={"ego": self.ego})

    @property
    def steps(self) -> int:
        """Number of steps: t = 0, 1/rate_hz, ... up to and including duration_s."""
        return math.floor(self.duration_s * self.rate_hz + 1e-9) + 1


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema of scenario files (``vigil schema scenario``); supervisor may also be a path."""
    schema = ScenarioConfig.model_json_schema()
    sup = schema["properties"]["supervisor"]
    desc = sup.pop("description", None)
    schema["properties"]["supervisor"] = {
        "anyOf": [sup, {"type": "string", "description": "path relative to the scenario file"}],
        **({"description": desc} if desc else {}),
    }
    return schema


# --------------------------------------------------------------------------- loading
def load_scenario(path: str | Path) -> ScenarioConfig:
    """Load and validate a scenario file; raises :class:`ScenarioError` naming file, key, reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(
            str(p), [ConfigProblem("", f"cannot read: {exc.strerror or exc}")]
        ) from None
    return scenario_from_yaml(text, source=str(p), base_dir=p.parent)


def scenario_from_yaml(
    text: str, *, source: str = "<string>", base_dir: str | Path = "."
) -> ScenarioConfig:
    """Parse and validate scenario YAML text (``source`` names it in errors)."""
    data, node = parse_yaml(text, source, ScenarioError)
    return scenario_from_mapping(data, source=source, base_dir=base_dir, node=node)


def scenario_from_mapping(
    data: Any,
    *,
    source: str = "<scenario>",
    base_dir: str | Path = ".",
    node: yaml.Node | None = None,
) -> ScenarioConfig:
    """Validate parsed data; errors name ``source``, the key path and the reason."""
    if not isinstance(data, Mapping):
        raise ScenarioError(
            source,
            [
                ConfigProblem(
                    "", f"expected a mapping, got {type(data).__name__}", *yaml_mark(node, ())
                )
            ],
        )
    try:
        return ScenarioConfig.model_validate(dict(data), context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        raise ScenarioError(source, validation_problems(exc, data, node)) from None


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    cur: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            idx = int(part)
            if last:
                cur[idx] = value
            else:
                cur = cur[idx]
        elif isinstance(cur, dict):
            if last:
                cur[part] = value
            else:
                if cur.get(part) is None:
                    cur[part] = {}
                cur = cur[part]
        else:
            raise KeyError(f"{'.'.join(parts[:i])} is not a mapping or list")


def sample_variant(cfg: ScenarioConfig, seed: int) -> tuple[ScenarioConfig, dict[str, Any]]:
    """The sweep variant for ``seed``: parameters drawn from ``generator(seed, "sweep")``.

    Deterministic in (cfg, seed), so ``vigil replay <file> --seed N`` rebuilds it exactly.
    Returns the variant (with ``seed`` set and ``sweep`` kept) and the drawn parameters.
    """
    if cfg.sweep is None or not cfg.sweep.params:
        return cfg.model_copy(update={"seed": int(seed)}), {}
    rng = generator(int(seed), "sweep")
    params = {p.path: p.draw(rng) for p in cfg.sweep.params}
    data = cfg.model_dump(mode="json", exclude_unset=True, by_alias=True)
    data["supervisor"] = cfg.supervisor.model_dump(mode="json")
    data["seed"] = int(seed)
    for path, value in params.items():
        try:
            _set_path(data, path, value)
        except (KeyError, IndexError, ValueError) as exc:
            raise ScenarioError(
                cfg.name, [ConfigProblem(f"sweep.{path}", f"cannot set: {exc}")]
            ) from None
    try:
        variant = ScenarioConfig.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(
            f"{cfg.name} (variant seed {seed})", validation_problems(exc, data, None)
        ) from None
    return variant, params
