"""Typed errors raised by perception; the safety layer turns each into a finding."""

from __future__ import annotations


class PerceptionError(Exception):
    """Base class of every error perception raises on purpose."""


class InvalidDetectionsError(PerceptionError, ValueError):
    """A detection set failed validation; ``field`` names the offending array."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid detections: {field}: {reason}")
        self.field = field
        self.reason = reason


class DetectorError(PerceptionError, RuntimeError):
    """A detector raised or returned something that is not a valid detection set."""

    def __init__(self, detector: str, reason: str) -> None:
        super().__init__(f"detector {detector!r} failed: {reason}")
        self.detector = detector
        self.reason = reason


class TrackerError(PerceptionError, RuntimeError):
    """A tracker could not process its input (for example, time went backwards)."""
