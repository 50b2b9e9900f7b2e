"""What every monitor sees in one supervisor step (`StepContext`) and how monitors are declared."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from perception.detections import Detections
from perception.imagestats import ImageStats
from perception.tracks import Tracks
from safety.findings import Finding, Impact

if TYPE_CHECKING:
    from safety.crosscheck import CrosscheckResult


@dataclass
class ChannelInput:
    """A channel's input after ingest (detector run, validation): what the audit log records.

    Replay feeds these back so decisions reproduce without pixels or detector runs.
    """

    received: bool  # something (not None) was handed in
    detections: Detections | None = None  # valid detections, if any
    error_kind: str | None = None  # short id: "type", "shape", "nan", "detector_crash", ...
    error: str | None = None  # plain-language reason the input was rejected
    image_stats: ImageStats | None = None  # when the input was an image
    detector_elapsed: float = 0.0  # wall seconds the channel's detector took (0 if none ran)


@dataclass
class ChannelObservation:
    """One channel in one step: what arrived, what was made of it, and what went wrong."""

    name: str
    role: str  # "primary" | "redundant" | "shadow"
    received: bool  # something (not None) was handed in this step
    detections: Detections | None  # validated detections (None if nothing usable)
    tracks: Tracks | None  # tracker output after this step (None if the tracker failed)
    input_error: str | None = None  # why the input was rejected (type, shape, NaN, detector crash)
    error_kind: str | None = None  # short id for input_error, e.g. "nan", "shape", "detector_crash"
    image_stats: ImageStats | None = None  # when the input was an image
    last_received_t: float | None = None  # supervisor time of the last valid input
    measurement_t: float | None = None  # sensor timestamp of this step's detections


@dataclass
class StepContext:
    """Everything monitors may look at in one step. Monitors never see raw sensor data."""

    t: float
    dt: float  # time since previous step (0 on the first)
    channels: dict[str, ChannelObservation]
    crosscheck: CrosscheckResult | None = None
    last_step_elapsed: float = 0.0  # wall seconds the previous step took
    budget: float = 0.0  # wall-second budget of a step
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitorSpec:
    """A monitor's declaration, like a row of openpilot's events table."""

    name: str
    watches: str  # what it looks at, in words
    threshold: str  # the bound and where it comes from
    impact: Impact  # what a finding means (before redundancy)
    kinds: tuple[str, ...]  # finding kinds it can emit


class Monitor(Protocol):
    """A small stateful unit: one step in, findings out. Must not raise (the supervisor guards)."""

    spec: MonitorSpec

    def observe(self, ctx: StepContext) -> list[Finding]: ...

    def reset(self) -> None: ...
