"""Shared pieces of the monitors: settings base class, finding builder, channel bookkeeping."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from perception.tracks import Tracks
from safety.channels import ChannelConfig
from safety.context import ChannelObservation, MonitorSpec, StepContext
from safety.crosscheck import hidden_among
from safety.findings import Finding, Impact


class MonitorSettings(BaseModel):
    """Base of every monitor's configuration: strict keys, immutable, can be switched off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


class BudgetedSettings(MonitorSettings):
    """Settings of a monitor whose threshold is set from a false-alarm budget."""

    #: this monitor's own budget (false alarms per hour); None: the monitors' shared budget
    false_alarms_per_hour: float | None = Field(default=None, gt=0)

    def budget(self, shared: float) -> float:
        """False alarms per hour this monitor may spend: its own setting, else the shared one."""
        own = self.false_alarms_per_hour
        return float(own if own is not None else shared)


def finding(
    spec: MonitorSpec,
    kind: str,
    ctx_t: float,
    message: str,
    *,
    channel: str | None = None,
    impact: Impact | None = None,
    value: float = 0.0,
    threshold: float = 0.0,
    window: float = 0.0,
    track_ids: Sequence[int] | np.ndarray = (),
) -> Finding:
    """A :class:`Finding` from ``spec`` (impact defaults to the spec's), numbers as floats."""
    return Finding(
        kind=kind,
        monitor=spec.name,
        channel=channel,
        impact=spec.impact if impact is None else impact,
        value=float(value),
        threshold=float(threshold),
        window=float(window),
        message=message,
        t=float(ctx_t),
        track_ids=_track_ids(track_ids),
    )


def _track_ids(track_ids: Sequence[int] | np.ndarray) -> tuple[int, ...]:
    """Track ids as a tuple of ints (no array conversion when there are none)."""
    if not len(track_ids):
        return ()
    return tuple(int(i) for i in np.asarray(track_ids).reshape(-1))


class ChannelSet:
    """The channels a monitor watches: the configured ones plus any that turn up in a step.

    A configured channel missing from a step is still visited (with ``obs=None``) so silence is
    noticed; an unconfigured one gets default settings rather than being ignored.
    """

    def __init__(self, channels: Sequence[ChannelConfig]) -> None:
        self.configs: dict[str, ChannelConfig] = {c.name: c for c in channels}

    def config(self, name: str) -> ChannelConfig:
        """Settings of ``name`` (defaults for an unconfigured channel)."""
        cfg = self.configs.get(name)
        if cfg is None:
            cfg = ChannelConfig(name=name or "?")
            self.configs[name] = cfg
        return cfg

    def visit(
        self, ctx: StepContext
    ) -> list[tuple[str, ChannelConfig, ChannelObservation | None]]:
        """(name, settings, observation or None) for every channel, configured ones first."""
        configs, channels = self.configs, ctx.channels
        out = [(name, cfg, channels.get(name)) for name, cfg in configs.items()]
        extra = [name for name in channels if name not in configs and isinstance(name, str)]
        for name in extra:  # a channel nobody configured: default settings, still watched
            out.append((name, self.config(name), channels[name]))
        return out

    @property
    def voting(self) -> list[str]:
        """Configured channels that take part in voting (everything but shadows)."""
        return [n for n, c in self.configs.items() if c.role != "shadow"]


def is_valid(obs: ChannelObservation | None) -> bool:
    """Did this channel deliver usable input this step?"""
    return obs is not None and bool(obs.received) and obs.input_error is None


def measurement_time(obs: ChannelObservation | None) -> float | None:
    """Sensor timestamp of the step's detections (``measurement_t``, else the detections' ``t``)."""
    if obs is None:
        return None
    mt = obs.measurement_t
    if mt is None and obs.detections is not None:
        mt = obs.detections.t
    if type(mt) is float:  # the usual case, without conversions
        return mt if math.isfinite(mt) else None
    if mt is None:
        return None
    try:
        mtf = float(mt)
    except (TypeError, ValueError):
        return None
    return mtf if np.isfinite(mtf) else None


def label(name: str | None) -> str:
    """How a channel is named in messages."""
    return f"channel '{name}'" if name else "the system"


def block_due(t: float, start: float, block_s: float, step: float) -> bool:
    """Has a block that opened at ``start`` collected its ``block_s`` of steps spaced ``step``?"""
    return t - start + step >= block_s - 0.5 * step


def occluded(
    tracks: Tracks, occluders: NDArray[np.bool_], half_width_m: float,
    occluder_half_width_m: float | None = None,
) -> NDArray[np.bool_]:
    """Which tracks a nearer ``occluders`` track of the same channel hides from its sensor.

    Ground tracks: :func:`safety.crosscheck.hidden_among` (the same rule the cross-check uses
    for misses: bearing spans ± atan(half width / range) overlap, occluder nearer; tracks carry
    no size, so every object is taken as ``half_width_m`` wide either side, every occluder as
    ``occluder_half_width_m``, default the same). Image box tracks: the column spans of
    the two boxes overlap and the occluder's bottom edge is lower in the image (nearer on the
    ground). A track never occludes itself. Vectorised over pairs.
    """
    n = len(tracks)
    occ = np.asarray(occluders, dtype=bool).reshape(-1)
    if n == 0 or occ.shape != (n,) or not occ.any():
        return np.zeros(n, dtype=bool)
    if tracks.space != "box":
        pos = np.asarray(tracks.position, dtype=np.float64).reshape(n, 2)
        occ_hw = half_width_m if occluder_half_width_m is None else occluder_half_width_m
        return hidden_among(pos, occ, float(half_width_m), float(occ_hw))
    x = np.asarray(tracks.x, dtype=np.float64).reshape(n, -1)
    if x.shape[1] < 4:
        return np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.sqrt(np.clip(x[:, 2] * x[:, 3], 0.0, None))
        h = np.sqrt(np.clip(x[:, 2] / x[:, 3], 0.0, None))
    centre, half, bottom = x[:, 0], 0.5 * w, x[:, 1] + 0.5 * h
    with np.errstate(invalid="ignore"):
        overlap = np.abs(centre[:, None] - centre[None, :]) < half[:, None] + half[None, :]
        hidden = overlap & (bottom[None, :] > bottom[:, None]) & occ[None, :]
    np.fill_diagonal(hidden, False)
    return np.asarray(hidden.any(axis=1))
