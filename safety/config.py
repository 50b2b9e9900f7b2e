"""`SupervisorConfig`: every threshold and timing of the safety layer, validated at load.

Bad configuration fails at load with the file, the key path (``monitors.confidence.exit_threshold``)
and the reason, plus the line and column of the offending key when it came from YAML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from safety.channels import ChannelConfig, FieldOfView
from safety.crosscheck import CrosscheckConfig
from safety.fallback import FallbackConfig
from safety.handoff import LockoutConfig, TakeoverConfig
from safety.monitors import MonitorsConfig
from safety.statemachine import StateTimings

FloatArray = NDArray[np.float64]

__all__ = [
    "AuditSettings",
    "BudgetConfig",
    "ConfigError",
    "ConfigProblem",
    "FallbackConfig",
    "LockoutConfig",
    "StateTimings",
    "SupervisorConfig",
    "TakeoverConfig",
]


class BudgetConfig(BaseModel):
    """Step and detector wall-clock budgets (an overrunning detector's output is discarded), and
    the most detections a channel may hand in per step (so one step cannot block)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_s: float = Field(default=0.05, gt=0)
    detector_s: float = Field(default=0.04, gt=0)
    max_detections: int = Field(default=1000, ge=1)  # per channel and step; more is rejected


class AuditSettings(BaseModel):
    """Where the audit log goes (None: no log) and when it is flushed to disk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = None
    fsync: Literal["event", "close", "never"] = "event"


class CoverageZone(BaseModel):
    """The ground area the system vouches for (ego frame): x in [x_min, x_max], |y| ≤ half_width.

    Declaring it makes loading fail when the non-shadow channels' fields of view leave part of
    it unseen — an object there would be missing from the output with no fault to report.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    x_min: float = 5.0
    x_max: float = 50.0
    half_width: float = Field(default=4.0, gt=0)
    resolution_m: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> CoverageZone:
        if self.x_max <= self.x_min:
            raise ValueError("@x_max: must exceed x_min")
        return self

    def uncovered(self, channels: Sequence[ChannelConfig]) -> FloatArray:
        """Grid points of the zone that no non-shadow ground channel sees, (K, 2)."""
        xs = np.arange(self.x_min, self.x_max + 1e-9, self.resolution_m)
        ys = np.arange(-self.half_width, self.half_width + 1e-9, self.resolution_m)
        pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
        seen = np.zeros(len(pts), dtype=bool)
        for c in channels:
            if c.role != "shadow" and c.frame == "ground":
                seen |= c.fov.contains(pts)
        return pts[~seen]


class SupervisorConfig(BaseModel):
    """Channels, monitors, cross-check, state timings, takeover, fallback, budgets and audit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: list[ChannelConfig] = Field(min_length=1)
    monitors: MonitorsConfig = Field(default_factory=MonitorsConfig)
    crosscheck: CrosscheckConfig = Field(default_factory=CrosscheckConfig)
    timings: StateTimings = StateTimings()
    takeover: TakeoverConfig = TakeoverConfig()
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    budget: BudgetConfig = BudgetConfig()
    audit: AuditSettings = AuditSettings()
    coverage: CoverageZone | None = None

    @model_validator(mode="after")
    def _channels_sound(self) -> SupervisorConfig:
        names = [c.name for c in self.channels]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(
                    f"@channels.{i}.name: duplicate channel name {n!r} "
                    f"(already used by channels[{names.index(n)}])"
                )
        if all(c.role == "shadow" for c in self.channels):
            raise ValueError(
                "@channels: only shadow channels are configured; at least one primary or "
                "redundant channel is needed (shadow channels are never output)"
            )
        if self.coverage is not None:
            gap = self.coverage.uncovered(self.channels)
            if len(gap):
                lo, hi = gap.min(axis=0), gap.max(axis=0)
                raise ValueError(
                    f"@coverage: the channels' fields of view leave {len(gap)} grid points of the "
                    f"zone unseen (x {lo[0]:g}..{hi[0]:g} m, y {lo[1]:g}..{hi[1]:g} m); objects "
                    "there would be missing with no fault reported — widen a field of view or "
                    "shrink the zone"
                )
        return self

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls) -> SupervisorConfig:
        """A loadable two-channel setup: a primary camera and a redundant radar, ground frame."""
        return cls(
            channels=[
                ChannelConfig(
                    name="camera",
                    kind="camera",
                    role="primary",
                    fov=FieldOfView(azimuth_min_deg=-45, azimuth_max_deg=45, range_max=60.0),
                ),
                ChannelConfig(
                    name="radar",
                    kind="radar",
                    role="redundant",
                    fov=FieldOfView(azimuth_min_deg=-45, azimuth_max_deg=45, range_max=60.0),
                ),
            ],
            # what ±45° to 60 m can vouch for: beside the ego (x < 5 m at |y| 4 m) is unseen
            coverage=CoverageZone(x_min=5.0, x_max=50.0, half_width=4.0),
        )

    @classmethod
    def from_mapping(
        cls, data: Any, *, source: str = "<config>", node: yaml.Node | None = None
    ) -> SupervisorConfig:
        """Validate already-parsed data; errors name ``source``, the key path and the reason.

        ``node`` (the composed YAML node of ``data``) gives problems their line and column.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                source,
                [
                    ConfigProblem(
                        "",
                        f"expected a mapping of settings, got {type(data).__name__}",
                        *yaml_mark(node, ()),
                    )
                ],
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(source, validation_problems(exc, data, node)) from None

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<string>") -> SupervisorConfig:
        """Parse and validate YAML text (``source`` names it in errors)."""
        data, node = parse_yaml(text, source)
        if data is None:
            data = {}
        return cls.from_mapping(data, source=source, node=node)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SupervisorConfig:
        """Load and validate a YAML file; raises :class:`ConfigError` naming file, key, reason."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                str(p), [ConfigProblem("", f"cannot read: {exc.strerror or exc}")]
            ) from None
        return cls.from_yaml_text(text, source=str(p))

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The configuration as YAML (written to ``path`` when given); loads back identically."""
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON Schema of the configuration file (for editors and ``vigil schema``)."""
        return cls.model_json_schema()


# --------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration: where (key path, line, column) and why."""

    key: str  # dotted path, e.g. "monitors.confidence.exit_threshold" ("" for the whole file)
    reason: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def render(self, source: str) -> str:
        where = source
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.key or '<top level>'}: {self.reason}"


class ConfigError(ValueError):
    """A configuration failed to load; ``problems`` lists each offending key with its reason."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [p.render(source) for p in self.problems]
        head = f"invalid configuration {source}" + (
            f" ({len(lines)} problems)" if len(lines) > 1 else ""
        )
        super().__init__(head + ":\n  " + "\n  ".join(lines))


_PINNED = re.compile(r"^(?:Value error, |Assertion failed, )?@([\w.\-]*): (.*)$", re.S)
_PREFIX = re.compile(r"^(?:Value error, |Assertion failed, )")


def parse_yaml(
    text: str, source: str, error: type[ConfigError] | None = None
) -> tuple[Any, yaml.Node | None]:
    """YAML text → (data, node tree for error positions); a syntax error raises ``error``
    (ConfigError by default) naming the source, line and column."""
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise (error or ConfigError)(
            source, [ConfigProblem("", f"YAML syntax: {problem}", line, col)]
        ) from None


def validation_problems(
    exc: ValidationError, data: Any, node: yaml.Node | None
) -> list[ConfigProblem]:
    """pydantic errors as problems naming the key path, the reason and the YAML line/column.

    A model-level validator pins its message to a key with ``"@path.to.key: reason"``; one that
    only names the field in words gets the key found in the message. Shared by every loader.
    """
    out: list[ConfigProblem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        m = _PINNED.match(msg)
        if m:
            sub = tuple(int(p) if p.isdigit() else p for p in m.group(1).split(".") if p)
            loc, msg = loc + sub, m.group(2)
        else:
            msg = _PREFIX.sub("", msg)
            loc = loc + _named_key(loc, msg, data)
        # drop pydantic's union-member tags (e.g. "function-after[...]" in a validated union)
        loc = tuple(x for x in loc if not (isinstance(x, str) and x.startswith("function-")))
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (not a setting here; check spelling)"
        elif err.get("type") == "missing":
            msg = "required key is missing"
        elif err.get("type") == "union_tag_invalid":
            msg = msg.replace("Input tag", "kind")
        key = ".".join(str(p) for p in loc)
        out.append(ConfigProblem(key, msg, *yaml_mark(node, loc)))
    return out


def _at(data: Any, loc: Sequence[str | int]) -> Any:
    cur = data
    for part in loc:
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
        else:
            return None
    return cur


def _named_key(loc: Sequence[str | int], msg: str, data: Any) -> tuple[str, ...]:
    """A model-level error names the field it is about in its message; pin the path to it."""
    here = _at(data, loc)
    if not isinstance(here, Mapping):
        return ()
    hits = [
        (m.start(), k)
        for k in here
        if isinstance(k, str)
        for m in [re.search(rf"(?<![\w.]){re.escape(k)}(?!\w)", msg)]
        if m
    ]
    return (min(hits)[1],) if hits else ()


def yaml_mark(node: yaml.Node | None, loc: Sequence[Any]) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the deepest YAML node along ``loc`` (the key itself if present).

    A path part with no key at a mapping (a discriminated union's tag) leaves the search there.
    """
    if node is None:
        return (None, None)
    mark = node.start_mark
    cur: yaml.Node | None = node
    for part in loc:
        if isinstance(cur, yaml.MappingNode):
            for k, v in cur.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    mark, cur = k.start_mark, v
                    break
            else:
                continue
        elif isinstance(cur, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(cur.value):
                break
            cur = cur.value[part]
            mark = cur.start_mark
        else:
            break
    return (mark.line + 1, mark.column + 1)
