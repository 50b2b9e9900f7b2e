"""`Finding`: what a monitor reports, with its evidence, and the impact it claims.

The supervisor aggregates findings like a fault tree: a CHANNEL finding that redundancy covers
gives DEGRADED, the same on the last healthy channel asks for takeover; SYSTEM findings ask for
takeover; CRITICAL findings start the minimal-risk manoeuvre at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Impact(StrEnum):
    """What a finding means for automation, before redundancy is taken into account."""

    INFO = "info"  # recorded and reported; no state effect
    CHANNEL = "channel"  # this channel cannot be vouched for
    SYSTEM = "system"  # automation as a whole is no longer assured → takeover
    CRITICAL = "critical"  # no usable perception → minimal-risk manoeuvre now


@dataclass(frozen=True)
class Finding:
    """One monitor's verdict at time ``t``: ``kind`` is a stable id such as ``liveness.stale``."""

    kind: str
    monitor: str
    channel: str | None
    impact: Impact
    value: float
    threshold: float
    window: float  # seconds of evidence behind the value (0 for instantaneous)
    message: str  # one plain sentence a driver or operator understands
    t: float
    track_ids: tuple[int, ...] = field(default=())

    @property
    def key(self) -> tuple[str, str | None]:
        """Identity for latching and clearing: one active fault per (kind, channel)."""
        return (self.kind, self.channel)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["impact"] = str(self.impact)
        d["track_ids"] = list(self.track_ids)
        return d
